//! `oneway-oracle`: Guance's own code as the judge of oneway, for tests only.
//!
//! `../shared/oracles/` (or `$ONEWAY_ORACLES`) holds tools built from Guance's public source:
//! `guance-point` decodes a body exactly as Guance does, `datakit-client` is DataKit's real
//! upload client. This crate finds them, drives `guance-point --stream`, runs a body through
//! oneway's own pipeline (Content-Type → parser, Content-Encoding → decoder, validation with
//! the reading of every point), and compares the two readings. The product never depends on
//! it.
//!
//! When a tool is missing, [`locate`] returns `None` after printing what the test needs, and
//! the test skips; with `CI` set it panics instead, so CI cannot pass by skipping.

use std::io::{self, BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};

use oneway_protocol::reading::{Point, Time, Value};
use oneway_protocol::{BodyKind, Category, Decoder, Encoding, Precision, Validator};
use serde_json::Value as Json;

/// The time given to points without one (`--now`), so readings are reproducible.
pub const NOW: i64 = 1_700_000_000_000_000_000;

/// The directory of the oracle tools.
pub fn dir() -> PathBuf {
    match std::env::var_os("ONEWAY_ORACLES") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/oracles"),
    }
}

/// The path of oracle `tool`, or `None` (after saying what is missing) when it is absent.
///
/// # Panics
///
/// When the tool is absent and `CI` is set: a CI run must not pass by skipping.
pub fn locate(tool: &str) -> Option<PathBuf> {
    let path = dir().join(tool);
    if path.is_file() {
        return Some(path);
    }
    let what = format!(
        "this test needs Guance's `{tool}` oracle at {} (set ONEWAY_ORACLES to its directory)",
        path.display()
    );
    if std::env::var_os("CI").is_some() {
        panic!("{what}");
    }
    eprintln!("skipping: {what}");
    None
}

/// One request body with the headers and query that decide how it is read.
#[derive(Debug, Clone, Default)]
pub struct Case {
    /// `Content-Type`, as the client sent it.
    pub content_type: Option<Vec<u8>>,
    /// `Content-Encoding`, as the client sent it.
    pub content_encoding: Option<Vec<u8>>,
    /// `?precision=`, decoded.
    pub precision: Option<String>,
    /// The body, as sent.
    pub body: Vec<u8>,
}

/// `Content-Type` spellings a case may carry: Guance's four, and spellings it reads as line
/// protocol (index = the first byte of a [`Case::from_bytes`] input).
pub const CONTENT_TYPES: [Option<&str>; 12] = [
    Some("application/line-protocol"),
    Some("application/protobuf; proto=com.guance.Point"),
    Some("application/json"),
    Some("application/pbjson; proto=com.guance.Point"),
    None,
    Some("application/x-protobuf"),
    Some("application/protobuf"),
    Some("application/protobuf;proto=com.guance.Point"),
    Some("Application/Protobuf; proto=com.guance.Point"),
    Some("application/json; charset=utf-8"),
    Some("text/plain"),
    Some(""),
];

/// `Content-Encoding` spellings (index = the second byte).
pub const CONTENT_ENCODINGS: [Option<&str>; 10] = [
    None,
    Some("gzip"),
    Some("deflate"),
    Some("zstd"),
    Some("identity"),
    Some("x-gzip"),
    Some("GZIP"),
    Some("br"),
    Some("gzip, gzip"),
    Some(""),
];

/// `precision` values (index = the third byte).
pub const PRECISIONS: [Option<&str>; 10] = [
    None,
    Some("n"),
    Some("u"),
    Some("ms"),
    Some("s"),
    Some("m"),
    Some("h"),
    Some("us"),
    Some("ns"),
    Some(""),
];

impl Case {
    /// A case from fuzz bytes: three selector bytes (Content-Type, Content-Encoding and
    /// precision, each modulo its table) and the body. The format of `fuzz/corpus/guance/`.
    pub fn from_bytes(data: &[u8]) -> Case {
        let pick = |i: usize, n: usize| usize::from(data.get(i).copied().unwrap_or(0)) % n;
        Case {
            content_type: CONTENT_TYPES[pick(0, CONTENT_TYPES.len())]
                .map(|s| s.as_bytes().to_vec()),
            content_encoding: CONTENT_ENCODINGS[pick(1, CONTENT_ENCODINGS.len())]
                .map(|s| s.as_bytes().to_vec()),
            precision: PRECISIONS[pick(2, PRECISIONS.len())].map(str::to_string),
            body: data.get(3..).unwrap_or_default().to_vec(),
        }
    }

    /// The case in the format [`Case::from_bytes`] reads, if its headers are in the tables.
    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        let index = |table: &[Option<&str>], v: Option<&[u8]>| {
            table
                .iter()
                .position(|t| t.map(str::as_bytes) == v)
                .map(|i| i as u8)
        };
        let mut out = vec![
            index(&CONTENT_TYPES, self.content_type.as_deref())?,
            index(&CONTENT_ENCODINGS, self.content_encoding.as_deref())?,
            index(&PRECISIONS, self.precision.as_deref().map(str::as_bytes))?,
        ];
        out.extend_from_slice(&self.body);
        Some(out)
    }

    /// A body sent with a `Content-Type` and no encoding.
    pub fn new(content_type: &str, body: impl Into<Vec<u8>>) -> Case {
        Case {
            content_type: Some(content_type.as_bytes().to_vec()),
            body: body.into(),
            ..Case::default()
        }
    }
}

/// What oneway forwards for an accepted case, and how it read it.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The canonical `Content-Type` forwarded.
    pub content_type: &'static str,
    /// The canonical `Content-Encoding` forwarded (`""`: none).
    pub content_encoding: &'static str,
    /// The precision forwarded (`""`: none).
    pub precision: &'static str,
    /// The points oneway counted, as it reads them.
    pub points: Vec<Point>,
}

/// Why oneway refuses a case: a stable label (the rule or error kind) and the message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// `content_type`, `precision`, a decode error kind, or a validation rule.
    pub label: &'static str,
    /// What oneway would answer.
    pub message: String,
}

/// oneway's pipeline for a body: the parser chosen from the `Content-Type`, the decoder from
/// the `Content-Encoding`, then validation with the reading (default rules, no size limit
/// below 64 MiB). `Err` says why oneway refuses it.
pub fn oneway(case: &Case) -> Result<Forwarded, Refusal> {
    let refuse = |label: &'static str, message: String| Refusal { label, message };
    let kind = BodyKind::from_content_type(case.content_type.as_deref())
        .map_err(|e| refuse("content_type", e.to_string()))?;
    let encoding = Encoding::from_header(case.content_encoding.as_deref())
        .map_err(|e| refuse(e.kind(), e.to_string()))?;
    let precision = match &case.precision {
        None => Precision::Nanoseconds,
        Some(p) => Precision::parse(p)
            .ok_or_else(|| refuse("precision", format!("bad precision {p:?}")))?,
    };
    let mut out = Vec::new();
    let decoded = Decoder::new()
        .decode(encoding, &case.body, &mut out, 64 << 20)
        .map_err(|e| refuse(e.kind(), e.to_string()))?;
    let (_, points) = Validator::default()
        .read(kind, Category::Rum, precision, decoded)
        .map_err(|e| refuse(e.rule.as_str(), e.to_string()))?;
    Ok(Forwarded {
        content_type: kind.content_type(),
        content_encoding: match encoding {
            Encoding::Identity => "",
            e => e.as_str(),
        },
        precision: precision.as_str(),
        points,
    })
}

/// A running `guance-point --stream --now NOW`.
#[derive(Debug)]
pub struct GuancePoint {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: BufReader<ChildStdout>,
}

impl GuancePoint {
    /// Starts the oracle, or `None` when it is absent (see [`locate`]).
    pub fn start() -> Option<GuancePoint> {
        let path = locate("guance-point")?;
        let mut child = Command::new(path)
            .args([
                "--stream",
                "--now",
                &NOW.to_string(),
                "--max-error-bytes",
                "400",
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("guance-point starts");
        let stdin = child.stdin.take();
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
        Some(GuancePoint {
            child,
            stdin,
            stdout,
        })
    }

    /// How Guance reads each of `cases` as oneway forwards it: with the forwarded
    /// Content-Type, Content-Encoding and precision, and the original body.
    pub fn read_all(&mut self, cases: &[(&Forwarded, &[u8])]) -> Vec<Json> {
        let frames: Vec<Vec<u8>> = cases
            .iter()
            .map(|(f, body)| {
                frame(
                    &serde_json::json!({
                        "content_type": f.content_type,
                        "content_encoding": f.content_encoding,
                        "precision": f.precision,
                    }),
                    body,
                )
            })
            .collect();
        self.exchange(frames)
    }

    /// How Guance reads each case exactly as its client sent it (its own header values).
    pub fn read_as_sent(&mut self, cases: &[&Case]) -> Vec<Json> {
        let text = |v: &Option<Vec<u8>>| {
            String::from_utf8_lossy(v.as_deref().unwrap_or_default()).into_owned()
        };
        let frames: Vec<Vec<u8>> = cases
            .iter()
            .map(|c| {
                frame(
                    &serde_json::json!({
                        "content_type": text(&c.content_type),
                        "content_encoding": text(&c.content_encoding),
                        "precision": c.precision.as_deref().unwrap_or(""),
                    }),
                    &c.body,
                )
            })
            .collect();
        self.exchange(frames)
    }

    /// Writes `frames` from a second thread while reading one answer per frame (the oracle
    /// answers in order; writing everything first would deadlock on full pipes).
    fn exchange(&mut self, frames: Vec<Vec<u8>>) -> Vec<Json> {
        let count = frames.len();
        let mut stdin = self.stdin.take().expect("stdin held between calls");
        let writer = std::thread::spawn(move || {
            for f in &frames {
                stdin.write_all(f)?;
            }
            stdin.flush()?;
            Ok::<_, io::Error>(stdin)
        });
        let mut out = Vec::with_capacity(count);
        let mut line = String::new();
        for _ in 0..count {
            line.clear();
            let n = self
                .stdout
                .read_line(&mut line)
                .expect("guance-point answers");
            assert!(n > 0, "guance-point ended early");
            out.push(serde_json::from_str(&line).expect("guance-point prints JSON"));
        }
        let stdin = writer
            .join()
            .expect("writer thread")
            .expect("frames written to guance-point");
        self.stdin = Some(stdin);
        out
    }
}

impl Drop for GuancePoint {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.wait();
    }
}

/// One stream frame: `u32le` header length, JSON header, `u32le` body length, body.
fn frame(header: &Json, body: &[u8]) -> Vec<u8> {
    let h = serde_json::to_vec(header).expect("header serialises");
    let mut f = Vec::with_capacity(8 + h.len() + body.len());
    f.extend_from_slice(&(h.len() as u32).to_le_bytes());
    f.extend_from_slice(&h);
    f.extend_from_slice(&(body.len() as u32).to_le_bytes());
    f.extend_from_slice(body);
    f
}

/// Whether Guance's reading `out` is exactly `ours`: the same number of points, names, tags,
/// field keys, value types and values, and times (oneway's "no timestamp" being [`NOW`]).
/// `Err` describes the first difference.
pub fn compare(ours: &[Point], out: &Json) -> Result<(), String> {
    if out["ok"] != Json::Bool(true) {
        return Err(format!(
            "Guance refuses what oneway accepted: {} {}",
            out["stage"],
            truncated(&out["error"].to_string())
        ));
    }
    let theirs = out["points"].as_array().ok_or("no points array")?;
    if theirs.len() != ours.len() {
        return Err(format!(
            "oneway counted {} points, Guance read {}",
            ours.len(),
            theirs.len()
        ));
    }
    for (i, (p, t)) in ours.iter().zip(theirs).enumerate() {
        compare_point(p, t).map_err(|e| format!("point {i} ({p}): {e}"))?;
    }
    Ok(())
}

fn truncated(s: &str) -> String {
    if s.len() > 300 {
        let mut end = 300;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        format!("{}…", &s[..end])
    } else {
        s.to_string()
    }
}

/// Text as Go's JSON encoder prints it: each byte of an invalid UTF-8 sequence becomes
/// U+FFFD.
fn lossy(mut b: &[u8]) -> String {
    let mut out = String::with_capacity(b.len());
    loop {
        match std::str::from_utf8(b) {
            Ok(s) => {
                out.push_str(s);
                return out;
            }
            Err(e) => {
                let (valid, rest) = b.split_at(e.valid_up_to());
                out.push_str(std::str::from_utf8(valid).unwrap_or_default());
                let bad = e.error_len().unwrap_or(rest.len());
                out.extend(std::iter::repeat_n('\u{fffd}', bad));
                b = &rest[bad..];
            }
        }
    }
}

fn compare_point(p: &Point, t: &Json) -> Result<(), String> {
    if t.get("duplicate_keys").is_some() {
        return Err(format!("Guance kept a key twice: {}", t["duplicate_keys"]));
    }
    if t["name"].as_str() != Some(&lossy(&p.name)) {
        return Err(format!("name {:?} read as {}", lossy(&p.name), t["name"]));
    }
    let want_time = match p.time {
        Time::Unset => NOW,
        Time::At(n) => n,
    };
    if t["time"].as_i64() != Some(want_time) {
        return Err(format!("time {want_time} read as {}", t["time"]));
    }
    let tags = t["tags"].as_object().ok_or("no tags object")?;
    let ours = as_printed(&p.tags);
    if tags.len() != ours.len() {
        return Err(format!("{} tags read as {}", ours.len(), tags.len()));
    }
    for (k, v) in &ours {
        match tags.get(k) {
            Some(Json::String(s)) if *s == lossy(v) => {}
            other => return Err(format!("tag {k:?}={:?} read as {other:?}", lossy(v))),
        }
    }
    let fields = t["fields"].as_object().ok_or("no fields object")?;
    let ours = as_printed(&p.fields);
    if fields.len() != ours.len() {
        return Err(format!(
            "{} fields read as {}: {:?}",
            ours.len(),
            fields.len(),
            fields.keys().collect::<Vec<_>>()
        ));
    }
    for (k, v) in &ours {
        let theirs = fields
            .get(k)
            .ok_or_else(|| format!("field {k:?} missing"))?;
        compare_value(v, theirs).map_err(|e| format!("field {k:?}: {e}"))?;
    }
    Ok(())
}

/// Key-values as the oracle prints them: keys in byte order, each printed lossily (see
/// [`lossy`]), so two keys that differ only in bytes that are not UTF-8 print alike, and JSON
/// keeps the last of them.
fn as_printed<T: Clone>(kvs: &[(Vec<u8>, T)]) -> std::collections::BTreeMap<String, T> {
    let mut sorted: Vec<&(Vec<u8>, T)> = kvs.iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(&b.0));
    sorted
        .into_iter()
        .map(|(k, v)| (lossy(k), v.clone()))
        .collect()
}

fn compare_value(v: &Value, t: &Json) -> Result<(), String> {
    let ty = t["type"].as_str().unwrap_or("?");
    if ty != v.type_code() {
        return Err(format!("{v:?} read as type {ty} ({t})"));
    }
    let same = match v {
        Value::Int(x) => t["value"].as_i64() == Some(*x),
        Value::Uint(x) => t["value"].as_u64() == Some(*x),
        Value::Float(x) => same_float(*x, &t["value"]),
        Value::Bool(x) => t["value"].as_bool() == Some(*x),
        Value::Str(s) => match t.get("b64") {
            Some(b) => b.as_str().map(base64_decode).as_deref() == Some(s.as_slice()),
            None => t["value"].as_str().map(str::as_bytes) == Some(s.as_slice()),
        },
        Value::Bytes(d) => t["value"].as_str().map(base64_decode).as_deref() == Some(d.as_slice()),
        Value::None => t["value"].is_null(),
        Value::Array(items) => {
            let Some(arr) = t["value"]["array"].as_array() else {
                return Err(format!("array read as {t}"));
            };
            if arr.len() != items.len() {
                return Err(format!("{} elements read as {}", items.len(), arr.len()));
            }
            for (i, (a, b)) in items.iter().zip(arr).enumerate() {
                compare_value(a, b).map_err(|e| format!("element {i}: {e}"))?;
            }
            true
        }
        Value::Map(entries) => {
            let Some(map) = t["value"]["map"].as_object() else {
                return Err(format!("map read as {t}"));
            };
            if map.len() != entries.len() {
                return Err(format!("{} entries read as {}", entries.len(), map.len()));
            }
            for (k, a) in entries {
                let b = map
                    .get(&lossy(k))
                    .ok_or_else(|| format!("map key {:?} missing", lossy(k)))?;
                compare_value(a, b).map_err(|e| format!("map key {:?}: {e}", lossy(k)))?;
            }
            true
        }
    };
    if same {
        Ok(())
    } else {
        Err(format!("{v:?} read as {t}"))
    }
}

fn same_float(x: f64, t: &Json) -> bool {
    match t {
        Json::String(s) => match s.as_str() {
            "NaN" => x.is_nan(),
            "+Inf" => x == f64::INFINITY,
            "-Inf" => x == f64::NEG_INFINITY,
            _ => false,
        },
        Json::Number(n) => n.as_f64().is_some_and(|f| f.to_bits() == x.to_bits()),
        _ => false,
    }
}

/// Standard padded base64, as the oracle prints bytes.
pub fn base64_decode(s: &str) -> Vec<u8> {
    oneway_protocol::reading::base64_decode(s.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_decode_pads() {
        assert_eq!(base64_decode("aGk="), b"hi");
        assert_eq!(base64_decode("YWJj"), b"abc");
        assert_eq!(base64_decode(""), b"");
    }

    #[test]
    fn compare_finds_a_different_value() {
        let pt = Point {
            name: b"m".to_vec(),
            tags: vec![],
            fields: vec![(b"f".to_vec(), Value::Int(1))],
            time: Time::Unset,
        };
        let out: Json = serde_json::json!({"ok": true, "points": [
            {"name": "m", "time": NOW, "tags": {}, "fields": {"f": {"type": "i", "value": 1}}}]});
        assert_eq!(compare(std::slice::from_ref(&pt), &out), Ok(()));
        let out: Json = serde_json::json!({"ok": true, "points": [
            {"name": "m", "time": NOW, "tags": {}, "fields": {"f": {"type": "f", "value": 1.0}}}]});
        assert!(compare(std::slice::from_ref(&pt), &out).is_err());
        let out: Json = serde_json::json!({"ok": false, "stage": "decode", "error": "x"});
        assert!(compare(&[pt], &out).is_err());
    }
}

pub mod datakit;

pub mod fuzz {
    //! The cargo-fuzz target `guance` (run by hand, see `fuzz/README.md`): each input is a
    //! [`Case`] in the `fuzz/corpus/guance/` format; whatever oneway accepts must be read by
    //! Guance's decoder exactly as oneway counted it, else the target panics (a finding).

    use std::sync::{Mutex, OnceLock};

    use crate::{Case, GuancePoint, compare, oneway};

    static ORACLE: OnceLock<Mutex<GuancePoint>> = OnceLock::new();

    /// One fuzz input.
    ///
    /// # Panics
    ///
    /// When oneway accepts a case Guance reads differently (or cannot read), or when the
    /// oracle is missing.
    pub fn guance(data: &[u8]) {
        let case = Case::from_bytes(data);
        let Ok(forwarded) = oneway(&case) else {
            return;
        };
        let oracle = ORACLE.get_or_init(|| {
            Mutex::new(GuancePoint::start().expect("the guance target needs guance-point"))
        });
        let mut gp = oracle
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let out = gp.read_all(&[(&forwarded, &case.body)]).remove(0);
        if let Err(e) = compare(&forwarded.points, &out) {
            panic!("Guance reads what oneway accepted differently: {e}");
        }
    }
}
