//! Certificate files: PEM loading, SHA-256 fingerprints (how a self-signed
//! certificate is pinned), and the self-signed pair `serve`, `user add` and
//! `cert` create in the state folder.

use crate::error::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use std::fs;
use std::path::Path;

/// Load every certificate from a PEM file.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    let certs: Vec<_> = CertificateDer::pem_file_iter(path)
        .map_err(|e| Error::config(path, None, format!("cannot read certificates: {e}")))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| Error::config(path, None, format!("bad PEM: {e}")))?;
    if certs.is_empty() {
        return Err(Error::config(path, None, "no certificate in file"));
    }
    Ok(certs)
}

/// Load a private key from a PEM file.
pub fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| Error::config(path, None, format!("cannot read private key: {e}")))
}

/// The SHA-256 fingerprint of a DER certificate.
pub fn fingerprint(der: &[u8]) -> [u8; 32] {
    let d = ring::digest::digest(&ring::digest::SHA256, der);
    let mut out = [0u8; 32];
    out.copy_from_slice(d.as_ref());
    out
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    data_encoding::HEXLOWER.encode(bytes)
}

/// Parse a fingerprint: 64 hex digits, either case, colons allowed.
///
/// ```
/// let fp = rendezvous::certs::parse_fingerprint(&["AB"; 32].join(":"));
/// assert_eq!(fp, Some([0xab; 32]));
/// assert_eq!(rendezvous::certs::parse_fingerprint("abc"), None);
/// ```
pub fn parse_fingerprint(text: &str) -> Option<[u8; 32]> {
    let clean: String = text
        .chars()
        .filter(|c| *c != ':')
        .map(|c| c.to_ascii_lowercase())
        .collect();
    if clean.len() != 64 {
        return None;
    }
    let bytes = data_encoding::HEXLOWER.decode(clean.as_bytes()).ok()?;
    bytes.try_into().ok()
}

/// The fingerprint of the first certificate in a PEM file, as 64 hex digits.
pub fn file_fingerprint(cert: &Path) -> Result<String> {
    let certs = load_certs(cert)?;
    Ok(hex(&fingerprint(certs[0].as_ref())))
}

/// The names a self-signed certificate gets when none are given.
pub fn default_hosts() -> Vec<String> {
    let mut hosts = vec!["localhost".to_string()];
    if let Some(h) = system_hostname() {
        if !hosts.contains(&h) {
            hosts.push(h);
        }
    }
    hosts.push("127.0.0.1".into());
    hosts.push("::1".into());
    hosts
}

/// This machine's host name, from the kernel.
pub fn system_hostname() -> Option<String> {
    let h = fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| fs::read_to_string("/etc/hostname"))
        .ok()?;
    let h = h.trim();
    (!h.is_empty()).then(|| h.to_string())
}

/// Generate a self-signed certificate and key (PEM) for `hosts`.
pub fn generate_self_signed(hosts: &[String]) -> Result<(String, String)> {
    let ck = rcgen::generate_simple_self_signed(hosts.to_vec())
        .map_err(|e| Error::Other(format!("generate certificate: {e}")))?;
    Ok((ck.cert.pem(), ck.key_pair.serialize_pem()))
}

/// Where a state folder keeps its pair (the tests' shorthand; the crate
/// uses [`crate::state::StatePaths`]).
#[cfg(any(test, feature = "internals"))]
pub fn state_pair(state_dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    (state_dir.join("cert.pem"), state_dir.join("key.pem"))
}

/// Write a new self-signed pair (certificate 0644, key 0600) unless one exists
/// and `force` is false. Returns the certificate's fingerprint.
pub fn write_self_signed(cert: &Path, key: &Path, hosts: &[String], force: bool) -> Result<String> {
    if !force && (cert.exists() || key.exists()) {
        return Err(Error::Other(format!(
            "{} exists: refusing to overwrite without --force",
            if cert.exists() { cert } else { key }.display()
        )));
    }
    let (cert_pem, key_pem) = generate_self_signed(hosts)?;
    crate::files::write_atomic(key, key_pem.as_bytes(), 0o600)?;
    crate::files::write_atomic(cert, cert_pem.as_bytes(), 0o644)?;
    file_fingerprint(cert)
}

/// Make sure the state folder (0700) holds a pair; create one if both files
/// are missing (half a pair is an error). Returns the fingerprint and whether
/// it was created.
pub fn ensure_pair(cert: &Path, key: &Path) -> Result<(String, bool)> {
    match (cert.exists(), key.exists()) {
        (true, true) => return Ok((file_fingerprint(cert)?, false)),
        (false, false) => {}
        // Never replace half a pair: clients pin the certificate.
        (true, false) | (false, true) => {
            let (have, missing) = if cert.exists() {
                (cert, key)
            } else {
                (key, cert)
            };
            return Err(Error::Other(format!(
                "{} exists but {} is missing: restore it, or run 'rendezvousd cert --force'",
                have.display(),
                missing.display()
            )));
        }
    }
    if let Some(dir) = cert.parent() {
        crate::files::ensure_dir(dir)?;
    }
    Ok((write_self_signed(cert, key, &default_hosts(), true)?, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprint_parsing() {
        let lower = "ab".repeat(32);
        assert_eq!(parse_fingerprint(&lower), Some([0xab; 32]));
        let colons = vec!["AB"; 32].join(":");
        assert_eq!(parse_fingerprint(&colons), Some([0xab; 32]));
        assert_eq!(parse_fingerprint(&"ab".repeat(31)), None);
        assert_eq!(parse_fingerprint(&"zz".repeat(32)), None);
        assert_eq!(hex(&[0xab; 32]), lower);
    }
}
