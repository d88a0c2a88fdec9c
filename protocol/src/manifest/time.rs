//! Manifest timestamps: UTC, millisecond precision, one fixed text form.

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, NaiveDateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// First instant a manifest can name: 1970-01-01T00:00:00.000Z.
const MIN_MS: i64 = 0;
/// Last instant a manifest can name: 9999-12-31T23:59:59.999Z.
const MAX_MS: i64 = 253_402_300_799_999;

/// An instant in UTC with millisecond precision, between 1970-01-01T00:00:00.000Z and
/// 9999-12-31T23:59:59.999Z.
///
/// Its only text form is RFC 3339 with exactly three fraction digits and `Z`, 24 characters:
/// `YYYY-MM-DDTHH:MM:SS.sssZ`, e.g. `2026-11-21T15:26:00.123Z`. Parsing accepts nothing else, so
/// that every instant has one encoding and canonical bytes are reproducible.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Timestamp(i64);

/// Why a timestamp was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TimestampError {
    #[error("{0:?} is not of the form YYYY-MM-DDTHH:MM:SS.sssZ")]
    Format(String),
    #[error("{0} ms since the Unix epoch is outside 1970-01-01..=9999-12-31")]
    OutOfRange(i64),
}

impl Timestamp {
    /// From milliseconds since the Unix epoch.
    pub fn from_unix_ms(ms: i64) -> Result<Self, TimestampError> {
        if (MIN_MS..=MAX_MS).contains(&ms) {
            Ok(Timestamp(ms))
        } else {
            Err(TimestampError::OutOfRange(ms))
        }
    }

    /// From a chrono time, truncating anything below a millisecond.
    pub fn from_datetime(t: DateTime<Utc>) -> Result<Self, TimestampError> {
        Self::from_unix_ms(t.timestamp_millis())
    }

    /// The current time (truncated to the millisecond; clamped into the valid range should the
    /// system clock be before 1970).
    pub fn now() -> Self {
        Timestamp(Utc::now().timestamp_millis().clamp(MIN_MS, MAX_MS))
    }

    /// Milliseconds since the Unix epoch.
    pub fn unix_ms(self) -> i64 {
        self.0
    }

    /// As a chrono time.
    pub fn to_datetime(self) -> DateTime<Utc> {
        // The range is checked on construction, so this cannot fall back in practice.
        DateTime::from_timestamp_millis(self.0).unwrap_or(DateTime::UNIX_EPOCH)
    }

    /// `self - earlier` in milliseconds (negative when `earlier` is later).
    pub fn ms_since(self, earlier: Timestamp) -> i64 {
        self.0 - earlier.0
    }

    /// This instant moved by `ms` milliseconds, clamped into the valid range.
    pub fn saturating_add_ms(self, ms: i64) -> Timestamp {
        Timestamp(self.0.saturating_add(ms).clamp(MIN_MS, MAX_MS))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.to_datetime().format("%Y-%m-%dT%H:%M:%S%.3fZ"))
    }
}

impl fmt::Debug for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Timestamp({self})")
    }
}

impl FromStr for Timestamp {
    type Err = TimestampError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || TimestampError::Format(s.to_string());
        // Shape first: YYYY-MM-DDTHH:MM:SS.sssZ, digits where digits belong.
        const SHAPE: &[u8; 24] = b"dddd-dd-ddTdd:dd:dd.dddZ";
        let b = s.as_bytes();
        if b.len() != SHAPE.len() {
            return Err(bad());
        }
        let shaped = b.iter().zip(SHAPE.iter()).all(|(&c, &p)| {
            if p == b'd' {
                c.is_ascii_digit()
            } else {
                c == p
            }
        });
        if !shaped {
            return Err(bad());
        }
        let body = s.get(..23).ok_or_else(bad)?;
        let naive =
            NaiveDateTime::parse_from_str(body, "%Y-%m-%dT%H:%M:%S%.3f").map_err(|_| bad())?;
        let t = Timestamp::from_unix_ms(naive.and_utc().timestamp_millis())?;
        // Rejects what chrono accepts but would print differently (a leap second `:60`).
        if t.to_string() != s {
            return Err(bad());
        }
        Ok(t)
    }
}

impl Serialize for Timestamp {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Timestamp {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_text_form_only() {
        let t: Timestamp = "2026-11-21T15:26:00.123Z".parse().unwrap();
        assert_eq!(t.to_string(), "2026-11-21T15:26:00.123Z");
        assert_eq!(t.unix_ms(), 1_795_274_760_123);
        for bad in [
            "2026-11-21T15:26:00Z",
            "2026-11-21T15:26:00.1234Z",
            "2026-11-21T15:26:00.123+00:00",
            "2026-11-21 15:26:00.123Z",
            "2026-11-21T15:26:60.000Z",
            "2026-02-30T15:26:00.000Z",
            "+2026-11-21T15:26:00.12Z",
            "",
        ] {
            assert!(bad.parse::<Timestamp>().is_err(), "{bad}");
        }
        assert_eq!(
            Timestamp::from_unix_ms(MAX_MS).unwrap().to_string(),
            "9999-12-31T23:59:59.999Z"
        );
        assert!(Timestamp::from_unix_ms(-1).is_err());
        assert!(Timestamp::from_unix_ms(MAX_MS + 1).is_err());
    }
}
