//! Live viewing on a running controller (SQLite, no broker, no gateway: the HLS folder a gateway
//! would write is written by the test): the gateways' station list and its token, the public
//! flag, operators' unmasked live HLS, and the public page, which must never reach `private/`.
//! What a user or a gateway would check: status codes, the passphrase a station must use, which
//! cameras are listed, which bytes come back.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use station_controller::protocol::live::{passphrase, StreamStatus};
use station_controller::protocol::manifest::{StationKey, Timestamp};
use station_controller::protocol::mqtt::{
    CameraHealth, CameraLive, Health, LiveRung, LiveSetting, LiveState,
};
use station_controller::protocol::{CameraId, StationId};
use station_controller::{Controller, ControllerConfig};

const ADMIN_PW: &str = "admin-password-1";
const OP_PW: &str = "operator-password-1";
const OBS_PW: &str = "observer-password-1";

/// The controller's config; `public_page: None` leaves `[live]` out (live viewing off).
fn config(dir: &Path, public_page: Option<bool>) -> ControllerConfig {
    let pw = dir.join("pw");
    std::fs::write(&pw, ADMIN_PW).unwrap();
    let mut text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ncookie_secure = false\n\
         [database]\nurl = \"sqlite://{d}/c.db\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:9\"\n\
         [auth]\nbootstrap_admin = \"admin\"\nbootstrap_password_file = \"{pw}\"\n\
         [trust]\nkey_file = \"{d}/controller-key.pem\"\n\
         [archive]\nstore = \"file://{d}/archive\"\nstaging = \"{d}/staging\"\nmax_uploads = 8\n",
        d = dir.display(),
        pw = pw.display()
    );
    if let Some(public) = public_page {
        text.push_str(&format!(
            "[live]\nhls_dir = \"{d}/hls\"\nsecret_file = \"secrets/live.secret\"\n\
             gateway_token_file = \"secrets/gateway.token\"\npublic_page = {public}\n",
            d = dir.display()
        ));
    }
    let file = dir.join("controller.toml");
    std::fs::write(&file, &text).unwrap();
    ControllerConfig::parse(&file, &text, false).unwrap()
}

struct Reply {
    status: u16,
    content_type: String,
    cache_control: String,
    csp: String,
    text: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or(Value::Null)
    }
}

struct Http {
    base: String,
    agent: ureq::Agent,
}

impl Http {
    fn new(c: &Controller) -> Http {
        Http {
            base: format!("http://{}", c.addr),
            agent: ureq::Agent::config_builder()
                .http_status_as_error(false)
                .timeout_global(Some(Duration::from_secs(20)))
                .build()
                .new_agent(),
        }
    }

    /// `auth`: a full `Cookie` or `Authorization` header as `("cookie", v)` / `("authorization", v)`.
    fn call(
        &self,
        method: &str,
        path: &str,
        auth: Option<(&str, &str)>,
        body: Option<Value>,
    ) -> Reply {
        let url = format!("{}{path}", self.base);
        let resp = match (method, body) {
            ("GET", _) => {
                let mut r = self.agent.get(&url);
                if let Some((k, v)) = auth {
                    r = r.header(k, v);
                }
                r.call()
            }
            (m, body) => {
                let mut r = match m {
                    "PUT" => self.agent.put(&url),
                    "POST" => self.agent.post(&url),
                    m => panic!("{m}"),
                };
                if let Some((k, v)) = auth {
                    r = r.header(k, v);
                }
                r.header("content-type", "application/json")
                    .send(body.unwrap_or(Value::Null).to_string().as_bytes())
            }
        }
        .unwrap();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or("")
                .to_owned()
        };
        let (content_type, cache_control, csp) = (
            header("content-type"),
            header("cache-control"),
            header("content-security-policy"),
        );
        let status = resp.status().as_u16();
        Reply {
            status,
            content_type,
            cache_control,
            csp,
            text: resp.into_body().read_to_string().unwrap_or_default(),
        }
    }

    fn get(&self, path: &str, cookie: Option<&str>) -> Reply {
        self.call("GET", path, cookie.map(|c| ("cookie", c)), None)
    }

    fn login(&self, user: &str, pw: &str) -> String {
        let resp = self
            .agent
            .post(&format!("{}/api/login", self.base))
            .header("content-type", "application/json")
            .send(
                json!({ "username": user, "password": pw })
                    .to_string()
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(resp.status().as_u16(), 200, "login {user}");
        resp.headers()
            .get("set-cookie")
            .and_then(|v| v.to_str().ok())
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_owned()
    }
}

fn st(s: &str) -> StationId {
    StationId::new(s).unwrap()
}

fn cam(s: &str) -> CameraId {
    CameraId::new(s).unwrap()
}

/// A health report from `station` with a camera `desk` streaming the sub rung, region North.
fn report(c: &Controller, station: &StationId) {
    let now = station_controller::now_ms();
    let mut h = Health::new(Timestamp::from_unix_ms(now).unwrap());
    h.agent.region = Some("North".into());
    h.agent.station_name = Some("School 12".into());
    h.cameras.insert(
        cam("desk"),
        CameraHealth {
            live: Some(CameraLive {
                mode: LiveSetting::Auto,
                rung: LiveRung::Sub,
                state: LiveState::Streaming,
                send_bps: Some(600_000),
                rtt_ms: Some(42.0),
                ..CameraLive::default()
            }),
            ..CameraHealth::default()
        },
    );
    c.fleet.apply_health(station, Arc::new(h), now, now);
}

/// Admin session, an operator and an observer granted `st-001`, and their sessions.
struct Users {
    admin: String,
    op: String,
    obs: String,
}

/// A running controller on `dir` (`public_page` as in [`config`]) and a client for it.
fn start(
    rt: &tokio::runtime::Runtime,
    dir: &Path,
    public_page: Option<bool>,
) -> (Controller, Http) {
    let c = rt
        .block_on(Controller::start(config(dir, public_page)))
        .unwrap();
    let h = Http::new(&c);
    (c, h)
}

fn users(h: &Http) -> Users {
    let admin = h.login("admin", ADMIN_PW);
    for (name, pw, role) in [("op", OP_PW, "operator"), ("obs", OBS_PW, "observer")] {
        let r = h.call(
            "POST",
            "/api/users",
            Some(("cookie", &admin)),
            Some(json!({ "username": name, "password": pw, "role": role, "grants": ["st-001"] })),
        );
        assert_eq!(r.status, 201, "{}", r.text);
    }
    Users {
        op: h.login("op", OP_PW),
        obs: h.login("obs", OBS_PW),
        admin,
    }
}

fn write(path: PathBuf, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

const PRIVATE_PLAYLIST: &str =
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:2.000,\n7.ts\n";
const PUBLIC_PLAYLIST: &str =
    "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXT-X-MEDIA-SEQUENCE:3\n#EXTINF:2.000,\n3.ts\n";

#[test]
fn gateways_get_passphrases_and_only_public_cameras_with_their_masks() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, h) = start(&rt, dir.path(), Some(false));
    let u = users(&h);
    // st-001 reports; st-002 only has a registered key (enrolled, never seen yet).
    report(&c, &st("st-001"));
    let key = StationKey::from_seed(&[3; 32]).public();
    let r = h.call(
        "PUT",
        "/api/stations/st-002/key",
        Some(("cookie", &u.admin)),
        Some(json!({ "key": key.to_string() })),
    );
    assert_eq!(r.status, 201, "{}", r.text);

    // The secrets were created at start, private, in their (new) folder.
    let secret_file = dir.path().join("secrets/live.secret");
    let token_file = dir.path().join("secrets/gateway.token");
    for f in [&secret_file, &token_file] {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(f).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", f.display());
    }
    let secret = std::fs::read_to_string(&secret_file).unwrap();
    assert!(secret.trim().len() >= 32);
    let token = std::fs::read_to_string(&token_file).unwrap();
    let bearer = format!("Bearer {}", token.trim());

    // No token, a wrong one, a user's session: 401.
    assert_eq!(h.get("/api/live/gateway", None).status, 401);
    let wrong = format!("Bearer {}x", token.trim());
    for auth in [
        ("authorization", wrong.as_str()),
        ("authorization", "Bearer "),
        ("authorization", token.trim()),
        ("cookie", u.admin.as_str()),
    ] {
        let r = h.call("GET", "/api/live/gateway", Some(auth), None);
        assert_eq!(r.status, 401, "{auth:?}: {}", r.text);
    }

    // Masks: desk has one, hall none ever set.
    let masks = json!([[[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]]);
    let r = h.call(
        "PUT",
        "/api/stations/st-001/cameras/desk/masks",
        Some(("cookie", &u.op)),
        Some(json!({ "masks": masks })),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    // The public flag: admins only; bad ids 400; a camera whose masks were never set 409.
    let public =
        |who: &str, path: &str, body: Value| h.call("PUT", path, Some(("cookie", who)), Some(body));
    let desk = "/api/stations/st-001/cameras/desk/public";
    assert_eq!(
        h.call("PUT", desk, None, Some(json!({ "public": true })))
            .status,
        401
    );
    assert_eq!(public(&u.op, desk, json!({ "public": true })).status, 403);
    assert_eq!(public(&u.obs, desk, json!({ "public": true })).status, 403);
    assert_eq!(
        public(
            &u.admin,
            "/api/stations/st%20001/cameras/desk/public",
            json!({ "public": true })
        )
        .status,
        400
    );
    assert_eq!(
        public(
            &u.admin,
            "/api/stations/st-001/cameras/de%2Fsk/public",
            json!({ "public": true })
        )
        .status,
        400
    );
    assert_eq!(
        public(&u.admin, desk, json!({ "public": "yes" })).status,
        400
    );
    let r = public(
        &u.admin,
        "/api/stations/st-001/cameras/hall/public",
        json!({ "public": true }),
    );
    assert_eq!(r.status, 409, "{}", r.text);
    let r = public(&u.admin, desk, json!({ "public": true }));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        r.json(),
        json!({ "station": "st-001", "camera": "desk", "public": true })
    );

    // Audited, under the admin's name.
    let log = h.get("/api/audit", Some(&u.admin)).json();
    let entries = log["entries"].as_array().unwrap();
    assert!(
        entries.iter().any(|e| e["action"] == "live_public"
            && e["username"] == "admin"
            && e["target"] == "st-001"
            && e["detail"] == "desk: public"),
        "{log}"
    );
    // The station's detail shows the flag.
    let d = h.get("/api/stations/st-001", Some(&u.op)).json();
    assert_eq!(d["public_cameras"], json!(["desk"]));

    // What a gateway gets: both stations, each with its passphrase; desk public with its masks.
    let r = h.call(
        "GET",
        "/api/live/gateway",
        Some(("authorization", &bearer)),
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.cache_control, "no-store");
    let list = r.json();
    let stations = list["stations"].as_array().unwrap();
    let ids: Vec<&str> = stations
        .iter()
        .map(|s| s["station"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["st-001", "st-002"]);
    for s in stations {
        let id = st(s["station"].as_str().unwrap());
        assert_eq!(s["passphrase"], passphrase(secret.trim().as_bytes(), &id));
    }
    assert_eq!(stations[0]["region"], "North");
    assert_eq!(
        stations[0]["public"],
        json!([{ "camera": "desk", "masks": masks }])
    );
    assert_eq!(stations[1]["public"], json!([]));

    // The command line prints the same passphrase.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_station-controller"))
        .args(["live-passphrase", "--config"])
        .arg(dir.path().join("controller.toml"))
        .args(["--station", "st-001"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8(out.stdout).unwrap().trim(),
        stations[0]["passphrase"].as_str().unwrap()
    );

    // Not public any more: gone from the list at once, and audited.
    let r = public(&u.admin, desk, json!({ "public": false }));
    assert_eq!(r.status, 200, "{}", r.text);
    let list = h
        .call(
            "GET",
            "/api/live/gateway",
            Some(("authorization", &bearer)),
            None,
        )
        .json();
    assert_eq!(list["stations"][0]["public"], json!([]));
    let d = h.get("/api/stations/st-001", Some(&u.op)).json();
    assert_eq!(d["public_cameras"], json!([]));
    let log = h.get("/api/audit", Some(&u.admin)).json();
    assert!(log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .any(|e| e["action"] == "live_public" && e["detail"] == "desk: not public"));
    rt.block_on(c.stop());
}

#[test]
fn operators_watch_the_unmasked_stream_observers_and_strangers_never() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, h) = start(&rt, dir.path(), Some(true));
    let u = users(&h);
    report(&c, &st("st-001"));
    report(&c, &st("st-009"));

    let private = dir.path().join("hls/private/st-001/desk");
    let segment: Vec<u8> = (0..188 * 20).map(|i| (i % 251) as u8).collect();
    write(private.join("index.m3u8"), PRIVATE_PLAYLIST.as_bytes());
    write(private.join("7.ts"), &segment);
    write(private.join("index.m3u8.bak"), b"old");
    write(dir.path().join("hls/private/st-001/x"), b"not for anyone");
    let now = chrono::Utc::now();
    let status = StreamStatus {
        station: st("st-001"),
        camera: cam("desk"),
        publishing: true,
        since: Some(now - chrono::Duration::seconds(60)),
        last_segment_at: Some(now - chrono::Duration::seconds(1)),
        kbps: 600,
        width: 640,
        height: 360,
        segments: 1,
        target_duration_s: 2,
        gateway: "north-1".into(),
        updated_at: now,
    };
    write(
        private.join("status.json"),
        &serde_json::to_vec(&status).unwrap(),
    );

    let base = "/api/stations/st-001/cameras/desk/live";
    // Operators and admins get the playlist and the segment as written.
    for who in [&u.op, &u.admin] {
        let r = h.get(&format!("{base}/index.m3u8"), Some(who));
        assert_eq!(r.status, 200, "{}", r.text);
        assert_eq!(r.content_type, "application/vnd.apple.mpegurl");
        assert_eq!(r.cache_control, "no-store");
        assert_eq!(r.text, PRIVATE_PLAYLIST);
    }
    let resp = h
        .agent
        .get(&format!("{}{base}/7.ts", h.base))
        .header("cookie", &u.op)
        .call()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "video/mp2t");
    assert_eq!(resp.into_body().read_to_vec().unwrap(), segment);
    // A missing segment, and every name that is not a playlist or a numbered segment: 404.
    for bad in [
        "8.ts",
        "..%2Fx",
        "..%2F..%2F..%2Fprivate%2Fst-001%2Fx",
        "index.m3u8.bak",
        "1.ts%2F..",
        "status.json",
        "%2E%2E",
        "index.m3u8%00",
        ".ts",
    ] {
        let r = h.get(&format!("{base}/{bad}"), Some(&u.op));
        assert_eq!(r.status, 404, "{bad}: {}", r.text);
        assert!(!r.text.contains("not for anyone"));
    }
    // A literal `..` in the path matches no route.
    let r = h.get(&format!("{base}/../x"), Some(&u.op));
    assert!(!r.text.contains("not for anyone"));
    assert_ne!(r.status, 200);

    // Observers (even granted the station) 403: the stream is unmasked. Strangers 401.
    for file in ["index.m3u8", "7.ts"] {
        assert_eq!(h.get(&format!("{base}/{file}"), Some(&u.obs)).status, 403);
        assert_eq!(h.get(&format!("{base}/{file}"), None).status, 401);
    }
    assert_eq!(h.get(base, Some(&u.obs)).status, 403);
    assert_eq!(h.get(base, None).status, 401);
    // An observer asking about a station not granted: 404 (no probing which exist).
    assert_eq!(
        h.get(
            "/api/stations/st-009/cameras/desk/live/index.m3u8",
            Some(&u.obs)
        )
        .status,
        404
    );

    // The camera's live state: the gateway's status, the agent's report, playable, delay.
    let r = h.get(base, Some(&u.op));
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert_eq!(v["playable"], true);
    assert_eq!(v["public"], false);
    assert_eq!(v["gateway"]["publishing"], true);
    assert_eq!(v["gateway"]["kbps"], 600);
    assert_eq!(v["station"]["rung"], "sub");
    assert_eq!(v["station"]["mode"], "auto");
    assert_eq!(v["station"]["send_bps"], 600_000);
    // Newest segment 1 s old + one 2 s segment: about 3 s (the test is slow at most seconds).
    let delay = v["delay_ms"].as_i64().unwrap();
    assert!((3000..15_000).contains(&delay), "{delay}");

    // The publisher gone: not playable, the playlist still there.
    let gone = StreamStatus {
        publishing: false,
        ..status
    };
    write(
        private.join("status.json"),
        &serde_json::to_vec(&gone).unwrap(),
    );
    let v = h.get(base, Some(&u.op)).json();
    assert_eq!(v["playable"], false);
    // A camera the gateway never wrote: nothing from the gateway, not playable.
    let v = h
        .get("/api/stations/st-001/cameras/hall/live", Some(&u.op))
        .json();
    assert_eq!(
        (v["playable"].clone(), v["gateway"].clone()),
        (json!(false), Value::Null)
    );
    assert_eq!(
        h.get(
            "/api/stations/st-001/cameras/hall/live/index.m3u8",
            Some(&u.op)
        )
        .status,
        404
    );
    rt.block_on(c.stop());
}

#[test]
fn the_public_page_serves_public_cameras_masked_copy_only_and_nothing_when_off() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (c, h) = start(&rt, dir.path(), Some(true));
    let u = users(&h);
    report(&c, &st("st-001"));
    for camera in ["desk", "hall"] {
        let r = h.call(
            "PUT",
            &format!("/api/stations/st-001/cameras/{camera}/masks"),
            Some(("cookie", &u.op)),
            Some(json!({ "masks": [] })),
        );
        assert_eq!(r.status, 200, "{}", r.text);
        // Both unmasked in private/, both with a public copy on disk; only desk is public.
        let d = dir.path().join(format!("hls/private/st-001/{camera}"));
        write(d.join("index.m3u8"), PRIVATE_PLAYLIST.as_bytes());
        write(d.join("7.ts"), b"UNMASKED");
        let d = dir.path().join(format!("hls/public/st-001/{camera}"));
        write(d.join("index.m3u8"), PUBLIC_PLAYLIST.as_bytes());
        write(d.join("3.ts"), b"masked");
    }
    let r = h.call(
        "PUT",
        "/api/stations/st-001/cameras/desk/public",
        Some(("cookie", &u.admin)),
        Some(json!({ "public": true })),
    );
    assert_eq!(r.status, 200, "{}", r.text);

    // The page, without a login, under the dashboard's security headers (hls.js needs blob:).
    let r = h.get("/public", None);
    assert_eq!(r.status, 200);
    assert!(r.content_type.starts_with("text/html"));
    assert!(r.csp.contains("media-src 'self' blob:"), "{}", r.csp);
    assert!(r.text.contains("/assets/public.js"));
    for asset in ["public.js", "hls.light.min.js", "app.css"] {
        assert_eq!(
            h.get(&format!("/assets/{asset}"), None).status,
            200,
            "{asset}"
        );
    }
    assert_eq!(h.get("/assets/app.js", None).status, 401);

    // The list: desk only, with its public playlist; by region.
    let v = h.get("/api/public/cameras", None).json();
    assert_eq!(
        v,
        json!([{ "station": "st-001", "camera": "desk", "name": "School 12", "region": "North",
                 "playlist": "/public/live/st-001/desk/index.m3u8" }])
    );
    assert_eq!(h.get("/api/public/cameras?region=North", None).json(), v);
    assert_eq!(
        h.get("/api/public/cameras?region=South", None).json(),
        json!([])
    );

    // desk's masked copy, never its private stream.
    let r = h.get("/public/live/st-001/desk/index.m3u8", None);
    assert_eq!(r.status, 200);
    assert_eq!(r.text, PUBLIC_PLAYLIST);
    assert_eq!(r.content_type, "application/vnd.apple.mpegurl");
    assert_eq!(h.get("/public/live/st-001/desk/3.ts", None).text, "masked");
    // Not public: 404 though its public copy exists on disk. Any way towards private/: 404.
    for path in [
        "/public/live/st-001/hall/index.m3u8",
        "/public/live/st-001/hall/3.ts",
        "/public/live/st-001/desk/7.ts",
        "/public/live/st-001/desk/..%2F..%2F..%2Fprivate%2Fst-001%2Fdesk%2F7.ts",
        "/public/live/..%2Fprivate%2Fst-001/desk/7.ts",
        "/public/live/st-001/desk%2F..%2F..%2F..%2Fprivate%2Fst-001%2Fdesk/7.ts",
        "/public/live/private/st-001/desk/7.ts",
        "/public/live/st-001/desk/../../../private/st-001/desk/7.ts",
        "/public/private/st-001/desk/7.ts",
        "/private/st-001/desk/7.ts",
    ] {
        let r = h.get(path, None);
        assert!(r.status == 404 || r.status == 400, "{path}: {}", r.status);
        assert!(!r.text.contains("UNMASKED"), "{path}");
        assert!(!r.text.contains("#EXT-X-MEDIA-SEQUENCE:7"), "{path}");
    }
    // Unmarked: its public stream stops being served at once.
    let r = h.call(
        "PUT",
        "/api/stations/st-001/cameras/desk/public",
        Some(("cookie", &u.admin)),
        Some(json!({ "public": false })),
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        h.get("/public/live/st-001/desk/index.m3u8", None).status,
        404
    );
    assert_eq!(h.get("/api/public/cameras", None).json(), json!([]));
    h.call(
        "PUT",
        "/api/stations/st-001/cameras/desk/public",
        Some(("cookie", &u.admin)),
        Some(json!({ "public": true })),
    );
    rt.block_on(c.stop());

    // The same database with the public page off: every public route 404, the camera still public.
    let (c, h) = start(&rt, dir.path(), Some(false));
    report(&c, &st("st-001"));
    for path in [
        "/public",
        "/api/public/cameras",
        "/public/live/st-001/desk/index.m3u8",
        "/public/live/st-001/desk/3.ts",
    ] {
        assert_eq!(h.get(path, None).status, 404, "{path}");
    }
    let admin = h.login("admin", ADMIN_PW);
    assert_eq!(
        h.get("/api/stations/st-001", Some(&admin)).json()["public_cameras"],
        json!(["desk"])
    );
    rt.block_on(c.stop());

    // No [live] at all: the live routes say so.
    let (c, h) = start(&rt, dir.path(), None);
    report(&c, &st("st-001"));
    let r = h.get("/api/live/gateway", None);
    assert_eq!(r.status, 404);
    assert!(
        r.text.contains("live viewing is not configured"),
        "{}",
        r.text
    );
    assert_eq!(h.get("/public", None).status, 404);
    let admin = h.login("admin", ADMIN_PW);
    let r = h.get(
        "/api/stations/st-001/cameras/desk/live/index.m3u8",
        Some(&admin),
    );
    assert_eq!(r.status, 404);
    assert!(
        r.text.contains("live viewing is not configured"),
        "{}",
        r.text
    );
    rt.block_on(c.stop());
}
