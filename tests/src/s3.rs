//! A real S3-compatible server for the archive's tests: `s3s-fs` from crates.io (installed into
//! `target/tools` by `scripts/install-deps --test-tools`), on a free loopback port, with one
//! bucket, credentials, and its data in a folder the test can look into. Killed when dropped.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};

use crate::process::{target_dir, LoggedChild};

pub const ACCESS_KEY: &str = "stationwatch-test";
pub const SECRET_KEY: &str = "stationwatch-test-secret";
pub const BUCKET: &str = "archive";

/// Where `s3s-fs` is: `STATIONWATCH_S3S_FS`, `target/tools/bin`, or the `PATH`.
pub fn s3s_fs_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STATIONWATCH_S3S_FS") {
        return Some(PathBuf::from(p));
    }
    let local = target_dir().join("tools/bin/s3s-fs");
    if local.is_file() {
        return Some(local);
    }
    crate::have_binary("s3s-fs").then(|| PathBuf::from("s3s-fs"))
}

pub struct S3Server {
    _child: LoggedChild,
    pub port: u16,
    /// The server's data folder: `<root>/<bucket>/<key>`.
    pub root: PathBuf,
}

impl S3Server {
    /// Starts the server with its data under `dir` and bucket [`BUCKET`] created.
    pub fn start(dir: &Path) -> Result<S3Server> {
        let Some(bin) = s3s_fs_bin() else {
            bail!("s3s-fs missing (scripts/install-deps --test-tools)");
        };
        let root = dir.join("s3");
        std::fs::create_dir_all(root.join(BUCKET))?;
        let port = crate::free_port();
        let mut cmd = Command::new(bin);
        cmd.args([
            "--host",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--access-key",
            ACCESS_KEY,
            "--secret-key",
            SECRET_KEY,
        ])
        .arg(&root);
        let child = LoggedChild::spawn("s3s-fs", cmd)?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                bail!("s3s-fs did not listen on {port}:\n{}", child.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(S3Server {
            _child: child,
            port,
            root,
        })
    }

    /// The controller's `[archive]` keys for this server.
    pub fn archive_toml(&self, staging: &Path) -> String {
        format!(
            "[archive]\nstore = \"s3://{BUCKET}/stationwatch\"\nendpoint = \"http://127.0.0.1:{}\"\n\
             region = \"us-east-1\"\naccess_key_id = \"{ACCESS_KEY}\"\n\
             secret_access_key = \"{SECRET_KEY}\"\nallow_http = true\nstaging = \"{}\"\n",
            self.port,
            staging.display()
        )
    }

    /// Where an object key is on disk.
    pub fn object_path(&self, key: &str) -> PathBuf {
        self.root.join(BUCKET).join("stationwatch").join(key)
    }
}
