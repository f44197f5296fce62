//! `[spool]`: the durable spool that holds batches while the upstream is down (its directory,
//! mode, high-watermarks, segment size and replay pacing).

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Problems, Resolve};

/// `spool.mode`: when batches are spooled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpoolMode {
    /// Forward first; spool when the upstream is down, slow or failing (the default).
    ForwardFirst,
    /// Every batch goes through the spool; the replayer forwards it.
    SpoolFirst,
}

/// `[spool]`.
#[derive(Debug, Clone)]
pub struct SpoolConfig {
    /// The spool directory (one gateway process per directory).
    pub directory: PathBuf,
    /// When batches are spooled.
    pub mode: SpoolMode,
    /// Above this many bytes on disk, appends are refused (503).
    pub max_bytes: u64,
    /// With the oldest undelivered record older than this, appends are refused (503).
    pub max_age: Option<Duration>,
    /// Segment files are sealed past this size.
    pub segment_bytes: u64,
    /// The largest share of upstream requests replay takes while live traffic flows.
    pub replay_share: f64,
    /// The longest wait between replay attempts.
    pub retry_max_backoff: Duration,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSpool {
    directory: Option<PathBuf>,
    mode: Option<String>,
    max_bytes: Option<u64>,
    max_age_seconds: Option<u64>,
    segment_bytes: Option<u64>,
    replay_share: Option<f64>,
    retry_max_backoff_ms: Option<u64>,
}

/// Default spool high-watermark: 1 GiB.
const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// Default spool segment size: 64 MiB.
const DEFAULT_SPOOL_SEGMENT_BYTES: u64 = 64 << 20;

impl RawSpool {
    /// Checks `[spool]`; the spool must hold two bodies of `max_body_bytes`.
    pub(super) fn check(
        &self,
        p: &mut Problems,
        resolve: Resolve<'_>,
        max_body_bytes: usize,
    ) -> SpoolConfig {
        let r = self;
        let directory = match &r.directory {
            Some(d) => resolve(d),
            None => {
                p.add("spool.directory", "is required to enable the spool");
                PathBuf::new()
            }
        };
        let mode = match r.mode.as_deref() {
            None | Some("forward-first") => SpoolMode::ForwardFirst,
            Some("spool-first") => SpoolMode::SpoolFirst,
            Some(other) => {
                p.add(
                    "spool.mode",
                    format!("{other:?} is not \"forward-first\" or \"spool-first\""),
                );
                SpoolMode::ForwardFirst
            }
        };
        let segment_bytes = r.segment_bytes.unwrap_or(DEFAULT_SPOOL_SEGMENT_BYTES);
        if segment_bytes < 64 << 10 {
            p.add("spool.segment_bytes", "must be at least 65536");
        }
        let max_bytes = r.max_bytes.unwrap_or(DEFAULT_SPOOL_MAX_BYTES);
        if max_bytes < (max_body_bytes as u64).saturating_mul(2).max(segment_bytes) {
            p.add(
                "spool.max_bytes",
                "must hold at least one segment and two bodies of limits.max_body_bytes",
            );
        }
        let replay_share = r.replay_share.unwrap_or(0.5);
        if !(replay_share > 0.0 && replay_share <= 1.0) {
            p.add("spool.replay_share", "must be in (0, 1]");
        }
        let max_age = match r.max_age_seconds {
            Some(0) => {
                p.add(
                    "spool.max_age_seconds",
                    "must be greater than 0 (or absent)",
                );
                None
            }
            s => s.map(Duration::from_secs),
        };
        let retry_max_backoff = Duration::from_millis(match r.retry_max_backoff_ms {
            Some(0) => {
                p.add("spool.retry_max_backoff_ms", "must be greater than 0");
                1
            }
            Some(ms) => ms,
            None => 30_000,
        });
        SpoolConfig {
            directory,
            mode,
            max_bytes,
            max_age,
            segment_bytes,
            replay_share,
            retry_max_backoff,
        }
    }
}
