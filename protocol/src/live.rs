//! What the live gateway (`live-gateway`, `docs/live.md`) and the controller exchange, and the
//! layout of the HLS folder the gateways write and the controller serves.
//!
//! * The controller answers `GET /api/live/gateway` (bearer gateway token) with
//!   [`GatewayConfig`]: every station a gateway may accept, its SRT passphrase, and which of its
//!   cameras are public with their privacy masks.
//! * A gateway writes, per camera, `<hls_dir>/private/<station>/<camera>/` (the stream as the
//!   station sent it: operators only, through the controller) and, for public cameras,
//!   `<hls_dir>/public/<station>/<camera>/` (masked, re-encoded, no audio). Each folder holds
//!   `index.m3u8`, segments `<sequence>.ts` and `status.json` ([`StreamStatus`]).
//! * A station's SRT stream id is `<station>/<camera>` (or the SRT access-control form
//!   `#!::r=<station>/<camera>,m=publish`); its passphrase is [`passphrase`] of the controller's
//!   live secret.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::masks::Polygon;
use crate::{CameraId, StationId};

/// The playlist's file name in each stream folder.
pub const PLAYLIST: &str = "index.m3u8";
/// The status file's name in each stream folder.
pub const STATUS: &str = "status.json";
/// The folder (under the HLS root) of streams as the stations sent them.
pub const PRIVATE: &str = "private";
/// The folder (under the HLS root) of masked public streams.
pub const PUBLIC: &str = "public";

/// The answer of `GET /api/live/gateway`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayConfig {
    pub stations: Vec<GatewayStation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct GatewayStation {
    pub station: StationId,
    /// The SRT passphrase this station's publishers must use.
    pub passphrase: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    /// Cameras marked public (others are absent: not public).
    #[serde(default)]
    pub public: Vec<PublicCamera>,
}

/// A camera shown on the public page: its stream is published only masked.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PublicCamera {
    pub camera: CameraId,
    /// The privacy masks (`masks::validate`d by the controller; checked again by the gateway).
    pub masks: Vec<Polygon>,
}

/// What a gateway says about one stream folder (`status.json`), rewritten every segment and
/// when a publisher comes or goes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StreamStatus {
    pub station: StationId,
    pub camera: CameraId,
    /// A publisher is connected now.
    pub publishing: bool,
    /// When the current (or last) publisher connected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<DateTime<Utc>>,
    /// When the newest segment was written.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_segment_at: Option<DateTime<Utc>>,
    /// Bitrate of the newest segments, kbit/s.
    pub kbps: u32,
    /// Picture size of the newest segment (0 when unknown).
    pub width: u32,
    pub height: u32,
    /// Segments in the playlist and its target duration, seconds.
    pub segments: u32,
    pub target_duration_s: u32,
    /// The gateway that wrote it (its configured name).
    pub gateway: String,
    pub updated_at: DateTime<Utc>,
}

/// Parses an SRT stream id: `<station>/<camera>` or `#!::r=<station>/<camera>[,m=publish]`
/// (SRT's access-control syntax; any mode other than `publish` is refused).
pub fn parse_stream_id(s: &str) -> Result<(StationId, CameraId), String> {
    let resource = if let Some(rest) = s.strip_prefix("#!::") {
        let mut resource = None;
        for kv in rest.split(',') {
            let (k, v) = kv
                .split_once('=')
                .ok_or_else(|| format!("stream id item {kv:?} is not key=value"))?;
            match k {
                "r" => resource = Some(v),
                "m" if v == "publish" => {}
                "m" => return Err(format!("stream id mode {v:?}: only publish is accepted")),
                _ => {}
            }
        }
        resource.ok_or("stream id has no r= (station/camera)")?
    } else {
        s
    };
    let (station, camera) = resource
        .split_once('/')
        .ok_or("stream id is not station/camera")?;
    let station = StationId::new(station).map_err(|e| format!("stream id station: {e}"))?;
    let camera = CameraId::new(camera).map_err(|e| format!("stream id camera: {e}"))?;
    Ok((station, camera))
}

/// A station's SRT passphrase: 32 hex characters of HMAC-SHA256 over the station id, keyed with
/// the controller's live secret (`[live] secret_file`). Nothing to store per station; a new
/// secret changes every passphrase.
pub fn passphrase(secret: &[u8], station: &StationId) -> String {
    let mut mac =
        <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(b"stationwatch live passphrase v1\0");
    mac.update(station.as_str().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn passphrase_pinned() -> String {
        // HMAC-SHA256(key "secret one", "stationwatch live passphrase v1\0st-001"), first 16 bytes,
        // computed with openssl: printf 'stationwatch live passphrase v1\0st-001' |
        // openssl dgst -sha256 -hmac 'secret one'
        "56d427162764de8c70f2804de6d0439c".to_string()
    }

    #[test]
    fn stream_ids_in_both_forms() {
        let (s, c) = parse_stream_id("st-001/desk").unwrap();
        assert_eq!((s.as_str(), c.as_str()), ("st-001", "desk"));
        let (s, c) = parse_stream_id("#!::r=st-001/desk,m=publish").unwrap();
        assert_eq!((s.as_str(), c.as_str()), ("st-001", "desk"));
        assert!(parse_stream_id("#!::r=st-001/desk,m=request").is_err());
        assert!(parse_stream_id("st-001").is_err());
        assert!(parse_stream_id("../etc/desk").is_err());
        assert!(parse_stream_id("st-001/../x").is_err());
        assert!(parse_stream_id("").is_err());
    }

    #[test]
    fn passphrase_is_hmac_sha256() {
        let st = StationId::new("st-001").unwrap();
        let a = passphrase(b"secret one", &st);
        assert_eq!(a.len(), 32);
        assert_eq!(a, passphrase(b"secret one", &st));
        assert_ne!(a, passphrase(b"secret two", &st));
        assert_ne!(
            a,
            passphrase(b"secret one", &StationId::new("st-002").unwrap())
        );
        assert_eq!(passphrase(&[7u8; 100], &st).len(), 32);
        // Pinned: a change here changes every station's passphrase in the field.
        assert_eq!(a, passphrase_pinned());
    }
}
