//! What each camera's manifest lists, read incrementally (only the bytes appended since the last
//! look) so that a months-long manifest is not parsed again on every pass. Only complete lines
//! are read: the ledger may be appending the next one. Lines themselves stay on disk; the index
//! keeps their offsets and what planning needs.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::PathBuf;

use stationwatch_protocol::manifest::{parse_line, EntryBody, Hash256, SegmentFile, Timestamp};

/// One manifest entry as planning sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Indexed {
    pub seq: u64,
    /// Byte offset and length of the line (without `\n`) in the manifest file.
    pub offset: u64,
    pub len: u32,
    /// `[start, end]` of a segment or gap.
    pub span: Option<(Timestamp, Timestamp)>,
    /// For segment entries: the file, its size and hash.
    pub segment: Option<(SegmentFile, u64, Hash256)>,
    /// A later `deleted` entry removed the file.
    pub deleted: bool,
}

pub struct ManifestIndex {
    path: PathBuf,
    /// Bytes of the file indexed so far (always at a line boundary).
    read_upto: u64,
    pub entries: Vec<Indexed>,
}

impl ManifestIndex {
    pub fn new(path: PathBuf) -> Self {
        ManifestIndex {
            path,
            read_upto: 0,
            entries: Vec::new(),
        }
    }

    /// Reads what was appended since the last call. A file that shrank (rewritten) is indexed
    /// again from the start. Lines that do not parse are skipped (the archive would refuse
    /// them, and `verify` reports them).
    pub fn refresh(&mut self) -> io::Result<()> {
        let mut f = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        let len = f.metadata()?.len();
        if len < self.read_upto {
            self.read_upto = 0;
            self.entries.clear();
        }
        if len == self.read_upto {
            return Ok(());
        }
        f.seek(SeekFrom::Start(self.read_upto))?;
        let mut buf = Vec::with_capacity((len - self.read_upto) as usize);
        f.take(len - self.read_upto).read_to_end(&mut buf)?;
        let complete = buf.iter().rposition(|b| *b == b'\n').map_or(0, |i| i + 1);
        let mut offset = self.read_upto;
        for line in buf[..complete].split(|b| *b == b'\n') {
            if line.is_empty() {
                offset += 1;
                continue;
            }
            let line_offset = offset;
            offset += line.len() as u64 + 1;
            let Ok(e) = parse_line(line) else {
                continue;
            };
            if let Some(last) = self.entries.last() {
                if e.seq() <= last.seq {
                    continue;
                }
            }
            if let EntryBody::Deleted(d) = e.body() {
                if let Some(target) = self.find_mut(d.target) {
                    target.deleted = true;
                }
            }
            let segment = match e.body() {
                EntryBody::Segment(s) => Some((s.file.clone(), s.size, s.sha256)),
                _ => None,
            };
            self.entries.push(Indexed {
                seq: e.seq(),
                offset: line_offset,
                len: line.len() as u32,
                span: e.body().span(),
                segment,
                deleted: false,
            });
        }
        self.read_upto += complete as u64;
        Ok(())
    }

    fn find_mut(&mut self, seq: u64) -> Option<&mut Indexed> {
        let i = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        self.entries.get_mut(i)
    }

    pub fn find(&self, seq: u64) -> Option<&Indexed> {
        let i = self.entries.binary_search_by_key(&seq, |e| e.seq).ok()?;
        self.entries.get(i)
    }

    /// The lines `from..=to` (by seq) as stored, each followed by `\n`, stopping before
    /// `max_bytes` would be exceeded (at least one line). `None` if a seq in the range is
    /// missing from the index.
    pub fn lines(&self, from: u64, to: u64, max_bytes: u64) -> io::Result<Option<(Vec<u8>, u64)>> {
        let Ok(start) = self.entries.binary_search_by_key(&from, |e| e.seq) else {
            return Ok(None);
        };
        let f = File::open(&self.path)?;
        let mut out = Vec::new();
        let mut last = None;
        for e in self.entries[start..].iter().take_while(|e| e.seq <= to) {
            if last.is_some_and(|l: u64| e.seq != l + 1) {
                return Ok(None);
            }
            if !out.is_empty() && out.len() as u64 + u64::from(e.len) + 1 > max_bytes {
                break;
            }
            let mut line = vec![0u8; e.len as usize];
            f.read_exact_at(&mut line, e.offset)?;
            out.extend_from_slice(&line);
            out.push(b'\n');
            last = Some(e.seq);
        }
        Ok(last.map(|l| (out, l)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stationwatch_protocol::manifest::{sign_entry, Chain, Gap, GapReason, StationKey};
    use stationwatch_protocol::{CameraId, StationId};
    use std::io::Write;

    #[test]
    fn appended_lines_are_indexed_once_and_read_back_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("manifest.jsonl");
        let key = StationKey::from_seed(&[1; 32]);
        let mut chain = Chain::genesis(
            StationId::new("s1").unwrap(),
            CameraId::new("desk").unwrap(),
        );
        let mut f = std::fs::File::create(&path).unwrap();
        let mut lines = Vec::new();
        let mut idx = ManifestIndex::new(path.clone());
        for i in 0..5 {
            let body = EntryBody::Gap(Gap {
                start: Timestamp::from_unix_ms(1000 * i).unwrap(),
                end: Timestamp::from_unix_ms(1000 * i + 500).unwrap(),
                reason: GapReason::CameraLost,
                detail: String::new(),
            });
            let e = sign_entry(&key, &chain, body).unwrap();
            chain = Chain::after(&e);
            lines.push(e.line().to_owned());
            let (head, tail) = e.line().as_bytes().split_at(20);
            f.write_all(head).unwrap();
            f.flush().unwrap();
            idx.refresh().unwrap();
            assert_eq!(idx.entries.len() as i64, i, "a torn line is not indexed");
            f.write_all(tail).unwrap();
            f.write_all(b"\n").unwrap();
            f.flush().unwrap();
            idx.refresh().unwrap();
        }
        assert_eq!(idx.entries.last().unwrap().seq, 4);
        let (bytes, last) = idx.lines(0, 2, 1 << 20).unwrap().unwrap();
        assert_eq!(last, 2);
        assert_eq!(
            String::from_utf8(bytes).unwrap(),
            format!("{}\n{}\n{}\n", lines[0], lines[1], lines[2])
        );
        let (bytes, last) = idx.lines(1, 4, 10).unwrap().unwrap();
        assert_eq!(
            (last, bytes.len()),
            (1, lines[1].len() + 1),
            "at least one line, then the limit"
        );
    }
}
