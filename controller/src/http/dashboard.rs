//! The operators' dashboard: static pages and scripts built into the binary (no build step, no
//! CDN: the controller may run on a network without internet). They use only the JSON API and
//! its server-sent events.

use axum::http::header;
use axum::response::{IntoResponse, Response};

pub const INDEX_HTML: &str = include_str!("../../assets/index.html");
pub const LOGIN_HTML: &str = include_str!("../../assets/login.html");

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
];

/// Assets the login page needs, served without a session (they hold nothing secret).
pub const PUBLIC_ASSETS: &[&str] = &["login.js", "app.css"];

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
                "default-src 'self'; img-src 'self' data:; style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        resp,
    )
        .into_response()
}

pub fn page(html: &'static str) -> Response {
    secure(html, "text/html; charset=utf-8")
}

pub fn asset(name: &str) -> Option<Response> {
    ASSETS
        .iter()
        .find(|(n, _, _)| *n == name)
        .map(|(_, ct, body)| secure(*body, ct))
}
