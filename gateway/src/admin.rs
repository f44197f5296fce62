//! The admin listener (internal address only): `/metrics` (Prometheus), `/live`, and `/ready`
//! (accepting writes now: not draining, the spool has room or an upstream is healthy, and the
//! gateway knows who may push).
//!
//! Cancel safety: the task is aborted at shutdown; each admin connection is its own task, and
//! nothing it serves changes state.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;

use crate::state::State;
use crate::telemetry;

/// Whether a write would be accepted now: with a spool, while it has room and has not
/// failed (an upstream outage alone keeps the gateway ready: it spools); without one, while
/// an upstream is healthy.
fn can_accept(state: &State) -> bool {
    match &state.spool {
        Some(spool) => !spool.has_failed() && !spool.is_full(),
        None => state.upstream.healthy(),
    }
}

/// Serves the admin listener until the task is aborted; `ready` turns false at shutdown.
pub(crate) async fn serve(listener: TcpListener, state: Arc<State>, ready: Arc<AtomicBool>) {
    let handle = telemetry::handle();
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            continue;
        };
        let handle = handle.clone();
        let state = Arc::clone(&state);
        let ready = Arc::clone(&ready);
        tokio::spawn(async move {
            let service = service_fn(move |req: Request<Incoming>| {
                let (status, body) = match req.uri().path() {
                    "/metrics" => (StatusCode::OK, telemetry::render(&handle)),
                    "/live" => (StatusCode::OK, "live\n".to_string()),
                    "/ready"
                        if ready.load(Ordering::Relaxed)
                            && can_accept(&state)
                            && state.live().fail_closed.is_none() =>
                    {
                        (StatusCode::OK, "ready\n".to_string())
                    }
                    "/ready" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".to_string()),
                    _ => (StatusCode::NOT_FOUND, "not found\n".to_string()),
                };
                let mut resp = Response::new(Full::new(Bytes::from(body)));
                *resp.status_mut() = status;
                async move { Ok::<_, Infallible>(resp) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
