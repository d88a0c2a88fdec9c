//! Durable files on disk, shared by recording, retention and the live overrides: directory
//! fsync and atomically replaced JSON files. A leaf: it imports nothing from the crate.

pub mod json_file;
pub mod reserve;

use std::fs::File;
use std::path::Path;

use tracing::warn;

/// Makes a new directory entry durable.
pub fn sync_dir(dir: &Path) {
    if let Err(e) = File::open(dir).and_then(|d| d.sync_all()) {
        warn!(dir = %dir.display(), error = %e, "fsync of directory failed");
    }
}
