//! Signed HTTP requests to the controller's archive (`protocol/src/archive.rs`): each request is
//! signed with the station key over method, path and body hash.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, StatusCode};
use stationwatch_protocol::archive::{self, ArchiveErrorBody, ManifestRange, SegmentState};
use stationwatch_protocol::manifest::StationKey;
use stationwatch_protocol::{CameraId, StationId};

use crate::config::UploadConfig;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot reach the archive: {0}")]
    Http(#[from] reqwest::Error),
    #[error("archive answered {status}: {message}")]
    Status { status: u16, message: String },
    #[error("CA file {path}: {source}")]
    Ca {
        path: String,
        source: std::io::Error,
    },
}

/// The answer to a chunk.
#[derive(Debug)]
pub enum PutOutcome {
    /// Stored; `received` bytes held (and `phase` archived once complete).
    Stored(SegmentState),
    /// The archive holds another offset: go on from its `received`.
    Offset(SegmentState),
    /// The finished bytes do not match the signed entry.
    Refused(SegmentState),
}

pub struct ArchiveClient {
    http: reqwest::Client,
    base: url::Url,
    station: StationId,
    key: Arc<StationKey>,
}

impl ArchiveClient {
    pub fn new(
        cfg: &UploadConfig,
        station: StationId,
        key: Arc<StationKey>,
    ) -> Result<Self, ClientError> {
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut b = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            // No progress for this long on a request (headers or body) fails it: a cut link is
            // noticed and the upload resumes from what the archive holds.
            .read_timeout(Duration::from_secs(30))
            .user_agent(concat!("station-agent/", env!("CARGO_PKG_VERSION")));
        if let Some(ca) = &cfg.ca_file {
            let pem = std::fs::read(ca).map_err(|source| ClientError::Ca {
                path: ca.display().to_string(),
                source,
            })?;
            let cert = reqwest::Certificate::from_pem(&pem)?;
            b = b.add_root_certificate(cert);
        }
        Ok(ArchiveClient {
            http: b.build()?,
            base: cfg.url.clone(),
            station,
            key,
        })
    }

    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Bytes,
    ) -> reqwest::RequestBuilder {
        let auth = archive::authorization(
            &self.station,
            &self.key,
            method.as_str(),
            path_and_query,
            &body,
        );
        let mut url = self.base.clone();
        let (path, query) = path_and_query
            .split_once('?')
            .map_or((path_and_query, None), |(p, q)| (p, Some(q)));
        let base_path = url.path().trim_end_matches('/').to_owned();
        url.set_path(&format!("{base_path}{path}"));
        url.set_query(query);
        self.http
            .request(method, url)
            .header(reqwest::header::AUTHORIZATION, auth)
            .body(body)
    }

    /// The request is signed over the path as the controller sees it: without the base URL's
    /// own path prefix (a reverse proxy strips it).
    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), ClientError> {
        let resp = self
            .request(method, path, body)
            .timeout(timeout)
            .send()
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        Ok((status, bytes))
    }

    fn error(status: StatusCode, body: &[u8]) -> ClientError {
        let message = serde_json::from_slice::<ArchiveErrorBody>(body)
            .map(|b| b.error)
            .unwrap_or_else(|_| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
        ClientError::Status {
            status: status.as_u16(),
            message,
        }
    }

    /// The archived range of a camera's manifest; `None` when the archive has none.
    pub async fn manifest_range(
        &self,
        camera: &CameraId,
    ) -> Result<Option<ManifestRange>, ClientError> {
        let path = archive::manifest_path(&self.station, camera);
        let (status, body) = self
            .send(Method::GET, &path, Bytes::new(), Duration::from_secs(30))
            .await?;
        match status {
            StatusCode::OK => {
                serde_json::from_slice(&body)
                    .map(Some)
                    .map_err(|e| ClientError::Status {
                        status: 200,
                        message: format!("unreadable manifest range: {e}"),
                    })
            }
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Self::error(s, &body)),
        }
    }

    /// Sends manifest lines; the new archived range.
    pub async fn append_manifest(
        &self,
        camera: &CameraId,
        lines: Vec<u8>,
    ) -> Result<ManifestRange, ClientError> {
        let path = archive::manifest_path(&self.station, camera);
        let (status, body) = self
            .send(
                Method::POST,
                &path,
                Bytes::from(lines),
                Duration::from_secs(120),
            )
            .await?;
        if status != StatusCode::OK {
            return Err(Self::error(status, &body));
        }
        serde_json::from_slice(&body).map_err(|e| ClientError::Status {
            status: 200,
            message: format!("unreadable manifest range: {e}"),
        })
    }

    /// Where a segment stands; `None` when the archive does not list it (its manifest line is
    /// missing).
    pub async fn segment_state(
        &self,
        camera: &CameraId,
        seq: u64,
    ) -> Result<Option<SegmentState>, ClientError> {
        let path = archive::segment_path(&self.station, camera, seq);
        let (status, body) = self
            .send(Method::GET, &path, Bytes::new(), Duration::from_secs(30))
            .await?;
        match status {
            StatusCode::OK => Ok(Some(parse_state(&body)?)),
            StatusCode::NOT_FOUND => Ok(None),
            s => Err(Self::error(s, &body)),
        }
    }

    /// Sends bytes `offset..offset+chunk.len()` of a segment. `body` streams the same bytes
    /// (paced by the caller); the signature covers `chunk`.
    pub async fn put_chunk(
        &self,
        camera: &CameraId,
        seq: u64,
        offset: u64,
        chunk: Bytes,
        body: reqwest::Body,
        timeout: Duration,
    ) -> Result<PutOutcome, ClientError> {
        let path = format!(
            "{}?offset={offset}",
            archive::segment_path(&self.station, camera, seq)
        );
        let resp = self
            .request(Method::PUT, &path, chunk)
            .body(body)
            .timeout(timeout)
            .send()
            .await?;
        let status = resp.status();
        let bytes = resp.bytes().await?;
        let state_of = |b: &[u8]| {
            serde_json::from_slice::<ArchiveErrorBody>(b)
                .ok()
                .and_then(|e| e.state)
        };
        match status {
            StatusCode::OK | StatusCode::CREATED => Ok(PutOutcome::Stored(parse_state(&bytes)?)),
            StatusCode::CONFLICT => match state_of(&bytes) {
                Some(s) => Ok(PutOutcome::Offset(s)),
                None => Err(Self::error(status, &bytes)),
            },
            StatusCode::UNPROCESSABLE_ENTITY => match state_of(&bytes) {
                Some(s) if s.phase == archive::SegmentPhase::Refused => Ok(PutOutcome::Refused(s)),
                _ => Err(Self::error(status, &bytes)),
            },
            s => Err(Self::error(s, &bytes)),
        }
    }
}

fn parse_state(body: &[u8]) -> Result<SegmentState, ClientError> {
    serde_json::from_slice(body).map_err(|e| ClientError::Status {
        status: 200,
        message: format!("unreadable segment state: {e}"),
    })
}
