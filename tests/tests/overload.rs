//! The controller under a database that cannot keep up: with its write queue full, ingest
//! drops health *history* points (counted as `health_writes_dropped` in `/api/metrics`) instead
//! of stalling MQTT, the fleet still shows the latest report, and events are not lost.
//!
//! The database is stalled for real: `sqlite3` holds an exclusive lock on the controller's
//! SQLite file (readers go on, WAL), so every write batch waits; `[database] write_queue = 10`
//! makes the queue fill after a dozen reports instead of 100,000.

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
fn full_write_queue_drops_health_history_not_the_fleet_or_events() {
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
             [database]\nurl = \"sqlite://{}\"\nwrite_queue = 10\n\
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
    publish(&client, &topic("health"), health(0).as_bytes(), 1, false).unwrap();
    eventually("station known", 10, || {
        (detail(&api)["health"]["agent"]["uptime_s"] == 0).then_some(())
    });
    let before = api.ok("/api/metrics").unwrap();
    assert_eq!(before["health_writes_dropped"], 0, "{before}");

    // Stall the database: an exclusive lock held by another process.
    let mut lock = Command::new("sqlite3")
        .arg(&db)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lock_in = lock.stdin.take().unwrap();
    writeln!(lock_in, "BEGIN EXCLUSIVE;\nSELECT 'locked';").unwrap();
    let mut line = String::new();
    BufReader::new(lock.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert_eq!(line.trim(), "locked");

    // A flood of reports in one connection (`mosquitto_pub -l`: one message per line).
    let mut flood = Command::new("mosquitto_pub")
        .args(client.args())
        .args(["-t", &topic("health"), "-q", "1", "-l"])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    {
        let mut stdin = flood.stdin.take().unwrap();
        for n in 1..=FLOOD {
            writeln!(stdin, "{}", health(n)).unwrap();
        }
    }
    assert!(flood.wait().unwrap().success());
    // The last report, on its own, after the flood.
    publish(
        &client,
        &topic("health"),
        health(FLOOD + 1).as_bytes(),
        1,
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
    writeln!(lock_in, "COMMIT;\n.quit").unwrap();
    drop(lock_in);
    assert!(lock.wait().unwrap().success());

    let events = eventually("every event stored", 40, || {
        let ev = api
            .ok(&format!("/api/stations/{STATION}/events?limit=100"))
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
}
