//! The MQTT broker side, with a real Mosquitto: the reference ACL (`config/mosquitto/acl`)
//! keeps stations apart, TLS works with generated certificates, the reference config
//! (`config/mosquitto/stationwatch.conf`) runs, and the [`Broker`] fixture can stop and start
//! the broker on the same ports and keeps persistent state across restarts.
//!
//! Needs only the Mosquitto binaries (and `openssl` for TLS); without them each test fails under
//! `CI=true` and is skipped (and counted by `scripts/test`) otherwise. "Nothing arrived" is never shown by waiting: a test publishes the forbidden
//! message first and an allowed sentinel after it, with QoS 1 (so the broker has routed the
//! first before the second is sent), and checks once the sentinel has arrived.

use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use stationwatch_tests::agent_process::AgentProcess;
use stationwatch_tests::controller_process::{Api, ControllerOpts, ControllerProcess};
use stationwatch_tests::free_port;
use stationwatch_tests::mosquitto::{
    have_mosquitto, have_openssl, publish, repo_file, write_password_file, Broker, BrokerOpts,
    ClientArgs, Message, Subscriber, TestCerts,
};

const A: &str = "A-0001";
const B: &str = "B-0002";
const PASS_A: &str = "secret-a";
const PASS_B: &str = "secret-b";
const PASS_CTL: &str = "secret-controller";
/// How long a message that must arrive may take.
const WAIT: Duration = Duration::from_secs(5);
/// The last will of docs/mqtt.md §2.
const WILL: &str = r#"{"v": 1, "state": "offline", "reason": "lost"}"#;

/// Every topic a station publishes to.
const STATION_TOPICS: [&str; 5] = ["status", "health", "events", "ack", "snapshot/desk"];

fn topic(station: &str, sub: &str) -> String {
    format!("stationwatch/v1/{station}/{sub}")
}

fn skip_without_mosquitto() -> bool {
    !stationwatch_tests::require(
        have_mosquitto(),
        "mosquitto, mosquitto_pub, mosquitto_sub or mosquitto_passwd missing \
         (apt-get install mosquitto mosquitto-clients, or run scripts/install-deps)",
    )
}

fn skip_without_openssl() -> bool {
    !stationwatch_tests::require(
        have_openssl(),
        "openssl missing (apt-get install openssl, or run scripts/install-deps)",
    )
}

fn users() -> Vec<(String, String)> {
    [(A, PASS_A), (B, PASS_B), ("controller", PASS_CTL)]
        .iter()
        .map(|(u, p)| (u.to_string(), p.to_string()))
        .collect()
}

fn payloads(sub: &Subscriber) -> Vec<String> {
    sub.messages().iter().map(Message::text).collect()
}

fn never_got(sub: &Subscriber, payload: &str) -> bool {
    sub.messages()
        .iter()
        .all(|m| m.payload != payload.as_bytes())
}

fn must_get(sub: &Subscriber, topic: &str, payload: &str, broker: &Broker) -> Result<Message> {
    sub.wait_for_text(topic, payload, WAIT).with_context(|| {
        format!(
            "{payload:?} on {topic} did not arrive; got {:?}\nsubscriber:\n{}\nbroker log:\n{}",
            payloads(sub),
            sub.log(),
            broker.log()
        )
    })
}

#[test]
fn acl_keeps_stations_apart() -> Result<()> {
    if skip_without_mosquitto() {
        return Ok(());
    }
    let acl = repo_file("config/mosquitto/acl")?;
    let broker = Broker::new(BrokerOpts {
        anonymous: false,
        users: users(),
        acl: Some(acl),
        ..BrokerOpts::default()
    })?;
    let as_a = broker.client().user(A, PASS_A);
    let as_b = broker.client().user(B, PASS_B);
    let as_ctl = broker.client().user("controller", PASS_CTL);

    let ctl = Subscriber::start(&as_ctl, &["stationwatch/v1/#"], 1)?;
    // A tries to read B's commands directly and through wildcards. Mosquitto 2.0 grants such
    // subscriptions and filters each message at delivery.
    let a_cmds = Subscriber::start(&as_a, &[&topic(A, "cmd"), &topic(B, "cmd")], 1)?;
    let a_all = Subscriber::start(&as_a, &["#"], 1)?;
    let a_wild = Subscriber::start(&as_a, &["stationwatch/v1/+/cmd"], 1)?;
    let b_cmds = Subscriber::start(&as_b, &[&topic(B, "cmd")], 1)?;

    // Anonymous clients and wrong passwords are refused.
    assert!(publish(&broker.client(), &topic(A, "health"), b"anon", 1, false).is_err());
    assert!(publish(
        &broker.client().user(A, "wrong"),
        &topic(A, "health"),
        b"bad-password",
        1,
        false
    )
    .is_err());

    // 1. A cannot publish as B, on any of B's topics.
    for sub in STATION_TOPICS {
        publish(&as_a, &topic(B, sub), b"forged-by-A", 1, false)?;
    }
    // Nor outside the tree of its topics, nor commands (to itself or B).
    for t in [
        topic(A, "snapshot/desk/extra"),
        topic(A, "snapshot"),
        topic(A, "cmd"),
        topic(B, "cmd"),
        topic(A, "other"),
        "stationwatch/v1/A-0001".to_string(),
        "elsewhere".to_string(),
    ] {
        publish(&as_a, &t, b"forged-by-A", 1, false)?;
    }
    // B's own report, routed after all of A's attempts.
    publish(&as_b, &topic(B, "health"), b"legit-B", 1, false)?;
    must_get(&ctl, &topic(B, "health"), "legit-B", &broker)?;
    assert!(
        never_got(&ctl, "forged-by-A"),
        "the controller received a forged message: {:?}",
        ctl.messages()
    );
    assert!(
        never_got(&b_cmds, "forged-by-A"),
        "B received a forged command"
    );
    let log = broker.log();
    assert!(
        log.contains("Denied PUBLISH from") && log.contains(&topic(B, "health")),
        "the broker did not log the denied publish:\n{log}"
    );

    // 2. A's legitimate publishes reach the controller.
    for sub in STATION_TOPICS {
        publish(
            &as_a,
            &topic(A, sub),
            format!("A-{sub}").as_bytes(),
            1,
            false,
        )?;
    }
    for sub in STATION_TOPICS {
        must_get(&ctl, &topic(A, sub), &format!("A-{sub}"), &broker)?;
    }

    // 3. The controller commands both; each station gets its own command only.
    publish(&as_ctl, &topic(B, "cmd"), b"cmd-for-B", 1, false)?;
    publish(&as_ctl, &topic(A, "cmd"), b"cmd-for-A", 1, false)?;
    must_get(&b_cmds, &topic(B, "cmd"), "cmd-for-B", &broker)?;
    must_get(&a_cmds, &topic(A, "cmd"), "cmd-for-A", &broker)?;
    must_get(&a_all, &topic(A, "cmd"), "cmd-for-A", &broker)?;
    must_get(&a_wild, &topic(A, "cmd"), "cmd-for-A", &broker)?;
    // Everything published so far was routed before cmd-for-A: A saw only that.
    assert_eq!(
        payloads(&a_cmds),
        ["cmd-for-A"],
        "A read more than its command"
    );
    assert_eq!(
        payloads(&a_all),
        ["cmd-for-A"],
        "A read more than its command via #"
    );
    assert_eq!(payloads(&a_wild), ["cmd-for-A"], "A read more via +/cmd");

    // 4. The controller cannot write station topics.
    for sub in STATION_TOPICS {
        publish(&as_ctl, &topic(A, sub), b"forged-by-controller", 1, true)?;
    }
    publish(&as_ctl, &topic(B, "cmd"), b"cmd-2-for-B", 1, false)?;
    must_get(&ctl, &topic(B, "cmd"), "cmd-2-for-B", &broker)?;
    assert!(
        never_got(&ctl, "forged-by-controller"),
        "the controller could write a station topic"
    );

    // 5. Last will: allowed on the station's own status, dropped on another station's.
    let mut forger = Subscriber::start(
        &as_a.clone().client_id("a-forging-will").will(
            &topic(B, "status"),
            "will-forged-by-A",
            true,
        ),
        &[&topic(A, "cmd")],
        1,
    )?;
    forger.kill()?;
    broker.wait_for_log("Client a-forging-will closed its connection", WAIT)?;
    let mut agent_a = Subscriber::start(
        &as_a
            .clone()
            .client_id("stationwatch-agent-A-0001")
            .will(&topic(A, "status"), WILL, true),
        &[&topic(A, "cmd")],
        1,
    )?;
    agent_a.kill()?;
    must_get(&ctl, &topic(A, "status"), WILL, &broker)?;
    assert!(
        never_got(&ctl, "will-forged-by-A"),
        "A's forged will arrived"
    );
    // The will is retained: a controller that starts now still sees it.
    // Retained messages come in the order of the filters: B's (if any) before A's.
    let late = Subscriber::start(&as_ctl, &[&topic(B, "status"), &topic(A, "status")], 1)?;
    let will = must_get(&late, &topic(A, "status"), WILL, &broker)?;
    assert!(will.retained);
    assert_eq!(
        payloads(&late),
        [WILL],
        "B has a retained status nobody was allowed to set"
    );
    Ok(())
}

#[test]
fn tls_needs_the_ca_and_optionally_a_client_certificate() -> Result<()> {
    if skip_without_mosquitto() || skip_without_openssl() {
        return Ok(());
    }
    let other_dir = tempfile::tempdir()?;
    let other_ca = TestCerts::generate(other_dir.path())?;

    let broker = Broker::new(BrokerOpts {
        tls: true,
        ..BrokerOpts::default()
    })?;
    let tls_port = broker.tls_port().context("no TLS port")?;
    let tls = broker.tls_client()?;
    let sub = Subscriber::start(&tls, &["tls/test"], 1)?;
    publish(&tls, "tls/test", b"over-tls", 1, false)?;
    must_get(&sub, "tls/test", "over-tls", &broker)?;

    // A client that trusts another CA does not accept the server's certificate.
    let wrong_ca = ClientArgs::new("127.0.0.1", tls_port).cafile(&other_ca.ca_cert);
    let err = publish(&wrong_ca, "tls/test", b"wrong-ca", 1, false);
    assert!(err.is_err(), "a client with the wrong CA connected");
    // Plain MQTT on the TLS port does not work either.
    let plain = ClientArgs::new("127.0.0.1", tls_port);
    assert!(publish(&plain, "tls/test", b"plain", 1, false).is_err());
    // The name in the server certificate matters: 127.0.0.1 and localhost are in it.
    let by_name =
        ClientArgs::new("localhost", tls_port).cafile(&broker.certs().context("certs")?.ca_cert);
    publish(&by_name, "tls/test", b"by-name", 1, false)?;
    publish(&tls, "tls/test", b"sentinel", 1, false)?;
    must_get(&sub, "tls/test", "sentinel", &broker)?;
    assert_eq!(payloads(&sub), ["over-tls", "by-name", "sentinel"]);

    // require_certificate: only clients with a certificate from the test CA get in.
    let strict = Broker::new(BrokerOpts {
        tls: true,
        require_client_cert: true,
        ..BrokerOpts::default()
    })?;
    let (cert, key) = (
        strict.client_cert().context("client cert")?,
        strict.client_key().context("client key")?,
    );
    let with_cert = strict.tls_client()?.cert(cert, key);
    let sub = Subscriber::start(&with_cert, &["tls/strict"], 1)?;
    publish(&with_cert, "tls/strict", b"with-cert", 1, false)?;
    must_get(&sub, "tls/strict", "with-cert", &strict)?;
    assert!(
        publish(&strict.tls_client()?, "tls/strict", b"no-cert", 1, false).is_err(),
        "a client without certificate connected"
    );
    let foreign = strict
        .tls_client()?
        .cert(&other_ca.client_cert, &other_ca.client_key);
    assert!(
        publish(&foreign, "tls/strict", b"foreign-cert", 1, false).is_err(),
        "a client with a certificate of another CA connected"
    );
    publish(&with_cert, "tls/strict", b"sentinel", 1, false)?;
    must_get(&sub, "tls/strict", "sentinel", &strict)?;
    assert_eq!(payloads(&sub), ["with-cert", "sentinel"]);
    Ok(())
}

#[test]
fn broker_stops_and_starts_on_the_same_port() -> Result<()> {
    if skip_without_mosquitto() {
        return Ok(());
    }
    let mut broker = Broker::new(BrokerOpts::default())?;
    let port = broker.port();
    let client = broker.client();
    publish(&client, "t", b"before", 1, false)?;

    broker.stop()?;
    assert!(!broker.is_running());
    assert!(
        TcpStream::connect(("127.0.0.1", port)).is_err(),
        "port {port} still accepts connections after stop()"
    );
    assert!(publish(&client, "t", b"while-down", 1, false).is_err());
    broker.stop()?; // stopping twice is fine

    broker.start()?;
    assert_eq!(broker.port(), port);
    let sub = Subscriber::start(&client, &["t"], 1)?;
    publish(&client, "t", b"after-start", 1, false)?;
    must_get(&sub, "t", "after-start", &broker)?;

    // A crash (SIGKILL), then start again; restart() on a running broker.
    broker.kill()?;
    assert!(TcpStream::connect(("127.0.0.1", port)).is_err());
    broker.start()?;
    broker.start()?; // starting a running broker does nothing
    broker.restart()?;
    assert_eq!(broker.port(), port);
    let sub = Subscriber::start(&client, &["t"], 1)?;
    publish(&client, "t", b"after-restart", 1, false)?;
    must_get(&sub, "t", "after-restart", &broker)?;
    Ok(())
}

#[test]
fn persistence_keeps_retained_messages_and_queued_commands() -> Result<()> {
    if skip_without_mosquitto() {
        return Ok(());
    }
    let mut broker = Broker::new(BrokerOpts {
        persistence: true,
        ..BrokerOpts::default()
    })?;
    let client = broker.client();
    let cmd = topic(A, "cmd");
    let status = topic(A, "status");
    // An agent's persistent session (clean session off) subscribed to its commands, then gone.
    let session = broker
        .client()
        .client_id("stationwatch-agent-A-0001")
        .arg("-c");
    let mut agent = Subscriber::start(&session, &[&cmd], 1)?;
    agent.kill()?;
    broker.wait_for_log(
        "Client stationwatch-agent-A-0001 closed its connection",
        WAIT,
    )?;
    publish(&client, &cmd, b"queued-cmd", 1, false)?;
    publish(&client, &status, b"retained-status", 1, true)?;

    broker.restart()?;

    let agent = Subscriber::start(&session, &[&cmd], 1)?;
    must_get(&agent, &cmd, "queued-cmd", &broker)?;
    let late = Subscriber::start(&client, &[&status], 1)?;
    let m = must_get(&late, &status, "retained-status", &broker)?;
    assert!(m.retained);
    Ok(())
}

/// `config/mosquitto/stationwatch.conf` with its system paths and ports replaced by test ones.
/// Fails on any path it does not know, so a new file in the config gets noticed here.
fn adapt_production_config(
    text: &str,
    dir: &Path,
    certs: &TestCerts,
    station_port: u16,
    controller_port: u16,
) -> String {
    let mut out = String::new();
    let mut replaced = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default();
        let value = words.next().unwrap_or_default();
        let new = match (key, value) {
            ("pid_file" | "log_dest", _) => String::new(),
            ("persistence_location", _) => format!("{key} {}/", dir.join("data").display()),
            ("cafile", _) => format!("{key} {}", certs.ca_cert.display()),
            ("certfile", _) => format!("{key} {}", certs.server_cert.display()),
            ("keyfile", _) => format!("{key} {}", certs.server_key.display()),
            ("password_file" | "acl_file", path) => {
                let name = Path::new(path).file_name().unwrap().to_string_lossy();
                format!("{key} {}", dir.join(&*name).display())
            }
            ("listener", "8883") => format!("listener {station_port} 127.0.0.1"),
            ("listener", "1883") => format!("listener {controller_port} 127.0.0.1"),
            ("listener", other) => panic!("unknown listener {other} in stationwatch.conf"),
            _ if line.trim_start().starts_with('#') => line.to_string(),
            _ => {
                assert!(
                    !line.contains('/') || key == "log_timestamp_format",
                    "stationwatch.conf has a path the test does not know: {line}"
                );
                line.to_string()
            }
        };
        if new != line {
            replaced.push(key.to_string());
        }
        out.push_str(&new);
        out.push('\n');
    }
    for key in [
        "pid_file",
        "log_dest",
        "persistence_location",
        "cafile",
        "certfile",
        "keyfile",
        "password_file",
        "acl_file",
        "listener",
    ] {
        assert!(
            replaced.iter().any(|k| k == key),
            "stationwatch.conf has no {key} line any more; update this test"
        );
    }
    out
}

#[test]
fn reference_config_runs_and_protects_stations() -> Result<()> {
    if skip_without_mosquitto() || skip_without_openssl() {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("data"))?;
    let certs = TestCerts::generate(&root.join("certs"))?;
    let stations: Vec<(String, String)> =
        vec![(A.into(), PASS_A.into()), (B.into(), PASS_B.into())];
    write_password_file(&root.join("stations.passwd"), &stations)?;
    write_password_file(
        &root.join("controllers.passwd"),
        &[("controller".into(), PASS_CTL.into())],
    )?;
    std::fs::write(root.join("acl"), repo_file("config/mosquitto/acl")?)?;
    let (station_port, controller_port) = (free_port(), free_port());
    let conf = adapt_production_config(
        &repo_file("config/mosquitto/stationwatch.conf")?,
        &root,
        &certs,
        station_port,
        controller_port,
    );
    let broker = Broker::from_config(dir, &conf, &[station_port, controller_port])?;

    let station = |user: &str, pass: &str| {
        ClientArgs::new("127.0.0.1", station_port)
            .cafile(&certs.ca_cert)
            .user(user, pass)
    };
    let controller = ClientArgs::new("127.0.0.1", controller_port).user("controller", PASS_CTL);

    // A controller replica with a shared subscription, on the local listener.
    let ctl = Subscriber::start(
        &controller.clone().client_id("stationwatch-controller-test"),
        &[
            "$share/controllers/stationwatch/v1/+/health",
            "stationwatch/v1/+/snapshot/+",
            "stationwatch/v1/+/events",
        ],
        1,
    )?;
    publish(
        &station(A, PASS_A),
        &topic(A, "health"),
        b"health-A",
        1,
        false,
    )?;
    must_get(&ctl, &topic(A, "health"), "health-A", &broker)?;

    // Accounts only work on their own listener; plain MQTT does not reach the station port.
    let station_on_ctl = ClientArgs::new("127.0.0.1", controller_port).user(A, PASS_A);
    assert!(publish(&station_on_ctl, &topic(A, "health"), b"x", 1, false).is_err());
    assert!(publish(
        &station("controller", PASS_CTL),
        &topic(A, "cmd"),
        b"x",
        1,
        false
    )
    .is_err());
    let plain = ClientArgs::new("127.0.0.1", station_port).user(A, PASS_A);
    assert!(publish(&plain, &topic(A, "health"), b"x", 1, false).is_err());

    // A station cannot take over another station's client id (use_username_as_clientid).
    let b_agent = Subscriber::start(
        &station(B, PASS_B).client_id("stationwatch-agent-B-0002"),
        &[&topic(B, "cmd")],
        1,
    )?;
    publish(
        &station(A, PASS_A).client_id("stationwatch-agent-B-0002"),
        &topic(A, "events"),
        b"event-A",
        1,
        false,
    )?;
    must_get(&ctl, &topic(A, "events"), "event-A", &broker)?;
    let log = broker.log();
    assert!(
        !log.contains("already connected"),
        "a client was kicked off by a client id takeover:\n{log}"
    );
    assert!(log.contains(&format!("as {A} ")) && log.contains(&format!("as {B} ")));
    publish(&controller, &topic(B, "cmd"), b"cmd-B", 1, false)?;
    must_get(&b_agent, &topic(B, "cmd"), "cmd-B", &broker)?;
    assert_eq!(
        b_agent.log().matches("received CONNACK").count(),
        1,
        "B's agent had to reconnect:\n{}",
        b_agent.log()
    );

    // Snapshots up to 1 MiB pass; larger ones are dropped without disconnecting the agent.
    let snap = topic(A, "snapshot/desk");
    publish(
        &station(A, PASS_A),
        &snap,
        &vec![0xAB; 1024 * 1024],
        1,
        false,
    )?;
    publish(
        &station(A, PASS_A),
        &snap,
        &vec![0xCD; 1024 * 1024 + 1],
        1,
        false,
    )?;
    publish(&station(A, PASS_A), &snap, b"small", 1, false)?;
    must_get(&ctl, &snap, "small", &broker)?;
    let sizes: Vec<usize> = ctl
        .messages()
        .iter()
        .filter(|m| m.topic == snap)
        .map(|m| m.payload.len())
        .collect();
    assert_eq!(sizes, [1024 * 1024, 5]);
    Ok(())
}

/// The controller sees `station` report (a row that is not offline) and gets a `ping`
/// acknowledged by the real agent, through whatever broker set-up the test made.
fn controller_sees_station_and_pings_it(api: &Api, station: &str) {
    let deadline = Instant::now() + Duration::from_secs(40);
    loop {
        let list = api.ok(&format!("/api/stations?q={station}")).unwrap();
        let row = list["stations"]
            .as_array()
            .and_then(|a| a.iter().find(|r| r["id"] == station).cloned());
        if let Some(row) = row.filter(|r| r["state"] == "online" || r["state"] == "degraded") {
            eprintln!("controller sees {station}: {}", row["state"]);
            break;
        }
        assert!(
            Instant::now() < deadline,
            "controller never saw {station} report"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
    let r = api
        .post(
            &format!("/api/stations/{station}/commands"),
            &serde_json::json!({ "kind": "ping" }),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let cmds = api
            .ok(&format!("/api/stations/{station}/commands"))
            .unwrap();
        let status = cmds["commands"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()).cloned())
            .map(|c| c["status"].clone());
        if status.as_ref().is_some_and(|s| s == "done") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "ping not acknowledged as done: {status:?}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn agent_toml(storage: &Path, station: &str, mqtt: &str) -> String {
    format!(
        "[station]\nid = \"{station}\"\n[storage]\npath = \"{}\"\nsegment_seconds = 2\n\
         [mqtt]\n{mqtt}\nhealth_interval_seconds = 1\n\
         [[camera]]\nid = \"desk\"\nsource = \"test\"\nwidth = 160\nheight = 120\nfps = 10\n\
         bitrate_kbps = 150\n",
        storage.display()
    )
}

/// The real agent and the real controller through the reference broker config
/// (`config/mosquitto/`): the agent on the TLS station listener with its own account (ACL by
/// user name), the controller on the local listener with the controller account. Health
/// reaches the controller and the controller's command reaches the agent and is acknowledged.
#[test]
fn agent_and_controller_work_through_the_reference_broker_config() -> Result<()> {
    if skip_without_mosquitto()
        || skip_without_openssl()
        || !stationwatch_tests::require(
            stationwatch_tests::have_gst_element("x264enc"),
            "x264enc missing (run scripts/install-deps)",
        )
    {
        return Ok(());
    }
    let dir = tempfile::tempdir()?;
    let root = dir.path().to_path_buf();
    std::fs::create_dir_all(root.join("data"))?;
    let certs = TestCerts::generate(&root.join("certs"))?;
    write_password_file(
        &root.join("stations.passwd"),
        &[(A.into(), PASS_A.into()), (B.into(), PASS_B.into())],
    )?;
    write_password_file(
        &root.join("controllers.passwd"),
        &[("controller".into(), PASS_CTL.into())],
    )?;
    std::fs::write(root.join("acl"), repo_file("config/mosquitto/acl")?)?;
    let (station_port, controller_port) = (free_port(), free_port());
    let conf = adapt_production_config(
        &repo_file("config/mosquitto/stationwatch.conf")?,
        &root,
        &certs,
        station_port,
        controller_port,
    );
    let work = tempfile::tempdir()?;
    let _broker = Broker::from_config(dir, &conf, &[station_port, controller_port])?;

    let ctl_pw = work.path().join("controller-mqtt.pass");
    std::fs::write(&ctl_pw, PASS_CTL)?;
    let ctl_dir = work.path().join("controller");
    std::fs::create_dir(&ctl_dir)?;
    let mut opts = ControllerOpts::new(controller_port);
    opts.mqtt_extra = format!(
        "username = \"controller\"\npassword_file = \"{}\"",
        ctl_pw.display()
    );
    let ctl = ControllerProcess::start(&ctl_dir, &opts)?;
    let api = ctl.admin()?;

    let agent_dir = work.path().join("agent");
    std::fs::create_dir(&agent_dir)?;
    let pw = agent_dir.join("mqtt.pass");
    std::fs::write(&pw, PASS_A)?;
    let mqtt = format!(
        "url = \"mqtts://127.0.0.1:{station_port}\"\nca_file = \"{}\"\npassword_file = \"{}\"",
        certs.ca_cert.display(),
        pw.display()
    );
    let agent = AgentProcess::start(&agent_dir, &agent_toml(&agent_dir.join("rec"), A, &mqtt))?;
    controller_sees_station_and_pings_it(&api, A);
    assert!(agent.log().contains("connected to the broker"));
    Ok(())
}

/// The controller connects to the broker over MQTT TLS (`mqtts://` with `ca_file`) and works
/// through it: a real agent's reports arrive and a command is acknowledged.
#[test]
fn controller_works_over_mqtt_tls() -> Result<()> {
    if skip_without_mosquitto()
        || skip_without_openssl()
        || !stationwatch_tests::require(
            stationwatch_tests::have_gst_element("x264enc"),
            "x264enc missing (run scripts/install-deps)",
        )
    {
        return Ok(());
    }
    let broker = Broker::new(BrokerOpts {
        tls: true,
        ..BrokerOpts::default()
    })?;
    let work = tempfile::tempdir()?;
    let tls_port = broker.tls_port().context("tls port")?;
    let mut opts = ControllerOpts::new(tls_port);
    opts.mqtt_url = Some(format!("mqtts://127.0.0.1:{tls_port}"));
    opts.mqtt_extra = format!(
        "ca_file = \"{}\"",
        broker.ca_file().context("ca")?.display()
    );
    let ctl_dir = work.path().join("controller");
    std::fs::create_dir(&ctl_dir)?;
    let ctl = ControllerProcess::start(&ctl_dir, &opts)?;
    let api = ctl.admin()?;
    let agent_dir = work.path().join("agent");
    std::fs::create_dir(&agent_dir)?;
    let mqtt = format!("url = \"mqtt://127.0.0.1:{}\"", broker.port());
    let _agent = AgentProcess::start(&agent_dir, &agent_toml(&agent_dir.join("rec"), A, &mqtt))?;
    controller_sees_station_and_pings_it(&api, A);
    // The controller's only broker URL is the TLS listener: the reports above came that way.
    Ok(())
}
