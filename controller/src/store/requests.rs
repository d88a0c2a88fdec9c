//! Requests for recordings (`requests/`): one row per case, its transitions in `history`.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use stationwatch_protocol::{CameraId, StationId};

use super::{id, Result, Store, StoreError};

/// One transition of a request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Transition {
    pub status: String,
    pub at: i64,
    pub by: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// A part of a request's window the bundle does not hold, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Gap {
    pub camera: CameraId,
    pub from_ms: i64,
    pub to_ms: i64,
    pub reason: String,
}

/// A request as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequestRow {
    pub id: String,
    pub station_id: StationId,
    /// Empty: every camera of the station.
    pub cameras: Vec<CameraId>,
    pub from_ms: i64,
    pub to_ms: i64,
    pub reason: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision: Option<String>,
    pub command_id: Option<String>,
    pub progress: Option<serde_json::Value>,
    pub gaps: Vec<Gap>,
    pub history: Vec<Transition>,
    pub ready_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub hold_until: Option<i64>,
    pub updated_at: i64,
}

/// What a decision or a step of collection changes (status compared and set at once).
#[derive(Debug, Clone, Default)]
pub struct RequestUpdate {
    pub status: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub decision: Option<String>,
    pub command_id: Option<String>,
    pub progress: Option<serde_json::Value>,
    pub gaps: Option<Vec<Gap>>,
    pub ready_at: Option<i64>,
    pub deadline_at: Option<i64>,
    pub hold_until: Option<i64>,
    /// Appended to the history.
    pub transition: Option<Transition>,
}

const COLS: &str = "SELECT id, station_id, cameras, from_ms, to_ms, reason, requested_by,
    requested_at, status, decided_by, decided_at, decision, command_id, progress, gaps, history,
    ready_at, deadline_at, hold_until, updated_at FROM requests";

fn decode<E: std::error::Error + Send + Sync + 'static>(e: E) -> StoreError {
    StoreError::Sql(sqlx::Error::Decode(Box::new(e)))
}

fn row(r: &sqlx::any::AnyRow) -> Result<RequestRow> {
    let json = |col: &str| -> Result<Option<String>> { Ok(r.try_get::<Option<String>, _>(col)?) };
    let cameras: Vec<CameraId> =
        serde_json::from_str(&r.try_get::<String, _>("cameras")?).map_err(decode)?;
    Ok(RequestRow {
        id: r.try_get("id")?,
        station_id: id(r.try_get("station_id")?)?,
        cameras,
        from_ms: r.try_get("from_ms")?,
        to_ms: r.try_get("to_ms")?,
        reason: r.try_get("reason")?,
        requested_by: r.try_get("requested_by")?,
        requested_at: r.try_get("requested_at")?,
        status: r.try_get("status")?,
        decided_by: r.try_get("decided_by")?,
        decided_at: r.try_get("decided_at")?,
        decision: r.try_get("decision")?,
        command_id: r.try_get("command_id")?,
        progress: json("progress")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(decode)?,
        gaps: json("gaps")?
            .map(|s| serde_json::from_str(&s))
            .transpose()
            .map_err(decode)?
            .unwrap_or_default(),
        history: serde_json::from_str(&r.try_get::<String, _>("history")?).map_err(decode)?,
        ready_at: r.try_get("ready_at")?,
        deadline_at: r.try_get("deadline_at")?,
        hold_until: r.try_get("hold_until")?,
        updated_at: r.try_get("updated_at")?,
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_else(|_| "null".into())
}

impl Store {
    pub async fn insert_request(&self, r: &RequestRow) -> Result<()> {
        sqlx::query(
            "INSERT INTO requests (id, station_id, cameras, from_ms, to_ms, reason, requested_by,
               requested_at, status, history, deadline_at, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
        )
        .bind(&r.id)
        .bind(r.station_id.as_str())
        .bind(to_json(&r.cameras))
        .bind(r.from_ms)
        .bind(r.to_ms)
        .bind(&r.reason)
        .bind(&r.requested_by)
        .bind(r.requested_at)
        .bind(&r.status)
        .bind(to_json(&r.history))
        .bind(r.deadline_at)
        .bind(r.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn request(&self, id: &str) -> Result<Option<RequestRow>> {
        sqlx::query(&format!("{COLS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(row)
            .transpose()
    }

    /// Requests, oldest first: of one requester (`Some`) or everyone's; only those in
    /// `statuses` when given.
    pub async fn requests(
        &self,
        requester: Option<&str>,
        statuses: &[&str],
        limit: i64,
    ) -> Result<Vec<RequestRow>> {
        let mut sql = format!("{COLS} WHERE ($1 = '' OR requested_by = $1)");
        if !statuses.is_empty() {
            let marks: Vec<String> = (0..statuses.len()).map(|i| format!("${}", i + 3)).collect();
            sql.push_str(&format!(" AND status IN ({})", marks.join(", ")));
        }
        sql.push_str(" ORDER BY requested_at, id LIMIT $2");
        let mut q = sqlx::query(&sql).bind(requester.unwrap_or("")).bind(limit);
        for s in statuses {
            q = q.bind(*s);
        }
        q.fetch_all(&self.pool).await?.iter().map(row).collect()
    }

    /// Applies `u` if the request is still in status `expected` (two operators deciding at
    /// once: one wins). The updated row, or `None` when the status had changed.
    pub async fn update_request(
        &self,
        id: &str,
        expected: &str,
        u: RequestUpdate,
        now: i64,
    ) -> Result<Option<RequestRow>> {
        let mut tx = self.begin_write().await?;
        let Some(cur) = sqlx::query(&format!("{COLS} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?
            .as_ref()
            .map(row)
            .transpose()?
        else {
            return Ok(None);
        };
        if cur.status != expected {
            return Ok(None);
        }
        let mut history = cur.history.clone();
        history.extend(u.transition);
        let next = RequestRow {
            status: u.status.unwrap_or(cur.status),
            decided_by: u.decided_by.or(cur.decided_by),
            decided_at: u.decided_at.or(cur.decided_at),
            decision: u.decision.or(cur.decision),
            command_id: u.command_id.or(cur.command_id),
            progress: u.progress.or(cur.progress),
            gaps: u.gaps.unwrap_or(cur.gaps),
            history,
            ready_at: u.ready_at.or(cur.ready_at),
            deadline_at: u.deadline_at.or(cur.deadline_at),
            hold_until: u.hold_until.or(cur.hold_until),
            updated_at: now,
            ..cur
        };
        sqlx::query(
            "UPDATE requests SET status = $1, decided_by = $2, decided_at = $3, decision = $4,
               command_id = $5, progress = $6, gaps = $7, history = $8, ready_at = $9,
               deadline_at = $10, hold_until = $11, updated_at = $12
             WHERE id = $13",
        )
        .bind(&next.status)
        .bind(&next.decided_by)
        .bind(next.decided_at)
        .bind(&next.decision)
        .bind(&next.command_id)
        .bind(next.progress.as_ref().map(to_json))
        .bind(to_json(&next.gaps))
        .bind(to_json(&next.history))
        .bind(next.ready_at)
        .bind(next.deadline_at)
        .bind(next.hold_until)
        .bind(now)
        .bind(id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(next))
    }

    /// Windows the archive must keep for requests of a station: every request not refused or
    /// failed whose hold has not ended (open ones have no end yet). `(cameras, from, to)`.
    pub async fn request_holds(
        &self,
        station: &StationId,
        now: i64,
    ) -> Result<Vec<(Vec<CameraId>, i64, i64, String)>> {
        let rows = sqlx::query(
            "SELECT id, cameras, from_ms, to_ms FROM requests
             WHERE station_id = $1 AND status NOT IN ('refused', 'failed')
               AND (hold_until IS NULL OR hold_until > $2)",
        )
        .bind(station.as_str())
        .bind(now)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let cameras: Vec<CameraId> =
                    serde_json::from_str(&r.try_get::<String, _>("cameras")?).map_err(decode)?;
                Ok((
                    cameras,
                    r.try_get("from_ms")?,
                    r.try_get("to_ms")?,
                    r.try_get("id")?,
                ))
            })
            .collect()
    }
}
