//! The durable spool: a 2xx for a spooled batch means it is `fdatasync`ed on disk, and it
//! reaches the upstream at least once, across upstream outages, restarts and `kill -9`
//! (reference/hardening.md §7; the format and the operator's side are in `docs/spool.md`).
//!
//! - **Writer** (`writer.rs`): one thread owns the [`log::Log`]. Appends from all requests queue on a
//!   channel; the thread takes everything queued (up to [`MAX_GROUP_BYTES`]), writes it with
//!   one `write`, makes it durable with one `fdatasync`, then answers every request in the
//!   group (group commit). While it syncs, the next group queues up.
//! - **Replayer** (`replay.rs`): one task reads committed records in sequence order and sends each to the
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
mod replay;
pub mod storage;
mod writer;

use self::replay::replay_loop;
pub use self::replay::{ReplayOutcome, request_for, send_record};
use self::writer::{fail, publish, write_loop};

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use tokio::sync::{Notify, oneshot, watch};
use tracing::{error, info, warn};

use self::log::Log;
use self::record::Payload;
use self::storage::FsStorage;
pub use crate::config::{SpoolConfig, SpoolMode};
use crate::telemetry;
use crate::upstream::Upstream;

/// The most bytes one group commit writes.
pub const MAX_GROUP_BYTES: usize = 32 << 20;
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
