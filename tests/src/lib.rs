//! Test fixtures for Stationwatch end-to-end tests.
//!
//! - [`TestCamera`]: runs the `test-camera` binary (an RTSP server fed by `videotestsrc`) as a
//!   child process, waits for it to listen, and can stop and restart it on the same port to
//!   simulate a camera that drops off the network and comes back.
//! - [`ffprobe_packets`], [`ffprobe_decodable_frames`], [`ffprobe_video_codec`]: inspect a
//!   recorded file with `ffprobe`.
//! - [`ffmpeg_pull`]: record a few seconds of an RTSP stream with `ffmpeg`.
//! - [`free_port`], [`have_binary`], [`have_gst_element`]: environment helpers so tests can
//!   skip cleanly when a tool is missing.
//!
//! The `test-camera` binary lives in this package. Integration tests of this package find it
//! with `env!("CARGO_BIN_EXE_test-camera")`; anything else can use [`test_camera_bin`].

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};

pub mod agent_process;
pub mod archive;
pub mod browser;
pub mod controller_process;
pub mod gateway_process;
pub mod mosquitto;
pub mod netns;
pub mod notify;
pub mod postgres;
pub mod proc_stats;
pub mod process;
pub mod requests;
pub mod s3;
pub mod srt;
pub mod tmpfs;

/// How long [`TestCamera::start`] waits for the `READY` line.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`TestCamera::stop`] waits after SIGTERM before it kills the process.
pub const STOP_GRACE: Duration = Duration::from_secs(3);
/// How long [`TestCamera::restart`] keeps retrying when the port is not free yet.
pub const RESTART_BIND_RETRY: Duration = Duration::from_secs(10);
/// Most stderr bytes kept from the camera process (the tail is kept).
const STDERR_KEEP: usize = 64 * 1024;

/// Returns a TCP port on 127.0.0.1 that was free a moment ago.
///
/// Racy by nature (another process may take it before you bind it); prefer passing port 0 to
/// [`TestCamera::start`], which lets the camera pick its own port.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0 must work on a test host")
}

/// True if `name` is an executable file, either given as a path or found on `PATH`.
pub fn have_binary(name: &str) -> bool {
    fn is_executable(p: &Path) -> bool {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    }
    if name.contains('/') {
        return is_executable(Path::new(name));
    }
    std::env::var_os("PATH")
        .map(|paths| std::env::split_paths(&paths).any(|dir| is_executable(&dir.join(name))))
        .unwrap_or(false)
}

/// True if the GStreamer element factory `name` (e.g. `"x265enc"`) is installed.
pub fn have_gst_element(name: &str) -> bool {
    gst::init().is_ok() && gst::ElementFactory::find(name).is_some()
}

/// Path of the `test-camera` binary next to the running test executable.
///
/// Test executables live in `target/<profile>/deps/`, binaries in `target/<profile>/`, so this
/// is `current_exe()/../../test-camera`. `STATIONWATCH_TEST_CAMERA` overrides it. Cargo only
/// builds the binary for tests of this package (`stationwatch-tests`); from elsewhere, run
/// `cargo build --workspace --bin test-camera` first.
pub fn test_camera_bin() -> PathBuf {
    if let Some(p) = std::env::var_os("STATIONWATCH_TEST_CAMERA") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().unwrap_or_default();
    let mut candidates = Vec::new();
    if let Some(dir) = exe.parent() {
        if let Some(profile_dir) = dir.parent() {
            candidates.push(profile_dir.join("test-camera"));
        }
        candidates.push(dir.join("test-camera"));
    }
    candidates
        .iter()
        .find(|p| p.is_file())
        .or(candidates.first())
        .cloned()
        .unwrap_or_else(|| PathBuf::from("test-camera"))
}

/// Video codec of the test camera.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Default)]
pub enum Codec {
    #[default]
    H264,
    H265,
}

impl Codec {
    /// Value of the `--codec` argument of `test-camera`.
    pub fn as_arg(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
        }
    }

    /// `codec_name` as reported by ffprobe.
    pub fn ffprobe_name(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "hevc",
        }
    }

    /// GStreamer encoder element the camera uses.
    pub fn gst_encoder(self) -> &'static str {
        match self {
            Codec::H264 => "x264enc",
            Codec::H265 => "x265enc",
        }
    }
}

/// Options of a [`TestCamera`]. The default is a small, cheap stream (320x240 @ 15 fps H.264,
/// 500 kbit/s) on a port picked by the camera itself (`port: 0`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CameraOpts {
    /// 0 lets the camera pick a free port; [`TestCamera::port`] tells which.
    pub port: u16,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub codec: Codec,
    /// `snow`: noise, so the encoder sends its full bitrate (benchmarks); default `ball`.
    pub snow: bool,
    /// Run inside this command prefix (e.g. `ip netns exec NS`, to serve on a namespace's
    /// loopback); empty: directly.
    pub prefix: Vec<String>,
    /// Show the switchable scene (`--pattern scene`), read from this file:
    /// [`TestCamera::set_scene`] changes it while the camera runs.
    pub scene_file: Option<PathBuf>,
    /// Change the picture size to (width, height) this long after the stream started
    /// (`--resize-after-secs`, `--resize-to`).
    pub resize: Option<(Duration, (u32, u32))>,
    /// RTP timestamp of the first packet (`--rtp-timestamp-offset`), e.g. close to 2^32.
    pub rtp_timestamp_offset: Option<u32>,
    /// Parameter sets only in the SDP, never in band (`--params-out-of-band`).
    pub params_out_of_band: bool,
    /// H.264 keyframes as several slices, each with the parameter sets in band in front
    /// (`--sliced-threads`: x264 sliced threads, as some cameras send).
    pub sliced_threads: bool,
}

impl Default for CameraOpts {
    fn default() -> Self {
        CameraOpts {
            port: 0,
            width: 320,
            height: 240,
            fps: 15,
            bitrate_kbps: 500,
            codec: Codec::H264,
            snow: false,
            prefix: Vec::new(),
            scene_file: None,
            resize: None,
            rtp_timestamp_offset: None,
            params_out_of_band: false,
            sliced_threads: false,
        }
    }
}

impl CameraOpts {
    fn args(&self) -> Vec<String> {
        vec![
            "--port".into(),
            self.port.to_string(),
            "--width".into(),
            self.width.to_string(),
            "--height".into(),
            self.height.to_string(),
            "--fps".into(),
            self.fps.to_string(),
            "--bitrate-kbps".into(),
            self.bitrate_kbps.to_string(),
            "--codec".into(),
            self.codec.as_arg().into(),
            "--pattern".into(),
            match (&self.scene_file, self.snow) {
                (Some(_), _) => "scene",
                (None, true) => "snow",
                (None, false) => "ball",
            }
            .into(),
        ]
        .into_iter()
        .chain(
            self.scene_file
                .iter()
                .flat_map(|f| ["--scene-file".into(), f.display().to_string()]),
        )
        .chain(self.resize.iter().flat_map(|(after, (w, h))| {
            [
                "--resize-after-secs".into(),
                after.as_secs().to_string(),
                "--resize-to".into(),
                format!("{w}x{h}"),
            ]
        }))
        .chain(
            self.rtp_timestamp_offset
                .iter()
                .flat_map(|o| ["--rtp-timestamp-offset".into(), o.to_string()]),
        )
        .chain(
            self.params_out_of_band
                .then(|| "--params-out-of-band".to_string()),
        )
        .chain(self.sliced_threads.then(|| "--sliced-threads".to_string()))
        .collect()
    }
}

/// A running `test-camera` child process.
struct Running {
    child: Child,
    url: String,
    port: u16,
    stderr_thread: Option<JoinHandle<()>>,
}

/// Why a spawn attempt failed: restart retries only when the process exited by itself (most
/// likely because the port was still taken).
enum SpawnError {
    Exited(anyhow::Error),
    Other(anyhow::Error),
}

impl From<SpawnError> for anyhow::Error {
    fn from(e: SpawnError) -> Self {
        match e {
            SpawnError::Exited(e) | SpawnError::Other(e) => e,
        }
    }
}

/// An RTSP test camera running as a child process (the `test-camera` binary).
///
/// Dropping it kills the process.
pub struct TestCamera {
    bin: PathBuf,
    opts: CameraOpts,
    url: String,
    running: Option<Running>,
    stderr: Arc<Mutex<String>>,
}

impl TestCamera {
    /// Starts `bin` (the `test-camera` binary) with `opts` and waits up to 20 s for it to print
    /// `READY <url>`. With `opts.port == 0` the camera picks a free port.
    pub fn start(bin: impl AsRef<Path>, opts: CameraOpts) -> Result<TestCamera> {
        let bin = bin.as_ref().to_path_buf();
        if !bin.is_file() {
            bail!(
                "test-camera binary not found at {} (build it with \
                 `cargo build --workspace --bin test-camera`, or set \
                 STATIONWATCH_TEST_CAMERA)",
                bin.display()
            );
        }
        let stderr = Arc::new(Mutex::new(String::new()));
        let running = spawn(&bin, &opts, &stderr)?;
        let mut opts = opts;
        opts.port = running.port;
        Ok(TestCamera {
            bin,
            opts,
            url: running.url.clone(),
            running: Some(running),
            stderr,
        })
    }

    /// `rtsp://127.0.0.1:PORT/cam`. Stays the same across [`TestCamera::restart`].
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Shows another scene (`normal`, `black`, `tape`, `blurred`, `moved`, `darker`,
    /// `brighter`, `frozen`); the camera switches within 200 ms. Needs `scene_file` set.
    pub fn set_scene(&self, scene: &str) -> Result<()> {
        let file = self
            .opts
            .scene_file
            .as_ref()
            .context("this test camera was started without a scene file")?;
        let tmp = file.with_extension("tmp");
        std::fs::write(&tmp, scene)?;
        std::fs::rename(&tmp, file)?;
        Ok(())
    }

    /// The TCP port the camera listens on.
    pub fn port(&self) -> u16 {
        self.opts.port
    }

    /// The options, with the actual port filled in.
    pub fn opts(&self) -> &CameraOpts {
        &self.opts
    }

    /// Process id of the camera, if it is running.
    pub fn pid(&self) -> Option<u32> {
        self.running.as_ref().map(|r| r.child.id())
    }

    /// True if the process is still alive.
    pub fn is_running(&mut self) -> bool {
        match &mut self.running {
            Some(r) => matches!(r.child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Everything the camera wrote on stderr so far (the last 64 KiB).
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// Stops the camera: SIGTERM, then waits up to 3 s, then SIGKILL. Clients see the server
    /// go away; new connections are refused. Doing nothing if it is not running.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut running) = self.running.take() else {
            return Ok(());
        };
        let status = process::terminate_child(&mut running.child, STOP_GRACE)?;
        if let Some(t) = running.stderr_thread.take() {
            let _ = t.join();
        }
        if !status.is_some_and(|s| s.success()) {
            // SIGKILL after the grace period, or an error exit: worth telling, not failing.
            eprintln!(
                "test-camera on port {} ended with {status:?} (None: killed); stderr:\n{}",
                self.opts.port,
                self.stderr()
            );
        }
        Ok(())
    }

    /// Stops the camera if it runs, then starts it again on the same port, retrying for up to
    /// 10 s while the port is not free yet.
    pub fn restart(&mut self) -> Result<()> {
        self.stop()?;
        let deadline = Instant::now() + RESTART_BIND_RETRY;
        loop {
            match spawn(&self.bin, &self.opts, &self.stderr) {
                Ok(running) => {
                    if running.url != self.url {
                        bail!(
                            "restarted camera serves {} instead of {}",
                            running.url,
                            self.url
                        );
                    }
                    self.running = Some(running);
                    return Ok(());
                }
                Err(SpawnError::Exited(_)) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(250));
                }
                Err(e) => {
                    return Err(anyhow::Error::from(e)
                        .context(format!("restarting test-camera on port {}", self.opts.port)))
                }
            }
        }
    }
}

impl Drop for TestCamera {
    fn drop(&mut self) {
        if let Some(mut running) = self.running.take() {
            let _ = running.child.kill();
            let _ = running.child.wait();
            if let Some(t) = running.stderr_thread.take() {
                let _ = t.join();
            }
        }
    }
}

fn spawn(
    bin: &Path,
    opts: &CameraOpts,
    stderr: &Arc<Mutex<String>>,
) -> Result<Running, SpawnError> {
    let mut cmd = match opts.prefix.split_first() {
        Some((first, rest)) => {
            let mut c = Command::new(first);
            c.args(rest).arg(bin);
            c
        }
        None => Command::new(bin),
    };
    let mut child = cmd
        .args(opts.args())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("spawning {}", bin.display()))
        .map_err(SpawnError::Other)?;

    let stdout = child.stdout.take().expect("stdout is piped");
    let (tx, rx) = mpsc::channel::<String>();
    // Reads the READY line, then keeps draining stdout so the child never blocks on it.
    std::thread::spawn(move || {
        let mut tx = Some(tx);
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Some(url) = line.strip_prefix("READY ") {
                if let Some(tx) = tx.take() {
                    let _ = tx.send(url.trim().to_string());
                }
            }
        }
    });

    let child_stderr = child.stderr.take().expect("stderr is piped");
    let sink = Arc::clone(stderr);
    let stderr_thread = std::thread::spawn(move || {
        let mut reader = BufReader::new(child_stderr);
        let mut buf = [0u8; 4096];
        while let Ok(n) = reader.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut s) = sink.lock() {
                s.push_str(&String::from_utf8_lossy(&buf[..n]));
                if s.len() > STDERR_KEEP {
                    let mut cut = s.len() - STDERR_KEEP;
                    while !s.is_char_boundary(cut) {
                        cut += 1;
                    }
                    s.drain(..cut);
                }
            }
        }
    });

    let stderr_text = |stderr: &Arc<Mutex<String>>| -> String {
        stderr.lock().map(|s| s.clone()).unwrap_or_default()
    };

    match rx.recv_timeout(READY_TIMEOUT) {
        Ok(url) => {
            let port = port_of(&url)
                .with_context(|| format!("test-camera printed a bad URL: {url:?}"))
                .map_err(SpawnError::Other)?;
            Ok(Running {
                child,
                url,
                port,
                stderr_thread: Some(stderr_thread),
            })
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // stdout closed without READY: the process is exiting.
            let status = child.wait();
            let _ = stderr_thread.join();
            let status = status
                .map(|s| s.to_string())
                .unwrap_or_else(|e| format!("unknown status ({e})"));
            Err(SpawnError::Exited(anyhow!(
                "test-camera exited before READY ({status}); stderr:\n{}",
                stderr_text(stderr)
            )))
        }
        Err(mpsc::RecvTimeoutError::Timeout) => {
            let _ = child.kill();
            let _ = child.wait();
            let _ = stderr_thread.join();
            Err(SpawnError::Other(anyhow!(
                "test-camera printed no READY line within {READY_TIMEOUT:?}; stderr:\n{}",
                stderr_text(stderr)
            )))
        }
    }
}

/// Port of `rtsp://HOST:PORT/path`.
fn port_of(url: &str) -> Result<u16> {
    let rest = url.strip_prefix("rtsp://").context("not an rtsp:// URL")?;
    let authority = rest.split('/').next().unwrap_or_default();
    let (_, port) = authority.rsplit_once(':').context("no port in URL")?;
    port.parse().context("bad port in URL")
}

fn run_tool(cmd: &mut Command) -> Result<String> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("running {program} (is it installed?)"))?;
    if !out.status.success() {
        bail!(
            "{program} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// `pts_time` of every packet of the first video stream of `path`, in file order. Packets
/// without a timestamp are skipped.
pub fn ffprobe_packets(path: impl AsRef<Path>) -> Result<Vec<f64>> {
    let path = path.as_ref();
    let out = run_tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "packet=pts_time", "-of", "csv=p=0"])
            .arg(path),
    )
    .with_context(|| format!("listing packets of {}", path.display()))?;
    Ok(out
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .filter_map(|l| l.parse::<f64>().ok())
        .collect())
}

/// Number of frames of the first video stream of `path` that decode (`ffprobe -count_frames`).
pub fn ffprobe_decodable_frames(path: impl AsRef<Path>) -> Result<u64> {
    let path = path.as_ref();
    let out = run_tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
            .arg(path),
    )
    .with_context(|| format!("counting frames of {}", path.display()))?;
    let first = out
        .lines()
        .map(|l| l.trim().trim_end_matches(','))
        .find(|l| !l.is_empty())
        .with_context(|| format!("{} has no video stream", path.display()))?;
    first
        .parse()
        .with_context(|| format!("ffprobe printed {first:?} as frame count"))
}

/// `codec_name` of the first video stream of `path` (`"h264"`, `"hevc"`, ...).
pub fn ffprobe_video_codec(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    let out = run_tool(
        Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0"])
            .args(["-show_entries", "stream=codec_name", "-of", "csv=p=0"])
            .arg(path),
    )
    .with_context(|| format!("probing {}", path.display()))?;
    out.lines()
        .map(|l| l.trim().trim_end_matches(','))
        .find(|l| !l.is_empty())
        .map(str::to_string)
        .with_context(|| format!("{} has no video stream", path.display()))
}

/// Records `seconds` of the RTSP stream at `url` (over TCP) into `out` without re-encoding
/// (`ffmpeg -rtsp_transport tcp -i URL -t SECONDS -c copy OUT`). The container follows the
/// extension of `out` (`.ts`, `.mkv`, ...). Fails if ffmpeg fails or takes 20 s longer than
/// asked.
pub fn ffmpeg_pull(url: &str, seconds: f64, out: impl AsRef<Path>) -> Result<()> {
    let out = out.as_ref();
    let mut child = Command::new("ffmpeg")
        .args(["-nostdin", "-hide_banner", "-loglevel", "error", "-y"])
        .args(["-rtsp_transport", "tcp", "-i", url])
        .args(["-t", &seconds.to_string(), "-c", "copy"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("spawning ffmpeg (is it installed?)")?;
    let mut err_pipe = child.stderr.take().expect("stderr is piped");
    let err_thread = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err_pipe.read_to_string(&mut s);
        s
    });
    let deadline = Instant::now() + Duration::from_secs_f64(seconds.max(0.0) + 20.0);
    let status = loop {
        if let Some(status) = child.try_wait().context("waiting for ffmpeg")? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let err = err_thread.join().unwrap_or_default();
    match status {
        Some(s) if s.success() => Ok(()),
        Some(s) => bail!("ffmpeg pulling {url} failed ({s}): {}", err.trim()),
        None => bail!("ffmpeg pulling {url} timed out: {}", err.trim()),
    }
}

/// Environment variable naming the file where skipped tests are listed, one per line
/// (`scripts/test` sets it and prints a summary at the end).
pub const SKIP_FILE_ENV: &str = "STATIONWATCH_SKIP_FILE";

/// True when running in CI (`CI` set to anything but empty, `0` or `false`): there a missing
/// prerequisite is a failure, never a skip.
pub fn in_ci() -> bool {
    std::env::var("CI")
        .map(|v| !matches!(v.trim().to_ascii_lowercase().as_str(), "" | "0" | "false"))
        .unwrap_or(false)
}

/// Name of the running test: libtest names the test's thread after it; the test binary's
/// name (without cargo's hash) is put in front, e.g. `storage::retention_deletes_oldest`.
pub fn current_test_name() -> String {
    let exe = std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_default();
    let exe = match exe.rsplit_once('-') {
        Some((name, hash)) if hash.chars().all(|c| c.is_ascii_hexdigit()) => name.to_string(),
        _ => exe,
    };
    let thread = std::thread::current()
        .name()
        .unwrap_or("unknown-test")
        .to_string();
    format!("{exe}::{thread}")
}

/// Prerequisite gate for every end-to-end test: `require(have_x, "x missing (...)")`.
///
/// Returns `true` when `ok` (the test runs). Otherwise, with `CI=true` it **panics** with the
/// reason, so a machine that lost a package or root turns CI red; outside CI it prints
/// `SKIP <test>: <why>`, appends the same line to the file named by `STATIONWATCH_SKIP_FILE`
/// (counted and listed at the end of `scripts/test`), and returns `false`: the caller returns.
#[track_caller]
pub fn require(ok: bool, why: &str) -> bool {
    if ok {
        return true;
    }
    skip_or_fail(why);
    false
}

/// Like [`require`] for a check that yields the reason it fails (`None` = everything present).
#[track_caller]
pub fn require_none(missing: Option<String>) -> bool {
    match missing {
        None => true,
        Some(why) => {
            skip_or_fail(&why);
            false
        }
    }
}

/// A prerequisite is missing: fail under CI, otherwise record and announce the skip.
#[track_caller]
pub fn skip_or_fail(why: &str) {
    let test = current_test_name();
    if in_ci() {
        panic!(
            "{test}: prerequisite missing and CI is set, so this is a failure, not a skip: {why}"
        );
    }
    let line = format!("SKIP {test}: {why}");
    eprintln!("{line}");
    if let Some(path) = std::env::var_os(SKIP_FILE_ENV) {
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

/// True when this process runs as root (tmpfs mounts, network namespaces).
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Polls `f` every 200 ms until it returns `Some`, or panics with `what` and the last error.
pub fn eventually<T>(what: &str, secs: u64, mut f: impl FnMut() -> Result<Option<T>>) -> T {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut last = String::new();
    loop {
        match f() {
            Ok(Some(v)) => return v,
            Ok(None) => {}
            Err(e) => last = e.to_string(),
        }
        if Instant::now() > deadline {
            panic!("{what}: not within {secs} s (last error: {last})");
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_of_parses_rtsp_urls() {
        assert_eq!(port_of("rtsp://127.0.0.1:8554/cam").unwrap(), 8554);
        assert_eq!(port_of("rtsp://127.0.0.1:1/a/b").unwrap(), 1);
        assert!(port_of("http://127.0.0.1:80/").is_err());
        assert!(port_of("rtsp://127.0.0.1/cam").is_err());
    }

    #[test]
    fn free_port_is_bindable() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).unwrap();
    }

    #[test]
    fn have_binary_finds_sh_and_not_nonsense() {
        assert!(have_binary("sh"));
        assert!(have_binary("/bin/sh"));
        assert!(!have_binary("no-such-binary-stationwatch"));
    }

    #[test]
    fn default_opts_are_small() {
        let o = CameraOpts::default();
        assert_eq!((o.width, o.height, o.fps, o.port), (320, 240, 15, 0));
        assert!(o.args().windows(2).any(|w| w == ["--codec", "h264"]));
    }
}
