//! The HTTP server loop: axum's router behind hyper with the limits `axum::serve` does not
//! have — a header-read timeout (an idle or slow connection is closed), a cap on open
//! connections below the process's file descriptor limit (raised to its hard limit at start),
//! and, in `mod.rs`, a timeout on every request but the event stream.
//!
//! Without them ~1,100 idle sockets used up the 1,024 descriptors of a default process: the
//! server could no longer accept anything, not even the real operator's request.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ConnectInfo;
use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, info, warn};

/// Descriptors kept for everything else (database pool, broker, files, logs).
const RESERVED_FDS: u64 = 128;

/// Raises the soft limit on open files to the hard limit; returns the limit now in force.
pub fn raise_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit only read and write the struct we pass.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 1024;
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
                lim = raised;
            }
        }
    }
    lim.rlim_cur
}

/// The connection cap: the configured one, but never more than the descriptors left after
/// [`RESERVED_FDS`].
pub fn connection_cap(configured: usize, fd_limit: u64) -> usize {
    let room = fd_limit.saturating_sub(RESERVED_FDS).max(16);
    configured.min(usize::try_from(room).unwrap_or(usize::MAX))
}

/// Open connections (for `/metrics`).
#[derive(Clone)]
pub struct Connections {
    slots: Arc<Semaphore>,
    cap: usize,
}

impl Connections {
    pub fn new(cap: usize) -> Self {
        Connections {
            slots: Arc::new(Semaphore::new(cap)),
            cap,
        }
    }

    pub fn open(&self) -> usize {
        self.cap.saturating_sub(self.slots.available_permits())
    }

    pub fn cap(&self) -> usize {
        self.cap
    }
}

/// Serves `app` on `listener` until `shutdown`: at most `conns.cap()` connections at once
/// (further ones wait in the kernel's backlog), each closed when a request's headers do not
/// arrive within `header_timeout` (also between keep-alive requests).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    conns: Connections,
    header_timeout: Duration,
    shutdown: CancellationToken,
) {
    let tracker = TaskTracker::new();
    let mut full_logged = false;
    loop {
        if conns.slots.available_permits() == 0 && !full_logged {
            warn!(
                cap = conns.cap,
                "connection cap reached; new connections wait"
            );
            full_logged = true;
        }
        let permit = tokio::select! {
            _ = shutdown.cancelled() => break,
            p = conns.slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and the like: back off instead of spinning.
                    warn!(error = %e, "cannot accept a connection");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        full_logged = false;
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let stop = shutdown.clone();
        tracker.spawn(async move {
            let _permit = permit;
            let svc = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(ConnectInfo::<SocketAddr>(peer));
                let mut app = app.clone();
                async move {
                    tower_service::Service::call(&mut app, req.map(axum::body::Body::new)).await
                }
            });
            let mut builder = hyper::server::conn::http1::Builder::new();
            builder
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .keep_alive(true);
            let conn = builder.serve_connection(TokioIo::new(stream), svc);
            tokio::pin!(conn);
            let result = tokio::select! {
                r = conn.as_mut() => r,
                _ = stop.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    conn.await
                }
            };
            if let Err(e) = result {
                debug!(%peer, error = %e, "connection ended");
            }
        });
    }
    tracker.close();
    if tokio::time::timeout(Duration::from_secs(2), tracker.wait())
        .await
        .is_err()
    {
        info!(
            open = tracker.len(),
            "HTTP connections still open at stop (event streams) are cut"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_leaves_descriptors_for_the_rest() {
        assert_eq!(connection_cap(4096, 1024), 896);
        assert_eq!(connection_cap(500, 20_000), 500);
        assert_eq!(connection_cap(500, 10), 16);
    }
}
