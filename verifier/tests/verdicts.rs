//! The graded verdicts on real folders: a camera folder written the way the agent writes it
//! (schema 2: open, segment with clock, gaps, holds), then checked with and without trusted keys,
//! against witness files, and after tampering.

use std::path::Path;

use stationwatch_protocol::manifest::{
    sign_entry, Chain, ClockSync, EntryBody, GapReason, Hash256, Open, Segment, SegmentFile,
    SignedEntry, Start, StationKey, Stop, Timestamp,
};
use stationwatch_protocol::trust::{RegisteredKey, Signed, Verdict, Witness, WitnessedHead};
use stationwatch_protocol::{CameraId, StationId};
use stationwatch_verify::{verify, Finding, TrustInputs, VerifyOptions};

fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_ms(1_795_248_000_000 + secs * 1000).unwrap()
}

fn station() -> StationId {
    StationId::new("KG-0042").unwrap()
}

struct Cam {
    dir: std::path::PathBuf,
    key: StationKey,
    chain: Chain,
    entries: Vec<SignedEntry>,
}

impl Cam {
    fn new(root: &Path, key: &StationKey) -> Self {
        let dir = root.join("desk");
        std::fs::create_dir_all(&dir).unwrap();
        Cam {
            dir,
            key: key.clone(),
            chain: Chain::genesis(station(), CameraId::new("desk").unwrap()),
            entries: Vec::new(),
        }
    }

    fn push(&mut self, body: EntryBody) -> &mut Self {
        let e = sign_entry(&self.key, &self.chain, body).unwrap();
        self.chain = Chain::after(&e);
        self.entries.push(e);
        self.write();
        self
    }

    fn write(&self) {
        let text: String = self
            .entries
            .iter()
            .map(|e| format!("{}\n", e.line()))
            .collect();
        std::fs::write(self.dir.join("manifest.jsonl"), text).unwrap();
    }

    fn start(&mut self, at: i64) -> &mut Self {
        let key = self.key.public();
        self.push(EntryBody::Start(Start {
            at: t(at),
            agent: "test".into(),
            key,
        }))
    }

    fn file(start: i64) -> String {
        format!(
            "2026-11-21/2026112{}T08{:02}{:02}.000Z.ts",
            1,
            start / 60,
            start % 60
        )
    }

    fn segment(&mut self, start: i64, end: i64) -> &mut Self {
        let name = Self::file(start);
        let file = SegmentFile::new(name.clone()).unwrap();
        self.push(EntryBody::Open(Open {
            at: t(start),
            file: file.clone(),
        }));
        let bytes = name.repeat(100).into_bytes();
        std::fs::create_dir_all(self.dir.join("2026-11-21")).unwrap();
        std::fs::write(self.dir.join(&name), &bytes).unwrap();
        self.push(EntryBody::Segment(Segment {
            start: t(start),
            end: t(end),
            file,
            size: bytes.len() as u64,
            sha256: Hash256::of(&bytes),
            clock: Some(ClockSync::Synced),
        }))
    }
}

fn recorded(root: &Path, key: &StationKey) -> Cam {
    let mut cam = Cam::new(root, key);
    cam.start(0)
        .segment(1, 61)
        .segment(61, 121)
        .segment(121, 181);
    cam
}

fn with_key(key: &StationKey) -> VerifyOptions {
    VerifyOptions {
        trust: TrustInputs {
            public_keys: vec![key.public()],
            ..TrustInputs::default()
        },
        ..VerifyOptions::default()
    }
}

#[test]
fn trusted_key_gives_ok_and_no_key_gives_untrusted() {
    let tmp = tempfile::tempdir().unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    recorded(tmp.path(), &key);
    let r = verify(tmp.path(), &with_key(&key)).unwrap();
    assert_eq!(
        r.verdict,
        Verdict::Ok,
        "{}",
        stationwatch_verify::render(&r)
    );
    let r = verify(tmp.path(), &VerifyOptions::default()).unwrap();
    assert_eq!(r.verdict, Verdict::Untrusted);
    assert!(stationwatch_verify::render(&r).contains("NOT TRUSTED"));
}

#[test]
fn folder_resigned_with_a_fresh_key_is_untrusted_alone_and_failed_with_the_registered_key() {
    let tmp = tempfile::tempdir().unwrap();
    let registered = StationKey::from_seed(&[7; 32]);
    let forger = StationKey::from_seed(&[66; 32]);
    recorded(tmp.path(), &forger);
    assert_eq!(
        verify(tmp.path(), &VerifyOptions::default())
            .unwrap()
            .verdict,
        Verdict::Untrusted
    );
    assert_eq!(
        verify(tmp.path(), &with_key(&registered)).unwrap().verdict,
        Verdict::Failed
    );
}

#[test]
fn explained_gaps_grade_ok_with_gaps() {
    let tmp = tempfile::tempdir().unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    let mut cam = recorded(tmp.path(), &key);
    cam.push(EntryBody::Gap(stationwatch_protocol::manifest::Gap {
        start: t(181),
        end: t(240),
        reason: GapReason::CameraLost,
        detail: "rtsp timeout".into(),
    }))
    .segment(240, 300);
    let r = verify(tmp.path(), &with_key(&key)).unwrap();
    assert_eq!(
        r.verdict,
        Verdict::OkWithGaps,
        "{}",
        stationwatch_verify::render(&r)
    );
    // A window past the end of the recording is unexplained time: FAILED.
    let mut opts = with_key(&key);
    opts.to = Some(t(400));
    assert_eq!(verify(tmp.path(), &opts).unwrap().verdict, Verdict::Failed);
}

#[test]
fn planted_file_is_foreign_and_announced_file_is_pending() {
    let tmp = tempfile::tempdir().unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    let mut cam = recorded(tmp.path(), &key);
    // The agent announced the next file and is writing it.
    let next = Cam::file(181);
    cam.push(EntryBody::Open(Open {
        at: t(181),
        file: SegmentFile::new(next.clone()).unwrap(),
    }));
    std::fs::write(cam.dir.join(&next), b"being written").unwrap();
    let r = verify(tmp.path(), &with_key(&key)).unwrap();
    assert_eq!(r.cameras[0].pending_files, vec![next.clone()]);
    assert_eq!(r.verdict, Verdict::Ok);
    // After a clean stop, the same file is no longer pending; a planted one never was.
    cam.push(EntryBody::Stop(Stop { at: t(190) }));
    let planted = Cam::file(300);
    std::fs::write(cam.dir.join(&planted), b"planted").unwrap();
    let r = verify(tmp.path(), &with_key(&key)).unwrap();
    assert_eq!(r.verdict, Verdict::Failed);
    let f = &r.cameras[0].findings;
    assert!(f.contains(&Finding::UnlistedFile(next)), "{f:?}");
    assert!(f.contains(&Finding::UnlistedFile(planted)), "{f:?}");
}

#[test]
fn manifest_cut_short_fails_against_the_witness_and_a_forged_witness_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    let controller = StationKey::from_seed(&[42; 32]);
    let cam = recorded(tmp.path(), &key);
    let head = |e: &SignedEntry| WitnessedHead {
        camera: CameraId::new("desk").unwrap(),
        next_seq: e.seq() + 1,
        prev: e.hash(),
        agent_at: t(200),
        received_at: t(201),
        tsa: None,
    };
    let witness = Witness::new(
        t(300),
        station(),
        None,
        None,
        vec![RegisteredKey {
            key: key.public(),
            registered_at: t(-100),
            retired_at: None,
        }],
        vec![head(cam.entries.last().unwrap())],
    );
    let wpath = tmp.path().join("witness.json");
    std::fs::write(
        &wpath,
        Signed::sign(witness, &controller)
            .unwrap()
            .to_json()
            .unwrap(),
    )
    .unwrap();
    let rec = tmp.path().join("rec");
    std::fs::create_dir_all(&rec).unwrap();
    std::fs::rename(&cam.dir, rec.join("desk")).unwrap();

    let mut trust = TrustInputs::default();
    trust
        .set_controller_key(&controller.public().to_hex())
        .unwrap();
    trust.add_witness(&wpath).unwrap();
    let opts = VerifyOptions {
        trust,
        ..VerifyOptions::default()
    };
    // Whole: OK on the witness's registered key alone.
    let r = verify(&rec, &opts).unwrap();
    assert_eq!(
        r.verdict,
        Verdict::Ok,
        "{}",
        stationwatch_verify::render(&r)
    );
    assert_eq!(r.cameras[0].heads_checked, 1);

    // The last segment (open + segment entries) cut off, with its file: a shorter chain that
    // is still valid on its own, but not against the witness.
    let manifest = rec.join("desk/manifest.jsonl");
    let text = std::fs::read_to_string(&manifest).unwrap();
    let kept: Vec<&str> = text.lines().collect();
    std::fs::write(
        &manifest,
        format!("{}\n", kept[..kept.len() - 2].join("\n")),
    )
    .unwrap();
    std::fs::remove_file(rec.join("desk").join(Cam::file(121))).unwrap();
    assert_eq!(
        verify(&rec, &with_key(&key)).unwrap().verdict,
        Verdict::Ok,
        "without the witness, a cut chain looks whole"
    );
    let r = verify(&rec, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Failed);
    assert!(matches!(r.cameras[0].findings[0], Finding::Witness { .. }));

    // A witness signed by another controller is refused when the reader names its controller.
    let other = StationKey::from_seed(&[43; 32]);
    let forged = Witness::new(t(300), station(), None, None, vec![], vec![]);
    std::fs::write(
        &wpath,
        Signed::sign(forged, &other).unwrap().to_json().unwrap(),
    )
    .unwrap();
    let mut trust = TrustInputs::default();
    trust
        .set_controller_key(&controller.public().to_hex())
        .unwrap();
    assert!(trust.add_witness(&wpath).is_err());
}

#[test]
fn a_deletion_under_a_hold_in_force_fails_and_after_its_release_is_lawful() {
    use stationwatch_protocol::manifest::{Deleted, DeletionPolicy, Hold, HoldSource, Release};
    let tmp = tempfile::tempdir().unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    let mut cam = recorded(tmp.path(), &key);
    // Segments are at seq 2, 4, 6 (each after its open). A court holds the first minute.
    let (file, sha256) = match cam.entries[2].body() {
        EntryBody::Segment(s) => (s.file.clone(), s.sha256),
        _ => unreachable!(),
    };
    cam.push(EntryBody::Hold(Hold {
        at: t(200),
        id: "court-1".into(),
        from: t(0),
        to: t(61),
        source: HoldSource::Command,
        reason: "case 12".into(),
    }));
    let lawful = tempfile::tempdir().unwrap();
    let mut released = recorded(lawful.path(), &key);
    released
        .push(cam.entries.last().unwrap().body().clone())
        .push(EntryBody::Release(Release {
            at: t(210),
            id: "court-1".into(),
            source: HoldSource::Command,
            reason: String::new(),
        }));
    let deletion = EntryBody::Deleted(Deleted {
        at: t(220),
        target: 2,
        file: file.clone(),
        sha256,
        policy: DeletionPolicy::Retention,
        detail: "older than 1 days".into(),
    });
    for (c, dir) in [(&mut cam, tmp.path()), (&mut released, lawful.path())] {
        c.push(deletion.clone());
        std::fs::remove_file(dir.join("desk").join(file.as_str())).unwrap();
    }
    let r = verify(tmp.path(), &with_key(&key)).unwrap();
    assert_eq!(
        r.verdict,
        Verdict::Failed,
        "{}",
        stationwatch_verify::render(&r)
    );
    assert!(
        stationwatch_verify::render(&r).contains("court-1"),
        "{}",
        stationwatch_verify::render(&r)
    );
    let r = verify(lawful.path(), &with_key(&key)).unwrap();
    assert_eq!(
        r.verdict,
        Verdict::OkWithGaps,
        "{}",
        stationwatch_verify::render(&r)
    );
}
