//! The camera's view watched all day (issue 16), with real parts: an RTSP test camera whose
//! picture the test switches while it runs (black, tape over the lens, frozen, darker and
//! brighter lighting, out of focus, turned away), the agent recording it with its view
//! analysis, a private Mosquitto and the controller.
//!
//! What an operator checks: every tampering raises its alert at the controller within the
//! configured time (with a snapshot taken when it began) and the alert closes when the picture
//! is back; the lights going down or up raise nothing; before the view is approved only black,
//! covered and frozen count; after an operator approves it (a `set_view` command) blurred and
//! moved count too, and the approval survives an agent restart; recording never stops.

use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use stationwatch_tests::agent_process::{wait_segment_after, AgentProcess};
use stationwatch_tests::archive::{ready, AgentSpec, Rig, Store, STATION};
use stationwatch_tests::browser::{chromedriver_bin, chromium_bin};
use stationwatch_tests::{eventually, CameraOpts, TestCamera};

/// `[view]` of the agent under test: a picture every half second, a problem counts after 3 s.
const VIEW: &str = "[view]\ninterval_ms = 500\npersist_seconds = 3\n";
const PERSIST_S: f64 = 3.0;

fn start_agent(rig: &Rig, cam: &TestCamera) -> AgentProcess {
    start_agent_with(rig, cam, VIEW)
}

fn start_agent_with(rig: &Rig, cam: &TestCamera, view: &str) -> AgentProcess {
    let storage = rig.dir.path().join("rec");
    let cfg = AgentSpec {
        cameras: &["desk"],
        kbps: 800,
        segment_s: 2,
        mqtt: format!("mqtt://127.0.0.1:{}", rig.broker.port()),
        upload_url: rig.ctl.base_url(),
        upload_extra: String::new(),
        camera_extra: String::new(),
        rtsp: vec![cam.url().to_owned()],
    }
    .toml(&storage);
    let agent = AgentProcess::start_with_env(
        rig.dir.path(),
        &format!("{cfg}{view}"),
        &[("RUST_LOG", "info,station_agent::view=debug")],
    )
    .unwrap();
    agent
        .wait_log("agent ready", Duration::from_secs(30))
        .unwrap();
    agent
}

/// The camera's `view` section as the controller last heard it.
fn view(rig: &Rig) -> serde_json::Value {
    rig.api.ok(&format!("/api/stations/{STATION}")).unwrap()["health"]["cameras"]["desk"]["view"]
        .clone()
}

/// Switches the scene and waits for the alert `view_<problem>:desk`; the seconds it took.
fn tamper(rig: &Rig, cam: &TestCamera, scene: &str, problem: &str) -> f64 {
    let kind = format!("view_{problem}");
    let t = Instant::now();
    cam.set_scene(scene).unwrap();
    let alert = eventually(&format!("alert {kind} for scene {scene}"), 30, || {
        rig.open_alert(&kind)
    });
    let secs = t.elapsed().as_secs_f64();
    assert_eq!(alert["kind"], format!("{kind}:desk"), "{alert}");
    assert!(
        secs >= PERSIST_S,
        "{kind} raised after {secs:.1} s, before lasting {PERSIST_S} s"
    );
    let problems = view(rig)["problems"].clone();
    assert!(
        problems
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["kind"] == problem),
        "{problems}"
    );
    eprintln!(
        "scene {scene}: {kind} after {secs:.1} s ({})",
        alert["detail"]
    );
    secs
}

/// Back to the normal scene: the alert closes.
fn restore(rig: &Rig, cam: &TestCamera, problem: &str) {
    let kind = format!("view_{problem}");
    cam.set_scene("normal").unwrap();
    eventually(&format!("alert {kind} closed"), 30, || {
        Ok(rig.open_alert(&kind)?.is_none().then_some(()))
    });
}

/// No view alert opens while the scene shows `scene` for `secs`.
fn nothing_for(rig: &Rig, cam: &TestCamera, scene: &str, secs: u64) {
    cam.set_scene(scene).unwrap();
    let until = Instant::now() + Duration::from_secs(secs);
    while Instant::now() < until {
        let alerts = rig
            .api
            .ok(&format!("/api/stations/{STATION}/alerts"))
            .unwrap();
        let open: Vec<_> = alerts["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| {
                a["kind"].as_str().unwrap().starts_with("view_") && a["closed_at"].is_null()
            })
            .collect();
        assert!(open.is_empty(), "scene {scene} raised {open:?}");
        std::thread::sleep(Duration::from_millis(500));
    }
}

#[test]
fn tampering_with_a_camera_raises_its_alert_and_lighting_changes_do_not() {
    if !ready(Store::Local) {
        return;
    }
    if !stationwatch_tests::require(
        gst_element_exists("gaussianblur"),
        "GStreamer element gaussianblur missing (Debian package gstreamer1.0-plugins-bad)",
    ) {
        return;
    }
    let mut rig = Rig::start(Store::Local);
    let cam = TestCamera::start(
        env!("CARGO_BIN_EXE_test-camera"),
        CameraOpts {
            width: 640,
            height: 360,
            scene_file: Some(rig.dir.path().join("scene")),
            ..CameraOpts::default()
        },
    )
    .unwrap();
    cam.set_scene("normal").unwrap();
    let mut agent = start_agent(&rig, &cam);
    rig.register(&rig.dir.path().join("agent.toml"));
    let reported = (0..120).any(|_| {
        let ok = rig
            .api
            .ok(&format!("/api/stations/{STATION}"))
            .is_ok_and(|d| d["health"]["cameras"]["desk"]["view"]["analysed_at"].is_string());
        if !ok {
            std::thread::sleep(Duration::from_millis(500));
        }
        ok
    });
    if !reported {
        let log = agent.log();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "the camera's view is not reported within 60 s; the agent's last log lines:\n{}\n\
             the test camera's output:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n"),
            cam.stderr()
        );
    }
    assert_eq!(view(&rig)["approved"], false);

    // The normal scene: nothing. Before approval, out of focus and turned away cannot be
    // judged. (Lighting is checked after the approval, where it could matter most.)
    nothing_for(&rig, &cam, "normal", 4);
    nothing_for(&rig, &cam, "blurred", 5);
    nothing_for(&rig, &cam, "moved", 5);

    let mut times = Vec::new();
    for (scene, problem) in [("black", "dark"), ("tape", "covered"), ("frozen", "frozen")] {
        let before = Utc::now();
        times.push((problem, tamper(&rig, &cam, scene, problem)));
        // The event, and a snapshot of what the camera showed.
        let d = rig.api.ok(&format!("/api/stations/{STATION}")).unwrap();
        eventually(&format!("a snapshot taken for {problem}"), 10, || {
            let d = rig.api.ok(&format!("/api/stations/{STATION}"))?;
            Ok(d["snapshots"]
                .as_array()
                .and_then(|a| a.iter().find(|s| s["camera"] == "desk").cloned())
                .filter(|s| s["received_at"].as_i64().unwrap_or(0) > before.timestamp_millis()))
        });
        drop(d);
        let events = rig
            .api
            .ok(&format!("/api/stations/{STATION}/events?limit=50"))
            .unwrap();
        assert!(
            events["events"]
                .as_array()
                .unwrap()
                .iter()
                .any(|e| e["kind"] == "view_problem" && e["body"]["problem"] == problem),
            "{events}"
        );
        restore(&rig, &cam, problem);
    }

    // An operator looks at a fresh snapshot and refuses the view, with a reason the technician
    // on site sees; then approves it. Both are decided on the controller, kept with the
    // picture they were made on, and carried to the station.
    let observer = stationwatch_tests::requests::user(&rig, "watcher", "observer", &[STATION]);
    decide_the_view(&rig, &observer);
    // Now blur and a turned camera count.
    nothing_for(&rig, &cam, "darker", 6);
    nothing_for(&rig, &cam, "brighter", 6);
    for (scene, problem) in [("blurred", "blurred"), ("moved", "moved")] {
        times.push((problem, tamper(&rig, &cam, scene, problem)));
        restore(&rig, &cam, problem);
    }

    // The approval survives a restart of the agent.
    agent.terminate(Duration::from_secs(15)).unwrap();
    let agent = start_agent(&rig, &cam);
    let restarted = Utc::now();
    eventually("approved after the restart", 30, || {
        let v = view(&rig);
        let at: Option<chrono::DateTime<Utc>> =
            v["analysed_at"].as_str().and_then(|s| s.parse().ok());
        Ok((v["approved"] == true && at.is_some_and(|a| a > restarted)).then_some(()))
    });
    times.push(("moved after restart", tamper(&rig, &cam, "moved", "moved")));
    restore(&rig, &cam, "moved");

    // Privacy masks: an operator blanks the top-left quarter; an observer's snapshot is grey
    // there, the admin's is the picture; bad masks and observers are refused; they survive a
    // restart of the controller; the station holds them.
    masks_for_observers(&mut rig, &observer);

    // The camera is replaced (another camera, another picture size) while the agent is down,
    // and the masks change meanwhile: the agent voids the approval itself (alert
    // `view_replaced`, only black/covered/frozen checked until approved again), and the
    // controller brings it the new masks.
    let mut agent = agent;
    agent.terminate(Duration::from_secs(15)).unwrap();
    // The controller (restarted in `masks_for_observers`) still has the decision; the station
    // keeps the approval and the masks it holds on disk.
    let v = rig
        .api
        .ok(&format!("/api/stations/{STATION}/cameras/desk/view"))
        .unwrap();
    assert_eq!(v["current"]["decision"], "approved", "{v}");
    let kept: Value = serde_json::from_slice(
        &std::fs::read(rig.dir.path().join("rec").join(".view.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(kept["desk"]["decision"]["state"], "approved", "{kept}");
    assert!(kept["desk"]["reference"]["cells"].is_array(), "{kept}");
    assert_eq!(
        kept["desk"]["masks"].as_array().map(Vec::len),
        Some(1),
        "{kept}"
    );
    let two = json!({"masks": [
        [[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]],
        [[0.6, 0.6], [0.9, 0.6], [0.9, 0.9]]
    ]});
    let r = rig
        .api
        .put(&format!("/api/stations/{STATION}/cameras/desk/masks"), &two)
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let other = TestCamera::start(
        env!("CARGO_BIN_EXE_test-camera"),
        CameraOpts {
            width: 480,
            height: 270,
            ..CameraOpts::default()
        },
    )
    .unwrap();
    let agent = start_agent(&rig, &other);
    let replaced = eventually("the approval voided by the new camera", 30, || {
        let v = view(&rig);
        Ok((v["decision"]["state"] == "replaced").then_some(v))
    });
    assert_eq!(replaced["approved"], false, "{replaced}");
    assert_eq!(replaced["decision"]["by"], "agent");
    let why = replaced["decision"]["reason"].as_str().unwrap();
    assert!(why.contains("480x270") && why.contains("640x360"), "{why}");
    eventually("alert view_replaced", 30, || {
        rig.open_alert("view_replaced")
    });
    let stored = eventually("the new masks on the station", 60, || {
        let v = rig
            .api
            .ok(&format!("/api/stations/{STATION}/cameras/desk/view"))?;
        Ok((v["masks"]["stored"] == 2 && view(&rig)["masks"] == 2).then_some(v))
    });
    assert_eq!(
        view(&rig)["masks_digest"],
        stored["masks"]["stored_digest"],
        "{stored}"
    );

    // Recording went on through all of it.
    wait_segment_after(
        &rig.dir.path().join("rec"),
        "desk",
        Utc::now(),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(rig.open_alert("camera_not_recording").unwrap().is_none());
    for (p, s) in &times {
        eprintln!("detection time {p}: {s:.1} s (persist {PERSIST_S} s, a picture every 0.5 s)");
    }
    drop(agent);
}

/// An admin draws a mask over the top-left quarter of camera desk's snapshot on the station
/// page: "Privacy masks", four clicks on the picture, "Close mask", "Save masks".
async fn draw_quarter_mask(
    chromium: &std::path::Path,
    driver: &std::path::Path,
    dir: &std::path::Path,
    base: &str,
) {
    use stationwatch_tests::browser::{click, js, screenshot, wait_js, Browser, START};
    let browser = Browser::start(driver, dir);
    let c = browser.session(chromium).await;
    let _ = START.set(Instant::now());
    stationwatch_tests::requests::log_in(
        &c,
        base,
        stationwatch_tests::controller_process::ADMIN_USER,
        stationwatch_tests::controller_process::ADMIN_PASSWORD,
    )
    .await;
    c.goto(&format!("{base}/stations/{STATION}")).await.unwrap();
    let edit = "button[data-mask=edit][data-camera=desk]";
    wait_js(
        &c,
        &format!("document.querySelector('{edit}')"),
        20,
        "the masks button",
    )
    .await;
    click(&c, edit).await;
    wait_js(
        &c,
        "(document.querySelector('.snapwrap.editing img') || {}).complete",
        10,
        "the snapshot in edit mode",
    )
    .await;
    // The page takes the click's position on the picture (a synthetic click at that point).
    for (x, y) in [(0.0, 0.0), (0.5, 0.0), (0.5, 0.5), (0.0, 0.5)] {
        js(
            &c,
            &format!(
                "(() => {{ const w = document.querySelector('.snapwrap.editing'); \
                 const r = w.querySelector('img').getBoundingClientRect(); \
                 w.dispatchEvent(new MouseEvent('click', {{ bubbles: true, \
                   clientX: r.left + {x} * r.width, clientY: r.top + {y} * r.height }})); \
                 return true; }})()"
            ),
        )
        .await;
    }
    wait_js(
        &c,
        "document.querySelectorAll('.snapwrap.editing svg.masks polyline, .snapwrap.editing svg.masks polygon').length === 1",
        5,
        "the corners drawn",
    )
    .await;
    click(&c, "button[data-mask=close][data-camera=desk]").await;
    click(&c, "button[data-mask=save][data-camera=desk]").await;
    wait_js(
        &c,
        "document.getElementById('command-result').textContent.includes('privacy masks of desk saved (1)')",
        10,
        "masks saved",
    )
    .await;
    wait_js(
        &c,
        "document.querySelectorAll('.snapwrap svg.masks polygon').length === 1 && !document.querySelector('.snapwrap.editing')",
        10,
        "the saved mask shown over the snapshot",
    )
    .await;
    screenshot(&c, "privacy-mask").await;
}

/// Grey levels of a JPEG (via ffmpeg): width, height, pixels.
fn grey_pixels(jpeg: &[u8], dir: &std::path::Path) -> (usize, usize, Vec<u8>) {
    let file = dir.join("snapshot.jpg");
    std::fs::write(&file, jpeg).unwrap();
    let probe = std::process::Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-show_entries",
            "stream=width,height",
            "-of",
            "csv=p=0",
        ])
        .arg(&file)
        .output()
        .unwrap();
    let dims = String::from_utf8_lossy(&probe.stdout).trim().to_owned();
    let (w, h) = dims.split_once(',').unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(&file)
        .args(["-f", "rawvideo", "-pix_fmt", "gray", "-"])
        .output()
        .unwrap();
    (w.parse().unwrap(), h.parse().unwrap(), out.stdout)
}

/// Mean and standard deviation of the grey levels in `[x0, x1) x [y0, y1)` (relative).
fn region(p: &(usize, usize, Vec<u8>), x0: f64, y0: f64, x1: f64, y1: f64) -> (f64, f64) {
    let (w, h, px) = p;
    let mut v = Vec::new();
    for y in (y0 * *h as f64) as usize..(y1 * *h as f64) as usize {
        for x in (x0 * *w as f64) as usize..(x1 * *w as f64) as usize {
            v.push(f64::from(px[y * w + x]));
        }
    }
    let mean = v.iter().sum::<f64>() / v.len() as f64;
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / v.len() as f64;
    (mean, var.sqrt())
}

/// Refuse (without a reason: refused; with one: held by the station, alert `view_refused`),
/// then approve; observers decide nothing and never see the unmasked reference picture.
fn decide_the_view(rig: &Rig, observer: &stationwatch_tests::controller_process::Api) {
    let path = format!("/api/stations/{STATION}/cameras/desk/view");
    rig.command(json!({"kind": "snapshot", "camera": "desk"}));
    let r = rig.api.post(&path, &json!({"decision": "refuse"})).unwrap();
    assert_eq!(r.status, 400, "a refusal without a reason: {r:?}");
    let r = observer
        .post(&path, &json!({"decision": "approve"}))
        .unwrap();
    assert_eq!(r.status, 403, "{r:?}");
    let reason = "voting booth visible";
    let r = rig
        .api
        .post(&path, &json!({"decision": "refuse", "reason": reason}))
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["decision"], "refused");
    assert_eq!(r.body["has_snapshot"], true, "{r:?}");
    let refused = eventually("the refusal held by the station", 20, || {
        let v = view(rig);
        Ok((v["decision"]["state"] == "refused").then_some(v))
    });
    assert_eq!(refused["decision"]["reason"], reason, "{refused}");
    assert_eq!(refused["decision"]["by"], "admin");
    assert_eq!(refused["approved"], false);
    let alert = eventually("alert view_refused", 30, || rig.open_alert("view_refused"));
    assert!(
        alert["detail"].as_str().unwrap().contains(reason),
        "{alert}"
    );

    rig.command(json!({"kind": "snapshot", "camera": "desk"}));
    let r = rig
        .api
        .post(&path, &json!({"decision": "approve"}))
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    let review = r.body["id"].as_i64().unwrap();
    eventually("approved in health", 20, || {
        let v = view(rig);
        Ok((v["approved"] == true && v["decision"]["state"] == "approved").then_some(()))
    });
    eventually("alert view_refused closed", 30, || {
        Ok(rig.open_alert("view_refused")?.is_none().then_some(()))
    });
    let v = rig.api.ok(&path).unwrap();
    assert_eq!(v["in_effect"], true, "{v}");
    let history: Vec<&str> = v["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["decision"].as_str().unwrap())
        .collect();
    assert_eq!(history, ["approved", "refused"], "{v}");
    // The picture the approval was made on: a JPEG for staff, refused to observers.
    let picture = format!("{path}/{review}/snapshot");
    let (code, jpeg) = rig.api.get_bytes(&picture).unwrap();
    assert_eq!(code, 200);
    assert_eq!(&jpeg[..2], &[0xff, 0xd8], "a JPEG");
    assert_eq!(observer.get_bytes(&picture).unwrap().0, 403);
    let audit = rig.api.ok("/api/audit?limit=200").unwrap();
    let reviews: Vec<&Value> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "view_review")
        .collect();
    assert!(
        reviews
            .iter()
            .any(|e| e["ok"] == true && e["detail"].as_str().unwrap().contains(reason)),
        "{audit}"
    );
    assert!(
        reviews.iter().any(|e| e["ok"] == false),
        "the refused attempts are audited too"
    );
}

fn masks_for_observers(rig: &mut Rig, observer: &stationwatch_tests::controller_process::Api) {
    if !stationwatch_tests::require(
        stationwatch_tests::have_binary("ffmpeg") && stationwatch_tests::have_binary("ffprobe"),
        "ffmpeg/ffprobe missing (run scripts/install-deps)",
    ) {
        return;
    }
    let path = format!("/api/stations/{STATION}/cameras/desk/masks");
    let quarter = json!({"masks": [[[0.0, 0.0], [0.5, 0.0], [0.5, 0.5], [0.0, 0.5]]]});
    assert_eq!(observer.put(&path, &quarter).unwrap().status, 403);
    let bad = json!({"masks": [[[0.0, 0.0], [1.5, 0.0], [0.5, 0.5]]]});
    let r = rig.api.put(&path, &bad).unwrap();
    assert_eq!(r.status, 400, "{r:?}");
    // The operator draws the mask on the station page, on the camera's snapshot.
    rig.command(json!({"kind": "snapshot", "camera": "desk"}));
    let (Some(chromium), Some(driver)) = (chromium_bin(), chromedriver_bin()) else {
        stationwatch_tests::skip_or_fail(
            "chromium or chromedriver missing (run scripts/install-deps: Debian packages \
             chromium and chromium-driver)",
        );
        return;
    };
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(draw_quarter_mask(
            &chromium,
            &driver,
            rig.dir.path(),
            &rig.ctl.base_url(),
        ));
    let r = rig.api.ok(&path).unwrap();
    assert_eq!(r["updated_by"], "admin");
    let drawn = r["masks"].as_array().unwrap();
    assert_eq!(drawn.len(), 1, "{r}");
    for (corner, want) in drawn[0]
        .as_array()
        .unwrap()
        .iter()
        .zip(quarter["masks"][0].as_array().unwrap())
    {
        for k in 0..2 {
            let (got, want) = (corner[k].as_f64().unwrap(), want[k].as_f64().unwrap());
            assert!(
                (got - want).abs() < 0.01,
                "corner {corner} drawn for {want}"
            );
        }
    }
    let snap = format!("/api/stations/{STATION}/cameras/desk/snapshot");
    let check = |rig: &Rig, observer: &stationwatch_tests::controller_process::Api| {
        let (code, mine) = observer.get_bytes(&snap).unwrap();
        assert_eq!(code, 200);
        let (code, full) = rig.api.get_bytes(&snap).unwrap();
        assert_eq!(code, 200);
        let seen = grey_pixels(&mine, rig.dir.path());
        let whole = grey_pixels(&full, rig.dir.path());
        assert_eq!((seen.0, seen.1), (whole.0, whole.1), "same size");
        // Inside the mask (a margin for JPEG's blocks at its edge): uniform grey.
        let (mean, sd) = region(&seen, 0.03, 0.03, 0.47, 0.47);
        assert!(
            sd < 3.0 && (mean - 128.0).abs() < 6.0,
            "observer's masked area: mean {mean:.1} sd {sd:.1}"
        );
        // The admin sees the picture there (the pinwheel and the clock).
        let (_, admin_sd) = region(&whole, 0.03, 0.03, 0.47, 0.47);
        assert!(
            admin_sd > 20.0,
            "admin's picture is flat there too: sd {admin_sd:.1}"
        );
        eprintln!("masked area: observer's mean {mean:.1} sd {sd:.1}, admin's sd {admin_sd:.1}");
        // Outside the mask both see the picture.
        let (_, sd) = region(&seen, 0.55, 0.55, 0.95, 0.95);
        assert!(sd > 20.0, "observer's unmasked area is flat: sd {sd:.1}");
    };
    check(rig, observer);
    // The station holds them (pushed by `set_masks`; their digest reported in health).
    eventually("the mask held by the station", 30, || {
        let v = rig
            .api
            .ok(&format!("/api/stations/{STATION}/cameras/desk/view"))?;
        Ok((v["masks"]["in_sync"] == true && view(rig)["masks"] == 1).then_some(()))
    });
    // The masks are the controller's: they survive its restart.
    rig.ctl.child.terminate(Duration::from_secs(15)).unwrap();
    let port = rig.ctl.addr.port();
    rig.ctl = stationwatch_tests::controller_process::ControllerProcess::start_with_config(
        &rig.ctl.config,
        port,
    )
    .unwrap();
    eventually("the controller is back", 30, || {
        Ok((rig.api.get(&path)?.status == 200).then_some(()))
    });
    assert_eq!(
        rig.api.ok(&path).unwrap()["masks"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    check(rig, observer);
    let audit = rig.api.ok("/api/audit?limit=200").unwrap();
    assert!(
        audit["entries"]
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["action"] == "masks"),
        "{audit}"
    );
}

fn gst_element_exists(name: &str) -> bool {
    std::process::Command::new("gst-inspect-1.0")
        .arg(name)
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The analysis's cost (`benches/camera-view.sh`; ignored in the suite): the agent recording
/// one 1280x720 15 fps H.264 RTSP camera (pass-through, as a real camera) with the analysis
/// off and at several intervals; its CPU (utime + stime from `/proc`) over the same time.
/// Prints figures, asserts nothing about them.
#[test]
#[ignore = "benchmark: run by benches/camera-view.sh"]
fn view_analysis_cpu() {
    let smoke = std::env::var("SMOKE").is_ok_and(|v| v == "1");
    let secs = if smoke {
        4
    } else {
        std::env::var("BENCH_SECONDS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(60)
    };
    let dir = tempfile::tempdir().unwrap();
    let cam = TestCamera::start(
        env!("CARGO_BIN_EXE_test-camera"),
        CameraOpts {
            width: 1280,
            height: 720,
            bitrate_kbps: 2000,
            scene_file: Some(dir.path().join("scene")),
            ..CameraOpts::default()
        },
    )
    .unwrap();
    cam.set_scene("normal").unwrap();
    let storage = dir.path().join("rec");
    let source = format!("source = \"{}\"", cam.url());
    println!("== view analysis CPU: agent recording one 1280x720 15 fps RTSP camera (pass-through), {secs} s per setting");
    println!(
        "setting                 agent_cpu_s_per_min  analysis_cpu_s_per_min  pictures_analysed"
    );
    let mut off = None;
    for (name, view) in [
        ("analysis off", "[view]\nanalysis = false\n"),
        ("every 2 s (default)", "[view]\ninterval_ms = 2000\n"),
        ("every 1 s", "[view]\ninterval_ms = 1000\n"),
        (
            "every 0.5 s",
            "[view]\ninterval_ms = 500\npersist_seconds = 1\n",
        ),
    ] {
        let cfg = format!(
            "{}{view}",
            stationwatch_tests::agent_process::config(&storage, 4, &[("desk", &source)])
        );
        let mut agent = AgentProcess::start_with_env(
            dir.path(),
            &cfg,
            &[("RUST_LOG", "info,station_agent::view=debug")],
        )
        .unwrap();
        agent
            .wait_log("agent ready", Duration::from_secs(30))
            .unwrap();
        // Generous: a 720p x264 test camera on a busy 2-core machine can take a while.
        wait_segment_after(&storage, "desk", Utc::now(), Duration::from_secs(45)).unwrap();
        let pid = agent.pid().unwrap();
        let before = agent.log().matches("view picture analysed").count();
        let cpu0 = stationwatch_tests::proc_stats::cpu_s(pid);
        std::thread::sleep(Duration::from_secs(secs));
        let cpu = stationwatch_tests::proc_stats::cpu_s(pid) - cpu0;
        let pictures = agent.log().matches("view picture analysed").count() - before;
        let per_min = cpu * 60.0 / secs as f64;
        let base = *off.get_or_insert(per_min);
        println!(
            "{name:<22}  {per_min:>19.2}  {:>22.2}  {pictures:>17}",
            per_min - base
        );
        agent.terminate(Duration::from_secs(15)).unwrap();
    }
}

/// False alarms (`benches/camera-view.sh`; ignored in the suite): the normal scene for an hour
/// (`BENCH_FALSE_ALARM_S`, default 3600) with the lights going down and up every minute, the
/// view approved, the agent with the default `[view]` settings (a picture every 2 s, 20 s to
/// count). Counts the `view_problem` events and `view_*` alerts at the controller (the goal is
/// 0), and the analysed pictures in which a problem was seen at all (the margin). Prints
/// figures, asserts only that the run worked.
#[test]
#[ignore = "benchmark: run by benches/camera-view.sh"]
fn false_alarms_in_an_hour_of_lighting_changes() {
    if !ready(Store::Local) {
        return;
    }
    let smoke = std::env::var("SMOKE").is_ok_and(|v| v == "1");
    let secs: u64 = if smoke {
        8
    } else {
        std::env::var("BENCH_FALSE_ALARM_S")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(3600)
    };
    let step: u64 = if smoke { 2 } else { 60 };
    let rig = Rig::start(Store::Local);
    let cam = TestCamera::start(
        env!("CARGO_BIN_EXE_test-camera"),
        CameraOpts {
            width: 640,
            height: 360,
            scene_file: Some(rig.dir.path().join("scene")),
            ..CameraOpts::default()
        },
    )
    .unwrap();
    cam.set_scene("normal").unwrap();
    let agent = start_agent_with(&rig, &cam, "[view]\n");
    rig.register(&rig.dir.path().join("agent.toml"));
    eventually("the camera's view is reported", 60, || {
        let v = view(&rig);
        Ok(v["analysed_at"].is_string().then_some(()))
    });
    rig.command(json!({"kind": "snapshot", "camera": "desk"}));
    let r = rig
        .api
        .post(
            &format!("/api/stations/{STATION}/cameras/desk/view"),
            &json!({"decision": "approve"}),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    eventually("approved", 30, || {
        Ok((view(&rig)["approved"] == true).then_some(()))
    });
    let start = Utc::now();
    let before = agent.log().matches("view picture analysed").count();
    println!("== false alarms: {secs} s of the normal scene, lighting normal/darker/normal/brighter every {step} s, default [view] settings, view approved");
    let t0 = Instant::now();
    let scenes = ["darker", "normal", "brighter", "normal"];
    let mut i = 0;
    while t0.elapsed() < Duration::from_secs(secs) {
        cam.set_scene(scenes[i % scenes.len()]).unwrap();
        i += 1;
        std::thread::sleep(
            Duration::from_secs(step).min(Duration::from_secs(secs).saturating_sub(t0.elapsed())),
        );
    }
    let log = agent.log();
    let analysed: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("view picture analysed"))
        .skip(before)
        .collect();
    let seen = analysed
        .iter()
        .filter(|l| !l.contains("problems=0"))
        .count();
    let events = rig
        .api
        .ok(&format!("/api/stations/{STATION}/events?limit=1000"))
        .unwrap();
    let problems = events["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["kind"] == "view_problem"
                && e["received_at"].as_i64().unwrap_or(0) >= start.timestamp_millis()
        })
        .count();
    let alerts = rig
        .api
        .ok(&format!("/api/stations/{STATION}/alerts"))
        .unwrap();
    let view_alerts = alerts["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"].as_str().unwrap_or("").starts_with("view_"))
        .count();
    println!(
        "lighting changes: {i}; pictures analysed: {}; pictures with a problem seen: {seen}",
        analysed.len()
    );
    println!("false alarms: {problems} view_problem events, {view_alerts} view alerts (goal: 0)");
    assert!(!analysed.is_empty(), "no picture analysed");
}
