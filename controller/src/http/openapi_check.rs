//! `docs/openapi.yaml` is the documented contract of the JSON API: for every typed response,
//! a representative value is serialised and its keys compared with the schema's `properties`,
//! recursively (through `$ref`, `allOf`, arrays and nullable fields). A field added to or
//! removed from a response struct without the document, or the other way round, fails here.
//!
//! The YAML is read by a small parser for the subset the document uses (block maps and lists,
//! flow maps and lists, quoted and plain scalars, `|` blocks).

use std::collections::BTreeSet;
use std::sync::Arc;

use serde::Serialize;
use serde_json::{json, Map, Value};
use stationwatch_protocol::live::{GatewayConfig, GatewayStation, PublicCamera, StreamStatus};
use stationwatch_protocol::manifest::Timestamp;
use stationwatch_protocol::mqtt::{CameraLive, Health, Status};
use stationwatch_protocol::{CameraId, StationId};

use super::admin::AuditLog;
use super::commands::Commands;
use super::error::ErrorBody;
use super::live::{LiveOut, PublicCameraOut, PublicOut};
use super::requests::{RequestList, Timeline};
use super::session::{LoggedIn, Me};
use super::stations::{
    Events, HealthHistory, OpenAlerts, SnapshotTime, StationAlerts, StationDetail, Summary,
};
use super::stream::StreamBatch;
use super::users::{Created, NewTokenOut, Tokens, Users};
use super::OPENAPI_YAML;
use crate::auth::users::UserInfo;
use crate::auth::Role;
use crate::commands::Sent;
use crate::config::RulesConfig;
use crate::fleet::{Fleet, ListQuery};
use crate::metrics::Metrics;
use crate::store::{AlertRow, AuditRow, CommandRow, EventRow, HealthPoint};

// ---- a parser for the YAML subset of the document

struct Line<'a> {
    indent: usize,
    text: &'a str,
}

fn lines(yaml: &str) -> Vec<Line<'_>> {
    yaml.lines()
        .map(|l| Line {
            indent: l.len() - l.trim_start().len(),
            text: l.trim(),
        })
        .collect()
}

fn skip_blank(ls: &[Line], mut i: usize) -> usize {
    while i < ls.len() && (ls[i].text.is_empty() || ls[i].text.starts_with('#')) {
        i += 1;
    }
    i
}

/// The block starting at `i` (its first line sets the indentation); returns the next line.
fn block(ls: &[Line], i: usize) -> (Value, usize) {
    let i = skip_blank(ls, i);
    let indent = ls[i].indent;
    if ls[i].text.starts_with("- ") || ls[i].text == "-" {
        let mut out = Vec::new();
        let mut i = i;
        while i < ls.len() && ls[i].indent == indent && ls[i].text.starts_with('-') {
            let rest = ls[i].text[1..].trim_start();
            if split_key(rest).is_some() {
                // `- key: value` starts a map whose keys sit two columns in.
                let (v, next) = map(ls, i, indent + 2, Some(rest));
                out.push(v);
                i = next;
            } else {
                out.push(flow(rest));
                i += 1;
            }
            i = skip_blank(ls, i);
        }
        return (Value::Array(out), i);
    }
    map(ls, i, indent, None)
}

fn map(ls: &[Line], mut i: usize, indent: usize, first: Option<&str>) -> (Value, usize) {
    let mut out = Map::new();
    let mut first = first;
    loop {
        let text = match first.take() {
            Some(t) => t,
            None => {
                i = skip_blank(ls, i);
                if i >= ls.len() || ls[i].indent != indent || ls[i].text.starts_with("- ") {
                    break;
                }
                ls[i].text
            }
        };
        let (key, rest) = split_key(text).unwrap_or_else(|| panic!("not a key: {text}"));
        i += 1;
        let value = match rest {
            "" => {
                let next = skip_blank(ls, i);
                if next < ls.len()
                    && (ls[next].indent > indent
                        || (ls[next].indent == indent && ls[next].text.starts_with("- ")))
                {
                    let (v, n) = block(ls, next);
                    i = n;
                    v
                } else {
                    Value::Null
                }
            }
            "|" | ">" | "|-" | ">-" => {
                let mut s = String::new();
                while i < ls.len() && (ls[i].text.is_empty() || ls[i].indent > indent) {
                    s.push_str(ls[i].text);
                    s.push('\n');
                    i += 1;
                }
                Value::String(s)
            }
            v => flow(v),
        };
        out.insert(key, value);
    }
    (Value::Object(out), i)
}

/// `key: rest` outside quotes and brackets.
fn split_key(text: &str) -> Option<(String, &str)> {
    let (key, rest) = if let Some(q) = text.strip_prefix('"') {
        let end = q.find('"')?;
        (q[..end].to_owned(), q[end + 1..].strip_prefix(':')?)
    } else {
        if text.starts_with(['{', '[']) {
            return None;
        }
        let at = text
            .char_indices()
            .find(|&(i, c)| c == ':' && text[i + 1..].chars().next().is_none_or(|n| n == ' '))?
            .0;
        (text[..at].trim().to_owned(), &text[at + 1..])
    };
    Some((key, rest.trim()))
}

fn flow(text: &str) -> Value {
    let mut p = Flow {
        s: text.as_bytes(),
        i: 0,
    };
    p.value(false)
}

struct Flow<'a> {
    s: &'a [u8],
    i: usize,
}

impl Flow<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i] == b' ' {
            self.i += 1;
        }
    }

    fn value(&mut self, nested: bool) -> Value {
        self.ws();
        match self.s.get(self.i) {
            Some(b'{') => {
                self.i += 1;
                let mut m = Map::new();
                loop {
                    self.ws();
                    if self.s[self.i] == b'}' {
                        self.i += 1;
                        return Value::Object(m);
                    }
                    let key = match self.value(true) {
                        Value::String(k) => k,
                        other => other.to_string(),
                    };
                    self.ws();
                    assert_eq!(self.s[self.i], b':', "flow map without ':'");
                    self.i += 1;
                    let v = self.value(true);
                    m.insert(key, v);
                    self.ws();
                    if self.s[self.i] == b',' {
                        self.i += 1;
                    }
                }
            }
            Some(b'[') => {
                self.i += 1;
                let mut out = Vec::new();
                loop {
                    self.ws();
                    if self.s[self.i] == b']' {
                        self.i += 1;
                        return Value::Array(out);
                    }
                    out.push(self.value(true));
                    self.ws();
                    if self.s[self.i] == b',' {
                        self.i += 1;
                    }
                }
            }
            Some(b'"') => {
                self.i += 1;
                let mut out = String::new();
                while self.s[self.i] != b'"' {
                    if self.s[self.i] == b'\\' {
                        self.i += 1;
                    }
                    out.push(self.s[self.i] as char);
                    self.i += 1;
                }
                self.i += 1;
                Value::String(out)
            }
            _ => {
                let start = self.i;
                while self.i < self.s.len() {
                    let c = self.s[self.i];
                    let ends_key =
                        c == b':' && self.s.get(self.i + 1).is_none_or(|n| *n == b' ') && nested;
                    if nested && matches!(c, b',' | b'}' | b']') || ends_key {
                        break;
                    }
                    self.i += 1;
                }
                let raw = std::str::from_utf8(&self.s[start..self.i]).unwrap().trim();
                match raw {
                    "true" => Value::Bool(true),
                    "false" => Value::Bool(false),
                    "null" | "~" => Value::Null,
                    _ => Value::String(raw.to_owned()),
                }
            }
        }
    }
}

fn document() -> Value {
    let ls = lines(OPENAPI_YAML);
    block(&ls, 0).0
}

// ---- the comparison

fn resolve<'a>(doc: &'a Value, schema: &'a Value) -> &'a Value {
    match schema.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            // A schema (`#/components/schemas/Masks`) or a part of one
            // (`#/components/schemas/Masks/properties/masks`).
            let pointer = r.strip_prefix('#').expect("local $ref");
            let target = doc.pointer(pointer);
            assert!(target.is_some(), "$ref {r} points nowhere");
            resolve(doc, target.unwrap())
        }
        None => match schema.get("allOf").and_then(Value::as_array) {
            Some(all) if all.len() == 1 => resolve(doc, &all[0]),
            _ => schema,
        },
    }
}

/// Differences between `value` and `schema` at `path`.
fn compare(doc: &Value, schema: &Value, value: &Value, path: &str, out: &mut Vec<String>) {
    let schema = resolve(doc, schema);
    match value {
        Value::Object(obj) => {
            let Some(props) = schema.get("properties").and_then(Value::as_object) else {
                // A map such as `regions` (additionalProperties): compare its values.
                if let Some(extra) = schema.get("additionalProperties").filter(|v| v.is_object()) {
                    for (k, v) in obj {
                        compare(doc, extra, v, &format!("{path}.{k}"), out);
                    }
                }
                return;
            };
            let keys: BTreeSet<&str> = obj.keys().map(String::as_str).collect();
            let documented: BTreeSet<&str> = props.keys().map(String::as_str).collect();
            let required: BTreeSet<&str> = schema
                .get("required")
                .and_then(Value::as_array)
                .map(|r| r.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            for k in keys.difference(&documented) {
                out.push(format!("{path}.{k}: serialised but not documented"));
            }
            // Optional properties may be absent (fields skipped when empty).
            for k in documented
                .difference(&keys)
                .filter(|k| required.contains(*k))
            {
                out.push(format!(
                    "{path}.{k}: required by the document, not serialised"
                ));
            }
            for (k, v) in obj {
                if let Some(s) = props.get(k) {
                    compare(doc, s, v, &format!("{path}.{k}"), out);
                }
            }
        }
        Value::Array(items) => {
            if let Some(s) = schema.get("items") {
                for (i, v) in items.iter().enumerate() {
                    compare(doc, s, v, &format!("{path}[{i}]"), out);
                }
            }
        }
        _ => {}
    }
}

/// The schema of a JSON response of `method path` with `status`.
fn response_schema<'a>(doc: &'a Value, method: &str, path: &str, status: &str) -> &'a Value {
    let resp = &doc["paths"][path][method]["responses"][status];
    let resp = match resp.get("$ref").and_then(Value::as_str) {
        Some(r) => &doc["components"]["responses"][r.rsplit('/').next().unwrap()],
        None => resp,
    };
    let schema = &resp["content"]["application/json"]["schema"];
    assert!(
        !schema.is_null(),
        "{method} {path} {status}: no application/json schema in docs/openapi.yaml"
    );
    schema
}

fn check(
    doc: &Value,
    method: &str,
    path: &str,
    status: &str,
    value: &impl Serialize,
) -> Vec<String> {
    let value = serde_json::to_value(value).unwrap();
    let mut out = Vec::new();
    compare(
        doc,
        response_schema(doc, method, path, status),
        &value,
        &format!("{} {path} {status}", method.to_uppercase()),
        &mut out,
    );
    out
}

// ---- representative values

fn station_id() -> StationId {
    StationId::new("KG-0042").unwrap()
}

fn health() -> Health {
    let mut h: Health = serde_json::from_value(json!({
        "v": 1,
        "at": "2026-03-15T08:00:00.000Z",
    }))
    .unwrap_or_else(|_| Health::new(Timestamp::from_unix_ms(1_780_000_000_000).unwrap()));
    h.agent.station_name = Some("School 12".into());
    h.agent.region = Some("North".into());
    h
}

fn fleet() -> Fleet {
    let f = Fleet::new(RulesConfig::default());
    f.apply_health(
        &station_id(),
        Arc::new(health()),
        1_780_000_000_000,
        1_780_000_000_000,
    );
    f.apply_status(
        &station_id(),
        Status::lost(),
        1_780_000_000_001,
        1_780_000_000_001,
    );
    f
}

fn alert() -> AlertRow {
    AlertRow {
        id: 1,
        station_id: station_id(),
        kind: "offline".into(),
        detail: "no message for 90 s".into(),
        opened_at: 1,
        closed_at: Some(2),
    }
}

#[test]
fn typed_responses_match_docs_openapi_yaml() {
    let doc = document();
    assert!(
        doc["paths"]["/api/me"]["get"].is_object(),
        "parser read no paths"
    );
    let fleet = fleet();
    let all = |_: &StationId| true;
    let station = fleet.get(&station_id()).unwrap();
    let summary = station.summary();
    let mut errors = Vec::new();
    let mut c = |method: &str, path: &str, status: &str, v: &dyn erased::Ser| {
        errors.extend(check(&doc, method, path, status, &erased::Wrap(v)));
    };
    c(
        "post",
        "/api/login",
        "200",
        &LoggedIn {
            username: "op".into(),
            role: "operator".into(),
        },
    );
    c(
        "post",
        "/api/login",
        "401",
        &ErrorBody {
            error: "wrong".into(),
        },
    );
    let request = crate::store::requests::RequestRow {
        id: "r0123456789abcdef0123456789abcdef".into(),
        station_id: station_id(),
        cameras: vec![CameraId::new("desk".to_owned()).unwrap()],
        from_ms: 1,
        to_ms: 2,
        reason: "complaint".into(),
        requested_by: "ngo".into(),
        requested_at: 1,
        status: "ready_with_gaps".into(),
        decided_by: Some("op".into()),
        decided_at: Some(1),
        decision: Some("ok".into()),
        command_id: Some("c1".into()),
        progress: Some(
            json!({"station_online": true, "job": null, "archived_segments": 1,
            "pending_segments": 0, "eta_s": null}),
        ),
        gaps: vec![crate::store::requests::Gap {
            camera: CameraId::new("desk".to_owned()).unwrap(),
            from_ms: 1,
            to_ms: 2,
            reason: "camera_lost".into(),
        }],
        history: vec![crate::store::requests::Transition {
            status: "submitted".into(),
            at: 1,
            by: "ngo".into(),
            note: "x".into(),
        }],
        ready_at: Some(2),
        deadline_at: Some(3),
        hold_until: Some(4),
        updated_at: 2,
    };
    c(
        "get",
        "/api/requests/{id}/timeline",
        "200",
        &Timeline {
            from_ms: 1,
            to_ms: 2,
            cameras: vec![crate::requests::media::CameraTimeline {
                camera: CameraId::new("desk".to_owned()).unwrap(),
                spans: vec![crate::requests::media::Span {
                    from_ms: 1,
                    to_ms: 2,
                    segments: 1,
                }],
                gaps: request.gaps.clone(),
            }],
        },
    );
    c("post", "/api/requests", "201", &request);
    c("get", "/api/requests/{id}", "200", &request);
    c("post", "/api/requests/{id}/decision", "200", &request);
    c(
        "get",
        "/api/requests",
        "200",
        &RequestList {
            requests: vec![request.clone()],
        },
    );
    c(
        "get",
        "/api/me",
        "200",
        &Me {
            username: "op".into(),
            role: Role::Operator,
            may_command: true,
        },
    );
    c(
        "get",
        "/api/summary",
        "200",
        &Summary {
            counts: fleet.counts(&all),
            regions: fleet.regions(&all),
            broker_connected: true,
            database_failing_since: Some(1),
            now: 1,
            uploads: fleet.upload_totals(&all),
        },
    );
    c(
        "get",
        "/api/stations",
        "200",
        &fleet.list(
            &ListQuery {
                limit: 10,
                ..Default::default()
            },
            &all,
        ),
    );
    c(
        "get",
        "/api/alerts",
        "200",
        &OpenAlerts {
            total: 1,
            alerts: vec![alert()],
        },
    );
    c(
        "get",
        "/api/stations/{id}",
        "200",
        &StationDetail {
            summary: summary.clone(),
            status: station.status.as_ref(),
            status_received_at: station.status_received_at,
            health: station.health.as_deref(),
            health_received_at: station.health_received_at,
            snapshots: vec![SnapshotTime {
                camera: CameraId::new("desk").unwrap(),
                received_at: 1,
            }],
            public_cameras: vec![CameraId::new("desk").unwrap()],
        },
    );
    c(
        "get",
        "/api/stations/{id}/health",
        "200",
        &HealthHistory {
            points: vec![HealthPoint {
                at: 1,
                figures: json!({ "cameras": 1 }),
            }],
        },
    );
    c(
        "get",
        "/api/stations/{id}/events",
        "200",
        &Events {
            events: vec![EventRow {
                station_id: station_id(),
                event_id: "e1".into(),
                at: 1,
                received_at: 2,
                kind: "camera_lost".into(),
                camera: Some(CameraId::new("desk").unwrap()),
                body: json!({}),
            }],
        },
    );
    c(
        "get",
        "/api/stations/{id}/alerts",
        "200",
        &StationAlerts {
            alerts: vec![alert()],
        },
    );
    c(
        "get",
        "/api/stations/{id}/commands",
        "200",
        &Commands {
            commands: vec![CommandRow {
                id: "c1".into(),
                station_id: station_id(),
                kind: "ping".into(),
                body: json!({ "kind": "ping" }),
                issued_by: "op".into(),
                issued_at: 1,
                status: "acked".into(),
                expires_at: Some(300_001),
                ack_at: Some(2),
                ack: Some(json!({})),
            }],
        },
    );
    c(
        "post",
        "/api/stations/{id}/commands",
        "202",
        &Sent {
            id: "c1".into(),
            status: "sent",
        },
    );
    c(
        "get",
        "/api/metrics",
        "200",
        &Metrics::default().report(3, 1),
    );
    c(
        "get",
        "/api/audit",
        "200",
        &AuditLog {
            entries: vec![AuditRow {
                id: 1,
                at: 1,
                username: "admin".into(),
                action: "login".into(),
                target: String::new(),
                detail: String::new(),
                ok: true,
            }],
        },
    );
    c(
        "get",
        "/api/users",
        "200",
        &Users {
            users: vec![UserInfo {
                username: "obs".into(),
                role: "observer".into(),
                grants: vec![station_id()],
            }],
        },
    );
    c(
        "post",
        "/api/users",
        "201",
        &Created {
            username: "obs".into(),
            role: Role::Observer,
        },
    );
    c(
        "post",
        "/api/tokens",
        "201",
        &NewTokenOut {
            token: "swt_x".into(),
            name: "script".into(),
            id: "0123456789abcdef".into(),
            expires_at: 1,
        },
    );
    c(
        "get",
        "/api/tokens",
        "200",
        &Tokens {
            tokens: vec![crate::store::TokenRow {
                id: "0123456789abcdef".into(),
                name: "script".into(),
                username: "op".into(),
                created_at: 1,
                expires_at: Some(2),
                last_used_at: None,
            }],
        },
    );
    {
        use stationwatch_protocol::manifest::{Hash256, StationKey};
        use stationwatch_protocol::trust::{
            KeyRegistry, RegisteredKey, Signed, StationKeys, TsaToken, Witness, WitnessedHead,
        };
        let key = StationKey::from_seed(&[3; 32]);
        let t = Timestamp::from_unix_ms(1_780_000_000_000).unwrap();
        let rk = RegisteredKey {
            key: key.public(),
            registered_at: t,
            retired_at: Some(t),
        };
        c(
            "put",
            "/api/stations/{id}/key",
            "201",
            &super::keys::KeyRegistered {
                station: station_id(),
                public_key: key.public(),
                fingerprint: key.public().fingerprint().to_string(),
                outcome: "rotated",
                retired: Some("x".into()),
            },
        );
        c(
            "get",
            "/api/controller-key",
            "200",
            &super::keys::ControllerKey {
                public_key: key.public(),
                fingerprint: key.public().fingerprint().to_string(),
            },
        );
        let reg = KeyRegistry::new(
            t,
            vec![StationKeys {
                station: station_id(),
                keys: vec![rk.clone()],
            }],
        );
        c("get", "/api/keys", "200", &Signed::sign(reg, &key).unwrap());
        let head = WitnessedHead {
            camera: CameraId::new("desk").unwrap(),
            next_seq: 3,
            prev: Hash256::of(b"x"),
            agent_at: t,
            received_at: t,
            tsa: Some(TsaToken {
                tsa: "http://tsa".into(),
                time: t,
                imprint: Hash256::of(b"y"),
                token: "MA==".into(),
            }),
        };
        let w = Witness::new(t, station_id(), Some(t), None, vec![rk], vec![head]);
        c(
            "get",
            "/api/stations/{id}/witness",
            "200",
            &Signed::sign(w, &key).unwrap(),
        );
    }
    {
        use stationwatch_protocol::archive::{
            ArchiveErrorBody, ManifestRange, SegmentPhase, SegmentState,
        };
        use stationwatch_protocol::manifest::Hash256;

        use super::archive::{ArchiveSummary, CameraArchive, StationArchive};
        use crate::store::archive::{EntryRow, RefusalRow, StateTotals};
        let range = ManifestRange {
            first_seq: 0,
            first_prev: Hash256::ZERO,
            last_seq: 9,
            last_hash: Hash256::of(b"x"),
        };
        let seg = SegmentState {
            seq: 3,
            phase: SegmentPhase::Refused,
            received: 0,
            size: 10,
            reason: Some("sha".into()),
        };
        let path = "/archive/v1/{station}/{camera}";
        c("get", &format!("{path}/manifest"), "200", &range);
        c("post", &format!("{path}/manifest"), "200", &range);
        c("get", &format!("{path}/segments/{{seq}}"), "200", &seg);
        c(
            "put",
            &format!("{path}/segments/{{seq}}"),
            "422",
            &ArchiveErrorBody {
                error: "refused".into(),
                state: Some(seg.clone()),
            },
        );
        c(
            "get",
            "/api/stations/{id}/archive",
            "200",
            &StationArchive {
                station: station_id(),
                cameras: vec![CameraArchive {
                    camera: CameraId::new("desk").unwrap(),
                    manifest: Some(range),
                    totals: StateTotals::default(),
                }],
                entries: vec![EntryRow {
                    camera: CameraId::new("desk").unwrap(),
                    seq: 3,
                    line: String::new(),
                    hash: "h".into(),
                    kind: "segment".into(),
                    start_ms: Some(1),
                    end_ms: Some(2),
                    file: Some("a.ts".into()),
                    size: Some(10),
                    sha256: Some("s".into()),
                    state: Some("archived".into()),
                    reason: None,
                    archived_at: Some(3),
                    received_at: 2,
                }],
                refusals: vec![RefusalRow {
                    camera: CameraId::new("desk").unwrap(),
                    seq: Some(3),
                    what: "segment".into(),
                    reason: "sha".into(),
                    object_key: Some("quarantine/x".into()),
                    at: 1,
                }],
            },
        );
        c(
            "get",
            "/api/archive/summary",
            "200",
            &ArchiveSummary {
                stations: 1,
                totals: StateTotals::default(),
                uploads: fleet.upload_totals(&all),
            },
        );
    }
    let review = crate::store::views::ReviewRow {
        id: 7,
        camera: "desk".into(),
        decision: "refused".into(),
        reason: "voting booth visible".into(),
        decided_by: "op".into(),
        decided_at: 1,
        has_snapshot: true,
        snapshot_at: Some(1),
        command_id: Some("c0123".into()),
    };
    c(
        "post",
        "/api/stations/{id}/cameras/{camera}/view",
        "200",
        &review,
    );
    c(
        "get",
        "/api/stations/{id}/cameras/{camera}/view",
        "200",
        &super::views::CameraView {
            camera: "desk".into(),
            current: Some(review.clone()),
            history: vec![review],
            station: None,
            in_effect: false,
            masks: super::views::MasksSync {
                stored: 1,
                stored_digest: "3f1c9a0b5d7e2468".into(),
                station_digest: None,
                in_sync: false,
            },
        },
    );
    // Live viewing (`http/live.rs`).
    let desk = CameraId::new("desk").unwrap();
    let at = chrono::DateTime::from_timestamp_millis(1_780_000_000_000).unwrap();
    c(
        "get",
        "/api/live/gateway",
        "200",
        &GatewayConfig {
            stations: vec![GatewayStation {
                station: station_id(),
                passphrase: "0123456789abcdef0123456789abcdef".into(),
                region: Some("North".into()),
                public: vec![PublicCamera {
                    camera: desk.clone(),
                    masks: vec![vec![[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]],
                }],
            }],
        },
    );
    c(
        "put",
        "/api/stations/{id}/cameras/{camera}/public",
        "200",
        &PublicOut {
            station: station_id(),
            camera: desk.clone(),
            public: true,
        },
    );
    c(
        "get",
        "/api/stations/{id}/cameras/{camera}/live",
        "200",
        &LiveOut {
            gateway: Some(StreamStatus {
                station: station_id(),
                camera: desk.clone(),
                publishing: true,
                since: Some(at),
                last_segment_at: Some(at),
                kbps: 2000,
                width: 1280,
                height: 720,
                segments: 6,
                target_duration_s: 2,
                gateway: "north-1".into(),
                updated_at: at,
            }),
            station: Some(CameraLive {
                uplink_bps: Some(3_000_000),
                send_bps: Some(2_100_000),
                rtt_ms: Some(40.0),
                loss: Some(0.0),
                reason: Some("link carries 3 Mbit/s".into()),
                ..CameraLive::default()
            }),
            playable: true,
            delay_ms: Some(3500),
            public: false,
        },
    );
    c(
        "get",
        "/api/public/cameras",
        "200",
        &vec![PublicCameraOut {
            station: station_id(),
            camera: desk,
            name: Some("School 12".into()),
            region: Some("North".into()),
            playlist: "/public/live/KG-0042/desk/index.m3u8".into(),
        }],
    );
    // The `stations` event of /api/stream is documented as the StreamBatch schema.
    let batch = serde_json::to_value(StreamBatch {
        counts: fleet.counts(&all),
        stations: vec![&summary],
    })
    .unwrap();
    compare(
        &doc,
        &json!({ "$ref": "#/components/schemas/StreamBatch" }),
        &batch,
        "StreamBatch",
        &mut errors,
    );
    assert!(
        errors.is_empty(),
        "docs/openapi.yaml and the response structs differ:\n{}",
        errors.join("\n")
    );
}

#[test]
fn the_checker_notices_a_difference() {
    let doc = document();
    let extra = json!({ "username": "op", "role": "operator", "may_command": true, "extra": 1 });
    let missing = json!({ "username": "op", "role": "operator" });
    assert_eq!(check(&doc, "get", "/api/me", "200", &extra).len(), 1);
    assert_eq!(check(&doc, "get", "/api/me", "200", &missing).len(), 1);
    // Nested through an array and a $ref: a station summary with a field too many.
    let mut page = serde_json::to_value(fleet().list(
        &ListQuery {
            limit: 10,
            ..Default::default()
        },
        &|_: &StationId| true,
    ))
    .unwrap();
    assert!(check(&doc, "get", "/api/stations", "200", &page).is_empty());
    page["stations"][0]["reasons"][0]["extra"] = json!(1);
    let errors = check(&doc, "get", "/api/stations", "200", &page);
    assert_eq!(errors.len(), 1, "{errors:?}");
    assert!(
        errors[0].contains("stations[0].reasons[0].extra"),
        "{errors:?}"
    );
}

/// Lets the test list values of different types in one closure.
mod erased {
    pub trait Ser {
        fn json(&self) -> serde_json::Value;
    }
    impl<T: serde::Serialize> Ser for T {
        fn json(&self) -> serde_json::Value {
            serde_json::to_value(self).unwrap()
        }
    }
    pub struct Wrap<'a>(pub &'a dyn Ser);
    impl serde::Serialize for Wrap<'_> {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            self.0.json().serialize(s)
        }
    }
}
