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
//! Every field number and wire type is checked against this schema, and `Any` values are walked
//! as the array or map they declare. Nesting is fixed by the schema (at most six levels), so
//! there is no recursion on input.
//!
//! # What Guance reads (gogo's generated decoder, then cliutils' checker)
//!
//! - A repeated occurrence of a singular field replaces the earlier one (`name`, `time`, a
//!   field's `key`, `is_tag` and its `val` oneof, an `Any`'s members).
//! - A field without a value is kept (DataKit's Pipeline makes them); a point without fields
//!   is kept (DataKit's metric checker leaves them).
//! - Time 0 means "no timestamp"; any other time is multiplied by the request's precision.
//! - `±Inf` becomes `u64::MAX` / `i64::MIN` as a float; NaN stays.
//! - Bytes that are not UTF-8 are kept ([`Rule::InvalidUtf8`] counts them by default).
//! - Keys repeated in a point: the checker drops them (both copies of a pair; the rules of its
//!   in-place compaction are reproduced in the reading).
//!
//! # Stricter than Guance, all deliberate
//!
//! - Unknown field numbers and group wire types are refused (gogo skips them): a field we cannot
//!   see is a field we cannot validate. DataKit sends none.
//! - The point-model limits are refused where Guance's checker would truncate, an empty name
//!   where it would rename it, an empty key where it would drop it, and a key or tag value with
//!   a newline or a trailing backslash where it would rewrite it: DataKit's own checker has
//!   already done all of these before it sends.
//! - A tag whose value is not a string, or has none, is refused: Guance's checker panics on it.
//! - An `Any` must be a `point.Array` or a `point.Map` of `BasicTypes`.

use crate::point::{PointChecker, Spelling};
use crate::reading::{Point, Sink, Time, Value as Reading, clamp_infinite};
use crate::swar;
use crate::verdict::{Excerpt, Position, Precision, Rejection, Rule, RuleCounts, Verdict};

const ARRAY_TYPE_URL: &[u8] = b"type.googleapis.com/point.Array";
const MAP_TYPE_URL: &[u8] = b"type.googleapis.com/point.Map";

const VARINT: u8 = 0;
const I64: u8 = 1;
const LEN: u8 = 2;
const I32: u8 = 5;

type Fail = (Rule, usize);

/// One-byte keys (field number << 3 | wire type) of the fields DataKit writes.
const KEY_1_LEN: u8 = 1 << 3 | LEN;
const KEY_2_LEN: u8 = 2 << 3 | LEN;
const KEY_2_VARINT: u8 = 2 << 3 | VARINT;
const KEY_3_VARINT: u8 = 3 << 3 | VARINT;
const KEY_5_VARINT: u8 = 5 << 3 | VARINT;
const KEY_8_VARINT: u8 = 8 << 3 | VARINT;
const KEY_9_VARINT: u8 = 9 << 3 | VARINT;
const KEY_11_LEN: u8 = 11 << 3 | LEN;

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

    /// The key byte at the cursor, when the cursor is not at the end.
    #[inline(always)]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Past a one-byte key at `at` whose wire type is LEN: the value's span (what [`Self::next`]
    /// reads for it, with the same errors).
    #[inline(always)]
    fn len_after_key(&mut self, at: usize) -> Result<(usize, usize), Fail> {
        self.i += 1;
        let len = self.varint()?;
        if len > (self.b.len() - self.i) as u64 {
            return Err((Rule::Truncated, at));
        }
        let start = self.i;
        self.i += len as usize;
        Ok((start, self.i))
    }

    /// Past a one-byte key whose wire type is VARINT: the value (as [`Self::next`] reads it).
    #[inline(always)]
    fn varint_after_key(&mut self) -> Result<u64, Fail> {
        self.i += 1;
        self.varint()
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

#[inline]
fn varint(v: Value) -> u64 {
    match v {
        Value::Varint(x) => x,
        Value::Span(..) => 0,
    }
}

fn f64_at(b: &[u8], (s, _): (usize, usize)) -> f64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[s..s + 8]);
    f64::from_le_bytes(w)
}

/// One key-value of the point being read, in body order (Guance keeps tags and fields in one
/// list, and its duplicate rule depends on that order).
type Kv = (Vec<u8>, bool, Reading);

/// What one batch's walk carries. `SHORTCUTS`: read the fields DataKit writes (one-byte keys)
/// without the general dispatch; off only to compare the two readings (tests, fuzzing).
struct Walk<'a, 'c, S, const SHORTCUTS: bool> {
    b: &'a [u8],
    c: &'c mut PointChecker,
    nanos: i64,
    counts: RuleCounts,
    /// Whether this point holds bytes that are not UTF-8.
    bad_utf8: bool,
    sink: &'c mut S,
    kvs: Vec<Kv>,
    pt: Point,
}

/// Validates a whole `PBPoints` batch.
pub(crate) fn validate<S: Sink>(
    checker: &mut PointChecker,
    body: &[u8],
    precision: Precision,
    sink: &mut S,
) -> Result<Verdict, Rejection> {
    validate_with::<S, true>(checker, body, precision, sink)
}

/// [`validate`], with or without the shortcuts for the fields DataKit writes: both must give
/// the same verdict, rejection and reading on every input.
pub(crate) fn validate_with<S: Sink, const SHORTCUTS: bool>(
    checker: &mut PointChecker,
    body: &[u8],
    precision: Precision,
    sink: &mut S,
) -> Result<Verdict, Rejection> {
    let mut w = Walk::<S, SHORTCUTS> {
        b: body,
        c: checker,
        nanos: precision.nanos_per_unit(),
        counts: RuleCounts::default(),
        bad_utf8: false,
        sink,
        kvs: Vec::new(),
        pt: Point::new(),
    };
    let mut points = 0u64;
    let mut r = Reader::new(body, 0, body.len());
    loop {
        // DataKit's points, each after the one-byte key of field 1, LEN.
        if SHORTCUTS && r.peek() == Some(KEY_1_LEN) {
            let at = r.i;
            let (s, e) = r
                .len_after_key(at)
                .map_err(|f| rejection(body, None, 0, f))?;
            w.point(s, e)
                .map_err(|f| rejection(body, Some(points), s, f))?;
            points += 1;
            continue;
        }
        let field = r.next().map_err(|f| rejection(body, None, 0, f))?;
        let Some((number, wire, value, at)) = field else {
            break;
        };
        if number != 1 {
            return Err(rejection(body, None, at, (Rule::UnknownField, at)));
        }
        expect(wire, LEN, at).map_err(|f| rejection(body, None, at, f))?;
        let (s, e) = span(value);
        w.point(s, e)
            .map_err(|f| rejection(body, Some(points), s, f))?;
        points += 1;
    }
    Ok(Verdict {
        points,
        counted: w.counts,
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

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Val {
    None,
    Scalar,
    Bytes(usize, usize),
    Str(usize, usize),
    Any { strings: bool },
}

impl<S: Sink, const SHORTCUTS: bool> Walk<'_, '_, S, SHORTCUTS> {
    /// Records text that must be UTF-8 (or is counted as not).
    #[inline(always)]
    fn utf8(&mut self, (s, e): (usize, usize)) {
        let text = &self.b[s..e];
        if !(swar::is_ascii(text) || simdutf8::basic::from_utf8(text).is_ok()) {
            self.bad_utf8 = true;
        }
    }

    /// Validates one `PBPoint` in `b[start..end]`.
    fn point(&mut self, start: usize, end: usize) -> Result<(), Fail> {
        let b = self.b;
        self.c.line(end - start).map_err(|r| (r, start))?;
        self.c.begin();
        self.bad_utf8 = false;
        if S::ACTIVE {
            self.kvs.clear();
        }
        let mut name = (start, start);
        let mut time = 0u64;
        let mut r = Reader::new(b, start, end);
        loop {
            // The fields DataKit writes, each after its one-byte key: the same reading as the
            // general path below, without its dispatch.
            let at = r.i;
            if SHORTCUTS {
                match r.peek() {
                    None => break,
                    Some(KEY_1_LEN) => {
                        name = r.len_after_key(at)?;
                        continue;
                    }
                    Some(KEY_2_LEN) => {
                        let (s, e) = r.len_after_key(at)?;
                        self.field(s, e)?;
                        continue;
                    }
                    Some(KEY_3_VARINT) => {
                        time = r.varint_after_key()?;
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let Some((number, wire, value, at)) = r.next()? else {
                break;
            };
            match number {
                1 => {
                    expect(wire, LEN, at)?;
                    name = span(value);
                }
                2 => {
                    expect(wire, LEN, at)?;
                    let (s, e) = span(value);
                    self.field(s, e)?;
                }
                3 => {
                    expect(wire, VARINT, at)?;
                    time = varint(value);
                }
                4 => {
                    expect(wire, LEN, at)?;
                    let (s, e) = span(value);
                    self.strings_only(s, e, &[1, 2])?;
                }
                5 => {
                    expect(wire, LEN, at)?;
                    let (s, e) = span(value);
                    self.strings_only(s, e, &[1])?;
                }
                _ => return Err((Rule::UnknownField, at)),
            }
        }
        self.utf8(name);
        self.c
            .measurement(name.1 - name.0)
            .map_err(|r| (r, name.0.max(start)))?;
        // Guance multiplies every non-zero time by the precision, without an overflow check.
        let time = match time as i64 {
            0 => Time::Unset,
            t => Time::At(
                t.checked_mul(self.nanos)
                    .ok_or((Rule::BadTimestamp, start))?,
            ),
        };
        if self.bad_utf8 {
            self.c.invalid_utf8().map_err(|r| (r, start))?;
        }
        self.c.finish(&mut self.counts).map_err(|r| (r, start))?;
        if S::ACTIVE {
            self.emit(name, time);
        }
        Ok(())
    }

    fn emit(&mut self, name: (usize, usize), time: Time) {
        let mut kvs = core::mem::take(&mut self.kvs);
        if self.c.has_duplicates() {
            compact_like_guance(&mut kvs);
        }
        self.pt.clear();
        self.pt.name.extend_from_slice(&self.b[name.0..name.1]);
        self.pt.time = time;
        for (k, is_tag, v) in kvs.drain(..) {
            match (is_tag, v) {
                (true, Reading::Str(s)) => self.pt.tags.push((k, s)),
                (_, v) => self.pt.fields.push((k, v)),
            }
        }
        self.kvs = kvs;
        self.sink.point(&self.pt);
    }

    /// A message whose fields are all `string`s with the given numbers (`Warn`, `Debug`).
    fn strings_only(&mut self, start: usize, end: usize, numbers: &[u32]) -> Result<(), Fail> {
        let mut r = Reader::new(self.b, start, end);
        while let Some((number, wire, value, at)) = r.next()? {
            if !numbers.contains(&number) {
                return Err((Rule::UnknownField, at));
            }
            expect(wire, LEN, at)?;
            self.utf8(span(value));
        }
        Ok(())
    }

    /// Validates one `Field` in `b[start..end]` and records it in the point.
    #[inline(always)]
    fn field(&mut self, start: usize, end: usize) -> Result<(), Fail> {
        let b = self.b;
        let mut key = (start, start);
        let mut is_tag = false;
        let mut val = Val::None;
        // The last value, for the reading.
        let mut last: Option<(u32, Value)> = None;
        let mut r = Reader::new(b, start, end);
        loop {
            // The members DataKit writes, each after its one-byte key: the same reading as the
            // general path below, without its dispatch.
            let at = r.i;
            if SHORTCUTS {
                match r.peek() {
                    None => break,
                    Some(KEY_1_LEN) => {
                        key = r.len_after_key(at)?;
                        continue;
                    }
                    Some(key_byte @ (KEY_2_VARINT | KEY_3_VARINT | KEY_5_VARINT)) => {
                        let v = r.varint_after_key()?;
                        val = Val::Scalar;
                        if S::ACTIVE {
                            last = Some((u32::from(key_byte >> 3), Value::Varint(v)));
                        }
                        continue;
                    }
                    Some(KEY_8_VARINT) => {
                        is_tag = r.varint_after_key()? != 0;
                        continue;
                    }
                    Some(KEY_9_VARINT) => {
                        r.varint_after_key()?;
                        continue;
                    }
                    Some(KEY_11_LEN) => {
                        let (s, e) = r.len_after_key(at)?;
                        self.utf8((s, e));
                        val = Val::Str(s, e);
                        if S::ACTIVE {
                            last = Some((11, Value::Span(s, e)));
                        }
                        continue;
                    }
                    Some(_) => {}
                }
            }
            let Some((number, wire, value, at)) = r.next()? else {
                break;
            };
            match number {
                1 => {
                    expect(wire, LEN, at)?;
                    key = span(value);
                }
                2 | 3 | 5 => {
                    expect(wire, VARINT, at)?;
                    val = Val::Scalar;
                    if S::ACTIVE {
                        last = Some((number, value));
                    }
                }
                4 => {
                    expect(wire, I64, at)?;
                    val = Val::Scalar;
                    if S::ACTIVE {
                        last = Some((number, value));
                    }
                }
                6 => {
                    expect(wire, LEN, at)?;
                    let (s, e) = span(value);
                    val = Val::Bytes(s, e);
                    if S::ACTIVE {
                        last = Some((number, value));
                    }
                }
                11 => {
                    expect(wire, LEN, at)?;
                    let (s, e) = span(value);
                    self.utf8((s, e));
                    val = Val::Str(s, e);
                    if S::ACTIVE {
                        last = Some((number, value));
                    }
                }
                7 => {
                    expect(wire, LEN, at)?;
                    let (s, e) = span(value);
                    let strings = self.any(s, e)?;
                    val = Val::Any { strings };
                    if S::ACTIVE {
                        last = Some((number, value));
                    }
                }
                8 => {
                    expect(wire, VARINT, at)?;
                    is_tag = varint(value) != 0;
                }
                9 => expect(wire, VARINT, at)?,
                10 | 12 => {
                    expect(wire, LEN, at)?;
                    self.utf8(span(value));
                }
                _ => return Err((Rule::UnknownField, at)),
            }
        }
        let key_bytes = &b[key.0..key.1];
        // The UTF-8 check and Guance's rewrite check (`adjusted_by_guance`) from one look.
        let (ascii, newline) = swar::ascii_and_contains(key_bytes, b'\n');
        if !ascii && simdutf8::basic::from_utf8(key_bytes).is_err() {
            self.bad_utf8 = true;
        }
        if newline || key_bytes.last() == Some(&b'\\') {
            return Err((Rule::NewlineOrTrailingBackslash, key.0.max(start)));
        }
        self.c
            .key(b, key.0, key.1, Spelling::Plain, is_tag)
            .map_err(|r| (r, key.0.max(start)))?;
        match val {
            Val::Str(s, e) if is_tag => {
                if adjusted_by_guance(&b[s..e]) {
                    return Err((Rule::NewlineOrTrailingBackslash, s));
                }
                self.c.tag_value(e - s).map_err(|r| (r, s))?;
            }
            // Guance's checker panics on a tag that is not a string.
            _ if is_tag => return Err((Rule::TagNotString, start)),
            Val::Str(s, e) | Val::Bytes(s, e) => {
                self.c.field_value(e - s).map_err(|r| (r, s))?;
                self.c.string_field().map_err(|r| (r, start))?;
            }
            Val::Any { strings: true } => self.c.string_field().map_err(|r| (r, start))?,
            Val::None | Val::Scalar | Val::Any { strings: false } => {}
        }
        if S::ACTIVE {
            let v = match last {
                None => Reading::None,
                Some((number, v)) => self.read(number, v),
            };
            self.kvs.push((key_bytes.to_vec(), is_tag, v));
        }
        Ok(())
    }

    /// Guance's reading of a (valid) `Field.val` member.
    fn read(&self, number: u32, v: Value) -> Reading {
        let b = self.b;
        match number {
            2 => Reading::Int(varint(v) as i64),
            3 => Reading::Uint(varint(v)),
            4 => Reading::Float(clamp_infinite(f64_at(b, span(v)))),
            5 => Reading::Bool(varint(v) != 0),
            6 => {
                let (s, e) = span(v);
                Reading::Bytes(b[s..e].to_vec())
            }
            11 => {
                let (s, e) = span(v);
                Reading::Str(b[s..e].to_vec())
            }
            _ => {
                let (s, e) = span(v);
                read_any(b, s, e)
            }
        }
    }

    /// Validates a `google.protobuf.Any` holding a `point.Array` or `point.Map`; returns
    /// whether it holds string or bytes values.
    fn any(&mut self, start: usize, end: usize) -> Result<bool, Fail> {
        let b = self.b;
        let mut type_url = (start, start);
        let mut value = (start, start);
        let mut r = Reader::new(b, start, end);
        while let Some((number, wire, v, at)) = r.next()? {
            match number {
                1 => {
                    expect(wire, LEN, at)?;
                    type_url = span(v);
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
                    strings |= self.basic(s, e)?;
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
                            1 => self.utf8(span(v)),
                            2 => {
                                let (s, e) = span(v);
                                strings |= self.basic(s, e)?;
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
    fn basic(&mut self, start: usize, end: usize) -> Result<bool, Fail> {
        let mut strings = false;
        let mut r = Reader::new(self.b, start, end);
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
                        self.utf8((s, e));
                    }
                    self.c.field_value(e - s).map_err(|r| (r, s))?;
                    true
                }
                _ => return Err((Rule::UnknownField, at)),
            };
        }
        Ok(strings)
    }
}

/// Whether Guance's checker would rewrite this key or tag value (`adjustKV`: a newline becomes
/// a space, trailing backslashes are dropped).
#[inline(always)]
fn adjusted_by_guance(text: &[u8]) -> bool {
    text.last() == Some(&b'\\') || swar::contains(text, b'\n')
}

/// Guance's reading of a (valid) `Any`: the array's or map's scalars.
fn read_any(b: &[u8], start: usize, end: usize) -> Reading {
    let mut type_url = (start, start);
    let mut value = (start, start);
    let mut r = Reader::new(b, start, end);
    while let Ok(Some((number, _, v, _))) = r.next() {
        match number {
            1 => type_url = span(v),
            _ => value = span(v),
        }
    }
    let mut r = Reader::new(b, value.0, value.1);
    if &b[type_url.0..type_url.1] == ARRAY_TYPE_URL {
        let mut out = Vec::new();
        while let Ok(Some((_, _, v, _))) = r.next() {
            let (s, e) = span(v);
            out.push(read_basic(b, s, e));
        }
        Reading::Array(out)
    } else {
        let mut out: Vec<(Vec<u8>, Reading)> = Vec::new();
        while let Ok(Some((_, _, v, _))) = r.next() {
            let (s, e) = span(v);
            let mut entry = Reader::new(b, s, e);
            let (mut key, mut val) = (Vec::new(), Reading::None);
            while let Ok(Some((number, _, v, _))) = entry.next() {
                let (s, e) = span(v);
                if number == 1 {
                    key = b[s..e].to_vec();
                } else {
                    val = read_basic(b, s, e);
                }
            }
            // A protobuf map keeps the last entry of a key.
            match out.iter_mut().find(|(k, _)| *k == key) {
                Some(slot) => slot.1 = val,
                None => out.push((key, val)),
            }
        }
        Reading::Map(out)
    }
}

fn read_basic(b: &[u8], start: usize, end: usize) -> Reading {
    let mut out = Reading::None;
    let mut r = Reader::new(b, start, end);
    while let Ok(Some((number, _, v, _))) = r.next() {
        out = match number {
            1 => Reading::Int(varint(v) as i64),
            2 => Reading::Uint(varint(v)),
            3 => Reading::Float(f64_at(b, span(v))),
            4 => Reading::Bool(varint(v) != 0),
            5 => {
                let (s, e) = span(v);
                Reading::Bytes(b[s..e].to_vec())
            }
            _ => {
                let (s, e) = span(v);
                Reading::Str(b[s..e].to_vec())
            }
        };
    }
    out
}

/// Guance's checker on keys that occur more than once (`checkKVs` with `keyConflict`): it
/// walks the list, drops a key that occurs more than once in the list *as it stands*, and
/// compacts the kept ones to the front in place, so later copies may survive an earlier drop.
pub(crate) fn compact_like_guance(kvs: &mut Vec<Kv>) {
    let mut idx = 0;
    for i in 0..kvs.len() {
        let count = kvs.iter().filter(|(k, _, _)| *k == kvs[i].0).count();
        if count <= 1 {
            kvs.swap(idx, i);
            // Go writes `kvs[idx] = x` without clearing slot i: keep a copy of it there.
            if idx != i {
                kvs[i] = kvs[idx].clone();
            }
            idx += 1;
        }
    }
    kvs.truncate(idx);
}

/// Whether the walk with and without its shortcuts gives the same verdict or rejection and the
/// same reading of `body` (the protobuf fuzz target and the tests check it on every input).
pub(crate) fn shortcuts_agree(category: crate::Category, body: &[u8]) -> bool {
    let run = |shortcuts: bool| {
        let config = crate::ValidationConfig::default();
        let mut checker = PointChecker::new(config.limits, config.actions, category);
        let mut points = crate::reading::Points::default();
        let precision = Precision::Nanoseconds;
        let result = if shortcuts {
            validate_with::<_, true>(&mut checker, body, precision, &mut points)
        } else {
            validate_with::<_, false>(&mut checker, body, precision, &mut points)
        };
        // Debug, not PartialEq: a NaN read the same way is the same reading.
        format!("{result:?} {:?}", points.0)
    };
    run(true) == run(false)
}

#[cfg(test)]
mod tests;
