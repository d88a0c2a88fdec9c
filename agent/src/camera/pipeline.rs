//! One camera's GStreamer pipeline: source → parse → tee → recorder (and, later, live and
//! analysis branches on the same tee).
//!
//! * `test`: `videotestsrc` (moving ball) with the station, camera and wall clock burned in,
//!   encoded with x264.
//! * V4L2: `v4l2src ! decodebin` (raw or MJPEG cameras), scaled to the configured size and rate,
//!   encoded with x264.
//! * RTSP: `rtspsrc` over TCP, H.264 or H.265 depayloaded and parsed, never re-encoded. The depay
//!   and parse elements are created when the camera announces its video stream (pad-added).
//!
//! Every parser runs with `config-interval=-1` so each keyframe carries its parameter sets and
//! every segment decodes on its own.

use std::sync::Arc;

use gst::glib;
use gst::prelude::*;
use stationwatch_protocol::StationId;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{debug, warn};

use crate::config::source::CameraSource;
use crate::config::CameraConfig;
use crate::live::{self, LiveFeed};
use crate::recording::recorder::Recorder;
use crate::state::CameraCounters;

/// What the pipeline's bus tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    Error(String),
    Eos,
}

#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(
        "GStreamer element {0:?} is not installed (Debian: gstreamer1.0-plugins-base/-good/-bad/-ugly, gstreamer1.0-libav)"
    )]
    MissingElement(&'static str),
    #[error("cannot build pipeline: {0}")]
    Build(String),
}

impl From<glib::BoolError> for PipelineError {
    fn from(e: glib::BoolError) -> Self {
        PipelineError::Build(e.to_string())
    }
}

/// GStreamer elements a source kind needs (for `check` and a clear error instead of a retry loop).
pub fn required_elements(source: &CameraSource) -> &'static [&'static str] {
    match source {
        CameraSource::Test => &[
            "tee",
            "queue",
            "mpegtsmux",
            "appsink",
            "videotestsrc",
            "clockoverlay",
            "x264enc",
            "h264parse",
        ],
        CameraSource::V4l2(_) => &[
            "tee",
            "queue",
            "mpegtsmux",
            "appsink",
            "v4l2src",
            "decodebin",
            "videoconvert",
            "videoscale",
            "videorate",
            "x264enc",
            "h264parse",
        ],
        CameraSource::Rtsp(_) => &[
            "tee",
            "queue",
            "mpegtsmux",
            "appsink",
            "rtspsrc",
            "rtph264depay",
            "h264parse",
            "rtph265depay",
            "h265parse",
        ],
    }
}

/// Elements from [`required_elements`] that are not installed.
pub fn missing_elements(source: &CameraSource) -> Vec<&'static str> {
    required_elements(source)
        .iter()
        .copied()
        .filter(|e| gst::ElementFactory::find(e).is_none())
        .collect()
}

/// A built, not yet started pipeline.
pub struct CameraPipeline {
    pub pipeline: gst::Pipeline,
    /// Where the recorder branch starts; EOS is sent here to close the segment cleanly.
    pub recorder_entry: gst::Element,
    /// The live taps' appsinks (`live.rs`): they get EOS too when the recording is drained,
    /// or the pipeline would never post its EOS.
    pub live_sinks: Vec<gst::Element>,
}

impl CameraPipeline {
    pub fn build(
        station: &StationId,
        cam: &CameraConfig,
        recorder: &Recorder,
        counters: Arc<CameraCounters>,
        bus_tx: UnboundedSender<BusEvent>,
        live_feed: Option<&Arc<LiveFeed>>,
    ) -> Result<Self, PipelineError> {
        if let Some(missing) = missing_elements(&cam.source).first() {
            return Err(PipelineError::MissingElement(missing));
        }
        let pipeline = gst::Pipeline::builder()
            .name(format!("camera-{}", cam.id))
            .build();
        let tee = gst::ElementFactory::make("tee").name("split").build()?;
        let (rec_elements, rec_entry) = recorder.branch()?;
        pipeline.add(&tee)?;
        pipeline.add_many(&rec_elements)?;
        gst::Element::link_many(&rec_elements)?;
        tee.link(&rec_entry)?;
        // The seam for the analysis branch: more `tee ! queue ! ...` here.

        match &cam.source {
            CameraSource::Rtsp(url) => add_rtsp_source(&pipeline, url, &tee)?,
            CameraSource::Test | CameraSource::V4l2(_) => {
                let desc = encoded_source_description(station, cam);
                let bin = gst::parse::bin_from_description(&desc, true)
                    .map_err(|e| PipelineError::Build(e.to_string()))?;
                pipeline.add(&bin)?;
                bin.link(&tee)?;
            }
        }

        // The live branch: a leaky tap that can drop but never block (live.rs).
        let live_sinks = match live_feed {
            Some(feed) => live::add_taps(&pipeline, &tee, feed)?,
            None => Vec::new(),
        };

        let tee_sink = tee
            .static_pad("sink")
            .ok_or_else(|| PipelineError::Build("tee without sink pad".into()))?;
        tee_sink.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            if let Some(buf) = info.buffer() {
                counters.on_frame(buf.size());
                if !buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                    // Keep the latest keyframe (a reference, not a copy) for snapshots.
                    if let Some(caps) = pad.current_caps() {
                        counters
                            .set_keyframe(gst::Sample::builder().buffer(buf).caps(&caps).build());
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });

        let bus = pipeline
            .bus()
            .ok_or_else(|| PipelineError::Build("pipeline without bus".into()))?;
        bus.set_sync_handler(move |_, msg| {
            let ev = match msg.view() {
                gst::MessageView::Error(e) => Some(BusEvent::Error(format!(
                    "{}: {}",
                    msg.src().map(|s| s.name().to_string()).unwrap_or_default(),
                    e.error()
                ))),
                gst::MessageView::Eos(_) => Some(BusEvent::Eos),
                gst::MessageView::Warning(w) => {
                    debug!(warning = %w.error(), "pipeline warning");
                    None
                }
                _ => None,
            };
            if let Some(ev) = ev {
                let _ = bus_tx.send(ev);
            }
            gst::BusSyncReply::Drop
        });

        Ok(Self {
            pipeline,
            recorder_entry: rec_entry,
            live_sinks,
        })
    }
}

/// Launch description of a source the agent encodes. Station and camera ids are validated to
/// `[A-Za-z0-9_-]`, device paths to `/dev/videoN`, so they are safe to embed.
fn encoded_source_description(station: &StationId, cam: &CameraConfig) -> String {
    let e = &cam.encode;
    let caps = format!(
        "video/x-raw,format=I420,width={},height={},framerate={}/1",
        e.width, e.height, e.fps
    );
    // With a live target, the raw video is also teed to the live sub-stream encoder (live.rs).
    let live_branch = live::sub_encode_branch(cam);
    let tee = if live_branch.is_some() {
        "tee name=live-raw ! "
    } else {
        ""
    };
    // Two-second GOP: segments split on keyframes, and segments are tens of seconds long.
    let encode = format!(
        "{tee}x264enc tune=zerolatency speed-preset=ultrafast bitrate={} key-int-max={} \
         ! h264parse config-interval=-1",
        e.bitrate_kbps,
        e.fps * 2
    );
    let desc = match &cam.source {
        CameraSource::V4l2(dev) => format!(
            "v4l2src device={} ! decodebin ! videoconvert ! videoscale ! videorate ! {caps} ! {encode}",
            dev.display()
        ),
        _ => format!(
            "videotestsrc is-live=true pattern=ball ! {caps} \
             ! clockoverlay halignment=left valignment=top shaded-background=true \
               time-format=\"%Y-%m-%d %H:%M:%S %Z\" text=\"{station} / {camera}\" \
             ! {encode}",
            station = station,
            camera = cam.id
        ),
    };
    match live_branch {
        Some(branch) => format!("{desc} {branch}"),
        None => desc,
    }
}

/// Adds `rtspsrc` for `url` and links its video, once announced, through depay and parse into
/// `tee` (also used by the live sender for a camera's sub-stream).
pub(crate) fn add_rtsp_source(
    pipeline: &gst::Pipeline,
    url: &url::Url,
    tee: &gst::Element,
) -> Result<(), PipelineError> {
    // Credentials go in their own properties so the location GStreamer may log has none.
    let mut location = url.clone();
    let user = percent_decode(url.username());
    let password = url.password().map(percent_decode);
    let _ = location.set_username("");
    let _ = location.set_password(None);
    let src = gst::ElementFactory::make("rtspsrc")
        .name("source")
        .property("location", location.as_str())
        .property("latency", 200u32)
        // Detect a silent camera ourselves (stall watchdog); keep GStreamer's own timeouts short.
        .property("tcp-timeout", 5_000_000u64)
        .build()?;
    src.set_property_from_str("protocols", "tcp");
    if !user.is_empty() {
        src.set_property("user-id", &user);
    }
    if let Some(pw) = password {
        src.set_property("user-pw", &pw);
    }
    // Only the video stream: audio and metadata are not recorded.
    src.connect("select-stream", false, |args| {
        let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
        let video = caps
            .as_ref()
            .and_then(|c| c.structure(0))
            .and_then(|s| s.get::<&str>("media").ok())
            == Some("video");
        Some(video.to_value())
    });
    pipeline.add(&src)?;

    let pipeline_weak = pipeline.downgrade();
    let tee_weak = tee.downgrade();
    src.connect_pad_added(move |_, pad| {
        let (Some(pipeline), Some(tee)) = (pipeline_weak.upgrade(), tee_weak.upgrade()) else {
            return;
        };
        if let Err(e) = link_rtp_pad(&pipeline, pad, &tee) {
            // The stall watchdog turns an unlinked camera into a reconnect.
            warn!(error = %e, "cannot record this RTSP stream");
            let _ = pipeline.post_message(
                gst::message::Error::builder(gst::CoreError::Negotiation, &e.to_string()).build(),
            );
        }
    });
    Ok(())
}

fn link_rtp_pad(
    pipeline: &gst::Pipeline,
    pad: &gst::Pad,
    tee: &gst::Element,
) -> Result<(), PipelineError> {
    let caps = pad
        .current_caps()
        .or_else(|| Some(pad.query_caps(None)))
        .ok_or_else(|| PipelineError::Build("RTP pad without caps".into()))?;
    let s = caps
        .structure(0)
        .ok_or_else(|| PipelineError::Build("RTP pad with empty caps".into()))?;
    let encoding = s.get::<&str>("encoding-name").unwrap_or("").to_owned();
    let (depay, parse) = match encoding.as_str() {
        "H264" => ("rtph264depay", "h264parse"),
        "H265" => ("rtph265depay", "h265parse"),
        other => {
            return Err(PipelineError::Build(format!(
                "camera sends {other:?}; only H264 and H265 can be recorded without re-encoding"
            )))
        }
    };
    let tee_sink = tee
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Build("tee without sink pad".into()))?;
    if tee_sink.is_linked() {
        debug!(encoding, "second video stream ignored");
        return Ok(());
    }
    let media = if encoding == "H264" {
        "video/x-h264"
    } else {
        "video/x-h265"
    };
    let depay = gst::ElementFactory::make(depay).build()?;
    let parse = gst::ElementFactory::make(parse)
        .property("config-interval", -1i32)
        .build()?;
    // Whole access units: a frame sent as several slices must become one buffer (one PES with
    // one timestamp), or segments could start in the middle of a keyframe.
    let au = gst::ElementFactory::make("capsfilter")
        .property(
            "caps",
            gst::Caps::builder(media)
                .field("stream-format", "byte-stream")
                .field("alignment", "au")
                .build(),
        )
        .build()?;
    pipeline.add_many([&depay, &parse, &au])?;
    gst::Element::link_many([&depay, &parse, &au, tee])?;
    for e in [&depay, &parse, &au] {
        e.sync_state_with_parent()?;
    }
    let depay_sink = depay
        .static_pad("sink")
        .ok_or_else(|| PipelineError::Build("depayloader without sink pad".into()))?;
    pad.link(&depay_sink)
        .map_err(|e| PipelineError::Build(format!("linking RTP pad: {e:?}")))?;
    debug!(encoding, "RTSP video stream linked");
    Ok(())
}

fn percent_decode(s: &str) -> String {
    // Userinfo in a URL is percent-encoded (a password may contain '@' or ':').
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}
