//! Snapshots: a JPEG (or, for the view analysis, a small greyscale picture) of a camera's
//! latest keyframe, decoded on demand.
//!
//! The pipeline keeps a reference to the last keyframe it saw (`CameraCounters::keyframe`, at
//! most a GOP old); a snapshot decodes just that frame in a short-lived pipeline, so nothing
//! is decoded while nobody asks, and the recording pipeline is never touched.

use std::time::Duration;

use gst::prelude::*;
use gst_app::{AppSink, AppSrc};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no keyframe received from this camera yet")]
    NoKeyframe,
    #[error("cannot build the snapshot pipeline: {0}")]
    Build(String),
    #[error("decoding the keyframe failed or timed out")]
    Decode,
}

/// A JPEG image.
#[derive(Debug, Clone)]
pub struct Jpeg {
    pub bytes: Vec<u8>,
    pub width: Option<u32>,
    pub height: Option<u32>,
}

/// Decodes a keyframe sample (with its caps) to JPEG. Blocking: call from a blocking thread.
pub fn jpeg_from_keyframe(
    keyframe: Option<gst::Sample>,
    timeout: Duration,
) -> Result<Jpeg, SnapshotError> {
    let jpeg = gst::ElementFactory::make("jpegenc")
        .property("quality", 85i32)
        .build()
        .map_err(|e| SnapshotError::Build(e.to_string()))?;
    let out = decode_keyframe(keyframe, vec![jpeg], timeout)?;
    let (width, height) = size_of(&out);
    let bytes = out
        .buffer()
        .and_then(|b| b.map_readable().ok().map(|m| m.to_vec()))
        .ok_or(SnapshotError::Decode)?;
    Ok(Jpeg {
        bytes,
        width,
        height,
    })
}

/// A small greyscale picture (one byte per pixel, rows without padding).
#[derive(Debug, Clone)]
pub struct GreyFrame {
    pub width: u32,
    pub height: u32,
    pub pixels: Vec<u8>,
}

/// Decodes a keyframe sample and scales it to `width` x `height` greyscale (the view analysis).
/// `width` must be a multiple of 4, so that GStreamer's rows carry no padding. Blocking.
pub fn grey_from_keyframe(
    keyframe: Option<gst::Sample>,
    width: u32,
    height: u32,
    timeout: Duration,
) -> Result<GreyFrame, SnapshotError> {
    let build = |e: gst::glib::BoolError| SnapshotError::Build(e.to_string());
    let scale = gst::ElementFactory::make("videoscale")
        .build()
        .map_err(build)?;
    let convert = gst::ElementFactory::make("videoconvert")
        .build()
        .map_err(build)?;
    let caps = gst::Caps::builder("video/x-raw")
        .field("format", "GRAY8")
        .field("width", width as i32)
        .field("height", height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build();
    let filter = gst::ElementFactory::make("capsfilter")
        .property("caps", &caps)
        .build()
        .map_err(build)?;
    let out = decode_keyframe(keyframe, vec![scale, convert, filter], timeout)?;
    let pixels = out
        .buffer()
        .and_then(|b| b.map_readable().ok().map(|m| m.to_vec()))
        .ok_or(SnapshotError::Decode)?;
    if pixels.len() != (width * height) as usize {
        return Err(SnapshotError::Decode);
    }
    Ok(GreyFrame {
        width,
        height,
        pixels,
    })
}

fn size_of(sample: &gst::Sample) -> (Option<u32>, Option<u32>) {
    let (w, h) = sample
        .caps()
        .and_then(|c| c.structure(0))
        .map(|s| (s.get::<i32>("width").ok(), s.get::<i32>("height").ok()))
        .unwrap_or((None, None));
    (
        w.and_then(|w| u32::try_from(w).ok()),
        h.and_then(|h| u32::try_from(h).ok()),
    )
}

/// Decodes one keyframe in a short-lived pipeline `appsrc ! decodebin ! videoconvert ! TAIL !
/// appsink` and returns what reaches the sink.
fn decode_keyframe(
    keyframe: Option<gst::Sample>,
    tail: Vec<gst::Element>,
    timeout: Duration,
) -> Result<gst::Sample, SnapshotError> {
    let sample = keyframe.ok_or(SnapshotError::NoKeyframe)?;
    let caps = sample.caps().ok_or(SnapshotError::NoKeyframe)?.to_owned();
    let buffer = sample.buffer_owned().ok_or(SnapshotError::NoKeyframe)?;
    let build = |e: gst::glib::BoolError| SnapshotError::Build(e.to_string());

    let pipeline = gst::Pipeline::builder().name("snapshot").build();
    let src = AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .is_live(false)
        .build();
    let decode = gst::ElementFactory::make("decodebin")
        .build()
        .map_err(build)?;
    let convert = gst::ElementFactory::make("videoconvert")
        .build()
        .map_err(build)?;
    let sink = AppSink::builder().sync(false).max_buffers(1).build();
    let mut chain: Vec<&gst::Element> = vec![&convert];
    chain.extend(tail.iter());
    chain.push(sink.upcast_ref());
    pipeline
        .add_many([src.upcast_ref(), &decode])
        .map_err(build)?;
    pipeline.add_many(chain.iter().copied()).map_err(build)?;
    src.link(&decode).map_err(build)?;
    gst::Element::link_many(chain.iter().copied()).map_err(build)?;
    let convert_weak = convert.downgrade();
    decode.connect_pad_added(move |_, pad| {
        if let Some(sink_pad) = convert_weak.upgrade().and_then(|c| c.static_pad("sink")) {
            if !sink_pad.is_linked() {
                let _ = pad.link(&sink_pad);
            }
        }
    });

    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| SnapshotError::Decode)?;
        src.push_buffer(buffer).map_err(|_| SnapshotError::Decode)?;
        src.end_of_stream().map_err(|_| SnapshotError::Decode)?;
        sink.try_pull_sample(gst::ClockTime::from_nseconds(timeout.as_nanos() as u64))
            .ok_or(SnapshotError::Decode)
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}
