//! The real `station-agent` binary as a child process, and what a test reads of its recordings.
//!
//! [`agent_bin`] builds the agent once per test process (`cargo build -p station-agent`), so the
//! end-to-end tests always run the current code even though Cargo does not build another
//! package's binaries for a test.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use chrono::{DateTime, NaiveDateTime, Utc};

use crate::process::{cargo_bin, LoggedChild};

/// Path of the `station-agent` binary of this workspace, built on first use.
pub fn agent_bin() -> Result<PathBuf> {
    cargo_bin("station-agent", "station-agent")
}

/// A running agent. Dropping it kills the process.
pub struct AgentProcess {
    child: LoggedChild,
    pub config: PathBuf,
}

impl AgentProcess {
    /// Writes `config_text` to `dir/agent.toml` and starts `station-agent run` on it.
    pub fn start(dir: &Path, config_text: &str) -> Result<Self> {
        Self::start_with_env(dir, config_text, &[])
    }

    pub fn start_with_env(dir: &Path, config_text: &str, env: &[(&str, &str)]) -> Result<Self> {
        Self::start_in(&[], dir, config_text, env)
    }

    /// Like [`AgentProcess::start_with_env`], with the agent's command line behind `prefix`
    /// (e.g. `ip netns exec NS`, which execs, so the pid and signals are the agent's).
    pub fn start_in(
        prefix: &[String],
        dir: &Path,
        config_text: &str,
        env: &[(&str, &str)],
    ) -> Result<Self> {
        let config = dir.join("agent.toml");
        std::fs::write(&config, config_text)?;
        let mut cmd = match prefix.split_first() {
            Some((bin, rest)) => {
                let mut c = Command::new(bin);
                c.args(rest).arg(agent_bin()?);
                c
            }
            None => Command::new(agent_bin()?),
        };
        cmd.args(["run", "--config"])
            .arg(&config)
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        if !env.iter().any(|(k, _)| *k == "RUST_LOG") {
            cmd.env("RUST_LOG", "info");
        }
        for (k, v) in env {
            cmd.env(k, v);
        }
        Ok(Self {
            child: LoggedChild::spawn("agent", cmd)?,
            config,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.pid()
    }

    /// Everything the agent logged so far.
    pub fn log(&self) -> String {
        self.child.log()
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log_count(&self, needle: &str, count: usize, timeout: Duration) -> Result<()> {
        self.child.wait_log_count(needle, count, timeout)
    }

    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        self.wait_log_count(needle, 1, timeout)
    }

    /// SIGTERM, then waits up to `timeout` for the exit. Returns the status and how long the
    /// agent took to exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<(ExitStatus, Duration)> {
        let t0 = Instant::now();
        let status = self.child.terminate(timeout)?;
        Ok((status, t0.elapsed()))
    }

    /// SIGKILL (a crash or a power cut as far as the process is concerned), and reap it.
    pub fn kill(&mut self) -> Result<()> {
        self.child.kill()
    }

    /// Sends a signal (e.g. SIGSTOP to freeze it).
    pub fn signal(&self, sig: i32) -> Result<()> {
        self.child.signal(sig)
    }
}

/// Runs `station-agent ARGS...` to completion and returns (status, stdout, stderr).
pub fn agent_command(args: &[&str]) -> Result<(ExitStatus, String, String)> {
    let out = Command::new(agent_bin()?)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running station-agent")?;
    Ok((
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// A recorded segment file found on disk.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SegmentFile {
    /// UTC start time, from the file name.
    pub start: DateTime<Utc>,
    pub path: PathBuf,
}

/// Parses `YYYYMMDDTHHMMSS.mmmZ[.n].ts` into the segment's start time.
pub fn segment_start_from_name(path: &Path) -> Option<DateTime<Utc>> {
    let name = path.file_name()?.to_str()?;
    let stamp = name.get(..19)?;
    let naive = NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3f").ok()?;
    (name.get(19..20) == Some("Z")).then(|| naive.and_utc())
}

/// Every segment of `camera` under `storage`, oldest first. Also checks the layout:
/// `<storage>/<camera>/<YYYY-MM-DD>/<stamp>.ts`, the day folder matching the start time.
pub fn segments(storage: &Path, camera: &str) -> Result<Vec<SegmentFile>> {
    let cam_dir = storage.join(camera);
    let mut out = Vec::new();
    if !cam_dir.exists() {
        return Ok(out);
    }
    for day in std::fs::read_dir(&cam_dir)? {
        let day = day?.path();
        if !day.is_dir() {
            continue;
        }
        for f in std::fs::read_dir(&day)? {
            let path = f?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("ts") {
                continue;
            }
            let start = segment_start_from_name(&path)
                .with_context(|| format!("segment name {} is not a UTC stamp", path.display()))?;
            let day_name = day.file_name().and_then(|d| d.to_str()).unwrap_or("");
            if day_name != start.format("%Y-%m-%d").to_string() {
                bail!("{} is not in its day's folder", path.display());
            }
            out.push(SegmentFile { start, path });
        }
    }
    out.sort();
    Ok(out)
}

/// Waits until `camera` has a segment whose start is after `after`; returns it.
pub fn wait_segment_after(
    storage: &Path,
    camera: &str,
    after: DateTime<Utc>,
    timeout: Duration,
) -> Result<SegmentFile> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(s) = segments(storage, camera)?.into_iter().find(|s| {
            s.start > after
                && std::fs::metadata(&s.path)
                    .map(|m| m.len() > 0)
                    .unwrap_or(false)
        }) {
            return Ok(s);
        }
        if Instant::now() > deadline {
            bail!("no segment of {camera} started after {after} within {timeout:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A minimal agent config for tests.
pub fn config(storage: &Path, segment_seconds: u32, cameras: &[(&str, &str)]) -> String {
    let mut s = format!(
        "[station]\nid = \"TEST-0001\"\n\n[storage]\npath = \"{}\"\nsegment_seconds = {segment_seconds}\n\n\
         [supervision]\nstall_timeout_seconds = 3\n",
        storage.display()
    );
    for (id, extra) in cameras {
        s.push_str(&format!("\n[[camera]]\nid = \"{id}\"\n{extra}\n"));
    }
    s
}

/// The entries of `<storage>/<camera>/manifest.jsonl`, parsed as JSON, in file order.
pub fn manifest_entries(storage: &Path, camera: &str) -> Result<Vec<serde_json::Value>> {
    let path = storage.join(camera).join("manifest.jsonl");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .map(|l| serde_json::from_str(l).with_context(|| format!("manifest line {l}")))
        .collect()
}

/// After a clean stop (SIGTERM, exit 0): the manifest lists every segment file on disk, the
/// last `segment` entry is the last file (the segment closed by the signal, not left for
/// `verify` to call "pending"), and a `stop` entry follows it as the manifest's last entry.
pub fn assert_clean_stop_in_manifest(storage: &Path, camera: &str) -> Result<()> {
    let entries = manifest_entries(storage, camera)?;
    let files = segments(storage, camera)?;
    let cam_dir = storage.join(camera);
    let rel = |s: &SegmentFile| {
        s.path
            .strip_prefix(&cam_dir)
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let listed: Vec<&str> = entries
        .iter()
        .filter(|e| e["kind"] == "segment")
        .filter_map(|e| e["file"].as_str())
        .collect();
    for f in &files {
        let r = rel(f);
        if !listed.contains(&r.as_str()) {
            bail!("segment file {r} on disk is not in the manifest (entries: {listed:?})");
        }
    }
    let last_file = files.last().context("no segment on disk")?;
    let kinds: Vec<&str> = entries.iter().filter_map(|e| e["kind"].as_str()).collect();
    let n = entries.len();
    if n < 2 || kinds[n - 1] != "stop" || kinds[n - 2] != "segment" {
        bail!("manifest does not end with segment, stop: kinds {kinds:?}");
    }
    if entries[n - 2]["file"].as_str() != Some(rel(last_file).as_str()) {
        bail!(
            "last segment entry is {} but the last file on disk is {}",
            entries[n - 2]["file"],
            rel(last_file)
        );
    }
    Ok(())
}

/// The station's public key (64 hex characters), as `station-agent key --config CONFIG` prints
/// it: what a reader passes to `verify --public-key`.
pub fn station_public_key(config: &Path) -> Result<String> {
    let (status, out, err) = agent_command(&["key", "--config", config.to_str().unwrap_or("")])?;
    anyhow::ensure!(status.success(), "station-agent key failed: {err}");
    out.lines()
        .find_map(|l| l.strip_prefix("public key"))
        .map(|k| k.trim().to_owned())
        .context("station-agent key printed no public key")
}

/// `station-agent verify PATH --public-key <the station's key> EXTRA...`: (exit code, stdout +
/// stderr). Exit codes: 0 OK, 3 OK_WITH_GAPS, 4 UNTRUSTED, 5 FAILED.
pub fn verify_with_key(path: &Path, config: &Path, extra: &[&str]) -> Result<(i32, String)> {
    let key = station_public_key(config)?;
    let mut args = vec!["verify", path.to_str().unwrap_or(""), "--public-key", &key];
    args.extend_from_slice(extra);
    let (status, out, err) = agent_command(&args)?;
    Ok((status.code().unwrap_or(-1), format!("{out}{err}")))
}
