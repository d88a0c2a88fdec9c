//! Login throttling by source address and by user name, and the aggregation of failed logins
//! for the audit log (per replica, in memory).
//!
//! An attacker must be slowed without locking the real user out:
//! - **per address**: more than [`MAX_FAILURES_PER_ADDRESS`] failures from one address in a
//!   window refuse every login from that address for the rest of the window;
//! - **per user name and address**: more than [`MAX_FAILURES_PER_PAIR`] failures for one name
//!   from one address refuse that name from that address;
//! - **per user name**: when a name collects more than [`MAX_FAILURES_PER_USER`] failures
//!   from all addresses together (a distributed attack), an address that has failed for that
//!   name even once is refused for it, while addresses with no failure for it (the real user
//!   at their desk) still get in.
//!
//! Failures are not written to the audit log one by one: the first of a (name, address) in a
//! window is, the rest are counted and written as one row by [`LoginLimiter::summaries`].

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use parking_lot::Mutex;

/// The throttling window.
pub const WINDOW_MS: i64 = 5 * 60 * 1000;
/// Failures of one user name from one address within [`WINDOW_MS`] before it is refused there.
pub const MAX_FAILURES_PER_PAIR: u32 = 5;
/// Failures from one address (any names) within [`WINDOW_MS`] before it is refused.
pub const MAX_FAILURES_PER_ADDRESS: u32 = 20;
/// Failures of one user name (any addresses) within [`WINDOW_MS`] before addresses that
/// failed for it are refused for it.
pub const MAX_FAILURES_PER_USER: u32 = 50;
/// Entries kept per map before expired ones are swept.
const SWEEP_AT: usize = 100_000;

/// Why a login is refused before its password is checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    Address,
    UserAtAddress,
    UserUnderAttack,
}

impl Throttled {
    pub fn detail(self) -> &'static str {
        match self {
            Throttled::Address => "too many failed logins from this address",
            Throttled::UserAtAddress => "too many failed logins for this name from this address",
            Throttled::UserUnderAttack => {
                "this name is under attack and this address failed for it"
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct Count {
    n: u32,
    since: i64,
}

impl Count {
    fn live(&self, now: i64) -> bool {
        now - self.since < WINDOW_MS
    }
}

fn bump<K: std::hash::Hash + Eq>(m: &mut HashMap<K, Count>, k: K, now: i64) -> u32 {
    if m.len() > SWEEP_AT {
        m.retain(|_, c| c.live(now));
    }
    let c = m.entry(k).or_insert(Count { n: 0, since: now });
    if !c.live(now) {
        *c = Count { n: 0, since: now };
    }
    c.n += 1;
    c.n
}

fn over<K: std::hash::Hash + Eq>(m: &HashMap<K, Count>, k: &K, max: u32, now: i64) -> bool {
    m.get(k).is_some_and(|c| c.live(now) && c.n >= max)
}

/// Failed attempts of one (name, address) not yet written to the audit log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FailureSummary {
    pub username: String,
    pub address: IpAddr,
    /// Wrong passwords and refused (throttled) attempts since `since`.
    pub wrong: u32,
    pub throttled: u32,
    pub since: i64,
}

#[derive(Default)]
struct Inner {
    by_address: HashMap<IpAddr, Count>,
    by_pair: HashMap<(String, IpAddr), Count>,
    by_user: HashMap<String, Count>,
    /// Failures counted but not yet audited, per (name, address).
    pending: HashMap<(String, IpAddr), FailureSummary>,
}

#[derive(Default, Clone)]
pub struct LoginLimiter {
    inner: Arc<Mutex<Inner>>,
    /// Failed and refused logins since start (for `/metrics`).
    total: Arc<std::sync::atomic::AtomicU64>,
}

impl LoginLimiter {
    /// Whether a login of `username` from `address` is refused without checking its password.
    pub fn check(&self, username: &str, address: IpAddr, now: i64) -> Result<(), Throttled> {
        let g = self.inner.lock();
        if over(&g.by_address, &address, MAX_FAILURES_PER_ADDRESS, now) {
            return Err(Throttled::Address);
        }
        let pair = (username.to_owned(), address);
        if over(&g.by_pair, &pair, MAX_FAILURES_PER_PAIR, now) {
            return Err(Throttled::UserAtAddress);
        }
        if over(&g.by_user, &pair.0, MAX_FAILURES_PER_USER, now)
            && g.by_pair.get(&pair).is_some_and(|c| c.live(now))
        {
            return Err(Throttled::UserUnderAttack);
        }
        Ok(())
    }

    /// A wrong password. Returns true when this is the first failure of the (name, address) in
    /// the window, which the caller audits at once; later ones go into [`Self::summaries`].
    pub fn failed(&self, username: &str, address: IpAddr, now: i64) -> bool {
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut g = self.inner.lock();
        bump(&mut g.by_address, address, now);
        bump(&mut g.by_user, username.to_owned(), now);
        let n = bump(&mut g.by_pair, (username.to_owned(), address), now);
        if n > 1 {
            Self::pend(&mut g, username, address, now).wrong += 1;
        }
        n == 1
    }

    /// A refused (throttled) attempt: counted for the audit summary only.
    pub fn refused(&self, username: &str, address: IpAddr, now: i64) {
        self.total
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let mut g = self.inner.lock();
        Self::pend(&mut g, username, address, now).throttled += 1;
    }

    fn pend<'a>(
        g: &'a mut Inner,
        username: &str,
        address: IpAddr,
        now: i64,
    ) -> &'a mut FailureSummary {
        if g.pending.len() > SWEEP_AT {
            // Never reached with the per-address limit; a bound all the same.
            g.pending.clear();
        }
        g.pending
            .entry((username.to_owned(), address))
            .or_insert_with(|| FailureSummary {
                username: username.to_owned(),
                address,
                wrong: 0,
                throttled: 0,
                since: now,
            })
    }

    /// Failed and refused logins since start.
    pub fn failures_total(&self) -> u64 {
        self.total.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// A successful login clears the name's failures from that address (not the others').
    pub fn succeeded(&self, username: &str, address: IpAddr) {
        self.inner
            .lock()
            .by_pair
            .remove(&(username.to_owned(), address));
    }

    /// Takes the failures counted since the last call, one summary per (name, address).
    pub fn summaries(&self) -> Vec<FailureSummary> {
        let mut g = self.inner.lock();
        let mut out: Vec<FailureSummary> = g.pending.drain().map(|(_, v)| v).collect();
        out.sort_by(|a, b| (a.since, &a.username).cmp(&(b.since, &b.username)));
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_attacker_is_refused_and_the_real_user_from_elsewhere_is_not() {
        let l = LoginLimiter::default();
        let (bad, good) = (ip("198.51.100.7"), ip("203.0.113.5"));
        for i in 0..MAX_FAILURES_PER_PAIR {
            assert_eq!(l.check("admin", bad, 0), Ok(()));
            assert_eq!(l.failed("admin", bad, 0), i == 0);
        }
        assert_eq!(l.check("admin", bad, 1), Err(Throttled::UserAtAddress));
        assert_eq!(l.check("admin", good, 1), Ok(()));
        assert_eq!(l.check("admin", bad, WINDOW_MS + 1), Ok(()));
        let s = l.summaries();
        assert_eq!(s.len(), 1);
        assert_eq!(s[0].wrong, MAX_FAILURES_PER_PAIR - 1);
        assert!(l.summaries().is_empty());
    }

    #[test]
    fn many_names_from_one_address_close_the_address() {
        let l = LoginLimiter::default();
        let bad = ip("198.51.100.7");
        for i in 0..MAX_FAILURES_PER_ADDRESS {
            l.failed(&format!("u{i}"), bad, 0);
        }
        assert_eq!(l.check("anyone", bad, 1), Err(Throttled::Address));
        assert_eq!(l.check("anyone", ip("203.0.113.5"), 1), Ok(()));
    }

    #[test]
    fn a_distributed_attack_refuses_the_attackers_not_a_clean_address() {
        let l = LoginLimiter::default();
        for i in 0..MAX_FAILURES_PER_USER {
            l.failed("admin", ip(&format!("10.0.{}.{}", i / 200, i % 200)), 0);
        }
        assert_eq!(
            l.check("admin", ip("10.0.0.1"), 1),
            Err(Throttled::UserUnderAttack)
        );
        assert_eq!(l.check("admin", ip("203.0.113.5"), 1), Ok(()));
    }
}
