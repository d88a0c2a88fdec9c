//! The archive's test rig (tests/tests/archive.rs, benches/upload.sh): a broker, an archive in
//! a local folder or a real S3-compatible server, the controller using it, and agent configs
//! that upload to it; plus the checks a user makes of what was archived.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Result;
use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use crate::agent_process::{manifest_entries, station_public_key};
use crate::controller_process::{Api, ControllerOpts, ControllerProcess};
use crate::mosquitto::{have_mosquitto, Broker, BrokerOpts};
use crate::s3::{s3s_fs_bin, S3Server};
use crate::{eventually, have_gst_element, require};

pub const STATION: &str = "ARCH-0001";

#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Store {
    Local,
    S3,
}

pub fn ready(store: Store) -> bool {
    require(
        have_mosquitto() && have_gst_element("x264enc"),
        "mosquitto or x264enc missing (run scripts/install-deps)",
    ) && (store == Store::Local
        || require(
            s3s_fs_bin().is_some(),
            "s3s-fs missing (run scripts/install-deps --test-tools)",
        ))
}

/// A broker, an archive (folder or S3 server) and a controller using it.
pub struct Rig {
    pub dir: tempfile::TempDir,
    pub broker: Broker,
    pub s3: Option<S3Server>,
    pub archive: PathBuf,
    pub ctl: ControllerProcess,
    pub api: Api,
}

impl Rig {
    pub fn start(store: Store) -> Rig {
        Self::start_with(store, None)
    }

    /// `archive_dir`: where the local archive folder goes (default: in the test's folder).
    pub fn start_with(store: Store, archive_dir: Option<&Path>) -> Rig {
        let dir = tempfile::tempdir().unwrap();
        let broker = Broker::new(BrokerOpts::default()).unwrap();
        let staging = dir.path().join("staging");
        let (s3, archive, toml) = match store {
            Store::Local => {
                let archive = archive_dir
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|| dir.path().join("archive"));
                std::fs::create_dir_all(&archive).unwrap();
                let toml = format!(
                    "[archive]\nstore = \"file://{}\"\nstaging = \"{}\"\n",
                    archive.display(),
                    staging.display()
                );
                (None, archive, toml)
            }
            Store::S3 => {
                let s3 = S3Server::start(dir.path()).unwrap();
                let toml = s3.archive_toml(&staging);
                let archive = s3.object_path("");
                (Some(s3), archive, toml)
            }
        };
        let mut opts = ControllerOpts::new(broker.port());
        opts.extra_toml = toml;
        let ctl_dir = dir.path().join("controller");
        std::fs::create_dir_all(&ctl_dir).unwrap();
        let ctl = ControllerProcess::start(&ctl_dir, &opts).unwrap();
        let api = ctl.admin().unwrap();
        Rig {
            dir,
            broker,
            s3,
            archive,
            ctl,
            api,
        }
    }

    /// An archived object's path on disk (local folder, or inside the S3 server's data).
    pub fn object(&self, key: &str) -> PathBuf {
        match &self.s3 {
            Some(s3) => s3.object_path(key),
            None => self.archive.join(key),
        }
    }

    /// Registers the agent's key (as an admin does at enrollment).
    pub fn register(&self, agent_config: &Path) {
        let key = station_public_key(agent_config).unwrap();
        let r = self
            .api
            .put(
                &format!("/api/stations/{STATION}/key"),
                &json!({ "key": key }),
            )
            .unwrap();
        assert!(r.status == 201 || r.status == 200, "{r:?}");
    }

    /// Sends a command and waits for its final ack; returns the command row.
    pub fn command(&self, body: Value) -> Value {
        let r = self
            .api
            .post(&format!("/api/stations/{STATION}/commands"), &body)
            .unwrap();
        assert_eq!(r.status, 202, "command {body} answered {r:?}");
        let id = r.body["id"].as_str().unwrap().to_owned();
        let row = eventually(&format!("final ack of {body}"), 30, || {
            let cmds = self.api.ok(&format!("/api/stations/{STATION}/commands"))?;
            Ok(cmds["commands"]
                .as_array()
                .and_then(|a| a.iter().find(|c| c["id"] == id.as_str()).cloned())
                .filter(|c| c["status"] == "done" || c["status"] == "rejected"))
        });
        assert_eq!(row["status"], "done", "{row}");
        row
    }

    /// The station's latest health `upload` section.
    pub fn upload_health(&self) -> Result<Value> {
        let d = self.api.ok(&format!("/api/stations/{STATION}"))?;
        Ok(d["health"]["upload"].clone())
    }

    /// Waits until the job is `done` in the station's health.
    pub fn wait_job_done(&self, job: &str, secs: u64) -> Value {
        eventually(&format!("upload job {job} done"), secs, || {
            let up = self.upload_health()?;
            Ok(up["jobs"]
                .as_array()
                .and_then(|a| a.iter().find(|j| j["job"] == job).cloned())
                .filter(|j| j["state"] == "done"))
        })
    }

    pub fn open_alert(&self, kind: &str) -> Result<Option<Value>> {
        let a = self.api.ok(&format!("/api/stations/{STATION}/alerts"))?;
        Ok(a["alerts"].as_array().and_then(|a| {
            a.iter()
                .find(|x| {
                    let k = x["kind"].as_str().unwrap_or("");
                    (k == kind || k.starts_with(&format!("{kind}:"))) && x["closed_at"].is_null()
                })
                .cloned()
        }))
    }
}

pub fn ts(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// An agent: test cameras at `kbps`, segments of `segment_s`, reporting to the broker at
/// `mqtt` and uploading to `upload_url` with `upload_extra` keys; `camera_extra` goes to the
/// first camera.
pub struct AgentSpec<'a> {
    pub cameras: &'a [&'a str],
    pub kbps: u32,
    pub segment_s: u32,
    pub mqtt: String,
    pub upload_url: String,
    pub upload_extra: String,
    pub camera_extra: String,
    /// RTSP URLs for the cameras (in order); empty: the built-in test source.
    pub rtsp: Vec<String>,
}

impl AgentSpec<'_> {
    pub fn toml(&self, storage: &Path) -> String {
        let mut s = format!(
            "[station]\nid = \"{STATION}\"\n[storage]\npath = \"{}\"\nsegment_seconds = {}\n\
             [supervision]\nstall_timeout_seconds = 3\n\
             [mqtt]\nurl = \"{}\"\nhealth_interval_seconds = 1\n\
             [upload]\nurl = \"{}\"\n{}\n",
            storage.display(),
            self.segment_s,
            self.mqtt,
            self.upload_url,
            self.upload_extra
        );
        for (i, c) in self.cameras.iter().enumerate() {
            let source = match self.rtsp.get(i) {
                Some(url) => format!("source = \"{url}\"\n"),
                None => format!(
                    "source = \"test\"\nwidth = 640\nheight = 360\nfps = 15\nbitrate_kbps = {}\n",
                    self.kbps
                ),
            };
            s.push_str(&format!(
                "[[camera]]\nid = \"{c}\"\n{source}{}\n",
                if i == 0 {
                    self.camera_extra.as_str()
                } else {
                    ""
                }
            ));
        }
        s
    }
}

/// The segment entries of a camera's manifest overlapping `[from, to)`: (seq, file, size).
pub fn window_segments(
    storage: &Path,
    camera: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<(u64, String, u64)> {
    manifest_entries(storage, camera)
        .unwrap()
        .into_iter()
        .filter(|e| e["kind"] == "segment")
        .filter(|e| {
            let s: DateTime<Utc> = e["start"].as_str().unwrap().parse().unwrap();
            let en: DateTime<Utc> = e["end"].as_str().unwrap().parse().unwrap();
            s < to && en > from
        })
        .map(|e| {
            (
                e["seq"].as_u64().unwrap(),
                e["file"].as_str().unwrap().to_owned(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect()
}

/// Every segment of the window is in the archive, byte for byte the station's file.
pub fn assert_archived(
    rig: &Rig,
    storage: &Path,
    camera: &str,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> usize {
    let segs = window_segments(storage, camera, from, to);
    assert!(!segs.is_empty(), "no segment of {camera} in the window");
    for (seq, file, size) in &segs {
        let archived = rig.object(&format!("segments/{STATION}/{camera}/{file}"));
        let got = std::fs::read(&archived).unwrap_or_else(|e| {
            panic!(
                "segment {seq} of {camera} not archived at {}: {e}",
                archived.display()
            )
        });
        let local = std::fs::read(storage.join(camera).join(file)).unwrap();
        assert_eq!(got.len() as u64, *size);
        assert!(
            got == local,
            "archived {file} differs from the station's file"
        );
    }
    // The manifest lines are archived beside them: each segment's line is in a manifest object.
    let dir = rig.object(&format!("manifests/{STATION}/{camera}"));
    let archived_lines: String = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("no archived manifest at {}: {e}", dir.display()))
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect();
    for (seq, _, _) in &segs {
        assert!(
            archived_lines.contains(&format!("{{\"v\":2,\"seq\":{seq},")),
            "manifest line {seq} of {camera} not archived"
        );
    }
    segs.len()
}

/// "chunk stored" lines of an agent log: (camera, seq) → highest end offset stored.
pub fn stored_ends(log: &str) -> BTreeMap<(String, u64), u64> {
    let mut out = BTreeMap::new();
    for l in log.lines().filter(|l| l.contains("chunk stored")) {
        let (Some(cam), Some(seq), Some(off), Some(bytes)) = (
            field(l, "camera"),
            field(l, "seq").and_then(|s| s.parse().ok()),
            field(l, "offset").and_then(|s| s.parse::<u64>().ok()),
            field(l, "bytes").and_then(|s| s.parse::<u64>().ok()),
        ) else {
            continue;
        };
        let e = out.entry((cam, seq)).or_insert(0);
        *e = (*e).max(off + bytes);
    }
    out
}

pub fn archived_in(log: &str) -> Vec<(String, u64)> {
    log.lines()
        .filter(|l| l.contains("segment archived"))
        .filter_map(|l| Some((field(l, "camera")?, field(l, "seq")?.parse().ok()?)))
        .collect()
}

/// The value of `key=value` in a log line.
pub fn field(line: &str, key: &str) -> Option<String> {
    let at = line.find(&format!(" {key}="))? + key.len() + 2;
    let rest = &line[at..];
    let end = rest.find(' ').unwrap_or(rest.len());
    Some(rest[..end].trim_matches('"').to_owned())
}

/// The benchmarks' station behind a link (`archive_bench.rs`, `requests_bench.rs`): the rig
/// (controller, Mosquitto, local archive) on the host, reached through relays on the far side
/// of a veth pair; two RTSP test cameras sending noise (640x360, x264 2000 kbit/s) on the
/// agent's side, as cameras are on the station's LAN. The agent runs in the agent's namespace.
pub struct LinkedStation {
    pub link: crate::netns::Link,
    pub rig: Rig,
    pub broker_relay: crate::netns::Relay,
    pub ctl_relay: crate::netns::Relay,
    cams: std::sync::Mutex<Vec<crate::TestCamera>>,
    urls: Vec<String>,
    pub storage: PathBuf,
}

impl LinkedStation {
    /// `camera_bin`: the `test-camera` binary.
    pub fn start(tag: &str, camera_bin: &str) -> LinkedStation {
        let link = crate::netns::Link::create(tag).unwrap();
        let rig = Rig::start(Store::Local);
        let broker_relay = link.relay(rig.broker.port()).unwrap();
        let ctl_relay = link.relay(rig.ctl.addr.port()).unwrap();
        let storage = rig.dir.path().join("rec");
        let cams: Vec<crate::TestCamera> = (0..2)
            .map(|_| {
                crate::TestCamera::start(
                    camera_bin,
                    crate::CameraOpts {
                        width: 640,
                        height: 360,
                        bitrate_kbps: 2000,
                        snow: true,
                        prefix: link.agent_prefix(),
                        ..crate::CameraOpts::default()
                    },
                )
                .unwrap()
            })
            .collect();
        LinkedStation {
            link,
            rig,
            broker_relay,
            ctl_relay,
            urls: cams.iter().map(|c| c.url().to_owned()).collect(),
            cams: std::sync::Mutex::new(cams),
            storage,
        }
    }

    /// Stops the RTSP cameras (their encoders would take CPU from what is measured next).
    pub fn stop_cameras(&self) {
        self.cams.lock().unwrap().clear();
    }

    /// The agent's config: cameras `desk` and `box` (the RTSP cameras when `rtsp`, else the
    /// built-in source), 4 s segments, uploads through the link.
    pub fn config(&self, camera_extra: String, rtsp: bool) -> String {
        let far = crate::netns::FAR_ADDR;
        AgentSpec {
            cameras: &["desk", "box"],
            kbps: 2000,
            segment_s: 4,
            mqtt: format!("mqtt://{far}:{}", self.broker_relay.port),
            upload_url: format!("http://{far}:{}", self.ctl_relay.port),
            upload_extra: String::new(),
            camera_extra,
            rtsp: if rtsp { self.urls.clone() } else { Vec::new() },
        }
        .toml(&self.storage)
    }

    /// Starts the agent in its namespace with `cfg` and registers its key.
    pub fn start_agent(&self, cfg: &str) -> crate::agent_process::AgentProcess {
        let agent = crate::agent_process::AgentProcess::start_in(
            &self.link.agent_prefix(),
            self.rig.dir.path(),
            cfg,
            &[],
        )
        .unwrap();
        agent
            .wait_log("agent ready", std::time::Duration::from_secs(30))
            .unwrap();
        self.rig.register(&self.rig.dir.path().join("agent.toml"));
        agent
    }

    /// Waits until both cameras have finished a segment from now on.
    pub fn wait_recording(&self) {
        for cam in ["desk", "box"] {
            crate::agent_process::wait_segment_after(
                &self.storage,
                cam,
                Utc::now(),
                std::time::Duration::from_secs(30),
            )
            .unwrap();
        }
    }
}
