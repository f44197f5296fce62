//! The durable spool: a 2xx for a spooled batch means it is `fdatasync`ed on disk, and it
//! reaches the upstream at least once, across upstream outages, restarts and `kill -9`
//! (reference/hardening.md §7; the format and the operator's side are in `docs/spool.md`).
//!
//! - **Writer**: one thread owns the [`log::Log`]. Appends from all requests queue on a
//!   channel; the thread takes everything queued (up to [`MAX_GROUP_BYTES`]), writes it with
//!   one `write`, makes it durable with one `fdatasync`, then answers every request in the
//!   group (group commit). While it syncs, the next group queues up.
//! - **Replayer**: one task reads committed records in sequence order and sends each to the
//!   upstream: 2xx → delivered; a permanent refusal ([`crate::upstream::PERMANENT_REFUSALS`])
//!   → dead letter, once; anything else (5xx, 408, 429, other 4xx, 3xx, timeouts) → retried
//!   with exponential backoff, cut short when a live request finds the upstream back. When live traffic flows, replay takes at most `replay_share`
//!   of the upstream requests.
//! - **Back-pressure**: past `max_bytes` (or `max_age`), or with the disk full, an append is
//!   refused and the client gets 503 + `Retry-After`; accepted data is never dropped.
//! - **Failure**: any other write or sync error is fatal: every waiting request gets 503, the
//!   gateway stops accepting and exits non-zero; the next start recovers from the log.
//! - **One process per directory**: an exclusive `flock` on `LOCK`.
//!
//! Cancel safety: a request dropped after its append was queued may still be spooled (and
//! later delivered) without its client seeing a 2xx; DataKit then re-sends: a duplicate,
//! which at-least-once allows.

pub mod log;
pub use oneway_protocol::spool_record as record;
pub mod storage;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{error, info, warn};

use self::log::Log;
use self::record::{FRAME_HEADER, Payload, Record};
use self::storage::FsStorage;
pub use crate::config::{SpoolConfig, SpoolMode};
use crate::telemetry;
use crate::upstream::{Upstream, UpstreamError, Verdict};

/// The most bytes one group commit writes.
pub const MAX_GROUP_BYTES: usize = 32 << 20;
const MIN_BACKOFF: Duration = Duration::from_millis(50);

/// Why a batch could not be spooled, or the spool stopped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpoolError {
    /// At the high-watermark of bytes.
    #[error("the spool is full")]
    Full,
    /// The oldest undelivered record is older than `max_age`.
    #[error("the spool's oldest record is older than its limit")]
    TooOld,
    /// The filesystem is full.
    #[error("the spool's disk is full")]
    DiskFull,
    /// A write or sync failed: the spool stopped and the process must exit.
    #[error("spool failure: {0}")]
    Fatal(String),
    /// The spool stopped after an earlier fatal error.
    #[error("the spool has stopped after a failure")]
    Stopped,
    /// Another process holds the directory.
    #[error("spool directory {0} is in use by another process (its LOCK file is locked)")]
    Locked(PathBuf),
}

impl SpoolError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            SpoolError::Full => "full",
            SpoolError::TooOld => "too_old",
            SpoolError::DiskFull => "disk_full",
            SpoolError::Fatal(_) => "fatal",
            SpoolError::Stopped => "stopped",
            SpoolError::Locked(_) => "locked",
        }
    }
}

enum Command {
    Append(Payload, oneshot::Sender<Result<u64, SpoolError>>),
    Delivered(u64),
    DeadLetter(Bytes, u64),
    Quarantine(u64),
    Flush(oneshot::Sender<()>),
}

/// What the replayer may read: each segment's first sequence number and synced length.
#[derive(Debug, Clone, Default)]
struct Committed {
    segments: Arc<Vec<(u64, u64)>>,
}

struct Shared {
    config: SpoolConfig,
    bytes: AtomicU64,
    pending: AtomicU64,
    delivered: AtomicU64,
    /// Append time (Unix ms) of the record the replayer is on; 0 when it is caught up.
    oldest_unix_ms: AtomicU64,
    failure: Mutex<Option<String>>,
    failed: watch::Sender<bool>,
    committed: watch::Sender<Committed>,
    live_requests: AtomicU64,
    upstream_back: Notify,
    /// An append was refused at the watermark and no room was made since.
    at_watermark: AtomicBool,
    audit: Arc<crate::audit::Audit>,
}

/// The spool service.
pub struct Spool {
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    /// The recovered log and the writer's end of the channel, until [`Spool::start`] hands
    /// them to the writer thread (appends queue in the channel meanwhile).
    writer: Mutex<Option<(Log<FsStorage>, mpsc::Receiver<Command>)>>,
    _lock: std::fs::File,
}

impl std::fmt::Debug for Spool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Spool")
            .field("directory", &self.shared.config.directory)
            .field("bytes", &self.shared.bytes.load(Ordering::Relaxed))
            .finish()
    }
}

/// Unix time in milliseconds.
pub fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Takes the directory's lock, or says who has it.
pub fn lock(directory: &Path) -> Result<std::fs::File, SpoolError> {
    let io = |e: std::io::Error| SpoolError::Fatal(format!("{}: {e}", directory.display()));
    FsStorage::new(directory).map_err(io)?;
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(directory.join("LOCK"))
        .map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(SpoolError::Locked(directory.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

impl Spool {
    /// Locks the directory and recovers the log. Starts no thread: [`Spool::start`] does,
    /// once the process is sandboxed.
    pub fn open(
        config: SpoolConfig,
        audit: Arc<crate::audit::Audit>,
    ) -> Result<Arc<Spool>, SpoolError> {
        let lock = lock(&config.directory)?;
        let storage = FsStorage::new(&config.directory)
            .map_err(|e| SpoolError::Fatal(format!("{}: {e}", config.directory.display())))?;
        let (log, report) = Log::open(storage, config.segment_bytes)?;
        for (name, why) in &report.quarantined {
            error!(segment = %name, reason = %why, "spool segment quarantined");
            metrics::counter!(telemetry::SPOOL_QUARANTINED).increment(1);
        }
        if report.delivered_unreadable {
            warn!("spool 'delivered' file unreadable: every record on disk will be replayed");
        }
        info!(
            directory = %config.directory.display(),
            pending_records = report.pending_records,
            segments = report.segments,
            truncated_bytes = report.truncated_bytes,
            removed_delivered = report.removed_delivered,
            "spool recovered"
        );
        let shared = Arc::new(Shared {
            config,
            bytes: AtomicU64::new(0),
            pending: AtomicU64::new(0),
            delivered: AtomicU64::new(log.delivered()),
            oldest_unix_ms: AtomicU64::new(0),
            failure: Mutex::new(None),
            failed: watch::Sender::new(false),
            committed: watch::Sender::new(Committed::default()),
            live_requests: AtomicU64::new(0),
            upstream_back: Notify::new(),
            at_watermark: AtomicBool::new(false),
            audit,
        });
        publish(&log, &shared);
        metrics::gauge!(telemetry::SPOOL_FAILED).set(0.0);
        metrics::gauge!(telemetry::SPOOL_MAX_BYTES).set(shared.config.max_bytes as f64);
        let (commands, rx) = mpsc::channel();
        Ok(Arc::new(Spool {
            shared,
            commands,
            writer: Mutex::new(Some((log, rx))),
            _lock: lock,
        }))
    }

    /// The mode.
    pub fn mode(&self) -> SpoolMode {
        self.shared.config.mode
    }

    /// Appends a batch; returns once it is `fdatasync`ed (or refused).
    pub async fn append(&self, payload: Payload) -> Result<u64, SpoolError> {
        let result = self.try_append(payload).await;
        if let Err(e) = &result {
            metrics::counter!(telemetry::SPOOL_REFUSED, "reason" => e.kind()).increment(1);
        }
        result
    }

    async fn try_append(&self, payload: Payload) -> Result<u64, SpoolError> {
        if *self.shared.failed.borrow() {
            return Err(SpoolError::Stopped);
        }
        if self.too_old() {
            return Err(SpoolError::TooOld);
        }
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Append(payload, reply))
            .map_err(|_| SpoolError::Stopped)?;
        answer.await.map_err(|_| SpoolError::Stopped)?
    }

    fn too_old(&self) -> bool {
        let oldest = self.shared.oldest_unix_ms.load(Ordering::Relaxed);
        match self.shared.config.max_age {
            Some(max) if oldest > 0 => unix_ms().saturating_sub(oldest) > max.as_millis() as u64,
            _ => false,
        }
    }

    /// Whether appends are being refused for lack of room (for `/ready`).
    pub fn is_full(&self) -> bool {
        self.shared.at_watermark.load(Ordering::Relaxed) || self.too_old()
    }

    /// Whether the spool stopped after a fatal error.
    pub fn has_failed(&self) -> bool {
        *self.shared.failed.borrow()
    }

    /// Completes when the spool has failed, with why.
    pub async fn failure(&self) -> String {
        let mut rx = self.shared.failed.subscribe();
        let _ = rx.wait_for(|f| *f).await;
        self.shared
            .failure
            .lock()
            .ok()
            .and_then(|f| f.clone())
            .unwrap_or_default()
    }

    /// A live request is about to be forwarded (for the live/replay share).
    pub fn note_live_request(&self) {
        self.shared.live_requests.fetch_add(1, Ordering::Relaxed);
    }

    /// A live request found the upstream answering: replay retries at once.
    pub fn note_upstream_back(&self) {
        if self.shared.pending.load(Ordering::Relaxed) > 0 {
            self.shared.upstream_back.notify_one();
        }
    }

    /// Records that everything up to `seq` was delivered by other means (tools and
    /// benchmarks that run no replayer); segments it completes are unlinked.
    pub fn mark_delivered(&self, seq: u64) {
        let _ = self.commands.send(Command::Delivered(seq));
    }

    /// Records waiting for the upstream.
    pub fn pending_records(&self) -> u64 {
        self.shared.pending.load(Ordering::Relaxed)
    }

    /// Starts the writer thread (once; appends wait for it). A writer that cannot start
    /// fails the spool. [`Spool::start`] does this too.
    pub fn start_writer(&self) {
        let writer = self.writer.lock().ok().and_then(|mut w| w.take());
        if let Some((log, rx)) = writer {
            let shared = Arc::clone(&self.shared);
            if let Err(e) = std::thread::Builder::new()
                .name("oneway-spool".into())
                .spawn(move || write_loop(log, rx, &shared))
            {
                fail(
                    &self.shared,
                    &SpoolError::Fatal(format!("spawn the spool writer: {e}")),
                );
            }
        }
    }

    /// Starts the writer thread, and the replayer and the gauge updater on the current
    /// runtime.
    pub fn start(self: &Arc<Self>, upstream: Arc<Upstream>) -> Vec<tokio::task::JoinHandle<()>> {
        self.start_writer();
        let replayer = tokio::spawn(replay_loop(
            Arc::clone(&self.shared),
            self.commands.clone(),
            upstream,
        ));
        let shared = Arc::clone(&self.shared);
        let gauges = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            loop {
                tick.tick().await;
                update_gauges(&shared);
            }
        });
        vec![replayer, gauges]
    }

    /// Persists "delivered up to" and stops the writer (at shutdown, after the replayer).
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.commands.send(Command::Flush(tx)).is_ok() {
            let _ = rx.await;
        }
        update_gauges(&self.shared);
    }
}

fn update_gauges(shared: &Shared) {
    metrics::gauge!(telemetry::SPOOL_BYTES).set(shared.bytes.load(Ordering::Relaxed) as f64);
    let pending = shared.pending.load(Ordering::Relaxed);
    metrics::gauge!(telemetry::SPOOL_RECORDS).set(pending as f64);
    let oldest = shared.oldest_unix_ms.load(Ordering::Relaxed);
    let age = if oldest > 0 && pending > 0 {
        unix_ms().saturating_sub(oldest) as f64 / 1000.0
    } else {
        0.0
    };
    metrics::gauge!(telemetry::SPOOL_OLDEST_AGE).set(age);
}

fn publish(log: &Log<FsStorage>, shared: &Shared) {
    let before = shared.bytes.swap(log.bytes(), Ordering::Relaxed);
    if log.bytes() < before {
        shared.at_watermark.store(false, Ordering::Relaxed);
    }
    shared
        .pending
        .store(log.pending_records(), Ordering::Relaxed);
    shared.delivered.store(log.delivered(), Ordering::Relaxed);
    let segments: Vec<(u64, u64)> = log.segments().map(|s| (s.first_seq, s.len)).collect();
    shared.committed.send_replace(Committed {
        segments: Arc::new(segments),
    });
}

fn fail(shared: &Shared, e: &SpoolError) {
    error!(error = %e, "spool failure: no more batches are accepted; the process stops");
    if let Ok(mut f) = shared.failure.lock() {
        f.get_or_insert_with(|| e.to_string());
    }
    metrics::gauge!(telemetry::SPOOL_FAILED).set(1.0);
    shared.failed.send_replace(true);
}

/// How long "delivered up to" may trail the deliveries on disk: what a crash replays twice.
/// Each move costs one 16-byte append and one `fdatasync` of the journal, so at most
/// 1 s / this many syncs per second while records are being delivered.
const PERSIST_DELIVERED_EVERY: Duration = Duration::from_millis(2);

fn write_loop(mut log: Log<FsStorage>, rx: mpsc::Receiver<Command>, shared: &Shared) {
    let max_bytes = shared.config.max_bytes;
    let mut last_persist = Instant::now();
    let mut failed = false;
    let check = |r: Result<(), SpoolError>, failed: &mut bool| {
        if let Err(e) = r {
            *failed = true;
            fail(shared, &e);
        }
    };
    loop {
        let wait = if log.delivered_pending() {
            PERSIST_DELIVERED_EVERY.saturating_sub(last_persist.elapsed())
        } else {
            Duration::from_millis(500)
        };
        let first = match rx.recv_timeout(wait) {
            Ok(c) => c,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if !failed && last_persist.elapsed() >= PERSIST_DELIVERED_EVERY {
                    check(log.persist_delivered().map(drop), &mut failed);
                    last_persist = Instant::now();
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut group: Vec<(Payload, oneshot::Sender<Result<u64, SpoolError>>)> = Vec::new();
        let mut group_bytes = 0usize;
        let mut next = Some(first);
        let mut changed = false;
        while let Some(command) = next.take() {
            match command {
                Command::Append(payload, reply) => {
                    let size = payload.frame_len();
                    if failed {
                        let _ = reply.send(Err(SpoolError::Stopped));
                    } else if log.bytes() + (group_bytes + size) as u64 > max_bytes {
                        shared.at_watermark.store(true, Ordering::Relaxed);
                        let _ = reply.send(Err(SpoolError::Full));
                    } else {
                        group_bytes += size;
                        group.push((payload, reply));
                    }
                }
                Command::Delivered(seq) if !failed => {
                    check(log.mark_delivered(seq), &mut failed);
                    changed = true;
                }
                Command::DeadLetter(frame, seq) if !failed => {
                    check(log.dead_letter(&frame, seq), &mut failed);
                }
                Command::Quarantine(first_seq) if !failed => {
                    check(log.quarantine(first_seq), &mut failed);
                    changed = true;
                }
                Command::Flush(done) => {
                    if !failed {
                        check(log.persist_delivered().map(drop), &mut failed);
                    }
                    let _ = done.send(());
                }
                Command::Delivered(_) | Command::DeadLetter(..) | Command::Quarantine(_) => {}
            }
            if group_bytes < MAX_GROUP_BYTES {
                next = rx.try_recv().ok();
            }
        }
        if !group.is_empty() {
            let started = Instant::now();
            let payloads: Vec<&Payload> = group.iter().map(|(p, _)| p).collect();
            let result = log.append(&payloads);
            metrics::histogram!(telemetry::SPOOL_SYNC_DURATION)
                .record(started.elapsed().as_secs_f64());
            match result {
                Ok(first) => {
                    metrics::counter!(telemetry::SPOOL_SYNCS).increment(1);
                    metrics::counter!(telemetry::SPOOL_APPENDS).increment(group.len() as u64);
                    for (i, (_, reply)) in group.into_iter().enumerate() {
                        let _ = reply.send(Ok(first + i as u64));
                    }
                }
                Err(e) => {
                    if matches!(e, SpoolError::Fatal(_)) {
                        failed = true;
                        fail(shared, &e);
                    } else {
                        warn!(error = %e, records = group.len(), "spool append refused");
                    }
                    for (_, reply) in group {
                        let _ = reply.send(Err(e.clone()));
                    }
                }
            }
            changed = true;
        }
        if changed {
            publish(&log, shared);
        }
        if !failed && last_persist.elapsed() >= PERSIST_DELIVERED_EVERY {
            check(log.persist_delivered().map(drop), &mut failed);
            last_persist = Instant::now();
        }
    }
    if !failed && let Err(e) = log.persist_delivered() {
        error!(error = %e, "could not persist the spool's delivered mark at exit");
    }
}

/// The next record after `offset` in a segment file, within its committed `limit`.
fn read_frame_at(path: &Path, offset: u64, limit: u64) -> std::io::Result<Option<Bytes>> {
    use std::os::unix::fs::FileExt;
    if offset.saturating_add(FRAME_HEADER as u64) > limit {
        return Ok(None);
    }
    let file = std::fs::File::open(path)?;
    let mut header = [0u8; FRAME_HEADER];
    file.read_exact_at(&mut header, offset)?;
    let len = u32::from_le_bytes([header[0], header[1], header[2], header[3]]) as u64;
    let total = FRAME_HEADER as u64 + len;
    if len as usize > record::MAX_PAYLOAD || offset + total > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "record length beyond the committed data",
        ));
    }
    let mut frame = vec![0u8; total as usize];
    file.read_exact_at(&mut frame, offset)?;
    Ok(Some(Bytes::from(frame)))
}

/// What the upstream's answer means for a spooled record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplayOutcome {
    /// 2xx.
    Delivered,
    /// Refused for good (a permanent refusal): dead-lettered.
    Refused(u16),
    /// Worth retrying.
    Retry,
}

/// Sends one record upstream.
pub async fn send_record(upstream: &Upstream, record: &Record) -> ReplayOutcome {
    let Some(request) = request_for(record) else {
        return ReplayOutcome::Refused(0);
    };
    match upstream.send(request).await {
        Ok(a) => match Verdict::of(a.status) {
            Verdict::Delivered => ReplayOutcome::Delivered,
            Verdict::Retry => ReplayOutcome::Retry,
            Verdict::Refused => ReplayOutcome::Refused(a.status.as_u16()),
        },
        Err(UpstreamError::Unreachable | UpstreamError::Timeout | UpstreamError::ServerError) => {
            ReplayOutcome::Retry
        }
    }
}

/// The upstream request a record replays.
pub fn request_for(record: &Record) -> Option<Request<Full<Bytes>>> {
    let mut request = Request::new(Full::new(record.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = record.path.parse().ok()?;
    for (name, value) in &record.headers {
        request.headers_mut().append(
            HeaderName::from_bytes(name.as_bytes()).ok()?,
            HeaderValue::from_bytes(value).ok()?,
        );
    }
    Some(request)
}

/// Waits until replay may send another request under the live/replay share.
struct Share {
    share: f64,
    window_start: Instant,
    live_at_start: u64,
    replayed: u64,
}

impl Share {
    /// Whether one more replayed request fits the share at `now`, given the live requests
    /// counted so far; counts it if so. Windows of one second.
    fn try_take(&mut self, live_now: u64, now: Instant) -> bool {
        if self.share >= 1.0 {
            return true;
        }
        if now.duration_since(self.window_start) >= Duration::from_secs(1) {
            self.window_start = now;
            self.live_at_start = live_now;
            self.replayed = 0;
        }
        let live = live_now.saturating_sub(self.live_at_start);
        let allowed = self.share / (1.0 - self.share) * live as f64 + 1.0;
        if live == 0 || (self.replayed as f64) < allowed {
            self.replayed += 1;
            true
        } else {
            false
        }
    }

    async fn wait(&mut self, shared: &Shared) {
        while !self.try_take(shared.live_requests.load(Ordering::Relaxed), Instant::now()) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

async fn replay_loop(
    shared: Arc<Shared>,
    commands: mpsc::Sender<Command>,
    upstream: Arc<Upstream>,
) {
    let mut committed = shared.committed.subscribe();
    let mut cursor: Option<(u64, u64)> = None;
    let mut delivered = shared.delivered.load(Ordering::Relaxed);
    let mut share = Share {
        share: shared.config.replay_share,
        window_start: Instant::now(),
        live_at_start: shared.live_requests.load(Ordering::Relaxed),
        replayed: 0,
    };
    let mut backoff = MIN_BACKOFF;
    let directory = shared.config.directory.clone();
    loop {
        if *shared.failed.borrow() {
            return;
        }
        let snapshot = committed.borrow_and_update().clone();
        let segments = &snapshot.segments;
        let position = match cursor {
            Some((first, offset)) if segments.iter().any(|s| s.0 == first) => Some((first, offset)),
            Some((first, _)) => segments
                .iter()
                .find(|s| s.0 > first)
                .map(|s| (s.0, record::SEGMENT_HEADER as u64)),
            None => segments
                .first()
                .map(|s| (s.0, record::SEGMENT_HEADER as u64)),
        };
        let Some((first, offset)) = position else {
            shared.oldest_unix_ms.store(0, Ordering::Relaxed);
            if committed.changed().await.is_err() {
                return;
            }
            continue;
        };
        cursor = Some((first, offset));
        let limit = segments.iter().find(|s| s.0 == first).map_or(0, |s| s.1);
        let path = directory.join(log::segment_name(first));
        let read = tokio::task::spawn_blocking(move || read_frame_at(&path, offset, limit)).await;
        let frame = match read {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) => {
                if let Some(next) = segments.iter().find(|s| s.0 > first) {
                    cursor = Some((next.0, record::SEGMENT_HEADER as u64));
                } else {
                    shared.oldest_unix_ms.store(0, Ordering::Relaxed);
                    if committed.changed().await.is_err() {
                        return;
                    }
                }
                continue;
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::NotFound => {
                // Unlinked as delivered, or quarantined: move on.
                cursor = segments
                    .iter()
                    .find(|s| s.0 > first)
                    .map(|s| (s.0, record::SEGMENT_HEADER as u64));
                if cursor.is_none() && committed.changed().await.is_err() {
                    return;
                }
                continue;
            }
            Ok(Err(e)) => {
                quarantine(&commands, first, &e.to_string());
                cursor = Some((first, u64::MAX));
                continue;
            }
            Err(_) => {
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let record = match record::decode_frame(&frame) {
            Ok(r) => r,
            Err(e) => {
                quarantine(&commands, first, &e.to_string());
                cursor = Some((first, u64::MAX));
                continue;
            }
        };
        cursor = Some((first, offset + frame.len() as u64));
        if record.seq <= delivered {
            continue;
        }
        shared
            .oldest_unix_ms
            .store(record.appended_unix_ms.max(1), Ordering::Relaxed);
        loop {
            share.wait(&shared).await;
            match send_record(&upstream, &record).await {
                ReplayOutcome::Delivered => {
                    metrics::counter!(telemetry::SPOOL_REPLAYED).increment(1);
                    break;
                }
                ReplayOutcome::Refused(status) => {
                    // An audit line: the audit trail (issue 6) routes this target to its sink.
                    warn!(
                        target: "oneway::audit",
                        event = "spool_dead_letter",
                        seq = record.seq,
                        status,
                        "upstream refused a spooled batch: moved to dead/"
                    );
                    shared.audit.emit(
                        "spool_dead_letter",
                        serde_json::json!({"seq": record.seq, "status": status}),
                    );
                    metrics::counter!(telemetry::SPOOL_DEAD_LETTERS).increment(1);
                    let _ = commands.send(Command::DeadLetter(frame.clone(), record.seq));
                    break;
                }
                ReplayOutcome::Retry => {
                    tokio::select! {
                        () = tokio::time::sleep(backoff) => {}
                        () = shared.upstream_back.notified() => {}
                    }
                    backoff = (backoff * 2).min(shared.config.retry_max_backoff);
                    if *shared.failed.borrow() {
                        return;
                    }
                }
            }
        }
        backoff = MIN_BACKOFF;
        delivered = record.seq;
        if commands.send(Command::Delivered(record.seq)).is_err() {
            return;
        }
    }
}

fn quarantine(commands: &mpsc::Sender<Command>, first: u64, why: &str) {
    error!(segment = %log::segment_name(first), reason = %why, "spool segment quarantined while replaying");
    metrics::counter!(telemetry::SPOOL_QUARANTINED).increment(1);
    let _ = commands.send(Command::Quarantine(first));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn share(share: f64, now: Instant) -> Share {
        Share {
            share,
            window_start: now,
            live_at_start: 0,
            replayed: 0,
        }
    }

    #[test]
    fn replay_is_unlimited_without_live_traffic() {
        let now = Instant::now();
        let mut s = share(0.2, now);
        assert!((0..1000).all(|_| s.try_take(0, now)));
    }

    #[test]
    fn replay_takes_at_most_its_share_while_live_traffic_flows() {
        let now = Instant::now();
        let mut s = share(0.5, now);
        // 10 live requests in this window: replay may send as many (plus one).
        let taken = (0..100).filter(|_| s.try_take(10, now)).count();
        assert_eq!(taken, 11);
        let mut s = share(0.2, now);
        let taken = (0..100).filter(|_| s.try_take(40, now)).count();
        assert_eq!(taken, 11, "0.2 / 0.8 × 40 + 1");
        // A new window starts counting again.
        let later = now + Duration::from_secs(1);
        assert!(s.try_take(40, later));
    }

    #[test]
    fn a_share_of_one_never_waits() {
        let now = Instant::now();
        let mut s = share(1.0, now);
        assert!((0..1000).all(|_| s.try_take(1_000_000, now)));
    }

    #[test]
    fn only_permanent_refusals_are_dead_lettered() {
        use crate::upstream::Verdict;
        for (code, verdict) in [
            (200, Verdict::Delivered),
            (204, Verdict::Delivered),
            (500, Verdict::Retry),
            (503, Verdict::Retry),
            (429, Verdict::Retry),
            (408, Verdict::Retry),
            (409, Verdict::Retry),
            (301, Verdict::Retry),
            (400, Verdict::Refused),
            (401, Verdict::Refused),
            (403, Verdict::Refused),
            (404, Verdict::Refused),
            (406, Verdict::Refused),
            (413, Verdict::Refused),
        ] {
            assert_eq!(
                Verdict::of(http::StatusCode::from_u16(code).expect("status")),
                verdict,
                "{code}"
            );
        }
    }
}
