//! The compact figures of a health report kept for the station page's chart.

use serde_json::{json, Value};
use stationwatch_protocol::mqtt::{CameraState, Health};

/// Cameras recording, total bitrate, disk hours left and free bytes, load, temperature, clock,
/// upload backlog and rate.
pub fn figures(h: &Health) -> Value {
    let recording = h
        .cameras
        .values()
        .filter(|c| c.state == CameraState::Recording)
        .count();
    let bitrate: u64 = h.cameras.values().filter_map(|c| c.bitrate_bps).sum();
    json!({
        "cameras": h.cameras.len(),
        "recording": recording,
        "bitrate_bps": bitrate,
        "hours_left": h.disk.as_ref().and_then(|d| d.hours_left),
        "free_bytes": h.disk.as_ref().map(|d| d.free_bytes),
        "load_1m": h.system.load_1m,
        "temperature_c": h.system.temperature_c,
        "clock_synced": h.clock.as_ref().map(|c| c.synced),
        "upload_backlog_bytes": h.upload.as_ref().map(|u| u.backlog_bytes),
        "upload_rate_bps": h.upload.as_ref().map(|u| u.rate_bps),
    })
}
