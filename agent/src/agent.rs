//! The agent as a whole: start each part (cameras, live supervisors, retention, the MQTT link),
//! report readiness and liveness to systemd, and stop the parts in order (closing every open
//! segment) when asked.

use std::time::Duration;

use stationwatch_protocol::manifest::Hash256;
use stationwatch_protocol::mqtt::EventKind;
use stationwatch_protocol::CameraId;
use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver, UnboundedSender};
use tokio::sync::{watch, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use std::sync::Arc;

use crate::camera::{self, CameraContext, CameraHandle};
use crate::config::AgentConfig;
use crate::link::health::{CameraView, HealthCollector, ReportFacts};
use crate::link::mqtt::{self, CameraControl, MqttContext};
use crate::live::overrides::LiveOverrides;
use crate::live::{self, LiveContext, LiveHandle};
use crate::recording::ledger;
use crate::recording::segment::SegmentFinished;
use crate::retention::holds::HoldStore;
use crate::retention::{DiskStatus, Retention, RetentionCamera};
use crate::state::CameraState;
use crate::station::keys;
use crate::station::service;
use crate::upload::jobs::JobStore;
use crate::upload::{self, UploadContext, UploadControl, UploadHandle};
use crate::view::stored::{source_digest, ViewStore};
use crate::view::{self, ViewHandle};
use stationwatch_protocol::mqtt::UploadHealth;

/// READY is sent once every camera has either started recording or failed its first attempt,
/// or after this long, whichever comes first: a dead camera is reported, not a reason to make
/// systemd kill the agent.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// A supervisor that has not run its loop for this long is wedged.
const HEARTBEAT_LIMIT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("GStreamer initialisation failed: {0}")]
    Gstreamer(#[from] gst::glib::Error),
    #[error("station key: {0}")]
    Key(#[from] stationwatch_protocol::manifest::KeyError),
    #[error("cannot prepare storage {path}: {source}")]
    Storage {
        path: String,
        source: std::io::Error,
    },
}

/// Runs the agent until `shutdown` is cancelled. Every finished segment is also sent to
/// `segments` when given (the hook for manifests and uploads; tests observe it).
///
/// Parts start in this order: cameras (each with its recorder and ledger), live supervisors,
/// retention, the MQTT link; then systemd hears READY and the watchdog loop runs. They stop
/// in this order: retention, cameras (closing every open segment), live senders, the link
/// last, so the cameras' last events still go out.
pub async fn run(
    config: AgentConfig,
    shutdown: CancellationToken,
    segments: Option<UnboundedSender<SegmentFinished>>,
) -> Result<(), AgentError> {
    gst::init()?;
    prepare_storage(&config)?;
    let key = Arc::new(keys::load_or_generate(&config.station_key)?);
    // Events for the controller, when there is one.
    let (events_tx, events_rx) = unbounded_channel();
    let events = config.mqtt.is_some().then_some(events_tx);
    let (finished_tx, mut finished) = unbounded_channel();
    let ctx = CameraContext {
        station: config.station.clone(),
        storage: config.storage.clone(),
        supervision: config.supervision.clone(),
        key,
        rebooted: ledger::rebooted_since_last_start(&config.storage.path),
        finished: finished_tx,
        storage_pressure: Arc::new(Notify::new()),
        events,
    };
    let overrides = Arc::new(LiveOverrides::open(&config.storage.path));
    let holds = Arc::new(HoldStore::open(
        &config.storage.path,
        config.retention.holds.clone(),
    ));
    // Pending upload jobs hold their windows: known before anything may be deleted (an
    // unreadable jobs file stops deletion by policy).
    let jobs = Arc::new(parking_lot::Mutex::new(JobStore::open(
        &config.storage.path,
    )));
    holds.load_requested(jobs.lock().holds());

    let mut cams = spawn_cameras(&config, &ctx, &shutdown)?;
    // Holds in force are entered in each camera's manifest (and a broken holds file reported)
    // before anything may be deleted.
    holds.attach(
        cams.iter()
            .map(|c| (c.id.clone(), c.ledger.clone()))
            .collect(),
        ctx.events.clone(),
    );
    let lives = spawn_live(&config, &ctx, &cams, &overrides, &shutdown);
    let view_store = Arc::new(ViewStore::open(&config.storage.path));
    let views = spawn_views(&config, &ctx, &cams, &view_store, &shutdown);
    let (retention, disk) = spawn_retention(&config, &ctx, &cams, &holds, &shutdown);
    let upload = spawn_upload(&config, &ctx, &lives, &holds, &jobs, &shutdown);
    let link_stop = CancellationToken::new();
    let link = spawn_link(
        &config,
        &ctx,
        &cams,
        &lives,
        &views,
        LinkParts {
            overrides,
            view_store,
            holds,
            disk: disk.clone(),
            events: events_rx,
            upload: upload
                .as_ref()
                .map(|u| (u.control.clone(), u.status.clone())),
        },
        link_stop.clone(),
    );
    drop(ctx);

    serve_systemd(&mut cams, &disk, &mut finished, &segments, &shutdown).await;

    info!("agent stopping: closing open segments");
    service::stopping();
    let _ = retention.await;
    if let Some(u) = upload {
        let _ = u.task.await;
    }
    stop_cameras(cams).await;
    while let Some(seg) = finished.recv().await {
        forward(&segments, seg);
    }
    stop_live(lives).await;
    link_stop.cancel();
    if let Some(t) = link {
        let _ = t.await;
    }
    info!("agent stopped");
    Ok(())
}

/// Creates the storage folder and says what the agent is about to do.
fn prepare_storage(config: &AgentConfig) -> Result<(), AgentError> {
    std::fs::create_dir_all(&config.storage.path)
        .map_err(|source| storage_error(config, source))?;
    info!(
        station = %config.station,
        cameras = config.cameras.len(),
        storage = %config.storage.path.display(),
        segment_s = config.storage.segment.as_secs(),
        version = env!("CARGO_PKG_VERSION"),
        "agent starting"
    );
    Ok(())
}

fn storage_error(config: &AgentConfig, source: std::io::Error) -> AgentError {
    AgentError::Storage {
        path: config.storage.path.display().to_string(),
        source,
    }
}

/// One supervisor task per camera, each with its recorder and ledger thread (`camera/`).
fn spawn_cameras(
    config: &AgentConfig,
    ctx: &CameraContext,
    shutdown: &CancellationToken,
) -> Result<Vec<CameraHandle>, AgentError> {
    config
        .cameras
        .iter()
        .map(|cam| {
            camera::spawn(ctx, cam.clone(), shutdown.child_token())
                .map_err(|e| storage_error(config, e))
        })
        .collect()
}

/// Live branches: one supervisor thread per camera with a live target, fed by the camera's
/// leaky tap; nothing it does reaches the recording (`live/`).
///
/// Uploads (`upload/`) read each `LiveHandle::uplink` (what the link carries and what the live
/// streams leave spare) and send no faster.
fn spawn_live(
    config: &AgentConfig,
    ctx: &CameraContext,
    cams: &[CameraHandle],
    overrides: &LiveOverrides,
    shutdown: &CancellationToken,
) -> Vec<LiveHandle> {
    let mut lives = Vec::new();
    for (cam, handle) in config.cameras.iter().zip(cams) {
        let (Some(live_cfg), Some(feed)) = (&cam.live, &handle.live_feed) else {
            continue;
        };
        let spawned = live::spawn(
            LiveContext {
                station: config.station.clone(),
                camera: cam.id.clone(),
                source: cam.source.clone(),
                bitrate_kbps: cam.encode.bitrate_kbps,
                live: live_cfg.clone(),
                config: config.live.clone(),
                feed: feed.clone(),
                counters: handle.counters.clone(),
                initial_override: overrides.get(&cam.id),
                events: ctx.events.clone(),
            },
            shutdown.child_token(),
        );
        match spawned {
            Ok(h) => lives.push(h),
            Err(e) => {
                error!(camera = %cam.id, error = %e, "cannot start live supervision; recording only")
            }
        }
    }
    lives
}

/// View watchers (`view/`): one thread per camera analysing the latest keyframe for
/// tampering, unless `[view] analysis = false`. A watcher that cannot start is logged; the
/// camera records regardless.
fn spawn_views(
    config: &AgentConfig,
    ctx: &CameraContext,
    cams: &[CameraHandle],
    view_store: &Arc<ViewStore>,
    shutdown: &CancellationToken,
) -> Vec<ViewHandle> {
    if !config.view.analysis {
        info!("[view] analysis = false: camera pictures are not watched for tampering");
        return Vec::new();
    }
    cams.iter()
        .filter_map(|c| {
            view::spawn(
                c.id.clone(),
                c.counters.clone(),
                config.view.clone(),
                view::ViewSetup {
                    store: view_store.clone(),
                    source: source_digest(
                        &config
                            .cameras
                            .iter()
                            .find(|k| k.id == c.id)
                            .map(|k| k.source.to_string())
                            .unwrap_or_default(),
                    ),
                },
                ctx.events.clone(),
                shutdown.child_token(),
            )
            .map_err(|e| error!(camera = %c.id, error = %e, "cannot start the view analysis; recording goes on"))
            .ok()
        })
        .collect()
}

/// The uploader (`upload/`), when the config has an `[upload]` section: requested windows and
/// backfill to the archive, within what the live streams leave of the uplink.
fn spawn_upload(
    config: &AgentConfig,
    ctx: &CameraContext,
    lives: &[LiveHandle],
    holds: &Arc<HoldStore>,
    jobs: &Arc<parking_lot::Mutex<JobStore>>,
    shutdown: &CancellationToken,
) -> Option<UploadHandle> {
    let Some(cfg) = &config.upload else {
        info!("no [upload] section: footage stays on the station");
        return None;
    };
    let spawned = upload::spawn(
        UploadContext {
            config: cfg.clone(),
            station: config.station.clone(),
            key: ctx.key.clone(),
            storage: config.storage.path.clone(),
            cameras: config.cameras.iter().map(|c| c.id.clone()).collect(),
            uplinks: lives.iter().map(|l| l.uplink.clone()).collect(),
            holds: holds.clone(),
            store: jobs.clone(),
            segment: config.storage.segment,
        },
        shutdown.child_token(),
    );
    match spawned {
        Ok(h) => Some(h),
        Err(e) => {
            error!(error = %e, "cannot start uploads; recording goes on");
            None
        }
    }
}

/// The retention task (`retention/`): deletes through each camera's ledger, runs at once on
/// storage pressure, and publishes the disk status health and systemd read.
fn spawn_retention(
    config: &AgentConfig,
    ctx: &CameraContext,
    cams: &[CameraHandle],
    holds: &Arc<HoldStore>,
    shutdown: &CancellationToken,
) -> (JoinHandle<()>, watch::Receiver<DiskStatus>) {
    let (retention, disk) = Retention::new(
        config.retention.clone(),
        holds.clone(),
        config.storage.path.clone(),
        cams.iter()
            .map(|c| RetentionCamera {
                id: c.id.clone(),
                dir: config.storage.path.join(c.id.as_str()),
                ledger: c.ledger.clone(),
            })
            .collect(),
    );
    let task = tokio::spawn(retention.run(ctx.storage_pressure.clone(), shutdown.child_token()));
    (task, disk)
}

/// What the link shares with the rest of the agent, besides cameras and live branches.
struct LinkParts {
    overrides: Arc<LiveOverrides>,
    view_store: Arc<ViewStore>,
    holds: Arc<HoldStore>,
    disk: watch::Receiver<DiskStatus>,
    events: UnboundedReceiver<EventKind>,
    /// Upload commands and status, when uploads are configured.
    upload: Option<(UploadControl, watch::Receiver<UploadHealth>)>,
}

/// The MQTT link to the controller (`link/`): status, health reports, events, commands. It has
/// its own stop token: it stops after the cameras, so their last events go out.
fn spawn_link(
    config: &AgentConfig,
    ctx: &CameraContext,
    cams: &[CameraHandle],
    lives: &[LiveHandle],
    views: &[ViewHandle],
    parts: LinkParts,
    stop: CancellationToken,
) -> Option<JoinHandle<()>> {
    let Some(m) = &config.mqtt else {
        info!("no [mqtt] section: recording without reporting to a controller");
        return None;
    };
    let live_of = |id: &CameraId| lives.iter().find(|l| l.camera == *id);
    let view_of = |id: &CameraId| views.iter().find(|v| v.camera == *id);
    let config_bytes = std::fs::read(&config.file).unwrap_or_default();
    let mut health = HealthCollector::new(
        cams.iter()
            .map(|c| CameraView {
                id: c.id.clone(),
                state: c.state.clone(),
                counters: c.counters.clone(),
                live: live_of(&c.id).map(|l| l.status.clone()),
                view: view_of(&c.id).map(|v| v.status.clone()),
            })
            .collect(),
        parts.disk,
        config.storage.path.clone(),
        ReportFacts {
            config_hash: Hash256::of(&config_bytes),
            fingerprint: ctx.key.public().fingerprint(),
            interval_s: u32::try_from(m.health_interval.as_secs()).unwrap_or(u32::MAX),
            segment_s: u32::try_from(config.storage.segment.as_secs()).unwrap_or(u32::MAX),
            station_name: config.station_name.clone(),
            region: config.region.clone(),
        },
    );
    if let Some((_, status)) = &parts.upload {
        health.set_upload(status.clone());
    }
    let link = MqttContext {
        status_dir: config.storage.path.clone(),
        config: m.clone(),
        station: config.station.clone(),
        cameras: cams
            .iter()
            .map(|c| CameraControl {
                id: c.id.clone(),
                counters: c.counters.clone(),
                restart: c.restart.clone(),
                live: live_of(&c.id).map(|l| mqtt::LiveControl {
                    configured: l.configured,
                    status: l.status.clone(),
                    control: l.control.clone(),
                }),
                view: view_of(&c.id).map(|v| mqtt::ViewControls {
                    control: v.control.clone(),
                    latest: v.latest.clone(),
                }),
            })
            .collect(),
        live_overrides: parts.overrides,
        view_store: parts.view_store,
        health,
        holds: parts.holds,
        events: parts.events,
        upload: parts.upload.map(|(control, _)| control),
    };
    Some(tokio::spawn(async move {
        if let Err(e) = mqtt::run(link, stop).await {
            error!(error = %e, "MQTT link failed; recording continues without reporting");
        }
    }))
}

/// Tells systemd READY once the cameras started, then until `shutdown`: pings the watchdog
/// while every camera supervisor is alive, keeps the status line current, and forwards
/// finished segments to `segments`.
async fn serve_systemd(
    cams: &mut [CameraHandle],
    disk: &watch::Receiver<DiskStatus>,
    finished: &mut UnboundedReceiver<SegmentFinished>,
    segments: &Option<UnboundedSender<SegmentFinished>>,
    shutdown: &CancellationToken,
) {
    wait_until_started(cams, shutdown).await;
    let status = status_line(cams, disk);
    info!(status = %status, "agent ready");
    service::ready(&status);

    let ping_every = service::watchdog_interval().unwrap_or(Duration::from_secs(5));
    let mut last_status = status;
    let mut tick = tokio::time::interval(ping_every.min(Duration::from_secs(5)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(seg) = finished.recv() => forward(segments, seg),
            _ = tick.tick() => {
                match unhealthy(cams) {
                    None => service::watchdog_ping(),
                    Some(why) => warn!(reason = %why, "supervisor unhealthy; withholding watchdog ping"),
                }
                let status = status_line(cams, disk);
                if status != last_status {
                    service::status(&status);
                    last_status = status;
                }
            }
        }
    }
}

/// Seam: manifest signing, health reporting and uploads consume finished segments here.
fn forward(segments: &Option<UnboundedSender<SegmentFinished>>, seg: SegmentFinished) {
    if let Some(tx) = segments {
        let _ = tx.send(seg);
    }
}

/// Waits for every camera supervisor to end (they saw the shutdown and drain their segments).
async fn stop_cameras(cams: Vec<CameraHandle>) {
    for cam in cams {
        if let Err(e) = cam.task.await {
            warn!(camera = %cam.id, error = %e, "camera task ended abnormally");
        }
    }
}

/// The live threads saw the same shutdown; give their senders a moment to close.
async fn stop_live(lives: Vec<LiveHandle>) {
    let _ = tokio::task::spawn_blocking(move || {
        for l in lives {
            l.join(Duration::from_secs(3));
        }
    })
    .await;
}

async fn wait_until_started(cams: &mut [CameraHandle], shutdown: &CancellationToken) {
    let all_started = async {
        for cam in cams.iter_mut() {
            let _ = cam
                .state
                .wait_for(|s| !matches!(s, CameraState::Starting))
                .await;
        }
    };
    tokio::select! {
        _ = all_started => {}
        _ = tokio::time::sleep(READY_TIMEOUT) => {}
        _ = shutdown.cancelled() => {}
    }
}

/// Why the agent should not ping the watchdog, if it should not.
fn unhealthy(cams: &[CameraHandle]) -> Option<String> {
    cams.iter().find_map(|c| {
        if c.task.is_finished() {
            Some(format!("supervisor of camera {} ended", c.id))
        } else if c.heartbeat_age() > HEARTBEAT_LIMIT {
            Some(format!(
                "supervisor of camera {} silent for {:.0} s",
                c.id,
                c.heartbeat_age().as_secs_f64()
            ))
        } else {
            None
        }
    })
}

/// One line for `systemctl status`: each camera and its state, and the disk.
fn status_line(cams: &[CameraHandle], disk: &watch::Receiver<DiskStatus>) -> String {
    let d = disk.borrow();
    let disk = format!(
        "disk: {} MB free{}",
        d.free_bytes / 1_000_000,
        if d.exhausted {
            " (below floor, nothing deletable)"
        } else {
            ""
        }
    );
    cams.iter()
        .map(|c| {
            let s = match &*c.state.borrow() {
                CameraState::Starting => "starting".to_owned(),
                CameraState::Recording { .. } => "recording".to_owned(),
                CameraState::Reconnecting { reason, .. } => format!("reconnecting ({reason})"),
                CameraState::Failed { reason } => format!("failed ({reason})"),
                CameraState::Stopped => "stopped".to_owned(),
            };
            format!("{}: {s}", c.id)
        })
        .chain(std::iter::once(disk))
        .collect::<Vec<_>>()
        .join("; ")
}
