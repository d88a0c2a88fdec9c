//! Appending signed entries to a camera's manifest file, crash-safely.
//!
//! The format is `stationwatch_protocol::manifest` (see `docs/manifest.md`). This side adds the
//! file handling: resuming after a crash (a torn last line is cut off, never chained to), one
//! `write` plus `fdatasync` per entry, and rolling back a partial write (disk full) so the file
//! never holds half an entry followed by a good one.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use stationwatch_protocol::manifest::{
    parse_manifest, resume_point, sign_entry, Chain, EntryBody, GapReason, ResumeError, SignError,
    SignedEntry, StationKey, Timestamp, MANIFEST_FILE,
};
use stationwatch_protocol::{CameraId, StationId};
use tracing::{error, warn};

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("manifest {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("signing manifest entry: {0}")]
    Sign(#[from] SignError),
}

/// What the manifest said about the previous run, read when it was opened.
#[derive(Debug, Clone, Default)]
pub struct PreviousRun {
    /// Why recording stopped before this start (`None` for a new manifest).
    pub restart_reason: Option<GapReason>,
    /// End of the last segment or gap.
    pub timeline_end: Option<Timestamp>,
    /// Every segment file name the manifest lists (present or deleted).
    pub listed_files: std::collections::HashSet<String>,
    /// Files announced by an `open` entry that no `segment` entry closed and no `stop` followed,
    /// with the announcement's time: the only files the agent may adopt after an unclean stop.
    pub announced: std::collections::HashMap<String, Timestamp>,
    /// The manifest was continued and its last entry is not `stop`: the previous run ended
    /// uncleanly (crash, SIGKILL, power cut). Only then are announced files adopted.
    pub unclean_stop: bool,
    /// Legal holds in force at the end of the manifest (`hold` entries not yet released).
    pub holds: std::collections::HashMap<String, stationwatch_protocol::manifest::Hold>,
    /// Set when the old manifest could not be continued and was moved aside.
    pub moved_aside: Option<PathBuf>,
}

pub struct ManifestWriter {
    path: PathBuf,
    file: File,
    len: u64,
    chain: Chain,
    key: Arc<StationKey>,
}

impl ManifestWriter {
    /// Opens (or creates) `<camera_dir>/manifest.jsonl` for appending.
    pub fn open(
        camera_dir: &Path,
        station: &StationId,
        camera: &CameraId,
        key: Arc<StationKey>,
    ) -> Result<(Self, PreviousRun), ManifestError> {
        let path = camera_dir.join(MANIFEST_FILE);
        let io_err = |source| ManifestError::Io {
            path: path.clone(),
            source,
        };
        std::fs::create_dir_all(camera_dir).map_err(io_err)?;
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
            Err(e) => return Err(io_err(e)),
        };
        let mut previous = PreviousRun::default();
        let (chain, truncate_to) = match resume_point(&bytes, station, camera) {
            Ok(rp) => {
                previous.restart_reason = rp.restart_reason();
                previous.unclean_stop = previous.restart_reason == Some(GapReason::Crash);
                for e in parse_manifest(&bytes).entries {
                    match e.body() {
                        EntryBody::Segment(s) => {
                            previous.listed_files.insert(s.file.as_str().to_owned());
                            previous.announced.remove(s.file.as_str());
                        }
                        EntryBody::Open(o) => {
                            previous.announced.insert(o.file.as_str().to_owned(), o.at);
                        }
                        // After a clean stop nothing is being written: an announcement it did not
                        // close is dead (the file was never created, or was empty).
                        EntryBody::Stop(_) => previous.announced.clear(),
                        EntryBody::Hold(h) => {
                            previous.holds.insert(h.id.clone(), h.clone());
                        }
                        EntryBody::Release(r) => {
                            previous.holds.remove(&r.id);
                        }
                        _ => {}
                    }
                    // The last entry may be `stop`: the timeline ends with the last span.
                    if let Some((_, end)) = e.body().span() {
                        previous.timeline_end = Some(end);
                    }
                }
                (rp.chain, rp.truncate_to)
            }
            Err(e) => {
                // Files the damaged manifest lists are not foreign, but nothing is adopted.
                for entry in parse_manifest(&bytes).entries {
                    if let EntryBody::Segment(s) = entry.body() {
                        previous.listed_files.insert(s.file.as_str().to_owned());
                    }
                }
                // The last complete line is not a valid entry of this camera: damaged or
                // tampered with. Never append to it and never lose it: keep it for the
                // investigators and start a new chain (the verifier shows the break).
                let aside =
                    path.with_extension(format!("jsonl.damaged-{}", Timestamp::now().unix_ms()));
                error!(
                    manifest = %path.display(),
                    moved_to = %aside.display(),
                    error = %describe(&e),
                    "manifest cannot be continued; starting a new chain"
                );
                std::fs::rename(&path, &aside).map_err(io_err)?;
                previous.moved_aside = Some(aside);
                previous.restart_reason = Some(GapReason::Crash);
                (Chain::genesis(station.clone(), camera.clone()), None)
            }
        };
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io_err)?;
        let mut len = file.metadata().map_err(io_err)?.len();
        if let Some(t) = truncate_to {
            warn!(
                manifest = %path.display(),
                torn_bytes = len.saturating_sub(t),
                "manifest ends in a torn line (crash while writing); cutting it off"
            );
            file.set_len(t).map_err(io_err)?;
            file.sync_data().map_err(io_err)?;
            len = t;
        }
        Ok((
            Self {
                path,
                file,
                len,
                chain,
                key,
            },
            previous,
        ))
    }

    #[cfg(test)]
    /// The chain head: next sequence number and hash of the last entry.
    pub fn chain(&self) -> &Chain {
        &self.chain
    }

    /// Signs `body`, appends it as one line and makes it durable. On a write error the file is
    /// cut back to its previous length and the chain does not advance: the same body can be
    /// appended again later.
    pub fn append(&mut self, body: EntryBody) -> Result<SignedEntry, ManifestError> {
        let entry = sign_entry(&self.key, &self.chain, body)?;
        let mut line = Vec::with_capacity(entry.line().len() + 1);
        line.extend_from_slice(entry.line().as_bytes());
        line.push(b'\n');
        if let Err(e) = self.file.write_all(&line) {
            if let Err(e2) = self.file.set_len(self.len) {
                error!(manifest = %self.path.display(), error = %e2, "cannot roll back a partial manifest line");
            }
            return Err(ManifestError::Io {
                path: self.path.clone(),
                source: e,
            });
        }
        self.len += line.len() as u64;
        if let Err(e) = self.file.sync_data() {
            warn!(manifest = %self.path.display(), error = %e, "fdatasync of manifest failed");
        }
        self.chain = Chain::after(&entry);
        Ok(entry)
    }
}

fn describe(e: &ResumeError) -> String {
    e.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use stationwatch_protocol::manifest::{verify_chain, Stop};

    fn ids() -> (StationId, CameraId) {
        (
            StationId::new("S-1").unwrap(),
            CameraId::new("cam").unwrap(),
        )
    }

    fn stop() -> EntryBody {
        EntryBody::Stop(Stop {
            at: Timestamp::now(),
        })
    }

    #[test]
    fn resumes_the_chain_across_reopen_and_cuts_a_torn_tail() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StationKey::generate().unwrap());
        let (st, cam) = ids();
        let (mut w, prev) = ManifestWriter::open(dir.path(), &st, &cam, key.clone()).unwrap();
        assert!(prev.restart_reason.is_none());
        w.append(stop()).unwrap();
        w.append(stop()).unwrap();
        drop(w);
        // A crash in the middle of the next line.
        let path = dir.path().join(MANIFEST_FILE);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"v\":1,\"seq\":2,\"pre").unwrap();
        drop(f);

        let (mut w, prev) = ManifestWriter::open(dir.path(), &st, &cam, key.clone()).unwrap();
        assert_eq!(prev.restart_reason, Some(GapReason::AgentRestart));
        assert_eq!(w.chain().next_seq, 2);
        w.append(stop()).unwrap();
        let parsed = parse_manifest(&std::fs::read(&path).unwrap());
        assert!(parsed.problems.is_empty(), "{:?}", parsed.problems);
        assert_eq!(parsed.entries.len(), 3);
        assert!(verify_chain(&parsed.entries, &key.public()).is_empty());
    }

    #[test]
    fn a_damaged_last_line_is_moved_aside_not_appended_to() {
        let dir = tempfile::tempdir().unwrap();
        let key = Arc::new(StationKey::generate().unwrap());
        let (st, cam) = ids();
        let (mut w, _) = ManifestWriter::open(dir.path(), &st, &cam, key.clone()).unwrap();
        w.append(stop()).unwrap();
        drop(w);
        let path = dir.path().join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path)
            .unwrap()
            .replace("\"seq\":0", "\"seq\": 0");
        std::fs::write(&path, &text).unwrap();
        let (mut w, prev) = ManifestWriter::open(dir.path(), &st, &cam, key).unwrap();
        let aside = prev.moved_aside.expect("moved aside");
        assert_eq!(std::fs::read_to_string(aside).unwrap(), text);
        assert_eq!(w.chain().next_seq, 0);
        w.append(stop()).unwrap();
    }
}
