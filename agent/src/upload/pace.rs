//! How fast uploads may send: they never take the live stream's share of the uplink, and
//! backfill obeys its cap and pause schedule. The rate is decided per piece of a chunk, so a
//! live stream that starts mid-chunk is yielded to within a fraction of a second.

use std::time::{Duration, Instant};

use chrono::NaiveTime;

use super::plan::Class;
use crate::config::{paused_at, UploadConfig};
use crate::live::uplink::UplinkEstimate;

/// While a camera streams live and its uplink estimate is not known yet, uploads send this
/// fast at most.
pub const UNKNOWN_SPARE_BPS: u64 = 64_000;

/// What a piece may be sent at: `None` = not now (paused); `Some(None)` = as fast as the link
/// allows; `Some(Some(bps))`.
pub fn allowed_bps(
    class: Class,
    live: &[UplinkEstimate],
    cfg: &UploadConfig,
    local_time: NaiveTime,
) -> Option<Option<u64>> {
    let mut limit: Option<u64> = None;
    let streaming: Vec<&UplinkEstimate> = live.iter().filter(|u| u.live_bps > 0).collect();
    if !streaming.is_empty() {
        // The cameras share the uplink: what one camera's estimate leaves spare is shared with
        // the other cameras' live streams.
        let total_live: u64 = streaming.iter().map(|u| u.live_bps).sum();
        let spare = streaming
            .iter()
            .map(|u| match u.spare_bps {
                Some(s) => s.saturating_sub(total_live - u.live_bps),
                None => UNKNOWN_SPARE_BPS,
            })
            .min()
            .unwrap_or(UNKNOWN_SPARE_BPS);
        limit = Some(spare);
    }
    if class == Class::Backfill {
        if paused_at(&cfg.backfill_pause, local_time) {
            return None;
        }
        if let Some(cap) = cfg.backfill_bps {
            limit = Some(limit.map_or(cap, |l| l.min(cap)));
        }
    }
    match limit {
        Some(0) => None,
        l => Some(l),
    }
}

/// A token bucket in bits, with a burst of `burst_bits`.
pub struct Pacer {
    tokens: f64,
    last: Instant,
    burst_bits: f64,
}

impl Pacer {
    pub fn new(burst_bytes: u64) -> Self {
        Pacer {
            tokens: 0.0,
            last: Instant::now(),
            burst_bits: burst_bytes as f64 * 8.0,
        }
    }

    /// How long to wait before sending `bytes` at `bps` (and takes them).
    pub fn delay(&mut self, bytes: usize, bps: u64) -> Duration {
        let now = Instant::now();
        let rate = bps.max(1) as f64;
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * rate).min(self.burst_bits);
        self.last = now;
        self.tokens -= bytes as f64 * 8.0;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / rate)
        }
    }

    /// Unpaced sending: the bucket starts empty again when pacing resumes.
    pub fn reset(&mut self) {
        self.tokens = 0.0;
        self.last = Instant::now();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stationwatch_protocol::mqtt::UploadMode;

    fn cfg(cap: Option<u64>, pause: Vec<(NaiveTime, NaiveTime)>) -> UploadConfig {
        UploadConfig {
            url: url::Url::parse("http://controller").unwrap(),
            mode: UploadMode::All,
            camera_modes: Default::default(),
            chunk_bytes: 1 << 20,
            backfill_bps: cap,
            backfill_pause: pause,
            ca_file: None,
        }
    }

    fn noon() -> NaiveTime {
        NaiveTime::from_hms_opt(12, 0, 0).unwrap()
    }

    #[test]
    fn uploads_use_only_what_live_leaves_and_backfill_obeys_cap_and_schedule() {
        let c = cfg(Some(500_000), vec![]);
        // Live off: requested windows go unlimited, backfill at its cap.
        assert_eq!(allowed_bps(Class::Requested, &[], &c, noon()), Some(None));
        assert_eq!(
            allowed_bps(Class::Backfill, &[], &c, noon()),
            Some(Some(500_000))
        );
        // Live on one camera with 800 kbit/s spare, another camera streaming 300 kbit/s.
        let a = UplinkEstimate {
            capacity_bps: Some(2_000_000),
            live_bps: 1_000_000,
            spare_bps: Some(800_000),
        };
        let b = UplinkEstimate {
            capacity_bps: Some(2_000_000),
            live_bps: 300_000,
            spare_bps: Some(1_500_000),
        };
        assert_eq!(
            allowed_bps(Class::Requested, &[a, b], &c, noon()),
            Some(Some(500_000))
        );
        assert_eq!(
            allowed_bps(Class::Backfill, &[a, b], &c, noon()),
            Some(Some(500_000))
        );
        // No spare at all: not now.
        let full = UplinkEstimate {
            capacity_bps: Some(1_000_000),
            live_bps: 1_000_000,
            spare_bps: Some(0),
        };
        assert_eq!(allowed_bps(Class::Requested, &[full], &c, noon()), None);
        // Unknown estimate while streaming: a trickle.
        let unknown = UplinkEstimate {
            capacity_bps: None,
            live_bps: 400_000,
            spare_bps: None,
        };
        assert_eq!(
            allowed_bps(Class::Requested, &[unknown], &c, noon()),
            Some(Some(UNKNOWN_SPARE_BPS))
        );
        // Voting hours: backfill pauses, requested windows do not.
        let day = cfg(
            None,
            vec![(
                NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            )],
        );
        assert_eq!(allowed_bps(Class::Backfill, &[], &day, noon()), None);
        assert_eq!(allowed_bps(Class::Requested, &[], &day, noon()), Some(None));
    }

    #[test]
    fn the_bucket_spaces_pieces_at_the_rate() {
        let mut p = Pacer::new(0);
        // The delay is the debt: 10 × 100 kbit sent at once at 1 Mbit/s end ≈ 1 s from now.
        let last = (0..10).map(|_| p.delay(12_500, 1_000_000)).last().unwrap();
        assert!(
            last > Duration::from_millis(900) && last <= Duration::from_millis(1000),
            "{last:?}"
        );
    }
}
