//! The reference writer's segment file names: `YYYY-MM-DD/YYYYMMDDTHHMMSS.sssZ.ts` under the
//! camera directory (a clash gets `.N` before the extension). Verifiers use it to find segment
//! files the manifest does not list.

use super::time::Timestamp;

/// Extension of segment files.
pub const SEGMENT_EXT: &str = "ts";

/// The UTC start time encoded in a segment file's name (`YYYYMMDDTHHMMSS.mmmZ[.n].ts`; any
/// leading folders are ignored).
pub fn segment_start_from_name(name: &str) -> Option<Timestamp> {
    let base = name.rsplit('/').next()?;
    let stamp = base.get(..19)?;
    let naive = chrono::NaiveDateTime::parse_from_str(stamp, "%Y%m%dT%H%M%S%.3f").ok()?;
    if base.get(19..20) != Some("Z") || !base.ends_with(&format!(".{SEGMENT_EXT}")) {
        return None;
    }
    Timestamp::from_datetime(naive.and_utc()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_start() {
        let t = segment_start_from_name("2026-11-21/20261121T152600.123Z.ts").unwrap();
        assert_eq!(t.to_string(), "2026-11-21T15:26:00.123Z");
        assert!(segment_start_from_name("20261121T152600.123Z.1.ts").is_some());
        assert!(segment_start_from_name("manifest.jsonl").is_none());
        assert!(segment_start_from_name("20261121T152600.123Z.mp4").is_none());
    }
}
