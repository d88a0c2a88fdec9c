//! Appending manifest lines to a camera's archived range.

use stationwatch_protocol::archive::ManifestRange;
use stationwatch_protocol::manifest::{parse_line, EntryBody, PublicKey, SignedEntry};
use stationwatch_protocol::{CameraId, StationId};
use tracing::{info, warn};

use super::{manifest_key, Archive, ArchiveError};
use crate::store::archive::{Appended, EntryRow, RefusalRow, PENDING};

/// Why a batch of lines was refused as a whole (422, alerted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    #[error("line {line}: {reason}")]
    Unparsable { line: usize, reason: String },
    #[error("line {line} (seq {seq}) is for {station}/{camera}, not this station and camera")]
    WrongManifest {
        line: usize,
        seq: u64,
        station: String,
        camera: String,
    },
    #[error("line {line} (seq {seq}): the signature matches no registered key of the station")]
    BadSignature { line: usize, seq: u64 },
    #[error("line {line} (seq {seq}) does not follow the line before it (seq or prev)")]
    Broken { line: usize, seq: u64 },
    #[error("seq {seq} differs from the archived line: the manifest was rewritten")]
    Rewritten { seq: u64 },
    #[error(
        "seq {seq} does not chain to the archived range {first}..={last}: the manifest forked"
    )]
    Forked { seq: u64, first: u64, last: u64 },
}

/// One batch, parsed and checked on its own (signatures, station, camera, chain).
pub(crate) fn check_batch(
    body: &[u8],
    station: &StationId,
    camera: &CameraId,
    keys: &[PublicKey],
) -> Result<Vec<SignedEntry>, ArchiveError> {
    if body.is_empty() {
        return Err(ArchiveError::BadRequest("no manifest lines".into()));
    }
    let Some(body) = body.strip_suffix(b"\n") else {
        return Err(ArchiveError::BadRequest(
            "manifest lines must each end with \\n".into(),
        ));
    };
    let mut out: Vec<SignedEntry> = Vec::new();
    for (i, raw) in body.split(|b| *b == b'\n').enumerate() {
        let line = i + 1;
        let e = parse_line(raw).map_err(|e| BatchError::Unparsable {
            line,
            reason: e.to_string(),
        });
        let e = match e {
            Ok(e) => e,
            Err(b) => return Err(refused(b)),
        };
        if e.station() != station || e.camera() != camera {
            return Err(refused(BatchError::WrongManifest {
                line,
                seq: e.seq(),
                station: e.station().to_string(),
                camera: e.camera().to_string(),
            }));
        }
        if !keys.iter().any(|k| e.signature_valid(k)) {
            return Err(refused(BatchError::BadSignature { line, seq: e.seq() }));
        }
        if let Some(before) = out.last() {
            if before.seq().checked_add(1) != Some(e.seq()) || *e.prev() != before.hash() {
                return Err(refused(BatchError::Broken { line, seq: e.seq() }));
            }
        }
        out.push(e);
    }
    Ok(out)
}

fn refused(b: BatchError) -> ArchiveError {
    ArchiveError::Refused(b.to_string(), None)
}

/// The index row of an accepted line.
pub(crate) fn entry_row(e: &SignedEntry, now: i64) -> EntryRow {
    let kind = match e.body() {
        EntryBody::Segment(_) => "segment",
        EntryBody::Gap(_) => "gap",
        EntryBody::Deleted(_) => "deleted",
        EntryBody::Start(_) => "start",
        EntryBody::Stop(_) => "stop",
        EntryBody::Open(_) => "open",
        EntryBody::Hold(_) => "hold",
        EntryBody::Release(_) => "release",
    };
    let span = e.body().span();
    let seg = match e.body() {
        EntryBody::Segment(s) => Some(s),
        _ => None,
    };
    EntryRow {
        camera: e.camera().clone(),
        seq: e.seq(),
        line: e.line().to_owned(),
        hash: e.hash().to_hex(),
        kind: kind.to_owned(),
        start_ms: span.map(|(s, _)| s.unix_ms()),
        end_ms: span.map(|(_, e)| e.unix_ms()),
        file: seg.map(|s| s.file.as_str().to_owned()),
        size: seg.map(|s| s.size),
        sha256: seg.map(|s| s.sha256.to_hex()),
        state: seg.map(|_| PENDING.to_owned()),
        reason: None,
        archived_at: None,
        received_at: now,
    }
}

impl Archive {
    /// The archived range of a camera's manifest (404 when nothing is archived).
    pub async fn manifest_range(
        &self,
        station: &StationId,
        camera: &CameraId,
    ) -> Result<ManifestRange, ArchiveError> {
        self.inner
            .store
            .archive_range(station, camera)
            .await?
            .ok_or_else(|| {
                ArchiveError::NotFound(format!("no archived manifest of {station}/{camera}"))
            })
    }

    /// Appends a batch of manifest lines (`docs/archive.md`, "Manifest first"). Lines already
    /// held with the same hash are accepted again (a replay); new lines must extend the range
    /// forwards (the first one's `prev` is the last held line's hash) or backwards (the last
    /// one hashes to the first held line's `prev`). Any bad line refuses the whole batch.
    pub async fn append_manifest(
        &self,
        station: &StationId,
        camera: &CameraId,
        body: &[u8],
        now: i64,
    ) -> Result<ManifestRange, ArchiveError> {
        let _lock = self.lock(format!("manifest/{station}/{camera}")).await;
        let keys: Vec<PublicKey> = self
            .inner
            .store
            .keys(Some(station))
            .await?
            .into_iter()
            .map(|k| k.key)
            .collect();
        let result = self.extend(station, camera, body, &keys, now).await;
        match result {
            Err(ArchiveError::Refused(reason, _)) => {
                let seq = super::manifest::first_seq(body);
                warn!(%station, %camera, reason = %reason, "archive refused manifest lines");
                self.inner
                    .store
                    .archive_refusal(
                        station,
                        &RefusalRow {
                            camera: camera.clone(),
                            seq,
                            what: "manifest".into(),
                            reason: reason.clone(),
                            object_key: None,
                            at: now,
                        },
                    )
                    .await?;
                self.inner.fleet.archive_refused(
                    station,
                    camera,
                    None,
                    format!("manifest lines refused: {reason}"),
                    now,
                );
                Err(ArchiveError::Refused(reason, None))
            }
            Err(ArchiveError::Unavailable(e)) => {
                self.unavailable(station, &e, false, now);
                Err(ArchiveError::Unavailable(e))
            }
            other => other,
        }
    }

    async fn extend(
        &self,
        station: &StationId,
        camera: &CameraId,
        body: &[u8],
        keys: &[PublicKey],
        now: i64,
    ) -> Result<ManifestRange, ArchiveError> {
        let lines = check_batch(body, station, camera, keys)?;
        let (Some(first), Some(last)) = (lines.first(), lines.last()) else {
            return Err(ArchiveError::BadRequest("no manifest lines".into()));
        };
        let old = self.inner.store.archive_range(station, camera).await?;
        let (new, fresh): (ManifestRange, Vec<&[SignedEntry]>) = match &old {
            None => (
                ManifestRange {
                    first_seq: first.seq(),
                    first_prev: *first.prev(),
                    last_seq: last.seq(),
                    last_hash: last.hash(),
                },
                vec![&lines[..]],
            ),
            Some(r) => {
                // Lines the archive holds must be the same lines.
                let held = self
                    .inner
                    .store
                    .archive_hashes(
                        station,
                        camera,
                        first.seq().max(r.first_seq),
                        last.seq().min(r.last_seq),
                    )
                    .await?;
                for (seq, hash) in &held {
                    let ours = lines.iter().find(|e| e.seq() == *seq);
                    if ours.is_some_and(|e| e.hash().to_hex() != *hash) {
                        return Err(refused(BatchError::Rewritten { seq: *seq }));
                    }
                }
                let split_lo = lines.partition_point(|e| e.seq() < r.first_seq);
                let split_hi = lines.partition_point(|e| e.seq() <= r.last_seq);
                let below = lines.get(..split_lo).unwrap_or_default();
                let above = lines.get(split_hi..).unwrap_or_default();
                let mut new = r.clone();
                let mut fresh = Vec::new();
                let forked = |seq| {
                    refused(BatchError::Forked {
                        seq,
                        first: r.first_seq,
                        last: r.last_seq,
                    })
                };
                let apart = |what: &str| {
                    ArchiveError::Conflict(
                        format!(
                            "lines {}..={} {what} the archived range {}..={}: send the lines next to it",
                            first.seq(),
                            last.seq(),
                            r.first_seq,
                            r.last_seq
                        ),
                        None,
                    )
                };
                if let (Some(lo), Some(hi)) = (below.first(), below.last()) {
                    if hi.seq().checked_add(1) != Some(r.first_seq) {
                        return Err(apart("are not next to"));
                    }
                    if hi.hash() != r.first_prev {
                        return Err(forked(hi.seq()));
                    }
                    new.first_seq = lo.seq();
                    new.first_prev = *lo.prev();
                    fresh.push(below);
                }
                if let (Some(lo), Some(hi)) = (above.first(), above.last()) {
                    if r.last_seq.checked_add(1) != Some(lo.seq()) {
                        return Err(apart("are not next to"));
                    }
                    if *lo.prev() != r.last_hash {
                        return Err(forked(lo.seq()));
                    }
                    new.last_seq = hi.seq();
                    new.last_hash = hi.hash();
                    fresh.push(above);
                }
                (new, fresh)
            }
        };
        if fresh.is_empty() {
            // Every line was already held: a replay.
            return Ok(new);
        }
        for run in &fresh {
            let (Some(a), Some(b)) = (run.first(), run.last()) else {
                continue;
            };
            let mut text = String::new();
            for e in run.iter() {
                text.push_str(e.line());
                text.push('\n');
            }
            self.put_bytes(
                &manifest_key(station, camera, a.seq(), b.seq()),
                text.into_bytes(),
            )
            .await?;
        }
        self.inner
            .fleet
            .archive_manifest_stored(station, camera, now);
        let rows: Vec<EntryRow> = fresh
            .iter()
            .flat_map(|run| run.iter())
            .map(|e| entry_row(e, now))
            .collect();
        match self
            .inner
            .store
            .archive_append(station, camera, old.as_ref(), &new, &rows, now)
            .await?
        {
            Appended::Done => {
                info!(%station, %camera, lines = rows.len(), first_seq = new.first_seq, last_seq = new.last_seq, "archived manifest lines");
                Ok(new)
            }
            Appended::Raced => Err(ArchiveError::Conflict(
                "the archived range changed meanwhile: ask for it again".into(),
                None,
            )),
        }
    }

    /// The store failed for a station (storing a segment when `segment`): alert and log.
    pub(crate) fn unavailable(&self, station: &StationId, detail: &str, segment: bool, now: i64) {
        warn!(%station, store = %self.describe(), error = %detail, "archive storage unavailable");
        self.inner.fleet.archive_unavailable(
            station,
            format!("the archive cannot store footage: {detail}"),
            segment,
            now,
        );
    }
}

/// `seq` of the first line of a batch, if it parses (for the refusal row).
pub(crate) fn first_seq(body: &[u8]) -> Option<u64> {
    let line = body.split(|b| *b == b'\n').next()?;
    parse_line(line).ok().map(|e| e.seq())
}
