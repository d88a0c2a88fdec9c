//! The operators' dashboard: static pages and scripts built into the binary (no build step, no
//! CDN: the controller may run on a network without internet). They use only the JSON API and
//! its server-sent events.

use axum::extract::{Path, State};
use axum::http::header::{self, HeaderMap};
use axum::response::{IntoResponse, Redirect, Response};

use super::error::{ApiError, ApiResult};
use super::extract::authenticate;
use super::AppState;

const INDEX_HTML: &str = include_str!("../../assets/index.html");
const LOGIN_HTML: &str = include_str!("../../assets/login.html");
const REQUESTS_HTML: &str = include_str!("../../assets/requests.html");
const PUBLIC_HTML: &str = include_str!("../../assets/public.html");

const ASSETS: &[(&str, &str, &str)] = &[
    (
        "app.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/app.js"),
    ),
    (
        "app.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/app.css"),
    ),
    (
        "login.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/login.js"),
    ),
    (
        "requests.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/requests.js"),
    ),
    (
        "public.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/public.js"),
    ),
    // hls.js 1.7.4, Apache-2.0: see assets/vendor/README.md.
    (
        "hls.light.min.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/vendor/hls.light.min.js"),
    ),
    (
        "hls.js-LICENSE",
        "text/plain; charset=utf-8",
        include_str!("../../assets/vendor/hls.js-LICENSE"),
    ),
];

/// Assets the login page needs, served without a session (they hold nothing secret).
const PUBLIC_ASSETS: &[&str] = &[
    "login.js",
    "app.css",
    "public.js",
    "hls.light.min.js",
    "hls.js-LICENSE",
];

/// Headers every page gets: no framing, no inline script from elsewhere, no caching of data.
fn secure(resp: impl IntoResponse, content_type: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
            (
                header::CONTENT_SECURITY_POLICY,
                "default-src 'self'; img-src 'self' data:; media-src 'self' blob:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        resp,
    )
        .into_response()
}

fn page(html: &'static str) -> Response {
    secure(html, "text/html; charset=utf-8")
}

fn asset_response(name: &str) -> Option<Response> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| secure(*body, ct))
}

/// `/` and `/stations/{id}`: the dashboard, or the login page for strangers.
pub(crate) async fn index(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    Ok(match authenticate(&state, &headers).await? {
        Some(_) => page(INDEX_HTML),
        None => Redirect::to("/login").into_response(),
    })
}

/// `/requests` and `/requests/{id}`: requests for recordings, or the login page for strangers.
pub(crate) async fn requests_page(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    Ok(match authenticate(&state, &headers).await? {
        Some(_) => page(REQUESTS_HTML),
        None => Redirect::to("/login").into_response(),
    })
}

/// The public live page (served by `live::public_page` only when it is switched on).
pub(crate) fn public_page() -> Response {
    page(PUBLIC_HTML)
}

pub(crate) async fn login_page() -> Response {
    page(LOGIN_HTML)
}

pub(crate) async fn asset(
    State(state): State<AppState>,
    headers: HeaderMap,
    Path(file): Path<String>,
) -> ApiResult<Response> {
    if !PUBLIC_ASSETS.contains(&file.as_str()) && authenticate(&state, &headers).await?.is_none() {
        return Err(ApiError::unauthorized());
    }
    asset_response(&file).ok_or_else(|| ApiError::not_found("asset"))
}
