//! The public listener, up to an authenticated connection: accept (under the connection cap),
//! the PROXY header (only from the load balancers), the per-address cap, the TLS handshake
//! under its deadline with a client certificate required, and the certificate's identity.
//! Each connection then runs as its own task in [`http::server`](crate::http::server).
//!
//! Cancel safety: [`accept_loop`] may be dropped at any await (it only accepts); a connection
//! task owns everything it uses, and dropping it (shutdown past the grace period) closes the
//! socket and loses only that connection's in-flight request, which was never acknowledged.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tracing::{debug, warn};

use crate::auth::{AuthError, PeerIdentity};
use crate::conn::Conn;
use crate::edge::{client_address, ip_key, read_proxy_header};
use crate::state::State;
use crate::telemetry;

/// Accepts connections on `public` for as long as it is polled, each holding one of `slots`
/// (`listener.max_connections`) until it ends; `closing` tells them to drain.
pub(crate) async fn accept_loop(
    public: &TcpListener,
    state: &Arc<State>,
    slots: &Arc<Semaphore>,
    closing: &watch::Receiver<bool>,
) {
    loop {
        let (stream, peer) = match public.accept().await {
            Ok(a) => a,
            Err(e) => {
                warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = Arc::clone(slots).try_acquire_owned() else {
            metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => "max_connections")
                .increment(1);
            drop(stream);
            continue;
        };
        let state = Arc::clone(state);
        let closing = closing.clone();
        tokio::spawn(async move {
            let _permit = permit;
            connection(state, stream, peer, closing).await;
        });
    }
}

/// One connection: PROXY header, per-address cap, TLS, identity; then HTTP.
async fn connection(
    state: Arc<State>,
    mut stream: TcpStream,
    peer: SocketAddr,
    closing: watch::Receiver<bool>,
) {
    // The TLS material and deadlines of this moment: a reload applies to new connections.
    let live = state.live();
    let listener = &live.config.listener;
    let acceptor = live.acceptor.clone();
    // PROXY header first (only from the load balancers), so that the per-IP cap and the logs
    // see the client's address; then the per-IP cap, before any TLS work.
    let mut proxy = None;
    if let Some(pp) = &listener.proxy_protocol {
        if !pp.trusted.iter().any(|c| c.contains(peer.ip())) {
            metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => "proxy_untrusted")
                .increment(1);
            debug!(%peer, "connection refused: not from a trusted load balancer");
            return;
        }
        match read_proxy_header(&mut stream, pp.header_timeout).await {
            Ok(header) => proxy = Some(header),
            Err(e) => {
                metrics::counter!(telemetry::PROXY_FAILURES, "kind" => e.kind()).increment(1);
                debug!(%peer, kind = e.kind(), "PROXY header refused");
                return;
            }
        }
    }
    let client = client_address(peer, proxy.as_ref());
    let endpoint = proxy.as_ref().and_then(|h| h.endpoint_id.clone());
    let Some(_per_ip) = state.per_ip.try_acquire(
        ip_key(client, listener.ipv6_prefix_len),
        listener.max_connections_per_ip,
    ) else {
        metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => "per_ip").increment(1);
        debug!(%client, "connection refused: per-address cap");
        return;
    };
    let tls = match tokio::time::timeout(listener.handshake_timeout, acceptor.accept(stream)).await
    {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            let kind = tls_failure_kind(&e);
            metrics::counter!(telemetry::TLS_FAILURES, "kind" => kind).increment(1);
            debug!(%client, kind, "TLS handshake failed");
            if kind != "other" {
                let ip = client.ip().to_canonical().to_string();
                state
                    .audit
                    .count("auth_failure", &[("kind", kind), ("client", &ip)]);
            }
            return;
        }
        Err(_) => {
            metrics::counter!(telemetry::TLS_FAILURES, "kind" => "timeout").increment(1);
            return;
        }
    };
    let chain: Vec<rustls_pki_types::CertificateDer<'static>> = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_default();
    let identity = match chain.first() {
        Some(cert) => PeerIdentity::from_der(cert.as_ref()),
        None => Err(AuthError::BadCertificate),
    };
    let Ok(mut identity) = identity else {
        metrics::counter!(telemetry::TLS_FAILURES, "kind" => "bad_certificate").increment(1);
        let ip = client.ip().to_canonical().to_string();
        state.audit.count(
            "auth_failure",
            &[("kind", "no_usable_identity"), ("client", &ip)],
        );
        return;
    };
    debug!(%client, identity = %identity.name(), endpoint = endpoint.as_deref().unwrap_or(""), "connection");
    identity.endpoint = endpoint;
    let conn = Arc::new(Conn::new(identity, chain));
    crate::http::server::serve(&state, &live, tls, client, conn, closing).await;
}

fn tls_failure_kind(e: &std::io::Error) -> &'static str {
    let text = e.to_string();
    if text.contains("NoCertificatesPresented") || text.contains("peer sent no certificates") {
        "no_certificate"
    } else if text.contains("certificate") || text.contains("Certificate") {
        "bad_certificate"
    } else {
        "other"
    }
}
