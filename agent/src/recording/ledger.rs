//! One camera's ledger thread: everything that happens to segment files after the recorder
//! wrote them, in order, off the GStreamer streaming thread.
//!
//! * every `sync_interval`, `fdatasync` of the open segment (what a power cut can lose);
//! * a closed segment is `fsync`ed with its directory, hashed, entered in the signed manifest,
//!   and only then announced to the rest of the agent;
//! * time without recording becomes a gap entry with its reason (camera lost, disk full,
//!   storage error; crash, power loss or restart, detected at start from the manifest);
//! * before the recorder creates a segment file, an `open` entry announcing it is written and
//!   synced (`Announce`): after a crash only announced files are adopted, and any other unlisted
//!   file in the folder is reported as foreign and never signed;
//! * the kernel clock is sampled at a segment's start, every `sync_interval` and at its end; a
//!   segment is entered `unsynced` if any sample was;
//! * retention deletes a file only after its `deleted` entry is durable.
//!
//! If the manifest cannot be written (disk full), entries wait in memory, in order, and are
//! written when space returns; recording never waits for the manifest.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::Arc;
use std::time::Duration;

use stationwatch_protocol::manifest::{
    segment_start_from_name, ClockSync, Deleted, DeletionPolicy, EntryBody, Gap, GapReason,
    Hash256, Hold, HoldSource, Open, Release, Segment, SegmentFile, Start, StationKey, Stop,
    Timestamp, SEGMENT_EXT, TIME_TOLERANCE_MS,
};
use stationwatch_protocol::mqtt::{EventKind, OrUnknown};
use stationwatch_protocol::{CameraId, StationId};
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};

use crate::disk::sync_dir;
use crate::recording::manifest_writer::{ManifestWriter, PreviousRun};
use crate::recording::segment::SegmentFinished;
use crate::state::CameraCounters;

/// Entries kept in memory while the manifest cannot be written; beyond this the oldest are
/// dropped with an error (the chain then shows a gap, which the verifier reports).
const MAX_BACKLOG: usize = 100_000;

/// Work for the ledger thread.
pub enum LedgerJob {
    /// A segment file is about to be created: enter its `open` entry and make it durable, then
    /// answer `true` (or `false` if the manifest cannot be written now; nothing is queued).
    Announce {
        file: SegmentFile,
        done: mpsc::SyncSender<bool>,
    },
    /// A new segment file is open (its first frame at `start`): sync it periodically; if
    /// recording had stopped, the gap ends here and is entered now. `unannounced` names the file
    /// when its announcement could not be made durable before it was created: its `open` entry
    /// is queued now, still ahead of its `segment` entry.
    Opened {
        file: File,
        start: chrono::DateTime<chrono::Utc>,
        unannounced: Option<SegmentFile>,
    },
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
    /// Legal holds: make the manifest's holds in force of the `managed` sources equal `wanted`
    /// (a `hold` entry for each new or changed hold, a `release` for each one no longer
    /// wanted), durably, then answer how many entries were written.
    Holds {
        wanted: Vec<Hold>,
        managed: Vec<HoldSource>,
        done: mpsc::SyncSender<Result<usize, String>>,
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
    /// Where gap entries and foreign files are reported as events (MQTT), if anywhere.
    pub events: Option<UnboundedSender<EventKind>>,
    /// Whether the kernel clock is synchronised now (sampled over each segment).
    pub clock_synced: fn() -> bool,
}

/// The kernel's word on the clock (a read-only `adjtimex`, a few hundred nanoseconds).
pub fn kernel_clock_synced() -> bool {
    crate::station::sysinfo::clock_sync().synced
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
    /// Every clock sample since the open segment started was synchronised.
    clock_synced: bool,
    /// Legal holds in force per the manifest, by id.
    holds: HashMap<String, Hold>,
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
            clock_synced: true,
            holds: HashMap::new(),
        };
        let previous = ledger.open_manifest().unwrap_or_default();
        ledger.timeline_end = previous.timeline_end;
        ledger.holds = previous.holds.clone();
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
                Ok(LedgerJob::Announce { file, done }) => {
                    let durable = self.announce(file);
                    let _ = done.send(durable);
                }
                Ok(LedgerJob::Opened {
                    file: f,
                    start,
                    unannounced,
                }) => {
                    self.open = Some(f);
                    self.clock_synced = (self.cfg.clock_synced)();
                    if let Some(file) = unannounced {
                        warn!(camera = %self.cfg.camera, %file, "segment created before its announcement was durable; open entry queued");
                        self.enter(EntryBody::Open(Open {
                            at: ts(start),
                            file,
                        }));
                    }
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
                Ok(LedgerJob::Holds {
                    wanted,
                    managed,
                    done,
                }) => {
                    let r = self.sync_holds(wanted, &managed);
                    let _ = done.send(r);
                }
                Ok(LedgerJob::Shutdown) | Err(RecvTimeoutError::Disconnected) => {
                    self.shutdown();
                    return;
                }
                Err(RecvTimeoutError::Timeout) => {
                    if let Some(f) = &self.open {
                        self.clock_synced &= (self.cfg.clock_synced)();
                        if let Err(e) = f.sync_data() {
                            warn!(camera = %self.cfg.camera, error = %e, "periodic fdatasync failed");
                        }
                    }
                    self.flush_backlog();
                }
            }
        }
    }

    /// Writes the `open` entry of a file about to be created, durably, ahead of everything still
    /// queued. Returns whether it is on disk; when not, nothing is queued (the recorder retries
    /// at key units while the disk is full, and only a file that exists gets an entry, through
    /// `Opened { unannounced }`).
    fn announce(&mut self, file: SegmentFile) -> bool {
        self.flush_backlog();
        if self.manifest.is_none() {
            self.open_manifest();
        }
        let Some(m) = self.manifest.as_mut() else {
            return false;
        };
        if !self.backlog.is_empty() {
            return false;
        }
        let body = EntryBody::Open(Open {
            at: Timestamp::now(),
            file,
        });
        match m.append(body) {
            Ok(entry) => {
                self.cfg
                    .counters
                    .set_manifest_head(entry.seq() + 1, entry.hash());
                true
            }
            Err(e) => {
                warn!(camera = %self.cfg.camera, error = %e, "cannot announce the next segment file");
                false
            }
        }
    }

    /// Appends one entry durably, behind everything queued; an error if it cannot be now.
    fn append_now(&mut self, body: EntryBody) -> Result<(), String> {
        self.flush_backlog();
        if self.manifest.is_none() {
            self.open_manifest();
        }
        if !self.backlog.is_empty() {
            return Err("manifest not writable (entries queued)".into());
        }
        let m = self.manifest.as_mut().ok_or("manifest cannot be opened")?;
        let entry = m.append(body).map_err(|e| e.to_string())?;
        self.cfg
            .counters
            .set_manifest_head(entry.seq() + 1, entry.hash());
        Ok(())
    }

    fn sync_holds(&mut self, wanted: Vec<Hold>, managed: &[HoldSource]) -> Result<usize, String> {
        let mut written = 0;
        let mut stale: Vec<Hold> = self
            .holds
            .values()
            .filter(|h| managed.contains(&h.source) && !wanted.iter().any(|w| w.id == h.id))
            .cloned()
            .collect();
        stale.sort_by(|a, b| a.id.cmp(&b.id));
        for h in stale {
            let reason = match h.source {
                HoldSource::Config => "no longer in the config file",
                _ => "cleared by command",
            };
            self.append_now(EntryBody::Release(Release {
                at: Timestamp::now(),
                id: h.id.clone(),
                source: h.source,
                reason: reason.into(),
            }))?;
            info!(camera = %self.cfg.camera, hold = %h.id, "legal hold release entered in the manifest");
            self.holds.remove(&h.id);
            written += 1;
        }
        for mut h in wanted {
            if let Some(cur) = self.holds.get(&h.id) {
                if cur.from == h.from && cur.to == h.to && cur.source == h.source {
                    continue;
                }
            }
            h.at = Timestamp::now();
            self.append_now(EntryBody::Hold(h.clone()))?;
            info!(camera = %self.cfg.camera, hold = %h.id, "legal hold entered in the manifest");
            self.holds.insert(h.id.clone(), h);
            written += 1;
        }
        Ok(written)
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
        let clock = if self.clock_synced && (self.cfg.clock_synced)() {
            ClockSync::Synced
        } else {
            ClockSync::Unsynced
        };
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
        match self.segment_entry(&seg.path, start, end, clock) {
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
        clock: ClockSync,
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
                clock: Some(clock),
            }),
            sha256,
        ))
    }

    /// After an unclean stop, segment files the previous run announced (`open`) but never
    /// entered (it was killed while writing them) are entered now, so the footage before a crash
    /// is part of the evidence. Their end is the file's modification time: the recorder writes
    /// every frame as it comes; their clock is `unsynced` (nobody sampled it).
    ///
    /// Any other segment file the manifest does not list is *foreign*: copied in, renamed, or
    /// left by something else. It is never signed; it is logged and reported as an event, and
    /// `verify` reports it too.
    fn recover_orphans(&mut self, previous: &PreviousRun) {
        let empty = HashMap::new();
        let adoptable = if previous.unclean_stop {
            &previous.announced
        } else {
            &empty
        };
        let mut orphans: Vec<(Timestamp, PathBuf, String)> = Vec::new();
        for (rel, path) in segment_files(&self.cfg.camera_dir) {
            if previous.listed_files.contains(&rel) {
                continue;
            }
            match adoptable.get(&rel) {
                Some(at) => {
                    let start = segment_start_from_name(&rel).unwrap_or(*at);
                    orphans.push((start, path, rel));
                }
                None => self.foreign(&rel, previous.unclean_stop),
            }
        }
        orphans.sort();
        for (start, path, rel) in orphans {
            let meta = match std::fs::metadata(&path) {
                Ok(m) => m,
                Err(_) => continue,
            };
            if meta.len() == 0 {
                // Created at the very moment of the crash: holds nothing.
                let _ = std::fs::remove_file(&path);
                continue;
            }
            let end = meta
                .modified()
                .ok()
                .map(|t| ts(chrono::DateTime::<chrono::Utc>::from(t)))
                .unwrap_or(start)
                .max(start);
            match self.segment_entry(&path, start, end, ClockSync::Unsynced) {
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
                    info!(camera = %self.cfg.camera, file = %rel, "segment announced before a crash recovered into the manifest");
                    self.enter(body);
                }
                Err(e) => {
                    warn!(camera = %self.cfg.camera, path = %path.display(), error = %e, "cannot recover segment")
                }
            }
        }
    }

    /// Reports a segment file the agent did not announce: never signed, never deleted.
    fn foreign(&self, rel: &str, unclean_stop: bool) {
        warn!(
            camera = %self.cfg.camera,
            file = rel,
            after_unclean_stop = unclean_stop,
            "FOREIGN segment file: not listed in the manifest and never announced by this agent; \
             it is not signed and not footage the station vouches for (verify reports it)"
        );
        if let Some(events) = &self.cfg.events {
            let _ = events.send(EventKind::ForeignFile {
                camera: self.cfg.camera.clone(),
                file: rel.to_owned(),
            });
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

/// Segment files under a camera folder (`<day>/<name>.ts`), as (relative name, path).
fn segment_files(camera_dir: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(camera_dir) else {
        return out;
    };
    for day in days.flatten().map(|d| d.path()).filter(|p| p.is_dir()) {
        let Ok(files) = std::fs::read_dir(&day) else {
            continue;
        };
        for path in files.flatten().map(|f| f.path()) {
            if path.extension().and_then(|e| e.to_str()) != Some(SEGMENT_EXT) {
                continue;
            }
            if let Some(rel) = path.strip_prefix(camera_dir).ok().and_then(Path::to_str) {
                out.push((rel.to_owned(), path.clone()));
            }
        }
    }
    out.sort();
    out
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::CameraCounters;
    use stationwatch_protocol::manifest::{parse_manifest, verify_chain, MANIFEST_FILE};
    use std::sync::atomic::{AtomicBool, Ordering};

    fn cfg(
        dir: &Path,
        key: Arc<StationKey>,
        events: UnboundedSender<EventKind>,
        clock_synced: fn() -> bool,
    ) -> LedgerConfig {
        let (fin, _) = tokio::sync::mpsc::unbounded_channel();
        LedgerConfig {
            station: StationId::new("S-1").unwrap(),
            camera: CameraId::new("cam").unwrap(),
            camera_dir: dir.to_owned(),
            key,
            sync_interval: Duration::from_millis(20),
            counters: CameraCounters::new(),
            finished: fin,
            rebooted: false,
            events: Some(events),
            clock_synced,
        }
    }

    /// A previous run: `start`, an `open` of `announced`, that file written, then (if `clean`)
    /// a `stop`. Also plants a well-named file after the end of the timeline that nobody
    /// announced.
    fn previous_run(dir: &Path, key: &Arc<StationKey>, clean: bool) -> (String, String) {
        let (st, cam) = (
            StationId::new("S-1").unwrap(),
            CameraId::new("cam").unwrap(),
        );
        let (mut w, _) = ManifestWriter::open(dir, &st, &cam, key.clone()).unwrap();
        w.append(EntryBody::Start(Start {
            at: Timestamp::now(),
            agent: "test".into(),
            key: key.public(),
        }))
        .unwrap();
        let announced = "2026-11-21/20261121T100000.000Z.ts".to_owned();
        w.append(EntryBody::Open(Open {
            at: Timestamp::now(),
            file: SegmentFile::new(announced.as_str()).unwrap(),
        }))
        .unwrap();
        if clean {
            w.append(EntryBody::Stop(Stop {
                at: Timestamp::now(),
            }))
            .unwrap();
        }
        std::fs::create_dir_all(dir.join("2026-11-21")).unwrap();
        std::fs::write(dir.join(&announced), b"recorded before the crash").unwrap();
        let planted = "2026-11-21/20261121T235900.000Z.ts".to_owned();
        std::fs::write(dir.join(&planted), b"copied in while the agent was off").unwrap();
        (announced, planted)
    }

    fn segment_files_in_manifest(dir: &Path) -> Vec<String> {
        let m = parse_manifest(&std::fs::read(dir.join(MANIFEST_FILE)).unwrap());
        m.entries
            .iter()
            .filter_map(|e| match e.body() {
                EntryBody::Segment(s) => Some(s.file.as_str().to_owned()),
                _ => None,
            })
            .collect()
    }

    fn foreign_events(rx: &mut tokio::sync::mpsc::UnboundedReceiver<EventKind>) -> Vec<String> {
        let mut out = Vec::new();
        while let Ok(ev) = rx.try_recv() {
            if let EventKind::ForeignFile { file, .. } = ev {
                out.push(file);
            }
        }
        out
    }

    #[test]
    fn after_a_crash_only_announced_files_are_adopted_and_strangers_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StationKey::generate().unwrap());
        let (announced, planted) = previous_run(dir.path(), &key, false);
        let (ev, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let (jobs, handle) = spawn(cfg(dir.path(), key.clone(), ev, || true)).unwrap();
        jobs.send(LedgerJob::Shutdown).unwrap();
        handle.join().unwrap();
        assert_eq!(segment_files_in_manifest(dir.path()), [announced]);
        assert_eq!(foreign_events(&mut ev_rx), std::slice::from_ref(&planted));
        assert!(
            dir.path().join(&planted).exists(),
            "a foreign file is left alone"
        );
        let m = parse_manifest(&std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap());
        assert_eq!(verify_chain(&m.entries, &key.public()), []);
        // The adopted segment's clock was not sampled: it is marked unsynced.
        assert!(m.entries.iter().any(|e| matches!(
            e.body(),
            EntryBody::Segment(s) if s.clock == Some(ClockSync::Unsynced)
        )));
    }

    #[test]
    fn after_a_clean_stop_nothing_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StationKey::generate().unwrap());
        let (announced, planted) = previous_run(dir.path(), &key, true);
        let (ev, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let (jobs, handle) = spawn(cfg(dir.path(), key, ev, || true)).unwrap();
        jobs.send(LedgerJob::Shutdown).unwrap();
        handle.join().unwrap();
        assert!(segment_files_in_manifest(dir.path()).is_empty());
        assert_eq!(foreign_events(&mut ev_rx), [announced, planted]);
    }

    static CLOCK_OK: AtomicBool = AtomicBool::new(true);

    #[test]
    fn a_segment_is_unsynced_if_any_clock_sample_was() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StationKey::generate().unwrap());
        let (ev, _ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let (jobs, handle) =
            spawn(cfg(dir.path(), key, ev, || CLOCK_OK.load(Ordering::SeqCst))).unwrap();
        let t0 = chrono::Utc::now();
        let record = |name: &str, unsync_midway: bool| {
            let rel = format!("2026-11-21/{name}");
            let path = dir.path().join(&rel);
            let (done, answer) = mpsc::sync_channel(1);
            jobs.send(LedgerJob::Announce {
                file: SegmentFile::new(rel.as_str()).unwrap(),
                done,
            })
            .unwrap();
            assert!(answer.recv().unwrap(), "announced durably");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            let f = File::create(&path).unwrap();
            jobs.send(LedgerJob::Opened {
                file: f.try_clone().unwrap(),
                start: t0,
                unannounced: None,
            })
            .unwrap();
            if unsync_midway {
                CLOCK_OK.store(false, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                CLOCK_OK.store(true, Ordering::SeqCst);
            }
            std::thread::sleep(Duration::from_millis(50));
            jobs.send(LedgerJob::Finish(Box::new((
                f,
                SegmentFinished {
                    camera: CameraId::new("cam").unwrap(),
                    path,
                    start: t0,
                    end: t0,
                    bytes: 0,
                    closed: crate::recording::segment::CloseReason::StreamEnded,
                    sha256: None,
                },
            ))))
            .unwrap();
        };
        record("20261121T100000.000Z.ts", false);
        record("20261121T100001.000Z.ts", true);
        jobs.send(LedgerJob::Shutdown).unwrap();
        handle.join().unwrap();
        let m = parse_manifest(&std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap());
        let clocks: Vec<_> = m
            .entries
            .iter()
            .filter_map(|e| match e.body() {
                EntryBody::Segment(s) => s.clock,
                _ => None,
            })
            .collect();
        assert_eq!(clocks, [ClockSync::Synced, ClockSync::Unsynced]);
    }
}

#[cfg(test)]
mod hold_tests {
    use super::*;
    use crate::state::CameraCounters;
    use stationwatch_protocol::manifest::{parse_manifest, MANIFEST_FILE};

    fn hold(id: &str, source: HoldSource) -> Hold {
        Hold {
            at: Timestamp::now(),
            id: id.into(),
            from: Timestamp::from_unix_ms(0).unwrap(),
            to: Timestamp::from_unix_ms(60_000).unwrap(),
            source,
            reason: "case".into(),
        }
    }

    fn sync(jobs: &mpsc::Sender<LedgerJob>, wanted: Vec<Hold>, managed: Vec<HoldSource>) -> usize {
        let (done, answer) = mpsc::sync_channel(1);
        jobs.send(LedgerJob::Holds {
            wanted,
            managed,
            done,
        })
        .unwrap();
        answer.recv().unwrap().unwrap()
    }

    fn start(
        dir: &Path,
        key: &Arc<StationKey>,
    ) -> (mpsc::Sender<LedgerJob>, std::thread::JoinHandle<()>) {
        let (fin, _) = tokio::sync::mpsc::unbounded_channel();
        spawn(LedgerConfig {
            station: StationId::new("S-1").unwrap(),
            camera: CameraId::new("cam").unwrap(),
            camera_dir: dir.to_owned(),
            key: key.clone(),
            sync_interval: Duration::from_millis(50),
            counters: CameraCounters::new(),
            finished: fin,
            rebooted: false,
            events: None,
            clock_synced: || true,
        })
        .unwrap()
    }

    #[test]
    fn holds_are_entered_once_and_released_when_no_longer_wanted_across_restarts() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StationKey::generate().unwrap());
        let all = vec![HoldSource::Config, HoldSource::Command];
        let (jobs, h) = start(dir.path(), &key);
        let wanted = vec![
            hold("config-1", HoldSource::Config),
            hold("case-7", HoldSource::Command),
        ];
        assert_eq!(sync(&jobs, wanted.clone(), all.clone()), 2);
        assert_eq!(sync(&jobs, wanted, all.clone()), 0, "nothing new");
        jobs.send(LedgerJob::Shutdown).unwrap();
        h.join().unwrap();
        // Restarted with the config hold gone and the holds file unreadable (only config
        // managed): the config hold is released, the commanded one stays in force.
        let (jobs, h) = start(dir.path(), &key);
        assert_eq!(sync(&jobs, vec![], vec![HoldSource::Config]), 1);
        jobs.send(LedgerJob::Shutdown).unwrap();
        h.join().unwrap();
        let m = parse_manifest(&std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap());
        let holds: Vec<String> = m
            .entries
            .iter()
            .filter_map(|e| match e.body() {
                EntryBody::Hold(h) => Some(format!("hold {}", h.id)),
                EntryBody::Release(r) => Some(format!("release {}", r.id)),
                _ => None,
            })
            .collect();
        assert_eq!(holds, ["hold config-1", "hold case-7", "release config-1"]);
    }
}
