//! `oneway push`: a DataKit-compatible client for operators and benchmarks.
//!
//! It sends what DataKit sends (protobuf or line protocol, gzip or zstd or identity, DataKit's
//! headers, `?token=`, one category) with a client certificate, over N kept-alive connections,
//! at a target rate or as fast as the gateway answers, for a duration or a count of requests,
//! and summarises: requests/s, points/s, MB/s compressed and decoded, latency percentiles and
//! the count of each status.
//!
//! Cancel safety: the push ends when its duration or count is reached; a request dropped then
//! is not counted.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// The body format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `application/protobuf; proto=com.guance.Point` (`PBPoints`), as DataKit sends by default.
    Protobuf,
    /// `application/line-protocol`.
    LineProtocol,
}

/// The body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// gzip (DataKit's default).
    Gzip,
    /// zstd.
    Zstd,
    /// None.
    Identity,
}

/// What to push.
#[derive(Debug, Clone)]
pub struct PushConfig {
    /// The gateway's address.
    pub gateway: SocketAddr,
    /// The name in its certificate.
    pub server_name: String,
    /// Its CA.
    pub ca: PathBuf,
    /// The client certificate and key.
    pub identity: (PathBuf, PathBuf),
    /// The agent token (`?token=`).
    pub token: String,
    /// The category (`metric`, `logging`, …).
    pub category: String,
    /// Body format (ignored with `file`).
    pub format: Format,
    /// Body encoding.
    pub compression: Compression,
    /// Points per generated batch.
    pub points_per_batch: u64,
    /// A line-protocol file sent as each request's body instead of generated points.
    pub file: Option<PathBuf>,
    /// Concurrent connections.
    pub connections: usize,
    /// Target requests per second over all connections (`None`: as fast as possible).
    pub rate: Option<f64>,
    /// Stop after this long…
    pub duration: Option<Duration>,
    /// …or after this many requests.
    pub count: Option<u64>,
    /// Print a progress line to stderr every second (when it is a terminal).
    pub progress: bool,
    /// Plain HTTP, no TLS (for a peer that does not speak mTLS, in benchmarks).
    pub plain: bool,
    /// Send to this path and query instead of `/v1/write/<category>?token=<token>`.
    pub path: Option<String>,
    /// A new connection (and TLS handshake) for every request.
    pub reconnect: bool,
}

/// The outcome.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct Summary {
    /// Requests answered (any status).
    pub requests: u64,
    /// Requests that failed without an answer (connection errors).
    pub errors: u64,
    /// Answers by status.
    pub statuses: BTreeMap<u16, u64>,
    /// Points in the 2xx-answered requests.
    pub points: u64,
    /// Bytes sent as bodies (compressed), answered 2xx.
    pub bytes_compressed: u64,
    /// The same bodies decoded.
    pub bytes_decoded: u64,
    /// Wall time, seconds.
    pub seconds: f64,
    /// Requests per second.
    pub requests_per_second: f64,
    /// Points per second.
    pub points_per_second: f64,
    /// MB/s (10^6) compressed.
    pub mb_per_second_compressed: f64,
    /// MB/s decoded.
    pub mb_per_second_decoded: f64,
    /// Latency percentiles in milliseconds (`p50`, `p90`, `p99`, `p999`, `max`).
    pub latency_ms: BTreeMap<&'static str, f64>,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} requests in {:.2} s ({} without an answer)",
            self.requests, self.seconds, self.errors
        )?;
        writeln!(
            f,
            "  {:.1} requests/s, {:.0} points/s, {:.2} MB/s compressed, {:.2} MB/s decoded",
            self.requests_per_second,
            self.points_per_second,
            self.mb_per_second_compressed,
            self.mb_per_second_decoded
        )?;
        let l = |k| self.latency_ms.get(k).copied().unwrap_or(0.0);
        writeln!(
            f,
            "  latency ms: p50 {:.2}  p90 {:.2}  p99 {:.2}  p99.9 {:.2}  max {:.2}",
            l("p50"),
            l("p90"),
            l("p99"),
            l("p999"),
            l("max")
        )?;
        let statuses: Vec<String> = self
            .statuses
            .iter()
            .map(|(s, n)| format!("{s}: {n}"))
            .collect();
        write!(f, "  statuses: {}", statuses.join(", "))
    }
}

/// A prepared request body.
struct Body {
    bytes: Bytes,
    decoded: u64,
    points: u64,
}

/// Line protocol shaped like DataKit's host metrics, `points` lines.
pub fn line_protocol(points: u64, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(points as usize * 96);
    for i in 0..points {
        let n = seed.wrapping_mul(7919).wrapping_add(i);
        let _ = writeln!(
            out,
            "cpu,host=host-{h},region=eu-west-1 usage_user={u}i,usage_system={s}i,usage_idle={d}.5 {t}",
            h = n % 16,
            u = n % 100,
            s = (n * 7) % 100,
            d = (n * 13) % 100,
            t = 1_700_000_000_000_000_000u64 + i
        );
    }
    out
}

fn compress(compression: Compression, data: &[u8]) -> std::io::Result<Vec<u8>> {
    match compression {
        Compression::Gzip => {
            let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(3));
            gz.write_all(data)?;
            gz.finish()
        }
        Compression::Zstd => zstd::encode_all(data, 3),
        Compression::Identity => Ok(data.to_vec()),
    }
}

fn bodies(config: &PushConfig) -> super::Result<(Vec<Body>, &'static str)> {
    let raw: Vec<(Vec<u8>, u64)> = match &config.file {
        Some(path) => {
            let data = std::fs::read(path)
                .map_err(|e| super::Error::from(format!("reading {}: {e}", path.display())))?;
            let points = data
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty() && !l.starts_with(b"#"))
                .count() as u64;
            vec![(data, points)]
        }
        None => (0..8)
            .map(|seed| match config.format {
                Format::Protobuf => (
                    crate::tools::quickstart::datakit_batch(config.points_per_batch),
                    config.points_per_batch,
                ),
                Format::LineProtocol => (
                    line_protocol(config.points_per_batch, seed),
                    config.points_per_batch,
                ),
            })
            .collect(),
    };
    let content_type = match (config.file.is_some(), config.format) {
        (false, Format::Protobuf) => oneway_protocol::PROTOBUF_CONTENT_TYPE,
        _ => "application/line-protocol",
    };
    let bodies = raw
        .into_iter()
        .map(|(data, points)| {
            Ok(Body {
                bytes: Bytes::from(compress(config.compression, &data)?),
                decoded: data.len() as u64,
                points,
            })
        })
        .collect::<std::io::Result<Vec<_>>>()?;
    Ok((bodies, content_type))
}

/// The first body `push` would send, as saved by [`save_body`].
#[derive(Debug, Clone, serde::Serialize)]
pub struct SavedBody {
    /// Bytes written (the body as sent, compressed).
    pub bytes: u64,
    /// Its size decoded.
    pub decoded: u64,
    /// Points in it.
    pub points: u64,
    /// The `Content-Type` push sends with it.
    pub content_type: &'static str,
    /// The `Content-Encoding` push sends with it, if any.
    pub content_encoding: Option<&'static str>,
}

fn content_encoding(compression: Compression) -> Option<&'static str> {
    match compression {
        Compression::Gzip => Some("gzip"),
        Compression::Zstd => Some("zstd"),
        Compression::Identity => None,
    }
}

/// Writes the first body `push` would send to `path`, without connecting anywhere: another load
/// tool (or `curl --data-binary @path`) can then send exactly what `push` sends, with the headers
/// in the returned description.
pub fn save_body(config: &PushConfig, path: &std::path::Path) -> super::Result<SavedBody> {
    let (bodies, content_type) = bodies(config)?;
    let first = bodies
        .first()
        .ok_or_else(|| super::Error::from("no body to save"))?;
    std::fs::write(path, &first.bytes)
        .map_err(|e| super::Error::from(format!("writing {}: {e}", path.display())))?;
    Ok(SavedBody {
        bytes: first.bytes.len() as u64,
        decoded: first.decoded,
        points: first.points,
        content_type,
        content_encoding: content_encoding(config.compression),
    })
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u64>,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
    points: u64,
    compressed: u64,
    decoded: u64,
}

/// Runs the push to the end and returns the summary.
pub async fn run(config: PushConfig) -> super::Result<Summary> {
    if config.duration.is_none() && config.count.is_none() {
        return Err(super::Error::from("give --duration or --count"));
    }
    let connector = crate::tools::client::connector(
        &config.ca,
        Some((&config.identity.0, &config.identity.1)),
    )?;
    let (bodies, content_type) = bodies(&config)?;
    let bodies = Arc::new(bodies);
    let encoding = content_encoding(config.compression);
    let uri = config
        .path
        .clone()
        .unwrap_or_else(|| format!("/v1/write/{}?token={}", config.category, config.token));
    let issued = Arc::new(AtomicU64::new(0));
    let answered = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let deadline = config.duration.map(|d| started + d);
    let config = Arc::new(config);
    let progress = (config.progress && std::io::stderr().is_terminal()).then(|| {
        let (answered, done, config) = (
            Arc::clone(&answered),
            Arc::clone(&done),
            Arc::clone(&config),
        );
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            tick.tick().await;
            while !done.load(Ordering::Relaxed) {
                tick.tick().await;
                let n = answered.load(Ordering::Relaxed);
                let secs = started.elapsed().as_secs_f64();
                let fraction = match (config.count, config.duration) {
                    (Some(c), _) => n as f64 / c.max(1) as f64,
                    (None, Some(d)) => secs / d.as_secs_f64(),
                    (None, None) => 0.0,
                }
                .min(1.0);
                let filled = (fraction * 30.0) as usize;
                eprint!(
                    "\r[{}{}] {:>3.0}% {n} requests, {:.0}/s ",
                    "=".repeat(filled),
                    " ".repeat(30 - filled),
                    fraction * 100.0,
                    n as f64 / secs.max(1e-9)
                );
            }
            eprintln!();
        })
    });
    let mut tasks = Vec::new();
    for _ in 0..config.connections.max(1) {
        let (config, bodies, issued, answered, connector, uri) = (
            Arc::clone(&config),
            Arc::clone(&bodies),
            Arc::clone(&issued),
            Arc::clone(&answered),
            connector.clone(),
            uri.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut tally = Tally::default();
            let mut sender = None;
            loop {
                let i = issued.fetch_add(1, Ordering::Relaxed);
                if config.count.is_some_and(|c| i >= c)
                    || deadline.is_some_and(|d| Instant::now() >= d)
                {
                    break;
                }
                if let Some(rate) = config.rate {
                    let due = started + Duration::from_secs_f64(i as f64 / rate);
                    if deadline.is_some_and(|d| due >= d) {
                        break;
                    }
                    tokio::time::sleep_until(due.into()).await;
                }
                let body = &bodies[(i as usize) % bodies.len()];
                // With `reconnect`, latency includes the connection and the handshake.
                let sent = Instant::now();
                if sender.is_none() {
                    sender = connect(&connector, &config).await.ok();
                }
                let Some(s) = sender.as_mut() else {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                };
                let mut request = Request::post(&uri)
                    .header(header::HOST, &config.server_name)
                    .header(header::CONTENT_TYPE, content_type)
                    .header(header::USER_AGENT, "datakit-linux-amd64/1.70.0/oneway-push")
                    .header(header::REFERER, "DataKit");
                if let Some(e) = encoding {
                    request = request.header(header::CONTENT_ENCODING, e);
                }
                let Ok(request) = request.body(Full::new(body.bytes.clone())) else {
                    tally.errors += 1;
                    continue;
                };
                let answer = async {
                    s.ready().await?;
                    let response = s.send_request(request).await?;
                    let status = response.status().as_u16();
                    response.into_body().collect().await?;
                    Ok::<_, hyper::Error>(status)
                }
                .await;
                match answer {
                    Ok(status) => {
                        if config.reconnect {
                            sender = None;
                        }
                        tally.latencies_us.push(sent.elapsed().as_micros() as u64);
                        *tally.statuses.entry(status).or_default() += 1;
                        if (200..300).contains(&status) {
                            tally.points += body.points;
                            tally.compressed += body.bytes.len() as u64;
                            tally.decoded += body.decoded;
                        }
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(_) => {
                        tally.errors += 1;
                        sender = None;
                    }
                }
            }
            tally
        }));
    }
    let mut total = Tally::default();
    for task in tasks {
        let t = task.await?;
        total.latencies_us.extend(t.latencies_us);
        for (s, n) in t.statuses {
            *total.statuses.entry(s).or_default() += n;
        }
        total.errors += t.errors;
        total.points += t.points;
        total.compressed += t.compressed;
        total.decoded += t.decoded;
    }
    done.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let seconds = started.elapsed().as_secs_f64().max(1e-9);
    total.latencies_us.sort_unstable();
    let pct = |q: f64| {
        let l = &total.latencies_us;
        if l.is_empty() {
            return 0.0;
        }
        let i = ((l.len() as f64 * q).ceil() as usize).clamp(1, l.len()) - 1;
        l[i] as f64 / 1000.0
    };
    let requests = total.statuses.values().sum::<u64>();
    Ok(Summary {
        requests,
        errors: total.errors,
        points: total.points,
        bytes_compressed: total.compressed,
        bytes_decoded: total.decoded,
        seconds,
        requests_per_second: requests as f64 / seconds,
        points_per_second: total.points as f64 / seconds,
        mb_per_second_compressed: total.compressed as f64 / 1e6 / seconds,
        mb_per_second_decoded: total.decoded as f64 / 1e6 / seconds,
        latency_ms: BTreeMap::from([
            ("p50", pct(0.50)),
            ("p90", pct(0.90)),
            ("p99", pct(0.99)),
            ("p999", pct(0.999)),
            ("max", pct(1.0)),
        ]),
        statuses: total.statuses,
    })
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(
    connector: &tokio_rustls::TlsConnector,
    config: &PushConfig,
) -> super::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(config.gateway).await?;
    tcp.set_nodelay(true)?;
    if config.plain {
        let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tcp)).await?;
        tokio::spawn(connection);
        return Ok(sender);
    }
    let name = rustls_pki_types::ServerName::try_from(config.server_name.clone())?;
    let tls = connector.connect(name, tcp).await?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

/// Connections held open and idle (for measuring a server's memory per idle connection).
#[derive(Debug)]
pub struct Idle {
    senders: Vec<Sender>,
}

impl Idle {
    /// How many are still open.
    pub fn alive(&self) -> usize {
        self.senders.iter().filter(|s| !s.is_closed()).count()
    }
}

/// Opens `n` connections (TLS handshake and one request each, as a DataKit connection starts)
/// and returns those that opened, idle.
pub async fn open_idle(config: &PushConfig, n: usize) -> super::Result<Idle> {
    let connector = crate::tools::client::connector(
        &config.ca,
        Some((&config.identity.0, &config.identity.1)),
    )?;
    let uri = config
        .path
        .clone()
        .unwrap_or_else(|| format!("/v1/write/{}?token={}", config.category, config.token));
    let body = Bytes::from(line_protocol(1, 0));
    let senders = futures_open(&connector, config, &uri, &body, n)
        .await
        .into_iter()
        .flatten()
        .collect();
    Ok(Idle { senders })
}

async fn futures_open(
    connector: &tokio_rustls::TlsConnector,
    config: &PushConfig,
    uri: &str,
    body: &Bytes,
    n: usize,
) -> Vec<Option<Sender>> {
    let mut out = Vec::with_capacity(n);
    // 64 handshakes at a time.
    for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
        let mut set = tokio::task::JoinSet::new();
        for _ in chunk {
            let (connector, config, uri, body) = (
                connector.clone(),
                config.clone(),
                uri.to_string(),
                body.clone(),
            );
            set.spawn(async move {
                let mut s = connect(&connector, &config).await.ok()?;
                let request = Request::post(uri)
                    .header(header::HOST, &config.server_name)
                    .header(header::CONTENT_TYPE, "application/line-protocol")
                    .body(Full::new(body))
                    .ok()?;
                s.ready().await.ok()?;
                let response = s.send_request(request).await.ok()?;
                response.into_body().collect().await.ok()?;
                Some(s)
            });
        }
        while let Some(r) = set.join_next().await {
            out.push(r.ok().flatten());
        }
    }
    out
}

/// `oneway push`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The gateway's address (IP:port).
    #[arg(long)]
    gateway: SocketAddr,
    /// The name in the gateway's certificate.
    #[arg(long, default_value = "localhost")]
    server_name: String,
    #[command(flatten)]
    tls: super::client::TlsArgs,
    /// The agent token.
    #[arg(long)]
    token: String,
    /// The category: metric, logging, object, …
    #[arg(long, default_value = "metric")]
    category: String,
    /// Body format: pb (protobuf, DataKit's default) or lp (line protocol).
    #[arg(long, default_value = "pb", value_parser = ["pb", "lp"])]
    format: String,
    /// Body encoding: gzip, zstd or identity.
    #[arg(long, default_value = "gzip", value_parser = ["gzip", "zstd", "identity"])]
    encoding: String,
    /// Points per generated batch.
    #[arg(long, default_value_t = 1000)]
    points: u64,
    /// Send this line-protocol file as every request's body instead of generated points.
    #[arg(long)]
    file: Option<PathBuf>,
    /// Concurrent connections.
    #[arg(long, default_value_t = 8)]
    connections: usize,
    /// Target requests per second (all connections together); default: as fast as possible.
    #[arg(long)]
    rate: Option<f64>,
    /// How long to push (`30s`, `500ms`, `2m`).
    #[arg(long, value_parser = parse_duration)]
    duration: Option<Duration>,
    /// How many requests to send.
    #[arg(long)]
    count: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    json: bool,
    /// Plain HTTP without TLS (for benchmarking a peer that does not speak mTLS).
    #[arg(long)]
    plain: bool,
    /// Send to this path and query instead of /v1/write/<category>?token=<token>.
    #[arg(long)]
    path: Option<String>,
    /// A new connection and TLS handshake for every request.
    #[arg(long)]
    reconnect: bool,
    /// Instead of pushing: open this many connections (one request each), hold them idle
    /// for --duration, and say how many stayed open.
    #[arg(long)]
    idle: Option<usize>,
    /// Instead of pushing: write the first body push would send to this file, print what it
    /// is (size, decoded size, points, headers) as JSON, and exit without connecting.
    #[arg(long, conflicts_with = "idle")]
    save_body: Option<PathBuf>,
}

/// `30s`, `500ms`, `2m`, `1h`, or plain seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    let (number, unit) = s
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .map_or((s, "s"), |i| s.split_at(i));
    let value: f64 = number
        .parse()
        .map_err(|_| format!("{s:?} is not a duration like 30s, 500ms or 2m"))?;
    let seconds = match unit {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return Err(format!("{s:?}: the unit is ms, s, m or h")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("{s:?}: {e}"))
}

/// Pushes (or saves a body, or holds idle connections) as `args` say; exit 0 only if every
/// request got a 2xx (or every idle connection stayed open).
pub fn main(args: Args) -> super::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    let config = PushConfig {
        gateway: args.gateway,
        server_name: args.server_name,
        ca: args.tls.ca,
        identity: (args.tls.cert, args.tls.key),
        token: args.token,
        category: args.category,
        format: if args.format == "lp" {
            Format::LineProtocol
        } else {
            Format::Protobuf
        },
        compression: match args.encoding.as_str() {
            "zstd" => Compression::Zstd,
            "identity" => Compression::Identity,
            _ => Compression::Gzip,
        },
        points_per_batch: args.points,
        file: args.file,
        connections: args.connections,
        rate: args.rate,
        duration: args.duration,
        count: args.count,
        progress: !args.json,
        plain: args.plain,
        path: args.path,
        reconnect: args.reconnect,
    };
    if let Some(path) = args.save_body {
        let saved = save_body(&config, &path)?;
        println!("{}", serde_json::to_string(&saved)?);
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(n) = args.idle {
        let hold = config.duration.unwrap_or(Duration::from_secs(10));
        let open = super::runtime(None)?.block_on(async {
            let idle = open_idle(&config, n).await?;
            // Scripts wait for this line before measuring the server.
            eprintln!(
                "{} connections open; holding them for {hold:?}",
                idle.alive()
            );
            tokio::time::sleep(hold).await;
            Ok::<_, super::Error>(idle.alive())
        })?;
        println!("{open} of {n} connections open after {hold:?} idle");
        return Ok(if open == n {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(1)
        });
    }
    if config.duration.is_none() && config.count.is_none() {
        eprintln!("oneway push: give --duration or --count");
        return Ok(ExitCode::from(super::EXIT_USAGE));
    }
    let summary = super::runtime(None)?.block_on(run(config))?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        println!("{summary}");
    }
    let ok = summary.errors == 0 && summary.statuses.keys().all(|s| (200..300).contains(s));
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
