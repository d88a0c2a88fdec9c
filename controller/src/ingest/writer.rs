//! Writes what ingest received to the database in batches (one transaction per batch), so
//! thousands of reports per second cost tens of transactions, not thousands.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::warn;

use crate::metrics::Metrics;
use crate::store::{Store, Write};

/// Most writes in one transaction.
const MAX_BATCH: usize = 2000;

/// Runs until every sender is gone and the channel is drained. A failed batch is retried
/// (with growing pauses) rather than dropped: nothing received is lost while the database is
/// away; ingest slows down instead (the channel is bounded).
pub async fn run(store: Store, mut rx: mpsc::Receiver<Write>, metrics: Arc<Metrics>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut pause = Duration::from_millis(100);
        loop {
            let t = Instant::now();
            match store.write_batch(&batch).await {
                Ok(()) => {
                    metrics.batch(batch.len(), t.elapsed().as_millis() as i64);
                    break;
                }
                Err(e) => {
                    metrics.write_error();
                    warn!(error = %e, writes = batch.len(), retry_in_ms = pause.as_millis() as u64, "database write failed; retrying");
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(Duration::from_secs(10));
                }
            }
        }
        for w in &batch {
            if let Write::Snapshot { jpeg, .. } = w {
                metrics.release_snapshot(jpeg.len() as u64);
            }
        }
        batch.clear();
    }
}
