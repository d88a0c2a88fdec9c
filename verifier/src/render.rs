//! The human-readable report `verify` prints.

use std::fmt::Write;

use stationwatch_protocol::trust::Verdict;

use crate::Report;

/// Renders the report: per camera its key and trust, what was hashed, the window's coverage
/// (each gap with its reason, each deletion with its policy, unsynchronised clock), problems and
/// its verdict; then the overall verdict with what it means.
pub fn render(report: &Report) -> String {
    let mut s = String::new();
    if let Some(b) = &report.bundle {
        let _ = writeln!(
            s,
            "evidence bundle of request {} for station {}, cameras {}, window {} to {}",
            b.request,
            b.station,
            b.cameras.join(", "),
            b.from,
            b.to
        );
        let _ = writeln!(
            s,
            "  keys.json and witness.json {}",
            if b.controller_files_used {
                "used: signed by the controller key given"
            } else {
                "NOT used: give the controller's key (--controller-key) to trust them"
            }
        );
    }
    for r in &report.cameras {
        let _ = writeln!(s, "camera {} ({})", r.camera, r.dir.display());
        for (i, k) in r.keys.iter().enumerate() {
            let from = r.trust.get(i).copied().unwrap_or(if r.trust.is_empty() {
                "taken from the manifest or the bundle itself: NOT TRUSTED (pass --public-key, --keys, --witness or --controller-key)"
            } else {
                "trusted"
            });
            let _ = writeln!(s, "  key       {} ({from})", k.fingerprint());
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
        if let Some((first, last)) = r.excerpt {
            let _ = writeln!(
                s,
                "  excerpt   seq {first}..{last} (what comes before seq {first} is not in the bundle and not checked)"
            );
        }
        if r.heads_checked > 0 {
            let _ = writeln!(
                s,
                "  witness   {} heads witnessed by the controller checked ({} time-stamped)",
                r.heads_checked, r.heads_timestamped
            );
        }
        if r.heads_unchecked > 0 {
            let _ = writeln!(
                s,
                "  witness   {} head(s) before the excerpt: not checkable",
                r.heads_unchecked
            );
        }
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
                let detail = if g.gap.detail.is_empty() {
                    String::new()
                } else {
                    format!(": {}", g.gap.detail)
                };
                let _ = writeln!(
                    s,
                    "  gap       {} .. {}  {:>9}  {}{detail}",
                    g.gap.start,
                    g.gap.end,
                    hms(g.gap.end.ms_since(g.gap.start)),
                    g.gap.reason,
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
            let unsynced: Vec<_> = c.unsynced_segments().collect();
            if let (Some(a), Some(b)) = (unsynced.first(), unsynced.last()) {
                let _ = writeln!(
                    s,
                    "  clock     {} segments ({} .. {}) recorded while the station clock was not synchronised: their times are the station's word only",
                    unsynced.len(),
                    a.segment.start,
                    b.segment.end
                );
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
                "  pending   {p} (announced, not yet entered: being recorded, or entered at the agent's next start)"
            );
        }
        for f in &r.findings {
            let _ = writeln!(s, "  PROBLEM   {f}");
        }
        let _ = writeln!(s, "  result    {}", r.verdict);
    }
    let _ = writeln!(
        s,
        "verdict   {}: {}",
        report.verdict,
        meaning(report.verdict)
    );
    s
}

/// One line per verdict, as `verify --help` and the README explain them.
pub fn meaning(v: Verdict) -> &'static str {
    match v {
        Verdict::Ok => "signed by a trusted key, chain whole, every file matches, window fully recorded",
        Verdict::OkWithGaps => {
            "signed by a trusted key, chain whole, every file matches; the missing time is explained by signed entries"
        }
        Verdict::Untrusted => {
            "consistent, but no trusted key was given: this proves nothing about who signed it"
        }
        Verdict::Failed => "something is altered, missing, inserted, cut short or unexplained",
    }
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
