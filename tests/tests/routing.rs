//! Routing headers are policy (issue 16): what the upstream receives as `X-Global-Tags`,
//! `X-Storage-Index-Name` and `X-Sub-Category` is decided by the token's config, not by the
//! agent, because DataWay's sinker routes writes to workspaces by them. Each policy is pushed
//! through the real gateway and read at the upstream.

use oneway_tests::{FakeUpstream, Received, TOKEN_1, TestGateway};

/// The metrics are the process's: one test at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LP: &str = "cpu,host=web-1 usage=1i 1700000000000000000\n";

/// What a hostile agent sends: it names the workspace it wants, another tenant's index and a
/// sub-category DataKit never sends, with hundreds of tags.
fn hostile_tags() -> String {
    let mut v = String::from("source=nginx,date=2026-12-02,project=other-tenant");
    for i in 0..400 {
        v.push_str(&format!(",k{i}=v{i}"));
    }
    v
}

/// Pushes one write with `headers` as agent-1 and returns what the upstream received.
async fn push(gw: &TestGateway, up: &FakeUpstream, headers: &[(&str, &str)]) -> Received {
    let before = up.received().len();
    let mut h = vec![("content-type", "application/line-protocol")];
    h.extend_from_slice(headers);
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/write/logging?token={TOKEN_1}"),
            &h,
            LP.into(),
        )
        .await
        .expect("the request completes");
    assert_eq!(r.status, 200, "{}", r.body);
    let got = up.received();
    assert_eq!(got.len(), before + 1, "one request forwarded");
    got.into_iter().last().expect("forwarded")
}

fn header<'a>(got: &'a Received, name: &str) -> Option<&'a str> {
    got.headers.get(name).map(|v| v.to_str().expect("ascii"))
}

async fn dropped(gw: &TestGateway, header: &str, reason: &str) -> f64 {
    gw.metric(
        "oneway_forwarded_headers_dropped_total",
        &[
            &format!("header=\"{header}\""),
            &format!("reason=\"{reason}\""),
        ],
    )
    .await
}

#[tokio::test]
async fn by_default_no_routing_header_reaches_the_upstream() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let tags = hostile_tags();
    let before = (
        dropped(&gw, "x-global-tags", "policy").await,
        dropped(&gw, "x-storage-index-name", "policy").await,
        dropped(&gw, "x-sub-category", "value_not_allowed").await,
    );
    let got = push(
        &gw,
        &up,
        &[
            ("x-global-tags", &tags),
            ("x-storage-index-name", "other-tenant-index"),
            ("x-sub-category", "billing"),
        ],
    )
    .await;
    for name in ["x-global-tags", "x-storage-index-name", "x-sub-category"] {
        assert_eq!(header(&got, name), None, "{name} must not be forwarded");
    }
    assert_eq!(
        (
            dropped(&gw, "x-global-tags", "policy").await - before.0,
            dropped(&gw, "x-storage-index-name", "policy").await - before.1,
            dropped(&gw, "x-sub-category", "value_not_allowed").await - before.2,
        ),
        (1.0, 1.0, 1.0)
    );
    // The one sub-category DataKit sends (dial-testing results) passes.
    let got = push(&gw, &up, &[("x-sub-category", "dialtesting")]).await;
    assert_eq!(header(&got, "x-sub-category"), Some("dialtesting"));
    assert!(gw.stop().await);
}

#[tokio::test]
async fn pass_forwards_the_agents_tags_as_sent_once() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("global_tags = \"pass\"")
        .start()
        .await;
    let got = push(&gw, &up, &[("x-global-tags", "cluster=prod,zone=a b,c")]).await;
    assert_eq!(
        header(&got, "x-global-tags"),
        Some("cluster=prod,zone=a b,c")
    );
    // Two headers cannot be told apart from one joined: neither goes.
    let repeated = dropped(&gw, "x-global-tags", "repeated").await;
    let got = push(
        &gw,
        &up,
        &[
            ("x-global-tags", "project=a"),
            ("x-global-tags", "project=b"),
        ],
    )
    .await;
    assert_eq!(header(&got, "x-global-tags"), None);
    assert_eq!(
        dropped(&gw, "x-global-tags", "repeated").await - repeated,
        1.0
    );
    assert!(gw.stop().await);
}

#[tokio::test]
async fn set_replaces_what_the_agent_sent_on_writes_and_apis() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("global_tags = { set = { project = \"bank\", env = \"prod\" } }")
        .start()
        .await;
    let tags = hostile_tags();
    for sent in [Some(tags.as_str()), None] {
        let mut h = Vec::new();
        if let Some(t) = sent {
            h.push(("x-global-tags", t));
        }
        let got = push(&gw, &up, &h).await;
        assert_eq!(
            header(&got, "x-global-tags"),
            Some("env=prod,project=bank"),
            "sent {:?}",
            sent.map(|s| &s[..20])
        );
    }
    // Non-write APIs carry it too (the sinker routes election by it).
    let r = gw
        .post(
            "agent-1",
            &format!("/v1/election?token={TOKEN_1}&namespace=default&id=dk-1"),
            &[("x-global-tags", "project=other-tenant")],
            b"{}".to_vec(),
        )
        .await
        .expect("election");
    assert_eq!(r.status, 200, "{}", r.body);
    let got = up.received().into_iter().last().expect("forwarded");
    assert!(got.uri.starts_with("/v1/election"), "{}", got.uri);
    assert_eq!(header(&got, "x-global-tags"), Some("env=prod,project=bank"));
    assert!(gw.stop().await);
}

#[tokio::test]
async fn allow_forwards_listed_keys_within_bounds_and_drops_what_is_ambiguous() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1(
            "global_tags = { allow = [\"host\", \"project\", \"zone\"], max_tags = 2, \
             max_value_bytes = 16 }",
        )
        .start()
        .await;
    let cases: &[(&str, Option<&str>, &str)] = &[
        (
            "project=p,source=nginx,host=h",
            Some("project=p,host=h"),
            "key_not_allowed",
        ),
        ("host=h", Some("host=h"), ""),
        ("source=nginx,date=today", None, "key_not_allowed"),
        // A value holding ',' or '=' cannot be told from another pair.
        ("host=a,b", None, "ambiguous"),
        ("host=a=b", None, "ambiguous"),
        ("host=a,host=b", None, "ambiguous"),
        ("host=aaaaaaaaaaaaaaaaa", None, "too_long"),
        ("host=a,project=b,zone=c", None, "too_many"),
    ];
    for (sent, forwarded, reason) in cases {
        let before = if reason.is_empty() {
            0.0
        } else {
            dropped(&gw, "x-global-tags", reason).await
        };
        let got = push(&gw, &up, &[("x-global-tags", sent)]).await;
        assert_eq!(header(&got, "x-global-tags"), *forwarded, "sent {sent}");
        if !reason.is_empty() {
            assert_eq!(
                dropped(&gw, "x-global-tags", reason).await - before,
                1.0,
                "sent {sent}: counted as {reason}"
            );
        }
    }
    assert!(gw.stop().await);
}

#[tokio::test]
async fn storage_index_passes_only_a_listed_name() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .token_1("storage_indexes = [\"bank-logs\", \"bank-audit\"]")
        .start()
        .await;
    let got = push(&gw, &up, &[("x-storage-index-name", "bank-audit")]).await;
    assert_eq!(header(&got, "x-storage-index-name"), Some("bank-audit"));
    let before = dropped(&gw, "x-storage-index-name", "value_not_allowed").await;
    for other in ["other-tenant-index", "BANK-AUDIT", "bank-audit2"] {
        let got = push(&gw, &up, &[("x-storage-index-name", other)]).await;
        assert_eq!(header(&got, "x-storage-index-name"), None, "{other:?}");
    }
    assert_eq!(
        dropped(&gw, "x-storage-index-name", "value_not_allowed").await - before,
        3.0
    );
    assert!(gw.stop().await);
}

#[tokio::test]
async fn a_routing_policy_that_cannot_be_read_refuses_the_config() {
    let _serial = SERIAL.lock().await;
    for bad in [
        "global_tags = \"passthrough\"",
        "global_tags = { set = { project = \"a,b\" } }",
        "global_tags = { set = { \"pro ject\" = \"a\" } }",
        "global_tags = { set = {} }",
        "global_tags = { allow = [\"host\"], set = { project = \"a\" } }",
        "global_tags = { allow = [\"host\"], max_tags = 0 }",
        "global_tags = { allow = [\"host\"], limit = 3 }",
        "storage_indexes = [\"a,b\"]",
    ] {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join("oneway.toml");
        std::fs::write(
            &path,
            format!(
                "[listener]\naddress = \"127.0.0.1:0\"\nserver_cert = \"s.pem\"\nserver_key = \
                 \"s.key\"\nclient_ca = \"ca.pem\"\n[upstream]\naddresses = \
                 [\"127.0.0.1:9528\"]\n[[tokens]]\nname = \"agent-1\"\ntoken = \"{TOKEN_1}\"\nidentities = \
                 [\"dns:agent-1\"]\n{bad}\n"
            ),
        )
        .expect("write");
        let err = oneway_gateway::config::Config::load(&path).expect_err(bad);
        assert!(
            err.to_string().contains("tokens[0]."),
            "{bad}: the problem names its key: {err}"
        );
    }
}
