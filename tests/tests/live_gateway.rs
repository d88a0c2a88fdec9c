//! Watching live through the gateway (issue 17), end to end with real parts: Mosquitto, the
//! controller, a real agent streaming its test camera over SRT, the `live-gateway` binary, and
//! headless Chromium playing the station page's player.
//!
//! What a user would check: the operator's player advances; the public page's stream has the
//! privacy masks applied (pixels inside the mask uniform in a decoded frame) while a non-public
//! camera and every unmasked file are unreachable without a login; a publisher with a wrong
//! passphrase (or an unknown station) is refused; the gateway restarting mid-stream recovers by
//! itself with the playlist carrying on and the player still advancing.
//!
//! Needs: mosquitto, x264enc/srtsink (GStreamer), ffmpeg, chromium + chromium-driver. Skips
//! (or fails under CI=true) with the reason when one is missing.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use stationwatch_tests::agent_process::{agent_bin, AgentProcess};
use stationwatch_tests::browser::{
    chromedriver_bin, chromium_bin, click, step, type_into, wait_js, Browser, START,
};
use stationwatch_tests::controller_process::{
    controller_bin, Api, ControllerOpts, ControllerProcess, ADMIN_PASSWORD, ADMIN_USER,
};
use stationwatch_tests::gateway_process::{gateway_bin, playlist, GatewayProcess};
use stationwatch_tests::mosquitto::{have_mosquitto, Broker, BrokerOpts};
use stationwatch_tests::netns::{Link, FAR_ADDR};
use stationwatch_tests::{free_port, have_binary, have_gst_element};

const STATION: &str = "LIVE-0001";
/// A mask over the top-left quarter of the picture.
const MASK: [[f64; 2]; 4] = [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]];

fn ready() -> Option<(std::path::PathBuf, std::path::PathBuf)> {
    let (Some(chromium), Some(driver)) = (chromium_bin(), chromedriver_bin()) else {
        stationwatch_tests::skip_or_fail(
            "chromium or chromedriver missing (run scripts/install-deps: Debian packages \
             chromium and chromium-driver)",
        );
        return None;
    };
    let missing = [
        "x264enc",
        "srtsink",
        "mpegtsmux",
        "decodebin",
        "rtmp2sink",
        "flvmux",
    ]
    .into_iter()
    .find(|e| !have_gst_element(e));
    if !stationwatch_tests::require(
        have_mosquitto() && missing.is_none() && have_binary("ffmpeg"),
        &format!(
            "mosquitto, ffmpeg or GStreamer element {missing:?} missing (run scripts/install-deps)"
        ),
    ) {
        return None;
    }
    Some((chromium, driver))
}

fn agent_config(dir: &Path, broker_port: u16, target: &str) -> String {
    agent_config_with(dir, &format!("127.0.0.1:{broker_port}"), target, "on", "")
}

fn agent_config_with(dir: &Path, broker: &str, target: &str, live: &str, camera: &str) -> String {
    format!(
        "[station]\nid = \"{STATION}\"\nname = \"Live school\"\nregion = \"North\"\n\n\
         [storage]\npath = \"{}\"\nsegment_seconds = 4\n\n\
         [supervision]\nstall_timeout_seconds = 3\n\n\
         [mqtt]\nurl = \"mqtt://{broker}\"\nhealth_interval_seconds = 2\n\n\
         [live]\noff_retry_seconds = 2\nprobe_backoff_max_seconds = 5\nstep_down_seconds = 3\n\n\
         [[camera]]\nid = \"desk\"\nsource = \"test\"\nwidth = 640\nheight = 360\nfps = 15\n\
         bitrate_kbps = 800\nlive = \"{live}\"\nlive_target = \"{target}\"\n{camera}\n",
        dir.join("rec").display()
    )
}

/// Waits until the playlist exists and lists at least `n` segments; its media sequence.
fn wait_playlist(
    dir: &Path,
    n: usize,
    secs: u64,
    what: &str,
    gw: &GatewayProcess,
    agent: &AgentProcess,
) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some((seq, names, _)) = playlist(&dir.join("index.m3u8")) {
            if names.len() >= n {
                return seq;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{what}: no playlist with {n} segments in {} after {secs} s\ngateway log:\n{}\nagent log:\n{}",
            dir.display(),
            gw.log(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

/// The video element's currentTime in the page.
const CURRENT: &str =
    "(() => { const v = document.querySelector('video[data-live-camera=\"desk\"]'); \
                        return v ? v.currentTime : -1; })()";

async fn wait_playing_past(c: &fantoccini::Client, t: f64, secs: u64, what: &str) -> f64 {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let now = js_f64(c, CURRENT).await;
        if now > t {
            step(what);
            return now;
        }
        if Instant::now() > deadline {
            let state = stationwatch_tests::browser::js(c, PLAYER_STATE).await;
            panic!("{what}: currentTime {now} not past {t} within {secs} s; player: {state}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What a failing test prints about the player.
const PLAYER_STATE: &str = "(() => { const v = document.querySelector('video[data-live-camera=\"desk\"]'); \
    if (!v) return 'no video element'; const b = []; \
    for (let i = 0; i < v.buffered.length; i++) b.push(`${v.buffered.start(i).toFixed(1)}-${v.buffered.end(i).toFixed(1)}`); \
    const line = document.querySelector('.live-player .live-line'); \
    return JSON.stringify({ t: v.currentTime, paused: v.paused, ready: v.readyState, error: v.error && v.error.code, \
      connected: v.isConnected, buffered: b, line: line && line.textContent }); })()";

#[test]
fn operators_and_the_public_watch_live_through_the_gateway() {
    let Some((chromium, driver)) = ready() else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(scenario(chromium, driver));
}

async fn scenario(chromium: std::path::PathBuf, driver: std::path::PathBuf) {
    controller_bin().unwrap();
    agent_bin().unwrap();
    gateway_bin().unwrap();
    START.get_or_init(Instant::now);
    let dir = tempfile::tempdir().unwrap();
    let hls = dir.path().join("hls");
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.extra_toml = format!(
        "[rules]\nmin_disk_hours = 1.0\n\
         [live]\nhls_dir = \"{}\"\nsecret_file = \"{}\"\ngateway_token_file = \"{}\"\npublic_page = true\n",
        hls.display(),
        dir.path().join("live.secret").display(),
        dir.path().join("gateway.token").display(),
    );
    let controller = ControllerProcess::start(dir.path(), &opts).unwrap();
    let base = controller.base_url();
    step("controller started");

    // The station's passphrase, as an admin would look it up for the device.
    let passphrase = controller.live_passphrase(STATION).unwrap();
    assert_eq!(passphrase.len(), 32, "{passphrase:?}");

    let srt_port = free_port();
    let gw_dir = dir.path().join("gateway");
    let mut gw = GatewayProcess::start(
        &gw_dir,
        srt_port,
        &hls,
        &format!("{base}/"),
        &dir.path().join("gateway.token"),
        "",
    )
    .unwrap();
    step("gateway started");

    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    // Set up as enrollment leaves it: the gateway's bare address as the target, the passphrase
    // in `[live] passphrase_file`; the agent adds the stream id `<station>/<camera>` and the
    // passphrase itself.
    let pass_file = agent_dir.join("live.passphrase");
    std::fs::write(&pass_file, format!("{passphrase}\n")).unwrap();
    let target = format!("srt://127.0.0.1:{srt_port}");
    let agent = AgentProcess::start(
        &agent_dir,
        &agent_config(&agent_dir, broker.port(), &target).replacen(
            "[live]\n",
            &format!("[live]\npassphrase_file = \"{}\"\n", pass_file.display()),
            1,
        ),
    )
    .unwrap();
    step("agent started");

    // The agent reports, the controller lists the station, the gateway admits it.
    let private = gw.private_dir(STATION, "desk");
    let seq0 = wait_playlist(&private, 3, 90, "operator's stream", &gw, &agent);
    step("private playlist");
    let seg = std::fs::read_dir(&private)
        .unwrap()
        .flatten()
        .find(|e| e.file_name().to_string_lossy().ends_with(".ts"))
        .unwrap()
        .path();
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=codec_name,width",
            "-of",
            "csv=p=0",
        ])
        .arg(&seg)
        .output()
        .unwrap();
    // (ffprobe prints the stream once per program and once alone.)
    let probed = String::from_utf8_lossy(&probe.stdout).to_string();
    assert!(
        probed.lines().all(|l| l.is_empty() || l == "h264,640"),
        "{probed}"
    );
    assert!(probed.contains("h264,640"), "{probed}");

    // Without a login nothing live is reachable; observers never get the unmasked stream.
    let anon = Api::anonymous(&base);
    let live_path = format!("/api/stations/{STATION}/cameras/desk/live/index.m3u8");
    assert_eq!(anon.get(&live_path).unwrap().status, 401);
    assert_eq!(
        anon.get(&format!("/public/live/{STATION}/desk/index.m3u8"))
            .unwrap()
            .status,
        404,
        "not public yet"
    );
    let admin = controller.admin().unwrap();
    let r = admin.get_bytes(&live_path).unwrap();
    assert_eq!(r.0, 200);
    assert!(String::from_utf8_lossy(&r.1).starts_with("#EXTM3U"));
    // What the station page shows beside the player: the gateway's view of the stream.
    let st = admin
        .ok(&format!("/api/stations/{STATION}/cameras/desk/live"))
        .unwrap();
    assert_eq!(st["playable"], json!(true), "{st}");
    assert_eq!(st["gateway"]["publishing"], json!(true), "{st}");
    assert_eq!(
        (
            st["gateway"]["width"].as_u64(),
            st["gateway"]["height"].as_u64()
        ),
        (Some(640), Some(360)),
        "{st}"
    );
    assert!(st["gateway"]["kbps"].as_u64().unwrap() > 50, "{st}");
    assert!(st["delay_ms"].as_i64().unwrap() > 0, "{st}");

    // The operator's page plays it.
    let browser = Browser::start(&driver, dir.path());
    let c = browser.session(&chromium).await;
    open_station_page(&c, &base).await;
    let t1 = wait_playing_past(&c, 0.5, 60, "the station page's live player plays").await;
    let t2 = wait_playing_past(&c, t1 + 2.0, 30, "the live player keeps advancing").await;
    step(&format!("player advancing: {t1:.1} s -> {t2:.1} s"));

    // A publisher with a wrong passphrase, and one of an unknown station, are refused.
    for (sid, pass, folder) in [
        (
            format!("{STATION}/door"),
            "wrong-passphrase-000".to_string(),
            gw.private_dir(STATION, "door"),
        ),
        (
            "NOPE-0001/desk".to_string(),
            passphrase.clone(),
            gw.private_dir("NOPE-0001", "desk"),
        ),
    ] {
        let status = Command::new("timeout")
            .args([
                "6",
                "gst-launch-1.0",
                "-q",
                "videotestsrc",
                "is-live=true",
                "!",
                "x264enc",
                "tune=zerolatency",
                "!",
                "mpegtsmux",
                "!",
                "srtsink",
            ])
            .arg(format!(
                "uri=srt://127.0.0.1:{srt_port}?streamid={sid}&passphrase={pass}"
            ))
            .args(["mode=caller", "wait-for-connection=false"])
            .output()
            .unwrap();
        assert!(
            !status.status.success(),
            "{sid}: the publisher was not refused"
        );
        assert!(
            !folder.exists(),
            "{sid}: the gateway wrote {}",
            folder.display()
        );
    }
    let log = gw.log();
    assert!(
        log.contains("caller refused") && log.contains("unknown station NOPE-0001"),
        "{log}"
    );
    assert!(
        log.contains("rejecting"),
        "wrong passphrase not logged:\n{log}"
    );
    step("wrong publishers refused");

    // RTMP publishers (an encoder that only speaks RTMP): the station's passphrase in the
    // stream name; a wrong one is refused.
    let rtmp_port = gw.rtmp_port.expect("the test gateway listens for RTMP");
    let rtmp = move |camera: &str, pass: &str, secs: &str| {
        Command::new("timeout")
            .args([
                secs,
                "gst-launch-1.0",
                "-q",
                "videotestsrc",
                "is-live=true",
                "!",
                "video/x-raw,width=320,height=180,framerate=15/1",
                "!",
                "x264enc",
                "tune=zerolatency",
                "key-int-max=15",
                "!",
                "h264parse",
                "!",
                "flvmux",
                "streamable=true",
                "!",
                "rtmp2sink",
            ])
            .arg(format!(
                "location=rtmp://127.0.0.1:{rtmp_port}/{STATION}/{camera}?passphrase={pass}"
            ))
            .output()
            .unwrap()
    };
    let refused = rtmp("lobby", "wrong-passphrase-000", "6");
    assert!(
        !refused.status.success(),
        "RTMP with a wrong passphrase was not refused"
    );
    assert!(!gw.private_dir(STATION, "lobby").exists());
    assert!(gw.log().contains("RTMP publisher refused"), "{}", gw.log());
    let hall = std::thread::spawn({
        let pass = passphrase.clone();
        move || rtmp("hall", &pass, "10")
    });
    wait_playlist(
        &gw.private_dir(STATION, "hall"),
        2,
        30,
        "RTMP publisher's stream",
        &gw,
        &agent,
    );
    hall.join().unwrap();
    step("RTMP publisher accepted, wrong one refused");

    // Public: never without masks reviewed first; then masks drawn, the camera marked public,
    // and the public copy is masked.
    let r = admin
        .put(
            &format!("/api/stations/{STATION}/cameras/desk/public"),
            &json!({ "public": true }),
        )
        .unwrap();
    assert_eq!(r.status, 409, "public before any masks: {r:?}");
    let r = admin
        .put(
            &format!("/api/stations/{STATION}/cameras/desk/masks"),
            &json!({ "masks": [MASK] }),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let r = admin
        .put(
            &format!("/api/stations/{STATION}/cameras/desk/public"),
            &json!({ "public": true }),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let public = gw.public_dir(STATION, "desk");
    wait_playlist(&public, 2, 60, "public stream", &gw, &agent);
    let r = anon
        .get_bytes(&format!("/public/live/{STATION}/desk/index.m3u8"))
        .unwrap();
    assert_eq!(r.0, 200);
    let (_, names, _) = playlist(&public.join("index.m3u8")).unwrap();
    let seg = anon
        .get_bytes(&format!(
            "/public/live/{STATION}/desk/{}",
            names[names.len() - 1]
        ))
        .unwrap();
    assert_eq!(seg.0, 200);
    let seg_file = dir.path().join("public-seg.ts");
    std::fs::write(&seg_file, &seg.1).unwrap();
    let (w, h, grey) = decode_grey(&seg_file);
    let inside: Vec<u8> = (h / 20..h / 2 - h / 20)
        .flat_map(|y| (w / 20..w / 2 - w / 20).map(move |x| (y, x)))
        .map(|(y, x)| grey[y * w + x])
        .collect();
    // The right half of the picture (the test pattern's colour bars and clock): not masked.
    let outside: Vec<u8> = (h / 20..h - h / 20)
        .flat_map(|y| (w / 2 + w / 20..w - w / 20).map(move |x| (y, x)))
        .map(|(y, x)| grey[y * w + x])
        .collect();
    let spread = |v: &[u8]| v.iter().max().unwrap() - v.iter().min().unwrap();
    assert!(
        spread(&inside) <= 4,
        "inside the mask not uniform: spread {}",
        spread(&inside)
    );
    assert!(
        spread(&outside) > 40,
        "the picture outside the mask is gone"
    );
    // The private stream is still unmasked for operators, and never reachable without login.
    assert_eq!(
        anon.get(&format!("/public/live/{STATION}/door/index.m3u8"))
            .unwrap()
            .status,
        404
    );
    assert_eq!(
        anon.get(&format!(
            "/public/live/{STATION}/desk/..%2F..%2Fprivate%2F{STATION}%2Fdesk%2Findex.m3u8"
        ))
        .unwrap()
        .status,
        404
    );
    step("public stream masked");

    // The gateway restarts mid-stream: the playlist carries on, the player recovers.
    let before = playlist(&private.join("index.m3u8")).unwrap();
    gw.child.terminate(Duration::from_secs(10)).unwrap();
    std::thread::sleep(Duration::from_secs(2));
    gw = GatewayProcess::run(&gw.config.clone(), srt_port, &hls).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = playlist(&private.join("index.m3u8")).unwrap();
        if now.2 > 0 && now.1.last() != before.1.last() {
            assert!(
                now.0 >= before.0 && now.0 >= seq0,
                "sequence went back: {before:?} -> {now:?}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no new segments after the restart\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let t3 = js_f64(&c, CURRENT).await;
    wait_playing_past(
        &c,
        t3 + 2.0,
        60,
        "the player plays on after the gateway restarted",
    )
    .await;
    step("gateway restart recovered");
}

/// Logs in as the admin and opens the station page.
async fn open_station_page(c: &fantoccini::Client, base: &str) {
    c.goto(&format!("{base}/stations/{STATION}")).await.unwrap();
    wait_js(c, "location.pathname === '/login'", 10, "login page").await;
    type_into(c, "#username", ADMIN_USER).await;
    type_into(c, "#password", ADMIN_PASSWORD).await;
    click(c, "#login button[type=submit]").await;
    wait_js(c, "location.pathname !== '/login'", 20, "logged in").await;
    if c.current_url().await.unwrap().path() != format!("/stations/{STATION}") {
        c.goto(&format!("{base}/stations/{STATION}")).await.unwrap();
    }
}

/// Behind a shaped uplink (network namespaces, `tc tbf`; root only) the agent drops from the
/// main rung to the sub rung — a new SRT connection with a smaller picture — and the station
/// page's player keeps playing across the switch. The gateway runs on the far side of the link;
/// the broker and the controller are reached through TCP relays across it.
#[test]
fn the_player_keeps_playing_when_a_narrow_uplink_forces_the_sub_rung() {
    let Some((chromium, driver)) = ready() else {
        return;
    };
    if !stationwatch_tests::require_none(Link::unavailable()) {
        return;
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(sub_rung(chromium, driver));
}

async fn sub_rung(chromium: std::path::PathBuf, driver: std::path::PathBuf) {
    controller_bin().unwrap();
    agent_bin().unwrap();
    gateway_bin().unwrap();
    START.get_or_init(Instant::now);
    let link = Link::create("gw").expect("creating network namespaces");
    let dir = tempfile::tempdir().unwrap();
    let hls = dir.path().join("hls");
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    opts.extra_toml = format!(
        "[rules]\nmin_disk_hours = 1.0\n\
         [live]\nhls_dir = \"{}\"\n",
        hls.display(),
    );
    let controller = ControllerProcess::start(dir.path(), &opts).unwrap();
    let base = controller.base_url();
    let mqtt_relay = link.relay(broker.port()).unwrap();
    let http_relay = link.relay(controller.addr.port()).unwrap();
    let passphrase = controller.live_passphrase(STATION).unwrap();
    // The controller made the token next to its config (`[live] gateway_token_file` default).
    let token = controller.config.parent().unwrap().join("gateway.token");
    let srt_port = 9000;
    let gw = GatewayProcess::start_in(
        &link.far_prefix(),
        FAR_ADDR,
        &dir.path().join("gateway"),
        srt_port,
        &hls,
        &format!("http://{FAR_ADDR}:{}/", http_relay.port),
        &token,
        "",
    )
    .unwrap();
    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let target =
        format!("srt://{FAR_ADDR}:{srt_port}?streamid={STATION}/desk&passphrase={passphrase}");
    let cfg = agent_config_with(
        &agent_dir,
        &format!("{FAR_ADDR}:{}", mqtt_relay.port),
        &target,
        "auto",
        "live_sub_kbps = 64",
    );
    let agent = AgentProcess::start_in(&link.agent_prefix(), &agent_dir, &cfg, &[]).unwrap();
    let private = gw.private_dir(STATION, "desk");
    wait_playlist(&private, 3, 90, "main rung at the gateway", &gw, &agent);
    agent
        .wait_log(
            "live stream flowing camera=desk rung=\"main\"",
            Duration::from_secs(30),
        )
        .unwrap();
    step("main rung playing at the gateway");

    let browser = Browser::start(&driver, dir.path());
    let c = browser.session(&chromium).await;
    open_station_page(&c, &base).await;
    let t1 = wait_playing_past(&c, 1.0, 60, "the player plays the main rung").await;
    step(&format!("player at {t1:.1} s on main"));

    // The uplink narrows: main (800 kbit/s) no longer fits, the sub rung (64 kbit/s) does.
    link.shape(250).unwrap();
    agent
        .wait_log(
            "live stream flowing camera=desk rung=\"sub\"",
            Duration::from_secs(40),
        )
        .unwrap();
    step("agent on the sub rung");
    // The gateway took the new connection and the playlist carries on with a discontinuity.
    let deadline = Instant::now() + Duration::from_secs(40);
    while playlist(&private.join("index.m3u8")).is_none_or(|p| p.2 == 0) {
        assert!(
            Instant::now() < deadline,
            "no discontinuity in the playlist\n{}",
            gw.log()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let t2 = js_f64(&c, CURRENT).await;
    let t3 = wait_playing_past(
        &c,
        t2 + 4.0,
        60,
        "the player plays on across the switch to sub",
    )
    .await;
    step(&format!("player {t2:.1} s -> {t3:.1} s across the switch"));
}

async fn js_f64(c: &fantoccini::Client, expr: &str) -> f64 {
    stationwatch_tests::browser::js(c, expr)
        .await
        .as_f64()
        .unwrap_or(-1.0)
}

/// The first frame of a TS file as 8-bit grey: width, height, pixels.
fn decode_grey(ts: &Path) -> (usize, usize, Vec<u8>) {
    let probe = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(ts)
        .output()
        .unwrap();
    let wh = String::from_utf8_lossy(&probe.stdout)
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .to_owned();
    let (w, h) = wh
        .split_once(',')
        .unwrap_or_else(|| panic!("ffprobe: {wh:?}"));
    let (w, h): (usize, usize) = (w.parse().unwrap(), h.parse().unwrap());
    let out = Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(ts)
        .args(["-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    assert_eq!(
        out.stdout.len(),
        w * h,
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    (w, h, out.stdout)
}
