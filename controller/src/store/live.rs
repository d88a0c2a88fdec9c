//! Cameras marked public for the live page (`live.rs`, `docs/live.md`): a row means public.

use sqlx::Row;
use stationwatch_protocol::{CameraId, StationId};

use super::{Result, Store};

impl Store {
    /// Marks a camera public or not.
    pub async fn set_live_public(
        &self,
        station: &StationId,
        camera: &CameraId,
        public: bool,
        by: &str,
        at: i64,
    ) -> Result<()> {
        if public {
            sqlx::query(
                "INSERT INTO live_public (station_id, camera, updated_by, updated_at)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (station_id, camera) DO UPDATE SET
                   updated_by = excluded.updated_by, updated_at = excluded.updated_at",
            )
            .bind(station.as_str())
            .bind(camera.as_str())
            .bind(by)
            .bind(at)
            .execute(&self.pool)
            .await?;
        } else {
            sqlx::query("DELETE FROM live_public WHERE station_id = $1 AND camera = $2")
                .bind(station.as_str())
                .bind(camera.as_str())
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Every public camera. A row whose ids no longer parse is left out (not public).
    pub async fn live_public(&self) -> Result<Vec<(StationId, CameraId)>> {
        let rows =
            sqlx::query("SELECT station_id, camera FROM live_public ORDER BY station_id, camera")
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::new();
        for r in rows {
            let (s, c): (String, String) = (r.try_get(0)?, r.try_get(1)?);
            if let (Ok(s), Ok(c)) = (StationId::new(s), CameraId::new(c)) {
                out.push((s, c));
            }
        }
        Ok(out)
    }

    /// One station's public cameras (for its detail page).
    pub async fn live_public_cameras(&self, station: &StationId) -> Result<Vec<CameraId>> {
        let rows =
            sqlx::query("SELECT camera FROM live_public WHERE station_id = $1 ORDER BY camera")
                .bind(station.as_str())
                .fetch_all(&self.pool)
                .await?;
        let mut out = Vec::new();
        for r in rows {
            if let Ok(c) = CameraId::new(r.try_get::<String, _>(0)?) {
                out.push(c);
            }
        }
        Ok(out)
    }

    pub async fn is_live_public(&self, station: &StationId, camera: &CameraId) -> Result<bool> {
        let r = sqlx::query("SELECT 1 FROM live_public WHERE station_id = $1 AND camera = $2")
            .bind(station.as_str())
            .bind(camera.as_str())
            .fetch_optional(&self.pool)
            .await?;
        Ok(r.is_some())
    }
}
