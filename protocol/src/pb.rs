//! Protobuf `PBPoints` (DataKit's default body): a zero-copy walk of the wire format.
//!
//! Schema (package `point`, `datakit-protocol.md` §2.1):
//!
//! ```text
//! PBPoints   { repeated PBPoint arr = 1; }
//! PBPoint    { string name = 1; repeated Field fields = 2; int64 time = 3;
//!              repeated Warn warns = 4; repeated Debug debugs = 5; }
//! Field      { string key = 1; oneof val { int64 i = 2; uint64 u = 3; double f = 4; bool b = 5;
//!              bytes d = 6; google.protobuf.Any a = 7; string s = 11; }
//!              bool is_tag = 8; MetricType type = 9; string unit = 10; string description = 12; }
//! Warn       { string type = 1; string msg = 2; }      Debug { string info = 1; }
//! Any        { string type_url = 1; bytes value = 2; }  → point.Array or point.Map
//! Array      { repeated BasicTypes arr = 1; }          Map { map<string, BasicTypes> map = 1; }
//! BasicTypes { oneof x { int64 i = 1; uint64 u = 2; double f = 3; bool b = 4; bytes d = 5;
//!              string s = 6; } }
//! ```
//!
//! Every field number and wire type is checked against this schema, every `string` is checked
//! for UTF-8, and `Any` values are walked as the array or map they declare. Nesting is fixed by
//! the schema (at most six levels), so there is no recursion on input.
//!
//! # Differences from a generic decoder (`prost`), all deliberate
//!
//! Anything we accept, `prost` decodes (tested). We are stricter in that:
//! - unknown field numbers and group wire types are rejected (a generic decoder skips them);
//!   the point schema has been stable and a field we cannot see is a field we cannot validate;
//! - a repeated occurrence of a singular message field (`Field.a`) is validated on its own,
//!   where protobuf would merge the occurrences;
//! - the point-model rules apply: a point needs a name and a field, a field needs a key and a
//!   value, a tag's value is a string, an `Any` is a `point.Array` or `point.Map`.
//!
//! Scalar fields that occur twice follow protobuf's "last one wins", and so does the `val`
//! oneof.

use crate::point::{PointChecker, Spelling};
use crate::swar;
use crate::verdict::{Excerpt, Position, Rejection, Rule, RuleCounts, Verdict};

const ARRAY_TYPE_URL: &[u8] = b"type.googleapis.com/point.Array";
const MAP_TYPE_URL: &[u8] = b"type.googleapis.com/point.Map";

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

type Fail = (Rule, usize);

/// Reads fields from `b[i..end]`. Offsets are into the whole body, for error reports.
struct Reader<'a> {
    /// The body up to `end`.
    b: &'a [u8],
    i: usize,
}

/// One field: number, wire type, and its value (a varint, or a span for LEN/I64/I32).
#[derive(Debug, Clone, Copy)]
enum Value {
    Varint(u64),
    Span(usize, usize),
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn new(b: &'a [u8], start: usize, end: usize) -> Reader<'a> {
        Reader {
            b: &b[..end],
            i: start,
        }
    }

    #[inline(always)]
    fn varint(&mut self) -> Result<u64, Fail> {
        match self.b.get(self.i) {
            Some(&byte) if byte < 0x80 => {
                self.i += 1;
                Ok(u64::from(byte))
            }
            _ => self.varint_slow(),
        }
    }

    #[inline(never)]
    fn varint_slow(&mut self) -> Result<u64, Fail> {
        let start = self.i;
        let mut value: u64 = 0;
        for shift in 0..10 {
            let Some(&byte) = self.b.get(self.i) else {
                return Err((Rule::Truncated, start));
            };
            self.i += 1;
            if shift == 9 && byte > 1 {
                return Err((Rule::BadVarint, start));
            }
            value |= u64::from(byte & 0x7f) << (shift * 7);
            if byte < 0x80 {
                return Ok(value);
            }
        }
        Err((Rule::BadVarint, start))
    }

    /// The next field, or `None` at the end. Rejects wire types other than 0, 1, 2, 5.
    #[inline(always)]
    fn next(&mut self) -> Result<Option<(u32, u8, Value, usize)>, Fail> {
        if self.i >= self.b.len() {
            return Ok(None);
        }
        let at = self.i;
        let key = self.varint()?;
        let number = key >> 3;
        let wire = (key & 7) as u8;
        if number == 0 || number > u64::from(u32::MAX >> 3) {
            return Err((Rule::UnknownField, at));
        }
        let end = self.b.len();
        let value = match wire {
            VARINT => Value::Varint(self.varint()?),
            LEN => {
                let len = self.varint()?;
                if len > (end - self.i) as u64 {
                    return Err((Rule::Truncated, at));
                }
                self.i += len as usize;
                Value::Span(self.i - len as usize, self.i)
            }
            I64 | I32 => {
                let len = if wire == I64 { 8 } else { 4 };
                if end - self.i < len {
                    return Err((Rule::Truncated, at));
                }
                self.i += len;
                Value::Span(self.i - len, self.i)
            }
            _ => return Err((Rule::WrongWireType, at)),
        };
        Ok(Some((number as u32, wire, value, at)))
    }
}

#[inline]
fn expect(wire: u8, want: u8, at: usize) -> Result<(), Fail> {
    if wire == want {
        Ok(())
    } else {
        Err((Rule::WrongWireType, at))
    }
}

#[inline]
fn span(v: Value) -> (usize, usize) {
    match v {
        Value::Span(s, e) => (s, e),
        Value::Varint(_) => (0, 0),
    }
}

#[inline(always)]
fn utf8(b: &[u8], (s, e): (usize, usize)) -> Result<(), Fail> {
    let text = &b[s..e];
    if swar::is_ascii(text) || simdutf8::basic::from_utf8(text).is_ok() {
        Ok(())
    } else {
        Err((Rule::InvalidUtf8, s))
    }
}

/// Validates a whole `PBPoints` batch.
pub(crate) fn validate(checker: &mut PointChecker, body: &[u8]) -> Result<Verdict, Rejection> {
    let mut counts = RuleCounts::default();
    let mut points = 0u64;
    let mut r = Reader::new(body, 0, body.len());
    loop {
        let field = r.next().map_err(|f| rejection(body, None, 0, f))?;
        let Some((number, wire, value, at)) = field else {
            break;
        };
        if number != 1 {
            return Err(rejection(body, None, at, (Rule::UnknownField, at)));
        }
        expect(wire, LEN, at).map_err(|f| rejection(body, None, at, f))?;
        let (s, e) = span(value);
        point(checker, body, s, e, &mut counts).map_err(|f| rejection(body, Some(points), s, f))?;
        points += 1;
    }
    Ok(Verdict {
        points,
        counted: counts,
    })
}

fn rejection(body: &[u8], index: Option<u64>, start: usize, (rule, offset): Fail) -> Rejection {
    Rejection {
        position: Position::Point(index),
        offset,
        rule,
        excerpt: Excerpt::new(body, start),
    }
}

/// Validates one `PBPoint` in `b[start..end]`.
fn point(
    c: &mut PointChecker,
    b: &[u8],
    start: usize,
    end: usize,
    counts: &mut RuleCounts,
) -> Result<(), Fail> {
    c.line(end - start).map_err(|r| (r, start))?;
    c.begin();
    let mut name = (start, start);
    let mut r = Reader::new(b, start, end);
    while let Some((number, wire, value, at)) = r.next()? {
        match number {
            1 => {
                expect(wire, LEN, at)?;
                name = span(value);
            }
            2 => {
                expect(wire, LEN, at)?;
                let (s, e) = span(value);
                field(c, b, s, e)?;
            }
            3 => expect(wire, VARINT, at)?,
            4 => {
                expect(wire, LEN, at)?;
                let (s, e) = span(value);
                strings_only(b, s, e, &[1, 2])?;
            }
            5 => {
                expect(wire, LEN, at)?;
                let (s, e) = span(value);
                strings_only(b, s, e, &[1])?;
            }
            _ => return Err((Rule::UnknownField, at)),
        }
    }
    utf8(b, name)?;
    c.measurement(name.1 - name.0)
        .map_err(|r| (r, name.0.max(start)))?;
    c.finish(counts).map_err(|r| (r, start))
}

/// A message whose fields are all `string`s with the given numbers (`Warn`, `Debug`).
fn strings_only(b: &[u8], start: usize, end: usize, numbers: &[u32]) -> Result<(), Fail> {
    let mut r = Reader::new(b, start, end);
    while let Some((number, wire, value, at)) = r.next()? {
        if !numbers.contains(&number) {
            return Err((Rule::UnknownField, at));
        }
        expect(wire, LEN, at)?;
        utf8(b, span(value))?;
    }
    Ok(())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    None,
    Scalar,
    Bytes(usize, usize),
    Str(usize, usize),
    Any { strings: bool },
}

/// Validates one `Field` in `b[start..end]` and records it in the point.
fn field(c: &mut PointChecker, b: &[u8], start: usize, end: usize) -> Result<(), Fail> {
    let mut key = (start, start);
    let mut is_tag = false;
    let mut val = Val::None;
    let mut r = Reader::new(b, start, end);
    while let Some((number, wire, value, at)) = r.next()? {
        match number {
            1 => {
                expect(wire, LEN, at)?;
                key = span(value);
            }
            2 | 3 | 5 => {
                expect(wire, VARINT, at)?;
                val = Val::Scalar;
            }
            4 => {
                expect(wire, I64, at)?;
                val = Val::Scalar;
            }
            6 => {
                expect(wire, LEN, at)?;
                let (s, e) = span(value);
                val = Val::Bytes(s, e);
            }
            11 => {
                expect(wire, LEN, at)?;
                let (s, e) = span(value);
                utf8(b, (s, e))?;
                val = Val::Str(s, e);
            }
            7 => {
                expect(wire, LEN, at)?;
                let (s, e) = span(value);
                let strings = any(c, b, s, e)?;
                val = Val::Any { strings };
            }
            8 => {
                expect(wire, VARINT, at)?;
                is_tag = matches!(value, Value::Varint(v) if v != 0);
            }
            9 => expect(wire, VARINT, at)?,
            10 | 12 => {
                expect(wire, LEN, at)?;
                utf8(b, span(value))?;
            }
            _ => return Err((Rule::UnknownField, at)),
        }
    }
    utf8(b, key)?;
    c.key(b, key.0, key.1, Spelling::Plain, is_tag)
        .map_err(|r| (r, key.0.max(start)))?;
    match val {
        Val::None => Err((Rule::MissingValue, start)),
        Val::Str(s, e) if is_tag => c.tag_value(e - s).map_err(|r| (r, s)),
        _ if is_tag => Err((Rule::TagNotString, start)),
        Val::Str(s, e) | Val::Bytes(s, e) => {
            c.field_value(e - s).map_err(|r| (r, s))?;
            c.string_field().map_err(|r| (r, start))
        }
        Val::Any { strings: true } => c.string_field().map_err(|r| (r, start)),
        Val::Scalar | Val::Any { strings: false } => Ok(()),
    }
}

/// Validates a `google.protobuf.Any` holding a `point.Array` or `point.Map`; returns whether it
/// holds string or bytes values.
fn any(c: &PointChecker, b: &[u8], start: usize, end: usize) -> Result<bool, Fail> {
    let mut type_url = (start, start);
    let mut value = (start, start);
    let mut r = Reader::new(b, start, end);
    while let Some((number, wire, v, at)) = r.next()? {
        match number {
            1 => {
                expect(wire, LEN, at)?;
                type_url = span(v);
                utf8(b, type_url)?;
            }
            2 => {
                expect(wire, LEN, at)?;
                value = span(v);
            }
            _ => return Err((Rule::UnknownField, at)),
        }
    }
    let (s, e) = value;
    let mut strings = false;
    let mut r = Reader::new(b, s, e);
    match &b[type_url.0..type_url.1] {
        ARRAY_TYPE_URL => {
            while let Some((number, wire, v, at)) = r.next()? {
                if number != 1 {
                    return Err((Rule::UnknownField, at));
                }
                expect(wire, LEN, at)?;
                let (s, e) = span(v);
                strings |= basic(c, b, s, e)?;
            }
        }
        MAP_TYPE_URL => {
            while let Some((number, wire, v, at)) = r.next()? {
                if number != 1 {
                    return Err((Rule::UnknownField, at));
                }
                expect(wire, LEN, at)?;
                let (s, e) = span(v);
                let mut entry = Reader::new(b, s, e);
                while let Some((number, wire, v, at)) = entry.next()? {
                    expect(wire, LEN, at)?;
                    match number {
                        1 => utf8(b, span(v))?,
                        2 => {
                            let (s, e) = span(v);
                            strings |= basic(c, b, s, e)?;
                        }
                        _ => return Err((Rule::UnknownField, at)),
                    }
                }
            }
        }
        _ => return Err((Rule::BadAnyType, type_url.0.max(start))),
    }
    Ok(strings)
}

/// Validates a `BasicTypes`; returns whether its (last) value is a string or bytes.
fn basic(c: &PointChecker, b: &[u8], start: usize, end: usize) -> Result<bool, Fail> {
    let mut strings = false;
    let mut r = Reader::new(b, start, end);
    while let Some((number, wire, v, at)) = r.next()? {
        strings = match number {
            1 | 2 | 4 => {
                expect(wire, VARINT, at)?;
                false
            }
            3 => {
                expect(wire, I64, at)?;
                false
            }
            5 | 6 => {
                expect(wire, LEN, at)?;
                let (s, e) = span(v);
                if number == 6 {
                    utf8(b, (s, e))?;
                }
                c.field_value(e - s).map_err(|r| (r, s))?;
                true
            }
            _ => return Err((Rule::UnknownField, at)),
        };
    }
    Ok(strings)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Category, Limits, RuleActions};

    /// A tiny protobuf writer for hand-made cases.
    #[derive(Default)]
    struct W(Vec<u8>);
    impl W {
        fn varint(mut self, mut v: u64) -> Self {
            while v >= 0x80 {
                self.0.push((v as u8) | 0x80);
                v >>= 7;
            }
            self.0.push(v as u8);
            self
        }
        fn tag(self, n: u32, wire: u8) -> Self {
            self.varint(u64::from(n) << 3 | u64::from(wire))
        }
        fn len(self, n: u32, bytes: &[u8]) -> Self {
            let mut w = self.tag(n, LEN).varint(bytes.len() as u64);
            w.0.extend_from_slice(bytes);
            w
        }
        fn int(self, n: u32, v: u64) -> Self {
            self.tag(n, VARINT).varint(v)
        }
        fn f64(self, n: u32, v: f64) -> Self {
            let mut w = self.tag(n, I64);
            w.0.extend_from_slice(&v.to_le_bytes());
            w
        }
    }

    fn f_int(key: &str, v: u64) -> Vec<u8> {
        W::default().len(1, key.as_bytes()).int(2, v).0
    }
    fn f_str(key: &str, v: &str, tag: bool) -> Vec<u8> {
        W::default()
            .len(1, key.as_bytes())
            .len(11, v.as_bytes())
            .int(8, u64::from(tag))
            .0
    }
    fn pt(name: &str, fields: &[Vec<u8>]) -> Vec<u8> {
        let mut w = W::default().len(1, name.as_bytes());
        for f in fields {
            w = w.len(2, f);
        }
        w.int(3, 1_700_000_000_000_000_000).0
    }
    fn batch(points: &[Vec<u8>]) -> Vec<u8> {
        let mut w = W::default();
        for p in points {
            w = w.len(1, p);
        }
        w.0
    }
    fn run(category: Category, body: &[u8]) -> Result<Verdict, Rejection> {
        let mut c = PointChecker::new(Limits::default(), RuleActions::default(), category);
        validate(&mut c, body)
    }
    fn rule(category: Category, body: &[u8]) -> Rule {
        run(category, body).expect_err("must be rejected").rule
    }

    #[test]
    fn valid_batch_counts_points() {
        let body = batch(&[
            pt("cpu", &[f_str("host", "a", true), f_int("usage", 5)]),
            pt("mem", &[W::default().len(1, b"free").f64(4, 1.5).0]),
        ]);
        assert_eq!(run(Category::Metric, &body).unwrap().points, 2);
        assert_eq!(run(Category::Metric, &[]).unwrap().points, 0);
    }

    #[test]
    fn auxiliary_warns_and_debugs_tolerated() {
        let warn = W::default().len(1, b"type").len(2, b"msg").0;
        let debug = W::default().len(1, b"info").0;
        let mut p = pt("cpu", &[f_int("usage", 5)]);
        p.extend(W::default().len(4, &warn).len(5, &debug).0);
        assert_eq!(run(Category::Metric, &batch(&[p])).unwrap().points, 1);
        let bad_warn = W::default().len(3, b"x").0;
        let mut p = pt("cpu", &[f_int("usage", 5)]);
        p.extend(W::default().len(4, &bad_warn).0);
        assert_eq!(rule(Category::Metric, &batch(&[p])), Rule::UnknownField);
    }

    #[test]
    fn any_array_and_map_accepted_and_checked() {
        let elems = W::default()
            .len(1, &W::default().int(1, 5).0)
            .len(1, &W::default().int(1, 6).0);
        let any = W::default().len(1, ARRAY_TYPE_URL).len(2, &elems.0);
        let f = W::default().len(1, b"arr").len(7, &any.0).0;
        assert!(run(Category::Metric, &batch(&[pt("m", &[f])])).is_ok());

        let entry = W::default()
            .len(1, b"k")
            .len(2, &W::default().len(6, b"v").0);
        let map = W::default().len(1, &entry.0);
        let any = W::default().len(2, &map.0).len(1, MAP_TYPE_URL);
        let f = W::default().len(1, b"map").len(7, &any.0).0;
        let body = batch(&[pt("m", std::slice::from_ref(&f))]);
        assert!(run(Category::Logging, &body).is_ok());
        assert_eq!(rule(Category::Metric, &body), Rule::MetricStringField);

        let any = W::default()
            .len(1, b"type.googleapis.com/point.Other")
            .len(2, &map.0);
        let f = W::default().len(1, b"x").len(7, &any.0).0;
        assert_eq!(
            rule(Category::Logging, &batch(&[pt("m", &[f])])),
            Rule::BadAnyType
        );

        let bad_utf8 = W::default().len(1, &W::default().len(6, &[0xff]).0);
        let any = W::default().len(1, ARRAY_TYPE_URL).len(2, &bad_utf8.0);
        let f = W::default().len(1, b"x").len(7, &any.0).0;
        assert_eq!(
            rule(Category::Logging, &batch(&[pt("m", &[f])])),
            Rule::InvalidUtf8
        );
    }

    #[test]
    fn schema_violations_rejected() {
        let c = Category::Logging;
        // top level: unknown field, wrong wire type
        assert_eq!(rule(c, &W::default().len(2, b"").0), Rule::UnknownField);
        assert_eq!(rule(c, &W::default().int(1, 3).0), Rule::WrongWireType);
        // truncated length and truncated varint
        assert_eq!(rule(c, &[0x0a, 0x05, 0x01]), Rule::Truncated);
        assert_eq!(rule(c, &[0x0a, 0x80]), Rule::Truncated);
        // eleven-byte varint, and a tenth byte > 1
        let mut long = vec![0x0a];
        long.extend([0xff; 10]);
        long.push(0x00);
        assert_eq!(rule(c, &long), Rule::BadVarint);
        let mut ten = vec![0x0a];
        ten.extend([0xff; 9]);
        ten.push(0x02);
        assert_eq!(rule(c, &ten), Rule::BadVarint);
        // field number 0, group wire type
        assert_eq!(rule(c, &[0x02, 0x00]), Rule::UnknownField);
        assert_eq!(rule(c, &[0x0b]), Rule::WrongWireType);
        // point: name as varint
        let p = W::default().int(1, 5).0;
        assert_eq!(rule(c, &batch(&[p])), Rule::WrongWireType);
        // field: i as a string
        let f = W::default().len(1, b"k").len(2, b"x").0;
        assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::WrongWireType);
        // field: unknown number 13
        let f = W::default().len(1, b"k").int(2, 1).int(13, 1).0;
        assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::UnknownField);
    }

    #[test]
    fn point_model_violations_rejected() {
        let c = Category::Logging;
        assert_eq!(
            rule(c, &batch(&[pt("", &[f_int("a", 1)])])),
            Rule::MissingMeasurement
        );
        assert_eq!(rule(c, &batch(&[pt("m", &[])])), Rule::MissingFields);
        let f = W::default().len(1, b"k").0;
        assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::MissingValue);
        let f = W::default().len(1, b"k").int(2, 1).int(8, 1).0;
        assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::TagNotString);
        let f = W::default().int(2, 1).0;
        assert_eq!(rule(c, &batch(&[pt("m", &[f])])), Rule::EmptyKey);
        let dup = [f_int("a", 1), f_str("a", "x", true)];
        assert_eq!(rule(c, &batch(&[pt("m", &dup)])), Rule::DuplicateKey);
        let f = f_str("k", "\u{ff}", false);
        let mut bad = f.clone();
        let pos = bad.iter().rposition(|&x| x == 0xbf).unwrap();
        bad[pos] = 0xff;
        assert_eq!(rule(c, &batch(&[pt("m", &[bad])])), Rule::InvalidUtf8);
        assert_eq!(
            rule(Category::Metric, &batch(&[pt("m", &[f])])),
            Rule::MetricStringField
        );
        let bytes = W::default().len(1, b"k").len(6, &[0xff]).0;
        assert_eq!(
            rule(Category::Metric, &batch(&[pt("m", &[bytes])])),
            Rule::MetricStringField
        );
        let e = run(c, &batch(&[pt("ok", &[f_int("a", 1)]), pt("m", &[])])).unwrap_err();
        assert_eq!(e.position, Position::Point(Some(1)));
    }

    #[test]
    fn last_value_of_oneof_wins() {
        // s then i: the value is an integer, allowed in metric
        let f = W::default().len(1, b"k").len(11, b"x").int(2, 1).0;
        assert!(run(Category::Metric, &batch(&[pt("m", &[f])])).is_ok());
        // i then s: a string
        let f = W::default().len(1, b"k").int(2, 1).len(11, b"x").0;
        assert_eq!(
            rule(Category::Metric, &batch(&[pt("m", &[f])])),
            Rule::MetricStringField
        );
    }

    #[test]
    fn limits_apply() {
        let limits = Limits {
            max_tag_value_bytes: 2,
            max_field_value_bytes: 3,
            ..Limits::default()
        };
        let mut c = PointChecker::new(limits, RuleActions::default(), Category::Logging);
        let body = batch(&[pt("m", &[f_str("t", "abc", true), f_int("x", 1)])]);
        assert_eq!(
            validate(&mut c, &body).unwrap_err().rule,
            Rule::TagValueTooLong
        );
        let body = batch(&[pt("m", &[f_str("t", "abcd", false)])]);
        assert_eq!(
            validate(&mut c, &body).unwrap_err().rule,
            Rule::FieldValueTooLong
        );
    }
}
