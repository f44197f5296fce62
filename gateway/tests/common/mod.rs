//! Shared by the binary tests: launching the real `oneway` binary on a quickstart-made PKI and
//! config, pushing with curl, and a threaded upstream that records what it accepted.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub(crate) const ONEWAY: &str = env!("CARGO_BIN_EXE_oneway");

/// Writes a quickstart PKI and a config pointed at `upstream`, with `extra` TOML appended.
pub(crate) fn prepare(dir: &std::path::Path, upstream: &str, extra: &str) {
    if !dir.join("ca.pem").exists() {
        let status = Command::new(ONEWAY)
            .args(["quickstart", "--dir"])
            .arg(dir)
            .output()
            .unwrap();
        assert!(status.status.success());
        std::fs::copy(dir.join("oneway.toml"), dir.join("quickstart.toml")).unwrap();
    }
    let config = std::fs::read_to_string(dir.join("quickstart.toml")).unwrap();
    let start = config.find("addresses = [").unwrap();
    let end = start + config[start..].find(']').unwrap() + 1;
    let config = format!(
        "{}addresses = [\"{upstream}\"]\nresponse_timeout_ms = 10000{}\n{extra}\n",
        &config[..start],
        &config[end..]
    );
    std::fs::write(dir.join("oneway.toml"), config).unwrap();
}

/// Runs `oneway run` on `dir`'s config; returns it with its public address once it listens.
pub(crate) fn launch(dir: &std::path::Path) -> (std::process::Child, std::net::SocketAddr) {
    let (child, public, _) = launch_with(dir, &[]);
    (child.into_inner(), public)
}

/// A gateway process, killed if the test ends without stopping it (so a failing test cannot
/// leave it holding the test's output open).
#[derive(Debug)]
pub(crate) struct Running(Option<std::process::Child>);

impl Running {
    /// Guards `child`.
    pub(crate) fn new(child: std::process::Child) -> Running {
        Running(Some(child))
    }

    /// The process, no longer killed on drop.
    pub(crate) fn into_inner(mut self) -> std::process::Child {
        self.0.take().unwrap()
    }
}

impl std::ops::Deref for Running {
    type Target = std::process::Child;
    fn deref(&self) -> &std::process::Child {
        self.0.as_ref().unwrap()
    }
}

impl std::ops::DerefMut for Running {
    fn deref_mut(&mut self) -> &mut std::process::Child {
        self.0.as_mut().unwrap()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(child) = &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// [`launch`] with more arguments; also returns the admin address.
pub(crate) fn launch_with(
    dir: &std::path::Path,
    args: &[String],
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    launch_wrapped(&[], dir, args)
}

/// [`launch_with`] under a wrapper command (`ip netns exec NS`).
pub(crate) fn launch_wrapped(
    wrapper: &[&str],
    dir: &std::path::Path,
    args: &[String],
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    let (child, public, admin, _) = launch_logged(wrapper, dir, args);
    (child, public, admin)
}

/// [`launch_wrapped`], with the process's log (kept as it goes on).
pub(crate) fn launch_logged(
    wrapper: &[&str],
    dir: &std::path::Path,
    args: &[String],
) -> (Running, std::net::SocketAddr, std::net::SocketAddr, Log) {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg(ONEWAY);
            c
        }
        None => Command::new(ONEWAY),
    };
    let mut child = command
        .args(["run", "--config"])
        .arg(dir.join("oneway.toml"))
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, log) = read_log(child.stderr.take().unwrap());
    let deadline = Instant::now() + Duration::from_secs(20);
    let field = |line: &str, name: &str| -> Option<std::net::SocketAddr> {
        let rest = line.split(name).nth(1)?;
        rest.split_whitespace().next()?.parse().ok()
    };
    let (public, admin) = loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("gateway did not report its address in time");
        };
        if let (Some(public), Some(admin)) = (field(&line, "public="), field(&line, "admin=")) {
            break (public, admin);
        }
    };
    // Wait until it serves (the sandbox is entered in between), keeping the log drained
    // afterwards so it never blocks on a full pipe.
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            panic!("gateway did not start serving in time");
        };
        if line.contains("serving") {
            break;
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (Running(Some(child)), public, admin, log)
}

/// The JSON after `prefix` on the first line of `log` that has it, waiting up to 20 s.
pub(crate) fn logged_json(log: &Log, prefix: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let found = log
            .lock()
            .unwrap()
            .iter()
            .find_map(|l| l.split_once(prefix).map(|(_, json)| json.to_string()));
        if let Some(json) = found {
            return serde_json::from_str(&json).unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "no line with {prefix:?} in the log"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// [`prepare`] then [`launch`].
pub(crate) fn start_gateway(
    dir: &std::path::Path,
    upstream: &str,
    extra: &str,
) -> (std::process::Child, std::net::SocketAddr) {
    prepare(dir, upstream, extra);
    launch(dir)
}

/// Pushes line protocol with the quickstart's agent certificate and token through `curl`;
/// `data` is curl's `--data-binary` argument (text, or `@file`). Returns the HTTP status.
pub(crate) fn curl_push(dir: &std::path::Path, addr: std::net::SocketAddr, data: &str) -> String {
    curl_push_to(&[], dir, addr, data)
}

/// [`curl_push`] to `addr` (any address, the certificate names `localhost`), under a
/// wrapper command (`ip netns exec NS`).
pub(crate) fn curl_push_to(
    wrapper: &[&str],
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
    data: &str,
) -> String {
    let mut command = match wrapper.split_first() {
        Some((program, rest)) => {
            let mut c = Command::new(program);
            c.args(rest).arg("curl");
            c
        }
        None => Command::new("curl"),
    };
    let out = command
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "20",
        ])
        .arg("--resolve")
        .arg(format!("localhost:{}:{}", addr.port(), addr.ip()))
        .arg("--cacert")
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("agent-1.pem"))
        .arg("--key")
        .arg(dir.join("agent-1.key"))
        .args([
            "-H",
            "Content-Type: application/line-protocol",
            "--data-binary",
            data,
        ])
        .arg(format!(
            "https://localhost:{}/v1/write/metric?token={}",
            addr.port(),
            oneway_gateway::tools::quickstart::AGENT_TOKEN
        ))
        .output()
        .unwrap();
    let status = String::from_utf8_lossy(&out.stdout).into_owned();
    if status != "200" {
        eprintln!("curl: {status} {}", String::from_utf8_lossy(&out.stderr));
    }
    status
}

/// The audit trail's events (`audit.jsonl` in `dir`).
pub(crate) fn audit(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("audit.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

/// The last `start` event.
pub(crate) fn start_event(dir: &std::path::Path) -> serde_json::Value {
    audit(dir)
        .into_iter()
        .rfind(|e| e["event"] == "start")
        .expect("a start event")
}

/// The self-test attempt named `probe` in a list of them.
pub(crate) fn probe<'a>(probes: &'a serde_json::Value, probe: &str) -> &'a serde_json::Value {
    probes
        .as_array()
        .and_then(|list| list.iter().find(|p| p["probe"] == probe))
        .unwrap_or_else(|| panic!("no probe {probe} in {probes}"))
}

/// A port that listens on this host but is not an upstream's: a connect to it must be
/// refused inside a sandboxed gateway, so nothing may ever be accepted here.
pub(crate) fn bystander() -> (std::net::TcpListener, std::net::SocketAddr) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let addr = listener.local_addr().unwrap();
    (listener, addr)
}

/// A threaded HTTP/1.1 upstream (keep-alive): answers after `delay`, 503 for
/// `fail_percent` % of requests (chosen by a counter, deterministic), 200 otherwise, and
/// records the bodies it answered 200.
#[derive(Debug, Clone)]
pub(crate) struct Upstream {
    pub(crate) addr: String,
    pub(crate) accepted: Arc<Mutex<Vec<Vec<u8>>>>,
    pub(crate) fail_percent: Arc<AtomicU32>,
}

pub(crate) fn threaded_upstream(delay: Duration) -> Upstream {
    threaded_upstream_on("127.0.0.1:0", delay)
}

pub(crate) fn threaded_upstream_on(addr: &str, delay: Duration) -> Upstream {
    let listener = std::net::TcpListener::bind(addr).unwrap();
    let up = Upstream {
        addr: listener.local_addr().unwrap().to_string(),
        accepted: Arc::default(),
        fail_percent: Arc::default(),
    };
    let (accepted, fail) = (Arc::clone(&up.accepted), Arc::clone(&up.fail_percent));
    let counter = Arc::new(AtomicU64::new(0));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(100_000) {
            let (accepted, fail, counter) = (
                Arc::clone(&accepted),
                Arc::clone(&fail),
                Arc::clone(&counter),
            );
            std::thread::spawn(move || {
                let mut s = stream;
                let mut buf = vec![0u8; 1 << 16];
                let mut got: Vec<u8> = Vec::new();
                loop {
                    let (head_end, length) = loop {
                        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
                            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
                            let length = head
                                .lines()
                                .find_map(|l| l.strip_prefix("content-length:"))
                                .and_then(|v| v.trim().parse::<usize>().ok())
                                .unwrap_or(0);
                            break (end + 4, length);
                        }
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    };
                    while got.len() < head_end + length {
                        match s.read(&mut buf) {
                            Ok(0) | Err(_) => return,
                            Ok(n) => got.extend_from_slice(&buf[..n]),
                        }
                    }
                    let body = got[head_end..head_end + length].to_vec();
                    got.drain(..head_end + length);
                    std::thread::sleep(delay);
                    let n = counter.fetch_add(1, Ordering::Relaxed);
                    let failing = (n * 37 % 100) < u64::from(fail.load(Ordering::Relaxed));
                    let answer: &[u8] = if failing {
                        b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 2\r\n\r\n{}"
                    } else {
                        accepted.lock().unwrap().push(body);
                        b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"
                    };
                    if s.write_all(answer).is_err() {
                        return;
                    }
                }
            });
        }
    });
    up
}

/// `oneway agent` on `listen` for the quickstart's agent-1, towards `gateway`.
pub(crate) fn agent_command(
    dir: &std::path::Path,
    listen: std::net::SocketAddr,
    gateway: std::net::SocketAddr,
) -> Command {
    let mut command = Command::new(ONEWAY);
    command
        .arg("agent")
        .arg(format!("--listen={listen}"))
        .arg(format!("--gateway={gateway}"))
        .args(["--server-name", "localhost", "--ca"])
        .arg(dir.join("ca.pem"))
        .arg("--cert")
        .arg(dir.join("agent-1.pem"))
        .arg("--key")
        .arg(dir.join("agent-1.key"));
    command
}

/// The lines a process has written to its stderr so far.
pub(crate) type Log = Arc<Mutex<Vec<String>>>;

/// Reads a process's stderr as it comes: each line goes to the receiver and into the log.
fn read_log(stderr: std::process::ChildStderr) -> (std::sync::mpsc::Receiver<String>, Log) {
    let log: Log = Arc::default();
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let kept = Arc::clone(&log);
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            kept.lock().unwrap().push(line.clone());
            let _ = tx.send(line);
        }
    });
    (rx, log)
}

/// [`agent_command`] with `args`; returns it once it listens, with the sandbox report it
/// printed and its log (kept as it goes on).
pub(crate) fn launch_agent(
    dir: &std::path::Path,
    listen: std::net::SocketAddr,
    gateway: std::net::SocketAddr,
    args: &[String],
) -> (Running, serde_json::Value, Log) {
    let mut child = agent_command(dir, listen, gateway)
        .args(args)
        .env("RUST_LOG", "info")
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (rx, log) = read_log(child.stderr.take().unwrap());
    let child = Running::new(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut report = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let line = rx
            .recv_timeout(left)
            .expect("the agent did not start in time");
        if let Some(json) = line.strip_prefix("oneway agent: sandbox ") {
            report = Some(serde_json::from_str(json).unwrap());
        }
        if line.contains("agent listening") {
            break;
        }
    }
    std::thread::spawn(move || while rx.recv().is_ok() {});
    (
        child,
        report.expect("the agent printed no sandbox report"),
        log,
    )
}

/// A loopback address nothing listens on right now.
pub(crate) fn free_addr() -> std::net::SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A TLS connection to the gateway at `addr` presenting `dir`'s agent-1 certificate, kept
/// open across requests (keep-alive). `Err` when the handshake fails.
pub(crate) fn tls_connect(
    dir: &std::path::Path,
    addr: std::net::SocketAddr,
) -> std::io::Result<rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(dir.join("ca.pem")).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_file_iter(dir.join("agent-1.pem"))
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_file(dir.join("agent-1.key")).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let conn =
        rustls::ClientConnection::new(Arc::new(config), name).map_err(std::io::Error::other)?;
    let tcp = std::net::TcpStream::connect(addr)?;
    tcp.set_read_timeout(Some(Duration::from_secs(10)))?;
    let mut tls = rustls::StreamOwned::new(conn, tcp);
    // The handshake completes here; TLS 1.3 tells of a refused client certificate only at
    // the first read, so read once with a short timeout (a refusal is an alert or a close).
    while tls.conn.is_handshaking() {
        tls.conn.complete_io(&mut tls.sock)?;
    }
    Ok(tls)
}

/// One line-protocol push with `token` on an open [`tls_connect`] connection; the status
/// (`Err` when the connection fails or closes first).
pub(crate) fn tls_push(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    token: &str,
    line: &str,
) -> std::io::Result<u16> {
    let request = format!(
        "POST /v1/write/metric?token={token} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/line-protocol\r\ncontent-length: {}\r\n\r\n{line}",
        line.len()
    );
    tls.write_all(request.as_bytes())?;
    tls.flush()?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let length: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if got.len() >= end + 4 + length {
                return head
                    .get(9..12)
                    .and_then(|s| s.parse().ok())
                    .ok_or_else(|| std::io::Error::other("no status"));
            }
        }
        let n = tls.read(&mut buf)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        got.extend_from_slice(&buf[..n]);
    }
}

/// Whether the gateway closes an open [`tls_connect`] connection within `within`.
pub(crate) fn tls_closed_within(
    tls: &mut rustls::StreamOwned<rustls::ClientConnection, std::net::TcpStream>,
    within: Duration,
) -> bool {
    let _ = tls.sock.set_read_timeout(Some(within));
    let mut buf = [0u8; 64];
    match tls.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}
