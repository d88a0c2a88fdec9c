//! The fleet: `/api/summary`, `/api/stations`, one station and its history, alerts, snapshots.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::mqtt::{Health, Status};
use stationwatch_protocol::{CameraId, StationId};

use super::error::{ApiError, ApiResult};
use super::extract::{StationAccess, WindowQuery};
use super::AppState;
use crate::auth::User;
use crate::fleet::rules::StationState;
use crate::fleet::{Counts, ListPage, ListQuery, StationSummary, UploadTotals};
use crate::now_ms;
use crate::store::{AlertRow, EventRow, HealthPoint};

/// Counts by state and region of what the user may see.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pub counts: Counts,
    pub regions: BTreeMap<String, usize>,
    pub broker_connected: bool,
    /// Since when this controller's database writes fail (the dashboard shows a banner).
    pub database_failing_since: Option<i64>,
    pub now: i64,
    /// Fleet-wide upload figures: footage only on stations, backlog, rate.
    #[serde(flatten)]
    pub uploads: UploadTotals,
}

/// One station: its row, what it last said and when, and its cameras' latest snapshots.
#[derive(Debug, Serialize)]
pub(crate) struct StationDetail<'a> {
    pub summary: StationSummary,
    pub status: Option<&'a Status>,
    pub status_received_at: Option<i64>,
    pub health: Option<&'a Health>,
    pub health_received_at: Option<i64>,
    pub snapshots: Vec<SnapshotTime>,
    /// Cameras marked public for the live page (`docs/live.md`); the others are not.
    pub public_cameras: Vec<CameraId>,
}

#[derive(Debug, Serialize)]
pub(crate) struct SnapshotTime {
    pub camera: CameraId,
    pub received_at: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct HealthHistory {
    pub points: Vec<HealthPoint>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Events {
    pub events: Vec<EventRow>,
}

#[derive(Debug, Serialize)]
pub(crate) struct StationAlerts {
    pub alerts: Vec<AlertRow>,
}

/// Open alerts: how many the user may see, and the first `limit` of them.
#[derive(Debug, Serialize)]
pub(crate) struct OpenAlerts {
    pub total: usize,
    pub alerts: Vec<AlertRow>,
}

pub(crate) async fn summary(State(state): State<AppState>, user: User) -> Json<Summary> {
    let visible = |id: &StationId| user.sees(id);
    Json(Summary {
        counts: state.fleet.counts(&visible),
        regions: state.fleet.regions(&visible),
        broker_connected: state.publisher.connected(),
        database_failing_since: state.metrics.db_failing_since(),
        now: now_ms(),
        uploads: state.fleet.upload_totals(&visible),
    })
}

#[derive(Deserialize)]
pub(crate) struct StationsQuery {
    state: Option<String>,
    q: Option<String>,
    region: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<StationsQuery>,
) -> ApiResult<Json<ListPage>> {
    let st = match q.state.as_deref().filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(StationState::from_name(s).ok_or_else(|| {
            ApiError::bad(format!(
                "state must be one of online, degraded, offline, unknown; got {s:?}"
            ))
        })?),
    };
    let query = ListQuery {
        state: st,
        search: q
            .q
            .filter(|s| !s.trim().is_empty())
            .map(|s| s.trim().to_owned()),
        region: q.region.filter(|s| !s.is_empty()),
        offset: q.offset.unwrap_or(0),
        limit: q.limit.unwrap_or(100).min(1000),
    };
    let visible = |id: &StationId| user.sees(id);
    Ok(Json(state.fleet.list(&query, &visible)))
}

pub(crate) async fn detail(State(state): State<AppState>, a: StationAccess) -> ApiResult<Response> {
    let s = a.station;
    let snapshots = state
        .store
        .snapshot_times(&s.id)
        .await?
        .into_iter()
        .map(|(camera, received_at)| SnapshotTime {
            camera,
            received_at,
        })
        .collect();
    let public_cameras = state.store.live_public_cameras(&s.id).await?;
    Ok(Json(StationDetail {
        summary: s.summary(),
        status: s.status.as_ref(),
        status_received_at: s.status_received_at,
        health: s.health.as_deref(),
        health_received_at: s.health_received_at,
        snapshots,
        public_cameras,
    })
    .into_response())
}

pub(crate) async fn health(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<HealthHistory>> {
    let now = now_ms();
    let hours = i64::from(q.hours.unwrap_or(24).clamp(1, 24 * 31));
    let from = now - hours * 3_600_000;
    let points = state
        .store
        .health_history(&a.station.id, from, now + 60_000, q.limit(2000, 10_000))
        .await?;
    Ok(Json(HealthHistory { points }))
}

pub(crate) async fn events(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Events>> {
    let events = state
        .store
        .events(Some(&a.station.id), q.limit(100, 1000))
        .await?;
    Ok(Json(Events { events }))
}

pub(crate) async fn station_alerts(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<StationAlerts>> {
    let alerts = state
        .store
        .station_alerts(&a.station.id, q.limit(100, 1000))
        .await?;
    Ok(Json(StationAlerts { alerts }))
}

/// Open alerts the user may see, newest first: `total` and at most `limit` (default 500) of them.
pub(crate) async fn alerts(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<OpenAlerts>> {
    let visible: Vec<_> = state
        .store
        .open_alerts()
        .await?
        .into_iter()
        .filter(|a| user.sees(&a.station_id))
        .collect();
    let total = visible.len();
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000) as usize;
    let alerts = visible.into_iter().take(limit).collect();
    Ok(Json(OpenAlerts { total, alerts }))
}

pub(crate) async fn snapshot(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera)): Path<(String, String)>,
) -> ApiResult<Response> {
    let camera = CameraId::new(camera).map_err(|_| ApiError::not_found("snapshot"))?;
    let (_, jpeg) = state
        .store
        .snapshot(&a.station.id, &camera)
        .await?
        .ok_or_else(|| ApiError::not_found("snapshot"))?;
    // Observers see the picture with the camera's privacy masks blanked; staff see it whole.
    // Fails closed: masks that cannot be read or applied mean no picture, never an unmasked one.
    let jpeg = if a.user.role.may_command() {
        jpeg
    } else {
        let masks = state
            .store
            .masks(&a.station.id, &camera)
            .await?
            .map(|m| m.masks)
            .unwrap_or_default();
        tokio::task::spawn_blocking(move || crate::masks::apply(&jpeg, &masks))
            .await
            .map_err(|e| ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
            .map_err(|e| {
                tracing::warn!(station = %a.station.id, camera = %camera, error = %e, "snapshot not served: masks cannot be applied");
                ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
            })?
    };
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// `GET /api/stations/{id}/cameras/{camera}/masks`: the camera's privacy masks.
pub(crate) async fn masks(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera)): Path<(String, String)>,
) -> ApiResult<Json<crate::store::masks::MasksRow>> {
    let camera = CameraId::new(camera).map_err(|_| ApiError::not_found("camera"))?;
    let row =
        state
            .store
            .masks(&a.station.id, &camera)
            .await?
            .unwrap_or(crate::store::masks::MasksRow {
                masks: Vec::new(),
                updated_by: String::new(),
                updated_at: 0,
            });
    Ok(Json(row))
}

/// `PUT /api/stations/{id}/cameras/{camera}/masks`: replaces the camera's privacy masks
/// (operators and admins; audited). An empty list removes them.
pub(crate) async fn set_masks(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera)): Path<(String, String)>,
    body: Result<Json<crate::masks::MasksIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<crate::store::masks::MasksRow>> {
    if !a.user.role.may_command() {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "only operators and admins set privacy masks".into(),
        ));
    }
    let camera = CameraId::new(camera).map_err(|e| ApiError::bad(e.to_string()))?;
    let Json(body) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    crate::masks::validate(&body.masks).map_err(|e| ApiError::bad(e.to_string()))?;
    let now = crate::now_ms();
    let row = crate::store::masks::MasksRow {
        masks: stationwatch_protocol::masks::normalise(body.masks),
        updated_by: a.user.username.clone(),
        updated_at: now,
    };
    state.store.set_masks(&a.station.id, &camera, &row).await?;
    crate::audit::record(
        &state.store,
        now,
        &a.user.username,
        crate::audit::Action::Masks,
        a.station.id.as_str(),
        &format!("{camera}: {} masks", row.masks.len()),
        true,
    )
    .await?;
    // To the station now if it reports this camera's view; if it cannot be sent (station
    // offline, broker down), `views::sync_masks` sends it when the station reports another
    // digest.
    let reports_view = a
        .station
        .health
        .as_ref()
        .and_then(|h| h.cameras.get(&camera))
        .is_some_and(|c| c.view.is_some());
    if reports_view {
        if let Err(e) = crate::views::push_masks(
            &state.store,
            &state.publisher,
            &a.user,
            &a.station,
            &camera,
            row.masks.clone(),
        )
        .await
        {
            tracing::warn!(station = %a.station.id, camera = %camera, error = %e, "masks stored, not sent yet");
        }
    }
    Ok(Json(row))
}
