//! The agent's configuration file: loading and validation.
//!
//! The file is TOML (`config/agent.toml` is the commented reference). Validation reports every
//! problem at once, each naming the file, the key and what is wrong, so a technician fixes the
//! whole file in one pass. Serde's derive stops at the first error, so the file is parsed into a
//! `toml::Table` and walked by [`Reader`], which collects problems instead of returning early.

use std::collections::HashMap;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

use chrono::{DateTime, Utc};
use stationwatch_protocol::broker_config::{BrokerConfig, BROKER_KEYS};
use stationwatch_protocol::config_reader::{join, parse_config, read_file, TomlReader};
pub use stationwatch_protocol::config_reader::{ConfigError, Problem};
use stationwatch_protocol::{CameraId, StationId};

use crate::config::source::CameraSource;

mod live;
pub mod source;
mod upload;
pub use live::{
    read_passphrase, CameraLiveConfig, LiveConfig, LiveSetting, LiveTarget, PolicyConfig,
    PASSPHRASE_LEN,
};
pub use upload::{paused_at, UploadConfig};

/// Segment length bounds, seconds. Short segments are for tests; long ones make a lost file cost
/// too much footage.
pub const SEGMENT_SECONDS: RangeInclusive<i64> = 2..=900;
/// How many cameras one agent records.
pub const MAX_CAMERAS: usize = 4;

/// A validated agent configuration.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// The file this came from (for messages).
    pub file: PathBuf,
    pub station: StationId,
    /// Free text for people (`station.name`, `station.region`), reported in health.
    pub station_name: Option<String>,
    pub region: Option<String>,
    /// The station's Ed25519 signing key (generated on first run if missing).
    pub station_key: PathBuf,
    pub storage: StorageConfig,
    pub retention: RetentionConfig,
    /// Reporting to the controller; `None` when the file has no `[mqtt]` section (record only).
    pub mqtt: Option<MqttConfig>,
    pub supervision: SupervisionConfig,
    /// The view analysis of every camera (`[view]`, `docs/camera-view.md`).
    pub view: ViewConfig,
    /// The `[live]` section: the live rung policy (used by cameras with a `live_target`).
    pub live: LiveConfig,
    /// The `[upload]` section: uploads to the archive; `None` when absent (nothing leaves the
    /// station).
    pub upload: Option<UploadConfig>,
    pub cameras: Vec<CameraConfig>,
}

#[derive(Debug, Clone)]
pub struct StorageConfig {
    /// Root folder: segments go to `<path>/<camera>/<YYYY-MM-DD>/`.
    pub path: PathBuf,
    /// Target segment length; segments split on the first keyframe at or after it.
    pub segment: Duration,
    /// How often the open segment is flushed to stable storage (power-cut safety).
    pub sync_interval: Duration,
}

/// What may be deleted, and when. Nothing younger than `keep_days` and nothing under a legal
/// hold is ever deleted by policy.
#[derive(Debug, Clone)]
pub struct RetentionConfig {
    /// Footage younger than this is never deleted by policy (the legal minimum).
    pub keep_days: u32,
    /// Footage older than this is deleted even when space is plentiful; `None`: never by age.
    pub delete_after_days: Option<u32>,
    /// Below this much free space, the oldest deletable footage is deleted.
    pub min_free_bytes: u64,
    /// How often retention runs (it also runs at once when a disk-full write error occurs).
    pub check_interval: Duration,
    pub holds: Vec<LegalHold>,
}

/// Footage in `[from, to]` (of one camera, or all) that policy must never delete.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LegalHold {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub camera: Option<CameraId>,
    pub reason: String,
}

impl LegalHold {
    /// Whether a segment of `camera` spanning `[start, end]` is held.
    pub fn covers(&self, camera: &CameraId, start: DateTime<Utc>, end: DateTime<Utc>) -> bool {
        self.camera.as_ref().is_none_or(|c| c == camera) && start <= self.to && end >= self.from
    }
}

/// Reporting to the controller over MQTT.
#[derive(Debug, Clone)]
pub struct MqttConfig {
    /// Where the broker is and how to log in (keys shared with the controller).
    pub broker: BrokerConfig,
    pub keepalive: Duration,
    pub health_interval: Duration,
    pub command_max_age: Duration,
    pub outbox: PathBuf,
    pub outbox_max_messages: usize,
    pub outbox_max_bytes: u64,
}

/// `[view]`: how each camera's picture is watched for tampering.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewConfig {
    /// Whether pictures are analysed at all (`analysis`, default true).
    pub analysis: bool,
    /// Time between two analysed pictures (`interval_ms`, default 2000).
    pub interval: Duration,
    /// How long a problem must last before it counts (`persist_seconds`, default 20).
    pub persist: Duration,
}

impl Default for ViewConfig {
    fn default() -> Self {
        ViewConfig {
            analysis: true,
            interval: Duration::from_secs(2),
            persist: Duration::from_secs(20),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SupervisionConfig {
    /// No data for this long counts as a lost camera, even without an error.
    pub stall_timeout: Duration,
    /// First reconnect delay; doubles per failure up to `reconnect_max`, with jitter.
    pub reconnect_initial: Duration,
    pub reconnect_max: Duration,
}

#[derive(Debug, Clone)]
pub struct CameraConfig {
    pub id: CameraId,
    pub source: CameraSource,
    /// Encoding settings, used only for sources the agent encodes itself (test, V4L2).
    pub encode: EncodeSettings,
    /// Live streaming, when the camera has a `live_target` (`config/live.rs`).
    pub live: Option<CameraLiveConfig>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
}

impl Default for EncodeSettings {
    fn default() -> Self {
        Self {
            width: 1280,
            height: 720,
            fps: 15,
            bitrate_kbps: 2000,
        }
    }
}

impl AgentConfig {
    /// Reads and validates a config file, including checks against the machine (storage
    /// writable, V4L2 devices present).
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        Self::parse(file, &read_file(file)?, true)
    }

    /// Validates config text. `check_machine` also checks the storage folder and devices.
    pub fn parse(file: &Path, text: &str, check_machine: bool) -> Result<Self, ConfigError> {
        parse_config(file, text, |root| {
            let mut r = Reader::default();
            let cfg = r.agent(root, check_machine).map(|cfg| AgentConfig {
                file: file.to_owned(),
                ..cfg
            });
            (cfg, r.0.problems)
        })
    }

    /// Folder of one camera's recordings.
    pub fn camera_dir(&self, camera: &CameraId) -> PathBuf {
        self.storage.path.join(camera.as_str())
    }
}

/// Walks the TOML tree, collecting every problem: the shared reader's getters plus the
/// agent's sections.
#[derive(Default)]
struct Reader(TomlReader);

impl std::ops::Deref for Reader {
    type Target = TomlReader;
    fn deref(&self) -> &TomlReader {
        &self.0
    }
}

impl std::ops::DerefMut for Reader {
    fn deref_mut(&mut self) -> &mut TomlReader {
        &mut self.0
    }
}

fn type_name(v: &toml::Value) -> &'static str {
    v.type_str()
}

impl Reader {
    fn agent(&mut self, root: &toml::Table, check_machine: bool) -> Option<AgentConfig> {
        self.unknown_keys(
            root,
            "",
            &[
                "station",
                "storage",
                "retention",
                "mqtt",
                "supervision",
                "live",
                "upload",
                "view",
                "camera",
            ],
        );
        let station = self.station(root);
        let storage = self.storage(root, check_machine);
        let supervision = self.supervision(root);
        let view = self.view(root);
        let cameras = self.cameras(root, check_machine);
        let retention = self.retention(root, cameras.as_deref().unwrap_or_default());
        let mqtt = self.mqtt(root, check_machine);
        let live = self.live_section(root, check_machine);
        let upload = self.upload(root, cameras.as_deref().unwrap_or_default(), check_machine);
        let (station, station_key, station_name, region) = station?;
        let storage = storage?;
        let mqtt = match mqtt? {
            Some(mut m) => {
                if m.broker.username.is_none() {
                    m.broker.username = Some(station.to_string());
                }
                if m.outbox.as_os_str().is_empty() {
                    m.outbox = storage
                        .path
                        .parent()
                        .unwrap_or(Path::new("/"))
                        .join("outbox");
                }
                Some(m)
            }
            None => None,
        };
        let station_key = match station_key {
            Some(k) => k,
            None => storage
                .path
                .parent()
                .unwrap_or(Path::new("/"))
                .join("station.key"),
        };
        Some(AgentConfig {
            file: PathBuf::new(),
            station,
            station_name,
            region,
            station_key,
            storage,
            retention: retention?,
            mqtt,
            supervision: supervision?,
            view: view?,
            live: live?,
            upload: upload?,
            cameras: cameras?,
        })
    }

    #[allow(clippy::type_complexity)]
    fn station(
        &mut self,
        root: &toml::Table,
    ) -> Option<(StationId, Option<PathBuf>, Option<String>, Option<String>)> {
        let t = self.table(root, "", "station", true)?;
        self.unknown_keys(t, "station", &["id", "name", "region", "key_file"]);
        // `name` and `region` are free text for humans; only their type is checked.
        let name = self.string(t, "station", "name", false);
        let region = self.string(t, "station", "region", false);
        let key_file = self.string(t, "station", "key_file", false).and_then(|k| {
            let p = PathBuf::from(&k);
            if p.is_absolute() {
                Some(p)
            } else {
                self.problem(
                    "station.key_file",
                    format!("{k:?} must be an absolute path"),
                );
                None
            }
        });
        let id = self.string(t, "station", "id", true)?;
        match StationId::new(id.clone()) {
            Ok(id) => Some((id, key_file, name, region)),
            Err(e) => {
                self.problem("station.id", format!("{id:?} {e}"));
                None
            }
        }
    }

    fn retention(
        &mut self,
        root: &toml::Table,
        cameras: &[CameraConfig],
    ) -> Option<RetentionConfig> {
        let t = self.optional_section(
            root,
            "retention",
            &[
                "keep_days",
                "delete_after_days",
                "min_free_mb",
                "check_interval_seconds",
                "hold",
            ],
        );
        let keep = self.int(t, "retention", "keep_days", 0..=3650, 30);
        let after = self.int(t, "retention", "delete_after_days", 0..=36500, 0);
        let free = self.int(t, "retention", "min_free_mb", 0..=100_000_000, 1024);
        let interval = self.int(t, "retention", "check_interval_seconds", 1..=3600, 30);
        let mut holds = Vec::new();
        let mut holds_ok = true;
        match t.get("hold") {
            None => {}
            Some(toml::Value::Array(list)) => {
                for (i, v) in list.iter().enumerate() {
                    let path = format!("retention.hold[{i}]");
                    let toml::Value::Table(h) = v else {
                        self.problem(path, format!("must be a table, found {}", type_name(v)));
                        holds_ok = false;
                        continue;
                    };
                    self.unknown_keys(h, &path, &["from", "to", "camera", "reason"]);
                    let from = self.time(h, &path, "from");
                    let to = self.time(h, &path, "to");
                    let reason = self.string(h, &path, "reason", true);
                    let camera = self.string(h, &path, "camera", false).map(|c| {
                        let known = cameras.iter().find(|cam| cam.id.as_str() == c);
                        if known.is_none() && !cameras.is_empty() {
                            self.problem(
                                join(&path, "camera"),
                                format!("{c:?} is not a configured camera id"),
                            );
                        }
                        CameraId::new(c)
                    });
                    match (from, to, reason, camera) {
                        (Some(from), Some(to), Some(reason), camera) if from <= to => {
                            holds.push(LegalHold {
                                from,
                                to,
                                camera: camera.and_then(Result::ok),
                                reason,
                            })
                        }
                        (Some(_), Some(_), Some(_), _) => {
                            self.problem(join(&path, "to"), "is before `from`");
                            holds_ok = false;
                        }
                        _ => holds_ok = false,
                    }
                }
            }
            Some(v) => {
                self.problem(
                    "retention.hold",
                    format!(
                        "must be an array of tables ([[retention.hold]]), found {}",
                        type_name(v)
                    ),
                );
                holds_ok = false;
            }
        }
        let (keep, after) = (keep?, after?);
        if after != 0 && after < keep {
            self.problem(
                "retention.delete_after_days",
                format!("{after} is shorter than keep_days ({keep})"),
            );
            return None;
        }
        holds_ok.then_some(())?;
        Some(RetentionConfig {
            keep_days: keep as u32,
            delete_after_days: (after != 0).then_some(after as u32),
            min_free_bytes: free? as u64 * 1024 * 1024,
            check_interval: Duration::from_secs(interval? as u64),
            holds,
        })
    }

    fn storage(&mut self, root: &toml::Table, check_machine: bool) -> Option<StorageConfig> {
        let t = self.table(root, "", "storage", true)?;
        self.unknown_keys(
            t,
            "storage",
            &["path", "segment_seconds", "sync_interval_ms"],
        );
        let path = self.string(t, "storage", "path", true).and_then(|p| {
            let path = PathBuf::from(&p);
            if !path.is_absolute() {
                self.problem("storage.path", format!("{p:?} must be an absolute path"));
                return None;
            }
            if check_machine {
                if let Err(e) = check_writable(&path) {
                    self.problem("storage.path", format!("{p:?} is not writable: {e}"));
                    return None;
                }
            }
            Some(path)
        });
        let segment = self.int(t, "storage", "segment_seconds", SEGMENT_SECONDS, 60);
        let sync = self.int(t, "storage", "sync_interval_ms", 100..=10_000, 1000);
        Some(StorageConfig {
            path: path?,
            segment: Duration::from_secs(segment? as u64),
            sync_interval: Duration::from_millis(sync? as u64),
        })
    }

    /// `Some(None)`: no `[mqtt]` section; `None`: invalid.
    fn mqtt(&mut self, root: &toml::Table, check_machine: bool) -> Option<Option<MqttConfig>> {
        let Some(t) = self.table(root, "", "mqtt", false) else {
            return Some(None).filter(|_| !root.contains_key("mqtt"));
        };
        let p = "mqtt";
        let allowed: Vec<&str> = BROKER_KEYS
            .iter()
            .copied()
            .chain([
                "keepalive_seconds",
                "health_interval_seconds",
                "command_max_age_seconds",
                "outbox_path",
                "outbox_max_messages",
                "outbox_max_mb",
            ])
            .collect();
        self.unknown_keys(t, p, &allowed);
        let broker = self.broker(t, p, None, check_machine);
        let keepalive = self.int(t, p, "keepalive_seconds", 5..=3600, 30);
        let health = self.int(t, p, "health_interval_seconds", 1..=3600, 15);
        let max_age = self.int(t, p, "command_max_age_seconds", 1..=86_400, 300);
        let outbox = self.string(t, p, "outbox_path", false).map(PathBuf::from);
        let outbox_max = self.int(t, p, "outbox_max_messages", 10..=1_000_000, 10_000);
        let outbox_mb = self.int(t, p, "outbox_max_mb", 1..=10_000, 50);
        Some(Some(MqttConfig {
            broker: broker?,
            keepalive: Duration::from_secs(keepalive? as u64),
            health_interval: Duration::from_secs(health? as u64),
            command_max_age: Duration::from_secs(max_age? as u64),
            outbox: outbox.unwrap_or_default(),
            outbox_max_messages: outbox_max? as usize,
            outbox_max_bytes: outbox_mb? as u64 * 1024 * 1024,
        }))
    }

    fn supervision(&mut self, root: &toml::Table) -> Option<SupervisionConfig> {
        let t = self.optional_section(
            root,
            "supervision",
            &[
                "stall_timeout_seconds",
                "reconnect_initial_ms",
                "reconnect_max_ms",
            ],
        );
        let stall = self.int(t, "supervision", "stall_timeout_seconds", 2..=60, 5);
        let initial = self.int(t, "supervision", "reconnect_initial_ms", 100..=10_000, 500);
        let max = self.int(t, "supervision", "reconnect_max_ms", 1_000..=60_000, 10_000);
        let (stall, initial, max) = (stall?, initial?, max?);
        if max < initial {
            self.problem(
                "supervision.reconnect_max_ms",
                format!("{max} is smaller than reconnect_initial_ms ({initial})"),
            );
            return None;
        }
        Some(SupervisionConfig {
            stall_timeout: Duration::from_secs(stall as u64),
            reconnect_initial: Duration::from_millis(initial as u64),
            reconnect_max: Duration::from_millis(max as u64),
        })
    }

    fn view(&mut self, root: &toml::Table) -> Option<ViewConfig> {
        let t = self.optional_section(
            root,
            "view",
            &["analysis", "interval_ms", "persist_seconds"],
        );
        let analysis = self.bool(t, "view", "analysis", true);
        let interval = self.int(t, "view", "interval_ms", 250..=10_000, 2_000);
        let persist = self.int(t, "view", "persist_seconds", 1..=600, 20);
        let (analysis, interval, persist) = (analysis?, interval?, persist?);
        if persist * 1000 < interval {
            self.problem(
                "view.persist_seconds",
                format!("{persist} s is shorter than one interval ({interval} ms)"),
            );
            return None;
        }
        Some(ViewConfig {
            analysis,
            interval: Duration::from_millis(interval as u64),
            persist: Duration::from_secs(persist as u64),
        })
    }

    fn cameras(&mut self, root: &toml::Table, check_machine: bool) -> Option<Vec<CameraConfig>> {
        let list = match root.get("camera") {
            Some(toml::Value::Array(a)) => a,
            Some(v) => {
                self.problem(
                    "camera",
                    format!(
                        "must be an array of tables ([[camera]]), found {}",
                        type_name(v)
                    ),
                );
                return None;
            }
            None => {
                self.problem("camera", "at least one [[camera]] is required");
                return None;
            }
        };
        if list.is_empty() || list.len() > MAX_CAMERAS {
            self.problem(
                "camera",
                format!(
                    "{} cameras configured; between 1 and {MAX_CAMERAS} are supported",
                    list.len()
                ),
            );
        }
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in list.iter().enumerate() {
            let path = format!("camera[{i}]");
            let toml::Value::Table(t) = v else {
                self.problem(path, format!("must be a table, found {}", type_name(v)));
                ok = false;
                continue;
            };
            if let Some(toml::Value::String(id)) = t.get("id") {
                if let Some(first) = seen.insert(id.clone(), i) {
                    self.problem(
                        format!("{path}.id"),
                        format!("duplicate camera id {id:?} (also camera[{first}])"),
                    );
                    ok = false;
                }
            }
            match self.camera(t, &path, check_machine) {
                Some(c) => out.push(c),
                None => ok = false,
            }
        }
        ok.then_some(out)
    }

    fn camera(&mut self, t: &toml::Table, path: &str, check_machine: bool) -> Option<CameraConfig> {
        const ENCODE_KEYS: [&str; 4] = ["width", "height", "fps", "bitrate_kbps"];
        let allowed: Vec<&str> = ["id", "source", "width", "height", "fps", "bitrate_kbps"]
            .into_iter()
            .chain(live::CAMERA_KEYS)
            .collect();
        self.unknown_keys(t, path, &allowed);
        let id = self.string(t, path, "id", true).and_then(|id| {
            CameraId::new(id.clone())
                .map_err(|e| self.problem(join(path, "id"), format!("{id:?} {e}")))
                .ok()
        });
        let source = self.string(t, path, "source", true).and_then(|s| {
            match CameraSource::parse(&s) {
                Ok(src) => Some(src),
                Err(e) => {
                    // Never echo the raw string: it may hold a password.
                    self.problem(join(path, "source"), e.to_string());
                    None
                }
            }
        });
        let d = EncodeSettings::default();
        let width = self.int(t, path, "width", 16..=3840, d.width as i64);
        let height = self.int(t, path, "height", 16..=2160, d.height as i64);
        let fps = self.int(t, path, "fps", 1..=60, d.fps as i64);
        let bitrate = self.int(t, path, "bitrate_kbps", 64..=20_000, d.bitrate_kbps as i64);
        let live = self.camera_live(t, path, source.as_ref());
        let source = source?;
        if !source.is_encoded_by_agent() {
            for k in ENCODE_KEYS.iter().filter(|k| t.contains_key(**k)) {
                self.problem(
                    join(path, k),
                    "only applies to sources the agent encodes (test, /dev/videoN); \
                     RTSP streams are recorded as the camera sends them",
                );
            }
        }
        if check_machine {
            if let Err(e) = source.check_present() {
                self.problem(join(path, "source"), e.to_string());
            }
        }
        let encode = EncodeSettings {
            width: width? as u32,
            height: height? as u32,
            fps: fps? as u32,
            bitrate_kbps: bitrate? as u32,
        };
        if !encode.width.is_multiple_of(2) || !encode.height.is_multiple_of(2) {
            self.problem(
                join(path, "width"),
                format!(
                    "{}x{} must have even width and height for H.264",
                    encode.width, encode.height
                ),
            );
            return None;
        }
        Some(CameraConfig {
            id: id?,
            source,
            encode,
            live: live?,
        })
    }
}

/// Whether recordings can be written under `path`, without creating anything: the folder (or,
/// when it does not exist yet, its nearest existing ancestor, where the agent will create it)
/// must accept a new file.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    let existing = path
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or_else(|| Path::new("/"));
    if !existing.is_dir() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::NotADirectory,
            format!("{} is not a directory", existing.display()),
        ));
    }
    let probe = existing.join(format!(".stationwatch-probe-{}", std::process::id()));
    std::fs::write(&probe, b"probe")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<AgentConfig, ConfigError> {
        AgentConfig::parse(Path::new("/etc/stationwatch/agent.toml"), text, false)
    }

    const GOOD: &str = r#"
[station]
id = "KG-0042"
[storage]
path = "/var/lib/stationwatch"
[[camera]]
id = "desk"
source = "rtsp://admin:s3cret@192.0.2.10:554/stream1"
[[camera]]
id = "boxes"
source = "test"
width = 320
height = 240
"#;

    #[test]
    fn good_config_loads_with_defaults() {
        let c = parse(GOOD).expect("valid");
        assert_eq!(c.station.as_str(), "KG-0042");
        assert_eq!(c.storage.segment, Duration::from_secs(60));
        assert_eq!(c.supervision.stall_timeout, Duration::from_secs(5));
        assert_eq!(c.supervision.reconnect_max, Duration::from_secs(10));
        assert_eq!(c.cameras.len(), 2);
        assert_eq!(c.cameras[1].encode.width, 320);
        assert_eq!(c.cameras[1].encode.fps, 15);
    }

    #[test]
    fn every_problem_is_reported_at_once_with_its_key() {
        let text = r#"
[station]
id = "bad id"
colour = "red"
[storage]
path = "relative/path"
segment_seconds = 1
[[camera]]
id = "desk"
source = "http://user:topsecret@192.0.2.1/x"
[[camera]]
id = "desk"
source = "test"
fps = "fast"
"#;
        let err = parse(text).unwrap_err();
        let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
        for k in [
            "station.id",
            "station.colour",
            "storage.path",
            "storage.segment_seconds",
            "camera[0].source",
            "camera[1].id",
            "camera[1].fps",
        ] {
            assert!(keys.contains(&k), "missing problem for {k}: {keys:?}");
        }
        let msg = err.to_string();
        assert!(msg.contains("/etc/stationwatch/agent.toml"), "{msg}");
        assert!(msg.contains("duplicate camera id \"desk\""), "{msg}");
        assert!(msg.contains("1 is out of range (2..=900)"), "{msg}");
        assert!(msg.contains("unknown key"), "{msg}");
        assert!(!msg.contains("topsecret"), "password leaked: {msg}");
    }

    #[test]
    fn encode_settings_on_rtsp_camera_are_refused() {
        let text = GOOD.replace(
            "source = \"rtsp://admin:s3cret@192.0.2.10:554/stream1\"",
            "source = \"rtsp://192.0.2.10/s\"\nbitrate_kbps = 500",
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.problems().len(), 1, "{err}");
        assert_eq!(err.problems()[0].key, "camera[0].bitrate_kbps");
    }

    #[test]
    fn syntax_error_names_file_and_line() {
        let err = parse("[station\nid = 1").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("agent.toml"), "{msg}");
        assert!(msg.contains("not valid TOML"), "{msg}");
        assert!(msg.contains("line 1"), "{msg}");
    }

    #[test]
    fn missing_sections_and_too_many_cameras() {
        let err = parse("").unwrap_err();
        let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert_eq!(keys, ["station", "storage", "camera"]);

        let mut text = String::from("[station]\nid=\"s\"\n[storage]\npath=\"/x\"\n");
        for i in 0..5 {
            text.push_str(&format!("[[camera]]\nid=\"c{i}\"\nsource=\"test\"\n"));
        }
        let err = parse(&text).unwrap_err();
        assert!(err.to_string().contains("5 cameras configured"), "{err}");
    }

    #[test]
    fn unwritable_storage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let text = GOOD.replace("/var/lib/stationwatch", file.to_str().unwrap());
        let err = AgentConfig::parse(Path::new("a.toml"), &text, true).unwrap_err();
        assert!(
            err.problems()
                .iter()
                .any(|p| p.key == "storage.path" && p.message.contains("not writable")),
            "{err}"
        );
    }

    #[test]
    fn reference_config_is_valid() {
        let text = include_str!("../../../config/agent.toml");
        let c = parse(text).expect("config/agent.toml must stay valid");
        assert_eq!(c.cameras.len(), 2);
        // The reference documents the defaults: it must not change them.
        assert_eq!(c.storage.segment, Duration::from_secs(60));
        assert_eq!(c.storage.sync_interval, Duration::from_millis(1000));
    }

    #[test]
    fn missing_storage_folder_is_not_created_by_validation() {
        let dir = tempfile::tempdir().unwrap();
        let target = dir.path().join("a/b");
        let text = GOOD.replace("/var/lib/stationwatch", target.to_str().unwrap());
        AgentConfig::parse(Path::new("a.toml"), &text, true).expect("creatable is fine");
        assert!(!dir.path().join("a").exists());
    }

    #[test]
    fn mqtt_section_is_optional_and_validated() {
        assert!(parse(GOOD).unwrap().mqtt.is_none());
        let ok = parse(&format!(
            "{GOOD}\n[mqtt]\nurl = \"mqtts://broker.example.org\"\nca_file = \"/etc/ca.pem\"\npassword = \"pw\"\n"
        ))
        .unwrap();
        let m = ok.mqtt.expect("mqtt configured");
        assert_eq!(
            (m.broker.host.as_str(), m.broker.port),
            ("broker.example.org", 8883)
        );
        assert_eq!(
            m.broker.username.as_deref(),
            Some("KG-0042"),
            "defaults to the station id"
        );
        assert_eq!(m.outbox, Path::new("/var/lib/outbox"));
        assert!(
            !format!("{m:?}").contains("\"pw\""),
            "Debug must hide the password"
        );

        let err = parse(&format!(
            "{GOOD}\n[mqtt]\nurl = \"mqtts://u:secret@broker\"\nhealth_interval_seconds = 0\n"
        ))
        .unwrap_err();
        let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
        assert!(
            keys.contains(&"mqtt.url") && keys.contains(&"mqtt.health_interval_seconds"),
            "{err}"
        );
        assert!(!err.to_string().contains("secret"), "{err}");

        let err = parse(&format!("{GOOD}\n[mqtt]\nurl = \"mqtts://broker\"\n")).unwrap_err();
        assert_eq!(err.problems()[0].key, "mqtt.ca_file", "{err}");
    }

    #[test]
    fn reconnect_bounds_are_consistent() {
        let text = format!(
            "{GOOD}\n[supervision]\nreconnect_initial_ms = 5000\nreconnect_max_ms = 2000\n"
        );
        let err = parse(&text).unwrap_err();
        assert_eq!(err.problems()[0].key, "supervision.reconnect_max_ms");
    }
}
