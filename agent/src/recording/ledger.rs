//! One camera's ledger thread: everything that happens to segment files after the recorder
//! wrote them, in order, off the GStreamer streaming thread.
//!
//! * every `sync_interval`, `fdatasync` of the open segment (what a power cut can lose);
//! * a closed segment is `fsync`ed with its directory, hashed, entered in the signed manifest,
//!   and only then announced to the rest of the agent;
//! * time without recording becomes a gap entry with its reason (camera lost, disk full,
//!   storage error; crash, power loss or restart, detected at start from the manifest);
//! * segments written before a crash but never entered are recovered at start;
//! * retention deletes a file only after its `deleted` entry is durable.
//!
//! If the manifest cannot be written (disk full), entries wait in memory, in order, and are
//! written when space returns; recording never waits for the manifest.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use stationwatch_protocol::manifest::{
    ClockSync, Deleted, DeletionPolicy, EntryBody, Gap, GapReason, Hash256, Segment, SegmentFile,
    Start, StationKey, Stop, Timestamp, TIME_TOLERANCE_MS,
};
use stationwatch_protocol::mqtt::{EventKind, OrUnknown};
use stationwatch_protocol::{CameraId, StationId};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};

use crate::disk::sync_dir;
use crate::recording::manifest_writer::{ManifestWriter, PreviousRun};
use crate::recording::segment::{segment_start_from_name, SegmentFinished, SEGMENT_EXT};
use crate::state::CameraCounters;

/// Entries kept in memory while the manifest cannot be written; beyond this the oldest are
/// dropped with an error (the chain then shows a gap, which the verifier reports).
const MAX_BACKLOG: usize = 100_000;

/// Work for the ledger thread.
pub enum LedgerJob {
    /// A new segment file is open (its first frame at the given time): sync it periodically;
    /// if recording had stopped, the gap ends here and is entered now.
    Opened(File, chrono::DateTime<chrono::Utc>),
    /// A segment is closed: make it durable, enter it in the manifest, announce it.
    Finish(Box<(File, SegmentFinished)>),
    /// Recording stopped for this reason; the time until the next segment is a gap.
    Lost { reason: GapReason, detail: String },
    /// Retention: enter the deletion, then remove the file.
    Delete {
        target: u64,
        file: SegmentFile,
        sha256: Hash256,
        policy: DeletionPolicy,
        detail: String,
        done: mpsc::Sender<io::Result<()>>,
    },
    /// Clean stop: close the timeline and write `stop`.
    Shutdown,
}

/// What a ledger needs to know.
pub struct LedgerConfig {
    pub station: StationId,
    pub camera: CameraId,
    pub camera_dir: PathBuf,
    pub key: Arc<StationKey>,
    pub sync_interval: Duration,
    pub counters: Arc<CameraCounters>,
    pub finished: UnboundedSender<SegmentFinished>,
    /// The machine rebooted since the agent last started (a crash is then a power loss).
    pub rebooted: bool,
    /// Where gap entries are reported as events (MQTT), if anywhere.
    pub events: Option<UnboundedSender<EventKind>>,
}

/// Starts the ledger thread of one camera. The manifest is opened, and segments left over by a
/// crash are recovered, before this returns: no new segment can be mistaken for a leftover.
pub fn spawn(
    cfg: LedgerConfig,
) -> io::Result<(mpsc::Sender<LedgerJob>, std::thread::JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let name = format!("ledger-{}", cfg.camera);
    let ledger = Ledger::start(cfg);
    let handle = std::thread::Builder::new()
        .name(name)
        .spawn(move || ledger.run(rx))?;
    Ok((tx, handle))
}

struct Ledger {
    cfg: LedgerConfig,
    manifest: Option<ManifestWriter>,
    backlog: VecDeque<EntryBody>,
    /// End of the last segment or gap entered (or queued).
    timeline_end: Option<Timestamp>,
    /// Why recording stopped, if it has, since `timeline_end`.
    lost: Option<(GapReason, String)>,
    open: Option<File>,
}

impl Ledger {
    fn start(cfg: LedgerConfig) -> Self {
        let mut ledger = Ledger {
            cfg,
            manifest: None,
            backlog: VecDeque::new(),
            timeline_end: None,
            lost: None,
            open: None,
        };
        let previous = ledger.open_manifest().unwrap_or_default();
        ledger.timeline_end = previous.timeline_end;
        ledger.recover_orphans(&previous);
        let now = Timestamp::now();
        ledger.enter(EntryBody::Start(Start {
            at: now,
            agent: env!("CARGO_PKG_VERSION").to_owned(),
            key: ledger.cfg.key.public(),
        }));
        if let (Some(reason), Some(since)) = (previous.restart_reason, ledger.timeline_end) {
            let (reason, detail) = match reason {
                GapReason::Crash if ledger.cfg.rebooted => (
                    GapReason::PowerLoss,
                    "the machine restarted without a clean stop of the agent".to_owned(),
                ),
                GapReason::Crash => (
                    GapReason::Crash,
                    "the agent stopped without closing its manifest".to_owned(),
                ),
                other => (other, String::new()),
            };
            info!(camera = %ledger.cfg.camera, %reason, since = %since, "downtime before this start will be entered as a gap");
            // The gap runs until the first segment of this run (or this run's stop).
            ledger.lost = Some((reason, detail));
        }
        ledger
    }

    fn open_manifest(&mut self) -> Option<PreviousRun> {
        match ManifestWriter::open(
            &self.cfg.camera_dir,
            &self.cfg.station,
            &self.cfg.camera,
            self.cfg.key.clone(),
        ) {
            Ok((w, previous)) => {
                self.manifest = Some(w);
                Some(previous)
            }
            Err(e) => {
                error!(camera = %self.cfg.camera, error = %e, "cannot open manifest; entries are kept in memory until it can be written");
                None
            }
        }
    }

    fn run(mut self, jobs: mpsc::Receiver<LedgerJob>) {
        loop {
            match jobs.recv_timeout(self.cfg.sync_interval) {
                Ok(LedgerJob::Opened(f, start)) => {
                    self.open = Some(f);
                    if let (Some(prev_end), Some((reason, detail))) =
                        (self.timeline_end, self.lost.take())
                    {
                        self.gap(prev_end, ts(start), reason, detail);
                    }
                }
                Ok(LedgerJob::Finish(job)) => {
                    let (file, seg) = *job;
                    self.finish(file, seg);
                }
                Ok(LedgerJob::Lost { reason, detail }) => {
                    // The first reason is the cause; what follows is a consequence.
                    if self.lost.is_none() {
                        self.lost = Some((reason, detail));
                    }
                }
                Ok(LedgerJob::Delete {
                    target,
                    file,
                    sha256,
                    policy,
                    detail,
                    done,
                }) => {
                    let r = self.delete(target, file, sha256, policy, detail);
                    let _ = done.send(r);
                }
                Ok(LedgerJob::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(f) = &self.open {
                        if let Err(e) = f.sync_data() {
                            warn!(camera = %self.cfg.camera, error = %e, "periodic fdatasync failed");
                        }
                    }
                    self.flush_backlog();
                }
            }
        }
    }

    /// Appends (or queues, behind anything already queued) one entry.
    fn enter(&mut self, body: EntryBody) {
        if let Some((_, end)) = body.span() {
            self.timeline_end = Some(end);
        }
        self.backlog.push_back(body);
        if self.backlog.len() > MAX_BACKLOG {
            self.backlog.pop_front();
            error!(camera = %self.cfg.camera, "manifest backlog full; oldest pending entry dropped");
        }
        self.flush_backlog();
    }

    fn flush_backlog(&mut self) {
        if self.manifest.is_none() && !self.backlog.is_empty() {
            self.open_manifest();
        }
        let Some(m) = self.manifest.as_mut() else {
            return;
        };
        while let Some(body) = self.backlog.front() {
            match m.append(body.clone()) {
                Ok(entry) => {
                    self.backlog.pop_front();
                    self.cfg
                        .counters
                        .set_manifest_head(entry.seq() + 1, entry.hash());
                    if let (Some(events), EntryBody::Gap(g)) = (&self.cfg.events, entry.body()) {
                        let _ = events.send(EventKind::GapRecorded {
                            camera: self.cfg.camera.clone(),
                            start: g.start,
                            end: g.end,
                            reason: OrUnknown::Known(g.reason),
                            detail: g.detail.clone(),
                            seq: Some(entry.seq()),
                        });
                    }
                }
                Err(e) => {
                    if self.backlog.len() == 1 {
                        warn!(camera = %self.cfg.camera, error = %e, "manifest write failed; will retry");
                    }
                    return;
                }
            }
        }
    }

    fn gap(&mut self, start: Timestamp, end: Timestamp, reason: GapReason, detail: String) {
        if end <= start {
            return;
        }
        self.enter(EntryBody::Gap(Gap {
            start,
            end,
            reason,
            detail,
        }));
    }

    fn finish(&mut self, file: File, mut seg: SegmentFinished) {
        if let Err(e) = file.sync_all() {
            error!(camera = %self.cfg.camera, path = %seg.path.display(), error = %e, "fsync of finished segment failed");
        }
        drop(file);
        self.open = None;
        if let Some(dir) = seg.path.parent() {
            sync_dir(dir);
        }
        let start = ts(seg.start);
        let end = ts(seg.end).max(start);
        // Time between the previous entry and this segment is a gap: explained by the loss
        // the recorder reported, or (should never happen) marked as unexplained.
        if let Some(prev_end) = self.timeline_end {
            match self.lost.take() {
                // A known stop: every millisecond of it is entered.
                Some((reason, detail)) => self.gap(prev_end, start, reason, detail),
                // Consecutive segments meet exactly; a hole without a reported cause beyond
                // clock jitter is still entered, never silently skipped.
                None if start.ms_since(prev_end) > 100 => self.gap(
                    prev_end,
                    start,
                    GapReason::CameraLost,
                    "no video reached the recorder".to_owned(),
                ),
                None => {}
            }
        }
        match self.segment_entry(&seg.path, start, end) {
            Ok((body, sha256)) => {
                seg.sha256 = Some(sha256);
                self.enter(body);
            }
            Err(e) => {
                error!(camera = %self.cfg.camera, path = %seg.path.display(), error = %e, "cannot enter finished segment in the manifest");
                self.timeline_end = Some(end);
            }
        }
        self.cfg.counters.on_segment_finished(end);
        info!(
            camera = %self.cfg.camera,
            path = %seg.path.display(),
            start = %start,
            end = %end,
            bytes = seg.bytes,
            closed = ?seg.closed,
            "segment finished"
        );
        let _ = self.cfg.finished.send(seg);
    }

    /// Hashes a segment file and builds its entry.
    fn segment_entry(
        &self,
        path: &Path,
        start: Timestamp,
        end: Timestamp,
    ) -> io::Result<(EntryBody, Hash256)> {
        let rel = path
            .strip_prefix(&self.cfg.camera_dir)
            .ok()
            .and_then(Path::to_str)
            .ok_or_else(|| io::Error::other("segment outside the camera folder"))?;
        let file = SegmentFile::new(rel).map_err(|e| io::Error::other(e.to_string()))?;
        let (sha256, size) = Hash256::of_reader(File::open(path)?)?;
        Ok((
            EntryBody::Segment(Segment {
                start,
                end,
                file,
                size,
                sha256,
                // Placeholder until the ledger samples the clock over the segment (issue 12).
                clock: Some(if crate::station::sysinfo::clock_sync().synced {
                    ClockSync::Synced
                } else {
                    ClockSync::Unsynced
                }),
            }),
            sha256,
        ))
    }

    /// Segment files the previous run wrote but never entered (it was killed while writing
    /// them) are entered now, so the footage before a crash is part of the evidence. Their end
    /// is the file's modification time: the recorder writes every frame as it comes.
    fn recover_orphans(&mut self, previous: &PreviousRun) {
        let mut orphans: Vec<(Timestamp, PathBuf)> = Vec::new();
        let Ok(days) = std::fs::read_dir(&self.cfg.camera_dir) else {
            return;
        };
        for day in days.flatten().map(|d| d.path()).filter(|p| p.is_dir()) {
            let Ok(files) = std::fs::read_dir(&day) else {
                continue;
            };
            for path in files.flatten().map(|f| f.path()) {
                if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
                    continue;
                }
                let rel = path
                    .strip_prefix(&self.cfg.camera_dir)
                    .ok()
                    .and_then(Path::to_str)
                    .unwrap_or_default()
                    .to_owned();
                if previous.listed_files.contains(&rel) {
                    continue;
                }
                let Some(start) = segment_start_from_name(&path).map(ts) else {
                    warn!(camera = %self.cfg.camera, path = %path.display(), "unknown file in the recordings folder left alone");
                    continue;
                };
                orphans.push((start, path));
            }
        }
        orphans.sort();
        for (start, path) in orphans {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.len() == 0 {
                // Created at the very moment of the crash: holds nothing.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            if let Some(end) = self.timeline_end {
                if start.ms_since(end) < -TIME_TOLERANCE_MS {
                    warn!(camera = %self.cfg.camera, path = %path.display(), "segment file older than the manifest's timeline and not listed in it; left alone (verify reports it)");
                    continue;
                }
            }
            let end = meta
                .modified()
                .ok()
                .map(|t| ts(chrono::DateTime::<chrono::Utc>::from(t)))
                .unwrap_or(start)
                .max(start);
            match self.segment_entry(&path, start, end) {
                Ok((body, _)) => {
                    if let Some(prev_end) = self.timeline_end {
                        if start.ms_since(prev_end) > TIME_TOLERANCE_MS / 2 {
                            self.gap(
                                prev_end,
                                start,
                                GapReason::CameraLost,
                                "recovered after a crash; no record of why".to_owned(),
                            );
                        }
                    }
                    info!(camera = %self.cfg.camera, path = %path.display(), "segment written before a crash recovered into the manifest");
                    self.enter(body);
                }
                Err(e) => {
                    warn!(camera = %self.cfg.camera, path = %path.display(), error = %e, "cannot recover segment")
                }
            }
        }
    }

    fn delete(
        &mut self,
        target: u64,
        file: SegmentFile,
        sha256: Hash256,
        policy: DeletionPolicy,
        detail: String,
    ) -> io::Result<()> {
        // A deletion is never queued: the file goes only once its entry is durable, and an
        // entry that waited in memory could be repeated by the next retention pass.
        if !self.backlog.is_empty() {
            self.flush_backlog();
            if !self.backlog.is_empty() {
                return Err(io::Error::other(
                    "manifest not writable; deletion postponed",
                ));
            }
        }
        let Some(m) = self.manifest.as_mut() else {
            return Err(io::Error::other("manifest not open; deletion postponed"));
        };
        let path = self.cfg.camera_dir.join(file.as_str());
        let body = EntryBody::Deleted(Deleted {
            at: Timestamp::now(),
            target,
            file,
            sha256,
            policy,
            detail,
        });
        let appended = match m.append(body.clone()) {
            Ok(entry) => Ok(entry),
            Err(e) => {
                // A disk filled by something else: spend the reserve on the entry.
                let storage = self.cfg.camera_dir.parent().unwrap_or(Path::new("/"));
                if !crate::disk::reserve::release_reserve(storage) {
                    return Err(io::Error::other(e.to_string()));
                }
                warn!(camera = %self.cfg.camera, "disk full: space reserve released to record deletions");
                m.append(body).map_err(|e| io::Error::other(e.to_string()))
            }
        }?;
        self.cfg
            .counters
            .set_manifest_head(appended.seq() + 1, appended.hash());
        std::fs::remove_file(&path)?;
        if let Some(dir) = path.parent() {
            sync_dir(dir);
            // Remove the day folder once it is empty (ignore "not empty").
            let _ = std::fs::remove_dir(dir);
        }
        Ok(())
    }

    fn shutdown(&mut self) {
        let now = Timestamp::now();
        if let (Some((reason, detail)), Some(since)) = (self.lost.take(), self.timeline_end) {
            self.gap(since, now, reason, detail);
        }
        self.enter(EntryBody::Stop(Stop { at: now }));
        if !self.backlog.is_empty() {
            error!(camera = %self.cfg.camera, pending = self.backlog.len(), "manifest entries could not be written before stopping");
        }
    }
}

fn ts(t: chrono::DateTime<chrono::Utc>) -> Timestamp {
    Timestamp::from_datetime(t).unwrap_or_else(|_| Timestamp::now())
}

/// Whether the machine booted since the agent last ran with this storage (compares the
/// kernel's boot id with the one stored at the previous start, then stores the current one).
pub fn rebooted_since_last_start(storage: &Path) -> bool {
    let Ok(current) = std::fs::read_to_string("/proc/sys/kernel/random/boot_id") else {
        return false;
    };
    let marker = storage.join(".boot_id");
    let previous = std::fs::read_to_string(&marker).ok();
    if let Err(e) = std::fs::write(&marker, current.trim()) {
        warn!(path = %marker.display(), error = %e, "cannot store boot id");
    }
    previous.is_some_and(|p| p.trim() != current.trim())
}
