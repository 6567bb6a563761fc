//! What a client is told: registrar URLs, trust, and the settings resolved
//! from flags and the provisioning file (flags win).

use crate::certs;
use crate::error::{Error, Result};
use crate::limits::DEFAULT_REGISTRAR_PORT;
use crate::liveness::Keepalive;
use crate::provision::{read_secret, Provision};
use crate::secret::Secret;
use crate::tls::Trust;
use crate::totp::Params;
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;
use uuid::Uuid;

/// A registrar URL: `https://host[:port]` (default 8898) or `http://…` for a
/// registrar run with `--plaintext`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerUrl {
    /// TLS or not.
    pub tls: bool,
    /// Host name or address (no brackets).
    pub host: String,
    /// Port.
    pub port: u16,
}

impl ServerUrl {
    /// Parse; a bare `host[:port]` means https.
    pub fn parse(text: &str) -> Result<ServerUrl> {
        let bad = || Error::Usage(format!("malformed server URL {text:?}"));
        let (tls, rest) = if let Some(r) = text.strip_prefix("https://") {
            (true, r)
        } else if let Some(r) = text.strip_prefix("http://") {
            (false, r)
        } else if text.contains("://") {
            return Err(bad());
        } else {
            (true, text)
        };
        let authority = rest.split('/').next().unwrap_or("");
        if authority.contains('@') {
            return Err(Error::Usage(
                "the server URL must not hold credentials".into(),
            ));
        }
        let (host, port) = if let Some(r) = authority.strip_prefix('[') {
            let (h, after) = r.split_once(']').ok_or_else(bad)?;
            let port = match after.strip_prefix(':') {
                Some(p) => p.parse().map_err(|_| bad())?,
                None if after.is_empty() => DEFAULT_REGISTRAR_PORT,
                None => return Err(bad()),
            };
            (h.to_string(), port)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().map_err(|_| bad())?),
                None => (authority.to_string(), DEFAULT_REGISTRAR_PORT),
            }
        };
        if host.is_empty() || port == 0 {
            return Err(bad());
        }
        Ok(ServerUrl { tls, host, port })
    }
}

impl fmt::Display for ServerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "https" } else { "http" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

/// The client flags shared by `expose`, `connect` and `lookup`.
#[derive(Debug, Clone, Default)]
pub struct ClientFlags {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--server`, repeated for several registrars.
    pub server: Vec<String>,
    /// `--uuid`.
    pub uuid: Option<String>,
    /// `--ca`.
    pub ca: Option<PathBuf>,
    /// `--pin-sha256`.
    pub pin_sha256: Option<String>,
    /// `--secret-file` (expose only).
    pub secret_file: Option<PathBuf>,
    /// `--keepalive` seconds (expose and connect).
    pub keepalive: Option<u64>,
}

/// Warn when a provisioning file that holds a secret can be read by group or
/// others, as the daemon does for its users file and key. Not an error: the
/// file may come from a read-only medium, and the operator decides.
fn warn_if_exposed(path: &std::path::Path) {
    if let Some(mode) = crate::files::loose_mode(path) {
        log::warn!(target: "rendezvous::client",
            "provisioning file {} holds a secret and is accessible by group or others (mode {mode:04o}); run chmod 600",
            path.display());
    }
}

/// The registrar URLs: the flags' as a whole, else the provisioning file's
/// `server`, a space-separated list.
fn servers(flags: &ClientFlags, prov: &Provision) -> Result<Vec<ServerUrl>> {
    let servers = if flags.server.is_empty() {
        let listed = prov.server.as_deref().unwrap_or("");
        listed.split_whitespace().map(ServerUrl::parse).collect::<Result<Vec<_>>>()?
    } else {
        flags.server.iter().map(|s| ServerUrl::parse(s)).collect::<Result<Vec<_>>>()?
    };
    if servers.is_empty() {
        return Err(Error::Usage("no server: give --server or --config".into()));
    }
    if servers.iter().any(|u| u.tls != servers[0].tls) {
        return Err(Error::Usage("the server URLs must all be https:// or all http://".into()));
    }
    Ok(servers)
}

/// Everything a client needs, resolved: flags override the provisioning file.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The registrars (one, or the nodes of a cluster; never empty).
    pub servers: Vec<ServerUrl>,
    /// The hidden server's UUID.
    pub uuid: Uuid,
    /// How to trust the registrar.
    pub trust: Trust,
    /// TOTP step and digits.
    pub params: Params,
    /// The secret, when `need_secret` was asked for.
    pub secret: Option<Secret>,
    /// TCP keepalive and user timeout of the connections to the server.
    pub keepalive: Keepalive,
}

impl Settings {
    /// Resolve flags and the provisioning file.
    pub fn resolve(flags: &ClientFlags, need_secret: bool) -> Result<Settings> {
        let prov = match &flags.config {
            Some(p) => {
                let prov = Provision::load(p)?;
                if prov.secret.is_some() {
                    warn_if_exposed(p);
                }
                prov
            }
            None => Provision::default(),
        };
        let servers = servers(flags, &prov)?;
        let uuid = match &flags.uuid {
            Some(u) => {
                Uuid::try_parse(u).map_err(|_| Error::Usage(format!("malformed uuid {u:?}")))?
            }
            None => prov
                .uuid
                .ok_or_else(|| Error::Usage("no uuid: give --uuid or --config".into()))?,
        };
        if flags.ca.is_some() && flags.pin_sha256.is_some() {
            return Err(Error::Usage(
                "--ca and --pin-sha256 exclude each other".into(),
            ));
        }
        let trust = if let Some(ca) = &flags.ca {
            Trust::Ca(ca.clone())
        } else if let Some(pin) = &flags.pin_sha256 {
            Trust::Pin(certs::parse_fingerprint(pin).ok_or_else(|| {
                Error::Usage("--pin-sha256 must be 64 hex digits (colons allowed)".into())
            })?)
        } else if let Some(ca) = &prov.ca {
            Trust::Ca(ca.clone())
        } else if let Some(pin) = prov
            .pin_sha256
            .as_deref()
            .and_then(certs::parse_fingerprint)
        {
            Trust::Pin(pin)
        } else {
            Trust::WebPki
        };
        let params = Params {
            step: prov.step.unwrap_or(crate::totp::DEFAULT_STEP),
            digits: prov.digits.unwrap_or(crate::totp::DEFAULT_DIGITS),
        };
        let secret = if !need_secret {
            None
        } else if flags.secret_file.is_some() {
            Some(read_secret(flags.secret_file.as_deref())?)
        } else if let Some(s) = prov.secret.clone() {
            Some(s)
        } else {
            Some(read_secret(None)?)
        };
        let keepalive = match flags.keepalive {
            Some(0) => return Err(Error::Usage("--keepalive must be at least 1 second".into())),
            Some(k) if Duration::from_secs(k) > crate::limits::MAX_TIMEOUT => {
                return Err(Error::Usage(format!(
                    "--keepalive must be from 1 to {} seconds",
                    crate::limits::MAX_TIMEOUT.as_secs()
                )))
            }
            Some(k) => Keepalive::from_secs(k),
            None => Keepalive::default(),
        };
        Ok(Settings {
            servers,
            uuid,
            trust,
            params,
            secret,
            keepalive,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = ServerUrl::parse("https://rv.example.org").expect("ok");
        assert_eq!(
            (u.tls, u.host.as_str(), u.port),
            (true, "rv.example.org", 8898)
        );
        let u = ServerUrl::parse("http://127.0.0.1:9/").expect("ok");
        assert_eq!((u.tls, u.host.as_str(), u.port), (false, "127.0.0.1", 9));
        let u = ServerUrl::parse("[::1]:77").expect("ok");
        assert_eq!((u.tls, u.host.as_str(), u.port), (true, "::1", 77));
        assert_eq!(u.to_string(), "https://[::1]:77");
        assert!(ServerUrl::parse("ftp://x").is_err());
        assert!(ServerUrl::parse("https://u:p@x").is_err());
        assert!(ServerUrl::parse("https://x:0").is_err());
        assert!(ServerUrl::parse("https://:80").is_err());
    }

    #[test]
    fn several_servers_from_the_file_or_the_flags() {
        let prov = Provision {
            server: Some("https://a.example  https://b.example:9".into()),
            ..Provision::default()
        };
        let none = ClientFlags::default();
        let got = servers(&none, &prov).expect("the file's list");
        assert_eq!(got.iter().map(|u| u.to_string()).collect::<Vec<_>>(), ["https://a.example:8898", "https://b.example:9"]);
        let flags = ClientFlags {
            server: vec!["https://c.example".into()],
            ..ClientFlags::default()
        };
        assert_eq!(servers(&flags, &prov).expect("flags win").len(), 1);
        let mixed = ClientFlags {
            server: vec!["https://c.example".into(), "http://d.example:1".into()],
            ..ClientFlags::default()
        };
        assert!(servers(&mixed, &prov).is_err(), "one scheme for all");
        assert!(servers(&none, &Provision::default()).is_err(), "no server at all");
    }
}
