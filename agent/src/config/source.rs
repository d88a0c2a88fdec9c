//! Where a camera's video comes from, and how to print it without leaking secrets.
//!
//! Three kinds: an `rtsp://` IP camera (recorded as sent, H.264 or H.265 over TCP), a V4L2 USB
//! camera (`/dev/videoN`, encoded to H.264 by the agent), and the built-in `test` source (a moving
//! pattern with the station id and a clock burned in, encoded by the agent).

use std::fmt;
use std::path::{Path, PathBuf};

use url::Url;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CameraSource {
    /// An IP camera. The URL may hold credentials: print it only through `Display`.
    Rtsp(Url),
    /// A V4L2 device node such as `/dev/video0`.
    V4l2(PathBuf),
    /// The built-in test pattern.
    Test,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SourceError {
    #[error("not a valid URL: {0}")]
    BadUrl(url::ParseError),
    #[error("unsupported scheme {0:?}; expected rtsp://HOST/PATH, /dev/videoN or test")]
    UnsupportedScheme(String),
    #[error("rtsp URL has no host")]
    NoHost,
    #[error("{0:?} is not a V4L2 device path (expected /dev/videoN)")]
    BadDevice(String),
    #[error("V4L2 device {} does not exist", .0.display())]
    DeviceMissing(PathBuf),
}

/// Query keys whose values are credentials on common camera brands.
const SECRET_QUERY_KEYS: [&str; 6] = ["pass", "pwd", "token", "key", "auth", "secret"];

impl CameraSource {
    /// Parses the `source` value of a camera. Error messages never contain the input, which may
    /// hold a password.
    pub fn parse(s: &str) -> Result<Self, SourceError> {
        if s == "test" {
            return Ok(CameraSource::Test);
        }
        if s.starts_with('/') {
            let ok = s
                .strip_prefix("/dev/video")
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !ok {
                return Err(SourceError::BadDevice(s.to_owned()));
            }
            return Ok(CameraSource::V4l2(PathBuf::from(s)));
        }
        let url = Url::parse(s).map_err(SourceError::BadUrl)?;
        if url.scheme() != "rtsp" {
            return Err(SourceError::UnsupportedScheme(url.scheme().to_owned()));
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(SourceError::NoHost);
        }
        Ok(CameraSource::Rtsp(url))
    }

    /// Whether the agent encodes this source itself (so encode settings apply).
    pub fn is_encoded_by_agent(&self) -> bool {
        !matches!(self, CameraSource::Rtsp(_))
    }

    /// Checks what can be checked without connecting: the device node exists.
    pub fn check_present(&self) -> Result<(), SourceError> {
        match self {
            CameraSource::V4l2(dev) if !Path::new(dev).exists() => {
                Err(SourceError::DeviceMissing(dev.clone()))
            }
            _ => Ok(()),
        }
    }

    /// Short kind name for logs and health.
    pub fn kind(&self) -> &'static str {
        match self {
            CameraSource::Rtsp(_) => "rtsp",
            CameraSource::V4l2(_) => "v4l2",
            CameraSource::Test => "test",
        }
    }
}

/// Prints the source with the password and secret query values replaced by `***`.
impl fmt::Display for CameraSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CameraSource::Rtsp(url) => f.write_str(redact(url).as_str()),
            CameraSource::V4l2(dev) => write!(f, "{}", dev.display()),
            CameraSource::Test => f.write_str("test"),
        }
    }
}

fn redact(url: &Url) -> Url {
    let mut u = url.clone();
    if u.password().is_some() {
        // Cannot fail for a URL with a host, which parse() guarantees.
        let _ = u.set_password(Some("***"));
    }
    if u.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let lk = k.to_ascii_lowercase();
                let secret = SECRET_QUERY_KEYS.iter().any(|s| lk.contains(s));
                let v = if secret { "***".into() } else { v.into_owned() };
                (k.into_owned(), v)
            })
            .collect();
        u.query_pairs_mut().clear().extend_pairs(pairs);
    }
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_kinds() {
        assert_eq!(CameraSource::parse("test").unwrap(), CameraSource::Test);
        assert_eq!(
            CameraSource::parse("/dev/video2").unwrap(),
            CameraSource::V4l2("/dev/video2".into())
        );
        assert!(matches!(
            CameraSource::parse("rtsp://10.0.0.5:554/Streaming/Channels/101").unwrap(),
            CameraSource::Rtsp(_)
        ));
    }

    #[test]
    fn refuses_other_schemes_and_paths_without_echoing_input() {
        let e = CameraSource::parse("http://admin:hunter2@cam/").unwrap_err();
        assert_eq!(e, SourceError::UnsupportedScheme("http".into()));
        assert!(!e.to_string().contains("hunter2"));
        assert!(matches!(
            CameraSource::parse("/etc/passwd"),
            Err(SourceError::BadDevice(_))
        ));
        assert!(matches!(
            CameraSource::parse("rtsp//nohost"),
            Err(SourceError::BadUrl(_))
        ));
    }

    #[test]
    fn display_hides_password_and_secret_query_values() {
        let s = CameraSource::parse(
            "rtsp://admin:hunter2@10.0.0.5/cam/realmonitor?channel=1&token=abc123",
        )
        .unwrap();
        let shown = s.to_string();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(!shown.contains("abc123"), "{shown}");
        assert!(shown.contains("admin:***@10.0.0.5"), "{shown}");
        assert!(shown.contains("channel=1"), "{shown}");
    }

    #[test]
    fn missing_device_is_reported() {
        let s = CameraSource::parse("/dev/video99").unwrap();
        assert_eq!(
            s.check_present(),
            Err(SourceError::DeviceMissing("/dev/video99".into()))
        );
    }
}
