//! `live-gateway`: run the live gateway, or check its config.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use stationwatch_gateway::{Gateway, GatewayConfig};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "live-gateway",
    version,
    about = "Stationwatch live gateway: SRT in, HLS out"
)]
struct Cli {
    /// Log as JSON lines instead of key=value text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Writes the manual pages (one per subcommand) into DIR (used by scripts/package).
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Run until SIGTERM or Ctrl-C.
    Run {
        #[arg(long, default_value = "/etc/stationwatch/gateway.toml")]
        config: PathBuf,
    },
    /// Validate the config file and report every problem at once; starts nothing.
    Check {
        #[arg(long, default_value = "/etc/stationwatch/gateway.toml")]
        config: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    stationwatch_runtime::logging::init(cli.log_json);
    match cli.command {
        Cmd::Man { dir } => {
            use clap::CommandFactory;
            for f in stationwatch_runtime::man::write_pages(Cli::command(), &dir)? {
                println!("{}", f.display());
            }
            Ok(())
        }
        Cmd::Check { config } => {
            let cfg = GatewayConfig::load(&config)?;
            gst::init().context("GStreamer")?;
            let mut missing = Vec::new();
            for e in [
                "decodebin",
                "videoconvert",
                "videoscale",
                "x264enc",
                "h264parse",
                "mpegtsmux",
                "appsrc",
                "appsink",
            ] {
                if gst::ElementFactory::find(e).is_none() {
                    missing.push(e);
                }
            }
            if cfg.public.enabled && !missing.is_empty() {
                anyhow::bail!(
                    "{}: public copies need GStreamer elements that are not installed: {}",
                    config.display(),
                    missing.join(", ")
                );
            }
            if let Err(e) = std::fs::read_to_string(&cfg.controller.token_file) {
                anyhow::bail!(
                    "{}: controller.token_file {}: {e}",
                    config.display(),
                    cfg.controller.token_file.display()
                );
            }
            println!("{}: OK", config.display());
            Ok(())
        }
        Cmd::Run { config } => {
            let cfg = GatewayConfig::load(&config)?;
            let rt = tokio::runtime::Runtime::new().context("tokio runtime")?;
            rt.block_on(async move {
                let gw = Gateway::start(cfg)?;
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                        .context("SIGTERM handler")?;
                tokio::select! {
                    _ = term.recv() => info!("SIGTERM"),
                    _ = tokio::signal::ctrl_c() => info!("SIGINT"),
                }
                let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
                tokio::task::spawn_blocking(move || gw.stop())
                    .await
                    .context("stopping")?;
                anyhow::Ok(())
            })
        }
    }
}
