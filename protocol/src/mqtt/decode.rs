//! Reading what agents publish (the controller's side).

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::ack::Ack;
use super::event::Event;
use super::health::Health;
use super::status::Status;
use super::{MAX_JSON_BYTES, SCHEMA_VERSION};

/// Why an agent's payload could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// A zero-length payload: on a retained topic, the retained message was cleared.
    #[error("empty payload (a cleared retained message)")]
    Empty,
    #[error("payload is {size} bytes, at most {max} are read")]
    TooLarge { size: usize, max: usize },
    #[error("malformed payload: {0}")]
    Malformed(String),
    #[error("schema version {0} is not supported (this reader knows version {SCHEMA_VERSION})")]
    UnsupportedVersion(u64),
}

/// Reads a `status` payload.
pub fn decode_status(payload: &[u8]) -> Result<Status, DecodeError> {
    decode(payload)
}

/// Reads a `health` payload.
pub fn decode_health(payload: &[u8]) -> Result<Health, DecodeError> {
    decode(payload)
}

/// Reads an `events` payload. An event of a kind this version does not know decodes as
/// [`super::EventKind::Unknown`].
pub fn decode_event(payload: &[u8]) -> Result<Event, DecodeError> {
    decode(payload)
}

/// Reads an `ack` payload.
pub fn decode_ack(payload: &[u8]) -> Result<Ack, DecodeError> {
    decode(payload)
}

/// A message with a schema version.
trait Versioned {
    fn version(&self) -> u32;
}

macro_rules! versioned {
    ($($t:ty),*) => {$(
        impl Versioned for $t {
            fn version(&self) -> u32 {
                self.v
            }
        }
    )*};
}
versioned!(Status, Health, Event, Ack);

/// Size cap, then the typed parse (which ignores unknown fields). Only when that fails, or the
/// version is not ours, is the payload read again as plain JSON to say precisely why: a future
/// version is reported as such and not as a confusing field error. (The controller decodes
/// thousands of reports a second; the happy path parses once.)
fn decode<T: DeserializeOwned + Versioned>(payload: &[u8]) -> Result<T, DecodeError> {
    if payload.is_empty() {
        return Err(DecodeError::Empty);
    }
    if payload.len() > MAX_JSON_BYTES {
        return Err(DecodeError::TooLarge {
            size: payload.len(),
            max: MAX_JSON_BYTES,
        });
    }
    // (serde would also read a struct from a JSON array: only objects take the fast path.)
    let object = payload.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if object {
        if let Ok(msg) = serde_json::from_slice::<T>(payload) {
            if msg.version() == SCHEMA_VERSION {
                return Ok(msg);
            }
        }
    }
    let value: Value =
        serde_json::from_slice(payload).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let Some(obj) = value.as_object() else {
        return Err(DecodeError::Malformed("not a JSON object".into()));
    };
    match obj.get("v").map(Value::as_u64) {
        None => return Err(DecodeError::Malformed("missing field `v`".into())),
        Some(None) => {
            return Err(DecodeError::Malformed(
                "`v` must be a non-negative integer".into(),
            ))
        }
        Some(Some(v)) if v != u64::from(SCHEMA_VERSION) => {
            return Err(DecodeError::UnsupportedVersion(v))
        }
        Some(Some(_)) => {}
    }
    serde_json::from_slice(payload).map_err(|e| DecodeError::Malformed(e.to_string()))
}
