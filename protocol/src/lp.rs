//! Line protocol, Guance dialect: a single-pass, zero-copy validator that accepts exactly what
//! Guance's parser (`GuanceCloud/influxdb1-client` `models`, under cliutils `point`) reads the
//! same way, and nothing it reads differently.
//!
//! Grammar (InfluxDB line protocol plus DataKit's extensions), as accepted:
//!
//! ```text
//! batch     = { blank | comment | point } ;    lines end with LF (never CRLF)
//! point     = measurement { "," key "=" tagvalue } " "+ field { "," field } [ " "+ timestamp ] " "*
//! field     = key "=" value
//! value     = int "i" | uint "u" | float | bool | string | string "b" | array
//! int       = [ "-" ] digits          (i64)       uint  = digits (u64)
//! float     = [ "-" ] digits [ "." digits ] [ ( "e" | "E" ) [ "+" | "-" ] digits ]   (finite)
//! bool      = t | T | true | True | TRUE | f | F | false | False | FALSE
//! string    = '"' { any byte but '"' and '\', or '\"', or '\\', or '\' } '"'   (may span lines)
//! binary    = string "b"   whose content is non-empty padded standard base64
//! array     = "[" [ scalar { "," scalar } ] "]"   one element type, no nesting
//! timestamp = digits, nanoseconds after the batch's precision; 0 means "no timestamp"
//! ```
//!
//! # What Guance reads, and where we refuse rather than read two ways
//!
//! The reading ([`crate::reading`]) follows Guance's code, which is irregular:
//!
//! - Unescaping depends on the position: a measurement and a field key unescape `\,` `\ ` `\=`
//!   `\"`; a tag key and value only `\,` `\ ` `\=`; a string value `\\` and `\"`. Every other
//!   backslash stays (`\\` in a name is two backslashes).
//! - Guance's scanners decide that a separator is escaped by looking at the byte before it,
//!   while its line splitter and unescapers pair backslashes from the left; the two disagree on
//!   an escaped backslash right before a separator, so that is [`Rule::AmbiguousEscape`].
//! - Guance splits lines with a scanner that tracks quotes and brackets even in comments and
//!   in lines that start with whitespace: such a line is re-split here the way Guance splits it
//!   and refused ([`Rule::BadComment`], [`Rule::TrailingContent`]) unless both end at the same
//!   byte. Brackets in a field key would be counted too ([`Rule::BracketInKey`]).
//! - An unescaped `=` in a tag value, CRLF line ends, an empty body, two tags with one key, a
//!   timestamp outside `i64` nanoseconds minus Guance's two sentinels, a float that overflows, a
//!   series key over 65,535 bytes: Guance's parser refuses them, so do we.
//! - What Guance accepts but then silently drops or rewrites is refused: an empty binary value
//!   (the point is dropped), a string array whose first element holds a comma (the field is
//!   dropped), a negative timestamp (replaced by the receive time), a line without a timestamp
//!   under a precision (the receive time multiplied by the precision). An empty array `[]` is
//!   the exception: DataKit writes one (with dict fields on) and Guance drops that field, so
//!   it is accepted and read as no field.
//! - Stricter than Guance and harmless: no tab or NUL at the start of the first field key
//!   (Guance skips it); no trailing backslash; no leading `+`, `.5` or `1.`; no `inf` or `nan`
//!   in arrays; no spaces in arrays; UTF-8 is checked (a rule that only counts by default, as
//!   Guance keeps the bytes). Tabs, CRs and NULs inside names, keys and tag values are kept,
//!   as Guance keeps them.

use crate::point::{PointChecker, Spelling, unescape_line_protocol};
use crate::reading::{BASE64, Point, Sink, Time, Value, base64_decode};
use crate::swar;
use crate::verdict::{Action, Excerpt, Position, Precision, Rejection, Rule, RuleCounts, Verdict};

/// Byte classes; a set bit means "stop scanning" in that context.
const STOP_MEASUREMENT: u8 = 1;
const STOP_KEY: u8 = 2;
const STOP_TAG_VALUE: u8 = 4;
/// Stop bytes that need a closer look: escapes, and brackets in a field key.
const SPECIAL: u8 = 8;
/// A field key: a tag key's stop bytes, and `[` `]` (refused there).
const STOP_FIELD_KEY: u8 = 16;
const STOPS: u8 = STOP_MEASUREMENT | STOP_KEY | STOP_TAG_VALUE | STOP_FIELD_KEY;

/// Tabs, CRs and NULs are ordinary bytes inside a name, key or tag value, as they are to
/// Guance (it skips tabs and NULs only where a token starts: see [`Parser::point`]).
static CLASS: [u8; 256] = {
    let mut t = [0u8; 256];
    t[b',' as usize] = STOPS;
    t[b' ' as usize] = STOPS;
    t[b'\\' as usize] = STOPS | SPECIAL;
    t[b'\n' as usize] = STOPS;
    t[b'=' as usize] = STOP_KEY | STOP_TAG_VALUE | STOP_FIELD_KEY;
    t[b'[' as usize] = STOP_FIELD_KEY | SPECIAL;
    t[b']' as usize] = STOP_FIELD_KEY | SPECIAL;
    t
};

/// The largest measurement-plus-tags ("series key") Guance's parser takes, with a field key
/// and its 4-byte separator.
const MAX_SERIES_KEY: usize = 65535;

/// The largest timestamp Guance's parser takes (`models.MaxNanoTime`).
const MAX_NANO_TIME: u64 = i64::MAX as u64 - 1;

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
pub(crate) fn validate<S: Sink>(
    checker: &mut PointChecker,
    body: &[u8],
    precision: Precision,
    sink: &mut S,
) -> Result<Verdict, Rejection> {
    if body.is_empty() {
        return Err(rejection(body, 0, (Rule::EmptyBody, 0)));
    }
    let utf8 = simdutf8::basic::from_utf8(body).is_ok();
    if !utf8 && checker.actions().invalid_utf8 == Action::Reject {
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
        utf8,
        sink,
        pt: Point::new(),
        resplit: false,
    };
    let mut points = 0u64;
    let mut i = 0;
    let n = body.len();
    while i < n {
        let line_start = i;
        match body[i] {
            b'\n' => i += 1,
            b'#' => i = comment(body, line_start).map_err(|f| rejection(body, line_start, f))?,
            b' ' | b'\t' | 0 => {
                // Guance skips spaces, tabs and NULs before a point or comment, but its line
                // splitter has seen them: re-split such a line as it does.
                let j = line_start + skip_whitespace(&body[line_start..]);
                match body.get(j) {
                    None => break,
                    Some(b'\n') => i = j + 1,
                    Some(b'#') => {
                        i = comment(body, line_start)
                            .map_err(|f| rejection(body, line_start, f))?;
                    }
                    Some(_) => {
                        let end = parser.point(j).map_err(|f| rejection(body, j, f))?;
                        let newline = if body[end - 1] == b'\n' { end - 1 } else { n };
                        if go_scan_line(body, line_start) != newline {
                            return Err(rejection(body, j, (Rule::TrailingContent, j)));
                        }
                        parser.emit();
                        points += 1;
                        i = end;
                    }
                }
            }
            _ => {
                i = parser
                    .point(line_start)
                    .map_err(|f| rejection(body, line_start, f))?;
                parser.emit();
                points += 1;
            }
        }
    }
    Ok(Verdict {
        points,
        counted: parser.counts,
    })
}

/// A comment line from `line_start`: returns the offset after it, or refuses it when Guance's
/// line splitter would not end it at its line end.
fn comment(b: &[u8], line_start: usize) -> Result<usize, Fail> {
    let end = memchr::memchr(b'\n', &b[line_start..]).map_or(b.len(), |p| line_start + p);
    if go_scan_line(b, line_start) != end {
        return Err((Rule::BadComment, line_start));
    }
    Ok((end + 1).min(b.len()))
}

/// Spaces, tabs and NULs, as Go's `skipWhitespace` skips them.
fn skip_whitespace(b: &[u8]) -> usize {
    b.iter()
        .position(|&c| !matches!(c, b' ' | b'\t' | 0))
        .unwrap_or(b.len())
}

/// Where Guance's line splitter (`models.scanLine`) ends the line that starts at `i`: the
/// offset of the newline, the end of the body, or the byte after a bracket that broke it. A
/// faithful transcription, run only on comments and lines that start with whitespace.
pub(crate) fn go_scan_line(buf: &[u8], mut i: usize) -> usize {
    let (mut quoted, mut fields) = (false, false);
    let (mut equals, mut commas, mut brackets) = (0u64, 0u64, 0i64);
    while i < buf.len() {
        let c = buf[i];
        if c == b'\\' && i + 2 < buf.len() {
            i += 2;
            continue;
        }
        if c == b' ' {
            fields = true;
        }
        if fields {
            if !quoted && c == b'=' {
                i += 1;
                equals += 1;
                continue;
            } else if !quoted && c == b',' {
                if brackets == 0 {
                    commas += 1;
                }
                i += 1;
                continue;
            } else if !quoted && c == b'[' {
                i += 1;
                brackets += 1;
                if brackets > 1 {
                    break;
                }
                continue;
            } else if !quoted && c == b']' {
                i += 1;
                brackets -= 1;
                if brackets < 0 {
                    break;
                }
                continue;
            } else if c == b'"' && equals > commas {
                i += 1;
                quoted = !quoted;
                continue;
            }
        }
        if c == b'\n' && !quoted {
            break;
        }
        i += 1;
    }
    i
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

struct Parser<'a, 'c, S> {
    b: &'a [u8],
    c: &'c mut PointChecker,
    nanos: i64,
    counts: RuleCounts,
    /// Whether the whole body is UTF-8 (else each point is checked, to count the rule).
    utf8: bool,
    sink: &'c mut S,
    /// The reading of the point being parsed (only with an active sink).
    pt: Point,
    /// Whether this point must be re-split as Guance's line splitter splits it.
    resplit: bool,
}

impl<S: Sink> Parser<'_, '_, S> {
    /// Hands the point just parsed to the sink.
    #[inline(always)]
    fn emit(&mut self) {
        if S::ACTIVE {
            // Guance types an empty array as "no value" and drops the field before anything
            // else looks at it.
            self.pt
                .fields
                .retain(|(_, v)| !matches!(v, Value::Array(a) if a.is_empty()));
            if self.c.has_duplicates() {
                dedup_like_guance(&mut self.pt);
            }
            self.sink.point(&self.pt);
        }
    }

    /// Parses one point starting at `start`; returns the offset after its line end.
    fn point(&mut self, start: usize) -> Result<usize, Fail> {
        let b = self.b;
        let n = b.len();
        self.c.begin();
        self.resplit = false;
        if S::ACTIVE {
            self.pt.clear();
        }

        // measurement
        let (mut i, escapes) = self.scan(start, STOP_MEASUREMENT, true)?;
        self.c
            .measurement(i - start - escapes)
            .map_err(|r| (r, start))?;
        if S::ACTIVE {
            unescape_line_protocol(&b[start..i], true, &mut self.pt.name);
        }

        // tags
        while i < n && b[i] == b',' {
            let key_start = i + 1;
            let (key_end, escapes) = self.scan(key_start, STOP_KEY, false)?;
            if b.get(key_end) != Some(&b'=') {
                return Err((Rule::BadTag, key_end));
            }
            self.c
                .key(b, key_start, key_end, spelling(escapes, false), true)
                .map_err(|r| (r, key_start))?;
            if self.c.last_duplicate() {
                return Err((Rule::DuplicateTag, key_start));
            }
            let value_start = key_end + 1;
            let (value_end, escapes) = self.scan(value_start, STOP_TAG_VALUE, false)?;
            if value_end == value_start || b.get(value_end) == Some(&b'=') {
                return Err((Rule::BadTag, value_end));
            }
            self.c
                .tag_value(value_end - value_start - escapes)
                .map_err(|r| (r, value_start))?;
            if S::ACTIVE {
                let mut k = Vec::new();
                let mut v = Vec::new();
                unescape_line_protocol(&b[key_start..key_end], false, &mut k);
                unescape_line_protocol(&b[value_start..value_end], false, &mut v);
                self.pt.tags.push((k, v));
            }
            i = value_end;
        }
        let series = i - start;
        match b.get(i) {
            Some(b' ') => {}
            None | Some(b'\n') => return Err((Rule::MissingFields, i)),
            Some(_) => return Err((Rule::UnexpectedCharacter, i)),
        }
        while i < n && b[i] == b' ' {
            i += 1;
        }
        // Guance skips tabs and NULs here too: a first key starting with one reads otherwise.
        if matches!(b.get(i), Some(b'\t' | 0)) {
            return Err((Rule::UnexpectedCharacter, i));
        }

        // fields
        loop {
            let key_start = i;
            let (key_end, escapes) = self.scan(key_start, STOP_FIELD_KEY, true)?;
            if b.get(key_end) != Some(&b'=') {
                let at_end = matches!(b.get(key_end), None | Some(b'\n' | b'\r'));
                if key_end == key_start && at_end && self.c.fields() == 0 {
                    return Err((Rule::MissingFields, key_end));
                }
                return Err((Rule::BadField, key_end));
            }
            let key = &b[key_start..key_end];
            if series + 4 + key.len() > MAX_SERIES_KEY {
                return Err((Rule::SeriesKeyTooLong, key_start));
            }
            self.c
                .key(b, key_start, key_end, spelling(escapes, true), false)
                .map_err(|r| (r, key_start))?;
            let value = self.field_value(key_end + 1)?;
            if S::ACTIVE {
                let mut k = Vec::new();
                unescape_line_protocol(key, true, &mut k);
                let v = read_value(b, key_end + 1, value);
                self.pt.fields.push((k, v));
            }
            i = value;
            match b.get(i) {
                Some(b',') => i += 1,
                None | Some(b' ' | b'\n') => break,
                Some(b'\r') => return Err((Rule::TrailingContent, i)),
                Some(_) => return Err((Rule::BadFieldValue, i)),
            }
        }

        // timestamp
        let mut stamped = false;
        if i < n && b[i] == b' ' {
            while i < n && b[i] == b' ' {
                i += 1;
            }
            if i < n && (b[i] == b'-' || b[i].is_ascii_digit()) {
                i = self.timestamp(i)?;
                stamped = true;
                while i < n && b[i] == b' ' {
                    i += 1;
                }
            }
        }
        if !stamped && self.nanos != 1 {
            return Err((Rule::TimestampRequired, i));
        }

        // line end
        let end = match b.get(i) {
            None => n,
            Some(b'\n') => i + 1,
            Some(_) => return Err((Rule::TrailingContent, i)),
        };
        if self.resplit && go_scan_line(b, start) != i {
            return Err((Rule::AmbiguousEscape, start));
        }
        self.c.line(i - start).map_err(|r| (r, start))?;
        if !self.utf8 && simdutf8::basic::from_utf8(&b[start..i]).is_err() {
            self.c.invalid_utf8().map_err(|r| (r, start))?;
        }
        self.c.finish(&mut self.counts).map_err(|r| (r, start))?;
        Ok(end)
    }

    /// Scans a name, key or tag value from `i` up to a stop byte of `class`, honouring
    /// escapes. Returns the stop offset and the number of backslashes that unescaping removes
    /// (before `,` `=` space, and `"` where `quotes`).
    #[inline(always)]
    fn scan(&mut self, i: usize, class: u8, quotes: bool) -> Result<(usize, usize), Fail> {
        let (i, found) = stop(self.b, i, class);
        if found & SPECIAL != 0 {
            return self.scan_special(i, class, quotes);
        }
        Ok((i, 0))
    }

    /// The rest of [`Self::scan`] from a backslash at `i`.
    ///
    /// Guance's scanners take a byte as escaped when the byte before it is a backslash, so a
    /// run of backslashes of any length escapes the byte after it. Its line splitter pairs
    /// backslashes instead; where the two can disagree (an even run before a space in the
    /// measurement or tags) the line is re-split as Guance splits it before it is accepted.
    /// In a field key the two disagree within Guance's own parser, so an even run before a
    /// separator there is refused.
    #[cold]
    #[inline(never)]
    fn scan_special(
        &mut self,
        mut i: usize,
        class: u8,
        quotes: bool,
    ) -> Result<(usize, usize), Fail> {
        let b = self.b;
        let n = b.len();
        let mut escapes = 0;
        loop {
            if i < n && matches!(b[i], b'[' | b']') {
                // Only a field key stops at a bracket: Guance's line splitter counts them.
                return Err((Rule::BracketInKey, i));
            }
            if i < n && b[i] == b'\\' {
                let run = b[i..].iter().take_while(|&&c| c == b'\\').count();
                let j = i + run;
                match b.get(j) {
                    None | Some(b'\n' | b'\r') => return Err((Rule::TrailingBackslash, j - 1)),
                    Some(&c @ (b',' | b'=' | b' ')) => {
                        escapes += 1;
                        if run % 2 == 0 {
                            if class == STOP_FIELD_KEY {
                                return Err((Rule::AmbiguousEscape, i));
                            }
                            if c == b' ' {
                                self.resplit = true;
                            }
                        }
                    }
                    Some(b'"') if quotes => escapes += 1,
                    // Guance's line splitter pairs backslashes: after an even run it counts
                    // the bracket.
                    Some(b'[' | b']') if run % 2 == 0 && class == STOP_FIELD_KEY => {
                        return Err((Rule::BracketInKey, j));
                    }
                    Some(_) => {}
                }
                i = stop(b, j + 1, class).0;
                continue;
            }
            return Ok((i, escapes));
        }
    }

    /// Parses a field value at `i`; returns the offset after it.
    #[inline(always)]
    fn field_value(&mut self, i: usize) -> Result<usize, Fail> {
        let (end, kind) = match self.b.get(i) {
            Some(b'[') => return self.array(i),
            Some(_) => self.scalar(i)?,
            None => return Err((Rule::BadFieldValue, i)),
        };
        match kind {
            Kind::Str => self.c.string_field().map_err(|r| (r, i))?,
            Kind::Binary => {
                if end == i + 3 {
                    return Err((Rule::EmptyBinary, i));
                }
                self.c.string_field().map_err(|r| (r, i))?;
            }
            _ => {}
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
        let (close, escapes) = string_end(b, i).ok_or((Rule::UnterminatedString, i))?;
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
            // DataKit writes an empty array so (with dict fields on); Guance drops the field.
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
                    // Guance types an array by the text up to its first comma: a comma inside
                    // the first string hides the type, and the field is dropped.
                    if kind == Kind::Str && memchr::memchr(b',', &b[i..end]).is_some() {
                        return Err((Rule::BadArray, i));
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

    fn timestamp(&mut self, i: usize) -> Result<usize, Fail> {
        let b = self.b;
        let negative = b[i] == b'-';
        let digits_start = i + usize::from(negative);
        let j = swar::digits_end(b, digits_start);
        let digits = &b[digits_start..j];
        if digits.is_empty() {
            return Err((Rule::BadTimestamp, i));
        }
        // The common case, positive nanoseconds, needs no arithmetic: only the range matters,
        // checked on the digits, and only the reading needs the value.
        if !S::ACTIVE && !negative && self.nanos == 1 {
            return if fits(digits, b"9223372036854775806") {
                Ok(j)
            } else {
                Err((Rule::BadTimestamp, i))
            };
        }
        let magnitude = parse_u64(digits).ok_or((Rule::BadTimestamp, i))?;
        if magnitude == 0 {
            return Ok(j);
        }
        if negative {
            return Err((Rule::NegativeTimestamp, i));
        }
        if magnitude > MAX_NANO_TIME {
            return Err((Rule::BadTimestamp, i));
        }
        // Guance parses nanoseconds, then multiplies by the precision without an overflow check.
        let nanos = (magnitude as i64)
            .checked_mul(self.nanos)
            .ok_or((Rule::BadTimestamp, i))?;
        if S::ACTIVE {
            self.pt.time = Time::At(nanos);
        }
        Ok(j)
    }
}

/// Where the string opening at `b[i]` closes, and how many `\"` / `\\` pairs it holds.
#[inline]
fn string_end(b: &[u8], i: usize) -> Option<(usize, usize)> {
    let mut j = i + 1;
    let mut escapes = 0;
    loop {
        let p = j + memchr::memchr2(b'"', b'\\', &b[j..])?;
        if b[p] == b'"' {
            return Some((p, escapes));
        }
        if matches!(b.get(p + 1), Some(b'"' | b'\\')) {
            escapes += 1;
            j = p + 2;
        } else {
            j = p + 1;
        }
    }
}

/// The offset of the first byte at or after `i` that stops a token of `class`, and that
/// byte's class bits (0 at the end of the input).
#[inline(always)]
fn stop(b: &[u8], mut i: usize, class: u8) -> (usize, u8) {
    let with_equals = class & (STOP_KEY | STOP_TAG_VALUE | STOP_FIELD_KEY) != 0;
    let with_brackets = class & STOP_FIELD_KEY != 0;
    while let Some(m) = swar::stop_candidates16(b, i, with_equals, with_brackets) {
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
        let m = swar::stop_candidates(v, with_equals, with_brackets);
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
    // The common cases without a comparison call: fewer digits, or as many with a smaller
    // first one (a leading zero included).
    match (digits.len().cmp(&max.len()), digits.first(), max.first()) {
        (core::cmp::Ordering::Less, ..) => return true,
        (core::cmp::Ordering::Equal, Some(d), Some(m)) if d < m => return true,
        _ => {}
    }
    let first = digits
        .iter()
        .position(|&d| d != b'0')
        .unwrap_or(digits.len());
    let digits = &digits[first..];
    digits.len() < max.len() || (digits.len() == max.len() && digits <= max)
}

#[inline(always)]
fn spelling(escapes: usize, quotes: bool) -> Spelling {
    if escapes == 0 {
        Spelling::Plain
    } else if quotes {
        Spelling::LpField
    } else {
        Spelling::LpTag
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
        _ => float_in_range(b, i, j, false),
    }
}

#[inline]
fn exponent(b: &[u8], i: usize, mut j: usize) -> Result<(usize, Kind), Fail> {
    if !matches!(b.get(j), Some(b'e' | b'E')) {
        return float_in_range(b, i, j, false);
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
    float_in_range(b, i, j, true)
}

/// A float literal `b[i..j]` must be finite: Guance refuses one that overflows. Only a literal
/// with an exponent or of 300 digits or more can.
#[inline(always)]
fn float_in_range(b: &[u8], i: usize, j: usize, exponent: bool) -> Result<(usize, Kind), Fail> {
    let text = &b[i..j];
    if exponent || text.len() >= 300 {
        match parse_float(text) {
            Some(f) if f.is_finite() => {}
            _ => return Err((Rule::BadFieldValue, i)),
        }
    }
    Ok((j, Kind::Float))
}

/// A float literal (already checked against the grammar) as Go's `strconv.ParseFloat` reads it.
fn parse_float(text: &[u8]) -> Option<f64> {
    core::str::from_utf8(text).ok()?.parse().ok()
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

/// The decoded length of padded standard base64, or `None` if it is not valid (Go's
/// `base64.StdEncoding`, without the line breaks it would skip).
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
    if !body.iter().all(|&c| BASE64[usize::from(c)] != 0xff) {
        return None;
    }
    // Go refuses padding whose dropped bits are not zero only in strict mode; StdEncoding
    // is not strict, so any bits are fine.
    Some(s.len() / 4 * 3 - pad)
}

/// Guance's reading of a (valid) value at `b[i..end]`.
fn read_value(b: &[u8], i: usize, end: usize) -> Value {
    let text = &b[i..end];
    match text[0] {
        b'[' => {
            let mut elements = Vec::new();
            let mut j = i + 1;
            while j < end - 1 {
                let e = element_end(b, j);
                elements.push(read_value(b, j, e));
                j = e + 1;
            }
            Value::Array(elements)
        }
        b'"' => {
            if text.ends_with(b"\"b") && text.len() >= 3 {
                Value::Bytes(base64_decode(&text[1..text.len() - 2]))
            } else {
                Value::Str(unescape_string(&text[1..text.len() - 1]))
            }
        }
        b't' | b'T' => Value::Bool(true),
        b'f' | b'F' => Value::Bool(false),
        _ => match text[text.len() - 1] {
            b'i' => Value::Int(parse_i64(&text[..text.len() - 1])),
            b'u' => Value::Uint(parse_u64(&text[..text.len() - 1]).unwrap_or(0)),
            _ => Value::Float(parse_float(text).unwrap_or(f64::NAN)),
        },
    }
}

/// The end of the (valid) array element starting at `j`.
fn element_end(b: &[u8], j: usize) -> usize {
    if b[j] == b'"' {
        let close = string_end(b, j).map_or(b.len(), |(c, _)| c);
        if b.get(close + 1) == Some(&b'b') {
            close + 2
        } else {
            close + 1
        }
    } else {
        j + b[j..]
            .iter()
            .position(|&c| c == b',' || c == b']')
            .unwrap_or(b.len() - j)
    }
}

fn parse_i64(text: &[u8]) -> i64 {
    let (negative, digits) = match text.split_first() {
        Some((b'-', rest)) => (true, rest),
        _ => (false, text),
    };
    let magnitude = parse_u64(digits).unwrap_or(0);
    if negative {
        0i64.wrapping_sub_unsigned(magnitude)
    } else {
        magnitude as i64
    }
}

/// A string field's content as Guance unescapes it: `\\` and `\"` only.
fn unescape_string(raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'\\' && matches!(raw.get(i + 1), Some(b'\\' | b'"')) {
            out.push(raw[i + 1]);
            i += 2;
        } else {
            out.push(raw[i]);
            i += 1;
        }
    }
    out
}

/// Guance keeps the last of two fields with one key, and a tag replaces a field of its key.
fn dedup_like_guance(pt: &mut Point) {
    let mut fields: Vec<(Vec<u8>, Value)> = Vec::with_capacity(pt.fields.len());
    for (k, v) in pt.fields.drain(..) {
        if let Some(slot) = fields.iter_mut().find(|(fk, _)| *fk == k) {
            slot.1 = v;
        } else {
            fields.push((k, v));
        }
    }
    fields.retain(|(k, _)| !pt.tags.iter().any(|(t, _)| t == k));
    pt.fields = fields;
}

#[cfg(test)]
mod tests;
