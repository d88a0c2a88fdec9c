//! The upload benchmark (`benches/upload.sh` runs it; ignored in the test suite). Prints
//! figures, asserts nothing about them:
//!
//! * goodput of a requested window as a share of a `tbf`-shaped uplink, live off, at each rate;
//! * the time a 10-minute, 2-camera window takes at that rate (measured on a shorter window of
//!   the same cameras and scaled by its bytes: transfer time is linear in bytes at a fixed
//!   goodput);
//! * the controller's CPU per Mbit/s received (utime+stime of its process over each transfer);
//! * the live rung's bitrate at the SRT receiver with and without a concurrent backfill.
//!
//! The cameras of the upload part are two RTSP test cameras sending noise (`snow`) at 2000
//! kbit/s, so the footage has a real camera's bitrate (the built-in ball pattern compresses to
//! a tenth of its target); the live part uses the built-in source (the live ladder needs it).
//!
//! Env: `BENCH_RATES` (kbit/s, default `2000,10000,50000`), `BENCH_WINDOW_S` (default 60),
//! `BENCH_LIVE_S` (default 30), `SMOKE=1` (one rate, a few seconds each).

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::json;
use stationwatch_tests::agent_process::AgentProcess;
use stationwatch_tests::archive::{ready, ts, window_segments, LinkedStation, Store};
use stationwatch_tests::netns::{Link, FAR_ADDR};
use stationwatch_tests::proc_stats::cpu_s;
use stationwatch_tests::srt::{have_srt_live_transmit, SrtReceiver};

fn env_u64(k: &str, default: u64) -> u64 {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Seconds from the first start to the last end of the camera's segments touching the window.
fn covered_s(
    storage: &std::path::Path,
    camera: &str,
    from: chrono::DateTime<Utc>,
    to: chrono::DateTime<Utc>,
) -> f64 {
    let times: Vec<(chrono::DateTime<Utc>, chrono::DateTime<Utc>)> =
        stationwatch_tests::agent_process::manifest_entries(storage, camera)
            .unwrap()
            .into_iter()
            .filter(|e| e["kind"] == "segment")
            .filter_map(|e| {
                Some((
                    e["start"].as_str()?.parse().ok()?,
                    e["end"].as_str()?.parse().ok()?,
                ))
            })
            .filter(|(s, e)| *s < to && *e > from)
            .collect();
    match (
        times.iter().map(|t| t.0).min(),
        times.iter().map(|t| t.1).max(),
    ) {
        (Some(a), Some(b)) => (b - a).num_milliseconds() as f64 / 1000.0,
        _ => 0.0,
    }
}

#[test]
#[ignore = "benchmark: run by benches/upload.sh"]
fn upload_benchmark() {
    if !ready(Store::Local) {
        return;
    }
    if let Some(why) = Link::unavailable() {
        panic!("upload benchmark: {why}");
    }
    assert!(have_srt_live_transmit(), "srt-live-transmit missing");
    let smoke = std::env::var("SMOKE").is_ok_and(|v| v == "1");
    let rates: Vec<u64> = if smoke {
        vec![2000]
    } else {
        std::env::var("BENCH_RATES")
            .unwrap_or_else(|_| "2000,10000,50000".into())
            .split(',')
            .filter_map(|r| r.trim().parse().ok())
            .collect()
    };
    let window_s = if smoke {
        6
    } else {
        env_u64("BENCH_WINDOW_S", 60)
    } as i64;
    let live_s = if smoke {
        4
    } else {
        env_u64("BENCH_LIVE_S", 30)
    };

    let st = LinkedStation::start("ubench", env!("CARGO_BIN_EXE_test-camera"));
    let (link, rig, storage) = (&st.link, &st.rig, &st.storage);
    let mut agent = st.start_agent(&st.config(String::new(), true));
    // Both cameras recording before the first window starts.
    st.wait_recording();
    // Record one window per rate first (uploads wait: mode `requested`, nothing requested).
    let t0 = Utc::now();
    let total = window_s * rates.len() as i64;
    std::thread::sleep(Duration::from_secs(total as u64 + 6));
    let ctl_pid = rig.ctl.child.pid().unwrap();
    println!(
        "== upload benchmark (2 RTSP cameras 640x360 noise, x264 2000 kbit/s, {window_s} s window, 4 s segments)"
    );
    println!("rate_kbit  window_MB  footage_kbit_per_cam  transfer_s  goodput_%  10min_2cam_window_s  controller_cpu_ms_per_Mbit");
    for (i, rate) in rates.iter().enumerate() {
        let from = t0 + chrono::Duration::seconds(window_s * i as i64);
        let to = from + chrono::Duration::seconds(window_s);
        let bytes: u64 = ["desk", "box"]
            .iter()
            .flat_map(|c| window_segments(storage, c, from, to))
            .map(|(_, _, size)| size)
            .sum();
        // The whole segments the window touches span more than the window: the footage's
        // seconds, for its bitrate and the 10-minute scaling.
        let span_s = covered_s(storage, "desk", from, to).max(1.0);
        link.shape(*rate as u32).unwrap();
        let cpu0 = cpu_s(ctl_pid);
        let start = Instant::now();
        let job = format!("bench-{rate}");
        rig.command(json!({
            "kind": "upload", "job": job, "from": ts(from), "to": ts(to), "reason": "benchmark"
        }));
        rig.wait_job_done(&job, 1800);
        let secs = start.elapsed().as_secs_f64();
        let cpu = cpu_s(ctl_pid) - cpu0;
        let mbit = bytes as f64 * 8.0 / 1e6;
        let goodput = mbit / secs / (*rate as f64 / 1000.0) * 100.0;
        let ten_min = secs * 600.0 / span_s;
        println!(
            "{rate:>9}  {:>9.1}  {:>20.0}  {secs:>10.1}  {goodput:>9.1}  {ten_min:>19.0}  {:>26.1}",
            bytes as f64 / 1e6,
            mbit * 1000.0 / 2.0 / span_s,
            cpu * 1000.0 / mbit
        );
    }
    agent.terminate(Duration::from_secs(15)).unwrap();
    st.stop_cameras();

    // Live beside backfill: camera desk streams live (auto) through a 3 Mbit/s link.
    let received = rig.dir.path().join("live.ts");
    let rx = SrtReceiver::start(&link.far_prefix(), 9000, &received).unwrap();
    link.shape(3000).unwrap();
    let cfg = st.config(
        format!("live = \"auto\"\nlive_target = \"srt://{FAR_ADDR}:9000\"\n"),
        false,
    );
    let agent = AgentProcess::start_in(&link.agent_prefix(), rig.dir.path(), &cfg, &[]).unwrap();
    agent
        .wait_log("live stream flowing camera=desk", Duration::from_secs(30))
        .unwrap();
    std::thread::sleep(Duration::from_secs(if smoke { 2 } else { 10 }));
    let measure = |what: &str| {
        let b0 = rx.bytes();
        let start = Instant::now();
        std::thread::sleep(Duration::from_secs(live_s));
        let kbps = (rx.bytes() - b0) as f64 * 8.0 / 1000.0 / start.elapsed().as_secs_f64();
        let up = rig.upload_health().unwrap_or_default();
        println!(
            "live rung bitrate {what}: {kbps:.0} kbit/s at the receiver; upload rate {} kbit/s",
            up["rate_bps"].as_u64().unwrap_or(0) / 1000
        );
        kbps
    };
    let alone = measure("without uploads");
    rig.command(json!({"kind": "set_upload", "mode": "all"}));
    std::thread::sleep(Duration::from_secs(if smoke { 2 } else { 5 }));
    let beside = measure("with backfill");
    let changes: Vec<String> = agent
        .log()
        .lines()
        .filter(|l| l.contains("live rung changed"))
        .map(str::to_owned)
        .collect();
    println!(
        "live bitrate with backfill / without: {:.2}; rung changes: {}",
        beside / alone.max(1.0),
        changes.len()
    );
    for c in changes {
        println!("  {c}");
    }
}
