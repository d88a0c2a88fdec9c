//! Retention: what policy may delete, and deleting it through the manifest.
//!
//! Two rules, both only for footage that is older than `keep_days` and not under a legal hold:
//! * by age: footage older than `delete_after_days` (when set) is deleted (`retention`);
//! * by space: while free space is below `min_free_mb`, the oldest footage of any camera is
//!   deleted (`free_space`).
//!
//! Every deletion goes through the camera's ledger, which makes the `deleted` entry durable
//! before it unlinks the file. When policy allows nothing more and free space stays below the
//! floor, retention says so ([`DiskStatus::exhausted`]) and keeps looking; recording itself
//! pauses only if the disk actually fills, records a `disk_full` gap, and resumes by itself.

pub mod holds;

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use stationwatch_protocol::manifest::{
    parse_manifest, present_segments, DeletionPolicy, EntryBody, Hash256, SegmentFile,
    MANIFEST_FILE,
};
use stationwatch_protocol::CameraId;
use tokio::sync::{watch, Notify};
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::config::RetentionConfig;
use crate::disk::reserve::{ensure_reserve, RESERVE_BYTES};
use crate::recording::ledger::LedgerJob;
use crate::retention::holds::HoldStore;

/// Storage as health reporting sees it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct DiskStatus {
    pub total_bytes: u64,
    pub free_bytes: u64,
    pub floor_bytes: u64,
    /// Free space is below the floor and policy allows nothing more to be deleted.
    pub exhausted: bool,
    /// Files deleted by policy since the agent started.
    pub deleted_files: u64,
    /// The legal holds file cannot be used: nothing is deleted by policy (holds fail closed).
    pub holds_file_error: Option<String>,
}

/// One camera as retention sees it.
pub struct RetentionCamera {
    pub id: CameraId,
    pub dir: PathBuf,
    pub ledger: mpsc::Sender<LedgerJob>,
}

struct Candidate {
    camera: usize,
    seq: u64,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    file: SegmentFile,
    sha256: Hash256,
    size: u64,
}

pub struct Retention {
    cfg: RetentionConfig,
    holds: Arc<HoldStore>,
    storage: PathBuf,
    cameras: Vec<RetentionCamera>,
    status: watch::Sender<DiskStatus>,
}

impl Retention {
    pub fn new(
        cfg: RetentionConfig,
        holds: Arc<HoldStore>,
        storage: PathBuf,
        cameras: Vec<RetentionCamera>,
    ) -> (Self, watch::Receiver<DiskStatus>) {
        let (status, rx) = watch::channel(DiskStatus::default());
        (
            Self {
                cfg,
                holds,
                storage,
                cameras,
                status,
            },
            rx,
        )
    }

    /// Runs a pass every `check_interval`, or at once when `pressure` is notified (a camera
    /// hit a full disk), until shutdown.
    pub async fn run(self, pressure: Arc<Notify>, shutdown: CancellationToken) {
        let this = Arc::new(self);
        loop {
            let t = this.clone();
            if let Err(e) = tokio::task::spawn_blocking(move || t.pass()).await {
                error!(error = %e, "retention pass panicked");
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = pressure.notified() => {}
                _ = tokio::time::sleep(this.cfg.check_interval) => {}
            }
        }
    }

    /// One pass: delete what policy requires, then update the status.
    pub fn pass(&self) {
        let now = Utc::now();
        self.holds.recheck();
        let holds_error = self.holds.error();
        // Holds fail closed: while the holds file cannot be read, nothing is deleted by policy
        // (a court may have ordered any of it kept). Recording goes on; a full disk is a gap.
        let mut candidates = if holds_error.is_some() {
            Vec::new()
        } else {
            self.candidates(now)
        };
        let mut deleted = 0u64;

        if let Some(days) = self.cfg.delete_after_days {
            let limit = now - chrono::Duration::days(i64::from(days));
            let (old, rest): (Vec<_>, Vec<_>) = candidates.into_iter().partition(|c| c.end < limit);
            candidates = rest;
            for c in old {
                if self.delete(
                    &c,
                    DeletionPolicy::Retention,
                    format!("older than {days} days"),
                ) {
                    deleted += 1;
                }
            }
        }

        let mut space = free_space(&self.storage);
        let floor = self.cfg.min_free_bytes;
        let mut exhausted = false;
        if let Some((free, _)) = space {
            if free < floor {
                let mut free = free;
                let mut iter = candidates.into_iter();
                while free < floor {
                    let Some(c) = iter.next() else {
                        exhausted = true;
                        break;
                    };
                    let detail = format!(
                        "free space {} MB below the floor of {} MB",
                        free / 1_000_000,
                        floor / 1_000_000
                    );
                    if self.delete(&c, DeletionPolicy::FreeSpace, detail) {
                        deleted += 1;
                        free = free_space(&self.storage).map_or(free + c.size, |(f, _)| f);
                    }
                }
                space = free_space(&self.storage);
            }
        }
        if let Some((free, _)) = space {
            if free >= floor + RESERVE_BYTES {
                ensure_reserve(&self.storage);
            }
        }

        let (free, total) = space.unwrap_or_default();
        let was_exhausted = self.status.borrow().exhausted;
        if exhausted && !was_exhausted {
            warn!(
                free_mb = free / 1_000_000,
                floor_mb = floor / 1_000_000,
                keep_days = self.cfg.keep_days,
                holds = self.holds.all().len(),
                "free space below the floor and policy allows nothing more to be deleted"
            );
        } else if !exhausted && was_exhausted {
            info!(
                free_mb = free / 1_000_000,
                "free space is back above what policy can manage"
            );
        }
        self.status.send_modify(|s| {
            s.total_bytes = total;
            s.free_bytes = free;
            s.floor_bytes = floor;
            s.exhausted = exhausted;
            s.deleted_files += deleted;
            s.holds_file_error = holds_error;
        });
    }

    /// Present segments that policy may delete, oldest first.
    fn candidates(&self, now: DateTime<Utc>) -> Vec<Candidate> {
        let young = now - chrono::Duration::days(i64::from(self.cfg.keep_days));
        let holds = self.holds.all();
        let mut out = Vec::new();
        for (i, cam) in self.cameras.iter().enumerate() {
            let bytes = match std::fs::read(cam.dir.join(MANIFEST_FILE)) {
                Ok(b) => b,
                Err(_) => continue,
            };
            let parsed = parse_manifest(&bytes);
            for e in present_segments(&parsed.entries) {
                let EntryBody::Segment(s) = e.body() else {
                    continue;
                };
                let (start, end) = (s.start.to_datetime(), s.end.to_datetime());
                if end >= young {
                    continue;
                }
                if holds.iter().any(|h| h.covers(&cam.id, start, end)) {
                    continue;
                }
                out.push(Candidate {
                    camera: i,
                    seq: e.seq(),
                    start,
                    end,
                    file: s.file.clone(),
                    sha256: s.sha256,
                    size: s.size,
                });
            }
        }
        out.sort_by_key(|c| c.start);
        out
    }

    fn delete(&self, c: &Candidate, policy: DeletionPolicy, detail: String) -> bool {
        let cam = &self.cameras[c.camera];
        let (done, rx) = mpsc::channel();
        let job = LedgerJob::Delete {
            target: c.seq,
            file: c.file.clone(),
            sha256: c.sha256,
            policy,
            detail: detail.clone(),
            done,
        };
        if cam.ledger.send(job).is_err() {
            return false;
        }
        match rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => {
                info!(camera = %cam.id, file = %c.file, %policy, %detail, "segment deleted by policy");
                true
            }
            Ok(Err(e)) => {
                warn!(camera = %cam.id, file = %c.file, error = %e, "deletion by policy failed");
                false
            }
            Err(_) => {
                warn!(camera = %cam.id, file = %c.file, "ledger did not answer a deletion in time");
                false
            }
        }
    }
}

/// (free bytes for unprivileged writers, total bytes) of the file system holding `path`.
fn free_space(path: &Path) -> Option<(u64, u64)> {
    crate::station::sysinfo::disk_space(path).map(|d| (d.free_bytes, d.total_bytes))
}
