//! The agent against a real Mosquitto: status and last will, health figures, commands with
//! acknowledgements, broker outages with nothing lost and no recording gap, TLS with a
//! password. The controller side is played by `mosquitto_sub`/`mosquitto_pub`.

use std::time::{Duration, Instant};

use stationwatch_protocol::manifest::{Hash256, Timestamp};
use stationwatch_protocol::mqtt::{decode_ack, decode_event, decode_health, AckStatus, EventKind};
use stationwatch_tests::agent_process::{
    agent_command, config, segments, verify_with_key, AgentProcess,
};
use stationwatch_tests::mosquitto::{
    have_mosquitto, publish, Broker, BrokerOpts, Message, Subscriber,
};
use stationwatch_tests::{have_gst_element, CameraOpts, TestCamera};

const STATION: &str = "TEST-0001";
const SOURCE: &str = "source = \"test\"\nwidth = 160\nheight = 120\nfps = 15\nbitrate_kbps = 200";
const CAMERA_BIN: &str = env!("CARGO_BIN_EXE_test-camera");

fn ready() -> bool {
    stationwatch_tests::require(
        have_mosquitto() && have_gst_element("x264enc"),
        "mosquitto or x264enc missing (run scripts/install-deps)",
    )
}

fn topic(sub: &str) -> String {
    format!("stationwatch/v1/{STATION}/{sub}")
}

fn mqtt_section(url: &str, extra: &str) -> String {
    format!("\n[mqtt]\nurl = \"{url}\"\nhealth_interval_seconds = 1\n{extra}\n")
}

fn wait(sub: &Subscriber, what: &str, secs: u64, pred: impl Fn(&Message) -> bool) -> Message {
    sub.wait_for(Duration::from_secs(secs), pred)
        .unwrap_or_else(|| panic!("no {what} within {secs} s; got {:?}", topics_of(sub)))
}

fn topics_of(sub: &Subscriber) -> Vec<String> {
    sub.messages()
        .iter()
        .map(|m| {
            format!(
                "{} {}",
                m.topic,
                m.text().chars().take(120).collect::<String>()
            )
        })
        .collect()
}

fn acks_for(sub: &Subscriber, id: &str) -> Vec<stationwatch_protocol::mqtt::Ack> {
    sub.messages()
        .iter()
        .filter(|m| m.topic == topic("ack"))
        .filter_map(|m| decode_ack(&m.payload).ok())
        .filter(|a| a.id.as_ref().map(|i| i.as_str()) == Some(id))
        .collect()
}

fn command(id: &str, issued_at: Timestamp, command: &str) -> String {
    format!(r#"{{"v":1,"id":"{id}","issued_at":"{issued_at}","command":{command}}}"#)
}

#[test]
fn status_health_and_last_will_tell_the_truth() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let ctl = Subscriber::start(&broker.client(), &[&topic("#")], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let cfg = config(&dir.path().join("rec"), 60, &[("cam", SOURCE)]) + &mqtt_section(&url, "");
    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();

    wait(&ctl, "status online", 20, |m| {
        m.topic == topic("status") && m.text().contains("\"online\"")
    });
    // A report taken while recording. The first one may cover the start (frames for part of its
    // interval only), so the figures are checked on the next: a full interval of recording.
    let recording_health = |m: &Message| {
        m.topic == topic("health")
            && m.text().contains("\"recording\"")
            && m.text().contains("\"fps\"")
    };
    wait(&ctl, "health while recording", 20, recording_health);
    let deadline = Instant::now() + Duration::from_secs(20);
    let h = loop {
        let reports: Vec<Message> = ctl
            .messages()
            .into_iter()
            .filter(|m| recording_health(m))
            .collect();
        if let Some(second) = reports.get(1) {
            break second.clone();
        }
        assert!(
            Instant::now() < deadline,
            "no second health report while recording"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let h = decode_health(&h.payload).unwrap();
    let cam = &h.cameras[&stationwatch_protocol::CameraId::new("cam").unwrap()];
    let fps = cam.fps.unwrap();
    assert!(
        (10.0..=20.0).contains(&fps),
        "fps {fps} for a 15 fps camera"
    );
    assert!(
        cam.bitrate_bps.unwrap() > 10_000,
        "bitrate {:?}",
        cam.bitrate_bps
    );
    let disk = h.disk.expect("disk reported");
    assert!(disk.free_bytes > 0 && disk.total_bytes >= disk.free_bytes);
    assert!(
        disk.hours_left.is_some(),
        "hours left at the current bitrate"
    );
    assert!(h.clock.is_some() && h.system.load_1m.is_some());
    assert_eq!(h.agent.version, "0.1.0");
    let cfg_bytes = std::fs::read(dir.path().join("agent.toml")).unwrap();
    assert_eq!(h.agent.config_hash, Some(Hash256::of(&cfg_bytes)));
    let (_, key_out, _) = agent_command(&[
        "key",
        "--config",
        dir.path().join("agent.toml").to_str().unwrap(),
    ])
    .unwrap();
    let fp = h.agent.key_fingerprint.unwrap().to_string();
    assert!(key_out.contains(&fp), "fingerprint {fp} not in:\n{key_out}");
    // Within a minute of start the agent announced itself.
    wait(&ctl, "agent_starting event", 5, |m| {
        m.topic == topic("events") && m.text().contains("agent_starting")
    });

    // The agent vanishes: the broker publishes its last will, retained.
    agent.kill().unwrap();
    wait(&ctl, "last will", 60, |m| {
        m.topic == topic("status") && m.text().contains("offline")
    });
    let late = Subscriber::start(&broker.client(), &[&topic("status")], 1).unwrap();
    let retained = wait(&late, "retained status", 5, |m| m.topic == topic("status"));
    assert!(
        retained.retained && retained.text().contains("\"lost\""),
        "{}",
        retained.text()
    );
}

#[test]
fn commands_are_acknowledged_once_validated_and_never_crash_the_agent() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let ctl = Subscriber::start(&broker.client(), &[&topic("#")], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("rec");
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let cfg = config(&storage, 60, &[("cam", SOURCE)]) + &mqtt_section(&url, "");
    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    wait(&ctl, "health while recording", 20, |m| {
        m.topic == topic("health") && m.text().contains("\"recording\"")
    });
    let send = |payload: &str| {
        publish(
            &broker.client(),
            &topic("cmd"),
            payload.as_bytes(),
            1,
            false,
        )
        .unwrap()
    };
    let final_ack = |id: &str| {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let acks = acks_for(&ctl, id);
            if let Some(a) = acks.iter().find(|a| a.status.is_final()) {
                return (acks.clone(), a.clone());
            }
            assert!(Instant::now() < deadline, "no final ack for {id}: {acks:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // ping: accepted, then done.
    send(&command("ping-1", Timestamp::now(), r#"{"kind":"ping"}"#));
    let (acks, done) = final_ack("ping-1");
    assert_eq!(acks[0].status, AckStatus::Accepted, "{acks:?}");
    assert_eq!(done.status, AckStatus::Done);

    // set_hold, twice with the same id: executed once, the repeat gets the same answer.
    let hold = command(
        "hold-1",
        Timestamp::now(),
        r#"{"kind":"set_hold","hold":"case-7","from":"2026-01-01T00:00:00.000Z","to":"2027-01-01T00:00:00.000Z","reason":"complaint 7"}"#,
    );
    send(&hold);
    let (_, first) = final_ack("hold-1");
    assert_eq!(first.status, AckStatus::Done);
    assert_eq!(first.result.as_ref().unwrap()["replaced"], false);
    send(&hold);
    let deadline = Instant::now() + Duration::from_secs(10);
    while acks_for(&ctl, "hold-1")
        .iter()
        .filter(|a| a.status.is_final())
        .count()
        < 2
    {
        assert!(Instant::now() < deadline, "repeat not answered");
        std::thread::sleep(Duration::from_millis(50));
    }
    let finals: Vec<_> = acks_for(&ctl, "hold-1")
        .into_iter()
        .filter(|a| a.status.is_final())
        .collect();
    assert_eq!(
        finals[1].result, finals[0].result,
        "a repeat must not execute again"
    );
    assert!(std::fs::read_to_string(storage.join(".legal-holds.json"))
        .unwrap()
        .contains("complaint 7"));

    // Stale, malformed, unknown camera: rejected with the reason.
    let hour_ago = Timestamp::from_unix_ms(Timestamp::now().unix_ms() - 3_600_000).unwrap();
    send(&command("old-1", hour_ago, r#"{"kind":"ping"}"#));
    send(&command(
        "bad-1",
        Timestamp::now(),
        r#"{"kind":"restart_camera"}"#,
    ));
    send(&command(
        "cam-1",
        Timestamp::now(),
        r#"{"kind":"snapshot","camera":"nope"}"#,
    ));
    for (id, code) in [
        ("old-1", "stale"),
        ("bad-1", "malformed"),
        ("cam-1", "unknown_camera"),
    ] {
        let (_, a) = final_ack(id);
        assert_eq!(a.status, AckStatus::Rejected, "{id}: {a:?}");
        let got = serde_json::to_value(a.reason.as_ref().unwrap().code).unwrap();
        assert_eq!(got, code, "{id}: {a:?}");
    }

    // Snapshot: a JPEG on snapshot/cam, described by the done ack.
    send(&command(
        "snap-1",
        Timestamp::now(),
        r#"{"kind":"snapshot","camera":"cam"}"#,
    ));
    let (_, done) = final_ack("snap-1");
    assert_eq!(done.status, AckStatus::Done, "{done:?}");
    let jpeg = wait(&ctl, "snapshot", 5, |m| m.topic == topic("snapshot/cam"));
    assert_eq!(&jpeg.payload[..2], &[0xFF, 0xD8], "not a JPEG");
    let r = done.result.unwrap();
    assert_eq!(r["sha256"], Hash256::of(&jpeg.payload).to_hex());
    assert_eq!(
        (r["width"].as_u64(), r["height"].as_u64()),
        (Some(160), Some(120))
    );

    // Restart: the camera goes and comes back, the gap is reported and entered.
    send(&command(
        "restart-1",
        Timestamp::now(),
        r#"{"kind":"restart_camera","camera":"cam"}"#,
    ));
    final_ack("restart-1");
    for kind in ["camera_lost", "camera_back", "gap_recorded"] {
        wait(&ctl, kind, 15, |m| {
            m.topic == topic("events") && m.text().contains(kind)
        });
    }

    // Hundreds of hostile payloads: each answered (rejection ack), none crashes anything.
    let before = ctl
        .messages()
        .iter()
        .filter(|m| m.topic == topic("ack"))
        .count();
    let valid = command(
        "fuzz-base",
        Timestamp::now(),
        r#"{"kind":"snapshot","camera":"cam"}"#,
    );
    let mut seed = 0x2545_F491_4F6C_DD1Du64;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let n = 150;
    for i in 0..n {
        let mut p = valid.clone().into_bytes();
        match i % 3 {
            0 => p.truncate((rnd() as usize) % p.len()),
            1 => {
                for _ in 0..4 {
                    let at = (rnd() as usize) % p.len();
                    p[at] = rnd() as u8;
                }
            }
            _ => p = (0..(rnd() % 64)).map(|_| rnd() as u8).collect(),
        }
        // Never the valid id: mutated payloads must not be repeats of a real command.
        let p = String::from_utf8_lossy(&p).replace("fuzz-base", &format!("fz-{i}"));
        send(&p);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let acks = ctl
            .messages()
            .iter()
            .filter(|m| m.topic == topic("ack"))
            .count()
            - before;
        if acks >= n {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {acks} of {n} hostile payloads answered"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let pid = agent.pid().unwrap();
    assert!(
        std::path::Path::new(&format!("/proc/{pid}")).exists(),
        "agent died"
    );
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{}", agent.log());
    assert!(!agent.log().contains("panicked"));
    assert!(!segments(&storage, "cam").unwrap().is_empty());
    // A clean stop says so: the stopping event, then status offline for shutdown (not lost).
    wait(&ctl, "agent_stopping", 5, |m| {
        m.topic == topic("events") && m.text().contains("agent_stopping")
    });
    wait(&ctl, "status offline (shutdown)", 5, |m| {
        m.topic == topic("status") && m.text().contains("\"shutdown\"")
    });
}

#[test]
fn broker_outage_loses_no_event_and_leaves_no_recording_gap() {
    if !ready() {
        return;
    }
    let mut broker = Broker::new(BrokerOpts {
        persistence: true,
        ..BrokerOpts::default()
    })
    .unwrap();
    // The controller keeps a persistent session: what is published while it is away waits.
    let port = broker.port();
    let ctl_args = move || {
        stationwatch_tests::mosquitto::ClientArgs::new("127.0.0.1", port)
            .client_id("controller-test")
            .arg("-c")
    };
    let ctl = Subscriber::start(&ctl_args(), &[&topic("events")], 1).unwrap();
    let mut cam2 = TestCamera::start(CAMERA_BIN, CameraOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let storage = dir.path().join("rec");
    let url = format!("mqtt://127.0.0.1:{}", broker.port());
    let cfg = config(
        &storage,
        2,
        &[
            ("cam", SOURCE),
            ("door", &format!("source = \"{}\"", cam2.url())),
        ],
    ) + &mqtt_section(&url, "");
    let mut agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    wait(&ctl, "agent_starting", 20, |m| {
        m.text().contains("agent_starting")
    });
    // Both cameras record before anything goes wrong.
    agent
        .wait_log("recording camera=door", Duration::from_secs(20))
        .unwrap();
    drop(ctl);

    // The broker goes away; meanwhile a camera is lost and comes back.
    broker.stop().unwrap();
    agent
        .wait_log("broker connection lost", Duration::from_secs(10))
        .unwrap();
    cam2.stop().unwrap();
    agent
        .wait_log("camera lost", Duration::from_secs(10))
        .unwrap();
    let down_at = Instant::now();
    std::thread::sleep(Duration::from_secs(2));
    cam2.restart().unwrap();
    agent
        .wait_log_count("recording camera=door", 2, Duration::from_secs(30))
        .unwrap();
    // Hold the broker down for a while longer: recording goes on regardless.
    std::thread::sleep(Duration::from_secs(8).saturating_sub(down_at.elapsed()));
    broker.start().unwrap();

    let ctl = Subscriber::start(&ctl_args(), &[&topic("events")], 1).unwrap();
    for kind in ["camera_lost", "camera_back", "gap_recorded"] {
        wait(&ctl, kind, 45, |m| m.text().contains(kind));
    }
    // Event ids count up without a hole: nothing was lost, and order was kept.
    let events: Vec<_> = ctl
        .messages()
        .iter()
        .filter_map(|m| decode_event(&m.payload).ok())
        .collect();
    let seqs: Vec<u64> = events
        .iter()
        .filter_map(|e| e.id.as_str().rsplit('-').next()?.parse().ok())
        .collect();
    let mut sorted = seqs.clone();
    sorted.dedup();
    assert!(
        sorted.windows(2).all(|w| w[1] == w[0] + 1),
        "ids not consecutive: {seqs:?}"
    );
    let lost = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::CameraLost { .. }))
        .unwrap();
    let back = events
        .iter()
        .position(|e| matches!(e.kind, EventKind::CameraBack { .. }))
        .unwrap();
    assert!(lost < back, "order lost: {events:?}");

    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    // The test camera recorded straight through the broker outage.
    let (ok, out) = {
        let config = storage.parent().unwrap().join("agent.toml");
        let (code, out) = verify_with_key(&storage, &config, &["--camera", "cam"]).unwrap();
        (code == 0, out)
    };
    assert!(ok, "{out}");
    assert!(
        !out.contains("  gap "),
        "recording gap during the broker outage:\n{out}"
    );
    assert!(segments(&storage, "door").unwrap().len() >= 2);
}

#[test]
fn tls_and_password_are_used() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts {
        anonymous: false,
        users: vec![
            (STATION.into(), "s3cret-pw".into()),
            ("controller".into(), "ctl-pw".into()),
        ],
        tls: true,
        ..BrokerOpts::default()
    })
    .unwrap();
    let ctl = Subscriber::start(
        &broker.client().user("controller", "ctl-pw"),
        &[&topic("#")],
        1,
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("mqtt.pass");
    std::fs::write(&pw, "s3cret-pw\n").unwrap();
    let url = format!("mqtts://127.0.0.1:{}", broker.tls_port().unwrap());
    let extra = format!(
        "ca_file = \"{}\"\npassword_file = \"{}\"",
        broker.ca_file().unwrap().display(),
        pw.display()
    );
    let cfg = config(&dir.path().join("rec"), 60, &[("cam", SOURCE)]) + &mqtt_section(&url, &extra);
    let agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    wait(&ctl, "health over TLS", 20, |m| m.topic == topic("health"));
    assert!(!agent.log().contains("s3cret-pw"), "password logged");

    // A wrong password is refused by the broker; the agent keeps recording and retrying.
    std::fs::write(&pw, "wrong\n").unwrap();
    let dir2 = tempfile::tempdir().unwrap();
    let cfg2 =
        config(&dir2.path().join("rec"), 2, &[("cam", SOURCE)]) + &mqtt_section(&url, &extra);
    let bad = AgentProcess::start(dir2.path(), &cfg2).unwrap();
    bad.wait_log_count("segment finished", 2, Duration::from_secs(20))
        .unwrap();
    assert!(!bad.log().contains("connected to the broker"));
}

#[test]
fn client_certificate_is_presented_when_the_broker_requires_one() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts {
        tls: true,
        require_client_cert: true,
        ..BrokerOpts::default()
    })
    .unwrap();
    let ctl = Subscriber::start(&broker.client(), &[&topic("#")], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let url = format!("mqtts://127.0.0.1:{}", broker.tls_port().unwrap());
    let extra = format!(
        "ca_file = \"{}\"\nclient_cert = \"{}\"\nclient_key = \"{}\"",
        broker.ca_file().unwrap().display(),
        broker.client_cert().unwrap().display(),
        broker.client_key().unwrap().display()
    );
    let cfg = config(&dir.path().join("rec"), 60, &[("cam", SOURCE)]) + &mqtt_section(&url, &extra);
    let agent = AgentProcess::start(dir.path(), &cfg).unwrap();
    wait(&ctl, "status over mutual TLS", 20, |m| {
        m.topic == topic("status") && m.text().contains("online")
    });
    assert!(agent.log().contains("connected to the broker"));
}

/// An agent given another CA than the one that signed the broker's certificate refuses the
/// broker: it never connects, nothing of it reaches the broker, it keeps recording and
/// retrying. The same config with the right CA connects (so the refusal is the CA's doing).
#[test]
fn agent_refuses_a_broker_certificate_from_the_wrong_ca() {
    if !ready()
        || !stationwatch_tests::require(
            stationwatch_tests::mosquitto::have_openssl(),
            "openssl missing (run scripts/install-deps)",
        )
    {
        return;
    }
    let broker = Broker::new(BrokerOpts {
        tls: true,
        ..BrokerOpts::default()
    })
    .unwrap();
    let ctl = Subscriber::start(&broker.client(), &[&topic("#")], 1).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let other =
        stationwatch_tests::mosquitto::TestCerts::generate(&dir.path().join("other-ca")).unwrap();
    let url = format!("mqtts://127.0.0.1:{}", broker.tls_port().unwrap());
    let wrong = format!("ca_file = \"{}\"", other.ca_cert.display());
    let cfg = config(&dir.path().join("rec"), 2, &[("cam", SOURCE)]) + &mqtt_section(&url, &wrong);
    let bad = AgentProcess::start_with_env(dir.path(), &cfg, &[("RUST_LOG", "debug")]).unwrap();
    bad.wait_log_count("segment finished", 3, Duration::from_secs(30))
        .unwrap();
    bad.wait_log_count("cannot connect to the broker", 2, Duration::from_secs(20))
        .unwrap();
    let log = bad.log();
    assert!(
        !log.contains("connected to the broker"),
        "connected with the wrong CA:\n{log}"
    );
    let attempt = log
        .lines()
        .find(|l| l.contains("cannot connect to the broker"))
        .unwrap();
    eprintln!("wrong CA: {attempt}");
    assert!(attempt.contains("certificate"), "{attempt}");
    assert!(
        !ctl.messages()
            .iter()
            .any(|m| m.topic.starts_with(&topic(""))),
        "a message of the station reached the broker"
    );
    drop(bad);

    let dir2 = tempfile::tempdir().unwrap();
    let right = format!("ca_file = \"{}\"", broker.ca_file().unwrap().display());
    let cfg2 =
        config(&dir2.path().join("rec"), 2, &[("cam", SOURCE)]) + &mqtt_section(&url, &right);
    let good = AgentProcess::start(dir2.path(), &cfg2).unwrap();
    wait(&ctl, "health with the right CA", 20, |m| {
        m.topic == topic("health")
    });
    good.wait_log("connected to the broker", Duration::from_secs(5))
        .unwrap();
}
