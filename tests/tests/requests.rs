//! Requests for recordings (issue 15) with real parts: an agent recording a test camera in
//! upload mode `requested` (nothing leaves the station unless asked), a private Mosquitto, the
//! controller binary with a local archive.
//!
//! What the people involved check: an observer files a request for a granted station and
//! follows it; another observer cannot see it or file one for a station not granted; only staff
//! decide; an approved request is collected through the archive and becomes ready, with every
//! gap explained when the window reaches before the recording; a refused request stays refused;
//! each step is in the request's history and in the audit log.

use std::time::Duration;

use chrono::Utc;
use serde_json::{json, Value};
use stationwatch_tests::agent_process::AgentProcess;
use stationwatch_tests::archive::{ready, ts, AgentSpec, Rig, Store, STATION};
use stationwatch_tests::controller_process::Api;
use stationwatch_tests::eventually;

const PASSWORD: &str = "observer-password-1";

fn user(rig: &Rig, name: &str, role: &str, grants: &[&str]) -> Api {
    let r = rig
        .api
        .post(
            "/api/users",
            &json!({"username": name, "password": PASSWORD, "role": role, "grants": grants}),
        )
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    Api::login(&rig.ctl.base_url(), name, PASSWORD).unwrap()
}

fn wait_status(api: &Api, id: &str, secs: u64, want: &[&str]) -> Value {
    eventually(&format!("request {id} in {want:?}"), secs, || {
        let r = api.ok(&format!("/api/requests/{id}"))?;
        Ok(want
            .contains(&r["status"].as_str().unwrap_or(""))
            .then_some(r))
    })
}

fn statuses(r: &Value) -> Vec<String> {
    r["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn an_observer_requests_a_window_follows_it_to_ready_and_nobody_else_sees_it() {
    if !ready(Store::Local) {
        return;
    }
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

    // Filed: submitted, visible to its requester and staff only.
    let r = file(&observer, base.clone());
    assert_eq!(r.status, 201, "{r:?}");
    let req = r.body;
    let id = req["id"].as_str().unwrap().to_owned();
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

    // Collected through the archive; the requester follows it to ready.
    let done = wait_status(&observer, &id, 90, &["ready", "ready_with_gaps", "failed"]);
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
