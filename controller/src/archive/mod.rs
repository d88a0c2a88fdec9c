//! The central archive (`docs/archive.md`): object storage (a local folder or S3-compatible,
//! through `object_store`), the staging folder of partly received segments, and the checks on
//! arrival. The station endpoints (`http/archive.rs`) authenticate the request; everything they
//! then do is here:
//!
//! * [`Archive::append_manifest`]: lines extending a camera's archived manifest range, each
//!   parsed, for this station and camera, signed by a registered key of the station (current or
//!   retired) and chained; one bad line refuses the batch (nothing stored, `archive_refused`).
//! * [`Archive::put_chunk`]: bytes of a segment at exactly the offset the archive holds, synced
//!   per chunk; the finished file is checked against the signed entry (size and SHA-256) and
//!   goes to the object store (`archived`) or aside (`quarantine/`, `refused`).
//!
//! Object store or staging failures (a full disk) answer 507 and raise `archive_unavailable`;
//! staged bytes are kept, and the next request goes on from them.

mod manifest;
pub mod retention;
mod segment;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::prefix::PrefixStore;
use object_store::{ObjectStore, PutPayload, RetryConfig, WriteMultipart};
use parking_lot::Mutex;
use stationwatch_protocol::archive::SegmentState;
use stationwatch_protocol::{CameraId, StationId};
use tokio::io::AsyncReadExt;
use tokio::sync::Semaphore;
use tracing::warn;

use crate::config::{ArchiveConfig, ArchiveStoreConfig};
use crate::fleet::Fleet;
use crate::store::{Store, StoreError};

pub use manifest::BatchError;

/// Files at least this large go to the object store in parts (streamed from the staged file).
const MULTIPART_FROM: u64 = 8 * 1024 * 1024;
/// Part size of multipart uploads (S3's minimum is 5 MiB).
const PART_BYTES: usize = 8 * 1024 * 1024;

/// Why the archive could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("archive folder {path}: {source}")]
    Folder {
        path: String,
        source: std::io::Error,
    },
    #[error("archive object store: {0}")]
    Store(#[from] object_store::Error),
}

/// What went wrong with a station's request; each maps to one HTTP status (`http/archive.rs`).
#[derive(Debug, thiserror::Error)]
pub enum ArchiveError {
    /// 404: no such manifest, entry, or not a segment entry.
    #[error("{0}")]
    NotFound(String),
    /// 400: the request itself is malformed (empty batch, missing newline).
    #[error("{0}")]
    BadRequest(String),
    /// 409: not at the offset or range the archive holds (the state says where it stands).
    #[error("{0}")]
    Conflict(String, Option<Box<SegmentState>>),
    /// 422: refused (bad line, fork, bytes not matching the signed entry); alerted.
    #[error("{0}")]
    Refused(String, Option<Box<SegmentState>>),
    /// 507: the object store or the staging folder failed (e.g. full); alerted, nothing lost.
    #[error("archive storage unavailable: {0}")]
    Unavailable(String),
    /// 503: the index database failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The archive; cheap to clone.
#[derive(Clone)]
pub struct Archive {
    inner: Arc<Inner>,
}

struct Inner {
    objects: Arc<dyn ObjectStore>,
    staging: PathBuf,
    /// Station requests in progress.
    permits: Arc<Semaphore>,
    /// One request at a time per segment (or manifest): key → lock.
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    store: Store,
    fleet: Fleet,
    /// Where the objects are, for logs.
    describe: String,
}

impl Archive {
    /// Opens the object store and creates the folders it needs.
    pub fn open(cfg: &ArchiveConfig, store: Store, fleet: Fleet) -> Result<Archive, OpenError> {
        let folder = |p: &Path| {
            std::fs::create_dir_all(p).map_err(|source| OpenError::Folder {
                path: p.display().to_string(),
                source,
            })
        };
        folder(&cfg.staging)?;
        let (objects, describe): (Arc<dyn ObjectStore>, String) = match &cfg.store {
            ArchiveStoreConfig::Local(dir) => {
                folder(dir)?;
                (
                    Arc::new(LocalFileSystem::new_with_prefix(dir)?),
                    format!("file://{}", dir.display()),
                )
            }
            ArchiveStoreConfig::S3(s3) => {
                let mut b = AmazonS3Builder::new()
                    .with_bucket_name(&s3.bucket)
                    .with_region(&s3.region)
                    .with_allow_http(s3.allow_http)
                    .with_retry(RetryConfig {
                        max_retries: 2,
                        retry_timeout: Duration::from_secs(30),
                        ..Default::default()
                    });
                if let Some(e) = &s3.endpoint {
                    b = b.with_endpoint(e);
                }
                if let (Some(id), Some(secret)) = (&s3.access_key_id, &s3.secret_access_key) {
                    b = b.with_access_key_id(id).with_secret_access_key(secret);
                }
                let s3_store = b.build()?;
                let describe = format!("s3://{}/{}", s3.bucket, s3.prefix);
                if s3.prefix.is_empty() {
                    (Arc::new(s3_store), describe)
                } else {
                    (
                        Arc::new(PrefixStore::new(s3_store, s3.prefix.as_str())),
                        describe,
                    )
                }
            }
        };
        Ok(Archive {
            inner: Arc::new(Inner {
                objects,
                staging: cfg.staging.clone(),
                permits: Arc::new(Semaphore::new(cfg.max_uploads.max(1))),
                locks: Mutex::new(HashMap::new()),
                store,
                fleet,
                describe,
            }),
        })
    }

    /// Where the archive keeps its objects (`file:///...` or `s3://bucket/prefix`).
    pub fn describe(&self) -> &str {
        &self.inner.describe
    }

    /// The object store (for tests and later readers of the archive).
    pub fn objects(&self) -> &Arc<dyn ObjectStore> {
        &self.inner.objects
    }

    /// A permit for one station request, or `None` when `max_uploads` are in progress.
    pub fn try_permit(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.inner.permits.clone().try_acquire_owned().ok()
    }

    /// Serialises requests on one key (a segment, a camera's manifest).
    async fn lock(&self, key: String) -> KeyGuard<'_> {
        let m = self
            .inner
            .locks
            .lock()
            .entry(key.clone())
            .or_default()
            .clone();
        let guard = m.clone().lock_owned().await;
        KeyGuard {
            archive: self,
            key,
            lock: m,
            _guard: Some(guard),
        }
    }

    fn staging_file(&self, station: &StationId, camera: &CameraId, seq: u64) -> PathBuf {
        self.inner
            .staging
            .join(station.as_str())
            .join(camera.as_str())
            .join(format!("{seq}.part"))
    }

    /// Writes a small object in one request.
    async fn put_bytes(&self, key: &str, bytes: Vec<u8>) -> Result<(), ArchiveError> {
        let path = object_path(key)?;
        self.inner
            .objects
            .put(&path, PutPayload::from(bytes))
            .await
            .map_err(|e| ArchiveError::Unavailable(format!("{}: {key}: {e}", self.describe())))?;
        Ok(())
    }

    /// Writes a staged file to the object store: in one request when small, else in parts read
    /// from the file (never the whole file in memory).
    async fn put_file(&self, key: &str, file: &Path, size: u64) -> Result<(), ArchiveError> {
        let unavailable =
            |e: &dyn std::fmt::Display| ArchiveError::Unavailable(format!("{key}: {e}"));
        if size < MULTIPART_FROM {
            let bytes = tokio::fs::read(file)
                .await
                .map_err(|e| unavailable(&format!("staged file {}: {e}", file.display())))?;
            return self.put_bytes(key, bytes).await;
        }
        let path = object_path(key)?;
        let upload = self
            .inner
            .objects
            .put_multipart(&path)
            .await
            .map_err(|e| unavailable(&e))?;
        let mut w = WriteMultipart::new_with_chunk_size(upload, PART_BYTES);
        let result: Result<(), ArchiveError> = async {
            let mut f = tokio::fs::File::open(file)
                .await
                .map_err(|e| unavailable(&format!("staged file {}: {e}", file.display())))?;
            let mut buf = vec![0u8; 1024 * 1024];
            loop {
                let n = f
                    .read(&mut buf)
                    .await
                    .map_err(|e| unavailable(&format!("staged file {}: {e}", file.display())))?;
                if n == 0 {
                    break;
                }
                w.wait_for_capacity(2).await.map_err(|e| unavailable(&e))?;
                w.write(buf.get(..n).unwrap_or_default());
            }
            Ok(())
        }
        .await;
        match result {
            Ok(()) => {
                w.finish().await.map_err(|e| unavailable(&e))?;
                Ok(())
            }
            Err(e) => {
                if let Err(abort) = w.abort().await {
                    warn!(key, error = %abort, "cannot abort a multipart upload");
                }
                Err(e)
            }
        }
    }
}

/// A held per-key lock; the map entry goes when nobody else waits for it.
struct KeyGuard<'a> {
    archive: &'a Archive,
    key: String,
    lock: Arc<tokio::sync::Mutex<()>>,
    _guard: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl Drop for KeyGuard<'_> {
    fn drop(&mut self) {
        self._guard = None;
        let mut locks = self.archive.inner.locks.lock();
        // Ours and the map's: nobody else holds or waits for it.
        if Arc::strong_count(&self.lock) <= 2 {
            locks.remove(&self.key);
        }
    }
}

pub fn object_path(key: &str) -> Result<ObjectPath, ArchiveError> {
    ObjectPath::parse(key).map_err(|e| ArchiveError::BadRequest(format!("object key {key}: {e}")))
}

/// `segments/{station}/{camera}/{file}`: where an archived segment is.
pub fn segment_key(station: &StationId, camera: &CameraId, file: &str) -> String {
    format!("segments/{station}/{camera}/{file}")
}

/// `manifests/{station}/{camera}/{first:020}-{last:020}.jsonl`: an accepted batch of lines.
pub fn manifest_key(station: &StationId, camera: &CameraId, first: u64, last: u64) -> String {
    format!("manifests/{station}/{camera}/{first:020}-{last:020}.jsonl")
}

/// `quarantine/{station}/{camera}/{seq}-{received_ms}.ts`: refused bytes, kept aside.
pub fn quarantine_key(station: &StationId, camera: &CameraId, seq: u64, at: i64) -> String {
    format!("quarantine/{station}/{camera}/{seq}-{at}.ts")
}
