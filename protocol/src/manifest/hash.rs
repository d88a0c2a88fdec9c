//! SHA-256 digests and their text form (64 lowercase hex characters).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use sha2::{Digest, Sha256};

/// A SHA-256 digest. Its text form is exactly 64 lowercase hex characters.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hash256(pub [u8; 32]);

/// Why a digest's text form was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HashParseError {
    #[error("a SHA-256 digest must be 64 characters long, found {0}")]
    Length(usize),
    #[error("a SHA-256 digest must be lowercase hex (0-9, a-f)")]
    NotLowerHex,
}

impl Hash256 {
    /// 32 zero bytes: the `prev` of the first entry.
    pub const ZERO: Hash256 = Hash256([0; 32]);

    /// SHA-256 of `bytes`.
    pub fn of(bytes: &[u8]) -> Self {
        Hash256(Sha256::digest(bytes).into())
    }

    /// SHA-256 and byte count of everything `reader` yields (streamed in 64 KiB chunks).
    pub fn of_reader(mut reader: impl std::io::Read) -> std::io::Result<(Self, u64)> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        let mut size: u64 = 0;
        loop {
            match reader.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let chunk = buf.get(..n).ok_or_else(|| {
                        std::io::Error::other("reader returned more bytes than asked")
                    })?;
                    hasher.update(chunk);
                    size = size.saturating_add(n as u64);
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        Ok((Hash256(hasher.finalize().into()), size))
    }

    /// The 64-character lowercase hex form.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses exactly 64 lowercase hex characters.
    pub fn from_hex(s: &str) -> Result<Self, HashParseError> {
        let bytes = decode_lower_hex::<32>(s).map_err(|e| match e {
            HexError::Length(n) => HashParseError::Length(n),
            HexError::NotLowerHex => HashParseError::NotLowerHex,
        })?;
        Ok(Hash256(bytes))
    }
}

pub(crate) enum HexError {
    Length(usize),
    NotLowerHex,
}

/// Decodes exactly `2 * N` lowercase hex characters.
pub(crate) fn decode_lower_hex<const N: usize>(s: &str) -> Result<[u8; N], HexError> {
    if s.len() != 2 * N {
        return Err(HexError::Length(s.len()));
    }
    if !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
        return Err(HexError::NotLowerHex);
    }
    let mut out = [0u8; N];
    hex::decode_to_slice(s, &mut out).map_err(|_| HexError::NotLowerHex)?;
    Ok(out)
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({})", self.to_hex())
    }
}

impl FromStr for Hash256 {
    type Err = HashParseError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::from_hex(s)
    }
}

impl Serialize for Hash256 {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        Hash256::from_hex(&s).map_err(serde::de::Error::custom)
    }
}
