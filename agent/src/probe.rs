//! `station-agent probe SOURCE` (and `check --probe`): connect to a camera the way the recorder
//! does (`elements::add_rtsp_source`: RTSP over TCP, video depayloaded and parsed, never
//! decoded but for one snapshot), watch it for a few seconds and report what a technician
//! must know before the election: codec and profile, resolution, frame rate, keyframe
//! interval, bitrate, audio; with warnings for what will hurt (keyframes further apart than
//! 2 s, a codec browsers cannot play, no sub-stream for the live ladder). Credentials never
//! appear: the source is printed through its `Display`, and GStreamer gets them in separate
//! properties, not in the location it may put in an error.
//!
//! A V4L2 device (`/dev/videoN`) is opened as the recorder opens it (`v4l2src`, its default
//! negotiation): the formats it offers, the one it gives, the frame rate it really delivers,
//! a snapshot; the agent encodes these sources itself, so keyframe interval and bitrate are
//! its own settings, not the device's.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gst::prelude::*;

use crate::camera::snapshot::jpeg_from_keyframe;
use crate::config::source::CameraSource;
use crate::elements::{add_rtsp_source, PipelineError};

/// How long to wait for the first picture.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(12);
/// Keyframes further apart than this make segments and live viewing start late.
const MAX_KEYFRAME_INTERVAL_S: f64 = 2.0;

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Pipeline(#[from] PipelineError),
    #[error("{camera}: {detail}")]
    Camera { camera: String, detail: String },
    #[error("{0}: the built-in test source has nothing to probe")]
    Unsupported(String),
}

/// What was seen.
#[derive(Debug, Clone, Default)]
pub struct ProbeReport {
    /// The source, without credentials.
    pub source: String,
    /// `H.264` or `H.265`.
    pub codec: String,
    pub profile: Option<String>,
    pub level: Option<String>,
    pub width: Option<i32>,
    pub height: Option<i32>,
    pub fps: Option<f64>,
    /// Seconds between keyframes (largest seen), and whether only one was seen (then at least).
    pub keyframe_interval_s: Option<f64>,
    pub keyframes_seen: usize,
    pub bitrate_bps: Option<f64>,
    /// Audio streams the camera offers (encoding names); the recorder ignores them.
    pub audio: Vec<String>,
    pub seconds: f64,
    pub snapshot: Option<PathBuf>,
    pub warnings: Vec<String>,
    /// V4L2: the formats the device offers, one line each.
    pub offers: Vec<String>,
    /// V4L2: the agent encodes this source (keyframe interval and bitrate are its own).
    pub encoded_by_agent: bool,
}

impl fmt::Display for ProbeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "source: {}", self.source)?;
        let mut codec = self.codec.clone();
        if let Some(p) = &self.profile {
            codec.push_str(&format!(", profile {p}"));
        }
        if let Some(l) = &self.level {
            codec.push_str(&format!(", level {l}"));
        }
        writeln!(f, "video: {codec}")?;
        if let (Some(w), Some(h)) = (self.width, self.height) {
            writeln!(f, "resolution: {w}x{h}")?;
        }
        if let Some(fps) = self.fps {
            writeln!(f, "frame rate: {fps:.1} fps")?;
        }
        for o in &self.offers {
            writeln!(f, "offers: {o}")?;
        }
        if self.encoded_by_agent {
            writeln!(
                f,
                "encoding: by the agent (H.264; keyframe interval, size and bitrate from the camera's encode settings)"
            )?;
        }
        match (self.keyframe_interval_s, self.keyframes_seen) {
            _ if self.encoded_by_agent => {}
            (Some(k), n) if n >= 2 => writeln!(f, "keyframe interval: {k:.2} s")?,
            _ => writeln!(
                f,
                "keyframe interval: more than {:.1} s (one keyframe in {:.1} s)",
                self.seconds, self.seconds
            )?,
        }
        if let Some(b) = self.bitrate_bps {
            writeln!(f, "bitrate: {:.0} kbit/s", b / 1000.0)?;
        }
        if self.audio.is_empty() {
            writeln!(f, "audio: none")?;
        } else {
            writeln!(f, "audio: {} (not recorded)", self.audio.join(", "))?;
        }
        if let Some(s) = &self.snapshot {
            writeln!(f, "snapshot: {}", s.display())?;
        }
        for w in &self.warnings {
            writeln!(f, "WARNING: {w}")?;
        }
        Ok(())
    }
}

#[derive(Default)]
struct Seen {
    caps: Option<gst::Caps>,
    frames: u64,
    bytes: u64,
    first_pts: Option<gst::ClockTime>,
    last_pts: Option<gst::ClockTime>,
    keyframes: Vec<gst::ClockTime>,
    last_keyframe: Option<gst::Sample>,
}

/// Watches `source` for `seconds` (after its first picture) and reports; saves a snapshot to
/// `snapshot` if given. Blocking; GStreamer must be initialised.
pub fn probe(
    source: &CameraSource,
    seconds: f64,
    snapshot: Option<&Path>,
) -> Result<ProbeReport, ProbeError> {
    let (mut r, keyframe) = match source {
        CameraSource::Rtsp(url) => probe_rtsp(source, url, seconds)?,
        CameraSource::V4l2(dev) => probe_v4l2(source, dev, seconds)?,
        CameraSource::Test => return Err(ProbeError::Unsupported(source.to_string())),
    };
    if let (Some(path), Some(k)) = (snapshot, keyframe) {
        match jpeg_from_keyframe(Some(k), Duration::from_secs(5)) {
            Ok(j) => match std::fs::write(path, &j.bytes) {
                Ok(()) => r.snapshot = Some(path.to_owned()),
                Err(e) => r
                    .warnings
                    .push(format!("snapshot not saved to {}: {e}", path.display())),
            },
            Err(e) => r.warnings.push(format!("no snapshot: {e}")),
        }
    }
    Ok(r)
}

fn failure(source: &CameraSource) -> impl Fn(String) -> ProbeError {
    let camera = source.to_string();
    move |detail| ProbeError::Camera {
        camera: camera.clone(),
        detail,
    }
}

fn probe_sink() -> gst_app::AppSink {
    gst_app::AppSink::builder()
        .name("probe-sink")
        .sync(false)
        .max_buffers(64)
        .build()
}

fn probe_rtsp(
    source: &CameraSource,
    url: &url::Url,
    seconds: f64,
) -> Result<(ProbeReport, Option<gst::Sample>), ProbeError> {
    let fail = failure(source);
    let pipeline = gst::Pipeline::builder().name("probe").build();
    let sink = probe_sink();
    pipeline.add(&sink).map_err(PipelineError::from)?;
    add_rtsp_source(&pipeline, url, sink.upcast_ref())?;
    // What the camera offers besides video (connected after the recorder's handler, so this
    // one's answer counts: the same, video only).
    let audio = Arc::new(Mutex::new(Vec::new()));
    if let Some(src) = pipeline.by_name("source") {
        let audio = audio.clone();
        src.connect("select-stream", false, move |args| {
            let caps = args.get(2).and_then(|v| v.get::<gst::Caps>().ok());
            let s = caps.as_ref().and_then(|c| c.structure(0));
            let media = s.and_then(|s| s.get::<&str>("media").ok()).unwrap_or("");
            if media == "audio" {
                let enc = s
                    .and_then(|s| s.get::<&str>("encoding-name").ok())
                    .unwrap_or("unknown");
                if let Ok(mut a) = audio.lock() {
                    a.push(enc.to_owned());
                }
            }
            Some((media == "video").to_value())
        });
    }
    let seen = watch(&pipeline, &sink, seconds, &fail)?;
    let mut r = report(
        source.to_string(),
        &seen,
        audio.lock().map(|a| a.clone()).unwrap_or_default(),
    );
    warn_rtsp(&mut r, &seen);
    Ok((r, seen.last_keyframe))
}

/// A V4L2 device (USB camera, capture card): what it offers, what it gives the recorder by
/// default (`v4l2src` negotiates as in the recording pipeline), the frame rate it really
/// delivers. The agent encodes these sources itself, so keyframe interval and bitrate are the
/// agent's (`encode` in the camera's config), not the device's.
fn probe_v4l2(
    source: &CameraSource,
    dev: &Path,
    seconds: f64,
) -> Result<(ProbeReport, Option<gst::Sample>), ProbeError> {
    let fail = failure(source);
    if !dev.exists() {
        return Err(fail("no such device (is the camera plugged in?)".into()));
    }
    let pipeline = gst::Pipeline::builder().name("probe").build();
    let src = gst::ElementFactory::make("v4l2src")
        .name("source")
        .property("device", dev.to_string_lossy().as_ref())
        .build()
        .map_err(|_| PipelineError::MissingElement("v4l2src"))?;
    let sink = probe_sink();
    pipeline
        .add_many([&src, sink.upcast_ref()])
        .map_err(PipelineError::from)?;
    src.link(&sink).map_err(PipelineError::from)?;
    // Opening the device (READY) is where a node that is not a capture device, or one another
    // program holds, fails.
    if pipeline.set_state(gst::State::Ready).is_err() {
        let detail = pipeline
            .bus()
            .and_then(|b| b.pop_filtered(&[gst::MessageType::Error]))
            .and_then(|m| match m.view() {
                gst::MessageView::Error(e) => Some(e.error().to_string()),
                _ => None,
            })
            .unwrap_or_else(|| "cannot open the device".into());
        let _ = pipeline.set_state(gst::State::Null);
        return Err(fail(detail));
    }
    let offers = src
        .static_pad("src")
        .map(|p| offered_formats(&p.query_caps(None)))
        .unwrap_or_default();
    let seen = watch(&pipeline, &sink, seconds, &fail)?;
    let mut r = report(source.to_string(), &seen, Vec::new());
    r.offers = offers;
    r.encoded_by_agent = true;
    r.bitrate_bps = None;
    r.keyframe_interval_s = None;
    let s = seen.caps.as_ref().and_then(|c| c.structure(0));
    r.codec = match s.map(|s| s.name().as_str()) {
        Some("image/jpeg") => "MJPEG".into(),
        Some("video/x-raw") => format!(
            "raw {}",
            s.and_then(|s| s.get::<&str>("format").ok())
                .unwrap_or("video")
        ),
        Some("video/x-h264") => "H.264".into(),
        Some(other) => other.to_owned(),
        None => "unknown".into(),
    };
    let nominal = s
        .and_then(|s| s.get::<gst::Fraction>("framerate").ok())
        .filter(|f| f.numer() > 0 && f.denom() > 0)
        .map(|f| f.numer() as f64 / f.denom() as f64);
    if let (Some(n), Some(got)) = (nominal, r.fps) {
        if got < n * 0.8 {
            r.warnings.push(format!(
                "the device delivers {got:.1} fps where it announces {n:.0} (too little light, or \
                 a USB bus shared with another camera): recordings will be jerky"
            ));
        }
    }
    if r.codec == "MJPEG" && r.width.unwrap_or(0) * r.height.unwrap_or(0) > 1280 * 720 {
        r.warnings.push(
            "MJPEG above 720p: the agent decodes every frame before encoding it, which costs \
             a lot of CPU on a small board; choose 1280x720 in the camera's encode settings"
                .into(),
        );
    }
    Ok((r, seen.last_keyframe))
}

/// One line per format a device offers: `MJPEG 1920x1080, 1280x720 @ 30 fps`.
fn offered_formats(caps: &gst::Caps) -> Vec<String> {
    let mut out: Vec<(String, Vec<String>, Vec<String>)> = Vec::new();
    for s in caps.iter() {
        let name = match s.name().as_str() {
            "image/jpeg" => "MJPEG".to_owned(),
            "video/x-raw" => format!("raw {}", s.get::<&str>("format").unwrap_or("?")),
            "video/x-h264" => "H.264".to_owned(),
            other => other.to_owned(),
        };
        let size = match (s.get::<i32>("width"), s.get::<i32>("height")) {
            (Ok(w), Ok(h)) => format!("{w}x{h}"),
            _ => "any size".to_owned(),
        };
        let rates: Vec<String> = match s.value("framerate") {
            Ok(v) => {
                if let Ok(f) = v.get::<gst::Fraction>() {
                    vec![fraction_fps(f)]
                } else if let Ok(list) = v.get::<gst::List>() {
                    list.iter()
                        .filter_map(|v| v.get::<gst::Fraction>().ok())
                        .map(fraction_fps)
                        .collect()
                } else {
                    Vec::new()
                }
            }
            Err(_) => Vec::new(),
        };
        match out.iter_mut().find(|(n, _, _)| *n == name) {
            Some((_, sizes, r)) => {
                if !sizes.contains(&size) {
                    sizes.push(size);
                }
                for x in rates {
                    if !r.contains(&x) {
                        r.push(x);
                    }
                }
            }
            None => out.push((name, vec![size], rates)),
        }
    }
    out.into_iter()
        .map(|(name, sizes, rates)| {
            if rates.is_empty() {
                format!("{name} {}", sizes.join(", "))
            } else {
                format!("{name} {} @ {} fps", sizes.join(", "), rates.join("/"))
            }
        })
        .collect()
}

fn fraction_fps(f: gst::Fraction) -> String {
    if f.denom() == 1 {
        f.numer().to_string()
    } else {
        format!("{:.1}", f.numer() as f64 / f.denom().max(1) as f64)
    }
}

/// Plays `pipeline` and collects what reaches `sink` for `seconds` after the first picture.
fn watch(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
    seconds: f64,
    fail: &dyn Fn(String) -> ProbeError,
) -> Result<Seen, ProbeError> {
    pipeline
        .set_state(gst::State::Playing)
        .map_err(|e| fail(format!("cannot start: {e}")))?;
    let bus = pipeline.bus();
    let started = Instant::now();
    let mut seen = Seen::default();
    let mut first_at: Option<Instant> = None;
    let result = loop {
        if let Some(msg) = bus
            .as_ref()
            .and_then(|b| b.pop_filtered(&[gst::MessageType::Error, gst::MessageType::Eos]))
        {
            match msg.view() {
                gst::MessageView::Error(e) => break Err(fail(e.error().to_string())),
                _ => break Err(fail("the camera ended the stream".into())),
            }
        }
        match first_at {
            None if started.elapsed() > CONNECT_TIMEOUT => {
                break Err(fail(format!(
                    "no video within {} s",
                    CONNECT_TIMEOUT.as_secs()
                )))
            }
            Some(t) if t.elapsed().as_secs_f64() >= seconds => break Ok(()),
            _ => {}
        }
        let Some(sample) = sink.try_pull_sample(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        first_at.get_or_insert_with(Instant::now);
        let Some(buf) = sample.buffer() else { continue };
        seen.frames += 1;
        seen.bytes += buf.size() as u64;
        if let Some(pts) = buf.pts() {
            seen.first_pts.get_or_insert(pts);
            seen.last_pts = Some(pts);
            if !buf.flags().contains(gst::BufferFlags::DELTA_UNIT) {
                seen.keyframes.push(pts);
                seen.last_keyframe = Some(sample.clone());
            }
        }
        if let Some(c) = sample.caps() {
            seen.caps = Some(c.to_owned());
        }
    };
    let _ = pipeline.set_state(gst::State::Null);
    result.map(|()| seen)
}

fn report(source: String, seen: &Seen, audio: Vec<String>) -> ProbeReport {
    let mut r = ProbeReport {
        source,
        audio,
        keyframes_seen: seen.keyframes.len(),
        ..ProbeReport::default()
    };
    if let Some(s) = seen.caps.as_ref().and_then(|c| c.structure(0)) {
        r.codec = match s.name().as_str() {
            "video/x-h264" => "H.264".into(),
            "video/x-h265" => "H.265".into(),
            other => other.to_owned(),
        };
        r.profile = s.get::<String>("profile").ok();
        r.level = s.get::<String>("level").ok();
        r.width = s.get::<i32>("width").ok();
        r.height = s.get::<i32>("height").ok();
    }
    let span = match (seen.first_pts, seen.last_pts) {
        (Some(a), Some(b)) if b > a => (b - a).nseconds() as f64 / 1e9,
        _ => 0.0,
    };
    r.seconds = span;
    if span > 0.0 && seen.frames > 1 {
        r.fps = Some((seen.frames - 1) as f64 / span);
        r.bitrate_bps = Some(seen.bytes as f64 * 8.0 / span);
    }
    r.keyframe_interval_s = if seen.keyframes.len() >= 2 {
        seen.keyframes
            .windows(2)
            .map(|w| (w[1] - w[0]).nseconds() as f64 / 1e9)
            .reduce(f64::max)
    } else {
        None
    };
    r
}

/// What will hurt with a camera the agent records as it is (RTSP): keyframes too far apart, a
/// codec browsers cannot play.
fn warn_rtsp(r: &mut ProbeReport, seen: &Seen) {
    let k = r.keyframe_interval_s.unwrap_or(r.seconds);
    if k > MAX_KEYFRAME_INTERVAL_S {
        r.warnings.push(format!(
            "keyframes {}{k:.1} s apart: segments cut late and live viewing starts late; set the \
             camera's I-frame interval (GOP) to at most {MAX_KEYFRAME_INTERVAL_S} s (e.g. {} at this frame rate)",
            if seen.keyframes.len() < 2 { "more than " } else { "" },
            r.fps.map_or(30, |f| (f * MAX_KEYFRAME_INTERVAL_S).round() as u32)
        ));
    }
    if r.codec == "H.265" {
        r.warnings.push(
            "H.265: recorded as it is, but browsers cannot play it (request playback and live \
             viewing need H.264); choose H.264 on the camera if it offers it"
                .into(),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_devices_formats_are_summed_up_one_line_per_format() {
        gst::init().unwrap();
        let caps: gst::Caps = "image/jpeg, width=(int)1920, height=(int)1080, framerate=(fraction){ 30/1, 15/1 }; \
             image/jpeg, width=(int)1280, height=(int)720, framerate=(fraction){ 30/1, 15/1 }; \
             video/x-raw, format=(string)YUY2, width=(int)640, height=(int)480, framerate=(fraction)30/1; \
             video/x-raw, format=(string)YUY2, width=(int)320, height=(int)240, framerate=(fraction)30000/1001"
            .parse()
            .unwrap();
        assert_eq!(
            offered_formats(&caps),
            vec![
                "MJPEG 1920x1080, 1280x720 @ 30/15 fps".to_owned(),
                "raw YUY2 640x480, 320x240 @ 30/30.0 fps".to_owned(),
            ]
        );
    }

    #[test]
    fn a_v4l2_report_says_the_agent_encodes() {
        let r = ProbeReport {
            source: "/dev/video0".into(),
            codec: "MJPEG".into(),
            width: Some(1280),
            height: Some(720),
            fps: Some(30.0),
            offers: vec!["MJPEG 1280x720 @ 30 fps".into()],
            encoded_by_agent: true,
            ..ProbeReport::default()
        };
        let text = r.to_string();
        assert!(text.contains("video: MJPEG\n"), "{text}");
        assert!(text.contains("offers: MJPEG 1280x720 @ 30 fps"), "{text}");
        assert!(text.contains("encoding: by the agent"), "{text}");
        assert!(!text.contains("keyframe interval:"), "{text}");
    }
}
