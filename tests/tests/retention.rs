//! Deletion by age: with `delete_after_days = 30`, footage older than 30 days is deleted even
//! though space is plentiful, each deletion entered in the signed manifest (`deleted`, policy
//! `retention`) before the file goes, while new footage is kept and `station-agent verify`
//! accepts the folder with the deleted time explained.
//!
//! The old footage is planted: a schema-1 manifest signed with the station key exactly as the
//! agent writes one (`start`, three `segment`s 40 days ago with their files, `stop`).

use std::path::Path;
use std::time::Duration;

use stationwatch_protocol::manifest::{
    sign_entry, Chain, ClockSync, EntryBody, Hash256, Open, Segment, SegmentFile, Start,
    StationKey, Stop, Timestamp,
};
use stationwatch_protocol::{CameraId, StationId};
use stationwatch_tests::agent_process::{agent_command, manifest_entries, segments, AgentProcess};
use stationwatch_tests::have_gst_element;

const STATION: &str = "AGE-0001";

/// Writes `<storage>/cam/manifest.jsonl` and three 2-second segment files starting at `t0`;
/// returns the planted files (relative to the camera folder).
fn plant_old_footage(
    storage: &Path,
    key: &StationKey,
    t0: chrono::DateTime<chrono::Utc>,
) -> Vec<String> {
    let cam_dir = storage.join("cam");
    let mut chain = Chain::genesis(
        StationId::new(STATION).unwrap(),
        CameraId::new("cam").unwrap(),
    );
    let mut lines = String::new();
    let mut push = |chain: &mut Chain, body: EntryBody| {
        let e = sign_entry(key, chain, body).unwrap();
        lines.push_str(e.line());
        lines.push('\n');
        *chain = Chain::after(&e);
    };
    let ts = |t: chrono::DateTime<chrono::Utc>| Timestamp::from_datetime(t).unwrap();
    push(
        &mut chain,
        EntryBody::Start(Start {
            at: ts(t0),
            agent: "0.1.0".into(),
            key: key.public(),
        }),
    );
    let mut files = Vec::new();
    for i in 0..3 {
        let start = t0 + chrono::Duration::seconds(2 * i);
        let end = start + chrono::Duration::seconds(2);
        let rel = format!(
            "{}/{}.ts",
            start.format("%Y-%m-%d"),
            start.format("%Y%m%dT%H%M%S%.3fZ")
        );
        let bytes: Vec<u8> = (0..4096u32).map(|b| (b * 7 + i as u32) as u8).collect();
        let path = cam_dir.join(&rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        // As the agent writes it: the file announced before it exists, then entered.
        push(
            &mut chain,
            EntryBody::Open(Open {
                at: ts(start),
                file: SegmentFile::new(rel.clone()).unwrap(),
            }),
        );
        std::fs::write(&path, &bytes).unwrap();
        push(
            &mut chain,
            EntryBody::Segment(Segment {
                start: ts(start),
                end: ts(end),
                file: SegmentFile::new(rel.clone()).unwrap(),
                size: bytes.len() as u64,
                sha256: Hash256::of(&bytes),
                clock: Some(ClockSync::Synced),
            }),
        );
        files.push(rel);
    }
    push(
        &mut chain,
        EntryBody::Stop(Stop {
            at: ts(t0 + chrono::Duration::seconds(6)),
        }),
    );
    std::fs::write(cam_dir.join("manifest.jsonl"), lines).unwrap();
    files
}

#[test]
fn footage_older_than_delete_after_days_is_deleted_by_policy_and_verifies() {
    if !stationwatch_tests::require(
        have_gst_element("x264enc"),
        "x264enc missing (run scripts/install-deps)",
    ) {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let storage = work.path().join("rec");
    let key_path = work.path().join("station.key");
    let key = StationKey::generate().unwrap();
    key.save_new(&key_path).unwrap();
    let t0 = chrono::Utc::now() - chrono::Duration::days(40);
    let old = plant_old_footage(&storage, &key, t0);
    // The planted folder verifies before the agent touches it: the test's manifest is a real one.
    let pubkey = key.public().to_hex();
    let (st, out, err) =
        agent_command(&["verify", storage.to_str().unwrap(), "--public-key", &pubkey]).unwrap();
    assert!(
        st.success(),
        "planted manifest does not verify:\n{out}{err}"
    );

    let cfg = format!(
        "[station]\nid = \"{STATION}\"\nkey_file = \"{}\"\n\n[storage]\npath = \"{}\"\n\
         segment_seconds = 2\n\n[retention]\nkeep_days = 7\ndelete_after_days = 30\n\
         check_interval_seconds = 1\n\n[[camera]]\nid = \"cam\"\nsource = \"test\"\n\
         width = 160\nheight = 120\nfps = 10\nbitrate_kbps = 100\n",
        key_path.display(),
        storage.display()
    );
    let mut agent = AgentProcess::start(work.path(), &cfg).unwrap();
    agent
        .wait_log_count("segment deleted by policy", 3, Duration::from_secs(30))
        .unwrap_or_else(|e| panic!("{e}\n{}", agent.log()));
    // Let the agent record a few new segments, then stop it cleanly.
    let started = chrono::Utc::now();
    std::thread::sleep(Duration::from_secs(5));
    let (status, _) = agent.terminate(Duration::from_secs(10)).unwrap();
    assert!(status.success(), "{}", agent.log());

    for rel in &old {
        assert!(
            !storage.join("cam").join(rel).exists(),
            "{rel} older than 30 days still on disk"
        );
    }
    let kept = segments(&storage, "cam").unwrap();
    assert!(
        kept.iter()
            .filter(|s| s.start > started - chrono::Duration::seconds(10))
            .count()
            >= 2,
        "new footage not kept: {kept:?}"
    );
    assert!(
        kept.iter()
            .all(|s| s.start > t0 + chrono::Duration::days(1)),
        "old footage left: {kept:?}"
    );

    let entries = manifest_entries(&storage, "cam").unwrap();
    let deleted: Vec<_> = entries.iter().filter(|e| e["kind"] == "deleted").collect();
    assert_eq!(deleted.len(), 3, "{deleted:?}");
    for (d, rel) in deleted.iter().zip(&old) {
        assert_eq!(d["policy"], "retention", "{d}");
        assert_eq!(d["file"], rel.as_str(), "{d}");
        assert_eq!(d["detail"], "older than 30 days", "{d}");
    }
    // Each `deleted` entry comes after the new run's `start`: written by this agent, not planted.
    let new_start = entries.iter().rposition(|e| e["kind"] == "start").unwrap();
    assert!(
        entries.iter().position(|e| e["kind"] == "deleted").unwrap() > new_start,
        "{entries:?}"
    );

    let (st, out, err) =
        agent_command(&["verify", storage.to_str().unwrap(), "--public-key", &pubkey]).unwrap();
    let report = format!("{out}{err}");
    // The deleted time and the downtime before this run are explained by signed entries.
    assert_eq!(st.code(), Some(3), "verify is not OK_WITH_GAPS:\n{report}");
    assert!(report.contains("by policy retention"), "{report}");
}
