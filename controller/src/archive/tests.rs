//! The archive against a local-folder object store and a temporary SQLite index.

use stationwatch_protocol::archive::SegmentPhase;
use stationwatch_protocol::manifest::{
    sign_entry, Chain, ClockSync, EntryBody, Gap, GapReason, Hash256, Segment, SegmentFile,
    SignedEntry, StationKey, Timestamp,
};
use stationwatch_protocol::{CameraId, StationId};

use super::{Archive, ArchiveError};
use crate::config::{ArchiveConfig, DatabaseConfig, RulesConfig};
use crate::fleet::Fleet;
use crate::store::archive::{ARCHIVED, REFUSED};
use crate::store::Store;

const T0: i64 = 1_780_000_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    store: Store,
    fleet: Fleet,
    archive: Archive,
    key: StationKey,
    station: StationId,
    camera: CameraId,
}

async fn fixture() -> Fixture {
    fixture_with(ArchiveConfig::local).await
}

async fn fixture_with(cfg: impl FnOnce(&std::path::Path) -> ArchiveConfig) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(&DatabaseConfig {
        url: format!("sqlite://{}", dir.path().join("c.db").display()),
        max_connections: 2,
        history_days: 30,
        events_days: 400,
        audit_days: 3650,
        write_queue_bytes: 1 << 20,
    })
    .await
    .unwrap();
    let fleet = Fleet::new(RulesConfig::default());
    let archive = Archive::open(&cfg(dir.path()), store.clone(), fleet.clone()).unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    let station = StationId::new("pu-0042").unwrap();
    store
        .register_key(&station, &key.public(), "admin", false, T0)
        .await
        .unwrap();
    Fixture {
        dir,
        store,
        fleet,
        archive,
        key,
        station,
        camera: CameraId::new("desk").unwrap(),
    }
}

/// Footage of segment `i`.
fn footage(i: u64) -> Vec<u8> {
    (0..(1000 + i * 7)).map(|b| (b * (i + 3)) as u8).collect()
}

/// A manifest of `n` lines: segments with a gap every fifth line.
fn manifest(key: &StationKey, station: &StationId, camera: &CameraId, n: u64) -> Vec<SignedEntry> {
    let mut chain = Chain::genesis(station.clone(), camera.clone());
    let mut out = Vec::new();
    for i in 0..n {
        let start = Timestamp::from_unix_ms(T0 + i as i64 * 10_000).unwrap();
        let end = Timestamp::from_unix_ms(T0 + (i as i64 + 1) * 10_000).unwrap();
        let body = if i % 5 == 4 {
            EntryBody::Gap(Gap {
                start,
                end,
                reason: GapReason::AgentRestart,
                detail: String::new(),
            })
        } else {
            let bytes = footage(i);
            EntryBody::Segment(Segment {
                start,
                end,
                file: SegmentFile::new(format!("seg-{i:04}.ts")).unwrap(),
                size: bytes.len() as u64,
                sha256: Hash256::of(&bytes),
                clock: Some(ClockSync::Synced),
            })
        };
        let e = sign_entry(key, &chain, body).unwrap();
        chain = Chain::after(&e);
        out.push(e);
    }
    out
}

fn body(lines: &[SignedEntry]) -> Vec<u8> {
    let mut s = String::new();
    for e in lines {
        s.push_str(e.line());
        s.push('\n');
    }
    s.into_bytes()
}

fn is_refused<T: std::fmt::Debug>(r: Result<T, ArchiveError>) -> String {
    match r {
        Err(ArchiveError::Refused(why, _)) => why,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[tokio::test]
async fn manifest_extends_forwards_backwards_and_replays() {
    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let lines = manifest(&f.key, s, c, 20);
    assert!(matches!(
        f.archive.manifest_range(s, c).await,
        Err(ArchiveError::NotFound(_))
    ));
    // An empty archive takes any contiguous run.
    let r = f
        .archive
        .append_manifest(s, c, &body(&lines[8..12]), T0)
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (8, 11));
    assert_eq!(r.first_prev, *lines[8].prev());
    assert_eq!(r.last_hash, lines[11].hash());
    // Forwards, overlapping what is held (a replay of 10..=11 and new 12..=15).
    let r = f
        .archive
        .append_manifest(s, c, &body(&lines[10..16]), T0)
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (8, 15));
    // Backwards to seq 0.
    let r = f
        .archive
        .append_manifest(s, c, &body(&lines[0..8]), T0)
        .await
        .unwrap();
    assert_eq!((r.first_seq, r.last_seq), (0, 15));
    // A replay changes nothing.
    let again = f
        .archive
        .append_manifest(s, c, &body(&lines[3..9]), T0)
        .await
        .unwrap();
    assert_eq!(again, r);
    assert_eq!(f.archive.manifest_range(s, c).await.unwrap(), r);
    // Not next to the range: a conflict, not a refusal.
    assert!(matches!(
        f.archive
            .append_manifest(s, c, &body(&lines[17..20]), T0)
            .await,
        Err(ArchiveError::Conflict(..))
    ));
    // Stored as objects and indexed line by line.
    let obj = f.dir.path().join("store/manifests/pu-0042/desk");
    let mut names: Vec<String> = std::fs::read_dir(&obj)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "00000000000000000000-00000000000000000007.jsonl",
            "00000000000000000008-00000000000000000011.jsonl",
            "00000000000000000012-00000000000000000015.jsonl",
        ]
    );
    let text = std::fs::read(obj.join(&names[0])).unwrap();
    assert_eq!(text, body(&lines[0..8]));
    let seg = f.store.archive_entry(s, c, 3).await.unwrap().unwrap();
    assert_eq!(seg.kind, "segment");
    assert_eq!(seg.state.as_deref(), Some("pending"));
    let gap = f.store.archive_entry(s, c, 4).await.unwrap().unwrap();
    assert_eq!((gap.kind.as_str(), gap.state.as_deref()), ("gap", None));
    assert!(f
        .fleet
        .get(s)
        .is_none_or(|st| st.archive_refused.is_empty()));
}

#[tokio::test]
async fn bad_lines_refuse_the_whole_batch_and_alert() {
    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let lines = manifest(&f.key, s, c, 10);
    f.archive
        .append_manifest(s, c, &body(&lines[0..4]), T0)
        .await
        .unwrap();
    // Signed by another key.
    let forger = StationKey::from_seed(&[9; 32]);
    let forged = manifest(&forger, s, c, 10);
    let why = is_refused(
        f.archive
            .append_manifest(s, c, &body(&forged[4..6]), T0)
            .await,
    );
    assert!(why.contains("signature"), "{why}");
    // Another station's lines, signed by the right key.
    let other = StationId::new("pu-0043").unwrap();
    let elsewhere = manifest(&f.key, &other, c, 10);
    let why = is_refused(
        f.archive
            .append_manifest(s, c, &body(&elsewhere[4..6]), T0)
            .await,
    );
    assert!(why.contains("pu-0043"), "{why}");
    // A fork: seq 4 signed by the station but chained to another seq 3.
    let mut fork_lines = manifest(&f.key, s, c, 3);
    let mut chain = Chain::after(&fork_lines[2]);
    chain.prev = Hash256::of(b"another line 3");
    let e = sign_entry(
        &f.key,
        &Chain {
            next_seq: 4,
            ..chain.clone()
        },
        lines[4].body().clone(),
    )
    .unwrap();
    fork_lines.clear();
    fork_lines.push(e);
    let why = is_refused(
        f.archive
            .append_manifest(s, c, &body(&fork_lines), T0)
            .await,
    );
    assert!(why.contains("forked"), "{why}");
    // A rewrite: seq 2 held, another seq 2 offered.
    let mut rewritten = Chain::after(&lines[1]);
    rewritten.next_seq = 2;
    let e2 = sign_entry(
        &f.key,
        &rewritten,
        EntryBody::Gap(Gap {
            start: Timestamp::from_unix_ms(T0).unwrap(),
            end: Timestamp::from_unix_ms(T0 + 1).unwrap(),
            reason: GapReason::AgentRestart,
            detail: String::new(),
        }),
    )
    .unwrap();
    let why = is_refused(f.archive.append_manifest(s, c, &body(&[e2]), T0).await);
    assert!(why.contains("rewritten"), "{why}");
    // One bad line among good ones: nothing of the batch is stored.
    let mut mixed = body(&lines[4..7]);
    mixed.extend_from_slice(b"{\"not\":\"a line\"}\n");
    is_refused(f.archive.append_manifest(s, c, &mixed, T0).await);
    assert_eq!(f.archive.manifest_range(s, c).await.unwrap().last_seq, 3);
    // Malformed requests are not refusals.
    assert!(matches!(
        f.archive.append_manifest(s, c, b"", T0).await,
        Err(ArchiveError::BadRequest(_))
    ));
    let no_newline = &body(&lines[4..5])[..lines[4].line().len()];
    assert!(matches!(
        f.archive.append_manifest(s, c, no_newline, T0).await,
        Err(ArchiveError::BadRequest(_))
    ));
    // Alerted (at the next rules tick) and recorded.
    let st = f.fleet.get(s).unwrap();
    assert!(st.archive_refused.contains_key(c));
    let t = f.fleet.tick(T0 + 1);
    assert!(t
        .iter()
        .flat_map(|t| &t.opened)
        .any(|r| r.key() == "archive_refused:desk"));
    assert_eq!(f.store.archive_refusals(s, 100).await.unwrap().len(), 5);
    // Still good lines go on.
    f.archive
        .append_manifest(s, c, &body(&lines[4..10]), T0)
        .await
        .unwrap();
}

#[tokio::test]
async fn a_retired_key_still_vouches_for_its_lines() {
    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let lines = manifest(&f.key, s, c, 4);
    let new = StationKey::from_seed(&[8; 32]);
    f.store
        .register_key(s, &new.public(), "admin", true, T0 + 1)
        .await
        .unwrap();
    f.archive
        .append_manifest(s, c, &body(&lines), T0)
        .await
        .unwrap();
}

#[tokio::test]
async fn chunks_go_at_the_held_offset_and_a_complete_file_is_archived() {
    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let lines = manifest(&f.key, s, c, 6);
    f.archive
        .append_manifest(s, c, &body(&lines), T0)
        .await
        .unwrap();
    let bytes = footage(1);
    let st = f.archive.segment_state(s, c, 1).await.unwrap();
    assert_eq!(
        (st.phase, st.received, st.size),
        (SegmentPhase::Pending, 0, bytes.len() as u64)
    );
    // Gaps and unknown seqs are not segments.
    assert!(matches!(
        f.archive.segment_state(s, c, 4).await,
        Err(ArchiveError::NotFound(_))
    ));
    assert!(matches!(
        f.archive.put_chunk(s, c, 99, 0, b"x", T0).await,
        Err(ArchiveError::NotFound(_))
    ));
    let st = f
        .archive
        .put_chunk(s, c, 1, 0, &bytes[..300], T0)
        .await
        .unwrap();
    assert_eq!((st.phase, st.received), (SegmentPhase::Pending, 300));
    // The same chunk again (a replay after a lost answer), or a skipped one: 409 with the state.
    for off in [0, 301] {
        match f.archive.put_chunk(s, c, 1, off, &bytes[..300], T0).await {
            Err(ArchiveError::Conflict(_, Some(st))) => assert_eq!(st.received, 300),
            other => panic!("{other:?}"),
        }
    }
    // A restart asks, and goes on from there.
    assert_eq!(
        f.archive.segment_state(s, c, 1).await.unwrap().received,
        300
    );
    let st = f
        .archive
        .put_chunk(s, c, 1, 300, &bytes[300..], T0 + 5)
        .await
        .unwrap();
    assert_eq!(
        (st.phase, st.received),
        (SegmentPhase::Archived, bytes.len() as u64)
    );
    let stored =
        std::fs::read(f.dir.path().join("store/segments/pu-0042/desk/seg-0001.ts")).unwrap();
    assert_eq!(stored, bytes);
    let row = f.store.archive_entry(s, c, 1).await.unwrap().unwrap();
    assert_eq!(
        (row.state.as_deref(), row.archived_at),
        (Some(ARCHIVED), Some(T0 + 5))
    );
    // Staging is cleaned up; a replayed last chunk answers the archived state.
    assert!(!f.dir.path().join("staging/pu-0042/desk/1.part").exists());
    let st = f
        .archive
        .put_chunk(s, c, 1, 300, &bytes[300..], T0 + 6)
        .await
        .unwrap();
    assert_eq!(st.phase, SegmentPhase::Archived);
}

#[tokio::test]
async fn a_file_not_matching_its_entry_is_refused_kept_aside_and_can_be_sent_again() {
    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let lines = manifest(&f.key, s, c, 6);
    f.archive
        .append_manifest(s, c, &body(&lines), T0)
        .await
        .unwrap();
    let good = footage(2);
    let mut bad = good.clone();
    bad[17] ^= 1;
    let r = f.archive.put_chunk(s, c, 2, 0, &bad, T0 + 9).await;
    match r {
        Err(ArchiveError::Refused(why, Some(st))) => {
            assert!(why.contains("SHA-256"), "{why}");
            assert_eq!((st.phase, st.received), (SegmentPhase::Refused, 0));
        }
        other => panic!("{other:?}"),
    }
    let kept = std::fs::read(
        f.dir
            .path()
            .join(format!("store/quarantine/pu-0042/desk/2-{}.ts", T0 + 9)),
    )
    .unwrap();
    assert_eq!(kept, bad);
    assert!(!f
        .dir
        .path()
        .join("store/segments/pu-0042/desk/seg-0002.ts")
        .exists());
    let row = f.store.archive_entry(s, c, 2).await.unwrap().unwrap();
    assert_eq!(row.state.as_deref(), Some(REFUSED));
    let st = f.archive.segment_state(s, c, 2).await.unwrap();
    assert_eq!((st.phase, st.received), (SegmentPhase::Refused, 0));
    assert!(f.fleet.get(s).unwrap().archive_refused.contains_key(c));
    // More bytes than signed: refused too.
    let mut long = footage(3);
    long.push(0);
    is_refused(f.archive.put_chunk(s, c, 3, 0, &long, T0 + 10).await);
    // The right bytes of segment 2 later: archived, and no longer refused.
    let st = f
        .archive
        .put_chunk(s, c, 2, 0, &good, T0 + 20)
        .await
        .unwrap();
    assert_eq!(st.phase, SegmentPhase::Archived);
    // Segment 3 is still refused: the camera's alert stays open for it alone.
    let open = f.fleet.get(s).unwrap().archive_refused[c].segments.clone();
    assert_eq!(open, std::collections::BTreeSet::from([3]));
    let refusals = f.store.archive_refusals(s, 10).await.unwrap();
    assert_eq!(refusals.len(), 2);
    assert_eq!(refusals[1].what, "segment");
    assert!(refusals[1].object_key.is_some());
}

#[tokio::test]
async fn a_failing_object_store_is_507_and_alerted_and_the_staged_bytes_stay() {
    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let lines = manifest(&f.key, s, c, 3);
    f.archive
        .append_manifest(s, c, &body(&lines), T0)
        .await
        .unwrap();
    let bytes = footage(0);
    // The store's segment folder cannot be created: a file is in its way.
    let segs = f.dir.path().join("store/segments");
    std::fs::write(&segs, b"in the way").unwrap();
    let r = f.archive.put_chunk(s, c, 0, 0, &bytes, T0).await;
    assert!(matches!(r, Err(ArchiveError::Unavailable(_))), "{r:?}");
    assert!(f.fleet.get(s).unwrap().archive_unavailable.is_some());
    let st = f.archive.segment_state(s, c, 0).await.unwrap();
    assert_eq!(
        (st.phase, st.received),
        (SegmentPhase::Pending, bytes.len() as u64)
    );
    // Repaired: an empty chunk at the end retries, and the alert closes.
    std::fs::remove_file(&segs).unwrap();
    let st = f
        .archive
        .put_chunk(s, c, 0, bytes.len() as u64, b"", T0 + 1)
        .await
        .unwrap();
    assert_eq!(st.phase, SegmentPhase::Archived);
    assert!(f.fleet.get(s).unwrap().archive_unavailable.is_none());
}

#[tokio::test]
async fn large_files_go_up_in_parts() {
    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let bytes: Vec<u8> = (0..(9 * 1024 * 1024 + 123))
        .map(|i| (i % 251) as u8)
        .collect();
    let e = sign_entry(
        &f.key,
        &Chain::genesis(s.clone(), c.clone()),
        EntryBody::Segment(Segment {
            start: Timestamp::from_unix_ms(T0).unwrap(),
            end: Timestamp::from_unix_ms(T0 + 60_000).unwrap(),
            file: SegmentFile::new("2026/big.ts").unwrap(),
            size: bytes.len() as u64,
            sha256: Hash256::of(&bytes),
            clock: Some(ClockSync::Synced),
        }),
    )
    .unwrap();
    f.archive
        .append_manifest(s, c, &body(&[e]), T0)
        .await
        .unwrap();
    let mut off = 0;
    let mut last = None;
    for chunk in bytes.chunks(4 * 1024 * 1024) {
        last = Some(f.archive.put_chunk(s, c, 0, off, chunk, T0).await.unwrap());
        off += chunk.len() as u64;
    }
    assert_eq!(last.unwrap().phase, SegmentPhase::Archived);
    let stored =
        std::fs::read(f.dir.path().join("store/segments/pu-0042/desk/2026/big.ts")).unwrap();
    assert!(stored == bytes);
}

#[tokio::test]
async fn permits_are_limited_to_max_uploads() {
    let f = fixture().await;
    let mut cfg = ArchiveConfig::local(f.dir.path());
    cfg.max_uploads = 2;
    let a = Archive::open(&cfg, f.store.clone(), f.fleet.clone()).unwrap();
    let one = a.try_permit().unwrap();
    let _two = a.try_permit().unwrap();
    assert!(a.try_permit().is_none());
    drop(one);
    assert!(a.try_permit().is_some());
}

/// The same flow against an S3-compatible server when `STATIONWATCH_TEST_S3` names one, as
/// `http://127.0.0.1:PORT/BUCKET` (an existing bucket; credentials from
/// `STATIONWATCH_TEST_S3_KEY` and `_SECRET`, default `test`/`test`). Skipped otherwise: the
/// end-to-end suite starts a real server (`tests/`).
#[tokio::test]
async fn s3_store_when_configured() {
    use crate::config::{ArchiveStoreConfig, S3Config};
    use object_store::path::Path as ObjectPath;
    let Ok(url) = std::env::var("STATIONWATCH_TEST_S3") else {
        eprintln!("STATIONWATCH_TEST_S3 not set: S3 archive test skipped");
        return;
    };
    let (endpoint, bucket) = url.trim_end_matches('/').rsplit_once('/').unwrap();
    let prefix = format!("t{}", std::process::id());
    let s3 = S3Config {
        bucket: bucket.to_owned(),
        prefix: prefix.clone(),
        endpoint: Some(endpoint.to_owned()),
        region: "us-east-1".into(),
        access_key_id: Some(std::env::var("STATIONWATCH_TEST_S3_KEY").unwrap_or("test".into())),
        secret_access_key: Some(
            std::env::var("STATIONWATCH_TEST_S3_SECRET").unwrap_or("test".into()),
        ),
        allow_http: true,
    };
    let f = fixture_with(|dir| ArchiveConfig {
        store: ArchiveStoreConfig::S3(s3),
        staging: dir.join("staging"),
        max_uploads: 4,
        retention: Default::default(),
    })
    .await;
    let (s, c) = (&f.station, &f.camera);
    let big: Vec<u8> = (0..(9 * 1024 * 1024 + 5))
        .map(|i| (i % 249) as u8)
        .collect();
    let small = footage(1);
    let mut chain = Chain::genesis(s.clone(), c.clone());
    let mut lines = Vec::new();
    for (i, bytes) in [&big, &small].into_iter().enumerate() {
        let e = sign_entry(
            &f.key,
            &chain,
            EntryBody::Segment(Segment {
                start: Timestamp::from_unix_ms(T0 + i as i64).unwrap(),
                end: Timestamp::from_unix_ms(T0 + i as i64 + 1).unwrap(),
                file: SegmentFile::new(format!("d/{i}.ts")).unwrap(),
                size: bytes.len() as u64,
                sha256: Hash256::of(bytes),
                clock: Some(ClockSync::Synced),
            }),
        )
        .unwrap();
        chain = Chain::after(&e);
        lines.push(e);
    }
    f.archive
        .append_manifest(s, c, &body(&lines), T0)
        .await
        .unwrap();
    let mut off = 0;
    for chunk in big.chunks(4 * 1024 * 1024) {
        f.archive.put_chunk(s, c, 0, off, chunk, T0).await.unwrap();
        off += chunk.len() as u64;
    }
    assert_eq!(
        f.archive.segment_state(s, c, 0).await.unwrap().phase,
        SegmentPhase::Archived
    );
    let mut bad = small.clone();
    bad[0] ^= 1;
    is_refused(f.archive.put_chunk(s, c, 1, 0, &bad, T0 + 7).await);
    let get = |key: String| {
        let objects = f.archive.objects().clone();
        async move {
            objects
                .get(&ObjectPath::parse(key).unwrap())
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap()
                .to_vec()
        }
    };
    assert!(get("segments/pu-0042/desk/d/0.ts".into()).await == big);
    assert_eq!(
        get(format!("quarantine/pu-0042/desk/1-{}.ts", T0 + 7)).await,
        bad
    );
    assert_eq!(
        get("manifests/pu-0042/desk/00000000000000000000-00000000000000000001.jsonl".into()).await,
        body(&lines)
    );
}

#[tokio::test]
async fn an_unreachable_s3_store_is_unavailable_not_a_crash() {
    use crate::config::{ArchiveStoreConfig, S3Config};
    let f = fixture_with(|dir| ArchiveConfig {
        store: ArchiveStoreConfig::S3(S3Config {
            bucket: "footage".into(),
            prefix: String::new(),
            // Nothing listens on port 1 of the loopback: connections are refused at once.
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "us-east-1".into(),
            access_key_id: Some("k".into()),
            secret_access_key: Some("s".into()),
            allow_http: true,
        }),
        staging: dir.join("staging"),
        max_uploads: 4,
        retention: Default::default(),
    })
    .await;
    let (s, c) = (&f.station, &f.camera);
    let lines = manifest(&f.key, s, c, 2);
    let r = f.archive.append_manifest(s, c, &body(&lines), T0).await;
    assert!(matches!(r, Err(ArchiveError::Unavailable(_))), "{r:?}");
    assert!(f.archive.manifest_range(s, c).await.is_err());
    let t = f.fleet.tick(T0 + 1);
    assert!(t
        .iter()
        .flat_map(|t| &t.opened)
        .any(|r| r.key() == "archive_unavailable"));
}

/// Retention mirrors the station's rules: old archived segments go, unless a hold the station
/// signed (and has not released) or an archive hold of the config overlaps them.
#[tokio::test]
async fn retention_deletes_old_footage_except_under_a_hold() {
    use stationwatch_protocol::manifest::{Hold, HoldSource, Release};

    use super::retention::{holds_from_lines, Pass};
    use crate::config::{ArchiveHold, ArchiveRetention};
    use crate::store::archive::EXPIRED;

    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    let mut lines = manifest(&f.key, s, c, 4);
    let ts = |ms: i64| Timestamp::from_unix_ms(ms).unwrap();
    let mut chain = Chain::after(lines.last().unwrap());
    for body in [
        // A court's hold over segment 1, still in force.
        EntryBody::Hold(Hold {
            at: ts(T0 + 50_000),
            id: "court-7".into(),
            from: ts(T0 + 10_000),
            to: ts(T0 + 20_000),
            source: HoldSource::Command,
            reason: "case 7".into(),
        }),
        // An upload request's hold over segment 2, released once archived.
        EntryBody::Hold(Hold {
            at: ts(T0 + 51_000),
            id: "upload-j-desk".into(),
            from: ts(T0 + 20_000),
            to: ts(T0 + 30_000),
            source: HoldSource::Request,
            reason: "job j".into(),
        }),
        EntryBody::Release(Release {
            at: ts(T0 + 52_000),
            id: "upload-j-desk".into(),
            source: HoldSource::Request,
            reason: "archived".into(),
        }),
    ] {
        let e = sign_entry(&f.key, &chain, body).unwrap();
        chain = Chain::after(&e);
        lines.push(e);
    }
    f.archive
        .append_manifest(s, c, &body(&lines), T0)
        .await
        .unwrap();
    for i in 0..4 {
        let st = f
            .archive
            .put_chunk(s, c, i, 0, &footage(i), T0 + 1)
            .await
            .unwrap();
        assert_eq!(st.phase, SegmentPhase::Archived);
    }
    let object = |i: u64| {
        f.dir
            .path()
            .join(format!("store/segments/pu-0042/desk/seg-{i:04}.ts"))
    };
    let day = 86_400_000;
    let mut rules = ArchiveRetention {
        keep_days: 1,
        delete_after_days: 2,
        ..Default::default()
    };
    // Younger than delete_after_days: nothing goes.
    let p = f.archive.retention_pass(&rules, T0 + day + 60_000).await;
    assert_eq!(p, Pass::default());
    // The archive's own hold over segment 3.
    rules.holds.push(ArchiveHold {
        station: Some(s.clone()),
        camera: None,
        from: T0 + 35_000,
        to: T0 + 36_000,
        reason: "audit of district 12".into(),
    });
    let p = f.archive.retention_pass(&rules, T0 + 3 * day).await;
    assert_eq!((p.deleted, p.held, p.failed), (2, 2, 0), "{p:?}");
    for (i, kept) in [(0, false), (1, true), (2, false), (3, true)] {
        assert_eq!(object(i).exists(), kept, "segment {i}");
        let row = f.store.archive_entry(s, c, i).await.unwrap().unwrap();
        let want = if kept { ARCHIVED } else { EXPIRED };
        assert_eq!(row.state.as_deref(), Some(want), "segment {i}");
    }
    let row = f.store.archive_entry(s, c, 0).await.unwrap().unwrap();
    assert_eq!(row.reason.as_deref(), Some("retention: older than 2 days"));
    // A station asking about an expired segment is told it is archived: nothing to send again.
    let st = f.archive.segment_state(s, c, 0).await.unwrap();
    assert_eq!(st.phase, SegmentPhase::Archived);
    let totals = f.store.archive_totals(Some(s)).await.unwrap();
    assert_eq!(totals[0].2.expired_segments, 2);
    assert_eq!(totals[0].2.archived_segments, 2);
    // Again: nothing more to do.
    let p = f.archive.retention_pass(&rules, T0 + 3 * day).await;
    assert_eq!((p.deleted, p.held), (0, 2));
    // Fail closed: a hold line that cannot be read holds the whole camera.
    assert!(holds_from_lines(&["{not a line".to_owned()]).is_err());
}

#[test]
fn archive_holds_of_the_config_apply_by_station_and_camera() {
    use super::retention::config_holds;
    use crate::config::ArchiveHold;
    let s1 = StationId::new("pu-1").unwrap();
    let s2 = StationId::new("pu-2").unwrap();
    let desk = CameraId::new("desk").unwrap();
    let door = CameraId::new("door").unwrap();
    let holds = vec![
        ArchiveHold {
            station: None,
            camera: None,
            from: 0,
            to: 10,
            reason: "everything".into(),
        },
        ArchiveHold {
            station: Some(s1.clone()),
            camera: Some(door.clone()),
            from: 20,
            to: 30,
            reason: "door of pu-1".into(),
        },
    ];
    assert_eq!(config_holds(&holds, &s1, &door).len(), 2);
    assert_eq!(config_holds(&holds, &s1, &desk).len(), 1);
    assert_eq!(config_holds(&holds, &s2, &door).len(), 1);
}

#[tokio::test]
async fn a_request_holds_its_window_in_the_archive_until_its_hold_ends() {
    use crate::config::ArchiveRetention;
    use crate::store::archive::EXPIRED;
    use crate::store::requests::{RequestRow, RequestUpdate};

    let f = fixture().await;
    let (s, c) = (&f.station, &f.camera);
    f.archive
        .append_manifest(s, c, &body(&manifest(&f.key, s, c, 2)), T0)
        .await
        .unwrap();
    for i in 0..2 {
        f.archive
            .put_chunk(s, c, i, 0, &footage(i), T0 + 1)
            .await
            .unwrap();
    }
    let day = 86_400_000;
    let request = |id: &str, status: &str| RequestRow {
        id: id.into(),
        station_id: s.clone(),
        cameras: vec![c.clone()],
        from_ms: T0,
        to_ms: T0 + 5_000,
        reason: "complaint".into(),
        requested_by: "ngo".into(),
        requested_at: T0,
        status: status.into(),
        decided_by: None,
        decided_at: None,
        decision: None,
        command_id: None,
        progress: None,
        gaps: Vec::new(),
        history: Vec::new(),
        ready_at: None,
        deadline_at: None,
        hold_until: None,
        updated_at: T0,
    };
    // A refused request holds nothing; a delivered one holds segment 0 for 10 days.
    f.store
        .insert_request(&request("r-refused", "refused"))
        .await
        .unwrap();
    f.store
        .insert_request(&request("r-held", "collecting"))
        .await
        .unwrap();
    f.store
        .update_request(
            "r-held",
            "collecting",
            RequestUpdate {
                status: Some("ready".into()),
                hold_until: Some(T0 + 10 * day),
                ..Default::default()
            },
            T0,
        )
        .await
        .unwrap()
        .unwrap();
    let rules = ArchiveRetention {
        keep_days: 1,
        delete_after_days: 2,
        ..Default::default()
    };
    let p = f.archive.retention_pass(&rules, T0 + 3 * day).await;
    assert_eq!((p.deleted, p.held), (1, 1), "{p:?}");
    let store = &f.store;
    let state = |i: u64| async move {
        store
            .archive_entry(s, c, i)
            .await
            .unwrap()
            .unwrap()
            .state
            .unwrap()
    };
    assert_eq!(state(0).await, ARCHIVED);
    assert_eq!(state(1).await, EXPIRED);
    // The hold ends: the window goes like the rest.
    let p = f.archive.retention_pass(&rules, T0 + 11 * day).await;
    assert_eq!((p.deleted, p.held), (1, 0), "{p:?}");
    assert_eq!(state(0).await, EXPIRED);
}
