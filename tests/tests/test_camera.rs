//! The RTSP test camera itself: it serves a decodable stream, several clients share it, it
//! goes away on stop() and comes back on the same URL on restart().

use std::io::{BufRead, BufReader, Read};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use stationwatch_tests::{
    ffmpeg_pull, ffprobe_decodable_frames, ffprobe_packets, ffprobe_video_codec, have_binary,
    have_gst_element, CameraOpts, Codec, TestCamera,
};

const BIN: &str = env!("CARGO_BIN_EXE_test-camera");
const PULL_SECONDS: f64 = 3.0;

fn have_ffmpeg() -> bool {
    stationwatch_tests::require(
        have_binary("ffmpeg") && have_binary("ffprobe"),
        "ffmpeg/ffprobe not installed",
    )
}

/// Pulls PULL_SECONDS of `cam` and checks the file holds a decodable stream of `codec` with
/// about the expected number of frames.
fn assert_serves(cam: &TestCamera, codec: Codec, out: &Path) {
    ffmpeg_pull(cam.url(), PULL_SECONDS, out).expect("pulling from the test camera");
    let name = ffprobe_video_codec(out).expect("probing codec");
    assert_eq!(name, codec.ffprobe_name(), "codec of {}", out.display());

    let expected = PULL_SECONDS * f64::from(cam.opts().fps);
    let frames = ffprobe_decodable_frames(out).expect("counting frames");
    let frames_f = frames as f64;
    assert!(
        frames_f >= expected * 0.7 && frames_f <= expected * 1.3,
        "{frames} decodable frames, expected about {expected}"
    );

    let pts = ffprobe_packets(out).expect("listing packets");
    assert!(!pts.is_empty(), "no packets with timestamps");
    let span =
        pts.iter().cloned().fold(f64::MIN, f64::max) - pts.iter().cloned().fold(f64::MAX, f64::min);
    assert!(
        (PULL_SECONDS - 1.0..=PULL_SECONDS + 0.5).contains(&span),
        "packets span {span:.2} s, expected about {PULL_SECONDS} s"
    );
}

fn assert_refused(port: u16) {
    let err = TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_secs(2))
        .expect_err("the stopped camera still accepts connections");
    assert_eq!(err.kind(), std::io::ErrorKind::ConnectionRefused, "{err}");
}

#[test]
fn h264_camera_serves_stops_and_restarts_on_the_same_port() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut cam = TestCamera::start(BIN, CameraOpts::default()).expect("starting test camera");
    let url = cam.url().to_string();
    assert_eq!(url, format!("rtsp://127.0.0.1:{}/cam", cam.port()));

    assert_serves(&cam, Codec::H264, &dir.path().join("first.ts"));

    cam.stop().expect("stopping");
    assert!(!cam.is_running());
    assert_refused(cam.port());

    cam.restart().expect("restarting");
    assert_eq!(cam.url(), url, "restart must keep the URL");
    assert_serves(&cam, Codec::H264, &dir.path().join("second.ts"));
}

#[test]
fn h265_camera_serves_hevc() {
    if !have_ffmpeg() {
        return;
    }
    if !stationwatch_tests::require(
        have_gst_element("x265enc"),
        "GStreamer element x265enc not installed (gstreamer1.0-plugins-bad)",
    ) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let opts = CameraOpts {
        codec: Codec::H265,
        ..CameraOpts::default()
    };
    let cam = TestCamera::start(BIN, opts).expect("starting H.265 test camera");
    assert_serves(&cam, Codec::H265, &dir.path().join("hevc.ts"));
}

#[test]
fn clients_share_one_stream() {
    if !have_ffmpeg() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let cam = TestCamera::start(BIN, CameraOpts::default()).expect("starting test camera");
    let outs: Vec<_> = (0..2)
        .map(|i| dir.path().join(format!("c{i}.ts")))
        .collect();
    std::thread::scope(|s| {
        for out in &outs {
            let url = cam.url();
            s.spawn(move || ffmpeg_pull(url, 2.0, out).expect("concurrent pull"));
        }
    });
    for out in &outs {
        let frames = ffprobe_decodable_frames(out).unwrap();
        assert!(frames >= 20, "{}: only {frames} frames", out.display());
    }
}

#[test]
fn ready_line_once_and_clean_exit_on_sigterm() {
    let mut child = Command::new(BIN)
        .args(["--port", "0", "--width", "160", "--height", "120"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    assert!(
        line.starts_with("READY rtsp://127.0.0.1:") && line.trim_end().ends_with("/cam"),
        "{line:?}"
    );
    // SAFETY: signalling our own, not yet reaped, child.
    unsafe {
        libc::kill(child.id() as libc::pid_t, libc::SIGTERM);
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if Instant::now() > deadline {
            child.kill().unwrap();
            child.wait().unwrap();
            panic!("test-camera ignored SIGTERM for 10 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(status.code(), Some(0), "{status}");
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "", "READY must be the only stdout line");
}

#[test]
fn port_in_use_is_a_clear_error_with_exit_code_1() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let out = Command::new(BIN)
        .args(["--port", &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    assert!(out.stdout.is_empty(), "no READY line on failure");
    assert!(
        stderr.contains(&port.to_string()) && stderr.to_lowercase().contains("in use"),
        "unclear error: {stderr}"
    );

    // The library reports the same failure as an error, not a hang or a panic.
    let err = TestCamera::start(
        BIN,
        CameraOpts {
            port,
            ..CameraOpts::default()
        },
    )
    .err()
    .expect("starting on a taken port must fail");
    assert!(
        format!("{err:#}").contains("exited before READY"),
        "{err:#}"
    );
}
