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
    #[error("only admins create, list or revoke enrollment codes")]
    Forbidden,
    #[error("no open enrollment code with this id (unknown, used or already revoked)")]
    NotFound,
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
    /// Where to send live video and with which passphrase, when this controller has a live
    /// gateway (`[live] station_srt_url`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub live: Option<EnrolledLive>,
}

/// The station's live settings: the gateway's SRT address and the station's own passphrase
/// (the stream id is `<station>/<camera>`, which the agent uses by default).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrolledLive {
    pub srt_url: String,
    pub passphrase: String,
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

/// How far back the list of codes shows used, expired and revoked ones.
pub const LIST_DAYS: i64 = 14;

/// The codes still open and those of the last [`LIST_DAYS`] days. Admins only.
pub async fn list(
    store: &Store,
    user: &User,
    now: i64,
) -> Result<Vec<crate::store::enroll::EnrollmentInfo>, EnrollError> {
    if user.role != Role::Admin {
        return Err(EnrollError::Forbidden);
    }
    Ok(store
        .list_enrollments(now, now - LIST_DAYS * 86_400_000)
        .await?)
}

/// Revokes an open code (given to the wrong person, or no longer needed): it is refused from
/// now on. Admins only; audited, refusals too.
pub async fn revoke(store: &Store, user: &User, id: &str, now: i64) -> Result<String, EnrollError> {
    if user.role != Role::Admin {
        audit::record(
            store,
            now,
            &user.username,
            Action::EnrollRevoke,
            id,
            "refused: not an admin",
            false,
        )
        .await?;
        return Err(EnrollError::Forbidden);
    }
    let valid = id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit());
    let station = match valid {
        true => store.revoke_enrollment(id, now, &user.username).await?,
        false => None,
    };
    let Some(station) = station else {
        return Err(EnrollError::NotFound);
    };
    audit::record(
        store,
        now,
        &user.username,
        Action::EnrollRevoke,
        &station,
        &format!("code {} revoked", &id[..12]),
        true,
    )
    .await?;
    info!(station = %station, user = %user.username, "enrollment code revoked");
    Ok(station)
}

/// One `passwd_file` change at a time.
static PASSWD: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Mosquitto 2's password hash: `$7$<iterations>$<salt>$<hash>`, PBKDF2-HMAC-SHA512 with a
/// 12-byte salt and 101 iterations, base64 (what `mosquitto_passwd` writes). Computed here so
/// that the password never appears on a command line (`mosquitto_passwd -b` would show it to
/// every local user in the process list) and the controller's host needs no Mosquitto tools.
pub fn mosquitto_hash(password: &str) -> String {
    const ITERATIONS: u32 = 101;
    let b64 = base64::engine::general_purpose::STANDARD;
    let salt: [u8; 12] = rand::random();
    let mut hash = [0u8; 64];
    pbkdf2::pbkdf2_hmac::<sha2::Sha512>(password.as_bytes(), &salt, ITERATIONS, &mut hash);
    format!("$7${ITERATIONS}${}${}", b64.encode(salt), b64.encode(hash))
}

/// Replaces `user`'s line in the password file (or adds it), keeping every other line, the
/// file's mode and owner; written beside and renamed into place.
fn set_account(file: &std::path::Path, user: &str, hash: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
    let old = match std::fs::read_to_string(file) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e),
    };
    let meta = std::fs::metadata(file).ok();
    let prefix = format!("{user}:");
    let mut text: String = old
        .lines()
        .filter(|l| !l.starts_with(&prefix))
        .map(|l| format!("{l}\n"))
        .collect();
    text.push_str(&format!("{user}:{hash}\n"));
    let tmp = file.with_extension("enroll-tmp");
    let _ = std::fs::remove_file(&tmp);
    let mode = meta
        .as_ref()
        .map_or(0o600, |m| m.permissions().mode() & 0o777);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    if let Some(m) = &meta {
        // The broker reads it as its own user: keep the owner (works as root or as that user).
        let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
        let _ = std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(mode));
    }
    std::fs::rename(&tmp, file)
}

/// Sets `user`'s password in the broker's password file, then runs the reload command.
async fn broker_account(cfg: &EnrollConfig, user: &str, password: &str) -> Result<(), EnrollError> {
    let _guard = PASSWD.lock().await;
    let hash = mosquitto_hash(password);
    let (file, user_owned) = (cfg.passwd_file.clone(), user.to_owned());
    tokio::task::spawn_blocking(move || set_account(&file, &user_owned, &hash))
        .await
        .map_err(|e| EnrollError::Broker(e.to_string()))?
        .map_err(|e| EnrollError::Broker(format!("writing {}: {e}", cfg.passwd_file.display())))?;
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
    live: Option<&crate::live::Live>,
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
    if row.revoked_at.is_some() {
        return refuse("this code was revoked by an admin; ask an admin for a new one".into())
            .await;
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
    let live = live.and_then(|l| {
        Some(EnrolledLive {
            srt_url: l.cfg.station_srt_url.clone()?,
            passphrase: l.passphrase(&station),
        })
    });
    audit::record(
        store,
        now,
        "enrollment",
        Action::Enroll,
        station.as_str(),
        &format!(
            "key {fingerprint} registered, broker account set{} (code by {})",
            if live.is_some() {
                ", live passphrase given"
            } else {
                ""
            },
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
        live,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_account_is_added_or_replaced_and_the_other_lines_kept() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("stations.passwd");
        std::fs::write(&f, "B-0002:$7$101$x$y\nA-0001:$7$101$old$old\n").unwrap();
        let h = mosquitto_hash("pw");
        assert!(h.starts_with("$7$101$") && h.split('$').count() == 5, "{h}");
        set_account(&f, "A-0001", &h).unwrap();
        set_account(&f, "C-0003", &h).unwrap();
        let text = std::fs::read_to_string(&f).unwrap();
        assert_eq!(text, format!("B-0002:$7$101$x$y\nA-0001:{h}\nC-0003:{h}\n"));
        assert_ne!(mosquitto_hash("pw"), h, "salted");
    }

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
