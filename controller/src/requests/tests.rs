//! The request workflow against a real SQLite store (the end-to-end test with a real agent is
//! `tests/tests/requests.rs`).

use std::sync::Arc;

use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::StationId;

use super::{collect, NewRequest, RequestError, Requests, COLLECTING, FAILED, SUBMITTED};
use crate::auth::{Role, User};
use crate::commands::Publisher;
use crate::config::{DatabaseConfig, RequestsConfig, RulesConfig};
use crate::fleet::Fleet;
use crate::store::requests::RequestUpdate;
use crate::store::Store;

const T0: i64 = 1_780_000_000_000;

async fn requests(dir: &std::path::Path) -> Requests {
    let store = Store::connect(&DatabaseConfig {
        url: format!("sqlite://{}", dir.join("c.db").display()),
        max_connections: 2,
        history_days: 30,
        events_days: 400,
        audit_days: 3650,
        write_queue_bytes: 1 << 20,
    })
    .await
    .unwrap();
    Requests {
        store,
        fleet: Fleet::new(RulesConfig::default()),
        publisher: Publisher::new(60_000),
        cfg: RequestsConfig {
            max_window_ms: 3_600_000,
            auto_approve: Vec::new(),
            deadline_ms: 3_600_000,
            hold_ms: 86_400_000,
        },
        nudge: Arc::new(tokio::sync::Notify::new()),
        changed: tokio::sync::broadcast::channel(16).0,
    }
}

fn user(name: &str, role: Role) -> User {
    User {
        id: 1,
        username: name.into(),
        role,
        grants: None,
    }
}

#[tokio::test]
async fn a_request_the_station_does_not_deliver_by_its_deadline_fails_with_the_reason() {
    let dir = tempfile::tempdir().unwrap();
    let r = requests(dir.path()).await;
    let station = StationId::new("pu-0042").unwrap();
    // The station is known (it reported once) and then went away.
    let mut h: stationwatch_protocol::mqtt::Health = serde_json::from_value(serde_json::json!({
        "v": 1, "at": "2026-05-28T20:26:40.000Z",
        "cameras": {"desk": {"state": "recording"}}
    }))
    .unwrap();
    h.interval_s = 15;
    r.fleet.apply_health(&station, Arc::new(h), T0, T0);
    let s = r.fleet.get(&station).unwrap();
    let new = |reason: &str| NewRequest {
        station: station.clone(),
        cameras: Vec::new(),
        from: Timestamp::from_unix_ms(T0 - 600_000).unwrap(),
        to: Timestamp::from_unix_ms(T0 - 60_000).unwrap(),
        reason: reason.into(),
    };
    let observer = user("ngo", Role::Observer);
    let filed = r.file(&observer, &s, new("complaint 3"), T0).await.unwrap();
    assert_eq!(filed.status, SUBMITTED);
    assert_eq!(
        filed.cameras,
        vec![stationwatch_protocol::CameraId::new("desk").unwrap()]
    );
    // Observers do not decide; an approval needs the broker link to send the command.
    assert!(matches!(
        r.decide(&observer, &filed.id, true, "", T0).await,
        Err(RequestError::Forbidden)
    ));
    assert!(matches!(
        r.decide(&user("op", Role::Operator), &filed.id, true, "", T0)
            .await,
        Err(RequestError::Command(_))
    ));
    // Approved while the link was up (as `decide` records it), then nothing arrives.
    r.store
        .update_request(
            &filed.id,
            SUBMITTED,
            RequestUpdate {
                status: Some(COLLECTING.into()),
                deadline_at: Some(T0 + 3_600_000),
                ..Default::default()
            },
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    collect::pass(&r, T0 + 60_000).await.unwrap();
    assert_eq!(
        r.store.request(&filed.id).await.unwrap().unwrap().status,
        COLLECTING
    );
    // The alerts task ticks the fleet every second: the silent station is offline by now.
    r.fleet.tick(T0 + 3_600_001);
    collect::pass(&r, T0 + 3_600_001).await.unwrap();
    let failed = r.store.request(&filed.id).await.unwrap().unwrap();
    assert_eq!(failed.status, FAILED);
    let note = &failed.history.last().unwrap().note;
    assert!(note.contains("not delivered by the deadline"), "{note}");
    assert!(note.contains("offline"), "{note}");
    // The gaps say what is missing: the whole window, nothing archived.
    assert_eq!(failed.gaps.len(), 1, "{:?}", failed.gaps);
    // A bad window or reason is refused and nothing is filed.
    let mut bad = new(" ");
    assert!(matches!(
        r.file(&observer, &s, bad.clone(), T0).await,
        Err(RequestError::Invalid(_))
    ));
    bad.reason = "x".into();
    bad.from = Timestamp::from_unix_ms(T0 - 2 * 3_600_000).unwrap();
    assert!(matches!(
        r.file(&observer, &s, bad, T0).await,
        Err(RequestError::Invalid(_))
    ));
    assert_eq!(r.store.requests(None, &[], 100).await.unwrap().len(), 1);
}
