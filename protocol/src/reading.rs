//! What Guance reads from a batch: the points as its decoder (cliutils `point`, with the
//! `influxdb1-client` line-protocol parser it vendors) builds them from the bytes oneway
//! forwards.
//!
//! The validators compute this reading as they check a batch, but only for a [`Sink`] that
//! asks for it ([`Sink::ACTIVE`]): the gateway's hot path passes `()`, for which every line of
//! that work is compiled out, and tests and tools pass a [`Points`] collector. The reading is
//! what the equivalence test compares with Guance's own decoder: for every batch oneway
//! accepts, Guance must decode exactly these points.
//!
//! The model is Guance's, not ours:
//! - names, keys and values are the **unescaped** bytes;
//! - JSON numbers are floats (Go's `encoding/json` decodes them into `float64`);
//! - a point without a timestamp (or with timestamp 0) is [`Time::Unset`]: Guance stamps it
//!   with its receive time;
//! - `±Inf` floats are clamped to `u64::MAX` and `i64::MIN` as floats (the checker does that);
//! - a field with no value is [`Value::None`] (DataKit's Pipeline emits them).

use core::fmt;

/// A field value as Guance stores it.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `i`: a signed integer.
    Int(i64),
    /// `u`: an unsigned integer.
    Uint(u64),
    /// `f`: a float (NaN allowed in protobuf).
    Float(f64),
    /// `b`: a boolean.
    Bool(bool),
    /// `s`: a string (bytes: protobuf strings need not be UTF-8).
    Str(Vec<u8>),
    /// `d`: bytes.
    Bytes(Vec<u8>),
    /// `a` holding a `point.Array`: elements of one scalar type.
    Array(Vec<Value>),
    /// `a` holding a `point.Map`: key to scalar.
    Map(Vec<(Vec<u8>, Value)>),
    /// A field with no value.
    None,
}

impl Value {
    /// The one-letter type the oracle prints (`i u f b s d a none`).
    pub fn type_code(&self) -> &'static str {
        match self {
            Value::Int(_) => "i",
            Value::Uint(_) => "u",
            Value::Float(_) => "f",
            Value::Bool(_) => "b",
            Value::Str(_) => "s",
            Value::Bytes(_) => "d",
            Value::Array(_) | Value::Map(_) => "a",
            Value::None => "none",
        }
    }
}

/// A point's time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Time {
    /// No timestamp (or 0): Guance uses the time it receives the point.
    Unset,
    /// Nanoseconds since the Unix epoch, precision applied.
    At(i64),
}

/// One point, as Guance reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    /// The measurement.
    pub name: Vec<u8>,
    /// Tags, in the order they appear.
    pub tags: Vec<(Vec<u8>, Vec<u8>)>,
    /// Fields, in the order they appear.
    pub fields: Vec<(Vec<u8>, Value)>,
    /// The time.
    pub time: Time,
}

impl Point {
    /// An empty point (no allocation).
    pub const fn new() -> Point {
        Point {
            name: Vec::new(),
            tags: Vec::new(),
            fields: Vec::new(),
            time: Time::Unset,
        }
    }

    pub(crate) fn clear(&mut self) {
        self.name.clear();
        self.tags.clear();
        self.fields.clear();
        self.time = Time::Unset;
    }
}

impl Default for Point {
    fn default() -> Self {
        Point::new()
    }
}

impl fmt::Display for Point {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", String::from_utf8_lossy(&self.name))?;
        for (k, v) in &self.tags {
            write!(
                f,
                ",{}={}",
                String::from_utf8_lossy(k),
                String::from_utf8_lossy(v)
            )?;
        }
        let mut sep = ' ';
        for (k, v) in &self.fields {
            write!(f, "{sep}{}={v:?}", String::from_utf8_lossy(k))?;
            sep = ',';
        }
        match self.time {
            Time::Unset => Ok(()),
            Time::At(t) => write!(f, " {t}"),
        }
    }
}

/// Receives the reading of each accepted point.
///
/// Validators are generic over the sink; with [`Sink::ACTIVE`] false (as for `()`) they build
/// nothing, so the reading costs the hot path nothing.
pub trait Sink {
    /// Whether the validator should build the points at all.
    const ACTIVE: bool;
    /// One point, once it has passed every rule. A rejected batch may have delivered some
    /// points before the bad one: the caller discards them.
    fn point(&mut self, point: &Point);
}

impl Sink for () {
    const ACTIVE: bool = false;
    #[inline(always)]
    fn point(&mut self, _: &Point) {}
}

/// Collects every point of a batch.
#[derive(Debug, Default)]
pub struct Points(pub Vec<Point>);

impl Sink for Points {
    const ACTIVE: bool = true;
    fn point(&mut self, point: &Point) {
        self.0.push(point.clone());
    }
}

/// `+Inf` and `-Inf` become these, as Guance's checker does (`math.MaxUint64`, `math.MinInt64`).
pub(crate) fn clamp_infinite(f: f64) -> f64 {
    if f == f64::INFINITY {
        u64::MAX as f64
    } else if f == f64::NEG_INFINITY {
        i64::MIN as f64
    } else {
        f
    }
}

/// Standard base64 digit values (`0xff`: not a digit).
pub(crate) static BASE64: [u8; 256] = {
    let mut t = [0xffu8; 256];
    let mut c = 0u8;
    while c < 26 {
        t[(b'A' + c) as usize] = c;
        t[(b'a' + c) as usize] = 26 + c;
        c += 1;
    }
    let mut d = 0u8;
    while d < 10 {
        t[(b'0' + d) as usize] = 52 + d;
        d += 1;
    }
    t[b'+' as usize] = 62;
    t[b'/' as usize] = 63;
    t
};

/// The bytes of standard base64 `s`, up to its padding (or its first byte that is not a
/// digit): how Guance's binary values and the oracle's printed bytes read.
pub fn base64_decode(s: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len() / 4 * 3);
    let mut acc = 0u32;
    let mut bits = 0;
    for &c in s {
        let v = BASE64[usize::from(c)];
        if v == 0xff {
            break;
        }
        acc = acc << 6 | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    out
}
