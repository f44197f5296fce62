//! DataKit's real upload client (`datakit-client`) and a recording HTTP server for it.
//!
//! [`Recorder`] is a plain HTTP/1.1 server on loopback (keep-alive, `Content-Length` bodies,
//! which is what Go's client sends) that records every request and answers with a status read
//! from a file, so a test can play an upstream that fails and recovers. [`run`] runs one
//! `datakit-client` scenario against a URL and waits for it to finish.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Every scenario of `datakit-client`, with the flags the oracle's README gives it. `failcache`
/// also needs `-status-file`, `dialtest` `-dial-url`: the caller adds them.
pub const SCENARIOS: &[(&str, &[&str])] = &[
    ("basic", &[]),
    ("edge", &[]),
    ("edge", &["-dict"]),
    ("big", &[]),
    (
        "sinker",
        &[
            "-sinker",
            "-customer-keys",
            "project",
            "-global-tags",
            "host=h1;zone=z1",
        ],
    ),
    ("bad", &[]),
    ("apis", &[]),
    ("pipeline", &[]),
    ("gzoverflow", &[]),
    ("dialtest", &[]),
    ("failcache", &["-fc-interval", "2s"]),
];

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: String,
    /// Path and query.
    pub target: String,
    /// Header fields, names lower-cased, in order.
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl Recorded {
    /// The first value of a header.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A recording HTTP server on `127.0.0.1`.
#[derive(Debug, Clone)]
pub struct Recorder {
    /// Where it listens.
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Recorder {
    /// Starts the server; it answers `200 {}` unless `status_file` holds another status.
    pub fn start(status_file: Option<PathBuf>) -> std::io::Result<Recorder> {
        let requests = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&requests);
        let addr = accept_loop(move |stream| serve(stream, &shared, status_file.as_deref()))?;
        Ok(Recorder { addr, requests })
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().map(|r| r.clone()).unwrap_or_default()
    }
}

/// Listens on a loopback port and serves each connection on a thread of its own.
fn accept_loop(serve: impl Fn(TcpStream) + Send + Sync + 'static) -> std::io::Result<SocketAddr> {
    let listener = TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let serve = Arc::new(serve);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let serve = Arc::clone(&serve);
            std::thread::spawn(move || serve(stream));
        }
    });
    Ok(addr)
}

fn serve(stream: TcpStream, requests: &Mutex<Vec<Recorded>>, status_file: Option<&Path>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut writer) = stream.try_clone() else {
        return;
    };
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut parts = line.split_whitespace();
        let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
            return;
        };
        let (method, target) = (method.to_string(), target.to_string());
        let mut headers = Vec::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((n, v)) = h.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let len = headers
            .iter()
            .find(|(n, _)| n == "content-length")
            .and_then(|(_, v)| v.parse::<usize>().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        if let Ok(mut r) = requests.lock() {
            r.push(Recorded {
                method,
                target,
                headers,
                body,
            });
        }
        let status = status_file
            .and_then(|p| std::fs::read_to_string(p).ok())
            .and_then(|s| s.trim().parse::<u16>().ok())
            .unwrap_or(200);
        let answer = format!(
            "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{{}}"
        );
        if writer.write_all(answer.as_bytes()).is_err() {
            return;
        }
    }
}

/// Runs `datakit-client -scenario NAME` with `args` against `url` (its DataWay URL, token in
/// the query), with its WAL, log and summary in `dir`. `None` when the oracle is absent.
pub fn run(name: &str, args: &[&str], url: &str, dir: &Path) -> Option<Output> {
    let client = crate::locate("datakit-client")?;
    let wal = dir.join("wal");
    let output = Command::new(client)
        .arg("-url")
        .arg(url)
        .args(["-scenario", name, "-max-wait", "15s"])
        .arg("-wal")
        .arg(&wal)
        .arg("-log")
        .arg(dir.join("datakit.log"))
        .arg("-out")
        .arg(dir.join("summary.json"))
        .args(args)
        .output()
        .expect("datakit-client runs");
    Some(output)
}

/// A request that passed through a [`Tee`], with the answer it got.
#[derive(Debug, Clone)]
pub struct Exchange {
    /// The request as the client sent it.
    pub request: Recorded,
    /// The answer's status code.
    pub status: u16,
    /// The answer's reason phrase.
    pub reason: String,
}

/// A recording relay in front of a plain-HTTP server (the agent): every request goes through
/// unchanged (absolute-form proxy requests and `CONNECT` included), and the request and the
/// status it got are kept.
#[derive(Debug, Clone)]
pub struct Tee {
    /// Where it listens.
    pub addr: SocketAddr,
    exchanges: Arc<Mutex<Vec<Exchange>>>,
}

impl Tee {
    /// Starts a relay to `target`.
    pub fn start(target: SocketAddr) -> std::io::Result<Tee> {
        let exchanges = Arc::new(Mutex::new(Vec::new()));
        let shared = Arc::clone(&exchanges);
        let addr = accept_loop(move |stream| relay(stream, target, &shared))?;
        Ok(Tee { addr, exchanges })
    }

    /// Every exchange so far.
    pub fn exchanges(&self) -> Vec<Exchange> {
        self.exchanges.lock().map(|e| e.clone()).unwrap_or_default()
    }
}

/// A message head: the first line, the header fields (names lower-cased), the raw bytes.
type Head = (String, Vec<(String, String)>, Vec<u8>);

/// Reads one HTTP/1.1 message head.
fn read_head(r: &mut impl BufRead) -> Option<Head> {
    let mut raw = Vec::new();
    let mut first = String::new();
    if r.read_line(&mut first).ok()? == 0 {
        return None;
    }
    raw.extend_from_slice(first.as_bytes());
    let mut headers = Vec::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).ok()? == 0 {
            return None;
        }
        raw.extend_from_slice(h.as_bytes());
        let line = h.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((n, v)) = line.split_once(':') {
            headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    Some((first.trim_end().to_string(), headers, raw))
}

fn content_length(headers: &[(String, String)]) -> usize {
    headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or(0)
}

fn relay(client: TcpStream, target: SocketAddr, exchanges: &Mutex<Vec<Exchange>>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(120)));
    let Ok(mut to_client) = client.try_clone() else {
        return;
    };
    let mut from_client = BufReader::new(client);
    let mut server: Option<(TcpStream, BufReader<TcpStream>)> = None;
    while let Some((line, headers, raw)) = read_head(&mut from_client) {
        let mut body = vec![0; content_length(&headers)];
        if from_client.read_exact(&mut body).is_err() {
            return;
        }
        if server.is_none() {
            let Ok(s) = TcpStream::connect(target) else {
                return;
            };
            let Ok(r) = s.try_clone() else {
                return;
            };
            server = Some((s, BufReader::new(r)));
        }
        let Some((to_server, from_server)) = server.as_mut() else {
            return;
        };
        if to_server.write_all(&raw).is_err() || to_server.write_all(&body).is_err() {
            return;
        }
        let Some((status_line, answer_headers, answer_raw)) = read_head(from_server) else {
            return;
        };
        let mut answer = vec![0; content_length(&answer_headers)];
        if from_server.read_exact(&mut answer).is_err() {
            return;
        }
        let mut parts = status_line.splitn(3, ' ');
        let _version = parts.next();
        let status = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
        let reason = parts.next().unwrap_or("").to_string();
        let mut words = line.split_whitespace();
        let request = Recorded {
            method: words.next().unwrap_or("").to_string(),
            target: words.next().unwrap_or("").to_string(),
            headers,
            body,
        };
        if let Ok(mut e) = exchanges.lock() {
            e.push(Exchange {
                request,
                status,
                reason,
            });
        }
        if to_client.write_all(&answer_raw).is_err() || to_client.write_all(&answer).is_err() {
            return;
        }
        let closes = answer_headers
            .iter()
            .any(|(n, v)| n == "connection" && v.eq_ignore_ascii_case("close"));
        if closes {
            return;
        }
    }
}
