//! Corpora for the criterion benchmarks: the same DataKit-shaped points the protocol tests
//! use (`protocol/tests/support/model.rs`, included by path), encoded once per run.

#[path = "../../protocol/tests/support/model.rs"]
pub mod model;

/// Size of one batch: DataKit's `max_raw_body_size` (1 MiB before gzip).
pub const BATCH_BYTES: usize = 1 << 20;

/// The line-protocol corpora by name: `long` (TSBS cpu-only), `short`, `escapes`.
pub fn lp_corpora() -> Vec<(&'static str, Vec<model::Point>)> {
    vec![
        ("long", model::corpus(model::tsbs_cpu, BATCH_BYTES)),
        ("short", model::corpus(model::short, BATCH_BYTES)),
        ("escapes", model::corpus(model::escapes, BATCH_BYTES)),
    ]
}

/// One criterion group per corpus, `<prefix>/<corpus>`, with two functions on the same body:
/// `oneway` (the validator for `kind`) and the peer (`peer_name`, `peer` returning the number
/// of points it parsed). Both must see every point.
pub fn validator_vs_peer<B: AsRef<[u8]>>(
    c: &mut criterion::Criterion,
    prefix: &str,
    kind: oneway_protocol::BodyKind,
    encode: fn(&[model::Point]) -> B,
    peer_name: &str,
    peer: fn(&B) -> usize,
) {
    use oneway_protocol::{Category, Precision, Validator};
    use std::hint::black_box;
    for (name, points) in lp_corpora() {
        let body = encode(&points);
        let mut group = c.benchmark_group(format!("{prefix}/{name}"));
        group.throughput(criterion::Throughput::Bytes(body.as_ref().len() as u64));
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
                        kind,
                        category,
                        Precision::Nanoseconds,
                        black_box(body.as_ref()),
                    )
                    .expect("valid corpus");
                assert_eq!(verdict.points, points.len() as u64);
            })
        });
        group.bench_function(peer_name, |b| {
            b.iter(|| assert_eq!(peer(black_box(&body)), points.len()))
        });
        group.finish();
    }
}
