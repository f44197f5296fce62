//! The answer channel (issue 16): the only bytes that flow from the Guance side into the
//! agents' network. A write is answered by oneway itself, never with upstream bytes; an
//! upstream answer DataKit would drop data on (408, 429, 5xx, a timeout, no connection) becomes
//! 503 with `Retry-After` without a spool and 202 with one; only the documented permanent
//! refusals are passed on, with their status; a non-write API's answer is relayed only when
//! it is JSON and within `forward.max_api_answer_bytes`, and counted.

use std::time::Duration;

use oneway_tests::{FakeUpstream, Mode, TOKEN_1, TestGateway};

/// The metrics are the process's: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LP: &str = "cpu,host=web-1 usage=1i 1700000000000000000\n";
/// What the upstream puts in its bodies: it must never reach the agent.
const UPSTREAM_SECRET: &str = "{\"from_the_guance_side\":\"do-not-relay\"}";

async fn push(gw: &TestGateway) -> oneway_tests::Answer {
    gw.post(
        "agent-1",
        &format!("/v1/write/metric?token={TOKEN_1}"),
        &[("content-type", "application/line-protocol")],
        LP.as_bytes().to_vec(),
    )
    .await
    .expect("the request completes")
}

#[tokio::test]
async fn a_write_is_answered_by_oneway_never_with_the_upstreams_body() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    up.set_mode(Mode::Reply(200, "application/json", UPSTREAM_SECRET));
    let gw = TestGateway::builder().upstream(&up).start().await;
    let r = push(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"message":"forwarded","points":1}"#);
    assert_eq!(r.headers["content-type"], "application/json");
    assert!(gw.stop().await);
}

#[tokio::test]
async fn without_a_spool_every_answer_datakit_would_drop_data_on_becomes_503() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    for status in [408, 429, 409, 410, 500, 502, 503, 504, 301, 302] {
        up.set_mode(Mode::Reply(status, "text/html", UPSTREAM_SECRET));
        let r = push(&gw).await;
        assert_eq!(r.status, 503, "upstream {status}: {}", r.body);
        assert_eq!(r.headers["retry-after"], "5", "upstream {status}");
        assert!(!r.body.contains("do-not-relay"), "upstream {status}");
        assert!(r.body.contains("oneway.upstream_unavailable"), "{}", r.body);
        // (A 5xx skips the upstream for a few seconds; let the next push try it.)
        tokio::time::sleep(Duration::from_millis(10)).await;
        while gw.admin("/ready").await.expect("admin").0 != 200 {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    // A timeout (the upstream answers after the 2 s response deadline).
    up.set_mode(Mode::Slow(Duration::from_secs(4)));
    let r = push(&gw).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "5");
    // No connection at all.
    let down = FakeUpstream::down().await;
    let gone = TestGateway::builder().upstream_addr(down).start().await;
    let r = push(&gone).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "5");
    assert!(gone.stop().await);
    assert!(gw.stop().await);
}

#[tokio::test]
async fn permanent_refusals_keep_their_status_and_lose_the_upstreams_body() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let before = gw.metric("oneway_upstream_refused_total", &[]).await;
    for status in [400, 401, 403, 404, 406, 413, 415, 422] {
        up.set_mode(Mode::Reply(status, "application/json", UPSTREAM_SECRET));
        let r = push(&gw).await;
        assert_eq!(r.status, status, "{}", r.body);
        assert!(!r.body.contains("do-not-relay"), "upstream {status}");
        assert!(r.body.contains("\"oneway.upstream_refused\""), "{}", r.body);
    }
    assert_eq!(
        gw.metric("oneway_upstream_refused_total", &[]).await - before,
        8.0
    );
    // Over quota: DataKit looks for beyondDataUsage in a 403's body to warn its operator.
    up.set_mode(Mode::Reply(
        403,
        "application/json",
        r#"{"error_code":"kodo.beyondDataUsage","message":"over quota"}"#,
    ));
    let r = push(&gw).await;
    assert_eq!(r.status, 403);
    assert!(
        r.body.contains("oneway.upstream_refused.beyondDataUsage"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("over quota"));
    assert!(gw.stop().await);
}

#[tokio::test]
async fn with_a_spool_what_is_worth_retrying_is_spooled_and_permanent_refusals_pass() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(&format!(
            "[spool]\ndirectory = \"{}\"\nretry_max_backoff_ms = 200\n",
            dir.path().display()
        ))
        .start()
        .await;
    for status in [408, 429, 409] {
        up.set_mode(Mode::Reply(status, "text/html", UPSTREAM_SECRET));
        let r = push(&gw).await;
        assert_eq!(r.status, 202, "upstream {status}: {}", r.body);
        assert!(!r.body.contains("do-not-relay"));
    }
    up.set_mode(Mode::Reply(400, "application/json", UPSTREAM_SECRET));
    let r = push(&gw).await;
    assert_eq!(r.status, 400);
    assert!(!r.body.contains("do-not-relay"));
    assert!(gw.stop().await);
}

async fn ntp(gw: &TestGateway) -> oneway_tests::Answer {
    gw.request(
        "agent-1",
        "GET",
        &format!("/v1/ntp?token={TOKEN_1}"),
        &[],
        vec![],
    )
    .await
    .expect("the request completes")
}

async fn answers(gw: &TestGateway, outcome: &str) -> f64 {
    gw.metric(
        "oneway_api_answers_total",
        &["api=\"/v1/ntp\"", &format!("outcome=\"{outcome}\"")],
    )
    .await
}

#[tokio::test]
async fn a_non_write_answer_is_relayed_only_as_json_within_its_cap_and_counted() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("allow_apis = [\"/v1/ntp\"]")
        .forward("max_api_answer_bytes = 2048")
        .start()
        .await;
    up.set_mode(Mode::Reply(
        200,
        "application/json; charset=utf-8",
        r#"{"timestamp_sec":1700000000}"#,
    ));
    let r = ntp(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body, r#"{"timestamp_sec":1700000000}"#);
    assert_eq!(r.headers["content-type"], "application/json");
    // Not JSON.
    up.set_mode(Mode::Reply(200, "text/html", "<script>alert(1)</script>"));
    let r = ntp(&gw).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("oneway.answer_not_relayed.content_type"),
        "{}",
        r.body
    );
    assert!(!r.body.contains("script"));
    // Over the cap: refused whole, never cut.
    up.set_mode(Mode::Large(200, 4096));
    let r = ntp(&gw).await;
    assert_eq!(r.status, 503, "{}", r.body);
    assert!(
        r.body.contains("oneway.answer_not_relayed.too_large"),
        "{}",
        r.body
    );
    // Exactly at the cap: relayed.
    up.set_mode(Mode::Large(200, 2048));
    let r = ntp(&gw).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body.len(), 2048);
    assert_eq!(answers(&gw, "relayed").await, 2.0);
    assert_eq!(answers(&gw, "content_type").await, 1.0);
    assert_eq!(answers(&gw, "too_large").await, 1.0);
    let bytes = gw
        .metric("oneway_api_answer_bytes_total", &["api=\"/v1/ntp\""])
        .await;
    assert_eq!(
        bytes,
        (2048 + r#"{"timestamp_sec":1700000000}"#.len()) as f64
    );
    assert!(gw.stop().await);
}
