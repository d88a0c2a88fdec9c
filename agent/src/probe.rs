//! `station-agent probe SOURCE` (and `check --probe`): connect to a camera the way the recorder
//! does (`elements::add_rtsp_source`: RTSP over TCP, video depayloaded and parsed, never
//! decoded but for one snapshot), watch it for a few seconds and report what a technician
//! must know before the election: codec and profile, resolution, frame rate, keyframe
//! interval, bitrate, audio; with warnings for what will hurt (keyframes further apart than
//! 2 s, a codec browsers cannot play, no sub-stream for the live ladder). Credentials never
//! appear: the source is printed through its `Display`, and GStreamer gets them in separate
//! properties, not in the location it may put in an error.

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
    #[error("{0}: probing V4L2 devices is not supported yet; `check` validates the device node")]
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
        match (self.keyframe_interval_s, self.keyframes_seen) {
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
    let url = match source {
        CameraSource::Rtsp(url) => url,
        other => return Err(ProbeError::Unsupported(other.to_string())),
    };
    let shown = source.to_string();
    let fail = |detail: String| ProbeError::Camera {
        camera: shown.clone(),
        detail,
    };
    let pipeline = gst::Pipeline::builder().name("probe").build();
    let sink = gst_app::AppSink::builder()
        .name("probe-sink")
        .sync(false)
        .max_buffers(64)
        .build();
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
    result?;
    let mut r = report(
        shown,
        &seen,
        audio.lock().map(|a| a.clone()).unwrap_or_default(),
    );
    if let (Some(path), Some(k)) = (snapshot, seen.last_keyframe) {
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
    let k = r.keyframe_interval_s.unwrap_or(span);
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
    r
}
