//! The controller's database layer against both backends it supports: SQLite (a file) and a
//! throw-away PostgreSQL server. The same scenario runs on each, so both migrations and every
//! query are exercised. PostgreSQL needs its server package (installed by scripts/install-deps);
//! without it that half is skipped with a message.

use serde_json::json;
use station_controller::config::DatabaseConfig;
use station_controller::protocol::{CameraId, StationId};
use station_controller::store::{CommandRow, EventRow, Store, Write};
use stationwatch_tests::postgres::{postgres_bin_dir, Postgres};

fn db(url: String) -> DatabaseConfig {
    DatabaseConfig {
        url,
        max_connections: 4,
        history_days: 30,
        events_days: 400,
        audit_days: 3650,
        write_queue_bytes: 64 << 20,
    }
}

fn sid(s: &str) -> StationId {
    StationId::new(s).unwrap()
}

fn cam(s: &str) -> CameraId {
    CameraId::new(s).unwrap()
}

fn health(station: &str, at: i64, received_at: i64, hours: f64) -> Write {
    Write::Health {
        station: sid(station),
        json: json!({ "v": 1, "at": at, "marker": hours }).to_string(),
        at,
        received_at,
        figures: json!({ "hours_left": hours }).to_string(),
    }
}

fn event(station: &str, id: &str, at: i64) -> Write {
    Write::Event(EventRow {
        station_id: sid(station),
        event_id: id.into(),
        at,
        received_at: at + 5,
        kind: "camera_lost".into(),
        camera: Some(cam("desk")),
        body: json!({ "kind": "camera_lost", "camera": "desk" }),
    })
}

async fn scenario(url: String) {
    let cfg = db(url);
    let store = Store::connect(&cfg).await.expect("connect and migrate");
    // Migrations are idempotent: a second replica (or a restart) connects to a migrated database.
    let again = Store::connect(&cfg)
        .await
        .expect("connect to a migrated database");
    again.close().await;

    // Users, grants, sessions, tokens.
    assert_eq!(store.user_count().await.unwrap(), 0);
    let alice = store
        .create_user("alice", "hash-a", "operator", 1)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        store
            .create_user("alice", "other", "admin", 2)
            .await
            .unwrap(),
        None,
        "names are unique"
    );
    let obs = store
        .create_user("olga", "hash-o", "observer", 3)
        .await
        .unwrap()
        .unwrap();
    store
        .set_grants(obs, &["st-1".into(), "st-2".into()])
        .await
        .unwrap();
    store
        .set_grants(obs, &["st-2".into(), "st-3".into()])
        .await
        .unwrap();
    assert_eq!(store.grants(obs).await.unwrap(), ["st-2", "st-3"]);
    store
        .insert_session("sess", alice, 100, 1_000)
        .await
        .unwrap();
    assert_eq!(
        store
            .session_user("sess", 999)
            .await
            .unwrap()
            .unwrap()
            .username,
        "alice"
    );
    assert!(
        store.session_user("sess", 1_000).await.unwrap().is_none(),
        "expired session"
    );
    assert!(store.session_user("nope", 10).await.unwrap().is_none());
    let id = store
        .insert_token("tok0123456789abcdef", obs, "script", 5, 100_000)
        .await
        .unwrap();
    assert_eq!(id, "tok0123456789abc");
    assert_eq!(
        store
            .token_user("tok0123456789abcdef", 50_000)
            .await
            .unwrap()
            .unwrap()
            .role,
        "observer"
    );
    let listed = store.tokens(Some(obs)).await.unwrap();
    assert_eq!(
        (listed[0].last_used_at, listed[0].expires_at),
        (Some(50_000), Some(100_000))
    );
    assert!(store.tokens(Some(obs + 1000)).await.unwrap().is_empty());
    assert!(
        store
            .token_user("tok0123456789abcdef", 100_001)
            .await
            .unwrap()
            .is_none(),
        "an expired token"
    );
    assert!(!store.revoke_token(&id, Some(obs + 1000)).await.unwrap());
    assert!(store.revoke_token(&id, Some(obs)).await.unwrap());
    assert!(store
        .token_user("tok0123456789abcdef", 50_000)
        .await
        .unwrap()
        .is_none());
    store
        .insert_token("tok2", obs, "script", 5, 100_000)
        .await
        .unwrap();
    assert!(store.delete_user(obs).await.unwrap());
    assert!(
        store.token_user("tok2", 50_000).await.unwrap().is_none(),
        "tokens go with their user"
    );

    // Ingest writes: the latest state keeps the newest report; history and events de-duplicate.
    store
        .write_batch(&[
            Write::Status {
                station: sid("st-1"),
                json: r#"{"v":1,"state":"online"}"#.into(),
                received_at: 1_000,
            },
            health("st-1", 2_000, 2_010, 50.0),
            health("st-1", 1_500, 2_020, 40.0), // older report arriving late
            health("st-1", 2_000, 2_030, 50.0), // duplicate (QoS 1 redelivery, second replica)
            health("st-2", 2_000, 2_005, 10.0),
            event("st-1", "e1", 1_900),
            event("st-1", "e1", 1_900),
            event("st-1", "e2", 1_950),
        ])
        .await
        .unwrap();
    let rows = store.stations(None).await.unwrap();
    assert_eq!(rows.len(), 2);
    let st1 = rows.iter().find(|r| r.id.as_str() == "st-1").unwrap();
    // Exactly the report taken at 2 000 (marker 50), not the late one taken at 1 500.
    let kept: serde_json::Value =
        serde_json::from_str(st1.health_json.as_deref().unwrap()).unwrap();
    assert_eq!(
        kept,
        json!({ "v": 1, "at": 2_000, "marker": 50.0 }),
        "newest report kept: {st1:?}"
    );
    assert!(st1.status_json.as_deref().unwrap().contains("online"));
    let hist = store
        .health_history(&sid("st-1"), 0, 10_000, 100)
        .await
        .unwrap();
    assert_eq!(
        hist.iter().map(|p| p.at).collect::<Vec<_>>(),
        [1_500, 2_000]
    );
    let events = store.events(Some(&sid("st-1")), 10).await.unwrap();
    assert_eq!(
        events
            .iter()
            .map(|e| e.event_id.as_str())
            .collect::<Vec<_>>(),
        ["e2", "e1"]
    );
    assert_eq!(
        events[0].camera.as_ref().map(CameraId::as_str),
        Some("desk")
    );
    let changed = store.station_versions_since(2_006).await.unwrap();
    assert_eq!(
        changed.iter().map(|v| v.id.as_str()).collect::<Vec<_>>(),
        ["st-1"]
    );
    let some = store.stations(Some(&[sid("st-2")])).await.unwrap();
    assert_eq!(some.len(), 1);
    assert_eq!(store.prune_history(1_600).await.unwrap(), 1);

    // A large batch (several multi-row statements): every station's newest report is kept, and
    // every distinct report is in the history once.
    let mut big = Vec::new();
    for i in 0..600 {
        let st = format!("bulk-{i:03}");
        big.push(health(&st, 10_000 + i, 20_000, 1.0));
        big.push(health(&st, 9_000 + i, 20_001, 2.0)); // older, arrives later
        big.push(health(&st, 10_000 + i, 20_002, 1.0)); // duplicate
    }
    store.write_batch(&big).await.unwrap();
    let bulk: Vec<_> = store
        .stations(None)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.id.as_str().starts_with("bulk-"))
        .collect();
    assert_eq!(bulk.len(), 600);
    assert!(
        bulk.iter().all(|r| r
            .health_json
            .as_deref()
            .is_some_and(|j| j.contains("\"marker\":1.0"))),
        "newest kept"
    );
    let h = store
        .health_history(&sid("bulk-599"), 0, 100_000, 10)
        .await
        .unwrap();
    assert_eq!(h.iter().map(|p| p.at).collect::<Vec<_>>(), [9_599, 10_599]);

    // Commands and their acks: a late `accepted` never replaces a final status.
    let cmd = CommandRow {
        id: "c1".into(),
        station_id: sid("st-1"),
        kind: "ping".into(),
        body: json!({ "kind": "ping" }),
        issued_by: "alice".into(),
        issued_at: 3_000,
        status: "sent".into(),
        expires_at: Some(303_000),
        ack_at: None,
        ack: None,
    };
    store.insert_command(&cmd).await.unwrap();
    let ack = |status: &str, at| Write::Ack {
        station: sid("st-1"),
        command_id: "c1".into(),
        status: status.into(),
        at,
        json: json!({ "status": status }).to_string(),
    };
    store
        .write_batch(&[ack("done", 3_100), ack("accepted", 3_200)])
        .await
        .unwrap();
    let cmds = store.commands(&sid("st-1"), 10).await.unwrap();
    assert_eq!(
        (cmds[0].status.as_str(), cmds[0].ack_at),
        ("done", Some(3_100))
    );
    // An ack from another station for this id changes nothing.
    store
        .write_batch(&[Write::Ack {
            station: sid("st-2"),
            command_id: "c1".into(),
            status: "rejected".into(),
            at: 1,
            json: "{}".into(),
        }])
        .await
        .unwrap();
    assert_eq!(
        store.commands(&sid("st-1"), 10).await.unwrap()[0].status,
        "done"
    );

    // A command never acknowledged before its expiry becomes `expired` (final states stay);
    // only a late `done` replaces it, not a late `accepted` or `rejected`.
    let c2 = CommandRow {
        id: "c2".into(),
        issued_at: 3_500,
        expires_at: Some(5_000),
        ..cmd.clone()
    };
    store.insert_command(&c2).await.unwrap();
    assert_eq!(store.expire_commands(4_999).await.unwrap(), 0);
    assert_eq!(store.expire_commands(5_001).await.unwrap(), 1);
    assert_eq!(store.expire_commands(5_002).await.unwrap(), 0);
    let status = |id: &'static str| {
        let store = store.clone();
        async move {
            store
                .commands(&sid("st-1"), 10)
                .await
                .unwrap()
                .into_iter()
                .find(|c| c.id == id)
                .unwrap()
                .status
        }
    };
    assert_eq!(status("c2").await, "expired");
    assert_eq!(status("c1").await, "done");
    let ack2 = |status: &str| Write::Ack {
        station: sid("st-1"),
        command_id: "c2".into(),
        status: status.into(),
        at: 6_000,
        json: "{}".into(),
    };
    store
        .write_batch(&[ack2("accepted"), ack2("rejected")])
        .await
        .unwrap();
    assert_eq!(status("c2").await, "expired");
    store.write_batch(&[ack2("done")]).await.unwrap();
    assert_eq!(status("c2").await, "done");

    // Retention: commands, events and closed alerts by events_days; the audit log by
    // audit_days (open alerts stay whatever their age).
    assert!(store.prune_events(3_200).await.unwrap() >= 1);
    let left: Vec<String> = store
        .commands(&sid("st-1"), 10)
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    assert_eq!(left, ["c2"]);

    // Alerts: one open per station and kind, whoever opens it.
    assert!(store
        .open_alert(&sid("st-1"), "offline", "lost", 4_000)
        .await
        .unwrap());
    assert!(!store
        .open_alert(&sid("st-1"), "offline", "lost again", 4_001)
        .await
        .unwrap());
    assert!(store
        .open_alert(&sid("st-2"), "offline", "lost", 4_002)
        .await
        .unwrap());
    assert!(store
        .close_alert(&sid("st-1"), "offline", 4_500)
        .await
        .unwrap());
    assert!(!store
        .close_alert(&sid("st-1"), "offline", 4_600)
        .await
        .unwrap());
    assert!(store
        .open_alert(&sid("st-1"), "offline", "lost later", 5_000)
        .await
        .unwrap());
    let hist = store.station_alerts(&sid("st-1"), 10).await.unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!((hist[0].closed_at, hist[1].closed_at), (None, Some(4_500)));
    assert_eq!(store.open_alerts().await.unwrap().len(), 2);

    // Snapshots: the latest per camera.
    let snap = |b: u8, at| Write::Snapshot {
        station: sid("st-1"),
        camera: cam("desk"),
        received_at: at,
        jpeg: vec![0xFF, 0xD8, b],
    };
    store
        .write_batch(&[snap(1, 10), snap(2, 20)])
        .await
        .unwrap();
    assert_eq!(
        store.snapshot(&sid("st-1"), &cam("desk")).await.unwrap(),
        Some((20, vec![0xFF, 0xD8, 2]))
    );
    assert_eq!(
        store.snapshot_times(&sid("st-1")).await.unwrap(),
        [(cam("desk"), 20)]
    );

    // Audit log, newest first.
    store
        .audit(1, "alice", "login", "", "", true)
        .await
        .unwrap();
    store
        .audit(2, "mallory", "login", "", "wrong password", false)
        .await
        .unwrap();
    let log = store.audit_log(10).await.unwrap();
    assert_eq!((log[0].username.as_str(), log[0].ok), ("mallory", false));
    assert_eq!(log.len(), 2);
    store
        .audit(100, "u", "login", "", "old", false)
        .await
        .unwrap();
    store
        .audit(i64::MAX / 2, "u", "login", "", "new", false)
        .await
        .unwrap();
    assert!(store.prune_audit(1_000).await.unwrap() >= 1);
    let audit = store.audit_log(10_000).await.unwrap();
    assert!(audit.iter().all(|e| e.at >= 1_000));
    assert!(audit.iter().any(|e| e.detail == "new"));

    archive(&store).await;
    store.close().await;
}

/// The archive index: ranges moved optimistically, lines, states, refusals, totals.
async fn archive(store: &Store) {
    use station_controller::protocol::archive::ManifestRange;
    use station_controller::protocol::manifest::Hash256;
    use station_controller::store::archive::{Appended, EntryRow, RefusalRow, ARCHIVED};

    let (s, c) = (sid("pu-1"), cam("desk"));
    let row = |seq: u64, kind: &str| EntryRow {
        camera: c.clone(),
        seq,
        line: format!("line {seq}"),
        hash: Hash256::of(format!("line {seq}").as_bytes()).to_hex(),
        kind: kind.into(),
        start_ms: Some(seq as i64 * 10),
        end_ms: Some(seq as i64 * 10 + 10),
        file: (kind == "segment").then(|| format!("{seq}.ts")),
        size: (kind == "segment").then_some(1000 + seq),
        sha256: (kind == "segment").then(|| "ab".repeat(32)),
        state: (kind == "segment").then(|| "pending".into()),
        reason: None,
        archived_at: None,
        received_at: 5,
    };
    let range = |first: u64, last: u64| ManifestRange {
        first_seq: first,
        first_prev: Hash256::of(&[first as u8]),
        last_seq: last,
        last_hash: Hash256::of(&[last as u8, 1]),
    };
    assert_eq!(store.archive_range(&s, &c).await.unwrap(), None);
    let r1 = range(2, 3);
    let rows = [row(2, "segment"), row(3, "gap")];
    assert_eq!(
        store
            .archive_append(&s, &c, None, &r1, &rows, 5)
            .await
            .unwrap(),
        Appended::Done
    );
    // Another writer that also saw no range loses.
    assert_eq!(
        store
            .archive_append(&s, &c, None, &r1, &rows, 5)
            .await
            .unwrap(),
        Appended::Raced
    );
    let r2 = range(0, 4);
    let more = [row(0, "segment"), row(1, "segment"), row(4, "segment")];
    assert_eq!(
        store
            .archive_append(&s, &c, Some(&r1), &r2, &more, 6)
            .await
            .unwrap(),
        Appended::Done
    );
    assert_eq!(
        store
            .archive_append(&s, &c, Some(&r1), &r2, &more, 6)
            .await
            .unwrap(),
        Appended::Raced
    );
    assert_eq!(store.archive_range(&s, &c).await.unwrap(), Some(r2.clone()));
    assert_eq!(
        store.archive_ranges(&s).await.unwrap(),
        vec![(c.clone(), r2)]
    );
    let hashes = store.archive_hashes(&s, &c, 1, 3).await.unwrap();
    assert_eq!(
        hashes.iter().map(|(q, _)| *q).collect::<Vec<_>>(),
        [1, 2, 3]
    );
    assert_eq!(
        store.archive_entry(&s, &c, 3).await.unwrap(),
        Some(rows[1].clone())
    );
    assert_eq!(store.archive_entry(&s, &c, u64::MAX).await.unwrap(), None);
    store
        .archive_set_state(&s, &c, 2, ARCHIVED, None, Some(9))
        .await
        .unwrap();
    store
        .archive_set_state(&s, &c, 4, "refused", Some("sha"), None)
        .await
        .unwrap();
    store
        .archive_refusal(
            &s,
            &RefusalRow {
                camera: c.clone(),
                seq: Some(4),
                what: "segment".into(),
                reason: "sha".into(),
                object_key: Some("quarantine/pu-1/desk/4-9.ts".into()),
                at: 9,
            },
        )
        .await
        .unwrap();
    assert_eq!(store.archive_refusals(&s, 10).await.unwrap().len(), 1);
    let t = store
        .archive_timeline(&s, Some(&c), 15, 30, 100)
        .await
        .unwrap();
    assert_eq!(t.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(
        store
            .archive_timeline(&s, None, 0, i64::MAX, 2)
            .await
            .unwrap()
            .len(),
        2
    );
    let totals = store.archive_totals(None).await.unwrap();
    assert_eq!(totals.len(), 1);
    let t = &totals[0].2;
    assert_eq!(
        (
            t.archived_segments,
            t.archived_bytes,
            t.pending_segments,
            t.pending_bytes
        ),
        (1, 1002, 2, 2001)
    );
    assert_eq!((t.refused_segments, t.refused_bytes), (1, 1004));
}

#[tokio::test]
async fn sqlite_store() {
    let dir = tempfile::tempdir().unwrap();
    scenario(format!("sqlite://{}", dir.path().join("c.db").display())).await;
}

#[tokio::test]
async fn postgres_store() {
    if !stationwatch_tests::require(
        postgres_bin_dir().is_some(),
        "PostgreSQL server not installed (apt-get install postgresql)",
    ) {
        return;
    }
    let pg = Postgres::start().expect("start a throw-away PostgreSQL");
    scenario(pg.url()).await;
}
