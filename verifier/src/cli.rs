//! The `verify` command line, shared by `stationwatch-verify` and `station-agent verify`.

use std::path::PathBuf;

use stationwatch_protocol::manifest::Timestamp;

use crate::{TrustInputs, VerifyOptions};

/// Exit statuses: 0 OK, 3 OK_WITH_GAPS, 4 UNTRUSTED, 5 FAILED; 1 when verification could not
/// run (unreadable path or trust file), 2 for usage errors.
pub const VERDICT_HELP: &str = "\
Verdicts (last line, and the exit status):
  OK            (0) signed by a trusted key, chain whole, every file matches, window recorded
  OK_WITH_GAPS  (3) as OK, and every missing moment is explained by a signed gap or deletion
  UNTRUSTED     (4) consistent, but no trusted key given: the manifest's own key proves nothing
  FAILED        (5) altered, missing, inserted, forked, cut short (against a witness),
                    unexplained time, or a deletion a legal hold forbade
  1 = could not run (unreadable path or trust file), 2 = usage error.
Trusted keys come only from outside the recordings: --public-key, --keys (the controller's key
registry export) or --witness (the controller's witness of manifest heads). With
--controller-key, --keys and --witness files must be signed by that controller.
An evidence bundle (its folder, or the .tar as downloaded) is checked over its window; its own
keys.json and witness.json are trusted only with --controller-key (the controller's public key,
obtained from outside the bundle), which they must be signed by.";

/// Arguments of `verify`.
#[derive(Debug, Clone, clap::Args)]
pub struct VerifyArgs {
    /// A recordings folder, one camera's folder, or an evidence bundle (its `.tar` as
    /// downloaded, or unpacked).
    pub path: PathBuf,
    /// The station's public key (64 hex characters, SPKI PEM, or a file holding either).
    #[arg(long = "public-key", value_name = "KEY")]
    pub public_key: Vec<String>,
    /// A key registry exported by the controller (`stationwatch-keys` JSON).
    #[arg(long, value_name = "FILE")]
    pub keys: Option<PathBuf>,
    /// A witness of manifest heads exported by the controller (`stationwatch-witness` JSON);
    /// a manifest shorter than, or different from, a witnessed head FAILS.
    #[arg(long, value_name = "FILE")]
    pub witness: Vec<PathBuf>,
    /// The controller's public key: --keys and --witness files must be signed by it.
    #[arg(long = "controller-key", value_name = "KEY")]
    pub controller_key: Option<String>,
    /// Start of the window (RFC 3339); default: the first recorded moment.
    #[arg(long)]
    pub from: Option<String>,
    /// End of the window (RFC 3339); default: the last recorded moment.
    #[arg(long)]
    pub to: Option<String>,
    /// Only this camera.
    #[arg(long)]
    pub camera: Option<String>,
}

/// Why the arguments could not be turned into options.
#[derive(Debug, thiserror::Error)]
pub enum ArgsError {
    #[error(transparent)]
    Trust(#[from] crate::TrustError),
    #[error("--{what} {value:?} is not an RFC 3339 time: {reason}")]
    Time {
        what: &'static str,
        value: String,
        reason: String,
    },
}

impl VerifyArgs {
    pub fn options(&self) -> Result<VerifyOptions, ArgsError> {
        let mut trust = TrustInputs::default();
        if let Some(k) = &self.controller_key {
            trust.set_controller_key(k)?;
        }
        for k in &self.public_key {
            trust.add_public_key(k)?;
        }
        if let Some(p) = &self.keys {
            trust.add_registry(p)?;
        }
        for w in &self.witness {
            trust.add_witness(w)?;
        }
        Ok(VerifyOptions {
            trust,
            from: time(self.from.as_deref(), "from")?,
            to: time(self.to.as_deref(), "to")?,
            camera: self.camera.clone(),
            excerpt: false,
            untrusted_keys: Vec::new(),
        })
    }
}

fn time(s: Option<&str>, what: &'static str) -> Result<Option<Timestamp>, ArgsError> {
    let Some(s) = s else { return Ok(None) };
    let err = |reason: String| ArgsError::Time {
        what,
        value: s.to_owned(),
        reason,
    };
    let t = chrono::DateTime::parse_from_rfc3339(s).map_err(|e| err(e.to_string()))?;
    Timestamp::from_datetime(t.with_timezone(&chrono::Utc))
        .map(Some)
        .map_err(|e| err(e.to_string()))
}
