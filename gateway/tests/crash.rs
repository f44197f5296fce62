//! `kill -9` (reference/hardening.md §7, matrix row 19): a client pushes uniquely tagged
//! batches through the real `oneway` binary and records which got a 2xx; a supervisor
//! SIGKILLs the gateway at random moments, again and again, while the upstream fails a share
//! of requests (forward-first rounds) or every batch goes through the spool (spool-first
//! rounds). After a last restart and drain, every acknowledged batch must have reached the
//! upstream at least once; the share delivered more than once is reported (and bounded by
//! `ONEWAY_CRASH_MAX_DUPLICATE_PERCENT`, which `scripts/crash-test` sets).
//!
//! `ONEWAY_CRASH_ROUNDS` sets the number of kills (default 20; `scripts/crash-test` runs more),
//! `ONEWAY_CRASH_SEED` replays a run.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers: a panic is the test failing"
)]

#[expect(dead_code, reason = "each test binary uses a different part of it")]
mod common;

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{launch, prepare, threaded_upstream};
use http_body_util::Full;

/// xorshift64*: enough randomness for kill moments, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn tag_of(body: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(body).ok()?;
    let at = text.find("tag=")? + 4;
    text[at..].split([',', ' ']).next()?.parse().ok()
}

/// Waits up to `limit` until every tag in `acked` reached the upstream; returns those that
/// did not.
async fn wait_delivered<'a>(
    up: &common::Upstream,
    acked: impl IntoIterator<Item = &'a u64> + Clone,
    limit: Duration,
) -> Vec<u64> {
    let deadline = Instant::now() + limit;
    loop {
        let delivered: BTreeSet<u64> = up
            .accepted
            .lock()
            .unwrap()
            .iter()
            .filter_map(|b| tag_of(b))
            .collect();
        let missing: Vec<u64> = acked
            .clone()
            .into_iter()
            .filter(|t| !delivered.contains(t))
            .copied()
            .collect();
        if missing.is_empty() || Instant::now() > deadline {
            return missing;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn connector(dir: &std::path::Path) -> tokio_rustls::TlsConnector {
    oneway_gateway::tools::client::connector(
        &dir.join("ca.pem"),
        Some((&dir.join("agent-1.pem"), &dir.join("agent-1.key"))),
    )
    .unwrap()
}

/// Pushes one batch tagged `tag`, padded with `pad` extra bytes; the status, or `None` if
/// the gateway did not answer.
async fn push_one(
    connector: &tokio_rustls::TlsConnector,
    addr: SocketAddr,
    tag: u64,
    pad: usize,
) -> Option<u16> {
    let padding = "x".repeat(pad.min(1000));
    let mut body = format!(
        "crash,tag={tag},host=web-1 v={tag}i 1700000000000000000\n\
         crash,tag={tag},host=web-1 w=1i 1700000000000000001\n"
    );
    for _ in 0..pad / 1000 {
        body.push_str(&format!(
            "crash,tag={tag},pad={padding} w=1i 1700000000000000002\n"
        ));
    }
    let request = http::Request::post(format!(
        "/v1/write/metric?token={}",
        oneway_gateway::tools::quickstart::AGENT_TOKEN
    ))
    .header("host", "localhost")
    .header("content-type", "application/line-protocol")
    .body(Full::new(Bytes::from(body)))
    .unwrap();
    let sent = tokio::time::timeout(
        Duration::from_secs(5),
        oneway_gateway::tools::client::send(connector, addr, "localhost", request),
    )
    .await;
    match sent {
        Ok(Ok(resp)) => Some(resp.status().as_u16()),
        _ => None,
    }
}

/// Pushes tagged batches until `stop`, from `clients` concurrent connections; returns the
/// tags that got a 2xx.
async fn push_until(
    dir: std::path::PathBuf,
    addr: SocketAddr,
    first_tag: u64,
    clients: u64,
    stop: Arc<AtomicBool>,
) -> Vec<u64> {
    let connector = connector(&dir);
    let acked = Arc::new(Mutex::new(Vec::new()));
    let mut tasks = Vec::new();
    for c in 0..clients {
        let (connector, stop, acked) = (connector.clone(), Arc::clone(&stop), Arc::clone(&acked));
        tasks.push(tokio::spawn(async move {
            let mut tag = first_tag + c;
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match push_one(&connector, addr, tag, 0).await {
                    Some(s) if (200..300).contains(&s) => acked.lock().unwrap().push(tag),
                    Some(_) => {}
                    // The gateway is gone (killed): wait for the supervisor.
                    None => tokio::time::sleep(Duration::from_millis(20)).await,
                }
                tag += clients;
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let mut tags = acked.lock().unwrap().clone();
    tags.sort_unstable();
    tags
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_acknowledged_batch_survives_repeated_kill_9() {
    let rounds: u64 = std::env::var("ONEWAY_CRASH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    let seed: u64 = std::env::var("ONEWAY_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
                | 1
        });
    eprintln!("crash test: {rounds} rounds, ONEWAY_CRASH_SEED={seed}");
    let mut rng = Rng(seed);
    let dir = tempfile::tempdir().unwrap();
    let up = threaded_upstream(Duration::ZERO);
    let spool = dir.path().join("spool");
    let config = |mode: &str| {
        format!(
            "[spool]\ndirectory = \"{}\"\nmode = \"{mode}\"\nsegment_bytes = 65536\n\
             retry_max_backoff_ms = 100\n",
            spool.display()
        )
    };
    let mut acked: BTreeSet<u64> = BTreeSet::new();
    let clients = 6;
    for round in 0..rounds {
        let mode = if round % 2 == 0 {
            "spool-first"
        } else {
            "forward-first"
        };
        up.fail_percent
            .store(if round % 2 == 0 { 0 } else { 40 }, Ordering::Relaxed);
        prepare(dir.path(), &up.addr, &config(mode));
        let (mut child, addr) = launch(dir.path());
        let stop = Arc::new(AtomicBool::new(false));
        let pushing = tokio::spawn(push_until(
            dir.path().to_path_buf(),
            addr,
            round * 1_000_000,
            clients,
            Arc::clone(&stop),
        ));
        let after = Duration::from_millis(50 + rng.below(450));
        tokio::time::sleep(after).await;
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        assert_eq!(
            std::os::unix::process::ExitStatusExt::signal(&status),
            Some(9),
            "round {round}: killed by SIGKILL"
        );
        stop.store(true, Ordering::Relaxed);
        let got = pushing.await.unwrap();
        eprintln!(
            "round {round} ({mode}): killed after {} ms, {} acknowledged",
            after.as_millis(),
            got.len()
        );
        acked.extend(got);
    }
    assert!(
        acked.len() as u64 >= rounds,
        "the client got acknowledgements ({})",
        acked.len()
    );

    // The last start: the upstream is healthy; the spool drains.
    up.fail_percent.store(0, Ordering::Relaxed);
    prepare(dir.path(), &up.addr, &config("forward-first"));
    let (mut child, _addr) = launch(dir.path());
    let missing = wait_delivered(&up, &acked, Duration::from_secs(60)).await;
    // Until the replay is done: no delivery for a second (at most ten).
    let quiet_since = Instant::now();
    let mut seen = up.accepted.lock().unwrap().len();
    let mut last_change = Instant::now();
    while last_change.elapsed() < Duration::from_secs(1)
        && quiet_since.elapsed() < Duration::from_secs(10)
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = up.accepted.lock().unwrap().len();
        if now != seen {
            (seen, last_change) = (now, Instant::now());
        }
    }
    let mut copies: std::collections::BTreeMap<u64, usize> = std::collections::BTreeMap::new();
    for tag in up.accepted.lock().unwrap().iter().filter_map(|b| tag_of(b)) {
        *copies.entry(tag).or_default() += 1;
    }
    let twice = acked
        .iter()
        .filter(|t| copies.get(t).is_some_and(|&n| n > 1))
        .count();
    let percent = 100.0 * twice as f64 / acked.len().max(1) as f64;
    eprintln!(
        "crash test: {rounds} kills, acknowledged {}, delivered {seen}, missing {}, \
         delivered more than once {twice} ({percent:.2} %)",
        acked.len(),
        missing.len()
    );
    let _ = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().unwrap();
    assert!(
        missing.is_empty(),
        "{} acknowledged but never delivered (seed {seed}), first: {:?}",
        missing.len(),
        &missing[..missing.len().min(20)]
    );
    assert_eq!(status.code(), Some(0), "clean exit after the drain");
    // The duplicate rate depends on when the kills land: scripts/crash-test holds it to its
    // bound (docs/spool.md); CI only reports it.
    if let Some(max) = std::env::var("ONEWAY_CRASH_MAX_DUPLICATE_PERCENT")
        .ok()
        .and_then(|v| v.parse::<f64>().ok())
    {
        assert!(
            percent <= max,
            "{percent:.2} % of acknowledged batches delivered more than once (bound {max} %, \
             seed {seed})"
        );
    }
}

/// Runs `chattr` (ext4 and friends; the test directory is under the target directory).
fn chattr(flag: &str, path: &std::path::Path) {
    let ok = std::process::Command::new("chattr")
        .arg(flag)
        .arg(path)
        .status()
        .is_ok_and(|s| s.success());
    assert!(
        ok,
        "chattr {flag} needs root and a filesystem that supports it"
    );
}

/// A write error that is not "disk full" (here: the spool directory made immutable, so the
/// next segment cannot be created) is fatal: the gateway stops accepting and exits 74, and
/// the next start delivers everything it had acknowledged.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_spool_write_error_stops_the_gateway_with_exit_74_and_the_next_start_recovers() {
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let up = threaded_upstream(Duration::ZERO);
    up.fail_percent.store(100, Ordering::Relaxed);
    let spool = dir.path().join("spool");
    let config = format!(
        "[spool]\ndirectory = \"{}\"\nsegment_bytes = 65536\nretry_max_backoff_ms = 100\n",
        spool.display()
    );
    prepare(dir.path(), &up.addr, &config);
    let (mut child, addr) = launch(dir.path());
    let connector = connector(dir.path());
    let mut acked = Vec::new();
    for tag in 0..3 {
        assert_eq!(push_one(&connector, addr, tag, 0).await, Some(202));
        acked.push(tag);
    }
    chattr("+i", &spool);
    // Fill the active segment: the next one cannot be created.
    let mut refused = None;
    for tag in 3..40 {
        match push_one(&connector, addr, tag, 8000).await {
            Some(202) => acked.push(tag),
            other => {
                refused = Some(other);
                break;
            }
        }
    }
    let status = tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                break Some(status);
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                break None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    })
    .await
    .unwrap();
    chattr("-i", &spool);
    assert!(
        matches!(refused, Some(Some(503) | None)),
        "the failing append was not acknowledged: {refused:?}"
    );
    eprintln!(
        "acknowledged {} batches before the failure: {refused:?}",
        acked.len()
    );
    let status = status.expect("the gateway exited by itself");
    assert_eq!(status.code(), Some(74), "{status:?}");

    up.fail_percent.store(0, Ordering::Relaxed);
    let (mut child, _) = launch(dir.path());
    let missing = wait_delivered(&up, &acked, Duration::from_secs(30)).await;
    let _ = child.kill();
    let _ = child.wait();
    assert!(missing.is_empty(), "lost after the failure: {missing:?}");
}
