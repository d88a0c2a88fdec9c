//! What the uplink carries, and which live rung fits it: a pure state machine fed with one
//! [`Sample`] of the live sender per second (no GStreamer, no clock of its own), so stepping
//! down, stepping up and hysteresis are unit-tested without a network.
//!
//! Rungs, best first: `main` (the recorded stream, passed through), `sub` (the camera's
//! sub-stream, or a lower-bitrate encode), `off`. In `auto` mode:
//!
//! * **Down fast.** A sample is *bad* when the sender is not connected (after a start grace),
//!   when more than `max_backlog` of video waits in front of the sender, or when more than
//!   `max_loss` of the packets are lost or dropped. After `down_after` of consecutive bad
//!   samples the rung is dropped: to `sub` if what the link delivered meanwhile fits `sub` with
//!   the margin, otherwise to `off`.
//! * **Up cautiously.** After a rung held (good samples only) for `up_after`, the next rung is
//!   *probed*: streamed for `probe_for`; if it stays good it is kept, otherwise the agent falls
//!   back at once and waits twice as long before the next probe (up to `backoff_max`). From
//!   `off`, the `sub` rung is probed after `off_retry` (same doubling). A probe is skipped
//!   while the sender's own bandwidth estimate (SRT) says the link cannot carry the rung.
//!
//! The estimate is published for the rest of the agent: the spare capacity on it is where a
//! future backfill uploader plugs in (see [`UplinkEstimate`] and `docs/live.md`).

use std::time::Duration;

use stationwatch_protocol::mqtt::{LiveRung, LiveState};

use crate::config::PolicyConfig;

/// What each rung needs, bits per second (stream plus container overhead). `sub: None` when
/// the camera has no lighter stream (an RTSP camera without a sub-stream URL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RungRates {
    pub main_bps: u64,
    pub sub_bps: Option<u64>,
}

impl RungRates {
    fn of(&self, rung: LiveRung) -> u64 {
        match rung {
            LiveRung::Main => self.main_bps,
            LiveRung::Sub => self.sub_bps.unwrap_or(self.main_bps),
            LiveRung::Off | LiveRung::Unknown => 0,
        }
    }
}

/// One second of the live sender, as it measured itself.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Sample {
    /// Monotonic time of the sample.
    pub at: Duration,
    /// The sender is connected to its target.
    pub connected: bool,
    /// The sender failed (connection refused or timed out, socket broken) since the last
    /// sample: bad even within the start grace.
    pub failed: bool,
    /// What the sender put on the link since the last sample, bits per second (including
    /// retransmissions).
    pub sent_bps: Option<u64>,
    /// Fraction of packets lost or dropped since the last sample (SRT), 0..1.
    pub loss: Option<f64>,
    /// What reached the far end, bits per second, when the sender can tell (SRT: sent minus
    /// what the receiver reported lost; nothing when no acknowledgement came back).
    pub delivered_bps: Option<u64>,
    /// Video waiting in front of the sender (our queue).
    pub backlog: Duration,
    /// The sender's own estimate of the link's capacity (SRT), bits per second.
    pub bandwidth_bps: Option<u64>,
    pub rtt_ms: Option<f64>,
}

impl Sample {
    /// What reached the far end, bits per second.
    fn delivered_bps(&self) -> Option<u64> {
        if self.delivered_bps.is_some() {
            return self.delivered_bps;
        }
        let sent = self.sent_bps?;
        let loss = self.loss.unwrap_or(0.0).clamp(0.0, 1.0);
        Some((sent as f64 * (1.0 - loss)) as u64)
    }
}

/// A rung change the supervisor must carry out.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub from: LiveRung,
    pub to: LiveRung,
    pub reason: String,
}

/// What the uplink carries and how the live stream fares on it, for health and for uploads.
///
/// The live supervisor publishes this after every sample on a `tokio::sync::watch` channel
/// (`LiveHandle::uplink`); the uploader (`upload/pace.rs`) sends only what the live stream
/// leaves: it grows its rate while the live sender's round trip, loss and backlog stay calm and
/// halves it as soon as they do not, so uploads never push the live rung down.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct UplinkEstimate {
    /// What the link is estimated to carry; `None` while unknown.
    pub capacity_bps: Option<u64>,
    /// What the live stream uses now.
    pub live_bps: u64,
    /// `capacity_bps - live_bps` with the margin kept free; `None` while unknown.
    pub spare_bps: Option<u64>,
    /// Counts the live sender's samples (a new value means a new sample).
    pub sample: u64,
    /// The live sender's round trip (SRT), loss fraction and our queue in front of it, in the
    /// last sample.
    pub rtt_ms: Option<f64>,
    pub loss: Option<f64>,
    pub backlog_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Phase {
    /// Streaming a rung that held.
    Holding,
    /// Trying `rung`; on failure go back to `fallback`.
    Probing { fallback: LiveRung },
}

/// The rung selection state machine for one camera in `auto` mode.
#[derive(Debug, Clone)]
pub struct RungPolicy {
    cfg: PolicyConfig,
    rung: LiveRung,
    phase: Phase,
    /// When the current rung (or probe) started.
    since: Duration,
    bad_since: Option<Duration>,
    good_since: Option<Duration>,
    /// Delivered rates seen during the current bad streak.
    bad_delivered: Vec<u64>,
    /// Current wait before probing up from sub (index 0) and from off (index 1).
    up_wait: Duration,
    off_wait: Duration,
    estimate: Option<u64>,
    /// What the link delivered the last time it was saturated (its measured capacity), until
    /// a higher rung is seen to hold or the link drops.
    measured: Option<u64>,
    last_sent: u64,
    reason: String,
}

impl RungPolicy {
    /// Starts by probing `main` (falling back to `sub` if it does not hold): the link is
    /// unknown, and trying costs at most `down_after` plus a start.
    pub fn new(cfg: PolicyConfig, rates: RungRates, now: Duration) -> Self {
        let fallback = if rates.sub_bps.is_some() {
            LiveRung::Sub
        } else {
            LiveRung::Off
        };
        Self {
            up_wait: cfg.up_after,
            off_wait: cfg.off_retry,
            cfg,
            rung: LiveRung::Main,
            phase: Phase::Probing { fallback },
            since: now,
            bad_since: None,
            good_since: None,
            bad_delivered: Vec::new(),
            estimate: None,
            measured: None,
            last_sent: 0,
            reason: "starting: trying the main stream".into(),
        }
    }

    pub fn rung(&self) -> LiveRung {
        self.rung
    }

    pub fn state(&self) -> LiveState {
        match (self.rung, self.phase) {
            (LiveRung::Off, _) => LiveState::Stopped,
            (_, Phase::Probing { .. }) => LiveState::Probing,
            (_, Phase::Holding) => LiveState::Streaming,
        }
    }

    pub fn reason(&self) -> &str {
        &self.reason
    }

    /// What the link is estimated to carry.
    pub fn estimate(&self, rates: &RungRates) -> UplinkEstimate {
        let live_bps = if self.rung == LiveRung::Off {
            0
        } else {
            self.last_sent
        };
        let spare_bps = self.estimate.map(|c| {
            let usable = (c as f64 / (1.0 + self.cfg.margin)) as u64;
            usable.saturating_sub(live_bps.max(rates.of(self.rung)))
        });
        UplinkEstimate {
            capacity_bps: self.estimate,
            live_bps,
            spare_bps,
            ..UplinkEstimate::default()
        }
    }

    /// Feeds one sample of the sender (or, while `off`, a tick: `Sample` with only `at`).
    /// Returns the rung change to carry out, if any.
    pub fn on_sample(&mut self, s: &Sample, rates: &RungRates) -> Option<Decision> {
        let now = s.at;
        if self.rung == LiveRung::Off {
            return self.maybe_leave_off(s, rates);
        }
        self.last_sent = s.sent_bps.unwrap_or(0);
        let need = rates.of(self.rung);
        let in_grace = now.saturating_sub(self.since) < self.cfg.start_grace;
        let bad = if s.failed {
            Some("the live sender failed".to_string())
        } else if !s.connected {
            (!in_grace).then(|| "not connected to the live target".to_string())
        } else if s.backlog > self.cfg.max_backlog {
            Some(format!(
                "{:.1} s of video waiting in front of the sender",
                s.backlog.as_secs_f64()
            ))
        } else if s.loss.is_some_and(|l| l > self.cfg.max_loss) {
            Some(format!(
                "{:.0} % of packets lost or dropped",
                s.loss.unwrap_or(0.0) * 100.0
            ))
        } else {
            None
        };
        match bad {
            Some(why) => {
                self.good_since = None;
                let start = *self.bad_since.get_or_insert(now);
                if let Some(d) = s.delivered_bps().filter(|_| s.connected) {
                    self.bad_delivered.push(d);
                }
                // While saturated, what got through is what the link carries.
                if let Some(c) = self.carried() {
                    self.estimate = Some(c);
                    self.measured = Some(c);
                } else if !s.connected {
                    self.estimate = None;
                    self.measured = None;
                }
                if now.saturating_sub(start) + Duration::from_secs(1) > self.cfg.down_after {
                    return Some(self.step_down(now, rates, &why));
                }
                None
            }
            None => {
                self.bad_since = None;
                self.bad_delivered.clear();
                if !s.connected {
                    // Still within the start grace.
                    return None;
                }
                // Not saturated: the link carries at least what was sent, maybe more (what it
                // delivered when last saturated; the sender's own estimate, capped at twice
                // the rate: packet-pair estimates overshoot).
                let sent = s.delivered_bps().unwrap_or(0);
                let hint = s
                    .bandwidth_bps
                    .map(|b| b.min(sent.max(need).saturating_mul(2)));
                self.estimate = Some(
                    sent.max(hint.unwrap_or(0))
                        .max(need)
                        .max(self.measured.unwrap_or(0)),
                );
                let good_since = *self.good_since.get_or_insert(now);
                let held = now.saturating_sub(good_since) + Duration::from_secs(1);
                match self.phase {
                    Phase::Probing { .. } => {
                        if held >= self.cfg.probe_for {
                            self.phase = Phase::Holding;
                            self.measured = None;
                            self.good_since = Some(now);
                            if self.rung == LiveRung::Main {
                                self.up_wait = self.cfg.up_after;
                            } else {
                                self.off_wait = self.cfg.off_retry;
                            }
                            self.reason = format!(
                                "{} held for {:.0} s (link carries at least {})",
                                self.rung.as_str(),
                                held.as_secs_f64(),
                                mbit(self.estimate.unwrap_or(sent))
                            );
                        }
                        None
                    }
                    Phase::Holding => {
                        if self.rung == LiveRung::Sub && held >= self.up_wait {
                            let next = rates.main_bps;
                            if let Some(b) = s.bandwidth_bps {
                                if (b as f64) < next as f64 * (1.0 + self.cfg.margin) {
                                    self.reason = format!(
                                        "not probing main: the sender estimates {} and main needs {}",
                                        mbit(b),
                                        mbit(next)
                                    );
                                    return None;
                                }
                            }
                            let reason =
                                format!("sub held for {:.0} s: probing main", held.as_secs_f64());
                            return Some(self.go(
                                LiveRung::Main,
                                Phase::Probing {
                                    fallback: LiveRung::Sub,
                                },
                                now,
                                reason,
                            ));
                        }
                        None
                    }
                }
            }
        }
    }

    /// Mean of what the link delivered during the bad streak.
    fn carried(&self) -> Option<u64> {
        if self.bad_delivered.is_empty() {
            return None;
        }
        Some(self.bad_delivered.iter().sum::<u64>() / self.bad_delivered.len() as u64)
    }

    fn fits(&self, rate: u64, capacity: Option<u64>) -> bool {
        capacity.is_some_and(|c| c as f64 >= rate as f64 * (1.0 + self.cfg.margin))
    }

    fn step_down(&mut self, now: Duration, rates: &RungRates, why: &str) -> Decision {
        let carried = self.carried();
        let (to, reason) = match self.phase {
            Phase::Probing { fallback } => {
                // The probe failed: back to what held, and wait longer before the next one.
                if self.rung == LiveRung::Main {
                    self.up_wait = (self.up_wait * 2).min(self.cfg.backoff_max);
                } else {
                    self.off_wait = (self.off_wait * 2).min(self.cfg.backoff_max);
                }
                let fallback = if fallback == LiveRung::Sub
                    && rates.sub_bps.is_some()
                    && (carried.is_none() || self.fits(rates.of(LiveRung::Sub), carried))
                {
                    LiveRung::Sub
                } else {
                    LiveRung::Off
                };
                (
                    fallback,
                    format!("{} did not hold ({why})", self.rung.as_str()),
                )
            }
            Phase::Holding => {
                let to = match (self.rung, rates.sub_bps) {
                    (LiveRung::Main, Some(sub)) if self.fits(sub, carried) => LiveRung::Sub,
                    _ => LiveRung::Off,
                };
                let detail = match carried {
                    Some(c) => format!(
                        "{why}; link carried {}, {} needs {}",
                        mbit(c),
                        self.rung.as_str(),
                        mbit(rates.of(self.rung))
                    ),
                    None => why.to_string(),
                };
                (to, detail)
            }
        };
        self.go(to, Phase::Holding, now, reason)
    }

    fn maybe_leave_off(&mut self, s: &Sample, rates: &RungRates) -> Option<Decision> {
        self.last_sent = 0;
        if s.at.saturating_sub(self.since) < self.off_wait {
            return None;
        }
        let to = if rates.sub_bps.is_some() {
            LiveRung::Sub
        } else {
            LiveRung::Main
        };
        let reason = format!(
            "off for {:.0} s: probing {}",
            s.at.saturating_sub(self.since).as_secs_f64(),
            to.as_str()
        );
        Some(self.go(
            to,
            Phase::Probing {
                fallback: LiveRung::Off,
            },
            s.at,
            reason,
        ))
    }

    fn go(&mut self, to: LiveRung, phase: Phase, now: Duration, reason: String) -> Decision {
        let from = self.rung;
        self.rung = to;
        self.phase = phase;
        self.since = now;
        self.bad_since = None;
        self.good_since = None;
        self.bad_delivered.clear();
        if to == LiveRung::Off {
            self.last_sent = 0;
        }
        self.reason = reason.clone();
        Decision { from, to, reason }
    }
}

/// `1.25 Mbit/s`.
pub fn mbit(bps: u64) -> String {
    format!("{:.2} Mbit/s", bps as f64 / 1e6)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAIN: u64 = 2_200_000;
    const SUB: u64 = 550_000;

    fn rates() -> RungRates {
        RungRates {
            main_bps: MAIN,
            sub_bps: Some(SUB),
        }
    }

    fn cfg() -> PolicyConfig {
        PolicyConfig {
            up_after: Duration::from_secs(20),
            probe_for: Duration::from_secs(5),
            off_retry: Duration::from_secs(10),
            backoff_max: Duration::from_secs(80),
            ..PolicyConfig::default()
        }
    }

    /// A link of `capacity_bps` carrying a rung that needs `need`: what the sender would see.
    fn link(at: u64, capacity_bps: u64, need: u64, connected: bool) -> Sample {
        if !connected {
            return Sample {
                at: Duration::from_secs(at),
                ..Sample::default()
            };
        }
        let congested = capacity_bps < need;
        Sample {
            at: Duration::from_secs(at),
            connected: true,
            failed: false,
            sent_bps: Some(need),
            loss: Some(if congested {
                1.0 - capacity_bps as f64 / need as f64
            } else {
                0.0
            }),
            delivered_bps: None,
            backlog: Duration::ZERO,
            bandwidth_bps: None,
            rtt_ms: Some(20.0),
        }
    }

    /// Runs the policy over `secs` seconds of a link; returns (second, decision) pairs.
    fn run(
        p: &mut RungPolicy,
        from: u64,
        secs: u64,
        capacity: u64,
        connected: bool,
    ) -> Vec<(u64, Decision)> {
        let mut out = Vec::new();
        for t in from..from + secs {
            let need = rates().of(p.rung());
            if let Some(d) = p.on_sample(&link(t, capacity, need, connected), &rates()) {
                out.push((t, d));
            }
        }
        out
    }

    #[test]
    fn wide_link_keeps_main_after_the_start_probe() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        assert_eq!(p.state(), LiveState::Probing);
        let changes = run(&mut p, 0, 120, 10_000_000, true);
        assert!(changes.is_empty(), "{changes:?}");
        assert_eq!(
            (p.rung(), p.state()),
            (LiveRung::Main, LiveState::Streaming)
        );
        assert!(p.estimate(&rates()).capacity_bps.unwrap() >= MAIN);
    }

    #[test]
    fn narrow_link_steps_down_to_sub_within_seconds() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        run(&mut p, 0, 30, 10_000_000, true);
        // The link narrows to 1 Mbit/s: main (2.2) no longer fits, sub (0.55 × 1.25) does.
        let changes = run(&mut p, 30, 30, 1_000_000, true);
        let (t, d) = &changes[0];
        assert_eq!((d.from, d.to), (LiveRung::Main, LiveRung::Sub), "{d:?}");
        assert!(*t - 30 < 10, "stepped down after {} s", t - 30);
        assert!(
            d.reason.contains("link carried 1.00 Mbit/s"),
            "{}",
            d.reason
        );
        let est = p.estimate(&rates()).capacity_bps.unwrap();
        assert!(est >= SUB, "{est}");
    }

    #[test]
    fn very_narrow_link_goes_off_and_a_cut_link_too() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        run(&mut p, 0, 30, 10_000_000, true);
        let changes = run(&mut p, 30, 10, 300_000, true);
        assert_eq!(changes.len(), 1, "{changes:?}");
        assert_eq!(
            changes[0].1.to,
            LiveRung::Off,
            "0.3 Mbit/s does not fit sub"
        );
        assert_eq!(p.state(), LiveState::Stopped);

        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        run(&mut p, 0, 30, 10_000_000, true);
        let changes = run(&mut p, 30, 10, 0, false);
        assert_eq!(changes[0].1.to, LiveRung::Off);
        assert!(changes[0].0 - 30 < 10);
        assert!(changes[0].1.reason.contains("not connected"));
        assert_eq!(p.estimate(&rates()).capacity_bps, None);
    }

    #[test]
    fn restored_link_comes_back_through_probes_without_flapping() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        run(&mut p, 0, 30, 10_000_000, true);
        run(&mut p, 30, 10, 0, false);
        assert_eq!(p.rung(), LiveRung::Off);
        // Link back: off → probe sub → hold sub → probe main → hold main.
        let changes = run(&mut p, 40, 60, 10_000_000, true);
        let path: Vec<(LiveRung, LiveRung)> = changes.iter().map(|(_, d)| (d.from, d.to)).collect();
        assert_eq!(
            path,
            [
                (LiveRung::Off, LiveRung::Sub),
                (LiveRung::Sub, LiveRung::Main)
            ]
        );
        assert_eq!(
            (p.rung(), p.state()),
            (LiveRung::Main, LiveState::Streaming)
        );
        // Off waits `off_retry`, sub holds `probe_for` then `up_after` before main is tried.
        let up = changes[1].0 - changes[0].0;
        assert!(up >= 20, "probed main {up} s after sub came back");
    }

    #[test]
    fn failed_probes_back_off_and_never_flap() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        run(&mut p, 0, 30, 10_000_000, true);
        // A link that carries sub but never main, for 10 minutes.
        let changes = run(&mut p, 30, 600, 1_000_000, true);
        let probes: Vec<u64> = changes
            .iter()
            .filter(|(_, d)| d.to == LiveRung::Main)
            .map(|(t, _)| *t)
            .collect();
        // Waits 20, 40, 80, 80, ... s between probes: few probes, growing gaps.
        assert!(probes.len() <= 9, "{probes:?}");
        let gaps: Vec<u64> = probes.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(gaps.windows(2).all(|g| g[1] >= g[0]), "{gaps:?}");
        // Each probe is abandoned within the down-step time.
        assert!(!probes.is_empty(), "{changes:?}");
        for (t, d) in changes.iter().filter(|(t, _)| *t > probes[0]) {
            if d.from == LiveRung::Main {
                let probe = probes.iter().rev().find(|p| *p <= t).unwrap();
                assert!(t - probe <= 5, "probe at {probe} abandoned at {t}");
                assert_eq!(d.to, LiveRung::Sub);
            }
        }
    }

    #[test]
    fn probe_is_skipped_while_the_sender_estimates_too_little() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        run(&mut p, 0, 10, 1_000_000, true);
        assert_eq!(p.rung(), LiveRung::Sub);
        for t in 10..200 {
            let mut s = link(t, 10_000_000, SUB, true);
            s.bandwidth_bps = Some(1_500_000);
            assert_eq!(p.on_sample(&s, &rates()), None);
        }
        assert!(p.reason().contains("not probing main"), "{}", p.reason());
    }

    #[test]
    fn backlog_counts_as_congestion_and_start_grace_allows_connecting() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        // Connecting for 4 s is fine.
        for t in 0..4 {
            assert_eq!(p.on_sample(&link(t, 0, MAIN, false), &rates()), None);
        }
        run(&mut p, 4, 20, 10_000_000, true);
        let mut decision = None;
        for t in 24..40 {
            let mut s = link(t, 10_000_000, MAIN, true);
            s.backlog = Duration::from_secs(3);
            s.sent_bps = Some(700_000);
            if let Some(d) = p.on_sample(&s, &rates()) {
                decision = Some((t, d));
                break;
            }
        }
        let (t, d) = decision.expect("stepped down");
        assert!(t - 24 < 5);
        assert_eq!(d.to, LiveRung::Sub, "{d:?}");
        assert!(d.reason.contains("waiting in front of the sender"));
    }

    #[test]
    fn a_failing_sender_is_bad_even_while_connecting() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        let mut decision = None;
        for t in 0..8 {
            let s = Sample {
                at: Duration::from_secs(t),
                failed: true,
                ..Sample::default()
            };
            if let Some(d) = p.on_sample(&s, &rates()) {
                decision = Some((t, d));
                break;
            }
        }
        let (t, d) = decision.expect("stepped down within the start grace");
        assert!(t < 4, "after {t} s");
        assert!(d.reason.contains("sender failed"), "{}", d.reason);
    }

    #[test]
    fn camera_without_sub_stream_goes_main_or_off() {
        let rates = RungRates {
            main_bps: MAIN,
            sub_bps: None,
        };
        let mut p = RungPolicy::new(cfg(), rates, Duration::ZERO);
        let mut down = None;
        for t in 0..30 {
            if let Some(d) = p.on_sample(&link(t, 1_000_000, MAIN, true), &rates) {
                down = Some(d);
                break;
            }
        }
        assert_eq!(down.unwrap().to, LiveRung::Off);
        let mut up = None;
        for t in 30..60 {
            if let Some(d) = p.on_sample(&link(t, 10_000_000, 0, true), &rates) {
                up = Some(d);
                break;
            }
        }
        assert_eq!(up.unwrap().to, LiveRung::Main);
    }

    #[test]
    fn spare_capacity_keeps_the_margin_free() {
        let mut p = RungPolicy::new(cfg(), rates(), Duration::ZERO);
        run(&mut p, 0, 30, 1_000_000, true);
        assert_eq!(p.rung(), LiveRung::Sub);
        let e = p.estimate(&rates());
        assert_eq!(e.live_bps, SUB);
        // Measured while main was saturating the link: 1 Mbit/s.
        assert_eq!(e.capacity_bps, Some(1_000_000));
        let spare = e.spare_bps.unwrap();
        assert!(spare > 0 && spare < 1_000_000 - SUB, "{e:?}");
    }
}
