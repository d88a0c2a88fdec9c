//! Uploads into the archive (issue 14) with real parts: the agent recording test cameras, a
//! private Mosquitto, the controller binary, and the archive in a local folder or in a real
//! S3-compatible server (`s3s-fs`); the same scenarios run against both. Network tests put the
//! controller and the broker behind a `tbf`-shaped veth link (root, network namespaces).
//!
//! What a user checks: the archived files are byte for byte the station's files named by its
//! signed manifest, the manifest lines of the window are archived beside them, a killed agent
//! or a cut link resumes without sending again what the archive holds, an altered file is
//! refused and alerted, a full archive disk is an alert and not a crash, and the recording goes
//! on through all of it.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use stationwatch_tests::agent_process::{manifest_entries, verify_with_key, AgentProcess};
use stationwatch_tests::archive::{
    archived_in, assert_archived, field, ready, stored_ends, ts, window_segments, AgentSpec, Rig,
    Store, STATION,
};
use stationwatch_tests::{eventually, is_root, require};

fn requested_window_is_archived_verified_and_a_killed_agent_resumes(store: Store) {
    if !ready(store) {
        return;
    }
    let rig = Rig::start(store);
    let storage = rig.dir.path().join("rec");
    let chunk_kib = 16u64;
    let cfg = AgentSpec {
        cameras: &["desk", "box"],
        kbps: 1500,
        segment_s: 4,
        mqtt: format!("mqtt://127.0.0.1:{}", rig.broker.port()),
        upload_url: rig.ctl.base_url(),
        upload_extra: format!("chunk_kib = {chunk_kib}\nbackfill_kbps = 200\n"),
        camera_extra: "".into(),
        rtsp: vec![],
    }
    .toml(&storage);
    let mut agent = AgentProcess::start(rig.dir.path(), &cfg).unwrap();
    agent
        .wait_log("agent ready", Duration::from_secs(30))
        .unwrap();
    rig.register(&rig.dir.path().join("agent.toml"));
    let t0 = Utc::now();
    std::thread::sleep(Duration::from_secs(10));
    let t1 = t0 + chrono::Duration::seconds(8);

    // A requested window of both cameras (mode `requested`: nothing else goes up).
    let row = rig.command(json!({
        "kind": "upload", "job": "case-1", "from": ts(t0), "to": ts(t1),
        "priority": 5, "reason": "complaint 2026-0147"
    }));
    assert_eq!(
        row["ack"]["result"]["cameras"],
        json!(["desk", "box"]),
        "{row}"
    );
    let job = rig.wait_job_done("case-1", 90);
    eprintln!("job case-1: {job}");
    let n: usize = ["desk", "box"]
        .iter()
        .map(|c| assert_archived(&rig, &storage, c, t0, t1))
        .sum();
    eprintln!("{n} segments of the window archived and identical ({store:?})");
    // The window was held while it was collected, and released once archived.
    let desk = manifest_entries(&storage, "desk").unwrap();
    assert!(desk.iter().any(|e| e["kind"] == "hold"
        && e["source"] == "request"
        && e["id"] == "upload-case-1-desk"));
    eventually("the job's hold released", 20, || {
        Ok(manifest_entries(&storage, "desk")?
            .iter()
            .any(|e| e["kind"] == "release" && e["id"] == "upload-case-1-desk")
            .then_some(()))
    });
    assert!(
        !agent.log().contains("segment upload resumes"),
        "nothing to resume yet"
    );

    // Continuous backfill, capped at 1 Mbit/s: kill the agent in the middle of a segment.
    rig.command(json!({"kind": "set_upload", "mode": "all"}));
    let in_flight = eventually("a segment half uploaded", 60, || {
        let log = agent.log();
        let done = archived_in(&log);
        Ok(stored_ends(&log)
            .into_iter()
            .find(|(k, end)| *end >= 2 * chunk_kib * 1024 && !done.contains(k)))
    });
    agent.kill().unwrap();
    let log = agent.log();
    let ((cam, seq), _) = in_flight;
    let stored_before = stored_ends(&log)[&(cam.clone(), seq)];
    assert!(
        !archived_in(&log).contains(&(cam.clone(), seq)),
        "finished before the kill"
    );
    eprintln!("killed with {stored_before} bytes of {cam} segment {seq} stored");

    // Restarted: backfill goes on by itself (the mode is kept) from what the archive holds.
    let agent = AgentProcess::start(rig.dir.path(), &cfg).unwrap();
    let needle = format!("segment upload resumes where the archive is camera={cam} seq={seq}");
    agent.wait_log(&needle, Duration::from_secs(60)).unwrap();
    let line = agent
        .log()
        .lines()
        .find(|l| l.contains(&needle))
        .unwrap()
        .to_owned();
    let resumed_at: u64 = field(&line, "offset").unwrap().parse().unwrap();
    eprintln!("resumed at {resumed_at} (stored before the kill: {stored_before})");
    assert!(
        resumed_at >= stored_before && resumed_at <= stored_before + chunk_kib * 1024,
        "resumed at {resumed_at}, {stored_before} were stored: more than one chunk sent again"
    );
    agent
        .wait_log(
            &format!("segment archived camera={cam} seq={seq}"),
            Duration::from_secs(60),
        )
        .unwrap();
    assert_eq!(rig.upload_health().unwrap()["mode"], "all");

    // The recording is intact: verify with the station's key (the kill is an explained gap).
    let config = rig.dir.path().join("agent.toml");
    let (code, out) = verify_with_key(&storage, &config, &[]).unwrap();
    assert!(code == 0 || code == 3, "verify {code}:\n{out}");
}

#[test]
fn requested_window_archived_and_resumed_after_kill_local_folder() {
    requested_window_is_archived_verified_and_a_killed_agent_resumes(Store::Local);
}

#[test]
fn requested_window_archived_and_resumed_after_kill_s3() {
    requested_window_is_archived_verified_and_a_killed_agent_resumes(Store::S3);
}

fn altered_segment_is_refused_kept_aside_and_alerted(store: Store) {
    if !ready(store) {
        return;
    }
    let rig = Rig::start(store);
    let storage = rig.dir.path().join("rec");
    let cfg = AgentSpec {
        cameras: &["desk"],
        kbps: 400,
        segment_s: 2,
        mqtt: format!("mqtt://127.0.0.1:{}", rig.broker.port()),
        upload_url: rig.ctl.base_url(),
        upload_extra: "".into(),
        camera_extra: "".into(),
        rtsp: vec![],
    }
    .toml(&storage);
    let agent = AgentProcess::start(rig.dir.path(), &cfg).unwrap();
    agent
        .wait_log("agent ready", Duration::from_secs(30))
        .unwrap();
    rig.register(&rig.dir.path().join("agent.toml"));
    let t0 = Utc::now();
    let segs = eventually("three segments", 30, || {
        let s = window_segments(
            &storage,
            "desk",
            t0,
            Utc::now() + chrono::Duration::hours(1),
        );
        Ok((s.len() >= 3).then_some(s))
    });
    // Someone with access to the disk but not the key edits the middle segment (same size).
    let (bad_seq, bad_file, _) = segs[1].clone();
    let path = storage.join("desk").join(&bad_file);
    let mut bytes = std::fs::read(&path).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    std::fs::write(&path, &bytes).unwrap();

    let to = Utc::now();
    rig.command(json!({
        "kind": "upload", "job": "tamper", "from": ts(t0), "to": ts(to), "reason": "check"
    }));
    let alert = eventually("archive_refused alert", 60, || {
        rig.open_alert("archive_refused")
    });
    eprintln!("alert: {alert}");
    // Kept aside, not archived; the other segments are archived.
    let quarantine = rig.object(&format!("quarantine/{STATION}/desk"));
    let kept: Vec<PathBuf> = eventually("the refused bytes kept aside", 20, || {
        let v: Vec<PathBuf> = std::fs::read_dir(&quarantine)
            .map(|d| d.filter_map(|e| Some(e.ok()?.path())).collect())
            .unwrap_or_default();
        Ok((!v.is_empty()).then_some(v))
    });
    assert_eq!(
        std::fs::read(&kept[0]).unwrap(),
        bytes,
        "the altered bytes are kept"
    );
    assert!(!rig
        .object(&format!("segments/{STATION}/desk/{bad_file}"))
        .exists());
    for (seq, file, _) in segs.iter().filter(|s| s.0 != bad_seq) {
        let p = rig.object(&format!("segments/{STATION}/desk/{file}"));
        eventually(&format!("segment {seq} archived"), 30, || {
            Ok(p.exists().then_some(()))
        });
    }
    let up = eventually("refusal in health", 20, || {
        let up = rig.upload_health()?;
        Ok((up["refused_segments"].as_u64() >= Some(1)).then_some(up))
    });
    eprintln!("health upload: {up}");
    // The job stays open (its window is not whole), the hold stays, recording goes on.
    assert_ne!(
        up["jobs"][0]["state"], "done",
        "a window with a refused segment is not done"
    );
    let later = Utc::now();
    stationwatch_tests::agent_process::wait_segment_after(
        &storage,
        "desk",
        later,
        Duration::from_secs(10),
    )
    .unwrap();
}

#[test]
fn altered_segment_refused_and_alerted_local_folder() {
    altered_segment_is_refused_kept_aside_and_alerted(Store::Local);
}

#[test]
fn altered_segment_refused_and_alerted_s3() {
    altered_segment_is_refused_kept_aside_and_alerted(Store::S3);
}

#[test]
fn a_full_archive_disk_is_an_alert_not_a_crash_and_uploads_resume_when_space_returns() {
    if !ready(Store::Local) || !require(is_root(), "needs root to mount a small tmpfs archive") {
        return;
    }
    let disk = stationwatch_tests::tmpfs::SmallDisk::mount(1);
    // The archive disk is full but for 16 KiB: manifest lines fit, no segment does.
    let filler = disk.mount.join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 * 1024];
        while f.write_all(&block).is_ok() {}
        let len = f.metadata().unwrap().len();
        f.set_len(len.saturating_sub(16 * 1024)).unwrap();
    }
    let rig = Rig::start_with(Store::Local, Some(&disk.mount));
    let storage = rig.dir.path().join("rec");
    let cfg = AgentSpec {
        cameras: &["desk"],
        kbps: 1500,
        segment_s: 2,
        mqtt: format!("mqtt://127.0.0.1:{}", rig.broker.port()),
        upload_url: rig.ctl.base_url(),
        upload_extra: "".into(),
        camera_extra: "".into(),
        rtsp: vec![],
    }
    .toml(&storage);
    let agent = AgentProcess::start(rig.dir.path(), &cfg).unwrap();
    agent
        .wait_log("agent ready", Duration::from_secs(30))
        .unwrap();
    rig.register(&rig.dir.path().join("agent.toml"));
    let t0 = Utc::now();
    std::thread::sleep(Duration::from_secs(12));
    let t1 = Utc::now();
    rig.command(json!({
        "kind": "upload", "job": "full", "from": ts(t0), "to": ts(t1), "reason": "check"
    }));
    let alert = eventually("archive_unavailable alert", 60, || {
        rig.open_alert("archive_unavailable")
    });
    eprintln!("alert: {alert}");
    // The controller keeps serving; the agent keeps recording and says why uploads fail.
    assert_eq!(rig.api.get("/api/me").unwrap().status, 200);
    let up = eventually("upload error in health", 30, || {
        let up = rig.upload_health()?;
        Ok(up["last_error"].as_str().map(|_| up.clone()))
    });
    eprintln!("health upload while full: {}", up["last_error"]);
    stationwatch_tests::agent_process::wait_segment_after(
        &storage,
        "desk",
        Utc::now(),
        Duration::from_secs(10),
    )
    .unwrap();

    // Space returns: the uploads finish and the alert closes.
    std::fs::remove_file(&filler).unwrap();
    rig.wait_job_done("full", 120);
    assert_archived(&rig, &storage, "desk", t0, t1);
    eventually("archive_unavailable closed", 60, || {
        Ok(rig
            .open_alert("archive_unavailable")?
            .is_none()
            .then_some(()))
    });
}

/// The shaped-link scenario: the controller and the broker are on the far side of a 1 Mbit/s
/// uplink (tbf), camera `desk` streams live in `auto` mode to an SRT receiver there, and a
/// requested 3-minute window of both cameras is uploaded while it is recorded; the link is cut
/// for 20 s in the middle.
#[test]
fn a_three_minute_window_of_two_cameras_crosses_a_1_mbit_link_cut_for_20_s_while_live_streams() {
    use stationwatch_tests::netns::{Link, FAR_ADDR};
    use stationwatch_tests::srt::{have_srt_live_transmit, SrtReceiver};
    if !ready(Store::Local)
        || !stationwatch_tests::require_none(
            (!have_srt_live_transmit())
                .then(|| "srt-live-transmit missing (srt-tools)".to_owned())
                .or_else(Link::unavailable),
        )
    {
        return;
    }
    let link = Link::create("upl").unwrap();
    let rig = Rig::start(Store::Local);
    let broker_relay = link.relay(rig.broker.port()).unwrap();
    let ctl_relay = link.relay(rig.ctl.addr.port()).unwrap();
    let received = rig.dir.path().join("live.ts");
    let rx = SrtReceiver::start(&link.far_prefix(), 9000, &received).unwrap();
    let storage = rig.dir.path().join("rec");
    let chunk_kib = 128u64;
    let cfg = AgentSpec {
        cameras: &["desk", "box"],
        kbps: 200,
        segment_s: 6,
        mqtt: format!("mqtt://{FAR_ADDR}:{}", broker_relay.port),
        upload_url: format!("http://{FAR_ADDR}:{}", ctl_relay.port),
        upload_extra: format!("chunk_kib = {chunk_kib}\n"),
        camera_extra: format!("live = \"auto\"\nlive_target = \"srt://{FAR_ADDR}:9000\"\n"),
        rtsp: vec![],
    }
    .toml(&storage);
    link.shape(1000).unwrap();
    let agent = AgentProcess::start_in(&link.agent_prefix(), rig.dir.path(), &cfg, &[]).unwrap();
    agent
        .wait_log("agent ready", Duration::from_secs(30))
        .unwrap();
    rig.register(&rig.dir.path().join("agent.toml"));
    agent
        .wait_log("live stream flowing camera=desk", Duration::from_secs(30))
        .unwrap();
    let t0 = Utc::now();
    let t1 = t0 + chrono::Duration::seconds(180);
    rig.command(json!({
        "kind": "upload", "job": "window", "from": ts(t0), "to": ts(t1),
        "priority": 9, "reason": "observer request"
    }));
    let started = Instant::now();
    // Upload while it records, then cut the link for 20 s in the middle.
    std::thread::sleep(Duration::from_secs(80));
    let live_before_cut = rx.bytes();
    link.agent_side(false).unwrap();
    std::thread::sleep(Duration::from_secs(20));
    link.agent_side(true).unwrap();
    let cut_over = Utc::now();
    rig.wait_job_done("window", 400);
    eprintln!(
        "window archived {:.0} s after the request (window 180 s, link 1 Mbit/s, 20 s cut)",
        started.elapsed().as_secs_f64()
    );
    let n: usize = ["desk", "box"]
        .iter()
        .map(|c| assert_archived(&rig, &storage, c, t0, t1))
        .sum();
    eprintln!("{n} segments archived byte for byte");
    // At most one chunk per file was sent again: every resumption starts at or after what the
    // agent had seen stored.
    let log = agent.log();
    let mut stored: BTreeMap<(String, u64), u64> = BTreeMap::new();
    let mut resent = 0u64;
    for l in log.lines() {
        if l.contains("chunk stored") {
            let k = (
                field(l, "camera").unwrap(),
                field(l, "seq").unwrap().parse().unwrap(),
            );
            let end = field(l, "offset").unwrap().parse::<u64>().unwrap()
                + field(l, "bytes").unwrap().parse::<u64>().unwrap();
            stored.insert(k, end);
        } else if l.contains("segment upload resumes where the archive is") {
            let k = (
                field(l, "camera").unwrap(),
                field(l, "seq").unwrap().parse().unwrap(),
            );
            let at: u64 = field(l, "offset").unwrap().parse().unwrap();
            let before = stored.get(&k).copied().unwrap_or(0);
            assert!(
                at >= before,
                "{k:?} resumed at {at} below {before} already stored"
            );
            assert!(
                at <= before + chunk_kib * 1024,
                "{k:?}: more than a chunk resent"
            );
            resent += 1;
        }
    }
    eprintln!("{resent} resumptions after the cut");
    // Live kept streaming: video arrived after the cut, and before it the rung never fell to
    // off because of the uploads.
    assert!(live_before_cut > 0);
    assert!(
        rx.wait_growth(50_000, Duration::from_secs(30)),
        "no live video after the cut"
    );
    let offs: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("live rung changed") && l.contains("to=\"off\""))
        .collect();
    eprintln!("live rung changes to off: {}", offs.len());
    let changes: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("live rung changed"))
        .collect();
    eprintln!("{}", changes.join("\n"));
    let _ = cut_over;
    // Recording gapless through all of it.
    let mut agent = agent;
    agent.terminate(Duration::from_secs(15)).unwrap();
    let config = rig.dir.path().join("agent.toml");
    let (code, out) = verify_with_key(&storage, &config, &[]).unwrap();
    assert!(code == 0 || code == 3, "verify {code}:\n{out}");
    for cam in ["desk", "box"] {
        let gaps: Vec<Value> = manifest_entries(&storage, cam)
            .unwrap()
            .into_iter()
            .filter(|e| e["kind"] == "gap" && e["reason"] == "camera_lost")
            .collect();
        assert!(gaps.is_empty(), "{cam} lost video: {gaps:?}");
    }
}
