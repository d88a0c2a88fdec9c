//! The RTSP recording source: a camera's H.264/H.265 stream read with `retina` (RTP over the
//! RTSP TCP connection, interleaved), muxed to MPEG-TS by `recording/tsmux.rs` and written by
//! the camera's `SegmentWriter`, all on one thread per camera: socket → depacketiser → muxer →
//! file, with no GStreamer element and no hand-off per packet.
//!
//! * Each access unit comes out of `retina` as Annex-B NAL units without parameter sets; the
//!   current SPS/PPS (and VPS), whether the camera sends them in band or only in the SDP, are
//!   put in front of every keyframe (H.264 IDR; H.265 IRAP: IDR, CRA, BLA), so every segment
//!   decodes on its own.
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
    Credentials, PlayOptions, Session, SessionOptions, SetupOptions, TcpTransportOptions, Transport,
};
use retina::codec::h26x::Framing;
use retina::codec::{
    CodecItem, FrameFormat, ParameterSetInsertion, ParametersRef, VideoFrame, VideoParametersCodec,
};
use stationwatch_protocol::CameraId;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info};

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
        let Some((index, codec)) = session.streams().iter().enumerate().find_map(|(i, s)| {
            (s.media() == "video").then(|| match s.encoding_name() {
                "h264" => Some((i, VideoCodec::H264)),
                "h265" => Some((i, VideoCodec::H265)),
                _ => None,
            })?
        }) else {
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
                    // Annex B; the parameter sets are put in front of keyframes here, as
                    // `retina` takes only IDR pictures for keyframes (not H.265 CRA).
                    .frame_format(FrameFormat {
                        h26x_framing: Framing::AnnexB,
                        parameter_set_insertion: ParameterSetInsertion::Never,
                        ..FrameFormat::SIMPLE
                    }),
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
        let mut caps = caps_for(codec, None);
        let mut mux = TsMuxer::new(codec);
        let mut clock = Clock {
            origin: None,
            clock_rate,
            anchor: None,
        };
        let mut ts = Vec::with_capacity(256 * 1024);
        // The current parameter sets, Annex B, to put in front of every keyframe (empty until
        // known: nothing is recorded before).
        let mut params = Vec::new();
        if let Some(ParametersRef::Video(v)) = demuxed.streams()[index].parameters() {
            params = annex_b_parameter_sets(v.codec_params());
            caps = caps_for(codec, Some(v.pixel_dimensions()));
        }
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
                if let Some(ParametersRef::Video(v)) = demuxed.streams()[index].parameters() {
                    // The first parameters (from the SDP or in band) are not a change.
                    config_changed |= !params.is_empty();
                    params = annex_b_parameter_sets(v.codec_params());
                    caps = caps_for(codec, Some(v.pixel_dimensions()));
                    let (width, height) = v.pixel_dimensions();
                    info!(camera = %self.camera, width, height, codec = v.rfc6381_codec(), "video parameters");
                }
            }
            let key = !params.is_empty()
                && match codec {
                    VideoCodec::H264 => frame.is_random_access_point(),
                    VideoCodec::H265 => h265_irap(frame.data()),
                };
            let new_config = key && std::mem::take(&mut config_changed);
            self.on_frame(
                frame, key, new_config, &params, &mut mux, &mut clock, &mut ts, &caps,
            );
        }
        Ok(())
    }

    /// Writes one access unit (`key`: a keyframe, written with `params` in front;
    /// `new_config`: the first keyframe after the camera changed its parameter sets).
    #[allow(clippy::too_many_arguments)]
    fn on_frame(
        &self,
        frame: VideoFrame,
        key: bool,
        new_config: bool,
        params: &[u8],
        mux: &mut TsMuxer,
        clock: &mut Clock,
        ts: &mut Vec<u8>,
        caps: &gst::Caps,
    ) {
        let (rt, utc) = clock.place(frame.timestamp().timestamp(), Utc::now());
        let pts_90k = (rt.nseconds() as u128 * 90_000 / 1_000_000_000) as u64;
        if frame.loss() > 0 {
            debug!(camera = %self.camera, packets = frame.loss(), "RTP packets lost before this frame");
        }
        // A keyframe is copied once, with its parameter sets in front (about once a second);
        // other frames are muxed from `retina`'s buffer.
        let data = if key {
            let mut d = Vec::with_capacity(params.len() + frame.data().len());
            d.extend_from_slice(params);
            d.extend_from_slice(frame.data());
            d
        } else {
            Vec::new()
        };
        let au = if key { &data[..] } else { frame.data() };
        ts.clear();
        mux.write_access_unit(ts, au, pts_90k, key);
        self.counters.on_frame(au.len());
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
        let data = if key { data } else { frame.into_data() };
        let mut buf = gst::Buffer::from_mut_slice(data);
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

/// Caps of the samples kept for snapshots and the view analysis (which takes the picture size
/// from them: a changed size voids an approval) and pushed to the live sender.
fn caps_for(codec: VideoCodec, size: Option<(u32, u32)>) -> gst::Caps {
    let mut b = gst::Caps::builder(match codec {
        VideoCodec::H264 => "video/x-h264",
        VideoCodec::H265 => "video/x-h265",
    })
    .field("stream-format", "byte-stream")
    .field("alignment", "au");
    if let Some((w, h)) = size {
        if let (Ok(w), Ok(h)) = (i32::try_from(w), i32::try_from(h)) {
            b = b.field("width", w).field("height", h);
        }
    }
    b.build()
}

/// The parameter sets (H.264 SPS, PPS; H.265 VPS, SPS, PPS) as Annex-B NAL units.
fn annex_b_parameter_sets(codec: &VideoParametersCodec) -> Vec<u8> {
    let nals: Vec<&[u8]> = match codec {
        VideoParametersCodec::H264 { sps, pps } => vec![sps, pps],
        VideoParametersCodec::H265 { vps, sps, pps } => vec![vps, sps, pps],
        _ => Vec::new(),
    };
    let mut out = Vec::new();
    for nal in nals.into_iter().filter(|n| !n.is_empty()) {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    out
}

/// Whether an H.265 access unit (Annex B) is an intra random access point: its picture's
/// slices are BLA, IDR or CRA NAL units (types 16 to 23), as `h265parse` counts keyframes.
fn h265_irap(au: &[u8]) -> bool {
    let mut vcl = false;
    let mut i = 0;
    while i + 3 < au.len() {
        if au[i] == 0 && au[i + 1] == 0 && au[i + 2] == 1 {
            let t = (au[i + 3] >> 1) & 0x3f;
            if t < 32 {
                if !(16..=23).contains(&t) {
                    return false;
                }
                vcl = true;
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    vcl
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn h265_keyframes_are_idr_cra_and_bla_pictures() {
        // NAL header byte: type << 1.
        let au = |types: &[u8]| -> Vec<u8> {
            types
                .iter()
                .flat_map(|t| [0, 0, 0, 1, t << 1, 1, 0xaa])
                .collect()
        };
        assert!(h265_irap(&au(&[35, 19]))); // AUD, IDR_W_RADL
        assert!(h265_irap(&au(&[21, 21]))); // CRA in two slices
        assert!(h265_irap(&au(&[16]))); // BLA_W_LP
        assert!(!h265_irap(&au(&[1]))); // TRAIL_R
        assert!(!h265_irap(&au(&[19, 1]))); // mixed
        assert!(!h265_irap(&au(&[32, 33, 34]))); // parameter sets only
        assert!(!h265_irap(&[0, 0, 1]));
    }

    #[test]
    fn parameter_sets_become_annex_b() {
        let p = VideoParametersCodec::H264 {
            sps: bytes::Bytes::from_static(&[0x67, 1]),
            pps: bytes::Bytes::from_static(&[0x68, 2]),
        };
        assert_eq!(
            annex_b_parameter_sets(&p),
            [0, 0, 0, 1, 0x67, 1, 0, 0, 0, 1, 0x68, 2]
        );
    }

    #[test]
    fn utc_follows_media_time_and_is_anchored_again_after_a_drift() {
        let mut c = Clock {
            origin: None,
            clock_rate: NonZeroU32::new(90_000).unwrap(),
            anchor: None,
        };
        let t0 = chrono::DateTime::parse_from_rfc3339("2026-12-04T07:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ms = chrono::Duration::milliseconds;
        // Frames at 1/15 s of media time, arriving with jitter: UTC follows media time.
        assert_eq!(c.place(1_000_000, t0), (gst::ClockTime::ZERO, t0));
        let (rt, utc) = c.place(1_000_000 + 6000, t0 + ms(90));
        assert_eq!(rt, gst::ClockTime::from_nseconds(66_666_666));
        assert_eq!(utc, t0 + chrono::Duration::nanoseconds(66_666_666));
        // The wall clock is 2 s ahead of media time (a pause, a clock step): anchored again.
        let (rt, utc) = c.place(1_000_000 + 12_000, t0 + ms(2133));
        assert_eq!(rt, gst::ClockTime::from_nseconds(133_333_333));
        assert_eq!(utc, t0 + ms(2133));
    }
}
