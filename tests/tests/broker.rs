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
use stationwatch_tests::agent_process::{agent_command, AgentProcess};
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

/// The station listener's `mount_point` in the reference config (`config/mosquitto/`).
const MOUNT: &str = "stations/";

/// A topic as a station names it.
fn topic(station: &str, sub: &str) -> String {
    format!("stationwatch/v1/{station}/{sub}")
}

/// The same topic as a controller sees it: under the station listener's mount point.
fn ctl_topic(station: &str, sub: &str) -> String {
    format!("{MOUNT}{}", topic(station, sub))
}

/// Waits for `payload` on the station's own command topic. Mosquitto up to 2.0.11 delivers it
/// with the mount point still in front (fixed in 2.0.12); the agent accepts both.
fn must_get_cmd(sub: &Subscriber, station: &str, payload: &str, broker: &Broker) -> Result<()> {
    let (plain, mounted) = (topic(station, "cmd"), ctl_topic(station, "cmd"));
    sub.wait_for(WAIT, |m| {
        m.payload == payload.as_bytes() && (m.topic == plain || m.topic == mounted)
    })
    .map(|_| ())
    .with_context(|| {
        format!(
            "{payload:?} on {plain} did not arrive; got {:?}\nsubscriber:\n{}\nbroker log:\n{}",
            payloads(sub),
            sub.log(),
            broker.log()
        )
    })
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
    // Stations on a listener with the reference config's mount point, the controller on one
    // without (as in config/mosquitto/stationwatch.conf).
    let broker = Broker::new(BrokerOpts {
        anonymous: false,
        users: users(),
        acl: Some(acl),
        station_mount_point: Some(MOUNT.into()),
        ..BrokerOpts::default()
    })?;
    let as_a = broker.station_client()?.user(A, PASS_A);
    let as_b = broker.station_client()?.user(B, PASS_B);
    let as_ctl = broker.client().user("controller", PASS_CTL);

    let ctl = Subscriber::start(&as_ctl, &["stations/stationwatch/v1/#"], 1)?;
    // A tries to read B's commands directly and through wildcards. Mosquitto 2.0 grants such
    // subscriptions and filters each message at delivery.
    let a_cmds = Subscriber::start(&as_a, &[&topic(A, "cmd"), &topic(B, "cmd")], 1)?;
    let a_all = Subscriber::start(&as_a, &["#"], 1)?;
    let a_wild = Subscriber::start(&as_a, &["stationwatch/v1/+/cmd"], 1)?;
    let b_cmds = Subscriber::start(&as_b, &[&topic(B, "cmd")], 1)?;

    // Anonymous clients and wrong passwords are refused.
    assert!(publish(
        &broker.station_client()?,
        &topic(A, "health"),
        b"anon",
        1,
        false
    )
    .is_err());
    assert!(publish(
        &broker.station_client()?.user(A, "wrong"),
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
        // Outside the mount point is out of reach: this becomes stations/stations/...
        ctl_topic(A, "health"),
    ] {
        publish(&as_a, &t, b"forged-by-A", 1, false)?;
    }
    // B's own report, routed after all of A's attempts.
    publish(&as_b, &topic(B, "health"), b"legit-B", 1, false)?;
    must_get(&ctl, &ctl_topic(B, "health"), "legit-B", &broker)?;
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
        log.contains("Denied PUBLISH from") && log.contains(&ctl_topic(B, "health")),
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
        must_get(&ctl, &ctl_topic(A, sub), &format!("A-{sub}"), &broker)?;
    }

    // 3. The controller commands both; each station gets its own command only.
    publish(&as_ctl, &ctl_topic(B, "cmd"), b"cmd-for-B", 1, false)?;
    publish(&as_ctl, &ctl_topic(A, "cmd"), b"cmd-for-A", 1, false)?;
    must_get_cmd(&b_cmds, B, "cmd-for-B", &broker)?;
    must_get_cmd(&a_cmds, A, "cmd-for-A", &broker)?;
    must_get_cmd(&a_all, A, "cmd-for-A", &broker)?;
    must_get_cmd(&a_wild, A, "cmd-for-A", &broker)?;
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
        publish(
            &as_ctl,
            &ctl_topic(A, sub),
            b"forged-by-controller",
            1,
            true,
        )?;
    }
    publish(&as_ctl, &ctl_topic(B, "cmd"), b"cmd-2-for-B", 1, false)?;
    must_get(&ctl, &ctl_topic(B, "cmd"), "cmd-2-for-B", &broker)?;
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
    must_get(&ctl, &ctl_topic(A, "status"), WILL, &broker)?;
    assert!(
        never_got(&ctl, "will-forged-by-A"),
        "A's forged will arrived"
    );
    // The will is retained: a controller that starts now still sees it.
    // Retained messages come in the order of the filters: B's (if any) before A's.
    let late = Subscriber::start(
        &as_ctl,
        &[&ctl_topic(B, "status"), &ctl_topic(A, "status")],
        1,
    )?;
    let will = must_get(&late, &ctl_topic(A, "status"), WILL, &broker)?;
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
                    !line.contains('/') || ["log_timestamp_format", "mount_point"].contains(&key),
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

/// A Mosquitto running the reference config (`config/mosquitto/stationwatch.conf` and `acl`)
/// on free ports, with station accounts `stations` and the `controller` account.
struct Reference {
    /// The broker's folder (`stations.passwd`, `acl`, ...).
    root: std::path::PathBuf,
    broker: Broker,
    station_port: u16,
    controller_port: u16,
    /// The test CA the station listener's certificate is signed by (inside the broker's dir).
    ca: std::path::PathBuf,
}

impl Reference {
    fn start(stations: &[(&str, &str)]) -> Result<Reference> {
        let dir = tempfile::tempdir()?;
        let root = dir.path().to_path_buf();
        std::fs::create_dir_all(root.join("data"))?;
        let certs = TestCerts::generate(&root.join("certs"))?;
        let stations: Vec<(String, String)> = stations
            .iter()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
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
        Ok(Reference {
            root,
            broker,
            station_port,
            controller_port,
            ca: certs.ca_cert,
        })
    }

    /// `mosquitto_pub`/`mosquitto_sub` arguments for a station on the TLS station listener.
    fn station(&self, user: &str, pass: &str) -> ClientArgs {
        ClientArgs::new("127.0.0.1", self.station_port)
            .cafile(&self.ca)
            .user(user, pass)
    }

    /// ... and for the controller account on the local controller listener.
    fn controller(&self) -> ClientArgs {
        ClientArgs::new("127.0.0.1", self.controller_port).user("controller", PASS_CTL)
    }
}

/// The reference config's station listener `mount_point` (`""` without one): what the
/// controller's filters start with. Read from the file so that this test shows what the
/// config does, whatever it says.
fn reference_mount_point() -> Result<String> {
    Ok(repo_file("config/mosquitto/stationwatch.conf")?
        .lines()
        .filter_map(|l| l.trim().strip_prefix("mount_point "))
        .map(|v| v.trim().to_string())
        .next()
        .unwrap_or_default())
}

#[test]
fn reference_config_runs_and_protects_stations() -> Result<()> {
    if skip_without_mosquitto() || skip_without_openssl() {
        return Ok(());
    }
    let r = Reference::start(&[(A, PASS_A), (B, PASS_B)])?;
    let (broker, station_port, controller_port) = (&r.broker, r.station_port, r.controller_port);
    let certs_ca = r.ca.clone();

    let station = |user: &str, pass: &str| r.station(user, pass);
    let controller = r.controller();
    let _ = &certs_ca;

    // A controller replica with a shared subscription, on the local listener.
    let ctl = Subscriber::start(
        &controller.clone().client_id("stationwatch-controller-test"),
        &[
            "$share/controllers/stations/stationwatch/v1/+/health",
            "stations/stationwatch/v1/+/snapshot/+",
            "stations/stationwatch/v1/+/events",
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
    must_get(&ctl, &ctl_topic(A, "health"), "health-A", broker)?;

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
    must_get(&ctl, &ctl_topic(A, "events"), "event-A", broker)?;
    let log = broker.log();
    assert!(
        !log.contains("already connected"),
        "a client was kicked off by a client id takeover:\n{log}"
    );
    assert!(log.contains(&format!("as {A} ")) && log.contains(&format!("as {B} ")));
    publish(&controller, &ctl_topic(B, "cmd"), b"cmd-B", 1, false)?;
    must_get_cmd(&b_agent, B, "cmd-B", broker)?;
    assert_eq!(
        b_agent.log().matches("received CONNACK").count(),
        1,
        "B's agent had to reconnect:\n{}",
        b_agent.log()
    );

    // Snapshots up to 1 MiB pass; larger ones are dropped without disconnecting the agent.
    let snap = topic(A, "snapshot/desk");
    let ctl_snap = ctl_topic(A, "snapshot/desk");
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
    must_get(&ctl, &ctl_snap, "small", broker)?;
    let sizes: Vec<usize> = ctl
        .messages()
        .iter()
        .filter(|m| m.topic == ctl_snap)
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
    let r = Reference::start(&[(A, PASS_A), (B, PASS_B)])?;
    let (station_port, controller_port) = (r.station_port, r.controller_port);
    let work = tempfile::tempdir()?;

    let ctl_pw = work.path().join("controller-mqtt.pass");
    std::fs::write(&ctl_pw, PASS_CTL)?;
    let ctl_dir = work.path().join("controller");
    std::fs::create_dir(&ctl_dir)?;
    let mut opts = ControllerOpts::new(controller_port);
    opts.mqtt_extra = format!(
        "username = \"controller\"\npassword_file = \"{}\"\nmount_point = \"{}\"",
        ctl_pw.display(),
        reference_mount_point()?
    );
    let ctl = ControllerProcess::start(&ctl_dir, &opts)?;
    let api = ctl.admin()?;

    let agent_dir = work.path().join("agent");
    std::fs::create_dir(&agent_dir)?;
    let pw = agent_dir.join("mqtt.pass");
    std::fs::write(&pw, PASS_A)?;
    let mqtt = format!(
        "url = \"mqtts://127.0.0.1:{station_port}\"\nca_file = \"{}\"\npassword_file = \"{}\"",
        r.ca.display(),
        pw.display()
    );
    let agent = AgentProcess::start(&agent_dir, &agent_toml(&agent_dir.join("rec"), A, &mqtt))?;
    controller_sees_station_and_pings_it(&api, A);
    assert!(agent.log().contains("connected to the broker"));
    Ok(())
}

/// Enrollment (issue 18) end to end through the reference broker config: an admin creates a
/// one-time code; `station-agent enroll` with a wrong code is refused and writes nothing; with
/// the code it registers the station's key, the controller adds the station's account to the
/// broker's `stations.passwd` and reloads the broker (SIGHUP), and the agent's config, password
/// and CA files are written; the agent then reports under its new credentials, which cannot
/// speak for another station; the used code is refused, and so is an expired one.
#[test]
fn a_station_enrolls_with_a_one_time_code_and_reports_under_its_own_account() -> Result<()> {
    if skip_without_mosquitto()
        || skip_without_openssl()
        || !stationwatch_tests::require(
            stationwatch_tests::have_gst_element("x264enc"),
            "x264enc missing (run scripts/install-deps)",
        )
    {
        return Ok(());
    }
    let r = Reference::start(&[(B, PASS_B)])?;
    let work = tempfile::tempdir()?;
    let ctl_pw = work.path().join("controller-mqtt.pass");
    std::fs::write(&ctl_pw, PASS_CTL)?;
    let ctl_dir = work.path().join("controller");
    std::fs::create_dir(&ctl_dir)?;
    let mut opts = ControllerOpts::new(r.controller_port);
    opts.mqtt_extra = format!(
        "username = \"controller\"\npassword_file = \"{}\"\nmount_point = \"{}\"",
        ctl_pw.display(),
        reference_mount_point()?
    );
    let pid = r.broker.pid().context("broker pid")?;
    // With a live gateway: enrollment also gives its SRT address and the station's passphrase.
    opts.extra_toml = format!(
        "[enroll]\nbroker_url = \"mqtts://127.0.0.1:{}\"\nca_file = \"{}\"\n\
         passwd_file = \"{}\"\nreload_command = [\"kill\", \"-HUP\", \"{pid}\"]\n\
         [live]\nhls_dir = \"{}\"\nstation_srt_url = \"srt://127.0.0.1:9710\"\n",
        r.station_port,
        r.ca.display(),
        r.root.join("stations.passwd").display(),
        work.path().join("hls").display()
    );
    let ctl = ControllerProcess::start(&ctl_dir, &opts)?;
    let api = ctl.admin()?;

    // The device: a config naming where the credentials go, nothing else about the broker.
    let agent_dir = work.path().join("agent");
    std::fs::create_dir(&agent_dir)?;
    let pw = agent_dir.join("mqtt.password");
    let ca = agent_dir.join("broker-ca.pem");
    let config = agent_dir.join("agent.toml");
    let mqtt = format!(
        "# filled in by enrollment\nurl = \"mqtts://unset.invalid:8883\"\npassword_file = \"{}\"\nca_file = \"{}\"",
        pw.display(),
        ca.display()
    );
    std::fs::write(&config, agent_toml(&agent_dir.join("rec"), A, &mqtt))?;
    let enroll = |code: &str| {
        agent_command(&[
            "enroll",
            "-c",
            config.to_str().unwrap(),
            "--controller",
            &ctl.base_url(),
            "--code",
            code,
        ])
        .unwrap()
    };

    // Only admins make codes.
    let code_for = |station: &str, ttl: Option<i64>| -> Result<String> {
        let mut body = serde_json::json!({ "station": station });
        if let Some(t) = ttl {
            body["ttl_seconds"] = t.into();
        }
        let res = api.post("/api/enrollments", &body)?;
        anyhow::ensure!(res.status == 201, "{res:?}");
        Ok(res.body["code"].as_str().context("code")?.to_owned())
    };
    let code = code_for(A, None)?;

    // A wrong code: refused, nothing written.
    let (status, out, err) = enroll("0000-0000-0000-0000-0000-0000-0000-0000");
    eprintln!("{out}{err}");
    assert!(!status.success());
    assert!(out.contains("unknown enrollment code"), "{out}");
    assert!(
        !pw.exists() && !ca.exists() && !agent_dir.join("live.passphrase").exists(),
        "written although refused"
    );
    assert!(std::fs::read_to_string(&config)?.contains("unset.invalid"));

    // The code: enrolled, files written, check passes.
    let (status, out, err) = enroll(&code);
    eprintln!("{out}{err}");
    assert!(status.success(), "{out}{err}");
    assert!(out.contains(&format!("station {A} enrolled")), "{out}");
    let text = std::fs::read_to_string(&config)?;
    assert!(
        text.contains(&format!("mqtts://127.0.0.1:{}", r.station_port))
            && text.contains(&format!("username = \"{A}\""))
            && text.contains("# filled in by enrollment"),
        "{text}"
    );
    assert_eq!(std::fs::read(&ca)?, std::fs::read(&r.ca)?);
    let password = std::fs::read_to_string(&pw)?;
    assert!(password.len() >= 24);
    assert!(
        !out.contains(&password) && !err.contains(&password),
        "the password was printed"
    );
    let passwd = std::fs::read_to_string(r.root.join("stations.passwd"))?;
    assert!(
        passwd.lines().any(|l| l.starts_with(&format!("{A}:"))),
        "{passwd}"
    );
    assert!(!passwd.contains(&password), "stored in clear");
    // The live passphrase beside the MQTT password (the controller's, for this station), the
    // config pointing at it, the camera's target the gateway's bare address; never printed.
    let live_pass = std::fs::read_to_string(agent_dir.join("live.passphrase"))?;
    assert_eq!(live_pass, ctl.live_passphrase(A)?);
    assert!(
        !out.contains(&live_pass) && !err.contains(&live_pass),
        "the live passphrase was printed"
    );
    assert!(
        text.contains(&format!(
            "passphrase_file = \"{}\"",
            agent_dir.join("live.passphrase").display()
        )) && text.contains("live_target = \"srt://127.0.0.1:9710\""),
        "{text}"
    );
    // The key is registered.
    let keys = api.ok("/api/keys")?;
    assert!(keys.to_string().contains(A), "{keys}");

    // The agent runs with what enrollment wrote and the controller hears it.
    let agent = AgentProcess::start(&agent_dir, &std::fs::read_to_string(&config)?)?;
    controller_sees_station_and_pings_it(&api, A);
    assert!(agent.log().contains("connected to the broker"));
    // Its account cannot speak for another station: the broker drops the report.
    let health = serde_json::json!({"v": 1, "at": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string(), "interval_s": 15}).to_string();
    publish(
        &r.station(A, &password),
        &format!("stationwatch/v1/{B}/health"),
        health.as_bytes(),
        1,
        false,
    )?;
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        api.get(&format!("/api/stations/{B}"))?.status,
        404,
        "{B} appeared"
    );
    // The same report from B's own account arrives (so the one above was refused, not bad).
    publish(
        &r.station(B, PASS_B),
        &format!("stationwatch/v1/{B}/health"),
        health.as_bytes(),
        1,
        false,
    )?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while api.get(&format!("/api/stations/{B}"))?.status != 200 {
        assert!(Instant::now() < deadline, "{B}'s own report never arrived");
        std::thread::sleep(Duration::from_millis(200));
    }

    // The code is used up; an expired code is refused too.
    let (status, out, _) = enroll(&code);
    assert!(!status.success() && out.contains("already used"), "{out}");
    let short = code_for(A, Some(1))?;
    std::thread::sleep(Duration::from_millis(1500));
    let (status, out, _) = enroll(&short);
    assert!(!status.success() && out.contains("expired"), "{out}");
    // The command line lists the codes (the used one with the key it registered) and revokes
    // an open one, which the device is then refused with.
    let cli = |args: &[&str]| -> Result<String> {
        let out =
            std::process::Command::new(stationwatch_tests::controller_process::controller_bin()?)
                .args(args)
                .arg("--config")
                .arg(&ctl.config)
                .output()?;
        anyhow::ensure!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(String::from_utf8(out.stdout)?)
    };
    let open = code_for(A, None)?;
    let list = cli(&["enroll-codes"])?;
    let fingerprint = stationwatch_protocol::manifest::PublicKey::from_text(
        keys["stations"][0]["keys"][0]["key"]
            .as_str()
            .context("registered key")?,
    )?
    .fingerprint()
    .to_string();
    let used_line = list
        .lines()
        .find(|l| l.contains(" used (key "))
        .with_context(|| format!("no used code in:\n{list}"))?;
    let used_key = used_line
        .split_once("(key ")
        .and_then(|(_, rest)| rest.split_once(')'))
        .map(|(k, _)| k)
        .unwrap_or("?");
    assert!(
        used_line.contains(A) && used_key == fingerprint,
        "{list}\n{fingerprint}"
    );
    assert!(list.lines().any(|l| l.contains(" expired ")), "{list}");
    let id = list
        .lines()
        .find(|l| l.contains(&format!("  {A}  open  ")))
        .and_then(|l| l.split_whitespace().next())
        .with_context(|| format!("no open code in:\n{list}"))?
        .to_owned();
    cli(&["enroll-revoke", "--id", &id])?;
    assert!(cli(&["enroll-codes"])?.contains(&format!("{id}  {A}  revoked by cli")));
    let (status, out, _) = enroll(&open);
    assert!(!status.success() && out.contains("revoked"), "{out}");
    let audit = api.ok("/api/audit?limit=100")?;
    let enrolls: Vec<&serde_json::Value> = audit["entries"]
        .as_array()
        .context("entries")?
        .iter()
        .filter(|e| e["action"] == "enroll")
        .collect();
    assert!(enrolls.iter().any(|e| e["ok"] == true), "{audit}");
    assert!(
        enrolls.iter().filter(|e| e["ok"] == false).count() >= 3,
        "{audit}"
    );
    // Guessing is throttled like logins: after 5 refusals for a station from one address.
    let mut last = String::new();
    for _ in 0..4 {
        last = enroll("1111-1111-1111-1111-1111-1111-1111-1111").1;
    }
    assert!(last.contains("too many refused enrollments"), "{last}");
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

/// What an attacking station's MQTT client saw.
#[derive(Default, Debug)]
struct Seen {
    connected: bool,
    subacks: Vec<String>,
    /// Reason codes of the PUBACKs of its publishes (MQTT 5 names them; 3.1.1 has none).
    pubacks: Vec<String>,
    messages: Vec<(String, Vec<u8>)>,
}

type Shared = std::sync::Arc<std::sync::Mutex<Seen>>;

/// A station's MQTT 3.1.1 client (rumqttc) on the TLS station listener: subscribes to every
/// filter, publishes `forged` on every topic of `publish_to`, and records what comes back.
async fn attacker_v311(
    r_host_port: (String, u16),
    ca: std::path::PathBuf,
    (user, pass): (String, String),
    filters: Vec<String>,
    publish_to: Vec<String>,
    seen: Shared,
) {
    use rumqttc::{AsyncClient, Event, Incoming, QoS};
    use stationwatch_protocol::broker_config::{BrokerConfig, TlsFiles};
    let cfg = BrokerConfig {
        host: r_host_port.0,
        port: r_host_port.1,
        tls: Some(TlsFiles {
            ca_file: ca,
            client_cert: None,
        }),
        username: Some(user.clone()),
        password: Some(pass),
    };
    let opts = stationwatch_runtime::mqtt::options(&cfg, &format!("attacker-311-{user}"))
        .expect("mqtt options");
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                seen.lock().unwrap().connected = true;
                for f in &filters {
                    client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
                }
                for t in &publish_to {
                    client
                        .publish(t, QoS::AtLeastOnce, false, "forged")
                        .await
                        .unwrap();
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(s))) => seen
                .lock()
                .unwrap()
                .subacks
                .extend(s.return_codes.iter().map(|c| format!("{c:?}"))),
            Ok(Event::Incoming(Incoming::PubAck(_))) => {
                seen.lock().unwrap().pubacks.push("acked".into())
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => seen
                .lock()
                .unwrap()
                .messages
                .push((p.topic.clone(), p.payload.to_vec())),
            Ok(_) => {}
            Err(e) => {
                eprintln!("attacker 3.1.1: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

/// The same with an MQTT 5 client (rumqttc::v5).
async fn attacker_v5(
    r_host_port: (String, u16),
    ca: std::path::PathBuf,
    (user, pass): (String, String),
    filters: Vec<String>,
    publish_to: Vec<String>,
    seen: Shared,
) {
    use rumqttc::v5::mqttbytes::QoS;
    use rumqttc::v5::{AsyncClient, Event, Incoming, MqttOptions};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let mut opts = MqttOptions::new(format!("attacker-5-{user}"), r_host_port.0, r_host_port.1);
    opts.set_credentials(user, pass);
    opts.set_transport(rumqttc::Transport::tls_with_config(
        rumqttc::TlsConfiguration::Simple {
            ca: std::fs::read(&ca).expect("ca"),
            alpn: None,
            client_auth: None,
        },
    ));
    let (client, mut eventloop) = AsyncClient::new(opts, 64);
    loop {
        match eventloop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                seen.lock().unwrap().connected = true;
                for f in &filters {
                    client.subscribe(f, QoS::AtLeastOnce).await.unwrap();
                }
                for t in &publish_to {
                    client
                        .publish(t, QoS::AtLeastOnce, false, "forged")
                        .await
                        .unwrap();
                }
            }
            Ok(Event::Incoming(Incoming::SubAck(s))) => seen
                .lock()
                .unwrap()
                .subacks
                .extend(s.return_codes.iter().map(|c| format!("{c:?}"))),
            Ok(Event::Incoming(Incoming::PubAck(a))) => {
                seen.lock().unwrap().pubacks.push(format!("{:?}", a.reason))
            }
            Ok(Event::Incoming(Incoming::Publish(p))) => seen.lock().unwrap().messages.push((
                String::from_utf8_lossy(&p.topic).into_owned(),
                p.payload.to_vec(),
            )),
            Ok(_) => {}
            Err(e) => {
                eprintln!("attacker 5: {e}");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool) -> Result<()> {
    let deadline = Instant::now() + timeout;
    while !ok() {
        anyhow::ensure!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Issue 13, finding 1: a station joins the controllers' shared group (`$share/controllers/...`)
/// and Mosquitto hands it every other station's events, which its ACL then drops. With the
/// reference config (station listener `mount_point`), stations on MQTT 3.1.1 and on MQTT 5 try
/// every shared and wildcard subscription and every foreign publish they can think of: two
/// controller replicas in the shared group still get every one of B's events exactly once, the
/// attackers get nothing but their own commands, and no forged message reaches a controller.
#[test]
fn stations_cannot_join_the_controllers_group_or_publish_outside_their_tree() -> Result<()> {
    if skip_without_mosquitto() || skip_without_openssl() {
        return Ok(());
    }
    const C: &str = "C-0003";
    const PASS_C: &str = "secret-c";
    const EVENTS: usize = 40;
    let mount = reference_mount_point()?;
    let r = Reference::start(&[(A, PASS_A), (B, PASS_B), (C, PASS_C)])?;
    let events_filter = format!("{mount}stationwatch/v1/+/events");

    // Two controller replicas sharing the events, as controllers do (controller_subscriptions).
    let group = format!("$share/controllers/{events_filter}");
    let ctl1 = Subscriber::start(&r.controller().client_id("ctl-1"), &[&group], 1)?;
    let ctl2 = Subscriber::start(&r.controller().client_id("ctl-2"), &[&group], 1)?;

    // Every filter an attacker might try to reach other stations' messages with.
    let filters: Vec<String> = [
        "$share/controllers/stationwatch/v1/+/events".to_string(),
        "$share/controllers/stations/stationwatch/v1/+/events".to_string(),
        format!("$share/controllers/{events_filter}"),
        "$share/controllers/#".to_string(),
        "$share/x/#".to_string(),
        "#".to_string(),
        "+/#".to_string(),
        "stationwatch/v1/+/events".to_string(),
        "stationwatch/v1/B-0002/#".to_string(),
        "stations/stationwatch/v1/+/events".to_string(),
        "$SYS/#".to_string(),
    ]
    .into();
    // ... and every topic outside its own tree it might publish on.
    let forged_topics = |me: &str| -> Vec<String> {
        vec![
            topic(B, "events"),
            topic(B, "health"),
            topic(B, "status"),
            topic(B, "ack"),
            topic(me, "cmd"),
            topic(B, "cmd"),
            ctl_topic(B, "events"),
            format!("{mount}{}", topic(B, "events")),
            topic(me, "snapshot/desk/deeper"),
            "elsewhere".into(),
        ]
    };
    let rt = tokio::runtime::Runtime::new()?;
    let host = ("127.0.0.1".to_string(), r.station_port);
    let seen_a = Shared::default();
    let seen_c = Shared::default();
    let attacks = [
        rt.spawn(attacker_v311(
            host.clone(),
            r.ca.clone(),
            (A.into(), PASS_A.into()),
            filters.clone(),
            forged_topics(A),
            seen_a.clone(),
        )),
        rt.spawn(attacker_v5(
            host,
            r.ca.clone(),
            (C.into(), PASS_C.into()),
            filters.clone(),
            forged_topics(C),
            seen_c.clone(),
        )),
    ];
    let n_forged = forged_topics(A).len();
    for (name, seen) in [("3.1.1", &seen_a), ("5", &seen_c)] {
        wait_until(&format!("MQTT {name} attacker's acks"), WAIT * 2, || {
            let s = seen.lock().unwrap();
            s.subacks.len() == filters.len() && s.pubacks.len() == n_forged
        })?;
    }
    // MQTT 5 says why a publish was refused.
    let c = seen_c.lock().unwrap().pubacks.clone();
    assert!(
        c.iter().all(|p| p == "NotAuthorized"),
        "MQTT 5 forged publishes were not refused as NotAuthorized: {c:?}"
    );

    // B reports events; the attackers are subscribed with everything they could think of.
    let b = r.station(B, PASS_B);
    let sent: Vec<String> = (0..EVENTS).map(|i| format!("event-{i:02}")).collect();
    for e in &sent {
        publish(&b, &topic(B, "events"), e.as_bytes(), 1, false)?;
    }
    // Sentinels: each attacker's own command, routed after all of B's events.
    for who in [A, C] {
        let cmd = format!("{mount}{}", topic(who, "cmd"));
        publish(&r.controller(), &cmd, b"own-cmd", 1, false)?;
    }
    // The controllers: every event exactly once across both replicas, nothing forged.
    let received = || -> Vec<String> {
        let mut all: Vec<String> = payloads(&ctl1).into_iter().chain(payloads(&ctl2)).collect();
        all.sort();
        all
    };
    let done = wait_until("every event at the controllers", WAIT, || {
        received().len() >= EVENTS
    });
    let got = received();
    let lost: Vec<&String> = sent.iter().filter(|e| !got.contains(e)).collect();
    assert!(
        done.is_ok() && lost.is_empty(),
        "{} of {EVENTS} events never reached a controller replica (taken by a station in the \
         shared group?): {lost:?}",
        lost.len()
    );
    assert_eq!(got, sent, "duplicated or forged events at the controllers");
    assert!(
        !payloads(&ctl1).is_empty() && !payloads(&ctl2).is_empty(),
        "the shared group did not share: {} / {}",
        payloads(&ctl1).len(),
        payloads(&ctl2).len()
    );
    for (name, seen, me) in [("3.1.1", &seen_a, A), ("5", &seen_c, C)] {
        wait_until(&format!("MQTT {name} attacker's own command"), WAIT, || {
            seen.lock()
                .unwrap()
                .messages
                .iter()
                .any(|(_, p)| p == b"own-cmd")
        })?;
        // (An MQTT 5 client may get its command once per matching subscription.)
        let got = seen.lock().unwrap().messages.clone();
        assert!(
            got.iter()
                .all(|(t, p)| p == b"own-cmd" && t.ends_with(&topic(me, "cmd"))),
            "the MQTT {name} attacker read more than its own command: {:?}",
            got.iter()
                .map(|(t, p)| format!("{t}: {}", String::from_utf8_lossy(p)))
                .collect::<Vec<_>>()
        );
    }

    for a in attacks {
        a.abort();
    }
    Ok(())
}
