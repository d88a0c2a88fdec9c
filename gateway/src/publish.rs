//! Publishers: one thread per connected station camera, reading its SRT stream, cutting it
//! into the camera's private HLS folder and, for public cameras, feeding the masked copy.
//!
//! A camera has one publisher at a time: a new connection with the same stream id (the agent
//! switching rung main ↔ sub starts a new sender, or reconnects) replaces the old one, and the
//! playlist carries on with a discontinuity, so players keep playing.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use parking_lot::Mutex;
use stationwatch_protocol::live::{parse_stream_id, StreamStatus, PRIVATE, PUBLIC, STATUS};
use stationwatch_protocol::{CameraId, StationId};
use tracing::{info, warn};

use crate::config::GatewayConfig;
use crate::hls::{write_atomic, HlsFolder};
use crate::public::{OnSegment, PublicBranch};
use crate::srt::{Connection, Received};
use crate::stations::Stations;
use crate::ts::{Cutter, Segment};

type Key = (StationId, CameraId);

/// Where a publisher's MPEG-TS comes from: an SRT connection, or an RTMP publisher remuxed to TS
/// (`rtmp.rs`).
pub trait Source: Send {
    /// The next bytes, waiting at most about a second.
    fn next(&mut self) -> Next<'_>;
}

pub enum Next<'a> {
    Data(&'a [u8]),
    Idle,
    Closed,
}

/// Closes a publisher from elsewhere (a newer one replaces it); its source then ends.
pub type Closer = Arc<dyn Fn() + Send + Sync>;

struct SrtSource {
    conn: Connection,
    buf: Vec<u8>,
}

impl Source for SrtSource {
    fn next(&mut self) -> Next<'_> {
        match self.conn.recv(&mut self.buf) {
            Received::Data(n) => Next::Data(&self.buf[..n]),
            Received::Idle => Next::Idle,
            Received::Closed => Next::Closed,
        }
    }
}

struct Slot {
    private: Arc<Mutex<HlsFolder>>,
    public: Option<Arc<Mutex<HlsFolder>>>,
    /// The connection publishing now: its number and how to close it.
    current: Option<(u64, Closer)>,
}

/// Every camera's folders and current publisher.
pub struct Publishers {
    cfg: GatewayConfig,
    stations: Stations,
    slots: Mutex<HashMap<Key, Slot>>,
    next_id: AtomicU64,
    threads: Mutex<Vec<std::thread::JoinHandle<()>>>,
}

/// How often a publisher checks whether its camera became (or stopped being) public.
const PUBLIC_CHECK: Duration = Duration::from_secs(2);

impl Publishers {
    pub fn new(cfg: GatewayConfig, stations: Stations) -> Arc<Publishers> {
        Arc::new(Publishers {
            cfg,
            stations,
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            threads: Mutex::new(Vec::new()),
        })
    }

    fn folder(&self, side: &str, key: &Key) -> PathBuf {
        self.cfg
            .hls
            .dir
            .join(side)
            .join(key.0.as_str())
            .join(key.1.as_str())
    }

    /// Takes an accepted connection: replaces the camera's current publisher and starts
    /// reading on a thread of its own.
    pub fn take(self: &Arc<Self>, conn: Connection) {
        let sid = conn.stream_id();
        let key = match parse_stream_id(&sid) {
            Ok(k) => k,
            Err(e) => {
                warn!(stream_id = %sid.escape_debug(), error = %e, "connection dropped: bad stream id");
                return;
            }
        };
        let closer = conn.closer();
        let peer = conn.peer;
        let source = SrtSource {
            conn,
            buf: vec![0u8; 1500],
        };
        self.publish(
            key,
            peer,
            "srt",
            Box::new(source),
            Arc::new(move || closer.close()),
        );
    }

    /// Takes a publisher (already authenticated): replaces the camera's current one and starts
    /// reading on a thread of its own.
    pub fn publish(
        self: &Arc<Self>,
        key: Key,
        peer: Option<std::net::SocketAddr>,
        protocol: &'static str,
        source: Box<dyn Source>,
        closer: Closer,
    ) {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let private = {
            let mut slots = self.slots.lock();
            let busy = slots.values().filter(|s| s.current.is_some()).count();
            if busy >= self.cfg.srt.max_streams
                && slots.get(&key).is_none_or(|s| s.current.is_none())
            {
                warn!(station = %key.0, camera = %key.1, max = self.cfg.srt.max_streams, "publisher refused: the gateway is full");
                return;
            }
            let slot = match slots.get_mut(&key) {
                Some(s) => s,
                None => {
                    let dir = self.folder(PRIVATE, &key);
                    let folder = match HlsFolder::open(
                        &dir,
                        self.cfg.hls.playlist_segments,
                        self.cfg.hls.segment_seconds,
                    ) {
                        Ok(f) => f,
                        Err(e) => {
                            warn!(station = %key.0, camera = %key.1, error = %e, "publisher refused: its folder cannot be written");
                            return;
                        }
                    };
                    slots.entry(key.clone()).or_insert(Slot {
                        private: Arc::new(Mutex::new(folder)),
                        public: None,
                        current: None,
                    })
                }
            };
            if let Some((old, old_closer)) = slot.current.replace((id, closer)) {
                info!(station = %key.0, camera = %key.1, old, new = id, "publisher replaced by a new connection");
                old_closer();
            }
            slot.private.clone()
        };
        info!(station = %key.0, camera = %key.1, ?peer, protocol, connection = id, "publisher connected");
        let me = self.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("pub-{}", key.1))
            .spawn(move || me.read(id, key, source, private));
        match spawned {
            Ok(h) => {
                let mut threads = self.threads.lock();
                threads.retain(|t| !t.is_finished());
                threads.push(h);
            }
            Err(e) => warn!(error = %e, "publisher thread not started"),
        }
    }

    fn read(
        self: Arc<Self>,
        id: u64,
        key: Key,
        mut source: Box<dyn Source>,
        private: Arc<Mutex<HlsFolder>>,
    ) {
        let since = Utc::now();
        private.lock().discontinuity();
        self.status(&key, &private.lock(), true, since, None);
        let mut cutter = Cutter::new(self.cfg.hls.segment_seconds);
        let mut public: Option<PublicBranch> = None;
        let mut public_checked = Instant::now() - PUBLIC_CHECK;
        let mut bytes = 0u64;
        loop {
            if public_checked.elapsed() >= PUBLIC_CHECK {
                public_checked = Instant::now();
                self.keep_public(&key, &mut public, since);
            }
            let data = match source.next() {
                Next::Data(d) => d,
                Next::Idle => continue,
                Next::Closed => break,
            };
            bytes += data.len() as u64;
            let segments = cutter.push(data);
            if !segments.is_empty() {
                let mut f = private.lock();
                for seg in segments {
                    if let Err(e) = f.add(&seg.data, seg.duration, seg.discontinuity) {
                        warn!(station = %key.0, camera = %key.1, error = %e, "segment not written");
                    }
                    self.status(&key, &f, true, since, Some(&seg));
                }
            }
            if let Some(p) = &public {
                if let Err(e) = p.push(data) {
                    warn!(station = %key.0, camera = %key.1, error = %e, "public copy failed; restarting it");
                    public = None;
                }
            }
        }
        drop(public);
        let still_mine = {
            let mut slots = self.slots.lock();
            match slots.get_mut(&key) {
                Some(s) if s.current.as_ref().is_some_and(|c| c.0 == id) => {
                    s.current = None;
                    true
                }
                _ => false,
            }
        };
        if still_mine {
            self.status(&key, &private.lock(), false, since, None);
        }
        info!(station = %key.0, camera = %key.1, connection = id, bytes, "publisher gone");
    }

    /// Starts, restarts (masks changed) or stops the camera's public copy as the controller's
    /// list says; stopping removes the public playlist so nothing stale stays served.
    fn keep_public(
        &self,
        key: &Key,
        public: &mut Option<PublicBranch>,
        since: chrono::DateTime<Utc>,
    ) {
        let wanted = if self.cfg.public.enabled {
            self.stations.public_masks(&key.0, &key.1)
        } else {
            None
        };
        match (&wanted, public.as_ref()) {
            (Some(m), Some(p)) if *m == p.masks => return,
            (None, None) => return,
            _ => {}
        }
        if public.take().is_some() || wanted.is_none() {
            let dir = self.folder(PUBLIC, key);
            let _ = std::fs::remove_file(dir.join(stationwatch_protocol::live::PLAYLIST));
            if wanted.is_none() {
                info!(station = %key.0, camera = %key.1, "public copy stopped");
                return;
            }
        }
        let Some(masks) = wanted else { return };
        let folder = {
            let mut slots = self.slots.lock();
            let Some(slot) = slots.get_mut(key) else {
                return;
            };
            match &slot.public {
                Some(f) => f.clone(),
                None => match HlsFolder::open(
                    &self.folder(PUBLIC, key),
                    self.cfg.hls.playlist_segments,
                    self.cfg.hls.segment_seconds,
                ) {
                    Ok(f) => slot.public.insert(Arc::new(Mutex::new(f))).clone(),
                    Err(e) => {
                        warn!(station = %key.0, camera = %key.1, error = %e, "public folder cannot be written");
                        return;
                    }
                },
            }
        };
        folder.lock().discontinuity();
        let status = StatusWriter {
            gateway: self.cfg.name.clone(),
            segment_seconds: self.cfg.hls.segment_seconds,
            key: key.clone(),
            since,
        };
        let on_segment: OnSegment = Arc::new(move |f: &mut HlsFolder, seg: Segment| {
            if let Err(e) = f.add(&seg.data, seg.duration, seg.discontinuity) {
                warn!(error = %e, "public segment not written");
            }
            status.write(f, true, Some(&seg));
        });
        let name = format!("{}-{}", key.0, key.1);
        match PublicBranch::start(
            &name,
            masks,
            self.cfg.public.width,
            self.cfg.public.kbps,
            self.cfg.hls.segment_seconds,
            folder,
            on_segment,
        ) {
            Ok(p) => {
                info!(station = %key.0, camera = %key.1, masks = p.masks.len(), "public copy started (masked)");
                *public = Some(p);
            }
            Err(e) => {
                warn!(station = %key.0, camera = %key.1, error = %e, "public copy not started")
            }
        }
    }

    fn status(
        &self,
        key: &Key,
        folder: &HlsFolder,
        publishing: bool,
        since: chrono::DateTime<Utc>,
        segment: Option<&Segment>,
    ) {
        StatusWriter {
            gateway: self.cfg.name.clone(),
            segment_seconds: self.cfg.hls.segment_seconds,
            key: key.clone(),
            since,
        }
        .write(folder, publishing, segment);
    }

    /// Closes every connection and waits for the publishers to write their last status.
    pub fn stop(&self) {
        for s in self.slots.lock().values() {
            if let Some((_, c)) = &s.current {
                c();
            }
        }
        let threads: Vec<_> = self.threads.lock().drain(..).collect();
        for t in threads {
            let _ = t.join();
        }
    }

    /// Cameras publishing now.
    pub fn publishing(&self) -> usize {
        self.slots
            .lock()
            .values()
            .filter(|s| s.current.is_some())
            .count()
    }
}

struct StatusWriter {
    gateway: String,
    segment_seconds: f64,
    key: Key,
    since: chrono::DateTime<Utc>,
}

impl StatusWriter {
    fn write(&self, folder: &HlsFolder, publishing: bool, segment: Option<&Segment>) {
        let path = folder.dir().join(STATUS);
        let previous: Option<StreamStatus> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok());
        let now = Utc::now();
        // The picture size: read from a segment's SPS (a full demux of it, so only for the
        // first segment of a publisher and every 30th after), else kept from the last status
        // of the same publisher.
        let same_publisher = previous.as_ref().filter(|p| p.since == Some(self.since));
        let known = same_publisher.map_or((0, 0), |p| (p.width, p.height));
        let probe_due = known == (0, 0) || folder.next_sequence().is_multiple_of(30);
        let (width, height) = match segment.filter(|_| probe_due) {
            Some(seg) => stationwatch_remux::probe_ts(&seg.data)
                .map(|i| (i.width, i.height))
                .unwrap_or(known),
            None => known,
        };
        let status = StreamStatus {
            station: self.key.0.clone(),
            camera: self.key.1.clone(),
            publishing,
            since: Some(self.since),
            last_segment_at: if segment.is_some() {
                Some(now)
            } else {
                previous.as_ref().and_then(|p| p.last_segment_at)
            },
            kbps: folder.kbps(),
            width,
            height,
            segments: folder.len() as u32,
            target_duration_s: self.segment_seconds.ceil() as u32,
            gateway: self.gateway.clone(),
            updated_at: now,
        };
        match serde_json::to_vec_pretty(&status) {
            Ok(b) => {
                if let Err(e) = write_atomic(&path, &b) {
                    warn!(error = %e, "stream status not written");
                }
            }
            Err(e) => warn!(error = %e, "stream status not encoded"),
        }
    }
}
