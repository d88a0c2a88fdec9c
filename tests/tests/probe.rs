//! `station-agent probe` and `check --probe` (issue 18): what a technician learns about a
//! camera before the election, against the RTSP test camera (real GStreamer RTSP server, real
//! x264/x265) whose settings the test chose: codec, resolution, frame rate, keyframe interval
//! (the test camera sends one per second), bitrate, audio; a snapshot saved; the password in
//! the URL never printed; a camera that refuses the connection reported as such.

use std::time::{Duration, Instant};

use stationwatch_tests::agent_process::agent_command;
use stationwatch_tests::{free_port, CameraOpts, Codec, TestCamera};

fn field(out: &str, name: &str) -> String {
    out.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name:?} in:\n{out}"))
        .to_owned()
}

fn number(text: &str) -> f64 {
    text.split(|c: char| !(c.is_ascii_digit() || c == '.'))
        .find(|t| !t.is_empty())
        .and_then(|t| t.parse().ok())
        .unwrap_or_else(|| panic!("no number in {text:?}"))
}

fn with_password(url: &str) -> String {
    url.replacen("rtsp://", "rtsp://tech:s3cret-pw@", 1)
}

#[test]
fn probe_reports_what_the_camera_sends_and_never_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cam = TestCamera::start(
        env!("CARGO_BIN_EXE_test-camera"),
        CameraOpts {
            width: 640,
            height: 360,
            fps: 15,
            bitrate_kbps: 800,
            // Noise: the encoder needs all of its bitrate, so the figure can be checked.
            snow: true,
            ..CameraOpts::default()
        },
    )
    .unwrap();
    let snap = dir.path().join("desk.jpg");
    let url = with_password(cam.url());
    let (code, out, err) = agent_command(&[
        "probe",
        &url,
        "--seconds",
        "5",
        "--snapshot",
        snap.to_str().unwrap(),
    ])
    .unwrap();
    eprintln!("{out}{err}");
    assert!(code.success(), "exit {code}:\n{out}{err}");
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "the password was printed"
    );
    assert!(field(&out, "video").starts_with("H.264"), "{out}");
    assert_eq!(field(&out, "resolution"), "640x360");
    let fps = number(&field(&out, "frame rate"));
    assert!((13.0..=17.0).contains(&fps), "{fps} fps");
    let k = number(&field(&out, "keyframe interval"));
    assert!(
        (0.8..=1.25).contains(&k),
        "keyframe interval {k} s (the camera sends one a second)"
    );
    let kbps = number(&field(&out, "bitrate"));
    assert!(
        (300.0..=1600.0).contains(&kbps),
        "{kbps} kbit/s for 800 asked"
    );
    assert_eq!(field(&out, "audio"), "none");
    assert!(!out.contains("WARNING"), "{out}");
    let jpeg = std::fs::read(&snap).unwrap();
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "a JPEG snapshot");

    // H.265: recorded, but browsers cannot play it.
    let hevc = TestCamera::start(
        env!("CARGO_BIN_EXE_test-camera"),
        CameraOpts {
            codec: Codec::H265,
            ..CameraOpts::default()
        },
    )
    .unwrap();
    let (code, out, _) = agent_command(&[
        "probe",
        hevc.url(),
        "--seconds",
        "3",
        "--snapshot",
        snap.to_str().unwrap(),
    ])
    .unwrap();
    assert!(code.success(), "{out}");
    assert!(field(&out, "video").starts_with("H.265"), "{out}");
    assert!(
        out.contains("WARNING: H.265") && out.contains("browsers cannot play"),
        "{out}"
    );

    // `check --probe` probes every configured RTSP camera and warns that a live camera without
    // a sub-stream has no lighter rung.
    let storage = dir.path().join("rec");
    let cfg = dir.path().join("agent.toml");
    std::fs::write(
        &cfg,
        stationwatch_tests::agent_process::config(
            &storage,
            4,
            &[(
                "desk",
                &format!("source = \"{url}\"\nlive_target = \"srt://127.0.0.1:9000\"\n"),
            )],
        ),
    )
    .unwrap();
    let (code, out, err) =
        agent_command(&["check", "-c", cfg.to_str().unwrap(), "--probe"]).unwrap();
    eprintln!("{out}{err}");
    assert!(code.success(), "{out}{err}");
    assert!(out.contains("probe of camera desk:"), "{out}");
    assert!(out.contains("resolution: 640x360"), "{out}");
    assert!(out.contains("no live_sub_stream"), "{out}");
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "the password was printed"
    );
}

#[test]
fn a_camera_that_refuses_is_reported_without_the_password() {
    let url = format!("rtsp://tech:s3cret-pw@127.0.0.1:{}/stream", free_port());
    let t = Instant::now();
    let (code, out, err) = agent_command(&["probe", &url, "--seconds", "2"]).unwrap();
    eprintln!("{out}{err}");
    assert!(!code.success(), "{out}");
    assert!(out.contains("cannot probe"), "{out}");
    assert!(
        !out.contains("s3cret") && !err.contains("s3cret"),
        "the password was printed"
    );
    assert!(
        t.elapsed() < Duration::from_secs(30),
        "took {:?}",
        t.elapsed()
    );
}

/// A V4L2 source that is not there, or a device node that is not a camera, is reported as
/// such (this machine has no camera: the V4L2 path that succeeds is not tested here).
#[test]
fn a_usb_camera_that_is_missing_or_not_a_camera_is_reported_clearly() {
    let (code, out, err) = agent_command(&["probe", "/dev/video63", "--seconds", "1"]).unwrap();
    eprintln!("{out}{err}");
    assert!(!code.success(), "{out}");
    assert!(
        out.contains("cannot probe: /dev/video63: no such device"),
        "{out}"
    );
    if !stationwatch_tests::is_root() {
        eprintln!("SKIP (part): needs root to make a device node that is not a camera");
        return;
    }
    // /dev/video62 as a character device that is not V4L2 (the null device's numbers).
    let node = std::path::Path::new("/dev/video62");
    let _ = std::fs::remove_file(node);
    let made = std::process::Command::new("mknod")
        .args([node.to_str().unwrap(), "c", "1", "3"])
        .status()
        .unwrap();
    assert!(made.success());
    struct Rm<'a>(&'a std::path::Path);
    impl Drop for Rm<'_> {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(self.0);
        }
    }
    let _rm = Rm(node);
    let t = Instant::now();
    let (code, out, err) = agent_command(&["probe", "/dev/video62", "--seconds", "1"]).unwrap();
    eprintln!("{out}{err}");
    assert!(!code.success(), "{out}");
    assert!(out.contains("cannot probe: /dev/video62: "), "{out}");
    assert!(
        t.elapsed() < Duration::from_secs(15),
        "took {:?}",
        t.elapsed()
    );
}
