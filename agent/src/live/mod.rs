//! The live branch of a camera: what is streamed to the configured SRT or RTMP target, kept
//! apart from the recording so that nothing on the network side can stop, block, error or gap
//! it (`docs/live.md`).
//!
//! ```text
//! recording pipeline (camera/pipeline.rs)        live sender pipeline (sender.rs, own thread)
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

pub mod feed;
pub mod overrides;
pub mod sender;
pub mod status;
pub mod supervisor;
pub mod taps;
pub mod uplink;

pub use feed::LiveFeed;
pub use sender::required_elements;
pub use status::LiveStatus;
pub use supervisor::LiveContext;
pub use taps::{add_taps, sub_encode_branch};

use std::sync::mpsc;
use std::time::{Duration, Instant};

use stationwatch_protocol::mqtt::{LiveSetting, LiveState};
use stationwatch_protocol::CameraId;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::live::uplink::UplinkEstimate;
use stationwatch_protocol::mqtt::LiveRung;

use crate::live::supervisor::Supervisor;

/// What the MQTT link and health see of a camera's live branch.
pub struct LiveHandle {
    pub camera: CameraId,
    /// The configured mode (a `set_live` `config` command goes back to it).
    pub configured: LiveSetting,
    pub status: watch::Receiver<LiveStatus>,
    /// `Some(mode)`: override; `None`: back to the configured mode.
    pub control: mpsc::Sender<Option<LiveSetting>>,
    /// What the uplink carries and what is spare: uploads (`upload/pace.rs`) send no faster
    /// than `spare_bps` while the camera streams live (`docs/archive.md`).
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

/// Starts the live supervisor of a camera on its own thread.
pub fn spawn(ctx: LiveContext, shutdown: CancellationToken) -> std::io::Result<LiveHandle> {
    let mode = ctx.initial_override.unwrap_or(ctx.live.mode);
    let initial = LiveStatus {
        mode,
        overridden: ctx.initial_override.is_some(),
        rung: LiveRung::Off,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::source::CameraSource;
    use crate::config::{CameraConfig, CameraLiveConfig, EncodeSettings, LiveTarget};

    fn cam(source: &str, target: &str) -> CameraConfig {
        CameraConfig {
            id: CameraId::new("desk").unwrap(),
            source: CameraSource::parse(source).unwrap(),
            encode: EncodeSettings::default(),
            live: Some(CameraLiveConfig {
                mode: LiveSetting::Auto,
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
