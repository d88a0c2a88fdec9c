//! `fleet-sim`: connects N simulated stations to an MQTT broker and measures whether a
//! controller keeps up (the scale benchmark, `benches/controller-scale.sh`).
//!
//! Every station is its own MQTT connection (client id = station id, last will = retained
//! `offline`/`lost` on `status`, keepalive 30 s, clean session, subscribed to its `cmd` topic),
//! like a real agent: on connect it publishes a retained `online` status, an `agent_starting`
//! event and a health report; then a health report every `--interval-s` at a per-station phase
//! spread uniformly over the interval (two cameras recording with fps, bitrate and
//! `last_segment_end` advancing, `segment_s` 60, disk with `hours_left`, clock, load, name and
//! one of 20 regions). `--degraded-fraction` of the stations report a problem all the time (a lost
//! camera, low disk, an unsynchronised clock or a stale segment), so the stations list has real
//! sorting work. Events (`camera_lost`, then `camera_back` and `gap_recorded` when the camera
//! comes back, which the next health reports reflect) arrive at `--events-per-hour` per station,
//! spread over the fleet. All connections share one tokio runtime; connects are spread at
//! `--connect-rate` per second.
//!
//! Once every station is connected (and a warm-up of one interval), it measures for
//! `--duration-s`:
//!
//! * publish → visible: once a second a random station publishes a fresh health report; the
//!   probe polls `GET /api/stations/{id}` every 10 ms until `health.at` is that report's (from
//!   the probe's side, independent of the controller's own figure);
//! * the stations list: `GET /api/stations?limit=100`, with `q=` and with `state=degraded`, four
//!   requests a second in turn, each timed to the last byte;
//! * `GET /api/metrics` every 5 s: message counts (ingest rate) and `write_backlog`;
//! * CPU (utime+stime delta over the window, % of one core) and RSS of the controller and the
//!   broker (`--controller-pid`, `--broker-pid`), of itself and of the whole machine.
//!
//! It prints a table and a verdict, appends a Markdown row to `--row-file` if given, and exits 0
//! when the controller kept up and met the goals, 3 when it did not, 1 on errors.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::Parser;
use rand::Rng;
use rumqttc::{AsyncClient, Event as MqttEvent, Incoming, MqttOptions, QoS};
use serde_json::Value;
use stationwatch_protocol::manifest::{Fingerprint, GapReason, Hash256, Timestamp};
use stationwatch_protocol::mqtt::{
    hours_left, AgentInfo, CameraHealth, CameraState, ClockHealth, DiskHealth, Event, EventKind,
    Health, ManifestHead, MessageId, Status, SystemHealth, Topics,
};
use stationwatch_protocol::{CameraId, StationId};

#[derive(Debug, Parser)]
#[command(about = "Simulate N stations on an MQTT broker and measure the controller")]
struct Args {
    /// The broker, HOST:PORT.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// Spread connections over this many loopback addresses 127.0.0.1, 127.0.0.2, ... (same
    /// port; the broker must listen on each). One address gives ~28,000 ephemeral ports.
    #[arg(long, default_value_t = 1)]
    broker_addrs: u8,
    #[arg(long, default_value_t = 1000)]
    stations: usize,
    /// Seconds between two health reports of a station.
    #[arg(long, default_value_t = 15)]
    interval_s: u64,
    /// Measurement window, seconds (after all stations are connected and the warm-up).
    #[arg(long, default_value_t = 60)]
    duration_s: u64,
    /// Warm-up after the last connect, seconds (default: one interval + 5 s).
    #[arg(long)]
    warmup_s: Option<u64>,
    /// New connections per second.
    #[arg(long, default_value_t = 2000.0)]
    connect_rate: f64,
    /// Give up waiting for every station to connect after this many seconds past the last
    /// connect attempt.
    #[arg(long, default_value_t = 120)]
    connect_timeout_s: u64,
    /// Camera events (lost, back + gap) per station per hour.
    #[arg(long, default_value_t = 1.0)]
    events_per_hour: f64,
    /// Fraction of stations that report a problem (lost camera, low disk, clock, stale
    /// segment) all the time.
    #[arg(long, default_value_t = 0.05)]
    degraded_fraction: f64,
    /// Station ids are PREFIX-000001, ...
    #[arg(long, default_value = "sim")]
    prefix: String,
    #[arg(long, default_value_t = 30)]
    keepalive_s: u64,
    /// The controller's base URL, e.g. http://127.0.0.1:8080 (without it nothing is probed).
    #[arg(long)]
    controller: Option<String>,
    /// Log in with this user to create an API token (or give --token).
    #[arg(long)]
    user: Option<String>,
    #[arg(long, env = "FLEET_SIM_PASSWORD")]
    password: Option<String>,
    #[arg(long, env = "FLEET_SIM_TOKEN")]
    token: Option<String>,
    #[arg(long)]
    controller_pid: Option<u32>,
    /// The broker's pid; repeat for several brokers (figures are summed).
    #[arg(long)]
    broker_pid: Vec<u32>,
    /// Stations of the whole fleet when several fleet-sim processes share the load (the others
    /// run without --controller): this process's publish rate is scaled by
    /// fleet-total / stations to compare with what the controller ingests.
    #[arg(long)]
    fleet_total: Option<usize>,
    /// Goal: p99 of publish → visible, ms.
    #[arg(long, default_value_t = 2000)]
    goal_delay_ms: u64,
    /// Goal: p99 of the stations list, ms.
    #[arg(long, default_value_t = 100)]
    goal_list_ms: u64,
    /// Append the result as a Markdown table row to this file.
    #[arg(long)]
    row_file: Option<PathBuf>,
    /// Label of the row (e.g. the database).
    #[arg(long, default_value = "")]
    label: String,
}

const REGIONS: [&str; 20] = [
    "Riverside",
    "Northgate",
    "Old Town",
    "Harbour",
    "Hillcrest",
    "Eastfield",
    "Westbrook",
    "Lakeside",
    "Millbrook",
    "Southport",
    "Greenvale",
    "Stonebridge",
    "Ashford",
    "Kingsmead",
    "Fairview",
    "Brookhaven",
    "Redcliff",
    "Oakridge",
    "Willowdale",
    "Highmoor",
];
const KINDS: [&str; 5] = ["School", "Town hall", "Library", "Community centre", "Gym"];
const CAMERAS: [&str; 2] = ["desk", "boxes"];
const SEGMENT_S: u32 = 60;
const BITRATE: u64 = 2_000_000;

/// A permanent problem of a degraded station.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Profile {
    Healthy,
    CameraLost,
    DiskLow,
    ClockUnsynced,
    NoSegment,
}

struct Station {
    idx: usize,
    id: StationId,
    name: String,
    region: &'static str,
    profile: Profile,
    health_topic: String,
    status_topic: String,
    events_topic: String,
    cmd_topic: String,
    client: OnceLock<AsyncClient>,
    connected: AtomicBool,
    /// `at` of the newest health report published (ms), to keep them increasing.
    last_at: AtomicI64,
    /// When camera `boxes` was lost by an event (ms), 0 when it records.
    lost_since: AtomicI64,
    config_hash: Hash256,
    fingerprint: Fingerprint,
    /// Disk size and start fill, per station.
    disk_total: u64,
    disk_free0: u64,
}

impl Station {
    /// A report time after every one published before.
    fn next_at(&self, now: i64) -> i64 {
        let mut cur = self.last_at.load(Relaxed);
        loop {
            let at = now.max(cur + 1);
            match self
                .last_at
                .compare_exchange_weak(cur, at, Relaxed, Relaxed)
            {
                Ok(_) => return at,
                Err(c) => cur = c,
            }
        }
    }
}

/// Counters of what was published.
#[derive(Default)]
struct Counters {
    health: AtomicU64,
    status: AtomicU64,
    events: AtomicU64,
    /// try_publish refused (the client's queue was full).
    dropped: AtomicU64,
    connects: AtomicU64,
    connect_errors: AtomicU64,
    disconnects: AtomicU64,
}

impl Counters {
    fn published(&self) -> u64 {
        self.health.load(Relaxed) + self.status.load(Relaxed) + self.events.load(Relaxed)
    }
}

/// Lateness of scheduled health publishes, 1 ms buckets up to 10 s.
struct Histogram {
    buckets: Vec<AtomicU64>,
}

impl Histogram {
    fn new() -> Self {
        Histogram {
            buckets: (0..=10_000).map(|_| AtomicU64::new(0)).collect(),
        }
    }
    fn record(&self, ms: u64) {
        self.buckets[(ms as usize).min(10_000)].fetch_add(1, Relaxed);
    }
    fn percentile(&self, p: f64) -> Option<u64> {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * p).ceil() as u64).max(1);
        let mut seen = 0;
        for (ms, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Some(ms as u64);
            }
        }
        None
    }
}

struct Sim {
    args: Args,
    host: String,
    port: u16,
    stations: Vec<Station>,
    counters: Counters,
    connected: AtomicUsize,
    /// Phase origin of the health schedule.
    epoch: tokio::time::Instant,
    started_ms: i64,
    measuring: AtomicBool,
    lateness: Histogram,
    run_id: String,
    event_seq: AtomicU64,
}

fn now_ms() -> i64 {
    Timestamp::now().unix_ms()
}

fn ts(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(ms).unwrap_or_else(|_| Timestamp::now())
}

/// A deterministic pseudo-random number per station and purpose (splitmix64).
fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b)
        .wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn unit(a: u64, b: u64) -> f64 {
    (mix(a, b) >> 11) as f64 / (1u64 << 53) as f64
}

impl Sim {
    fn broker_host(&self, i: usize) -> String {
        if self.args.broker_addrs <= 1 {
            return self.host.clone();
        }
        format!("127.0.0.{}", 1 + (i % usize::from(self.args.broker_addrs)))
    }

    fn health(&self, st: &Station, at: i64) -> Vec<u8> {
        let i = st.idx as u64;
        let mut h = Health::new(ts(at));
        h.interval_s = self.args.interval_s as u32;
        h.segment_s = Some(SEGMENT_S);
        let uptime_s = ((at - self.started_ms) / 1000).max(0) as u64;
        h.agent = AgentInfo {
            version: "0.1.0".into(),
            config_hash: Some(st.config_hash),
            key_fingerprint: Some(st.fingerprint),
            station_name: Some(st.name.clone()),
            region: Some(st.region.into()),
            uptime_s: uptime_s + mix(i, 1) % 3600,
            system_uptime_s: Some(uptime_s + mix(i, 2) % 86_400),
        };
        let mut rng = rand::rng();
        // Segments end on the station's own minute grid.
        let offset = (mix(i, 3) % 60_000) as i64;
        let seg_end = (at - offset).div_euclid(60_000) * 60_000 + offset;
        // Heads advance like a real agent's: `open` + `segment` = 2 entries per 60 s segment,
        // so the controller stores a new witnessed head per camera about every 30 s of reports.
        // (Floor division: the first segment boundary after the start already advances it.)
        let segments = ((seg_end - self.started_ms).div_euclid(60_000) + 1).max(0) as u64;
        let seq = 1 + 2 * (segments + mix(i, 4) % 5000);
        let lost_since = st.lost_since.load(Relaxed);
        let mut total_bps = 0;
        for (c, cam) in CAMERAS.iter().enumerate() {
            let lost = (c == 1 && (st.profile == Profile::CameraLost || lost_since != 0))
                || (c == 0 && st.profile == Profile::CameraLost && i & 1 == 0);
            let head = ManifestHead {
                next_seq: seq,
                prev: Hash256::of(format!("{}/{cam}/{seq}", st.id).as_bytes()),
            };
            let health = if lost {
                let since = if lost_since != 0 {
                    lost_since
                } else {
                    self.started_ms - 600_000
                };
                CameraHealth {
                    state: CameraState::Lost,
                    last_segment_end: Some(ts(since)),
                    manifest: Some(head),
                    detail: Some("rtsp: connection refused (192.168.1.64:554)".into()),
                    ..Default::default()
                }
            } else {
                let bps = BITRATE - 100_000 + rng.random_range(0..200_000);
                total_bps += bps;
                let end = if st.profile == Profile::NoSegment && c == 0 {
                    at - 300_000
                } else {
                    seg_end
                };
                CameraHealth {
                    state: CameraState::Recording,
                    fps: Some(15.0 - rng.random_range(0.0..0.3)),
                    bitrate_bps: Some(bps),
                    last_segment_end: Some(ts(end)),
                    manifest: Some(head),
                    ..Default::default()
                }
            };
            if let Ok(id) = CameraId::new(*cam) {
                h.cameras.insert(id, health);
            }
        }
        // 2 cameras write ~0.9 GB an hour: free space shrinks with time.
        let used = (at - self.started_ms).max(0) as u64 / 1000 * (2 * BITRATE / 8);
        let free = if st.profile == Profile::DiskLow {
            12 * 3600 * (2 * BITRATE / 8)
        } else {
            st.disk_free0.saturating_sub(used)
        };
        h.disk = Some(DiskHealth {
            free_bytes: free,
            total_bytes: st.disk_total,
            hours_left: hours_left(free, total_bps.max(BITRATE)),
            low: st.profile == Profile::DiskLow,
        });
        h.clock = Some(ClockHealth {
            synced: st.profile != Profile::ClockUnsynced,
            est_error_us: Some(rng.random_range(200..5000)),
            max_error_us: Some(rng.random_range(10_000..200_000)),
        });
        let load = rng.random_range(0.2..1.5);
        h.system = SystemHealth {
            load_1m: Some((load * 100.0_f64).round() / 100.0),
            load_5m: Some(((load * 0.9) * 100.0_f64).round() / 100.0),
            load_15m: Some(((load * 0.8) * 100.0_f64).round() / 100.0),
            temperature_c: Some(40.0 + rng.random_range(0.0..15.0_f64).round()),
            power: None,
        };
        h.to_json().unwrap_or_default()
    }

    /// Publishes a health report taken at `at` (retained, QoS 0, like the agent).
    fn publish_health(&self, st: &Station, at: i64) -> bool {
        let Some(client) = st.client.get() else {
            return false;
        };
        let payload = self.health(st, at);
        match client.try_publish(&st.health_topic, QoS::AtMostOnce, true, payload) {
            Ok(()) => {
                self.counters.health.fetch_add(1, Relaxed);
                true
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Relaxed);
                false
            }
        }
    }

    fn publish_event(&self, st: &Station, kind: EventKind, at: i64) {
        let Some(client) = st.client.get() else {
            return;
        };
        let n = self.event_seq.fetch_add(1, Relaxed);
        let Ok(id) = MessageId::new(format!("{}-{n}", self.run_id)) else {
            return;
        };
        let Ok(payload) = Event::new(id, ts(at), kind).to_json() else {
            return;
        };
        match client.try_publish(&st.events_topic, QoS::AtLeastOnce, false, payload) {
            Ok(()) => self.counters.events.fetch_add(1, Relaxed),
            Err(_) => self.counters.dropped.fetch_add(1, Relaxed),
        };
    }

    fn on_connect(&self, st: &Station, client: &AsyncClient) {
        let now = now_ms();
        if let Ok(online) = Status::online(ts(now), "0.1.0").to_json() {
            match client.try_publish(&st.status_topic, QoS::AtLeastOnce, true, online) {
                Ok(()) => self.counters.status.fetch_add(1, Relaxed),
                Err(_) => self.counters.dropped.fetch_add(1, Relaxed),
            };
        }
        let _ = client.try_subscribe(&st.cmd_topic, QoS::AtLeastOnce);
        self.publish_event(
            st,
            EventKind::AgentStarting {
                version: "0.1.0".into(),
                previous_stop: None,
            },
            now,
        );
        self.publish_health(st, st.next_at(now));
    }
}

/// One station's connection: polls its event loop for ever, reconnecting after errors.
async fn station_task(sim: Arc<Sim>, i: usize) {
    let st = &sim.stations[i];
    let mut o = MqttOptions::new(st.id.as_str(), sim.broker_host(i), sim.port);
    o.set_keep_alive(Duration::from_secs(sim.args.keepalive_s));
    o.set_clean_session(true);
    o.set_inflight(20);
    o.set_max_packet_size(256 * 1024, 256 * 1024);
    let will = Topics::new(&st.id).last_will();
    o.set_last_will(rumqttc::LastWill::new(
        will.topic,
        will.payload,
        QoS::AtLeastOnce,
        will.retain,
    ));
    let (client, mut eventloop) = AsyncClient::new(o, 64);
    let mut net = eventloop.network_options();
    net.set_connection_timeout(30);
    eventloop.set_network_options(net);
    let _ = st.client.set(client.clone());
    tokio::spawn(health_task(sim.clone(), i));
    loop {
        match eventloop.poll().await {
            Ok(MqttEvent::Incoming(Incoming::ConnAck(_))) => {
                if !st.connected.swap(true, Relaxed) {
                    sim.connected.fetch_add(1, Relaxed);
                }
                sim.counters.connects.fetch_add(1, Relaxed);
                sim.on_connect(st, &client);
            }
            Ok(_) => {}
            Err(_) => {
                if st.connected.swap(false, Relaxed) {
                    sim.connected.fetch_sub(1, Relaxed);
                    sim.counters.disconnects.fetch_add(1, Relaxed);
                } else {
                    sim.counters.connect_errors.fetch_add(1, Relaxed);
                }
                let pause = rand::rng().random_range(1000..3000);
                tokio::time::sleep(Duration::from_millis(pause)).await;
            }
        }
    }
}

/// Health reports every interval at the station's phase.
async fn health_task(sim: Arc<Sim>, i: usize) {
    let st = &sim.stations[i];
    let period = Duration::from_secs(sim.args.interval_s.max(1));
    let phase = period.mul_f64(unit(i as u64, 7));
    let mut tick = tokio::time::interval_at(sim.epoch + phase, period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        let scheduled = tick.tick().await;
        if !st.connected.load(Relaxed) {
            continue;
        }
        if sim.measuring.load(Relaxed) {
            sim.lateness
                .record(scheduled.elapsed().as_millis().min(u128::from(u64::MAX)) as u64);
        }
        sim.publish_health(st, st.next_at(now_ms()));
    }
}

/// Camera events over the whole fleet at the configured rate.
async fn events_task(sim: Arc<Sim>) {
    let per_s = sim.stations.len() as f64 * sim.args.events_per_hour / 3600.0;
    if per_s <= 0.0 {
        return;
    }
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut due = 0.0;
    loop {
        tick.tick().await;
        due += per_s / 10.0;
        while due >= 1.0 {
            due -= 1.0;
            let i = rand::rng().random_range(0..sim.stations.len());
            let st = &sim.stations[i];
            if !st.connected.load(Relaxed) {
                continue;
            }
            let now = now_ms();
            let Ok(camera) = CameraId::new(CAMERAS[1]) else {
                continue;
            };
            let since = st.lost_since.swap(0, Relaxed);
            if since == 0 {
                st.lost_since.store(now, Relaxed);
                sim.publish_event(
                    st,
                    EventKind::CameraLost {
                        camera,
                        detail: "rtsp: no data for 10 s".into(),
                    },
                    now,
                );
            } else {
                sim.publish_event(
                    st,
                    EventKind::CameraBack {
                        camera: camera.clone(),
                        since: Some(ts(since)),
                    },
                    now,
                );
                sim.publish_event(
                    st,
                    EventKind::GapRecorded {
                        camera,
                        start: ts(since),
                        end: ts(now),
                        reason: GapReason::CameraLost.into(),
                        detail: "camera lost".into(),
                        seq: Some(mix(i as u64, now as u64) % 10_000),
                    },
                    now,
                );
            }
        }
    }
}

// ---- the controller's API

struct Api {
    agent: ureq::Agent,
    base: String,
    auth: String,
}

impl Api {
    fn new(base: &str) -> Self {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(30)))
            .http_status_as_error(false)
            .build()
            .into();
        Api {
            agent,
            base: base.trim_end_matches('/').to_owned(),
            auth: String::new(),
        }
    }

    /// Logs in and creates an API token, or uses the one given.
    fn authenticate(&mut self, args: &Args) -> Result<()> {
        if let Some(t) = &args.token {
            self.auth = format!("Bearer {t}");
            return Ok(());
        }
        let (Some(user), Some(pw)) = (&args.user, &args.password) else {
            bail!("--controller needs --token, or --user and --password");
        };
        let resp = self
            .agent
            .post(format!("{}/api/login", self.base))
            .send_json(serde_json::json!({ "username": user, "password": pw }))
            .context("POST /api/login")?;
        if resp.status() != 200 {
            bail!("POST /api/login: HTTP {}", resp.status());
        }
        let cookie = resp
            .headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .context("no session cookie in the login answer")?
            .to_owned();
        let mut resp = self
            .agent
            .post(format!("{}/api/tokens", self.base))
            .header("Cookie", &cookie)
            .send_json(serde_json::json!({ "name": format!("fleet-sim-{}", std::process::id()) }))
            .context("POST /api/tokens")?;
        if resp.status() != 201 {
            bail!("POST /api/tokens: HTTP {}", resp.status());
        }
        let v: Value = resp.body_mut().read_json()?;
        let token = v["token"].as_str().context("no token in the answer")?;
        self.auth = format!("Bearer {token}");
        Ok(())
    }

    /// GET, the JSON answer and the time to its last byte.
    fn get(&self, path: &str) -> Result<(Value, Duration)> {
        let t = Instant::now();
        let mut resp = self
            .agent
            .get(format!("{}{path}", self.base))
            .header("Authorization", &self.auth)
            .call()
            .with_context(|| format!("GET {path}"))?;
        if resp.status() != 200 {
            bail!("GET {path}: HTTP {}", resp.status());
        }
        let v: Value = resp
            .body_mut()
            .with_config()
            .limit(64 << 20)
            .read_json()
            .with_context(|| format!("GET {path}: reading the answer"))?;
        Ok((v, t.elapsed()))
    }
}

#[derive(Default)]
struct DelayProbe {
    /// Publish → visible, ms.
    delays: Vec<f64>,
    timeouts: u64,
    errors: u64,
}

/// Once a second: a fresh report from a random station, polled until the API shows it.
fn delay_probe(sim: Arc<Sim>, api: Arc<Api>, stop: Arc<AtomicBool>) -> DelayProbe {
    let mut out = DelayProbe::default();
    let mut rng = rand::rng();
    while !stop.load(Relaxed) {
        let next = Instant::now() + Duration::from_secs(1);
        let i = rng.random_range(0..sim.stations.len());
        let st = &sim.stations[i];
        if st.connected.load(Relaxed) {
            let at = st.next_at(now_ms());
            let t0 = Instant::now();
            if sim.publish_health(st, at) {
                let path = format!("/api/stations/{}", st.id);
                loop {
                    match api.get(&path) {
                        Ok((v, _)) => {
                            let seen = v["health"]["at"]
                                .as_str()
                                .and_then(|s| s.parse::<Timestamp>().ok())
                                .map(|t| t.unix_ms());
                            if seen.is_some_and(|s| s >= at) {
                                out.delays.push(t0.elapsed().as_secs_f64() * 1000.0);
                                break;
                            }
                        }
                        Err(e) => {
                            out.errors += 1;
                            if out.errors <= 3 {
                                eprintln!("fleet-sim: probe: {e:#}");
                            }
                        }
                    }
                    if t0.elapsed() > Duration::from_secs(30) {
                        out.timeouts += 1;
                        break;
                    }
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    out
}

const LIST_QUERIES: [(&str, &str); 3] = [
    ("all", "/api/stations?limit=100"),
    ("search", "/api/stations?limit=100&q=riverside"),
    ("degraded", "/api/stations?state=degraded&limit=100"),
];

/// The stations list, four requests a second, the three queries in turn.
fn list_probe(api: Arc<Api>, stop: Arc<AtomicBool>) -> (Vec<Vec<f64>>, u64, Vec<usize>) {
    let mut times = vec![Vec::new(); LIST_QUERIES.len()];
    let mut totals = vec![0; LIST_QUERIES.len()];
    let mut errors = 0;
    let mut k = 0;
    while !stop.load(Relaxed) {
        let next = Instant::now() + Duration::from_millis(250);
        let q = k % LIST_QUERIES.len();
        match api.get(LIST_QUERIES[q].1) {
            Ok((v, d)) => {
                times[q].push(d.as_secs_f64() * 1000.0);
                totals[q] = v["total"].as_u64().unwrap_or(0) as usize;
            }
            Err(e) => {
                errors += 1;
                if errors <= 3 {
                    eprintln!("fleet-sim: list: {e:#}");
                }
            }
        }
        k += 1;
        if let Some(d) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    (times, errors, totals)
}

#[derive(Debug, Clone)]
struct MetricsSample {
    t: f64,
    ingested: u64,
    backlog: u64,
    written: u64,
    v: Value,
}

fn metrics_sample(api: &Api, t0: Instant) -> Option<MetricsSample> {
    let (v, _) = api
        .get("/api/metrics")
        .map_err(|e| eprintln!("fleet-sim: metrics: {e:#}"))
        .ok()?;
    let m = &v["messages"];
    let n = |k: &str| m[k].as_u64().unwrap_or(0);
    Some(MetricsSample {
        t: t0.elapsed().as_secs_f64(),
        ingested: n("status") + n("health") + n("events"),
        backlog: v["write_backlog"].as_u64().unwrap_or(0),
        written: v["written"].as_u64().unwrap_or(0),
        v,
    })
}

fn metrics_loop(api: Arc<Api>, stop: Arc<AtomicBool>, t0: Instant) -> Vec<MetricsSample> {
    let mut out = Vec::new();
    let mut next = Instant::now() + Duration::from_secs(5);
    while !stop.load(Relaxed) {
        std::thread::sleep(Duration::from_millis(100));
        if Instant::now() >= next {
            next += Duration::from_secs(5);
            out.extend(metrics_sample(&api, t0));
        }
    }
    out
}

// ---- /proc

fn clk_tck() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// utime + stime of a process (all threads), in clock ticks.
fn cpu_ticks(pid: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &s[s.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
}

fn status_kb(pid: &str, key: &str) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// (busy, total) jiffies of the whole machine.
fn machine_ticks() -> Option<(u64, u64)> {
    let s = std::fs::read_to_string("/proc/stat").ok()?;
    let f: Vec<u64> = s
        .lines()
        .next()?
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = f.iter().take(8).sum();
    let idle = f.get(3)? + f.get(4)?;
    Some((total - idle, total))
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

struct ProcWindow {
    pid: String,
    ticks0: Option<u64>,
}

struct ProcFigures {
    cpu_pct: Option<f64>,
    rss_mib: Option<f64>,
    hwm_mib: Option<f64>,
}

impl ProcWindow {
    fn start(pid: String) -> Self {
        let ticks0 = cpu_ticks(&pid);
        ProcWindow { pid, ticks0 }
    }
    fn end(&self, secs: f64) -> ProcFigures {
        let cpu = match (self.ticks0, cpu_ticks(&self.pid)) {
            (Some(a), Some(b)) => Some((b - a) as f64 / clk_tck() / secs * 100.0),
            _ => None,
        };
        ProcFigures {
            cpu_pct: cpu,
            rss_mib: status_kb(&self.pid, "VmRSS").map(|k| k as f64 / 1024.0),
            hwm_mib: status_kb(&self.pid, "VmHWM").map(|k| k as f64 / 1024.0),
        }
    }
}

fn raise_nofile() {
    // SAFETY: plain getrlimit/setrlimit on a local struct.
    unsafe {
        let mut l = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 && l.rlim_cur < l.rlim_max {
            l.rlim_cur = l.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &l);
        }
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut l) == 0 {
            eprintln!("fleet-sim: open files limit {}", l.rlim_cur);
        }
    }
}

// ---- figures

fn pct(sorted: &[f64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len());
    Some(sorted[rank - 1])
}

fn sorted(mut v: Vec<f64>) -> Vec<f64> {
    v.sort_by(|a, b| a.total_cmp(b));
    v
}

fn f0(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.0}"))
}

fn f1(v: Option<f64>) -> String {
    v.map_or("–".into(), |x| format!("{x:.1}"))
}

fn main() {
    let args = Args::parse();
    raise_nofile();
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("fleet-sim: {e}");
            std::process::exit(1);
        }
    };
    let code = match rt.block_on(run(args)) {
        Ok(true) => 0,
        Ok(false) => 3,
        Err(e) => {
            eprintln!("fleet-sim: {e:#}");
            1
        }
    };
    let _ = std::io::stdout().flush();
    // Not a clean goodbye: the broker publishes every station's last will, as after a crash.
    std::process::exit(code);
}

async fn run(args: Args) -> Result<bool> {
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .context("--broker must be HOST:PORT")?;
    let port: u16 = port.parse().context("--broker port")?;
    let api = match &args.controller {
        Some(url) => {
            let mut api = Api::new(url);
            api.authenticate(&args)?;
            Some(Arc::new(api))
        }
        None => None,
    };
    let n = args.stations;
    if n == 0 {
        bail!("--stations must be at least 1");
    }
    let started_ms = now_ms();
    let mut stations = Vec::with_capacity(n);
    for idx in 0..n {
        let i = idx as u64;
        let id = StationId::new(format!("{}-{:06}", args.prefix, idx + 1))?;
        let topics = Topics::new(&id);
        let profile = if unit(i, 11) < args.degraded_fraction {
            [
                Profile::CameraLost,
                Profile::DiskLow,
                Profile::ClockUnsynced,
                Profile::NoSegment,
            ][(mix(i, 12) % 4) as usize]
        } else {
            Profile::Healthy
        };
        let region = REGIONS[(mix(i, 13) % REGIONS.len() as u64) as usize];
        let kind = KINDS[(mix(i, 14) % KINDS.len() as u64) as usize];
        let config_hash = Hash256::of(format!("config {id}").as_bytes());
        let mut fp = [0u8; 8];
        fp.copy_from_slice(&Hash256::of(format!("key {id}").as_bytes()).0[..8]);
        let disk_total: u64 = [500, 1000, 2000][(mix(i, 15) % 3) as usize] * 1_000_000_000;
        stations.push(Station {
            idx,
            name: format!("{kind} No. {}, {region}", 1 + mix(i, 16) % 400),
            region,
            profile,
            health_topic: topics.health(),
            status_topic: topics.status(),
            events_topic: topics.events(),
            cmd_topic: topics.command(),
            id,
            client: OnceLock::new(),
            connected: AtomicBool::new(false),
            last_at: AtomicI64::new(0),
            lost_since: AtomicI64::new(0),
            config_hash,
            fingerprint: Fingerprint(fp),
            disk_total,
            disk_free0: disk_total / 10 * (3 + mix(i, 17) % 6),
        });
    }
    let degraded = stations
        .iter()
        .filter(|s| s.profile != Profile::Healthy)
        .count();
    let sim = Arc::new(Sim {
        host: host.to_owned(),
        port,
        stations,
        counters: Counters::default(),
        connected: AtomicUsize::new(0),
        epoch: tokio::time::Instant::now(),
        started_ms,
        measuring: AtomicBool::new(false),
        lateness: Histogram::new(),
        run_id: format!("sim{:08x}", rand::random::<u32>()),
        event_seq: AtomicU64::new(0),
        args,
    });
    let args = &sim.args;
    eprintln!(
        "fleet-sim: {n} stations ({degraded} degraded) on {}:{port} ({} address(es)), health every {} s, {} events/station/h",
        sim.host, args.broker_addrs.max(1), args.interval_s, args.events_per_hour
    );

    // Connect, spread over time.
    let t_connect = Instant::now();
    let per_tick = (args.connect_rate / 100.0).max(1.0);
    let mut spawned = 0.0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    let mut next = 0;
    while next < n {
        tick.tick().await;
        spawned += per_tick;
        while (next as f64) < spawned && next < n {
            tokio::spawn(station_task(sim.clone(), next));
            next += 1;
        }
    }
    tokio::spawn(events_task(sim.clone()));
    let deadline = Instant::now() + Duration::from_secs(args.connect_timeout_s);
    let mut report = Instant::now();
    loop {
        let c = sim.connected.load(Relaxed);
        if c >= n {
            break;
        }
        if Instant::now() > deadline {
            eprintln!("fleet-sim: only {c} of {n} stations connected; measuring anyway");
            break;
        }
        if report.elapsed() > Duration::from_secs(5) {
            report = Instant::now();
            eprintln!(
                "fleet-sim: {c}/{n} connected ({} connect errors)",
                sim.counters.connect_errors.load(Relaxed)
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    let warmup = args.warmup_s.unwrap_or(args.interval_s + 5);
    eprintln!(
        "fleet-sim: {} connected in {connect_s:.1} s; warm-up {warmup} s",
        sim.connected.load(Relaxed)
    );
    if api.is_none() {
        eprintln!("fleet-sim: no --controller: publishing until stopped");
        std::future::pending::<()>().await;
    }
    tokio::time::sleep(Duration::from_secs(warmup)).await;

    // Measure.
    eprintln!("fleet-sim: measuring for {} s", args.duration_s);
    let t0 = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let first = match &api {
        Some(api) => {
            let api = api.clone();
            tokio::task::spawn_blocking(move || metrics_sample(&api, t0)).await?
        }
        None => None,
    };
    let published0 = sim.counters.published();
    let health0 = sim.counters.health.load(Relaxed);
    let dropped0 = sim.counters.dropped.load(Relaxed);
    let disconnects0 = sim.counters.disconnects.load(Relaxed);
    let load0 = loadavg();
    let machine0 = machine_ticks();
    let me = ProcWindow::start(std::process::id().to_string());
    let ctl = args
        .controller_pid
        .map(|p| ProcWindow::start(p.to_string()));
    let brk: Vec<ProcWindow> = args
        .broker_pid
        .iter()
        .map(|p| ProcWindow::start(p.to_string()))
        .collect();
    sim.measuring.store(true, Relaxed);
    let probes = api.as_ref().map(|api| {
        let (s1, s2, s3) = (stop.clone(), stop.clone(), stop.clone());
        let (a1, a2, a3) = (api.clone(), api.clone(), api.clone());
        let sim1 = sim.clone();
        (
            std::thread::spawn(move || delay_probe(sim1, a1, s1)),
            std::thread::spawn(move || list_probe(a2, s2)),
            std::thread::spawn(move || metrics_loop(a3, s3, t0)),
        )
    });
    tokio::time::sleep(Duration::from_secs(args.duration_s)).await;
    let secs = t0.elapsed().as_secs_f64();
    sim.measuring.store(false, Relaxed);
    let published = sim.counters.published() - published0;
    let health_published = sim.counters.health.load(Relaxed) - health0;
    let dropped = sim.counters.dropped.load(Relaxed) - dropped0;
    let disconnects = sim.counters.disconnects.load(Relaxed) - disconnects0;
    let me = Some(me.end(secs));
    let ctl = ctl.map(|w| w.end(secs));
    let brk = (!brk.is_empty()).then(|| {
        let all: Vec<ProcFigures> = brk.iter().map(|w| w.end(secs)).collect();
        let sum = |f: fn(&ProcFigures) -> Option<f64>| all.iter().map(f).sum::<Option<f64>>();
        ProcFigures {
            cpu_pct: sum(|f| f.cpu_pct),
            rss_mib: sum(|f| f.rss_mib),
            hwm_mib: sum(|f| f.hwm_mib),
        }
    });
    let machine = match (machine0, machine_ticks()) {
        (Some((b0, t0)), Some((b1, t1))) if t1 > t0 => {
            Some((b1 - b0) as f64 / (t1 - t0) as f64 * 100.0)
        }
        _ => None,
    };
    let load1 = loadavg();
    stop.store(true, Relaxed);
    let (delay, lists, mut samples) = match probes {
        Some((d, l, m)) => {
            let d = tokio::task::spawn_blocking(move || d.join()).await?;
            let l = tokio::task::spawn_blocking(move || l.join()).await?;
            let m = tokio::task::spawn_blocking(move || m.join()).await?;
            (
                d.ok(),
                l.ok(),
                m.unwrap_or_default().into_iter().collect::<VecDeque<_>>(),
            )
        }
        None => (None, None, VecDeque::new()),
    };
    let last = match &api {
        Some(api) => {
            let api = api.clone();
            tokio::task::spawn_blocking(move || metrics_sample(&api, t0)).await?
        }
        None => None,
    };
    if let Some(f) = first.clone() {
        samples.push_front(f);
    }
    if let Some(l) = last.clone() {
        samples.push_back(l);
    }

    // Figures.
    let scale = args.fleet_total.unwrap_or(n) as f64 / n as f64;
    let own_rate = published as f64 / secs;
    let pub_rate = own_rate * scale;
    let (ingest_rate, write_rate) = match (&first, &last) {
        (Some(a), Some(b)) if b.t > a.t => (
            Some((b.ingested - a.ingested) as f64 / (b.t - a.t)),
            Some((b.written - a.written) as f64 / (b.t - a.t)),
        ),
        _ => (None, None),
    };
    let backlogs: Vec<u64> = samples.iter().map(|s| s.backlog).collect();
    let backlog_first = backlogs.first().copied();
    let backlog_last = backlogs.last().copied();
    let backlog_max = backlogs.iter().max().copied();
    let delays = delay.as_ref().map(|d| sorted(d.delays.clone()));
    let (delay_p50, delay_p99, delay_max) = delays.as_ref().map_or((None, None, None), |d| {
        (pct(d, 0.5), pct(d, 0.99), d.last().copied())
    });
    let all_lists = lists
        .as_ref()
        .map(|(t, _, _)| sorted(t.iter().flatten().copied().collect()));
    let (list_p50, list_p99, list_max) = all_lists.as_ref().map_or((None, None, None), |d| {
        (pct(d, 0.5), pct(d, 0.99), d.last().copied())
    });
    let ctl_delay = last.as_ref().map(|l| {
        let d = &l.v["health_delay_ms"];
        (d["p50"].as_f64(), d["p99"].as_f64(), d["max"].as_f64())
    });
    let batch = last.as_ref().map(|l| {
        let d = &l.v["write_batch_ms"];
        (d["p50"].as_f64(), d["p99"].as_f64(), d["max"].as_f64())
    });

    // Verdict.
    let mut problems = Vec::new();
    if let (Some(a), Some(b), Some(mx)) = (backlog_first, backlog_last, backlog_max) {
        if b > 2 * a + 1000 || mx >= 90_000 {
            problems.push(format!("write backlog grows ({a} → {b}, max {mx})"));
        }
    }
    if let Some(r) = ingest_rate {
        if r < pub_rate * 0.95 {
            problems.push(format!(
                "ingest {r:.0} msg/s < published {pub_rate:.0} msg/s"
            ));
        }
    }
    if let Some(p) = delay_p99 {
        if p > args.goal_delay_ms as f64 {
            problems.push(format!(
                "probe p99 delay {p:.0} ms > {} ms",
                args.goal_delay_ms
            ));
        }
    }
    if let Some(d) = &delay {
        if d.timeouts > 0 {
            problems.push(format!("{} probes never became visible (30 s)", d.timeouts));
        }
    }
    if let Some(p) = list_p99 {
        if p > args.goal_list_ms as f64 {
            problems.push(format!("list p99 {p:.0} ms > {} ms", args.goal_list_ms));
        }
    }
    let connected = sim.connected.load(Relaxed);
    if connected < n {
        problems.push(format!("only {connected} of {n} stations connected"));
    }
    let late_p99 = sim.lateness.percentile(0.99);

    let mut out = String::new();
    let _ = writeln!(out, "\n== fleet-sim: {n} stations (fleet {}), health every {} s, measured {secs:.0} s (load {load0} → {load1})", args.fleet_total.unwrap_or(n), args.interval_s);
    let _ = writeln!(
        out,
        "connected            {connected}/{n} in {connect_s:.1} s; disconnects in window {disconnects}; dropped publishes {dropped}"
    );
    let _ = writeln!(
        out,
        "published            {pub_rate:.0} msg/s ({health_published} health, {} total in window{})",
        published,
        if scale != 1.0 {
            format!("; this process {own_rate:.0} msg/s × {scale:.2} for the whole fleet")
        } else {
            String::new()
        }
    );
    let _ = writeln!(
        out,
        "ingested             {} msg/s; written {} rows/s",
        f0(ingest_rate),
        f0(write_rate)
    );
    let _ = writeln!(
        out,
        "write backlog        first {} last {} max {} (samples: {})",
        backlog_first.map_or("–".into(), |v| v.to_string()),
        backlog_last.map_or("–".into(), |v| v.to_string()),
        backlog_max.map_or("–".into(), |v| v.to_string()),
        backlogs
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(" ")
    );
    if let Some(d) = &delay {
        let _ = writeln!(
            out,
            "probe delay          p50 {} p99 {} max {} ms ({} probes, {} timeouts, {} errors)",
            f0(delay_p50),
            f0(delay_p99),
            f0(delay_max),
            d.delays.len(),
            d.timeouts,
            d.errors
        );
    }
    if let Some((p50, p99, max)) = ctl_delay {
        let _ = writeln!(
            out,
            "controller delay     p50 {} p99 {} max {} ms (its health_delay_ms, last 65536 reports)",
            f0(p50),
            f0(p99),
            f0(max)
        );
    }
    if let Some((p50, p99, max)) = batch {
        let _ = writeln!(
            out,
            "write batches        p50 {} p99 {} max {} ms",
            f0(p50),
            f0(p99),
            f0(max)
        );
    }
    if let Some((times, errors, totals)) = &lists {
        for (q, t) in times.iter().enumerate() {
            let s = sorted(t.clone());
            let _ = writeln!(
                out,
                "list {:<9}       p50 {} p99 {} max {} ms ({} requests, total {})",
                LIST_QUERIES[q].0,
                f1(pct(&s, 0.5)),
                f1(pct(&s, 0.99)),
                f1(s.last().copied()),
                s.len(),
                totals[q]
            );
        }
        let _ = writeln!(
            out,
            "list (all queries)   p50 {} p99 {} max {} ms ({errors} errors)",
            f1(list_p50),
            f1(list_p99),
            f1(list_max)
        );
    }
    let brokers = format!("broker(s) ×{}", args.broker_pid.len());
    for (who, f) in [
        ("controller", &ctl),
        (brokers.as_str(), &brk),
        ("fleet-sim", &me),
    ] {
        if let Some(f) = f {
            let _ = writeln!(
                out,
                "{who:<20} CPU {} % of one core, RSS {} MiB (peak {} MiB)",
                f0(f.cpu_pct),
                f0(f.rss_mib),
                f0(f.hwm_mib)
            );
        }
    }
    let _ = writeln!(
        out,
        "machine              {} % busy (2 cores = 100 %); scheduled health publishes late p50 {} p99 {} ms",
        f0(machine),
        sim.lateness.percentile(0.5).map_or("–".into(), |v| v.to_string()),
        late_p99.map_or("–".into(), |v| v.to_string())
    );
    let keeps_up = problems.is_empty();
    if keeps_up {
        let _ = writeln!(out, "VERDICT: keeps up, goals met");
    } else {
        let _ = writeln!(
            out,
            "VERDICT: falls behind / misses: {}",
            problems.join("; ")
        );
    }
    print!("{out}");

    let cpu = |f: &Option<ProcFigures>| {
        f.as_ref().map_or("–".into(), |f| {
            format!("{} / {}", f0(f.cpu_pct), f0(f.hwm_mib))
        })
    };
    let row = format!(
        "| {}{} | {} | {pub_rate:.0} | {} | {} / {} / {} | {} / {} / {} | {} / {} | {} / {} / {} | {} | {} | {} | {} | {} | {} |\n",
        args.fleet_total.unwrap_or(n),
        if args.label.is_empty() { String::new() } else { format!(" ({})", args.label) },
        args.interval_s,
        f0(ingest_rate),
        backlog_first.map_or("–".into(), |v| v.to_string()),
        backlog_last.map_or("–".into(), |v| v.to_string()),
        backlog_max.map_or("–".into(), |v| v.to_string()),
        f0(delay_p50),
        f0(delay_p99),
        f0(delay_max),
        f0(ctl_delay.and_then(|d| d.0)),
        f0(ctl_delay.and_then(|d| d.1)),
        f1(list_p50),
        f1(list_p99),
        f1(list_max),
        cpu(&ctl),
        cpu(&brk),
        f0(me.as_ref().and_then(|f| f.cpu_pct)),
        f0(machine),
        load0.split_whitespace().next().unwrap_or(""),
        if keeps_up { "yes".to_owned() } else { format!("**no**: {}", problems.join("; ")) },
    );
    if let Some(path) = &args.row_file {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .with_context(|| format!("opening {}", path.display()))?;
        f.write_all(row.as_bytes())?;
    }
    Ok(keeps_up)
}
