//! Brings what other replicas wrote to the stations table into this replica's fleet.
//!
//! With shared subscriptions each health report reaches one replica of the group; every replica
//! writes the latest state it received to the database, and every replica reads back what
//! changed every second. Rows this replica wrote itself are recognised by their receive times
//! and skipped without parsing. At start the whole table is loaded (brokers do not send retained
//! messages to shared subscriptions, so without it a restarted controller would know nothing
//! until each station's next report).

use std::sync::Arc;
use std::time::Duration;

use stationwatch_protocol::mqtt::{decode_health, decode_status};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::fleet::Fleet;
use crate::now_ms;
use crate::store::{StationRow, Store};

/// Rows changed this long before the previous read are read again (writes of other replicas
/// commit in batches, not in the order of their `updated_at`; a batch takes well under a
/// second). Each re-read costs only ids and times for rows this replica already has.
const OVERLAP_MS: i64 = 3_000;

/// Applies rows to the fleet.
pub fn apply(fleet: &Fleet, rows: Vec<StationRow>, now: i64) {
    for r in rows {
        let id = &r.id;
        if let (Some(json), Some(at)) = (&r.status_json, r.status_received_at) {
            if let Ok(s) = decode_status(json.as_bytes()) {
                fleet.apply_status(id, s, at, now);
            }
        }
        if let (Some(json), Some(at)) = (&r.health_json, r.health_received_at) {
            if let Ok(h) = decode_health(json.as_bytes()) {
                // Heads in a stored report were stored by the replica that received it.
                let _ = fleet.apply_health(id, Arc::new(h), at, now);
            }
        }
    }
}

/// Polls for changes until `shutdown` (the whole table was loaded at start, up to `since`).
pub async fn run(store: Store, fleet: Fleet, shutdown: CancellationToken, mut since: i64) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut heads_since = since;
    let mut n: u64 = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = poll(&store, &fleet, &mut since).await {
            warn!(error = %e, "cannot read station states from the database");
        }
        n += 1;
        if n.is_multiple_of(HEADS_EVERY) {
            if let Err(e) = poll_heads(&store, &fleet, &mut heads_since).await {
                warn!(error = %e, "cannot read witnessed heads from the database");
            }
        }
    }
}

/// Heads other replicas stored are read back every this many seconds: a camera's head changes
/// about once a minute and a station reports every 15 s, so 5 s is soon enough, and with the
/// overlap each row is read ~1.6 times instead of 4 (every second).
const HEADS_EVERY: u64 = 5;

/// Raises the fleet's witnessed maxima to the heads stored since the last poll (any replica).
async fn poll_heads(store: &Store, fleet: &Fleet, since: &mut i64) -> crate::store::Result<()> {
    let now = now_ms();
    for h in store.heads_received_since(*since - OVERLAP_MS).await? {
        *since = (*since).max(h.received_at);
        fleet.head_stored(&h, now);
    }
    Ok(())
}

async fn poll(store: &Store, fleet: &Fleet, since: &mut i64) -> crate::store::Result<()> {
    // Keys other replicas registered (indexed by time; almost always no row).
    let now = now_ms();
    fleet.apply_key_rows(store.keys_changed_since(*since - OVERLAP_MS).await?, now);
    let versions = store.station_versions_since(*since - OVERLAP_MS).await?;
    let mut stale = Vec::new();
    for v in versions {
        *since = (*since).max(v.updated_at);
        if !fleet.has(&v.id, v.status_received_at, v.health_received_at) {
            stale.push(v.id);
        }
    }
    if !stale.is_empty() {
        apply(fleet, store.stations(Some(&stale)).await?, now_ms());
    }
    Ok(())
}
