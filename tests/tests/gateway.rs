//! The product path over real TLS on loopback: DataKit-shaped pushes arrive upstream byte for
//! byte with the right headers and the mapped token; every refusal happens before anything is
//! forwarded; metrics move for each path.

#[path = "../../protocol/tests/support/model.rs"]
#[expect(
    dead_code,
    unreachable_pub,
    reason = "a shared model; this test uses part of it"
)]
mod model;

use oneway_tests::{
    FakeUpstream, Mode, TOKEN_1, TOKEN_2, TestGateway, WORKSPACE_TOKEN, gzip, zstd,
};

const LP: &str = "cpu,host=web-1 usage_user=12i,usage_idle=80.5 1700000000000000000\n\
                  cpu,host=web-2 usage_user=3i,usage_idle=95.25 1700000000000000000\n";

fn datakit_headers<'a>(
    content_type: &'a str,
    encoding: Option<&'a str>,
) -> Vec<(&'a str, &'a str)> {
    let mut h = vec![
        ("content-type", content_type),
        ("user-agent", "datakit-linux-amd64/1.84.1/host-1"),
        ("referer", "DataKit"),
        ("x-global-tags", "cluster=prod,zone=a"),
        ("x-pkg-id", "dk_0123456789abcdefghij"),
        ("x-points", "999"),
        ("connection", "keep-alive"),
        ("x-forwarded-for", "10.9.9.9"),
        ("cookie", "secret=1"),
    ];
    if let Some(e) = encoding {
        h.push(("content-encoding", e));
    }
    h
}

/// Pushes [`LP`] with DataKit's headers.
async fn push_lp(gw: &TestGateway, client: &str, uri: &str) -> oneway_tests::Answer {
    gw.post(
        client,
        uri,
        &datakit_headers("application/line-protocol", None),
        LP.into(),
    )
    .await
    .expect("the request completes")
}

fn pb_batch() -> Vec<u8> {
    let mut rng = model::Rng::new(3);
    let points: Vec<_> = (0..50).map(|i| model::tsbs_cpu(&mut rng, i)).collect();
    model::batch_pb(&points)
}

#[tokio::test]
async fn push_every_body_kind_arrives_byte_identical_with_mapped_token() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let json = r#"[{"measurement":"cpu","tags":{"host":"a"},"fields":{"usage":1.5},"time":1}]"#;
    let cases: Vec<(&str, Option<&str>, Vec<u8>, u64)> = vec![
        (
            "application/protobuf; proto=com.guance.Point",
            Some("gzip"),
            gzip(&pb_batch()),
            50,
        ),
        ("application/line-protocol", None, LP.as_bytes().to_vec(), 2),
        (
            "application/line-protocol",
            Some("zstd"),
            zstd(LP.as_bytes()),
            2,
        ),
        ("application/json", Some("gzip"), gzip(json.as_bytes()), 1),
    ];
    for (i, (ct, enc, body, points)) in cases.into_iter().enumerate() {
        let uri = format!("/v1/write/metric?token={TOKEN_1}&precision=n");
        let r = gw
            .post("agent-1", &uri, &datakit_headers(ct, enc), body.clone())
            .await
            .unwrap();
        assert_eq!(r.status, 200, "case {i}: {}", r.body);
        let got = &up.received()[i];
        assert_eq!(
            got.body, body,
            "case {i}: body must be forwarded byte for byte"
        );
        assert_eq!(
            got.uri,
            format!("/v1/write/metric?precision=n&token={WORKSPACE_TOKEN}")
        );
        assert_eq!(
            got.headers["x-points"],
            points.to_string().as_str(),
            "validated count, not the client's"
        );
        assert_eq!(got.headers["content-type"], ct);
        assert_eq!(
            got.headers
                .get("content-encoding")
                .map(|v| v.to_str().unwrap()),
            enc
        );
        assert_eq!(
            got.headers["user-agent"],
            "datakit-linux-amd64/1.84.1/host-1"
        );
        assert_eq!(got.headers["referer"], "DataKit");
        assert_eq!(got.headers["x-oneway-agent"], "dns:agent-1");
        // The sinker's routing key is the token's policy, by default dropped.
        for hop in ["cookie", "x-forwarded-for", "x-token", "x-global-tags"] {
            assert!(
                got.headers.get(hop).is_none(),
                "{hop} must not be forwarded"
            );
        }
    }
    assert!(gw.stop().await);
}

#[tokio::test]
async fn unmapped_token_is_forwarded_as_sent_and_x_token_header_works() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let h = [
        ("content-type", "application/line-protocol"),
        ("x-token", TOKEN_2),
    ];
    let r = gw
        .post(
            "agent-2",
            "/v1/write/logging",
            &h,
            b"nginx status=\"ok\"\n".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        up.received()[0].uri,
        format!("/v1/write/logging?token={TOKEN_2}")
    );
}

#[tokio::test]
async fn auth_refusals_happen_before_anything_is_forwarded() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let h = datakit_headers("application/line-protocol", None);
    let before = gw
        .metric("oneway_auth_failures_total", &["not_bound"])
        .await;
    // agent-2's certificate with agent-1's token
    let r = gw
        .post(
            "agent-2",
            &format!("/v1/write/metric?token={TOKEN_1}"),
            &h,
            LP.into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 403);
    assert!(r.body.contains("oneway.not_bound"), "{}", r.body);
    assert!(!r.body.contains(TOKEN_1));
    let r = gw
        .post(
            "agent-1",
            "/v1/write/metric?token=tkn_unknown0000000000000000000000000",
            &h,
            LP.into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    let r = gw
        .post("agent-1", "/v1/write/metric", &h, LP.into())
        .await
        .unwrap();
    assert_eq!(r.status, 401);
    assert!(up.received().is_empty());
    assert_eq!(
        gw.metric("oneway_auth_failures_total", &["not_bound"])
            .await,
        before + 1.0
    );
}

#[tokio::test]
async fn invalid_oversize_and_unsupported_batches_are_refused_and_not_forwarded() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml("[limits]\nmax_body_bytes = 4096\nmax_decoded_bytes = 65536")
        .start()
        .await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let lp = datakit_headers("application/line-protocol", None);
    let bad = "cpu,host=a f=1i\ncpu,host=b f=oops\n";
    let before = gw
        .metric("oneway_validation_failures_total", &["bad_field_value"])
        .await;
    let r = gw.post("agent-1", &uri, &lp, bad.into()).await.unwrap();
    assert_eq!(r.status, 400);
    assert!(r.body.contains("line 2"), "{}", r.body);
    assert!(r.body.contains("byte 29"), "{}", r.body);
    assert!(
        !r.body.contains("oops") && !r.body.contains("host=b"),
        "no payload in responses: {}",
        r.body
    );
    assert!(
        r.body.contains("oneway.invalid_payload.bad_field_value"),
        "{}",
        r.body
    );
    assert_eq!(
        gw.metric("oneway_validation_failures_total", &["bad_field_value"])
            .await,
        before + 1.0
    );

    let r = gw
        .post("agent-1", &uri, &lp, vec![b'x'; 5000])
        .await
        .unwrap();
    assert_eq!(r.status, 413, "compressed cap");
    let bomb = gzip(&vec![b'a'; 200_000]);
    assert!(bomb.len() < 4096);
    let r = gw
        .post(
            "agent-1",
            &uri,
            &datakit_headers("application/line-protocol", Some("gzip")),
            bomb,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 413, "decoded cap: {}", r.body);
    let r = gw
        .post(
            "agent-1",
            &uri,
            &datakit_headers("application/line-protocol", Some("br")),
            LP.into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 415);
    let r = gw
        .post(
            "agent-1",
            &uri,
            &datakit_headers("application/line-protocol", Some("gzip")),
            b"not gzip".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/write/nope?token={TOKEN_1}"),
            &lp,
            LP.into(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 404);
    assert!(up.received().is_empty());
}

/// The default policy is the smallest set DataKit needs to keep sending data: leader
/// election (without it, a DataKit with election on stops its elected inputs). Everything
/// else is refused unless a token's `allow_apis` names it.
#[tokio::test]
async fn non_write_apis_follow_the_token_policy() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    for api in ["/v1/election", "/v1/election/heartbeat"] {
        let r = gw
            .post(
                "agent-1",
                &format!("{api}?token={TOKEN_1}&namespace=default&id=dk-1"),
                &[],
                b"{}".to_vec(),
            )
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{api}");
    }
    for (method, uri) in [
        ("GET", format!("/v1/ntp?token={TOKEN_1}")),
        ("GET", format!("/v1/check/token/{TOKEN_1}")),
        (
            "GET",
            format!("/v1/datakit/pull?token={TOKEN_1}&filters=true"),
        ),
        ("POST", format!("/v1/query/raw?token={TOKEN_1}")),
        ("POST", format!("/v1/workspace?token={TOKEN_1}")),
        ("POST", format!("/v1/object/labels?token={TOKEN_1}")),
        ("POST", format!("/v1/log?token={TOKEN_1}")),
    ] {
        let r = gw
            .request("agent-1", method, &uri, &[], b"{}".to_vec())
            .await
            .unwrap();
        assert_eq!(r.status, 403, "{uri}");
        assert!(r.body.contains("api_not_allowed"));
    }
    let got = up.received();
    assert_eq!(got.len(), 2);
    assert_eq!(
        got[0].uri,
        format!("/v1/election?id=dk-1&namespace=default&token={WORKSPACE_TOKEN}")
    );

    // A token that names more APIs gets them.
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("allow_apis = [\"/v1/ntp\", \"/v1/check/token\"]")
        .start()
        .await;
    for uri in [
        format!("/v1/ntp?token={TOKEN_1}"),
        format!("/v1/check/token/{TOKEN_1}"),
    ] {
        let r = gw
            .request("agent-1", "GET", &uri, &[], vec![])
            .await
            .unwrap();
        assert_eq!(r.status, 200, "{uri}");
    }
    let got = up.received();
    assert_eq!(got[2].uri, format!("/v1/ntp?token={WORKSPACE_TOKEN}"));
    assert_eq!(got[3].uri, format!("/v1/check/token/{WORKSPACE_TOKEN}"));
}

#[tokio::test]
async fn upstream_down_or_failing_is_503_with_retry_after() {
    let down = FakeUpstream::down().await;
    let gw = TestGateway::builder().upstream_addr(down).start().await;
    let h = datakit_headers("application/line-protocol", None);
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let r = gw.post("agent-1", &uri, &h, LP.into()).await.unwrap();
    assert_eq!(r.status, 503);
    assert_eq!(r.headers["retry-after"], "5");
    let (status, _) = gw.admin("/ready").await.unwrap();
    assert_eq!(status, 503, "not ready while the only upstream is down");

    let up = FakeUpstream::start().await;
    up.set_mode(Mode::Status(502));
    let gw = TestGateway::builder().upstream(&up).start().await;
    let r = gw.post("agent-1", &uri, &h, LP.into()).await.unwrap();
    assert_eq!(r.status, 503);
    up.set_mode(Mode::Status(400));
    let r = gw.post("agent-1", &uri, &h, LP.into()).await.unwrap();
    assert_eq!(r.status, 400, "upstream 4xx passes through");
}

#[tokio::test]
async fn handshake_refuses_missing_foreign_expired_and_revoked_certificates() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let before = gw.metric("oneway_tls_handshake_failures_total", &[]).await;
    for client in [None, Some("stranger"), Some("expired"), Some("revoked")] {
        let stream = tokio::net::TcpStream::connect(gw.public).await.unwrap();
        let name = rustls_pki_types::ServerName::try_from("localhost")
            .unwrap()
            .to_owned();
        let result = async {
            let mut tls = gw.tls(client).connect(name, stream).await?;
            // TLS 1.3: the server's verdict on the client certificate arrives after the
            // client's handshake completes; a request makes it visible.
            use tokio::io::{AsyncReadExt, AsyncWriteExt};
            tls.write_all(b"GET /v1/ntp HTTP/1.1\r\nhost: x\r\n\r\n")
                .await?;
            let mut buf = [0u8; 64];
            let n = tls.read(&mut buf).await?;
            if n == 0 {
                return Err(std::io::Error::other("closed"));
            }
            Ok::<_, std::io::Error>(())
        }
        .await;
        assert!(result.is_err(), "{client:?} must be refused");
    }
    let (status, _) = gw.admin("/live").await.unwrap();
    assert_eq!(status, 200);
    assert!(gw.metric("oneway_tls_handshake_failures_total", &[]).await >= before + 4.0);
    assert!(up.received().is_empty());
}

#[tokio::test]
async fn metrics_count_requests_points_and_bytes() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let points = gw
        .metric("oneway_ingest_points_total", &["category=\"network\""])
        .await;
    let ok = gw
        .metric(
            "oneway_http_requests_total",
            &["category=\"network\"", "status=\"2xx\""],
        )
        .await;
    let uri = format!("/v1/write/network?token={TOKEN_1}");
    let r = push_lp(&gw, "agent-1", &uri).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        gw.metric("oneway_ingest_points_total", &["category=\"network\""])
            .await,
        points + 2.0
    );
    assert_eq!(
        gw.metric(
            "oneway_http_requests_total",
            &["category=\"network\"", "status=\"2xx\""]
        )
        .await,
        ok + 1.0
    );
    let (_, text) = gw.admin("/metrics").await.unwrap();
    assert!(
        text.contains("oneway_tls_certificate_expiry_seconds{cert=\"server\"}"),
        "{text}"
    );
    assert!(
        !text.contains(TOKEN_1) && !text.contains("agent-1"),
        "no secrets or identities in labels"
    );
}

#[tokio::test]
async fn shutdown_lets_a_slow_upload_finish() {
    let up = FakeUpstream::start().await;
    up.set_mode(Mode::Slow(std::time::Duration::from_millis(800)));
    let mut gw = TestGateway::builder().upstream(&up).start().await;
    let stop = gw.stopper().expect("not stopped yet");
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let h = datakit_headers("application/line-protocol", None);
    let request = gw.post("agent-1", &uri, &h, LP.into());
    let (answer, ()) = tokio::join!(request, async {
        // Once the request is at the (slow) upstream, ask the gateway to stop.
        up.arrival().await;
        let _ = stop.send(());
    });
    assert_eq!(answer.unwrap().status, 200);
    assert!(
        gw.join().await,
        "in-flight request finished within the grace period"
    );
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn system_curl_pushes_with_client_certificate() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let port = gw.public.port();
    let pki = gw.pki.dir().to_path_buf();
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(pki.join("ca.pem"))
        .arg("--cert")
        .arg(pki.join("agent-1.pem"))
        .arg("--key")
        .arg(pki.join("agent-1.key"))
        .args([
            "-H",
            "Content-Type: application/line-protocol",
            "--data-binary",
            LP.trim_end(),
        ])
        .arg(format!(
            "https://localhost:{port}/v1/write/metric?token={TOKEN_1}"
        ))
        .output()
        .await
        .expect("curl is installed (.ci/run installs it)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.ends_with("200"),
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(up.received().len(), 1);
    assert_eq!(up.received()[0].headers["x-points"], "2");
    // Without a client certificate curl cannot get a response.
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--resolve"])
        .arg(format!("localhost:{port}:127.0.0.1"))
        .arg("--cacert")
        .arg(pki.join("ca.pem"))
        .arg(format!("https://localhost:{port}/v1/ntp?token={TOKEN_1}"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn tls_upstream_is_verified_against_its_ca_and_name() {
    let pki = oneway_tests::TestPki::new();
    let up = FakeUpstream::start_tls(&pki).await;
    let gw = TestGateway::builder()
        .pki(pki)
        .upstream(&up)
        .upstream_toml("tls_ca = \"ca.pem\"\ntls_server_name = \"localhost\"")
        .start()
        .await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let r = push_lp(&gw, "agent-1", &uri).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.received().len(), 1);

    // The same upstream under a name its certificate does not carry: refused, nothing sent.
    let pki = oneway_tests::TestPki::new();
    let up = FakeUpstream::start_tls(&pki).await;
    let gw = TestGateway::builder()
        .pki(pki)
        .upstream(&up)
        .upstream_toml("tls_ca = \"ca.pem\"\ntls_server_name = \"kodo.internal\"")
        .start()
        .await;
    let before = gw
        .metric("oneway_upstream_requests_total", &["unreachable"])
        .await;
    let r = push_lp(&gw, "agent-1", &uri).await;
    assert_eq!(r.status, 503);
    assert!(up.received().is_empty());
    assert!(
        gw.metric("oneway_upstream_requests_total", &["unreachable"])
            .await
            >= before + 1.0
    );
}

#[tokio::test]
async fn uploads_need_the_policy_and_have_their_own_cap() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("allow_apis = [\"/v1/upload/profiling\", \"/v1/ntp\"]")
        .toml("[limits]\nmax_body_bytes = 1024\nmax_upload_bytes = 8192")
        .start()
        .await;
    let h = [
        ("content-type", "multipart/form-data; boundary=x"),
        ("x-datakit-version", "1.84.1"),
    ];
    let uri = format!("/v1/upload/profiling?token={TOKEN_1}");
    let r = gw
        .post("agent-1", &uri, &h, vec![b'p'; 4000])
        .await
        .unwrap();
    assert_eq!(
        r.status, 200,
        "above the body cap, within the upload cap: {}",
        r.body
    );
    assert_eq!(up.received()[0].headers["x-datakit-version"], "1.84.1");
    let r = gw
        .post("agent-1", &uri, &h, vec![b'p'; 9000])
        .await
        .unwrap();
    assert_eq!(r.status, 413);
    let r = gw
        .post(
            "agent-2",
            &format!("/v1/upload/profiling?token={TOKEN_2}"),
            &h,
            vec![b'p'; 10],
        )
        .await
        .unwrap();
    assert_eq!(
        r.status, 403,
        "agent-2's policy is the default, without uploads"
    );
    let before = gw
        .metric("oneway_decode_failures_total", &["corrupt"])
        .await;
    let bad = [
        ("content-type", "application/line-protocol"),
        ("content-encoding", "gzip"),
    ];
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/write/metric?token={TOKEN_1}"),
            &bad,
            b"\x1f\x8bnot".to_vec(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 400);
    assert!(gw.metric("oneway_decode_failures_total", &[]).await > before);
    assert_eq!(up.received().len(), 1);
}

#[tokio::test]
async fn a_batch_compressing_far_better_than_the_estimate_is_still_accepted() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let lp = LP.repeat(20_000);
    let body = gzip(lp.as_bytes());
    assert!(
        lp.len() / body.len() > 64,
        "ratio {}",
        lp.len() / body.len()
    );
    let h = datakit_headers("application/line-protocol", Some("gzip"));
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/write/metric?token={TOKEN_1}"),
            &h,
            body.clone(),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(up.received()[0].headers["x-points"], "40000");
    assert_eq!(up.received()[0].body, body);
}
