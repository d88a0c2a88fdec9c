//! Everything a reader or verifier can find wrong with a manifest or its files.

use std::fmt;

use super::entry::SegmentFile;
use super::key::Fingerprint;
use crate::ids::{CameraId, StationId};

/// Why one line is not a valid entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    #[error("not UTF-8")]
    NotUtf8,
    #[error("schema version {found} is not supported (expected 1 or 2)")]
    UnsupportedVersion { found: u64 },
    #[error("not a valid entry: {0}")]
    Invalid(String),
    #[error("valid entry, but not in canonical form (bytes differ from its re-encoding)")]
    NonCanonical,
}

/// What is wrong with a deletion entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeletionFault {
    /// No earlier entry has the target seq.
    UnknownTarget,
    /// The target entry is not a segment.
    NotASegment,
    /// The file name differs from the target segment's.
    FileMismatch,
    /// The SHA-256 differs from the target segment's.
    HashMismatch,
    /// The target was already deleted by an earlier entry.
    AlreadyDeleted,
}

impl fmt::Display for DeletionFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeletionFault::UnknownTarget => "no earlier entry has that seq",
            DeletionFault::NotASegment => "that entry is not a segment",
            DeletionFault::FileMismatch => "file name differs from the segment's",
            DeletionFault::HashMismatch => "sha256 differs from the segment's",
            DeletionFault::AlreadyDeleted => "that segment was already deleted",
        })
    }
}

/// One finding. `line` numbers start at 1; `offset`s are byte offsets in the manifest file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    // --- reading ---
    /// A complete line in the middle that is not a valid entry.
    #[error("line {line} (byte {offset}): {error}")]
    MalformedLine {
        line: usize,
        offset: u64,
        error: LineError,
    },
    /// The last line is unfinished (no `\n`) or not JSON: an interrupted write, or tampering.
    /// It is not counted as an entry.
    #[error("torn last line at byte {offset}: unfinished write, not counted as an entry")]
    TornTail { offset: u64 },

    // --- chain ---
    /// The first entry is not seq 0: the manifest's beginning is missing.
    #[error("manifest starts at seq {first_seq}, not 0: its beginning is missing")]
    NotFromGenesis { first_seq: u64 },
    /// An entry's seq is not the previous entry's plus one.
    #[error("seq {found} follows seq {prev}, expected {expected}", prev = expected.wrapping_sub(1))]
    SeqJump { expected: u64, found: u64 },
    /// An entry's `prev` is not the hash of the line before it (or genesis for the first).
    #[error("entry seq {seq}: prev hash does not match the line before it")]
    ChainBroken { seq: u64 },
    /// The signature is not valid for the station key.
    #[error("entry seq {seq}: signature is not valid for the station key")]
    BadSignature { seq: u64 },
    /// A `start` entry names a different key than the station key.
    #[error("entry seq {seq}: agent started with key {found}, the station key is {expected}")]
    ForeignKey {
        seq: u64,
        expected: Fingerprint,
        found: Fingerprint,
    },
    #[error("entry seq {seq}: station {found}, but this manifest is station {expected}")]
    ForeignStation {
        seq: u64,
        expected: StationId,
        found: StationId,
    },
    #[error("entry seq {seq}: camera {found}, but this manifest is camera {expected}")]
    ForeignCamera {
        seq: u64,
        expected: CameraId,
        found: CameraId,
    },

    // --- content ---
    #[error("entry seq {seq}: ends before it starts")]
    EndBeforeStart { seq: u64 },
    /// A segment or gap starts more than the tolerance before the previous one ended.
    #[error("entry seq {seq}: starts {by_ms} ms before the previous segment or gap ended")]
    TimeWentBackwards { seq: u64, by_ms: i64 },
    /// Two live segments name the same file.
    #[error("entry seq {seq}: file {file} is already the segment of seq {first_seq}")]
    DuplicateFile {
        seq: u64,
        first_seq: u64,
        file: SegmentFile,
    },
    #[error("entry seq {seq}: deletion of seq {target} is invalid: {fault}")]
    BadDeletion {
        seq: u64,
        target: u64,
        fault: DeletionFault,
    },

    /// A retention deletion removed footage that a legal hold in force protected.
    #[error("entry seq {seq}: deleted seq {target} although legal hold {hold:?} protected it")]
    DeletedUnderHold { seq: u64, target: u64, hold: String },
    /// A (schema 2) segment whose file no earlier `open` entry announced: the agent did not
    /// create that file itself.
    #[error("entry seq {seq}: file {file} was never announced by an open entry")]
    Unannounced { seq: u64, file: SegmentFile },

    // --- head (known from elsewhere, e.g. the agent's health reports) ---
    /// The manifest ends before the known head: its last entries were removed.
    #[error("manifest ends at {}, but entries up to seq {expected_last} were written", fmt_last(*.found_last))]
    Truncated {
        expected_last: u64,
        found_last: Option<u64>,
    },
    /// The entry at the known head's seq has a different hash.
    #[error("entry seq {seq} differs from the known head")]
    HeadMismatch { seq: u64 },

    // --- files ---
    #[error("entry seq {seq}: file {file} is missing")]
    MissingFile { seq: u64, file: SegmentFile },
    #[error("entry seq {seq}: file {file} has {found} bytes, the manifest says {expected}")]
    SizeMismatch {
        seq: u64,
        file: SegmentFile,
        expected: u64,
        found: u64,
    },
    #[error("entry seq {seq}: file {file} does not match its SHA-256")]
    HashMismatch { seq: u64, file: SegmentFile },
    #[error("entry seq {seq}: file {file} could not be read: {error}")]
    Unreadable {
        seq: u64,
        file: SegmentFile,
        error: String,
    },
    /// A file check was asked for an entry that is not a segment.
    #[error("entry seq {seq} is not a segment")]
    NotASegment { seq: u64 },
}

fn fmt_last(found_last: Option<u64>) -> String {
    match found_last {
        Some(s) => format!("seq {s}"),
        None => "no entry".to_string(),
    }
}

impl Problem {
    /// The entry seq the problem is about, when it is about one.
    pub fn seq(&self) -> Option<u64> {
        use Problem::*;
        match self {
            MalformedLine { .. } | TornTail { .. } | Truncated { .. } => None,
            NotFromGenesis { first_seq } => Some(*first_seq),
            SeqJump { found, .. } => Some(*found),
            ChainBroken { seq }
            | BadSignature { seq }
            | ForeignKey { seq, .. }
            | ForeignStation { seq, .. }
            | ForeignCamera { seq, .. }
            | EndBeforeStart { seq }
            | TimeWentBackwards { seq, .. }
            | DuplicateFile { seq, .. }
            | BadDeletion { seq, .. }
            | DeletedUnderHold { seq, .. }
            | Unannounced { seq, .. }
            | HeadMismatch { seq }
            | MissingFile { seq, .. }
            | SizeMismatch { seq, .. }
            | HashMismatch { seq, .. }
            | Unreadable { seq, .. }
            | NotASegment { seq } => Some(*seq),
        }
    }
}
