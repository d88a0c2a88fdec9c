//! Privacy masks of cameras (`masks.rs`): one row per camera, its polygons as JSON.

use sqlx::Row;
use stationwatch_protocol::{CameraId, StationId};

use super::{Result, Store, StoreError};
use crate::masks::Polygon;

/// A camera's masks as stored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct MasksRow {
    pub masks: Vec<Polygon>,
    pub updated_by: String,
    pub updated_at: i64,
}

impl Store {
    /// The camera's masks; `None` when none were ever set.
    pub async fn masks(&self, station: &StationId, camera: &CameraId) -> Result<Option<MasksRow>> {
        let r = sqlx::query(
            "SELECT masks, updated_by, updated_at FROM camera_masks WHERE station_id = $1 AND camera = $2",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            let text: String = r.try_get(0)?;
            // Unreadable masks are an error, never "no masks": the caller must not show an
            // unmasked picture because a row could not be read.
            let masks = serde_json::from_str(&text)
                .map_err(|e| StoreError::Sql(sqlx::Error::Decode(Box::new(e))))?;
            Ok(MasksRow {
                masks,
                updated_by: r.try_get(1)?,
                updated_at: r.try_get(2)?,
            })
        })
        .transpose()
    }

    /// Replaces the camera's masks (an empty list removes them all).
    pub async fn set_masks(
        &self,
        station: &StationId,
        camera: &CameraId,
        row: &MasksRow,
    ) -> Result<()> {
        let text = serde_json::to_string(&row.masks)
            .map_err(|e| StoreError::Sql(sqlx::Error::Encode(Box::new(e))))?;
        sqlx::query(
            "INSERT INTO camera_masks (station_id, camera, masks, updated_by, updated_at)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (station_id, camera) DO UPDATE SET masks = excluded.masks,
               updated_by = excluded.updated_by, updated_at = excluded.updated_at",
        )
        .bind(station.as_str())
        .bind(camera.as_str())
        .bind(text)
        .bind(&row.updated_by)
        .bind(row.updated_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
