//! `docs/mqtt.md` is checked against the code: its topic table, its limits, and every JSON
//! example (```` ```json <payload> [lenient | <command kind>] ````) parses with this crate's
//! decoders and, unless marked `lenient`, re-encodes to exactly the same JSON value.

use std::collections::BTreeSet;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

use super::tests::cameras;
use super::*;
use crate::manifest::Timestamp;

const DOC: &str = include_str!("../../../docs/mqtt.md");

struct Example {
    line: usize,
    payload: String,
    lenient: bool,
    /// The word after the payload type (e.g. the command kind of a `done` ack's result).
    extra: Option<String>,
    body: String,
}

fn examples() -> Vec<Example> {
    let mut out = Vec::new();
    let mut lines = DOC.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else {
            continue;
        };
        let mut body = String::new();
        for (_, l) in lines.by_ref() {
            if l.starts_with("```") {
                break;
            }
            body.push_str(l);
            body.push('\n');
        }
        let words: Vec<&str> = info.split_whitespace().collect();
        if words.first() != Some(&"json") {
            continue;
        }
        let payload = words.get(1).copied().unwrap_or_default().to_string();
        let rest: Vec<&str> = words.iter().skip(2).copied().collect();
        out.push(Example {
            line: n + 1,
            payload,
            lenient: rest.contains(&"lenient"),
            extra: rest
                .iter()
                .find(|w| **w != "lenient")
                .map(|w| w.to_string()),
            body,
        });
    }
    out
}

/// The decoded payload re-encodes to the example's JSON value (no field renamed, added or lost).
fn assert_same<T: Serialize>(ex: &Example, decoded: &T) {
    if ex.lenient {
        return;
    }
    let written: Value = serde_json::from_str(&ex.body).unwrap();
    let again = serde_json::to_value(decoded).unwrap();
    assert_eq!(again, written, "docs/mqtt.md line {}", ex.line);
}

fn check_result<T: DeserializeOwned + Serialize>(ex: &Example, ack: &Ack) {
    let result = ack
        .result_as::<T>()
        .unwrap_or_else(|| panic!("line {}: no result", ex.line))
        .unwrap_or_else(|e| panic!("line {}: {e}", ex.line));
    assert_eq!(
        serde_json::to_value(result).unwrap(),
        ack.result.clone().unwrap(),
        "line {}",
        ex.line
    );
}

fn ok<T>(ex: &Example, r: Result<T, DecodeError>) -> T {
    r.unwrap_or_else(|e| panic!("docs/mqtt.md line {}: {e}", ex.line))
}

#[test]
fn every_json_example_in_the_docs_parses() {
    let examples = examples();
    let mut commands = BTreeSet::new();
    let mut events = BTreeSet::new();
    let mut results = BTreeSet::new();
    let mut statuses = BTreeSet::new();
    let mut codes = BTreeSet::new();
    let mut will_seen = false;
    let mut unknown_event_seen = false;
    for ex in &examples {
        let bytes = ex.body.as_bytes();
        match ex.payload.as_str() {
            "status" => {
                let s = ok(ex, decode_status(bytes));
                assert_same(ex, &s);
                will_seen |= serde_json::to_value(&s).unwrap()
                    == serde_json::from_str::<Value>(LAST_WILL_PAYLOAD).unwrap();
            }
            "health" => {
                let h = ok(ex, decode_health(bytes));
                assert_same(ex, &h);
                assert!(!h.cameras.is_empty());
            }
            "event" => {
                let e = ok(ex, decode_event(bytes));
                assert_same(ex, &e);
                if e.kind == EventKind::Unknown {
                    unknown_event_seen = true;
                    assert!(ex.lenient, "line {}", ex.line);
                } else {
                    events.insert(e.kind.name());
                }
            }
            "command" => {
                let value: Value = serde_json::from_str(&ex.body).unwrap();
                let issued: Timestamp = value["issued_at"].as_str().unwrap().parse().unwrap();
                let now = issued.saturating_add_ms(500);
                let env = decode_command(bytes, now, DEFAULT_COMMAND_MAX_AGE_MS, &cameras())
                    .unwrap_or_else(|r| panic!("docs/mqtt.md line {}: {r}", ex.line));
                assert_same(ex, &env);
                commands.insert(env.command.kind().name());
            }
            "ack" => {
                let ack = ok(ex, decode_ack(bytes));
                assert_same(ex, &ack);
                statuses.insert(format!("{:?}", ack.status));
                if let Some(reason) = &ack.reason {
                    codes.insert(format!("{:?}", reason.code));
                }
                if let Some(kind) = &ex.extra {
                    match CommandKind::from_name(kind) {
                        Some(CommandKind::RestartCamera) => {
                            check_result::<RestartCameraResult>(ex, &ack)
                        }
                        Some(CommandKind::Snapshot) => check_result::<SnapshotResult>(ex, &ack),
                        Some(CommandKind::SetHold) => check_result::<SetHoldResult>(ex, &ack),
                        Some(CommandKind::ClearHold) => check_result::<ClearHoldResult>(ex, &ack),
                        Some(CommandKind::Ping) => check_result::<PingResult>(ex, &ack),
                        Some(CommandKind::SetLive) => check_result::<SetLiveResult>(ex, &ack),
                        Some(CommandKind::Upload) => check_result::<UploadResult>(ex, &ack),
                        Some(CommandKind::CancelUpload) => {
                            check_result::<CancelUploadResult>(ex, &ack)
                        }
                        Some(CommandKind::SetUpload) => check_result::<SetUploadResult>(ex, &ack),
                        Some(CommandKind::SetView) => check_result::<SetViewResult>(ex, &ack),
                        Some(CommandKind::SetMasks) => check_result::<SetMasksResult>(ex, &ack),
                        None => panic!("line {}: unknown command kind {kind}", ex.line),
                    }
                    results.insert(kind.clone());
                }
            }
            other => panic!("docs/mqtt.md line {}: unknown payload {other:?}", ex.line),
        }
    }
    let all_commands: BTreeSet<&str> = CommandKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(commands, all_commands, "one example per command kind");
    let all_results: BTreeSet<String> = all_commands.iter().map(|k| k.to_string()).collect();
    assert_eq!(results, all_results, "one done ack per command kind");
    let all_events: BTreeSet<&str> = super::tests::all_event_kinds()
        .iter()
        .map(|k| k.name())
        .collect();
    assert_eq!(events, all_events, "one example per event kind");
    assert!(unknown_event_seen, "a forward-compatibility example");
    assert!(will_seen, "the last will");
    assert_eq!(
        statuses.len(),
        3,
        "accepted, done and rejected: {statuses:?}"
    );
    assert!(codes.len() >= 3, "{codes:?}");
}

#[test]
fn the_topic_table_matches_the_code() {
    let kinds = [
        ("status", TopicKind::Status),
        ("health", TopicKind::Health),
        ("events", TopicKind::Events),
        ("cmd", TopicKind::Command),
        ("ack", TopicKind::Ack),
        (
            "snapshot/<camera>",
            TopicKind::Snapshot(super::tests::cam("desk")),
        ),
    ];
    for (suffix, kind) in kinds {
        let prefix = format!("| `stationwatch/v1/<station>/{suffix}` |");
        let row = DOC
            .lines()
            .find(|l| l.starts_with(&prefix))
            .unwrap_or_else(|| panic!("no table row for {suffix}"));
        let cells: Vec<&str> = row.split('|').map(str::trim).collect();
        let spec = kind.spec();
        assert_eq!(cells[2], spec.direction.to_string(), "{row}");
        assert_eq!(cells[3], spec.qos.as_u8().to_string(), "{row}");
        assert_eq!(cells[4], if spec.retain { "yes" } else { "no" }, "{row}");
        assert!(
            kind.suffix() == suffix || matches!(kind, TopicKind::Snapshot(_)),
            "{suffix}"
        );
    }
    for filter in [
        filters::STATUS,
        filters::HEALTH,
        filters::EVENTS,
        filters::ACK,
        filters::SNAPSHOT,
    ] {
        assert!(DOC.contains(&format!("`{filter}`")), "{filter}");
        if filter != filters::STATUS {
            assert!(DOC.contains(&shared(SHARED_GROUP, filter)), "{filter}");
        }
    }
}

#[test]
fn the_docs_state_the_codes_limits_and_defaults() {
    let codes = [
        RejectCode::TooLarge,
        RejectCode::Malformed,
        RejectCode::UnsupportedVersion,
        RejectCode::UnknownCommand,
        RejectCode::Stale,
        RejectCode::Expired,
        RejectCode::FromTheFuture,
        RejectCode::UnknownCamera,
        RejectCode::InvalidWindow,
        RejectCode::Failed,
    ];
    for code in codes {
        let name = serde_json::to_value(code).unwrap();
        let name = name.as_str().unwrap();
        assert!(DOC.contains(&format!("`{name}`")), "{name}");
    }
    for text in [
        format!("{} KiB", MAX_COMMAND_BYTES / 1024),
        format!("{} KiB", MAX_JSON_BYTES / 1024),
        format!("{} MiB", MAX_SNAPSHOT_BYTES / (1024 * 1024)),
        format!("every {} s", DEFAULT_HEALTH_INTERVAL_S),
        format!("default {}", DEFAULT_HEALTH_INTERVAL_S),
        format!("default {} min", DEFAULT_COMMAND_MAX_AGE_MS / 60_000),
        format!("{} s after the agent's clock", FUTURE_TOLERANCE_MS / 1000),
        format!("last {} command ids", DEFAULT_COMMAND_LOG_CAPACITY),
        format!("`\"v\": {SCHEMA_VERSION}`"),
    ] {
        assert!(DOC.contains(&text), "docs/mqtt.md should say {text:?}");
    }
}
