//! Manifest entries, their canonical bytes, signing, and the chain state a writer keeps.
//!
//! Canonical bytes of an entry: the compact JSON object (no white space) with the fields in this
//! order: `v`, `seq`, `prev`, `station`, `camera`, `kind`, then the kind's own fields in the
//! order their struct declares them below. Strings are escaped as serde_json (= RFC 8785) does.
//! The stored line is the canonical bytes with the final `}` replaced by
//! `,"sig":"<128 hex>"}`. See `docs/manifest.md`.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::hash::Hash256;
use super::key::{PublicKey, StationKey};
use super::time::Timestamp;
use super::{GENESIS_PREV, SCHEMA_VERSION};
use crate::ids::{CameraId, StationId};

/// Length of the stored line's suffix after the canonical bytes minus their final `}`:
/// `,"sig":"` (8) + 128 hex + `"}` (2).
pub(crate) const SIG_SUFFIX_LEN: usize = 8 + 128 + 2;

/// Maximum length in bytes of a segment's relative file name.
pub const MAX_FILE_NAME_LEN: usize = 255;

/// A segment file's name relative to the camera directory, e.g.
/// `2026-11-21/20261121T152600.123Z.ts`.
///
/// Rules: 1 to 255 bytes; components separated by `/`; every component non-empty, made of ASCII
/// letters, digits, `.`, `_` and `-`, and not starting with `.` (so no `..`, no absolute path,
/// no hidden files). A verifier can join it to the camera directory without escaping it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SegmentFile(String);

/// Why a segment file name was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FileNameError {
    #[error("file name must be 1 to {MAX_FILE_NAME_LEN} bytes long, found {0}")]
    Length(usize),
    #[error("file name component {0:?} is empty or starts with '.'")]
    BadComponent(String),
    #[error(
        "file name contains {0:?}; only ASCII letters, digits, '.', '_', '-' and '/' are allowed"
    )]
    BadChar(char),
}

impl SegmentFile {
    /// Validates a relative file name (see the type's rules).
    pub fn new(s: impl Into<String>) -> Result<Self, FileNameError> {
        let s = s.into();
        if s.is_empty() || s.len() > MAX_FILE_NAME_LEN {
            return Err(FileNameError::Length(s.len()));
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/')))
        {
            return Err(FileNameError::BadChar(c));
        }
        if let Some(bad) = s.split('/').find(|c| c.is_empty() || c.starts_with('.')) {
            return Err(FileNameError::BadComponent(bad.to_string()));
        }
        Ok(SegmentFile(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for SegmentFile {
    type Error = FileNameError;
    fn try_from(s: String) -> Result<Self, FileNameError> {
        Self::new(s)
    }
}

impl From<SegmentFile> for String {
    fn from(f: SegmentFile) -> String {
        f.0
    }
}

impl fmt::Display for SegmentFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why recording time is missing. Serialised in snake_case (`camera_lost`, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The camera stopped delivering video (unplugged, network, power).
    CameraLost,
    /// The agent stopped cleanly and started again (the entry before its `start` is `stop`).
    AgentRestart,
    /// The agent started after an unclean stop (the entry before its `start` is not `stop`).
    Crash,
    /// The machine lost power (the agent knows, e.g. from the UPS or a changed boot id).
    PowerLoss,
    /// Recording was off by schedule.
    Schedule,
    /// Recording stopped because the disk was full.
    DiskFull,
    /// Writing to storage failed for another reason (I/O error, file system remounted
    /// read-only); `detail` holds the error.
    StorageError,
}

impl GapReason {
    pub fn as_str(self) -> &'static str {
        match self {
            GapReason::CameraLost => "camera_lost",
            GapReason::AgentRestart => "agent_restart",
            GapReason::Crash => "crash",
            GapReason::PowerLoss => "power_loss",
            GapReason::Schedule => "schedule",
            GapReason::DiskFull => "disk_full",
            GapReason::StorageError => "storage_error",
        }
    }
}

impl fmt::Display for GapReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which policy deleted a segment. Serialised in snake_case (`retention`, `free_space`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeletionPolicy {
    /// The segment was older than the configured retention.
    Retention,
    /// The segment was deleted to keep the configured free-space floor.
    FreeSpace,
}

impl DeletionPolicy {
    pub fn as_str(self) -> &'static str {
        match self {
            DeletionPolicy::Retention => "retention",
            DeletionPolicy::FreeSpace => "free_space",
        }
    }
}

impl fmt::Display for DeletionPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether the station's kernel clock was synchronised (NTP/PTP/GPS) while a segment was
/// recorded. Serialised in snake_case (`synced`, `unsynced`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ClockSync {
    /// The kernel reported a synchronised clock for the whole segment.
    Synced,
    /// The clock was not synchronised at some point of the segment: its times are the
    /// station's word only.
    Unsynced,
}

impl ClockSync {
    pub fn as_str(self) -> &'static str {
        match self {
            ClockSync::Synced => "synced",
            ClockSync::Unsynced => "unsynced",
        }
    }
}

impl fmt::Display for ClockSync {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A finished recording segment. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Segment {
    pub start: Timestamp,
    pub end: Timestamp,
    pub file: SegmentFile,
    /// Size of the file in bytes.
    pub size: u64,
    /// SHA-256 of the file's bytes.
    pub sha256: Hash256,
    /// Clock quality while recording (schema 2; absent in schema 1 entries, required in 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock: Option<ClockSync>,
}

/// Time without recording, and why. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub start: Timestamp,
    pub end: Timestamp,
    pub reason: GapReason,
    /// Free text for people; empty when there is nothing to add.
    pub detail: String,
}

/// Retention deleted an earlier segment. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deleted {
    /// When the file was deleted.
    pub at: Timestamp,
    /// `seq` of the deleted segment's entry.
    pub target: u64,
    /// The deleted segment's file and SHA-256, copied from its entry.
    pub file: SegmentFile,
    pub sha256: Hash256,
    pub policy: DeletionPolicy,
    /// Free text for people, e.g. `older than 30 days`; may be empty.
    pub detail: String,
}

/// The agent started. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Start {
    pub at: Timestamp,
    /// Agent version string, e.g. `0.1.0`.
    pub agent: String,
    /// The public key the agent signs with (must be the station key).
    pub key: PublicKey,
}

/// The agent stopped cleanly. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stop {
    pub at: Timestamp,
}

/// The agent is about to create a segment file (schema 2). Written and synced *before* the file
/// exists, so that after an unclean stop the agent adopts only a file it announced itself, never
/// a file that appeared in the folder. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Open {
    pub at: Timestamp,
    pub file: SegmentFile,
}

/// Who set or released a legal hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HoldSource {
    /// The station's config file.
    Config,
    /// A remote command from the controller.
    Command,
    /// An observer's request being collected (implicit hold until archived).
    Request,
}

impl HoldSource {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldSource::Config => "config",
            HoldSource::Command => "command",
            HoldSource::Request => "request",
        }
    }
}

impl fmt::Display for HoldSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A legal hold came into force (schema 2): retention must not delete footage of `[from, to)`
/// until a [`Release`] of the same `id`. Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub at: Timestamp,
    /// The hold's id (unique per station while it is in force).
    pub id: String,
    pub from: Timestamp,
    pub to: Timestamp,
    pub source: HoldSource,
    /// Free text for people (case number, request id); may be empty.
    pub reason: String,
}

/// A legal hold was lifted (schema 2). Field order is the canonical order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Release {
    pub at: Timestamp,
    pub id: String,
    pub source: HoldSource,
    pub reason: String,
}

/// The kind-specific part of an entry. Serialised with a `kind` tag first, then the fields.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EntryBody {
    Segment(Segment),
    Gap(Gap),
    Deleted(Deleted),
    Start(Start),
    Stop(Stop),
    Open(Open),
    Hold(Hold),
    Release(Release),
}

/// The value of an entry's `kind` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    Segment,
    Gap,
    Deleted,
    Start,
    Stop,
    Open,
    Hold,
    Release,
}

impl EntryKind {
    /// The first schema version that has this kind.
    pub fn since_version(self) -> u64 {
        match self {
            EntryKind::Open | EntryKind::Hold | EntryKind::Release => 2,
            _ => 1,
        }
    }
}

impl EntryBody {
    pub fn kind(&self) -> EntryKind {
        match self {
            EntryBody::Segment(_) => EntryKind::Segment,
            EntryBody::Gap(_) => EntryKind::Gap,
            EntryBody::Deleted(_) => EntryKind::Deleted,
            EntryBody::Start(_) => EntryKind::Start,
            EntryBody::Stop(_) => EntryKind::Stop,
            EntryBody::Open(_) => EntryKind::Open,
            EntryBody::Hold(_) => EntryKind::Hold,
            EntryBody::Release(_) => EntryKind::Release,
        }
    }

    /// Whether this body is valid in an entry of schema `version`: schema 1 has no `open`,
    /// `hold`, `release` and no segment `clock`; schema 2 segments must carry `clock`.
    pub fn valid_in_version(&self, version: u64) -> Result<(), String> {
        if self.kind().since_version() > version {
            return Err(format!(
                "kind {:?} needs schema {} or later",
                self.kind(),
                self.kind().since_version()
            ));
        }
        if let EntryBody::Segment(s) = self {
            match (version, s.clock) {
                (1, Some(_)) => return Err("schema 1 segments have no clock field".into()),
                (v, None) if v >= 2 => {
                    return Err(format!("schema {v} segments must carry a clock field"))
                }
                _ => {}
            }
        }
        if let EntryBody::Hold(h) = self {
            if h.to < h.from {
                return Err("hold ends before it starts".into());
            }
        }
        if let EntryBody::Hold(Hold { id, .. }) | EntryBody::Release(Release { id, .. }) = self {
            if id.is_empty() || id.len() > MAX_HOLD_ID_LEN {
                return Err(format!("hold id must be 1 to {MAX_HOLD_ID_LEN} bytes"));
            }
        }
        Ok(())
    }

    /// The time span this entry covers on the recording timeline (segments and gaps only).
    pub fn span(&self) -> Option<(Timestamp, Timestamp)> {
        match self {
            EntryBody::Segment(s) => Some((s.start, s.end)),
            EntryBody::Gap(g) => Some((g.start, g.end)),
            _ => None,
        }
    }
}

/// Maximum length in bytes of a legal hold's id.
pub const MAX_HOLD_ID_LEN: usize = 128;

/// An entry without its signature.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Schema version (`v`): [`SCHEMA_VERSION`] for new entries; older versions are read back
    /// as they were written.
    pub version: u64,
    pub seq: u64,
    pub prev: Hash256,
    pub station: StationId,
    pub camera: CameraId,
    pub body: EntryBody,
}

/// Serialisation view fixing the canonical field order.
#[derive(Serialize)]
struct CanonicalView<'a> {
    v: u64,
    seq: u64,
    prev: &'a Hash256,
    station: &'a StationId,
    camera: &'a CameraId,
    #[serde(flatten)]
    body: &'a EntryBody,
}

impl Entry {
    /// The canonical bytes: what is signed (see the module documentation).
    pub fn canonical_bytes(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(&CanonicalView {
            v: self.version,
            seq: self.seq,
            prev: &self.prev,
            station: &self.station,
            camera: &self.camera,
            body: &self.body,
        })
    }
}

/// An entry with its signature and the exact line it is stored as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedEntry {
    entry: Entry,
    sig: [u8; 64],
    line: String,
    hash: Hash256,
}

impl SignedEntry {
    /// Builds the stored line from an entry and a signature (no verification).
    pub(crate) fn assemble(entry: Entry, sig: [u8; 64]) -> Result<Self, serde_json::Error> {
        let canonical = entry.canonical_bytes()?;
        let mut line = String::from_utf8(canonical).map_err(serde::ser::Error::custom)?;
        if line.pop() != Some('}') {
            return Err(serde::ser::Error::custom(
                "canonical JSON does not end with '}'",
            ));
        }
        line.push_str(",\"sig\":\"");
        line.push_str(&hex::encode(sig));
        line.push_str("\"}");
        let hash = Hash256::of(line.as_bytes());
        Ok(SignedEntry {
            entry,
            sig,
            line,
            hash,
        })
    }

    pub fn entry(&self) -> &Entry {
        &self.entry
    }
    pub fn seq(&self) -> u64 {
        self.entry.seq
    }
    /// Schema version the entry was written in.
    pub fn version(&self) -> u64 {
        self.entry.version
    }
    pub fn prev(&self) -> &Hash256 {
        &self.entry.prev
    }
    pub fn station(&self) -> &StationId {
        &self.entry.station
    }
    pub fn camera(&self) -> &CameraId {
        &self.entry.camera
    }
    pub fn body(&self) -> &EntryBody {
        &self.entry.body
    }
    /// The 64-byte Ed25519 signature.
    pub fn signature(&self) -> &[u8; 64] {
        &self.sig
    }

    /// The stored line, without the terminating `\n`. Writers append `line() + "\n"`.
    pub fn line(&self) -> &str {
        &self.line
    }

    /// SHA-256 of [`SignedEntry::line`]: the next entry's `prev`.
    pub fn hash(&self) -> Hash256 {
        self.hash
    }

    /// The bytes the signature covers: the line without its `sig` suffix, closed by `}`.
    pub fn signed_bytes(&self) -> Vec<u8> {
        let keep = self.line.len().saturating_sub(SIG_SUFFIX_LEN);
        let mut out = Vec::with_capacity(keep + 1);
        out.extend_from_slice(self.line.as_bytes().get(..keep).unwrap_or_default());
        out.push(b'}');
        out
    }

    /// Whether the signature is valid for `key`.
    pub fn signature_valid(&self, key: &PublicKey) -> bool {
        key.verify(&self.signed_bytes(), &self.sig)
    }
}

/// Why [`sign_entry`] refused to sign.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    #[error("{kind:?} entry ends ({end}) before it starts ({start})")]
    EndBeforeStart {
        kind: EntryKind,
        start: Timestamp,
        end: Timestamp,
    },
    #[error("a deleted entry (seq {seq}) must name an earlier seq, not {target}")]
    TargetNotEarlier { seq: u64, target: u64 },
    #[error("start entry names key {named}, but it is signed with {signer}")]
    StartKeyMismatch {
        named: super::key::Fingerprint,
        signer: super::key::Fingerprint,
    },
    #[error("the chain is at the last possible seq")]
    SeqExhausted,
    #[error("entry is not valid in schema {version}: {reason}")]
    Schema { version: u64, reason: String },
    #[error("could not encode the entry: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A writer's chain state: which manifest, the next `seq`, and the `prev` it must carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chain {
    pub station: StationId,
    pub camera: CameraId,
    /// `seq` of the next entry (0 for an empty manifest).
    pub next_seq: u64,
    /// `prev` of the next entry: SHA-256 of the last line, or [`GENESIS_PREV`].
    pub prev: Hash256,
}

impl Chain {
    /// The state of an empty manifest.
    pub fn genesis(station: StationId, camera: CameraId) -> Self {
        Chain {
            station,
            camera,
            next_seq: 0,
            prev: GENESIS_PREV,
        }
    }

    /// The state after `entry` was written. (Its `seq` is at most `u64::MAX - 1`: [`sign_entry`]
    /// refuses to sign `u64::MAX`, and a parsed `u64::MAX` saturates.)
    pub fn after(entry: &SignedEntry) -> Self {
        Chain {
            station: entry.station().clone(),
            camera: entry.camera().clone(),
            next_seq: entry.seq().saturating_add(1),
            prev: entry.hash(),
        }
    }

    /// The state after the manifest's last complete line (without its `\n`).
    pub fn from_last_line(line: &str) -> Result<Self, super::problem::LineError> {
        super::read::parse_line(line.as_bytes()).map(|e| Chain::after(&e))
    }

    /// `seq` of the last written entry, if any.
    pub fn last_seq(&self) -> Option<u64> {
        self.next_seq.checked_sub(1)
    }
}

/// Signs `body` as the next entry of `chain`. The caller appends `line() + "\n"` to the manifest
/// in one write, syncs it, and only then moves on with `Chain::after(&entry)`.
pub fn sign_entry(
    key: &StationKey,
    chain: &Chain,
    body: EntryBody,
) -> Result<SignedEntry, SignError> {
    if chain.next_seq == u64::MAX {
        return Err(SignError::SeqExhausted);
    }
    if let Some((start, end)) = body.span() {
        if end < start {
            return Err(SignError::EndBeforeStart {
                kind: body.kind(),
                start,
                end,
            });
        }
    }
    match &body {
        EntryBody::Deleted(d) if d.target >= chain.next_seq => {
            return Err(SignError::TargetNotEarlier {
                seq: chain.next_seq,
                target: d.target,
            });
        }
        EntryBody::Start(s) if s.key != key.public() => {
            return Err(SignError::StartKeyMismatch {
                named: s.key.fingerprint(),
                signer: key.public().fingerprint(),
            });
        }
        _ => {}
    }
    body.valid_in_version(SCHEMA_VERSION)
        .map_err(|reason| SignError::Schema {
            version: SCHEMA_VERSION,
            reason,
        })?;
    let entry = Entry {
        version: SCHEMA_VERSION,
        seq: chain.next_seq,
        prev: chain.prev,
        station: chain.station.clone(),
        camera: chain.camera.clone(),
        body,
    };
    let sig = key.sign(&entry.canonical_bytes()?);
    Ok(SignedEntry::assemble(entry, sig)?)
}
