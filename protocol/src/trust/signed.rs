//! A JSON document signed by the controller: `{...fields..., "controller_key": "<hex>",
//! "sig": "<128 hex>"}`, where `sig` is Ed25519 over the compact JSON of everything but `sig`.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::manifest::{PublicKey, StationKey};

/// Why a signed file could not be read or does not check.
#[derive(Debug, thiserror::Error)]
pub enum SignedFileError {
    #[error("not a {format} file: {reason}")]
    Invalid {
        format: &'static str,
        reason: String,
    },
    #[error("{format} file: the signature does not verify with the key it names")]
    BadSignature { format: &'static str },
    #[error("could not encode: {0}")]
    Encode(#[from] serde_json::Error),
}

/// A document `T` with the key that signed it and the signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Signed<T> {
    #[serde(flatten)]
    pub body: T,
    /// The controller's public key, 64 hex characters.
    pub controller_key: PublicKey,
    /// Ed25519 over the compact JSON of `body` followed by `controller_key` (the document
    /// without `sig`), 128 lowercase hex characters.
    pub sig: String,
}

#[derive(Serialize)]
struct Unsigned<'a, T> {
    #[serde(flatten)]
    body: &'a T,
    controller_key: &'a PublicKey,
}

fn signed_bytes<T: Serialize>(body: &T, key: &PublicKey) -> Result<Vec<u8>, serde_json::Error> {
    serde_json::to_vec(&Unsigned {
        body,
        controller_key: key,
    })
}

impl<T: Serialize + DeserializeOwned> Signed<T> {
    /// Signs `body` with the controller's key.
    pub fn sign(body: T, key: &StationKey) -> Result<Self, SignedFileError> {
        let public = key.public();
        let sig = key.sign(&signed_bytes(&body, &public)?);
        Ok(Signed {
            body,
            controller_key: public,
            sig: hex::encode(sig),
        })
    }

    /// Reads a signed file and checks its signature against the key it names. Whether that key
    /// is trusted is the caller's decision ([`Signed::signed_by`]).
    pub fn from_json(bytes: &[u8], format: &'static str) -> Result<Self, SignedFileError> {
        let doc: Signed<T> =
            serde_json::from_slice(bytes).map_err(|e| SignedFileError::Invalid {
                format,
                reason: e.to_string(),
            })?;
        let sig = crate::manifest::decode_sig_hex(&doc.sig).ok_or(SignedFileError::Invalid {
            format,
            reason: "sig must be 128 lowercase hex characters".into(),
        })?;
        let bytes = signed_bytes(&doc.body, &doc.controller_key)?;
        if !doc.controller_key.verify(&bytes, &sig) {
            return Err(SignedFileError::BadSignature { format });
        }
        Ok(doc)
    }

    /// Whether the file was signed by `key`.
    pub fn signed_by(&self, key: &PublicKey) -> bool {
        self.controller_key == *key
    }

    /// Pretty JSON for writing to a file (the signature covers the values, not the layout).
    pub fn to_json(&self) -> Result<String, serde_json::Error> {
        serde_json::to_string_pretty(self)
    }
}
