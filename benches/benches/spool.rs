//! Spool appends on the real disk (under the target directory, never a tmpfs), in one group:
//!
//! - `oneway_group_commit`: 16 concurrent writers append through the spool; each append is
//!   acknowledged only after its `fdatasync`, and the writer thread shares one sync among
//!   everything queued (group commit);
//! - `fdatasync_per_record`: the naive durable spool: `write` + `fdatasync` per record;
//! - `write_then_one_sync`: the disk's sequential write speed: the same bytes written in one
//!   stream with a single `fdatasync` at the end (no per-record durability);
//! - `write_no_sync`: the same bytes into the page cache only (not durable at all).
//!
//! Target (issue 5): with 16 concurrent writers, spooled throughput ≥ 50 % of the unsynced
//! sequential write speed of the same disk.

use std::io::Write;
use std::sync::Arc;

use bytes::Bytes;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use oneway_gateway::spool::record::Payload;
use oneway_gateway::spool::{Spool, SpoolConfig, SpoolMode};

const WRITERS: usize = 16;
const PER_WRITER: usize = 8;
const RECORD: usize = 16 << 10;
const RECORDS: usize = WRITERS * PER_WRITER;

fn payload(body: &Bytes) -> Payload {
    Payload::new(
        oneway_gateway::spool::unix_ms(),
        "/v1/write/metric?token=tkn_bench000000000000000000000000000&precision=ns",
        [
            (
                "content-type",
                &b"application/protobuf; proto=com.guance.Point"[..],
            ),
            ("content-encoding", &b"gzip"[..]),
            ("x-points", &b"100"[..]),
        ],
        body.clone(),
    )
    .expect("fits")
}

fn bench(c: &mut Criterion) {
    let root = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("tempdir on the disk");
    let body = Bytes::from(vec![0x5au8; RECORD]);
    let frame_len = payload(&body).frame_len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let spool = runtime.block_on(async {
        Spool::open(
            SpoolConfig {
                directory: root.path().join("spool"),
                mode: SpoolMode::SpoolFirst,
                max_bytes: u64::MAX,
                max_age: None,
                segment_bytes: 64 << 20,
                replay_share: 1.0,
                retry_max_backoff: std::time::Duration::from_secs(1),
            },
            Arc::new(oneway_gateway::audit::Audit::off()),
        )
        .expect("spool")
    });
    spool.start_writer();

    let mut group = c.benchmark_group("spool_append_16KiB_x128");
    group.throughput(Throughput::Bytes((RECORDS * frame_len) as u64));
    group.sample_size(20);
    group.bench_function("oneway_group_commit", |b| {
        b.iter(|| {
            runtime.block_on(async {
                let tasks: Vec<_> = (0..WRITERS)
                    .map(|_| {
                        let (spool, body) = (Arc::clone(&spool), body.clone());
                        tokio::spawn(async move {
                            let mut last = 0;
                            for _ in 0..PER_WRITER {
                                last = spool.append(payload(&body)).await.expect("append");
                            }
                            last
                        })
                    })
                    .collect();
                let mut last = 0;
                for t in tasks {
                    last = last.max(t.await.expect("writer"));
                }
                // Keep the disk bounded: pretend it was delivered, so segments get unlinked.
                spool.mark_delivered(last);
            })
        })
    });

    let framed: Vec<u8> = {
        let mut out = Vec::with_capacity(frame_len);
        payload(&body).frame_into(1, &mut out);
        out
    };
    let path = root.path().join("plain.log");
    let mut file = std::fs::File::create(&path).expect("create");
    let rotate = |file: &mut std::fs::File| {
        if file.metadata().map(|m| m.len()).unwrap_or(0) > 256 << 20 {
            file.set_len(0).expect("truncate");
            *file = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .expect("reopen");
        }
    };
    group.bench_function("fdatasync_per_record", |b| {
        b.iter(|| {
            for _ in 0..RECORDS {
                file.write_all(&framed).expect("write");
                file.sync_data().expect("fdatasync");
            }
            rotate(&mut file);
        })
    });
    group.bench_function("write_then_one_sync", |b| {
        b.iter(|| {
            for _ in 0..RECORDS {
                file.write_all(&framed).expect("write");
            }
            file.sync_data().expect("fdatasync");
            rotate(&mut file);
        })
    });
    group.bench_function("write_no_sync", |b| {
        b.iter(|| {
            for _ in 0..RECORDS {
                file.write_all(&framed).expect("write");
            }
            rotate(&mut file);
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
