//! Logging in and out, and resolving a session or API token to a [`User`].

use std::collections::HashSet;
use std::net::IpAddr;
use std::sync::Arc;

use stationwatch_protocol::StationId;
use tracing::{info, warn};

use super::outage::{Outage, Pending};
use super::{
    hash_bounded, new_token, token_hash, verify_bounded, AuthError, LoginLimiter, Role, User,
    MAX_USERNAME_CHARS,
};
use crate::audit::{self, Action};
use crate::store::{Store, StoreError, UserRow};

#[derive(Debug, thiserror::Error)]
pub enum LoginError {
    #[error("too many failed logins; try again in a few minutes")]
    Locked,
    #[error("wrong user name or password")]
    Wrong,
    #[error("the server is busy checking passwords; try again in a moment")]
    Busy,
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new session: the token for the cookie and who it belongs to.
pub struct Session {
    pub token: String,
    pub user: UserRow,
}

/// Checks a password (throttled by address and user name, see [`LoginLimiter`]; the hashing
/// bounded, see [`verify_bounded`]) and opens a session of `ttl_ms`. The first failure of a
/// (name, address) in a window is audited at once, later ones in summaries
/// ([`audit_failure_summaries`]); a refused name longer than [`MAX_USERNAME_CHARS`] is cut
/// in the audit log.
///
/// While the database fails, the password is checked against the copy in `outage` and the
/// session and audit rows wait there to be written (the session works on this replica
/// meanwhile: the caller notes it with the credentials it resolved).
pub async fn login(
    store: &Store,
    limiter: &LoginLimiter,
    outage: &Outage,
    username: &str,
    password: &str,
    address: IpAddr,
    ttl_ms: i64,
) -> Result<Session, LoginError> {
    let now = crate::now_ms();
    let name = username.trim();
    let name: String = if name.chars().count() > MAX_USERNAME_CHARS {
        // No user has such a name: refused like a wrong password, without hashing, and
        // counted against the address under a bounded name.
        let cut: String = name.chars().take(MAX_USERNAME_CHARS).collect();
        let cut = format!("{cut}…");
        if let Err(t) = limiter.check(&cut, address, now) {
            limiter.refused(&cut, address, now);
            info!(%address, throttled = t.detail(), "login refused");
            return Err(LoginError::Locked);
        }
        fail(store, limiter, outage, &cut, address, now).await;
        return Err(LoginError::Wrong);
    } else {
        name.to_owned()
    };
    if let Err(t) = limiter.check(&name, address, now) {
        limiter.refused(&name, address, now);
        info!(username = %name, %address, throttled = t.detail(), "login refused");
        return Err(LoginError::Locked);
    }
    let user = match store.user_by_name(&name).await {
        Ok(u) => u,
        Err(e) => match outage.user_row(&name) {
            Some(u) => {
                warn!(username = %name, error = %e, "database failing: password checked against the users kept in memory");
                u
            }
            None => return Err(e.into()),
        },
    };
    let pw = password.to_owned();
    let ok = match &user {
        Some(u) => verify_bounded(pw, u.password_hash.clone()).await,
        // Same cost as a real check, so timing does not reveal which names exist.
        None => hash_bounded(format!("{pw}-padding")).await.map(|_| false),
    };
    let ok = match ok {
        Ok(ok) => ok,
        Err(AuthError::Busy) => return Err(LoginError::Busy),
        Err(_) => false,
    };
    let Some(u) = user.filter(|_| ok) else {
        fail(store, limiter, outage, &name, address, now).await;
        return Err(LoginError::Wrong);
    };
    limiter.succeeded(&name, address);
    let (token, hash) = new_token("sws_");
    if let Err(e) = store.insert_session(&hash, u.id, now, now + ttl_ms).await {
        warn!(username = %u.username, error = %e, "database failing: the new session is kept in memory and written when it is back");
        outage.defer(Pending::Session {
            token_hash: hash.clone(),
            user_id: u.id,
            created: now,
            expires: now + ttl_ms,
        });
    }
    record(
        store,
        outage,
        now,
        &u.username,
        Action::Login,
        &format!("from {address}"),
        true,
    )
    .await;
    info!(username = %u.username, %address, "login");
    Ok(Session { token, user: u })
}

async fn fail(
    store: &Store,
    limiter: &LoginLimiter,
    outage: &Outage,
    name: &str,
    address: IpAddr,
    now: i64,
) {
    if limiter.failed(name, address, now) {
        record(
            store,
            outage,
            now,
            name,
            Action::Login,
            &format!("wrong user name or password, from {address}"),
            false,
        )
        .await;
    }
    info!(username = %name, %address, "login refused");
}

/// An audit row of a login, deferred while the database fails.
async fn record(
    store: &Store,
    outage: &Outage,
    at: i64,
    username: &str,
    action: Action,
    detail: &str,
    ok: bool,
) {
    if let Err(e) = audit::record(store, at, username, action, "", detail, ok).await {
        warn!(error = %e, "database failing: the audit row waits in memory");
        outage.defer(Pending::Audit {
            at,
            username: username.to_owned(),
            action: action.name(),
            target: String::new(),
            detail: detail.to_owned(),
            ok,
        });
    }
}

/// Writes one audit row per (name, address) for the failed and refused logins counted since
/// the last call (the first failure of each was written when it happened).
pub async fn audit_failure_summaries(store: &Store, limiter: &LoginLimiter, outage: &Outage) {
    let now = crate::now_ms();
    for s in limiter.summaries() {
        let detail = format!(
            "{} more wrong passwords and {} throttled attempts from {} since {}",
            s.wrong,
            s.throttled,
            s.address,
            stationwatch_protocol::manifest::Timestamp::from_unix_ms(s.since)
                .map(|t| t.to_string())
                .unwrap_or_default()
        );
        record(
            store,
            outage,
            now,
            &s.username,
            Action::Login,
            &detail,
            false,
        )
        .await;
    }
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
        store
            .token_user(&token_hash(token.trim()), crate::now_ms())
            .await?
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
    let grants = grants_of(store, row.id, role).await?;
    Ok(Some(User {
        id: row.id,
        username: row.username,
        role,
        grants,
    }))
}

/// The stations an observer may see (`None` for the other roles: every station).
pub(crate) async fn grants_of(
    store: &Store,
    user_id: i64,
    role: Role,
) -> Result<Option<Arc<HashSet<StationId>>>, StoreError> {
    if role != Role::Observer {
        return Ok(None);
    }
    Ok(Some(Arc::new(
        store
            .grants(user_id)
            .await?
            .into_iter()
            .filter_map(|s| StationId::new(s).ok())
            .collect(),
    )))
}

/// A new API token for `user`, with the user's own rights; audited. Returns the token (shown
/// once; only its hash is kept).
pub async fn create_api_token(
    store: &Store,
    user: &User,
    name: &str,
    valid_days: u32,
) -> Result<NewApiToken, StoreError> {
    let now = crate::now_ms();
    let (token, hash) = new_token("swt_");
    let expires_at = now + i64::from(valid_days) * 86_400_000;
    let id = store
        .insert_token(&hash, user.id, name, now, expires_at)
        .await?;
    audit::record(
        store,
        now,
        &user.username,
        Action::TokenCreate,
        name,
        &format!("id {id}, valid {valid_days} days"),
        true,
    )
    .await?;
    Ok(NewApiToken {
        token,
        id,
        expires_at,
    })
}

/// A token just made: the secret (shown once), its public id and its expiry.
pub struct NewApiToken {
    pub token: String,
    pub id: String,
    pub expires_at: i64,
}

/// Revokes token `id`: the user's own, or anyone's for an admin; audited.
pub async fn revoke_api_token(store: &Store, user: &User, id: &str) -> Result<bool, StoreError> {
    let owner = (user.role != Role::Admin).then_some(user.id);
    let done = store.revoke_token(id, owner).await?;
    audit::record(
        store,
        crate::now_ms(),
        &user.username,
        Action::TokenRevoke,
        id,
        "",
        done,
    )
    .await?;
    Ok(done)
}
