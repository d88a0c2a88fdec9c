//! Enrollment of stations (`docs/enrollment.md`). An admin creates a one-time code for a
//! station id (dashboard API or `station-controller enroll-code`); on the device,
//! `station-agent enroll --controller URL --code CODE` sends it with the station's public key.
//! Redeeming it, once and before it expires: registers the key (a rotation if another was
//! registered: the admin asked for this station to be enrolled), creates or replaces the
//! station's broker account in the Mosquitto password file this controller manages (username =
//! station id, a fresh random password; the reference ACL lets that account speak only for its
//! own station), asks the broker to read the file again, and answers the broker URL, the CA and
//! the credentials. Everything audited; only the code's hash is stored.
//!
//! Why a password file and not Mosquitto's dynamic-security plugin: the reference broker
//! config (`config/mosquitto/`), its `%u` ACL and the tests that attack it are built on
//! per-station password accounts; the controller only adds lines to the file they already use.
//! The price: the controller must be able to write that file and reload the broker (same host,
//! or a shared volume), which `reload_command` does.

use std::process::Stdio;

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use stationwatch_protocol::manifest::PublicKey;
use stationwatch_protocol::StationId;
use tracing::{info, warn};

use crate::audit::{self, Action};
use crate::auth::{Role, User};
use crate::config::EnrollConfig;
use crate::fleet::Fleet;
use crate::store::{Store, StoreError};

/// Longest validity an admin may give a code.
pub const MAX_TTL_MS: i64 = 30 * 24 * 3_600_000;

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("enrollment is not configured on this controller ([enroll] in its config)")]
    NotConfigured,
    #[error("only admins create enrollment codes")]
    Forbidden,
    #[error("{0}")]
    Invalid(String),
    /// The code was refused; the message says why, for the technician.
    #[error("{0}")]
    Refused(String),
    #[error("the broker account could not be made: {0}")]
    Broker(String),
    #[error(transparent)]
    Keys(#[from] crate::keys::KeysError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A new code, once (only its hash is kept).
#[derive(Debug, Clone, Serialize)]
pub struct NewCode {
    pub station: String,
    pub code: String,
    pub expires_at: i64,
}

/// What the device sends.
#[derive(Debug, Clone, Deserialize)]
pub struct EnrollIn {
    pub code: String,
    pub station: String,
    /// The station's public key (hex or PEM).
    pub public_key: String,
}

/// What the device receives.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Enrolled {
    pub station: String,
    pub broker_url: String,
    pub username: String,
    pub password: String,
    /// The CA (PEM) to trust for an `mqtts://` broker.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_pem: Option<String>,
    pub key_fingerprint: String,
}

/// `xxxx-xxxx-…`: 128 random bits in 8 groups of 4 hex digits.
fn new_code() -> String {
    let hex = hex::encode(rand::random::<[u8; 16]>());
    hex.as_bytes()
        .chunks(4)
        .map(|c| std::str::from_utf8(c).unwrap_or_default())
        .collect::<Vec<_>>()
        .join("-")
}

/// The stored form of a code: SHA-256 of its hex digits in lower case (dashes and spaces a
/// technician may type or leave out do not matter).
pub fn code_hash(code: &str) -> String {
    let clean: String = code
        .chars()
        .filter(char::is_ascii_alphanumeric)
        .map(|c| c.to_ascii_lowercase())
        .collect();
    hex::encode(Sha256::digest(clean.as_bytes()))
}

/// Creates a code for `station` valid for `ttl_ms` (default: the configured one). Admins only;
/// audited.
pub async fn create(
    store: &Store,
    cfg: Option<&EnrollConfig>,
    user: &User,
    station: &StationId,
    ttl_ms: Option<i64>,
    now: i64,
) -> Result<NewCode, EnrollError> {
    let cfg = cfg.ok_or(EnrollError::NotConfigured)?;
    if user.role != Role::Admin {
        audit::record(
            store,
            now,
            &user.username,
            Action::EnrollCode,
            station.as_str(),
            "refused: not an admin",
            false,
        )
        .await?;
        return Err(EnrollError::Forbidden);
    }
    let ttl = ttl_ms.unwrap_or(cfg.code_ttl_ms);
    if !(1000..=MAX_TTL_MS).contains(&ttl) {
        return Err(EnrollError::Invalid(format!(
            "a code is valid between 1 second and {} days",
            MAX_TTL_MS / 86_400_000
        )));
    }
    let code = new_code();
    let expires_at = now + ttl;
    store
        .insert_enrollment(&code_hash(&code), station, &user.username, now, expires_at)
        .await?;
    audit::record(
        store,
        now,
        &user.username,
        Action::EnrollCode,
        station.as_str(),
        &format!("code valid {} min", ttl / 60_000),
        true,
    )
    .await?;
    info!(station = %station, user = %user.username, expires_at, "enrollment code created");
    Ok(NewCode {
        station: station.to_string(),
        code,
        expires_at,
    })
}

/// One `passwd_file` change at a time.
static PASSWD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Sets `user`'s password in the Mosquitto password file (`mosquitto_passwd -b`, hashed by
/// Mosquitto's own tool), then runs the reload command.
async fn broker_account(cfg: &EnrollConfig, user: &str, password: &str) -> Result<(), EnrollError> {
    let _guard = PASSWD.lock().await;
    let mut cmd = tokio::process::Command::new("mosquitto_passwd");
    if !cfg.passwd_file.exists() {
        cmd.arg("-c");
    }
    let out = cmd
        .arg("-b")
        .arg(&cfg.passwd_file)
        .arg(user)
        .arg(password)
        .stdin(Stdio::null())
        .output()
        .await
        .map_err(|e| EnrollError::Broker(format!("running mosquitto_passwd: {e}")))?;
    if !out.status.success() {
        return Err(EnrollError::Broker(format!(
            "mosquitto_passwd {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if let Some((prog, args)) = cfg.reload_command.split_first() {
        let out = tokio::process::Command::new(prog)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| EnrollError::Broker(format!("running the reload command {prog}: {e}")))?;
        if !out.status.success() {
            return Err(EnrollError::Broker(format!(
                "the reload command {prog} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(())
}

/// Redeems a code (see the module's documentation). Every outcome is audited.
pub async fn redeem(
    store: &Store,
    fleet: &Fleet,
    cfg: Option<&EnrollConfig>,
    input: EnrollIn,
    now: i64,
) -> Result<Enrolled, EnrollError> {
    let cfg = cfg.ok_or(EnrollError::NotConfigured)?;
    let station = StationId::new(input.station.clone())
        .map_err(|e| EnrollError::Invalid(format!("station: {e}")))?;
    let key = PublicKey::from_text(&input.public_key)
        .map_err(|e| EnrollError::Invalid(format!("public_key: {e}")))?;
    let hash = code_hash(&input.code);
    let refuse = |why: String| async {
        audit::record(
            store,
            now,
            "enrollment",
            Action::Enroll,
            station.as_str(),
            &format!("refused: {why}"),
            false,
        )
        .await?;
        warn!(station = %station, reason = %why, "enrollment refused");
        Err::<Enrolled, EnrollError>(EnrollError::Refused(why))
    };
    let Some(row) = store.enrollment(&hash).await? else {
        return refuse("unknown enrollment code: check it, or ask an admin for a new one".into())
            .await;
    };
    if row.station_id != station.as_str() {
        return refuse("this code was made for another station id".into()).await;
    }
    if row.used_at.is_some() {
        return refuse("this code was already used; ask an admin for a new one".into()).await;
    }
    if row.expires_at < now {
        return refuse("this code has expired; ask an admin for a new one".into()).await;
    }
    let ca_pem = match &cfg.ca_file {
        Some(f) => Some(std::fs::read_to_string(f).map_err(|e| {
            EnrollError::Broker(format!("cannot read [enroll] ca_file {}: {e}", f.display()))
        })?),
        None => None,
    };
    let fingerprint = key.fingerprint().to_string();
    // Claimed first, so that two devices with the same code cannot both get an account; given
    // back if what follows fails, so the technician can try again.
    if !store.use_enrollment(&hash, now, &fingerprint).await? {
        return refuse("this code was already used; ask an admin for a new one".into()).await;
    }
    let password =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
    let done = async {
        broker_account(cfg, station.as_str(), &password).await?;
        crate::keys::register(
            store,
            fleet,
            &station,
            &key,
            &format!("enrollment by {}", row.created_by),
            true,
            now,
        )
        .await?;
        Ok::<(), EnrollError>(())
    }
    .await;
    if let Err(e) = done {
        let _ = store.release_enrollment(&hash).await;
        audit::record(
            store,
            now,
            "enrollment",
            Action::Enroll,
            station.as_str(),
            &format!("failed: {e}"),
            false,
        )
        .await?;
        return Err(e);
    }
    audit::record(
        store,
        now,
        "enrollment",
        Action::Enroll,
        station.as_str(),
        &format!(
            "key {fingerprint} registered, broker account set (code by {})",
            row.created_by
        ),
        true,
    )
    .await?;
    info!(station = %station, key = %fingerprint, "station enrolled");
    Ok(Enrolled {
        station: station.to_string(),
        broker_url: cfg.broker_url.clone(),
        username: station.to_string(),
        password,
        ca_pem,
        key_fingerprint: fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_long_random_and_typed_any_way() {
        let a = new_code();
        assert_eq!(a.len(), 39, "{a}");
        assert_ne!(a, new_code());
        assert_eq!(
            code_hash(&a),
            code_hash(&a.to_uppercase().replace('-', " "))
        );
        assert_ne!(code_hash(&a), code_hash(&new_code()));
    }
}
