//! What a segment is, independent of who writes or reads it: its file name (start time in UTC),
//! and what finishing one reports. A leaf shared by the recorder, the ledger and retention. The
//! name's format (and reading a start back from it) is protocol's `manifest::naming`.

use std::path::{Path, PathBuf};

use chrono::{DateTime, Utc};
use stationwatch_protocol::manifest::{Hash256, SEGMENT_EXT};
use stationwatch_protocol::CameraId;

/// Why a segment was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// Reached the segment length; the next segment starts with the very next frame.
    Rotated,
    /// The source ended, failed or stalled, or the agent is stopping.
    StreamEnded,
    /// Writing failed (disk full, I/O error); the file holds what was written before.
    WriteError,
}

/// A segment complete and durable on disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SegmentFinished {
    pub camera: CameraId,
    pub path: PathBuf,
    /// UTC time of the first frame.
    pub start: DateTime<Utc>,
    /// UTC time of the frame that follows the last one (the next segment's start when rotated).
    pub end: DateTime<Utc>,
    pub bytes: u64,
    pub closed: CloseReason,
    /// SHA-256 of the file, set by the ledger once it is entered in the manifest.
    pub sha256: Option<Hash256>,
}

/// Path of a segment starting at `start`: `<camera_dir>/<YYYY-MM-DD>/<YYYYMMDDTHHMMSS.mmmZ>.ts`.
pub fn segment_path(camera_dir: &Path, start: DateTime<Utc>) -> PathBuf {
    camera_dir
        .join(start.format("%Y-%m-%d").to_string())
        .join(format!(
            "{}.{SEGMENT_EXT}",
            start.format("%Y%m%dT%H%M%S%.3fZ")
        ))
}
