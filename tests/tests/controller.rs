//! The controller with real parts: a private Mosquitto, real agents recording test cameras, the
//! controller binary with SQLite (and PostgreSQL for two replicas), driven through its HTTP API
//! the way the dashboard and scripts use it.

use std::process::Command;
use std::time::Duration;

use anyhow::{bail, Result};
use serde_json::{json, Value};
use stationwatch_tests::agent_process::AgentProcess;
use stationwatch_tests::controller_process::{
    controller_bin, Api, ControllerOpts, ControllerProcess, ADMIN_PASSWORD, ADMIN_USER,
};
use stationwatch_tests::eventually;
use stationwatch_tests::have_gst_element;
use stationwatch_tests::mosquitto::{have_mosquitto, publish, Broker, BrokerOpts, Subscriber};
use stationwatch_tests::postgres::{postgres_bin_dir, Postgres};

const STATION: &str = "TEST-0001";

fn ready() -> bool {
    stationwatch_tests::require(
        have_mosquitto() && have_gst_element("x264enc"),
        "mosquitto or x264enc missing (run scripts/install-deps)",
    )
}

/// An agent config: two test cameras, 2 s segments, health every second.
fn agent_config(storage: &std::path::Path, broker_port: u16) -> String {
    let cam = "source = \"test\"\nwidth = 160\nheight = 120\nfps = 10\nbitrate_kbps = 150";
    format!(
        "[station]\nid = \"{STATION}\"\nname = \"School No. 12\"\nregion = \"North\"\n\
         [storage]\npath = \"{}\"\nsegment_seconds = 2\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{broker_port}\"\nhealth_interval_seconds = 1\n\
         [[camera]]\nid = \"desk\"\n{cam}\n[[camera]]\nid = \"box\"\n{cam}\n",
        storage.display()
    )
}

fn station_row(api: &Api) -> Result<Option<Value>> {
    let list = api.ok(&format!("/api/stations?q={STATION}"))?;
    Ok(list["stations"].as_array().and_then(|a| a.first()).cloned())
}

/// Whether a station row is "up": online, or degraded only because the kernel clock of the
/// machine running the agent is not synchronised (true of many test machines and containers
/// without NTP; the agent reports it and the controller rightly flags it).
fn is_up(row: &Value) -> bool {
    row["state"] == "online"
        || (row["state"] == "degraded"
            && row["reasons"]
                .as_array()
                .is_some_and(|r| r.iter().all(|x| x["kind"] == "clock_unsynced")))
}

fn wait_state(api: &Api, state: &str, secs: u64) -> Value {
    eventually(&format!("station {state}"), secs, || {
        Ok(station_row(api)?.filter(|s| {
            if state == "online" {
                is_up(s)
            } else {
                s["state"] == state
            }
        }))
    })
}

/// Sends a command and waits for its final acknowledgement; returns the command row.
fn command(api: &Api, body: Value) -> Value {
    let r = api
        .post(&format!("/api/stations/{STATION}/commands"), &body)
        .unwrap();
    assert_eq!(r.status, 202, "command {body} answered {r:?}");
    let id = r.body["id"].as_str().unwrap().to_owned();
    eventually(&format!("final ack of {body}"), 20, || {
        let cmds = api.ok(&format!("/api/stations/{STATION}/commands"))?;
        Ok(cmds["commands"]
            .as_array()
            .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()).cloned())
            .filter(|c| c["status"] == "done" || c["status"] == "rejected"))
    })
}

#[test]
fn operators_see_a_real_station_and_act_on_it() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
    let anon = Api::anonymous(&ctl.base_url());

    // Nothing but the login page without a session.
    assert_eq!(anon.get("/api/stations").unwrap().status, 401);
    assert_eq!(anon.get("/api/summary").unwrap().status, 401);
    assert_eq!(anon.get("/assets/app.js").unwrap().status, 401);
    let page = anon.get("/").unwrap();
    assert!(
        page.body.to_string().contains("id=\\\"login\\\""),
        "/ must lead to the login page: {page:?}"
    );
    let wrong = anon
        .post(
            "/api/login",
            &json!({"username": "admin", "password": "nope-nope"}),
        )
        .unwrap();
    assert_eq!(wrong.status, 401);

    let api = ctl.admin().unwrap();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let mut agent = AgentProcess::start(
        &agent_dir,
        &agent_config(&agent_dir.join("rec"), broker.port()),
    )
    .unwrap();

    // The station appears online with what its agent reports.
    let row = wait_state(&api, "online", 30);
    assert_eq!(row["name"], "School No. 12");
    assert_eq!(row["region"], "North");
    let row = eventually("both cameras recording", 20, || {
        Ok(station_row(&api)?.filter(|s| s["cameras_recording"] == 2))
    });
    assert_eq!(row["cameras"], 2);
    let summary = api.ok("/api/summary").unwrap();
    assert_eq!(
        summary["counts"][row["state"].as_str().unwrap()],
        1,
        "{summary}"
    );
    assert_eq!(summary["regions"]["North"], 1);
    assert_eq!(summary["broker_connected"], true);

    // Commands, acknowledged by the real agent.
    let ping = command(&api, json!({"kind": "ping"}));
    assert_eq!(ping["status"], "done", "{ping}");
    let snap = command(&api, json!({"kind": "snapshot", "camera": "desk"}));
    assert_eq!(snap["status"], "done", "{snap}");
    let (status, jpeg) = eventually("snapshot stored", 20, || {
        let (s, b) = api.get_bytes(&format!("/api/stations/{STATION}/cameras/desk/snapshot"))?;
        Ok((s == 200).then_some((s, b)))
    });
    assert_eq!(status, 200);
    assert!(
        jpeg.starts_with(&[0xFF, 0xD8]) && jpeg.len() > 500,
        "not a JPEG: {} bytes",
        jpeg.len()
    );
    let detail = api.ok(&format!("/api/stations/{STATION}")).unwrap();
    assert_eq!(detail["snapshots"][0]["camera"], "desk");
    assert_eq!(detail["health"]["agent"]["region"], "North");
    // Refused before anything is sent: unknown camera, not a command.
    let bad = api
        .post(
            &format!("/api/stations/{STATION}/commands"),
            &json!({"kind": "restart_camera", "camera": "nope"}),
        )
        .unwrap();
    assert_eq!(bad.status, 400, "{bad:?}");
    let bad = api
        .post(
            &format!("/api/stations/{STATION}/commands"),
            &json!({"kind": "format_disk"}),
        )
        .unwrap();
    assert_eq!(bad.status, 400, "{bad:?}");
    assert_eq!(
        api.post("/api/stations/NOPE-1/commands", &json!({"kind": "ping"}))
            .unwrap()
            .status,
        404
    );

    // History for the chart, events.
    let points = eventually("health history", 10, || {
        let h = api.ok(&format!("/api/stations/{STATION}/health?hours=1"))?;
        Ok(h["points"].as_array().filter(|p| p.len() >= 3).cloned())
    });
    assert!(
        points.iter().any(|p| p["figures"]["recording"] == 2),
        "{points:?}"
    );
    let events = api.ok(&format!("/api/stations/{STATION}/events")).unwrap();
    assert!(
        events["events"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["kind"] == "agent_starting"),
        "{events}"
    );

    // Garbage from a station is counted and ignored; the controller keeps serving.
    for payload in [
        &b"not json"[..],
        b"{\"v\":1}",
        b"{\"v\":99,\"at\":1}",
        &[0xFF; 70_000],
    ] {
        publish(
            &broker.client(),
            &format!("stationwatch/v1/{STATION}/health"),
            payload,
            0,
            false,
        )
        .unwrap();
        publish(
            &broker.client(),
            &format!("stationwatch/v1/{STATION}/events"),
            payload,
            1,
            false,
        )
        .unwrap();
    }
    let metrics = eventually("rejections counted", 10, || {
        let m = api.ok("/api/metrics")?;
        Ok((m["messages"]["rejected"].as_u64() >= Some(8)).then_some(m))
    });
    assert!(
        metrics["messages"]["health"].as_u64().unwrap() >= 3,
        "{metrics}"
    );
    wait_state(&api, "online", 5);

    // Observers see only what they are granted and cannot command.
    let r = api
        .post("/api/users", &json!({"username": "olga", "password": "observer-pass", "role": "observer", "grants": ["OTHER-9"]}))
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let olga = Api::login(&ctl.base_url(), "olga", "observer-pass").unwrap();
    assert_eq!(olga.ok("/api/stations").unwrap()["total"], 0);
    assert_eq!(
        olga.get(&format!("/api/stations/{STATION}"))
            .unwrap()
            .status,
        404
    );
    assert_eq!(olga.get("/api/audit").unwrap().status, 403);
    let r = api.post("/api/users", &json!({"username": "oleg", "password": "observer-pass", "role": "observer", "grants": [STATION]})).unwrap();
    assert_eq!(r.status, 201);
    let oleg = Api::login(&ctl.base_url(), "oleg", "observer-pass").unwrap();
    assert_eq!(oleg.ok("/api/stations").unwrap()["total"], 1);
    assert_eq!(
        oleg.post(
            &format!("/api/stations/{STATION}/commands"),
            &json!({"kind": "ping"})
        )
        .unwrap()
        .status,
        403
    );

    // The agent dies: the broker's last will makes the station offline and opens an alert.
    agent.kill().unwrap();
    let row = wait_state(&api, "offline", 15);
    assert_eq!(row["reasons"][0]["kind"], "offline", "{row}");
    assert!(
        row["reasons"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("last will"),
        "{row}"
    );
    let alert = eventually("offline alert", 10, || {
        let a = api.ok("/api/alerts")?;
        Ok(a["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["station_id"] == STATION && x["kind"] == "offline")
                .cloned()
        }))
    });
    assert!(alert["closed_at"].is_null());

    // Back: online again and the alert closes with a time.
    let _agent = AgentProcess::start(
        &agent_dir,
        &agent_config(&agent_dir.join("rec"), broker.port()),
    )
    .unwrap();
    wait_state(&api, "online", 30);
    let closed = eventually("offline alert closed", 10, || {
        let a = api.ok(&format!("/api/stations/{STATION}/alerts"))?;
        Ok(a["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|x| x["kind"] == "offline" && !x["closed_at"].is_null())
                .cloned()
        }))
    });
    assert!(closed["closed_at"].as_i64() > closed["opened_at"].as_i64());

    // Every login and command is in the audit log.
    let audit = api.ok("/api/audit").unwrap();
    let entries = audit["entries"].as_array().unwrap();
    let has = |action: &str, user: &str, ok: bool| {
        entries
            .iter()
            .any(|e| e["action"] == action && e["username"] == user && e["ok"] == ok)
    };
    assert!(
        has("login", "admin", true) && has("login", "admin", false),
        "{audit}"
    );
    assert!(
        has("command", "admin", true) && has("command", "oleg", false),
        "{audit}"
    );
    assert!(has("user_create", "admin", true), "{audit}");
}

#[test]
fn two_replicas_share_one_database_and_the_broker() {
    if !ready() {
        return;
    }
    if !stationwatch_tests::require(
        postgres_bin_dir().is_some(),
        "PostgreSQL server not installed (run scripts/install-deps)",
    ) {
        return;
    }
    let pg = Postgres::start().unwrap();
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.database_url = Some(pg.url());
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&da).unwrap();
    std::fs::create_dir(&db).unwrap();
    let a = ControllerProcess::start(&da, &opts).unwrap();
    let b = ControllerProcess::start(&db, &opts).unwrap();
    let (api_a, api_b) = (a.admin().unwrap(), b.admin().unwrap());
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let mut agent = AgentProcess::start(
        &agent_dir,
        &agent_config(&agent_dir.join("rec"), broker.port()),
    )
    .unwrap();

    // Health goes to one replica of the shared group at a time; both show the station.
    wait_state(&api_a, "online", 30);
    wait_state(&api_b, "online", 30);
    let got = |api: &Api| -> u64 {
        api.ok("/api/metrics").unwrap()["messages"]["health"]
            .as_u64()
            .unwrap()
    };
    std::thread::sleep(Duration::from_secs(4));
    let (ha, hb) = (got(&api_a), got(&api_b));
    assert!(
        ha > 0 && hb > 0,
        "each replica ingests part of the reports: a={ha} b={hb}"
    );

    // A command sent through A is shown as done through B (acks may reach either replica).
    let r = api_a
        .post(
            &format!("/api/stations/{STATION}/commands"),
            &json!({"kind": "ping"}),
        )
        .unwrap();
    assert_eq!(r.status, 202);
    let id = r.body["id"].as_str().unwrap().to_owned();
    eventually("ack visible through the other replica", 20, || {
        let cmds = api_b.ok(&format!("/api/stations/{STATION}/commands"))?;
        Ok(cmds["commands"].as_array().and_then(|a| {
            a.iter()
                .find(|c| c["id"] == id.as_str() && c["status"] == "done")
                .cloned()
        }))
    });

    // Both replicas see the station go offline; the alert is stored once.
    agent.kill().unwrap();
    wait_state(&api_a, "offline", 15);
    wait_state(&api_b, "offline", 15);
    std::thread::sleep(Duration::from_secs(2));
    let open: Vec<Value> = api_b.ok("/api/alerts").unwrap()["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| x["station_id"] == STATION && x["kind"] == "offline")
        .cloned()
        .collect();
    assert_eq!(
        open.len(),
        1,
        "one open offline alert, not one per replica: {open:?}"
    );
    // A user created through one replica logs in through the other (sessions live in the database).
    api_a
        .post(
            "/api/users",
            &json!({"username": "op", "password": "operator-pass", "role": "operator"}),
        )
        .unwrap();
    let op = Api::login(&b.base_url(), "op", "operator-pass").unwrap();
    let same_session = op.with_base(&a.base_url());
    assert_eq!(same_session.ok("/api/me").unwrap()["username"], "op");
}

/// A station that publishes a steady stream of events (QoS 1, ids `ev-00000`, ...) with the
/// MQTT client the daemons use, until `stop`; returns the ids the broker acknowledged.
fn event_stream(
    broker_port: u16,
    station: &'static str,
    per_second: u32,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> std::thread::JoinHandle<Vec<String>> {
    use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, QoS};
    use stationwatch_protocol::manifest::Timestamp;
    use stationwatch_protocol::mqtt::{Event, EventKind, MessageId};
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let mut o = MqttOptions::new(format!("stream-{station}"), "127.0.0.1", broker_port);
            o.set_clean_session(false);
            let (client, mut eventloop) = AsyncClient::new(o, 1024);
            let mut tick =
                tokio::time::interval(Duration::from_secs(1) / per_second);
            let (mut sent, mut pending, mut acked) = (0usize, std::collections::VecDeque::new(), Vec::new());
            let topic = format!("stationwatch/v1/{station}/events");
            loop {
                tokio::select! {
                    _ = tick.tick(), if !stop.load(std::sync::atomic::Ordering::SeqCst) => {
                        let id = format!("ev-{sent:05}");
                        let ev = Event::new(
                            MessageId::new(id.clone()).unwrap(),
                            Timestamp::now(),
                            EventKind::AgentStopping { reason: "stream".into() },
                        );
                        client.publish(&topic, QoS::AtLeastOnce, false, ev.to_json().unwrap()).await.unwrap();
                        pending.push_back(id);
                        sent += 1;
                    }
                    ev = eventloop.poll() => match ev {
                        // rumqttc acknowledges in order of sending for QoS 1 on one connection.
                        Ok(MqttEvent::Incoming(Incoming::PubAck(_))) => {
                            acked.extend(pending.pop_front());
                        }
                        Ok(_) => {}
                        Err(e) => panic!("event stream lost the broker: {e}"),
                    },
                }
                if stop.load(std::sync::atomic::Ordering::SeqCst) && pending.is_empty() {
                    return acked;
                }
            }
        })
    })
}

/// Issue 13, finding 2: a controller replica restarted three times while a station streams
/// events and commands are acknowledged, another replica always up. Every event the broker
/// accepted is stored exactly once and every command ends `done`: the restarted replica comes
/// back under the same MQTT client id (the default: host and HTTP port, not the pid) and
/// resumes its persistent session, receiving its share of the group that the broker queued
/// while it was down. (With the pid in the id, the old session stayed in the shared group and
/// kept taking its share: those events and acks were lost.)
#[test]
fn a_replica_restarted_three_times_loses_no_event_and_no_ack() {
    if !ready() {
        return;
    }
    if !stationwatch_tests::require(
        postgres_bin_dir().is_some(),
        "PostgreSQL server not installed (run scripts/install-deps)",
    ) {
        return;
    }
    const STREAM: &str = "EV-0001";
    let pg = Postgres::start().unwrap();
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.database_url = Some(pg.url());
    let (da, db) = (dir.path().join("a"), dir.path().join("b"));
    std::fs::create_dir(&da).unwrap();
    std::fs::create_dir(&db).unwrap();
    let mut a = ControllerProcess::start(&da, &opts).unwrap();
    let b = ControllerProcess::start(&db, &opts).unwrap();
    let api_b = b.admin().unwrap();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let _agent = AgentProcess::start(
        &agent_dir,
        &agent_config(&agent_dir.join("rec"), broker.port()),
    )
    .unwrap();
    wait_state(&api_b, "online", 30);

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let stream = event_stream(broker.port(), STREAM, 25, stop.clone());
    let ping = |api: &Api| -> String {
        let r = api
            .post(
                &format!("/api/stations/{STATION}/commands"),
                &json!({"kind": "ping"}),
            )
            .unwrap();
        assert_eq!(r.status, 202, "{r:?}");
        r.body["id"].as_str().unwrap().to_owned()
    };
    let mut pings = Vec::new();
    for round in 0..3 {
        std::thread::sleep(Duration::from_secs(2));
        pings.push(ping(&api_b));
        // A graceful restart (systemctl restart): A disconnects, the broker queues A's share.
        a.child.terminate(Duration::from_secs(15)).unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        pings.push(ping(&api_b));
        std::thread::sleep(Duration::from_millis(1500));
        let port = a.addr.port();
        a = ControllerProcess::start_with_config(&a.config, port).unwrap();
        eprintln!("replica A restarted ({} of 3)", round + 1);
    }
    std::thread::sleep(Duration::from_secs(2));
    pings.push(ping(&api_b));
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let sent = stream.join().unwrap();
    assert!(sent.len() > 100, "only {} events streamed", sent.len());

    // Every acknowledged event stored exactly once (the table's key is (station, event id):
    // redeliveries are de-duplicated, a lost message is missing).
    let stored = || -> Vec<String> {
        let out = pg
            .psql(
                "stationwatch",
                &format!(
                    "SELECT event_id FROM events WHERE station_id = '{STREAM}' ORDER BY event_id"
                ),
            )
            .unwrap();
        out.lines().map(str::to_owned).collect()
    };
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while stored().len() < sent.len() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(300));
    }
    let got = stored();
    let missing: Vec<&String> = sent.iter().filter(|e| !got.contains(e)).collect();
    assert!(
        missing.is_empty(),
        "{} of {} events were lost across 3 restarts of a replica: {:?}...",
        missing.len(),
        sent.len(),
        &missing[..missing.len().min(10)]
    );
    assert_eq!(got, sent, "events stored other than as sent");

    // Every command acknowledged as done, whichever replica the acks reached.
    let api_a = api_b.with_base(&a.base_url());
    for id in &pings {
        eventually(&format!("ping {id} done"), 20, || {
            let cmds = api_a.ok(&format!("/api/stations/{STATION}/commands"))?;
            Ok(cmds["commands"]
                .as_array()
                .and_then(|c| c.iter().find(|c| c["id"] == id.as_str()).cloned())
                .filter(|c| c["status"] == "done"))
        });
    }
    // The restarted replica came back under one stable client id.
    let log = a.child.log();
    assert!(log.contains("connected to the broker"), "{log}");
}

/// Issue 13, finding 3: a command sent while the agent is disconnected reaches it when it comes
/// back (the agent's persistent session keeps it at the broker), and one the agent does not
/// come back for in time is shown as `expired`, not `sent` forever; the agent refuses it
/// when it finally gets it, and it stays `expired`.
#[test]
fn commands_reach_an_agent_that_was_away_and_expire_when_it_stays_away() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl_dir = dir.path().join("controller");
    std::fs::create_dir(&ctl_dir).unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.mqtt_extra = "command_ttl_seconds = 8".into();
    let ctl = ControllerProcess::start(&ctl_dir, &opts).unwrap();
    let api = ctl.admin().unwrap();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let config = agent_config(&agent_dir.join("rec"), broker.port());
    let mut agent = AgentProcess::start(&agent_dir, &config).unwrap();
    wait_state(&api, "online", 30);

    let ping = || -> String {
        let r = api
            .post(
                &format!("/api/stations/{STATION}/commands"),
                &json!({"kind": "ping"}),
            )
            .unwrap();
        assert_eq!(r.status, 202, "{r:?}");
        r.body["id"].as_str().unwrap().to_owned()
    };
    let row = |id: &str| -> Result<Option<Value>> {
        let cmds = api.ok(&format!("/api/stations/{STATION}/commands"))?;
        Ok(cmds["commands"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["id"] == id).cloned()))
    };
    let wait_status = |id: &str, status: &str, secs: u64| -> Value {
        eventually(&format!("command {id} {status}"), secs, || {
            Ok(row(id)?.filter(|c| c["status"] == status))
        })
    };

    // 1. Away, then back within the command's lifetime: the command arrives and runs.
    agent.terminate(Duration::from_secs(20)).unwrap();
    wait_state(&api, "offline", 15);
    let while_away = ping();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(row(&while_away).unwrap().unwrap()["status"], "sent");
    let mut agent = AgentProcess::start(&agent_dir, &config).unwrap();
    let done = wait_status(&while_away, "done", 20);
    assert!(
        done["expires_at"].as_i64() > done["issued_at"].as_i64(),
        "{done}"
    );

    // 2. Away for longer than the command's lifetime: `expired`, and it stays so when the
    // agent finally receives it (the agent refuses it as expired).
    agent.terminate(Duration::from_secs(20)).unwrap();
    wait_state(&api, "offline", 15);
    let too_late = ping();
    wait_status(&too_late, "expired", 25);
    let _agent = AgentProcess::start(&agent_dir, &config).unwrap();
    wait_state(&api, "online", 30);
    // A fresh ping is acknowledged after the agent has dealt with the queued one.
    let fresh = ping();
    wait_status(&fresh, "done", 20);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(row(&too_late).unwrap().unwrap()["status"], "expired");
}

/// Issue 13, finding 4: one report dated 9999 claiming an interval of 136 years, published
/// with the station's own credentials (retained, like the agent's), pins nothing: the real
/// agent's next reports replace it (ordering by receive time, not the agent's `at`); sent
/// after the agent died it shows `clock_skew` and the station still goes offline after the
/// bounded silence; and a controller restart (which receives the retained forgery afresh)
/// does not bring "online" back for longer than that.
#[test]
fn a_forged_report_dated_9999_pins_nothing_even_across_a_restart() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl_dir = dir.path().join("controller");
    std::fs::create_dir(&ctl_dir).unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.extra_toml = "[rules]\nmax_interval_seconds = 5\n".into();
    let mut ctl = ControllerProcess::start(&ctl_dir, &opts).unwrap();
    let api = ctl.admin().unwrap();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir(&agent_dir).unwrap();
    let mut agent = AgentProcess::start(
        &agent_dir,
        &agent_config(&agent_dir.join("rec"), broker.port()),
    )
    .unwrap();
    wait_state(&api, "online", 30);

    // The forgery: the agent's own latest report, dated 9999, interval u32::MAX.
    let topic = format!("stationwatch/v1/{STATION}/health");
    let sub = Subscriber::start(&broker.client(), &[&topic], 1).unwrap();
    let real = sub
        .wait_for(Duration::from_secs(10), |m| m.topic == topic)
        .expect("the agent's health report");
    let mut forged: Value = serde_json::from_slice(&real.payload).unwrap();
    forged["at"] = json!("9999-12-31T23:59:59.000Z");
    forged["interval_s"] = json!(u32::MAX);
    let forged = serde_json::to_vec(&forged).unwrap();
    let forge = || publish(&broker.client(), &topic, &forged, 1, true).unwrap();
    let health_at = |api: &Api| -> Result<String> {
        let d = api.ok(&format!("/api/stations/{STATION}"))?;
        Ok(d["health"]["at"].as_str().unwrap_or_default().to_owned())
    };

    // 1. While the agent reports: its next reports replace the forgery.
    forge();
    std::thread::sleep(Duration::from_millis(500));
    eventually("a real report replacing the forged one", 10, || {
        let at = health_at(&api)?;
        Ok((!at.is_empty() && !at.starts_with("9999")).then_some(at))
    });

    // 2. The agent dies; the forgery comes after its last will: flagged, then offline after
    // missed_reports x max_interval_seconds (15 s) of silence.
    agent.kill().unwrap();
    wait_state(&api, "offline", 15);
    forge();
    eventually("clock_skew on the forged report", 10, || {
        Ok(station_row(&api)?.filter(|r| {
            r["reasons"]
                .as_array()
                .is_some_and(|a| a.iter().any(|x| x["kind"] == "clock_skew"))
        }))
    });
    let row = station_row(&api).unwrap().unwrap();
    assert_ne!(row["state"], "online", "{row}");
    wait_state(&api, "offline", 25);

    // 3. Across a restart: the retained forgery is received again, and ages out again.
    ctl.child.terminate(Duration::from_secs(15)).unwrap();
    let port = ctl.addr.port();
    ctl = ControllerProcess::start_with_config(&ctl.config, port).unwrap();
    let api = ctl.admin().unwrap();
    std::thread::sleep(Duration::from_secs(2));
    let row = station_row(&api).unwrap().unwrap();
    assert_ne!(row["state"], "online", "after the restart: {row}");
    wait_state(&api, "offline", 25);
}

/// POST /api/login as `user` for a client at `from` (the reverse proxy's `X-Forwarded-For`;
/// the test talks from loopback, a trusted proxy by default). Returns the status.
fn login_from(base: &str, user: &str, password: &str, from: &str) -> u16 {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent();
    agent
        .post(&format!("{base}/api/login"))
        .header("x-forwarded-for", from)
        .send_json(json!({ "username": user, "password": password }))
        .unwrap()
        .status()
        .as_u16()
}

/// Peak resident memory of a process (VmHWM), in KiB.
fn peak_rss_kib(pid: u32) -> u64 {
    stationwatch_tests::proc_stats::status_kib(pid, "VmHWM")
}

/// Issue 13, finding 5: an attacker hammering `admin` (from one address, from many, with
/// endless and huge user names, and all at once) is slowed and refused, while the real admin
/// logs in from another address at once; failures are aggregated in the audit log; password
/// hashing is bounded (the controller's memory does not grow with concurrent logins).
#[test]
fn an_attacker_hammering_admin_cannot_lock_the_real_admin_out() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
    let base = ctl.base_url();
    let admin = |from: &str| login_from(&base, ADMIN_USER, ADMIN_PASSWORD, from);
    const ATTACKER: &str = "198.51.100.7";
    const REAL: &str = "203.0.113.5";

    // 1. One address, one name: five tries, then refused (429) without a password check.
    let codes: Vec<u16> = (0..30)
        .map(|i| login_from(&base, ADMIN_USER, &format!("guess-{i}-xxxx"), ATTACKER))
        .collect();
    assert_eq!(&codes[..5], &[401; 5], "{codes:?}");
    assert!(codes[5..].iter().all(|&c| c == 429), "{codes:?}");
    // The real admin, from elsewhere, at once (the old per-name lock refused them for 5 min).
    assert_eq!(admin(REAL), 200, "the real admin was locked out");
    assert_eq!(
        Api::login(&base, ADMIN_USER, ADMIN_PASSWORD)
            .map(|_| ())
            .ok(),
        Some(())
    );
    // Even the attacker's address gets the right password refused for this window.
    assert_eq!(admin(ATTACKER), 429);

    // 2. One address, ever new and huge names: the address is closed after 20 failures.
    let huge = "x".repeat(100_000);
    let codes: Vec<u16> = (0..30)
        .map(|i| {
            let name = if i % 2 == 0 {
                format!("nobody-{i}")
            } else {
                format!("{i}{huge}")
            };
            login_from(&base, &name, "whatever-password", "198.51.100.8")
        })
        .collect();
    assert!(codes[..20].iter().all(|&c| c == 401), "{codes:?}");
    assert!(codes[20..].iter().all(|&c| c == 429), "{codes:?}");
    assert_eq!(admin(REAL), 200);

    // 3. Many addresses, one try each (a botnet): past 50 failures for the name, an address
    // that failed for it is refused; a clean one (the real admin) is not.
    for i in 0..60 {
        let code = login_from(&base, ADMIN_USER, "botnet-guess-1", &format!("10.0.0.{i}"));
        assert_eq!(code, 401, "address {i}");
    }
    assert_eq!(
        login_from(&base, ADMIN_USER, "botnet-guess-2", "10.0.0.1"),
        429
    );
    assert_eq!(admin(REAL), 200);

    // 4. All at once: 40 concurrent logins cost a few hashes' worth of memory, not 40 x 19 MiB.
    let pid = ctl.child.pid().unwrap();
    let before = peak_rss_kib(pid);
    let threads: Vec<_> = (0..40)
        .map(|i| {
            let base = base.clone();
            std::thread::spawn(move || {
                login_from(
                    &base,
                    &format!("flood-{i}"),
                    "flood-password",
                    &format!("192.0.2.{i}"),
                )
            })
        })
        .collect();
    for t in threads {
        let code = t.join().unwrap();
        assert!(code == 401 || code == 503, "{code}");
    }
    let grown_mib = peak_rss_kib(pid).saturating_sub(before) / 1024;
    eprintln!("peak memory grew by {grown_mib} MiB for 40 concurrent logins");
    assert!(
        grown_mib < 200,
        "peak memory grew by {grown_mib} MiB: password hashing is not bounded"
    );
    assert_eq!(admin(REAL), 200);

    // 5. The audit log: the attacker's 30 attempts from one address are two rows (the first
    // failure, then a summary), not 30.
    std::thread::sleep(Duration::from_secs(7));
    let api = ctl.admin().unwrap();
    let audit = api.ok("/api/audit?limit=5000").unwrap();
    let rows: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "login" && e["ok"] == false)
        .filter(|e| e["detail"].as_str().unwrap_or_default().contains(ATTACKER))
        .collect();
    assert_eq!(rows.len(), 2, "{rows:#?}");
    assert!(
        rows.iter().any(|r| r["detail"]
            .as_str()
            .unwrap()
            .contains("4 more wrong passwords and 26 throttled attempts")),
        "{rows:#?}"
    );
    // No audit row carries a 100,000-character name.
    assert!(audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .all(|e| e["username"].as_str().unwrap_or_default().len() < 200));
}

/// Issue 13, finding 6 (connections): on a default process limit of 1,024 open files,
/// 1,100 idle sockets and a slowloris do not stop the controller serving the real operator;
/// a half-sent header is cut after the header timeout and a trickled body after the request
/// timeout. (Before, idle sockets were never closed and used up every descriptor: nothing was
/// accepted any more.)
#[test]
fn idle_sockets_and_slow_clients_do_not_starve_the_real_operator() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.http_extra = "header_timeout_seconds = 3\nrequest_timeout_seconds = 3".into();
    opts.nofile = Some(1024);
    let ctl = ControllerProcess::start(dir.path(), &opts).unwrap();
    let addr = ctl.addr;

    // A header that never ends, and a body that never ends.
    let mut slow_header = TcpStream::connect(addr).unwrap();
    slow_header
        .write_all(b"GET /api/summary HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut slow_body = TcpStream::connect(addr).unwrap();
    slow_body
        .write_all(
            b"POST /api/login HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
              Content-Length: 100\r\n\r\n{\"username\":",
        )
        .unwrap();
    let started = std::time::Instant::now();
    // 1,100 idle sockets (more than the process may open).
    let idle: Vec<TcpStream> = (0..1100)
        .filter_map(|_| TcpStream::connect(addr).ok())
        .collect();
    eprintln!("{} idle sockets open", idle.len());

    // The real operator is served, after at most about the header timeout.
    let t = std::time::Instant::now();
    let api = ctl.admin().expect("the real operator could not log in");
    api.ok("/api/summary").unwrap();
    let waited = t.elapsed();
    eprintln!("the operator was served after {waited:?}");
    assert!(waited < Duration::from_secs(12), "{waited:?}");

    // The slow header was cut (EOF or reset), the trickled body answered 408.
    slow_header
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut buf = Vec::new();
    let _ = slow_header.read_to_end(&mut buf);
    assert!(
        started.elapsed() < Duration::from_secs(15),
        "a half-sent header kept its connection"
    );
    slow_body
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut answer = vec![0u8; 512];
    let n = slow_body.read(&mut answer).unwrap_or(0);
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    drop(idle);
}

/// Reads a server-sent event stream on a raw connection in a thread; the receiver gets `()`
/// when the server ends it. Returns the status code too.
fn open_stream(
    addr: std::net::SocketAddr,
    auth_header: &str,
) -> (u16, std::sync::mpsc::Receiver<()>) {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET /api/stream HTTP/1.1\r\nHost: x\r\n{auth_header}\r\nAccept: text/event-stream\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).unwrap();
    let code: u16 = status
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            line.clear();
        }
        let _ = tx.send(());
    });
    (code, rx)
}

fn ends_within(rx: &std::sync::mpsc::Receiver<()>, secs: u64) -> bool {
    rx.recv_timeout(Duration::from_secs(secs)).is_ok()
}

/// Issue 13, finding 6 (event streams and tokens): at most 8 streams per user; a stream ends
/// when its user's grants change, when the session logs out, when the user is deleted and
/// when its token is revoked; tokens expire, are listed with their last use and revoked; an
/// observer's token sees what the observer sees and no more.
#[test]
fn event_streams_and_tokens_follow_the_users_rights() {
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
    let admin = ctl.admin().unwrap();
    // Two stations the controller knows of.
    for st in ["OBS-0001", "OBS-0002"] {
        publish(
            &broker.client(),
            &format!("stationwatch/v1/{st}/status"),
            br#"{"v":1,"state":"online","at":"2026-01-01T00:00:00.000Z"}"#,
            1,
            true,
        )
        .unwrap();
    }
    eventually("stations known", 20, || {
        let l = admin.ok("/api/stations")?;
        Ok((l["stations"].as_array().map_or(0, Vec::len) >= 2).then_some(()))
    });
    let new_observer = |name: &str| {
        let r = admin
            .post(
                "/api/users",
                &json!({"username": name, "password": "observer-pass", "role": "observer"}),
            )
            .unwrap();
        assert_eq!(r.status, 201, "{r:?}");
        let r = admin
            .put(
                &format!("/api/users/{name}/grants"),
                &json!({"stations": ["OBS-0001"]}),
            )
            .unwrap();
        assert!(r.status < 300, "{r:?}");
        Api::login(&ctl.base_url(), name, "observer-pass").unwrap()
    };
    let cookie = |api: &Api| format!("Cookie: {}", api.cookie().unwrap());

    // 1. At most 8 streams per user; grants changed: all of them end.
    let obs = new_observer("obs1");
    let streams: Vec<_> = (0..8)
        .map(|_| open_stream(ctl.addr, &cookie(&obs)))
        .collect();
    assert!(streams.iter().all(|(c, _)| *c == 200));
    assert_eq!(open_stream(ctl.addr, &cookie(&obs)).0, 429);
    admin
        .put(
            "/api/users/obs1/grants",
            &json!({"stations": ["OBS-0001", "OBS-0002"]}),
        )
        .unwrap();
    for (_, rx) in &streams {
        assert!(ends_within(rx, 10), "a stream outlived a grant change");
    }
    // The slots are free again.
    let (code, again) = open_stream(ctl.addr, &cookie(&obs));
    assert_eq!(code, 200);

    // 2. Logout ends the session's stream.
    obs.post("/api/logout", &json!({})).unwrap();
    assert!(ends_within(&again, 10), "a stream outlived its logout");

    // 3. Deleting the user ends its streams.
    let obs2 = new_observer("obs2");
    let (code, s2) = open_stream(ctl.addr, &cookie(&obs2));
    assert_eq!(code, 200);
    let r = admin.delete("/api/users/obs2").unwrap();
    assert!(r.status < 300, "{r:?}");
    assert!(ends_within(&s2, 10), "a stream outlived its user");

    // 4. Tokens: expiry, list with last use, the observer's view only, revocation.
    let obs3 = new_observer("obs3");
    let r = obs3
        .post("/api/tokens", &json!({"name": "script", "days": 1}))
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    let token = r.body["token"].as_str().unwrap().to_owned();
    let id = r.body["id"].as_str().unwrap().to_owned();
    let expires = r.body["expires_at"].as_i64().unwrap();
    let made = r.body["expires_at"].as_i64().unwrap() - 86_400_000;
    assert!(expires > made);
    assert_eq!(
        obs3.post("/api/tokens", &json!({"name": "x", "days": 9999}))
            .unwrap()
            .status,
        400
    );
    let bearer = format!("Authorization: Bearer {token}");
    let with_token = |path: &str| -> u16 {
        ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent()
            .get(&format!("{}{path}", ctl.base_url()))
            .header("authorization", &format!("Bearer {token}"))
            .call()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(with_token("/api/stations/OBS-0001"), 200);
    assert_eq!(
        with_token("/api/stations/OBS-0002"),
        404,
        "the token saw more than its observer"
    );
    let listed = obs3.ok("/api/tokens").unwrap();
    let row = listed["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == id.as_str())
        .cloned()
        .expect("token listed");
    assert!(row["last_used_at"].as_i64().is_some(), "{row}");
    assert_eq!(row["expires_at"].as_i64(), Some(expires));
    assert!(row.get("token").is_none());
    // Another observer cannot see or revoke it.
    let obs4 = new_observer("obs4");
    assert!(obs4.ok("/api/tokens").unwrap()["tokens"]
        .as_array()
        .unwrap()
        .is_empty());
    assert_eq!(
        obs4.delete(&format!("/api/tokens/{id}")).unwrap().status,
        404
    );
    let (code, ts) = open_stream(ctl.addr, &bearer);
    assert_eq!(code, 200);
    assert_eq!(
        obs3.delete(&format!("/api/tokens/{id}")).unwrap().status,
        204
    );
    assert_eq!(with_token("/api/me"), 401);
    assert!(ends_within(&ts, 10), "a stream outlived its revoked token");
}

/// Issue 13, finding 7 (in part): a station cannot store snapshots for cameras it does not
/// report; `/metrics` serves the Prometheus text format (fleet by state, alerts, ingest,
/// write backlog, drops, event streams, login failures) to staff and API tokens only.
#[test]
fn snapshots_only_for_reported_cameras_and_prometheus_metrics() {
    use stationwatch_protocol::manifest::Timestamp;
    use stationwatch_protocol::mqtt::{CameraHealth, CameraState, Health};
    use stationwatch_protocol::CameraId;
    if !have_mosquitto() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
    let api = ctl.admin().unwrap();
    const ST: &str = "SNAP-0001";
    let mut h = Health::new(Timestamp::now());
    h.cameras.insert(
        CameraId::new("desk").unwrap(),
        CameraHealth {
            state: CameraState::Recording,
            ..Default::default()
        },
    );
    let topic = |sub: &str| format!("stationwatch/v1/{ST}/{sub}");
    publish(
        &broker.client(),
        &topic("health"),
        &serde_json::to_vec(&h).unwrap(),
        1,
        false,
    )
    .unwrap();
    eventually("the station's health", 20, || {
        let d = api.get(&format!("/api/stations/{ST}"))?;
        Ok((d.status == 200 && !d.body["health"].is_null()).then_some(()))
    });
    let jpeg = |tag: u8| [&[0xFF, 0xD8, 0xFF, 0xE0][..], &[tag; 64][..]].concat();
    for cam in ["ghost-1", "ghost-2", "desk"] {
        publish(
            &broker.client(),
            &topic(&format!("snapshot/{cam}")),
            &jpeg(1),
            1,
            false,
        )
        .unwrap();
    }
    let snaps = eventually("the desk snapshot", 20, || {
        let d = api.ok(&format!("/api/stations/{ST}"))?;
        let cams: Vec<String> = d["snapshots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["camera"].as_str().unwrap().to_owned())
            .collect();
        Ok(cams.contains(&"desk".to_owned()).then_some(cams))
    });
    assert_eq!(
        snaps,
        ["desk"],
        "snapshots of unreported cameras were stored"
    );

    // Prometheus: not for anonymous clients; for staff sessions and tokens.
    let anon = Api::anonymous(&ctl.base_url());
    assert_eq!(anon.get("/metrics").unwrap().status, 401);
    let token = api
        .post("/api/tokens", &json!({"name": "prometheus", "days": 30}))
        .unwrap()
        .body["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let resp = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent()
        .get(&format!("{}/metrics", ctl.base_url()))
        .header("authorization", &format!("Bearer {token}"))
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/plain; version=0.0.4")));
    let text = resp.into_body().read_to_string().unwrap();
    let value = |name: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(name) && l.as_bytes().get(name.len()) == Some(&b' '))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or_else(|| panic!("{name} missing in:\n{text}"))
    };
    assert_eq!(
        value("stationwatch_messages_received_total{kind=\"rejected\"}"),
        2.0
    );
    assert_eq!(
        value("stationwatch_messages_received_total{kind=\"snapshots\"}"),
        1.0
    );
    assert!(value("stationwatch_messages_received_total{kind=\"health\"}") >= 1.0);
    let states: f64 = ["online", "degraded", "offline", "unknown"]
        .iter()
        .map(|s| value(&format!("stationwatch_stations{{state=\"{s}\"}}")))
        .sum();
    assert_eq!(states, 1.0);
    for name in [
        "stationwatch_alerts_open",
        "stationwatch_write_backlog",
        "stationwatch_sse_clients",
        "stationwatch_login_failures_total",
        "stationwatch_db_writes_total",
        "stationwatch_dropped_total{kind=\"snapshot\"}",
    ] {
        value(name);
    }
    // Every sample line is `name{labels} value` and every metric has HELP and TYPE.
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        assert!(l.rsplit(' ').next().unwrap().parse::<f64>().is_ok(), "{l}");
    }
    assert_eq!(
        text.matches("# HELP ").count(),
        text.matches("# TYPE ").count()
    );
}

/// Issue 13, finding 7 (failing database): when the database goes away, the controller raises
/// an alarm (`database_failing_since` in the summary, for the dashboard banner, and
/// `stationwatch_db_failing 1` in `/metrics`) while ingest keeps the fleet current in memory
/// and an operator's existing session keeps working.
#[test]
fn a_failing_database_raises_the_alarm_and_the_fleet_stays_current() {
    use stationwatch_protocol::manifest::Timestamp;
    use stationwatch_protocol::mqtt::{CameraHealth, CameraState, Health};
    use stationwatch_protocol::CameraId;
    if !have_mosquitto()
        || !stationwatch_tests::require(
            postgres_bin_dir().is_some(),
            "PostgreSQL server not installed (run scripts/install-deps)",
        )
    {
        return;
    }
    let pg = Postgres::start().unwrap();
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.database_url = Some(pg.url());
    let ctl = ControllerProcess::start(dir.path(), &opts).unwrap();
    let api = ctl.admin().unwrap();
    const ST: &str = "DBF-0001";
    let report = |cameras: &[&str]| {
        let mut h = Health::new(Timestamp::now());
        for c in cameras {
            h.cameras.insert(
                CameraId::new(*c).unwrap(),
                CameraHealth {
                    state: CameraState::Recording,
                    ..Default::default()
                },
            );
        }
        publish(
            &broker.client(),
            &format!("stationwatch/v1/{ST}/health"),
            &serde_json::to_vec(&h).unwrap(),
            1,
            false,
        )
        .unwrap();
    };
    let cameras = |api: &Api| -> Result<Option<u64>> {
        let l = api.ok(&format!("/api/stations?q={ST}"))?;
        Ok(l["stations"]
            .as_array()
            .and_then(|a| a.first())
            .and_then(|r| r["cameras"].as_u64()))
    };
    report(&["desk"]);
    eventually("the first report", 20, || {
        Ok(cameras(&api)?.filter(|&n| n == 1))
    });
    assert!(api.ok("/api/summary").unwrap()["database_failing_since"].is_null());

    // The database goes away; writes fail.
    drop(pg);
    for i in 0..5 {
        publish(
            &broker.client(),
            &format!("stationwatch/v1/{ST}/events"),
            format!(
                r#"{{"v":1,"id":"ev-{i}","at":"{}","kind":"agent_stopping","reason":"x"}}"#,
                Timestamp::now()
            )
            .as_bytes(),
            1,
            false,
        )
        .unwrap();
    }
    let since = eventually("the database alarm", 30, || {
        let s = api.ok("/api/summary")?;
        Ok(s["database_failing_since"].as_i64())
    });
    assert!(since > 0);
    let metrics = api.get("/metrics").unwrap();
    assert_eq!(metrics.status, 200);
    let text = metrics.body.as_str().unwrap_or_default().to_owned();
    assert!(text.contains("\nstationwatch_db_failing 1\n"), "{text}");
    // Ingest keeps the fleet current, and the operator's session still works.
    report(&["desk", "box"]);
    eventually("a report during the outage", 20, || {
        Ok(cameras(&api)?.filter(|&n| n == 2))
    });
    // A new login works too (the password checked against the users kept in memory), and its
    // session serves the dashboard's requests; a wrong password is still refused.
    let fresh = ctl.admin().unwrap();
    let me = fresh.get("/api/me").unwrap();
    assert_eq!(me.status, 200, "{me:?}\n{}", ctl.child.log());
    assert_eq!(cameras(&fresh).unwrap(), Some(2));
    assert!(Api::login(&ctl.base_url(), ADMIN_USER, "not-the-password").is_err());
}

#[test]
fn bad_config_is_refused_naming_file_and_key() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let cfg = dir.path().join("controller.toml");
    std::fs::write(
        &cfg,
        "[http]\nlisten = \"everywhere\"\n[database]\nurl = \"mysql://x\"\n[mqtt]\ncolour = 1\n",
    )?;
    for sub in ["check", "run"] {
        let out = Command::new(controller_bin()?)
            .args([sub, "--config"])
            .arg(&cfg)
            .output()?;
        let err = String::from_utf8_lossy(&out.stderr);
        if out.status.success() {
            bail!("{sub} accepted a bad config: {err}");
        }
        for key in ["http.listen", "database.url", "mqtt.colour"] {
            assert!(
                err.contains(&format!("{}: {key}:", cfg.display())),
                "{sub}: {key} not named in:\n{err}"
            );
        }
    }
    Ok(())
}

/// Raw HTTP against the controller: (status, Set-Cookie header, body).
fn raw_http(
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Option<String>, String) {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .new_agent();
    let resp = match method {
        "GET" => {
            let mut req = agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call().unwrap()
        }
        _ => {
            let mut req = agent.post(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send_json(body.unwrap_or(json!({}))).unwrap()
        }
    };
    let status = resp.status().as_u16();
    let cookie = resp
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let text = resp.into_body().read_to_string().unwrap_or_default();
    (status, cookie, text)
}

/// The README's session and token promises, as a browser or a script sees them: the session
/// cookie is `HttpOnly; SameSite=Strict` (plus `Secure` when `cookie_secure`), a wrong password
/// gets no cookie, nothing is served without a session or token, an API token from
/// `POST /api/tokens` works as `Authorization: Bearer`, and a made-up token does not.
#[test]
fn session_cookie_attributes_and_api_tokens() {
    if !stationwatch_tests::require(
        have_mosquitto(),
        "mosquitto missing (run scripts/install-deps)",
    ) {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    for secure in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let mut ctl =
            ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
        if secure {
            // The same config with cookie_secure = true (the production setting).
            let port = ctl.addr.port();
            drop(ctl);
            let path = dir.path().join("controller.toml");
            let text = std::fs::read_to_string(&path).unwrap();
            assert!(text.contains("cookie_secure = false"));
            std::fs::write(
                &path,
                text.replace("cookie_secure = false", "cookie_secure = true"),
            )
            .unwrap();
            ctl = ControllerProcess::start_with_config(&path, port).unwrap();
        }
        let base = ctl.base_url();
        let login = format!("{base}/api/login");

        let (status, cookie, _) = raw_http(
            "POST",
            &login,
            &[],
            Some(json!({ "username": "admin", "password": "wrong-password" })),
        );
        assert_eq!(status, 401);
        assert!(cookie.is_none(), "a failed login set a cookie: {cookie:?}");

        let (status, cookie, _) = raw_http(
            "POST",
            &login,
            &[],
            Some(json!({
                "username": stationwatch_tests::controller_process::ADMIN_USER,
                "password": stationwatch_tests::controller_process::ADMIN_PASSWORD,
            })),
        );
        assert_eq!(status, 200);
        let cookie = cookie.expect("login sets the session cookie");
        eprintln!("cookie_secure = {secure}: Set-Cookie: {cookie}");
        let attrs: Vec<String> = cookie
            .split(';')
            .map(|a| a.trim().to_ascii_lowercase())
            .collect();
        assert!(attrs[0].starts_with("sw_session="), "{cookie}");
        for want in ["httponly", "samesite=strict", "path=/"] {
            assert!(attrs.iter().any(|a| a == want), "{want} missing: {cookie}");
        }
        assert!(attrs.iter().any(|a| a.starts_with("max-age=")), "{cookie}");
        assert_eq!(
            attrs.iter().any(|a| a == "secure"),
            secure,
            "Secure attribute with cookie_secure = {secure}: {cookie}"
        );

        // Nothing without a session or token; a made-up token is refused.
        let stations = format!("{base}/api/stations");
        assert_eq!(raw_http("GET", &stations, &[], None).0, 401);
        assert_eq!(
            raw_http(
                "GET",
                &stations,
                &[("authorization", "Bearer swt_madeup0000000000")],
                None
            )
            .0,
            401
        );

        // A token made with the session works on its own, without the cookie.
        let session = cookie.split(';').next().unwrap().to_owned();
        let (status, _, body) = raw_http(
            "POST",
            &format!("{base}/api/tokens"),
            &[("cookie", &session)],
            Some(json!({ "name": "ci script" })),
        );
        assert_eq!(status, 201, "{body}");
        let token = serde_json::from_str::<Value>(&body).unwrap()["token"]
            .as_str()
            .unwrap()
            .to_owned();
        let bearer = format!("Bearer {token}");
        let (status, _, body) = raw_http("GET", &stations, &[("authorization", &bearer)], None);
        assert_eq!(status, 200, "{body}");
        let (status, _, body) = raw_http(
            "GET",
            &format!("{base}/api/me"),
            &[("authorization", &bearer)],
            None,
        );
        assert_eq!(status, 200, "{body}");
        assert!(body.contains("admin"), "{body}");
    }
}
