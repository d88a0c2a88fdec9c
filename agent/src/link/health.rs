//! The health report and the events derived from changes, from measured figures only: camera
//! states and counters, the manifest heads, the disk, the kernel's clock state, load and
//! temperature.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use stationwatch_protocol::manifest::{Fingerprint, Hash256, Timestamp};
use stationwatch_protocol::mqtt::{
    hours_left, CameraHealth, CameraState as WireState, ClockHealth, DiskHealth, EventKind, Health,
    ManifestHead, SystemHealth, UplinkHealth, ViewHealth,
};
use stationwatch_protocol::CameraId;
use tokio::sync::watch;

use crate::live::LiveStatus;
use crate::retention::DiskStatus;
use crate::state::{CameraCounters, CameraState};
use crate::station::sysinfo::{self, BitrateMeter};
use stationwatch_protocol::mqtt::LiveRung;

/// One camera as the reporter sees it.
pub struct CameraView {
    pub id: CameraId,
    pub state: watch::Receiver<CameraState>,
    pub counters: Arc<CameraCounters>,
    /// The camera's live branch, when it has a live target.
    pub live: Option<watch::Receiver<LiveStatus>>,
    /// The camera's view analysis, unless it is turned off.
    pub view: Option<watch::Receiver<ViewHealth>>,
}

pub struct HealthCollector {
    cameras: Vec<CameraView>,
    meters: Vec<BitrateMeter>,
    disk: watch::Receiver<DiskStatus>,
    storage: PathBuf,
    facts: ReportFacts,
    started: Instant,
    /// Previous observations, for events.
    last_clock_synced: Option<bool>,
    last_disk_low: bool,
    /// The uploader's status, when uploads are configured.
    upload: Option<watch::Receiver<stationwatch_protocol::mqtt::UploadHealth>>,
}

/// What every report says about the agent itself, fixed for its run.
#[derive(Debug, Clone)]
pub struct ReportFacts {
    /// SHA-256 of the config file.
    pub config_hash: Hash256,
    pub fingerprint: Fingerprint,
    /// Seconds between reports.
    pub interval_s: u32,
    /// Target segment length, seconds.
    pub segment_s: u32,
    pub station_name: Option<String>,
    pub region: Option<String>,
}

impl HealthCollector {
    pub fn new(
        cameras: Vec<CameraView>,
        disk: watch::Receiver<DiskStatus>,
        storage: PathBuf,
        facts: ReportFacts,
    ) -> Self {
        Self {
            meters: cameras.iter().map(|_| BitrateMeter::new()).collect(),
            cameras,
            disk,
            storage,
            facts,
            started: Instant::now(),
            last_clock_synced: None,
            last_disk_low: false,
            upload: None,
        }
    }

    /// Reports the uploader's status in the `upload` section.
    pub fn set_upload(
        &mut self,
        status: watch::Receiver<stationwatch_protocol::mqtt::UploadHealth>,
    ) {
        self.upload = Some(status);
    }

    pub fn camera_ids(&self) -> Vec<CameraId> {
        self.cameras.iter().map(|c| c.id.clone()).collect()
    }

    pub fn uptime_s(&self) -> u64 {
        self.started.elapsed().as_secs()
    }

    /// The current state of a camera, as the wire names it.
    pub fn wire_state(&self, camera: &CameraId) -> WireState {
        self.cameras
            .iter()
            .find(|c| &c.id == camera)
            .map_or(WireState::Unknown, |c| wire(&c.state.borrow()).0)
    }

    /// A full report. Rates are averaged since the previous report.
    pub fn report(&mut self) -> Health {
        let now = Instant::now();
        let mut h = Health::new(Timestamp::now());
        h.interval_s = self.facts.interval_s;
        h.segment_s = Some(self.facts.segment_s);
        h.agent.station_name = self.facts.station_name.clone();
        h.agent.region = self.facts.region.clone();
        h.agent.version = env!("CARGO_PKG_VERSION").to_owned();
        h.agent.config_hash = Some(self.facts.config_hash);
        h.agent.key_fingerprint = Some(self.facts.fingerprint);
        h.agent.uptime_s = self.uptime_s();
        h.agent.system_uptime_s = sysinfo::uptime().map(|d| d.as_secs());
        let mut total_bps = 0.0;
        for (cam, meter) in self.cameras.iter().zip(self.meters.iter_mut()) {
            let c = &cam.counters;
            let rate = meter.sample(now, c.frames(), c.bytes());
            let (state, detail) = wire(&cam.state.borrow());
            if let Some(r) = &rate {
                total_bps += r.bitrate_bps;
            }
            h.cameras.insert(
                cam.id.clone(),
                CameraHealth {
                    state,
                    fps: rate.as_ref().map(|r| (r.fps * 10.0).round() / 10.0),
                    bitrate_bps: rate.as_ref().map(|r| r.bitrate_bps.round() as u64),
                    last_segment_end: c.last_segment_end(),
                    manifest: c
                        .manifest_head()
                        .map(|(next_seq, prev)| ManifestHead { next_seq, prev }),
                    detail,
                    live: cam.live.as_ref().map(|l| l.borrow().wire()),
                    view: cam.view.as_ref().map(|v| v.borrow().clone()),
                },
            );
        }
        h.uplink = uplink(&self.cameras);
        h.upload = self.upload.as_ref().map(|u| u.borrow().clone());
        let status = self.disk.borrow().clone();
        h.holds_file_error = status.holds_file_error.clone();
        if let Some(space) = sysinfo::disk_space(&self.storage) {
            h.disk = Some(DiskHealth {
                free_bytes: space.free_bytes,
                total_bytes: space.total_bytes,
                hours_left: hours_left(space.free_bytes, total_bps as u64),
                low: status.exhausted || space.free_bytes < status.floor_bytes,
            });
        }
        let clock = sysinfo::clock_sync();
        h.clock = Some(ClockHealth {
            synced: clock.synced,
            est_error_us: clock.est_error_us,
            max_error_us: clock.max_error_us,
        });
        let load = sysinfo::load_average();
        h.system = SystemHealth {
            load_1m: load.map(|l| l[0]),
            load_5m: load.map(|l| l[1]),
            load_15m: load.map(|l| l[2]),
            temperature_c: sysinfo::max_celsius(&sysinfo::temperatures()),
            ..SystemHealth::default()
        };
        h
    }

    /// What changed since the last call: clock and disk conditions. (Cameras report their own
    /// losses and returns, from their supervisors.)
    pub fn poll_events(&mut self) -> Vec<EventKind> {
        let mut out = Vec::new();
        let clock = sysinfo::clock_sync();
        if self.last_clock_synced != Some(clock.synced) {
            // The first observation is reported only when it is bad.
            if clock.synced && self.last_clock_synced.is_some() {
                out.push(EventKind::ClockSynced {
                    est_error_us: clock.est_error_us,
                });
            } else if !clock.synced {
                out.push(EventKind::ClockUnsynced {
                    est_error_us: clock.est_error_us,
                    max_error_us: clock.max_error_us,
                });
            }
            self.last_clock_synced = Some(clock.synced);
        }
        let status = self.disk.borrow().clone();
        let low = status.exhausted;
        if low != self.last_disk_low {
            let free_bytes = status.free_bytes;
            out.push(if low {
                EventKind::DiskLow {
                    free_bytes,
                    hours_left: None,
                }
            } else {
                EventKind::DiskOk {
                    free_bytes,
                    hours_left: None,
                }
            });
            self.last_disk_low = low;
        }
        out
    }
}

/// The station's live summary: its best rung over the cameras and the largest estimate.
fn uplink(cameras: &[CameraView]) -> Option<UplinkHealth> {
    let lives: Vec<LiveStatus> = cameras
        .iter()
        .filter_map(|c| c.live.as_ref().map(|l| l.borrow().clone()))
        .collect();
    if lives.is_empty() {
        return None;
    }
    let live = if lives.iter().any(|l| l.rung == LiveRung::Main) {
        LiveRung::Main
    } else if lives.iter().any(|l| l.rung == LiveRung::Sub) {
        LiveRung::Sub
    } else {
        LiveRung::Off
    };
    Some(UplinkHealth {
        live,
        estimated_bps: lives.iter().filter_map(|l| l.uplink_bps).max(),
        upload_backlog_s: None,
    })
}

fn wire(s: &CameraState) -> (WireState, Option<String>) {
    match s {
        CameraState::Starting => (WireState::Starting, None),
        CameraState::Recording { .. } => (WireState::Recording, None),
        CameraState::Reconnecting { reason, .. } => (WireState::Lost, Some(reason.clone())),
        CameraState::Failed { reason } => (WireState::Failed, Some(reason.clone())),
        CameraState::Stopped => (WireState::Stopped, None),
    }
}
