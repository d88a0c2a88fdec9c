//! The controller under a database that cannot keep up: with its write queue full, ingest
//! drops health *history* points (counted as `health_writes_dropped` in `/api/metrics`) instead
//! of stalling MQTT, the fleet still shows the latest report, and events are not lost — not
//! even when more of them wait than the broker's inflight window, and not when the controller
//! is killed (SIGKILL) before it could store them: they are acknowledged to the broker only
//! after the commit, so the broker delivers them again to the restarted replica.
//!
//! The database is stalled for real: `sqlite3` holds an exclusive lock on the controller's
//! SQLite file (readers go on, WAL), so every write batch waits; `[database] write_queue_bytes
//! = 16384` makes the queue fill after a few dozen reports instead of after 64 MiB.

use std::io::{BufRead, BufReader, Write as _};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use stationwatch_tests::controller_process::{Api, ControllerProcess, ADMIN_PASSWORD, ADMIN_USER};
use stationwatch_tests::mosquitto::{have_mosquitto, publish, Broker, BrokerOpts};
use stationwatch_tests::{free_port, have_binary};

const STATION: &str = "LOAD-0001";
const FLOOD: u64 = 2000;

fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "{what}: not within {secs} s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Report `n`, taken `n` ms after a fixed moment: every report has its own `at` (the history
/// keeps one point per station and time).
fn health(n: u64) -> String {
    static BASE: std::sync::OnceLock<chrono::DateTime<chrono::Utc>> = std::sync::OnceLock::new();
    let base = BASE.get_or_init(|| chrono::Utc::now() - chrono::Duration::seconds(10));
    let at = (*base + chrono::Duration::milliseconds(n as i64)).format("%Y-%m-%dT%H:%M:%S%.3fZ");
    json!({
        "v": 1, "at": at.to_string(), "interval_s": 15,
        "agent": {"version": "0.1.0", "uptime_s": n},
        "clock": {"synced": true},
        "system": {"load_1m": 0.4},
    })
    .to_string()
}

fn event(id: &str) -> String {
    let at = chrono::Utc::now().format("%Y-%m-%dT%H:%M:%S%.3fZ");
    json!({"v": 1, "id": id, "at": at.to_string(), "kind": "agent_stopping", "reason": "test"})
        .to_string()
}

fn detail(api: &Api) -> Value {
    api.ok(&format!("/api/stations/{STATION}")).unwrap()
}

#[test]
fn full_write_queue_drops_health_history_not_the_fleet_or_events_even_across_a_kill() {
    if !stationwatch_tests::require(
        have_mosquitto() && have_binary("sqlite3"),
        "mosquitto or sqlite3 missing (run scripts/install-deps)",
    ) {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("controller.db");
    let pw = dir.path().join("admin-password");
    std::fs::write(&pw, ADMIN_PASSWORD).unwrap();
    let port = free_port();
    let config = dir.path().join("controller.toml");
    std::fs::write(
        &config,
        format!(
            "[http]\nlisten = \"127.0.0.1:{port}\"\ncookie_secure = false\n\
             [database]\nurl = \"sqlite://{}\"\nwrite_queue_bytes = 16384\n\
             [mqtt]\nurl = \"mqtt://127.0.0.1:{}\"\nclient_id = \"controller-test-{port}\"\n\
             [auth]\nbootstrap_admin = \"{ADMIN_USER}\"\nbootstrap_password_file = \"{}\"\n",
            db.display(),
            broker.port(),
            pw.display()
        ),
    )
    .unwrap();
    let ctl = ControllerProcess::start_with_config(&config, port).unwrap();
    let api = ctl.admin().unwrap();
    let client = broker.client();
    let topic = |t: &str| format!("stationwatch/v1/{STATION}/{t}");
    // The controller may not have subscribed yet when the first report goes out (the broker
    // keeps nothing for a subscriber it has not seen): report again until the station shows.
    eventually("station known", 20, || {
        publish(&client, &topic("health"), health(0).as_bytes(), 1, false).ok()?;
        std::thread::sleep(Duration::from_millis(300));
        let d = api.ok(&format!("/api/stations/{STATION}")).ok()?;
        (d["health"]["agent"]["uptime_s"] == 0).then_some(())
    });
    let before = api.ok("/api/metrics").unwrap();
    assert_eq!(before["health_writes_dropped"], 0, "{before}");

    // Stall the database: an exclusive lock held by another process.
    let lock = DbLock::take(&db);

    // A flood of reports in one connection, QoS 0 as agents send health.
    publish_lines(&client, &topic("health"), 0, (1..=FLOOD).map(health));
    // The last report, on its own, after the flood.
    publish(
        &client,
        &topic("health"),
        health(FLOOD + 1).as_bytes(),
        0,
        false,
    )
    .unwrap();

    // With the database still locked: drops counted, the fleet shows the latest report.
    let m = eventually("health reports dropped", 20, || {
        let m = api.ok("/api/metrics").ok()?;
        (m["health_writes_dropped"].as_u64() > Some(0)).then_some(m)
    });
    eventually(
        "latest report in the fleet while the database is stalled",
        20,
        || (detail(&api)["health"]["agent"]["uptime_s"] == FLOOD + 1).then_some(()),
    );
    eprintln!("while stalled: {m}");

    // Events must wait for room, never be dropped: sent while the database is still locked.
    let ids: Vec<String> = (0..3).map(|i| format!("overload-{i}")).collect();
    for id in &ids {
        publish(&client, &topic("events"), event(id).as_bytes(), 1, false).unwrap();
    }
    std::thread::sleep(Duration::from_secs(1));
    // The database returns.
    lock.release();

    let events = eventually("every event stored", 40, || {
        let ev = api
            .ok(&format!("/api/stations/{STATION}/events?limit=1000"))
            .ok()?;
        let got: Vec<String> = ev["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .collect();
        ids.iter().all(|id| got.contains(id)).then_some(got)
    });
    assert_eq!(
        events.iter().filter(|e| e.starts_with("overload-")).count(),
        3,
        "{events:?}"
    );
    // What was not dropped reaches the history (the batch in flight is retried, not lost);
    // what was dropped does not.
    let (m, stored) = eventually("history written", 40, || {
        let m = api.ok("/api/metrics").ok()?;
        let points = api
            .ok(&format!("/api/stations/{STATION}/health?limit=10000"))
            .ok()?;
        let stored = points["points"].as_array()?.len() as u64;
        let dropped = m["health_writes_dropped"].as_u64()?;
        let received = m["messages"]["health"].as_u64()?;
        (stored + dropped == received).then_some((m, stored))
    });
    eprintln!("after: {stored} history points; {m}");
    let dropped = m["health_writes_dropped"].as_u64().unwrap();
    let received = m["messages"]["health"].as_u64().unwrap();
    assert_eq!(
        received,
        FLOOD + 2,
        "every report reached the controller: {m}"
    );
    assert!(dropped >= 1 && dropped < received, "{m}");
    assert_eq!(detail(&api)["health"]["agent"]["uptime_s"], FLOOD + 1);

    // Stalled again: more events than the broker lets the controller hold unacknowledged
    // (Mosquitto's inflight window, 20), then a health report. The report must reach the fleet
    // while the events wait (the old queue stalled the MQTT loop here).
    let lock = DbLock::take(&db);
    let later: Vec<String> = (0..EVENTS).map(|i| format!("stalled-{i}")).collect();
    publish_lines(
        &client,
        &topic("events"),
        1,
        later.iter().map(|id| event(id)),
    );
    publish(
        &client,
        &topic("health"),
        health(FLOOD + 2).as_bytes(),
        0,
        false,
    )
    .unwrap();
    eventually(
        "a report after the events visible while the database is stalled",
        20,
        || (detail(&api)["health"]["agent"]["uptime_s"] == FLOOD + 2).then_some(()),
    );
    // Killed before any of them could be stored, then the database returns, and so does the
    // controller (same client id: it resumes its session at the broker).
    let mut ctl = ctl;
    ctl.child.kill().unwrap();
    lock.release();
    let ctl = ControllerProcess::start_with_config(&config, port).unwrap();
    let api = ctl.admin().unwrap();
    let stored = eventually("every event sent during the stall stored", 40, || {
        let ev = api
            .ok(&format!("/api/stations/{STATION}/events?limit=1000"))
            .ok()?;
        let got: Vec<String> = ev["events"]
            .as_array()?
            .iter()
            .filter_map(|e| e["event_id"].as_str().map(str::to_owned))
            .filter(|id| id.starts_with("stalled-"))
            .collect();
        (got.len() >= later.len()).then_some(got)
    });
    let mut sorted = stored.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(sorted.len(), stored.len(), "stored twice: {stored:?}");
    let mut expected = later.clone();
    expected.sort();
    assert_eq!(sorted, expected);
}

/// Events sent while the database is stalled, more than Mosquitto's default inflight window.
const EVENTS: usize = 60;

/// An exclusive lock on the SQLite file held by `sqlite3` (readers go on, writers wait).
struct DbLock {
    child: std::process::Child,
    stdin: std::process::ChildStdin,
}

impl DbLock {
    fn take(db: &std::path::Path) -> DbLock {
        let mut child = Command::new("sqlite3")
            .arg(db)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        writeln!(stdin, "BEGIN EXCLUSIVE;\nSELECT 'locked';").unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line.trim(), "locked");
        DbLock { child, stdin }
    }

    fn release(mut self) {
        writeln!(self.stdin, "COMMIT;\n.quit").unwrap();
        drop(self.stdin);
        assert!(self.child.wait().unwrap().success());
    }
}

/// Publishes each line as one message over one connection (`mosquitto_pub -l`).
fn publish_lines(
    client: &stationwatch_tests::mosquitto::ClientArgs,
    topic: &str,
    qos: u8,
    lines: impl Iterator<Item = String>,
) {
    let mut p = Command::new("mosquitto_pub")
        .args(client.args())
        .args(["-t", topic, "-q", &qos.to_string(), "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = p.stdin.take().unwrap();
        for l in lines {
            writeln!(stdin, "{l}").unwrap();
        }
    }
    assert!(p.wait().unwrap().success());
}
