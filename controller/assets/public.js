// The public live page (docs/live.md): no login; only cameras marked public, each a masked,
// re-encoded stream without sound from the gateway's public folder.
(() => {
  'use strict';
  const players = [];

  function clear() {
    for (const p of players.splice(0)) p.destroy();
  }

  async function load() {
    clear();
    const region = document.getElementById('region').value;
    const r = await fetch(`/api/public/cameras${region ? `?region=${encodeURIComponent(region)}` : ''}`);
    const box = document.getElementById('cameras');
    if (!r.ok) {
      box.textContent = 'No public stream.';
      return;
    }
    const cams = await r.json();
    const regions = new Set(cams.map((c) => c.region).filter(Boolean));
    const sel = document.getElementById('region');
    for (const reg of regions) {
      if (![...sel.options].some((o) => o.value === reg)) sel.append(new Option(reg, reg));
    }
    box.replaceChildren();
    if (!cams.length) box.textContent = 'No public stream.';
    for (const c of cams) {
      const fig = document.createElement('figure');
      const video = document.createElement('video');
      video.muted = true;
      video.autoplay = true;
      video.controls = true;
      video.playsInline = true;
      video.dataset.publicStation = c.station;
      video.dataset.publicCamera = c.camera;
      const cap = document.createElement('figcaption');
      cap.textContent = `${c.name || c.station} · ${c.camera}${c.region ? ` · ${c.region}` : ''}`;
      fig.append(video, cap);
      box.append(fig);
      if (window.Hls && window.Hls.isSupported()) {
        const hls = new window.Hls({ liveSyncDurationCount: 2, enableWorker: false });
        hls.on(window.Hls.Events.ERROR, (_, d) => { if (d.fatal) hls.startLoad(); });
        hls.loadSource(c.playlist);
        hls.attachMedia(video);
        video.play().catch(() => {});
        players.push(hls);
      }
    }
  }

  document.getElementById('region').addEventListener('change', load);
  load();
})();
