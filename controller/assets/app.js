// Stationwatch dashboard. Plain browser JavaScript, no build step, no library: the controller
// serves this file as it is, under a strict Content-Security-Policy (no inline script, nothing
// from other origins).
//
// Two views, one page: the stations list (`/`, filters in the query string) and a station
// (`/stations/{id}`), switched with history.pushState. Live updates come from the server-sent
// events of /api/stream; the list never renders more than one page of rows, changed rows are
// replaced in place, and the page is re-queried at most every few seconds when the order may
// have changed. One timer refreshes every "… ago" text on screen.
'use strict';

(() => {
  const PAGE = 100;
  const REQUERY_MS = 3000; // at most one list re-query per this
  const ALERTS_MS = 5000; // at most one alerts re-query per this
  const STATION_MS = 2500; // at most one station-page refresh per this
  const COMMAND_POLL_MS = 2000;
  const STATES = ['offline', 'degraded', 'unknown', 'online'];
  const RANK = { offline: 0, degraded: 1, unknown: 2, online: 3 };
  const FINAL = new Set(['done', 'rejected', 'failed', 'expired']);
  const ALERT_WEIGHT = {
    offline: 0, camera_not_recording: 1, view_covered: 1, view_dark: 1, view_moved: 1, no_segment: 2,
    view_frozen: 2, view_blurred: 2, view_refused: 2, view_replaced: 2, disk_low: 3, clock_unsynced: 4, clock_skew: 4,
  };

  const S = {
    masks: new Map(), // camera -> polygons ([[x, y], ...], relative), of the station shown
    live: new Map(), // camera -> { box, video, line, hls, status } live players of the station shown
    views: new Map(), // camera -> its view as GET .../view answers (decisions, masks on the station)
    maskEdit: null, // { camera, masks, current } while an operator draws
    me: null,
    view: null,
    filters: { state: '', region: '', q: '', offset: 0 },
    total: 0,
    rows: new Map(), // id -> { s: summary, tr }
    listSeq: 0,
    stationId: null,
    station: null,
    chartHours: 24,
    stationSeq: 0,
  };

  // ---- small helpers

  const $ = (id) => document.getElementById(id);

  /** Creates an element: h('td', {class: 'x', dataset: {a: 1}}, 'text', child, ...). */
  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    if (attrs) {
      for (const [k, v] of Object.entries(attrs)) {
        if (v === undefined || v === null || v === false) continue;
        if (k === 'class') el.className = v;
        else if (k === 'dataset') Object.assign(el.dataset, v);
        else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
        else if (k === 'text') el.textContent = v;
        else el.setAttribute(k, v === true ? '' : String(v));
      }
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
    return el;
  }

  const fmtInt = new Intl.NumberFormat();

  /** Milliseconds from a number or an ISO string. */
  function ms(t) {
    if (t === null || t === undefined) return null;
    if (typeof t === 'number') return t;
    const v = Date.parse(t);
    return Number.isNaN(v) ? null : v;
  }

  function ago(t) {
    const v = ms(t);
    if (v === null) return '—';
    let s = Math.round((Date.now() - v) / 1000);
    const future = s < 0;
    s = Math.abs(s);
    let txt;
    if (s < 60) txt = `${s} s`;
    else if (s < 3600) txt = `${Math.floor(s / 60)} min`;
    else if (s < 86400) txt = `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    else txt = `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
    return future ? `in ${txt}` : `${txt} ago`;
  }

  function localTime(t) {
    const v = ms(t);
    if (v === null) return '—';
    const d = new Date(v);
    const today = new Date();
    const sameDay = d.toDateString() === today.toDateString();
    return sameDay ? d.toLocaleTimeString() : d.toLocaleString();
  }

  /** A time as "12 s ago" that the global ticker keeps current, with the local time as tooltip. */
  function age(t, suffix) {
    const v = ms(t);
    if (v === null) return h('span', { class: 'muted' }, '—');
    return h('time', {
      dataset: { age: v, suffix: suffix || '' },
      datetime: new Date(v).toISOString(),
      title: new Date(v).toLocaleString(),
    }, ago(v) + (suffix || ''));
  }

  /** A local time followed by its age. */
  function when(t) {
    const v = ms(t);
    if (v === null) return h('span', { class: 'muted' }, '—');
    return h('span', { class: 'when' }, localTime(v), ' ', h('span', { class: 'muted' }, '(', age(v), ')'));
  }

  function duration(s) {
    if (s === null || s === undefined) return '—';
    s = Math.floor(s);
    if (s < 120) return `${s} s`;
    if (s < 7200) return `${Math.floor(s / 60)} min`;
    if (s < 172800) return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
    return `${Math.floor(s / 86400)} d ${Math.floor((s % 86400) / 3600)} h`;
  }

  function hours(v) {
    if (v === null || v === undefined) return '—';
    if (v >= 100) return `${Math.round(v)} h`;
    return `${v.toFixed(1)} h`;
  }

  function bits(v) {
    if (v === null || v === undefined) return '—';
    if (v >= 1e6) return `${(v / 1e6).toFixed(2)} Mbit/s`;
    if (v >= 1e3) return `${Math.round(v / 1e3)} kbit/s`;
    return `${v} bit/s`;
  }

  function bytes(v) {
    if (v === null || v === undefined) return '—';
    const u = ['B', 'KB', 'MB', 'GB', 'TB'];
    let i = 0;
    while (v >= 1000 && i < u.length - 1) { v /= 1000; i++; }
    return `${v.toFixed(i ? 1 : 0)} ${u[i]}`;
  }

  /** An alert's kind, `camera_not_recording:desk` shown as "camera not recording [desk]". */
  function alertKind(key) {
    const i = key.indexOf(':');
    const kind = i < 0 ? key : key.slice(0, i);
    return h('span', { class: 'akind-wrap' }, h('strong', { class: 'akind' }, kind.replace(/_/g, ' ')),
      i < 0 ? null : h('span', { class: 'cam' }, key.slice(i + 1)));
  }

  function badge(state) {
    return h('span', { class: `badge st-${state}` }, state);
  }

  // ---- API

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
  }

  function toLogin() {
    location.assign('/login');
    return new Promise(() => {}); // never settles: the page is going away
  }

  async function api(path, opts) {
    const init = Object.assign({ credentials: 'same-origin', headers: { accept: 'application/json' } }, opts || {});
    if (init.json !== undefined) {
      init.method = init.method || 'POST';
      init.headers = Object.assign({ 'content-type': 'application/json' }, init.headers);
      init.body = JSON.stringify(init.json);
      delete init.json;
    }
    let r;
    try {
      r = await fetch(path, init);
    } catch (e) {
      throw new ApiError(0, `controller unreachable (${e.message})`);
    }
    if (r.status === 401) return toLogin();
    if (r.status === 204) return null;
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!r.ok) throw new ApiError(r.status, (body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  }

  function banner(msg) {
    const b = $('banner');
    b.textContent = msg || '';
    b.hidden = !msg;
  }

  // ---- counts and header

  function setCounts(c) {
    if (!c) return;
    for (const k of ['online', 'degraded', 'offline', 'unknown', 'total']) {
      const el = $(`count-${k}`);
      const txt = fmtInt.format(c[k] || 0);
      if (el.textContent !== txt) el.textContent = txt;
      el.parentElement.classList.toggle('zero', !c[k]);
    }
  }

  async function loadSummary() {
    try {
      const s = await api('/api/summary');
      setCounts(s.counts);
      const b = $('broker');
      b.dataset.broker = s.broker_connected ? 'up' : 'down';
      b.textContent = s.broker_connected ? 'broker connected' : 'broker DISCONNECTED';
      const u = $('unarchived');
      u.hidden = !s.unarchived_bytes && !s.upload_backlog_bytes;
      u.textContent = `footage only on stations: ${bytes(s.unarchived_bytes)}` +
        (s.upload_backlog_bytes ? ` · uploading ${bytes(s.upload_backlog_bytes)}` +
          (s.upload_rate_bps ? ` at ${bits(s.upload_rate_bps)}` : '') : '');
      const db = $('database');
      db.hidden = !s.database_failing_since;
      if (s.database_failing_since) {
        db.textContent = `DATABASE FAILING since ${new Date(s.database_failing_since).toLocaleTimeString()}: history is not being stored`;
      }
      const sel = $('filter-region');
      const want = S.filters.region;
      const regions = Object.entries(s.regions || {});
      const opts = [h('option', { value: '' }, 'all regions')];
      for (const [name, n] of regions) opts.push(h('option', { value: name }, `${name} (${fmtInt.format(n)})`));
      if (want && !regions.some(([name]) => name.toLowerCase() === want.toLowerCase())) {
        opts.push(h('option', { value: want }, want));
      }
      sel.replaceChildren(...opts);
      sel.value = regions.find(([name]) => name.toLowerCase() === want.toLowerCase())?.[0] ?? want;
    } catch (e) {
      banner(`Cannot read the summary: ${e.message}`);
    }
  }

  // ---- the stations list

  function readFilters() {
    const p = new URLSearchParams(location.search);
    S.filters = {
      state: STATES.includes(p.get('state')) ? p.get('state') : '',
      region: p.get('region') || '',
      q: p.get('q') || '',
      offset: Math.max(0, parseInt(p.get('offset') || '0', 10) || 0),
    };
    $('filter-state').value = S.filters.state;
    $('filter-region').value = S.filters.region;
    if ($('search').value !== S.filters.q) $('search').value = S.filters.q;
    for (const b of document.querySelectorAll('#counts .count')) {
      b.classList.toggle('active', b.dataset.filter === S.filters.state);
    }
  }

  function filterQuery(extra) {
    const p = new URLSearchParams();
    const f = S.filters;
    if (f.state) p.set('state', f.state);
    if (f.region) p.set('region', f.region);
    if (f.q) p.set('q', f.q);
    if (f.offset) p.set('offset', String(f.offset));
    if (extra) for (const [k, v] of Object.entries(extra)) p.set(k, v);
    return p.toString();
  }

  /** Applies changed filters: the URL remembers them (no new history entry), the page reloads. */
  function setFilters(change) {
    Object.assign(S.filters, change);
    if (!('offset' in change)) S.filters.offset = 0;
    const q = filterQuery();
    history.replaceState(null, '', q ? `/?${q}` : '/');
    readFilters();
    loadPage();
  }

  function reasonList(reasons, cls) {
    return h('ul', { class: cls || 'reasons' }, (reasons || []).map((r) => h('li', {
      class: `reason k-${r.kind}`,
      dataset: { kind: r.kind },
      title: r.detail,
    }, h('strong', null, r.kind.replace(/_/g, ' ')), r.camera ? h('span', { class: 'cam' }, r.camera) : null,
    h('span', { class: 'detail' }, r.detail))));
  }

  // The station's key status in lists: nothing when registered and matching.
  function keyMark(s) {
    if (s.key_status === 'mismatch') {
      return h('div', { class: 'keymark bad', title: 'a report under another key than the registered one was refused' }, 'KEY MISMATCH');
    }
    if (s.key_status === 'unregistered') {
      return h('div', { class: 'keymark muted', title: 'no key registered for this station: its recordings cannot be checked against a trusted key' }, 'key unregistered');
    }
    return null;
  }

  function keyFact(dl, d) {
    const s = d.summary;
    const reported = d.health && d.health.agent ? d.health.agent.key_fingerprint : null;
    const status = s.key_status === 'mismatch'
      ? h('strong', { class: 'bad' }, 'MISMATCH: a report under another key was refused')
      : s.key_status === 'registered'
        ? h('span', { class: 'good' }, 'registered')
        : h('span', { class: 'muted' }, 'unregistered');
    fact(dl, 'Key', status,
      s.key_fingerprint ? h('span', null, ' · registered ', h('code', null, s.key_fingerprint)) : null,
      reported && reported !== s.key_fingerprint ? h('span', null, ' · reported ', h('code', null, reported)) : null);
    fact(dl, 'Witness', h('a', {
      href: `/api/stations/${encodeURIComponent(s.id)}/witness`,
      download: `witness-${s.id}.json`,
      id: 'witness-download',
      title: 'manifest heads this controller received, signed by it: for stationwatch-verify --witness',
    }, 'Download witness file'));
  }

  function stationRow(s) {
    const disk = s.reasons.some((r) => r.kind === 'disk_low');
    const camsBad = s.cameras > 0 && s.cameras_recording < s.cameras;
    return h('tr', { class: `st-${s.state}`, dataset: { station: s.id, state: s.state } },
      h('td', { class: 'c-state' }, badge(s.state)),
      h('td', { class: 'c-id' },
        h('a', { href: `/stations/${encodeURIComponent(s.id)}`, 'data-nav': true, class: 'sid' }, s.id),
        s.name ? h('div', { class: 'sname' }, s.name) : null,
        keyMark(s)),
      h('td', { class: 'c-region' }, s.region || ''),
      h('td', { class: 'c-reasons' }, reasonList(s.reasons)),
      h('td', { class: `c-num${camsBad ? ' bad' : ''}` }, s.cameras ? `${s.cameras_recording}/${s.cameras}` : '—'),
      h('td', { class: `c-num${disk ? ' bad' : ''}` }, hours(s.hours_left)),
      h('td', { class: 'c-age' }, age(s.last_report_at)),
      h('td', { class: 'c-age' }, age(s.state_since)));
  }

  function renderPage(page) {
    S.total = page.total;
    S.rows.clear();
    const frag = document.createDocumentFragment();
    for (const s of page.stations) {
      const tr = stationRow(s);
      S.rows.set(s.id, { s, tr });
      frag.append(tr);
    }
    $('station-rows').replaceChildren(frag);
    $('list-empty').hidden = page.stations.length > 0;
    const from = page.stations.length ? S.filters.offset + 1 : 0;
    const to = S.filters.offset + page.stations.length;
    $('list-info').textContent = `${fmtInt.format(from)}–${fmtInt.format(to)} of ${fmtInt.format(page.total)}`;
    $('prev').disabled = S.filters.offset === 0;
    $('next').disabled = to >= page.total;
  }

  async function loadPage() {
    const seq = ++S.listSeq;
    try {
      const page = await api(`/api/stations?${filterQuery({ limit: PAGE })}`);
      if (seq !== S.listSeq || S.view !== 'list') return;
      if (page.total > 0 && page.stations.length === 0 && S.filters.offset > 0) {
        // Fewer stations than before: back to the last page that has some.
        S.filters.offset = Math.max(0, Math.floor((page.total - 1) / PAGE) * PAGE);
        return setFilters({ offset: S.filters.offset });
      }
      renderPage(page);
    } catch (e) {
      if (seq === S.listSeq) banner(`Cannot list the stations: ${e.message}`);
    }
  }

  let requeryTimer = null;
  let lastRequery = 0;
  function scheduleRequery() {
    if (requeryTimer) return;
    const wait = Math.max(0, REQUERY_MS - (Date.now() - lastRequery));
    requeryTimer = setTimeout(() => {
      requeryTimer = null;
      lastRequery = Date.now();
      if (S.view === 'list') loadPage();
    }, wait);
  }

  function sortKey(s) {
    return [RANK[s.state] ?? 9, -s.reasons.length, s.id];
  }

  function before(a, b) {
    const x = sortKey(a);
    const y = sortKey(b);
    for (let i = 0; i < x.length; i++) {
      if (x[i] < y[i]) return true;
      if (x[i] > y[i]) return false;
    }
    return false;
  }

  function matches(s) {
    const f = S.filters;
    if (f.state && s.state !== f.state) return false;
    if (f.region && (s.region || '').toLowerCase() !== f.region.toLowerCase()) return false;
    if (f.q) {
      const n = f.q.toLowerCase();
      if (!s.id.toLowerCase().includes(n) && !(s.name || '').toLowerCase().includes(n)) return false;
    }
    return true;
  }

  /** Applies a batch of changed stations to the visible page. */
  function applyChanges(changed) {
    if (S.view !== 'list') return;
    let requery = false;
    const shown = [...S.rows.values()];
    const last = shown.length ? shown[shown.length - 1].s : null;
    const full = S.filters.offset + shown.length < S.total;
    for (const s of changed) {
      const cur = S.rows.get(s.id);
      if (cur) {
        if (cur.s.state !== s.state || cur.s.reasons.length !== s.reasons.length || !matches(s)) requery = true;
        const tr = stationRow(s);
        tr.classList.add('changed');
        cur.tr.replaceWith(tr);
        S.rows.set(s.id, { s, tr });
      } else if (matches(s)) {
        // Not shown: it matters only if it now sorts into this page.
        if (!full || !last || before(s, last)) requery = true;
      }
    }
    if (requery) scheduleRequery();
  }

  /** Keeps "1–100 of N" right between re-queries when the counts tell N. */
  function updateTotal(counts) {
    const f = S.filters;
    if (S.view !== 'list' || !counts || f.region || f.q) return;
    const total = f.state ? counts[f.state] : counts.total;
    if (typeof total !== 'number' || total === S.total) return;
    S.total = total;
    const to = f.offset + S.rows.size;
    $('list-info').textContent = `${fmtInt.format(S.rows.size ? f.offset + 1 : 0)}–${fmtInt.format(to)} of ${fmtInt.format(total)}`;
    $('next').disabled = to >= total;
    if (S.rows.size < PAGE && to < total) scheduleRequery(); // room on this page for more
  }

  // ---- open alerts

  let alertsTimer = null;
  let lastAlerts = 0;
  function scheduleAlerts() {
    if (alertsTimer) return;
    const wait = Math.max(500, ALERTS_MS - (Date.now() - lastAlerts));
    alertsTimer = setTimeout(() => {
      alertsTimer = null;
      lastAlerts = Date.now();
      if (S.view === 'list') loadAlerts();
    }, wait);
  }

  async function loadAlerts() {
    try {
      const { alerts } = await api('/api/alerts');
      // The worst first (a station gone, then cameras, disk, clock), newest first within a kind.
      const weight = (a) => ALERT_WEIGHT[a.kind.split(':')[0]] ?? 5;
      alerts.sort((a, b) => weight(a) - weight(b) || b.opened_at - a.opened_at);
      const max = 200;
      const rows = alerts.slice(0, max).map((a) => {
        const kind = a.kind.split(':')[0];
        return h('tr', { class: `alert k-${kind}`, dataset: { alertStation: a.station_id, kind: a.kind, alertId: a.id } },
          h('td', null, h('a', { href: `/stations/${encodeURIComponent(a.station_id)}`, 'data-nav': true, class: 'sid' }, a.station_id)),
          h('td', null, alertKind(a.kind), h('div', { class: 'detail' }, a.detail)),
          h('td', { class: 'c-age' }, age(a.opened_at)));
      });
      $('alert-rows').replaceChildren(...rows);
      $('alerts-count').textContent = `(${fmtInt.format(alerts.length)})`;
      const more = $('alerts-more');
      more.hidden = alerts.length <= max;
      more.textContent = `… and ${fmtInt.format(alerts.length - max)} more; filter the list by state to see them all.`;
      if (!alerts.length) $('alert-rows').replaceChildren(h('tr', null, h('td', { class: 'muted' }, 'No open alert.')));
    } catch (e) {
      banner(`Cannot read the alerts: ${e.message}`);
    }
  }

  // ---- live updates

  let source = null;
  let retryTimer = null;
  let everOpened = false;
  function setLive(state, text) {
    const el = $('live');
    el.dataset.live = state;
    el.textContent = text;
  }

  function connect() {
    if (source) source.close();
    setLive('connecting', 'connecting…');
    source = new EventSource('/api/stream');
    source.addEventListener('open', () => {
      setLive('open', 'live');
      banner('');
      if (everOpened) resync(); // updates were missed while away
      everOpened = true;
    });
    source.addEventListener('stations', (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (_) { return; }
      setCounts(d.counts);
      updateTotal(d.counts);
      if (!d.stations || !d.stations.length) return;
      if (S.view === 'list') {
        applyChanges(d.stations);
        scheduleAlerts();
      } else if (S.view === 'station' && d.stations.some((s) => s.id === S.stationId)) {
        scheduleStation();
      }
    });
    // The server dropped batches this page was too slow to take: re-read what is shown.
    source.addEventListener('resync', () => resync());
    source.addEventListener('error', () => {
      setLive('closed', 'reconnecting…');
      if (source.readyState === EventSource.CLOSED) {
        // Refused (e.g. the session ended): find out why, then try again.
        clearTimeout(retryTimer);
        retryTimer = setTimeout(async () => {
          try { await api('/api/me'); } catch (_) { /* unreachable: retry anyway */ }
          connect();
        }, 5000);
      }
      banner('Live updates interrupted; reconnecting. What you see may be out of date.');
    });
  }

  function resync() {
    loadSummary();
    if (S.view === 'list') { loadPage(); loadAlerts(); }
    if (S.view === 'station') refreshStation();
  }

  // ---- the station page

  let stationTimer = null;
  let lastStation = 0;
  function scheduleStation() {
    if (stationTimer) return;
    const wait = Math.max(0, STATION_MS - (Date.now() - lastStation));
    stationTimer = setTimeout(() => {
      stationTimer = null;
      lastStation = Date.now();
      if (S.view === 'station') refreshStation();
    }, wait);
  }

  const path = () => `/api/stations/${encodeURIComponent(S.stationId)}`;

  function refreshStation() {
    loadStation();
    loadEvents();
    loadStationAlerts();
    loadCommands();
  }

  async function loadStation() {
    const id = S.stationId;
    try {
      const d = await api(path());
      if (id !== S.stationId) return;
      S.station = d;
      $('station-error').hidden = true;
      renderStation(d);
    } catch (e) {
      if (id !== S.stationId) return;
      const el = $('station-error');
      el.hidden = false;
      el.textContent = e.status === 404 ? `Station ${id} is not known (or not yours to see).` : `Cannot read the station: ${e.message}`;
    }
  }

  function renderStation(d) {
    const s = d.summary;
    const view = $('station-view');
    view.dataset.station = s.id;
    view.dataset.state = s.state;
    $('station-title').textContent = s.id;
    $('station-name').textContent = [s.name, s.region].filter(Boolean).join(' · ');
    const st = $('station-state');
    st.className = `badge big st-${s.state}`;
    st.textContent = s.state;
    $('station-since').replaceChildren('since ', when(s.state_since));
    $('station-reasons').replaceChildren(...reasonList(s.reasons, 'reasons big').childNodes);
    $('station-reasons').hidden = !s.reasons.length;
    renderCameras(d);
    renderFacts(d);
    const sel = $('hold-camera');
    const keep = sel.value;
    const cams = Object.keys((d.health && d.health.cameras) || {});
    sel.replaceChildren(h('option', { value: '' }, 'all cameras'), ...cams.map((c) => h('option', { value: c }, c)));
    sel.value = cams.includes(keep) ? keep : '';
  }

  function fact(dl, label, ...value) {
    dl.append(h('dt', null, label), h('dd', null, ...value));
  }

  function renderFacts(d) {
    const dl = $('station-facts');
    dl.replaceChildren();
    const hl = d.health;
    const st = d.status;
    fact(dl, 'Connection', st ? `${st.state}${st.reason ? ` (${st.reason})` : ''}` : '—',
      d.status_received_at ? h('span', { class: 'muted' }, ' · ', age(d.status_received_at)) : null);
    fact(dl, 'Last report', when(d.health_received_at),
      hl ? h('span', { class: 'muted' }, ` · every ${hl.interval_s} s`) : null);
    keyFact(dl, d);
    if (!hl) return;
    const disk = hl.disk;
    if (disk) {
      fact(dl, 'Disk', h('strong', { class: disk.low ? 'bad' : '' }, `${hours(disk.hours_left)} left`),
        ` · ${bytes(disk.free_bytes)} free of ${bytes(disk.total_bytes)}${disk.low ? ' · LOW' : ''}`);
    }
    if (hl.clock) {
      fact(dl, 'Clock', h('span', { class: hl.clock.synced ? 'good' : 'bad' }, hl.clock.synced ? 'synchronised' : 'NOT synchronised'),
        hl.clock.est_error_us !== undefined ? ` · est. error ${hl.clock.est_error_us} µs` : '');
    }
    const sys = hl.system || {};
    const load = [sys.load_1m, sys.load_5m, sys.load_15m].filter((x) => x !== undefined && x !== null).map((x) => x.toFixed(2));
    if (load.length) fact(dl, 'Load', load.join(' / '));
    if (sys.temperature_c !== undefined) fact(dl, 'Temperature', `${sys.temperature_c.toFixed(1)} °C`);
    if (sys.power) {
      const p = sys.power;
      fact(dl, 'Power', h('span', { class: p.on_battery ? 'bad' : '' }, p.on_battery ? 'ON BATTERY' : 'mains'),
        p.battery_percent !== undefined ? ` · battery ${Math.round(p.battery_percent)} %` : '');
    }
    if (hl.uplink) {
      const u = hl.uplink;
      fact(dl, 'Uplink', `${u.live}`, u.estimated_bps !== undefined ? ` · ${bits(u.estimated_bps)}` : '',
        u.upload_backlog_s !== undefined ? ` · backlog ${duration(u.upload_backlog_s)}` : '');
    }
    if (hl.upload) uploadFacts(dl, hl.upload, d.summary);
    const a = hl.agent || {};
    fact(dl, 'Agent', `${a.version || '?'} · up ${duration(a.uptime_s)}`,
      a.system_uptime_s !== undefined ? ` · machine up ${duration(a.system_uptime_s)}` : '');
    if (hl.segment_s) fact(dl, 'Segments', `${hl.segment_s} s`);
    if (a.config_hash) fact(dl, 'Config', h('code', { title: a.config_hash }, `${a.config_hash.slice(0, 16)}…`));
    fact(dl, 'Report taken', when(hl.at));
  }

  /** Uploads to the archive: backlog, rate, ETA, and each requested window's progress. */
  function uploadFacts(dl, u, s) {
    const eta = s.upload_eta_s === null || s.upload_eta_s === undefined
      ? (u.backlog_bytes ? 'no upload rate' : '—')
      : (s.upload_eta_s ? `about ${duration(s.upload_eta_s)} left` : 'nothing to upload');
    fact(dl, 'Upload', `mode ${u.mode} · backlog ${bytes(u.backlog_bytes)} · ${bits(u.rate_bps)} · ${eta}`,
      h('div', { class: 'muted' }, `only on the station: ${bytes(u.unarchived_bytes)}`,
        u.oldest_pending ? ` · oldest pending ${u.oldest_pending}` : '',
        u.refused_segments ? ` · ${u.refused_segments} refused by the archive` : ''),
      u.last_error ? h('div', { class: 'bad' }, u.last_error) : null);
    for (const j of u.jobs || []) {
      const pct = j.bytes_total ? Math.min(100, Math.round((100 * j.bytes_done) / j.bytes_total)) : (j.state === 'done' ? 100 : 0);
      fact(dl, `Upload job`,
        h('progress', { max: '100', value: String(pct), title: `${pct} %` }),
        ` ${pct} % · ${j.state} · ${bytes(j.bytes_done)} of ${bytes(j.bytes_total)}`,
        h('div', { class: 'muted' }, `${(j.cameras || []).join(', ') || 'all cameras'} · ${j.from} → ${j.to}`,
          j.priority ? ` · priority ${j.priority}` : '',
          ` · ${j.segments_done}/${j.segments_total} segments`));
    }
  }

  // ---- privacy masks: polygons drawn on a snapshot, blanked in what observers see

  async function loadMasks(camera) {
    S.masks.set(camera, []);
    try {
      const m = await api(`${path()}/cameras/${encodeURIComponent(camera)}/masks`);
      S.masks.set(camera, m.masks || []);
      if (S.station) renderCameras(S.station);
    } catch (_) { /* shown as none; observers' snapshots are masked by the controller anyway */ }
  }

  async function loadView(camera) {
    if (!S.views.has(camera)) S.views.set(camera, null);
    try {
      const v = await api(`${path()}/cameras/${encodeURIComponent(camera)}/view`);
      S.views.set(camera, v);
      if (S.station) renderCameras(S.station);
    } catch (_) { /* the decision is then shown from health alone */ }
  }

  // The decision on a camera's view as the controller recorded it, and whether the station
  // holds it (compared with what health reports).
  function viewDecision(camera, reported) {
    const v = S.views.get(camera);
    const held = reported && reported.decision;
    const cur = v && v.current;
    const parts = [];
    if (cur) {
      parts.push(h('span', { class: `view-decision vd-${cur.decision}` }, cur.decision),
        ` by ${cur.decided_by} ${when(cur.decided_at)}`);
      if (cur.reason) parts.push(h('div', { class: 'view-reason' }, cur.reason));
      const onStation = held && held.state === cur.decision && held.by === cur.decided_by;
      parts.push(h('div', { class: onStation ? 'muted' : 'warn-text' }, onStation ? 'held by the station' : 'not yet held by the station'));
    }
    if (held && held.state === 'replaced') {
      parts.push(h('div', { class: 'view-reason warn-text' }, `camera replaced (${held.reason}): approve the view again`));
    } else if (!cur && held) {
      parts.push(h('span', { class: `view-decision vd-${held.state}` }, held.state), ` by ${held.by} ${when(held.at)}`,
        held.reason ? h('div', { class: 'view-reason' }, held.reason) : null);
    }
    if (v && v.masks && v.masks.stored) {
      const inSync = Boolean(reported) && (reported.masks_digest || '') === v.masks.stored_digest;
      parts.push(h('div', { class: `masks-sync ${inSync ? 'muted' : 'warn-text'}` },
        `${v.masks.stored} privacy mask${v.masks.stored === 1 ? '' : 's'} ${inSync ? 'held by the station' : 'not yet held by the station'}`));
    }
    return parts.length ? parts : null;
  }

  async function viewAction(action, camera) {
    let reason = '';
    if (action === 'approve') {
      if (!window.confirm(`Approve what the latest snapshot of camera ${camera} shows as its view? Look at it first: from now on a camera turned away or out of focus raises an alert.`)) return;
    } else if (action === 'refuse') {
      reason = window.prompt(`Why is the view of camera ${camera} refused? The technician on site reads this (e.g. "voting booth visible").`, '');
      if (reason === null) return;
      if (!reason.trim()) { window.alert('A refusal needs a reason.'); return; }
    } else if (!window.confirm(`Reset the view of camera ${camera}? Moved and blurred are no longer checked until it is approved again.`)) return;
    const out = $('command-result');
    try {
      const r = await api(`${path()}/cameras/${encodeURIComponent(camera)}/view`, { json: { decision: action, reason } });
      out.className = 'cmd-result ok';
      out.textContent = `view of ${camera}: ${r.decision}${r.reason ? ` (${r.reason})` : ''}; sent to the station`;
    } catch (err) {
      out.className = 'cmd-result bad';
      out.textContent = `view of ${camera} not decided: ${err.message}`;
    }
    await loadView(camera);
  }

  function maskOverlay(camera) {
    const e = S.maskEdit && S.maskEdit.camera === camera ? S.maskEdit : null;
    const polys = e ? [...e.masks, e.current] : (S.masks.get(camera) || []);
    const box = svg('svg', { class: 'masks', viewBox: '0 0 1 1', preserveAspectRatio: 'none' });
    for (const p of polys) {
      if (!p.length) continue;
      box.append(svg(p.length > 2 ? 'polygon' : 'polyline', { points: p.map(([x, y]) => `${x},${y}`).join(' ') }));
    }
    return box;
  }

  function maskButtons(camera, hasSnapshot) {
    const e = S.maskEdit && S.maskEdit.camera === camera ? S.maskEdit : null;
    const b = (action, label, title) => h('button', { type: 'button', class: 'btn small', dataset: { mask: action, camera }, title }, label);
    if (!e) {
      const n = (S.masks.get(camera) || []).length;
      return hasSnapshot ? b('edit', `Privacy masks (${n})`, 'draw the areas observers must not see (where ballots are marked)') : null;
    }
    return h('span', { class: 'mask-edit' }, 'Click the corners of a mask on the picture: ',
      b('close', 'Close mask', 'finish the mask being drawn (3 corners or more)'),
      b('undo', 'Undo corner'), b('clear', 'Remove all'), b('save', 'Save masks'), b('cancel', 'Cancel'));
  }

  async function maskAction(action, camera) {
    const e = S.maskEdit;
    if (action === 'edit') S.maskEdit = { camera, masks: (S.masks.get(camera) || []).map((p) => p.slice()), current: [] };
    else if (!e || e.camera !== camera) return;
    else if (action === 'close' && e.current.length >= 3) { e.masks.push(e.current); e.current = []; }
    else if (action === 'undo') e.current.pop();
    else if (action === 'clear') { e.masks = []; e.current = []; }
    else if (action === 'cancel') S.maskEdit = null;
    else if (action === 'save') {
      if (e.current.length >= 3) e.masks.push(e.current);
      const out = $('command-result');
      try {
        const m = await api(`${path()}/cameras/${encodeURIComponent(camera)}/masks`, { method: 'PUT', json: { masks: e.masks } });
        S.masks.set(camera, m.masks);
        S.maskEdit = null;
        loadView(camera);
        out.className = 'cmd-result ok';
        out.textContent = `privacy masks of ${camera} saved (${m.masks.length})`;
      } catch (err) {
        out.className = 'cmd-result bad';
        out.textContent = `privacy masks of ${camera} not saved: ${err.message}`;
      }
    }
    if (S.station) renderCameras(S.station);
  }

  function maskClick(ev, wrap) {
    const e = S.maskEdit;
    if (!e || e.camera !== wrap.dataset.camera) return;
    const r = wrap.querySelector('img').getBoundingClientRect();
    const x = Math.min(1, Math.max(0, (ev.clientX - r.left) / r.width));
    const y = Math.min(1, Math.max(0, (ev.clientY - r.top) / r.height));
    e.current.push([Number(x.toFixed(4)), Number(y.toFixed(4))]);
    if (S.station) renderCameras(S.station);
  }


  // ---- live video through the gateway (docs/live.md): operators and admins only, unmasked

  function stopLive() {
    for (const p of S.live.values()) {
      if (p.hls) p.hls.destroy();
      clearInterval(p.timer);
    }
    S.live = new Map();
  }

  /** Why a camera cannot be watched now, in plain words. */
  function liveReason(st) {
    const l = st.station;
    if (!l) return 'the station does not report a live branch for this camera';
    if (l.mode === 'off') return 'live off for this camera';
    if (l.rung === 'off') return 'record-only: uplink too weak';
    if (!st.gateway || !st.gateway.publishing) return 'not reaching the gateway';
    return 'waiting for the first segments';
  }

  async function loadLive(id) {
    const p = S.live.get(id);
    if (!p) return;
    let st;
    try {
      st = await api(`${path()}/cameras/${encodeURIComponent(id)}/live`);
    } catch (e) {
      p.line.textContent = e.status === 404 ? 'live viewing is not configured' : `live: ${e.message}`;
      return;
    }
    if (S.live.get(id) !== p) return;
    p.status = st;
    const parts = [];
    const l = st.station;
    if (l) {
      parts.push(`rung ${l.rung}`);
      if (l.send_bps !== undefined && l.send_bps !== null) parts.push(`sending ${bits(l.send_bps)}`);
      if (l.rtt_ms !== undefined && l.rtt_ms !== null) parts.push(`rtt ${Math.round(l.rtt_ms)} ms`);
    }
    if (st.gateway && st.gateway.publishing) parts.push(`${st.gateway.kbps} kbit/s at the gateway`);
    // delay_ms: the newest segment's age plus one segment (docs/live.md); the player's own
    // buffer comes on top, hence "at least".
    parts.push(st.delay_ms !== null && st.delay_ms !== undefined
      ? `delay ≥ ${(st.delay_ms / 1000).toFixed(1)} s` : 'delay unknown');
    if (l && !st.playable && l.reason) parts.push(l.reason);
    if (st.public) parts.push('public (masked)');
    p.line.textContent = (st.playable ? 'live' : liveReason(st)) + (parts.length ? ` · ${parts.join(' · ')}` : '');
    p.box.dataset.playable = st.playable ? 'yes' : 'no';
    if (p.pub) p.pub.textContent = st.public ? 'Make not public' : 'Make public';
    if (st.playable && !p.hls) startPlayer(id, p);
  }

  /** (Re)starts a camera's player. A rung change (main <-> sub) is a new stream with another
   *  picture size; when the browser's decoder gives up on it (a decode error), the player is
   *  rebuilt on the same video element and joins the live edge again. */
  function startPlayer(id, p) {
    if (!(window.Hls && window.Hls.isSupported())) return;
    if (p.hls) p.hls.destroy();
    const hls = new window.Hls({ liveSyncDurationCount: 2, enableWorker: false });
    hls.on(window.Hls.Events.ERROR, (_, data) => {
      if (!data.fatal) return;
      if (data.type === window.Hls.ErrorTypes.NETWORK_ERROR) hls.startLoad();
      else restartPlayer(id, p);
    });
    hls.loadSource(`${path()}/cameras/${encodeURIComponent(id)}/live/index.m3u8`);
    hls.attachMedia(p.video);
    p.video.play().catch(() => {});
    p.hls = hls;
  }

  function restartPlayer(id, p) {
    if (S.live.get(id) !== p || p.restarting) return;
    p.restarting = true;
    p.restarts = (p.restarts || 0) + 1;
    setTimeout(() => {
      p.restarting = false;
      if (S.live.get(id) === p) startPlayer(id, p);
    }, 1000);
  }

  function livePanel(id) {
    let p = S.live.get(id);
    if (!p) {
      const video = h('video', { class: 'live-video', muted: true, autoplay: true, playsinline: true, controls: true, dataset: { liveCamera: id } });
      video.muted = true;
      const line = h('div', { class: 'muted live-line' }, 'live: …');
      const pub = S.me && S.me.role === 'admin'
        ? h('button', { type: 'button', class: 'btn small', dataset: { livePublic: id } }, 'Make public') : null;
      const box = h('div', { class: 'live-player', dataset: { camera: id } }, video, line, pub);
      p = { box, video, line, pub, hls: null, status: null, timer: null };
      const player = p;
      video.addEventListener('error', () => restartPlayer(id, player));
      S.live.set(id, p);
      p.timer = setInterval(() => loadLive(id), 5000);
      loadLive(id);
    }
    return p.box;
  }

  async function togglePublic(id) {
    const p = S.live.get(id);
    const now = Boolean(p && p.status && p.status.public);
    const msg = now
      ? `Stop showing camera ${id} on the public page?`
      : `Show camera ${id} on the public page? The public sees it masked (draw the masks first), without sound.`;
    if (!window.confirm(msg)) return;
    try {
      await api(`${path()}/cameras/${encodeURIComponent(id)}/public`, { method: 'PUT', json: { public: !now } });
    } catch (e) {
      banner(`public: ${e.message}`);
    }
    loadLive(id);
  }

  function renderCameras(d) {
    const box = $('cameras');
    const hl = d.health || {};
    const cams = new Map(Object.entries(hl.cameras || {}));
    const snaps = new Map((d.snapshots || []).map((x) => [x.camera, x.received_at]));
    for (const c of snaps.keys()) if (!cams.has(c)) cams.set(c, null);
    if (!cams.size) {
      box.replaceChildren(h('p', { class: 'muted' }, 'No camera reported yet.'));
      return;
    }
    const may = S.me && S.me.may_command;
    // Images already on screen are kept (moved into the new card), not loaded again.
    const shown = new Map([...box.querySelectorAll('img[data-src]')].map((i) => [i.dataset.src, i]));
    const cards = [];
    for (const [id, c] of cams) {
      const snapAt = snaps.get(id);
      const state = c ? c.state : 'unknown';
      const src = snapAt ? `${path()}/cameras/${encodeURIComponent(id)}/snapshot?at=${snapAt}` : null;
      const img = src
        ? h('div', { class: `snapwrap${S.maskEdit && S.maskEdit.camera === id ? ' editing' : ''}`, dataset: { camera: id } },
          shown.get(src) || h('img', { src, alt: `latest snapshot of ${id}`, dataset: { src } }),
          maskOverlay(id))
        : h('div', { class: 'nosnap' }, 'no snapshot yet');
      if (!S.masks.has(id)) loadMasks(id);
      if (!S.views.has(id)) loadView(id);
      const facts = h('dl', { class: 'facts small' });
      if (c) {
        fact(facts, 'State', h('span', { class: `cstate cs-${state}` }, state), c.detail ? ` · ${c.detail}` : '');
        if (c.fps !== undefined) fact(facts, 'Frames', `${c.fps.toFixed(1)} fps`);
        if (c.bitrate_bps !== undefined) fact(facts, 'Recording', bits(c.bitrate_bps));
        fact(facts, 'Last segment', c.last_segment_end ? when(c.last_segment_end) : '—');
        if (c.live) {
          const l = c.live;
          const parts = [`${l.state}`, `rung ${l.rung}`, `mode ${l.mode}${l.overridden ? ' (set by command)' : ''}`];
          if (l.send_bps !== undefined) parts.push(`sending ${bits(l.send_bps)}`);
          if (l.uplink_bps !== undefined) parts.push(`uplink ${bits(l.uplink_bps)}`);
          if (l.rtt_ms !== undefined) parts.push(`rtt ${Math.round(l.rtt_ms)} ms`);
          if (l.loss !== undefined) parts.push(`loss ${(l.loss * 100).toFixed(1)} %`);
          fact(facts, 'Live', parts.join(' · '), l.reason ? h('div', { class: 'muted' }, l.reason) : null);
        }
        if (c.view) {
          const v = c.view;
          const problems = (v.problems || []).map((p) => h('div', { class: 'view-problem', dataset: { problem: p.kind } },
            h('strong', null, p.kind), ` since ${when(p.since)}`, p.detail ? h('div', { class: 'muted' }, p.detail) : null));
          fact(facts, 'View', h('span', { class: `view-state ${v.approved ? 'approved' : 'unapproved'}` },
            v.approved ? 'approved' : 'not approved: only black, covered and frozen are checked'),
          problems.length ? problems : h('div', { class: 'muted view-ok' }, 'picture looks normal'));
          const decided = viewDecision(id, v);
          if (decided) fact(facts, 'Decision', h('div', { class: 'view-decided' }, ...decided));
        }
      }
      fact(facts, 'Snapshot', snapAt ? when(snapAt) : '—');
      let buttons = null;
      if (may) {
        buttons = h('div', { class: 'cmd-row' },
          h('button', { type: 'button', class: 'btn', dataset: { cmd: 'snapshot', camera: id } }, 'Take snapshot'),
          h('button', { type: 'button', class: 'btn warn', dataset: { cmd: 'restart_camera', camera: id } }, 'Restart camera'),
          c && c.view ? h('button', {
            type: 'button',
            class: 'btn',
            dataset: { view: 'approve', camera: id },
            disabled: !snapAt,
            title: snapAt ? 'approve what the latest snapshot shows as the camera\'s view' : 'take a snapshot first',
          }, c.view.approved ? 'Approve current view again' : 'Approve view') : null,
          c && c.view ? h('button', {
            type: 'button',
            class: 'btn small warn',
            dataset: { view: 'refuse', camera: id },
            disabled: !snapAt,
            title: 'refuse the view, with a reason the technician sees (e.g. voting booth visible)',
          }, 'Refuse view…') : null,
          maskButtons(id, Boolean(snapAt)),
          c && c.view && c.view.approved ? h('button', {
            type: 'button',
            class: 'btn small',
            dataset: { view: 'reset', camera: id },
            title: 'forget the approved view (e.g. after the camera was replaced)',
          }, 'Reset view') : null,
          c && c.live ? h('span', { class: 'live-set' }, 'Live: ',
            ['auto', 'on', 'off', 'config'].map((m) => h('button', {
              type: 'button',
              class: `btn small${c.live.mode === m ? ' active' : ''}`,
              dataset: { cmd: 'set_live', camera: id, mode: m },
              title: m === 'config' ? 'back to the configured mode' : `stream ${m}`,
            }, m))) : null);
      }
      const live = c && c.live && may ? livePanel(id) : null;
      cards.push(h('article', { class: `camera cs-${state}`, dataset: { camera: id } },
        h('header', null, h('strong', null, id), ' ', h('span', { class: `cstate cs-${state}` }, state)),
        img, live, facts, buttons));
    }
    box.replaceChildren(...cards);
  }

  async function loadEvents() {
    const id = S.stationId;
    try {
      const { events } = await api(`${path()}/events?limit=100`);
      if (id !== S.stationId) return;
      const rows = events.map((e) => h('tr', { dataset: { kind: e.kind } },
        h('td', null, when(e.at)),
        h('td', null, e.kind.replace(/_/g, ' ')),
        h('td', null, e.camera || ''),
        h('td', { class: 'detail' }, eventDetail(e.body))));
      fill('events', rows, 4, 'No event yet.');
    } catch (e) {
      fill('events', [], 4, `Cannot read events: ${e.message}`);
    }
  }

  function eventDetail(body) {
    if (!body || typeof body !== 'object') return '';
    const skip = new Set(['v', 'id', 'at', 'kind', 'camera']);
    return Object.entries(body).filter(([k]) => !skip.has(k)).map(([k, v]) => {
      if (k.endsWith('_bytes') && typeof v === 'number') v = bytes(v);
      else if (k.endsWith('_bps') && typeof v === 'number') v = bits(v);
      else if (k === 'hours_left' && typeof v === 'number') v = hours(v);
      else if (typeof v === 'object') v = JSON.stringify(v);
      return `${k.replace(/_/g, ' ')}: ${v}`;
    }).join(' · ');
  }

  function fill(tableId, rows, cols, empty) {
    const tb = $(tableId).tBodies[0];
    if (rows.length) tb.replaceChildren(...rows);
    else tb.replaceChildren(h('tr', null, h('td', { colspan: cols, class: 'muted' }, empty)));
  }

  async function loadStationAlerts() {
    const id = S.stationId;
    try {
      const { alerts } = await api(`${path()}/alerts?limit=100`);
      if (id !== S.stationId) return;
      const rows = alerts.map((a) => h('tr', { class: a.closed_at ? 'closed' : 'open', dataset: { kind: a.kind, open: !a.closed_at } },
        h('td', null, alertKind(a.kind)),
        h('td', null, a.detail),
        h('td', null, when(a.opened_at)),
        h('td', null, a.closed_at ? [localTime(a.closed_at), h('span', { class: 'muted' }, ` (after ${duration((a.closed_at - a.opened_at) / 1000)})`)]
          : h('span', { class: 'badge st-offline' }, 'open'))));
      fill('station-alerts', rows, 4, 'No alert.');
    } catch (e) {
      fill('station-alerts', [], 4, `Cannot read alerts: ${e.message}`);
    }
  }

  let commandTimer = null;
  async function loadCommands() {
    const id = S.stationId;
    clearTimeout(commandTimer);
    commandTimer = null;
    try {
      const { commands } = await api(`${path()}/commands?limit=50`);
      if (id !== S.stationId) return;
      const rows = commands.map((c) => {
        const args = Object.assign({}, c.body);
        delete args.kind;
        const argText = Object.entries(args).map(([k, v]) => `${k}: ${v}`).join(' · ');
        return h('tr', { dataset: { command: c.id, status: c.status } },
          h('td', null, when(c.issued_at)),
          h('td', null, h('strong', null, c.kind.replace(/_/g, ' ')), argText ? h('div', { class: 'muted' }, argText) : null),
          h('td', null, c.issued_by),
          h('td', null, h('span', { class: `cmd-status s-${c.status}` }, c.status)),
          h('td', { class: 'detail' }, ackText(c), c.ack_at ? h('span', { class: 'muted' }, ' · ', age(c.ack_at)) : null));
      });
      fill('commands', rows, 5, 'No command sent yet.');
      const mine = S.lastCommand && commands.find((c) => c.id === S.lastCommand);
      if (mine && FINAL.has(mine.status)) {
        const out = $('command-result');
        out.className = `cmd-result ${mine.status === 'done' ? 'ok' : 'bad'}`;
        const why = ackText(mine);
        out.textContent = `${mine.kind} ${mine.status}${why ? `: ${why}` : ''}`;
        S.lastCommand = null;
      }
      const pending = commands.some((c) => !FINAL.has(c.status));
      if (pending && S.view === 'station') {
        commandTimer = setTimeout(() => {
          if (S.view !== 'station' || id !== S.stationId) return;
          const hadSnapshot = commands.some((c) => c.kind === 'snapshot' && !FINAL.has(c.status));
          loadCommands().then(() => { if (hadSnapshot) loadStation(); });
        }, COMMAND_POLL_MS);
      }
    } catch (e) {
      fill('commands', [], 5, `Cannot read commands: ${e.message}`);
    }
  }

  function ackText(c) {
    const a = c.ack;
    if (!a) return '';
    if (a.reason) return `${a.reason.code}: ${a.reason.message}`;
    if (a.error) return a.error;
    if (a.result !== undefined && a.result !== null) {
      return typeof a.result === 'object'
        ? Object.entries(a.result).map(([k, v]) => {
          let t = typeof v === 'object' ? JSON.stringify(v) : String(v);
          if (t.length > 40) t = `${t.slice(0, 16)}…`; // hashes, topics
          return `${k}: ${t}`;
        }).join(' · ')
        : String(a.result);
    }
    return '';
  }

  async function sendCommand(cmd) {
    const out = $('command-result');
    out.className = 'cmd-result';
    out.textContent = `sending ${cmd.kind}…`;
    try {
      const r = await api(`${path()}/commands`, { json: cmd });
      out.classList.add('ok');
      out.textContent = `${cmd.kind} sent (${r.id}); waiting for the station's answer`;
      S.lastCommand = r.id;
      loadCommands();
    } catch (e) {
      out.classList.add('bad');
      out.textContent = `${cmd.kind} refused: ${e.message}`;
    }
  }

  // ---- health chart (inline SVG)

  const SVG = 'http://www.w3.org/2000/svg';
  function svg(tag, attrs, ...kids) {
    const el = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, String(v));
    for (const k of kids) el.append(k instanceof Node ? k : document.createTextNode(String(k)));
    return el;
  }

  const SERIES = [
    { key: 'hours_left', label: 'Disk: hours left', fmt: hours, color: '#1565c0', zero: true },
    { key: 'recording', label: 'Cameras recording', fmt: (v) => `${v}`, color: '#2e7d32', zero: true, max: 'cameras', step: true },
    { key: 'bitrate_bps', label: 'Recording bitrate', fmt: bits, color: '#6a1b9a', zero: true },
    { key: 'load_1m', label: 'Load (1 min)', fmt: (v) => v.toFixed(2), color: '#ef6c00', zero: true },
    { key: 'temperature_c', label: 'Temperature', fmt: (v) => `${v.toFixed(1)} °C`, color: '#c62828' },
    { key: 'upload_backlog_bytes', label: 'Upload backlog', fmt: bytes, color: '#00838f', zero: true },
    { key: 'upload_rate_bps', label: 'Upload rate', fmt: bits, color: '#558b2f', zero: true },
  ];

  async function loadChart() {
    const id = S.stationId;
    const hrs = S.chartHours;
    for (const b of document.querySelectorAll('#chart-hours button')) b.classList.toggle('active', +b.dataset.hours === hrs);
    try {
      const { points } = await api(`${path()}/health?hours=${hrs}&limit=10000`);
      if (id !== S.stationId) return;
      drawChart(points, hrs);
    } catch (e) {
      $('chart').replaceChildren(h('p', { class: 'error' }, `Cannot read the history: ${e.message}`));
    }
  }

  function drawChart(points, hrs) {
    const box = $('chart');
    if (!points.length) {
      box.replaceChildren(h('p', { class: 'muted' }, `No health report in the last ${hrs} h.`));
      return;
    }
    const W = 600;
    const PH = 56; // plot height
    const GAP = 30; // room for the title line
    const LEFT = 4;
    const now = Date.now();
    const t0 = now - hrs * 3600e3;
    const x = (t) => LEFT + ((t - t0) / (now - t0)) * (W - LEFT * 2);
    // A break in the line where reports are missing (> 3 typical intervals apart).
    const deltas = [];
    for (let i = 1; i < points.length; i++) deltas.push(points[i].at - points[i - 1].at);
    deltas.sort((a, b) => a - b);
    const typical = deltas.length ? deltas[Math.floor(deltas.length / 2)] : 15000;
    const breakAfter = Math.max(typical * 3, 5000);
    const shown = SERIES.filter((s) => points.some((p) => typeof p.figures[s.key] === 'number'));
    const H = shown.length * (PH + GAP) + 18;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, class: 'chart-svg', role: 'img', 'aria-label': 'health history' });
    shown.forEach((s, i) => {
      const top = i * (PH + GAP) + GAP;
      const vals = points.filter((p) => typeof p.figures[s.key] === 'number');
      let lo = Math.min(...vals.map((p) => p.figures[s.key]));
      let hi = Math.max(...vals.map((p) => p.figures[s.key]));
      if (s.max) hi = Math.max(hi, ...points.map((p) => p.figures[s.max] || 0));
      if (s.zero) lo = Math.min(0, lo);
      if (hi === lo) hi = lo + 1;
      const y = (v) => top + PH - ((v - lo) / (hi - lo)) * PH;
      const lastV = vals[vals.length - 1].figures[s.key];
      root.append(
        svg('text', { x: LEFT, y: top - 8, class: 'c-title' }, `${s.label}: `, svg('tspan', { class: 'c-last', fill: s.color }, s.fmt(lastV))),
        svg('text', { x: W - LEFT, y: top - 8, class: 'c-range', 'text-anchor': 'end' }, `${s.fmt(lo)} – ${s.fmt(hi)}`),
        svg('rect', { x: LEFT, y: top, width: W - LEFT * 2, height: PH, class: 'c-bg' }));
      // Downsample to about one point per pixel column (mean), keeping breaks.
      let d = '';
      let prevT = null;
      let bucket = null;
      const flush = () => {
        if (!bucket) return;
        const v = bucket.sum / bucket.n;
        const px = x(bucket.t).toFixed(1);
        const py = y(v).toFixed(1);
        if (bucket.move) d += `M${px},${py}`;
        else if (s.step) d += `H${px}V${py}`;
        else d += `L${px},${py}`;
        bucket = null;
      };
      for (const p of vals) {
        const v = p.figures[s.key];
        const brk = prevT === null || p.at - prevT > breakAfter;
        const col = Math.round(x(p.at));
        if (bucket && (brk || Math.round(x(bucket.t)) !== col)) flush();
        if (!bucket) bucket = { t: p.at, sum: 0, n: 0, move: brk };
        bucket.sum += v;
        bucket.n += 1;
        prevT = p.at;
      }
      flush();
      root.append(svg('path', { d, class: 'c-line', stroke: s.color }));
      // The latest value as a dot: visible even when all points fall in one pixel column.
      const lastP = vals[vals.length - 1];
      root.append(svg('circle', { cx: x(lastP.at).toFixed(1), cy: y(lastV).toFixed(1), r: 2.5, fill: s.color }));
    });
    // Time axis: start, middle, end.
    const axisY = H - 4;
    [t0, (t0 + now) / 2, now].forEach((t, i) => {
      root.append(svg('text', { x: i === 0 ? LEFT : i === 2 ? W - LEFT : W / 2, y: axisY, class: 'c-axis', 'text-anchor': ['start', 'middle', 'end'][i] },
        i === 2 ? 'now' : localTime(t)));
    });
    box.replaceChildren(root);
  }

  // ---- views and routing

  function show(view) {
    S.view = view;
    $('list-view').hidden = view !== 'list';
    $('station-view').hidden = view !== 'station';
    clearTimeout(commandTimer);
  }

  function route() {
    const m = location.pathname.match(/^\/stations\/([^/]+)\/?$/);
    if (m) {
      const id = decodeURIComponent(m[1]);
      show('station');
      if (S.stationId !== id) {
        S.stationId = id;
        S.station = null;
        S.masks = new Map();
        S.views = new Map();
        stopLive();
        S.maskEdit = null;
        $('station-title').textContent = id;
        $('station-name').textContent = '';
        $('station-reasons').replaceChildren();
        $('cameras').replaceChildren();
        $('station-facts').replaceChildren();
        $('chart').replaceChildren();
        $('command-result').textContent = '';
        S.lastCommand = null;
        for (const t of ['commands', 'events', 'station-alerts']) $(t).tBodies[0].replaceChildren();
        $('hold-id').value = defaultHoldId();
      }
      document.title = `${id} · Stationwatch`;
      $('station-commands').hidden = !(S.me && S.me.may_command);
      refreshStation();
      loadChart();
      window.scrollTo(0, 0);
    } else {
      show('list');
      stopLive();
      S.stationId = null;
      document.title = 'Stationwatch';
      readFilters();
      loadPage();
      loadAlerts();
    }
  }

  function navigate(url) {
    history.pushState(null, '', url);
    route();
  }

  function defaultHoldId() {
    const d = new Date();
    const p = (n) => String(n).padStart(2, '0');
    return `hold-${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}-${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
  }

  function localInput(d) {
    const p = (n) => String(n).padStart(2, '0');
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }

  // ---- wiring

  function wire() {
    document.addEventListener('click', (ev) => {
      const a = ev.target.closest('a[data-nav]');
      if (a && !ev.ctrlKey && !ev.metaKey && !ev.shiftKey && !ev.altKey && ev.button === 0) {
        ev.preventDefault();
        const url = new URL(a.href);
        if (url.pathname + url.search !== location.pathname + location.search) navigate(url.pathname + url.search);
        return;
      }
      const vb = ev.target.closest('button[data-view]');
      if (vb) {
        viewAction(vb.dataset.view, vb.dataset.camera);
        return;
      }
      const lp = ev.target.closest('button[data-live-public]');
      if (lp) {
        togglePublic(lp.dataset.livePublic);
        return;
      }
      const mb = ev.target.closest('button[data-mask]');
      if (mb) {
        maskAction(mb.dataset.mask, mb.dataset.camera);
        return;
      }
      const wrap = ev.target.closest('.snapwrap.editing');
      if (wrap) {
        maskClick(ev, wrap);
        return;
      }
      const b = ev.target.closest('button[data-cmd]');
      if (b) {
        const cmd = { kind: b.dataset.cmd, camera: b.dataset.camera };
        if (cmd.kind === 'set_live') cmd.mode = b.dataset.mode;
        if (cmd.kind === 'restart_camera'
          && !window.confirm(`Restart camera ${cmd.camera}? Its recording pauses for a few seconds (a gap is recorded).`)) return;
        sendCommand(cmd);
        return;
      }
      const row = ev.target.closest('#station-rows tr[data-station]');
      if (row && !ev.target.closest('a') && !window.getSelection().toString()) {
        navigate(`/stations/${encodeURIComponent(row.dataset.station)}`);
      }
    });
    window.addEventListener('popstate', route);

    for (const b of document.querySelectorAll('#counts .count')) {
      b.addEventListener('click', () => {
        if (S.view !== 'list') {
          history.pushState(null, '', b.dataset.filter ? `/?state=${b.dataset.filter}` : '/');
          route();
        } else {
          setFilters({ state: b.dataset.filter });
        }
      });
    }
    $('filters').addEventListener('submit', (ev) => ev.preventDefault());
    // Admins: the codes open and those of the last two weeks; an open one can be revoked.
    async function loadEnrollCodes() {
      let r;
      try {
        r = await api('/api/enrollments');
      } catch (err) {
        $('enroll-codes').replaceChildren(h('tr', null, h('td', { colspan: 5, class: 'error' }, `Cannot list codes: ${err.message}`)));
        return;
      }
      const now = Date.now();
      const rows = r.codes.map((c) => {
        let state = 'open';
        if (c.used_at) state = 'used';
        else if (c.revoked_at) state = `revoked by ${c.revoked_by}`;
        else if (c.expires_at < now) state = 'expired';
        const revoke = state === 'open'
          ? h('button', { class: 'btn small', 'data-revoke': c.id, title: 'refuse this code from now on' }, 'Revoke')
          : '';
        return h('tr', { 'data-code': c.id, 'data-state': state.split(' ')[0] },
          h('td', null, c.station), h('td', null, state), h('td', null, c.created_by),
          h('td', null, when(c.expires_at)), h('td', null, revoke));
      });
      $('enroll-codes').replaceChildren(...rows);
      $('enroll-codes-none').hidden = rows.length > 0;
    }
    $('enroll-codes').addEventListener('click', async (ev) => {
      const b = ev.target.closest('button[data-revoke]');
      if (!b) return;
      const row = b.closest('tr');
      if (!window.confirm(`Revoke the enrollment code for ${row.firstChild.textContent}? The device can no longer use it.`)) return;
      try {
        await api(`/api/enrollments/${encodeURIComponent(b.dataset.revoke)}`, { method: 'DELETE' });
      } catch (err) {
        $('enroll-result').className = 'error';
        $('enroll-result').textContent = `Not revoked: ${err.message}`;
      }
      loadEnrollCodes();
    });
    S.loadEnrollCodes = loadEnrollCodes;
    // Admins: a one-time enrollment code for a station (docs/enrollment.md), shown once.
    $('enroll-form').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const station = $('enroll-station').value.trim();
      const out = $('enroll-result');
      try {
        const r = await api('/api/enrollments', { json: { station } });
        out.className = 'enroll-code';
        out.replaceChildren(
          h('div', null, `Code for ${r.station}, valid until ${when(r.expires_at)}:`),
          h('code', { id: 'enroll-code' }, r.code),
          h('div', { class: 'muted' }, `On the device: station-agent enroll --config /etc/stationwatch/agent.toml --controller ${location.origin} --code ${r.code}`));
      } catch (err) {
        out.className = 'error';
        out.textContent = `No code: ${err.message}`;
      }
      loadEnrollCodes();
    });
    $('filter-state').addEventListener('change', (ev) => setFilters({ state: ev.target.value }));
    $('filter-region').addEventListener('change', (ev) => setFilters({ region: ev.target.value }));
    let searchTimer = null;
    $('search').addEventListener('input', (ev) => {
      clearTimeout(searchTimer);
      searchTimer = setTimeout(() => setFilters({ q: ev.target.value.trim() }), 250);
    });
    $('prev').addEventListener('click', () => setFilters({ offset: Math.max(0, S.filters.offset - PAGE) }));
    $('next').addEventListener('click', () => setFilters({ offset: S.filters.offset + PAGE }));
    document.addEventListener('keydown', (ev) => {
      if (ev.key === '/' && S.view === 'list' && document.activeElement.tagName !== 'INPUT') {
        ev.preventDefault();
        $('search').focus();
      } else if (ev.key === 'Escape' && S.view === 'station' && document.activeElement.tagName !== 'INPUT') {
        navigate('/');
      }
    });

    $('logout').addEventListener('click', async () => {
      try { await fetch('/api/logout', { method: 'POST', credentials: 'same-origin' }); } catch (_) { /* leaving anyway */ }
      location.assign('/login');
    });

    $('cmd-ping').addEventListener('click', () => sendCommand({ kind: 'ping' }));
    $('hold-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const from = new Date($('hold-from').value);
      const to = new Date($('hold-to').value);
      if (Number.isNaN(from.getTime()) || Number.isNaN(to.getTime()) || from >= to) {
        $('command-result').className = 'cmd-result bad';
        $('command-result').textContent = 'The hold needs a start before its end.';
        return;
      }
      const cmd = {
        kind: 'set_hold',
        hold: $('hold-id').value.trim(),
        from: from.toISOString(),
        to: to.toISOString(),
        reason: $('hold-reason').value.trim(),
      };
      if ($('hold-camera').value) cmd.camera = $('hold-camera').value;
      sendCommand(cmd);
    });
    $('clear-hold-form').addEventListener('submit', (ev) => {
      ev.preventDefault();
      const hold = $('clear-hold-id').value.trim();
      if (window.confirm(`Clear legal hold ${hold}? Footage it protects may then be deleted by retention.`)) {
        sendCommand({ kind: 'clear_hold', hold });
      }
    });
    for (const b of document.querySelectorAll('#chart-hours button')) {
      b.addEventListener('click', () => { S.chartHours = +b.dataset.hours; loadChart(); });
    }
    const now = new Date();
    $('hold-to').value = localInput(new Date(now.getTime() + 3600e3));
    $('hold-from').value = localInput(new Date(now.getTime() - 24 * 3600e3));

    // The only timer for ages on screen: at most a few hundred elements, once a second.
    setInterval(() => {
      for (const el of document.querySelectorAll('[data-age]')) {
        const txt = ago(+el.dataset.age) + (el.dataset.suffix || '');
        if (el.textContent !== txt) el.textContent = txt;
      }
    }, 1000);
    // Regions and the broker's state change rarely; the counts come with every live update.
    setInterval(loadSummary, 30000);
    // Alerts also open without any station changing its row (e.g. from another replica).
    setInterval(() => { if (S.view === 'list') scheduleAlerts(); }, 15000);
    // The chart follows slowly.
    setInterval(() => { if (S.view === 'station') loadChart(); }, 60000);
  }

  async function start() {
    wire();
    try {
      S.me = await api('/api/me');
    } catch (e) {
      banner(`Cannot reach the controller: ${e.message}`);
      S.me = { may_command: false };
    }
    $('me').textContent = S.me.username ? `${S.me.username} (${S.me.role})` : '';
    document.body.dataset.role = S.me.role || '';
    $('enroll').hidden = S.me.role !== 'admin';
    if (S.me.role === 'admin' && S.loadEnrollCodes) S.loadEnrollCodes();
    await loadSummary();
    route();
    connect();
  }

  start();
})();
