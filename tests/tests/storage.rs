//! Retention and a full disk, on a real small file system (a tmpfs of a few MB).
//!
//! NEEDS ROOT (to mount the tmpfs); without root each test fails under `CI=true`
//! and is skipped (and counted by `scripts/test`) otherwise. CI runs as root.

use std::path::Path;
use std::time::{Duration, Instant};

use stationwatch_tests::agent_process::{segments, verify_with_key, AgentProcess};
use stationwatch_tests::tmpfs::SmallDisk;
use stationwatch_tests::{have_binary, have_gst_element};

/// About 190 kB/s: a 3 MB file system fills in seconds.
const SOURCE: &str = "source = \"test\"\nwidth = 320\nheight = 240\nfps = 15\nbitrate_kbps = 1500";

/// A small tmpfs, when the machine allows it (root, and the tools the tests need).
fn small_disk(size_mb: u32) -> Option<SmallDisk> {
    if !stationwatch_tests::require(
        stationwatch_tests::is_root(),
        "needs root to mount a tmpfs (CI runs as root)",
    ) {
        return None;
    }
    if !stationwatch_tests::require(
        have_binary("ffprobe") && have_gst_element("x264enc"),
        "x264enc or ffprobe missing (run scripts/install-deps)",
    ) {
        return None;
    }
    Some(SmallDisk::mount(size_mb))
}

fn free_bytes(path: &Path) -> u64 {
    let c = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: statvfs writes into the zeroed struct we own; the path is NUL-terminated.
    unsafe {
        let mut s: libc::statvfs = std::mem::zeroed();
        assert_eq!(libc::statvfs(c.as_ptr(), &mut s), 0);
        s.f_bavail as u64 * s.f_frsize as u64
    }
}

fn config(storage: &Path, key: &Path, retention: &str) -> String {
    format!(
        "[station]\nid = \"DISK-0001\"\nkey_file = \"{}\"\n\n[storage]\npath = \"{}\"\nsegment_seconds = 2\n\n\
         [retention]\n{retention}\n\n[[camera]]\nid = \"cam\"\n{SOURCE}\n",
        key.display(),
        storage.display()
    )
}

fn manifest(storage: &Path) -> String {
    std::fs::read_to_string(storage.join("cam/manifest.jsonl")).unwrap_or_default()
}

/// `verify` with the station's key (from the agent config in `work`): (OK or OK_WITH_GAPS,
/// output).
fn verify(storage: &Path, work: &Path) -> (bool, String) {
    let (code, out) = verify_with_key(storage, &work.join("agent.toml"), &[]).unwrap();
    (code == 0 || code == 3, out)
}

fn wait_for(what: &str, timeout: Duration, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn free_space_floor_deletes_oldest_by_policy_and_recording_goes_on() {
    let Some(disk) = small_disk(4) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let storage = disk.mount.join("rec");
    let cfg = config(
        &storage,
        &work.path().join("station.key"),
        "keep_days = 0\nmin_free_mb = 2\ncheck_interval_seconds = 1",
    );
    let mut agent = AgentProcess::start(work.path(), &cfg).unwrap();
    agent
        .wait_log_count("segment deleted by policy", 3, Duration::from_secs(60))
        .unwrap();
    let still = chrono::Utc::now();
    std::thread::sleep(Duration::from_secs(3));
    let newest = segments(&storage, "cam").unwrap().last().cloned().unwrap();
    assert!(
        newest.start > still,
        "recording stopped: newest segment {newest:?}"
    );
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let log = agent.log();
    assert!(
        !log.contains("recording write failed"),
        "disk filled up:\n{log}"
    );

    let m = manifest(&storage);
    assert!(m.contains("\"kind\":\"deleted\"") && m.contains("\"policy\":\"free_space\""));
    assert!(!m.contains("disk_full"));
    let (ok, out) = verify(&storage, work.path());
    assert!(ok, "{out}");
    assert!(out.contains("by policy free_space"), "{out}");
}

/// Fills the disk with footage policy may not delete, then gives space back.
fn disk_full_then_space_returns(retention: &str) {
    let Some(disk) = small_disk(4) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let storage = disk.mount.join("rec");
    // Something else on the disk that the operator can remove later, leaving ~700 kB.
    let filler = disk.mount.join("operator-files.bin");
    let free = free_bytes(&disk.mount);
    std::fs::write(&filler, vec![7u8; free.saturating_sub(700_000) as usize]).unwrap();
    let cfg = config(&storage, &work.path().join("station.key"), retention);
    let mut agent = AgentProcess::start(work.path(), &cfg).unwrap();
    agent
        .wait_log("recording write failed", Duration::from_secs(60))
        .unwrap();
    agent
        .wait_log(
            "policy allows nothing more to be deleted",
            Duration::from_secs(10),
        )
        .unwrap();
    std::thread::sleep(Duration::from_secs(3));
    let pid = agent.pid().unwrap();
    assert!(
        Path::new(&format!("/proc/{pid}")).exists(),
        "agent died on a full disk"
    );
    let before = segments(&storage, "cam").unwrap();

    std::fs::remove_file(&filler).unwrap();
    let back = chrono::Utc::now();
    wait_for("recording to resume", Duration::from_secs(20), || {
        segments(&storage, "cam").unwrap().iter().any(|s| {
            s.start > back
                && std::fs::metadata(&s.path)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
        })
    });
    std::thread::sleep(Duration::from_secs(1));
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{}", agent.log());

    // Nothing recorded before the disk filled was deleted.
    let after = segments(&storage, "cam").unwrap();
    for b in &before {
        assert!(after.contains(b), "{} deleted", b.path.display());
    }
    let m = manifest(&storage);
    assert!(
        !m.contains("\"kind\":\"deleted\""),
        "policy deleted footage it must keep"
    );
    assert!(
        m.contains("\"reason\":\"disk_full\""),
        "no disk_full gap:\n{m}"
    );
    let (ok, out) = verify(&storage, work.path());
    assert!(ok, "{out}");
    assert!(out.contains("disk_full"), "{out}");
}

#[test]
fn disk_full_with_only_young_footage_records_a_gap_and_resumes() {
    disk_full_then_space_returns("keep_days = 30\nmin_free_mb = 1\ncheck_interval_seconds = 1");
}

#[test]
fn legal_hold_is_never_deleted_even_when_the_disk_fills() {
    disk_full_then_space_returns(
        "keep_days = 0\nmin_free_mb = 1\ncheck_interval_seconds = 1\n\
         [[retention.hold]]\nfrom = \"2000-01-01T00:00:00Z\"\nto = \"2100-01-01T00:00:00Z\"\nreason = \"test hold\"",
    );
}

/// A legal hold set by command (`set_hold` over MQTT) protects footage exactly as a configured
/// one does: with `keep_days = 0` and the free-space floor reached, nothing under the hold is
/// deleted. After `clear_hold` the same footage becomes deletable and retention deletes it by
/// policy (`free_space`), entered in the manifest; `verify` passes.
#[test]
fn commanded_legal_hold_protects_footage_until_cleared() {
    use stationwatch_tests::mosquitto::{have_mosquitto, publish, Broker, BrokerOpts, Subscriber};
    if !stationwatch_tests::require(
        have_mosquitto(),
        "mosquitto missing (run scripts/install-deps)",
    ) {
        return;
    }
    let Some(disk) = small_disk(4) else {
        return;
    };
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let acks = Subscriber::start(&broker.client(), &["stationwatch/v1/DISK-0001/ack"], 1).unwrap();
    let work = tempfile::tempdir().unwrap();
    let storage = disk.mount.join("rec");
    let cfg = config(
        &storage,
        &work.path().join("station.key"),
        "keep_days = 0\nmin_free_mb = 2\ncheck_interval_seconds = 1",
    ) + &format!(
        "\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nhealth_interval_seconds = 1\n",
        broker.port()
    );
    let mut agent = AgentProcess::start(work.path(), &cfg).unwrap();
    agent
        .wait_log("connected to the broker", Duration::from_secs(20))
        .unwrap();
    let ts = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let send = |id: &str, command: String| {
        let payload = format!(
            r#"{{"v":1,"id":"{id}","issued_at":"{}","command":{command}}}"#,
            ts(chrono::Utc::now())
        );
        publish(
            &broker.client(),
            "stationwatch/v1/DISK-0001/cmd",
            payload.as_bytes(),
            1,
            false,
        )
        .unwrap();
        wait_for(
            &format!("ack done of {id}"),
            Duration::from_secs(15),
            || {
                acks.messages().iter().any(|m| {
                    let v: serde_json::Value =
                        serde_json::from_slice(&m.payload).unwrap_or_default();
                    v["id"] == id && v["status"] == "done"
                })
            },
        );
    };
    let now = chrono::Utc::now();
    send(
        "hold-1",
        format!(
            r#"{{"kind":"set_hold","hold":"case-1","from":"{}","to":"{}","reason":"complaint 1"}}"#,
            ts(now - chrono::Duration::hours(1)),
            ts(now + chrono::Duration::hours(1))
        ),
    );
    // The disk reaches the floor (2 MB free of 4) and stays there for several retention
    // rounds (every second): nothing held may go.
    wait_for("the free-space floor", Duration::from_secs(60), || {
        free_bytes(&disk.mount) < 2 * 1024 * 1024
    });
    std::thread::sleep(Duration::from_secs(5));
    assert!(
        !manifest(&storage).contains("\"kind\":\"deleted\""),
        "held footage was deleted:\n{}",
        manifest(&storage)
    );
    assert!(!agent.log().contains("segment deleted by policy"));

    send(
        "hold-2",
        r#"{"kind":"clear_hold","hold":"case-1"}"#.to_string(),
    );
    agent
        .wait_log("segment deleted by policy", Duration::from_secs(30))
        .unwrap();
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let m = manifest(&storage);
    assert!(m.contains("\"kind\":\"deleted\"") && m.contains("\"policy\":\"free_space\""));
    let (ok, out) = verify(&storage, work.path());
    assert!(ok, "{out}");
}
