//! `/api/stations/{id}/cameras/{camera}/view`: the decisions on a camera's view (approve,
//! refuse with a reason, reset; `crate::views` owns what deciding does), and the picture the
//! operator approved or refused.

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::mqtt::ViewHealth;
use stationwatch_protocol::CameraId;

use super::error::{ApiError, ApiResult};
use super::extract::StationAccess;
use super::AppState;
use crate::store::views::ReviewRow;
use crate::views::{self, Decision, ViewError};

impl From<ViewError> for ApiError {
    fn from(e: ViewError) -> Self {
        match e {
            ViewError::Forbidden => ApiError(StatusCode::FORBIDDEN, e.to_string()),
            ViewError::UnknownCamera(_) => ApiError(StatusCode::NOT_FOUND, e.to_string()),
            ViewError::Invalid(m) => ApiError::bad(m),
            ViewError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
            ViewError::Command(e) => e.into(),
            ViewError::Store(e) => e.into(),
        }
    }
}

/// Whether the station's masks are the stored ones.
#[derive(Debug, Serialize)]
pub(crate) struct MasksSync {
    pub stored: usize,
    pub stored_digest: String,
    /// What the agent reports (absent when it does not report the camera's view).
    pub station_digest: Option<String>,
    pub in_sync: bool,
}

#[derive(Debug, Serialize)]
pub(crate) struct CameraView {
    pub camera: String,
    /// The newest decision, if any.
    pub current: Option<ReviewRow>,
    /// Decisions, newest first (at most 20, the current one included).
    pub history: Vec<ReviewRow>,
    /// What the agent reports about the view, including the decision it holds.
    pub station: Option<ViewHealth>,
    /// Whether the station holds the current decision (same state and author).
    pub in_effect: bool,
    pub masks: MasksSync,
}

#[derive(Debug, Deserialize)]
pub(crate) struct DecideIn {
    pub decision: Decision,
    #[serde(default)]
    pub reason: String,
}

fn camera_id(camera: String) -> ApiResult<CameraId> {
    CameraId::new(camera).map_err(|_| ApiError::not_found("camera"))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera)): Path<(String, String)>,
) -> ApiResult<Json<CameraView>> {
    let camera = camera_id(camera)?;
    let history = state.store.reviews(&a.station.id, &camera, 20).await?;
    let current = history.first().cloned();
    let station = a
        .station
        .health
        .as_ref()
        .and_then(|h| h.cameras.get(&camera))
        .and_then(|c| c.view.clone());
    let held = station.as_ref().and_then(|v| v.decision.as_ref());
    let in_effect = match (&current, held) {
        (Some(c), Some(h)) => {
            serde_json::to_value(h.state)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                == Some(c.decision.clone())
                && h.by == c.decided_by
        }
        (None, None) => true,
        _ => false,
    };
    let stored = state
        .store
        .masks(&a.station.id, &camera)
        .await?
        .map(|m| m.masks)
        .unwrap_or_default();
    let stored_digest = stationwatch_protocol::masks::digest(&stored);
    let station_digest = station.as_ref().map(|v| v.masks_digest.clone());
    let masks = MasksSync {
        stored: stored.len(),
        in_sync: station_digest.as_deref() == Some(stored_digest.as_str()),
        stored_digest,
        station_digest,
    };
    Ok(Json(CameraView {
        camera: camera.to_string(),
        current,
        history,
        station,
        in_effect,
        masks,
    }))
}

pub(crate) async fn decide(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera)): Path<(String, String)>,
    body: Result<Json<DecideIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<ReviewRow>> {
    let camera = CameraId::new(camera).map_err(|e| ApiError::bad(e.to_string()))?;
    let Json(body) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let row = views::decide(
        &state.store,
        &state.publisher,
        &a.user,
        &a.station,
        &camera,
        body.decision,
        &body.reason,
    )
    .await?;
    Ok(Json(row))
}

/// The picture an operator approved or refused (operators and admins: it is unmasked).
pub(crate) async fn snapshot(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera, review)): Path<(String, String, i64)>,
) -> ApiResult<Response> {
    if !a.user.role.may_command() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "the approved picture is unmasked: operators and admins only".into(),
        ));
    }
    let camera = camera_id(camera)?;
    let jpeg = state
        .store
        .review_snapshot(&a.station.id, &camera, review)
        .await?
        .ok_or_else(|| ApiError::not_found("picture"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}
