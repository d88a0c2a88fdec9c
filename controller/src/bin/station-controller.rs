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
    /// Writes the manual pages (one per subcommand) into DIR (used by scripts/package).
    #[command(hide = true)]
    Man { dir: PathBuf },
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
    /// Print a station's SRT passphrase for the live gateways (what its agent's live_target
    /// carries: srt://GATEWAY:9710?streamid=STATION/CAMERA&passphrase=...); creates the live
    /// secret at `[live] secret_file` if it does not exist yet.
    LivePassphrase {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        station: String,
    },
    /// Print the controller's public key (what verifiers pass as --controller-key); creates the
    /// key at `[trust] key_file` if it does not exist yet.
    Key {
        #[arg(long)]
        config: PathBuf,
    },
    /// Register a station's public key (before election day). Replacing a registered key is a
    /// rotation and needs --rotate; both are recorded in the audit log.
    KeyRegister {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        station: String,
        /// 64 hex characters, or a file holding them or an SPKI PEM (`station-agent key`).
        #[arg(long)]
        key: String,
        /// Retire the registered key and register this one.
        #[arg(long)]
        rotate: bool,
    },
    /// Creates a one-time enrollment code for a station (printed once; only its hash is kept).
    /// On the device: `station-agent enroll --controller URL --code CODE`.
    EnrollCode {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        station: String,
        /// How long it stays valid (default `[enroll] code_ttl_hours`).
        #[arg(long)]
        ttl_hours: Option<i64>,
    },
    /// Lists the enrollment codes still open and those of the last two weeks (used, expired,
    /// revoked), one per line: id, station, state, who made it, until when.
    EnrollCodes {
        #[arg(long)]
        config: PathBuf,
    },
    /// Revokes an open enrollment code (its id from `enroll-codes` or the dashboard): refused
    /// from now on. Audited.
    EnrollRevoke {
        #[arg(long)]
        config: PathBuf,
        #[arg(long)]
        id: String,
    },
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
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
            ControllerConfig::load(&config)?;
            eprintln!("{}: OK", config.display());
            Ok(())
        }
        Cmd::Run { config } => run(ControllerConfig::load(&config)?).await,
        Cmd::LivePassphrase { config, station } => {
            let cfg = ControllerConfig::load(&config)?;
            let Some(live) = &cfg.live else {
                bail!(
                    "{}: no [live] section: live viewing is not configured",
                    config.display()
                );
            };
            let station =
                station_controller::protocol::StationId::new(station).context("--station")?;
            let live = station_controller::live::Live::load(live)?;
            println!("{}", live.passphrase(&station));
            Ok(())
        }
        Cmd::Key { config } => {
            let cfg = ControllerConfig::load(&config)?;
            let key = station_controller::keys::load_or_create_key(&cfg.trust.key_file)?;
            println!("{}", key.public());
            eprintln!(
                "fingerprint {} ({})",
                key.public().fingerprint(),
                cfg.trust.key_file.display()
            );
            Ok(())
        }
        Cmd::EnrollCode {
            config,
            station,
            ttl_hours,
        } => {
            let cfg = ControllerConfig::load(&config)?;
            let station = station_controller::protocol::StationId::new(station)?;
            let store = Store::connect(&cfg.database).await?;
            let code = station_controller::enroll::create(
                &store,
                cfg.enroll.as_ref(),
                &cli_admin(),
                &station,
                ttl_hours.map(|h| h.saturating_mul(3_600_000)),
                station_controller::now_ms(),
            )
            .await;
            store.close().await;
            let code = code?;
            println!("{}", code.code);
            eprintln!(
                "one-time enrollment code for station {}, valid until {} (Unix ms)",
                code.station, code.expires_at
            );
            Ok(())
        }
        Cmd::EnrollCodes { config } => {
            let cfg = ControllerConfig::load(&config)?;
            let store = Store::connect(&cfg.database).await?;
            let now = station_controller::now_ms();
            let codes = station_controller::enroll::list(&store, &cli_admin(), now).await;
            store.close().await;
            for c in codes? {
                let state = match (c.used_at, c.revoked_at) {
                    (Some(_), _) => format!("used (key {})", c.used_key.as_deref().unwrap_or("?")),
                    (None, Some(_)) => {
                        format!("revoked by {}", c.revoked_by.as_deref().unwrap_or("?"))
                    }
                    (None, None) if c.expires_at < now => "expired".into(),
                    (None, None) => "open".into(),
                };
                println!(
                    "{}  {}  {}  by {}  until {}",
                    c.id,
                    c.station,
                    state,
                    c.created_by,
                    chrono::DateTime::from_timestamp_millis(c.expires_at)
                        .map(|t| t.format("%Y-%m-%d %H:%M UTC").to_string())
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Cmd::EnrollRevoke { config, id } => {
            let cfg = ControllerConfig::load(&config)?;
            let store = Store::connect(&cfg.database).await?;
            let done = station_controller::enroll::revoke(
                &store,
                &cli_admin(),
                id.trim(),
                station_controller::now_ms(),
            )
            .await;
            store.close().await;
            let station = done?;
            eprintln!("enrollment code for station {station} revoked");
            Ok(())
        }
        Cmd::KeyRegister {
            config,
            station,
            key,
            rotate,
        } => {
            use station_controller::store::Registered;
            let cfg = ControllerConfig::load(&config)?;
            let station = station_controller::protocol::StationId::new(station)?;
            let text = if std::path::Path::new(&key).is_file() {
                std::fs::read_to_string(&key).with_context(|| format!("reading {key}"))?
            } else {
                key
            };
            let key = station_controller::protocol::manifest::PublicKey::from_text(&text)
                .context("--key")?;
            let store = Store::connect(&cfg.database).await?;
            let fleet = station_controller::fleet::Fleet::new(cfg.rules.clone());
            let outcome = station_controller::keys::register(
                &store,
                &fleet,
                &station,
                &key,
                "cli",
                rotate,
                station_controller::now_ms(),
            )
            .await?;
            store.close().await;
            let fpr = key.fingerprint();
            match outcome {
                Registered::New => eprintln!("{station}: key {fpr} registered"),
                Registered::Rotated { old } => {
                    eprintln!("{station}: key {old} retired, key {fpr} registered")
                }
                Registered::Same => eprintln!("{station}: key {fpr} was already registered"),
                Registered::NeedsRotate { current } => {
                    bail!("{station} has key {current}; replacing it is a rotation: add --rotate")
                }
            }
            Ok(())
        }
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

/// Who the command line acts as (audited as "cli"): whoever can read the config and reach the
/// database is the controller's operator.
fn cli_admin() -> station_controller::auth::User {
    station_controller::auth::User {
        id: 0,
        username: "cli".into(),
        role: station_controller::auth::Role::Admin,
        grants: None,
    }
}
