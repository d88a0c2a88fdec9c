//! The agent as a whole: start every camera, report readiness and liveness to systemd, and stop
//! cleanly (closing every open segment) when asked.

use std::time::Duration;

use stationwatch_protocol::manifest::Hash256;
use tokio::sync::mpsc::unbounded_channel;
use tokio::sync::{watch, Notify};
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
pub async fn run(
    config: AgentConfig,
    shutdown: CancellationToken,
    segments: Option<tokio::sync::mpsc::UnboundedSender<SegmentFinished>>,
) -> Result<(), AgentError> {
    gst::init()?;
    let storage_err = |source| AgentError::Storage {
        path: config.storage.path.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&config.storage.path).map_err(storage_err)?;
    info!(
        station = %config.station,
        cameras = config.cameras.len(),
        storage = %config.storage.path.display(),
        segment_s = config.storage.segment.as_secs(),
        version = env!("CARGO_PKG_VERSION"),
        "agent starting"
    );

    let key = Arc::new(keys::load_or_generate(&config.station_key)?);
    let (fin_tx, mut fin_rx) = unbounded_channel();
    // Events for the controller, when there is one.
    let (events_tx, events_rx) = unbounded_channel();
    let events_tx = config.mqtt.is_some().then_some(events_tx);
    let ctx = CameraContext {
        station: config.station.clone(),
        storage: config.storage.clone(),
        supervision: config.supervision.clone(),
        key,
        rebooted: ledger::rebooted_since_last_start(&config.storage.path),
        finished: fin_tx,
        storage_pressure: Arc::new(Notify::new()),
        events: events_tx,
    };
    let mut cams = Vec::new();
    for cam in &config.cameras {
        let handle =
            camera::spawn(&ctx, cam.clone(), shutdown.child_token()).map_err(storage_err)?;
        cams.push(handle);
    }
    // Live branches: one supervisor thread per camera with a live target, fed by the camera's
    // leaky tap; nothing it does reaches the recording (live.rs).
    let overrides = Arc::new(LiveOverrides::open(&config.storage.path));
    let mut lives: Vec<LiveHandle> = Vec::new();
    for (cam, handle) in config.cameras.iter().zip(&cams) {
        let (Some(live_cfg), Some(feed)) = (&cam.live, &handle.live_feed) else {
            continue;
        };
        let spawned = live::spawn(
            LiveContext {
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
    // Backfill seam: a future uploader of recorded segments takes each `LiveHandle::uplink`
    // (what the link carries and what the live streams leave spare) and sends no faster.
    let holds = Arc::new(HoldStore::open(
        &config.storage.path,
        config.retention.holds.clone(),
    ));
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
    let retention_task =
        tokio::spawn(retention.run(ctx.storage_pressure.clone(), shutdown.child_token()));
    // The link to the controller stops after the cameras, so their last events go out.
    let mqtt_stop = CancellationToken::new();
    let mqtt_task = match &config.mqtt {
        Some(m) => {
            let config_bytes = std::fs::read(&config.file).unwrap_or_default();
            let health = HealthCollector::new(
                cams.iter()
                    .map(|c| CameraView {
                        id: c.id.clone(),
                        state: c.state.clone(),
                        counters: c.counters.clone(),
                        live: lives
                            .iter()
                            .find(|l| l.camera == c.id)
                            .map(|l| l.status.clone()),
                    })
                    .collect(),
                disk.clone(),
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
            let link = MqttContext {
                config: m.clone(),
                station: config.station.clone(),
                cameras: cams
                    .iter()
                    .map(|c| CameraControl {
                        id: c.id.clone(),
                        counters: c.counters.clone(),
                        restart: c.restart.clone(),
                        live: lives
                            .iter()
                            .find(|l| l.camera == c.id)
                            .map(|l| mqtt::LiveControl {
                                configured: l.configured,
                                status: l.status.clone(),
                                control: l.control.clone(),
                            }),
                    })
                    .collect(),
                live_overrides: overrides.clone(),
                health,
                holds: holds.clone(),
                events: events_rx,
            };
            let stop = mqtt_stop.clone();
            Some(tokio::spawn(async move {
                if let Err(e) = mqtt::run(link, stop).await {
                    error!(error = %e, "MQTT link failed; recording continues without reporting");
                }
            }))
        }
        None => {
            info!("no [mqtt] section: recording without reporting to a controller");
            None
        }
    };
    drop(ctx);

    wait_until_started(&mut cams, &shutdown).await;
    let status = status_line(&cams, &disk);
    info!(status = %status, "agent ready");
    service::ready(&status);

    let ping_every = service::watchdog_interval().unwrap_or(Duration::from_secs(5));
    let mut last_status = status;
    let mut tick = tokio::time::interval(ping_every.min(Duration::from_secs(5)));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => break,
            Some(seg) = fin_rx.recv() => {
                // Seam: manifest signing, health reporting and uploads consume finished
                // segments here.
                if let Some(tx) = &segments {
                    let _ = tx.send(seg);
                }
            }
            _ = tick.tick() => {
                match unhealthy(&cams) {
                    None => service::watchdog_ping(),
                    Some(why) => warn!(reason = %why, "supervisor unhealthy; withholding watchdog ping"),
                }
                let status = status_line(&cams, &disk);
                if status != last_status {
                    service::status(&status);
                    last_status = status;
                }
            }
        }
    }

    info!("agent stopping: closing open segments");
    service::stopping();
    let _ = retention_task.await;
    for cam in cams {
        if let Err(e) = cam.task.await {
            warn!(camera = %cam.id, error = %e, "camera task ended abnormally");
        }
    }
    while let Some(seg) = fin_rx.recv().await {
        if let Some(tx) = &segments {
            let _ = tx.send(seg);
        }
    }
    // The live threads saw the same shutdown; give their senders a moment to close.
    let _ = tokio::task::spawn_blocking(move || {
        for l in lives {
            l.join(Duration::from_secs(3));
        }
    })
    .await;
    mqtt_stop.cancel();
    if let Some(t) = mqtt_task {
        let _ = t.await;
    }
    info!("agent stopped");
    Ok(())
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
