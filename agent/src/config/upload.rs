//! The `[upload]` section: where footage goes (the controller's archive endpoint), what is
//! uploaded without being asked (`mode`, per camera in `[upload.camera]`), chunk size, and the
//! backfill cap and pause schedule (`docs/archive.md`).

use std::collections::BTreeMap;
use std::path::PathBuf;

use chrono::NaiveTime;
use stationwatch_protocol::archive::MAX_CHUNK_BYTES;
use stationwatch_protocol::mqtt::UploadMode;
use stationwatch_protocol::CameraId;
use url::Url;

use super::{join, type_name, CameraConfig, Reader};

/// A validated `[upload]` section.
#[derive(Debug, Clone, PartialEq)]
pub struct UploadConfig {
    /// The controller's base URL (`http://` or `https://`); requests go to `/archive/v1/...`.
    pub url: Url,
    /// The station's mode.
    pub mode: UploadMode,
    /// Cameras whose mode differs from the station's.
    pub camera_modes: BTreeMap<CameraId, UploadMode>,
    /// Bytes per chunk request (at most 4 MiB): a cut link re-sends at most this much per file.
    pub chunk_bytes: u64,
    /// Backfill (mode `all`, not requested windows) sends at most this fast; `None`: no cap.
    pub backfill_bps: Option<u64>,
    /// Local-time windows during which backfill does not run (e.g. voting hours).
    pub backfill_pause: Vec<(NaiveTime, NaiveTime)>,
    /// Extra CA (PEM) to trust for an `https://` URL, besides the system's.
    pub ca_file: Option<PathBuf>,
}

impl UploadConfig {
    /// The configured mode of `camera`.
    pub fn mode_of(&self, camera: &CameraId) -> UploadMode {
        self.camera_modes.get(camera).copied().unwrap_or(self.mode)
    }
}

/// Whether local time `t` is inside one of the pause windows (a window may cross midnight).
pub fn paused_at(windows: &[(NaiveTime, NaiveTime)], t: NaiveTime) -> bool {
    windows.iter().any(|&(from, to)| {
        if from <= to {
            t >= from && t < to
        } else {
            t >= from || t < to
        }
    })
}

impl Reader {
    /// `Some(None)`: no `[upload]` section; `None`: invalid.
    pub(super) fn upload(
        &mut self,
        root: &toml::Table,
        cameras: &[CameraConfig],
        check_machine: bool,
    ) -> Option<Option<UploadConfig>> {
        let p = "upload";
        let Some(t) = self.table(root, "", p, false) else {
            return Some(None).filter(|_| !root.contains_key(p));
        };
        self.unknown_keys(
            t,
            p,
            &[
                "url",
                "mode",
                "camera",
                "chunk_kib",
                "backfill_kbps",
                "backfill_pause",
                "ca_file",
            ],
        );
        let url = self
            .string(t, p, "url", true)
            .and_then(|u| match Url::parse(&u) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {
                    Some(url)
                }
                Ok(_) => {
                    self.problem(
                        join(p, "url"),
                        "must be an http:// or https:// URL with a host",
                    );
                    None
                }
                Err(e) => {
                    self.problem(join(p, "url"), format!("not a URL: {e}"));
                    None
                }
            });
        let mode = self.upload_mode(t, p, "mode");
        let mut camera_modes = BTreeMap::new();
        let mut cams_ok = true;
        if let Some(c) = self.table(t, p, "camera", false) {
            let path = join(p, "camera");
            for key in c.keys() {
                match cameras.iter().find(|cam| cam.id.as_str() == key) {
                    Some(cam) => match self.upload_mode(c, &path, key) {
                        Some(m) => {
                            camera_modes.insert(cam.id.clone(), m);
                        }
                        None => cams_ok = false,
                    },
                    None => {
                        self.problem(join(&path, key), "is not a configured camera id");
                        cams_ok = false;
                    }
                }
            }
        }
        let max_kib = (MAX_CHUNK_BYTES / 1024) as i64;
        let chunk = self.int(t, p, "chunk_kib", 16..=max_kib, 1024);
        let cap = self.int(t, p, "backfill_kbps", 0..=10_000_000, 0);
        let pause = self.pause_windows(t, p);
        let ca_file = self.file(t, p, "ca_file", check_machine);
        if t.contains_key("ca_file") && ca_file.is_none() {
            return None;
        }
        cams_ok.then_some(())?;
        Some(Some(UploadConfig {
            url: url?,
            mode: mode?,
            camera_modes,
            chunk_bytes: chunk? as u64 * 1024,
            backfill_bps: cap.filter(|c| *c > 0).map(|c| c as u64 * 1000),
            backfill_pause: pause?,
            ca_file,
        }))
    }

    fn upload_mode(&mut self, t: &toml::Table, path: &str, key: &str) -> Option<UploadMode> {
        match t.get(key) {
            None => Some(UploadMode::default()),
            Some(toml::Value::String(s)) => UploadMode::parse(s).or_else(|| {
                self.problem(
                    join(path, key),
                    format!("{s:?} is not one of \"off\", \"requested\", \"all\""),
                );
                None
            }),
            Some(v) => {
                self.problem(
                    join(path, key),
                    format!("must be a string, found {}", type_name(v)),
                );
                None
            }
        }
    }

    fn pause_windows(&mut self, t: &toml::Table, p: &str) -> Option<Vec<(NaiveTime, NaiveTime)>> {
        let key = "backfill_pause";
        let list = match t.get(key) {
            None => return Some(Vec::new()),
            Some(toml::Value::Array(a)) => a,
            Some(v) => {
                self.problem(
                    join(p, key),
                    format!("must be a list of \"HH:MM-HH:MM\", found {}", type_name(v)),
                );
                return None;
            }
        };
        let mut out = Vec::new();
        let mut ok = true;
        for (i, v) in list.iter().enumerate() {
            let parsed = v.as_str().and_then(|s| {
                let (a, b) = s.split_once('-')?;
                let a = NaiveTime::parse_from_str(a.trim(), "%H:%M").ok()?;
                let b = NaiveTime::parse_from_str(b.trim(), "%H:%M").ok()?;
                (a != b).then_some((a, b))
            });
            match parsed {
                Some(w) => out.push(w),
                None => {
                    self.problem(
                        format!("{p}.{key}[{i}]"),
                        "must be \"HH:MM-HH:MM\" (local time, start and end different)",
                    );
                    ok = false;
                }
            }
        }
        ok.then_some(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> NaiveTime {
        NaiveTime::parse_from_str(s, "%H:%M").unwrap()
    }

    fn parse(upload: &str) -> Result<crate::config::AgentConfig, crate::config::ConfigError> {
        let text = format!(
            "[station]\nid = \"s1\"\n[storage]\npath = \"/var/lib/sw\"\n{upload}\n\
             [[camera]]\nid = \"desk\"\nsource = \"test\"\n"
        );
        crate::config::AgentConfig::parse(std::path::Path::new("/etc/sw/agent.toml"), &text, false)
    }

    #[test]
    fn the_upload_section_is_read_and_every_mistake_named() {
        assert_eq!(parse("").unwrap().upload, None);
        let c = parse(
            "[upload]\nurl = \"https://ctl.example\"\nmode = \"all\"\nchunk_kib = 256\n\
             backfill_kbps = 800\nbackfill_pause = [\"07:00-20:00\"]\n[upload.camera]\ndesk = \"off\"\n",
        )
        .unwrap()
        .upload
        .unwrap();
        assert_eq!(c.mode, UploadMode::All);
        assert_eq!(c.mode_of(&CameraId::new("desk").unwrap()), UploadMode::Off);
        assert_eq!(c.chunk_bytes, 256 * 1024);
        assert_eq!(c.backfill_bps, Some(800_000));
        let err = parse(
            "[upload]\nurl = \"ftp://x\"\nmode = \"sometimes\"\nchunk_kib = 9000\n\
             backfill_pause = [\"7-8\"]\n[upload.camera]\nhall = \"all\"\n",
        )
        .unwrap_err()
        .to_string();
        for key in [
            "upload.url",
            "upload.mode",
            "upload.chunk_kib",
            "upload.backfill_pause[0]",
            "upload.camera.hall",
        ] {
            assert!(err.contains(key), "{key} not named in:\n{err}");
        }
        assert!(err.contains("/etc/sw/agent.toml"), "{err}");
    }

    #[test]
    fn pause_windows_may_cross_midnight() {
        let day = [(t("07:00"), t("20:00"))];
        assert!(paused_at(&day, t("07:00")));
        assert!(paused_at(&day, t("19:59")));
        assert!(!paused_at(&day, t("20:00")));
        assert!(!paused_at(&day, t("03:00")));
        let night = [(t("22:00"), t("06:00"))];
        assert!(paused_at(&night, t("23:30")));
        assert!(paused_at(&night, t("05:00")));
        assert!(!paused_at(&night, t("12:00")));
    }
}
