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
    /// Changes the picture size to `WIDTHxHEIGHT` this many seconds after the stream started
    /// (the encoder starts again: new SPS/PPS and a keyframe), as a camera reconfigured
    /// while it streams. With `--resize-to`.
    #[arg(long, requires = "resize_to")]
    resize_after_secs: Option<u64>,
    /// The new size for `--resize-after-secs`, e.g. `640x360`.
    #[arg(long, value_parser = parse_size, requires = "resize_after_secs")]
    resize_to: Option<(u32, u32)>,
    /// The RTP timestamp of the first packet (the payloader's `timestamp-offset`), e.g. close
    /// to 2^32 so that the timestamps wrap around soon after the start.
    #[arg(long)]
    rtp_timestamp_offset: Option<u32>,
    /// Sends the parameter sets (SPS/PPS, VPS) only in the SDP (`sprop-parameter-sets`), never
    /// in band: they are cut out of the RTP stream, as some cameras do.
    #[arg(long)]
    params_out_of_band: bool,
    /// H.264: each picture in 4 slices encoded in parallel (x264 `sliced-threads`), with the
    /// parameter sets in band: the case that made `h264parse` split access units
    /// (docs/recording.md, "Split access units").
    #[arg(long)]
    sliced_threads: bool,
}

fn parse_size(s: &str) -> std::result::Result<(u32, u32), String> {
    let (w, h) = s
        .split_once('x')
        .ok_or_else(|| format!("{s:?}: expected WIDTHxHEIGHT"))?;
    let w: u32 = w.parse().map_err(|e| format!("width {w:?}: {e}"))?;
    let h: u32 = h.parse().map_err(|e| format!("height {h:?}: {e}"))?;
    if w == 0 || h == 0 {
        return Err("width and height must be positive".into());
    }
    Ok((w, h))
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
                "x264enc tune=zerolatency speed-preset=ultrafast {slices} key-int-max={fps} \
                 bitrate={bitrate_kbps}",
                slices = if args.sliced_threads {
                    "sliced-threads=true threads=4"
                } else {
                    "sliced-threads=false"
                }
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
    let mut pay_opts = String::from(if args.params_out_of_band {
        "config-interval=0"
    } else {
        "config-interval=-1"
    });
    if let Some(offset) = args.rtp_timestamp_offset {
        pay_opts.push_str(&format!(" timestamp-offset={offset}"));
    }
    format!(
        "( videotestsrc is-live=true pattern={pattern} \
         ! capsfilter name=size caps=video/x-raw,width={width},height={height},framerate={fps}/1 \
         ! timeoverlay ! videoconvert ! video/x-raw,format=I420 \
         ! {encoder} ! {payloader} name=pay0 pt=96 {pay_opts} )",
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

/// Cuts the parameter-set NAL units (H.264 SPS 7 / PPS 8; H.265 VPS 32 / SPS 33 / PPS 34) out of
/// the payloader's RTP packets, and renumbers the packets after them so the receiver sees no
/// loss: the parameter sets reach a client only through the SDP (`--params-out-of-band`).
fn strip_parameter_sets(media: &gst::Element, codec: Codec) -> Result<()> {
    use std::sync::atomic::{AtomicU16, Ordering};
    let bin = media
        .clone()
        .dynamic_cast::<gst::Bin>()
        .map_err(|_| anyhow::anyhow!("the media is not a bin"))?;
    let pay = bin
        .by_name_recurse_up("pay0")
        .or_else(|| bin.by_name("pay0"))
        .context("no payloader pay0")?;
    let pad = pay.static_pad("src").context("payloader without src pad")?;
    let dropped = std::sync::Arc::new(AtomicU16::new(0));
    // RTP payload of a packet: after 12 bytes, the CSRCs and any header extension.
    fn payload(rtp: &[u8]) -> Option<&[u8]> {
        let mut pos = 12 + 4 * usize::from(*rtp.first()? & 0x0f);
        if rtp[0] & 0x10 != 0 {
            let len = u16::from_be_bytes([*rtp.get(pos + 2)?, *rtp.get(pos + 3)?]);
            pos += 4 + 4 * usize::from(len);
        }
        rtp.get(pos..)
    }
    let is_param_set = move |rtp: &[u8]| -> bool {
        let Some(p) = payload(rtp).and_then(|p| p.first().copied()) else {
            return false;
        };
        match codec {
            Codec::H264 => matches!(p & 0x1f, 7 | 8),
            Codec::H265 => matches!((p >> 1) & 0x3f, 32..=34),
        }
    };
    // Keeps a packet (renumbered) or drops it.
    let keep = move |buf: &mut gst::Buffer, dropped: &AtomicU16| -> bool {
        let param = buf
            .map_readable()
            .map(|m| is_param_set(&m))
            .unwrap_or(false);
        if param {
            dropped.fetch_add(1, Ordering::Relaxed);
            return false;
        }
        let shift = dropped.load(Ordering::Relaxed);
        if shift != 0 {
            if let Ok(mut m) = buf.make_mut().map_writable() {
                if m.len() >= 4 {
                    let seq = u16::from_be_bytes([m[2], m[3]]).wrapping_sub(shift);
                    m[2..4].copy_from_slice(&seq.to_be_bytes());
                }
            }
        }
        true
    };
    pad.add_probe(
        gst::PadProbeType::BUFFER | gst::PadProbeType::BUFFER_LIST,
        move |_, info| match &mut info.data {
            Some(gst::PadProbeData::Buffer(buf)) => {
                if keep(buf, &dropped) {
                    gst::PadProbeReturn::Ok
                } else {
                    gst::PadProbeReturn::Drop
                }
            }
            Some(gst::PadProbeData::BufferList(list)) => {
                list.make_mut().foreach_mut(|mut buf, _| {
                    std::ops::ControlFlow::Continue(keep(&mut buf, &dropped).then_some(buf))
                });
                gst::PadProbeReturn::Ok
            }
            _ => gst::PadProbeReturn::Ok,
        },
    );
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
    let resize = args.resize_after_secs.zip(args.resize_to);
    let (codec, out_of_band, fps) = (args.codec, args.params_out_of_band, args.fps);
    factory.connect_media_configure(move |_, media| {
        let element = media.element();
        let _ = tx.send(element.downgrade());
        if let Some((after, (w, h))) = resize {
            let weak = element.downgrade();
            glib::timeout_add_once(std::time::Duration::from_secs(after), move || {
                let size = weak
                    .upgrade()
                    .and_then(|e| e.dynamic_cast::<gst::Bin>().ok())
                    .and_then(|b| b.by_name_recurse_up("size").or_else(|| b.by_name("size")));
                if let Some(size) = size {
                    let caps = gst::Caps::builder("video/x-raw")
                        .field("width", w as i32)
                        .field("height", h as i32)
                        .field("framerate", gst::Fraction::new(fps as i32, 1))
                        .build();
                    size.set_property("caps", &caps);
                    eprintln!("test-camera: picture size now {w}x{h}");
                }
            });
        }
        if out_of_band {
            if let Err(e) = strip_parameter_sets(&element, codec) {
                eprintln!("test-camera: cannot strip parameter sets: {e:#}");
            }
        }
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
