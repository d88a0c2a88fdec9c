//! What each camera is doing, as the rest of the agent (health, dashboard, systemd) sees it.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde::Serialize;
use stationwatch_protocol::manifest::{Hash256, Timestamp};

/// A camera's recording state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum CameraState {
    /// Pipeline being built or connecting for the first time.
    Starting,
    /// Data flows and a segment is open on disk.
    Recording { since: DateTime<Utc> },
    /// Lost (error, end of stream or stall); a new attempt is scheduled.
    Reconnecting {
        reason: String,
        attempt: u32,
        since: DateTime<Utc>,
    },
    /// Cannot be retried as configured (for example a GStreamer plugin is missing).
    Failed { reason: String },
    /// Stopped on request (shutdown).
    Stopped,
}

impl CameraState {
    pub fn is_recording(&self) -> bool {
        matches!(self, CameraState::Recording { .. })
    }
}

/// Counters updated from GStreamer streaming threads without locks.
#[derive(Debug)]
pub struct CameraCounters {
    epoch: Instant,
    /// Nanoseconds since `epoch` at the last buffer from the source (0 = never).
    last_data_ns: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    /// End of the last finished segment, Unix ms (0 = none yet).
    last_segment_end_ms: AtomicI64,
    /// The manifest's head after its last written entry: (next seq, hash of the last line).
    manifest_head: Mutex<Option<(u64, Hash256)>>,
    /// The latest keyframe access unit and its caps, for snapshots.
    keyframe: Mutex<Option<gst::Sample>>,
}

impl Default for CameraCounters {
    fn default() -> Self {
        Self {
            epoch: Instant::now(),
            last_data_ns: AtomicU64::new(0),
            frames: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            last_segment_end_ms: AtomicI64::new(0),
            manifest_head: Mutex::new(None),
            keyframe: Mutex::new(None),
        }
    }
}

impl CameraCounters {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Called for every encoded frame that reaches the recorder.
    pub fn on_frame(&self, bytes: usize) {
        let ns = self.epoch.elapsed().as_nanos() as u64;
        self.last_data_ns.store(ns.max(1), Ordering::Relaxed);
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    pub fn on_segment_finished(&self, end: Timestamp) {
        self.last_segment_end_ms
            .store(end.unix_ms(), Ordering::Relaxed);
    }

    /// End of the last finished segment.
    pub fn last_segment_end(&self) -> Option<Timestamp> {
        match self.last_segment_end_ms.load(Ordering::Relaxed) {
            0 => None,
            ms => Timestamp::from_unix_ms(ms).ok(),
        }
    }

    pub fn set_manifest_head(&self, next_seq: u64, last: Hash256) {
        *self.manifest_head.lock() = Some((next_seq, last));
    }

    pub fn manifest_head(&self) -> Option<(u64, Hash256)> {
        *self.manifest_head.lock()
    }

    /// Keeps the latest keyframe (called from the streaming thread for key units only).
    pub fn set_keyframe(&self, sample: gst::Sample) {
        *self.keyframe.lock() = Some(sample);
    }

    pub fn keyframe(&self) -> Option<gst::Sample> {
        self.keyframe.lock().clone()
    }

    /// Time since the last frame, or `None` if none arrived since `since`.
    pub fn idle_since(&self, since: Instant) -> std::time::Duration {
        let last = self.last_data_ns.load(Ordering::Relaxed);
        let last_at = self.epoch + std::time::Duration::from_nanos(last);
        let reference = if last == 0 || last_at < since {
            since
        } else {
            last_at
        };
        reference.elapsed()
    }

    pub fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }
}
