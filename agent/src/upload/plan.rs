//! What to upload next, decided from the manifests, the jobs, the modes and what the archive
//! confirmed. Pure: no I/O, no clock (the caller passes `now`).
//!
//! Order: segments of requested windows (higher `priority` first, then oldest first), then, for
//! cameras in mode `all`, every other unarchived segment, oldest first (backfill). Cameras in
//! mode `off` upload nothing; their jobs wait (`paused`).

use std::collections::{BTreeMap, BTreeSet};

use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::mqtt::{MessageId, UploadJobHealth, UploadJobState, UploadMode};
use stationwatch_protocol::CameraId;

use super::index::Indexed;
use super::jobs::Job;

/// One camera as planning sees it.
pub struct CameraInput<'a> {
    pub id: &'a CameraId,
    pub mode: UploadMode,
    pub entries: &'a [Indexed],
    pub archived: Option<&'a BTreeSet<u64>>,
    /// Segments not to try now (refused lately, file missing).
    pub skip: &'a dyn Fn(u64) -> bool,
}

/// Why a segment is wanted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    Requested,
    Backfill,
}

/// One segment to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Item {
    pub camera: CameraId,
    pub seq: u64,
    pub size: u64,
    pub start: Timestamp,
    pub class: Class,
    /// Manifest lines `[lo, hi]` the archive must hold for this item (for a job: its whole
    /// window and the first entry after it, so gaps are archived too).
    pub manifest: (u64, u64),
}

/// A job's progress, and whether its window is complete.
#[derive(Debug, Clone)]
pub struct JobProgress {
    pub health: UploadJobHealth,
    /// Every segment of the window is archived and the window is over.
    pub complete: bool,
    /// Manifest lines each camera's archive must hold before the job is done.
    pub manifest: Vec<(CameraId, u64, u64)>,
}

#[derive(Debug, Default)]
pub struct Plan {
    pub items: Vec<Item>,
    pub jobs: Vec<JobProgress>,
    pub backlog_bytes: u64,
    pub backlog_segments: u64,
    pub oldest_pending: Option<Timestamp>,
    /// Bytes on disk not archived, whatever the mode.
    pub unarchived_bytes: u64,
}

fn overlaps(span: (Timestamp, Timestamp), from: Timestamp, to: Timestamp) -> bool {
    span.0 < to && span.1 > from
}

/// The manifest lines a job needs of one camera: from its first entry overlapping the window to
/// the first span entry starting at or after the window's end (or the last entry so far).
fn job_manifest(entries: &[Indexed], from: Timestamp, to: Timestamp) -> Option<(u64, u64)> {
    let first = entries
        .iter()
        .find(|e| e.span.is_some_and(|s| overlaps(s, from, to) || s.0 >= to))?;
    let after = entries
        .iter()
        .find(|e| e.span.is_some_and(|s| s.0 >= to))
        .map_or(entries.last()?.seq, |e| e.seq);
    Some((first.seq, after.max(first.seq)))
}

/// Plans at `now`; `grace_ms` after a window's end it counts as over even without a later entry
/// (a camera that stopped recording).
pub fn plan(cameras: &[CameraInput<'_>], jobs: &[&Job], now: Timestamp, grace_ms: i64) -> Plan {
    let mut out = Plan::default();
    let mut requested: BTreeMap<(CameraId, u64), (u8, Item)> = BTreeMap::new();
    let is_archived = |c: &CameraInput<'_>, seq| c.archived.is_some_and(|a| a.contains(&seq));
    for job in jobs {
        let mut h = UploadJobHealth {
            job: job.id.clone(),
            cameras: job.cameras.clone(),
            from: job.from,
            to: job.to,
            priority: job.priority,
            state: UploadJobState::Queued,
            bytes_total: 0,
            bytes_done: 0,
            segments_total: 0,
            segments_done: 0,
        };
        let mut manifest = Vec::new();
        let mut paused = false;
        let mut window_over = now.ms_since(job.to) >= grace_ms;
        for c in cameras.iter().filter(|c| job.covers(c.id)) {
            let Some(need) = job_manifest(c.entries, job.from, job.to) else {
                continue;
            };
            manifest.push((c.id.clone(), need.0, need.1));
            if c.entries
                .iter()
                .any(|e| e.span.is_some_and(|s| s.0 >= job.to))
            {
                window_over = true;
            }
            paused |= c.mode == UploadMode::Off;
            for e in c.entries.iter().filter(|e| !e.deleted) {
                let (Some(span), Some((_, size, _))) = (e.span, &e.segment) else {
                    continue;
                };
                if !overlaps(span, job.from, job.to) {
                    continue;
                }
                h.segments_total += 1;
                h.bytes_total += size;
                if is_archived(c, e.seq) {
                    h.segments_done += 1;
                    h.bytes_done += size;
                } else if c.mode != UploadMode::Off && !(c.skip)(e.seq) {
                    let item = Item {
                        camera: c.id.clone(),
                        seq: e.seq,
                        size: *size,
                        start: span.0,
                        class: Class::Requested,
                        manifest: need,
                    };
                    let key = (c.id.clone(), e.seq);
                    match requested.get(&key) {
                        Some((p, _)) if *p >= job.priority => {}
                        _ => {
                            requested.insert(key, (job.priority, item));
                        }
                    }
                }
            }
        }
        let complete = job.done_at.is_some()
            || (window_over && h.segments_done == h.segments_total && !paused);
        h.state = if complete {
            UploadJobState::Done
        } else if paused {
            UploadJobState::Paused
        } else if h.segments_done > 0 {
            UploadJobState::Uploading
        } else {
            UploadJobState::Queued
        };
        out.jobs.push(JobProgress {
            health: h,
            complete,
            manifest,
        });
    }
    let mut req: Vec<(u8, Item)> = requested.into_values().collect();
    req.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.start.cmp(&b.1.start)));
    let wanted: BTreeSet<(CameraId, u64)> =
        req.iter().map(|(_, i)| (i.camera.clone(), i.seq)).collect();
    let mut backfill = Vec::new();
    for c in cameras {
        for e in c.entries.iter().filter(|e| !e.deleted) {
            let (Some(span), Some((_, size, _))) = (e.span, &e.segment) else {
                continue;
            };
            if is_archived(c, e.seq) {
                continue;
            }
            out.unarchived_bytes += size;
            if c.mode == UploadMode::All
                && !wanted.contains(&(c.id.clone(), e.seq))
                && !(c.skip)(e.seq)
            {
                backfill.push(Item {
                    camera: c.id.clone(),
                    seq: e.seq,
                    size: *size,
                    start: span.0,
                    class: Class::Backfill,
                    manifest: (e.seq, e.seq),
                });
            }
        }
    }
    backfill.sort_by_key(|i| i.start);
    out.items = req.into_iter().map(|(_, i)| i).chain(backfill).collect();
    out.backlog_bytes = out.items.iter().map(|i| i.size).sum();
    out.backlog_segments = out.items.len() as u64;
    out.oldest_pending = out.items.iter().map(|i| i.start).min();
    out
}

/// Ids of jobs whose window is complete but not yet marked done.
pub fn newly_complete(plan: &Plan, jobs: &[&Job]) -> Vec<MessageId> {
    plan.jobs
        .iter()
        .filter(|p| p.complete)
        .filter(|p| {
            jobs.iter()
                .any(|j| j.id == p.health.job && j.done_at.is_none())
        })
        .map(|p| p.health.job.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stationwatch_protocol::manifest::{Hash256, SegmentFile};

    fn t(s: i64) -> Timestamp {
        Timestamp::from_unix_ms(1_800_000_000_000 + s * 1000).unwrap()
    }

    /// Segments of 60 s from `t(0)`, seq 1.. (seq 0 is a start entry).
    fn entries(n: i64) -> Vec<Indexed> {
        let mut v = vec![Indexed {
            seq: 0,
            offset: 0,
            len: 1,
            span: None,
            segment: None,
            deleted: false,
        }];
        for i in 0..n {
            v.push(Indexed {
                seq: i as u64 + 1,
                offset: 0,
                len: 1,
                span: Some((t(60 * i), t(60 * i + 60))),
                segment: Some((
                    SegmentFile::new(format!("s{i}.ts")).unwrap(),
                    1000,
                    Hash256::of(b""),
                )),
                deleted: false,
            });
        }
        v
    }

    fn job(id: &str, from: i64, to: i64, priority: u8, cams: &[&CameraId]) -> Job {
        Job {
            id: MessageId::new(id).unwrap(),
            cameras: cams.iter().map(|c| (*c).clone()).collect(),
            from: t(from),
            to: t(to),
            priority,
            reason: "r".into(),
            queued_at: t(0),
            done_at: None,
        }
    }

    #[test]
    fn requested_windows_go_first_by_priority_then_backfill_oldest_first() {
        let desk = CameraId::new("desk").unwrap();
        let boxes = CameraId::new("boxes").unwrap();
        let (e1, e2) = (entries(10), entries(10));
        let archived: BTreeSet<u64> = [1].into();
        let no = |_| false;
        let cams = [
            CameraInput {
                id: &desk,
                mode: UploadMode::All,
                entries: &e1,
                archived: Some(&archived),
                skip: &no,
            },
            CameraInput {
                id: &boxes,
                mode: UploadMode::Requested,
                entries: &e2,
                archived: None,
                skip: &no,
            },
        ];
        let low = job("low", 120, 180, 1, &[&desk]);
        let high = job("high", 480, 540, 9, &[&boxes]);
        let p = plan(&cams, &[&low, &high], t(600), 90_000);
        let order: Vec<(String, u64, Class)> = p
            .items
            .iter()
            .map(|i| (i.camera.to_string(), i.seq, i.class))
            .collect();
        assert_eq!(order[0], ("boxes".into(), 9, Class::Requested));
        assert_eq!(order[1], ("desk".into(), 3, Class::Requested));
        // Backfill: desk only (boxes is `requested`), oldest first, without the archived one
        // and without what a job already asks for.
        let back: Vec<u64> = p.items[2..].iter().map(|i| i.seq).collect();
        assert_eq!(back, [2, 4, 5, 6, 7, 8, 9, 10]);
        assert!(p.items[2..].iter().all(|i| i.class == Class::Backfill));
        assert_eq!(p.unarchived_bytes, 19 * 1000);
        assert_eq!(p.oldest_pending, Some(t(60)));
        // The job's manifest need runs to the first entry after its window.
        assert_eq!(p.jobs[0].manifest, vec![(desk.clone(), 3, 4)]);
    }

    #[test]
    fn a_job_is_complete_once_its_window_is_over_and_archived_and_paused_when_off() {
        let desk = CameraId::new("desk").unwrap();
        let e = entries(3);
        let all: BTreeSet<u64> = [1, 2, 3].into();
        let no = |_| false;
        let j = job("j", 0, 180, 0, &[&desk]);
        let cam = |mode, archived| CameraInput {
            id: &desk,
            mode,
            entries: &e,
            archived,
            skip: &no,
        };
        // Window over by time (no later entry), everything archived.
        let p = plan(
            &[cam(UploadMode::Requested, Some(&all))],
            &[&j],
            t(400),
            90_000,
        );
        assert!(p.jobs[0].complete);
        assert_eq!(p.jobs[0].health.state, UploadJobState::Done);
        // Still inside the grace: not complete.
        let p = plan(
            &[cam(UploadMode::Requested, Some(&all))],
            &[&j],
            t(200),
            90_000,
        );
        assert!(!p.jobs[0].complete);
        // Mode off: paused, nothing planned.
        let p = plan(&[cam(UploadMode::Off, None)], &[&j], t(400), 90_000);
        assert_eq!(p.jobs[0].health.state, UploadJobState::Paused);
        assert!(p.items.is_empty());
        assert_eq!(p.jobs[0].health.segments_total, 3);
    }
}
