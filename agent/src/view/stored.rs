//! What the agent keeps about each camera's view, in `<storage>/.view.json`, so that it
//! survives restarts and power cuts: the approved reference (set by `set_view`), the last
//! decision (approved, refused with its reason, reset, or voided because the camera was
//! replaced) and the privacy masks (`set_masks`). The controller holds the record itself, with
//! who decided and the snapshot they saw; this is the agent's working copy.
//!
//! The file is checked when read: a reference of the wrong shape or with values that are not
//! finite is no reference (the camera reports itself unapproved, which the controller shows),
//! never a reference that would hide a moved camera; masks that are not valid are no masks
//! (their digest then differs from the controller's, which sends them again).

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::masks::{self, Polygon};
use stationwatch_protocol::mqtt::ViewDecision;
use stationwatch_protocol::CameraId;
use tracing::{info, warn};

use super::detect::{Reference, CELLS};

pub const VIEW_FILE: &str = ".view.json";

/// What identifies the camera behind a view: when it changes, the camera was replaced or
/// re-pointed and an approval no longer holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CameraIdentity {
    /// The first 16 hex digits of the SHA-256 of the camera's source as configured, without
    /// credentials (an RTSP password change is not a new camera).
    pub source: String,
    /// The picture's size as the camera sends it.
    pub width: u32,
    pub height: u32,
}

impl CameraIdentity {
    /// What differs from `other`, for people; `None` when it is the same camera.
    pub fn change_from(&self, other: &CameraIdentity) -> Option<String> {
        let mut what = Vec::new();
        if self.source != other.source {
            what.push("the camera's source changed".to_owned());
        }
        if (self.width, self.height) != (other.width, other.height) {
            what.push(format!(
                "the picture is {}x{}, was {}x{}",
                self.width, self.height, other.width, other.height
            ));
        }
        (!what.is_empty()).then(|| what.join("; "))
    }
}

/// The digest of a source string without its credentials.
pub fn source_digest(source: &str) -> String {
    use sha2::{Digest, Sha256};
    let clean = match url::Url::parse(source) {
        Ok(mut u) if u.has_host() => {
            let _ = u.set_username("");
            let _ = u.set_password(None);
            u.to_string()
        }
        _ => source.to_owned(),
    };
    hex::encode(&Sha256::digest(clean.as_bytes())[..8])
}

/// One camera's approved view as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReference {
    /// Per cell, as `detect::Measures::sharpness`.
    pub sharpness: Vec<f64>,
    pub cells: Vec<f64>,
    pub approved_at: Timestamp,
    /// Who approved it, as the command said.
    #[serde(default)]
    pub approved_by: String,
    /// The camera it was taken from (absent: not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<CameraIdentity>,
}

impl StoredReference {
    pub fn reference(&self) -> Option<Reference> {
        let ok = self.cells.len() == CELLS
            && self.sharpness.len() == CELLS
            && self
                .sharpness
                .iter()
                .all(|s| s.is_finite() && (0.0..=1e6).contains(s))
            && self
                .cells
                .iter()
                .all(|c| c.is_finite() && (0.0..=255.0).contains(c));
        ok.then(|| Reference {
            sharpness: self.sharpness.clone(),
            cells: self.cells.clone(),
        })
    }
}

/// Everything kept for one camera.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<StoredReference>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub decision: Option<ViewDecision>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub masks: Vec<Polygon>,
}

impl StoredView {
    /// The masks if they are valid, else none.
    pub fn valid_masks(&self) -> &[Polygon] {
        if masks::validate(&self.masks).is_ok() {
            &self.masks
        } else {
            &[]
        }
    }
}

pub struct ViewStore {
    path: PathBuf,
    map: Mutex<BTreeMap<String, StoredView>>,
}

impl ViewStore {
    /// Loads what is kept; an unreadable file is kept aside (every camera unapproved, no
    /// masks: the controller sends them again).
    pub fn open(storage: &Path) -> Self {
        let path = storage.join(VIEW_FILE);
        let map: BTreeMap<String, StoredView> = crate::disk::json_file::load(&path, "camera views");
        for (camera, v) in &map {
            if v.reference
                .as_ref()
                .is_some_and(|r| r.reference().is_none())
            {
                warn!(camera = %camera, "stored view reference is malformed; the camera counts as unapproved");
            }
            if let Err(e) = masks::validate(&v.masks) {
                warn!(camera = %camera, error = %e, "stored privacy masks are malformed; the camera counts as having none");
            }
        }
        ViewStore {
            path,
            map: Mutex::new(map),
        }
    }

    /// What is kept for `camera` (default: nothing).
    pub fn get(&self, camera: &CameraId) -> StoredView {
        self.map
            .lock()
            .get(camera.as_str())
            .cloned()
            .unwrap_or_default()
    }

    /// Changes what is kept for `camera`. Durable before it returns; on an error nothing
    /// changed.
    pub fn update(
        &self,
        camera: &CameraId,
        f: impl FnOnce(&mut StoredView),
    ) -> io::Result<StoredView> {
        let mut map = self.map.lock();
        let mut next = map.clone();
        let entry = next.entry(camera.to_string()).or_default();
        f(entry);
        let now = entry.clone();
        if now == StoredView::default() {
            next.remove(camera.as_str());
        }
        crate::disk::json_file::store(&self.path, &next)?;
        *map = next;
        info!(camera = %camera, approved = now.reference.is_some(), masks = now.masks.len(), "camera view stored");
        Ok(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stationwatch_protocol::mqtt::ViewDecisionState;

    fn reference() -> StoredReference {
        StoredReference {
            sharpness: vec![0.4; CELLS],
            cells: vec![100.0; CELLS],
            approved_at: Timestamp::now(),
            approved_by: "operator".into(),
            identity: None,
        }
    }

    #[test]
    fn a_view_survives_reopening_and_a_malformed_one_is_no_reference() {
        let dir = tempfile::tempdir().unwrap();
        let cam = CameraId::new("desk").unwrap();
        let views = ViewStore::open(dir.path());
        assert_eq!(views.get(&cam), StoredView::default());
        let decision = ViewDecision {
            state: ViewDecisionState::Approved,
            by: "operator".into(),
            at: Timestamp::now(),
            reason: String::new(),
        };
        views
            .update(&cam, |v| {
                v.reference = Some(reference());
                v.decision = Some(decision.clone());
                v.masks = vec![vec![[0.0, 0.0], [0.5, 0.0], [0.5, 0.5]]];
            })
            .unwrap();
        let again = ViewStore::open(dir.path());
        let v = again.get(&cam);
        assert_eq!(
            v.reference
                .as_ref()
                .unwrap()
                .reference()
                .unwrap()
                .cells
                .len(),
            CELLS
        );
        assert_eq!(v.decision, Some(decision));
        assert_eq!(v.valid_masks().len(), 1);
        // Someone edits the file: too few cells, or a value out of range; a corner outside
        // the picture.
        for cells in [vec![100.0; 3], vec![1e9; CELLS]] {
            again
                .update(&cam, |v| {
                    v.reference = Some(StoredReference {
                        cells,
                        ..reference()
                    });
                    v.masks = vec![vec![[0.0, 0.0], [1.5, 0.0], [0.5, 0.5]]];
                })
                .unwrap();
            let v = ViewStore::open(dir.path()).get(&cam);
            assert_eq!(v.reference.as_ref().and_then(|r| r.reference()), None);
            assert!(v.valid_masks().is_empty());
        }
        again.update(&cam, |v| *v = StoredView::default()).unwrap();
        assert_eq!(ViewStore::open(dir.path()).get(&cam), StoredView::default());
        // Not JSON at all: nothing kept, never a panic.
        std::fs::write(dir.path().join(VIEW_FILE), b"{not json").unwrap();
        assert_eq!(ViewStore::open(dir.path()).get(&cam), StoredView::default());
    }

    #[test]
    fn a_new_camera_is_told_apart_from_a_new_password() {
        let a = source_digest("rtsp://admin:one@10.0.0.5:554/stream1");
        assert_eq!(a, source_digest("rtsp://admin:two@10.0.0.5:554/stream1"));
        assert_ne!(a, source_digest("rtsp://admin:one@10.0.0.6:554/stream1"));
        let id = |source: &str, w| CameraIdentity {
            source: source_digest(source),
            width: w,
            height: 720,
        };
        let old = id("rtsp://10.0.0.5/s", 1280);
        assert_eq!(id("rtsp://10.0.0.5/s", 1280).change_from(&old), None);
        let change = id("rtsp://10.0.0.6/s", 1920).change_from(&old).unwrap();
        assert!(
            change.contains("source") && change.contains("1920x720"),
            "{change}"
        );
    }
}
