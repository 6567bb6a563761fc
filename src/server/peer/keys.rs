//! The cluster's keys, all derived from the secret in
//! `--cluster-secret-file` (HKDF-SHA256): an Ed25519 key the peer listener
//! proves in its TLS 1.3 handshake, which every other node pins, and the
//! HMAC-SHA256 key that authenticates a node's requests. One file to give
//! every node; no certificate to issue, copy or renew.

use crate::error::{Error, Result};
use crate::tls::provider;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use ring::{hkdf, hmac};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, ServerConfig, SignatureScheme};
use std::path::Path;
use std::sync::Arc;

/// The name the peer listener's certificate carries and links ask for.
pub const PEER_NAME: &str = "rendezvous-cluster";

/// The shortest cluster secret accepted: 256 bits.
pub const MIN_CLUSTER_SECRET: usize = 32;

/// What the cluster secret yields.
pub struct ClusterKeys {
    hmac: hmac::Key,
    /// For the peer listener.
    pub server: Arc<ServerConfig>,
    /// For links to other nodes' peer listeners.
    pub client: Arc<ClientConfig>,
}

impl std::fmt::Debug for ClusterKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterKeys(…)")
    }
}

/// A PKCS#8 v1 document holding an Ed25519 seed (RFC 8410): a fixed
/// prefix and the 32 bytes.
fn ed25519_pkcs8(seed: &[u8; 32]) -> Vec<u8> {
    const PREFIX: [u8; 16] = [
        0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
    ];
    let mut der = PREFIX.to_vec();
    der.extend_from_slice(seed);
    der
}

fn bad(msg: &str) -> Error {
    Error::Other(format!("cluster keys: {msg}"))
}

impl ClusterKeys {
    /// Read `--cluster-secret-file`: its bytes, white space at the ends
    /// trimmed, at least [`MIN_CLUSTER_SECRET`] of them. The file's
    /// contents never appear in an error.
    pub fn load(path: &Path) -> Result<ClusterKeys> {
        if let Some(w) = crate::files::mode_warning(path) {
            log::warn!(target: "rendezvous::peer", "{w}");
        }
        let bytes = std::fs::read(path).map_err(|e| Error::io("read cluster secret file", e))?;
        let trimmed = bytes.trim_ascii();
        if trimmed.len() < MIN_CLUSTER_SECRET {
            return Err(Error::config(
                path,
                None,
                format!("the cluster secret must be at least {MIN_CLUSTER_SECRET} bytes (head -c 48 /dev/urandom | base64 makes one)"),
            ));
        }
        ClusterKeys::from_secret(trimmed)
    }

    /// The keys `secret` yields.
    pub fn from_secret(secret: &[u8]) -> Result<ClusterKeys> {
        let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, b"rendezvous cluster v1").extract(secret);
        let mut seed = [0u8; 32];
        prk.expand(&[b"peer tls ed25519"], hkdf::HKDF_SHA256)
            .and_then(|okm| okm.fill(&mut seed))
            .map_err(|_| bad("derivation failed"))?;
        let hmac = hmac::Key::from(
            prk.expand(&[b"peer request hmac"], hmac::HMAC_SHA256)
                .map_err(|_| bad("derivation failed"))?,
        );
        let pkcs8 = ed25519_pkcs8(&seed);
        let public: [u8; 32] = Ed25519KeyPair::from_seed_unchecked(&seed)
            .map_err(|_| bad("bad Ed25519 seed"))?
            .public_key()
            .as_ref()
            .try_into()
            .map_err(|_| bad("bad Ed25519 public key"))?;
        let der = PrivatePkcs8KeyDer::from(pkcs8.clone());
        let key = rcgen::KeyPair::from_pkcs8_der_and_sign_algo(&der, &rcgen::PKCS_ED25519)
            .map_err(|e| bad(&e.to_string()))?;
        let params = rcgen::CertificateParams::new(vec![PEER_NAME.to_string()]).map_err(|e| bad(&e.to_string()))?;
        let cert = params.self_signed(&key).map_err(|e| bad(&e.to_string()))?;
        let tls13 = [&rustls::version::TLS13];
        let server = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&tls13)?
            .with_no_client_auth()
            .with_single_cert(vec![cert.der().clone()], PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8)))?;
        let client = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&tls13)?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ClusterKeyVerifier { public }))
            .with_no_client_auth();
        Ok(ClusterKeys {
            hmac,
            server: Arc::new(server),
            client: Arc::new(client),
        })
    }

    /// The HMAC-SHA256 of `parts` (concatenated), in hex.
    pub fn sign(&self, parts: &[&[u8]]) -> String {
        let mut ctx = hmac::Context::with_key(&self.hmac);
        for p in parts {
            ctx.update(p);
        }
        crate::certs::hex(ctx.sign().as_ref())
    }

    /// Whether `tag` (hex) is the HMAC of `parts`, compared in constant time.
    pub fn verify(&self, parts: &[&[u8]], tag: &str) -> bool {
        let Ok(tag) = data_encoding::HEXLOWER_PERMISSIVE.decode(tag.as_bytes()) else {
            return false;
        };
        let msg: Vec<u8> = parts.concat();
        hmac::verify(&self.hmac, &msg, &tag).is_ok()
    }
}

/// Trusts the one peer that holds the cluster's Ed25519 key. The
/// certificate is not looked at: in TLS 1.3 the server signs the handshake
/// transcript (CertificateVerify), and that signature is checked against
/// the cluster's public key itself, as with raw public keys (RFC 7250), so
/// only a holder of the key gets past the handshake. TLS 1.2 is not
/// offered, so its signature check (which would differ) is refused.
#[derive(Debug)]
struct ClusterKeyVerifier {
    public: [u8; 32],
}

impl ServerCertVerifier for ClusterKeyVerifier {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: UnixTime,
    ) -> std::result::Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("links between nodes use TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        _cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> std::result::Result<HandshakeSignatureValid, rustls::Error> {
        let key = UnparsedPublicKey::new(&ED25519, &self.public);
        if dss.scheme == SignatureScheme::ED25519 && key.verify(message, dss.signature()).is_ok() {
            Ok(HandshakeSignatureValid::assertion())
        } else {
            Err(rustls::Error::General("the peer does not hold the cluster's key".into()))
        }
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        vec![SignatureScheme::ED25519]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_secret_gives_one_key_and_another_is_refused() {
        let a = ClusterKeys::from_secret(&[7u8; 32]).expect("keys");
        let b = ClusterKeys::from_secret(&[7u8; 32]).expect("keys");
        let other = ClusterKeys::from_secret(&[8u8; 32]).expect("keys");
        let tag = a.sign(&[b"TAKE x\n", b"head"]);
        assert!(b.verify(&[b"TAKE x\n", b"head"], &tag), "the same secret verifies");
        assert!(!b.verify(&[b"TAKE y\n", b"head"], &tag), "another message does not");
        assert!(!other.verify(&[b"TAKE x\n", b"head"], &tag), "another secret does not");
        assert!(!b.verify(&[b"TAKE x\n", b"head"], "zz"), "garbage does not");
    }
}
