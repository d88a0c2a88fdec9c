//! What handlers take from a request: the user (session cookie or API token), the user as an
//! admin or as staff, a station the user may see, and paging.

use std::collections::HashMap;
use std::marker::PhantomData;

use axum::extract::{FromRequestParts, Path};
use axum::http::header::{self, HeaderMap};
use axum::http::request::Parts;
use cookie::Cookie;
use serde::Deserialize;
use stationwatch_protocol::StationId;

use super::error::{ApiError, ApiResult};
use super::AppState;
use crate::auth::{sessions, Role, User, SESSION_COOKIE};
use crate::fleet::Station;

/// The value of the session cookie, if the request has one.
pub(crate) fn session_cookie(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(Cookie::split_parse)
        .filter_map(Result::ok)
        .find(|c| c.name() == SESSION_COOKIE)
        .map(|c| c.value().to_owned())
}

/// Resolves the `Authorization: Bearer` token or session cookie of a request.
pub(crate) async fn authenticate(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<User>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let session = session_cookie(headers);
    let key = bearer
        .map(|b| crate::auth::token_hash(b.trim()))
        .or_else(|| session.as_deref().map(crate::auth::token_hash));
    let now = crate::now_ms();
    match sessions::resolve(&state.store, bearer, session.as_deref()).await {
        Ok(user) => {
            // Not in the database: a session opened while it failed may still wait to be
            // written (then it is this replica's to honour).
            let user = match (user, bearer, key.as_deref()) {
                (None, None, Some(k)) => state.outage.pending_session_user(k, now),
                (user, _, _) => user,
            };
            if let Some(k) = key {
                state.resolved.note(k, user.clone(), now);
            }
            Ok(user)
        }
        // The database is failing: a credential this replica resolved recently (within a
        // session's lifetime) still works, so operators keep their dashboard during the
        // outage. Nothing can be revoked meanwhile: revoking needs the database too.
        Err(e) => {
            let ttl = state.http.session_ttl.as_millis() as i64;
            match key.and_then(|k| state.resolved.get(&k, now - ttl)) {
                Some(user) => Ok(Some(user)),
                None => Err(e.into()),
            }
        }
    }
}

impl FromRequestParts<AppState> for User {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        authenticate(state, &parts.headers)
            .await?
            .ok_or_else(ApiError::unauthorized)
    }
}

/// Which roles a [`Require`] lets through.
pub(crate) trait RoleRule {
    fn allows(role: Role) -> bool;
}

pub(crate) struct AdminOnly;
impl RoleRule for AdminOnly {
    fn allows(role: Role) -> bool {
        role == Role::Admin
    }
}

pub(crate) struct NotObserver;
impl RoleRule for NotObserver {
    fn allows(role: Role) -> bool {
        role != Role::Observer
    }
}

/// A user whose role `R` allows (403 for others, 401 without a session).
pub(crate) struct Require<R>(pub User, pub PhantomData<R>);

/// An admin.
pub(crate) type Admin = Require<AdminOnly>;
/// An admin or an operator.
pub(crate) type Staff = Require<NotObserver>;

impl<R: RoleRule> FromRequestParts<AppState> for Require<R> {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = User::from_request_parts(parts, state).await?;
        if !R::allows(user.role) {
            return Err(ApiError::forbidden());
        }
        Ok(Require(user, PhantomData))
    }
}

/// A request about one station (`{id}` in the path) by a user who may see it; 404 otherwise,
/// so that observers cannot probe which stations exist.
pub(crate) struct StationAccess {
    pub user: User,
    pub station: Station,
}

impl FromRequestParts<AppState> for StationAccess {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let user = User::from_request_parts(parts, state).await?;
        let Path(params) = Path::<HashMap<String, String>>::from_request_parts(parts, state)
            .await
            .map_err(|e| ApiError::bad(e.to_string()))?;
        // An id that cannot be one is a station that does not exist.
        let station = params
            .get("id")
            .and_then(|id| StationId::new(id.clone()).ok())
            .filter(|id| user.sees(id))
            .and_then(|id| state.fleet.get(&id))
            .ok_or_else(|| ApiError::not_found("station"))?;
        Ok(StationAccess { user, station })
    }
}

/// `?hours=` and `?limit=` of history queries.
#[derive(Deserialize)]
pub(crate) struct WindowQuery {
    pub hours: Option<u32>,
    pub limit: Option<i64>,
}

impl WindowQuery {
    /// `limit`, or `default`, within 1..=`max`.
    pub fn limit(&self, default: i64, max: i64) -> i64 {
        self.limit.unwrap_or(default).clamp(1, max)
    }
}

/// The address a request comes from: the TCP peer, or, when the peer is one of
/// `[http] trusted_proxies` (the reverse proxy), the last address of `X-Forwarded-For` that is
/// not itself a trusted proxy. A client cannot choose its address by sending the header
/// directly: an untrusted peer's header is ignored.
pub(crate) struct ClientAddr(pub std::net::IpAddr);

impl FromRequestParts<AppState> for ClientAddr {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<axum::extract::ConnectInfo<std::net::SocketAddr>>()
            .map(|c| c.0.ip())
            .unwrap_or(std::net::IpAddr::from([127, 0, 0, 1]));
        Ok(ClientAddr(client_address(
            peer,
            &parts.headers,
            &state.http.trusted_proxies,
        )))
    }
}

pub(crate) fn client_address(
    peer: std::net::IpAddr,
    headers: &HeaderMap,
    trusted: &[std::net::IpAddr],
) -> std::net::IpAddr {
    let canon = |ip: std::net::IpAddr| ip.to_canonical();
    let peer = canon(peer);
    if !trusted.contains(&peer) {
        return peer;
    }
    let forwarded: Vec<std::net::IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|a| a.trim().parse().ok())
        .map(canon)
        .collect();
    forwarded
        .into_iter()
        .rev()
        .find(|a| !trusted.contains(a))
        .unwrap_or(peer)
}

#[cfg(test)]
mod client_address_tests {
    use super::*;

    #[test]
    fn forwarded_for_counts_only_behind_a_trusted_proxy() {
        let ip = |s: &str| s.parse::<std::net::IpAddr>().unwrap();
        let trusted = [ip("127.0.0.1")];
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", "6.6.6.6, 203.0.113.5".parse().unwrap());
        // Behind the proxy: the address the proxy saw (the last one), not what the client wrote.
        assert_eq!(
            client_address(ip("127.0.0.1"), &h, &trusted),
            ip("203.0.113.5")
        );
        // A client talking directly cannot pick its address.
        assert_eq!(
            client_address(ip("198.51.100.7"), &h, &trusted),
            ip("198.51.100.7")
        );
        assert_eq!(
            client_address(ip("127.0.0.1"), &HeaderMap::new(), &trusted),
            ip("127.0.0.1")
        );
        assert_eq!(
            client_address(ip("::ffff:198.51.100.7"), &h, &trusted),
            ip("198.51.100.7")
        );
    }
}
