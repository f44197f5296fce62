//! Hot reload and the audit trail (reference/hardening.md §4, matrix rows 13–15): certificates,
//! CRLs and tokens change under a running gateway, by SIGHUP-style reload and by a watched
//! symlink swap; new handshakes see the new material, open connections are not dropped, a
//! broken file changes nothing; every security event is a JSON line without secrets.

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
        oneway_gateway::certs::reissue_server(&dir, &["localhost", "127.0.0.1"]).expect("issue");
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
    assert_eq!(reloads.last().expect("audited")["outcome"], "ok");
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
        oneway_gateway::certs::reissue_server(&dir, &["localhost", "127.0.0.1"]).expect("issue");
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

#[tokio::test]
async fn a_freshly_revoked_certificate_cannot_open_a_connection_after_the_crl_reload() {
    let _serial = SERIAL.lock().await;
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .listener("max_connection_age_ms", "1500")
        .start()
        .await;
    let dir = gw.pki.dir().to_path_buf();
    let open = gw
        .connect_tls(Some("agent-1"), b"", None)
        .await
        .expect("before");
    // Revoke agent-1 (and keep `revoked` revoked) with a new CRL.
    oneway_gateway::certs::revoke(&dir, &["revoked", "agent-1"], 2).expect("new CRL");
    gw.reload().await.expect("reload");
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
    // The connection opened before ends by its maximum age.
    let started = Instant::now();
    let mut open = open;
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(
        Duration::from_secs(10),
        tokio::io::AsyncReadExt::read(&mut open, &mut buf),
    )
    .await
    .expect("closed within the maximum age");
    assert!(matches!(n, Ok(0) | Err(_)), "closed");
    assert!(started.elapsed() < Duration::from_millis(1500) + Duration::from_secs(2));
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
    // Bad TOML.
    std::fs::write(dir.join("oneway.toml"), format!("{config}\n[[[broken")).expect("write");
    let err = gw.reload().await.expect_err("invalid config");
    assert_eq!(err.kind(), "config");
    std::fs::write(dir.join("oneway.toml"), &config).expect("restore");

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
    assert!(failed.len() >= 3, "{failed:?}");
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
    assert!(gw.stop().await);
}
