//! A workspace binary built on demand and run as a child process whose stderr log a test can
//! wait on (the agent's and the controller's fixtures, PostgreSQL).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."))
}

pub fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Path of binary `bin` of workspace package `package`, built once per test process: Cargo
/// does not build another package's binaries for a test, and the tests must run the current
/// code. Debug builds, or release builds with `STATIONWATCH_RELEASE=1` (benchmarks).
pub fn cargo_bin(package: &str, bin: &str) -> Result<PathBuf> {
    type Built = Mutex<HashMap<String, std::result::Result<PathBuf, String>>>;
    static BUILT: OnceLock<Built> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default);
    let mut g = built.lock().unwrap_or_else(|e| e.into_inner());
    let entry = g.entry(format!("{package}/{bin}")).or_insert_with(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let release = std::env::var("STATIONWATCH_RELEASE").is_ok_and(|v| v == "1");
        // This build runs inside a test process, whose environment `cargo test` filled with
        // the test crate's CARGO_MANIFEST_DIR, CARGO_PKG_*, OUT_DIR... Build scripts watch
        // some of them (ring's `rerun-if-env-changed=CARGO_MANIFEST_DIR`, `CARGO_PKG_NAME`),
        // so with them left in, this build and the next outer `cargo test` rebuilt ring,
        // rustls, reqwest and the controller back and forth at every e2e step (measured:
        // 13-18 s per step, twice). They are removed: the build sees the environment the
        // outer cargo saw and reuses its artifacts.
        let mut args = vec!["build", "--quiet", "-p", package, "--bin", bin];
        if release {
            args.push("--release");
        }
        let mut command = Command::new(cargo);
        for (key, _) in std::env::vars_os() {
            let Some(key) = key.to_str() else { continue };
            if set_by_cargo_for_the_test(key) {
                command.env_remove(key);
            }
        }
        let status = command
            .args(&args)
            .current_dir(workspace_root())
            .status()
            .map_err(|e| format!("running cargo: {e}"))?;
        if !status.success() {
            return Err(format!(
                "cargo build -p {package} --bin {bin} failed: {status}"
            ));
        }
        let path = target_dir()
            .join(if release { "release" } else { "debug" })
            .join(bin);
        if path.is_file() {
            Ok(path)
        } else {
            Err(format!("{} missing after build", path.display()))
        }
    });
    entry.clone().map_err(anyhow::Error::msg)
}

/// Variables `cargo test` sets for the test binary it runs (not the ones a user sets, such as
/// CARGO_HOME or CARGO_TARGET_DIR).
pub fn set_by_cargo_for_the_test(key: &str) -> bool {
    key == "OUT_DIR"
        || key == "CARGO_CRATE_NAME"
        || key == "CARGO_PRIMARY_PACKAGE"
        || key == "CARGO_TARGET_TMPDIR"
        || key == "CARGO_RUSTC_CURRENT_DIR"
        || key.starts_with("CARGO_MANIFEST_")
        || key.starts_with("CARGO_PKG_")
        || key.starts_with("CARGO_BIN_")
}

/// A child process with its stderr collected; killed when dropped.
pub struct LoggedChild {
    name: String,
    child: Option<Child>,
    log: Arc<Mutex<String>>,
    reader: Option<std::thread::JoinHandle<()>>,
}

impl LoggedChild {
    /// Spawns `cmd` with stderr piped (set its other streams and environment first).
    pub fn spawn(name: &str, mut cmd: Command) -> Result<LoggedChild> {
        cmd.stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let stderr = child.stderr.take().context("stderr is piped")?;
        let log = Arc::new(Mutex::new(String::new()));
        let sink = log.clone();
        let tag = name.to_owned();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                if std::env::var_os("STATIONWATCH_TEST_ECHO").is_some() {
                    eprintln!("{tag}| {line}");
                }
                if let Ok(mut s) = sink.lock() {
                    s.push_str(&line);
                    s.push('\n');
                }
            }
        });
        Ok(LoggedChild {
            name: name.to_owned(),
            child: Some(child),
            log,
            reader: Some(reader),
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    pub fn log(&self) -> String {
        self.log.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Waits until the log contains `needle` `count` times.
    pub fn wait_log_count(&self, needle: &str, count: usize, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        while self.log().matches(needle).count() < count {
            if Instant::now() > deadline {
                bail!(
                    "{} did not log {needle:?} {count} time(s) within {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    }

    /// Waits until the log contains `needle`; returns the first line containing it.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> Result<String> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(line) = self.log().lines().find(|l| l.contains(needle)) {
                return Ok(line.to_owned());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not log {needle:?} within {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) -> Result<()> {
        let pid = self
            .pid()
            .with_context(|| format!("{} already stopped", self.name))?;
        // SAFETY: kill(2) on our own child's pid.
        if unsafe { libc::kill(pid as i32, sig) } != 0 {
            bail!("kill({pid}, {sig}): {}", std::io::Error::last_os_error());
        }
        Ok(())
    }

    /// SIGTERM and wait for the exit.
    pub fn terminate(&mut self, timeout: Duration) -> Result<ExitStatus> {
        self.signal(libc::SIGTERM)?;
        self.wait(timeout)
    }

    /// SIGKILL and reap.
    pub fn kill(&mut self) -> Result<()> {
        self.signal(libc::SIGKILL)?;
        self.wait(Duration::from_secs(10))?;
        Ok(())
    }

    pub fn wait(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let deadline = Instant::now() + timeout;
        let child = self
            .child
            .as_mut()
            .with_context(|| format!("{} already stopped", self.name))?;
        loop {
            if let Some(status) = child.try_wait()? {
                self.child = None;
                if let Some(r) = self.reader.take() {
                    let _ = r.join();
                }
                return Ok(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                self.child = None;
                bail!(
                    "{} did not exit within {timeout:?}; log:\n{}",
                    self.name,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for LoggedChild {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// SIGTERM to a child process, wait up to `grace`, then SIGKILL. `Some(status)` if it exited
/// by itself, `None` if it had to be killed (it is reaped either way).
pub fn terminate_child(child: &mut Child, grace: Duration) -> Result<Option<ExitStatus>> {
    if let Some(status) = child.try_wait().context("polling child")? {
        return Ok(Some(status));
    }
    let pid = libc::pid_t::try_from(child.id()).context("pid out of range")?;
    // SAFETY: kill(2) on the pid of our own child, which has not been reaped yet (try_wait
    // above returned None), so the pid cannot have been reused.
    unsafe {
        libc::kill(pid, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait().context("waiting for child")? {
            return Ok(Some(status));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    child.wait().context("waiting for killed child")?;
    Ok(None)
}
