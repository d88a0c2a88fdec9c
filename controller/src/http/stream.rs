//! `GET /api/stream`: server-sent events for live dashboards.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use futures_util::stream::Stream;
use serde::Serialize;
use stationwatch_protocol::StationId;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::StreamExt;

use super::AppState;
use crate::auth::User;
use crate::fleet::{Counts, StationSummary};

/// One `stations` event.
#[derive(Debug, Serialize)]
pub(crate) struct StreamBatch<'a> {
    pub counts: Counts,
    pub stations: Vec<&'a StationSummary>,
}

/// Server-sent events: `stations` with the summaries of stations that changed (about once a
/// second) and the counts by state, both limited to what the user may see; `resync` when this
/// client fell so far behind that changes were dropped (it must re-read what it shows).
pub(crate) async fn stream(
    State(state): State<AppState>,
    user: User,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let fleet = state.fleet.clone();
    let user = Arc::new(user);
    let changes = BroadcastStream::new(state.changes.subscribe()).filter_map(move |batch| {
        let batch = match batch {
            Ok(b) => b,
            // This client fell behind and batches were dropped: tell it to re-read everything.
            Err(_) => return Some(Ok(SseEvent::default().event("resync").data("{}"))),
        };
        let visible = |id: &StationId| user.sees(id);
        let data = StreamBatch {
            counts: fleet.counts(&visible),
            stations: batch.iter().filter(|s| user.sees(&s.id)).collect(),
        };
        let json = serde_json::to_string(&data).unwrap_or_default();
        Some(Ok(SseEvent::default().event("stations").data(json)))
    });
    Sse::new(changes).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
}
