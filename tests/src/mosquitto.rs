//! A private, real Mosquitto broker for tests, and small wrappers around the Mosquitto CLI
//! clients to talk to it.
//!
//! - [`Broker`]: starts `mosquitto` on free loopback ports with a config generated from
//!   [`BrokerOpts`] in its own temp dir (never the system config), waits until it accepts
//!   connections, and can be stopped and started again on the same ports to simulate a broker
//!   outage. Users (password file), an ACL, TLS (with certificates made by [`TestCerts`]) and
//!   persistence are options. [`Broker::from_config`] runs a config you wrote yourself (the
//!   tests run the reference `config/mosquitto/stationwatch.conf` that way).
//! - [`TestCerts`]: a throw-away CA, a server certificate for `127.0.0.1`/`localhost` and a
//!   client certificate, made with the `openssl` CLI.
//! - [`ClientArgs`], [`publish`], [`Subscriber`]: `mosquitto_pub` / `mosquitto_sub` as a test
//!   client. A [`Subscriber`] returns only once the broker acknowledged its subscription
//!   (SUBACK), so a test can publish right after without sleeping.
//!
//! Traps this module deals with:
//! - As root, Mosquitto switches to the `mosquitto` user unless the config says `user root`;
//!   that user cannot read or write the temp dir (root-owned, mode 0700), and the broker exits
//!   with "Unable to open log file". The generated config adds `user root` when running as
//!   root.
//! - Mosquitto 2 only listens on loopback and refuses anonymous clients unless told otherwise,
//!   so the config always names its listeners and sets `allow_anonymous` explicitly.
//! - `/usr/sbin` (where Debian puts `mosquitto`) is not on an ordinary user's `PATH`.
//! - A subscription that the ACL does not allow is still granted (SUBACK 0) by Mosquitto 2.0:
//!   the `read` check happens per message, at delivery. A denied publish from an MQTT 3.1.1
//!   client is acknowledged normally and dropped, so `mosquitto_pub` succeeds; only the
//!   broker's log ("Denied PUBLISH") and the receivers tell.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use tempfile::TempDir;

use crate::have_binary;

/// How long [`Broker`] waits for Mosquitto to accept TCP connections after starting it.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long [`Broker::stop`] waits after SIGTERM before it kills the broker.
pub const STOP_GRACE: Duration = Duration::from_secs(5);
/// How long [`publish`] lets `mosquitto_pub` run and [`Subscriber::start`] waits for SUBACK.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(10);
/// What Mosquitto logs when a listener port is taken.
const PORT_TAKEN: &str = "Address already in use";
/// Most bytes of a subscriber's non-message output kept (the tail is kept).
const CLIENT_LOG_KEEP: usize = 64 * 1024;

/// Path of the `mosquitto` broker binary: `STATIONWATCH_MOSQUITTO` if set, else the first of
/// `PATH`, `/usr/sbin/mosquitto`, `/usr/local/sbin/mosquitto` that exists.
pub fn mosquitto_bin() -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("STATIONWATCH_MOSQUITTO") {
        return Some(PathBuf::from(p));
    }
    if let Some(paths) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&paths) {
            let p = dir.join("mosquitto");
            if have_binary(&p.to_string_lossy()) {
                return Some(p);
            }
        }
    }
    ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"]
        .into_iter()
        .find(|p| have_binary(p))
        .map(PathBuf::from)
}

/// True if the broker and the CLI clients (`mosquitto_pub`, `mosquitto_sub`,
/// `mosquitto_passwd`) are installed. Tests gate on it with `require` (a failure under `CI=true`).
pub fn have_mosquitto() -> bool {
    mosquitto_bin().is_some()
        && have_binary("mosquitto_pub")
        && have_binary("mosquitto_sub")
        && have_binary("mosquitto_passwd")
}

/// True if the `openssl` CLI is installed (needed for [`BrokerOpts::tls`] and [`TestCerts`]).
pub fn have_openssl() -> bool {
    have_binary("openssl")
}

/// What the test broker allows. [`Default`] is the simplest broker: anonymous clients, no
/// users, no ACL, no TLS, no persistence.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerOpts {
    /// `allow_anonymous`: may clients connect without a username?
    pub anonymous: bool,
    /// `(username, password)` pairs for the password file. Empty: no password file.
    pub users: Vec<(String, String)>,
    /// Contents of the ACL file (`acl_file`). `None`: no ACL, every client may do everything.
    pub acl: Option<String>,
    /// Adds a TLS listener (see [`Broker::tls_port`]) next to the plain one, with certificates
    /// from [`TestCerts::generate`].
    pub tls: bool,
    /// `require_certificate true` on the TLS listener: clients must present a certificate
    /// signed by the test CA ([`Broker::client_cert`]). Needs `tls`.
    pub require_client_cert: bool,
    /// `persistence true`: retained messages and persistent sessions (with their queued QoS 1
    /// messages) survive [`Broker::stop`] + [`Broker::start`] (not [`Broker::kill`]).
    pub persistence: bool,
    /// Adds a plain listener for stations with this `mount_point` (see
    /// [`Broker::station_client`]), like the station listener of the reference config:
    /// every topic its clients name is filed under the mount point. Same users and ACL.
    pub station_mount_point: Option<String>,
}

impl Default for BrokerOpts {
    fn default() -> Self {
        BrokerOpts {
            anonymous: true,
            users: Vec::new(),
            acl: None,
            tls: false,
            require_client_cert: false,
            persistence: false,
            station_mount_point: None,
        }
    }
}

/// A throw-away PKI made with the `openssl` CLI: a CA, a server certificate valid for
/// `127.0.0.1` and `localhost` (subjectAltName), and a client certificate. EC P-256 keys,
/// valid for 3 days, key files mode 0600.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TestCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl TestCerts {
    /// Creates `ca.crt`, `ca.key`, `server.crt`, `server.key`, `client.crt` and `client.key`
    /// (client CN `stationwatch-test-client`) in `dir`. Two calls with different dirs give two
    /// unrelated CAs.
    pub fn generate(dir: &Path) -> Result<TestCerts> {
        fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let ca_cert = dir.join("ca.crt");
        let ca_key = dir.join("ca.key");
        let ca_conf = dir.join("ca.cnf");
        fs::write(
            &ca_conf,
            "[req]\ndistinguished_name = dn\nprompt = no\n\
             [dn]\nCN = Stationwatch Test CA\n\
             [v3_ca]\nbasicConstraints = critical,CA:TRUE\n\
             keyUsage = critical,keyCertSign,cRLSign\nsubjectKeyIdentifier = hash\n",
        )
        .context("writing ca.cnf")?;
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-config"])
                .arg(&ca_conf)
                .args(["-extensions", "v3_ca", "-days", "3", "-nodes"])
                .args(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"])
                .arg("-keyout")
                .arg(&ca_key)
                .arg("-out")
                .arg(&ca_cert),
        )
        .context("making the test CA")?;
        restrict(&ca_key)?;

        let mut certs = TestCerts {
            ca_cert,
            ca_key,
            server_cert: dir.join("server.crt"),
            server_key: dir.join("server.key"),
            client_cert: PathBuf::new(),
            client_key: PathBuf::new(),
        };
        certs
            .issue(
                "server",
                "localhost",
                "extendedKeyUsage = serverAuth\nsubjectAltName = IP:127.0.0.1,DNS:localhost\n",
            )
            .context("making the server certificate")?;
        let (client_cert, client_key) = certs.issue_client_cert("stationwatch-test-client")?;
        certs.client_cert = client_cert;
        certs.client_key = client_key;
        Ok(certs)
    }

    /// Issues one more client certificate signed by this CA, with common name `cn` (which is
    /// what `use_identity_as_username` would take as the username). Files: `<cn>.crt` and
    /// `<cn>.key` next to the CA. `cn` must be a valid station-like id (letters, digits, `-`,
    /// `_`).
    pub fn issue_client_cert(&self, cn: &str) -> Result<(PathBuf, PathBuf)> {
        if cn.is_empty()
            || !cn
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            bail!("client certificate name {cn:?} must be letters, digits, '-' or '_'");
        }
        self.issue(cn, cn, "extendedKeyUsage = clientAuth\n")
            .with_context(|| format!("making the client certificate {cn}"))
    }

    fn issue(&self, name: &str, cn: &str, extra_ext: &str) -> Result<(PathBuf, PathBuf)> {
        let dir = self
            .ca_cert
            .parent()
            .context("CA certificate has no parent dir")?;
        let key = dir.join(format!("{name}.key"));
        let csr = dir.join(format!("{name}.csr"));
        let cert = dir.join(format!("{name}.crt"));
        let conf = dir.join(format!("{name}.cnf"));
        fs::write(
            &conf,
            format!(
                "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = {cn}\n\
                 [ext]\nbasicConstraints = critical,CA:FALSE\n\
                 keyUsage = critical,digitalSignature,keyEncipherment\n\
                 authorityKeyIdentifier = keyid\n{extra_ext}"
            ),
        )
        .with_context(|| format!("writing {}", conf.display()))?;
        openssl(
            Command::new("openssl")
                .args(["req", "-new", "-config"])
                .arg(&conf)
                .args(["-nodes", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        )?;
        restrict(&key)?;
        // Serial numbers must differ between certificates of one CA; nanoseconds do.
        let serial = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "3", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(&self.ca_cert)
                .arg("-CAkey")
                .arg(&self.ca_key)
                .arg("-set_serial")
                .arg(format!("0x{serial:x}"))
                .arg("-extfile")
                .arg(&conf)
                .args(["-extensions", "ext", "-out"])
                .arg(&cert),
        )?;
        Ok((cert, key))
    }
}

fn openssl(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .context("running openssl (is it installed?)")?;
    if !out.status.success() {
        bail!(
            "openssl failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

fn restrict(path: &Path) -> Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 600 {}", path.display()))
}

/// Writes a Mosquitto password file at `path` with `users` (`(username, password)`), hashed by
/// `mosquitto_passwd -U`. Mode 0600.
pub fn write_password_file(path: &Path, users: &[(String, String)]) -> Result<()> {
    let mut text = String::new();
    for (user, password) in users {
        if user.is_empty() || user.contains([':', '\n', '\r']) {
            bail!("username {user:?} must be non-empty, without ':' or line breaks");
        }
        if password.contains(['\n', '\r']) {
            bail!("the password of {user:?} contains a line break");
        }
        let _ = writeln!(text, "{user}:{password}");
    }
    fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    restrict(path)?;
    let out = Command::new("mosquitto_passwd")
        .arg("-U")
        .arg(path)
        .stdin(Stdio::null())
        .output()
        .context("running mosquitto_passwd (is mosquitto installed?)")?;
    if !out.status.success() {
        bail!(
            "mosquitto_passwd -U {} failed ({}): {}{}",
            path.display(),
            out.status,
            String::from_utf8_lossy(&out.stdout).trim(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
fn pick_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").context("binding 127.0.0.1:0")?;
    Ok(listener.local_addr().context("local_addr")?.port())
}

fn running_as_root() -> bool {
    // SAFETY: geteuid(2) has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// A private Mosquitto broker on 127.0.0.1. Dropping it kills the broker and deletes its
/// temp dir.
pub struct Broker {
    dir: TempDir,
    opts: BrokerOpts,
    ports: Vec<u16>,
    tls_port: Option<u16>,
    station_port: Option<u16>,
    certs: Option<TestCerts>,
    conf: PathBuf,
    log_file: PathBuf,
    out_file: PathBuf,
    child: Option<Child>,
}

impl Broker {
    /// Writes the config for `opts` into a new temp dir and starts Mosquitto on free ports,
    /// waiting until it accepts connections (up to [`START_TIMEOUT`]). Tries fresh ports a
    /// few times if another process took a picked port in the meantime.
    pub fn new(opts: BrokerOpts) -> Result<Broker> {
        let bin = mosquitto_bin().context("mosquitto is not installed")?;
        if opts.require_client_cert && !opts.tls {
            bail!("BrokerOpts::require_client_cert needs tls");
        }
        let dir = tempfile::Builder::new()
            .prefix("stationwatch-mosquitto-")
            .tempdir()
            .context("creating the broker's temp dir")?;
        let root = dir.path().to_path_buf();
        let password_file = if opts.users.is_empty() {
            None
        } else {
            let p = root.join("passwd");
            write_password_file(&p, &opts.users)?;
            Some(p)
        };
        let acl_file = match &opts.acl {
            Some(text) => {
                let p = root.join("acl");
                fs::write(&p, text).context("writing the ACL file")?;
                restrict(&p)?;
                Some(p)
            }
            None => None,
        };
        let certs = if opts.tls {
            Some(TestCerts::generate(&root.join("certs"))?)
        } else {
            None
        };
        let data = root.join("data");
        fs::create_dir_all(&data).context("creating the persistence dir")?;

        let mut broker = Broker {
            conf: root.join("mosquitto.conf"),
            log_file: root.join("mosquitto.log"),
            out_file: root.join("mosquitto.out"),
            dir,
            opts,
            ports: Vec::new(),
            tls_port: None,
            station_port: None,
            certs,
            child: None,
        };
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mark = broker.output_mark();
            broker.ports = vec![pick_port()?];
            broker.tls_port = None;
            if broker.opts.tls {
                let p = pick_port()?;
                broker.ports.push(p);
                broker.tls_port = Some(p);
            }
            broker.station_port = None;
            if broker.opts.station_mount_point.is_some() {
                let p = pick_port()?;
                broker.ports.push(p);
                broker.station_port = Some(p);
            }
            let text =
                broker.generated_config(password_file.as_deref(), acl_file.as_deref(), &data)?;
            fs::write(&broker.conf, text).context("writing mosquitto.conf")?;
            match broker.spawn(&bin) {
                Ok(()) => return Ok(broker),
                Err(e) if attempt < 3 && broker.output_since(mark).contains(PORT_TAKEN) => {
                    eprintln!("mosquitto: a picked port was taken, trying others ({e:#})");
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs Mosquitto on a config you wrote, in `dir` (which the broker keeps and deletes on
    /// drop). `ports` are the listener ports of your config; the broker counts as started when
    /// all of them accept TCP connections, and [`Broker::port`] is the first. The fixture
    /// appends `log_dest file <dir>/mosquitto.log` and `log_type all` (so the config must not
    /// have its own `log_dest file`), and `user root` when running as root and the config has
    /// no `user` line. [`Broker::tls_port`] and the certificate getters return `None`.
    pub fn from_config(dir: TempDir, config: &str, ports: &[u16]) -> Result<Broker> {
        let bin = mosquitto_bin().context("mosquitto is not installed")?;
        if ports.is_empty() {
            bail!("Broker::from_config needs at least one port");
        }
        let root = dir.path().to_path_buf();
        let log_file = root.join("mosquitto.log");
        let mut text = config.to_string();
        if !text.ends_with('\n') {
            text.push('\n');
        }
        let _ = writeln!(text, "\n# Added by the test fixture");
        let _ = writeln!(text, "log_dest file {}", log_file.display());
        let _ = writeln!(text, "log_type all");
        let has_user = text
            .lines()
            .any(|l| l.split_whitespace().next() == Some("user"));
        if running_as_root() && !has_user {
            let _ = writeln!(text, "user root");
        }
        let conf = root.join("mosquitto.conf");
        fs::write(&conf, text).context("writing mosquitto.conf")?;
        let mut broker = Broker {
            conf,
            log_file,
            out_file: root.join("mosquitto.out"),
            dir,
            opts: BrokerOpts::default(),
            ports: ports.to_vec(),
            tls_port: None,
            station_port: None,
            certs: None,
            child: None,
        };
        broker.spawn(&bin)?;
        Ok(broker)
    }

    fn generated_config(
        &self,
        password_file: Option<&Path>,
        acl_file: Option<&Path>,
        data: &Path,
    ) -> Result<String> {
        let o = &self.opts;
        let mut c = String::from("# Generated by stationwatch-tests (tests/src/mosquitto.rs)\n");
        // Global security settings, the same for both listeners.
        let _ = writeln!(c, "per_listener_settings false");
        let _ = writeln!(c, "allow_anonymous {}", o.anonymous);
        if let Some(p) = password_file {
            let _ = writeln!(c, "password_file {}", p.display());
        }
        if let Some(p) = acl_file {
            let _ = writeln!(c, "acl_file {}", p.display());
        }
        let _ = writeln!(c, "persistence {}", o.persistence);
        if o.persistence {
            // The trailing slash matters: Mosquitto concatenates the file name to it.
            let _ = writeln!(c, "persistence_location {}/", data.display());
            let _ = writeln!(c, "persistence_file mosquitto.db");
        }
        let _ = writeln!(c, "log_dest file {}", self.log_file.display());
        let _ = writeln!(c, "log_type all");
        let _ = writeln!(c, "log_timestamp_format %Y-%m-%dT%H:%M:%S");
        let _ = writeln!(c, "connection_messages true");
        if running_as_root() {
            // Otherwise Mosquitto drops to the `mosquitto` user, which cannot use our files.
            let _ = writeln!(c, "user root");
        }
        let _ = writeln!(c, "\nlistener {} 127.0.0.1", self.port());
        if let (Some(port), Some(certs)) = (self.tls_port, &self.certs) {
            let _ = writeln!(c, "\nlistener {port} 127.0.0.1");
            let _ = writeln!(c, "cafile {}", certs.ca_cert.display());
            let _ = writeln!(c, "certfile {}", certs.server_cert.display());
            let _ = writeln!(c, "keyfile {}", certs.server_key.display());
            let _ = writeln!(c, "tls_version tlsv1.2");
            let _ = writeln!(c, "require_certificate {}", o.require_client_cert);
        } else if o.tls {
            bail!("internal: TLS broker without TLS port or certificates");
        }
        if let (Some(port), Some(mount)) = (self.station_port, &o.station_mount_point) {
            let _ = writeln!(c, "\nlistener {port} 127.0.0.1");
            let _ = writeln!(c, "mount_point {mount}");
        }
        Ok(c)
    }

    /// Starts the process and waits until every port accepts connections.
    fn spawn(&mut self, bin: &Path) -> Result<()> {
        let out = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.out_file)
            .context("opening mosquitto.out")?;
        let err = out.try_clone().context("cloning mosquitto.out")?;
        let mut child = Command::new(bin)
            .arg("-c")
            .arg(&self.conf)
            .current_dir(self.dir.path())
            .stdin(Stdio::null())
            .stdout(Stdio::from(out))
            .stderr(Stdio::from(err))
            .spawn()
            .with_context(|| format!("spawning {}", bin.display()))?;
        let deadline = Instant::now() + START_TIMEOUT;
        let mut pending: Vec<u16> = self.ports.clone();
        loop {
            if let Some(status) = child.try_wait().context("polling mosquitto")? {
                bail!(
                    "mosquitto exited during startup ({status}); config {}:\n{}\nlog:\n{}",
                    self.conf.display(),
                    fs::read_to_string(&self.conf).unwrap_or_default(),
                    self.log()
                );
            }
            pending.retain(|&port| {
                let addr = SocketAddr::from(([127, 0, 0, 1], port));
                TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err()
            });
            if pending.is_empty() {
                self.child = Some(child);
                return Ok(());
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!(
                    "mosquitto did not accept connections on port(s) {pending:?} within \
                     {START_TIMEOUT:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Current sizes of the log and the stdout/stderr capture, for [`Broker::output_since`].
    fn output_mark(&self) -> (usize, usize) {
        let len = |p: &Path| fs::metadata(p).map(|m| m.len()).unwrap_or_default();
        let as_usize = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
        (as_usize(len(&self.log_file)), as_usize(len(&self.out_file)))
    }

    /// What Mosquitto wrote (log and stdout/stderr) after `mark`.
    fn output_since(&self, mark: (usize, usize)) -> String {
        let tail = |p: &Path, from: usize| {
            let s = read_lossy(p);
            s.get(from..).map(str::to_string).unwrap_or_default()
        };
        tail(&self.log_file, mark.0) + &tail(&self.out_file, mark.1)
    }

    /// The plain MQTT listener's port (for [`Broker::from_config`]: the first port given).
    /// Stays the same across [`Broker::stop`] / [`Broker::start`].
    pub fn port(&self) -> u16 {
        self.ports.first().copied().unwrap_or_default()
    }

    /// All listener ports.
    pub fn ports(&self) -> &[u16] {
        &self.ports
    }

    /// The TLS listener's port, if [`BrokerOpts::tls`].
    pub fn tls_port(&self) -> Option<u16> {
        self.tls_port
    }

    /// The options the broker was made with.
    pub fn opts(&self) -> &BrokerOpts {
        &self.opts
    }

    /// The broker's temp dir (config, log, password/ACL files, certificates, persistence).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The generated (or given) config file.
    pub fn config_path(&self) -> &Path {
        &self.conf
    }

    /// The test PKI, if [`BrokerOpts::tls`].
    pub fn certs(&self) -> Option<&TestCerts> {
        self.certs.as_ref()
    }

    /// The CA certificate clients must trust to connect to [`Broker::tls_port`].
    pub fn ca_file(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.ca_cert.as_path())
    }

    /// A client certificate signed by the test CA (for `require_certificate`).
    pub fn client_cert(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.client_cert.as_path())
    }

    /// The key of [`Broker::client_cert`].
    pub fn client_key(&self) -> Option<&Path> {
        self.certs.as_ref().map(|c| c.client_key.as_path())
    }

    /// Process id of the broker, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// True if the broker process is alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything Mosquitto logged (all runs, `log_type all`), followed by what it wrote on
    /// stdout/stderr (config errors end up there).
    pub fn log(&self) -> String {
        let mut s = read_lossy(&self.log_file);
        let out = read_lossy(&self.out_file);
        if !out.trim().is_empty() {
            s.push_str("\n--- mosquitto stdout/stderr ---\n");
            s.push_str(&out);
        }
        s
    }

    /// Waits until the log contains `needle`, up to `timeout`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.log().contains(needle) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                bail!(
                    "mosquitto did not log {needle:?} within {timeout:?}; log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the broker: SIGTERM (Mosquitto saves its persistence file and closes every
    /// connection; wills are not sent for a broker shutdown), then waits up to [`STOP_GRACE`].
    /// Fails if it had to be killed or exited with an error. Does nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else {
            return Ok(());
        };
        let status = crate::process::terminate_child(&mut child, STOP_GRACE)?;
        match status {
            Some(s) if s.success() => Ok(()),
            Some(s) => bail!("mosquitto exited with {s} on SIGTERM; log:\n{}", self.log()),
            None => bail!(
                "mosquitto did not exit within {STOP_GRACE:?} of SIGTERM and was killed; log:\n{}",
                self.log()
            ),
        }
    }

    /// Kills the broker with SIGKILL, as a crash or power cut would: nothing is saved since
    /// the last autosave. Does nothing if it is not running.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().context("polling mosquitto")?.is_none() {
                child.kill().context("killing mosquitto")?;
            }
            child.wait().context("waiting for killed mosquitto")?;
        }
        Ok(())
    }

    /// Starts the broker again with the same config on the same ports, after [`Broker::stop`]
    /// or [`Broker::kill`] (or a crash). Retries for up to [`START_TIMEOUT`] while a port is
    /// still taken. Does nothing if it is running.
    pub fn start(&mut self) -> Result<()> {
        if let Some(child) = &mut self.child {
            match child.try_wait().context("polling mosquitto")? {
                None => return Ok(()),
                Some(status) => {
                    eprintln!("mosquitto had exited ({status}); starting it again");
                    self.child = None;
                }
            }
        }
        let bin = mosquitto_bin().context("mosquitto is not installed")?;
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            let mark = self.output_mark();
            match self.spawn(&bin) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    let taken = self.output_since(mark).contains(PORT_TAKEN);
                    if !taken || Instant::now() >= deadline {
                        return Err(e.context(format!(
                            "starting mosquitto again on port(s) {:?}",
                            self.ports
                        )));
                    }
                    std::thread::sleep(Duration::from_millis(250));
                }
            }
        }
    }

    /// [`Broker::stop`], then [`Broker::start`].
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        self.start()
    }

    /// `mosquitto_pub`/`mosquitto_sub` arguments for the plain listener.
    pub fn client(&self) -> ClientArgs {
        ClientArgs::new("127.0.0.1", self.port())
    }

    /// `mosquitto_pub`/`mosquitto_sub` arguments for the station listener
    /// ([`BrokerOpts::station_mount_point`]).
    pub fn station_client(&self) -> Result<ClientArgs> {
        let port = self
            .station_port
            .context("this broker has no station listener")?;
        Ok(ClientArgs::new("127.0.0.1", port))
    }

    /// `mosquitto_pub`/`mosquitto_sub` arguments for the TLS listener, trusting the test CA.
    /// Add [`ClientArgs::cert`] for `require_certificate`.
    pub fn tls_client(&self) -> Result<ClientArgs> {
        let port = self.tls_port.context("this broker has no TLS listener")?;
        let ca = self.ca_file().context("this broker has no test CA")?;
        Ok(ClientArgs::new("127.0.0.1", port).cafile(ca))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn read_lossy(path: &Path) -> String {
    fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default()
}

/// Connection arguments for `mosquitto_pub` / `mosquitto_sub` (`-h`, `-p`, credentials, TLS,
/// anything else), built up by chaining.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientArgs {
    args: Vec<String>,
}

impl ClientArgs {
    /// `-h host -p port`.
    pub fn new(host: &str, port: u16) -> ClientArgs {
        ClientArgs {
            args: vec!["-h".into(), host.into(), "-p".into(), port.to_string()],
        }
    }

    /// `-u user -P password`.
    pub fn user(self, user: &str, password: &str) -> ClientArgs {
        self.arg("-u").arg(user).arg("-P").arg(password)
    }

    /// `-i client_id` (without it, the tools pick a random one).
    pub fn client_id(self, id: &str) -> ClientArgs {
        self.arg("-i").arg(id)
    }

    /// `--cafile path`: use TLS and trust this CA.
    pub fn cafile(self, path: &Path) -> ClientArgs {
        self.arg("--cafile").arg(path.to_string_lossy())
    }

    /// `--cert cert --key key`: present a client certificate.
    pub fn cert(self, cert: &Path, key: &Path) -> ClientArgs {
        self.arg("--cert")
            .arg(cert.to_string_lossy())
            .arg("--key")
            .arg(key.to_string_lossy())
    }

    /// A last will: `--will-topic --will-payload --will-qos 1 [--will-retain]`.
    pub fn will(self, topic: &str, payload: &str, retain: bool) -> ClientArgs {
        let a = self
            .arg("--will-topic")
            .arg(topic)
            .arg("--will-payload")
            .arg(payload)
            .arg("--will-qos")
            .arg("1");
        if retain {
            a.arg("--will-retain")
        } else {
            a
        }
    }

    /// Any other argument, e.g. `-V 5`, `-c` (persistent session), `-k 5`.
    pub fn arg(mut self, a: impl Into<String>) -> ClientArgs {
        self.args.push(a.into());
        self
    }

    /// The arguments so far.
    pub fn args(&self) -> &[String] {
        &self.args
    }
}

/// Publishes one message with `mosquitto_pub` (payload from stdin, so binary payloads work;
/// an empty payload is sent as a zero-length message). Returns what the tool printed (e.g.
/// "Warning: Publish 1 failed: Not authorized." for an MQTT 5 client the ACL refused). Fails
/// if the tool fails (connection refused, TLS error) or takes longer than [`CLIENT_TIMEOUT`].
///
/// With QoS 1 it returns after the broker's PUBACK, i.e. after the broker has routed the
/// message to the queues of its current subscribers: a second `publish` is always routed
/// after this one.
pub fn publish(
    client: &ClientArgs,
    topic: &str,
    payload: &[u8],
    qos: u8,
    retain: bool,
) -> Result<String> {
    let mut cmd = Command::new("mosquitto_pub");
    cmd.args(client.args())
        .args(["-t", topic, "-q", &qos.to_string()]);
    if retain {
        cmd.arg("-r");
    }
    if payload.is_empty() {
        cmd.arg("-n");
    } else {
        cmd.arg("-s");
    }
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning mosquitto_pub (is mosquitto-clients installed?)")?;
    let stdin = child.stdin.take();
    let data = payload.to_vec();
    let writer = std::thread::spawn(move || {
        if let Some(mut stdin) = stdin {
            let _ = stdin.write_all(&data);
        }
    });
    let out_reader = drain(child.stdout.take());
    let err_reader = drain(child.stderr.take());
    let deadline = Instant::now() + CLIENT_TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for mosquitto_pub")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = writer.join();
    let output = format!(
        "{}{}",
        out_reader.join().unwrap_or_default(),
        err_reader.join().unwrap_or_default()
    );
    match status {
        Some(s) if s.success() => Ok(output),
        Some(s) => bail!("mosquitto_pub to {topic} failed ({s}): {}", output.trim()),
        None => bail!(
            "mosquitto_pub to {topic} did not finish within {CLIENT_TIMEOUT:?}: {}",
            output.trim()
        ),
    }
}

fn drain(pipe: Option<impl Read + Send + 'static>) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut p) = pipe {
            let _ = p.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// One message a [`Subscriber`] received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Message {
    pub topic: String,
    pub payload: Vec<u8>,
    pub retained: bool,
}

impl Message {
    /// The payload as text (lossy).
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.payload).into_owned()
    }
}

#[derive(Default)]
struct SubState {
    messages: Vec<Message>,
    /// Granted QoS per topic from SUBACK (128 = refused).
    granted: Option<Vec<u8>>,
    /// Debug and error output of `mosquitto_sub` (the tail).
    log: String,
}

impl SubState {
    fn log_line(&mut self, line: &str) {
        self.log.push_str(line);
        self.log.push('\n');
        if self.log.len() > CLIENT_LOG_KEEP {
            let mut cut = self.log.len() - CLIENT_LOG_KEEP;
            while !self.log.is_char_boundary(cut) {
                cut += 1;
            }
            self.log.drain(..cut);
        }
    }
}

/// A `mosquitto_sub` running in the background, collecting every message it receives.
/// Dropping it kills the process.
pub struct Subscriber {
    child: Option<Child>,
    state: Arc<Mutex<SubState>>,
    readers: Vec<JoinHandle<()>>,
}

impl Subscriber {
    /// Starts `mosquitto_sub` with `client`'s arguments, subscribed to `topics` with `qos`, and
    /// waits (up to [`CLIENT_TIMEOUT`]) until the broker acknowledged the subscription. From
    /// then on every message the broker routes to it is collected. Fails if the client exits
    /// first (refused connection, TLS error).
    pub fn start(client: &ClientArgs, topics: &[&str], qos: u8) -> Result<Subscriber> {
        if topics.is_empty() {
            bail!("Subscriber::start needs at least one topic");
        }
        // mosquitto_sub flushes stdout after each message but not after its debug lines, so
        // through a pipe "Subscribed" would only show up with the first message: force line
        // buffering (coreutils' stdbuf, which works for programs using C stdio).
        if !have_binary("stdbuf") {
            bail!("Subscriber needs stdbuf (coreutils) to see mosquitto_sub's SUBACK line");
        }
        let mut cmd = Command::new("stdbuf");
        cmd.args(["-oL", "mosquitto_sub"])
            .args(client.args())
            // -d prints "Subscribed (mid: N): q1, q2" once SUBACK arrives. Messages are printed
            // as "retain<TAB>topic<TAB>hex payload", which debug lines never look like.
            .args(["-d", "-q", &qos.to_string(), "-F", "%r\t%t\t%x"]);
        for t in topics {
            cmd.args(["-t", t]);
        }
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .context("spawning mosquitto_sub (is mosquitto-clients installed?)")?;
        let state = Arc::new(Mutex::new(SubState::default()));
        let mut readers = Vec::new();
        if let Some(stdout) = child.stdout.take() {
            let st = Arc::clone(&state);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stdout).split(b'\n').map_while(|l| l.ok()) {
                    let line = String::from_utf8_lossy(&line).into_owned();
                    let Ok(mut s) = st.lock() else { break };
                    if let Some(msg) = parse_message_line(&line) {
                        s.messages.push(msg);
                    } else if let Some(granted) = parse_suback_line(&line) {
                        s.granted = Some(granted);
                        s.log_line(&line);
                    } else {
                        s.log_line(&line);
                    }
                }
            }));
        }
        if let Some(stderr) = child.stderr.take() {
            let st = Arc::clone(&state);
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(|l| l.ok()) {
                    let Ok(mut s) = st.lock() else { break };
                    s.log_line(&line);
                }
            }));
        }
        let mut sub = Subscriber {
            child: Some(child),
            state,
            readers,
        };
        let deadline = Instant::now() + CLIENT_TIMEOUT;
        loop {
            if sub.granted().is_some() {
                return Ok(sub);
            }
            if let Some(child) = &mut sub.child {
                if let Some(status) = child.try_wait().context("polling mosquitto_sub")? {
                    sub.child = None;
                    sub.join_readers();
                    bail!(
                        "mosquitto_sub for {topics:?} exited before SUBACK ({status}): {}",
                        sub.log().trim()
                    );
                }
            }
            if Instant::now() >= deadline {
                let log = sub.log();
                bail!(
                    "mosquitto_sub for {topics:?} got no SUBACK within {CLIENT_TIMEOUT:?}: {log}"
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn join_readers(&mut self) {
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }

    /// Granted QoS per subscribed topic (128 = refused). Mosquitto 2.0 grants subscriptions
    /// the ACL does not allow and filters at delivery instead.
    pub fn granted(&self) -> Option<Vec<u8>> {
        self.state.lock().ok().and_then(|s| s.granted.clone())
    }

    /// Every message received so far, in order.
    pub fn messages(&self) -> Vec<Message> {
        self.state
            .lock()
            .map(|s| s.messages.clone())
            .unwrap_or_default()
    }

    /// The first message (received so far or within `timeout`) for which `pred` is true.
    pub fn wait_for(&self, timeout: Duration, pred: impl Fn(&Message) -> bool) -> Option<Message> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(m) = self
                .state
                .lock()
                .ok()
                .and_then(|s| s.messages.iter().find(|m| pred(m)).cloned())
            {
                return Some(m);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// [`Subscriber::wait_for`] a message on `topic` with the text payload `payload`.
    pub fn wait_for_text(&self, topic: &str, payload: &str, timeout: Duration) -> Option<Message> {
        self.wait_for(timeout, |m| {
            m.topic == topic && m.payload == payload.as_bytes()
        })
    }

    /// What `mosquitto_sub -d` printed besides messages (connection, SUBACK, errors).
    pub fn log(&self) -> String {
        self.state.lock().map(|s| s.log.clone()).unwrap_or_default()
    }

    /// True if `mosquitto_sub` is still running.
    pub fn is_running(&mut self) -> bool {
        match &mut self.child {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Kills `mosquitto_sub` with SIGKILL: the connection drops without DISCONNECT, so the
    /// broker publishes its last will. Messages received so far stay readable.
    pub fn kill(&mut self) -> Result<()> {
        if let Some(mut child) = self.child.take() {
            if child.try_wait().context("polling mosquitto_sub")?.is_none() {
                child.kill().context("killing mosquitto_sub")?;
            }
            child.wait().context("waiting for mosquitto_sub")?;
        }
        self.join_readers();
        Ok(())
    }
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        self.join_readers();
    }
}

/// `"<retain>\t<topic>\t<hex payload>"` as printed with `-F "%r\t%t\t%x"`.
fn parse_message_line(line: &str) -> Option<Message> {
    let mut parts = line.splitn(3, '\t');
    let retained = match parts.next()? {
        "0" => false,
        "1" => true,
        _ => return None,
    };
    let topic = parts.next()?.to_string();
    let payload = decode_hex(parts.next()?)?;
    Some(Message {
        topic,
        payload,
        retained,
    })
}

/// `"Subscribed (mid: 1): 0, 128"` → `[0, 128]`.
fn parse_suback_line(line: &str) -> Option<Vec<u8>> {
    let rest = line.strip_prefix("Subscribed (mid: ")?;
    let (_, list) = rest.split_once("):")?;
    list.split(',')
        .map(|q| q.trim().parse::<u8>().ok())
        .collect()
}

fn decode_hex(s: &str) -> Option<Vec<u8>> {
    s.trim_end_matches('\r')
        .as_bytes()
        .chunks(2)
        .map(|pair| match pair {
            [hi, lo] => Some((hex_digit(*hi)? << 4) | hex_digit(*lo)?),
            _ => None,
        })
        .collect()
}

fn hex_digit(c: u8) -> Option<u8> {
    char::from(c)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Reads a file of the repository (relative to the workspace root), e.g.
/// `config/mosquitto/acl`.
pub fn repo_file(relative: &str) -> Result<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or_else(|| anyhow!("CARGO_MANIFEST_DIR has no parent"))?;
    let path = root.join(relative);
    let mut s = String::new();
    File::open(&path)
        .and_then(|mut f| f.read_to_string(&mut s))
        .with_context(|| format!("reading {}", path.display()))?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_message_lines() {
        let m = parse_message_line("1\tstationwatch/v1/A/status\t7b7d").unwrap();
        assert_eq!(m.topic, "stationwatch/v1/A/status");
        assert_eq!(m.payload, b"{}");
        assert!(m.retained);
        let empty = parse_message_line("0\ta/b\t").unwrap();
        assert!(empty.payload.is_empty() && !empty.retained);
        assert!(parse_message_line("Client (null) received SUBACK").is_none());
        assert!(parse_message_line("0\ta\tzz").is_none());
    }

    #[test]
    fn parses_suback_lines() {
        assert_eq!(parse_suback_line("Subscribed (mid: 1): 0"), Some(vec![0]));
        assert_eq!(
            parse_suback_line("Subscribed (mid: 3): 1, 128"),
            Some(vec![1, 128])
        );
        assert_eq!(parse_suback_line("Client x received SUBACK"), None);
    }

    #[test]
    fn default_opts_are_anonymous_and_plain() {
        let o = BrokerOpts::default();
        assert!(o.anonymous && !o.tls && !o.persistence && o.acl.is_none());
    }
}
