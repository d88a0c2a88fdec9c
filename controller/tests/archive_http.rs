//! The archive's HTTP endpoints on a running controller (local-folder store, SQLite): station
//! requests authenticated by the station's signature only, the status code of every case, and
//! the users' views. No broker is needed (the MQTT link just keeps retrying).

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use station_controller::protocol::archive::{authorization, manifest_path, segment_path};
use station_controller::protocol::manifest::{
    sign_entry, Chain, ClockSync, EntryBody, Hash256, Segment, SegmentFile, SignedEntry,
    StationKey, Timestamp,
};
use station_controller::protocol::{CameraId, StationId};
use station_controller::{Controller, ControllerConfig};

const T0: i64 = 1_780_000_000_000;

fn config(dir: &Path) -> ControllerConfig {
    let pw = dir.join("pw");
    std::fs::write(&pw, "admin-password-1").unwrap();
    let text = format!(
        "[http]\nlisten = \"127.0.0.1:0\"\ncookie_secure = false\n\
         [database]\nurl = \"sqlite://{d}/c.db\"\n\
         [mqtt]\nurl = \"mqtt://127.0.0.1:9\"\n\
         [auth]\nbootstrap_admin = \"admin\"\nbootstrap_password_file = \"{pw}\"\n\
         [trust]\nkey_file = \"{d}/controller-key.pem\"\n\
         [archive]\nstore = \"file://{d}/archive\"\nstaging = \"{d}/staging\"\nmax_uploads = 8\n",
        d = dir.display(),
        pw = pw.display()
    );
    ControllerConfig::parse(&dir.join("controller.toml"), &text, false).unwrap()
}

struct Client {
    base: String,
    agent: ureq::Agent,
    station: StationId,
    key: StationKey,
}

struct Reply {
    status: u16,
    body: Value,
    retry_after: Option<String>,
}

impl Client {
    fn send(
        &self,
        method: &str,
        path: &str,
        body: &[u8],
        auth: Option<String>,
        send_path: Option<&str>,
    ) -> Reply {
        let url = format!("{}{}", self.base, send_path.unwrap_or(path));
        let auth =
            auth.unwrap_or_else(|| authorization(&self.station, &self.key, method, path, body));
        let resp = match method {
            "GET" => self.agent.get(&url).header("authorization", &auth).call(),
            "POST" => self
                .agent
                .post(&url)
                .header("authorization", &auth)
                .send(body),
            "PUT" => self
                .agent
                .put(&url)
                .header("authorization", &auth)
                .send(body),
            m => panic!("{m}"),
        }
        .unwrap();
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp.into_body().read_to_string().unwrap_or_default();
        Reply {
            status,
            body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
            retry_after,
        }
    }
}

fn lines(key: &StationKey, s: &StationId, c: &CameraId, files: &[&[u8]]) -> Vec<SignedEntry> {
    let mut chain = Chain::genesis(s.clone(), c.clone());
    let mut out = Vec::new();
    for (i, bytes) in files.iter().enumerate() {
        let e = sign_entry(
            key,
            &chain,
            EntryBody::Segment(Segment {
                start: Timestamp::from_unix_ms(T0 + i as i64 * 10_000).unwrap(),
                end: Timestamp::from_unix_ms(T0 + (i as i64 + 1) * 10_000).unwrap(),
                file: SegmentFile::new(format!("s{i}.ts")).unwrap(),
                size: bytes.len() as u64,
                sha256: Hash256::of(bytes),
                clock: Some(ClockSync::Synced),
            }),
        )
        .unwrap();
        chain = Chain::after(&e);
        out.push(e);
    }
    out
}

#[test]
fn station_endpoints_answer_every_case_with_its_status() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    let controller = rt.block_on(Controller::start(config(dir.path()))).unwrap();
    let station = StationId::new("pu-0042").unwrap();
    let camera = CameraId::new("desk").unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    let c = Client {
        base: format!("http://{}", controller.addr),
        agent: ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent(),
        station: station.clone(),
        key: key.clone(),
    };
    let mpath = manifest_path(&station, &camera);
    // No registered key yet: 403.
    assert_eq!(c.send("GET", &mpath, b"", None, None).status, 403);
    rt.block_on(
        controller
            .store
            .register_key(&station, &key.public(), "admin", false, T0),
    )
    .unwrap();
    // Unsigned, malformed, another key, another station: 401 / 403.
    let r = c.send("GET", &mpath, b"", Some("Bearer x".into()), None);
    assert_eq!(r.status, 401);
    assert!(r.body["error"].is_string());
    let forger = StationKey::from_seed(&[9; 32]);
    let forged = authorization(&station, &forger, "GET", &mpath, b"");
    assert_eq!(c.send("GET", &mpath, b"", Some(forged), None).status, 401);
    let other = StationId::new("pu-0043").unwrap();
    let as_other = authorization(&other, &key, "GET", &mpath, b"");
    assert_eq!(c.send("GET", &mpath, b"", Some(as_other), None).status, 403);
    // Nothing archived yet: 404.
    assert_eq!(c.send("GET", &mpath, b"", None, None).status, 404);

    let good: Vec<u8> = (0..5000u32).map(|i| (i % 253) as u8).collect();
    let second: Vec<u8> = (0..3000u32).map(|i| (i % 7) as u8).collect();
    let ls = lines(&key, &station, &camera, &[&good, &second]);
    let mut batch = Vec::new();
    for e in &ls {
        batch.extend_from_slice(e.line().as_bytes());
        batch.push(b'\n');
    }
    let r = c.send("POST", &mpath, &batch, None, None);
    assert_eq!(r.status, 200, "{:?}", r.body);
    assert_eq!(r.body["last_seq"], 1);
    assert_eq!(c.send("GET", &mpath, b"", None, None).body["first_seq"], 0);
    // A batch signed by another key: 422 (alerted).
    let bad = lines(&forger, &station, &camera, &[&good]);
    let r = c.send(
        "POST",
        &mpath,
        format!("{}\n", bad[0].line()).as_bytes(),
        None,
        None,
    );
    assert_eq!(r.status, 422, "{:?}", r.body);

    let spath = segment_path(&station, &camera, 0);
    let r = c.send("GET", &spath, b"", None, None);
    assert_eq!((r.status, &r.body["received"]), (200, &Value::from(0)));
    // The signature covers the query: a request moved to another offset is refused.
    let at0 = format!("{spath}?offset=0");
    let r = c.send(
        "PUT",
        &at0,
        &good[..1000],
        None,
        Some(&format!("{spath}?offset=1")),
    );
    assert_eq!(r.status, 401);
    let r = c.send("PUT", &at0, &good[..1000], None, None);
    assert_eq!((r.status, &r.body["received"]), (200, &Value::from(1000)));
    // At the wrong offset: 409 with the state.
    let r = c.send("PUT", &at0, &good[..1000], None, None);
    assert_eq!(r.status, 409);
    assert_eq!(r.body["state"]["received"], 1000);
    // No offset: 400. Not a segment: 404. Too big: 413.
    assert_eq!(c.send("PUT", &spath, b"x", None, None).status, 400);
    let nowhere = format!("{}?offset=0", segment_path(&station, &camera, 7));
    assert_eq!(c.send("PUT", &nowhere, b"x", None, None).status, 404);
    let huge = vec![0u8; 4 * 1024 * 1024 + 100 * 1024];
    let r = c.send("PUT", &format!("{spath}?offset=1000"), &huge, None, None);
    assert_eq!(r.status, 413);
    // The rest: archived.
    let r = c.send(
        "PUT",
        &format!("{spath}?offset=1000"),
        &good[1000..],
        None,
        None,
    );
    assert_eq!(
        (r.status, &r.body["phase"]),
        (200, &Value::from("archived"))
    );
    assert_eq!(
        std::fs::read(dir.path().join("archive/segments/pu-0042/desk/s0.ts")).unwrap(),
        good
    );
    // Bytes that do not match the signed entry: 422 with the state, kept aside.
    let mut altered = second.clone();
    altered[0] ^= 0xff;
    let s1 = format!("{}?offset=0", segment_path(&station, &camera, 1));
    let r = c.send("PUT", &s1, &altered, None, None);
    assert_eq!(r.status, 422, "{:?}", r.body);
    assert_eq!(r.body["state"]["phase"], "refused");
    assert!(r.retry_after.is_none());

    // The users' views.
    let api = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let login = api
        .post(&format!("{}/api/login", c.base))
        .header("content-type", "application/json")
        .send(r#"{"username":"admin","password":"admin-password-1"}"#)
        .unwrap();
    assert_eq!(login.status().as_u16(), 200);
    let cookie = login
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let get = |p: &str| -> (u16, Value) {
        let r = api
            .get(&format!("{}{p}", c.base))
            .header("cookie", &cookie)
            .call()
            .unwrap();
        let s = r.status().as_u16();
        (
            s,
            serde_json::from_str(&r.into_body().read_to_string().unwrap()).unwrap(),
        )
    };
    let (s, v) = get("/api/stations/pu-0042/archive?camera=desk");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["cameras"][0]["archived_segments"], 1);
    assert_eq!(v["cameras"][0]["refused_segments"], 1);
    assert_eq!(v["cameras"][0]["manifest"]["last_seq"], 1);
    assert_eq!(v["entries"].as_array().unwrap().len(), 2);
    assert_eq!(v["refusals"].as_array().unwrap().len(), 2);
    let (s, v) = get("/api/archive/summary");
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["stations"].clone(), v["archived_bytes"].clone()),
        (Value::from(1), Value::from(5000))
    );
    // The refusals became an alert within a rules tick.
    let mut alerted = false;
    for _ in 0..50 {
        let (_, v) = get("/api/alerts");
        if v["alerts"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["kind"] == "archive_refused:desk")
        {
            alerted = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(alerted, "no archive_refused alert");
    rt.block_on(controller.stop());
}
