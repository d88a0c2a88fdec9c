//! The key registry export and the witness of manifest heads.

use serde::{Deserialize, Serialize};

use crate::ids::{CameraId, StationId};
use crate::manifest::{Chain, Hash256, PublicKey, Timestamp};

/// `format` value of a key registry export.
pub const KEY_REGISTRY_FORMAT: &str = "stationwatch-keys";
/// `format` value of a witness file.
pub const WITNESS_FORMAT: &str = "stationwatch-witness";

/// One registered key of a station and when it was in force. Rotation retires the old key
/// (`retired_at`) and registers a new one; both stay listed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RegisteredKey {
    pub key: PublicKey,
    pub registered_at: Timestamp,
    #[serde(default)]
    pub retired_at: Option<Timestamp>,
}

impl RegisteredKey {
    /// Whether this key was the station's at `t`.
    pub fn in_force_at(&self, t: Timestamp) -> bool {
        self.registered_at <= t && self.retired_at.is_none_or(|r| t < r)
    }
}

/// The keys of one station.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StationKeys {
    pub station: StationId,
    pub keys: Vec<RegisteredKey>,
}

/// The controller's key registry, as exported for verifiers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRegistry {
    /// Always [`KEY_REGISTRY_FORMAT`].
    pub format: String,
    pub v: u64,
    pub issued_at: Timestamp,
    pub stations: Vec<StationKeys>,
}

impl KeyRegistry {
    pub fn new(issued_at: Timestamp, stations: Vec<StationKeys>) -> Self {
        KeyRegistry {
            format: KEY_REGISTRY_FORMAT.into(),
            v: 1,
            issued_at,
            stations,
        }
    }

    /// Every key ever registered for `station` (current and retired).
    pub fn keys_of(&self, station: &StationId) -> Vec<PublicKey> {
        self.stations
            .iter()
            .filter(|s| &s.station == station)
            .flat_map(|s| s.keys.iter().map(|k| k.key))
            .collect()
    }
}

/// An RFC 3161 time-stamp token over a witnessed head: proof from a third party that the head
/// (and so every entry and file up to it) existed at `time`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TsaToken {
    /// The authority's URL, for people.
    pub tsa: String,
    /// The time the authority put in the token.
    pub time: Timestamp,
    /// SHA-256 of [`WitnessedHead::imprint_bytes`]: the message imprint inside the token.
    pub imprint: Hash256,
    /// The DER `TimeStampResp` (or token), base64.
    pub token: String,
}

/// One manifest head as the controller received it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WitnessedHead {
    pub camera: CameraId,
    /// `seq` of the next entry: the manifest had entries `0..next_seq` when reported.
    pub next_seq: u64,
    /// SHA-256 of the line of entry `next_seq - 1`.
    pub prev: Hash256,
    /// The station's own time in the report that carried the head (its word only).
    pub agent_at: Timestamp,
    /// When the controller received it (the controller's clock).
    pub received_at: Timestamp,
    #[serde(default)]
    pub tsa: Option<TsaToken>,
}

impl WitnessedHead {
    /// The chain state this head claims, for [`crate::manifest::check_head`].
    pub fn chain(&self, station: &StationId) -> Chain {
        Chain {
            station: station.clone(),
            camera: self.camera.clone(),
            next_seq: self.next_seq,
            prev: self.prev,
        }
    }

    /// The bytes a time-stamping authority is asked to stamp (their SHA-256 is the imprint):
    /// `stationwatch-head:<station>:<camera>:<next_seq>:<prev hex>`.
    pub fn imprint_bytes(&self, station: &StationId) -> Vec<u8> {
        format!(
            "stationwatch-head:{station}:{}:{}:{}",
            self.camera, self.next_seq, self.prev
        )
        .into_bytes()
    }
}

/// What the controller saw of one station's manifests over a window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Witness {
    /// Always [`WITNESS_FORMAT`].
    pub format: String,
    pub v: u64,
    pub issued_at: Timestamp,
    pub station: StationId,
    /// The window asked for (heads received in it, plus the latest head of each camera).
    #[serde(default)]
    pub from: Option<Timestamp>,
    #[serde(default)]
    pub to: Option<Timestamp>,
    /// The station's registered keys, as the controller's registry holds them.
    pub keys: Vec<RegisteredKey>,
    /// Heads in the order received.
    pub heads: Vec<WitnessedHead>,
}

impl Witness {
    pub fn new(
        issued_at: Timestamp,
        station: StationId,
        from: Option<Timestamp>,
        to: Option<Timestamp>,
        keys: Vec<RegisteredKey>,
        heads: Vec<WitnessedHead>,
    ) -> Self {
        Witness {
            format: WITNESS_FORMAT.into(),
            v: 1,
            issued_at,
            station,
            from,
            to,
            keys,
            heads,
        }
    }

    /// The heads of one camera.
    pub fn heads_of<'a>(&'a self, camera: &'a CameraId) -> impl Iterator<Item = &'a WitnessedHead> {
        self.heads.iter().filter(move |h| &h.camera == camera)
    }
}
