//! Opens and closes alerts as reasons appear and disappear at stations, and re-applies the
//! time-based rules every second (a silent station goes offline without any message arriving).
//!
//! Every replica evaluates every station; the database keeps at most one open alert per
//! station and kind (a partial unique index), so two replicas opening the same alert store it
//! once.

use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::fleet::{Fleet, Transition};
use crate::now_ms;
use crate::store::Store;

pub async fn run(
    store: Store,
    fleet: Fleet,
    mut rx: mpsc::UnboundedReceiver<Transition>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let transitions = tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(t) = rx.recv() => vec![t],
            _ = tick.tick() => fleet.tick(now_ms()),
        };
        for t in transitions {
            record(&store, &t).await;
        }
    }
    // Whatever is still queued.
    while let Ok(t) = rx.try_recv() {
        record(&store, &t).await;
    }
}

async fn record(store: &Store, t: &Transition) {
    for r in &t.closed {
        match store.close_alert(&t.station, &r.key(), t.at).await {
            Ok(true) => info!(station = %t.station, alert = %r.key(), "alert closed"),
            Ok(false) => {}
            Err(e) => {
                warn!(station = %t.station, alert = %r.key(), error = %e, "cannot close alert")
            }
        }
    }
    for r in &t.opened {
        match store
            .open_alert(&t.station, &r.key(), &r.detail, t.at)
            .await
        {
            Ok(true) => {
                info!(station = %t.station, alert = %r.key(), detail = %r.detail, "alert opened")
            }
            Ok(false) => {}
            Err(e) => {
                warn!(station = %t.station, alert = %r.key(), error = %e, "cannot open alert")
            }
        }
    }
}
