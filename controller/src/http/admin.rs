//! `/api/metrics` (admins and operators) and `/api/audit` (admins).

use axum::extract::{Query, State};
use axum::Json;
use serde::Serialize;

use super::error::ApiResult;
use super::extract::{Admin, Staff, WindowQuery};
use super::AppState;
use crate::metrics::MetricsReport;
use crate::store::AuditRow;

#[derive(Debug, Serialize)]
pub(crate) struct AuditLog {
    pub entries: Vec<AuditRow>,
}

pub(crate) async fn metrics(State(state): State<AppState>, _: Staff) -> Json<MetricsReport> {
    let backlog = state.writes.max_capacity() - state.writes.capacity();
    Json(state.metrics.report(backlog, state.fleet.len()))
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<AuditLog>> {
    let entries = state.store.audit_log(q.limit(200, 5000)).await?;
    Ok(Json(AuditLog { entries }))
}
