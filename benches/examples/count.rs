//! Runs one implementation over one corpus a fixed number of times, for instruction counts
//! that do not depend on the machine's load:
//!
//! ```sh
//! cargo build --release -p oneway-benches --example count
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/count lp long oneway 10
//! ```
//!
//! Arguments: `lp|pb|gz|gz10`, a corpus (`long`, `short`, `escapes`), an implementation (`oneway`,
//! or the peer: `iox` for lp, `prost` for pb, `zlib-rs` for gz: the corpus's line protocol
//! gzipped as DataKit does, level 5; gz10 its first 10 points), and the iteration count. For
//! gz it prints bytes, not points.

use std::process::ExitCode;

use oneway_benches::{lp_corpora, model};
use oneway_protocol::{BodyKind, Category, Precision, Validator};
use prost::Message;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [format, corpus, implementation, iterations] = &args[..] else {
        eprintln!("usage: count lp|pb long|short|escapes oneway|iox|prost ITERATIONS");
        return ExitCode::from(64);
    };
    let Ok(iterations) = iterations.parse::<u32>() else {
        eprintln!("count: ITERATIONS must be a number");
        return ExitCode::from(64);
    };
    let Some((_, points)) = lp_corpora().into_iter().find(|(name, _)| name == corpus) else {
        eprintln!("count: unknown corpus {corpus}");
        return ExitCode::from(64);
    };
    let category = if corpus == "escapes" {
        Category::Logging
    } else {
        Category::Metric
    };
    let mut v = Validator::default();
    let mut total = 0u64;
    match (format.as_str(), implementation.as_str()) {
        ("lp", "oneway") => {
            let body = model::batch_lp(&points);
            for _ in 0..iterations {
                let r = v.validate(
                    BodyKind::LineProtocol,
                    category,
                    Precision::Nanoseconds,
                    body.as_bytes(),
                );
                total += r.map_or(0, |v| v.points);
            }
        }
        ("lp", "iox") => {
            let body = model::batch_lp(&points);
            for _ in 0..iterations {
                total += influxdb_line_protocol::parse_lines(&body)
                    .filter(Result::is_ok)
                    .count() as u64;
            }
        }
        ("pb", "oneway") => {
            let body = model::batch_pb(&points);
            for _ in 0..iterations {
                let r = v.validate(BodyKind::Protobuf, category, Precision::Nanoseconds, &body);
                total += r.map_or(0, |v| v.points);
            }
        }
        ("pb", "prost") => {
            let body = model::batch_pb(&points);
            for _ in 0..iterations {
                total += model::PbPoints::decode(&body[..]).map_or(0, |m| m.arr.len() as u64);
            }
        }
        ("gz" | "gz10", "oneway") => {
            let gz = gzip(batch_for(format, &points).as_bytes());
            let mut decoder = oneway_protocol::Decoder::new();
            let mut out = Vec::new();
            for _ in 0..iterations {
                let r = decoder.decode(oneway_protocol::Encoding::Gzip, &gz, &mut out, 64 << 20);
                total += r.map_or(0, |d| d.len() as u64);
            }
        }
        ("gz" | "gz10", "zlib-rs") => {
            let gz = gzip(batch_for(format, &points).as_bytes());
            let mut out = Vec::with_capacity(64 << 20);
            for _ in 0..iterations {
                total += raw_gunzip(&gz, &mut out) as u64;
            }
        }
        _ => {
            eprintln!("count: unknown format/implementation {format}/{implementation}");
            return ExitCode::from(64);
        }
    }
    println!("{total} points");
    ExitCode::SUCCESS
}

/// The whole corpus for `gz`, its first 10 points for `gz10` (a small DataKit batch).
fn batch_for(format: &str, points: &[model::Point]) -> String {
    if format == "gz10" {
        model::batch_lp(&points[..10.min(points.len())])
    } else {
        model::batch_lp(points)
    }
}

fn gzip(body: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
    let _ = gz.write_all(body);
    gz.finish().unwrap_or_default()
}

/// zlib-rs inflating the deflate stream of flate2's gzip (a 10-byte header) into `out`.
#[expect(
    clippy::disallowed_types,
    reason = "the raw decompressor is the peer being measured"
)]
fn raw_gunzip(input: &[u8], out: &mut Vec<u8>) -> usize {
    use flate2::{Decompress, FlushDecompress};
    let mut d = Decompress::new(false);
    out.clear();
    let _ = d.decompress_vec(&input[10..], out, FlushDecompress::Finish);
    out.len()
}
