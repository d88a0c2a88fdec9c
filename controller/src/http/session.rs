//! `POST /api/login`, `POST /api/logout`, `GET /api/me`: the session cookie.

use axum::extract::State;
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use cookie::time::Duration as CookieDuration;
use cookie::{Cookie, SameSite};
use serde::{Deserialize, Serialize};

use super::error::ApiResult;
use super::extract::{session_cookie, ClientAddr};
use super::AppState;
use crate::auth::{sessions, Role, User, SESSION_COOKIE};

#[derive(Deserialize)]
pub(crate) struct LoginBody {
    username: String,
    password: String,
}

/// The answer to a login.
#[derive(Debug, Serialize)]
pub(crate) struct LoggedIn {
    pub username: String,
    pub role: String,
}

/// Who is logged in.
#[derive(Debug, Serialize)]
pub(crate) struct Me {
    pub username: String,
    pub role: Role,
    pub may_command: bool,
}

/// `sw_session=<token>; HttpOnly; SameSite=Strict; Path=/; Max-Age=<secs>` (+ `Secure`).
fn session_cookie_header(value: String, max_age_secs: i64, secure: bool) -> Option<HeaderValue> {
    let mut c = Cookie::build((SESSION_COOKIE, value))
        .path("/")
        .http_only(true)
        .same_site(SameSite::Strict)
        .max_age(CookieDuration::seconds(max_age_secs))
        .build();
    if secure {
        c.set_secure(true);
    }
    HeaderValue::from_str(&c.to_string()).ok()
}

pub(crate) async fn login(
    State(state): State<AppState>,
    ClientAddr(address): ClientAddr,
    Json(body): Json<LoginBody>,
) -> ApiResult<Response> {
    let ttl = state.http.session_ttl;
    let s = sessions::login(
        &state.store,
        &state.limiter,
        &state.outage,
        &body.username,
        &body.password,
        address,
        ttl.as_millis() as i64,
    )
    .await?;
    // Known to this replica at once: the session works here even if the database fails now
    // (it was written, or waits in `outage` to be).
    if let Some(user) = state.outage.user(&s.user) {
        state.resolved.note(
            crate::auth::token_hash(&s.token),
            Some(user),
            crate::now_ms(),
        );
    }
    let mut resp = Json(LoggedIn {
        username: s.user.username,
        role: s.user.role,
    })
    .into_response();
    if let Some(v) = session_cookie_header(s.token, ttl.as_secs() as i64, state.http.cookie_secure)
    {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub(crate) async fn logout(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
) -> ApiResult<Response> {
    sessions::logout(&state.store, &user, session_cookie(&headers).as_deref()).await?;
    let mut resp = StatusCode::NO_CONTENT.into_response();
    if let Some(v) = session_cookie_header(String::new(), 0, false) {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(resp)
}

pub(crate) async fn me(user: User) -> Json<Me> {
    Json(Me {
        may_command: user.role.may_command(),
        username: user.username,
        role: user.role,
    })
}
