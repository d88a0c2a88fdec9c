//! Checking a chain of entries against the station key, against a known head, and against the
//! segment files.

use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::path::Path;

use super::entry::{Chain, EntryBody, Segment, SignedEntry};
use super::hash::Hash256;
use super::key::PublicKey;
use super::problem::{DeletionFault, Problem};
use super::{GENESIS_PREV, TIME_TOLERANCE_MS};

/// Checks a chain of entries (in file order) against the station's public key. Returns every
/// finding; an empty list means the chain is intact, as far as it goes (see [`check_head`] for
/// its end, and [`check_segment_file`] for the files).
///
/// Each entry is checked on its own against the entry before it in the list:
/// seq = previous seq + 1 ([`Problem::SeqJump`]), prev = SHA-256 of the previous line
/// ([`Problem::ChainBroken`]), signature ([`Problem::BadSignature`]), station and camera equal to
/// the first entry's, time order of segments and gaps, and validity of deletions.
pub fn verify_chain(entries: &[SignedEntry], key: &PublicKey) -> Vec<Problem> {
    verify_chain_keys(entries, std::slice::from_ref(key))
}

/// [`verify_chain`] for a station whose key was rotated: `keys` are every key registered for the
/// station (the first is used until a `start` entry names another). Each entry must be signed by
/// the key named in the latest `start` entry before it, and every `start` entry must name one of
/// `keys` ([`Problem::ForeignKey`] otherwise, and its entries are checked against the key in use
/// before it).
pub fn verify_chain_keys(entries: &[SignedEntry], keys: &[PublicKey]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let Some(mut key) = keys.first() else {
        return problems;
    };
    let Some(first) = entries.first() else {
        return problems;
    };
    if first.seq() != 0 {
        problems.push(Problem::NotFromGenesis {
            first_seq: first.seq(),
        });
    }

    // Earlier entries by seq (first occurrence), for deletions.
    let mut by_seq: HashMap<u64, &EntryBody> = HashMap::new();
    let mut deleted: HashSet<u64> = HashSet::new();
    // Live segment files -> seq.
    let mut files: HashMap<&str, u64> = HashMap::new();
    let mut timeline_end: Option<super::Timestamp> = None;
    let mut previous: Option<&SignedEntry> = None;
    // Legal holds in force at this point of the chain: id -> (from, to).
    let mut holds: HashMap<&str, (super::Timestamp, super::Timestamp)> = HashMap::new();
    // Files announced by an `open` entry and not yet entered as a segment.
    let mut announced: HashSet<&str> = HashSet::new();

    for e in entries {
        let seq = e.seq();
        match previous {
            Some(p) => {
                let expected = p.seq().wrapping_add(1);
                if seq != expected {
                    problems.push(Problem::SeqJump {
                        expected,
                        found: seq,
                    });
                }
                if *e.prev() != p.hash() {
                    problems.push(Problem::ChainBroken { seq });
                }
            }
            None => {
                if seq == 0 && *e.prev() != GENESIS_PREV {
                    problems.push(Problem::ChainBroken { seq });
                }
            }
        }
        if let EntryBody::Start(s) = e.body() {
            match keys.iter().find(|k| **k == s.key) {
                Some(k) => key = k,
                None => problems.push(Problem::ForeignKey {
                    seq,
                    expected: key.fingerprint(),
                    found: s.key.fingerprint(),
                }),
            }
        }
        if !e.signature_valid(key) {
            problems.push(Problem::BadSignature { seq });
        }
        if e.station() != first.station() {
            problems.push(Problem::ForeignStation {
                seq,
                expected: first.station().clone(),
                found: e.station().clone(),
            });
        }
        if e.camera() != first.camera() {
            problems.push(Problem::ForeignCamera {
                seq,
                expected: first.camera().clone(),
                found: e.camera().clone(),
            });
        }

        if let Some((start, end)) = e.body().span() {
            if end < start {
                problems.push(Problem::EndBeforeStart { seq });
            }
            if let Some(te) = timeline_end {
                let by_ms = te.ms_since(start);
                if by_ms > TIME_TOLERANCE_MS {
                    problems.push(Problem::TimeWentBackwards { seq, by_ms });
                }
            }
            timeline_end = Some(timeline_end.map_or(end, |te| te.max(end)));
        }

        match e.body() {
            EntryBody::Segment(s) => {
                // Schema 2 writers announce every file before creating it; a segment whose file
                // was never announced was not written by the agent that signs it.
                if e.version() >= 2 && !announced.remove(s.file.as_str()) {
                    problems.push(Problem::Unannounced {
                        seq,
                        file: s.file.clone(),
                    });
                }
                match files.get(s.file.as_str()) {
                    Some(&first_seq) => problems.push(Problem::DuplicateFile {
                        seq,
                        first_seq,
                        file: s.file.clone(),
                    }),
                    None => {
                        files.insert(s.file.as_str(), seq);
                    }
                }
            }
            EntryBody::Open(o) => {
                announced.insert(o.file.as_str());
            }
            EntryBody::Hold(h) => {
                holds.insert(h.id.as_str(), (h.from, h.to));
            }
            EntryBody::Release(r) => {
                holds.remove(r.id.as_str());
            }
            EntryBody::Deleted(d) => {
                let fault = match by_seq.get(&d.target) {
                    None => Some(DeletionFault::UnknownTarget),
                    Some(EntryBody::Segment(target)) => {
                        if deleted.contains(&d.target) {
                            Some(DeletionFault::AlreadyDeleted)
                        } else if target.file != d.file {
                            Some(DeletionFault::FileMismatch)
                        } else if target.sha256 != d.sha256 {
                            Some(DeletionFault::HashMismatch)
                        } else {
                            None
                        }
                    }
                    Some(_) => Some(DeletionFault::NotASegment),
                };
                match fault {
                    Some(fault) => problems.push(Problem::BadDeletion {
                        seq,
                        target: d.target,
                        fault,
                    }),
                    None => {
                        if let Some(EntryBody::Segment(target)) = by_seq.get(&d.target) {
                            let mut under: Vec<&str> = holds
                                .iter()
                                .filter(|(_, (from, to))| target.start < *to && *from < target.end)
                                .map(|(id, _)| *id)
                                .collect();
                            under.sort_unstable();
                            if let Some(hold) = under.first() {
                                problems.push(Problem::DeletedUnderHold {
                                    seq,
                                    target: d.target,
                                    hold: (*hold).to_owned(),
                                });
                            }
                        }
                        deleted.insert(d.target);
                        if files.get(d.file.as_str()) == Some(&d.target) {
                            files.remove(d.file.as_str());
                        }
                    }
                }
            }
            EntryBody::Start(_) | EntryBody::Gap(_) | EntryBody::Stop(_) => {}
        }
        by_seq.entry(seq).or_insert(e.body());
        previous = Some(e);
    }
    problems
}

/// Checks the manifest's end against a head known from elsewhere (e.g. the chain state the agent
/// last reported to the controller). A manifest can only be truncated at its end without breaking
/// the chain; this is how that is caught. `None` means the manifest reaches the head intact.
pub fn check_head(entries: &[SignedEntry], head: &Chain) -> Option<Problem> {
    let want = head.last_seq()?;
    match entries.iter().rev().find(|e| e.seq() == want) {
        Some(e) if e.hash() == head.prev => None,
        Some(_) => Some(Problem::HeadMismatch { seq: want }),
        None => Some(Problem::Truncated {
            expected_last: want,
            found_last: entries.last().map(|e| e.seq()),
        }),
    }
}

/// The segment entries whose files should exist: every segment not deleted by a valid
/// (policy) deletion entry. Use on a verified chain.
pub fn present_segments(entries: &[SignedEntry]) -> Vec<&SignedEntry> {
    let deleted: HashSet<(u64, Hash256)> = entries
        .iter()
        .filter_map(|e| match e.body() {
            EntryBody::Deleted(d) => Some((d.target, d.sha256)),
            _ => None,
        })
        .collect();
    entries
        .iter()
        .filter(|e| match e.body() {
            EntryBody::Segment(s) => !deleted.contains(&(e.seq(), s.sha256)),
            _ => false,
        })
        .collect()
}

fn segment_of(entry: &SignedEntry) -> Result<&Segment, Problem> {
    match entry.body() {
        EntryBody::Segment(s) => Ok(s),
        _ => Err(Problem::NotASegment { seq: entry.seq() }),
    }
}

/// Streams `reader` through SHA-256 and compares size and hash with the segment entry.
pub fn check_segment_file(entry: &SignedEntry, reader: impl Read) -> Result<(), Problem> {
    let seg = segment_of(entry)?;
    let unreadable = |error: String| Problem::Unreadable {
        seq: entry.seq(),
        file: seg.file.clone(),
        error,
    };
    let (hash, size) = Hash256::of_reader(reader).map_err(|e| unreadable(e.to_string()))?;
    if size != seg.size {
        return Err(Problem::SizeMismatch {
            seq: entry.seq(),
            file: seg.file.clone(),
            expected: seg.size,
            found: size,
        });
    }
    if hash != seg.sha256 {
        return Err(Problem::HashMismatch {
            seq: entry.seq(),
            file: seg.file.clone(),
        });
    }
    Ok(())
}

/// Opens the segment's file under `camera_dir` (its name is validated to stay inside) and runs
/// [`check_segment_file`]; a file that does not exist is [`Problem::MissingFile`].
pub fn check_segment_in_dir(camera_dir: &Path, entry: &SignedEntry) -> Result<(), Problem> {
    let seg = segment_of(entry)?;
    let path = camera_dir.join(seg.file.as_str());
    match std::fs::File::open(&path) {
        Ok(f) => check_segment_file(entry, f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Problem::MissingFile {
            seq: entry.seq(),
            file: seg.file.clone(),
        }),
        Err(e) => Err(Problem::Unreadable {
            seq: entry.seq(),
            file: seg.file.clone(),
            error: e.to_string(),
        }),
    }
}
