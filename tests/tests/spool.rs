//! The durable spool through the real request path (reference/hardening.md §7, matrix rows
//! 17, 18 and 21): an upstream that is down or failing turns into 202s while the spool has
//! room, then 503 + `Retry-After`; when the upstream returns everything acknowledged arrives
//! in order, byte for byte; a 4xx from the upstream dead-letters one batch once; a full disk
//! is back-pressure, not corruption. Tests run one at a time: the metrics registry is shared.

use std::time::Duration;

use oneway_tests::{FakeUpstream, Mode, TOKEN_1, TestGateway, WORKSPACE_TOKEN};

static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

const DRAIN: Duration = Duration::from_secs(30);

fn spool_toml(dir: &std::path::Path, extra: &str) -> String {
    format!(
        "[spool]\ndirectory = \"{}\"\nretry_max_backoff_ms = 200\n{extra}\n",
        dir.display()
    )
}

/// A uniquely tagged line-protocol batch of about `size` bytes (lines of at most ~1 KiB).
fn batch(tag: usize, size: usize) -> Vec<u8> {
    let mut out = String::new();
    let mut line = 0;
    while out.len() < size || line == 0 {
        let pad = "x".repeat((size - out.len().min(size)).clamp(1, 900));
        out.push_str(&format!(
            "spool,tag=t{tag:06},pad={pad} v={line}i 1700000000000000000\n"
        ));
        line += 1;
    }
    out.into_bytes()
}

fn tag_of(body: &[u8]) -> usize {
    let text = std::str::from_utf8(body).expect("utf-8");
    let at = text.find("tag=t").expect("tagged") + 5;
    text[at..at + 6].parse().expect("tag")
}

/// Pushes tagged batches of `size` bytes until one is refused with 503; returns the
/// acknowledged (202) bodies, in order, and the refusal.
async fn fill(gw: &TestGateway, size: usize) -> (Vec<Vec<u8>>, oneway_tests::Answer) {
    let mut acked = Vec::new();
    for tag in 0..200 {
        let body = batch(tag, size);
        let r = push(gw, body.clone()).await;
        match r.status.as_u16() {
            202 => acked.push(body),
            503 => return (acked, r),
            s => panic!("unexpected {s}: {}", r.body),
        }
    }
    panic!("200 batches were accepted without reaching the limit");
}

async fn push(gw: &TestGateway, body: Vec<u8>) -> oneway_tests::Answer {
    gw.post(
        "agent-1",
        &format!("/v1/write/metric?token={TOKEN_1}&precision=ns"),
        &[
            ("content-type", "application/line-protocol"),
            ("user-agent", "datakit-linux-amd64/1.84.1"),
        ],
        body,
    )
    .await
    .expect("the request completes")
}

#[tokio::test]
async fn failing_upstream_spools_then_drains_in_order_byte_for_byte() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = FakeUpstream::start().await;
    up.set_mode(Mode::Status(503));
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(&spool_toml(dir.path(), ""))
        .start()
        .await;
    let appends = gw.metric("oneway_spool_appends_total", &[]).await;
    let mut sent = Vec::new();
    for tag in 0..20 {
        let body = batch(tag, 300);
        let r = push(&gw, body.clone()).await;
        assert_eq!(r.status, 202, "{}", r.body);
        sent.push(body);
    }
    assert_eq!(
        gw.metric("oneway_spool_appends_total", &[]).await - appends,
        20.0
    );
    // While spooling the gateway stays ready.
    assert_eq!(gw.admin("/ready").await.expect("ready").0, 200);
    assert!(up.delivered().is_empty());

    up.set_mode(Mode::Status(200));
    let got = up.wait_delivered(20, DRAIN).await;
    assert_eq!(got.len(), 20, "every spooled batch is delivered once");
    for (r, body) in got.iter().zip(&sent) {
        assert_eq!(&r.body[..], &body[..], "original bytes, in order");
        assert_eq!(r.method, http::Method::POST);
        assert!(r.uri.starts_with("/v1/write/metric?"), "{}", r.uri);
        assert!(
            r.uri.contains(&format!("token={WORKSPACE_TOKEN}")),
            "{}",
            r.uri
        );
        assert!(r.uri.contains("precision=n&"), "{}", r.uri);
        let lines = body.iter().filter(|&&b| b == b'\n').count();
        assert_eq!(r.headers["x-points"], lines.to_string().as_str());
        assert_eq!(r.headers["content-type"], "application/line-protocol");
        assert_eq!(r.headers["x-oneway-agent"], "dns:agent-1");
    }
    // Drained: a live push goes straight through again.
    let r = push(&gw, batch(99, 100)).await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(gw.stop().await);
}

#[tokio::test]
async fn an_upstream_slower_than_its_timeout_spools_the_batch() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = FakeUpstream::start().await;
    // The harness's upstream.response_timeout_ms is 2000.
    up.set_mode(Mode::Slow(Duration::from_millis(3500)));
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(&spool_toml(dir.path(), ""))
        .start()
        .await;
    let replayed = gw.metric("oneway_spool_replayed_total", &[]).await;
    let r = push(&gw, batch(7, 100)).await;
    assert_eq!(r.status, 202, "spooled after the timeout: {}", r.body);
    up.set_mode(Mode::Status(200));
    // The replayer delivers it.
    let deadline = tokio::time::Instant::now() + DRAIN;
    while gw.metric("oneway_spool_replayed_total", &[]).await - replayed < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "not replayed");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(up.delivered().iter().any(|r| tag_of(&r.body) == 7));
    assert!(gw.stop().await);
}

#[tokio::test]
async fn unreachable_upstream_spools_to_the_watermark_then_503_then_full_drain() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    // The upstream is down for the whole filling phase: nothing listens on its port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let gw = TestGateway::builder()
        .upstream_addr(addr)
        .toml("[limits]\nmax_body_bytes = 65536\n")
        .toml(&spool_toml(
            dir.path(),
            "max_bytes = 262144\nsegment_bytes = 65536",
        ))
        .start()
        .await;
    let refused = gw
        .metric("oneway_spool_refused_total", &["reason=\"full\""])
        .await;
    let (acked, full) = fill(&gw, 8 << 10).await;
    assert!(full.body.contains("oneway.spool.full"), "{}", full.body);
    assert_eq!(full.headers["retry-after"], "5");
    assert!(
        (25..=32).contains(&acked.len()),
        "256 KiB of ~8 KiB records: {}",
        acked.len()
    );
    assert_eq!(
        gw.metric("oneway_spool_refused_total", &["reason=\"full\""])
            .await
            - refused,
        1.0
    );
    // At the watermark the gateway is not ready: the load balancer prefers other replicas.
    assert_eq!(gw.admin("/ready").await.expect("ready").0, 503);
    let segments = std::fs::read_dir(dir.path())
        .expect("list")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        })
        .count();
    assert!(
        segments >= 4,
        "segments are bounded in size: {segments} files"
    );

    // The upstream comes back on its address.
    let up = FakeUpstream::start_on(addr).await;
    let got = up.wait_delivered(acked.len(), DRAIN).await;
    assert_eq!(got.len(), acked.len(), "full drain");
    for (r, body) in got.iter().zip(&acked) {
        assert_eq!(tag_of(&r.body), tag_of(body), "in order");
        assert_eq!(&r.body[..], &body[..]);
    }
    // Fully delivered segments are unlinked, leaving at most the active one.
    let deadline = tokio::time::Instant::now() + DRAIN;
    loop {
        let n = std::fs::read_dir(dir.path())
            .expect("list")
            .filter(|e| {
                e.as_ref()
                    .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".seg"))
            })
            .count();
        if n <= 1 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "{n} segments left");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // Ready again once the writer has published the room it made (right after the unlink).
    while gw.admin("/ready").await.expect("ready").0 != 200 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready after the drain"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(gw.stop().await);
}

#[tokio::test]
async fn upstream_4xx_dead_letters_the_batch_once_and_the_rest_continue() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(&spool_toml(dir.path(), "mode = \"spool-first\""))
        .start()
        .await;
    let dead = gw.metric("oneway_spool_dead_letters_total", &[]).await;
    up.set_mode(Mode::Status(400));
    let r = push(&gw, batch(1, 100)).await;
    assert_eq!(r.status, 202, "spool-first acknowledges after the sync");
    // The replayer sends it once and dead-letters it.
    let deadline = tokio::time::Instant::now() + DRAIN;
    while gw.metric("oneway_spool_dead_letters_total", &[]).await - dead < 1.0 {
        assert!(tokio::time::Instant::now() < deadline, "not dead-lettered");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    up.set_mode(Mode::Status(200));
    for tag in 2..5 {
        assert_eq!(push(&gw, batch(tag, 100)).await.status, 202);
    }
    let got = up.wait_delivered(3, DRAIN).await;
    let tags: Vec<usize> = got.iter().map(|r| tag_of(&r.body)).collect();
    assert_eq!(tags, vec![2, 3, 4]);
    let refused: Vec<usize> = up
        .received()
        .iter()
        .filter(|r| r.status == 400)
        .map(|r| tag_of(&r.body))
        .collect();
    assert_eq!(refused, vec![1], "sent once, never retried");
    let dead_files: Vec<_> = std::fs::read_dir(dir.path().join("dead"))
        .expect("dead/")
        .collect();
    assert_eq!(dead_files.len(), 1);
    let bytes = std::fs::read(dead_files[0].as_ref().expect("entry").path()).expect("read");
    let (records, _) = oneway_gateway::spool::record::salvage(&bytes);
    assert_eq!(records.len(), 1);
    let record = oneway_gateway::spool::record::decode_frame(&records[0]).expect("valid");
    assert_eq!(tag_of(&record.body), 1);
    // The operator fixes the cause and replays the dead letter with `oneway spool replay`.
    let config = oneway_gateway::config::Config::load(&gw.pki.path("oneway.toml")).expect("config");
    let upstream = oneway_gateway::upstream::Upstream::new(&config.upstream).expect("upstream");
    let dead_file = dead_files[0].as_ref().expect("entry").path();
    let report = oneway_gateway::tools::spool::replay(&dead_file, &upstream)
        .await
        .expect("replay");
    assert_eq!(report.delivered, 1, "{report:?}");
    let last = up.delivered().pop().expect("delivered");
    assert_eq!(tag_of(&last.body), 1);
    assert!(gw.stop().await);
}

#[tokio::test]
async fn a_second_gateway_on_the_same_spool_refuses_to_start() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = FakeUpstream::start().await;
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml(&spool_toml(dir.path(), ""))
        .start()
        .await;
    let mut config =
        oneway_gateway::config::Config::load(&gw.pki.path("oneway.toml")).expect("the same config");
    config.listener.address = "127.0.0.1:0".parse().expect("addr");
    let err = oneway_gateway::app::Gateway::bind(config).expect_err("locked");
    let text = err.to_string();
    assert!(text.contains("in use by another process"), "{text}");
    assert!(text.contains(&dir.path().display().to_string()), "{text}");
    assert!(gw.stop().await);
}

#[tokio::test]
async fn spooled_batches_survive_a_restart_and_are_delivered_by_the_next_process() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let up = FakeUpstream::start().await;
    up.set_mode(Mode::Status(503));
    let pki = oneway_tests::TestPki::new();
    let gw = TestGateway::builder()
        .pki(pki)
        .upstream(&up)
        .toml(&spool_toml(dir.path(), ""))
        .start()
        .await;
    for tag in 0..5 {
        assert_eq!(push(&gw, batch(tag, 200)).await.status, 202);
    }
    let pki = gw.stop_keep_pki().await;
    up.set_mode(Mode::Status(200));
    let gw = TestGateway::builder()
        .pki(pki)
        .upstream(&up)
        .toml(&spool_toml(dir.path(), ""))
        .start()
        .await;
    let got = up.wait_delivered(5, DRAIN).await;
    let tags: Vec<usize> = got.iter().map(|r| tag_of(&r.body)).collect();
    assert_eq!(tags, vec![0, 1, 2, 3, 4]);
    assert!(gw.stop().await);
}

/// A tmpfs mounted for the test's lifetime (the test runs as root, as CI does).
struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &std::path::Path, size: &str) -> Tmpfs {
        let out = std::process::Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size},mode=0700"),
                "tmpfs",
            ])
            .arg(dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs needs root (CI runs as root): {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount")
            .arg("-l")
            .arg(&self.0)
            .status();
    }
}

#[tokio::test]
async fn a_full_disk_answers_503_without_corruption_then_recovers() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let mount = Tmpfs::mount(dir.path(), "384k");
    let spool = dir.path().join("spool");
    let up = FakeUpstream::start().await;
    up.set_mode(Mode::Status(503));
    // The watermark is far above the disk: the disk fills first.
    let gw = TestGateway::builder()
        .upstream(&up)
        .toml("[limits]\nmax_body_bytes = 65536\n")
        .toml(&spool_toml(
            &spool,
            "mode = \"spool-first\"\nmax_bytes = 104857600\nsegment_bytes = 65536",
        ))
        .start()
        .await;
    let refused = gw
        .metric("oneway_spool_refused_total", &["reason=\"disk_full\""])
        .await;
    let (acked, full) = fill(&gw, 12 << 10).await;
    assert!(
        full.body.contains("oneway.spool.disk_full"),
        "{}",
        full.body
    );
    assert_eq!(full.headers["retry-after"], "5");
    assert!(acked.len() >= 10, "{} batches fit", acked.len());
    assert_eq!(
        gw.metric("oneway_spool_refused_total", &["reason=\"disk_full\""])
            .await
            - refused,
        1.0
    );
    // Still serving, still refusing while full; nothing is lost or torn.
    assert_eq!(push(&gw, batch(999, 12 << 10)).await.status, 503);

    // The upstream returns: the spool drains, frees its segments, and accepts again.
    up.set_mode(Mode::Status(200));
    let got = up.wait_delivered(acked.len(), DRAIN).await;
    assert_eq!(got.len(), acked.len());
    for (r, body) in got.iter().zip(&acked) {
        assert_eq!(&r.body[..], &body[..], "in order, byte for byte");
    }
    let deadline = tokio::time::Instant::now() + DRAIN;
    let accepted = loop {
        let r = push(&gw, batch(500, 12 << 10)).await;
        if r.status == 202 || tokio::time::Instant::now() >= deadline {
            break r;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(accepted.status, 202, "{}", accepted.body);
    let _ = up.wait_delivered(acked.len() + 1, DRAIN).await;
    let pki = gw.stop_keep_pki().await;
    drop(pki);
    // The log on the full-then-freed disk opens clean: no torn tail, nothing quarantined.
    let storage = oneway_gateway::spool::storage::FsStorage::new(&spool).expect("open");
    let (_, report) =
        oneway_gateway::spool::log::Log::open(storage, 65536).expect("the log recovers");
    assert_eq!(report.truncated_bytes, 0, "{report:?}");
    assert!(report.quarantined.is_empty(), "{report:?}");
    assert_eq!(report.pending_records, 0, "{report:?}");
    drop(mount);
}
