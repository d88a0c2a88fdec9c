//! Approved reference views, kept in `<storage>/.view-references.json` so that an approval
//! survives restarts and power cuts. Set by the `set_view` command (the controller holds the
//! approval itself, with who approved and the snapshot; this is the agent's working copy).
//!
//! The file is checked when read: a reference of the wrong shape or with values that are not
//! finite is no reference (the camera reports itself unapproved, which the controller shows),
//! never a reference that would hide a moved camera.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::CameraId;
use tracing::{info, warn};

use super::detect::{Reference, CELLS};

pub const REFERENCES_FILE: &str = ".view-references.json";

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

pub struct ViewReferences {
    path: PathBuf,
    map: Mutex<BTreeMap<String, StoredReference>>,
}

impl ViewReferences {
    /// Loads the references; an unreadable file is kept aside (every camera unapproved).
    pub fn open(storage: &Path) -> Self {
        let path = storage.join(REFERENCES_FILE);
        let map: BTreeMap<String, StoredReference> =
            crate::disk::json_file::load(&path, "view references");
        for (camera, r) in &map {
            if r.reference().is_none() {
                warn!(camera = %camera, "stored view reference is malformed; the camera counts as unapproved");
            }
        }
        ViewReferences {
            path,
            map: Mutex::new(map),
        }
    }

    pub fn get(&self, camera: &CameraId) -> Option<Reference> {
        self.map
            .lock()
            .get(camera.as_str())
            .and_then(StoredReference::reference)
    }

    /// Stores (`Some`) or removes (`None`) a camera's reference. Durable before it returns.
    pub fn set(&self, camera: &CameraId, r: Option<StoredReference>) -> io::Result<()> {
        let mut map = self.map.lock();
        let mut next = map.clone();
        match &r {
            Some(r) => next.insert(camera.to_string(), r.clone()),
            None => next.remove(camera.as_str()),
        };
        crate::disk::json_file::store(&self.path, &next)?;
        *map = next;
        info!(camera = %camera, approved = r.is_some(), "view reference stored");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reference_survives_reopening_and_a_malformed_one_is_no_reference() {
        let dir = tempfile::tempdir().unwrap();
        let cam = CameraId::new("desk").unwrap();
        let refs = ViewReferences::open(dir.path());
        assert_eq!(refs.get(&cam), None);
        let stored = StoredReference {
            sharpness: vec![0.4; CELLS],
            cells: vec![100.0; CELLS],
            approved_at: Timestamp::now(),
            approved_by: "operator".into(),
        };
        refs.set(&cam, Some(stored.clone())).unwrap();
        let again = ViewReferences::open(dir.path());
        assert_eq!(again.get(&cam).unwrap().cells.len(), CELLS);
        // Someone edits the file: too few cells, or a value out of range.
        for cells in [vec![100.0; 3], vec![1e9; CELLS]] {
            let bad = StoredReference {
                cells,
                ..stored.clone()
            };
            again.set(&cam, Some(bad)).unwrap();
            assert_eq!(ViewReferences::open(dir.path()).get(&cam), None);
        }
        again.set(&cam, None).unwrap();
        assert_eq!(ViewReferences::open(dir.path()).get(&cam), None);
    }
}
