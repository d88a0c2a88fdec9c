//! The HTTP side: the JSON API (documented in `docs/openapi.yaml`, served at
//! `/api/openapi.yaml`) and the dashboard's pages. Everything but the login page and
//! `POST /api/login` needs a session cookie or an API token.
//!
//! Handlers are thin: they extract (`extract.rs`), call the module that owns the concept
//! (`auth`, `commands`, `fleet`, `store`, `audit`) and answer a typed response. One file per
//! resource group.

mod admin;
mod archive;
mod commands;
mod dashboard;
mod error;
mod extract;
mod keys;
mod session;
mod stations;
mod stream;
mod users;

#[cfg(test)]
mod openapi_check;

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use tokio::sync::{broadcast, mpsc};

use stationwatch_protocol::manifest::StationKey;

use crate::archive::Archive;
use crate::auth::{LoginLimiter, User};
use crate::commands::Publisher;
use crate::config::HttpConfig;
use crate::fleet::{Fleet, StationSummary};
use crate::metrics::Metrics;
use crate::store::{Store, Write};

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
    /// Signs key registry and witness exports.
    pub controller_key: Arc<StationKey>,
    /// Where stations upload footage.
    pub archive: Archive,
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/login", get(dashboard::login_page))
        .route("/stations/{id}", get(dashboard::index))
        .route("/assets/{file}", get(dashboard::asset))
        .route("/api/login", post(session::login))
        .route("/api/logout", post(session::logout))
        .route("/api/me", get(session::me))
        .route("/api/summary", get(stations::summary))
        .route("/api/stations", get(stations::list))
        .route("/api/stations/{id}", get(stations::detail))
        .route("/api/stations/{id}/health", get(stations::health))
        .route("/api/stations/{id}/events", get(stations::events))
        .route("/api/stations/{id}/alerts", get(stations::station_alerts))
        .route(
            "/api/stations/{id}/commands",
            get(commands::list).post(commands::send),
        )
        .route(
            "/api/stations/{id}/cameras/{camera}/snapshot",
            get(stations::snapshot),
        )
        .route("/api/stations/{id}/key", put(keys::register))
        .route("/api/stations/{id}/witness", get(keys::witness))
        .route("/api/keys", get(keys::registry))
        .route("/api/controller-key", get(keys::controller_key))
        .route("/api/alerts", get(stations::alerts))
        .route("/api/stream", get(stream::stream))
        .route("/api/metrics", get(admin::metrics))
        .route("/api/audit", get(admin::audit))
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/{username}", delete(users::delete))
        .route("/api/users/{username}/grants", put(users::set_grants))
        .route("/api/tokens", post(users::create_token))
        .route("/api/openapi.yaml", get(openapi))
        .route("/api/stations/{id}/archive", get(archive::station_archive))
        .route("/api/archive/summary", get(archive::summary))
        .route(
            "/archive/v1/{station}/{camera}/manifest",
            get(archive::station_request).post(archive::station_request),
        )
        .route(
            "/archive/v1/{station}/{camera}/segments/{seq}",
            get(archive::station_request).put(archive::station_request),
        )
        .with_state(state)
}

/// The API's own description.
pub const OPENAPI_YAML: &str = include_str!("../../../docs/openapi.yaml");

async fn openapi(_user: User) -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}
