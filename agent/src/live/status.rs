//! A camera's live status as the rest of the agent (health, commands) sees it, and its wire
//! form.

use stationwatch_protocol::mqtt::{LiveRung, LiveSetting, LiveState};

/// A camera's live state as the rest of the agent sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveStatus {
    pub mode: LiveSetting,
    pub overridden: bool,
    pub rung: LiveRung,
    pub state: LiveState,
    pub uplink_bps: Option<u64>,
    pub send_bps: Option<u64>,
    pub rtt_ms: Option<f64>,
    pub loss: Option<f64>,
    pub reason: String,
}

impl LiveStatus {
    pub fn wire(&self) -> stationwatch_protocol::mqtt::CameraLive {
        stationwatch_protocol::mqtt::CameraLive {
            mode: self.mode,
            overridden: self.overridden,
            rung: self.rung,
            state: self.state,
            uplink_bps: self.uplink_bps,
            send_bps: self.send_bps,
            rtt_ms: self.rtt_ms.map(|r| (r * 10.0).round() / 10.0),
            loss: self.loss.map(|l| (l * 1000.0).round() / 1000.0),
            reason: (!self.reason.is_empty()).then(|| self.reason.clone()),
        }
    }
}
