//! `/api/enrollments` (admins create a one-time code) and `/api/enroll` (a device redeems it;
//! no session: the code is the credential). `crate::enroll` owns what they do.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::Deserialize;
use stationwatch_protocol::StationId;

use super::error::{ApiError, ApiResult};
use super::extract::ClientAddr;
use super::AppState;
use crate::auth::User;
use crate::enroll::{self, EnrollError, EnrollIn, Enrolled, NewCode};

impl From<EnrollError> for ApiError {
    fn from(e: EnrollError) -> Self {
        match e {
            EnrollError::NotConfigured => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            EnrollError::Forbidden => ApiError(StatusCode::FORBIDDEN, e.to_string()),
            EnrollError::NotFound => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            EnrollError::Invalid(m) => ApiError::bad(m),
            EnrollError::Refused(m) => ApiError(StatusCode::FORBIDDEN, m),
            EnrollError::Broker(m) => ApiError(StatusCode::SERVICE_UNAVAILABLE, m),
            EnrollError::Keys(e) => ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            EnrollError::Store(e) => e.into(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub(crate) struct CodeIn {
    pub station: String,
    /// How long the code stays valid (default `[enroll] code_ttl_hours`).
    #[serde(default)]
    pub ttl_seconds: Option<i64>,
}

pub(crate) async fn create(
    State(state): State<AppState>,
    user: User,
    body: Result<Json<CodeIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<NewCode>)> {
    let Json(body) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let station = StationId::new(body.station).map_err(|e| ApiError::bad(e.to_string()))?;
    let code = enroll::create(
        &state.store,
        state.enroll.as_ref(),
        &user,
        &station,
        body.ttl_seconds.map(|s| s.saturating_mul(1000)),
        crate::now_ms(),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(code)))
}

/// The open codes and those of the last two weeks (admins).
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
) -> ApiResult<Json<serde_json::Value>> {
    let codes = enroll::list(&state.store, &user, crate::now_ms()).await?;
    Ok(Json(serde_json::json!({ "codes": codes })))
}

/// Revokes an open code (admins; audited).
pub(crate) async fn revoke(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    enroll::revoke(&state.store, &user, &id, crate::now_ms()).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Redeeming is throttled like logins (`auth/throttle.rs`), by address and by station:
/// refused codes count as failed logins of `enroll:<station>`.
pub(crate) async fn redeem(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    body: Result<Json<EnrollIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<Enrolled>> {
    let Json(body) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let now = crate::now_ms();
    let who = format!("enroll:{}", body.station);
    if let Err(t) = state.limiter.check(&who, address, now) {
        state.limiter.refused(&who, address, now);
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "too many refused enrollments: {}; try again later",
                t.detail()
            ),
        ));
    }
    match enroll::redeem(
        &state.store,
        &state.fleet,
        state.enroll.as_ref(),
        state.live.as_ref(),
        body,
        now,
    )
    .await
    {
        Ok(done) => {
            state.limiter.succeeded(&who, address);
            Ok(Json(done))
        }
        Err(e) => {
            if matches!(e, EnrollError::Refused(_)) {
                state.limiter.failed(&who, address, now);
            }
            Err(e.into())
        }
    }
}
