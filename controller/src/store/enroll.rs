//! One-time enrollment codes (`enroll.rs`): only their hashes.

use sqlx::Row;
use stationwatch_protocol::StationId;

use super::{Result, Store};

/// A code as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct EnrollmentRow {
    pub station_id: String,
    pub created_by: String,
    pub expires_at: i64,
    pub used_at: Option<i64>,
}

impl Store {
    pub async fn insert_enrollment(
        &self,
        code_hash: &str,
        station: &StationId,
        by: &str,
        now: i64,
        expires_at: i64,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO enrollments (code_hash, station_id, created_by, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(code_hash)
        .bind(station.as_str())
        .bind(by)
        .bind(now)
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    pub async fn enrollment(&self, code_hash: &str) -> Result<Option<EnrollmentRow>> {
        let r = sqlx::query(
            "SELECT station_id, created_by, expires_at, used_at FROM enrollments WHERE code_hash = $1",
        )
        .bind(code_hash)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| {
            Ok(EnrollmentRow {
                station_id: r.try_get(0)?,
                created_by: r.try_get(1)?,
                expires_at: r.try_get(2)?,
                used_at: r.try_get(3)?,
            })
        })
        .transpose()
    }

    /// Marks the code used; false when it was used meanwhile (single use, even under races).
    pub async fn use_enrollment(&self, code_hash: &str, now: i64, key: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE enrollments SET used_at = $1, used_key = $2 WHERE code_hash = $3 AND used_at IS NULL",
        )
        .bind(now)
        .bind(key)
        .bind(code_hash)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Gives a claimed code back (what followed the claim failed).
    pub async fn release_enrollment(&self, code_hash: &str) -> Result<()> {
        sqlx::query("UPDATE enrollments SET used_at = NULL, used_key = NULL WHERE code_hash = $1")
            .bind(code_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
