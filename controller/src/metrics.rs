//! Counters and delay figures of the ingest path, served at `/api/metrics` (what the scale
//! benchmark and operators read to see whether ingest keeps up).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use serde::Serialize;

/// How many recent delay samples percentiles are computed over.
const SAMPLES: usize = 1 << 16;

#[derive(Default)]
pub struct Metrics {
    status: AtomicU64,
    health: AtomicU64,
    events: AtomicU64,
    acks: AtomicU64,
    snapshots: AtomicU64,
    rejected: AtomicU64,
    written: AtomicU64,
    write_errors: AtomicU64,
    health_write_dropped: AtomicU64,
    /// Report time (agent clock) to visible in the fleet, ms.
    health_delay: Mutex<VecDeque<i64>>,
    /// Duration of database write batches, ms.
    batch_ms: Mutex<VecDeque<i64>>,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct Percentiles {
    pub count: usize,
    pub p50: Option<i64>,
    pub p99: Option<i64>,
    pub max: Option<i64>,
}

#[derive(Debug, Serialize)]
pub struct MetricsReport {
    pub messages: MessageCounts,
    /// From the `at` in a health report to the report being visible in the API (ms; includes
    /// any clock difference between agent and controller).
    pub health_delay_ms: Percentiles,
    pub write_batch_ms: Percentiles,
    /// Writes waiting for the database: a number that keeps growing means ingest falls behind.
    pub write_backlog: usize,
    pub written: u64,
    pub write_errors: u64,
    /// Health reports whose history point was not stored because the write queue was full.
    pub health_writes_dropped: u64,
    pub stations: usize,
}

#[derive(Debug, Serialize)]
pub struct MessageCounts {
    pub status: u64,
    pub health: u64,
    pub events: u64,
    pub acks: u64,
    pub snapshots: u64,
    pub rejected: u64,
}

fn push(q: &Mutex<VecDeque<i64>>, v: i64) {
    let mut q = q.lock();
    if q.len() == SAMPLES {
        q.pop_front();
    }
    q.push_back(v);
}

fn percentiles(q: &Mutex<VecDeque<i64>>) -> Percentiles {
    let mut v: Vec<i64> = q.lock().iter().copied().collect();
    v.sort_unstable();
    let at = |p: f64| {
        (!v.is_empty()).then(|| v[((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1])
    };
    Percentiles {
        count: v.len(),
        p50: at(0.50),
        p99: at(0.99),
        max: v.last().copied(),
    }
}

impl Metrics {
    pub fn status(&self) {
        self.status.fetch_add(1, Relaxed);
    }
    pub fn health(&self, delay_ms: i64) {
        self.health.fetch_add(1, Relaxed);
        push(&self.health_delay, delay_ms);
    }
    pub fn event(&self) {
        self.events.fetch_add(1, Relaxed);
    }
    pub fn ack(&self) {
        self.acks.fetch_add(1, Relaxed);
    }
    pub fn snapshot(&self) {
        self.snapshots.fetch_add(1, Relaxed);
    }
    pub fn rejected(&self) {
        self.rejected.fetch_add(1, Relaxed);
    }
    pub fn batch(&self, writes: usize, ms: i64) {
        self.written.fetch_add(writes as u64, Relaxed);
        push(&self.batch_ms, ms);
    }
    pub fn health_write_dropped(&self) {
        self.health_write_dropped.fetch_add(1, Relaxed);
    }
    pub fn write_error(&self) {
        self.write_errors.fetch_add(1, Relaxed);
    }

    pub fn report(&self, write_backlog: usize, stations: usize) -> MetricsReport {
        MetricsReport {
            messages: MessageCounts {
                status: self.status.load(Relaxed),
                health: self.health.load(Relaxed),
                events: self.events.load(Relaxed),
                acks: self.acks.load(Relaxed),
                snapshots: self.snapshots.load(Relaxed),
                rejected: self.rejected.load(Relaxed),
            },
            health_delay_ms: percentiles(&self.health_delay),
            write_batch_ms: percentiles(&self.batch_ms),
            write_backlog,
            written: self.written.load(Relaxed),
            write_errors: self.write_errors.load(Relaxed),
            health_writes_dropped: self.health_write_dropped.load(Relaxed),
            stations,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_samples() {
        let m = Metrics::default();
        for d in 1..=100 {
            m.health(d);
        }
        let r = m.report(0, 0);
        assert_eq!(
            r.health_delay_ms,
            Percentiles {
                count: 100,
                p50: Some(50),
                p99: Some(99),
                max: Some(100)
            }
        );
        assert_eq!(r.messages.health, 100);
    }
}
