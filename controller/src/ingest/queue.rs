//! The queue between ingest and the database writer, bounded in bytes, and the MQTT
//! acknowledgements that wait for the database.
//!
//! Ingest never waits for room: the MQTT loop must keep polling (keepalives, the fleet in
//! memory stays current). What is queued depends on what a message is:
//! - a QoS 1 message (status, event, ack, snapshot) is acknowledged to the broker only after
//!   the transaction holding its write has committed ([`AckToken`], rumqttc manual acks). The
//!   broker sends a subscriber at most its inflight window of unacknowledged QoS 1 messages and
//!   keeps the rest in the replica's persistent session, so while the database fails these wait
//!   at the broker, not here, and a replica killed before the commit loses nothing (the broker
//!   redelivers). Status, events and acks are therefore always admitted.
//! - health history points (QoS 0, the fleet already holds the report) are admitted while the
//!   queue holds less than 3/4 of its byte budget, snapshots while it holds less than half,
//!   witnessed heads up to the whole budget; beyond, they are dropped and counted.
//!
//! Items leave the queue in order, so acknowledgements go out in the order the messages came
//! (as MQTT asks).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Publish};
use tokio::sync::mpsc;
use tracing::debug;

use crate::store::Write;

/// What the writer must do to acknowledge one QoS 1 message once its write is stored.
pub struct AckToken {
    client: AsyncClient,
    /// The message without its payload (an ack needs the QoS and packet id only).
    publish: Publish,
}

impl AckToken {
    /// The token of a received message, or `None` for QoS 0 (nothing to acknowledge).
    pub fn of(client: &AsyncClient, p: &Publish) -> Option<AckToken> {
        if p.qos == rumqttc::QoS::AtMostOnce {
            return None;
        }
        let mut publish = Publish::new(String::new(), p.qos, Vec::<u8>::new());
        publish.pkid = p.pkid;
        Some(AckToken {
            client: client.clone(),
            publish,
        })
    }

    /// Sends the acknowledgement. A client whose connection is gone refuses it; the broker
    /// then delivers the message again on the next connection (writes are idempotent).
    pub async fn send(self) {
        if let Err(rumqttc::ClientError::TryRequest(_)) = self.client.try_ack(&self.publish) {
            // The request channel is full: wait a little for room, not forever.
            let ack = self.client.ack(&self.publish);
            if tokio::time::timeout(Duration::from_secs(1), ack)
                .await
                .is_err()
            {
                debug!(
                    pkid = self.publish.pkid,
                    "acknowledgement not sent; the broker will redeliver"
                );
            }
        }
    }
}

/// One item of the queue: a write, its acknowledgement, or both.
pub struct Queued {
    pub write: Option<Write>,
    pub ack: Option<AckToken>,
    bytes: u64,
}

pub use crate::metrics::Dropped;

/// The sending side (ingest, cloned freely).
#[derive(Clone)]
pub struct Writes {
    tx: mpsc::UnboundedSender<Queued>,
    shared: Arc<Shared>,
}

/// The receiving side (the writer).
pub struct WriteReceiver {
    rx: mpsc::UnboundedReceiver<Queued>,
    shared: Arc<Shared>,
}

struct Shared {
    budget: u64,
    bytes: AtomicU64,
    items: AtomicU64,
}

/// A queue holding at most about `budget` bytes of droppable writes.
pub fn channel(budget: u64) -> (Writes, WriteReceiver) {
    let (tx, rx) = mpsc::unbounded_channel();
    let shared = Arc::new(Shared {
        budget,
        bytes: AtomicU64::new(0),
        items: AtomicU64::new(0),
    });
    (
        Writes {
            tx,
            shared: shared.clone(),
        },
        WriteReceiver { rx, shared },
    )
}

/// Approximate memory a write holds while queued.
pub fn size(w: &Write) -> u64 {
    const FIXED: usize = 96;
    (FIXED
        + match w {
            Write::Status { json, .. } => json.len(),
            Write::Health { json, figures, .. } => json.len() + figures.len(),
            Write::Event(e) => e.event_id.len() + e.kind.len() + e.body.to_string().len(),
            Write::Ack {
                json,
                command_id,
                status,
                ..
            } => json.len() + command_id.len() + status.len(),
            Write::Snapshot { jpeg, .. } => jpeg.len(),
            Write::Head(_) => 160,
        }) as u64
}

impl Writes {
    /// Queues a write and/or an acknowledgement. A droppable write that does not fit is not
    /// queued (its acknowledgement still is: dropping it was decided, not a failure).
    pub fn push(&self, write: Option<Write>, ack: Option<AckToken>) -> Result<(), Dropped> {
        let (write, refused) = match write {
            Some(w) => {
                let bytes = size(&w);
                let limit = match &w {
                    Write::Health { .. } => {
                        Some((self.shared.budget / 4 * 3, Dropped::HealthHistory))
                    }
                    Write::Snapshot { .. } => Some((self.shared.budget / 2, Dropped::Snapshot)),
                    Write::Head(_) => Some((self.shared.budget, Dropped::Head)),
                    Write::Status { .. } | Write::Event(_) | Write::Ack { .. } => None,
                };
                let admitted = match limit {
                    None => {
                        self.shared.bytes.fetch_add(bytes, Relaxed);
                        true
                    }
                    Some((limit, _)) => self
                        .shared
                        .bytes
                        .fetch_update(Relaxed, Relaxed, |q| {
                            (q + bytes <= limit).then_some(q + bytes)
                        })
                        .is_ok(),
                };
                if admitted {
                    (Some((w, bytes)), None)
                } else {
                    (None, limit.map(|(_, d)| d))
                }
            }
            None => (None, None),
        };
        if write.is_some() || ack.is_some() {
            let (write, bytes) = match write {
                Some((w, b)) => (Some(w), b),
                None => (None, 0),
            };
            self.shared.items.fetch_add(1, Relaxed);
            if let Err(e) = self.tx.send(Queued { write, ack, bytes }) {
                // The writer is gone (shutting down): nothing is stored, nothing acknowledged.
                self.shared.items.fetch_sub(1, Relaxed);
                self.shared.bytes.fetch_sub(e.0.bytes, Relaxed);
                debug!("writer stopped; message not stored");
            }
        }
        match refused {
            Some(d) => Err(d),
            None => Ok(()),
        }
    }

    /// Items waiting (writes and acknowledgements).
    pub fn backlog(&self) -> u64 {
        self.shared.items.load(Relaxed)
    }

    /// Bytes of writes waiting.
    pub fn bytes(&self) -> u64 {
        self.shared.bytes.load(Relaxed)
    }

    pub fn budget(&self) -> u64 {
        self.shared.budget
    }
}

impl WriteReceiver {
    /// Waits for items and appends up to `max` of them; 0 when every sender is gone and the
    /// queue is empty.
    pub async fn recv_many(&mut self, into: &mut Vec<Queued>, max: usize) -> usize {
        self.rx.recv_many(into, max).await
    }

    /// An item is done (stored and acknowledged, or given up).
    pub fn done(&self, q: &Queued) {
        self.shared.bytes.fetch_sub(q.bytes, Relaxed);
        self.shared.items.fetch_sub(1, Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::EventRow;
    use stationwatch_protocol::StationId;

    fn health(bytes: usize) -> Write {
        Write::Health {
            station: StationId::try_from("S-1".to_owned()).unwrap(),
            json: "x".repeat(bytes),
            at: 0,
            received_at: 0,
            figures: String::new(),
        }
    }

    fn event(n: usize) -> Write {
        Write::Event(EventRow {
            station_id: StationId::try_from("S-1".to_owned()).unwrap(),
            event_id: format!("e{n}"),
            at: 0,
            received_at: 0,
            kind: "agent_stopping".into(),
            camera: None,
            body: serde_json::Value::Null,
        })
    }

    #[tokio::test]
    async fn history_is_dropped_beyond_three_quarters_events_never_and_order_is_kept() {
        let (w, mut rx) = channel(10_000);
        let mut admitted = 0;
        let mut dropped = 0;
        for _ in 0..20 {
            match w.push(Some(health(904)), None) {
                Ok(()) => admitted += 1,
                Err(Dropped::HealthHistory) => dropped += 1,
                Err(d) => panic!("{d:?}"),
            }
        }
        // 1,000 bytes each against 7,500.
        assert_eq!((admitted, dropped), (7, 13));
        assert!(w.bytes() <= 7_500);
        // Events go in whatever the queue holds, and after the history, in order.
        for n in 0..50 {
            w.push(Some(event(n)), None).unwrap();
        }
        assert!(w.bytes() > 10_000);
        assert_eq!(w.backlog(), 57);
        let mut got = Vec::new();
        while got.len() < 57 {
            rx.recv_many(&mut got, 100).await;
        }
        let ids: Vec<String> = got
            .iter()
            .filter_map(|q| match &q.write {
                Some(Write::Event(e)) => Some(e.event_id.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(ids, (0..50).map(|n| format!("e{n}")).collect::<Vec<_>>());
        for q in &got {
            rx.done(q);
        }
        assert_eq!((w.bytes(), w.backlog()), (0, 0));
        // Room again once drained.
        w.push(Some(health(904)), None).unwrap();
    }
}
