//! One client connection as the request path sees it: the certificate's identities, the chain
//! checked again at every reload, whether a reload revoked it, and the places it holds under
//! the per-identity connection cap (released when the connection ends).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use crate::auth::PeerIdentity;
use crate::edge::Counted;
use crate::response::{RequestError, overloaded};
use crate::state::State;
use crate::telemetry;

/// One client connection: its certificate, and the identities tokens matched on it, each
/// holding a place of the per-identity cap for as long as the connection lives.
pub(crate) struct Conn {
    pub(crate) peer: PeerIdentity,
    /// The chain the client presented, checked again after each reload.
    pub(crate) chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Set once a reload revoked the certificate: the connection is closing, and any
    /// request still read on it is refused.
    revoked: AtomicBool,
    held: Mutex<Vec<Counted<Arc<str>>>>,
}

impl Conn {
    pub(crate) fn new(
        peer: PeerIdentity,
        chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    ) -> Conn {
        Conn {
            peer,
            chain,
            revoked: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Counts this connection for `identity` (the one a token matched) unless that identity
    /// already has `cap` connections.
    pub(crate) fn hold(
        &self,
        state: &State,
        identity: &Arc<str>,
        cap: usize,
    ) -> Result<(), RequestError> {
        let Ok(mut held) = self.held.lock() else {
            return Err(RequestError::Internal);
        };
        if held.iter().any(|place| place.key() == identity) {
            return Ok(());
        }
        let Some(place) = state.per_identity.try_acquire(Arc::clone(identity), cap) else {
            metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => "per_identity")
                .increment(1);
            return Err(overloaded("per_identity"));
        };
        held.push(place);
        Ok(())
    }

    /// A reload revoked the certificate: nothing more is served on this connection.
    pub(crate) fn revoke(&self) {
        self.revoked.store(true, Ordering::Relaxed);
    }

    /// Whether a reload revoked the certificate.
    pub(crate) fn is_revoked(&self) -> bool {
        self.revoked.load(Ordering::Relaxed)
    }
}
