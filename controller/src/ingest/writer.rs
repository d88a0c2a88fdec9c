//! Writes what ingest received to the database in batches (one transaction per batch), so
//! thousands of reports per second cost tens of transactions, not thousands, then sends the
//! MQTT acknowledgements of the messages the batch stored.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::warn;

use super::queue::{Queued, WriteReceiver};
use crate::metrics::Metrics;
use crate::store::{Store, Write};

/// Most items in one transaction.
const MAX_BATCH: usize = 2000;

/// Runs until every sender is gone and the queue is drained. A failed batch is retried (with
/// growing pauses) rather than dropped: nothing received is lost while the database is away,
/// and its QoS 1 messages stay unacknowledged (so the broker holds back the rest of them).
pub async fn run(store: Store, mut rx: WriteReceiver, metrics: Arc<Metrics>) {
    let mut batch: Vec<Queued> = Vec::with_capacity(MAX_BATCH);
    let mut writes: Vec<Write> = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        writes.extend(batch.iter_mut().filter_map(|q| q.write.take()));
        let mut pause = Duration::from_millis(100);
        while !writes.is_empty() {
            let t = Instant::now();
            match store.write_batch(&writes).await {
                Ok(()) => {
                    metrics.batch(writes.len(), t.elapsed().as_millis() as i64);
                    break;
                }
                Err(e) => {
                    metrics.write_error();
                    warn!(error = %e, writes = writes.len(), retry_in_ms = pause.as_millis() as u64, "database write failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        writes.clear();
        for mut q in batch.drain(..) {
            // Acknowledged before it counts as done: a stopping link waits for the backlog to
            // be empty, and its last acknowledgements must have gone out by then.
            if let Some(ack) = q.ack.take() {
                ack.send().await;
            }
            rx.done(&q);
        }
    }
}
