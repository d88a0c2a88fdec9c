//! The archive over HTTP.
//!
//! * Station endpoints (`/archive/v1/...`, `protocol/src/archive.rs`), authenticated only by
//!   the station's signature over method, path with query and body (`StationAuth`), checked
//!   against the station's registered key in force. Errors are `ArchiveErrorBody`.
//! * Users' endpoints: `GET /api/stations/{id}/archive` (what is archived of a station) and
//!   `GET /api/archive/summary` (totals over the stations the user sees).

use axum::body::Body;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::archive::{
    ArchiveErrorBody, AuthError, ManifestRange, StationAuth, MAX_CHUNK_BYTES,
};
use stationwatch_protocol::manifest::Hash256;
use stationwatch_protocol::{CameraId, StationId};
use tracing::{debug, warn};

use super::error::{ApiError, ApiResult};
use super::extract::StationAccess;
use super::AppState;
use crate::archive::ArchiveError;
use crate::auth::User;
use crate::fleet::UploadTotals;
use crate::now_ms;
use crate::store::archive::{EntryRow, RefusalRow, StateTotals};

/// Largest request body: one chunk (or manifest batch) and a little.
pub(crate) const BODY_LIMIT: usize = MAX_CHUNK_BYTES as usize + 64 * 1024;

/// Longest time a request body may take to arrive (4 MiB at ~300 kbit/s).
const BODY_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);

/// An error answer of the station endpoints.
struct Failure(StatusCode, ArchiveErrorBody, bool);

impl Failure {
    fn new(status: StatusCode, error: impl Into<String>) -> Self {
        Failure(
            status,
            ArchiveErrorBody {
                error: error.into(),
                state: None,
            },
            false,
        )
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let mut r = (self.0, Json(self.1)).into_response();
        if self.2 {
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<ArchiveError> for Failure {
    fn from(e: ArchiveError) -> Self {
        let (status, state) = match e {
            ArchiveError::NotFound(_) => (StatusCode::NOT_FOUND, None),
            ArchiveError::BadRequest(_) => (StatusCode::BAD_REQUEST, None),
            ArchiveError::Conflict(_, ref s) => (StatusCode::CONFLICT, s.clone()),
            ArchiveError::Refused(_, ref s) => (StatusCode::UNPROCESSABLE_ENTITY, s.clone()),
            ArchiveError::Unavailable(_) => (StatusCode::INSUFFICIENT_STORAGE, None),
            ArchiveError::Store(ref err) => {
                warn!(error = %err, "database error on an archive request");
                return Failure(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ArchiveErrorBody {
                        error: "database unavailable".into(),
                        state: None,
                    },
                    true,
                );
            }
        };
        Failure(
            status,
            ArchiveErrorBody {
                error: e.to_string(),
                state: state.map(|s| *s),
            },
            false,
        )
    }
}

fn auth_failure(e: AuthError) -> Failure {
    let status = match e {
        AuthError::WrongStation { .. } => StatusCode::FORBIDDEN,
        _ => StatusCode::UNAUTHORIZED,
    };
    Failure::new(status, e.to_string())
}

/// Checks the station's signature of the request against its registered key in force.
async fn authenticate(
    state: &AppState,
    station: &StationId,
    method: &Method,
    path_and_query: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(), Failure> {
    let header = headers
        .get(header::AUTHORIZATION)
        .ok_or(AuthError::Missing)
        .and_then(|v| v.to_str().map_err(|_| AuthError::Malformed))
        .map_err(auth_failure)?;
    let auth = StationAuth::parse(header).map_err(auth_failure)?;
    if &auth.station != station {
        return Err(auth_failure(AuthError::WrongStation {
            path: station.to_string(),
            header: auth.station.to_string(),
        }));
    }
    let keys = state
        .store
        .keys(Some(station))
        .await
        .map_err(|e| Failure::from(ArchiveError::Store(e)))?;
    let Some(key) = keys.iter().find(|k| k.retired_at.is_none()) else {
        return Err(Failure::new(
            StatusCode::FORBIDDEN,
            format!("station {station} has no registered key"),
        ));
    };
    auth.check(
        station,
        &key.key,
        method.as_str(),
        path_and_query,
        &Hash256::of(body),
    )
    .map_err(auth_failure)
}

/// Every station request: a permit, the body (at most [`BODY_LIMIT`]), the signature, then the
/// archive.
pub(crate) async fn station_request(
    State(state): State<AppState>,
    Path(params): Path<Vec<(String, String)>>,
    req: Request,
) -> Response {
    match handle(&state, &params, req).await {
        Ok(r) => r,
        Err(f) => f.into_response(),
    }
}

async fn handle(
    state: &AppState,
    params: &[(String, String)],
    req: Request,
) -> Result<Response, Failure> {
    let Some(_permit) = state.archive.try_permit() else {
        let mut f = Failure::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too many uploads in progress: retry shortly",
        );
        f.2 = true;
        return Err(f);
    };
    let param = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let not_found = || Failure::new(StatusCode::NOT_FOUND, "no such archive path");
    let station = param("station")
        .and_then(|s| StationId::new(s).ok())
        .ok_or_else(not_found)?;
    let camera = param("camera")
        .and_then(|s| CameraId::new(s).ok())
        .ok_or_else(not_found)?;
    let seq = match param("seq") {
        None => None,
        Some(s) => Some(s.parse::<u64>().map_err(|_| not_found())?),
    };
    let (parts, body) = req.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| parts.uri.path().to_owned());
    // A slow body must not hold a permit for long.
    let body = tokio::time::timeout(
        BODY_TIMEOUT,
        axum::body::to_bytes(Body::new(body), BODY_LIMIT),
    )
    .await
    .map_err(|_| {
        Failure::new(
            StatusCode::REQUEST_TIMEOUT,
            format!(
                "the body did not arrive within {} s",
                BODY_TIMEOUT.as_secs()
            ),
        )
    })?
    .map_err(|_| {
        Failure::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("body larger than {MAX_CHUNK_BYTES} bytes, or cut"),
        )
    })?;
    authenticate(
        state,
        &station,
        &parts.method,
        &path_and_query,
        &parts.headers,
        &body,
    )
    .await?;
    let a = &state.archive;
    let now = now_ms();
    let method = parts.method;
    let answer = match (seq, method) {
        (None, Method::GET) => Json(a.manifest_range(&station, &camera).await?).into_response(),
        (None, Method::POST) => {
            Json(a.append_manifest(&station, &camera, &body, now).await?).into_response()
        }
        (Some(seq), Method::GET) => {
            Json(a.segment_state(&station, &camera, seq).await?).into_response()
        }
        (Some(seq), Method::PUT) => {
            let offset = parts
                .uri
                .query()
                .unwrap_or("")
                .split('&')
                .find_map(|kv| kv.strip_prefix("offset="))
                .and_then(|v| v.parse::<u64>().ok())
                .ok_or_else(|| {
                    Failure::new(StatusCode::BAD_REQUEST, "PUT needs ?offset=N (bytes)")
                })?;
            if body.len() as u64 > MAX_CHUNK_BYTES {
                return Err(Failure::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("a chunk is at most {MAX_CHUNK_BYTES} bytes"),
                ));
            }
            let st = a
                .put_chunk(&station, &camera, seq, offset, &body, now)
                .await?;
            debug!(%station, %camera, seq, offset, bytes = body.len(), received = st.received, "chunk");
            Json(st).into_response()
        }
        _ => return Err(Failure::new(StatusCode::METHOD_NOT_ALLOWED, "method")),
    };
    Ok(answer)
}

// ---- users

#[derive(Deserialize)]
pub(crate) struct ArchiveQuery {
    camera: Option<String>,
    /// Unix ms.
    from: Option<i64>,
    to: Option<i64>,
    limit: Option<i64>,
}

/// What the archive holds of one camera.
#[derive(Debug, Serialize)]
pub(crate) struct CameraArchive {
    pub camera: CameraId,
    /// The archived range of its manifest (absent: nothing yet).
    pub manifest: Option<ManifestRange>,
    #[serde(flatten)]
    pub totals: StateTotals,
}

/// What the archive holds of a station.
#[derive(Debug, Serialize)]
pub(crate) struct StationArchive {
    pub station: StationId,
    pub cameras: Vec<CameraArchive>,
    /// Segments and gaps in `[from, to]`, in time order (at most `limit`).
    pub entries: Vec<EntryRow>,
    /// The newest refusals.
    pub refusals: Vec<RefusalRow>,
}

/// The archive over the stations the user sees.
#[derive(Debug, Serialize)]
pub(crate) struct ArchiveSummary {
    /// Stations with anything in the archive.
    pub stations: usize,
    #[serde(flatten)]
    pub totals: StateTotals,
    /// From the stations' health reports.
    #[serde(flatten)]
    pub uploads: UploadTotals,
}

pub(crate) async fn station_archive(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<ArchiveQuery>,
) -> ApiResult<Json<StationArchive>> {
    let id = a.station.id;
    let camera = match q.camera.as_deref().filter(|c| !c.is_empty()) {
        None => None,
        Some(c) => Some(CameraId::new(c).map_err(|e| ApiError::bad(format!("camera {c:?}: {e}")))?),
    };
    let from = q.from.unwrap_or(0);
    let to = q.to.unwrap_or(i64::MAX);
    if to < from {
        return Err(ApiError::bad("to is before from"));
    }
    let ranges = state.store.archive_ranges(&id).await?;
    let totals = state.store.archive_totals(Some(&id)).await?;
    let mut cameras: Vec<CameraArchive> = ranges
        .into_iter()
        .map(|(camera, r)| CameraArchive {
            totals: totals
                .iter()
                .find(|(_, c, _)| *c == camera)
                .map(|(_, _, t)| t.clone())
                .unwrap_or_default(),
            camera,
            manifest: Some(r),
        })
        .collect();
    if let Some(c) = &camera {
        cameras.retain(|x| &x.camera == c);
    }
    let entries = state
        .store
        .archive_timeline(
            &id,
            camera.as_ref(),
            from,
            to,
            q.limit.unwrap_or(1000).clamp(1, 10_000),
        )
        .await?;
    let refusals = state.store.archive_refusals(&id, 100).await?;
    Ok(Json(StationArchive {
        station: id,
        cameras,
        entries,
        refusals,
    }))
}

pub(crate) async fn summary(
    State(state): State<AppState>,
    user: User,
) -> ApiResult<Json<ArchiveSummary>> {
    let mut totals = StateTotals::default();
    let mut stations: Vec<&StationId> = Vec::new();
    let rows = state.store.archive_totals(None).await?;
    for (s, _, t) in rows.iter().filter(|(s, _, _)| user.sees(s)) {
        totals.merge(t);
        if stations.last() != Some(&s) {
            stations.push(s);
        }
    }
    let visible = |id: &StationId| user.sees(id);
    Ok(Json(ArchiveSummary {
        stations: stations.len(),
        totals,
        uploads: state.fleet.upload_totals(&visible),
    }))
}
