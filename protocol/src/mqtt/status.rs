//! The retained online/offline status and the last will.

use serde::{Deserialize, Serialize};

use super::SCHEMA_VERSION;
use crate::manifest::Timestamp;

/// The last will an agent registers on `status`: `offline` because the connection was lost.
/// (Fixed bytes, so that building the CONNECT packet cannot fail; equal to
/// `Status::lost().to_json()`.)
pub const LAST_WILL_PAYLOAD: &str = r#"{"v":1,"state":"offline","reason":"lost"}"#;

/// Payload of `stationwatch/v1/<station>/status` (retained).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Status {
    /// Schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    #[serde(default)]
    pub state: StatusState,
    /// When the agent went online or offline. Absent in the last will (the broker sends it
    /// later, at a time the agent cannot know).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub at: Option<Timestamp>,
    /// Why the agent is offline (only with `offline`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<OfflineReason>,
    /// The agent's version (only with `online`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent_version: Option<String>,
}

/// Online or offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StatusState {
    Online,
    Offline,
    /// A state this version does not know (sent by a newer agent).
    #[default]
    #[serde(other)]
    Unknown,
}

/// Why an agent is offline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OfflineReason {
    /// The agent stopped cleanly and said so itself.
    Shutdown,
    /// The broker lost the connection and published the agent's last will.
    Lost,
    /// A reason this version does not know.
    #[serde(other)]
    Unknown,
}

impl Status {
    /// What the agent publishes (retained) right after connecting.
    pub fn online(at: Timestamp, agent_version: impl Into<String>) -> Self {
        Status {
            v: SCHEMA_VERSION,
            state: StatusState::Online,
            at: Some(at),
            reason: None,
            agent_version: Some(agent_version.into()),
        }
    }

    /// What the agent publishes (retained) before disconnecting cleanly.
    pub fn shutdown(at: Timestamp) -> Self {
        Status {
            v: SCHEMA_VERSION,
            state: StatusState::Offline,
            at: Some(at),
            reason: Some(OfflineReason::Shutdown),
            agent_version: None,
        }
    }

    /// The last will (see [`LAST_WILL_PAYLOAD`]).
    pub fn lost() -> Self {
        Status {
            v: SCHEMA_VERSION,
            state: StatusState::Offline,
            at: None,
            reason: Some(OfflineReason::Lost),
            agent_version: None,
        }
    }

    /// Compact JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}
