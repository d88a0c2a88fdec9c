//! systemd integration without systemd: the agent talks the sd_notify protocol to whatever
//! socket NOTIFY_SOCKET names, so a test can be the service manager. READY comes once the
//! camera records, watchdog pings follow at half WatchdogSec, STOPPING on SIGTERM.

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

use stationwatch_tests::agent_process::{agent_bin, config, AgentProcess};
use stationwatch_tests::have_gst_element;
use stationwatch_tests::notify::recv_all;

#[test]
fn ready_watchdog_and_stopping_reach_the_service_manager() {
    if !stationwatch_tests::require(
        have_gst_element("x264enc"),
        "x264enc missing (run scripts/install-deps)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let cfg = config(
        &dir.path().join("rec"),
        60,
        &[("cam", "source = \"test\"\nwidth = 160\nheight = 120")],
    );
    agent_bin().unwrap(); // build first: the clock below is the agent's, not cargo's
    let started = Instant::now();
    let mut agent = AgentProcess::start_with_env(
        dir.path(),
        &cfg,
        &[
            ("NOTIFY_SOCKET", sock_path.to_str().unwrap()),
            // WatchdogSec=2: pings expected every second.
            ("WATCHDOG_USEC", "2000000"),
        ],
    )
    .unwrap();
    let mut msgs = Vec::new();
    recv_all(&sock, started + Duration::from_secs(5), &mut msgs);
    let ready = msgs
        .iter()
        .find(|(_, m)| m.lines().any(|l| l == "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1 in {msgs:?}\nlog:\n{}", agent.log()));
    assert!(ready.1.contains("STATUS=cam: recording"), "{}", ready.1);
    let pings: Vec<Instant> = msgs
        .iter()
        .filter(|(_, m)| m.lines().any(|l| l == "WATCHDOG=1"))
        .map(|(t, _)| *t)
        .collect();
    assert!(
        pings.len() >= 3,
        "{} watchdog pings in 5 s: {msgs:?}",
        pings.len()
    );
    for w in pings.windows(2) {
        assert!(
            w[1] - w[0] < Duration::from_millis(1500),
            "pings {:?} apart",
            w[1] - w[0]
        );
    }
    assert!(agent.log().contains("agent ready"));

    let t = Instant::now();
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success());
    let mut tail = Vec::new();
    recv_all(&sock, t + Duration::from_millis(300), &mut tail);
    assert!(
        tail.iter().any(|(_, m)| m.contains("STOPPING=1")),
        "no STOPPING=1 after SIGTERM: {tail:?}"
    );
}
