//! A real SRT receiver: Debian's `srt-live-transmit` listening for the agent's live stream and
//! writing what it receives (MPEG-TS) to a file, so a test checks with ffprobe that the stream
//! decodes. It can run inside a network namespace, be killed (a target dying mid-stream),
//! frozen (SIGSTOP) or made to stop reading (a consumer that never drains: the send buffer
//! fills).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// Whether `srt-live-transmit` is installed (Debian: srt-tools).
pub fn have_srt_live_transmit() -> bool {
    crate::have_binary("srt-live-transmit")
}

pub struct SrtReceiver {
    child: Option<Child>,
    pub out: PathBuf,
    prefix: Vec<String>,
    port: u16,
    stalled: bool,
}

impl SrtReceiver {
    /// Listens on `port` (all addresses) behind `prefix` (e.g. `ip netns exec NS`), appending
    /// what it receives to `out`.
    pub fn start(prefix: &[String], port: u16, out: &Path) -> Result<SrtReceiver> {
        let mut r = SrtReceiver {
            child: None,
            out: out.to_owned(),
            prefix: prefix.to_vec(),
            port,
            stalled: false,
        };
        r.spawn(false)?;
        Ok(r)
    }

    /// Like [`SrtReceiver::start`], but its output is a pipe that nobody reads: after a few
    /// kilobytes the receiver stops reading from SRT, its buffer fills, and the sender's send
    /// buffer fills behind it.
    pub fn start_stalled(prefix: &[String], port: u16, out: &Path) -> Result<SrtReceiver> {
        let mut r = SrtReceiver {
            child: None,
            out: out.to_owned(),
            prefix: prefix.to_vec(),
            port,
            stalled: true,
        };
        r.spawn(true)?;
        Ok(r)
    }

    fn spawn(&mut self, stalled: bool) -> Result<()> {
        let (bin, pre) = match self.prefix.split_first() {
            Some((b, rest)) => (b.clone(), rest.to_vec()),
            None => ("srt-live-transmit".to_string(), Vec::new()),
        };
        let mut cmd = Command::new(&bin);
        cmd.args(&pre);
        if !self.prefix.is_empty() {
            cmd.arg("srt-live-transmit");
        }
        cmd.args([
            "-q",
            &format!("srt://:{}?mode=listener", self.port),
            "file://con",
        ])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
        if stalled {
            cmd.stdout(Stdio::piped());
        } else {
            let f = File::options()
                .create(true)
                .append(true)
                .open(&self.out)
                .with_context(|| format!("opening {}", self.out.display()))?;
            cmd.stdout(f);
        }
        self.child = Some(cmd.spawn().context("spawning srt-live-transmit")?);
        // Give it a moment to bind.
        std::thread::sleep(Duration::from_millis(300));
        Ok(())
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Bytes received so far.
    pub fn bytes(&self) -> u64 {
        std::fs::metadata(&self.out).map(|m| m.len()).unwrap_or(0)
    }

    /// Waits until the output grows by `more` bytes; true if it did within `timeout`.
    pub fn wait_growth(&self, more: u64, timeout: Duration) -> bool {
        let start = self.bytes();
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.bytes() >= start + more {
                return true;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        false
    }

    /// SIGKILL: the target dies mid-stream.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port and file (after [`SrtReceiver::kill`]).
    pub fn restart(&mut self) -> Result<()> {
        self.kill();
        let stalled = self.stalled;
        self.spawn(stalled)
    }
}

impl Drop for SrtReceiver {
    fn drop(&mut self) {
        self.kill();
    }
}
