//! `set_live` overrides: the live mode the controller chose for a camera, kept in
//! `<storage>/.live-overrides.json` so that it survives agent restarts and power cuts (an
//! operator who turned a camera's live stream off does not expect it back on after a reboot).
//! A `set_live` with mode `config` removes the override.

use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use stationwatch_protocol::CameraId;
use tracing::info;

use crate::config::LiveSetting;

pub const OVERRIDES_FILE: &str = ".live-overrides.json";

pub struct LiveOverrides {
    path: PathBuf,
    map: Mutex<BTreeMap<String, LiveSetting>>,
}

impl LiveOverrides {
    /// Loads the overrides; an unreadable file is kept aside and ignored (the configured modes
    /// apply).
    pub fn open(storage: &Path) -> Self {
        let path = storage.join(OVERRIDES_FILE);
        let map = crate::disk::json_file::load(&path, "live overrides");
        Self {
            path,
            map: Mutex::new(map),
        }
    }

    pub fn get(&self, camera: &CameraId) -> Option<LiveSetting> {
        // A value this version does not know is no override (the configured setting applies).
        self.lock()
            .get(camera.as_str())
            .copied()
            .filter(|m| *m != LiveSetting::Unknown)
    }

    /// Sets (`Some`) or removes (`None`) a camera's override. Durable before it returns.
    pub fn set(&self, camera: &CameraId, mode: Option<LiveSetting>) -> io::Result<()> {
        let mut map = self.lock();
        let mut next = map.clone();
        match mode {
            Some(m) => next.insert(camera.to_string(), m),
            None => next.remove(camera.as_str()),
        };
        if next == *map {
            return Ok(());
        }
        crate::disk::json_file::store(&self.path, &next)?;
        *map = next;
        info!(camera = %camera, mode = mode.map(LiveSetting::as_str), "live override stored");
        Ok(())
    }

    fn lock(&self) -> parking_lot::MutexGuard<'_, BTreeMap<String, LiveSetting>> {
        self.map.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_survive_a_restart_and_can_be_cleared() {
        let dir = tempfile::tempdir().unwrap();
        let desk = CameraId::new("desk").unwrap();
        let hall = CameraId::new("hall").unwrap();
        let o = LiveOverrides::open(dir.path());
        o.set(&desk, Some(LiveSetting::Off)).unwrap();
        o.set(&hall, Some(LiveSetting::Auto)).unwrap();
        o.set(&hall, None).unwrap();
        drop(o);
        let o = LiveOverrides::open(dir.path());
        assert_eq!(o.get(&desk), Some(LiveSetting::Off));
        assert_eq!(o.get(&hall), None);
    }

    #[test]
    fn unreadable_file_is_kept_aside() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(OVERRIDES_FILE), b"[oops").unwrap();
        let o = LiveOverrides::open(dir.path());
        assert_eq!(o.get(&CameraId::new("desk").unwrap()), None);
        assert!(dir.path().join(".live-overrides.json.unreadable").exists());
    }
}
