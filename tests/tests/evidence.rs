//! Tamper-evidence end to end: record with the real agent, then change the recordings the ways
//! an adversary (or a broken disk) would, and check that `station-agent verify` says so, names
//! the problem, and exits FAILED (5). The untouched recording verifies with the station's key
//! (OK_WITH_GAPS, 3: the crash between the two runs is a signed gap); without a key it is only
//! UNTRUSTED (4).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use stationwatch_protocol::manifest::{
    parse_manifest, sign_entry, Chain, EntryBody, StationKey, MANIFEST_FILE,
};
use stationwatch_tests::agent_process::{agent_command, config, segments, AgentProcess};
use stationwatch_tests::{have_binary, have_gst_element};

const SOURCE: &str = "source = \"test\"\nwidth = 160\nheight = 120\nfps = 10\nbitrate_kbps = 200";

fn tools_present() -> bool {
    stationwatch_tests::require(
        have_binary("ffprobe") && have_gst_element("x264enc"),
        "x264enc or ffprobe missing (run scripts/install-deps)",
    )
}

/// A recording made once per test binary: (folder holding `rec/` and `agent.toml`, public key).
fn golden() -> &'static (PathBuf, String) {
    static GOLDEN: OnceLock<(PathBuf, String)> = OnceLock::new();
    GOLDEN.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap().keep();
        let storage = dir.join("rec");
        let cfg = config(&storage, 2, &[("cam", SOURCE)]);
        // Two runs with a crash between them: the manifest must explain the downtime.
        let agent = AgentProcess::start(&dir, &cfg).unwrap();
        agent
            .wait_log_count("segment finished", 3, Duration::from_secs(30))
            .unwrap();
        let mut agent = agent;
        agent.kill().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let mut agent = AgentProcess::start(&dir, &cfg).unwrap();
        agent
            .wait_log_count("segment finished", 2, Duration::from_secs(30))
            .unwrap();
        let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
        assert!(status.success());
        let (status, out, err) =
            agent_command(&["key", "--config", dir.join("agent.toml").to_str().unwrap()]).unwrap();
        assert!(status.success(), "{err}");
        let public = out
            .lines()
            .find_map(|l| l.strip_prefix("public key"))
            .map(|k| k.trim().to_owned())
            .expect("public key printed");
        (dir, public)
    })
}

/// A fresh copy of the golden recording's camera folder.
fn copy_of_golden() -> (tempfile::TempDir, PathBuf) {
    let (dir, _) = golden();
    let tmp = tempfile::tempdir().unwrap();
    let status = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.join("rec"))
        .arg(tmp.path())
        .status()
        .unwrap();
    assert!(status.success());
    let cam = tmp.path().join("rec/cam");
    (tmp, cam)
}

/// Verify exit statuses.
const OK_WITH_GAPS: i32 = 3;
const UNTRUSTED: i32 = 4;
const FAILED: i32 = 5;

/// `verify` with the station's key: (accepted = OK or OK_WITH_GAPS, output).
fn verify(path: &Path, extra: &[&str]) -> (bool, String) {
    let (code, out) = verify_code(path, extra);
    (code == 0 || code == OK_WITH_GAPS, out)
}

fn verify_code(path: &Path, extra: &[&str]) -> (i32, String) {
    let (_, key) = golden();
    let mut args = vec![
        "verify",
        path.to_str().unwrap(),
        "--public-key",
        key.as_str(),
    ];
    args.extend_from_slice(extra);
    let (status, out, err) = agent_command(&args).unwrap();
    (status.code().unwrap_or(-1), format!("{out}{err}"))
}

fn seg_files(cam: &Path) -> Vec<PathBuf> {
    segments(cam.parent().unwrap(), "cam")
        .unwrap()
        .into_iter()
        .map(|s| s.path)
        .collect()
}

fn rel(cam: &Path, p: &Path) -> String {
    p.strip_prefix(cam).unwrap().to_str().unwrap().to_owned()
}

fn assert_detected(cam: &Path, needles: &[&str]) {
    let (code, out) = verify_code(cam, &[]);
    assert_eq!(code, FAILED, "verify accepted a tampered recording:\n{out}");
    assert!(out.contains("FAILED"), "{out}");
    for n in needles {
        assert!(out.contains(n), "{n:?} not reported:\n{out}");
    }
}

#[test]
fn untouched_recording_verifies_and_explains_the_crash() {
    if !tools_present() {
        return;
    }
    let (dir, _) = golden();
    let (ok, out) = verify(&dir.join("rec"), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("result    OK"), "{out}");
    assert!(
        out.contains("gap") && out.contains("crash"),
        "crash gap missing:\n{out}"
    );
    assert!(out.contains("after an unclean stop"), "{out}");
    assert!(!out.contains("MISSING"), "{out}");
    assert!(out.contains("verdict   OK_WITH_GAPS"), "{out}");
    // Without a key the chain is consistent, but nothing says who signed it: never OK.
    let (status, out, _) = agent_command(&["verify", dir.join("rec").to_str().unwrap()]).unwrap();
    assert_eq!(status.code(), Some(UNTRUSTED), "{out}");
    assert!(
        out.contains("taken from the manifest or the bundle itself"),
        "{out}"
    );
    assert!(out.contains("verdict   UNTRUSTED"), "{out}");
}

#[test]
fn a_window_outside_the_recording_is_reported_missing() {
    if !tools_present() {
        return;
    }
    let (dir, _) = golden();
    let (ok, out) = verify(
        &dir.join("rec"),
        &[
            "--from",
            "2020-01-01T00:00:00Z",
            "--to",
            "2020-01-01T01:00:00Z",
        ],
    );
    assert!(!ok, "{out}");
    assert!(out.contains("MISSING   2020-01-01T00:00:00.000Z"), "{out}");
}

#[test]
fn deleted_segment_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let victim = seg_files(&cam)[1].clone();
    std::fs::remove_file(&victim).unwrap();
    assert_detected(&cam, &[&format!("file {} is missing", rel(&cam, &victim))]);
}

#[test]
fn one_altered_byte_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let victim = seg_files(&cam)[2].clone();
    let mut bytes = std::fs::read(&victim).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0x01;
    std::fs::write(&victim, bytes).unwrap();
    assert_detected(
        &cam,
        &[&format!(
            "file {} does not match its SHA-256",
            rel(&cam, &victim)
        )],
    );
}

#[test]
fn truncated_segment_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let victim = seg_files(&cam)[0].clone();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&victim)
        .unwrap();
    let len = f.metadata().unwrap().len();
    f.set_len(len / 2).unwrap();
    assert_detected(
        &cam,
        &[&format!("{} has {} bytes", rel(&cam, &victim), len / 2)],
    );
}

#[test]
fn segment_renamed_into_another_slot_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let files = seg_files(&cam);
    let victim = files[1].clone();
    // Same day folder and time, the suffix the recorder gives a clashing name: plausible.
    let name = victim.file_name().unwrap().to_str().unwrap().to_owned();
    let moved = victim.with_file_name(name.replace("Z.ts", "Z.1.ts"));
    std::fs::rename(&victim, &moved).unwrap();
    assert_detected(
        &cam,
        &[
            &format!("file {} is missing", rel(&cam, &victim)),
            &format!("file {} is not listed in the manifest", rel(&cam, &moved)),
        ],
    );
}

#[test]
fn two_swapped_segments_are_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let files = seg_files(&cam);
    let (a, b) = (files[0].clone(), files[1].clone());
    let tmp = cam.join("swap.tmp");
    std::fs::rename(&a, &tmp).unwrap();
    std::fs::rename(&b, &a).unwrap();
    std::fs::rename(&tmp, &b).unwrap();
    let (ok, out) = verify(&cam, &[]);
    assert!(!ok, "{out}");
    for f in [&a, &b] {
        let r = rel(&cam, f);
        assert!(
            out.contains(&format!("file {r} does not match"))
                || out.contains(&format!("file {r} has ")),
            "{r} not reported:\n{out}"
        );
    }
}

#[test]
fn foreign_segment_inserted_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let files = seg_files(&cam);
    // A real, playable segment (here: a copy of another one) under a name inside the timeline.
    let name = files[1]
        .file_name()
        .unwrap()
        .to_str()
        .unwrap()
        .replace("Z.ts", "Z.7.ts");
    let inserted = files[1].with_file_name(name);
    std::fs::copy(&files[2], &inserted).unwrap();
    assert_detected(
        &cam,
        &[&format!(
            "file {} is not listed in the manifest",
            rel(&cam, &inserted)
        )],
    );
}

fn manifest_lines(cam: &Path) -> Vec<String> {
    std::fs::read_to_string(cam.join(MANIFEST_FILE))
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn write_lines(cam: &Path, lines: &[String]) {
    let mut text = lines.join("\n");
    text.push('\n');
    std::fs::write(cam.join(MANIFEST_FILE), text).unwrap();
}

#[test]
fn manifest_entry_removed_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let mut lines = manifest_lines(&cam);
    lines.remove(2);
    write_lines(&cam, &lines);
    assert_detected(
        &cam,
        &[
            "seq 3 follows seq 1, expected 2",
            "prev hash does not match",
        ],
    );
}

#[test]
fn manifest_entry_edited_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let mut lines = manifest_lines(&cam);
    // Move a segment's start one second earlier (still canonical JSON, still plausible).
    let i = lines
        .iter()
        .position(|l| l.contains("\"kind\":\"segment\""))
        .unwrap();
    let start = lines[i].find("\"start\":\"").unwrap() + 9;
    let second = start + 17; // ...THH:MM:S|S.mmmZ
    let digit = lines[i].as_bytes()[second];
    let new = if digit == b'0' { '1' } else { '0' };
    lines[i].replace_range(second..second + 1, &new.to_string());
    write_lines(&cam, &lines);
    assert_detected(
        &cam,
        &[&format!(
            "entry seq {i}: signature is not valid for the station key"
        )],
    );
}

#[test]
fn chain_resigned_with_another_key_is_detected() {
    if !tools_present() {
        return;
    }
    let (_t, cam) = copy_of_golden();
    let parsed = parse_manifest(&std::fs::read(cam.join(MANIFEST_FILE)).unwrap());
    let forger = StationKey::generate().unwrap();
    let first = &parsed.entries[0];
    let mut chain = Chain::genesis(first.station().clone(), first.camera().clone());
    let mut lines = Vec::new();
    for e in &parsed.entries {
        let mut body = e.body().clone();
        if let EntryBody::Start(s) = &mut body {
            s.key = forger.public();
        }
        let signed = sign_entry(&forger, &chain, body).unwrap();
        chain = Chain::after(&signed);
        lines.push(signed.line().to_owned());
    }
    write_lines(&cam, &lines);
    // Self-consistent: without the station's key it is UNTRUSTED (never OK)...
    let (status, out, _) = agent_command(&["verify", cam.to_str().unwrap()]).unwrap();
    assert_eq!(status.code(), Some(UNTRUSTED), "{out}");
    assert!(out.contains("verdict   UNTRUSTED"), "{out}");
    assert!(
        out.contains(&forger.public().fingerprint().to_string()),
        "{out}"
    );
    // ...and FAILED against the station's registered key.
    assert_detected(
        &cam,
        &[
            "entry seq 0: signature is not valid",
            "agent started with key",
        ],
    );
}
