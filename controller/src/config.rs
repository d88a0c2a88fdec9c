//! The controller's configuration file (`config/controller.toml` is the commented reference).
//!
//! Every problem is reported at once with its key, like the agent's config.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use stationwatch_protocol::broker_config::{BrokerConfig, BROKER_KEYS};
pub use stationwatch_protocol::config_reader::ConfigError;
use stationwatch_protocol::config_reader::{join, parse_config, read_file, TomlReader};
use stationwatch_protocol::mqtt::validate_mount_point;
use stationwatch_protocol::{CameraId, StationId};

/// A validated controller configuration.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    /// The file this came from (for messages).
    pub file: PathBuf,
    pub http: HttpConfig,
    pub database: DatabaseConfig,
    pub mqtt: MqttConfig,
    pub rules: RulesConfig,
    pub auth: AuthConfig,
    pub trust: TrustConfig,
    pub archive: ArchiveConfig,
    pub requests: RequestsConfig,
    /// Enrollment of stations (`[enroll]`); `None`: not offered.
    pub enroll: Option<EnrollConfig>,
    /// Live viewing through the gateways (`[live]`, `docs/live.md`); `None`: not offered.
    pub live: Option<LiveConfig>,
}

/// Live viewing (`live.rs`, `[live]`): where the gateways write HLS and the secrets they share
/// with the controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveConfig {
    /// The gateways' HLS root (`hls_dir`): `private/` and `public/` below it.
    pub hls_dir: PathBuf,
    /// The secret stations' SRT passphrases derive from (`secret_file`; created if missing).
    pub secret_file: PathBuf,
    /// The token gateways present (`gateway_token_file`; created if missing).
    pub gateway_token_file: PathBuf,
    /// The public page without login (`public_page`, default false).
    pub public_page: bool,
    /// Where stations send their live SRT (`station_srt_url`, `srt://HOST:PORT`: the gateway,
    /// or a load balancer in front of several). Given to a station at enrollment with its
    /// passphrase; absent: enrollment gives no live settings.
    pub station_srt_url: Option<String>,
}

/// Enrollment of stations (`enroll.rs`, `[enroll]`): what an enrolled station receives and how
/// its broker account is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrollConfig {
    /// The broker URL stations use (`broker_url`), e.g. `mqtts://broker.example.org:8883`.
    pub broker_url: String,
    /// The CA stations must trust for it (`ca_file`, PEM), sent to them; required for mqtts.
    pub ca_file: Option<PathBuf>,
    /// The Mosquitto password file of station accounts the controller manages (`passwd_file`;
    /// the reference broker config's `stations.passwd`).
    pub passwd_file: PathBuf,
    /// Run after the password file changed so that the broker reads it again
    /// (`reload_command`, e.g. `["systemctl", "reload", "mosquitto"]`); empty: none.
    pub reload_command: Vec<String>,
    /// How long a code stays valid by default (`code_ttl_hours`, default 24).
    pub code_ttl_ms: i64,
}

/// Requests for recordings (`requests/`, `[requests]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestsConfig {
    /// Longest window one request may ask for (`max_window_minutes`, default 1 day).
    pub max_window_ms: i64,
    /// Names of the roles whose requests are approved when filed (`auto_approve`, default
    /// none): `observer`, `operator`, `admin`.
    pub auto_approve: Vec<String>,
    /// A request still collecting this long after its approval fails (`deadline_hours`, 48).
    pub deadline_ms: i64,
    /// The archive keeps a delivered window at least this long (`hold_days`, default 365).
    pub hold_ms: i64,
}

/// Where archived footage goes (`archive/`, `docs/archive.md`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveConfig {
    pub store: ArchiveStoreConfig,
    /// Partly received segments (one file per segment being uploaded), synced per chunk.
    pub staging: PathBuf,
    /// Station requests (`/archive/v1/...`) handled at once; more are answered 503.
    pub max_uploads: usize,
    /// What the archive deletes, and when (`archive/retention.rs`).
    pub retention: ArchiveRetention,
}

/// Archive retention: the station's rules (`[retention]` of the agent) applied to the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveRetention {
    /// Nothing younger is ever deleted (days).
    pub keep_days: u32,
    /// Archived segments older than this are deleted unless held; 0: never by age.
    pub delete_after_days: u32,
    pub check_interval: Duration,
    /// `[[archive.hold]]`: windows the archive never deletes, beside the station's own holds.
    pub holds: Vec<ArchiveHold>,
}

impl Default for ArchiveRetention {
    fn default() -> Self {
        ArchiveRetention {
            keep_days: 30,
            delete_after_days: 0,
            check_interval: Duration::from_secs(3600),
            holds: Vec::new(),
        }
    }
}

/// A legal hold of the archive's own (`[[archive.hold]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveHold {
    /// `None`: every station.
    pub station: Option<StationId>,
    /// `None`: every camera.
    pub camera: Option<CameraId>,
    /// The window, ms since the epoch, `[from, to)`.
    pub from: i64,
    pub to: i64,
    pub reason: String,
}

/// The object store of the archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveStoreConfig {
    /// `file:///abs/path`: a local folder.
    Local(PathBuf),
    /// `s3://bucket/prefix`: any S3-compatible store.
    S3(S3Config),
}

#[derive(Clone, PartialEq, Eq)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix inside the bucket (no leading or trailing `/`; empty: none).
    pub prefix: String,
    /// e.g. `https://s3.example.org` or `http://127.0.0.1:9000`; `None`: AWS.
    pub endpoint: Option<String>,
    pub region: String,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Plain-HTTP endpoints (tests, a store on the same host).
    pub allow_http: bool,
}

impl std::fmt::Debug for S3Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "(set)"),
            )
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

impl ArchiveConfig {
    /// A local-folder archive in `dir` (`dir/store`, `dir/staging`): for tests and demos.
    pub fn local(dir: &Path) -> Self {
        ArchiveConfig {
            store: ArchiveStoreConfig::Local(dir.join("store")),
            staging: dir.join("staging"),
            max_uploads: DEFAULT_MAX_UPLOADS,
            retention: ArchiveRetention::default(),
        }
    }
}

/// Default of `[archive] max_uploads`.
pub const DEFAULT_MAX_UPLOADS: usize = 32;

/// The controller's own key and third-party time (`keys/`).
#[derive(Debug, Clone)]
pub struct TrustConfig {
    /// The controller's Ed25519 signing key (PKCS#8 PEM), created on first use. It signs the
    /// key registry and witness exports.
    pub key_file: PathBuf,
    /// RFC 3161 time-stamping authority (`http://...` only); `None`: no time-stamps.
    pub tsa_url: Option<String>,
    /// How often the latest head of every camera that changed is time-stamped.
    pub tsa_interval: Duration,
    /// Most heads stamped per run (one request each).
    pub tsa_max_per_run: u32,
}

#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Where the API and dashboard listen.
    pub listen: SocketAddr,
    /// `Secure` flag on the session cookie. Only a plain-HTTP demo on localhost turns it off.
    pub cookie_secure: bool,
    /// Sessions expire this long after login.
    pub session_ttl: Duration,
    /// Peers whose `X-Forwarded-For` names the client (the reverse proxy); default loopback.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Open connections at most (further ones wait in the kernel's backlog); never more than
    /// the file descriptors allow.
    pub max_connections: usize,
    /// A connection whose request headers do not arrive within this is closed (also idle
    /// keep-alive connections).
    pub header_timeout: Duration,
    /// Every request but the event stream is answered within this (408 otherwise).
    pub request_timeout: Duration,
    /// Event streams (`/api/stream`) one user may have open at once.
    pub max_streams_per_user: usize,
}

#[derive(Debug, Clone)]
pub struct DatabaseConfig {
    /// `sqlite://PATH` (created if missing) or `postgres://...`.
    pub url: String,
    pub max_connections: u32,
    /// Health history older than this is deleted.
    pub history_days: u32,
    /// Retention of events, closed alerts and finished commands (`events_days`, default 400).
    pub events_days: u32,
    /// Retention of the audit log (`audit_days`, default 3650: election law asks for years).
    pub audit_days: u32,
    /// Bytes of writes waiting for the database; beyond, health history points, snapshots and
    /// witnessed heads are dropped (`ingest::queue`).
    pub write_queue_bytes: u64,
}

impl DatabaseConfig {
    pub fn is_postgres(&self) -> bool {
        self.url.starts_with("postgres://") || self.url.starts_with("postgresql://")
    }
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Where the broker is and how to log in (keys shared with the agent).
    pub broker: BrokerConfig,
    /// Unique per replica and stable across its restarts (defaults to
    /// [`default_client_id`]: `station-controller-<host>-<HTTP port>`).
    pub client_id: String,
    pub keepalive: Duration,
    /// Shared-subscription group of the controller replicas; `None` subscribes directly (one
    /// replica only, or a broker without shared subscriptions).
    pub shared_group: Option<String>,
    /// The `mount_point` of the broker's station listener (`stations/` in the reference
    /// config, `""` for a broker without one): every station topic is filed under it.
    pub mount_point: String,
    /// How long a command stays valid at the agent (`command_ttl_seconds`, default 300): a
    /// command not acknowledged by then is shown as `expired`.
    pub command_ttl: Duration,
}

/// When a station needs attention.
#[derive(Debug, Clone, PartialEq)]
pub struct RulesConfig {
    /// Offline after this many missed health reports (the report says its own interval).
    pub missed_reports: u32,
    /// A recording camera with no finished segment for this many segment lengths is flagged.
    pub segment_factor: f64,
    /// Disk with fewer hours of recording left than this is flagged.
    pub min_disk_hours: f64,
    /// The longest report interval believed (`interval_s` is the agent's word): a report
    /// claiming a longer one counts as this, so one report cannot keep a station "online"
    /// for days.
    pub max_interval_s: u32,
    /// A report whose `at` is further than this from when it arrived is flagged
    /// (`clock_skew`), and its `at` is not used where the controller's clock is (history).
    pub max_clock_skew_s: u32,
}

impl Default for RulesConfig {
    fn default() -> Self {
        RulesConfig {
            missed_reports: 3,
            segment_factor: 2.0,
            min_disk_hours: 24.0,
            max_interval_s: 600,
            max_clock_skew_s: 300,
        }
    }
}

/// Shortest password accepted (checked here for the bootstrap admin, and by `auth` for every
/// password; kept here so that configuration depends on nothing else in the crate).
pub const MIN_PASSWORD_CHARS: usize = 8;

#[derive(Debug, Clone)]
pub struct AuthConfig {
    /// Created as an admin at start when no user exists yet.
    pub bootstrap_admin: Option<(String, String)>,
}

impl ControllerConfig {
    /// Reads and validates a config file, including that the files it names exist.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::parse(file, &read_file(file)?, true)
    }

    /// Validates config text; `check_machine` also reads the files it names.
    pub fn parse(file: &Path, text: &str, check_machine: bool) -> Result<Self, ConfigError> {
        parse_config(file, text, |root| {
            let mut r = TomlReader::default();
            let cfg = read(&mut r, root, file, check_machine);
            (cfg, r.problems)
        })
    }
}

fn read(
    r: &mut TomlReader,
    root: &toml::Table,
    file: &Path,
    check_machine: bool,
) -> Option<ControllerConfig> {
    r.unknown_keys(
        root,
        "",
        &[
            "http", "database", "mqtt", "rules", "auth", "trust", "archive", "requests", "enroll",
            "live",
        ],
    );
    let http = http(r, root);
    let database = database(r, root, file);
    let listen_port = http.as_ref().map_or(8080, |h| h.listen.port());
    let mqtt = mqtt(r, root, check_machine, listen_port);
    let rules = rules(r, root);
    let auth = auth(r, root, check_machine);
    let trust = trust(r, root, file);
    let archive = archive(r, root, file, database.as_ref());
    let requests = requests(r, root);
    let enroll = enroll(r, root, check_machine);
    let live = live(r, root, file);
    Some(ControllerConfig {
        file: file.to_owned(),
        http: http?,
        database: database?,
        mqtt: mqtt?,
        rules: rules?,
        auth: auth?,
        trust: trust?,
        archive: archive?,
        requests: requests?,
        enroll: enroll?,
        live: live?,
    })
}

fn live(r: &mut TomlReader, root: &toml::Table, file: &Path) -> Option<Option<LiveConfig>> {
    if !root.contains_key("live") {
        return Some(None);
    }
    let p = "live";
    let t = r.optional_section(
        root,
        p,
        &[
            "hls_dir",
            "secret_file",
            "gateway_token_file",
            "public_page",
            "station_srt_url",
        ],
    );
    let base = file.parent().unwrap_or(Path::new("."));
    let hls = r.string(t, p, "hls_dir", true).map(PathBuf::from);
    if let Some(d) = &hls {
        if !d.is_absolute() {
            r.problem(
                join(p, "hls_dir"),
                format!("{} must be an absolute path", d.display()),
            );
        }
    }
    // Relative to the config file, like the controller's key.
    let secret = base.join(
        r.string(t, p, "secret_file", false)
            .unwrap_or_else(|| "live.secret".into()),
    );
    let token = base.join(
        r.string(t, p, "gateway_token_file", false)
            .unwrap_or_else(|| "gateway.token".into()),
    );
    let public_page = r.bool(t, p, "public_page", false);
    let srt = r.string(t, p, "station_srt_url", false);
    let srt_ok = match srt.as_deref().map(station_srt_url) {
        Some(Err(e)) => {
            r.problem(join(p, "station_srt_url"), e);
            false
        }
        _ => true,
    };
    Some(Some(LiveConfig {
        hls_dir: hls.filter(|d| d.is_absolute())?,
        secret_file: secret,
        gateway_token_file: token,
        public_page: public_page?,
        station_srt_url: srt.filter(|_| srt_ok),
    }))
}

/// `srt://HOST:PORT` and nothing else: the passphrase and stream id are each station's own.
fn station_srt_url(s: &str) -> Result<(), String> {
    let u = url::Url::parse(s).map_err(|e| format!("not a URL: {e}"))?;
    if u.scheme() != "srt" || u.host_str().is_none_or(str::is_empty) || u.port().is_none() {
        return Err("must be srt://HOST:PORT (where stations send their live video)".into());
    }
    if u.query().is_some() || !matches!(u.path(), "" | "/") {
        return Err(
            "must be only srt://HOST:PORT: each station gets its own passphrase and stream id"
                .into(),
        );
    }
    Ok(())
}

fn enroll(
    r: &mut TomlReader,
    root: &toml::Table,
    check_machine: bool,
) -> Option<Option<EnrollConfig>> {
    if !root.contains_key("enroll") {
        return Some(None);
    }
    let p = "enroll";
    let t = r.optional_section(
        root,
        p,
        &[
            "broker_url",
            "ca_file",
            "passwd_file",
            "reload_command",
            "code_ttl_hours",
        ],
    );
    let url = r.string(t, p, "broker_url", true);
    if let Some(u) = &url {
        let ok = url::Url::parse(u).is_ok_and(|x| {
            matches!(x.scheme(), "mqtt" | "mqtts") && x.has_host() && x.password().is_none()
        });
        if !ok {
            r.problem(
                join(p, "broker_url"),
                "must be an mqtt:// or mqtts:// URL with a host and without credentials",
            );
        }
    }
    let ca = r.file(t, p, "ca_file", check_machine);
    if url.as_deref().is_some_and(|u| u.starts_with("mqtts://"))
        && ca.is_none()
        && !t.contains_key("ca_file")
    {
        r.problem(
            join(p, "ca_file"),
            "required for an mqtts:// broker_url: stations must know the CA",
        );
    }
    let passwd = r.string(t, p, "passwd_file", true).map(PathBuf::from);
    if let Some(f) = &passwd {
        if !f.is_absolute() {
            r.problem(
                join(p, "passwd_file"),
                format!("{} must be an absolute path", f.display()),
            );
        }
    }
    let reload = match t.get("reload_command") {
        None => Some(Vec::new()),
        Some(toml::Value::Array(a)) if a.iter().all(toml::Value::is_str) && !a.is_empty() => Some(
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect(),
        ),
        Some(_) => {
            r.problem(
                join(p, "reload_command"),
                "must be a non-empty list of strings, e.g. [\"systemctl\", \"reload\", \"mosquitto\"]",
            );
            None
        }
    };
    let ttl = r.int(t, p, "code_ttl_hours", 1..=24 * 30, 24);
    Some(Some(EnrollConfig {
        broker_url: url?,
        ca_file: ca,
        passwd_file: passwd?,
        reload_command: reload?,
        code_ttl_ms: ttl? * 3_600_000,
    }))
}

fn requests(r: &mut TomlReader, root: &toml::Table) -> Option<RequestsConfig> {
    let p = "requests";
    let t = r.optional_section(
        root,
        p,
        &[
            "max_window_minutes",
            "auto_approve",
            "deadline_hours",
            "hold_days",
        ],
    );
    let window = r.int(t, p, "max_window_minutes", 1..=44_640, 24 * 60);
    let deadline = r.int(t, p, "deadline_hours", 1..=24 * 90, 48);
    let hold = r.int(t, p, "hold_days", 1..=36_500, 365);
    let auto_approve = match t.get("auto_approve") {
        None => Some(Vec::new()),
        Some(toml::Value::Array(a)) => {
            const ROLES: [&str; 3] = ["observer", "operator", "admin"];
            let roles: Vec<Option<String>> = a
                .iter()
                .map(|v| v.as_str().filter(|r| ROLES.contains(r)).map(str::to_owned))
                .collect();
            if roles.iter().all(Option::is_some) {
                Some(roles.into_iter().flatten().collect())
            } else {
                r.problem(
                    join(p, "auto_approve"),
                    "must be a list of roles: \"observer\", \"operator\", \"admin\"",
                );
                None
            }
        }
        Some(v) => {
            r.problem(
                join(p, "auto_approve"),
                format!("must be a list of roles, found {}", v.type_str()),
            );
            None
        }
    };
    Some(RequestsConfig {
        max_window_ms: window? * 60_000,
        auto_approve: auto_approve?,
        deadline_ms: deadline? * 3_600_000,
        hold_ms: hold? * 86_400_000,
    })
}

/// The folder defaults are relative to: the SQLite database's folder, else the config file's.
fn data_dir(file: &Path, database: Option<&DatabaseConfig>) -> PathBuf {
    let conf_dir = file.parent().unwrap_or(Path::new(".")).to_owned();
    database
        .and_then(|d| d.url.strip_prefix("sqlite://"))
        .and_then(|p| Path::new(p).parent().map(Path::to_owned))
        .filter(|p| p.is_absolute())
        .unwrap_or(conf_dir)
}

fn archive(
    r: &mut TomlReader,
    root: &toml::Table,
    file: &Path,
    database: Option<&DatabaseConfig>,
) -> Option<ArchiveConfig> {
    let p = "archive";
    let t = r.optional_section(
        root,
        p,
        &[
            "store",
            "endpoint",
            "region",
            "access_key_id",
            "secret_access_key",
            "allow_http",
            "staging",
            "max_uploads",
            "keep_days",
            "delete_after_days",
            "check_interval_seconds",
            "hold",
        ],
    );
    let dir = data_dir(file, database);
    let endpoint = r.string(t, p, "endpoint", false).filter(|s| !s.is_empty());
    let region = r.string(t, p, "region", false);
    let access_key_id = r.string(t, p, "access_key_id", false);
    let secret_access_key = r.string(t, p, "secret_access_key", false);
    let allow_http = r.bool(t, p, "allow_http", false);
    let store = match r.string(t, p, "store", false) {
        None => Some(ArchiveStoreConfig::Local(dir.join("archive"))),
        Some(s) => {
            if let Some(path) = s.strip_prefix("file://") {
                if Path::new(path).is_absolute() {
                    Some(ArchiveStoreConfig::Local(PathBuf::from(path)))
                } else {
                    r.problem(
                        join(p, "store"),
                        format!("{s:?}: file:// needs an absolute path (file:///var/lib/...)"),
                    );
                    None
                }
            } else if let Some(rest) = s.strip_prefix("s3://") {
                let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
                if bucket.is_empty() {
                    r.problem(join(p, "store"), format!("{s:?}: s3:// needs a bucket"));
                    None
                } else {
                    Some(ArchiveStoreConfig::S3(S3Config {
                        bucket: bucket.to_owned(),
                        prefix: prefix.trim_matches('/').to_owned(),
                        endpoint: endpoint.clone(),
                        region: region.clone().unwrap_or_else(|| "us-east-1".into()),
                        access_key_id: access_key_id.clone(),
                        secret_access_key: secret_access_key.clone(),
                        allow_http: allow_http.unwrap_or(false),
                    }))
                }
            } else {
                r.problem(
                    join(p, "store"),
                    format!("{s:?}: expected file:///PATH or s3://BUCKET/PREFIX"),
                );
                None
            }
        }
    };
    if matches!(store, Some(ArchiveStoreConfig::Local(_))) {
        for (k, set) in [
            ("endpoint", endpoint.is_some()),
            ("region", region.is_some()),
            ("access_key_id", access_key_id.is_some()),
            ("secret_access_key", secret_access_key.is_some()),
        ] {
            if set {
                r.problem(join(p, k), "only for an s3:// store");
            }
        }
    }
    if access_key_id.is_some() != secret_access_key.is_some() {
        r.problem(
            join(p, "secret_access_key"),
            "access_key_id and secret_access_key go together",
        );
    }
    if let Some(e) = &endpoint {
        if !(e.starts_with("https://") || e.starts_with("http://")) {
            r.problem(
                join(p, "endpoint"),
                format!("{e:?}: expected an http:// or https:// URL"),
            );
        } else if e.starts_with("http://") && allow_http == Some(false) {
            r.problem(
                join(p, "endpoint"),
                format!("{e:?} is plain HTTP: set allow_http = true to allow it"),
            );
        }
    }
    let staging = match r.string(t, p, "staging", false) {
        None => Some(dir.join("archive-staging")),
        Some(s) => {
            let s = PathBuf::from(s);
            if s.is_absolute() {
                Some(s)
            } else {
                Some(file.parent().unwrap_or(Path::new(".")).join(s))
            }
        }
    };
    let max = r.int(t, p, "max_uploads", 1..=10_000, DEFAULT_MAX_UPLOADS as i64);
    let retention = archive_retention(r, t);
    Some(ArchiveConfig {
        store: store?,
        staging: staging?,
        max_uploads: max? as usize,
        retention: retention?,
    })
}

/// An optional id key: `Some(None)` when absent, `None` (the problem recorded) when invalid.
fn optional_id<T, E: std::fmt::Display>(
    r: &mut TomlReader,
    t: &toml::Table,
    path: &str,
    key: &str,
    parse: impl FnOnce(String) -> Result<T, E>,
) -> Option<Option<T>> {
    let Some(s) = r.string(t, path, key, false) else {
        return Some(None);
    };
    match parse(s.clone()) {
        Ok(id) => Some(Some(id)),
        Err(e) => {
            r.problem(join(path, key), format!("{s:?}: {e}"));
            None
        }
    }
}

/// `keep_days`, `delete_after_days`, `check_interval_seconds` and `[[archive.hold]]`, with the
/// agent's `[retention]` meanings and bounds.
fn archive_retention(r: &mut TomlReader, t: &toml::Table) -> Option<ArchiveRetention> {
    let p = "archive";
    let keep = r.int(t, p, "keep_days", 0..=36500, 30);
    let after = r.int(t, p, "delete_after_days", 0..=36500, 0);
    let interval = r.int(t, p, "check_interval_seconds", 1..=86_400, 3600);
    let mut holds = Vec::new();
    let mut ok = true;
    match t.get("hold") {
        None => {}
        Some(toml::Value::Array(list)) => {
            for (i, v) in list.iter().enumerate() {
                let path = format!("archive.hold[{i}]");
                let toml::Value::Table(h) = v else {
                    r.problem(path, format!("must be a table, found {}", v.type_str()));
                    ok = false;
                    continue;
                };
                r.unknown_keys(h, &path, &["station", "camera", "from", "to", "reason"]);
                let from = r.time(h, &path, "from");
                let to = r.time(h, &path, "to");
                let reason = r.string(h, &path, "reason", true).filter(|s| {
                    !s.trim().is_empty() || {
                        r.problem(join(&path, "reason"), "must not be empty");
                        false
                    }
                });
                let station = optional_id(r, h, &path, "station", StationId::new);
                let camera = optional_id(r, h, &path, "camera", CameraId::new);
                match (from, to, reason, station, camera) {
                    (Some(from), Some(to), Some(reason), Some(station), Some(camera)) => {
                        if to < from {
                            r.problem(join(&path, "to"), "is before `from`");
                            ok = false;
                        } else {
                            holds.push(ArchiveHold {
                                station,
                                camera,
                                from: from.timestamp_millis(),
                                to: to.timestamp_millis(),
                                reason,
                            });
                        }
                    }
                    _ => ok = false,
                }
            }
        }
        Some(v) => {
            r.problem(
                "archive.hold",
                format!(
                    "must be an array of tables ([[archive.hold]]), found {}",
                    v.type_str()
                ),
            );
            ok = false;
        }
    }
    let (keep, after, interval) = (keep?, after?, interval?);
    if after != 0 && after < keep {
        r.problem(
            "archive.delete_after_days",
            format!("{after} is shorter than keep_days ({keep})"),
        );
        return None;
    }
    ok.then_some(ArchiveRetention {
        keep_days: keep as u32,
        delete_after_days: after as u32,
        check_interval: Duration::from_secs(interval as u64),
        holds,
    })
}

fn trust(r: &mut TomlReader, root: &toml::Table, file: &Path) -> Option<TrustConfig> {
    let p = "trust";
    let t = r.optional_section(
        root,
        p,
        &[
            "key_file",
            "tsa_url",
            "tsa_interval_seconds",
            "tsa_max_per_run",
        ],
    );
    let key = r
        .string(t, p, "key_file", false)
        .unwrap_or_else(|| "controller-key.pem".into());
    // Relative to the config file, like the SQLite path.
    let key_file = file.parent().unwrap_or(Path::new(".")).join(key);
    let tsa_url = r.string(t, p, "tsa_url", false).filter(|u| !u.is_empty());
    if let Some(u) = &tsa_url {
        // Tokens are signed by the authority: plain HTTP is what most authorities offer, and
        // this build has no TLS client for it.
        if !u.starts_with("http://") {
            r.problem(
                join(p, "tsa_url"),
                format!("{u:?}: expected an http:// URL (https is not supported)"),
            );
        }
    }
    let interval = r.int(t, p, "tsa_interval_seconds", 1..=86_400, 600);
    let max = r.int(t, p, "tsa_max_per_run", 1..=1_000_000, 10_000);
    Some(TrustConfig {
        key_file,
        tsa_url,
        tsa_interval: Duration::from_secs(interval? as u64),
        tsa_max_per_run: max? as u32,
    })
}

fn http(r: &mut TomlReader, root: &toml::Table) -> Option<HttpConfig> {
    let p = "http";
    let t = r.optional_section(
        root,
        p,
        &[
            "listen",
            "cookie_secure",
            "session_hours",
            "trusted_proxies",
            "max_connections",
            "header_timeout_seconds",
            "request_timeout_seconds",
            "max_streams_per_user",
        ],
    );
    let listen = r
        .string(t, p, "listen", false)
        .unwrap_or_else(|| "127.0.0.1:8080".into());
    let listen = match listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            r.problem(
                join(p, "listen"),
                format!("{listen:?} is not an address like 127.0.0.1:8080 or [::]:443"),
            );
            None
        }
    };
    let cookie_secure = r.bool(t, p, "cookie_secure", true);
    let hours = r.int(t, p, "session_hours", 1..=24 * 30, 12);
    let trusted_proxies = match t.get("trusted_proxies") {
        None => Some(vec!["127.0.0.1".parse().unwrap(), "::1".parse().unwrap()]),
        Some(v) => {
            let list: Option<Vec<std::net::IpAddr>> = v
                .as_array()
                .and_then(|a| a.iter().map(|x| x.as_str()?.parse().ok()).collect());
            if list.is_none() {
                r.problem(
                    join(p, "trusted_proxies"),
                    "expected a list of IP addresses, like [\"127.0.0.1\"]",
                );
            }
            list
        }
    };
    let max_connections = r.int(t, p, "max_connections", 16..=1_000_000, 4096);
    let header_timeout = r.int(t, p, "header_timeout_seconds", 1..=300, 10);
    let request_timeout = r.int(t, p, "request_timeout_seconds", 1..=3600, 30);
    let streams = r.int(t, p, "max_streams_per_user", 1..=1000, 8);
    Some(HttpConfig {
        listen: listen?,
        cookie_secure: cookie_secure?,
        session_ttl: Duration::from_secs(hours? as u64 * 3600),
        trusted_proxies: trusted_proxies?,
        max_connections: max_connections? as usize,
        header_timeout: Duration::from_secs(header_timeout? as u64),
        request_timeout: Duration::from_secs(request_timeout? as u64),
        max_streams_per_user: streams? as usize,
    })
}

fn database(r: &mut TomlReader, root: &toml::Table, file: &Path) -> Option<DatabaseConfig> {
    let p = "database";
    let t = r.optional_section(
        root,
        p,
        &[
            "url",
            "max_connections",
            "history_days",
            "write_queue_bytes",
            "events_days",
            "audit_days",
        ],
    );
    let url = r
        .string(t, p, "url", false)
        .unwrap_or_else(|| "sqlite://controller.db".into());
    let url = if let Some(path) = url.strip_prefix("sqlite://") {
        if path.is_empty() {
            r.problem(join(p, "url"), "sqlite:// needs a file path");
            None
        } else {
            // A relative path is relative to the config file, not to the working directory.
            let path = Path::new(path.split('?').next().unwrap_or(path));
            let abs = if path.is_absolute() {
                path.to_owned()
            } else {
                file.parent().unwrap_or(Path::new(".")).join(path)
            };
            Some(format!("sqlite://{}", abs.display()))
        }
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Some(url)
    } else {
        r.problem(
            join(p, "url"),
            format!("{url:?}: expected sqlite://PATH or postgres://USER@HOST/DB"),
        );
        None
    };
    let max = r.int(t, p, "max_connections", 1..=256, 8);
    let days = r.int(t, p, "history_days", 1..=3650, 30);
    let queue = r.int(
        t,
        p,
        "write_queue_bytes",
        16_384..=17_179_869_184,
        67_108_864,
    );
    let events = r.int(t, p, "events_days", 1..=36_500, 400);
    let audit = r.int(t, p, "audit_days", 1..=36_500, 3650);
    Some(DatabaseConfig {
        url: url?,
        max_connections: max? as u32,
        history_days: days? as u32,
        events_days: events? as u32,
        audit_days: audit? as u32,
        write_queue_bytes: queue? as u64,
    })
}

/// The default MQTT client id of a replica: `station-controller-<host>-<HTTP port>`. Stable
/// across restarts (so a restarted replica resumes its persistent session and the messages the
/// broker queued for it, instead of leaving a dead session in the shared group that keeps
/// taking its share), and distinct for replicas on one host (they cannot share a port).
pub fn default_client_id(listen_port: u16) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        .collect();
    let host = if host.is_empty() { "localhost" } else { &host };
    format!("station-controller-{host}-{listen_port}")
}

fn mqtt(
    r: &mut TomlReader,
    root: &toml::Table,
    check_machine: bool,
    listen_port: u16,
) -> Option<MqttConfig> {
    let p = "mqtt";
    let allowed: Vec<&str> = BROKER_KEYS
        .iter()
        .copied()
        .chain([
            "client_id",
            "keepalive_seconds",
            "shared_group",
            "mount_point",
            "command_ttl_seconds",
        ])
        .collect();
    let t = r.optional_section(root, p, &allowed);
    let broker = r.broker(t, p, Some("mqtt://127.0.0.1:1883"), check_machine);
    let client_id = r
        .string(t, p, "client_id", false)
        .unwrap_or_else(|| default_client_id(listen_port));
    if client_id.is_empty() || client_id.len() > 128 || client_id.contains(['+', '#', '/']) {
        r.problem(
            join(p, "client_id"),
            "must be 1 to 128 characters without '+', '#' or '/'",
        );
    }
    let keepalive = r.int(t, p, "keepalive_seconds", 5..=600, 30);
    let group = r
        .string(t, p, "shared_group", false)
        .unwrap_or_else(|| "controllers".into());
    if group.contains(['/', '+', '#']) {
        r.problem(join(p, "shared_group"), "must not contain '/', '+' or '#'");
    }
    let mount_point = r.string(t, p, "mount_point", false).unwrap_or_default();
    if let Err(e) = validate_mount_point(&mount_point) {
        r.problem(join(p, "mount_point"), e.to_string());
    }
    let ttl = r.int(t, p, "command_ttl_seconds", 5..=3600, 300);
    Some(MqttConfig {
        command_ttl: Duration::from_secs(ttl? as u64),
        broker: broker?,
        client_id,
        keepalive: Duration::from_secs(keepalive? as u64),
        shared_group: Some(group).filter(|g| !g.is_empty()),
        mount_point,
    })
}

fn rules(r: &mut TomlReader, root: &toml::Table) -> Option<RulesConfig> {
    let p = "rules";
    let t = r.optional_section(
        root,
        p,
        &[
            "missed_reports",
            "segment_factor",
            "min_disk_hours",
            "max_interval_seconds",
            "max_clock_skew_seconds",
        ],
    );
    let d = RulesConfig::default();
    let missed = r.int(t, p, "missed_reports", 2..=100, i64::from(d.missed_reports));
    let factor = r.number(t, p, "segment_factor", 1.0..=100.0, d.segment_factor);
    let hours = r.number(t, p, "min_disk_hours", 0.0..=10_000.0, d.min_disk_hours);
    let max_interval = r.int(
        t,
        p,
        "max_interval_seconds",
        1..=3600,
        i64::from(d.max_interval_s),
    );
    let skew = r.int(
        t,
        p,
        "max_clock_skew_seconds",
        1..=86_400,
        i64::from(d.max_clock_skew_s),
    );
    Some(RulesConfig {
        missed_reports: missed? as u32,
        segment_factor: factor?,
        min_disk_hours: hours?,
        max_interval_s: max_interval? as u32,
        max_clock_skew_s: skew? as u32,
    })
}

fn auth(r: &mut TomlReader, root: &toml::Table, check_machine: bool) -> Option<AuthConfig> {
    let p = "auth";
    let t = r.optional_section(root, p, &["bootstrap_admin", "bootstrap_password_file"]);
    let user = r.string(t, p, "bootstrap_admin", false);
    let file = r.file(t, p, "bootstrap_password_file", check_machine);
    let bootstrap_admin = match (user, file) {
        (Some(u), Some(f)) => match std::fs::read_to_string(&f) {
            Ok(pw) => {
                let pw = pw.trim_end_matches(['\n', '\r']).to_owned();
                if pw.chars().count() < MIN_PASSWORD_CHARS {
                    r.problem(
                        join(p, "bootstrap_password_file"),
                        format!(
                            "the password in {} is shorter than {} characters",
                            f.display(),
                            MIN_PASSWORD_CHARS
                        ),
                    );
                }
                Some((u, pw))
            }
            Err(e) if check_machine => {
                r.problem(
                    join(p, "bootstrap_password_file"),
                    format!("{}: {e}", f.display()),
                );
                None
            }
            Err(_) => None,
        },
        (None, None) => None,
        (Some(_), None) => {
            r.problem(
                join(p, "bootstrap_password_file"),
                "bootstrap_admin needs bootstrap_password_file",
            );
            None
        }
        (None, Some(_)) => {
            r.problem(
                join(p, "bootstrap_admin"),
                "bootstrap_password_file needs bootstrap_admin",
            );
            None
        }
    };
    Some(AuthConfig { bootstrap_admin })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ControllerConfig, ConfigError> {
        ControllerConfig::parse(Path::new("/etc/sw/controller.toml"), text, false)
    }

    #[test]
    fn empty_file_takes_every_default() {
        let c = parse("").unwrap();
        assert_eq!(c.http.listen, "127.0.0.1:8080".parse().unwrap());
        assert!(c.http.cookie_secure);
        assert_eq!(c.database.url, "sqlite:///etc/sw/controller.db");
        assert_eq!(
            (c.mqtt.broker.host.as_str(), c.mqtt.broker.port),
            ("127.0.0.1", 1883)
        );
        assert_eq!(c.mqtt.shared_group.as_deref(), Some("controllers"));
        assert_eq!(c.mqtt.mount_point, "");
        // Stable: the same on every start (no pid), distinct per HTTP port.
        assert!(c.mqtt.client_id.starts_with("station-controller-"));
        assert!(c.mqtt.client_id.ends_with("-8080"), "{}", c.mqtt.client_id);
        assert_eq!(parse("").unwrap().mqtt.client_id, c.mqtt.client_id);
        let other = parse("[http]\nlisten = \"127.0.0.1:8081\"").unwrap();
        assert_ne!(other.mqtt.client_id, c.mqtt.client_id);
        assert_eq!(c.rules, RulesConfig::default());
        assert_eq!(c.database.write_queue_bytes, 64 << 20);
        assert_eq!(c.trust.key_file, Path::new("/etc/sw/controller-key.pem"));
        assert!(c.trust.tsa_url.is_none());
        assert_eq!(c.trust.tsa_interval, Duration::from_secs(600));
    }

    #[test]
    fn archive_defaults_to_a_folder_next_to_the_database() {
        let c = parse("").unwrap();
        assert_eq!(
            c.archive.store,
            ArchiveStoreConfig::Local("/etc/sw/archive".into())
        );
        assert_eq!(c.archive.staging, Path::new("/etc/sw/archive-staging"));
        assert_eq!(c.archive.max_uploads, 32);
        let c = parse("[database]\nurl = \"sqlite:///var/lib/sw/c.db\"").unwrap();
        assert_eq!(
            c.archive.store,
            ArchiveStoreConfig::Local("/var/lib/sw/archive".into())
        );
    }

    #[test]
    fn archive_retention_and_holds_are_read_and_checked() {
        let c = parse(
            "[archive]\nkeep_days = 60\ndelete_after_days = 400\ncheck_interval_seconds = 600\n\
             [[archive.hold]]\nstation = \"KG-0042\"\nfrom = \"2026-11-21T06:00:00Z\"\nto = \"2026-11-23T22:00:00Z\"\nreason = \"case 113\"",
        )
        .unwrap();
        let r = &c.archive.retention;
        assert_eq!((r.keep_days, r.delete_after_days), (60, 400));
        assert_eq!(r.check_interval, Duration::from_secs(600));
        assert_eq!(r.holds.len(), 1);
        assert_eq!(r.holds[0].station.as_ref().unwrap().as_str(), "KG-0042");
        assert_eq!(r.holds[0].camera, None);
        assert_eq!(r.holds[0].from, 1_795_240_800_000);
        // Defaults: nothing deleted by age.
        assert_eq!(parse("").unwrap().archive.retention.delete_after_days, 0);
        let e = parse("[archive]\nkeep_days = 60\ndelete_after_days = 30").unwrap_err();
        assert!(e.to_string().contains("archive.delete_after_days"), "{e}");
        let e = parse(
            "[[archive.hold]]\nfrom = \"2026-11-21\"\nto = \"2026-11-20T00:00:00Z\"\nreason = \"\"\ncamera = \"a b\"",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "archive.hold[0].from",
            "archive.hold[0].reason",
            "archive.hold[0].camera",
        ] {
            assert!(e.contains(key), "{key} not in {e}");
        }
    }

    #[test]
    fn archive_section_is_read_and_checked() {
        let c = parse(
            "[archive]\nstore = \"s3://footage/pu/\"\nendpoint = \"http://127.0.0.1:9000\"\nallow_http = true\naccess_key_id = \"a\"\nsecret_access_key = \"b\"\nstaging = \"/srv/staging\"\nmax_uploads = 4",
        )
        .unwrap();
        let ArchiveStoreConfig::S3(s3) = &c.archive.store else {
            panic!("{:?}", c.archive.store)
        };
        assert_eq!((s3.bucket.as_str(), s3.prefix.as_str()), ("footage", "pu"));
        assert_eq!(s3.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
        assert_eq!(s3.region, "us-east-1");
        assert!(s3.allow_http);
        assert!(!format!("{s3:?}").contains("\"b\""));
        assert_eq!(c.archive.staging, Path::new("/srv/staging"));
        assert_eq!(c.archive.max_uploads, 4);
        let e = parse(
            "[archive]\nstore = \"file://relative\"\nmax_uploads = 0\naccess_key_id = \"a\"\nbucket = 1",
        )
        .unwrap_err();
        let keys: Vec<_> = e.problems().iter().map(|p| p.key.as_str()).collect();
        for k in [
            "archive.store",
            "archive.max_uploads",
            "archive.secret_access_key",
            "archive.bucket",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        let e = parse("[archive]\nstore = \"s3://b\"\nendpoint = \"http://x:1\"").unwrap_err();
        assert!(e.to_string().contains("archive.endpoint"), "{e}");
        let e = parse("[archive]\nstore = \"ftp://x\"").unwrap_err();
        assert!(e.to_string().contains("archive.store"), "{e}");
    }

    #[test]
    fn requests_section_is_read_and_checked() {
        let c = parse("").unwrap();
        assert_eq!(c.requests.max_window_ms, 24 * 3_600_000);
        assert!(c.requests.auto_approve.is_empty());
        let c = parse("[requests]\nauto_approve = [\"operator\"]\nhold_days = 45").unwrap();
        assert_eq!(c.requests.auto_approve, vec!["operator".to_owned()]);
        assert_eq!(c.requests.hold_ms, 45 * 86_400_000);
        for bad in [
            "auto_approve = [\"boss\"]",
            "auto_approve = \"admin\"",
            "max_window_minutes = 0",
        ] {
            let e = parse(&format!("[requests]\n{bad}")).unwrap_err();
            assert!(
                e.problems().iter().any(|p| p.key.starts_with("requests.")),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn write_queue_is_range_checked() {
        let c = parse("[database]\nwrite_queue_bytes = 16384").unwrap();
        assert_eq!(c.database.write_queue_bytes, 16384);
        for bad in ["16383", "17179869185", "\"big\""] {
            let e = parse(&format!("[database]\nwrite_queue_bytes = {bad}")).unwrap_err();
            assert!(
                e.problems()
                    .iter()
                    .any(|p| p.key == "database.write_queue_bytes"),
                "{bad}: {e}"
            );
        }
    }

    #[test]
    fn trust_section_is_read_and_checked() {
        let c = parse(
            "[trust]\nkey_file = \"/var/lib/sw/key.pem\"\ntsa_url = \"http://tsa.example/\"\ntsa_interval_seconds = 60\ntsa_max_per_run = 5",
        )
        .unwrap();
        assert_eq!(c.trust.key_file, Path::new("/var/lib/sw/key.pem"));
        assert_eq!(c.trust.tsa_url.as_deref(), Some("http://tsa.example/"));
        assert_eq!(c.trust.tsa_interval, Duration::from_secs(60));
        assert_eq!(c.trust.tsa_max_per_run, 5);
        let e = parse("[trust]\ntsa_url = \"ftp://x\"\ntsa_interval_seconds = 0\nkeyfile = 1")
            .unwrap_err();
        let keys: Vec<_> = e.problems().iter().map(|p| p.key.as_str()).collect();
        for k in [
            "trust.tsa_url",
            "trust.tsa_interval_seconds",
            "trust.keyfile",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
    }

    #[test]
    fn every_problem_is_named_with_file_and_key() {
        let e = parse(
            r#"
            [http]
            listen = "localhost"
            session_hours = 0
            [database]
            url = "mysql://x"
            [mqtt]
            url = "mqtts://broker"
            shared_group = "a/b"
            colour = "red"
            [rules]
            min_disk_hours = "lots"
            "#,
        )
        .unwrap_err();
        let keys: Vec<_> = e.problems().iter().map(|p| p.key.as_str()).collect();
        for k in [
            "http.listen",
            "http.session_hours",
            "database.url",
            "mqtt.colour",
            "mqtt.shared_group",
            "mqtt.ca_file",
            "rules.min_disk_hours",
        ] {
            assert!(keys.contains(&k), "{k} missing from {keys:?}");
        }
        let text = e.to_string();
        assert!(
            text.contains("/etc/sw/controller.toml: database.url:"),
            "{text}"
        );
    }

    #[test]
    fn live_section_is_read_and_checked() {
        // Absent: live viewing off.
        assert!(parse("").unwrap().live.is_none());
        let c = parse("[live]\nhls_dir = \"/srv/hls\"").unwrap();
        let l = c.live.unwrap();
        assert_eq!(l.hls_dir, Path::new("/srv/hls"));
        // The secrets next to the config file unless told otherwise; no public page by default.
        assert_eq!(l.secret_file, Path::new("/etc/sw/live.secret"));
        assert_eq!(l.gateway_token_file, Path::new("/etc/sw/gateway.token"));
        assert!(!l.public_page);
        let c = parse(
            "[live]\nhls_dir = \"/srv/hls\"\nsecret_file = \"/run/s\"\n\
             gateway_token_file = \"keys/t\"\npublic_page = true",
        )
        .unwrap();
        let l = c.live.unwrap();
        assert_eq!(
            (l.secret_file.as_path(), l.gateway_token_file.as_path()),
            (Path::new("/run/s"), Path::new("/etc/sw/keys/t"))
        );
        assert!(l.public_page);
        assert_eq!(l.station_srt_url, None);
        let c =
            parse("[live]\nhls_dir = \"/srv/hls\"\nstation_srt_url = \"srt://gw.example:9710\"")
                .unwrap();
        assert_eq!(
            c.live.unwrap().station_srt_url.as_deref(),
            Some("srt://gw.example:9710")
        );
        // A section without its folder, a relative folder, a wrong type, an unknown key, a
        // stations' SRT address that is not srt://HOST:PORT or carries a passphrase: each named
        // with the file and the key.
        for (text, key) in [
            ("[live]\npublic_page = true", "live.hls_dir"),
            (
                "[live]\nhls_dir = \"/srv/hls\"\nstation_srt_url = \"srt://gw:9710?passphrase=x\"",
                "live.station_srt_url",
            ),
            (
                "[live]\nhls_dir = \"/srv/hls\"\nstation_srt_url = \"https://gw:9710\"",
                "live.station_srt_url",
            ),
            (
                "[live]\nhls_dir = \"/srv/hls\"\nstation_srt_url = \"srt://gw\"",
                "live.station_srt_url",
            ),
            ("[live]\nhls_dir = \"hls\"", "live.hls_dir"),
            (
                "[live]\nhls_dir = \"/srv/hls\"\npublic_page = \"yes\"",
                "live.public_page",
            ),
            (
                "[live]\nhls_dir = \"/srv/hls\"\npublic = true",
                "live.public",
            ),
        ] {
            let e = parse(text).unwrap_err();
            let keys: Vec<_> = e.problems().iter().map(|p| p.key.as_str()).collect();
            assert!(keys.contains(&key), "{text}: {keys:?}");
            assert!(
                e.to_string()
                    .contains(&format!("/etc/sw/controller.toml: {key}")),
                "{e}"
            );
        }
    }

    #[test]
    fn postgres_and_absolute_sqlite_urls_are_kept() {
        let c = parse("[database]\nurl = \"postgres://sw@db/sw\"").unwrap();
        assert!(c.database.is_postgres());
        let c = parse("[database]\nurl = \"sqlite:///var/lib/sw/c.db\"").unwrap();
        assert_eq!(c.database.url, "sqlite:///var/lib/sw/c.db");
    }

    #[test]
    fn reference_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/controller.toml");
        let text = std::fs::read_to_string(&path).unwrap();
        let c = ControllerConfig::parse(&path, &text, false).unwrap();
        assert!(c.http.cookie_secure);
        // Its commented `[live]` section, switched on, says what the reader takes by default.
        let live: String = text
            .split_once("# [live]")
            .expect("the reference config documents [live]")
            .1
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| l.contains(" = "))
            .map(|l| format!("{l}\n"))
            .collect();
        let c = ControllerConfig::parse(&path, &format!("{text}\n[live]\n{live}"), false).unwrap();
        let dir = path.parent().unwrap();
        let parsed = c.live.unwrap();
        let defaults = parse("[live]\nhls_dir = \"/var/lib/stationwatch-gateway/hls\"")
            .unwrap()
            .live
            .unwrap();
        assert_eq!(parsed.secret_file, dir.join("live.secret"));
        assert_eq!(parsed.gateway_token_file, dir.join("gateway.token"));
        assert_eq!(parsed.public_page, defaults.public_page);
        assert_eq!(parsed.hls_dir, defaults.hls_dir);
    }
}
