//! The HTTP JSON API (documented in `docs/openapi.yaml`, served at `/api/openapi.yaml`) and the
//! dashboard's pages. Everything but the login page and `POST /api/login` needs a session
//! cookie or an API token.

mod dashboard;

use std::collections::HashSet;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::mqtt::{Command, CommandEnvelope, MessageId, Topics};
use stationwatch_protocol::{CameraId, StationId};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;
use tracing::{info, warn};

use crate::auth::{self, LoginLimiter, Role, User, SESSION_COOKIE};
use crate::config::HttpConfig;
use crate::fleet::rules::StationState;
use crate::fleet::{Fleet, ListQuery, StationSummary};
use crate::ingest::Publisher;
use crate::metrics::Metrics;
use crate::now_ms;
use crate::store::{CommandRow, Store, Write};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub fleet: Fleet,
    pub publisher: Publisher,
    pub metrics: Arc<Metrics>,
    pub writes: mpsc::Sender<Write>,
    pub http: HttpConfig,
    /// Batches of changed stations, about once a second.
    pub changes: broadcast::Sender<Arc<Vec<StationSummary>>>,
    pub limiter: LoginLimiter,
}

/// An error answered as `{"error": "..."}` with a status code.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    fn not_found(what: &str) -> Self {
        ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    fn forbidden() -> Self {
        ApiError(StatusCode::FORBIDDEN, "your role may not do this".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        warn!(error = %e, "database error while answering a request");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".into(),
        )
    }
}

type ApiResult<T> = Result<T, ApiError>;

fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// Resolves the session cookie or `Authorization: Bearer` token of a request.
async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<User>> {
    let now = now_ms();
    let row = if let Some(token) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    {
        state
            .store
            .token_user(&auth::token_hash(token.trim()))
            .await?
    } else if let Some(token) = cookie(headers, SESSION_COOKIE) {
        state
            .store
            .session_user(&auth::token_hash(token), now)
            .await?
    } else {
        None
    };
    let Some(row) = row else { return Ok(None) };
    let Some(role) = Role::from_name(&row.role) else {
        return Ok(None);
    };
    let grants = if role == Role::Observer {
        Some(Arc::new(
            state
                .store
                .grants(row.id)
                .await?
                .into_iter()
                .collect::<HashSet<_>>(),
        ))
    } else {
        None
    };
    Ok(Some(User {
        id: row.id,
        username: row.username,
        role,
        grants,
    }))
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers)
            .await?
            .ok_or_else(|| ApiError(StatusCode::UNAUTHORIZED, "log in first".into()))
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(index))
        .route("/login", get(login_page))
        .route("/stations/{id}", get(index))
        .route("/assets/{file}", get(asset))
        .route("/api/login", post(login))
        .route("/api/logout", post(logout))
        .route("/api/me", get(me))
        .route("/api/summary", get(summary))
        .route("/api/stations", get(stations))
        .route("/api/stations/{id}", get(station))
        .route("/api/stations/{id}/health", get(station_health))
        .route("/api/stations/{id}/events", get(station_events))
        .route("/api/stations/{id}/alerts", get(station_alerts))
        .route(
            "/api/stations/{id}/commands",
            get(station_commands).post(send_command),
        )
        .route(
            "/api/stations/{id}/cameras/{camera}/snapshot",
            get(snapshot),
        )
        .route("/api/alerts", get(alerts))
        .route("/api/stream", get(stream))
        .route("/api/metrics", get(metrics))
        .route("/api/audit", get(audit))
        .route("/api/users", get(users).post(create_user))
        .route("/api/users/{username}", axum::routing::delete(delete_user))
        .route("/api/users/{username}/grants", put(set_grants))
        .route("/api/tokens", post(create_token))
        .route("/api/openapi.yaml", get(openapi))
        .with_state(state)
}

// ---- pages

async fn index(State(state): State<AppState>, headers: HeaderMap) -> ApiResult<Response> {
    Ok(match authenticate(&state, &headers).await? {
        Some(_) => dashboard::page(dashboard::INDEX_HTML),
        None => Redirect::to("/login").into_response(),
    })
}

async fn login_page() -> Response {
    dashboard::page(dashboard::LOGIN_HTML)
}

async fn asset(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    if !dashboard::PUBLIC_ASSETS.contains(&file.as_str())
        && authenticate(&state, &headers).await?.is_none()
    {
        return Err(ApiError(StatusCode::UNAUTHORIZED, "log in first".into()));
    }
    dashboard::asset(&file).ok_or_else(|| ApiError::not_found("asset"))
}

async fn openapi(_user: User) -> Response {
    (
        [(header::CONTENT_TYPE, "application/yaml")],
        include_str!("../../../docs/openapi.yaml"),
    )
        .into_response()
}

// ---- sessions

#[derive(Deserialize)]
struct LoginBody {
    username: String,
    password: String,
}

async fn login(State(state): State<AppState>, Json(body): Json<LoginBody>) -> ApiResult<Response> {
    let now = now_ms();
    let name = body.username.trim().to_owned();
    if state.limiter.locked(&name, now) {
        let _ = state
            .store
            .audit(now, &name, "login", "", "refused: too many failures", false)
            .await;
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            "too many failed logins; try again in a few minutes".into(),
        ));
    }
    let user = state.store.user_by_name(&name).await?;
    let ok = match &user {
        Some(u) => {
            let (pw, hash) = (body.password.clone(), u.password_hash.clone());
            tokio::task::spawn_blocking(move || auth::verify_password(&pw, &hash))
                .await
                .unwrap_or(false)
        }
        None => {
            // Same cost as a real check, so timing does not reveal which names exist.
            let pw = body.password.clone();
            let _ =
                tokio::task::spawn_blocking(move || auth::hash_password(&format!("{pw}-padding")))
                    .await;
            false
        }
    };
    let Some(u) = user.filter(|_| ok) else {
        state.limiter.failed(&name, now);
        state
            .store
            .audit(
                now,
                &name,
                "login",
                "",
                "wrong user name or password",
                false,
            )
            .await?;
        info!(username = %name, "login refused");
        return Err(ApiError(
            StatusCode::UNAUTHORIZED,
            "wrong user name or password".into(),
        ));
    };
    state.limiter.succeeded(&name);
    let (token, hash) = auth::new_token("sws_");
    let ttl = state.http.session_ttl;
    state
        .store
        .insert_session(&hash, u.id, now, now + ttl.as_millis() as i64)
        .await?;
    state
        .store
        .audit(now, &u.username, "login", "", "", true)
        .await?;
    info!(username = %u.username, "login");
    let cookie = format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        ttl.as_secs(),
        if state.http.cookie_secure {
            "; Secure"
        } else {
            ""
        }
    );
    let mut resp = Json(json!({ "username": u.username, "role": u.role })).into_response();
    if let Ok(v) = HeaderValue::from_str(&cookie) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

async fn logout(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
) -> ApiResult<Response> {
    if let Some(token) = cookie(&headers, SESSION_COOKIE) {
        state.store.delete_session(&auth::token_hash(token)).await?;
    }
    state
        .store
        .audit(now_ms(), &user.username, "logout", "", "", true)
        .await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    resp.headers_mut().insert(
        header::SET_COOKIE,
        HeaderValue::from_static("sw_session=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0"),
    );
    Ok(resp)
}

async fn me(user: User) -> Json<Value> {
    Json(
        json!({ "username": user.username, "role": user.role, "may_command": user.role.may_command() }),
    )
}

// ---- fleet

async fn summary(State(state): State<AppState>, user: User) -> Json<Value> {
    let visible = |id: &str| user.sees(id);
    Json(json!({
        "counts": state.fleet.counts(&visible),
        "regions": state.fleet.regions(&visible),
        "broker_connected": state.publisher.connected(),
        "now": now_ms(),
    }))
}

#[derive(Deserialize)]
struct StationsQuery {
    state: Option<String>,
    q: Option<String>,
    region: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn stations(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<StationsQuery>,
) -> ApiResult<Json<Value>> {
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
    let visible = |id: &str| user.sees(id);
    Ok(Json(
        serde_json::to_value(state.fleet.list(&query, &visible)).unwrap_or(Value::Null),
    ))
}

/// A request about one station (`{id}` in the path) by a user who may see it; 404 otherwise,
/// so that observers cannot probe which stations exist.
pub struct StationAccess {
    pub user: User,
    pub station: crate::fleet::Station,
}

impl FromRequestParts<AppState> for StationAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = User::from_request_parts(parts, state).await?;
        let Path(params) =
            Path::<std::collections::HashMap<String, String>>::from_request_parts(parts, state)
                .await
                .map_err(|e| ApiError::bad(e.to_string()))?;
        let id = params.get("id").map(String::as_str).unwrap_or_default();
        let station = visible_station(state, &user, id)?;
        Ok(StationAccess { user, station })
    }
}

impl WindowQuery {
    /// `limit`, or `default`, within 1..=`max`.
    fn limit(&self, default: i64, max: i64) -> i64 {
        self.limit.unwrap_or(default).clamp(1, max)
    }
}

/// The station if it exists and the user may see it (404 either way, so that observers cannot
/// probe which stations exist).
fn visible_station(state: &AppState, user: &User, id: &str) -> ApiResult<crate::fleet::Station> {
    state
        .fleet
        .get(id)
        .filter(|_| user.sees(id))
        .ok_or_else(|| ApiError::not_found("station"))
}

async fn station(State(state): State<AppState>, a: StationAccess) -> ApiResult<Json<Value>> {
    let s = a.station;
    let snapshots: Vec<Value> = state
        .store
        .snapshot_times(&s.id)
        .await?
        .into_iter()
        .map(|(camera, at)| json!({ "camera": camera, "received_at": at }))
        .collect();
    Ok(Json(json!({
        "summary": s.summary(),
        "status": s.status,
        "status_received_at": s.status_received_at,
        "health": s.health.as_deref(),
        "health_received_at": s.health_received_at,
        "snapshots": snapshots,
    })))
}

#[derive(Deserialize)]
struct WindowQuery {
    hours: Option<u32>,
    limit: Option<i64>,
}

async fn station_health(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Value>> {
    let now = now_ms();
    let hours = i64::from(q.hours.unwrap_or(24).clamp(1, 24 * 31));
    let from = now - hours * 3_600_000;
    let points = state
        .store
        .health_history(&a.station.id, from, now + 60_000, q.limit(2000, 10_000))
        .await?;
    Ok(Json(json!({ "points": points })))
}

async fn station_events(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Value>> {
    let events = state
        .store
        .events(Some(&a.station.id), q.limit(100, 1000))
        .await?;
    Ok(Json(json!({ "events": events })))
}

async fn station_alerts(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Value>> {
    let alerts = state
        .store
        .station_alerts(&a.station.id, q.limit(100, 1000))
        .await?;
    Ok(Json(json!({ "alerts": alerts })))
}

/// Open alerts the user may see, newest first: `total` and at most `limit` (default 500) of them.
async fn alerts(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Value>> {
    let visible: Vec<_> = state
        .store
        .open_alerts()
        .await?
        .into_iter()
        .filter(|a| user.sees(&a.station_id))
        .collect();
    let total = visible.len();
    let limit = q.limit.unwrap_or(500).clamp(1, 10_000) as usize;
    let alerts: Vec<_> = visible.into_iter().take(limit).collect();
    Ok(Json(json!({ "total": total, "alerts": alerts })))
}

async fn station_commands(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Value>> {
    let commands = state
        .store
        .commands(&a.station.id, q.limit(50, 500))
        .await?;
    Ok(Json(json!({ "commands": commands })))
}

/// How long a command stays valid at the agent.
const COMMAND_TTL_MS: i64 = 5 * 60 * 1000;

async fn send_command(
    State(state): State<AppState>,
    a: StationAccess,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let StationAccess { user, station: s } = a;
    let id = s.id.clone();
    // Like every other write, JSON only: a cross-site form cannot send it without CORS.
    let json_body = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !json_body {
        return Err(ApiError(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "send the command as application/json".into(),
        ));
    }
    let now = now_ms();
    let command: Command = match serde_json::from_slice(&body) {
        Ok(c) => c,
        Err(e) => {
            return Err(ApiError::bad(format!(
                "not a command ({e}); send e.g. {{\"kind\":\"restart_camera\",\"camera\":\"desk\"}}"
            )))
        }
    };
    let kind = command.kind().name();
    if !user.role.may_command() {
        state
            .store
            .audit(
                now,
                &user.username,
                "command",
                &id,
                &format!("{kind}: refused, role observer"),
                false,
            )
            .await?;
        return Err(ApiError::forbidden());
    }
    let station = StationId::new(id.clone()).map_err(|e| ApiError::bad(e.to_string()))?;
    let issued = Timestamp::from_unix_ms(now).map_err(|e| ApiError::bad(e.to_string()))?;
    let msg_id = MessageId::new(format!("c{}", hex::encode(rand::random::<[u8; 8]>())))
        .map_err(|e| ApiError::bad(e.to_string()))?;
    let mut envelope = CommandEnvelope::new(msg_id.clone(), issued, command);
    envelope.expires_at = Some(issued.saturating_add_ms(COMMAND_TTL_MS));
    // The agent checks again; checking here gives the operator the answer at once.
    let cameras: Vec<CameraId> = s
        .health
        .as_ref()
        .map(|h| h.cameras.keys().cloned().collect())
        .unwrap_or_default();
    if !cameras.is_empty() {
        if let Err(reason) = envelope.check(issued, COMMAND_TTL_MS, &cameras) {
            state
                .store
                .audit(
                    now,
                    &user.username,
                    "command",
                    &id,
                    &format!("{kind}: invalid: {reason}"),
                    false,
                )
                .await?;
            return Err(ApiError::bad(reason.to_string()));
        }
    }
    let row = CommandRow {
        id: msg_id.as_str().to_owned(),
        station_id: id.clone(),
        kind: kind.to_owned(),
        body: serde_json::to_value(&envelope.command).unwrap_or(Value::Null),
        issued_by: user.username.clone(),
        issued_at: now,
        status: "sent".into(),
        ack_at: None,
        ack: None,
    };
    state.store.insert_command(&row).await?;
    let detail = format!("{kind} {}", row.body);
    match state.publisher.command(&Topics::new(&station), &envelope) {
        Ok(()) => {
            state
                .store
                .audit(now, &user.username, "command", &id, &detail, true)
                .await?;
            info!(station = %id, command = %row.id, kind, user = %user.username, "command sent");
            Ok((
                StatusCode::ACCEPTED,
                Json(json!({ "id": row.id, "status": "sent" })),
            ))
        }
        Err(e) => {
            state
                .store
                .fail_command(&row.id, now, &e.to_string())
                .await?;
            state
                .store
                .audit(
                    now,
                    &user.username,
                    "command",
                    &id,
                    &format!("{detail}: {e}"),
                    false,
                )
                .await?;
            Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()))
        }
    }
}

async fn snapshot(
    State(state): State<AppState>,
    a: StationAccess,
    Path((_, camera)): Path<(String, String)>,
) -> ApiResult<Response> {
    let (_, jpeg) = state
        .store
        .snapshot(&a.station.id, &camera)
        .await?
        .ok_or_else(|| ApiError::not_found("snapshot"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "image/jpeg"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        jpeg,
    )
        .into_response())
}

/// Server-sent events: `stations` with the summaries of stations that changed (about once a
/// second) and the counts by state, both limited to what the user may see; `resync` when this
/// client fell so far behind that changes were dropped (it must re-read what it shows).
async fn stream(
    State(state): State<AppState>,
    user: User,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let fleet = state.fleet.clone();
    let user = Arc::new(user);
    let changes = BroadcastStream::new(state.changes.subscribe()).filter_map(move |batch| {
        let batch = match batch {
            Ok(b) => b,
            // This client fell behind and batches were dropped: tell it to re-read everything.
            Err(_) => return Some(Ok(SseEvent::default().event("resync").data("{}"))),
        };
        let visible = |id: &str| user.sees(id);
        let stations: Vec<&StationSummary> = batch.iter().filter(|s| user.sees(&s.id)).collect();
        let data = json!({ "counts": fleet.counts(&visible), "stations": stations });
        Some(Ok(SseEvent::default()
            .event("stations")
            .data(data.to_string())))
    });
    Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}

async fn metrics(State(state): State<AppState>, user: User) -> ApiResult<Json<Value>> {
    if user.role == Role::Observer {
        return Err(ApiError::forbidden());
    }
    let backlog = state.writes.max_capacity() - state.writes.capacity();
    Ok(Json(
        serde_json::to_value(state.metrics.report(backlog, state.fleet.len()))
            .unwrap_or(Value::Null),
    ))
}

async fn audit(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Value>> {
    if user.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    let entries = state
        .store
        .audit_log(q.limit.unwrap_or(200).clamp(1, 5000))
        .await?;
    Ok(Json(json!({ "entries": entries })))
}

// ---- users and tokens (admin)

#[derive(Serialize)]
struct UserOut {
    username: String,
    role: String,
    grants: Vec<String>,
}

async fn users(State(state): State<AppState>, user: User) -> ApiResult<Json<Value>> {
    if user.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    let mut out = Vec::new();
    for u in state.store.users().await? {
        let grants = state.store.grants(u.id).await?;
        out.push(UserOut {
            username: u.username,
            role: u.role,
            grants,
        });
    }
    Ok(Json(json!({ "users": out })))
}

#[derive(Deserialize)]
struct NewUser {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    grants: Vec<String>,
}

async fn create_user(
    State(state): State<AppState>,
    user: User,
    Json(body): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    if user.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    let now = now_ms();
    let role = Role::from_name(&body.role)
        .ok_or_else(|| ApiError::bad("role must be admin, operator or observer"))?;
    check_station_ids(&body.grants)?;
    let id = create_user_checked(&state.store, &body.username, &body.password, role)
        .await
        .map_err(|e| match e {
            CreateUserError::Store(e) => e.into(),
            other => ApiError::bad(other.to_string()),
        })?;
    if !body.grants.is_empty() {
        state.store.set_grants(id, &body.grants).await?;
    }
    state
        .store
        .audit(
            now,
            &user.username,
            "user_create",
            &body.username,
            role.name(),
            true,
        )
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "username": body.username, "role": role })),
    ))
}

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("user name must be 1 to 64 letters, digits, '.', '-', '_' or '@'")]
    BadName,
    #[error("{0}")]
    Password(#[from] auth::AuthError),
    #[error("user {0:?} exists already")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Validates and creates a user (used by the API, the bootstrap admin and the CLI).
pub async fn create_user_checked(
    store: &Store,
    username: &str,
    password: &str,
    role: Role,
) -> Result<i64, CreateUserError> {
    let ok_name = !username.is_empty()
        && username.len() <= 64
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if !ok_name {
        return Err(CreateUserError::BadName);
    }
    let pw = password.to_owned();
    let hash = tokio::task::spawn_blocking(move || auth::hash_password(&pw))
        .await
        .map_err(|e| auth::AuthError::Hash(e.to_string()))??;
    store
        .create_user(username, &hash, role.name(), now_ms())
        .await?
        .ok_or_else(|| CreateUserError::Exists(username.to_owned()))
}

async fn delete_user(
    State(state): State<AppState>,
    user: User,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    if user.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    if username == user.username {
        return Err(ApiError::bad("you cannot delete yourself"));
    }
    let target = state
        .store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    state.store.delete_user(target.id).await?;
    state
        .store
        .audit(now_ms(), &user.username, "user_delete", &username, "", true)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Grants name stations by their ids: refuse anything that cannot be one.
fn check_station_ids(ids: &[String]) -> ApiResult<()> {
    for s in ids {
        StationId::new(s.clone()).map_err(|e| ApiError::bad(format!("{s:?}: {e}")))?;
    }
    Ok(())
}

#[derive(Deserialize)]
struct Grants {
    stations: Vec<String>,
}

async fn set_grants(
    State(state): State<AppState>,
    user: User,
    Path(username): Path<String>,
    Json(body): Json<Grants>,
) -> ApiResult<StatusCode> {
    if user.role != Role::Admin {
        return Err(ApiError::forbidden());
    }
    let target = state
        .store
        .user_by_name(&username)
        .await?
        .ok_or_else(|| ApiError::not_found("user"))?;
    check_station_ids(&body.stations)?;
    state.store.set_grants(target.id, &body.stations).await?;
    state
        .store
        .audit(
            now_ms(),
            &user.username,
            "grants",
            &username,
            &body.stations.join(","),
            true,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Deserialize)]
struct NewToken {
    name: String,
}

/// A token for scripts, with the caller's own rights. Shown once.
async fn create_token(
    State(state): State<AppState>,
    user: User,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<Value>)> {
    let now = now_ms();
    let (token, hash) = auth::new_token("swt_");
    state
        .store
        .insert_token(&hash, user.id, &body.name, now)
        .await?;
    state
        .store
        .audit(now, &user.username, "token_create", &body.name, "", true)
        .await?;
    Ok((
        StatusCode::CREATED,
        Json(json!({ "token": token, "name": body.name })),
    ))
}
