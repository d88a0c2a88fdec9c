//! Supervision of one camera: start its recording (the RTSP reader `rtsp.rs`, or a GStreamer
//! pipeline for the sources the agent encodes), detect loss (error, end of stream, stall),
//! tear down cleanly, reconnect with backoff, and publish the camera's state.
//!
//! Each camera has its own task, pipeline and recorder: one camera failing never touches
//! another.

pub mod pipeline;
pub mod rtsp;
pub mod snapshot;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use gst::prelude::*;
use stationwatch_protocol::manifest::{GapReason, StationKey, Timestamp};
use stationwatch_protocol::mqtt::EventKind;
use stationwatch_protocol::{CameraId, StationId};
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use crate::backoff::Backoff;
use crate::camera::pipeline::{BusEvent, CameraPipeline};
use crate::camera::rtsp::RtspRecording;
use crate::config::source::CameraSource;
use crate::config::{CameraConfig, StorageConfig, SupervisionConfig};
use crate::elements::PipelineError;
use crate::live::LiveFeed;
use crate::recording::ledger::{LedgerConfig, LedgerJob};
use crate::recording::recorder::{Recorder, WriterEvent};
use crate::recording::segment::SegmentFinished;
use crate::state::{CameraCounters, CameraState};

/// Recording this long without a loss resets the reconnect backoff.
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long a clean close (EOS through the muxer) may take before the pipeline is stopped hard.
const EOS_TIMEOUT: Duration = Duration::from_secs(3);
/// How often the supervisor checks for stalls (and proves it is alive).
const TICK: Duration = Duration::from_millis(250);

/// TEST-ONLY fault injection: `STATIONWATCH_FAULT=hang-supervisor:<camera>` makes that camera's
/// supervisor stop looping (no heartbeat, no stall checks) once it records, until shutdown, as
/// a supervisor wedged in GStreamer would, so the end-to-end test (`tests/tests/watchdog.rs`)
/// can prove the systemd watchdog stops being pinged. Read once per camera at start; never set
/// it in production.
const FAULT_ENV: &str = "STATIONWATCH_FAULT";

fn fault_hangs_supervisor(camera: &CameraId) -> bool {
    std::env::var(FAULT_ENV)
        .is_ok_and(|f| f.strip_prefix("hang-supervisor:") == Some(camera.as_str()))
}

/// The rest of the agent's view of a running camera.
pub struct CameraHandle {
    pub id: CameraId,
    pub state: watch::Receiver<CameraState>,
    pub counters: Arc<CameraCounters>,
    /// This camera's ledger (manifest), for retention.
    pub ledger: std::sync::mpsc::Sender<LedgerJob>,
    /// Notify to tear the pipeline down and start it again (remote command).
    pub restart: Arc<tokio::sync::Notify>,
    /// What the recording pipeline's live taps feed, when the camera has a live target.
    pub live_feed: Option<Arc<LiveFeed>>,
    heartbeat: Arc<AtomicU64>,
    started: Instant,
    pub task: tokio::task::JoinHandle<()>,
}

impl CameraHandle {
    /// Time since the supervisor last proved it is alive (its loop ran).
    pub fn heartbeat_age(&self) -> Duration {
        let beat = Duration::from_millis(self.heartbeat.load(Ordering::Relaxed));
        self.started.elapsed().saturating_sub(beat)
    }
}

/// What every camera of the agent shares.
#[derive(Clone)]
pub struct CameraContext {
    pub station: StationId,
    pub storage: StorageConfig,
    pub supervision: SupervisionConfig,
    pub key: Arc<StationKey>,
    /// The machine rebooted since the last start (for the manifest's restart gap).
    pub rebooted: bool,
    pub finished: UnboundedSender<SegmentFinished>,
    /// Notified when a camera hits a full disk, so retention runs at once.
    pub storage_pressure: Arc<tokio::sync::Notify>,
    /// Where gap entries are reported as events (MQTT), if anywhere.
    pub events: Option<UnboundedSender<EventKind>>,
}

/// Starts supervising a camera.
pub fn spawn(
    ctx: &CameraContext,
    cam: CameraConfig,
    shutdown: CancellationToken,
) -> std::io::Result<CameraHandle> {
    let counters = CameraCounters::new();
    let (writer_tx, writer_rx) = unbounded_channel();
    let recorder = Recorder::new(
        LedgerConfig {
            station: ctx.station.clone(),
            camera: cam.id.clone(),
            camera_dir: ctx.storage.path.join(cam.id.as_str()),
            key: ctx.key.clone(),
            sync_interval: ctx.storage.sync_interval,
            counters: counters.clone(),
            finished: ctx.finished.clone(),
            rebooted: ctx.rebooted,
            events: ctx.events.clone(),
            clock_synced: crate::recording::ledger::kernel_clock_synced,
        },
        ctx.storage.segment,
        writer_tx,
    )?;
    let ledger = recorder.ledger();
    let storage_pressure = ctx.storage_pressure.clone();
    let restart = Arc::new(tokio::sync::Notify::new());
    let station = ctx.station.clone();
    let supervision = ctx.supervision.clone();
    let (state_tx, state_rx) = watch::channel(CameraState::Starting);
    let heartbeat = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let live_feed = cam.live.is_some().then(LiveFeed::new);
    let fault_hang = fault_hangs_supervisor(&cam.id);
    let sup = Supervisor {
        live_feed: live_feed.clone(),
        station,
        id: cam.id.clone(),
        cam,
        supervision,
        recorder,
        writer_rx,
        counters: counters.clone(),
        storage_pressure,
        restart: restart.clone(),
        events: ctx.events.clone(),
        lost_since: None,
        state: state_tx,
        heartbeat: heartbeat.clone(),
        started,
        shutdown,
        fault_hang,
    };
    Ok(CameraHandle {
        id: sup.id.clone(),
        state: state_rx,
        counters,
        ledger,
        restart,
        live_feed,
        heartbeat,
        started,
        task: tokio::spawn(sup.run()),
    })
}

/// What records the camera during one attempt: a GStreamer pipeline for the sources the agent
/// encodes, the pass-through reader for RTSP cameras.
enum Running {
    Pipeline(CameraPipeline),
    /// `None` once stopped.
    Rtsp(Option<RtspRecording>),
}

struct Supervisor {
    station: StationId,
    id: CameraId,
    cam: CameraConfig,
    supervision: SupervisionConfig,
    recorder: Recorder,
    writer_rx: UnboundedReceiver<WriterEvent>,
    counters: Arc<CameraCounters>,
    storage_pressure: Arc<tokio::sync::Notify>,
    restart: Arc<tokio::sync::Notify>,
    state: watch::Sender<CameraState>,
    heartbeat: Arc<AtomicU64>,
    started: Instant,
    shutdown: CancellationToken,
    /// Camera lost/back events for the controller.
    events: Option<UnboundedSender<EventKind>>,
    /// When the current outage began (one `camera_lost` per outage, then `camera_back`).
    lost_since: Option<chrono::DateTime<Utc>>,
    live_feed: Option<Arc<LiveFeed>>,
    /// TEST-ONLY: hang once recording ([`FAULT_ENV`]).
    fault_hang: bool,
}

enum Outcome {
    Shutdown,
    Lost {
        reason: String,
        recorded_for: Duration,
    },
    Fatal(String),
}

impl Supervisor {
    async fn run(mut self) {
        info!(camera = %self.id, source = %self.cam.source, "camera supervision started");
        let mut backoff = Backoff::new(
            self.supervision.reconnect_initial,
            self.supervision.reconnect_max,
        );
        loop {
            match self.run_once().await {
                Outcome::Shutdown => break,
                Outcome::Fatal(reason) => {
                    error!(camera = %self.id, %reason, "camera cannot be recorded");
                    self.set_state(CameraState::Failed { reason });
                    self.idle_until_shutdown().await;
                    break;
                }
                Outcome::Lost {
                    reason,
                    recorded_for,
                } => {
                    if recorded_for >= STABLE_AFTER {
                        backoff.reset();
                    }
                    self.recorder
                        .note_lost(GapReason::CameraLost, reason.clone());
                    if self.lost_since.is_none() {
                        self.lost_since = Some(Utc::now());
                        self.emit(EventKind::CameraLost {
                            camera: self.id.clone(),
                            detail: reason.clone(),
                        });
                    }
                    let delay = backoff.next_delay();
                    warn!(
                        camera = %self.id,
                        %reason,
                        attempt = backoff.attempt(),
                        retry_in_ms = delay.as_millis() as u64,
                        "camera lost; reconnecting"
                    );
                    self.set_state(CameraState::Reconnecting {
                        reason,
                        attempt: backoff.attempt(),
                        since: Utc::now(),
                    });
                    if self.sleep_or_shutdown(delay).await {
                        break;
                    }
                }
            }
        }
        let recorder = self.recorder;
        let _ = tokio::task::spawn_blocking(move || recorder.shutdown()).await;
        let _ = self.state.send(CameraState::Stopped);
        info!(camera = %self.id, "camera stopped");
    }

    fn emit(&self, kind: EventKind) {
        if let Some(tx) = &self.events {
            let _ = tx.send(kind);
        }
    }

    fn set_state(&self, s: CameraState) {
        self.state.send_replace(s);
    }

    fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64;
        self.heartbeat.store(ms, Ordering::Relaxed);
    }

    /// Sleeps, beating; true if shutdown was requested.
    async fn sleep_or_shutdown(&self, d: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + d;
        loop {
            self.beat();
            tokio::select! {
                _ = self.shutdown.cancelled() => return true,
                _ = tokio::time::sleep_until(deadline) => return false,
                _ = tokio::time::sleep(TICK) => {}
            }
        }
    }

    async fn idle_until_shutdown(&self) {
        while !self.sleep_or_shutdown(Duration::from_secs(3600)).await {}
    }

    async fn run_once(&mut self) -> Outcome {
        let (bus_tx, mut bus_rx) = unbounded_channel();
        let started = Instant::now();
        let mut running = match &self.cam.source {
            CameraSource::Rtsp(url) => {
                match RtspRecording::start(
                    &self.id,
                    url,
                    self.recorder.writer(),
                    self.counters.clone(),
                    self.live_feed.clone(),
                    bus_tx,
                ) {
                    Ok(r) => Running::Rtsp(Some(r)),
                    Err(e) => {
                        return Outcome::Lost {
                            reason: format!("cannot start the RTSP reader: {e}"),
                            recorded_for: Duration::ZERO,
                        }
                    }
                }
            }
            CameraSource::Test | CameraSource::V4l2(_) => {
                let built = CameraPipeline::build(
                    &self.station,
                    &self.cam,
                    &self.recorder,
                    self.counters.clone(),
                    bus_tx,
                    self.live_feed.as_ref(),
                );
                let p = match built {
                    Ok(p) => p,
                    Err(e @ PipelineError::MissingElement(_)) => {
                        return Outcome::Fatal(e.to_string())
                    }
                    Err(e) => {
                        return Outcome::Lost {
                            reason: e.to_string(),
                            recorded_for: Duration::ZERO,
                        }
                    }
                };
                if let Err(e) = p.pipeline.set_state(gst::State::Playing) {
                    let reason = bus_rx
                        .try_recv()
                        .ok()
                        .map(|e| format!("{e:?}"))
                        .unwrap_or_else(|| e.to_string());
                    let mut running = Running::Pipeline(p);
                    self.teardown(&mut running, &mut bus_rx, true).await;
                    return Outcome::Lost {
                        reason,
                        recorded_for: Duration::ZERO,
                    };
                }
                Running::Pipeline(p)
            }
        };
        let mut recording_since: Option<Instant> = None;
        // The stream already ended (EOS) or failed (error): nothing can be drained through it.
        let mut drained = false;
        let mut tick = tokio::time::interval(TICK);
        let outcome = loop {
            self.beat();
            tokio::select! {
                _ = self.shutdown.cancelled() => break Outcome::Shutdown,
                _ = self.restart.notified() => {
                    break self.lost("restarted by remote command".into(), recording_since)
                }
                ev = bus_rx.recv() => match ev {
                    Some(BusEvent::Error(e)) => {
                        // The failing element stopped the streaming threads: an EOS would sit
                        // in a paused queue. What reached the recorder is already written.
                        drained = true;
                        break self.lost(e, recording_since)
                    }
                    Some(BusEvent::Eos) | None => {
                        drained = true;
                        break self.lost("camera ended the stream".into(), recording_since)
                    }
                },
                Some(ev) = self.writer_rx.recv() => match ev {
                    WriterEvent::Opened(_) => {
                        if recording_since.is_none() {
                            recording_since = Some(Instant::now());
                            info!(
                                camera = %self.id,
                                after_ms = started.elapsed().as_millis() as u64,
                                "recording"
                            );
                        }
                        if !self.state.borrow().is_recording() {
                            self.set_state(CameraState::Recording { since: Utc::now() });
                        }
                        if let Some(since) = self.lost_since.take() {
                            self.emit(EventKind::CameraBack {
                                camera: self.id.clone(),
                                since: Timestamp::from_datetime(since).ok(),
                            });
                        }
                        if self.fault_hang {
                            warn!(camera = %self.id, "TEST FAULT {FAULT_ENV}: supervisor hangs until shutdown");
                            self.shutdown.cancelled().await;
                            break Outcome::Shutdown;
                        }
                    }
                    WriterEvent::WriteFailed { reason, detail } => {
                        if reason == GapReason::DiskFull {
                            self.storage_pressure.notify_one();
                        }
                        self.set_state(CameraState::Failed {
                            reason: format!("{reason}: {detail}"),
                        });
                    }
                },
                _ = tick.tick() => {
                    let idle = self.counters.idle_since(started);
                    if idle > self.supervision.stall_timeout {
                        let reason = format!("no video for {:.1} s (stalled)", idle.as_secs_f64());
                        break self.lost(reason, recording_since);
                    }
                }
            }
        };
        self.teardown(&mut running, &mut bus_rx, !drained).await;
        outcome
    }

    fn lost(&self, reason: String, recording_since: Option<Instant>) -> Outcome {
        Outcome::Lost {
            reason,
            recorded_for: recording_since.map(|t| t.elapsed()).unwrap_or_default(),
        }
    }

    /// Closes the open segment through the muxer (EOS), then stops the pipeline. Whatever
    /// happens in GStreamer, the recorder is finished so the segment is closed and announced.
    async fn teardown(
        &self,
        running: &mut Running,
        bus_rx: &mut UnboundedReceiver<BusEvent>,
        drain: bool,
    ) {
        let p = match running {
            Running::Pipeline(p) => p,
            Running::Rtsp(r) => {
                // Frames are written on the reader's thread as they arrive: stopping it is
                // the drain.
                if let Some(r) = r.take() {
                    if let Err(e) = tokio::task::spawn_blocking(move || r.stop()).await {
                        warn!(camera = %self.id, error = %e, "stopping the RTSP reader panicked");
                    }
                }
                self.recorder.finish();
                return;
            }
        };
        if drain {
            let entry = p.recorder_entry.clone();
            let live_sinks = p.live_sinks.clone();
            // Sending a serialized event can block behind a streaming thread: never on the
            // runtime.
            let eos = tokio::task::spawn_blocking(move || {
                let sent = entry
                    .static_pad("sink")
                    .map(|pad| pad.send_event(gst::event::Eos::new()));
                // The live taps are sinks too: without EOS the pipeline never posts its own.
                for sink in live_sinks {
                    if let Some(pad) = sink.static_pad("sink") {
                        pad.send_event(gst::event::Eos::new());
                    }
                }
                sent
            });
            let wait_eos = async {
                let _ = eos.await;
                while let Some(ev) = bus_rx.recv().await {
                    if ev == BusEvent::Eos {
                        return;
                    }
                }
            };
            if tokio::time::timeout(EOS_TIMEOUT, wait_eos).await.is_err() {
                warn!(camera = %self.id, "pipeline did not drain in time; stopping it");
            }
        }
        let pipeline = p.pipeline.clone();
        let stop = tokio::task::spawn_blocking(move || pipeline.set_state(gst::State::Null));
        // A stop that never returns stops the heartbeat, and systemd's watchdog restarts us.
        match stop.await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(camera = %self.id, error = %e, "stopping pipeline failed"),
            Err(e) => warn!(camera = %self.id, error = %e, "stopping pipeline panicked"),
        }
        self.recorder.finish();
    }
}
