//! The archive index (`archive/`): the archived range of every camera's manifest, one row per
//! archived line (segments with their upload state), and what was refused.

use serde::Serialize;
use sqlx::Row;
use stationwatch_protocol::archive::ManifestRange;
use stationwatch_protocol::{CameraId, StationId};

use super::{id, Result, Store, StoreError};

fn decode<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Sql(sqlx::Error::Decode(Box::new(e)))
}

/// Upload state of a segment entry.
pub const PENDING: &str = "pending";
pub const ARCHIVED: &str = "archived";
pub const REFUSED: &str = "refused";
/// Archived, then deleted from the archive by its retention (`reason` says why).
pub const EXPIRED: &str = "expired";

/// An archived segment old enough for retention to consider.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpiredCandidate {
    pub station: StationId,
    pub camera: CameraId,
    pub seq: u64,
    pub file: String,
    pub size: u64,
    pub start_ms: i64,
    pub end_ms: i64,
}

/// One archived manifest line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct EntryRow {
    pub camera: CameraId,
    pub seq: u64,
    #[serde(skip)]
    pub line: String,
    pub hash: String,
    pub kind: String,
    pub start_ms: Option<i64>,
    pub end_ms: Option<i64>,
    pub file: Option<String>,
    pub size: Option<u64>,
    pub sha256: Option<String>,
    /// Segments: `pending`, `archived` or `refused`.
    pub state: Option<String>,
    pub reason: Option<String>,
    pub archived_at: Option<i64>,
    pub received_at: i64,
}

/// Segments of a station (or camera) by state: how many and how many bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct StateTotals {
    pub archived_segments: u64,
    pub archived_bytes: u64,
    pub pending_segments: u64,
    pub pending_bytes: u64,
    pub refused_segments: u64,
    pub refused_bytes: u64,
    /// Deleted from the archive by its retention.
    pub expired_segments: u64,
    pub expired_bytes: u64,
}

impl StateTotals {
    fn add(&mut self, state: &str, n: u64, bytes: u64) {
        let (c, b) = match state {
            ARCHIVED => (&mut self.archived_segments, &mut self.archived_bytes),
            REFUSED => (&mut self.refused_segments, &mut self.refused_bytes),
            EXPIRED => (&mut self.expired_segments, &mut self.expired_bytes),
            _ => (&mut self.pending_segments, &mut self.pending_bytes),
        };
        *c += n;
        *b += bytes;
    }

    pub fn merge(&mut self, o: &StateTotals) {
        self.archived_segments += o.archived_segments;
        self.archived_bytes += o.archived_bytes;
        self.pending_segments += o.pending_segments;
        self.pending_bytes += o.pending_bytes;
        self.refused_segments += o.refused_segments;
        self.refused_bytes += o.refused_bytes;
        self.expired_segments += o.expired_segments;
        self.expired_bytes += o.expired_bytes;
    }
}

/// A refusal as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RefusalRow {
    pub camera: CameraId,
    pub seq: Option<u64>,
    /// `manifest` or `segment`.
    pub what: String,
    pub reason: String,
    pub object_key: Option<String>,
    pub at: i64,
}

/// How an append of manifest lines ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Appended {
    Done,
    /// Another request changed the range in the meantime: nothing stored, try again.
    Raced,
}

const ENTRY_COLS: &str = "SELECT camera, seq, line, hash, kind, start_ms, end_ms, file, size, sha256, state, reason, archived_at, received_at FROM archive_entries";

fn entry_row(r: &sqlx::any::AnyRow) -> Result<EntryRow> {
    Ok(EntryRow {
        camera: id(r.try_get(0)?)?,
        seq: r.try_get::<i64, _>(1)? as u64,
        line: r.try_get(2)?,
        hash: r.try_get(3)?,
        kind: r.try_get(4)?,
        start_ms: r.try_get(5)?,
        end_ms: r.try_get(6)?,
        file: r.try_get(7)?,
        size: r.try_get::<Option<i64>, _>(8)?.map(|s| s as u64),
        sha256: r.try_get(9)?,
        state: r.try_get(10)?,
        reason: r.try_get(11)?,
        archived_at: r.try_get(12)?,
        received_at: r.try_get(13)?,
    })
}

fn range_row(r: &sqlx::any::AnyRow, at: usize) -> Result<ManifestRange> {
    Ok(ManifestRange {
        first_seq: r.try_get::<i64, _>(at)? as u64,
        first_prev: r.try_get::<String, _>(at + 1)?.parse().map_err(decode)?,
        last_seq: r.try_get::<i64, _>(at + 2)? as u64,
        last_hash: r.try_get::<String, _>(at + 3)?.parse().map_err(decode)?,
    })
}

impl Store {
    /// The archived range of a camera's manifest.
    pub async fn archive_range(
        &self,
        station: &StationId,
        camera: &CameraId,
    ) -> Result<Option<ManifestRange>> {
        let row = sqlx::query(
            "SELECT first_seq, first_prev, last_seq, last_hash FROM archive_manifests
             WHERE station_id = $1 AND camera = $2",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| range_row(&r, 0)).transpose()
    }

    /// The archived ranges of every camera of a station.
    pub async fn archive_ranges(
        &self,
        station: &StationId,
    ) -> Result<Vec<(CameraId, ManifestRange)>> {
        let rows = sqlx::query(
            "SELECT camera, first_seq, first_prev, last_seq, last_hash FROM archive_manifests
             WHERE station_id = $1 ORDER BY camera",
        )
        .bind(station.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((id(r.try_get(0)?)?, range_row(r, 1)?)))
            .collect()
    }

    /// Stores accepted lines and moves the range from `old` to `new`, in one transaction. Lines
    /// already held are left as they are. [`Appended::Raced`] when the stored range is no
    /// longer `old`.
    pub async fn archive_append(
        &self,
        station: &StationId,
        camera: &CameraId,
        old: Option<&ManifestRange>,
        new: &ManifestRange,
        rows: &[EntryRow],
        now: i64,
    ) -> Result<Appended> {
        let mut tx = self.begin_write().await?;
        let moved = match old {
            None => sqlx::query(
                "INSERT INTO archive_manifests
                   (station_id, camera, first_seq, first_prev, last_seq, last_hash, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
            )
            .bind(station.as_str())
            .bind(camera.as_str())
            .bind(new.first_seq as i64)
            .bind(new.first_prev.to_hex())
            .bind(new.last_seq as i64)
            .bind(new.last_hash.to_hex())
            .bind(now)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
            Some(o) => sqlx::query(
                "UPDATE archive_manifests SET first_seq = $1, first_prev = $2, last_seq = $3,
                   last_hash = $4, updated_at = $5
                 WHERE station_id = $6 AND camera = $7 AND first_seq = $8 AND last_seq = $9",
            )
            .bind(new.first_seq as i64)
            .bind(new.first_prev.to_hex())
            .bind(new.last_seq as i64)
            .bind(new.last_hash.to_hex())
            .bind(now)
            .bind(station.as_str())
            .bind(camera.as_str())
            .bind(o.first_seq as i64)
            .bind(o.last_seq as i64)
            .execute(&mut *tx)
            .await?
            .rows_affected(),
        };
        if moved == 0 {
            tx.rollback().await?;
            return Ok(Appended::Raced);
        }
        for e in rows {
            sqlx::query(
                "INSERT INTO archive_entries (station_id, camera, seq, line, hash, kind, start_ms,
                   end_ms, file, size, sha256, state, reason, archived_at, received_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)
                 ON CONFLICT DO NOTHING",
            )
            .bind(station.as_str())
            .bind(camera.as_str())
            .bind(e.seq as i64)
            .bind(&e.line)
            .bind(&e.hash)
            .bind(&e.kind)
            .bind(e.start_ms)
            .bind(e.end_ms)
            .bind(&e.file)
            .bind(e.size.map(|s| s as i64))
            .bind(&e.sha256)
            .bind(&e.state)
            .bind(&e.reason)
            .bind(e.archived_at)
            .bind(e.received_at)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Appended::Done)
    }

    /// Hashes of the held lines with `seq` in `[from, to]`, by seq.
    pub async fn archive_hashes(
        &self,
        station: &StationId,
        camera: &CameraId,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, String)>> {
        let rows = sqlx::query(
            "SELECT seq, hash FROM archive_entries
             WHERE station_id = $1 AND camera = $2 AND seq >= $3 AND seq <= $4 ORDER BY seq",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(from.min(i64::MAX as u64) as i64)
        .bind(to.min(i64::MAX as u64) as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?)))
            .collect()
    }

    /// One archived line.
    pub async fn archive_entry(
        &self,
        station: &StationId,
        camera: &CameraId,
        seq: u64,
    ) -> Result<Option<EntryRow>> {
        let Ok(seq) = i64::try_from(seq) else {
            return Ok(None);
        };
        let row = sqlx::query(&format!(
            "{ENTRY_COLS} WHERE station_id = $1 AND camera = $2 AND seq = $3"
        ))
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(seq)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| entry_row(&r)).transpose()
    }

    /// Sets a segment's upload state.
    pub async fn archive_set_state(
        &self,
        station: &StationId,
        camera: &CameraId,
        seq: u64,
        state: &str,
        reason: Option<&str>,
        archived_at: Option<i64>,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE archive_entries SET state = $1, reason = $2, archived_at = $3
             WHERE station_id = $4 AND camera = $5 AND seq = $6",
        )
        .bind(state)
        .bind(reason)
        .bind(archived_at)
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(seq as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Records a refusal.
    pub async fn archive_refusal(&self, station: &StationId, r: &RefusalRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO archive_refusals (station_id, camera, seq, what, reason, object_key, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(station.as_str())
        .bind(r.camera.as_str())
        .bind(r.seq.map(|s| s as i64))
        .bind(&r.what)
        .bind(&r.reason)
        .bind(&r.object_key)
        .bind(r.at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The newest refusals of a station.
    pub async fn archive_refusals(
        &self,
        station: &StationId,
        limit: i64,
    ) -> Result<Vec<RefusalRow>> {
        let rows = sqlx::query(
            "SELECT camera, seq, what, reason, object_key, at FROM archive_refusals
             WHERE station_id = $1 ORDER BY at DESC, id DESC LIMIT $2",
        )
        .bind(station.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(RefusalRow {
                    camera: id(r.try_get(0)?)?,
                    seq: r.try_get::<Option<i64>, _>(1)?.map(|s| s as u64),
                    what: r.try_get(2)?,
                    reason: r.try_get(3)?,
                    object_key: r.try_get(4)?,
                    at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Segment and gap entries of a station (optionally one camera) whose span meets
    /// `[from, to]` (ms), in time order, at most `limit`.
    pub async fn archive_timeline(
        &self,
        station: &StationId,
        camera: Option<&CameraId>,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<EntryRow>> {
        let rows = sqlx::query(&format!(
            "{ENTRY_COLS} WHERE station_id = $1 AND ($2 = '' OR camera = $2)
               AND start_ms IS NOT NULL AND start_ms <= $3 AND end_ms >= $4
             ORDER BY start_ms, camera, seq LIMIT $5"
        ))
        .bind(station.as_str())
        .bind(camera.map_or("", |c| c.as_str()))
        .bind(to)
        .bind(from)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(entry_row).collect()
    }

    /// The archived lines of a camera with `first <= seq <= last`, in order.
    pub async fn archive_lines(
        &self,
        station: &StationId,
        camera: &CameraId,
        first: u64,
        last: u64,
    ) -> Result<Vec<(u64, String)>> {
        let rows = sqlx::query(
            "SELECT seq, line FROM archive_entries
             WHERE station_id = $1 AND camera = $2 AND seq >= $3 AND seq <= $4 ORDER BY seq",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(first as i64)
        .bind(last as i64)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<i64, _>(0)? as u64, r.try_get(1)?)))
            .collect()
    }

    /// The end of a camera's latest archived segment or gap (how far its manifest reaches).
    pub async fn archive_latest_end(
        &self,
        station: &StationId,
        camera: &CameraId,
    ) -> Result<Option<i64>> {
        let r = sqlx::query(
            "SELECT MAX(end_ms) FROM archive_entries WHERE station_id = $1 AND camera = $2",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .fetch_one(&self.pool)
        .await?;
        Ok(r.try_get::<Option<i64>, _>(0)?)
    }

    /// Segment totals by state per station (`None`: every station) and camera.
    pub async fn archive_totals(
        &self,
        station: Option<&StationId>,
    ) -> Result<Vec<(StationId, CameraId, StateTotals)>> {
        let rows = sqlx::query(
            "SELECT station_id, camera, state, COUNT(*), CAST(SUM(size) AS BIGINT) FROM archive_entries
             WHERE state IS NOT NULL AND ($1 = '' OR station_id = $1)
             GROUP BY station_id, camera, state ORDER BY station_id, camera",
        )
        .bind(station.map_or("", |s| s.as_str()))
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<(StationId, CameraId, StateTotals)> = Vec::new();
        for r in &rows {
            let s: StationId = id(r.try_get(0)?)?;
            let c: CameraId = id(r.try_get(1)?)?;
            let state: String = r.try_get(2)?;
            let n = r.try_get::<i64, _>(3)? as u64;
            let bytes = r.try_get::<Option<i64>, _>(4)?.unwrap_or(0) as u64;
            match out.last_mut() {
                Some((ls, lc, t)) if *ls == s && *lc == c => t.add(&state, n, bytes),
                _ => {
                    let mut t = StateTotals::default();
                    t.add(&state, n, bytes);
                    out.push((s, c, t));
                }
            }
        }
        Ok(out)
    }

    /// Archived segments whose span ended before `before` (ms), in (station, camera, seq) order
    /// after `after`, at most `limit`.
    pub async fn archive_expired_candidates(
        &self,
        before: i64,
        after: Option<&(StationId, CameraId, u64)>,
        limit: i64,
    ) -> Result<Vec<ExpiredCandidate>> {
        let (s, c, q) = after.map_or(("", "", -1), |(s, c, q)| {
            (s.as_str(), c.as_str(), *q as i64)
        });
        let rows = sqlx::query(
            "SELECT station_id, camera, seq, file, size, start_ms, end_ms FROM archive_entries
             WHERE state = $1 AND end_ms < $2
               AND (station_id > $3 OR (station_id = $3 AND (camera > $4 OR (camera = $4 AND seq > $5))))
             ORDER BY station_id, camera, seq LIMIT $6",
        )
        .bind(ARCHIVED)
        .bind(before)
        .bind(s)
        .bind(c)
        .bind(q)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ExpiredCandidate {
                    station: id(r.try_get(0)?)?,
                    camera: id(r.try_get(1)?)?,
                    seq: r.try_get::<i64, _>(2)? as u64,
                    file: r.try_get::<Option<String>, _>(3)?.unwrap_or_default(),
                    size: r.try_get::<Option<i64>, _>(4)?.unwrap_or(0) as u64,
                    start_ms: r.try_get::<Option<i64>, _>(5)?.unwrap_or(0),
                    end_ms: r.try_get::<Option<i64>, _>(6)?.unwrap_or(0),
                })
            })
            .collect()
    }

    /// The archived `hold` and `release` lines of a camera, in manifest order.
    pub async fn archive_hold_lines(
        &self,
        station: &StationId,
        camera: &CameraId,
    ) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT line FROM archive_entries
             WHERE station_id = $1 AND camera = $2 AND kind IN ('hold', 'release')
             ORDER BY seq",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    /// Marks an archived segment deleted by retention (only if it is still `archived`).
    pub async fn archive_expire(
        &self,
        station: &StationId,
        camera: &CameraId,
        seq: u64,
        reason: &str,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE archive_entries SET state = $1, reason = $2
             WHERE station_id = $3 AND camera = $4 AND seq = $5 AND state = $6",
        )
        .bind(EXPIRED)
        .bind(reason)
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(seq as i64)
        .bind(ARCHIVED)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
