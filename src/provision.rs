//! The provisioning file that `rendezvousd user add` writes and the client's
//! `--config` reads: `key = value` lines (`server`, `uuid`, `secret`, `step`,
//! `digits`, `pin-sha256` or `ca`), `#` comments, mode 0600; and reading a
//! client's secret (a secret file, the provisioning file, or
//! `$RENDEZVOUS_SECRET`, never the command line).

use crate::error::{Error, IoResultExt, Result};
use crate::limits::{MIN_SECRET_BYTES, TOTP_DIGITS, TOTP_STEP};
use crate::secret::Secret;
use std::fs;
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// What a provisioning file holds; every field is optional so flags can fill gaps.
#[derive(Debug, Clone, Default)]
pub struct Provision {
    /// Registrar URL.
    pub server: Option<String>,
    /// The hidden server's UUID.
    pub uuid: Option<Uuid>,
    /// The TOTP secret.
    pub secret: Option<Secret>,
    /// TOTP step in seconds.
    pub step: Option<u64>,
    /// TOTP digits.
    pub digits: Option<u32>,
    /// SHA-256 fingerprint of the server certificate (64 lowercase hex).
    pub pin_sha256: Option<String>,
    /// A CA file to trust instead of a pin.
    pub ca: Option<PathBuf>,
}

impl Provision {
    /// Parse file text; `path` labels errors (never the values).
    pub fn parse(text: &str, path: &Path) -> Result<Provision> {
        let mut p = Provision::default();
        for (n, raw) in text.lines().enumerate() {
            let lineno = Some(n + 1);
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |msg: &str| Error::config(path, lineno, msg);
            let (key, value) = line
                .split_once('=')
                .ok_or_else(|| err("expected key = value"))?;
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                return Err(err(&format!("{key}: empty value")));
            }
            match key {
                "server" => p.server = Some(value.to_string()),
                "uuid" => p.uuid = Some(Uuid::try_parse(value).map_err(|_| err("malformed uuid"))?),
                "secret" => {
                    let secret =
                        Secret::from_base32(value).ok_or_else(|| err("secret is not base32"))?;
                    if secret.expose().len() < MIN_SECRET_BYTES {
                        return Err(err("secret is shorter than 16 bytes (128 bits)"));
                    }
                    p.secret = Some(secret)
                }
                "step" => {
                    p.step = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|s| TOTP_STEP.contains(s))
                            .ok_or_else(|| err("step must be 1 to 3600 seconds"))?,
                    )
                }
                "digits" => {
                    p.digits = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|d| TOTP_DIGITS.contains(d))
                            .ok_or_else(|| err("digits must be 6 to 8"))?,
                    )
                }
                "pin-sha256" => {
                    let fp = crate::certs::parse_fingerprint(value)
                        .ok_or_else(|| err("pin-sha256 must be 64 hex digits"))?;
                    p.pin_sha256 = Some(crate::certs::hex(&fp));
                }
                "ca" => p.ca = Some(PathBuf::from(value)),
                other => {
                    let shown: String = other.chars().take(40).collect();
                    return Err(err(&format!("unknown key {shown:?}")));
                }
            }
        }
        if p.pin_sha256.is_some() && p.ca.is_some() {
            return Err(Error::config(path, None, "both pin-sha256 and ca given"));
        }
        Ok(p)
    }

    /// Read and parse a provisioning file.
    pub fn load(path: &Path) -> Result<Provision> {
        let text = fs::read_to_string(path).op("read provisioning file")?;
        Provision::parse(&text, path)
    }

    /// The file text.
    pub fn render(&self) -> String {
        let mut out = String::from("# rendezvous provisioning file: keep it secret (mode 0600)\n");
        if let Some(v) = &self.server {
            out.push_str(&format!("server = {v}\n"));
        }
        if let Some(v) = &self.uuid {
            out.push_str(&format!("uuid = {}\n", v.hyphenated()));
        }
        if let Some(v) = &self.secret {
            out.push_str(&format!("secret = {}\n", v.to_base32()));
        }
        if let Some(v) = self.step {
            out.push_str(&format!("step = {v}\n"));
        }
        if let Some(v) = self.digits {
            out.push_str(&format!("digits = {v}\n"));
        }
        if let Some(v) = &self.pin_sha256 {
            out.push_str(&format!("pin-sha256 = {v}\n"));
        }
        if let Some(v) = &self.ca {
            out.push_str(&format!("ca = {}\n", v.display()));
        }
        out
    }
}

/// The environment variable a client may take its secret from.
pub const SECRET_ENV: &str = "RENDEZVOUS_SECRET";

/// Read a secret: from a file holding base32 text or a provisioning file, else
/// from `$RENDEZVOUS_SECRET`. Never from the command line.
pub fn read_secret(file: Option<&std::path::Path>) -> Result<Secret> {
    read_secret_and_params(file).map(|(s, _)| s)
}

/// The `step` and `digits` a provisioning file names, if any.
pub type FileParams = (Option<u64>, Option<u32>);

/// As `read_secret`, plus the `step` and `digits` a provisioning file names.
pub fn read_secret_and_params(file: Option<&std::path::Path>) -> Result<(Secret, FileParams)> {
    match file {
        Some(path) => {
            let text =
                std::fs::read_to_string(path).map_err(|e| Error::io("read secret file", e))?;
            // Bare base32 (padding allowed), else a provisioning file.
            if let Some(s) = Secret::from_base32(text.trim()) {
                return Ok((s, (None, None)));
            }
            let p = Provision::parse(&text, path)?;
            let secret = p
                .secret
                .ok_or_else(|| Error::config(path, None, "no secret in file"))?;
            Ok((secret, (p.step, p.digits)))
        }
        None => {
            let text = std::env::var(SECRET_ENV).map_err(|_| {
                Error::Usage(format!(
                    "no secret: give --secret-file or set ${SECRET_ENV}"
                ))
            })?;
            let s = Secret::from_base32(text.trim())
                .ok_or_else(|| Error::Usage(format!("${SECRET_ENV} is not base32")))?;
            Ok((s, (None, None)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let p = Provision {
            server: Some("https://example.org:8898".into()),
            uuid: Some(Uuid::new_v4()),
            secret: Some(Secret::generate(20)),
            step: Some(30),
            digits: Some(8),
            pin_sha256: Some("ab".repeat(32)),
            ca: None,
        };
        let q = Provision::parse(&p.render(), Path::new("p")).expect("parses");
        assert_eq!(q.server, p.server);
        assert_eq!(q.uuid, p.uuid);
        assert_eq!(q.secret, p.secret);
        assert_eq!((q.step, q.digits), (Some(30), Some(8)));
        assert_eq!(q.pin_sha256, p.pin_sha256);
    }

    #[test]
    fn errors_have_lines_and_no_values() {
        let e = Provision::parse("server = x\nsecret = !!secretish!!\n", Path::new("p"))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("p:2: "), "{e}");
        assert!(!e.contains("secretish"), "{e}");
        let e = Provision::parse("bogus = 1\n", Path::new("p")).unwrap_err();
        assert!(e.to_string().contains("unknown key"), "{e}");
        assert!(Provision::parse("uuid\n", Path::new("p")).is_err());
    }
}
