//! The live-streaming keys of the config: per camera `live`, `live_target`, `live_sub_stream`,
//! `live_sub_kbps`, and the `[live]` section with the rung policy's numbers. Validated by the
//! same walker as the rest of the file (every problem at once, naming the key, never echoing a
//! URL that may hold a passphrase or a stream key).

use std::fmt;
use std::time::Duration;

use url::Url;

/// Per camera `live` setting: the wire's type; the config accepts `off`, `on` and `auto`, never
/// `Unknown`.
pub use stationwatch_protocol::mqtt::LiveSetting;

use super::{join, type_name, Reader};
use crate::config::source::CameraSource;

/// The policy's numbers (config `[live]`).
#[derive(Debug, Clone, PartialEq)]
pub struct PolicyConfig {
    /// A rung fits when the link carries its bitrate times `1 + margin`.
    pub margin: f64,
    /// Bad samples for this long drop the rung.
    pub down_after: Duration,
    /// A rung must hold this long before the next one is probed.
    pub up_after: Duration,
    /// How long a probed rung must stay good to be kept.
    pub probe_for: Duration,
    /// How long `off` (chosen by the policy) waits before probing `sub`.
    pub off_retry: Duration,
    /// Longest wait between probes after repeated failures.
    pub backoff_max: Duration,
    /// More video than this waiting in front of the sender is a bad sample.
    pub max_backlog: Duration,
    /// More than this fraction of packets lost or dropped is a bad sample.
    pub max_loss: f64,
    /// A new sender may take this long to connect before "not connected" counts as bad.
    pub start_grace: Duration,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        Self {
            margin: 0.25,
            down_after: Duration::from_secs(3),
            up_after: Duration::from_secs(60),
            probe_for: Duration::from_secs(10),
            off_retry: Duration::from_secs(30),
            backoff_max: Duration::from_secs(600),
            max_backlog: Duration::from_millis(1500),
            max_loss: 0.10,
            start_grace: Duration::from_secs(8),
        }
    }
}

/// Where a camera's live stream goes. The URL may hold secrets (SRT passphrase, RTMP stream
/// key): print it only through `Display`, which shows scheme, host and port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LiveTarget {
    /// `srt://host:port[?passphrase=…&streamid=…]`, always in caller mode.
    Srt(Url),
    /// `rtmp://host[:port]/app/key` (H.264 only).
    Rtmp(Url),
}

impl LiveTarget {
    pub fn parse(s: &str) -> Result<Self, String> {
        let url = Url::parse(s).map_err(|e| format!("not a valid URL: {e}"))?;
        if url.host_str().is_none_or(str::is_empty) {
            return Err("live target has no host".into());
        }
        match url.scheme() {
            "srt" => {
                if url.port().is_none() {
                    return Err("srt:// target needs a port (srt://HOST:PORT)".into());
                }
                if let Some((_, mode)) = url.query_pairs().find(|(k, _)| k == "mode") {
                    if mode != "caller" {
                        return Err(format!(
                            "the agent calls its live target: mode {mode:?} is not supported (use caller)"
                        ));
                    }
                }
                Ok(LiveTarget::Srt(url))
            }
            "rtmp" | "rtmps" => Ok(LiveTarget::Rtmp(url)),
            other => Err(format!(
                "unsupported scheme {other:?}; expected srt://HOST:PORT or rtmp://HOST/APP/KEY"
            )),
        }
    }

    pub fn url(&self) -> &Url {
        match self {
            LiveTarget::Srt(u) | LiveTarget::Rtmp(u) => u,
        }
    }
}

/// `srt://host:port` or `rtmp://host:port/…`: never the query or the path (stream key).
impl fmt::Display for LiveTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let u = self.url();
        write!(f, "{}://{}", u.scheme(), u.host_str().unwrap_or(""))?;
        if let Some(p) = u.port() {
            write!(f, ":{p}")?;
        }
        if matches!(self, LiveTarget::Rtmp(_)) {
            f.write_str("/…")?;
        }
        Ok(())
    }
}

/// A camera's live settings (absent when the camera has no `live_target`).
#[derive(Debug, Clone, PartialEq)]
pub struct CameraLiveConfig {
    pub mode: LiveSetting,
    pub target: LiveTarget,
    /// RTSP cameras: the sub-stream for the lighter rung (opened only while that rung runs).
    pub sub_stream: Option<CameraSource>,
    /// Bitrate of the lighter rung: the encode bitrate for sources the agent encodes, the
    /// expected bitrate of the sub-stream for RTSP cameras.
    pub sub_kbps: u32,
}

/// The `[live]` section: the rung policy and the sender.
#[derive(Debug, Clone, PartialEq)]
pub struct LiveConfig {
    pub policy: PolicyConfig,
    /// SRT latency (receiver buffer), milliseconds.
    pub srt_latency_ms: u32,
    /// The station's live passphrase (`passphrase_file`, written by `station-agent enroll`):
    /// used for every `srt://` live target without a passphrase of its own. Read when a sender
    /// starts, so a new passphrase needs no restart.
    pub passphrase_file: Option<std::path::PathBuf>,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            policy: PolicyConfig::default(),
            srt_latency_ms: 250,
            passphrase_file: None,
        }
    }
}

/// SRT accepts passphrases of 10 to 79 characters.
pub const PASSPHRASE_LEN: std::ops::RangeInclusive<usize> = 10..=79;

/// Reads a passphrase file: its first line, trimmed; the error says what is wrong (never the
/// passphrase).
pub fn read_passphrase(file: &std::path::Path) -> Result<String, String> {
    let text = std::fs::read_to_string(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let p = text.lines().next().unwrap_or("").trim().to_owned();
    if !PASSPHRASE_LEN.contains(&p.len()) {
        return Err(format!(
            "{}: an SRT passphrase has 10 to 79 characters, this one has {}",
            file.display(),
            p.len()
        ));
    }
    Ok(p)
}

pub(super) const CAMERA_KEYS: [&str; 4] =
    ["live", "live_target", "live_sub_stream", "live_sub_kbps"];

impl Reader {
    pub(super) fn live_section(
        &mut self,
        root: &toml::Table,
        check_machine: bool,
    ) -> Option<LiveConfig> {
        let p = "live";
        let t = self.optional_section(
            root,
            p,
            &[
                "margin_percent",
                "step_down_seconds",
                "step_up_after_seconds",
                "probe_seconds",
                "off_retry_seconds",
                "probe_backoff_max_seconds",
                "max_backlog_ms",
                "max_loss_percent",
                "srt_latency_ms",
                "passphrase_file",
            ],
        );
        let d = LiveConfig::default();
        let dp = &d.policy;
        let secs = |d: Duration| d.as_secs() as i64;
        let margin = self.int(t, p, "margin_percent", 0..=300, (dp.margin * 100.0) as i64);
        let down = self.int(t, p, "step_down_seconds", 1..=30, secs(dp.down_after));
        let up = self.int(t, p, "step_up_after_seconds", 2..=86_400, secs(dp.up_after));
        let probe = self.int(t, p, "probe_seconds", 2..=600, secs(dp.probe_for));
        let off = self.int(t, p, "off_retry_seconds", 2..=86_400, secs(dp.off_retry));
        let backoff = self.int(
            t,
            p,
            "probe_backoff_max_seconds",
            5..=86_400,
            secs(dp.backoff_max),
        );
        let backlog = self.int(
            t,
            p,
            "max_backlog_ms",
            200..=30_000,
            dp.max_backlog.as_millis() as i64,
        );
        let loss = self.int(
            t,
            p,
            "max_loss_percent",
            1..=90,
            (dp.max_loss * 100.0) as i64,
        );
        let latency = self.int(t, p, "srt_latency_ms", 20..=8_000, d.srt_latency_ms as i64);
        let passphrase_file = match t.get("passphrase_file") {
            None => Some(None),
            Some(_) => {
                let f = self.file(t, p, "passphrase_file", check_machine);
                match (&f, check_machine) {
                    (Some(file), true) => match read_passphrase(file) {
                        Ok(_) => Some(f),
                        Err(e) => {
                            self.problem(join(p, "passphrase_file"), e);
                            None
                        }
                    },
                    (Some(_), false) => Some(f),
                    (None, _) => None,
                }
            }
        };
        Some(LiveConfig {
            policy: PolicyConfig {
                margin: margin? as f64 / 100.0,
                down_after: Duration::from_secs(down? as u64),
                up_after: Duration::from_secs(up? as u64),
                probe_for: Duration::from_secs(probe? as u64),
                off_retry: Duration::from_secs(off? as u64),
                backoff_max: Duration::from_secs(backoff? as u64),
                max_backlog: Duration::from_millis(backlog? as u64),
                max_loss: loss? as f64 / 100.0,
                start_grace: dp.start_grace,
            },
            srt_latency_ms: latency? as u32,
            passphrase_file: passphrase_file?,
        })
    }

    /// The live keys of one camera. `Some(None)`: no live target; `None`: a problem.
    pub(super) fn camera_live(
        &mut self,
        t: &toml::Table,
        path: &str,
        source: Option<&CameraSource>,
    ) -> Option<Option<CameraLiveConfig>> {
        let mode = match t.get("live") {
            None => Some(LiveSetting::Off),
            Some(toml::Value::String(s)) => match s.as_str() {
                "off" => Some(LiveSetting::Off),
                "on" => Some(LiveSetting::On),
                "auto" => Some(LiveSetting::Auto),
                other => {
                    self.problem(
                        join(path, "live"),
                        format!("{other:?} is not a live mode (off, on or auto)"),
                    );
                    None
                }
            },
            Some(v) => {
                self.problem(
                    join(path, "live"),
                    format!("must be a string (off, on or auto), found {}", type_name(v)),
                );
                None
            }
        };
        let target =
            self.string(t, path, "live_target", false)
                .and_then(|s| match LiveTarget::parse(&s) {
                    Ok(target) => Some(target),
                    Err(e) => {
                        // Never echo the URL: it may hold a passphrase or a stream key.
                        self.problem(join(path, "live_target"), e);
                        None
                    }
                });
        let sub = self
            .string(t, path, "live_sub_stream", false)
            .and_then(|s| match CameraSource::parse(&s) {
                Ok(src @ CameraSource::Rtsp(_)) => Some(src),
                Ok(_) => {
                    self.problem(
                        join(path, "live_sub_stream"),
                        "must be an rtsp:// URL (the camera's sub-stream)",
                    );
                    None
                }
                Err(e) => {
                    self.problem(join(path, "live_sub_stream"), e.to_string());
                    None
                }
            });
        let sub_kbps = self.int(t, path, "live_sub_kbps", 64..=20_000, 500);
        let mode = mode?;
        let sub_kbps = sub_kbps? as u32;
        if let (Some(src), true) = (source, t.contains_key("live_sub_stream")) {
            if src.is_encoded_by_agent() {
                self.problem(
                    join(path, "live_sub_stream"),
                    "only applies to rtsp:// cameras; the agent encodes the lighter stream of \
                     test and /dev/videoN sources itself (live_sub_kbps)",
                );
                return None;
            }
        }
        match target {
            // An H.265 camera with an rtmp:// target fails at run time with a clear reason in
            // health (FLV carries H.264 only).
            Some(target) => Some(Some(CameraLiveConfig {
                mode,
                target,
                sub_stream: sub,
                sub_kbps,
            })),
            None if t.contains_key("live_target") => None,
            None if mode != LiveSetting::Off => {
                self.problem(
                    join(path, "live_target"),
                    format!(
                        "required with live = {:?} (srt://HOST:PORT or rtmp://HOST/APP/KEY)",
                        mode.as_str()
                    ),
                );
                None
            }
            None if t.contains_key("live_sub_stream") => {
                self.problem(
                    join(path, "live_sub_stream"),
                    "has no effect without live_target",
                );
                None
            }
            None => Some(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::super::AgentConfig;
    use super::*;

    const BASE: &str = "[station]\nid = \"KG-0042\"\n[storage]\npath = \"/var/lib/sw\"\n";

    fn parse(text: &str) -> Result<AgentConfig, super::super::ConfigError> {
        AgentConfig::parse(
            Path::new("/etc/stationwatch/agent.toml"),
            &format!("{BASE}{text}"),
            false,
        )
    }

    #[test]
    fn live_keys_load_with_defaults() {
        let c = parse(
            "[[camera]]\nid = \"desk\"\nsource = \"test\"\nlive = \"auto\"\n\
             live_target = \"srt://192.0.2.7:9000?passphrase=0123456789ab\"\n\
             [[camera]]\nid = \"hall\"\nsource = \"rtsp://192.0.2.10/main\"\n\
             live_target = \"rtmp://live.example.org/app/streamkey\"\n\
             live_sub_stream = \"rtsp://192.0.2.10/sub\"\nlive_sub_kbps = 300\n",
        )
        .unwrap();
        let desk = c.cameras[0].live.as_ref().unwrap();
        assert_eq!(desk.mode, LiveSetting::Auto);
        assert_eq!(desk.sub_kbps, 500);
        assert_eq!(desk.target.to_string(), "srt://192.0.2.7:9000");
        let hall = c.cameras[1].live.as_ref().unwrap();
        assert_eq!(
            hall.mode,
            LiveSetting::Off,
            "a target alone does not stream"
        );
        assert_eq!(hall.target.to_string(), "rtmp://live.example.org/…");
        assert!(hall.sub_stream.is_some());
        assert_eq!(c.live, LiveConfig::default());
        assert_eq!(c.live.policy.down_after, Duration::from_secs(3));
    }

    #[test]
    fn reference_config_documents_the_live_defaults() {
        let text = include_str!("../../../config/agent.toml");
        let c = AgentConfig::parse(Path::new("agent.toml"), text, false).expect("valid");
        assert_eq!(
            c.live,
            LiveConfig::default(),
            "the reference shows the defaults"
        );
        let desk = c.cameras[0].live.as_ref().expect("desk streams");
        assert_eq!((desk.mode, desk.sub_kbps), (LiveSetting::Auto, 500));
        assert!(desk.sub_stream.is_some());
        let boxes = c.cameras[1].live.as_ref().expect("boxes streams");
        assert!(matches!(boxes.target, LiveTarget::Rtmp(_)));
    }

    #[test]
    fn the_station_passphrase_file_is_checked_and_never_echoed() {
        let dir = tempfile::tempdir().unwrap();
        let short = dir.path().join("short");
        std::fs::write(&short, "hunter2\n").unwrap();
        let good = dir.path().join("good");
        std::fs::write(&good, "0123456789abcdef0123456789abcdef\n").unwrap();
        let text = |f: &std::path::Path| {
            format!(
                "[station]\nid = \"S-1\"\n[storage]\npath = \"{}\"\n[mqtt]\nurl = \"mqtt://127.0.0.1:1883\"\n\
                 [live]\npassphrase_file = \"{}\"\n\
                 [[camera]]\nid = \"desk\"\nsource = \"test\"\n",
                dir.path().display(),
                f.display()
            )
        };
        let c = AgentConfig::parse(Path::new("agent.toml"), &text(&good), true).unwrap();
        assert_eq!(c.live.passphrase_file.as_deref(), Some(good.as_path()));
        assert_eq!(
            read_passphrase(&good).unwrap(),
            "0123456789abcdef0123456789abcdef"
        );
        for bad in [short.clone(), dir.path().join("missing")] {
            let e = AgentConfig::parse(Path::new("agent.toml"), &text(&bad), true).unwrap_err();
            let msg = e.to_string();
            assert!(msg.contains("live.passphrase_file"), "{msg}");
            assert!(!msg.contains("hunter2"), "{msg}");
        }
    }

    #[test]
    fn live_problems_name_the_key_and_never_echo_secrets() {
        let err = parse(
            "[live]\nmargin_percent = -1\nprobe_seconds = \"long\"\nspeed = 1\n\
             [[camera]]\nid = \"a\"\nsource = \"test\"\nlive = \"always\"\n\
             live_target = \"srt://192.0.2.7:9000?passphrase=topsecret1234&mode=listener\"\n\
             [[camera]]\nid = \"b\"\nsource = \"test\"\nlive = \"on\"\n\
             [[camera]]\nid = \"c\"\nsource = \"test\"\nlive = \"auto\"\n\
             live_target = \"http://x/streamkey-secret\"\nlive_sub_stream = \"rtsp://192.0.2.1/s\"\n\
             [[camera]]\nid = \"d\"\nsource = \"rtsp://192.0.2.1/m\"\nlive = \"on\"\n\
             live_target = \"srt://192.0.2.7\"\nlive_sub_kbps = 1\n",
        )
        .unwrap_err();
        let keys: Vec<&str> = err.problems().iter().map(|p| p.key.as_str()).collect();
        for k in [
            "live.margin_percent",
            "live.probe_seconds",
            "live.speed",
            "camera[0].live",
            "camera[0].live_target",
            "camera[1].live_target",
            "camera[2].live_target",
            "camera[2].live_sub_stream",
            "camera[3].live_target",
            "camera[3].live_sub_kbps",
        ] {
            assert!(
                keys.contains(&k),
                "missing problem for {k}: {keys:?}\n{err}"
            );
        }
        let msg = err.to_string();
        assert!(msg.contains("\"always\" is not a live mode"), "{msg}");
        assert!(msg.contains("mode \"listener\" is not supported"), "{msg}");
        assert!(msg.contains("needs a port"), "{msg}");
        assert!(!msg.contains("topsecret"), "{msg}");
        assert!(!msg.contains("streamkey-secret"), "{msg}");
    }
}
