//! The operators' dashboard in a real browser: Debian's headless Chromium driven through
//! chromedriver (WebDriver, with `fantoccini`), against a real controller, a private Mosquitto
//! and a real agent recording a test camera.
//!
//! What it shows: `/` without a session goes to the login page; a wrong password is refused
//! with a message; after logging in the station appears with its state, and other stations
//! (published by hand) sort by need of attention; the search filters; the station page shows
//! the camera, the health chart, and a ping and a snapshot command come back `done` with the
//! snapshot displayed; the fleet shows footage only on stations, and a requested upload window
//! (the agent's key registered, the archive a local folder) is followed to `100 % · done`; when the agent is killed (SIGKILL: the broker publishes its last will)
//! the row turns `offline` and the `offline` alert appears — through the server-sent events,
//! without reloading the page (a marker set in the page survives).
//!
//! Skips (with a line saying why) when Chromium, chromedriver, Mosquitto or x264enc is
//! missing; `scripts/install-deps` installs them. `STATIONWATCH_SCREENSHOTS=<dir>` saves
//! screenshots of the pages along the way.

use std::path::{Path, PathBuf};
use std::time::Instant;

use serde_json::{json, Value};
use stationwatch_tests::agent_process::{agent_bin, station_public_key, AgentProcess};
use stationwatch_tests::browser::{
    chromedriver_bin, chromium_bin, click, js, screenshot, step, type_into, wait_js, Browser, START,
};
use stationwatch_tests::controller_process::{
    controller_bin, Api, ControllerOpts, ControllerProcess, ADMIN_PASSWORD, ADMIN_USER,
};
use stationwatch_tests::have_gst_element;
use stationwatch_tests::mosquitto::{have_mosquitto, publish, Broker, BrokerOpts};

const STATION: &str = "DASH-0001";
const HEALTHY: &str = "DASH-0100";
const DEGRADED: &str = "DASH-0101";

fn row(id: &str) -> String {
    format!("document.querySelector('#station-rows tr[data-station=\"{id}\"]')")
}

// ---- stations

/// Whether this machine's clock is synchronised, as the agent will report it (`adjtimex`).
/// Containers and fresh VMs often are not; the agent then rightly reports `clock_unsynced` and
/// its station is `degraded`, not `online`.
fn host_clock_synced() -> bool {
    // SAFETY: a zeroed timex with modes = 0 makes adjtimex(2) a pure read.
    let mut tx: libc::timex = unsafe { std::mem::zeroed() };
    let ret = unsafe { libc::adjtimex(&mut tx) };
    ret >= 0 && ret != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0
}

fn agent_config(dir: &Path, broker_port: u16, upload_url: &str) -> String {
    format!(
        "[station]\nid = \"{STATION}\"\nname = \"Test school 1\"\nregion = \"North\"\n\n\
         [storage]\npath = \"{}\"\nsegment_seconds = 4\n\n\
         [supervision]\nstall_timeout_seconds = 3\n\n\
         [[camera]]\nid = \"cam\"\nsource = \"test\"\nwidth = 160\nheight = 120\nfps = 15\nbitrate_kbps = 200\n\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:{broker_port}\"\nhealth_interval_seconds = 2\n\n\
         [upload]\nurl = \"{upload_url}\"\n",
        dir.join("rec").display()
    )
}

/// Publishes a retained status and health for a station that exists only as these messages
/// (its report interval is an hour, so it stays as reported for the whole test).
fn publish_station(broker: &Broker, id: &str, name: &str, region: &str, health: Value) {
    let now = chrono::Utc::now();
    let at = now.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let status = json!({"v": 1, "state": "online", "at": at, "agent_version": "0.1.0"});
    let mut h = json!({
        "v": 1, "at": at, "interval_s": 3600,
        "agent": {"version": "0.1.0", "station_name": name, "region": region, "uptime_s": 7200},
        "clock": {"synced": true},
        "system": {"load_1m": 0.4, "temperature_c": 48.5},
    });
    h.as_object_mut()
        .unwrap()
        .extend(health.as_object().unwrap().clone());
    let topic = |t: &str| format!("stationwatch/v1/{id}/{t}");
    publish(
        &broker.client(),
        &topic("status"),
        status.to_string().as_bytes(),
        1,
        true,
    )
    .unwrap();
    publish(
        &broker.client(),
        &topic("health"),
        h.to_string().as_bytes(),
        1,
        true,
    )
    .unwrap();
}

fn ready() -> Option<(PathBuf, PathBuf)> {
    let (Some(chromium), Some(driver)) = (chromium_bin(), chromedriver_bin()) else {
        stationwatch_tests::skip_or_fail(
            "chromium or chromedriver missing (run scripts/install-deps: Debian packages \
             chromium and chromium-driver)",
        );
        return None;
    };
    if !stationwatch_tests::require(
        have_mosquitto() && have_gst_element("x264enc"),
        "mosquitto or x264enc missing (run scripts/install-deps)",
    ) {
        return None;
    }
    Some((chromium, driver))
}

#[test]
fn dashboard_shows_a_station_go_offline_live() {
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

async fn scenario(chromium: PathBuf, driver: PathBuf) {
    // Build the binaries first, so that the times printed are the scenario's own.
    controller_bin().unwrap();
    agent_bin().unwrap();
    let t0 = *START.get_or_init(Instant::now);
    let dir = tempfile::tempdir().unwrap();
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let mut opts = ControllerOpts::new(broker.port());
    // Whatever this machine's free disk, the test's stations are not "disk low".
    opts.extra_toml = format!(
        "[rules]\nmin_disk_hours = 1.0\n\
         [enroll]\nbroker_url = \"mqtt://127.0.0.1:{}\"\npasswd_file = \"{}\"\n",
        broker.port(),
        dir.path().join("stations.passwd").display()
    );
    let controller = ControllerProcess::start(dir.path(), &opts).unwrap();
    let base = controller.base_url();
    step("controller started");

    // The pages' own protection: only the login page's assets are public.
    let anon = Api::anonymous(&base);
    assert_eq!(anon.get("/assets/app.js").unwrap().status, 401);
    assert_eq!(anon.get("/api/stations").unwrap().status, 401);
    assert_eq!(anon.get_bytes("/assets/login.js").unwrap().0, 200);

    let agent_dir = dir.path().join("agent");
    std::fs::create_dir_all(&agent_dir).unwrap();
    let mut agent =
        AgentProcess::start(&agent_dir, &agent_config(&agent_dir, broker.port(), &base)).unwrap();
    let recording_from = chrono::Utc::now();
    step("agent started");
    // Its key registered, so the archive takes its uploads.
    let key = station_public_key(&agent_dir.join("agent.toml")).unwrap();
    let admin = controller.admin().unwrap();
    let r = admin
        .put(
            &format!("/api/stations/{STATION}/key"),
            &json!({ "key": key }),
        )
        .unwrap();
    assert!(r.status == 201 || r.status == 200, "{r:?}");
    publish_station(
        &broker,
        HEALTHY,
        "Town hall 100",
        "North",
        json!({
            "cameras": {
                "box": {"state": "recording", "fps": 15.0, "bitrate_bps": 1_500_000},
                "desk": {"state": "recording", "fps": 15.0, "bitrate_bps": 1_400_000},
            },
            "disk": {"free_bytes": 200_000_000_000u64, "total_bytes": 256_000_000_000u64, "hours_left": 80.5, "low": false},
        }),
    );
    publish_station(
        &broker,
        DEGRADED,
        "Library 101",
        "South",
        json!({
            "cameras": {
                "box": {"state": "lost", "detail": "no frames for 12 s"},
                "desk": {"state": "recording", "fps": 15.0, "bitrate_bps": 1_400_000},
            },
            "disk": {"free_bytes": 2_000_000_000u64, "total_bytes": 64_000_000_000u64, "hours_left": 0.5, "low": true},
        }),
    );

    let browser = Browser::start(&driver, dir.path());
    step("chromedriver started");
    let c = browser.session(&chromium).await;
    step("browser session");

    // No session: the dashboard sends us to the login page.
    c.goto(&format!("{base}/")).await.unwrap();
    wait_js(
        &c,
        "location.pathname === '/login' && document.getElementById('login')",
        10,
        "redirect to /login",
    )
    .await;
    c.goto(&format!("{base}/stations/{STATION}")).await.unwrap();
    wait_js(
        &c,
        "location.pathname === '/login'",
        10,
        "redirect to /login",
    )
    .await;

    // A wrong password is refused with a message.
    type_into(&c, "#username", ADMIN_USER).await;
    type_into(&c, "#password", "not-the-password").await;
    click(&c, "#login button[type=submit]").await;
    let err = wait_js(
        &c,
        "document.getElementById('error').textContent",
        10,
        "login error",
    )
    .await;
    assert!(
        err.as_str()
            .unwrap()
            .contains("wrong user name or password"),
        "{err}"
    );
    assert_eq!(c.current_url().await.unwrap().path(), "/login");

    // The right one opens the dashboard.
    type_into(&c, "#password", ADMIN_PASSWORD).await;
    click(&c, "#login button[type=submit]").await;
    wait_js(
        &c,
        "location.pathname === '/' && document.getElementById('station-rows')",
        10,
        "dashboard after login",
    )
    .await;
    // From here on the page must never load again: everything comes from the API and SSE.
    js(&c, "window.__stationwatchMarker = 'kept'").await;

    // An admin creates a one-time enrollment code for a new station; it is shown once.
    type_into(&c, "#enroll-station", "KG-0042").await;
    click(&c, "#enroll-form button[type=submit]").await;
    let code = wait_js(
        &c,
        "(document.getElementById('enroll-code') || {}).textContent",
        10,
        "the enrollment code",
    )
    .await;
    let code = code.as_str().unwrap().to_owned();
    assert_eq!(code.len(), 39, "{code}");
    let audit = admin.ok("/api/audit?limit=50").unwrap();
    assert!(
        audited(&audit, |e| e["action"] == "enroll_code"
            && e["target"] == "KG-0042"),
        "{audit}"
    );
    assert!(!audit.to_string().contains(&code), "the code is not kept");

    // The admin sees it open in the list of codes and revokes it (given to the wrong person):
    // the row says revoked, the audit says who, and the device's enrollment is refused.
    let open_row = "document.querySelector('#enroll-codes tr[data-state=open]')";
    wait_js(
        &c,
        &format!("{open_row} && {open_row}.firstChild.textContent === 'KG-0042'"),
        10,
        "the open code listed",
    )
    .await;
    js(&c, "window.confirm = () => true").await;
    click(&c, "#enroll-codes button[data-revoke]").await;
    wait_js(
        &c,
        &format!(
            "(document.querySelector('#enroll-codes tr[data-state=revoked] td:nth-child(2)') || {{}}).textContent === 'revoked by {ADMIN_USER}'"
        ),
        10,
        "the code shown revoked",
    )
    .await;
    let audit = admin.ok("/api/audit?limit=50").unwrap();
    assert!(
        audited(&audit, |e| e["action"] == "enroll_revoke"
            && e["target"] == "KG-0042"
            && e["username"] == ADMIN_USER),
        "{audit}"
    );
    let refused = admin
        .post(
            "/api/enroll",
            &json!({
                "code": code,
                "station": "KG-0042",
                // A device's key (the agent's: the code is checked before the key matters).
                "public_key": key,
            }),
        )
        .unwrap();
    assert_eq!(refused.status, 403, "{refused:?}");
    assert!(
        refused.body["error"]
            .as_str()
            .unwrap_or("")
            .contains("revoked"),
        "{refused:?}"
    );

    // The agent's station appears, connected (online, or degraded only for this machine's
    // unsynchronised clock), updated live.
    let synced = host_clock_synced();
    let expected = if synced { "online" } else { "degraded" };
    if !synced {
        eprintln!("note: this machine's clock is not synchronised; the station is expected degraded (clock_unsynced) instead of online");
    }
    wait_js(
        &c,
        &format!(
            "{r} && {r}.dataset.state === '{expected}' && [...{r}.querySelectorAll('li[data-kind]')].every(li => li.dataset.kind === 'clock_unsynced') && {r}.querySelector('td.c-num').textContent === '1/1'",
            r = row(STATION)
        ),
        40,
        "the agent's station connected and recording",
    )
    .await;
    wait_js(
        &c,
        &format!(
            "{} && {}.dataset.state === 'online' && {}.dataset.state === 'degraded'",
            row(HEALTHY),
            row(HEALTHY),
            row(DEGRADED)
        ),
        10,
        "the published stations",
    )
    .await;
    wait_js(
        &c,
        "document.getElementById('count-total').textContent === '3' && document.getElementById('live').dataset.live === 'open'",
        10,
        "counts and live updates",
    )
    .await;
    let reasons = js(
        &c,
        &format!(
            "[...{}.querySelectorAll('li[data-kind]')].map(li => li.dataset.kind).sort().join(',')",
            row(DEGRADED)
        ),
    )
    .await;
    assert_eq!(reasons, "camera_not_recording,disk_low");
    // Nothing uploaded yet (mode `requested`): the fleet shows footage only on stations (the
    // fleet totals are fetched every 30 s).
    wait_js(
        &c,
        "!document.getElementById('unarchived').hidden && document.getElementById('unarchived').textContent.startsWith('footage only on stations')",
        45,
        "footage only on stations",
    )
    .await;
    // Attention first: the degraded station with two reasons before the healthy one.
    let order = js(
        &c,
        "[...document.querySelectorAll('#station-rows tr')].map(r => r.dataset.station).join(',')",
    )
    .await;
    let order = order.as_str().unwrap().to_owned();
    assert!(order.find(DEGRADED) < order.find(HEALTHY), "order {order}");
    screenshot(&c, "dashboard-list").await;

    // Search by name narrows the list; clearing it brings everything back.
    type_into(&c, "#search", "library").await;
    wait_js(
        &c,
        &format!(
            "document.querySelectorAll('#station-rows tr').length === 1 && {}",
            row(DEGRADED)
        ),
        10,
        "search result",
    )
    .await;
    assert!(js(&c, "location.search")
        .await
        .as_str()
        .unwrap()
        .contains("q=library"));
    js(
        &c,
        "(() => { const s = document.getElementById('search'); s.value = ''; s.dispatchEvent(new Event('input')); return true; })()",
    )
    .await;
    wait_js(
        &c,
        "document.querySelectorAll('#station-rows tr').length === 3",
        10,
        "all stations again",
    )
    .await;

    // The station page: camera, chart, commands answered by the agent.
    click(
        &c,
        &format!("#station-rows tr[data-station=\"{STATION}\"] a.sid"),
    )
    .await;
    wait_js(
        &c,
        &format!(
            "location.pathname === '/stations/{STATION}' && !document.getElementById('station-view').hidden && document.getElementById('station-view').dataset.station === '{STATION}'"
        ),
        10,
        "station page",
    )
    .await;
    wait_js(
        &c,
        "document.querySelector('#cameras article[data-camera=\"cam\"]')",
        10,
        "camera card",
    )
    .await;
    wait_js(
        &c,
        "!document.getElementById('station-commands').hidden",
        5,
        "command buttons for an admin",
    )
    .await;
    click(&c, "#cmd-ping").await;
    wait_js(
        &c,
        "document.querySelector('#commands tr[data-status=\"done\"]')",
        20,
        "ping done",
    )
    .await;
    // A requested window goes up; the station page follows the job to 100 % done.
    let to = chrono::Utc::now() - chrono::Duration::seconds(1);
    let stamp = |t: chrono::DateTime<chrono::Utc>| t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string();
    let r = admin
        .post(
            &format!("/api/stations/{STATION}/commands"),
            &json!({"kind": "upload", "job": "dash-1", "from": stamp(recording_from),
                    "to": stamp(to), "reason": "dashboard test"}),
        )
        .unwrap();
    assert_eq!(r.status, 202, "{r:?}");
    wait_js(
        &c,
        "[...document.querySelectorAll('#station-facts dt')].some(dt => dt.textContent === 'Upload job' && dt.nextElementSibling.textContent.includes('100 % · done'))",
        60,
        "the upload job shown done",
    )
    .await;
    click(
        &c,
        "#cameras button[data-cmd=\"snapshot\"][data-camera=\"cam\"]",
    )
    .await;
    wait_js(
        &c,
        "(() => { const i = document.querySelector('#cameras article[data-camera=\"cam\"] img'); return i && i.complete && i.naturalWidth > 0; })()",
        30,
        "the snapshot shown",
    )
    .await;
    wait_js(
        &c,
        "document.querySelector('#chart svg path.c-line')",
        15,
        "health chart",
    )
    .await;
    screenshot(&c, "dashboard-station").await;
    js(&c, "window.scrollTo(0, 0) || true").await;
    click(&c, "#station-view a.back").await;
    wait_js(
        &c,
        &format!("location.pathname === '/' && {}", row(STATION)),
        10,
        "back to the list",
    )
    .await;

    // The agent dies: the broker publishes its last will, the row turns offline and the alert
    // opens, all without reloading the page.
    agent.kill().unwrap();
    let killed = Instant::now();
    wait_js(
        &c,
        &format!("{r} && {r}.dataset.state === 'offline'", r = row(STATION)),
        30,
        "the station offline",
    )
    .await;
    eprintln!("offline shown {:?} after the kill", killed.elapsed());
    wait_js(
        &c,
        &format!(
            "document.querySelector('#alerts tr[data-alert-station=\"{STATION}\"][data-kind=\"offline\"]')"
        ),
        20,
        "the offline alert",
    )
    .await;
    wait_js(
        &c,
        "document.getElementById('count-offline').textContent === '1'",
        10,
        "offline count",
    )
    .await;
    assert_eq!(
        js(
            &c,
            "document.querySelector('#station-rows tr').dataset.station"
        )
        .await,
        STATION,
        "an offline station comes first"
    );
    assert_eq!(
        js(&c, "window.__stationwatchMarker").await,
        "kept",
        "the page was reloaded"
    );
    screenshot(&c, "dashboard-offline").await;

    // Logging out ends the session.
    click(&c, "#logout").await;
    wait_js(
        &c,
        "location.pathname === '/login'",
        10,
        "login page after logout",
    )
    .await;
    c.goto(&format!("{base}/")).await.unwrap();
    wait_js(
        &c,
        "location.pathname === '/login'",
        10,
        "no session after logout",
    )
    .await;

    // An observer sees only the stations granted to them, and no command buttons.
    let created = admin
        .post(
            "/api/users",
            &json!({"username": "observer1", "password": "observer-password-1",
                    "role": "observer", "grants": [HEALTHY]}),
        )
        .unwrap();
    assert_eq!(created.status, 201, "{}", created.body);
    type_into(&c, "#username", "observer1").await;
    type_into(&c, "#password", "observer-password-1").await;
    click(&c, "#login button[type=submit]").await;
    wait_js(
        &c,
        &format!(
            "location.pathname === '/' && document.getElementById('count-total').textContent === '1' && document.querySelectorAll('#station-rows tr').length === 1 && {}",
            row(HEALTHY)
        ),
        10,
        "the observer's one station",
    )
    .await;
    click(
        &c,
        &format!("#station-rows tr[data-station=\"{HEALTHY}\"] a.sid"),
    )
    .await;
    wait_js(
        &c,
        "document.querySelectorAll('#cameras article[data-camera]').length === 2",
        10,
        "the observer's station page",
    )
    .await;
    assert_eq!(
        js(
            &c,
            "document.getElementById('station-commands').hidden && !document.querySelector('button[data-cmd]')"
        )
        .await,
        true,
        "command buttons shown to an observer"
    );

    c.close().await.unwrap();
    drop(browser);
    drop(controller);
    eprintln!("dashboard scenario took {:?}", t0.elapsed());
}

/// Whether `GET /api/audit` holds an entry matching `f`.
fn audited(audit: &Value, f: impl Fn(&Value) -> bool) -> bool {
    audit["entries"]
        .as_array()
        .is_some_and(|entries| entries.iter().any(f))
}
