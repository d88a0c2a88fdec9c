//! The RTSP recording source: a camera's H.264/H.265 stream read with `retina` (RTP over the
//! RTSP TCP connection, interleaved), muxed to MPEG-TS by `recording/tsmux.rs` and written by
//! the camera's `SegmentWriter`, all on one thread per camera: socket → depacketiser → muxer →
//! file, with no GStreamer element and no hand-off per packet.
//!
//! * Each access unit comes out of `retina` as Annex-B NAL units with the current SPS/PPS (and
//!   VPS) put in front of every keyframe, whether the camera sends them in band or only in
//!   the SDP, so every segment decodes on its own.
//! * Timing: the running time of a frame is its RTP timestamp (extended past 32-bit wrap by
//!   `retina`) minus the first frame's. Its UTC time is anchored at the wall clock when the
//!   first frame arrives and advanced by media time, so segment names and lengths follow the
//!   camera's clock, not network jitter; if the two drift apart by more than
//!   [`REANCHOR_AFTER`] (camera clock off, or a wall-clock step) it is anchored again.
//! * The latest keyframe goes to the counters (snapshots, view analysis), and, while a live
//!   sender is attached, every frame goes to its `appsrc` as a `gst::Sample`; neither can hold
//!   up recording (the feed never blocks).
//! * Credentials go to `retina` separately; the URL it sees (and may put in errors) has none.

use std::num::NonZeroU32;
use std::sync::Arc;
use std::thread::JoinHandle;

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use parking_lot::Mutex;
use retina::client::{
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions,
    Transport,
};
use retina::codec::{CodecItem, FrameFormat, ParametersRef, VideoFrame};
use stationwatch_protocol::CameraId;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::camera::pipeline::BusEvent;
use crate::live::LiveFeed;
use crate::recording::recorder::{Packet, SegmentWriter};
use crate::recording::tsmux::{TsMuxer, VideoCodec};
use crate::state::CameraCounters;

/// The UTC anchor is reset when media time and the wall clock drift apart by more than this.
pub const REANCHOR_AFTER: chrono::Duration = chrono::Duration::seconds(1);

/// A running RTSP recording (its thread).
pub struct RtspRecording {
    stop: CancellationToken,
    thread: Option<JoinHandle<()>>,
}

impl RtspRecording {
    /// Connects to `url` and records its video on a new thread. The thread reports the end of
    /// the stream or an error on `events`; stop it with [`RtspRecording::stop`].
    pub fn start(
        camera: &CameraId,
        url: &url::Url,
        writer: Arc<Mutex<SegmentWriter>>,
        counters: Arc<CameraCounters>,
        live: Option<Arc<LiveFeed>>,
        events: UnboundedSender<BusEvent>,
    ) -> std::io::Result<Self> {
        let stop = CancellationToken::new();
        let mut location = url.clone();
        let user = percent_decode(url.username());
        let password = url.password().map(percent_decode);
        let _ = location.set_username("");
        let _ = location.set_password(None);
        let creds = (!user.is_empty() || password.is_some()).then(|| Credentials {
            username: user,
            password: password.clone().unwrap_or_default(),
        });
        let source = Source {
            camera: camera.clone(),
            location,
            creds,
            writer,
            counters,
            live,
        };
        // What must never reach a log, should `retina` quote it in an error.
        let secrets: Vec<String> = password
            .iter()
            .cloned()
            .chain(url.password().map(str::to_owned))
            .chain(url.query().map(str::to_owned))
            .filter(|s| !s.is_empty())
            .collect();
        let token = stop.clone();
        let thread = std::thread::Builder::new()
            .name(format!("rtsp-{camera}"))
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = events.send(BusEvent::Error(format!("runtime: {e}")));
                        return;
                    }
                };
                let outcome = rt.block_on(async {
                    tokio::select! {
                        _ = token.cancelled() => None,
                        r = source.run() => Some(r),
                    }
                });
                match outcome {
                    None => {}
                    Some(Ok(())) => {
                        let _ = events.send(BusEvent::Eos);
                    }
                    Some(Err(e)) => {
                        let _ = events.send(BusEvent::Error(scrub(&e, &secrets)));
                    }
                }
            })?;
        Ok(Self {
            stop,
            thread: Some(thread),
        })
    }

    /// Stops reading and waits for the thread (blocking: call off the async runtime). Every
    /// frame it received is in the writer when this returns.
    pub fn stop(mut self) {
        self.stop.cancel();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for RtspRecording {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

struct Source {
    camera: CameraId,
    location: url::Url,
    creds: Option<Credentials>,
    writer: Arc<Mutex<SegmentWriter>>,
    counters: Arc<CameraCounters>,
    live: Option<Arc<LiveFeed>>,
}

/// Timing of the current session: origin of the running time and the UTC anchor.
struct Clock {
    origin: Option<i64>,
    clock_rate: NonZeroU32,
    anchor: Option<(gst::ClockTime, DateTime<Utc>)>,
}

impl Clock {
    /// Running time and UTC of a frame with extended RTP timestamp `ts`.
    fn place(&mut self, ts: i64, now: DateTime<Utc>) -> (gst::ClockTime, DateTime<Utc>) {
        let origin = *self.origin.get_or_insert(ts);
        let ticks = ts.saturating_sub(origin).max(0) as u128;
        let ns = ticks * 1_000_000_000 / u128::from(self.clock_rate.get());
        let rt = gst::ClockTime::from_nseconds(ns.min(u64::MAX as u128) as u64);
        let utc = match self.anchor {
            Some((art, autc)) => {
                let utc = autc + dur(rt.saturating_sub(art)) - dur(art.saturating_sub(rt));
                if (utc - now).abs() > REANCHOR_AFTER {
                    None
                } else {
                    Some(utc)
                }
            }
            None => None,
        };
        match utc {
            Some(utc) => (rt, utc),
            None => {
                if self.anchor.is_some() {
                    debug!("media time drifted from the wall clock; anchored again");
                }
                self.anchor = Some((rt, now));
                (rt, now)
            }
        }
    }
}

fn dur(t: gst::ClockTime) -> chrono::Duration {
    chrono::Duration::nanoseconds(t.nseconds().min(i64::MAX as u64) as i64)
}

impl Source {
    async fn run(self) -> Result<(), String> {
        let opts = SessionOptions::default()
            .creds(self.creds.clone())
            .user_agent("stationwatch-agent".into());
        let mut session = Session::describe(self.location.clone(), opts)
            .await
            .map_err(|e| format!("RTSP DESCRIBE: {e}"))?;
        let Some((index, codec)) = session
            .streams()
            .iter()
            .enumerate()
            .find_map(|(i, s)| {
                (s.media() == "video").then(|| match s.encoding_name() {
                    "h264" => Some((i, VideoCodec::H264)),
                    "h265" => Some((i, VideoCodec::H265)),
                    _ => None,
                })?
            })
        else {
            let found: Vec<String> = session
                .streams()
                .iter()
                .map(|s| format!("{}/{}", s.media(), s.encoding_name()))
                .collect();
            return Err(format!(
                "camera sends no H.264 or H.265 video ({}); only those can be recorded without re-encoding",
                found.join(", ")
            ));
        };
        let clock_rate = NonZeroU32::new(session.streams()[index].clock_rate_hz())
            .ok_or_else(|| "video stream with clock rate 0".to_string())?;
        session
            .setup(
                index,
                SetupOptions::default()
                    .transport(Transport::Tcp(TcpTransportOptions::default()))
                    .frame_format(FrameFormat::SIMPLE),
            )
            .await
            .map_err(|e| format!("RTSP SETUP: {e}"))?;
        let mut demuxed = session
            .play(PlayOptions::default())
            .await
            .map_err(|e| format!("RTSP PLAY: {e}"))?
            .demuxed()
            .map_err(|e| format!("RTSP: {e}"))?;
        info!(camera = %self.camera, ?codec, "RTSP video stream playing");
        if let Some(live) = &self.live {
            live.new_generation();
        }
        let caps = gst::Caps::builder(match codec {
            VideoCodec::H264 => "video/x-h264",
            VideoCodec::H265 => "video/x-h265",
        })
        .field("stream-format", "byte-stream")
        .field("alignment", "au")
        .build();
        let mut mux = TsMuxer::new(codec);
        let mut clock = Clock {
            origin: None,
            clock_rate,
            anchor: None,
        };
        let mut ts = Vec::with_capacity(256 * 1024);
        // Until a keyframe with parameter sets, nothing can be recorded.
        let mut have_params = false;
        // New parameter sets seen since the last keyframe (a new segment starts at the next).
        let mut config_changed = false;
        while let Some(item) = demuxed.next().await {
            let frame = match item {
                Ok(CodecItem::VideoFrame(f)) => f,
                Ok(_) => continue,
                Err(e) => return Err(format!("RTSP: {e}")),
            };
            if frame.stream_id() != index {
                continue;
            }
            if frame.has_new_parameters() {
                // The first parameters (from the SDP or in band) are not a change.
                config_changed |= have_params;
                have_params = true;
                if let Some(ParametersRef::Video(v)) = demuxed.streams()[index].parameters() {
                    let (width, height) = v.pixel_dimensions();
                    info!(camera = %self.camera, width, height, codec = v.rfc6381_codec(), "video parameters");
                }
            } else if !have_params {
                have_params = demuxed.streams()[index].parameters().is_some();
            }
            let key = frame.is_random_access_point() && have_params;
            let new_config = key && std::mem::take(&mut config_changed);
            self.on_frame(frame, key, new_config, &mut mux, &mut clock, &mut ts, &caps);
        }
        Ok(())
    }

    /// Writes one access unit (`key`: a keyframe with its parameter sets in front;
    /// `new_config`: their first keyframe after the camera changed them).
    #[allow(clippy::too_many_arguments)]
    fn on_frame(
        &self,
        frame: VideoFrame,
        key: bool,
        new_config: bool,
        mux: &mut TsMuxer,
        clock: &mut Clock,
        ts: &mut Vec<u8>,
        caps: &gst::Caps,
    ) {
        let (rt, utc) = clock.place(frame.timestamp().timestamp(), Utc::now());
        let pts_90k = (rt.nseconds() as u128 * 90_000 / 1_000_000_000) as u64;
        if frame.loss() > 0 {
            warn!(camera = %self.camera, packets = frame.loss(), "RTP packets lost before this frame");
        }
        ts.clear();
        mux.write_access_unit(ts, frame.data(), pts_90k, key);
        self.counters.on_frame(frame.data().len());
        self.writer.lock().push(Packet {
            data: ts,
            rt,
            utc,
            key_unit_start: key,
            new_config,
        });
        let live = self.live.as_ref().filter(|l| l.main_attached());
        if !key && live.is_none() {
            return;
        }
        let mut buf = gst::Buffer::from_mut_slice(frame.into_data());
        if let Some(b) = buf.get_mut() {
            b.set_pts(rt);
            if !key {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        let sample = gst::Sample::builder().buffer(&buf).caps(caps).build();
        if let Some(live) = live {
            live.push_main(&sample);
        }
        if key {
            self.counters.set_keyframe(sample);
        }
    }
}

/// `msg` with every secret (password, query string) replaced by `***`.
fn scrub(msg: &str, secrets: &[String]) -> String {
    let mut out = msg.to_owned();
    for s in secrets {
        out = out.replace(s.as_str(), "***");
    }
    out
}

fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
