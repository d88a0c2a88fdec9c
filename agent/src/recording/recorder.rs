//! The recorder: MPEG-TS segments on local disk, split on keyframes, crash- and power-cut-safe.
//!
//! GStreamer muxes the elementary stream into MPEG-TS (`mpegtsmux`), and an `appsink` hands the
//! 188-byte packets to [`SegmentWriter`], which owns the files:
//!
//! * `mpegtsmux` marks the first packet of every key unit (a PAT, followed by the PMT and the
//!   IDR frame with SPS/PPS, thanks to `h264parse config-interval=-1`) as the only packets
//!   without `DELTA_UNIT`; a segment therefore starts exactly there and plays on its own.
//! * Packets are written per frame (no GOP is held in memory, unlike `splitmuxsink`), so a
//!   SIGKILL loses at most the frame in flight; the camera's ledger thread (`recording/ledger.rs`)
//!   `fdatasync`s the open file every `sync_interval`, bounding what a power cut can lose.
//! * Files are named by the UTC time of their first frame and are never overwritten.
//! * A closed segment goes to the ledger, which makes it durable, enters it in the signed
//!   manifest and only then announces it as [`SegmentFinished`].

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::Arc;

use parking_lot::{Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use gst::glib;
use gst::prelude::*;
use gst_app::AppSink;
use stationwatch_protocol::manifest::{GapReason, SegmentFile};
use stationwatch_protocol::CameraId;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, error, info};

use crate::recording::ledger::{LedgerConfig, LedgerJob};
use crate::recording::segment::{segment_path, CloseReason, SegmentFinished};
use stationwatch_protocol::manifest::SEGMENT_EXT;

/// Keyframes this close before the target length still end the segment, so timestamp jitter on
/// network cameras does not push every split one GOP later.
const SPLIT_TOLERANCE: gst::ClockTime = gst::ClockTime::from_mseconds(100);

/// Minimum pause between attempts to open a new file after a write error.
const REOPEN_INTERVAL: gst::ClockTime = gst::ClockTime::from_seconds(1);

/// What the writer tells the camera's supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WriterEvent {
    Opened(PathBuf),
    WriteFailed { reason: GapReason, detail: String },
}

/// How long the streaming thread waits for the ledger to make a file's announcement durable
/// before creating the file anyway (recording never waits on the manifest for longer; the
/// `open` entry is then written late, still ahead of the segment's entry).
const ANNOUNCE_TIMEOUT: Duration = Duration::from_millis(1500);

/// Creates a new segment file, never overwriting (a clash, e.g. the clock stepped back, gets a
/// `.N` suffix), after `announce` made the name's `open` entry durable. `announce` answers
/// whether it did; the result says which name was announced durably.
fn create_segment_file(
    camera_dir: &Path,
    start: DateTime<Utc>,
    mut announce: impl FnMut(&SegmentFile) -> bool,
) -> io::Result<(File, PathBuf, SegmentFile, bool)> {
    let base = segment_path(camera_dir, start);
    if let Some(dir) = base.parent() {
        std::fs::create_dir_all(dir)?;
    }
    for n in 0..100 {
        let path = if n == 0 {
            base.clone()
        } else {
            base.with_extension(format!("{n}.{SEGMENT_EXT}"))
        };
        if path.exists() {
            continue;
        }
        let rel = path
            .strip_prefix(camera_dir)
            .ok()
            .and_then(Path::to_str)
            .and_then(|r| SegmentFile::new(r).ok())
            .ok_or_else(|| io::Error::other(format!("bad segment name {}", path.display())))?;
        let durable = announce(&rel);
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(f) => return Ok((f, path, rel, durable)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AlreadyExists,
        format!("100 segment files already start at {start}"),
    ))
}

/// Asks the ledger to enter `file`'s `open` entry durably and waits (at most
/// [`ANNOUNCE_TIMEOUT`]) for the answer.
fn announce(jobs: &mpsc::Sender<LedgerJob>, file: &SegmentFile) -> bool {
    let (done, answer) = mpsc::sync_channel(1);
    if jobs
        .send(LedgerJob::Announce {
            file: file.clone(),
            done,
        })
        .is_err()
    {
        return false;
    }
    answer.recv_timeout(ANNOUNCE_TIMEOUT).unwrap_or(false)
}

struct OpenSegment {
    file: File,
    path: PathBuf,
    start: DateTime<Utc>,
    start_rt: gst::ClockTime,
    last_rt: gst::ClockTime,
    bytes: u64,
}

/// Owns the segment files of one camera, across pipeline restarts.
pub struct SegmentWriter {
    camera: CameraId,
    camera_dir: PathBuf,
    segment_len: gst::ClockTime,
    current: Option<OpenSegment>,
    /// Packets of the frame being received; written when the next frame starts.
    pending: Vec<u8>,
    pending_rt: Option<gst::ClockTime>,
    /// After a write error: running time of the last attempt to open a file.
    failed_at: Option<gst::ClockTime>,
    jobs: mpsc::Sender<LedgerJob>,
    events: UnboundedSender<WriterEvent>,
    announce_stats: AnnounceStats,
}

/// A frame's worth of packets with its timing, as seen by the writer.
pub struct Packet<'a> {
    pub data: &'a [u8],
    /// Running time of the packet.
    pub rt: gst::ClockTime,
    /// UTC time of `rt` (computed from the pipeline clock).
    pub utc: DateTime<Utc>,
    /// First packet of a key unit: a segment may start here.
    pub key_unit_start: bool,
    /// A key unit whose parameter sets differ from the previous ones (the camera changed its
    /// resolution or codec settings): the segment ends here whatever its length, so each
    /// segment holds one decoder configuration (what `remux/` needs for its MP4).
    pub new_config: bool,
}

impl SegmentWriter {
    /// Feeds one muxed packet.
    pub fn push(&mut self, p: Packet<'_>) {
        let new_frame = self.pending_rt != Some(p.rt) || p.key_unit_start;
        if new_frame {
            self.flush_pending();
        }
        if p.key_unit_start {
            let due = match &self.current {
                None => self.may_retry(p.rt),
                Some(cur) => {
                    p.new_config || p.rt + SPLIT_TOLERANCE >= cur.start_rt + self.segment_len
                }
            };
            if due {
                self.open(p.rt, p.utc);
            }
        }
        if self.current.is_some() {
            self.pending.extend_from_slice(p.data);
            self.pending_rt = Some(p.rt);
        }
    }

    /// Closes the open segment (end of stream, pipeline torn down, shutdown).
    pub fn finish(&mut self) {
        self.flush_pending();
        if let Some(cur) = &self.current {
            let end = cur.start + chrono_dur(cur.last_rt.saturating_sub(cur.start_rt));
            self.close(end, CloseReason::StreamEnded);
        }
        self.failed_at = None;
    }

    fn may_retry(&self, rt: gst::ClockTime) -> bool {
        match self.failed_at {
            None => true,
            Some(at) => rt < at || rt >= at + REOPEN_INTERVAL,
        }
    }

    /// Closes the open segment (if any) at `utc` and opens the next one there. The next file's
    /// `open` entry is made durable first, while the previous file is still open, so the ledger
    /// answers at once instead of after hashing the finished segment.
    fn open(&mut self, rt: gst::ClockTime, utc: DateTime<Utc>) {
        let t0 = std::time::Instant::now();
        let jobs = self.jobs.clone();
        let mut closed = false;
        let created = create_segment_file(&self.camera_dir, utc, |file| {
            let durable = announce(&jobs, file);
            if !closed {
                closed = true;
                // The announcement is durable: finish the previous segment.
                if let Some(cur) = self.current.take() {
                    send_finish(&self.camera, &jobs, cur, utc, CloseReason::Rotated);
                }
            }
            durable
        });
        // Creation failed before anything was announced: the previous segment still ends here.
        if let Some(cur) = self.current.take() {
            send_finish(&self.camera, &jobs, cur, utc, CloseReason::Rotated);
        }
        match created {
            Ok((file, path, rel, durable)) => {
                let waited = t0.elapsed();
                self.announce_stats.record(waited);
                debug!(camera = %self.camera, path = %path.display(), announce_us = waited.as_micros() as u64, durable, "segment opened");
                if let Ok(clone) = file.try_clone() {
                    let _ = self.jobs.send(LedgerJob::Opened {
                        file: clone,
                        start: utc,
                        unannounced: (!durable).then_some(rel),
                    });
                }
                let _ = self.events.send(WriterEvent::Opened(path.clone()));
                self.failed_at = None;
                self.current = Some(OpenSegment {
                    file,
                    path,
                    start: utc,
                    start_rt: rt,
                    last_rt: rt,
                    bytes: 0,
                });
            }
            Err(e) => self.failed(rt, &e, "cannot create segment file"),
        }
    }

    fn failed(&mut self, rt: gst::ClockTime, e: &io::Error, context: &str) {
        let reason = match e.kind() {
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded => GapReason::DiskFull,
            _ => GapReason::StorageError,
        };
        let msg = format!("{context}: {e}");
        if self.failed_at.is_none() {
            error!(camera = %self.camera, error = %msg, %reason, "recording write failed");
            let _ = self.jobs.send(LedgerJob::Lost {
                reason,
                detail: msg.clone(),
            });
        }
        self.failed_at = Some(rt);
        let _ = self.events.send(WriterEvent::WriteFailed {
            reason,
            detail: msg,
        });
    }

    fn flush_pending(&mut self) {
        let Some(rt) = self.pending_rt.take() else {
            return;
        };
        let Some(cur) = self.current.as_mut() else {
            self.pending.clear();
            return;
        };
        match cur.file.write_all(&self.pending) {
            Ok(()) => {
                cur.bytes += self.pending.len() as u64;
                cur.last_rt = rt;
                self.pending.clear();
            }
            Err(e) => {
                self.pending.clear();
                let context = format!("writing {}", cur.path.display());
                let end = cur.start + chrono_dur(cur.last_rt.saturating_sub(cur.start_rt));
                self.close(end, CloseReason::WriteError);
                self.failed(rt, &e, &context);
            }
        }
    }

    fn close(&mut self, end: DateTime<Utc>, closed: CloseReason) {
        if let Some(cur) = self.current.take() {
            send_finish(&self.camera, &self.jobs, cur, end, closed);
        }
    }
}

fn send_finish(
    camera: &CameraId,
    jobs: &mpsc::Sender<LedgerJob>,
    cur: OpenSegment,
    end: DateTime<Utc>,
    closed: CloseReason,
) {
    let done = SegmentFinished {
        camera: camera.clone(),
        path: cur.path,
        start: cur.start,
        end: end.max(cur.start),
        bytes: cur.bytes,
        closed,
        sha256: None,
    };
    let _ = jobs.send(LedgerJob::Finish(Box::new((cur.file, done))));
}

/// How long opening a segment held up the streaming thread (announcement + creation).
#[derive(Debug, Default, Clone, Copy)]
pub struct AnnounceStats {
    pub count: u64,
    pub total: Duration,
    pub max: Duration,
}

impl AnnounceStats {
    fn record(&mut self, d: Duration) {
        self.count += 1;
        self.total += d;
        self.max = self.max.max(d);
    }
}

fn chrono_dur(d: gst::ClockTime) -> chrono::Duration {
    chrono::Duration::nanoseconds(d.nseconds().min(i64::MAX as u64) as i64)
}

/// One camera's recorder: the segment writer and its ledger thread.
pub struct Recorder {
    writer: Arc<Mutex<SegmentWriter>>,
    jobs: mpsc::Sender<LedgerJob>,
    ledger: Option<JoinHandle<()>>,
    camera: CameraId,
}

impl Recorder {
    /// Starts the camera's ledger (which opens its manifest). Finished segments are announced
    /// on `ledger.finished`.
    pub fn new(
        ledger: LedgerConfig,
        segment_len: Duration,
        events: UnboundedSender<WriterEvent>,
    ) -> io::Result<Self> {
        let camera = ledger.camera.clone();
        let camera_dir = ledger.camera_dir.clone();
        let (jobs, handle) = crate::recording::ledger::spawn(ledger)?;
        let writer = SegmentWriter {
            camera: camera.clone(),
            camera_dir,
            segment_len: gst::ClockTime::from_nseconds(segment_len.as_nanos() as u64),
            current: None,
            pending: Vec::with_capacity(64 * 1024),
            pending_rt: None,
            failed_at: None,
            jobs: jobs.clone(),
            events,
            announce_stats: AnnounceStats::default(),
        };
        Ok(Self {
            writer: Arc::new(Mutex::new(writer)),
            jobs,
            ledger: Some(handle),
            camera,
        })
    }

    /// A sender to this camera's ledger (retention uses it to delete through the manifest).
    pub fn ledger(&self) -> mpsc::Sender<LedgerJob> {
        self.jobs.clone()
    }

    /// Recording stopped (camera lost): the time until the next segment is a gap of `reason`.
    pub fn note_lost(&self, reason: GapReason, detail: String) {
        let _ = self.jobs.send(LedgerJob::Lost { reason, detail });
    }

    fn lock(&self) -> MutexGuard<'_, SegmentWriter> {
        lock(&self.writer)
    }

    /// The segment writer, for a source that muxes itself (`camera/rtsp.rs`).
    pub fn writer(&self) -> Arc<Mutex<SegmentWriter>> {
        self.writer.clone()
    }

    /// Builds the recording branch `queue ! mpegtsmux ! appsink` feeding this recorder. The
    /// returned queue's sink pad is where the branch attaches (a tee's src pad).
    pub fn branch(&self) -> Result<(Vec<gst::Element>, gst::Element), glib::BoolError> {
        let queue = gst::ElementFactory::make("queue")
            .name("rec_queue")
            // Disk hiccups must not drop frames: hold up to 10 s / 64 MiB instead.
            .property("max-size-buffers", 0u32)
            .property("max-size-bytes", 64u32 * 1024 * 1024)
            .property("max-size-time", gst::ClockTime::from_seconds(10))
            .build()?;
        let mux = gst::ElementFactory::make("mpegtsmux")
            .name("rec_mux")
            .build()?;
        let sink = AppSink::builder()
            .name("rec_sink")
            .sync(false)
            .max_buffers(0)
            .enable_last_sample(false)
            .build();
        let writer = self.writer.clone();
        let writer_eos = self.writer.clone();
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| on_sample(sink, &writer))
                .eos(move |_| lock(&writer_eos).finish())
                .build(),
        );
        Ok((vec![queue.clone(), mux, sink.upcast()], queue))
    }

    /// Closes the open segment (after the pipeline stopped).
    pub fn finish(&self) {
        self.lock().finish();
    }

    /// Closes the open segment and waits until every finished segment is durable, entered and
    /// announced, and the manifest says `stop`.
    pub fn shutdown(mut self) {
        let stats = {
            let mut w = self.lock();
            w.finish();
            w.announce_stats
        };
        if stats.count > 0 {
            info!(
                camera = %self.camera,
                segments_opened = stats.count,
                mean_open_us = (stats.total / stats.count as u32).as_micros() as u64,
                max_open_us = stats.max.as_micros() as u64,
                "time the streaming thread spent opening segments (durable announcement + creation)"
            );
        }
        let _ = self.jobs.send(LedgerJob::Shutdown);
        if let Some(handle) = self.ledger.take() {
            if handle.join().is_err() {
                error!(camera = %self.camera, "ledger thread panicked");
            }
        }
    }
}

fn lock(w: &Mutex<SegmentWriter>) -> MutexGuard<'_, SegmentWriter> {
    // A panic while holding the lock must not stop recording of later frames.
    w.lock()
}

fn on_sample(
    sink: &AppSink,
    writer: &Mutex<SegmentWriter>,
) -> Result<gst::FlowSuccess, gst::FlowError> {
    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
    let (Some(buffer), Some(segment)) = (sample.buffer(), sample.segment()) else {
        return Ok(gst::FlowSuccess::Ok);
    };
    let Some(rt) = buffer.pts().and_then(|pts| {
        segment
            .downcast_ref::<gst::ClockTime>()?
            .to_running_time(pts)
    }) else {
        return Ok(gst::FlowSuccess::Ok);
    };
    let utc = utc_of_running_time(sink.upcast_ref(), rt);
    let Ok(map) = buffer.map_readable() else {
        return Ok(gst::FlowSuccess::Ok);
    };
    lock(writer).push(Packet {
        data: map.as_slice(),
        rt,
        utc,
        key_unit_start: !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT),
        new_config: false,
    });
    // Recording errors are handled (and reported) by the writer; the pipeline keeps flowing so
    // the next key unit can retry.
    Ok(gst::FlowSuccess::Ok)
}

/// UTC wall-clock time at which the pipeline's running time was `rt`.
fn utc_of_running_time(element: &gst::Element, rt: gst::ClockTime) -> DateTime<Utc> {
    let now = Utc::now();
    let (Some(clock), Some(base)) = (element.clock(), element.base_time()) else {
        return now;
    };
    let now_rt = clock.time().saturating_sub(base);
    if now_rt >= rt {
        now - chrono_dur(now_rt - rt)
    } else {
        now + chrono_dur(rt - now_rt)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::CameraCounters;
    use chrono::TimeZone;
    use stationwatch_protocol::manifest::{parse_manifest, EntryBody, StationKey, MANIFEST_FILE};

    fn ledger_cfg(
        dir: &Path,
        fin: tokio::sync::mpsc::UnboundedSender<SegmentFinished>,
    ) -> LedgerConfig {
        LedgerConfig {
            station: stationwatch_protocol::StationId::new("S-1").unwrap(),
            camera: CameraId::new("cam").unwrap(),
            camera_dir: dir.to_owned(),
            key: Arc::new(StationKey::generate().unwrap()),
            sync_interval: Duration::from_millis(50),
            counters: CameraCounters::new(),
            finished: fin,
            rebooted: false,
            events: None,
            clock_synced: || true,
        }
    }

    fn writer(
        dir: &Path,
        seg: Duration,
    ) -> (
        Recorder,
        tokio::sync::mpsc::UnboundedReceiver<SegmentFinished>,
    ) {
        let (ev, _ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let (fin, fin_rx) = tokio::sync::mpsc::unbounded_channel();
        let r = Recorder::new(ledger_cfg(dir, fin), seg, ev).unwrap();
        (r, fin_rx)
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, 21, 23, 59, 59).unwrap()
    }

    /// Pushes `frames` frames at 10 fps, 3 packets each, key unit every 5 frames.
    fn feed(r: &Recorder, frames: u64) {
        for i in 0..frames {
            let rt = gst::ClockTime::from_mseconds(100 * i);
            for k in 0..3u8 {
                r.lock().push(Packet {
                    data: &[i as u8, k],
                    rt,
                    utc: t0() + chrono::Duration::milliseconds(100 * i as i64),
                    key_unit_start: i % 5 == 0 && k == 0,
                    new_config: false,
                });
            }
        }
    }

    #[test]
    fn splits_on_key_units_names_by_utc_and_loses_no_packet() {
        let dir = tempfile::tempdir().unwrap();
        let (r, mut fin) = writer(dir.path(), Duration::from_secs(1));
        feed(&r, 23);
        r.shutdown();
        let mut segs = Vec::new();
        while let Ok(s) = fin.try_recv() {
            segs.push(s);
        }
        // Key units at frames 0,5,10,15,20; 1 s segments split at 0, 10, 20.
        assert_eq!(segs.len(), 3, "{segs:#?}");
        assert_eq!(
            segs[0].path,
            dir.path().join("2026-11-21/20261121T235959.000Z.ts")
        );
        // Crossing midnight UTC moves to the next day's folder.
        assert_eq!(
            segs[1].path,
            dir.path().join("2026-11-22/20261122T000000.000Z.ts")
        );
        assert_eq!(
            segs[0].end, segs[1].start,
            "rotated segments are contiguous"
        );
        assert_eq!(segs[0].closed, CloseReason::Rotated);
        assert_eq!(segs[2].closed, CloseReason::StreamEnded);
        let mut all = Vec::new();
        for s in &segs {
            let bytes = std::fs::read(&s.path).unwrap();
            assert_eq!(bytes.len() as u64, s.bytes);
            all.extend(bytes);
        }
        let expected: Vec<u8> = (0..23u8).flat_map(|i| [i, 0, i, 1, i, 2]).collect();
        assert_eq!(all, expected, "every packet exactly once, in order");
        // The manifest: start, three segments with their hashes, stop.
        let m = parse_manifest(&std::fs::read(dir.path().join(MANIFEST_FILE)).unwrap());
        assert!(m.problems.is_empty(), "{:?}", m.problems);
        let kinds: Vec<_> = m
            .entries
            .iter()
            .map(|e| format!("{:?}", e.body().kind()))
            .collect();
        // Each file is announced (durably) before it is created, and the next one is announced
        // before the previous one is entered.
        assert_eq!(
            kinds,
            ["Start", "Open", "Open", "Segment", "Open", "Segment", "Segment", "Stop"]
        );
        let key = m.entries[0].body().clone();
        let EntryBody::Start(start) = key else {
            unreachable!()
        };
        assert_eq!(
            stationwatch_protocol::manifest::verify_chain(&m.entries, &start.key),
            []
        );
        let segments = m
            .entries
            .iter()
            .filter(|e| matches!(e.body(), EntryBody::Segment(_)));
        for (e, s) in segments.zip(&segs) {
            let EntryBody::Segment(entry) = e.body() else {
                unreachable!()
            };
            assert_eq!(Some(entry.sha256), s.sha256);
            assert_eq!(entry.size, s.bytes);
        }
    }

    #[test]
    fn never_overwrites_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let existing = segment_path(dir.path(), t0());
        std::fs::create_dir_all(existing.parent().unwrap()).unwrap();
        std::fs::write(&existing, b"evidence").unwrap();
        let (r, mut fin) = writer(dir.path(), Duration::from_secs(60));
        feed(&r, 3);
        r.shutdown();
        let seg = fin.try_recv().unwrap();
        assert_ne!(seg.path, existing);
        assert_eq!(std::fs::read(&existing).unwrap(), b"evidence");
        assert!(
            seg.path.to_str().unwrap().ends_with("Z.1.ts"),
            "{:?}",
            seg.path
        );
    }

    #[test]
    fn waits_for_a_key_unit_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let (r, mut fin) = writer(dir.path(), Duration::from_secs(60));
        r.lock().push(Packet {
            data: b"delta",
            rt: gst::ClockTime::ZERO,
            utc: t0(),
            key_unit_start: false,
            new_config: false,
        });
        feed(&r, 1);
        r.shutdown();
        let seg = fin.try_recv().unwrap();
        assert_eq!(std::fs::read(&seg.path).unwrap(), [0, 0, 0, 1, 0, 2]);
    }

    #[test]
    fn a_new_decoder_configuration_starts_a_new_segment() {
        let dir = tempfile::tempdir().unwrap();
        let (r, mut fin) = writer(dir.path(), Duration::from_secs(60));
        for i in 0..20u64 {
            r.lock().push(Packet {
                data: &[i as u8],
                rt: gst::ClockTime::from_mseconds(100 * i),
                utc: t0() + chrono::Duration::milliseconds(100 * i as i64),
                key_unit_start: i % 5 == 0,
                // The camera changes its resolution at frame 10 (a key unit).
                new_config: i == 10,
            });
        }
        r.shutdown();
        let first = fin.try_recv().unwrap();
        let second = fin.try_recv().unwrap();
        assert!(fin.try_recv().is_err());
        assert_eq!(
            std::fs::read(&first.path).unwrap(),
            (0..10).collect::<Vec<u8>>()
        );
        assert_eq!(
            std::fs::read(&second.path).unwrap(),
            (10..20).collect::<Vec<u8>>()
        );
        assert_eq!(first.end, second.start);
    }

    #[test]
    fn unwritable_folder_is_reported_and_retried_without_panicking() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("cam");
        std::fs::write(&blocker, b"not a dir").unwrap();
        let (ev, mut ev_rx) = tokio::sync::mpsc::unbounded_channel();
        let (fin, _fin_rx) = tokio::sync::mpsc::unbounded_channel();
        let r = Recorder::new(ledger_cfg(&blocker, fin), Duration::from_secs(1), ev).unwrap();
        feed(&r, 15);
        assert!(matches!(
            ev_rx.try_recv(),
            Ok(WriterEvent::WriteFailed {
                reason: GapReason::StorageError,
                ..
            })
        ));
        // Space (here: the folder) comes back: the next key unit after the retry pause opens.
        std::fs::remove_file(&blocker).unwrap();
        for i in 15..40u64 {
            r.lock().push(Packet {
                data: &[1],
                rt: gst::ClockTime::from_mseconds(100 * i),
                utc: t0(),
                key_unit_start: i % 5 == 0,
                new_config: false,
            });
        }
        let mut opened = false;
        while let Ok(e) = ev_rx.try_recv() {
            opened |= matches!(e, WriterEvent::Opened(_));
        }
        assert!(opened, "recording resumed after the error cleared");
        r.shutdown();
    }
}
