//! `test-camera`: an RTSP test camera for Stationwatch tests.
//!
//! Serves `rtsp://127.0.0.1:PORT/cam` from `videotestsrc is-live=true pattern=ball` (or `snow`) with a
//! `timeoverlay`, encoded as H.264 (x264enc) or H.265 (x265enc). The media factory is shared,
//! so every client sees the same stream. Prints exactly one line, `READY <url>`, on stdout
//! once the server socket is bound and attached, then serves until SIGTERM or SIGINT.
//!
//! Exit codes: 0 after a signal, 1 on any error (bad arguments for the pipeline, port in use).

use std::io::Write;
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::{Parser, ValueEnum};
use gst_rtsp_server::prelude::*;
use gst_rtsp_server::{gio, glib};

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Codec {
    H264,
    H265,
}

/// RTSP test camera (videotestsrc + timeoverlay, H.264 or H.265).
#[derive(Parser, Debug)]
#[command(name = "test-camera", version)]
struct Args {
    /// TCP port to listen on (127.0.0.1). 0 picks a free port; the READY line shows it.
    #[arg(long)]
    port: u16,
    /// Mount path of the stream.
    #[arg(long, default_value = "/cam")]
    path: String,
    #[arg(long, default_value_t = 1280)]
    width: u32,
    #[arg(long, default_value_t = 720)]
    height: u32,
    #[arg(long, default_value_t = 15)]
    fps: u32,
    #[arg(long = "bitrate-kbps", default_value_t = 2000)]
    bitrate_kbps: u32,
    #[arg(long, value_enum, default_value_t = Codec::H264)]
    codec: Codec,
    /// The picture: `ball` (a moving ball, compresses far below the bitrate) or `snow` (noise:
    /// the encoder sends its full bitrate, like a real camera's busy scene).
    #[arg(long, value_enum, default_value_t = Pattern::Ball)]
    pattern: Pattern,
    /// With `--pattern scene`: a file naming the scene to show (`normal`, `black`, `tape`,
    /// `blurred`, `moved`, `darker`, `brighter`, `frozen`), read every 200 ms, so a test can
    /// tamper with the camera while it runs (`TestCamera::set_scene`).
    #[arg(long)]
    scene_file: Option<std::path::PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
enum Pattern {
    Ball,
    Snow,
    /// A pinwheel (static, sharp, structured) with a ticking clock, which `--scene-file` can
    /// switch at run time. (Not `smpte`: its corner of noise never stands still.)
    Scene,
}

fn launch_line(args: &Args) -> String {
    let Args {
        width,
        height,
        fps,
        bitrate_kbps,
        ..
    } = args;
    let (encoder, payloader) = match args.codec {
        Codec::H264 => (
            format!(
                "x264enc tune=zerolatency speed-preset=ultrafast sliced-threads=false key-int-max={fps} \
                 bitrate={bitrate_kbps}"
            ),
            "rtph264pay",
        ),
        Codec::H265 => (
            format!(
                "x265enc tune=zerolatency speed-preset=ultrafast key-int-max={fps} \
                 bitrate={bitrate_kbps}"
            ),
            "rtph265pay",
        ),
    };
    if args.pattern == Pattern::Scene {
        // Elements named for `apply_scene`: the source, the lighting, the lens, the clock.
        return format!(
            "( videotestsrc name=scene-src is-live=true pattern=pinwheel \
             ! video/x-raw,width={width},height={height},framerate={fps}/1 \
             ! videobalance name=scene-light ! videoconvert ! gaussianblur name=scene-lens sigma=0 \
             ! timeoverlay name=scene-clock font-desc=\"Sans 20\" ! videoconvert ! video/x-raw,format=I420 \
             ! {encoder} ! {payloader} name=pay0 pt=96 config-interval=-1 )"
        );
    }
    format!(
        "( videotestsrc is-live=true pattern={pattern} \
         ! video/x-raw,width={width},height={height},framerate={fps}/1 \
         ! timeoverlay ! videoconvert ! video/x-raw,format=I420 \
         ! {encoder} ! {payloader} name=pay0 pt=96 config-interval=-1 )",
        pattern = match args.pattern {
            Pattern::Ball | Pattern::Scene => "ball",
            Pattern::Snow => "snow",
        }
    )
}

fn validate(args: &Args) -> Result<()> {
    if !args.path.starts_with('/') {
        bail!("--path must start with '/', got {:?}", args.path);
    }
    if args.width == 0 || args.height == 0 || args.fps == 0 || args.bitrate_kbps == 0 {
        bail!("--width, --height, --fps and --bitrate-kbps must be positive");
    }
    let encoder = match args.codec {
        Codec::H264 => "x264enc",
        Codec::H265 => "x265enc",
    };
    let mut needed = vec!["videotestsrc", "timeoverlay", encoder];
    if args.pattern == Pattern::Scene {
        needed.extend(["videobalance", "gaussianblur"]);
    }
    for element in needed {
        if gst::ElementFactory::find(element).is_none() {
            bail!("GStreamer element {element:?} is not installed");
        }
    }
    Ok(())
}

/// Shows a scene: what a tampered-with camera would see (`--scene-file`).
fn apply_scene(media: &gst::Element, scene: &str) -> Result<()> {
    let bin = media
        .clone()
        .dynamic_cast::<gst::Bin>()
        .map_err(|_| anyhow::anyhow!("the media is not a bin"))?;
    let get = |name: &str| {
        bin.by_name_recurse_up(name)
            .or_else(|| bin.by_name(name))
            .with_context(|| format!("no element {name} (not --pattern scene?)"))
    };
    let (src, light, lens, clock) = (
        get("scene-src")?,
        get("scene-light")?,
        get("scene-lens")?,
        get("scene-clock")?,
    );
    // What the scene wants of each element (the normal scene unless it changes that part).
    let (mut pattern, mut brightness, mut sigma, mut silent) = ("pinwheel", 0.0f64, 0.0f64, false);
    match scene {
        "normal" => {}
        "black" => pattern = "black",
        "tape" => {
            pattern = "solid-color";
            src.set_property("foreground-color", 0xffb4a082u32);
        }
        "blurred" => sigma = 20.0,
        // Another view altogether: colour bars instead of the pinwheel.
        "moved" => pattern = "smpte75",
        "darker" => brightness = -0.25,
        "brighter" => brightness = 0.2,
        // The clock stops: every frame the same, while frames keep coming.
        "frozen" => silent = true,
        other => bail!("unknown scene {other:?}"),
    }
    // Only what differs is set: setting a property of a running element races with its
    // streaming thread (gaussianblur rebuilds its kernel), and the first scene is applied
    // while the media prerolls, where nothing needs to change.
    let current_pattern = {
        let v = src.property_value("pattern");
        glib::EnumValue::from_value(&v).map(|(_, e)| e.nick().to_owned())
    };
    if current_pattern.as_deref() != Some(pattern) {
        src.set_property_from_str("pattern", pattern);
    }
    if light.property::<f64>("brightness") != brightness {
        light.set_property("brightness", brightness);
    }
    if light.property::<f64>("contrast") != 1.0 {
        light.set_property("contrast", 1.0f64);
    }
    if lens.property::<f64>("sigma") != sigma {
        lens.set_property("sigma", sigma);
    }
    if clock.property::<bool>("silent") != silent {
        clock.set_property("silent", silent);
    }
    Ok(())
}

/// Blocks SIGTERM and SIGINT in this thread (and so in every thread spawned later, including
/// GStreamer's), so that they can be received synchronously with `sigwait` in one thread.
fn block_termination_signals() -> Result<libc::sigset_t> {
    // SAFETY: plain libc signal-set manipulation on a local, zero-initialised sigset_t.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        let rc = libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        if rc != 0 {
            bail!(
                "pthread_sigmask failed: {}",
                std::io::Error::from_raw_os_error(rc)
            );
        }
        Ok(set)
    }
}

fn run(args: Args) -> Result<()> {
    let signals = block_termination_signals()?;
    gst::init().context("initialising GStreamer")?;
    validate(&args)?;

    let server = gst_rtsp_server::RTSPServer::new();
    server.set_address("127.0.0.1");
    server.set_service(&args.port.to_string());

    let factory = gst_rtsp_server::RTSPMediaFactory::new();
    factory.set_launch(&launch_line(&args));
    factory.set_shared(true);
    // The shared media's pipeline, once a client made it, for the scene switcher.
    let media_bin: std::rc::Rc<std::cell::RefCell<Option<glib::WeakRef<gst::Element>>>> =
        Default::default();
    let (tx, rx) = std::sync::mpsc::channel::<glib::WeakRef<gst::Element>>();
    factory.connect_media_configure(move |_, media| {
        let _ = tx.send(media.element().downgrade());
    });
    let _scene = args.scene_file.clone().map(|file| {
        let bin = media_bin.clone();
        let mut shown = String::new();
        glib::timeout_add_local(std::time::Duration::from_millis(200), move || {
            while let Ok(w) = rx.try_recv() {
                *bin.borrow_mut() = Some(w);
                shown.clear();
            }
            let wanted = std::fs::read_to_string(&file)
                .map(|s| s.trim().to_owned())
                .unwrap_or_else(|_| "normal".into());
            if wanted != shown {
                if let Some(e) = bin.borrow().as_ref().and_then(|w| w.upgrade()) {
                    match apply_scene(&e, &wanted) {
                        Ok(()) => eprintln!("test-camera: scene {wanted}"),
                        Err(err) => eprintln!("test-camera: scene {wanted}: {err:#}"),
                    }
                    shown = wanted;
                }
            }
            glib::ControlFlow::Continue
        })
    });
    let mounts = server
        .mount_points()
        .context("RTSP server has no mount points")?;
    mounts.add_factory(&args.path, factory);

    // create_source binds the socket and reports the real cause (e.g. "Address already in
    // use"), which RTSPServer::attach would reduce to a bare failure.
    let source = server
        .create_source(None::<&gio::Cancellable>)
        .with_context(|| format!("cannot listen on 127.0.0.1:{}", args.port))?;
    let main_loop = glib::MainLoop::new(None, false);
    let _server_source = source.attach(None);
    let port = server.bound_port();
    if port <= 0 {
        bail!("RTSP server socket is not bound");
    }

    // Drop sessions of clients that went away without TEARDOWN.
    let pool = server.session_pool();
    let _cleanup = glib::timeout_add_seconds_local(2, move || {
        if let Some(pool) = &pool {
            pool.cleanup();
        }
        glib::ControlFlow::Continue
    });

    // SIGTERM/SIGINT are blocked everywhere and taken here synchronously. The quit goes
    // through an idle source, so it runs inside MainLoop::run(): a quit() that lands before
    // run() has started is forgotten (run() resets the flag), and READY (after which clients
    // may signal us) is printed before run(). MainContext::invoke() would not do: with the
    // context not yet acquired, it calls the closure at once in this thread. A second signal
    // exits at once.
    let loop_for_signals = main_loop.clone();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            let mut received = 0;
            loop {
                let mut sig: libc::c_int = 0;
                // SAFETY: `signals` is a valid, initialised set; `sig` is a valid out-pointer.
                if unsafe { libc::sigwait(&signals, &mut sig) } != 0 {
                    continue;
                }
                received += 1;
                if received > 1 {
                    eprintln!("test-camera: second signal {sig}, exiting now");
                    std::process::exit(1);
                }
                eprintln!("test-camera: got signal {sig}, shutting down");
                let main_loop = loop_for_signals.clone();
                glib::idle_add_once(move || main_loop.quit());
            }
        })
        .context("spawning the signal thread")?;

    let url = format!("rtsp://127.0.0.1:{port}{}", args.path);
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "READY {url}").context("writing READY line")?;
    stdout.flush().context("flushing stdout")?;
    drop(stdout);

    main_loop.run();
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("test-camera: error: {err:#}");
            ExitCode::from(1)
        }
    }
}
