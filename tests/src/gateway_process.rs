//! The real `live-gateway` binary as a child process, with a config pointing at a controller.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result};

use crate::process::{cargo_bin, LoggedChild};

pub fn gateway_bin() -> Result<PathBuf> {
    cargo_bin("stationwatch-gateway", "live-gateway")
}

/// A running gateway. Dropping it kills the process.
pub struct GatewayProcess {
    pub child: LoggedChild,
    pub srt_port: u16,
    /// The RTMP port (on the same address as SRT), when the config has one.
    pub rtmp_port: Option<u16>,
    pub hls_dir: PathBuf,
    pub config: PathBuf,
}

impl GatewayProcess {
    /// Writes `<dir>/gateway.toml` (SRT on 127.0.0.1:`srt_port`, HLS into `hls_dir`, station
    /// list from `controller_url` with the token in `token_file`) and starts the gateway.
    pub fn start(
        dir: &Path,
        srt_port: u16,
        hls_dir: &Path,
        controller_url: &str,
        token_file: &Path,
        extra: &str,
    ) -> Result<GatewayProcess> {
        Self::start_in(
            &[],
            "127.0.0.1",
            dir,
            srt_port,
            hls_dir,
            controller_url,
            token_file,
            extra,
        )
    }

    /// Like [`GatewayProcess::start`], listening on `addr`, behind a command prefix (e.g. `ip
    /// netns exec NS`).
    #[allow(clippy::too_many_arguments)]
    pub fn start_in(
        prefix: &[String],
        addr: &str,
        dir: &Path,
        srt_port: u16,
        hls_dir: &Path,
        controller_url: &str,
        token_file: &Path,
        extra: &str,
    ) -> Result<GatewayProcess> {
        std::fs::create_dir_all(dir)?;
        let config = dir.join("gateway.toml");
        let rtmp_port = crate::free_port();
        std::fs::write(
            &config,
            format!(
                "name = \"gw-test\"\n{extra}\n[srt]\nlisten = \"{addr}:{srt_port}\"\n\n\
                 [rtmp]\nlisten = \"{addr}:{rtmp_port}\"\n\n\
                 [hls]\ndir = \"{}\"\nstate_dir = \"{}\"\nsegment_seconds = 1\n\n\
                 [controller]\nurl = \"{controller_url}\"\ntoken_file = \"{}\"\nrefresh_seconds = 2\n",
                hls_dir.display(),
                dir.join("state").display(),
                token_file.display()
            ),
        )?;
        Self::run_in(prefix, &config, srt_port, hls_dir)
    }

    /// Starts the gateway again on the same config (a restart).
    pub fn run(config: &Path, srt_port: u16, hls_dir: &Path) -> Result<GatewayProcess> {
        Self::run_in(&[], config, srt_port, hls_dir)
    }

    pub fn run_in(
        prefix: &[String],
        config: &Path,
        srt_port: u16,
        hls_dir: &Path,
    ) -> Result<GatewayProcess> {
        let mut cmd = match prefix.split_first() {
            Some((bin, rest)) => {
                let mut c = Command::new(bin);
                c.args(rest).arg(gateway_bin()?);
                c
            }
            None => Command::new(gateway_bin()?),
        };
        cmd.arg("run")
            .arg("--config")
            .arg(config)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null());
        let child = LoggedChild::spawn("live-gateway", cmd).context("starting live-gateway")?;
        child.wait_log("live gateway listening for SRT", Duration::from_secs(60))?;
        let rtmp_port = std::fs::read_to_string(config)
            .ok()
            .and_then(|t| t.parse::<toml::Table>().ok())
            .and_then(|t| {
                let l = t.get("rtmp")?.get("listen")?.as_str()?.to_owned();
                l.rsplit_once(':')?.1.parse().ok()
            });
        Ok(GatewayProcess {
            child,
            srt_port,
            rtmp_port,
            hls_dir: hls_dir.to_owned(),
            config: config.to_owned(),
        })
    }

    /// The folder of a camera's stream as the station sent it.
    pub fn private_dir(&self, station: &str, camera: &str) -> PathBuf {
        self.hls_dir.join("private").join(station).join(camera)
    }

    pub fn public_dir(&self, station: &str, camera: &str) -> PathBuf {
        self.hls_dir.join("public").join(station).join(camera)
    }

    pub fn log(&self) -> String {
        self.child.log()
    }
}

/// The media sequence of a playlist and the segment names it lists.
pub fn playlist(path: &Path) -> Option<(u64, Vec<String>, usize)> {
    let text = std::fs::read_to_string(path).ok()?;
    let seq = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .trim()
        .parse()
        .ok()?;
    let names = text
        .lines()
        .filter(|l| l.ends_with(".ts"))
        .map(str::to_owned)
        .collect();
    let disc = text
        .lines()
        .filter(|l| *l == "#EXT-X-DISCONTINUITY")
        .count();
    Some((seq, names, disc))
}
