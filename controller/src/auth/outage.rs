//! Logins while the database fails (`docs/security.md`): a copy of every user's credentials
//! and grants, refreshed while the database works, lets a replica check a password when it
//! cannot read the users table; sessions it cannot write and audit rows it cannot store wait
//! here (bounded) and are written once the database is back, so the operator who logged in
//! during the outage stays logged in and the audit log loses nothing within the bound.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};
use stationwatch_protocol::StationId;
use tokio_util::sync::CancellationToken;
use tracing::{error, info, warn};

use super::{Role, User};
use crate::store::{Store, StoreError, UserRow};

/// Writes kept for later at most (sessions and audit rows); beyond, audit rows are dropped
/// (counted and logged) and a session stays only in this replica's memory.
pub const MAX_PENDING: usize = 10_000;

/// How often the copy of the users is refreshed and pending writes are retried.
pub const REFRESH: Duration = Duration::from_secs(15);

/// A write the database refused, kept for later.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pending {
    Session {
        token_hash: String,
        user_id: i64,
        created: i64,
        expires: i64,
    },
    Audit {
        at: i64,
        username: String,
        action: &'static str,
        target: String,
        detail: String,
        ok: bool,
    },
}

/// Stations an observer may see (`None`: every station).
type Grants = Option<Arc<HashSet<StationId>>>;

#[derive(Default)]
struct Inner {
    /// User name → credentials and, for observers, grants; `None` until the first refresh.
    users: RwLock<Option<HashMap<String, (UserRow, Grants)>>>,
    pending: Mutex<VecDeque<Pending>>,
    dropped: Mutex<u64>,
}

/// Cheap to clone.
#[derive(Clone, Default)]
pub struct Outage {
    inner: Arc<Inner>,
}

impl Outage {
    /// Reads every user and their grants (while the database works).
    pub async fn refresh(&self, store: &Store) -> Result<usize, StoreError> {
        let mut map = HashMap::new();
        for u in store.users().await? {
            let grants = match Role::from_name(&u.role) {
                Some(role) => super::sessions::grants_of(store, u.id, role).await?,
                None => None,
            };
            map.insert(u.username.clone(), (u, grants));
        }
        let n = map.len();
        *self.inner.users.write() = Some(map);
        Ok(n)
    }

    /// The credentials of `name` as last read, if the copy exists.
    pub fn user_row(&self, name: &str) -> Option<Option<UserRow>> {
        self.inner
            .users
            .read()
            .as_ref()
            .map(|m| m.get(name).map(|(u, _)| u.clone()))
    }

    /// The user (with grants) for a row of the copy.
    pub fn user(&self, row: &UserRow) -> Option<User> {
        let role = Role::from_name(&row.role)?;
        let grants = self
            .inner
            .users
            .read()
            .as_ref()
            .and_then(|m| m.get(&row.username).map(|(_, g)| g.clone()))
            .unwrap_or_else(|| (role == Role::Observer).then(|| Arc::new(HashSet::new())));
        Some(User {
            id: row.id,
            username: row.username.clone(),
            role,
            grants,
        })
    }

    /// The user of a session opened during the outage and not yet written, if `token_hash`
    /// is one and has not expired.
    pub fn pending_session_user(&self, token_hash: &str, now: i64) -> Option<User> {
        let user_id = self.inner.pending.lock().iter().find_map(|p| match p {
            Pending::Session {
                token_hash: h,
                user_id,
                expires,
                ..
            } if h == token_hash && *expires > now => Some(*user_id),
            _ => None,
        })?;
        let row = self
            .inner
            .users
            .read()
            .as_ref()?
            .values()
            .find(|(u, _)| u.id == user_id)
            .map(|(u, _)| u.clone())?;
        self.user(&row)
    }

    /// Keeps a write for later; false when the queue is full (an audit row is then lost).
    pub fn defer(&self, p: Pending) -> bool {
        let mut q = self.inner.pending.lock();
        if q.len() >= MAX_PENDING {
            *self.inner.dropped.lock() += 1;
            error!(pending = q.len(), write = ?p, "database failing and the queue of deferred writes is full; write dropped");
            return false;
        }
        q.push_back(p);
        true
    }

    /// Writes kept for later, and how many were dropped.
    pub fn pending(&self) -> (usize, u64) {
        (self.inner.pending.lock().len(), *self.inner.dropped.lock())
    }

    /// Writes what waits, in order, until the first failure (the rest waits for the next try).
    pub async fn flush(&self, store: &Store) -> Result<usize, StoreError> {
        let mut done = 0;
        loop {
            let Some(p) = self.inner.pending.lock().front().cloned() else {
                return Ok(done);
            };
            match &p {
                Pending::Session {
                    token_hash,
                    user_id,
                    created,
                    expires,
                } => {
                    store
                        .insert_session(token_hash, *user_id, *created, *expires)
                        .await?
                }
                Pending::Audit {
                    at,
                    username,
                    action,
                    target,
                    detail,
                    ok,
                } => {
                    store
                        .audit(*at, username, action, target, detail, *ok)
                        .await?
                }
            }
            let mut q = self.inner.pending.lock();
            if q.front() == Some(&p) {
                q.pop_front();
            }
            done += 1;
        }
    }
}

/// Refreshes the copy and writes what waits, every [`REFRESH`], until shut down.
pub async fn run(store: Store, outage: Outage, shutdown: CancellationToken) {
    // The first refresh is done at start-up (`Controller::start`): begin one period later.
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + REFRESH, REFRESH);
    let mut failing = false;
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        match outage.flush(&store).await {
            Ok(n) if n > 0 => info!(
                writes = n,
                "writes deferred during the database outage stored"
            ),
            Ok(_) => {}
            Err(e) => {
                if !failing {
                    warn!(error = %e, "deferred writes wait for the database");
                }
                failing = true;
                continue;
            }
        }
        match outage.refresh(&store).await {
            Ok(_) => failing = false,
            Err(e) => {
                if !failing {
                    warn!(error = %e, "cannot refresh the users kept for logins during a database outage");
                }
                failing = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{IpAddr, Ipv4Addr};

    use super::*;
    use crate::auth::sessions::{login, LoginError};
    use crate::auth::{hash_password, token_hash, LoginLimiter};
    use crate::config::DatabaseConfig;

    async fn open(path: &std::path::Path) -> Store {
        Store::connect(&DatabaseConfig {
            url: format!("sqlite://{}", path.display()),
            max_connections: 2,
            history_days: 30,
            events_days: 400,
            audit_days: 3650,
            write_queue_bytes: 1 << 20,
        })
        .await
        .unwrap()
    }

    /// The database goes away: the operator still logs in (checked against the copy), a wrong
    /// password is still refused, and once the database is back the session and the audit
    /// rows written meanwhile are stored.
    #[tokio::test]
    async fn logins_work_while_the_database_fails_and_their_writes_follow() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("c.db");
        let store = open(&db).await;
        let hash = hash_password("operator-password-1").unwrap();
        store
            .create_user("op", &hash, "operator", 1)
            .await
            .unwrap()
            .unwrap();
        let outage = Outage::default();
        assert_eq!(outage.refresh(&store).await.unwrap(), 1);
        store.close().await;
        assert!(
            store.user_by_name("op").await.is_err(),
            "the database is gone"
        );

        let limiter = LoginLimiter::default();
        let addr = IpAddr::V4(Ipv4Addr::new(192, 0, 2, 7));
        let s = login(
            &store,
            &limiter,
            &outage,
            "op",
            "operator-password-1",
            addr,
            60_000,
        )
        .await
        .unwrap();
        assert_eq!(s.user.username, "op");
        // The session resolves from memory until it is written.
        let hash = token_hash(&s.token);
        let now = crate::now_ms();
        assert_eq!(
            outage.pending_session_user(&hash, now).unwrap().username,
            "op"
        );
        assert!(outage.pending_session_user("other", now).is_none());
        assert!(
            outage.pending_session_user(&hash, now + 61_000).is_none(),
            "expired"
        );
        let wrong = login(&store, &limiter, &outage, "op", "not-it", addr, 60_000).await;
        assert!(matches!(wrong, Err(LoginError::Wrong)), "{:?}", wrong.err());
        // An unknown name is refused too (the copy says it does not exist).
        let unknown = login(&store, &limiter, &outage, "nobody", "x", addr, 60_000).await;
        assert!(matches!(unknown, Err(LoginError::Wrong)));
        let (waiting, dropped) = outage.pending();
        assert_eq!((waiting, dropped), (4, 0), "session, login, two failures");

        // Back: everything is written, in order.
        let back = open(&db).await;
        assert_eq!(outage.flush(&back).await.unwrap(), 4);
        assert_eq!(outage.pending().0, 0);
        let u = back
            .session_user(&token_hash(&s.token), crate::now_ms())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(u.username, "op");
        let audit = back.audit_log(10).await.unwrap();
        assert_eq!(audit.len(), 3, "{audit:?}");
    }

    #[test]
    fn deferred_writes_are_bounded() {
        let o = Outage::default();
        for i in 0..MAX_PENDING + 3 {
            o.defer(Pending::Audit {
                at: i as i64,
                username: "x".into(),
                action: "login",
                target: String::new(),
                detail: String::new(),
                ok: false,
            });
        }
        assert_eq!(o.pending(), (MAX_PENDING, 3));
    }
}
