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
pub(crate) const TTL_SECS: u64 = 300;
/// How many chains are remembered at most; when full, the cache starts again empty (a client
/// can only add a chain by presenting one that passes).
pub(crate) const CAPACITY: usize = 4096;
/// A presented chain larger than this is always checked in full.
const MAX_CHAIN_BYTES: usize = 64 * 1024;

/// How a verification was answered, for `oneway_tls_client_chain_checks_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// From the cache.
    Remembered,
    /// Checked in full and passed.
    Verified,
    /// Checked in full and refused.
    Refused,
}

impl Outcome {
    pub(crate) fn label(self) -> &'static str {
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
pub(crate) struct ChainCache {
    inner: Arc<dyn ClientCertVerifier>,
    /// The earliest `nextUpdate` of the configured CRLs (Unix seconds), if any has one.
    crls_until: Option<u64>,
    hasher: RandomState,
    capacity: usize,
    entries: Mutex<HashMap<u64, Entry>>,
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
    pub(crate) fn new(inner: Arc<dyn ClientCertVerifier>, crls_until: Option<u64>) -> ChainCache {
        ChainCache {
            inner,
            crls_until,
            hasher: RandomState::new(),
            capacity: CAPACITY,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// How many chains are remembered now.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    /// Checks a chain, from memory when it can; says how.
    pub(crate) fn check(
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
            && let Some(e) = entries.get(&key)
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
                if entries.len() >= self.capacity {
                    entries.clear();
                }
                entries.insert(
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
pub(crate) fn crls_until<'a>(crls: impl IntoIterator<Item = &'a [u8]>) -> Option<u64> {
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
        metrics::counter!(crate::telemetry::CLIENT_CHAIN_CHECKS, "outcome" => outcome.label())
            .increment(1);
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use rustls::server::WebPkiClientVerifier;
    use rustls_pki_types::CertificateRevocationListDer;
    use rustls_pki_types::pem::PemObject;

    use super::*;
    use crate::tools::certs::{ClientSpec, PkiSpec, generate};

    /// Counts the full checks the cache lets through.
    #[derive(Debug)]
    struct Counting {
        inner: Arc<dyn ClientCertVerifier>,
        calls: AtomicUsize,
    }

    impl ClientCertVerifier for Counting {
        fn root_hint_subjects(&self) -> &[DistinguishedName] {
            self.inner.root_hint_subjects()
        }
        fn verify_client_cert(
            &self,
            end_entity: &CertificateDer<'_>,
            intermediates: &[CertificateDer<'_>],
            now: UnixTime,
        ) -> Result<ClientCertVerified, rustls::Error> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            self.inner
                .verify_client_cert(end_entity, intermediates, now)
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
    }

    struct Fixture {
        counting: Arc<Counting>,
        cache: ChainCache,
        /// Client certificates by name: a, b, c (good), revoked, expired.
        certs: HashMap<String, CertificateDer<'static>>,
    }

    fn fixture(crls_until: impl FnOnce(&[u8]) -> Option<u64>) -> Fixture {
        let client = |name: &str, revoked: bool, expired: bool| ClientSpec {
            name: name.into(),
            dns: vec![name.into()],
            revoked,
            expired,
            ..ClientSpec::default()
        };
        let pki = generate(&PkiSpec {
            server_names: vec!["localhost".into()],
            clients: vec![
                client("a", false, false),
                client("b", false, false),
                client("c", false, false),
                client("revoked", true, false),
                client("expired", false, true),
            ],
            valid_days: 10,
        })
        .expect("a PKI");
        let ca = CertificateDer::from_pem_slice(pki.ca_pem.as_bytes()).expect("the CA");
        let crl =
            CertificateRevocationListDer::from_pem_slice(pki.crl_pem.as_bytes()).expect("the CRL");
        let until = crls_until(crl.as_ref());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(ca).expect("a root");
        let inner =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), super::super::provider())
                .with_crls(vec![crl])
                .enforce_revocation_expiration()
                .build()
                .expect("a verifier");
        let counting = Arc::new(Counting {
            inner,
            calls: AtomicUsize::new(0),
        });
        let mut cache = ChainCache::new(counting.clone(), until);
        cache.capacity = 2;
        let certs = pki
            .clients
            .iter()
            .map(|(name, pem, _)| {
                let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("a certificate");
                (name.clone(), der)
            })
            .collect();
        Fixture {
            counting,
            cache,
            certs,
        }
    }

    fn at(secs: u64) -> UnixTime {
        UnixTime::since_unix_epoch(Duration::from_secs(secs))
    }

    fn now() -> u64 {
        UnixTime::now().as_secs()
    }

    impl Fixture {
        fn check(&self, name: &str, secs: u64) -> Outcome {
            let (verdict, outcome) = self.cache.check(&self.certs[name], &[], at(secs));
            assert_eq!(
                verdict.is_ok(),
                outcome != Outcome::Refused,
                "{name}: {verdict:?}"
            );
            outcome
        }
        fn calls(&self) -> usize {
            self.counting.calls.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn a_chain_that_passed_is_remembered_and_only_it() {
        let f = fixture(|crl| crls_until([crl]));
        let t = now();
        assert_eq!(f.check("a", t), Outcome::Verified);
        assert_eq!(f.check("a", t + 1), Outcome::Remembered);
        assert_eq!(f.calls(), 1);
        // Another client, and the same client with one byte changed, are checked in full.
        assert_eq!(f.check("b", t), Outcome::Verified);
        let mut bent = f.certs["a"].to_vec();
        let last = bent.len() - 1;
        bent[last] ^= 1;
        let (verdict, outcome) = f.cache.check(&CertificateDer::from(bent), &[], at(t));
        assert!(verdict.is_err());
        assert_eq!(outcome, Outcome::Refused);
        // The same end entity with an intermediate added is another chain.
        let (_, outcome) = f.cache.check(&f.certs["a"], &[f.certs["b"].clone()], at(t));
        assert_eq!(outcome, Outcome::Verified);
        assert_eq!(f.calls(), 4);
    }

    #[test]
    fn refusals_are_never_remembered() {
        let f = fixture(|crl| crls_until([crl]));
        let t = now();
        for name in ["revoked", "expired", "revoked", "expired"] {
            assert_eq!(f.check(name, t), Outcome::Refused);
        }
        assert_eq!(f.calls(), 4);
        assert_eq!(f.cache.len(), 0);
    }

    #[test]
    fn a_pass_is_remembered_for_five_minutes_at_most() {
        let f = fixture(|crl| crls_until([crl]));
        let t = now();
        assert_eq!(f.check("a", t), Outcome::Verified);
        assert_eq!(f.check("a", t + TTL_SECS - 1), Outcome::Remembered);
        assert_eq!(f.check("a", t + TTL_SECS), Outcome::Verified);
        // Nor before the check (a clock stepped back).
        assert_eq!(f.check("b", t), Outcome::Verified);
        assert_eq!(f.check("b", t - 2 * 3600), Outcome::Refused);
        assert_eq!(f.calls(), 4);
    }

    #[test]
    fn the_window_ends_at_the_first_crl_next_update_and_the_certificates_validity() {
        let t = now();
        let f = fixture(|_| Some(t + 10));
        assert_eq!(f.check("a", t), Outcome::Verified);
        assert_eq!(f.check("a", t + 9), Outcome::Remembered);
        assert_eq!(f.check("a", t + 10), Outcome::Verified);
        // The dev CA's CRL says when it is next updated: the window never passes it.
        let f = fixture(|crl| crls_until([crl]));
        let next_update = f.cache.crls_until.expect("a nextUpdate");
        assert!(
            next_update > t && next_update <= t + 11 * 86_400,
            "{next_update}"
        );
        // The certificate's own validity bounds the window.
        let (from, until) = validity(&f.certs["a"], &[]).expect("a validity");
        assert!(from <= t && until > t + 9 * 86_400, "{from}..{until}");
        let (_, until_expired) = validity(&f.certs["expired"], &[]).expect("a validity");
        assert!(until_expired < t);
        // A CRL that does not parse here never lets a pass be remembered.
        assert_eq!(crls_until([&b"not a CRL"[..]]), Some(0));
        let f = fixture(|_| Some(0));
        assert_eq!(f.check("a", t), Outcome::Verified);
        assert_eq!(f.check("a", t), Outcome::Verified);
        assert_eq!(f.cache.len(), 0);
    }

    #[test]
    fn the_cache_is_bounded() {
        let f = fixture(|crl| crls_until([crl]));
        let t = now();
        for name in ["a", "b", "c", "a", "b", "c"] {
            f.check(name, t);
            assert!(f.cache.len() <= 2);
        }
        let mut huge = f.certs["a"].to_vec();
        huge.resize(MAX_CHAIN_BYTES, 0);
        assert!(encode(&CertificateDer::from(huge), &[]).is_none());
    }
}
