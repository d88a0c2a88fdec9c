//! Logging in and out, and resolving a session or API token to a [`User`].

use std::collections::HashSet;
use std::sync::Arc;

use stationwatch_protocol::StationId;
use tracing::info;

use super::{hash_password, new_token, token_hash, verify_password, LoginLimiter, Role, User};
use crate::audit::{self, Action};
use crate::store::{Store, StoreError, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many failed logins; try again in a few minutes")]
    Locked,
    #[error("wrong user name or password")]
    Wrong,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new session: the token for the cookie and who it belongs to.
pub struct Session {
    pub token: String,
    pub user: UserRow,
}

/// Checks a password (throttled per user name, audited) and opens a session of `ttl_ms`.
pub async fn login(
    store: &Store,
    limiter: &LoginLimiter,
    username: &str,
    password: &str,
    ttl_ms: i64,
) -> Result<Session, LoginError> {
    let now = crate::now_ms();
    let name = username.trim().to_owned();
    if limiter.locked(&name, now) {
        let _ = audit::record(
            store,
            now,
            &name,
            Action::Login,
            "",
            "refused: too many failures",
            false,
        )
        .await;
        return Err(LoginError::Locked);
    }
    let user = store.user_by_name(&name).await?;
    let pw = password.to_owned();
    let ok = match &user {
        Some(u) => {
            let hash = u.password_hash.clone();
            tokio::task::spawn_blocking(move || verify_password(&pw, &hash))
                .await
                .unwrap_or(false)
        }
        None => {
            // Same cost as a real check, so timing does not reveal which names exist.
            let _ =
                tokio::task::spawn_blocking(move || hash_password(&format!("{pw}-padding"))).await;
            false
        }
    };
    let Some(u) = user.filter(|_| ok) else {
        limiter.failed(&name, now);
        audit::record(
            store,
            now,
            &name,
            Action::Login,
            "",
            "wrong user name or password",
            false,
        )
        .await?;
        info!(username = %name, "login refused");
        return Err(LoginError::Wrong);
    };
    limiter.succeeded(&name);
    let (token, hash) = new_token("sws_");
    store.insert_session(&hash, u.id, now, now + ttl_ms).await?;
    audit::record(store, now, &u.username, Action::Login, "", "", true).await?;
    info!(username = %u.username, "login");
    Ok(Session { token, user: u })
}

/// Ends a session (when the request came with one) and audits the logout.
pub async fn logout(store: &Store, user: &User, token: Option<&str>) -> Result<(), StoreError> {
    if let Some(token) = token {
        store.delete_session(&token_hash(token)).await?;
    }
    audit::record(
        store,
        crate::now_ms(),
        &user.username,
        Action::Logout,
        "",
        "",
        true,
    )
    .await
}

/// The user behind an API token (preferred when given) or a session token, if any.
pub async fn resolve(
    store: &Store,
    api_token: Option<&str>,
    session: Option<&str>,
) -> Result<Option<User>, StoreError> {
    let row = if let Some(token) = api_token {
        store.token_user(&token_hash(token.trim())).await?
    } else if let Some(token) = session {
        store
            .session_user(&token_hash(token), crate::now_ms())
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
            store
                .grants(row.id)
                .await?
                .into_iter()
                .filter_map(|s| StationId::new(s).ok())
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

/// A new API token for `user`, with the user's own rights; audited. Returns the token (shown
/// once; only its hash is kept).
pub async fn create_api_token(
    store: &Store,
    user: &User,
    name: &str,
) -> Result<String, StoreError> {
    let now = crate::now_ms();
    let (token, hash) = new_token("swt_");
    store.insert_token(&hash, user.id, name, now).await?;
    audit::record(
        store,
        now,
        &user.username,
        Action::TokenCreate,
        name,
        "",
        true,
    )
    .await?;
    Ok(token)
}
