//! Live viewing (`docs/live.md`): the gateways' station list, operators' live HLS (unmasked:
//! staff only), the public page and its masked streams (only cameras marked public), and the
//! public flag itself (admins, audited).

use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::live::{StreamStatus, PRIVATE, PUBLIC, STATUS};
use stationwatch_protocol::mqtt::CameraLive;
use stationwatch_protocol::{CameraId, StationId};
use tracing::warn;

use super::error::{ApiError, ApiResult};
use super::extract::{Admin, StationAccess};
use super::AppState;
use crate::auth::Role;
use crate::live::{servable, Live};

fn live(state: &AppState) -> ApiResult<&Live> {
    state.live.as_ref().ok_or_else(|| {
        ApiError(
            StatusCode::NOT_FOUND,
            "live viewing is not configured".into(),
        )
    })
}

fn public_live(state: &AppState) -> ApiResult<&Live> {
    live(state).and_then(|l| {
        if l.cfg.public_page {
            Ok(l)
        } else {
            Err(ApiError::not_found("page"))
        }
    })
}

/// `GET /api/live/gateway`: every station a gateway may admit, with its passphrase, and the
/// public cameras with their masks. Bearer gateway token only.
pub(crate) async fn gateway(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let l = live(&state)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if !l.gateway_token_ok(presented) {
        warn!("gateway station list refused: wrong or missing token");
        return Err(ApiError::unauthorized());
    }
    let config = l.gateway_config(&state.store, &state.fleet).await?;
    Ok(([(header::CACHE_CONTROL, "no-store")], Json(config)).into_response())
}

#[derive(Deserialize)]
pub(crate) struct PublicIn {
    public: bool,
}

#[derive(Serialize)]
pub(crate) struct PublicOut {
    pub(crate) station: StationId,
    pub(crate) camera: CameraId,
    pub(crate) public: bool,
}

/// `PUT /api/stations/{id}/cameras/{camera}/public` `{"public": true}`: admins only, audited;
/// 409 while the camera's masks were never set.
pub(crate) async fn set_public(
    State(state): State<AppState>,
    super::extract::Require(user, _): Admin,
    Path((id, camera)): Path<(String, String)>,
    body: Result<Json<PublicIn>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<PublicOut>> {
    live(&state)?;
    let station = StationId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    let camera = CameraId::new(camera).map_err(|e| ApiError::bad(e.to_string()))?;
    let Json(body) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    if body.public && state.store.masks(&station, &camera).await?.is_none() {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "draw the camera's privacy masks first (or save an empty mask list to say none is needed)".into(),
        ));
    }
    let now = crate::now_ms();
    state
        .store
        .set_live_public(&station, &camera, body.public, &user.username, now)
        .await?;
    crate::audit::record(
        &state.store,
        now,
        &user.username,
        crate::audit::Action::LivePublic,
        station.as_str(),
        &format!(
            "{camera}: {}",
            if body.public { "public" } else { "not public" }
        ),
        true,
    )
    .await?;
    Ok(Json(PublicOut {
        station,
        camera,
        public: body.public,
    }))
}

#[derive(Serialize)]
pub(crate) struct LiveOut {
    /// The gateway's `status.json`, when a gateway wrote one.
    pub(crate) gateway: Option<StreamStatus>,
    /// What the station last said about this camera's live branch.
    pub(crate) station: Option<CameraLive>,
    /// A playlist exists and a publisher is connected.
    pub(crate) playable: bool,
    /// Seconds from the newest segment's end to now plus one segment: how far behind the
    /// station's picture a player starting now is, at least (the player's own buffer adds to it).
    pub(crate) delay_ms: Option<i64>,
    pub(crate) public: bool,
}

fn staff(a: &StationAccess) -> ApiResult<()> {
    if a.user.role == Role::Observer {
        return Err(ApiError(
            StatusCode::FORBIDDEN,
            "live video is unmasked: operators and admins only".into(),
        ));
    }
    Ok(())
}

/// `GET /api/stations/{id}/cameras/{camera}/live`: whether the camera can be watched live now.
pub(crate) async fn status(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera)): Path<(String, String)>,
) -> ApiResult<Json<LiveOut>> {
    staff(&a)?;
    let l = live(&state)?;
    let camera = CameraId::new(camera).map_err(|_| ApiError::not_found("camera"))?;
    let dir = l.folder(PRIVATE, &a.station.id, &camera);
    let gateway: Option<StreamStatus> = tokio::fs::read(dir.join(STATUS))
        .await
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok());
    let playlist = tokio::fs::try_exists(dir.join(stationwatch_protocol::live::PLAYLIST))
        .await
        .unwrap_or(false);
    let station = a
        .station
        .health
        .as_ref()
        .and_then(|h| h.cameras.get(&camera))
        .and_then(|c| c.live.clone());
    let now = chrono::Utc::now();
    let delay_ms = gateway.as_ref().and_then(|g| {
        g.last_segment_at
            .map(|t| (now - t).num_milliseconds().max(0) + i64::from(g.target_duration_s) * 1000)
    });
    let public = state.store.is_live_public(&a.station.id, &camera).await?;
    Ok(Json(LiveOut {
        playable: playlist && gateway.as_ref().is_some_and(|g| g.publishing),
        gateway,
        station,
        delay_ms,
        public,
    }))
}

async fn serve_file(dir: std::path::PathBuf, file: &str) -> ApiResult<Response> {
    let content_type = servable(file).ok_or_else(|| ApiError::not_found("file"))?;
    let body = tokio::fs::read(dir.join(file))
        .await
        .map_err(|_| ApiError::not_found("file"))?;
    let cache = if content_type.starts_with("video/") {
        "private, max-age=60"
    } else {
        "no-store"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, cache),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
        ],
        body,
    )
        .into_response())
}

/// `GET /api/stations/{id}/cameras/{camera}/live/{file}`: the stream as the station sent it
/// (playlist or segment), for operators and admins who may see the station.
pub(crate) async fn private_file(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera, file)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    staff(&a)?;
    let l = live(&state)?;
    let camera = CameraId::new(camera).map_err(|_| ApiError::not_found("camera"))?;
    serve_file(l.folder(PRIVATE, &a.station.id, &camera), &file).await
}

#[derive(Deserialize)]
pub(crate) struct RegionQuery {
    region: Option<String>,
}

#[derive(Serialize)]
pub(crate) struct PublicCameraOut {
    pub(crate) station: StationId,
    pub(crate) camera: CameraId,
    pub(crate) name: Option<String>,
    pub(crate) region: Option<String>,
    pub(crate) playlist: String,
}

/// `GET /api/public/cameras?region=`: the public cameras (no login; only with `public_page`).
pub(crate) async fn public_cameras(
    State(state): State<AppState>,
    Query(q): Query<RegionQuery>,
) -> ApiResult<Json<Vec<PublicCameraOut>>> {
    public_live(&state)?;
    let mut out = Vec::new();
    for (station, camera) in state.store.live_public().await? {
        let known = state.fleet.get(&station);
        let region = known.as_ref().and_then(|s| s.region().map(str::to_owned));
        if q.region
            .as_ref()
            .is_some_and(|r| Some(r) != region.as_ref())
        {
            continue;
        }
        out.push(PublicCameraOut {
            playlist: format!("/public/live/{station}/{camera}/index.m3u8"),
            name: known.as_ref().and_then(|s| s.name().map(str::to_owned)),
            station,
            camera,
            region,
        });
    }
    Ok(Json(out))
}

/// `GET /public/live/{station}/{camera}/{file}`: a public camera's masked stream; 404 for a
/// camera that is not public now (and for everything when the public page is off).
pub(crate) async fn public_file(
    State(state): State<AppState>,
    Path((station, camera, file)): Path<(String, String, String)>,
) -> ApiResult<Response> {
    let l = public_live(&state)?;
    let station = StationId::new(station).map_err(|_| ApiError::not_found("camera"))?;
    let camera = CameraId::new(camera).map_err(|_| ApiError::not_found("camera"))?;
    if !state.store.is_live_public(&station, &camera).await? {
        return Err(ApiError::not_found("camera"));
    }
    serve_file(l.folder(PUBLIC, &station, &camera), &file).await
}

/// `GET /public`: the public page (no login; only with `public_page`).
pub(crate) async fn public_page(State(state): State<AppState>) -> ApiResult<Response> {
    public_live(&state)?;
    Ok(super::dashboard::public_page())
}
