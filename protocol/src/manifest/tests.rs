//! Tests of the manifest format: tamper detection, torn tails, coverage, file checks, and the
//! worked example in `docs/manifest.md`.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::ids::{CameraId, StationId};

// ---------------------------------------------------------------------------------------------
// Fixtures

fn key() -> StationKey {
    StationKey::from_seed(&[7; 32])
}

fn other_key() -> StationKey {
    StationKey::from_seed(&[8; 32])
}

fn station() -> StationId {
    StationId::new("KG-0042").unwrap()
}

fn cam(name: &str) -> CameraId {
    CameraId::new(name).unwrap()
}

/// 2026-11-21T08:00:00.000Z plus `secs` seconds.
fn t(secs: i64) -> Timestamp {
    Timestamp::from_unix_ms(1_795_248_000_000 + secs * 1000).unwrap()
}

fn file_name(start: Timestamp) -> String {
    let d = start.to_datetime();
    format!(
        "{}/{}.ts",
        d.format("%Y-%m-%d"),
        d.format("%Y%m%dT%H%M%S%.3fZ")
    )
}

/// Bytes of the fake segment file named `file`.
fn content(file: &str) -> Vec<u8> {
    file.as_bytes().repeat(50)
}

fn segment(start: i64, end: i64) -> EntryBody {
    let file = file_name(t(start));
    let bytes = content(&file);
    EntryBody::Segment(Segment {
        start: t(start),
        end: t(end),
        file: SegmentFile::new(file).unwrap(),
        size: bytes.len() as u64,
        sha256: Hash256::of(&bytes),
        clock: None,
    })
}

/// A schema 2 segment: `open` first, then the segment with its clock state.
fn announced_segment(w: &mut Writer, start: i64, end: i64, clock: ClockSync) {
    let EntryBody::Segment(mut s) = segment(start, end) else {
        unreachable!()
    };
    s.clock = Some(clock);
    w.push(EntryBody::Open(Open {
        at: t(start),
        file: s.file.clone(),
    }))
    .push(EntryBody::Segment(s));
}

fn gap(start: i64, end: i64, reason: GapReason, detail: &str) -> EntryBody {
    EntryBody::Gap(Gap {
        start: t(start),
        end: t(end),
        reason,
        detail: detail.to_string(),
    })
}

fn start_body(at: i64, key: &StationKey) -> EntryBody {
    EntryBody::Start(Start {
        at: t(at),
        agent: "0.1.0".to_string(),
        key: key.public(),
    })
}

/// A manifest being written, as the agent would. Most tests write schema 1 (what older agents
/// wrote, which must keep verifying); [`Writer::current`] writes the current schema.
struct Writer {
    key: StationKey,
    chain: Chain,
    entries: Vec<SignedEntry>,
    bytes: Vec<u8>,
    version: u64,
}

impl Writer {
    /// A schema 1 writer (an agent of the first release).
    fn new(key: &StationKey, camera: &str) -> Self {
        Writer {
            key: key.clone(),
            chain: Chain::genesis(station(), cam(camera)),
            entries: Vec::new(),
            bytes: Vec::new(),
            version: 1,
        }
    }

    /// A writer of the current schema, through [`sign_entry`].
    fn current(key: &StationKey, camera: &str) -> Self {
        Writer {
            version: SCHEMA_VERSION,
            ..Writer::new(key, camera)
        }
    }

    fn push(&mut self, body: EntryBody) -> &mut Self {
        if self.version != SCHEMA_VERSION {
            body.valid_in_version(self.version).unwrap();
            return self.push_raw(body);
        }
        let e = sign_entry(&self.key, &self.chain, body).unwrap();
        self.bytes.extend_from_slice(e.line().as_bytes());
        self.bytes.push(b'\n');
        self.chain = Chain::after(&e);
        self.entries.push(e);
        self
    }

    /// Signs an entry without `sign_entry`'s checks (to test the verifier on a bad writer).
    fn push_raw(&mut self, body: EntryBody) -> &mut Self {
        let entry = Entry {
            version: self.version,
            seq: self.chain.next_seq,
            prev: self.chain.prev,
            station: self.chain.station.clone(),
            camera: self.chain.camera.clone(),
            body,
        };
        let sig = self.key.sign(&entry.canonical_bytes().unwrap());
        let e = SignedEntry::assemble(entry, sig).unwrap();
        self.bytes.extend_from_slice(e.line().as_bytes());
        self.bytes.push(b'\n');
        self.chain = Chain::after(&e);
        self.entries.push(e);
        self
    }
}

/// A realistic manifest: start, segments, a camera loss, a retention deletion, a clean restart.
fn fixture_with(key: &StationKey, camera: &str) -> Writer {
    let mut w = Writer::new(key, camera);
    w.push(start_body(0, key)) // 0
        .push(segment(1, 61)) // 1
        .push(segment(61, 121)) // 2
        .push(segment(121, 181)) // 3
        .push(gap(181, 300, GapReason::CameraLost, "rtsp: timeout")) // 4
        .push(segment(300, 360)); // 5
    let EntryBody::Segment(first) = w.entries[1].body().clone() else {
        unreachable!()
    };
    w.push(EntryBody::Deleted(Deleted {
        at: t(365),
        target: 1,
        file: first.file,
        sha256: first.sha256,
        policy: DeletionPolicy::Retention,
        detail: "older than 30 days".to_string(),
    })) // 6
    .push(segment(360, 420)) // 7
    .push(EntryBody::Stop(Stop { at: t(421) })) // 8
    .push(start_body(430, key)) // 9
    .push(gap(420, 432, GapReason::AgentRestart, "")) // 10
    .push(segment(432, 492)) // 11
    .push(segment(492, 552)); // 12
    w
}

fn fixture() -> Writer {
    fixture_with(&key(), "desk")
}

fn lines_of(bytes: &[u8]) -> Vec<Vec<u8>> {
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(|l| l.to_vec())
        .collect()
}

fn problems(bytes: &[u8], pk: &PublicKey) -> Vec<Problem> {
    parse_manifest(bytes).verify(pk)
}

// ---------------------------------------------------------------------------------------------
// The valid case

#[test]
fn valid_manifest_has_no_problems() {
    let w = fixture();
    let parsed = parse_manifest(&w.bytes);
    assert_eq!(parsed.problems, vec![]);
    assert_eq!(parsed.entries, w.entries);
    assert_eq!(parsed.verify(&key().public()), vec![]);
    assert_eq!(check_head(&parsed.entries, &w.chain), None);
    // An empty manifest has no problems and no head.
    assert_eq!(problems(b"", &key().public()), vec![]);
}

#[test]
fn line_layout_is_canonical_json_with_sig_last() {
    let w = fixture();
    let e = &w.entries[1];
    let line = e.line();
    assert!(line.starts_with(r#"{"v":1,"seq":1,"prev":""#), "{line}");
    assert!(line.contains(r#","station":"KG-0042","camera":"desk","kind":"segment","start":"2026-11-21T08:00:01.000Z","end":"2026-11-21T08:01:01.000Z","file":"2026-11-21/20261121T080001.000Z.ts","size":"#));
    let sig_at = line.len() - 138;
    assert_eq!(&line[sig_at..sig_at + 8], r#","sig":""#);
    assert!(line.ends_with("\"}"));
    let mut signed = line.as_bytes()[..sig_at].to_vec();
    signed.push(b'}');
    assert_eq!(signed, e.entry().canonical_bytes().unwrap());
    assert_eq!(e.signed_bytes(), signed);
    assert_eq!(*w.entries[2].prev(), Hash256::of(line.as_bytes()));
    assert_eq!(*w.entries[0].prev(), GENESIS_PREV);
    assert_eq!(GENESIS_PREV.to_hex(), "0".repeat(64));
}

#[test]
fn free_text_is_escaped_like_rfc8785() {
    let mut w = Writer::new(&key(), "desk");
    w.push(start_body(0, &key())).push(gap(
        1,
        2,
        GapReason::Schedule,
        "quote\" backslash\\ nl\n tab\t nul\u{0} del\u{7f} slash/ é ∑ 😀",
    ));
    let line = w.entries[1].line();
    assert!(
        line.contains(r#""detail":"quote\" backslash\\ nl\n tab\t nul\u0000 del"#),
        "{line}"
    );
    assert!(line.contains("\u{7f} slash/ é ∑ 😀\",\"sig\""), "{line}");
    assert_eq!(problems(&w.bytes, &key().public()), vec![]);
}

// ---------------------------------------------------------------------------------------------
// Tampering

#[test]
fn removed_entry_is_detected() {
    let w = fixture();
    let mut lines = lines_of(&w.bytes);
    lines.remove(3);
    let p = problems(&lines.concat(), &key().public());
    assert_eq!(
        p,
        vec![
            Problem::SeqJump {
                expected: 3,
                found: 4
            },
            Problem::ChainBroken { seq: 4 },
        ]
    );
}

#[test]
fn first_entry_removed_is_detected() {
    let w = fixture();
    let lines = lines_of(&w.bytes);
    let p = problems(&lines[1..].concat(), &key().public());
    assert_eq!(p, vec![Problem::NotFromGenesis { first_seq: 1 }]);
}

#[test]
fn one_byte_edit_is_detected() {
    let w = fixture();
    // Change one digit of segment 5's size: still valid, canonical JSON, but signed differently.
    let line5 = w.entries[5].line();
    let at = line5.find(r#""size":"#).unwrap() + 7;
    let offset: usize = lines_of(&w.bytes)[..5].iter().map(Vec::len).sum::<usize>() + at;
    let mut bytes = w.bytes.clone();
    bytes[offset] = if bytes[offset] == b'9' {
        b'8'
    } else {
        bytes[offset] + 1
    };
    let p = problems(&bytes, &key().public());
    assert_eq!(
        p,
        vec![
            Problem::BadSignature { seq: 5 },
            Problem::ChainBroken { seq: 6 }
        ]
    );

    // Change one character of the signature.
    let mut bytes = w.bytes.clone();
    let end_of_line2: usize = lines_of(&w.bytes)[..3].iter().map(Vec::len).sum();
    let i = end_of_line2 - 5; // inside the sig hex of seq 2
    bytes[i] = if bytes[i] == b'0' { b'1' } else { b'0' };
    let p = problems(&bytes, &key().public());
    assert_eq!(
        p,
        vec![
            Problem::BadSignature { seq: 2 },
            Problem::ChainBroken { seq: 3 }
        ]
    );

    // Change the case of a hex digit: same value, not canonical.
    let mut bytes = w.bytes.clone();
    let j = (0..end_of_line2)
        .rev()
        .find(|&k| (b'a'..=b'f').contains(&bytes[k]))
        .unwrap();
    bytes[j] = bytes[j].to_ascii_uppercase();
    let p = problems(&bytes, &key().public());
    assert!(
        matches!(
            p[0],
            Problem::MalformedLine {
                line: 3,
                error: LineError::Invalid(_),
                ..
            }
        ),
        "{p:?}"
    );
    assert!(p.contains(&Problem::SeqJump {
        expected: 2,
        found: 3
    }));
}

#[test]
fn swapped_entries_are_detected() {
    let w = fixture();
    let mut lines = lines_of(&w.bytes);
    lines.swap(2, 3);
    let p = problems(&lines.concat(), &key().public());
    for expected in [
        Problem::SeqJump {
            expected: 2,
            found: 3,
        },
        Problem::ChainBroken { seq: 3 },
        Problem::SeqJump {
            expected: 4,
            found: 2,
        },
        Problem::ChainBroken { seq: 2 },
        Problem::TimeWentBackwards {
            seq: 2,
            by_ms: 120_000,
        },
        Problem::SeqJump {
            expected: 3,
            found: 4,
        },
        Problem::ChainBroken { seq: 4 },
    ] {
        assert!(p.contains(&expected), "{expected:?} missing from {p:?}");
    }
}

#[test]
fn inserted_entries_are_detected() {
    let w = fixture();

    // A forged entry made without the key, chained correctly after seq 2.
    let forger = other_key();
    let chain = Chain::after(&w.entries[2]);
    let forged = Writer {
        chain,
        ..Writer::new(&forger, "desk")
    }
    .push(segment(130, 140))
    .entries[0]
        .clone();
    let mut lines = lines_of(&w.bytes);
    lines.insert(3, format!("{}\n", forged.line()).into_bytes());
    let p = problems(&lines.concat(), &key().public());
    assert_eq!(
        p,
        vec![
            Problem::BadSignature { seq: 3 },
            Problem::SeqJump {
                expected: 4,
                found: 3
            },
            Problem::ChainBroken { seq: 3 },
            Problem::TimeWentBackwards {
                seq: 3,
                by_ms: 19_000
            },
        ]
    );

    // A genuine entry of another camera of the same station (valid signature).
    let boxes = fixture_with(&key(), "boxes");
    let mut lines = lines_of(&w.bytes);
    lines.insert(5, format!("{}\n", boxes.entries[5].line()).into_bytes());
    let p = problems(&lines.concat(), &key().public());
    assert!(p.contains(&Problem::ForeignCamera {
        seq: 5,
        expected: cam("desk"),
        found: cam("boxes")
    }));
    assert!(p.contains(&Problem::ChainBroken { seq: 5 }));
    assert!(!p.iter().any(|x| matches!(x, Problem::BadSignature { .. })));

    // A replayed line of the same manifest.
    let mut lines = lines_of(&w.bytes);
    let dup = lines[7].clone();
    lines.insert(8, dup);
    let p = problems(&lines.concat(), &key().public());
    assert!(p.contains(&Problem::SeqJump {
        expected: 8,
        found: 7
    }));
    assert!(p.contains(&Problem::DuplicateFile {
        seq: 7,
        first_seq: 7,
        file: SegmentFile::new(file_name(t(360))).unwrap()
    }));
}

#[test]
fn chain_resigned_with_another_key_fails_against_the_station_key() {
    let real = key();
    let w = fixture_with(&other_key(), "desk");
    let forged_pk = other_key().public();
    // Internally consistent ...
    assert_eq!(problems(&w.bytes, &forged_pk), vec![]);
    // ... but not the station's.
    let p = problems(&w.bytes, &real.public());
    for seq in 0..w.entries.len() as u64 {
        assert!(
            p.contains(&Problem::BadSignature { seq }),
            "seq {seq}: {p:?}"
        );
    }
    for seq in [0, 9] {
        assert!(p.contains(&Problem::ForeignKey {
            seq,
            expected: real.public().fingerprint(),
            found: forged_pk.fingerprint(),
        }));
    }
    assert_eq!(p.len(), w.entries.len() + 2);
}

#[test]
fn truncated_end_is_caught_by_the_known_head() {
    let w = fixture();
    let lines = lines_of(&w.bytes);
    let cut = lines[..lines.len() - 2].concat();
    // The remaining chain is intact on its own ...
    assert_eq!(problems(&cut, &key().public()), vec![]);
    // ... but shorter than the head the agent reported.
    let parsed = parse_manifest(&cut);
    assert_eq!(
        check_head(&parsed.entries, &w.chain),
        Some(Problem::Truncated {
            expected_last: 12,
            found_last: Some(10)
        })
    );
    // A different last entry (a fork) is caught too.
    let mut fork = Writer::new(&key(), "desk");
    for e in &w.entries[..12] {
        fork.push(e.body().clone());
    }
    fork.push(segment(492, 550));
    assert_eq!(
        check_head(&fork.entries, &w.chain),
        Some(Problem::HeadMismatch { seq: 12 })
    );
    // A longer manifest still contains the head.
    let mut longer = fixture();
    longer.push(segment(552, 612));
    assert_eq!(check_head(&longer.entries, &w.chain), None);
}

#[test]
fn station_and_seq_overflow_are_checked() {
    let w = fixture();
    let mut other = Writer::new(&key(), "desk");
    other.chain.station = StationId::new("KG-0043").unwrap();
    other.chain.next_seq = 13;
    other.chain.prev = w.chain.prev;
    other.push(segment(552, 612));
    let mut bytes = w.bytes.clone();
    bytes.extend_from_slice(&other.bytes);
    assert_eq!(
        problems(&bytes, &key().public()),
        vec![Problem::ForeignStation {
            seq: 13,
            expected: station(),
            found: StationId::new("KG-0043").unwrap()
        }]
    );
    let mut end = Writer::new(&key(), "desk");
    end.chain.next_seq = u64::MAX;
    assert!(matches!(
        sign_entry(&key(), &end.chain, segment(0, 1)),
        Err(SignError::SeqExhausted)
    ));
}

// ---------------------------------------------------------------------------------------------
// Reading: torn tail and malformed lines

#[test]
fn torn_last_line_is_reported_not_accepted() {
    let w = fixture();
    let lines = lines_of(&w.bytes);
    let last_offset = (w.bytes.len() - lines.last().unwrap().len()) as u64;

    // Cut in the middle of the last line.
    let cut = &w.bytes[..w.bytes.len() - 40];
    let parsed = parse_manifest(cut);
    assert_eq!(parsed.entries.len(), 12);
    assert_eq!(
        parsed.problems,
        vec![Problem::TornTail {
            offset: last_offset
        }]
    );
    assert_eq!(parsed.torn_tail(), Some(last_offset));
    assert_eq!(
        parsed.verify(&key().public()),
        vec![Problem::TornTail {
            offset: last_offset
        }]
    );

    // A complete line whose '\n' never reached the disk is not accepted either.
    let parsed = parse_manifest(&w.bytes[..w.bytes.len() - 1]);
    assert_eq!(parsed.entries.len(), 12);
    assert_eq!(
        parsed.problems,
        vec![Problem::TornTail {
            offset: last_offset
        }]
    );

    // Zeros after a crash (delayed allocation), with or without a newline.
    for tail in [&b"\0\0\0\0\0\0"[..], b"\0\0\0\n"] {
        let mut bytes = w.bytes.clone();
        bytes.extend_from_slice(tail);
        let parsed = parse_manifest(&bytes);
        assert_eq!(parsed.entries.len(), 13);
        assert_eq!(
            parsed.problems,
            vec![Problem::TornTail {
                offset: w.bytes.len() as u64
            }]
        );
    }

    // Cut points (all in the last lines, every 7th before): no panic, never accepted silently.
    let len = w.bytes.len();
    for n in (0..len).filter(|n| n % 7 == 0 || n + 600 > len) {
        let parsed = parse_manifest(&w.bytes[..n]);
        let complete_lines = w.bytes[..n].iter().filter(|&&b| b == b'\n').count();
        assert_eq!(parsed.entries.len(), complete_lines);
        let at_boundary = n == 0 || w.bytes[n - 1] == b'\n';
        assert_eq!(parsed.torn_tail().is_some(), !at_boundary, "cut at {n}");
    }
}

#[test]
fn malformed_middle_lines_are_each_reported() {
    let w = fixture();
    let mut lines = lines_of(&w.bytes);
    // Non-canonical: a space after the first colon.
    let spaced = String::from_utf8(lines[2].clone())
        .unwrap()
        .replacen("\"v\":1", "\"v\": 1", 1);
    lines[2] = spaced.into_bytes();
    // Unknown schema version.
    lines[4] = String::from_utf8(lines[4].clone())
        .unwrap()
        .replacen("\"v\":1", "\"v\":3", 1)
        .into_bytes();
    // Not UTF-8, and an empty line.
    lines.insert(6, b"\xff\xfe\n".to_vec());
    lines.insert(7, b"\n".to_vec());
    let bytes = lines.concat();
    let parsed = parse_manifest(&bytes);
    let offset = |i: usize| lines[..i].iter().map(Vec::len).sum::<usize>() as u64;
    assert_eq!(
        parsed.problems,
        vec![
            Problem::MalformedLine {
                line: 3,
                offset: offset(2),
                error: LineError::NonCanonical
            },
            Problem::MalformedLine {
                line: 5,
                offset: offset(4),
                error: LineError::UnsupportedVersion { found: 3 }
            },
            Problem::MalformedLine {
                line: 7,
                offset: offset(6),
                error: LineError::NotUtf8
            },
            Problem::MalformedLine {
                line: 8,
                offset: offset(7),
                error: LineError::Invalid("EOF while parsing a value at line 1 column 0".into())
            },
        ]
    );
    assert_eq!(parsed.entries.len(), 11);

    // Unknown fields and a misplaced sig are not canonical either.
    let line = w.entries[3].line();
    let extra = line.replacen("\"kind\"", "\"x\":0,\"kind\"", 1);
    assert_eq!(parse_line(extra.as_bytes()), Err(LineError::NonCanonical));
    let sig_at = line.len() - 138;
    let moved = format!(
        "{{{},{}",
        &line[sig_at + 1..line.len() - 1],
        &line[1..sig_at]
    ) + "}";
    assert_eq!(parse_line(moved.as_bytes()), Err(LineError::NonCanonical));
    // A bad file name is refused when reading.
    let bad = line.replacen("\"file\":\"2026", "\"file\":\"../2026", 1);
    assert!(matches!(
        parse_line(bad.as_bytes()),
        Err(LineError::Invalid(m)) if m.contains("starts with '.'")
    ));
}

#[test]
fn resume_point_follows_the_torn_tail_rule() {
    let w = fixture();
    let (s, c) = (station(), cam("desk"));

    // Clean end after a segment: an unclean stop if the agent starts now.
    let r = resume_point(&w.bytes, &s, &c).unwrap();
    assert_eq!(r.chain, w.chain);
    assert_eq!(r.truncate_to, None);
    assert_eq!(r.restart_reason(), Some(GapReason::Crash));
    assert_eq!(r.timeline_end(), Some(t(552)));

    // Torn: truncate to the last complete line, chain after it, then append: valid again.
    let torn = &w.bytes[..w.bytes.len() - 30];
    let r = resume_point(torn, &s, &c).unwrap();
    let keep = r.truncate_to.unwrap() as usize;
    assert_eq!(r.chain, Chain::after(&w.entries[11]));
    let mut bytes = torn[..keep].to_vec();
    let e = sign_entry(&key(), &r.chain, EntryBody::Stop(Stop { at: t(600) })).unwrap();
    bytes.extend_from_slice(e.line().as_bytes());
    bytes.push(b'\n');
    assert_eq!(problems(&bytes, &key().public()), vec![]);

    // Complete but garbage final line is torn too.
    let mut junk = w.bytes.clone();
    junk.extend_from_slice(b"\0\0\n");
    let r = resume_point(&junk, &s, &c).unwrap();
    assert_eq!(r.truncate_to, Some(w.bytes.len() as u64));
    assert_eq!(r.chain, w.chain);

    // After a clean stop: a restart.
    let mut stopped = fixture();
    stopped.push(EntryBody::Stop(Stop { at: t(560) }));
    let r = resume_point(&stopped.bytes, &s, &c).unwrap();
    assert_eq!(r.restart_reason(), Some(GapReason::AgentRestart));

    // New, torn-only and foreign manifests.
    let r = resume_point(b"", &s, &c).unwrap();
    assert_eq!(r.chain, Chain::genesis(s.clone(), c.clone()));
    assert_eq!((r.truncate_to, r.restart_reason()), (None, None));
    let r = resume_point(b"{\"v\":1,\"se", &s, &c).unwrap();
    assert_eq!((r.truncate_to, r.chain.next_seq), (Some(0), 0));
    assert!(matches!(
        resume_point(&w.bytes, &s, &cam("boxes")),
        Err(ResumeError::Foreign { .. })
    ));
    // A corrupt last complete line (valid JSON, not an entry) is refused, not chained onto.
    let mut bad = w.bytes.clone();
    bad.extend_from_slice(b"{\"v\":1}\n");
    assert!(matches!(
        resume_point(&bad, &s, &c),
        Err(ResumeError::LastLine { .. })
    ));

    // `Chain::from_last_line` agrees.
    let last = w.entries[12].line();
    assert_eq!(Chain::from_last_line(last).unwrap(), w.chain);
    assert!(Chain::from_last_line("{").is_err());
}

// ---------------------------------------------------------------------------------------------
// Content checks

#[test]
fn deletions_must_match_an_earlier_segment() {
    let w = fixture();
    let EntryBody::Segment(s2) = w.entries[2].body().clone() else {
        unreachable!()
    };
    let del = |target: u64, file: &SegmentFile, sha256: Hash256| {
        EntryBody::Deleted(Deleted {
            at: t(600),
            target,
            file: file.clone(),
            sha256,
            policy: DeletionPolicy::FreeSpace,
            detail: "free-space floor".into(),
        })
    };
    let mut v = fixture();
    v.push(del(2, &s2.file, s2.sha256)) // 13: valid
        .push(del(2, &s2.file, s2.sha256)) // 14: again
        .push(del(4, &s2.file, s2.sha256)) // 15: a gap
        .push(del(3, &s2.file, s2.sha256)) // 16: other file
        .push(del(
            5,
            &SegmentFile::new(file_name(t(300))).unwrap(),
            s2.sha256,
        )) // 17: hash
        .push_raw(del(99, &s2.file, s2.sha256)); // 18: unknown
    let p = problems(&v.bytes, &key().public());
    let bad = |seq, target, fault| Problem::BadDeletion { seq, target, fault };
    assert_eq!(
        p,
        vec![
            bad(14, 2, DeletionFault::AlreadyDeleted),
            bad(15, 4, DeletionFault::NotASegment),
            bad(16, 3, DeletionFault::FileMismatch),
            bad(17, 5, DeletionFault::HashMismatch),
            bad(18, 99, DeletionFault::UnknownTarget),
        ]
    );
    let present: Vec<u64> = present_segments(&v.entries)
        .iter()
        .map(|e| e.seq())
        .collect();
    assert_eq!(present, vec![3, 5, 7, 11, 12]);
    assert!(matches!(
        sign_entry(&key(), &w.chain, del(13, &s2.file, s2.sha256)),
        Err(SignError::TargetNotEarlier {
            seq: 13,
            target: 13
        })
    ));
}

#[test]
fn time_must_move_forward() {
    let mut w = fixture();
    w.push(segment(552, 612)) // 13 fine
        .push(segment(611, 671)) // 14 within tolerance (1 s overlap)
        .push(segment(600, 700)) // 15 back 71 s
        .push_raw(segment(800, 790)); // 16 ends before it starts
    assert_eq!(
        problems(&w.bytes, &key().public()),
        vec![
            Problem::TimeWentBackwards {
                seq: 15,
                by_ms: 71_000
            },
            Problem::EndBeforeStart { seq: 16 },
        ]
    );
    assert!(matches!(
        sign_entry(&key(), &w.chain, segment(900, 899)),
        Err(SignError::EndBeforeStart { .. })
    ));
    // A start entry must name the signing key.
    assert!(matches!(
        sign_entry(&key(), &w.chain, start_body(900, &other_key())),
        Err(SignError::StartKeyMismatch { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Coverage

#[test]
fn coverage_explains_every_moment_of_the_window() {
    let w = fixture();
    let c = coverage(&w.entries, t(0), t(552));
    assert_eq!(
        c.segments.iter().map(|s| s.seq).collect::<Vec<_>>(),
        vec![2, 3, 5, 7, 11, 12]
    );
    assert_eq!(
        c.gaps
            .iter()
            .map(|g| (g.seq, g.gap.reason))
            .collect::<Vec<_>>(),
        vec![(4, GapReason::CameraLost), (10, GapReason::AgentRestart)]
    );
    assert_eq!(c.deleted.len(), 1);
    assert_eq!(
        (
            c.deleted[0].seq,
            c.deleted[0].deletion_seq,
            c.deleted[0].policy
        ),
        (1, 6, DeletionPolicy::Retention)
    );
    // 1 s before the first segment is within tolerance.
    assert_eq!(c.unexplained, vec![]);
    assert_eq!(c.unclean_starts, vec![]);
    assert_eq!(c.recorded_ms(), (552 - 432 + 420 - 300 + 181 - 61) * 1000);
    assert!(!c.is_complete());

    // A window inside one stretch of segments is complete.
    let c = coverage(&w.entries, t(70), t(170));
    assert!(c.is_complete());
    assert_eq!(c.recorded_ms(), 100_000);

    // Time past the end, and a removed segment, are unexplained.
    let mut cut = w.entries.clone();
    cut.remove(5);
    let c = coverage(&cut, t(200), t(700));
    assert_eq!(
        c.unexplained,
        vec![
            Span {
                start: t(300),
                end: t(360)
            },
            Span {
                start: t(552),
                end: t(700)
            }
        ]
    );
    assert_eq!(c.unexplained_ms(), 208_000);
}

#[test]
fn coverage_reports_unclean_starts() {
    let mut w = fixture();
    // Agent dies after seq 12 without `stop`, then starts again.
    w.push(start_body(600, &key()))
        .push(gap(552, 601, GapReason::Crash, "no stop entry"))
        .push(segment(601, 661));
    assert_eq!(problems(&w.bytes, &key().public()), vec![]);
    let c = coverage(&w.entries, t(0), t(661));
    assert_eq!(
        c.unclean_starts,
        vec![UncleanStart {
            seq: 13,
            at: t(600)
        }]
    );
    assert_eq!(c.unexplained, vec![]);
}

// ---------------------------------------------------------------------------------------------
// Segment files

struct FailingReader;
impl std::io::Read for FailingReader {
    fn read(&mut self, _: &mut [u8]) -> std::io::Result<usize> {
        Err(std::io::Error::other("disk on fire"))
    }
}

#[test]
fn segment_files_are_checked_by_size_and_hash() {
    let w = fixture();
    let e = &w.entries[3];
    let EntryBody::Segment(s) = e.body() else {
        unreachable!()
    };
    let good = content(s.file.as_str());
    assert_eq!(check_segment_file(e, &good[..]), Ok(()));

    let mut edited = good.clone();
    edited[10] ^= 1;
    assert_eq!(
        check_segment_file(e, &edited[..]),
        Err(Problem::HashMismatch {
            seq: 3,
            file: s.file.clone()
        })
    );
    assert_eq!(
        check_segment_file(e, &good[1..]),
        Err(Problem::SizeMismatch {
            seq: 3,
            file: s.file.clone(),
            expected: good.len() as u64,
            found: good.len() as u64 - 1
        })
    );
    assert!(matches!(
        check_segment_file(e, FailingReader),
        Err(Problem::Unreadable { seq: 3, .. })
    ));
    assert_eq!(
        check_segment_file(&w.entries[4], &good[..]),
        Err(Problem::NotASegment { seq: 4 })
    );

    // In a directory: present, missing.
    let dir = std::env::temp_dir().join(format!("sw-manifest-test-{}", std::process::id()));
    let path = dir.join(s.file.as_str());
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(&path, &good).unwrap();
    assert_eq!(check_segment_in_dir(&dir, e), Ok(()));
    assert_eq!(
        check_segment_in_dir(&dir, &w.entries[5]),
        Err(Problem::MissingFile {
            seq: 5,
            file: SegmentFile::new(file_name(t(300))).unwrap()
        })
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn file_names_stay_inside_the_camera_directory() {
    for ok in [
        "a.ts",
        "2026-11-21/20261121T152600.123Z.ts",
        "x/y/z_1-2.mp4",
    ] {
        assert!(SegmentFile::new(ok).is_ok(), "{ok}");
    }
    for bad in [
        "", "/abs.ts", "../x.ts", "a/../b", "a//b", ".hidden", "a/", "a b", "a\\b",
    ] {
        assert!(SegmentFile::new(bad).is_err(), "{bad}");
    }
    assert!(SegmentFile::new("a".repeat(256)).is_err());
}

#[test]
fn problems_read_well() {
    let f = SegmentFile::new("2026-11-21/a.ts").unwrap();
    let cases = [
        (
            Problem::SeqJump {
                expected: 3,
                found: 5,
            },
            "seq 5 follows seq 2, expected 3",
        ),
        (
            Problem::TornTail { offset: 42 },
            "torn last line at byte 42: unfinished write, not counted as an entry",
        ),
        (
            Problem::HashMismatch { seq: 7, file: f },
            "entry seq 7: file 2026-11-21/a.ts does not match its SHA-256",
        ),
        (
            Problem::Truncated {
                expected_last: 9,
                found_last: None,
            },
            "manifest ends at no entry, but entries up to seq 9 were written",
        ),
        (
            Problem::BadDeletion {
                seq: 4,
                target: 1,
                fault: DeletionFault::HashMismatch,
            },
            "entry seq 4: deletion of seq 1 is invalid: sha256 differs from the segment's",
        ),
    ];
    for (p, text) in cases {
        assert_eq!(p.to_string(), text);
    }
}

// ---------------------------------------------------------------------------------------------
// Random mutations

#[derive(Debug, Clone, Copy)]
enum Mutation {
    FlipByte,
    SetByte,
    DeleteLine,
    DuplicateLine,
    SwapLines,
    InsertForeignLine,
    InsertGarbage,
    DeleteRange,
    Truncate,
}

const MUTATIONS: [Mutation; 9] = [
    Mutation::FlipByte,
    Mutation::SetByte,
    Mutation::DeleteLine,
    Mutation::DuplicateLine,
    Mutation::SwapLines,
    Mutation::InsertForeignLine,
    Mutation::InsertGarbage,
    Mutation::DeleteRange,
    Mutation::Truncate,
];

fn mutate(rng: &mut StdRng, bytes: &[u8], foreign: &[Vec<u8>]) -> (Mutation, Vec<u8>) {
    let m = MUTATIONS[rng.random_range(0..MUTATIONS.len())];
    let mut out = bytes.to_vec();
    let mut lines = lines_of(bytes);
    let n = lines.len();
    match m {
        Mutation::FlipByte => {
            let i = rng.random_range(0..out.len());
            out[i] ^= 1 << rng.random_range(0..8);
        }
        Mutation::SetByte => {
            let i = rng.random_range(0..out.len());
            let chars = b"0123456789abcdef\":,{}\n \\ZT.-";
            let mut c = chars[rng.random_range(0..chars.len())];
            if c == out[i] {
                c = if c == b'0' { b'1' } else { b'0' };
            }
            out[i] = c;
        }
        Mutation::DeleteLine => {
            lines.remove(rng.random_range(0..n));
            out = lines.concat();
        }
        Mutation::DuplicateLine => {
            let i = rng.random_range(0..n);
            let l = lines[i].clone();
            lines.insert(rng.random_range(0..=n), l);
            out = lines.concat();
        }
        Mutation::SwapLines => {
            let i = rng.random_range(0..n);
            let mut j = rng.random_range(0..n);
            if i == j {
                j = (i + 1) % n;
            }
            lines.swap(i, j);
            out = lines.concat();
        }
        Mutation::InsertForeignLine => {
            let l = foreign[rng.random_range(0..foreign.len())].clone();
            lines.insert(rng.random_range(0..=n), l);
            out = lines.concat();
        }
        Mutation::InsertGarbage => {
            let len = rng.random_range(1..20);
            let garbage: Vec<u8> = (0..len).map(|_| rng.random()).collect();
            let at = rng.random_range(0..=out.len());
            out.splice(at..at, garbage);
        }
        Mutation::DeleteRange => {
            let a = rng.random_range(0..out.len());
            let b = rng.random_range(a + 1..=out.len().min(a + 200));
            out.drain(a..b);
        }
        Mutation::Truncate => {
            out.truncate(rng.random_range(0..out.len()));
        }
    }
    (m, out)
}

/// Rounds of the mutation test: `STATIONWATCH_MUTATION_ROUNDS`, default 200. (Ed25519 is slow
/// in unoptimised builds; with curve25519-dalek at opt-level 3 thousands of rounds take seconds.)
fn mutation_rounds() -> usize {
    std::env::var("STATIONWATCH_MUTATION_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[test]
fn every_random_mutation_is_detected() {
    let w = fixture();
    let pk = key().public();
    // Lines an attacker could paste in: a forged chain, another camera's genuine entries.
    let mut foreign = lines_of(&fixture_with(&other_key(), "desk").bytes);
    foreign.extend(lines_of(&fixture_with(&key(), "boxes").bytes));
    let mut rng = StdRng::seed_from_u64(0x5747_0001);
    let mut seen = std::collections::HashMap::new();
    for round in 0..mutation_rounds() {
        let (m, bytes) = mutate(&mut rng, &w.bytes, &foreign);
        if bytes == w.bytes {
            continue; // e.g. a line swapped with an identical one: nothing changed
        }
        let parsed = parse_manifest(&bytes);
        let mut found = parsed.verify(&pk);
        found.extend(check_head(&parsed.entries, &w.chain));
        assert!(
            !found.is_empty(),
            "round {round}: {m:?} went undetected:\n{}",
            String::from_utf8_lossy(&bytes)
        );
        // Whatever was found can be displayed, and coverage of the damage never panics.
        for p in &found {
            assert!(!p.to_string().is_empty());
        }
        let _ = coverage(&parsed.entries, t(0), t(600));
        *seen.entry(format!("{m:?}")).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), MUTATIONS.len(), "{seen:?}");
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = StdRng::seed_from_u64(0x5747_0002);
    let pk = key().public();
    let (s, c) = (station(), cam("desk"));
    for _ in 0..300 {
        let len = rng.random_range(0..400);
        let bytes: Vec<u8> = (0..len)
            .map(|_| {
                // Mostly JSON-ish characters, so the parser gets past the first byte.
                let alphabet = b"{}[]\":,0123456789abcdefv seqprevkind\n\\";
                if rng.random_bool(0.9) {
                    alphabet[rng.random_range(0..alphabet.len())]
                } else {
                    rng.random()
                }
            })
            .collect();
        let parsed = parse_manifest(&bytes);
        let _ = parsed.verify(&pk);
        let _ = resume_point(&bytes, &s, &c);
    }
}

// ---------------------------------------------------------------------------------------------
// Schema 2: announced files, legal holds, clock quality

/// A schema 2 manifest: start, an announced segment, a hold over it.
fn current_fixture() -> Writer {
    let k = key();
    let mut w = Writer::current(&k, "desk");
    w.push(start_body(0, &k));
    announced_segment(&mut w, 1, 61, ClockSync::Synced); // 1 open, 2 segment
    announced_segment(&mut w, 61, 121, ClockSync::Unsynced); // 3 open, 4 segment
    w
}

#[test]
fn current_schema_round_trips_and_verifies() {
    let w = current_fixture();
    assert!(w.entries.iter().all(|e| e.version() == SCHEMA_VERSION));
    assert_eq!(problems(&w.bytes, &key().public()), vec![]);
    let text = String::from_utf8(w.bytes.clone()).unwrap();
    assert!(text.contains(r#""kind":"open","at":"#), "{text}");
    assert!(text.contains(r#","clock":"unsynced","sig":"#), "{text}");
}

#[test]
fn old_and_new_schema_entries_chain_together() {
    // An agent upgraded in place: its manifest holds schema 1 entries, then schema 2 ones.
    let k = key();
    let mut w = Writer::new(&k, "desk");
    w.push(start_body(0, &k)).push(segment(1, 61));
    w.version = SCHEMA_VERSION;
    w.push(start_body(62, &k));
    announced_segment(&mut w, 63, 123, ClockSync::Synced);
    assert_eq!(w.entries[1].version(), 1);
    assert_eq!(w.entries[3].version(), 2);
    assert_eq!(problems(&w.bytes, &k.public()), vec![]);
}

#[test]
fn schema_rules_are_enforced_when_reading() {
    let k = key();
    // A schema 1 line with a schema 2 kind, and a schema 2 segment without clock.
    let mut w = Writer::new(&k, "desk");
    w.version = 1;
    w.push_raw(EntryBody::Open(Open {
        at: t(0),
        file: SegmentFile::new("2026-11-21/x.ts").unwrap(),
    }));
    w.version = SCHEMA_VERSION;
    w.push_raw(segment(1, 61));
    let parsed = parse_manifest(&w.bytes);
    assert_eq!(parsed.entries.len(), 0, "{:?}", parsed.problems);
    assert_eq!(parsed.problems.len(), 2);
    assert!(parsed.problems.iter().all(|p| matches!(
        p,
        Problem::MalformedLine {
            error: LineError::Invalid(_),
            ..
        }
    )));
    // And the writer refuses to sign a schema 2 segment without clock.
    let chain = Chain::genesis(station(), cam("desk"));
    assert!(matches!(
        sign_entry(&k, &chain, segment(1, 61)),
        Err(SignError::Schema { .. })
    ));
}

#[test]
fn unannounced_segment_is_detected() {
    let k = key();
    let mut w = Writer::current(&k, "desk");
    w.push(start_body(0, &k));
    let EntryBody::Segment(mut s) = segment(1, 61) else {
        unreachable!()
    };
    s.clock = Some(ClockSync::Synced);
    w.push(EntryBody::Segment(s));
    assert!(matches!(
        problems(&w.bytes, &k.public()).as_slice(),
        [Problem::Unannounced { seq: 1, .. }]
    ));
}

fn deletion_of(w: &Writer, target: u64, at: i64) -> EntryBody {
    let EntryBody::Segment(seg) = w.entries[target as usize].body().clone() else {
        unreachable!()
    };
    EntryBody::Deleted(Deleted {
        at: t(at),
        target,
        file: seg.file,
        sha256: seg.sha256,
        policy: DeletionPolicy::FreeSpace,
        detail: String::new(),
    })
}

fn hold(id: &str, from: i64, to: i64, at: i64) -> EntryBody {
    EntryBody::Hold(Hold {
        at: t(at),
        id: id.into(),
        from: t(from),
        to: t(to),
        source: HoldSource::Command,
        reason: "case 17".into(),
    })
}

fn release(id: &str, at: i64) -> EntryBody {
    EntryBody::Release(Release {
        at: t(at),
        id: id.into(),
        source: HoldSource::Command,
        reason: String::new(),
    })
}

#[test]
fn deletion_under_a_hold_in_force_is_reported() {
    let mut w = current_fixture();
    w.push(hold("court-1", 30, 90, 130));
    let del = deletion_of(&w, 2, 140);
    w.push(del);
    let found = problems(&w.bytes, &key().public());
    assert!(
        matches!(found.as_slice(), [Problem::DeletedUnderHold { seq: 6, target: 2, hold }] if hold == "court-1"),
        "{found:?}"
    );
}

#[test]
fn deletion_outside_holds_or_after_release_is_lawful() {
    let mut w = current_fixture();
    w.push(hold("court-1", 200, 300, 130)); // 5: another window
    w.push(hold("court-2", 0, 100, 131)); // 6: this window
    w.push(release("court-2", 132)); // 7: lifted
    let del = deletion_of(&w, 2, 140);
    w.push(del);
    assert_eq!(problems(&w.bytes, &key().public()), vec![]);
}

#[test]
fn coverage_lists_segments_recorded_on_an_unsynced_clock() {
    let w = current_fixture();
    let cov = coverage(&w.entries, t(1), t(121));
    let unsynced: Vec<u64> = cov.unsynced_segments().map(|s| s.seq).collect();
    assert_eq!(unsynced, vec![4]);
    assert!(cov.is_complete());
}

// ---------------------------------------------------------------------------------------------
// The worked example in docs/manifest.md

const DOC: &str = include_str!("../../../docs/manifest.md");

/// RFC 8032 section 7.1, TEST 1.
const RFC_SEED: &str = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60";

fn doc_example() -> Writer {
    let key = StationKey::from_text(RFC_SEED).unwrap();
    let mut w = Writer::new(&key, "desk");
    w.push(EntryBody::Start(Start {
        at: "2026-11-21T07:59:58.000Z".parse().unwrap(),
        agent: "0.1.0".into(),
        key: key.public(),
    }));
    w.push(EntryBody::Segment(Segment {
        start: "2026-11-21T08:00:00.000Z".parse().unwrap(),
        end: "2026-11-21T08:01:00.000Z".parse().unwrap(),
        file: SegmentFile::new("2026-11-21/20261121T080000.000Z.ts").unwrap(),
        size: 1_048_576,
        sha256: Hash256::of(&vec![0u8; 1_048_576]),
        clock: None,
    }));
    w
}

#[test]
fn doc_example_is_exact() {
    let w = doc_example();
    let doc_lines: Vec<&str> = DOC.lines().filter(|l| l.starts_with("{\"v\":1,")).collect();
    let text = String::from_utf8(w.bytes.clone()).unwrap();
    let ours: Vec<&str> = text.lines().collect();
    assert_eq!(doc_lines, ours, "docs/manifest.md example is out of date");
    // The documented intermediate values.
    let canon = String::from_utf8(w.entries[0].signed_bytes()).unwrap();
    assert!(
        DOC.contains(&canon),
        "canonical bytes of line 1 not in the doc:\n{canon}"
    );
    assert!(DOC.contains(&w.entries[0].hash().to_hex()));
    let pk = StationKey::from_text(RFC_SEED).unwrap().public();
    assert!(DOC.contains(&pk.to_hex()));
    assert!(DOC.contains(&pk.fingerprint().to_string()));
    assert_eq!(problems(&w.bytes, &pk), vec![]);
}

/// Prints the example for the doc: `cargo test -p stationwatch-protocol print_doc_example -- --ignored --nocapture`.
#[test]
#[ignore]
fn print_doc_example() {
    let w = doc_example();
    let pk = StationKey::from_text(RFC_SEED).unwrap().public();
    println!(
        "public key {} fingerprint {}",
        pk.to_hex(),
        pk.fingerprint()
    );
    for e in &w.entries {
        println!(
            "signed bytes: {}",
            String::from_utf8(e.signed_bytes()).unwrap()
        );
        println!("line: {}", e.line());
        println!("sha256(line): {}", e.hash());
    }
    println!(
        "pkcs8: {}",
        StationKey::from_text(RFC_SEED)
            .unwrap()
            .to_pkcs8_pem()
            .unwrap()
            .as_str()
    );
}

#[test]
fn rotated_key_verifies_against_both_registered_keys() {
    let (old, new) = (key(), other_key());
    let mut w = Writer::new(&old, "desk");
    w.push(start_body(0, &old)).push(segment(1, 61));
    w.key = new.clone();
    w.push(start_body(62, &new)).push(segment(63, 123));
    assert_eq!(
        verify_chain_keys(&w.entries, &[old.public(), new.public()]),
        vec![]
    );
    // Against the old key alone, the new key is foreign and its entries do not verify.
    let found = verify_chain(&w.entries, &old.public());
    assert!(
        found.contains(&Problem::BadSignature { seq: 2 }),
        "{found:?}"
    );
    assert!(found
        .iter()
        .any(|p| matches!(p, Problem::ForeignKey { seq: 2, .. })));
}
