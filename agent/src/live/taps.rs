//! The live taps in the recording pipeline: leaky queues ending in `appsink drop=true`, which
//! hand each access unit to the [`LiveFeed`]; and, for sources the agent encodes, the sub-stream
//! encoder branch behind a valve.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use gst::prelude::*;

use crate::config::CameraConfig;
use crate::elements::PipelineError;
use crate::live::feed::LiveFeed;

/// Element names in the recording pipeline.
pub const MAIN_TAP: &str = "live-main-tap";
pub const SUB_TAP: &str = "live-sub-tap";
pub const SUB_VALVE: &str = "live-sub-valve";

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
        *feed.sub_valve.lock() = Some(valve.downgrade());
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
