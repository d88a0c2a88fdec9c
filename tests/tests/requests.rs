//! Requests for recordings (issue 15) with real parts: an agent recording a test camera in
//! upload mode `requested` (nothing leaves the station unless asked), a private Mosquitto, the
//! controller binary with a local archive.
//!
//! What the people involved check: an observer logs in with a real browser (headless Chromium),
//! files a request for a granted station on the requests page and follows its status live to
//! ready; another observer cannot see it or file one for a station not granted; only staff
//! decide; an approved request is collected through the archive and becomes ready, with every
//! gap explained when the window reaches before the recording (shown on the page's timeline);
//! the page plays the window across a segment boundary with the station time beside it; the
//! evidence bundle downloaded by the observer verifies OK with the controller's key, FAILED
//! with one byte changed and UNTRUSTED without a key; a refused request stays refused; each
//! step is in the request's history and in the audit log.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::{json, Value};
use stationwatch_tests::agent_process::{agent_command, AgentProcess};
use stationwatch_tests::archive::{ready, ts, AgentSpec, Rig, Store, STATION};
use stationwatch_tests::browser::{
    chromedriver_bin, chromium_bin, click, js, screenshot, type_into, wait_js, Browser, START,
};
use stationwatch_tests::controller_process::Api;
use stationwatch_tests::eventually;
use stationwatch_tests::requests::{log_in, user, wait_status, PASSWORD};

fn statuses(r: &Value) -> Vec<String> {
    r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_observer_requests_a_window_watches_it_and_verifies_the_bundle_nobody_else_sees_it() {
    if !ready(Store::Local) {
        return;
    }
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
        .block_on(scenario(chromium, driver));
}

async fn scenario(chromium: std::path::PathBuf, driver: std::path::PathBuf) {
    let rig = Rig::start(Store::Local);
    let storage = rig.dir.path().join("rec");
    let cfg = AgentSpec {
        cameras: &["desk"],
        kbps: 800,
        segment_s: 2,
        mqtt: format!("mqtt://127.0.0.1:{}", rig.broker.port()),
        upload_url: rig.ctl.base_url(),
        upload_extra: "".into(),
        camera_extra: "".into(),
        rtsp: vec![],
    }
    .toml(&storage);
    let agent = AgentProcess::start(rig.dir.path(), &cfg).unwrap();
    agent
        .wait_log("agent ready", Duration::from_secs(30))
        .unwrap();
    rig.register(&rig.dir.path().join("agent.toml"));
    let t0 = Utc::now();
    let observer = user(&rig, "ngo-observer", "observer", &[STATION]);
    let stranger = user(&rig, "other-observer", "observer", &[]);
    // The station has reported its camera.
    eventually("station reports its camera", 30, || {
        let d = observer.ok(&format!("/api/stations/{STATION}"))?;
        Ok(d["health"]["cameras"]["desk"].is_object().then_some(()))
    });
    std::thread::sleep(Duration::from_secs(9));
    let t1 = Utc::now() - chrono::Duration::seconds(1);

    // Bad requests are refused with the reason, and nothing is filed.
    let file = |api: &Api, body: Value| api.post("/api/requests", &body).unwrap();
    let base = json!({"station": STATION, "from": ts(t0), "to": ts(t1), "reason": "complaint 17: ballot box hidden"});
    let mut no_reason = base.clone();
    no_reason["reason"] = json!("   ");
    let r = file(&observer, no_reason);
    assert_eq!(r.status, 400, "{r:?}");
    assert!(
        r.body["error"].as_str().unwrap().contains("reason"),
        "{r:?}"
    );
    let mut backwards = base.clone();
    backwards["from"] = json!(ts(t1));
    backwards["to"] = json!(ts(t0));
    assert_eq!(file(&observer, backwards).status, 400);
    let mut too_long = base.clone();
    too_long["from"] = json!(ts(t1 - chrono::Duration::days(2)));
    assert_eq!(file(&observer, too_long).status, 400);
    let mut no_camera = base.clone();
    no_camera["cameras"] = json!(["roof"]);
    assert_eq!(file(&observer, no_camera).status, 400);
    // A station not granted does not exist for the stranger.
    let r = file(&stranger, base.clone());
    assert_eq!(r.status, 404, "{r:?}");

    // Filed in the browser: the observer's requests page, the form, then the request's page.
    let browser = Browser::start(&driver, rig.dir.path());
    let c = browser.session(&chromium).await;
    let _ = START.set(Instant::now());
    let base_url = rig.ctl.base_url();
    log_in(&c, &base_url, "ngo-observer", PASSWORD).await;
    c.goto(&format!("{base_url}/requests")).await.unwrap();
    wait_js(
        &c,
        "!document.getElementById('list-view').hidden",
        10,
        "requests page",
    )
    .await;
    type_into(&c, "#rq-station", STATION).await;
    // datetime-local inputs take the browser's local time, to the second: whole seconds
    // inside the recorded time.
    let local = |t: chrono::DateTime<Utc>| {
        t.with_timezone(&chrono::Local)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let t0s = t0 + chrono::Duration::seconds(1);
    js(
        &c,
        &format!(
            "(document.getElementById('rq-from').value = '{}', document.getElementById('rq-to').value = '{}', true)",
            local(t0s),
            local(t1)
        ),
    )
    .await;
    type_into(&c, "#rq-reason", "complaint 17: ballot box hidden").await;
    click(&c, "#rq-submit").await;
    let id = wait_js(
        &c,
        "location.pathname.startsWith('/requests/r') && document.getElementById('r-status').dataset.status === 'submitted' && document.getElementById('r-id').textContent",
        10,
        "the new request's page, submitted",
    )
    .await
    .as_str()
    .unwrap()
    .to_owned();
    // From here on the page must not load again: the status comes through server-sent events.
    js(&c, "window.__marker = 'kept'").await;
    screenshot(&c, "request-submitted").await;
    let req = observer.ok(&format!("/api/requests/{id}")).unwrap();
    assert!(id.len() >= 33, "guessable id {id}");
    assert_eq!(req["status"], "submitted");
    assert_eq!(req["cameras"], json!(["desk"]), "all cameras resolved");
    assert_eq!(
        stranger.get(&format!("/api/requests/{id}")).unwrap().status,
        404
    );
    assert_eq!(
        stranger.ok("/api/requests?status=all").unwrap()["requests"],
        json!([])
    );
    let mine = observer.ok("/api/requests").unwrap();
    assert_eq!(mine["requests"][0]["id"], id.as_str());
    // Observers do not decide.
    let r = observer
        .post(
            &format!("/api/requests/{id}/decision"),
            &json!({"approve": true}),
        )
        .unwrap();
    assert_eq!(r.status, 403, "{r:?}");

    // A second request reaches before the recording began: ready with that gap explained.
    let mut early = base.clone();
    early["from"] = json!(ts(t0 - chrono::Duration::seconds(30)));
    early["reason"] = json!("complaint 18: opening of the station");
    let early = file(&observer, early).body["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // A third is refused.
    let mut third = base.clone();
    third["reason"] = json!("just curious");
    let third = file(&observer, third).body["id"]
        .as_str()
        .unwrap()
        .to_owned();

    // The staff queue: what waits for a decision, oldest first.
    let queue = rig.api.ok("/api/requests").unwrap();
    let ids: Vec<&str> = queue["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![id.as_str(), early.as_str(), third.as_str()]);

    let decide = |rid: &str, body: Value| {
        rig.api
            .post(&format!("/api/requests/{rid}/decision"), &body)
            .unwrap()
    };
    let r = decide(&third, json!({"approve": false, "reason": ""}));
    assert_eq!(r.status, 400, "a refusal needs a reason: {r:?}");
    let r = decide(
        &third,
        json!({"approve": false, "reason": "no legal basis given"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "refused");
    let r = decide(&third, json!({"approve": true}));
    assert_eq!(r.status, 409, "a refused request stays refused: {r:?}");

    let r = decide(
        &id,
        json!({"approve": true, "reason": "complaint registered"}),
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["status"], "collecting");
    assert!(r.body["command_id"].is_string());
    assert_eq!(
        decide(&early, json!({"approve": true})).body["status"],
        "collecting"
    );

    // Collected through the archive; the requester's page follows it live to ready.
    wait_js(
        &c,
        "document.getElementById('r-status').dataset.status === 'ready'",
        90,
        "ready on the observer's page",
    )
    .await;
    assert_eq!(
        js(&c, "window.__marker").await,
        "kept",
        "the page was reloaded"
    );
    let done = wait_status(&observer, &id, 10, &["ready", "ready_with_gaps", "failed"]);
    eprintln!("request: {done}");
    assert_eq!(done["status"], "ready", "{done}");
    assert_eq!(done["gaps"], json!([]));
    assert_eq!(
        statuses(&done),
        vec!["submitted", "approved", "ready"],
        "{done}"
    );
    assert_eq!(done["decided_by"], "admin");
    let hold = done["hold_until"].as_i64().unwrap() - done["ready_at"].as_i64().unwrap();
    assert_eq!(
        hold,
        365 * 86_400_000,
        "held a year after delivery by default"
    );
    assert!(
        done["progress"]["archived_segments"].as_u64().unwrap() >= 3,
        "{done}"
    );
    // The page plays the window: past the first segment's end (2 s segments), with the
    // station's time of the frame beside the video, inside the window.
    wait_js(
        &c,
        "document.getElementById('r-video').currentTime > 3",
        30,
        "the video playing past a segment boundary",
    )
    .await;
    let clock = js(&c, "document.getElementById('r-clock').textContent").await;
    let shown = chrono::NaiveDateTime::parse_from_str(
        clock.as_str().unwrap().trim_end_matches(" UTC"),
        "%Y-%m-%d %H:%M:%S%.3f",
    )
    .unwrap_or_else(|e| panic!("station time {clock}: {e}"))
    .and_utc();
    assert!(
        shown > t0 && shown < t1,
        "station time {shown} outside the window {t0}..{t1}"
    );
    screenshot(&c, "request-playing").await;

    let early_done = wait_status(
        &observer,
        &early,
        60,
        &["ready", "ready_with_gaps", "failed"],
    );
    assert_eq!(early_done["status"], "ready_with_gaps", "{early_done}");
    let gaps = early_done["gaps"].as_array().unwrap();
    assert!(!gaps.is_empty());
    let first = &gaps[0];
    assert_eq!(first["camera"], "desk");
    assert_eq!(
        first["from_ms"].as_i64().unwrap(),
        (t0 - chrono::Duration::seconds(30)).timestamp_millis()
    );
    assert!(
        first["reason"]
            .as_str()
            .unwrap()
            .contains("not in the station's manifest"),
        "{first}"
    );

    // The timeline of the early request shows the gap before the recording, with its reason.
    c.goto(&format!("{base_url}/requests/{early}"))
        .await
        .unwrap();
    let title = wait_js(
        &c,
        "(document.querySelector('#r-timeline .tl-gap') || {}).title",
        20,
        "a gap on the timeline",
    )
    .await;
    assert!(
        title
            .as_str()
            .unwrap()
            .contains("not in the station's manifest"),
        "{title}"
    );
    wait_js(
        &c,
        "document.querySelector('#r-timeline .tl-span')",
        5,
        "a recorded span",
    )
    .await;
    screenshot(&c, "request-gap").await;
    drop(c);
    drop(browser);

    // No route gives the footage to anyone else: another observer, or no session at all.
    let (code, m3u8) = observer
        .get_bytes(&format!("/api/requests/{id}/hls/desk"))
        .unwrap();
    assert_eq!(code, 200);
    let m3u8 = String::from_utf8(m3u8).unwrap();
    assert!(m3u8.contains("#EXT-X-PROGRAM-DATE-TIME:"), "{m3u8}");
    let segment = m3u8
        .lines()
        .find(|l| l.starts_with("/api/requests/"))
        .unwrap()
        .to_owned();
    let (code, ts_bytes) = observer.get_bytes(&segment).unwrap();
    assert_eq!(code, 200);
    assert_eq!(ts_bytes[0], 0x47, "an MPEG-TS segment as recorded");
    let anonymous = Api::anonymous(&base_url);
    for path in [
        format!("/api/requests/{id}"),
        format!("/api/requests/{id}/timeline"),
        format!("/api/requests/{id}/hls/desk"),
        segment.clone(),
        format!("/api/requests/{id}/bundle"),
        format!("/api/requests/{id}/mp4/desk"),
    ] {
        assert_eq!(stranger.get(&path).unwrap().status, 404, "{path}");
        assert_eq!(anonymous.get(&path).unwrap().status, 401, "{path}");
    }

    // The MP4 for people who only want to watch: one file, the recorded frames remuxed.
    let (code, mp4) = observer
        .get_bytes(&format!("/api/requests/{id}/mp4/desk"))
        .unwrap();
    assert_eq!(code, 200);
    assert_eq!(&mp4[4..8], b"ftyp", "an MP4");
    if stationwatch_tests::require(
        stationwatch_tests::have_binary("ffprobe"),
        "ffprobe missing (run scripts/install-deps)",
    ) {
        let file = rig.dir.path().join("window.mp4");
        std::fs::write(&file, &mp4).unwrap();
        let out = std::process::Command::new("ffprobe")
            .args(["-v", "error", "-select_streams", "v:0", "-count_packets"])
            .args([
                "-show_entries",
                "stream=codec_name,nb_read_packets:format=duration",
            ])
            .args(["-of", "json"])
            .arg(&file)
            .output()
            .unwrap();
        let probe: Value = serde_json::from_slice(&out.stdout).unwrap();
        eprintln!("ffprobe of the MP4: {probe}");
        assert_eq!(probe["streams"][0]["codec_name"], "h264", "{probe}");
        let frames: u64 = probe["streams"][0]["nb_read_packets"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let segs = done["progress"]["archived_segments"].as_u64().unwrap();
        // 15 fps, 2 s segments: every frame of every segment of the window.
        assert!(
            frames >= (segs - 1) * 30 && frames <= segs * 30 + 2,
            "{frames} frames for {segs} segments"
        );
    }

    // The evidence bundle, downloaded by the observer, checked offline.
    let (code, tar) = observer
        .get_bytes(&format!("/api/requests/{id}/bundle"))
        .unwrap();
    assert_eq!(code, 200);
    let dir = rig.dir.path().join("bundle");
    std::fs::create_dir_all(&dir).unwrap();
    let bundle = dir.join("bundle.tar");
    std::fs::write(&bundle, &tar).unwrap();
    let controller_key = rig.api.ok("/api/controller-key").unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned();
    let verify = |path: &Path, key: Option<&str>| {
        let mut args = vec!["verify", path.to_str().unwrap()];
        if let Some(k) = key {
            args.extend(["--controller-key", k]);
        }
        let (status, out, err) = agent_command(&args).unwrap();
        (status.code().unwrap_or(-1), format!("{out}{err}"))
    };
    let (code, out) = verify(&bundle, Some(&controller_key));
    eprintln!("verify bundle:\n{out}");
    assert_eq!(code, 0, "OK expected:\n{out}");
    let (code, out) = verify(&bundle, None);
    assert_eq!(code, 4, "UNTRUSTED expected without a key:\n{out}");
    // One byte changed in the middle of a segment.
    let mut altered = tar.clone();
    let at = ts_member_data(&altered).expect("a segment in the bundle");
    altered[at] ^= 0x01;
    let bad = dir.join("altered.tar");
    std::fs::write(&bad, &altered).unwrap();
    let (code, out) = verify(&bad, Some(&controller_key));
    assert_eq!(code, 5, "FAILED expected with one byte changed:\n{out}");

    // Each step is audited.
    let audit = rig.api.ok("/api/audit?limit=500").unwrap();
    let lines: Vec<String> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "request")
        .map(|e| e["detail"].as_str().unwrap().to_owned())
        .collect();
    for needle in [
        format!("file {id}"),
        format!("approved {id}"),
        format!("refused {third}: no legal basis given"),
    ] {
        assert!(
            lines.iter().any(|l| l.starts_with(&needle)),
            "{needle} not in {lines:?}"
        );
    }
    // The refused request stayed refused; the queue is empty now.
    assert_eq!(
        observer.ok(&format!("/api/requests/{third}")).unwrap()["status"],
        "refused"
    );
    assert_eq!(rig.api.ok("/api/requests").unwrap()["requests"], json!([]));
}

/// Offset of a byte in the middle of the data of the first segment (`.ts`) in a tar.
fn ts_member_data(bytes: &[u8]) -> Option<usize> {
    let mut archive = tar::Archive::new(bytes);
    for e in archive.entries().ok()? {
        let e = e.ok()?;
        let is_ts = e.path().ok()?.extension().is_some_and(|x| x == "ts");
        if is_ts && e.size() > 1000 {
            return Some((e.raw_file_position() + e.size() / 2) as usize);
        }
    }
    None
}
