//! `station-agent enroll --controller URL --code CODE`: the device's side of enrollment
//! (`docs/enrollment.md`). Sends the one-time code with the station's public key (generated
//! here if the device has none) to the controller, and writes what it answers where the config
//! expects it: the MQTT password into `[mqtt] password_file`, the broker's CA into
//! `[mqtt] ca_file`, and the broker URL and username into the config itself (comments kept).
//! When the controller has a live gateway it also answers the gateway's SRT address and the
//! station's passphrase: the passphrase goes into `[live] passphrase_file` (default
//! `live.passphrase` beside the MQTT password), and every camera without a `live_target`
//! gets the gateway's address (no secret in it: the stream id `<station>/<camera>` and the
//! passphrase are added by the sender). Live stays as each camera's `live` says (off by
//! default; operators can turn it on from the controller).
//! Nothing is written when the controller refuses; the files are written beside and renamed
//! into place, the config last.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

#[derive(Debug, thiserror::Error)]
pub enum EnrollError {
    #[error("{file}: {what}")]
    Config { file: String, what: String },
    #[error("the controller refused the enrollment: {0}")]
    Refused(String),
    #[error("cannot reach the controller at {url}: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("{path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

#[derive(Serialize)]
struct EnrollIn<'a> {
    code: &'a str,
    station: &'a str,
    public_key: String,
}

/// What the controller answers.
#[derive(Debug, Clone, Deserialize)]
pub struct Enrolled {
    pub station: String,
    pub broker_url: String,
    pub username: String,
    pub password: String,
    #[serde(default)]
    pub ca_pem: Option<String>,
    pub key_fingerprint: String,
    #[serde(default)]
    pub live: Option<EnrolledLive>,
}

/// The gateway's SRT address and the station's live passphrase.
#[derive(Debug, Clone, Deserialize)]
pub struct EnrolledLive {
    pub srt_url: String,
    pub passphrase: String,
}

/// Where the config wants the credentials: `[mqtt] password_file` and `ca_file`.
pub struct Targets {
    pub password_file: PathBuf,
    pub ca_file: Option<PathBuf>,
    /// `[live] passphrase_file`, if the config names one.
    pub live_passphrase_file: Option<PathBuf>,
}

/// Reads the targets from the config text; the error names the file and the key.
pub fn targets(file: &Path, text: &str) -> Result<Targets, EnrollError> {
    let err = |what: &str| EnrollError::Config {
        file: file.display().to_string(),
        what: what.to_owned(),
    };
    let doc: toml_edit::DocumentMut = text
        .parse()
        .map_err(|e| err(&format!("not valid TOML: {e}")))?;
    let mqtt = doc
        .get("mqtt")
        .and_then(|m| m.as_table_like())
        .ok_or_else(|| {
            err("[mqtt]: missing; enrollment writes the broker's URL and credentials there")
        })?;
    let path = |key: &str| -> Result<Option<PathBuf>, EnrollError> {
        match mqtt.get(key) {
            None => Ok(None),
            Some(v) => match v.as_str() {
                Some(s) if Path::new(s).is_absolute() => Ok(Some(PathBuf::from(s))),
                _ => Err(err(&format!("[mqtt].{key}: must be an absolute path"))),
            },
        }
    };
    let password_file = path("password_file")?.ok_or_else(|| {
        err("[mqtt].password_file: missing; name the file enrollment writes the MQTT password to (e.g. /etc/stationwatch/mqtt.password)")
    })?;
    let live_passphrase_file = match doc
        .get("live")
        .and_then(|l| l.as_table_like())
        .and_then(|l| l.get("passphrase_file"))
    {
        None => None,
        Some(v) => match v.as_str() {
            Some(s) if Path::new(s).is_absolute() => Some(PathBuf::from(s)),
            _ => return Err(err("[live].passphrase_file: must be an absolute path")),
        },
    };
    Ok(Targets {
        password_file,
        ca_file: path("ca_file")?,
        live_passphrase_file,
    })
}

/// Sends the code and the key; the controller's answer.
pub async fn request(
    controller: &url::Url,
    ca: Option<&Path>,
    code: &str,
    station: &str,
    public_key_hex: String,
) -> Result<Enrolled, EnrollError> {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let unreachable = |detail: String| EnrollError::Unreachable {
        url: controller.to_string(),
        detail,
    };
    let mut b = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(60))
        .user_agent(concat!("station-agent/", env!("CARGO_PKG_VERSION")));
    if let Some(ca) = ca {
        let pem =
            std::fs::read(ca).map_err(|e| unreachable(format!("reading {}: {e}", ca.display())))?;
        b = b.add_root_certificate(
            reqwest::Certificate::from_pem(&pem).map_err(|e| unreachable(e.to_string()))?,
        );
    }
    let http = b.build().map_err(|e| unreachable(e.to_string()))?;
    let url = controller
        .join("/api/enroll")
        .map_err(|e| unreachable(e.to_string()))?;
    let r = http
        .post(url)
        .header("content-type", "application/json")
        .body(
            serde_json::to_vec(&EnrollIn {
                code,
                station,
                public_key: public_key_hex,
            })
            .map_err(|e| unreachable(e.to_string()))?,
        )
        .send()
        .await
        .map_err(|e| unreachable(e.to_string()))?;
    let status = r.status();
    let body = r.bytes().await.map_err(|e| unreachable(e.to_string()))?;
    if !status.is_success() {
        let msg = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_owned))
            .unwrap_or_else(|| format!("HTTP {status}"));
        return Err(EnrollError::Refused(msg));
    }
    let e: Enrolled = serde_json::from_slice(&body)
        .map_err(|e| unreachable(format!("unexpected answer: {e}")))?;
    if e.station != station || e.username.is_empty() || e.password.is_empty() {
        return Err(unreachable(
            "the answer is for another station or incomplete".into(),
        ));
    }
    if let Some(l) = &e.live {
        crate::config::LiveTarget::parse(&l.srt_url)
            .map_err(|err| unreachable(format!("the live gateway's address: {err}")))?;
        if !crate::config::PASSPHRASE_LEN.contains(&l.passphrase.trim().len()) {
            return Err(unreachable(
                "the live passphrase has not 10 to 79 characters".into(),
            ));
        }
    }
    Ok(e)
}

/// Writes `data` beside `path` (`mode`, owned like `like`: the config file, which the packages
/// make `root:stationwatch` so the service reads it); renamed by [`commit`].
fn stage(path: &Path, data: &[u8], mode: u32, like: &Path) -> Result<PathBuf, EnrollError> {
    use std::io::Write as _;
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let write = |source| EnrollError::Write {
        path: path.display().to_string(),
        source,
    };
    // Beside it, named after the whole file name: two targets that differ only in their
    // extension (`station.password`, `station.passphrase`) must not share a staging file.
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".enroll-tmp");
    let tmp = path.with_file_name(name);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(&tmp)
        .map_err(write)?;
    f.write_all(data).map_err(write)?;
    f.sync_all().map_err(write)?;
    // The service's user must read it: the config file's owner and group.
    if let Ok(m) = std::fs::metadata(like) {
        let _ = std::os::unix::fs::chown(&tmp, Some(m.uid()), Some(m.gid()));
    }
    Ok(tmp)
}

fn commit(tmp: &Path, path: &Path) -> Result<(), EnrollError> {
    std::fs::rename(tmp, path).map_err(|source| EnrollError::Write {
        path: path.display().to_string(),
        source,
    })
}

/// Writes the answer: CA, password, then the config with the broker's URL and username.
pub fn write(
    config: &Path,
    text: &str,
    t: &Targets,
    e: &Enrolled,
) -> Result<Vec<PathBuf>, EnrollError> {
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|err| EnrollError::Config {
        file: config.display().to_string(),
        what: format!("not valid TOML: {err}"),
    })?;
    let ca_file = match (&e.ca_pem, &t.ca_file) {
        (Some(_), None) => {
            return Err(EnrollError::Config {
                file: config.display().to_string(),
                what: "[mqtt].ca_file: missing; the broker uses TLS, name the file enrollment writes its CA to".into(),
            })
        }
        (Some(pem), Some(f)) => Some((stage(f, pem.as_bytes(), 0o644, config)?, f.clone())),
        (None, _) => None,
    };
    let pw = stage(&t.password_file, e.password.as_bytes(), 0o640, config)?;
    let live = match &e.live {
        Some(l) => {
            let file = t.live_passphrase_file.clone().unwrap_or_else(|| {
                t.password_file
                    .parent()
                    .unwrap_or(Path::new("/"))
                    .join("live.passphrase")
            });
            let tmp = stage(&file, l.passphrase.trim().as_bytes(), 0o640, config)?;
            set_live(&mut doc, config, &file, &l.srt_url)?;
            Some((tmp, file))
        }
        None => None,
    };
    {
        let mqtt = doc["mqtt"]
            .as_table_like_mut()
            .ok_or_else(|| EnrollError::Config {
                file: config.display().to_string(),
                what: "[mqtt]: not a table".into(),
            })?;
        // In place where the key exists, so that its comments stay.
        for (key, value) in [("url", &e.broker_url), ("username", &e.username)] {
            match mqtt.get_mut(key).and_then(toml_edit::Item::as_value_mut) {
                Some(v) => {
                    let decor = v.decor().clone();
                    *v = toml_edit::Value::from(value.as_str());
                    *v.decor_mut() = decor;
                }
                None => {
                    mqtt.insert(key, toml_edit::value(value.as_str()));
                }
            }
        }
        mqtt.remove("password");
    }
    let cfg = stage(config, doc.to_string().as_bytes(), 0o640, config)?;
    let mut written = Vec::new();
    if let Some((tmp, f)) = ca_file {
        commit(&tmp, &f)?;
        written.push(f);
    }
    commit(&pw, &t.password_file)?;
    written.push(t.password_file.clone());
    if let Some((tmp, f)) = live {
        commit(&tmp, &f)?;
        written.push(f);
    }
    commit(&cfg, config)?;
    written.push(config.to_owned());
    Ok(written)
}

/// `[live] passphrase_file`, and the gateway's address for every camera without a live target.
fn set_live(
    doc: &mut toml_edit::DocumentMut,
    config: &Path,
    passphrase_file: &Path,
    srt_url: &str,
) -> Result<(), EnrollError> {
    let bad = |what: &str| EnrollError::Config {
        file: config.display().to_string(),
        what: what.to_owned(),
    };
    if doc.get("live").is_none() {
        doc["live"] = toml_edit::table();
    }
    let live = doc["live"]
        .as_table_like_mut()
        .ok_or_else(|| bad("[live]: not a table"))?;
    if live.get("passphrase_file").is_none() {
        live.insert(
            "passphrase_file",
            toml_edit::value(passphrase_file.display().to_string()),
        );
    }
    if let Some(cameras) = doc
        .get_mut("camera")
        .and_then(|c| c.as_array_of_tables_mut())
    {
        for cam in cameras.iter_mut() {
            if !cam.contains_key("live_target") {
                cam.insert("live_target", toml_edit::value(srt_url));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_file_gets_its_own_content_even_when_names_differ_only_by_extension() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("agent.toml");
        let text = "[mqtt]\n# filled in by enrollment\nurl = \"mqtt://unset.invalid\"\n\
                    [[camera]]\nid = \"desk\"\nsource = \"test\"\n\
                    [[camera]]\nid = \"hall\"\nsource = \"test\"\nlive_target = \"srt://other:1\"\n";
        std::fs::write(&config, text).unwrap();
        let t = Targets {
            password_file: dir.path().join("station.password"),
            ca_file: None,
            live_passphrase_file: Some(dir.path().join("station.passphrase")),
        };
        let e = Enrolled {
            station: "S-1".into(),
            broker_url: "mqtts://broker.example:8883".into(),
            username: "S-1".into(),
            password: "the-mqtt-password".into(),
            ca_pem: None,
            key_fingerprint: "ab".into(),
            live: Some(EnrolledLive {
                srt_url: "srt://gw.example:9710".into(),
                passphrase: "the-live-passphrase".into(),
            }),
        };
        let written = write(&config, text, &t, &e).unwrap();
        assert_eq!(written.len(), 3, "{written:?}");
        assert_eq!(
            std::fs::read_to_string(&t.password_file).unwrap(),
            "the-mqtt-password"
        );
        assert_eq!(
            std::fs::read_to_string(dir.path().join("station.passphrase")).unwrap(),
            "the-live-passphrase"
        );
        let cfg = std::fs::read_to_string(&config).unwrap();
        assert!(cfg.contains("# filled in by enrollment"), "{cfg}");
        assert!(
            cfg.contains("url = \"mqtts://broker.example:8883\""),
            "{cfg}"
        );
        assert!(
            cfg.contains("live_target = \"srt://gw.example:9710\""),
            "{cfg}"
        );
        assert!(cfg.contains("live_target = \"srt://other:1\""), "{cfg}");
        assert!(!cfg.contains("the-live-passphrase") && !cfg.contains("the-mqtt-password"));
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".enroll-tmp"))
            .collect();
        assert!(left.is_empty(), "staging files left: {left:?}");
    }
}
