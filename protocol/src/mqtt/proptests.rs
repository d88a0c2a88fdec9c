//! Property tests of the command decoder: thousands of random and mutated payloads, as an agent
//! may receive them from outside. For every one, `decode_command` must not panic and must either
//! accept a payload that really is a valid command (checked here independently of the decoder)
//! or reject it with an answer (a `rejected` ack naming the id exactly when the payload reveals
//! a valid one), and `CommandLog::handle` must agree with it and answer a repeat the same way.

use proptest::prelude::*;
use proptest::sample::{select, Index};
use proptest::test_runner::Config;
use serde_json::{json, Map, Value};

use super::tests::{cam, cameras, mid, t};
use super::*;
use crate::manifest::Timestamp;

const MAX_AGE: i64 = DEFAULT_COMMAND_MAX_AGE_MS;

fn now() -> Timestamp {
    t(0)
}

fn config(cases: u32) -> Config {
    Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    }
}

// ---------------------------------------------------------------------------------------------
// The properties

/// Checks everything the spec promises about one payload and returns the decoder's verdict.
fn check(payload: &[u8]) -> Result<CommandEnvelope, Rejection> {
    let verdict = decode_command(payload, now(), MAX_AGE, &cameras());
    match &verdict {
        Ok(env) => check_valid(payload, env),
        Err(rejection) => check_rejection(payload, rejection),
    }
    check_log(payload, &verdict);
    verdict
}

/// An accepted payload really is a valid command: checked without the decoder's own code.
fn check_valid(payload: &[u8], env: &CommandEnvelope) {
    assert!(payload.len() <= MAX_COMMAND_BYTES);
    assert_eq!(env.v, 1);
    let age = now().unix_ms() - env.issued_at.unix_ms();
    assert!((-FUTURE_TOLERANCE_MS..=MAX_AGE).contains(&age), "age {age}");
    if let Some(expires_at) = env.expires_at {
        assert!(expires_at >= env.issued_at && expires_at >= now());
    }
    let cams = cameras();
    match &env.command {
        Command::RestartCamera { camera }
        | Command::Snapshot { camera }
        | Command::SetLive { camera, .. } => assert!(cams.contains(camera)),
        Command::SetView {
            camera,
            approve,
            refused,
            ..
        } => {
            assert!(cams.contains(camera));
            if let Some(r) = refused {
                assert!(!approve && !r.trim().is_empty());
            }
        }
        Command::SetMasks { camera, masks } => {
            assert!(cams.contains(camera));
            assert!(masks.len() <= crate::masks::MAX_MASKS);
            for m in masks {
                assert!((3..=crate::masks::MAX_CORNERS).contains(&m.len()));
                assert!(m.iter().flatten().all(|c| (0.0..=1.0).contains(c)));
            }
        }
        Command::SetHold {
            from,
            to,
            camera,
            reason,
            ..
        } => {
            assert!(from < to);
            assert!(camera.iter().all(|c| cams.contains(c)));
            assert!(!reason.trim().is_empty());
        }
        Command::Upload {
            cameras: cams_asked,
            from,
            to,
            reason,
            ..
        } => {
            assert!(from < to);
            assert!(to.unix_ms() - from.unix_ms() <= super::MAX_UPLOAD_WINDOW_MS);
            assert!(cams_asked.iter().all(|c| cams.contains(c)));
            assert!(!reason.trim().is_empty());
        }
        Command::SetUpload { camera, .. } => assert!(camera.iter().all(|c| cams.contains(c))),
        Command::ClearHold { .. } | Command::Ping | Command::CancelUpload { .. } => {}
    }
    // The payload says what the envelope says.
    let value: Value = serde_json::from_slice(payload).expect("accepted payload is JSON");
    assert_eq!(value["v"], json!(1));
    assert_eq!(value["id"], json!(env.id.as_str()));
    assert_eq!(value["issued_at"], json!(env.issued_at.to_string()));
    assert_eq!(value["command"]["kind"], json!(env.command.kind().name()));
    assert_eq!(peek_command_id(payload).as_ref(), Some(&env.id));
    // And what the controller would send for it is accepted as the same command.
    let again = env.to_json().unwrap();
    assert_eq!(
        decode_command(&again, now(), MAX_AGE, &cameras()).as_ref(),
        Ok(env)
    );
}

/// A rejection names the id exactly when the payload reveals a valid one, and its ack is a
/// well-formed, bounded `rejected` ack.
fn check_rejection(payload: &[u8], rejection: &Rejection) {
    assert_eq!(rejection.id, peek_command_id(payload));
    let ack = rejection.ack(now());
    assert_eq!(ack.status, AckStatus::Rejected);
    assert_eq!(ack.id, rejection.id);
    let reason = ack.reason.as_ref().expect("a rejected ack has a reason");
    assert_eq!(reason.code, rejection.reason.code());
    assert_ne!(reason.code, RejectCode::Unknown);
    assert!(!reason.message.is_empty());
    assert!(reason.message.chars().count() <= 400, "{}", reason.message);
    assert_eq!(decode_ack(&ack.to_json().unwrap()).as_ref(), Ok(&ack));
}

/// The command log executes exactly what the decoder accepts, and answers a repeat of a
/// payload with an id with the same ack.
fn check_log(payload: &[u8], verdict: &Result<CommandEnvelope, Rejection>) {
    let mut log = CommandLog::new(8);
    let first = log.handle(payload, now(), MAX_AGE, &cameras());
    let first_ack = match (&first, verdict) {
        (Handling::Execute { command, ack }, Ok(env)) => {
            assert_eq!(command, env);
            assert_eq!(ack, &Ack::accepted(env.id.clone(), now()));
            ack.clone()
        }
        (Handling::Reply { ack, repeat: false }, Err(rejection)) => {
            assert_eq!(ack, &rejection.ack(now()));
            ack.clone()
        }
        other => panic!("log and decoder disagree: {other:?}"),
    };
    let second = log.handle(payload, now(), MAX_AGE, &cameras());
    let repeat = first_ack.id.is_some();
    assert_eq!(
        second,
        Handling::Reply {
            ack: first_ack,
            repeat
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Generators

const KEYS: &[&str] = &[
    "v",
    "id",
    "issued_at",
    "expires_at",
    "command",
    "kind",
    "camera",
    "hold",
    "from",
    "to",
    "reason",
    "mode",
];

const KINDS: &[&str] = &[
    "set_live",
    "restart_camera",
    "snapshot",
    "set_hold",
    "clear_hold",
    "ping",
    "reboot",
    "",
    "PING",
];

fn ts_text(offset_ms: i64) -> String {
    now().saturating_add_ms(offset_ms).to_string()
}

/// Strings that mean something to the decoder, and some that nearly do.
fn interesting_string() -> impl Strategy<Value = String> {
    prop_oneof![
        select(KINDS).prop_map(String::from),
        select(&["desk", "boxes", "hall", "a/b", "", " ", "-x"][..]).prop_map(String::from),
        (-2 * MAX_AGE..2 * FUTURE_TOLERANCE_MS).prop_map(ts_text),
        Just("2026-11-21T09:15:00Z".to_string()),
        Just("2026-13-40T99:99:99.999Z".to_string()),
        (any::<u64>(), 1usize..=70).prop_map(|(seed, len)| noise(seed, len, ID_CHARS)),
        (any::<u64>(), 0usize..=24).prop_map(|(seed, len)| noise(seed, len, ODD_CHARS)),
    ]
}

const ID_CHARS: &[char] = &[
    'a', 'b', 'z', 'A', 'Q', 'Z', '0', '5', '9', '-', '_', 'k', 'x', '7', 'M', 'e',
];
const ODD_CHARS: &[char] = &[
    'a', ' ', '"', '\\', '/', '+', '#', '\0', '\n', '\u{7f}', 'é', 'Ж', '№', '😀', '\u{fffd}', '{',
];

/// `len` characters of `alphabet`, picked by a xorshift generator seeded with `seed` (cheaper
/// than proptest's per-character strategies in a debug build; shrinking still shortens).
fn noise(seed: u64, len: usize, alphabet: &[char]) -> String {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            alphabet[(x % alphabet.len() as u64) as usize]
        })
        .collect()
}

/// `len` bytes from a xorshift generator seeded with `seed`.
fn noise_bytes(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (0u64..4).prop_map(Value::from),
        (-1e9f64..1e9).prop_map(Value::from),
        interesting_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec((key(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => select(KEYS).prop_map(String::from),
        1 => (any::<u64>(), 1usize..=8).prop_map(|(seed, len)| noise(seed, len, &['a', 'q', '_', 'z'])),
    ]
}

/// Sometimes the field, sometimes not.
fn maybe(s: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Option<Value>> {
    prop::option::weighted(0.95, s).boxed()
}

/// A plausible value for each field, right most of the time, wrong some of the time.
fn field(right: impl Strategy<Value = Value> + 'static) -> BoxedStrategy<Value> {
    prop_oneof![9 => right, 1 => wrong()].boxed()
}

/// A JSON value of any type, small.
fn wrong() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-1e3f64..1e3).prop_map(Value::from),
        interesting_string().prop_map(Value::String),
        Just(json!([])),
        Just(json!({})),
        Just(json!([1, "desk"])),
        Just(json!({"kind": "ping"})),
    ]
    .boxed()
}

fn ts_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        8 => (-2 * MAX_AGE..2 * FUTURE_TOLERANCE_MS).prop_map(|ms| json!(ts_text(ms))),
        1 => (-10 * 365 * 86_400_000i64..10 * 365 * 86_400_000).prop_map(|ms| json!(ts_text(ms))),
    ]
}

fn id_value() -> impl Strategy<Value = Value> {
    id_text().prop_map(Value::String)
}

/// A valid command, event or hold id.
fn id_text() -> impl Strategy<Value = String> + Clone {
    (any::<u64>(), 1usize..=64).prop_map(|(seed, len)| noise(seed, len, ID_CHARS))
}

fn camera_value() -> impl Strategy<Value = Value> {
    select(&["desk", "boxes", "hall"][..]).prop_map(|c| json!(c))
}

fn command_value() -> impl Strategy<Value = Value> {
    (
        maybe(field(select(KINDS).prop_map(|k| json!(k)))),
        maybe(field(camera_value())),
        maybe(field(id_value())),
        maybe(field(ts_value())),
        maybe(field(ts_value())),
        maybe(field(prop_oneof![
            4 => Just(json!("complaint")),
            1 => select(&[" ", ""][..]).prop_map(|r| json!(r)),
        ])),
        prop::option::weighted(0.2, wrong()),
        maybe(field(
            select(&["off", "on", "auto", "config", "full", ""][..]).prop_map(|m| json!(m)),
        )),
    )
        .prop_map(|(kind, camera, hold, from, to, reason, extra, mode)| {
            object_of([
                ("kind", kind),
                ("camera", camera),
                ("hold", hold),
                ("from", from),
                ("to", to),
                ("reason", reason),
                ("x_extra", extra),
                ("mode", mode),
            ])
        })
}

/// A JSON object of the fields that are present, in the given order.
fn object_of<const N: usize>(fields: [(&str, Option<Value>); N]) -> Value {
    let mut m = Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert(k.to_string(), v);
        }
    }
    Value::Object(m)
}

/// Objects shaped like an envelope, each field right or wrong, present or not.
fn shaped_envelope() -> impl Strategy<Value = Value> {
    (
        maybe(field(prop_oneof![
            3 => Just(json!(1)),
            1 => (0u64..3).prop_map(Value::from),
        ])),
        maybe(field(id_value())),
        maybe(field(ts_value())),
        prop::option::weighted(0.3, field(ts_value())),
        maybe(field(command_value())),
        prop::option::weighted(0.2, wrong()),
    )
        .prop_map(|(v, id, issued_at, expires_at, command, extra)| {
            object_of([
                ("v", v),
                ("id", id),
                ("issued_at", issued_at),
                ("expires_at", expires_at),
                ("command", command),
                ("x_extra", extra),
            ])
        })
}

/// Valid commands as a controller sends them.
fn valid_envelope() -> impl Strategy<Value = CommandEnvelope> {
    let camera = select(vec![cam("desk"), cam("boxes")]);
    let hold = id_text().prop_map(|h| mid(&h));
    let window = (-MAX_AGE * 100..MAX_AGE * 100, 1i64..86_400_000)
        .prop_map(|(start, len)| (t(start), t(start + len)));
    let command = prop_oneof![
        camera
            .clone()
            .prop_map(|camera| Command::RestartCamera { camera }),
        camera
            .clone()
            .prop_map(|camera| Command::Snapshot { camera }),
        (
            hold.clone(),
            window,
            prop::option::of(camera.clone()),
            prop_oneof![
                Just("Complaint 2026/0147".to_string()),
                (any::<u64>(), 0usize..40)
                    .prop_map(|(seed, len)| format!("r{}", noise(seed, len, ODD_CHARS))),
            ]
        )
            .prop_map(|(hold, (from, to), camera, reason)| Command::SetHold {
                hold,
                from,
                to,
                camera,
                reason,
            }),
        hold.prop_map(|hold| Command::ClearHold { hold }),
        Just(Command::Ping),
        (
            camera.clone(),
            select(vec![
                SetLiveSetting::Off,
                SetLiveSetting::On,
                SetLiveSetting::Auto,
                SetLiveSetting::Config
            ])
        )
            .prop_map(|(camera, mode)| Command::SetLive { camera, mode }),
        (camera.clone(), any::<bool>()).prop_map(|(camera, approve)| Command::SetView {
            camera,
            approve,
            by: "operator".into(),
            refused: None,
        }),
        camera.clone().prop_map(|camera| Command::SetView {
            camera,
            approve: false,
            by: "operator".into(),
            refused: Some("voting booth visible".into()),
        }),
        (
            camera.clone(),
            prop::collection::vec(
                prop::collection::vec((0u16..=10_000, 0u16..=10_000), 3..8),
                0..4
            )
        )
            .prop_map(|(camera, masks)| Command::SetMasks {
                camera,
                masks: masks
                    .into_iter()
                    .map(|m| m
                        .into_iter()
                        .map(|(x, y)| [f64::from(x) / 10_000.0, f64::from(y) / 10_000.0])
                        .collect())
                    .collect(),
            }),
    ];
    (
        id_text(),
        -MAX_AGE..=FUTURE_TOLERANCE_MS,
        prop::option::of(0i64..3_600_000),
        command,
    )
        .prop_map(|(id, issued, expires, command)| {
            let mut env = CommandEnvelope::new(mid(&id), now().saturating_add_ms(issued), command);
            // Valid expiry: not before issue and not passed.
            env.expires_at = expires.map(|e| env.issued_at.max(now()).saturating_add_ms(e));
            env
        })
}

#[derive(Debug, Clone)]
enum ByteMutation {
    Flip(Index, u8),
    Set(Index, u8),
    Insert(Index, u8),
    Delete(Index, Index),
    Truncate(Index),
    Duplicate(Index, Index),
}

fn byte_mutation() -> impl Strategy<Value = ByteMutation> {
    prop_oneof![
        (any::<Index>(), 0u8..8).prop_map(|(i, b)| ByteMutation::Flip(i, b)),
        (any::<Index>(), any::<u8>()).prop_map(|(i, b)| ByteMutation::Set(i, b)),
        (
            any::<Index>(),
            select(&b"{}[]\",:\\0123456789.-eE truefalsn\x00\xff"[..])
        )
            .prop_map(|(i, b)| ByteMutation::Insert(i, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| ByteMutation::Delete(i, n)),
        any::<Index>().prop_map(ByteMutation::Truncate),
        (any::<Index>(), any::<Index>()).prop_map(|(i, n)| ByteMutation::Duplicate(i, n)),
    ]
}

fn apply_bytes(bytes: &mut Vec<u8>, m: &ByteMutation) {
    if bytes.is_empty() {
        return;
    }
    let len = bytes.len();
    match m {
        ByteMutation::Flip(i, bit) => bytes[i.index(len)] ^= 1 << bit,
        ByteMutation::Set(i, b) => bytes[i.index(len)] = *b,
        ByteMutation::Insert(i, b) => bytes.insert(i.index(len + 1), *b),
        ByteMutation::Delete(i, n) => {
            let at = i.index(len);
            let n = n.index(8.min(len - at)) + 1;
            bytes.drain(at..at + n);
        }
        ByteMutation::Truncate(i) => bytes.truncate(i.index(len)),
        ByteMutation::Duplicate(i, n) => {
            let at = i.index(len);
            let n = n.index(16.min(len - at)) + 1;
            let slice = bytes[at..at + n].to_vec();
            bytes.splice(at..at, slice);
        }
    }
}

/// Paths of every field of every object in `v`.
fn field_paths(v: &Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
    if let Value::Object(m) = v {
        for (k, child) in m {
            prefix.push(k.clone());
            out.push(prefix.clone());
            field_paths(child, prefix, out);
            prefix.pop();
        }
    }
}

/// The object holding the last field of `path`.
fn parent_mut<'a>(v: &'a mut Value, path: &[String]) -> &'a mut Map<String, Value> {
    let mut cur = v;
    for p in &path[..path.len() - 1] {
        cur = cur.get_mut(p).expect("path exists");
    }
    cur.as_object_mut().expect("parent is an object")
}

/// JSON text of `v` with the field at `path` written twice.
fn with_duplicate(v: &Value, path: &[String]) -> String {
    match v {
        Value::Object(m) => {
            let mut parts = Vec::new();
            for (k, child) in m {
                let here = path.first() == Some(k);
                let rest = if here { &path[1..] } else { &[][..] };
                let text = format!("{}:{}", json!(k), with_duplicate(child, rest));
                if here && rest.is_empty() {
                    parts.push(text.clone());
                }
                parts.push(text);
            }
            format!("{{{}}}", parts.join(","))
        }
        other => other.to_string(),
    }
}

/// Fields whose absence leaves a valid command valid: the expiry, and a hold's camera.
fn optional(env: &CommandEnvelope, path: &[String]) -> bool {
    match path.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["expires_at"] => true,
        ["command", "camera"] => env.command.kind() == CommandKind::SetHold,
        ["command", "by"] | ["command", "refused"] => env.command.kind() == CommandKind::SetView,
        _ => false,
    }
}

// ---------------------------------------------------------------------------------------------
// The tests

proptest! {
    #![proptest_config(config(2_000))]

    #[test]
    fn random_bytes(seed in any::<u64>(), len in 0usize..400) {
        prop_assert!(check(&noise_bytes(seed, len)).is_err());
    }

    #[test]
    fn random_json_bytes_with_json_characters(
        bytes in prop::collection::vec(select(&b"{}[]\":,0123456789.-+eE \\nultrfasidvk_"[..]), 0..200)
    ) {
        let _ = check(&bytes);
    }
}

proptest! {
    #![proptest_config(config(1_500))]

    #[test]
    fn random_json_values(value in arb_json()) {
        let _ = check(&serde_json::to_vec(&value).unwrap());
    }
}

proptest! {
    #![proptest_config(config(2_500))]

    #[test]
    fn envelope_shaped_objects(value in shaped_envelope()) {
        let _ = check(&serde_json::to_vec(&value).unwrap());
    }
}

proptest! {
    #![proptest_config(config(3_000))]

    #[test]
    fn byte_mutations_of_valid_commands(
        env in valid_envelope(),
        mutations in prop::collection::vec(byte_mutation(), 1..4),
    ) {
        let original = env.to_json().unwrap();
        prop_assert_eq!(check(&original), Ok(env.clone()));
        let mut bytes = original.clone();
        for m in &mutations {
            apply_bytes(&mut bytes, m);
        }
        let verdict = check(&bytes);
        if bytes == original {
            prop_assert_eq!(verdict, Ok(env));
        }
    }
}

proptest! {
    #![proptest_config(config(1_000))]

    #[test]
    fn truncated_commands_are_malformed_without_id(env in valid_envelope(), cut in any::<Index>()) {
        let bytes = env.to_json().unwrap();
        let prefix = &bytes[..cut.index(bytes.len())];
        let r = check(prefix).unwrap_err();
        prop_assert_eq!(r.id, None);
        prop_assert_eq!(r.reason.code(), RejectCode::Malformed);
    }

    #[test]
    fn deleted_fields(env in valid_envelope(), pick in any::<Index>()) {
        let value = serde_json::to_value(&env).unwrap();
        let mut paths = Vec::new();
        field_paths(&value, &mut Vec::new(), &mut paths);
        let path = &paths[pick.index(paths.len())];
        let mut mutated = value.clone();
        parent_mut(&mut mutated, path).remove(&path[path.len() - 1]);
        let verdict = check(&serde_json::to_vec(&mutated).unwrap());
        if optional(&env, path) {
            prop_assert!(verdict.is_ok(), "{:?}: {:?}", path, verdict);
        } else {
            let r = verdict.unwrap_err();
            let expected_id = if path[..] == ["id".to_string()] { None } else { Some(env.id.clone()) };
            prop_assert_eq!(r.id, expected_id);
        }
    }

    #[test]
    fn duplicated_fields(env in valid_envelope(), pick in any::<Index>()) {
        let value = serde_json::to_value(&env).unwrap();
        let mut paths = Vec::new();
        field_paths(&value, &mut Vec::new(), &mut paths);
        let path = &paths[pick.index(paths.len())];
        let text = with_duplicate(&value, path);
        let r = check(text.as_bytes()).unwrap_err();
        prop_assert_eq!(r.id, Some(env.id.clone()));
        prop_assert_eq!(r.reason.code(), RejectCode::Malformed, "{}", text);
    }

    #[test]
    fn type_swaps(
        env in valid_envelope(),
        pick in any::<Index>(),
        wrong in select(vec![json!(true), json!([]), json!({}), json!(1.5), json!([1, "x"])]),
    ) {
        let value = serde_json::to_value(&env).unwrap();
        let mut paths = Vec::new();
        field_paths(&value, &mut Vec::new(), &mut paths);
        let path = &paths[pick.index(paths.len())];
        let mut mutated = value.clone();
        // A boolean swapped for a boolean is no type swap (`set_view`'s `approve`), nor is a
        // list swapped for the empty list (`upload`'s `cameras`, `set_masks`' `masks`).
        let same_type = parent_mut(&mut mutated, path)
            .get(&path[path.len() - 1])
            .is_some_and(|v| {
                (v.is_boolean() && wrong.is_boolean()) || (v.is_array() && wrong == json!([]))
            });
        prop_assume!(!same_type);
        parent_mut(&mut mutated, path).insert(path[path.len() - 1].clone(), wrong);
        let r = check(&serde_json::to_vec(&mutated).unwrap()).unwrap_err();
        let expected_id = if path[..] == ["id".to_string()] { None } else { Some(env.id.clone()) };
        prop_assert_eq!(r.id, expected_id);
    }

    #[test]
    fn unknown_fields_are_ignored(
        env in valid_envelope(),
        pick in any::<Index>(),
        name in (any::<u64>(), 1usize..=8).prop_map(|(seed, len)| format!("x_{}", noise(seed, len, ID_CHARS))),
        extra in arb_json(),
    ) {
        let mut value = serde_json::to_value(&env).unwrap();
        // Objects that may grow: the envelope and the command.
        let target: &mut Map<String, Value> = if pick.index(2) == 0 {
            value.as_object_mut().unwrap()
        } else {
            value["command"].as_object_mut().unwrap()
        };
        target.insert(name, extra);
        prop_assert_eq!(check(&serde_json::to_vec(&value).unwrap()), Ok(env));
    }
}

#[test]
fn the_generators_reach_every_outcome() {
    // Guards the generators above: the shaped envelopes must reach acceptance and every
    // rejection code the decoder can give, or the properties would test little.
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let strategy = shaped_envelope();
    let mut accepted = 0;
    let mut codes = std::collections::BTreeSet::new();
    for _ in 0..4_000 {
        let value = strategy.new_tree(&mut runner).unwrap().current();
        match decode_command(
            &serde_json::to_vec(&value).unwrap(),
            now(),
            MAX_AGE,
            &cameras(),
        ) {
            Ok(_) => accepted += 1,
            Err(r) => {
                codes.insert(format!("{:?}", r.reason.code()));
            }
        }
    }
    assert!(accepted > 10, "{accepted}");
    for code in [
        "Malformed",
        "UnsupportedVersion",
        "UnknownCommand",
        "Stale",
        "Expired",
        "FromTheFuture",
        "UnknownCamera",
        "InvalidWindow",
    ] {
        assert!(codes.contains(code), "{code} never reached: {codes:?}");
    }
}
