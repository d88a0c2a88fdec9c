//! `GET /api/stream`: server-sent events for live dashboards.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use stationwatch_protocol::StationId;
use tokio::sync::broadcast;
use tracing::info;

use super::error::{ApiError, ApiResult};
use super::extract::authenticate;
use super::AppState;
use crate::auth::User;
use crate::fleet::{Counts, StationSummary};

/// One `stations` event.
#[derive(Debug, Serialize)]
pub(crate) struct StreamBatch<'a> {
    pub counts: Counts,
    pub stations: Vec<&'a StationSummary>,
}

/// How often an open stream re-checks its credentials (session or token, user, grants).
const RECHECK: Duration = Duration::from_secs(5);

/// Server-sent events: `stations` with the summaries of stations that changed (about once a
/// second) and the counts by state, both limited to what the user may see; `request` with the
/// id and status of a request for recordings the user may see whenever it changes; `resync` when this
/// client fell so far behind that changes were dropped (it must re-read what it shows).
///
/// At most `[http] max_streams_per_user` streams per user (`429` beyond). Every few seconds
/// the stream resolves its session or token again and ends (the dashboard reconnects, or
/// goes to the login page) when it no longer resolves to the same user with the same role
/// and grants: user deleted, grants changed, logged out, session expired, token revoked.
pub(crate) async fn stream(
    State(state): State<AppState>,
    user: User,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let Some(slot) = state.streams.take(user.id, state.http.max_streams_per_user) else {
        return Err(ApiError(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "at most {} event streams per user",
                state.http.max_streams_per_user
            ),
        ));
    };
    let changes = state.changes.subscribe();
    let requests = state.requests.changed.subscribe();
    let mut tick = tokio::time::interval(RECHECK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let seed = (
        state,
        headers,
        Arc::new(user),
        changes,
        tick,
        slot,
        requests,
    );
    let events = futures_util::stream::unfold(
        seed,
        |(state, headers, user, mut rx, mut tick, slot, mut req_rx)| async move {
            loop {
                tokio::select! {
                    changed = req_rx.recv() => {
                        let ev = match changed {
                            // Only requests this user may see, and only their id and status:
                            // the page reads the rest with its own rights.
                            Ok(r) if crate::requests::Requests::may_see(&user, &r) => {
                                let json = serde_json::json!({"id": r.id, "status": r.status, "station": r.station_id});
                                SseEvent::default().event("request").data(json.to_string())
                            }
                            Ok(_) => continue,
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                SseEvent::default().event("resync").data("{}")
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        };
                        return Some((Ok::<_, Infallible>(ev), (state, headers, user, rx, tick, slot, req_rx)));
                    }
                    batch = rx.recv() => {
                        let ev = match batch {
                            Ok(batch) => {
                                let visible = |id: &StationId| user.sees(id);
                                let data = StreamBatch {
                                    counts: state.fleet.counts(&visible),
                                    stations: batch.iter().filter(|s| user.sees(&s.id)).collect(),
                                };
                                let json = serde_json::to_string(&data).unwrap_or_default();
                                SseEvent::default().event("stations").data(json)
                            }
                            // This client fell behind and batches were dropped: re-read everything.
                            Err(broadcast::error::RecvError::Lagged(_)) => {
                                SseEvent::default().event("resync").data("{}")
                            }
                            Err(broadcast::error::RecvError::Closed) => return None,
                        };
                        return Some((Ok::<_, Infallible>(ev), (state, headers, user, rx, tick, slot, req_rx)));
                    }
                    _ = tick.tick() => {
                        match authenticate(&state, &headers).await {
                            Ok(Some(now)) if same_rights(&now, &user) => {}
                            Ok(_) => {
                                info!(username = %user.username, "event stream closed: session, user or grants changed");
                                return None;
                            }
                            // The database is away: keep streaming, check again later.
                            Err(_) => {}
                        }
                    }
                }
            }
        },
    );
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

/// Whether two resolutions of a credential give the same rights.
fn same_rights(a: &User, b: &User) -> bool {
    a.id == b.id && a.role == b.role && a.grants == b.grants
}
