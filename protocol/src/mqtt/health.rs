//! The periodic health report (retained as the latest).
//!
//! Every field but `v` and `at` may be missing when decoding (it is then `None`, empty or
//! `unknown`), so that an agent that cannot measure something simply leaves it out, and a
//! controller reads reports of older and newer agents alike. Floating-point values are never
//! NaN or infinite on the wire (serde_json would write `null`, read back as `None`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{DEFAULT_HEALTH_INTERVAL_S, SCHEMA_VERSION};
use crate::ids::{CameraId, StationId};
use crate::manifest::{Chain, Fingerprint, Hash256, Timestamp};

/// Payload of `stationwatch/v1/<station>/health`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    /// Schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    /// When the report was taken (agent clock).
    pub at: Timestamp,
    /// Seconds until the next report; the controller considers the report stale after three
    /// intervals without a newer one.
    #[serde(default = "default_interval")]
    pub interval_s: u32,
    /// The agent's target segment length, seconds: a recording camera finishes a segment at
    /// least this often (the controller flags a camera with no segment for twice as long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub segment_s: Option<u32>,
    #[serde(default)]
    pub agent: AgentInfo,
    /// One entry per configured camera, by camera id.
    #[serde(default)]
    pub cameras: BTreeMap<CameraId, CameraHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<DiskHealth>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockHealth>,
    #[serde(default)]
    pub system: SystemHealth,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink: Option<UplinkHealth>,
    /// Set while the legal holds file cannot be read or is invalid: the agent deletes nothing by
    /// policy until a person fixes it. Absent when the file is fine.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holds_file_error: Option<String>,
    /// Uploads to the archive (absent from agents without an `[upload]` section).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload: Option<super::upload::UploadHealth>,
}

fn default_interval() -> u32 {
    DEFAULT_HEALTH_INTERVAL_S
}

impl Health {
    /// An empty report taken at `at`, to be filled in field by field.
    pub fn new(at: Timestamp) -> Self {
        Health {
            v: SCHEMA_VERSION,
            at,
            interval_s: DEFAULT_HEALTH_INTERVAL_S,
            segment_s: None,
            agent: AgentInfo::default(),
            cameras: BTreeMap::new(),
            disk: None,
            clock: None,
            system: SystemHealth::default(),
            uplink: None,
            holds_file_error: None,
            upload: None,
        }
    }

    /// Whether a controller should treat this report as stale at `now`: no newer report within
    /// three intervals.
    pub fn is_stale(&self, now: Timestamp) -> bool {
        let allowed = i64::from(self.interval_s.max(1)).saturating_mul(3_000);
        now.ms_since(self.at) > allowed
    }

    /// Compact JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// Who is reporting.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct AgentInfo {
    /// The agent's version, e.g. `0.1.0`.
    #[serde(default)]
    pub version: String,
    /// SHA-256 of the agent's configuration file bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_hash: Option<Hash256>,
    /// Fingerprint of the station's signing key, `xxxx:xxxx:xxxx:xxxx`.
    #[serde(
        default,
        with = "opt_fingerprint",
        skip_serializing_if = "Option::is_none"
    )]
    pub key_fingerprint: Option<Fingerprint>,
    /// The station's name and region as its config gives them (free text for people).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub station_name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Seconds since the agent started.
    #[serde(default)]
    pub uptime_s: u64,
    /// Seconds since the machine booted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system_uptime_s: Option<u64>,
}

/// One camera.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CameraHealth {
    #[serde(default)]
    pub state: CameraState,
    /// Frames per second arriving from the camera, averaged over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fps: Option<f64>,
    /// Bits per second written to disk for this camera, averaged over the last interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bitrate_bps: Option<u64>,
    /// End time of the last segment finished (closed, hashed and entered in the manifest).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment_end: Option<Timestamp>,
    /// The manifest's head after its last entry, so that the controller can later detect a
    /// manifest truncated at its end.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub manifest: Option<ManifestHead>,
    /// Short human-readable explanation of the state (e.g. the last error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    /// Live streaming of this camera; absent when the camera has no live target.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<CameraLive>,
    /// What the agent's view analysis sees (`docs/camera-view.md`); absent when the agent does
    /// not analyse the camera's picture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub view: Option<ViewHealth>,
}

/// A camera's picture as the agent's view analysis sees it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ViewHealth {
    /// Whether the agent holds an approved reference view of this camera (then blurred and
    /// moved are checked too).
    #[serde(default)]
    pub approved: bool,
    /// Problems that have lasted past the configured time, in order of kind.
    #[serde(default)]
    pub problems: Vec<ViewProblem>,
    /// When the last picture was analysed (agent clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub analysed_at: Option<Timestamp>,
    /// The last decision on the camera's view the agent holds: approved, refused (with the
    /// reason the technician must see), reset, or voided because the camera was replaced.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ViewDecision>,
    /// How many privacy masks the agent holds for the camera, and their digest
    /// (`crate::masks::digest`; `""` for none).
    #[serde(default)]
    pub masks: u32,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub masks_digest: String,
}

/// A decision on a camera's view, as the agent keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ViewDecision {
    pub state: ViewDecisionState,
    /// Who decided (`agent` when the agent voided an approval itself).
    #[serde(default)]
    pub by: String,
    /// When (agent clock).
    pub at: Timestamp,
    /// Why: the refusal's reason, or what changed when the camera was replaced.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub reason: String,
}

/// What was decided on a camera's view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewDecisionState {
    Approved,
    Refused,
    Reset,
    /// The approval no longer holds: the camera's source or picture size changed.
    Replaced,
    #[serde(other)]
    Unknown,
}

/// One problem with a camera's picture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewProblem {
    pub kind: ViewProblemKind,
    /// Since when it has held (agent clock: the first analysed picture showing it).
    pub since: Timestamp,
    /// The measure behind it, for people (e.g. `mean brightness 4 of 255`).
    #[serde(default)]
    pub detail: String,
}

/// What is wrong with a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ViewProblemKind {
    /// Black or too dark to see anything.
    Dark,
    /// Featureless: one flat colour (tape, a cap, a cloth over the lens).
    Covered,
    /// Far less sharp than the approved view (knocked out of focus, smeared, fogged).
    Blurred,
    /// Not the approved view (turned to the ceiling, away from the box, moved).
    Moved,
    /// The picture stopped changing while frames keep coming.
    Frozen,
    /// A kind this version does not know (from a newer agent).
    #[serde(other)]
    Unknown,
}

impl ViewProblemKind {
    pub const ALL: [ViewProblemKind; 5] = [
        ViewProblemKind::Dark,
        ViewProblemKind::Covered,
        ViewProblemKind::Blurred,
        ViewProblemKind::Moved,
        ViewProblemKind::Frozen,
    ];

    /// The wire name, also the controller's alert kind after `view_`.
    pub fn name(self) -> &'static str {
        match self {
            ViewProblemKind::Dark => "dark",
            ViewProblemKind::Covered => "covered",
            ViewProblemKind::Blurred => "blurred",
            ViewProblemKind::Moved => "moved",
            ViewProblemKind::Frozen => "frozen",
            ViewProblemKind::Unknown => "unknown",
        }
    }

    /// Whether the problem can be judged without an approved reference view.
    pub fn needs_reference(self) -> bool {
        matches!(self, ViewProblemKind::Blurred | ViewProblemKind::Moved)
    }
}

impl std::fmt::Display for ViewProblemKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// What a camera streams live, and why.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct CameraLive {
    /// The mode in force (configured, or set by a `set_live` command).
    #[serde(default)]
    pub mode: LiveSetting,
    /// Whether `mode` comes from a `set_live` command rather than the config.
    #[serde(default)]
    pub overridden: bool,
    /// What is being streamed.
    #[serde(default)]
    pub rung: LiveRung,
    /// Whether the stream is flowing, starting, being probed or stopped.
    #[serde(default)]
    pub state: LiveState,
    /// The agent's estimate of what the uplink carries, bits per second (from the sender's
    /// statistics while streaming; absent when unknown).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uplink_bps: Option<u64>,
    /// What the live sender put on the link over the last seconds, bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub send_bps: Option<u64>,
    /// Round-trip time to the live target, milliseconds (SRT only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rtt_ms: Option<f64>,
    /// Fraction of packets lost or dropped on the way, 0..1 (SRT only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss: Option<f64>,
    /// Why the rung is what it is (e.g. `link carries 1.9 Mbit/s, main needs 2.5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A camera's live mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveSetting {
    /// Never stream.
    Off,
    /// Always stream the main stream.
    On,
    /// Stream the best rung the uplink carries.
    Auto,
    /// A mode this version does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// What the live branch of a camera sends: the main stream, the lighter one (camera
/// sub-stream, or a lower-bitrate encode), or nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveRung {
    Main,
    Sub,
    Off,
    /// A rung this version does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

impl LiveSetting {
    /// The wire name (`off`, `on`, `auto`, `unknown`), for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveSetting::Off => "off",
            LiveSetting::On => "on",
            LiveSetting::Auto => "auto",
            LiveSetting::Unknown => "unknown",
        }
    }
}

impl LiveRung {
    /// The wire name (`main`, `sub`, `off`, `unknown`), for logs.
    pub fn as_str(self) -> &'static str {
        match self {
            LiveRung::Main => "main",
            LiveRung::Sub => "sub",
            LiveRung::Off => "off",
            LiveRung::Unknown => "unknown",
        }
    }
}

/// Whether the live stream flows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LiveState {
    /// Connecting to the target, waiting for a keyframe.
    Starting,
    /// Video flows to the target.
    Streaming,
    /// Trying a higher rung to see whether the link carries it.
    Probing,
    /// Nothing is sent (mode off, or the link carries no rung).
    Stopped,
    /// A state this version does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// What a camera is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CameraState {
    /// Connecting to the camera for the first time.
    Starting,
    /// Frames arrive and segments are written.
    Recording,
    /// No frames arrive; the agent is reconnecting (a gap is being recorded).
    Lost,
    /// Not recording on purpose (schedule, or being restarted by command).
    Stopped,
    /// Not recording because of a fault the agent cannot retry away (e.g. storage error).
    Failed,
    /// A state this version does not know.
    #[default]
    #[serde(other)]
    Unknown,
}

/// A manifest's chain state: the `seq` and `prev` its next entry will have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ManifestHead {
    /// `seq` of the next entry (= number of entries written).
    pub next_seq: u64,
    /// `prev` of the next entry: SHA-256 of the last entry's line, hex.
    pub prev: Hash256,
}

impl ManifestHead {
    pub fn from_chain(chain: &Chain) -> Self {
        ManifestHead {
            next_seq: chain.next_seq,
            prev: chain.prev,
        }
    }

    /// As a [`Chain`], for [`crate::manifest::check_head`].
    pub fn to_chain(&self, station: StationId, camera: CameraId) -> Chain {
        Chain {
            station,
            camera,
            next_seq: self.next_seq,
            prev: self.prev,
        }
    }
}

/// The recording disk.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct DiskHealth {
    /// Bytes available to the agent.
    #[serde(default)]
    pub free_bytes: u64,
    /// Size of the file system.
    #[serde(default)]
    pub total_bytes: u64,
    /// Hours of recording that fit in `free_bytes` at the current total bitrate of all cameras
    /// (see [`hours_left`]); absent when nothing is being recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_left: Option<f64>,
    /// Whether the agent considers the disk low (below its configured threshold).
    #[serde(default)]
    pub low: bool,
}

/// Hours of recording that `free_bytes` hold at `bitrate_bps` bits per second; `None` when the
/// bitrate is 0.
pub fn hours_left(free_bytes: u64, bitrate_bps: u64) -> Option<f64> {
    if bitrate_bps == 0 {
        return None;
    }
    Some(free_bytes as f64 * 8.0 / bitrate_bps as f64 / 3600.0)
}

/// Clock synchronisation as the kernel reports it (`adjtimex`).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct ClockHealth {
    /// The kernel's clock is synchronised (`STA_UNSYNC` clear, `adjtimex` not `TIME_ERROR`).
    #[serde(default)]
    pub synced: bool,
    /// The kernel's estimated error, microseconds (`esterror`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub est_error_us: Option<u64>,
    /// The kernel's maximum error, microseconds (`maxerror`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_error_us: Option<u64>,
}

/// The machine.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct SystemHealth {
    /// Load averages over 1, 5 and 15 minutes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_1m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_5m: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_15m: Option<f64>,
    /// Highest temperature among the board's sensors, °C; absent without a sensor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature_c: Option<f64>,
    /// Power supply, where known (UPS, battery).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power: Option<PowerHealth>,
}

/// Power supply, where the agent can see it.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct PowerHealth {
    /// Running on battery (mains lost).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_battery: Option<bool>,
    /// Battery charge, percent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub battery_percent: Option<f64>,
}

/// Live streaming and uploads (filled in once the agent streams; optional).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct UplinkHealth {
    /// What the station's live branches send, at best (`full`, `light`, `record_only` on the
    /// wire).
    #[serde(default, with = "summary_rung")]
    pub live: LiveRung,
    /// The agent's estimate of what the uplink carries, bits per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub estimated_bps: Option<u64>,
    /// Seconds of recording not yet uploaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upload_backlog_s: Option<u64>,
}

/// The station summary's names for the rungs: `full` (main), `light` (sub), `record_only`
/// (off). The wire keeps these names; in code the summary uses [`LiveRung`] like the per-camera
/// status.
mod summary_rung {
    use serde::{Deserialize, Deserializer, Serializer};

    use super::LiveRung;

    pub fn serialize<S: Serializer>(r: &LiveRung, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(match r {
            LiveRung::Main => "full",
            LiveRung::Sub => "light",
            LiveRung::Off => "record_only",
            LiveRung::Unknown => "unknown",
        })
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<LiveRung, D::Error> {
        Ok(match String::deserialize(d)?.as_str() {
            "full" => LiveRung::Main,
            "light" => LiveRung::Sub,
            "record_only" => LiveRung::Off,
            _ => LiveRung::Unknown,
        })
    }
}

/// `Option<Fingerprint>` as its text form `xxxx:xxxx:xxxx:xxxx`.
mod opt_fingerprint {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::manifest::Fingerprint;

    pub fn serialize<S: Serializer>(f: &Option<Fingerprint>, s: S) -> Result<S::Ok, S::Error> {
        match f {
            Some(f) => s.collect_str(f),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Fingerprint>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => text.parse().map(Some).map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}
