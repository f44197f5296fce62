//! The edge, row by row (reference/hardening.md §8 rows 1–8): deadlines close slow and idle
//! peers while a well-behaved client is served; caps refuse excess connections before any TLS
//! work; PROXY headers are accepted only from the load balancers, exactly once, within their
//! deadline; smuggling attempts get 400 and a closed connection with nothing forwarded; header
//! bombs get 431. Tests here run one at a time: they read the shared metrics registry.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use oneway_tests::{FakeUpstream, TOKEN_1, TestGateway};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LP: &str = "cpu,host=web-1 usage=1i 1700000000000000000\n";
/// Slack on top of a deadline for the gateway's timer and the scheduler.
const MARGIN: Duration = Duration::from_millis(1500);

fn outside() -> IpAddr {
    "127.0.0.2".parse().expect("ip")
}

fn uri() -> String {
    format!("/v1/write/metric?token={TOKEN_1}")
}

/// One keep-alive request pushing [`LP`] as token 1, as raw HTTP/1.1.
fn lp_request() -> String {
    format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nContent-Length: {}\r\n\r\n{LP}",
        uri(),
        LP.len()
    )
}

fn lp_headers() -> [(&'static str, &'static str); 1] {
    [("content-type", "application/line-protocol")]
}

/// Reads until the peer closes (or `limit` passes); returns how long that took and the bytes.
async fn until_closed<S: AsyncRead + Unpin>(
    stream: &mut S,
    limit: Duration,
) -> (Duration, Vec<u8>) {
    let started = Instant::now();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((started + limit).into(), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return (started.elapsed(), out),
            Ok(Ok(n)) => out.extend_from_slice(&buf[..n]),
            Err(_) => return (started.elapsed(), out),
        }
    }
}

async fn served(gw: &TestGateway) {
    let r = gw
        .post(
            "agent-2",
            &format!("/v1/write/metric?token={}", oneway_tests::TOKEN_2),
            &lp_headers(),
            LP.as_bytes().to_vec(),
        )
        .await
        .expect("a well-behaved client completes");
    assert_eq!(r.status, 200, "a well-behaved client is served: {}", r.body);
}

// ------------------------------------------------------------------ row 1: no ClientHello ---

#[tokio::test]
async fn row1_tcp_without_client_hello_is_closed_at_the_handshake_deadline() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .listener("handshake_timeout_ms", "400")
        .start()
        .await;
    let before = gw
        .metric("oneway_tls_handshake_failures_total", &["kind=\"timeout\""])
        .await;
    let mut silent = gw.connect_tcp(None).await.expect("connect");
    let (waited, _) = tokio::join!(
        until_closed(&mut silent, Duration::from_secs(10)),
        served(&gw)
    )
    .0;
    assert!(
        waited >= Duration::from_millis(350) && waited < Duration::from_millis(400) + MARGIN,
        "closed after {waited:?}"
    );
    assert_eq!(
        gw.metric("oneway_tls_handshake_failures_total", &["kind=\"timeout\""])
            .await
            - before,
        1.0
    );
    assert!(gw.stop().await);
}

// ------------------------------------------------------ row 5: slowloris, slow body, idle ---

#[tokio::test]
async fn row5_slow_head_is_closed_at_the_head_deadline_while_others_are_served() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .listener("header_timeout_ms", "500")
        .start()
        .await;
    let before = gw
        .metric(
            "oneway_listener_connections_closed_total",
            &["reason=\"head_timeout\""],
        )
        .await;
    let mut tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    let drip = async {
        tls.write_all(b"POST /v1/write/metric HTTP/1.1\r\nHost: x\r\n")
            .await
            .expect("write");
        let started = Instant::now();
        // One header byte every 100 ms: forever, unless the gateway closes.
        for _ in 0..100 {
            if tls.write_all(b"X").await.is_err() || tls.flush().await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut probe = [0u8; 1];
            if let Ok(Ok(0)) =
                tokio::time::timeout(Duration::from_millis(1), tls.read(&mut probe)).await
            {
                break;
            }
        }
        started.elapsed()
    };
    let (elapsed, ()) = tokio::join!(drip, served(&gw));
    assert!(
        elapsed < Duration::from_millis(500) + MARGIN,
        "head dripped for {elapsed:?}"
    );
    assert_eq!(
        gw.metric(
            "oneway_listener_connections_closed_total",
            &["reason=\"head_timeout\""]
        )
        .await
            - before,
        1.0
    );
    assert!(
        up.received()
            .iter()
            .all(|r| r.headers["x-oneway-agent"] != "dns:agent-1"),
        "the slow head was not forwarded"
    );
    assert!(gw.stop().await);
}

#[tokio::test]
async fn row5_slow_body_gets_408_after_the_grace_period() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .listener("body_min_rate_bytes_per_second", "16384")
        .listener("body_min_rate_grace_ms", "500")
        .start()
        .await;
    let mut tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nContent-Length: 100000\r\n\r\n",
        uri()
    );
    tls.write_all(head.as_bytes()).await.expect("head");
    let started = Instant::now();
    let writer = async {
        // 200 bytes every 100 ms: 2 KB/s, far below 16 KiB/s.
        for _ in 0..100 {
            if tls.write_all(&[b'x'; 200]).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            let mut buf = [0u8; 256];
            match tokio::time::timeout(Duration::from_millis(1), tls.read(&mut buf)).await {
                Ok(Ok(n)) if n > 0 => return String::from_utf8_lossy(&buf[..n]).into_owned(),
                Ok(_) => return String::new(),
                Err(_) => {}
            }
        }
        String::new()
    };
    let (answer, ()) = tokio::join!(writer, served(&gw));
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer:?}");
    assert!(answer.contains("oneway.body_too_slow"), "{answer:?}");
    assert!(started.elapsed() < Duration::from_millis(600) + MARGIN);
    assert!(
        up.received()
            .iter()
            .all(|r| r.headers["x-oneway-agent"] != "dns:agent-1"),
        "the slow body was not forwarded"
    );
    assert!(gw.stop().await);
}

#[tokio::test]
async fn row5_idle_keep_alive_is_closed_at_the_keepalive_deadline() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .listener("keepalive_timeout_ms", "600")
        .listener("header_timeout_ms", "200")
        .start()
        .await;
    let before = gw
        .metric(
            "oneway_listener_connections_closed_total",
            &["reason=\"idle\""],
        )
        .await;
    let mut tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    let request = lp_request();
    // Idle longer than the head deadline but shorter than keep-alive: still open.
    answered_200(&mut tls, request.as_bytes(), "first request").await;
    tokio::time::sleep(Duration::from_millis(350)).await;
    answered_200(&mut tls, request.as_bytes(), "idle < keep-alive: kept").await;
    let (waited, _) = until_closed(&mut tls, Duration::from_secs(10)).await;
    assert!(
        waited >= Duration::from_millis(550) && waited < Duration::from_millis(600) + MARGIN,
        "idle connection closed after {waited:?}"
    );
    assert_eq!(
        gw.metric(
            "oneway_listener_connections_closed_total",
            &["reason=\"idle\""]
        )
        .await
            - before,
        1.0
    );
    assert!(gw.stop().await);
}

/// Writes `bytes` on `tls`, reads one answer and asserts it is a 200 (`what` says which);
/// returns the answer's text.
async fn answered_200<S: AsyncRead + AsyncWrite + Unpin>(
    tls: &mut S,
    bytes: &[u8],
    what: &str,
) -> String {
    tls.write_all(bytes).await.expect("write");
    let mut buf = vec![0u8; 4096];
    let n = tls.read(&mut buf).await.expect("response");
    let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
    assert!(answer.starts_with("HTTP/1.1 200"), "{what}: {answer}");
    answer
}

/// Waits (up to 5 s) until the gateway's parked-connection gauge reads `want`.
async fn parked_reaches(gw: &TestGateway, want: f64) {
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        let now = gw.metric("oneway_listener_parked_connections", &[]).await;
        if now == want {
            return;
        }
        assert!(
            Instant::now() < until,
            "parked connections: {now}, want {want}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn an_idle_connection_is_parked_serves_its_next_request_and_closes_at_shutdown() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let base = gw.metric("oneway_listener_parked_connections", &[]).await;
    let mut tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    let request = lp_request();
    for round in 0..3 {
        let answer = answered_200(&mut tls, request.as_bytes(), &format!("round {round}")).await;
        assert!(
            !answer.to_ascii_lowercase().contains("connection: close"),
            "the connection is kept"
        );
        // Idle past the park delay: hyper's state goes, the TLS session stays.
        parked_reaches(&gw, base + 1.0).await;
    }
    // A request split across the wake-up: its first byte unparks the connection, the rest
    // arrives later, and it is served whole.
    let (first, rest) = request.as_bytes().split_at(1);
    tls.write_all(first).await.expect("write");
    parked_reaches(&gw, base).await;
    tokio::time::sleep(Duration::from_millis(50)).await;
    answered_200(&mut tls, rest, "split across the wake-up").await;
    assert_eq!(
        up.received().len(),
        4,
        "every request on the one connection was forwarded"
    );
    parked_reaches(&gw, base + 1.0).await;
    // Shutdown closes a parked connection at once (close_notify, then FIN).
    let stopping = tokio::spawn(async move { gw.stop().await });
    let (waited, rest) = until_closed(&mut tls, Duration::from_secs(10)).await;
    assert!(
        rest.is_empty() && waited < MARGIN,
        "closed after {waited:?}"
    );
    assert!(stopping.await.expect("join"), "nothing was in flight");
}

#[tokio::test]
async fn bytes_read_past_a_request_survive_parking() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let base = gw.metric("oneway_listener_parked_connections", &[]).await;
    let mut tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    let request = lp_request();
    // A spare line end after the request: hyper reads it with the request and holds it as
    // the start of the next one when the connection goes idle.
    answered_200(
        &mut tls,
        format!("{request}\r\n").as_bytes(),
        "first request",
    )
    .await;
    // Past the park delay: the spare line end is dropped (a server ignores empty lines
    // between requests) and the connection parks; it stays open and serves the next request.
    tokio::time::sleep(Duration::from_millis(400)).await;
    parked_reaches(&gw, base + 1.0).await;
    answered_200(&mut tls, request.as_bytes(), "the connection survived").await;
    assert_eq!(up.received().len(), 2);
    assert!(gw.stop().await);
}

#[tokio::test]
async fn a_header_bomb_still_sending_reads_its_431_rather_than_a_reset() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    let head = format!(
        "POST {} HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n",
        uri(),
        "a".repeat(40_000)
    );
    let mut tls = tls;
    // A client that writes its whole request before it reads (as a simple client does): hyper
    // answers 431 after the head, and unless the close lingers, the rest of the write meets a
    // reset (broken pipe) and the answer is never read.
    tls.write_all(head.as_bytes()).await.expect("head");
    let chunk = vec![b'a'; 256 << 10];
    for i in 0..64 {
        tls.write_all(&chunk)
            .await
            .unwrap_or_else(|e| panic!("write {i} after the refused head: {e}"));
    }
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while got.len() < 12 {
        match tokio::time::timeout(Duration::from_secs(10), tls.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            other => panic!(
                "no answer, got {other:?} after {:?}",
                String::from_utf8_lossy(&got)
            ),
        }
    }
    assert!(
        got.starts_with(b"HTTP/1.1 431"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(up.received().is_empty());
    assert!(gw.stop().await);
}

#[tokio::test]
async fn max_connection_age_closes_gracefully_after_the_request_in_progress() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .listener("max_connection_age_ms", "700")
        .start()
        .await;
    let mut tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    let request = lp_request();
    let started = Instant::now();
    let mut answered = 0;
    let mut buf = vec![0u8; 4096];
    while started.elapsed() < Duration::from_secs(5) {
        if tls.write_all(request.as_bytes()).await.is_err() {
            break;
        }
        match tls.read(&mut buf).await {
            Ok(n) if n > 0 && buf[..n].starts_with(b"HTTP/1.1 200") => answered += 1,
            _ => break,
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let age = started.elapsed();
    assert!(
        answered >= 3,
        "requests were served until the age limit: {answered}"
    );
    assert!(
        age < Duration::from_millis(700) + MARGIN,
        "closed after {age:?}"
    );
    assert_eq!(
        up.received().len(),
        answered,
        "every answered request was forwarded"
    );
    assert!(gw.stop().await);
}

// ------------------------------------------------------------------- row 6: caps ---

#[tokio::test]
async fn row6_connection_caps_refuse_excess_fast_without_tls() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .listener("max_connections", "12")
        .listener("max_connections_per_ip", "8")
        .listener("max_connections_per_identity", "2")
        .listener("handshake_timeout_ms", "5000")
        .start()
        .await;
    let per_ip = gw
        .metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"per_ip\""],
        )
        .await;
    let global = gw
        .metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"max_connections\""],
        )
        .await;
    // 8 silent connections from 127.0.0.1 fill its per-IP cap; the 9th is closed at once.
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(gw.connect_tcp(None).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut ninth = gw.connect_tcp(None).await.expect("connect");
    let (waited, bytes) = until_closed(&mut ninth, Duration::from_secs(3)).await;
    assert!(
        waited < Duration::from_millis(500),
        "refused fast: {waited:?}"
    );
    assert!(bytes.is_empty(), "no TLS bytes were sent");
    assert_eq!(
        gw.metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"per_ip\""]
        )
        .await
            - per_ip,
        1.0
    );
    // Another address still gets in, up to the global cap of 12.
    for _ in 0..4 {
        held.push(gw.connect_tcp(Some(outside())).await.expect("connect"));
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut over = gw.connect_tcp(Some(outside())).await.expect("connect");
    let (waited, _) = until_closed(&mut over, Duration::from_secs(3)).await;
    assert!(
        waited < Duration::from_millis(500),
        "refused fast: {waited:?}"
    );
    assert_eq!(
        gw.metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"max_connections\""]
        )
        .await
            - global,
        1.0
    );
    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;

    // Per identity: the identity a token matched may hold two connections; the third's first
    // request gets 503 (DataKit keeps the batch) and the connection holds no place.
    let per_id = gw
        .metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"per_identity\""],
        )
        .await;
    let request = lp_request();
    let mut open = Vec::new();
    for expected in ["HTTP/1.1 200", "HTTP/1.1 200", "HTTP/1.1 503"] {
        let mut tls = gw
            .connect_tls(Some("agent-1"), b"", None)
            .await
            .expect("handshake");
        tls.write_all(request.as_bytes()).await.expect("write");
        let mut buf = vec![0u8; 4096];
        let n = tls.read(&mut buf).await.expect("response");
        let answer = String::from_utf8_lossy(&buf[..n]).into_owned();
        assert!(answer.starts_with(expected), "{answer}");
        open.push(tls);
    }
    assert_eq!(
        gw.metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"per_identity\""]
        )
        .await
            - per_id,
        1.0
    );
    served(&gw).await; // agent-2 is another identity
    drop(open);
    assert!(gw.stop().await);
}

// ------------------------------------------------------------- rows 2–4: PROXY protocol ---

fn proxy_builder(up: &FakeUpstream) -> oneway_tests::Builder {
    TestGateway::builder()
        .upstream(up)
        .listener(
            "proxy_protocol",
            "{ trusted_cidrs = [\"127.0.0.1/32\"], header_timeout_ms = 400 }",
        )
        .listener("max_connections_per_ip", "1")
}

fn v2_local() -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x20, 0x00, 0, 0]);
    h
}

fn v2_proxy(source: [u8; 4], port: u16) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12 + 27]);
    h.extend_from_slice(&source);
    h.extend_from_slice(&[10, 0, 0, 1]);
    h.extend_from_slice(&port.to_be_bytes());
    h.extend_from_slice(&443u16.to_be_bytes());
    // AWS's TLV: subtype 1, the VPC endpoint id.
    h.extend_from_slice(&[0xEA, 0, 24, 0x01]);
    h.extend_from_slice(b"vpce-0123456789abcdef01");
    h
}

#[tokio::test]
async fn row2_to_4_proxy_headers_exactly_once_from_the_load_balancer() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = proxy_builder(&up).start().await;
    let failures = |kind: &'static str| {
        let gw = &gw;
        async move {
            gw.metric(
                "oneway_listener_proxy_header_failures_total",
                &[&format!("kind=\"{kind}\"")],
            )
            .await
        }
    };

    // Valid v1 and v2 headers, then mTLS: served. Row 4: LOCAL (a health check) too.
    for prefix in [
        b"PROXY TCP4 198.51.100.7 10.0.0.1 40000 443\r\n".to_vec(),
        v2_proxy([198, 51, 100, 8], 40001),
        v2_local(),
    ] {
        let tls = gw
            .connect_tls(Some("agent-1"), &prefix, None)
            .await
            .expect("tls after PROXY");
        let r = TestGateway::request_on(tls, &uri(), &lp_headers(), LP.as_bytes().to_vec())
            .await
            .expect("request");
        assert_eq!(r.status, 200, "{}", r.body);
    }

    // Row 2: missing (TLS straight away), partial, dripped, oversized, doubled, bad version.
    let missing = failures("missing").await;
    assert!(
        gw.connect_tls(Some("agent-1"), b"", None).await.is_err(),
        "TLS without a PROXY header fails"
    );
    assert_eq!(
        failures("missing").await - missing,
        1.0,
        "a ClientHello is not a PROXY header"
    );

    let timeout = failures("timeout").await;
    let mut partial = gw.connect_tcp(None).await.expect("connect");
    partial
        .write_all(b"PROXY TCP4 198.51.100.9")
        .await
        .expect("write");
    let (waited, _) = until_closed(&mut partial, Duration::from_secs(5)).await;
    assert!(
        waited < Duration::from_millis(400) + MARGIN,
        "partial header: {waited:?}"
    );

    let mut dripped = gw.connect_tcp(None).await.expect("connect");
    let started = Instant::now();
    for b in b"PROXY TCP4 198.51.100.10 10.0.0.1 40002 443\r\n" {
        if dripped.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (_, _) = until_closed(&mut dripped, Duration::from_secs(5)).await;
    assert!(started.elapsed() < Duration::from_millis(400) + MARGIN + Duration::from_millis(300));
    assert_eq!(
        failures("timeout").await - timeout,
        2.0,
        "partial and dripped"
    );

    let too_long = failures("too_long").await;
    let mut oversized = gw.connect_tcp(None).await.expect("connect");
    let mut long = b"PROXY TCP4 ".to_vec();
    long.extend(std::iter::repeat_n(b'1', 200));
    let _ = oversized.write_all(&long).await;
    let (waited, _) = until_closed(&mut oversized, Duration::from_secs(5)).await;
    assert!(
        waited < Duration::from_millis(300),
        "refused without waiting: {waited:?}"
    );
    assert_eq!(failures("too_long").await - too_long, 1.0);

    let doubled = b"PROXY UNKNOWN\r\nPROXY UNKNOWN\r\n";
    let tls = gw.connect_tls(Some("agent-1"), doubled, None).await;
    assert!(tls.is_err(), "a second header is not a TLS handshake");

    let unsupported = failures("unsupported").await;
    let mut v3 = v2_proxy([198, 51, 100, 11], 40003);
    v3[12] = 0x31;
    let mut bad = gw.connect_tcp(None).await.expect("connect");
    let _ = bad.write_all(&v3).await;
    let _ = until_closed(&mut bad, Duration::from_secs(5)).await;
    assert_eq!(failures("unsupported").await - unsupported, 1.0);

    // Row 3: a valid header from outside the load balancers' CIDRs is refused.
    let untrusted = gw
        .metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"proxy_untrusted\""],
        )
        .await;
    let tls = gw
        .connect_tls(
            Some("agent-1"),
            b"PROXY TCP4 198.51.100.12 10.0.0.1 40004 443\r\n",
            Some(outside()),
        )
        .await;
    assert!(tls.is_err(), "refused before TLS");
    assert_eq!(
        gw.metric(
            "oneway_listener_connections_refused_total",
            &["reason=\"proxy_untrusted\""]
        )
        .await
            - untrusted,
        1.0
    );
    assert!(gw.stop().await);
}

#[tokio::test]
async fn per_ip_cap_counts_the_proxy_derived_address() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = proxy_builder(&up).start().await;
    // Cap 1 per client address: two clients behind the same load balancer both get in…
    let a = gw
        .connect_tls(Some("agent-1"), &v2_proxy([198, 51, 100, 20], 1), None)
        .await
        .expect("first client");
    let b = gw
        .connect_tls(Some("agent-2"), &v2_proxy([198, 51, 100, 21], 2), None)
        .await
        .expect("second client, same load balancer");
    // …and a second connection of the first client is refused.
    let again = gw
        .connect_tls(Some("agent-1"), &v2_proxy([198, 51, 100, 20], 3), None)
        .await;
    assert!(again.is_err(), "per-address cap on the PROXY source");
    drop((a, b));
    assert!(gw.stop().await);
}

#[tokio::test]
async fn two_ipv6_addresses_in_one_64_share_the_per_ip_cap() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let v1 = |source: &str, port: u16| {
        format!("PROXY TCP6 {source} 2001:db8::443 {port} 443\r\n").into_bytes()
    };
    for (prefix_len, shared) in [(None, true), (Some("128"), false)] {
        let mut builder = proxy_builder(&up);
        if let Some(len) = prefix_len {
            builder = builder.listener("ipv6_prefix_len", len);
        }
        let gw = builder.start().await;
        let refused = || async {
            gw.metric(
                "oneway_listener_connections_refused_total",
                &["reason=\"per_ip\""],
            )
            .await
        };
        let before = refused().await;
        let a = gw
            .connect_tls(Some("agent-1"), &v1("2001:db8:1:2::a", 1), None)
            .await
            .expect("first address of the /64");
        // Another address of the same /64: the same client by default.
        let b = gw
            .connect_tls(
                Some("agent-2"),
                &v1("2001:db8:1:2:ffff:ffff:ffff:b", 2),
                None,
            )
            .await;
        assert_eq!(b.is_err(), shared, "prefix {prefix_len:?}: same /64");
        assert_eq!(refused().await - before, if shared { 1.0 } else { 0.0 });
        // Another /64 is another client whatever the prefix.
        let c = gw
            .connect_tls(Some("agent-1"), &v1("2001:db8:1:3::a", 3), None)
            .await
            .expect("another /64");
        let r = TestGateway::request_on(c, &uri(), &lp_headers(), LP.as_bytes().to_vec())
            .await
            .expect("request");
        assert_eq!(r.status, 200, "{}", r.body);
        drop((a, b));
        assert!(gw.stop().await);
    }
}

// ------------------------------------------------------------ rows 7–8: HTTP framing ---

async fn raw_exchange(gw: &TestGateway, request: &[u8]) -> (String, bool) {
    let mut tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("tls");
    tls.write_all(request).await.expect("write");
    let (_, bytes) = until_closed(&mut tls, Duration::from_secs(5)).await;
    let text = String::from_utf8_lossy(&bytes).into_owned();
    // Closed: until_closed returned on EOF within its limit (the response said so too).
    (text, true)
}

#[tokio::test]
async fn row7_smuggling_attempts_get_400_and_close_and_nothing_is_forwarded() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let path = uri();
    let cases: Vec<(&str, String)> = vec![
        (
            "CL+TE",
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /admin HTTP/1.1\r\nHost: x\r\n\r\n"
            ),
        ),
        (
            "duplicate CL",
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nContent-Length: 5\r\nContent-Length: 44\r\n\r\n{LP}"
            ),
        ),
        (
            "TE chunked, identity",
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nTransfer-Encoding: chunked, identity\r\n\r\n2c\r\n{LP}\r\n0\r\n\r\n"
            ),
        ),
        (
            "obs-fold",
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nX-Folded: a\r\n b\r\nContent-Length: {}\r\n\r\n{LP}",
                LP.len()
            ),
        ),
        (
            "huge chunk size",
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n{LP}\r\n0\r\n\r\n"
            ),
        ),
        (
            "bad chunk size",
            format!(
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{LP}\r\n0\r\n\r\n"
            ),
        ),
    ];
    for (name, request) in cases {
        let (answer, _) = raw_exchange(&gw, request.as_bytes()).await;
        let status = answer.get(..12).unwrap_or("");
        assert!(
            status == "HTTP/1.1 400" || answer.is_empty(),
            "{name}: answered {answer:?}"
        );
        assert!(
            !answer.contains("HTTP/1.1 200"),
            "{name}: nothing accepted: {answer:?}"
        );
    }
    assert!(up.received().is_empty(), "nothing reached the upstream");
    served(&gw).await;
    assert!(gw.stop().await);
}

/// The statuses of the responses in `answer`, in order.
fn statuses(answer: &str) -> Vec<u16> {
    answer
        .match_indices("HTTP/1.1 ")
        .filter_map(|(at, _)| answer.get(at + 9..at + 12)?.parse().ok())
        .collect()
}

/// Every request on a connection is framed as sent, however it arrives: pipelined behind a
/// clean one, with LF-only line ends, a byte at a time, with each spelling of
/// `Transfer-Encoding`. Through the real listener; the upstream receives only the clean ones.
#[tokio::test]
async fn row7_every_request_on_a_connection_is_checked_however_it_arrives() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let path = uri();
    let n = LP.len();
    let clean = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nContent-Length: {n}\r\n\r\n{LP}"
    );
    let last = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/line-protocol\r\nContent-Length: {n}\r\n\r\n{LP}"
    );
    let te = |te: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nTransfer-Encoding: {te}\r\nConnection: close\r\n\r\n{n:x}\r\n{LP}\r\n0\r\n\r\n"
        )
    };
    let cl_te = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/line-protocol\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n{n:x}\r\n{LP}\r\n0\r\n\r\n"
    );
    let lf_cl_te = cl_te.replace("\r\n", "\n");
    let lf_head_end = lf_cl_te.find("\n\n").unwrap() + 2;
    // (name, writes, the statuses expected, batches forwarded)
    let cases: Vec<(&str, Vec<String>, Vec<u16>, usize)> = vec![
        (
            "a clean request, then CL+TE in the same write",
            vec![format!("{clean}{cl_te}")],
            vec![200, 400],
            1,
        ),
        (
            "an LF-only CL+TE head sent before its body",
            vec![
                lf_cl_te[..lf_head_end].to_string(),
                format!("{n:x}\r\n{LP}\r\n0\r\n\r\n"),
            ],
            vec![400],
            0,
        ),
        (
            "a CL+TE head a byte at a time",
            cl_te.bytes().map(|b| (b as char).to_string()).collect(),
            vec![400],
            0,
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            vec![te("gzip, chunked")],
            vec![400],
            0,
        ),
        (
            "Transfer-Encoding: chunked, chunked",
            vec![te("chunked, chunked")],
            vec![400],
            0,
        ),
        (
            "two Transfer-Encoding fields",
            vec![te("chunked\r\nTransfer-Encoding: chunked")],
            vec![400],
            0,
        ),
        (
            "Transfer-Encoding: chunked alone",
            vec![te("chunked")],
            vec![200],
            1,
        ),
        (
            "a chunked request, then a clean one in the same write",
            vec![format!(
                "{}{last}",
                te("chunked").replace("Connection: close\r\n", "")
            )],
            vec![200, 200],
            2,
        ),
        (
            "three clean requests in one write, the third CL+TE",
            vec![format!("{clean}{clean}{cl_te}")],
            vec![200, 200, 400],
            2,
        ),
    ];
    for (name, writes, expected, forwarded) in cases {
        let before = up.received().len();
        let mut tls = gw
            .connect_tls(Some("agent-1"), b"", None)
            .await
            .expect("tls");
        for w in &writes {
            tls.write_all(w.as_bytes()).await.expect("write");
            tls.flush().await.expect("flush");
            if writes.len() == 2 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        let (_, bytes) = until_closed(&mut tls, Duration::from_secs(5)).await;
        let answer = String::from_utf8_lossy(&bytes);
        assert_eq!(statuses(&answer), expected, "{name}: {answer}");
        assert_eq!(up.received().len() - before, forwarded, "{name}");
        if expected.last() == Some(&400) {
            assert!(answer.contains("oneway.bad_framing"), "{name}: {answer}");
        }
    }
    served(&gw).await;
    assert!(gw.stop().await);
}

#[tokio::test]
async fn row8_header_bombs_get_431() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let path = uri();
    let many: String = (0..100).map(|i| format!("X-H{i}: v\r\n")).collect();
    let big = format!("X-Big: {}\r\n", "a".repeat(20_000));
    for (name, extra) in [("100 fields", many), ("20 KB header", big)] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\n{extra}Content-Type: application/line-protocol\r\nContent-Length: {}\r\n\r\n{LP}",
            LP.len()
        );
        let (answer, _) = raw_exchange(&gw, request.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 431"), "{name}: {answer:?}");
    }
    // 60 fields of normal size pass.
    let fine: Vec<(String, String)> = (0..55)
        .map(|i| (format!("x-h{i}"), "v".to_string()))
        .collect();
    let mut headers: Vec<(&str, &str)> =
        fine.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    headers.push(("content-type", "application/line-protocol"));
    let r = gw
        .post("agent-1", &path, &headers, LP.as_bytes().to_vec())
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.received().len(), 1);
    assert!(gw.stop().await);
}

// --------------------------------------------------------- rows 11–12: TLS and certificates ---

/// Runs `openssl s_client` against the gateway with agent-1's certificate; returns its output.
fn s_client(gw: &TestGateway, args: &[&str], stdin: &[u8]) -> String {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let dir = gw.pki.dir();
    let mut child = Command::new("openssl")
        .arg("s_client")
        .arg("-connect")
        .arg(gw.public.to_string())
        .args(args)
        .arg("-cert")
        .arg(dir.join("agent-1.pem"))
        .arg("-key")
        .arg(dir.join("agent-1.key"))
        .arg("-CAfile")
        .arg(dir.join("ca.pem"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("openssl is installed (.ci/run installs it)");
    let mut input = child.stdin.take().expect("stdin");
    input.write_all(stdin).expect("write");
    std::thread::sleep(Duration::from_millis(1500));
    drop(input);
    let out = child
        .wait_with_output()
        .expect("openssl ends when stdin closes");
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row11_tls_1_1_and_renegotiation_are_refused() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    // The client is allowed TLS 1.1 (security level 0), so only the server can refuse it.
    let old = tokio::task::block_in_place(|| {
        s_client(&gw, &["-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"], b"")
    });
    assert!(old.contains("Cipher is (NONE)"), "TLS 1.1 refused: {old}");
    assert!(old.contains("alert"), "{old}");
    // TLS 1.2 works, and a renegotiation request is refused.
    let reneg = tokio::task::block_in_place(|| s_client(&gw, &["-tls1_2"], b"R\n"));
    assert!(
        reneg.contains("Cipher is ECDHE"),
        "TLS 1.2 handshake: {reneg}"
    );
    assert!(reneg.contains("RENEGOTIATING"), "{reneg}");
    assert!(
        reneg.contains("no renegotiation"),
        "renegotiation refused: {reneg}"
    );
    assert!(gw.stop().await);
}

/// Whether a TLS connection with `client`'s certificate is refused (at the handshake, or when
/// the first request shows the server's verdict, in TLS 1.3).
async fn refused_at_handshake(gw: &TestGateway, client: &str) -> bool {
    let Ok(tls) = gw.connect_tls(Some(client), b"", None).await else {
        return true;
    };
    TestGateway::request_on(tls, &uri(), &lp_headers(), LP.as_bytes().to_vec())
        .await
        .is_err()
}

#[tokio::test]
async fn row12_client_certificate_cases() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    for client in ["stranger", "expired", "future", "revoked", "server-eku"] {
        assert!(
            refused_at_handshake(&gw, client).await,
            "{client} must be refused"
        );
    }
    // No EKU extension: the handshake passes (the EKU is checked only when present), but its
    // identity is bound to no token: 403 before the body.
    let r = gw
        .post("no-eku", &uri(), &lp_headers(), LP.as_bytes().to_vec())
        .await
        .expect("handshake accepted");
    assert_eq!(r.status, 403, "{}", r.body);
    // Two SANs: a token bound to either name accepts it; another agent's token does not.
    let r = gw
        .post("two-sans", &uri(), &lp_headers(), LP.as_bytes().to_vec())
        .await
        .expect("request");
    assert_eq!(
        r.status, 200,
        "its second SAN is bound to token 1: {}",
        r.body
    );
    let r = gw
        .post(
            "two-sans",
            &format!("/v1/write/metric?token={}", oneway_tests::TOKEN_2),
            &lp_headers(),
            LP.as_bytes().to_vec(),
        )
        .await
        .expect("request");
    assert_eq!(r.status, 403, "{}", r.body);
    assert_eq!(up.received().len(), 1);
    // The upstream learns the identity that matched the token, not the first SAN.
    assert_eq!(up.received()[0].headers["x-oneway-agent"], "dns:agent-1");
    // A 404 does not repeat the path (a token put there would come back).
    let r = gw
        .request(
            "agent-1",
            "GET",
            "/v1/nope/tkn_secret00000000000000000000000000?token=x",
            &[],
            Vec::new(),
        )
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(
        !r.body.contains("tkn_secret") && !r.body.contains("nope"),
        "{}",
        r.body
    );
    // The admin endpoints are not on the public listener.
    let r = gw
        .request("agent-1", "GET", "/metrics", &[], Vec::new())
        .await
        .expect("request");
    assert_eq!(r.status, 404);
    assert!(gw.stop().await);
}

/// A client PKI with an intermediate CA, written into `dir`: `root2.pem` (what the gateway
/// trusts), `via-int.pem` (leaf and intermediate) and `leaf-only.pem` (the leaf alone) with
/// their key, and CRLs: `root2.crl` (and a copy `root2-empty.crl`) and `int.crl` (empty),
/// `root2-revokes-int.crl`,
/// `int-expired.crl`, `other-issuer.crl`.
fn intermediate_pki(dir: &std::path::Path) {
    use rcgen::{
        BasicConstraints, CertificateParams, CertificateRevocationListParams, DnType,
        ExtendedKeyUsagePurpose, IsCa, Issuer, KeyIdMethod, KeyPair, KeyUsagePurpose,
        RevokedCertParams, SanType, SerialNumber,
    };
    use time::{Duration as D, OffsetDateTime};
    let now = OffsetDateTime::now_utc();
    let ca = |name: &str, serial: u64| {
        let mut p = CertificateParams::new(Vec::<String>::new()).expect("params");
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = now - D::hours(1);
        p.not_after = now + D::days(10);
        p.serial_number = Some(SerialNumber::from(serial));
        p
    };
    let root_key = KeyPair::generate().expect("key");
    let root_params = ca("test root 2", 1);
    let root_cert = root_params.self_signed(&root_key).expect("root");
    let root = Issuer::new(root_params, root_key);
    let int_key = KeyPair::generate().expect("key");
    let int_params = ca("test intermediate", 2);
    let int_cert = int_params.signed_by(&int_key, &root).expect("intermediate");
    let int = Issuer::new(int_params, int_key);
    let leaf_key = KeyPair::generate().expect("key");
    let mut leaf = CertificateParams::new(Vec::<String>::new()).expect("params");
    leaf.distinguished_name.push(DnType::CommonName, "via-int");
    leaf.subject_alt_names
        .push(SanType::DnsName("agent-1".try_into().expect("name")));
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    leaf.not_before = now - D::hours(1);
    leaf.not_after = now + D::days(10);
    leaf.serial_number = Some(SerialNumber::from(3u64));
    let leaf_cert = leaf.signed_by(&leaf_key, &int).expect("leaf");
    let crl = |issuer: &Issuer<'_, KeyPair>, revoked: Vec<u64>, next: D| {
        CertificateRevocationListParams {
            this_update: now - D::days(2),
            next_update: now + next,
            crl_number: SerialNumber::from(7u64),
            issuing_distribution_point: None,
            revoked_certs: revoked
                .into_iter()
                .map(|s| RevokedCertParams {
                    serial_number: SerialNumber::from(s),
                    revocation_time: now - D::minutes(1),
                    reason_code: None,
                    invalidity_date: None,
                })
                .collect(),
            key_identifier_method: KeyIdMethod::Sha256,
        }
        .signed_by(issuer)
        .expect("crl")
        .pem()
        .expect("pem")
    };
    let other = Issuer::new(ca("unrelated", 9), KeyPair::generate().expect("key"));
    let write = |name: &str, text: String| std::fs::write(dir.join(name), text).expect("write");
    write("root2.pem", root_cert.pem());
    write(
        "via-int.pem",
        format!("{}{}", leaf_cert.pem(), int_cert.pem()),
    );
    write("via-int.key", leaf_key.serialize_pem());
    write("leaf-only.pem", leaf_cert.pem());
    write("leaf-only.key", leaf_key.serialize_pem());
    let root_crl = crl(&root, vec![], D::days(5));
    write("root2.crl", root_crl.clone());
    write("root2-empty.crl", root_crl);
    let int_crl = crl(&int, vec![], D::days(5));
    write("int.crl", int_crl.clone());
    write("int-empty.crl", int_crl);
    write("root2-revokes-int.crl", crl(&root, vec![2], D::days(5)));
    write("int-expired.crl", crl(&int, vec![], -D::days(1)));
    write("other-issuer.crl", crl(&other, vec![], D::days(5)));
}

#[tokio::test]
async fn row12_intermediates_and_crls_fail_closed() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let pki = oneway_tests::TestPki::new();
    let dir = pki.dir().to_path_buf();
    intermediate_pki(&dir);
    let gw = TestGateway::builder()
        .pki(pki)
        .upstream(&up)
        .listener("client_ca", "\"root2.pem\"")
        .listener("crls", "[\"root2.crl\", \"int.crl\"]")
        .listener("max_connections_per_identity", "100")
        .start()
        .await;
    let post = |client: &'static str| {
        let gw = &gw;
        async move {
            gw.post(client, &uri(), &lp_headers(), LP.as_bytes().to_vec())
                .await
                .map(|r| r.status.as_u16())
        }
    };
    assert_eq!(
        post("via-int").await.expect("the full chain is accepted"),
        200
    );
    assert!(
        refused_at_handshake(&gw, "leaf-only").await,
        "missing intermediate"
    );
    let swap = |from: &str, to: &str| std::fs::copy(dir.join(from), dir.join(to)).expect("copy");

    swap("root2-revokes-int.crl", "root2.crl");
    gw.reload().await.expect("reload");
    assert!(
        refused_at_handshake(&gw, "via-int").await,
        "revoked intermediate"
    );

    swap("root2-empty.crl", "root2.crl");
    swap("int-expired.crl", "int.crl");
    gw.reload().await.expect("reload");
    assert!(
        refused_at_handshake(&gw, "via-int").await,
        "expired CRL fails closed"
    );

    swap("other-issuer.crl", "int.crl");
    gw.reload().await.expect("reload");
    assert!(
        refused_at_handshake(&gw, "via-int").await,
        "no CRL from the leaf's issuer: status unknown, refused"
    );
    // With good CRLs again the same certificate is accepted: the CRLs were the reason.
    swap("int-empty.crl", "int.crl");
    gw.reload().await.expect("reload");
    assert_eq!(post("via-int").await.expect("accepted again"), 200);
    assert_eq!(up.received().len(), 2);
    assert!(gw.stop().await);
}

#[tokio::test]
async fn a_token_limited_to_a_vpc_endpoint_is_refused_through_another_path() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = proxy_builder(&up)
        .listener("max_connections_per_ip", "10")
        .token_1("endpoints = [\"vpce-0123456789abcdef01\"]")
        .start()
        .await;
    // Through the endpoint the AWS TLV names: accepted.
    let tls = gw
        .connect_tls(Some("agent-1"), &v2_proxy([198, 51, 100, 30], 5), None)
        .await
        .expect("tls");
    let r = TestGateway::request_on(tls, &uri(), &lp_headers(), LP.as_bytes().to_vec())
        .await
        .expect("request");
    assert_eq!(r.status, 200, "{}", r.body);
    // Without an endpoint id (a v1 header): 403 before the body.
    let tls = gw
        .connect_tls(
            Some("agent-1"),
            b"PROXY TCP4 198.51.100.31 10.0.0.1 40010 443\r\n",
            None,
        )
        .await
        .expect("tls");
    let r = TestGateway::request_on(tls, &uri(), &lp_headers(), LP.as_bytes().to_vec())
        .await
        .expect("request");
    assert_eq!(r.status, 403, "{}", r.body);
    assert!(r.body.contains("oneway.endpoint_not_allowed"), "{}", r.body);
    assert_eq!(up.received().len(), 1);
    assert!(gw.stop().await);
}
