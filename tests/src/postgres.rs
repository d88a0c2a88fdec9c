//! A throw-away PostgreSQL server for tests: `initdb` in a temporary folder, `postgres` on a
//! free loopback port, stopped and deleted on drop. PostgreSQL refuses to run as root, so as
//! root the server runs as the `postgres` user Debian's package creates.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};

use crate::process::LoggedChild;

/// Folder of the server binaries (`initdb`, `postgres`), newest version first.
pub fn postgres_bin_dir() -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
        .filter(|p| p.join("initdb").is_file() && p.join("postgres").is_file())
        .collect();
    dirs.sort();
    dirs.pop()
}

pub struct Postgres {
    server: LoggedChild,
    dir: tempfile::TempDir,
    pub port: u16,
}

fn as_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// `cmd` run as the `postgres` user when we are root.
fn command(bin: &Path, as_postgres: bool) -> Command {
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    }
}

impl Postgres {
    /// Starts a server with database `stationwatch` owned by user `stationwatch` (trust auth on
    /// loopback only).
    pub fn start() -> Result<Postgres> {
        let bin = postgres_bin_dir().context("PostgreSQL server binaries not installed")?;
        let root = as_root();
        let dir = tempfile::Builder::new().prefix("sw-pg-").tempdir()?;
        let data = dir.path().join("data");
        std::fs::create_dir(&data)?;
        if root {
            let st = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()?;
            if !st.success() {
                bail!("chown of {} failed", dir.path().display());
            }
        }
        let out = command(&bin.join("initdb"), root)
            .args(["-D"])
            .arg(&data)
            .args([
                "-U",
                "stationwatch",
                "-A",
                "trust",
                "--no-sync",
                "-E",
                "UTF8",
            ])
            .stdin(Stdio::null())
            .output()?;
        if !out.status.success() {
            bail!("initdb failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let port = crate::free_port();
        let mut cmd = command(&bin.join("postgres"), root);
        cmd.arg("-D")
            .arg(&data)
            .args(["-p", &port.to_string(), "-c", "listen_addresses=127.0.0.1"])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", dir.path().display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        let server = LoggedChild::spawn("postgres", cmd)?;
        server.wait_log("ready to accept connections", Duration::from_secs(30))?;
        let pg = Postgres { server, dir, port };
        pg.psql("postgres", "CREATE DATABASE stationwatch")?;
        Ok(pg)
    }

    /// Runs one SQL statement with `psql`.
    pub fn psql(&self, db: &str, sql: &str) -> Result<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let out = Command::new("psql")
                .args([
                    "-h",
                    "127.0.0.1",
                    "-p",
                    &self.port.to_string(),
                    "-U",
                    "stationwatch",
                    "-d",
                    db,
                ])
                .args(["-v", "ON_ERROR_STOP=1", "-Atc", sql])
                .output()?;
            if out.status.success() {
                return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
            }
            if Instant::now() > deadline {
                bail!("psql {sql:?}: {}", String::from_utf8_lossy(&out.stderr));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// A fresh, empty database on this server; its URL.
    pub fn new_database(&self, name: &str) -> Result<String> {
        self.psql("postgres", &format!("CREATE DATABASE {name}"))?;
        Ok(format!(
            "postgres://stationwatch@127.0.0.1:{}/{name}",
            self.port
        ))
    }

    pub fn url(&self) -> String {
        format!(
            "postgres://stationwatch@127.0.0.1:{}/stationwatch",
            self.port
        )
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // SIGINT: PostgreSQL's "fast shutdown".
        let _ = self.server.signal(libc::SIGINT);
        let _ = self.server.wait(Duration::from_secs(10));
    }
}
