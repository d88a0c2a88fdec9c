//! Legal holds: time windows that retention must never delete. Some come from the config file;
//! others are set and cleared by remote command and kept in a file next to the recordings so
//! they survive restarts.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use tracing::info;

use crate::config::LegalHold;

pub const HOLDS_FILE: &str = ".legal-holds.json";

pub struct HoldStore {
    path: PathBuf,
    configured: Vec<LegalHold>,
    commanded: Mutex<BTreeMap<String, LegalHold>>,
}

impl HoldStore {
    /// Loads the commanded holds kept in `<storage>/.legal-holds.json`. An unreadable file is
    /// kept aside, never silently replaced (holds protect evidence).
    pub fn open(storage: &Path, configured: Vec<LegalHold>) -> Self {
        let path = storage.join(HOLDS_FILE);
        let commanded = crate::disk::json_file::load(&path, "legal holds");
        Self {
            path,
            configured,
            commanded: Mutex::new(commanded),
        }
    }

    /// Every hold in force: configured and commanded.
    pub fn all(&self) -> Vec<LegalHold> {
        let commanded = self.lock();
        self.configured
            .iter()
            .cloned()
            .chain(commanded.values().cloned())
            .collect()
    }

    /// Sets (or replaces) hold `id`; true if it replaced one. Durable before it returns.
    pub fn set(&self, id: &str, hold: LegalHold) -> io::Result<bool> {
        let mut map = self.lock();
        let mut next = map.clone();
        let replaced = next.insert(id.to_owned(), hold).is_some();
        self.persist(&next)?;
        *map = next;
        info!(hold = id, replaced, "legal hold set");
        Ok(replaced)
    }

    /// Clears hold `id`; true if it existed.
    pub fn clear(&self, id: &str) -> io::Result<bool> {
        let mut map = self.lock();
        let mut next = map.clone();
        let existed = next.remove(id).is_some();
        if existed {
            self.persist(&next)?;
            *map = next;
            info!(hold = id, "legal hold cleared");
        }
        Ok(existed)
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, BTreeMap<String, LegalHold>> {
        self.commanded.lock()
    }

    fn persist(&self, map: &BTreeMap<String, LegalHold>) -> io::Result<()> {
        crate::disk::json_file::store(&self.path, map)?;
        Ok(())
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
    fn unreadable_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(HOLDS_FILE), b"{not json").unwrap();
        let store = HoldStore::open(dir.path(), vec![]);
        assert!(store.all().is_empty());
        assert!(dir.path().join(".legal-holds.json.unreadable").exists());
    }
}
