//! Which keys the reader trusts, and which heads the controller witnessed.
//!
//! Trusted keys come only from outside the recordings: `--public-key`, a key registry exported
//! by the controller (`--keys`), or a witness file (`--witness`). A key taken from the manifest
//! itself is never trusted: anyone can re-sign a doctored folder with a fresh key. Files given on
//! the command line are trusted because the reader chose them; with `--controller-key`, the
//! registry and witness must also be signed by that controller.

use std::path::Path;

use stationwatch_protocol::manifest::{KeyError, PublicKey};
use stationwatch_protocol::trust::{
    KeyRegistry, Signed, SignedFileError, Witness, KEY_REGISTRY_FORMAT, WITNESS_FORMAT,
};
use stationwatch_protocol::StationId;

/// What the reader brings: keys and witnessed heads from outside the station.
#[derive(Debug, Clone, Default)]
pub struct TrustInputs {
    /// Keys given directly (`--public-key`): trusted for every station.
    pub public_keys: Vec<PublicKey>,
    /// A key registry export (`--keys`).
    pub registry: Option<Signed<KeyRegistry>>,
    /// Witness files (`--witness`).
    pub witnesses: Vec<Signed<Witness>>,
    /// The controller's public key, when the reader has it (`--controller-key`).
    pub controller_key: Option<PublicKey>,
}

/// Why a trust input could not be read.
#[derive(Debug, thiserror::Error)]
pub enum TrustError {
    #[error("{what} {path}: {source}")]
    Read {
        what: &'static str,
        path: String,
        source: std::io::Error,
    },
    #[error("{what} {path}: {source}")]
    Key {
        what: &'static str,
        path: String,
        source: KeyError,
    },
    #[error("{path}: {source}")]
    Signed {
        path: String,
        source: SignedFileError,
    },
    #[error("{path} is signed by controller key {found}, not by the --controller-key given ({expected})")]
    WrongController {
        path: String,
        expected: String,
        found: String,
    },
}

impl TrustInputs {
    /// Reads a public key given as text or as the path of a file holding it.
    pub fn add_public_key(&mut self, arg: &str) -> Result<(), TrustError> {
        self.public_keys.push(read_key(arg, "--public-key")?);
        Ok(())
    }

    pub fn set_controller_key(&mut self, arg: &str) -> Result<(), TrustError> {
        self.controller_key = Some(read_key(arg, "--controller-key")?);
        Ok(())
    }

    pub fn add_registry(&mut self, path: &Path) -> Result<(), TrustError> {
        let doc = self.read_signed::<KeyRegistry>(path, KEY_REGISTRY_FORMAT)?;
        self.registry = Some(doc);
        Ok(())
    }

    pub fn add_witness(&mut self, path: &Path) -> Result<(), TrustError> {
        let doc = self.read_signed::<Witness>(path, WITNESS_FORMAT)?;
        self.witnesses.push(doc);
        Ok(())
    }

    fn read_signed<T>(&self, path: &Path, format: &'static str) -> Result<Signed<T>, TrustError>
    where
        T: serde::Serialize + serde::de::DeserializeOwned,
    {
        let shown = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| TrustError::Read {
            what: format,
            path: shown.clone(),
            source,
        })?;
        let doc = Signed::<T>::from_json(&bytes, format).map_err(|source| TrustError::Signed {
            path: shown.clone(),
            source,
        })?;
        if let Some(expected) = &self.controller_key {
            if !doc.signed_by(expected) {
                return Err(TrustError::WrongController {
                    path: shown,
                    expected: expected.fingerprint().to_string(),
                    found: doc.controller_key.fingerprint().to_string(),
                });
            }
        }
        Ok(doc)
    }

    /// Every key the reader trusts for `station`, and where each came from.
    pub fn keys_for(&self, station: &StationId) -> Vec<(PublicKey, &'static str)> {
        let mut out: Vec<(PublicKey, &'static str)> = Vec::new();
        let mut add = |k: PublicKey, from: &'static str| {
            if !out.iter().any(|(o, _)| *o == k) {
                out.push((k, from));
            }
        };
        for k in &self.public_keys {
            add(*k, "given with --public-key");
        }
        if let Some(reg) = &self.registry {
            for k in reg.body.keys_of(station) {
                add(k, "registered (key registry)");
            }
        }
        for w in self.witnesses.iter().filter(|w| &w.body.station == station) {
            for k in &w.body.keys {
                add(k.key, "registered (witness file)");
            }
        }
        out
    }

    /// The witness files about `station`.
    pub fn witnesses_for<'a>(
        &'a self,
        station: &'a StationId,
    ) -> impl Iterator<Item = &'a Witness> + 'a {
        self.witnesses
            .iter()
            .map(|w| &w.body)
            .filter(move |w| &w.station == station)
    }
}

fn read_key(arg: &str, what: &'static str) -> Result<PublicKey, TrustError> {
    // A file holding the key, or the key itself.
    let text = if Path::new(arg).is_file() {
        std::fs::read_to_string(arg).map_err(|source| TrustError::Read {
            what,
            path: arg.to_owned(),
            source,
        })?
    } else {
        arg.to_owned()
    };
    PublicKey::from_text(text.trim()).map_err(|source| TrustError::Key {
        what,
        path: arg.to_owned(),
        source,
    })
}
