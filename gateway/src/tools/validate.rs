//! `oneway validate` and `oneway demo`: a body run through the decoding and validation a push
//! gets, with the verdict and the status the gateway would answer (from
//! [`RequestError::status`], the gateway's own mapping).

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use oneway_protocol::{BodyKind, Category, Decoder, Encoding, Precision, Validator};

use super::EXIT_USAGE;
use crate::response::RequestError;

/// `oneway validate`.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The write category (`metric`, `logging`, `object`, …).
    #[arg(long, default_value = "metric")]
    category: String,
    /// The `Content-Type` the body would be sent with.
    #[arg(long, default_value = "application/line-protocol")]
    content_type: String,
    /// The `Content-Encoding` the body would be sent with.
    #[arg(long)]
    content_encoding: Option<String>,
    /// Timestamp precision for line protocol (`n`, `u`, `ms`, `s`, `m`, `h`).
    #[arg(long, default_value = "n")]
    precision: String,
    /// Largest decoded size accepted, in bytes.
    #[arg(long, default_value_t = 64 << 20)]
    max_decoded_bytes: usize,
    /// The body file.
    file: PathBuf,
}

/// Exit 0 if the body is accepted, 65 if refused, 64 for a bad argument.
pub fn main(args: Args) -> super::Result<ExitCode> {
    let Some(category) = Category::from_path_segment(&args.category) else {
        eprintln!("oneway: unknown category {:?}", args.category);
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let Some(precision) = Precision::parse(&args.precision) else {
        eprintln!("oneway: unknown precision {:?}", args.precision);
        return Ok(ExitCode::from(EXIT_USAGE));
    };
    let body =
        std::fs::read(&args.file).map_err(|e| format!("reading {}: {e}", args.file.display()))?;
    let ok = check(
        &body,
        category,
        Some(args.content_type.as_bytes()),
        args.content_encoding.as_deref().map(str::as_bytes),
        precision,
        args.max_decoded_bytes,
    );
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(65)
    })
}

/// `oneway demo`: a DataKit-shaped batch accepted, and the same with a string field in a
/// metric refused (no network).
pub fn demo() -> super::Result<ExitCode> {
    let lp = String::from_utf8(super::push::line_protocol(1000, 0))?;
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(5));
    gz.write_all(lp.as_bytes())?;
    let body = gz.finish()?;
    println!("oneway demo: the protocol layer on a DataKit-shaped batch (no network)\n");
    println!(
        "POST /v1/write/metric  Content-Type: application/line-protocol  Content-Encoding: gzip"
    );
    let ok = check(
        &body,
        Category::Metric,
        Some(b"application/line-protocol"),
        Some(b"gzip"),
        Precision::Nanoseconds,
        64 << 20,
    );
    println!("\nthe same batch with a string field, which metric points may not have:");
    let bad = lp.replacen("usage_idle=0.5", "usage_idle=\"idle\"", 1);
    let rejected = !check(
        bad.as_bytes(),
        Category::Metric,
        Some(b"application/line-protocol"),
        None,
        Precision::Nanoseconds,
        64 << 20,
    );
    Ok(if ok && rejected {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Prints `rejected (<status>): <why>` with the status the gateway would answer.
fn rejected(e: impl Into<RequestError> + std::fmt::Display) -> bool {
    let why = e.to_string();
    println!("rejected ({}): {why}", e.into().status().as_u16());
    false
}

/// Decodes and validates; prints the verdict. Returns whether the batch is accepted.
fn check(
    body: &[u8],
    category: Category,
    content_type: Option<&[u8]>,
    content_encoding: Option<&[u8]>,
    precision: Precision,
    limit: usize,
) -> bool {
    let kind = match BodyKind::from_content_type(content_type) {
        Ok(kind) => kind,
        Err(e) => return rejected(e),
    };
    let encoding = match Encoding::from_header(content_encoding) {
        Ok(e) => e,
        Err(e) => return rejected(e),
    };
    let mut out = Vec::new();
    let decoded = match Decoder::new().decode(encoding, body, &mut out, limit) {
        Ok(d) => d,
        Err(e) => return rejected(e),
    };
    match Validator::default().validate(kind, category, precision, decoded) {
        Ok(v) => {
            println!(
                "accepted: {} points, {} bytes {} → {} bytes {}",
                v.points,
                body.len(),
                encoding,
                decoded.len(),
                kind.as_str()
            );
            for (rule, n) in v.counted.iter() {
                println!("  counted: {n} points broke {} ({rule})", rule.as_str());
            }
            true
        }
        Err(r) => rejected(r),
    }
}
