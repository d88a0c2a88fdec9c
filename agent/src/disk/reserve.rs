//! The disk reserve: a placeholder file that keeps a little space so that, on a disk filled by
//! something else, the ledger can still write deletion entries. Created by retention, released
//! by the ledger when a write fails for lack of space.

use std::path::Path;

use tracing::warn;

/// Space kept in a placeholder file so that, on a disk filled by something else, deletion
/// entries can still be written (the placeholder is removed to make room for them).
pub const RESERVE_FILE: &str = ".reserve";
pub const RESERVE_BYTES: u64 = 1024 * 1024;

/// Creates the reserve placeholder if it is missing.
pub fn ensure_reserve(storage: &Path) {
    let path = storage.join(RESERVE_FILE);
    if path
        .metadata()
        .map(|m| m.len() >= RESERVE_BYTES)
        .unwrap_or(false)
    {
        return;
    }
    let r = std::fs::File::create(&path).and_then(|f| {
        use std::io::Write;
        let mut f = f;
        f.write_all(&vec![0u8; RESERVE_BYTES as usize])?;
        f.sync_all()
    });
    if let Err(e) = r {
        let _ = std::fs::remove_file(&path);
        warn!(path = %path.display(), error = %e, "cannot create the space reserve");
    }
}

/// Frees the reserve (so deletion entries can be written on a full disk). True if it existed.
pub fn release_reserve(storage: &Path) -> bool {
    std::fs::remove_file(storage.join(RESERVE_FILE)).is_ok()
}
