//! Remembered client chains (`tls::ChainCache`): only a chain that passed, only its exact
//! bytes, only inside the window in which the full check is certain to pass again (5 minutes,
//! every presented certificate's validity, the CRLs' first `nextUpdate`), and a bounded number.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use oneway_gateway::tls::{
    ChainCache, MAX_CHAIN_BYTES, MAX_REMEMBERED_BYTES, Outcome, TTL_SECS, crls_until, provider,
};
use oneway_gateway::tools::certs::{ClientSpec, PkiSpec, generate};
use rustls::server::WebPkiClientVerifier;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, CertificateRevocationListDer, UnixTime};

/// A cache over a verifier of the dev PKI. Whether a check ran in full is its [`Outcome`]:
/// `remembered` never reaches the verifier, `verified` and `refused` always do.
struct Fixture {
    cache: ChainCache,
    /// The CRL's own bound.
    crl_bound: Option<u64>,
    /// Client certificates by name: a, b, c (good), revoked, expired.
    certs: HashMap<String, CertificateDer<'static>>,
}

/// A dev PKI, a verifier with its CRL, and a cache of at most 2 chains over it whose CRL
/// bound is `bound(the CRL's own)`.
fn fixture(bound: impl FnOnce(Option<u64>) -> Option<u64>) -> Fixture {
    fixture_with(bound, MAX_REMEMBERED_BYTES)
}

/// [`fixture`] remembering at most `budget` bytes of chains.
fn fixture_with(bound: impl FnOnce(Option<u64>) -> Option<u64>, budget: usize) -> Fixture {
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
    let crl_bound = crls_until([crl.as_ref()]);
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca).expect("a root");
    let inner = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .with_crls(vec![crl])
        .enforce_revocation_expiration()
        .build()
        .expect("a verifier");
    let cache = ChainCache::new(inner, bound(crl_bound)).with_capacity(2, budget);
    let certs = pki
        .clients
        .iter()
        .map(|(name, pem, _)| {
            let der = CertificateDer::from_pem_slice(pem.as_bytes()).expect("a certificate");
            (name.clone(), der)
        })
        .collect();
    Fixture {
        cache,
        crl_bound,
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
    fn check_chain(&self, name: &str, intermediates: &[CertificateDer<'_>], secs: u64) -> Outcome {
        let (verdict, outcome) = self.cache.check(&self.certs[name], intermediates, at(secs));
        assert_eq!(
            verdict.is_ok(),
            outcome != Outcome::Refused,
            "{name}: {verdict:?}"
        );
        outcome
    }
    fn check(&self, name: &str, secs: u64) -> Outcome {
        self.check_chain(name, &[], secs)
    }
    fn not_after(&self, name: &str) -> u64 {
        let (_, cert) = x509_parser::parse_x509_certificate(&self.certs[name]).expect("parses");
        u64::try_from(cert.validity().not_after.timestamp()).expect("after 1970")
    }
}

#[test]
fn a_chain_that_passed_is_remembered_and_only_it() {
    let f = fixture(|crl| crl);
    let t = now();
    assert_eq!(f.check("a", t), Outcome::Verified);
    assert_eq!(f.check("a", t + 1), Outcome::Remembered);
    // Another client, and the same client with one byte changed, are checked in full.
    assert_eq!(f.check("b", t), Outcome::Verified);
    let mut bent = f.certs["a"].to_vec();
    let last = bent.len() - 1;
    bent[last] ^= 1;
    let (verdict, outcome) = f.cache.check(&CertificateDer::from(bent), &[], at(t));
    assert!(verdict.is_err());
    assert_eq!(outcome, Outcome::Refused);
    // The same end entity with an intermediate added is another chain.
    assert_eq!(
        f.check_chain("a", &[f.certs["b"].clone()], t),
        Outcome::Verified
    );
    assert_eq!(
        f.check_chain("a", &[f.certs["b"].clone()], t + 1),
        Outcome::Remembered
    );
}

#[test]
fn refusals_are_never_remembered() {
    let f = fixture(|crl| crl);
    let t = now();
    for name in ["revoked", "expired", "revoked", "expired"] {
        assert_eq!(f.check(name, t), Outcome::Refused);
    }
    assert!(f.cache.is_empty());
}

#[test]
fn a_pass_is_remembered_for_five_minutes_at_most_and_not_before_it() {
    let f = fixture(|crl| crl);
    let t = now();
    assert_eq!(f.check("a", t), Outcome::Verified);
    assert_eq!(f.check("a", t + TTL_SECS - 1), Outcome::Remembered);
    assert_eq!(f.check("a", t + TTL_SECS), Outcome::Verified);
    // A clock stepped back before the certificate's notBefore (an hour ago): checked in full.
    assert_eq!(f.check("b", t), Outcome::Verified);
    assert_eq!(f.check("b", t - 2 * 3600), Outcome::Refused);
}

#[test]
fn the_window_ends_at_the_crls_next_update() {
    let t = now();
    let f = fixture(|_| Some(t + 10));
    assert_eq!(f.check("a", t), Outcome::Verified);
    assert_eq!(f.check("a", t + 9), Outcome::Remembered);
    assert_eq!(f.check("a", t + 10), Outcome::Verified);
    // The dev CA's CRL names its next update (in 10 days): that is the bound taken.
    let bound = f.crl_bound.expect("a nextUpdate");
    assert!(
        bound > t + 9 * 86_400 && bound <= t + 11 * 86_400,
        "{bound}"
    );
    // A CRL that does not parse here never lets a pass be remembered.
    assert_eq!(crls_until([&b"not a CRL"[..]]), Some(0));
    let f = fixture(|_| crls_until([&b"not a CRL"[..]]));
    assert_eq!(f.check("a", t), Outcome::Verified);
    assert_eq!(f.check("a", t), Outcome::Verified);
    assert!(f.cache.is_empty());
}

#[test]
fn the_window_ends_at_the_certificates_not_after() {
    // No CRL bound: only the certificate's validity and the 5 minutes are left.
    let f = fixture(|_| None);
    let end = f.not_after("a");
    let t = end - 10;
    assert_eq!(f.check("a", t), Outcome::Verified);
    assert_eq!(f.check("a", t + 5), Outcome::Remembered);
    assert_ne!(f.check("a", end), Outcome::Remembered);
    assert_ne!(f.check("a", end + 1), Outcome::Remembered);
}

#[test]
fn the_cache_is_bounded_in_chains_and_bytes() {
    let f = fixture(|crl| crl);
    let t = now();
    for name in ["a", "b", "c", "a", "b", "c"] {
        f.check(name, t);
        assert!(f.cache.len() <= 2);
    }
    // The bytes remembered are bounded too: with room for one chain and a half, the second
    // chain starts the memory again.
    let one = f.certs["a"].len();
    let f = fixture_with(|crl| crl, one * 3 / 2 + 16);
    assert_eq!(f.check("a", t), Outcome::Verified);
    assert_eq!(f.check("a", t), Outcome::Remembered);
    assert_eq!(f.check("b", t), Outcome::Verified);
    assert_eq!(f.cache.len(), 1);
    assert!(f.cache.remembered_bytes() <= one * 3 / 2 + 16);
    assert_eq!(f.check("a", t), Outcome::Verified);
    // Remembering the same chain again replaces it, and counts it once.
    let f = fixture(|crl| crl);
    f.check("a", t);
    let bytes = f.cache.remembered_bytes();
    assert_eq!(f.check("a", t + TTL_SECS), Outcome::Verified);
    assert_eq!(f.cache.remembered_bytes(), bytes);
    // A chain larger than MAX_CHAIN_BYTES passes, and is checked in full every time.
    let b = &f.certs["b"];
    let padding = vec![b.clone(); MAX_CHAIN_BYTES / b.len() + 1];
    assert_eq!(f.check_chain("a", &padding, t), Outcome::Verified);
    assert_eq!(f.check_chain("a", &padding, t), Outcome::Verified);
}
