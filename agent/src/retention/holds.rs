//! Legal holds: time windows that retention must never delete. Some come from the config file;
//! others are set and cleared by remote command and kept in a file next to the recordings so
//! they survive restarts.
//!
//! Holds fail closed: if the holds file cannot be read or is invalid, the store is in error and
//! retention deletes nothing by policy until a person fixes (or removes) the file; the error is
//! logged, sent as an event and shown in health. Holds are evidence: every hold set or cleared
//! (and, at start, every difference between the holds in force and what each camera's manifest
//! says) is entered as a signed `hold` / `release` entry in each affected camera's manifest
//! before the change is acknowledged.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use stationwatch_protocol::manifest::{Hash256, Hold, HoldSource, Timestamp};
use stationwatch_protocol::mqtt::EventKind;
use stationwatch_protocol::CameraId;
use tokio::sync::mpsc::UnboundedSender;
use tracing::{error, info, warn};

use crate::config::LegalHold;
use crate::recording::ledger::LedgerJob;

pub const HOLDS_FILE: &str = ".legal-holds.json";

pub struct HoldStore {
    path: PathBuf,
    configured: Vec<LegalHold>,
    commanded: Mutex<BTreeMap<String, LegalHold>>,
    /// Why the holds file cannot be used, while it cannot.
    error: Mutex<Option<String>>,
    /// Implicit holds of pending upload jobs (source `request`), kept by `upload/jobs.rs`.
    requested: Mutex<BTreeMap<String, LegalHold>>,
    /// Why the upload jobs file cannot be used, while it cannot (fails closed like `error`).
    requested_error: Mutex<Option<String>>,
    /// Each camera's ledger (hold entries go through it) and where events go.
    ledgers: Mutex<Vec<(CameraId, mpsc::Sender<LedgerJob>)>>,
    events: Mutex<Option<UnboundedSender<EventKind>>>,
}

/// How long a hold change waits for each camera's ledger to make its entry durable.
const LEDGER_TIMEOUT: Duration = Duration::from_secs(10);

/// Reads the holds file: `Ok(holds)` (none when it does not exist) or why it cannot be used.
fn read_file(path: &Path) -> Result<BTreeMap<String, LegalHold>, String> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(format!("{}: {e}", path.display())),
    }
}

/// The id a configured hold has in the manifest: `config-` and 16 hex digits of a hash of
/// its window, camera and reason (configured holds have no id of their own).
pub fn config_hold_id(h: &LegalHold) -> String {
    let text = format!(
        "{}|{}|{}|{}",
        h.from.to_rfc3339(),
        h.to.to_rfc3339(),
        h.camera.as_ref().map_or("", |c| c.as_str()),
        h.reason
    );
    format!("config-{}", &Hash256::of(text.as_bytes()).to_hex()[..16])
}

impl HoldStore {
    /// Loads the commanded holds kept in `<storage>/.legal-holds.json`. An unreadable or invalid
    /// file is left exactly as it is (a person must look at it) and puts the store in error:
    /// nothing may be deleted by policy until it is fixed ([`HoldStore::error`]).
    pub fn open(storage: &Path, configured: Vec<LegalHold>) -> Self {
        let path = storage.join(HOLDS_FILE);
        let (commanded, err) = match read_file(&path) {
            Ok(m) => (m, None),
            Err(e) => {
                error!(error = %e, "legal holds file unreadable: NO footage will be deleted by policy until a person fixes it (recording goes on)");
                (BTreeMap::new(), Some(e))
            }
        };
        Self {
            path,
            configured,
            commanded: Mutex::new(commanded),
            error: Mutex::new(err),
            requested: Mutex::new(BTreeMap::new()),
            requested_error: Mutex::new(None),
            ledgers: Mutex::new(Vec::new()),
            events: Mutex::new(None),
        }
    }

    /// Why the holds file or the upload jobs file cannot be used (deletion by policy is
    /// stopped), if one cannot.
    pub fn error(&self) -> Option<String> {
        self.error
            .lock()
            .clone()
            .or_else(|| self.requested_error.lock().clone())
    }

    /// The implicit holds of pending upload jobs as read at start (before [`HoldStore::attach`]
    /// enters them in the manifests), or why the jobs file cannot be read: then nothing is
    /// deleted by policy until it can.
    pub fn load_requested(&self, holds: Result<BTreeMap<String, LegalHold>, String>) {
        match holds {
            Ok(map) => {
                *self.requested.lock() = map;
                *self.requested_error.lock() = None;
            }
            Err(e) => {
                error!(error = %e, "upload jobs unreadable: NO footage will be deleted by policy until they can be read");
                *self.requested_error.lock() = Some(e);
            }
        }
    }

    /// Replaces the implicit holds of upload jobs; the `hold` / `release` entries are durable
    /// in every affected manifest before it returns.
    pub fn set_requested(&self, holds: BTreeMap<String, LegalHold>) -> io::Result<()> {
        if *self.requested.lock() == holds && self.requested_error.lock().is_none() {
            return Ok(());
        }
        *self.requested.lock() = holds;
        *self.requested_error.lock() = None;
        self.sync_manifests().map(|_| ()).map_err(io::Error::other)
    }

    /// Connects the store to the cameras' ledgers and the event channel, reports a broken file,
    /// and enters in each manifest the difference between the holds in force and the manifest's.
    pub fn attach(
        &self,
        ledgers: Vec<(CameraId, mpsc::Sender<LedgerJob>)>,
        events: Option<UnboundedSender<EventKind>>,
    ) {
        *self.ledgers.lock() = ledgers;
        *self.events.lock() = events;
        if let Some(detail) = self.error() {
            self.event(EventKind::HoldsFileError { detail });
        }
        if let Err(e) = self.sync_manifests() {
            error!(error = %e, "legal holds could not be entered in every manifest");
        }
    }

    /// While in error, reads the file again: once a person fixed (or removed) it, its holds are
    /// in force, deletion by policy may resume, and the manifests are brought in step.
    pub fn recheck(&self) {
        if self.error.lock().is_none() {
            return;
        }
        if let Ok(map) = read_file(&self.path) {
            *self.commanded.lock() = map;
            *self.error.lock() = None;
            info!("legal holds file readable again; deletion by policy resumes");
            self.event(EventKind::HoldsFileOk);
            if let Err(e) = self.sync_manifests() {
                error!(error = %e, "legal holds could not be entered in every manifest");
            }
        }
    }

    fn event(&self, kind: EventKind) {
        if let Some(events) = self.events.lock().as_ref() {
            let _ = events.send(kind);
        }
    }

    /// Brings every camera's manifest in step with the holds in force: configured holds always;
    /// commanded ones only when the file could be read (otherwise nothing is released).
    fn sync_manifests(&self) -> Result<usize, String> {
        let file_ok = self.error.lock().is_none();
        let requested_ok = self.requested_error.lock().is_none();
        let commanded = self.lock().clone();
        let requested = self.requested.lock().clone();
        let ledgers = self.ledgers.lock().clone();
        let mut managed = vec![HoldSource::Config];
        if file_ok {
            managed.push(HoldSource::Command);
        }
        if requested_ok {
            managed.push(HoldSource::Request);
        }
        let mut written = 0;
        for (camera, ledger) in &ledgers {
            let applies = |h: &LegalHold| h.camera.as_ref().is_none_or(|c| c == camera);
            let mut wanted: Vec<Hold> = self
                .configured
                .iter()
                .filter(|h| applies(h))
                .map(|h| entry(config_hold_id(h), h, HoldSource::Config))
                .collect();
            if file_ok {
                wanted.extend(
                    commanded
                        .iter()
                        .filter(|(_, h)| applies(h))
                        .map(|(id, h)| entry(id.clone(), h, HoldSource::Command)),
                );
            }
            if requested_ok {
                wanted.extend(
                    requested
                        .iter()
                        .filter(|(_, h)| applies(h))
                        .map(|(id, h)| entry(id.clone(), h, HoldSource::Request)),
                );
            }
            let (done, answer) = mpsc::sync_channel(1);
            ledger
                .send(LedgerJob::Holds {
                    wanted,
                    managed: managed.clone(),
                    done,
                })
                .map_err(|_| format!("camera {camera}: ledger stopped"))?;
            written += answer
                .recv_timeout(LEDGER_TIMEOUT)
                .map_err(|_| format!("camera {camera}: ledger did not answer"))?
                .map_err(|e| format!("camera {camera}: {e}"))?;
        }
        Ok(written)
    }

    /// Every hold in force: configured, commanded and those of pending upload jobs.
    pub fn all(&self) -> Vec<LegalHold> {
        let requested = self.requested.lock().clone();
        let commanded = self.lock();
        self.configured
            .iter()
            .cloned()
            .chain(commanded.values().cloned())
            .chain(requested.into_values())
            .collect()
    }

    /// Sets (or replaces) hold `id`; true if it replaced one. Durable in the holds file and in
    /// every affected camera's manifest before it returns. Refused while the holds file is
    /// broken (it would overwrite what a person must look at).
    pub fn set(&self, id: &str, hold: LegalHold) -> io::Result<bool> {
        self.refuse_if_broken()?;
        let replaced = {
            let mut map = self.lock();
            let mut next = map.clone();
            let replaced = next.insert(id.to_owned(), hold).is_some();
            self.persist(&next)?;
            *map = next;
            replaced
        };
        info!(hold = id, replaced, "legal hold set");
        self.sync_manifests().map_err(io::Error::other)?;
        Ok(replaced)
    }

    /// Clears hold `id`; true if it existed. The `release` entries are durable before it returns.
    pub fn clear(&self, id: &str) -> io::Result<bool> {
        self.refuse_if_broken()?;
        let existed = {
            let mut map = self.lock();
            let mut next = map.clone();
            let existed = next.remove(id).is_some();
            if existed {
                self.persist(&next)?;
                *map = next;
            }
            existed
        };
        if existed {
            info!(hold = id, "legal hold cleared");
            self.sync_manifests().map_err(io::Error::other)?;
        }
        Ok(existed)
    }

    fn refuse_if_broken(&self) -> io::Result<()> {
        let file_error = self.error.lock().clone();
        match file_error {
            Some(e) => {
                warn!(error = %e, "hold change refused: the legal holds file must be fixed first");
                Err(io::Error::other(format!(
                    "the legal holds file is unreadable ({e}); a person must fix it first"
                )))
            }
            None => Ok(()),
        }
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, BTreeMap<String, LegalHold>> {
        self.commanded.lock()
    }

    fn persist(&self, map: &BTreeMap<String, LegalHold>) -> io::Result<()> {
        crate::disk::json_file::store(&self.path, map)?;
        Ok(())
    }
}

fn entry(id: String, h: &LegalHold, source: HoldSource) -> Hold {
    let t = |d| Timestamp::from_datetime(d).unwrap_or_else(|_| Timestamp::now());
    Hold {
        at: Timestamp::now(),
        id,
        from: t(h.from),
        to: t(h.to),
        source,
        reason: h.reason.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    fn hold(reason: &str) -> LegalHold {
        LegalHold {
            from: Utc.with_ymd_and_hms(2026, 11, 21, 6, 0, 0).unwrap(),
            to: Utc.with_ymd_and_hms(2026, 11, 22, 6, 0, 0).unwrap(),
            camera: None,
            reason: reason.into(),
        }
    }

    #[test]
    fn commanded_holds_survive_a_restart_and_join_configured_ones() {
        let dir = tempfile::tempdir().unwrap();
        let store = HoldStore::open(dir.path(), vec![hold("config")]);
        assert!(!store.set("case-1", hold("complaint 1")).unwrap());
        assert!(store.set("case-1", hold("complaint 1b")).unwrap());
        store.set("case-2", hold("complaint 2")).unwrap();
        assert!(store.clear("case-2").unwrap());
        assert!(!store.clear("case-2").unwrap());
        drop(store);
        let store = HoldStore::open(dir.path(), vec![hold("config")]);
        let reasons: Vec<String> = store.all().into_iter().map(|h| h.reason).collect();
        assert_eq!(reasons, ["config", "complaint 1b"]);
    }

    #[test]
    fn unreadable_file_fails_closed_until_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(HOLDS_FILE);
        std::fs::write(&path, b"{not json").unwrap();
        let store = HoldStore::open(dir.path(), vec![]);
        assert!(store.error().is_some(), "a broken holds file is an error");
        assert_eq!(std::fs::read(&path).unwrap(), b"{not json", "left as it is");
        assert!(store.set("case-1", hold("x")).is_err(), "not overwritten");
        store.recheck();
        assert!(store.error().is_some());
        std::fs::write(&path, b"{}").unwrap();
        store.recheck();
        assert_eq!(store.error(), None, "fixed by a person");
        store.set("case-1", hold("x")).unwrap();
    }

    #[test]
    fn configured_hold_ids_are_stable_and_distinct() {
        let a = config_hold_id(&hold("a"));
        assert_eq!(a, config_hold_id(&hold("a")));
        assert_ne!(a, config_hold_id(&hold("b")));
        assert!(a.starts_with("config-") && a.len() == 23, "{a}");
    }
}
