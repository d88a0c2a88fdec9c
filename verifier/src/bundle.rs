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
//! consistent bundle is UNTRUSTED. The window defaults to the bundle's. An excerpt not starting
//! at seq 0 is not a finding, and what lies before it (deletion targets, witnessed heads) cannot
//! be checked and is not held against it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::Deserialize;
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::trust::{KeyRegistry, Signed, KEY_REGISTRY_FORMAT};
use stationwatch_protocol::StationId;

use crate::{VerifyError, VerifyOptions};

/// The bundle's description file.
pub const BUNDLE_FILE: &str = "bundle.json";
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

/// Reads `dir/bundle.json` and turns `opts` into the options for the bundle: window, trust
/// files (only under an outside controller key), excerpt mode. The cameras to expect.
pub(crate) fn options(
    dir: &Path,
    opts: &VerifyOptions,
) -> Result<(VerifyOptions, BundleInfo), VerifyError> {
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
    let mut o = opts.clone();
    o.from = o.from.or(Some(info.from));
    o.to = o.to.or(Some(info.to));
    o.excerpt = true;
    let used = o.trust.controller_key.is_some();
    if used {
        o.trust.add_registry(&dir.join("keys.json"))?;
        o.trust.add_witness(&dir.join("witness.json"))?;
    } else if let Ok(bytes) = std::fs::read(dir.join("keys.json")) {
        // Without the controller's key its signature proves nothing: the keys serve to check
        // that the excerpts are consistent, not who signed them.
        if let Ok(reg) = Signed::<KeyRegistry>::from_json(&bytes, KEY_REGISTRY_FORMAT) {
            if let Ok(station) = StationId::new(info.station.clone()) {
                o.untrusted_keys = reg.body.keys_of(&station);
            }
        }
    }
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
    ))
}

/// A `.tar` bundle unpacked into a private temporary folder (removed on drop).
pub(crate) struct Unpacked {
    _dir: tempfile::TempDir,
    /// The bundle's top folder (holding `bundle.json`).
    pub root: PathBuf,
}

/// Whether `path` is a tar file (the `ustar` magic of its first header).
pub(crate) fn is_tar(path: &Path) -> bool {
    let mut head = [0u8; 512];
    std::fs::File::open(path)
        .and_then(|mut f| f.read_exact(&mut head))
        .is_ok()
        && &head[257..262] == b"ustar"
}

/// Unpacks a tar bundle safely: regular files and folders only, no absolute paths, no `..`,
/// at most the tar's own size in total.
pub(crate) fn unpack(path: &Path) -> Result<Unpacked, VerifyError> {
    let bad = |why: String| VerifyError::BadBundle(path.to_owned(), why);
    let limit = std::fs::metadata(path)
        .map_err(|e| bad(e.to_string()))?
        .len();
    let file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let dir = tempfile::Builder::new()
        .prefix("stationwatch-verify-")
        .tempdir()
        .map_err(|e| bad(format!("temporary folder: {e}")))?;
    let mut archive = tar::Archive::new(file);
    let mut total = 0u64;
    let mut roots: Vec<PathBuf> = Vec::new();
    for entry in archive.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let rel = entry.path().map_err(|e| bad(e.to_string()))?.into_owned();
        if rel.components().any(|c| !matches!(c, Component::Normal(_))) {
            return Err(bad(format!("unsafe path {}", rel.display())));
        }
        let kind = entry.header().entry_type();
        let target = dir.path().join(&rel);
        if kind.is_dir() {
            std::fs::create_dir_all(&target).map_err(|e| bad(e.to_string()))?;
            continue;
        }
        if !kind.is_file() {
            return Err(bad(format!(
                "{} is not a regular file (links and devices are refused)",
                rel.display()
            )));
        }
        total = total.saturating_add(entry.size());
        if total > limit {
            return Err(bad("the entries are larger than the tar itself".into()));
        }
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(|e| bad(e.to_string()))?;
        }
        let mut out = std::fs::File::create(&target).map_err(|e| bad(e.to_string()))?;
        std::io::copy(&mut entry, &mut out).map_err(|e| bad(e.to_string()))?;
        if rel.file_name().is_some_and(|n| n == BUNDLE_FILE) {
            roots.push(target.parent().unwrap_or(dir.path()).to_owned());
        }
    }
    match roots.as_slice() {
        [root] => Ok(Unpacked {
            root: root.clone(),
            _dir: dir,
        }),
        [] => Err(bad(format!("no {BUNDLE_FILE} in the tar"))),
        _ => Err(bad(format!("more than one {BUNDLE_FILE} in the tar"))),
    }
}
