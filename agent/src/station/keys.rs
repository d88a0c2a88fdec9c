//! The station's signing key: loaded from the configured file, or generated there on first run
//! (readable by the agent's user only).

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use stationwatch_protocol::manifest::{KeyError, StationKey};
use tracing::{info, warn};

/// Loads the key at `path`, generating it first if the file does not exist.
pub fn load_or_generate(path: &Path) -> Result<StationKey, KeyError> {
    if path.exists() {
        if let Ok(meta) = std::fs::metadata(path) {
            let mode = meta.permissions().mode();
            if mode & 0o077 != 0 {
                warn!(
                    path = %path.display(),
                    mode = format!("{:o}", mode & 0o777),
                    "station key is readable by other users; chmod 600 it"
                );
            }
        }
        let key = StationKey::load(path)?;
        info!(path = %path.display(), fingerprint = %key.public().fingerprint(), "station key loaded");
        return Ok(key);
    }
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Io {
            path: dir.display().to_string(),
            source,
        })?;
    }
    let key = StationKey::generate()?;
    key.save_new(path)?;
    info!(
        path = %path.display(),
        fingerprint = %key.public().fingerprint(),
        "station key generated; register its public key with the controller"
    );
    Ok(key)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_private_then_loads_the_same_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/station.key");
        let a = load_or_generate(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "key file mode {mode:o}");
        let b = load_or_generate(&path).unwrap();
        assert_eq!(a.public(), b.public());
    }

    #[test]
    fn a_damaged_key_file_is_an_error_not_a_new_key() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("station.key");
        std::fs::write(&path, "garbage").unwrap();
        assert!(load_or_generate(&path).is_err());
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "garbage");
    }
}
