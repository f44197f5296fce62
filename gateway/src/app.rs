//! The gateway as a whole: bind (TLS material, spool, listeners; no thread, so that the
//! sandbox can be entered next), serve (the accept loop and the background tasks: admin,
//! reload watch, audit flush, limiter sweep, spool), and a bounded shutdown (drain within
//! `listener.shutdown_grace`, persist the spool's progress, say how it ended).
//!
//! The request path, stage by stage, is in `listener` → `http` → `ingest` / `passthrough` →
//! `forward` (the crate's own documentation draws it).
//!
//! Cancel safety: [`Gateway::serve`] is meant to run to its end (dropping it skips the drain
//! and the spool's last "delivered" record; the next start re-sends those records: duplicates,
//! never loss). Its accept loop is dropped at shutdown, which only stops accepting.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

use crate::audit::Audit;
use crate::auth::TokenTable;
use crate::body::kib;
use crate::config::Config;
use crate::edge::Counter;
use crate::forward::Outbound;
use crate::limit::{Limiter, MonotonicClock};
use crate::spool::{Spool, SpoolError};
use crate::state::{Live, State};
use crate::telemetry;
use crate::tls::TlsError;
use crate::upstream::Upstream;

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

/// Why a gateway could not be bound.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// The server's certificate, key, client CA or CRLs (or the upstream's TLS material).
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// The audit output cannot be opened.
    #[error("cannot open the audit output: {0}")]
    Audit(std::io::Error),
    /// The spool cannot be opened (another process holds it, or it is unreadable).
    #[error(transparent)]
    Spool(#[from] SpoolError),
    /// A listener cannot be bound.
    #[error(transparent)]
    Bind(#[from] BindError),
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
    pub fn bind(config: Config) -> Result<Gateway, StartError> {
        let upstream = Upstream::new(&config.upstream)?;
        Gateway::assemble(config, None, upstream)
    }

    /// Binds the public and admin listeners of `config`.
    pub fn bind_listeners(
        config: &Config,
    ) -> Result<(std::net::TcpListener, std::net::TcpListener), BindError> {
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
    ) -> Result<Gateway, StartError> {
        Gateway::assemble(config, Some(listeners), upstream)
    }

    fn assemble(
        config: Config,
        listeners: Option<(std::net::TcpListener, std::net::TcpListener)>,
        upstream: Arc<Upstream>,
    ) -> Result<Gateway, StartError> {
        let _ = telemetry::handle();
        let identity = crate::tls::server_identity(&config.listener)?;
        let (verifier, trust) = crate::tls::client_trust(&config.listener)?;
        let tls = crate::tls::assemble(&identity, Arc::clone(&verifier))?;
        let audit = Arc::new(Audit::open(&config.audit).map_err(StartError::Audit)?);
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
        telemetry::configured_agents(config.tokens.iter().map(|t| &t.name));
        let live = Live {
            tokens: TokenTable::new(&config.tokens),
            acceptor: TlsAcceptor::from(tls),
            identity: Arc::new(identity),
            verifier,
            trust: Arc::new(trust),
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
        telemetry::build_info(start.sandbox.as_str());
        state.audit.emit(
            "start",
            serde_json::json!({
                "version": env!("CARGO_PKG_VERSION"),
                "commit": telemetry::COMMIT,
                "crypto": crate::tls::CRYPTO,
                "config_sha256": start.sha256,
                "listener": start.listener.address.to_string(),
                "sandbox": sandbox,
            }),
        );
        let ready = Arc::new(AtomicBool::new(true));
        let background = Background::start(&state, admin, Arc::clone(&ready));
        let spool_failure = {
            let spool = state.spool.clone();
            async move {
                match spool {
                    Some(spool) => spool.failure().await,
                    None => std::future::pending().await,
                }
            }
        };
        let (closing, closing_rx) = tokio::sync::watch::channel(false);
        let slots = Arc::new(Semaphore::new(start.listener.max_connections));
        info!(address = %public.local_addr().map(|a| a.to_string()).unwrap_or_default(), "serving");
        let failure = tokio::select! {
            () = shutdown => None,
            why = spool_failure => {
                error!(error = %why, "the spool failed: stopping");
                Some(why)
            }
            () = crate::listener::accept_loop(&public, &state, &slots, &closing_rx) => None,
        };
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
        background.stop(&state, failure.is_some(), finished).await;
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

/// The tasks that run beside the accept loop, stopped in order at shutdown.
struct Background {
    admin: JoinHandle<()>,
    sweeper: JoinHandle<()>,
    auditor: JoinHandle<()>,
    watcher: Option<JoinHandle<()>>,
    spool: Vec<JoinHandle<()>>,
}

impl Background {
    /// Starts the admin listener, the reload watch, the audit flush, the limiter sweep and the
    /// spool's writer and replayer.
    fn start(state: &Arc<State>, admin: TcpListener, ready: Arc<AtomicBool>) -> Background {
        let config = state.live().config.clone();
        let reloader = crate::reload::Reloader {
            state: Arc::clone(state),
        };
        let watcher = config
            .watch_interval
            .map(|interval| tokio::spawn(crate::reload::watch(reloader, interval)));
        let auditor = {
            let state = Arc::clone(state);
            let interval = config.audit.interval;
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(interval);
                tick.tick().await;
                loop {
                    tick.tick().await;
                    flush_audit(&state).await;
                }
            })
        };
        let admin = tokio::spawn(crate::admin::serve(admin, Arc::clone(state), ready));
        let sweeper = {
            let state = Arc::clone(state);
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(30));
                loop {
                    tick.tick().await;
                    state.limiter.sweep();
                    metrics::gauge!(telemetry::TRACKED_TOKENS).set(state.limiter.tracked() as f64);
                }
            })
        };
        let spool = match &state.spool {
            Some(spool) => spool.start(Arc::clone(&state.upstream)),
            None => Vec::new(),
        };
        Background {
            admin,
            sweeper,
            auditor,
            watcher,
            spool,
        }
    }

    /// Stops the tasks, writes the `stop` event (and pushes the last audit lines), and closes
    /// the spool (its progress persisted).
    async fn stop(self, state: &State, spool_failed: bool, finished: bool) {
        self.admin.abort();
        self.sweeper.abort();
        self.auditor.abort();
        if let Some(w) = self.watcher {
            w.abort();
        }
        let reason = match (spool_failed, finished) {
            (true, _) => "spool_failure",
            (false, true) => "shutdown",
            (false, false) => "shutdown_grace_expired",
        };
        state
            .audit
            .emit("stop", serde_json::json!({ "reason": reason }));
        flush_audit(state).await;
        for task in self.spool {
            task.abort();
        }
        if let Some(spool) = &state.spool {
            spool.close().await;
        }
    }
}

/// Writes the aggregated audit events, and pushes the audit lines to the audit workspace
/// when one is configured, by the rule every batch follows (`forward`): to the
/// upstream, or into the spool when it cannot take them now.
async fn flush_audit(state: &State) {
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
    let mut headers = HeaderMap::new();
    headers.insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/line-protocol"),
    );
    headers.insert(
        crate::request::X_POINTS.clone(),
        HeaderValue::from(lines.len()),
    );
    let Ok(uri) = http::uri::PathAndQuery::try_from(format!("/v1/write/logging?token={token}"))
    else {
        crate::telemetry::audit_lines("push_failed", lines.len() as u64);
        warn!("the audit workspace token cannot be sent in a URI; audit lines not pushed");
        return;
    };
    let out = Outbound {
        uri,
        headers,
        body: Bytes::from(crate::audit::as_logging_points(&lines, nanos)),
        agent: None,
    };
    match crate::forward::deliver(state, out).await {
        Ok(_) => crate::telemetry::audit_lines("pushed", lines.len() as u64),
        Err(e) => {
            crate::telemetry::audit_lines("push_failed", lines.len() as u64);
            warn!(error = %e, lines = lines.len(), "audit lines not delivered to the audit workspace");
        }
    }
}
