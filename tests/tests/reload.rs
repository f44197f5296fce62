//! Hot reload and the audit trail (reference/hardening.md §4, matrix rows 13–15): certificates,
//! CRLs and tokens change under a running gateway, by SIGHUP-style reload and by a watched
//! symlink swap; new handshakes see the new material, open connections stay unless their
//! certificate was revoked (then they close at the reload); a broken setting keeps the last
//! good settings but still applies a removed token; what cannot be read fails closed; a
//! restart-only change is refused while the rest applies; every security event is a JSON line
//! without secrets.

use std::time::{Duration, Instant};

use oneway_tests::{FakeUpstream, TOKEN_1, TOKEN_2, TestGateway};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const LP: &str = "cpu,host=web-1 usage=1i 1700000000000000000\n";

fn headers() -> [(&'static str, &'static str); 1] {
    [("content-type", "application/line-protocol")]
}

fn uri(token: &str) -> String {
    format!("/v1/write/metric?token={token}")
}

/// The server certificate a new handshake presents.
async fn served_certificate(gw: &TestGateway) -> Vec<u8> {
    let tls = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("handshake");
    tls.get_ref()
        .1
        .peer_certificates()
        .expect("server certificate")[0]
        .to_vec()
}

fn pem_der(path: &std::path::Path) -> Vec<u8> {
    CertificateDer::from_pem_file(path)
        .expect("certificate")
        .to_vec()
}

/// The last `reload` event in `gw`'s audit trail.
fn last_reload(gw: &TestGateway) -> Option<serde_json::Value> {
    gw.audit_lines()
        .into_iter()
        .rfind(|l| l["event"] == "reload")
}

/// Polls `check` every 50 ms for up to 10 s.
async fn eventually<F, Fut>(what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(10);
    while !check().await {
        assert!(Instant::now() < deadline, "{what}: not within 10 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn a_rotated_server_certificate_is_served_to_new_handshakes_and_open_connections_stay() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let dir = gw.pki.dir().to_path_buf();
    let old = pem_der(&dir.join("server.pem"));
    assert_eq!(served_certificate(&gw).await, old);
    let open = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("open before");

    let (cert, key) =
        oneway_gateway::tools::certs::reissue_server(&dir, &["localhost", "127.0.0.1"])
            .expect("issue");
    std::fs::write(dir.join("server.key.new"), key).expect("write");
    std::fs::write(dir.join("server.pem.new"), cert).expect("write");
    std::fs::rename(dir.join("server.key.new"), dir.join("server.key")).expect("swap");
    std::fs::rename(dir.join("server.pem.new"), dir.join("server.pem")).expect("swap");
    gw.reload().await.expect("reload");
    let new = pem_der(&dir.join("server.pem"));
    assert_ne!(new, old);
    assert_eq!(
        served_certificate(&gw).await,
        new,
        "a new handshake sees the new certificate"
    );
    // The connection opened before the reload still works.
    let r = TestGateway::request_on(open, &uri(TOKEN_1), &headers(), LP.as_bytes().to_vec())
        .await
        .expect("request on the old connection");
    assert_eq!(r.status, 200);
    let reloads: Vec<_> = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "reload")
        .collect();
    let last = reloads.last().expect("audited");
    assert_eq!(last["outcome"], "ok");
    // The event says what changed: the server certificate's fingerprint, from and to.
    let sha = |der: &[u8]| -> String {
        oneway_gateway::config::sha256(der)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    };
    assert_eq!(
        last["changed"]["server_certificate_sha256"],
        serde_json::json!({"from": sha(&old), "to": sha(&new)}),
        "{last}"
    );
    assert!(last["changed"].get("crls").is_none(), "{last}");
    assert!(last["changed"].get("tokens_removed").is_none(), "{last}");
    assert!(gw.stop().await);
}

#[tokio::test]
async fn a_symlink_swap_of_the_certificate_directory_is_picked_up_by_the_watcher() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let pki = oneway_tests::TestPki::new();
    let dir = pki.dir().to_path_buf();
    // Kubernetes' layout: tls/ → ..data → a timestamped directory, swapped atomically.
    std::fs::create_dir(dir.join("v1")).expect("mkdir");
    for f in ["server.pem", "server.key"] {
        std::fs::copy(dir.join(f), dir.join("v1").join(f)).expect("copy");
    }
    std::os::unix::fs::symlink("v1", dir.join("live")).expect("symlink");
    let gw = TestGateway::builder()
        .pki(pki)
        .upstream(&up)
        .listener("server_cert", "\"live/server.pem\"")
        .listener("server_key", "\"live/server.key\"")
        .start()
        .await;
    let old = pem_der(&dir.join("v1/server.pem"));
    assert_eq!(served_certificate(&gw).await, old);

    let (cert, key) =
        oneway_gateway::tools::certs::reissue_server(&dir, &["localhost", "127.0.0.1"])
            .expect("issue");
    std::fs::create_dir(dir.join("v2")).expect("mkdir");
    std::fs::write(dir.join("v2/server.pem"), &cert).expect("write");
    std::fs::write(dir.join("v2/server.key"), key).expect("write");
    std::os::unix::fs::symlink("v2", dir.join("live.tmp")).expect("symlink");
    std::fs::rename(dir.join("live.tmp"), dir.join("live")).expect("atomic swap");
    let new = pem_der(&dir.join("v2/server.pem"));
    eventually("the watcher reloads", || async {
        served_certificate(&gw).await == new
    })
    .await;
    assert!(gw.stop().await);
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// One keep-alive push written by hand on `tls`, which stays open; the status.
async fn keep_alive_push(tls: &mut Tls, token: &str) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: localhost\r\ncontent-type: application/line-protocol\r\ncontent-length: {}\r\n\r\n",
        uri(token),
        LP.len()
    );
    tls.write_all(head.as_bytes()).await.expect("write");
    tls.write_all(LP.as_bytes()).await.expect("write");
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
                return head[9..12].parse().expect("status");
            }
        }
        let n = tls.read(&mut buf).await.expect("read");
        assert!(n > 0, "closed before the answer");
        got.extend_from_slice(&buf[..n]);
    }
}

/// Whether the gateway closes `tls` within `within`.
async fn closed_within(tls: &mut Tls, within: Duration) -> bool {
    let mut buf = [0u8; 64];
    matches!(
        tokio::time::timeout(within, tokio::io::AsyncReadExt::read(tls, &mut buf)).await,
        Ok(Ok(0) | Err(_))
    )
}

#[tokio::test]
async fn a_revoked_certificate_loses_its_parked_connection_at_the_reload() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let parked = gw.metric("oneway_listener_parked_connections", &[]).await;
    let mut open = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("before");
    assert_eq!(keep_alive_push(&mut open, TOKEN_1).await, 200);
    eventually("the idle connection is parked", || async {
        gw.metric("oneway_listener_parked_connections", &[]).await == parked + 1.0
    })
    .await;
    oneway_gateway::tools::certs::revoke(gw.pki.dir(), &["revoked", "agent-1"], 2)
        .expect("new CRL");
    gw.reload().await.expect("reload");
    assert!(
        closed_within(&mut open, Duration::from_secs(5)).await,
        "the revoked certificate's parked connection is closed at the reload"
    );
    eventually("the parked connection is gone", || async {
        gw.metric("oneway_listener_parked_connections", &[]).await == parked
    })
    .await;
    assert!(gw.stop().await);
}

#[tokio::test]
async fn a_revoked_certificate_loses_its_open_connection_at_the_reload_and_cannot_reconnect() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    // The default maximum age (an hour): only the reload can close the connection in time.
    let gw = TestGateway::builder().upstream(&up).start().await;
    let dir = gw.pki.dir().to_path_buf();
    let mut open = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("before");
    assert_eq!(keep_alive_push(&mut open, TOKEN_1).await, 200);
    let mut bystander = gw
        .connect_tls(Some("agent-2"), b"", None)
        .await
        .expect("before");
    assert_eq!(keep_alive_push(&mut bystander, TOKEN_2).await, 200);
    // A second handshake of agent-1 is answered from the chains that passed before: the
    // reload below must not let that memory outlive the revocation.
    let remembered = ["outcome=\"remembered\""];
    let checks = "oneway_tls_client_chain_checks_total";
    let remembered_before = gw.metric(checks, &remembered).await;
    let again = gw
        .post("agent-1", &uri(TOKEN_1), &headers(), LP.as_bytes().to_vec())
        .await
        .expect("agent-1 before its revocation");
    assert_eq!(again.status, 200);
    assert_eq!(
        gw.metric(checks, &remembered).await - remembered_before,
        1.0
    );
    let closed_before = gw
        .metric(
            "oneway_listener_connections_closed_total",
            &["reason=\"revoked\""],
        )
        .await;
    // Revoke agent-1 (and keep `revoked` revoked) with a new CRL.
    oneway_gateway::tools::certs::revoke(&dir, &["revoked", "agent-1"], 2).expect("new CRL");
    gw.reload().await.expect("reload");
    // The reload's audit event names the new CRL: its number and how many it revokes.
    let last = last_reload(&gw).expect("audited");
    assert_eq!(
        last["changed"]["crls"]["to"],
        serde_json::json!([{"number": "2", "revoked": 2}]),
        "{last}"
    );
    assert_ne!(
        last["changed"]["crls"]["from"],
        last["changed"]["crls"]["to"]
    );
    assert!(
        closed_within(&mut open, Duration::from_secs(5)).await,
        "the revoked certificate's open keep-alive connection is closed at the reload"
    );
    assert_eq!(
        gw.metric(
            "oneway_listener_connections_closed_total",
            &["reason=\"revoked\""],
        )
        .await
            - closed_before,
        1.0
    );
    // Another agent's open connection is not touched.
    assert_eq!(keep_alive_push(&mut bystander, TOKEN_2).await, 200);
    let refused = gw
        .post("agent-1", &uri(TOKEN_1), &headers(), LP.as_bytes().to_vec())
        .await;
    assert!(
        refused.is_err(),
        "a new handshake with the revoked certificate fails"
    );
    let other = gw
        .post("agent-2", &uri(TOKEN_2), &headers(), LP.as_bytes().to_vec())
        .await
        .expect("agent-2 is not revoked");
    assert_eq!(other.status, 200);
    assert_eq!(
        up.received().len(),
        5,
        "agent-1 pushed twice, agent-2 three times"
    );
    drop(bystander);
    assert!(gw.stop().await);
}

#[tokio::test]
async fn broken_files_keep_the_last_good_config() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let dir = gw.pki.dir().to_path_buf();
    let good_cert = pem_der(&dir.join("server.pem"));
    let config = std::fs::read_to_string(dir.join("oneway.toml")).expect("config");
    let failures = gw.metric("oneway_reload_total", &["outcome=\"tls\""]).await;

    // A half-written certificate.
    let pem = std::fs::read_to_string(dir.join("server.pem")).expect("read");
    std::fs::write(dir.join("server.pem"), &pem[..pem.len() / 2]).expect("truncate");
    assert!(gw.reload().await.is_err());
    // A key that does not match the certificate.
    std::fs::write(dir.join("server.pem"), &pem).expect("restore");
    let good_key = std::fs::read(dir.join("server.key")).expect("key");
    std::fs::copy(dir.join("agent-2.key"), dir.join("server.key")).expect("wrong key");
    assert!(gw.reload().await.is_err());
    std::fs::write(dir.join("server.key"), good_key).expect("restore");
    // (The file watcher may also have tried while a broken file sat there: at least 2.)
    assert!(gw.metric("oneway_reload_total", &["outcome=\"tls\""]).await - failures >= 2.0);
    // Still serving with the last good material.
    assert_eq!(served_certificate(&gw).await, good_cert);
    let r = gw
        .post("agent-1", &uri(TOKEN_1), &headers(), LP.as_bytes().to_vec())
        .await
        .expect("push");
    assert_eq!(r.status, 200);
    let failed: Vec<_> = gw
        .audit_lines()
        .into_iter()
        .filter(|l| l["event"] == "reload" && l["outcome"] == "failed")
        .collect();
    assert!(failed.len() >= 2, "{failed:?}");
    assert_eq!(failed[0]["kind"], "tls");
    // The certificate could not be read: the rest (tokens, CA bundle and CRLs) was applied.
    let applied = failed[0]["applied"].as_array().expect("applied");
    assert!(applied.contains(&"tokens".into()), "{applied:?}");
    assert!(
        applied.contains(&"client_ca_and_crls".into()),
        "{applied:?}"
    );
    let _ = config;
    assert!(gw.stop().await);
}

/// Waits until `/ready` answers `status`.
async fn ready_is(gw: &TestGateway, status: u16) {
    eventually("readiness", || async {
        gw.admin("/ready").await.is_ok_and(|(s, _)| s == status)
    })
    .await;
}

/// A file that is not TOML (or a CRL that does not parse) says nothing about who may push:
/// every request gets a retryable 503 and the gateway is not ready until a reload reads
/// them again; DataKit keeps the data meanwhile.
#[tokio::test]
async fn what_cannot_be_read_fails_closed_until_a_good_reload() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .reload_watch_interval_ms(0)
        .start()
        .await;
    let dir = gw.pki.dir().to_path_buf();
    let config = std::fs::read_to_string(dir.join("oneway.toml")).expect("config");
    let crl = std::fs::read(dir.join("ca.crl")).expect("crl");
    let mut open = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("open");
    assert_eq!(keep_alive_push(&mut open, TOKEN_1).await, 200);
    for (what, broken) in [
        ("oneway.toml", format!("{config}\n[[[broken").into_bytes()),
        (
            "ca.crl",
            b"-----BEGIN X509 CRL-----\nnope\n-----END X509 CRL-----\n".to_vec(),
        ),
    ] {
        let good = if what == "ca.crl" {
            crl.clone()
        } else {
            config.clone().into_bytes()
        };
        std::fs::write(dir.join(what), &broken).expect("write");
        assert!(gw.reload().await.is_err(), "{what}");
        for client in ["agent-1", "agent-2"] {
            let token = if client == "agent-1" {
                TOKEN_1
            } else {
                TOKEN_2
            };
            let r = gw
                .post(client, &uri(token), &headers(), LP.as_bytes().to_vec())
                .await
                .expect("push");
            assert_eq!(r.status, 503, "{what}: {}", r.body);
            assert!(r.body.contains("oneway.fail_closed"), "{}", r.body);
            assert_eq!(r.headers["retry-after"], "5");
        }
        // The connection opened before is refused too (and closed: its body was not read).
        assert_eq!(keep_alive_push(&mut open, TOKEN_1).await, 503, "{what}");
        open = gw
            .connect_tls(Some("agent-1"), b"", None)
            .await
            .expect("reconnect");
        ready_is(&gw, 503).await;
        assert_eq!(gw.metric("oneway_reload_fail_closed", &[]).await, 1.0);
        let last = last_reload(&gw).expect("audited");
        assert_eq!(last["outcome"], "failed_closed", "{last}");

        std::fs::write(dir.join(what), good).expect("restore");
        gw.reload().await.expect("a good reload");
        assert_eq!(keep_alive_push(&mut open, TOKEN_1).await, 200, "{what}");
        ready_is(&gw, 200).await;
        assert_eq!(gw.metric("oneway_reload_fail_closed", &[]).await, 0.0);
    }
    assert_eq!(up.received().len(), 3, "nothing was forwarded while closed");
    assert!(
        gw.metric("oneway_reload_total", &["outcome=\"fail_closed\""])
            .await
            >= 2.0
    );
    assert!(gw.stop().await);
}

/// A file whose settings are invalid (here an unknown sandbox mode) keeps the running
/// settings, but the tokens it no longer lists, and the identities it no longer binds, are
/// removed all the same; a token it adds is not.
#[tokio::test]
async fn a_broken_setting_still_removes_a_token_and_an_identity_and_adds_nothing() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .reload_watch_interval_ms(0)
        .start()
        .await;
    let dir = gw.pki.dir().to_path_buf();
    let config = std::fs::read_to_string(dir.join("oneway.toml")).expect("config");
    let at = config.rfind("[[tokens]]").expect("second token");
    let end = config[at..].find("\n\n").map_or(config.len(), |e| at + e);
    let added = "tkn_addedbyabrokenfile00000000000000";
    let broken = format!(
        "sandbox = \"sometimes\"\n{}{}\n[[tokens]]\nname = \"added\"\ntoken = \"{added}\"\nidentities = [\"dns:agent-2\"]\n",
        &config[..at],
        &config[end..]
    )
    // agent-1 is no longer bound to TOKEN_1 (revoked and expired stay).
    .replacen("\"dns:agent-1\", ", "", 1);
    assert_ne!(broken, config);
    std::fs::write(dir.join("oneway.toml"), broken).expect("write");
    let err = gw.reload().await.expect_err("invalid setting");
    assert_eq!(err.kind(), "config");
    let push = |client: &'static str, token: &'static str| {
        let gw = &gw;
        async move {
            gw.post(client, &uri(token), &headers(), LP.as_bytes().to_vec())
                .await
                .expect("push")
                .status
        }
    };
    assert_eq!(push("agent-2", TOKEN_2).await, 401, "a removed token");
    assert_eq!(push("agent-1", TOKEN_1).await, 403, "an unbound identity");
    assert_eq!(
        push("agent-2", added).await,
        401,
        "a broken file adds no token"
    );
    let last = last_reload(&gw).expect("audited");
    assert_eq!(last["outcome"], "failed", "{last}");
    assert_eq!(last["kind"], "config");
    assert!(
        last["applied"]
            .as_array()
            .is_some_and(|a| a.contains(&"token_removals".into())),
        "{last}"
    );
    assert!(
        last["reason"]
            .as_str()
            .is_some_and(|r| r.contains("sandbox")),
        "{last}"
    );
    // The good file again: everything is back.
    std::fs::write(dir.join("oneway.toml"), &config).expect("restore");
    gw.reload().await.expect("reload");
    assert_eq!(push("agent-2", TOKEN_2).await, 200);
    assert_eq!(push("agent-1", TOKEN_1).await, 200);
    assert!(gw.stop().await);
}

/// An upstream change needs a restart: it is refused (logged, counted and audited with its
/// key) while the token removal in the same file applies, and pushes still go where they went.
#[tokio::test]
async fn a_restart_only_change_is_refused_while_the_token_change_in_it_applies() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let other = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .reload_watch_interval_ms(0)
        .start()
        .await;
    let dir = gw.pki.dir().to_path_buf();
    let config = std::fs::read_to_string(dir.join("oneway.toml")).expect("config");
    let at = config.rfind("[[tokens]]").expect("second token");
    let end = config[at..].find("\n\n").map_or(config.len(), |e| at + e);
    let changed = format!("{}{}", &config[..at], &config[end..]).replacen(
        &up.addr.to_string(),
        &other.addr.to_string(),
        1,
    );
    std::fs::write(dir.join("oneway.toml"), changed).expect("write");
    gw.reload().await.expect("the rest applies");
    let r = gw
        .post("agent-2", &uri(TOKEN_2), &headers(), LP.as_bytes().to_vec())
        .await
        .expect("push");
    assert_eq!(r.status, 401, "the token removal applied");
    let r = gw
        .post("agent-1", &uri(TOKEN_1), &headers(), LP.as_bytes().to_vec())
        .await
        .expect("push");
    assert_eq!(r.status, 200);
    assert_eq!(up.received().len(), 1, "still the running upstream");
    assert!(other.received().is_empty());
    let last = last_reload(&gw).expect("audited");
    assert_eq!(last["outcome"], "restart_needed", "{last}");
    assert_eq!(
        last["restart_needed"],
        serde_json::json!(["upstream.addresses"])
    );
    assert_eq!(
        gw.metric(
            "oneway_reload_restart_needed_total",
            &["key=\"upstream.addresses\""]
        )
        .await,
        1.0
    );
    assert!(gw.stop().await);
}

#[tokio::test]
async fn a_token_removed_by_reload_is_refused_before_the_body_and_the_audit_has_no_secrets() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder().upstream(&up).start().await;
    let dir = gw.pki.dir().to_path_buf();
    assert_eq!(
        gw.post("agent-2", &uri(TOKEN_2), &headers(), LP.as_bytes().to_vec())
            .await
            .expect("push")
            .status,
        200
    );
    // Remove agent-2's token (the second [[tokens]] entry) and reload.
    let config = std::fs::read_to_string(dir.join("oneway.toml")).expect("config");
    let at = config.rfind("[[tokens]]").expect("second token");
    let end = config[at..].find("\n\n").map_or(config.len(), |e| at + e);
    std::fs::write(
        dir.join("oneway.toml"),
        format!("{}{}", &config[..at], &config[end..]),
    )
    .expect("write");
    gw.reload().await.expect("reload");
    let last = last_reload(&gw).expect("audited");
    assert_eq!(
        last["changed"],
        serde_json::json!({"tokens_removed": ["bravo"]}),
        "only the token's removal changed: {last}"
    );
    let r = gw
        .post("agent-2", &uri(TOKEN_2), &headers(), LP.as_bytes().to_vec())
        .await
        .expect("push");
    assert_eq!(r.status, 401, "revoked token: {}", r.body);
    // An unknown token: 401 too.
    let r = gw
        .post(
            "agent-1",
            &uri("tkn_unknownbutwellformed000000000000"),
            &headers(),
            Vec::new(),
        )
        .await
        .expect("push");
    assert_eq!(r.status, 401);
    assert_eq!(up.received().len(), 1, "nothing refused was forwarded");

    // The aggregated auth failures are written within the audit interval (1 s here).
    eventually("auth failures are audited", || async {
        gw.audit_lines()
            .iter()
            .any(|l| l["event"] == "auth_failure" && l["kind"] == "unknown_token")
    })
    .await;
    let text = std::fs::read_to_string(gw.pki.path("audit.jsonl")).expect("audit");
    for secret in [
        TOKEN_1,
        TOKEN_2,
        oneway_tests::WORKSPACE_TOKEN,
        "tkn_unknownbutwellformed000000000000",
    ] {
        assert!(!text.contains(secret), "no token in the audit trail");
    }
    assert!(!text.contains("cpu,host"), "no payload in the audit trail");
    let start = gw
        .audit_lines()
        .into_iter()
        .find(|l| l["event"] == "start")
        .expect("start event");
    assert_eq!(start["config_sha256"].as_str().map(str::len), Some(64));
    assert!(gw.stop().await);
}

#[tokio::test]
async fn audit_events_are_pushed_to_the_audit_workspace_as_logging_points() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .audit("workspace_token = \"tkn_auditworkspace000000000000000000\"")
        .start()
        .await;
    let pushed = gw
        .metric("oneway_audit_lines_total", &["outcome=\"pushed\""])
        .await;
    let r = gw
        .post(
            "agent-1",
            &uri("tkn_notconfigured0000000000000000000"),
            &headers(),
            Vec::new(),
        )
        .await
        .expect("request");
    assert_eq!(r.status, 401);
    let is_audit = |r: &oneway_tests::Received| {
        r.uri
            .starts_with("/v1/write/logging?token=tkn_auditworkspace000000000000000000")
    };
    eventually("audit lines reach the audit workspace", || async {
        let got = up.received();
        let bodies: String = got
            .iter()
            .filter(|r| is_audit(r))
            .map(|r| String::from_utf8_lossy(&r.body).into_owned())
            .collect();
        bodies.contains("oneway_audit,event=start") && bodies.contains("event=auth_failure")
    })
    .await;
    for r in up.received().iter().filter(|r| is_audit(r)) {
        assert_eq!(r.headers["content-type"], "application/line-protocol");
        let text = String::from_utf8_lossy(&r.body);
        assert!(
            !text.contains("tkn_notconfigured0000000000000000000"),
            "no token in audit points"
        );
        let lines = text.lines().count().to_string();
        assert_eq!(r.headers["x-points"], lines.as_str());
    }
    eventually("the pushed lines are counted", || async {
        gw.metric("oneway_audit_lines_total", &["outcome=\"pushed\""])
            .await
            > pushed
    })
    .await;
    assert!(gw.stop().await);
}
