//! Stationwatch central controller: MQTT ingest from every station, the fleet's latest state in
//! memory, history and alerts in a database (SQLite or PostgreSQL), the HTTP API and the
//! operators' dashboard.
//!
//! [`Controller::start`] starts everything on the configured address (port 0 picks a free one,
//! for tests) and returns a handle with the bound address; [`Controller::stop`] shuts it down.
//! Nothing here assumes it is the only replica: see `fleet/sync.rs` and `fleet/alerts.rs`.

// What the binary and the tests use.
pub mod archive;
pub mod auth;
pub mod config;
pub mod fleet;
pub mod keys;
pub mod masks;
pub mod requests;
pub mod store;

pub(crate) mod audit;
pub(crate) mod commands;
pub mod enroll;
pub(crate) mod http;
pub(crate) mod ingest;
pub mod live;
pub(crate) mod metrics;
pub(crate) mod views;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use config::ControllerConfig;
pub use stationwatch_protocol as protocol;

use crate::commands::Publisher;
use crate::fleet::Fleet;
use crate::fleet::{alerts, sync};
use crate::http::AppState;
use crate::ingest::writer;
use crate::ingest::IngestContext;
use crate::metrics::Metrics;
use crate::store::Store;

/// The controller's clock, Unix ms.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error(transparent)]
    Keys(#[from] keys::KeysError),
    #[error("cannot create the bootstrap admin: {0}")]
    Bootstrap(#[from] auth::CreateUserError),
    #[error(transparent)]
    Archive(#[from] archive::OpenError),
    #[error("live viewing: {0}")]
    Live(#[from] live::LiveError),
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// A running controller.
pub struct Controller {
    pub addr: SocketAddr,
    pub store: Store,
    pub fleet: Fleet,
    shutdown: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl Controller {
    /// Connects the database (migrating it), creates the bootstrap admin if there is no user,
    /// loads the stations' last known state, and starts ingest, alerts, sync and HTTP.
    pub async fn start(cfg: ControllerConfig) -> Result<Controller, StartError> {
        let store = Store::connect(&cfg.database).await?;
        info!(database = %store::redact(&cfg.database.url), postgres = store.is_postgres(), "database ready");
        if let Some((user, pw)) = &cfg.auth.bootstrap_admin {
            if store.user_count().await? == 0 {
                auth::create_user(&store, user, pw, auth::Role::Admin).await?;
                info!(username = %user, "bootstrap admin created");
            }
        }
        let controller_key = Arc::new(keys::load_or_create_key(&cfg.trust.key_file)?);
        info!(fingerprint = %controller_key.public().fingerprint(), "controller signing key");
        let fleet = Fleet::new(cfg.rules.clone());
        let started = now_ms();
        // Registered keys and witnessed heads first: the stored reports are checked against them.
        keys::load(&store, &fleet, started).await?;
        sync::apply(&fleet, store.stations(None).await?, started);
        info!(stations = fleet.len(), "fleet loaded from the database");

        let archive = archive::Archive::open(&cfg.archive, store.clone(), fleet.clone())?;
        info!(store = %archive.describe(), staging = %cfg.archive.staging.display(), "archive ready");

        let shutdown = CancellationToken::new();
        let metrics = Arc::new(Metrics::default());
        let limiter = auth::LoginLimiter::default();
        // Every user's credentials, kept for logins while the database fails.
        let outage = auth::outage::Outage::default();
        if let Err(e) = outage.refresh(&store).await {
            warn!(error = %e, "cannot read the users for logins during a database outage");
        }
        let publisher = Publisher::new(cfg.mqtt.command_ttl.as_millis() as i64);
        let (writes_tx, writes_rx) = ingest::queue::channel(cfg.database.write_queue_bytes);
        let (trans_tx, trans_rx) = mpsc::unbounded_channel();
        let (changes, _) = broadcast::channel(64);
        let mut tasks = vec![
            tokio::spawn(writer::run(store.clone(), writes_rx, metrics.clone())),
            tokio::spawn(alerts::run(
                store.clone(),
                fleet.clone(),
                trans_rx,
                shutdown.child_token(),
            )),
            tokio::spawn(sync::run(
                store.clone(),
                fleet.clone(),
                shutdown.child_token(),
                started,
            )),
            tokio::spawn(notify(
                fleet.clone(),
                changes.clone(),
                shutdown.child_token(),
            )),
            tokio::spawn(prune(
                store.clone(),
                cfg.database.clone(),
                shutdown.child_token(),
            )),
            tokio::spawn(commands::expire(store.clone(), shutdown.child_token())),
            tokio::spawn(archive::retention::run(
                archive.clone(),
                cfg.archive.retention.clone(),
                shutdown.child_token(),
            )),
            tokio::spawn(audit_login_failures(
                store.clone(),
                limiter.clone(),
                outage.clone(),
                shutdown.child_token(),
            )),
            tokio::spawn(auth::outage::run(
                store.clone(),
                outage.clone(),
                shutdown.child_token(),
            )),
            tokio::spawn(keys::tsa::run(
                store.clone(),
                cfg.trust.clone(),
                shutdown.child_token(),
            )),
        ];
        let requests = requests::Requests {
            store: store.clone(),
            fleet: fleet.clone(),
            publisher: publisher.clone(),
            cfg: cfg.requests.clone(),
            nudge: Arc::new(tokio::sync::Notify::new()),
            changed: broadcast::channel(256).0,
        };
        tasks.push(tokio::spawn(requests::collect::run(
            requests.clone(),
            shutdown.child_token(),
        )));
        tasks.push(tokio::spawn(views::sync_masks(
            store.clone(),
            fleet.clone(),
            publisher.clone(),
            shutdown.child_token(),
        )));
        let ingest_ctx = IngestContext {
            fleet: fleet.clone(),
            writes: writes_tx.clone(),
            transitions: trans_tx,
            metrics: metrics.clone(),
            publisher: publisher.clone(),
        };
        let mqtt_stop = shutdown.child_token();
        let mqtt_cfg = cfg.mqtt.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = ingest::run(mqtt_cfg, ingest_ctx, mqtt_stop).await {
                warn!(error = %e, "MQTT link stopped");
            }
        }));

        let fd_limit = http::serve::raise_fd_limit();
        let connections = http::serve::Connections::new(http::serve::connection_cap(
            cfg.http.max_connections,
            fd_limit,
        ));
        info!(
            fd_limit,
            max_connections = connections.cap(),
            "HTTP connection cap"
        );
        let live = cfg.live.as_ref().map(live::Live::load).transpose()?;
        let state = AppState {
            connections: connections.clone(),
            streams: http::StreamSlots::default(),
            resolved: http::Resolved::default(),
            outage,
            store: store.clone(),
            fleet: fleet.clone(),
            publisher,
            metrics,
            writes: writes_tx,
            http: cfg.http.clone(),
            changes,
            limiter,
            controller_key,
            archive,
            requests,
            enroll: cfg.enroll.clone(),
            live,
        };
        let listener = tokio::net::TcpListener::bind(cfg.http.listen)
            .await
            .map_err(|source| StartError::Listen {
                addr: cfg.http.listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| StartError::Listen {
            addr: cfg.http.listen,
            source,
        })?;
        let http_stop = shutdown.child_token();
        let app = http::router(state);
        let header_timeout = cfg.http.header_timeout;
        tasks.push(tokio::spawn(async move {
            // The peer address (ConnectInfo) is what login throttling counts.
            http::serve::serve(listener, app, connections, header_timeout, http_stop).await;
        }));
        info!(%addr, "controller listening");
        Ok(Controller {
            addr,
            store,
            fleet,
            shutdown,
            tasks,
        })
    }

    /// Stops every task (open SSE streams are cut after a short grace period) and closes the
    /// database.
    pub async fn stop(self) {
        self.shutdown.cancel();
        for t in self.tasks {
            // The writer ends when its senders are gone; the HTTP server when its streams end.
            if tokio::time::timeout(Duration::from_secs(3), t)
                .await
                .is_err()
            {
                warn!("a controller task did not stop within 3 s");
            }
        }
        self.store.close().await;
    }
}

/// Once a second, tells live dashboards which stations changed.
async fn notify(
    fleet: Fleet,
    changes: broadcast::Sender<Arc<Vec<fleet::StationSummary>>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let mut idle = 0;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        let dirty = fleet.take_dirty();
        idle += 1;
        // An empty batch every 5 s still refreshes the counts.
        if !dirty.is_empty() || idle >= 5 {
            idle = 0;
            let _ = changes.send(Arc::new(dirty));
        }
    }
}

/// Every few seconds, writes the failed logins counted since the last time as one audit row
/// per (user name, address); also at stop.
async fn audit_login_failures(
    store: Store,
    limiter: auth::LoginLimiter,
    outage: auth::outage::Outage,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        let stop = tokio::select! {
            _ = shutdown.cancelled() => true,
            _ = tick.tick() => false,
        };
        auth::sessions::audit_failure_summaries(&store, &limiter, &outage).await;
        if stop {
            return;
        }
    }
}

/// Once an hour, deletes what is past its retention: health history (`history_days`),
/// events, closed alerts and commands (`events_days`), the audit log (`audit_days`).
async fn prune(store: Store, db: config::DatabaseConfig, shutdown: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(3600));
    let days = |d: u32| now_ms() - i64::from(d) * 86_400_000;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match store.prune_history(days(db.history_days)).await {
            Ok(n) if n > 0 => info!(rows = n, "old health history deleted"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot delete old health history"),
        }
        match store.prune_events(days(db.events_days)).await {
            Ok(n) if n > 0 => info!(rows = n, "old events, alerts and commands deleted"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot delete old events"),
        }
        match store.prune_audit(days(db.audit_days)).await {
            Ok(n) if n > 0 => info!(rows = n, "old audit entries deleted"),
            Ok(_) => {}
            Err(e) => warn!(error = %e, "cannot delete old audit entries"),
        }
    }
}
