//! The gateway's shared state: the live snapshot a reload replaces ([`Live`]: config, tokens,
//! TLS material) and what every connection shares for the process's life ([`State`]: limiter,
//! budgets, caps, upstream, spool, audit, the pool of decode scratch space).
//!
//! Invariants: a request takes one [`Live`] snapshot and uses it to the end; [`State::set_live`]
//! swaps it whole, clears the scratch pool (its validators carry the old limits) and tells the
//! open connections, which check their certificates again. Nothing here awaits.

use std::sync::{Arc, Mutex};

use oneway_protocol::{Decoder, Validator};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;

use crate::audit::Audit;
use crate::auth::TokenTable;
use crate::config::Config;
use crate::edge::Counter;
use crate::limit::Limiter;
use crate::spool::Spool;
use crate::telemetry;
use crate::upstream::Upstream;

/// Scratch space for decoding and validating, reused across requests.
pub(crate) struct Scratch {
    pub(crate) decoder: Decoder,
    pub(crate) buffer: Vec<u8>,
    pub(crate) validator: Validator,
    /// The [`Live::generation`] whose validation limits `validator` has.
    pub(crate) generation: u64,
}

/// What a reload replaces: the config, the tokens and their bindings, the TLS material.
/// A request takes one snapshot and uses it to the end; a connection takes one for its
/// handshake and checks its certificate again against each new one.
pub(crate) struct Live {
    pub(crate) config: Arc<Config>,
    pub(crate) tokens: TokenTable,
    pub(crate) acceptor: TlsAcceptor,
    /// The server certificate and key the acceptor presents.
    pub(crate) identity: Arc<crate::tls::ServerIdentity>,
    /// The client CA bundle and CRLs the acceptor checks with.
    pub(crate) verifier: crate::tls::ClientVerifier,
    /// What those are (fingerprints, CRL numbers), for the reload audit event.
    pub(crate) trust: Arc<crate::tls::TrustSummary>,
    /// Set when a reload could not read what says who may push (the config file, the CA
    /// bundle or a CRL): every request is refused with a retryable 503 until a reload reads
    /// them again. Why, for the log and the response.
    pub(crate) fail_closed: Option<String>,
    pub(crate) generation: u64,
}

/// Everything a connection needs.
pub(crate) struct State {
    pub(crate) live: std::sync::RwLock<Arc<Live>>,
    pub(crate) limiter: Limiter,
    pub(crate) in_flight: Arc<Semaphore>,
    /// The memory budget, in KiB permits.
    pub(crate) memory: Arc<Semaphore>,
    pub(crate) upstream: Arc<Upstream>,
    pub(crate) spool: Option<Arc<Spool>>,
    pub(crate) pool: Mutex<Vec<Scratch>>,
    pub(crate) per_ip: Counter<std::net::IpAddr>,
    pub(crate) per_identity: Counter<Arc<str>>,
    /// In-flight requests per identity (the one its token matched).
    pub(crate) identity_in_flight: Counter<Arc<str>>,
    /// KiB of the memory budget per identity.
    pub(crate) identity_memory: Counter<Arc<str>>,
    pub(crate) audit: Arc<Audit>,
    /// The generation of the live snapshot: open connections watch it to check their
    /// certificate again after a reload.
    pub(crate) reloads: tokio::sync::watch::Sender<u64>,
}

impl State {
    /// The current config, tokens and TLS material.
    pub(crate) fn live(&self) -> Arc<Live> {
        match self.live.read() {
            Ok(l) => Arc::clone(&l),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Installs a reloaded snapshot; open connections then check their certificates
    /// against it.
    pub(crate) fn set_live(&self, live: Live) {
        let generation = live.generation;
        metrics::gauge!(telemetry::RELOAD_FAIL_CLOSED).set(if live.fail_closed.is_some() {
            1.0
        } else {
            0.0
        });
        let live = Arc::new(live);
        match self.live.write() {
            Ok(mut l) => *l = live,
            Err(poisoned) => *poisoned.into_inner() = live,
        }
        if let Ok(mut pool) = self.pool.lock() {
            pool.clear();
        }
        self.reloads.send_replace(generation);
    }
}
