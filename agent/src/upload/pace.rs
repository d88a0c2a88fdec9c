//! How fast uploads may send: they never take the live stream's share of the uplink, and
//! backfill obeys its cap and pause schedule. The rate is decided per piece of a chunk, so a
//! live stream that starts mid-chunk is yielded to within a fraction of a second.
//!
//! While a camera streams live, the share uploads may use is found the way TCP finds a link's
//! capacity, but listening to the live sender rather than to our own packets ([`LiveShare`]):
//! every calm sample of the live sender (no loss, its round trip near its floor, nothing queued
//! in front of it) raises the upload rate, and the first stressed one halves it. The live
//! stream's own policy needs several bad seconds before it steps down, so uploads back off
//! before they could force a step down.

use std::time::{Duration, Instant};

use chrono::NaiveTime;

use super::plan::Class;
use crate::config::{paused_at, UploadConfig};
use crate::live::uplink::UplinkEstimate;

/// The first rate uploads try beside a live stream whose spare capacity is not known.
pub const START_BPS: u64 = 64_000;
/// The lowest rate beside a live stream (a trickle still moves requested footage).
pub const MIN_BPS: u64 = 16_000;
/// A live sample counts as stressed above this loss fraction, backlog or round-trip rise.
const STRESS_LOSS: f64 = 0.01;
const STRESS_BACKLOG_MS: u64 = 400;
const STRESS_RTT_RISE_MS: f64 = 60.0;
/// The round-trip floor is forgotten after this long (routes change).
const RTT_FLOOR_FOR: Duration = Duration::from_secs(30);

/// The rate uploads may use beside live streams, adjusted on every new live sample.
#[derive(Debug)]
pub struct LiveShare {
    rate: f64,
    last_sample: u64,
    rtt_floor: Option<(f64, Instant)>,
}

impl Default for LiveShare {
    fn default() -> Self {
        LiveShare {
            rate: START_BPS as f64,
            last_sample: 0,
            rtt_floor: None,
        }
    }
}

impl LiveShare {
    /// The upload rate beside the cameras' live streams; `None` when none streams (no limit
    /// from live).
    pub fn update(&mut self, live: &[UplinkEstimate]) -> Option<u64> {
        let streaming: Vec<&UplinkEstimate> = live.iter().filter(|u| u.live_bps > 0).collect();
        if streaming.is_empty() {
            *self = LiveShare::default();
            return None;
        }
        let newest = streaming.iter().map(|u| u.sample).max().unwrap_or(0);
        if self.last_sample == 0 {
            // First look: start from what the live policy thinks is spare.
            let spare = streaming.iter().filter_map(|u| u.spare_bps).min();
            self.rate = spare.unwrap_or(START_BPS).max(START_BPS) as f64;
        }
        if newest != self.last_sample {
            self.last_sample = newest;
            let now = Instant::now();
            let rtt = streaming
                .iter()
                .filter_map(|u| u.rtt_ms)
                .fold(None, |m: Option<f64>, r| Some(m.map_or(r, |m| m.max(r))));
            if let Some(r) = rtt {
                match self.rtt_floor {
                    Some((f, at)) if f <= r && now.duration_since(at) < RTT_FLOOR_FOR => {}
                    _ => self.rtt_floor = Some((r, now)),
                }
            }
            let floor = self.rtt_floor.map(|(f, _)| f);
            let stressed = streaming.iter().any(|u| {
                u.loss.is_some_and(|l| l > STRESS_LOSS) || u.backlog_ms > STRESS_BACKLOG_MS
            }) || matches!((rtt, floor), (Some(r), Some(f)) if r > f * 1.5 + STRESS_RTT_RISE_MS);
            self.rate = if stressed {
                (self.rate / 2.0).max(MIN_BPS as f64)
            } else {
                self.rate + (self.rate * 0.15).max(32_000.0)
            };
        }
        Some(self.rate as u64)
    }
}

/// What a piece may be sent at: `None` = not now (paused); `Some(None)` = as fast as the link
/// allows; `Some(Some(bps))`. `live_share` is [`LiveShare::update`]'s answer.
pub fn allowed_bps(
    class: Class,
    live_share: Option<u64>,
    cfg: &UploadConfig,
    local_time: NaiveTime,
) -> Option<Option<u64>> {
    let mut limit = live_share;
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
    fn backfill_obeys_cap_and_schedule_and_requested_windows_only_live() {
        let c = cfg(Some(500_000), vec![]);
        assert_eq!(allowed_bps(Class::Requested, None, &c, noon()), Some(None));
        assert_eq!(
            allowed_bps(Class::Backfill, None, &c, noon()),
            Some(Some(500_000))
        );
        assert_eq!(
            allowed_bps(Class::Requested, Some(300_000), &c, noon()),
            Some(Some(300_000))
        );
        assert_eq!(
            allowed_bps(Class::Backfill, Some(900_000), &c, noon()),
            Some(Some(500_000))
        );
        let day = cfg(
            None,
            vec![(
                NaiveTime::from_hms_opt(7, 0, 0).unwrap(),
                NaiveTime::from_hms_opt(20, 0, 0).unwrap(),
            )],
        );
        assert_eq!(allowed_bps(Class::Backfill, None, &day, noon()), None);
        assert_eq!(
            allowed_bps(Class::Requested, None, &day, noon()),
            Some(None)
        );
    }

    fn live(sample: u64, rtt: f64, loss: f64, backlog_ms: u64) -> UplinkEstimate {
        UplinkEstimate {
            capacity_bps: Some(1_000_000),
            live_bps: 400_000,
            spare_bps: Some(200_000),
            sample,
            rtt_ms: Some(rtt),
            loss: Some(loss),
            backlog_ms,
        }
    }

    #[test]
    fn the_share_grows_while_live_is_calm_and_halves_when_it_is_stressed() {
        let mut s = LiveShare::default();
        assert_eq!(s.update(&[]), None, "no live stream: no limit");
        let first = s.update(&[live(1, 20.0, 0.0, 0)]).unwrap();
        assert!(
            first > 200_000,
            "starts from the spare estimate, then grows: {first}"
        );
        assert_eq!(
            s.update(&[live(1, 20.0, 0.0, 0)]),
            Some(first),
            "same sample: no change"
        );
        let mut rate = first;
        for i in 2..8 {
            rate = s.update(&[live(i, 22.0, 0.0, 0)]).unwrap();
        }
        assert!(rate > first * 2, "grew while calm: {first} -> {rate}");
        let after_rtt = s.update(&[live(8, 200.0, 0.0, 0)]).unwrap();
        assert_eq!(after_rtt, rate / 2, "round trip rose: halved");
        let after_loss = s.update(&[live(9, 22.0, 0.05, 0)]).unwrap();
        assert_eq!(after_loss, after_rtt / 2, "loss: halved");
        let after_backlog = s.update(&[live(10, 22.0, 0.0, 900)]).unwrap();
        assert_eq!(after_backlog, after_loss / 2, "backlog: halved");
        for i in 11..40 {
            s.update(&[live(i, 500.0, 0.5, 2000)]);
        }
        assert_eq!(s.update(&[live(40, 500.0, 0.5, 2000)]), Some(MIN_BPS));
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
