//! Decoding: oneway's capped `Decoder` against the raw library call into a reused buffer, on
//! a 1 MiB line-protocol batch compressed as DataKit does (gzip level 5) and with zstd level 3.
//! Throughput is in decoded bytes.
//!
//! gzip has two peers: `flate2`, zlib-rs inflating the member's deflate stream only (no CRC,
//! no ISIZE: less work than oneway does), and `zlib-rs-gzip`, zlib-rs decoding the gzip member
//! with its own header, CRC-32 and ISIZE checks (the same work).
//!
//! Targets: issue 2, ≥ 80 % of the raw library; issue 19, gzip ≥ 1.6× zlib-rs.

use std::io::Write;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oneway_benches::{BATCH_BYTES, lp_corpora, model};
use oneway_protocol::{Decoder, Encoding};
use std::hint::black_box;

#[expect(
    clippy::disallowed_types,
    reason = "the raw decompressor is the peer being measured"
)]
fn raw_gunzip(input: &[u8], out: &mut Vec<u8>) {
    use flate2::{Decompress, FlushDecompress};
    // gzip header of flate2's encoder: 10 bytes, no optional fields.
    let mut d = Decompress::new(false);
    out.clear();
    d.decompress_vec(&input[10..], out, FlushDecompress::Finish)
        .expect("valid gzip");
}

#[expect(
    clippy::disallowed_types,
    reason = "the raw decompressor is the peer being measured"
)]
fn zlib_rs_gzip(input: &[u8], out: &mut Vec<u8>) {
    use flate2::{Decompress, FlushDecompress, Status};
    // zlib-rs's own gzip wrapper: header, CRC-32 and ISIZE checked.
    let mut d = Decompress::new_gzip(15);
    out.clear();
    let status = d
        .decompress_vec(input, out, FlushDecompress::Finish)
        .expect("valid gzip");
    assert_eq!(status, Status::StreamEnd);
}

fn bench(c: &mut Criterion) {
    let (_, points) = lp_corpora().remove(0);
    let body = model::batch_lp(&points).into_bytes();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
    gz.write_all(&body).expect("in memory");
    let gz = gz.finish().expect("in memory");
    let zst = zstd::bulk::compress(&body, 3).expect("in memory");
    let limit = 64 << 20;
    let mut decoder = Decoder::new();

    let mut group = c.benchmark_group("decode/gzip");
    group.throughput(Throughput::Bytes(body.len() as u64));
    let mut out = Vec::with_capacity(2 * BATCH_BYTES);
    group.bench_function("oneway", |b| {
        b.iter(|| {
            let n = decoder
                .decode(Encoding::Gzip, black_box(&gz), &mut out, limit)
                .expect("valid")
                .len();
            assert_eq!(n, body.len());
        })
    });
    let mut raw = Vec::with_capacity(2 * BATCH_BYTES);
    group.bench_function("flate2", |b| {
        b.iter(|| {
            raw_gunzip(black_box(&gz), &mut raw);
            assert_eq!(raw.len(), body.len());
        })
    });
    group.bench_function("zlib-rs-gzip", |b| {
        b.iter(|| {
            zlib_rs_gzip(black_box(&gz), &mut raw);
            assert_eq!(raw.len(), body.len());
        })
    });
    group.finish();

    let mut group = c.benchmark_group("decode/zstd");
    group.throughput(Throughput::Bytes(body.len() as u64));
    group.bench_function("oneway", |b| {
        b.iter(|| {
            let n = decoder
                .decode(Encoding::Zstd, black_box(&zst), &mut out, limit)
                .expect("valid")
                .len();
            assert_eq!(n, body.len());
        })
    });
    let mut dctx = zstd::bulk::Decompressor::new().expect("context");
    group.bench_function("zstd", |b| {
        b.iter(|| {
            raw.clear();
            dctx.decompress_to_buffer(black_box(&zst[..]), &mut raw)
                .expect("valid");
            assert_eq!(raw.len(), body.len());
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
