//! The privilege split (`oneway run --split`): two processes, so that the one that faces the
//! internet and parses everything has no network at all.
//!
//! ```text
//!   agents ──TLS──▶ [edge: empty network namespace]  ──HTTP/2 over a Unix socketpair──▶
//!                   TLS, auth, limits, decode,           [forwarder: host network]  ──▶ upstream
//!                   validate, spool                      relays to the configured
//!                                                        upstream addresses only
//! ```
//!
//! The forwarder (the process started) binds the public and admin listeners, makes a socketpair,
//! and starts the edge (the same binary, `--split-edge`) with both listeners as inherited
//! descriptors 3 and 4 (`LISTEN_FDS=2`) and its end of the socketpair as standard input. The
//! edge moves into new user and network namespaces of its own (an empty network namespace with
//! only a loopback that is down), checks that it has no interface and no route, enters the
//! sandbox, and serves exactly as `oneway run` does, with the forwarder as its upstream. Sockets
//! inherited from the host's namespace keep working there: it accepts on them, and it talks to
//! the forwarder over the socketpair; any `connect` fails (`ENETUNREACH` by routing, `EACCES`
//! by its sandbox, which allows no TCP port at all).
//!
//! The forwarder never parses a push: it reads HTTP/2 frames from the edge and relays each
//! request, byte for byte, to the configured upstream addresses, in its own sandbox (TCP
//! connect only to the upstream ports, no filesystem at all).
//!
//! Cancel safety: the forwarder's relay of one request may be dropped when the edge resets that
//! stream; the upstream request is then dropped too, and the edge sees no answer (it spools or
//! answers 503, as for any upstream failure).

use std::convert::Infallible;
use std::io;
use std::net::TcpListener;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

use bytes::Bytes;
use command_fds::{CommandFdExt, FdMapping};
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};

use crate::upstream::{FORWARDER_ERROR, Upstream};

/// The flag the forwarder starts the edge with.
pub const EDGE_FLAG: &str = "--split-edge";

/// Starts the edge: `<this binary> run --config CONFIG --split-edge ARGS…`, with `listeners`
/// (public, admin) as descriptors 3 and 4 and its end of the channel as standard input.
/// Returns it and the forwarder's end of the channel.
pub fn spawn_edge(
    config: &Path,
    args: &[String],
    listeners: (TcpListener, TcpListener),
) -> io::Result<(Child, UnixStream)> {
    let (forwarder, edge) = UnixStream::pair()?;
    let mut command = Command::new(std::env::current_exe()?);
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .arg(EDGE_FLAG)
        .args(args)
        .stdin(Stdio::from(OwnedFd::from(edge)))
        .env("LISTEN_FDS", "2")
        .env_remove("LISTEN_PID")
        .env_remove("LISTEN_FDNAMES");
    command
        .fd_mappings(vec![
            FdMapping {
                parent_fd: OwnedFd::from(listeners.0),
                child_fd: 3,
            },
            FdMapping {
                parent_fd: OwnedFd::from(listeners.1),
                child_fd: 4,
            },
        ])
        .map_err(|_| io::Error::other("descriptor mapping collision"))?;
    Ok((command.spawn()?, forwarder))
}

/// What the edge inherits: the public and admin listeners, and the channel to the forwarder.
#[derive(Debug)]
pub struct EdgeInputs {
    /// Public and admin listeners.
    pub listeners: (TcpListener, TcpListener),
    /// The edge's end of the channel.
    pub forwarder: UnixStream,
}

/// Takes what [`spawn_edge`] passed.
pub fn edge_inputs() -> io::Result<EdgeInputs> {
    let not_started = |what: &str| {
        io::Error::other(format!(
            "{what} not inherited: {EDGE_FLAG} is started by `oneway run --split`, not by hand"
        ))
    };
    let mut fds = listenfd::ListenFd::from_env();
    let public = fds
        .take_tcp_listener(0)?
        .ok_or_else(|| not_started("the public listener"))?;
    let admin = fds
        .take_tcp_listener(1)?
        .ok_or_else(|| not_started("the admin listener"))?;
    let forwarder = UnixStream::from(io::stdin().as_fd().try_clone_to_owned()?);
    forwarder
        .local_addr()
        .map_err(|_| not_started("the forwarder channel (standard input)"))?;
    Ok(EdgeInputs {
        listeners: (public, admin),
        forwarder,
    })
}

/// The forwarder: serves HTTP/2 from the edge on `channel` and relays each request to
/// `upstream` (bodies up to `max_body` bytes), until the edge closes the channel. An upstream
/// failure is answered 502 with [`FORWARDER_ERROR`] naming it, so the edge spools or
/// refuses exactly as it would talking to the upstream itself.
pub async fn forward(
    channel: UnixStream,
    upstream: Arc<Upstream>,
    max_body: usize,
    max_streams: u32,
) -> io::Result<()> {
    channel.set_nonblocking(true)?;
    let channel = tokio::net::UnixStream::from_std(channel)?;
    let service = service_fn(move |request: Request<Incoming>| {
        let upstream = Arc::clone(&upstream);
        async move { Ok::<_, Infallible>(relay(request, &upstream, max_body).await) }
    });
    hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .max_concurrent_streams(max_streams)
        .serve_connection(TokioIo::new(channel), service)
        .await
        .map_err(io::Error::other)
}

async fn relay(
    request: Request<Incoming>,
    upstream: &Upstream,
    max_body: usize,
) -> Response<Full<Bytes>> {
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, max_body).collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return answer(StatusCode::PAYLOAD_TOO_LARGE, None, Bytes::new()),
    };
    let mut forwarded = Request::new(Full::new(body));
    *forwarded.method_mut() = parts.method;
    *forwarded.uri_mut() = parts
        .uri
        .path_and_query()
        .and_then(|p| p.as_str().parse().ok())
        .unwrap_or_else(|| http::Uri::from_static("/"));
    *forwarded.headers_mut() = parts.headers;
    forwarded.headers_mut().remove(http::header::HOST);
    match upstream.send(forwarded).await {
        Ok(a) => {
            let mut response = answer(a.status, None, a.body);
            if let Some(ct) = a.content_type {
                response
                    .headers_mut()
                    .insert(http::header::CONTENT_TYPE, ct);
            }
            if !a.complete {
                response.headers_mut().insert(
                    crate::upstream::FORWARDER_TRUNCATED,
                    http::HeaderValue::from_static("1"),
                );
            }
            response
        }
        Err(e) => answer(StatusCode::BAD_GATEWAY, Some(e.kind()), Bytes::new()),
    }
}

fn answer(status: StatusCode, error: Option<&'static str>, body: Bytes) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    if let Some(kind) = error {
        response
            .headers_mut()
            .insert(FORWARDER_ERROR, http::HeaderValue::from_static(kind));
    }
    response
}
