//! Decisions on cameras' views (`views.rs`): one row per decision, the newest is current.

use sqlx::Row;
use stationwatch_protocol::{CameraId, StationId};

use super::{Result, Store};

/// A decision on a camera's view, without its picture.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct ReviewRow {
    pub id: i64,
    pub camera: String,
    /// `approved`, `refused` or `reset`.
    pub decision: String,
    pub reason: String,
    pub decided_by: String,
    pub decided_at: i64,
    /// Whether the picture the operator saw is kept (`GET .../view/{id}/snapshot`).
    pub has_snapshot: bool,
    pub snapshot_at: Option<i64>,
    pub command_id: Option<String>,
}

/// A decision to record.
pub struct NewReview<'a> {
    pub decision: &'a str,
    pub reason: &'a str,
    pub decided_by: &'a str,
    pub decided_at: i64,
    pub snapshot: Option<(i64, Vec<u8>)>,
}

fn row(r: &sqlx::any::AnyRow) -> Result<ReviewRow> {
    Ok(ReviewRow {
        id: r.try_get(0)?,
        camera: r.try_get(1)?,
        decision: r.try_get(2)?,
        reason: r.try_get(3)?,
        decided_by: r.try_get(4)?,
        decided_at: r.try_get(5)?,
        has_snapshot: r.try_get::<i64, _>(6)? != 0,
        snapshot_at: r.try_get(7)?,
        command_id: r.try_get(8)?,
    })
}

const COLUMNS: &str = "id, camera, decision, reason, decided_by, decided_at, \
     CASE WHEN snapshot IS NULL THEN 0 ELSE 1 END, snapshot_at, command_id";

impl Store {
    /// Records a decision; its id.
    pub async fn insert_review(
        &self,
        station: &StationId,
        camera: &CameraId,
        r: NewReview<'_>,
    ) -> Result<i64> {
        let (snapshot_at, jpeg) = match r.snapshot {
            Some((at, jpeg)) => (Some(at), Some(jpeg)),
            None => (None, None),
        };
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO view_reviews (station_id, camera, decision, reason, decided_by, decided_at, snapshot, snapshot_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING id",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(r.decision)
        .bind(r.reason)
        .bind(r.decided_by)
        .bind(r.decided_at)
        .bind(jpeg)
        .bind(snapshot_at)
        .fetch_one(&self.pool)
        .await?;
        Ok(id)
    }

    /// Notes the command that carried decision `id` to the station.
    pub async fn set_review_command(&self, id: i64, command_id: &str) -> Result<()> {
        sqlx::query("UPDATE view_reviews SET command_id = $1 WHERE id = $2")
            .bind(command_id)
            .bind(id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// The camera's decisions, newest first.
    pub async fn reviews(
        &self,
        station: &StationId,
        camera: &CameraId,
        limit: i64,
    ) -> Result<Vec<ReviewRow>> {
        let rows = sqlx::query(&format!(
            "SELECT {COLUMNS} FROM view_reviews WHERE station_id = $1 AND camera = $2 ORDER BY id DESC LIMIT $3"
        ))
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(row).collect()
    }

    /// The picture kept with decision `id` of that camera.
    pub async fn review_snapshot(
        &self,
        station: &StationId,
        camera: &CameraId,
        id: i64,
    ) -> Result<Option<Vec<u8>>> {
        let r = sqlx::query(
            "SELECT snapshot FROM view_reviews WHERE id = $1 AND station_id = $2 AND camera = $3",
        )
        .bind(id)
        .bind(station.as_str())
        .bind(camera.as_str())
        .fetch_optional(&self.pool)
        .await?;
        Ok(r.and_then(|r| r.try_get::<Option<Vec<u8>>, _>(0).ok().flatten()))
    }

    /// Every camera's masks, for comparing with what the stations report.
    pub async fn all_masks(&self) -> Result<Vec<(StationId, CameraId, String)>> {
        let rows = sqlx::query("SELECT station_id, camera, masks FROM camera_masks")
            .fetch_all(&self.pool)
            .await?;
        let mut out = Vec::new();
        for r in rows {
            let (s, c, m): (String, String, String) = (r.try_get(0)?, r.try_get(1)?, r.try_get(2)?);
            if let (Ok(s), Ok(c)) = (StationId::new(s), CameraId::new(c)) {
                out.push((s, c, m));
            }
        }
        Ok(out)
    }
}
