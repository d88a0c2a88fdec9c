//! Uploads to the central archive (`docs/archive.md`): requested windows first, then
//! continuous backfill, resumable chunk by chunk, never taking the live stream's share of the
//! uplink. Nothing here can reach the recording: it only reads finished files and manifests,
//! and its holds only keep footage longer.
//!
//! * `jobs.rs` the durable queue, modes and archived records; `index.rs` the manifests read
//!   incrementally; `plan.rs` what next (pure); `pace.rs` how fast; `client.rs` signed HTTP.
//! * The loop: plan → make sure the archive holds the manifest lines the item needs → ask the
//!   archive how many bytes of the segment it holds → send the rest in chunks → archived or
//!   refused. Any error: back off (1 s … 60 s) and plan again; the archive's own count of
//!   received bytes is where a resumed upload starts, so a cut link or a restart re-sends at
//!   most the chunk in flight.

pub mod client;
pub mod index;
pub mod jobs;
pub mod pace;
pub mod plan;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use stationwatch_protocol::archive::{ManifestRange, SegmentPhase, MAX_CHUNK_BYTES};
use stationwatch_protocol::manifest::{StationKey, Timestamp, MANIFEST_FILE};
use stationwatch_protocol::mqtt::{MessageId, SetUploadSetting, UploadHealth, UploadMode};
use stationwatch_protocol::{CameraId, StationId};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::config::UploadConfig;
use crate::live::uplink::UplinkEstimate;
use crate::retention::holds::HoldStore;

use self::client::{ArchiveClient, ClientError, PutOutcome};
use self::index::ManifestIndex;
use self::jobs::{Job, JobStore};
use self::pace::{LiveShare, Pacer};
use self::plan::{Class, Item};

/// A refused segment (or one whose file is gone) is tried again after this long.
const RETRY_REFUSED: Duration = Duration::from_secs(3600);
/// A paced chunk is cut to what the allowed rate sends in this many seconds ...
const CHUNK_SECONDS: u64 = 10;
/// ... but never smaller than this.
const MIN_CHUNK: u64 = 16 * 1024;
/// Pieces a chunk's body is paced in.
const PIECE: usize = 32 * 1024;
/// Done jobs stay in health this long.
const KEEP_DONE_MS: i64 = 24 * 3600 * 1000;
/// Nothing to do: plan again at least this often (new segments, schedule).
const IDLE: Duration = Duration::from_secs(5);

/// Manifest lines `[lo, hi]` a camera's archive must hold.
type ManifestNeed = (CameraId, u64, u64);
/// Whether a segment (by seq) is to be left alone for now.
type SkipFn<'a> = Box<dyn Fn(u64) -> bool + 'a>;

/// What the uploader needs.
pub struct UploadContext {
    pub config: UploadConfig,
    pub station: StationId,
    pub key: Arc<StationKey>,
    pub storage: PathBuf,
    pub cameras: Vec<CameraId>,
    /// Live supervisors' uplink estimates (the spare capacity uploads may use).
    pub uplinks: Vec<watch::Receiver<UplinkEstimate>>,
    pub holds: Arc<HoldStore>,
    pub store: Arc<Mutex<JobStore>>,
    /// A window this long after its end counts as over even without a later manifest entry.
    pub segment: Duration,
}

/// What commands reach of the uploader.
#[derive(Clone)]
pub struct UploadControl {
    store: Arc<Mutex<JobStore>>,
    holds: Arc<HoldStore>,
    wake: Arc<Notify>,
    cameras: Vec<CameraId>,
    config: UploadConfig,
}

impl UploadControl {
    /// Queues (or replaces) a job; durable, and its window held in every manifest, before it
    /// returns. Returns the cameras it covers and whether it replaced a job.
    #[allow(clippy::too_many_arguments)]
    pub fn add(
        &self,
        id: MessageId,
        cameras: Vec<CameraId>,
        from: Timestamp,
        to: Timestamp,
        priority: u8,
        reason: String,
        now: Timestamp,
    ) -> io::Result<(Vec<CameraId>, bool)> {
        let cameras = if cameras.is_empty() {
            self.cameras.clone()
        } else {
            cameras
        };
        let job = Job {
            id,
            cameras: cameras.clone(),
            from,
            to,
            priority,
            reason,
            queued_at: now,
            done_at: None,
        };
        let (replaced, holds) = {
            let mut s = self.store.lock();
            let replaced = s.put(job)?;
            (replaced, s.holds().map_err(io::Error::other)?)
        };
        self.holds.set_requested(holds)?;
        self.wake.notify_one();
        Ok((cameras, replaced))
    }

    /// Drops a job and its hold.
    pub fn cancel(&self, id: &MessageId) -> io::Result<bool> {
        let (existed, holds) = {
            let mut s = self.store.lock();
            let existed = s.cancel(id)?;
            (existed, s.holds().map_err(io::Error::other)?)
        };
        self.holds.set_requested(holds)?;
        self.wake.notify_one();
        Ok(existed)
    }

    /// Sets a station or camera mode override; the mode now in force and whether it is an
    /// override.
    pub fn set_mode(
        &self,
        camera: Option<&CameraId>,
        setting: SetUploadSetting,
    ) -> io::Result<(UploadMode, bool)> {
        let mut s = self.store.lock();
        s.set_mode(camera, setting.mode())?;
        let modes = s.modes().clone();
        drop(s);
        self.wake.notify_one();
        Ok(match camera {
            Some(c) => effective_mode(&self.config, &modes, c),
            None => (
                modes.station.unwrap_or(self.config.mode),
                modes.station.is_some(),
            ),
        })
    }
}

/// A camera's mode: its override, else the station's override, else its configured mode.
fn effective_mode(
    cfg: &UploadConfig,
    modes: &jobs::Modes,
    camera: &CameraId,
) -> (UploadMode, bool) {
    if let Some(m) = modes.cameras.get(camera) {
        return (*m, true);
    }
    if let Some(m) = modes.station {
        return (cfg.camera_modes.get(camera).copied().unwrap_or(m), true);
    }
    (cfg.mode_of(camera), false)
}

pub struct UploadHandle {
    pub control: UploadControl,
    pub status: watch::Receiver<UploadHealth>,
    pub task: JoinHandle<()>,
}

/// Starts the uploader task.
pub fn spawn(ctx: UploadContext, shutdown: CancellationToken) -> Result<UploadHandle, ClientError> {
    let client = ArchiveClient::new(&ctx.config, ctx.station.clone(), ctx.key.clone())?;
    let wake = Arc::new(Notify::new());
    let control = UploadControl {
        store: ctx.store.clone(),
        holds: ctx.holds.clone(),
        wake: wake.clone(),
        cameras: ctx.cameras.clone(),
        config: ctx.config.clone(),
    };
    let (status_tx, status) = watch::channel(UploadHealth {
        mode: ctx.config.mode,
        ..Default::default()
    });
    let uploader = Uploader {
        indexes: ctx
            .cameras
            .iter()
            .map(|c| {
                let path = ctx.storage.join(c.as_str()).join(MANIFEST_FILE);
                (c.clone(), ManifestIndex::new(path))
            })
            .collect(),
        ranges: HashMap::new(),
        skip: HashMap::new(),
        client,
        wake,
        status: status_tx,
        sent: VecDeque::new(),
        archived_segments: 0,
        refused_segments: 0,
        last_error: None,
        pacer: Pacer::new(PIECE as u64 * 2),
        share: Arc::new(Mutex::new(LiveShare::default())),
        ctx,
    };
    let task = tokio::spawn(uploader.run(shutdown));
    Ok(UploadHandle {
        control,
        status,
        task,
    })
}

struct Uploader {
    ctx: UploadContext,
    client: ArchiveClient,
    indexes: BTreeMap<CameraId, ManifestIndex>,
    /// What the archive holds of each camera's manifest, as last heard.
    ranges: HashMap<CameraId, Option<ManifestRange>>,
    /// Segments not to try before the instant (refused, file gone).
    skip: HashMap<(CameraId, u64), Instant>,
    wake: Arc<Notify>,
    status: watch::Sender<UploadHealth>,
    /// Bytes sent in the last seconds, for the rate.
    sent: VecDeque<(Instant, u64)>,
    archived_segments: u64,
    refused_segments: u64,
    last_error: Option<String>,
    pacer: Pacer,
    /// What uploads may use beside live streams (shared with the paced request bodies).
    share: Arc<Mutex<LiveShare>>,
}

/// Why one item stopped.
enum Stop {
    Shutdown,
    Failed(String),
}

impl Uploader {
    async fn run(mut self, shutdown: CancellationToken) {
        info!(url = %self.ctx.config.url, mode = self.ctx.config.mode.as_str(), "uploader started");
        let mut backoff = Backoff::new(Duration::from_secs(1), Duration::from_secs(60));
        while !shutdown.is_cancelled() {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                n = self.next_item() => n,
            };
            let Some(item) = next else {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = self.wake.notified() => {}
                    _ = tokio::time::sleep(IDLE) => {}
                }
                continue;
            };
            let result = tokio::select! {
                _ = shutdown.cancelled() => Err(Stop::Shutdown),
                r = self.upload(&item, &shutdown) => r,
            };
            match result {
                Ok(()) => {
                    backoff.reset();
                    self.last_error = None;
                }
                Err(Stop::Shutdown) => break,
                Err(Stop::Failed(e)) => {
                    let wait = backoff.next_delay();
                    warn!(camera = %item.camera, seq = item.seq, error = %e, retry_in_ms = wait.as_millis() as u64, "upload failed; will resume");
                    self.last_error = Some(e);
                    self.publish(None);
                    // The archive may have moved on (another replica, a restart): ask again.
                    self.ranges.remove(&item.camera);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
        info!("uploader stopped");
    }

    /// Refreshes the manifests and the plan, finishes complete jobs, and picks what to send.
    async fn next_item(&mut self) -> Option<Item> {
        {
            let mut store = self.ctx.store.lock();
            if store.recheck() {
                info!("upload jobs file readable again");
                let holds = store.holds();
                drop(store);
                if let Ok(h) = holds {
                    if let Err(e) = self.ctx.holds.set_requested(h) {
                        error!(error = %e, "upload holds could not be entered in the manifests");
                    }
                }
            }
        }
        for (cam, idx) in &mut self.indexes {
            if let Err(e) = idx.refresh() {
                warn!(camera = %cam, error = %e, "cannot read the manifest for uploads");
            }
        }
        {
            // Records of segments retention deleted are forgotten (the file stays small).
            let mut store = self.ctx.store.lock();
            for (cam, idx) in &self.indexes {
                let keep = |seq| idx.find(seq).is_some_and(|e| !e.deleted);
                if let Err(e) = store.forget_archived(cam, keep) {
                    warn!(camera = %cam, error = %e, "cannot update the archived records");
                }
            }
        }
        let now_i = Instant::now();
        self.skip.retain(|_, until| *until > now_i);
        let now = Timestamp::now();
        let plan = self.plan(now);
        // Jobs whose window is complete: make sure their manifest lines are archived, then
        // release their holds.
        let done: Vec<(MessageId, Vec<ManifestNeed>)> = {
            let store = self.ctx.store.lock();
            let jobs: Vec<&Job> = store.jobs().collect();
            plan::newly_complete(&plan, &jobs)
                .into_iter()
                .filter_map(|id| {
                    let p = plan.jobs.iter().find(|p| p.health.job == id)?;
                    Some((id, p.manifest.clone()))
                })
                .collect()
        };
        let mut finished = Vec::new();
        for (id, needs) in done {
            let mut ok = true;
            for (cam, lo, hi) in needs {
                if let Err(e) = self.ensure_manifest(&cam, lo, hi).await {
                    self.last_error = Some(e);
                    ok = false;
                }
            }
            if ok {
                info!(job = %id, "upload job complete: window archived, hold released");
                finished.push(id);
            }
        }
        let forget = now.saturating_add_ms(-KEEP_DONE_MS);
        let holds = {
            let mut store = self.ctx.store.lock();
            match store.finish(&finished, now, forget) {
                Ok(true) => Some(store.holds()),
                Ok(false) => None,
                Err(e) => {
                    error!(error = %e, "cannot store finished upload jobs");
                    None
                }
            }
        };
        if let Some(Ok(h)) = holds {
            if let Err(e) = self.ctx.holds.set_requested(h) {
                error!(error = %e, "upload holds could not be released in the manifests");
            }
        }
        let plan = if finished.is_empty() {
            plan
        } else {
            self.plan(now)
        };
        let local = chrono::Local::now().time();
        let live: Vec<UplinkEstimate> = self.ctx.uplinks.iter().map(|u| *u.borrow()).collect();
        let share = self.share.lock().update(&live);
        let item = plan
            .items
            .iter()
            .find(|i| pace::allowed_bps(i.class, share, &self.ctx.config, local).is_some())
            .cloned();
        self.publish(Some(&plan));
        item
    }

    fn plan(&self, now: Timestamp) -> plan::Plan {
        let store = self.ctx.store.lock();
        let jobs: Vec<&Job> = store.jobs().collect();
        let modes = store.modes().clone();
        let skip: Vec<(CameraId, SkipFn<'_>)> = self
            .indexes
            .keys()
            .map(|c| {
                let c2 = c.clone();
                let f: SkipFn<'_> = Box::new(move |seq| self.skip.contains_key(&(c2.clone(), seq)));
                (c.clone(), f)
            })
            .collect();
        let inputs: Vec<plan::CameraInput<'_>> = self
            .indexes
            .iter()
            .zip(&skip)
            .map(|((id, idx), (_, f))| plan::CameraInput {
                id,
                mode: effective_mode(&self.ctx.config, &modes, id).0,
                entries: &idx.entries,
                archived: store.archived().get(id),
                skip: f.as_ref(),
            })
            .collect();
        let grace = i64::try_from(self.ctx.segment.as_millis()).unwrap_or(i64::MAX / 2) + 30_000;
        plan::plan(&inputs, &jobs, now, grace)
    }

    fn publish(&mut self, plan: Option<&plan::Plan>) {
        let cutoff = Instant::now() - Duration::from_secs(10);
        while self.sent.front().is_some_and(|(t, _)| *t < cutoff) {
            self.sent.pop_front();
        }
        let bytes: u64 = self.sent.iter().map(|(_, b)| b).sum();
        let rate_bps = bytes * 8 / 10;
        let modes = self.ctx.store.lock().modes().clone();
        let station_mode = modes.station.unwrap_or(self.ctx.config.mode);
        let per_camera: BTreeMap<CameraId, UploadMode> = self
            .indexes
            .keys()
            .map(|c| (c.clone(), effective_mode(&self.ctx.config, &modes, c).0))
            .filter(|(_, m)| *m != station_mode)
            .collect();
        let archived_segments = self.archived_segments;
        let refused_segments = self.refused_segments;
        let last_error = self.last_error.clone();
        self.status.send_modify(|h| {
            h.mode = station_mode;
            h.modes = per_camera;
            h.rate_bps = rate_bps;
            h.archived_segments = archived_segments;
            h.refused_segments = refused_segments;
            h.last_error = last_error;
            if let Some(p) = plan {
                h.backlog_bytes = p.backlog_bytes;
                h.backlog_segments = p.backlog_segments;
                h.oldest_pending = p.oldest_pending;
                h.unarchived_bytes = p.unarchived_bytes;
                h.jobs = p.jobs.iter().map(|j| j.health.clone()).collect();
            }
        });
    }

    /// Makes the archive hold manifest lines `[lo, hi]` of `camera` (extending its range
    /// forwards or backwards; the range stays contiguous).
    async fn ensure_manifest(&mut self, camera: &CameraId, lo: u64, hi: u64) -> Result<(), String> {
        let range = match self.ranges.get(camera) {
            Some(r) => r.clone(),
            None => {
                let r = self
                    .client
                    .manifest_range(camera)
                    .await
                    .map_err(|e| e.to_string())?;
                self.ranges.insert(camera.clone(), r.clone());
                r
            }
        };
        let mut spans = Vec::new();
        match &range {
            None => spans.push((lo, hi)),
            Some(r) => {
                if hi > r.last_seq {
                    spans.push((r.last_seq + 1, hi));
                }
                if lo < r.first_seq {
                    spans.push((lo, r.first_seq - 1));
                }
            }
        }
        for (from, to) in spans {
            // Backwards extension must end right before the archived range: send the batches
            // closest to it first, so each batch joins what the archive holds.
            let mut batches = Vec::new();
            let mut at = from;
            while at <= to {
                let idx = self
                    .indexes
                    .get(camera)
                    .ok_or_else(|| format!("camera {camera} has no manifest index"))?;
                let (bytes, last) = idx
                    .lines(at, to, MAX_CHUNK_BYTES)
                    .map_err(|e| format!("reading the manifest of {camera}: {e}"))?
                    .ok_or_else(|| {
                        format!("manifest lines {at}..={to} of {camera} are not all readable")
                    })?;
                batches.push(bytes);
                at = last + 1;
            }
            let backwards = range.as_ref().is_some_and(|r| to < r.first_seq);
            if backwards {
                return self.append_backwards(camera, from, to).await;
            }
            for b in batches {
                let r = self
                    .client
                    .append_manifest(camera, b)
                    .await
                    .map_err(|e| e.to_string())?;
                self.ranges.insert(camera.clone(), Some(r));
            }
        }
        Ok(())
    }

    /// Backwards: each batch must end right before the archived range, so send the range in
    /// batches from its end towards `from`.
    async fn append_backwards(
        &mut self,
        camera: &CameraId,
        from: u64,
        to: u64,
    ) -> Result<(), String> {
        let mut end = to;
        loop {
            let idx = self.indexes.get(camera).ok_or("no manifest index")?;
            // Find the lowest start whose lines up to `end` fit in one batch.
            let mut start = end;
            let mut size = 0u64;
            while start > from {
                let e = idx.find(start - 1).ok_or("manifest line missing")?;
                if size + u64::from(e.len) + 1 > MAX_CHUNK_BYTES {
                    break;
                }
                size += u64::from(e.len) + 1;
                start -= 1;
            }
            let (bytes, _) = idx
                .lines(start, end, MAX_CHUNK_BYTES)
                .map_err(|e| e.to_string())?
                .ok_or("manifest lines missing")?;
            let r = self
                .client
                .append_manifest(camera, bytes)
                .await
                .map_err(|e| e.to_string())?;
            self.ranges.insert(camera.clone(), Some(r));
            if start <= from {
                return Ok(());
            }
            end = start - 1;
        }
    }

    async fn upload(&mut self, item: &Item, shutdown: &CancellationToken) -> Result<(), Stop> {
        let (lo, hi) = item.manifest;
        self.ensure_manifest(&item.camera, lo.min(item.seq), hi.max(item.seq))
            .await
            .map_err(Stop::Failed)?;
        let state = self
            .client
            .segment_state(&item.camera, item.seq)
            .await
            .map_err(|e| Stop::Failed(e.to_string()))?;
        let Some(state) = state else {
            self.ranges.remove(&item.camera);
            return Err(Stop::Failed(format!(
                "the archive does not list segment {} of {}",
                item.seq, item.camera
            )));
        };
        if state.phase == SegmentPhase::Archived {
            return self.archived(item);
        }
        let Some((file, size, _)) = self
            .indexes
            .get(&item.camera)
            .and_then(|i| i.find(item.seq))
            .and_then(|e| e.segment.clone())
        else {
            return Err(Stop::Failed("segment left the index".into()));
        };
        let path = self
            .ctx
            .storage
            .join(item.camera.as_str())
            .join(file.as_str());
        let f = match std::fs::File::open(&path) {
            Ok(f) => f,
            Err(e) => {
                warn!(camera = %item.camera, seq = item.seq, file = %path.display(), error = %e, "segment to upload is not readable; skipped for now");
                self.skip.insert(
                    (item.camera.clone(), item.seq),
                    Instant::now() + RETRY_REFUSED,
                );
                return Ok(());
            }
        };
        let on_disk = f.metadata().map(|m| m.len()).unwrap_or(0);
        if on_disk < size {
            warn!(camera = %item.camera, seq = item.seq, on_disk, signed = size, "segment file is shorter than its signed entry: it was altered on the station; not uploaded");
            self.refused_segments += 1;
            self.skip.insert(
                (item.camera.clone(), item.seq),
                Instant::now() + RETRY_REFUSED,
            );
            return Ok(());
        }
        let mut offset = if state.phase == SegmentPhase::Refused {
            0
        } else {
            state.received
        };
        if offset > 0 {
            // After a cut link, a restart or a power cut: only what the archive lacks is sent.
            info!(camera = %item.camera, seq = item.seq, offset, size, "segment upload resumes where the archive is");
        }
        let chunk_len = self.ctx.config.chunk_bytes.min(MAX_CHUNK_BYTES);
        loop {
            if shutdown.is_cancelled() {
                return Err(Stop::Shutdown);
            }
            // A paced chunk takes at most about CHUNK_SECONDS: a slow link sends smaller chunks
            // (less to send again after a cut, no request the controller would time out).
            let live: Vec<UplinkEstimate> = self.ctx.uplinks.iter().map(|u| *u.borrow()).collect();
            let share = self.share.lock().update(&live);
            let local = chrono::Local::now().time();
            let paced_len = match pace::allowed_bps(item.class, share, &self.ctx.config, local) {
                Some(Some(bps)) => (bps * CHUNK_SECONDS / 8).max(MIN_CHUNK),
                _ => chunk_len,
            };
            let len = chunk_len.min(paced_len).min(size.saturating_sub(offset));
            let mut buf = vec![0u8; len as usize];
            f.read_exact_at(&mut buf, offset)
                .map_err(|e| Stop::Failed(format!("reading {}: {e}", path.display())))?;
            let chunk = Bytes::from(buf);
            let body = self.paced_body(chunk.clone(), item.class, shutdown);
            let timeout = Duration::from_secs(60 + len * 8 / 16_000);
            let outcome = tokio::select! {
                _ = shutdown.cancelled() => return Err(Stop::Shutdown),
                r = self.client.put_chunk(&item.camera, item.seq, offset, chunk, body, timeout) => r,
            }
            .map_err(|e| Stop::Failed(e.to_string()))?;
            match outcome {
                PutOutcome::Stored(s) => {
                    self.sent.push_back((Instant::now(), len));
                    info!(camera = %item.camera, seq = item.seq, offset, bytes = len, "chunk stored");
                    if s.phase == SegmentPhase::Archived {
                        return self.archived(item);
                    }
                    offset = s.received;
                }
                PutOutcome::Offset(s) => {
                    if s.phase == SegmentPhase::Archived {
                        return self.archived(item);
                    }
                    offset = s.received;
                }
                PutOutcome::Refused(s) => {
                    warn!(camera = %item.camera, seq = item.seq, reason = s.reason.as_deref().unwrap_or(""), "the archive refused the segment: its bytes do not match the signed entry");
                    self.refused_segments += 1;
                    self.skip.insert(
                        (item.camera.clone(), item.seq),
                        Instant::now() + RETRY_REFUSED,
                    );
                    return Ok(());
                }
            }
            self.publish(None);
        }
    }

    fn archived(&mut self, item: &Item) -> Result<(), Stop> {
        self.archived_segments += 1;
        info!(camera = %item.camera, seq = item.seq, bytes = item.size, "segment archived");
        self.ctx
            .store
            .lock()
            .mark_archived(&item.camera, item.seq)
            .map_err(|e| Stop::Failed(format!("recording the archived segment: {e}")))
    }

    /// The chunk as a request body sent in pieces no faster than the uploads may go now
    /// (decided again for every piece, so live starting mid-chunk is yielded to at once).
    fn paced_body(
        &mut self,
        chunk: Bytes,
        class: Class,
        shutdown: &CancellationToken,
    ) -> reqwest::Body {
        let uplinks = self.ctx.uplinks.clone();
        let cfg = self.ctx.config.clone();
        let live_now: Vec<UplinkEstimate> = uplinks.iter().map(|u| *u.borrow()).collect();
        let local = chrono::Local::now().time();
        let share = self.share.clone();
        let now_share = share.lock().update(&live_now);
        if pace::allowed_bps(class, now_share, &cfg, local) == Some(None) {
            self.pacer.reset();
            return reqwest::Body::from(chunk);
        }
        let mut pacer = std::mem::replace(&mut self.pacer, Pacer::new(PIECE as u64 * 2));
        let shutdown = shutdown.clone();
        let stream = futures_util::stream::unfold((chunk, 0usize), move |(chunk, at)| {
            let uplinks = uplinks.clone();
            let cfg = cfg.clone();
            let shutdown = shutdown.clone();
            let delay = {
                let live: Vec<UplinkEstimate> = uplinks.iter().map(|u| *u.borrow()).collect();
                let local = chrono::Local::now().time();
                let piece = PIECE.min(chunk.len().saturating_sub(at));
                let live_share = share.lock().update(&live);
                match pace::allowed_bps(class, live_share, &cfg, local) {
                    Some(Some(bps)) => Some(pacer.delay(piece, bps)),
                    Some(None) => Some(Duration::ZERO),
                    // Not now: wait a little and ask again (the request's read timeout on the
                    // controller side is generous).
                    None => Some(Duration::from_millis(500)),
                }
            };
            async move {
                if at >= chunk.len() {
                    return None;
                }
                if let Some(d) = delay.filter(|d| !d.is_zero()) {
                    tokio::select! {
                        _ = shutdown.cancelled() => return Some((Err(io::Error::other("stopping")), (chunk, usize::MAX))),
                        _ = tokio::time::sleep(d) => {}
                    }
                }
                let end = (at + PIECE).min(chunk.len());
                let piece = chunk.slice(at..end);
                Some((Ok::<Bytes, io::Error>(piece), (chunk, end)))
            }
        });
        reqwest::Body::wrap_stream(stream)
    }
}
