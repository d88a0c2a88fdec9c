//! Where the MQTT broker is and how to log in: the `[mqtt]` keys the agent and the controller
//! share (`url`, `username`, `password` or `password_file`, `ca_file`, `client_cert`,
//! `client_key`), read with the shared config reader, and the TLS files they name.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::config_reader::{join, TomlReader};

/// The keys [`TomlReader::broker`] reads; a section lists them among its allowed keys.
pub const BROKER_KEYS: &[&str] = &[
    "url",
    "username",
    "password",
    "password_file",
    "ca_file",
    "client_cert",
    "client_key",
];

/// A broker endpoint and credentials.
#[derive(Clone, PartialEq, Eq)]
pub struct BrokerConfig {
    pub host: String,
    pub port: u16,
    /// `mqtts://`: TLS with `ca_file` as the trust root.
    pub tls: Option<TlsFiles>,
    pub username: Option<String>,
    pub password: Option<String>,
}

/// Never prints the password.
impl fmt::Debug for BrokerConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrokerConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub ca_file: PathBuf,
    /// Client certificate and key (PEM), when the broker requires one.
    pub client_cert: Option<(PathBuf, PathBuf)>,
}

/// The contents of the TLS files, read at each connection attempt (so renewed certificates
/// are picked up without a restart).
pub struct TlsMaterial {
    pub ca: Vec<u8>,
    pub client_auth: Option<(Vec<u8>, Vec<u8>)>,
}

/// A TLS file could not be read.
#[derive(Debug, thiserror::Error)]
#[error("reading {}: {source}", path.display())]
pub struct TlsReadError {
    pub path: PathBuf,
    pub source: std::io::Error,
}

impl TlsFiles {
    pub fn read(&self) -> Result<TlsMaterial, TlsReadError> {
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsReadError {
                path: p.to_owned(),
                source,
            })
        };
        let client_auth = match &self.client_cert {
            Some((cert, key)) => Some((read(cert)?, read(key)?)),
            None => None,
        };
        Ok(TlsMaterial {
            ca: read(&self.ca_file)?,
            client_auth,
        })
    }
}

impl TomlReader {
    /// Reads [`BROKER_KEYS`] of section `t` at `path`. `url` is required unless `default_url`
    /// is given. The URL is never echoed in a message (it might hold a password).
    pub fn broker(
        &mut self,
        t: &toml::Table,
        path: &str,
        default_url: Option<&str>,
        check_machine: bool,
    ) -> Option<BrokerConfig> {
        let p = path;
        let url = self
            .string(t, p, "url", default_url.is_none())
            .or_else(|| default_url.map(str::to_owned));
        let endpoint = url.and_then(|u| {
            let parsed = url::Url::parse(&u).ok().filter(|x| {
                matches!(x.scheme(), "mqtt" | "mqtts")
                    && x.host_str().is_some_and(|h| !h.is_empty())
            });
            match parsed {
                Some(x) if x.username().is_empty() && x.password().is_none() => {
                    let tls = x.scheme() == "mqtts";
                    let port = x.port().unwrap_or(if tls { 8883 } else { 1883 });
                    Some((x.host_str().unwrap_or_default().to_owned(), port, tls))
                }
                Some(_) => {
                    self.problem(
                        join(p, "url"),
                        "must not hold credentials; use username and password_file",
                    );
                    None
                }
                None => {
                    self.problem(
                        join(p, "url"),
                        "expected mqtt://HOST[:PORT] or mqtts://HOST[:PORT]",
                    );
                    None
                }
            }
        });
        let ca = self.file(t, p, "ca_file", check_machine);
        let cert = self.file(t, p, "client_cert", check_machine);
        let key = self.file(t, p, "client_key", check_machine);
        let username = self.string(t, p, "username", false);
        let mut password = self.string(t, p, "password", false);
        if let Some(pf) = self.file(t, p, "password_file", check_machine) {
            if password.is_some() {
                self.problem(
                    join(p, "password_file"),
                    "give either password or password_file, not both",
                );
            }
            match std::fs::read_to_string(&pf) {
                Ok(s) => password = Some(s.trim_end_matches(['\n', '\r']).to_owned()),
                Err(e) if check_machine => {
                    self.problem(join(p, "password_file"), format!("{}: {e}", pf.display()))
                }
                Err(_) => {}
            }
        }
        let (host, port, tls) = endpoint?;
        let tls = if tls {
            let Some(ca_file) = ca else {
                self.problem(join(p, "ca_file"), "required for mqtts://");
                return None;
            };
            let client_cert = match (cert, key) {
                (Some(c), Some(k)) => Some((c, k)),
                (None, None) => None,
                _ => {
                    self.problem(
                        join(p, "client_cert"),
                        "client_cert and client_key go together",
                    );
                    return None;
                }
            };
            Some(TlsFiles {
                ca_file,
                client_cert,
            })
        } else {
            if ca.is_some() {
                self.problem(join(p, "ca_file"), "only applies to mqtts:// URLs");
            }
            None
        };
        Some(BrokerConfig {
            host,
            port,
            tls,
            username,
            password,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config_reader::parse_toml;

    fn read(text: &str, default: Option<&str>) -> (Option<BrokerConfig>, Vec<String>) {
        let t = parse_toml(text).unwrap();
        let mut r = TomlReader::default();
        let b = r.broker(&t, "mqtt", default, false);
        (b, r.problems.iter().map(|p| p.to_string()).collect())
    }

    #[test]
    fn endpoint_credentials_and_tls_files() {
        let (b, problems) = read(
            "url = \"mqtts://broker.example.org\"\nca_file = \"/etc/ca.pem\"\nusername = \"u\"\npassword = \"pw\"\n",
            None,
        );
        assert!(problems.is_empty(), "{problems:?}");
        let b = b.unwrap();
        assert_eq!((b.host.as_str(), b.port), ("broker.example.org", 8883));
        assert_eq!(b.tls.unwrap().ca_file, Path::new("/etc/ca.pem"));
        assert!(!format!(
            "{:?}",
            read("url = \"mqtt://h\"\npassword = \"pw\"", None).0
        )
        .contains("pw\""));
        let (b, _) = read("", Some("mqtt://127.0.0.1:1884"));
        assert_eq!(b.unwrap().port, 1884);
    }

    #[test]
    fn bad_urls_are_refused_without_echoing_them() {
        let (_, p) = read("url = \"mqtt://u:secret@h\"", None);
        assert_eq!(
            p,
            ["mqtt.url: must not hold credentials; use username and password_file"]
        );
        let (_, p) = read("url = \"http://h\"", None);
        assert!(p[0].starts_with("mqtt.url: expected"), "{p:?}");
        let (_, p) = read("", None);
        assert_eq!(p, ["mqtt.url: missing required key"]);
        let (_, p) = read("url = \"mqtts://h\"", None);
        assert_eq!(p, ["mqtt.ca_file: required for mqtts://"]);
        let (_, p) = read("url = \"mqtt://h\"\nca_file = \"/ca.pem\"", None);
        assert_eq!(p, ["mqtt.ca_file: only applies to mqtts:// URLs"]);
        let (_, p) = read(
            "url = \"mqtts://h\"\nca_file = \"/ca.pem\"\nclient_cert = \"/c.pem\"",
            None,
        );
        assert_eq!(
            p,
            ["mqtt.client_cert: client_cert and client_key go together"]
        );
    }
}
