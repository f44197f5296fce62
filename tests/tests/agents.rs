//! Operators see every agent: the per-agent series (`agent`, the token's configured name:
//! `alpha` for agent-1's token, `bravo` for agent-2's) of two agents pushing at once, read from a real `/metrics` scrape, and no token's secret in
//! any metric or audit line. Its own test binary: the metrics registry is process-wide.

use std::time::Duration;

use oneway_tests::{FakeUpstream, TOKEN_1, TOKEN_2, TestGateway, WORKSPACE_TOKEN};

const LP: &[(&str, &str)] = &[("content-type", "application/line-protocol")];

#[tokio::test]
async fn two_named_agents_are_told_apart_in_a_scrape_and_no_secret_is_shown() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        // agent-1 may send two requests at once, then one a minute.
        .token_1("rate = { requests_per_second = 0.016, requests_burst = 2 }")
        .start()
        .await;
    let uri1 = format!("/v1/write/metric?token={TOKEN_1}");
    let uri2 = format!("/v1/write/logging?token={TOKEN_2}");
    let three = b"cpu,host=a v=1i 1\ncpu,host=b v=2i 2\ncpu,host=c v=3i 3\n".to_vec();
    let five = b"app message=\"a\" 1\napp message=\"b\" 2\napp message=\"c\" 3\napp message=\"d\" 4\napp message=\"e\" 5\n".to_vec();
    for _ in 0..2 {
        let r = gw
            .post("agent-1", &uri1, LP, three.clone())
            .await
            .expect("push");
        assert_eq!(r.status, 200, "{}", r.body);
    }
    // agent-1 over its rate.
    let r = gw
        .post("agent-1", &uri1, LP, three.clone())
        .await
        .expect("push");
    assert_eq!(r.status, 503, "{}", r.body);
    let five_len = five.len() as f64;
    let r = gw.post("agent-2", &uri2, LP, five).await.expect("push");
    assert_eq!(r.status, 200, "{}", r.body);
    // agent-2 sends a malformed batch, then its token from agent-1's certificate.
    let r = gw
        .post("agent-2", &uri2, LP, b"app message=tru 1\n".to_vec())
        .await
        .expect("push");
    assert_eq!(r.status, 400, "{}", r.body);
    let r = gw
        .post("agent-1", &uri2, LP, b"app v=1i 1\n".to_vec())
        .await
        .expect("push");
    assert_eq!(r.status, 403, "{}", r.body);
    // A token nobody configured: no agent to name.
    let r = gw
        .post(
            "agent-1",
            "/v1/write/metric?token=tkn_unknown0000000000000000000000000",
            LP,
            b"cpu v=1i 1\n".to_vec(),
        )
        .await
        .expect("push");
    assert_eq!(r.status, 401, "{}", r.body);
    up.wait_delivered(3, Duration::from_secs(10)).await;

    let a1 = "agent=\"alpha\"";
    let a2 = "agent=\"bravo\"";
    assert_eq!(gw.metric("oneway_ingest_points_total", &[a1]).await, 6.0);
    assert_eq!(gw.metric("oneway_ingest_points_total", &[a2]).await, 5.0);
    assert_eq!(
        gw.metric(
            "oneway_ingest_batches_total",
            &[a1, "outcome=\"forwarded\""]
        )
        .await,
        2.0
    );
    assert_eq!(
        gw.metric("oneway_ingest_bytes_total", &[a2, "stage=\"decoded\""])
            .await,
        five_len
    );
    assert_eq!(gw.metric("oneway_limit_throttled_total", &[a1]).await, 1.0);
    assert_eq!(gw.metric("oneway_limit_throttled_total", &[a2]).await, 0.0);
    assert_eq!(
        gw.metric("oneway_validation_failures_total", &[a2]).await,
        1.0
    );
    assert_eq!(
        gw.metric("oneway_validation_failures_total", &[a1]).await,
        0.0
    );
    assert_eq!(
        gw.metric("oneway_auth_failures_total", &[a2, "kind=\"not_bound\""])
            .await,
        1.0
    );
    assert_eq!(
        gw.metric(
            "oneway_auth_failures_total",
            &["agent=\"\"", "kind=\"unknown_token\""]
        )
        .await,
        1.0
    );
    assert_eq!(
        gw.metric("oneway_http_requests_total", &[a1, "status=\"2xx\""])
            .await,
        2.0
    );
    // The accepted batch's series carry the labels the per-agent handles were made with.
    assert_eq!(
        gw.metric(
            "oneway_http_requests_total",
            &[
                a2,
                "route=\"write\"",
                "category=\"logging\"",
                "status=\"2xx\""
            ]
        )
        .await,
        1.0
    );
    assert_eq!(
        gw.metric("oneway_ingest_points_total", &[a1, "category=\"metric\""])
            .await,
        6.0
    );
    assert!(
        gw.metric(
            "oneway_ingest_bytes_total",
            &[a1, "category=\"metric\"", "stage=\"compressed\""]
        )
        .await
            > 0.0
    );
    assert_eq!(
        gw.metric("oneway_ingest_batches_total", &[a2, "outcome=\"spooled\""])
            .await,
        0.0
    );
    assert_eq!(
        gw.metric("oneway_http_requests_total", &[a1, "status=\"5xx\""])
            .await,
        1.0
    );
    for agent in [a1, a2] {
        assert_eq!(gw.metric("oneway_agent_configured", &[agent]).await, 1.0);
        assert!(
            gw.metric("oneway_agent_last_push_timestamp_seconds", &[agent])
                .await
                > 1.7e9
        );
    }

    // The three forwarded batches went over the upstream pool: each either opened a
    // connection (timed, plain TCP here) or reused one.
    let opened = gw
        .metric("oneway_upstream_connections_opened_total", &[])
        .await;
    let reused = gw
        .metric("oneway_upstream_connections_reused_total", &[])
        .await;
    assert!(opened >= 1.0, "{opened} opened");
    assert_eq!(opened + reused, 3.0, "{opened} opened, {reused} reused");
    assert!(gw.metric("oneway_upstream_connections_open", &[]).await >= 1.0);
    assert_eq!(
        gw.metric(
            "oneway_upstream_connect_duration_seconds_count",
            &["tls=\"false\""]
        )
        .await,
        opened
    );
    assert_eq!(
        gw.metric("oneway_upstream_connect_errors_total", &[]).await,
        0.0
    );

    // No secret anywhere an operator looks: the scrape and the audit trail.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (_, scrape) = gw.admin("/metrics").await.expect("scrape");
    let audit = std::fs::read_to_string(gw.pki.path("audit.jsonl")).expect("audit trail");
    assert!(audit.contains("\"agent\":\"alpha\""), "{audit}");
    assert!(audit.contains("\"agent\":\"bravo\""), "{audit}");
    for secret in [
        TOKEN_1,
        TOKEN_2,
        WORKSPACE_TOKEN,
        "tkn_unknown0000000000000000000000000",
    ] {
        assert!(!scrape.contains(secret), "{secret} in the scrape");
        assert!(!audit.contains(secret), "{secret} in the audit trail");
    }
    // The trail the gateway wrote is one unbroken chain from its first line.
    let v = oneway_gateway::tools::audit::verify(&[gw.pki.path("audit.jsonl")], None)
        .expect("the chain holds");
    assert!(v.lines >= 3, "{v:?}");
    assert_eq!(v.first_seq, 1);
    assert!(gw.stop().await);
}
