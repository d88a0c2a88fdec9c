//! The feed: from the recording pipeline's taps to the current sender, never blocking. Shared
//! across recording-pipeline restarts (one per camera); the supervisor points it at a sender.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::Mutex;
use std::time::Duration;

use gst::prelude::*;

/// The feed drops (and waits for a keyframe) when this much video waits in the sender.
pub(super) const FEED_MAX_QUEUED: Duration = Duration::from_secs(3);
pub(super) const FEED_MAX_BYTES: u64 = 8 * 1024 * 1024;

/// One tap's way to the sender.
#[derive(Default)]
pub struct FeedSlot {
    pub(super) src: Mutex<Option<gst_app::AppSrc>>,
    pub(super) need_key: AtomicBool,
    pub(super) pushed: AtomicU64,
    pub(super) dropped: AtomicU64,
}

impl FeedSlot {
    pub(super) fn attach(&self, src: Option<gst_app::AppSrc>) {
        self.need_key.store(true, Ordering::Relaxed);
        *self.src.lock() = src;
    }

    /// Called on the tap's streaming thread. Never blocks: a full sender means a drop.
    pub(super) fn push(&self, sample: &gst::Sample) {
        let Some(src) = self.src.lock().clone() else {
            return;
        };
        let Some(buf) = sample.buffer() else {
            return;
        };
        let key = !buf.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let size = buf.size() as u64;
        if self.need_key.load(Ordering::Relaxed) && !key {
            self.dropped.fetch_add(size, Ordering::Relaxed);
            return;
        }
        let queued_time = src.current_level_time().nseconds();
        if queued_time > FEED_MAX_QUEUED.as_nanos() as u64
            || src.current_level_bytes() > FEED_MAX_BYTES
        {
            // The sender cannot keep up: drop, and restart at a keyframe.
            self.need_key.store(true, Ordering::Relaxed);
            self.dropped.fetch_add(size, Ordering::Relaxed);
            return;
        }
        self.need_key.store(false, Ordering::Relaxed);
        if src.push_sample(sample).is_ok() {
            self.pushed.fetch_add(size, Ordering::Relaxed);
        }
    }
}

/// Which of a camera's taps feeds the sender: the recorded stream, or the sub-stream encoder
/// (sources the agent encodes).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tap {
    Main,
    Sub,
}

/// What the recording pipeline's live taps feed, shared across pipeline restarts.
#[derive(Default)]
pub struct LiveFeed {
    pub(super) main: FeedSlot,
    pub(super) sub: FeedSlot,
    /// The valve in front of the sub-stream encoder of the current recording pipeline.
    pub(super) sub_valve: Mutex<Option<gst::glib::WeakRef<gst::Element>>>,
    pub(super) sub_open: AtomicBool,
    /// Bumped each time a recording pipeline is built: its timestamps start again, so a
    /// sender fed from the previous one is rebuilt.
    pub(super) generation: AtomicU64,
}

impl LiveFeed {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Points the feed at a sender's `appsrc` through `tap`, detaching the other tap; the sub
    /// encoder runs only while its tap is the one connected.
    pub(super) fn connect(&self, tap: Tap, src: gst_app::AppSrc) {
        match tap {
            Tap::Sub => {
                self.main.attach(None);
                self.sub.attach(Some(src));
                self.set_sub_open(true);
            }
            Tap::Main => {
                self.sub.attach(None);
                self.set_sub_open(false);
                self.main.attach(Some(src));
            }
        }
    }

    /// Whether a sender is attached to the main tap (the RTSP pass-through builds samples only
    /// then).
    pub fn main_attached(&self) -> bool {
        self.main.src.lock().is_some()
    }

    /// Pushes a frame of the recorded stream to the sender on the main tap, if any; never
    /// blocks (`camera/rtsp.rs`, which has no tee).
    pub fn push_main(&self, sample: &gst::Sample) {
        self.main.push(sample);
    }

    /// A new recording source started: its timestamps start again, so a sender fed from the
    /// previous one is rebuilt.
    pub fn new_generation(&self) {
        self.generation.fetch_add(1, Ordering::Relaxed);
    }

    /// Detaches both taps from any sender and closes the sub encoder.
    pub(super) fn disconnect(&self) {
        self.main.attach(None);
        self.sub.attach(None);
        self.set_sub_open(false);
    }

    /// Opens or closes the sub-stream encoder (sources the agent encodes).
    fn set_sub_open(&self, open: bool) {
        self.sub_open.store(open, Ordering::Relaxed);
        if let Some(v) = self.sub_valve.lock().as_ref().and_then(|w| w.upgrade()) {
            v.set_property("drop", !open);
        }
    }
}
