//! Errors answered as `{"error": "..."}` with a status code, and how each module's errors map
//! to them.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use tracing::warn;

use crate::auth::sessions::LoginError;
use crate::auth::users::{CreateUserError, UserError};
use crate::commands::CommandError;
use crate::store::StoreError;

#[derive(Debug)]
pub struct ApiError(pub StatusCode, pub String);

/// The body of every error.
#[derive(Debug, Serialize)]
pub(crate) struct ErrorBody {
    pub error: String,
}

pub(crate) type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
    pub fn not_found(what: &str) -> Self {
        ApiError(StatusCode::NOT_FOUND, format!("{what} not found"))
    }
    pub fn forbidden() -> Self {
        ApiError(StatusCode::FORBIDDEN, "your role may not do this".into())
    }
    pub fn unauthorized() -> Self {
        ApiError(StatusCode::UNAUTHORIZED, "log in first".into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(ErrorBody { error: self.1 })).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        warn!(error = %e, "database error while answering a request");
        ApiError(
            StatusCode::SERVICE_UNAVAILABLE,
            "database unavailable".into(),
        )
    }
}

impl From<LoginError> for ApiError {
    fn from(e: LoginError) -> Self {
        match e {
            LoginError::Locked => ApiError(StatusCode::TOO_MANY_REQUESTS, e.to_string()),
            LoginError::Wrong => ApiError(StatusCode::UNAUTHORIZED, e.to_string()),
            LoginError::Busy => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            LoginError::Store(e) => e.into(),
        }
    }
}

impl From<UserError> for ApiError {
    fn from(e: UserError) -> Self {
        match e {
            UserError::Store(e) | UserError::Create(CreateUserError::Store(e)) => e.into(),
            UserError::NotFound => ApiError::not_found("user"),
            other => ApiError::bad(other.to_string()),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(e: CommandError) -> Self {
        match e {
            CommandError::Forbidden => ApiError::forbidden(),
            CommandError::Invalid(msg) => ApiError::bad(msg),
            CommandError::Publish(e) => ApiError(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            CommandError::Store(e) => e.into(),
        }
    }
}

impl From<crate::requests::RequestError> for ApiError {
    fn from(e: crate::requests::RequestError) -> Self {
        use crate::requests::RequestError as E;
        match e {
            E::Invalid(msg) => ApiError::bad(msg),
            E::NotFound => ApiError::not_found("request"),
            E::Forbidden => ApiError::forbidden(),
            E::Conflict(_) => ApiError(StatusCode::CONFLICT, e.to_string()),
            E::Store(e) => e.into(),
            E::Command(e) => e.into(),
        }
    }
}
