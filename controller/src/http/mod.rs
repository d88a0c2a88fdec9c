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
mod enroll;
mod error;
mod extract;
mod keys;
mod live;
mod requests;
pub mod serve;
mod session;
mod stations;
mod stream;
mod users;
mod views;

#[cfg(test)]
mod openapi_check;

use std::sync::Arc;

use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post, put};
use axum::Router;
use tokio::sync::broadcast;

use stationwatch_protocol::manifest::StationKey;

use crate::archive::Archive;
use crate::auth::{LoginLimiter, User};
use crate::commands::Publisher;
use crate::config::HttpConfig;
use crate::fleet::{Fleet, StationSummary};
use crate::metrics::Metrics;
use crate::store::Store;

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub fleet: Fleet,
    pub publisher: Publisher,
    pub metrics: Arc<Metrics>,
    pub writes: crate::ingest::queue::Writes,
    pub http: HttpConfig,
    /// Batches of changed stations, about once a second.
    pub changes: broadcast::Sender<Arc<Vec<StationSummary>>>,
    pub limiter: LoginLimiter,
    /// Signs key registry and witness exports.
    pub controller_key: Arc<StationKey>,
    /// Where stations upload footage.
    pub archive: Archive,
    /// Open HTTP connections and their cap.
    pub connections: serve::Connections,
    /// Open event streams per user.
    pub streams: StreamSlots,
    /// Credentials resolved recently, used only while the database fails.
    pub resolved: Resolved,
    /// Users' credentials and deferred writes, for logins while the database fails.
    pub outage: crate::auth::outage::Outage,
    /// Requests for recordings.
    pub requests: crate::requests::Requests,
    /// Enrollment of stations, when configured.
    pub enroll: Option<crate::config::EnrollConfig>,
    /// Live viewing through the gateways, when configured.
    pub live: Option<crate::live::Live>,
}

/// Token hash → the user it resolved to and when (bounded; cleared when full).
#[derive(Clone, Default)]
pub struct Resolved {
    map: Arc<parking_lot::Mutex<std::collections::HashMap<String, (User, i64)>>>,
}

impl Resolved {
    const MAX: usize = 50_000;

    pub fn note(&self, key: String, user: Option<User>, now: i64) {
        let mut g = self.map.lock();
        match user {
            Some(u) => {
                if g.len() >= Self::MAX {
                    g.clear();
                }
                g.insert(key, (u, now));
            }
            None => {
                g.remove(&key);
            }
        }
    }

    /// The user `key` resolved to at or after `since`.
    pub fn get(&self, key: &str, since: i64) -> Option<User> {
        self.map
            .lock()
            .get(key)
            .filter(|(_, at)| *at >= since)
            .map(|(u, _)| u.clone())
    }
}

/// Event streams open per user id, each held by a [`StreamSlot`] that frees itself on drop.
#[derive(Clone, Default)]
pub struct StreamSlots {
    open: Arc<parking_lot::Mutex<std::collections::HashMap<i64, usize>>>,
}

impl StreamSlots {
    /// A slot for `user`, unless they already have `max` streams open.
    pub fn take(&self, user: i64, max: usize) -> Option<StreamSlot> {
        let mut g = self.open.lock();
        let n = g.entry(user).or_insert(0);
        if *n >= max {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            slots: self.clone(),
            user,
        })
    }

    /// Event streams open now, all users.
    pub fn total(&self) -> usize {
        self.open.lock().values().sum()
    }
}

pub struct StreamSlot {
    slots: StreamSlots,
    user: i64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut g = self.slots.open.lock();
        if let Some(n) = g.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                g.remove(&self.user);
            }
        }
    }
}

pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/login", get(dashboard::login_page))
        .route("/stations/{id}", get(dashboard::index))
        .route("/requests", get(dashboard::requests_page))
        .route("/requests/{id}", get(dashboard::requests_page))
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
        .route(
            "/api/stations/{id}/cameras/{camera}/masks",
            get(stations::masks).put(stations::set_masks),
        )
        .route(
            "/api/stations/{id}/cameras/{camera}/view",
            get(views::get).post(views::decide),
        )
        .route(
            "/api/stations/{id}/cameras/{camera}/view/{review}/snapshot",
            get(views::snapshot),
        )
        .route(
            "/api/stations/{id}/cameras/{camera}/public",
            put(live::set_public),
        )
        .route(
            "/api/stations/{id}/cameras/{camera}/live",
            get(live::status),
        )
        .route(
            "/api/stations/{id}/cameras/{camera}/live/{file}",
            get(live::private_file),
        )
        .route("/api/live/gateway", get(live::gateway))
        .route("/api/public/cameras", get(live::public_cameras))
        .route("/public", get(live::public_page))
        .route(
            "/public/live/{station}/{camera}/{file}",
            get(live::public_file),
        )
        .route("/api/stations/{id}/key", put(keys::register))
        .route("/api/enrollments", post(enroll::create).get(enroll::list))
        .route("/api/enrollments/{id}", delete(enroll::revoke))
        .route("/api/enroll", post(enroll::redeem))
        .route("/api/stations/{id}/witness", get(keys::witness))
        .route("/api/keys", get(keys::registry))
        .route("/api/controller-key", get(keys::controller_key))
        .route("/api/alerts", get(stations::alerts))
        .route("/api/stream", get(stream::stream))
        .route("/api/metrics", get(admin::metrics))
        .route("/metrics", get(admin::prometheus))
        .route("/api/audit", get(admin::audit))
        .route("/api/users", get(users::list).post(users::create))
        .route("/api/users/{username}", delete(users::delete))
        .route("/api/users/{username}/grants", put(users::set_grants))
        .route(
            "/api/tokens",
            get(users::list_tokens).post(users::create_token),
        )
        .route("/api/tokens/{id}", delete(users::revoke_token))
        .route("/api/openapi.yaml", get(openapi))
        .route("/api/stations/{id}/archive", get(archive::station_archive))
        .route("/api/archive/summary", get(archive::summary))
        .route("/api/requests", get(requests::list).post(requests::file))
        .route("/api/requests/{id}", get(requests::get))
        .route("/api/requests/{id}/decision", post(requests::decide))
        .route("/api/requests/{id}/timeline", get(requests::timeline))
        .route("/api/requests/{id}/hls/{camera}", get(requests::playlist))
        .route(
            "/api/requests/{id}/segments/{camera}/{seq}",
            get(requests::segment),
        )
        .route("/api/requests/{id}/bundle", get(requests::bundle))
        .route("/api/requests/{id}/mp4/{camera}", get(requests::mp4))
        .route(
            "/archive/v1/{station}/{camera}/manifest",
            get(archive::station_request).post(archive::station_request),
        )
        .route(
            "/archive/v1/{station}/{camera}/segments/{seq}",
            get(archive::station_request).put(archive::station_request),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.http.request_timeout,
            request_timeout,
        ))
        .with_state(state)
}

/// Every request but the event stream must be answered within `[http]
/// request_timeout_seconds`, body upload included (a client trickling its body holds nothing
/// for long): `408` otherwise.
async fn request_timeout(
    axum::extract::State(limit): axum::extract::State<std::time::Duration>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    if req.uri().path() == "/api/stream" {
        return next.run(req).await;
    }
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            axum::http::StatusCode::REQUEST_TIMEOUT,
            axum::Json(serde_json::json!({ "error": "request timed out" })),
        )
            .into_response(),
    }
}

/// The API's own description.
pub const OPENAPI_YAML: &str = include_str!("../../../docs/openapi.yaml");

async fn openapi(_user: User) -> Response {
    ([(header::CONTENT_TYPE, "application/yaml")], OPENAPI_YAML).into_response()
}
