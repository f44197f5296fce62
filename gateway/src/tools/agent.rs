//! `oneway agent`: mutual TLS for an unmodified DataKit (reference/datakit-protocol.md §1).
//!
//! DataKit cannot present a client certificate. The agent runs next to it, listens on
//! loopback for plain HTTP (the DataWay URL DataKit is given, or its `http_proxy`), and sends
//! each request over mTLS to the gateway, keeping connections alive. It holds nothing but the
//! request in flight (DataKit's fail-cache keeps what must be retried), relays every answer
//! unchanged (a 5xx stays a 5xx, so DataKit retries), and only ever connects to the gateway
//! addresses it was given: a proxy request naming any other host is refused, `CONNECT` too.
//!
//! Cancel safety: each relayed request is its own task; dropping it (DataKit gone, the deadline)
//! drops the gateway request too, and DataKit, which saw no answer, sends the batch again.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Either, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::tls::TlsError;

/// Headers that belong to one hop and are never relayed.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// `oneway agent`'s settings.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    /// Where DataKit connects (plain HTTP; loopback unless `allow_non_loopback`).
    pub listen: SocketAddr,
    /// Accept a non-loopback `listen` address (anyone who reaches it pushes as this agent).
    pub allow_non_loopback: bool,
    /// The gateway's addresses (IP:port), used in turn; the only destinations.
    pub gateways: Vec<SocketAddr>,
    /// The name the gateway's certificate must carry.
    pub server_name: String,
    /// The CA that issued the gateway's certificate.
    pub ca: PathBuf,
    /// This agent's client certificate (PEM chain).
    pub cert: PathBuf,
    /// Its key.
    pub key: PathBuf,
    /// TCP connect deadline per gateway address.
    pub connect_timeout: Duration,
    /// Whole-request deadline (DataKit's own is 30 s).
    pub request_timeout: Duration,
    /// Largest request body relayed.
    pub max_body_bytes: usize,
}

/// Why the agent cannot start.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// The listen address is not loopback.
    #[error(
        "--listen {0} is not a loopback address: anyone who reaches it would push with this agent's certificate (add --allow-non-loopback if that is intended)"
    )]
    NotLoopback(SocketAddr),
    /// No gateway address.
    #[error("at least one --gateway address is needed")]
    NoGateway,
    /// TLS material.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// Binding the listener.
    #[error("cannot listen on {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A bound agent.
pub struct Agent {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Agent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Agent")
            .field("listen", &self.listener.local_addr().ok())
            .field("gateways", &self.shared.config.gateways)
            .finish()
    }
}

struct Shared {
    config: AgentConfig,
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    next: AtomicUsize,
}

type AgentBody = Either<Incoming, Full<Bytes>>;

impl Agent {
    /// Loads the TLS material and binds the listener. Starts no thread and needs no runtime, so
    /// `oneway agent` can enter its sandbox afterwards, before the runtime's threads start.
    pub fn bind(config: AgentConfig) -> Result<Agent, AgentError> {
        if !config.listen.ip().is_loopback() && !config.allow_non_loopback {
            return Err(AgentError::NotLoopback(config.listen));
        }
        if config.gateways.is_empty() {
            return Err(AgentError::NoGateway);
        }
        let tls =
            crate::tools::client::client_config(&config.ca, Some((&config.cert, &config.key)))?;
        let name = rustls_pki_types::ServerName::try_from(config.server_name.clone())
            .map_err(|e| TlsError::Rustls(format!("--server-name: {e}")))?;
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_only()
            .with_server_name_resolver(FixedServerNameResolver::new(name))
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .pool_max_idle_per_host(64)
            .pool_timer(TokioTimer::new())
            .build(connector);
        let bind_error = |source| AgentError::Bind {
            address: config.listen,
            source,
        };
        let listener = std::net::TcpListener::bind(config.listen).map_err(bind_error)?;
        listener.set_nonblocking(true).map_err(bind_error)?;
        Ok(Agent {
            listener,
            shared: Arc::new(Shared {
                config,
                client,
                next: AtomicUsize::new(0),
            }),
        })
    }

    /// The address DataKit connects to.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes; requests in flight are given the request timeout.
    pub async fn serve(self, shutdown: impl std::future::Future<Output = ()>) {
        let listener = match TcpListener::from_std(self.listener) {
            Ok(l) => l,
            Err(e) => {
                warn!(error = %e, "agent: the listener cannot be served");
                return;
            }
        };
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                () = &mut shutdown => break,
                accepted = listener.accept() => {
                    let Ok((stream, _)) = accepted else { continue };
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&self.shared);
                    let service = service_fn(move |request: Request<Incoming>| {
                        let shared = Arc::clone(&shared);
                        async move { Ok::<_, Infallible>(relay(&shared, request).await) }
                    });
                    let connection = hyper::server::conn::http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(Duration::from_secs(30))
                        .serve_connection(TokioIo::new(stream), service);
                    let connection = graceful.watch(connection);
                    tokio::spawn(async move {
                        if let Err(e) = connection.await {
                            debug!(error = %e, "agent connection ended");
                        }
                    });
                }
            }
        }
        let grace = self.shared.config.request_timeout;
        let _ = tokio::time::timeout(grace, graceful.shutdown()).await;
    }
}

/// What DataKit is told when it asks for a tunnel (the reason phrase of the 405).
pub const CONNECT_HINT: &str =
    "oneway agent adds TLS itself: use an http:// DataWay URL, not https://";
/// [`CONNECT_HINT`] as a reason phrase, checked when this is compiled.
const CONNECT_REASON: hyper::ext::ReasonPhrase =
    hyper::ext::ReasonPhrase::from_static(CONNECT_HINT.as_bytes());

/// An answer the agent makes itself, in Guance's error shape.
fn own(status: StatusCode, code: &str, message: &str) -> Response<AgentBody> {
    let body = serde_json::json!({
        "error_code": format!("oneway.agent_{code}"),
        "message": message,
    });
    let mut response = Response::new(Either::Right(Full::new(Bytes::from(body.to_string()))));
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if status == StatusCode::SERVICE_UNAVAILABLE {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
    }
    response
}

/// Whether an absolute-form request (DataKit's `http_proxy`) names the gateway.
fn names_the_gateway(config: &AgentConfig, authority: &http::uri::Authority) -> bool {
    let host = authority
        .host()
        .trim_start_matches('[')
        .trim_end_matches(']');
    host.eq_ignore_ascii_case(&config.server_name)
        || config.gateways.iter().any(|g| {
            host.parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip == g.ip())
        })
}

async fn relay(shared: &Shared, request: Request<Incoming>) -> Response<AgentBody> {
    let config = &shared.config;
    if request.method() == Method::CONNECT {
        // DataKit with an https:// DataWay URL and this agent as its http_proxy asks for a
        // tunnel. Go's client reports only the reason phrase of a refused CONNECT, so the
        // hint goes there, where DataKit's log shows it.
        warn!(
            target = %request.uri(),
            "agent: DataKit asked for a CONNECT tunnel: its DataWay URL is https://; make it \
             http:// (the agent adds the TLS and the client certificate itself)"
        );
        let mut refused = own(
            StatusCode::METHOD_NOT_ALLOWED,
            "connect_refused",
            CONNECT_HINT,
        );
        refused.extensions_mut().insert(CONNECT_REASON);
        return refused;
    }
    if let Some(authority) = request.uri().authority()
        && !names_the_gateway(config, authority)
    {
        warn!(host = %authority.host(), "agent: refused a request for another host");
        return own(
            StatusCode::FORBIDDEN,
            "host_refused",
            "the agent only forwards to its gateway",
        );
    }
    let (parts, body) = request.into_parts();
    let body = match Limited::new(body, config.max_body_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            return own(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body_too_large",
                &format!("the body is larger than {} bytes", config.max_body_bytes),
            );
        }
        Err(_) => {
            return own(
                StatusCode::BAD_REQUEST,
                "body_read",
                "the body could not be read",
            );
        }
    };
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut headers = parts.headers;
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
    headers.remove(header::HOST);
    let start = shared.next.fetch_add(1, Ordering::Relaxed);
    let n = config.gateways.len();
    for k in 0..n {
        let gateway = config.gateways[(start + k) % n];
        let Ok(uri) = format!("https://{gateway}{path}").parse::<http::Uri>() else {
            return own(
                StatusCode::BAD_REQUEST,
                "bad_path",
                "the request path is not valid",
            );
        };
        let mut forwarded = Request::new(Full::new(body.clone()));
        *forwarded.method_mut() = parts.method.clone();
        *forwarded.uri_mut() = uri;
        *forwarded.headers_mut() = headers.clone();
        if let Ok(host) = HeaderValue::from_str(&config.server_name) {
            forwarded.headers_mut().insert(header::HOST, host);
        }
        match tokio::time::timeout(config.request_timeout, shared.client.request(forwarded)).await {
            Ok(Ok(response)) => {
                let (mut parts, body) = response.into_parts();
                for name in HOP_BY_HOP {
                    parts.headers.remove(*name);
                }
                return Response::from_parts(parts, Either::Left(body));
            }
            // Nothing was sent: another gateway address may take it.
            Ok(Err(e)) if e.is_connect() => {
                warn!(%gateway, error = %e, "agent: gateway unreachable");
            }
            Ok(Err(e)) => {
                warn!(%gateway, error = %e, "agent: the gateway connection failed");
                return own(
                    StatusCode::BAD_GATEWAY,
                    "gateway_failed",
                    "the connection to the gateway failed; retry",
                );
            }
            Err(_) => {
                return own(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway_timeout",
                    "the gateway did not answer in time; retry",
                );
            }
        }
    }
    own(
        StatusCode::SERVICE_UNAVAILABLE,
        "gateway_unreachable",
        "no gateway address could be reached; retry later",
    )
}

/// `oneway agent`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Where DataKit connects (its DataWay URL, or its `http_proxy`).
    #[arg(long, default_value = "127.0.0.1:9529")]
    listen: SocketAddr,
    /// Accept a --listen address that is not loopback.
    #[arg(long)]
    allow_non_loopback: bool,
    /// A gateway address, IP:port (repeatable; used in turn). The only destinations.
    #[arg(long = "gateway", required = true)]
    gateways: Vec<SocketAddr>,
    /// The name in the gateway's certificate.
    #[arg(long)]
    server_name: String,
    #[command(flatten)]
    tls: super::client::TlsArgs,
    /// TCP connect deadline per gateway address, in milliseconds.
    #[arg(long, default_value_t = 5000)]
    connect_timeout_ms: u64,
    /// Whole-request deadline, in milliseconds.
    #[arg(long, default_value_t = 30000)]
    request_timeout_ms: u64,
    /// Largest request body relayed, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_body_bytes: usize,
    /// The kernel sandbox once bound: TCP connect only to the gateway ports, no files, no
    /// other sockets, no execve. required (the default), best-effort or off.
    #[arg(long, default_value = "required", value_parser = ["required", "best-effort", "off"])]
    sandbox: String,
    /// After entering the sandbox, try a TCP connect to ADDR; with --sandbox required, the
    /// agent does not start unless the kernel refuses it (repeatable; a check for operators).
    #[arg(long, value_name = "ADDR")]
    probe_connect: Vec<SocketAddr>,
}

/// `oneway agent`: binds and loads its certificates, enters the sandbox (the agent faces the
/// Guance side's answers from inside the customer's network: compromised, it must still reach
/// nothing but the gateway), then serves until SIGTERM or SIGINT.
pub fn main(args: Args) -> super::Result<std::process::ExitCode> {
    use std::process::ExitCode;

    use crate::sandbox;
    super::init_logging();
    let mode = sandbox::SandboxMode::parse(&args.sandbox).unwrap_or_default();
    let config = AgentConfig {
        listen: args.listen,
        allow_non_loopback: args.allow_non_loopback,
        gateways: args.gateways,
        server_name: args.server_name,
        ca: args.tls.ca,
        cert: args.tls.cert,
        key: args.tls.key,
        connect_timeout: Duration::from_millis(args.connect_timeout_ms),
        request_timeout: Duration::from_millis(args.request_timeout_ms),
        max_body_bytes: args.max_body_bytes,
    };
    let plan = sandbox::Plan {
        connect_ports: config.gateways.iter().map(|a| a.port()).collect(),
        ..sandbox::Plan::default()
    };
    let agent = match Agent::bind(config) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("oneway agent: {e}");
            return Ok(ExitCode::from(super::EXIT_USAGE));
        }
    };
    let listen = agent.local_addr()?;
    let workers = std::thread::available_parallelism().map_or(2, std::num::NonZero::get);
    let report = sandbox::enter(mode, &plan).and_then(|mut report| {
        sandbox::self_test(&mut report, listen.port(), &args.probe_connect)?;
        Ok(report)
    });
    let report = match report {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, kind = e.kind(), "sandbox: not starting");
            eprintln!(
                "oneway agent: {e} (for the agent: --sandbox best-effort runs with what this kernel has)"
            );
            return Ok(ExitCode::from(sandbox::EXIT_SANDBOX));
        }
    };
    // One line for operators and scripts: what the kernel enforces.
    super::report_line(&format!(
        "oneway agent: sandbox {}",
        serde_json::to_string(&report)?
    ));
    super::runtime(Some(workers))?.block_on(async {
        tracing::info!(listen = %listen, sandbox = report.state, "agent listening");
        agent.serve(super::shutdown_signal()).await;
    });
    Ok(ExitCode::SUCCESS)
}
