//! TLS for the public listener: rustls 1.2+ with a **required** client certificate, verified
//! against the configured CA bundle and CRLs (an expired CRL fails closed), no session
//! resumption (no TLS 1.3 tickets, no session cache: a revoked certificate must not resume),
//! HTTP/1.1 only through ALPN. A client chain that passed is remembered for at most 5 minutes
//! within its validity and its CRLs' ([`ChainCache`]); a reload starts from an empty memory.
//!
//! Loading checks everything an operator can get wrong: unreadable or empty files, a key that
//! does not match its certificate, a CRL that does not parse. Each failure is a [`TlsError`].

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{NoServerSessionStorage, WebPkiClientVerifier};
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, PrivateKeyDer};

use crate::config::ListenerConfig;

mod chain_cache;
pub use chain_cache::{
    CAPACITY, CLIENT_CHAIN_CHECKS, ChainCache, MAX_CHAIN_BYTES, MAX_REMEMBERED_BYTES, Outcome,
    TTL_SECS, crls_until,
};

/// Why the TLS material could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TlsError {
    /// A file could not be read or holds no usable PEM.
    #[error("{path}: {message}")]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// rustls refused the material (for example a key that does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Rustls(String),
}

impl TlsError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            TlsError::File { .. } => "file",
            TlsError::Rustls(_) => "rustls",
        }
    }
}

fn file_error(path: &Path, message: impl Into<String>) -> TlsError {
    TlsError::File {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// Reads every certificate of a PEM file; at least one.
pub fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| file_error(path, e.to_string()))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, e.to_string()))?;
    if certs.is_empty() {
        return Err(file_error(path, "no certificate in the file"));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_file(path)
        .map_err(|e| file_error(path, format!("no usable private key: {e}")))
}

fn load_crl(path: &Path) -> Result<Vec<CertificateRevocationListDer<'static>>, TlsError> {
    let bytes = std::fs::read(path).map_err(|e| file_error(path, e.to_string()))?;
    if bytes.starts_with(b"-----BEGIN") {
        let crls = CertificateRevocationListDer::pem_slice_iter(&bytes)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| file_error(path, e.to_string()))?;
        if crls.is_empty() {
            return Err(file_error(path, "no CRL in the file"));
        }
        Ok(crls)
    } else {
        Ok(vec![CertificateRevocationListDer::from(bytes)])
    }
}

/// What the client CA bundle and the CRLs in force are, for the audit trail: the CA
/// certificates' SHA-256 fingerprints and each CRL's number and count of revoked certificates.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TrustSummary {
    /// SHA-256 of each CA certificate's DER, hex.
    pub client_ca: Vec<String>,
    /// Each CRL, in the order configured.
    pub crls: Vec<CrlSummary>,
}

/// One CRL.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CrlSummary {
    /// Its CRL number (decimal), when it has one.
    pub number: Option<String>,
    /// How many certificates it revokes.
    pub revoked: usize,
}

/// A CRL's number and revoked count (none and 0 when it does not parse here).
fn crl_summary(der: &[u8]) -> CrlSummary {
    match x509_parser::parse_x509_crl(der) {
        Ok((_, crl)) => CrlSummary {
            number: crl.crl_number().map(ToString::to_string),
            revoked: crl.iter_revoked_certificates().count(),
        },
        Err(_) => CrlSummary {
            number: None,
            revoked: 0,
        },
    }
}

/// SHA-256 of `der`, hex.
fn fingerprint(der: &[u8]) -> String {
    hex::encode(crate::config::sha256(der))
}

/// The server's certificate chain and key, loaded and checked to match.
pub struct ServerIdentity {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

impl std::fmt::Debug for ServerIdentity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerIdentity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl ServerIdentity {
    /// SHA-256 of the leaf certificate's DER, hex.
    pub fn fingerprint(&self) -> String {
        self.chain
            .first()
            .map(|c| fingerprint(c.as_ref()))
            .unwrap_or_default()
    }
}

/// Reads the server certificate chain and key of `l`.
pub fn server_identity(l: &ListenerConfig) -> Result<ServerIdentity, TlsError> {
    Ok(ServerIdentity {
        chain: load_certs(&l.server_cert)?,
        key: load_key(&l.server_key)?,
    })
}

/// How client certificates are checked: the CA bundle and the CRLs of `l` (an expired CRL
/// fails every handshake).
pub type ClientVerifier = Arc<dyn ClientCertVerifier>;

/// Reads the client CA bundle and the CRLs of `l` and builds the verifier.
pub fn client_verifier(l: &ListenerConfig) -> Result<ClientVerifier, TlsError> {
    client_trust(l).map(|(verifier, _)| verifier)
}

/// [`client_verifier`], and the [`TrustSummary`] of the very certificates and CRLs it was
/// built from (read once).
pub fn client_trust(l: &ListenerConfig) -> Result<(ClientVerifier, TrustSummary), TlsError> {
    client_trust_with(l, provider())
}

/// [`client_trust`] with `provider`'s signature verification.
fn client_trust_with(
    l: &ListenerConfig,
    provider: Arc<CryptoProvider>,
) -> Result<(ClientVerifier, TrustSummary), TlsError> {
    let cas = load_certs(&l.client_ca)?;
    let mut crls = Vec::new();
    for path in &l.crls {
        crls.extend(load_crl(path)?);
    }
    let summary = TrustSummary {
        client_ca: cas.iter().map(|c| fingerprint(c.as_ref())).collect(),
        crls: crls.iter().map(|c| crl_summary(c.as_ref())).collect(),
    };
    let mut roots = RootCertStore::empty();
    for ca in cas {
        roots
            .add(ca)
            .map_err(|e| file_error(&l.client_ca, format!("not a usable CA certificate: {e}")))?;
    }
    let crls_until = chain_cache::crls_until(crls.iter().map(|c| c.as_ref()));
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .with_crls(crls)
        .enforce_revocation_expiration()
        .build()
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    let verifier: ClientVerifier = Arc::new(chain_cache::ChainCache::new(verifier, crls_until));
    Ok((verifier, summary))
}

/// The cryptography of every TLS configuration and verifier the gateway builds (the
/// listener's, the upstream's, the agent's and the push tool's): ring, or AWS-LC's FIPS module
/// in a build with the `fips` feature.
pub fn provider() -> Arc<CryptoProvider> {
    #[cfg(feature = "fips")]
    let provider = rustls::crypto::default_fips_provider();
    #[cfg(not(feature = "fips"))]
    let provider = rustls::crypto::ring::default_provider();
    Arc::new(provider)
}

/// What [`provider`] is, for `oneway_build_info` and the `start` audit event.
pub const CRYPTO: &str = if cfg!(feature = "fips") {
    "aws-lc-fips"
} else {
    "ring"
};

/// The listener's rustls configuration from a server identity and a client verifier.
pub fn assemble(
    identity: &ServerIdentity,
    verifier: ClientVerifier,
) -> Result<Arc<ServerConfig>, TlsError> {
    assemble_with(identity, verifier, provider())
}

/// [`assemble`] with `provider`.
fn assemble_with(
    identity: &ServerIdentity,
    verifier: ClientVerifier,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Rustls(e.to_string()))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(identity.chain.clone(), identity.key.clone_key())
        .map_err(|e| TlsError::Rustls(e.to_string()))?;
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Whether a client's chain (as presented at its handshake) still passes `verifier`: run
/// again after a reload, so that a certificate revoked since (or no longer under a
/// configured CA) does not keep an open connection.
pub fn still_valid(verifier: &ClientVerifier, chain: &[CertificateDer<'static>]) -> bool {
    let Some((end_entity, intermediates)) = chain.split_first() else {
        return false;
    };
    verifier
        .verify_client_cert(end_entity, intermediates, rustls_pki_types::UnixTime::now())
        .is_ok()
}

/// Builds the listener's rustls configuration: [`server_identity`], [`client_verifier`],
/// [`assemble`].
pub fn server_config(l: &ListenerConfig) -> Result<Arc<ServerConfig>, TlsError> {
    server_config_with(l, provider())
}

/// [`server_config`] with another provider's cryptography (the TLS benchmark compares
/// providers on the listener's very configuration).
pub fn server_config_with(
    l: &ListenerConfig,
    provider: Arc<CryptoProvider>,
) -> Result<Arc<ServerConfig>, TlsError> {
    let (verifier, _) = client_trust_with(l, Arc::clone(&provider))?;
    assemble_with(&server_identity(l)?, verifier, provider)
}

/// Seconds until the first certificate of a PEM file expires (negative once expired).
pub fn expiry_seconds(path: &Path) -> Result<f64, TlsError> {
    let certs = load_certs(path)?;
    let (_, cert) = x509_parser::parse_x509_certificate(&certs[0])
        .map_err(|e| file_error(path, format!("cannot parse the certificate: {e}")))?;
    let not_after = cert.validity().not_after.timestamp();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    Ok((not_after - now) as f64)
}
