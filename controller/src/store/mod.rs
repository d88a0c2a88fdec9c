//! The database: users, sessions, the latest state of every station, history (health figures,
//! events, alerts, commands and their acks), snapshots and the audit log.
//!
//! SQLite by default, PostgreSQL through the same code: queries go through sqlx's `Any` driver
//! and use only SQL both understand (`$N` parameters, `ON CONFLICT`, `RETURNING`, partial unique
//! indexes). Times are Unix milliseconds. Every write is idempotent where a message can arrive
//! twice or at two replicas: events by (station, id), health figures by (station, report time),
//! alerts by the partial unique index "one open alert per station and kind".

use std::collections::HashMap;
use std::str::FromStr;
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::{AnyPool, FromRow, Row};
use stationwatch_protocol::{CameraId, StationId};

use crate::config::DatabaseConfig;

pub mod archive;
pub mod enroll;
pub mod live;
pub mod masks;
pub mod requests;
mod trust;
pub mod views;
pub use trust::{HeadRow, KeyRow, Registered};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {url}: {source}")]
    Connect { url: String, source: sqlx::Error },
    #[error("database migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("database error: {0}")]
    Sql(#[from] sqlx::Error),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

#[derive(Clone)]
pub struct Store {
    pool: AnyPool,
    postgres: bool,
}

/// A user as stored.
#[derive(Debug, Clone, PartialEq, Eq, FromRow)]
pub struct UserRow {
    pub id: i64,
    pub username: String,
    pub password_hash: String,
    pub role: String,
}

/// A station's latest state as stored.
#[derive(Debug, Clone, FromRow)]
pub struct StationRow {
    #[sqlx(try_from = "String")]
    pub id: StationId,
    pub status_json: Option<String>,
    pub status_received_at: Option<i64>,
    pub health_json: Option<String>,
    pub health_received_at: Option<i64>,
    pub updated_at: i64,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct EventRow {
    pub station_id: StationId,
    pub event_id: String,
    pub at: i64,
    pub received_at: i64,
    pub kind: String,
    pub camera: Option<CameraId>,
    pub body: serde_json::Value,
}

#[derive(Debug, Clone, serde::Serialize, FromRow)]
pub struct AlertRow {
    pub id: i64,
    #[sqlx(try_from = "String")]
    pub station_id: StationId,
    pub kind: String,
    pub detail: String,
    pub opened_at: i64,
    pub closed_at: Option<i64>,
}

/// An API token as its owner (or an admin) sees it: never the token itself.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TokenRow {
    pub id: String,
    pub name: String,
    pub username: String,
    pub created_at: i64,
    /// `None` only for tokens made before tokens expired.
    pub expires_at: Option<i64>,
    pub last_used_at: Option<i64>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct CommandRow {
    pub id: String,
    pub station_id: StationId,
    pub kind: String,
    pub body: serde_json::Value,
    pub issued_by: String,
    pub issued_at: i64,
    pub status: String,
    /// When the command stops being valid at the agent (Unix ms); `None` for rows from before
    /// expiry was stored. A command still `sent` after it becomes `expired`.
    pub expires_at: Option<i64>,
    pub ack_at: Option<i64>,
    pub ack: Option<serde_json::Value>,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthPoint {
    pub at: i64,
    pub figures: serde_json::Value,
}

#[derive(Debug, Clone, serde::Serialize)]
pub struct AuditRow {
    pub id: i64,
    pub at: i64,
    pub username: String,
    pub action: String,
    pub target: String,
    pub detail: String,
    pub ok: bool,
}

/// A station's receive times (what a sync compares before reading the JSON).
#[derive(Debug, Clone, FromRow)]
pub struct StationVersion {
    #[sqlx(try_from = "String")]
    pub id: StationId,
    pub status_received_at: Option<i64>,
    pub health_received_at: Option<i64>,
    pub updated_at: i64,
}

const COMMAND_COLS: &str = "SELECT id, station_id, kind, body, issued_by, issued_at, status,
    ack_at, ack_body, expires_at FROM commands";

fn command_row(r: &sqlx::any::AnyRow) -> Result<CommandRow> {
    Ok(CommandRow {
        id: r.try_get(0)?,
        station_id: id(r.try_get(1)?)?,
        kind: r.try_get(2)?,
        body: json(&r.try_get::<String, _>(3)?),
        issued_by: r.try_get(4)?,
        issued_at: r.try_get(5)?,
        status: r.try_get(6)?,
        expires_at: r.try_get(9)?,
        ack_at: r.try_get(7)?,
        ack: r.try_get::<Option<String>, _>(8)?.as_deref().map(json),
    })
}

/// One write of the ingest path; batches of them go in one transaction.
#[derive(Debug, Clone)]
pub enum Write {
    Status {
        station: StationId,
        json: String,
        received_at: i64,
    },
    Health {
        station: StationId,
        json: String,
        at: i64,
        received_at: i64,
        figures: String,
    },
    Event(EventRow),
    Ack {
        station: StationId,
        command_id: String,
        status: String,
        at: i64,
        json: String,
    },
    Snapshot {
        station: StationId,
        camera: CameraId,
        received_at: i64,
        jpeg: Vec<u8>,
    },
    /// A camera's manifest head changed: witness it.
    Head(HeadRow),
}

/// An id read back from a column (validated before it was written).
fn id<T: TryFrom<String, Error = stationwatch_protocol::IdError>>(s: String) -> Result<T> {
    T::try_from(s).map_err(|e| StoreError::Sql(sqlx::Error::Decode(Box::new(e))))
}

fn json(text: &str) -> serde_json::Value {
    serde_json::from_str(text).unwrap_or(serde_json::Value::Null)
}

impl Store {
    /// Connects (creating a SQLite file if missing) and brings the schema up to date.
    pub async fn connect(cfg: &DatabaseConfig) -> Result<Store> {
        sqlx::any::install_default_drivers();
        let postgres = cfg.is_postgres();
        let url = if postgres || cfg.url.contains('?') {
            cfg.url.clone()
        } else {
            format!("{}?mode=rwc", cfg.url)
        };
        let connect = |source| StoreError::Connect {
            url: redact(&cfg.url),
            source,
        };
        let opts = AnyConnectOptions::from_str(&url).map_err(connect)?;
        let pool = AnyPoolOptions::new()
            .max_connections(if postgres {
                cfg.max_connections
            } else {
                cfg.max_connections.min(4)
            })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if !postgres {
                        // WAL: readers never wait for the ingest writer; NORMAL is durable
                        // across application crashes and costs one fsync per checkpoint.
                        sqlx::query("PRAGMA journal_mode = WAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA synchronous = NORMAL")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA busy_timeout = 10000")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA foreign_keys = ON")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect_with(opts)
            .await
            .map_err(connect)?;
        if postgres {
            sqlx::migrate!("migrations/postgres").run(&pool).await?;
        } else {
            sqlx::migrate!("migrations/sqlite").run(&pool).await?;
        }
        Ok(Store { pool, postgres })
    }

    pub fn is_postgres(&self) -> bool {
        self.postgres
    }

    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred transaction that reads first and writes later fails at once with
    /// "database is locked" (the busy timeout does not apply) when another connection wrote in
    /// between.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>> {
        Ok(if self.postgres {
            self.pool.begin().await?
        } else {
            self.pool.begin_with("BEGIN IMMEDIATE").await?
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    // ---- users, grants, sessions, tokens

    pub async fn user_count(&self) -> Result<i64> {
        Ok(sqlx::query("SELECT COUNT(*) FROM users")
            .fetch_one(&self.pool)
            .await?
            .try_get(0)?)
    }

    /// Creates a user; `None` when the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        role: &str,
        now: i64,
    ) -> Result<Option<i64>> {
        let row = sqlx::query(
            "INSERT INTO users (username, password_hash, role, created_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(role)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get(0)).transpose()?)
    }

    pub async fn set_password(&self, user_id: i64, password_hash: &str) -> Result<()> {
        sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
            .bind(password_hash)
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    pub async fn user_by_name(&self, username: &str) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as(
            "SELECT id, username, password_hash, role FROM users WHERE username = $1",
        )
        .bind(username)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn users(&self) -> Result<Vec<UserRow>> {
        Ok(
            sqlx::query_as("SELECT id, username, password_hash, role FROM users ORDER BY username")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    pub async fn delete_user(&self, user_id: i64) -> Result<bool> {
        for q in [
            "DELETE FROM sessions WHERE user_id = $1",
            "DELETE FROM api_tokens WHERE user_id = $1",
            "DELETE FROM grants WHERE user_id = $1",
        ] {
            sqlx::query(q).bind(user_id).execute(&self.pool).await?;
        }
        let done = sqlx::query("DELETE FROM users WHERE id = $1")
            .bind(user_id)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn grants(&self, user_id: i64) -> Result<Vec<String>> {
        let rows =
            sqlx::query("SELECT station_id FROM grants WHERE user_id = $1 ORDER BY station_id")
                .bind(user_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    pub async fn set_grants(&self, user_id: i64, stations: &[String]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM grants WHERE user_id = $1")
            .bind(user_id)
            .execute(&mut *tx)
            .await?;
        for s in stations {
            sqlx::query(
                "INSERT INTO grants (user_id, station_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            )
            .bind(user_id)
            .bind(s)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    pub async fn insert_session(
        &self,
        token_hash: &str,
        user_id: i64,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query("INSERT INTO sessions (token_hash, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)")
            .bind(token_hash)
            .bind(user_id)
            .bind(now)
            .bind(expires_at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The user of a live session.
    pub async fn session_user(&self, token_hash: &str, now: i64) -> Result<Option<UserRow>> {
        Ok(sqlx::query_as(
            "SELECT u.id, u.username, u.password_hash, u.role FROM sessions s
             JOIN users u ON u.id = s.user_id WHERE s.token_hash = $1 AND s.expires_at > $2",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<()> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Stores a token (by hash) valid until `expires_at`; its public id is the hash's first
    /// 16 hex digits.
    pub async fn insert_token(
        &self,
        token_hash: &str,
        user_id: i64,
        name: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<String> {
        let id = token_hash.get(..16).unwrap_or(token_hash).to_owned();
        sqlx::query(
            "INSERT INTO api_tokens (token_hash, user_id, name, created_at, expires_at, id)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(name)
        .bind(now)
        .bind(expires_at)
        .bind(&id)
        .execute(&self.pool)
        .await?;
        Ok(id)
    }

    /// The user of a token that has not expired, noting its use (at most once a minute).
    pub async fn token_user(&self, token_hash: &str, now: i64) -> Result<Option<UserRow>> {
        let row = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.role, t.last_used_at FROM api_tokens t
             JOIN users u ON u.id = t.user_id
             WHERE t.token_hash = $1 AND (t.expires_at IS NULL OR t.expires_at > $2)",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let user = UserRow {
            id: r.try_get(0)?,
            username: r.try_get(1)?,
            password_hash: r.try_get(2)?,
            role: r.try_get(3)?,
        };
        // Last use to the minute: a write at most once a minute per token, not one per request
        // (on SQLite every UPDATE takes the write lock, even one that changes nothing).
        let last: Option<i64> = r.try_get(4)?;
        if last.is_none_or(|l| l < now - 60_000) {
            sqlx::query(
                "UPDATE api_tokens SET last_used_at = $1
                 WHERE token_hash = $2 AND (last_used_at IS NULL OR last_used_at < $3)",
            )
            .bind(now)
            .bind(token_hash)
            .bind(now - 60_000)
            .execute(&self.pool)
            .await?;
        }
        Ok(Some(user))
    }

    /// Tokens of `user` (every user's with `None`), newest first.
    pub async fn tokens(&self, user: Option<i64>) -> Result<Vec<TokenRow>> {
        let rows = sqlx::query(
            "SELECT t.id, t.name, u.username, t.created_at, t.expires_at, t.last_used_at
             FROM api_tokens t JOIN users u ON u.id = t.user_id
             WHERE $1 < 0 OR t.user_id = $1 ORDER BY t.created_at DESC",
        )
        .bind(user.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(TokenRow {
                    id: r.try_get(0)?,
                    name: r.try_get(1)?,
                    username: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    expires_at: r.try_get(4)?,
                    last_used_at: r.try_get(5)?,
                })
            })
            .collect()
    }

    /// Deletes token `id` (of `user` only, unless `None`); whether there was one.
    pub async fn revoke_token(&self, id: &str, user: Option<i64>) -> Result<bool> {
        let r = sqlx::query("DELETE FROM api_tokens WHERE id = $1 AND ($2 < 0 OR user_id = $2)")
            .bind(id)
            .bind(user.unwrap_or(-1))
            .execute(&self.pool)
            .await?;
        Ok(r.rows_affected() > 0)
    }

    // ---- station state and ingest

    /// Applies a batch of ingest writes in one transaction.
    ///
    /// Health reports, the bulk of the traffic, go in multi-row statements (a round trip per
    /// statement is what limits SQLite through sqlx: one per report capped ingest at ~2,800
    /// reports/s); the rest one statement each, in order.
    pub async fn write_batch(&self, batch: &[Write]) -> Result<()> {
        let mut tx = self.begin_write().await?;
        self.write_healths(&mut tx, batch).await?;
        let heads: Vec<&HeadRow> = batch
            .iter()
            .filter_map(|w| match w {
                Write::Head(h) => Some(h),
                _ => None,
            })
            .collect();
        self.write_heads(&mut tx, &heads).await?;
        for w in batch {
            match w {
                Write::Status {
                    station,
                    json,
                    received_at,
                } => {
                    sqlx::query(
                        "INSERT INTO stations (id, status_json, status_received_at, updated_at)
                         VALUES ($1, $2, $3, $3)
                         ON CONFLICT (id) DO UPDATE SET status_json = excluded.status_json,
                           status_received_at = excluded.status_received_at,
                           updated_at = CASE WHEN stations.updated_at > excluded.updated_at
                     THEN stations.updated_at ELSE excluded.updated_at END
                         WHERE stations.status_received_at IS NULL
                            OR stations.status_received_at <= excluded.status_received_at",
                    )
                    .bind(station.as_str())
                    .bind(json)
                    .bind(received_at)
                    .execute(&mut *tx)
                    .await?;
                }
                // Written above, many rows per statement.
                Write::Health { .. } | Write::Head(_) => {}
                Write::Event(e) => {
                    sqlx::query(
                        "INSERT INTO events (station_id, event_id, at, received_at, kind, camera, body)
                         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
                    )
                    .bind(e.station_id.as_str())
                    .bind(&e.event_id)
                    .bind(e.at)
                    .bind(e.received_at)
                    .bind(&e.kind)
                    .bind(e.camera.as_ref().map(CameraId::as_str))
                    .bind(e.body.to_string())
                    .execute(&mut *tx)
                    .await?;
                }
                Write::Ack {
                    station,
                    command_id,
                    status,
                    at,
                    json,
                } => {
                    // A final status is never replaced by a late `accepted`; an `expired`
                    // command only by `done` (the agent did run it after all).
                    sqlx::query(
                        "UPDATE commands SET status = $1, ack_at = $2, ack_body = $3
                         WHERE id = $4 AND station_id = $5
                           AND status NOT IN ('done', 'rejected')
                           AND (status <> 'expired' OR $1 = 'done')",
                    )
                    .bind(status)
                    .bind(at)
                    .bind(json)
                    .bind(command_id)
                    .bind(station.as_str())
                    .execute(&mut *tx)
                    .await?;
                }
                Write::Snapshot {
                    station,
                    camera,
                    received_at,
                    jpeg,
                } => {
                    sqlx::query(
                        "INSERT INTO snapshots (station_id, camera, received_at, jpeg) VALUES ($1, $2, $3, $4)
                         ON CONFLICT (station_id, camera) DO UPDATE SET received_at = excluded.received_at,
                           jpeg = excluded.jpeg",
                    )
                    .bind(station.as_str())
                    .bind(camera.as_str())
                    .bind(received_at)
                    .bind(jpeg.as_slice())
                    .execute(&mut *tx)
                    .await?;
                }
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn write_healths(
        &self,
        tx: &mut sqlx::Transaction<'_, sqlx::Any>,
        batch: &[Write],
    ) -> Result<()> {
        /// Rows per statement (4 parameters each; both engines allow thousands).
        const ROWS: usize = 250;
        let mut latest: HashMap<&str, (&str, i64, i64)> = HashMap::new();
        let mut history: HashMap<(&str, i64), (i64, &str)> = HashMap::new();
        for w in batch {
            if let Write::Health {
                station,
                json,
                at,
                received_at,
                figures,
            } = w
            {
                let e = latest
                    .entry(station.as_str())
                    .or_insert((json, *at, *received_at));
                // The latest received report wins (not the agent's `at`).
                if *received_at > e.2 {
                    *e = (json, *at, *received_at);
                }
                history
                    .entry((station.as_str(), *at))
                    .or_insert((*received_at, figures));
            }
        }
        // One row per station per statement: PostgreSQL refuses to update a row twice in one.
        let latest: Vec<_> = latest.into_iter().collect();
        for chunk in latest.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO stations (id, health_json, health_at, health_received_at, updated_at) VALUES {}
                 ON CONFLICT (id) DO UPDATE SET health_json = excluded.health_json,
                   health_at = excluded.health_at,
                   health_received_at = excluded.health_received_at,
                   updated_at = CASE WHEN stations.updated_at > excluded.updated_at
                     THEN stations.updated_at ELSE excluded.updated_at END
                 WHERE stations.health_received_at IS NULL
                    OR stations.health_received_at < excluded.health_received_at",
                values(chunk.len(), 4, &[0, 1, 2, 3, 3])
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for (station, (json, at, received_at)) in chunk {
                q = q.bind(*station).bind(*json).bind(*at).bind(*received_at);
            }
            q.execute(&mut **tx).await?;
        }
        let history: Vec<_> = history.into_iter().collect();
        for chunk in history.chunks(ROWS) {
            let sql = format!(
                "INSERT INTO health_history (station_id, at, received_at, figures) VALUES {} ON CONFLICT DO NOTHING",
                values(chunk.len(), 4, &[0, 1, 2, 3])
            );
            let mut q = sqlx::query(&sql).persistent(false);
            for ((station, at), (received_at, figures)) in chunk {
                q = q.bind(*station).bind(*at).bind(*received_at).bind(*figures);
            }
            q.execute(&mut **tx).await?;
        }
        Ok(())
    }

    /// Which stations changed at or after `since`, with their receive times (cheap: no JSON).
    pub async fn station_versions_since(&self, since: i64) -> Result<Vec<StationVersion>> {
        Ok(sqlx::query_as(
            "SELECT id, status_received_at, health_received_at, updated_at FROM stations WHERE updated_at >= $1",
        )
        .bind(since)
        .fetch_all(&self.pool)
        .await?)
    }

    /// The full rows of these stations (all stations when `ids` is `None`).
    pub async fn stations(&self, ids: Option<&[StationId]>) -> Result<Vec<StationRow>> {
        const COLS: &str =
            "SELECT id, status_json, status_received_at, health_json, health_received_at, updated_at FROM stations";
        let Some(ids) = ids else {
            return Ok(sqlx::query_as(COLS).fetch_all(&self.pool).await?);
        };
        let mut out = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            let params: Vec<String> = (1..=chunk.len()).map(|i| format!("${i}")).collect();
            let sql = format!("{COLS} WHERE id IN ({})", params.join(", "));
            let mut q = sqlx::query_as(&sql);
            for id in chunk {
                q = q.bind(id.as_str());
            }
            out.extend(q.fetch_all(&self.pool).await?);
        }
        Ok(out)
    }

    pub async fn health_history(
        &self,
        station: &StationId,
        from: i64,
        to: i64,
        limit: i64,
    ) -> Result<Vec<HealthPoint>> {
        let rows = sqlx::query(
            "SELECT at, figures FROM health_history WHERE station_id = $1 AND at >= $2 AND at < $3
             ORDER BY at DESC LIMIT $4",
        )
        .bind(station.as_str())
        .bind(from)
        .bind(to)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows
            .iter()
            .map(|r| {
                Ok(HealthPoint {
                    at: r.try_get(0)?,
                    figures: json(&r.try_get::<String, _>(1)?),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }

    /// Deletes health figures older than `before`.
    pub async fn prune_history(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM health_history WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Deletes events received, alerts closed and commands issued before `before`; returns
    /// the rows deleted. Open alerts are kept whatever their age.
    pub async fn prune_events(&self, before: i64) -> Result<u64> {
        let mut n = 0;
        for sql in [
            "DELETE FROM events WHERE received_at < $1",
            "DELETE FROM alerts WHERE closed_at IS NOT NULL AND closed_at < $1",
            "DELETE FROM commands WHERE issued_at < $1",
        ] {
            n += sqlx::query(sql)
                .bind(before)
                .execute(&self.pool)
                .await?
                .rows_affected();
        }
        Ok(n)
    }

    /// Deletes audit entries older than `before`.
    pub async fn prune_audit(&self, before: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM audit WHERE at < $1")
            .bind(before)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn events(&self, station: Option<&StationId>, limit: i64) -> Result<Vec<EventRow>> {
        let q = match station {
            Some(_) => {
                "SELECT station_id, event_id, at, received_at, kind, camera, body FROM events
                        WHERE station_id = $1 ORDER BY at DESC, event_id DESC LIMIT $2"
            }
            None => {
                "SELECT station_id, event_id, at, received_at, kind, camera, body FROM events
                     WHERE $1 = $1 ORDER BY received_at DESC LIMIT $2"
            }
        };
        let rows = sqlx::query(q)
            .bind(station.map_or("", StationId::as_str))
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| {
                Ok(EventRow {
                    station_id: id(r.try_get(0)?)?,
                    event_id: r.try_get(1)?,
                    at: r.try_get(2)?,
                    received_at: r.try_get(3)?,
                    kind: r.try_get(4)?,
                    camera: r.try_get::<Option<String>, _>(5)?.map(id).transpose()?,
                    body: json(&r.try_get::<String, _>(6)?),
                })
            })
            .collect()
    }

    // ---- alerts

    /// Opens an alert unless one of this kind is open for the station; true when it opened.
    pub async fn open_alert(
        &self,
        station: &StationId,
        kind: &str,
        detail: &str,
        at: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO alerts (station_id, kind, detail, opened_at) VALUES ($1, $2, $3, $4)
             ON CONFLICT DO NOTHING",
        )
        .bind(station.as_str())
        .bind(kind)
        .bind(detail)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Closes the open alert of this kind, if any; true when one closed.
    pub async fn close_alert(&self, station: &StationId, kind: &str, at: i64) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE alerts SET closed_at = $1 WHERE station_id = $2 AND kind = $3 AND closed_at IS NULL",
        )
        .bind(at)
        .bind(station.as_str())
        .bind(kind)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    pub async fn open_alerts(&self) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query_as(
            "SELECT id, station_id, kind, detail, opened_at, closed_at FROM alerts
             WHERE closed_at IS NULL ORDER BY opened_at DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    pub async fn station_alerts(&self, station: &StationId, limit: i64) -> Result<Vec<AlertRow>> {
        let rows = sqlx::query_as(
            "SELECT id, station_id, kind, detail, opened_at, closed_at FROM alerts
             WHERE station_id = $1 ORDER BY opened_at DESC, id DESC LIMIT $2",
        )
        .bind(station.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        Ok(rows)
    }

    // ---- commands

    pub async fn insert_command(&self, c: &CommandRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO commands (id, station_id, kind, body, issued_by, issued_at, status, expires_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&c.id)
        .bind(c.station_id.as_str())
        .bind(&c.kind)
        .bind(c.body.to_string())
        .bind(&c.issued_by)
        .bind(c.issued_at)
        .bind(&c.status)
        .bind(c.expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Marks every command still `sent` whose expiry has passed as `expired` (the agent never
    /// acknowledged it and will refuse it now); returns how many.
    pub async fn expire_commands(&self, now: i64) -> Result<u64> {
        let r = sqlx::query(
            "UPDATE commands SET status = 'expired', ack_at = $1
             WHERE status = 'sent' AND expires_at IS NOT NULL AND expires_at < $1",
        )
        .bind(now)
        .execute(&self.pool)
        .await?;
        Ok(r.rows_affected())
    }

    /// Marks a command whose publication failed (it never reached the broker).
    pub async fn fail_command(&self, id: &str, at: i64, why: &str) -> Result<()> {
        sqlx::query(
            "UPDATE commands SET status = 'failed', ack_at = $1, ack_body = $2 WHERE id = $3",
        )
        .bind(at)
        .bind(serde_json::json!({ "error": why }).to_string())
        .bind(id)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn commands(&self, station: &StationId, limit: i64) -> Result<Vec<CommandRow>> {
        let rows = sqlx::query(&format!(
            "{COMMAND_COLS} WHERE station_id = $1 ORDER BY issued_at DESC, id DESC LIMIT $2"
        ))
        .bind(station.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(command_row).collect()
    }

    /// One command by its id.
    pub async fn command(&self, command_id: &str) -> Result<Option<CommandRow>> {
        sqlx::query(&format!("{COMMAND_COLS} WHERE id = $1"))
            .bind(command_id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(command_row)
            .transpose()
    }

    // ---- snapshots

    /// The latest JPEG of a camera and when it arrived.
    pub async fn snapshot(
        &self,
        station: &StationId,
        camera: &CameraId,
    ) -> Result<Option<(i64, Vec<u8>)>> {
        let r = sqlx::query(
            "SELECT received_at, jpeg FROM snapshots WHERE station_id = $1 AND camera = $2",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).transpose()
    }

    pub async fn snapshot_times(&self, station: &StationId) -> Result<Vec<(CameraId, i64)>> {
        let rows = sqlx::query(
            "SELECT camera, received_at FROM snapshots WHERE station_id = $1 ORDER BY camera",
        )
        .bind(station.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((id(r.try_get(0)?)?, r.try_get(1)?)))
            .collect()
    }

    // ---- audit

    pub async fn audit(
        &self,
        at: i64,
        username: &str,
        action: &str,
        target: &str,
        detail: &str,
        ok: bool,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit (at, username, action, target, detail, ok) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(at)
        .bind(username)
        .bind(action)
        .bind(target)
        .bind(detail)
        .bind(i64::from(ok))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditRow>> {
        let rows = sqlx::query(
            "SELECT id, at, username, action, target, detail, ok FROM audit ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditRow {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    username: r.try_get(2)?,
                    action: r.try_get(3)?,
                    target: r.try_get(4)?,
                    detail: r.try_get(5)?,
                    ok: r.try_get::<i64, _>(6)? != 0,
                })
            })
            .collect()
    }
}

/// `($1, $2, ...), ($5, ...)`: `rows` tuples of `per_row` parameters each, a tuple listing its
/// parameters in the order `pick` gives (an index may repeat).
fn values(rows: usize, per_row: usize, pick: &[usize]) -> String {
    (0..rows)
        .map(|r| {
            let cols: Vec<String> = pick
                .iter()
                .map(|c| format!("${}", r * per_row + c + 1))
                .collect();
            format!("({})", cols.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The URL without its password, for messages.
pub fn redact(url: &str) -> String {
    match url::Url::parse(url) {
        Ok(mut u) if u.password().is_some() => {
            let _ = u.set_password(Some("<redacted>"));
            u.to_string()
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn values_numbers_parameters_row_by_row() {
        assert_eq!(
            super::values(2, 4, &[0, 1, 3, 3]),
            "($1, $2, $4, $4), ($5, $6, $8, $8)"
        );
    }
}
