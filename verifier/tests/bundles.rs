//! Evidence bundles on real files, as the controller writes them (`docs/requests.md`): two
//! cameras of a station whose key was rotated, manifest excerpts that start after the `start`
//! entries (seq > 0), a signed gap in the window of one camera, a retention deletion of an entry
//! before the excerpt, witnessed heads before and inside the excerpts, `keys.json` and
//! `witness.json` signed by the controller. Checked through the library and through the
//! `stationwatch-verify` binary (exit statuses), as a folder and as a `.tar`.

use std::path::{Path, PathBuf};
use std::process::Command;

use stationwatch_protocol::manifest::{
    sign_entry, Chain, ClockSync, Deleted, DeletionPolicy, EntryBody, Gap, GapReason, Hash256,
    Open, Problem, Segment, SegmentFile, SignedEntry, Start, StationKey, Stop, Timestamp,
};
use stationwatch_protocol::trust::{
    KeyRegistry, RegisteredKey, Signed, StationKeys, Verdict, Witness, WitnessedHead,
};
use stationwatch_protocol::{CameraId, StationId};
use stationwatch_verify::{render, verify, Finding, TrustInputs, VerifyOptions};

const BIN: &str = env!("CARGO_BIN_EXE_stationwatch-verify");

/// `m` minutes (and `s` seconds) after 07:55 on 2026-03-15; the window is 08:00 to 08:10.
fn t(m: i64, s: i64) -> Timestamp {
    // 2026-03-15T07:55:00Z
    Timestamp::from_unix_ms(1_773_561_300_000 + (m * 60 + s) * 1000).unwrap()
}
const FROM: i64 = 5;
const TO: i64 = 15;

fn station() -> StationId {
    StationId::new("KG-0042").unwrap()
}

fn old_key() -> StationKey {
    StationKey::from_seed(&[6; 32])
}
fn new_key() -> StationKey {
    StationKey::from_seed(&[7; 32])
}
fn controller() -> StationKey {
    StationKey::from_seed(&[42; 32])
}

/// The file the agent names for a segment starting at `start`.
fn file_at(start: Timestamp) -> String {
    start
        .to_datetime()
        .format("%Y-%m-%d/%Y%m%dT%H%M%S%.3fZ.ts")
        .to_string()
}

/// One camera's whole manifest as the station holds it, and its segment bytes.
struct History {
    camera: CameraId,
    key: StationKey,
    chain: Chain,
    entries: Vec<SignedEntry>,
    files: Vec<(String, Vec<u8>, Timestamp, Timestamp)>,
}

impl History {
    fn new(camera: &str) -> Self {
        let camera = CameraId::new(camera).unwrap();
        History {
            chain: Chain::genesis(station(), camera.clone()),
            camera,
            key: old_key(),
            entries: Vec::new(),
            files: Vec::new(),
        }
    }

    fn push(&mut self, body: EntryBody) -> u64 {
        let e = sign_entry(&self.key, &self.chain, body).unwrap();
        self.chain = Chain::after(&e);
        let seq = e.seq();
        self.entries.push(e);
        seq
    }

    fn start(&mut self, key: StationKey, at: Timestamp) {
        self.key = key;
        let public = self.key.public();
        self.push(EntryBody::Start(Start {
            at,
            agent: "test".into(),
            key: public,
        }));
    }

    fn open(&mut self, m: i64) {
        self.push(EntryBody::Open(Open {
            at: t(m, 0),
            file: SegmentFile::new(file_at(t(m, 0))).unwrap(),
        }));
    }

    /// The segment of minute `m` (announced before), entered when it ends.
    fn segment(&mut self, m: i64) -> u64 {
        let (start, end) = (t(m, 0), t(m + 1, 0));
        let name = file_at(start);
        let bytes = format!("{}:{name}", self.camera).repeat(500).into_bytes();
        let seq = self.push(EntryBody::Segment(Segment {
            start,
            end,
            file: SegmentFile::new(name.clone()).unwrap(),
            size: bytes.len() as u64,
            sha256: Hash256::of(&bytes),
            clock: Some(ClockSync::Synced),
        }));
        self.files.push((name, bytes, start, end));
        seq
    }

    /// A recording as the agent writes it: under the old key from 07:55 to 07:58, a clean
    /// stop, the key rotated, then minute segments from 07:59 to 08:17, each file announced when
    /// the one before closes. `gap` leaves minutes out, explained by a signed gap; with
    /// `delete`, retention deletes the 07:56 segment (seq 3) after the segment of 08:08.
    fn recorded(camera: &str, gap: Option<(i64, i64)>, delete: bool) -> Self {
        let mut h = History::new(camera);
        h.start(old_key(), t(0, 50));
        h.open(1);
        h.open(2);
        h.segment(1);
        h.segment(2);
        h.push(EntryBody::Stop(Stop { at: t(3, 0) }));
        h.start(new_key(), t(3, 30));
        h.open(4);
        let mut m = 4;
        while m < 22 {
            if let Some((a, b)) = gap.filter(|(a, _)| *a == m + 1) {
                h.segment(m);
                h.push(EntryBody::Gap(Gap {
                    start: t(a, 0),
                    end: t(b, 0),
                    reason: GapReason::CameraLost,
                    detail: "rtsp timeout".into(),
                }));
                h.open(b);
                m = b;
                continue;
            }
            h.open(m + 1);
            h.segment(m);
            if delete && m == 13 {
                let (file, sha256) = match h.entries[3].body() {
                    EntryBody::Segment(s) => (s.file.clone(), s.sha256),
                    other => panic!("seq 3 is {other:?}"),
                };
                h.push(EntryBody::Deleted(Deleted {
                    at: t(14, 1),
                    target: 3,
                    file,
                    sha256,
                    policy: DeletionPolicy::Retention,
                    detail: "older than 8 minutes".into(),
                }));
            }
            m += 1;
        }
        h
    }

    /// The chain state after the entry `seq`, as a witnessed head received at `received`.
    fn head(&self, seq: u64, received: Timestamp) -> WitnessedHead {
        let e = &self.entries[seq as usize];
        WitnessedHead {
            camera: self.camera.clone(),
            next_seq: seq + 1,
            prev: e.hash(),
            agent_at: received,
            received_at: received,
            tsa: None,
        }
    }

    /// The seq of the last entry whose span begins before `at` (minutes).
    fn last_before(&self, m: i64) -> u64 {
        self.entries
            .iter()
            .filter(|e| e.body().span().is_some_and(|(s, _)| s < t(m, 0)))
            .map(|e| e.seq())
            .max()
            .unwrap()
    }
}

/// A camera's part of the bundle, chosen as the controller chooses it: from the `open` of the
/// first segment meeting the window to the given witnessed head at or after the window's end.
struct Part {
    history: History,
    first: u64,
    last: u64,
}

impl Part {
    fn of(history: History, last: u64) -> Self {
        let (from, to) = (t(FROM, 0), t(TO, 0));
        let window: Vec<&String> = history
            .files
            .iter()
            .filter(|(_, _, s, e)| *s <= to && *e >= from)
            .map(|(n, ..)| n)
            .collect();
        let first = history
            .entries
            .iter()
            .filter(|e| matches!(e.body(), EntryBody::Open(o) if window.contains(&&o.file.as_str().to_owned())))
            .map(|e| e.seq())
            .min()
            .unwrap();
        Part {
            history,
            first,
            last,
        }
    }
}

struct Fixture {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    bundle: PathBuf,
    desk_witnessed: Vec<WitnessedHead>,
}

fn write_signed<T: serde::Serialize + serde::de::DeserializeOwned>(
    path: &Path,
    doc: T,
    by: &StationKey,
) {
    std::fs::write(path, Signed::sign(doc, by).unwrap().to_json().unwrap()).unwrap();
}

fn registry() -> KeyRegistry {
    KeyRegistry::new(
        t(30, 0),
        vec![StationKeys {
            station: station(),
            keys: registered(),
        }],
    )
}

/// The registry as the controller holds it after the rotation: the retired key first.
fn registered() -> Vec<RegisteredKey> {
    vec![
        RegisteredKey {
            key: old_key().public(),
            registered_at: t(-1000, 0),
            retired_at: Some(t(3, 20)),
        },
        RegisteredKey {
            key: new_key().public(),
            registered_at: t(3, 20),
            retired_at: None,
        },
    ]
}

/// The bundle folder `stationwatch-bundle-r1` of `desk` (a gap from 08:03 to 08:05, and in its
/// excerpt a retention deletion of the 07:56 segment, before the excerpt) and `box`.
fn fixture() -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let bundle = root.join("stationwatch-bundle-r1");

    let desk = History::recorded("desk", Some((8, 10)), true);
    let boxcam = History::recorded("box", None, false);

    // Heads: one from before the excerpts (07:58), one inside the window, one at the end of
    // each excerpt (the window's last segment).
    let desk_heads = vec![
        desk.head(4, t(3, 5)),
        desk.head(desk.last_before(10), t(10, 5)),
        desk.head(desk.last_before(16), t(21, 5)),
    ];
    let box_heads = vec![
        boxcam.head(4, t(3, 5)),
        boxcam.head(boxcam.last_before(12), t(12, 5)),
        boxcam.head(boxcam.last_before(16), t(16, 5)),
    ];
    let parts = [
        Part::of(desk, desk_heads[2].next_seq - 1),
        Part::of(boxcam, box_heads[2].next_seq - 1),
    ];
    for p in &parts {
        assert!(p.first > 0, "the excerpt starts after seq 0");
        let dir = bundle.join(p.history.camera.as_str());
        std::fs::create_dir_all(&dir).unwrap();
        let excerpt: String = p.history.entries[p.first as usize..=p.last as usize]
            .iter()
            .map(|e| format!("{}\n", e.line()))
            .collect();
        std::fs::write(dir.join("manifest.jsonl"), excerpt).unwrap();
        assert!(
            !p.history.entries[p.first as usize..=p.last as usize]
                .iter()
                .any(|e| matches!(e.body(), EntryBody::Start(_))),
            "no start entry names the key in the excerpt"
        );
        for (name, bytes, s, e) in &p.history.files {
            if *s <= t(TO, 0) && *e >= t(FROM, 0) {
                std::fs::create_dir_all(dir.join(name).parent().unwrap()).unwrap();
                std::fs::write(dir.join(name), bytes).unwrap();
            }
        }
    }
    let info = serde_json::json!({
        "format": "stationwatch-bundle", "version": 1, "request": "r1",
        "station": "KG-0042", "cameras": ["desk", "box"],
        "from": t(FROM, 0).to_string(), "to": t(TO, 0).to_string(),
        "created_at": t(30, 0).to_string(), "controller_key": controller().public().to_hex(),
    });
    std::fs::write(bundle.join("bundle.json"), info.to_string()).unwrap();
    std::fs::write(bundle.join("REPORT.txt"), "for people\n").unwrap();
    write_signed(&bundle.join("keys.json"), registry(), &controller());
    let heads: Vec<WitnessedHead> = desk_heads.iter().chain(&box_heads).cloned().collect();
    write_signed(
        &bundle.join("witness.json"),
        Witness::new(
            t(30, 0),
            station(),
            Some(t(FROM, 0)),
            Some(t(TO, 0)),
            registered(),
            heads,
        ),
        &controller(),
    );
    Fixture {
        _tmp: tmp,
        root,
        bundle,
        desk_witnessed: desk_heads,
    }
}

/// The folder as the controller's tar: every entry under the top folder.
fn tar_of(dir: &Path, out: &Path) {
    let mut t = tar::Builder::new(std::fs::File::create(out).unwrap());
    t.append_dir_all(dir.file_name().unwrap(), dir).unwrap();
    t.finish().unwrap();
}

fn under_controller(key: &StationKey) -> VerifyOptions {
    let mut trust = TrustInputs::default();
    trust.set_controller_key(&key.public().to_hex()).unwrap();
    VerifyOptions {
        trust,
        ..VerifyOptions::default()
    }
}

/// Runs the binary: exit status and everything it printed.
fn run(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

fn with_controller(path: &Path) -> (i32, String) {
    run(&[
        path.to_str().unwrap(),
        "--controller-key",
        &controller().public().to_hex(),
    ])
}

#[test]
fn a_bundle_under_the_controller_key_is_ok_with_gaps_as_folder_and_as_tar() {
    let f = fixture();
    let opts = under_controller(&controller());
    let tar = f.root.join("bundle.tar");
    tar_of(&f.bundle, &tar);
    for path in [&f.bundle, &tar] {
        let r = verify(path, &opts).unwrap();
        let text = render(&r);
        assert_eq!(r.verdict, Verdict::OkWithGaps, "{text}");
        let (boxcam, desk) = (&r.cameras[0], &r.cameras[1]);
        assert_eq!(
            (boxcam.camera.as_str(), desk.camera.as_str()),
            ("box", "desk")
        );
        assert_eq!(boxcam.verdict, Verdict::Ok, "{text}");
        assert_eq!(desk.verdict, Verdict::OkWithGaps, "{text}");
        // The window touches 12 minute segments (07:59 to 08:11), 2 of desk's are in the gap.
        assert_eq!(
            (boxcam.files_checked, desk.files_checked),
            (12, 10),
            "{text}"
        );
        // The head before the excerpt cannot be checked; the two inside it match.
        assert_eq!((desk.heads_checked, desk.heads_unchecked), (2, 1), "{text}");
        assert!(desk.trust.iter().all(|s| !s.is_empty()), "{text}");
        let (first, last) = desk.excerpt.unwrap();
        assert!(first > 0 && last > first);
        assert!(
            text.contains(&format!("excerpt   seq {first}..{last}")),
            "{text}"
        );
        assert!(text.contains("gap       "), "{text}");
        assert!(text.contains("camera_lost"), "{text}");
        assert!(r.bundle.as_ref().unwrap().controller_files_used);
        // Through the binary.
        let (code, out) = with_controller(path);
        assert_eq!(code, 3, "{out}");
        assert!(out.contains("verdict   OK_WITH_GAPS"), "{out}");
    }
    // The tar's cameras are shown under the tar's own path, not the temporary folder.
    let r = verify(&tar, &opts).unwrap();
    assert!(r.cameras[0].dir.starts_with(&tar), "{:?}", r.cameras[0].dir);
    // One camera only, with --camera: box alone has no gap.
    let (code, out) = run(&[
        tar.to_str().unwrap(),
        "--controller-key",
        &controller().public().to_hex(),
        "--camera",
        "box",
    ]);
    assert_eq!(code, 0, "{out}");
}

#[test]
fn without_an_outside_key_a_consistent_bundle_is_untrusted() {
    let f = fixture();
    let tar = f.root.join("bundle.tar");
    tar_of(&f.bundle, &tar);
    for path in [&f.bundle, &tar] {
        let r = verify(path, &VerifyOptions::default()).unwrap();
        assert_eq!(r.verdict, Verdict::Untrusted, "{}", render(&r));
        assert!(r.cameras.iter().all(|c| c.findings.is_empty()));
        // The bundle's witness is not used without the controller's key.
        assert!(r.cameras.iter().all(|c| c.heads_checked == 0));
        let (code, out) = run(&[path.to_str().unwrap()]);
        assert_eq!(code, 4, "{out}");
        assert!(out.contains("NOT used"), "{out}");
        assert!(out.contains("NOT TRUSTED"), "{out}");
    }
    // bundle.json's own controller_key is no anchor: the files are still unused.
    let info = std::fs::read_to_string(f.bundle.join("bundle.json")).unwrap();
    assert!(info.contains(&controller().public().to_hex()));
    // The station's key given from outside is: the excerpts are signed by it.
    let (code, out) = run(&[
        tar.to_str().unwrap(),
        "--public-key",
        &new_key().public().to_hex(),
    ]);
    assert_eq!(code, 3, "{out}");
}

#[test]
fn bundle_files_signed_by_another_controller_are_refused() {
    let f = fixture();
    let forger = StationKey::from_seed(&[43; 32]);
    let tar = f.root.join("bundle.tar");
    for file in ["keys.json", "witness.json"] {
        let path = f.bundle.join(file);
        let good = std::fs::read(&path).unwrap();
        if file == "keys.json" {
            write_signed(&path, registry(), &forger);
        } else {
            write_signed(
                &path,
                Witness::new(t(30, 0), station(), None, None, registered(), vec![]),
                &forger,
            );
        }
        let e = verify(&f.bundle, &under_controller(&controller())).unwrap_err();
        assert!(e.to_string().contains(file), "{e}");
        assert!(e.to_string().contains("not by the --controller-key"), "{e}");
        tar_of(&f.bundle, &tar);
        let (code, out) = with_controller(&tar);
        assert_eq!(code, 1, "{out}");
        assert!(out.contains(file), "{out}");
        // Under the forger's key the files are read, and the excerpts do not match them.
        let (code, out) = run(&[
            tar.to_str().unwrap(),
            "--controller-key",
            &forger.public().to_hex(),
        ]);
        assert_ne!(code, 0, "{out}");
        assert_ne!(code, 3, "{out}");
        std::fs::write(&path, good).unwrap();
    }
}

#[test]
fn a_changed_byte_or_a_removed_window_segment_fails() {
    let f = fixture();
    let opts = under_controller(&controller());
    let tar = f.root.join("bundle.tar");
    let seg = f.bundle.join("box").join(file_at(t(9, 0)));
    let good = std::fs::read(&seg).unwrap();
    let mut bad = good.clone();
    bad[100] ^= 1;
    std::fs::write(&seg, &bad).unwrap();
    tar_of(&f.bundle, &tar);
    for path in [&f.bundle, &tar] {
        let r = verify(path, &opts).unwrap();
        assert_eq!(r.verdict, Verdict::Failed, "{}", render(&r));
        assert!(matches!(
            r.cameras[0].findings[..],
            [Finding::Manifest(Problem::HashMismatch { .. })]
        ));
        assert_eq!(with_controller(path).0, 5);
    }
    std::fs::remove_file(&seg).unwrap();
    tar_of(&f.bundle, &tar);
    for path in [&f.bundle, &tar] {
        let r = verify(path, &opts).unwrap();
        assert_eq!(r.verdict, Verdict::Failed, "{}", render(&r));
        assert!(matches!(
            r.cameras[0].findings[..],
            [Finding::Manifest(Problem::MissingFile { .. })]
        ));
        assert_eq!(with_controller(path).0, 5);
    }
    // The file the manifest does not list, planted in the bundle.
    std::fs::write(&seg, &good).unwrap();
    let planted = f.bundle.join("box").join(file_at(t(9, 30)));
    std::fs::write(&planted, b"planted").unwrap();
    let r = verify(&f.bundle, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Failed, "{}", render(&r));
    assert!(matches!(
        r.cameras[0].findings[..],
        [Finding::UnlistedFile(_)]
    ));
    std::fs::remove_file(&planted).unwrap();
    assert_eq!(
        verify(&f.bundle, &opts).unwrap().verdict,
        Verdict::OkWithGaps
    );
}

#[test]
fn an_excerpt_cut_short_before_a_witnessed_head_fails() {
    let f = fixture();
    let opts = under_controller(&controller());
    // The desk excerpt cut just before the head witnessed in the window, with the files it no
    // longer lists: a valid chain on its own.
    let head = &f.desk_witnessed[1];
    let m = f.bundle.join("desk/manifest.jsonl");
    let text = std::fs::read_to_string(&m).unwrap();
    let mut kept = Vec::new();
    let mut dropped_files = Vec::new();
    for line in text.lines() {
        let e = stationwatch_protocol::manifest::parse_line(line.as_bytes()).unwrap();
        if e.seq() + 1 >= head.next_seq {
            if let EntryBody::Segment(s) = e.body() {
                dropped_files.push(s.file.as_str().to_owned());
            }
            continue;
        }
        kept.push(line);
    }
    std::fs::write(&m, format!("{}\n", kept.join("\n"))).unwrap();
    for file in &dropped_files {
        let _ = std::fs::remove_file(f.bundle.join("desk").join(file));
    }
    let tar = f.root.join("bundle.tar");
    tar_of(&f.bundle, &tar);
    for path in [&f.bundle, &tar] {
        let r = verify(path, &opts).unwrap();
        let desk = &r.cameras[1];
        assert_eq!(desk.verdict, Verdict::Failed, "{}", render(&r));
        assert!(
            desk.findings.iter().any(|f| matches!(
                f,
                Finding::Witness {
                    problem: Problem::Truncated { .. },
                    ..
                }
            )),
            "{}",
            render(&r)
        );
        assert_eq!(with_controller(path).0, 5);
    }
    // A bundle whose witness is cut the same way, that no outside key anchors: the same folder
    // without --controller-key proves nothing either way.
    assert_eq!(
        verify(&f.bundle, &VerifyOptions::default())
            .unwrap()
            .verdict,
        Verdict::Failed,
        "the cut excerpt leaves the window's end unexplained"
    );
}

#[test]
fn a_listed_camera_missing_or_swapped_fails() {
    let f = fixture();
    let opts = under_controller(&controller());
    let boxdir = f.bundle.join("box");
    let moved = f.root.join("box-elsewhere");
    std::fs::rename(&boxdir, &moved).unwrap();
    let r = verify(&f.bundle, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Failed, "{}", render(&r));
    assert_eq!(r.cameras[0].findings, vec![Finding::MissingCamera]);
    assert_eq!(with_controller(&f.bundle).0, 5);
    // desk's footage in box's folder.
    copy_dir(&f.bundle.join("desk"), &boxdir);
    let r = verify(&f.bundle, &opts).unwrap();
    assert_eq!(r.verdict, Verdict::Failed, "{}", render(&r));
    assert!(r.cameras[0]
        .findings
        .iter()
        .any(|f| matches!(f, Finding::NotTheBundles { .. })));
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            copy_dir(&p, &to.join(e.file_name()));
        } else {
            std::fs::copy(&p, to.join(e.file_name())).unwrap();
        }
    }
}

/// A tar with one hand-written header (name as given, any type), as an attacker writes it.
fn raw_tar(entries: &[(&str, tar::EntryType, &[u8], Option<&str>)]) -> Vec<u8> {
    let mut data = Vec::new();
    {
        let mut t = tar::Builder::new(&mut data);
        for (name, kind, body, link) in entries {
            let mut h = tar::Header::new_ustar();
            h.set_size(body.len() as u64);
            h.set_mode(0o644);
            h.set_entry_type(*kind);
            // `Builder` refuses `..` and absolute names: write the name into the header.
            let name = name.as_bytes();
            h.as_old_mut().name[..name.len()].copy_from_slice(name);
            if let Some(l) = link {
                h.set_link_name(l).unwrap();
            }
            h.set_cksum();
            t.append(&h, *body).unwrap();
        }
        t.finish().unwrap();
    }
    data
}

#[test]
fn a_tar_reaching_outside_or_holding_links_or_corrupt_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let regular = tar::EntryType::Regular;
    let info: &[u8] = b"{}";
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        (
            "dotdot",
            raw_tar(&[
                ("b/bundle.json", regular, info, None),
                ("b/../../evil", regular, b"evil", None),
            ]),
            "unsafe path",
        ),
        (
            "absolute",
            raw_tar(&[("/tmp/evil-absolute", regular, b"evil", None)]),
            "unsafe path",
        ),
        (
            "symlink",
            raw_tar(&[
                ("b/bundle.json", regular, info, None),
                ("b/desk", tar::EntryType::Symlink, b"", Some("/etc")),
            ]),
            "not a regular file",
        ),
        (
            "hardlink",
            raw_tar(&[(
                "b/keys.json",
                tar::EntryType::Link,
                b"",
                Some("/etc/passwd"),
            )]),
            "not a regular file",
        ),
        (
            "two folders",
            raw_tar(&[
                ("b/bundle.json", regular, info, None),
                ("c/bundle.json", regular, info, None),
            ]),
            "outside the bundle's folder",
        ),
        (
            "no bundle.json",
            raw_tar(&[("b/desk/manifest.jsonl", regular, b"", None)]),
            "no bundle.json",
        ),
    ];
    for (what, data, why) in cases {
        let path = tmp.path().join(format!("{what}.tar"));
        std::fs::write(&path, &data).unwrap();
        let e = verify(&path, &VerifyOptions::default()).unwrap_err();
        assert!(e.to_string().contains(why), "{what}: {e}");
        let (code, out) = run(&[path.to_str().unwrap()]);
        assert_eq!(code, 1, "{what}: {out}");
        assert!(!out.contains("panicked"), "{what}: {out}");
    }
    assert!(!tmp.path().join("evil").exists());
    assert!(!Path::new("/tmp/evil-absolute").exists());
    assert!(!std::env::temp_dir().join("evil").exists());

    // A real bundle's tar cut in the middle of a segment, and one with garbage after the
    // first header: errors, never a panic or a verdict.
    let f = fixture();
    let tar = f.root.join("bundle.tar");
    tar_of(&f.bundle, &tar);
    let whole = std::fs::read(&tar).unwrap();
    let cut = f.root.join("cut.tar");
    std::fs::write(&cut, &whole[..whole.len() / 2 + 7]).unwrap();
    let (code, out) = with_controller(&cut);
    assert_eq!(code, 1, "{out}");
    let mut garbage = whole[..512].to_vec();
    garbage.extend(std::iter::repeat_n(0xA5u8, 4096));
    let g = f.root.join("garbage.tar");
    std::fs::write(&g, &garbage).unwrap();
    assert!(verify(&g, &under_controller(&controller())).is_err());
    let (code, out) = with_controller(&g);
    assert_eq!(code, 1, "{out}");
    // A tar whose entries claim more bytes than the file holds.
    let mut big = raw_tar(&[("b/bundle.json", regular, info, None)]);
    big.truncate(1024);
    let mut h = tar::Header::new_ustar();
    h.set_path("b/huge.ts").unwrap();
    h.set_size(1 << 40);
    h.set_cksum();
    big.extend_from_slice(h.as_bytes());
    let p = f.root.join("huge.tar");
    std::fs::write(&p, &big).unwrap();
    let e = verify(&p, &VerifyOptions::default()).unwrap_err();
    assert!(e.to_string().contains("larger than the tar"), "{e}");
}

#[test]
fn a_bad_bundle_json_is_an_error() {
    let f = fixture();
    let opts = under_controller(&controller());
    let info = f.bundle.join("bundle.json");
    for (text, why) in [
        ("not json", "expected"),
        (
            r#"{"format":"other","version":1,"station":"KG-0042","cameras":["desk"],"from":"2026-03-15T08:00:00.000Z","to":"2026-03-15T08:10:00.000Z"}"#,
            "format",
        ),
        (
            r#"{"format":"stationwatch-bundle","version":1,"station":"KG-0042","cameras":["../../etc"],"from":"2026-03-15T08:00:00.000Z","to":"2026-03-15T08:10:00.000Z"}"#,
            "camera",
        ),
        (
            r#"{"format":"stationwatch-bundle","version":1,"station":"KG-0042","cameras":["desk"],"from":"2026-03-15T08:10:00.000Z","to":"2026-03-15T08:00:00.000Z"}"#,
            "ends before it starts",
        ),
    ] {
        std::fs::write(&info, text).unwrap();
        let e = verify(&f.bundle, &opts).unwrap_err();
        assert!(e.to_string().contains(why), "{text}: {e}");
    }
}
