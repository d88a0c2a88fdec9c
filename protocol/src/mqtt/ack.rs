//! Acknowledgements of commands, and the agent's memory of them (idempotency by command id).

use std::collections::{HashMap, VecDeque};

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::command::{decode_command, peek_command_id, CommandEnvelope, RejectReason};
use super::id::MessageId;
use super::SCHEMA_VERSION;
use crate::ids::CameraId;
use crate::manifest::Timestamp;

/// Payload of `stationwatch/v1/<station>/ack` (QoS 1, not retained).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Ack {
    /// Schema version, [`SCHEMA_VERSION`].
    pub v: u32,
    /// The command's id; `null` when a rejected payload had no valid id.
    pub id: Option<MessageId>,
    pub status: AckStatus,
    /// When the agent sent this ack (agent clock).
    pub at: Timestamp,
    /// With `done`: what the command produced (see the `*Result` types), if anything.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<Value>,
    /// With `rejected`: why.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<AckReason>,
}

/// Where a command stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AckStatus {
    /// Valid and being carried out; `done` or `rejected` follows.
    Accepted,
    /// Carried out; `result` says what came of it. Final.
    Done,
    /// Refused, or failed after `accepted` (code `failed`); `reason` says why. Final.
    Rejected,
    /// A status this version does not know.
    #[serde(other)]
    Unknown,
}

impl AckStatus {
    /// `done` and `rejected` are final: nothing follows them.
    pub fn is_final(self) -> bool {
        matches!(self, AckStatus::Done | AckStatus::Rejected)
    }
}

/// Why a command was rejected: a code for programs, a message for people.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AckReason {
    pub code: RejectCode,
    #[serde(default)]
    pub message: String,
}

/// Machine-readable rejection codes (see [`RejectReason`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectCode {
    TooLarge,
    Malformed,
    UnsupportedVersion,
    UnknownCommand,
    Stale,
    Expired,
    FromTheFuture,
    UnknownCamera,
    InvalidWindow,
    /// Accepted, then failed while being carried out.
    Failed,
    /// A code this version does not know.
    #[serde(other)]
    Unknown,
}

impl Ack {
    /// `accepted`: the command is valid and is being carried out.
    pub fn accepted(id: MessageId, at: Timestamp) -> Self {
        Ack {
            v: SCHEMA_VERSION,
            id: Some(id),
            status: AckStatus::Accepted,
            at,
            result: None,
            reason: None,
        }
    }

    /// `done`, with an optional result.
    pub fn done(id: MessageId, at: Timestamp, result: Option<Value>) -> Self {
        Ack {
            v: SCHEMA_VERSION,
            id: Some(id),
            status: AckStatus::Done,
            at,
            result,
            reason: None,
        }
    }

    /// `done`, with a typed result (e.g. [`super::SnapshotResult`]).
    pub fn done_with<T: Serialize>(
        id: MessageId,
        at: Timestamp,
        result: &T,
    ) -> Result<Self, serde_json::Error> {
        Ok(Self::done(id, at, Some(serde_json::to_value(result)?)))
    }

    /// `rejected`, for a refused command or (with [`RejectReason::Failed`]) a failed one.
    pub fn rejected(id: Option<MessageId>, at: Timestamp, reason: &RejectReason) -> Self {
        Ack {
            v: SCHEMA_VERSION,
            id,
            status: AckStatus::Rejected,
            at,
            result: None,
            reason: Some(AckReason {
                code: reason.code(),
                message: reason.to_string(),
            }),
        }
    }

    /// `rejected` with code `failed`: the command was accepted but could not be carried out.
    pub fn failed(id: MessageId, at: Timestamp, detail: impl Into<String>) -> Self {
        Self::rejected(Some(id), at, &RejectReason::Failed(detail.into()))
    }

    /// The result as a typed value; `None` without a result.
    pub fn result_as<T: DeserializeOwned>(&self) -> Option<Result<T, serde_json::Error>> {
        self.result
            .as_ref()
            .map(|r| serde_json::from_value(r.clone()))
    }

    /// Compact JSON bytes.
    pub fn to_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        serde_json::to_vec(self)
    }
}

/// What the agent does with a command payload, as [`CommandLog::handle`] decides.
#[derive(Debug, Clone, PartialEq)]
pub enum Handling {
    /// A new, valid command: publish `ack` (`accepted`), carry out `command`, then publish its
    /// `done` or `rejected` ack and [`CommandLog::record`] it.
    Execute { command: CommandEnvelope, ack: Ack },
    /// Publish `ack` and do nothing else. `repeat`: the id was seen before and `ack` is the
    /// latest ack sent for it; otherwise `ack` is a fresh rejection.
    Reply { ack: Ack, repeat: bool },
}

/// The agent's memory of recent command ids and the latest ack of each, so that a command
/// delivered twice (QoS 1, a controller retrying) is answered again with the same ack and not
/// carried out twice.
///
/// Bounded: beyond `capacity` ids, the oldest id is forgotten. With a capacity larger than the
/// number of commands a station receives within the maximum command age, a forgotten id can only
/// come back stale. The log is plain data; an agent may persist [`CommandLog::acks`] and
/// [`CommandLog::record`] them again after a restart.
#[derive(Debug, Clone)]
pub struct CommandLog {
    capacity: usize,
    /// Ids, oldest first.
    order: VecDeque<MessageId>,
    acks: HashMap<MessageId, Ack>,
}

impl CommandLog {
    /// A log remembering up to `capacity` ids (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        CommandLog {
            capacity,
            order: VecDeque::new(),
            acks: HashMap::new(),
        }
    }

    pub fn capacity(&self) -> usize {
        self.capacity
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// The latest ack recorded for `id`.
    pub fn get(&self, id: &MessageId) -> Option<&Ack> {
        self.acks.get(id)
    }

    /// The remembered acks, oldest id first.
    pub fn acks(&self) -> impl Iterator<Item = &Ack> + '_ {
        self.order.iter().filter_map(|id| self.acks.get(id))
    }

    /// Remembers `ack` as the latest for its id, forgetting the oldest id if the log is full.
    /// A final ack (`done`, `rejected`) is never replaced by a non-final one. Returns whether the
    /// ack was stored (not for an ack without id).
    pub fn record(&mut self, ack: Ack) -> bool {
        let Some(id) = ack.id.clone() else {
            return false;
        };
        if let Some(old) = self.acks.get_mut(&id) {
            if old.status.is_final() && !ack.status.is_final() {
                return false;
            }
            *old = ack;
            return true;
        }
        while self.order.len() >= self.capacity {
            match self.order.pop_front() {
                Some(oldest) => {
                    self.acks.remove(&oldest);
                }
                None => break,
            }
        }
        self.order.push_back(id.clone());
        self.acks.insert(id, ack);
        true
    }

    /// Decides what to do with a payload from the `cmd` topic: the latest ack again for a known
    /// id (before any other check, so that a late duplicate of an executed command is not
    /// rejected as stale), a rejection (remembered when it names an id), or execution (the
    /// `accepted` ack is remembered). Never panics.
    pub fn handle(
        &mut self,
        payload: &[u8],
        now: Timestamp,
        max_age_ms: i64,
        station_cameras: &[CameraId],
    ) -> Handling {
        if let Some(id) = peek_command_id(payload) {
            if let Some(ack) = self.acks.get(&id) {
                return Handling::Reply {
                    ack: ack.clone(),
                    repeat: true,
                };
            }
        }
        match decode_command(payload, now, max_age_ms, station_cameras) {
            Ok(command) => {
                let ack = Ack::accepted(command.id.clone(), now);
                self.record(ack.clone());
                Handling::Execute { command, ack }
            }
            Err(rejection) => {
                let ack = rejection.ack(now);
                self.record(ack.clone());
                Handling::Reply { ack, repeat: false }
            }
        }
    }
}

impl Default for CommandLog {
    fn default() -> Self {
        Self::new(super::DEFAULT_COMMAND_LOG_CAPACITY)
    }
}
