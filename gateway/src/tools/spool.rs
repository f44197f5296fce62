//! `oneway spool`: what an operator does with a spool directory, its dead letters and its
//! quarantined segments (docs/spool.md). Everything here only reads the spool; `replay`
//! sends records to the configured upstream and nowhere else.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::spool::log::{DEAD_DIR, DELIVERED, QUARANTINE_DIR, parse_segment_name};
use crate::spool::record::{self, Record};
use crate::spool::{ReplayOutcome, send_record};
use crate::upstream::Upstream;

/// `oneway spool`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Summarise a spool directory, or list the records of one segment file (tokens redacted).
    Inspect {
        /// A spool directory, or a segment file (`*.seg`, also in `dead/` or `quarantine/`).
        path: PathBuf,
    },
    /// Write each valid record of a segment file as `<seq>.body` and `<seq>.json`.
    Export {
        /// The segment file.
        file: PathBuf,
        /// The output directory.
        #[arg(long)]
        out: PathBuf,
    },
    /// Send each valid record of a segment file to the config's upstream, in order
    /// (exit 0 only if every record was accepted).
    Replay {
        /// The segment file (a dead-letter or quarantined segment).
        file: PathBuf,
        /// The gateway's config (its `[upstream]` is used).
        #[arg(long)]
        config: PathBuf,
    },
}

/// Runs the action.
pub fn main(args: Args) -> super::Result<std::process::ExitCode> {
    use std::process::ExitCode;
    fn at(p: &Path) -> impl Fn(std::io::Error) -> String + '_ {
        move |e| format!("{}: {e}", p.display())
    }
    match args.action {
        Action::Inspect { path } => {
            print!("{}", inspect(&path).map_err(at(&path))?);
            Ok(ExitCode::SUCCESS)
        }
        Action::Export { file, out } => {
            let n = export(&file, &out).map_err(at(&file))?;
            println!("exported {n} records to {}", out.display());
            Ok(ExitCode::SUCCESS)
        }
        Action::Replay { file, config } => {
            let config = match crate::config::Config::load(&config) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("oneway: {e}");
                    return Ok(ExitCode::from(super::EXIT_USAGE));
                }
            };
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let report = runtime.block_on(async {
                let upstream = Upstream::new(&config.upstream)?;
                Ok::<_, super::Error>(replay(&file, &upstream).await?)
            })?;
            println!(
                "replayed {}: {} delivered, {} refused by the upstream, {} failed",
                file.display(),
                report.delivered,
                report.refused,
                report.failed
            );
            Ok(if report.refused + report.failed == 0 {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
    }
}

/// `token=…` in a path and query, with the value replaced.
pub fn redact(path: &str) -> String {
    let Some((p, query)) = path.split_once('?') else {
        return path.to_string();
    };
    let query: Vec<String> = query
        .split('&')
        .map(|kv| {
            if kv.starts_with("token=") {
                "token=REDACTED".to_string()
            } else {
                kv.to_string()
            }
        })
        .collect();
    format!("{p}?{}", query.join("&"))
}

/// The valid records of a segment file (skipping corrupt regions) and how many regions were
/// skipped.
pub fn read_records(file: &Path) -> std::io::Result<(Vec<(Bytes, Record)>, usize)> {
    let bytes = std::fs::read(file)?;
    let (frames, skipped) = record::salvage(&bytes);
    let records = frames
        .into_iter()
        .filter_map(|f| record::decode_frame(&f).ok().map(|r| (f, r)))
        .collect();
    Ok((records, skipped))
}

fn segment_line(out: &mut String, path: &Path) {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    match std::fs::read(path) {
        Err(e) => {
            let _ = writeln!(out, "  {}: unreadable: {e}", path.display());
        }
        Ok(bytes) => {
            let size = bytes.len();
            match record::scan_segment(&bytes) {
                Ok(scan) => {
                    let range = match (scan.records.first(), scan.records.last()) {
                        (Some(a), Some(b)) => format!("seq {}..={}", a.0, b.0),
                        _ => "no records".into(),
                    };
                    let problem = match scan.problem {
                        None => String::new(),
                        Some(p) => format!(
                            "; {p} at byte {}{}",
                            scan.valid_len,
                            if scan.valid_after_problem {
                                " (valid records follow: corruption)"
                            } else {
                                " (torn tail)"
                            }
                        ),
                    };
                    let _ = writeln!(
                        out,
                        "  {}: {} records, {range}, {size} bytes{problem}",
                        name.unwrap_or_default(),
                        scan.records.len()
                    );
                }
                Err(e) => {
                    let _ = writeln!(out, "  {}: {e}, {size} bytes", name.unwrap_or_default());
                }
            }
        }
    }
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| parse_segment_name(n).is_some())
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// A report on a spool directory or one segment file.
pub fn inspect(path: &Path) -> std::io::Result<String> {
    let mut out = String::new();
    if path.is_dir() {
        let delivered = std::fs::read(path.join(DELIVERED))
            .ok()
            .and_then(|b| crate::spool::log::decode_delivered(&b));
        let _ = writeln!(out, "spool {}", path.display());
        let _ = writeln!(
            out,
            "delivered up to: {}",
            delivered.map_or("unknown (absent or unreadable)".into(), |d| d.to_string())
        );
        for (title, dir) in [
            ("segments", path.to_path_buf()),
            (
                "dead letters (the upstream refused these)",
                path.join(DEAD_DIR),
            ),
            (
                "quarantined (a bad record was found in these)",
                path.join(QUARANTINE_DIR),
            ),
        ] {
            let list = files(&dir);
            let _ = writeln!(out, "{title}: {}", list.len());
            for f in list {
                segment_line(&mut out, &f);
            }
        }
        return Ok(out);
    }
    let (records, skipped) = read_records(path)?;
    let _ = writeln!(
        out,
        "{}: {} valid records{}",
        path.display(),
        records.len(),
        if skipped > 0 {
            format!(", {skipped} corrupt region(s) skipped")
        } else {
            String::new()
        }
    );
    for (_, r) in &records {
        let points = r
            .headers
            .iter()
            .find(|(n, _)| n == "x-points")
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_else(|| "?".into());
        let _ = writeln!(
            out,
            "  seq {} appended {} POST {} points {points} body {} bytes",
            r.seq,
            format_ms(r.appended_unix_ms),
            redact(&r.path),
            r.body.len()
        );
    }
    Ok(out)
}

fn format_ms(ms: u64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{ms} ms"))
}

/// Writes each valid record of `file` as `<seq>.body` (the original bytes) and `<seq>.json`
/// (path with the token redacted, headers, append time) into `out`; returns the count.
pub fn export(file: &Path, out: &Path) -> std::io::Result<usize> {
    std::fs::create_dir_all(out)?;
    let (records, _) = read_records(file)?;
    for (_, r) in &records {
        std::fs::write(out.join(format!("{:020}.body", r.seq)), &r.body)?;
        let headers: serde_json::Map<String, serde_json::Value> = r
            .headers
            .iter()
            .map(|(n, v)| (n.clone(), String::from_utf8_lossy(v).into_owned().into()))
            .collect();
        let meta = serde_json::json!({
            "seq": r.seq,
            "appended": format_ms(r.appended_unix_ms),
            "method": "POST",
            "path": redact(&r.path),
            "headers": headers,
            "body_bytes": r.body.len(),
        });
        std::fs::write(
            out.join(format!("{:020}.json", r.seq)),
            serde_json::to_vec_pretty(&meta).unwrap_or_default(),
        )?;
    }
    Ok(records.len())
}

/// What `replay` did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Records the upstream accepted.
    pub delivered: usize,
    /// Records the upstream refused for good.
    pub refused: usize,
    /// Records that could not be delivered (upstream down or failing after retries).
    pub failed: usize,
}

/// Sends every valid record of `file` to `upstream`, in order, retrying a failing upstream a
/// few times per record.
pub async fn replay(file: &Path, upstream: &Upstream) -> std::io::Result<ReplayReport> {
    let (records, _) = read_records(file)?;
    let mut report = ReplayReport::default();
    for (_, r) in &records {
        let mut outcome = ReplayOutcome::Retry;
        for attempt in 0..4u32 {
            if attempt > 0 {
                tokio::time::sleep(std::time::Duration::from_millis(250 << attempt)).await;
            }
            outcome = send_record(upstream, r).await;
            if outcome != ReplayOutcome::Retry {
                break;
            }
        }
        match outcome {
            ReplayOutcome::Delivered => report.delivered += 1,
            ReplayOutcome::Refused(_) => report.refused += 1,
            ReplayOutcome::Retry => report.failed += 1,
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spool::log::{Log, segment_name};
    use crate::spool::record::Payload;
    use crate::spool::storage::FsStorage;

    #[test]
    fn redact_hides_only_the_token() {
        assert_eq!(
            redact("/v1/write/metric?token=tkn_secret00000000000000000000000000&precision=s"),
            "/v1/write/metric?token=REDACTED&precision=s"
        );
        assert_eq!(redact("/v1/write/metric"), "/v1/write/metric");
    }

    #[test]
    fn inspect_and_export_show_records_without_tokens() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = FsStorage::new(dir.path()).expect("dir");
        let (mut log, _) = Log::open(storage, 1 << 20).expect("open");
        for i in 0..3u8 {
            let p = Payload::new(
                1_700_000_000_000,
                "/v1/write/logging?token=tkn_secret00000000000000000000000000",
                [("x-points", &b"2"[..])],
                Bytes::from(vec![b'a' + i; 10]),
            )
            .expect("fits");
            log.append(&[&p]).expect("append");
        }
        let report = inspect(dir.path()).expect("inspect dir");
        assert!(report.contains("3 records, seq 1..=3"), "{report}");
        assert!(report.contains("delivered up to: 0"), "{report}");
        let segment = dir.path().join(segment_name(1));
        let report = inspect(&segment).expect("inspect file");
        assert!(report.contains("3 valid records"), "{report}");
        assert!(report.contains("token=REDACTED"), "{report}");
        assert!(
            !report.contains("tkn_secret00000000000000000000000000"),
            "{report}"
        );
        let out = dir.path().join("export");
        assert_eq!(export(&segment, &out).expect("export"), 3);
        let body = std::fs::read(out.join(format!("{:020}.body", 2))).expect("body");
        assert_eq!(body, vec![b'b'; 10]);
        let meta = std::fs::read_to_string(out.join(format!("{:020}.json", 2))).expect("meta");
        assert!(
            meta.contains("token=REDACTED")
                && !meta.contains("tkn_secret00000000000000000000000000")
        );
    }
}
