//! One camera's GStreamer pipeline for the sources the agent encodes: source → parse → tee →
//! recorder (and the live taps on the same tee).
//!
//! * `test`: `videotestsrc` (moving ball) with the station, camera and wall clock burned in,
//!   encoded with x264.
//! * V4L2: `v4l2src ! decodebin` (raw or MJPEG cameras), scaled to the configured size and rate,
//!   encoded with x264.
//!
//! RTSP cameras are not recorded through GStreamer: `camera/rtsp.rs` reads them and writes the
//! MPEG-TS itself.
//!
//! Every parser runs with `config-interval=-1` so each keyframe carries its parameter sets and
//! every segment decodes on its own.

use std::sync::Arc;

use gst::prelude::*;
use stationwatch_protocol::StationId;
use tokio::sync::mpsc::UnboundedSender;
use tracing::debug;

use crate::config::source::CameraSource;
use crate::config::CameraConfig;
use crate::elements::PipelineError;
use crate::live::{self, LiveFeed};
use crate::recording::recorder::Recorder;
use crate::state::CameraCounters;

/// What the pipeline's bus tells the supervisor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusEvent {
    Error(String),
    Eos,
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
        // Recorded without GStreamer (`camera/rtsp.rs`).
        CameraSource::Rtsp(_) => &[],
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
    /// The live taps' appsinks (`live/taps.rs`): they get EOS too when the recording is drained,
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

        if let CameraSource::Rtsp(_) = &cam.source {
            return Err(PipelineError::Build(
                "rtsp:// cameras are recorded by camera/rtsp.rs, not by a pipeline".into(),
            ));
        }
        let desc = encoded_source_description(station, cam);
        let bin = gst::parse::bin_from_description(&desc, true)
            .map_err(|e| PipelineError::Build(e.to_string()))?;
        pipeline.add(&bin)?;
        bin.link(&tee)?;

        // The live branch: a leaky tap that can drop but never block (live/taps.rs).
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
    // With a live target, the raw video is also teed to the live sub-stream encoder (live/taps.rs).
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
