//! The station's Ed25519 signing key, its public key and fingerprint.
//!
//! * Secret key file: PKCS#8 v1 PEM (`-----BEGIN PRIVATE KEY-----`, RFC 8410), the form
//!   `openssl genpkey -algorithm ed25519` writes. Reading also accepts the 32-byte seed as 64 hex
//!   characters.
//! * Public key text: 64 lowercase hex characters of the 32-byte key (RFC 8032 encoding).
//!   Reading also accepts an SPKI PEM (`-----BEGIN PUBLIC KEY-----`).
//! * Fingerprint: the first 8 bytes of SHA-256 of the 32 public-key bytes, as 16 lowercase hex
//!   characters in four groups of four joined by `:`, e.g. `21fe:31df:a154:a261`.

use std::fmt;
use std::io::Write;
use std::path::Path;
use std::str::FromStr;

use ed25519_dalek::pkcs8::spki::der::pem::LineEnding;
use ed25519_dalek::pkcs8::{DecodePrivateKey, DecodePublicKey, EncodePrivateKey, EncodePublicKey};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use zeroize::Zeroizing;

use super::hash::{decode_lower_hex, Hash256};

/// Why a key could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("the operating system's random source failed: {0}")]
    Random(String),
    #[error("not a PKCS#8 Ed25519 private key: {0}")]
    Pkcs8(String),
    #[error("a secret key must be a PKCS#8 PEM or 64 hex characters")]
    SecretText,
    #[error("a public key must be 64 lowercase hex characters or an SPKI PEM")]
    PublicText,
    #[error("not a valid Ed25519 public key")]
    InvalidPublic,
    #[error("not an SPKI Ed25519 public key: {0}")]
    Spki(String),
    #[error("key file {path}: {source}")]
    Io {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The station's secret signing key. It never prints its secret (`Debug` shows the fingerprint)
/// and is wiped from memory when dropped.
#[derive(Clone)]
pub struct StationKey(SigningKey);

impl StationKey {
    /// A new key from the operating system's random source.
    pub fn generate() -> Result<Self, KeyError> {
        let mut seed = Zeroizing::new([0u8; 32]);
        getrandom::fill(seed.as_mut()).map_err(|e| KeyError::Random(e.to_string()))?;
        Ok(Self::from_seed(&seed))
    }

    /// The key whose RFC 8032 32-byte secret ("seed") is `seed`.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        StationKey(SigningKey::from_bytes(seed))
    }

    /// Reads a PKCS#8 PEM (v1 or v2) Ed25519 private key.
    pub fn from_pkcs8_pem(pem: &str) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_pem(pem)
            .map(StationKey)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))
    }

    /// The key as PKCS#8 v1 PEM (what `openssl genpkey -algorithm ed25519` writes), LF endings.
    pub fn to_pkcs8_pem(&self) -> Result<Zeroizing<String>, KeyError> {
        let pair = ed25519_dalek::pkcs8::KeypairBytes {
            secret_key: self.0.to_bytes(),
            public_key: None,
        };
        pair.to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| KeyError::Pkcs8(e.to_string()))
    }

    /// Reads a key file's text: a PKCS#8 PEM, or the 32-byte seed as 64 hex characters
    /// (surrounding white space ignored).
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        if t.starts_with("-----BEGIN") {
            return Self::from_pkcs8_pem(t);
        }
        let lower = Zeroizing::new(t.to_ascii_lowercase());
        let seed = decode_lower_hex::<32>(&lower).map_err(|_| KeyError::SecretText)?;
        let seed = Zeroizing::new(seed);
        Ok(Self::from_seed(&seed))
    }

    /// Reads a key file (see [`StationKey::from_text`]).
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        let text =
            Zeroizing::new(
                std::fs::read_to_string(path).map_err(|source| KeyError::Io {
                    path: path.display().to_string(),
                    source,
                })?,
            );
        Self::from_text(&text)
    }

    /// Writes the key as PKCS#8 PEM to a new file (mode 0600 on Unix); refuses to overwrite.
    pub fn save_new(&self, path: &Path) -> Result<(), KeyError> {
        let io = |source| KeyError::Io {
            path: path.display().to_string(),
            source,
        };
        let pem = self.to_pkcs8_pem()?;
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut file = opts.open(path).map_err(io)?;
        file.write_all(pem.as_bytes()).map_err(io)?;
        file.sync_all().map_err(io)
    }

    /// The matching public key.
    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub(crate) fn sign(&self, msg: &[u8]) -> [u8; 64] {
        self.0.sign(msg).to_bytes()
    }
}

impl fmt::Debug for StationKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "StationKey(public {})", self.public().fingerprint())
    }
}

/// A station's Ed25519 public key. Text form: 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// From the 32-byte RFC 8032 encoding; refuses bytes that are not a curve point.
    pub fn from_bytes(bytes: &[u8; 32]) -> Result<Self, KeyError> {
        VerifyingKey::from_bytes(bytes)
            .map(PublicKey)
            .map_err(|_| KeyError::InvalidPublic)
    }

    /// The 32-byte encoding.
    pub fn as_bytes(&self) -> &[u8; 32] {
        self.0.as_bytes()
    }

    /// 64 lowercase hex characters.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.as_bytes())
    }

    /// Parses exactly 64 lowercase hex characters.
    pub fn from_hex(s: &str) -> Result<Self, KeyError> {
        let bytes = decode_lower_hex::<32>(s).map_err(|_| KeyError::PublicText)?;
        Self::from_bytes(&bytes)
    }

    /// Parses hex (either case) or an SPKI PEM (`-----BEGIN PUBLIC KEY-----`); surrounding white
    /// space ignored. For configuration files and command lines.
    pub fn from_text(text: &str) -> Result<Self, KeyError> {
        let t = text.trim();
        if t.starts_with("-----BEGIN") {
            return VerifyingKey::from_public_key_pem(t)
                .map(PublicKey)
                .map_err(|e| KeyError::Spki(e.to_string()));
        }
        Self::from_hex(&t.to_ascii_lowercase())
    }

    /// The key as SPKI PEM (what `openssl pkey -pubout` writes).
    pub fn to_spki_pem(&self) -> Result<String, KeyError> {
        self.0
            .to_public_key_pem(LineEnding::LF)
            .map_err(|e| KeyError::Spki(e.to_string()))
    }

    /// The short fingerprint people compare (see the module documentation).
    pub fn fingerprint(&self) -> Fingerprint {
        let h = Hash256::of(self.0.as_bytes());
        let mut f = [0u8; 8];
        f.copy_from_slice(&h.0[..8]);
        Fingerprint(f)
    }

    /// Strict RFC 8032 verification (rejects non-canonical and small-order encodings).
    pub(crate) fn verify(&self, msg: &[u8], sig: &[u8; 64]) -> bool {
        self.0
            .verify_strict(msg, &Signature::from_bytes(sig))
            .is_ok()
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.to_hex())
    }
}

impl FromStr for PublicKey {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, KeyError> {
        Self::from_text(s)
    }
}

impl Serialize for PublicKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for PublicKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        PublicKey::from_hex(&s).map_err(serde::de::Error::custom)
    }
}

/// First 8 bytes of SHA-256 of a public key; shown as `xxxx:xxxx:xxxx:xxxx`.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 8]);

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        for (i, chunk) in h.as_bytes().chunks(4).enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            f.write_str(std::str::from_utf8(chunk).map_err(|_| fmt::Error)?)?;
        }
        Ok(())
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({self})")
    }
}

impl FromStr for Fingerprint {
    type Err = KeyError;
    /// Accepts the 16 hex characters with or without the `:` separators, either case.
    fn from_str(s: &str) -> Result<Self, KeyError> {
        let plain: String = s
            .trim()
            .chars()
            .filter(|c| *c != ':')
            .map(|c| c.to_ascii_lowercase())
            .collect();
        decode_lower_hex::<8>(&plain)
            .map(Fingerprint)
            .map_err(|_| KeyError::PublicText)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 8032 section 7.1, TEST 1.
    const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";
    const RFC_PUBLIC: &str = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a";

    #[test]
    fn text_forms_round_trip() {
        let key = StationKey::from_text(RFC_SEED).unwrap();
        assert_eq!(key.public().to_hex(), RFC_PUBLIC);
        let pem = key.to_pkcs8_pem().unwrap();
        assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----\n"));
        let again = StationKey::from_text(&pem).unwrap();
        assert_eq!(again.public(), key.public());
        let spki = key.public().to_spki_pem().unwrap();
        assert_eq!(PublicKey::from_text(&spki).unwrap(), key.public());
        assert_eq!(
            PublicKey::from_text(&RFC_PUBLIC.to_uppercase()).unwrap(),
            key.public()
        );
        assert!(PublicKey::from_hex(&RFC_PUBLIC.to_uppercase()).is_err());
        let fpr = key.public().fingerprint();
        assert_eq!(fpr.to_string().len(), 19);
        assert_eq!(fpr.to_string().parse::<Fingerprint>().unwrap(), fpr);
        assert!(!format!("{key:?}").contains(RFC_SEED));
    }

    #[test]
    fn generated_keys_differ_and_save_refuses_overwrite() {
        let a = StationKey::generate().unwrap();
        let b = StationKey::generate().unwrap();
        assert_ne!(a.public(), b.public());
        let dir = std::env::temp_dir().join(format!(
            "sw-key-test-{}-{}",
            std::process::id(),
            a.public().to_hex()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("station.key");
        a.save_new(&path).unwrap();
        assert!(b.save_new(&path).is_err());
        assert_eq!(StationKey::load(&path).unwrap().public(), a.public());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_keys_are_refused() {
        assert!(StationKey::from_text("nope").is_err());
        assert!(StationKey::from_text(
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----"
        )
        .is_err());
        assert!(PublicKey::from_text("12").is_err());
        assert!(PublicKey::from_text(&"zz".repeat(32)).is_err());
    }
}
