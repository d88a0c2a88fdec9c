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
    pub revoked_at: Option<i64>,
}

/// A code as an admin sees it in the list: its id is the stored hash (the code itself is
/// never kept, and the hash does not give it back).
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct EnrollmentInfo {
    pub id: String,
    pub station: String,
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_at: Option<i64>,
    /// Fingerprint of the key registered with it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub used_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_at: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub revoked_by: Option<String>,
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
            "SELECT station_id, created_by, expires_at, used_at, revoked_at FROM enrollments WHERE code_hash = $1",
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
                revoked_at: r.try_get(4)?,
            })
        })
        .transpose()
    }

    /// Codes still open, and those created, used or revoked since `since` (newest first).
    pub async fn list_enrollments(&self, now: i64, since: i64) -> Result<Vec<EnrollmentInfo>> {
        let rows = sqlx::query(
            "SELECT code_hash, station_id, created_by, created_at, expires_at, used_at, used_key, \
             revoked_at, revoked_by FROM enrollments \
             WHERE (used_at IS NULL AND revoked_at IS NULL AND expires_at >= $1) \
                OR created_at >= $2 OR used_at >= $2 OR revoked_at >= $2 \
             ORDER BY created_at DESC LIMIT 1000",
        )
        .bind(now)
        .bind(since)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(EnrollmentInfo {
                    id: r.try_get(0)?,
                    station: r.try_get(1)?,
                    created_by: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                    expires_at: r.try_get(4)?,
                    used_at: r.try_get(5)?,
                    used_key: r.try_get(6)?,
                    revoked_at: r.try_get(7)?,
                    revoked_by: r.try_get(8)?,
                })
            })
            .collect()
    }

    /// Revokes a code that is neither used nor revoked; its station, or None when there was no
    /// such open code.
    pub async fn revoke_enrollment(&self, id: &str, now: i64, by: &str) -> Result<Option<String>> {
        let r = sqlx::query(
            "UPDATE enrollments SET revoked_at = $1, revoked_by = $2 \
             WHERE code_hash = $3 AND used_at IS NULL AND revoked_at IS NULL RETURNING station_id",
        )
        .bind(now)
        .bind(by)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        r.map(|r| r.try_get(0)).transpose().map_err(Into::into)
    }

    /// Marks the code used; false when it was used meanwhile (single use, even under races).
    pub async fn use_enrollment(&self, code_hash: &str, now: i64, key: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE enrollments SET used_at = $1, used_key = $2 \
             WHERE code_hash = $3 AND used_at IS NULL AND revoked_at IS NULL",
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
