//! Users, roles, passwords, sessions and API tokens.
//!
//! Passwords are hashed with Argon2id (the `argon2` crate's defaults, a per-user random salt).
//! Session and API tokens are 256-bit random values; only their SHA-256 is stored, so a leaked
//! database does not hand out sessions.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;
use serde::Serialize;
use sha2::{Digest, Sha256};

pub const MIN_PASSWORD_CHARS: usize = 8;
/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sw_session";
/// Failed logins of one user name within [`LOCKOUT_WINDOW_MS`] before logins are refused.
const MAX_FAILURES: u32 = 5;
const LOCKOUT_WINDOW_MS: i64 = 5 * 60 * 1000;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users and the audit log.
    Admin,
    /// Sees every station and sends commands.
    Operator,
    /// Sees only the stations granted to them; sends no commands.
    Observer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Observer => "observer",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Observer]
            .into_iter()
            .find(|r| r.name() == s)
    }

    pub fn may_command(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
}

/// An authenticated user.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// Stations an observer may see; `None` for every station.
    #[serde(skip)]
    pub grants: Option<Arc<HashSet<String>>>,
}

impl User {
    pub fn sees(&self, station: &str) -> bool {
        self.grants.as_ref().is_none_or(|g| g.contains(station))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password must have at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("password hashing failed: {0}")]
    Hash(String),
}

pub fn hash_password(password: &str) -> Result<String, AuthError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AuthError::WeakPassword);
    }
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| AuthError::Hash(e.to_string()))
}

pub fn verify_password(password: &str, hash: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|h| {
        Argon2::default()
            .verify_password(password.as_bytes(), &h)
            .is_ok()
    })
}

/// A new random token with its prefix (`sws_` session, `swt_` API token) and its stored hash.
pub fn new_token(prefix: &str) -> (String, String) {
    let bytes: [u8; 32] = rand::random();
    let token = format!("{prefix}{}", hex::encode(bytes));
    let hash = token_hash(&token);
    (token, hash)
}

pub fn token_hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Refuses logins of a user name after repeated failures (per replica, in memory), so that a
/// password cannot be guessed at the speed of the network.
#[derive(Default, Clone)]
pub struct LoginLimiter {
    failures: Arc<Mutex<HashMap<String, (u32, i64)>>>,
}

impl LoginLimiter {
    pub fn locked(&self, username: &str, now: i64) -> bool {
        let g = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        g.get(username)
            .is_some_and(|(n, first)| *n >= MAX_FAILURES && now - first < LOCKOUT_WINDOW_MS)
    }

    pub fn failed(&self, username: &str, now: i64) {
        let mut g = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if g.len() > 100_000 {
            g.retain(|_, (_, first)| now - *first < LOCKOUT_WINDOW_MS);
        }
        let e = g.entry(username.to_owned()).or_insert((0, now));
        if now - e.1 >= LOCKOUT_WINDOW_MS {
            *e = (0, now);
        }
        e.0 += 1;
    }

    pub fn succeeded(&self, username: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_hash_and_verify() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(verify_password("correct horse", &h));
        assert!(!verify_password("correct hors", &h));
        assert!(!verify_password("x", "not a hash"));
        assert!(matches!(
            hash_password("short"),
            Err(AuthError::WeakPassword)
        ));
    }

    #[test]
    fn tokens_are_random_and_only_their_hash_is_kept() {
        let (a, ha) = new_token("sws_");
        let (b, _) = new_token("sws_");
        assert_ne!(a, b);
        assert_eq!(a.len(), 4 + 64);
        assert_eq!(token_hash(&a), ha);
        assert!(!ha.contains(&a[4..]));
    }

    #[test]
    fn repeated_failures_lock_the_name_for_a_while() {
        let l = LoginLimiter::default();
        for _ in 0..5 {
            assert!(!l.locked("op", 0));
            l.failed("op", 0);
        }
        assert!(l.locked("op", 1000));
        assert!(!l.locked("other", 1000));
        assert!(!l.locked("op", LOCKOUT_WINDOW_MS + 1));
    }
}
