//! Protobuf `PBPoints`: oneway's validator against `prost`'s decode of the same messages, on
//! 1 MiB (line-protocol equivalent) batches, in one group per corpus.
//!
//! Target (issue 2): ≥ 3× prost.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oneway_benches::{lp_corpora, model};
use oneway_protocol::{BodyKind, Category, Precision, Validator};
use prost::Message;
use std::hint::black_box;

fn bench(c: &mut Criterion) {
    for (name, points) in lp_corpora() {
        let body = model::batch_pb(&points);
        let mut group = c.benchmark_group(format!("pb/{name}"));
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
                        BodyKind::Protobuf,
                        category,
                        Precision::Nanoseconds,
                        black_box(&body),
                    )
                    .expect("valid corpus");
                assert_eq!(verdict.points, points.len() as u64);
            })
        });
        group.bench_function("prost", |b| {
            b.iter(|| {
                let decoded = model::PbPoints::decode(black_box(&body[..])).expect("valid corpus");
                assert_eq!(decoded.arr.len(), points.len());
            })
        });
        group.finish();
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
