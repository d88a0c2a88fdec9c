//! `gateway.toml` (`config/gateway.toml` is the commented reference): read with the shared
//! walker, so every problem is reported at once, naming the file and the key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use stationwatch_protocol::config_reader::ConfigError;
use stationwatch_protocol::config_reader::{join, parse_config, read_file, TomlReader};

#[derive(Debug, Clone)]
pub struct GatewayConfig {
    pub file: PathBuf,
    /// This gateway's name, in logs and `status.json`.
    pub name: String,
    pub srt: SrtConfig,
    /// RTMP publishers (`[rtmp] listen`); `None`: not accepted.
    pub rtmp: Option<SocketAddr>,
    pub hls: HlsConfig,
    pub controller: ControllerLink,
    pub public: PublicConfig,
}

#[derive(Debug, Clone)]
pub struct SrtConfig {
    pub listen: SocketAddr,
    /// Receiver latency (SRT's buffer for retransmissions).
    pub latency: Duration,
    /// Streams at once; callers beyond are refused.
    pub max_streams: usize,
}

#[derive(Debug, Clone)]
pub struct HlsConfig {
    /// The root the controller (or a web server) serves: `private/…` and `public/…` below it.
    pub dir: PathBuf,
    pub segment_seconds: f64,
    pub playlist_segments: usize,
    /// Where the gateway keeps its own state (the cached station list).
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct ControllerLink {
    pub url: url::Url,
    pub token_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    pub refresh: Duration,
}

#[derive(Debug, Clone)]
pub struct PublicConfig {
    /// Publish masked copies of public cameras.
    pub enabled: bool,
    /// Width of the public stream (height follows the picture's shape).
    pub width: u32,
    pub kbps: u32,
}

impl GatewayConfig {
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        let text = read_file(file)?;
        Self::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Self, ConfigError> {
        parse_config(file, text, |root| {
            let mut r = TomlReader::default();
            let cfg = walk(&mut r, root, file);
            (cfg, r.problems)
        })
    }
}

fn walk(r: &mut TomlReader, root: &toml::Table, file: &Path) -> Option<GatewayConfig> {
    r.unknown_keys(
        root,
        "",
        &["name", "srt", "rtmp", "hls", "controller", "public"],
    );
    let name = r
        .string(root, "", "name", false)
        .unwrap_or_else(|| "gateway".into());

    let t = r.optional_section(root, "srt", &["listen", "latency_ms", "max_streams"]);
    let listen = r
        .string(t, "srt", "listen", false)
        .unwrap_or_else(|| "0.0.0.0:9710".into());
    let listen = match listen.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(e) => {
            r.problem(
                join("srt", "listen"),
                format!("{listen:?} is not an address:port ({e})"),
            );
            None
        }
    };
    let latency = r.int(t, "srt", "latency_ms", 20..=8000, 250);
    let t = r.optional_section(root, "rtmp", &["listen"]);
    let rtmp = match r.string(t, "rtmp", "listen", false).as_deref() {
        None => Some(Some(SocketAddr::from(([0, 0, 0, 0], 1935)))),
        Some("") | Some("off") => Some(None),
        Some(a) => match a.parse::<SocketAddr>() {
            Ok(a) => Some(Some(a)),
            Err(e) => {
                r.problem(
                    join("rtmp", "listen"),
                    format!("{a:?} is not an address:port or \"off\" ({e})"),
                );
                None
            }
        },
    };
    let max_streams = r.int(t, "srt", "max_streams", 1..=100_000, 2000);

    let t = r.optional_section(
        root,
        "hls",
        &["dir", "segment_seconds", "playlist_segments", "state_dir"],
    );
    let dir = abs_dir(r, t, "hls", "dir", "/var/lib/stationwatch-gateway/hls");
    let state_dir = abs_dir(r, t, "hls", "state_dir", "/var/lib/stationwatch-gateway");
    let segment_seconds = r.number(t, "hls", "segment_seconds", 0.5..=10.0, 2.0);
    let playlist_segments = r.int(t, "hls", "playlist_segments", 3..=60, 6);

    let c = r.table(root, "", "controller", true);
    let empty = toml::Table::new();
    let c = c.unwrap_or(&empty);
    r.unknown_keys(
        c,
        "controller",
        &["url", "token_file", "ca_file", "refresh_seconds"],
    );
    let url = r
        .string(c, "controller", "url", true)
        .and_then(|u| match url::Url::parse(&u) {
            Ok(u) if matches!(u.scheme(), "http" | "https") => Some(u),
            Ok(_) => {
                r.problem(
                    join("controller", "url"),
                    "must be an http:// or https:// URL",
                );
                None
            }
            Err(e) => {
                r.problem(join("controller", "url"), format!("not a URL: {e}"));
                None
            }
        });
    if !c.contains_key("token_file") && !c.is_empty() {
        r.problem(join("controller", "token_file"), "missing required key");
    }
    let token_file = r.file(c, "controller", "token_file", false);
    let ca_file = r.file(c, "controller", "ca_file", false);
    let refresh = r.int(c, "controller", "refresh_seconds", 2..=3600, 30);

    let t = r.optional_section(root, "public", &["enabled", "width", "kbps"]);
    let enabled = r.bool(t, "public", "enabled", true);
    let width = r.int(t, "public", "width", 160..=1920, 640);
    let kbps = r.int(t, "public", "kbps", 100..=8000, 600);

    Some(GatewayConfig {
        file: file.to_owned(),
        name,
        srt: SrtConfig {
            listen: listen?,
            latency: Duration::from_millis(latency? as u64),
            max_streams: max_streams? as usize,
        },
        rtmp: rtmp?,
        hls: HlsConfig {
            dir: dir?,
            segment_seconds: segment_seconds?,
            playlist_segments: playlist_segments? as usize,
            state_dir: state_dir?,
        },
        controller: ControllerLink {
            url: url?,
            token_file: token_file?,
            ca_file,
            refresh: Duration::from_secs(refresh? as u64),
        },
        public: PublicConfig {
            enabled: enabled?,
            width: (width? as u32) & !1,
            kbps: kbps? as u32,
        },
    })
}

fn abs_dir(
    r: &mut TomlReader,
    t: &toml::Table,
    path: &str,
    key: &str,
    default: &str,
) -> Option<PathBuf> {
    let d = PathBuf::from(
        r.string(t, path, key, false)
            .unwrap_or_else(|| default.into()),
    );
    if d.is_absolute() {
        Some(d)
    } else {
        r.problem(
            join(path, key),
            format!("{} must be an absolute path", d.display()),
        );
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_every_problem_named() {
        let f = Path::new("/etc/stationwatch/gateway.toml");
        let c = GatewayConfig::parse(
            f,
            "[controller]\nurl = \"https://c.example/\"\ntoken_file = \"/etc/stationwatch/gateway.token\"\n",
        )
        .unwrap();
        assert_eq!(c.srt.listen.port(), 9710);
        assert_eq!(c.hls.playlist_segments, 6);
        assert!(c.public.enabled);

        let e = GatewayConfig::parse(
            f,
            "colour = 1\n[srt]\nlisten = \"nowhere\"\nlatency_ms = 5\n[hls]\ndir = \"rel\"\n[controller]\nurl = \"ftp://x\"\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "gateway.toml",
            "colour: unknown key",
            "srt.listen: \"nowhere\" is not an address:port",
            "srt.latency_ms: 5 is out of range",
            "hls.dir: rel must be an absolute path",
            "controller.url: must be an http:// or https:// URL",
            "controller.token_file: missing required key",
        ] {
            assert!(e.contains(needle), "{needle:?} not in {e}");
        }
        let e = GatewayConfig::parse(f, "").unwrap_err().to_string();
        assert!(e.contains("controller: missing required section"), "{e}");
    }

    #[test]
    fn the_reference_config_is_valid_and_holds_the_defaults() {
        let f = Path::new(env!("CARGO_MANIFEST_DIR")).join("../config/gateway.toml");
        let c = GatewayConfig::load(&f).unwrap();
        assert_eq!(c.srt.listen.port(), 9710);
        assert_eq!(c.srt.latency, Duration::from_millis(250));
        assert_eq!(c.hls.segment_seconds, 2.0);
        assert_eq!((c.public.width, c.public.kbps), (640, 600));
    }
}
