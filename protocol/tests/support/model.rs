//! A model of Guance points for tests and benchmarks: the points, their encodings as line
//! protocol, JSON and protobuf (`PBPoints`, with `prost` messages derived here as the oracle),
//! and the DataKit-shaped corpora the benchmarks use.
//!
//! Shared by `protocol/tests/*` and `benches/` (included by path), so the benchmarks measure
//! exactly the inputs the tests prove correct.

use std::fmt::Write as _;

/// A field value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Uint(u64),
    Float(f64),
    Bool(bool),
    Str(String),
    Bytes(Vec<u8>),
    IntArray(Vec<i64>),
    StrArray(Vec<String>),
}

/// A point.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub name: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, Value)>,
    pub time: Option<i64>,
}

/// Escapes as DataKit's encoder does (influxdb1-client's escape functions): a backslash before
/// each special byte, backslashes themselves left as they are (Guance unescapes only the
/// specials).
fn escape_lp(out: &mut String, s: &str, specials: &[char]) {
    for c in s.chars() {
        if specials.contains(&c) {
            out.push('\\');
        }
        out.push(c);
    }
}

pub fn base64(bytes: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(char::from(A[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn quote_lp(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out.push('"');
}

fn float_lp(f: f64) -> String {
    // Line protocol floats: digits with an optional fraction/exponent, never `inf`/`NaN`.
    format!("{f:?}")
}

impl Point {
    /// Appends the point as one line of line protocol.
    pub fn write_lp(&self, out: &mut String) {
        escape_lp(out, &self.name, &[',', ' ']);
        for (k, v) in &self.tags {
            out.push(',');
            escape_lp(out, k, &[',', '=', ' ']);
            out.push('=');
            escape_lp(out, v, &[',', '=', ' ']);
        }
        out.push(' ');
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            escape_lp(out, k, &[',', '=', ' ', '"']);
            out.push('=');
            match v {
                Value::Int(x) => write!(out, "{x}i").expect("infallible"),
                Value::Uint(x) => write!(out, "{x}u").expect("infallible"),
                Value::Float(x) => out.push_str(&float_lp(*x)),
                Value::Bool(x) => out.push_str(if *x { "true" } else { "false" }),
                Value::Str(s) => quote_lp(out, s),
                Value::Bytes(b) => write!(out, "\"{}\"b", base64(b)).expect("infallible"),
                Value::IntArray(a) => {
                    out.push('[');
                    for (j, x) in a.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        write!(out, "{x}i").expect("infallible");
                    }
                    out.push(']');
                }
                Value::StrArray(a) => {
                    out.push('[');
                    for (j, x) in a.iter().enumerate() {
                        if j > 0 {
                            out.push(',');
                        }
                        quote_lp(out, x);
                    }
                    out.push(']');
                }
            }
        }
        if let Some(t) = self.time {
            write!(out, " {t}").expect("infallible");
        }
        out.push('\n');
    }

    /// The point as a JSON object.
    pub fn write_json(&self, out: &mut String) {
        let q = |s: &str| serde_json_string(s);
        write!(out, "{{\"measurement\":{}", q(&self.name)).expect("infallible");
        if !self.tags.is_empty() {
            out.push_str(",\"tags\":{");
            for (i, (k, v)) in self.tags.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write!(out, "{}:{}", q(k), q(v)).expect("infallible");
            }
            out.push('}');
        }
        out.push_str(",\"fields\":{");
        for (i, (k, v)) in self.fields.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            write!(out, "{}:", q(k)).expect("infallible");
            match v {
                Value::Int(x) => write!(out, "{x}").expect("infallible"),
                Value::Uint(x) => write!(out, "{x}").expect("infallible"),
                Value::Float(x) => write!(out, "{x:?}").expect("infallible"),
                Value::Bool(x) => write!(out, "{x}").expect("infallible"),
                Value::Str(s) => out.push_str(&q(s)),
                Value::Bytes(b) => out.push_str(&q(&base64(b))),
                Value::IntArray(a) => {
                    let items: Vec<String> = a.iter().map(|x| x.to_string()).collect();
                    write!(out, "[{}]", items.join(",")).expect("infallible");
                }
                Value::StrArray(a) => {
                    let items: Vec<String> = a.iter().map(|x| q(x)).collect();
                    write!(out, "[{}]", items.join(",")).expect("infallible");
                }
            }
        }
        out.push('}');
        if let Some(t) = self.time {
            write!(out, ",\"time\":{t}").expect("infallible");
        }
        out.push('}');
    }

    /// The point as a prost message.
    pub fn to_pb(&self) -> PbPoint {
        let mut fields = Vec::new();
        for (k, v) in &self.tags {
            fields.push(PbField {
                key: k.clone(),
                is_tag: true,
                val: Some(pb_field::Val::S(v.clone())),
                ..PbField::default()
            });
        }
        for (k, v) in &self.fields {
            let val = match v {
                Value::Int(x) => pb_field::Val::I(*x),
                Value::Uint(x) => pb_field::Val::U(*x),
                Value::Float(x) => pb_field::Val::F(*x),
                Value::Bool(x) => pb_field::Val::B(*x),
                Value::Str(s) => pb_field::Val::S(s.clone()),
                Value::Bytes(b) => pb_field::Val::D(b.clone()),
                Value::IntArray(a) => {
                    pb_field::Val::A(any_array(a.iter().map(|x| basic_types::X::I(*x)).collect()))
                }
                Value::StrArray(a) => pb_field::Val::A(any_array(
                    a.iter().map(|x| basic_types::X::S(x.clone())).collect(),
                )),
            };
            fields.push(PbField {
                key: k.clone(),
                val: Some(val),
                ..PbField::default()
            });
        }
        PbPoint {
            name: self.name.clone(),
            fields,
            time: self.time.unwrap_or(0),
            ..PbPoint::default()
        }
    }
}

fn any_array(items: Vec<basic_types::X>) -> prost_types_any::Any {
    let arr = PbArray {
        arr: items
            .into_iter()
            .map(|x| BasicTypes { x: Some(x) })
            .collect(),
    };
    prost_types_any::Any {
        type_url: "type.googleapis.com/point.Array".into(),
        value: prost::Message::encode_to_vec(&arr),
    }
}

/// A JSON string literal.
pub fn serde_json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if (c as u32) < 0x20 => write!(out, "\\u{:04x}", c as u32).expect("infallible"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Line protocol for a batch.
pub fn batch_lp(points: &[Point]) -> String {
    let mut s = String::new();
    for p in points {
        p.write_lp(&mut s);
    }
    s
}

/// JSON for a batch.
pub fn batch_json(points: &[Point]) -> String {
    let mut s = String::from("[");
    for (i, p) in points.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        p.write_json(&mut s);
    }
    s.push(']');
    s
}

/// Protobuf `PBPoints` for a batch.
pub fn batch_pb(points: &[Point]) -> Vec<u8> {
    let msg = PbPoints {
        arr: points.iter().map(Point::to_pb).collect(),
    };
    prost::Message::encode_to_vec(&msg)
}

// ---- prost messages: the `point` package, hand-derived (no protoc) ----

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbPoints {
    #[prost(message, repeated, tag = "1")]
    pub arr: Vec<PbPoint>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbPoint {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, repeated, tag = "2")]
    pub fields: Vec<PbField>,
    #[prost(int64, tag = "3")]
    pub time: i64,
    #[prost(message, repeated, tag = "4")]
    pub warns: Vec<PbWarn>,
    #[prost(message, repeated, tag = "5")]
    pub debugs: Vec<PbDebug>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbField {
    #[prost(string, tag = "1")]
    pub key: String,
    #[prost(bool, tag = "8")]
    pub is_tag: bool,
    #[prost(int32, tag = "9")]
    pub r#type: i32,
    #[prost(string, tag = "10")]
    pub unit: String,
    #[prost(string, tag = "12")]
    pub description: String,
    #[prost(oneof = "pb_field::Val", tags = "2, 3, 4, 5, 6, 7, 11")]
    pub val: Option<pb_field::Val>,
}

pub mod pb_field {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Val {
        #[prost(int64, tag = "2")]
        I(i64),
        #[prost(uint64, tag = "3")]
        U(u64),
        #[prost(double, tag = "4")]
        F(f64),
        #[prost(bool, tag = "5")]
        B(bool),
        #[prost(bytes, tag = "6")]
        D(Vec<u8>),
        #[prost(message, tag = "7")]
        A(super::prost_types_any::Any),
        #[prost(string, tag = "11")]
        S(String),
    }
}

pub mod prost_types_any {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct Any {
        #[prost(string, tag = "1")]
        pub type_url: String,
        #[prost(bytes, tag = "2")]
        pub value: Vec<u8>,
    }
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbWarn {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub msg: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbDebug {
    #[prost(string, tag = "1")]
    pub info: String,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbArray {
    #[prost(message, repeated, tag = "1")]
    pub arr: Vec<BasicTypes>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PbMap {
    #[prost(map = "string, message", tag = "1")]
    pub map: std::collections::HashMap<String, BasicTypes>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BasicTypes {
    #[prost(oneof = "basic_types::X", tags = "1, 2, 3, 4, 5, 6")]
    pub x: Option<basic_types::X>,
}

pub mod basic_types {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum X {
        #[prost(int64, tag = "1")]
        I(i64),
        #[prost(uint64, tag = "2")]
        U(u64),
        #[prost(double, tag = "3")]
        F(f64),
        #[prost(bool, tag = "4")]
        B(bool),
        #[prost(bytes, tag = "5")]
        D(Vec<u8>),
        #[prost(string, tag = "6")]
        S(String),
    }
}

// ---- DataKit-shaped corpora (deterministic) ----

/// A tiny deterministic generator (xorshift), so corpora are the same in every run.
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }
}

/// TSBS cpu-only style: 10 tags, 10 integer fields, a timestamp (~340 bytes a line).
pub fn tsbs_cpu(rng: &mut Rng, i: u64) -> Point {
    let regions = [
        "us-east-1",
        "us-west-1",
        "us-west-2",
        "eu-west-1",
        "eu-central-1",
        "ap-southeast-1",
    ];
    let region = regions[rng.below(regions.len() as u64) as usize];
    let tags = vec![
        ("hostname".into(), format!("host_{}", rng.below(4000))),
        ("region".into(), region.into()),
        (
            "datacenter".into(),
            format!("{region}{}", ["a", "b", "c"][rng.below(3) as usize]),
        ),
        ("rack".into(), rng.below(100).to_string()),
        (
            "os".into(),
            ["Ubuntu16.10", "Ubuntu16.04LTS", "Ubuntu15.10"][rng.below(3) as usize].into(),
        ),
        ("arch".into(), ["x64", "x86"][rng.below(2) as usize].into()),
        (
            "team".into(),
            ["SF", "NYC", "LON", "CHI"][rng.below(4) as usize].into(),
        ),
        ("service".into(), rng.below(20).to_string()),
        ("service_version".into(), rng.below(2).to_string()),
        (
            "service_environment".into(),
            ["production", "staging", "test"][rng.below(3) as usize].into(),
        ),
    ];
    let names = [
        "usage_user",
        "usage_system",
        "usage_idle",
        "usage_nice",
        "usage_iowait",
        "usage_irq",
        "usage_softirq",
        "usage_steal",
        "usage_guest",
        "usage_guest_nice",
    ];
    let fields = names
        .iter()
        .map(|n| (n.to_string(), Value::Int(rng.below(100) as i64)))
        .collect();
    Point {
        name: "cpu".into(),
        tags,
        fields,
        time: Some(1_451_606_400_000_000_000 + i as i64 * 10_000_000_000),
    }
}

/// Short lines: 2 tags, 3 fields (~115 bytes a line).
pub fn short(rng: &mut Rng, i: u64) -> Point {
    Point {
        name: "mem".into(),
        tags: vec![
            ("host".into(), format!("host_{}", rng.below(4000))),
            ("region".into(), "eu-west-1".into()),
        ],
        fields: vec![
            ("used".into(), Value::Int(rng.below(1 << 34) as i64)),
            ("free".into(), Value::Int(rng.below(1 << 34) as i64)),
            (
                "used_percent".into(),
                Value::Float(rng.below(10_000) as f64 / 100.0 + 0.25),
            ),
        ],
        time: Some(1_451_606_400_000_000_000 + i as i64 * 10_000_000_000),
    }
}

/// Escape-heavy logging points: escaped names, keys and tag values, quoted strings with
/// escaped quotes and backslashes.
pub fn escapes(rng: &mut Rng, i: u64) -> Point {
    Point {
        name: "nginx access,log".into(),
        tags: vec![
            ("host name".into(), format!("web {}", rng.below(50))),
            ("path".into(), "C:\\logs\\app,main=1".into()),
            ("service".into(), "front end".into()),
        ],
        fields: vec![
            ("status".into(), Value::Str("info".into())),
            (
                "message".into(),
                Value::Str(format!(
                    "GET /api/v1/items?id={} HTTP/1.1 \"200\" ua=\"Mozilla/5.0 (X11; Linux x86_64)\" path=C:\\\\tmp, took {}ms",
                    rng.below(100_000),
                    rng.below(1000)
                )),
            ),
            ("bytes sent".into(), Value::Int(rng.below(1 << 20) as i64)),
        ],
        time: Some(1_451_606_400_000_000_000 + i as i64),
    }
}

/// Points from `make` until the line protocol reaches `bytes`.
pub fn corpus(make: fn(&mut Rng, u64) -> Point, bytes: usize) -> Vec<Point> {
    let mut rng = Rng::new(0x5eed);
    let mut points = Vec::new();
    let mut size = 0;
    let mut line = String::new();
    while size < bytes {
        let p = make(&mut rng, points.len() as u64);
        line.clear();
        p.write_lp(&mut line);
        size += line.len();
        points.push(p);
    }
    points
}
