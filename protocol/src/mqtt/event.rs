//! Events: something changed at the station.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::health::{LiveRung, LiveSetting};
use super::id::MessageId;
use super::SCHEMA_VERSION;
use crate::ids::CameraId;
use crate::manifest::{GapReason, Timestamp};

/// Payload of `stationwatch/v1/<station>/events` (QoS 1, not retained).
///
/// Events are delivered at least once; the controller de-duplicates by (`station`, `id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// Schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    /// Unique among the station's events (e.g. the agent's boot id and a counter).
    pub id: MessageId,
    /// When it happened (agent clock).
    pub at: Timestamp,
    /// What happened: the `kind` field and the kind's own fields.
    #[serde(flatten)]
    pub kind: EventKind,
}

impl Event {
    pub fn new(id: MessageId, at: Timestamp, kind: EventKind) -> Self {
        Event {
            v: SCHEMA_VERSION,
            id,
            at,
            kind,
        }
    }

    /// Compact JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// What happened, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventKind {
    /// The agent started (published after `status` online).
    AgentStarting {
        version: String,
        /// Why the previous run ended, as the manifest's restart gap says (absent on a first
        /// start).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        previous_stop: Option<OrUnknown<GapReason>>,
    },
    /// The agent is stopping cleanly (published before `status` offline/shutdown).
    AgentStopping {
        #[serde(default)]
        reason: String,
    },
    /// A camera stopped delivering video.
    CameraLost {
        camera: CameraId,
        #[serde(default)]
        detail: String,
    },
    /// A lost camera delivers video again.
    CameraBack {
        camera: CameraId,
        /// When it was lost.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Timestamp>,
    },
    /// A gap entry was written to a camera's manifest.
    GapRecorded {
        camera: CameraId,
        start: Timestamp,
        end: Timestamp,
        reason: OrUnknown<GapReason>,
        #[serde(default)]
        detail: String,
        /// The gap entry's `seq` in the manifest.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    /// Free disk space fell below the agent's threshold.
    DiskLow {
        free_bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hours_left: Option<f64>,
    },
    /// Free disk space is above the threshold again.
    DiskOk {
        free_bytes: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        hours_left: Option<f64>,
    },
    /// The kernel reports the clock as not synchronised.
    ClockUnsynced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        est_error_us: Option<u64>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        max_error_us: Option<u64>,
    },
    /// The kernel reports the clock as synchronised again.
    ClockSynced {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        est_error_us: Option<u64>,
    },
    /// A camera's live stream changed rung (main, sub, off), e.g. because the uplink no
    /// longer carries it, or by command.
    LiveChanged {
        camera: CameraId,
        rung: LiveRung,
        /// The rung before.
        #[serde(default)]
        from: LiveRung,
        #[serde(default)]
        mode: LiveSetting,
        /// The uplink estimate at the change, bits per second.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        uplink_bps: Option<u64>,
        #[serde(default)]
        reason: String,
    },
    /// A segment file in a camera's folder that the manifest does not list and the agent never
    /// announced (copied in, renamed, or left by something else). It is not signed.
    ForeignFile { camera: CameraId, file: String },
    /// The legal holds file cannot be read or is invalid: the agent deletes nothing by policy
    /// until a person fixes it (recording goes on).
    HoldsFileError {
        #[serde(default)]
        detail: String,
    },
    /// The legal holds file is readable again; deletion by policy resumes.
    HoldsFileOk,
    /// A problem with a camera's picture has lasted past the configured time (black, covered,
    /// blurred, moved, frozen). A snapshot of the camera follows on its snapshot topic.
    ViewProblem {
        camera: CameraId,
        problem: super::health::ViewProblemKind,
        /// Since when (agent clock).
        since: Timestamp,
        #[serde(default)]
        detail: String,
    },
    /// The camera's picture is back to normal for that problem.
    ViewClear {
        camera: CameraId,
        problem: super::health::ViewProblemKind,
        /// When the problem began.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        since: Option<Timestamp>,
    },
    /// A kind this version does not know (from a newer agent); its fields are dropped.
    #[serde(other)]
    Unknown,
}

impl EventKind {
    /// The `kind` string (`unknown` for [`EventKind::Unknown`]).
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::AgentStarting { .. } => "agent_starting",
            EventKind::AgentStopping { .. } => "agent_stopping",
            EventKind::CameraLost { .. } => "camera_lost",
            EventKind::CameraBack { .. } => "camera_back",
            EventKind::GapRecorded { .. } => "gap_recorded",
            EventKind::DiskLow { .. } => "disk_low",
            EventKind::DiskOk { .. } => "disk_ok",
            EventKind::ClockUnsynced { .. } => "clock_unsynced",
            EventKind::ClockSynced { .. } => "clock_synced",
            EventKind::LiveChanged { .. } => "live_changed",
            EventKind::ForeignFile { .. } => "foreign_file",
            EventKind::HoldsFileError { .. } => "holds_file_error",
            EventKind::HoldsFileOk => "holds_file_ok",
            EventKind::ViewProblem { .. } => "view_problem",
            EventKind::ViewClear { .. } => "view_clear",
            EventKind::Unknown => "unknown",
        }
    }
}

/// A value of a closed set this version knows, or the text of one it does not (e.g. a
/// [`GapReason`] added by a newer agent). Serialised as the plain string either way.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OrUnknown<T> {
    Known(T),
    Unknown(String),
}

impl<T> OrUnknown<T> {
    pub fn known(&self) -> Option<&T> {
        match self {
            OrUnknown::Known(t) => Some(t),
            OrUnknown::Unknown(_) => None,
        }
    }
}

impl<T> From<T> for OrUnknown<T> {
    fn from(t: T) -> Self {
        OrUnknown::Known(t)
    }
}

impl<T: fmt::Display> fmt::Display for OrUnknown<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrUnknown::Known(t) => t.fmt(f),
            OrUnknown::Unknown(s) => f.write_str(s),
        }
    }
}
