//! Follows approved requests until their window is in the archive: progress from the station's
//! health (its upload job of the same id), completion and gaps from the archive's own index
//! (what the station says is never taken for what the archive holds), the upload command sent
//! again when it expired before the station took it, and failure at the deadline.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use stationwatch_protocol::manifest::{parse_line, EntryBody};
use stationwatch_protocol::mqtt::UploadJobState;
use stationwatch_protocol::CameraId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{system_user, Requests, COLLECTING, FAILED, READY, READY_WITH_GAPS};
use crate::store::archive::{EntryRow, ARCHIVED, EXPIRED, PENDING, REFUSED};
use crate::store::requests::{Gap, RequestRow, RequestUpdate, Transition};
use crate::store::StoreError;

/// How often open requests are looked at (sooner when nudged).
const PASS: Duration = Duration::from_secs(5);

/// Uncovered time shorter than this between two segments is not a gap (segment spans are
/// frame-timed: the next one may start a frame after the previous one ends).
pub(crate) const TOLERANCE_MS: i64 = 1000;

/// Most entries read per camera and window.
const MAX_ENTRIES: i64 = 100_000;

/// Runs until `shutdown`.
pub async fn run(requests: Requests, shutdown: CancellationToken) {
    loop {
        if let Err(e) = pass(&requests, crate::now_ms()).await {
            warn!(error = %e, "requests: pass failed; retrying");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = requests.nudge.notified() => {}
            _ = tokio::time::sleep(PASS) => {}
        }
    }
}

/// One look at every collecting request.
pub async fn pass(requests: &Requests, now: i64) -> Result<(), StoreError> {
    for r in requests.store.requests(None, &[COLLECTING], 10_000).await? {
        if let Err(e) = step(requests, &r, now).await {
            warn!(request = %r.id, error = %e, "requests: cannot follow the request");
        }
    }
    Ok(())
}

/// What the archive holds of one camera's part of a window.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct CameraCoverage {
    pub gaps: Vec<Gap>,
    /// Segments listed in the manifest whose bytes are not archived yet.
    pub pending: usize,
    pub archived: usize,
    /// The archived manifest reaches past the window's end.
    pub reaches_end: bool,
}

/// The coverage of `[from, to)` given the camera's segment and gap entries meeting it (time
/// order) and the end of its latest archived entry.
pub fn coverage(
    camera: &CameraId,
    from: i64,
    to: i64,
    entries: &[EntryRow],
    latest_end: Option<i64>,
) -> CameraCoverage {
    let mut c = CameraCoverage {
        reaches_end: latest_end.is_some_and(|e| e >= to),
        ..Default::default()
    };
    // Spans of the window that are covered (segments) or explained (gaps), and the gaps.
    let mut spans: Vec<(i64, i64)> = Vec::new();
    for e in entries {
        let (Some(s), Some(end)) = (e.start_ms, e.end_ms) else {
            continue;
        };
        let (s, end) = (s.max(from), end.min(to));
        if s >= end {
            continue;
        }
        let gap = |reason: String| Gap {
            camera: camera.clone(),
            from_ms: s,
            to_ms: end,
            reason,
        };
        match (e.kind.as_str(), e.state.as_deref()) {
            ("segment", Some(ARCHIVED)) => c.archived += 1,
            ("segment", Some(PENDING)) => c.pending += 1,
            ("segment", Some(REFUSED)) => c.gaps.push(gap(format!(
                "segment {} refused by the archive: {}",
                e.seq,
                e.reason
                    .as_deref()
                    .unwrap_or("its bytes did not match its signed entry")
            ))),
            ("segment", Some(EXPIRED)) => c.gaps.push(gap(format!(
                "segment {} deleted by the archive's retention: {}",
                e.seq,
                e.reason.as_deref().unwrap_or("")
            ))),
            ("segment", _) => c.pending += 1,
            ("gap", _) => c.gaps.push(gap(gap_reason(e))),
            _ => continue,
        }
        spans.push((s, end));
    }
    spans.sort();
    // What neither a segment nor a signed gap accounts for.
    let mut cursor = from;
    let mut holes = Vec::new();
    for (s, e) in spans {
        if s - cursor > TOLERANCE_MS {
            holes.push((cursor, s));
        }
        cursor = cursor.max(e);
    }
    if to - cursor > TOLERANCE_MS {
        holes.push((cursor, to));
    }
    for (s, e) in holes {
        let reason = if latest_end.is_none_or(|l| l <= s) {
            "the station's manifest ends before this: nothing recorded after its last entry \
             (camera or station stopped, or not recorded yet)"
        } else {
            "not in the station's manifest: nothing recorded and no gap signed \
             (station off or recording not started)"
        };
        c.gaps.push(Gap {
            camera: camera.clone(),
            from_ms: s,
            to_ms: e,
            reason: reason.into(),
        });
    }
    c.gaps.sort_by_key(|g| g.from_ms);
    c
}

/// The reason a signed gap entry gives.
fn gap_reason(e: &EntryRow) -> String {
    match parse_line(e.line.as_bytes()).map(|p| p.body().clone()) {
        Ok(EntryBody::Gap(g)) if g.detail.is_empty() => {
            format!("gap signed by the station: {}", g.reason.as_str())
        }
        Ok(EntryBody::Gap(g)) => {
            format!(
                "gap signed by the station: {} ({})",
                g.reason.as_str(),
                g.detail
            )
        }
        _ => "gap signed by the station".into(),
    }
}

async fn step(requests: &Requests, r: &RequestRow, now: i64) -> Result<(), super::RequestError> {
    let store = &requests.store;
    let station = requests.fleet.get(&r.station_id);
    let job = station.as_ref().and_then(|s| {
        s.health.as_ref().and_then(|h| {
            h.upload
                .as_ref()?
                .jobs
                .iter()
                .find(|j| j.job.as_str() == r.id)
                .cloned()
        })
    });
    // Coverage per camera, from the archive.
    let mut covs = Vec::new();
    for cam in &r.cameras {
        let entries = store
            .archive_timeline(&r.station_id, Some(cam), r.from_ms, r.to_ms, MAX_ENTRIES)
            .await?;
        let latest = store.archive_latest_end(&r.station_id, cam).await?;
        covs.push(coverage(cam, r.from_ms, r.to_ms, &entries, latest));
    }
    let station_done = job
        .as_ref()
        .is_some_and(|j| j.state == UploadJobState::Done);
    let complete = covs
        .iter()
        .all(|c| c.pending == 0 && (c.reaches_end || station_done));
    let gaps: Vec<Gap> = covs.iter().flat_map(|c| c.gaps.iter().cloned()).collect();
    let rate = station
        .as_ref()
        .and_then(|s| s.health.as_ref()?.upload.as_ref().map(|u| u.rate_bps))
        .unwrap_or(0);
    let progress = json!({
        "station_online": station.as_ref().is_some_and(|s| !matches!(s.state, crate::fleet::rules::StationState::Offline | crate::fleet::rules::StationState::Unknown)),
        "job": job.as_ref().map(|j| json!({
            "state": j.state,
            "segments_done": j.segments_done,
            "segments_total": j.segments_total,
            "bytes_done": j.bytes_done,
            "bytes_total": j.bytes_total,
        })),
        "archived_segments": covs.iter().map(|c| c.archived).sum::<usize>(),
        "pending_segments": covs.iter().map(|c| c.pending).sum::<usize>(),
        "eta_s": job.as_ref().and_then(|j| {
            let left = j.bytes_total.saturating_sub(j.bytes_done);
            (rate > 0).then(|| left * 8 / rate)
        }),
    });
    if complete {
        let status = if gaps.is_empty() {
            READY
        } else {
            READY_WITH_GAPS
        };
        let note = if gaps.is_empty() {
            String::new()
        } else {
            format!("{} gap(s)", gaps.len())
        };
        let u = RequestUpdate {
            status: Some(status.into()),
            progress: Some(progress),
            gaps: Some(gaps),
            ready_at: Some(now),
            hold_until: Some(now.saturating_add(requests.cfg.hold_ms)),
            transition: Some(Transition {
                status: status.into(),
                at: now,
                by: "controller".into(),
                note,
            }),
            ..Default::default()
        };
        if let Some(row) = store.update_request(&r.id, COLLECTING, u, now).await? {
            info!(request = %r.id, station = %r.station_id, status, gaps = row.gaps.len(), "request ready");
            let _ = requests.changed.send(Arc::new(row));
        }
        return Ok(());
    }
    if r.deadline_at.is_some_and(|d| now > d) {
        let why = format!(
            "not delivered by the deadline: {} segment(s) still missing{}",
            covs.iter().map(|c| c.pending).sum::<usize>(),
            if station.as_ref().is_some_and(|s| !matches!(
                s.state,
                crate::fleet::rules::StationState::Offline
                    | crate::fleet::rules::StationState::Unknown
            )) {
                ""
            } else {
                "; the station is offline"
            }
        );
        let u = RequestUpdate {
            status: Some(FAILED.into()),
            progress: Some(progress),
            gaps: Some(gaps),
            transition: Some(Transition {
                status: FAILED.into(),
                at: now,
                by: "controller".into(),
                note: why.clone(),
            }),
            ..Default::default()
        };
        if let Some(row) = store.update_request(&r.id, COLLECTING, u, now).await? {
            warn!(request = %r.id, station = %r.station_id, reason = %why, "request failed");
            let _ = requests.changed.send(Arc::new(row));
        }
        return Ok(());
    }
    // The station does not have the job: re-send the command once the last one is over
    // (expired unanswered, or could not be published), not while it may still arrive.
    if job.is_none() {
        let last = match &r.command_id {
            Some(id) => store.command(id).await?,
            None => None,
        };
        let over = last.as_ref().is_none_or(|c| {
            matches!(c.status.as_str(), "expired" | "failed")
                || (c.status == "sent" && c.expires_at.is_some_and(|e| e < now))
        });
        if let Some(c) = last.as_ref().filter(|c| c.status == "rejected") {
            let why = format!(
                "the station refused the upload: {}",
                c.ack.as_ref().map(|a| a.to_string()).unwrap_or_default()
            );
            let u = RequestUpdate {
                status: Some(FAILED.into()),
                transition: Some(Transition {
                    status: FAILED.into(),
                    at: now,
                    by: "controller".into(),
                    note: why,
                }),
                ..Default::default()
            };
            if let Some(row) = store.update_request(&r.id, COLLECTING, u, now).await? {
                let _ = requests.changed.send(Arc::new(row));
            }
            return Ok(());
        }
        if over
            && station.as_ref().is_some_and(|s| {
                !matches!(
                    s.state,
                    crate::fleet::rules::StationState::Offline
                        | crate::fleet::rules::StationState::Unknown
                )
            })
        {
            let id = requests
                .send_upload(&system_user("request-collector"), r)
                .await?;
            info!(request = %r.id, command = %id, "request: upload command sent again");
            let u = RequestUpdate {
                command_id: Some(id),
                progress: Some(progress),
                ..Default::default()
            };
            store.update_request(&r.id, COLLECTING, u, now).await?;
            return Ok(());
        }
    }
    if r.progress.as_ref() != Some(&progress) {
        let u = RequestUpdate {
            progress: Some(progress),
            ..Default::default()
        };
        if let Some(row) = store.update_request(&r.id, COLLECTING, u, now).await? {
            let _ = requests.changed.send(Arc::new(row));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cam() -> CameraId {
        CameraId::new("desk".to_owned()).unwrap()
    }

    fn seg(seq: u64, s: i64, e: i64, state: &str) -> EntryRow {
        EntryRow {
            camera: cam(),
            seq,
            line: String::new(),
            hash: String::new(),
            kind: "segment".into(),
            start_ms: Some(s),
            end_ms: Some(e),
            file: None,
            size: None,
            sha256: None,
            state: Some(state.into()),
            reason: None,
            archived_at: None,
            received_at: 0,
        }
    }

    #[test]
    fn contiguous_archived_segments_cover_the_window() {
        let e = [
            seg(1, 0, 10_000, ARCHIVED),
            seg(2, 10_040, 20_000, ARCHIVED),
        ];
        let c = coverage(&cam(), 2_000, 18_000, &e, Some(20_000));
        assert_eq!(
            (c.gaps.len(), c.pending, c.archived, c.reaches_end),
            (0, 0, 2, true)
        );
    }

    #[test]
    fn holes_refusals_and_the_tail_are_gaps_with_reasons() {
        let mut refused = seg(2, 10_000, 20_000, REFUSED);
        refused.reason = Some("sha256 mismatch".into());
        let e = [
            seg(1, 5_000, 10_000, ARCHIVED),
            refused,
            seg(3, 30_000, 40_000, PENDING),
        ];
        let c = coverage(&cam(), 0, 60_000, &e, Some(40_000));
        assert_eq!(c.pending, 1);
        assert!(!c.reaches_end);
        let spans: Vec<(i64, i64)> = c.gaps.iter().map(|g| (g.from_ms, g.to_ms)).collect();
        assert_eq!(
            spans,
            vec![
                (0, 5_000),
                (10_000, 20_000),
                (20_000, 30_000),
                (40_000, 60_000)
            ]
        );
        assert!(c.gaps[1].reason.contains("sha256 mismatch"), "{:?}", c.gaps);
        assert!(c.gaps[2].reason.contains("not in the station's manifest"));
        assert!(c.gaps[3].reason.contains("manifest ends"));
    }
}
