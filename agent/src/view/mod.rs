//! Each camera's view, watched all day (`docs/camera-view.md`): one thread per camera
//! (`view-<camera>`) decodes the latest keyframe the recording pipeline already keeps for
//! snapshots (`CameraCounters::keyframe`) to a 160x90 grey picture every `[view] interval_ms`,
//! measures it (`detect.rs`) and reports a problem once it has lasted `persist_seconds`: in the
//! health report, and as a `view_problem` / `view_clear` event.
//!
//! Nothing here can disturb recording or live: the thread only reads a reference to a sample
//! the pipeline keeps anyway, decodes it in its own short-lived pipeline, and when it falls
//! behind it skips to the newest keyframe. A picture that cannot be decoded is skipped (and
//! logged once per problem), never retried in a loop.

pub mod detect;
pub mod stored;

use std::collections::BTreeMap;
use std::sync::mpsc::{Receiver, RecvTimeoutError, Sender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::masks;
use stationwatch_protocol::mqtt::{
    EventKind, ViewDecision, ViewDecisionState, ViewHealth, ViewProblem, ViewProblemKind,
};
use stationwatch_protocol::CameraId;
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::camera::snapshot::grey_from_keyframe;
use crate::config::ViewConfig;
use crate::state::CameraCounters;
use detect::{assess, changed, measure, Grey, Measures, Reference, Thresholds};
use stored::{CameraIdentity, StoredView, ViewStore};

/// The analysed picture's size.
pub const WIDTH: u32 = 320;
pub const HEIGHT: u32 = 180;

/// A problem no longer seen in this many analysed pictures in a row is over.
const CLEAR_AFTER: u32 = 2;

/// What the link can change while the thread runs.
pub enum ViewControl {
    /// What is kept for the camera changed (`set_view`, `set_masks`): read it again.
    Stored,
}

/// The latest analysed picture: its measures and the camera it came from, for an approval of
/// the current view.
#[derive(Debug, Clone)]
pub struct Latest {
    pub measures: Measures,
    pub identity: CameraIdentity,
}

/// A running view watcher.
pub struct ViewHandle {
    pub camera: CameraId,
    pub status: watch::Receiver<ViewHealth>,
    pub control: Sender<ViewControl>,
    pub latest: Arc<parking_lot::Mutex<Option<Latest>>>,
}

/// Where a watcher reads and keeps what is decided about its camera's view.
pub struct ViewSetup {
    pub store: Arc<ViewStore>,
    /// `stored::source_digest` of the camera's configured source.
    pub source: String,
}

/// The health fields that come from what is kept.
fn stored_health(s: &mut ViewHealth, v: &StoredView) {
    s.approved = v.reference.as_ref().and_then(|r| r.reference()).is_some();
    s.decision = v.decision.clone();
    let m = v.valid_masks();
    s.masks = m.len() as u32;
    s.masks_digest = masks::digest(m);
}

/// Starts the watcher of one camera.
pub fn spawn(
    camera: CameraId,
    counters: Arc<CameraCounters>,
    cfg: ViewConfig,
    setup: ViewSetup,
    events: Option<UnboundedSender<EventKind>>,
    shutdown: CancellationToken,
) -> std::io::Result<ViewHandle> {
    let stored = setup.store.get(&camera);
    let mut health = ViewHealth::default();
    stored_health(&mut health, &stored);
    let (status_tx, status) = watch::channel(health);
    let (control, control_rx) = std::sync::mpsc::channel();
    let latest = Arc::new(parking_lot::Mutex::new(None));
    let mut w = Watcher {
        camera: camera.clone(),
        counters,
        tracker: Tracker::new(cfg.persist),
        cfg,
        thresholds: Thresholds::default(),
        reference: stored.reference.as_ref().and_then(|r| r.reference()),
        identity: stored.reference.and_then(|r| r.identity),
        setup,
        previous: None,
        last_pts: None,
        events,
        status: status_tx,
        latest: latest.clone(),
        failing: false,
    };
    std::thread::Builder::new()
        .name(format!("view-{camera}"))
        .spawn(move || w.run(&control_rx, &shutdown))?;
    Ok(ViewHandle {
        camera,
        status,
        control,
        latest,
    })
}

struct Watcher {
    camera: CameraId,
    counters: Arc<CameraCounters>,
    cfg: ViewConfig,
    thresholds: Thresholds,
    tracker: Tracker,
    reference: Option<Reference>,
    /// The camera the reference was taken from.
    identity: Option<CameraIdentity>,
    setup: ViewSetup,
    previous: Option<Grey>,
    last_pts: Option<gst::ClockTime>,
    events: Option<UnboundedSender<EventKind>>,
    status: watch::Sender<ViewHealth>,
    latest: Arc<parking_lot::Mutex<Option<Latest>>>,
    /// Decoding failed last time (logged once until it works again).
    failing: bool,
}

impl Watcher {
    fn run(&mut self, control: &Receiver<ViewControl>, shutdown: &CancellationToken) {
        info!(camera = %self.camera, interval_ms = self.cfg.interval.as_millis() as u64, persist_s = self.cfg.persist.as_secs(), approved = self.reference.is_some(), "view analysis started");
        let mut next = Instant::now() + self.cfg.interval;
        loop {
            let wait = next.saturating_duration_since(Instant::now());
            match control.recv_timeout(wait.min(Duration::from_millis(500))) {
                Ok(ViewControl::Stored) => {
                    self.reload();
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => return,
                Err(RecvTimeoutError::Timeout) => {}
            }
            if shutdown.is_cancelled() {
                return;
            }
            let now = Instant::now();
            if now < next {
                continue;
            }
            // Behind (a slow decode, a busy machine): skip to the newest keyframe.
            next = (next + self.cfg.interval).max(now + self.cfg.interval / 2);
            self.analyse(now);
        }
    }

    /// Reads again what is kept for the camera.
    fn reload(&mut self) {
        let stored = self.setup.store.get(&self.camera);
        let r = stored.reference.as_ref().and_then(|r| r.reference());
        info!(camera = %self.camera, approved = r.is_some(), masks = stored.masks.len(), "camera view changed");
        self.identity = stored.reference.as_ref().and_then(|r| r.identity.clone());
        self.set_reference(r);
        self.status.send_modify(|s| stored_health(s, &stored));
    }

    fn set_reference(&mut self, r: Option<Reference>) {
        self.reference = r;
        // Problems that need a reference start over with (or without) the new one.
        let events = self
            .tracker
            .forget(&self.camera, ViewProblemKind::needs_reference);
        self.emit(events);
        self.publish(None);
    }

    /// The approval was given for another camera (source or picture size changed): it no
    /// longer holds. Kept on disk as the decision `replaced`, so the controller and the
    /// technician see that the view needs approving again.
    fn void_approval(&mut self, change: String) {
        warn!(camera = %self.camera, change = %change, "camera replaced: its approved view no longer holds");
        let decision = ViewDecision {
            state: ViewDecisionState::Replaced,
            by: "agent".into(),
            at: Timestamp::now(),
            reason: change,
        };
        match self.setup.store.update(&self.camera, |v| {
            v.reference = None;
            v.decision = Some(decision);
        }) {
            Ok(stored) => {
                self.identity = None;
                self.set_reference(None);
                self.status.send_modify(|s| stored_health(s, &stored));
            }
            Err(e) => {
                // Not kept: still not judged against a reference of another camera.
                error!(camera = %self.camera, error = %e, "cannot store the voided approval");
                self.identity = None;
                self.set_reference(None);
            }
        }
    }

    fn analyse(&mut self, now: Instant) {
        let Some(keyframe) = self.counters.keyframe() else {
            return;
        };
        // The same keyframe as last time: no new picture (a stalled camera is the
        // supervisor's business, not a frozen picture).
        let pts = keyframe.buffer().and_then(|b| b.pts());
        if pts.is_some() && pts == self.last_pts {
            return;
        }
        self.last_pts = pts;
        let identity = keyframe.caps().and_then(|c| {
            let st = c.structure(0)?;
            Some(CameraIdentity {
                source: self.setup.source.clone(),
                width: u32::try_from(st.get::<i32>("width").ok()?).ok()?,
                height: u32::try_from(st.get::<i32>("height").ok()?).ok()?,
            })
        });
        if let (Some(now_id), Some(approved_id)) = (&identity, &self.identity) {
            if let Some(change) = now_id.change_from(approved_id) {
                self.void_approval(change);
            }
        }
        let grey = match grey_from_keyframe(Some(keyframe), WIDTH, HEIGHT, Duration::from_secs(3)) {
            Ok(g) => Grey::new(g.width as usize, g.height as usize, g.pixels),
            Err(e) => {
                if !self.failing {
                    warn!(camera = %self.camera, error = %e, "view analysis: cannot decode the keyframe; skipped");
                }
                self.failing = true;
                return;
            }
        };
        let Some(grey) = grey else {
            return;
        };
        self.failing = false;
        let m = measure(&grey, &self.thresholds);
        let frozen = self.previous.as_ref().and_then(|p| changed(&grey, p));
        let found = assess(&m, frozen, self.reference.as_ref(), &self.thresholds);
        tracing::debug!(camera = %self.camera, mean = m.mean, dark = m.dark_share, flat = m.flat_share, spread = m.spread, sharpness = detect::blur_ratio(&m.sharpness, self.reference.as_ref().map_or(&m.sharpness, |r| &r.sharpness)), changed = frozen, problems = found.len(), "view picture analysed");
        if let Some(identity) = identity {
            *self.latest.lock() = Some(Latest {
                measures: m,
                identity,
            });
        }
        self.previous = Some(grey);
        let events = self
            .tracker
            .update(&self.camera, now, Timestamp::now(), found);
        self.emit(events);
        self.publish(Some(Timestamp::now()));
    }

    fn emit(&self, events: Vec<EventKind>) {
        for e in events {
            match &e {
                EventKind::ViewProblem {
                    problem, detail, ..
                } => {
                    warn!(camera = %self.camera, problem = %problem, detail = %detail, "view problem")
                }
                EventKind::ViewClear { problem, .. } => {
                    info!(camera = %self.camera, problem = %problem, "view problem cleared")
                }
                _ => {}
            }
            if let Some(tx) = &self.events {
                let _ = tx.send(e);
            }
        }
    }

    fn publish(&self, analysed_at: Option<Timestamp>) {
        let problems = self.tracker.raised();
        self.status.send_modify(|s| {
            s.approved = self.reference.is_some();
            s.problems = problems;
            if analysed_at.is_some() {
                s.analysed_at = analysed_at;
            }
        });
    }
}

/// One problem being followed.
#[derive(Debug)]
struct Track {
    first: Instant,
    since: Timestamp,
    detail: String,
    raised: bool,
    absent: u32,
}

/// Debounces problems: raised after lasting `persist`, cleared after [`CLEAR_AFTER`] pictures
/// without it.
#[derive(Debug)]
struct Tracker {
    persist: Duration,
    tracks: BTreeMap<ViewProblemKind, Track>,
}

impl Tracker {
    fn new(persist: Duration) -> Self {
        Tracker {
            persist,
            tracks: BTreeMap::new(),
        }
    }

    fn update(
        &mut self,
        camera: &CameraId,
        now: Instant,
        wall: Timestamp,
        found: Vec<(ViewProblemKind, String)>,
    ) -> Vec<EventKind> {
        let mut out = Vec::new();
        for (kind, t) in self.tracks.iter_mut() {
            if !found.iter().any(|(k, _)| k == kind) {
                t.absent += 1;
                if t.raised && t.absent >= CLEAR_AFTER {
                    out.push(EventKind::ViewClear {
                        camera: camera.clone(),
                        problem: *kind,
                        since: Some(t.since),
                    });
                }
            }
        }
        // A problem not yet raised must be seen without a break; a raised one needs a few
        // pictures without it to clear (no flapping on one odd picture).
        self.tracks
            .retain(|_, t| t.absent == 0 || (t.raised && t.absent < CLEAR_AFTER));
        for (kind, detail) in found {
            let t = self.tracks.entry(kind).or_insert(Track {
                first: now,
                since: wall,
                detail: String::new(),
                raised: false,
                absent: 0,
            });
            t.detail = detail;
            t.absent = 0;
            if !t.raised && now.duration_since(t.first) >= self.persist {
                t.raised = true;
                out.push(EventKind::ViewProblem {
                    camera: camera.clone(),
                    problem: kind,
                    since: t.since,
                    detail: t.detail.clone(),
                });
            }
        }
        out
    }

    /// Drops the problems `which` selects (cleared if they were raised).
    fn forget(&mut self, camera: &CameraId, which: fn(ViewProblemKind) -> bool) -> Vec<EventKind> {
        let mut out = Vec::new();
        self.tracks.retain(|kind, t| {
            if !which(*kind) {
                return true;
            }
            if t.raised {
                out.push(EventKind::ViewClear {
                    camera: camera.clone(),
                    problem: *kind,
                    since: Some(t.since),
                });
            }
            false
        });
        out
    }

    fn raised(&self) -> Vec<ViewProblem> {
        self.tracks
            .iter()
            .filter(|(_, t)| t.raised)
            .map(|(kind, t)| ViewProblem {
                kind: *kind,
                since: t.since,
                detail: t.detail.clone(),
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> CameraId {
        CameraId::new("desk").unwrap()
    }

    #[test]
    fn a_problem_counts_only_after_lasting_and_clears_after_two_good_pictures() {
        let mut t = Tracker::new(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let dark = || vec![(ViewProblemKind::Dark, "dark".to_owned())];
        let wall = Timestamp::now();
        assert!(t.update(&cam(), at(0), wall, dark()).is_empty());
        assert!(t.update(&cam(), at(8), wall, dark()).is_empty());
        // One good picture in between starts it over.
        assert!(t.update(&cam(), at(9), wall, vec![]).is_empty());
        assert!(t.update(&cam(), at(12), wall, dark()).is_empty());
        assert!(t.update(&cam(), at(20), wall, dark()).is_empty());
        let e = t.update(&cam(), at(22), wall, dark());
        assert!(
            matches!(
                &e[..],
                [EventKind::ViewProblem {
                    problem: ViewProblemKind::Dark,
                    ..
                }]
            ),
            "{e:?}"
        );
        assert_eq!(t.raised().len(), 1);
        // Still dark: nothing new. One good picture: still raised. Two: cleared.
        assert!(t.update(&cam(), at(24), wall, dark()).is_empty());
        assert!(t.update(&cam(), at(26), wall, vec![]).is_empty());
        assert_eq!(t.raised().len(), 1);
        let e = t.update(&cam(), at(28), wall, vec![]);
        assert!(
            matches!(
                &e[..],
                [EventKind::ViewClear {
                    problem: ViewProblemKind::Dark,
                    ..
                }]
            ),
            "{e:?}"
        );
        assert!(t.raised().is_empty());
    }
}
