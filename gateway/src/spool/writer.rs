//! The spool's writer: one thread owns the [`Log`], takes every append queued (up to
//! [`MAX_GROUP_BYTES`]), writes them with one `write`, makes them durable with one
//! `fdatasync`, then answers every request in the group (group commit). It also records what
//! was delivered (a journal, synced every few milliseconds), seals and removes segments, and
//! quarantines what the replayer cannot read. Any write or sync error is fatal: every waiting
//! request is answered with the error and the spool stops.

use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use std::sync::atomic::Ordering;

use tokio::sync::oneshot;
use tracing::{error, warn};

use super::log::Log;
use super::record::Payload;
use super::storage::FsStorage;
use super::{Command, Committed, MAX_GROUP_BYTES, Shared, SpoolError};
use crate::telemetry;

/// How long "delivered up to" may trail the deliveries on disk: what a crash replays twice.
/// Each move costs one 16-byte append and one `fdatasync` of the journal, so at most
/// 1 s / this many syncs per second while records are being delivered.
const PERSIST_DELIVERED_EVERY: Duration = Duration::from_millis(2);

pub(super) fn publish(log: &Log<FsStorage>, shared: &Shared) {
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

pub(super) fn fail(shared: &Shared, e: &SpoolError) {
    error!(error = %e, "spool failure: no more batches are accepted; the process stops");
    if let Ok(mut f) = shared.failure.lock() {
        f.get_or_insert_with(|| e.to_string());
    }
    metrics::gauge!(telemetry::SPOOL_FAILED).set(1.0);
    shared.failed.send_replace(true);
}

pub(super) fn write_loop(mut log: Log<FsStorage>, rx: mpsc::Receiver<Command>, shared: &Shared) {
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
