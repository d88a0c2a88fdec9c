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
    Json(
        state
            .metrics
            .report(state.writes.backlog() as usize, state.fleet.len()),
    )
}

/// `GET /metrics`: the Prometheus text format (for Prometheus and Grafana; scrape with an
/// operator's or admin's API token as bearer).
pub(crate) async fn prometheus(
    State(state): State<AppState>,
    _: Staff,
) -> ApiResult<axum::response::Response> {
    use axum::response::IntoResponse;
    let by_state = state.fleet.by_state();
    let g = crate::metrics::Gauges {
        online: by_state.online,
        degraded: by_state.degraded,
        offline: by_state.offline,
        unknown: by_state.unknown,
        // From the database; from the fleet's reasons while the database is away.
        alerts_open: match state.store.open_alerts().await {
            Ok(a) => a.len(),
            Err(_) => state.fleet.reasons_total(),
        },
        write_backlog: state.writes.backlog() as usize,
        write_queue_bytes: state.writes.bytes(),
        sse_clients: state.streams.total(),
        http_connections: state.connections.open(),
        login_failures: state.limiter.failures_total(),
        hashing: crate::auth::hashing_now(),
    };
    Ok((
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.prometheus(&g),
    )
        .into_response())
}

pub(crate) async fn audit(
    State(state): State<AppState>,
    _: Admin,
    Query(q): Query<WindowQuery>,
) -> ApiResult<Json<AuditLog>> {
    let entries = state.store.audit_log(q.limit(200, 5000)).await?;
    Ok(Json(AuditLog { entries }))
}
