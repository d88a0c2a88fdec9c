//! Trust on the controller side (issue 12), with a private Mosquitto and the real controller
//! binary: registered keys (API and CLI, rotation audited), a report under a forged key refused
//! and alerted, witnessed heads that survive a restart and catch a manifest cut short (and make
//! `stationwatch-verify` FAIL against the witness export), and RFC 3161 time-stamps from a real
//! authority (OpenSSL's `ts` behind a tiny HTTP front).
//!
//! Reports are published with `mosquitto_pub` where the point is what a station (or a forger)
//! says; the manifest folders are written with the protocol's `sign_entry`, as the agent writes
//! them.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Result;
use base64::Engine;
use serde_json::{json, Value};
use stationwatch_protocol::manifest::{
    sign_entry, Chain, ClockSync, EntryBody, Hash256, Open, Segment, SegmentFile, SignedEntry,
    Start, StationKey, Timestamp,
};
use stationwatch_protocol::mqtt::{CameraHealth, CameraState, Health, ManifestHead};
use stationwatch_protocol::trust::{
    KeyRegistry, Signed, Witness, KEY_REGISTRY_FORMAT, WITNESS_FORMAT,
};
use stationwatch_protocol::{CameraId, StationId};
use stationwatch_tests::controller_process::{
    controller_bin, Api, ControllerOpts, ControllerProcess,
};
use stationwatch_tests::eventually;
use stationwatch_tests::mosquitto::{have_mosquitto, have_openssl, publish, Broker, BrokerOpts};
use stationwatch_tests::process::cargo_bin;

fn ready() -> bool {
    let ok = have_mosquitto() && have_openssl();
    if !ok {
        eprintln!("SKIP: mosquitto or openssl missing (run scripts/install-deps)");
    }
    ok
}

fn now() -> Timestamp {
    Timestamp::from_unix_ms(chrono::Utc::now().timestamp_millis()).unwrap()
}

/// A health report as an agent sends it: its name, its key's fingerprint, one camera's head.
fn report(name: &str, key: &StationKey, head: Option<ManifestHead>) -> Vec<u8> {
    let mut h = Health::new(now());
    h.interval_s = 15;
    h.agent.station_name = Some(name.into());
    h.agent.key_fingerprint = Some(key.public().fingerprint());
    h.cameras.insert(
        CameraId::new("desk").unwrap(),
        CameraHealth {
            state: CameraState::Recording,
            manifest: head,
            ..Default::default()
        },
    );
    h.to_json().unwrap()
}

fn send(broker: &Broker, station: &str, payload: &[u8]) {
    publish(
        &broker.client(),
        &format!("stationwatch/v1/{station}/health"),
        payload,
        1,
        false,
    )
    .unwrap();
}

fn row(api: &Api, station: &str) -> Result<Option<Value>> {
    let list = api.ok(&format!("/api/stations?q={station}"))?;
    Ok(list["stations"]
        .as_array()
        .and_then(|a| a.iter().find(|s| s["id"] == station).cloned()))
}

fn open_alert(api: &Api, station: &str, kind: &str) -> Result<Option<Value>> {
    let a = api.ok(&format!("/api/stations/{station}/alerts"))?;
    Ok(a["alerts"].as_array().and_then(|a| {
        a.iter()
            .find(|x| x["kind"] == kind && x["closed_at"].is_null())
            .cloned()
    }))
}

fn controller_key(api: &Api) -> String {
    api.ok("/api/controller-key").unwrap()["public_key"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn keys_are_registered_and_rotated_with_an_audit_and_a_forged_key_is_refused() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let ctl = ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
    let api = ctl.admin().unwrap();
    let st = "TRUST-0001";
    let k1 = StationKey::from_seed(&[1; 32]);
    let k2 = StationKey::from_seed(&[2; 32]);
    let forger = StationKey::from_seed(&[99; 32]);

    // Registration before the station ever reported; a second key only as a rotation.
    let path = format!("/api/stations/{st}/key");
    let r = api
        .put(&path, &json!({ "key": k1.public().to_hex() }))
        .unwrap();
    assert_eq!(r.status, 201, "{r:?}");
    assert_eq!(r.body["outcome"], "registered");
    let r = api
        .put(&path, &json!({ "key": k2.public().to_hex() }))
        .unwrap();
    assert_eq!(r.status, 409, "{r:?}");
    let r = api
        .put(
            &path,
            &json!({ "key": k2.public().to_hex(), "rotate": true }),
        )
        .unwrap();
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.body["outcome"], "rotated");
    assert_eq!(r.body["retired"], k1.public().fingerprint().to_string());
    assert_eq!(
        api.put(&path, &json!({ "key": "not a key" }))
            .unwrap()
            .status,
        400
    );
    let audit = api.ok("/api/audit").unwrap();
    let entries: Vec<(String, bool)> = audit["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target"] == st)
        .map(|e| {
            (
                e["action"].as_str().unwrap().to_owned(),
                e["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        entries,
        [
            ("key_rotate".to_owned(), true),
            ("key_rotate".to_owned(), false),
            ("key_register".to_owned(), true)
        ]
    );

    // The CLI registers too (on the same database; the running controller picks it up).
    let other = "TRUST-0002";
    let run = |args: &[&str]| {
        Command::new(controller_bin().unwrap())
            .args(args)
            .output()
            .unwrap()
    };
    let cfg = ctl.config.to_str().unwrap().to_owned();
    let k3 = StationKey::from_seed(&[3; 32]);
    let out = run(&[
        "key-register",
        "--config",
        &cfg,
        "--station",
        other,
        "--key",
        &k3.public().to_hex(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let out = run(&[
        "key-register",
        "--config",
        &cfg,
        "--station",
        other,
        "--key",
        &k1.public().to_hex(),
    ]);
    assert!(
        !out.status.success(),
        "a CLI rotation without --rotate: {out:?}"
    );
    assert!(String::from_utf8_lossy(&out.stderr).contains("--rotate"));
    let listed = eventually("CLI registration visible", 10, || {
        Ok(row(&api, other)?.filter(|r| r["key_status"] == "registered"))
    });
    assert_eq!(
        listed["key_fingerprint"],
        k3.public().fingerprint().to_string()
    );

    // The registry export is signed by the controller's key, which the CLI prints too.
    let ck = controller_key(&api);
    let out = run(&["key", "--config", &cfg]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), ck);
    let (status, bytes) = api.get_bytes("/api/keys").unwrap();
    assert_eq!(status, 200);
    let reg = Signed::<KeyRegistry>::from_json(&bytes, KEY_REGISTRY_FORMAT).unwrap();
    assert!(reg.signed_by(&ck.parse().unwrap()));
    let sid = StationId::new(st).unwrap();
    assert_eq!(reg.body.keys_of(&sid), vec![k1.public(), k2.public()]);
    let keys = &reg
        .body
        .stations
        .iter()
        .find(|s| s.station == sid)
        .unwrap()
        .keys;
    assert!(keys[0].retired_at.is_some() && keys[1].retired_at.is_none());

    // The station reports under its registered key: shown as its own.
    send(&broker, st, &report("Real School", &k2, None));
    eventually("the real report shown", 15, || {
        Ok(row(&api, st)?.filter(|r| r["name"] == "Real School"))
    });
    // A forger publishes under the station's id with another key: refused and alerted.
    send(&broker, st, &report("Forged School", &forger, None));
    let alert = eventually("key_mismatch alert", 15, || {
        open_alert(&api, st, "key_mismatch")
    });
    assert!(alert["detail"]
        .as_str()
        .unwrap()
        .contains(&forger.public().fingerprint().to_string()));
    let r = eventually("key status mismatch", 10, || {
        Ok(row(&api, st)?.filter(|r| r["key_status"] == "mismatch"))
    });
    assert_eq!(r["name"], "Real School", "the forged report was shown: {r}");
    let detail = api.ok(&format!("/api/stations/{st}")).unwrap();
    assert_eq!(detail["health"]["agent"]["station_name"], "Real School");
    assert_eq!(
        detail["health"]["agent"]["key_fingerprint"],
        k2.public().fingerprint().to_string()
    );
    // An unregistered station is shown as such, without an alert.
    send(&broker, "TRUST-0003", &report("New School", &k1, None));
    let r = eventually("unregistered station", 15, || row(&api, "TRUST-0003"));
    assert_eq!(r["key_status"], "unregistered");
    assert!(open_alert(&api, "TRUST-0003", "key_mismatch")
        .unwrap()
        .is_none());
}

// ---- a camera folder as the agent writes it

fn t0() -> i64 {
    chrono::Utc::now().timestamp_millis() - 3_600_000
}

struct Cam {
    dir: PathBuf,
    key: StationKey,
    chain: Chain,
    entries: Vec<SignedEntry>,
    files: Vec<String>,
    base: i64,
}

impl Cam {
    fn new(root: &Path, station: &str, key: &StationKey) -> Cam {
        let dir = root.join("desk");
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Cam {
            dir,
            key: key.clone(),
            chain: Chain::genesis(
                StationId::new(station).unwrap(),
                CameraId::new("desk").unwrap(),
            ),
            entries: Vec::new(),
            files: Vec::new(),
            base: t0(),
        };
        let k = key.public();
        c.push(EntryBody::Start(Start {
            at: c.t(0),
            agent: "test".into(),
            key: k,
        }));
        c
    }

    fn t(&self, s: i64) -> Timestamp {
        Timestamp::from_unix_ms(self.base + s * 1000).unwrap()
    }

    fn push(&mut self, body: EntryBody) {
        let e = sign_entry(&self.key, &self.chain, body).unwrap();
        self.chain = Chain::after(&e);
        self.entries.push(e);
        self.write();
    }

    fn write(&self) {
        let text: String = self
            .entries
            .iter()
            .map(|e| format!("{}\n", e.line()))
            .collect();
        std::fs::write(self.dir.join("manifest.jsonl"), text).unwrap();
    }

    /// A 60 s segment starting `start` s after the base: `open` then `segment` (+2 entries).
    fn segment(&mut self, start: i64) {
        let at = self.t(start);
        let day = &at.to_string()[..10];
        let name = format!("{day}/{}.ts", at.to_string().replace([':', '-'], ""));
        let file = SegmentFile::new(name.clone()).unwrap();
        self.push(EntryBody::Open(Open {
            at,
            file: file.clone(),
        }));
        let bytes = name.repeat(50).into_bytes();
        std::fs::create_dir_all(self.dir.join(day)).unwrap();
        std::fs::write(self.dir.join(&name), &bytes).unwrap();
        self.push(EntryBody::Segment(Segment {
            start: at,
            end: self.t(start + 60),
            file,
            size: bytes.len() as u64,
            sha256: Hash256::of(&bytes),
            clock: Some(ClockSync::Synced),
        }));
        self.files.push(name);
    }

    fn head(&self) -> ManifestHead {
        ManifestHead::from_chain(&self.chain)
    }

    /// Removes the last segment (its two entries and its file), the way someone with write
    /// access but no key would hide the end of the recording: the chain stays whole.
    fn cut_last_segment(&mut self) {
        self.entries.truncate(self.entries.len() - 2);
        let name = self.files.pop().unwrap();
        std::fs::remove_file(self.dir.join(name)).unwrap();
        self.chain = Chain::after(self.entries.last().unwrap());
        self.write();
    }
}

/// Runs `stationwatch-verify`; returns the exit status and its output.
fn verify(folder: &Path, args: &[&str]) -> (i32, String) {
    let bin = cargo_bin("stationwatch-verify", "stationwatch-verify").unwrap();
    let out = Command::new(bin).arg(folder).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn a_manifest_cut_after_a_controller_restart_is_flagged_and_fails_against_the_witness() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut ctl =
        ControllerProcess::start(dir.path(), &ControllerOpts::new(broker.port())).unwrap();
    let api = ctl.admin().unwrap();
    let st = "TRUST-0010";
    let key = StationKey::from_seed(&[10; 32]);
    let r = api
        .put(
            &format!("/api/stations/{st}/key"),
            &json!({ "key": key.public().to_hex() }),
        )
        .unwrap();
    assert_eq!(r.status, 201);

    // Recordings advance like a real agent's: +2 entries per 60 s segment, every head reported.
    let rec = dir.path().join("rec");
    let mut cam = Cam::new(&rec, st, &key);
    for i in 0..6 {
        cam.segment(1 + 60 * i);
        send(&broker, st, &report("School", &key, Some(cam.head())));
    }
    let full = cam.head();
    assert_eq!(full.next_seq, 13);
    let ck = controller_key(&api);
    let witness_file = dir.path().join("witness.json");
    let w = eventually("the last head witnessed", 20, || {
        let (status, bytes) = api.get_bytes(&format!("/api/stations/{st}/witness"))?;
        anyhow::ensure!(status == 200, "witness answered {status}");
        let w = Signed::<Witness>::from_json(&bytes, WITNESS_FORMAT)?;
        std::fs::write(&witness_file, &bytes)?;
        Ok(w.body
            .heads
            .iter()
            .any(|h| h.next_seq == full.next_seq)
            .then_some(w))
    });
    assert!(w.signed_by(&ck.parse().unwrap()));
    assert_eq!(w.body.keys.len(), 1);
    // One row per head that changed (the first report may race the registration).
    let seqs: Vec<u64> = w.body.heads.iter().map(|h| h.next_seq).collect();
    assert!(seqs.ends_with(&[5, 7, 9, 11, 13]), "{seqs:?}");
    let wf = witness_file.to_str().unwrap();
    let (code, out) = verify(&rec, &["--witness", wf, "--controller-key", &ck]);
    assert_eq!(code, 0, "the whole folder against the witness:\n{out}");

    // The controller restarts; meanwhile the last segment is cut from the station's folder.
    ctl.child.terminate(Duration::from_secs(10)).unwrap();
    cam.cut_last_segment();
    let key_hex = key.public().to_hex();
    let (code, out) = verify(&rec, &["--public-key", &key_hex]);
    assert!(
        code == 0 || code == 3,
        "the cut folder is consistent on its own (that is the point):\n{out}"
    );
    let (code, out) = verify(&rec, &["--witness", wf, "--controller-key", &ck]);
    assert_eq!(
        code, 5,
        "the cut folder against the witness must FAIL:\n{out}"
    );
    assert!(out.contains("FAILED"), "{out}");

    let port = ctl.addr.port();
    let config = ctl.config.clone();
    drop(ctl);
    let ctl = ControllerProcess::start_with_config(&config, port).unwrap();
    let api = ctl.admin().unwrap();
    send(&broker, st, &report("School", &key, Some(cam.head())));
    let alert = eventually("manifest_rewritten alert after the restart", 20, || {
        open_alert(&api, st, "manifest_rewritten:desk")
    });
    assert!(
        alert["detail"]
            .as_str()
            .unwrap()
            .contains("11 entries, 13 were witnessed"),
        "{alert}"
    );
    let r = row(&api, st).unwrap().unwrap();
    assert_eq!(r["state"], "degraded", "{r}");
    // The export after the restart still holds the witnessed head.
    let (_, bytes) = api
        .get_bytes(&format!("/api/stations/{st}/witness"))
        .unwrap();
    let w = Signed::<Witness>::from_json(&bytes, WITNESS_FORMAT).unwrap();
    assert_eq!(w.body.heads.iter().map(|h| h.next_seq).max(), Some(13));
}

// ---- a real RFC 3161 authority: OpenSSL's `ts` behind a tiny HTTP front

fn sh(dir: &Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A CA and a time-stamping certificate (extendedKeyUsage critical timeStamping), and the
/// `openssl ts` configuration that uses them.
fn make_tsa(dir: &Path) -> PathBuf {
    sh(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.pem",
            "-days",
            "2",
            "-subj",
            "/CN=Test TSA CA",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    sh(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-keyout",
            "tsa.key",
            "-out",
            "tsa.csr",
            "-subj",
            "/CN=Test TSA",
        ],
    );
    std::fs::write(
        dir.join("ext.cnf"),
        "extendedKeyUsage=critical,timeStamping\nkeyUsage=critical,digitalSignature\n",
    )
    .unwrap();
    sh(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "tsa.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "tsa.pem",
            "-days",
            "2",
            "-extfile",
            "ext.cnf",
        ],
    );
    std::fs::write(dir.join("tsaserial"), "01\n").unwrap();
    let cnf = dir.join("tsa.cnf");
    std::fs::write(
        &cnf,
        format!(
            "[ tsa ]\ndefault_tsa = tsa1\n[ tsa1 ]\ndir = {}\nserial = $dir/tsaserial\n\
             crypto_device = builtin\nsigner_cert = $dir/tsa.pem\ncerts = $dir/ca.pem\n\
             signer_key = $dir/tsa.key\nsigner_digest = sha256\ndefault_policy = 1.2.3.4.1\n\
             digests = sha256\naccuracy = secs:1\nordering = yes\ntsa_name = yes\n\
             ess_cert_id_chain = no\ness_cert_id_alg = sha256\n",
            dir.display()
        ),
    )
    .unwrap();
    cnf
}

/// Serves `POST` time-stamp queries by running `openssl ts -reply`; returns the URL.
fn serve_tsa(dir: &Path, cnf: PathBuf) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/tsa", listener.local_addr().unwrap());
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        for (n, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut len = 0;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    break;
                }
                let l = line.trim().to_ascii_lowercase();
                if l.is_empty() {
                    break;
                }
                if let Some(v) = l.strip_prefix("content-length:") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
            let mut query = vec![0; len];
            if reader.read_exact(&mut query).is_err() {
                continue;
            }
            let q = dir.join(format!("q{n}.tsq"));
            let r = dir.join(format!("r{n}.tsr"));
            std::fs::write(&q, &query).unwrap();
            let ok = Command::new("openssl")
                .args(["ts", "-reply", "-config"])
                .arg(&cnf)
                .arg("-queryfile")
                .arg(&q)
                .arg("-out")
                .arg(&r)
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false);
            let body = if ok {
                std::fs::read(&r).unwrap()
            } else {
                Vec::new()
            };
            let status = if ok {
                "200 OK"
            } else {
                "500 Internal Server Error"
            };
            let _ = write!(
                conn,
                "HTTP/1.1 {status}\r\nContent-Type: application/timestamp-reply\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = conn.write_all(&body);
        }
    });
    url
}

#[test]
fn witnessed_heads_are_time_stamped_by_a_real_rfc3161_authority() {
    if !ready() {
        return;
    }
    let broker = Broker::new(BrokerOpts::default()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let tsa_dir = dir.path().join("tsa");
    std::fs::create_dir(&tsa_dir).unwrap();
    let cnf = make_tsa(&tsa_dir);
    let url = serve_tsa(&tsa_dir, cnf);
    let mut opts = ControllerOpts::new(broker.port());
    opts.extra_toml = format!("[trust]\ntsa_url = \"{url}\"\ntsa_interval_seconds = 1\n");
    let ctl = ControllerProcess::start(dir.path(), &opts).unwrap();
    let api = ctl.admin().unwrap();
    let st = "TRUST-0020";
    let key = StationKey::from_seed(&[20; 32]);
    api.put(
        &format!("/api/stations/{st}/key"),
        &json!({ "key": key.public().to_hex() }),
    )
    .unwrap();
    let head = ManifestHead {
        next_seq: 41,
        prev: Hash256::of(b"entry 40"),
    };
    let before = now();
    send(&broker, st, &report("School", &key, Some(head)));
    let w = eventually("a time-stamped head in the witness", 30, || {
        let (_, bytes) = api.get_bytes(&format!("/api/stations/{st}/witness"))?;
        let w = Signed::<Witness>::from_json(&bytes, WITNESS_FORMAT)?;
        Ok(w.body.heads.iter().any(|h| h.tsa.is_some()).then_some(w))
    });
    let h = w.body.heads.iter().find(|h| h.tsa.is_some()).unwrap();
    assert_eq!(h.next_seq, 41);
    let tok = h.tsa.as_ref().unwrap();
    assert_eq!(tok.tsa, url);
    let data = h.imprint_bytes(&StationId::new(st).unwrap());
    assert_eq!(tok.imprint, Hash256::of(&data));
    assert!(
        tok.time.unix_ms() >= before.unix_ms() - 1000,
        "{} vs {before}",
        tok.time
    );
    // The authority's own tool verifies the stored token against the head's bytes.
    let der = base64::engine::general_purpose::STANDARD
        .decode(&tok.token)
        .unwrap();
    std::fs::write(tsa_dir.join("stored.tsr"), der).unwrap();
    std::fs::write(tsa_dir.join("head.txt"), &data).unwrap();
    let out = Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-data",
            "head.txt",
            "-in",
            "stored.tsr",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ])
        .current_dir(&tsa_dir)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success() && text.contains("Verification: OK"),
        "{text}"
    );
    // Other bytes do not verify against the token.
    std::fs::write(tsa_dir.join("other.txt"), b"stationwatch-head:x").unwrap();
    let out = Command::new("openssl")
        .args([
            "ts",
            "-verify",
            "-data",
            "other.txt",
            "-in",
            "stored.tsr",
            "-CAfile",
            "ca.pem",
            "-untrusted",
            "tsa.pem",
        ])
        .current_dir(&tsa_dir)
        .output()
        .unwrap();
    assert!(!out.status.success());
}

// ---- the trust tables on both database backends

async fn trust_tables(url: String) {
    use station_controller::config::DatabaseConfig;
    use station_controller::store::{HeadRow, Registered, Store, Write};
    use stationwatch_protocol::trust::TsaToken;
    let store = Store::connect(&DatabaseConfig {
        url,
        max_connections: 4,
        history_days: 30,
        events_days: 400,
        audit_days: 3650,
        write_queue_bytes: 64 << 20,
    })
    .await
    .unwrap();
    let st = StationId::new("DB-1").unwrap();
    let (k1, k2) = (
        StationKey::from_seed(&[1; 32]).public(),
        StationKey::from_seed(&[2; 32]).public(),
    );
    assert_eq!(
        store
            .register_key(&st, &k1, "a", false, 1000)
            .await
            .unwrap(),
        Registered::New
    );
    assert_eq!(
        store
            .register_key(&st, &k1, "a", false, 1001)
            .await
            .unwrap(),
        Registered::Same
    );
    assert!(matches!(
        store
            .register_key(&st, &k2, "a", false, 1002)
            .await
            .unwrap(),
        Registered::NeedsRotate { .. }
    ));
    assert!(matches!(
        store.register_key(&st, &k2, "a", true, 2000).await.unwrap(),
        Registered::Rotated { .. }
    ));
    let keys = store.keys(Some(&st)).await.unwrap();
    assert_eq!(keys.len(), 2);
    assert_eq!((keys[0].retired_at, keys[1].retired_at), (Some(2000), None));
    assert_eq!(store.keys_changed_since(1500).await.unwrap().len(), 1);

    let head = |seq: u64, at: i64| HeadRow {
        station: st.clone(),
        camera: CameraId::new("desk").unwrap(),
        next_seq: seq,
        prev: Hash256::of(format!("{seq}").as_bytes()),
        agent_at: at - 5,
        received_at: at,
        key_fingerprint: Some(k2.fingerprint().to_string()),
    };
    // Two heads of one camera in one batch, and one written twice (another replica).
    store
        .write_batch(&[Write::Head(head(3, 10_000)), Write::Head(head(5, 11_000))])
        .await
        .unwrap();
    store
        .write_batch(&[Write::Head(head(5, 11_500)), Write::Head(head(7, 12_000))])
        .await
        .unwrap();
    let latest = store.latest_heads().await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!(latest[0].next_seq, 7);
    assert_eq!(store.heads_received_since(11_000).await.unwrap().len(), 2);
    let stored5 = store
        .head_at(&st, &CameraId::new("desk").unwrap(), 5)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        stored5.received_at, 11_000,
        "the first writer's row is kept"
    );
    // Window [10 s, 10.5 s] plus the latest of the camera.
    let w = store.witness_heads(&st, 10_000, 10_500).await.unwrap();
    let seqs: Vec<u64> = w.iter().map(|h| h.0.next_seq).collect();
    assert_eq!(seqs, [3, 7]);
    let to_stamp = store.heads_to_stamp(0, 10).await.unwrap();
    assert_eq!(to_stamp.len(), 1);
    assert_eq!(to_stamp[0].next_seq, 7);
    let token = TsaToken {
        tsa: "http://tsa".into(),
        time: Timestamp::from_unix_ms(12_500).unwrap(),
        imprint: Hash256::of(b"x"),
        token: "MA==".into(),
    };
    store.set_head_tsa(&to_stamp[0], &token).await.unwrap();
    assert!(store.heads_to_stamp(0, 10).await.unwrap().is_empty());
    let w = store.witness_heads(&st, 0, i64::MAX).await.unwrap();
    assert_eq!(w.last().unwrap().1.as_ref(), Some(&token));
    store.close().await;
}

#[tokio::test]
async fn trust_tables_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    trust_tables(format!("sqlite://{}", dir.path().join("c.db").display())).await;
}

#[tokio::test]
async fn trust_tables_on_postgres() {
    use stationwatch_tests::postgres::{postgres_bin_dir, Postgres};
    if postgres_bin_dir().is_none() {
        eprintln!("SKIP: PostgreSQL server not installed (apt-get install postgresql)");
        return;
    }
    let pg = Postgres::start().expect("start a throw-away PostgreSQL");
    trust_tables(pg.url()).await;
}
