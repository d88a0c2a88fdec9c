//! Station and camera identifiers.
//!
//! Identifiers appear in file paths, MQTT topics and manifests, so they are restricted to a
//! conservative alphabet: ASCII letters, digits, `-` and `_`, not starting with `-`, at most 64
//! characters. Validation lives here so agent and controller agree on it.

use std::fmt;

use serde::{Deserialize, Serialize};

/// Maximum length of a station or camera identifier.
pub const MAX_ID_LEN: usize = 64;

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("must not be empty")]
    Empty,
    #[error("is {0} characters long, at most {MAX_ID_LEN} are allowed")]
    TooLong(usize),
    #[error("contains {0:?}; only ASCII letters, digits, '-' and '_' are allowed")]
    BadChar(char),
    #[error("must not start with '-'")]
    LeadingDash,
}

fn validate(s: &str) -> Result<(), IdError> {
    if s.is_empty() {
        return Err(IdError::Empty);
    }
    let len = s.chars().count();
    if len > MAX_ID_LEN {
        return Err(IdError::TooLong(len));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '_'))
    {
        return Err(IdError::BadChar(c));
    }
    if s.starts_with('-') {
        return Err(IdError::LeadingDash);
    }
    Ok(())
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps an identifier.
            pub fn new(s: impl Into<String>) -> Result<Self, IdError> {
                let s = s.into();
                validate(&s)?;
                Ok(Self(s))
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }
    };
}

id_type!(
    /// Identifier of a polling station, e.g. `KG-0042`.
    StationId
);
id_type!(
    /// Identifier of a camera within a station, e.g. `desk` or `boxes`.
    CameraId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_typical_ids() {
        for s in [
            "KG-0042",
            "desk",
            "ballot_boxes",
            "a",
            &"x".repeat(MAX_ID_LEN),
        ] {
            assert!(StationId::new(s).is_ok(), "{s}");
        }
    }

    #[test]
    fn refuses_ids_unsafe_for_paths_and_topics() {
        assert_eq!(CameraId::new(""), Err(IdError::Empty));
        assert_eq!(CameraId::new("a/b"), Err(IdError::BadChar('/')));
        assert_eq!(CameraId::new("a+b"), Err(IdError::BadChar('+')));
        assert_eq!(CameraId::new("a#"), Err(IdError::BadChar('#')));
        assert_eq!(CameraId::new(".."), Err(IdError::BadChar('.')));
        assert_eq!(CameraId::new("-x"), Err(IdError::LeadingDash));
        assert_eq!(
            CameraId::new("x".repeat(MAX_ID_LEN + 1)),
            Err(IdError::TooLong(MAX_ID_LEN + 1))
        );
        assert!(serde_json_like_roundtrip_rejects());
    }

    fn serde_json_like_roundtrip_rejects() -> bool {
        // Deserialising goes through validation too.
        let r: Result<CameraId, _> = CameraId::try_from("bad id".to_string());
        r.is_err()
    }
}
