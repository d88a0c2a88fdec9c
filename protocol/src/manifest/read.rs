//! Reading manifest bytes into entries, reporting every line that is not one.

use serde::Deserialize;

use super::entry::{Chain, Entry, EntryBody, EntryKind, SignedEntry};
use super::entry::{Deleted, Gap, GapReason, Hold, Open, Release, Segment, Start, Stop};
use super::hash::{decode_lower_hex, Hash256};
use super::key::PublicKey;
use super::problem::{LineError, Problem};
use super::verify::verify_chain;
use super::{MIN_SCHEMA_VERSION, SCHEMA_VERSION};
use crate::ids::{CameraId, StationId};

/// The common fields, read from a line (the kind's own fields are read separately).
#[derive(Deserialize)]
struct Header {
    v: u64,
    seq: u64,
    prev: Hash256,
    station: StationId,
    camera: CameraId,
    kind: EntryKind,
    sig: String,
}

#[derive(Deserialize)]
struct VersionProbe {
    v: u64,
}

/// Parses one line (without its `\n`) into a signed entry. The signature is not checked here
/// (that needs the key), but the line must be exactly the entry's canonical encoding.
pub fn parse_line(line: &[u8]) -> Result<SignedEntry, LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::NotUtf8)?;
    let header: Header = match serde_json::from_str(text) {
        Ok(h) => h,
        Err(e) => {
            if let Ok(probe) = serde_json::from_str::<VersionProbe>(text) {
                if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&probe.v) {
                    return Err(LineError::UnsupportedVersion { found: probe.v });
                }
            }
            return Err(LineError::Invalid(e.to_string()));
        }
    };
    if !(MIN_SCHEMA_VERSION..=SCHEMA_VERSION).contains(&header.v) {
        return Err(LineError::UnsupportedVersion { found: header.v });
    }
    let invalid = |e: serde_json::Error| LineError::Invalid(e.to_string());
    let body = match header.kind {
        EntryKind::Segment => {
            EntryBody::Segment(serde_json::from_str::<Segment>(text).map_err(invalid)?)
        }
        EntryKind::Gap => EntryBody::Gap(serde_json::from_str::<Gap>(text).map_err(invalid)?),
        EntryKind::Deleted => {
            EntryBody::Deleted(serde_json::from_str::<Deleted>(text).map_err(invalid)?)
        }
        EntryKind::Start => EntryBody::Start(serde_json::from_str::<Start>(text).map_err(invalid)?),
        EntryKind::Stop => EntryBody::Stop(serde_json::from_str::<Stop>(text).map_err(invalid)?),
        EntryKind::Open => EntryBody::Open(serde_json::from_str::<Open>(text).map_err(invalid)?),
        EntryKind::Hold => EntryBody::Hold(serde_json::from_str::<Hold>(text).map_err(invalid)?),
        EntryKind::Release => {
            EntryBody::Release(serde_json::from_str::<Release>(text).map_err(invalid)?)
        }
    };
    body.valid_in_version(header.v)
        .map_err(LineError::Invalid)?;
    let sig = decode_lower_hex::<64>(&header.sig)
        .map_err(|_| LineError::Invalid("sig must be 128 lowercase hex characters".to_string()))?;
    let entry = Entry {
        version: header.v,
        seq: header.seq,
        prev: header.prev,
        station: header.station,
        camera: header.camera,
        body,
    };
    let signed = SignedEntry::assemble(entry, sig).map_err(invalid)?;
    // Unknown or duplicate fields, another order, white space, other escapes or another `sig`
    // position all make the bytes differ from the re-encoding.
    if signed.line().as_bytes() != line {
        return Err(LineError::NonCanonical);
    }
    Ok(signed)
}

/// A manifest read from bytes: the entries in file order, and what was wrong with the rest.
#[derive(Debug, Clone, Default)]
pub struct ParsedManifest {
    /// Every line that parsed, in file order (no chain or signature check yet).
    pub entries: Vec<SignedEntry>,
    /// [`Problem::MalformedLine`] for every bad complete line, then [`Problem::TornTail`] if the
    /// last line is torn.
    pub problems: Vec<Problem>,
}

impl ParsedManifest {
    /// Byte offset of the torn last line, if there is one.
    pub fn torn_tail(&self) -> Option<u64> {
        self.problems.iter().find_map(|p| match p {
            Problem::TornTail { offset } => Some(*offset),
            _ => None,
        })
    }

    /// The reading problems followed by [`verify_chain`]'s findings for `key`.
    pub fn verify(&self, key: &PublicKey) -> Vec<Problem> {
        let mut all = self.problems.clone();
        all.extend(verify_chain(&self.entries, key));
        all
    }
}

/// Splits `bytes` into lines (offset, bytes without `\n`, terminated?).
fn lines(bytes: &[u8]) -> impl Iterator<Item = (u64, &[u8], bool)> {
    let mut offset = 0usize;
    std::iter::from_fn(move || {
        let rest = bytes.get(offset..)?;
        if rest.is_empty() {
            return None;
        }
        let start = offset;
        match rest.iter().position(|&b| b == b'\n') {
            Some(n) => {
                offset += n + 1;
                Some((start as u64, rest.get(..n).unwrap_or_default(), true))
            }
            None => {
                offset = bytes.len();
                Some((start as u64, rest, false))
            }
        }
    })
}

/// Whether a final line counts as torn: unfinished, or not JSON at all.
fn is_torn(line: &[u8], terminated: bool) -> bool {
    !terminated || serde_json::from_slice::<serde::de::IgnoredAny>(line).is_err()
}

/// Reads a manifest. Never fails and never panics: every complete line that is not a valid entry
/// becomes a [`Problem::MalformedLine`]; a last line without `\n`, or that is not JSON, becomes a
/// [`Problem::TornTail`] and is not counted as an entry.
pub fn parse_manifest(bytes: &[u8]) -> ParsedManifest {
    let mut out = ParsedManifest::default();
    let mut iter = lines(bytes).enumerate().peekable();
    while let Some((idx, (offset, line, terminated))) = iter.next() {
        let is_last = iter.peek().is_none();
        if is_last && is_torn(line, terminated) {
            out.problems.push(Problem::TornTail { offset });
            break;
        }
        match parse_line(line) {
            Ok(entry) => out.entries.push(entry),
            Err(error) => out.problems.push(Problem::MalformedLine {
                line: idx + 1,
                offset,
                error,
            }),
        }
    }
    out
}

/// Where a writer resumes an existing manifest.
#[derive(Debug, Clone)]
pub struct ResumePoint {
    /// The state to sign the next entry with.
    pub chain: Chain,
    /// The last complete entry, if any.
    pub last: Option<SignedEntry>,
    /// If the file ends in a torn line: truncate the file to this length before appending.
    /// (The torn bytes were never an entry; no later entry can chain to them.)
    pub truncate_to: Option<u64>,
}

impl ResumePoint {
    /// The gap reason for the downtime before this start: `None` for a new manifest,
    /// [`GapReason::AgentRestart`] after a `stop`, [`GapReason::Crash`] after anything else.
    /// (An agent that knows the power failed may say [`GapReason::PowerLoss`] instead of `Crash`.)
    pub fn restart_reason(&self) -> Option<GapReason> {
        self.last.as_ref().map(|e| match e.body() {
            EntryBody::Stop(_) => GapReason::AgentRestart,
            _ => GapReason::Crash,
        })
    }

    /// End of the last segment or gap: where the downtime gap starts.
    pub fn timeline_end(&self) -> Option<super::time::Timestamp> {
        self.last
            .as_ref()
            .and_then(|e| e.body().span())
            .map(|(_, end)| end)
    }
}

/// Why a writer cannot resume a manifest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResumeError {
    #[error("the last complete line (byte {offset}) is not a valid entry: {error}")]
    LastLine { offset: u64, error: LineError },
    #[error("the manifest belongs to {station}/{camera}")]
    Foreign {
        station: StationId,
        camera: CameraId,
    },
}

/// Finds where to append to an existing manifest of `station`/`camera` (`bytes` may be the whole
/// file; only its last two lines are read). An empty file resumes at genesis.
pub fn resume_point(
    bytes: &[u8],
    station: &StationId,
    camera: &CameraId,
) -> Result<ResumePoint, ResumeError> {
    // Last '\n' ends the last complete line; anything after it is torn.
    let mut end = match bytes.iter().rposition(|&b| b == b'\n') {
        Some(i) => i,
        None => {
            return Ok(ResumePoint {
                chain: Chain::genesis(station.clone(), camera.clone()),
                last: None,
                truncate_to: (!bytes.is_empty()).then_some(0),
            })
        }
    };
    let mut truncate_to = (end + 1 < bytes.len()).then_some(end as u64 + 1);
    let mut tried_torn_rule = truncate_to.is_some();
    loop {
        let start = bytes
            .get(..end)
            .and_then(|b| b.iter().rposition(|&c| c == b'\n'))
            .map_or(0, |i| i + 1);
        let line = bytes.get(start..end).unwrap_or_default();
        // Same rule as `parse_manifest`: a final complete line that is not JSON is torn too.
        if !tried_torn_rule && is_torn(line, true) {
            tried_torn_rule = true;
            truncate_to = Some(start as u64);
            if start == 0 {
                return Ok(ResumePoint {
                    chain: Chain::genesis(station.clone(), camera.clone()),
                    last: None,
                    truncate_to,
                });
            }
            end = start - 1;
            continue;
        }
        let entry = parse_line(line).map_err(|error| ResumeError::LastLine {
            offset: start as u64,
            error,
        })?;
        if entry.station() != station || entry.camera() != camera {
            return Err(ResumeError::Foreign {
                station: entry.station().clone(),
                camera: entry.camera().clone(),
            });
        }
        return Ok(ResumePoint {
            chain: Chain::after(&entry),
            last: Some(entry),
            truncate_to,
        });
    }
}
