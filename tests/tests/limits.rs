//! Per-token rate limits over real TLS: an agent over its limit gets 503 with the right
//! `Retry-After` while another agent is unaffected; a token configured for 429 gets 429;
//! random tokens leave no limiter state. Tests here run one at a time: the metrics registry is
//! shared by every gateway in this process.

use oneway_tests::{FakeUpstream, TOKEN_1, TOKEN_2, TestGateway};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LP: &str = "cpu,host=web-1 usage=1i 1700000000000000000\n";

fn headers() -> [(&'static str, &'static str); 1] {
    [("content-type", "application/line-protocol")]
}

/// Pushes line protocol as `client`.
async fn push(gw: &TestGateway, client: &str, uri: &str, body: &str) -> oneway_tests::Answer {
    gw.post(client, uri, &headers(), body.as_bytes().to_vec())
        .await
        .expect("the request completes")
}

#[tokio::test]
async fn agent_over_its_limit_gets_503_with_retry_after_and_others_are_unaffected() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("rate = { requests_per_second = 0.5, requests_burst = 2 }")
        .start()
        .await;
    let before = gw
        .metric("oneway_limit_throttled_total", &["kind=\"requests\""])
        .await;
    let uri1 = format!("/v1/write/metric?token={TOKEN_1}");
    for _ in 0..2 {
        assert_eq!(push(&gw, "agent-1", &uri1, LP).await.status, 200);
    }
    let r = push(&gw, "agent-1", &uri1, LP).await;
    assert_eq!(r.status, 503, "{}", r.body);
    // 0.5 requests per second: the next slot is two seconds away (just under, as the two
    // allowed requests took a little time).
    let retry: u64 = r.headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=2).contains(&retry), "Retry-After {retry}");
    assert!(
        r.body.contains("oneway.rate_limited.requests"),
        "{}",
        r.body
    );
    assert_eq!(
        up.received().len(),
        2,
        "the throttled batch was not forwarded"
    );
    // agent-2 has no limit and is not affected.
    let uri2 = format!("/v1/write/metric?token={TOKEN_2}");
    for _ in 0..5 {
        assert_eq!(push(&gw, "agent-2", &uri2, LP).await.status, 200);
    }
    assert_eq!(
        gw.metric("oneway_limit_throttled_total", &["kind=\"requests\""])
            .await,
        before + 1.0
    );
}

#[tokio::test]
async fn a_token_configured_for_429_gets_429_and_points_are_limited_after_validation() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("rate = { points_per_second = 1, points_burst = 3, over_limit_status = 429 }")
        .start()
        .await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    // Three points pass (the client claims none: the real count is charged after validation).
    let three = LP.repeat(3);
    assert_eq!(push(&gw, "agent-1", &uri, &three).await.status, 200);
    let r = push(&gw, "agent-1", &uri, LP).await;
    assert_eq!(r.status, 429, "{}", r.body);
    assert!(r.body.contains("rate_limited.points"));
    assert!(r.headers.contains_key("retry-after"));
    // A claimed X-Points over the burst is refused before the body is read.
    let claim = [
        ("content-type", "application/line-protocol"),
        ("x-points", "1000"),
    ];
    let r = gw.post("agent-1", &uri, &claim, LP.into()).await.unwrap();
    assert_eq!(r.status, 429);
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn random_tokens_leave_no_limiter_state() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml("[rate_limits.default]\nrequests_per_second = 1000")
        .start()
        .await;
    let ok = format!("/v1/write/metric?token={TOKEN_1}");
    assert_eq!(push(&gw, "agent-1", &ok, LP).await.status, 200);
    let tracked = gw.metric("oneway_limit_tracked_tokens", &[]).await;
    assert_eq!(tracked, 1.0);
    for i in 0..200 {
        let uri = format!("/v1/write/metric?token=tkn_random{i:026}");
        assert_eq!(push(&gw, "agent-1", &uri, LP).await.status, 401);
    }
    assert_eq!(push(&gw, "agent-1", &ok, LP).await.status, 200);
    assert_eq!(
        gw.metric("oneway_limit_tracked_tokens", &[]).await,
        tracked,
        "flat"
    );
}

/// Pushes `body` twice: the second once the first is held at the (slow) upstream.
async fn second_while_first_in_flight(
    gw: &TestGateway,
    up: &FakeUpstream,
    body: Vec<u8>,
) -> (oneway_tests::Answer, oneway_tests::Answer) {
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let h = headers();
    let first = gw.post("agent-1", &uri, &h, body.clone());
    let (first, second) = tokio::join!(first, async {
        up.arrival().await;
        gw.post("agent-1", &uri, &h, body.clone()).await
    });
    (
        first.expect("first request"),
        second.expect("second request"),
    )
}

/// A valid line-protocol body of about `bytes`.
fn body_of(bytes: usize) -> Vec<u8> {
    LP.repeat(bytes / LP.len()).into_bytes()
}

#[tokio::test]
async fn memory_budget_turns_away_a_concurrent_large_body_with_503() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    up.set_mode(oneway_tests::Mode::Slow(std::time::Duration::from_millis(
        500,
    )));
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(
            "[limits]\nmax_body_bytes = 262144\nmax_upload_bytes = 262144\n\
             [overload]\nmemory_budget_bytes = 307200\n\
             max_memory_per_identity_bytes = 307200",
        )
        .start()
        .await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let big = body_of(200_000);
    let before = gw
        .metric("oneway_overload_refused_total", &["reason=\"memory\""])
        .await;
    let (first, second) = second_while_first_in_flight(&gw, &up, big.clone()).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 503, "{}", second.body);
    assert!(
        second.body.contains("oneway.overloaded.memory"),
        "{}",
        second.body
    );
    assert!(second.headers.contains_key("retry-after"));
    assert_eq!(
        gw.metric("oneway_overload_refused_total", &["reason=\"memory\""])
            .await,
        before + 1.0
    );
    // Released when the first finished.
    up.set_mode(oneway_tests::Mode::Status(200));
    assert_eq!(
        gw.post("agent-1", &uri, &headers(), big)
            .await
            .unwrap()
            .status,
        200
    );
    assert_eq!(
        gw.metric("oneway_overload_memory_reserved_bytes", &[])
            .await,
        0.0
    );
}

#[tokio::test]
async fn in_flight_cap_refuses_the_next_request_while_one_is_being_handled() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    up.set_mode(oneway_tests::Mode::Slow(std::time::Duration::from_millis(
        500,
    )));
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml("[overload]\nmax_in_flight_requests = 1")
        .start()
        .await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let (first, second) = second_while_first_in_flight(&gw, &up, LP.into()).await;
    assert_eq!(first.status, 200);
    assert_eq!(second.status, 503, "{}", second.body);
    assert!(
        second.body.contains("oneway.overloaded.in_flight"),
        "{}",
        second.body
    );
    up.set_mode(oneway_tests::Mode::Status(200));
    assert_eq!(push(&gw, "agent-1", &uri, LP).await.status, 200);
}

/// Shutdown while an agent is still sending its body: the upload finishes and is accepted.
/// (Here rather than in `gateway.rs` because it synchronises on the process-wide in-flight
/// gauge, which only serialised tests can read reliably.)
#[tokio::test]
async fn shutdown_lets_a_slowly_sent_body_finish() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let mut gw = TestGateway::builder().upstream(&up).start().await;
    let stop = gw.stopper().expect("not stopped yet");
    let base = gw.metric("oneway_http_in_flight_requests", &[]).await;
    let stream = tokio::net::TcpStream::connect(gw.public).await.unwrap();
    let name = rustls_pki_types::ServerName::try_from("localhost")
        .unwrap()
        .to_owned();
    let mut tls = gw.tls(Some("agent-1")).connect(name, stream).await.unwrap();
    let body = LP.repeat(100);
    let head = format!(
        "POST /v1/write/metric?token={TOKEN_1} HTTP/1.1\r\nhost: localhost\r\n\
         content-type: application/line-protocol\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    tls.write_all(head.as_bytes()).await.unwrap();
    tls.write_all(&body.as_bytes()[..100]).await.unwrap();
    tls.flush().await.unwrap();
    // Wait (bounded) until the gateway is handling the request, then stop it mid-upload.
    for _ in 0..200 {
        if gw.metric("oneway_http_in_flight_requests", &[]).await > base {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert!(
        gw.metric("oneway_http_in_flight_requests", &[]).await > base,
        "request in flight"
    );
    let _ = stop.send(());
    // Shutdown has begun once /ready says so; only then send the rest of the body.
    for _ in 0..200 {
        if gw
            .admin("/ready")
            .await
            .map(|(s, _)| s == 503)
            .unwrap_or(false)
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(gw.admin("/ready").await.unwrap().0, 503, "shutting down");
    tls.write_all(&body.as_bytes()[100..]).await.unwrap();
    tls.flush().await.unwrap();
    let mut response = Vec::new();
    let _ = tls.read_to_end(&mut response).await;
    let response = String::from_utf8_lossy(&response);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        gw.join().await,
        "in-flight request finished within the grace period"
    );
    assert_eq!(up.received().len(), 1);
    assert_eq!(up.received()[0].body, body.as_bytes());
}

/// Issue 16: one authenticated agent opening many slow uploads that declare large bodies holds
/// no more than its share of the memory budget and the in-flight slots; another agent's
/// pushes all succeed meanwhile, the first agent's uploads past its share get 503, and the
/// metrics say which share was full.
#[tokio::test]
async fn slow_large_uploads_of_one_agent_never_turn_another_agents_push_into_a_503() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const DECLARED: usize = 4 << 20;
    const SENT: usize = 200 << 10;
    const SHARE: usize = 4 << 20;
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(&format!(
            "[limits]\nmax_body_bytes = {DECLARED}\nmax_upload_bytes = {DECLARED}\n\
             [overload]\nmemory_budget_bytes = {}\nmax_in_flight_requests = 64\n\
             max_memory_per_identity_bytes = {SHARE}",
            16 << 20
        ))
        .start()
        .await;
    let refused = || async {
        let mut counts = Vec::new();
        for reason in [
            "memory",
            "in_flight",
            "identity_memory",
            "identity_in_flight",
        ] {
            counts.push(
                gw.metric(
                    "oneway_overload_refused_total",
                    &[&format!("reason=\"{reason}\"")],
                )
                .await,
            );
        }
        counts
    };
    let before = refused().await;
    assert_eq!(
        gw.metric(
            "oneway_overload_limit",
            &["limit=\"identity_memory_bytes\""]
        )
        .await,
        SHARE as f64
    );
    assert_eq!(
        gw.metric("oneway_overload_limit", &["limit=\"identity_in_flight\""])
            .await,
        16.0,
        "a quarter of max_in_flight_requests by default"
    );

    // Agent A: 40 uploads declaring 4 MiB each (160 MiB, ten times the budget), each sending
    // 200 KiB and then nothing more for now.
    let head = format!(
        "POST /v1/write/metric?token={TOKEN_1} HTTP/1.1\r\nHost: x\r\n\
         Content-Type: application/line-protocol\r\nContent-Length: {DECLARED}\r\n\r\n"
    );
    let part = LP.repeat(SENT / LP.len());
    let mut slow = Vec::new();
    for _ in 0..40 {
        let mut tls = gw.connect_tls(Some("agent-1"), b"", None).await.unwrap();
        tls.write_all(head.as_bytes()).await.unwrap();
        // A refused upload may be closed while it writes: that is the 503 read below.
        let _ = tls.write_all(part.as_bytes()).await;
        let _ = tls.flush().await;
        slow.push(tls);
        if slow.len() == 1 {
            // A body holds what has arrived, not what it declared.
            tokio::time::sleep(std::time::Duration::from_millis(200)).await;
            let reserved = gw
                .metric("oneway_overload_memory_reserved_bytes", &[])
                .await;
            assert!(
                reserved > 0.0 && reserved <= (2 * SENT) as f64,
                "{reserved} bytes reserved for {SENT} sent of {DECLARED} declared"
            );
        }
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    let reserved = gw
        .metric("oneway_overload_memory_reserved_bytes", &[])
        .await;
    assert!(
        reserved <= SHARE as f64,
        "agent A holds {reserved} bytes, more than its share of {SHARE}"
    );

    // Agent B pushes as usual, uncompressed and gzip, while A's uploads hang.
    let uri2 = format!("/v1/write/metric?token={TOKEN_2}");
    let batch = LP.repeat(5_000);
    for i in 0..20 {
        let r = if i % 2 == 0 {
            push(&gw, "agent-2", &uri2, &batch).await
        } else {
            gw.post(
                "agent-2",
                &uri2,
                &[
                    ("content-type", "application/line-protocol"),
                    ("content-encoding", "gzip"),
                ],
                oneway_tests::gzip(batch.as_bytes()),
            )
            .await
            .expect("the request completes")
        };
        assert_eq!(r.status, 200, "agent B push {i}: {}", r.body);
    }

    // A's uploads past its share were answered 503 with Retry-After; the others still wait.
    let mut answered_503 = 0;
    let mut waiting = 0;
    for mut tls in slow {
        let mut buf = vec![0u8; 4096];
        match tokio::time::timeout(std::time::Duration::from_millis(200), tls.read(&mut buf)).await
        {
            Ok(Ok(n)) if n > 0 => {
                let text = String::from_utf8_lossy(&buf[..n]);
                assert!(text.starts_with("HTTP/1.1 503"), "{text}");
                assert!(text.to_ascii_lowercase().contains("retry-after"), "{text}");
                assert!(text.contains("oneway.overloaded.identity_"), "{text}");
                answered_503 += 1;
            }
            Err(_) => waiting += 1,
            other => panic!("an upload of agent A ended without an answer: {other:?}"),
        }
    }
    assert!(answered_503 >= 20, "{answered_503} of A's uploads refused");
    assert!(waiting >= 1, "A keeps the uploads within its share");
    let after = refused().await;
    assert_eq!(
        after[0], before[0],
        "the global memory budget never ran out"
    );
    assert_eq!(
        after[1], before[1],
        "the global in-flight cap never ran out"
    );
    assert_eq!(
        (after[2] - before[2]) + (after[3] - before[3]),
        answered_503 as f64,
        "every refusal of A counted against its share"
    );
    assert!(gw.stop().await);
}

/// A request answered before its body is read (here an unknown token; a budget that runs out
/// is the same) gets its answer although the client is still sending: the gateway reads and
/// throws away what follows the response for a moment (a lingering close) instead of closing
/// with unread bytes, which resets the connection under the client (a broken pipe, and the
/// answer unread: curl saw `100` and `Send failure`).
#[tokio::test]
async fn a_client_still_sending_its_body_reads_the_refusal_instead_of_a_reset() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    for round in 0..3 {
        let body = vec![b'x'; 8 << 20];
        let head = format!(
            "POST /v1/write/metric?token=tkn_unknown0000000000000000000000000 HTTP/1.1\r\n\
             Host: x\r\nContent-Type: application/line-protocol\r\nContent-Length: {}\r\n\r\n",
            body.len()
        );
        let tls = gw.connect_tls(Some("agent-1"), b"", None).await.unwrap();
        let (mut rd, mut wr) = tokio::io::split(tls);
        let writer = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(&body).await?;
            wr.flush().await
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(
            std::time::Duration::from_secs(10),
            rd.read_to_end(&mut answer),
        )
        .await;
        let sent = tokio::time::timeout(std::time::Duration::from_secs(10), writer)
            .await
            .expect("the writer ends")
            .expect("the writer runs");
        let text = String::from_utf8_lossy(&answer);
        assert!(
            text.starts_with("HTTP/1.1 401"),
            "round {round}: {text} ({read:?})"
        );
        assert!(
            sent.is_ok(),
            "round {round}: the body is sent to its end, not reset: {sent:?}"
        );
    }
    assert!(up.received().is_empty(), "nothing was forwarded");
    assert!(gw.stop().await);
}
