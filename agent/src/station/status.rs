//! The on-site status (`station-agent status`): what the running agent is doing right now, for
//! the technician in the polling station, without any network. The MQTT link writes
//! `<storage>/.status.json` at every health interval, whether or not the broker is reachable:
//! the health report it sends (or would send) plus the state of the broker link. The file is
//! replaced atomically (written beside, renamed) but not synced: it is a view of the present,
//! not a record, and a flash card need not be written through every 15 s. Mode 0640, so the
//! technician's group (the storage folder's group) can read it.
//!
//! [`render`] turns it into plain words and lists the problems a technician can act on.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::mqtt::{CameraState, Health, LiveRung, ViewDecisionState};

pub const STATUS_FILE: &str = ".status.json";

/// What the status file holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LocalStatus {
    pub written_at: Timestamp,
    pub broker: BrokerLink,
    pub health: Health,
}

/// The MQTT link as the agent sees it.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct BrokerLink {
    /// `host:port` (never credentials).
    pub broker: String,
    pub connected: bool,
    /// Since when it is connected or disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<Timestamp>,
    /// Why the last attempt failed, while disconnected.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Messages (events, acks) waiting in the outbox for the broker.
    #[serde(default)]
    pub outbox: usize,
}

pub fn path(storage: &Path) -> PathBuf {
    storage.join(STATUS_FILE)
}

/// Replaces the status file (atomically, mode 0640, not synced).
pub fn write(storage: &Path, status: &LocalStatus) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = path(storage);
    let tmp = file.with_extension("json.tmp");
    let data = serde_json::to_vec_pretty(status).map_err(std::io::Error::other)?;
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o640)
        .open(&tmp)?;
    f.write_all(&data)?;
    drop(f);
    std::fs::rename(&tmp, &file)
}

/// Reads the status file; the error says what is wrong in plain words.
pub fn read(storage: &Path) -> Result<LocalStatus, String> {
    let file = path(storage);
    let bytes = std::fs::read(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => format!(
            "{} does not exist: the agent has not run with this config (or has no [mqtt] section). \
             Is it running? systemctl status station-agent",
            file.display()
        ),
        std::io::ErrorKind::PermissionDenied => format!(
            "{}: permission denied; run as root or as a member of the storage folder's group",
            file.display()
        ),
        _ => format!("{}: {e}", file.display()),
    })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| format!("{}: not a status file: {e}", file.display()))
}

fn ago(now: Timestamp, t: Timestamp) -> String {
    let s = now.ms_since(t) / 1000;
    match s {
        i64::MIN..=-1 => "in the future (clock?)".into(),
        0..=119 => format!("{s} s ago"),
        120..=7199 => format!("{} min ago", s / 60),
        _ => format!("{} h ago", s / 3600),
    }
}

fn duration(s: u64) -> String {
    if s < 120 {
        format!("{s} s")
    } else if s < 7200 {
        format!("{} min", s / 60)
    } else {
        format!("{} h {:02} min", s / 3600, s / 60 % 60)
    }
}

fn mbit(bps: u64) -> String {
    format!("{:.1} Mbit/s", bps as f64 / 1e6)
}

/// The status in plain words, and the problems a technician can act on (empty: all is well).
pub fn render(s: &LocalStatus, now: Timestamp) -> (String, Vec<String>) {
    let h = &s.health;
    let mut out = String::new();
    let mut problems = Vec::new();
    let mut line = |l: String| {
        out.push_str(&l);
        out.push('\n');
    };
    let name = h
        .agent
        .station_name
        .as_deref()
        .map(|n| format!(" \"{n}\""))
        .unwrap_or_default();
    line(format!(
        "Agent {}{name}: up {}, status written {}",
        h.agent.version,
        duration(h.agent.uptime_s),
        ago(now, s.written_at)
    ));
    let stale_ms = i64::from(h.interval_s.max(1)) * 3000 + 5000;
    if now.ms_since(s.written_at) > stale_ms {
        problems.push(format!(
            "the agent's status is {} old: the agent is not running or is stuck (systemctl status station-agent)",
            ago(now, s.written_at).trim_end_matches(" ago")
        ));
    }
    let b = &s.broker;
    if b.connected {
        line(format!(
            "Controller link: connected to {}{}",
            b.broker,
            b.since
                .map(|t| format!(" since {}", ago(now, t)))
                .unwrap_or_default()
        ));
    } else {
        line(format!(
            "Controller link: NOT connected to {}{}{}",
            b.broker,
            b.since
                .map(|t| format!(" (since {})", ago(now, t)))
                .unwrap_or_default(),
            b.last_error
                .as_deref()
                .map(|e| format!(": {e}"))
                .unwrap_or_default()
        ));
        problems.push(format!(
            "no connection to the controller's broker {} (recording goes on; {} messages wait)",
            b.broker, b.outbox
        ));
    }
    if let Some(d) = &h.disk {
        line(format!(
            "Disk: {:.1} GB free of {:.1} GB{}",
            d.free_bytes as f64 / 1e9,
            d.total_bytes as f64 / 1e9,
            d.hours_left
                .map(|x| format!(", about {x:.0} hours of recording left"))
                .unwrap_or_default()
        ));
        if d.low {
            problems.push("the disk is nearly full: old recordings are being deleted".into());
        }
    }
    if let Some(c) = &h.clock {
        if !c.synced {
            problems
                .push("the clock is not synchronised (NTP/GPS): timestamps may be wrong".into());
        }
    }
    for (id, c) in &h.cameras {
        let state = match c.state {
            CameraState::Recording => "recording",
            CameraState::Starting => "starting",
            CameraState::Lost => "LOST",
            CameraState::Stopped => "stopped",
            CameraState::Failed => "FAILED",
            CameraState::Unknown => "unknown",
        };
        let mut parts = vec![state.to_owned()];
        // Rates are averaged since the previous report: only shown while recording.
        if c.state == CameraState::Recording {
            if let Some(f) = c.fps {
                parts.push(format!("{f:.1} fps"));
            }
            if let Some(b) = c.bitrate_bps {
                parts.push(mbit(b));
            }
        }
        parts.push(match c.last_segment_end {
            Some(t) => format!("last segment ended {}", ago(now, t)),
            None => "no segment yet".into(),
        });
        line(format!(
            "Camera {id}: {}{}",
            parts.join(", "),
            c.detail
                .as_deref()
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
        if !matches!(c.state, CameraState::Recording | CameraState::Starting) {
            problems.push(format!(
                "camera {id} is not recording ({state}{}): check its cable, power and address",
                c.detail
                    .as_deref()
                    .map(|d| format!(": {d}"))
                    .unwrap_or_default()
            ));
        }
        if let Some(l) = &c.live {
            let rung = match l.rung {
                LiveRung::Main => "main stream".to_owned(),
                LiveRung::Sub => "sub-stream".to_owned(),
                LiveRung::Off => "off".to_owned(),
                LiveRung::Unknown => "unknown".to_owned(),
            };
            line(format!(
                "  live: {rung}{}{}",
                l.send_bps
                    .map(|b| format!(", sending {}", mbit(b)))
                    .unwrap_or_default(),
                l.reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default()
            ));
        }
        if let Some(v) = &c.view {
            let decision = match &v.decision {
                Some(d) => {
                    let why = if d.reason.is_empty() {
                        String::new()
                    } else {
                        format!(": \"{}\"", d.reason)
                    };
                    match d.state {
                        ViewDecisionState::Approved => {
                            format!("approved by {} {}", d.by, ago(now, d.at))
                        }
                        ViewDecisionState::Refused => {
                            problems.push(format!(
                                "the view of camera {id} was REFUSED by {}{why}: fix what it shows, then ask the centre to approve it",
                                d.by
                            ));
                            format!("REFUSED by {} {}{why}", d.by, ago(now, d.at))
                        }
                        ViewDecisionState::Reset => {
                            format!("reset by {} {}: not approved", d.by, ago(now, d.at))
                        }
                        ViewDecisionState::Replaced => {
                            problems.push(format!(
                                "camera {id} was replaced{why}: ask the centre to approve its view again"
                            ));
                            format!("approval voided, camera replaced{why}")
                        }
                        ViewDecisionState::Unknown => "decided".to_owned(),
                    }
                }
                None if v.approved => "approved".to_owned(),
                None => {
                    problems.push(format!(
                        "the view of camera {id} is not approved yet: ask the centre to approve it"
                    ));
                    "not approved yet".to_owned()
                }
            };
            let masks = if v.masks > 0 {
                format!(", {} privacy mask(s)", v.masks)
            } else {
                String::new()
            };
            line(format!("  view: {decision}{masks}"));
            for p in &v.problems {
                line(format!(
                    "  view problem: {} since {}: {}",
                    p.kind,
                    ago(now, p.since),
                    p.detail
                ));
                problems.push(format!(
                    "camera {id}'s picture is {} ({}): check that nothing covers it and that it points where it should",
                    p.kind, p.detail
                ));
            }
        }
    }
    if let Some(u) = &h.upload {
        line(format!(
            "Uploads: {} job(s), {:.1} MB waiting{}",
            u.jobs.len(),
            u.backlog_bytes as f64 / 1e6,
            if u.rate_bps > 0 {
                format!(", sending {}", mbit(u.rate_bps))
            } else {
                String::new()
            }
        ));
    }
    if let Some(e) = &h.holds_file_error {
        problems.push(format!("the legal holds file cannot be read: {e}"));
    }
    (out, problems)
}

#[cfg(test)]
mod tests {
    use super::*;
    use stationwatch_protocol::mqtt::{CameraHealth, ViewDecision, ViewHealth};
    use stationwatch_protocol::CameraId;

    fn status(now: Timestamp) -> LocalStatus {
        let mut h = Health::new(now);
        h.interval_s = 15;
        h.agent.version = "0.1.0".into();
        h.cameras.insert(
            CameraId::new("desk").unwrap(),
            CameraHealth {
                state: CameraState::Recording,
                fps: Some(15.0),
                bitrate_bps: Some(2_000_000),
                last_segment_end: Some(now),
                view: Some(ViewHealth {
                    decision: Some(ViewDecision {
                        state: ViewDecisionState::Refused,
                        by: "op-1".into(),
                        at: now,
                        reason: "voting booth visible".into(),
                    }),
                    ..ViewHealth::default()
                }),
                ..CameraHealth::default()
            },
        );
        h.cameras.insert(
            CameraId::new("boxes").unwrap(),
            CameraHealth {
                state: CameraState::Lost,
                detail: Some("connection refused".into()),
                ..CameraHealth::default()
            },
        );
        LocalStatus {
            written_at: now,
            broker: BrokerLink {
                broker: "10.0.0.1:8883".into(),
                connected: false,
                since: Some(now),
                last_error: Some("connection refused".into()),
                outbox: 3,
            },
            health: h,
        }
    }

    #[test]
    fn the_technician_reads_what_is_wrong_in_plain_words() {
        let now = Timestamp::now();
        let (text, problems) = render(&status(now), now);
        assert!(
            text.contains("Camera desk: recording, 15.0 fps, 2.0 Mbit/s"),
            "{text}"
        );
        assert!(text.contains("REFUSED by op-1"), "{text}");
        assert!(text.contains("NOT connected to 10.0.0.1:8883"), "{text}");
        let all = problems.join("\n");
        assert!(
            all.contains("camera boxes is not recording (LOST: connection refused)"),
            "{all}"
        );
        assert!(all.contains("voting booth visible"), "{all}");
        assert!(all.contains("3 messages wait"), "{all}");
        assert_eq!(problems.len(), 3, "{all}");
        // An old file: the agent is not running.
        let later = now.saturating_add_ms(120_000);
        let (_, problems) = render(&status(now), later);
        assert!(
            problems.iter().any(|p| p.contains("not running")),
            "{problems:?}"
        );
    }

    #[test]
    fn written_and_read_back_readable_by_the_group_only() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let s = status(Timestamp::now());
        write(dir.path(), &s).unwrap();
        write(dir.path(), &s).unwrap();
        let back = read(dir.path()).unwrap();
        assert_eq!(back.broker.outbox, 3);
        let mode = std::fs::metadata(path(dir.path()))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o640);
        std::fs::write(path(dir.path()), b"{").unwrap();
        assert!(read(dir.path()).unwrap_err().contains("not a status file"));
        let e = read(&dir.path().join("nowhere")).unwrap_err();
        assert!(e.contains("does not exist"), "{e}");
    }
}
