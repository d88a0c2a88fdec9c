//! The upload protocol between a station and the controller's archive (`docs/archive.md`).
//!
//! A station uploads, per camera, first the **manifest lines** the archive lacks (the archive
//! keeps a contiguous, chain-checked copy of the camera's manifest), then the **segments** those
//! lines list, in chunks of at most [`MAX_CHUNK_BYTES`] at an explicit offset. A cut link or a
//! restart asks the archive how many bytes it holds and goes on from there, so at most one chunk
//! per file is sent twice.
//!
//! Every request is signed by the station's Ed25519 key (the one registered with the
//! controller) over the method, the path with its query and the SHA-256 of the body:
//! `Authorization: Stationwatch-Ed25519 station=<id>,sig=<128 hex>`. The path names the station,
//! so a station can write only its own footage, and a signature is good for exactly one object,
//! offset and body. A replayed request repeats a write that already happened (idempotent) and
//! changes nothing. No clock is involved: the station's clock is not trusted.
//!
//! Paths (under the controller's base URL):
//! * `GET  /archive/v1/{station}/{camera}/manifest` → [`ManifestRange`] (404: nothing yet)
//! * `POST /archive/v1/{station}/{camera}/manifest` body: manifest lines (`\n`-terminated) that
//!   extend the archived range forwards or backwards → [`ManifestRange`]
//! * `GET  /archive/v1/{station}/{camera}/segments/{seq}` → [`SegmentState`]
//! * `PUT  /archive/v1/{station}/{camera}/segments/{seq}?offset=N` body: bytes `N..N+len` of the
//!   segment file → [`SegmentState`] (409 with the state when `offset` is not what the archive
//!   holds; 422 when the finished file does not match its signed entry).

use serde::{Deserialize, Serialize};

use crate::manifest::{Hash256, PublicKey, StationKey};
use crate::{CameraId, StationId};

/// Largest chunk of a segment (and largest manifest batch) in one request.
pub const MAX_CHUNK_BYTES: u64 = 4 * 1024 * 1024;

/// The `Authorization` scheme of station requests.
pub const AUTH_SCHEME: &str = "Stationwatch-Ed25519";

/// Domain separation of the signed request digest.
const DIGEST_PREFIX: &str = "stationwatch-archive-v1";

/// The path of a camera's archived manifest.
pub fn manifest_path(station: &StationId, camera: &CameraId) -> String {
    format!("/archive/v1/{station}/{camera}/manifest")
}

/// The path of one segment (by the `seq` of its manifest entry).
pub fn segment_path(station: &StationId, camera: &CameraId, seq: u64) -> String {
    format!("/archive/v1/{station}/{camera}/segments/{seq}")
}

/// The bytes a station signs for a request: method, path with query, SHA-256 of the body.
pub fn request_digest(method: &str, path_and_query: &str, body_sha256: &Hash256) -> Vec<u8> {
    format!(
        "{DIGEST_PREFIX}\n{}\n{path_and_query}\n{}",
        method.to_ascii_uppercase(),
        body_sha256.to_hex()
    )
    .into_bytes()
}

/// The `Authorization` header value of a request.
pub fn authorization(
    station: &StationId,
    key: &StationKey,
    method: &str,
    path_and_query: &str,
    body: &[u8],
) -> String {
    let digest = request_digest(method, path_and_query, &Hash256::of(body));
    let sig = key.sign(&digest);
    format!("{AUTH_SCHEME} station={station},sig={}", hex::encode(sig))
}

/// Why an `Authorization` header was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("missing Authorization header")]
    Missing,
    #[error("Authorization is not `{AUTH_SCHEME} station=<id>,sig=<hex>`")]
    Malformed,
    #[error("station {0:?} in Authorization is not a valid station id")]
    BadStation(String),
    #[error("the request is for station {path} but signed as station {header}")]
    WrongStation { path: String, header: String },
    #[error("signature does not match the station's registered key")]
    BadSignature,
}

/// A parsed `Authorization` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StationAuth {
    pub station: StationId,
    pub sig: [u8; 64],
}

impl StationAuth {
    /// Parses `Stationwatch-Ed25519 station=<id>,sig=<128 hex>`.
    pub fn parse(header: &str) -> Result<Self, AuthError> {
        let rest = header
            .strip_prefix(AUTH_SCHEME)
            .and_then(|r| r.strip_prefix(' '))
            .ok_or(AuthError::Malformed)?;
        let mut station = None;
        let mut sig = None;
        for part in rest.split(',') {
            match part.trim().split_once('=') {
                Some(("station", v)) if station.is_none() => station = Some(v),
                Some(("sig", v)) if sig.is_none() => sig = Some(v),
                _ => return Err(AuthError::Malformed),
            }
        }
        let (Some(station), Some(sig)) = (station, sig) else {
            return Err(AuthError::Malformed);
        };
        let station =
            StationId::new(station).map_err(|_| AuthError::BadStation(truncate(station)))?;
        let mut bytes = [0u8; 64];
        hex::decode_to_slice(sig, &mut bytes).map_err(|_| AuthError::Malformed)?;
        Ok(StationAuth {
            station,
            sig: bytes,
        })
    }

    /// Checks the signature of a request for `path_station` against `key`.
    pub fn check(
        &self,
        path_station: &StationId,
        key: &PublicKey,
        method: &str,
        path_and_query: &str,
        body_sha256: &Hash256,
    ) -> Result<(), AuthError> {
        if &self.station != path_station {
            return Err(AuthError::WrongStation {
                path: path_station.to_string(),
                header: self.station.to_string(),
            });
        }
        let digest = request_digest(method, path_and_query, body_sha256);
        if key.verify(&digest, &self.sig) {
            Ok(())
        } else {
            Err(AuthError::BadSignature)
        }
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(80).collect()
}

/// The contiguous range of a camera's manifest the archive holds, each line's signature checked
/// against the station's registered key and each `prev` against the line before it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestRange {
    pub first_seq: u64,
    /// `prev` of the first line (what the line before it must hash to).
    pub first_prev: Hash256,
    pub last_seq: u64,
    /// SHA-256 of the last line (what the next line's `prev` must be).
    pub last_hash: Hash256,
}

/// Where a segment stands in the archive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SegmentPhase {
    /// Listed in the archived manifest; `received` bytes are staged.
    Pending,
    /// Bytes matched the signed entry: archived.
    Archived,
    /// The finished bytes did not match the signed entry: kept aside, alerted. Uploading again
    /// starts from 0.
    Refused,
}

/// Answer of the segment endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentState {
    pub seq: u64,
    pub phase: SegmentPhase,
    /// Bytes the archive holds of the file (the next chunk's offset).
    pub received: u64,
    /// The file's size according to its signed entry.
    pub size: u64,
    /// Why it was refused, for [`SegmentPhase::Refused`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Error body of the archive endpoints.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArchiveErrorBody {
    pub error: String,
    /// The segment's state, when the error concerns one (offset mismatch, refusal).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub state: Option<SegmentState>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn station() -> StationId {
        StationId::new("pu-0042").unwrap()
    }

    #[test]
    fn a_signed_request_checks_only_for_its_path_body_and_key() {
        let key = StationKey::from_seed(&[7; 32]);
        let other = StationKey::from_seed(&[8; 32]);
        let path = "/archive/v1/pu-0042/desk/segments/5?offset=0";
        let body = b"chunk bytes";
        let header = authorization(&station(), &key, "PUT", path, body);
        let auth = StationAuth::parse(&header).unwrap();
        let h = Hash256::of(body);
        auth.check(&station(), &key.public(), "PUT", path, &h)
            .unwrap();
        assert_eq!(
            auth.check(&station(), &other.public(), "PUT", path, &h),
            Err(AuthError::BadSignature)
        );
        let moved = "/archive/v1/pu-0042/desk/segments/5?offset=1";
        assert_eq!(
            auth.check(&station(), &key.public(), "PUT", moved, &h),
            Err(AuthError::BadSignature)
        );
        assert_eq!(
            auth.check(&station(), &key.public(), "PUT", path, &Hash256::of(b"x")),
            Err(AuthError::BadSignature)
        );
        let elsewhere = StationId::new("pu-0043").unwrap();
        assert!(matches!(
            auth.check(&elsewhere, &key.public(), "PUT", path, &h),
            Err(AuthError::WrongStation { .. })
        ));
    }

    #[test]
    fn malformed_headers_are_refused_without_panic() {
        for h in [
            "",
            "Bearer x",
            "Stationwatch-Ed25519",
            "Stationwatch-Ed25519 station=pu-1",
            "Stationwatch-Ed25519 station=pu-1,sig=zz",
            "Stationwatch-Ed25519 station=pu-1,sig=00,sig=00",
            "Stationwatch-Ed25519 station=../x,sig=00",
        ] {
            assert!(StationAuth::parse(h).is_err(), "{h:?} accepted");
        }
    }
}
