//! Cameras' views decided centrally (`docs/camera-view.md`). An operator looks at a fresh
//! snapshot of a camera and approves what it shows (the snapshot is kept as the reference
//! picture, and a `set_view` command makes the agent take its current picture as the
//! reference it checks against), refuses it with a reason the technician sees (e.g. "voting
//! booth visible"), or resets it. Every decision is a row in `view_reviews` and an audit line;
//! the agent reports the decision it holds in health, so the station page shows whether the
//! station has it.
//!
//! Privacy masks are stored here too (`store::masks`) and pushed to the agent with
//! `set_masks`; [`sync_masks`] sends them again to any station whose reported digest differs
//! (it was offline when they changed, or lost its file).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use stationwatch_protocol::masks::{self, Polygon};
use stationwatch_protocol::mqtt::Command;
use stationwatch_protocol::CameraId;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::audit::{self, Action};
use crate::auth::User;
use crate::commands::{self, CommandError, Publisher};
use crate::fleet::rules::StationState;
use crate::fleet::{Fleet, Station};
use crate::store::views::{NewReview, ReviewRow};
use crate::store::{Store, StoreError};

/// An approval or refusal must be made on a snapshot at most this old: the operator decides
/// on what the camera shows now, not on a picture from before it was moved.
pub const MAX_SNAPSHOT_AGE_MS: i64 = 15 * 60 * 1000;
/// Longest reason kept.
pub const MAX_REASON_CHARS: usize = 500;
/// How often masks are compared with what the stations report, and how long after sending
/// them to a station they are not sent again.
const SYNC_EVERY: Duration = Duration::from_secs(20);
const RESEND_AFTER: Duration = Duration::from_secs(120);

#[derive(Debug, thiserror::Error)]
pub enum ViewError {
    #[error("only operators and admins decide on a camera's view")]
    Forbidden,
    #[error("the station does not report camera {0}")]
    UnknownCamera(CameraId),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What an operator decides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Refuse,
    Reset,
}

impl Decision {
    fn stored(self) -> &'static str {
        match self {
            Decision::Approve => "approved",
            Decision::Refuse => "refused",
            Decision::Reset => "reset",
        }
    }
}

/// Records `user`'s decision on `camera`'s view and sends it to the station. Approvals and
/// refusals keep the snapshot the operator saw (which must be fresh); a refusal needs a reason.
pub async fn decide(
    store: &Store,
    publisher: &Publisher,
    user: &User,
    station: &Station,
    camera: &CameraId,
    decision: Decision,
    reason: &str,
) -> Result<ReviewRow, ViewError> {
    let now = crate::now_ms();
    let reason = reason.trim();
    let refuse = |e: ViewError| async {
        audit::record(
            store,
            now,
            &user.username,
            Action::ViewReview,
            station.id.as_str(),
            &format!("{camera}: {}: refused: {e}", decision.stored()),
            false,
        )
        .await?;
        Err::<ReviewRow, ViewError>(e)
    };
    if !user.role.may_command() {
        return refuse(ViewError::Forbidden).await;
    }
    let reports = station
        .health
        .as_ref()
        .is_some_and(|h| h.cameras.contains_key(camera));
    if !reports {
        return refuse(ViewError::UnknownCamera(camera.clone())).await;
    }
    if reason.chars().count() > MAX_REASON_CHARS {
        return refuse(ViewError::Invalid(format!(
            "the reason is longer than {MAX_REASON_CHARS} characters"
        )))
        .await;
    }
    if decision == Decision::Refuse && reason.is_empty() {
        return refuse(ViewError::Invalid(
            "say why the view is refused: the technician on site reads it".into(),
        ))
        .await;
    }
    let snapshot = if decision == Decision::Reset {
        None
    } else {
        match store.snapshot(&station.id, camera).await? {
            Some((at, jpeg)) if now - at <= MAX_SNAPSHOT_AGE_MS => Some((at, jpeg)),
            Some((at, _)) => {
                return refuse(ViewError::Conflict(format!(
                    "the latest snapshot of {camera} is {} min old: take a snapshot and look at it first",
                    (now - at) / 60_000
                )))
                .await
            }
            None => {
                return refuse(ViewError::Conflict(format!(
                    "no snapshot of {camera} yet: take a snapshot and look at it first"
                )))
                .await
            }
        }
    };
    let command = Command::SetView {
        camera: camera.clone(),
        approve: decision == Decision::Approve,
        by: user.username.clone(),
        refused: (decision == Decision::Refuse).then(|| reason.to_owned()),
    };
    let sent = commands::send(store, publisher, user, station, command).await?;
    let id = store
        .insert_review(
            &station.id,
            camera,
            NewReview {
                decision: decision.stored(),
                reason,
                decided_by: &user.username,
                decided_at: now,
                snapshot,
            },
        )
        .await?;
    store.set_review_command(id, &sent.id).await?;
    audit::record(
        store,
        now,
        &user.username,
        Action::ViewReview,
        station.id.as_str(),
        format!("{camera}: {} {reason}", decision.stored()).trim_end(),
        true,
    )
    .await?;
    info!(station = %station.id, camera = %camera, decision = decision.stored(), user = %user.username, command = %sent.id, "view decision");
    let rows = store.reviews(&station.id, camera, 1).await?;
    rows.into_iter()
        .next()
        .ok_or_else(|| ViewError::Conflict("the decision was not stored".into()))
}

/// Sends the camera's masks to the station (`set_masks`) as `user`.
pub async fn push_masks(
    store: &Store,
    publisher: &Publisher,
    user: &User,
    station: &Station,
    camera: &CameraId,
    masks: Vec<Polygon>,
) -> Result<String, CommandError> {
    let command = Command::SetMasks {
        camera: camera.clone(),
        masks,
    };
    Ok(commands::send(store, publisher, user, station, command)
        .await?
        .id)
}

/// The digest of stored masks (JSON text); `None` when the text is not valid masks.
pub fn stored_digest(text: &str) -> Option<(Vec<Polygon>, String)> {
    let m: Vec<Polygon> = serde_json::from_str(text).ok()?;
    masks::validate(&m).ok()?;
    let d = masks::digest(&m);
    Some((m, d))
}

/// Every [`SYNC_EVERY`]: sends their masks again to stations online whose cameras report
/// another digest than the stored one (and were not sent them in the last [`RESEND_AFTER`]).
pub async fn sync_masks(
    store: Store,
    fleet: Fleet,
    publisher: Publisher,
    shutdown: CancellationToken,
) {
    let user = crate::requests::system_user("controller");
    let mut sent: HashMap<(String, String), Instant> = HashMap::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(SYNC_EVERY) => {}
        }
        let rows = match store.all_masks().await {
            Ok(rows) => rows,
            Err(e) => {
                warn!(error = %e, "masks not compared with the stations': database");
                continue;
            }
        };
        sent.retain(|_, at| at.elapsed() < RESEND_AFTER);
        for (station_id, camera, text) in rows {
            let Some(station) = fleet.get(&station_id) else {
                continue;
            };
            if matches!(station.state, StationState::Offline | StationState::Unknown) {
                continue;
            }
            // Only cameras whose agent reports its view (and so its masks' digest).
            let Some(reported) = station
                .health
                .as_ref()
                .and_then(|h| h.cameras.get(&camera))
                .and_then(|c| c.view.as_ref())
                .map(|v| v.masks_digest.clone())
            else {
                continue;
            };
            let Some((masks, digest)) = stored_digest(&text) else {
                warn!(station = %station_id, camera = %camera, "stored masks unreadable; not sent");
                continue;
            };
            let key = (station_id.to_string(), camera.to_string());
            if reported == digest || sent.contains_key(&key) {
                continue;
            }
            info!(station = %station_id, camera = %camera, reported = %reported, stored = %digest, "masks differ on the station; sending them");
            sent.insert(key, Instant::now());
            if let Err(e) = push_masks(&store, &publisher, &user, &station, &camera, masks).await {
                warn!(station = %station_id, camera = %camera, error = %e, "masks not sent");
            }
        }
    }
}
