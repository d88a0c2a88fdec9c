//! Users, grants and API tokens (admin, except tokens). The work is in `crate::auth`.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::ApiResult;
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
    let token = sessions::create_api_token(&state.store, &user, &body.name).await?;
    Ok((
        StatusCode::CREATED,
        Json(NewTokenOut {
            token,
            name: body.name,
        }),
    ))
}
