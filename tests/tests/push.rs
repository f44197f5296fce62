//! `oneway push` against the in-process gateway: what it counts is what the upstream received.

use std::time::Duration;

use oneway_gateway::tools::push::{Compression, Format, PushConfig, run};
use oneway_tests::{FakeUpstream, TOKEN_1, TestGateway};

fn config(gw: &TestGateway) -> PushConfig {
    PushConfig {
        gateway: gw.public,
        server_name: "localhost".into(),
        ca: gw.pki.path("ca.pem"),
        identity: (gw.pki.path("agent-1.pem"), gw.pki.path("agent-1.key")),
        token: TOKEN_1.into(),
        category: "metric".into(),
        format: Format::LineProtocol,
        compression: Compression::Gzip,
        points_per_batch: 100,
        file: None,
        connections: 4,
        rate: None,
        duration: None,
        count: Some(40),
        progress: false,
        plain: false,
        path: None,
        reconnect: false,
    }
}

#[tokio::test]
async fn counts_match_what_the_upstream_received() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    for (format, compression) in [
        (Format::LineProtocol, Compression::Gzip),
        (Format::Protobuf, Compression::Zstd),
    ] {
        let before = up.delivered().len();
        let summary = run(PushConfig {
            format,
            compression,
            ..config(&gw)
        })
        .await
        .expect("push");
        assert_eq!(summary.errors, 0, "{summary}");
        assert_eq!(summary.requests, 40, "{summary}");
        assert_eq!(summary.statuses.get(&200), Some(&40), "{summary}");
        assert_eq!(summary.points, 40 * 100);
        let delivered = up
            .wait_delivered(before + 40, Duration::from_secs(10))
            .await;
        let new = &delivered[before..];
        assert_eq!(new.len(), 40);
        let sent: u64 = new.iter().map(|d| d.body.len() as u64).sum();
        assert_eq!(
            sent, summary.bytes_compressed,
            "compressed bytes counted as sent"
        );
        assert!(summary.bytes_decoded > summary.bytes_compressed);
        assert!(summary.latency_ms["p50"] <= summary.latency_ms["max"]);
    }
}

#[tokio::test]
async fn a_line_protocol_file_arrives_as_is_and_refusals_are_counted() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("batch.lp");
    let lines = "cpu,host=a v=1i 1\n# a comment\nmem,host=a used=2i 2\n";
    std::fs::write(&file, lines).expect("write");
    let summary = run(PushConfig {
        file: Some(file.clone()),
        compression: Compression::Identity,
        count: Some(3),
        connections: 1,
        ..config(&gw)
    })
    .await
    .expect("push");
    assert_eq!(summary.statuses.get(&200), Some(&3), "{summary}");
    assert_eq!(summary.points, 6, "two points per request");
    let delivered = up.wait_delivered(3, Duration::from_secs(10)).await;
    assert!(delivered.iter().all(|d| d.body == lines.as_bytes()));

    // A token the gateway does not know: every answer is a 401, counted, nothing delivered.
    let summary = run(PushConfig {
        token: "tkn_unknown0000000000000000000000000".into(),
        count: Some(5),
        connections: 2,
        ..config(&gw)
    })
    .await
    .expect("push");
    assert_eq!(summary.statuses.get(&401), Some(&5), "{summary}");
    assert_eq!(summary.points, 0);
    assert_eq!(up.delivered().len(), 3);
}

#[tokio::test]
async fn a_handshake_per_request_and_idle_connections() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let summary = run(PushConfig {
        reconnect: true,
        count: Some(6),
        connections: 2,
        ..config(&gw)
    })
    .await
    .expect("push");
    assert_eq!(summary.statuses.get(&200), Some(&6), "{summary}");
    let idle = oneway_gateway::tools::push::open_idle(&config(&gw), 20)
        .await
        .expect("idle");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(idle.alive(), 20);
    // Each idle connection made one request.
    assert_eq!(
        up.wait_delivered(26, Duration::from_secs(10)).await.len(),
        26
    );
}

#[tokio::test]
async fn a_saved_body_is_what_push_sends() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("body.gz");
    let saved = oneway_gateway::tools::push::save_body(&config(&gw), &path).expect("save");
    let bytes = std::fs::read(&path).expect("read");
    assert_eq!(saved.bytes, bytes.len() as u64);
    assert_eq!(saved.points, 100);
    assert_eq!(saved.content_type, "application/line-protocol");
    assert_eq!(saved.content_encoding, Some("gzip"));
    let mut out = Vec::new();
    let decoded = oneway_protocol::decode::Decoder::new()
        .decode(
            oneway_protocol::decode::Encoding::Gzip,
            &bytes,
            &mut out,
            1 << 20,
        )
        .expect("gunzip");
    assert_eq!(decoded, oneway_gateway::tools::push::line_protocol(100, 0));
    assert_eq!(saved.decoded, decoded.len() as u64);

    // The first body push sends is the saved one, byte for byte.
    let summary = run(PushConfig {
        count: Some(1),
        connections: 1,
        ..config(&gw)
    })
    .await
    .expect("push");
    assert_eq!(summary.statuses.get(&200), Some(&1), "{summary}");
    let delivered = up.wait_delivered(1, Duration::from_secs(10)).await;
    assert_eq!(delivered[0].body, bytes);

    let saved = oneway_gateway::tools::push::save_body(
        &PushConfig {
            format: Format::Protobuf,
            compression: Compression::Zstd,
            ..config(&gw)
        },
        &path,
    )
    .expect("save");
    assert_eq!(saved.content_type, oneway_protocol::PROTOBUF_CONTENT_TYPE);
    assert_eq!(saved.content_encoding, Some("zstd"));
    let decoded = zstd::decode_all(&std::fs::read(&path).expect("read")[..]).expect("unzstd");
    assert_eq!(saved.decoded, decoded.len() as u64);
}

/// Every request the gateway may have in flight can reuse an upstream connection: after a burst
/// of concurrent requests, a second burst of the same size opens no new upstream connection.
#[tokio::test]
async fn concurrent_bursts_reuse_upstream_connections() {
    let up = FakeUpstream::start().await;
    // Slow answers keep all 100 requests in flight at the upstream at once.
    up.set_mode(oneway_tests::Mode::Slow(Duration::from_millis(300)));
    let gw = TestGateway::builder().upstream(&up).start().await;
    let burst = || {
        run(PushConfig {
            connections: 100,
            count: Some(100),
            points_per_batch: 1,
            ..config(&gw)
        })
    };
    let summary = burst().await.expect("push");
    assert_eq!(summary.statuses.get(&200), Some(&100), "{summary}");
    let first = up.connections();
    // More than a pool of 64 idle connections could keep, or the test proves nothing.
    assert!(
        first > 64,
        "only {first} upstream connections in the first burst"
    );
    let summary = burst().await.expect("push");
    assert_eq!(summary.statuses.get(&200), Some(&100), "{summary}");
    assert_eq!(
        up.connections(),
        first,
        "the second burst opened upstream connections instead of reusing idle ones"
    );
}
