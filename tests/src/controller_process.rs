//! The real `station-controller` binary as a child process, and a small HTTP client for its API.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use serde_json::Value;

use crate::process::{cargo_bin, LoggedChild};

/// The demo/test admin's credentials.
pub const ADMIN_USER: &str = "admin";
pub const ADMIN_PASSWORD: &str = "admin-password-1";

/// How to start a controller.
#[derive(Debug, Clone)]
pub struct ControllerOpts {
    pub broker_port: u16,
    /// `None`: a SQLite file in the controller's folder.
    pub database_url: Option<String>,
    /// Appended to the generated config (e.g. a `[rules]` section).
    pub extra_toml: String,
    /// The broker URL; default `mqtt://127.0.0.1:<broker_port>` (`mqtts://` needs `ca_file`
    /// in [`ControllerOpts::mqtt_extra`]).
    pub mqtt_url: Option<String>,
    /// More keys of the `[mqtt]` section (`username`, `password_file`, `ca_file`, ...).
    pub mqtt_extra: String,
    /// More keys of the `[http]` section (`max_connections`, timeouts, ...).
    pub http_extra: String,
    /// Soft and hard limit of open files for the process (`None`: inherited).
    pub nofile: Option<u64>,
}

impl ControllerOpts {
    pub fn new(broker_port: u16) -> Self {
        ControllerOpts {
            broker_port,
            database_url: None,
            extra_toml: String::new(),
            mqtt_url: None,
            mqtt_extra: String::new(),
            http_extra: String::new(),
            nofile: None,
        }
    }
}

/// A running controller. Dropping it kills the process.
pub struct ControllerProcess {
    pub child: LoggedChild,
    pub addr: SocketAddr,
    pub config: PathBuf,
}

pub fn controller_bin() -> Result<PathBuf> {
    cargo_bin("station-controller", "station-controller")
}

impl ControllerProcess {
    /// Writes `dir/controller.toml` (listening on a free loopback port, cookies without
    /// `Secure` since tests speak plain HTTP, a bootstrap admin) and starts `run` on it.
    pub fn start(dir: &Path, opts: &ControllerOpts) -> Result<ControllerProcess> {
        let port = crate::free_port();
        let pw = dir.join("admin-password");
        std::fs::write(&pw, ADMIN_PASSWORD)?;
        let db = opts
            .database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}", dir.join("controller.db").display()));
        let config = dir.join("controller.toml");
        std::fs::write(
            &config,
            format!(
                "[http]\nlisten = \"127.0.0.1:{port}\"\ncookie_secure = false\n{}\n\
                 [database]\nurl = \"{db}\"\n\
                 [mqtt]\nurl = \"{}\"\n{}\n\
                 [auth]\nbootstrap_admin = \"{ADMIN_USER}\"\nbootstrap_password_file = \"{}\"\n{}",
                opts.http_extra,
                opts.mqtt_url
                    .clone()
                    .unwrap_or_else(|| format!("mqtt://127.0.0.1:{}", opts.broker_port)),
                opts.mqtt_extra,
                pw.display(),
                opts.extra_toml
            ),
        )?;
        Self::start_with_fd_limit(&config, port, opts.nofile)
    }

    /// Starts `run` on an existing config whose `http.listen` port is `port`.
    pub fn start_with_config(config: &Path, port: u16) -> Result<ControllerProcess> {
        Self::start_with_fd_limit(config, port, None)
    }

    /// Like [`ControllerProcess::start_with_config`], with the soft and hard limit of open
    /// files set to `nofile` (as on a default system: 1024) when given.
    pub fn start_with_fd_limit(
        config: &Path,
        port: u16,
        nofile: Option<u64>,
    ) -> Result<ControllerProcess> {
        let mut cmd = Command::new(controller_bin()?);
        if let Some(n) = nofile {
            use std::os::unix::process::CommandExt;
            // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child here.
            unsafe {
                cmd.pre_exec(move || {
                    let lim = libc::rlimit {
                        rlim_cur: n as libc::rlim_t,
                        rlim_max: n as libc::rlim_t,
                    };
                    if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        cmd.args(["run", "--config"])
            .arg(config)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "info".into()),
            );
        let child = LoggedChild::spawn("controller", cmd)?;
        child.wait_log("controller listening", Duration::from_secs(60))?;
        Ok(ControllerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            config: config.to_owned(),
        })
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// A station's live SRT passphrase, as an admin looks it up for a device
    /// (`station-controller live-passphrase`).
    pub fn live_passphrase(&self, station: &str) -> Result<String> {
        let out = Command::new(controller_bin()?)
            .args(["live-passphrase", "--config"])
            .arg(&self.config)
            .args(["--station", station])
            .output()?;
        if !out.status.success() {
            bail!(
                "live-passphrase: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        Ok(String::from_utf8(out.stdout)?.trim().to_owned())
    }

    /// An API client logged in as the bootstrap admin.
    pub fn admin(&self) -> Result<Api> {
        Api::login(&self.base_url(), ADMIN_USER, ADMIN_PASSWORD)
    }
}

/// A blocking JSON client holding a session cookie.
#[derive(Clone)]
pub struct Api {
    pub base: String,
    agent: ureq::Agent,
    cookie: Option<String>,
}

/// Status and body of a response (errors are answers too).
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Api {
    /// A client without a session.
    pub fn anonymous(base: &str) -> Api {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            // The controller closes a keep-alive connection idle for its header timeout
            // (10 s by default): never reuse one that old.
            .max_idle_age(Duration::from_secs(3))
            .build()
            .new_agent();
        Api {
            base: base.trim_end_matches('/').to_owned(),
            agent,
            cookie: None,
        }
    }

    pub fn login(base: &str, user: &str, password: &str) -> Result<Api> {
        let mut api = Api::anonymous(base);
        let resp = api
            .agent
            .post(&format!("{}/api/login", api.base))
            .send_json(serde_json::json!({ "username": user, "password": password }))?;
        if resp.status() != 200 {
            bail!("login as {user} answered {}", resp.status());
        }
        let set = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .context("login set no cookie")?;
        api.cookie = Some(set.split(';').next().unwrap_or_default().to_owned());
        Ok(api)
    }

    /// The same session against another replica.
    pub fn with_base(&self, base: &str) -> Api {
        Api {
            base: base.trim_end_matches('/').to_owned(),
            ..self.clone()
        }
    }

    pub fn cookie(&self) -> Option<&str> {
        self.cookie.as_deref()
    }

    fn finish(resp: ureq::http::Response<ureq::Body>) -> Result<Reply> {
        let status = resp.status().as_u16();
        let text = resp.into_body().read_to_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Reply { status, body })
    }

    pub fn get(&self, path: &str) -> Result<Reply> {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        Self::finish(req.call()?)
    }

    /// The raw bytes of a GET (snapshots), with the status.
    pub fn get_bytes(&self, path: &str) -> Result<(u16, Vec<u8>)> {
        let mut req = self.agent.get(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let resp = req.call()?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().read_to_vec()?;
        Ok((status, bytes))
    }

    /// Streams a GET's body into `out` without the client's overall timeout (large
    /// downloads: evidence bundles); the status, the bytes written and the time to the
    /// response's headers.
    pub fn download(
        &self,
        path: &str,
        out: &mut dyn std::io::Write,
    ) -> Result<(u16, u64, Duration)> {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut req = agent.get(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        let t = std::time::Instant::now();
        let resp = req.call()?;
        let headers = t.elapsed();
        let status = resp.status().as_u16();
        let n = std::io::copy(&mut resp.into_body().into_reader(), out)?;
        Ok((status, n, headers))
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Reply> {
        let mut req = self.agent.post(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        Self::finish(req.send_json(body)?)
    }

    pub fn put(&self, path: &str, body: &Value) -> Result<Reply> {
        let mut req = self.agent.put(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        Self::finish(req.send_json(body)?)
    }

    pub fn delete(&self, path: &str) -> Result<Reply> {
        let mut req = self.agent.delete(&format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        Self::finish(req.call()?)
    }

    /// GET that must answer 200.
    pub fn ok(&self, path: &str) -> Result<Value> {
        let r = self.get(path)?;
        if r.status != 200 {
            bail!("GET {path} answered {}: {}", r.status, r.body);
        }
        Ok(r.body)
    }
}
