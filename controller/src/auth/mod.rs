//! Users, roles, passwords, sessions, API tokens and login throttling. Nothing here knows
//! HTTP: `http/` reads cookies and headers and calls [`sessions`] and [`users`].

pub mod outage;
mod passwords;
pub mod sessions;
mod throttle;
mod tokens;
pub mod users;

use std::collections::HashSet;
use std::sync::Arc;

use serde::Serialize;
use stationwatch_protocol::StationId;

pub use passwords::{
    hash_bounded, hash_password, hashing_now, hashing_permits, verify_bounded, verify_password,
    AuthError, MIN_PASSWORD_CHARS,
};
pub use throttle::{FailureSummary, LoginLimiter, Throttled};

/// Longest user name (also the limit of names users are created with).
pub const MAX_USERNAME_CHARS: usize = 64;
pub use tokens::{new_token, token_hash};
pub use users::{create_user, CreateUserError};

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "sw_session";

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Everything, including users and the audit log.
    Admin,
    /// Sees every station and sends commands.
    Operator,
    /// Sees only the stations granted to them; sends no commands.
    Observer,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Observer => "observer",
        }
    }

    pub fn from_name(s: &str) -> Option<Role> {
        [Role::Admin, Role::Operator, Role::Observer]
            .into_iter()
            .find(|r| r.name() == s)
    }

    pub fn may_command(self) -> bool {
        matches!(self, Role::Admin | Role::Operator)
    }
}

/// An authenticated user.
#[derive(Debug, Clone, Serialize)]
pub struct User {
    pub id: i64,
    pub username: String,
    pub role: Role,
    /// Stations an observer may see; `None` for every station.
    #[serde(skip)]
    pub grants: Option<Arc<HashSet<StationId>>>,
}

impl User {
    pub fn sees(&self, station: &StationId) -> bool {
        self.grants.as_ref().is_none_or(|g| g.contains(station))
    }
}
