//! One authenticated connection's HTTP/1.1: hyper's connection, with the head size and count
//! caps, and the deadlines oneway keeps itself (idle between requests, the request head, the
//! connection's maximum age), a graceful drain at shutdown, and a close when a reload revokes
//! the certificate.
//!
//! An idle connection is **parked**: once no byte of a next request has come for
//! [`PARK_AFTER`], hyper's connection is ended without closing the stream (its read and write
//! buffers, 16 KiB, and its request slot go), and only the TLS session waits for the next byte,
//! which starts a new hyper connection on the same stream. DataKit pushes every few seconds over
//! connections it keeps for minutes, so most of a fleet's connections are idle at any moment;
//! parked, each costs about 17 KiB instead of 29 (docs/performance.md). What hyper had read
//! past the last request when it stopped (a pipelined request) is handed to the next hyper
//! connection at once, and what it wrote is flushed before the connection waits; a connection
//! that hyper ends itself (the peer closed, or hyper answered an error) closes with the
//! lingering close, bounded by the drain's deadline when one runs.
//!
//! Cancel safety: dropping [`serve`] drops the hyper connection and its socket; the request in
//! progress is lost, and it was never acknowledged.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_rustls::server::TlsStream;
use tracing::{debug, info};

use crate::conn::Conn;
use crate::edge::{Expiry, LINGER_MAX, Phase, Tracked};
use crate::state::{Live, State};
use crate::telemetry;

/// How long a connection stays idle before it is parked. Long enough that a connection
/// pushing flat out never is (a new hyper connection per request would cost CPU), short
/// enough that a fleet's idle connections mostly are.
pub(crate) const PARK_AFTER: Duration = Duration::from_millis(100);

/// Why the connection's next deadline is due.
#[derive(Clone, Copy)]
enum Due {
    /// A graceful close ran out of time.
    DrainOver,
    /// The connection reached its maximum age.
    MaxAge,
    /// The phase's own deadline: idle, or the head.
    Phase(Expiry),
    /// Idle for [`PARK_AFTER`]: park it.
    Park,
}

/// What a request's handling is, boxed: hyper keeps a slot for it for the connection's
/// life, and the slot is the size of the future (kilobytes) unless it is a pointer.
type Handling =
    Pin<Box<dyn Future<Output = Result<http::Response<Full<Bytes>>, Infallible>> + Send>>;

/// The connection's stream, as hyper and the parked wait see it.
type Stream = Tracked<TlsStream<TcpStream>>;

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
        service_fn(move |req: http::Request<Incoming>| -> Handling {
            let (state, peer, phase) = (Arc::clone(&state), Arc::clone(&peer), Arc::clone(&phase));
            Box::pin(async move {
                let framing = phase.busy();
                let response = super::service::handle(&state, &peer, req, framing).await;
                phase.idle();
                Ok::<_, Infallible>(response)
            })
        })
    };
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        // A backstop only: the phase deadlines below are the real ones.
        .header_read_timeout(listener.keepalive_timeout + listener.header_timeout)
        .max_headers(listener.max_headers)
        .max_header_size(listener.max_header_bytes)
        .max_buf_size((64 << 10).max(listener.max_header_bytes + (8 << 10)));
    let age_limit = Instant::now() + listener.max_connection_age;
    // Once a graceful close has begun: when to give up on it.
    let mut draining: Option<Instant> = None;
    let drain = |draining: &mut Option<Instant>| {
        *draining = Some(Instant::now() + listener.shutdown_grace);
    };
    let mut stream = Tracked::new(tls, Arc::clone(&phase), listener.max_header_bytes);
    // One timer for the connection, moved when the deadline does (a request moves it a few
    // times), rather than one made and dropped at every turn of the loop.
    let timer = tokio::time::sleep_until(tokio::time::Instant::now());
    tokio::pin!(timer);
    let mut armed: Option<Instant> = None;
    loop {
        // hyper's connection lives on the heap, so that parking gives all of it back.
        let mut conn = Box::new(http.serve_connection(TokioIo::new(stream), service.clone()));
        let mut parking = false;
        // Parking counts from the later of the phase's idle start and this connection's start,
        // so that a connection just woken reads its next request before it could park again.
        let started = Instant::now();
        let ended = loop {
            let (deadline, due) = match draining {
                Some(hard) => (hard, Due::DrainOver),
                None => {
                    let mut next =
                        match phase.deadline(listener.keepalive_timeout, listener.header_timeout) {
                            Some((at, expiry)) if at < age_limit => (at, Due::Phase(expiry)),
                            _ => (age_limit, Due::MaxAge),
                        };
                    if let Some(since) = phase.idle_since().filter(|_| !parking)
                        && since.max(started) + PARK_AFTER < next.0
                    {
                        next = (since.max(started) + PARK_AFTER, Due::Park);
                    }
                    next
                }
            };
            if armed != Some(deadline) {
                timer.as_mut().reset(deadline.into());
                armed = Some(deadline);
            }
            tokio::select! {
                // The connection first: what it can do now is never pre-empted by a timer.
                biased;
                result = std::future::poll_fn(|cx| conn.poll_without_shutdown(cx)) => break result,
                _ = closing.changed(), if draining.is_none() => {
                    Pin::new(&mut *conn).graceful_shutdown();
                    drain(&mut draining);
                }
                _ = reloads.changed(), if draining.is_none() => {
                    if revoked_by_reload(state, &peer, client) {
                        Pin::new(&mut *conn).graceful_shutdown();
                        drain(&mut draining);
                    }
                }
                () = phase.changed() => {}
                () = &mut timer => {
                    // A timer that fired is set again at the next turn, whatever its deadline.
                    armed = None;
                    match due {
                        // The graceful close ran out of time: drop the connection.
                        Due::DrainOver => {
                            metrics::counter!(
                                telemetry::CONNECTIONS_CLOSED, "reason" => "drain_timeout"
                            )
                            .increment(1);
                            return;
                        }
                        Due::MaxAge => {
                            // Maximum age: finish the request in progress, then close. This
                            // bounds how long a certificate revoked since the handshake keeps
                            // a connection.
                            metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "max_age")
                                .increment(1);
                            Pin::new(&mut *conn).graceful_shutdown();
                            drain(&mut draining);
                        }
                        Due::Phase(expiry) => {
                            if still_due(&phase, listener, expiry) {
                                closed_at_deadline(client, expiry);
                                return;
                            }
                        }
                        Due::Park => {
                            // Still idle (no byte of a next request): hyper closes its side at
                            // once, and hands the stream back.
                            if phase
                                .idle_since()
                                .is_some_and(|s| s.max(started) + PARK_AFTER <= Instant::now())
                            {
                                parking = true;
                                Pin::new(&mut *conn).graceful_shutdown();
                            }
                        }
                    }
                }
            }
        };
        let hyper::server::conn::http1::Parts { io, read_buf, .. } = conn.into_parts();
        stream = io.into_inner();
        // Closing (the peer closed, hyper answered an error itself, or a drain): close_notify,
        // FIN and the lingering close, so that a client still sending reads its answer rather
        // than a reset; bounded by the drain's deadline when there is one.
        let close_by = draining
            .unwrap_or_else(|| Instant::now() + LINGER_MAX + Duration::from_secs(1))
            .min(Instant::now() + LINGER_MAX + Duration::from_secs(1));
        if let Err(e) = ended {
            debug!(%client, error = %e, "connection ended with an error");
            let _ = tokio::time::timeout_at(close_by.into(), stream.shutdown()).await;
            return;
        }
        if !parking || draining.is_some() {
            let _ = tokio::time::timeout_at(close_by.into(), stream.shutdown()).await;
            return;
        }
        // hyper had read more when it was asked to stop. Line ends between requests (which a
        // server ignores, RFC 9112 §2.2) are dropped and the connection parks; anything else
        // (a pipelined request) goes to the next hyper connection first, not parked.
        if read_buf.iter().any(|b| !matches!(b, b'\r' | b'\n')) {
            stream.rewind(read_buf);
            continue;
        }
        // An empty read buffer may still own hyper's allocation.
        drop(read_buf);
        // What hyper wrote must be out before the connection waits for the peer, which may be
        // waiting for it: flushed within the idle deadline, or the connection closes.
        let flush_by = phase
            .deadline(listener.keepalive_timeout, listener.header_timeout)
            .map_or(age_limit, |(at, _)| at.min(age_limit));
        if !matches!(
            tokio::time::timeout_at(flush_by.into(), stream.flush()).await,
            Ok(Ok(()))
        ) {
            closed_at_deadline(client, Expiry::Idle);
            return;
        }
        // Parked: only the TLS session and this task remain, until the next byte.
        let _parked = telemetry::Parked::new();
        loop {
            let deadline = match phase.deadline(listener.keepalive_timeout, listener.header_timeout)
            {
                Some((at, expiry)) if at < age_limit => (at, Some(expiry)),
                _ => (age_limit, None),
            };
            tokio::select! {
                ready = readable(&mut stream) => match ready {
                    Ok(()) => break,
                    Err(e) => {
                        debug!(%client, error = %e, "parked connection failed");
                        return;
                    }
                },
                _ = closing.changed() => {
                    let _ = tokio::time::timeout(LINGER_MAX, stream.shutdown()).await;
                    return;
                }
                _ = reloads.changed() => {
                    if revoked_by_reload(state, &peer, client) {
                        let _ = tokio::time::timeout(LINGER_MAX, stream.shutdown()).await;
                        return;
                    }
                }
                () = tokio::time::sleep_until(deadline.0.into()) => match deadline.1 {
                    Some(expiry) => {
                        if still_due(&phase, listener, expiry) {
                            closed_at_deadline(client, expiry);
                            return;
                        }
                    }
                    None => {
                        metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "max_age")
                            .increment(1);
                        let _ = tokio::time::timeout(LINGER_MAX, stream.shutdown()).await;
                        return;
                    }
                },
            }
        }
    }
}

/// Whether the phase's deadline `expiry` has really passed (the phase may have moved since the
/// timer was set).
fn still_due(phase: &Phase, listener: &crate::config::ListenerConfig, expiry: Expiry) -> bool {
    phase
        .deadline(listener.keepalive_timeout, listener.header_timeout)
        .is_some_and(|(at, e)| e == expiry && at <= Instant::now())
}

/// Counts and logs a connection closed at its idle or head deadline.
fn closed_at_deadline(client: SocketAddr, expiry: Expiry) {
    let reason = match expiry {
        Expiry::Idle => "idle",
        Expiry::Head => "head_timeout",
    };
    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => reason).increment(1);
    debug!(%client, reason, "connection closed at its deadline");
}

/// Completes when a parked stream has something to read: plaintext rustls already holds, or
/// bytes (or the peer's close) on the socket.
async fn readable(stream: &mut Stream) -> std::io::Result<()> {
    let (_, session) = stream.get_mut().get_mut();
    let pending = session
        .process_new_packets()
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
    if pending.plaintext_bytes_to_read() > 0 || pending.peer_has_closed() {
        return Ok(());
    }
    stream.get_ref().get_ref().0.readable().await
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
