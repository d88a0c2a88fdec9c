//! Uploads to the archive as health reports them and commands change them (`docs/archive.md`).

use serde::{Deserialize, Serialize};

use super::id::MessageId;
use crate::ids::CameraId;
use crate::manifest::Timestamp;

/// What a station (or one camera) uploads without being asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadMode {
    /// Nothing leaves the station, not even requested windows (they wait, held).
    Off,
    /// Only windows the controller asked for (`upload` commands).
    #[default]
    Requested,
    /// Requested windows first, then everything else, oldest first (continuous backfill).
    All,
}

impl UploadMode {
    pub fn as_str(self) -> &'static str {
        match self {
            UploadMode::Off => "off",
            UploadMode::Requested => "requested",
            UploadMode::All => "all",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "off" => Some(UploadMode::Off),
            "requested" => Some(UploadMode::Requested),
            "all" => Some(UploadMode::All),
            _ => None,
        }
    }
}

/// The `mode` of a `set_upload` command: an [`UploadMode`], or `config` (drop the override).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetUploadSetting {
    Off,
    Requested,
    All,
    Config,
}

impl SetUploadSetting {
    /// The override it sets (`None`: back to the configured mode).
    pub fn mode(self) -> Option<UploadMode> {
        match self {
            SetUploadSetting::Off => Some(UploadMode::Off),
            SetUploadSetting::Requested => Some(UploadMode::Requested),
            SetUploadSetting::All => Some(UploadMode::All),
            SetUploadSetting::Config => None,
        }
    }
}

/// Where an upload job stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UploadJobState {
    /// Waiting for its turn, for the window to end, or for the link.
    #[default]
    Queued,
    Uploading,
    /// Upload mode `off` for its cameras: waiting, held.
    Paused,
    /// Every segment of the window is archived.
    Done,
}

/// One requested window in health.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadJobHealth {
    pub job: MessageId,
    pub cameras: Vec<CameraId>,
    pub from: Timestamp,
    pub to: Timestamp,
    #[serde(default)]
    pub priority: u8,
    #[serde(default)]
    pub state: UploadJobState,
    /// Bytes of the window's segments, and how many of them are archived.
    #[serde(default)]
    pub bytes_total: u64,
    #[serde(default)]
    pub bytes_done: u64,
    #[serde(default)]
    pub segments_total: u64,
    #[serde(default)]
    pub segments_done: u64,
}

/// The `upload` section of a health report.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct UploadHealth {
    /// The station's configured (or commanded) mode; cameras may differ (`modes`).
    #[serde(default)]
    pub mode: UploadMode,
    /// Cameras whose mode differs from `mode`.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub modes: std::collections::BTreeMap<CameraId, UploadMode>,
    /// Bytes and segments the station still has to upload (requested windows, plus everything
    /// unarchived in mode `all`).
    #[serde(default)]
    pub backlog_bytes: u64,
    #[serde(default)]
    pub backlog_segments: u64,
    /// Start of the oldest footage still to upload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub oldest_pending: Option<Timestamp>,
    /// Bytes of footage on the station's disk not known to be archived, whatever the mode
    /// ("only on the station").
    #[serde(default)]
    pub unarchived_bytes: u64,
    /// Upload rate over the last report interval, bits per second.
    #[serde(default)]
    pub rate_bps: u64,
    /// Segments archived since the agent started.
    #[serde(default)]
    pub archived_segments: u64,
    /// Segments the archive refused (bytes not matching their signed entry) since the start.
    #[serde(default)]
    pub refused_segments: u64,
    /// The last upload error (link, archive), while uploads fail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Requested windows, done ones included until they leave the queue.
    #[serde(default)]
    pub jobs: Vec<UploadJobHealth>,
}
