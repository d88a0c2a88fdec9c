//! What state a station is in, and why: pure functions of what it reported, when that arrived,
//! and the configured thresholds. Each reason becomes an alert while it holds.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use stationwatch_protocol::mqtt::{
    CameraState, Health, OfflineReason, Status, StatusState, ViewDecisionState, ViewProblemKind,
};
use stationwatch_protocol::CameraId;

use crate::config::RulesConfig;

/// A station at a glance.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StationState {
    /// Gone: its last will arrived, it said goodbye, or it stopped reporting. Sorted first.
    Offline,
    /// Connected, but something needs a technician.
    Degraded,
    /// Never heard from (known only from the database or a grant).
    Unknown,
    /// Connected, every camera recording, nothing to report.
    Online,
}

impl StationState {
    pub const ALL: [StationState; 4] = [
        StationState::Offline,
        StationState::Degraded,
        StationState::Unknown,
        StationState::Online,
    ];

    pub fn name(self) -> &'static str {
        match self {
            StationState::Offline => "offline",
            StationState::Degraded => "degraded",
            StationState::Unknown => "unknown",
            StationState::Online => "online",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|x| x.name() == s)
    }
}

/// Why a station is not simply online. `key()` identifies the alert it keeps open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Reason {
    /// `offline`, `camera_not_recording`, `no_segment`, `disk_low`, `clock_unsynced`,
    /// `clock_skew`, `holds_file_error`, `view_dark`, `view_covered`, `view_blurred`,
    /// `view_moved`, `view_frozen`, `view_refused`, `view_replaced`, ...
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub camera: Option<CameraId>,
    /// For people, e.g. "connection lost (last will)", "lost: connection refused".
    pub detail: String,
}

impl Reason {
    fn new(kind: &'static str, camera: Option<&CameraId>, detail: String) -> Self {
        Reason {
            kind,
            camera: camera.cloned(),
            detail,
        }
    }

    /// The alert kind this reason keeps open: `kind` or `kind:camera`.
    pub fn key(&self) -> String {
        match &self.camera {
            Some(c) => format!("{}:{c}", self.kind),
            None => self.kind.to_owned(),
        }
    }
}

/// What the rules see of a station.
pub struct Observed<'a> {
    pub status: Option<&'a Status>,
    pub status_received_at: Option<i64>,
    pub health: Option<&'a Health>,
    pub health_received_at: Option<i64>,
    /// Cameras whose reported manifest head went behind or forked from a witnessed head
    /// (`keys::witness`), with the detail for people. Sticky for the life of the process.
    pub rewritten: &'a BTreeMap<CameraId, String>,
    /// The last report under a key other than the registered one: (its fingerprint, when it
    /// arrived). Such a report is never taken as the station's.
    pub key_mismatch: Option<&'a (Option<String>, i64)>,
    /// Cameras whose footage the archive refused.
    pub archive_refused: &'a BTreeMap<CameraId, ArchiveRefusal>,
    /// The archive's object store failed for the station.
    pub archive_unavailable: Option<&'a ArchiveUnavailable>,
}

/// What the archive refused of one camera. It stays refused until each refused item is archived
/// after all (the right bytes of the segment, an accepted manifest batch), whatever else of the
/// camera is archived meanwhile: one altered segment among good ones is exactly the case to see.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveRefusal {
    /// The latest refusal, for people.
    pub detail: String,
    /// When the latest refusal happened (controller ms).
    pub at: i64,
    /// Segments refused and not archived since.
    pub segments: BTreeSet<u64>,
    /// A manifest batch was refused and no batch of the camera was accepted since.
    pub manifest: bool,
}

impl ArchiveRefusal {
    /// Nothing refused is left open.
    pub fn is_resolved(&self) -> bool {
        self.segments.is_empty() && !self.manifest
    }
}

/// The archive's storage failed for a station.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveUnavailable {
    pub detail: String,
    pub at: i64,
    /// A segment could not be stored: only a stored segment closes it (small manifest writes
    /// still fit on a disk that is full for footage).
    pub segments: bool,
}

/// `archive_refused` and `archive_unavailable` hold this long after their last occurrence,
/// unless a later archived segment (of the camera; of the station) closes them earlier.
pub const ARCHIVE_HOLD_MS: i64 = 24 * 3_600_000;

/// A `key_mismatch` reason holds this long after the last report under a foreign key (a forger
/// interleaving reports with the real station must not make the alert flap).
pub const KEY_MISMATCH_HOLD_MS: i64 = 10 * 60_000;

/// How far the report's `at` lies from when it was received (ms, positive: the station's clock
/// is ahead), when that is more than `rules.max_clock_skew_s`.
pub fn clock_skew_ms(h: &Health, received_at: i64, rules: &RulesConfig) -> Option<i64> {
    let skew = h.at.unix_ms().saturating_sub(received_at);
    (skew.unsigned_abs() > u64::from(rules.max_clock_skew_s) * 1000).then_some(skew)
}

/// The report's time where the controller's clock is meant (history points, latency): its
/// `at` when within `rules.max_clock_skew_s` of `received_at`, otherwise `received_at`.
pub fn bounded_at(h: &Health, received_at: i64, rules: &RulesConfig) -> i64 {
    match clock_skew_ms(h, received_at, rules) {
        Some(_) => received_at,
        None => h.at.unix_ms(),
    }
}

/// The state and every reason, at controller time `now` (ms).
pub fn evaluate(o: &Observed<'_>, now: i64, rules: &RulesConfig) -> (StationState, Vec<Reason>) {
    let (mut state, mut reasons) = evaluate_reports(o, now, rules);
    let before = reasons.len();
    if let Some((fpr, at)) = o.key_mismatch {
        if now - at < KEY_MISMATCH_HOLD_MS {
            reasons.push(Reason::new(
                "key_mismatch",
                None,
                format!(
                    "a report signed under key {} (not the registered key) was refused",
                    fpr.as_deref().unwrap_or("(none)")
                ),
            ));
        }
    }
    for (cam, detail) in o.rewritten {
        reasons.push(Reason::new("manifest_rewritten", Some(cam), detail.clone()));
    }
    for (cam, r) in o.archive_refused {
        if now - r.at < ARCHIVE_HOLD_MS {
            reasons.push(Reason::new("archive_refused", Some(cam), r.detail.clone()));
        }
    }
    if let Some(u) = o.archive_unavailable {
        if now - u.at < ARCHIVE_HOLD_MS {
            reasons.push(Reason::new("archive_unavailable", None, u.detail.clone()));
        }
    }
    if reasons.len() > before && state == StationState::Online {
        state = StationState::Degraded;
    }
    (state, reasons)
}

/// The reason (and alert) kind of a problem with a camera's picture.
pub fn view_reason(kind: ViewProblemKind) -> Option<&'static str> {
    match kind {
        ViewProblemKind::Dark => Some("view_dark"),
        ViewProblemKind::Covered => Some("view_covered"),
        ViewProblemKind::Blurred => Some("view_blurred"),
        ViewProblemKind::Moved => Some("view_moved"),
        ViewProblemKind::Frozen => Some("view_frozen"),
        ViewProblemKind::Unknown => None,
    }
}

/// The state and reasons from what the station reported (trust reasons are added by
/// [`evaluate`]).
fn evaluate_reports(
    o: &Observed<'_>,
    now: i64,
    rules: &RulesConfig,
) -> (StationState, Vec<Reason>) {
    // The newest word on the connection wins: a status newer than the last report, or silence.
    if let Some(s) = o.status {
        let newer_than_health = match (o.status_received_at, o.health_received_at) {
            (Some(s), Some(h)) => s >= h,
            _ => true,
        };
        if s.state == StatusState::Offline && newer_than_health {
            let detail = match s.reason {
                Some(OfflineReason::Shutdown) => "agent stopped (shutdown)",
                Some(OfflineReason::Lost) => "connection lost (last will)",
                _ => "offline",
            };
            return (
                StationState::Offline,
                vec![Reason::new("offline", None, detail.to_owned())],
            );
        }
    }
    let Some(h) = o.health else {
        return match (o.status, o.status_received_at) {
            (Some(s), Some(at)) if s.state == StatusState::Online => {
                let allowed = i64::from(rules.missed_reports) * 15_000;
                if now - at > allowed {
                    let reason = Reason::new(
                        "offline",
                        None,
                        format!("online for {} s without a health report", (now - at) / 1000),
                    );
                    (StationState::Offline, vec![reason])
                } else {
                    (StationState::Online, vec![])
                }
            }
            _ => (StationState::Unknown, vec![]),
        };
    };
    let received = o.health_received_at.unwrap_or(now);
    // Silence is measured on the controller's clock, from the interval the report claims,
    // bounded: a forged `interval_s` of years cannot keep a silent station online.
    let interval = h.interval_s.clamp(1, rules.max_interval_s.max(1));
    let allowed = i64::from(rules.missed_reports) * i64::from(interval) * 1000;
    if now - received > allowed {
        let reason = Reason::new(
            "offline",
            None,
            format!("no health report for {} s", (now - received) / 1000),
        );
        return (StationState::Offline, vec![reason]);
    }
    let mut reasons = Vec::new();
    for (id, cam) in &h.cameras {
        if cam.state != CameraState::Recording {
            let state = serde_json::to_value(cam.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_else(|| "unknown".into());
            let detail = match &cam.detail {
                Some(d) if !d.is_empty() => format!("{state}: {d}"),
                _ => state,
            };
            reasons.push(Reason::new("camera_not_recording", Some(id), detail));
            continue;
        }
        // Both times are the agent's clock, so skew between agent and controller cannot matter.
        if let Some(seg) = h.segment_s {
            let limit = (f64::from(seg) * rules.segment_factor * 1000.0) as i64;
            let since = match cam.last_segment_end {
                Some(end) => Some(h.at.ms_since(end)),
                None if h.agent.uptime_s as i64 * 1000 > limit => {
                    Some(h.agent.uptime_s as i64 * 1000)
                }
                None => None,
            };
            if let Some(ms) = since.filter(|ms| *ms > limit) {
                reasons.push(Reason::new(
                    "no_segment",
                    Some(id),
                    format!(
                        "no segment finished for {} s (segments are {seg} s)",
                        ms / 1000
                    ),
                ));
            }
        }
        // The view's approval: refused (what the camera shows must not be shown, e.g. a
        // voting booth), or voided because the camera was replaced; both need a technician.
        if let Some(d) = cam.view.as_ref().and_then(|v| v.decision.as_ref()) {
            let kind = match d.state {
                ViewDecisionState::Refused => Some("view_refused"),
                ViewDecisionState::Replaced => Some("view_replaced"),
                _ => None,
            };
            if let Some(kind) = kind {
                reasons.push(Reason::new(
                    kind,
                    Some(id),
                    format!(
                        "{} by {} at {}: {}",
                        kind.trim_start_matches("view_"),
                        d.by,
                        d.at,
                        d.reason
                    ),
                ));
            }
        }
        // The picture: taped over, black, turned away, out of focus, frozen (issue 16).
        for p in cam.view.iter().flat_map(|v| &v.problems) {
            if let Some(kind) = view_reason(p.kind) {
                reasons.push(Reason::new(
                    kind,
                    Some(id),
                    format!("{} since {}: {}", p.kind, p.since, p.detail),
                ));
            }
        }
    }
    if let Some(d) = &h.disk {
        match d.hours_left {
            Some(left) if left < rules.min_disk_hours => reasons.push(Reason::new(
                "disk_low",
                None,
                format!(
                    "{left:.1} h of recording left (threshold {} h)",
                    rules.min_disk_hours
                ),
            )),
            _ if d.low => reasons.push(Reason::new(
                "disk_low",
                None,
                "the agent reports its disk low".into(),
            )),
            _ => {}
        }
    }
    if let Some(c) = &h.clock {
        if !c.synced {
            reasons.push(Reason::new(
                "clock_unsynced",
                None,
                "the station's clock is not synchronised".into(),
            ));
        }
    }
    if let Some(skew_ms) = clock_skew_ms(h, received, rules) {
        let dir = if skew_ms > 0 { "ahead of" } else { "behind" };
        reasons.push(Reason::new(
            "clock_skew",
            None,
            format!(
                "the station's clock is {} s {dir} the controller's (report dated {})",
                skew_ms.unsigned_abs() / 1000,
                h.at
            ),
        ));
    }
    // Holds fail closed on the station: nothing is deleted by policy until a person fixes the
    // holds file, so the disk fills up. An operator must send a technician.
    if let Some(e) = &h.holds_file_error {
        reasons.push(Reason::new(
            "holds_file_error",
            None,
            format!("legal holds file unreadable, deletion stopped: {e}"),
        ));
    }
    let state = if reasons.is_empty() {
        StationState::Online
    } else {
        StationState::Degraded
    };
    (state, reasons)
}

#[cfg(test)]
mod tests {
    use stationwatch_protocol::manifest::Timestamp;
    use stationwatch_protocol::mqtt::{CameraHealth, ClockHealth, DiskHealth};
    use stationwatch_protocol::CameraId;

    use super::*;

    const NOW: i64 = 1_780_000_000_000;

    fn ts(ms: i64) -> Timestamp {
        Timestamp::from_unix_ms(ms).unwrap()
    }

    fn healthy() -> Health {
        let mut h = Health::new(ts(NOW - 1000));
        h.segment_s = Some(60);
        h.agent.uptime_s = 3600;
        for c in ["desk", "box"] {
            h.cameras.insert(
                CameraId::new(c).unwrap(),
                CameraHealth {
                    state: CameraState::Recording,
                    last_segment_end: Some(ts(NOW - 30_000)),
                    ..Default::default()
                },
            );
        }
        h.disk = Some(DiskHealth {
            free_bytes: 100 << 30,
            total_bytes: 200 << 30,
            hours_left: Some(90.0),
            low: false,
        });
        h.clock = Some(ClockHealth {
            synced: true,
            ..Default::default()
        });
        h
    }

    fn eval(
        status: Option<&Status>,
        s_at: Option<i64>,
        h: Option<&Health>,
        h_at: Option<i64>,
    ) -> (StationState, Vec<String>) {
        let none = BTreeMap::new();
        let o = Observed {
            status,
            status_received_at: s_at,
            health: h,
            health_received_at: h_at,
            rewritten: &none,
            key_mismatch: None,
            archive_refused: &BTreeMap::new(),
            archive_unavailable: None,
        };
        let (state, reasons) = evaluate(&o, NOW, &RulesConfig::default());
        (state, reasons.iter().map(Reason::key).collect())
    }

    #[test]
    fn healthy_station_is_online() {
        let h = healthy();
        let online = Status::online(ts(NOW - 60_000), "0.1.0");
        assert_eq!(
            eval(Some(&online), Some(NOW - 60_000), Some(&h), Some(NOW - 900)),
            (StationState::Online, vec![])
        );
    }

    #[test]
    fn last_will_or_shutdown_after_the_last_report_is_offline() {
        let h = healthy();
        let (state, keys) = eval(
            Some(&Status::lost()),
            Some(NOW - 10),
            Some(&h),
            Some(NOW - 900),
        );
        assert_eq!(
            (state, keys),
            (StationState::Offline, vec!["offline".to_owned()])
        );
        let (state, _) = eval(
            Some(&Status::shutdown(ts(NOW))),
            Some(NOW),
            Some(&h),
            Some(NOW - 900),
        );
        assert_eq!(state, StationState::Offline);
        // A report that arrived after the will means the station is back.
        let (state, _) = eval(
            Some(&Status::lost()),
            Some(NOW - 5000),
            Some(&h),
            Some(NOW - 900),
        );
        assert_eq!(state, StationState::Online);
    }

    #[test]
    fn silence_for_three_intervals_is_offline() {
        let h = healthy();
        assert_eq!(
            eval(None, None, Some(&h), Some(NOW - 44_000)).0,
            StationState::Online
        );
        let (state, keys) = eval(None, None, Some(&h), Some(NOW - 46_000));
        assert_eq!(
            (state, keys),
            (StationState::Offline, vec!["offline".to_owned()])
        );
    }

    #[test]
    fn each_degradation_has_its_reason() {
        let mut h = healthy();
        let desk = CameraId::new("desk").unwrap();
        let boxc = CameraId::new("box").unwrap();
        h.cameras.get_mut(&desk).unwrap().state = CameraState::Lost;
        h.cameras.get_mut(&boxc).unwrap().last_segment_end = Some(ts(NOW - 1000 - 121_000));
        h.disk.as_mut().unwrap().hours_left = Some(5.0);
        h.clock.as_mut().unwrap().synced = false;
        h.holds_file_error = Some("expected value at line 1".into());
        let (state, keys) = eval(None, None, Some(&h), Some(NOW));
        assert_eq!(state, StationState::Degraded);
        assert_eq!(
            keys,
            [
                "no_segment:box",
                "camera_not_recording:desk",
                "disk_low",
                "clock_unsynced",
                "holds_file_error"
            ]
        );
    }

    #[test]
    fn each_problem_with_a_picture_is_a_reason_of_its_camera() {
        use stationwatch_protocol::mqtt::{ViewHealth, ViewProblem};
        let mut h = healthy();
        let desk = CameraId::new("desk").unwrap();
        let problem = |kind| ViewProblem {
            kind,
            since: ts(NOW - 30_000),
            detail: "measured".into(),
        };
        h.cameras.get_mut(&desk).unwrap().view = Some(ViewHealth {
            approved: true,
            problems: vec![
                problem(ViewProblemKind::Covered),
                problem(ViewProblemKind::Unknown),
            ],
            analysed_at: Some(ts(NOW - 1000)),
            decision: None,
            masks: 0,
            masks_digest: String::new(),
        });
        let (state, keys) = eval(None, None, Some(&h), Some(NOW));
        assert_eq!(state, StationState::Degraded);
        // A kind from a newer agent is not an alert this version could explain.
        assert_eq!(keys, ["view_covered:desk"]);
        // A refused view, and an approval voided by a replaced camera, are reasons too.
        for (state, key) in [
            (ViewDecisionState::Refused, "view_refused:desk"),
            (ViewDecisionState::Replaced, "view_replaced:desk"),
        ] {
            let mut h = h.clone();
            h.cameras
                .get_mut(&desk)
                .unwrap()
                .view
                .as_mut()
                .unwrap()
                .decision = Some(stationwatch_protocol::mqtt::ViewDecision {
                state,
                by: "operator".into(),
                at: ts(NOW - 5000),
                reason: "voting booth visible".into(),
            });
            let (_, keys) = eval(None, None, Some(&h), Some(NOW));
            assert!(keys.contains(&key.to_owned()), "{keys:?}");
        }
        // An approved camera with nothing wrong is simply online.
        h.cameras
            .get_mut(&desk)
            .unwrap()
            .view
            .as_mut()
            .unwrap()
            .problems
            .clear();
        assert_eq!(
            eval(None, None, Some(&h), Some(NOW)).0,
            StationState::Online
        );
    }

    #[test]
    fn a_segment_within_twice_its_length_is_fine() {
        let mut h = healthy();
        let boxc = CameraId::new("box").unwrap();
        h.cameras.get_mut(&boxc).unwrap().last_segment_end = Some(ts(NOW - 1000 - 119_000));
        assert_eq!(
            eval(None, None, Some(&h), Some(NOW)).0,
            StationState::Online
        );
    }

    #[test]
    fn trust_reasons_degrade_and_a_key_mismatch_expires() {
        let h = healthy();
        let desk = CameraId::new("desk").unwrap();
        let rewritten = BTreeMap::from([(desk, "cut".to_owned())]);
        let mismatch = (Some("0000:0000:0000:0001".to_owned()), NOW - 1000);
        let check = |rw: &BTreeMap<CameraId, String>, km: Option<&(Option<String>, i64)>, now| {
            let o = Observed {
                status: None,
                status_received_at: None,
                health: Some(&h),
                health_received_at: Some(now),
                rewritten: rw,
                key_mismatch: km,
                archive_refused: &BTreeMap::new(),
                archive_unavailable: None,
            };
            // The report arrives at `now` (10 minutes after it was made, later on): not a
            // clock question here.
            let rules = RulesConfig {
                max_clock_skew_s: 86_400,
                ..RulesConfig::default()
            };
            let (state, reasons) = evaluate(&o, now, &rules);
            (state, reasons.iter().map(Reason::key).collect::<Vec<_>>())
        };
        assert_eq!(
            check(&rewritten, Some(&mismatch), NOW),
            (
                StationState::Degraded,
                vec!["key_mismatch".into(), "manifest_rewritten:desk".into()]
            )
        );
        let none = BTreeMap::new();
        assert_eq!(
            check(&none, Some(&mismatch), NOW + KEY_MISMATCH_HOLD_MS).0,
            StationState::Online
        );
    }

    #[test]
    fn an_absurd_clock_is_flagged_and_a_forged_interval_is_bounded() {
        // Dated 9999, claiming reports every 136 years: flagged, and offline after
        // missed_reports x max_interval_s of silence like any other.
        let mut h = healthy();
        h.at = "9999-12-31T23:59:59.000Z".parse::<Timestamp>().unwrap();
        h.interval_s = u32::MAX;
        // (Its segments then look 8,000 years old too: both times are the agent's.)
        let (state, keys) = eval(None, None, Some(&h), Some(NOW - 1000));
        assert_eq!(state, StationState::Degraded);
        assert!(keys.contains(&"clock_skew".to_owned()), "{keys:?}");
        let rules = RulesConfig::default();
        let limit = i64::from(rules.missed_reports * rules.max_interval_s) * 1000;
        assert_eq!(
            eval(None, None, Some(&h), Some(NOW - limit - 1)).0,
            StationState::Offline
        );
        assert_eq!(bounded_at(&h, NOW, &rules), NOW);
        // A clock behind by more than the skew, too; within it, nothing.
        h.at = ts(NOW - 301_000);
        assert_eq!(eval(None, None, Some(&h), Some(NOW)).1, ["clock_skew"]);
        h.at = ts(NOW - 299_000);
        assert!(eval(None, None, Some(&h), Some(NOW)).1.is_empty());
        assert_eq!(bounded_at(&h, NOW, &rules), NOW - 299_000);
    }

    #[test]
    fn never_heard_from_is_unknown() {
        assert_eq!(eval(None, None, None, None).0, StationState::Unknown);
    }

    #[test]
    fn archive_reasons_degrade_and_expire_after_a_day() {
        let h = healthy();
        let desk = CameraId::new("desk").unwrap();
        let refused = BTreeMap::from([(
            desk,
            ArchiveRefusal {
                detail: "segment 5: sha256 differs".to_owned(),
                at: NOW,
                segments: BTreeSet::from([5]),
                manifest: false,
            },
        )]);
        let unavailable = ArchiveUnavailable {
            detail: "disk full".to_owned(),
            at: NOW,
            segments: true,
        };
        let none = BTreeMap::new();
        let check = |now| {
            // A report taken just before it arrived (no clock skew), at each moment checked.
            let mut fresh = h.clone();
            fresh.at = ts(now - 1000);
            for c in fresh.cameras.values_mut() {
                c.last_segment_end = Some(ts(now - 30_000));
            }
            let o = Observed {
                status: None,
                status_received_at: None,
                health: Some(&fresh),
                health_received_at: Some(now),
                rewritten: &none,
                key_mismatch: None,
                archive_refused: &refused,
                archive_unavailable: Some(&unavailable),
            };
            let (state, reasons) = evaluate(&o, now, &RulesConfig::default());
            (state, reasons.iter().map(Reason::key).collect::<Vec<_>>())
        };
        assert_eq!(
            check(NOW),
            (
                StationState::Degraded,
                vec![
                    "archive_refused:desk".to_owned(),
                    "archive_unavailable".to_owned()
                ]
            )
        );
        assert_eq!(check(NOW + ARCHIVE_HOLD_MS), (StationState::Online, vec![]));
    }
}
