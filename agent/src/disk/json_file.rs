//! Small state files next to the recordings (commanded legal holds, live overrides): read at
//! start, replaced atomically and durably on every change.

use std::io::{self, Write};
use std::path::Path;

use serde::de::DeserializeOwned;
use serde::Serialize;
use tracing::warn;

/// Reads `path`; a missing file is the default, an unreadable one is renamed to
/// `*.unreadable` (kept for a person to look at, never silently overwritten) and replaced by
/// the default. `what` names the file in the warning.
pub fn load<T: DeserializeOwned + Default>(path: &Path, what: &str) -> T {
    let Ok(bytes) = std::fs::read(path) else {
        return T::default();
    };
    serde_json::from_slice(&bytes).unwrap_or_else(|e| {
        let aside = path.with_extension("json.unreadable");
        warn!(path = %path.display(), error = %e, moved_to = %aside.display(), "{what} file unreadable; kept aside");
        let _ = std::fs::rename(path, &aside);
        T::default()
    })
}

/// Writes `value` to a temporary file, fsyncs it, renames it over `path` and fsyncs the
/// folder: after a power cut the file is either the old or the new version, never a mix.
pub fn store<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(&data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        crate::disk::sync_dir(dir);
    }
    Ok(())
}
