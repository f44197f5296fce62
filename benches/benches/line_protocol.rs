//! Line protocol: oneway's validator against IOx's `influxdb-line-protocol::parse_lines`
//! (consuming every line), on 1 MiB batches of each corpus, in one group per corpus.
//!
//! Targets (issue 2): ≥ 1 GB/s on `lp/long`, ≥ 6× `iox` on every corpus.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oneway_benches::{lp_corpora, model};
use oneway_protocol::{BodyKind, Category, Precision, Validator};
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    for (name, points) in lp_corpora() {
        let body = model::batch_lp(&points);
        let mut group = c.benchmark_group(format!("lp/{name}"));
        group.throughput(Throughput::Bytes(body.len() as u64));
        let mut v = Validator::default();
        let category = if name == "escapes" {
            Category::Logging
        } else {
            Category::Metric
        };
        group.bench_function("oneway", |b| {
            b.iter(|| {
                let verdict = v
                    .validate(
                        BodyKind::LineProtocol,
                        category,
                        Precision::Nanoseconds,
                        black_box(body.as_bytes()),
                    )
                    .expect("valid corpus");
                assert_eq!(verdict.points, points.len() as u64);
            })
        });
        group.bench_function("iox", |b| {
            b.iter(|| {
                let mut n = 0u64;
                for line in influxdb_line_protocol::parse_lines(black_box(&body)) {
                    black_box(line.expect("valid corpus"));
                    n += 1;
                }
                assert_eq!(n, points.len() as u64);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
