//! `station-controller`: run the controller, check its config, manage users.

use std::io::BufRead;
use std::path::PathBuf;

use anyhow::{bail, Context};
use clap::{Parser, Subcommand};
use station_controller::auth::Role;
use station_controller::store::Store;
use station_controller::{Controller, ControllerConfig};
use tracing::info;

#[derive(Parser)]
#[command(
    name = "station-controller",
    version,
    about = "Stationwatch central controller"
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
    /// Run until SIGTERM or Ctrl-C.
    Run {
        #[arg(long)]
        config: PathBuf,
    },
    /// Validate the config file and report every problem at once; starts nothing.
    Check {
        #[arg(long)]
        config: PathBuf,
    },
    /// Create a user; the password is read from standard input (one line).
    UserAdd {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        username: String,
        /// admin, operator or observer
        #[arg(long)]
        role: String,
        /// Stations an observer may see (repeat the option).
        #[arg(long = "grant")]
        grants: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    stationwatch_runtime::logging::init(cli.log_json);
    match cli.command {
        Cmd::Check { config } => {
            ControllerConfig::load(&config)?;
            eprintln!("{}: OK", config.display());
            Ok(())
        }
        Cmd::Run { config } => run(ControllerConfig::load(&config)?).await,
        Cmd::UserAdd {
            config,
            username,
            role,
            grants,
        } => {
            let cfg = ControllerConfig::load(&config)?;
            let role = Role::from_name(&role)
                .with_context(|| format!("role {role:?}: expected admin, operator or observer"))?;
            let mut password = String::new();
            std::io::stdin().lock().read_line(&mut password)?;
            let password = password.trim_end_matches(['\n', '\r']);
            let store = Store::connect(&cfg.database).await?;
            let id =
                station_controller::auth::create_user(&store, &username, password, role).await?;
            if !grants.is_empty() {
                if role != Role::Observer {
                    bail!(
                        "--grant is for observers; {} sees every station",
                        role.name()
                    );
                }
                store.set_grants(id, &grants).await?;
            }
            store
                .audit(
                    station_controller::now_ms(),
                    "cli",
                    "user_create",
                    &username,
                    role.name(),
                    true,
                )
                .await?;
            store.close().await;
            eprintln!("user {username} ({}) created", role.name());
            Ok(())
        }
    }
}

async fn run(cfg: ControllerConfig) -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    let controller = Controller::start(cfg).await?;
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
    info!("stopping");
    let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
    controller.stop().await;
    Ok(())
}
