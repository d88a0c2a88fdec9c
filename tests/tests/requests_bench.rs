//! Requests for recordings, measured (`benches/requests.sh` runs it; ignored in the test
//! suite). Prints figures; asserts only that the work was done (every request ready, every
//! byte served, every answer 200), never how fast.
//!
//! * [`request_to_ready_first_frame_and_observers_playing`] (root: network namespaces): a real
//!   agent in its own namespace records two RTSP noise cameras (640x360, x264 2000 kbit/s, 4 s
//!   segments; upload mode `requested`, so nothing leaves the station before a request); the
//!   controller and Mosquitto run on the far side of a veth pair. For each link (unshaped, then
//!   `tbf`-shaped) an observer files a request for a window both cameras recorded, an admin
//!   approves it at once, and the time from filing to `ready` is measured; the 10-minute figure
//!   scales the measured time by footage seconds (conservative: the fixed costs are scaled
//!   too). Then headless Chromium opens the ready request's page and the time from navigation
//!   to the first frame shown (`currentTime > 0`) is read off the page's own clock. Last,
//!   `BENCH_OBSERVERS` observers (each with their own session and their own request for the
//!   window) play the window at once, as hls.js does: the playlist, then segments up to 30 s
//!   ahead of the playback position, then one segment per segment duration; the controller's
//!   CPU and resident memory are read from `/proc` meanwhile.
//! * [`bundle_of_an_hour`]: an hour of two cameras (2 Mbit/s, 4 s segments: 1 MB each; random
//!   bytes, the bundle never looks inside) is signed with a station key and uploaded through the
//!   archive's HTTP API as a station does; an admin's request for the hour becomes ready, and
//!   the evidence bundle is downloaded (time to the first byte, total, MB/s, the controller's
//!   CPU and memory) and checked with `station-agent verify` (time, verdict).
//!
//! Env: `BENCH_WINDOW_S` (120), `BENCH_LINKS` (`unshaped,2000`: kbit/s or `unshaped`),
//! `BENCH_OBSERVERS` (20), `BENCH_PLAY_S` (60), `BENCH_BUNDLE_MIN` (60); `SMOKE=1`: a few
//! seconds of each part, as CI runs it so the script cannot rot.

use std::io::Write;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use stationwatch_protocol::archive::{authorization, manifest_path, segment_path};
use stationwatch_protocol::manifest::{
    sign_entry, Chain, ClockSync, EntryBody, Hash256, Segment, SegmentFile, StationKey, Timestamp,
};
use stationwatch_protocol::{CameraId, StationId};
use stationwatch_tests::agent_process::agent_command;
use stationwatch_tests::archive::{ready, ts, window_segments, LinkedStation, Rig, Store, STATION};
use stationwatch_tests::browser::{chromedriver_bin, chromium_bin, wait_js, Browser, START};
use stationwatch_tests::controller_process::Api;
use stationwatch_tests::eventually;
use stationwatch_tests::netns::Link;
use stationwatch_tests::proc_stats::{cpu_s, status_kib};
use stationwatch_tests::requests::{log_in, user, wait_status, DONE, PASSWORD};

fn smoke() -> bool {
    std::env::var("SMOKE").is_ok_and(|v| v == "1")
}

fn env_u64(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// Files a request as `who` and has the admin approve it; its id.
fn file_and_approve(rig: &Rig, who: &Api, body: Value) -> String {
    let r = who.post("/api/requests", &body).unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    if r.body["status"] == "submitted" {
        let d = rig
            .api
            .post(
                &format!("/api/requests/{id}/decision"),
                &json!({"approve": true, "reason": "benchmark"}),
            )
            .unwrap();
        assert_eq!(d.status, 200, "{d:?}");
    }
    id
}

#[test]
#[ignore = "benchmark: run by benches/requests.sh"]
fn request_to_ready_first_frame_and_observers_playing() {
    if !ready(Store::Local) {
        return;
    }
    if let Some(why) = Link::unavailable() {
        panic!("requests benchmark: {why}");
    }
    let (Some(chromium), Some(driver)) = (chromium_bin(), chromedriver_bin()) else {
        panic!("requests benchmark: chromium or chromedriver missing (scripts/install-deps)");
    };
    let smoke = smoke();
    let window_s = if smoke {
        4
    } else {
        env_u64("BENCH_WINDOW_S", 120)
    } as i64;
    // `None`: the veth pair at full rate.
    let links: Vec<Option<u32>> = if smoke {
        vec![None]
    } else {
        std::env::var("BENCH_LINKS")
            .unwrap_or_else(|_| "unshaped,2000".into())
            .split(',')
            .map(|l| l.trim().parse().ok())
            .collect()
    };
    let observers = if smoke {
        2
    } else {
        env_u64("BENCH_OBSERVERS", 20)
    } as usize;
    let play_s = if smoke {
        3
    } else {
        env_u64("BENCH_PLAY_S", 60)
    };

    let st = LinkedStation::start("rqbench", env!("CARGO_BIN_EXE_test-camera"));
    let (link, rig, storage) = (&st.link, &st.rig, &st.storage);
    let mut agent = st.start_agent(&st.config(String::new(), true));
    st.wait_recording();
    let observer = user(rig, "observer", "observer", &[STATION]);
    eventually("the station reports both cameras", 30, || {
        let d = observer.ok(&format!("/api/stations/{STATION}"))?;
        Ok(d["health"]["cameras"]["box"].is_object().then_some(()))
    });
    // One window per link, recorded before any is requested.
    let t0 = Utc::now();
    std::thread::sleep(Duration::from_secs(
        (window_s * links.len() as i64 + 6) as u64,
    ));
    let ctl_pid = rig.ctl.child.pid().unwrap();
    let request = |from: DateTime<Utc>, to: DateTime<Utc>| {
        json!({"station": STATION, "from": ts(from), "to": ts(to),
               "reason": "benchmark: complaint 17"})
    };

    println!(
        "== request to ready (2 RTSP cameras 640x360 noise, x264 2000 kbit/s, 4 s segments, {window_s} s window)"
    );
    println!("link_kbit  window_MB  filed_to_ready_s  status  10min_2cam_s  controller_cpu_ms");
    let mut first_window = None;
    for (i, rate) in links.iter().enumerate() {
        let from = t0 + chrono::Duration::seconds(window_s * i as i64);
        let to = from + chrono::Duration::seconds(window_s);
        let bytes: u64 = ["desk", "box"]
            .iter()
            .flat_map(|c| window_segments(storage, c, from, to))
            .map(|(_, _, size)| size)
            .sum();
        match rate {
            Some(kbit) => link.shape(*kbit).unwrap(),
            None => link.unshape().unwrap(),
        }
        let cpu0 = cpu_s(ctl_pid);
        let start = Instant::now();
        let id = file_and_approve(rig, &observer, request(from, to));
        let done = wait_status(&observer, &id, 3600, DONE);
        let secs = start.elapsed().as_secs_f64();
        assert_ne!(done["status"], "failed", "{done}");
        println!(
            "{:>9}  {:>9.1}  {secs:>16.1}  {:>6}  {:>12.0}  {:>17.0}",
            rate.map_or("unshaped".to_owned(), |r| r.to_string()),
            bytes as f64 / 1e6,
            done["status"].as_str().unwrap_or(""),
            secs * 600.0 / window_s as f64,
            (cpu_s(ctl_pid) - cpu0) * 1000.0
        );
        first_window.get_or_insert((id, from, to));
    }
    link.unshape().unwrap();
    let (id, from, to) = first_window.expect("at least one link");

    // Time to first frame in a real browser, three loads of the request's page.
    let loads = if smoke { 1 } else { 3 };
    let ttff = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(first_frames(
            &chromium,
            &driver,
            rig.dir.path(),
            &rig.ctl.base_url(),
            &id,
            loads,
        ));
    println!(
        "== time to first frame (headless Chromium, page navigation to currentTime > 0, polled every 150 ms): {}; median {:.2} s",
        ttff.iter()
            .map(|s| format!("{s:.2} s"))
            .collect::<Vec<_>>()
            .join(", "),
        median(ttff.clone())
    );

    // Observers playing the window at once, each with their own request.
    let apis: Vec<(Api, String)> = (0..observers)
        .map(|n| {
            let api = user(rig, &format!("observer-{n:02}"), "observer", &[STATION]);
            let id = file_and_approve(rig, &api, request(from, to));
            (api, id)
        })
        .collect();
    for (api, id) in &apis {
        let done = wait_status(api, id, 600, DONE);
        assert_ne!(done["status"], "failed", "{done}");
    }
    let rss0 = status_kib(ctl_pid, "VmRSS");
    let cpu0 = cpu_s(ctl_pid);
    let stop = Arc::new(AtomicBool::new(false));
    let t = Instant::now();
    let players: Vec<_> = apis
        .into_iter()
        .map(|(api, id)| {
            let stop = stop.clone();
            std::thread::spawn(move || play(&api, &id, "desk", play_s, &stop))
        })
        .collect();
    let mut rss_max = rss0;
    while !players.iter().all(|p| p.is_finished()) {
        rss_max = rss_max.max(status_kib(ctl_pid, "VmRSS"));
        std::thread::sleep(Duration::from_millis(250));
    }
    let wall = t.elapsed().as_secs_f64();
    let cpu = cpu_s(ctl_pid) - cpu0;
    let results: Vec<Played> = players.into_iter().map(|p| p.join().unwrap()).collect();
    let served: u64 = results.iter().map(|r| r.bytes).sum();
    let segments: usize = results.iter().map(|r| r.segments).sum();
    let failures: Vec<&String> = results.iter().flat_map(|r| &r.failures).collect();
    assert!(failures.is_empty(), "answers other than 200: {failures:?}");
    println!(
        "== {observers} observers playing camera desk of the window at once for {play_s} s (hls.js pattern: 30 s ahead, then real time)"
    );
    println!(
        "controller CPU {:.1} % of one core ({:.2} ms per observer-second); RSS {:.1} MiB before, {:.1} MiB peak (+{:.1}); served {:.1} MB in {segments} segments ({:.1} Mbit/s)",
        cpu / wall * 100.0,
        cpu * 1000.0 / (wall * observers as f64),
        rss0 as f64 / 1024.0,
        rss_max as f64 / 1024.0,
        rss_max.saturating_sub(rss0) as f64 / 1024.0,
        served as f64 / 1e6,
        served as f64 * 8.0 / 1e6 / wall
    );
    println!(
        "startup per observer (playlist + first segment) under that load: median {:.0} ms, max {:.0} ms",
        median(results.iter().map(|r| r.startup_ms).collect()),
        results.iter().map(|r| r.startup_ms).fold(0.0, f64::max)
    );
    stop.store(true, Ordering::Relaxed);
    agent.terminate(Duration::from_secs(15)).unwrap();
}

async fn first_frames(
    chromium: &std::path::Path,
    driver: &std::path::Path,
    dir: &std::path::Path,
    base: &str,
    id: &str,
    loads: usize,
) -> Vec<f64> {
    let browser = Browser::start(driver, dir);
    let c = browser.session(chromium).await;
    let _ = START.set(Instant::now());
    log_in(&c, base, "observer", PASSWORD).await;
    let mut out = Vec::new();
    for _ in 0..loads {
        c.goto(&format!("{base}/requests/{id}")).await.unwrap();
        // The page's clock starts at the navigation.
        let at = wait_js(
            &c,
            "document.getElementById('r-video').currentTime > 0 && performance.now()",
            60,
            "first frame",
        )
        .await;
        out.push(at.as_f64().unwrap_or(0.0) / 1000.0);
    }
    out
}

/// What one emulated player did.
struct Played {
    bytes: u64,
    segments: usize,
    startup_ms: f64,
    failures: Vec<String>,
}

/// Plays a camera of a request as hls.js does, for `secs` seconds: the playlist, segments up
/// to 30 s ahead of the playback position, then one per segment duration (from the start
/// again at the end of the window, as someone watching it twice).
fn play(api: &Api, id: &str, camera: &str, secs: u64, stop: &AtomicBool) -> Played {
    let t = Instant::now();
    let mut p = Played {
        bytes: 0,
        segments: 0,
        startup_ms: 0.0,
        failures: Vec::new(),
    };
    let (code, m3u8) = api
        .get_bytes(&format!("/api/requests/{id}/hls/{camera}"))
        .unwrap();
    if code != 200 {
        p.failures.push(format!("playlist {code}"));
        return p;
    }
    let text = String::from_utf8_lossy(&m3u8).into_owned();
    let mut segs: Vec<(f64, String)> = Vec::new();
    let mut dur = None;
    for line in text.lines() {
        if let Some(d) = line.strip_prefix("#EXTINF:") {
            dur = d.split(',').next().and_then(|v| v.parse().ok());
        } else if !line.starts_with('#') && !line.is_empty() {
            segs.push((dur.take().unwrap_or(4.0), line.to_owned()));
        }
    }
    assert!(!segs.is_empty(), "no segment in the playlist:\n{text}");
    let mut buffered = 0.0;
    for (d, uri) in segs.iter().cycle() {
        let played = t.elapsed().as_secs_f64();
        if played >= secs as f64 || stop.load(Ordering::Relaxed) {
            break;
        }
        // hls.js's maxBufferLength: 30 s ahead of the playback position.
        while buffered - t.elapsed().as_secs_f64() > 30.0 && t.elapsed().as_secs() < secs {
            std::thread::sleep(Duration::from_millis(100));
        }
        if t.elapsed().as_secs() >= secs {
            break;
        }
        match api.get_bytes(uri) {
            Ok((200, b)) => {
                p.bytes += b.len() as u64;
                p.segments += 1;
            }
            Ok((code, _)) => p.failures.push(format!("{uri}: {code}")),
            Err(e) => p.failures.push(format!("{uri}: {e}")),
        }
        if p.segments == 1 {
            p.startup_ms = t.elapsed().as_secs_f64() * 1000.0;
        }
        buffered += d;
    }
    p
}

/// A segment's bytes: a random 64 KiB block repeated, each copy stamped with the camera, the
/// segment and the copy's index (distinct files, cheap to make in a debug build).
fn footage(block: &[u8], camera: usize, i: u64, size: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(size);
    let mut n = 0u64;
    while out.len() < size {
        let take = block.len().min(size - out.len());
        let start = out.len();
        out.extend_from_slice(&block[..take]);
        let stamp = [camera as u64, i, n].map(u64::to_le_bytes).concat();
        let k = stamp.len().min(take);
        out[start..start + k].copy_from_slice(&stamp[..k]);
        n += 1;
    }
    out
}

/// Sends a station-signed request to the archive's HTTP API; the status.
fn station_send(
    http: &ureq::Agent,
    base: &str,
    station: &StationId,
    key: &StationKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> u16 {
    let auth = authorization(station, key, method, path_and_query, body);
    let url = format!("{base}{path_and_query}");
    let req = ureq::http::Request::builder()
        .method(method)
        .uri(&url)
        .header("authorization", auth)
        .body(body.to_vec())
        .unwrap();
    let resp = http.run(req).unwrap();
    let status = resp.status().as_u16();
    if status >= 300 {
        let text = resp.into_body().read_to_string().unwrap_or_default();
        panic!("{method} {path_and_query}: {status} {text}");
    }
    status
}

#[test]
#[ignore = "benchmark: run by benches/requests.sh"]
fn bundle_of_an_hour() {
    if !ready(Store::Local) {
        return;
    }
    let smoke = smoke();
    let minutes = if smoke {
        2
    } else {
        env_u64("BENCH_BUNDLE_MIN", 60)
    } as i64;
    let seg_ms = 4_000i64;
    // 2 Mbit/s for 4 s.
    let seg_bytes = if smoke { 100_000 } else { 1_000_000 };
    let rig = Rig::start(Store::Local);
    let base = rig.ctl.base_url();
    let station = StationId::new("pu-0900").unwrap();
    let key = StationKey::generate().unwrap();
    let r = rig
        .api
        .put(
            &format!("/api/stations/{station}/key"),
            &json!({"key": key.public().to_string()}),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");

    // The hour ends two minutes ago, on a whole second.
    let end_ms = (Utc::now().timestamp() - 120) * 1000;
    let start_ms = end_ms - minutes * 60_000;
    let n = (minutes * 60_000 / seg_ms) as u64;
    let mut block = vec![0u8; 64 * 1024];
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let http = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let cameras = ["hall", "door"];
    let t = Instant::now();
    let mut total = 0u64;
    for (ci, cam) in cameras.iter().enumerate() {
        let camera = CameraId::new(*cam).unwrap();
        let mut chain = Chain::genesis(station.clone(), camera.clone());
        let mut lines = String::new();
        for i in 0..n {
            let bytes = footage(&block, ci, i, seg_bytes);
            let s = start_ms + i as i64 * seg_ms;
            let e = sign_entry(
                &key,
                &chain,
                EntryBody::Segment(Segment {
                    start: Timestamp::from_unix_ms(s).unwrap(),
                    end: Timestamp::from_unix_ms(s + seg_ms).unwrap(),
                    file: SegmentFile::new(format!("{cam}/seg-{i:05}.ts")).unwrap(),
                    size: bytes.len() as u64,
                    sha256: Hash256::of(&bytes),
                    clock: Some(ClockSync::Synced),
                }),
            )
            .unwrap();
            chain = Chain::after(&e);
            lines.push_str(e.line());
            lines.push('\n');
        }
        station_send(
            &http,
            &base,
            &station,
            &key,
            "POST",
            &manifest_path(&station, &camera),
            lines.as_bytes(),
        );
        for i in 0..n {
            let bytes = footage(&block, ci, i, seg_bytes);
            let path = format!("{}?offset=0", segment_path(&station, &camera, i));
            station_send(&http, &base, &station, &key, "PUT", &path, &bytes);
            total += bytes.len() as u64;
        }
    }
    let fill_s = t.elapsed().as_secs_f64();
    println!(
        "== evidence bundle of {minutes} min, 2 cameras, 4 s segments of {:.1} MB ({:.0} MB of footage)",
        seg_bytes as f64 / 1e6,
        total as f64 / 1e6
    );
    println!(
        "archive filled through its HTTP API (station-signed, loopback) in {fill_s:.1} s: {:.0} MB/s",
        total as f64 / 1e6 / fill_s
    );

    let from = DateTime::from_timestamp_millis(start_ms).unwrap();
    let to = DateTime::from_timestamp_millis(end_ms).unwrap();
    let t = Instant::now();
    let id = file_and_approve(
        &rig,
        &rig.api,
        json!({"station": station.as_str(), "cameras": cameras, "from": ts(from), "to": ts(to),
               "reason": "benchmark: the whole hour"}),
    );
    let done = wait_status(&rig.api, &id, 600, DONE);
    assert_eq!(done["status"], "ready", "{done}");
    println!(
        "request filed to ready (all archived): {:.2} s",
        t.elapsed().as_secs_f64()
    );

    let ctl_pid = rig.ctl.child.pid().unwrap();
    let rss0 = status_kib(ctl_pid, "VmRSS");
    let cpu0 = cpu_s(ctl_pid);
    let file = rig.dir.path().join("bundle.tar");
    let mut out = std::io::BufWriter::new(std::fs::File::create(&file).unwrap());
    let t = Instant::now();
    let (code, bytes, headers) = rig
        .api
        .download(&format!("/api/requests/{id}/bundle"), &mut out)
        .unwrap();
    out.flush().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let cpu = cpu_s(ctl_pid) - cpu0;
    assert_eq!(code, 200);
    assert!(bytes > total, "{bytes} bytes for {total} of footage");
    println!(
        "bundle built and streamed: {:.0} MB in {secs:.1} s ({:.0} MB/s), first byte after {:.0} ms; controller CPU {:.1} s; RSS {:.1} MiB before, {:.1} MiB after (peak over the run {:.1} MiB)",
        bytes as f64 / 1e6,
        bytes as f64 / 1e6 / secs,
        headers.as_secs_f64() * 1000.0,
        cpu,
        rss0 as f64 / 1024.0,
        status_kib(ctl_pid, "VmRSS") as f64 / 1024.0,
        status_kib(ctl_pid, "VmHWM") as f64 / 1024.0,
    );

    let controller_key = rig.api.ok("/api/controller-key").unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    // Built before the clock starts (the first use of the binary may build it).
    stationwatch_tests::agent_process::agent_bin().unwrap();
    let t = Instant::now();
    let (status, stdout, stderr) = agent_command(&[
        "verify",
        file.to_str().unwrap(),
        "--controller-key",
        &controller_key,
    ])
    .unwrap();
    let report = format!("{stdout}{stderr}");
    let verdict = report
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    println!(
        "station-agent verify of the bundle: {:.1} s, exit {}, {verdict}",
        t.elapsed().as_secs_f64(),
        status.code().unwrap_or(-1)
    );
}
