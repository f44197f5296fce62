//! `oneway audit verify FILE…`: checks an audit trail's chain (see [`crate::audit`]) across
//! the files given oldest first (rotated files, then the current one) and reports the first
//! line that was edited, deleted, inserted, reordered or cut, with its file and line number;
//! `--head` (a `chain` taken from elsewhere: the audit workspace, a `stop` line kept apart)
//! also catches lines cut from the end.

use std::path::PathBuf;
use std::process::ExitCode;

use crate::audit::{chained, unchain};

/// `oneway audit`.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    action: Action,
}

#[derive(Debug, clap::Subcommand)]
enum Action {
    /// Verify the chain of the audit files, oldest first; exit 0 if it holds, 1 if not.
    Verify {
        /// The files, oldest first (`audit.jsonl.2 audit.jsonl.1 audit.jsonl`).
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// The chain head the trail must reach (hex): lines cut from its end are then found.
        #[arg(long)]
        head: Option<String>,
    },
}

/// Where the trail breaks, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Break {
    /// The file.
    pub file: PathBuf,
    /// Its line, from 1 (0: after its last line).
    pub line: usize,
    /// What is wrong there.
    pub what: String,
}

impl std::fmt::Display for Break {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.line == 0 {
            write!(
                f,
                "{}: after the last line: {}",
                self.file.display(),
                self.what
            )
        } else {
            write!(f, "{}:{}: {}", self.file.display(), self.line, self.what)
        }
    }
}

/// What a trail that holds comes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Lines checked.
    pub lines: u64,
    /// The first line's `seq` (1 unless older files were not given).
    pub first_seq: u64,
    /// The last line's `seq`.
    pub last_seq: u64,
    /// The last line's `chain`, hex.
    pub head: String,
}

/// Verifies `files` (oldest first) and, if given, that the trail ends at `head`.
pub fn verify(files: &[PathBuf], head: Option<&str>) -> Result<Verified, Break> {
    let mut state: Option<(u64, [u8; 32])> = None;
    let mut out = Verified {
        lines: 0,
        first_seq: 0,
        last_seq: 0,
        head: String::new(),
    };
    for file in files {
        let at = |line: usize, what: String| Break {
            file: file.clone(),
            line,
            what,
        };
        let text = std::fs::read(file).map_err(|e| at(0, format!("cannot read it: {e}")))?;
        let text = String::from_utf8(text).map_err(|_| at(0, "not UTF-8 text".into()))?;
        let lines: Vec<&str> = text.split_inclusive('\n').collect();
        for (i, raw) in lines.iter().enumerate() {
            let n = i + 1;
            let Some(line) = raw.strip_suffix('\n') else {
                return Err(at(n, "cut in the middle of a line (truncated)".into()));
            };
            let Some((covered, chain)) = unchain(line) else {
                return Err(at(
                    n,
                    "not an audit line with a chain (edited or inserted)".into(),
                ));
            };
            let seq = serde_json::from_str::<serde_json::Value>(&covered)
                .ok()
                .and_then(|v| v.get("seq")?.as_u64())
                .ok_or_else(|| {
                    at(
                        n,
                        "not an audit line with a seq (edited or inserted)".into(),
                    )
                })?;
            match state {
                // The first line: a trail's start (seq 1 from zeros), or where the files given
                // begin (its own chain is taken as it is).
                None if seq == 1 && chained(&[0; 32], &covered).1 != chain => {
                    return Err(at(
                        n,
                        "edited: its chain does not follow from its text".into(),
                    ));
                }
                None => out.first_seq = seq,
                Some((last, _)) if seq == last + 1 => {}
                Some((last, _)) if seq > last + 1 => {
                    return Err(at(
                        n,
                        format!(
                            "seq {seq} follows {last}: {} line(s) deleted or moved before it (or a rotated file left out)",
                            seq - last - 1
                        ),
                    ));
                }
                Some((last, _)) => {
                    return Err(at(
                        n,
                        format!("seq {seq} follows {last}: reordered, repeated or inserted"),
                    ));
                }
            }
            if let Some((_, prev)) = state
                && chained(&prev, &covered).1 != chain
            {
                return Err(at(
                    n,
                    "edited: its chain does not follow from the line before and its text".into(),
                ));
            }
            state = Some((seq, chain));
            out.lines += 1;
            out.last_seq = seq;
        }
    }
    let Some((_, last)) = state else {
        let file = files.last().cloned().unwrap_or_default();
        return Err(Break {
            file,
            line: 0,
            what: "no audit line at all".into(),
        });
    };
    out.head = hex::encode(last);
    if let Some(want) = head
        && !want.eq_ignore_ascii_case(&out.head)
    {
        return Err(Break {
            file: files.last().cloned().unwrap_or_default(),
            line: 0,
            what: format!(
                "the trail ends at seq {} without reaching the head {want}: lines cut from its end",
                out.last_seq
            ),
        });
    }
    Ok(out)
}

/// Runs the action: prints what holds, or the first break (exit 1).
pub fn main(args: Args) -> super::Result<ExitCode> {
    let Action::Verify { files, head } = args.action;
    match verify(&files, head.as_deref()) {
        Ok(v) => {
            println!(
                "the audit trail holds: {} lines, seq {} to {}, head {}",
                v.lines, v.first_seq, v.last_seq, v.head
            );
            Ok(ExitCode::SUCCESS)
        }
        Err(b) => {
            println!("the audit trail is broken: {b}");
            Ok(ExitCode::from(1))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::audit::Audit;
    use crate::config::{AuditConfig, AuditOutput};

    /// A trail of `n` events in `path`, written by `Audit` in two runs (a restart continues
    /// the chain).
    fn trail(path: &Path, n: usize) -> Vec<String> {
        let config = AuditConfig {
            output: AuditOutput::File(path.to_path_buf()),
            ..AuditConfig::default()
        };
        for run in 0..2 {
            let audit = Audit::open(&config).expect("open");
            for i in 0..n / 2 {
                audit.emit("reload", serde_json::json!({"run": run, "i": i}));
            }
        }
        std::fs::read_to_string(path)
            .expect("read")
            .lines()
            .map(str::to_string)
            .collect()
    }

    fn write(path: &Path, lines: &[String]) -> PathBuf {
        std::fs::write(
            path,
            lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
        )
        .expect("write");
        path.to_path_buf()
    }

    fn broken_at(files: &[PathBuf], head: Option<&str>) -> (PathBuf, usize, String) {
        let b = verify(files, head).expect_err("must be broken");
        (b.file, b.line, b.what)
    }

    #[test]
    fn an_untouched_trail_holds_across_a_restart_and_rotated_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines = trail(&dir.path().join("audit.jsonl"), 10);
        assert_eq!(lines.len(), 10);
        let all = write(&dir.path().join("all"), &lines);
        let v = verify(std::slice::from_ref(&all), None).expect("holds");
        assert_eq!((v.lines, v.first_seq, v.last_seq), (10, 1, 10));
        let head = v.head.clone();
        assert!(lines[9].ends_with(&format!("\"chain\":\"{head}\"}}")));
        assert!(verify(std::slice::from_ref(&all), Some(&head)).is_ok());
        // Rotated (copytruncate): the older part, then the current one.
        let old = write(&dir.path().join("audit.jsonl.1"), &lines[..4]);
        let new = write(&dir.path().join("audit.jsonl.0"), &lines[4..]);
        assert_eq!(
            verify(&[old.clone(), new.clone()], Some(&head)).map(|v| v.lines),
            Ok(10)
        );
        // The current file alone: checked from where it starts.
        assert_eq!(
            verify(std::slice::from_ref(&new), None).map(|v| v.first_seq),
            Ok(5)
        );
    }

    #[test]
    fn a_copytruncate_rotation_starts_the_new_file_with_the_head_it_follows() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("audit.jsonl");
        let audit = Audit::open(&AuditConfig {
            output: AuditOutput::File(path.clone()),
            ..AuditConfig::default()
        })
        .expect("open");
        for i in 0..3 {
            audit.emit("reload", serde_json::json!({ "i": i }));
        }
        // What logrotate's copytruncate does, while the process keeps its file open.
        let rotated = dir.path().join("audit.jsonl.1");
        std::fs::copy(&path, &rotated).expect("copy");
        std::fs::File::create(&path).expect("truncate");
        let before = verify(std::slice::from_ref(&rotated), None).expect("holds");
        audit.emit("reload", serde_json::json!({ "i": 3 }));
        audit.emit("stop", serde_json::json!({}));

        let text = std::fs::read_to_string(&path).expect("read");
        let first: serde_json::Value =
            serde_json::from_str(text.lines().next().expect("a line")).expect("json");
        assert_eq!(first["event"], "rotate");
        assert_eq!(first["seq"], 4);
        assert_eq!(first["previous_seq"], 3);
        assert_eq!(first["previous_chain"], before.head.as_str());
        assert_eq!(
            text.lines().count(),
            3,
            "rotate, reload, stop: one rotate line"
        );
        let v = verify(&[rotated, path.clone()], None).expect("the chain runs on across files");
        assert_eq!((v.first_seq, v.last_seq), (1, 6));
        // A truncation that keeps nothing is found too: the new file alone starts at seq 4.
        assert_eq!(verify(&[path], None).map(|v| v.first_seq), Ok(4));
    }

    #[test]
    fn each_kind_of_tampering_is_found_at_its_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let lines = trail(&dir.path().join("audit.jsonl"), 10);
        let file = |name: &str, lines: &[String]| write(&dir.path().join(name), lines);

        // Edited: a field's value changed in line 3.
        let mut edited = lines.clone();
        edited[2] = edited[2].replacen("\"reload\"", "\"reloaded\"", 1);
        let (_, line, what) = broken_at(&[file("edited", &edited)], None);
        assert_eq!(line, 3, "{what}");
        assert!(what.contains("edited"), "{what}");
        // The first line edited too.
        let mut first = lines.clone();
        first[0] = first[0].replacen("\"i\":0", "\"i\":9", 1);
        assert_eq!(broken_at(&[file("first", &first)], None).1, 1);

        // Deleted: line 3 gone; found where the gap shows.
        let mut deleted = lines.clone();
        deleted.remove(2);
        let (_, line, what) = broken_at(&[file("deleted", &deleted)], None);
        assert_eq!(line, 3, "{what}");
        assert!(what.contains("deleted"), "{what}");

        // Inserted: line 2 again after line 4; a forged line with the right seq.
        let mut copied = lines.clone();
        copied.insert(4, lines[1].clone());
        let (_, line, what) = broken_at(&[file("copied", &copied)], None);
        assert_eq!(line, 5, "{what}");
        assert!(what.contains("inserted"), "{what}");
        let mut forged = lines.clone();
        forged.insert(
            3,
            format!(
                "{{\"event\":\"stop\",\"seq\":4,\"chain\":\"{}\"}}",
                "0".repeat(64)
            ),
        );
        assert_eq!(broken_at(&[file("forged", &forged)], None).1, 4);
        let mut plain = lines.clone();
        plain.insert(3, "{\"event\":\"stop\"}".into());
        assert_eq!(broken_at(&[file("plain", &plain)], None).1, 4);

        // Reordered: lines 6 and 7 swapped.
        let mut reordered = lines.clone();
        reordered.swap(5, 6);
        let (_, line, what) = broken_at(&[file("reordered", &reordered)], None);
        assert_eq!(line, 6, "{what}");

        // Truncated: cut inside the last line; cut after line 8, seen against the head.
        let whole = file("whole", &lines);
        let head = verify(std::slice::from_ref(&whole), None)
            .expect("holds")
            .head;
        let mut text = std::fs::read_to_string(&whole).expect("read");
        text.truncate(text.len() - 20);
        std::fs::write(dir.path().join("cut"), &text).expect("write");
        let (_, line, what) = broken_at(&[dir.path().join("cut")], None);
        assert_eq!(line, 10, "{what}");
        assert!(what.contains("truncated"), "{what}");
        let short = file("short", &lines[..8]);
        assert!(verify(std::slice::from_ref(&short), None).is_ok());
        let (_, line, what) = broken_at(&[short], Some(&head));
        assert_eq!(line, 0, "{what}");
        assert!(what.contains("ends at seq 8"), "{what}");

        // Rotated files given in the wrong order (or swapped): found at the second's first line.
        let old = file("audit.jsonl.1", &lines[..5]);
        let new = file("audit.jsonl.0", &lines[5..]);
        let (at, line, what) = broken_at(&[new, old.clone()], None);
        assert_eq!((at, line), (old, 1), "{what}");
    }
}
