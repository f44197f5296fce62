//! The spool's replayer: one task reads committed records in sequence order and sends each
//! to the upstream: 2xx → delivered; a permanent refusal → dead letter, once; anything else →
//! retried with exponential backoff, cut short when a live request finds the upstream back.
//! While live traffic flows, replay takes at most `replay_share` of the upstream requests.
//!
//! Cancel safety: the task may be aborted at any await; a record sent but not yet marked
//! delivered is sent again by the next start (at least once).

use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::{HeaderName, HeaderValue, Method, Request};
use http_body_util::Full;
use tracing::{error, warn};

use super::log;
use super::record::{self, FRAME_HEADER, Record};
use super::{Command, Shared};
use crate::telemetry;
use crate::upstream::{Upstream, Verdict};

const MIN_BACKOFF: Duration = Duration::from_millis(50);

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
        Err(e) if e.retryable() => ReplayOutcome::Retry,
        // oneway's own mistake: the record can never be sent; it is dead-lettered.
        Err(_) => ReplayOutcome::Refused(0),
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

pub(super) async fn replay_loop(
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
                        serde_json::json!({"record": record.seq, "status": status}),
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
