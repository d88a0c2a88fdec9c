//! `station-agent`: the polling-station daemon and its technician commands.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use station_agent::AgentConfig;
use stationwatch_verify::cli::{VerifyArgs, VERDICT_HELP};
use tokio_util::sync::CancellationToken;

#[derive(Parser)]
#[command(
    name = "station-agent",
    version,
    about = "Stationwatch polling-station agent"
)]
struct Cli {
    /// Log as JSON lines instead of key=value text.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Writes the manual pages (one per subcommand) into DIR (used by scripts/package).
    #[command(hide = true)]
    Man { dir: PathBuf },
    /// Record the configured cameras until SIGTERM.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Validate a config file and the machine (storage, devices, GStreamer plugins), start nothing.
    Check {
        #[arg(long, short)]
        config: PathBuf,
        /// Also connect to every camera and report what it sends (as `probe` does).
        #[arg(long)]
        probe: bool,
    },
    /// Connect to a camera (rtsp://…, or a USB camera /dev/videoN) and report codec and
    /// profile, resolution, frame rate, keyframe interval, bitrate and audio (a USB camera: the
    /// formats it offers and gives), with warnings for what will hurt recording or viewing;
    /// saves a snapshot. Never prints credentials. Exit status 1 when it cannot connect or sees
    /// no video.
    Probe {
        /// The camera, e.g. rtsp://user:password@10.0.0.5/stream1
        source: String,
        /// How long to watch the stream, seconds.
        #[arg(long, default_value_t = 6.0)]
        seconds: f64,
        /// Where to save a JPEG of the last keyframe.
        #[arg(long, default_value = "probe.jpg")]
        snapshot: PathBuf,
    },
    /// Print the station's public key and fingerprint (generating the key if it does not exist).
    Key {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Verify recordings offline against keys and witnesses from outside the station: hashes,
    /// chain, signatures, witnessed heads, foreign files and the coverage of a time window.
    /// Ends with one verdict; its exit status is listed below.
    #[command(after_help = VERDICT_HELP)]
    Verify(VerifyArgs),
    /// Enroll this station with a one-time code an admin created: registers the station's
    /// key with the controller (generating it if needed), receives the broker's URL, CA and
    /// this station's MQTT credentials, writes them where the config expects them
    /// (`[mqtt] url`, `username`, `password_file`, `ca_file`), then runs `check`. Nothing is
    /// written when the code is refused.
    Enroll {
        #[arg(long, short)]
        config: PathBuf,
        /// The controller, e.g. https://controller.example.org
        #[arg(long)]
        controller: url::Url,
        #[arg(long)]
        code: String,
        /// A CA (PEM) to trust for the controller's HTTPS, if it is not a public one.
        #[arg(long)]
        controller_ca: Option<PathBuf>,
    },
    /// What the running agent is doing now, for the technician on site (no network needed):
    /// each camera, the disk, the link to the controller, the view's approval, uploads, and the
    /// problems in plain words. Exit status 0: nothing wrong; 1: problems listed; 2: no status
    /// (the agent is not running, or the file cannot be read).
    Status {
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    stationwatch_runtime::logging::init(cli.log_json);
    let result = match cli.command {
        Command::Man { dir } => man(&dir),
        Command::Run { config } => run(&config),
        Command::Check { config, probe } => check(&config, probe),
        Command::Probe {
            source,
            seconds,
            snapshot,
        } => probe(&source, seconds, &snapshot),
        Command::Key { config } => key(&config),
        Command::Verify(args) => verify(&args),
        Command::Status { config } => status(&config),
        Command::Enroll {
            config,
            controller,
            code,
            controller_ca,
        } => enroll(&config, &controller, &code, controller_ca.as_deref()),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Loads the config, adding the checks that need GStreamer (installed plugins).
fn load(path: &std::path::Path) -> anyhow::Result<AgentConfig> {
    let config = AgentConfig::load(path)?;
    gst::init().context("GStreamer initialisation failed")?;
    let problems: Vec<String> = config
        .cameras
        .iter()
        .enumerate()
        .flat_map(|(i, c)| {
            station_agent::missing_elements(&c.source)
                .into_iter()
                .map(move |e| {
                    format!(
                        "{}: camera[{i}].source: GStreamer element {e:?} is not installed \
                     (Debian: gstreamer1.0-plugins-base/-good/-bad/-ugly)",
                        path.display()
                    )
                })
                .chain(
                    station_agent::live_required_elements(c)
                        .into_iter()
                        .filter(|e| gst::ElementFactory::find(e).is_none())
                        .map(move |e| {
                            format!(
                                "{}: camera[{i}].live_target: GStreamer element {e:?} is not \
                                 installed (Debian: gstreamer1.0-plugins-bad for srtsink and \
                                 rtmp2sink)",
                                path.display()
                            )
                        }),
                )
        })
        .collect();
    if !problems.is_empty() {
        anyhow::bail!(
            "config file {} cannot be used on this machine:\n  {}",
            path.display(),
            problems.join("\n  ")
        );
    }
    Ok(config)
}

fn man(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use clap::CommandFactory;
    for f in stationwatch_runtime::man::write_pages(Cli::command(), dir)? {
        println!("{}", f.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn probe(source: &str, seconds: f64, snapshot: &std::path::Path) -> anyhow::Result<ExitCode> {
    // A URL that does not parse is reported without echoing it (it may hold a password).
    let source = station_agent::config::source::CameraSource::parse(source)
        .map_err(|e| anyhow::anyhow!("not a camera source: {e}"))?;
    gst::init().context("GStreamer initialisation failed")?;
    match station_agent::probe::probe(&source, seconds.clamp(1.0, 120.0), Some(snapshot)) {
        Ok(r) => {
            print!("{r}");
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            println!("cannot probe: {e}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn check(path: &std::path::Path, probe: bool) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    println!(
        "{}: OK — station {}, {} camera(s), segments of {} s in {}",
        path.display(),
        config.station,
        config.cameras.len(),
        config.storage.segment.as_secs(),
        config.storage.path.display()
    );
    for c in &config.cameras {
        println!("  camera {}: {} ({})", c.id, c.source, c.source.kind());
    }
    if !probe {
        return Ok(ExitCode::SUCCESS);
    }
    let mut failed = false;
    for c in &config.cameras {
        if matches!(c.source, station_agent::config::source::CameraSource::Test) {
            continue;
        }
        println!("probe of camera {}:", c.id);
        let snapshot = std::env::temp_dir().join(format!("probe-{}.jpg", c.id));
        match station_agent::probe::probe(&c.source, 4.0, Some(&snapshot)) {
            Ok(r) => {
                for line in r.to_string().lines() {
                    println!("    {line}");
                }
                if r.encoded_by_agent
                    && (r.width.unwrap_or(0) < c.encode.width as i32
                        || r.height.unwrap_or(0) < c.encode.height as i32)
                {
                    println!(
                        "    WARNING: the device gives {}x{} by default and the agent records {}x{}: the picture is scaled up (set encode width/height to what the device offers)",
                        r.width.unwrap_or(0),
                        r.height.unwrap_or(0),
                        c.encode.width,
                        c.encode.height
                    );
                }
                if c.live.as_ref().is_some_and(|l| l.sub_stream.is_none()) {
                    println!(
                        "    WARNING: no live_sub_stream: on a weak uplink this camera can only stream its main stream or nothing (give the camera's sub-stream URL)"
                    );
                }
            }
            Err(e) => {
                failed = true;
                println!("    cannot probe: {e}");
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn enroll(
    path: &std::path::Path,
    controller: &url::Url,
    code: &str,
    controller_ca: Option<&std::path::Path>,
) -> anyhow::Result<ExitCode> {
    use station_agent::station::enroll;
    let (text, config) = parse_only(path)?;
    let targets = enroll::targets(path, &text)?;
    let existed = config.station_key.exists();
    let key = station_agent::load_or_generate_key(&config.station_key)?;
    if !existed {
        // Made by a technician running this as root: the service's user must own it (the
        // packages make the key's folder, /var/lib/stationwatch, that user's).
        use std::os::unix::fs::MetadataExt;
        if let Some(dir) = config
            .station_key
            .parent()
            .and_then(|d| std::fs::metadata(d).ok())
        {
            let _ = std::os::unix::fs::chown(&config.station_key, Some(dir.uid()), Some(dir.gid()));
        }
    }
    let public = key.public();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let answer = rt.block_on(enroll::request(
        controller,
        controller_ca,
        code,
        config.station.as_str(),
        public.to_hex(),
    ));
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            println!("enrollment failed, nothing written: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    let written = enroll::write(path, &text, &targets, &answer)?;
    println!(
        "station {} enrolled: key {} registered; broker {} as {}",
        answer.station, answer.key_fingerprint, answer.broker_url, answer.username
    );
    if let Some(live) = &answer.live {
        // The address only: the passphrase stays in its file.
        let shown = station_agent::config::LiveTarget::parse(&live.srt_url)
            .map(|t| t.to_string())
            .unwrap_or_default();
        println!(
            "live: cameras without a live_target now send to the gateway {shown} (stream id {}/<camera>, the station's passphrase in [live] passphrase_file) when their live setting is on or auto",
            answer.station
        );
    }
    for f in &written {
        println!("  wrote {}", f.display());
    }
    check(path, false)
}

/// The config's text and what it says, without the checks of the machine (`key`, `status`,
/// `enroll` run where the storage or cameras may not be ready).
fn parse_only(path: &std::path::Path) -> anyhow::Result<(String, AgentConfig)> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config = AgentConfig::parse(path, &text, false)?;
    Ok((text, config))
}

fn status(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (_, config) = parse_only(path)?;
    let s = match station_agent::read_status(&config.storage.path) {
        Ok(s) => s,
        Err(e) => {
            println!("Station {}: no status: {e}", config.station);
            return Ok(ExitCode::from(2));
        }
    };
    let (text, problems) =
        station_agent::render_status(&s, stationwatch_protocol::manifest::Timestamp::now());
    println!("Station {}", config.station);
    print!("{text}");
    if problems.is_empty() {
        println!("No problems.");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("Problems:");
        for p in &problems {
            println!("  - {p}");
        }
        Ok(ExitCode::from(1))
    }
}

fn key(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let (_, config) = parse_only(path)?;
    let existed = config.station_key.exists();
    let key = station_agent::load_or_generate_key(&config.station_key)?;
    let public = key.public();
    if !existed {
        println!(
            "generated a new station key in {}",
            config.station_key.display()
        );
    }
    println!("station      {}", config.station);
    println!("key file     {}", config.station_key.display());
    println!("fingerprint  {}", public.fingerprint());
    println!("public key   {}", public.to_hex());
    println!(
        "{}",
        public
            .to_spki_pem()
            .context("encoding the public key")?
            .trim_end()
    );
    Ok(ExitCode::SUCCESS)
}

fn verify(args: &VerifyArgs) -> anyhow::Result<ExitCode> {
    let opts = args.options()?;
    let report = stationwatch_verify::verify(&args.path, &opts)?;
    print!("{}", stationwatch_verify::render(&report));
    Ok(ExitCode::from(report.verdict.exit_code()))
}

fn run(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let config = load(path)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let shutdown = CancellationToken::new();
        spawn_signal_handler(shutdown.clone())?;
        station_agent::run(config, shutdown, None).await?;
        Ok(ExitCode::SUCCESS)
    })
}

fn spawn_signal_handler(shutdown: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutdown requested"),
            _ = int.recv() => tracing::info!(signal = "SIGINT", "shutdown requested"),
        }
        shutdown.cancel();
    });
    Ok(())
}
