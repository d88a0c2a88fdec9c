//! Segment uploads: chunks staged at exact offsets, the finished file checked and stored.

use std::path::Path;

use stationwatch_protocol::archive::{SegmentPhase, SegmentState};
use stationwatch_protocol::manifest::Hash256;
use stationwatch_protocol::{CameraId, StationId};
use tokio::io::AsyncWriteExt;
use tracing::{info, warn};

use super::{quarantine_key, segment_key, Archive, ArchiveError};
use crate::store::archive::{EntryRow, RefusalRow, ARCHIVED, EXPIRED, REFUSED};

/// Bytes staged of a segment (0 when nothing is).
async fn staged_len(path: &Path) -> Result<u64, ArchiveError> {
    match tokio::fs::metadata(path).await {
        Ok(m) => Ok(m.len()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(ArchiveError::Unavailable(format!(
            "staging {}: {e}",
            path.display()
        ))),
    }
}

fn state_of(e: &EntryRow, staged: u64) -> SegmentState {
    let size = e.size.unwrap_or(0);
    let (phase, received, reason) = match e.state.as_deref() {
        // Expired: it was archived (and verified); the station has nothing more to send.
        Some(ARCHIVED | EXPIRED) => (SegmentPhase::Archived, size, None),
        Some(REFUSED) if staged == 0 => (SegmentPhase::Refused, 0, e.reason.clone()),
        _ => (SegmentPhase::Pending, staged, None),
    };
    SegmentState {
        seq: e.seq,
        phase,
        received,
        size,
        reason,
    }
}

/// SHA-256 and length of a file, read in blocks on a blocking thread.
async fn hash_file(path: &Path) -> std::io::Result<(Hash256, u64)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let f = std::fs::File::open(&path)?;
        Hash256::of_reader(std::io::BufReader::with_capacity(1 << 20, f))
    })
    .await
    .map_err(std::io::Error::other)?
}

impl Archive {
    async fn segment_entry(
        &self,
        station: &StationId,
        camera: &CameraId,
        seq: u64,
    ) -> Result<EntryRow, ArchiveError> {
        let e = self
            .inner
            .store
            .archive_entry(station, camera, seq)
            .await?
            .ok_or_else(|| {
                ArchiveError::NotFound(format!(
                    "seq {seq} is not in the archived manifest of {station}/{camera}: send the manifest lines first"
                ))
            })?;
        if e.kind != "segment" {
            return Err(ArchiveError::NotFound(format!(
                "seq {seq} of {station}/{camera} is a {} entry, not a segment",
                e.kind
            )));
        }
        Ok(e)
    }

    /// Where a segment stands (how many bytes the archive holds).
    pub async fn segment_state(
        &self,
        station: &StationId,
        camera: &CameraId,
        seq: u64,
    ) -> Result<SegmentState, ArchiveError> {
        let e = self.segment_entry(station, camera, seq).await?;
        let staged = staged_len(&self.staging_file(station, camera, seq)).await?;
        Ok(state_of(&e, staged))
    }

    /// Appends `chunk` at `offset` of a segment. At the end of the file, the bytes are checked
    /// against the signed entry and stored (or refused). A chunk at another offset than the
    /// one held is a conflict (409 with the state); a chunk for an archived segment changes
    /// nothing (a replay). An empty chunk at the end of a complete, unstored file retries
    /// storing it (after a 507).
    pub async fn put_chunk(
        &self,
        station: &StationId,
        camera: &CameraId,
        seq: u64,
        offset: u64,
        chunk: &[u8],
        now: i64,
    ) -> Result<SegmentState, ArchiveError> {
        let _lock = self.lock(format!("segment/{station}/{camera}/{seq}")).await;
        let e = self.segment_entry(station, camera, seq).await?;
        let path = self.staging_file(station, camera, seq);
        let staged = staged_len(&path).await?;
        let state = state_of(&e, staged);
        if state.phase == SegmentPhase::Archived {
            return Ok(state);
        }
        if offset != state.received {
            return Err(ArchiveError::Conflict(
                format!(
                    "offset {offset}: the archive holds {} bytes of segment {seq}",
                    state.received
                ),
                Some(Box::new(state)),
            ));
        }
        let size = state.size;
        let len = chunk.len() as u64;
        if !chunk.is_empty() {
            let r = self.append(&path, chunk).await;
            if let Err(err) = r {
                self.unavailable(station, &err, true, now);
                return Err(ArchiveError::Unavailable(err));
            }
        }
        let received = offset.saturating_add(len);
        if received < size {
            return Ok(SegmentState {
                received,
                phase: SegmentPhase::Pending,
                reason: None,
                ..state
            });
        }
        self.complete(station, camera, &e, &path, now).await
    }

    /// Appends and syncs a chunk to the staging file.
    async fn append(&self, path: &Path, chunk: &[u8]) -> Result<(), String> {
        let err = |e: std::io::Error| format!("staging {}: {e}", path.display());
        if let Some(dir) = path.parent() {
            tokio::fs::create_dir_all(dir).await.map_err(err)?;
        }
        let mut f = tokio::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .await
            .map_err(err)?;
        let before = f.metadata().await.map_err(err)?.len();
        let written = async {
            f.write_all(chunk).await?;
            f.flush().await?;
            f.sync_data().await
        }
        .await;
        if let Err(e) = written {
            // A partial write (disk full) must not leave bytes the station did not get
            // acknowledged: cut back to where the chunk started.
            if let Err(cut) = f.set_len(before).await {
                warn!(path = %path.display(), error = %cut, "cannot cut a partly written chunk");
            }
            return Err(err(e));
        }
        Ok(())
    }

    /// The file is complete (or longer than signed): check it and store it or refuse it.
    async fn complete(
        &self,
        station: &StationId,
        camera: &CameraId,
        e: &EntryRow,
        path: &Path,
        now: i64,
    ) -> Result<SegmentState, ArchiveError> {
        let size = e.size.unwrap_or(0);
        let (hash, len) = match hash_file(path).await {
            Ok(x) => x,
            // Nothing staged: an empty file.
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => (Hash256::of(b""), 0),
            Err(err) => {
                let msg = format!("staging {}: {err}", path.display());
                self.unavailable(station, &msg, true, now);
                return Err(ArchiveError::Unavailable(msg));
            }
        };
        let expected = e.sha256.clone().unwrap_or_default();
        let file = e.file.clone().unwrap_or_default();
        let mismatch = if len != size {
            Some(format!(
                "{len} bytes received, the signed entry says {size}"
            ))
        } else if hash.to_hex() != expected {
            Some(format!(
                "SHA-256 {} differs from the signed entry's {expected}",
                hash.to_hex()
            ))
        } else {
            None
        };
        let Some(reason) = mismatch else {
            let key = segment_key(station, camera, &file);
            if let Err(err) = self.put_file(&key, path, len).await {
                let msg = err.to_string();
                self.unavailable(station, &msg, true, now);
                return Err(err);
            }
            self.inner
                .store
                .archive_set_state(station, camera, e.seq, ARCHIVED, None, Some(now))
                .await?;
            remove_staged(path).await;
            self.inner.fleet.archive_stored(station, camera, e.seq, now);
            info!(%station, %camera, seq = e.seq, file = %file, bytes = size, key = %key, "segment archived");
            return Ok(SegmentState {
                seq: e.seq,
                phase: stationwatch_protocol::archive::SegmentPhase::Archived,
                received: size,
                size,
                reason: None,
            });
        };
        let key = quarantine_key(station, camera, e.seq, now);
        if let Err(err) = self.put_file(&key, path, len).await {
            let msg = err.to_string();
            self.unavailable(station, &msg, true, now);
            return Err(err);
        }
        let reason = format!("segment {} ({file}): {reason}", e.seq);
        self.inner
            .store
            .archive_set_state(station, camera, e.seq, REFUSED, Some(&reason), None)
            .await?;
        self.inner
            .store
            .archive_refusal(
                station,
                &RefusalRow {
                    camera: camera.clone(),
                    seq: Some(e.seq),
                    what: "segment".into(),
                    reason: reason.clone(),
                    object_key: Some(key.clone()),
                    at: now,
                },
            )
            .await?;
        remove_staged(path).await;
        self.inner
            .fleet
            .archive_refused(station, camera, Some(e.seq), reason.clone(), now);
        warn!(%station, %camera, seq = e.seq, file = %file, bytes = len, quarantine = %key, reason = %reason, "segment refused");
        let state = SegmentState {
            seq: e.seq,
            phase: stationwatch_protocol::archive::SegmentPhase::Refused,
            received: 0,
            size,
            reason: Some(reason.clone()),
        };
        Err(ArchiveError::Refused(reason, Some(Box::new(state))))
    }
}

async fn remove_staged(path: &Path) {
    if let Err(e) = tokio::fs::remove_file(path).await {
        if e.kind() != std::io::ErrorKind::NotFound {
            warn!(path = %path.display(), error = %e, "cannot remove a staged segment");
        }
    }
}
