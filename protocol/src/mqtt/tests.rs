//! Unit tests of the MQTT protocol: topics, payload round trips, forward compatibility, command
//! validation and the command log.

use serde_json::{json, Value};

use super::*;
use crate::ids::{CameraId, StationId};
use crate::manifest::{Chain, GapReason, Hash256, Timestamp};

// ---------------------------------------------------------------------------------------------
// Fixtures

pub(super) fn station() -> StationId {
    StationId::new("KG-0042").unwrap()
}

pub(super) fn cam(name: &str) -> CameraId {
    CameraId::new(name).unwrap()
}

pub(super) fn cameras() -> Vec<CameraId> {
    vec![cam("desk"), cam("boxes")]
}

pub(super) fn mid(s: &str) -> MessageId {
    MessageId::new(s).unwrap()
}

/// 2026-11-21T09:15:00.000Z plus `ms` milliseconds.
pub(super) fn t(ms: i64) -> Timestamp {
    Timestamp::from_unix_ms(1_795_252_500_000 + ms).unwrap()
}

fn ts(s: &str) -> Timestamp {
    s.parse().unwrap()
}

const MAX_AGE: i64 = DEFAULT_COMMAND_MAX_AGE_MS;

fn cmd_json(value: Value) -> Vec<u8> {
    serde_json::to_vec(&value).unwrap()
}

fn decode_at(payload: &[u8], now: Timestamp) -> Result<CommandEnvelope, Rejection> {
    decode_command(payload, now, MAX_AGE, &cameras())
}

fn reason_of(payload: &[u8]) -> (Option<String>, RejectReason) {
    let r = decode_at(payload, t(0)).unwrap_err();
    (r.id.map(String::from), r.reason)
}

fn ping(id: &str, issued_at: Timestamp) -> Vec<u8> {
    CommandEnvelope::new(mid(id), issued_at, Command::Ping)
        .to_json()
        .unwrap()
}

// ---------------------------------------------------------------------------------------------
// Topics

#[test]
fn topics_of_a_station() {
    let topics = Topics::new(&station());
    assert_eq!(topics.status(), "stationwatch/v1/KG-0042/status");
    assert_eq!(topics.health(), "stationwatch/v1/KG-0042/health");
    assert_eq!(topics.events(), "stationwatch/v1/KG-0042/events");
    assert_eq!(topics.command(), "stationwatch/v1/KG-0042/cmd");
    assert_eq!(topics.ack(), "stationwatch/v1/KG-0042/ack");
    assert_eq!(
        topics.snapshot(&cam("desk")),
        "stationwatch/v1/KG-0042/snapshot/desk"
    );
    assert_eq!(topics.subtree_filter(), "stationwatch/v1/KG-0042/#");
    assert_eq!(
        topics.agent_subscription(),
        Subscription {
            filter: "stationwatch/v1/KG-0042/cmd".into(),
            qos: QoS::AtLeastOnce
        }
    );
    assert_eq!(topics.station(), &station());
}

#[test]
fn parse_topic_inverts_topics() {
    let topics = Topics::new(&station());
    for kind in [
        TopicKind::Status,
        TopicKind::Health,
        TopicKind::Events,
        TopicKind::Command,
        TopicKind::Ack,
        TopicKind::Snapshot(cam("boxes")),
    ] {
        let topic = topics.topic(&kind);
        assert_eq!(parse_topic(&topic), Some((station(), kind)), "{topic}");
    }
}

#[test]
fn parse_topic_refuses_anything_else() {
    for bad in [
        "",
        "stationwatch",
        "stationwatch/v1",
        "stationwatch/v1/",
        "stationwatch/v1/KG-0042",
        "stationwatch/v1/KG-0042/",
        "stationwatch/v1/KG-0042/statuses",
        "stationwatch/v1/KG-0042/status/extra",
        "stationwatch/v1/KG-0042/snapshot",
        "stationwatch/v1/KG-0042/snapshot/",
        "stationwatch/v1/KG-0042/snapshot/desk/x",
        "stationwatch/v1/KG-0042/snapshot/+",
        "stationwatch/v1/+/status",
        "stationwatch/v1/#",
        "stationwatch/v1//status",
        "stationwatch/v1/-x/status",
        "stationwatch/v10/KG-0042/status",
        "stationwatch/v2/KG-0042/status",
        "/stationwatch/v1/KG-0042/status",
        "$share/controllers/stationwatch/v1/KG-0042/status",
        "stationwatch/v1/KG 0042/status",
        "stationwatch/v1/KG-0042/Status",
    ] {
        assert_eq!(parse_topic(bad), None, "{bad:?}");
    }
    let long = format!("stationwatch/v1/{}/status", "x".repeat(65));
    assert_eq!(parse_topic(&long), None);
}

#[test]
fn topic_specs() {
    use Direction::*;
    let spec = |k: TopicKind| {
        let s = k.spec();
        (s.direction, s.qos.as_u8(), s.retain)
    };
    assert_eq!(spec(TopicKind::Status), (AgentToController, 1, true));
    assert_eq!(spec(TopicKind::Health), (AgentToController, 0, true));
    assert_eq!(spec(TopicKind::Events), (AgentToController, 1, false));
    assert_eq!(spec(TopicKind::Command), (ControllerToAgent, 1, false));
    assert_eq!(spec(TopicKind::Ack), (AgentToController, 1, false));
    assert_eq!(
        spec(TopicKind::Snapshot(cam("desk"))),
        (AgentToController, 1, false)
    );
}

#[test]
fn filters_match_the_tree() {
    // Each filter, with `+` replaced by ids, is a topic `parse_topic` accepts.
    for (filter, kind) in [
        (filters::STATUS, TopicKind::Status),
        (filters::HEALTH, TopicKind::Health),
        (filters::EVENTS, TopicKind::Events),
        (filters::ACK, TopicKind::Ack),
        (filters::SNAPSHOT, TopicKind::Snapshot(cam("desk"))),
    ] {
        let topic = filter.replacen('+', "KG-0042", 1).replacen('+', "desk", 1);
        assert_eq!(parse_topic(&topic), Some((station(), kind)), "{filter}");
    }
    assert!(filters::ALL.starts_with(TOPIC_ROOT));
}

#[test]
fn controller_subscriptions_share_all_but_status() {
    let direct = controller_subscriptions(None, "");
    assert_eq!(direct.len(), 5);
    assert!(direct.iter().all(|s| !s.filter.starts_with("$share/")));
    let shared_subs = controller_subscriptions(Some(SHARED_GROUP), "");
    assert_eq!(shared_subs[0].filter, filters::STATUS);
    assert_eq!(
        shared_subs[1].filter,
        "$share/controllers/stationwatch/v1/+/health"
    );
    assert_eq!(shared_subs[1].qos, QoS::AtMostOnce);
    assert!(shared_subs[1..].iter().all(|s| s
        .filter
        .starts_with("$share/controllers/stationwatch/v1/+/")));
    assert_eq!(
        shared("g", filters::EVENTS),
        "$share/g/stationwatch/v1/+/events"
    );
}

#[test]
fn controller_subscriptions_put_the_mount_point_after_the_share_prefix() {
    let subs = controller_subscriptions(Some(SHARED_GROUP), "stations/");
    assert_eq!(subs[0].filter, "stations/stationwatch/v1/+/status");
    assert_eq!(
        subs[2].filter,
        "$share/controllers/stations/stationwatch/v1/+/events"
    );
    let direct = controller_subscriptions(None, "stations/");
    assert!(direct
        .iter()
        .all(|s| s.filter.starts_with("stations/stationwatch/v1/+/")));
    assert_eq!(
        unmount("stations/stationwatch/v1/A/health", "stations/"),
        Some("stationwatch/v1/A/health")
    );
    assert_eq!(unmount("stationwatch/v1/A/health", "stations/"), None);
    assert_eq!(
        unmount("stationwatch/v1/A/health", ""),
        Some("stationwatch/v1/A/health")
    );
    for ok in ["", "stations/", "a/b/"] {
        assert_eq!(validate_mount_point(ok), Ok(()), "{ok}");
    }
    assert_eq!(
        validate_mount_point("stations"),
        Err(MountPointError::NoTrailingSlash)
    );
    let t = Topics::new(&station());
    assert!(t.is_command("stationwatch/v1/KG-0042/cmd"));
    assert!(t.is_command("stations/stationwatch/v1/KG-0042/cmd"));
    assert!(!t.is_command("stationwatch/v1/KG-0043/cmd"));
    assert!(!t.is_command("xstationwatch/v1/KG-0042/cmd"));
    assert!(!t.is_command("stations/stationwatch/v1/KG-0042/ack"));
    for bad in ["$SYS/", "/x/", "a/+/", "#/", "a//"] {
        assert_eq!(
            validate_mount_point(bad),
            Err(MountPointError::Invalid),
            "{bad}"
        );
    }
}

#[test]
fn last_will_is_retained_offline_lost() {
    let will = Topics::new(&station()).last_will();
    assert_eq!(will.topic, "stationwatch/v1/KG-0042/status");
    assert_eq!(will.qos, QoS::AtLeastOnce);
    assert!(will.retain);
    assert_eq!(will.payload, Status::lost().to_json().unwrap());
    let status = decode_status(&will.payload).unwrap();
    assert_eq!(status.state, StatusState::Offline);
    assert_eq!(status.reason, Some(OfflineReason::Lost));
    assert_eq!(status.at, None);
}

// ---------------------------------------------------------------------------------------------
// Ids

#[test]
fn message_ids() {
    for ok in ["a", "01JD3Z8W9K2M4N6P8Q0R2S4T6V", "5f3c9a1e-000001", "-x_"] {
        assert!(MessageId::new(ok).is_ok(), "{ok}");
    }
    assert!(MessageId::new("f47ac10b-58cc-4372-a567-0e02b2c3d479").is_ok());
    assert_eq!(MessageId::new(""), Err(MessageIdError::Empty));
    assert_eq!(MessageId::new("a b"), Err(MessageIdError::BadChar(' ')));
    assert_eq!(MessageId::new("a/b"), Err(MessageIdError::BadChar('/')));
    assert_eq!(MessageId::new("é"), Err(MessageIdError::BadChar('é')));
    assert!(MessageId::new("x".repeat(MAX_MESSAGE_ID_LEN)).is_ok());
    assert_eq!(
        MessageId::new("x".repeat(MAX_MESSAGE_ID_LEN + 1)),
        Err(MessageIdError::TooLong(MAX_MESSAGE_ID_LEN + 1))
    );
    assert!(serde_json::from_str::<MessageId>("\"a+b\"").is_err());
}

// ---------------------------------------------------------------------------------------------
// Status, health, events: round trips and forward compatibility

#[test]
fn status_round_trips() {
    for status in [
        Status::online(t(0), "0.1.0"),
        Status::shutdown(t(5)),
        Status::lost(),
    ] {
        let bytes = status.to_json().unwrap();
        assert_eq!(decode_status(&bytes).unwrap(), status);
    }
}

#[test]
fn status_from_a_newer_agent() {
    let s = decode_status(br#"{"v":1,"state":"sleeping","reason":"nap","extra":[1]}"#).unwrap();
    assert_eq!(s.state, StatusState::Unknown);
    assert_eq!(s.reason, Some(OfflineReason::Unknown));
    let s = decode_status(br#"{"v":1}"#).unwrap();
    assert_eq!(s.state, StatusState::Unknown);
}

pub(super) fn full_health() -> Health {
    let mut h = Health::new(t(0));
    h.agent = AgentInfo {
        version: "0.1.0".into(),
        config_hash: Some(Hash256::of(b"config")),
        key_fingerprint: Some("3f2a:9c41:0b7e:d5a8".parse().unwrap()),
        station_name: Some("School No. 12".into()),
        region: Some("North".into()),
        uptime_s: 11_808,
        system_uptime_s: Some(11_862),
    };
    h.cameras.insert(
        cam("desk"),
        CameraHealth {
            state: CameraState::Recording,
            fps: Some(25.0),
            bitrate_bps: Some(2_000_000),
            last_segment_end: Some(t(-2_000)),
            manifest: Some(ManifestHead {
                next_seq: 408,
                prev: Hash256::of(b"manifest-desk"),
            }),
            detail: None,
            live: Some(CameraLive {
                mode: LiveSetting::Auto,
                overridden: false,
                rung: LiveRung::Sub,
                state: LiveState::Streaming,
                uplink_bps: Some(1_400_000),
                send_bps: Some(610_000),
                rtt_ms: Some(48.5),
                loss: Some(0.01),
                reason: Some("link carries 1.4 Mbit/s, main needs 2.5".into()),
            }),
            view: Some(ViewHealth {
                approved: true,
                problems: vec![ViewProblem {
                    kind: ViewProblemKind::Blurred,
                    since: t(-30_000),
                    detail: "sharpness 12 % of the approved view's".into(),
                }],
                analysed_at: Some(t(-1_000)),
                decision: Some(ViewDecision {
                    state: ViewDecisionState::Approved,
                    by: "operator-1".into(),
                    at: t(-3_600_000),
                    reason: String::new(),
                }),
                masks: 1,
                masks_digest: "3f1c9a0b5d7e2468".into(),
            }),
        },
    );
    h.cameras.insert(
        cam("boxes"),
        CameraHealth {
            state: CameraState::Lost,
            detail: Some("reconnecting".into()),
            ..CameraHealth::default()
        },
    );
    h.disk = Some(DiskHealth {
        free_bytes: 412_316_860_416,
        total_bytes: 500_107_862_016,
        hours_left: hours_left(412_316_860_416, 2_000_000),
        low: false,
    });
    h.clock = Some(ClockHealth {
        synced: true,
        est_error_us: Some(1_250),
        max_error_us: Some(48_000),
    });
    h.system = SystemHealth {
        load_1m: Some(0.42),
        load_5m: Some(0.51),
        load_15m: Some(0.48),
        temperature_c: Some(51.5),
        power: Some(PowerHealth {
            on_battery: Some(false),
            battery_percent: Some(100.0),
        }),
    };
    h.segment_s = Some(60);
    h.uplink = Some(UplinkHealth {
        live: LiveRung::Sub,
        estimated_bps: Some(640_000),
        upload_backlog_s: Some(5_400),
    });
    h
}

#[test]
fn health_round_trips() {
    let h = full_health();
    let bytes = h.to_json().unwrap();
    assert_eq!(decode_health(&bytes).unwrap(), h);
    let fpr = serde_json::from_slice::<Value>(&bytes).unwrap()["agent"]["key_fingerprint"].clone();
    assert_eq!(fpr, json!("3f2a:9c41:0b7e:d5a8"));
    let empty = Health::new(t(0));
    assert_eq!(decode_health(&empty.to_json().unwrap()).unwrap(), empty);
}

#[test]
fn health_needs_only_v_and_at() {
    let h = decode_health(br#"{"v":1,"at":"2026-11-21T09:15:00.000Z"}"#).unwrap();
    assert_eq!(h, Health::new(t(0)));
    assert_eq!(h.interval_s, DEFAULT_HEALTH_INTERVAL_S);
    assert!(matches!(
        decode_health(br#"{"v":1}"#),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn health_from_a_newer_agent() {
    let payload = json!({
        "v": 1,
        "at": "2026-11-21T09:15:00.000Z",
        "interval_s": 30,
        "gpu": {"util": 3},
        "agent": {"version": "9.0.0", "build": "abc", "uptime_s": 5},
        "cameras": {
            "desk": {"state": "recording", "fps": 24.5, "ptz": {"pan": 3}},
            "boxes": {"state": "covered", "covered_score": 0.97}
        },
        "disk": {"free_bytes": 10, "total_bytes": 20, "smart": "ok"},
        "clock": {"synced": false, "source": "gnss"},
        "system": {"load_1m": 1.5, "fan_rpm": 1200},
        "uplink": {"live": "hologram", "rtt_ms": 40}
    });
    let h = decode_health(&cmd_json(payload)).unwrap();
    assert_eq!(h.interval_s, 30);
    assert_eq!(h.agent.version, "9.0.0");
    assert_eq!(h.cameras[&cam("desk")].state, CameraState::Recording);
    assert_eq!(h.cameras[&cam("desk")].fps, Some(24.5));
    assert_eq!(h.cameras[&cam("boxes")].state, CameraState::Unknown);
    assert_eq!(h.disk.as_ref().unwrap().free_bytes, 10);
    assert!(!h.clock.as_ref().unwrap().synced);
    assert_eq!(h.system.load_1m, Some(1.5));
    assert_eq!(h.uplink.as_ref().unwrap().live, LiveRung::Unknown);
}

#[test]
fn health_nan_is_not_a_broken_payload() {
    let mut h = Health::new(t(0));
    h.system.temperature_c = Some(f64::NAN);
    let back = decode_health(&h.to_json().unwrap()).unwrap();
    assert_eq!(back.system.temperature_c, None);
}

#[test]
fn health_staleness_and_hours_left() {
    let h = Health::new(t(0));
    assert!(!h.is_stale(t(45_000)));
    assert!(h.is_stale(t(45_001)));
    assert_eq!(hours_left(1, 0), None);
    assert_eq!(hours_left(450_000_000, 1_000_000), Some(1.0));
    assert_eq!(hours_left(0, 1_000_000), Some(0.0));
}

#[test]
fn manifest_head_converts_to_a_chain() {
    let chain = Chain {
        station: station(),
        camera: cam("desk"),
        next_seq: 7,
        prev: Hash256::of(b"x"),
    };
    let head = ManifestHead::from_chain(&chain);
    assert_eq!(head.to_chain(station(), cam("desk")), chain);
    let text = serde_json::to_value(head).unwrap();
    assert_eq!(text["prev"], json!(Hash256::of(b"x").to_hex()));
}

pub(super) fn all_event_kinds() -> Vec<EventKind> {
    vec![
        EventKind::AgentStarting {
            version: "0.1.0".into(),
            previous_stop: Some(GapReason::PowerLoss.into()),
        },
        EventKind::AgentStarting {
            version: "0.1.0".into(),
            previous_stop: None,
        },
        EventKind::AgentStopping {
            reason: "SIGTERM".into(),
        },
        EventKind::CameraLost {
            camera: cam("boxes"),
            detail: "no data for 5 s".into(),
        },
        EventKind::CameraBack {
            camera: cam("boxes"),
            since: Some(t(-60_000)),
        },
        EventKind::GapRecorded {
            camera: cam("boxes"),
            start: t(-60_000),
            end: t(0),
            reason: GapReason::CameraLost.into(),
            detail: String::new(),
            seq: Some(402),
        },
        EventKind::DiskLow {
            free_bytes: 1 << 30,
            hours_left: Some(1.5),
        },
        EventKind::DiskOk {
            free_bytes: 1 << 40,
            hours_left: None,
        },
        EventKind::ForeignFile {
            camera: cam("boxes"),
            file: "2026-11-21/20261121T180000.000Z.ts".into(),
        },
        EventKind::ViewProblem {
            camera: cam("boxes"),
            problem: ViewProblemKind::Covered,
            since: t(-20_000),
            detail: "featureless".into(),
        },
        EventKind::ViewClear {
            camera: cam("boxes"),
            problem: ViewProblemKind::Covered,
            since: Some(t(-20_000)),
        },
        EventKind::HoldsFileError {
            detail: "expected value at line 1 column 1".into(),
        },
        EventKind::HoldsFileOk,
        EventKind::ClockUnsynced {
            est_error_us: Some(16_000_000),
            max_error_us: None,
        },
        EventKind::ClockSynced {
            est_error_us: Some(2_100),
        },
        EventKind::LiveChanged {
            camera: cam("desk"),
            rung: LiveRung::Sub,
            from: LiveRung::Main,
            mode: LiveSetting::Auto,
            uplink_bps: Some(1_200_000),
            reason: "link carries 1.2 Mbit/s".into(),
        },
    ]
}

#[test]
fn events_round_trip() {
    for (i, kind) in all_event_kinds().into_iter().enumerate() {
        let event = Event::new(mid(&format!("e-{i}")), t(i as i64), kind);
        let bytes = event.to_json().unwrap();
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["kind"], json!(event.kind.name()));
        assert_eq!(decode_event(&bytes).unwrap(), event, "{value}");
    }
}

#[test]
fn events_from_a_newer_agent() {
    let e = decode_event(
        br#"{"v":1,"id":"e1","at":"2026-11-21T09:15:00.000Z","kind":"camera_covered","camera":"desk","score":0.9}"#,
    )
    .unwrap();
    assert_eq!(e.kind, EventKind::Unknown);
    assert_eq!(e.id, mid("e1"));
    // A known kind with extra fields, and a gap reason this version does not know.
    let e = decode_event(
        br#"{"v":1,"id":"e2","at":"2026-11-21T09:15:00.000Z","kind":"gap_recorded","camera":"desk","start":"2026-11-21T09:14:00.000Z","end":"2026-11-21T09:15:00.000Z","reason":"solar_eclipse","why":"x"}"#,
    )
    .unwrap();
    match e.kind {
        EventKind::GapRecorded {
            reason,
            detail,
            seq,
            ..
        } => {
            assert_eq!(reason, OrUnknown::Unknown("solar_eclipse".into()));
            assert_eq!(reason.to_string(), "solar_eclipse");
            assert_eq!(reason.known(), None);
            assert_eq!(detail, "");
            assert_eq!(seq, None);
        }
        other => panic!("{other:?}"),
    }
    // The known kinds still insist on their own required fields.
    assert!(decode_event(
        br#"{"v":1,"id":"e3","at":"2026-11-21T09:15:00.000Z","kind":"camera_lost"}"#
    )
    .is_err());
    assert!(decode_event(
        br#"{"v":1,"at":"2026-11-21T09:15:00.000Z","kind":"disk_ok","free_bytes":1}"#
    )
    .is_err());
}

#[test]
fn decode_errors() {
    assert_eq!(decode_health(b""), Err(DecodeError::Empty));
    let big = vec![b' '; MAX_JSON_BYTES + 1];
    assert_eq!(
        decode_health(&big),
        Err(DecodeError::TooLarge {
            size: MAX_JSON_BYTES + 1,
            max: MAX_JSON_BYTES
        })
    );
    assert_eq!(
        decode_status(br#"{"v":2,"state":"online","whatever":{}}"#),
        Err(DecodeError::UnsupportedVersion(2))
    );
    for bad in [
        &b"nope"[..],
        b"[1]",
        b"{}",
        br#"{"v":"1"}"#,
        br#"{"v":1.0}"#,
        br#"{"v":-1}"#,
        br#"{"v":1,"state":"online","state":"offline"}"#,
        br#"{"v":1} x"#,
    ] {
        assert!(
            matches!(decode_status(bad), Err(DecodeError::Malformed(_))),
            "{}",
            String::from_utf8_lossy(bad)
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Commands

pub(super) fn all_commands() -> Vec<Command> {
    vec![
        Command::RestartCamera {
            camera: cam("boxes"),
        },
        Command::Snapshot {
            camera: cam("desk"),
        },
        Command::SetHold {
            hold: mid("complaint-1"),
            from: t(-3_600_000),
            to: t(3_600_000),
            camera: Some(cam("boxes")),
            reason: "complaint 1".into(),
        },
        Command::SetHold {
            hold: mid("complaint-2"),
            from: t(-1),
            to: t(0),
            camera: None,
            reason: "all cameras".into(),
        },
        Command::ClearHold {
            hold: mid("complaint-1"),
        },
        Command::Ping,
    ]
}

#[test]
fn every_valid_command_is_accepted_and_round_trips() {
    for (i, command) in all_commands().into_iter().enumerate() {
        let mut env = CommandEnvelope::new(mid(&format!("c{i}")), t(-1_000), command);
        if i % 2 == 0 {
            env.expires_at = Some(t(30_000));
        }
        let bytes = env.to_json().unwrap();
        assert_eq!(decode_at(&bytes, t(0)), Ok(env.clone()));
        let value: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(value["command"]["kind"], json!(env.command.kind().name()));
        assert_eq!(
            CommandKind::from_name(env.command.kind().name()),
            Some(env.command.kind())
        );
    }
}

#[test]
fn commands_tolerate_unknown_fields() {
    let payload = cmd_json(json!({
        "v": 1, "id": "c1", "issued_at": "2026-11-21T09:15:00.000Z", "priority": "high",
        "command": {"kind": "snapshot", "camera": "desk", "quality": 90}
    }));
    let env = decode_at(&payload, t(0)).unwrap();
    assert_eq!(
        env.command,
        Command::Snapshot {
            camera: cam("desk")
        }
    );
    let ping = cmd_json(json!({
        "v": 1, "id": "c2", "issued_at": "2026-11-21T09:15:00.000Z",
        "command": {"kind": "ping", "echo": "hello"}
    }));
    assert_eq!(decode_at(&ping, t(0)).unwrap().command, Command::Ping);
}

#[test]
fn rejections_before_the_id_carry_no_id() {
    let big = vec![b'{'; MAX_COMMAND_BYTES + 1];
    assert_eq!(
        reason_of(&big),
        (
            None,
            RejectReason::TooLarge {
                size: MAX_COMMAND_BYTES + 1,
                max: MAX_COMMAND_BYTES
            }
        )
    );
    for bad in [
        &b""[..],
        b"\xff\xfe",
        b"null",
        b"[]",
        b"\"ping\"",
        b"{",
        br#"{"v":1}"#,
        br#"{"v":1,"id":7}"#,
        br#"{"v":1,"id":""}"#,
        br#"{"v":1,"id":"a b"}"#,
        br#"{"v":1,"id":null}"#,
    ] {
        let (id, reason) = reason_of(bad);
        assert_eq!(id, None, "{}", String::from_utf8_lossy(bad));
        assert!(matches!(reason, RejectReason::Malformed(_)), "{reason:?}");
    }
}

#[test]
fn rejections_after_the_id_name_it() {
    let base = json!({
        "v": 1, "id": "c1", "issued_at": "2026-11-21T09:15:00.000Z",
        "command": {"kind": "restart_camera", "camera": "desk"}
    });
    let with = |path: &[&str], value: Option<Value>| {
        let mut v = base.clone();
        let (last, parents) = path.split_last().unwrap();
        let mut obj = &mut v;
        for p in parents {
            obj = obj.get_mut(*p).unwrap();
        }
        let obj = obj.as_object_mut().unwrap();
        match value {
            Some(x) => obj.insert(last.to_string(), x),
            None => obj.remove(*last),
        };
        cmd_json(v)
    };
    let cases: Vec<(Vec<u8>, RejectCode)> = vec![
        (with(&["v"], None), RejectCode::Malformed),
        (with(&["v"], Some(json!("1"))), RejectCode::Malformed),
        (with(&["v"], Some(json!(1.5))), RejectCode::Malformed),
        (with(&["v"], Some(json!(2))), RejectCode::UnsupportedVersion),
        (with(&["v"], Some(json!(0))), RejectCode::UnsupportedVersion),
        (with(&["issued_at"], None), RejectCode::Malformed),
        (
            with(&["issued_at"], Some(json!("2026-11-21T09:15:00Z"))),
            RejectCode::Malformed,
        ),
        (with(&["command"], None), RejectCode::Malformed),
        (
            with(&["command"], Some(json!("ping"))),
            RejectCode::Malformed,
        ),
        (with(&["command", "kind"], None), RejectCode::Malformed),
        (
            with(&["command", "kind"], Some(json!(3))),
            RejectCode::Malformed,
        ),
        (
            with(&["command", "kind"], Some(json!("self_destruct"))),
            RejectCode::UnknownCommand,
        ),
        (
            with(&["command", "kind"], Some(json!("Ping"))),
            RejectCode::UnknownCommand,
        ),
        (with(&["command", "camera"], None), RejectCode::Malformed),
        (
            with(&["command", "camera"], Some(json!("a/b"))),
            RejectCode::Malformed,
        ),
        (
            with(&["command", "camera"], Some(json!("hall"))),
            RejectCode::UnknownCamera,
        ),
        (
            with(&["expires_at"], Some(json!("2026-11-21T09:14:59.999Z"))),
            RejectCode::Malformed,
        ),
        (with(&["expires_at"], Some(json!(5))), RejectCode::Malformed),
    ];
    for (payload, code) in cases {
        let r = decode_at(&payload, t(0)).unwrap_err();
        assert_eq!(
            r.id,
            Some(mid("c1")),
            "{}",
            String::from_utf8_lossy(&payload)
        );
        assert_eq!(
            r.reason.code(),
            code,
            "{} -> {:?}",
            String::from_utf8_lossy(&payload),
            r.reason
        );
        let ack = r.ack(t(1));
        assert_eq!(ack.status, AckStatus::Rejected);
        assert_eq!(ack.id, Some(mid("c1")));
        assert_eq!(ack.reason.as_ref().unwrap().code, code);
    }
}

#[test]
fn repeated_fields_are_malformed() {
    let payload = br#"{"v":1,"id":"c1","issued_at":"2026-11-21T09:15:00.000Z","command":{"kind":"snapshot","camera":"desk","camera":"boxes"}}"#;
    let r = decode_at(payload, t(0)).unwrap_err();
    assert_eq!(r.id, Some(mid("c1")));
    assert!(matches!(r.reason, RejectReason::Malformed(ref d) if d.contains("duplicate")));
    let payload = br#"{"v":1,"id":"c1","id":"c2","issued_at":"2026-11-21T09:15:00.000Z","command":{"kind":"ping"}}"#;
    assert_eq!(
        decode_at(payload, t(0)).unwrap_err().reason.code(),
        RejectCode::Malformed
    );
}

#[test]
fn age_limits_are_exact() {
    let at = |issued: i64, now: i64| decode_at(&ping("c1", t(issued)), t(now));
    assert!(at(0, MAX_AGE).is_ok());
    assert_eq!(
        at(0, MAX_AGE + 1).unwrap_err().reason,
        RejectReason::Stale {
            age_ms: MAX_AGE + 1,
            max_age_ms: MAX_AGE
        }
    );
    assert!(at(FUTURE_TOLERANCE_MS, 0).is_ok());
    assert_eq!(
        at(FUTURE_TOLERANCE_MS + 1, 0).unwrap_err().reason,
        RejectReason::FromTheFuture {
            ahead_ms: FUTURE_TOLERANCE_MS + 1
        }
    );
    // A negative maximum age means "only commands issued now or later".
    let r = decode_command(&ping("c1", t(-1)), t(0), -5, &cameras()).unwrap_err();
    assert_eq!(
        r.reason,
        RejectReason::Stale {
            age_ms: 1,
            max_age_ms: 0
        }
    );
    assert!(decode_command(&ping("c1", t(0)), t(0), -5, &cameras()).is_ok());
}

#[test]
fn expiry() {
    let mut env = CommandEnvelope::new(mid("c1"), t(0), Command::Ping);
    env.expires_at = Some(t(10));
    let bytes = env.to_json().unwrap();
    assert!(decode_at(&bytes, t(10)).is_ok());
    assert_eq!(
        decode_at(&bytes, t(11)).unwrap_err().reason,
        RejectReason::Expired { ago_ms: 1 }
    );
}

#[test]
fn hold_windows_and_reasons() {
    let hold = |from: i64, to: i64, camera: Option<&str>, reason: &str| {
        let env = CommandEnvelope::new(
            mid("h1"),
            t(0),
            Command::SetHold {
                hold: mid("hold-1"),
                from: t(from),
                to: t(to),
                camera: camera.map(cam),
                reason: reason.into(),
            },
        );
        decode_at(&env.to_json().unwrap(), t(0)).map(|_| ())
    };
    assert_eq!(hold(0, 1, None, "r"), Ok(()));
    assert_eq!(hold(0, 1, Some("desk"), "r"), Ok(()));
    assert_eq!(
        hold(0, 0, None, "r").unwrap_err().reason,
        RejectReason::InvalidWindow {
            from: t(0),
            to: t(0)
        }
    );
    assert_eq!(
        hold(5, 1, None, "r").unwrap_err().reason.code(),
        RejectCode::InvalidWindow
    );
    assert_eq!(
        hold(0, 1, Some("hall"), "r").unwrap_err().reason,
        RejectReason::UnknownCamera(cam("hall"))
    );
    assert_eq!(
        hold(0, 1, None, "  ").unwrap_err().reason.code(),
        RejectCode::Malformed
    );
}

#[test]
fn no_cameras_means_every_camera_is_unknown() {
    let env = CommandEnvelope::new(
        mid("c1"),
        t(0),
        Command::Snapshot {
            camera: cam("desk"),
        },
    );
    let r = decode_command(&env.to_json().unwrap(), t(0), MAX_AGE, &[]).unwrap_err();
    assert_eq!(r.reason.code(), RejectCode::UnknownCamera);
    assert!(decode_command(&ping("c2", t(0)), t(0), MAX_AGE, &[]).is_ok());
}

#[test]
fn long_input_is_not_echoed_in_full() {
    let kind = "k".repeat(5_000);
    let payload = cmd_json(json!({
        "v": 1, "id": "c1", "issued_at": "2026-11-21T09:15:00.000Z", "command": {"kind": kind}
    }));
    let r = decode_at(&payload, t(0)).unwrap_err();
    let message = r.ack(t(0)).reason.unwrap().message;
    assert!(message.chars().count() < 300, "{}", message.len());
    assert_eq!(r.reason.code(), RejectCode::UnknownCommand);
    // A multi-byte character at the cut is not split.
    let kind = "é".repeat(300);
    let payload = cmd_json(json!({
        "v": 1, "id": "c1", "issued_at": "2026-11-21T09:15:00.000Z", "command": {"kind": kind}
    }));
    assert!(decode_at(&payload, t(0)).is_err());
}

#[test]
fn peek_command_id_is_lenient_but_bounded() {
    assert_eq!(peek_command_id(br#"{"id":"c1"}"#), Some(mid("c1")));
    assert_eq!(peek_command_id(br#"{"id":"c 1"}"#), None);
    assert_eq!(peek_command_id(br#"["c1"]"#), None);
    assert_eq!(peek_command_id(b"{"), None);
    let mut big = br#"{"id":"c1","pad":""#.to_vec();
    big.extend(vec![b'x'; MAX_COMMAND_BYTES]);
    big.extend(br#""}"#);
    assert_eq!(peek_command_id(&big), None);
}

// ---------------------------------------------------------------------------------------------
// Acks

#[test]
fn acks_round_trip() {
    let snapshot = SnapshotResult {
        camera: cam("desk"),
        topic: Topics::new(&station()).snapshot(&cam("desk")),
        taken_at: t(0),
        bytes: 84_211,
        sha256: Hash256::of(b"jpeg"),
        width: Some(1280),
        height: None,
    };
    let acks = [
        Ack::accepted(mid("c1"), t(0)),
        Ack::done(mid("c1"), t(1), None),
        Ack::done_with(mid("c2"), t(2), &snapshot).unwrap(),
        Ack::rejected(None, t(3), &RejectReason::Malformed("x".into())),
        Ack::failed(mid("c3"), t(4), "no frame"),
    ];
    for ack in &acks {
        assert_eq!(&decode_ack(&ack.to_json().unwrap()).unwrap(), ack);
    }
    assert_eq!(
        acks[2].result_as::<SnapshotResult>().unwrap().unwrap(),
        snapshot
    );
    assert!(acks[1].result_as::<SnapshotResult>().is_none());
    assert!(acks[2].result_as::<PingResult>().unwrap().is_ok()); // all fields defaulted
    assert!(acks[2].result_as::<SetHoldResult>().unwrap().is_err());
    let null_id: Value = serde_json::from_slice(&acks[3].to_json().unwrap()).unwrap();
    assert_eq!(null_id["id"], Value::Null);
    assert_eq!(
        acks[4].reason,
        Some(AckReason {
            code: RejectCode::Failed,
            message: "no frame".into()
        })
    );
    assert!(AckStatus::Done.is_final() && AckStatus::Rejected.is_final());
    assert!(!AckStatus::Accepted.is_final() && !AckStatus::Unknown.is_final());
}

#[test]
fn acks_from_a_newer_agent() {
    let ack = decode_ack(
        br#"{"v":1,"id":"c1","status":"progress","at":"2026-11-21T09:15:00.000Z","percent":40,"reason":{"code":"busy_elsewhere","message":"m","retry_s":5}}"#,
    )
    .unwrap();
    assert_eq!(ack.status, AckStatus::Unknown);
    assert_eq!(ack.reason.unwrap().code, RejectCode::Unknown);
}

#[test]
fn every_reject_reason_has_its_code_and_message() {
    let reasons = [
        RejectReason::TooLarge { size: 2, max: 1 },
        RejectReason::Malformed("m".into()),
        RejectReason::UnsupportedVersion(2),
        RejectReason::UnknownCommand("k".into()),
        RejectReason::Stale {
            age_ms: 2,
            max_age_ms: 1,
        },
        RejectReason::Expired { ago_ms: 1 },
        RejectReason::FromTheFuture { ahead_ms: 1 },
        RejectReason::UnknownCamera(cam("hall")),
        RejectReason::InvalidWindow {
            from: t(1),
            to: t(0),
        },
        RejectReason::Failed("f".into()),
    ];
    let mut codes = std::collections::HashSet::new();
    for reason in &reasons {
        let ack = Ack::rejected(Some(mid("c")), t(0), reason);
        let wire: Value = serde_json::from_slice(&ack.to_json().unwrap()).unwrap();
        let code = wire["reason"]["code"].as_str().unwrap().to_string();
        assert!(!wire["reason"]["message"].as_str().unwrap().is_empty());
        assert_ne!(code, "unknown");
        codes.insert(code);
    }
    assert_eq!(codes.len(), reasons.len());
}

// ---------------------------------------------------------------------------------------------
// Command log

#[test]
fn a_repeated_id_is_answered_not_executed() {
    let mut log = CommandLog::new(16);
    let payload = ping("c1", t(0));
    let Handling::Execute { command, ack } = log.handle(&payload, t(10), MAX_AGE, &cameras())
    else {
        panic!("first delivery must execute");
    };
    assert_eq!(command.id, mid("c1"));
    assert_eq!(ack, Ack::accepted(mid("c1"), t(10)));
    // While running, a duplicate gets `accepted` again.
    assert_eq!(
        log.handle(&payload, t(20), MAX_AGE, &cameras()),
        Handling::Reply {
            ack: ack.clone(),
            repeat: true
        }
    );
    let done = Ack::done(mid("c1"), t(30), Some(json!({"agent_version": "0.1.0"})));
    assert!(log.record(done.clone()));
    // A late `accepted` never replaces the final ack.
    assert!(!log.record(Ack::accepted(mid("c1"), t(40))));
    // A late duplicate, long past the maximum age, still gets `done`, not `stale`.
    assert_eq!(
        log.handle(&payload, t(MAX_AGE * 10), MAX_AGE, &cameras()),
        Handling::Reply {
            ack: done.clone(),
            repeat: true
        }
    );
    // So does a different payload reusing the id.
    let other = CommandEnvelope::new(
        mid("c1"),
        t(0),
        Command::Snapshot {
            camera: cam("desk"),
        },
    );
    assert_eq!(
        log.handle(&other.to_json().unwrap(), t(50), MAX_AGE, &cameras()),
        Handling::Reply {
            ack: done,
            repeat: true
        }
    );
    assert_eq!(log.len(), 1);
}

#[test]
fn rejections_are_remembered_when_they_have_an_id() {
    let mut log = CommandLog::new(16);
    let stale = ping("c1", t(0));
    let first = log.handle(&stale, t(MAX_AGE + 1), MAX_AGE, &cameras());
    let Handling::Reply { ack, repeat: false } = &first else {
        panic!("{first:?}");
    };
    assert_eq!(ack.reason.as_ref().unwrap().code, RejectCode::Stale);
    assert_eq!(
        log.handle(&stale, t(MAX_AGE + 5), MAX_AGE, &cameras()),
        Handling::Reply {
            ack: ack.clone(),
            repeat: true
        }
    );
    // Without an id there is nothing to remember.
    let before = log.len();
    let r = log.handle(b"garbage", t(0), MAX_AGE, &cameras());
    assert!(matches!(r, Handling::Reply { ref ack, repeat: false } if ack.id.is_none()));
    assert_eq!(log.len(), before);
    assert!(!log.record(Ack::rejected(
        None,
        t(0),
        &RejectReason::Malformed("x".into())
    )));
}

#[test]
fn the_log_forgets_the_oldest_ids() {
    let mut log = CommandLog::new(3);
    for i in 0..5 {
        assert!(log.record(Ack::accepted(mid(&format!("c{i}")), t(i))));
    }
    assert_eq!(log.len(), 3);
    assert_eq!(log.capacity(), 3);
    assert!(log.get(&mid("c0")).is_none() && log.get(&mid("c1")).is_none());
    let ids: Vec<String> = log
        .acks()
        .map(|a| a.id.clone().unwrap().to_string())
        .collect();
    assert_eq!(ids, ["c2", "c3", "c4"]);
    // Updating an id does not move it or grow the log.
    assert!(log.record(Ack::done(mid("c2"), t(9), None)));
    assert_eq!(log.len(), 3);
    assert_eq!(log.get(&mid("c2")).unwrap().status, AckStatus::Done);
    assert!(log.record(Ack::accepted(mid("c5"), t(10))));
    assert!(log.get(&mid("c2")).is_none());
    // A forgotten id executes again (once stale, it would be rejected instead).
    let mut tiny = CommandLog::new(0);
    assert_eq!(tiny.capacity(), 1);
    assert!(tiny.is_empty());
    assert!(matches!(
        tiny.handle(&ping("a", t(0)), t(0), MAX_AGE, &cameras()),
        Handling::Execute { .. }
    ));
    assert!(matches!(
        tiny.handle(&ping("b", t(0)), t(0), MAX_AGE, &cameras()),
        Handling::Execute { .. }
    ));
    assert!(matches!(
        tiny.handle(&ping("a", t(0)), t(0), MAX_AGE, &cameras()),
        Handling::Execute { .. }
    ));
    assert_eq!(
        CommandLog::default().capacity(),
        DEFAULT_COMMAND_LOG_CAPACITY
    );
}

#[test]
fn example_times_in_the_fixtures() {
    assert_eq!(t(0), ts("2026-11-21T09:15:00.000Z"));
}
