//! Requests for recordings: a case an observer (or any user) files for a window of a station's
//! cameras, with a status the requester follows (`docs/requests.md`).
//!
//! submitted → refused (by staff, with a reason), or approved → collecting (the controller sends
//! the station an `upload` command for the window, whose implicit hold keeps it on the station
//! until archived; `collect.rs` follows the upload and re-sends the command when it expired
//! unanswered) → ready, ready with gaps (each gap with its reason), or failed (not delivered by
//! the deadline). From filing until `hold_until` (delivery + `[requests] hold_days`) the archive
//! keeps the window (`archive/retention.rs`). Every transition is audited and kept in the
//! request's history.

pub mod collect;
pub mod media;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use serde::Deserialize;
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::mqtt::{Command, MessageId};
use stationwatch_protocol::CameraId;
use tokio::sync::Notify;
use tracing::info;

use crate::audit::{self, Action};
use crate::auth::{Role, User};
use crate::commands::{self, CommandError, Publisher};
use crate::config::RequestsConfig;
use crate::fleet::{Fleet, Station};
use crate::store::requests::{RequestRow, RequestUpdate, Transition};
use crate::store::{Store, StoreError};

pub const SUBMITTED: &str = "submitted";
pub const REFUSED: &str = "refused";
pub const COLLECTING: &str = "collecting";
pub const READY: &str = "ready";
pub const READY_WITH_GAPS: &str = "ready_with_gaps";
pub const FAILED: &str = "failed";
/// Recorded in the history between `submitted` and `collecting`.
pub const APPROVED: &str = "approved";

/// Statuses that still need someone or something: the staff queue.
pub const OPEN: [&str; 2] = [SUBMITTED, COLLECTING];

/// Longest reason or decision note, in characters.
pub const MAX_TEXT: usize = 2000;

/// Priority of a request's upload job at the station (above operators' default 0).
const UPLOAD_PRIORITY: u8 = 100;

#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    #[error("{0}")]
    Invalid(String),
    #[error("request not found")]
    NotFound,
    #[error("only operators and admins decide requests")]
    Forbidden,
    #[error("the request is {0}, not submitted")]
    Conflict(String),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the upload command could not be sent: {0}")]
    Command(#[from] CommandError),
}

/// What a user asks for.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    pub station: stationwatch_protocol::StationId,
    /// Empty or absent: every camera the station reports.
    #[serde(default)]
    pub cameras: Vec<CameraId>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub reason: String,
}

/// Everything requests need, cloned into handlers and the collector.
#[derive(Clone)]
pub struct Requests {
    pub store: Store,
    pub fleet: Fleet,
    pub publisher: Publisher,
    pub cfg: RequestsConfig,
    /// Wakes the collector (a decision, a health report with upload progress).
    pub nudge: Arc<Notify>,
    /// Request ids whose row changed, for live pages (`/api/stream`).
    pub changed: tokio::sync::broadcast::Sender<Arc<RequestRow>>,
}

/// A reason or note: trimmed, not empty, at most [`MAX_TEXT`] characters, no control
/// characters but line breaks and tabs.
fn text(what: &str, s: &str) -> Result<String, RequestError> {
    let t = s.trim();
    if t.is_empty() {
        return Err(RequestError::Invalid(format!("{what} is required")));
    }
    if t.chars().count() > MAX_TEXT {
        return Err(RequestError::Invalid(format!(
            "{what} is longer than {MAX_TEXT} characters"
        )));
    }
    if t.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(RequestError::Invalid(format!(
            "{what} contains control characters"
        )));
    }
    Ok(t.to_owned())
}

/// The request id: 128 random bits, so a link to it cannot be guessed.
fn new_id() -> String {
    format!("r{}", hex::encode(rand::random::<[u8; 16]>()))
}

impl Requests {
    /// Files a request of `user` for `station` (which the caller checked `user` may see).
    pub async fn file(
        &self,
        user: &User,
        station: &Station,
        new: NewRequest,
        now: i64,
    ) -> Result<RequestRow, RequestError> {
        let reason = text("reason", &new.reason)?;
        let (from, to) = (new.from.unix_ms(), new.to.unix_ms());
        if from >= to {
            return Err(RequestError::Invalid("from must be before to".into()));
        }
        if to - from > self.cfg.max_window_ms {
            return Err(RequestError::Invalid(format!(
                "the window is longer than the maximum of {} minutes",
                self.cfg.max_window_ms / 60_000
            )));
        }
        if from > now {
            return Err(RequestError::Invalid(
                "the window starts in the future".into(),
            ));
        }
        let reported: Vec<CameraId> = station
            .health
            .as_ref()
            .map(|h| h.cameras.keys().cloned().collect())
            .unwrap_or_default();
        let mut cameras = if new.cameras.is_empty() {
            reported.clone()
        } else {
            new.cameras.clone()
        };
        cameras.sort();
        cameras.dedup();
        if cameras.is_empty() {
            return Err(RequestError::Invalid(
                "the station has not reported its cameras yet; name them".into(),
            ));
        }
        if !reported.is_empty() {
            if let Some(c) = cameras.iter().find(|c| !reported.contains(c)) {
                return Err(RequestError::Invalid(format!(
                    "the station has no camera {c}"
                )));
            }
        }
        let row = RequestRow {
            id: new_id(),
            station_id: station.id.clone(),
            cameras,
            from_ms: from,
            to_ms: to,
            reason,
            requested_by: user.username.clone(),
            requested_at: now,
            status: SUBMITTED.into(),
            decided_by: None,
            decided_at: None,
            decision: None,
            command_id: None,
            progress: None,
            gaps: Vec::new(),
            history: vec![Transition {
                status: SUBMITTED.into(),
                at: now,
                by: user.username.clone(),
                note: String::new(),
            }],
            ready_at: None,
            deadline_at: None,
            hold_until: None,
            updated_at: now,
        };
        self.store.insert_request(&row).await?;
        audit::record(
            &self.store,
            now,
            &user.username,
            Action::Request,
            row.station_id.as_str(),
            &format!(
                "file {} cameras {} window {}..{}: {}",
                row.id,
                row.cameras
                    .iter()
                    .map(CameraId::as_str)
                    .collect::<Vec<_>>()
                    .join(","),
                new.from,
                new.to,
                row.reason
            ),
            true,
        )
        .await?;
        info!(request = %row.id, station = %row.station_id, user = %user.username, "request filed");
        let _ = self.changed.send(Arc::new(row.clone()));
        if self.cfg.auto_approve.iter().any(|r| r == user.role.name()) {
            let system = system_user("auto-approval");
            return self
                .decide(&system, &row.id, true, "approved automatically (role)", now)
                .await;
        }
        Ok(row)
    }

    /// Approves or refuses a submitted request. A refusal needs a note; an approval sends the
    /// station its upload command first (so an approved request is always being collected).
    pub async fn decide(
        &self,
        user: &User,
        id: &str,
        approve: bool,
        note: &str,
        now: i64,
    ) -> Result<RequestRow, RequestError> {
        if !user.role.may_command() {
            return Err(RequestError::Forbidden);
        }
        let req = self
            .store
            .request(id)
            .await?
            .ok_or(RequestError::NotFound)?;
        if req.status != SUBMITTED {
            return Err(RequestError::Conflict(req.status));
        }
        let outcome = if approve { APPROVED } else { REFUSED };
        let note = if approve {
            note.trim().chars().take(MAX_TEXT).collect::<String>()
        } else {
            text("the reason of a refusal", note)?
        };
        let transition = |status: &str, note: &str| Transition {
            status: status.into(),
            at: now,
            by: user.username.clone(),
            note: note.into(),
        };
        let update = if approve {
            let command_id = self.send_upload(user, &req).await?;
            RequestUpdate {
                status: Some(COLLECTING.into()),
                decided_by: Some(user.username.clone()),
                decided_at: Some(now),
                decision: Some(note.clone()),
                command_id: Some(command_id),
                deadline_at: Some(now.max(req.to_ms).saturating_add(self.cfg.deadline_ms)),
                transition: Some(transition(APPROVED, &note)),
                ..Default::default()
            }
        } else {
            RequestUpdate {
                status: Some(REFUSED.into()),
                decided_by: Some(user.username.clone()),
                decided_at: Some(now),
                decision: Some(note.clone()),
                transition: Some(transition(REFUSED, &note)),
                ..Default::default()
            }
        };
        let updated = self
            .store
            .update_request(id, SUBMITTED, update, now)
            .await?;
        audit::record(
            &self.store,
            now,
            &user.username,
            Action::Request,
            req.station_id.as_str(),
            &format!("{outcome} {id}: {note}"),
            updated.is_some(),
        )
        .await?;
        let Some(row) = updated else {
            // Someone else decided first. If it was not an approval, take back the upload the
            // station was just sent (best effort: the archive keeps nothing for it anyway).
            let current = self
                .store
                .request(id)
                .await?
                .ok_or(RequestError::NotFound)?;
            if approve && current.status != COLLECTING {
                if let (Some(station), Ok(job)) = (
                    self.fleet.get(&req.station_id),
                    MessageId::new(req.id.clone()),
                ) {
                    let cancel = Command::CancelUpload { job };
                    if let Err(e) =
                        commands::send(&self.store, &self.publisher, user, &station, cancel).await
                    {
                        tracing::warn!(request = %id, error = %e, "cannot cancel the upload of a request decided otherwise");
                    }
                }
            }
            return Err(RequestError::Conflict(current.status));
        };
        info!(request = %id, station = %row.station_id, user = %user.username, outcome, "request decided");
        let _ = self.changed.send(Arc::new(row.clone()));
        self.nudge.notify_one();
        Ok(row)
    }

    /// Sends the station the `upload` command of a request (job id = request id, so sending it
    /// again replaces the same job at the station). The command's id.
    pub(crate) async fn send_upload(
        &self,
        user: &User,
        req: &RequestRow,
    ) -> Result<String, RequestError> {
        let station = self
            .fleet
            .get(&req.station_id)
            .ok_or_else(|| RequestError::Invalid("the station is unknown".into()))?;
        let invalid = |e: &dyn std::fmt::Display| RequestError::Invalid(e.to_string());
        let reason: String = format!("request {}: {}", req.id, req.reason)
            .chars()
            .take(200)
            .collect();
        let cmd = Command::Upload {
            job: MessageId::new(req.id.clone()).map_err(|e| invalid(&e))?,
            cameras: req.cameras.clone(),
            from: Timestamp::from_unix_ms(req.from_ms).map_err(|e| invalid(&e))?,
            to: Timestamp::from_unix_ms(req.to_ms).map_err(|e| invalid(&e))?,
            priority: UPLOAD_PRIORITY,
            reason,
        };
        let sent = commands::send(&self.store, &self.publisher, user, &station, cmd).await?;
        Ok(sent.id)
    }

    /// Whether `user` may see request `r`: its requester, or staff (who see every station).
    pub fn may_see(user: &User, r: &RequestRow) -> bool {
        user.role != Role::Observer || (r.requested_by == user.username && user.sees(&r.station_id))
    }
}

/// The controller acting on its own (approving requests of the roles in `[requests]
/// auto_approve`, re-sending upload commands): `name` is what the audit log shows.
pub fn system_user(name: &str) -> User {
    User {
        id: 0,
        username: name.into(),
        role: Role::Operator,
        grants: None,
    }
}
