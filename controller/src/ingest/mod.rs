//! The controller's MQTT link: subscribes to every station, turns what arrives into fleet
//! updates and database writes, and hands each new connection to the commands `Publisher`
//! (`commands.rs`), through which operators' commands go out.
//!
//! Like the agent, it builds a fresh rumqttc client for every connection attempt (a rumqttc
//! event loop that errored keeps pending state we do not want to reason about) and must poll
//! the event loop continuously: nothing slow happens in this loop and nothing in it waits for
//! the database. Writes go to the writer task through a queue bounded in bytes (`queue.rs`);
//! QoS 1 messages are acknowledged to the broker only once their write is committed (manual
//! acks), so the broker, not this process, holds what the database cannot take yet, and a
//! replica killed before a commit loses nothing.

mod figures;
pub mod queue;
pub mod writer;

use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions};
use stationwatch_protocol::broker_config::TlsReadError;
use stationwatch_protocol::mqtt::{
    controller_subscriptions, decode_ack, decode_event, decode_health, decode_status, parse_topic,
    unmount, DecodeError, EventKind, TopicKind, MAX_SNAPSHOT_BYTES,
};
use stationwatch_runtime::mqtt::qos;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::commands::{self, Publisher};
use crate::config::MqttConfig;
use crate::fleet::{rules, Fleet, Transition};
use crate::metrics::Metrics;
use crate::now_ms;
use crate::store::{EventRow, Write};

#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Tls(#[from] TlsReadError),
}

/// Where ingested messages go.
#[derive(Clone)]
pub struct IngestContext {
    pub fleet: Fleet,
    pub writes: queue::Writes,
    pub transitions: mpsc::UnboundedSender<Transition>,
    pub metrics: Arc<Metrics>,
    pub publisher: Publisher,
}

fn options(cfg: &MqttConfig) -> Result<MqttOptions, IngestError> {
    let mut o = stationwatch_runtime::mqtt::options(&cfg.broker, &cfg.client_id)?;
    o.set_keep_alive(cfg.keepalive);
    // A persistent session: QoS 1 events and acks published while this replica was away wait
    // at the broker (for the shared group) instead of being lost.
    o.set_clean_session(false);
    o.set_max_packet_size(MAX_SNAPSHOT_BYTES + 64 * 1024, 256 * 1024);
    o.set_inflight(100);
    // Acknowledged by the writer after the commit (`queue.rs`).
    o.set_manual_acks(true);
    Ok(o)
}

/// Runs the link until `shutdown`, reconnecting with backoff.
pub async fn run(
    cfg: MqttConfig,
    ctx: IngestContext,
    shutdown: CancellationToken,
) -> Result<(), IngestError> {
    let mut delay = Duration::from_millis(250);
    loop {
        let (client, mut eventloop) = AsyncClient::new(options(&cfg)?, 4096);
        let mut connected = false;
        let stop = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break true,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        info!(host = %cfg.broker.host, port = cfg.broker.port, client_id = %cfg.client_id, "connected to the broker");
                        connected = true;
                        delay = Duration::from_millis(250);
                        for s in controller_subscriptions(cfg.shared_group.as_deref(), &cfg.mount_point) {
                            if let Err(e) = client.try_subscribe(s.filter.clone(), qos(s.qos)) {
                                warn!(filter = %s.filter, error = %e, "cannot subscribe");
                            }
                        }
                        ctx.publisher.set(Some((client.clone(), cfg.mount_point.clone())));
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        let ack = queue::AckToken::of(&client, &p);
                        match unmount(&p.topic, &cfg.mount_point) {
                            Some(topic) => handle(&ctx, topic, &p.payload, ack),
                            None => {
                                ctx.metrics.rejected();
                                debug!(topic = %p.topic, "message outside the station mount point ignored");
                                let _ = ctx.writes.push(None, ack);
                            }
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if connected {
                            warn!(error = %e, "broker connection lost");
                        } else {
                            debug!(error = %e, "cannot connect to the broker");
                        }
                        break false;
                    }
                },
            }
        };
        ctx.publisher.set(None);
        if stop {
            // Let the writer store and acknowledge what it holds (else the broker delivers it
            // again to the next replica or start: harmless, writes are idempotent, but slower).
            let drained = async {
                while ctx.writes.backlog() > 0 {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            };
            let polling = async {
                while eventloop.poll().await.is_ok() {}
                std::future::pending::<()>().await
            };
            tokio::select! {
                _ = drained => {}
                _ = polling => {}
                _ = tokio::time::sleep(Duration::from_secs(3)) => {}
            }
            let _ = client.try_disconnect();
            // Let the DISCONNECT go out.
            let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
            return Ok(());
        }
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay.mul_f64(jitter)) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(10));
    }
}

/// One message from a station. Nothing here may panic or wait: a payload that does not decode
/// is counted and logged, and the message is dropped; `ack` (a QoS 1 message's) goes through
/// the write queue in every case, so acknowledgements keep the order of the messages.
pub fn handle(ctx: &IngestContext, topic: &str, payload: &[u8], ack: Option<queue::AckToken>) {
    let write = decide(ctx, topic, payload);
    let admitted = ctx.writes.push(write, ack);
    if let Err(d) = admitted {
        ctx.metrics.dropped(d);
        if d != queue::Dropped::HealthHistory {
            warn!(%topic, dropped = ?d, queued_bytes = ctx.writes.bytes(), "write queue full; write dropped");
        }
    }
}

/// The fleet update a message makes (done here) and the write it asks for.
fn decide(ctx: &IngestContext, topic: &str, payload: &[u8]) -> Option<Write> {
    let now = now_ms();
    let Some((station, kind)) = parse_topic(topic) else {
        ctx.metrics.rejected();
        debug!(%topic, "message on an unknown topic ignored");
        return None;
    };
    let id = station.as_str();
    let reject = |e: &DecodeError| {
        ctx.metrics.rejected();
        warn!(station = id, %topic, error = %e, "malformed message from a station ignored");
    };
    let mut write = None;
    match kind {
        TopicKind::Status => match decode_status(payload) {
            Ok(status) => {
                ctx.metrics.status();
                let json = String::from_utf8_lossy(payload).into_owned();
                if let Some(t) = ctx.fleet.apply_status(&station, status, now, now) {
                    let _ = ctx.transitions.send(t);
                }
                write = Some(Write::Status {
                    station: station.clone(),
                    json,
                    received_at: now,
                });
            }
            Err(DecodeError::Empty) => {}
            Err(e) => reject(&e),
        },
        TopicKind::Health => match decode_health(payload) {
            Ok(h) => {
                // The agent's `at` only where it is within the allowed skew of our clock.
                let at = rules::bounded_at(&h, now, ctx.fleet.rules());
                ctx.metrics.health(now - at);
                let figures = figures::figures(&h).to_string();
                let out = ctx.fleet.apply_health(&station, Arc::new(h), now, now);
                if let Some(t) = out.transition {
                    let _ = ctx.transitions.send(t);
                }
                // Witnessed heads (a camera's head changes about twice a minute, not with every
                // report) may use the whole queue.
                for head in out.heads {
                    if let Err(d) = ctx.writes.push(Some(Write::Head(head)), None) {
                        ctx.metrics.dropped(d);
                        warn!(
                            station = id,
                            queued_bytes = ctx.writes.bytes(),
                            "write queue full; witnessed head not stored"
                        );
                    }
                }
                if out.refused {
                    ctx.metrics.rejected();
                    warn!(station = id, "health report under a key other than the registered one refused (key_mismatch)");
                    return None;
                }
                write = Some(Write::Health {
                    station: station.clone(),
                    json: String::from_utf8_lossy(payload).into_owned(),
                    at,
                    received_at: now,
                    figures,
                });
            }
            Err(DecodeError::Empty) => {}
            Err(e) => reject(&e),
        },
        TopicKind::Events => match decode_event(payload) {
            Ok(ev) => {
                ctx.metrics.event();
                let camera = match &ev.kind {
                    EventKind::CameraLost { camera, .. }
                    | EventKind::CameraBack { camera, .. }
                    | EventKind::GapRecorded { camera, .. } => Some(camera.clone()),
                    _ => None,
                };
                let body = serde_json::from_slice(payload).unwrap_or(serde_json::Value::Null);
                write = Some(Write::Event(EventRow {
                    station_id: station.clone(),
                    event_id: ev.id.as_str().to_owned(),
                    at: ev.at.unix_ms(),
                    received_at: now,
                    kind: ev.kind.name().to_owned(),
                    camera,
                    body,
                }));
            }
            Err(e) => reject(&e),
        },
        TopicKind::Ack => match decode_ack(payload) {
            Ok(ack) => {
                ctx.metrics.ack();
                write = commands::ack(&station, &ack, payload, now);
                if write.is_none() {
                    debug!(
                        station = id,
                        "ack without a command id (a rejected payload)"
                    );
                }
            }
            Err(e) => reject(&e),
        },
        TopicKind::Snapshot(camera) => {
            if payload.len() > MAX_SNAPSHOT_BYTES || !payload.starts_with(&[0xFF, 0xD8]) {
                ctx.metrics.rejected();
                warn!(station = id, camera = %camera, bytes = payload.len(), "snapshot is not a JPEG within the size limit; ignored");
            } else if !ctx.fleet.reports_camera(&station, &camera) {
                ctx.metrics.rejected();
                warn!(station = id, camera = %camera, "snapshot of a camera the station does not report; ignored");
            } else {
                ctx.metrics.snapshot();
                write = Some(Write::Snapshot {
                    station: station.clone(),
                    camera: camera.clone(),
                    received_at: now,
                    jpeg: payload.to_vec(),
                });
            }
        }
        TopicKind::Command => {}
    }
    write
}
