//! The sender: a separate pipeline per rung (`appsrc` or the camera's RTSP sub-stream → parse →
//! mux → `srtsink`/`rtmp2sink`), thrown away on any error; its bus never reaches the recording
//! pipeline's. Also what it measures (bytes out, SRT statistics) for the uplink policy.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};

use parking_lot::Mutex;
use std::time::{Duration, Instant};

use gst::prelude::*;
use stationwatch_protocol::CameraId;
use tracing::warn;

use crate::config::{CameraConfig, LiveTarget};
use crate::live::feed::{Tap, FEED_MAX_BYTES};
use crate::live::uplink::Sample;
use stationwatch_protocol::mqtt::LiveRung;

/// Stopping a sender may block in a dead network sink; give up waiting after this.
pub(super) const STOP_TIMEOUT: Duration = Duration::from_secs(3);

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

/// SRT's cumulative counters, as the sink reports them.
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct SrtCounters {
    pub(super) packets_sent: i64,
    pub(super) packets_retransmitted: i64,
    pub(super) packets_dropped: i64,
    pub(super) packets_lost: i64,
    pub(super) bytes_sent: i64,
    pub(super) acks: i64,
}

pub(super) struct Sender {
    pub(super) rung: LiveRung,
    /// The feed generation it was built for (`None`: not fed by the taps).
    pub(super) generation: Option<u64>,
    pub(super) pipeline: gst::Pipeline,
    pub(super) sink: gst::Element,
    pub(super) appsrc: Option<gst_app::AppSrc>,
    pub(super) srt: bool,
    pub(super) errors: mpsc::Receiver<String>,
    pub(super) bytes_out: Arc<AtomicU64>,
    pub(super) first_out: Arc<Mutex<Option<Instant>>>,
    pub(super) last_at: Instant,
    pub(super) last_bytes: u64,
    pub(super) last_srt: Option<SrtCounters>,
    pub(super) ever_connected: bool,
}

pub(super) fn make(factory: &'static str) -> Result<gst::Element, String> {
    gst::ElementFactory::make(factory)
        .build()
        .map_err(|_| format!("GStreamer element {factory:?} is not installed"))
}

/// Where a sender's video comes from.
pub(super) enum Input<'a> {
    Feed { tap: Tap, h265: bool },
    Rtsp(&'a url::Url),
}

/// What an SRT sender says about itself when its URL does not: the stream id and the
/// station's passphrase.
pub(crate) struct SrtIdentity {
    pub stream_id: String,
    pub passphrase: Option<String>,
}

impl Sender {
    pub(super) fn start(
        camera: &CameraId,
        rung: LiveRung,
        input: Input<'_>,
        target: &LiveTarget,
        latency_ms: u32,
        srt_identity: &SrtIdentity,
    ) -> Result<Sender, String> {
        let pipeline = gst::Pipeline::builder()
            .name(format!("live-{camera}-{}", rung.as_str()))
            .build();
        let h265 = matches!(input, Input::Feed { h265: true, .. });
        let (mux, sink, srt) = match target {
            LiveTarget::Srt(url) => {
                let mux = make("mpegtsmux")?;
                // 7 TS packets per buffer: one SRT payload (1316 bytes).
                mux.set_property("alignment", 7i32);
                let sink = make("srtsink")?;
                sink.set_property("uri", url.as_str());
                let has = |key: &str| url.query_pairs().any(|(k, _)| k == key);
                if !has("streamid") {
                    sink.set_property("streamid", srt_identity.stream_id.as_str());
                }
                if let (false, Some(p)) = (has("passphrase"), &srt_identity.passphrase) {
                    sink.set_property("passphrase", p.as_str());
                }
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
                    let mut f = first.lock();
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
    pub(super) fn error(&self) -> Option<String> {
        self.errors.try_recv().ok()
    }

    pub(super) fn srt_counters(&self) -> Option<(SrtCounters, Option<f64>, Option<u64>)> {
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
    pub(super) fn sample(&mut self, at: Duration) -> Sample {
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
    pub(super) fn stop(self, camera: &CameraId) {
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
