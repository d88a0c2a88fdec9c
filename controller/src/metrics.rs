//! Counters and delay figures of the ingest path, served at `/api/metrics` (what the scale
//! benchmark and operators read to see whether ingest keeps up).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use parking_lot::Mutex;
use serde::Serialize;

/// How many recent delay samples percentiles are computed over.
const SAMPLES: usize = 1 << 16;

/// What the write queue did not admit (`ingest::queue`), counted by kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    HealthHistory,
    Snapshot,
    Head,
}

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
    snapshots_dropped: AtomicU64,
    heads_dropped: AtomicU64,
    /// Since when database writes fail (Unix ms), 0 while they succeed.
    db_failing_since: std::sync::atomic::AtomicI64,
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

/// What `/metrics` reports besides the ingest counters.
#[derive(Debug, Default)]
pub struct Gauges {
    pub online: usize,
    pub degraded: usize,
    pub offline: usize,
    pub unknown: usize,
    pub alerts_open: usize,
    pub write_backlog: usize,
    pub write_queue_bytes: u64,
    pub sse_clients: usize,
    pub http_connections: usize,
    pub login_failures: u64,
    pub hashing: usize,
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
        self.db_failing_since.store(0, Relaxed);
        self.written.fetch_add(writes as u64, Relaxed);
        push(&self.batch_ms, ms);
    }
    pub fn write_error(&self) {
        self.write_errors.fetch_add(1, Relaxed);
        let _ = self
            .db_failing_since
            .compare_exchange(0, crate::now_ms().max(1), Relaxed, Relaxed);
    }
    /// Since when database writes fail (the controller-level alarm), if they do.
    pub fn db_failing_since(&self) -> Option<i64> {
        Some(self.db_failing_since.load(Relaxed)).filter(|t| *t != 0)
    }
    /// A write the full queue did not admit (see `ingest::queue`).
    pub fn dropped(&self, what: Dropped) {
        match what {
            Dropped::HealthHistory => &self.health_write_dropped,
            Dropped::Snapshot => &self.snapshots_dropped,
            Dropped::Head => &self.heads_dropped,
        }
        .fetch_add(1, Relaxed);
    }

    /// The Prometheus text exposition format (version 0.0.4) of these figures and the gauges
    /// given. Counters end in `_total`.
    pub fn prometheus(&self, g: &Gauges) -> String {
        use std::fmt::Write as _;
        let mut o = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
            let _ = writeln!(o, "# HELP {name} {help}");
            let _ = writeln!(o, "# TYPE {name} {kind}");
            for (labels, v) in samples {
                if labels.is_empty() {
                    let _ = writeln!(o, "{name} {v}");
                } else {
                    let _ = writeln!(o, "{name}{{{labels}}} {v}");
                }
            }
        };
        let c = |a: &AtomicU64| a.load(Relaxed) as f64;
        metric(
            "stationwatch_stations",
            "gauge",
            "Stations by state.",
            &[
                ("state=\"online\"", g.online as f64),
                ("state=\"degraded\"", g.degraded as f64),
                ("state=\"offline\"", g.offline as f64),
                ("state=\"unknown\"", g.unknown as f64),
            ],
        );
        metric(
            "stationwatch_db_failing",
            "gauge",
            "1 while database writes fail (the controller-level alarm), else 0.",
            &[("", f64::from(u8::from(self.db_failing_since().is_some())))],
        );
        metric(
            "stationwatch_alerts_open",
            "gauge",
            "Alerts open now.",
            &[("", g.alerts_open as f64)],
        );
        metric(
            "stationwatch_messages_received_total",
            "counter",
            "MQTT messages ingested, by kind.",
            &[
                ("kind=\"status\"", c(&self.status)),
                ("kind=\"health\"", c(&self.health)),
                ("kind=\"events\"", c(&self.events)),
                ("kind=\"acks\"", c(&self.acks)),
                ("kind=\"snapshots\"", c(&self.snapshots)),
                ("kind=\"rejected\"", c(&self.rejected)),
            ],
        );
        metric(
            "stationwatch_db_writes_total",
            "counter",
            "Rows written by the database writer.",
            &[("", c(&self.written))],
        );
        metric(
            "stationwatch_db_write_errors_total",
            "counter",
            "Failed database write batches (each is retried).",
            &[("", c(&self.write_errors))],
        );
        metric(
            "stationwatch_write_backlog",
            "gauge",
            "Writes waiting for the database.",
            &[("", g.write_backlog as f64)],
        );
        metric(
            "stationwatch_write_queue_bytes",
            "gauge",
            "Bytes of writes waiting for the database (bounded by [database] write_queue_bytes).",
            &[("", g.write_queue_bytes as f64)],
        );
        metric(
            "stationwatch_dropped_total",
            "counter",
            "What ingest dropped because the write queue was full, by kind.",
            &[
                ("kind=\"health_history\"", c(&self.health_write_dropped)),
                ("kind=\"snapshot\"", c(&self.snapshots_dropped)),
                ("kind=\"witnessed_head\"", c(&self.heads_dropped)),
            ],
        );
        metric(
            "stationwatch_sse_clients",
            "gauge",
            "Open event streams (/api/stream).",
            &[("", g.sse_clients as f64)],
        );
        metric(
            "stationwatch_http_connections",
            "gauge",
            "Open HTTP connections.",
            &[("", g.http_connections as f64)],
        );
        metric(
            "stationwatch_login_failures_total",
            "counter",
            "Failed logins (wrong password or name) and throttled attempts.",
            &[("", g.login_failures as f64)],
        );
        metric(
            "stationwatch_password_hashes_running",
            "gauge",
            "Password hashes being computed now.",
            &[("", g.hashing as f64)],
        );
        let p = percentiles(&self.health_delay);
        metric(
            "stationwatch_health_delay_ms",
            "gauge",
            "Report time to visible in the fleet, over recent reports (ms).",
            &[
                ("quantile=\"0.5\"", p.p50.unwrap_or(0) as f64),
                ("quantile=\"0.99\"", p.p99.unwrap_or(0) as f64),
            ],
        );
        o
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
