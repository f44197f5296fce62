//! Remembers client certificate chains that passed verification, so that an agent that
//! reconnects does not pay for the chain again.
//!
//! A full check of a client chain costs two signature verifications on top of the handshake's
//! own: the certificate's signature by its CA, and the CRL's signature by the same CA (webpki
//! checks the CRL's signature on every lookup). For the same bytes, under the same CA bundle
//! and the same CRLs, the only input that changes the answer is the time. So a chain that
//! passed is remembered with the window in which the same check is certain to pass again:
//!
//! - from the latest `notBefore` to the earliest `notAfter` of every certificate the client
//!   presented (the path webpki used is among them, so the window is never wider);
//! - before the earliest `nextUpdate` of the CRLs (the listener enforces CRL expiry);
//! - for at most [`TTL_SECS`] after the check.
//!
//! A hit is an exact byte comparison of the whole presented chain. Only passes are
//! remembered: a refused chain is checked in full every time. The handshake's proof of
//! possession (the client's `CertificateVerify` signature) is never cached. The cache lives in
//! one verifier, and a reload builds a new verifier from the new CA bundle and CRLs: a
//! revocation takes effect for new handshakes the moment its CRL is loaded (and open
//! connections are checked again, see [`super::still_valid`]).

use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::sync::{Arc, Mutex};

use rustls::client::danger::HandshakeSignatureValid;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use rustls_pki_types::{CertificateDer, UnixTime};

/// How long a pass is remembered at most.
pub const TTL_SECS: u64 = 300;
/// How many chains are remembered at most; when full, the cache starts again empty (a client
/// can only add a chain by presenting one that passes).
pub const CAPACITY: usize = 4096;
/// How many bytes of chains are remembered at most (the same: full means empty again), so that
/// clients padding their chains with extra certificates cannot grow the memory past it.
pub const MAX_REMEMBERED_BYTES: usize = 8 << 20;
/// A presented chain larger than this is always checked in full (a client chain with its
/// intermediates is 1 to 4 KiB).
pub const MAX_CHAIN_BYTES: usize = 16 * 1024;

/// Client certificate chains checked, by `outcome` ([`Outcome::label`]).
pub const CLIENT_CHAIN_CHECKS: &str = "oneway_tls_client_chain_checks_total";

/// How a verification was answered, for [`CLIENT_CHAIN_CHECKS`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// From the cache.
    Remembered,
    /// Checked in full and passed.
    Verified,
    /// Checked in full and refused.
    Refused,
}

impl Outcome {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Remembered => "remembered",
            Outcome::Verified => "verified",
            Outcome::Refused => "refused",
        }
    }
}

struct Entry {
    /// The presented chain, each certificate after its length.
    chain: Box<[u8]>,
    /// The seconds (Unix) in which the same check is certain to pass: `from..until`.
    from: u64,
    until: u64,
}

/// A [`ClientCertVerifier`] that answers a chain it saw pass from memory, within the window in
/// which the full check is certain to pass again (see the module's documentation).
pub struct ChainCache {
    inner: Arc<dyn ClientCertVerifier>,
    /// The earliest `nextUpdate` of the configured CRLs (Unix seconds), if any has one.
    crls_until: Option<u64>,
    hasher: RandomState,
    capacity: usize,
    max_bytes: usize,
    entries: Mutex<Entries>,
}

#[derive(Default)]
struct Entries {
    by_hash: HashMap<u64, Entry>,
    /// The bytes of every remembered chain.
    bytes: usize,
}

impl std::fmt::Debug for ChainCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChainCache")
            .field("crls_until", &self.crls_until)
            .finish_non_exhaustive()
    }
}

impl ChainCache {
    /// Wraps `inner`, whose CRLs' earliest `nextUpdate` is `crls_until` (see [`crls_until`]).
    pub fn new(inner: Arc<dyn ClientCertVerifier>, crls_until: Option<u64>) -> ChainCache {
        ChainCache {
            inner,
            crls_until,
            hasher: RandomState::new(),
            capacity: CAPACITY,
            max_bytes: MAX_REMEMBERED_BYTES,
            entries: Mutex::new(Entries::default()),
        }
    }

    /// At most `capacity` chains and `max_bytes` of them remembered instead of [`CAPACITY`] and
    /// [`MAX_REMEMBERED_BYTES`].
    pub fn with_capacity(mut self, capacity: usize, max_bytes: usize) -> ChainCache {
        self.capacity = capacity;
        self.max_bytes = max_bytes;
        self
    }

    /// How many chains are remembered now.
    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.by_hash.len())
    }

    /// How many bytes of chains are remembered now.
    pub fn remembered_bytes(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.bytes)
    }

    /// Whether no chain is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks a chain, from memory when it can; says how.
    pub fn check(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> (Result<ClientCertVerified, rustls::Error>, Outcome) {
        let chain = encode(end_entity, intermediates);
        let secs = now.as_secs();
        let key = chain.as_ref().map(|c| self.hasher.hash_one(c));
        if let (Some(chain), Some(key)) = (&chain, key)
            && let Ok(entries) = self.entries.lock()
            && let Some(e) = entries.by_hash.get(&key)
            && *e.chain == chain[..]
            && e.from <= secs
            && secs < e.until
        {
            return (Ok(ClientCertVerified::assertion()), Outcome::Remembered);
        }
        let verdict = self
            .inner
            .verify_client_cert(end_entity, intermediates, now);
        if verdict.is_err() {
            return (verdict, Outcome::Refused);
        }
        if let (Some(chain), Some(key), Some((from, until))) =
            (chain, key, validity(end_entity, intermediates))
        {
            let mut until = until.min(secs.saturating_add(TTL_SECS));
            if let Some(crls) = self.crls_until {
                until = until.min(crls);
            }
            if from <= secs
                && secs < until
                && let Ok(mut entries) = self.entries.lock()
            {
                let entries = &mut *entries;
                if let Some(old) = entries.by_hash.remove(&key) {
                    entries.bytes -= old.chain.len();
                }
                if entries.by_hash.len() >= self.capacity
                    || entries.bytes + chain.len() > self.max_bytes
                {
                    entries.by_hash.clear();
                    entries.bytes = 0;
                }
                entries.bytes += chain.len();
                entries.by_hash.insert(
                    key,
                    Entry {
                        chain: chain.into_boxed_slice(),
                        from,
                        until,
                    },
                );
            }
        }
        (verdict, Outcome::Verified)
    }
}

/// The chain as one byte string, each certificate after its length; `None` when too large to
/// remember.
fn encode(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<Vec<u8>> {
    let certs = std::iter::once(end_entity).chain(intermediates);
    let total: usize = certs.clone().map(|c| 8 + c.len()).sum();
    if total > MAX_CHAIN_BYTES {
        return None;
    }
    let mut out = Vec::with_capacity(total);
    for c in certs {
        out.extend_from_slice(&(c.len() as u64).to_le_bytes());
        out.extend_from_slice(c);
    }
    Some(out)
}

/// The latest `notBefore` and the earliest `notAfter` (Unix seconds) of every certificate, or
/// `None` if one does not parse or lies before 1970.
fn validity(
    end_entity: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
) -> Option<(u64, u64)> {
    let (mut from, mut until) = (0u64, u64::MAX);
    for c in std::iter::once(end_entity).chain(intermediates) {
        let (_, cert) = x509_parser::parse_x509_certificate(c).ok()?;
        let v = cert.validity();
        from = from.max(u64::try_from(v.not_before.timestamp()).ok()?);
        until = until.min(u64::try_from(v.not_after.timestamp()).ok()?);
    }
    Some((from, until))
}

/// The earliest `nextUpdate` of `crls` (Unix seconds); 0 (never remember) if one does not
/// parse.
pub fn crls_until<'a>(crls: impl IntoIterator<Item = &'a [u8]>) -> Option<u64> {
    let mut until = None;
    for der in crls {
        let next = match x509_parser::parse_x509_crl(der) {
            Ok((_, crl)) => match crl.next_update() {
                Some(t) => u64::try_from(t.timestamp()).unwrap_or(0),
                None => continue,
            },
            Err(_) => 0,
        };
        until = Some(until.map_or(next, |u: u64| u.min(next)));
    }
    until
}

impl ClientCertVerifier for ChainCache {
    fn offer_client_auth(&self) -> bool {
        self.inner.offer_client_auth()
    }

    fn client_auth_mandatory(&self) -> bool {
        self.inner.client_auth_mandatory()
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        self.inner.root_hint_subjects()
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let (verdict, outcome) = self.check(end_entity, intermediates, now);
        metrics::counter!(CLIENT_CHAIN_CHECKS, "outcome" => outcome.label()).increment(1);
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }
}
