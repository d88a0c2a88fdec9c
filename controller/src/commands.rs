//! Commands to stations: validated, stored, published over MQTT and audited here; the agent's
//! acknowledgement comes back through `ingest` ([`ack`] turns it into a database write that
//! updates the command's status).
//!
//! [`Publisher`] is the outgoing half of the MQTT link: `ingest` sets the current connection,
//! [`send`] publishes through it.

use std::sync::Arc;

use parking_lot::Mutex;
use rumqttc::AsyncClient;
use serde_json::Value;
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::mqtt::{Ack, Command, CommandEnvelope, MessageId, Topics};
use stationwatch_protocol::{CameraId, StationId};
use tracing::info;

use crate::audit::{self, Action};
use crate::auth::User;
use crate::fleet::Station;
use crate::store::{CommandRow, Store, StoreError, Write};

/// How long a command stays valid at the agent by default (`[mqtt] command_ttl_seconds`).
pub const COMMAND_TTL_MS: i64 = 5 * 60 * 1000;

/// Publishes commands through the current connection, if any.
#[derive(Clone)]
pub struct Publisher {
    /// The connection and the station listener's mount point (`MqttConfig::mount_point`).
    client: Arc<Mutex<Option<(AsyncClient, String)>>>,
    /// How long a command stays valid (its envelope's `expires_at`).
    ttl_ms: i64,
}

impl Default for Publisher {
    fn default() -> Self {
        Publisher::new(COMMAND_TTL_MS)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error("the controller is not connected to the broker")]
    NotConnected,
    #[error("the command could not be queued for the broker: {0}")]
    Client(String),
    #[error("the command could not be encoded: {0}")]
    Encode(#[from] serde_json::Error),
}

impl Publisher {
    pub fn new(ttl_ms: i64) -> Self {
        Publisher {
            client: Arc::default(),
            ttl_ms,
        }
    }

    /// How long a command stays valid at the agent, in ms.
    pub fn ttl_ms(&self) -> i64 {
        self.ttl_ms
    }

    /// Called by `ingest` when a connection comes up (`Some`) or goes down (`None`).
    pub(crate) fn set(&self, client: Option<(AsyncClient, String)>) {
        *self.client.lock() = client;
    }

    pub fn connected(&self) -> bool {
        self.client.lock().is_some()
    }

    /// Queues a command for the station (QoS 1, not retained).
    pub fn command(&self, topics: &Topics, cmd: &CommandEnvelope) -> Result<(), PublishError> {
        let payload = cmd.to_json()?;
        let guard = self.client.lock();
        let (client, mount_point) = guard.as_ref().ok_or(PublishError::NotConnected)?;
        let topic = format!("{mount_point}{}", topics.command());
        client
            .try_publish(topic, rumqttc::QoS::AtLeastOnce, false, payload)
            .map_err(|e| PublishError::Client(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error("your role may not do this")]
    Forbidden,
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Publish(#[from] PublishError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A command on its way: its id and status (`sent`).
#[derive(Debug, Clone, serde::Serialize)]
pub struct Sent {
    pub id: String,
    pub status: &'static str,
}

/// Checks that `user` may command and that the command fits the station's cameras, stores
/// it, publishes it and audits every outcome.
pub async fn send(
    store: &Store,
    publisher: &Publisher,
    user: &User,
    station: &Station,
    mut command: Command,
) -> Result<Sent, CommandError> {
    let now = crate::now_ms();
    // Who approved a view is who sent the command, whatever the body said.
    if let Command::SetView { by, .. } = &mut command {
        by.clone_from(&user.username);
    }
    let id: &StationId = &station.id;
    let kind = command.kind().name();
    let audit = |detail: String, ok: bool| async move {
        audit::record(
            store,
            now,
            &user.username,
            Action::Command,
            id.as_str(),
            &detail,
            ok,
        )
        .await
    };
    if !user.role.may_command() {
        audit(format!("{kind}: refused, role observer"), false).await?;
        return Err(CommandError::Forbidden);
    }
    let invalid = |e: &dyn std::fmt::Display| CommandError::Invalid(e.to_string());
    let issued = Timestamp::from_unix_ms(now).map_err(|e| invalid(&e))?;
    let msg_id = MessageId::new(format!("c{}", hex::encode(rand::random::<[u8; 8]>())))
        .map_err(|e| invalid(&e))?;
    let mut envelope = CommandEnvelope::new(msg_id.clone(), issued, command);
    let ttl = publisher.ttl_ms();
    envelope.expires_at = Some(issued.saturating_add_ms(ttl));
    // The agent checks again; checking here gives the operator the answer at once.
    let cameras: Vec<CameraId> = station
        .health
        .as_ref()
        .map(|h| h.cameras.keys().cloned().collect())
        .unwrap_or_default();
    if !cameras.is_empty() {
        if let Err(reason) = envelope.check(issued, ttl, &cameras) {
            audit(format!("{kind}: invalid: {reason}"), false).await?;
            return Err(invalid(&reason));
        }
    }
    let row = CommandRow {
        id: msg_id.as_str().to_owned(),
        station_id: id.clone(),
        kind: kind.to_owned(),
        body: serde_json::to_value(&envelope.command).unwrap_or(Value::Null),
        issued_by: user.username.clone(),
        issued_at: now,
        status: "sent".into(),
        expires_at: Some(now.saturating_add(ttl)),
        ack_at: None,
        ack: None,
    };
    store.insert_command(&row).await?;
    let detail = format!("{kind} {}", row.body);
    match publisher.command(&Topics::new(id), &envelope) {
        Ok(()) => {
            audit(detail, true).await?;
            info!(station = %id, command = %row.id, kind, user = %user.username, "command sent");
            Ok(Sent {
                id: row.id,
                status: "sent",
            })
        }
        Err(e) => {
            store.fail_command(&row.id, now, &e.to_string()).await?;
            audit(format!("{detail}: {e}"), false).await?;
            Err(e.into())
        }
    }
}

/// The write that records a station's acknowledgement of a command; `None` for an ack without
/// a command id (the agent's answer to a payload it could not read).
pub fn ack(station: &StationId, ack: &Ack, payload: &[u8], now: i64) -> Option<Write> {
    let cmd = ack.id.as_ref()?;
    let status = serde_json::to_value(ack.status)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    Some(Write::Ack {
        station: station.clone(),
        command_id: cmd.as_str().to_owned(),
        status,
        at: now,
        json: String::from_utf8_lossy(payload).into_owned(),
    })
}

/// Every few seconds, marks commands that were never acknowledged before their expiry as
/// `expired` (idempotent: any replica may run it).
pub async fn expire(store: Store, shutdown: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(std::time::Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.expire_commands(crate::now_ms()).await {
            Ok(n) if n > 0 => info!(commands = n, "unacknowledged commands expired"),
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "cannot expire commands"),
        }
    }
}
