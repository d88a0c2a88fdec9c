//! Playing systemd's service manager in a test: the agent speaks the sd_notify protocol to the
//! unix datagram socket NOTIFY_SOCKET names (READY, WATCHDOG pings, STOPPING).

use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Receives every datagram until `until`, each with the time it arrived.
pub fn recv_all(sock: &UnixDatagram, until: Instant, out: &mut Vec<(Instant, String)>) {
    let mut buf = [0u8; 4096];
    while Instant::now() < until {
        sock.set_read_timeout(Some(
            until
                .saturating_duration_since(Instant::now())
                .max(Duration::from_millis(10)),
        ))
        .unwrap();
        match sock.recv(&mut buf) {
            Ok(n) => out.push((
                Instant::now(),
                String::from_utf8_lossy(&buf[..n]).into_owned(),
            )),
            Err(_) => break,
        }
    }
}
