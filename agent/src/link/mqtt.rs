//! The agent's MQTT link to the controller: retained status with a last will, periodic health,
//! events and command acknowledgements that must arrive, and remote commands.
//!
//! * Every connection attempt uses a fresh rumqttc client and event loop, so no hidden pending
//!   state survives a disconnect; the **outbox** (on disk) is the only record of what must
//!   still be delivered, and after each connect it is sent again in order (QoS 1, at least
//!   once; events and acks carry ids for de-duplication). A message leaves the outbox only when
//!   the broker acknowledges it.
//! * rumqttc does not back off by itself: between attempts we sleep with exponential backoff
//!   and jitter (`backoff.rs`), still draining events into the outbox meanwhile.
//! * Nothing here can reach the recording: it only reads counters and states, and sends
//!   notifications (restart) that the camera supervisor handles like any other loss.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, Outgoing};
use stationwatch_protocol::broker_config::TlsReadError;
use stationwatch_protocol::manifest::{Hash256, Timestamp};
use stationwatch_protocol::mqtt::{
    Ack, CancelUploadResult, ClearHoldResult, Command, CommandEnvelope, CommandLog, EventKind,
    Handling, MessageId, PingResult, QoS, RestartCameraResult, SetHoldResult, SetLiveResult,
    SetLiveSetting, SetUploadResult, SetViewResult, SnapshotResult, Status, TopicKind, Topics,
    UploadResult, MAX_SNAPSHOT_BYTES,
};
use stationwatch_protocol::{CameraId, StationId};
use stationwatch_runtime::mqtt::qos;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::backoff::Backoff;
use crate::camera::snapshot::{jpeg_from_keyframe, Jpeg, SnapshotError};
use crate::config::{LegalHold, LiveSetting, MqttConfig};
use crate::link::health::HealthCollector;
use crate::link::outbox::{OutMessage, Outbox};
use crate::live::overrides::LiveOverrides;
use crate::live::LiveStatus;
use crate::retention::holds::HoldStore;
use crate::state::CameraCounters;
use crate::upload::UploadControl;

/// Outbox messages in flight at once on a connection.
const WINDOW: usize = 32;
/// How long a clean stop waits for the last messages to be acknowledged.
const FLUSH_ON_STOP: Duration = Duration::from_secs(3);
/// How often camera, clock and disk changes are checked for events.
const EVENT_POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    #[error(transparent)]
    Tls(#[from] TlsReadError),
    #[error("outbox {path}: {source}")]
    Outbox {
        path: String,
        source: std::io::Error,
    },
}

/// What a camera offers to remote commands.
pub struct CameraControl {
    pub id: CameraId,
    pub counters: Arc<CameraCounters>,
    pub restart: Arc<tokio::sync::Notify>,
    /// The camera's live branch, when it has a live target.
    pub live: Option<LiveControl>,
    /// The camera's view analysis, unless it is turned off.
    pub view: Option<ViewControls>,
}

/// What `set_view` reaches of a camera's view watcher.
pub struct ViewControls {
    pub control: std::sync::mpsc::Sender<crate::view::ViewControl>,
    /// The latest analysed picture.
    pub latest: Arc<parking_lot::Mutex<Option<crate::view::Latest>>>,
}

/// What `set_live` reaches of a camera's live supervisor.
pub struct LiveControl {
    pub configured: LiveSetting,
    pub status: tokio::sync::watch::Receiver<LiveStatus>,
    /// `Some(mode)`: override; `None`: back to the configured mode.
    pub control: std::sync::mpsc::Sender<Option<LiveSetting>>,
}

/// Everything the link needs.
pub struct MqttContext {
    /// Where the on-site status file is written (`station/status.rs`): the storage folder.
    pub status_dir: std::path::PathBuf,
    pub config: MqttConfig,
    pub station: StationId,
    pub cameras: Vec<CameraControl>,
    pub health: HealthCollector,
    pub holds: Arc<HoldStore>,
    /// `set_live` overrides, kept on disk.
    pub live_overrides: Arc<LiveOverrides>,
    /// Approved views (`set_view`), kept on disk.
    pub view_store: Arc<crate::view::stored::ViewStore>,
    /// Events from elsewhere in the agent (gap entries).
    pub events: UnboundedReceiver<EventKind>,
    /// Upload jobs and modes (`upload`, `cancel_upload`, `set_upload`), when configured.
    pub upload: Option<UploadControl>,
}

/// The result of a command that runs in the background (snapshots).
struct Finished {
    /// The command that asked for it (none: taken for a view problem).
    id: Option<MessageId>,
    camera: CameraId,
    taken_at: Timestamp,
    result: Result<Jpeg, SnapshotError>,
}

/// Builds the connection options (TLS files are read here, once per attempt).
fn options(
    cfg: &MqttConfig,
    station: &StationId,
    topics: &Topics,
) -> Result<MqttOptions, MqttError> {
    let mut o = stationwatch_runtime::mqtt::options(&cfg.broker, station.as_str())?;
    o.set_keep_alive(cfg.keepalive);
    // A persistent session (client id = station id): commands the controller publishes while
    // this agent is disconnected wait at the broker and arrive when it reconnects; each is
    // judged by its age and expiry then (`CommandEnvelope::check`) and run at most once
    // (`CommandLog`).
    o.set_clean_session(false);
    o.set_max_packet_size(256 * 1024, MAX_SNAPSHOT_BYTES + 64 * 1024);
    let will = topics.last_will();
    o.set_last_will(rumqttc::LastWill::new(
        will.topic,
        will.payload,
        qos(will.qos),
        will.retain,
    ));
    Ok(o)
}

/// Per-connection delivery bookkeeping.
#[derive(Default)]
struct Conn {
    connected: bool,
    /// One tag per QoS ≥ 1 publish handed to rumqttc, in order: the outbox seq, if any.
    tags: VecDeque<Option<u64>>,
    /// Packet id → outbox seq, for publishes rumqttc has sent.
    inflight: HashMap<u16, u64>,
    /// Outbox messages handed to rumqttc on this connection and not yet acknowledged.
    pending: usize,
    /// Last outbox seq handed to rumqttc on this connection.
    sent_upto: Option<u64>,
}

impl Conn {
    /// rumqttc sent a publish with this packet id (0 for QoS 0, which has no tag).
    fn on_sent(&mut self, pkid: u16) {
        if pkid != 0 {
            if let Some(Some(seq)) = self.tags.pop_front() {
                self.inflight.insert(pkid, seq);
            }
        }
    }
}

struct Link {
    cfg: MqttConfig,
    station: StationId,
    topics: Topics,
    cameras: Vec<CameraControl>,
    health: HealthCollector,
    holds: Arc<HoldStore>,
    live_overrides: Arc<LiveOverrides>,
    view_store: Arc<crate::view::stored::ViewStore>,
    upload: Option<UploadControl>,
    outbox: Outbox,
    log: CommandLog,
    event_prefix: String,
    event_seq: u64,
    finished_tx: UnboundedSender<Finished>,
    status_dir: std::path::PathBuf,
    broker_link: crate::station::status::BrokerLink,
}

/// Runs the link until `shutdown`; then says goodbye (event, status) and returns.
pub async fn run(ctx: MqttContext, shutdown: CancellationToken) -> Result<(), MqttError> {
    let outbox = Outbox::open(
        &ctx.config.outbox,
        ctx.config.outbox_max_messages,
        ctx.config.outbox_max_bytes,
    )
    .map_err(|source| MqttError::Outbox {
        path: ctx.config.outbox.display().to_string(),
        source,
    })?;
    let (finished_tx, mut finished_rx) = unbounded_channel();
    let topics = Topics::new(&ctx.station);
    let mut link = Link {
        topics,
        station: ctx.station,
        cameras: ctx.cameras,
        health: ctx.health,
        holds: ctx.holds,
        live_overrides: ctx.live_overrides,
        view_store: ctx.view_store,
        upload: ctx.upload,
        outbox,
        log: CommandLog::default(),
        event_prefix: format!("{:x}", Timestamp::now().unix_ms()),
        event_seq: 0,
        finished_tx,
        status_dir: ctx.status_dir,
        broker_link: crate::station::status::BrokerLink {
            broker: format!("{}:{}", ctx.config.broker.host, ctx.config.broker.port),
            since: Some(Timestamp::now()),
            ..Default::default()
        },
        cfg: ctx.config,
    };
    let mut events = ctx.events;
    link.event(EventKind::AgentStarting {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        previous_stop: None,
    });

    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    let mut health_tick = tokio::time::interval(link.cfg.health_interval);
    let mut event_tick = tokio::time::interval(EVENT_POLL);
    loop {
        let opts = options(&link.cfg, &link.station, &link.topics)?;
        let (client, mut eventloop) = AsyncClient::new(opts, 256);
        let mut conn = Conn::default();
        let stop = loop {
            tokio::select! {
                _ = shutdown.cancelled() => break true,
                ev = eventloop.poll() => match ev {
                    Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                        info!(host = %link.cfg.broker.host, port = link.cfg.broker.port, "connected to the broker");
                        backoff.reset();
                        conn.connected = true;
                        link.broker_state(true, None);
                        link.on_connect(&client, &mut conn);
                    }
                    Ok(Event::Incoming(Incoming::Publish(p))) => {
                        if link.topics.is_command(&p.topic) {
                            link.on_command(&p.payload);
                            link.pump(&client, &mut conn);
                        }
                    }
                    Ok(Event::Incoming(Incoming::PubAck(a))) => {
                        link.on_puback(&client, &mut conn, a.pkid);
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => conn.on_sent(pkid),
                    Ok(_) => {}
                    Err(e) => {
                        if conn.connected {
                            warn!(error = %e, "broker connection lost");
                        } else {
                            debug!(error = %e, "cannot connect to the broker");
                        }
                        link.broker_state(false, Some(e.to_string()));
                        break false;
                    }
                },
                Some(kind) = events.recv() => {
                    link.agent_event(kind);
                    link.pump(&client, &mut conn);
                }
                Some(done) = finished_rx.recv() => {
                    link.on_finished(&client, &mut conn, done);
                    link.pump(&client, &mut conn);
                }
                _ = event_tick.tick() => {
                    for kind in link.health.poll_events() {
                        link.event(kind);
                    }
                    link.pump(&client, &mut conn);
                }
                _ = health_tick.tick() => {
                    let report = link.health.report();
                    link.write_status(&report);
                    if conn.connected {
                        link.publish_health(&client, &report);
                    }
                }
            }
        };
        if stop {
            link.goodbye(&client, &mut eventloop, &mut conn).await;
            return Ok(());
        }
        // Wait before the next attempt, still taking events into the outbox.
        let delay = backoff.next_delay();
        let wake = tokio::time::sleep(delay);
        tokio::pin!(wake);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    link.event(EventKind::AgentStopping { reason: "shutdown".into() });
                    return Ok(());
                }
                _ = &mut wake => break,
                Some(kind) = events.recv() => link.event(kind),
                _ = health_tick.tick() => {
                    let report = link.health.report();
                    link.write_status(&report);
                }
                _ = event_tick.tick() => {
                    for kind in link.health.poll_events() {
                        link.event(kind);
                    }
                }
            }
        }
    }
}

impl Link {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }

    /// Queues an event durably (it is sent when connected).
    fn event(&mut self, kind: EventKind) {
        self.event_seq += 1;
        let id = MessageId::new(format!("{}-{}", self.event_prefix, self.event_seq))
            .unwrap_or_else(|_| MessageId::new("event").expect("valid literal id"));
        let name = kind.name();
        let ev = stationwatch_protocol::mqtt::Event::new(id, self.now(), kind);
        match ev.to_json() {
            Ok(payload) => self.queue(self.topics.events(), payload),
            Err(e) => error!(error = %e, "cannot encode event"),
        }
        debug!(kind = name, "event queued");
    }

    fn ack(&mut self, ack: &Ack) {
        match ack.to_json() {
            Ok(payload) => self.queue(self.topics.ack(), payload),
            Err(e) => error!(error = %e, "cannot encode ack"),
        }
    }

    fn queue(&mut self, topic: String, payload: Vec<u8>) {
        let msg = OutMessage {
            topic,
            payload,
            retain: false,
        };
        if let Err(e) = self.outbox.push(&msg) {
            error!(error = %e, "cannot write to the outbox; message lost");
        }
    }

    fn publish_status(&self, client: &AsyncClient, conn: &mut Conn, status: &Status) {
        if let Ok(payload) = status.to_json() {
            self.publish(
                client,
                conn,
                &TopicKind::Status,
                self.topics.status(),
                payload,
            );
        }
    }

    fn on_connect(&mut self, client: &AsyncClient, conn: &mut Conn) {
        let online = Status::online(self.now(), env!("CARGO_PKG_VERSION"));
        self.publish_status(client, conn, &online);
        let sub = self.topics.agent_subscription();
        if let Err(e) = client.try_subscribe(sub.filter, qos(sub.qos)) {
            warn!(error = %e, "cannot subscribe to commands");
        }
        let report = self.health.report();
        self.write_status(&report);
        self.publish_health(client, &report);
        self.pump(client, conn);
    }

    /// Publishes a non-outbox message with its topic's QoS and retain flag.
    fn publish(
        &self,
        client: &AsyncClient,
        conn: &mut Conn,
        kind: &TopicKind,
        topic: String,
        payload: Vec<u8>,
    ) -> bool {
        let spec = kind.spec();
        match client.try_publish(topic, qos(spec.qos), spec.retain, payload) {
            Ok(()) => {
                if spec.qos != QoS::AtMostOnce {
                    conn.tags.push_back(None);
                }
                true
            }
            Err(e) => {
                warn!(error = %e, "publish refused by the client");
                false
            }
        }
    }

    /// The broker link changed (for the on-site status).
    fn broker_state(&mut self, connected: bool, error: Option<String>) {
        let b = &mut self.broker_link;
        if b.connected != connected {
            b.since = Some(Timestamp::now());
        }
        b.connected = connected;
        b.last_error = error;
    }

    /// Replaces the on-site status file; a failure is logged, never more (recording is not
    /// concerned).
    fn write_status(&mut self, report: &stationwatch_protocol::mqtt::Health) {
        self.broker_link.outbox = self.outbox.len();
        let status = crate::station::status::LocalStatus {
            written_at: Timestamp::now(),
            broker: self.broker_link.clone(),
            health: report.clone(),
        };
        if let Err(e) = crate::station::status::write(&self.status_dir, &status) {
            debug!(error = %e, "on-site status file not written");
        }
    }

    fn publish_health(
        &mut self,
        client: &AsyncClient,
        report: &stationwatch_protocol::mqtt::Health,
    ) {
        let spec = TopicKind::Health.spec();
        match report.to_json() {
            // QoS 0: no tag to keep.
            Ok(payload) => {
                if let Err(e) =
                    client.try_publish(self.topics.health(), qos(spec.qos), spec.retain, payload)
                {
                    debug!(error = %e, "health report not sent");
                }
            }
            Err(e) => error!(error = %e, "cannot encode health"),
        }
    }

    /// The broker has a publish: an outbox message leaves the outbox; send the next ones.
    fn on_puback(&mut self, client: &AsyncClient, conn: &mut Conn, pkid: u16) {
        if let Some(seq) = conn.inflight.remove(&pkid) {
            self.outbox.remove(seq);
            conn.pending = conn.pending.saturating_sub(1);
        }
        self.pump(client, conn);
    }

    /// Hands outbox messages to rumqttc, in order, up to the window.
    fn pump(&mut self, client: &AsyncClient, conn: &mut Conn) {
        if !conn.connected {
            return;
        }
        while conn.pending < WINDOW {
            let Some((seq, msg)) = self.outbox.next_after(conn.sent_upto) else {
                return;
            };
            match client.try_publish(
                msg.topic,
                rumqttc::QoS::AtLeastOnce,
                msg.retain,
                msg.payload,
            ) {
                Ok(()) => {
                    conn.tags.push_back(Some(seq));
                    conn.sent_upto = Some(seq);
                    conn.pending += 1;
                }
                Err(_) => return,
            }
        }
    }

    fn on_command(&mut self, payload: &[u8]) {
        let cams = self.health.camera_ids();
        let max_age = i64::try_from(self.cfg.command_max_age.as_millis()).unwrap_or(i64::MAX);
        match self.log.handle(payload, self.now(), max_age, &cams) {
            Handling::Reply { ack, repeat } => {
                if !repeat {
                    info!(id = ?ack.id.as_ref().map(|i| i.as_str().to_owned()), reason = ?ack.reason.as_ref().map(|r| r.message.clone()), "command rejected");
                }
                self.ack(&ack);
            }
            Handling::Execute { command, ack } => {
                info!(
                    id = command.id.as_str(),
                    kind = command.command.kind().name(),
                    "command accepted"
                );
                self.ack(&ack);
                self.execute(command);
            }
        }
    }

    fn finish(&mut self, ack: Ack) {
        self.log.record(ack.clone());
        self.ack(&ack);
    }

    fn done<T: serde::Serialize>(&mut self, id: MessageId, result: &T) {
        let ack = Ack::done_with(id.clone(), self.now(), result)
            .unwrap_or_else(|e| Ack::failed(id, self.now(), e.to_string()));
        self.finish(ack);
    }

    fn execute(&mut self, cmd: CommandEnvelope) {
        let id = cmd.id;
        match cmd.command {
            Command::Ping => {
                let r = PingResult {
                    agent_version: env!("CARGO_PKG_VERSION").to_owned(),
                    uptime_s: self.health.uptime_s(),
                };
                self.done(id, &r);
            }
            Command::RestartCamera { camera } => {
                if let Some(c) = self.cameras.iter().find(|c| c.id == camera) {
                    c.restart.notify_one();
                }
                let state = self.health.wire_state(&camera);
                self.done(id, &RestartCameraResult { camera, state });
            }
            Command::SetHold {
                hold,
                from,
                to,
                camera,
                reason,
            } => {
                let h = LegalHold {
                    from: from.to_datetime(),
                    to: to.to_datetime(),
                    camera,
                    reason,
                };
                match self.holds.set(hold.as_str(), h) {
                    Ok(replaced) => self.done(
                        id,
                        &SetHoldResult {
                            hold,
                            replaced,
                            segments: 0,
                        },
                    ),
                    Err(e) => self.finish(Ack::failed(
                        id,
                        self.now(),
                        format!("storing the hold: {e}"),
                    )),
                }
            }
            Command::ClearHold { hold } => match self.holds.clear(hold.as_str()) {
                Ok(existed) => self.done(id, &ClearHoldResult { hold, existed }),
                Err(e) => self.finish(Ack::failed(
                    id,
                    self.now(),
                    format!("storing the holds: {e}"),
                )),
            },
            Command::SetLive { camera, mode } => self.set_live(id, camera, mode),
            Command::SetView {
                camera,
                approve,
                by,
                refused,
            } => self.set_view(id, camera, approve, by, refused),
            Command::SetMasks { camera, masks } => self.set_masks(id, camera, masks),
            Command::Upload {
                job,
                cameras,
                from,
                to,
                priority,
                reason,
            } => {
                let Some(up) = self.upload.clone() else {
                    return self.no_uploads(id);
                };
                match up.add(job.clone(), cameras, from, to, priority, reason, self.now()) {
                    Ok((cameras, replaced)) => self.done(
                        id,
                        &UploadResult {
                            job,
                            cameras,
                            replaced,
                        },
                    ),
                    Err(e) => self.finish(Ack::failed(
                        id,
                        self.now(),
                        format!("queueing the upload: {e}"),
                    )),
                }
            }
            Command::CancelUpload { job } => {
                let Some(up) = self.upload.clone() else {
                    return self.no_uploads(id);
                };
                match up.cancel(&job) {
                    Ok(existed) => self.done(id, &CancelUploadResult { job, existed }),
                    Err(e) => self.finish(Ack::failed(
                        id,
                        self.now(),
                        format!("cancelling the upload: {e}"),
                    )),
                }
            }
            Command::SetUpload { camera, mode } => {
                let Some(up) = self.upload.clone() else {
                    return self.no_uploads(id);
                };
                match up.set_mode(camera.as_ref(), mode) {
                    Ok((mode, overridden)) => self.done(
                        id,
                        &SetUploadResult {
                            camera,
                            mode,
                            overridden,
                        },
                    ),
                    Err(e) => self.finish(Ack::failed(
                        id,
                        self.now(),
                        format!("storing the upload mode: {e}"),
                    )),
                }
            }
            Command::Snapshot { camera } => self.take_snapshot(camera, Some(id)),
        }
    }

    /// Decodes the camera's latest keyframe to JPEG in a blocking task and publishes it (then
    /// acks the command `id`, if it was asked for by one).
    fn take_snapshot(&self, camera: CameraId, id: Option<MessageId>) {
        let keyframe = self
            .cameras
            .iter()
            .find(|c| c.id == camera)
            .and_then(|c| c.counters.keyframe());
        let tx = self.finished_tx.clone();
        let taken_at = self.now();
        tokio::task::spawn_blocking(move || {
            let result = jpeg_from_keyframe(keyframe, Duration::from_secs(5));
            let _ = tx.send(Finished {
                id,
                camera,
                taken_at,
                result,
            });
        });
    }

    /// An event from elsewhere in the agent; a problem with a camera's picture is shown with a
    /// snapshot of it.
    fn agent_event(&mut self, kind: EventKind) {
        let camera = match &kind {
            EventKind::ViewProblem { camera, .. } => Some(camera.clone()),
            _ => None,
        };
        self.event(kind);
        if let Some(camera) = camera {
            self.take_snapshot(camera, None);
        }
    }

    fn no_uploads(&mut self, id: MessageId) {
        self.finish(Ack::failed(
            id,
            self.now(),
            "this agent has no [upload] section: uploads are not configured",
        ))
    }

    /// `set_view`: approve the camera's latest analysed picture as its reference, or reset
    /// it, or refuse the view with a reason; kept on disk before the ack, then handed to the
    /// camera's view watcher.
    fn set_view(
        &mut self,
        id: MessageId,
        camera: CameraId,
        approve: bool,
        by: String,
        refused: Option<String>,
    ) {
        use stationwatch_protocol::mqtt::{ViewDecision, ViewDecisionState};
        let Some(view) = self
            .cameras
            .iter()
            .find(|c| c.id == camera)
            .and_then(|c| c.view.as_ref())
        else {
            let detail =
                format!("the view of camera {camera} is not analysed ([view] analysis = false)");
            return self.finish(Ack::failed(id, self.now(), detail));
        };
        let now = self.now();
        let reference = if approve {
            let Some(latest) = view.latest.lock().clone() else {
                let detail = format!(
                    "no picture of camera {camera} analysed yet; try again in a few seconds"
                );
                return self.finish(Ack::failed(id, now, detail));
            };
            Some(crate::view::stored::StoredReference {
                sharpness: latest.measures.sharpness,
                cells: latest.measures.cells,
                approved_at: now,
                approved_by: by.clone(),
                identity: Some(latest.identity),
            })
        } else {
            None
        };
        let decision = ViewDecision {
            state: match (approve, &refused) {
                (true, _) => ViewDecisionState::Approved,
                (false, Some(_)) => ViewDecisionState::Refused,
                (false, None) => ViewDecisionState::Reset,
            },
            by,
            at: now,
            reason: refused.unwrap_or_default(),
        };
        info!(camera = %camera, decision = ?decision.state, by = %decision.by, reason = %decision.reason, "view decision");
        let reference_at = reference.as_ref().map(|r| r.approved_at);
        if let Err(e) = self.view_store.update(&camera, |v| {
            v.reference = reference;
            v.decision = Some(decision);
        }) {
            let detail = format!("storing the camera's view: {e}");
            return self.finish(Ack::failed(id, now, detail));
        }
        if view.control.send(crate::view::ViewControl::Stored).is_err() {
            let detail = format!("the view watcher of camera {camera} is not running");
            return self.finish(Ack::failed(id, now, detail));
        }
        let result = SetViewResult {
            camera,
            approved: approve,
            reference_at,
        };
        self.done(id, &result);
    }

    /// `set_masks`: keep the camera's privacy masks (checked by the decoder) on disk before
    /// the ack; the view watcher reports their digest.
    fn set_masks(
        &mut self,
        id: MessageId,
        camera: CameraId,
        masks: Vec<stationwatch_protocol::masks::Polygon>,
    ) {
        let n = masks.len() as u32;
        let digest = stationwatch_protocol::masks::digest(&masks);
        if let Err(e) = self.view_store.update(&camera, |v| v.masks = masks) {
            let detail = format!("storing the privacy masks: {e}");
            return self.finish(Ack::failed(id, self.now(), detail));
        }
        info!(camera = %camera, masks = n, digest = %digest, "privacy masks stored");
        if let Some(view) = self
            .cameras
            .iter()
            .find(|c| c.id == camera)
            .and_then(|c| c.view.as_ref())
        {
            let _ = view.control.send(crate::view::ViewControl::Stored);
        }
        let result = stationwatch_protocol::mqtt::SetMasksResult {
            camera,
            masks: n,
            digest,
        };
        self.done(id, &result);
    }

    /// `set_live`: store the override (durable before the ack), then hand it to the camera's
    /// live supervisor, which changes rung within a second.
    fn set_live(&mut self, id: MessageId, camera: CameraId, mode: SetLiveSetting) {
        let Some(live) = self
            .cameras
            .iter()
            .find(|c| c.id == camera)
            .and_then(|c| c.live.as_ref())
        else {
            let detail = format!("camera {camera} has no live_target configured");
            return self.finish(Ack::failed(id, self.now(), detail));
        };
        let wanted = mode.setting();
        if let Err(e) = self.live_overrides.set(&camera, wanted) {
            let detail = format!("storing the live override: {e}");
            return self.finish(Ack::failed(id, self.now(), detail));
        }
        let result = SetLiveResult {
            camera: camera.clone(),
            mode: wanted.unwrap_or(live.configured),
            overridden: wanted.is_some(),
            rung: live.status.borrow().rung,
        };
        if live.control.send(wanted).is_err() {
            let detail = format!("the live supervisor of camera {camera} is not running");
            return self.finish(Ack::failed(id, self.now(), detail));
        }
        self.done(id, &result);
    }

    fn on_finished(&mut self, client: &AsyncClient, conn: &mut Conn, f: Finished) {
        let fail = |link: &mut Self, detail: String| match f.id.clone() {
            Some(id) => link.finish(Ack::failed(id, link.now(), detail)),
            None => {
                warn!(camera = %f.camera, detail = %detail, "snapshot for a view problem not sent")
            }
        };
        let jpeg = match f.result {
            Ok(j) if j.bytes.len() <= MAX_SNAPSHOT_BYTES => j,
            Ok(j) => {
                let detail = format!("snapshot of {} bytes exceeds the limit", j.bytes.len());
                return fail(self, detail);
            }
            Err(ref e) => return fail(self, e.to_string()),
        };
        if !conn.connected {
            return fail(self, "broker connection lost".into());
        }
        let topic = self.topics.snapshot(&f.camera);
        let result = SnapshotResult {
            camera: f.camera.clone(),
            topic: topic.clone(),
            taken_at: f.taken_at,
            bytes: jpeg.bytes.len() as u64,
            sha256: Hash256::of(&jpeg.bytes),
            width: jpeg.width,
            height: jpeg.height,
        };
        // The image goes before the ack that describes it (same connection, in order).
        let sent = self.publish(
            client,
            conn,
            &TopicKind::Snapshot(f.camera.clone()),
            topic,
            jpeg.bytes,
        );
        match (sent, f.id.clone()) {
            (true, Some(id)) => self.done(id, &result),
            (true, None) => {}
            (false, _) => fail(self, "snapshot could not be published".into()),
        }
    }

    /// Clean stop: the stopping event and status offline, flushed for a few seconds.
    async fn goodbye(
        &mut self,
        client: &AsyncClient,
        eventloop: &mut rumqttc::EventLoop,
        conn: &mut Conn,
    ) {
        self.event(EventKind::AgentStopping {
            reason: "shutdown".into(),
        });
        if !conn.connected {
            return;
        }
        self.pump(client, conn);
        self.publish_status(client, conn, &Status::shutdown(self.now()));
        let flush = async {
            loop {
                match eventloop.poll().await {
                    Ok(Event::Incoming(Incoming::PubAck(a))) => {
                        self.on_puback(client, conn, a.pkid);
                        if conn.pending == 0 && conn.tags.is_empty() && conn.inflight.is_empty() {
                            return;
                        }
                    }
                    Ok(Event::Outgoing(Outgoing::Publish(pkid))) => conn.on_sent(pkid),
                    Ok(_) => {}
                    Err(_) => return,
                }
            }
        };
        let _ = tokio::time::timeout(FLUSH_ON_STOP, flush).await;
        let _ = client.try_disconnect();
        let _ = tokio::time::timeout(Duration::from_millis(500), eventloop.poll()).await;
        info!(undelivered = self.outbox.len(), "MQTT link closed");
    }
}
