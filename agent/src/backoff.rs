//! Exponential reconnect backoff with jitter.
//!
//! Written here rather than taken from a crate: the well-known `backoff` crate is unmaintained
//! and the rest pull in their own retry loops; what the supervisor needs is twenty lines.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    initial: Duration,
    max: Duration,
    attempt: u32,
}

impl Backoff {
    pub fn new(initial: Duration, max: Duration) -> Self {
        Self {
            initial,
            max: max.max(initial),
            attempt: 0,
        }
    }

    /// Failures since the last reset.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The delay before the next attempt: `initial * 2^attempt`, capped at `max`, then scaled by
    /// a random factor in [0.5, 1.0] ("equal jitter") so that cameras (or agents) that failed
    /// together do not retry in lockstep.
    pub fn next_delay(&mut self) -> Duration {
        let exp = self.initial.saturating_mul(1u32 << self.attempt.min(16));
        let capped = exp.min(self.max);
        self.attempt = self.attempt.saturating_add(1);
        let factor = rand::rng().random_range(0.5..=1.0);
        capped.mul_f64(factor)
    }

    /// Back to the initial delay, after a success that lasted.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_exponentially_within_jitter_and_is_capped() {
        let mut b = Backoff::new(Duration::from_millis(500), Duration::from_secs(10));
        let mut prev_cap = Duration::ZERO;
        for i in 0..12u32 {
            let cap = Duration::from_millis(500 * (1u64 << i)).min(Duration::from_secs(10));
            let d = b.next_delay();
            assert!(
                d <= cap && d >= cap / 2,
                "attempt {i}: {d:?} not in [{:?}, {cap:?}]",
                cap / 2
            );
            assert!(cap >= prev_cap);
            prev_cap = cap;
        }
        assert_eq!(b.attempt(), 12);
        b.reset();
        assert!(b.next_delay() <= Duration::from_millis(500));
    }

    #[test]
    fn jitter_spreads_retries() {
        let mut delays: Vec<Duration> = (0..50)
            .map(|_| Backoff::new(Duration::from_secs(1), Duration::from_secs(10)).next_delay())
            .collect();
        delays.sort();
        delays.dedup();
        assert!(
            delays.len() > 10,
            "jitter produced only {} values",
            delays.len()
        );
    }
}
