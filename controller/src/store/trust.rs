//! The trust tables: registered station keys and witnessed manifest heads (see `keys/`).

use std::collections::HashMap;

use sqlx::Row;
use stationwatch_protocol::manifest::{Hash256, PublicKey, Timestamp};
use stationwatch_protocol::trust::{RegisteredKey, TsaToken, WitnessedHead};
use stationwatch_protocol::{CameraId, StationId};

use super::{id, values, Result, Store, StoreError};

/// One manifest head to store (a camera's head changed).
#[derive(Debug, Clone, PartialEq)]
pub struct HeadRow {
    pub station: StationId,
    pub camera: CameraId,
    pub next_seq: u64,
    pub prev: Hash256,
    pub agent_at: i64,
    pub received_at: i64,
    pub key_fingerprint: Option<String>,
}

/// One row of `station_keys`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyRow {
    pub station: StationId,
    pub key: PublicKey,
    pub fingerprint: String,
    pub registered_at: i64,
    pub registered_by: String,
    pub retired_at: Option<i64>,
}

impl KeyRow {
    pub fn registered(&self) -> Result<RegisteredKey> {
        Ok(RegisteredKey {
            key: self.key,
            registered_at: ts(self.registered_at)?,
            retired_at: self.retired_at.map(ts).transpose()?,
        })
    }
}

/// How a registration ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// First key of the station.
    New,
    /// The old key (this fingerprint) was retired.
    Rotated { old: String },
    /// This key is already the station's current key: nothing changed.
    Same,
    /// The station has another key and `rotate` was not asked for.
    NeedsRotate { current: String },
}

pub(crate) fn ts(ms: i64) -> Result<Timestamp> {
    Timestamp::from_unix_ms(ms).map_err(|e| StoreError::Sql(sqlx::Error::Decode(Box::new(e))))
}

fn decode<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Sql(sqlx::Error::Decode(Box::new(e)))
}

const KEY_COLS: &str =
    "SELECT station_id, public_key, fingerprint, registered_at, registered_by, retired_at FROM station_keys";

fn key_row(r: &sqlx::any::AnyRow) -> Result<KeyRow> {
    Ok(KeyRow {
        station: id(r.try_get(0)?)?,
        key: PublicKey::from_hex(&r.try_get::<String, _>(1)?).map_err(decode)?,
        fingerprint: r.try_get(2)?,
        registered_at: r.try_get(3)?,
        registered_by: r.try_get(4)?,
        retired_at: r.try_get(5)?,
    })
}

const HEAD_COLS: &str =
    "SELECT station_id, camera, next_seq, prev, agent_at, received_at, key_fingerprint, tsa_json FROM witnessed_heads";

fn head_row(r: &sqlx::any::AnyRow) -> Result<(HeadRow, Option<TsaToken>)> {
    let tsa: Option<String> = r.try_get(7)?;
    Ok((
        HeadRow {
            station: id(r.try_get(0)?)?,
            camera: id(r.try_get(1)?)?,
            next_seq: r.try_get::<i64, _>(2)? as u64,
            prev: r.try_get::<String, _>(3)?.parse().map_err(decode)?,
            agent_at: r.try_get(4)?,
            received_at: r.try_get(5)?,
            key_fingerprint: r.try_get(6)?,
        },
        tsa.as_deref().and_then(|t| serde_json::from_str(t).ok()),
    ))
}

impl HeadRow {
    pub fn witnessed(&self, tsa: Option<TsaToken>) -> Result<WitnessedHead> {
        Ok(WitnessedHead {
            camera: self.camera.clone(),
            next_seq: self.next_seq,
            prev: self.prev,
            agent_at: ts(self.agent_at)?,
            received_at: ts(self.received_at)?,
            tsa,
        })
    }
}

impl Store {
    // ---- keys

    /// Registers `key` as the station's key at `at`. A station that has another key in force
    /// changes only with `rotate` (the old key is retired at `at`), in one transaction.
    pub async fn register_key(
        &self,
        station: &StationId,
        key: &PublicKey,
        by: &str,
        rotate: bool,
        at: i64,
    ) -> Result<Registered> {
        let mut tx = self.begin_write().await?;
        let current = sqlx::query(
            "SELECT public_key, fingerprint FROM station_keys WHERE station_id = $1 AND retired_at IS NULL",
        )
        .bind(station.as_str())
        .fetch_optional(&mut *tx)
        .await?;
        let outcome = match current {
            Some(r) => {
                let hex: String = r.try_get(0)?;
                let fpr: String = r.try_get(1)?;
                if hex == key.to_hex() {
                    return Ok(Registered::Same);
                }
                if !rotate {
                    return Ok(Registered::NeedsRotate { current: fpr });
                }
                sqlx::query(
                    "UPDATE station_keys SET retired_at = $1 WHERE station_id = $2 AND retired_at IS NULL",
                )
                .bind(at)
                .bind(station.as_str())
                .execute(&mut *tx)
                .await?;
                Registered::Rotated { old: fpr }
            }
            None => Registered::New,
        };
        sqlx::query(
            "INSERT INTO station_keys (station_id, public_key, fingerprint, registered_at, registered_by)
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(station.as_str())
        .bind(key.to_hex())
        .bind(key.fingerprint().to_string())
        .bind(at)
        .bind(by)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(outcome)
    }

    /// Every key of every station (or of one), oldest first.
    pub async fn keys(&self, station: Option<&StationId>) -> Result<Vec<KeyRow>> {
        let rows = match station {
            Some(s) => {
                sqlx::query(&format!("{KEY_COLS} WHERE station_id = $1 ORDER BY id"))
                    .bind(s.as_str())
                    .fetch_all(&self.pool)
                    .await?
            }
            None => {
                sqlx::query(&format!("{KEY_COLS} ORDER BY station_id, id"))
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        rows.iter().map(key_row).collect()
    }

    /// Keys registered or retired at or after `since` (what other replicas changed).
    pub async fn keys_changed_since(&self, since: i64) -> Result<Vec<KeyRow>> {
        // A rotation retires the old key at the new key's `registered_at`.
        let rows = sqlx::query(&format!("{KEY_COLS} WHERE registered_at >= $1 ORDER BY id"))
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(key_row).collect()
    }

    // ---- witnessed heads

    /// Heads, many rows per statement; a head already stored (same station, camera and
    /// `next_seq`, e.g. from another replica) is kept as first stored.
    pub(crate) async fn write_heads(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        heads: &[&HeadRow],
    ) -> Result<()> {
        const ROWS: usize = 200;
        for chunk in heads.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO witnessed_heads (station_id, camera, next_seq, prev, agent_at, received_at, key_fingerprint)
                 VALUES {} ON CONFLICT DO NOTHING",
                values(chunk.len(), 7, &[0, 1, 2, 3, 4, 5, 6])
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for h in chunk {
                q = bind_head(q, h);
            }
            q.execute(&mut **tx).await?;
        }
        // The highest per camera; one row per camera per statement (PostgreSQL refuses to
        // update a row twice in one).
        let mut latest: HashMap<(&str, &str), &HeadRow> = HashMap::new();
        for h in heads {
            let e = latest
                .entry((h.station.as_str(), h.camera.as_str()))
                .or_insert(h);
            if h.next_seq > e.next_seq {
                *e = h;
            }
        }
        let latest: Vec<&HeadRow> = latest.into_values().collect();
        for chunk in latest.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO witnessed_latest (station_id, camera, next_seq, prev, agent_at, received_at, key_fingerprint)
                 VALUES {} ON CONFLICT (station_id, camera) DO UPDATE SET next_seq = excluded.next_seq,
                   prev = excluded.prev, agent_at = excluded.agent_at,
                   received_at = excluded.received_at, key_fingerprint = excluded.key_fingerprint
                 WHERE witnessed_latest.next_seq < excluded.next_seq",
                values(chunk.len(), 7, &[0, 1, 2, 3, 4, 5, 6])
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for h in chunk {
                q = bind_head(q, h);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// The highest stored head of every camera of every station (loaded at start).
    pub async fn latest_heads(&self) -> Result<Vec<HeadRow>> {
        let rows = sqlx::query(
            "SELECT station_id, camera, next_seq, prev, agent_at, received_at, key_fingerprint, CAST(NULL AS TEXT)
             FROM witnessed_latest",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| head_row(r).map(|h| h.0)).collect()
    }

    /// Heads received at or after `since` (what other replicas stored).
    pub async fn heads_received_since(&self, since: i64) -> Result<Vec<HeadRow>> {
        let rows = sqlx::query(&format!("{HEAD_COLS} WHERE received_at >= $1"))
            .bind(since)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| head_row(r).map(|h| h.0)).collect()
    }

    /// The stored head of a camera at `next_seq`, if any.
    pub async fn head_at(
        &self,
        station: &StationId,
        camera: &CameraId,
        next_seq: u64,
    ) -> Result<Option<HeadRow>> {
        let r = sqlx::query(&format!(
            "{HEAD_COLS} WHERE station_id = $1 AND camera = $2 AND next_seq = $3"
        ))
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(next_seq as i64)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| head_row(&r).map(|h| h.0)).transpose()
    }

    /// A station's heads received in `[from, to]` plus the highest head of each camera, in the
    /// order received.
    pub async fn witness_heads(
        &self,
        station: &StationId,
        from: i64,
        to: i64,
    ) -> Result<Vec<(HeadRow, Option<TsaToken>)>> {
        let rows = sqlx::query(&format!(
            "{HEAD_COLS} w WHERE station_id = $1 AND ((received_at >= $2 AND received_at <= $3)
               OR next_seq = (SELECT MAX(next_seq) FROM witnessed_heads m
                              WHERE m.station_id = w.station_id AND m.camera = w.camera))
             ORDER BY received_at, camera, next_seq"
        ))
        .bind(station.as_str())
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(head_row).collect()
    }

    /// The highest head of each camera that has no time-stamp yet, received after `since`.
    pub async fn heads_to_stamp(&self, since: i64, limit: i64) -> Result<Vec<HeadRow>> {
        let rows = sqlx::query(&format!(
            "{HEAD_COLS} w WHERE tsa_json IS NULL AND received_at >= $1
               AND next_seq = (SELECT MAX(next_seq) FROM witnessed_heads m
                               WHERE m.station_id = w.station_id AND m.camera = w.camera)
             ORDER BY received_at LIMIT $2"
        ))
        .bind(since)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| head_row(r).map(|h| h.0)).collect()
    }

    /// Stores a head's RFC 3161 token.
    pub async fn set_head_tsa(&self, h: &HeadRow, token: &TsaToken) -> Result<()> {
        sqlx::query(
            "UPDATE witnessed_heads SET tsa_json = $1 WHERE station_id = $2 AND camera = $3 AND next_seq = $4",
        )
        .bind(serde_json::to_string(token).map_err(decode)?)
        .bind(h.station.as_str())
        .bind(h.camera.as_str())
        .bind(h.next_seq as i64)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// Binds a head's seven columns (station, camera, next_seq, prev, agent_at, received_at,
/// key_fingerprint) in table order.
fn bind_head<'q>(
    q: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    h: &'q HeadRow,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    q.bind(h.station.as_str())
        .bind(h.camera.as_str())
        .bind(h.next_seq as i64)
        .bind(h.prev.to_hex())
        .bind(h.agent_at)
        .bind(h.received_at)
        .bind(h.key_fingerprint.as_deref())
}
