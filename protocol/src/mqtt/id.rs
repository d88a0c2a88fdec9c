//! Identifiers of commands, events and legal holds.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Maximum length of a [`MessageId`].
pub const MAX_MESSAGE_ID_LEN: usize = 64;

/// Identifier of a command (chosen by the controller), an event (chosen by the agent) or a legal
/// hold: 1 to 64 ASCII letters, digits, `-` and `_`. A UUID or ULID fits.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MessageId(String);

/// Identifier of a legal hold (same rules as a command id).
pub type HoldId = MessageId;

/// Why a [`MessageId`] was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MessageIdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} bytes long, at most {MAX_MESSAGE_ID_LEN} are allowed")]
    TooLong(usize),
    #[error("contains {0:?}; only ASCII letters, digits, '-' and '_' are allowed")]
    BadChar(char),
}

impl MessageId {
    /// Validates and wraps an identifier.
    pub fn new(s: impl Into<String>) -> Result<Self, MessageIdError> {
        let s = s.into();
        if s.is_empty() {
            return Err(MessageIdError::Empty);
        }
        if let Some(c) = s
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
        {
            return Err(MessageIdError::BadChar(c));
        }
        if s.len() > MAX_MESSAGE_ID_LEN {
            return Err(MessageIdError::TooLong(s.len()));
        }
        Ok(MessageId(s))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for MessageId {
    type Error = MessageIdError;
    fn try_from(s: String) -> Result<Self, MessageIdError> {
        Self::new(s)
    }
}

impl From<MessageId> for String {
    fn from(id: MessageId) -> String {
        id.0
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::str::FromStr for MessageId {
    type Err = MessageIdError;
    fn from_str(s: &str) -> Result<Self, MessageIdError> {
        Self::new(s)
    }
}
