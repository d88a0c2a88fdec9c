//! The systemd watchdog is pinged only while every camera supervisor is alive: when one hangs
//! (its heartbeat stops), the pings stop, so systemd (`WatchdogSec`) restarts the agent, while
//! the other camera goes on recording. The hang is injected with the agent's test-only
//! `STATIONWATCH_FAULT=hang-supervisor:<camera>` (see `agent/src/camera/mod.rs`); the test plays
//! the service manager on a unix datagram socket, as `tests/tests/service.rs` does.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use stationwatch_tests::agent_process::{agent_bin, config, segments, AgentProcess};
use stationwatch_tests::have_gst_element;
use stationwatch_tests::notify::recv_all;

fn is_ping(m: &str) -> bool {
    m.lines().any(|l| l == "WATCHDOG=1")
}

#[test]
fn watchdog_pings_stop_when_a_camera_supervisor_hangs() {
    if !stationwatch_tests::require(
        have_gst_element("x264enc"),
        "x264enc missing (run scripts/install-deps)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let storage = dir.path().join("rec");
    let cam = "source = \"test\"\nwidth = 160\nheight = 120\nfps = 10\nbitrate_kbps = 100";
    let cfg = config(&storage, 2, &[("good", cam), ("stuck", cam)]);
    agent_bin().unwrap();
    let started = Instant::now();
    let mut agent = AgentProcess::start_with_env(
        dir.path(),
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // WatchdogSec=2: pings every second while healthy.
            ("WATCHDOG_USEC", "2000000"),
            ("STATIONWATCH_FAULT", "hang-supervisor:stuck"),
        ],
    )
    .unwrap();
    let mut msgs = Vec::new();
    recv_all(&sock, started + Duration::from_secs(6), &mut msgs);
    assert!(
        msgs.iter().any(|(_, m)| m.lines().any(|l| l == "READY=1")),
        "no READY=1 in {msgs:?}\nlog:\n{}",
        agent.log()
    );
    assert!(
        agent.log().contains("supervisor hangs until shutdown"),
        "fault not injected:\n{}",
        agent.log()
    );
    // The supervisor hung once recording; its heartbeat is at most 10 s old for a while, so
    // pings go on first (the agent's heartbeat limit is 10 s).
    assert!(
        msgs.iter().filter(|(_, m)| is_ping(m)).count() >= 2,
        "no pings before the hang counts as one: {msgs:?}"
    );

    // From 10 s after the hang the pings must stop, and not come back.
    agent
        .wait_log(
            "supervisor unhealthy; withholding watchdog ping",
            Duration::from_secs(20),
        )
        .unwrap();
    // Pings queued on the socket since the first read were sent before that warning: drain
    // them without waiting, then listen.
    sock.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 4096];
    while sock.recv(&mut buf).is_ok() {}
    sock.set_nonblocking(false).unwrap();
    let silent_from = Instant::now();
    let mut later = Vec::new();
    recv_all(&sock, silent_from + Duration::from_secs(8), &mut later);
    let pings: Vec<_> = later.iter().filter(|(_, m)| is_ping(m)).collect();
    assert!(
        pings.is_empty(),
        "watchdog pinged while a supervisor hangs: {pings:?}\nlog:\n{}",
        agent.log()
    );
    assert!(
        agent
            .log()
            .contains("supervisor of camera stuck silent for"),
        "{}",
        agent.log()
    );

    // The other camera records on: a segment started after the pings stopped.
    let since = chrono::Utc::now() - chrono::Duration::seconds(8);
    let good = segments(&storage, "good").unwrap();
    assert!(
        good.iter().any(|s| s.start > since),
        "camera good stopped recording: {good:?}"
    );
    let (status, _) = agent.terminate(Duration::from_secs(15)).unwrap();
    assert!(status.success(), "{}", agent.log());
}
