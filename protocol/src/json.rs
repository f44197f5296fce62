//! JSON points (`application/json`): a strict, zero-copy validator.
//!
//! The body is an array of point objects (`datakit-protocol.md` §2.3):
//!
//! ```text
//! [ { "measurement": string, "tags": { string: string, … }, "fields": { string: value, … },
//!     "time": integer nanoseconds }, … ]
//! value = number | string | true | false | null | [ scalar, … ]   (no nested objects)
//! ```
//!
//! `measurement` is required, `tags`, `fields` and `time` optional; any other key, or a key
//! twice, is a [`Rule::BadPointShape`]. The JSON itself must be RFC 8259: no trailing commas,
//! no comments, no control characters or lone surrogates in strings, numbers in the JSON
//! grammar, UTF-8. The schema fixes the nesting depth, so nothing here recurses on input.
//!
//! # What Guance reads
//!
//! Guance first tries each element as the protobuf-JSON form of a `PBPoint` (which fails on the
//! `measurement` key that form does not have), then decodes it with Go's `encoding/json` into
//! `{measurement, tags, fields, time}`: every number becomes a `float64`, `null` a field with no
//! value, an array of one scalar type an array; a key given twice in `tags` or `fields` keeps
//! its last value, a tag replaces a field of its key. Time 0 (or none) is "no timestamp"; a
//! negative one would be replaced by the receive time, so it is refused; any other time is
//! multiplied by the request's precision. What Go would read differently is refused: invalid
//! UTF-8 and lone surrogates (replaced by U+FFFD), numbers that overflow a float (an error),
//! nested objects and mixed or empty arrays (no value), a `measurement` Go would match by
//! another case, a newline or trailing backslash in a key or tag value (rewritten by the
//! checker).

pub(crate) use crate::json_string::{unescape_into, unicode_escape};
use crate::point::{PointChecker, Spelling};
use crate::reading::{Point, Sink, Time, Value};
use crate::verdict::{Excerpt, Position, Precision, Rejection, Rule, RuleCounts, Verdict};

type Fail = (Rule, usize);

/// Validates a whole JSON batch.
pub(crate) fn validate<S: Sink>(
    checker: &mut PointChecker,
    body: &[u8],
    precision: Precision,
    sink: &mut S,
) -> Result<Verdict, Rejection> {
    if simdutf8::basic::from_utf8(body).is_err() {
        let offset = simdutf8::compat::from_utf8(body)
            .err()
            .map_or(0, |e| e.valid_up_to());
        return Err(rejection(body, None, offset, (Rule::InvalidUtf8, offset)));
    }
    let mut p = Parser {
        b: body,
        i: 0,
        c: checker,
        counts: RuleCounts::default(),
        nanos: precision.nanos_per_unit(),
        sink,
        pt: Point::new(),
        scratch: Vec::new(),
    };
    let mut points = 0u64;
    p.ws();
    p.byte(b'[', Rule::BadPointShape)
        .map_err(|f| rejection(body, None, 0, f))?;
    p.ws();
    if p.peek() == Some(b']') {
        p.i += 1;
    } else {
        loop {
            let start = p.i;
            p.point()
                .map_err(|f| rejection(body, Some(points), start, f))?;
            points += 1;
            match p.after_element() {
                Some(true) => {}
                Some(false) => break,
                None => return Err(rejection(body, Some(points), p.i, (Rule::JsonSyntax, p.i))),
            }
        }
    }
    p.ws();
    if p.i != body.len() {
        return Err(rejection(body, None, p.i, (Rule::JsonSyntax, p.i)));
    }
    Ok(Verdict {
        points,
        counted: p.counts,
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

/// A scanned string: its raw content span and unescaped length.
#[derive(Debug, Clone, Copy)]
struct Str {
    start: usize,
    end: usize,
    len: usize,
    escaped: bool,
}

impl Str {
    fn spelling(self) -> Spelling {
        if self.escaped {
            Spelling::Json
        } else {
            Spelling::Plain
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Number,
    Str,
    Bool,
    Null,
}

struct Parser<'a, 'c, S> {
    b: &'a [u8],
    i: usize,
    c: &'c mut PointChecker,
    counts: RuleCounts,
    nanos: i64,
    sink: &'c mut S,
    /// The reading of the point being parsed (only with an active sink).
    pt: Point,
    /// Unescaped text, for the checks on escaped keys and tag values.
    scratch: Vec<u8>,
}

impl<S: Sink> Parser<'_, '_, S> {
    /// The unescaped bytes of a scanned string.
    fn text(&self, s: Str) -> Vec<u8> {
        let raw = &self.b[s.start..s.end];
        if !s.escaped {
            return raw.to_vec();
        }
        let mut out = Vec::with_capacity(s.len);
        // The scanner has checked every escape.
        let _ = unescape_into(raw, &mut out);
        out
    }

    /// Refuses a key or tag value Guance's checker would rewrite. Only an escaped string can
    /// hold a newline or a backslash.
    fn not_adjusted(&mut self, s: Str) -> Result<(), Fail> {
        if !s.escaped {
            return Ok(());
        }
        self.scratch.clear();
        let _ = unescape_into(&self.b[s.start..s.end], &mut self.scratch);
        if self.scratch.last() == Some(&b'\\') || self.scratch.contains(&b'\n') {
            return Err((Rule::NewlineOrTrailingBackslash, s.start));
        }
        Ok(())
    }

    #[inline]
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    #[inline]
    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.i += 1;
        }
    }

    /// After an array element: `,` (another follows: `Some(true)`, the space after it
    /// skipped) or `]` (the end: `Some(false)`), the space before either skipped; `None` for
    /// anything else.
    #[inline]
    fn after_element(&mut self) -> Option<bool> {
        self.ws();
        let more = match self.peek() {
            Some(b',') => true,
            Some(b']') => false,
            _ => return None,
        };
        self.i += 1;
        if more {
            self.ws();
        }
        Some(more)
    }

    #[inline]
    fn byte(&mut self, want: u8, rule: Rule) -> Result<(), Fail> {
        if self.peek() == Some(want) {
            self.i += 1;
            Ok(())
        } else {
            Err((rule, self.i))
        }
    }

    /// Scans a string starting at its opening quote.
    fn string(&mut self) -> Result<Str, Fail> {
        let open = self.i;
        self.byte(b'"', Rule::JsonSyntax)?;
        let start = self.i;
        let mut len = 0;
        let mut escaped = false;
        loop {
            let rest = &self.b[self.i..];
            let Some(k) = rest
                .iter()
                .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
            else {
                return Err((Rule::JsonSyntax, open));
            };
            len += k;
            self.i += k;
            match self.b[self.i] {
                b'"' => {
                    self.i += 1;
                    return Ok(Str {
                        start,
                        end: self.i - 1,
                        len,
                        escaped,
                    });
                }
                b'\\' => {
                    escaped = true;
                    let at = self.i;
                    match self.b.get(self.i + 1) {
                        Some(b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't') => {
                            self.i += 2;
                            len += 1;
                        }
                        Some(b'u') => {
                            let (c, used) = unicode_escape(&self.b[at..])
                                .map_err(|()| (Rule::JsonSyntax, at))?;
                            self.i += used;
                            len += c.len_utf8();
                        }
                        _ => return Err((Rule::JsonSyntax, at)),
                    }
                }
                _ => return Err((Rule::JsonSyntax, self.i)),
            }
        }
    }

    /// Scans a number; returns whether it is an integer literal.
    fn number(&mut self) -> Result<bool, Fail> {
        let b = self.b;
        let start = self.i;
        let mut i = self.i;
        if b.get(i) == Some(&b'-') {
            i += 1;
        }
        match b.get(i) {
            Some(b'0') => i += 1,
            Some(b'1'..=b'9') => {
                while matches!(b.get(i), Some(b'0'..=b'9')) {
                    i += 1;
                }
            }
            _ => return Err((Rule::JsonSyntax, start)),
        }
        let mut integer = true;
        if b.get(i) == Some(&b'.') {
            integer = false;
            i += 1;
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err((Rule::JsonSyntax, start));
            }
        }
        if matches!(b.get(i), Some(b'e' | b'E')) {
            integer = false;
            i += 1;
            if matches!(b.get(i), Some(b'+' | b'-')) {
                i += 1;
            }
            let digits = i;
            while matches!(b.get(i), Some(b'0'..=b'9')) {
                i += 1;
            }
            if i == digits {
                return Err((Rule::JsonSyntax, start));
            }
        }
        self.i = i;
        Ok(integer)
    }

    /// Scans a literal `true`, `false` or `null`; returns the literal.
    fn literal(&mut self) -> Result<&'static [u8], Fail> {
        for lit in [&b"true"[..], b"false", b"null"] {
            if self.b[self.i..].starts_with(lit) {
                self.i += lit.len();
                return Ok(lit);
            }
        }
        Err((Rule::JsonSyntax, self.i))
    }

    /// Calls `each` for every member of an object, positioned at the value.
    fn object(
        &mut self,
        mut each: impl FnMut(&mut Self, Str) -> Result<(), Fail>,
    ) -> Result<(), Fail> {
        self.byte(b'{', Rule::BadPointShape)?;
        self.ws();
        if self.peek() == Some(b'}') {
            self.i += 1;
            return Ok(());
        }
        loop {
            self.ws();
            let key = self.string()?;
            self.ws();
            self.byte(b':', Rule::JsonSyntax)?;
            self.ws();
            each(self, key)?;
            self.ws();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {
                    self.i += 1;
                    return Ok(());
                }
                _ => return Err((Rule::JsonSyntax, self.i)),
            }
        }
    }

    fn point(&mut self) -> Result<(), Fail> {
        let start = self.i;
        self.c.begin();
        if S::ACTIVE {
            self.pt.clear();
        }
        let mut seen = 0u8;
        let mut measurement = None;
        self.object(|p, key| {
            let name = &p.b[key.start..key.end];
            let bit = match name {
                b"measurement" => 1,
                b"tags" => 2,
                b"fields" => 4,
                b"time" => 8,
                _ => return Err((Rule::BadPointShape, key.start)),
            };
            if seen & bit != 0 {
                return Err((Rule::BadPointShape, key.start));
            }
            seen |= bit;
            match bit {
                1 => {
                    if p.peek() != Some(b'"') {
                        return Err((Rule::BadPointShape, p.i));
                    }
                    measurement = Some(p.string()?);
                    Ok(())
                }
                2 => p.object(|p, k| {
                    p.not_adjusted(k)?;
                    p.c.key(p.b, k.start, k.end, k.spelling(), true)
                        .map_err(|r| (r, k.start))?;
                    if p.peek() != Some(b'"') {
                        return Err((Rule::TagNotString, p.i));
                    }
                    let v = p.string()?;
                    p.not_adjusted(v)?;
                    p.c.tag_value(v.len).map_err(|r| (r, v.start))?;
                    if S::ACTIVE {
                        let (k, v) = (p.text(k), p.text(v));
                        p.pt.tags.push((k, v));
                    }
                    Ok(())
                }),
                4 => p.object(|p, k| {
                    p.not_adjusted(k)?;
                    p.c.key(p.b, k.start, k.end, k.spelling(), false)
                        .map_err(|r| (r, k.start))?;
                    let at = p.i;
                    p.field_value()?;
                    if S::ACTIVE {
                        let v = read_value(&p.b[at..p.i]);
                        let k = p.text(k);
                        p.pt.fields.push((k, v));
                    }
                    Ok(())
                }),
                _ => p.time(),
            }
        })?;
        self.c.line(self.i - start).map_err(|r| (r, start))?;
        let Some(m) = measurement else {
            return Err((Rule::MissingMeasurement, start));
        };
        self.c.measurement(m.len).map_err(|r| (r, m.start))?;
        self.c.finish(&mut self.counts).map_err(|r| (r, start))?;
        if S::ACTIVE {
            self.pt.name = self.text(m);
            if self.c.has_duplicates() {
                dedup_like_go(&mut self.pt);
            }
            self.sink.point(&self.pt);
        }
        Ok(())
    }

    /// `time`: an integer literal (Go decodes it into an `int64`).
    fn time(&mut self) -> Result<(), Fail> {
        let at = self.i;
        if !matches!(self.peek(), Some(b'-' | b'0'..=b'9')) || !self.number()? {
            return Err((Rule::BadTimestamp, at));
        }
        let digits = std::str::from_utf8(&self.b[at..self.i]).unwrap_or_default();
        let t = digits
            .parse::<i64>()
            .map_err(|_| (Rule::BadTimestamp, at))?;
        if t < 0 {
            return Err((Rule::NegativeTimestamp, at));
        }
        if t != 0 {
            let t = t.checked_mul(self.nanos).ok_or((Rule::BadTimestamp, at))?;
            if S::ACTIVE {
                self.pt.time = Time::At(t);
            }
        }
        Ok(())
    }

    fn scalar(&mut self) -> Result<Kind, Fail> {
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                self.c.field_value(s.len).map_err(|r| (r, s.start))?;
                Ok(Kind::Str)
            }
            Some(b'-' | b'0'..=b'9') => {
                let at = self.i;
                self.number()?;
                // Go's decoder refuses a number that overflows a float64.
                match std::str::from_utf8(&self.b[at..self.i])
                    .ok()
                    .and_then(|t| t.parse::<f64>().ok())
                {
                    Some(f) if f.is_finite() => Ok(Kind::Number),
                    _ => Err((Rule::BadFieldValue, at)),
                }
            }
            Some(b't' | b'f' | b'n') => match self.literal()? {
                b"null" => Ok(Kind::Null),
                _ => Ok(Kind::Bool),
            },
            _ => Err((Rule::BadFieldValue, self.i)),
        }
    }

    fn field_value(&mut self) -> Result<(), Fail> {
        let at = self.i;
        let kind = if self.peek() == Some(b'[') {
            self.i += 1;
            self.ws();
            if self.peek() == Some(b']') {
                // Go's point library makes no value of an empty array.
                return Err((Rule::EmptyArray, at));
            }
            let mut first = None;
            loop {
                let elem = self.i;
                if matches!(self.peek(), Some(b'[' | b'{')) {
                    return Err((Rule::BadArray, elem));
                }
                let kind = self.scalar()?;
                match first {
                    None if kind == Kind::Null => return Err((Rule::BadArray, elem)),
                    None => first = Some(kind),
                    Some(k) if k == kind => {}
                    Some(_) => return Err((Rule::BadArray, elem)),
                }
                match self.after_element() {
                    Some(true) => {}
                    Some(false) => break,
                    None => return Err((Rule::JsonSyntax, self.i)),
                }
            }
            first
        } else {
            Some(self.scalar()?)
        };
        if kind == Some(Kind::Str) {
            self.c.string_field().map_err(|r| (r, at))?;
        }
        Ok(())
    }
}

/// Guance's reading of a (valid) JSON field value.
fn read_value(text: &[u8]) -> Value {
    let text = text.trim_ascii();
    match text.first() {
        Some(b'[') => {
            let mut out = Vec::new();
            let inner = &text[1..text.len() - 1];
            let mut i = 0;
            while i < inner.len() {
                let start = i;
                if inner[i] == b'"' {
                    i += 1;
                    while inner[i] != b'"' {
                        i += if inner[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                } else {
                    while i < inner.len() && inner[i] != b',' {
                        i += 1;
                    }
                }
                out.push(read_value(&inner[start..i]));
                while i < inner.len() && (inner[i] == b',' || inner[i].is_ascii_whitespace()) {
                    i += 1;
                }
            }
            Value::Array(out)
        }
        Some(b'"') => {
            let mut out = Vec::new();
            let _ = unescape_into(&text[1..text.len() - 1], &mut out);
            Value::Str(out)
        }
        Some(b't') => Value::Bool(true),
        Some(b'f') => Value::Bool(false),
        Some(b'n') => Value::None,
        _ => Value::Float(
            std::str::from_utf8(text)
                .ok()
                .and_then(|t| t.parse().ok())
                .unwrap_or(f64::NAN),
        ),
    }
}

/// Go's maps keep the last value of a key; a tag then replaces the field of its key.
fn dedup_like_go(pt: &mut Point) {
    let mut tags: Vec<(Vec<u8>, Vec<u8>)> = Vec::with_capacity(pt.tags.len());
    for (k, v) in pt.tags.drain(..) {
        match tags.iter_mut().find(|(t, _)| *t == k) {
            Some(slot) => slot.1 = v,
            None => tags.push((k, v)),
        }
    }
    let mut fields: Vec<(Vec<u8>, Value)> = Vec::with_capacity(pt.fields.len());
    for (k, v) in pt.fields.drain(..) {
        match fields.iter_mut().find(|(f, _)| *f == k) {
            Some(slot) => slot.1 = v,
            None => fields.push((k, v)),
        }
    }
    fields.retain(|(k, _)| !tags.iter().any(|(t, _)| t == k));
    pt.tags = tags;
    pt.fields = fields;
}

#[cfg(test)]
mod tests;
