//! Evidence bundles (`docs/requests.md`): a folder, or the same as an uncompressed `.tar`, made
//! by the controller for a request for recordings:
//!
//! ```text
//! stationwatch-bundle-<request>/
//!   bundle.json        format, request, station, cameras, window (from, to), controller key
//!   keys.json          the station's registered keys, signed by the controller
//!   witness.json       the manifest heads the controller received, signed by the controller
//!   <camera>/manifest.jsonl   a contiguous excerpt of the camera's manifest (may start at seq > 0)
//!   <camera>/<file>    the window's segments as recorded
//! ```
//!
//! What the bundle says about itself is never a trust anchor: `keys.json` and `witness.json`
//! are used only when they are signed by a controller key the reader gives from outside
//! (`--controller-key`); the key in `bundle.json` is informative. Without an outside key a
//! consistent bundle is UNTRUSTED. Under an outside controller key, files not signed by it stop
//! the run (an error, as for `--keys`/`--witness`). The window defaults to the bundle's. An
//! excerpt not starting at seq 0 is not a finding, and what lies before it (deletion targets,
//! witnessed heads, `open` entries) cannot be checked and is not held against it; see
//! `camera.rs` and `docs/trust.md`, "Evidence bundles".

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::trust::{
    KeyRegistry, Signed, Witness, KEY_REGISTRY_FORMAT, WITNESS_FORMAT,
};
use stationwatch_protocol::{CameraId, StationId};

use crate::{TrustInputs, VerifyError, VerifyOptions};

/// The bundle's description file.
pub const BUNDLE_FILE: &str = "bundle.json";
/// The controller-signed key registry export in a bundle.
pub const KEYS_FILE: &str = "keys.json";
/// The controller-signed witness export in a bundle.
pub const WITNESS_FILE: &str = "witness.json";
const FORMAT: &str = "stationwatch-bundle";

#[derive(Debug, Deserialize)]
struct Info {
    format: String,
    version: u64,
    #[serde(default)]
    request: String,
    station: String,
    cameras: Vec<String>,
    from: Timestamp,
    to: Timestamp,
}

/// A bundle's description, as the report shows it.
#[derive(Debug, Clone)]
pub struct BundleInfo {
    pub request: String,
    pub station: String,
    pub cameras: Vec<String>,
    pub from: Timestamp,
    pub to: Timestamp,
    /// Whether `keys.json` and `witness.json` were used (signed by the given controller key).
    pub controller_files_used: bool,
}

/// `bundle.json` checked: the station and cameras are valid identifiers (they name folders),
/// the window is not reversed.
pub(crate) struct Checked {
    pub station: StationId,
    pub cameras: Vec<CameraId>,
}

/// Reads `dir/bundle.json` and turns `opts` into the options for the bundle: window, trust
/// files (only under an outside controller key), excerpt mode. The cameras to expect.
pub(crate) fn options(
    dir: &Path,
    opts: &VerifyOptions,
) -> Result<(VerifyOptions, BundleInfo, Checked), VerifyError> {
    let bad = |why: String| VerifyError::BadBundle(dir.join(BUNDLE_FILE), why);
    let bytes = std::fs::read(dir.join(BUNDLE_FILE)).map_err(|e| bad(e.to_string()))?;
    let info: Info = serde_json::from_slice(&bytes).map_err(|e| bad(e.to_string()))?;
    if info.format != FORMAT || info.version != 1 {
        return Err(bad(format!(
            "format {:?} version {}: expected {FORMAT:?} version 1",
            info.format, info.version
        )));
    }
    if info.cameras.is_empty() {
        return Err(bad("no camera listed".into()));
    }
    let station = StationId::new(info.station.clone())
        .map_err(|e| bad(format!("station {:?} {e}", info.station)))?;
    let mut cameras: Vec<CameraId> = Vec::new();
    for c in &info.cameras {
        let c = CameraId::new(c.clone()).map_err(|e| bad(format!("camera {c:?} {e}")))?;
        if !cameras.contains(&c) {
            cameras.push(c);
        }
    }
    if info.to < info.from {
        return Err(bad(format!(
            "window from {} to {}: ends before it starts",
            info.from, info.to
        )));
    }
    let mut o = opts.clone();
    o.from = o.from.or(Some(info.from));
    o.to = o.to.or(Some(info.to));
    o.excerpt = true;
    let used = o.trust.controller_key.is_some();
    if used {
        add_controller_files(dir, &station, &mut o.trust)?;
    } else {
        // Without the controller's key their signatures prove nothing: the keys they name
        // serve to check that the excerpts are consistent, not who signed them.
        if let Ok(bytes) = std::fs::read(dir.join(KEYS_FILE)) {
            if let Ok(reg) = Signed::<KeyRegistry>::from_json(&bytes, KEY_REGISTRY_FORMAT) {
                o.untrusted_keys.extend(reg.body.keys_of(&station));
            }
        }
        if let Ok(bytes) = std::fs::read(dir.join(WITNESS_FILE)) {
            if let Ok(w) = Signed::<Witness>::from_json(&bytes, WITNESS_FORMAT) {
                if w.body.station == station {
                    o.untrusted_keys.extend(w.body.keys.iter().map(|k| k.key));
                }
            }
        }
    }
    let checked = Checked { station, cameras };
    Ok((
        o,
        BundleInfo {
            request: info.request,
            station: info.station,
            cameras: info.cameras,
            from: info.from,
            to: info.to,
            controller_files_used: used,
        },
        checked,
    ))
}

/// Reads the bundle's `keys.json` and `witness.json` under the reader's controller key (both
/// must be there and signed by it), adding to what the reader gave with `--keys`/`--witness`.
fn add_controller_files(
    dir: &Path,
    station: &StationId,
    trust: &mut TrustInputs,
) -> Result<(), VerifyError> {
    let mut files = TrustInputs {
        controller_key: trust.controller_key,
        ..TrustInputs::default()
    };
    files.add_registry(&dir.join(KEYS_FILE))?;
    files.add_witness(&dir.join(WITNESS_FILE))?;
    let bad = |why: String| VerifyError::BadBundle(dir.to_owned(), why);
    if let Some(w) = files.witnesses.iter().find(|w| &w.body.station != station) {
        return Err(bad(format!(
            "{WITNESS_FILE} is about station {}, the bundle about {station}",
            w.body.station
        )));
    }
    if let Some(reg) = files.registry {
        match &mut trust.registry {
            // Keys the reader gave with --keys stay; the bundle's are added.
            Some(given) => given.body.stations.extend(reg.body.stations),
            None => trust.registry = Some(reg),
        }
    }
    trust.witnesses.extend(files.witnesses);
    Ok(())
}

/// A `.tar` bundle unpacked into a private temporary folder (removed on drop).
pub(crate) struct Unpacked {
    dir: tempfile::TempDir,
    /// The bundle's top folder (holding `bundle.json`).
    pub root: PathBuf,
}

impl Unpacked {
    /// `path` (under the temporary folder) as the reader knows it: under the tar's path.
    pub fn shown(&self, tar: &Path, path: &Path) -> PathBuf {
        path.strip_prefix(self.dir.path())
            .map_or_else(|_| path.to_owned(), |rel| tar.join(rel))
    }
}

/// Whether `path` is a tar file (the `ustar` magic of its first header, POSIX or GNU).
pub(crate) fn is_tar(path: &Path) -> bool {
    let mut head = [0u8; 512];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[257..262] == b"ustar"
}

/// Unpacks a tar bundle safely into a private temporary folder: every entry under one top
/// folder holding `bundle.json`; regular files and folders only (no links, devices or FIFOs);
/// relative paths without `..`; at most the tar's own size in total. Anything else, or a
/// corrupt tar, is an error.
pub(crate) fn unpack(path: &Path) -> Result<Unpacked, VerifyError> {
    let bad = |why: String| VerifyError::BadBundle(path.to_owned(), why);
    let limit = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("stationwatch-verify-");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o700));
    }
    let dir = builder
        .tempdir()
        .map_err(|e| bad(format!("temporary folder: {e}")))?;
    let mut archive = tar::Archive::new(file);
    let mut total = 0u64;
    let mut top: Option<std::ffi::OsString> = None;
    let mut has_info = false;
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let kind = entry.header().entry_type();
        if kind.is_pax_global_extensions() {
            // Comments for the whole archive (e.g. `git archive`): no file.
            continue;
        }
        let raw = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        let mut rel = PathBuf::new();
        for c in raw.components() {
            match c {
                Component::Normal(n) => rel.push(n),
                Component::CurDir => {}
                _ => return Err(bad(format!("unsafe path {}", raw.display()))),
            }
        }
        let Some(Component::Normal(first)) = rel.components().next() else {
            continue;
        };
        match &top {
            None => top = Some(first.to_owned()),
            Some(t) if t.as_os_str() != first => {
                return Err(bad(format!(
                    "{} is outside the bundle's folder {}",
                    raw.display(),
                    Path::new(t).display()
                )))
            }
            Some(_) => {}
        }
        let target = dir.path().join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| bad(e.to_string()))?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "{} is not a regular file (links, devices and FIFOs are refused)",
                raw.display()
            )));
        }
        if rel.components().count() < 2 {
            return Err(bad(format!(
                "{} is not in a folder: a bundle's files are all under stationwatch-bundle-<request>/",
                raw.display()
            )));
        }
        total = total.saturating_add(entry.size());
        if total > limit {
            return Err(bad("the entries are larger than the tar itself".into()));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| bad(e.to_string()))?;
        }
        let mut out =
            std::fs::File::create(&target).map_err(|e| bad(format!("{}: {e}", raw.display())))?;
        let size = entry.size();
        let copied = std::io::copy(&mut (&mut entry).take(size), &mut out)
            .map_err(|e| bad(format!("{}: {e}", raw.display())))?;
        if copied != size {
            return Err(bad(format!("{}: cut short", raw.display())));
        }
        has_info |= rel.components().count() == 2 && rel.ends_with(BUNDLE_FILE);
    }
    match top {
        Some(t) if has_info => Ok(Unpacked {
            root: dir.path().join(t),
            dir,
        }),
        Some(t) => Err(bad(format!(
            "no {BUNDLE_FILE} in its folder {}: not an evidence bundle",
            Path::new(&t).display()
        ))),
        None => Err(bad("the tar is empty".into())),
    }
}
