//! Glass-to-glass delay through the live gateway (`benches/live-delay.sh` runs it; ignored in the
//! test suite): a publisher paints the wall clock (ms, 32 bits as black and white blocks) into
//! every frame, encodes it as the agent does (x264 zerolatency, MPEG-TS, SRT with a passphrase)
//! and sends it to a real `live-gateway`; headless Chromium plays the gateway's HLS with hls.js
//! configured as the station page configures it, reads the blocks of each displayed frame
//! (`requestVideoFrameCallback`, canvas) and compares them with its own clock. Same machine,
//! same clock: the difference is the delay from painting to display.
//!
//! Env: `BENCH_SECONDS` (default 40 of measurement), `SEGMENT_SECONDS` (default 2, the
//! gateway's default), `SMOKE=1` (8 s).

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gst::prelude::*;
use stationwatch_tests::browser::{chromedriver_bin, chromium_bin, js, wait_js, Browser};
use stationwatch_tests::free_port;
use stationwatch_tests::gateway_process::GatewayProcess;

const W: usize = 640;
const H: usize = 360;
const BLOCK: usize = 40;

/// Paints `ms` into the luma plane: 32 blocks, 16 per row, most significant first.
fn paint(y: &mut [u8], ms: u32) {
    y.fill(64);
    for bit in 0..32 {
        let on = (ms >> (31 - bit)) & 1 == 1;
        let (bx, by) = ((bit % 16) * BLOCK, 40 + (bit / 16) * BLOCK);
        for row in by..by + BLOCK {
            y[row * W + bx..row * W + bx + BLOCK].fill(if on { 235 } else { 16 });
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

const PAGE: &str = r#"<!doctype html><html><body>
<video id="v" muted autoplay playsinline width="640" height="360"></video>
<canvas id="c" width="640" height="360" hidden></canvas>
<script src="hls.light.min.js"></script>
<script>
window.samples = [];
const v = document.getElementById('v');
const g = document.getElementById('c').getContext('2d', { willReadFrequently: true });
const hls = new Hls({ liveSyncDurationCount: 2, enableWorker: false });
hls.loadSource('hls/private/DELAY-0001/cam/index.m3u8');
hls.attachMedia(v);
v.play().catch(() => {});
function onFrame() {
  const shown = Date.now();
  g.drawImage(v, 0, 0, 640, 360);
  let ms = 0;
  for (let bit = 0; bit < 32; bit++) {
    const x = (bit % 16) * 40 + 20, y = 40 + Math.floor(bit / 16) * 40 + 20;
    const p = g.getImageData(x, y, 1, 1).data;
    ms = ms * 2 + (p[0] + p[1] + p[2] > 3 * 128 ? 1 : 0);
  }
  const painted = shown - ((shown - ms) % 4294967296 + 4294967296) % 4294967296;
  window.samples.push(shown - painted);
  v.requestVideoFrameCallback(onFrame);
}
v.requestVideoFrameCallback(onFrame);
</script></body></html>"#;

#[test]
#[ignore = "benchmark: benches/live-delay.sh runs it"]
fn glass_to_glass_delay_through_the_gateway() {
    let (Some(chromium), Some(driver)) = (chromium_bin(), chromedriver_bin()) else {
        panic!("chromium and chromium-driver are needed");
    };
    let smoke = std::env::var("SMOKE").is_ok_and(|v| v == "1");
    let secs: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if smoke { 8 } else { 40 });
    let segment: f64 = std::env::var("SEGMENT_SECONDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2.0);
    gst::init().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let www = dir.path().join("www");
    let hls = www.join("hls");
    std::fs::create_dir_all(www.join("api/live")).unwrap();
    std::fs::write(www.join("index.html"), PAGE).unwrap();
    std::fs::copy(
        stationwatch_tests::process::workspace_root()
            .join("controller/assets/vendor/hls.light.min.js"),
        www.join("hls.light.min.js"),
    )
    .unwrap();
    let pass = "delay-bench-passphrase";
    std::fs::write(
        www.join("api/live/gateway"),
        format!(r#"{{"stations":[{{"station":"DELAY-0001","passphrase":"{pass}"}}]}}"#),
    )
    .unwrap();
    std::fs::write(dir.path().join("token"), "t\n").unwrap();
    // A static web server: the station list for the gateway, the page and the HLS for the
    // browser (the controller only adds a session check in front of the same files).
    let http_port = free_port();
    let mut http = std::process::Command::new("python3")
        .args([
            "-m",
            "http.server",
            &http_port.to_string(),
            "--bind",
            "127.0.0.1",
        ])
        .current_dir(&www)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let srt_port = free_port();
    let gw = GatewayProcess::start(
        &dir.path().join("gw"),
        srt_port,
        &hls,
        &format!("http://127.0.0.1:{http_port}/"),
        &dir.path().join("token"),
        "",
    )
    .unwrap();
    let cfg = std::fs::read_to_string(&gw.config).unwrap().replace(
        "segment_seconds = 1",
        &format!("segment_seconds = {segment}"),
    );
    std::fs::write(&gw.config, cfg).unwrap();
    drop(gw);
    let gw = GatewayProcess::run(&dir.path().join("gw/gateway.toml"), srt_port, &hls).unwrap();

    // The publisher: as the agent's live sender, from painted frames.
    let pipeline = gst::parse::launch(&format!(
        "appsrc name=src is-live=true format=time do-timestamp=true \
           caps=video/x-raw,format=I420,width={W},height={H},framerate=15/1 \
         ! x264enc tune=zerolatency speed-preset=veryfast bitrate=1500 key-int-max=15 \
         ! h264parse config-interval=-1 ! mpegtsmux alignment=7 \
         ! srtsink uri=\"srt://127.0.0.1:{srt_port}?streamid=DELAY-0001/cam&passphrase={pass}\" \
           mode=caller wait-for-connection=false latency=250 sync=false"
    ))
    .unwrap()
    .downcast::<gst::Pipeline>()
    .unwrap();
    let src = pipeline.by_name("src").unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let painter = std::thread::spawn(move || {
        let start = Instant::now();
        let mut n = 0u64;
        while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
            let mut frame = vec![128u8; W * H * 3 / 2];
            paint(&mut frame[..W * H], now_ms() as u32);
            let buf = gst::Buffer::from_mut_slice(frame);
            let _: gst::FlowReturn = src.emit_by_name("push-buffer", &[&buf]);
            n += 1;
            let next = start + Duration::from_micros(n * 1_000_000 / 15);
            if let Some(d) = next.checked_duration_since(Instant::now()) {
                std::thread::sleep(d);
            }
        }
    });

    let playlist = hls.join("private/DELAY-0001/cam/index.m3u8");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !playlist.exists() {
        assert!(
            Instant::now() < deadline,
            "no playlist from the gateway:\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let samples: Vec<f64> = rt.block_on(async {
        let browser = Browser::start(&driver, dir.path());
        let c = browser.session(&chromium).await;
        c.goto(&format!("http://127.0.0.1:{http_port}/index.html"))
            .await
            .unwrap();
        wait_js(
            &c,
            "window.samples && window.samples.length > 30",
            60,
            "frames shown",
        )
        .await;
        // Settled: the first seconds (the player joining the live edge) are left out.
        tokio::time::sleep(Duration::from_secs(4)).await;
        js(&c, "window.samples = []").await;
        tokio::time::sleep(Duration::from_secs(secs)).await;
        let v = js(&c, "window.samples").await;
        v.as_array()
            .unwrap()
            .iter()
            .filter_map(|x| x.as_f64())
            .collect()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    painter.join().unwrap();
    pipeline.set_state(gst::State::Null).unwrap();
    drop(gw);
    let _ = http.kill();
    let _ = http.wait();

    let mut ok: Vec<f64> = samples
        .iter()
        .copied()
        .filter(|d| (0.0..60_000.0).contains(d))
        .collect();
    ok.sort_by(f64::total_cmp);
    assert!(
        ok.len() >= samples.len() * 9 / 10 && !ok.is_empty(),
        "frames whose clock could not be read: {} of {}",
        samples.len() - ok.len(),
        samples.len()
    );
    let q = |p: f64| ok[((ok.len() - 1) as f64 * p).round() as usize] / 1000.0;
    println!(
        "glass-to-glass, {segment} s segments, hls.js liveSyncDurationCount 2, SRT latency 250 ms: \
         {} frames over {secs} s: min {:.2} s, median {:.2} s, p95 {:.2} s, max {:.2} s",
        ok.len(),
        q(0.0),
        q(0.5),
        q(0.95),
        q(1.0)
    );
}
