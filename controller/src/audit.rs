//! The audit log: who did what, to what, when, and whether it was allowed. Every login, logout,
//! command and change of users, grants and tokens is recorded, refused attempts included.

use crate::store::{Result, Store};

/// What was done.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Login,
    Logout,
    Command,
    UserCreate,
    UserDelete,
    Grants,
    TokenCreate,
    TokenRevoke,
    /// A station's first key (or the same key again).
    KeyRegister,
    /// A station's key replaced (the old one retired), or a replacement refused.
    KeyRotate,
    /// A request for recordings filed, approved or refused (`requests/`).
    Request,
    /// A delivered request's footage played or its bundle downloaded.
    RequestAccess,
    /// A camera's privacy masks set or removed.
    Masks,
    /// A camera's view approved, refused or reset.
    ViewReview,
    /// An enrollment code created.
    EnrollCode,
    /// An open enrollment code revoked.
    EnrollRevoke,
    /// A station enrolled with a code (or refused).
    Enroll,
    /// A camera marked public (or not) for the live page.
    LivePublic,
}

impl Action {
    /// The name stored in the `action` column (and shown by `GET /api/audit`).
    pub fn name(self) -> &'static str {
        match self {
            Action::Login => "login",
            Action::Logout => "logout",
            Action::Command => "command",
            Action::UserCreate => "user_create",
            Action::UserDelete => "user_delete",
            Action::Grants => "grants",
            Action::TokenCreate => "token_create",
            Action::TokenRevoke => "token_revoke",
            Action::KeyRegister => "key_register",
            Action::KeyRotate => "key_rotate",
            Action::Request => "request",
            Action::RequestAccess => "request_access",
            Action::Masks => "masks",
            Action::ViewReview => "view_review",
            Action::EnrollCode => "enroll_code",
            Action::EnrollRevoke => "enroll_revoke",
            Action::Enroll => "enroll",
            Action::LivePublic => "live_public",
        }
    }
}

/// Records an action of `username` at `at` (Unix ms).
pub async fn record(
    store: &Store,
    at: i64,
    username: &str,
    action: Action,
    target: &str,
    detail: &str,
    ok: bool,
) -> Result<()> {
    store
        .audit(at, username, action.name(), target, detail, ok)
        .await
}
