//! Two network namespaces joined by a veth pair: the agent's side (`a`, 10.77.0.1) and the far
//! side (`r`, 10.77.0.2), for tests on a real, shaped link. The agent's egress (its uplink) is
//! shaped with `tc qdisc ... tbf`; the link can be cut on either side. Needs root: use
//! [`Link::available`] to skip otherwise. Names carry the pid and a tag, so concurrent test
//! processes never collide; dropping the [`Link`] deletes both namespaces (and with them the
//! veth pair), also when the test failed.

use std::process::Command;

use anyhow::{bail, Context, Result};

/// The agent's address, inside namespace `a`.
pub const AGENT_ADDR: &str = "10.77.0.1";
/// The far side's address (the live target), inside namespace `r`.
pub const FAR_ADDR: &str = "10.77.0.2";

pub struct Link {
    pub agent_ns: String,
    pub far_ns: String,
    agent_dev: String,
    far_dev: String,
}

fn ip(args: &[&str]) -> Result<()> {
    run("ip", args)
}

fn run(bin: &str, args: &[&str]) -> Result<()> {
    let out = Command::new(bin)
        .args(args)
        .output()
        .with_context(|| format!("running {bin}"))?;
    if !out.status.success() {
        bail!(
            "{bin} {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

impl Link {
    /// Why namespace tests cannot run here, if they cannot (not root, no `ip`/`tc`).
    pub fn unavailable() -> Option<String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Some("needs root for network namespaces (CI runs as root)".into());
        }
        for bin in ["ip", "tc"] {
            if !crate::have_binary(bin) && !crate::have_binary(&format!("/usr/sbin/{bin}")) {
                return Some(format!("{bin} (iproute2) is missing"));
            }
        }
        None
    }

    /// Creates the namespaces and the veth pair, addresses up.
    pub fn create(tag: &str) -> Result<Link> {
        let pid = std::process::id();
        let link = Link {
            agent_ns: format!("sw-{tag}-a-{pid}"),
            far_ns: format!("sw-{tag}-r-{pid}"),
            // Interface names have at most 15 characters.
            agent_dev: format!("swa{}", pid % 10_000_000),
            far_dev: format!("swr{}", pid % 10_000_000),
        };
        // The guard exists before anything is created: a failure below still cleans up.
        ip(&["netns", "add", &link.agent_ns])?;
        ip(&["netns", "add", &link.far_ns])?;
        ip(&[
            "link",
            "add",
            &link.agent_dev,
            "netns",
            &link.agent_ns,
            "type",
            "veth",
            "peer",
            "name",
            &link.far_dev,
            "netns",
            &link.far_ns,
        ])?;
        for (ns, dev, addr) in [
            (&link.agent_ns, &link.agent_dev, AGENT_ADDR),
            (&link.far_ns, &link.far_dev, FAR_ADDR),
        ] {
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", dev])?;
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(link)
    }

    /// `ip netns exec <agent ns>`: prefix a command to run it on the agent's side.
    pub fn agent_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.agent_ns.clone(),
        ]
    }

    pub fn far_prefix(&self) -> Vec<String> {
        vec![
            "ip".into(),
            "netns".into(),
            "exec".into(),
            self.far_ns.clone(),
        ]
    }

    /// Shapes the agent's uplink to `kbit` kbit/s with a token bucket (tbf): a small burst and
    /// a 300 ms queue, as a congested DSL or mobile uplink behaves.
    pub fn shape(&self, kbit: u32) -> Result<()> {
        let rate = format!("{kbit}kbit");
        run(
            "tc",
            &[
                "-n",
                &self.agent_ns,
                "qdisc",
                "replace",
                "dev",
                &self.agent_dev,
                "root",
                "tbf",
                "rate",
                &rate,
                "burst",
                "16kbit",
                "latency",
                "300ms",
            ],
        )
    }

    /// Removes the shaping: the full veth rate.
    pub fn unshape(&self) -> Result<()> {
        let _ = run(
            "tc",
            &[
                "-n",
                &self.agent_ns,
                "qdisc",
                "del",
                "dev",
                &self.agent_dev,
                "root",
            ],
        );
        Ok(())
    }

    /// Cuts the link on the agent's side (`ip link set ... down`): sends fail at once.
    pub fn agent_side(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.agent_ns, "link", "set", &self.agent_dev, state])
    }

    /// Cuts the link on the far side: the agent's packets vanish without an error (a
    /// black-holed link).
    pub fn far_side(&self, up: bool) -> Result<()> {
        let state = if up { "up" } else { "down" };
        ip(&["-n", &self.far_ns, "link", "set", &self.far_dev, state])
    }
}

/// A TCP relay from the far side (`FAR_ADDR:port`, inside the far namespace) to a port on the
/// host's loopback: puts a service the test runs on the host (broker, controller) on the far
/// end of the shaped link. Stops accepting when dropped.
pub struct Relay {
    pub port: u16,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Link {
    /// Relays `FAR_ADDR:<returned port>` (far namespace) to `127.0.0.1:local_port` (host).
    ///
    /// The listener is created on a thread that entered the far namespace (`setns`); upstream
    /// connections are made by a thread that stayed on the host. A socket keeps the namespace it
    /// was created in, so the copying threads need none.
    pub fn relay(&self, local_port: u16) -> Result<Relay> {
        use std::net::{TcpListener, TcpStream};
        use std::os::fd::AsRawFd;
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{mpsc, Arc};

        let stop = Arc::new(AtomicBool::new(false));
        let (port_tx, port_rx) = mpsc::channel::<Result<u16, String>>();
        let (conn_tx, conn_rx) = mpsc::channel::<TcpStream>();
        let ns_path = format!("/var/run/netns/{}", self.far_ns);
        let stop_accept = stop.clone();
        std::thread::spawn(move || {
            let entered = std::fs::File::open(&ns_path)
                .map_err(|e| e.to_string())
                .and_then(|f| {
                    // SAFETY: setns on a valid namespace fd; it affects only this thread.
                    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
                    if r == 0 {
                        Ok(())
                    } else {
                        Err(std::io::Error::last_os_error().to_string())
                    }
                });
            let listener =
                entered.and_then(|()| TcpListener::bind((FAR_ADDR, 0)).map_err(|e| e.to_string()));
            let listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    let _ = port_tx.send(Err(e));
                    return;
                }
            };
            let _ = listener.set_nonblocking(true);
            let _ = port_tx.send(Ok(listener.local_addr().map(|a| a.port()).unwrap_or(0)));
            while !stop_accept.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((s, _)) => {
                        let _ = s.set_nonblocking(false);
                        if conn_tx.send(s).is_err() {
                            return;
                        }
                    }
                    Err(_) => std::thread::sleep(std::time::Duration::from_millis(20)),
                }
            }
        });
        std::thread::spawn(move || {
            for down in conn_rx {
                let Ok(up) = TcpStream::connect(("127.0.0.1", local_port)) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (down.try_clone(), up.try_clone()),
                    (up.try_clone(), down.try_clone()),
                ]
                .into_iter()
                .filter_map(|(a, b)| Some((a.ok()?, b.ok()?)))
                {
                    std::thread::spawn(move || {
                        let _ = std::io::copy(&mut from, &mut to);
                        let _ = to.shutdown(std::net::Shutdown::Write);
                    });
                }
            }
        });
        let port = port_rx
            .recv_timeout(std::time::Duration::from_secs(5))
            .context("relay thread did not start")?
            .map_err(anyhow::Error::msg)
            .context("relay listener in the far namespace")?;
        Ok(Relay { port, stop })
    }
}

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the pair.
        let _ = ip(&["netns", "del", &self.agent_ns]);
        let _ = ip(&["netns", "del", &self.far_ns]);
    }
}
