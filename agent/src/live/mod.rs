//! The live branch of a camera: what is streamed to the configured SRT or RTMP target, kept
//! apart from the recording so that nothing on the network side can stop, block, error or gap
//! it (`docs/live.md`).
//!
//! ```text
//! recording pipeline (camera.rs)                 live sender pipeline (this file, own thread)
//!  parse ─► tee ─► queue ─► mpegtsmux ─► appsink ─► SegmentWriter
//!            └──► queue leaky ─► appsink ─┐
//!                  (drop=true)            └─► LiveFeed ─► appsrc ─► parse ─► mux ─► srtsink/rtmp2sink
//! ```
//!
//! * **Taps** in the recording pipeline end in `appsink drop=true` behind leaky queues: they can
//!   drop, never block. The tap's callback hands each access unit to the [`LiveFeed`], which
//!   pushes it into the current sender's `appsrc` (`block=false`) unless more than a few
//!   seconds already wait there; then it drops and waits for the next keyframe, so the
//!   receiver gets decodable video again.
//! * The **sender** is a separate pipeline, built per rung and thrown away on any error; its bus
//!   never reaches the recording pipeline's. Network sinks run with `sync=false async=false`,
//!   `srtsink` with `wait-for-connection=false` (its default blocks) and `auto-reconnect=false`
//!   (we rebuild ourselves, with backoff).
//! * The **supervisor** runs on its own OS thread: a sink that blocks in `set_state` or a stats
//!   query stalls only this thread, never the runtime the recorders' supervisors run on.
//! * **Rungs**: `main` is the recorded stream passed through. `sub` is, for sources the agent
//!   encodes, a second encode of the raw video at half size and `live_sub_kbps` (its `valve` is
//!   open only while the rung runs), and for RTSP cameras the configured sub-stream, pulled by
//!   the sender pipeline itself only while the rung runs. `auto` mode picks the rung with
//!   [`crate::live::uplink::RungPolicy`].

pub mod overrides;
pub mod uplink;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;
use stationwatch_protocol::mqtt::{EventKind, LiveSetting, LiveState};
use stationwatch_protocol::CameraId;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::source::CameraSource;
use crate::config::{CameraConfig, CameraLiveConfig, LiveConfig, LiveMode, LiveTarget};
use crate::elements::PipelineError;
use crate::live::uplink::{Rung, RungPolicy, RungRates, Sample, UplinkEstimate};
use crate::state::CameraCounters;

/// Container and transport overhead over the video bitrate (MPEG-TS, SRT headers).
const OVERHEAD: f64 = 1.1;
/// The feed drops (and waits for a keyframe) when this much video waits in the sender.
const FEED_MAX_QUEUED: Duration = Duration::from_secs(3);
const FEED_MAX_BYTES: u64 = 8 * 1024 * 1024;
/// How often the supervisor samples the sender and runs the policy.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const LOOP_TICK: Duration = Duration::from_millis(100);
/// Stopping a sender may block in a dead network sink; give up waiting after this.
const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// Rebuild delays after a sender failed.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(10);

/// Element names in the recording pipeline.
pub const MAIN_TAP: &str = "live-main-tap";
pub const SUB_TAP: &str = "live-sub-tap";
pub const SUB_VALVE: &str = "live-sub-valve";

/// Elements the live branch needs for a camera (for `check`).
pub fn required_elements(cam: &CameraConfig) -> Vec<&'static str> {
    let Some(live) = &cam.live else {
        return Vec::new();
    };
    let mut v = vec!["appsrc", "appsink", "queue", "h264parse"];
    match live.target {
        LiveTarget::Srt(_) => v.extend(["mpegtsmux", "srtsink"]),
        LiveTarget::Rtmp(_) => v.extend(["flvmux", "rtmp2sink"]),
    }
    if cam.source.is_encoded_by_agent() {
        v.extend(["valve", "x264enc", "videoscale"]);
    }
    if live.sub_stream.is_some() {
        v.extend(["rtspsrc", "rtph264depay"]);
    }
    v
}

// ---------------------------------------------------------------------------------------------
// The feed: from the recording pipeline's taps to the current sender, never blocking.

/// One tap's way to the sender.
#[derive(Default)]
pub struct FeedSlot {
    src: Mutex<Option<gst_app::AppSrc>>,
    need_key: AtomicBool,
    pushed: AtomicU64,
    dropped: AtomicU64,
}

impl FeedSlot {
    fn attach(&self, src: Option<gst_app::AppSrc>) {
        self.need_key.store(true, Ordering::Relaxed);
        *self.src.lock().unwrap_or_else(|e| e.into_inner()) = src;
    }

    /// Called on the tap's streaming thread. Never blocks: a full sender means a drop.
    fn push(&self, sample: &gst::Sample) {
        let Some(src) = self.src.lock().unwrap_or_else(|e| e.into_inner()).clone() else {
            return;
        };
        let Some(buf) = sample.buffer() else {
            return;
        };
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let size = buf.size() as u64;
        if self.need_key.load(Ordering::Relaxed) && !key {
            self.dropped.fetch_add(size, Ordering::Relaxed);
            return;
        }
        let queued_time = src.current_level_time().nseconds();
        if queued_time > FEED_MAX_QUEUED.as_nanos() as u64
            || src.current_level_bytes() > FEED_MAX_BYTES
        {
            // The sender cannot keep up: drop, and restart at a keyframe.
            self.need_key.store(true, Ordering::Relaxed);
            self.dropped.fetch_add(size, Ordering::Relaxed);
            return;
        }
        self.need_key.store(false, Ordering::Relaxed);
        if src.push_sample(sample).is_ok() {
            self.pushed.fetch_add(size, Ordering::Relaxed);
        }
    }
}

/// What the recording pipeline's live taps feed, shared across pipeline restarts.
#[derive(Default)]
pub struct LiveFeed {
    pub main: FeedSlot,
    pub sub: FeedSlot,
    /// The valve in front of the sub-stream encoder of the current recording pipeline.
    sub_valve: Mutex<Option<gst::glib::WeakRef<gst::Element>>>,
    sub_open: AtomicBool,
    /// Bumped each time a recording pipeline is built: its timestamps start again, so a
    /// sender fed from the previous one is rebuilt.
    generation: AtomicU64,
}

impl LiveFeed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Opens or closes the sub-stream encoder (sources the agent encodes).
    fn set_sub_open(&self, open: bool) {
        self.sub_open.store(open, Ordering::Relaxed);
        if let Some(v) = self
            .sub_valve
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .and_then(|w| w.upgrade())
        {
            v.set_property("drop", !open);
        }
    }
}

/// Adds the main tap (`queue leaky ! appsink`) to a recording pipeline's tee, and hooks up the
/// sub-stream tap if the source description has one. Returns the taps' appsinks: the
/// supervisor sends EOS into them when it drains the recording (a pipeline posts EOS only when
/// every sink has it).
pub fn add_taps(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    feed: &Arc<LiveFeed>,
) -> Result<Vec<gst::Element>, PipelineError> {
    let queue = gst::ElementFactory::make("queue")
        .name("live-main-queue")
        .property("max-size-buffers", 30u32)
        .property("max-size-bytes", 0u32)
        .property("max-size-time", 0u64)
        .build()?;
    queue.set_property_from_str("leaky", "downstream");
    let sink = tap_sink(MAIN_TAP)?;
    pipeline.add_many([&queue, &sink])?;
    gst::Element::link_many([&queue, &sink])?;
    tee.link(&queue)?;
    connect_tap(&sink, feed.clone(), false)?;
    feed.generation.fetch_add(1, Ordering::Relaxed);
    let mut sinks = vec![sink];
    if let Some(sub) = pipeline.by_name(SUB_TAP) {
        connect_tap(&sub, feed.clone(), true)?;
        sinks.push(sub);
    }
    if let Some(valve) = pipeline.by_name(SUB_VALVE) {
        valve.set_property("drop", !feed.sub_open.load(Ordering::Relaxed));
        *feed.sub_valve.lock().unwrap_or_else(|e| e.into_inner()) = Some(valve.downgrade());
    }
    Ok(sinks)
}

fn tap_sink(name: &str) -> Result<gst::Element, PipelineError> {
    Ok(gst::ElementFactory::make("appsink")
        .name(name)
        .property("sync", false)
        .property("async", false)
        .property("drop", true)
        .property("max-buffers", 5u32)
        .property("enable-last-sample", false)
        .build()?)
}

fn connect_tap(sink: &gst::Element, feed: Arc<LiveFeed>, sub: bool) -> Result<(), PipelineError> {
    let sink = sink
        .clone()
        .dynamic_cast::<gst_app::AppSink>()
        .map_err(|_| PipelineError::Build("live tap is not an appsink".into()))?;
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |s| {
                if let Ok(sample) = s.pull_sample() {
                    if sub {
                        feed.sub.push(&sample);
                    } else {
                        feed.main.push(&sample);
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
    Ok(())
}

/// The launch-description fragment that tees the raw video of an encoded source into the
/// sub-stream encoder: `<raw> ! tee name=live-raw ! <recording encoder>` plus this branch. The
/// leaky queue keeps it from ever holding back the recording encoder; the valve keeps the
/// encoder idle while the sub rung is not streamed.
pub fn sub_encode_branch(cam: &CameraConfig) -> Option<String> {
    let live = cam.live.as_ref()?;
    if !cam.source.is_encoded_by_agent() {
        return None;
    }
    let e = &cam.encode;
    // Half size (even), at least 16x16.
    let w = ((e.width / 2).max(16) / 2) * 2;
    let h = ((e.height / 2).max(16) / 2) * 2;
    Some(format!(
        "live-raw. ! queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0 \
         ! valve name={SUB_VALVE} drop=true ! videoscale ! video/x-raw,width={w},height={h} \
         ! x264enc tune=zerolatency speed-preset=ultrafast bitrate={} key-int-max={} \
         ! h264parse config-interval=-1 \
         ! appsink name={SUB_TAP} sync=false async=false drop=true max-buffers=5 enable-last-sample=false",
        live.sub_kbps, e.fps
    ))
}

// ---------------------------------------------------------------------------------------------
// Status, for health, events and commands.

/// A camera's live state as the rest of the agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStatus {
    pub mode: LiveMode,
    pub overridden: bool,
    pub rung: Rung,
    pub state: LiveState,
    pub uplink_bps: Option<u64>,
    pub send_bps: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub loss: Option<f64>,
    pub reason: String,
}

impl LiveStatus {
    pub fn wire(&self) -> stationwatch_protocol::mqtt::CameraLive {
        stationwatch_protocol::mqtt::CameraLive {
            mode: setting(self.mode),
            overridden: self.overridden,
            rung: self.rung.wire(),
            state: self.state,
            uplink_bps: self.uplink_bps,
            send_bps: self.send_bps,
            rtt_ms: self.rtt_ms.map(|r| (r * 10.0).round() / 10.0),
            loss: self.loss.map(|l| (l * 1000.0).round() / 1000.0),
            reason: (!self.reason.is_empty()).then(|| self.reason.clone()),
        }
    }
}

pub fn setting(m: LiveMode) -> LiveSetting {
    match m {
        LiveMode::Off => LiveSetting::Off,
        LiveMode::On => LiveSetting::On,
        LiveMode::Auto => LiveSetting::Auto,
    }
}

/// What the MQTT link and health see of a camera's live branch.
pub struct LiveHandle {
    pub camera: CameraId,
    /// The configured mode (a `set_live` `config` command goes back to it).
    pub configured: LiveMode,
    pub status: watch::Receiver<LiveStatus>,
    /// `Some(mode)`: override; `None`: back to the configured mode.
    pub control: mpsc::Sender<Option<LiveMode>>,
    #[expect(dead_code, reason = "the backfill seam: read by the future uploader")]
    /// What the uplink carries and what is spare: the **backfill seam** (a future uploader of
    /// recorded segments reads `spare_bps` here; see `docs/live.md`).
    pub uplink: watch::Receiver<UplinkEstimate>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl LiveHandle {
    /// Waits up to `timeout` for the supervisor thread to stop its sender and end.
    pub fn join(mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.thread.as_ref().is_some_and(|t| !t.is_finished()) {
            if Instant::now() > deadline {
                warn!(camera = %self.camera, "live sender did not stop in time; leaving it");
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Everything a camera's live supervisor needs.
pub struct LiveContext {
    pub camera: CameraId,
    pub source: CameraSource,
    pub bitrate_kbps: u32,
    pub live: CameraLiveConfig,
    pub config: LiveConfig,
    pub feed: Arc<LiveFeed>,
    pub counters: Arc<CameraCounters>,
    /// The persisted `set_live` override, if any.
    pub initial_override: Option<LiveMode>,
    pub events: Option<UnboundedSender<EventKind>>,
}

/// Starts the live supervisor of a camera on its own thread.
pub fn spawn(ctx: LiveContext, shutdown: CancellationToken) -> std::io::Result<LiveHandle> {
    let mode = ctx.initial_override.unwrap_or(ctx.live.mode);
    let initial = LiveStatus {
        mode,
        overridden: ctx.initial_override.is_some(),
        rung: Rung::Off,
        state: LiveState::Stopped,
        uplink_bps: None,
        send_bps: None,
        rtt_ms: None,
        loss: None,
        reason: String::new(),
    };
    let (status_tx, status) = watch::channel(initial);
    let (uplink_tx, uplink) = watch::channel(UplinkEstimate::default());
    let (control, control_rx) = mpsc::channel();
    let camera = ctx.camera.clone();
    let configured = ctx.live.mode;
    let sup = Supervisor::new(ctx, status_tx, uplink_tx, control_rx, shutdown);
    let thread = std::thread::Builder::new()
        .name(format!("live-{camera}"))
        .spawn(move || sup.run())?;
    Ok(LiveHandle {
        camera,
        configured,
        status,
        control,
        uplink,
        thread: Some(thread),
    })
}

// ---------------------------------------------------------------------------------------------
// The sender pipeline.

/// SRT's cumulative counters, as the sink reports them.
#[derive(Debug, Clone, Copy, Default)]
struct SrtCounters {
    packets_sent: i64,
    packets_retransmitted: i64,
    packets_dropped: i64,
    packets_lost: i64,
    bytes_sent: i64,
    acks: i64,
}

struct Sender {
    rung: Rung,
    /// The feed generation it was built for (`None`: not fed by the taps).
    generation: Option<u64>,
    pipeline: gst::Pipeline,
    sink: gst::Element,
    appsrc: Option<gst_app::AppSrc>,
    srt: bool,
    errors: mpsc::Receiver<String>,
    bytes_out: Arc<AtomicU64>,
    first_out: Arc<Mutex<Option<Instant>>>,
    last_at: Instant,
    last_bytes: u64,
    last_srt: Option<SrtCounters>,
    ever_connected: bool,
}

fn make(factory: &'static str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element {factory:?} is not installed"))
}

/// Where a sender's video comes from.
enum Input<'a> {
    Feed { slot: &'a FeedSlot, h265: bool },
    Rtsp(&'a url::Url),
}

impl Sender {
    fn start(
        camera: &CameraId,
        rung: Rung,
        input: Input<'_>,
        target: &LiveTarget,
        latency_ms: u32,
    ) -> Result<Sender, String> {
        let pipeline = gst::Pipeline::builder()
            .name(format!("live-{camera}-{}", rung.name()))
            .build();
        let h265 = matches!(input, Input::Feed { h265: true, .. });
        let (mux, sink, srt) = match target {
            LiveTarget::Srt(url) => {
                let mux = make("mpegtsmux")?;
                // 7 TS packets per buffer: one SRT payload (1316 bytes).
                mux.set_property("alignment", 7i32);
                let sink = make("srtsink")?;
                sink.set_property("uri", url.as_str());
                sink.set_property_from_str("mode", "caller");
                sink.set_property("wait-for-connection", false);
                sink.set_property("auto-reconnect", false);
                sink.set_property("latency", latency_ms as i32);
                sink.set_property("poll-timeout", 1000i32);
                (mux, sink, true)
            }
            LiveTarget::Rtmp(url) => {
                if h265 {
                    return Err("RTMP carries H.264 only; this camera sends H.265".into());
                }
                let mux = make("flvmux")?;
                mux.set_property("streamable", true);
                let sink = make("rtmp2sink")?;
                sink.set_property("location", url.as_str());
                (mux, sink, false)
            }
        };
        sink.set_property("sync", false);
        sink.set_property("async", false);
        let parse = make(if h265 { "h265parse" } else { "h264parse" })?;
        parse.set_property("config-interval", -1i32);
        pipeline
            .add_many([&parse, &mux, &sink])
            .map_err(|e| e.to_string())?;
        gst::Element::link_many([&parse, &mux, &sink]).map_err(|e| e.to_string())?;
        let appsrc = match input {
            Input::Feed { .. } => {
                let src = gst_app::AppSrc::builder()
                    .name("live-src")
                    .is_live(true)
                    .format(gst::Format::Time)
                    .do_timestamp(false)
                    .block(false)
                    .max_bytes(4 * FEED_MAX_BYTES)
                    .build();
                pipeline.add(&src).map_err(|e| e.to_string())?;
                src.link(&parse).map_err(|e| e.to_string())?;
                Some(src)
            }
            Input::Rtsp(url) => {
                let entry = make("identity")?;
                pipeline.add(&entry).map_err(|e| e.to_string())?;
                entry.link(&parse).map_err(|e| e.to_string())?;
                crate::elements::add_rtsp_source(&pipeline, url, &entry)
                    .map_err(|e| e.to_string())?;
                None
            }
        };
        let bytes_out = Arc::new(AtomicU64::new(0));
        let first_out = Arc::new(Mutex::new(None));
        if let Some(pad) = sink.static_pad("sink") {
            let (bytes, first) = (bytes_out.clone(), first_out.clone());
            // mpegtsmux pushes buffer lists: count both.
            let kinds = gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST;
            pad.add_probe(kinds, move |_, info| {
                let size = match &info.data {
                    Some(gst::PadProbeData::Buffer(b)) => b.size(),
                    Some(gst::PadProbeData::BufferList(l)) => l.calculate_size(),
                    _ => 0,
                };
                if size > 0 {
                    bytes.fetch_add(size as u64, Ordering::Relaxed);
                    let mut f = first.lock().unwrap_or_else(|e| e.into_inner());
                    if f.is_none() {
                        *f = Some(Instant::now());
                    }
                }
                gst::PadProbeReturn::Ok
            });
        }
        let (err_tx, errors) = mpsc::channel();
        if let Some(bus) = pipeline.bus() {
            // Errors stay here: this pipeline's bus is not the recording pipeline's.
            bus.set_sync_handler(move |_, msg| {
                match msg.view() {
                    gst::MessageView::Error(e) => {
                        let _ = err_tx.send(format!(
                            "{}: {}",
                            msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
                            e.error()
                        ));
                    }
                    gst::MessageView::Eos(_) => {
                        let _ = err_tx.send("the live stream ended".into());
                    }
                    _ => {}
                }
                gst::BusSyncReply::Drop
            });
        }
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| match errors.try_recv() {
                Ok(e) => e,
                Err(_) => "live sender did not start".to_string(),
            })?;
        let now = Instant::now();
        Ok(Sender {
            rung,
            generation: None,
            pipeline,
            sink,
            appsrc,
            srt,
            errors,
            bytes_out,
            first_out,
            last_at: now,
            last_bytes: 0,
            last_srt: None,
            ever_connected: false,
        })
    }

    /// The first error the sender reported, if any.
    fn error(&self) -> Option<String> {
        self.errors.try_recv().ok()
    }

    fn srt_counters(&self) -> Option<(SrtCounters, Option<f64>, Option<u64>)> {
        let stats = self.sink.property::<Option<gst::Structure>>("stats")?;
        let int = |k: &str| -> Option<i64> {
            stats
                .get::<i64>(k)
                .ok()
                .or_else(|| stats.get::<i32>(k).ok().map(i64::from))
                .or_else(|| stats.get::<u64>(k).ok().map(|v| v as i64))
                .or_else(|| stats.get::<u32>(k).ok().map(i64::from))
        };
        let float = |k: &str| stats.get::<f64>(k).ok();
        let c = SrtCounters {
            packets_sent: int("packets-sent")?,
            packets_retransmitted: int("packets-retransmitted").unwrap_or(0),
            packets_dropped: int("packets-sent-dropped").unwrap_or(0),
            packets_lost: int("packets-sent-lost").unwrap_or(0),
            bytes_sent: int("bytes-sent").unwrap_or(0),
            acks: int("packet-ack-received").unwrap_or(0),
        };
        let rtt = float("rtt-ms");
        let bw = float("bandwidth-mbps")
            .filter(|b| *b > 0.0)
            .map(|b| (b * 1e6) as u64);
        Some((c, rtt, bw))
    }

    /// One sample of the sender since the previous one.
    fn sample(&mut self, at: Duration) -> Sample {
        let now = Instant::now();
        let secs = now.duration_since(self.last_at).as_secs_f64().max(0.001);
        self.last_at = now;
        let out = self.bytes_out.load(Ordering::Relaxed);
        let out_bps = ((out - self.last_bytes) as f64 * 8.0 / secs) as u64;
        self.last_bytes = out;
        let backlog = self.appsrc.as_ref().map_or(Duration::ZERO, |s| {
            Duration::from_nanos(s.current_level_time().nseconds())
        });
        let mut s = Sample {
            at,
            backlog,
            ..Sample::default()
        };
        if self.srt {
            if let Some((c, rtt, bw)) = self.srt_counters() {
                let prev = self.last_srt.unwrap_or_default();
                let d = |now: i64, before: i64| (now - before).max(0);
                let sent = d(c.packets_sent, prev.packets_sent);
                let lost = d(c.packets_lost, prev.packets_lost);
                let acks = d(c.acks, prev.acks);
                let resent_or_dropped = d(c.packets_retransmitted, prev.packets_retransmitted)
                    + d(c.packets_dropped, prev.packets_dropped);
                // Before the handshake SRT reports defaults (rtt 100 ms): only packets sent or
                // acknowledged prove a connection.
                s.connected = c.packets_sent > 0 || c.acks > 0;
                let sent_bps = (d(c.bytes_sent, prev.bytes_sent) as f64 * 8.0 / secs) as u64;
                s.sent_bps = Some(sent_bps);
                if sent > 0 && acks == 0 && self.last_srt.is_some() {
                    // Sending into silence: nothing came back (a cut or black-holed link).
                    s.loss = Some(1.0);
                    s.delivered_bps = Some(0);
                } else if sent > 0 {
                    // What the receiver reported lost is what the link dropped; resending and
                    // dropping too-late packets is the sender struggling to keep up. The larger
                    // of the two (NAK reports undercount on a saturated link) makes the
                    // delivered estimate err low, on the safe side.
                    let link_loss = (lost as f64 / sent as f64).min(1.0);
                    let struggle = (resent_or_dropped as f64 / sent as f64).min(1.0);
                    s.loss = Some(link_loss.max(struggle));
                }
                s.rtt_ms = rtt.filter(|_| s.connected);
                s.bandwidth_bps = bw;
                self.last_srt = Some(c);
            }
        } else {
            // RTMP: TCP says nothing; data leaving the sink is what we know.
            s.connected = self.ever_connected || out > 0;
            s.sent_bps = Some(out_bps);
        }
        self.ever_connected |= s.connected;
        s
    }

    /// Stops the pipeline on a helper thread, waiting at most [`STOP_TIMEOUT`]: a network sink
    /// stuck in a system call must not wedge the supervisor.
    fn stop(self, camera: &CameraId) {
        let pipeline = self.pipeline.clone();
        let (tx, rx) = mpsc::channel();
        let spawned = std::thread::Builder::new()
            .name("live-stop".into())
            .spawn(move || {
                let _ = pipeline.set_state(gst::State::Null);
                let _ = tx.send(());
            });
        if spawned.is_ok() && rx.recv_timeout(STOP_TIMEOUT).is_err() {
            warn!(camera = %camera, "live sender did not stop within 3 s; abandoned");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The supervisor.

struct Supervisor {
    camera: CameraId,
    source: CameraSource,
    bitrate_kbps: u32,
    live: CameraLiveConfig,
    config: LiveConfig,
    feed: Arc<LiveFeed>,
    counters: Arc<CameraCounters>,
    events: Option<UnboundedSender<EventKind>>,
    status: watch::Sender<LiveStatus>,
    uplink: watch::Sender<UplinkEstimate>,
    control: mpsc::Receiver<Option<LiveMode>>,
    shutdown: CancellationToken,
    mode: LiveMode,
    overridden: bool,
    policy: Option<RungPolicy>,
    sender: Option<Sender>,
    /// The rung reported (events are sent when it changes).
    rung: Rung,
    reason: String,
    retry: Duration,
    next_attempt: Instant,
    epoch: Instant,
    /// When the current rung was chosen, until its first byte left (video lost at a switch).
    switch_at: Option<Instant>,
    last_sample: Sample,
    /// A sender failed since the last sample.
    failed: bool,
    /// Measured main-stream bitrate (RTSP cameras): frames and bytes at the last look.
    main_meter: (Instant, u64),
    main_bps: Option<u64>,
}

impl Supervisor {
    fn new(
        ctx: LiveContext,
        status: watch::Sender<LiveStatus>,
        uplink: watch::Sender<UplinkEstimate>,
        control: mpsc::Receiver<Option<LiveMode>>,
        shutdown: CancellationToken,
    ) -> Self {
        let now = Instant::now();
        Self {
            mode: ctx.initial_override.unwrap_or(ctx.live.mode),
            overridden: ctx.initial_override.is_some(),
            camera: ctx.camera,
            source: ctx.source,
            bitrate_kbps: ctx.bitrate_kbps,
            main_meter: (now, ctx.counters.bytes()),
            live: ctx.live,
            config: ctx.config,
            feed: ctx.feed,
            counters: ctx.counters,
            events: ctx.events,
            status,
            uplink,
            control,
            shutdown,
            policy: None,
            sender: None,
            rung: Rung::Off,
            reason: String::new(),
            retry: RETRY_INITIAL,
            next_attempt: now,
            epoch: now,
            switch_at: None,
            last_sample: Sample::default(),
            failed: false,
            main_bps: None,
        }
    }

    fn rates(&self) -> RungRates {
        // What the recording actually carries (an encoder below its target, a VBR camera);
        // until measured, the encode target or 4 Mbit/s for a camera.
        let main = self
            .main_bps
            .unwrap_or(if self.source.is_encoded_by_agent() {
                u64::from(self.bitrate_kbps) * 1000
            } else {
                4_000_000
            });
        let has_sub = self.source.is_encoded_by_agent() || self.live.sub_stream.is_some();
        RungRates {
            main_bps: (main as f64 * OVERHEAD) as u64,
            sub_bps: has_sub.then(|| (f64::from(self.live.sub_kbps) * 1000.0 * OVERHEAD) as u64),
        }
    }

    fn run(mut self) {
        info!(
            camera = %self.camera,
            target = %self.live.target,
            mode = self.mode.name(),
            overridden = self.overridden,
            "live supervision started"
        );
        self.apply_mode("start");
        let mut next_sample = Instant::now() + SAMPLE_EVERY;
        while !self.shutdown.is_cancelled() {
            match self.control.recv_timeout(LOOP_TICK) {
                Ok(cmd) => {
                    self.overridden = cmd.is_some();
                    self.mode = cmd.unwrap_or(self.live.mode);
                    info!(camera = %self.camera, mode = self.mode.name(), overridden = self.overridden, "live mode set by command");
                    self.apply_mode("set by command");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(err) = self.sender.as_ref().and_then(Sender::error) {
                self.sender_failed(err);
            }
            let generation = self.feed.generation.load(Ordering::Relaxed);
            if self
                .sender
                .as_ref()
                .is_some_and(|s| s.generation.is_some_and(|g| g != generation))
            {
                // The camera's pipeline was rebuilt (camera lost and back): start over.
                debug!(camera = %self.camera, "recording pipeline rebuilt; restarting the live sender");
                self.set_feed(None);
                if let Some(s) = self.sender.take() {
                    s.stop(&self.camera);
                }
            }
            self.note_first_byte();
            if Instant::now() >= next_sample {
                next_sample += SAMPLE_EVERY;
                self.measure_main();
                self.tick();
            }
            self.ensure_sender();
        }
        self.set_feed(None);
        if let Some(s) = self.sender.take() {
            s.stop(&self.camera);
        }
        info!(camera = %self.camera, "live supervision stopped");
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The rung the mode asks for now.
    fn wanted(&self) -> Rung {
        match self.mode {
            LiveMode::Off => Rung::Off,
            LiveMode::On => Rung::Main,
            LiveMode::Auto => self.policy.as_ref().map_or(Rung::Main, RungPolicy::rung),
        }
    }

    fn apply_mode(&mut self, why: &str) {
        match self.mode {
            LiveMode::Auto => {
                if self.policy.is_none() {
                    self.policy = Some(RungPolicy::new(
                        self.config.policy.clone(),
                        self.rates(),
                        self.now(),
                    ));
                }
            }
            _ => self.policy = None,
        }
        let reason = match self.mode {
            LiveMode::Off => format!("live mode off ({why})"),
            LiveMode::On => format!("live mode on: main stream ({why})"),
            LiveMode::Auto => self
                .policy
                .as_ref()
                .map(|p| p.reason().to_owned())
                .unwrap_or_default(),
        };
        self.change_rung(self.wanted(), reason);
    }

    /// Records the rung the supervisor now wants, with an event when it changed.
    fn change_rung(&mut self, to: Rung, reason: String) {
        self.reason = reason;
        if to == self.rung {
            self.publish();
            return;
        }
        let from = self.rung;
        self.rung = to;
        info!(
            camera = %self.camera,
            from = from.name(),
            to = to.name(),
            mode = self.mode.name(),
            uplink_bps = self.uplink.borrow().capacity_bps,
            reason = %self.reason,
            "live rung changed"
        );
        if let Some(tx) = &self.events {
            let _ = tx.send(EventKind::LiveChanged {
                camera: self.camera.clone(),
                rung: to.wire(),
                from: from.wire(),
                mode: setting(self.mode),
                uplink_bps: self.uplink.borrow().capacity_bps,
                reason: self.reason.clone(),
            });
        }
        self.switch_at = (to != Rung::Off).then(Instant::now);
        if let Some(s) = self.sender.take() {
            self.set_feed(None);
            s.stop(&self.camera);
        }
        self.retry = RETRY_INITIAL;
        self.next_attempt = Instant::now();
        self.publish();
    }

    fn note_first_byte(&mut self) {
        let (Some(at), Some(s)) = (self.switch_at, self.sender.as_ref()) else {
            return;
        };
        let first = *s.first_out.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(first) = first {
            info!(
                camera = %self.camera,
                rung = s.rung.name(),
                after_ms = first.saturating_duration_since(at).as_millis() as u64,
                "live stream flowing"
            );
            self.switch_at = None;
        }
    }

    fn measure_main(&mut self) {
        let (t0, b0) = self.main_meter;
        let secs = t0.elapsed().as_secs_f64();
        if secs >= 5.0 {
            let b = self.counters.bytes();
            let bps = ((b.saturating_sub(b0)) as f64 * 8.0 / secs) as u64;
            if bps > 0 {
                self.main_bps = Some(bps);
            }
            self.main_meter = (Instant::now(), b);
        }
    }

    fn tick(&mut self) {
        let at = self.now();
        let mut sample = match self.sender.as_mut() {
            Some(s) => s.sample(at),
            None => Sample {
                at,
                ..Sample::default()
            },
        };
        sample.failed = std::mem::take(&mut self.failed);
        self.last_sample = sample;
        let rates = self.rates();
        if let Some(p) = self.policy.as_mut() {
            let decision = p.on_sample(&sample, &rates);
            let estimate = p.estimate(&rates);
            self.uplink.send_replace(estimate);
            if let Some(d) = decision {
                self.change_rung(d.to, d.reason);
            } else {
                self.reason = p.reason().to_owned();
            }
        } else {
            let live_bps = if self.rung == Rung::Off {
                0
            } else {
                sample.sent_bps.unwrap_or(0)
            };
            self.uplink.send_replace(UplinkEstimate {
                capacity_bps: None,
                live_bps,
                spare_bps: None,
            });
        }
        self.publish();
    }

    fn sender_failed(&mut self, err: String) {
        warn!(
            camera = %self.camera,
            rung = self.rung.name(),
            error = %err,
            retry_in_ms = self.retry.as_millis() as u64,
            "live sender failed; recording is not affected"
        );
        self.set_feed(None);
        if let Some(s) = self.sender.take() {
            s.stop(&self.camera);
        }
        self.reason = format!("live sender failed: {err}");
        self.failed = true;
        self.next_attempt = Instant::now() + self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
        self.publish();
    }

    /// Starts the sender the wanted rung needs, if it is not running.
    fn ensure_sender(&mut self) {
        let wanted = self.rung;
        if wanted == Rung::Off {
            if let Some(s) = self.sender.take() {
                self.set_feed(None);
                s.stop(&self.camera);
            }
            return;
        }
        if self.sender.as_ref().is_some_and(|s| s.rung == wanted)
            || Instant::now() < self.next_attempt
        {
            return;
        }
        let h265 = self
            .counters
            .keyframe()
            .and_then(|s| {
                s.caps()
                    .and_then(|c| c.structure(0).map(|s| s.name() == "video/x-h265"))
            })
            .unwrap_or(false);
        let sub_url = match &self.live.sub_stream {
            Some(CameraSource::Rtsp(u)) => Some(u.clone()),
            _ => None,
        };
        let input = match (wanted, &sub_url) {
            (Rung::Sub, Some(url)) => Input::Rtsp(url),
            (Rung::Sub, None) => Input::Feed {
                slot: &self.feed.sub,
                h265: false,
            },
            _ => Input::Feed {
                slot: &self.feed.main,
                h265,
            },
        };
        let slot_is_sub =
            matches!(input, Input::Feed { slot, .. } if std::ptr::eq(slot, &self.feed.sub));
        match Sender::start(
            &self.camera,
            wanted,
            input,
            &self.live.target,
            self.config.srt_latency_ms,
        ) {
            Ok(mut s) => {
                debug!(camera = %self.camera, rung = wanted.name(), "live sender started");
                if s.appsrc.is_some() {
                    s.generation = Some(self.feed.generation.load(Ordering::Relaxed));
                    self.set_feed(Some((slot_is_sub, s.appsrc.clone())));
                } else {
                    self.set_feed(None);
                }
                self.sender = Some(s);
            }
            Err(e) => self.sender_failed(e),
        }
    }

    /// Points the feed at the current sender (and opens the sub encoder only when it is fed).
    fn set_feed(&self, to: Option<(bool, Option<gst_app::AppSrc>)>) {
        match to {
            Some((true, src)) => {
                self.feed.main.attach(None);
                self.feed.sub.attach(src);
                self.feed.set_sub_open(true);
            }
            Some((false, src)) => {
                self.feed.sub.attach(None);
                self.feed.set_sub_open(false);
                self.feed.main.attach(src);
            }
            None => {
                self.feed.main.attach(None);
                self.feed.sub.attach(None);
                self.feed.set_sub_open(false);
            }
        }
    }

    fn publish(&self) {
        let s = &self.last_sample;
        let streaming = self.sender.as_ref().is_some_and(|snd| {
            snd.first_out
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some()
        });
        let state = match (self.rung, &self.policy) {
            (Rung::Off, _) => LiveState::Stopped,
            _ if !streaming => LiveState::Starting,
            (_, Some(p)) => p.state(),
            (_, None) => LiveState::Streaming,
        };
        let uplink = self.uplink.borrow().capacity_bps;
        let on = self.rung != Rung::Off && self.sender.is_some();
        let status = LiveStatus {
            mode: self.mode,
            overridden: self.overridden,
            rung: self.rung,
            state,
            uplink_bps: uplink,
            send_bps: on.then_some(s.sent_bps).flatten(),
            rtt_ms: on.then_some(s.rtt_ms).flatten(),
            loss: on.then_some(s.loss).flatten(),
            reason: self.reason.clone(),
        };
        self.status.send_if_modified(|old| {
            if *old != status {
                *old = status;
                true
            } else {
                false
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::EncodeSettings;

    fn cam(source: &str, target: &str) -> CameraConfig {
        CameraConfig {
            id: CameraId::new("desk").unwrap(),
            source: CameraSource::parse(source).unwrap(),
            encode: EncodeSettings::default(),
            live: Some(CameraLiveConfig {
                mode: LiveMode::Auto,
                target: LiveTarget::parse(target).unwrap(),
                sub_stream: None,
                sub_kbps: 400,
            }),
        }
    }

    #[test]
    fn sub_encode_branch_only_for_encoded_sources() {
        let b = sub_encode_branch(&cam("test", "srt://127.0.0.1:9000")).unwrap();
        assert!(b.contains("width=640,height=360"), "{b}");
        assert!(b.contains("bitrate=400"), "{b}");
        assert!(b.contains("leaky=downstream"), "{b}");
        assert!(sub_encode_branch(&cam("rtsp://192.0.2.1/x", "srt://127.0.0.1:9000")).is_none());
    }

    #[test]
    fn required_elements_follow_the_target() {
        let srt = required_elements(&cam("test", "srt://127.0.0.1:9000"));
        assert!(srt.contains(&"srtsink") && srt.contains(&"x264enc"));
        let rtmp = required_elements(&cam("rtsp://192.0.2.1/x", "rtmp://h/app/key"));
        assert!(rtmp.contains(&"rtmp2sink") && !rtmp.contains(&"x264enc"));
    }
}
