//! The per-token limiter's check against `governor`'s keyed limiter, in the same groups:
//! one key, many keys (10,000 tokens), and contended (every core checking the same key).
//!
//! Target (issue 4): a check costs < 100 ns; the gateway's cost per batch is about a
//! millisecond (validation of 1 MiB), so the limiter adds < 0.01 %.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use governor::{Quota, RateLimiter};
use oneway_gateway::limit::{Limiter, MonotonicClock, Rate, TokenLimits};

const KEYS: usize = 10_000;

fn key(i: usize) -> [u8; 32] {
    let mut k = [0u8; 32];
    k[..8].copy_from_slice(&(i as u64).to_le_bytes());
    k
}

fn limits() -> TokenLimits {
    // High enough that every check passes: we measure the check, not refusals.
    TokenLimits {
        requests: Some(Rate::new(1e12, 1e12)),
        ..TokenLimits::default()
    }
}

fn governor_quota() -> Quota {
    Quota::per_second(NonZeroU32::MAX).allow_burst(NonZeroU32::MAX)
}

fn bench(c: &mut Criterion) {
    let ours = Limiter::new(Arc::new(MonotonicClock::default()));
    let theirs = RateLimiter::keyed(governor_quota());
    let lim = limits();
    let keys: Vec<[u8; 32]> = (0..KEYS).map(key).collect();

    let mut group = c.benchmark_group("limiter/one_key");
    group.throughput(Throughput::Elements(1));
    group.bench_function("oneway", |b| {
        b.iter(|| ours.admit(black_box(&keys[0]), &lim, 0, 0).is_ok())
    });
    group.bench_function("governor", |b| {
        b.iter(|| theirs.check_key(black_box(&keys[0])).is_ok())
    });
    group.finish();

    let mut group = c.benchmark_group("limiter/many_keys");
    group.throughput(Throughput::Elements(1));
    let mut i = 0;
    group.bench_function("oneway", |b| {
        b.iter(|| {
            i = (i + 7919) % KEYS;
            ours.admit(black_box(&keys[i]), &lim, 0, 0).is_ok()
        })
    });
    let mut j = 0;
    group.bench_function("governor", |b| {
        b.iter(|| {
            j = (j + 7919) % KEYS;
            theirs.check_key(black_box(&keys[j])).is_ok()
        })
    });
    group.finish();

    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let mut group = c.benchmark_group("limiter/contended");
    group.throughput(Throughput::Elements(threads as u64));
    group.bench_function("oneway", |b| {
        b.iter_custom(|iters| {
            contended(threads, iters, || ours.admit(&keys[1], &lim, 0, 0).is_ok())
        })
    });
    group.bench_function("governor", |b| {
        b.iter_custom(|iters| contended(threads, iters, || theirs.check_key(&keys[1]).is_ok()))
    });
    group.finish();
}

/// Time for `iters` checks on each of `threads` threads at once.
fn contended(threads: usize, iters: u64, check: impl Fn() -> bool + Sync) -> Duration {
    let start = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                for _ in 0..iters {
                    black_box(check());
                }
            });
        }
    });
    start.elapsed()
}

criterion_group!(benches, bench);
criterion_main!(benches);
