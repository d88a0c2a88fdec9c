//! `live-gateway` (`docs/live.md`): accepts each station's live SRT stream (authenticated per
//! station by stream id and passphrase), cuts it into HLS for operators without touching the
//! video, and publishes a masked, re-encoded copy of public cameras.
//!
//! | file | what |
//! |---|---|
//! | `config.rs` | `gateway.toml` |
//! | `srt.rs` | libsrt listener: per-caller admission in the listen callback |
//! | `stations.rs` | the controller's station list (passphrases, public cameras, masks), cached |
//! | `ts.rs` | MPEG-TS cut at keyframes into segments (no demux, no remux) |
//! | `hls.rs` | a stream folder: segments and a rolling playlist, continuous across publishers |
//! | `publish.rs` | one reader thread per publishing camera; replacement; `status.json` |
//! | `public.rs` | the masked public copy (GStreamer: decode, mask, encode) |
//! | `rtmp.rs` | RTMP publishers, remuxed to MPEG-TS (GStreamer, no decoding) |

pub mod config;
pub mod hls;
pub mod public;
pub mod publish;
pub mod rtmp;
pub mod srt;
pub mod stations;
pub mod ts;

use std::sync::Arc;

use tracing::{info, warn};

pub use config::GatewayConfig;

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("GStreamer: {0}")]
    Gst(String),
    #[error("{path}: {source}")]
    Io {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Stations(#[from] stations::StationsError),
    #[error("SRT listener on {addr}: {source}")]
    Srt {
        addr: std::net::SocketAddr,
        source: srt::SrtError,
    },
}

/// A running gateway.
pub struct Gateway {
    listener: Arc<srt::Listener>,
    publishers: Arc<publish::Publishers>,
    accept: Option<std::thread::JoinHandle<()>>,
    refresh: tokio::task::JoinHandle<()>,
    /// The RTMP listening socket (closed at stop, which ends its accept thread).
    rtmp: Option<std::net::TcpListener>,
}

impl Gateway {
    /// Starts the station list refresher (on the current tokio runtime) and the SRT listener.
    pub fn start(cfg: GatewayConfig) -> Result<Gateway, GatewayError> {
        gst::init().map_err(|e| GatewayError::Gst(e.to_string()))?;
        for d in [&cfg.hls.dir, &cfg.hls.state_dir] {
            std::fs::create_dir_all(d).map_err(|source| GatewayError::Io {
                path: d.clone(),
                source,
            })?;
        }
        let token = std::fs::read_to_string(&cfg.controller.token_file)
            .map_err(|source| GatewayError::Io {
                path: cfg.controller.token_file.clone(),
                source,
            })?
            .trim()
            .to_owned();
        let fetcher = stations::Fetcher::new(
            &cfg.controller.url,
            token,
            cfg.controller.ca_file.as_deref(),
            &cfg.hls.state_dir.join("stations.json"),
        )?;
        let list = stations::Stations::default();
        let refresh = tokio::spawn(stations::keep_fresh(
            list.clone(),
            fetcher,
            cfg.controller.refresh,
        ));
        let addr = cfg.srt.listen;
        let listener = srt::Listener::bind(addr, cfg.srt.latency, Arc::new(list.clone()))
            .map_err(|source| GatewayError::Srt { addr, source })?;
        let listener = Arc::new(listener);
        let rtmp = cfg
            .rtmp
            .map(|a| {
                std::net::TcpListener::bind(a).map_err(|source| GatewayError::Io {
                    path: format!("RTMP listener {a}").into(),
                    source,
                })
            })
            .transpose()?;
        let max_streams = cfg.srt.max_streams;
        let publishers = publish::Publishers::new(cfg, list.clone());
        let rtmp_stop = match rtmp {
            Some(l) => {
                let addr = l.local_addr().ok();
                let stop = l.try_clone().ok();
                let (s, p) = (list.clone(), publishers.clone());
                std::thread::Builder::new()
                    .name("rtmp-accept".into())
                    .spawn(move || rtmp::serve(l, s, p, max_streams))
                    .map_err(|source| GatewayError::Io {
                        path: "rtmp-accept thread".into(),
                        source,
                    })?;
                info!(?addr, "live gateway listening for RTMP");
                stop
            }
            None => None,
        };
        let (l, p) = (listener.clone(), publishers.clone());
        let accept = std::thread::Builder::new()
            .name("srt-accept".into())
            .spawn(move || loop {
                match l.accept() {
                    Ok(conn) => p.take(conn),
                    Err(e) => {
                        info!(error = %e, "SRT listener closed");
                        break;
                    }
                }
            })
            .map_err(|source| GatewayError::Io {
                path: "srt-accept thread".into(),
                source,
            })?;
        info!(%addr, "live gateway listening for SRT");
        Ok(Gateway {
            listener,
            publishers,
            accept: Some(accept),
            refresh,
            rtmp: rtmp_stop,
        })
    }

    /// Stops taking callers, closes every publisher and writes their last status.
    pub fn stop(mut self) {
        self.listener.close();
        if let Some(l) = self.rtmp.take() {
            // SAFETY: shutdown(2) on a socket this process owns; it wakes the blocked accept.
            unsafe {
                libc::shutdown(std::os::fd::AsRawFd::as_raw_fd(&l), libc::SHUT_RDWR);
            }
        }
        if let Some(t) = self.accept.take() {
            if t.join().is_err() {
                warn!("SRT accept thread panicked");
            }
        }
        self.publishers.stop();
        self.refresh.abort();
        info!("live gateway stopped");
    }

    pub fn publishing(&self) -> usize {
        self.publishers.publishing()
    }
}
