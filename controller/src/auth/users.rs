//! Creating, listing and deleting users and setting observers' grants. The API, the bootstrap
//! admin and the `user add` command all create users here.

use serde::Serialize;
use stationwatch_protocol::{IdError, StationId};

use super::{hash_bounded, AuthError, Role, User};
use crate::audit::{self, Action};
use crate::store::{Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum CreateUserError {
    #[error("user name must be 1 to 64 letters, digits, '.', '-', '_' or '@'")]
    BadName,
    #[error("{0}")]
    Password(#[from] AuthError),
    #[error("user {0:?} exists already")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why an admin's change to users was refused.
#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("role must be admin, operator or observer")]
    BadRole,
    #[error("{0:?}: {1}")]
    BadGrant(String, IdError),
    #[error("you cannot delete yourself")]
    DeleteSelf,
    #[error("user not found")]
    NotFound,
    #[error(transparent)]
    Create(#[from] CreateUserError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Validates and creates a user (used by the API, the bootstrap admin and the CLI).
pub async fn create_user(
    store: &Store,
    username: &str,
    password: &str,
    role: Role,
) -> Result<i64, CreateUserError> {
    let ok_name = !username.is_empty()
        && username.len() <= super::MAX_USERNAME_CHARS
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | '@'));
    if !ok_name {
        return Err(CreateUserError::BadName);
    }
    let hash = hash_bounded(password.to_owned()).await?;
    store
        .create_user(username, &hash, role.name(), crate::now_ms())
        .await?
        .ok_or_else(|| CreateUserError::Exists(username.to_owned()))
}

/// A user as the admin sees it.
#[derive(Debug, Clone, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub role: String,
    pub grants: Vec<StationId>,
}

/// Every user with their grants.
pub async fn list(store: &Store) -> Result<Vec<UserInfo>, StoreError> {
    let mut out = Vec::new();
    for u in store.users().await? {
        let grants = store.grants(u.id).await?;
        out.push(UserInfo {
            username: u.username,
            role: u.role,
            grants: station_ids(grants),
        });
    }
    Ok(out)
}

/// Grants read back from the database were validated when they were set.
fn station_ids(ids: Vec<String>) -> Vec<StationId> {
    ids.into_iter()
        .filter_map(|s| StationId::new(s).ok())
        .collect()
}

/// Grants name stations by their ids: refuse anything that cannot be one.
fn parse_grants(ids: &[String]) -> Result<Vec<StationId>, UserError> {
    ids.iter()
        .map(|s| StationId::new(s.clone()).map_err(|e| UserError::BadGrant(s.clone(), e)))
        .collect()
}

fn as_strings(ids: &[StationId]) -> Vec<String> {
    ids.iter().map(|s| s.as_str().to_owned()).collect()
}

/// An admin creates a user with a role and (for observers) grants; audited.
pub async fn create_by_admin(
    store: &Store,
    admin: &User,
    username: &str,
    password: &str,
    role: &str,
    grants: &[String],
) -> Result<Role, UserError> {
    let now = crate::now_ms();
    let role = Role::from_name(role).ok_or(UserError::BadRole)?;
    let grants = parse_grants(grants)?;
    let id = create_user(store, username, password, role).await?;
    if !grants.is_empty() {
        store.set_grants(id, &as_strings(&grants)).await?;
    }
    audit::record(
        store,
        now,
        &admin.username,
        Action::UserCreate,
        username,
        role.name(),
        true,
    )
    .await?;
    Ok(role)
}

/// An admin deletes another user; audited.
pub async fn delete_by_admin(store: &Store, admin: &User, username: &str) -> Result<(), UserError> {
    if username == admin.username {
        return Err(UserError::DeleteSelf);
    }
    let target = store
        .user_by_name(username)
        .await?
        .ok_or(UserError::NotFound)?;
    store.delete_user(target.id).await?;
    audit::record(
        store,
        crate::now_ms(),
        &admin.username,
        Action::UserDelete,
        username,
        "",
        true,
    )
    .await?;
    Ok(())
}

/// An admin replaces the stations an observer may see; audited.
pub async fn set_grants_by_admin(
    store: &Store,
    admin: &User,
    username: &str,
    stations: &[String],
) -> Result<(), UserError> {
    let target = store
        .user_by_name(username)
        .await?
        .ok_or(UserError::NotFound)?;
    let stations = as_strings(&parse_grants(stations)?);
    store.set_grants(target.id, &stations).await?;
    audit::record(
        store,
        crate::now_ms(),
        &admin.username,
        Action::Grants,
        username,
        &stations.join(","),
        true,
    )
    .await?;
    Ok(())
}
