//! The latest state of every station, in memory: what the API and dashboard read.
//!
//! Every replica keeps the whole fleet here. It is fed by this replica's own MQTT ingest (at
//! once) and by the stations table that other replicas write (see `sync.rs`), so the database
//! stays the source of truth and any replica can serve any request.

pub mod alerts;
pub mod rules;
pub mod sync;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use serde::Serialize;
use stationwatch_protocol::manifest::{Hash256, Timestamp};
use stationwatch_protocol::mqtt::{Health, Status, UploadHealth};
use stationwatch_protocol::{CameraId, StationId};

use self::rules::{evaluate, ArchiveRefusal, ArchiveUnavailable, Observed, Reason, StationState};
use crate::config::RulesConfig;
use crate::store::HeadRow;

/// One station as the controller knows it.
#[derive(Debug, Clone)]
pub struct Station {
    pub id: StationId,
    pub status: Option<Status>,
    pub status_received_at: Option<i64>,
    pub health: Option<Arc<Health>>,
    pub health_received_at: Option<i64>,
    pub state: StationState,
    pub reasons: Vec<Reason>,
    /// When `state` last changed (controller clock, ms).
    pub state_since: i64,
    /// The highest witnessed manifest head per camera (stored in `witnessed_heads`; loaded at
    /// start, raised by this replica's reports and by what other replicas stored).
    pub witnessed: BTreeMap<CameraId, WitnessedMax>,
    /// Cameras whose reported head went behind or forked from the witnessed one (sticky).
    pub rewritten: BTreeMap<CameraId, String>,
    /// Fingerprint of the key registered for the station now, if any.
    pub registered_key: Option<String>,
    /// The last refused report under another key: (its fingerprint, controller receive time).
    pub key_mismatch: Option<(Option<String>, i64)>,
    /// Cameras whose footage the archive refused. Open for [`rules::ARCHIVE_HOLD_MS`] after
    /// the last refusal, or until every refused item is archived after all.
    pub archive_refused: BTreeMap<CameraId, ArchiveRefusal>,
    /// The archive's object store failed for this station. Open until a later write of the
    /// same kind succeeds (or [`rules::ARCHIVE_HOLD_MS`] without failure).
    pub archive_unavailable: Option<ArchiveUnavailable>,
    /// Id and name in lower case, for searches (kept so a search does not lower-case every
    /// station's names on every request).
    search_key: String,
}

impl Station {
    fn new(id: StationId, now: i64) -> Self {
        Station {
            status: None,
            status_received_at: None,
            health: None,
            health_received_at: None,
            state: StationState::Unknown,
            reasons: Vec::new(),
            state_since: now,
            witnessed: BTreeMap::new(),
            rewritten: BTreeMap::new(),
            registered_key: None,
            key_mismatch: None,
            archive_refused: BTreeMap::new(),
            archive_unavailable: None,
            search_key: id.as_str().to_lowercase(),
            id,
        }
    }

    pub fn name(&self) -> Option<&str> {
        self.health.as_ref()?.agent.station_name.as_deref()
    }

    pub fn region(&self) -> Option<&str> {
        self.health.as_ref()?.agent.region.as_deref()
    }

    /// `registered`, `unregistered` or `mismatch` (a report under another key was refused in
    /// the last [`rules::KEY_MISMATCH_HOLD_MS`]; shown while the `key_mismatch` reason holds).
    pub fn key_status(&self) -> &'static str {
        if self.reasons.iter().any(|r| r.kind == "key_mismatch") {
            "mismatch"
        } else if self.registered_key.is_some() {
            "registered"
        } else {
            "unregistered"
        }
    }

    /// The row of the stations list.
    pub fn summary(&self) -> StationSummary {
        let (recording, cameras) = self.health.as_ref().map_or((0, 0), |h| {
            let rec = h
                .cameras
                .values()
                .filter(|c| c.state == stationwatch_protocol::mqtt::CameraState::Recording)
                .count();
            (rec, h.cameras.len())
        });
        StationSummary {
            id: self.id.clone(),
            name: self.name().map(str::to_owned),
            region: self.region().map(str::to_owned),
            state: self.state,
            state_since: self.state_since,
            reasons: self.reasons.clone(),
            cameras,
            cameras_recording: recording,
            hours_left: self
                .health
                .as_ref()
                .and_then(|h| h.disk.as_ref()?.hours_left),
            last_report_at: self.health_received_at,
            key_status: self.key_status(),
            key_fingerprint: self.registered_key.clone(),
            upload_backlog_bytes: self.upload().map(|u| u.backlog_bytes),
            upload_rate_bps: self.upload().map(|u| u.rate_bps),
            upload_eta_s: self.upload().and_then(upload_eta_s),
            unarchived_bytes: self.upload().map(|u| u.unarchived_bytes),
        }
    }

    /// The upload section of the last health report.
    pub fn upload(&self) -> Option<&UploadHealth> {
        self.health.as_ref()?.upload.as_ref()
    }
}

/// Seconds until the backlog is uploaded at the current rate (`None`: no rate, nothing left).
pub fn upload_eta_s(u: &UploadHealth) -> Option<u64> {
    if u.backlog_bytes == 0 {
        return Some(0);
    }
    (u.rate_bps > 0).then(|| u.backlog_bytes.saturating_mul(8).div_ceil(u.rate_bps))
}

/// Upload figures summed over stations.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct UploadTotals {
    /// Footage on stations' disks not known to be archived ("only on stations").
    pub unarchived_bytes: u64,
    /// Bytes stations still have to upload.
    pub upload_backlog_bytes: u64,
    /// Sum of the stations' current upload rates.
    pub upload_rate_bps: u64,
}

/// The highest witnessed head of a camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WitnessedMax {
    pub next_seq: u64,
    pub prev: Hash256,
    /// When the controller received it (ms).
    pub received_at: i64,
}

/// What became of a health report.
#[derive(Debug, Default)]
pub struct HealthOutcome {
    /// Alerts to open and close.
    pub transition: Option<Transition>,
    /// Heads that changed: to store in `witnessed_heads`.
    pub heads: Vec<HeadRow>,
    /// The report was under another key than the registered one: refused, not to be stored as
    /// the station's state.
    pub refused: bool,
}

/// A station in lists and live updates.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct StationSummary {
    pub id: StationId,
    pub name: Option<String>,
    pub region: Option<String>,
    pub state: StationState,
    pub state_since: i64,
    pub reasons: Vec<Reason>,
    pub cameras: usize,
    pub cameras_recording: usize,
    pub hours_left: Option<f64>,
    pub last_report_at: Option<i64>,
    /// `registered`, `unregistered` or `mismatch`.
    pub key_status: &'static str,
    /// Fingerprint of the registered key in force.
    pub key_fingerprint: Option<String>,
    /// From the last health report's `upload` section (absent: the station does not upload).
    pub upload_backlog_bytes: Option<u64>,
    pub upload_rate_bps: Option<u64>,
    /// backlog × 8 / rate, seconds (absent with no rate).
    pub upload_eta_s: Option<u64>,
    pub unarchived_bytes: Option<u64>,
}

/// Reasons that appeared and disappeared at one station: alerts to open and close.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    pub station: StationId,
    pub at: i64,
    pub opened: Vec<Reason>,
    pub closed: Vec<Reason>,
}

/// Which stations a list shows.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub state: Option<StationState>,
    /// Case-insensitive substring of the id or name.
    pub search: Option<String>,
    pub region: Option<String>,
    pub offset: usize,
    pub limit: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct ListPage {
    /// Matching stations before paging.
    pub total: usize,
    pub stations: Vec<StationSummary>,
}

/// Counts by state.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct Counts {
    pub total: usize,
    pub online: usize,
    pub degraded: usize,
    pub offline: usize,
    pub unknown: usize,
}

#[derive(Default)]
struct Inner {
    stations: HashMap<StationId, Station>,
    /// Changed since the last `take_dirty`.
    dirty: HashSet<StationId>,
}

/// The fleet; cheap to clone.
#[derive(Clone)]
pub struct Fleet {
    inner: Arc<RwLock<Inner>>,
    rules: Arc<RulesConfig>,
}

impl Fleet {
    /// The thresholds the rules apply.
    pub fn rules(&self) -> &RulesConfig {
        &self.rules
    }

    pub fn new(rules: RulesConfig) -> Self {
        Fleet {
            inner: Arc::default(),
            rules: Arc::new(rules),
        }
    }

    fn write(&self) -> RwLockWriteGuard<'_, Inner> {
        self.inner.write()
    }

    fn read(&self) -> RwLockReadGuard<'_, Inner> {
        self.inner.read()
    }

    /// Applies a status; an older one than what is known is ignored. Returns the alert changes.
    pub fn apply_status(
        &self,
        id: &StationId,
        status: Status,
        received_at: i64,
        now: i64,
    ) -> Option<Transition> {
        self.update(id, now, |s| {
            if s.status_received_at.is_some_and(|t| t > received_at) {
                return None;
            }
            s.status = Some(status);
            s.status_received_at = Some(received_at);
            Some(reevaluate(s, now, &self.rules))
        })
    }

    /// Applies a health report unless a newer one (by the agent's `at`) is known. A report
    /// under a key other than the station's registered one is refused (the station keeps the
    /// state of its last matching report) and raises `key_mismatch`. Heads of an accepted report
    /// are checked against the witnessed ones: a head behind or forked raises
    /// `manifest_rewritten`; a new head is returned to be stored.
    pub fn apply_health(
        &self,
        id: &StationId,
        health: Arc<Health>,
        received_at: i64,
        now: i64,
    ) -> HealthOutcome {
        let mut out = HealthOutcome::default();
        out.transition = self.update(id, now, |s| {
            // Whatever its time: a forger cannot hide behind an old `at`.
            let reported = health.agent.key_fingerprint.map(|f| f.to_string());
            if let Some(registered) = &s.registered_key {
                if reported.as_ref() != Some(registered) {
                    s.key_mismatch = Some((reported, received_at));
                    out.refused = true;
                    return Some(reevaluate(s, now, &self.rules));
                }
            }
            // The latest *received* report is the station's word (per station, on the
            // controllers' clocks): the agent's `at` is not trusted for ordering, so a report
            // dated 9999 cannot hide every later one.
            if s.health_received_at.is_some_and(|r| r >= received_at) {
                return None;
            }
            out.heads = witness(s, &health, received_at, reported);
            Some(self.take_health(s, health, received_at, now))
        });
        out
    }

    /// A head stored (by any replica): raises the witnessed maximum of its camera.
    pub fn head_stored(&self, h: &HeadRow, now: i64) {
        let mut g = self.write();
        let s = g
            .stations
            .entry(h.station.clone())
            .or_insert_with(|| Station::new(h.station.clone(), now));
        let w = s.witnessed.entry(h.camera.clone()).or_insert(WitnessedMax {
            next_seq: 0,
            prev: h.prev,
            received_at: h.received_at,
        });
        if h.next_seq > w.next_seq || w.next_seq == 0 {
            *w = WitnessedMax {
                next_seq: h.next_seq,
                prev: h.prev,
                received_at: h.received_at,
            };
        }
    }

    /// The station's registered key in force changed (or was loaded). The rules are applied at
    /// the next tick (within a second), which opens and closes the alerts.
    /// Takes the registered keys in force from key registry rows (at start, and what other
    /// replicas registered since the last poll).
    pub fn apply_key_rows(&self, rows: Vec<crate::store::KeyRow>, now: i64) {
        for r in rows.into_iter().filter(|r| r.retired_at.is_none()) {
            self.set_registered_key(&r.station, Some(r.fingerprint), now);
        }
    }

    pub fn set_registered_key(&self, id: &StationId, fingerprint: Option<String>, now: i64) {
        self.update(id, now, |s| {
            if s.registered_key != fingerprint {
                s.registered_key = fingerprint;
                s.key_mismatch = None;
            }
            Some(None)
        });
    }

    /// The archive refused footage of a camera (`archive_refused`, opened at the next tick):
    /// segment `seq`, or a manifest batch when `seq` is `None`.
    pub fn archive_refused(
        &self,
        id: &StationId,
        camera: &CameraId,
        seq: Option<u64>,
        detail: String,
        now: i64,
    ) {
        self.update(id, now, |s| {
            let r = s.archive_refused.entry(camera.clone()).or_default();
            r.detail = detail;
            r.at = now;
            match seq {
                Some(seq) => {
                    r.segments.insert(seq);
                }
                None => r.manifest = true,
            }
            Some(None)
        });
    }

    /// The archive's object store failed for the station (`archive_unavailable`) storing a
    /// segment (`segment`) or manifest lines.
    pub fn archive_unavailable(&self, id: &StationId, detail: String, segment: bool, now: i64) {
        self.update(id, now, |s| {
            let segments = segment || s.archive_unavailable.as_ref().is_some_and(|u| u.segments);
            s.archive_unavailable = Some(ArchiveUnavailable {
                detail,
                at: now,
                segments,
            });
            Some(None)
        });
    }

    /// Segment `seq` of the camera was archived: resolves its refusal (if any) and closes
    /// `archive_unavailable` of the station (at the next tick). Other refused segments of the
    /// camera stay open.
    pub fn archive_stored(&self, id: &StationId, camera: &CameraId, seq: u64, now: i64) {
        self.update(id, now, |s| {
            let mut changed = s.archive_unavailable.take().is_some();
            if let Some(r) = s.archive_refused.get_mut(camera) {
                changed |= r.segments.remove(&seq);
                if r.is_resolved() {
                    s.archive_refused.remove(camera);
                }
            }
            changed.then_some(None)
        });
    }

    /// Manifest lines of the camera were stored: resolves a refused manifest batch of the
    /// camera, and closes `archive_unavailable` unless it came from storing a segment.
    pub fn archive_manifest_stored(&self, id: &StationId, camera: &CameraId, now: i64) {
        self.update(id, now, |s| {
            let mut changed = false;
            if s.archive_unavailable.as_ref().is_some_and(|u| !u.segments) {
                s.archive_unavailable = None;
                changed = true;
            }
            if let Some(r) = s.archive_refused.get_mut(camera) {
                changed |= std::mem::take(&mut r.manifest);
                if r.is_resolved() {
                    s.archive_refused.remove(camera);
                }
            }
            changed.then_some(None)
        });
    }

    /// Upload figures summed over the stations `visible` lets through.
    pub fn upload_totals(&self, visible: &dyn Fn(&StationId) -> bool) -> UploadTotals {
        let g = self.read();
        let mut t = UploadTotals::default();
        for u in g
            .stations
            .values()
            .filter(|s| visible(&s.id))
            .filter_map(Station::upload)
        {
            t.unarchived_bytes = t.unarchived_bytes.saturating_add(u.unarchived_bytes);
            t.upload_backlog_bytes = t.upload_backlog_bytes.saturating_add(u.backlog_bytes);
            t.upload_rate_bps = t.upload_rate_bps.saturating_add(u.rate_bps);
        }
        t
    }

    /// Runs `change` on the station (created when new). `change` answers `None` when it
    /// changed nothing, or the alert changes of its re-evaluation; the station is then marked
    /// changed for live dashboards.
    fn update(
        &self,
        id: &StationId,
        now: i64,
        change: impl FnOnce(&mut Station) -> Option<Option<Transition>>,
    ) -> Option<Transition> {
        let mut g = self.write();
        let s = g
            .stations
            .entry(id.clone())
            .or_insert_with(|| Station::new(id.clone(), now));
        let t = change(s)?;
        g.dirty.insert(id.clone());
        t
    }

    fn take_health(
        &self,
        s: &mut Station,
        health: Arc<Health>,
        received_at: i64,
        now: i64,
    ) -> Option<Transition> {
        s.health = Some(health);
        s.health_received_at = Some(received_at);
        s.search_key = match s.name() {
            Some(name) => format!("{}\n{}", s.id, name).to_lowercase(),
            None => s.id.as_str().to_lowercase(),
        };
        reevaluate(s, now, &self.rules)
    }

    /// Whether the fleet already holds this station's status/health as received at these times
    /// (a sync from the database can skip parsing them).
    pub fn has(
        &self,
        id: &StationId,
        status_received_at: Option<i64>,
        health_received_at: Option<i64>,
    ) -> bool {
        let g = self.read();
        g.stations.get(id).is_some_and(|s| {
            s.status_received_at >= status_received_at && s.health_received_at >= health_received_at
        })
    }

    /// Re-applies the time-based rules (silence, stale segments) to every station.
    pub fn tick(&self, now: i64) -> Vec<Transition> {
        let mut g = self.write();
        let Inner { stations, dirty } = &mut *g;
        let mut out = Vec::new();
        for s in stations.values_mut() {
            let before = (s.state, s.reasons.len());
            if let Some(t) = reevaluate(s, now, &self.rules) {
                out.push(t);
            }
            if (s.state, s.reasons.len()) != before {
                dirty.insert(s.id.clone());
            }
        }
        out
    }

    /// Ids changed since the previous call, with their summaries.
    pub fn take_dirty(&self) -> Vec<StationSummary> {
        let mut g = self.write();
        let ids: Vec<StationId> = g.dirty.drain().collect();
        ids.iter()
            .filter_map(|id| g.stations.get(id).map(Station::summary))
            .collect()
    }

    /// Whether the station's latest health report lists `camera` (snapshots are stored only
    /// for cameras the station itself reports).
    pub fn reports_camera(&self, id: &StationId, camera: &stationwatch_protocol::CameraId) -> bool {
        self.read()
            .stations
            .get(id)
            .and_then(|s| s.health.as_ref())
            .is_some_and(|h| h.cameras.contains_key(camera))
    }

    /// Reasons in force over all stations: the alerts that should be open (for `/metrics`
    /// while the database is away).
    pub fn reasons_total(&self) -> usize {
        self.read().stations.values().map(|s| s.reasons.len()).sum()
    }

    /// Stations by state (for `/metrics`).
    pub fn by_state(&self) -> Counts {
        self.counts(&|_| true)
    }

    pub fn get(&self, id: &StationId) -> Option<Station> {
        self.read().stations.get(id).cloned()
    }

    pub fn len(&self) -> usize {
        self.read().stations.len()
    }

    /// Every station known, with its region (for the live gateways' list).
    pub fn ids_and_regions(&self) -> Vec<(StationId, Option<String>)> {
        let g = self.read();
        let mut v: Vec<_> = g
            .stations
            .values()
            .map(|s| (s.id.clone(), s.region().map(str::to_owned)))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts by state among the stations `visible` lets through.
    pub fn counts(&self, visible: &dyn Fn(&StationId) -> bool) -> Counts {
        let g = self.read();
        let mut c = Counts::default();
        for s in g.stations.values().filter(|s| visible(&s.id)) {
            c.total += 1;
            match s.state {
                StationState::Online => c.online += 1,
                StationState::Degraded => c.degraded += 1,
                StationState::Offline => c.offline += 1,
                StationState::Unknown => c.unknown += 1,
            }
        }
        c
    }

    /// Regions and their station counts.
    pub fn regions(&self, visible: &dyn Fn(&StationId) -> bool) -> BTreeMap<String, usize> {
        let g = self.read();
        let mut out = BTreeMap::new();
        for s in g.stations.values().filter(|s| visible(&s.id)) {
            if let Some(r) = s.region() {
                *out.entry(r.to_owned()).or_insert(0) += 1;
            }
        }
        out
    }

    /// Stations needing attention first (offline, then degraded by number of reasons, then
    /// unknown, then online), each group by id.
    pub fn list(&self, q: &ListQuery, visible: &dyn Fn(&StationId) -> bool) -> ListPage {
        let g = self.read();
        let needle = q.search.as_ref().map(|s| s.to_lowercase());
        let mut hits: Vec<&Station> = g
            .stations
            .values()
            .filter(|s| visible(&s.id))
            .filter(|s| q.state.is_none_or(|st| s.state == st))
            .filter(|s| {
                q.region
                    .as_deref()
                    .is_none_or(|r| s.region().is_some_and(|x| x.eq_ignore_ascii_case(r)))
            })
            .filter(|s| needle.as_deref().is_none_or(|n| s.search_key.contains(n)))
            .collect();
        let total = hits.len();
        let key = |s: &Station| (s.state, std::cmp::Reverse(s.reasons.len()));
        let end = q.offset.saturating_add(q.limit).min(total);
        if q.offset < end {
            // Only the requested page needs full order.
            if end < total {
                hits.select_nth_unstable_by(end, |a, b| {
                    key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id))
                });
            }
            hits[..end].sort_unstable_by(|a, b| key(a).cmp(&key(b)).then_with(|| a.id.cmp(&b.id)));
        }
        let stations = hits
            .get(q.offset.min(end)..end)
            .unwrap_or_default()
            .iter()
            .map(|s| s.summary())
            .collect();
        ListPage { total, stations }
    }
}

/// Checks the report's heads against the witnessed ones: new heads are returned (to store) and
/// become the witnessed maximum; a head behind the maximum or at the same `next_seq` with
/// another hash marks the camera rewritten. The key fingerprint does not matter: a new key does
/// not make a cut manifest whole.
fn witness(
    s: &mut Station,
    health: &Health,
    received_at: i64,
    fingerprint: Option<String>,
) -> Vec<HeadRow> {
    let mut out = Vec::new();
    for (cam, c) in &health.cameras {
        let Some(head) = &c.manifest else { continue };
        match s.witnessed.get(cam) {
            Some(w) if head.next_seq < w.next_seq => {
                s.rewritten.entry(cam.clone()).or_insert_with(|| {
                    format!(
                        "manifest has {} entries, {} were witnessed at {}: entries removed from its end",
                        head.next_seq,
                        w.next_seq,
                        fmt_ms(w.received_at)
                    )
                });
            }
            Some(w) if head.next_seq == w.next_seq && head.prev != w.prev => {
                s.rewritten.entry(cam.clone()).or_insert_with(|| {
                    format!(
                        "entry {} differs from the one witnessed at {}: the manifest was rewritten",
                        head.next_seq.saturating_sub(1),
                        fmt_ms(w.received_at)
                    )
                });
            }
            Some(w) if head.next_seq == w.next_seq => {}
            _ => {
                s.witnessed.insert(
                    cam.clone(),
                    WitnessedMax {
                        next_seq: head.next_seq,
                        prev: head.prev,
                        received_at,
                    },
                );
                out.push(HeadRow {
                    station: s.id.clone(),
                    camera: cam.clone(),
                    next_seq: head.next_seq,
                    prev: head.prev,
                    agent_at: health.at.unix_ms(),
                    received_at,
                    key_fingerprint: fingerprint.clone(),
                });
            }
        }
    }
    out
}

fn fmt_ms(ms: i64) -> String {
    Timestamp::from_unix_ms(ms).map_or_else(|_| ms.to_string(), |t| t.to_string())
}

/// Evaluates the rules; on a change of reasons, returns what opened and closed.
fn reevaluate(s: &mut Station, now: i64, rules: &RulesConfig) -> Option<Transition> {
    let (state, reasons) = evaluate(
        &Observed {
            status: s.status.as_ref(),
            status_received_at: s.status_received_at,
            health: s.health.as_deref(),
            health_received_at: s.health_received_at,
            rewritten: &s.rewritten,
            key_mismatch: s.key_mismatch.as_ref(),
            archive_refused: &s.archive_refused,
            archive_unavailable: s.archive_unavailable.as_ref(),
        },
        now,
        rules,
    );
    if state != s.state {
        s.state = state;
        s.state_since = now;
    }
    let old: HashSet<String> = s.reasons.iter().map(Reason::key).collect();
    let new: HashSet<String> = reasons.iter().map(Reason::key).collect();
    let changed = old != new;
    let t = changed.then(|| Transition {
        station: s.id.clone(),
        at: now,
        opened: reasons
            .iter()
            .filter(|r| !old.contains(&r.key()))
            .cloned()
            .collect(),
        closed: s
            .reasons
            .iter()
            .filter(|r| !new.contains(&r.key()))
            .cloned()
            .collect(),
    });
    s.reasons = reasons;
    t
}

#[cfg(test)]
mod tests {
    use stationwatch_protocol::manifest::Timestamp;

    use super::*;

    fn sid(s: &str) -> StationId {
        StationId::new(s).unwrap()
    }

    fn health(at: i64, region: &str) -> Arc<Health> {
        let mut h = Health::new(Timestamp::from_unix_ms(at).unwrap());
        h.agent.region = Some(region.into());
        Arc::new(h)
    }

    #[test]
    fn lists_attention_first_and_filters() {
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        for i in 0..50 {
            let id = format!("st-{i:03}");
            f.apply_health(
                &sid(&id),
                health(now, if i % 2 == 0 { "North" } else { "South" }),
                now,
                now,
            );
        }
        f.apply_status(&sid("st-007"), Status::lost(), now + 1, now + 1);
        f.apply_status(&sid("st-042"), Status::lost(), now + 1, now + 1);
        let all = |_: &StationId| true;
        let page = f.list(
            &ListQuery {
                limit: 5,
                ..Default::default()
            },
            &all,
        );
        assert_eq!(page.total, 50);
        let ids: Vec<_> = page.stations.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["st-007", "st-042", "st-000", "st-001", "st-002"]);
        let q = ListQuery {
            region: Some("north".into()),
            search: Some("4".into()),
            limit: 100,
            ..Default::default()
        };
        let ids: Vec<_> = f
            .list(&q, &all)
            .stations
            .into_iter()
            .map(|s| s.id.to_string())
            .collect();
        assert_eq!(
            ids,
            [
                "st-042", "st-004", "st-014", "st-024", "st-034", "st-040", "st-044", "st-046",
                "st-048"
            ]
        );
        let beyond = ListQuery {
            offset: usize::MAX,
            limit: 1000,
            ..Default::default()
        };
        let page = f.list(&beyond, &all);
        assert_eq!((page.total, page.stations.len()), (50, 0));
        let only = |id: &StationId| id.as_str() == "st-001";
        assert_eq!(f.counts(&only).total, 1);
        assert_eq!(f.counts(&all).offline, 2);
    }

    #[test]
    fn search_matches_id_or_name_in_any_case() {
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        let mut h = Health::new(Timestamp::from_unix_ms(now).unwrap());
        h.agent.station_name = Some("Riverside School".into());
        f.apply_health(&sid("KG-0042"), Arc::new(h), now, now);
        f.apply_health(&sid("KG-0043"), health(now, "N"), now, now);
        let all = |_: &StationId| true;
        let find = |q: &str| -> Vec<String> {
            let q = ListQuery {
                search: Some(q.into()),
                limit: 10,
                ..Default::default()
            };
            f.list(&q, &all)
                .stations
                .into_iter()
                .map(|s| s.id.to_string())
                .collect()
        };
        assert_eq!(find("RIVERSIDE"), ["KG-0042"]);
        assert_eq!(find("kg-004"), ["KG-0042", "KG-0043"]);
        assert!(find("school 2").is_empty());
    }

    #[test]
    fn the_latest_received_report_wins_whatever_its_date() {
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        assert!(f
            .apply_health(&sid("a"), health(now, "N"), now, now)
            .transition
            .is_none());
        // Received later, dated earlier (a clock set back): taken.
        f.apply_health(&sid("a"), health(now - 15_000, "S"), now + 5, now + 5);
        assert_eq!(f.get(&sid("a")).unwrap().region(), Some("S"));
        // Dated 9999 (forged): taken, but the next report received replaces it.
        let forged = "9999-12-31T23:59:59.000Z"
            .parse::<Timestamp>()
            .unwrap()
            .unix_ms();
        f.apply_health(&sid("a"), health(forged, "F"), now + 10, now + 10);
        assert_eq!(f.get(&sid("a")).unwrap().region(), Some("F"));
        f.apply_health(&sid("a"), health(now + 20, "N"), now + 20, now + 20);
        assert_eq!(f.get(&sid("a")).unwrap().region(), Some("N"));
        // A row received earlier (another replica's, read back late) replaces nothing.
        f.apply_health(&sid("a"), health(now + 30, "S"), now + 15, now + 30);
        assert_eq!(f.get(&sid("a")).unwrap().region(), Some("N"));
    }

    fn report(at: i64, seq: u64, prev: &[u8], key: Option<&str>) -> Arc<Health> {
        use stationwatch_protocol::mqtt::{CameraHealth, CameraState, ManifestHead};
        let mut h = Health::new(Timestamp::from_unix_ms(at).unwrap());
        h.agent.key_fingerprint = key.map(|k| k.parse().unwrap());
        let cam = CameraHealth {
            state: CameraState::Recording,
            manifest: Some(ManifestHead {
                next_seq: seq,
                prev: Hash256::of(prev),
            }),
            ..Default::default()
        };
        h.cameras.insert("desk".parse().unwrap(), cam);
        Arc::new(h)
    }

    #[test]
    fn heads_are_witnessed_once_and_a_cut_or_fork_is_flagged_under_any_key() {
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        let a = sid("a");
        let o = f.apply_health(&a, report(now, 10, b"9", None), now, now);
        assert_eq!(o.heads.len(), 1);
        // Same head again: nothing to store.
        let o = f.apply_health(&a, report(now + 1, 10, b"9", None), now + 1, now + 1);
        assert!(o.heads.is_empty() && o.transition.is_none());
        let o = f.apply_health(&a, report(now + 2, 12, b"11", None), now + 2, now + 2);
        assert_eq!(o.heads[0].next_seq, 12);
        // Cut by 5 under a new key: still flagged, nothing stored.
        let o = f.apply_health(
            &a,
            report(now + 3, 7, b"6", Some("0000:0000:0000:0001")),
            now + 3,
            now + 3,
        );
        assert!(o.heads.is_empty());
        assert_eq!(
            o.transition.unwrap().opened[0].key(),
            "manifest_rewritten:desk"
        );
        assert_eq!(f.get(&a).unwrap().state, StationState::Degraded);
        // A fork at the witnessed seq on a fresh fleet that loaded the stored head.
        let g = Fleet::new(RulesConfig::default());
        g.head_stored(
            &f.apply_health(&sid("b"), report(now, 4, b"3", None), now, now)
                .heads[0],
            now,
        );
        let o = g.apply_health(
            &sid("b"),
            report(now + 1, 4, b"other", None),
            now + 1,
            now + 1,
        );
        assert_eq!(
            o.transition.unwrap().opened[0].key(),
            "manifest_rewritten:desk"
        );
    }

    #[test]
    fn a_report_under_a_foreign_key_is_refused_and_flagged() {
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        let a = sid("a");
        let real = "1111:2222:3333:4444";
        assert_eq!(f.get(&a).map(|s| s.key_status()), None);
        f.set_registered_key(&a, Some(real.into()), now);
        assert_eq!(f.get(&a).unwrap().key_status(), "registered");
        let o = f.apply_health(&a, report(now, 5, b"4", Some(real)), now, now);
        assert!(!o.refused && o.heads.len() == 1);
        let o = f.apply_health(
            &a,
            report(now + 10, 50, b"forged", Some("9999:9999:9999:9999")),
            now + 10,
            now + 10,
        );
        assert!(o.refused && o.heads.is_empty());
        assert_eq!(o.transition.unwrap().opened[0].kind, "key_mismatch");
        let s = f.get(&a).unwrap();
        assert_eq!(s.key_status(), "mismatch");
        // The station's state is still its own last report.
        assert_eq!(s.health.unwrap().at.unix_ms(), now);
        assert_eq!(
            s.witnessed[&"desk".parse::<CameraId>().unwrap()].next_seq,
            5
        );
        // Nor can it hide behind an old time.
        assert!(
            f.apply_health(
                &a,
                report(now - 60_000, 1, b"0", Some("9999:9999:9999:9999")),
                now + 15,
                now + 15
            )
            .refused
        );
        // A report without any fingerprint is not the registered key either.
        assert!(
            f.apply_health(&a, report(now + 20, 6, b"5", None), now + 20, now + 20)
                .refused
        );
    }

    #[test]
    fn silence_opens_and_a_report_closes_the_offline_alert() {
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        f.apply_health(&sid("a"), health(now, "N"), now, now);
        assert!(f.tick(now + 40_000).is_empty());
        let t = f.tick(now + 50_000);
        assert_eq!(t.len(), 1);
        assert_eq!(t[0].opened[0].kind, "offline");
        let t = f
            .apply_health(
                &sid("a"),
                health(now + 51_000, "N"),
                now + 51_000,
                now + 51_000,
            )
            .transition
            .unwrap();
        assert_eq!(t.closed[0].kind, "offline");
        assert_eq!(f.get(&sid("a")).unwrap().state, StationState::Online);
    }

    #[test]
    fn upload_figures_come_from_health_and_sum_over_visible_stations() {
        use stationwatch_protocol::mqtt::UploadHealth;
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        for (i, (backlog, rate, only)) in [(1_000_000u64, 8_000u64, 5u64), (0, 0, 7), (10, 0, 1)]
            .into_iter()
            .enumerate()
        {
            let mut h = Health::new(Timestamp::from_unix_ms(now).unwrap());
            h.upload = Some(UploadHealth {
                backlog_bytes: backlog,
                rate_bps: rate,
                unarchived_bytes: only,
                ..Default::default()
            });
            f.apply_health(&sid(&format!("up-{i}")), Arc::new(h), now, now);
        }
        f.apply_health(&sid("none"), health(now, "North"), now, now);
        let eta = |id: &str| f.get(&sid(id)).unwrap().summary().upload_eta_s;
        // 1 MB at 8 kbit/s: 1,000 s.
        assert_eq!(eta("up-0"), Some(1000));
        assert_eq!(eta("up-1"), Some(0));
        assert_eq!(eta("up-2"), None);
        assert_eq!(eta("none"), None);
        assert_eq!(
            f.get(&sid("none")).unwrap().summary().upload_backlog_bytes,
            None
        );
        let t = f.upload_totals(&|_: &StationId| true);
        assert_eq!(
            (
                t.unarchived_bytes,
                t.upload_backlog_bytes,
                t.upload_rate_bps
            ),
            (13, 1_000_010, 8_000)
        );
        let t = f.upload_totals(&|id: &StationId| id.as_str() == "up-1");
        assert_eq!(t.unarchived_bytes, 7);
    }

    #[test]
    fn archive_alerts_open_at_the_next_tick_and_close_on_success() {
        let f = Fleet::new(RulesConfig::default());
        let now = 1_780_000_000_000;
        let s = sid("st-1");
        let desk = CameraId::new("desk").unwrap();
        f.apply_health(&s, health(now, "North"), now, now);
        f.archive_refused(&s, &desk, Some(3), "segment 3: sha".into(), now);
        f.archive_refused(&s, &desk, Some(5), "segment 5: sha".into(), now);
        f.archive_unavailable(&s, "disk full".into(), true, now);
        let opened: Vec<String> = f
            .tick(now + 1)
            .iter()
            .flat_map(|t| t.opened.iter().map(Reason::key))
            .collect();
        assert_eq!(opened, ["archive_refused:desk", "archive_unavailable"]);
        let closed_at = |t| -> Vec<String> {
            f.tick(t)
                .iter()
                .flat_map(|t| t.closed.iter().map(Reason::key))
                .collect()
        };
        // Manifest lines fit on a disk full for footage: they close neither alert.
        f.archive_manifest_stored(&s, &desk, now + 2);
        assert!(closed_at(now + 3).is_empty());
        // Another segment archived: the store works again, but 3 and 5 are still refused.
        f.archive_stored(&s, &desk, 4, now + 4);
        assert_eq!(closed_at(now + 5), ["archive_unavailable"]);
        f.archive_stored(&s, &desk, 3, now + 6);
        assert!(closed_at(now + 7).is_empty());
        // The last refused segment archived after all (the right bytes): the camera is clear.
        f.archive_stored(&s, &desk, 5, now + 8);
        assert_eq!(closed_at(now + 9), ["archive_refused:desk"]);
    }
}
