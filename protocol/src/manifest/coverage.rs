//! What a manifest says about a time window: recorded, missing with a reason, deleted by
//! policy, or missing without explanation.

use std::collections::HashMap;

use super::entry::{DeletionPolicy, EntryBody, Gap, Segment, SignedEntry};
use super::time::Timestamp;
use super::TIME_TOLERANCE_MS;

/// A half-open time interval `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start: Timestamp,
    pub end: Timestamp,
}

impl Span {
    pub fn duration_ms(&self) -> i64 {
        self.end.ms_since(self.start).max(0)
    }
}

/// A segment the manifest says is on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredSegment {
    pub seq: u64,
    pub segment: Segment,
}

/// A gap entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoveredGap {
    pub seq: u64,
    pub gap: Gap,
}

/// A segment that a deletion entry says was removed by policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeletedSegment {
    /// The segment's seq.
    pub seq: u64,
    pub segment: Segment,
    /// The deletion entry's seq, time, policy and detail.
    pub deletion_seq: u64,
    pub at: Timestamp,
    pub policy: DeletionPolicy,
    pub detail: String,
}

/// A `start` entry that follows an entry other than `stop`: the agent had stopped uncleanly.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UncleanStart {
    pub seq: u64,
    pub at: Timestamp,
}

/// The coverage of `[from, to)`. Lists hold the entries overlapping the window, in manifest order
/// and unclipped; totals are clipped to the window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coverage {
    pub from: Timestamp,
    pub to: Timestamp,
    /// Segments the manifest says exist (not deleted).
    pub segments: Vec<CoveredSegment>,
    /// Time without recording, with its reason.
    pub gaps: Vec<CoveredGap>,
    /// Segments deleted by retention policy.
    pub deleted: Vec<DeletedSegment>,
    /// Parts of the window (longer than [`TIME_TOLERANCE_MS`]) covered by no segment, gap or
    /// deletion: missing without explanation.
    pub unexplained: Vec<Span>,
    /// Unclean agent stops whose restart lies in the window.
    pub unclean_starts: Vec<UncleanStart>,
}

impl Coverage {
    /// Milliseconds of the window covered by present segments.
    pub fn recorded_ms(&self) -> i64 {
        union_ms(
            self.segments
                .iter()
                .map(|s| (s.segment.start, s.segment.end)),
            self.from,
            self.to,
        )
    }

    /// Milliseconds of the window missing without explanation.
    pub fn unexplained_ms(&self) -> i64 {
        self.unexplained.iter().map(Span::duration_ms).sum()
    }

    /// Segments of the window recorded while the station's clock was not synchronised: their
    /// times are the station's word only.
    pub fn unsynced_segments(&self) -> impl Iterator<Item = &CoveredSegment> {
        self.segments
            .iter()
            .filter(|s| s.segment.clock == Some(super::entry::ClockSync::Unsynced))
    }

    /// True when the whole window is recorded: no gap, deletion or unexplained hole in it.
    pub fn is_complete(&self) -> bool {
        self.gaps.is_empty() && self.deleted.is_empty() && self.unexplained.is_empty()
    }
}

/// Sorted, clipped intervals; returns their union's length in ms.
fn union_ms(
    spans: impl Iterator<Item = (Timestamp, Timestamp)>,
    from: Timestamp,
    to: Timestamp,
) -> i64 {
    let mut v: Vec<(Timestamp, Timestamp)> = spans
        .map(|(s, e)| (s.max(from), e.min(to)))
        .filter(|(s, e)| s < e)
        .collect();
    v.sort();
    let mut total = 0;
    let mut cursor = from;
    for (s, e) in v {
        let s = s.max(cursor);
        if e > s {
            total += e.ms_since(s);
            cursor = e;
        }
    }
    total
}

fn overlaps(start: Timestamp, end: Timestamp, from: Timestamp, to: Timestamp) -> bool {
    start < to && end > from
}

/// What the entries say about `[from, to)`. Trusts the entries: verify the chain first
/// ([`super::verify_chain`]), and treat segments whose files are missing as holes yourself.
pub fn coverage(entries: &[SignedEntry], from: Timestamp, to: Timestamp) -> Coverage {
    let mut cov = Coverage {
        from,
        to,
        segments: Vec::new(),
        gaps: Vec::new(),
        deleted: Vec::new(),
        unexplained: Vec::new(),
        unclean_starts: Vec::new(),
    };
    // Deletion entries by target seq (first one wins; later ones are invalid).
    let mut deletions: HashMap<u64, &SignedEntry> = HashMap::new();
    for e in entries {
        if let EntryBody::Deleted(d) = e.body() {
            deletions.entry(d.target).or_insert(e);
        }
    }

    let mut explained: Vec<(Timestamp, Timestamp)> = Vec::new();
    let mut previous: Option<&SignedEntry> = None;
    for e in entries {
        match e.body() {
            EntryBody::Segment(s) if overlaps(s.start, s.end, from, to) => {
                explained.push((s.start, s.end));
                let deletion = deletions.get(&e.seq()).and_then(|d| match d.body() {
                    EntryBody::Deleted(del) if del.sha256 == s.sha256 => Some((d.seq(), del)),
                    _ => None,
                });
                match deletion {
                    Some((deletion_seq, del)) => cov.deleted.push(DeletedSegment {
                        seq: e.seq(),
                        segment: s.clone(),
                        deletion_seq,
                        at: del.at,
                        policy: del.policy,
                        detail: del.detail.clone(),
                    }),
                    None => cov.segments.push(CoveredSegment {
                        seq: e.seq(),
                        segment: s.clone(),
                    }),
                }
            }
            EntryBody::Gap(g) if overlaps(g.start, g.end, from, to) => {
                explained.push((g.start, g.end));
                cov.gaps.push(CoveredGap {
                    seq: e.seq(),
                    gap: g.clone(),
                });
            }
            EntryBody::Start(s) if s.at >= from && s.at < to => {
                let clean = matches!(previous.map(|p| p.body()), None | Some(EntryBody::Stop(_)));
                if !clean {
                    cov.unclean_starts.push(UncleanStart {
                        seq: e.seq(),
                        at: s.at,
                    });
                }
            }
            _ => {}
        }
        previous = Some(e);
    }

    explained.sort();
    let mut cursor = from;
    for (s, e) in explained {
        if s.ms_since(cursor) > TIME_TOLERANCE_MS {
            cov.unexplained.push(Span {
                start: cursor,
                end: s.min(to),
            });
        }
        cursor = cursor.max(e);
    }
    if to.ms_since(cursor) > TIME_TOLERANCE_MS {
        cov.unexplained.push(Span {
            start: cursor,
            end: to,
        });
    }
    cov
}
