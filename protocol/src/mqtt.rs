//! The MQTT protocol between station agents and controllers.
//!
//! Specified in `docs/mqtt.md`; this module is its reference implementation and is pure: it
//! builds and parses topics and payloads but never opens a connection, so agent, controller and
//! tests agree on the bytes without depending on an MQTT client.
//!
//! * Topics: [`Topics`] (one station's tree), [`parse_topic`] (what a controller receives),
//!   [`TopicKind::spec`] (direction, QoS, retained), [`filters`], [`controller_subscriptions`],
//!   [`LastWill`].
//! * Agent → controller payloads: [`Status`], [`Health`], [`Event`], [`Ack`], read with
//!   [`decode_status`], [`decode_health`], [`decode_event`], [`decode_ack`] (size-capped,
//!   version-checked, unknown fields and unknown enum values tolerated).
//! * Controller → agent: [`CommandEnvelope`], read with [`decode_command`], which never panics
//!   and turns every refusal into a [`Rejection`] that [`Rejection::ack`] answers;
//!   [`CommandLog::handle`] adds idempotency by command id on top.
//!
//! Every JSON payload starts with `"v": 1` ([`SCHEMA_VERSION`]).

mod ack;
mod command;
mod decode;
mod event;
mod health;
mod id;
mod status;
mod topic;
mod upload;

#[cfg(test)]
mod docs_tests;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use ack::{Ack, AckReason, AckStatus, CommandLog, Handling, RejectCode};
pub use command::{
    decode_command, peek_command_id, CancelUploadResult, ClearHoldResult, Command, CommandEnvelope,
    CommandKind, PingResult, RejectReason, Rejection, RestartCameraResult, SetHoldResult,
    SetLiveResult, SetLiveSetting, SetMasksResult, SetUploadResult, SetViewResult, SnapshotResult,
    UploadResult, MAX_UPLOAD_WINDOW_MS,
};
pub use decode::{decode_ack, decode_event, decode_health, decode_status, DecodeError};
pub use event::{Event, EventKind, OrUnknown};
pub use health::{
    hours_left, AgentInfo, CameraHealth, CameraLive, CameraState, ClockHealth, DiskHealth, Health,
    LiveRung, LiveSetting, LiveState, ManifestHead, PowerHealth, SystemHealth, UplinkHealth,
    ViewDecision, ViewDecisionState, ViewHealth, ViewProblem, ViewProblemKind,
};
pub use id::{HoldId, MessageId, MessageIdError, MAX_MESSAGE_ID_LEN};
pub use status::{OfflineReason, Status, StatusState, LAST_WILL_PAYLOAD};
pub use topic::{
    controller_subscriptions, filters, parse_topic, shared, unmount, validate_mount_point,
    Direction, LastWill, MountPointError, QoS, Subscription, TopicKind, TopicSpec, Topics,
    SHARED_GROUP, TOPIC_ROOT,
};
pub use upload::{SetUploadSetting, UploadHealth, UploadJobHealth, UploadJobState, UploadMode};

/// The schema version written in every payload's `v` field, and the `v1` of [`TOPIC_ROOT`].
pub const SCHEMA_VERSION: u32 = 1;

/// Largest command payload an agent reads; larger ones are rejected unread.
pub const MAX_COMMAND_BYTES: usize = 16 * 1024;

/// Largest status, health, event or ack payload a controller reads.
pub const MAX_JSON_BYTES: usize = 64 * 1024;

/// Largest snapshot (JPEG) an agent publishes. The broker's `message_size_limit` must allow it.
pub const MAX_SNAPSHOT_BYTES: usize = 1024 * 1024;

/// Default seconds between two health reports.
pub const DEFAULT_HEALTH_INTERVAL_S: u32 = 15;

/// Default maximum age of a command, in milliseconds: older ones are rejected as stale.
pub const DEFAULT_COMMAND_MAX_AGE_MS: i64 = 5 * 60 * 1000;

/// How far, in milliseconds, a command's `issued_at` may lie ahead of the agent's clock before it
/// is rejected as coming from the future (clock skew between controller and station).
pub const FUTURE_TOLERANCE_MS: i64 = 60 * 1000;

/// Default number of command ids a [`CommandLog`] remembers.
pub const DEFAULT_COMMAND_LOG_CAPACITY: usize = 1024;
