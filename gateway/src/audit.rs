//! The audit trail: security events as JSON lines, one object per line, to stdout or a file
//! (`[audit]`), and optionally pushed as `logging` points into a Guance audit workspace
//! through the normal upstream path (the spool when there is one).
//!
//! Every line has `ts` (RFC 3339, UTC), `event`, and the event's fields. Fields are bounded
//! and never hold a token, a key or payload bytes: identities are certificate names, clients
//! are addresses. High-volume events (authentication failures, refused APIs, rate limiting)
//! are aggregated: one line per kind and identity per interval, with a `count`.
//!
//! Events: `start`, `stop`, `rotate`, `reload`, `auth_failure`, `api_refused`,
//! `rate_limited`, `spool_dead_letter`.
//!
//! **Tamper-evident**: every line written carries `seq` (one more than the line before) and,
//! last, `chain`: the hex SHA-256 of the previous line's chain (32 zero bytes before the
//! first line) followed by the line's own text up to `,"chain"` (closed with `}`). A process
//! appending to an audit file continues the chain of the file's last line; the `start`,
//! `rotate` and `stop` lines' chains are the chain heads (pushed to the audit workspace with
//! the rest when one is configured). Rotate with copytruncate, so that the chain goes on in
//! the same file (the sandbox lets the process write that file and no other): the first line
//! written after the file shrank is a `rotate` line, which names the `seq` and `chain` it
//! follows, so the new file says where the rotated one ended. `oneway audit verify`
//! ([`crate::tools::audit`]) finds the first line edited, deleted, inserted, reordered or cut,
//! across rotated files.
//!
//! Every line is counted in `oneway_audit_lines_total` by outcome (`written`, `write_failed`,
//! `pushed`, `push_failed`, `dropped`): a trail that cannot be written or delivered is an
//! alert, not a silence.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

pub use crate::config::{AuditConfig, AuditOutput};

type Key = (String, Vec<(String, String)>);

/// Where lines go, and the chain they extend.
struct Sink {
    out: Box<dyn Write + Send>,
    /// The audit file (when the output is one), to notice a copytruncate: its length falls
    /// below `end`.
    file: Option<std::fs::File>,
    /// The file's length after the last line this process wrote.
    end: u64,
    /// The last line's `seq` (0 before the first).
    seq: u64,
    /// The last line's `chain` (zeros before the first).
    head: [u8; 32],
}

impl Sink {
    /// A sink writing to `out`, continuing the chain at `seq` and `head`.
    fn new(out: Box<dyn Write + Send>, seq: u64, head: [u8; 32]) -> Sink {
        Sink {
            out,
            file: None,
            end: 0,
            seq,
            head,
        }
    }

    /// Whether the audit file shrank since this process last wrote to it (rotated by
    /// copytruncate, or cut).
    fn shrank(&self) -> bool {
        self.file
            .as_ref()
            .and_then(|f| f.metadata().ok())
            .is_some_and(|m| m.len() < self.end)
    }

    /// Gives `line` the next `seq` and its `chain`, writes it, and returns its text.
    fn write(&mut self, mut line: Map<String, Value>) -> String {
        self.seq += 1;
        line.insert("seq".into(), json!(self.seq));
        let (text, head) = chained(&self.head, &Value::Object(line).to_string());
        self.head = head;
        let written = writeln!(self.out, "{text}").and_then(|()| self.out.flush());
        let outcome = if written.is_ok() {
            "written"
        } else {
            "write_failed"
        };
        crate::telemetry::audit_lines(outcome, 1);
        if let Some(len) = self.file.as_ref().and_then(|f| f.metadata().ok()) {
            self.end = len.len();
        }
        text
    }
}

/// A line's first fields: the time and the event.
fn line(event: &str) -> Map<String, Value> {
    let mut line = Map::new();
    line.insert("ts".into(), Value::String(now()));
    line.insert("event".into(), Value::String(event.into()));
    line
}

/// `line` (a JSON object's text) with `seq` already in it, chained to `head`: the line to
/// write, and the new head.
pub fn chained(head: &[u8; 32], line: &str) -> (String, [u8; 32]) {
    use sha2::{Digest, Sha256};
    let next: [u8; 32] = Sha256::new()
        .chain_update(head)
        .chain_update(line.as_bytes())
        .finalize()
        .into();
    let open = line.strip_suffix('}').unwrap_or(line);
    (
        format!("{open},\"chain\":\"{}\"}}", hex::encode(next)),
        next,
    )
}

/// A written line split into the text its chain covers and the chain: `None` when it has no
/// chain at its end.
pub fn unchain(line: &str) -> Option<(String, [u8; 32])> {
    let at = line.rfind(",\"chain\":\"")?;
    let hex_part = line[at..]
        .strip_prefix(",\"chain\":\"")?
        .strip_suffix("\"}")?;
    let mut chain = [0u8; 32];
    hex::decode_to_slice(hex_part, &mut chain).ok()?;
    Some((format!("{}}}", &line[..at]), chain))
}

/// The `seq` and `chain` of the last complete line of the audit file at `path`, if it has one.
fn tail(path: &std::path::Path) -> Option<(u64, [u8; 32])> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    let meta = f.metadata().ok()?;
    if !meta.is_file() {
        // A device or a pipe has no last line (and /dev/zero would never end).
        return None;
    }
    let from = meta.len().saturating_sub(64 << 10);
    f.seek(SeekFrom::Start(from)).ok()?;
    let mut buf = Vec::new();
    f.take(64 << 10).read_to_end(&mut buf).ok()?;
    let text = String::from_utf8_lossy(&buf);
    let last = text.strip_suffix('\n')?.rsplit('\n').next()?;
    let (covered, chain) = unchain(last)?;
    let seq = serde_json::from_str::<Value>(&covered)
        .ok()?
        .get("seq")?
        .as_u64()?;
    Some((seq, chain))
}

/// The audit sink.
pub struct Audit {
    sink: Option<Mutex<Sink>>,
    pending: Mutex<BTreeMap<Key, u64>>,
    /// Lines waiting to be pushed to the audit workspace (bounded).
    outbox: Option<Mutex<Vec<String>>>,
}

impl std::fmt::Debug for Audit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Audit")
            .field("enabled", &self.sink.is_some())
            .finish()
    }
}

/// The most lines held for the audit workspace between pushes.
const OUTBOX_CAP: usize = 10_000;
/// The most distinct aggregation keys held between flushes (beyond: counted under `other`).
const PENDING_CAP: usize = 1_000;

/// The current time, RFC 3339.
fn now() -> String {
    time::OffsetDateTime::now_utc()
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

impl Audit {
    /// Opens the sink.
    pub fn open(config: &AuditConfig) -> std::io::Result<Audit> {
        let sink = match &config.output {
            AuditOutput::Off => None,
            AuditOutput::Stdout => Some(Sink::new(Box::new(std::io::stdout()), 0, [0; 32])),
            AuditOutput::File(path) => {
                // Continue the chain of the file's last line (a new or unreadable tail starts
                // a new chain, which `oneway audit verify` shows).
                let (seq, head) = tail(path).unwrap_or((0, [0; 32]));
                let file = std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?;
                let end = file.metadata()?.len();
                let watch = file.try_clone()?;
                let mut sink = Sink::new(Box::new(file), seq, head);
                sink.file = Some(watch);
                sink.end = end;
                Some(sink)
            }
        };
        Ok(Audit {
            sink: sink.map(Mutex::new),
            pending: Mutex::new(BTreeMap::new()),
            outbox: config
                .workspace_token
                .as_ref()
                .map(|_| Mutex::new(Vec::new())),
        })
    }

    /// An audit that writes nothing (tests, tools).
    pub fn off() -> Audit {
        Audit {
            sink: None,
            pending: Mutex::new(BTreeMap::new()),
            outbox: None,
        }
    }

    /// Writes one event now. `fields` must be a JSON object.
    pub fn emit(&self, event: &str, fields: Value) {
        let mut line = line(event);
        if let Value::Object(map) = fields {
            line.extend(map);
        }
        // The sink's lock is held until the line is in the outbox too, so that both see the
        // lines in `seq` order.
        let mut sink = self.sink.as_ref().and_then(|s| s.lock().ok());
        let Some(sink) = sink.as_mut() else {
            self.hold(Value::Object(line).to_string());
            return;
        };
        if sink.shrank() {
            // The file was rotated: its new first line says where the chain stood.
            let mut rotate = self::line("rotate");
            rotate.insert("reason".into(), json!("file_shrank"));
            rotate.insert("previous_seq".into(), json!(sink.seq));
            rotate.insert("previous_chain".into(), json!(hex::encode(sink.head)));
            let text = sink.write(rotate);
            self.hold(text);
        }
        let text = sink.write(line);
        self.hold(text);
    }

    /// Holds a written line for the audit workspace, if one is configured.
    fn hold(&self, text: String) {
        if let Some(Ok(mut o)) = self.outbox.as_ref().map(Mutex::lock) {
            if o.len() < OUTBOX_CAP {
                o.push(text);
            } else {
                crate::telemetry::audit_lines("dropped", 1);
            }
        }
    }

    /// Counts a high-volume event, written at the next [`Audit::flush`] with its count.
    pub fn count(&self, event: &str, fields: &[(&str, &str)]) {
        let Ok(mut pending) = self.pending.lock() else {
            return;
        };
        let mut key: Key = (
            event.to_string(),
            fields
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        );
        if pending.len() >= PENDING_CAP && !pending.contains_key(&key) {
            key.1 = vec![("kind".into(), "other".into())];
        }
        *pending.entry(key).or_insert(0) += 1;
    }

    /// Writes the aggregated events counted since the last flush.
    pub fn flush(&self) {
        let drained = match self.pending.lock() {
            Ok(mut p) => std::mem::take(&mut *p),
            Err(_) => return,
        };
        for ((event, fields), count) in drained {
            let mut map = Map::new();
            for (k, v) in fields {
                map.insert(k, Value::String(v));
            }
            map.insert("count".into(), json!(count));
            self.emit(&event, Value::Object(map));
        }
    }

    /// Takes the lines waiting for the audit workspace.
    pub fn take_outbox(&self) -> Vec<String> {
        self.outbox
            .as_ref()
            .and_then(|o| o.lock().ok().map(|mut o| std::mem::take(&mut *o)))
            .unwrap_or_default()
    }
}

/// Audit lines as a line-protocol `logging` batch (`source` is a tag DataKit uses; the line
/// itself is the `message` field).
pub fn as_logging_points(lines: &[String], unix_nanos: u128) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let escaped = line.replace('\\', "\\\\").replace('"', "\\\"");
        let event = serde_json::from_str::<Value>(line)
            .ok()
            .and_then(|v| v.get("event").and_then(|e| e.as_str()).map(str::to_string))
            .unwrap_or_else(|| "unknown".into());
        let event: String = event
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        let _ = writeln!(
            out,
            "oneway_audit,event={event},status=info message=\"{escaped}\" {}",
            unix_nanos + i as u128
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Clone, Default)]
    struct Shared(std::sync::Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn audit() -> (Audit, Shared) {
        let out = Shared::default();
        let audit = Audit {
            sink: Some(Mutex::new(Sink::new(Box::new(out.clone()), 0, [0; 32]))),
            pending: Mutex::new(BTreeMap::new()),
            outbox: Some(Mutex::new(Vec::new())),
        };
        (audit, out)
    }

    fn lines(out: &Shared) -> Vec<Value> {
        String::from_utf8(out.0.lock().expect("lock").clone())
            .expect("utf-8")
            .lines()
            .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
            .collect()
    }

    #[test]
    fn events_are_json_lines_with_time_and_fields() {
        let (audit, out) = audit();
        audit.emit("reload", json!({"outcome": "ok", "config_sha256": "ab"}));
        let l = lines(&out);
        assert_eq!(l.len(), 1);
        assert_eq!(l[0]["event"], "reload");
        assert_eq!(l[0]["outcome"], "ok");
        assert!(l[0]["ts"].as_str().expect("ts").ends_with('Z'));
    }

    #[test]
    fn counted_events_are_aggregated_per_key() {
        let (audit, out) = audit();
        for _ in 0..500 {
            audit.count(
                "auth_failure",
                &[("kind", "unknown_token"), ("identity", "dns:a")],
            );
        }
        audit.count(
            "auth_failure",
            &[("kind", "not_bound"), ("identity", "dns:b")],
        );
        audit.flush();
        let l = lines(&out);
        assert_eq!(l.len(), 2, "one line per key, not per request");
        let unknown = l
            .iter()
            .find(|v| v["kind"] == "unknown_token")
            .expect("line");
        assert_eq!(unknown["count"], 500);
        audit.flush();
        assert_eq!(lines(&out).len(), 2, "nothing new to write");
    }

    #[test]
    fn aggregation_keys_are_bounded() {
        let (audit, out) = audit();
        for i in 0..(PENDING_CAP + 50) {
            audit.count("auth_failure", &[("identity", &format!("dns:{i}"))]);
        }
        audit.flush();
        assert!(lines(&out).len() <= PENDING_CAP + 1);
    }

    /// `oneway_audit_lines_total{outcome}` in a scrape of the process-wide recorder.
    fn lines_counted(outcome: &str) -> f64 {
        let label = format!("outcome=\"{outcome}\"");
        crate::telemetry::render(&crate::telemetry::handle())
            .lines()
            .filter(|l| l.starts_with(crate::telemetry::AUDIT_LINES) && l.contains(&label))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    #[test]
    fn a_trail_that_cannot_be_written_is_counted_and_its_chain_shows_the_gap() {
        let failed = lines_counted("write_failed");
        let full = Audit::open(&AuditConfig {
            output: AuditOutput::File("/dev/full".into()),
            ..AuditConfig::default()
        })
        .expect("a device opens");
        full.emit("reload", json!({}));
        assert!(lines_counted("write_failed") >= failed + 1.0);
        let written = lines_counted("written");
        let (audit, _) = audit();
        audit.emit("reload", json!({}));
        assert!(lines_counted("written") >= written + 1.0);
    }

    #[test]
    fn lines_become_valid_logging_points() {
        let (audit, _) = audit();
        audit.emit("start", json!({"config_sha256": "x\"y"}));
        let batch = as_logging_points(&audit.take_outbox(), 1_700_000_000_000_000_000);
        let mut v = oneway_protocol::Validator::default();
        let verdict = v
            .validate(
                oneway_protocol::BodyKind::LineProtocol,
                oneway_protocol::Category::Logging,
                oneway_protocol::Precision::Nanoseconds,
                &batch,
            )
            .expect("the gateway's own validator accepts them");
        assert_eq!(verdict.points, 1);
    }
}
