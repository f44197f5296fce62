//! Line protocol, Guance dialect: a single-pass, zero-copy validator.
//!
//! Grammar (InfluxDB line protocol plus DataKit's extensions):
//!
//! ```text
//! batch     = { blank | comment | point } ;   lines end with LF or CRLF
//! point     = measurement { "," key "=" tagvalue } " "+ field { "," field } [ " "+ timestamp ] " "*
//! field     = key "=" value
//! value     = int "i" | uint "u" | float | bool | string | string "b" | array
//! int       = [ "-" ] digits          (i64)       uint  = digits (u64)
//! float     = [ "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ]
//! bool      = t | T | true | True | TRUE | f | F | false | False | FALSE
//! string    = '"' { any byte but '"' and '\', or '\"', or '\\', or '\' } '"'   (may span lines)
//! binary    = string "b"   whose content is padded standard base64
//! array     = "[" [ scalar { "," scalar } ] "]"   all elements of one type, no nesting
//! timestamp = [ "-" ] digits, in the batch's precision; must fit in i64 nanoseconds
//! ```
//!
//! In measurements, keys and tag values a backslash escapes the next byte; `\,` `\=` `\ ` `\\`
//! unescape to the byte, any other pair stands for itself (as in the Go and IOx parsers).
//!
//! # Differences from the `influxdb-line-protocol` crate (IOx), all deliberate
//!
//! The differential test in `tests/differential.rs` checks both parsers agree on everything
//! else. We are stricter where the IOx parser accepts things no writer produces and a storage
//! layer would mis-handle, and we implement the Guance extensions:
//!
//! - Guance extensions (IOx rejects): `"…"b` base64 binary values and `[…]` arrays.
//! - CRLF line ends are accepted (IOx leaves the `\r` in the line and rejects it).
//! - Trailing spaces after the field set without a timestamp are accepted (IOx accepts them only
//!   after a timestamp).
//! - An unescaped `,` in a tag or field key is rejected (IOx makes it part of the key).
//! - A backslash directly before a line end or CR is rejected (IOx treats it as an escape).
//! - A tab, NUL or CR in a measurement, key or tag value is rejected (IOx allows some).
//! - A trailing comma after the field set is rejected (IOx ignores it).
//! - Point-model limits, category rules and duplicate keys (IOx leaves those to later layers).
//! - Timestamps must fit in i64 nanoseconds after applying the precision.
//!
//! The body must be UTF-8 as a whole; it is checked once up front (SIMD), and a failure is
//! reported at the line that holds the bad byte.

use crate::point::{PointChecker, Spelling};
use crate::swar;
use crate::verdict::{Excerpt, Position, Precision, Rejection, Rule, RuleCounts, Verdict};

/// Byte classes; a set bit means "stop scanning" in that context.
const STOP_MEASUREMENT: u8 = 1;
const STOP_KEY: u8 = 2;
const STOP_TAG_VALUE: u8 = 4;
/// Stop bytes that need a closer look: escapes and control characters.
const SPECIAL: u8 = 8;

static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE;
    t[b' ' as usize] = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE;
    t[b'\\' as usize] = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE | SPECIAL;
    t[b'\n' as usize] = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE;
    t[b'\r' as usize] = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE | SPECIAL;
    t[b'\t' as usize] = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE | SPECIAL;
    t[0] = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE | SPECIAL;
    t[b'=' as usize] = STOP_KEY;
    t
};

/// A failure inside a point: the rule and the byte offset where it was found.
type Fail = (Rule, usize);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Int,
    Uint,
    Float,
    Bool,
    Str,
    Binary,
}

/// Validates a whole line-protocol batch.
pub(crate) fn validate(
    checker: &mut PointChecker,
    body: &[u8],
    precision: Precision,
) -> Result<Verdict, Rejection> {
    if let Err(e) = simdutf8::basic::from_utf8(body) {
        let _ = e;
        let offset = simdutf8::compat::from_utf8(body)
            .err()
            .map_or(0, |e| e.valid_up_to());
        let start = memchr::memrchr(b'\n', &body[..offset]).map_or(0, |p| p + 1);
        return Err(rejection(body, start, (Rule::InvalidUtf8, offset)));
    }
    let mut parser = Parser {
        b: body,
        c: checker,
        nanos: precision.nanos_per_unit(),
        counts: RuleCounts::default(),
    };
    let mut points = 0u64;
    let mut i = 0;
    let n = body.len();
    while i < n {
        match body[i] {
            b' ' | b'\t' | b'\n' => i += 1,
            b'\r' if body.get(i + 1) == Some(&b'\n') => i += 2,
            b'#' => {
                i = match memchr::memchr(b'\n', &body[i..]) {
                    Some(p) => i + p + 1,
                    None => n,
                }
            }
            _ => {
                let start = i;
                i = parser.point(i).map_err(|f| rejection(body, start, f))?;
                points += 1;
            }
        }
    }
    Ok(Verdict {
        points,
        counted: parser.counts,
    })
}

fn rejection(body: &[u8], start: usize, (rule, offset): Fail) -> Rejection {
    let line = 1 + memchr::memchr_iter(b'\n', &body[..start]).count() as u64;
    Rejection {
        position: Position::Line(line),
        offset,
        rule,
        excerpt: Excerpt::new(body, start),
    }
}

struct Parser<'a, 'c> {
    b: &'a [u8],
    c: &'c mut PointChecker,
    nanos: i64,
    counts: RuleCounts,
}

impl Parser<'_, '_> {
    /// Parses one point starting at `start`; returns the offset after its line end.
    fn point(&mut self, start: usize) -> Result<usize, Fail> {
        let b = self.b;
        let n = b.len();
        self.c.begin();

        // measurement
        let (mut i, escapes) = self.scan(start, STOP_MEASUREMENT)?;
        self.c
            .measurement(i - start - escapes)
            .map_err(|r| (r, start))?;

        // tags
        while i < n && b[i] == b',' {
            let key_start = i + 1;
            let (key_end, escapes) = self.scan(key_start, STOP_KEY)?;
            if b.get(key_end) != Some(&b'=') {
                return Err((Rule::BadTag, key_end));
            }
            self.c
                .key(b, key_start, key_end, spelling(escapes), true)
                .map_err(|r| (r, key_start))?;
            let value_start = key_end + 1;
            let (value_end, escapes) = self.scan(value_start, STOP_TAG_VALUE)?;
            if value_end == value_start {
                return Err((Rule::BadTag, value_start));
            }
            self.c
                .tag_value(value_end - value_start - escapes)
                .map_err(|r| (r, value_start))?;
            i = value_end;
        }
        match b.get(i) {
            Some(b' ') => {}
            None | Some(b'\n') => return Err((Rule::MissingFields, i)),
            Some(_) => return Err((Rule::UnexpectedCharacter, i)),
        }
        while i < n && b[i] == b' ' {
            i += 1;
        }

        // fields
        loop {
            let key_start = i;
            let (key_end, escapes) = self.scan(key_start, STOP_KEY)?;
            if b.get(key_end) != Some(&b'=') {
                let at_end = matches!(b.get(key_end), None | Some(b'\n' | b'\r'));
                if key_end == key_start && at_end && self.c.fields() == 0 {
                    return Err((Rule::MissingFields, key_end));
                }
                return Err((Rule::BadField, key_end));
            }
            self.c
                .key(b, key_start, key_end, spelling(escapes), false)
                .map_err(|r| (r, key_start))?;
            i = self.field_value(key_end + 1)?;
            match b.get(i) {
                Some(b',') => i += 1,
                None | Some(b' ' | b'\n' | b'\r') => break,
                Some(_) => return Err((Rule::BadFieldValue, i)),
            }
        }

        // timestamp
        if i < n && b[i] == b' ' {
            while i < n && b[i] == b' ' {
                i += 1;
            }
            if i < n && (b[i] == b'-' || b[i].is_ascii_digit()) {
                i = self.timestamp(i)?;
                while i < n && b[i] == b' ' {
                    i += 1;
                }
            }
        }

        // line end
        let end = match b.get(i) {
            None => n,
            Some(b'\n') => i + 1,
            Some(b'\r') if b.get(i + 1) == Some(&b'\n') => i + 2,
            Some(_) => return Err((Rule::TrailingContent, i)),
        };
        self.c.line(i - start).map_err(|r| (r, start))?;
        self.c.finish(&mut self.counts).map_err(|r| (r, start))?;
        Ok(end)
    }

    /// Scans a name, key or tag value from `i` up to a stop byte of `class`, honouring
    /// escapes. Returns the stop offset and the number of escape pairs.
    #[inline(always)]
    fn scan(&self, i: usize, class: u8) -> Result<(usize, usize), Fail> {
        let (i, found) = stop(self.b, i, class);
        if found & SPECIAL != 0 {
            return self.scan_special(i, class);
        }
        Ok((i, 0))
    }

    /// The rest of [`Self::scan`] from a backslash or control byte at `i`.
    #[cold]
    #[inline(never)]
    fn scan_special(&self, mut i: usize, class: u8) -> Result<(usize, usize), Fail> {
        let b = self.b;
        let n = b.len();
        let mut escapes = 0;
        loop {
            if i < n && b[i] == b'\\' {
                match b.get(i + 1) {
                    None | Some(b'\n' | b'\r') => return Err((Rule::TrailingBackslash, i)),
                    Some(b',' | b'=' | b' ' | b'\\') => escapes += 1,
                    Some(_) => {}
                }
                i = stop(b, i + 2, class).0;
                continue;
            }
            if i < n && matches!(b[i], b'\t' | 0) {
                return Err((Rule::UnexpectedCharacter, i));
            }
            if i < n && b[i] == b'\r' && b.get(i + 1) != Some(&b'\n') {
                return Err((Rule::UnexpectedCharacter, i));
            }
            return Ok((i, escapes));
        }
    }

    /// Parses a field value at `i`; returns the offset after it.
    #[inline]
    fn field_value(&mut self, i: usize) -> Result<usize, Fail> {
        let (end, kind) = match self.b.get(i) {
            Some(b'[') => return self.array(i),
            Some(_) => self.scalar(i)?,
            None => return Err((Rule::BadFieldValue, i)),
        };
        if matches!(kind, Kind::Str | Kind::Binary) {
            self.c.string_field().map_err(|r| (r, i))?;
        }
        Ok(end)
    }

    #[inline(always)]
    fn scalar(&mut self, i: usize) -> Result<(usize, Kind), Fail> {
        let first = self.b[i];
        if first.is_ascii_digit() || first == b'-' {
            return number(self.b, i);
        }
        match first {
            b'"' => self.string(i),
            b't' | b'T' | b'f' | b'F' => {
                let b = self.b;
                let mut j = i;
                while j < b.len() && b[j].is_ascii_alphabetic() {
                    j += 1;
                }
                match &b[i..j] {
                    b"t" | b"T" | b"true" | b"True" | b"TRUE" | b"f" | b"F" | b"false"
                    | b"False" | b"FALSE" => Ok((j, Kind::Bool)),
                    _ => Err((Rule::BadFieldValue, i)),
                }
            }
            _ => Err((Rule::BadFieldValue, i)),
        }
    }

    fn string(&mut self, i: usize) -> Result<(usize, Kind), Fail> {
        let b = self.b;
        let mut j = i + 1;
        let mut escapes = 0;
        let close = loop {
            match memchr::memchr2(b'"', b'\\', &b[j..]) {
                None => return Err((Rule::UnterminatedString, i)),
                Some(k) => {
                    let p = j + k;
                    if b[p] == b'"' {
                        break p;
                    }
                    if matches!(b.get(p + 1), Some(b'"' | b'\\')) {
                        escapes += 1;
                        j = p + 2;
                    } else {
                        j = p + 1;
                    }
                }
            }
        };
        let content = &b[i + 1..close];
        if b.get(close + 1) == Some(&b'b') {
            let decoded = base64_len(content).ok_or((Rule::BadBase64, i))?;
            self.c.field_value(decoded).map_err(|r| (r, i))?;
            return Ok((close + 2, Kind::Binary));
        }
        self.c
            .field_value(content.len() - escapes)
            .map_err(|r| (r, i))?;
        Ok((close + 1, Kind::Str))
    }

    fn array(&mut self, open: usize) -> Result<usize, Fail> {
        let b = self.b;
        let mut i = open + 1;
        if b.get(i) == Some(&b']') {
            return Ok(i + 1);
        }
        let mut first = None;
        loop {
            if i >= b.len() || matches!(b[i], b'[' | b']' | b',') {
                return Err((Rule::BadArray, i));
            }
            let (end, kind) = self.scalar(i)?;
            match first {
                None => {
                    first = Some(kind);
                    if matches!(kind, Kind::Str | Kind::Binary) {
                        self.c.string_field().map_err(|r| (r, open))?;
                    }
                }
                Some(k) if k == kind => {}
                Some(_) => return Err((Rule::BadArray, i)),
            }
            i = end;
            match b.get(i) {
                Some(b',') => i += 1,
                Some(b']') => return Ok(i + 1),
                _ => return Err((Rule::BadArray, i)),
            }
        }
    }

    fn timestamp(&self, i: usize) -> Result<usize, Fail> {
        let b = self.b;
        let negative = b[i] == b'-';
        let digits_start = i + usize::from(negative);
        let j = swar::digits_end(b, digits_start);
        let digits = &b[digits_start..j];
        if digits.is_empty() {
            return Err((Rule::BadTimestamp, i));
        }
        if self.nanos == 1 {
            // Nanoseconds: only the range matters, checked on the digits themselves.
            return if fits_i64(digits, negative) {
                Ok(j)
            } else {
                Err((Rule::BadTimestamp, i))
            };
        }
        let magnitude = parse_u64(digits).ok_or((Rule::BadTimestamp, i))?;
        let value = if negative {
            0i64.checked_sub_unsigned(magnitude)
        } else {
            i64::try_from(magnitude).ok()
        };
        match value.and_then(|v| v.checked_mul(self.nanos)) {
            Some(_) => Ok(j),
            None => Err((Rule::BadTimestamp, i)),
        }
    }
}

/// The offset of the first byte at or after `i` that stops a token of `class`, and that
/// byte's class bits (0 at the end of the input).
#[inline(always)]
fn stop(b: &[u8], mut i: usize, class: u8) -> (usize, u8) {
    let with_equals = class & STOP_KEY != 0;
    while let Some(m) = swar::stop_candidates16(b, i, with_equals) {
        if m == 0 {
            i += 16;
            continue;
        }
        i += m.trailing_zeros() as usize;
        let found = CLASS[usize::from(b[i])];
        if found & class != 0 {
            return (i, found);
        }
        i += 1;
    }
    while let Some(v) = swar::load(b, i) {
        let m = swar::stop_candidates(v, with_equals);
        if m == 0 {
            i += 8;
            continue;
        }
        i += swar::first(m);
        let found = CLASS[usize::from(b[i])];
        if found & class != 0 {
            return (i, found);
        }
        // A control byte that is not a stop here: keep going.
        i += 1;
    }
    while i < b.len() {
        let found = CLASS[usize::from(b[i])];
        if found & class != 0 {
            return (i, found);
        }
        i += 1;
    }
    (i, 0)
}

/// Whether decimal `digits` (possibly with leading zeros) fit in an i64 with the given sign.
#[inline]
fn fits_i64(digits: &[u8], negative: bool) -> bool {
    fits(
        digits,
        if negative {
            b"9223372036854775808"
        } else {
            b"9223372036854775807"
        },
    )
}

/// Whether decimal `digits` (possibly with leading zeros) are at most `max` (no leading zeros).
#[inline]
fn fits(digits: &[u8], max: &[u8]) -> bool {
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first..];
    digits.len() < max.len() || (digits.len() == max.len() && digits <= max)
}

#[inline]
fn spelling(escapes: usize) -> Spelling {
    if escapes == 0 {
        Spelling::Plain
    } else {
        Spelling::LineProtocol
    }
}

/// Parses `-?digits` followed by `i`, `u`, or the rest of a float.
#[inline(always)]
fn number(b: &[u8], i: usize) -> Result<(usize, Kind), Fail> {
    let negative = b[i] == b'-';
    let digits_start = i + usize::from(negative);
    let j = swar::digits_end(b, digits_start);
    if j == digits_start {
        return Err((Rule::BadFieldValue, i));
    }
    match b.get(j) {
        Some(b'i') => {
            let digits = &b[digits_start..j];
            if digits.len() > 18 && !fits_i64(digits, negative) {
                return Err((Rule::IntegerOverflow, i));
            }
            Ok((j + 1, Kind::Int))
        }
        Some(b'u') => {
            if negative {
                return Err((Rule::BadFieldValue, i));
            }
            let digits = &b[digits_start..j];
            if digits.len() > 19 && !fits(digits, b"18446744073709551615") {
                return Err((Rule::IntegerOverflow, i));
            }
            Ok((j + 1, Kind::Uint))
        }
        Some(b'.') => {
            let frac = j + 1;
            let j = swar::digits_end(b, frac);
            if j == frac {
                return Err((Rule::BadFieldValue, i));
            }
            exponent(b, i, j)
        }
        Some(b'e' | b'E') => exponent(b, i, j),
        _ => Ok((j, Kind::Float)),
    }
}

#[inline]
fn exponent(b: &[u8], i: usize, mut j: usize) -> Result<(usize, Kind), Fail> {
    if !matches!(b.get(j), Some(b'e' | b'E')) {
        return Ok((j, Kind::Float));
    }
    j += 1;
    if matches!(b.get(j), Some(b'+' | b'-')) {
        j += 1;
    }
    let digits = j;
    while j < b.len() && b[j].is_ascii_digit() {
        j += 1;
    }
    if j == digits {
        return Err((Rule::BadFieldValue, i));
    }
    Ok((j, Kind::Float))
}

/// Parses ASCII digits as a u64; `None` when empty or out of range.
#[inline]
fn parse_u64(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    // Eighteen digits cannot overflow: no checks for them.
    let (head, tail) = digits.split_at(digits.len().min(18));
    let mut v: u64 = 0;
    for &d in head {
        v = v * 10 + u64::from(d - b'0');
    }
    for &d in tail {
        v = v.checked_mul(10)?.checked_add(u64::from(d - b'0'))?;
    }
    Some(v)
}

static BASE64: [bool; 256] = {
    let mut t = [false; 256];
    let mut c = b'A';
    while c <= b'Z' {
        t[c as usize] = true;
        t[(c + 32) as usize] = true;
        c += 1;
    }
    let mut d = b'0';
    while d <= b'9' {
        t[d as usize] = true;
        d += 1;
    }
    t[b'+' as usize] = true;
    t[b'/' as usize] = true;
    t
};

/// The decoded length of padded standard base64, or `None` if it is not valid.
fn base64_len(s: &[u8]) -> Option<usize> {
    if !s.len().is_multiple_of(4) {
        return None;
    }
    let pad = match s {
        [.., b'=', b'='] => 2,
        [.., b'='] => 1,
        _ => 0,
    };
    let body = &s[..s.len() - pad];
    if !body.iter().all(|&c| BASE64[usize::from(c)]) {
        return None;
    }
    Some(s.len() / 4 * 3 - pad)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Action, Category, Limits, RuleActions};

    fn check_with(
        category: Category,
        precision: Precision,
        actions: RuleActions,
        body: &str,
    ) -> Result<Verdict, Rejection> {
        let mut c = PointChecker::new(Limits::default(), actions, category);
        validate(&mut c, body.as_bytes(), precision)
    }

    fn ok(body: &str) -> u64 {
        match check_with(
            Category::Logging,
            Precision::Nanoseconds,
            RuleActions::default(),
            body,
        ) {
            Ok(v) => v.points,
            Err(e) => panic!("{body:?} rejected: {e}"),
        }
    }

    fn bad(body: &str) -> Rejection {
        match check_with(
            Category::Tracing,
            Precision::Nanoseconds,
            RuleActions::default(),
            body,
        ) {
            Ok(v) => panic!("{body:?} accepted: {v:?}"),
            Err(e) => e,
        }
    }

    #[test]
    fn accepted_table() {
        let cases: &[(&str, u64)] = &[
            ("", 0),
            ("\n\n", 0),
            ("# comment only\n", 0),
            ("  # indented comment\n\t\n", 0),
            ("cpu status=1i", 1),
            ("cpu,host=a status=1i 1700000000000000000\n", 1),
            (
                "cpu,host=a status=1i 1700000000000000000\r\nmem status=2i\r\n",
                2,
            ),
            ("cpu status=1i -5", 1),
            ("cpu status=1i 5   ", 1),
            ("cpu status=1i   ", 1),
            ("cpu    status=1i", 1),
            ("  cpu status=1i", 1),
            (
                "cpu\\ load,ho\\,st=a\\ b\\=c status=-9223372036854775808i",
                1,
            ),
            ("cpu status=9223372036854775807i", 1),
            ("cpu status=18446744073709551615u", 1),
            ("cpu status=0000000000000000000000001i", 1),
            ("cpu status=1.5,a=-2,b=3e10,c=4.5E-3,d=6e+2,e=-0.0", 1),
            (
                "cpu status=t,a=T,b=true,c=True,d=TRUE,e=f,f=F,g=false,h=False,i=FALSE",
                1,
            ),
            (
                "log status=\"a \\\"quoted\\\" \\\\ back\\slash, = spaces\"",
                1,
            ),
            ("log status=\"multi\nline\nstring\" 1\nnext status=1i\n", 2),
            ("log status=\"\"", 1),
            (
                "log status=\"aGVsbG8=\"b,e=\"\"b,f=\"aGk=\"b,g=\"YWJj\"b",
                1,
            ),
            (
                "log status=[1i,2i],a=[1u],b=[1.5,2],c=[true,F],d=[\"a\",\"b\"],e=[]",
                1,
            ),
            ("log,t=v=w status=1i", 1),
            ("m\\ x\\y status=1i", 1),
            ("log status=\"ünïcödé 日本\"", 1),
            ("log,tag=日本 status=1i", 1),
        ];
        for (body, points) in cases {
            assert_eq!(ok(body), *points, "{body:?}");
        }
    }

    #[test]
    fn rejected_table() {
        let cases: &[(&str, Rule, usize)] = &[
            ("cpu", Rule::MissingFields, 3),
            ("cpu\n", Rule::MissingFields, 3),
            ("cpu ", Rule::MissingFields, 4),
            ("cpu,host=a", Rule::MissingFields, 10),
            (",host=a f=1i", Rule::MissingMeasurement, 0),
            (" ,host=a f=1i", Rule::MissingMeasurement, 1),
            ("cpu,host f=1i", Rule::BadTag, 8),
            ("cpu,=a f=1i", Rule::EmptyKey, 4),
            ("cpu,host= f=1i", Rule::BadTag, 9),
            ("cpu,a,b=c f=1i", Rule::BadTag, 5),
            ("cpu f", Rule::BadField, 5),
            ("cpu f=", Rule::BadFieldValue, 6),
            ("cpu =1", Rule::EmptyKey, 4),
            ("cpu f=1i,", Rule::BadField, 9),
            ("cpu f=1x", Rule::BadFieldValue, 7),
            ("cpu f=9223372036854775808i", Rule::IntegerOverflow, 6),
            ("cpu f=-9223372036854775809i", Rule::IntegerOverflow, 6),
            ("cpu f=18446744073709551616u", Rule::IntegerOverflow, 6),
            ("cpu f=-1u", Rule::BadFieldValue, 6),
            ("cpu f=1.", Rule::BadFieldValue, 6),
            ("cpu f=.5", Rule::BadFieldValue, 6),
            ("cpu f=+5", Rule::BadFieldValue, 6),
            ("cpu f=1e", Rule::BadFieldValue, 6),
            ("cpu f=1.5i", Rule::BadFieldValue, 9),
            ("cpu f=tru", Rule::BadFieldValue, 6),
            ("cpu f=truE", Rule::BadFieldValue, 6),
            ("cpu f=NaN", Rule::BadFieldValue, 6),
            ("cpu f=\"open", Rule::UnterminatedString, 6),
            ("cpu f=\"esc\\\"", Rule::UnterminatedString, 6),
            ("cpu f=\"a\"x", Rule::BadFieldValue, 9),
            ("cpu f=\"a$b\"b", Rule::BadBase64, 6),
            ("cpu f=\"abc\"b", Rule::BadBase64, 6),
            ("cpu f=\"a=bc\"b", Rule::BadBase64, 6),
            ("cpu f=[1i,2u]", Rule::BadArray, 10),
            ("cpu f=[1i,]", Rule::BadArray, 10),
            ("cpu f=[1i", Rule::BadArray, 9),
            ("cpu f=[[1i]]", Rule::BadArray, 7),
            ("cpu f=1i 12a", Rule::TrailingContent, 11),
            ("cpu f=1i 1 2", Rule::TrailingContent, 11),
            ("cpu f=1i 9223372036854775808", Rule::BadTimestamp, 9),
            ("cpu f=1i\r", Rule::TrailingContent, 8),
            ("cpu f=1i 1\rx", Rule::TrailingContent, 10),
            ("cpu\\", Rule::TrailingBackslash, 3),
            ("cpu\\\n f=1", Rule::TrailingBackslash, 3),
            ("cpu,t=a\\ f=1i", Rule::MissingFields, 13),
            ("cpu\tx f=1i", Rule::UnexpectedCharacter, 3),
            ("cpu,t=a\tb f=1i", Rule::UnexpectedCharacter, 7),
            ("c\0pu f=1i", Rule::UnexpectedCharacter, 1),
            ("cpu f=1i,f=2i", Rule::DuplicateKey, 9),
            ("cpu,f=a f=2i", Rule::DuplicateKey, 8),
            ("cpu,f=a,f=b g=2i", Rule::DuplicateKey, 8),
            ("cpu,a\\ b=a a\\ b=2i", Rule::DuplicateKey, 11),
        ];
        for (body, rule, offset) in cases {
            let e = bad(body);
            assert_eq!((e.rule, e.offset), (*rule, *offset), "{body:?}: {e}");
        }
    }

    #[test]
    fn rejection_reports_line_number_offset_and_excerpt() {
        let body = "ok f=1i\n# comment\n\nok f=2i\nbad f=1x 123\nok f=3i\n";
        let e = bad(body);
        assert_eq!(e.position, Position::Line(5));
        assert_eq!(e.offset, body.find("1x").unwrap() + 1);
        assert_eq!(e.excerpt.as_bytes(), b"bad f=1x 123");
        assert!(e.excerpt.is_truncated());
        assert!(e.to_string().starts_with("line 5, byte"), "{e}");
    }

    #[test]
    fn line_numbers_count_newlines_inside_strings() {
        let body = "a f=\"x\ny\nz\"\nbad\n";
        assert_eq!(bad(body).position, Position::Line(4));
    }

    #[test]
    fn invalid_utf8_reported_at_its_line() {
        let mut body = b"ok f=1i\nok f=\"abc".to_vec();
        body.push(0xff);
        body.extend_from_slice(b"\"\n");
        let mut c = PointChecker::new(Limits::default(), RuleActions::default(), Category::Rum);
        let e = validate(&mut c, &body, Precision::Nanoseconds).unwrap_err();
        assert_eq!(
            (e.rule, e.position, e.offset),
            (Rule::InvalidUtf8, Position::Line(2), 17)
        );
    }

    #[test]
    fn precision_scales_and_overflows() {
        let cats = (Category::Network, RuleActions::default());
        let body = "m f=1i 9223372036\n";
        assert!(check_with(cats.0, Precision::Seconds, cats.1, body).is_ok());
        let body = "m f=1i 9223372037\n";
        let e = check_with(cats.0, Precision::Seconds, cats.1, body).unwrap_err();
        assert_eq!(e.rule, Rule::BadTimestamp);
        let body = "m f=1i 2562047\n";
        assert!(check_with(cats.0, Precision::Hours, cats.1, body).is_ok());
        let body = "m f=1i 2562048\n";
        assert!(check_with(cats.0, Precision::Hours, cats.1, body).is_err());
        let body = "m f=1i -153722867\n";
        assert!(check_with(cats.0, Precision::Minutes, cats.1, body).is_ok());
    }

    #[test]
    fn metric_string_field_rejected_or_counted() {
        let a = RuleActions::default();
        for body in ["cpu f=\"s\"", "cpu f=\"aGk=\"b", "cpu f=[\"a\"]"] {
            let e = check_with(Category::Metric, Precision::Nanoseconds, a, body).unwrap_err();
            assert_eq!(e.rule, Rule::MetricStringField, "{body}");
        }
        assert!(check_with(Category::Metric, Precision::Nanoseconds, a, "cpu f=[1i]").is_ok());
        let count = RuleActions {
            metric_string_field: Action::Count,
            ..a
        };
        let body = "cpu f=\"s\",g=\"t\"\ncpu f=1i\ncpu f=\"x\"\n";
        let v = check_with(Category::Metric, Precision::Nanoseconds, count, body).unwrap();
        assert_eq!((v.points, v.counted.metric_string_field), (3, 2));
    }

    #[test]
    fn logging_and_object_rules() {
        let a = RuleActions::default();
        let n = Precision::Nanoseconds;
        let e = check_with(Category::Logging, n, a, "nginx,source=x status=\"ok\"").unwrap_err();
        assert_eq!(e.rule, Rule::ReservedKey);
        let e = check_with(Category::Logging, n, a, "nginx status=\"ok\",date=1i").unwrap_err();
        assert_eq!((e.rule, e.offset), (Rule::ReservedKey, 18));
        let e = check_with(Category::Object, n, a, "host,class=x name=\"a\"").unwrap_err();
        assert_eq!(e.rule, Rule::ReservedKey);
        let e = check_with(Category::CustomObject, n, a, "h name=\"a\",date=1i").unwrap_err();
        assert_eq!(e.rule, Rule::ReservedKey);
        let v = check_with(Category::Logging, n, a, "nginx message=\"no status\"").unwrap();
        assert_eq!(v.counted.missing_expected_key, 1);
        let v = check_with(Category::Object, n, a, "host,name=a cpu=1i").unwrap();
        assert!(v.counted.is_empty());
        let strict = RuleActions {
            missing_expected_key: Action::Reject,
            ..a
        };
        let e = check_with(Category::Object, n, strict, "host cpu=1i").unwrap_err();
        assert_eq!(e.rule, Rule::MissingExpectedKey);
    }

    #[test]
    fn limits_enforced() {
        let limits = Limits {
            max_tags: 2,
            max_fields: 2,
            max_key_bytes: 4,
            max_tag_value_bytes: 3,
            max_field_value_bytes: 5,
            max_measurement_bytes: 4,
            max_line_bytes: 40,
        };
        let check = |body: &str| {
            let mut c = PointChecker::new(limits, RuleActions::default(), Category::Rum);
            validate(&mut c, body.as_bytes(), Precision::Nanoseconds).map_err(|e| e.rule)
        };
        assert!(check("abcd,a=b,c=d e=1i,f=\"12345\"").is_ok());
        assert!(
            check("ab\\ d,a=b\\ c e=\"1\\\"345\"").is_ok(),
            "lengths are unescaped"
        );
        assert_eq!(check("abcde f=1i"), Err(Rule::MeasurementTooLong));
        assert_eq!(check("a,a=b,c=d,e=f g=1i"), Err(Rule::TooManyTags));
        assert_eq!(check("a e=1i,f=1i,g=1i"), Err(Rule::TooManyFields));
        assert_eq!(check("a abcde=1i"), Err(Rule::KeyTooLong));
        assert_eq!(check("a,t=abcd f=1i"), Err(Rule::TagValueTooLong));
        assert_eq!(check("a f=\"123456\""), Err(Rule::FieldValueTooLong));
        assert_eq!(check("a f=\"MTIzNDU2\"b"), Err(Rule::FieldValueTooLong));
        assert_eq!(check("a f=[\"123456\"]"), Err(Rule::FieldValueTooLong));
        assert_eq!(
            check("a f=1i 10000000000000000000000000"),
            Err(Rule::BadTimestamp)
        );
        assert_eq!(
            check("a f=1i,g=1.000000000000000000000000000000"),
            Err(Rule::LineTooLong)
        );
    }

    #[test]
    fn base64_len_rules() {
        assert_eq!(base64_len(b""), Some(0));
        assert_eq!(base64_len(b"aGk="), Some(2));
        assert_eq!(base64_len(b"aA=="), Some(1));
        assert_eq!(base64_len(b"YWJj"), Some(3));
        assert_eq!(base64_len(b"YW=j"), None);
        assert_eq!(base64_len(b"Y==="), None);
        assert_eq!(base64_len(b"YWJ"), None);
    }
}
