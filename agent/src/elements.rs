//! GStreamer building blocks shared by the camera pipeline (`camera::pipeline`) and the live
//! sender (`live`, for a camera's RTSP sub-stream): the build error and the RTSP source with its
//! depayloader and parser. A leaf: it imports nothing from the crate, so neither of its users
//! has to import the other.

use gst::glib;
use gst::prelude::*;
use tracing::{debug, warn};

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

/// Adds `rtspsrc` for `url` and links its video, once announced, through depay and parse into
/// `tee` (also used by the live sender for a camera's sub-stream).
pub fn add_rtsp_source(
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
