//! Real segments: encoded by GStreamer's command line (`x264enc`/`x265enc` ! `mpegtsmux`, as the
//! stations record), remuxed, and checked with `ffprobe` / `ffmpeg`.
//!
//! Without `gst-launch-1.0`, `ffprobe` or `ffmpeg` these tests print `skipped: …` and pass,
//! except with `CI=true`, where they fail with the reason. Without `x265enc` the H.265 case is
//! skipped with a printed reason.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use stationwatch_remux::{
    probe_ts, ts_to_fmp4, Codec, Fmp4Writer, RemuxError, SegmentInfo, TsError,
};

fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
        .unwrap_or(false)
}

fn runs(tool: &str, arg: &str) -> bool {
    Command::new(tool)
        .arg(arg)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Prints a skip (and lists it where `scripts/test` collects skips).
fn skip(test: &str, why: &str) {
    let line = format!("SKIP gst_remux::{test}: {why}");
    eprintln!("skipped: {test}: {why}");
    if let Some(path) = std::env::var_os("STATIONWATCH_SKIP_FILE") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{line}");
        }
    }
}

/// True when GStreamer's and FFmpeg's command-line tools are here. Otherwise fails under CI,
/// or prints the skip and returns false.
fn tools(test: &str) -> bool {
    let missing: Vec<&str> = [
        ("gst-launch-1.0", "--version"),
        ("gst-inspect-1.0", "--version"),
        ("ffprobe", "-version"),
        ("ffmpeg", "-version"),
    ]
    .into_iter()
    .filter(|(t, a)| !runs(t, a))
    .map(|(t, _)| t)
    .collect();
    let plugins: Vec<&str> = ["x264enc", "h264parse", "mpegtsmux", "videotestsrc"]
        .into_iter()
        .filter(|p| missing.contains(&"gst-inspect-1.0") || !has_element(p))
        .collect();
    if missing.is_empty() && plugins.is_empty() {
        return true;
    }
    let why = format!(
        "missing tools {missing:?} / GStreamer elements {plugins:?} (apt-get install \
         gstreamer1.0-tools gstreamer1.0-plugins-ugly gstreamer1.0-plugins-bad ffmpeg)"
    );
    if in_ci() {
        panic!("{test}: prerequisite missing and CI is set, so this is a failure: {why}");
    }
    skip(test, &why);
    false
}

fn has_element(name: &str) -> bool {
    Command::new("gst-inspect-1.0")
        .arg(name)
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}

/// Runs a gst-launch-1.0 pipeline (given as separate words).
fn gst(pipeline: &str) {
    let out = Command::new("gst-launch-1.0")
        .arg("-q")
        .args(pipeline.split_whitespace())
        .output()
        .expect("run gst-launch-1.0");
    assert!(
        out.status.success(),
        "gst-launch-1.0 {pipeline} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Enc<'a> {
    frames: u32,
    /// Timestamp of the first frame (videotestsrc timestamp-offset).
    offset: Duration,
    /// `x264enc` / `x265enc` and its settings.
    encoder: &'a str,
    parser: &'a str,
    width: u32,
    height: u32,
    fps: u32,
    /// Raw video format fed to the encoder (I420 as cameras send; Y444 gives High 4:4:4).
    format: &'a str,
    /// videotestsrc pattern (`snow` does not compress: the encoder's full bitrate).
    pattern: &'a str,
}

impl Default for Enc<'_> {
    fn default() -> Self {
        Enc {
            frames: 60,
            offset: Duration::ZERO,
            encoder: "x264enc key-int-max=15 bframes=0 speed-preset=ultrafast",
            parser: "h264parse",
            width: 640,
            height: 360,
            fps: 15,
            format: "I420",
            pattern: "ball",
        }
    }
}

/// Encodes one TS segment, returns its path.
fn encode(dir: &Path, name: &str, e: Enc<'_>) -> PathBuf {
    let path = dir.join(name);
    gst(&format!(
        "videotestsrc num-buffers={} pattern={} timestamp-offset={} \
         ! video/x-raw,format={},width={},height={},framerate={}/1 ! {} ! {} ! mpegtsmux \
         ! filesink location={}",
        e.frames,
        e.pattern,
        e.offset.as_nanos(),
        e.format,
        e.width,
        e.height,
        e.fps,
        e.encoder,
        e.parser,
        path.display()
    ));
    path
}

/// `ffprobe` of the first video stream and the format: key → value.
fn probe(path: &Path) -> BTreeMap<String, String> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
        .args([
            "-show_entries",
            "stream=codec_name,width,height,nb_read_packets,start_time:format=duration,format_name",
            "-of",
            "default=nw=1",
        ])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(
        out.status.success(),
        "ffprobe {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Presentation timestamps (in the stream's time base) of the first video stream's packets.
fn packet_pts(path: &Path) -> Vec<i64> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-select_streams", "v:0"])
        .args(["-show_entries", "packet=pts", "-of", "csv=p=0"])
        .arg(path)
        .output()
        .expect("run ffprobe");
    assert!(out.status.success());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .collect()
}

/// Decodes every frame; returns FFmpeg's error output (empty when clean).
fn decode_errors(path: &Path) -> String {
    let out = Command::new("ffmpeg")
        .args(["-nostdin", "-v", "error", "-i"])
        .arg(path)
        .args(["-f", "null", "-"])
        .output()
        .expect("run ffmpeg");
    let mut err = String::from_utf8_lossy(&out.stderr).into_owned();
    if !out.status.success() {
        err.push_str(&format!(" (exit {})", out.status));
    }
    err
}

fn remux_files(paths: &[&Path], out: &Path) -> Result<stationwatch_remux::Summary, RemuxError> {
    let segments: Vec<Vec<u8>> = paths.iter().map(|p| std::fs::read(p).unwrap()).collect();
    let file = std::fs::File::create(out).unwrap();
    ts_to_fmp4(&segments, std::io::BufWriter::new(file))
}

fn f64_of(m: &BTreeMap<String, String>, key: &str) -> f64 {
    m.get(key)
        .unwrap_or_else(|| panic!("ffprobe gave no {key}: {m:?}"))
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe {key} not a number: {m:?}"))
}

/// Checks the output the way an observer's player sees it.
fn check_mp4(out: &Path, codec: &str, width: u32, height: u32, frames: u64, duration: f64) {
    let p = probe(out);
    assert!(p["format_name"].contains("mp4"), "{p:?}");
    assert_eq!(p["codec_name"], codec, "{p:?}");
    assert_eq!(p["width"], width.to_string(), "{p:?}");
    assert_eq!(p["height"], height.to_string(), "{p:?}");
    assert_eq!(p["nb_read_packets"], frames.to_string(), "{p:?}");
    let got = f64_of(&p, "duration");
    assert!(
        (got - duration).abs() < 0.15,
        "duration {got} s, expected {duration} s: {p:?}"
    );
    let start = f64_of(&p, "start_time");
    assert!(start.abs() < 0.01, "start_time {start}: {p:?}");
    let errors = decode_errors(out);
    assert!(errors.trim().is_empty(), "ffmpeg decode errors: {errors}");
    // A second, independent MP4 reader: GStreamer's qtdemux, decoding every frame.
    gst(&format!(
        "filesrc location={} ! qtdemux ! decodebin ! fakesink sync=false",
        out.display()
    ));
}

/// The output's packet PTS must be the inputs' PTS, less the first segment's first PTS
/// (composition offsets and gaps copied exactly; the last frame of a segment may be 1 tick off
/// when its duration was estimated).
fn check_pts_copied(inputs: &[&Path], out: &Path) {
    let mut want: Vec<i64> = inputs.iter().flat_map(|p| packet_pts(p)).collect();
    let base = *want.iter().min().unwrap();
    want.iter_mut().for_each(|p| *p -= base);
    want.sort_unstable();
    let mut got = packet_pts(out);
    got.sort_unstable();
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!((g - w).abs() <= 2, "frame {i}: pts {g}, expected {w}");
    }
}

#[test]
fn h264_two_segments_with_gap_keep_real_time() {
    if !tools("h264_two_segments_with_gap_keep_real_time") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = encode(dir.path(), "a.ts", Enc::default());
    // 4 s of video, then 2 s missing, then 4 s more.
    let b = encode(
        dir.path(),
        "b.ts",
        Enc {
            offset: Duration::from_secs(6),
            ..Enc::default()
        },
    );
    let out = dir.path().join("out.mp4");
    let file = std::fs::File::create(&out).unwrap();
    let mut w = Fmp4Writer::new(std::io::BufWriter::new(file));
    let ia = w.push_segment(&std::fs::read(&a).unwrap()).unwrap();
    let ib = w.push_segment(&std::fs::read(&b).unwrap()).unwrap();
    let summary = w.finish().unwrap();
    println!("{ia:?}\n{ib:?}\n{summary:?}");
    assert_eq!((ia.frames, ia.keyframes), (60, 4));
    let pa = ia.placement.unwrap();
    assert_eq!((pa.start_ms, pa.gap_before_ms, pa.clamped), (0, 0, false));
    let pb = ib.placement.unwrap();
    assert!(!pb.clamped);
    assert!(pb.start_ms.abs_diff(6000) <= 1, "{pb:?}");
    assert!(pb.gap_before_ms.abs_diff(2000) <= 1, "{pb:?}");
    assert_eq!(summary.samples, 120);
    assert_eq!(summary.codec, Codec::H264);
    assert_eq!((summary.width, summary.height), (640, 360));
    assert!(
        (summary.duration.as_secs_f64() - 10.0).abs() < 0.01,
        "{summary:?}"
    );
    assert_eq!(summary.bytes, std::fs::metadata(&out).unwrap().len());

    check_mp4(&out, "h264", 640, 360, 120, 10.0);
    check_pts_copied(&[&a, &b], &out);
}

#[test]
fn h264_bframes_three_contiguous_segments() {
    if !tools("h264_bframes_three_contiguous_segments") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let segs: Vec<PathBuf> = (0..3)
        .map(|i| {
            encode(
                dir.path(),
                &format!("s{i}.ts"),
                Enc {
                    offset: Duration::from_secs(4 * i),
                    encoder: "x264enc key-int-max=15 bframes=2 b-adapt=false speed-preset=fast",
                    ..Enc::default()
                },
            )
        })
        .collect();
    // B-frames really are there: presentation order differs from decode order.
    let pts = packet_pts(&segs[0]);
    assert!(pts.windows(2).any(|w| w[1] < w[0]), "no B-frames: {pts:?}");

    let out = dir.path().join("out.mp4");
    let refs: Vec<&Path> = segs.iter().map(|p| p.as_path()).collect();
    let summary = remux_files(&refs, &out).unwrap();
    assert_eq!(summary.samples, 180);
    assert_eq!(summary.gaps, Duration::ZERO, "{summary:?}");
    assert!(
        (summary.duration.as_secs_f64() - 12.0).abs() < 0.01,
        "{summary:?}"
    );
    check_mp4(&out, "h264", 640, 360, 180, 12.0);
    check_pts_copied(&refs, &out);
}

#[test]
fn h265_two_segments_with_gap() {
    if !tools("h265_two_segments_with_gap") {
        return;
    }
    if !has_element("x265enc") || !has_element("h265parse") {
        skip(
            "h265_two_segments_with_gap",
            "GStreamer element x265enc or h265parse not installed (gstreamer1.0-plugins-bad)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let enc = |name: &str, offset: u64| {
        encode(
            dir.path(),
            name,
            Enc {
                offset: Duration::from_secs(offset),
                encoder: "x265enc key-int-max=15 speed-preset=ultrafast",
                parser: "h265parse",
                width: 320,
                height: 240,
                ..Enc::default()
            },
        )
    };
    let a = enc("a.ts", 0);
    let b = enc("b.ts", 5);
    let info = probe_ts(&std::fs::read(&a).unwrap()).unwrap();
    assert_eq!(info.codec, Codec::H265);
    assert_eq!((info.width, info.height, info.frames), (320, 240, 60));
    let out = dir.path().join("out.mp4");
    let summary = remux_files(&[&a, &b], &out).unwrap();
    assert_eq!(summary.codec, Codec::H265);
    assert!(
        (summary.gaps.as_secs_f64() - 1.0).abs() < 0.01,
        "{summary:?}"
    );
    check_mp4(&out, "hevc", 320, 240, 120, 9.0);
    check_pts_copied(&[&a, &b], &out);
}

#[test]
fn pts_wraparound_inside_and_between_segments() {
    if !tools("pts_wraparound_inside_and_between_segments") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // mpegtsmux starts its clock at 3600 s; the 33-bit 90 kHz clock wraps after 95443.717 s:
    // with this offset it wraps 1.72 s into the first segment.
    let wrap_in = Duration::from_secs(95_442 - 3600);
    let enc = |name: &str, offset: Duration| {
        encode(
            dir.path(),
            name,
            Enc {
                offset,
                encoder: "x264enc key-int-max=15 bframes=2 b-adapt=false speed-preset=ultrafast",
                ..Enc::default()
            },
        )
    };
    let a = enc("a.ts", wrap_in);
    let b = enc("b.ts", wrap_in + Duration::from_secs(4));
    let bytes = std::fs::read(&a).unwrap();
    let info = probe_ts(&bytes).unwrap();
    // The raw PTS wraps from ~2^33 to ~0 inside the segment; the span stays 4 s.
    assert!(info.first_pts_ms > 95_000_000, "{info:?}");
    assert!(
        info.duration_ms.abs_diff(4000) <= 1 && info.last_pts_ms > info.first_pts_ms,
        "{info:?}"
    );
    let out = dir.path().join("out.mp4");
    let summary = remux_files(&[&a, &b], &out).unwrap();
    assert_eq!(summary.gaps, Duration::ZERO, "{summary:?}");
    check_mp4(&out, "h264", 640, 360, 120, 8.0);
}

#[test]
fn wall_clock_start_places_segments_after_a_clock_reset() {
    if !tools("wall_clock_start_places_segments_after_a_clock_reset") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // Two recorder runs: both clocks start at the same value.
    let a = std::fs::read(encode(dir.path(), "a.ts", Enc::default())).unwrap();
    let b = std::fs::read(encode(dir.path(), "b.ts", Enc::default())).unwrap();

    // By TS clock alone the second run cannot be placed: contiguous, and said so.
    let mut plain = Vec::new();
    let mut w = Fmp4Writer::new(&mut plain);
    w.push_segment(&a).unwrap();
    let p = w.push_segment(&b).unwrap().placement.unwrap();
    assert!(
        p.clamped && p.gap_before_ms == 0 && p.start_ms.abs_diff(4000) <= 1,
        "{p:?}"
    );
    w.finish().unwrap();

    // With the segments' wall-clock starts (file names): 10 s apart, so a 6 s gap.
    let utc = Duration::from_secs(1_795_000_000);
    let out = dir.path().join("out.mp4");
    let mut w = Fmp4Writer::new(std::fs::File::create(&out).unwrap());
    w.push_segment_at(&a, utc).unwrap();
    let p = w
        .push_segment_at(&b, utc + Duration::from_secs(10))
        .unwrap()
        .placement
        .unwrap();
    assert!(!p.clamped && p.start_ms == 10_000, "{p:?}");
    assert!(p.gap_before_ms.abs_diff(6000) <= 1, "{p:?}");
    let summary = w.finish().unwrap();
    assert!(
        (summary.duration.as_secs_f64() - 14.0).abs() < 0.01,
        "{summary:?}"
    );
    check_mp4(&out, "h264", 640, 360, 120, 14.0);
}

#[test]
fn reader_api_writes_the_same_bytes() {
    if !tools("reader_api_writes_the_same_bytes") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // High 4:4:4 this time (the avcC's chroma extension).
    let enc = |name: &str, offset: u64| {
        encode(
            dir.path(),
            name,
            Enc {
                offset: Duration::from_secs(offset),
                format: "Y444",
                ..Enc::default()
            },
        )
    };
    let (a, b) = (enc("a.ts", 0), enc("b.ts", 5));
    let mut from_slices = Vec::new();
    ts_to_fmp4(
        [std::fs::read(&a).unwrap(), std::fs::read(&b).unwrap()],
        &mut from_slices,
    )
    .unwrap();
    let mut from_readers = Vec::new();
    let mut w = Fmp4Writer::new(&mut from_readers);
    for p in [&a, &b] {
        // A reader that returns odd-sized chunks, so packets straddle reads.
        let r = std::io::BufReader::with_capacity(1000, std::fs::File::open(p).unwrap());
        w.push_segment_reader(r, None).unwrap();
    }
    w.finish().unwrap();
    assert_eq!(from_slices, from_readers);
    let out = dir.path().join("out.mp4");
    std::fs::write(&out, &from_slices).unwrap();
    check_mp4(&out, "h264", 640, 360, 120, 9.0);
}

#[test]
fn config_change_is_refused_naming_the_segment() {
    if !tools("config_change_is_refused_naming_the_segment") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = std::fs::read(encode(dir.path(), "a.ts", Enc::default())).unwrap();
    let small = std::fs::read(encode(
        dir.path(),
        "small.ts",
        Enc {
            offset: Duration::from_secs(4),
            width: 320,
            height: 240,
            ..Enc::default()
        },
    ))
    .unwrap();
    let c = std::fs::read(encode(
        dir.path(),
        "c.ts",
        Enc {
            offset: Duration::from_secs(8),
            ..Enc::default()
        },
    ))
    .unwrap();
    let out = dir.path().join("out.mp4");
    let mut w = Fmp4Writer::new(std::fs::File::create(&out).unwrap());
    w.push_segment(&a).unwrap();
    let err = w.push_segment(&small).unwrap_err();
    assert!(
        matches!(err, RemuxError::ConfigChanged { segment: 1, .. }),
        "{err}"
    );
    let msg = err.to_string();
    assert!(
        msg.starts_with("segment 1: ") && msg.contains("640x360 → 320x240"),
        "{msg}"
    );
    // The writer goes on: the refused segment left nothing behind.
    let ic = w.push_segment(&c).unwrap();
    assert_eq!(ic.placement.unwrap().gap_before_ms, 4000);
    w.finish().unwrap();
    check_mp4(&out, "h264", 640, 360, 120, 12.0);

    // The decoder configs tell the controller beforehand which segments go together.
    let (pa, ps) = (probe_ts(&a).unwrap(), probe_ts(&small).unwrap());
    assert_ne!(pa.decoder_config, ps.decoder_config);
    assert_eq!(pa.decoder_config, probe_ts(&c).unwrap().decoder_config);
}

#[test]
fn other_streams_are_skipped_and_audio_only_is_an_error() {
    if !tools("other_streams_are_skipped_and_audio_only_is_an_error") {
        return;
    }
    if !has_element("lamemp3enc") {
        skip(
            "other_streams_are_skipped_and_audio_only_is_an_error",
            "GStreamer element lamemp3enc missing (gstreamer1.0-plugins-good)",
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let av = dir.path().join("av.ts");
    gst(&format!(
        "mpegtsmux name=m ! filesink location={} \
         audiotestsrc num-buffers=100 ! lamemp3enc ! mpegaudioparse ! queue ! m. \
         videotestsrc num-buffers=60 pattern=ball ! video/x-raw,width=640,height=360,framerate=15/1 \
         ! x264enc key-int-max=15 bframes=0 speed-preset=ultrafast ! h264parse ! queue ! m.",
        av.display()
    ));
    let info = probe_ts(&std::fs::read(&av).unwrap()).unwrap();
    assert_eq!((info.frames, info.keyframes), (60, 4), "{info:?}");
    let out = dir.path().join("out.mp4");
    remux_files(&[&av], &out).unwrap();
    check_mp4(&out, "h264", 640, 360, 60, 4.0);

    let audio = dir.path().join("audio.ts");
    gst(&format!(
        "audiotestsrc num-buffers=50 ! lamemp3enc ! mpegaudioparse ! mpegtsmux ! filesink location={}",
        audio.display()
    ));
    let err = probe_ts(&std::fs::read(&audio).unwrap()).unwrap_err();
    assert!(
        matches!(
            err,
            RemuxError::Segment {
                source: TsError::NoVideoStream(_),
                ..
            }
        ),
        "{err}"
    );
    println!("{err}");
}

#[test]
fn probe_reports_frames_keyframes_and_pts() {
    if !tools("probe_reports_frames_keyframes_and_pts") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = std::fs::read(encode(dir.path(), "a.ts", Enc::default())).unwrap();
    let info: SegmentInfo = probe_ts(&a).unwrap();
    assert_eq!(info.codec, Codec::H264);
    assert_eq!((info.width, info.height), (640, 360));
    assert_eq!((info.frames, info.keyframes), (60, 4));
    // mpegtsmux's clock starts at 3600 s.
    assert_eq!(info.first_pts_ms, 3_600_000);
    assert!(info.last_pts_ms.abs_diff(3_603_933) <= 1, "{info:?}");
    assert!(info.duration_ms.abs_diff(4000) <= 1, "{info:?}");
    assert_eq!(info.decoder_config[0], 1, "avcC version");
    assert!(info.placement.is_none());
}

#[test]
fn truncated_corrupted_and_stripped_real_segments_never_panic() {
    if !tools("truncated_corrupted_and_stripped_real_segments_never_panic") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let a = std::fs::read(encode(dir.path(), "a.ts", Enc::default())).unwrap();

    // Cut inside a packet: an error naming it.
    let err = probe_ts(&a[..188 * 40 + 77]).unwrap_err();
    assert!(err.to_string().contains("truncated: 77 bytes"), "{err}");
    let mut sink = Vec::new();
    assert!(ts_to_fmp4([&a[..a.len() - 1]], &mut sink).is_err());

    // Cut at packet boundaries: fewer frames, or an error; never a panic.
    for packets in [0, 1, 2, 3, 5, 10, 50, 100, 200] {
        let cut = &a[..(188 * packets).min(a.len())];
        if let Ok(info) = probe_ts(cut) {
            assert!(info.frames <= 60);
        }
        let _ = ts_to_fmp4([cut], Vec::new());
    }

    // Packets of one PID taken out: the PAT (PID 0), the PMT, or the video.
    let pid = |p: &[u8]| (u16::from(p[1] & 0x1f) << 8) | u16::from(p[2]);
    let without = |drop: &dyn Fn(u16) -> bool| -> Vec<u8> {
        a.chunks(188)
            .filter(|p| !drop(pid(p)))
            .flatten()
            .copied()
            .collect()
    };
    let err = probe_ts(&without(&|p| p == 0)).unwrap_err();
    assert!(
        matches!(
            err,
            RemuxError::Segment {
                source: TsError::MissingPat,
                ..
            }
        ),
        "{err}"
    );
    // mpegtsmux puts the PMT on 0x20 and the video on 0x41.
    let err = probe_ts(&without(&|p| p == 0x20)).unwrap_err();
    assert!(
        matches!(
            err,
            RemuxError::Segment {
                source: TsError::MissingPmt,
                ..
            }
        ),
        "{err}"
    );
    let err = probe_ts(&without(&|p| p == 0x41)).unwrap_err();
    assert!(
        matches!(
            err,
            RemuxError::Segment {
                source: TsError::NoFrames,
                ..
            }
        ),
        "{err}"
    );

    // Random corruption of a real segment (sync bytes kept, so the parsers get past them).
    let mut seed = 0x2545_f491_u32;
    let mut rnd = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    let (mut ok, mut failed) = (0, 0);
    for round in 0..300 {
        let mut bad = a.clone();
        for _ in 0..(1 + round % 40) {
            let i = rnd() as usize % bad.len();
            if !i.is_multiple_of(188) {
                bad[i] = rnd() as u8;
            }
        }
        // Early in the file, hit the tables and the parameter sets.
        let i = rnd() as usize % (188 * 6);
        if !i.is_multiple_of(188) {
            bad[i] ^= 1 << (rnd() % 8);
        }
        match ts_to_fmp4([&bad[..]], Vec::new()) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        let _ = probe_ts(&bad);
    }
    println!("corrupted segments: {ok} remuxed, {failed} refused");

    // Pure noise.
    for len in [1usize, 187, 188, 189, 188 * 7, 10_000] {
        let noise: Vec<u8> = (0..len).map(|_| rnd() as u8).collect();
        assert!(probe_ts(&noise).is_err());
        assert!(ts_to_fmp4([&noise], Vec::new()).is_err());
    }
}

/// Speed: remuxing a 1-minute 2 Mbit/s 720p segment. Run with
/// `cargo test --release -p stationwatch-remux --test gst_remux -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: encodes a 1-minute segment first"]
fn speed_one_minute_2mbit_segment() {
    if !tools("speed_one_minute_2mbit_segment") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = encode(
        dir.path(),
        "minute.ts",
        Enc {
            frames: 1500,
            encoder: "x264enc bitrate=2000 key-int-max=50 bframes=0 speed-preset=ultrafast",
            width: 1280,
            height: 720,
            fps: 25,
            pattern: "snow",
            ..Enc::default()
        },
    );
    let ts = std::fs::read(&path).unwrap();
    let mut out = Vec::with_capacity(ts.len());
    let rounds = 20;
    let t0 = Instant::now();
    for _ in 0..rounds {
        out.clear();
        ts_to_fmp4([&ts], &mut out).unwrap();
    }
    let secs = t0.elapsed().as_secs_f64() / rounds as f64;
    let mb = ts.len() as f64 / 1e6;
    println!(
        "remux of a {:.1} MB 1-minute segment: {:.1} ms, {:.0} MB/s ({:.0}x real time); MP4 {:.1} MB",
        mb,
        secs * 1e3,
        mb / secs,
        60.0 / secs,
        out.len() as f64 / 1e6
    );
    check_mp4_len(&out, &dir.path().join("minute.mp4"));
}

fn check_mp4_len(mp4: &[u8], path: &Path) {
    std::fs::write(path, mp4).unwrap();
    check_mp4(path, "h264", 1280, 720, 1500, 60.0);
}
