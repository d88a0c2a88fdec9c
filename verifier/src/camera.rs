//! Verifying one camera's folder: manifest, chain, keys, witnessed heads, files, coverage.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stationwatch_protocol::manifest::{
    check_head, check_segment_in_dir, coverage, parse_manifest, present_segments,
    segment_start_from_name, verify_chain_keys, Coverage, EntryBody, Problem, PublicKey,
    SignedEntry, Timestamp, MANIFEST_FILE, SEGMENT_EXT,
};
use stationwatch_protocol::trust::Verdict;
use stationwatch_protocol::{CameraId, StationId};

use crate::VerifyOptions;

/// Something wrong found by verify. Every finding makes the verdict FAILED.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error("{0}")]
    Manifest(#[from] Problem),
    /// A segment file the manifest does not list and did not announce: inserted, renamed, or
    /// left by someone else. It is not footage the station vouched for.
    #[error("file {0} is not listed in the manifest (inserted, renamed or foreign)")]
    UnlistedFile(String),
    /// The manifest is shorter than, or differs from, a head the controller witnessed.
    #[error("witnessed head (received {received_at}): {problem}")]
    Witness {
        received_at: Timestamp,
        problem: Problem,
    },
    #[error("the manifest holds no entry")]
    Empty,
    #[error("no trusted key given and the manifest has no start entry naming one")]
    NoKey,
    #[error("cannot read manifest: {0}")]
    Unreadable(String),
    #[error("the evidence bundle lists this camera but holds no manifest for it")]
    MissingCamera,
    /// The manifest in a bundle's camera folder is signed for another station or camera than
    /// `bundle.json` and the folder name say: footage swapped between cameras or stations.
    #[error("the bundle holds this manifest as {expected}, but its entries are {found}")]
    NotTheBundles { expected: String, found: String },
}

/// The result for one camera.
#[derive(Debug, Clone)]
pub struct CameraReport {
    pub camera: String,
    pub dir: PathBuf,
    pub entries: usize,
    /// The keys the chain was checked against.
    pub keys: Vec<PublicKey>,
    /// Where the trusted keys came from; empty when no trusted key was available and the
    /// manifest's own key was used (which proves integrity, not authorship).
    pub trust: Vec<&'static str>,
    /// Witnessed heads checked against this manifest.
    pub heads_checked: usize,
    /// Witnessed heads carrying an RFC 3161 time-stamp token.
    pub heads_timestamped: usize,
    /// Witnessed heads that could not be checked: before the first line of an excerpt.
    pub heads_unchecked: usize,
    /// For an excerpt (an evidence bundle): the seq of its first and last entries.
    pub excerpt: Option<(u64, u64)>,
    pub files_checked: usize,
    pub bytes_checked: u64,
    pub hashing_time: Duration,
    pub coverage: Option<Coverage>,
    pub findings: Vec<Finding>,
    /// Files newer than the last entry that the manifest announced (`open`) and has not closed:
    /// the segment being recorded, or one the agent adopts at its next start.
    pub pending_files: Vec<String>,
    pub verdict: Verdict,
}

impl CameraReport {
    fn new(dir: &Path) -> Self {
        CameraReport {
            camera: dir
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or_default()
                .to_owned(),
            dir: dir.to_owned(),
            entries: 0,
            keys: Vec::new(),
            trust: Vec::new(),
            heads_checked: 0,
            heads_timestamped: 0,
            heads_unchecked: 0,
            excerpt: None,
            files_checked: 0,
            bytes_checked: 0,
            hashing_time: Duration::ZERO,
            coverage: None,
            findings: Vec::new(),
            pending_files: Vec::new(),
            verdict: Verdict::Failed,
        }
    }

    fn grade(&mut self) {
        let unexplained = self
            .coverage
            .as_ref()
            .is_none_or(|c| !c.unexplained.is_empty());
        let gaps = self
            .coverage
            .as_ref()
            .is_some_and(|c| !c.gaps.is_empty() || !c.deleted.is_empty());
        self.verdict = Verdict::grade(
            !self.findings.is_empty() || unexplained,
            !self.trust.is_empty(),
            gaps,
        );
    }
}

/// A camera a bundle lists but does not hold: FAILED.
pub(crate) fn missing_camera(dir: &Path) -> CameraReport {
    let mut report = CameraReport::new(dir);
    report.findings.push(Finding::MissingCamera);
    report.grade();
    report
}

/// In an excerpt, problems about what lies before its first line are not findings: the
/// excerpt not starting at seq 0, a deletion of an entry before it, and a segment whose `open`
/// entry came before it — one older than every file the excerpt announces (the agent announces
/// a file a few entries before it enters it as a segment). A file newer than an announced one
/// and never announced is still a finding.
fn excerpt_allows(p: &Problem, first_seq: u64, first_announced: Option<Timestamp>) -> bool {
    match p {
        Problem::NotFromGenesis { .. } => true,
        Problem::BadDeletion {
            target,
            fault: stationwatch_protocol::manifest::DeletionFault::UnknownTarget,
            ..
        } => *target < first_seq,
        Problem::Unannounced { file, .. } => {
            match (segment_start_from_name(file.as_str()), first_announced) {
                (Some(start), Some(announced)) => start < announced,
                // Nothing announced in the excerpt at all: every open came before it.
                (_, None) => true,
                (None, Some(_)) => false,
            }
        }
        _ => false,
    }
}

/// The start (from its name) of the oldest file an `open` entry of `entries` announces.
fn first_announced(entries: &[SignedEntry]) -> Option<Timestamp> {
    entries
        .iter()
        .filter_map(|e| match e.body() {
            EntryBody::Open(o) => segment_start_from_name(o.file.as_str()),
            _ => None,
        })
        .min()
}

/// The keys to check an excerpt with, ordered so that the one that signed its first entry comes
/// first: an excerpt usually holds no `start` entry naming the key in use (and after a rotation
/// the registry lists the retired key first). Without trusted keys, the bundle's own (untrusted)
/// keys and those its `start` entries name.
fn excerpt_keys(
    entries: &[SignedEntry],
    trusted: &[(PublicKey, &'static str)],
    untrusted: &[PublicKey],
) -> Vec<(PublicKey, &'static str)> {
    let mut keys: Vec<(PublicKey, &'static str)> = trusted.to_vec();
    if keys.is_empty() {
        let named = entries.iter().filter_map(|e| match e.body() {
            EntryBody::Start(s) => Some(s.key),
            _ => None,
        });
        for k in untrusted.iter().copied().chain(named) {
            if !keys.iter().any(|(o, _)| *o == k) {
                keys.push((k, ""));
            }
        }
    }
    if let Some(first) = entries.first() {
        if let Some(i) = keys.iter().position(|(k, _)| first.signature_valid(k)) {
            let k = keys.remove(i);
            keys.insert(0, k);
        }
    }
    keys
}

pub(crate) fn verify_camera(dir: &Path, opts: &VerifyOptions) -> CameraReport {
    verify_camera_as(dir, opts, None)
}

/// [`verify_camera`] for a camera of a bundle, whose manifest must be of `expected`
/// (station, camera).
pub(crate) fn verify_camera_as(
    dir: &Path,
    opts: &VerifyOptions,
    expected: Option<(&StationId, &CameraId)>,
) -> CameraReport {
    let mut report = CameraReport::new(dir);
    let bytes = match std::fs::read(dir.join(MANIFEST_FILE)) {
        Ok(b) => b,
        Err(e) => {
            report.findings.push(Finding::Unreadable(e.to_string()));
            return report;
        }
    };
    let parsed = parse_manifest(&bytes);
    report.entries = parsed.entries.len();
    report
        .findings
        .extend(parsed.problems.iter().cloned().map(Finding::Manifest));
    let entries = &parsed.entries;
    let Some(first) = entries.first() else {
        report.findings.push(Finding::Empty);
        return report;
    };
    let station = first.station().clone();
    if let Some((s, c)) = expected {
        if s != first.station() || c != first.camera() {
            report.findings.push(Finding::NotTheBundles {
                expected: format!("station {s} camera {c}"),
                found: format!("station {} camera {}", first.station(), first.camera()),
            });
        }
    }
    if opts.excerpt {
        report.excerpt = entries.last().map(|last| (first.seq(), last.seq()));
    }

    // Keys: those the reader trusts for this station; otherwise the manifest's own (untrusted).
    let trusted = opts.trust.keys_for(&station);
    if opts.excerpt {
        let keys = excerpt_keys(entries, &trusted, &opts.untrusted_keys);
        report.keys = keys.iter().map(|(k, _)| *k).collect();
        if !trusted.is_empty() {
            // One source per key, in the keys' order.
            report.trust = keys.iter().map(|(_, from)| *from).collect();
        }
    } else if trusted.is_empty() {
        report.keys = entries
            .iter()
            .filter_map(|e| match e.body() {
                EntryBody::Start(s) => Some(s.key),
                _ => None,
            })
            .take(1)
            .collect();
        if report.keys.is_empty() {
            report.keys = opts.untrusted_keys.clone();
        }
    } else {
        report.keys = trusted.iter().map(|(k, _)| *k).collect();
        report.trust = trusted.iter().map(|(_, from)| *from).collect();
        report.trust.dedup();
    }
    if report.keys.is_empty() {
        report.findings.push(Finding::NoKey);
    } else {
        let first_seq = first.seq();
        let announced = first_announced(entries);
        report.findings.extend(
            verify_chain_keys(entries, &report.keys)
                .into_iter()
                .filter(|p| !(opts.excerpt && excerpt_allows(p, first_seq, announced)))
                .map(Finding::Manifest),
        );
    }

    // Heads the controller witnessed: the manifest must reach each one, unchanged.
    let camera = first.camera().clone();
    for w in opts.trust.witnesses_for(&station) {
        for head in w.heads_of(&camera) {
            // A head before an excerpt's first line cannot be checked against it. A head at or
            // after it must be reached, unchanged, as for a whole manifest.
            if opts.excerpt && head.next_seq <= first.seq() {
                report.heads_unchecked += 1;
                continue;
            }
            report.heads_checked += 1;
            report.heads_timestamped += usize::from(head.tsa.is_some());
            if let Some(problem) = check_head(entries, &head.chain(&station)) {
                report.findings.push(Finding::Witness {
                    received_at: head.received_at,
                    problem,
                });
            }
        }
    }

    let (first_t, last_t) = timeline_bounds(entries);
    let from = opts.from.or(first_t);
    let to = opts.to.or(last_t);

    // Hash the files the manifest says are present (those overlapping the window). A bundle
    // holds only the window's; any other listed file it holds must match too.
    let t0 = Instant::now();
    for e in present_segments(entries) {
        let EntryBody::Segment(s) = e.body() else {
            continue;
        };
        if let (Some(f), Some(t)) = (from, to) {
            if (s.end < f || s.start > t) && !(opts.excerpt && dir.join(s.file.as_str()).exists()) {
                continue;
            }
        }
        report.files_checked += 1;
        match check_segment_in_dir(dir, e) {
            Ok(()) => report.bytes_checked += s.size,
            Err(p) => report.findings.push(Finding::Manifest(p)),
        }
    }
    report.hashing_time = t0.elapsed();

    // Files on disk the manifest does not list.
    let listed: HashSet<&str> = entries
        .iter()
        .filter_map(|e| match e.body() {
            EntryBody::Segment(s) => Some(s.file.as_str()),
            _ => None,
        })
        .collect();
    let announced = announced_tail(entries);
    let legacy_tail = entries.last().is_some_and(|e| e.version() < 2);
    for rel in segment_files(dir) {
        if listed.contains(rel.as_str()) {
            continue;
        }
        let pending = if legacy_tail {
            // Schema 1 agents did not announce files: one newer than the last entry is the
            // segment being recorded or a crash leftover.
            matches!((segment_start_from_name(&rel), last_t), (Some(s), Some(end)) if s >= end)
        } else {
            announced.contains(rel.as_str())
        };
        if pending {
            report.pending_files.push(rel);
        } else {
            report.findings.push(Finding::UnlistedFile(rel));
        }
    }

    if let (Some(f), Some(t)) = (from, to) {
        report.coverage = Some(coverage(entries, f, t));
    }
    report.grade();
    report
}

/// Files announced by an `open` entry that no segment entry closed and no clean `stop`
/// followed: only those may legitimately exist unlisted.
fn announced_tail(entries: &[SignedEntry]) -> HashSet<&str> {
    let mut open: HashSet<&str> = HashSet::new();
    for e in entries {
        match e.body() {
            EntryBody::Open(o) => {
                open.insert(o.file.as_str());
            }
            EntryBody::Segment(s) => {
                open.remove(s.file.as_str());
            }
            EntryBody::Stop(_) => open.clear(),
            _ => {}
        }
    }
    open
}

/// First start and last end of the segments and gaps.
fn timeline_bounds(entries: &[SignedEntry]) -> (Option<Timestamp>, Option<Timestamp>) {
    let spans = entries.iter().filter_map(|e| e.body().span());
    spans.fold((None, None), |(lo, hi), (s, e)| {
        (
            Some(lo.map_or(s, |l: Timestamp| l.min(s))),
            Some(hi.map_or(e, |h: Timestamp| h.max(e))),
        )
    })
}

/// Segment files under a camera folder, as `YYYY-MM-DD/name.ts`.
fn segment_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let Ok(days) = std::fs::read_dir(dir) else {
        return out;
    };
    for day in days.flatten().map(|d| d.path()).filter(|p| p.is_dir()) {
        let Ok(files) = std::fs::read_dir(&day) else {
            continue;
        };
        for f in files.flatten().map(|f| f.path()) {
            if f.extension().and_then(|e| e.to_str()) == Some(SEGMENT_EXT) {
                if let Some(rel) = f.strip_prefix(dir).ok().and_then(Path::to_str) {
                    out.push(rel.to_owned());
                }
            }
        }
    }
    out.sort();
    out
}
