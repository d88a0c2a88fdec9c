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

/// An evidence bundle as the controller writes it (`docs/requests.md`): `bundle.json`, the
/// controller-signed `keys.json` and `witness.json`, and an excerpt of the manifest that does
/// not start at seq 0 (no `start` entry naming the key), with the window's segments.
fn bundle(root: &Path, key: &StationKey, controller: &StationKey) -> (std::path::PathBuf, Cam) {
    let mut cam = Cam::new(&root.join("station"), key);
    cam.start(0)
        .segment(1, 61)
        .segment(61, 121)
        .segment(121, 181)
        .segment(181, 241);
    let b = root.join("stationwatch-bundle-r1");
    std::fs::create_dir_all(b.join("desk/2026-11-21")).unwrap();
    // From seq 1 (the first segment's open): the start entry stays out.
    let excerpt: String = cam.entries[1..]
        .iter()
        .map(|e| format!("{}\n", e.line()))
        .collect();
    std::fs::write(b.join("desk/manifest.jsonl"), excerpt).unwrap();
    // The window touches the segments from 1 to 181.
    for start in [1, 61, 121, 181] {
        let f = Cam::file(start);
        std::fs::copy(cam.dir.join(&f), b.join("desk").join(&f)).unwrap();
    }
    let info = serde_json::json!({
        "format": "stationwatch-bundle", "version": 1, "request": "r1",
        "station": "KG-0042", "cameras": ["desk"],
        "from": t(61).to_string(), "to": t(181).to_string(),
        "created_at": t(300).to_string(), "controller_key": controller.public().to_hex(),
    });
    std::fs::write(b.join("bundle.json"), info.to_string()).unwrap();
    let registered = RegisteredKey {
        key: key.public(),
        registered_at: t(-100),
        retired_at: None,
    };
    let registry = stationwatch_protocol::trust::KeyRegistry::new(
        t(300),
        vec![stationwatch_protocol::trust::StationKeys {
            station: station(),
            keys: vec![registered.clone()],
        }],
    );
    std::fs::write(
        b.join("keys.json"),
        Signed::sign(registry, controller)
            .unwrap()
            .to_json()
            .unwrap(),
    )
    .unwrap();
    let last = cam.entries.last().unwrap();
    let head = WitnessedHead {
        camera: CameraId::new("desk").unwrap(),
        next_seq: last.seq() + 1,
        prev: last.hash(),
        agent_at: t(250),
        received_at: t(251),
        tsa: None,
    };
    let witness = Witness::new(t(300), station(), None, None, vec![registered], vec![head]);
    std::fs::write(
        b.join("witness.json"),
        Signed::sign(witness, controller)
            .unwrap()
            .to_json()
            .unwrap(),
    )
    .unwrap();
    (b, cam)
}

fn tar_of(dir: &Path, out: &Path) {
    let mut t = tar::Builder::new(std::fs::File::create(out).unwrap());
    t.append_dir_all(dir.file_name().unwrap(), dir).unwrap();
    t.finish().unwrap();
}

fn under_controller(controller: &StationKey) -> VerifyOptions {
    let mut trust = TrustInputs::default();
    trust
        .set_controller_key(&controller.public().to_hex())
        .unwrap();
    VerifyOptions {
        trust,
        ..VerifyOptions::default()
    }
}

#[test]
fn an_evidence_bundle_verifies_as_folder_and_tar_and_every_tampering_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let key = StationKey::from_seed(&[7; 32]);
    let controller = StationKey::from_seed(&[42; 32]);
    let (b, _cam) = bundle(tmp.path(), &key, &controller);
    let opts = under_controller(&controller);
    let show = |r: &stationwatch_verify::Report| stationwatch_verify::render(r);

    let r = verify(&b, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{}", show(&r));
    assert_eq!(r.cameras[0].heads_checked, 1);
    assert!(r.bundle.as_ref().unwrap().controller_files_used);
    let tar = tmp.path().join("bundle.tar");
    tar_of(&b, &tar);
    let r = verify(&tar, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Ok, "{}", show(&r));

    // Without the controller's key the bundle's own files prove nothing.
    let r = verify(&tar, &VerifyOptions::default()).unwrap();
    assert_eq!(r.verdict, Verdict::Untrusted, "{}", show(&r));

    // keys.json and witness.json signed by another controller: refused outright.
    let other = under_controller(&StationKey::from_seed(&[43; 32]));
    assert!(verify(&b, &other).is_err());

    // One byte changed in a segment.
    let seg = b.join("desk").join(Cam::file(61));
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    bad[10] ^= 1;
    std::fs::write(&seg, &bad).unwrap();
    let r = verify(&b, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Failed, "{}", show(&r));
    // One segment of the window removed.
    std::fs::remove_file(&seg).unwrap();
    let r = verify(&b, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Failed, "{}", show(&r));
    std::fs::write(&seg, &good).unwrap();
    assert_eq!(verify(&b, &opts).unwrap().verdict, Verdict::Ok);
    // The manifest cut short before the witnessed head.
    let m = b.join("desk/manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let mut lines: Vec<&str> = text.lines().collect();
    lines.pop();
    std::fs::write(&m, format!("{}\n", lines.join("\n"))).unwrap();
    let r = verify(&b, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Failed, "{}", show(&r));
    assert!(r.cameras[0]
        .findings
        .iter()
        .any(|f| matches!(f, Finding::Witness { .. })));
}

#[test]
fn a_tar_reaching_outside_its_folder_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("evil.tar");
    let mut data = Vec::new();
    {
        let mut t = tar::Builder::new(&mut data);
        let mut h = tar::Header::new_gnu();
        let body = b"{}";
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        // `append_data` refuses `..`; write the name into the header by hand as an attacker would.
        let name = b"b/../../evil-bundle.json";
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h.set_cksum();
        t.append(&h, &body[..]).unwrap();
        t.finish().unwrap();
    }
    std::fs::write(&path, &data).unwrap();
    let e = verify(&path, &VerifyOptions::default()).unwrap_err();
    assert!(e.to_string().contains("unsafe path"), "{e}");
    assert!(!tmp.path().join("evil-bundle.json").exists());
    assert!(!std::env::temp_dir().join("evil-bundle.json").exists());
}
