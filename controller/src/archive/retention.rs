//! Archive retention: the station's rules, applied to the archive (`docs/archive.md`).
//!
//! * Nothing younger than `keep_days` is ever deleted; with `delete_after_days = 0` (the
//!   default) nothing is deleted by age at all.
//! * An archived segment older than `delete_after_days` (by the end of its span) is deleted,
//!   unless a legal hold overlaps its span: a hold the station signed into the camera's
//!   manifest and the archive holds (config, command and request holds alike, until the
//!   archived manifest holds their `release`), a request for recordings (from filing until
//!   its `hold_until`; `requests/`), or a `[[archive.hold]]` of the controller's
//!   config.
//! * Fail closed: when the hold lines of a camera cannot be read or parsed, nothing of that
//!   camera is deleted (and it is logged); a failing delete leaves the row as it was.
//!
//! A deleted segment keeps its index row with state `expired` and the reason, so what the
//! archive once held, and why it no longer does, stays visible; the manifest lines stay.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use stationwatch_protocol::manifest::{parse_line, EntryBody};
use stationwatch_protocol::{CameraId, StationId};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{object_path, segment_key, Archive};
use crate::config::{ArchiveHold, ArchiveRetention};
use crate::store::archive::ExpiredCandidate;

/// Segments looked at per pass (the next pass goes on).
const BATCH: i64 = 1000;

/// A window `[from, to)` in ms that must not be deleted, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldWindow {
    pub from: i64,
    pub to: i64,
    pub why: String,
}

impl HoldWindow {
    fn overlaps(&self, start: i64, end: i64) -> bool {
        self.from < end.max(start + 1) && start < self.to
    }
}

/// The holds in force from a camera's archived `hold` / `release` lines (in manifest order).
/// Any line that does not parse makes the whole camera held (`Err`).
pub fn holds_from_lines(lines: &[String]) -> Result<Vec<HoldWindow>, String> {
    let mut open: BTreeMap<String, HoldWindow> = BTreeMap::new();
    for line in lines {
        let e = parse_line(line.as_bytes()).map_err(|e| format!("hold line: {e}"))?;
        match e.body() {
            EntryBody::Hold(h) => {
                open.insert(
                    h.id.clone(),
                    HoldWindow {
                        from: h.from.unix_ms(),
                        to: h.to.unix_ms(),
                        why: format!("station hold {} ({}): {}", h.id, h.source, h.reason),
                    },
                );
            }
            EntryBody::Release(r) => {
                open.remove(&r.id);
            }
            _ => {}
        }
    }
    Ok(open.into_values().collect())
}

/// The controller's own holds that apply to a camera of a station.
pub fn config_holds(
    holds: &[ArchiveHold],
    station: &StationId,
    camera: &CameraId,
) -> Vec<HoldWindow> {
    holds
        .iter()
        .filter(|h| h.station.as_ref().is_none_or(|s| s == station))
        .filter(|h| h.camera.as_ref().is_none_or(|c| c == camera))
        .map(|h| HoldWindow {
            from: h.from,
            to: h.to,
            why: format!("archive hold: {}", h.reason),
        })
        .collect()
}

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pass {
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Old enough, kept by a hold (or because the holds could not be read).
    pub held: u64,
    pub failed: u64,
}

impl Archive {
    /// One retention pass at controller time `now` (ms).
    pub async fn retention_pass(&self, rules: &ArchiveRetention, now: i64) -> Pass {
        let mut pass = Pass::default();
        if rules.delete_after_days == 0 {
            return pass;
        }
        let days = i64::from(rules.delete_after_days.max(rules.keep_days));
        let before = now - days * 86_400_000;
        let mut after: Option<(StationId, CameraId, u64)> = None;
        let mut holds: HashMap<(StationId, CameraId), Result<Vec<HoldWindow>, String>> =
            HashMap::new();
        loop {
            let batch = match self
                .inner
                .store
                .archive_expired_candidates(before, after.as_ref(), BATCH)
                .await
            {
                Ok(b) => b,
                Err(e) => {
                    warn!(error = %e, "archive retention: cannot list old segments");
                    return pass;
                }
            };
            let Some(last) = batch.last() else {
                return pass;
            };
            after = Some((last.station.clone(), last.camera.clone(), last.seq));
            let full = batch.len() as i64 == BATCH;
            for c in &batch {
                let key = (c.station.clone(), c.camera.clone());
                if !holds.contains_key(&key) {
                    let h = self.camera_holds(rules, &c.station, &c.camera, now).await;
                    if let Err(why) = &h {
                        warn!(station = %c.station, camera = %c.camera, error = %why, "archive retention: holds unreadable, nothing of the camera is deleted");
                    }
                    holds.insert(key.clone(), h);
                }
                let Some(Ok(windows)) = holds.get(&key) else {
                    pass.held += 1;
                    continue;
                };
                if windows.iter().any(|w| w.overlaps(c.start_ms, c.end_ms)) {
                    pass.held += 1;
                    continue;
                }
                match self.expire(c, days).await {
                    Ok(()) => {
                        pass.deleted += 1;
                        pass.deleted_bytes += c.size;
                    }
                    Err(e) => {
                        pass.failed += 1;
                        warn!(station = %c.station, camera = %c.camera, seq = c.seq, error = %e, "archive retention: cannot delete a segment");
                    }
                }
            }
            if !full {
                return pass;
            }
        }
    }

    async fn camera_holds(
        &self,
        rules: &ArchiveRetention,
        station: &StationId,
        camera: &CameraId,
        now: i64,
    ) -> Result<Vec<HoldWindow>, String> {
        let lines = self
            .inner
            .store
            .archive_hold_lines(station, camera)
            .await
            .map_err(|e| e.to_string())?;
        let mut h = holds_from_lines(&lines)?;
        h.extend(config_holds(&rules.holds, station, camera));
        // Requests for recordings, from filing until their hold ends (`requests/`).
        let requests = self
            .inner
            .store
            .request_holds(station, now)
            .await
            .map_err(|e| format!("request holds: {e}"))?;
        h.extend(
            requests
                .into_iter()
                .filter(|(cams, ..)| cams.is_empty() || cams.contains(camera))
                .map(|(_, from, to, id)| HoldWindow {
                    from,
                    to,
                    why: format!("request {id}"),
                }),
        );
        Ok(h)
    }

    async fn expire(&self, c: &ExpiredCandidate, days: i64) -> Result<(), String> {
        let _lock = self
            .lock(format!("segment/{}/{}/{}", c.station, c.camera, c.seq))
            .await;
        let key = segment_key(&c.station, &c.camera, &c.file);
        let path = object_path(&key).map_err(|e| e.to_string())?;
        match self.inner.objects.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(e.to_string()),
        }
        let reason = format!("retention: older than {days} days");
        self.inner
            .store
            .archive_expire(&c.station, &c.camera, c.seq, &reason)
            .await
            .map_err(|e| e.to_string())?;
        info!(station = %c.station, camera = %c.camera, seq = c.seq, file = %c.file, bytes = c.size, reason = %reason, "archived segment deleted");
        Ok(())
    }
}

/// Runs a pass every `check_interval` until shut down.
pub async fn run(archive: Archive, rules: ArchiveRetention, shutdown: CancellationToken) {
    if rules.delete_after_days == 0 {
        return;
    }
    let mut tick = tokio::time::interval(rules.check_interval.max(Duration::from_secs(1)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let p = archive.retention_pass(&rules, crate::now_ms()).await;
        if p != Pass::default() {
            info!(
                deleted = p.deleted,
                bytes = p.deleted_bytes,
                held = p.held,
                failed = p.failed,
                "archive retention pass"
            );
        }
    }
}
