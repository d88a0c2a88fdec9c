//! `/api/requests`: requests for recordings (see `crate::requests` for the workflow). Observers
//! see and file only their own, for stations granted to them; operators and admins see all and
//! decide. A request nobody may see answers 404, like a station.

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::Json;
use serde::{Deserialize, Serialize};

use super::error::{ApiError, ApiResult};
use super::extract::Staff;
use super::AppState;
use crate::auth::User;
use crate::requests::{NewRequest, Requests, OPEN, SUBMITTED};
use crate::store::requests::RequestRow;

#[derive(Debug, Serialize)]
pub(crate) struct RequestList {
    pub requests: Vec<RequestRow>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ListQuery {
    /// `open` (default: submitted and collecting) or `all`.
    pub status: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Decision {
    pub approve: bool,
    /// Required to refuse; an optional note to approve.
    #[serde(default)]
    pub reason: String,
}

pub(crate) async fn file(
    State(state): State<AppState>,
    user: User,
    body: Result<Json<NewRequest>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<(StatusCode, Json<RequestRow>)> {
    let Json(new) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let station = Some(new.station.clone())
        .filter(|id| user.sees(id))
        .and_then(|id| state.fleet.get(&id))
        .ok_or_else(|| ApiError::not_found("station"))?;
    let row = state
        .requests
        .file(&user, &station, new, crate::now_ms())
        .await?;
    Ok((StatusCode::CREATED, Json(row)))
}

/// The requests the user may see, oldest first; for staff the open queue puts what waits for a
/// decision first, then what is collecting by its deadline.
pub(crate) async fn list(
    State(state): State<AppState>,
    user: User,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<RequestList>> {
    let statuses: &[&str] = match q.status.as_deref() {
        None | Some("open") => &OPEN,
        Some("all") => &[],
        Some(other) => {
            return Err(ApiError::bad(format!(
                "status {other:?}: expected open or all"
            )))
        }
    };
    let limit = q.limit.unwrap_or(200).clamp(1, 1000);
    let mine = (user.role == crate::auth::Role::Observer).then_some(user.username.as_str());
    let mut requests: Vec<RequestRow> = state
        .store
        .requests(mine, statuses, limit)
        .await?
        .into_iter()
        .filter(|r| Requests::may_see(&user, r))
        .collect();
    requests.sort_by_key(|r| {
        (
            r.status != SUBMITTED,
            r.deadline_at.unwrap_or(i64::MAX),
            r.requested_at,
        )
    });
    Ok(Json(RequestList { requests }))
}

pub(crate) async fn get(
    State(state): State<AppState>,
    user: User,
    Path(id): Path<String>,
) -> ApiResult<Json<RequestRow>> {
    let r = state
        .store
        .request(&id)
        .await?
        .filter(|r| Requests::may_see(&user, r))
        .ok_or_else(|| ApiError::not_found("request"))?;
    Ok(Json(r))
}

pub(crate) async fn decide(
    State(state): State<AppState>,
    staff: Staff,
    Path(id): Path<String>,
    body: Result<Json<Decision>, axum::extract::rejection::JsonRejection>,
) -> ApiResult<Json<RequestRow>> {
    let Json(d) = body.map_err(|e| ApiError::bad(e.body_text()))?;
    let user = staff.0;
    let row = state
        .requests
        .decide(&user, &id, d.approve, &d.reason, crate::now_ms())
        .await?;
    Ok(Json(row))
}
