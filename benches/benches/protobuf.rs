//! Protobuf `PBPoints`: oneway's validator against `prost`'s decode of the same messages, on
//! 1 MiB (line-protocol equivalent) batches, in one group per corpus.
//!
//! Target (issue 2): ≥ 3× prost.

use criterion::{Criterion, criterion_group, criterion_main};
use oneway_benches::{model, validator_vs_peer};
use oneway_protocol::BodyKind;
use prost::Message;

#[expect(
    clippy::ptr_arg,
    reason = "the helper hands each peer a reference to its own body type"
)]
fn prost(body: &Vec<u8>) -> usize {
    model::PbPoints::decode(&body[..])
        .expect("valid corpus")
        .arr
        .len()
}

fn bench(c: &mut Criterion) {
    validator_vs_peer(c, "pb", BodyKind::Protobuf, model::batch_pb, "prost", prost);
}

criterion_group!(benches, bench);
criterion_main!(benches);
