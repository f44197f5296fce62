//! Runs one implementation over one corpus a fixed number of times, for instruction counts
//! that do not depend on the machine's load:
//!
//! ```sh
//! cargo build --release -p oneway-benches --example count
//! valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/count lp long oneway 10
//! ```
//!
//! Arguments: `lp|pb`, a corpus (`long`, `short`, `escapes`), an implementation (`oneway`, or
//! the peer: `iox` for lp, `prost` for pb), and the iteration count.

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
        _ => {
            eprintln!("count: unknown format/implementation {format}/{implementation}");
            return ExitCode::from(64);
        }
    }
    println!("{total} points");
    ExitCode::SUCCESS
}
