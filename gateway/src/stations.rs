//! Which stations may publish and with which passphrase, which cameras are public and with
//! which masks: the controller's list (`GET /api/live/gateway`, bearer token), refreshed every
//! `refresh_seconds` and cached on disk so that a gateway restarting while the controller is
//! unreachable still admits the stations it knew. Nothing else is shared between gateways.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use stationwatch_protocol::live::{parse_stream_id, GatewayConfig};
use stationwatch_protocol::masks::{self, Polygon};
use stationwatch_protocol::{CameraId, StationId};
use tracing::{info, warn};

use crate::srt::Admission;

#[derive(Debug, Clone, Default)]
struct Table {
    passphrases: HashMap<StationId, String>,
    /// Public cameras and their masks.
    public: HashMap<(StationId, CameraId), Vec<Polygon>>,
}

/// The current list, shared by the SRT callback and the publishers.
#[derive(Clone, Default)]
pub struct Stations {
    table: Arc<RwLock<Option<Table>>>,
}

#[derive(Debug, thiserror::Error)]
pub enum StationsError {
    #[error("asking the controller ({url}): {message}")]
    Fetch { url: String, message: String },
    #[error("the controller's answer is not a station list: {0}")]
    Decode(String),
    #[error("{path}: {message}")]
    Cache { path: PathBuf, message: String },
    #[error("CA file {path}: {message}")]
    Ca { path: PathBuf, message: String },
}

impl Stations {
    /// Replaces the list. Entries with an unusable passphrase (SRT takes 10 to 79 characters)
    /// or masks that fail the checks are left out, loudly: such a camera is not public.
    pub fn set(&self, config: &GatewayConfig) {
        let mut t = Table::default();
        for s in &config.stations {
            if !(10..=79).contains(&s.passphrase.len()) {
                warn!(station = %s.station, "station left out: its passphrase is not 10 to 79 characters");
                continue;
            }
            t.passphrases
                .insert(s.station.clone(), s.passphrase.clone());
            for c in &s.public {
                match masks::validate(&c.masks) {
                    Ok(()) => {
                        t.public
                            .insert((s.station.clone(), c.camera.clone()), c.masks.clone());
                    }
                    Err(e) => {
                        warn!(station = %s.station, camera = %c.camera, error = %e, "camera not published to the public: its masks are invalid");
                    }
                }
            }
        }
        *self.table.write() = Some(t);
    }

    /// Whether a list was ever loaded (until then every caller is refused).
    pub fn loaded(&self) -> bool {
        self.table.read().is_some()
    }

    pub fn passphrase(&self, station: &StationId) -> Option<String> {
        self.table
            .read()
            .as_ref()?
            .passphrases
            .get(station)
            .cloned()
    }

    /// The masks of a public camera; `None` when the camera is not public (or unknown).
    pub fn public_masks(&self, station: &StationId, camera: &CameraId) -> Option<Vec<Polygon>> {
        self.table
            .read()
            .as_ref()?
            .public
            .get(&(station.clone(), camera.clone()))
            .cloned()
    }

    pub fn count(&self) -> usize {
        self.table
            .read()
            .as_ref()
            .map_or(0, |t| t.passphrases.len())
    }
}

impl Admission for Stations {
    fn passphrase(&self, stream_id: &str, _peer: Option<SocketAddr>) -> Result<String, String> {
        let (station, _camera) = parse_stream_id(stream_id)?;
        if !self.loaded() {
            return Err("no station list from the controller yet".into());
        }
        Stations::passphrase(self, &station).ok_or_else(|| format!("unknown station {station}"))
    }
}

/// Fetches the list from the controller.
pub struct Fetcher {
    client: reqwest::Client,
    url: String,
    token: String,
    cache: PathBuf,
}

impl Fetcher {
    pub fn new(
        controller: &url::Url,
        token: String,
        ca_file: Option<&Path>,
        cache: &Path,
    ) -> Result<Fetcher, StationsError> {
        let url = controller
            .join("api/live/gateway")
            .map_err(|e| StationsError::Fetch {
                url: controller.to_string(),
                message: e.to_string(),
            })?
            .to_string();
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(30))
            .user_agent(concat!("live-gateway/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = ca_file {
            let cert = std::fs::read(ca)
                .map_err(|e| e.to_string())
                .and_then(|pem| reqwest::Certificate::from_pem(&pem).map_err(|e| e.to_string()))
                .map_err(|message| StationsError::Ca {
                    path: ca.to_owned(),
                    message,
                })?;
            b = b.add_root_certificate(cert);
        }
        let client = b.build().map_err(|e| StationsError::Fetch {
            url: url.clone(),
            message: e.to_string(),
        })?;
        Ok(Fetcher {
            client,
            url,
            token,
            cache: cache.to_owned(),
        })
    }

    pub async fn fetch(&self) -> Result<GatewayConfig, StationsError> {
        let err = |message: String| StationsError::Fetch {
            url: self.url.clone(),
            message,
        };
        let resp = self
            .client
            .get(&self.url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(err(format!("HTTP {status}")));
        }
        let body = resp.bytes().await.map_err(|e| err(e.to_string()))?;
        if body.len() > 64 << 20 {
            return Err(StationsError::Decode("larger than 64 MiB".into()));
        }
        let config: GatewayConfig =
            serde_json::from_slice(&body).map_err(|e| StationsError::Decode(e.to_string()))?;
        if let Err(e) = std::fs::write(&self.cache, &body) {
            warn!(path = %self.cache.display(), error = %e, "station list not cached");
        }
        Ok(config)
    }

    /// The list cached by an earlier run.
    pub fn cached(&self) -> Result<Option<GatewayConfig>, StationsError> {
        match std::fs::read(&self.cache) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| StationsError::Cache {
                    path: self.cache.clone(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(StationsError::Cache {
                path: self.cache.clone(),
                message: e.to_string(),
            }),
        }
    }
}

/// Loads the cached list, then refreshes from the controller forever.
pub async fn keep_fresh(stations: Stations, fetcher: Fetcher, every: Duration) {
    match fetcher.cached() {
        Ok(Some(c)) => {
            stations.set(&c);
            info!(
                stations = stations.count(),
                "station list loaded from the cache"
            );
        }
        Ok(None) => {}
        Err(e) => warn!(error = %e, "cached station list unreadable"),
    }
    let mut failing = false;
    loop {
        match fetcher.fetch().await {
            Ok(c) => {
                stations.set(&c);
                if failing {
                    info!(
                        stations = stations.count(),
                        "station list from the controller again"
                    );
                }
                failing = false;
            }
            Err(e) => {
                if !failing {
                    warn!(error = %e, "station list not refreshed; keeping the last one");
                }
                failing = true;
            }
        }
        tokio::time::sleep(if failing {
            every.min(Duration::from_secs(5))
        } else {
            every
        })
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stationwatch_protocol::live::{GatewayStation, PublicCamera};

    fn config() -> GatewayConfig {
        GatewayConfig {
            stations: vec![
                GatewayStation {
                    station: StationId::new("st-1").unwrap(),
                    passphrase: "0123456789abcdef".into(),
                    region: None,
                    public: vec![
                        PublicCamera {
                            camera: CameraId::new("desk").unwrap(),
                            masks: vec![vec![[0.1, 0.1], [0.5, 0.1], [0.5, 0.5]]],
                        },
                        PublicCamera {
                            camera: CameraId::new("bad").unwrap(),
                            masks: vec![vec![[0.1, 0.1], [2.0, 0.1], [0.5, 0.5]]],
                        },
                    ],
                },
                GatewayStation {
                    station: StationId::new("st-2").unwrap(),
                    passphrase: "short".into(),
                    region: None,
                    public: vec![],
                },
            ],
        }
    }

    #[test]
    fn admission_by_stream_id() {
        let s = Stations::default();
        assert!(
            Admission::passphrase(&s, "st-1/desk", None).is_err(),
            "no list yet"
        );
        s.set(&config());
        assert_eq!(
            Admission::passphrase(&s, "st-1/desk", None).unwrap(),
            "0123456789abcdef"
        );
        assert_eq!(
            Admission::passphrase(&s, "#!::r=st-1/desk,m=publish", None).unwrap(),
            "0123456789abcdef"
        );
        assert!(Admission::passphrase(&s, "st-9/desk", None).is_err());
        assert!(
            Admission::passphrase(&s, "st-2/desk", None).is_err(),
            "short passphrase"
        );
        assert!(Admission::passphrase(&s, "st-1", None).is_err());
        assert!(Admission::passphrase(&s, "#!::r=st-1/desk,m=request", None).is_err());
    }

    #[test]
    fn public_only_with_valid_masks() {
        let s = Stations::default();
        s.set(&config());
        let st = StationId::new("st-1").unwrap();
        assert!(s
            .public_masks(&st, &CameraId::new("desk").unwrap())
            .is_some());
        assert!(s
            .public_masks(&st, &CameraId::new("bad").unwrap())
            .is_none());
        assert!(s
            .public_masks(&st, &CameraId::new("door").unwrap())
            .is_none());
    }
}
