//! A small tmpfs disk for tests that fill storage (needs root; callers check with
//! `require(is_root(), ...)` first). Unmounted when dropped.

use std::path::PathBuf;
use std::process::Command;

pub struct SmallDisk {
    _dir: tempfile::TempDir,
    pub mount: PathBuf,
}

impl SmallDisk {
    /// Mounts a `size_mb` MiB tmpfs in a fresh temporary folder; panics if mount fails.
    pub fn mount(size_mb: u32) -> SmallDisk {
        let dir = tempfile::tempdir().unwrap();
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).unwrap();
        let st = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&mount)
            .status()
            .unwrap();
        assert!(st.success(), "mount tmpfs failed");
        SmallDisk { _dir: dir, mount }
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.mount).status();
    }
}
