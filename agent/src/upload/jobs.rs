//! The durable upload queue: requested windows (jobs), the upload mode overrides, and which
//! segments the archive confirmed, all in `<storage>/.upload/` (replaced atomically and synced on
//! every change, so a restart or power cut resumes where it was).
//!
//! A pending job is an implicit hold (source `request`) on its window: [`JobStore::holds`] is
//! what `retention/holds.rs` keeps in force. An unreadable jobs file fails closed: it is left as
//! it is, the store is in error, and nothing is deleted by policy until a person fixes it.

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::mqtt::{MessageId, UploadMode};
use stationwatch_protocol::CameraId;

use crate::config::LegalHold;

pub const UPLOAD_DIR: &str = ".upload";
const JOBS_FILE: &str = "jobs.json";
const MODES_FILE: &str = "modes.json";
const ARCHIVED_FILE: &str = "archived.json";

/// A requested window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Job {
    pub id: MessageId,
    /// The cameras it covers (resolved: never empty).
    pub cameras: Vec<CameraId>,
    pub from: Timestamp,
    pub to: Timestamp,
    pub priority: u8,
    pub reason: String,
    /// When the agent queued it (agent clock).
    pub queued_at: Timestamp,
    /// When every segment of the window was archived; the hold is released then.
    #[serde(default)]
    pub done_at: Option<Timestamp>,
}

impl Job {
    /// The implicit hold id of the job.
    pub fn hold_id(&self) -> String {
        format!("upload-{}", self.id)
    }

    pub fn covers(&self, camera: &CameraId) -> bool {
        self.cameras.contains(camera)
    }
}

/// `set_upload` overrides.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Modes {
    #[serde(default)]
    pub station: Option<UploadMode>,
    #[serde(default)]
    pub cameras: BTreeMap<CameraId, UploadMode>,
}

/// Segments the archive confirmed, by camera: manifest `seq`s.
pub type Archived = BTreeMap<CameraId, BTreeSet<u64>>;

pub struct JobStore {
    dir: PathBuf,
    jobs: BTreeMap<MessageId, Job>,
    modes: Modes,
    archived: Archived,
    /// Why the jobs file cannot be used, while it cannot.
    error: Option<String>,
}

fn read<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

impl JobStore {
    /// Opens the queue in `<storage>/.upload/`. An unreadable jobs file puts the store in error
    /// (see [`JobStore::error`]); unreadable modes or archived records are only a cache of what
    /// the controller knows and start empty (kept aside).
    pub fn open(storage: &Path) -> Self {
        let dir = storage.join(UPLOAD_DIR);
        let (jobs, error) = match read::<BTreeMap<MessageId, Job>>(&dir.join(JOBS_FILE)) {
            Ok(j) => (j, None),
            Err(e) => (BTreeMap::new(), Some(e)),
        };
        let modes = crate::disk::json_file::load(&dir.join(MODES_FILE), "upload modes");
        let archived = crate::disk::json_file::load(&dir.join(ARCHIVED_FILE), "upload archive");
        JobStore {
            dir,
            jobs,
            modes,
            archived,
            error,
        }
    }

    /// While in error, reads the jobs file again; true once it could be read.
    pub fn recheck(&mut self) -> bool {
        if self.error.is_none() {
            return false;
        }
        match read(&self.dir.join(JOBS_FILE)) {
            Ok(j) => {
                self.jobs = j;
                self.error = None;
                true
            }
            Err(e) => {
                self.error = Some(e);
                false
            }
        }
    }

    pub fn jobs(&self) -> impl Iterator<Item = &Job> {
        self.jobs.values()
    }

    /// The implicit holds of jobs not yet done (or the reason they cannot be known).
    pub fn holds(&self) -> Result<BTreeMap<String, LegalHold>, String> {
        if let Some(e) = &self.error {
            return Err(e.clone());
        }
        let mut out = BTreeMap::new();
        for j in self.jobs.values().filter(|j| j.done_at.is_none()) {
            for cam in &j.cameras {
                out.insert(
                    format!("{}-{cam}", j.hold_id()),
                    LegalHold {
                        from: j.from.to_datetime(),
                        to: j.to.to_datetime(),
                        camera: Some(cam.clone()),
                        reason: format!("upload {}: {}", j.id, j.reason),
                    },
                );
            }
        }
        Ok(out)
    }

    fn refuse_if_broken(&self) -> io::Result<()> {
        match &self.error {
            Some(e) => Err(io::Error::other(format!(
                "the upload jobs file is unreadable ({e}); a person must fix it first"
            ))),
            None => Ok(()),
        }
    }

    fn mkdir(&self) -> io::Result<()> {
        std::fs::create_dir_all(&self.dir)
    }

    /// Queues (or replaces) a job; true if it replaced one. Durable before it returns.
    pub fn put(&mut self, job: Job) -> io::Result<bool> {
        self.refuse_if_broken()?;
        self.mkdir()?;
        let mut next = self.jobs.clone();
        let replaced = next.insert(job.id.clone(), job).is_some();
        crate::disk::json_file::store(&self.dir.join(JOBS_FILE), &next)?;
        self.jobs = next;
        Ok(replaced)
    }

    /// Drops a job; true if it existed.
    pub fn cancel(&mut self, id: &MessageId) -> io::Result<bool> {
        self.refuse_if_broken()?;
        if !self.jobs.contains_key(id) {
            return Ok(false);
        }
        let mut next = self.jobs.clone();
        next.remove(id);
        crate::disk::json_file::store(&self.dir.join(JOBS_FILE), &next)?;
        self.jobs = next;
        Ok(true)
    }

    /// Marks jobs done (their holds are released by the caller) and forgets done jobs older
    /// than `forget_before`.
    pub fn finish(
        &mut self,
        done: &[MessageId],
        now: Timestamp,
        forget_before: Timestamp,
    ) -> io::Result<bool> {
        self.refuse_if_broken()?;
        let mut next = self.jobs.clone();
        for id in done {
            if let Some(j) = next.get_mut(id) {
                j.done_at.get_or_insert(now);
            }
        }
        next.retain(|_, j| j.done_at.is_none_or(|d| d >= forget_before));
        if next == self.jobs {
            return Ok(false);
        }
        self.mkdir()?;
        crate::disk::json_file::store(&self.dir.join(JOBS_FILE), &next)?;
        self.jobs = next;
        Ok(true)
    }

    pub fn modes(&self) -> &Modes {
        &self.modes
    }

    /// Sets (`Some`) or removes (`None`) a station or camera override. Durable.
    pub fn set_mode(
        &mut self,
        camera: Option<&CameraId>,
        mode: Option<UploadMode>,
    ) -> io::Result<()> {
        let mut next = self.modes.clone();
        match (camera, mode) {
            (None, m) => next.station = m,
            (Some(c), Some(m)) => {
                next.cameras.insert(c.clone(), m);
            }
            (Some(c), None) => {
                next.cameras.remove(c);
            }
        }
        if next == self.modes {
            return Ok(());
        }
        self.mkdir()?;
        crate::disk::json_file::store(&self.dir.join(MODES_FILE), &next)?;
        self.modes = next;
        Ok(())
    }

    pub fn archived(&self) -> &Archived {
        &self.archived
    }

    /// Records segments the archive confirmed (a cache: the archive is asked again before any
    /// upload, so losing this file costs requests, not footage).
    pub fn mark_archived(&mut self, camera: &CameraId, seq: u64) -> io::Result<()> {
        if !self.archived.entry(camera.clone()).or_default().insert(seq) {
            return Ok(());
        }
        self.mkdir()?;
        crate::disk::json_file::store(&self.dir.join(ARCHIVED_FILE), &self.archived)
    }

    /// Forgets archived records of segments no longer on disk (deleted by retention).
    pub fn forget_archived(
        &mut self,
        camera: &CameraId,
        keep: impl Fn(u64) -> bool,
    ) -> io::Result<()> {
        let Some(set) = self.archived.get_mut(camera) else {
            return Ok(());
        };
        let before = set.len();
        set.retain(|s| keep(*s));
        if set.len() == before {
            return Ok(());
        }
        crate::disk::json_file::store(&self.dir.join(ARCHIVED_FILE), &self.archived)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: &str) -> Job {
        Job {
            id: MessageId::new(id).unwrap(),
            cameras: vec![CameraId::new("desk").unwrap()],
            from: Timestamp::from_unix_ms(1_000_000).unwrap(),
            to: Timestamp::from_unix_ms(2_000_000).unwrap(),
            priority: 3,
            reason: "complaint".into(),
            queued_at: Timestamp::from_unix_ms(3_000_000).unwrap(),
            done_at: None,
        }
    }

    #[test]
    fn jobs_modes_and_archived_survive_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let desk = CameraId::new("desk").unwrap();
        let mut s = JobStore::open(dir.path());
        assert!(!s.put(job("a")).unwrap());
        assert!(s.put(job("a")).unwrap());
        s.put(job("b")).unwrap();
        assert!(s.cancel(&MessageId::new("b").unwrap()).unwrap());
        s.set_mode(None, Some(UploadMode::All)).unwrap();
        s.mark_archived(&desk, 7).unwrap();
        drop(s);
        let s = JobStore::open(dir.path());
        assert_eq!(s.jobs().count(), 1);
        assert_eq!(s.modes().station, Some(UploadMode::All));
        assert!(s.archived()[&desk].contains(&7));
        let holds = s.holds().unwrap();
        assert_eq!(holds.len(), 1);
        assert!(holds.values().all(|h| h.reason.contains("complaint")));
    }

    #[test]
    fn an_unreadable_jobs_file_fails_closed_and_is_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(UPLOAD_DIR)).unwrap();
        let path = dir.path().join(UPLOAD_DIR).join(JOBS_FILE);
        std::fs::write(&path, b"{broken").unwrap();
        let mut s = JobStore::open(dir.path());
        assert!(s.holds().is_err(), "no holds known: retention must stop");
        assert!(s.put(job("a")).is_err(), "not overwritten");
        assert_eq!(std::fs::read(&path).unwrap(), b"{broken");
        std::fs::write(&path, b"{}").unwrap();
        assert!(s.recheck());
        assert!(s.holds().unwrap().is_empty());
    }

    #[test]
    fn done_jobs_release_their_hold_and_are_forgotten_later() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = JobStore::open(dir.path());
        s.put(job("a")).unwrap();
        let id = MessageId::new("a").unwrap();
        let t = |ms| Timestamp::from_unix_ms(ms).unwrap();
        assert!(s
            .finish(std::slice::from_ref(&id), t(5_000_000), t(0))
            .unwrap());
        assert!(s.holds().unwrap().is_empty());
        assert_eq!(s.jobs().count(), 1, "kept for health a while");
        s.finish(&[], t(6_000_000), t(5_500_000)).unwrap();
        assert_eq!(s.jobs().count(), 0);
    }
}
