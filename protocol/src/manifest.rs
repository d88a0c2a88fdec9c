//! The tamper-evident segment manifest.
//!
//! Every camera of a station has one append-only manifest file ([`MANIFEST_FILE`]) in its
//! recording directory: JSON Lines, one signed entry per line. Each entry names the previous
//! entry's hash, so the entries form a chain; each is signed with the station's Ed25519 key.
//! Deleting, editing, reordering or inserting an entry breaks the chain or a signature, and
//! deleting, editing or replacing a segment file breaks its recorded size or SHA-256.
//!
//! The exact byte format is specified in `docs/manifest.md`; this module is its reference
//! implementation. It is pure: it never walks directories, and the only file it opens on its own
//! is the one named by [`check_segment_in_dir`] (and a key file, when asked to).
//!
//! * Writing: [`StationKey`], [`Chain`], [`sign_entry`], [`resume_point`].
//! * Reading: [`parse_manifest`] (reports malformed lines and a torn tail, never panics).
//! * Verifying: [`verify_chain`] / [`ParsedManifest::verify`], [`check_head`],
//!   [`check_segment_file`], [`coverage`].

mod coverage;
mod entry;
mod hash;
mod key;
mod naming;
mod problem;
mod read;
mod time;
mod verify;

#[cfg(test)]
mod tests;

pub use coverage::{
    coverage, Coverage, CoveredGap, CoveredSegment, DeletedSegment, Span, UncleanStart,
};
pub use entry::{
    sign_entry, Chain, ClockSync, Deleted, DeletionPolicy, Entry, EntryBody, EntryKind,
    FileNameError, Gap, GapReason, Hold, HoldSource, Open, Release, Segment, SegmentFile,
    SignError, SignedEntry, Start, Stop, MAX_HOLD_ID_LEN,
};
pub use hash::{Hash256, HashParseError};
pub use key::{Fingerprint, KeyError, PublicKey, StationKey};
pub use naming::{segment_start_from_name, SEGMENT_EXT};
pub use problem::{DeletionFault, LineError, Problem};
pub use read::{
    parse_line, parse_manifest, resume_point, ParsedManifest, ResumeError, ResumePoint,
};
pub use time::{Timestamp, TimestampError};
pub use verify::{
    check_head, check_segment_file, check_segment_in_dir, present_segments, verify_chain,
    verify_chain_keys,
};

/// Decodes a signature written as 128 lowercase hex characters.
pub(crate) fn decode_sig_hex(s: &str) -> Option<[u8; 64]> {
    hash::decode_lower_hex::<64>(s).ok()
}

/// The schema version written in every new entry's `v` field.
pub const SCHEMA_VERSION: u64 = 2;

/// The oldest schema version still read and verified (manifests written by older agents).
pub const MIN_SCHEMA_VERSION: u64 = 1;

/// The `prev` value of the first entry (seq 0): 32 zero bytes, i.e. 64 `0` characters.
pub const GENESIS_PREV: Hash256 = Hash256::ZERO;

/// Recommended name of the manifest file inside a camera's recording directory.
pub const MANIFEST_FILE: &str = "manifest.jsonl";

/// Clock slack, in milliseconds, allowed between consecutive timeline entries (a segment or gap
/// may start this much before the previous one ended) and ignored as a hole by [`coverage`].
pub const TIME_TOLERANCE_MS: i64 = 1_000;
