//! Evidence an outsider can trust, agent side (issue 12), end to end with the real agent:
//! * a well-named segment file planted while the agent was stopped (after a SIGKILL, so the
//!   agent does adopt what it announced itself) is never signed, is reported as foreign, and
//!   `verify` with the station's key says FAILED naming it;
//! * a broken legal holds file stops deletion by policy (holds fail closed);
//! * segment entries carry the clock state the kernel reports (read as the agent reads it);
//! * over MQTT (a real Mosquitto; the controller played by `mosquitto_sub`/`mosquitto_pub`): a
//!   broken holds file is an event and a health flag, hold changes are refused until a person
//!   fixes it, and `set_hold` / `clear_hold` are `hold` / `release` entries in the manifest
//!   before they are acknowledged.

use std::path::Path;
use std::time::Duration;

use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::manifest::{parse_manifest, ClockSync, EntryBody, MANIFEST_FILE};
use stationwatch_protocol::mqtt::{decode_ack, decode_event, decode_health, AckStatus, EventKind};
use stationwatch_tests::agent_process::{config, segments, verify_with_key, AgentProcess};
use stationwatch_tests::mosquitto::{have_mosquitto, publish, Broker, BrokerOpts, Subscriber};
use stationwatch_tests::{have_binary, have_gst_element};

const SOURCE: &str = "source = \"test\"\nwidth = 160\nheight = 120\nfps = 10\nbitrate_kbps = 200";
const FAILED: i32 = 5;

fn tools_present() -> bool {
    let ok = have_binary("ffprobe") && have_gst_element("x264enc");
    if !ok {
        eprintln!("SKIP: x264enc or ffprobe missing (run scripts/install-deps)");
    }
    ok
}

fn manifest_text(cam: &Path) -> String {
    std::fs::read_to_string(cam.join(MANIFEST_FILE)).unwrap_or_default()
}

/// The kernel's clock state, read the way the agent reads it (`adjtimex`, modes 0).
fn kernel_clock_synced() -> bool {
    // SAFETY: an all-zero timex is valid; with modes = 0 adjtimex only reads.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    // SAFETY: `tx` is a valid, exclusively borrowed timex.
    let ret = unsafe { libc::adjtimex(&mut tx) };
    ret >= 0 && ret != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

#[test]
fn a_file_planted_while_the_agent_was_down_is_never_signed() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("rec");
    let cam = storage.join("cam");
    let cfg = config(&storage, 2, &[("cam", SOURCE)]);
    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    agent
        .wait_log_count("segment finished", 2, Duration::from_secs(30))
        .unwrap();
    // An unclean stop: the open segment is announced but not entered; the agent adopts it.
    agent.kill().unwrap();

    // Someone with write access but no key copies a segment in, named after the end of the
    // timeline, so that it would look like the footage that follows.
    let segs = segments(&storage, "cam").unwrap();
    let last = segs.last().unwrap();
    let planted_start = last.start + chrono::Duration::seconds(3600);
    let day = planted_start.format("%Y-%m-%d").to_string();
    let planted_rel = format!("{day}/{}.ts", planted_start.format("%Y%m%dT%H%M%S%.3fZ"));
    std::fs::create_dir_all(cam.join(&day)).unwrap();
    std::fs::copy(&segs[0].path, cam.join(&planted_rel)).unwrap();
    let killed_open = last
        .path
        .strip_prefix(&cam)
        .unwrap()
        .to_str()
        .unwrap()
        .to_owned();

    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    agent
        .wait_log_count("segment finished", 1, Duration::from_secs(30))
        .unwrap();
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let log = agent.log();
    assert!(log.contains("FOREIGN segment file"), "{log}");
    assert!(log.contains(&planted_rel), "{log}");

    let m = manifest_text(&cam);
    assert!(!m.contains(&planted_rel), "a planted file was signed:\n{m}");
    // What the agent itself announced before the kill was adopted.
    assert!(
        m.contains("\"kind\":\"segment\"") && m.contains(&killed_open),
        "the announced file was not recovered:\n{m}"
    );
    assert!(
        cam.join(&planted_rel).exists(),
        "a foreign file is left alone"
    );

    let (code, out) = verify_with_key(&storage, &dir.path().join("agent.toml"), &[]).unwrap();
    assert_eq!(code, FAILED, "{out}");
    assert!(
        out.contains(&format!("file {planted_rel} is not listed")),
        "{out}"
    );
    // Without the stranger the recording verifies.
    std::fs::remove_file(cam.join(&planted_rel)).unwrap();
    let (code, out) = verify_with_key(&storage, &dir.path().join("agent.toml"), &[]).unwrap();
    assert!(code == 0 || code == 3, "{out}");
}

#[test]
fn segments_carry_the_kernel_clock_state() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("rec");
    let cfg = config(&storage, 2, &[("cam", SOURCE)]);
    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    agent
        .wait_log_count("segment finished", 2, Duration::from_secs(30))
        .unwrap();
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let synced = kernel_clock_synced();
    let parsed = parse_manifest(&std::fs::read(storage.join("cam").join(MANIFEST_FILE)).unwrap());
    let clocks: Vec<_> = parsed
        .entries
        .iter()
        .filter_map(|e| match e.body() {
            EntryBody::Segment(s) => Some(s.clock),
            _ => None,
        })
        .collect();
    assert!(clocks.len() >= 2, "{clocks:?}");
    // The host's clock did not change state during the test (this container's never does):
    // every segment says what the kernel says.
    let want = if synced {
        ClockSync::Synced
    } else {
        ClockSync::Unsynced
    };
    assert!(clocks.iter().all(|c| *c == Some(want)), "{clocks:?}");
    let (code, out) = verify_with_key(&storage, &dir.path().join("agent.toml"), &[]).unwrap();
    assert_eq!(code, 0, "{out}");
    if !synced {
        assert!(out.contains("not synchronised"), "{out}");
    }
}

#[test]
fn a_broken_holds_file_stops_deletion_by_policy() {
    if !tools_present() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("rec");
    std::fs::create_dir_all(&storage).unwrap();
    std::fs::write(storage.join(".legal-holds.json"), b"{ this is not json").unwrap();
    // keep_days = 0 and a free-space floor no disk can meet: policy would delete every finished
    // segment at once, if holds did not fail closed.
    let mut cfg = config(&storage, 2, &[("cam", SOURCE)]);
    cfg.push_str(
        "\n[retention]\nkeep_days = 0\nmin_free_mb = 100000000\ncheck_interval_seconds = 1\n",
    );
    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    agent
        .wait_log_count("segment finished", 4, Duration::from_secs(40))
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let log = agent.log();
    assert!(log.contains("legal holds file unreadable"), "{log}");
    assert!(!log.contains("segment deleted by policy"), "{log}");
    let m = manifest_text(&storage.join("cam"));
    assert!(!m.contains("\"kind\":\"deleted\""), "{m}");
    assert_eq!(
        std::fs::read(storage.join(".legal-holds.json")).unwrap(),
        b"{ this is not json",
        "the broken file is left for a person"
    );
    assert!(segments(&storage, "cam").unwrap().len() >= 4);
}

#[test]
fn holds_over_mqtt_fail_closed_and_are_entered_before_the_ack() {
    if !tools_present() || !have_mosquitto() {
        eprintln!("SKIP: mosquitto missing");
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let topic = |sub: &str| format!("stationwatch/v1/TEST-0001/{sub}");
    let ctl = Subscriber::start(&broker.client(), &[&topic("#")], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("rec");
    std::fs::create_dir_all(&storage).unwrap();
    let holds_file = storage.join(".legal-holds.json");
    std::fs::write(&holds_file, b"[1, 2").unwrap();
    let cfg = config(&storage, 60, &[("cam", SOURCE)])
        + &format!(
            "\n[retention]\ncheck_interval_seconds = 1\n\n[mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nhealth_interval_seconds = 1\n",
            broker.port()
        );
    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    let wait = |what: &str, pred: &dyn Fn(&stationwatch_tests::mosquitto::Message) -> bool| {
        ctl.wait_for(Duration::from_secs(20), pred)
            .unwrap_or_else(|| panic!("no {what} within 20 s"))
    };
    // The broken file: an event, and a flag in health until it is fixed.
    wait("holds_file_error event", &|m| {
        m.topic == topic("events")
            && decode_event(&m.payload)
                .is_ok_and(|e| matches!(e.kind, EventKind::HoldsFileError { .. }))
    });
    wait("health with holds_file_error", &|m| {
        m.topic == topic("health")
            && decode_health(&m.payload).is_ok_and(|h| h.holds_file_error.is_some())
    });
    let send = |id: &str, cmd: &str| {
        let payload = format!(
            r#"{{"v":1,"id":"{id}","issued_at":"{}","command":{cmd}}}"#,
            Timestamp::now()
        );
        publish(
            &broker.client(),
            &topic("cmd"),
            payload.as_bytes(),
            1,
            false,
        )
        .unwrap();
    };
    let final_ack = |id: &str| {
        let m = wait("final ack", &|m| {
            m.topic == topic("ack")
                && decode_ack(&m.payload).is_ok_and(|a| {
                    a.id.as_ref().map(|i| i.as_str()) == Some(id) && a.status.is_final()
                })
        });
        decode_ack(&m.payload).unwrap()
    };
    let set = r#"{"kind":"set_hold","hold":"case-12","from":"2026-01-01T00:00:00.000Z","to":"2027-01-01T00:00:00.000Z","reason":"complaint 12"}"#;
    send("hold-refused", set);
    assert_eq!(final_ack("hold-refused").status, AckStatus::Rejected);
    assert_eq!(
        std::fs::read(&holds_file).unwrap(),
        b"[1, 2",
        "left for a person"
    );

    // A person fixes the file: deletion by policy may resume, the flag goes.
    std::fs::write(&holds_file, b"{}").unwrap();
    wait("holds_file_ok event", &|m| {
        m.topic == topic("events")
            && decode_event(&m.payload).is_ok_and(|e| matches!(e.kind, EventKind::HoldsFileOk))
    });

    let manifest = storage.join("cam").join(MANIFEST_FILE);
    send("hold-1", set);
    assert_eq!(final_ack("hold-1").status, AckStatus::Done);
    // Read at once: the entry was durable before the ack.
    let m = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        m.contains(r#""kind":"hold","at":"#) && m.contains(r#""id":"case-12","from":"2026-01-01T00:00:00.000Z","to":"2027-01-01T00:00:00.000Z","source":"command","reason":"complaint 12""#),
        "{m}"
    );
    send("clear-1", r#"{"kind":"clear_hold","hold":"case-12"}"#);
    assert_eq!(final_ack("clear-1").status, AckStatus::Done);
    let m = std::fs::read_to_string(&manifest).unwrap();
    assert!(
        m.contains(r#""kind":"release""#) && m.contains(r#""id":"case-12","source":"command""#),
        "{m}"
    );
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let (code, out) = verify_with_key(&storage, &dir.path().join("agent.toml"), &[]).unwrap();
    assert!(code == 0 || code == 3, "{out}");
}
