//! The upstream client: a pooled HTTP/1.1 client to the configured literal addresses only.
//!
//! No DNS at run time (names were resolved once at load, inside `upstream.allowed_cidrs`), no
//! proxy from the environment, no redirects followed (hyper's client follows none), deadlines
//! on connect and on the response head. With `upstream.tls_ca`, connections use TLS verified
//! against that CA and `upstream.tls_server_name`, and plain HTTP is refused. Several upstreams are used in turn; one that
//! fails is skipped for a few seconds (health-aware selection), and `/ready` reflects whether
//! any is healthy.
//!
//! Cancel safety: dropping [`Upstream::send`] drops the request and its connection (a pooled one
//! is not reused); whether the upstream took the batch is then unknown, so a caller that drops
//! it has acknowledged nothing, and a retry may duplicate (at least once).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri};
use http_body_util::{BodyExt, Full};
use hyper_rustls::{FixedServerNameResolver, HttpsConnector};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use crate::config::UpstreamConfig;
use crate::telemetry;
use crate::tls::TlsError;

/// How long an upstream that failed is skipped.
const PENALTY: Duration = Duration::from_secs(5);

/// The upstream 4xx answers to a write that are passed on to DataKit as they are (with
/// oneway's own body): each says the batch will never be taken, so DataKit dropping it is
/// right. Every other answer but 2xx (408, 429, other 4xx, 1xx, 3xx, 5xx, no answer) is
/// worth retrying: DataKit gets 503, the spool keeps the batch.
pub const PERMANENT_REFUSALS: [u16; 8] = [400, 401, 403, 404, 406, 413, 415, 422];

/// What an upstream answer to a write means for the batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Taken (2xx).
    Delivered,
    /// Refused for good ([`PERMANENT_REFUSALS`]).
    Refused,
    /// Not taken now; worth retrying.
    Retry,
}

impl Verdict {
    /// The verdict of an answer's status.
    pub fn of(status: http::StatusCode) -> Verdict {
        if status.is_success() {
            Verdict::Delivered
        } else if PERMANENT_REFUSALS.contains(&status.as_u16()) {
            Verdict::Refused
        } else {
            Verdict::Retry
        }
    }
}

/// Who an upstream failure is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Blame {
    /// The upstream: it answered 5xx, or not within the deadline.
    Upstream,
    /// The way there: no connection could be made, or it broke mid-exchange.
    Network,
    /// oneway: a request it cannot send as it built it (retrying cannot help).
    Gateway,
}

/// What went wrong, as a class (its [`UpstreamError::kind`] label is stable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No connection could be made, or it broke before a full answer.
    Unreachable,
    /// No response head (or body) within the deadline.
    Timeout,
    /// The upstream answered 5xx.
    ServerError,
    /// The request could not be sent as built (a path that is no URI).
    BadRequest,
}

/// Why the upstream did not answer usefully: what failed, who is to blame, whether a retry may
/// help, and the underlying cause when there is one (as [`std::error::Error::source`]).
#[derive(Debug, Clone)]
pub struct UpstreamError {
    failure: Failure,
    /// The 5xx status, for [`Failure::ServerError`].
    status: Option<http::StatusCode>,
    cause: Option<Arc<dyn std::error::Error + Send + Sync>>,
}

impl UpstreamError {
    /// A failure of class `failure`.
    pub fn new(failure: Failure) -> UpstreamError {
        UpstreamError {
            failure,
            status: None,
            cause: None,
        }
    }

    /// The same, caused by `cause`.
    pub fn caused_by(
        failure: Failure,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> UpstreamError {
        UpstreamError {
            cause: Some(Arc::from(cause.into())),
            ..UpstreamError::new(failure)
        }
    }

    /// The upstream answered `status` (a 5xx).
    pub fn server_error(status: http::StatusCode) -> UpstreamError {
        UpstreamError {
            status: Some(status),
            ..UpstreamError::new(Failure::ServerError)
        }
    }

    /// What failed.
    pub fn failure(&self) -> Failure {
        self.failure
    }

    /// A stable label for metrics, logs and the split forwarder's error header.
    pub fn kind(&self) -> &'static str {
        match self.failure {
            Failure::Unreachable => "unreachable",
            Failure::Timeout => "timeout",
            Failure::ServerError => "5xx",
            Failure::BadRequest => "bad_request",
        }
    }

    /// Who is to blame.
    pub fn blame(&self) -> Blame {
        match self.failure {
            Failure::Unreachable => Blame::Network,
            Failure::Timeout | Failure::ServerError => Blame::Upstream,
            Failure::BadRequest => Blame::Gateway,
        }
    }

    /// Whether sending the same request again may succeed (everything but oneway's own
    /// mistake: a batch it cannot send now it will never send).
    pub fn retryable(&self) -> bool {
        self.blame() != Blame::Gateway
    }
}

impl std::fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match (self.failure, self.status) {
            (Failure::Unreachable, _) => f.write_str("upstream unreachable"),
            (Failure::Timeout, _) => f.write_str("upstream timed out"),
            (Failure::ServerError, Some(s)) => {
                write!(f, "upstream failed with a server error ({})", s.as_u16())
            }
            (Failure::ServerError, None) => f.write_str("upstream failed with a server error"),
            (Failure::BadRequest, _) => f.write_str("the upstream request could not be built"),
        }
    }
}

impl std::error::Error for UpstreamError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.cause
            .as_deref()
            .map(|c| c as &(dyn std::error::Error + 'static))
    }
}

struct Target {
    address: SocketAddr,
    /// The address as a URI's authority, made once.
    authority: Authority,
    /// Milliseconds since `epoch` until which this target is skipped.
    down_until_ms: AtomicU64,
}

/// How requests reach the upstream.
enum Transport {
    /// Pooled connections to the configured addresses.
    Pool {
        client: Box<Client<Counting<HttpsConnector<HttpConnector>>, Full<Bytes>>>,
        scheme: Scheme,
    },
    /// One HTTP/2 connection over a Unix stream to the forwarder of a split gateway (which
    /// holds the upstream connections), opened on first use.
    Forwarder {
        stream: std::sync::Mutex<Option<std::os::unix::net::UnixStream>>,
        sender: tokio::sync::OnceCell<hyper::client::conn::http2::SendRequest<Full<Bytes>>>,
    },
}

/// The header a forwarder answers with when the upstream failed: the [`UpstreamError::kind`].
pub const FORWARDER_ERROR: &str = "x-oneway-upstream-error";
/// The header a forwarder adds when the upstream's answer was longer than the cap (its body
/// is then only the start).
pub const FORWARDER_TRUNCATED: &str = "x-oneway-answer-truncated";

/// The upstream pool.
pub struct Upstream {
    transport: Transport,
    targets: Vec<Target>,
    next: AtomicUsize,
    epoch: Instant,
    response_timeout: Duration,
    /// How much of an answer's body is read.
    max_answer: usize,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field(
                "targets",
                &self.targets.iter().map(|t| t.address).collect::<Vec<_>>(),
            )
            .finish()
    }
}

/// An upstream answer.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: http::StatusCode,
    /// `Content-Type`, if any.
    pub content_type: Option<http::HeaderValue>,
    /// Body: all of it when `complete`, else its first `upstream.max_answer_bytes`.
    pub body: Bytes,
    /// Whether `body` is the whole body.
    pub complete: bool,
}

impl Upstream {
    /// A client for `config`; must be called inside a tokio runtime.
    pub fn new(config: &UpstreamConfig) -> Result<Arc<Upstream>, TlsError> {
        let mut http = HttpConnector::new();
        http.set_connect_timeout(Some(config.connect_timeout));
        http.set_nodelay(true);
        http.enforce_http(false);
        let provider = crate::tls::provider();
        let builder = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Rustls(e.to_string()))?;
        let (connector, scheme) = match &config.tls {
            Some(tls) => {
                let mut roots = rustls::RootCertStore::empty();
                for ca in crate::tls::load_certs(&tls.ca)? {
                    roots.add(ca).map_err(|e| TlsError::Rustls(e.to_string()))?;
                }
                let name = rustls_pki_types::ServerName::try_from(tls.server_name.clone())
                    .map_err(|e| TlsError::Rustls(format!("upstream.tls_server_name: {e}")))?;
                let client_config = builder.with_root_certificates(roots).with_no_client_auth();
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(client_config)
                    .https_only()
                    .with_server_name_resolver(FixedServerNameResolver::new(name))
                    .enable_http1()
                    .wrap_connector(http);
                (connector, Scheme::HTTPS)
            }
            None => {
                // Plain HTTP inside the isolated network; the TLS side is never used.
                let client_config = builder
                    .with_root_certificates(rustls::RootCertStore::empty())
                    .with_no_client_auth();
                let connector = hyper_rustls::HttpsConnectorBuilder::new()
                    .with_tls_config(client_config)
                    .https_or_http()
                    .enable_http1()
                    .wrap_connector(http);
                (connector, Scheme::HTTP)
            }
        };
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(config.max_idle_connections)
            .build(Counting {
                inner: connector,
                tls: if scheme == Scheme::HTTPS {
                    "true"
                } else {
                    "false"
                },
            });
        Ok(Arc::new(Upstream {
            transport: Transport::Pool {
                client: Box::new(client),
                scheme,
            },
            targets: config
                .addresses
                .iter()
                .map(|&address| {
                    Ok(Target {
                        address,
                        authority: Authority::try_from(address.to_string()).map_err(|e| {
                            TlsError::Rustls(format!("upstream address {address}: {e}"))
                        })?,
                        down_until_ms: AtomicU64::new(0),
                    })
                })
                .collect::<Result<_, TlsError>>()?,
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            response_timeout: config.response_timeout,
            max_answer: config.max_answer_bytes,
        }))
    }

    /// An upstream reached through a split gateway's forwarder over `stream` (the edge's
    /// side): the forwarder holds the real upstream connections.
    pub fn forwarder(
        stream: std::os::unix::net::UnixStream,
        response_timeout: Duration,
        max_answer: usize,
    ) -> Arc<Upstream> {
        Arc::new(Upstream {
            transport: Transport::Forwarder {
                stream: std::sync::Mutex::new(Some(stream)),
                sender: tokio::sync::OnceCell::new(),
            },
            targets: vec![Target {
                address: SocketAddr::from(([0, 0, 0, 0], 0)),
                authority: Authority::from_static("forwarder"),
                down_until_ms: AtomicU64::new(0),
            }],
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            response_timeout,
            max_answer,
        })
    }

    /// Sends over the transport.
    async fn request(
        &self,
        target: &Target,
        request: Request<Full<Bytes>>,
    ) -> Result<Response<hyper::body::Incoming>, UpstreamError> {
        let unreachable = |e: Box<dyn std::error::Error + Send + Sync>| {
            UpstreamError::caused_by(Failure::Unreachable, e)
        };
        let (mut parts, body) = request.into_parts();
        // The request's path and query under the target's scheme and authority, all three
        // already parsed (the path and query once, by the caller).
        let absolute = |scheme: &Scheme, path: Option<&PathAndQuery>| {
            let mut uri = http::uri::Parts::default();
            uri.scheme = Some(scheme.clone());
            uri.authority = Some(target.authority.clone());
            uri.path_and_query = Some(
                path.cloned()
                    .unwrap_or_else(|| PathAndQuery::from_static("/")),
            );
            Uri::from_parts(uri).map_err(|e| UpstreamError::caused_by(Failure::BadRequest, e))
        };
        match &self.transport {
            Transport::Pool { client, scheme } => {
                parts.uri = absolute(scheme, parts.uri.path_and_query())?;
                telemetry::upstream_request_pooled();
                client
                    .request(Request::from_parts(parts, body))
                    .await
                    .map_err(|e| unreachable(e.into()))
            }
            Transport::Forwarder { stream, sender } => {
                parts.uri = absolute(&Scheme::HTTP, parts.uri.path_and_query())?;
                let sender = sender
                    .get_or_try_init(|| async {
                        let std = stream
                            .lock()
                            .ok()
                            .and_then(|mut s| s.take())
                            .ok_or_else(|| unreachable("the forwarder's channel is gone".into()))?;
                        std.set_nonblocking(true).map_err(|e| unreachable(e.into()))?;
                        let io =
                            tokio::net::UnixStream::from_std(std).map_err(|e| unreachable(e.into()))?;
                        let (sender, connection) = hyper::client::conn::http2::handshake(
                            TokioExecutor::new(),
                            hyper_util::rt::TokioIo::new(io),
                        )
                        .await
                        .map_err(|e| unreachable(e.into()))?;
                        tokio::spawn(async move {
                            if let Err(e) = connection.await {
                                tracing::error!(error = %e, "the connection to the forwarder failed");
                            }
                        });
                        Ok::<_, UpstreamError>(sender)
                    })
                    .await?;
                let mut sender = sender.clone();
                sender.ready().await.map_err(|e| unreachable(e.into()))?;
                sender
                    .send_request(Request::from_parts(parts, body))
                    .await
                    .map_err(|e| unreachable(e.into()))
            }
        }
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether any upstream is not being skipped.
    pub fn healthy(&self) -> bool {
        let now = self.now_ms();
        self.targets
            .iter()
            .any(|t| t.down_until_ms.load(Ordering::Relaxed) <= now)
    }

    fn pick(&self) -> &Target {
        let now = self.now_ms();
        let start = self.next.fetch_add(1, Ordering::Relaxed);
        let n = self.targets.len();
        (0..n)
            .map(|k| &self.targets[(start + k) % n])
            .find(|t| t.down_until_ms.load(Ordering::Relaxed) <= now)
            .unwrap_or(&self.targets[start % n])
    }

    /// Sends `request` (its URI holds only path and query) to an upstream; a 5xx or no
    /// answer is an [`UpstreamError`], any other answer is returned (what it means is the
    /// caller's: [`Verdict`]).
    pub async fn send(&self, request: Request<Full<Bytes>>) -> Result<Answer, UpstreamError> {
        let target = self.pick();
        let started = Instant::now();
        let result =
            tokio::time::timeout(self.response_timeout, self.request(target, request)).await;
        telemetry::series!(histogram: Histogram, telemetry::UPSTREAM_DURATION)
            .record(started.elapsed().as_secs_f64());
        let outcome = match result {
            Err(_) => Err(UpstreamError::new(Failure::Timeout)),
            Ok(Err(e)) => Err(e),
            // A forwarder says what happened to the upstream.
            Ok(Ok(ref resp)) if let Some(kind) = resp.headers().get(FORWARDER_ERROR) => {
                Err(UpstreamError::new(match kind.as_bytes() {
                    b"timeout" => Failure::Timeout,
                    b"unreachable" => Failure::Unreachable,
                    b"bad_request" => Failure::BadRequest,
                    _ => Failure::ServerError,
                }))
            }
            Ok(Ok(resp)) if resp.status().is_server_error() => {
                Err(UpstreamError::server_error(resp.status()))
            }
            Ok(Ok(resp)) => read_answer(resp, self.response_timeout, self.max_answer).await,
        };
        let label = match &outcome {
            Ok(a) if a.status.is_success() => "2xx",
            Ok(a) if a.status.is_client_error() => "4xx",
            Ok(_) => "other",
            Err(e) => e.kind(),
        };
        if label == "2xx" {
            telemetry::series!(counter: Counter, telemetry::UPSTREAM_REQUESTS, "outcome" => "2xx")
                .increment(1);
        } else {
            metrics::counter!(telemetry::UPSTREAM_REQUESTS, "outcome" => label).increment(1);
        }
        match outcome {
            Err(e) => {
                // A connection that cannot be made or an answer that does not come: skip the
                // address for a while. A 5xx is an answer; oneway's own mistake is not its.
                if matches!(e.failure(), Failure::Unreachable | Failure::Timeout) {
                    target.down_until_ms.store(
                        self.now_ms() + PENALTY.as_millis() as u64,
                        Ordering::Relaxed,
                    );
                }
                Err(e)
            }
            Ok(a) => {
                target.down_until_ms.store(0, Ordering::Relaxed);
                Ok(a)
            }
        }
    }
}

/// The upstream connector, counting what the pool does: connections opened, open now, connect
/// errors, and the time to connect (with the TLS handshake when the upstream uses TLS).
#[derive(Clone)]
struct Counting<C> {
    inner: C,
    /// The `tls` label: `true` or `false`.
    tls: &'static str,
}

impl<C> tower_service::Service<http::Uri> for Counting<C>
where
    C: tower_service::Service<http::Uri> + Send + 'static,
    C::Future: Send + 'static,
{
    type Response = CountedConnection<C::Response>;
    type Error = C::Error;
    type Future = std::pin::Pin<
        Box<dyn std::future::Future<Output = Result<Self::Response, Self::Error>> + Send>,
    >;

    fn poll_ready(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, uri: http::Uri) -> Self::Future {
        let started = Instant::now();
        let connecting = self.inner.call(uri);
        let tls = self.tls;
        Box::pin(async move {
            match connecting.await {
                Ok(io) => {
                    metrics::histogram!(telemetry::UPSTREAM_CONNECT_DURATION, "tls" => tls)
                        .record(started.elapsed().as_secs_f64());
                    metrics::counter!(telemetry::UPSTREAM_CONNECTIONS_OPENED).increment(1);
                    telemetry::upstream_connection_opened();
                    metrics::gauge!(telemetry::UPSTREAM_CONNECTIONS_OPEN).increment(1.0);
                    Ok(CountedConnection(io))
                }
                Err(e) => {
                    metrics::counter!(telemetry::UPSTREAM_CONNECT_ERRORS).increment(1);
                    Err(e)
                }
            }
        })
    }
}

/// A pooled upstream connection, counted open until dropped.
struct CountedConnection<T>(T);

impl<T> Drop for CountedConnection<T> {
    fn drop(&mut self) {
        metrics::gauge!(telemetry::UPSTREAM_CONNECTIONS_OPEN).decrement(1.0);
    }
}

impl<T: hyper::rt::Read + Unpin> hyper::rt::Read for CountedConnection<T> {
    fn poll_read(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: hyper::rt::ReadBufCursor<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_read(cx, buf)
    }
}

impl<T: hyper::rt::Write + Unpin> hyper::rt::Write for CountedConnection<T> {
    fn poll_write(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write(cx, buf)
    }

    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_flush(cx)
    }

    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_shutdown(cx)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }

    fn poll_write_vectored(
        self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.get_mut().0).poll_write_vectored(cx, bufs)
    }
}

impl<T: hyper_util::client::legacy::connect::Connection>
    hyper_util::client::legacy::connect::Connection for CountedConnection<T>
{
    fn connected(&self) -> hyper_util::client::legacy::connect::Connected {
        self.0.connected()
    }
}

/// Reads an answer, at most `cap` bytes of its body (the rest is not read: the connection
/// is then not reused).
async fn read_answer(
    resp: Response<hyper::body::Incoming>,
    deadline: Duration,
    cap: usize,
) -> Result<Answer, UpstreamError> {
    let status = resp.status();
    let content_type = resp.headers().get(http::header::CONTENT_TYPE).cloned();
    let truncated = resp.headers().contains_key(FORWARDER_TRUNCATED);
    let mut body = resp.into_body();
    let read = async {
        let mut data = bytes::BytesMut::new();
        while let Some(frame) = body.frame().await {
            let frame = frame.map_err(|e| UpstreamError::caused_by(Failure::Unreachable, e))?;
            if let Ok(chunk) = frame.into_data() {
                if data.len() + chunk.len() > cap {
                    data.extend_from_slice(&chunk[..cap - data.len()]);
                    return Ok((data.freeze(), false));
                }
                data.extend_from_slice(&chunk);
            }
        }
        Ok((data.freeze(), true))
    };
    let (body, complete) = tokio::time::timeout(deadline, read)
        .await
        .map_err(|_| UpstreamError::new(Failure::Timeout))??;
    Ok(Answer {
        status,
        content_type,
        body,
        complete: complete && !truncated,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(address: SocketAddr) -> UpstreamConfig {
        UpstreamConfig {
            addresses: vec![address],
            configured: vec![address.to_string()],
            allowed_cidrs: Vec::new(),
            max_answer_bytes: 1 << 20,
            tls: None,
            connect_timeout: Duration::from_secs(2),
            response_timeout: Duration::from_secs(2),
            max_idle_connections: 4,
        }
    }

    #[tokio::test]
    async fn a_refused_connection_is_the_networks_fault_worth_a_retry_and_keeps_its_cause() {
        // A port nothing listens on: bound, then closed.
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port");
        let handle = crate::telemetry::handle();
        let upstream = Upstream::new(&config(closed)).expect("a client");
        let mut request = Request::new(Full::new(Bytes::from_static(b"x")));
        *request.uri_mut() = http::Uri::from_static("/v1/write/metric");
        let e = upstream.send(request).await.expect_err("nothing listens");
        assert_eq!(e.failure(), Failure::Unreachable);
        assert_eq!(e.kind(), "unreachable");
        assert_eq!(e.blame(), Blame::Network);
        assert!(e.retryable());
        let cause = std::error::Error::source(&e).expect("the connect error is kept");
        assert!(!cause.to_string().is_empty());
        assert!(!upstream.healthy(), "the address is skipped for a while");
        let errors: f64 = crate::telemetry::render(&handle)
            .lines()
            .find_map(|l| l.strip_prefix("oneway_upstream_connect_errors_total "))
            .and_then(|v| v.parse().ok())
            .expect("the connect errors are counted");
        assert!(errors >= 1.0, "{errors}");
    }

    #[tokio::test]
    async fn the_request_reaches_an_ipv6_upstream_with_its_path_query_and_host() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let Ok(listener) = tokio::net::TcpListener::bind("[::1]:0").await else {
            eprintln!("skipped: no IPv6 loopback here");
            return;
        };
        let address = listener.local_addr().expect("address");
        let served = tokio::spawn(async move {
            let (mut stream, _) = listener.accept().await.expect("accept");
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = stream.read(&mut buf).await.expect("read");
                assert!(n > 0, "closed before the head ended");
                head.extend_from_slice(&buf[..n]);
            }
            stream
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}")
                .await
                .expect("answer");
            String::from_utf8_lossy(&head).into_owned()
        });
        let upstream = Upstream::new(&config(address)).expect("a client");
        let mut request = Request::new(Full::new(Bytes::from_static(b"cpu v=1i 1\n")));
        *request.method_mut() = http::Method::POST;
        *request.uri_mut() = http::Uri::from_static("/v1/write/metric?precision=ms&token=tkn_x");
        let answer = upstream.send(request).await.expect("answered");
        assert_eq!(answer.status, http::StatusCode::OK);
        let head = served.await.expect("served").to_ascii_lowercase();
        assert!(
            head.starts_with("post /v1/write/metric?precision=ms&token=tkn_x http/1.1\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("\r\nhost: {address}\r\n")), "{head}");
    }

    #[test]
    fn blame_and_retry_follow_the_failure() {
        let server = UpstreamError::server_error(http::StatusCode::BAD_GATEWAY);
        assert_eq!(
            (server.blame(), server.retryable(), server.kind()),
            (Blame::Upstream, true, "5xx")
        );
        assert_eq!(
            server.to_string(),
            "upstream failed with a server error (502)"
        );
        let timeout = UpstreamError::new(Failure::Timeout);
        assert_eq!(
            (timeout.blame(), timeout.retryable()),
            (Blame::Upstream, true)
        );
        let ours = UpstreamError::caused_by(Failure::BadRequest, "no URI");
        assert_eq!((ours.blame(), ours.retryable()), (Blame::Gateway, false));
        assert_eq!(
            std::error::Error::source(&ours).map(ToString::to_string),
            Some("no URI".to_string())
        );
    }
}
