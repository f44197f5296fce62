//! `oneway agent`: an unmodified DataKit-shaped client (plain HTTP, no client certificate,
//! `?token=`) → agent → gateway (mTLS) → upstream, byte for byte; DataKit's `http_proxy` style
//! too; answers relayed unchanged (5xx included); and the agent connects nowhere but its gateway.

use std::net::SocketAddr;
use std::time::Duration;

use oneway_gateway::tools::agent::{Agent, AgentConfig, AgentError};
use oneway_tests::{Answer, FakeUpstream, TOKEN_1, TestGateway, TestPki, gzip};

fn config(pki: &TestPki, gateways: Vec<SocketAddr>) -> AgentConfig {
    AgentConfig {
        listen: "127.0.0.1:0".parse().expect("addr"),
        allow_non_loopback: false,
        gateways,
        server_name: "localhost".into(),
        ca: pki.path("ca.pem"),
        cert: pki.path("agent-1.pem"),
        key: pki.path("agent-1.key"),
        connect_timeout: Duration::from_secs(2),
        request_timeout: Duration::from_secs(10),
        max_body_bytes: 1 << 20,
    }
}

/// Starts an agent; returns its address and the sender that stops it.
async fn start(config: AgentConfig) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let agent = Agent::bind(config).expect("agent");
    let addr = agent.local_addr().expect("addr");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(agent.serve(async {
        let _ = stopped.await;
    }));
    (addr, stop)
}

/// What DataKit sends, over plain HTTP (`uri` is origin-form, or absolute-form for a proxy).
async fn datakit(agent: SocketAddr, method: &str, uri: &str, body: Vec<u8>) -> Answer {
    let tcp = tokio::net::TcpStream::connect(agent)
        .await
        .expect("connect");
    TestGateway::send_on(
        tcp,
        method,
        uri,
        &[
            ("content-type", "application/line-protocol"),
            ("content-encoding", "gzip"),
            ("user-agent", "datakit-linux-amd64/1.70.0/host-1"),
            ("referer", "DataKit"),
        ],
        body,
    )
    .await
    .expect("answer")
}

#[tokio::test]
async fn an_unmodified_datakit_pushes_through_the_agent_byte_for_byte() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let (agent, _stop) = start(config(&gw.pki, vec![gw.public])).await;
    let body =
        gzip(b"cpu,host=a usage=1i 1700000000000000000\nmem,host=a used=2i 1700000000000000000\n");

    let direct = datakit(
        agent,
        "POST",
        &format!("/v1/write/metric?token={TOKEN_1}"),
        body.clone(),
    )
    .await;
    assert_eq!(direct.status, 200, "{}", direct.body);
    // DataKit's http_proxy style: the absolute-form URL names the gateway.
    let proxied = datakit(
        agent,
        "POST",
        &format!("http://localhost/v1/write/metric?token={TOKEN_1}"),
        body.clone(),
    )
    .await;
    assert_eq!(proxied.status, 200, "{}", proxied.body);

    let delivered = up.wait_delivered(2, Duration::from_secs(10)).await;
    assert_eq!(delivered.len(), 2);
    for d in &delivered {
        assert_eq!(d.body, body, "byte-identical");
        assert!(d.uri.starts_with("/v1/write/metric"), "{}", d.uri);
        assert_eq!(d.headers["content-encoding"], "gzip");
        assert_eq!(d.headers["user-agent"], "datakit-linux-amd64/1.70.0/host-1");
    }
}

#[tokio::test]
async fn answers_are_relayed_unchanged_5xx_included() {
    // No upstream and no spool: the gateway answers 503 with Retry-After and a JSON body.
    let gw = TestGateway::builder()
        .upstream_addr(FakeUpstream::down().await)
        .start()
        .await;
    let (agent, _stop) = start(config(&gw.pki, vec![gw.public])).await;
    let uri = format!("/v1/write/metric?token={TOKEN_1}");
    let body = gzip(b"cpu,host=a usage=1i 1\n");
    let direct = gw
        .post(
            "agent-1",
            &uri,
            &[
                ("content-type", "application/line-protocol"),
                ("content-encoding", "gzip"),
            ],
            body.clone(),
        )
        .await
        .expect("direct");
    let relayed = datakit(agent, "POST", &uri, body).await;
    assert!(direct.status.is_server_error(), "{direct:?}");
    assert_eq!(relayed.status, direct.status);
    assert_eq!(relayed.body, direct.body);
    assert_eq!(
        relayed.headers.get("retry-after"),
        direct.headers.get("retry-after")
    );
    // A 4xx too (a token the gateway does not know).
    let unknown = datakit(
        agent,
        "POST",
        "/v1/write/metric?token=tkn_unknown0000000000000000000000000",
        gzip(b"cpu v=1i 1\n"),
    )
    .await;
    assert_eq!(unknown.status, 401, "{}", unknown.body);
    assert!(unknown.body.contains("oneway."), "{}", unknown.body);
}

#[tokio::test]
async fn the_agent_connects_nowhere_but_its_gateway() {
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let (agent, _stop) = start(config(&gw.pki, vec![gw.public])).await;
    // Something listening on another loopback address: a proxy request for it is refused,
    // and nothing connects to it.
    let bystander = tokio::net::TcpListener::bind("127.0.0.2:0")
        .await
        .expect("bind");
    let target = bystander.local_addr().expect("addr");
    let refused = datakit(
        agent,
        "POST",
        &format!("http://{target}/v1/write/metric?token={TOKEN_1}"),
        gzip(b"cpu v=1i 1\n"),
    )
    .await;
    assert_eq!(refused.status, 403, "{}", refused.body);
    assert!(refused.body.contains("oneway.agent_host_refused"));
    let tunnel = datakit(agent, "CONNECT", "example.com:443", Vec::new()).await;
    assert_eq!(tunnel.status, 405, "{}", tunnel.body);
    let nothing = tokio::time::timeout(Duration::from_millis(200), bystander.accept()).await;
    assert!(nothing.is_err(), "the agent connected to a bystander");
    assert!(up.delivered().is_empty());
}

#[tokio::test]
async fn an_unreachable_gateway_is_a_503_so_datakit_keeps_the_batch() {
    let pki = TestPki::new();
    let (agent, _stop) = start(config(&pki, vec![FakeUpstream::down().await])).await;
    let answer = datakit(
        agent,
        "POST",
        &format!("/v1/write/metric?token={TOKEN_1}"),
        gzip(b"cpu v=1i 1\n"),
    )
    .await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert!(answer.headers.contains_key("retry-after"));
    assert!(answer.body.contains("oneway.agent_gateway_unreachable"));
}

#[tokio::test]
async fn the_agent_refuses_to_listen_beyond_loopback_unless_told() {
    let pki = TestPki::new();
    let mut c = config(&pki, vec![FakeUpstream::down().await]);
    c.listen = "0.0.0.0:0".parse().expect("addr");
    assert!(matches!(
        Agent::bind(c.clone()),
        Err(AgentError::NotLoopback(_))
    ));
    c.allow_non_loopback = true;
    assert!(Agent::bind(c).is_ok());
}
