//! The public copy of a camera: the station's stream decoded, scaled down, its privacy masks
//! painted over every frame, encoded again (H.264, no audio), cut into its own HLS folder.
//!
//! `appsrc` (the MPEG-TS as received) → `decodebin` → `videoconvert` → `videoscale` → I420 at the
//! configured width → masks filled in place (a buffer probe; spans computed once per picture
//! size) → `x264enc` → `h264parse` → `mpegtsmux` → `appsink` → the same cutter as the private
//! stream. Audio pads of `decodebin` are left unlinked: no audio reaches the public.
//!
//! Fails closed: a frame is masked or it is not encoded (a frame that cannot be mapped is
//! dropped), and a camera without a mask list from the controller has no public copy at all.

use std::sync::Arc;

use gst::prelude::*;
use gst_video::prelude::*;
use parking_lot::Mutex;
use stationwatch_protocol::masks::{spans, Polygon};
use tracing::warn;

use crate::hls::HlsFolder;
use crate::ts::Cutter;

/// Grey, in Y, U and V.
const FILL: [u8; 3] = [128, 128, 128];
/// At most this much of the station's stream waits in front of the decoder; beyond, the
/// oldest is dropped (the public copy falls behind, never the private one).
const MAX_QUEUED_BYTES: u64 = 4 << 20;

pub struct PublicBranch {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    pub masks: Vec<Polygon>,
}

/// Called with each finished public segment.
pub type OnSegment = Arc<dyn Fn(&mut HlsFolder, crate::ts::Segment) + Send + Sync>;

impl PublicBranch {
    pub fn start(
        name: &str,
        masks: Vec<Polygon>,
        width: u32,
        kbps: u32,
        segment_seconds: f64,
        folder: Arc<Mutex<HlsFolder>>,
        on_segment: OnSegment,
    ) -> Result<PublicBranch, String> {
        let make = |f: &str| {
            gst::ElementFactory::make(f)
                .build()
                .map_err(|_| format!("GStreamer element {f:?} is not installed"))
        };
        let pipeline = gst::Pipeline::builder()
            .name(format!("public-{name}"))
            .build();
        let appsrc = gst_app::AppSrc::builder()
            .caps(
                &gst::Caps::builder("video/mpegts")
                    .field("systemstream", true)
                    .field("packetsize", 188i32)
                    .build(),
            )
            .is_live(true)
            .format(gst::Format::Bytes)
            .max_bytes(MAX_QUEUED_BYTES)
            .block(false)
            .leaky_type(gst_app::AppLeakyType::Upstream)
            .build();
        let decode = make("decodebin")?;
        let convert = make("videoconvert")?;
        let scale = make("videoscale")?;
        let caps = make("capsfilter")?;
        caps.set_property(
            "caps",
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .field("width", width as i32)
                .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
                .build(),
        );
        let mask = make("identity")?;
        let queue = make("queue")?;
        queue.set_property("max-size-buffers", 2u32);
        queue.set_property_from_str("leaky", "downstream");
        let enc = make("x264enc")?;
        enc.set_property_from_str("tune", "zerolatency");
        enc.set_property_from_str("speed-preset", "ultrafast");
        enc.set_property("bitrate", kbps);
        enc.set_property(
            "key-int-max",
            ((segment_seconds * 15.0).round() as u32).max(1),
        );
        let parse = make("h264parse")?;
        parse.set_property("config-interval", -1i32);
        let mux = make("mpegtsmux")?;
        let sink = gst_app::AppSink::builder().sync(false).build();
        sink.set_property("max-buffers", 64u32);
        sink.set_property("drop", true);
        pipeline
            .add_many([
                appsrc.upcast_ref(),
                &decode,
                &convert,
                &scale,
                &caps,
                &mask,
                &queue,
                &enc,
                &parse,
                &mux,
                sink.upcast_ref(),
            ])
            .map_err(|e| e.to_string())?;
        appsrc.link(&decode).map_err(|e| e.to_string())?;
        gst::Element::link_many([&convert, &scale, &caps, &mask, &queue, &enc, &parse, &mux])
            .map_err(|e| e.to_string())?;
        mux.link(&sink).map_err(|e| e.to_string())?;

        // decodebin's video pad to the converter; anything else (audio) stays unlinked.
        let convert_weak = convert.downgrade();
        decode.connect_pad_added(move |_, pad| {
            let is_video = pad
                .current_caps()
                .or_else(|| Some(pad.query_caps(None)))
                .and_then(|c| c.structure(0).map(|s| s.name().starts_with("video/")))
                .unwrap_or(false);
            let Some(convert) = convert_weak.upgrade() else {
                return;
            };
            let sinkpad = convert
                .static_pad("sink")
                .expect("videoconvert has a sink pad");
            if is_video && !sinkpad.is_linked() {
                if let Err(e) = pad.link(&sinkpad) {
                    warn!(error = ?e, "public branch: video pad not linked");
                }
            }
        });

        // The masks, in place, on every frame; a frame that cannot be masked is dropped.
        let srcpad = mask.static_pad("src").expect("identity has a src pad");
        let masks_for_probe = masks.clone();
        type Cached = Option<(
            u32,
            u32,
            Vec<(usize, usize, usize)>,
            Vec<(usize, usize, usize)>,
        )>;
        let cache: Mutex<Cached> = Mutex::new(None);
        srcpad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
            let Some(caps) = pad.current_caps() else {
                return gst::PadProbeReturn::Drop;
            };
            let Ok(vinfo) = gst_video::VideoInfo::from_caps(&caps) else {
                return gst::PadProbeReturn::Drop;
            };
            let Some(gst::PadProbeData::Buffer(buffer)) = info.data.as_mut() else {
                return gst::PadProbeReturn::Ok;
            };
            let (w, h) = (vinfo.width(), vinfo.height());
            let mut cached = cache.lock();
            if cached.as_ref().is_none_or(|c| (c.0, c.1) != (w, h)) {
                let (cw, ch) = (w.div_ceil(2) as usize, h.div_ceil(2) as usize);
                *cached = Some((
                    w,
                    h,
                    spans(w as usize, h as usize, &masks_for_probe),
                    spans(cw, ch, &masks_for_probe),
                ));
            }
            let (_, _, luma, chroma) = cached.as_ref().expect("just set");
            let buf = buffer.make_mut();
            let Ok(mut frame) = gst_video::VideoFrameRef::from_buffer_ref_writable(buf, &vinfo)
            else {
                return gst::PadProbeReturn::Drop;
            };
            for plane in 0..3u32 {
                let stride = frame.plane_stride()[plane as usize] as usize;
                let runs = if plane == 0 { luma } else { chroma };
                let Ok(data) = frame.plane_data_mut(plane) else {
                    return gst::PadProbeReturn::Drop;
                };
                for &(y, x0, x1) in runs {
                    let (a, b) = (y * stride + x0, y * stride + x1);
                    if b <= data.len() {
                        data[a..b].fill(FILL[plane as usize]);
                    }
                }
            }
            gst::PadProbeReturn::Ok
        });

        // Encoded MPEG-TS out, cut into the public folder.
        let cutter = Mutex::new(Cutter::new(segment_seconds));
        sink.set_callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |s| {
                    let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    let Some(buffer) = sample.buffer() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let Ok(map) = buffer.map_readable() else {
                        return Ok(gst::FlowSuccess::Ok);
                    };
                    let segments = cutter.lock().push(&map);
                    if !segments.is_empty() {
                        let mut f = folder.lock();
                        for seg in segments {
                            on_segment(&mut f, seg);
                        }
                    }
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        );
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| format!("public pipeline does not start: {e}"))?;
        Ok(PublicBranch {
            pipeline,
            appsrc,
            masks,
        })
    }

    /// Hands it bytes of the station's stream (never blocks: beyond the queue they are
    /// dropped). An error when the pipeline failed.
    pub fn push(&self, bytes: &[u8]) -> Result<(), String> {
        if let Some(bus) = self.pipeline.bus() {
            if let Some(msg) = bus.pop_filtered(&[gst::MessageType::Error]) {
                if let gst::MessageView::Error(e) = msg.view() {
                    return Err(e.error().to_string());
                }
            }
        }
        let _ = self
            .appsrc
            .push_buffer(gst::Buffer::from_slice(bytes.to_vec()));
        Ok(())
    }
}

impl Drop for PublicBranch {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}
