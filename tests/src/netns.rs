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

impl Drop for Link {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the veth, and with it the pair.
        let _ = ip(&["netns", "del", &self.agent_ns]);
        let _ = ip(&["netns", "del", &self.far_ns]);
    }
}
