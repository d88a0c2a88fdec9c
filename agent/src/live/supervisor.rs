//! The live supervisor of a camera, on its own OS thread: applies the mode (off, on, auto with
//! the uplink policy), starts and stops senders, points the feed at them, and publishes the
//! status. A sink that blocks in `set_state` or a stats query stalls only this thread.

use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use stationwatch_protocol::mqtt::{EventKind, LiveState};
use stationwatch_protocol::{CameraId, StationId};
use tokio::sync::mpsc::UnboundedSender;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::source::CameraSource;
use crate::config::{CameraLiveConfig, LiveConfig, LiveSetting};
use crate::live::feed::{LiveFeed, Tap};
use crate::live::sender::SrtIdentity;
use crate::live::sender::{Input, Sender};
use crate::live::status::LiveStatus;
use crate::live::uplink::{RungPolicy, RungRates, Sample, UplinkEstimate};
use crate::state::CameraCounters;
use stationwatch_protocol::mqtt::LiveRung;

/// Everything a camera's live supervisor needs.
pub struct LiveContext {
    pub station: StationId,
    pub camera: CameraId,
    pub source: CameraSource,
    pub bitrate_kbps: u32,
    pub live: CameraLiveConfig,
    pub config: LiveConfig,
    pub feed: Arc<LiveFeed>,
    pub counters: Arc<CameraCounters>,
    /// The persisted `set_live` override, if any.
    pub initial_override: Option<LiveSetting>,
    pub events: Option<UnboundedSender<EventKind>>,
}

/// Container and transport overhead over the video bitrate (MPEG-TS, SRT headers).
const OVERHEAD: f64 = 1.1;
/// How often the supervisor samples the sender and runs the policy.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
const LOOP_TICK: Duration = Duration::from_millis(100);
/// Rebuild delays after a sender failed.
const RETRY_INITIAL: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(10);

pub(super) struct Supervisor {
    station: StationId,
    camera: CameraId,
    source: CameraSource,
    bitrate_kbps: u32,
    live: CameraLiveConfig,
    config: LiveConfig,
    feed: Arc<LiveFeed>,
    counters: Arc<CameraCounters>,
    events: Option<UnboundedSender<EventKind>>,
    status: watch::Sender<LiveStatus>,
    uplink: watch::Sender<UplinkEstimate>,
    control: mpsc::Receiver<Option<LiveSetting>>,
    shutdown: CancellationToken,
    mode: LiveSetting,
    overridden: bool,
    policy: Option<RungPolicy>,
    sender: Option<Sender>,
    /// The rung reported (events are sent when it changes).
    rung: LiveRung,
    reason: String,
    retry: Duration,
    next_attempt: Instant,
    epoch: Instant,
    /// When the current rung was chosen, until its first byte left (video lost at a switch).
    switch_at: Option<Instant>,
    last_sample: Sample,
    /// A sender failed since the last sample.
    failed: bool,
    /// Measured main-stream bitrate (RTSP cameras): frames and bytes at the last look.
    main_meter: (Instant, u64),
    main_bps: Option<u64>,
}

impl Supervisor {
    pub(super) fn new(
        ctx: LiveContext,
        status: watch::Sender<LiveStatus>,
        uplink: watch::Sender<UplinkEstimate>,
        control: mpsc::Receiver<Option<LiveSetting>>,
        shutdown: CancellationToken,
    ) -> Self {
        let now = Instant::now();
        Self {
            mode: ctx.initial_override.unwrap_or(ctx.live.mode),
            overridden: ctx.initial_override.is_some(),
            station: ctx.station,
            camera: ctx.camera,
            source: ctx.source,
            bitrate_kbps: ctx.bitrate_kbps,
            main_meter: (now, ctx.counters.bytes()),
            live: ctx.live,
            config: ctx.config,
            feed: ctx.feed,
            counters: ctx.counters,
            events: ctx.events,
            status,
            uplink,
            control,
            shutdown,
            policy: None,
            sender: None,
            rung: LiveRung::Off,
            reason: String::new(),
            retry: RETRY_INITIAL,
            next_attempt: now,
            epoch: now,
            switch_at: None,
            last_sample: Sample::default(),
            failed: false,
            main_bps: None,
        }
    }

    fn rates(&self) -> RungRates {
        // What the recording actually carries (an encoder below its target, a VBR camera);
        // until measured, the encode target or 4 Mbit/s for a camera.
        let main = self
            .main_bps
            .unwrap_or(if self.source.is_encoded_by_agent() {
                u64::from(self.bitrate_kbps) * 1000
            } else {
                4_000_000
            });
        let has_sub = self.source.is_encoded_by_agent() || self.live.sub_stream.is_some();
        RungRates {
            main_bps: (main as f64 * OVERHEAD) as u64,
            sub_bps: has_sub.then(|| (f64::from(self.live.sub_kbps) * 1000.0 * OVERHEAD) as u64),
        }
    }

    pub(super) fn run(mut self) {
        info!(
            camera = %self.camera,
            target = %self.live.target,
            mode = self.mode.as_str(),
            overridden = self.overridden,
            "live supervision started"
        );
        self.apply_mode("start");
        let mut next_sample = Instant::now() + SAMPLE_EVERY;
        while !self.shutdown.is_cancelled() {
            match self.control.recv_timeout(LOOP_TICK) {
                Ok(cmd) => {
                    self.overridden = cmd.is_some();
                    self.mode = cmd.unwrap_or(self.live.mode);
                    info!(camera = %self.camera, mode = self.mode.as_str(), overridden = self.overridden, "live mode set by command");
                    self.apply_mode("set by command");
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {}
            }
            if let Some(err) = self.sender.as_ref().and_then(Sender::error) {
                self.sender_failed(err);
            }
            let generation = self.feed.generation.load(Ordering::Relaxed);
            if self
                .sender
                .as_ref()
                .is_some_and(|s| s.generation.is_some_and(|g| g != generation))
            {
                // The camera's pipeline was rebuilt (camera lost and back): start over.
                debug!(camera = %self.camera, "recording pipeline rebuilt; restarting the live sender");
                self.stop_sender();
            }
            self.note_first_byte();
            if Instant::now() >= next_sample {
                next_sample += SAMPLE_EVERY;
                self.measure_main();
                self.tick();
            }
            self.ensure_sender();
        }
        self.stop_sender();
        info!(camera = %self.camera, "live supervision stopped");
    }

    fn now(&self) -> Duration {
        self.epoch.elapsed()
    }

    /// The rung the mode asks for now.
    fn wanted(&self) -> LiveRung {
        match self.mode {
            // `Unknown` never gets here: the config and `set_live` reject it.
            LiveSetting::Off | LiveSetting::Unknown => LiveRung::Off,
            LiveSetting::On => LiveRung::Main,
            LiveSetting::Auto => self
                .policy
                .as_ref()
                .map_or(LiveRung::Main, RungPolicy::rung),
        }
    }

    fn apply_mode(&mut self, why: &str) {
        match self.mode {
            LiveSetting::Auto => {
                if self.policy.is_none() {
                    self.policy = Some(RungPolicy::new(
                        self.config.policy.clone(),
                        self.rates(),
                        self.now(),
                    ));
                }
            }
            _ => self.policy = None,
        }
        let reason = match self.mode {
            LiveSetting::Off | LiveSetting::Unknown => format!("live mode off ({why})"),
            LiveSetting::On => format!("live mode on: main stream ({why})"),
            LiveSetting::Auto => self
                .policy
                .as_ref()
                .map(|p| p.reason().to_owned())
                .unwrap_or_default(),
        };
        self.change_rung(self.wanted(), reason);
    }

    /// Records the rung the supervisor now wants, with an event when it changed.
    fn change_rung(&mut self, to: LiveRung, reason: String) {
        self.reason = reason;
        if to == self.rung {
            self.publish();
            return;
        }
        let from = self.rung;
        self.rung = to;
        info!(
            camera = %self.camera,
            from = from.as_str(),
            to = to.as_str(),
            mode = self.mode.as_str(),
            uplink_bps = self.uplink.borrow().capacity_bps,
            reason = %self.reason,
            "live rung changed"
        );
        if let Some(tx) = &self.events {
            let _ = tx.send(EventKind::LiveChanged {
                camera: self.camera.clone(),
                rung: to,
                from,
                mode: self.mode,
                uplink_bps: self.uplink.borrow().capacity_bps,
                reason: self.reason.clone(),
            });
        }
        self.switch_at = (to != LiveRung::Off).then(Instant::now);
        self.stop_sender();
        self.retry = RETRY_INITIAL;
        self.next_attempt = Instant::now();
        self.publish();
    }

    fn note_first_byte(&mut self) {
        let (Some(at), Some(s)) = (self.switch_at, self.sender.as_ref()) else {
            return;
        };
        let first = *s.first_out.lock();
        if let Some(first) = first {
            info!(
                camera = %self.camera,
                rung = s.rung.as_str(),
                after_ms = first.saturating_duration_since(at).as_millis() as u64,
                "live stream flowing"
            );
            self.switch_at = None;
        }
    }

    fn measure_main(&mut self) {
        let (t0, b0) = self.main_meter;
        let secs = t0.elapsed().as_secs_f64();
        if secs >= 5.0 {
            let b = self.counters.bytes();
            let bps = ((b.saturating_sub(b0)) as f64 * 8.0 / secs) as u64;
            if bps > 0 {
                self.main_bps = Some(bps);
            }
            self.main_meter = (Instant::now(), b);
        }
    }

    fn tick(&mut self) {
        let at = self.now();
        let mut sample = match self.sender.as_mut() {
            Some(s) => s.sample(at),
            None => Sample {
                at,
                ..Sample::default()
            },
        };
        sample.failed = std::mem::take(&mut self.failed);
        self.last_sample = sample;
        let rates = self.rates();
        if let Some(p) = self.policy.as_mut() {
            let decision = p.on_sample(&sample, &rates);
            let estimate = p.estimate(&rates);
            self.uplink.send_replace(with_signals(estimate, &sample));
            if let Some(d) = decision {
                self.change_rung(d.to, d.reason);
            } else {
                self.reason = p.reason().to_owned();
            }
        } else {
            let live_bps = if self.rung == LiveRung::Off {
                0
            } else {
                sample.sent_bps.unwrap_or(0)
            };
            let estimate = UplinkEstimate {
                live_bps,
                ..UplinkEstimate::default()
            };
            self.uplink.send_replace(with_signals(estimate, &sample));
        }
        self.publish();
    }

    /// The stream id (`<station>/<camera>`, what the live gateway expects) and the station's
    /// passphrase (`[live] passphrase_file`, read now so a new one needs no restart), used by an
    /// SRT target whose URL does not carry its own.
    fn srt_identity(&self) -> Result<SrtIdentity, String> {
        let passphrase = match &self.config.passphrase_file {
            Some(f) => Some(
                crate::config::read_passphrase(f)
                    .map_err(|e| format!("live.passphrase_file: {e}"))?,
            ),
            None => None,
        };
        Ok(SrtIdentity {
            stream_id: format!("{}/{}", self.station, self.camera),
            passphrase,
        })
    }

    fn sender_failed(&mut self, err: String) {
        warn!(
            camera = %self.camera,
            rung = self.rung.as_str(),
            error = %err,
            retry_in_ms = self.retry.as_millis() as u64,
            "live sender failed; recording is not affected"
        );
        self.stop_sender();
        self.reason = format!("live sender failed: {err}");
        self.failed = true;
        self.next_attempt = Instant::now() + self.retry;
        self.retry = (self.retry * 2).min(RETRY_MAX);
        self.publish();
    }

    /// Starts the sender the wanted rung needs, if it is not running.
    fn ensure_sender(&mut self) {
        let wanted = self.rung;
        if wanted == LiveRung::Off {
            self.stop_sender();
            return;
        }
        if self.sender.as_ref().is_some_and(|s| s.rung == wanted)
            || Instant::now() < self.next_attempt
        {
            return;
        }
        let h265 = self
            .counters
            .keyframe()
            .and_then(|s| {
                s.caps()
                    .and_then(|c| c.structure(0).map(|s| s.name() == "video/x-h265"))
            })
            .unwrap_or(false);
        let sub_url = match &self.live.sub_stream {
            Some(CameraSource::Rtsp(u)) => Some(u.clone()),
            _ => None,
        };
        let input = match (wanted, &sub_url) {
            (LiveRung::Sub, Some(url)) => Input::Rtsp(url),
            (LiveRung::Sub, None) => Input::Feed {
                tap: Tap::Sub,
                h265: false,
            },
            _ => Input::Feed {
                tap: Tap::Main,
                h265,
            },
        };
        let tap = match input {
            Input::Feed { tap, .. } => Some(tap),
            Input::Rtsp(_) => None,
        };
        let srt = match self.srt_identity() {
            Ok(i) => i,
            Err(e) => return self.sender_failed(e),
        };
        match Sender::start(
            &self.camera,
            wanted,
            input,
            &self.live.target,
            self.config.srt_latency_ms,
            &srt,
        ) {
            Ok(mut s) => {
                debug!(camera = %self.camera, rung = wanted.as_str(), "live sender started");
                match s.appsrc.clone() {
                    Some(src) => {
                        s.generation = Some(self.feed.generation.load(Ordering::Relaxed));
                        self.feed.connect(tap.unwrap_or(Tap::Main), src);
                    }
                    None => self.feed.disconnect(),
                }
                self.sender = Some(s);
            }
            Err(e) => self.sender_failed(e),
        }
    }

    /// Stops the current sender, if any, after detaching the feed from it (a stopped `appsrc`
    /// must not be pushed to). With no sender the feed is detached already; this is a no-op.
    fn stop_sender(&mut self) {
        self.feed.disconnect();
        if let Some(s) = self.sender.take() {
            s.stop(&self.camera);
        }
    }

    fn publish(&self) {
        let s = &self.last_sample;
        let streaming = self
            .sender
            .as_ref()
            .is_some_and(|snd| snd.first_out.lock().is_some());
        let state = match (self.rung, &self.policy) {
            (LiveRung::Off, _) => LiveState::Stopped,
            _ if !streaming => LiveState::Starting,
            (_, Some(p)) => p.state(),
            (_, None) => LiveState::Streaming,
        };
        let uplink = self.uplink.borrow().capacity_bps;
        let on = self.rung != LiveRung::Off && self.sender.is_some();
        let status = LiveStatus {
            mode: self.mode,
            overridden: self.overridden,
            rung: self.rung,
            state,
            uplink_bps: uplink,
            send_bps: on.then_some(s.sent_bps).flatten(),
            rtt_ms: on.then_some(s.rtt_ms).flatten(),
            loss: on.then_some(s.loss).flatten(),
            reason: self.reason.clone(),
        };
        self.status.send_if_modified(|old| {
            if *old != status {
                *old = status;
                true
            } else {
                false
            }
        });
    }
}

/// Adds the sample's round trip, loss and backlog to an estimate (what uploads pace by).
fn with_signals(mut e: UplinkEstimate, s: &Sample) -> UplinkEstimate {
    static SAMPLES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    e.sample = SAMPLES.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
    e.rtt_ms = s.rtt_ms;
    e.loss = s.loss;
    e.backlog_ms = u64::try_from(s.backlog.as_millis()).unwrap_or(u64::MAX);
    e
}
