//! The controller's HTTP side under a siege (`benches/http-siege.sh` runs it; ignored in the
//! test suite). Prints figures, asserts only that the real user was served:
//!
//! * a real operator's requests (`/api/stations`, `/api/summary`, alternating) with nothing
//!   else open: latency p50 / p99 / max;
//! * the same while 1,000 idle sockets (connected, never sending a byte) and 100 server-sent
//!   event streams of 13 other users (8 each, the per-user cap) are open, the streams read as a
//!   browser would.
//!
//! Env: `BENCH_REQUESTS` (default 300), `BENCH_IDLE` (default 1000), `BENCH_SSE` (default 100),
//! `SMOKE=1` (20 requests, 50 idle sockets, 10 streams).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::json;
use stationwatch_tests::controller_process::{Api, ControllerOpts, ControllerProcess};
use stationwatch_tests::mosquitto::{have_mosquitto, Broker, BrokerOpts};

fn env_usize(k: &str, default: usize) -> usize {
    std::env::var(k)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` requests of the real user, one after another: sorted latencies in ms, and failures.
fn serve(api: &Api, n: usize) -> (Vec<f64>, usize) {
    let mut ms = Vec::with_capacity(n);
    let mut failed = 0;
    for i in 0..n {
        let path = if i % 2 == 0 {
            "/api/stations"
        } else {
            "/api/summary"
        };
        let t = Instant::now();
        match api.get(path) {
            Ok(r) if r.status == 200 => ms.push(t.elapsed().as_secs_f64() * 1000.0),
            _ => failed += 1,
        }
    }
    ms.sort_by(f64::total_cmp);
    (ms, failed)
}

fn pct(v: &[f64], p: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    v[((v.len() as f64 - 1.0) * p).round() as usize]
}

fn row(what: &str, (ms, failed): &(Vec<f64>, usize)) {
    println!(
        "{what:<44} {:>6} {:>8.1} {:>8.1} {:>8.1} {:>7}",
        ms.len(),
        pct(ms, 0.5),
        pct(ms, 0.99),
        ms.last().copied().unwrap_or(f64::NAN),
        failed
    );
}

/// An event stream with `cookie`, read in a thread until the server closes it.
fn stream(addr: std::net::SocketAddr, cookie: &str) -> Option<std::thread::JoinHandle<()>> {
    let mut s = TcpStream::connect(addr).ok()?;
    write!(
        s,
        "GET /api/stream HTTP/1.1\r\nHost: x\r\nCookie: {cookie}\r\nAccept: text/event-stream\r\n\r\n"
    )
    .ok()?;
    let mut r = BufReader::new(s);
    let mut status = String::new();
    r.read_line(&mut status).ok()?;
    if !status.contains(" 200 ") {
        eprintln!("stream refused: {status}");
        return None;
    }
    Some(std::thread::spawn(move || {
        let mut line = String::new();
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            line.clear();
        }
    }))
}

#[test]
#[ignore = "benchmark: run by benches/http-siege.sh"]
fn http_siege_benchmark() {
    assert!(have_mosquitto(), "mosquitto missing");
    let smoke = std::env::var("SMOKE").is_ok_and(|v| v == "1");
    let (n, idle_n, sse_n) = if smoke {
        (20, 50, 10)
    } else {
        (
            env_usize("BENCH_REQUESTS", 300),
            env_usize("BENCH_IDLE", 1000),
            env_usize("BENCH_SSE", 100),
        )
    };
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
    let admin = ctl.admin().unwrap();
    let base = ctl.base_url();

    // The other users of the streams: 8 streams each (the per-user cap).
    let users = sse_n.div_ceil(8);
    let mut sessions = Vec::new();
    for i in 0..users {
        let name = format!("viewer{i}");
        let pw = format!("viewer-password-{i}");
        let r = admin
            .post(
                "/api/users",
                &json!({"username": name, "password": pw, "role": "operator"}),
            )
            .unwrap();
        assert_eq!(r.status, 201, "{}", r.body);
        let api = Api::login(&base, &name, &pw).unwrap();
        sessions.push(api.cookie().unwrap().to_owned());
    }

    println!(
        "== HTTP siege (controller {}, {n} requests per phase)",
        if smoke { "debug" } else { "release" }
    );
    println!(
        "{:<44} {:>6} {:>8} {:>8} {:>8} {:>7}",
        "phase", "served", "p50_ms", "p99_ms", "max_ms", "failed"
    );
    let alone = serve(&admin, n);
    row("nothing else open", &alone);

    let t = Instant::now();
    let idle: Vec<TcpStream> = (0..idle_n)
        .filter_map(|_| TcpStream::connect(ctl.addr).ok())
        .collect();
    let streams: Vec<_> = (0..sse_n)
        .filter_map(|i| stream(ctl.addr, &sessions[i / 8]))
        .collect();
    println!(
        "opened {} idle sockets and {} event streams in {:.1} s",
        idle.len(),
        streams.len(),
        t.elapsed().as_secs_f64()
    );
    let besieged = serve(&admin, n);
    row(
        &format!(
            "{} idle sockets + {} SSE streams",
            idle.len(),
            streams.len()
        ),
        &besieged,
    );
    // Idle sockets are closed by the header timeout; the real user keeps being served.
    std::thread::sleep(Duration::from_secs(if smoke { 1 } else { 12 }));
    let after = serve(&admin, n);
    row("after the header timeout (idle ones cut)", &after);
    assert!(
        besieged.1 == 0 && !besieged.0.is_empty(),
        "the real user was not served"
    );
    drop(idle);
    drop(ctl);
    for s in streams {
        let _ = s.join();
    }
}
