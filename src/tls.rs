//! TLS: rustls server and client configurations (the ring provider always
//! named explicitly), the pinning and private-CA verifiers, and handshakes
//! under an overall deadline. Certificate files are `certs`.

use crate::certs::fingerprint;
use crate::certs::load_certs;
use crate::certs::load_key;
use crate::error::{Error, IoResultExt, Result, Timeout};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{ring as ring_provider, CryptoProvider, WebPkiSupportedAlgorithms};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{
    ClientConfig, ClientConnection, DigitallySignedStruct, RootCertStore, ServerConfig,
    ServerConnection, SignatureScheme, StreamOwned,
};
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
        #[cfg(feature = "webpki-roots")]
        Trust::WebPki => {
            let roots = RootCertStore {
                roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
            };
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        // The system's bundle as public roots: certificates rustls cannot
        // use are skipped (a distribution's bundle may hold some), and the
        // server's name is checked as always.
        #[cfg(not(feature = "webpki-roots"))]
        Trust::WebPki => {
            let path = system_roots()?;
            let mut roots = RootCertStore::empty();
            let (usable, _) = roots.add_parsable_certificates(load_certs(&path)?);
            if usable == 0 {
                return Err(Error::config(&path, None, "no usable CA certificate"));
            }
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

/// Where the system's CA bundle is kept (Debian, Alpine, OpenWrt and
/// Buildroot; Fedora; the BSDs).
#[cfg(not(feature = "webpki-roots"))]
const SYSTEM_ROOTS: [&str; 3] = [
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// A build without the built-in roots (a gateway's, which saves their
/// size) trusts the system's CA bundle instead, when there is one.
#[cfg(not(feature = "webpki-roots"))]
fn system_roots() -> Result<PathBuf> {
    SYSTEM_ROOTS
        .iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
        .ok_or_else(|| {
            Error::Other(format!(
                "this build has no built-in CA roots and none of {} exists: give --ca FILE or --pin-sha256",
                SYSTEM_ROOTS.join(", ")
            ))
        })
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
