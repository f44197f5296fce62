//! Per-token rate limits that push back without making DataKit drop data.
//!
//! Each limit is a GCRA cell (the "virtual scheduling" form of a token bucket): one `u64`, the
//! theoretical arrival time (TAT) in nanoseconds, updated with a compare-and-swap, so a check is
//! a few instructions and never takes a lock. For a rate `r` per second and a burst `b`:
//! emission interval `T = 1e9 / r` ns, tolerance `τ = b·T`. A cost `n` at time `now` is
//! allowed iff `max(TAT, now) + n·T − now ≤ τ`; the wait until it would be is the
//! `Retry-After`.
//!
//! Checked in two steps (see `server.rs`): before the body is read with the expected cost
//! (one request, `Content-Length` bytes, `X-Points` points), and after validation with the
//! real decoded size and point count (only the difference is charged).
//!
//! State exists only for authenticated tokens (bounded by the config), in a sharded map
//! (`dashmap`), and an entry idle long enough to be full again is evicted by [`Limiter::sweep`].
//! Time comes from a [`Clock`], so tests drive it.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

pub use crate::config::{Rate, TokenLimits};

/// Nanoseconds from a fixed origin.
pub trait Clock: Send + Sync + std::fmt::Debug {
    /// Now.
    fn now_ns(&self) -> u64;
}

/// The monotonic clock.
#[derive(Debug)]
pub struct MonotonicClock(Instant);

impl Default for MonotonicClock {
    fn default() -> Self {
        MonotonicClock(Instant::now())
    }
}

impl Clock for MonotonicClock {
    fn now_ns(&self) -> u64 {
        // Starts at one hour so that "long ago" is representable without underflow.
        3_600_000_000_000 + self.0.elapsed().as_nanos() as u64
    }
}

/// A clock tests move by hand.
#[derive(Debug)]
pub struct ManualClock(AtomicU64);

impl Default for ManualClock {
    fn default() -> Self {
        ManualClock(AtomicU64::new(3_600_000_000_000))
    }
}

impl ManualClock {
    /// Moves time forward.
    pub fn advance(&self, d: Duration) {
        self.0.fetch_add(d.as_nanos() as u64, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_ns(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
}

/// What a limit counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LimitKind {
    /// Requests.
    Requests,
    /// Decoded body bytes.
    DecodedBytes,
    /// Points.
    Points,
}

impl LimitKind {
    /// A stable label.
    pub fn as_str(self) -> &'static str {
        match self {
            LimitKind::Requests => "requests",
            LimitKind::DecodedBytes => "decoded_bytes",
            LimitKind::Points => "points",
        }
    }
}

/// A refusal: which limit, and how long until the cost would be allowed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Throttled {
    /// The limit.
    pub kind: LimitKind,
    /// How long to wait.
    pub retry_after: Duration,
}

impl Throttled {
    /// `Retry-After` in whole seconds, at least 1.
    pub fn retry_after_seconds(&self) -> u64 {
        (self.retry_after.as_secs() + u64::from(self.retry_after.subsec_nanos() > 0)).max(1)
    }
}

#[derive(Debug, Default)]
struct Cell {
    tat: AtomicU64,
}

impl Cell {
    /// Charges `cost` units at `now` if allowed.
    #[inline]
    fn charge(&self, rate: Rate, cost: f64, now: u64, kind: LimitKind) -> Result<(), Throttled> {
        let tolerance = rate.tolerance;
        let increment = (cost * rate.interval) as u64;
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let new_tat = tat.max(now).saturating_add(increment);
            let ahead = new_tat - now;
            if ahead > tolerance {
                return Err(Throttled {
                    kind,
                    retry_after: Duration::from_nanos(ahead - tolerance),
                });
            }
            match self
                .tat
                .compare_exchange_weak(tat, new_tat, Ordering::Relaxed, Ordering::Relaxed)
            {
                Ok(_) => return Ok(()),
                Err(actual) => tat = actual,
            }
        }
    }

    /// Whether the cell is full again (idle) at `now`.
    fn idle(&self, now: u64) -> bool {
        self.tat.load(Ordering::Relaxed) <= now
    }
}

/// The cells of one token.
#[derive(Debug, Default)]
struct Cells {
    requests: Cell,
    decoded_bytes: Cell,
    points: Cell,
}

impl Cells {
    fn idle(&self, now: u64) -> bool {
        self.requests.idle(now) && self.decoded_bytes.idle(now) && self.points.idle(now)
    }
}

/// Hashes a token digest by its first eight bytes. The keys are SHA-256 digests of configured
/// tokens (uniform, and never chosen by a peer: state exists only after authentication), so
/// they need no further hashing.
#[derive(Debug, Clone, Copy, Default)]
struct DigestHasher(u64);

impl std::hash::Hasher for DigestHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // `[u8; 32]` hashes as its bytes (after no length prefix for arrays).
        for (i, b) in bytes.iter().take(8).enumerate() {
            self.0 ^= u64::from(*b) << (8 * i);
        }
    }
}

type DigestMap = DashMap<[u8; 32], Cells, std::hash::BuildHasherDefault<DigestHasher>>;

/// The per-token limiter.
#[derive(Debug)]
pub struct Limiter {
    cells: DigestMap,
    clock: Arc<dyn Clock>,
}

impl Limiter {
    /// A limiter on `clock`.
    pub fn new(clock: Arc<dyn Clock>) -> Limiter {
        Limiter {
            cells: DigestMap::default(),
            clock,
        }
    }

    /// Runs `f` on the token's cells (created on first use), under the map's shard guard:
    /// no reference count is touched on the hot path.
    #[inline]
    fn with_cells<R>(&self, token: &[u8; 32], f: impl FnOnce(&Cells) -> R) -> R {
        if let Some(c) = self.cells.get(token) {
            return f(&c);
        }
        let c = self.cells.entry(*token).or_default().downgrade();
        f(&c)
    }

    /// Step one, before the body is read: one request, and the expected bytes and points.
    /// Nothing is charged if any limit refuses.
    pub fn admit(
        &self,
        token: &[u8; 32],
        limits: &TokenLimits,
        expected_bytes: u64,
        expected_points: u64,
    ) -> Result<(), Throttled> {
        if limits.requests.is_none() && limits.decoded_bytes.is_none() && limits.points.is_none() {
            return Ok(());
        }
        let now = self.clock.now_ns();
        self.with_cells(token, |cells| {
            admit(cells, limits, now, expected_bytes, expected_points)
        })
    }

    /// Step two, after validation: charges what the batch really cost beyond the estimate.
    pub fn settle(
        &self,
        token: &[u8; 32],
        limits: &TokenLimits,
        extra_bytes: u64,
        extra_points: u64,
    ) -> Result<(), Throttled> {
        let now = self.clock.now_ns();
        self.with_cells(token, |cells| {
            if let (Some(rate), true) = (limits.decoded_bytes, extra_bytes > 0) {
                cells.decoded_bytes.charge(
                    rate,
                    extra_bytes as f64,
                    now,
                    LimitKind::DecodedBytes,
                )?;
            }
            if let (Some(rate), true) = (limits.points, extra_points > 0) {
                cells
                    .points
                    .charge(rate, extra_points as f64, now, LimitKind::Points)?;
            }
            Ok(())
        })
    }

    /// Tokens with limiter state.
    pub fn tracked(&self) -> usize {
        self.cells.len()
    }

    /// Drops the state of tokens idle long enough that their buckets are full again.
    pub fn sweep(&self) {
        let now = self.clock.now_ns();
        self.cells.retain(|_, c| !c.idle(now));
    }
}

/// Step one on a token's cells; nothing is charged if any limit refuses.
#[inline]
fn admit(
    cells: &Cells,
    limits: &TokenLimits,
    now: u64,
    expected_bytes: u64,
    expected_points: u64,
) -> Result<(), Throttled> {
    let sizes = [
        (
            limits.decoded_bytes,
            &cells.decoded_bytes,
            expected_bytes,
            LimitKind::DecodedBytes,
        ),
        (
            limits.points,
            &cells.points,
            expected_points,
            LimitKind::Points,
        ),
    ];
    // Check the size limits first without charging, so a refusal leaves no trace.
    for &(rate, cell, cost, kind) in &sizes {
        if let Some(rate) = rate {
            probe(cell, rate, cost as f64, now, kind)?;
        }
    }
    if let Some(rate) = limits.requests {
        cells.requests.charge(rate, 1.0, now, LimitKind::Requests)?;
    }
    for &(rate, cell, cost, kind) in &sizes {
        if let Some(rate) = rate {
            // A concurrent request may have taken the room since the probe: refuse then.
            cell.charge(rate, cost as f64, now, kind)?;
        }
    }
    Ok(())
}

/// Whether `cost` would be allowed now, without charging it.
fn probe(cell: &Cell, rate: Rate, cost: f64, now: u64, kind: LimitKind) -> Result<(), Throttled> {
    let interval = 1e9 / rate.per_second;
    let tolerance = (rate.burst * interval) as u64;
    let new_tat = cell
        .tat
        .load(Ordering::Relaxed)
        .max(now)
        .saturating_add((cost * interval) as u64);
    let ahead = new_tat - now;
    if ahead > tolerance {
        Err(Throttled {
            kind,
            retry_after: Duration::from_nanos(ahead - tolerance),
        })
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter() -> (Limiter, Arc<ManualClock>) {
        let clock = Arc::new(ManualClock::default());
        (Limiter::new(Arc::clone(&clock) as Arc<dyn Clock>), clock)
    }

    const T: [u8; 32] = [1; 32];
    const U: [u8; 32] = [2; 32];

    fn requests(per_second: f64, burst: f64) -> TokenLimits {
        TokenLimits {
            requests: Some(Rate::new(per_second, burst)),
            ..TokenLimits::default()
        }
    }

    #[test]
    fn burst_then_refill_at_the_rate() {
        let (l, clock) = limiter();
        let lim = requests(10.0, 5.0);
        for _ in 0..5 {
            assert!(l.admit(&T, &lim, 0, 0).is_ok());
        }
        let e = l.admit(&T, &lim, 0, 0).unwrap_err();
        assert_eq!(e.kind, LimitKind::Requests);
        assert_eq!(e.retry_after, Duration::from_millis(100));
        clock.advance(Duration::from_millis(99));
        assert!(l.admit(&T, &lim, 0, 0).is_err());
        clock.advance(Duration::from_millis(1));
        assert!(l.admit(&T, &lim, 0, 0).is_ok());
        // A second later the bucket is full again: five more.
        clock.advance(Duration::from_secs(1));
        for _ in 0..5 {
            assert!(l.admit(&T, &lim, 0, 0).is_ok());
        }
        assert!(l.admit(&T, &lim, 0, 0).is_err());
    }

    #[test]
    fn tokens_are_independent() {
        let (l, _) = limiter();
        let lim = requests(1.0, 1.0);
        assert!(l.admit(&T, &lim, 0, 0).is_ok());
        assert!(l.admit(&T, &lim, 0, 0).is_err());
        assert!(l.admit(&U, &lim, 0, 0).is_ok());
    }

    #[test]
    fn retry_after_counts_the_cost_in_whole_seconds() {
        let (l, _) = limiter();
        let lim = TokenLimits {
            points: Some(Rate::new(100.0, 1000.0)),
            ..TokenLimits::default()
        };
        assert!(l.admit(&T, &lim, 0, 1000).is_ok());
        let e = l.admit(&T, &lim, 0, 250).unwrap_err();
        assert_eq!(e.kind, LimitKind::Points);
        assert_eq!(e.retry_after, Duration::from_millis(2500));
        assert_eq!(e.retry_after_seconds(), 3);
        let zero = Throttled {
            kind: LimitKind::Points,
            retry_after: Duration::ZERO,
        };
        assert_eq!(zero.retry_after_seconds(), 1);
        let exact = Throttled {
            kind: LimitKind::Points,
            retry_after: Duration::from_secs(2),
        };
        assert_eq!(exact.retry_after_seconds(), 2);
    }

    #[test]
    fn refused_admission_charges_nothing() {
        let (l, _) = limiter();
        let lim = TokenLimits {
            requests: Some(Rate::new(1.0, 10.0)),
            decoded_bytes: Some(Rate::new(1000.0, 1000.0)),
            points: None,
        };
        assert!(l.admit(&T, &lim, 2000, 0).is_err(), "over the byte burst");
        // The refused request did not use a request slot: ten still pass.
        for _ in 0..10 {
            assert!(l.admit(&T, &lim, 10, 0).is_ok());
        }
    }

    #[test]
    fn settle_charges_the_real_cost_beyond_the_estimate() {
        let (l, clock) = limiter();
        let lim = TokenLimits {
            decoded_bytes: Some(Rate::new(1000.0, 1000.0)),
            ..TokenLimits::default()
        };
        assert!(l.admit(&T, &lim, 100, 0).is_ok());
        assert!(l.settle(&T, &lim, 800, 0).is_ok());
        let e = l.settle(&T, &lim, 200, 0).unwrap_err();
        assert_eq!(e.kind, LimitKind::DecodedBytes);
        clock.advance(Duration::from_millis(200));
        assert!(l.settle(&T, &lim, 200, 0).is_ok());
    }

    #[test]
    fn unlimited_tokens_keep_no_state_and_idle_state_is_swept() {
        let (l, clock) = limiter();
        assert!(l.admit(&T, &TokenLimits::default(), 10, 10).is_ok());
        assert_eq!(l.tracked(), 0);
        let lim = requests(10.0, 10.0);
        assert!(l.admit(&T, &lim, 0, 0).is_ok());
        assert!(l.admit(&U, &lim, 0, 0).is_ok());
        assert_eq!(l.tracked(), 2);
        l.sweep();
        assert_eq!(l.tracked(), 2, "not idle yet");
        clock.advance(Duration::from_millis(100));
        l.sweep();
        assert_eq!(l.tracked(), 0);
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_burst() {
        let (l, _) = limiter();
        let l = Arc::new(l);
        let lim = requests(1.0, 100.0);
        let allowed = std::sync::atomic::AtomicU32::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..100 {
                        if l.admit(&T, &lim, 0, 0).is_ok() {
                            allowed.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                });
            }
        });
        assert_eq!(allowed.load(Ordering::Relaxed), 100);
    }
}
