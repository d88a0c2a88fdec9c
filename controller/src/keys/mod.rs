//! Trust that does not rest on the station: the controller's own signing key, the stations'
//! registered keys (enrollment and audited rotation), the manifest heads the controller
//! witnessed, their signed exports for verifiers, and RFC 3161 time-stamps (`tsa.rs`).
//!
//! Where each check happens:
//! * A health report under a key other than the registered one is refused by the fleet
//!   (`Fleet::apply_health`: `key_mismatch`); the station keeps the state of its last matching
//!   report.
//! * Every head that changed is stored in `witnessed_heads` (one row per camera and
//!   `next_seq`); the fleet keeps the highest per camera in memory (loaded here at start,
//!   raised by other replicas' rows in `fleet/sync.rs`) and flags a head that went back or
//!   forked (`manifest_rewritten`).

pub mod tsa;

use std::path::Path;

use stationwatch_protocol::manifest::{PublicKey, StationKey};
use stationwatch_protocol::trust::{KeyRegistry, Signed, SignedFileError, StationKeys, Witness};
use stationwatch_protocol::StationId;
use tracing::info;

use crate::audit::{self, Action};
use crate::fleet::Fleet;
use crate::store::{self, KeyRow, Registered, Store};

#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("controller key {path}: {source}")]
    Key {
        path: String,
        source: stationwatch_protocol::manifest::KeyError,
    },
    #[error("cannot sign: {0}")]
    Sign(#[from] SignedFileError),
    #[error("{0}")]
    Time(String),
}

/// Reads the controller's signing key, creating it (PKCS#8 PEM, mode 0600) on first use.
pub fn load_or_create_key(path: &Path) -> Result<StationKey, KeysError> {
    let err = |source| KeysError::Key {
        path: path.display().to_string(),
        source,
    };
    if path.exists() {
        return StationKey::load(path).map_err(err);
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| {
            err(stationwatch_protocol::manifest::KeyError::Io {
                path: dir.display().to_string(),
                source: e,
            })
        })?;
    }
    let key = StationKey::generate().map_err(err)?;
    key.save_new(path).map_err(err)?;
    info!(path = %path.display(), fingerprint = %key.public().fingerprint(), "controller signing key created");
    Ok(key)
}

/// Loads every station's key in force into the fleet (at start).
pub async fn load(store: &Store, fleet: &Fleet, now: i64) -> Result<(), KeysError> {
    fleet.apply_key_rows(store.keys(None).await?, now);
    for h in store.latest_heads().await? {
        fleet.head_stored(&h, now);
    }
    Ok(())
}

/// Registers a station's key (admin), audited whether it was accepted or refused.
pub async fn register(
    store: &Store,
    fleet: &Fleet,
    station: &StationId,
    key: &PublicKey,
    by: &str,
    rotate: bool,
    now: i64,
) -> Result<Registered, KeysError> {
    let outcome = store.register_key(station, key, by, rotate, now).await?;
    let fpr = key.fingerprint().to_string();
    let (action, detail, ok) = match &outcome {
        Registered::New => (Action::KeyRegister, format!("registered {fpr}"), true),
        Registered::Rotated { old } => (
            Action::KeyRotate,
            format!("rotated {old} -> {fpr} (old key retired)"),
            true,
        ),
        Registered::Same => (
            Action::KeyRegister,
            format!("{fpr} already registered"),
            true,
        ),
        Registered::NeedsRotate { current } => (
            Action::KeyRotate,
            format!("refused {fpr}: {current} is registered and rotate was not asked"),
            false,
        ),
    };
    audit::record(store, now, by, action, station.as_str(), &detail, ok).await?;
    if ok {
        fleet.set_registered_key(station, Some(fpr), now);
    }
    Ok(outcome)
}

fn ts(ms: i64) -> Result<stationwatch_protocol::manifest::Timestamp, KeysError> {
    stationwatch_protocol::manifest::Timestamp::from_unix_ms(ms)
        .map_err(|e| KeysError::Time(e.to_string()))
}

/// The key registry export, signed by the controller.
pub async fn registry(
    store: &Store,
    key: &StationKey,
    now: i64,
) -> Result<Signed<KeyRegistry>, KeysError> {
    let mut stations: Vec<StationKeys> = Vec::new();
    for r in store.keys(None).await? {
        let k = r.registered()?;
        match stations.last_mut() {
            Some(s) if s.station == r.station => s.keys.push(k),
            _ => stations.push(StationKeys {
                station: r.station,
                keys: vec![k],
            }),
        }
    }
    Ok(Signed::sign(KeyRegistry::new(ts(now)?, stations), key)?)
}

/// The witness of one station: heads received in `[from, to]` plus the latest of every camera,
/// and the station's registered keys, signed by the controller.
pub async fn witness(
    store: &Store,
    key: &StationKey,
    station: &StationId,
    from: Option<i64>,
    to: Option<i64>,
    now: i64,
) -> Result<Signed<Witness>, KeysError> {
    let keys = store
        .keys(Some(station))
        .await?
        .iter()
        .map(KeyRow::registered)
        .collect::<Result<Vec<_>, _>>()?;
    let heads = store
        .witness_heads(station, from.unwrap_or(0), to.unwrap_or(i64::MAX))
        .await?
        .into_iter()
        .map(|(h, tsa)| h.witnessed(tsa))
        .collect::<Result<Vec<_>, _>>()?;
    let body = Witness::new(
        ts(now)?,
        station.clone(),
        from.map(ts).transpose()?,
        to.map(ts).transpose()?,
        keys,
        heads,
    );
    Ok(Signed::sign(body, key)?)
}
