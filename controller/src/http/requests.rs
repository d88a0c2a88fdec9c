//! `/api/requests`: requests for recordings (see `crate::requests` for the workflow). Observers
//! see and file only their own, for stations granted to them; operators and admins see all and
//! decide. A request nobody may see answers 404, like a station.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::CameraId;

use super::error::{ApiError, ApiResult};
use super::extract::Staff;
use super::AppState;
use crate::auth::User;
use crate::requests::{media, NewRequest, Requests, OPEN, READY, READY_WITH_GAPS, SUBMITTED};
use crate::store::archive::ARCHIVED;
use crate::store::requests::RequestRow;

#[derive(Debug, Serialize)]
pub(crate) struct RequestList {
    pub requests: Vec<RequestRow>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    /// `open` (default: submitted and collecting) or `all`.
    pub status: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decision {
    pub approve: bool,
    /// Required to refuse; an optional note to approve.
    #[serde(default)]
    pub reason: String,
}

pub(crate) async fn file(
    State(state): State<AppState>,
    user: User,
    body: Result<Json<NewRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<RequestRow>)> {
    let Json(new) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let station = Some(new.station.clone())
        .filter(|id| user.sees(id))
        .and_then(|id| state.fleet.get(&id))
        .ok_or_else(|| ApiError::not_found("station"))?;
    let row = state
        .requests
        .file(&user, &station, new, crate::now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// The requests the user may see, oldest first; for staff the open queue puts what waits for a
/// decision first, then what is collecting by its deadline.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RequestList>> {
    let statuses: &[&str] = match q.status.as_deref() {
        None | Some("open") => &OPEN,
        Some("all") => &[],
        Some(other) => {
            return Err(ApiError::bad(format!(
                "status {other:?}: expected open or all"
            )))
        }
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let mine = (user.role == crate::auth::Role::Observer).then_some(user.username.as_str());
    let mut requests: Vec<RequestRow> = state
        .store
        .requests(mine, statuses, limit)
        .await?
        .into_iter()
        .filter(|r| Requests::may_see(&user, r))
        .collect();
    requests.sort_by_key(|r| {
        (
            r.status != SUBMITTED,
            r.deadline_at.unwrap_or(i64::MAX),
            r.requested_at,
        )
    });
    Ok(Json(RequestList { requests }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestRow>> {
    let r = state
        .store
        .request(&id)
        .await?
        .filter(|r| Requests::may_see(&user, r))
        .ok_or_else(|| ApiError::not_found("request"))?;
    Ok(Json(r))
}

pub(crate) async fn decide(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    body: Result<Json<Decision>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<RequestRow>> {
    let Json(d) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let user = staff.0;
    let row = state
        .requests
        .decide(&user, &id, d.approve, &d.reason, crate::now_ms())
        .await?;
    Ok(Json(row))
}

/// A request the user may see and that was delivered (ready or ready with gaps): what the
/// media routes serve. 404 for anyone else, 409 before delivery.
async fn delivered(state: &AppState, user: &User, id: &str) -> ApiResult<RequestRow> {
    let r = state
        .store
        .request(id)
        .await?
        .filter(|r| Requests::may_see(user, r))
        .ok_or_else(|| ApiError::not_found("request"))?;
    if r.status != READY && r.status != READY_WITH_GAPS {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("the request is {}: nothing to deliver yet", r.status),
        ));
    }
    Ok(r)
}

async fn audit_access(state: &AppState, user: &User, r: &RequestRow, what: &str) -> ApiResult<()> {
    crate::audit::record(
        &state.store,
        crate::now_ms(),
        &user.username,
        crate::audit::Action::RequestAccess,
        r.station_id.as_str(),
        &format!("{what} {}", r.id),
        true,
    )
    .await?;
    Ok(())
}

#[derive(Debug, Serialize)]
pub(crate) struct Timeline {
    pub from_ms: i64,
    pub to_ms: i64,
    pub cameras: Vec<media::CameraTimeline>,
}

/// `GET /api/requests/{id}/timeline`: recorded spans and gaps (with reasons) per camera.
pub(crate) async fn timeline(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> ApiResult<Json<Timeline>> {
    let r = delivered(&state, &user, &id).await?;
    let cameras = media::timeline(&state.store, &r).await?;
    Ok(Json(Timeline {
        from_ms: r.from_ms,
        to_ms: r.to_ms,
        cameras,
    }))
}

/// `GET /api/requests/{id}/hls/{camera}`: the HLS playlist (VOD) of one camera of the window.
pub(crate) async fn playlist(
    State(state): State<AppState>,
    user: User,
    Path((id, camera)): Path<(String, String)>,
) -> ApiResult<Response> {
    let r = delivered(&state, &user, &id).await?;
    let camera = requested_camera(&r, &camera)?;
    let segments =
        media::window_segments(&state.store, &r.station_id, &camera, r.from_ms, r.to_ms).await?;
    audit_access(&state, &user, &r, &format!("play {camera} of")).await?;
    let body = media::playlist(&segments, |seq| {
        format!("/api/requests/{}/segments/{camera}/{seq}", r.id)
    });
    Ok((
        [
            (header::CONTENT_TYPE, "application/vnd.apple.mpegurl"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        body,
    )
        .into_response())
}

fn requested_camera(r: &RequestRow, camera: &str) -> ApiResult<CameraId> {
    r.cameras
        .iter()
        .find(|c| c.as_str() == camera)
        .cloned()
        .ok_or_else(|| ApiError::not_found("camera"))
}

/// `GET /api/requests/{id}/segments/{camera}/{seq}`: one archived segment of the window, as
/// recorded (MPEG-TS).
pub(crate) async fn segment(
    State(state): State<AppState>,
    user: User,
    Path((id, camera, seq)): Path<(String, String, u64)>,
) -> ApiResult<Response> {
    let r = delivered(&state, &user, &id).await?;
    let camera = requested_camera(&r, &camera)?;
    let e = state
        .store
        .archive_entry(&r.station_id, &camera, seq)
        .await?
        .filter(|e| e.kind == "segment" && e.state.as_deref() == Some(ARCHIVED))
        .filter(|e| {
            e.start_ms.unwrap_or(i64::MAX) <= r.to_ms && e.end_ms.unwrap_or(i64::MIN) >= r.from_ms
        })
        .ok_or_else(|| ApiError::not_found("segment"))?;
    let file = e.file.ok_or_else(|| ApiError::not_found("segment"))?;
    let key = crate::archive::segment_key(&r.station_id, &camera, &file);
    let path = crate::archive::object_path(&key).map_err(|e| ApiError::bad(e.to_string()))?;
    let got = state.archive.objects().get(&path).await.map_err(|e| {
        tracing::warn!(key = %key, error = %e, "archived segment unreadable");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "archive unavailable".into(),
        )
    })?;
    let size = got.meta.size;
    let stream = got.into_stream();
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp2t".to_owned()),
            (header::CONTENT_LENGTH, size.to_string()),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::body::Body::from_stream(stream),
    )
        .into_response())
}

/// `GET /api/requests/{id}/bundle`: the evidence bundle, one tar, streamed as it is written.
pub(crate) async fn bundle(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let r = delivered(&state, &user, &id).await?;
    let now = crate::now_ms();
    let b = media::prepare_bundle(&state.store, &state.controller_key, &r, now)
        .await
        .map_err(|e| {
            tracing::warn!(request = %r.id, error = %e, "bundle cannot be prepared");
            ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
        })?;
    audit_access(&state, &user, &r, "bundle of").await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(8);
    let archive = state.archive.clone();
    let rt = tokio::runtime::Handle::current();
    let request = r.id.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let t = std::time::Instant::now();
        match b.write(&archive, &rt, out) {
            Ok(()) => {
                tracing::info!(request = %request, bytes = b.footage_bytes(), ms = t.elapsed().as_millis() as u64, "evidence bundle sent")
            }
            Err(e) => {
                tracing::warn!(request = %request, error = %e, "evidence bundle cut short");
                // The client sees a broken download, not a short valid-looking tar.
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let name = format!("{}.tar", media::bundle_root(&r));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-tar".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}

const CHUNK: usize = 256 * 1024;

/// A `Write` that hands chunks to the response body (blocking when the client is slow).
struct ChannelWriter {
    tx: tokio::sync::mpsc::Sender<std::io::Result<axum::body::Bytes>>,
    buf: Vec<u8>,
}

impl std::io::Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.flush()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = axum::body::Bytes::from(std::mem::take(&mut self.buf));
        self.tx
            .blocking_send(Ok(chunk))
            .map_err(|_| std::io::Error::other("the client went away"))
    }
}

/// `GET /api/requests/{id}/mp4/{camera}`: the window of one camera as a single fragmented MP4,
/// remuxed from the recorded segments (never re-encoded), streamed as it is written; gaps stay
/// gaps in its timeline (each segment placed at its station time).
pub(crate) async fn mp4(
    State(state): State<AppState>,
    user: User,
    Path((id, camera)): Path<(String, String)>,
) -> ApiResult<Response> {
    let r = delivered(&state, &user, &id).await?;
    let camera = requested_camera(&r, &camera)?;
    let segments =
        media::window_segments(&state.store, &r.station_id, &camera, r.from_ms, r.to_ms).await?;
    if segments.is_empty() {
        return Err(ApiError::not_found("footage of this camera in the window"));
    }
    audit_access(&state, &user, &r, &format!("mp4 of {camera} of")).await?;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(8);
    let archive = state.archive.clone();
    let rt = tokio::runtime::Handle::current();
    let station = r.station_id.clone();
    let request = r.id.clone();
    let cam = camera.clone();
    tokio::task::spawn_blocking(move || {
        let out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let t = std::time::Instant::now();
        match media::write_mp4(&archive, &rt, &station, &cam, &segments, out) {
            Ok(s) => {
                tracing::info!(request = %request, camera = %cam, segments = s.segments, samples = s.samples, ms = t.elapsed().as_millis() as u64, "MP4 of a request sent")
            }
            Err(e) => {
                tracing::warn!(request = %request, camera = %cam, error = %e, "MP4 of a request cut short");
                let _ = tx.blocking_send(Err(std::io::Error::other(e.to_string())));
            }
        }
    });
    let name = format!("{}-{}.mp4", media::bundle_root(&r), camera);
    Ok((
        [
            (header::CONTENT_TYPE, "video/mp4".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        axum::body::Body::from_stream(tokio_stream::wrappers::ReceiverStream::new(rx)),
    )
        .into_response())
}
