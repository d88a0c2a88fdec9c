// Stationwatch requests for recordings: the list (observers: their own; staff: the queue) with
// the form to file one (`/requests`), and one request (`/requests/{id}`): its status pushed
// live (server-sent events, `request`), staff's decision, the upload progress, and once
// delivered the recorded window played in the page (the station's MPEG-TS segments through the
// vendored hls.js, never re-encoded), its timeline of recorded spans and gaps, the station time
// of the frame shown, and the evidence bundle to download. Plain JavaScript, no build step.
'use strict';

(() => {
  const FINAL = new Set(['refused', 'ready', 'ready_with_gaps', 'failed']);
  const DELIVERED = new Set(['ready', 'ready_with_gaps']);
  const LABEL = {
    submitted: 'submitted — waiting for a decision',
    refused: 'refused',
    collecting: 'collecting from the station',
    ready: 'ready',
    ready_with_gaps: 'ready, with gaps',
    failed: 'failed',
  };
  const S = { me: null, view: null, id: null, req: null, hls: null, camera: null, timeline: null };
  const $ = (id) => document.getElementById(id);

  function h(tag, attrs, ...kids) {
    const el = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'class') el.className = v;
      else if (k === 'dataset') Object.assign(el.dataset, v);
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) el.addEventListener(ev, fn);
      else if (k === 'text') el.textContent = v;
      else el.setAttribute(k, v === true ? '' : String(v));
    }
    for (const k of kids.flat()) {
      if (k === undefined || k === null || k === false) continue;
      el.append(k instanceof Node ? k : String(k));
    }
    return el;
  }

  class ApiError extends Error {
    constructor(status, message) { super(message); this.status = status; }
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
    try { r = await fetch(path, init); } catch (e) { throw new ApiError(0, `controller unreachable (${e.message})`); }
    if (r.status === 401) { location.assign('/login'); return new Promise(() => {}); }
    const text = await r.text();
    let body = null;
    try { body = text ? JSON.parse(text) : null; } catch (_) { body = null; }
    if (!r.ok) throw new ApiError(r.status, (body && body.error) || `${r.status} ${r.statusText}`);
    return body;
  }

  function banner(msg) { $('banner').textContent = msg || ''; $('banner').hidden = !msg; }
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  /** Local time of a Unix ms, to the second. */
  function local(ms) {
    if (ms === null || ms === undefined) return '—';
    const d = new Date(ms);
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  }
  /** UTC time of a Unix ms with milliseconds (what the station's manifest says). */
  function utc(ms) { return new Date(ms).toISOString().replace('T', ' ').replace('Z', ' UTC'); }
  function secs(ms) { return `${(ms / 1000).toFixed(1)} s`; }
  function statusPill(status) {
    return h('span', { class: `rstatus rs-${status}`, text: LABEL[status] || status });
  }

  // ---- list

  async function loadList() {
    const all = $('show-all').checked;
    let d;
    try { d = await api(`/api/requests?status=${all ? 'all' : 'open'}`); } catch (e) { banner(e.message); return; }
    const staff = S.me && S.me.may_command;
    $('list-title').textContent = staff
      ? (all ? 'All requests' : 'Open requests — waiting for a decision first, then by deadline')
      : (all ? 'My requests' : 'My open requests');
    const tbody = $('requests').querySelector('tbody');
    tbody.replaceChildren(...d.requests.map((r) => h('tr', {
      class: `rq-row rs-${r.status}`,
      dataset: { id: r.id },
      tabindex: 0,
      on: { click: () => navigate(`/requests/${r.id}`), keydown: (e) => { if (e.key === 'Enter') navigate(`/requests/${r.id}`); } },
    },
    h('td', {}, statusPill(r.status)),
    h('td', { text: r.station_id }),
    h('td', { text: `${local(r.from_ms)} → ${local(r.to_ms)} · ${r.cameras.join(', ')}` }),
    h('td', { text: r.requested_by }),
    h('td', { text: local(r.requested_at) }),
    h('td', { class: 'reason', text: r.reason }))));
    $('requests-empty').hidden = d.requests.length > 0;
  }

  async function loadStations() {
    try {
      const d = await api('/api/stations?limit=1000');
      $('rq-stations').replaceChildren(...(d.stations || []).map((s) => h('option', { value: s.id, text: s.name || s.id })));
    } catch (_) { /* the form still takes a typed id */ }
  }

  function isoFromLocalInput(v) {
    const d = new Date(v); // datetime-local is local time
    return Number.isNaN(d.getTime()) ? null : d.toISOString();
  }

  async function submitRequest(ev) {
    ev.preventDefault();
    $('rq-error').textContent = '';
    const cams = $('rq-cameras').value.split(',').map((c) => c.trim()).filter((c) => c && c !== 'all');
    const body = {
      station: $('rq-station').value.trim(),
      cameras: cams,
      from: isoFromLocalInput($('rq-from').value),
      to: isoFromLocalInput($('rq-to').value),
      reason: $('rq-reason').value,
    };
    if (!body.from || !body.to) { $('rq-error').textContent = 'give the window\'s start and end'; return; }
    $('rq-submit').disabled = true;
    try {
      const r = await api('/api/requests', { json: body });
      navigate(`/requests/${r.id}`);
    } catch (e) {
      $('rq-error').textContent = e.message;
    } finally {
      $('rq-submit').disabled = false;
    }
  }

  // ---- one request

  async function loadRequest() {
    let r;
    try { r = await api(`/api/requests/${encodeURIComponent(S.id)}`); } catch (e) {
      banner(e.status === 404 ? 'No such request (or not yours).' : e.message);
      return;
    }
    banner('');
    const was = S.req && S.req.status;
    S.req = r;
    $('r-id').textContent = r.id;
    $('r-status').replaceChildren(statusPill(r.status));
    $('r-status').dataset.status = r.status;
    const facts = [
      ['Station', r.station_id],
      ['Cameras', r.cameras.join(', ')],
      ['Window', `${local(r.from_ms)} → ${local(r.to_ms)} (${secs(r.to_ms - r.from_ms)})`],
      ['Reason', r.reason],
      ['Requested', `${local(r.requested_at)} by ${r.requested_by}`],
    ];
    if (r.decided_by) facts.push([r.status === 'refused' ? 'Refused' : 'Approved', `${local(r.decided_at)} by ${r.decided_by}${r.decision ? ` — ${r.decision}` : ''}`]);
    if (r.deadline_at && !FINAL.has(r.status)) facts.push(['Deadline', local(r.deadline_at)]);
    if (r.ready_at) facts.push(['Delivered', local(r.ready_at)]);
    if (r.hold_until) facts.push(['Kept in the archive until at least', local(r.hold_until)]);
    $('r-facts').replaceChildren(...facts.flatMap(([k, v]) => [h('dt', { text: k }), h('dd', { text: v })]));
    $('r-history').replaceChildren(...r.history.map((t) => h('li', {},
      h('time', { text: local(t.at) }), ' ', statusPill(t.status), ` by ${t.by}`, t.note ? ` — ${t.note}` : '')));
    $('r-decide').hidden = !(S.me && S.me.may_command && r.status === 'submitted');
    const p = r.progress && r.progress.job;
    $('r-progress').hidden = r.status !== 'collecting';
    if (r.status === 'collecting') {
      const pct = p && p.bytes_total ? Math.round((100 * p.bytes_done) / p.bytes_total) : 0;
      $('r-bar').style.width = `${pct}%`;
      const eta = r.progress && r.progress.eta_s !== null && r.progress.eta_s !== undefined ? ` · about ${r.progress.eta_s} s left` : '';
      const online = r.progress && r.progress.station_online === false ? ' · the station is offline' : '';
      $('r-progress-text').textContent = p
        ? `${p.segments_done}/${p.segments_total} segments · ${pct} %${eta}${online}`
        : `waiting for the station to take the upload${online}`;
    }
    $('r-media').hidden = !DELIVERED.has(r.status);
    if (DELIVERED.has(r.status) && was !== r.status) await setupMedia(r);
  }

  async function decide(approve) {
    $('r-decide-error').textContent = '';
    try {
      await api(`/api/requests/${encodeURIComponent(S.id)}/decision`, { json: { approve, reason: $('r-note').value } });
      await loadRequest();
    } catch (e) {
      $('r-decide-error').textContent = e.message;
    }
  }

  async function setupMedia(r) {
    $('r-bundle').href = `/api/requests/${encodeURIComponent(r.id)}/bundle`;
    const sel = $('r-camera');
    sel.replaceChildren(...r.cameras.map((c) => h('option', { value: c, text: c })));
    try { S.timeline = await api(`/api/requests/${encodeURIComponent(r.id)}/timeline`); } catch (e) { banner(e.message); }
    play(r.cameras[0]);
  }

  function play(camera) {
    S.camera = camera;
    $('r-mp4').href = `/api/requests/${encodeURIComponent(S.req.id)}/mp4/${encodeURIComponent(camera)}`;
    $('r-mp4').textContent = `Download MP4 (${camera})`;
    $('r-mp4').hidden = false;
    const video = $('r-video');
    if (S.hls) { S.hls.destroy(); S.hls = null; }
    const url = `/api/requests/${encodeURIComponent(S.req.id)}/hls/${encodeURIComponent(camera)}`;
    if (window.Hls && window.Hls.isSupported()) {
      // No worker: the page's policy allows no blob: scripts.
      const hls = new window.Hls({ enableWorker: false, xhrSetup: (xhr) => { xhr.withCredentials = true; } });
      hls.on(window.Hls.Events.ERROR, (_, data) => {
        if (data.fatal) {
          video.dataset.error = data.details;
          banner(`Playback error: ${data.details}`);
        }
      });
      hls.on(window.Hls.Events.MANIFEST_PARSED, () => {
        // Muted, so browsers let it start by itself; the controls are there to pause.
        video.play().catch(() => {});
      });
      hls.loadSource(url);
      hls.attachMedia(video);
      S.hls = hls;
    } else if (video.canPlayType('application/vnd.apple.mpegurl')) {
      video.src = url;
    } else {
      banner('This browser cannot play the recording; download the evidence bundle instead.');
    }
    drawTimeline();
  }

  /** Fragments of the loaded playlist: [{start (media s), duration (s), pdt (Unix ms)}]. */
  function fragments() {
    const lv = S.hls && S.hls.levels && S.hls.levels[0];
    const frags = (lv && lv.details && lv.details.fragments) || [];
    return frags.map((f) => ({ start: f.start, duration: f.duration, pdt: f.programDateTime }));
  }

  /** Station time of the frame shown, from the playlist's program date-times. */
  function stationTime() {
    const t = $('r-video').currentTime;
    const f = fragments().find((x) => t >= x.start && t < x.start + x.duration + 0.001);
    return f && f.pdt ? f.pdt + (t - f.start) * 1000 : null;
  }

  function seekToWall(ms) {
    const frags = fragments();
    const f = frags.find((x) => x.pdt + x.duration * 1000 > ms) || frags[frags.length - 1];
    if (!f) return;
    $('r-video').currentTime = f.start + Math.max(0, (ms - f.pdt) / 1000);
  }

  function drawTimeline() {
    const el = $('r-timeline');
    const tl = S.timeline;
    const cam = tl && tl.cameras.find((c) => c.camera === S.camera);
    el.replaceChildren();
    $('r-gaps').replaceChildren();
    if (!cam) return;
    const span = tl.to_ms - tl.from_ms;
    const pos = (a, b) => `left:${(100 * (a - tl.from_ms)) / span}%;width:${Math.max(0.2, (100 * (b - a)) / span)}%`;
    for (const s of cam.spans) {
      el.append(h('div', { class: 'tl-span', style: pos(s.from_ms, s.to_ms), title: `recorded ${utc(s.from_ms)} → ${utc(s.to_ms)} (${s.segments} segments)` }));
    }
    for (const g of cam.gaps) {
      el.append(h('div', { class: 'tl-gap', style: pos(g.from_ms, g.to_ms), title: `gap ${secs(g.to_ms - g.from_ms)}: ${g.reason}` }));
      $('r-gaps').append(h('li', { class: 'gap' }, h('strong', { text: `${local(g.from_ms)} → ${local(g.to_ms)} (${secs(g.to_ms - g.from_ms)})` }), ` ${g.reason}`));
    }
    el.append(h('div', { class: 'tl-cursor', id: 'r-cursor' }));
  }

  function tick() {
    if (S.view !== 'request' || !S.req || !DELIVERED.has(S.req.status)) return;
    const t = stationTime();
    $('r-clock').textContent = t ? utc(t) : '–';
    const cur = $('r-cursor');
    if (cur && t && S.timeline) {
      cur.style.left = `${(100 * (t - S.timeline.from_ms)) / (S.timeline.to_ms - S.timeline.from_ms)}%`;
    }
  }

  // ---- pages and live updates

  function route() {
    const m = location.pathname.match(/^\/requests\/([^/]+)\/?$/);
    if (S.hls) { S.hls.destroy(); S.hls = null; }
    if (m) {
      S.view = 'request';
      S.id = decodeURIComponent(m[1]);
      S.req = null;
      $('list-view').hidden = true;
      $('request-view').hidden = false;
      loadRequest();
    } else {
      S.view = 'list';
      $('list-view').hidden = false;
      $('request-view').hidden = true;
      loadList();
    }
  }

  function navigate(url) { history.pushState(null, '', url); route(); }

  function connect() {
    const source = new EventSource('/api/stream');
    const live = $('live');
    source.addEventListener('open', () => { live.dataset.live = 'open'; live.textContent = 'live'; });
    source.addEventListener('request', (ev) => {
      let d;
      try { d = JSON.parse(ev.data); } catch (_) { return; }
      if (S.view === 'list') loadList();
      else if (S.view === 'request' && d.id === S.id) loadRequest();
    });
    source.addEventListener('resync', () => { if (S.view === 'list') loadList(); else loadRequest(); });
    source.addEventListener('error', () => { live.dataset.live = 'closed'; live.textContent = 'reconnecting…'; });
  }

  async function start() {
    try { S.me = await api('/api/me'); } catch (e) { banner(e.message); }
    if (S.me) $('me').textContent = `${S.me.username} (${S.me.role})`;
    $('logout').addEventListener('click', async () => {
      try { await api('/api/logout', { method: 'POST' }); } catch (_) { /* going anyway */ }
      location.assign('/login');
    });
    $('new-request').addEventListener('submit', submitRequest);
    $('show-all').addEventListener('change', loadList);
    $('r-approve').addEventListener('click', () => decide(true));
    $('r-refuse').addEventListener('click', () => decide(false));
    $('r-camera').addEventListener('change', (e) => play(e.target.value));
    $('r-timeline').addEventListener('click', (e) => {
      const tl = S.timeline;
      if (!tl) return;
      const rect = e.currentTarget.getBoundingClientRect();
      seekToWall(tl.from_ms + ((e.clientX - rect.left) / rect.width) * (tl.to_ms - tl.from_ms));
    });
    document.addEventListener('click', (e) => {
      const a = e.target.closest('a[data-nav]');
      if (a) { e.preventDefault(); navigate(a.getAttribute('href')); }
    });
    window.addEventListener('popstate', route);
    const now = new Date();
    const back = new Date(now.getTime() - 10 * 60 * 1000);
    const fmt = (d) => `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())}T${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
    $('rq-from').value = fmt(back);
    $('rq-to').value = fmt(now);
    loadStations();
    connect();
    setInterval(tick, 250);
    route();
  }

  start();
})();
