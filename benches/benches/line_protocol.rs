//! Line protocol: oneway's validator against IOx's `influxdb-line-protocol::parse_lines`
//! (consuming every line), on 1 MiB batches of each corpus, in one group per corpus.
//!
//! Targets (issue 2): ≥ 1 GB/s on `lp/long`, ≥ 6× `iox` on every corpus.

use criterion::{Criterion, criterion_group, criterion_main};
use oneway_benches::{model, validator_vs_peer};
use oneway_protocol::BodyKind;

#[expect(
    clippy::ptr_arg,
    reason = "the helper hands each peer a reference to its own body type"
)]
fn iox(body: &String) -> usize {
    let mut n = 0;
    for line in influxdb_line_protocol::parse_lines(body) {
        std::hint::black_box(line.expect("valid corpus"));
        n += 1;
    }
    n
}

fn bench(c: &mut Criterion) {
    validator_vs_peer(c, "lp", BodyKind::LineProtocol, model::batch_lp, "iox", iox);
}

criterion_group!(benches, bench);
criterion_main!(benches);
