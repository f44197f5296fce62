//! The audit trail: security events as JSON lines, one object per line, to stdout or a file
//! (`[audit]`), and optionally pushed as `logging` points into a Guance audit workspace
//! through the normal upstream path (the spool when there is one).
//!
//! Every line has `ts` (RFC 3339, UTC), `event`, and the event's fields. Fields are bounded
//! and never hold a token, a key or payload bytes: identities are certificate names, clients
//! are addresses. High-volume events (authentication failures, refused APIs, rate limiting)
//! are aggregated: one line per kind and identity per interval, with a `count`.
//!
//! Events: `start`, `stop`, `reload`, `auth_failure`, `api_refused`, `rate_limited`,
//! `spool_dead_letter`.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::Mutex;

use serde_json::{Map, Value, json};

pub use crate::config::{AuditConfig, AuditOutput};

type Key = (String, Vec<(String, String)>);

/// The audit sink.
pub struct Audit {
    sink: Option<Mutex<Box<dyn Write + Send>>>,
    pending: Mutex<BTreeMap<Key, u64>>,
    /// Lines waiting to be pushed to the audit workspace (bounded).
    outbox: Option<Mutex<Vec<String>>>,
    /// Whether lines were dropped because the outbox was full.
    outbox_dropped: std::sync::atomic::AtomicU64,
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
        let sink: Option<Box<dyn Write + Send>> = match &config.output {
            AuditOutput::Off => None,
            AuditOutput::Stdout => Some(Box::new(std::io::stdout())),
            AuditOutput::File(path) => Some(Box::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)?,
            )),
        };
        Ok(Audit {
            sink: sink.map(Mutex::new),
            pending: Mutex::new(BTreeMap::new()),
            outbox: config
                .workspace_token
                .as_ref()
                .map(|_| Mutex::new(Vec::new())),
            outbox_dropped: std::sync::atomic::AtomicU64::new(0),
        })
    }

    /// An audit that writes nothing (tests, tools).
    pub fn off() -> Audit {
        Audit {
            sink: None,
            pending: Mutex::new(BTreeMap::new()),
            outbox: None,
            outbox_dropped: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Writes one event now. `fields` must be a JSON object.
    pub fn emit(&self, event: &str, fields: Value) {
        let mut line = Map::new();
        line.insert("ts".into(), Value::String(now()));
        line.insert("event".into(), Value::String(event.into()));
        if let Value::Object(map) = fields {
            line.extend(map);
        }
        let text = Value::Object(line).to_string();
        if let Some(Ok(mut w)) = self.sink.as_ref().map(Mutex::lock) {
            let _ = writeln!(w, "{text}");
            let _ = w.flush();
        }
        if let Some(Ok(mut o)) = self.outbox.as_ref().map(Mutex::lock) {
            if o.len() < OUTBOX_CAP {
                o.push(text);
            } else {
                self.outbox_dropped
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
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
            sink: Some(Mutex::new(Box::new(out.clone()))),
            pending: Mutex::new(BTreeMap::new()),
            outbox: Some(Mutex::new(Vec::new())),
            outbox_dropped: std::sync::atomic::AtomicU64::new(0),
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
