//! `/api/stations/{id}/commands`: the station's commands, and sending one (see
//! `crate::commands` for what sending does).

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::header::{self, HeaderMap};
use axum::http::StatusCode;
use axum::Json;
use serde::Serialize;
use stationwatch_protocol::mqtt::Command;

use super::error::{ApiError, ApiResult};
use super::extract::{StationAccess, WindowQuery};
use super::AppState;
use crate::commands::{self, Sent};
use crate::store::CommandRow;

#[derive(Debug, Serialize)]
pub(crate) struct Commands {
    pub commands: Vec<CommandRow>,
}

pub(crate) async fn list(
    State(state): State<AppState>,
    a: StationAccess,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<Commands>> {
    let commands = state
        .store
        .commands(&a.station.id, q.limit(50, 500))
        .await?;
    Ok(Json(Commands { commands }))
}

pub(crate) async fn send(
    State(state): State<AppState>,
    a: StationAccess,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<(StatusCode, Json<Sent>)> {
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
    let command: Command = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad(format!(
            "not a command ({e}); send e.g. {{\"kind\":\"restart_camera\",\"camera\":\"desk\"}}"
        ))
    })?;
    let sent = commands::send(&state.store, &state.publisher, &a.user, &a.station, command).await?;
    Ok((StatusCode::ACCEPTED, Json(sent)))
}
