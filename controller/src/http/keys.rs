//! Trust: the stations' registered keys (`PUT /api/stations/{id}/key`, admins), the signed key
//! registry (`GET /api/keys`), the controller's public key and a station's signed witness.

use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::manifest::PublicKey;
use stationwatch_protocol::StationId;

use super::error::{ApiError, ApiResult};
use super::extract::{Admin, StationAccess};
use super::AppState;
use crate::auth::User;
use crate::keys::{self, KeysError};
use crate::now_ms;
use crate::store::Registered;

impl From<KeysError> for ApiError {
    fn from(e: KeysError) -> Self {
        match e {
            KeysError::Store(e) => e.into(),
            other => {
                tracing::warn!(error = %other, "cannot sign an export");
                ApiError(StatusCode::INTERNAL_SERVER_ERROR, other.to_string())
            }
        }
    }
}

#[derive(Deserialize)]
pub(crate) struct KeyIn {
    /// 64 hex characters or an SPKI PEM.
    key: String,
    /// Replace a registered key (the old one is retired now).
    #[serde(default)]
    rotate: bool,
}

/// How a registration ended.
#[derive(Debug, Serialize)]
pub(crate) struct KeyRegistered {
    pub station: StationId,
    pub public_key: PublicKey,
    pub fingerprint: String,
    /// `registered` (first key), `rotated` (old key retired) or `unchanged`.
    pub outcome: &'static str,
    /// Fingerprint of the key that was retired.
    pub retired: Option<String>,
}

/// The controller's own public key: what verifiers pass as `--controller-key`.
#[derive(Debug, Serialize)]
pub(crate) struct ControllerKey {
    pub public_key: PublicKey,
    pub fingerprint: String,
}

pub(crate) async fn register(
    State(state): State<AppState>,
    super::extract::Require(user, _): Admin,
    Path(id): Path<String>,
    Json(body): Json<KeyIn>,
) -> ApiResult<Response> {
    let station = StationId::new(id).map_err(|e| ApiError::bad(e.to_string()))?;
    let key = PublicKey::from_text(&body.key).map_err(|e| ApiError::bad(format!("key: {e}")))?;
    let outcome = keys::register(
        &state.store,
        &state.fleet,
        &station,
        &key,
        &user.username,
        body.rotate,
        now_ms(),
    )
    .await?;
    let (status, outcome, retired) = match outcome {
        Registered::New => (StatusCode::CREATED, "registered", None),
        Registered::Rotated { old } => (StatusCode::OK, "rotated", Some(old)),
        Registered::Same => (StatusCode::OK, "unchanged", None),
        Registered::NeedsRotate { current } => {
            return Err(ApiError(
                StatusCode::CONFLICT,
                format!(
                    "station {station} has key {current}; replacing it is a rotation: send \"rotate\": true"
                ),
            ))
        }
    };
    Ok((
        status,
        Json(KeyRegistered {
            fingerprint: key.fingerprint().to_string(),
            station,
            public_key: key,
            outcome,
            retired,
        }),
    )
        .into_response())
}

fn download(json: String, name: &str) -> Response {
    (
        [
            (header::CONTENT_TYPE, "application/json".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{name}\""),
            ),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        json,
    )
        .into_response()
}

/// The key registry (every station the user may see), signed by the controller.
pub(crate) async fn registry(State(state): State<AppState>, user: User) -> ApiResult<Response> {
    let mut signed = keys::registry(&state.store, &state.controller_key, now_ms()).await?;
    if signed.body.stations.iter().any(|s| !user.sees(&s.station)) {
        // Observers get the stations they may see, signed again.
        let mut body = signed.body;
        body.stations.retain(|s| user.sees(&s.station));
        signed = stationwatch_protocol::trust::Signed::sign(body, &state.controller_key)
            .map_err(KeysError::from)?;
    }
    let json = signed.to_json().map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(download(json, "stationwatch-keys.json"))
}

pub(crate) async fn controller_key(State(state): State<AppState>, _: User) -> Json<ControllerKey> {
    let k = state.controller_key.public();
    Json(ControllerKey {
        public_key: k,
        fingerprint: k.fingerprint().to_string(),
    })
}

#[derive(Deserialize)]
pub(crate) struct WitnessQuery {
    /// Unix ms; heads received from then on (default: all).
    from: Option<i64>,
    /// Unix ms; heads received until then (default: now).
    to: Option<i64>,
}

/// The station's witnessed heads in the window plus the latest of every camera, with its
/// registered keys, signed by the controller.
pub(crate) async fn witness(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WitnessQuery>,
) -> ApiResult<Response> {
    if let (Some(f), Some(t)) = (q.from, q.to) {
        if f > t {
            return Err(ApiError::bad("from is after to"));
        }
    }
    let now = now_ms();
    let signed = keys::witness(
        &state.store,
        &state.controller_key,
        &a.station.id,
        q.from,
        q.to,
        now,
    )
    .await?;
    let json = signed.to_json().map_err(|e| ApiError::bad(e.to_string()))?;
    Ok(download(json, &format!("witness-{}.json", a.station.id)))
}
