//! Commands from the controller, their validation, and the results their `done` acks carry.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::ack::{Ack, RejectCode};
use super::health::{CameraState, LiveRung, LiveSetting};
use super::id::{HoldId, MessageId};
use super::upload::{SetUploadSetting, UploadMode};
use super::{FUTURE_TOLERANCE_MS, MAX_COMMAND_BYTES, SCHEMA_VERSION};
use crate::ids::CameraId;
use crate::manifest::{Hash256, Timestamp};

/// Longest excerpt of the offending input quoted in a rejection's message.
const MAX_DETAIL_CHARS: usize = 200;

/// Payload of `stationwatch/v1/<station>/cmd` (QoS 1, not retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CommandEnvelope {
    /// Schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    /// Chosen by the controller, unique per command; a repeated id is the same command.
    pub id: MessageId,
    /// When the controller issued the command (controller clock).
    pub issued_at: Timestamp,
    /// After this instant the command must not run (optional; the agent's maximum age applies
    /// in any case).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<Timestamp>,
    pub command: Command,
}

/// What to do, tagged by `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Command {
    /// Tear down the camera's pipeline and start it again. Recording of the camera pauses (a
    /// gap is recorded) and resumes.
    RestartCamera { camera: CameraId },
    /// Take a JPEG of the camera and publish it on `snapshot/<camera>`.
    Snapshot { camera: CameraId },
    /// Put a legal hold on `[from, to)`: no segment overlapping it is deleted by retention or to
    /// free space until the hold is cleared. Setting an existing hold id again replaces its
    /// window.
    SetHold {
        hold: HoldId,
        from: Timestamp,
        to: Timestamp,
        /// Only this camera; all cameras of the station when absent.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        camera: Option<CameraId>,
        /// Why (case number, complaint); required, kept with the hold.
        reason: String,
    },
    /// Remove a legal hold. Clearing a hold that does not exist is not an error.
    ClearHold { hold: HoldId },
    /// Answer with `done` at once; the ack's `at` shows the agent's clock.
    Ping,
    /// Choose what the camera streams live: `off`, `on` (always the main stream), `auto` (the
    /// agent picks the best rung its uplink carries), or `config` (drop the override and go
    /// back to the configured mode). The override is kept on disk and survives agent restarts.
    /// Recording is never affected.
    SetLive {
        camera: CameraId,
        mode: SetLiveSetting,
    },
    /// Upload `[from, to)` of the cameras to the archive. The window is held on the station
    /// (an implicit `request` hold) until every segment of it is archived. Sending the same job
    /// id again replaces its window. A window that is still being recorded is uploaded as it
    /// fills.
    Upload {
        job: MessageId,
        /// These cameras; all cameras of the station when empty.
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        cameras: Vec<CameraId>,
        from: Timestamp,
        to: Timestamp,
        /// Higher first among requested windows (default 0); then oldest first.
        #[serde(default)]
        priority: u8,
        /// Why (request id, complaint); required, kept with the implicit hold.
        reason: String,
    },
    /// Drop an upload job and its implicit hold (what is archived stays archived).
    CancelUpload { job: MessageId },
    /// Choose what uploads without being asked, for one camera or (without `camera`) the
    /// station: `off`, `requested`, `all`, or `config` (drop the override). Kept on disk.
    SetUpload {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        camera: Option<CameraId>,
        mode: SetUploadSetting,
    },
    /// Approve the camera's current view as its reference (`approve: true`: from now on the
    /// agent also reports the picture blurred or moved against it), or reset it (`false`: the
    /// camera is unapproved until approved again, e.g. after it was replaced). Kept on disk.
    SetView {
        camera: CameraId,
        approve: bool,
        /// Who decided, for the agent's log and store.
        #[serde(default)]
        by: String,
        /// With `approve: false`: the view was refused, and why (e.g. "voting booth visible");
        /// the agent keeps and reports it so the technician on site sees it. Without it, a
        /// reset.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
    },
    /// The camera's privacy masks as the controller stores them (`crate::masks`): the agent
    /// keeps them on disk and reports their digest in health. An empty list removes them.
    SetMasks {
        camera: CameraId,
        masks: Vec<crate::masks::Polygon>,
    },
}

/// Longest window one `upload` command may ask for (31 days).
pub const MAX_UPLOAD_WINDOW_MS: i64 = 31 * 24 * 3600 * 1000;

/// The `mode` of a [`Command::SetLive`]: a [`LiveSetting`], or `config`. Strict: any other
/// value rejects the command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SetLiveSetting {
    Off,
    On,
    Auto,
    /// Remove the override: the camera's configured `live` mode applies again.
    Config,
}

impl SetLiveSetting {
    /// The override it sets (`None`: back to the configured setting).
    pub fn setting(self) -> Option<LiveSetting> {
        match self {
            SetLiveSetting::Off => Some(LiveSetting::Off),
            SetLiveSetting::On => Some(LiveSetting::On),
            SetLiveSetting::Auto => Some(LiveSetting::Auto),
            SetLiveSetting::Config => None,
        }
    }
}

/// The kinds of [`Command`], without their fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum CommandKind {
    RestartCamera,
    Snapshot,
    SetHold,
    ClearHold,
    Ping,
    SetLive,
    Upload,
    CancelUpload,
    SetUpload,
    SetView,
    SetMasks,
}

impl CommandKind {
    pub const ALL: [CommandKind; 11] = [
        CommandKind::RestartCamera,
        CommandKind::Snapshot,
        CommandKind::SetHold,
        CommandKind::ClearHold,
        CommandKind::Ping,
        CommandKind::SetLive,
        CommandKind::Upload,
        CommandKind::CancelUpload,
        CommandKind::SetUpload,
        CommandKind::SetView,
        CommandKind::SetMasks,
    ];

    /// The `kind` string.
    pub fn name(self) -> &'static str {
        match self {
            CommandKind::RestartCamera => "restart_camera",
            CommandKind::Snapshot => "snapshot",
            CommandKind::SetHold => "set_hold",
            CommandKind::ClearHold => "clear_hold",
            CommandKind::Ping => "ping",
            CommandKind::SetLive => "set_live",
            CommandKind::Upload => "upload",
            CommandKind::CancelUpload => "cancel_upload",
            CommandKind::SetUpload => "set_upload",
            CommandKind::SetView => "set_view",
            CommandKind::SetMasks => "set_masks",
        }
    }

    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.name() == name)
    }
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl Command {
    pub fn kind(&self) -> CommandKind {
        match self {
            Command::RestartCamera { .. } => CommandKind::RestartCamera,
            Command::Snapshot { .. } => CommandKind::Snapshot,
            Command::SetHold { .. } => CommandKind::SetHold,
            Command::ClearHold { .. } => CommandKind::ClearHold,
            Command::Ping => CommandKind::Ping,
            Command::SetLive { .. } => CommandKind::SetLive,
            Command::Upload { .. } => CommandKind::Upload,
            Command::CancelUpload { .. } => CommandKind::CancelUpload,
            Command::SetUpload { .. } => CommandKind::SetUpload,
            Command::SetView { .. } => CommandKind::SetView,
            Command::SetMasks { .. } => CommandKind::SetMasks,
        }
    }
}

impl CommandEnvelope {
    /// A command issued at `issued_at`, without an expiry.
    pub fn new(id: MessageId, issued_at: Timestamp, command: Command) -> Self {
        CommandEnvelope {
            v: SCHEMA_VERSION,
            id,
            issued_at,
            expires_at: None,
            command,
        }
    }

    /// Compact JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }

    /// The checks [`decode_command`] makes after the payload parsed: version, age, expiry,
    /// cameras of this station, hold window and reason.
    pub fn check(
        &self,
        now: Timestamp,
        max_age_ms: i64,
        station_cameras: &[CameraId],
    ) -> Result<(), RejectReason> {
        if self.v != SCHEMA_VERSION {
            return Err(RejectReason::UnsupportedVersion(u64::from(self.v)));
        }
        let age_ms = now.ms_since(self.issued_at);
        let max_age_ms = max_age_ms.max(0);
        if age_ms > max_age_ms {
            return Err(RejectReason::Stale { age_ms, max_age_ms });
        }
        if age_ms < -FUTURE_TOLERANCE_MS {
            return Err(RejectReason::FromTheFuture { ahead_ms: -age_ms });
        }
        if let Some(expires_at) = self.expires_at {
            if expires_at < self.issued_at {
                return Err(RejectReason::Malformed(
                    "expires_at is before issued_at".into(),
                ));
            }
            if now > expires_at {
                return Err(RejectReason::Expired {
                    ago_ms: now.ms_since(expires_at),
                });
            }
        }
        let known = |camera: &CameraId| {
            if station_cameras.contains(camera) {
                Ok(())
            } else {
                Err(RejectReason::UnknownCamera(camera.clone()))
            }
        };
        match &self.command {
            Command::RestartCamera { camera }
            | Command::Snapshot { camera }
            | Command::SetLive { camera, .. } => known(camera)?,
            Command::SetView {
                camera,
                approve,
                refused,
                ..
            } => {
                known(camera)?;
                match refused {
                    Some(_) if *approve => {
                        return Err(RejectReason::Malformed(
                            "set_view cannot both approve and refuse".into(),
                        ))
                    }
                    Some(r) if r.trim().is_empty() => {
                        return Err(RejectReason::Malformed(
                            "set_view refusing a view needs a non-empty reason".into(),
                        ))
                    }
                    _ => {}
                }
            }
            Command::SetMasks { camera, masks } => {
                known(camera)?;
                crate::masks::validate(masks).map_err(RejectReason::Malformed)?;
            }
            Command::SetHold {
                from,
                to,
                camera,
                reason,
                ..
            } => {
                if let Some(camera) = camera {
                    known(camera)?;
                }
                if from >= to {
                    return Err(RejectReason::InvalidWindow {
                        from: *from,
                        to: *to,
                    });
                }
                if reason.trim().is_empty() {
                    return Err(RejectReason::Malformed(
                        "set_hold needs a non-empty reason".into(),
                    ));
                }
            }
            Command::Upload {
                cameras,
                from,
                to,
                reason,
                ..
            } => {
                for camera in cameras {
                    known(camera)?;
                }
                if from >= to {
                    return Err(RejectReason::InvalidWindow {
                        from: *from,
                        to: *to,
                    });
                }
                if to.ms_since(*from) > MAX_UPLOAD_WINDOW_MS {
                    return Err(RejectReason::Malformed(format!(
                        "upload window is longer than {} days; split it",
                        MAX_UPLOAD_WINDOW_MS / 86_400_000
                    )));
                }
                if reason.trim().is_empty() {
                    return Err(RejectReason::Malformed(
                        "upload needs a non-empty reason".into(),
                    ));
                }
            }
            Command::SetUpload {
                camera: Some(camera),
                ..
            } => known(camera)?,
            Command::ClearHold { .. }
            | Command::Ping
            | Command::CancelUpload { .. }
            | Command::SetUpload { camera: None, .. } => {}
        }
        Ok(())
    }
}

/// Why a command is refused (or, with [`RejectReason::Failed`], why it failed after it was
/// accepted). On the wire it becomes an [`super::AckReason`]: [`RejectReason::code`] and the
/// `Display` text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RejectReason {
    #[error("payload is {size} bytes, at most {max} are accepted")]
    TooLarge { size: usize, max: usize },
    #[error("{0}")]
    Malformed(String),
    #[error("schema version {0} is not supported (this agent speaks version {SCHEMA_VERSION})")]
    UnsupportedVersion(u64),
    #[error("unknown command kind {0:?}")]
    UnknownCommand(String),
    #[error("issued {age_ms} ms ago, more than the maximum age of {max_age_ms} ms")]
    Stale { age_ms: i64, max_age_ms: i64 },
    #[error("expired {ago_ms} ms ago")]
    Expired { ago_ms: i64 },
    #[error("issued {ahead_ms} ms ahead of the agent's clock")]
    FromTheFuture { ahead_ms: i64 },
    #[error("camera {0:?} is not a camera of this station")]
    UnknownCamera(CameraId),
    #[error("hold window {from}..{to} is empty or reversed")]
    InvalidWindow { from: Timestamp, to: Timestamp },
    #[error("{0}")]
    Failed(String),
}

impl RejectReason {
    /// The machine-readable code sent in the ack.
    pub fn code(&self) -> RejectCode {
        match self {
            RejectReason::TooLarge { .. } => RejectCode::TooLarge,
            RejectReason::Malformed(_) => RejectCode::Malformed,
            RejectReason::UnsupportedVersion(_) => RejectCode::UnsupportedVersion,
            RejectReason::UnknownCommand(_) => RejectCode::UnknownCommand,
            RejectReason::Stale { .. } => RejectCode::Stale,
            RejectReason::Expired { .. } => RejectCode::Expired,
            RejectReason::FromTheFuture { .. } => RejectCode::FromTheFuture,
            RejectReason::UnknownCamera(_) => RejectCode::UnknownCamera,
            RejectReason::InvalidWindow { .. } => RejectCode::InvalidWindow,
            RejectReason::Failed(_) => RejectCode::Failed,
        }
    }
}

/// A refused command: the reason, and the command's id when the payload revealed a valid one
/// (so that the `rejected` ack can name it).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("command {} rejected: {reason}", id.as_ref().map_or("(no id)", |id| id.as_str()))]
pub struct Rejection {
    pub id: Option<MessageId>,
    pub reason: RejectReason,
}

impl Rejection {
    /// The `rejected` ack answering this rejection.
    pub fn ack(&self, at: Timestamp) -> Ack {
        Ack::rejected(self.id.clone(), at, &self.reason)
    }
}

/// Reads a command payload without judging it: its `id`, if it is a JSON object of at most
/// [`MAX_COMMAND_BYTES`] with a valid string `id`.
pub fn peek_command_id(payload: &[u8]) -> Option<MessageId> {
    if payload.len() > MAX_COMMAND_BYTES {
        return None;
    }
    let value: Value = serde_json::from_slice(payload).ok()?;
    let id = value.as_object()?.get("id")?.as_str()?;
    MessageId::new(id).ok()
}

/// Decodes and validates a command payload received on the station's `cmd` topic.
///
/// Never panics. In order, a payload is rejected when it is larger than [`MAX_COMMAND_BYTES`]
/// (`too_large`), not a JSON object (`malformed`), without a valid `id` (`malformed`, no id),
/// without an integer `v` (`malformed`) or with `v` other than 1 (`unsupported_version`), with a
/// `command.kind` this version does not know (`unknown_command`), with any field missing, of
/// the wrong type or repeated (`malformed`), issued more than `max_age_ms` before `now`
/// (`stale`) or more than [`FUTURE_TOLERANCE_MS`] after it (`from_the_future`), past its
/// `expires_at` (`expired`), naming a camera not in `station_cameras` (`unknown_camera`), or
/// setting a hold on an empty window (`invalid_window`). Unknown fields are ignored.
pub fn decode_command(
    payload: &[u8],
    now: Timestamp,
    max_age_ms: i64,
    station_cameras: &[CameraId],
) -> Result<CommandEnvelope, Rejection> {
    let reject = |id: Option<&MessageId>, reason| Rejection {
        id: id.cloned(),
        reason,
    };
    let malformed = |id: Option<&MessageId>, detail: String| {
        reject(id, RejectReason::Malformed(truncate(&detail)))
    };
    if payload.len() > MAX_COMMAND_BYTES {
        return Err(reject(
            None,
            RejectReason::TooLarge {
                size: payload.len(),
                max: MAX_COMMAND_BYTES,
            },
        ));
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| malformed(None, format!("not JSON: {e}")))?;
    let Some(obj) = value.as_object() else {
        return Err(malformed(None, "not a JSON object".into()));
    };
    let id = match obj.get("id") {
        None => return Err(malformed(None, "missing field `id`".into())),
        Some(Value::String(s)) => {
            MessageId::new(s.as_str()).map_err(|e| malformed(None, format!("id {e}")))?
        }
        Some(_) => return Err(malformed(None, "`id` must be a string".into())),
    };
    let id = Some(&id);
    match obj.get("v").map(Value::as_u64) {
        None => return Err(malformed(id, "missing field `v`".into())),
        Some(None) => return Err(malformed(id, "`v` must be a non-negative integer".into())),
        Some(Some(v)) if v != u64::from(SCHEMA_VERSION) => {
            return Err(reject(id, RejectReason::UnsupportedVersion(v)))
        }
        Some(Some(_)) => {}
    }
    let command = match obj.get("command") {
        None => return Err(malformed(id, "missing field `command`".into())),
        Some(Value::Object(command)) => command,
        Some(_) => return Err(malformed(id, "`command` must be an object".into())),
    };
    let kind = match command.get("kind") {
        None => return Err(malformed(id, "missing field `command.kind`".into())),
        Some(Value::String(kind)) => kind,
        Some(_) => return Err(malformed(id, "`command.kind` must be a string".into())),
    };
    if CommandKind::from_name(kind).is_none() {
        return Err(reject(id, RejectReason::UnknownCommand(truncate(kind))));
    }
    // The typed parse also refuses repeated fields, which the `Value` above silently merged.
    let envelope: CommandEnvelope =
        serde_json::from_slice(payload).map_err(|e| malformed(id, e.to_string()))?;
    envelope
        .check(now, max_age_ms, station_cameras)
        .map_err(|reason| reject(id, reason))?;
    Ok(envelope)
}

/// At most [`MAX_DETAIL_CHARS`] characters of `s`, with `…` when cut.
fn truncate(s: &str) -> String {
    match s.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((cut, _)) => format!("{}…", s.get(..cut).unwrap_or_default()),
        None => s.to_string(),
    }
}

/// `result` of the `done` ack of `restart_camera`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestartCameraResult {
    pub camera: CameraId,
    /// The camera's state once its pipeline was started again.
    #[serde(default)]
    pub state: CameraState,
}

/// `result` of the `done` ack of `snapshot`. The JPEG itself was published on `topic` before
/// this ack; its SHA-256 ties the two together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotResult {
    pub camera: CameraId,
    /// Where the JPEG was published: `stationwatch/v1/<station>/snapshot/<camera>`.
    pub topic: String,
    pub taken_at: Timestamp,
    /// Size of the JPEG.
    pub bytes: u64,
    /// SHA-256 of the JPEG.
    pub sha256: Hash256,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub height: Option<u32>,
}

/// `result` of the `done` ack of `set_hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetHoldResult {
    pub hold: HoldId,
    /// Whether an existing hold of this id was replaced.
    #[serde(default)]
    pub replaced: bool,
    /// Segments on disk now covered by the hold.
    #[serde(default)]
    pub segments: u64,
}

/// `result` of the `done` ack of `clear_hold`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClearHoldResult {
    pub hold: HoldId,
    /// Whether the hold existed (clearing an unknown hold is `done` too).
    #[serde(default)]
    pub existed: bool,
}

/// `result` of the `done` ack of `set_view`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetViewResult {
    pub camera: CameraId,
    pub approved: bool,
    /// When the picture taken as the reference was analysed (agent clock); absent on a reset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference_at: Option<Timestamp>,
}

/// `result` of the `done` ack of `set_masks`: what the agent keeps now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetMasksResult {
    pub camera: CameraId,
    pub masks: u32,
    /// `crate::masks::digest` of the masks kept; `""` for none.
    #[serde(default)]
    pub digest: String,
}

/// `result` of the `done` ack of `set_live`: the camera's live settings once applied.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetLiveResult {
    pub camera: CameraId,
    /// The mode now in force (`config` resolves to the configured mode).
    #[serde(default)]
    pub mode: LiveSetting,
    /// Whether an override is in force (false after `config`).
    #[serde(default)]
    pub overridden: bool,
    /// What the camera streams at the moment the command was applied; the change itself
    /// follows within seconds and is reported by a `live_changed` event.
    #[serde(default)]
    pub rung: LiveRung,
}

/// `result` of the `done` ack of `ping`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PingResult {
    #[serde(default)]
    pub agent_version: String,
    #[serde(default)]
    pub uptime_s: u64,
}

/// `result` of the `done` ack of `upload`: the job as queued (durable, held).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UploadResult {
    pub job: MessageId,
    /// The cameras it covers (all of the station's when the command named none).
    #[serde(default)]
    pub cameras: Vec<CameraId>,
    /// Whether an existing job of this id was replaced.
    #[serde(default)]
    pub replaced: bool,
}

/// `result` of the `done` ack of `cancel_upload`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CancelUploadResult {
    pub job: MessageId,
    #[serde(default)]
    pub existed: bool,
}

/// `result` of the `done` ack of `set_upload`: the mode now in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SetUploadResult {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub camera: Option<CameraId>,
    #[serde(default)]
    pub mode: UploadMode,
    /// Whether an override is in force (false after `config`).
    #[serde(default)]
    pub overridden: bool,
}
