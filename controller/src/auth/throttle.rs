//! Login throttling per user name.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::Mutex;

/// Failed logins of one user name within [`LOCKOUT_WINDOW_MS`] before logins are refused.
const MAX_FAILURES: u32 = 5;
const LOCKOUT_WINDOW_MS: i64 = 5 * 60 * 1000;

/// Refuses logins of a user name after repeated failures (per replica, in memory), so that a
/// password cannot be guessed at the speed of the network.
#[derive(Default, Clone)]
pub struct LoginLimiter {
    failures: Arc<Mutex<HashMap<String, (u32, i64)>>>,
}

impl LoginLimiter {
    pub fn locked(&self, username: &str, now: i64) -> bool {
        let g = self.failures.lock();
        g.get(username)
            .is_some_and(|(n, first)| *n >= MAX_FAILURES && now - first < LOCKOUT_WINDOW_MS)
    }

    pub fn failed(&self, username: &str, now: i64) {
        let mut g = self.failures.lock();
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
        self.failures.lock().remove(username);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
