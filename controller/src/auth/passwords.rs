//! Argon2id password hashing (the `argon2` crate's defaults, a per-user random salt).
//!
//! Each hash or check takes ~19 MiB and a core for tens of milliseconds, so at most
//! [`hashing_permits`] run at once (per process), whoever asks: [`verify_bounded`] and
//! [`hash_bounded`] wait up to [`HASH_WAIT`] for a turn and then give up ([`AuthError::Busy`]).
//! A flood of logins then costs the server a few cores' worth of hashing, never gigabytes.

use argon2::password_hash::{
    rand_core::OsRng, PasswordHash, PasswordHasher, PasswordVerifier, SaltString,
};
use argon2::Argon2;

pub use crate::config::MIN_PASSWORD_CHARS;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("password must have at least {MIN_PASSWORD_CHARS} characters")]
    WeakPassword,
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("the server is busy checking passwords; try again in a moment")]
    Busy,
}

/// How long a password check waits for a hashing slot before giving up.
pub const HASH_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Password hashes computed at once: the number of cores (at least 2, at most 8).
pub fn hashing_permits() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(2, 8)
}

static HASHING: std::sync::LazyLock<tokio::sync::Semaphore> =
    std::sync::LazyLock::new(|| tokio::sync::Semaphore::new(hashing_permits()));

type Job = Box<dyn FnOnce() + Send>;

/// The threads that hash: a fixed few, not tokio's blocking pool. Each hash allocates ~19 MiB
/// and the allocator keeps it in the arena of the thread that used it, so hashing on ever new
/// blocking threads grows the resident memory by 19 MiB per thread (measured: +418 MiB for
/// 40 concurrent logins with only 2 at a time). On [`hashing_permits`] threads it stays at
/// that many times 19 MiB.
static WORKERS: std::sync::LazyLock<std::sync::mpsc::SyncSender<Job>> =
    std::sync::LazyLock::new(|| {
        let n = hashing_permits();
        let (tx, rx) = std::sync::mpsc::sync_channel::<Job>(n);
        let rx = std::sync::Arc::new(parking_lot::Mutex::new(rx));
        for i in 0..n {
            let rx = rx.clone();
            let spawned = std::thread::Builder::new()
                .name(format!("argon2-{i}"))
                .spawn(move || loop {
                    let job = rx.lock().recv();
                    match job {
                        Ok(job) => job(),
                        Err(_) => return,
                    }
                });
            if let Err(e) = spawned {
                tracing::error!(error = %e, "cannot start a password hashing thread");
            }
        }
        tx
    });

/// Hashes being computed now (for `/metrics`).
pub fn hashing_now() -> usize {
    hashing_permits().saturating_sub(HASHING.available_permits())
}

async fn bounded<T: Send + 'static>(
    f: impl FnOnce() -> T + Send + 'static,
) -> Result<T, AuthError> {
    let permit = tokio::time::timeout(HASH_WAIT, HASHING.acquire())
        .await
        .map_err(|_| AuthError::Busy)?
        .map_err(|_| AuthError::Busy)?;
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _ = tx.send(f());
    });
    // At most `hashing_permits` jobs are ever queued (one per permit), so there is room.
    WORKERS.try_send(job).map_err(|_| AuthError::Busy)?;
    let out = rx
        .await
        .map_err(|_| AuthError::Hash("the hashing thread stopped".into()));
    drop(permit);
    out
}

/// [`verify_password`] in a bounded number of blocking threads.
pub async fn verify_bounded(password: String, hash: String) -> Result<bool, AuthError> {
    bounded(move || verify_password(&password, &hash)).await
}

/// [`hash_password`] in a bounded number of blocking threads.
pub async fn hash_bounded(password: String) -> Result<String, AuthError> {
    bounded(move || hash_password(&password)).await?
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
}
