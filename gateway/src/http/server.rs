//! One authenticated connection's HTTP/1.1: hyper's connection, with the head size and count
//! caps, and the deadlines oneway keeps itself (idle between requests, the request head, the
//! connection's maximum age), a graceful drain at shutdown, and a close when a reload revokes
//! the certificate.
//!
//! Cancel safety: dropping [`serve`] drops the hyper connection and its socket; the request in
//! progress is lost, and it was never acknowledged.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info};

use crate::conn::Conn;
use crate::edge::{Expiry, Phase, Tracked};
use crate::state::{Live, State};
use crate::telemetry;

/// Why the connection's next deadline is due.
#[derive(Clone, Copy)]
enum Due {
    /// A graceful close ran out of time.
    DrainOver,
    /// The connection reached its maximum age.
    MaxAge,
    /// The phase's own deadline: idle, or the head.
    Phase(Expiry),
}

/// Serves `peer`'s requests on `tls` until the connection ends, a deadline passes, or it has
/// drained after `closing` (shutdown), its maximum age or a revoking reload.
pub(crate) async fn serve(
    state: &Arc<State>,
    live: &Live,
    tls: TlsStream<TcpStream>,
    client: SocketAddr,
    peer: Arc<Conn>,
    mut closing: watch::Receiver<bool>,
) {
    let listener = &live.config.listener;
    // Reloads since the handshake's snapshot count too.
    let mut reloads = state.reloads.subscribe();
    if reloads.borrow_and_update().to_owned() != live.generation {
        reloads.mark_changed();
    }
    let phase = Phase::new();
    let service = {
        let (state, phase, peer) = (Arc::clone(state), Arc::clone(&phase), Arc::clone(&peer));
        service_fn(move |req| {
            let (state, peer, phase) = (Arc::clone(&state), Arc::clone(&peer), Arc::clone(&phase));
            async move {
                let framing = phase.busy();
                let response = super::service::handle(&state, &peer, req, framing).await;
                phase.idle();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let http = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        // A backstop only: the phase deadlines below are the real ones.
        .header_read_timeout(listener.keepalive_timeout + listener.header_timeout)
        .max_headers(listener.max_headers)
        .max_header_size(listener.max_header_bytes)
        .max_buf_size((64 << 10).max(listener.max_header_bytes + (8 << 10)))
        .serve_connection(
            TokioIo::new(Tracked::new(
                tls,
                Arc::clone(&phase),
                listener.max_header_bytes,
            )),
            service,
        );
    tokio::pin!(http);
    let age_limit = Instant::now() + listener.max_connection_age;
    // Once a graceful close has begun: when to give up on it.
    let mut draining: Option<Instant> = None;
    let drain = |draining: &mut Option<Instant>| {
        *draining = Some(Instant::now() + listener.shutdown_grace);
    };
    loop {
        let (deadline, due) = match draining {
            Some(hard) => (hard, Due::DrainOver),
            None => match phase.deadline(listener.keepalive_timeout, listener.header_timeout) {
                Some((at, expiry)) if at < age_limit => (at, Due::Phase(expiry)),
                _ => (age_limit, Due::MaxAge),
            },
        };
        tokio::select! {
            result = http.as_mut() => {
                if let Err(e) = result {
                    debug!(%client, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = closing.changed(), if draining.is_none() => {
                http.as_mut().graceful_shutdown();
                drain(&mut draining);
            }
            _ = reloads.changed(), if draining.is_none() => {
                if revoked_by_reload(state, &peer, client) {
                    http.as_mut().graceful_shutdown();
                    drain(&mut draining);
                }
            }
            () = phase.changed() => {}
            () = tokio::time::sleep_until(deadline.into()) => match due {
                // The graceful close ran out of time: drop the connection.
                Due::DrainOver => {
                    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "drain_timeout")
                        .increment(1);
                    break;
                }
                Due::MaxAge => {
                    // Maximum age: finish the request in progress, then close. This bounds how
                    // long a certificate revoked since the handshake keeps a connection.
                    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "max_age")
                        .increment(1);
                    http.as_mut().graceful_shutdown();
                    drain(&mut draining);
                }
                Due::Phase(expiry) => {
                    let still = phase
                        .deadline(listener.keepalive_timeout, listener.header_timeout)
                        .is_some_and(|(at, e)| e == expiry && at <= Instant::now());
                    if still {
                        let reason = match expiry {
                            Expiry::Idle => "idle",
                            Expiry::Head => "head_timeout",
                        };
                        metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => reason)
                            .increment(1);
                        debug!(%client, reason, "connection closed at its deadline");
                        break;
                    }
                }
            }
        }
    }
}

/// After a reload: is `peer`'s certificate still good under the new CA bundle and CRLs? If
/// not, it is marked revoked (the request in progress, authorized before, finishes; nothing
/// more is served), counted and audited, and the connection must close.
fn revoked_by_reload(state: &State, peer: &Conn, client: SocketAddr) -> bool {
    let next = state.live();
    if crate::tls::still_valid(&next.verifier, &peer.chain) {
        return false;
    }
    peer.revoke();
    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "revoked").increment(1);
    let name = peer.peer.name();
    info!(%client, identity = %name, "certificate no longer valid after a reload: closing its connection");
    state.audit.count(
        "auth_failure",
        &[("kind", "revoked_while_connected"), ("identity", &name)],
    );
    true
}
