//! Offline verification of Stationwatch recordings: a station's recordings folder, one camera's
//! folder, or an unpacked evidence bundle.
//!
//! For every camera: the manifest is read (malformed lines and a torn tail are findings), the
//! chain and signatures are checked against the keys the reader trusts ([`TrustInputs`]), the
//! manifest is checked against every head the controller witnessed, every segment the manifest
//! says is present in the window is hashed, files the manifest does not list are found, and the
//! coverage of the window is computed. The result is one [`Verdict`] per camera and overall.
//!
//! This crate depends only on `stationwatch-protocol` (no GStreamer, no network), so anyone can
//! build the `stationwatch-verify` binary and check evidence on their own machine.

mod bundle;
mod camera;
pub mod cli;
mod render;
mod trust;

use std::path::{Path, PathBuf};

pub use bundle::BundleInfo;
pub use camera::{CameraReport, Finding};
pub use render::{meaning, render};
pub use stationwatch_protocol::trust::Verdict;
pub use trust::{TrustError, TrustInputs};

use stationwatch_protocol::manifest::{Timestamp, MANIFEST_FILE};

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    pub trust: TrustInputs,
    pub from: Option<Timestamp>,
    pub to: Option<Timestamp>,
    pub camera: Option<String>,
    /// The manifests are excerpts (an evidence bundle): not starting at seq 0 is not a
    /// finding, and what lies before the excerpt is not checked. Set by [`verify`] for bundles.
    pub excerpt: bool,
    /// Keys to check signatures with when no trusted key applies and the manifest names none
    /// (a bundle's own `keys.json` read without an outside controller key): consistency only,
    /// never trust — the verdict stays UNTRUSTED at best.
    pub untrusted_keys: Vec<stationwatch_protocol::manifest::PublicKey>,
}

/// Why verification could not run at all (not a verdict).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("{0} holds no manifest ({MANIFEST_FILE}) and no camera folder with one")]
    NothingToVerify(PathBuf),
    #[error("no camera {0:?} under the given path")]
    NoSuchCamera(String),
    #[error("evidence bundle {0}: {1}")]
    BadBundle(PathBuf, String),
    #[error(transparent)]
    Trust(#[from] TrustError),
}

/// The result for every camera, and the overall verdict (the worst of them).
#[derive(Debug, Clone)]
pub struct Report {
    pub cameras: Vec<CameraReport>,
    pub verdict: Verdict,
    /// Set when an evidence bundle was verified.
    pub bundle: Option<BundleInfo>,
}

/// Verifies `path`: a camera folder (holding `manifest.jsonl`), a folder of camera folders, or
/// an evidence bundle (its folder, or the `.tar` as downloaded; see `bundle.rs`).
pub fn verify(path: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    if path.is_file() && bundle::is_tar(path) {
        let unpacked = bundle::unpack(path)?;
        let mut report = verify_bundle(&unpacked.root, opts)?;
        for c in &mut report.cameras {
            c.dir = unpacked.shown(path, &c.dir);
        }
        return Ok(report);
    }
    if path.join(bundle::BUNDLE_FILE).is_file() {
        return verify_bundle(path, opts);
    }
    let mut dirs: Vec<PathBuf> = Vec::new();
    if path.join(MANIFEST_FILE).is_file() {
        dirs.push(path.to_owned());
    } else if let Ok(rd) = std::fs::read_dir(path) {
        dirs = rd
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.join(MANIFEST_FILE).is_file())
            .collect();
        dirs.sort();
    }
    if dirs.is_empty() {
        return Err(VerifyError::NothingToVerify(path.to_owned()));
    }
    if let Some(cam) = &opts.camera {
        dirs.retain(|d| d.file_name().and_then(|n| n.to_str()) == Some(cam.as_str()));
        if dirs.is_empty() {
            return Err(VerifyError::NoSuchCamera(cam.clone()));
        }
    }
    let cameras: Vec<CameraReport> = dirs
        .iter()
        .map(|d| camera::verify_camera(d, opts))
        .collect();
    let verdict = cameras
        .iter()
        .map(|c| c.verdict)
        .fold(Verdict::Ok, Verdict::worst);
    Ok(Report {
        cameras,
        verdict,
        bundle: None,
    })
}

/// An evidence bundle's folder: the cameras `bundle.json` lists, as excerpts, over its window.
fn verify_bundle(path: &Path, opts: &VerifyOptions) -> Result<Report, VerifyError> {
    let (o, info, checked) = bundle::options(path, opts)?;
    let mut cameras: Vec<CameraReport> = checked
        .cameras
        .iter()
        .filter(|c| opts.camera.as_ref().is_none_or(|want| want == c.as_str()))
        .map(|c| {
            let dir = path.join(c.as_str());
            if dir.join(MANIFEST_FILE).is_file() {
                camera::verify_camera_as(&dir, &o, Some((&checked.station, c)))
            } else {
                camera::missing_camera(&dir)
            }
        })
        .collect();
    if cameras.is_empty() {
        return Err(VerifyError::NoSuchCamera(
            opts.camera.clone().unwrap_or_default(),
        ));
    }
    cameras.sort_by(|a, b| a.camera.cmp(&b.camera));
    let verdict = cameras
        .iter()
        .map(|c| c.verdict)
        .fold(Verdict::Ok, Verdict::worst);
    Ok(Report {
        cameras,
        verdict,
        bundle: Some(info),
    })
}
