//! TLS: rustls server and client configurations (the ring provider always
//! named explicitly), PEM loading through `PemObject`, the self-signed pair
//! that `cert`, `user add` and a first `serve` create with rcgen, SHA-256
//! fingerprints, the pinning verifier, and handshakes under an overall deadline.

use crate::error::{Error, IoResultExt, Result, Timeout};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as ring_provider, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, ServerConfig,
    ServerConnection, SignatureScheme, StreamOwned,
};
use std::fs;
use std::io::{self, Read};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// A server-side TLS stream over TCP.
pub type ServerStream = StreamOwned<ServerConnection, TcpStream>;
/// A client-side TLS stream over TCP.
pub type ClientStream = StreamOwned<ClientConnection, TcpStream>;

/// The one crypto provider: ring (never aws-lc-rs).
pub fn provider() -> Arc<CryptoProvider> {
    Arc::new(ring_provider::default_provider())
}

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

/// A server configuration from a certificate chain and key in PEM files.
pub fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let certs = load_certs(cert)?;
    let key = load_key(key)?;
    let config = ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    Ok(Arc::new(config))
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
/// let fp = rendezvous::tls::parse_fingerprint(&["AB"; 32].join(":"));
/// assert_eq!(fp, Some([0xab; 32]));
/// assert_eq!(rendezvous::tls::parse_fingerprint("abc"), None);
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

/// Where a state folder keeps its pair.
pub fn state_pair(state_dir: &Path) -> (PathBuf, PathBuf) {
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
    crate::users::write_atomic(key, key_pem.as_bytes(), 0o600)?;
    crate::users::write_atomic(cert, cert_pem.as_bytes(), 0o644)?;
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
        crate::state::ensure_dir(dir)?;
    }
    Ok((write_self_signed(cert, key, &default_hosts(), true)?, true))
}

/// How a client decides to trust the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trust {
    /// The webpki-roots set of public CAs.
    WebPki,
    /// Certificates from a PEM file (a private CA, or the server's own self-signed one).
    Ca(PathBuf),
    /// The SHA-256 fingerprint of the server's certificate.
    Pin([u8; 32]),
}

/// A client configuration for `trust`.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>> {
    let provider = provider();
    let builder = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let config = match trust {
        Trust::WebPki => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Ca(path) => {
            let certs = load_certs(path)?;
            let mut roots = RootCertStore::empty();
            for c in &certs {
                roots
                    .add(c.clone())
                    .map_err(|e| Error::config(path, None, format!("unusable CA: {e}")))?;
            }
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider.clone(),
            )
            .build()
            .map_err(|e| Error::config(path, None, format!("unusable CA: {e}")))?;
            let verifier = CaVerifier {
                webpki,
                exact: certs.iter().map(|c| fingerprint(c.as_ref())).collect(),
                algs: provider.signature_verification_algorithms,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
        Trust::Pin(pin) => {
            let verifier = PinVerifier {
                pin: *pin,
                algs: provider.signature_verification_algorithms,
            };
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(verifier))
                .with_no_client_auth()
        }
    };
    Ok(Arc::new(config))
}

/// The handshake-signature half of a verifier (the same for every one of
/// ours): a trusted certificate still has to prove possession of its key.
macro_rules! handshake_signature_checks {
    () => {
        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algs)
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algs)
        }

        fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
            self.algs.supported_schemes()
        }
    };
}

/// Trusts exactly one certificate, by SHA-256 fingerprint, and still checks
/// that the server proves possession of its key (handshake signatures).
#[derive(Debug)]
struct PinVerifier {
    pin: [u8; 32],
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for PinVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        if crate::secret::ct_eq(&fingerprint(end_entity.as_ref()), &self.pin) {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::General(
                "server certificate does not match the pinned SHA-256 fingerprint".into(),
            ))
        }
    }

    handshake_signature_checks!();
}

/// webpki verification against a CA file; a server certificate that is itself
/// one of the file's certificates (a self-signed server) is also accepted.
#[derive(Debug)]
struct CaVerifier {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
    exact: Vec<[u8; 32]>,
    algs: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for CaVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        match self
            .webpki
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Ok(v) => Ok(v),
            Err(e) => {
                let fp = fingerprint(end_entity.as_ref());
                if self.exact.iter().any(|x| crate::secret::ct_eq(x, &fp)) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(e)
                }
            }
        }
    }

    handshake_signature_checks!();
}

fn set_deadline_timeouts(sock: &TcpStream, deadline: Instant, which: Timeout) -> Result<()> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(Error::Timeout(which));
    }
    sock.set_read_timeout(Some(left)).op("set socket timeout")?;
    sock.set_write_timeout(Some(left))
        .op("set socket timeout")?;
    Ok(())
}

fn handshake_io_error(e: io::Error) -> Error {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => Error::Timeout(Timeout::Handshake),
        io::ErrorKind::InvalidData => match e.into_inner() {
            Some(inner) => match inner.downcast::<rustls::Error>() {
                Ok(tls) => Error::Tls(*tls),
                Err(other) => Error::Protocol(other.to_string()),
            },
            None => Error::Protocol("invalid TLS data".into()),
        },
        _ => Error::io("TLS handshake", e),
    }
}

/// Drive a handshake one socket operation at a time, resetting the socket's
/// timeouts to what is left before each, so a peer trickling bytes is cut at
/// `deadline` (rustls's own `complete_io` loops until a record is whole, which
/// only bounds each read). Pending records after the handshake are flushed.
fn drive_handshake<D: rustls::SideData>(
    conn: &mut rustls::ConnectionCommon<D>,
    sock: &mut TcpStream,
    deadline: Instant,
) -> Result<()> {
    while conn.is_handshaking() || conn.wants_write() {
        set_deadline_timeouts(sock, deadline, Timeout::Handshake)?;
        if conn.wants_write() {
            conn.write_tls(sock).map_err(handshake_io_error)?;
            continue;
        }
        match conn.read_tls(sock) {
            Ok(0) => {
                return Err(Error::Protocol(
                    "connection closed during TLS handshake".into(),
                ))
            }
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(handshake_io_error(e)),
        }
        if let Err(e) = conn.process_new_packets() {
            // Tell the peer why (best effort), then fail.
            let _ = conn.write_tls(sock);
            return Err(Error::Tls(e));
        }
    }
    Ok(())
}

/// Run the server side of a handshake; the whole handshake must finish by
/// `deadline` (a peer trickling bytes is cut there, not per read).
pub fn accept(
    sock: TcpStream,
    config: Arc<ServerConfig>,
    deadline: Instant,
) -> Result<ServerStream> {
    let mut conn = ServerConnection::new(config)?;
    let mut sock = sock;
    drive_handshake(&mut conn, &mut sock, deadline)?;
    Ok(StreamOwned::new(conn, sock))
}

/// Run the client side of a handshake by `deadline`.
pub fn connect(
    sock: TcpStream,
    config: Arc<ClientConfig>,
    host: &str,
    deadline: Instant,
) -> Result<ClientStream> {
    let name = ServerName::try_from(host.to_string())
        .map_err(|_| Error::Usage(format!("invalid server name {host:?}")))?;
    let mut conn = ClientConnection::new(config, name)?;
    let mut sock = sock;
    drive_handshake(&mut conn, &mut sock, deadline)?;
    Ok(StreamOwned::new(conn, sock))
}

/// Read plaintext with at most one socket read, so a caller that resets the
/// socket timeout between calls enforces an overall deadline even against a
/// peer trickling one record byte by byte. `Interrupted` means "a record
/// arrived but no plaintext yet: call again".
pub fn read_step<C, D>(conn: &mut C, sock: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<D>>,
    D: rustls::SideData,
{
    let plaintext = |conn: &mut C, buf: &mut [u8]| match conn.reader().read(buf) {
        Ok(n) => Some(Ok(n)),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
        // Closed without close_notify: the end all the same.
        Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Some(Ok(0)),
        Err(e) => Some(Err(e)),
    };
    if let Some(r) = plaintext(conn, buf) {
        return r;
    }
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    if conn.read_tls(sock)? == 0 {
        return Ok(0);
    }
    if let Err(e) = conn.process_new_packets() {
        let _ = conn.write_tls(sock);
        return Err(io::Error::new(io::ErrorKind::InvalidData, e));
    }
    while conn.wants_write() {
        conn.write_tls(sock)?;
    }
    plaintext(conn, buf).unwrap_or_else(|| Err(io::ErrorKind::Interrupted.into()))
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
