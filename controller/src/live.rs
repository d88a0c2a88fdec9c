//! Live viewing through the gateways (`docs/live.md`): the secrets the controller shares with
//! them (the live secret stations' SRT passphrases derive from, the token gateways present),
//! the station list gateways fetch, and which files of the HLS folder may be served.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};
use stationwatch_protocol::live::{passphrase, GatewayConfig, GatewayStation, PublicCamera};
use stationwatch_protocol::StationId;
use tracing::{info, warn};

use crate::config::LiveConfig;
use crate::fleet::Fleet;
use crate::store::Store;

#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("{path}: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

/// The loaded `[live]` section and its secrets.
#[derive(Clone)]
pub struct Live {
    pub cfg: LiveConfig,
    secret: Vec<u8>,
    token_digest: [u8; 32],
}

impl Live {
    /// Reads the secret and the gateway token, creating each (random, mode 0600) if missing.
    pub fn load(cfg: &LiveConfig) -> Result<Live, LiveError> {
        let secret = read_or_create(&cfg.secret_file, || hex::encode(rand::random::<[u8; 32]>()))?;
        if secret.len() < 32 {
            return Err(LiveError::Invalid {
                path: cfg.secret_file.clone(),
                message: "the live secret must be at least 32 characters".into(),
            });
        }
        let token = read_or_create(&cfg.gateway_token_file, || {
            format!("swg_{}", hex::encode(rand::random::<[u8; 32]>()))
        })?;
        if token.len() < 32 {
            return Err(LiveError::Invalid {
                path: cfg.gateway_token_file.clone(),
                message: "the gateway token must be at least 32 characters".into(),
            });
        }
        Ok(Live {
            cfg: cfg.clone(),
            secret: secret.into_bytes(),
            token_digest: Sha256::digest(token.as_bytes()).into(),
        })
    }

    /// A station's SRT passphrase.
    pub fn passphrase(&self, station: &StationId) -> String {
        passphrase(&self.secret, station)
    }

    /// Whether a presented token is the gateway token (compared in constant time, on digests).
    pub fn gateway_token_ok(&self, presented: &str) -> bool {
        let d: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        d.iter()
            .zip(self.token_digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }

    /// What gateways fetch: every station the controller knows with its passphrase, and its
    /// public cameras with their masks. A public camera whose masks cannot be read, or were
    /// never set (an operator saving an empty list says "none needed"), is left out (fails
    /// closed: no public copy rather than an unmasked one).
    pub async fn gateway_config(
        &self,
        store: &Store,
        fleet: &Fleet,
    ) -> Result<GatewayConfig, crate::store::StoreError> {
        let public = store.live_public().await?;
        let mut stations = Vec::new();
        for (id, region) in fleet.ids_and_regions() {
            let mut cams = Vec::new();
            for (_, camera) in public.iter().filter(|(s, _)| *s == id) {
                match store.masks(&id, camera).await {
                    Ok(Some(row)) => cams.push(PublicCamera {
                        camera: camera.clone(),
                        masks: row.masks,
                    }),
                    // Never reviewed (not even "no mask needed"): not public.
                    Ok(None) => {
                        warn!(station = %id, %camera, "public camera left out: its masks were never set");
                    }
                    Err(e) => {
                        warn!(station = %id, %camera, error = %e, "public camera left out: its masks cannot be read");
                    }
                }
            }
            stations.push(GatewayStation {
                passphrase: self.passphrase(&id),
                station: id,
                region,
                public: cams,
            });
        }
        Ok(GatewayConfig { stations })
    }

    /// The folder of a camera's stream on one side (`private` or `public`).
    pub fn folder(
        &self,
        side: &str,
        station: &StationId,
        camera: &stationwatch_protocol::CameraId,
    ) -> PathBuf {
        self.cfg
            .hls_dir
            .join(side)
            .join(station.as_str())
            .join(camera.as_str())
    }
}

/// A file name the live routes serve: the playlist or a numbered segment, nothing else (no
/// path, no temporary file, no status).
pub fn servable(name: &str) -> Option<&'static str> {
    if name == stationwatch_protocol::live::PLAYLIST {
        return Some("application/vnd.apple.mpegurl");
    }
    let digits = name.strip_suffix(".ts")?;
    (!digits.is_empty() && digits.len() <= 20 && digits.bytes().all(|b| b.is_ascii_digit()))
        .then_some("video/mp2t")
}

fn read_or_create(path: &Path, make: impl FnOnce() -> String) -> Result<String, LiveError> {
    match std::fs::read_to_string(path) {
        Ok(s) => {
            // As the agent does for its key: say so, do not refuse (the operator fixes it).
            use std::os::unix::fs::PermissionsExt;
            if let Ok(meta) = std::fs::metadata(path) {
                let mode = meta.permissions().mode() & 0o777;
                if mode & 0o077 != 0 {
                    warn!(
                        path = %path.display(),
                        mode = format!("{mode:o}"),
                        "live secret is readable by other users; chmod 600 it"
                    );
                }
            }
            Ok(s.trim().to_owned())
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            // Its folder too, like the controller's signing key (`keys::load_or_create_key`).
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir).map_err(|source| LiveError::File {
                    path: dir.to_owned(),
                    source,
                })?;
            }
            let value = make();
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| LiveError::File {
                    path: path.to_owned(),
                    source,
                })?;
            f.write_all(format!("{value}\n").as_bytes())
                .and_then(|_| f.sync_all())
                .map_err(|source| LiveError::File {
                    path: path.to_owned(),
                    source,
                })?;
            info!(path = %path.display(), "live secret created");
            Ok(value)
        }
        Err(source) => Err(LiveError::File {
            path: path.to_owned(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_playlists_and_numbered_segments_are_served() {
        assert!(servable("index.m3u8").is_some());
        assert_eq!(servable("12.ts"), Some("video/mp2t"));
        for bad in [
            "../index.m3u8",
            ".ts",
            "1.ts/..",
            "index.m3u8.bak",
            ".index.m3u8.tmp",
            "status.json",
            "a1.ts",
            "1.TS",
            "/1.ts",
        ] {
            assert!(servable(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn secrets_are_created_once_private_and_the_token_is_checked() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cfg = LiveConfig {
            hls_dir: dir.path().join("hls"),
            // In a folder that does not exist yet: created, like the controller's key's.
            secret_file: dir.path().join("secrets/live.secret"),
            gateway_token_file: dir.path().join("secrets/gateway.token"),
            public_page: false,
            station_srt_url: None,
        };
        let a = Live::load(&cfg).unwrap();
        let b = Live::load(&cfg).unwrap();
        let st = StationId::new("ST-1").unwrap();
        assert_eq!(a.passphrase(&st), b.passphrase(&st));
        let mode = std::fs::metadata(&cfg.secret_file)
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(&cfg.gateway_token_file).unwrap();
        assert!(a.gateway_token_ok(token.trim()));
        assert!(!a.gateway_token_ok("swg_wrong"));
        assert!(!a.gateway_token_ok(""));
        std::fs::write(&cfg.secret_file, "short").unwrap();
        assert!(Live::load(&cfg).is_err());
    }
}
