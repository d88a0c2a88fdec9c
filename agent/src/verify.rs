//! `station-agent verify`: offline check of a recordings folder (or one camera's folder).
//!
//! For every camera: the manifest is read (malformed lines and a torn tail are findings), the
//! chain and signatures are checked against the station's public key, every segment the
//! manifest says is present is hashed, files the manifest does not list are found, and the
//! coverage of the requested window is computed: what is recorded, each gap with its reason,
//! what retention deleted, and any time nothing explains.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use stationwatch_protocol::manifest::{
    check_segment_in_dir, coverage, parse_manifest, present_segments, verify_chain, Coverage,
    EntryBody, Problem, PublicKey, SignedEntry, Timestamp, MANIFEST_FILE,
};

use crate::recording::segment::{segment_start_from_name, SEGMENT_EXT};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// The station's public key; without it the key of the manifest's own `start` entry is
    /// used, which proves integrity but not authorship.
    pub public_key: Option<PublicKey>,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub camera: Option<String>,
}

/// Something wrong found by verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Finding {
    #[error("{0}")]
    Manifest(#[from] Problem),
    /// A segment file inside the manifest's timeline that it does not list: inserted.
    #[error("file {0} is not listed in the manifest (inserted or renamed)")]
    UnlistedFile(String),
    #[error("no public key given and the manifest has no start entry naming one")]
    NoKey,
    #[error("cannot read manifest: {0}")]
    Unreadable(String),
}

/// The result for one camera.
#[derive(Debug, Clone)]
pub struct CameraReport {
    pub camera: String,
    pub dir: PathBuf,
    pub entries: usize,
    pub key: Option<PublicKey>,
    /// The key came from the manifest itself, not from the caller.
    pub key_from_manifest: bool,
    pub files_checked: usize,
    pub bytes_checked: u64,
    pub hashing_time: Duration,
    pub coverage: Option<Coverage>,
    pub findings: Vec<Finding>,
    /// Files newer than the last entry: being recorded, or left by a crash (the agent enters
    /// them at its next start). Not proof of anything yet, not a fault.
    pub pending_files: Vec<String>,
}

impl CameraReport {
    /// Everything checks: no finding and no unexplained time in the window.
    pub fn ok(&self) -> bool {
        self.findings.is_empty()
            && self
                .coverage
                .as_ref()
                .is_some_and(|c| c.unexplained.is_empty())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0} holds no manifest ({MANIFEST_FILE}) and no camera folder with one")]
    NothingToVerify(PathBuf),
    #[error("no camera {0:?} under the given path")]
    NoSuchCamera(String),
}

/// Verifies `path`: a camera folder (holding `manifest.jsonl`) or a folder of camera folders.
pub fn verify(path: &Path, opts: &VerifyOptions) -> Result<Vec<CameraReport>, VerifyError> {
    let mut dirs: Vec<PathBuf> = Vec::new();
    if path.join(MANIFEST_FILE).is_file() {
        dirs.push(path.to_owned());
    } else if let Ok(rd) = std::fs::read_dir(path) {
        dirs = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
    }
    if dirs.is_empty() {
        return Err(VerifyError::NothingToVerify(path.to_owned()));
    }
    if let Some(cam) = &opts.camera {
        dirs.retain(|d| d.file_name().and_then(|n| n.to_str()) == Some(cam.as_str()));
        if dirs.is_empty() {
            return Err(VerifyError::NoSuchCamera(cam.clone()));
        }
    }
    Ok(dirs.iter().map(|d| verify_camera(d, opts)).collect())
}

fn verify_camera(dir: &Path, opts: &VerifyOptions) -> CameraReport {
    let mut report = CameraReport {
        camera: dir
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned(),
        dir: dir.to_owned(),
        entries: 0,
        key: None,
        key_from_manifest: false,
        files_checked: 0,
        bytes_checked: 0,
        hashing_time: Duration::ZERO,
        coverage: None,
        findings: Vec::new(),
        pending_files: Vec::new(),
    };
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

    let key = match &opts.public_key {
        Some(k) => Some(*k),
        None => {
            report.key_from_manifest = true;
            entries.iter().find_map(|e| match e.body() {
                EntryBody::Start(s) => Some(s.key),
                _ => None,
            })
        }
    };
    match &key {
        Some(k) => report
            .findings
            .extend(verify_chain(entries, k).into_iter().map(Finding::Manifest)),
        None => report.findings.push(Finding::NoKey),
    }
    report.key = key;

    let (first, last) = timeline_bounds(entries);
    let from = opts.from.or(first);
    let to = opts.to.or(last);

    // Hash the files the manifest says are present (those overlapping the window).
    let t0 = Instant::now();
    for e in present_segments(entries) {
        let EntryBody::Segment(s) = e.body() else {
            continue;
        };
        if let (Some(f), Some(t)) = (from, to) {
            if s.end < f || s.start > t {
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
    for rel in segment_files(dir) {
        if listed.contains(rel.as_str()) {
            continue;
        }
        let start =
            segment_start_from_name(Path::new(&rel)).and_then(|t| Timestamp::from_datetime(t).ok());
        match (start, last) {
            (Some(s), Some(end)) if s >= end => report.pending_files.push(rel),
            _ => report.findings.push(Finding::UnlistedFile(rel)),
        }
    }

    if let (Some(f), Some(t)) = (from, to) {
        report.coverage = Some(coverage(entries, f, t));
    }
    report
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

/// Human-readable report, as `station-agent verify` prints it.
pub fn render(reports: &[CameraReport]) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    for r in reports {
        let _ = writeln!(s, "camera {} ({})", r.camera, r.dir.display());
        match &r.key {
            Some(k) if r.key_from_manifest => {
                let _ = writeln!(
                    s,
                    "  key       {} (taken from the manifest itself: compare it with the station's registered fingerprint, or pass --public-key)",
                    k.fingerprint()
                );
            }
            Some(k) => {
                let _ = writeln!(s, "  key       {} (given)", k.fingerprint());
            }
            None => {}
        }
        let secs = r.hashing_time.as_secs_f64().max(1e-9);
        let _ = writeln!(
            s,
            "  manifest  {} entries; {} files hashed, {:.1} MB in {:.2} s ({:.0} MB/s)",
            r.entries,
            r.files_checked,
            r.bytes_checked as f64 / 1e6,
            secs,
            r.bytes_checked as f64 / 1e6 / secs
        );
        if let Some(c) = &r.coverage {
            let window = c.to.ms_since(c.from).max(0);
            let pct = if window > 0 {
                100.0 * c.recorded_ms() as f64 / window as f64
            } else {
                100.0
            };
            let _ = writeln!(s, "  window    {} .. {}", c.from, c.to);
            let _ = writeln!(
                s,
                "  recorded  {} of {} ({pct:.2} %) in {} segments",
                hms(c.recorded_ms()),
                hms(window),
                c.segments.len()
            );
            for g in &c.gaps {
                let _ = writeln!(
                    s,
                    "  gap       {} .. {}  {:>9}  {}{}",
                    g.gap.start,
                    g.gap.end,
                    hms(g.gap.end.ms_since(g.gap.start)),
                    g.gap.reason,
                    if g.gap.detail.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", g.gap.detail)
                    }
                );
            }
            for d in &c.deleted {
                let _ = writeln!(
                    s,
                    "  deleted   {} .. {}  by policy {} at {} ({})",
                    d.segment.start, d.segment.end, d.policy, d.at, d.detail
                );
            }
            for u in &c.unclean_starts {
                let _ = writeln!(s, "  restart   {} after an unclean stop", u.at);
            }
            for u in &c.unexplained {
                let _ = writeln!(
                    s,
                    "  MISSING   {} .. {}  {:>9}  nothing in the manifest explains this time",
                    u.start,
                    u.end,
                    hms(u.duration_ms())
                );
            }
        }
        for p in &r.pending_files {
            let _ = writeln!(
                s,
                "  pending   {p} (newer than the manifest: being recorded, or entered at the agent's next start)"
            );
        }
        for f in &r.findings {
            let _ = writeln!(s, "  PROBLEM   {f}");
        }
        let _ = writeln!(s, "  result    {}", if r.ok() { "OK" } else { "FAILED" });
    }
    s
}

fn hms(ms: i64) -> String {
    let ms = ms.max(0);
    let t = ms / 1000;
    format!(
        "{}h{:02}m{:02}.{:03}s",
        t / 3600,
        t / 60 % 60,
        t % 60,
        ms % 1000
    )
}
