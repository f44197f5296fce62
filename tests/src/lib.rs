//! The integration-test harness: a generated PKI, a recording fake upstream, an in-process
//! gateway on `127.0.0.1:0`, and an mTLS client.
//!
//! ```ignore
//! let upstream = FakeUpstream::start().await;
//! let gw = TestGateway::builder().upstream(&upstream).start().await;
//! let r = gw.client("agent-1").post("/v1/write/metric?token=…", headers, body).await?;
//! ```
//!
//! Nothing sleeps to synchronise: the fake upstream records every request as it completes.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use oneway_gateway::tools::certs::{ClientEku, ClientSpec, PkiSpec, generate};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpListener;

/// The token bound to `agent-1` (mapped upstream to [`WORKSPACE_TOKEN`]).
pub const TOKEN_1: &str = "tkn_agent100000000000000000000000000";
/// The token bound to `agent-2` (not mapped).
pub const TOKEN_2: &str = "tkn_agent200000000000000000000000000";
/// The workspace token the gateway forwards for [`TOKEN_1`].
pub const WORKSPACE_TOKEN: &str = "tkn_workspace00000000000000000000000";

/// A request the fake upstream received.
#[derive(Debug, Clone)]
pub struct Received {
    /// Method.
    pub method: http::Method,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body, as received.
    pub body: Bytes,
    /// The status it was answered with.
    pub status: u16,
}

/// How the fake upstream answers.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// This status, empty JSON body.
    Status(u16),
    /// Wait, then 200.
    Slow(Duration),
    /// This status, `Content-Type` and body.
    Reply(u16, &'static str, &'static str),
    /// This status and a JSON body of this many bytes.
    Large(u16, usize),
}

/// A recording upstream on loopback.
#[derive(Debug, Clone)]
pub struct FakeUpstream {
    /// Its address.
    pub addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    mode: Arc<Mutex<Mode>>,
    arrived: Arc<tokio::sync::Notify>,
    connections: Arc<std::sync::atomic::AtomicUsize>,
}

impl FakeUpstream {
    /// Starts one answering 200.
    pub async fn start() -> FakeUpstream {
        FakeUpstream::start_with(None, "127.0.0.1:0".parse().expect("addr")).await
    }

    /// Starts one answering 200 on `addr` (an upstream coming back where it was).
    pub async fn start_on(addr: SocketAddr) -> FakeUpstream {
        FakeUpstream::start_with(None, addr).await
    }

    /// Starts one answering 200 over TLS with `pki`'s server certificate (`localhost`,
    /// `127.0.0.1`).
    pub async fn start_tls(pki: &TestPki) -> FakeUpstream {
        let certs = CertificateDer::pem_file_iter(pki.path("server.pem"))
            .expect("server cert")
            .collect::<Result<Vec<_>, _>>()
            .expect("server cert");
        let key = PrivateKeyDer::from_pem_file(pki.path("server.key")).expect("server key");
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        FakeUpstream::start_with(
            Some(tokio_rustls::TlsAcceptor::from(Arc::new(config))),
            "127.0.0.1:0".parse().expect("addr"),
        )
        .await
    }

    async fn start_with(tls: Option<tokio_rustls::TlsAcceptor>, addr: SocketAddr) -> FakeUpstream {
        let listener = TcpListener::bind(addr).await.expect("bind loopback");
        let up = FakeUpstream {
            addr: listener.local_addr().expect("bound"),
            received: Arc::default(),
            mode: Arc::new(Mutex::new(Mode::Status(200))),
            arrived: Arc::new(tokio::sync::Notify::new()),
            connections: Arc::default(),
        };
        let connections = Arc::clone(&up.connections);
        let (received, mode, arrived) = (
            Arc::clone(&up.received),
            Arc::clone(&up.mode),
            Arc::clone(&up.arrived),
        );
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                connections.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                let (received, mode, arrived) = (
                    Arc::clone(&received),
                    Arc::clone(&mode),
                    Arc::clone(&arrived),
                );
                let tls = tls.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: Request<Incoming>| {
                        let (received, mode, arrived) = (
                            Arc::clone(&received),
                            Arc::clone(&mode),
                            Arc::clone(&arrived),
                        );
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body
                                .collect()
                                .await
                                .map(|b| b.to_bytes())
                                .unwrap_or_default();
                            arrived.notify_one();
                            let mode = *mode.lock().expect("lock");
                            if let Mode::Slow(d) = mode {
                                tokio::time::sleep(d).await;
                            }
                            let (status, content_type, answer) = match mode {
                                Mode::Status(s) => {
                                    (s, "application/json", Bytes::from_static(b"{\"ok\":true}"))
                                }
                                Mode::Slow(_) => (
                                    200,
                                    "application/json",
                                    Bytes::from_static(b"{\"ok\":true}"),
                                ),
                                Mode::Reply(s, ct, body) => {
                                    (s, ct, Bytes::from_static(body.as_bytes()))
                                }
                                Mode::Large(s, n) => {
                                    let mut big = vec![b' '; n.max(2)];
                                    big[0] = b'{';
                                    big[n.max(2) - 1] = b'}';
                                    (s, "application/json", Bytes::from(big))
                                }
                            };
                            received.lock().expect("lock").push(Received {
                                method: parts.method,
                                uri: parts.uri.to_string(),
                                headers: parts.headers,
                                body,
                                status,
                            });
                            let mut resp = Response::new(Full::new(answer));
                            *resp.status_mut() =
                                StatusCode::from_u16(status).expect("valid status");
                            resp.headers_mut()
                                .insert("content-type", content_type.parse().expect("valid"));
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let builder = hyper::server::conn::http1::Builder::new();
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), service)
                                .await;
                        }
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(stream).await {
                                let _ = builder
                                    .serve_connection(TokioIo::new(stream), service)
                                    .await;
                            }
                        }
                    }
                });
            }
        });
        up
    }

    /// An address where nothing listens.
    pub async fn down() -> SocketAddr {
        let l = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        l.local_addr().expect("bound")
    }

    /// Waits until a request has arrived (and is being answered).
    pub async fn arrival(&self) {
        self.arrived.notified().await;
    }

    /// Changes how it answers.
    pub fn set_mode(&self, mode: Mode) {
        *self.mode.lock().expect("lock") = mode;
    }

    /// TCP connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// What it received so far.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().expect("lock").clone()
    }

    /// What it received and answered with a 2xx.
    pub fn delivered(&self) -> Vec<Received> {
        let mut all = self.received();
        all.retain(|r| (200..300).contains(&r.status));
        all
    }

    /// Waits until at least `n` requests were answered with a 2xx, for at most `limit`;
    /// returns them.
    pub async fn wait_delivered(&self, n: usize, limit: Duration) -> Vec<Received> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let got = self.delivered();
            if got.len() >= n || tokio::time::Instant::now() >= deadline {
                return got;
            }
            let _ = tokio::time::timeout_at(deadline, self.arrival()).await;
            // The request is being answered: let the recording land.
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

/// A PKI on disk: `ca.pem`, `ca.key`, `server.pem/.key`, `ca.crl`, and clients `agent-1`,
/// `agent-2`, `revoked`, `expired`, `future` (not yet valid), `server-eku` (EKU serverAuth
/// only), `no-eku` (no EKU extension), `two-sans` (DNS `two-sans` and `agent-1`); plus a
/// second, unrelated CA's client `stranger`.
#[derive(Debug)]
pub struct TestPki {
    dir: tempfile::TempDir,
}

impl TestPki {
    /// Generates it.
    pub fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("tempdir");
        let client = |name: &str, revoked: bool, expired: bool| ClientSpec {
            name: name.into(),
            dns: vec![name.into()],
            uris: vec![],
            revoked,
            expired,
            ..ClientSpec::default()
        };
        generate(&PkiSpec {
            server_names: vec!["localhost".into(), "127.0.0.1".into()],
            clients: vec![
                client("agent-1", false, false),
                client("agent-2", false, false),
                client("revoked", true, false),
                client("expired", false, true),
                ClientSpec {
                    not_yet_valid: true,
                    ..client("future", false, false)
                },
                ClientSpec {
                    eku: ClientEku::ServerAuthOnly,
                    ..client("server-eku", false, false)
                },
                ClientSpec {
                    eku: ClientEku::None,
                    ..client("no-eku", false, false)
                },
                ClientSpec {
                    dns: vec!["two-sans".into(), "agent-1".into()],
                    ..client("two-sans", false, false)
                },
            ],
            valid_days: 30,
        })
        .expect("pki")
        .write(dir.path())
        .expect("write pki");
        let other = generate(&PkiSpec {
            server_names: vec!["localhost".into()],
            clients: vec![client("agent-1", false, false)],
            valid_days: 30,
        })
        .expect("pki");
        let (_, cert, key) = &other.clients[0];
        std::fs::write(dir.path().join("stranger.pem"), cert).expect("write");
        std::fs::write(dir.path().join("stranger.key"), key).expect("write");
        TestPki { dir }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A file in it.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

impl Default for TestPki {
    fn default() -> Self {
        TestPki::new()
    }
}

/// Builds a [`TestGateway`].
#[derive(Debug, Default)]
pub struct Builder {
    pki: Option<TestPki>,
    upstreams: Vec<SocketAddr>,
    upstream_extra: String,
    extra: String,
    token_extra: String,
    listener: Vec<(String, String)>,
    audit_extra: String,
    watch_interval_ms: Option<u64>,
    forward_extra: String,
}

impl Builder {
    /// Appends raw TOML to the `[forward]` table.
    pub fn forward(mut self, extra: &str) -> Builder {
        self.forward_extra.push_str(extra);
        self.forward_extra.push('\n');
        self
    }

    /// `reload.watch_interval_ms` (200 unless set; 0: only explicit reloads).
    pub fn reload_watch_interval_ms(mut self, ms: u64) -> Builder {
        self.watch_interval_ms = Some(ms);
        self
    }

    /// Uses this PKI (to share it with a TLS upstream).
    pub fn pki(mut self, pki: TestPki) -> Builder {
        self.pki = Some(pki);
        self
    }

    /// Forwards to this upstream.
    pub fn upstream(mut self, up: &FakeUpstream) -> Builder {
        self.upstreams.push(up.addr);
        self
    }

    /// Forwards to this address.
    pub fn upstream_addr(mut self, addr: SocketAddr) -> Builder {
        self.upstreams.push(addr);
        self
    }

    /// Appends raw TOML to the `[upstream]` section.
    pub fn upstream_toml(mut self, extra: &str) -> Builder {
        self.upstream_extra.push_str(extra);
        self.upstream_extra.push('\n');
        self
    }

    /// Appends raw TOML (new sections).
    pub fn toml(mut self, extra: &str) -> Builder {
        self.extra.push_str(extra);
        self.extra.push('\n');
        self
    }

    /// Sets a `[listener]` key (replacing the harness's value for it), e.g.
    /// `.listener("handshake_timeout_ms", "300")`; `value` is raw TOML.
    pub fn listener(mut self, key: &str, value: &str) -> Builder {
        self.listener.retain(|(k, _)| k != key);
        self.listener.push((key.to_string(), value.to_string()));
        self
    }

    /// Appends raw TOML to the `[audit]` table.
    pub fn audit(mut self, extra: &str) -> Builder {
        self.audit_extra.push_str(extra);
        self.audit_extra.push('\n');
        self
    }

    /// Appends raw TOML to agent-1's `[[tokens]]` entry.
    pub fn token_1(mut self, extra: &str) -> Builder {
        self.token_extra.push_str(extra);
        self.token_extra.push('\n');
        self
    }

    /// Writes the config and starts the gateway in-process.
    pub async fn start(self) -> TestGateway {
        let pki = self.pki.unwrap_or_default();
        let upstreams: Vec<String> = self.upstreams.iter().map(|a| format!("\"{a}\"")).collect();
        let config = format!(
            r#"
[listener]
address = "127.0.0.1:0"
{listener}
[audit]
output = "audit.jsonl"
interval_seconds = 1
{audit_extra}

[reload]
watch_interval_ms = {watch}

[admin]
address = "127.0.0.2:0"

[upstream]
addresses = [{upstreams}]
connect_timeout_ms = 500
response_timeout_ms = 2000
{upstream_extra}

[forward]
identity_header = "X-Oneway-Agent"
{forward_extra}

[[tokens]]
name = "alpha"
token = "{TOKEN_1}"
identities = ["dns:agent-1", "dns:revoked", "dns:expired"]
upstream_token = "{WORKSPACE_TOKEN}"
{token_extra}

[[tokens]]
name = "bravo"
token_sha256 = "{hash2}"
identities = ["dns:agent-2"]

{extra}
"#,
            upstreams = upstreams.join(", "),
            audit_extra = self.audit_extra,
            watch = self.watch_interval_ms.unwrap_or(200),
            forward_extra = self.forward_extra,
            listener = {
                let mut keys: Vec<(String, String)> = [
                    ("server_cert", "\"server.pem\""),
                    ("server_key", "\"server.key\""),
                    ("client_ca", "\"ca.pem\""),
                    ("crls", "[\"ca.crl\"]"),
                    ("handshake_timeout_ms", "2000"),
                    ("header_timeout_ms", "2000"),
                    ("body_timeout_ms", "5000"),
                    ("shutdown_grace_ms", "5000"),
                ]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
                keys.retain(|(k, _)| !self.listener.iter().any(|(o, _)| o == k));
                keys.extend(self.listener.iter().cloned());
                keys.iter()
                    .map(|(k, v)| format!("{k} = {v}\n"))
                    .collect::<String>()
            },
            upstream_extra = self.upstream_extra,
            token_extra = self.token_extra,
            hash2 = hex(&oneway_gateway::auth::sha256(TOKEN_2.as_bytes())),
            extra = self.extra,
        );
        let path = pki.path("oneway.toml");
        std::fs::write(&path, config).expect("write config");
        let config = oneway_gateway::config::Config::load(&path).expect("valid test config");
        let gateway = oneway_gateway::app::Gateway::bind(config).expect("bind");
        let (public, admin) = (gateway.public_addr(), gateway.admin_addr());
        let reloader = gateway.reloader();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(gateway.serve(async {
            let _ = stopped.await;
        }));
        TestGateway {
            public,
            admin,
            stop: Some(stop),
            task,
            pki,
            reloader,
        }
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A gateway running in this process.
#[derive(Debug)]
pub struct TestGateway {
    /// The public (mTLS) address.
    pub public: SocketAddr,
    /// The admin address.
    pub admin: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<oneway_gateway::app::Exit>,
    /// Its PKI.
    pub pki: TestPki,
    reloader: oneway_gateway::reload::Reloader,
}

/// A response as the client saw it.
#[derive(Debug)]
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

impl TestGateway {
    /// A builder.
    pub fn builder() -> Builder {
        Builder::default()
    }

    /// A TLS client presenting `client`'s certificate (`None`: no certificate).
    pub fn tls(&self, client: Option<&str>) -> tokio_rustls::TlsConnector {
        client_tls(&self.pki, client)
    }

    /// Sends one request over a fresh mTLS connection.
    pub async fn request(
        &self,
        client: &str,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        let tls = self.connect_tls(Some(client), b"", None).await?;
        TestGateway::send_on(tls, method, uri, headers, body).await
    }

    /// `POST` a write.
    pub async fn post(
        &self,
        client: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer> {
        self.request(client, "POST", uri, headers, body).await
    }

    /// Reloads its config and TLS material now (as SIGHUP does).
    pub async fn reload(&self) -> Result<(), oneway_gateway::reload::ReloadError> {
        self.reloader.reload("test").await
    }

    /// The audit lines written so far, parsed.
    pub fn audit_lines(&self) -> Vec<serde_json::Value> {
        std::fs::read_to_string(self.pki.path("audit.jsonl"))
            .unwrap_or_default()
            .lines()
            .map(|l| serde_json::from_str(l).expect("each audit line is one JSON object"))
            .collect()
    }

    /// A TLS connection presenting `client`'s certificate (`None`: none), after `prefix` was
    /// written on the TCP connection (a PROXY header), from `source` (`None`: any).
    pub async fn connect_tls(
        &self,
        client: Option<&str>,
        prefix: &[u8],
        source: Option<std::net::IpAddr>,
    ) -> anyhow::Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>> {
        let mut stream = self.connect_tcp(source).await?;
        if !prefix.is_empty() {
            tokio::io::AsyncWriteExt::write_all(&mut stream, prefix).await?;
        }
        Ok(self
            .tls(client)
            .connect(ServerName::try_from("localhost")?.to_owned(), stream)
            .await?)
    }

    /// A plain TCP connection to the public port, from `source` (`None`: any loopback).
    pub async fn connect_tcp(
        &self,
        source: Option<std::net::IpAddr>,
    ) -> anyhow::Result<tokio::net::TcpStream> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        if let Some(ip) = source {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        Ok(socket.connect(self.public).await?)
    }

    /// `POST`s one request over an established stream (HTTP/1.1 via hyper).
    pub async fn request_on<S>(
        stream: S,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        TestGateway::send_on(stream, "POST", uri, headers, body).await
    }

    /// Sends one request over an established stream (HTTP/1.1 via hyper).
    pub async fn send_on<S>(
        stream: S,
        method: &str,
        uri: &str,
        headers: &[(&str, &str)],
        body: Vec<u8>,
    ) -> anyhow::Result<Answer>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header("host", "localhost");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = sender
            .send_request(req.body(Full::new(Bytes::from(body)))?)
            .await?;
        let status = resp.status();
        let headers = resp.headers().clone();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok(Answer {
            status,
            headers,
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }

    /// GETs a path from the admin listener (plain HTTP).
    pub async fn admin(&self, path: &str) -> anyhow::Result<(StatusCode, String)> {
        let stream = tokio::net::TcpStream::connect(self.admin).await?;
        let (mut sender, conn) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(conn);
        let req = Request::builder()
            .uri(path)
            .header("host", "admin")
            .body(Full::new(Bytes::new()))?;
        let resp = sender.send_request(req).await?;
        let status = resp.status();
        let body = resp.into_body().collect().await?.to_bytes();
        Ok((status, String::from_utf8_lossy(&body).into_owned()))
    }

    /// The value of a metric series (sum over series whose labels contain every `labels`).
    pub async fn metric(&self, name: &str, labels: &[&str]) -> f64 {
        let (_, text) = self.admin("/metrics").await.expect("metrics");
        text.lines()
            .filter(|l| l.starts_with(name) && !l.starts_with('#'))
            .filter(|l| labels.iter().all(|lab| l.contains(lab)))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// Asks it to stop and waits; returns whether in-flight requests all finished.
    pub async fn stop(mut self) -> bool {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        (&mut self.task)
            .await
            .is_ok_and(|e| e == oneway_gateway::app::Exit::Clean)
    }

    /// Stops it (as [`Self::stop`]) and hands back its PKI, to start another gateway with the
    /// same certificates.
    pub async fn stop_keep_pki(mut self) -> TestPki {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
        self.pki
    }

    /// Takes the stop signal, to send it while the gateway is in use; then [`Self::join`].
    pub fn stopper(&mut self) -> Option<tokio::sync::oneshot::Sender<()>> {
        self.stop.take()
    }

    /// Waits for the serve task after the [`Self::stopper`] fired.
    pub async fn join(self) -> bool {
        self.task
            .await
            .is_ok_and(|e| e == oneway_gateway::app::Exit::Clean)
    }
}

/// A rustls client config trusting the test CA, presenting `client`'s certificate.
pub fn client_tls(pki: &TestPki, client: Option<&str>) -> tokio_rustls::TlsConnector {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(pki.path("ca.pem")).expect("ca") {
        roots.add(c.expect("ca cert")).expect("add ca");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots);
    let config = match client {
        Some(name) => {
            let certs = CertificateDer::pem_file_iter(pki.path(&format!("{name}.pem")))
                .expect("client cert")
                .collect::<Result<Vec<_>, _>>()
                .expect("client cert");
            let key =
                PrivateKeyDer::from_pem_file(pki.path(&format!("{name}.key"))).expect("client key");
            builder
                .with_client_auth_cert(certs, key)
                .expect("client auth")
        }
        None => builder.with_no_client_auth(),
    };
    tokio_rustls::TlsConnector::from(Arc::new(config))
}

/// gzip at DataKit's level 5.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

/// zstd level 3.
pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(data, 3).expect("in memory")
}
