//! One stream folder: segments `<sequence>.ts` and a rolling live playlist `index.m3u8`
//! (RFC 8216), continuous across publishers and gateway restarts — the sequence numbers keep
//! growing, a new publisher (a rung change, a reconnect) or a restart starts with
//! `#EXT-X-DISCONTINUITY`, and `#EXT-X-DISCONTINUITY-SEQUENCE` counts those that slid out of
//! the window, so a player that is watching carries on instead of breaking.
//!
//! Every file is written to a temporary name and renamed into place: a web server or CDN
//! reading the folder never sees half a playlist or half a segment. Segments that left the
//! playlist are deleted a few segments later (a player may still be fetching them).

use std::collections::VecDeque;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use stationwatch_protocol::live::PLAYLIST;

/// Segments kept on disk after they left the playlist.
const KEEP_AFTER: usize = 3;
/// Sequence numbers above this in a folder are not ours (a file put there): ignored, so that
/// numbering never overflows.
const MAX_SEQUENCE: u64 = 1 << 53;
/// A segment longer than this in an old playlist means the playlist is not ours: start afresh.
const MAX_SEGMENT_SECONDS: f64 = 3600.0;

#[derive(Debug, Clone, PartialEq)]
struct Entry {
    sequence: u64,
    duration: f64,
    discontinuity: bool,
    bytes: u64,
}

pub struct HlsFolder {
    dir: PathBuf,
    window: usize,
    target: f64,
    entries: VecDeque<Entry>,
    /// Files out of the playlist, not deleted yet.
    retired: VecDeque<u64>,
    next_sequence: u64,
    discontinuity_sequence: u64,
    /// The next segment starts a new timeline.
    pending_discontinuity: bool,
}

#[derive(Debug, thiserror::Error)]
#[error("{path}: {source}")]
pub struct HlsError {
    path: PathBuf,
    source: std::io::Error,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> HlsError + '_ {
    move |source| HlsError {
        path: path.to_owned(),
        source,
    }
}

impl HlsFolder {
    /// Opens (creating it) a stream folder; a playlist left there by an earlier run is carried
    /// on: same sequence numbers onwards, a discontinuity before the first new segment.
    pub fn open(dir: &Path, window: usize, target_seconds: f64) -> Result<HlsFolder, HlsError> {
        fs::create_dir_all(dir).map_err(io(dir))?;
        let mut f = HlsFolder {
            dir: dir.to_owned(),
            window: window.max(2),
            target: target_seconds,
            entries: VecDeque::new(),
            retired: VecDeque::new(),
            next_sequence: 0,
            discontinuity_sequence: 0,
            pending_discontinuity: false,
        };
        let old = fs::read_to_string(dir.join(PLAYLIST)).ok();
        if let Some((entries, dseq)) = old.as_deref().and_then(parse_playlist) {
            f.next_sequence = entries.back().map_or(0, |e| e.sequence + 1);
            f.discontinuity_sequence = dseq;
            f.entries = entries;
            // Never more than the window, whatever the file said.
            while f.entries.len() > f.window {
                f.entries.pop_front();
            }
            f.pending_discontinuity = true;
        }
        // Segments no playlist names (an earlier run's leftovers, or a playlist lost): never
        // reuse their numbers, and delete them.
        let mut highest = None;
        for e in fs::read_dir(dir).map_err(io(dir))?.flatten() {
            let name = e.file_name();
            let Some(seq) = name
                .to_str()
                .and_then(|n| n.strip_suffix(".ts"))
                .and_then(|n| n.parse::<u64>().ok())
                .filter(|&n| n <= MAX_SEQUENCE)
            else {
                continue;
            };
            highest = highest.max(Some(seq));
            if !f.entries.iter().any(|en| en.sequence == seq) {
                let _ = fs::remove_file(e.path());
            }
        }
        if let Some(h) = highest {
            if h >= f.next_sequence {
                f.next_sequence = h + 1;
                f.pending_discontinuity = true;
            }
        }
        Ok(f)
    }

    /// The next segment comes from a new publisher (or after a gap).
    pub fn discontinuity(&mut self) {
        if !self.entries.is_empty() || self.next_sequence > 0 {
            self.pending_discontinuity = true;
        }
    }

    /// Writes a segment and the playlist naming it.
    pub fn add(&mut self, data: &[u8], duration: f64, discontinuity: bool) -> Result<(), HlsError> {
        let sequence = self.next_sequence;
        write_atomic(&self.dir.join(format!("{sequence}.ts")), data)?;
        self.next_sequence += 1;
        let discontinuity = std::mem::take(&mut self.pending_discontinuity) || discontinuity;
        self.entries.push_back(Entry {
            sequence,
            duration,
            discontinuity: discontinuity && !self.entries.is_empty(),
            bytes: data.len() as u64,
        });
        while self.entries.len() > self.window {
            let gone = self.entries.pop_front().expect("longer than the window");
            if gone.discontinuity {
                self.discontinuity_sequence += 1;
            }
            // The new first entry's own tag leaves the playlist with it: count it too.
            if let Some(first) = self.entries.front_mut() {
                if first.discontinuity {
                    first.discontinuity = false;
                    self.discontinuity_sequence += 1;
                }
            }
            self.retired.push_back(gone.sequence);
        }
        self.write_playlist()?;
        while self.retired.len() > KEEP_AFTER {
            let seq = self.retired.pop_front().expect("non-empty");
            let _ = fs::remove_file(self.dir.join(format!("{seq}.ts")));
        }
        Ok(())
    }

    fn write_playlist(&self) -> Result<(), HlsError> {
        write_atomic(&self.dir.join(PLAYLIST), self.playlist().as_bytes())
    }

    /// The playlist text.
    pub fn playlist(&self) -> String {
        let longest = self
            .entries
            .iter()
            .map(|e| e.duration)
            .fold(self.target, f64::max);
        let mut s = format!(
            "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:{}\n#EXT-X-MEDIA-SEQUENCE:{}\n#EXT-X-DISCONTINUITY-SEQUENCE:{}\n",
            longest.round().max(1.0) as u64,
            self.entries.front().map_or(self.next_sequence, |e| e.sequence),
            self.discontinuity_sequence
        );
        for e in &self.entries {
            if e.discontinuity {
                s.push_str("#EXT-X-DISCONTINUITY\n");
            }
            s.push_str(&format!("#EXTINF:{:.3},\n{}.ts\n", e.duration, e.sequence));
        }
        s
    }

    /// Segments in the playlist.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Bitrate of the segments in the playlist since the last discontinuity, kbit/s.
    pub fn kbps(&self) -> u32 {
        let mut bytes = 0u64;
        let mut secs = 0.0;
        for e in self.entries.iter().rev() {
            bytes += e.bytes;
            secs += e.duration;
            if e.discontinuity {
                break;
            }
        }
        if secs > 0.0 {
            (bytes as f64 * 8.0 / secs / 1000.0).round() as u32
        } else {
            0
        }
    }

    /// The sequence number the next segment gets.
    pub fn next_sequence(&self) -> u64 {
        self.next_sequence
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

/// Reads a playlist this module wrote: its entries and discontinuity sequence. Anything that
/// this module would not have written (a sequence number out of range, a duration that is not a
/// finite number of seconds in range) makes the whole playlist unreadable: the folder starts
/// afresh instead.
fn parse_playlist(text: &str) -> Option<(VecDeque<Entry>, u64)> {
    let mut entries = VecDeque::new();
    let mut dseq = 0;
    let mut duration = None;
    let mut disc = false;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            dseq = v.trim().parse().ok().filter(|&n| n <= MAX_SEQUENCE)?;
        } else if line == "#EXT-X-DISCONTINUITY" {
            disc = true;
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            duration = Some(
                v.trim_end_matches(',')
                    .split(',')
                    .next()?
                    .parse::<f64>()
                    .ok()
                    .filter(|d| d.is_finite() && (0.0..=MAX_SEGMENT_SECONDS).contains(d))?,
            );
        } else if let Some(seq) = line.strip_suffix(".ts") {
            let sequence = seq.parse().ok().filter(|&n| n <= MAX_SEQUENCE)?;
            entries.push_back(Entry {
                sequence,
                duration: duration.take()?,
                discontinuity: std::mem::take(&mut disc),
                bytes: 0,
            });
        }
    }
    Some((entries, dseq))
}

/// Writes a file through a temporary name in the same folder and renames it into place.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), HlsError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let tmp = dir.join(format!(".{name}.tmp"));
    let mut f = fs::File::create(&tmp).map_err(io(&tmp))?;
    f.write_all(data).map_err(io(&tmp))?;
    drop(f);
    fs::rename(&tmp, path).map_err(io(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_rolling_window_with_discontinuities_counted() {
        let tmp = tempfile::tempdir().unwrap();
        let mut h = HlsFolder::open(tmp.path(), 3, 2.0).unwrap();
        for _ in 0..3 {
            h.add(b"x", 2.0, false).unwrap();
        }
        h.discontinuity(); // a new publisher
        h.add(b"y", 2.5, false).unwrap();
        let p = h.playlist();
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:1\n"), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:0\n"), "{p}");
        assert!(p.contains("#EXT-X-TARGETDURATION:3\n"), "{p}");
        assert!(
            p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.500,\n3.ts\n"),
            "{p}"
        );
        for _ in 0..3 {
            h.add(b"z", 2.0, false).unwrap();
        }
        // The discontinuity slid out: counted, so players keep their timelines apart.
        let p = h.playlist();
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:4\n"), "{p}");
        assert!(p.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{p}");
        assert!(!p.contains("#EXT-X-DISCONTINUITY\n"), "{p}");
        // 3 in the playlist + up to 3 retired segments kept a little longer.
        let files = names(tmp.path());
        assert!(files.contains(&"index.m3u8".to_string()));
        assert_eq!(
            files.iter().filter(|n| n.ends_with(".ts")).count(),
            6,
            "{files:?}"
        );
        assert!(!files.contains(&"0.ts".to_string()));
    }

    #[test]
    fn a_restart_carries_the_sequence_on() {
        let tmp = tempfile::tempdir().unwrap();
        let mut h = HlsFolder::open(tmp.path(), 4, 2.0).unwrap();
        for _ in 0..6 {
            h.add(b"x", 2.0, false).unwrap();
        }
        let before = h.playlist();
        drop(h);
        // A stray file the playlist does not name is removed, and its number never reused.
        fs::write(tmp.path().join("9.ts"), b"old").unwrap();
        let mut h = HlsFolder::open(tmp.path(), 4, 2.0).unwrap();
        assert_eq!(h.playlist(), before);
        h.add(b"y", 2.0, false).unwrap();
        let p = h.playlist();
        assert!(
            p.contains("#EXT-X-DISCONTINUITY\n#EXTINF:2.000,\n10.ts\n"),
            "{p}"
        );
        assert!(p.contains("#EXT-X-MEDIA-SEQUENCE:3\n"), "{p}");
        assert_eq!(fs::read(tmp.path().join("10.ts")).unwrap(), b"y");
        assert!(!names(tmp.path()).iter().any(|n| n.starts_with('.')));
    }

    #[test]
    fn bitrate_of_the_current_publisher() {
        let tmp = tempfile::tempdir().unwrap();
        let mut h = HlsFolder::open(tmp.path(), 6, 2.0).unwrap();
        h.add(&vec![0; 500_000], 2.0, false).unwrap(); // 2000 kbit/s
        h.discontinuity();
        h.add(&vec![0; 50_000], 2.0, false).unwrap(); // 200 kbit/s
        h.add(&vec![0; 50_000], 2.0, false).unwrap();
        assert_eq!(h.kbps(), 200);
    }

    #[test]
    fn a_playlist_or_segment_put_in_the_folder_cannot_break_it() {
        let tmp = tempfile::tempdir().unwrap();
        // Numbers that would overflow, a duration that is not one: not ours, start afresh.
        fs::write(tmp.path().join("18446744073709551615.ts"), b"x").unwrap();
        fs::write(
            tmp.path().join(PLAYLIST),
            "#EXTM3U\n#EXT-X-DISCONTINUITY-SEQUENCE:0\n#EXTINF:inf,\n5.ts\n",
        )
        .unwrap();
        let mut h = HlsFolder::open(tmp.path(), 3, 2.0).unwrap();
        h.add(b"y", 2.0, false).unwrap();
        assert!(
            h.playlist().contains("#EXTINF:2.000,\n0.ts\n"),
            "{}",
            h.playlist()
        );
        // A long playlist is cut to the window.
        let tmp = tempfile::tempdir().unwrap();
        let long: String = (0..100)
            .map(|i| format!("#EXTINF:2.0,\n{i}.ts\n"))
            .collect();
        fs::write(tmp.path().join(PLAYLIST), format!("#EXTM3U\n{long}")).unwrap();
        let h = HlsFolder::open(tmp.path(), 3, 2.0).unwrap();
        assert_eq!(h.len(), 3);
        assert_eq!(h.next_sequence(), 100);
    }
}
