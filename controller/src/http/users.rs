//! Users, grants and API tokens (admin, except tokens). The work is in `crate::auth`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::{Admin, Require};
use super::AppState;
use crate::auth::users::{self, UserInfo};
use crate::auth::{sessions, Role, User};

#[derive(Debug, Serialize)]
pub(crate) struct Users {
    pub users: Vec<UserInfo>,
}

#[derive(Debug, Serialize)]
pub(crate) struct Created {
    pub username: String,
    pub role: Role,
}

#[derive(Debug, Serialize)]
pub(crate) struct NewTokenOut {
    pub token: String,
    pub name: String,
    pub id: String,
    pub expires_at: i64,
}

#[derive(Debug, Serialize)]
pub(crate) struct Tokens {
    pub tokens: Vec<crate::store::TokenRow>,
}

#[derive(Deserialize)]
pub(crate) struct NewUser {
    username: String,
    password: String,
    role: String,
    #[serde(default)]
    grants: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct Grants {
    stations: Vec<String>,
}

#[derive(Deserialize)]
pub(crate) struct NewToken {
    name: String,
    /// Days the token is valid (1 to 365, default 90).
    #[serde(default)]
    days: Option<u32>,
}

pub(crate) async fn list(State(state): State<AppState>, _: Admin) -> ApiResult<Json<Users>> {
    Ok(Json(Users {
        users: users::list(&state.store).await?,
    }))
}

pub(crate) async fn create(
    State(state): State<AppState>,
    Require(admin, _): Admin,
    Json(body): Json<NewUser>,
) -> ApiResult<(StatusCode, Json<Created>)> {
    let role = users::create_by_admin(
        &state.store,
        &admin,
        &body.username,
        &body.password,
        &body.role,
        &body.grants,
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(Created {
            username: body.username,
            role,
        }),
    ))
}

pub(crate) async fn delete(
    State(state): State<AppState>,
    Require(admin, _): Admin,
    Path(username): Path<String>,
) -> ApiResult<StatusCode> {
    users::delete_by_admin(&state.store, &admin, &username).await?;
    Ok(StatusCode::NO_CONTENT)
}

pub(crate) async fn set_grants(
    State(state): State<AppState>,
    Require(admin, _): Admin,
    Path(username): Path<String>,
    Json(body): Json<Grants>,
) -> ApiResult<StatusCode> {
    users::set_grants_by_admin(&state.store, &admin, &username, &body.stations).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// A token for scripts, with the caller's own rights. Shown once.
pub(crate) async fn create_token(
    State(state): State<AppState>,
    user: User,
    Json(body): Json<NewToken>,
) -> ApiResult<(StatusCode, Json<NewTokenOut>)> {
    let days = body.days.unwrap_or(90);
    if !(1..=365).contains(&days) || body.name.is_empty() || body.name.chars().count() > 100 {
        return Err(ApiError::bad("name: 1 to 100 characters; days: 1 to 365"));
    }
    let t = sessions::create_api_token(&state.store, &user, &body.name, days).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenOut {
            token: t.token,
            name: body.name,
            id: t.id,
            expires_at: t.expires_at,
        }),
    ))
}

/// The caller's API tokens (an admin's: everyone's), without the secrets.
pub(crate) async fn list_tokens(
    State(state): State<AppState>,
    user: User,
) -> ApiResult<Json<Tokens>> {
    let owner = (user.role != Role::Admin).then_some(user.id);
    Ok(Json(Tokens {
        tokens: state.store.tokens(owner).await?,
    }))
}

/// Revokes a token: the caller's own, or anyone's for an admin. Takes effect at once, also for
/// event streams opened with it (within seconds).
pub(crate) async fn revoke_token(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    if sessions::revoke_api_token(&state.store, &user, &id).await? {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found("token"))
    }
}
