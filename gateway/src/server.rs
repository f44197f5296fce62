//! The gateway: listeners, the accept loop, and the request path of DESIGN §1.
//!
//! ```text
//! accept (socket2, connection cap) → TLS handshake (deadline, client cert required)
//!   → HTTP/1.1 head (hyper header timer) → route → token bound to the cert (before the body)
//!   → body (capped, deadline) → decode (capped) → validate → forward the ORIGINAL bytes
//! ```
//!
//! Cancel safety: a connection task owns everything it uses; dropping it (shutdown past the
//! grace period) closes the socket and loses only that connection's in-flight request, which
//! was never acknowledged.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use oneway_protocol::{BodyKind, Category, Decoder, Encoding, Precision, Validator};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tracing::{debug, error, info, warn};

use crate::audit::Audit;
use crate::auth::{AuthError, PeerIdentity, TokenTable};
use crate::config::{Config, KNOWN_APIS, TokenConfig, TokenSecret};
use crate::edge::{
    Counted, Counter, Expiry, Phase, Tracked, client_address, ip_key, read_proxy_header,
};
use crate::limit::{Limiter, MonotonicClock, Throttled};
use crate::request::Query;
use crate::response::{RequestError, error_response};
use crate::spool::{Spool, SpoolMode};
use crate::state::{Live, Scratch, State};
use crate::telemetry;
use crate::upstream::{Upstream, Verdict};

/// Bodies up to this size (identity; an eighth of it when compressed) are decoded and
/// validated on the connection's task; larger ones on the blocking pool.
const INLINE_CHECK_BYTES: usize = 1 << 20;

/// APIs that carry multipart uploads, capped by `limits.max_upload_bytes`.
const UPLOAD_APIS: &[&str] = &["/v1/write/rum/replay", "/v1/upload/profiling"];

/// One client connection: its certificate, and the identities tokens matched on it, each
/// holding a place of the per-identity cap for as long as the connection lives.
pub(crate) struct Conn {
    pub(crate) peer: PeerIdentity,
    /// The chain the client presented, checked again after each reload.
    chain: Vec<rustls_pki_types::CertificateDer<'static>>,
    /// Set once a reload revoked the certificate: the connection is closing, and any
    /// request still read on it is refused.
    revoked: AtomicBool,
    held: Mutex<Vec<(String, crate::edge::Counted<String>)>>,
}

impl Conn {
    fn new(peer: PeerIdentity, chain: Vec<rustls_pki_types::CertificateDer<'static>>) -> Conn {
        Conn {
            peer,
            chain,
            revoked: AtomicBool::new(false),
            held: Mutex::new(Vec::new()),
        }
    }

    /// Counts this connection for `identity` (the one a token matched) unless that identity
    /// already has `cap` connections.
    fn hold(&self, state: &State, identity: &str, cap: usize) -> Result<(), RequestError> {
        let Ok(mut held) = self.held.lock() else {
            return Err(RequestError::Internal);
        };
        if held.iter().any(|(i, _)| i == identity) {
            return Ok(());
        }
        let Some(place) = state.per_identity.try_acquire(identity.to_string(), cap) else {
            metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => "per_identity")
                .increment(1);
            return Err(overloaded("per_identity"));
        };
        held.push((identity.to_string(), place));
        Ok(())
    }
}

/// A bound gateway, not yet serving.
pub struct Gateway {
    state: Arc<State>,
    public: std::net::TcpListener,
    admin: std::net::TcpListener,
    sandbox: serde_json::Value,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("public", &self.public.local_addr().ok())
            .field("admin", &self.admin.local_addr().ok())
            .finish()
    }
}

/// A listener could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot bind {key} {address}: {}", describe(.source))]
pub struct BindError {
    /// The config key.
    pub key: &'static str,
    /// The address.
    pub address: SocketAddr,
    /// What the kernel said.
    pub source: std::io::Error,
}

impl BindError {
    fn new(key: &'static str, address: SocketAddr, source: std::io::Error) -> BindError {
        BindError {
            key,
            address,
            source,
        }
    }

    /// Whether another socket holds the address.
    pub fn in_use(&self) -> bool {
        self.source.kind() == std::io::ErrorKind::AddrInUse
    }
}

fn describe(e: &std::io::Error) -> String {
    if e.kind() == std::io::ErrorKind::AddrInUse {
        "the address is in use: another process (another oneway?) listens there".to_string()
    } else {
        e.to_string()
    }
}

fn bind(address: SocketAddr, backlog: u32) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, TcpKeepalive, Type};
    let socket = Socket::new(
        Domain::for_address(address),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    // SO_REUSEADDR rebinds over connections in TIME_WAIT after a restart, and (on Linux) never
    // next to a socket that listens. No SO_REUSEPORT: a second process binding the same
    // address must fail, not take half of the connections.
    socket.set_reuse_address(true)?;
    socket.set_tcp_nodelay(true)?;
    socket.set_tcp_keepalive(&TcpKeepalive::new().with_time(Duration::from_secs(60)))?;
    socket.set_nonblocking(true)?;
    socket.bind(&address.into())?;
    socket.listen(i32::try_from(backlog).unwrap_or(i32::MAX))?;
    Ok(socket.into())
}

impl Gateway {
    /// Loads the TLS material, opens the spool and binds both listeners. Starts no thread
    /// and needs no runtime, so that the sandbox can be entered between this and
    /// [`Gateway::serve`] (Landlock binds only the calling thread and those it creates later).
    pub fn bind(config: Config) -> anyhow::Result<Gateway> {
        let upstream = Upstream::new(&config.upstream)?;
        Gateway::assemble(config, None, upstream)
    }

    /// Binds the public and admin listeners of `config`.
    pub fn bind_listeners(
        config: &Config,
    ) -> anyhow::Result<(std::net::TcpListener, std::net::TcpListener)> {
        let public = bind(config.listener.address, config.listener.backlog)
            .map_err(|e| BindError::new("listener.address", config.listener.address, e))?;
        let admin = bind(config.admin_address, 128)
            .map_err(|e| BindError::new("admin.address", config.admin_address, e))?;
        Ok((public, admin))
    }

    /// [`Gateway::bind`] on listeners bound elsewhere (a split gateway's edge inherits them),
    /// reaching the upstream through `upstream`.
    pub fn with_listeners(
        config: Config,
        listeners: (std::net::TcpListener, std::net::TcpListener),
        upstream: Arc<Upstream>,
    ) -> anyhow::Result<Gateway> {
        Gateway::assemble(config, Some(listeners), upstream)
    }

    fn assemble(
        config: Config,
        listeners: Option<(std::net::TcpListener, std::net::TcpListener)>,
        upstream: Arc<Upstream>,
    ) -> anyhow::Result<Gateway> {
        let _ = telemetry::handle();
        let identity = crate::tls::server_identity(&config.listener)?;
        let verifier = crate::tls::client_verifier(&config.listener)?;
        let tls = crate::tls::assemble(&identity, Arc::clone(&verifier))?;
        let audit = Arc::new(
            Audit::open(&config.audit)
                .map_err(|e| anyhow::anyhow!("cannot open the audit output: {e}"))?,
        );
        // First the spool: a directory another process holds stops us before we bind.
        let spool = match &config.spool {
            Some(c) => Some(Spool::open(c.clone(), Arc::clone(&audit))?),
            None => None,
        };
        crate::reload::export_expiry(&config);
        let (public, admin) = match listeners {
            Some(l) => l,
            None => Gateway::bind_listeners(&config)?,
        };
        let live = Live {
            tokens: TokenTable::new(&config.tokens),
            acceptor: TlsAcceptor::from(tls),
            identity: Arc::new(identity),
            verifier,
            fail_closed: None,
            generation: 0,
            config: Arc::new(config.clone()),
        };
        let o = &config.overload;
        for (limit, value) in [
            ("in_flight", o.max_in_flight_requests),
            ("memory_bytes", o.memory_budget_bytes),
            ("identity_in_flight", o.max_in_flight_per_identity),
            ("identity_memory_bytes", o.max_memory_per_identity_bytes),
        ] {
            metrics::gauge!(telemetry::OVERLOAD_LIMIT, "limit" => limit).set(value as f64);
        }
        let state = Arc::new(State {
            live: std::sync::RwLock::new(Arc::new(live)),
            limiter: Limiter::new(Arc::new(MonotonicClock::default())),
            in_flight: Arc::new(Semaphore::new(config.overload.max_in_flight_requests)),
            memory: Arc::new(Semaphore::new(kib(config.overload.memory_budget_bytes))),
            upstream,
            spool,
            pool: Mutex::new(Vec::new()),
            per_ip: Counter::default(),
            per_identity: Counter::default(),
            identity_in_flight: Counter::default(),
            identity_memory: Counter::default(),
            audit,
            reloads: tokio::sync::watch::Sender::new(0),
        });
        Ok(Gateway {
            state,
            public,
            admin,
            sandbox: serde_json::to_value(crate::sandbox::Report::off()).unwrap_or_default(),
        })
    }

    /// Records the sandbox the process entered, for the `start` audit event.
    pub fn with_sandbox(mut self, report: serde_json::Value) -> Gateway {
        self.sandbox = report;
        self
    }

    /// A handle that reloads the config, certificates, CRLs and tokens (SIGHUP does this).
    pub fn reloader(&self) -> crate::reload::Reloader {
        crate::reload::Reloader {
            state: Arc::clone(&self.state),
        }
    }

    /// The public listener's address.
    pub fn public_addr(&self) -> SocketAddr {
        self.public
            .local_addr()
            .unwrap_or_else(|_| self.state.live().config.listener.address)
    }

    /// The admin listener's address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
            .local_addr()
            .unwrap_or(self.state.live().config.admin_address)
    }

    /// Serves until `shutdown` completes (or the spool fails), then stops accepting, lets
    /// in-flight requests finish within `listener.shutdown_grace`, persists the spool's
    /// progress, and says how it ended.
    pub async fn serve(self, shutdown: impl Future<Output = ()>) -> Exit {
        let Gateway {
            state,
            public,
            admin,
            sandbox,
        } = self;
        let (public, admin) = match (TcpListener::from_std(public), TcpListener::from_std(admin)) {
            (Ok(p), Ok(a)) => (p, a),
            (Err(e), _) | (_, Err(e)) => return Exit::ListenerFailed(e.to_string()),
        };
        let start = state.live().config.clone();
        let reloader = crate::reload::Reloader {
            state: Arc::clone(&state),
        };
        let watcher = start
            .watch_interval
            .map(|interval| tokio::spawn(crate::reload::watch(reloader, interval)));
        state.audit.emit(
            "start",
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "config_sha256": start.sha256,
                "listener": start.listener.address.to_string(),
                "sandbox": sandbox,
            }),
        );
        let auditor = {
            let state = Arc::clone(&state);
            let interval = start.audit.interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    flush_audit(&state).await;
                }
            })
        };
        let ready = Arc::new(AtomicBool::new(true));
        let admin_task = tokio::spawn(serve_admin(admin, Arc::clone(&state), Arc::clone(&ready)));
        let sweeper = {
            let state = Arc::clone(&state);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    state.limiter.sweep();
                    metrics::gauge!(telemetry::TRACKED_TOKENS).set(state.limiter.tracked() as f64);
                }
            })
        };
        let spool_tasks = match &state.spool {
            Some(spool) => spool.start(Arc::clone(&state.upstream)),
            None => Vec::new(),
        };
        let spool_failure = {
            let spool = state.spool.clone();
            async move {
                match spool {
                    Some(spool) => spool.failure().await,
                    None => std::future::pending().await,
                }
            }
        };
        tokio::pin!(spool_failure);
        let mut failure = None;
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let slots = Arc::new(Semaphore::new(start.listener.max_connections));
        tokio::pin!(shutdown);
        info!(address = %public.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving");
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                why = &mut spool_failure => {
                    error!(error = %why, "the spool failed: stopping");
                    failure = Some(why);
                    break;
                }
                accepted = public.accept() => {
                    let (stream, peer) = match accepted {
                        Ok(a) => a,
                        Err(e) => {
                            warn!(error = %e, "accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
                        metrics::counter!(telemetry::CONNECTIONS_REFUSED, "reason" => "max_connections")
                            .increment(1);
                        drop(stream);
                        continue;
                    };
                    let state = Arc::clone(&state);
                    let closing = closing_rx.clone();
                    tokio::spawn(async move {
                        let _permit = permit;
                        connection(state, stream, peer, closing).await;
                    });
                }
            }
        }
        ready.store(false, Ordering::Relaxed);
        drop(public);
        info!("shutting down: no new connections; waiting for in-flight requests");
        let grace = start.listener.shutdown_grace;
        closing.send_replace(true);
        // Every connection holds a slot until it ends: all slots back means all ended.
        let all = u32::try_from(start.listener.max_connections).unwrap_or(u32::MAX);
        let finished = tokio::time::timeout(grace, slots.acquire_many(all))
            .await
            .is_ok();
        if !finished {
            warn!(
                grace_ms = grace.as_millis() as u64,
                "shutdown grace period ran out"
            );
        }
        admin_task.abort();
        sweeper.abort();
        auditor.abort();
        if let Some(w) = watcher {
            w.abort();
        }
        let reason = match (&failure, finished) {
            (Some(_), _) => "spool_failure",
            (None, true) => "shutdown",
            (None, false) => "shutdown_grace_expired",
        };
        state
            .audit
            .emit("stop", serde_json::json!({ "reason": reason }));
        flush_audit(&state).await;
        for task in spool_tasks {
            task.abort();
        }
        if let Some(spool) = &state.spool {
            spool.close().await;
        }
        match failure {
            Some(why) => Exit::SpoolFailed(why),
            None if finished => Exit::Clean,
            None => Exit::GraceExpired,
        }
    }
}

/// How [`Gateway::serve`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exit {
    /// Every in-flight request finished.
    Clean,
    /// The shutdown grace period ran out with requests in flight.
    GraceExpired,
    /// A spool write or sync failed (the process must exit non-zero).
    SpoolFailed(String),
    /// The listeners could not be registered with the runtime.
    ListenerFailed(String),
}

async fn connection(
    state: Arc<State>,
    mut stream: TcpStream,
    peer: SocketAddr,
    mut closing: tokio::sync::watch::Receiver<bool>,
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
    let identity = Arc::new(Conn::new(identity, chain));
    let this = Arc::clone(&identity);
    // Reloads since the handshake's snapshot count too.
    let mut reloads = state.reloads.subscribe();
    if reloads.borrow_and_update().to_owned() != live.generation {
        reloads.mark_changed();
    }
    let phase = Phase::new();
    let service = {
        let (state, phase) = (Arc::clone(&state), Arc::clone(&phase));
        service_fn(move |req| {
            let (state, identity, phase) = (
                Arc::clone(&state),
                Arc::clone(&identity),
                Arc::clone(&phase),
            );
            async move {
                let framing = phase.busy();
                let response = handle(&state, &identity, req, framing).await;
                phase.idle();
                Ok::<_, Infallible>(response)
            }
        })
    };
    let conn = hyper::server::conn::http1::Builder::new()
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
    tokio::pin!(conn);
    let age_limit = Instant::now() + listener.max_connection_age;
    // Once a graceful close has begun: when to give up on it.
    let mut draining: Option<Instant> = None;
    loop {
        let (deadline, why) = match draining {
            Some(hard) => (hard, None),
            None => match phase.deadline(listener.keepalive_timeout, listener.header_timeout) {
                Some((at, expiry)) if at < age_limit => (at, Some(Some(expiry))),
                _ => (age_limit, Some(None)),
            },
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    debug!(%client, error = %e, "connection ended with an error");
                }
                break;
            }
            _ = closing.changed(), if draining.is_none() => {
                conn.as_mut().graceful_shutdown();
                draining = Some(Instant::now() + listener.shutdown_grace);
            }
            _ = reloads.changed(), if draining.is_none() => {
                // A reload: is the certificate still good under the new CA bundle and CRLs?
                // If not, the request in progress (authorized before) finishes, nothing
                // more is served, and an idle connection closes now.
                let next = state.live();
                if !crate::tls::still_valid(&next.verifier, &this.chain) {
                    this.revoked.store(true, Ordering::Relaxed);
                    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "revoked")
                        .increment(1);
                    let name = this.peer.name();
                    info!(%client, identity = %name, "certificate no longer valid after a reload: closing its connection");
                    state.audit.count(
                        "auth_failure",
                        &[("kind", "revoked_while_connected"), ("identity", &name)],
                    );
                    conn.as_mut().graceful_shutdown();
                    draining = Some(Instant::now() + listener.shutdown_grace);
                }
            }
            () = phase.changed() => {}
            () = tokio::time::sleep_until(deadline.into()) => match why {
                // The graceful close ran out of time: drop the connection.
                None => {
                    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "drain_timeout")
                        .increment(1);
                    break;
                }
                Some(None) => {
                    // Maximum age: finish the request in progress, then close. This bounds how
                    // long a certificate revoked since the handshake keeps a connection.
                    metrics::counter!(telemetry::CONNECTIONS_CLOSED, "reason" => "max_age")
                        .increment(1);
                    conn.as_mut().graceful_shutdown();
                    draining = Some(Instant::now() + listener.shutdown_grace);
                }
                Some(Some(expiry)) => {
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

/// Which route a request takes.
enum Route {
    Write(Category),
    Api(&'static str),
}

fn route(path: &str) -> Result<Route, RequestError> {
    if let Some(api) = KNOWN_APIS.iter().find(|api| {
        path == **api || (**api == "/v1/check/token" && path.starts_with("/v1/check/token/"))
    }) {
        return Ok(Route::Api(api));
    }
    if let Some(segment) = path.strip_prefix("/v1/write/")
        && let Some(category) = Category::from_path_segment(segment)
    {
        return Ok(Route::Write(category));
    }
    Err(RequestError::NotFound)
}

/// The value of `key` in a query string (tokens are plain; no percent-decoding needed).
/// The token forwarded upstream: the mapped workspace token when there is one.
fn forwarded_token<'a>(token: &'a TokenConfig, presented: &'a str) -> &'a str {
    token.upstream_token.as_deref().unwrap_or(presented)
}

/// The request's query, parsed as Guance parses it.
fn parsed_query(req: &Request<Incoming>) -> Result<Query, RequestError> {
    Ok(Query::parse(req.uri().query().unwrap_or(""))?)
}

/// Refuses a second `Content-Type` or `Content-Encoding`: one of them would decide how oneway
/// reads the body, maybe the other how Guance does.
fn single_body_headers(headers: &HeaderMap) -> Result<(), RequestError> {
    for (name, label) in [
        (header::CONTENT_TYPE, "Content-Type"),
        (header::CONTENT_ENCODING, "Content-Encoding"),
    ] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(RequestError::DuplicateHeader(label));
        }
    }
    Ok(())
}

async fn handle(
    state: &Arc<State>,
    conn: &Conn,
    req: Request<Incoming>,
    framing: crate::framing::Framing,
) -> Response<Full<Bytes>> {
    metrics::gauge!(telemetry::IN_FLIGHT).increment(1.0);
    // Framing hyper tolerates but a proxy must not (request smuggling): a body length given
    // twice over (seen in the raw head by `edge::Tracked`). Refused before anything else,
    // and the connection is closed.
    // The identity the token matched, once it has; before that, the certificate's name.
    let mut matched = None;
    let (route_label, category_label, result) = if framing != crate::framing::Framing::Clean {
        ("unknown", "none", Err(RequestError::BadFraming(framing)))
    } else {
        process(state, conn, req, &mut matched).await
    };
    let who = matched.unwrap_or_else(|| conn.peer.name());
    metrics::gauge!(telemetry::IN_FLIGHT).decrement(1.0);
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            match &e {
                RequestError::Auth(a) => {
                    metrics::counter!(telemetry::AUTH_FAILURES, "kind" => a.kind()).increment(1);
                    let event = if matches!(a, AuthError::ApiNotAllowed) {
                        "api_refused"
                    } else {
                        "auth_failure"
                    };
                    state.audit.count(
                        event,
                        &[
                            ("kind", a.kind()),
                            ("identity", &who),
                            ("route", route_label),
                        ],
                    );
                }
                RequestError::Throttled { kind, .. } => {
                    state.audit.count(
                        "rate_limited",
                        &[("kind", kind.as_str()), ("identity", &who)],
                    );
                }
                RequestError::Invalid(r) => {
                    metrics::counter!(telemetry::VALIDATION_FAILURES, "rule" => r.rule.as_str())
                        .increment(1);
                }
                RequestError::Decode(d) => {
                    metrics::counter!(telemetry::DECODE_FAILURES, "kind" => d.kind()).increment(1);
                }
                _ => {}
            }
            debug!(
                kind = e.kind(),
                route = route_label,
                category = category_label,
                "request refused"
            );
            error_response(&e)
        }
    };
    let mut response = response;
    if response.status() == StatusCode::BAD_REQUEST {
        // After a malformed request nothing more is read from this connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    metrics::counter!(telemetry::REQUESTS, "route" => route_label, "category" => category_label, "status" => class)
        .increment(1);
    response
}

async fn process(
    state: &Arc<State>,
    conn: &Conn,
    req: Request<Incoming>,
    matched: &mut Option<String>,
) -> (
    &'static str,
    &'static str,
    Result<Response<Full<Bytes>>, RequestError>,
) {
    // A connection whose certificate a reload revoked, or a gateway that does not know who
    // may push: nothing is served.
    if conn.revoked.load(Ordering::Relaxed) {
        return ("unknown", "none", Err(AuthError::Revoked.into()));
    }
    if state.live().fail_closed.is_some() {
        return ("unknown", "none", Err(RequestError::FailClosed));
    }
    let path = req.uri().path().to_string();
    let route = match route(&path) {
        Ok(r) => r,
        Err(e) => return ("unknown", "none", Err(e)),
    };
    let (route_label, category_label) = match &route {
        Route::Write(c) => ("write", c.as_str()),
        Route::Api(_) => ("api", "none"),
    };
    let result = match route {
        Route::Write(category) => write(state, conn, category, req, matched).await,
        Route::Api(api) => passthrough(state, conn, api, req, matched).await,
    };
    (route_label, category_label, result)
}

/// The token: `?token=`, then `X-Token`, then (for `/v1/check/token/<token>`) the path.
fn presented_token(req: &Request<Incoming>, query: &Query) -> Option<String> {
    if let Some(t) = query.get("token") {
        return Some(t.to_string());
    }
    if let Some(t) = req.headers().get("x-token").and_then(|v| v.to_str().ok()) {
        return Some(t.to_string());
    }
    req.uri()
        .path()
        .strip_prefix("/v1/check/token/")
        .map(str::to_string)
}

fn digest(token: &TokenConfig) -> &[u8; 32] {
    let TokenSecret::Sha256(d) = &token.secret;
    d
}

fn throttled(token: &TokenConfig, t: Throttled) -> RequestError {
    metrics::counter!(telemetry::THROTTLED, "kind" => t.kind.as_str()).increment(1);
    RequestError::Throttled {
        kind: t.kind,
        retry_after_seconds: t.retry_after_seconds(),
        status: token.over_limit_status,
    }
}

fn header_u64(headers: &HeaderMap, name: &str) -> u64 {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes in KiB permits, rounded up.
fn kib(bytes: usize) -> usize {
    bytes.div_ceil(1024)
}

/// What a request holds of the global budgets and of its identity's share; released when
/// dropped. An identity never holds more than `overload.max_in_flight_per_identity` slots and
/// `overload.max_memory_per_identity_bytes` of the memory budget, so one agent, however many
/// slow bodies it opens, leaves the rest to the others.
struct Held {
    state: Arc<State>,
    identity: String,
    in_flight: Option<(tokio::sync::OwnedSemaphorePermit, Counted<String>)>,
    memory: Vec<(tokio::sync::OwnedSemaphorePermit, Counted<String>)>,
    /// Bytes asked for so far, and the KiB permits that cover them.
    bytes: usize,
    kib: usize,
}

impl Held {
    fn new(state: &Arc<State>, identity: &str) -> Held {
        Held {
            state: Arc::clone(state),
            identity: identity.to_string(),
            in_flight: None,
            memory: Vec::new(),
            bytes: 0,
            kib: 0,
        }
    }

    /// Takes an in-flight slot of the identity's share and of the global cap, or refuses.
    fn take_slot(&mut self) -> Result<(), RequestError> {
        if self.in_flight.is_some() {
            return Ok(());
        }
        let cap = self.state.live().config.overload.max_in_flight_per_identity;
        let global = Arc::clone(&self.state.in_flight)
            .try_acquire_owned()
            .map_err(|_| overloaded("in_flight"))?;
        let mine = self
            .state
            .identity_in_flight
            .try_acquire(self.identity.clone(), cap)
            .ok_or_else(|| overloaded("identity_in_flight"))?;
        self.in_flight = Some((global, mine));
        Ok(())
    }

    /// Reserves `bytes` more of the memory budget, within the identity's share, or refuses.
    fn reserve(&mut self, bytes: usize) -> Result<(), RequestError> {
        self.grow_to(self.bytes.saturating_add(bytes))
    }

    /// Makes what is reserved cover `total` bytes, within the identity's share, or refuses.
    fn grow_to(&mut self, total: usize) -> Result<(), RequestError> {
        let want = kib(total);
        if want <= self.kib {
            self.bytes = self.bytes.max(total);
            return Ok(());
        }
        let more = want - self.kib;
        let share = kib(self
            .state
            .live()
            .config
            .overload
            .max_memory_per_identity_bytes);
        let permits = u32::try_from(more).map_err(|_| overloaded("memory"))?;
        let global = Arc::clone(&self.state.memory)
            .try_acquire_many_owned(permits)
            .map_err(|_| overloaded("memory"))?;
        let mine = self
            .state
            .identity_memory
            .try_acquire_n(self.identity.clone(), more, share)
            .ok_or_else(|| overloaded("identity_memory"))?;
        self.memory.push((global, mine));
        self.kib = want;
        self.bytes = total;
        self.report();
        Ok(())
    }

    fn report(&self) {
        let total = kib(self.state.live().config.overload.memory_budget_bytes);
        let used = total.saturating_sub(self.state.memory.available_permits());
        metrics::gauge!(telemetry::MEMORY_USED).set((used * 1024) as f64);
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.memory.clear();
        self.in_flight = None;
        self.report();
    }
}

fn overloaded(reason: &'static str) -> RequestError {
    metrics::counter!(telemetry::OVERLOAD_REFUSED, "reason" => reason).increment(1);
    RequestError::Overloaded { reason }
}

/// The body's first reservation, and the least it grows by: a body holds of the memory
/// budget what has arrived (rounded up to this), not what it declared.
const BODY_STEP: usize = 64 << 10;

/// Reads the body up to `limit` bytes within the body deadline, under the global budgets and
/// `identity`'s share of them: memory is reserved as the body arrives (in [`BODY_STEP`]s; the
/// buffer spans the declared length, but only the pages the body fills are memory), so a body
/// that declares megabytes and drips holds only what it sent; the in-flight slot is taken when the first
/// body byte arrives (as VictoriaMetrics does), so idle or slow connections hold no slot.
async fn read_body(
    state: &Arc<State>,
    req: Request<Incoming>,
    limit: usize,
    identity: &str,
) -> Result<(http::request::Parts, Bytes, Held), RequestError> {
    let (parts, mut body) = req.into_parts();
    let declared = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(RequestError::BodyTooLarge { limit });
    }
    let expected = declared.map_or(limit, |len| len as usize);
    let mut held = Held::new(state, identity);
    let first_step = expected.min(BODY_STEP);
    held.grow_to(first_step)?;
    let started = Instant::now();
    let live = state.live();
    let min_rate = live.config.listener.body_min_rate_bytes_per_second;
    let grace = live.config.listener.body_min_rate_grace;
    let read = async {
        // Address space for the declared length; its pages become memory only as the body
        // fills them, and that is what is reserved.
        let mut data = bytes::BytesMut::with_capacity(expected.min(limit));
        loop {
            // After the grace period the body must keep up an average of `min_rate`: the next
            // bytes are due by the time the bytes so far would have taken at that rate.
            let frame = if min_rate == 0 {
                body.frame().await
            } else {
                let due =
                    started + grace + Duration::from_secs_f64(data.len() as f64 / min_rate as f64);
                tokio::time::timeout_at(due.into(), body.frame())
                    .await
                    .map_err(|_| RequestError::BodyTooSlow)?
            };
            held.take_slot()?;
            match frame {
                None => return Ok(data.freeze()),
                Some(Err(_)) => return Err(RequestError::BodyRead),
                Some(Ok(frame)) => {
                    if let Ok(chunk) = frame.into_data() {
                        let needed = data.len() + chunk.len();
                        if needed > limit {
                            return Err(RequestError::BodyTooLarge { limit });
                        }
                        if needed > held.bytes {
                            held.grow_to(
                                needed.next_multiple_of(BODY_STEP).min(expected.max(needed)),
                            )?;
                        }
                        data.extend_from_slice(&chunk);
                    }
                }
            }
        }
    };
    let body = tokio::time::timeout(live.config.listener.body_timeout, read)
        .await
        .map_err(|_| RequestError::BodyTimeout)??;
    Ok((parts, body, held))
}

/// What a compressed body is expected to decode to. gzip says it in its last four bytes
/// (ISIZE, the last member's length mod 2³²: exact for DataKit's one-member bodies); the
/// claim only sizes the reservation, since the decoder stops at this estimate and a body that
/// lied is decoded again within `max_decoded_bytes`. Otherwise 32× the compressed size
/// (DataKit's batches compress 5–20×). At least 64 KiB, at most `max_decoded`.
fn decode_estimate(encoding: Encoding, body: &[u8], max_decoded: usize) -> usize {
    const FLOOR: usize = 64 << 10;
    let guess = match encoding {
        Encoding::Identity => return 0,
        Encoding::Gzip if body.len() >= 18 => body[body.len() - 4..]
            .try_into()
            .map(|b| u32::from_le_bytes(b) as usize)
            .unwrap_or(usize::MAX),
        _ => body.len().saturating_mul(32),
    };
    max_decoded.min(guess.max(FLOOR))
}

async fn write(
    state: &Arc<State>,
    conn: &Conn,
    category: Category,
    req: Request<Incoming>,
    matched: &mut Option<String>,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let live = state.live();
    let query = parsed_query(&req)?;
    let presented = presented_token(&req, &query);
    let authorized = live.tokens.authorize(presented.as_deref(), &conn.peer)?;
    let identity = authorized.identity.to_string();
    *matched = Some(identity.clone());
    conn.hold(
        state,
        &identity,
        live.config.listener.max_connections_per_identity,
    )?;
    let token = authorized.token;
    if req.method() != Method::POST {
        return Err(RequestError::MethodNotAllowed);
    }
    single_body_headers(req.headers())?;
    // Step one, before the body is read: the request and its expected size and points, so an
    // agent over its limit costs us almost nothing.
    let expected_bytes = header_u64(req.headers(), "content-length");
    let expected_points = header_u64(req.headers(), "x-points");
    let admitted = state.limiter.admit(
        digest(&token),
        &token.limits,
        expected_bytes,
        expected_points,
    );
    metrics::gauge!(telemetry::TRACKED_TOKENS).set(state.limiter.tracked() as f64);
    admitted.map_err(|t| throttled(&token, t))?;
    let given_precision = match query.get("precision") {
        None => None,
        Some(p) => Some(Precision::parse(p).ok_or(RequestError::BadPrecision)?),
    };
    let precision = given_precision.unwrap_or_default();
    let encoding = Encoding::from_header(
        req.headers()
            .get(header::CONTENT_ENCODING)
            .map(HeaderValue::as_bytes),
    )?;
    let kind = BodyKind::from_content_type(
        req.headers()
            .get(header::CONTENT_TYPE)
            .map(HeaderValue::as_bytes),
    )?;
    let (parts, body, mut held) =
        read_body(state, req, live.config.body.max_body_bytes, &identity).await?;

    let scratch = state
        .pool
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .filter(|s| s.generation == live.generation)
        .unwrap_or_else(|| Scratch {
            decoder: Decoder::new(),
            buffer: Vec::new(),
            validator: Validator::new(live.config.validation),
            generation: live.generation,
        });
    // Decoded bytes come out of the memory budget too: reserve an estimate and decode within
    // it; a body that decodes to more reserves the rest up to max_decoded_bytes and is decoded
    // again. Memory stays within what was reserved.
    let max_decoded = live.config.body.max_decoded_bytes;
    let max_body = live.config.body.max_body_bytes;
    let estimate = decode_estimate(encoding, &body, max_decoded);
    held.reserve(estimate)?;
    let check = move |mut scratch: Scratch, body: Bytes, limit: usize| {
        let result = (|| {
            let decoded = scratch
                .decoder
                .decode(encoding, &body, &mut scratch.buffer, limit)?;
            let decoded_len = decoded.len();
            let verdict = scratch
                .validator
                .validate(kind, category, precision, decoded)?;
            Ok::<_, RequestError>((verdict, decoded_len))
        })();
        if scratch.buffer.capacity() > max_body.max(4 << 20) {
            // Keep pooled buffers modest: a rare huge batch does not pin its memory forever.
            scratch.buffer = Vec::new();
        }
        (scratch, result)
    };
    // Small batches (DataKit's are ≤ 1 MiB before gzip: about a millisecond) are checked on
    // the connection's task; larger ones on the blocking pool, so that one big batch cannot
    // stall the other connections of this worker.
    let inline = (encoding == Encoding::Identity && body.len() <= INLINE_CHECK_BYTES)
        || body.len() <= INLINE_CHECK_BYTES / 8;
    let run = |scratch: Scratch, limit: usize| {
        let body = body.clone();
        async move {
            if inline {
                Ok(check(scratch, body, limit))
            } else {
                tokio::task::spawn_blocking(move || check(scratch, body, limit))
                    .await
                    .map_err(|_| RequestError::Internal)
            }
        }
    };
    let decode_limit = if encoding == Encoding::Identity {
        max_decoded
    } else {
        estimate
    };
    let (mut scratch, mut verdict) = run(scratch, decode_limit).await?;
    let needs_more = decode_limit < max_decoded
        && matches!(
            verdict,
            Err(RequestError::Decode(
                oneway_protocol::DecodeError::TooLarge { .. }
            ))
        );
    if needs_more {
        match held.reserve(max_decoded - estimate) {
            Ok(()) => (scratch, verdict) = run(scratch, max_decoded).await?,
            Err(e) => verdict = Err(e),
        }
    }
    if let Ok(mut p) = state.pool.lock() {
        p.push(scratch);
    }
    let (verdict, decoded_len) = verdict?;
    let verdict_points = verdict.points;
    // Step two: what the batch really cost beyond the estimate.
    state
        .limiter
        .settle(
            digest(&token),
            &token.limits,
            (decoded_len as u64).saturating_sub(expected_bytes),
            verdict.points.saturating_sub(expected_points),
        )
        .map_err(|t| throttled(&token, t))?;

    let mut headers = crate::headers::forwarded(
        &parts.headers,
        &token,
        &identity,
        live.config.identity_header.as_ref(),
    );
    headers.insert("x-points", HeaderValue::from(verdict.points));
    // The parser and decoder that checked the body, in the one spelling Guance maps to them.
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(kind.content_type()),
    );
    headers.remove(header::CONTENT_ENCODING);
    if encoding != Encoding::Identity {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(encoding.as_str()),
        );
    }
    let upstream_uri = format!(
        "{}?{}",
        parts.uri.path(),
        query.upstream(
            forwarded_token(&token, presented.as_deref().unwrap_or("")),
            given_precision.map(Precision::as_str)
        )
    );
    let accepted = |outcome: &'static str| {
        metrics::counter!(telemetry::ACCEPTED, "outcome" => outcome).increment(1);
        for (rule, points) in verdict.counted.iter() {
            metrics::counter!(telemetry::VALIDATION_COUNTED, "rule" => rule.as_str())
                .increment(points);
        }
        metrics::counter!(telemetry::POINTS, "category" => category.as_str())
            .increment(verdict.points);
        metrics::counter!(telemetry::BYTES, "category" => category.as_str(), "stage" => "compressed")
            .increment(body.len() as u64);
        metrics::counter!(telemetry::BYTES, "category" => category.as_str(), "stage" => "decoded")
            .increment(decoded_len as u64);
    };
    let spool_it = |spool: Arc<Spool>| {
        let payload = crate::spool::record::Payload::new(
            crate::spool::unix_ms(),
            &upstream_uri,
            headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
            body.clone(),
        );
        async move {
            let payload = payload.ok_or(RequestError::Internal)?;
            spool.append(payload).await.map_err(RequestError::Spool)?;
            Ok::<_, RequestError>(crate::response::spooled_response())
        }
    };
    if let Some(spool) = &state.spool {
        if spool.mode() == SpoolMode::SpoolFirst || !state.upstream.healthy() {
            let resp = spool_it(Arc::clone(spool)).await?;
            accepted("spooled");
            return Ok(resp);
        }
        spool.note_live_request();
    }
    let mut request = Request::new(Full::new(body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = upstream_uri
        .parse()
        .map_err(|_| RequestError::UpstreamUnavailable)?;
    *request.headers_mut() = headers.clone();
    // The answer is oneway's own: a status and its JSON, never the upstream's bytes.
    let sent = state.upstream.send(request).await;
    let verdict = sent.as_ref().map(|a| Verdict::of(a.status)).map_err(|e| *e);
    match (sent, verdict, &state.spool) {
        (Ok(_), Ok(Verdict::Delivered), spool) => {
            if let Some(spool) = spool {
                spool.note_upstream_back();
            }
            accepted("forwarded");
            Ok(crate::response::forwarded_response(verdict_points))
        }
        (Ok(answer), Ok(Verdict::Refused), spool) => {
            if let Some(spool) = spool {
                spool.note_upstream_back();
            }
            Err(refused(&answer))
        }
        // Down, slow, 5xx, 408, 429 or anything else not final: the batch goes to the spool
        // when there is one, else DataKit keeps it (503).
        (_, _, Some(spool)) => {
            let resp = spool_it(Arc::clone(spool)).await?;
            accepted("spooled");
            Ok(resp)
        }
        (_, _, None) => Err(RequestError::UpstreamUnavailable),
    }
}

/// A permanent refusal of a write, counted by status.
fn refused(answer: &crate::upstream::Answer) -> RequestError {
    metrics::counter!(telemetry::UPSTREAM_REFUSED, "status" => status_label(answer.status))
        .increment(1);
    RequestError::UpstreamRefused {
        status: answer.status,
        beyond_usage: answer.status == StatusCode::FORBIDDEN
            && answer
                .body
                .windows(b"beyondDataUsage".len())
                .any(|w| w == b"beyondDataUsage"),
    }
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        406 => "406",
        413 => "413",
        415 => "415",
        422 => "422",
        _ => "other",
    }
}

async fn passthrough(
    state: &Arc<State>,
    conn: &Conn,
    api: &'static str,
    req: Request<Incoming>,
    matched: &mut Option<String>,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let live = state.live();
    let query = parsed_query(&req)?;
    let presented = presented_token(&req, &query);
    let authorized = live.tokens.authorize(presented.as_deref(), &conn.peer)?;
    let identity = authorized.identity.to_string();
    *matched = Some(identity.clone());
    conn.hold(
        state,
        &identity,
        live.config.listener.max_connections_per_identity,
    )?;
    let token = authorized.token;
    single_body_headers(req.headers())?;
    if !token.allowed_apis.contains(api) {
        return Err(RequestError::Auth(AuthError::ApiNotAllowed));
    }
    state
        .limiter
        .admit(digest(&token), &token.limits, 0, 0)
        .map_err(|t| throttled(&token, t))?;
    let limit = if UPLOAD_APIS.contains(&api) {
        live.config.body.max_upload_bytes
    } else {
        live.config.body.max_body_bytes
    };
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::POST | Method::DELETE) {
        return Err(RequestError::MethodNotAllowed);
    }
    let (parts, body, _held) = read_body(state, req, limit, &identity).await?;
    let presented = presented.unwrap_or_default();
    let forwarded = forwarded_token(&token, &presented);
    let uri = if api == "/v1/check/token" {
        format!("/v1/check/token/{forwarded}")
    } else {
        let precision = query.get("precision");
        format!(
            "{}?{}",
            parts.uri.path(),
            query.upstream(forwarded, precision)
        )
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri.parse().map_err(|_| RequestError::UpstreamUnavailable)?;
    *request.headers_mut() = crate::headers::forwarded(
        &parts.headers,
        &token,
        &identity,
        live.config.identity_header.as_ref(),
    );
    let answer = state
        .upstream
        .send(request)
        .await
        .map_err(|_| RequestError::UpstreamUnavailable)?;
    relay_api(api, answer)
}

/// A non-write API's answer, relayed only when final (2xx or a permanent refusal), complete
/// (within `forward.max_api_answer_bytes`) and JSON (or empty); its status, its JSON and
/// nothing else. Counted by API and outcome.
fn relay_api(
    api: &'static str,
    answer: crate::upstream::Answer,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let json = answer.content_type.as_ref().is_some_and(|ct| {
        ct.to_str().is_ok_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
    });
    let outcome = if Verdict::of(answer.status) == Verdict::Retry {
        Err(RequestError::UpstreamUnavailable)
    } else if !answer.complete {
        Err(RequestError::AnswerNotRelayed("too_large"))
    } else if !answer.body.is_empty() && !json {
        Err(RequestError::AnswerNotRelayed("content_type"))
    } else {
        Ok(())
    };
    let label = match &outcome {
        Ok(()) => "relayed",
        Err(RequestError::AnswerNotRelayed(why)) => why,
        Err(_) => "retry",
    };
    metrics::counter!(telemetry::API_ANSWERS, "api" => api, "outcome" => label).increment(1);
    outcome?;
    metrics::counter!(telemetry::API_ANSWER_BYTES, "api" => api)
        .increment(answer.body.len() as u64);
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() = answer.status;
    if json {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(resp)
}

/// Writes the aggregated audit events, and pushes the audit lines to the audit workspace
/// when one is configured (through the spool when there is one: durable; else straight to
/// the upstream, best effort).
async fn flush_audit(state: &Arc<State>) {
    state.audit.flush();
    let live = state.live();
    let Some(token) = live.config.audit.workspace_token.clone() else {
        return;
    };
    let lines = state.audit.take_outbox();
    if lines.is_empty() {
        return;
    }
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let body = Bytes::from(crate::audit::as_logging_points(&lines, nanos));
    let path = format!("/v1/write/logging?token={token}");
    let points = lines.len().to_string();
    let headers = [
        ("content-type", &b"application/line-protocol"[..]),
        ("x-points", points.as_bytes()),
    ];
    if let Some(spool) = &state.spool {
        let payload =
            crate::spool::record::Payload::new(crate::spool::unix_ms(), &path, headers, body);
        if let Some(Err(e)) = match payload {
            Some(p) => Some(spool.append(p).await),
            None => None,
        } {
            warn!(error = %e, lines = lines.len(), "audit lines not spooled");
        }
        return;
    }
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = Method::POST;
    if let Ok(uri) = path.parse() {
        *request.uri_mut() = uri;
    }
    for (name, value) in headers {
        if let Ok(v) = HeaderValue::from_bytes(value) {
            request.headers_mut().insert(name, v);
        }
    }
    if let Err(e) = state.upstream.send(request).await {
        warn!(error = %e, lines = lines.len(), "audit lines not delivered to the audit workspace");
    }
}

/// Whether a write would be accepted now: with a spool, while it has room and has not
/// failed (an upstream outage alone keeps the gateway ready: it spools); without one, while
/// an upstream is healthy.
fn can_accept(state: &State) -> bool {
    match &state.spool {
        Some(spool) => !spool.has_failed() && !spool.is_full(),
        None => state.upstream.healthy(),
    }
}

async fn serve_admin(listener: TcpListener, state: Arc<State>, ready: Arc<AtomicBool>) {
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
                    "/metrics" => (StatusCode::OK, handle.render()),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_categories_aliases_and_apis() {
        assert!(matches!(
            route("/v1/write/metrics"),
            Ok(Route::Write(Category::Metric))
        ));
        assert!(matches!(
            route("/v1/write/langfuse-v2"),
            Ok(Route::Write(Category::LangfuseV2))
        ));
        assert!(matches!(
            route("/v1/write/rum/replay"),
            Ok(Route::Api("/v1/write/rum/replay"))
        ));
        assert!(matches!(
            route("/v1/check/token/tkn_x0000000000000000000000000000000"),
            Ok(Route::Api("/v1/check/token"))
        ));
        assert!(matches!(
            route("/v1/query/raw"),
            Ok(Route::Api("/v1/query/raw"))
        ));
        assert!(matches!(
            route("/v1/write/nope"),
            Err(RequestError::NotFound)
        ));
        assert!(matches!(route("/admin"), Err(RequestError::NotFound)));
    }

    #[test]
    fn the_decode_reservation_follows_gzips_own_length_within_bounds() {
        let gzip = |n: usize| {
            use std::io::Write as _;
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&vec![b'a'; n]).expect("gzip");
            e.finish().expect("gzip")
        };
        let max = 64 << 20;
        assert_eq!(
            decode_estimate(Encoding::Gzip, &gzip(3 << 20), max),
            3 << 20
        );
        assert_eq!(decode_estimate(Encoding::Gzip, &gzip(10), max), 64 << 10);
        assert_eq!(decode_estimate(Encoding::Gzip, &gzip(100 << 20), max), max);
        assert_eq!(decode_estimate(Encoding::Gzip, b"short", max), 64 << 10);
        assert_eq!(decode_estimate(Encoding::Zstd, &[0; 4096], max), 128 << 10);
        assert_eq!(decode_estimate(Encoding::Identity, &[0; 4096], max), 0);
    }

    #[test]
    fn forwarded_token_is_the_mapped_one() {
        let token = TokenConfig {
            upstream_token: Some("tkn_real0000000000000000000000000000".into()),
            ..TokenConfig::for_tests()
        };
        assert_eq!(
            forwarded_token(&token, "tkn_agent000000000000000000000000000"),
            "tkn_real0000000000000000000000000000"
        );
        let plain = TokenConfig {
            upstream_token: None,
            ..token
        };
        assert_eq!(
            forwarded_token(&plain, "tkn_agent000000000000000000000000000"),
            "tkn_agent000000000000000000000000000"
        );
    }
}
