//! JSON points (`application/json`): a strict, zero-copy validator.
//!
//! The body is an array of point objects (`datakit-protocol.md` §2.3):
//!
//! ```text
//! [ { "measurement": string, "tags": { string: string, … }, "fields": { string: value, … },
//!     "time": integer nanoseconds }, … ]
//! value = number | string | true | false | [ scalar, … ]      (no null, no nested objects)
//! ```
//!
//! `measurement` and `fields` are required, `tags` and `time` optional; any other key, or a key
//! twice, is a [`Rule::BadPointShape`]. The JSON itself must be RFC 8259: no trailing commas,
//! no comments, no control characters or lone surrogates in strings, numbers in the JSON
//! grammar. The schema fixes the nesting depth, so nothing here recurses on input.

use crate::point::{PointChecker, Spelling};
use crate::verdict::{Excerpt, Position, Rejection, Rule, RuleCounts, Verdict};

type Fail = (Rule, usize);

/// Appends the unescaped bytes of a JSON string's raw content (between the quotes).
/// The content must already have been checked by the scanner; `Err` if it was not valid.
pub(crate) fn unescape_into(raw: &[u8], out: &mut Vec<u8>) -> Result<(), ()> {
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != b'\\' {
            out.push(b);
            i += 1;
            continue;
        }
        let esc = *raw.get(i + 1).ok_or(())?;
        i += 2;
        let c = match esc {
            b'"' => '"',
            b'\\' => '\\',
            b'/' => '/',
            b'b' => '\u{8}',
            b'f' => '\u{c}',
            b'n' => '\n',
            b'r' => '\r',
            b't' => '\t',
            b'u' => {
                let (c, used) = unicode_escape(&raw[i - 2..])?;
                i += used - 2;
                c
            }
            _ => return Err(()),
        };
        let mut buf = [0u8; 4];
        out.extend_from_slice(c.encode_utf8(&mut buf).as_bytes());
    }
    Ok(())
}

fn hex4(b: &[u8]) -> Option<u32> {
    let mut v = 0u32;
    for &c in b.get(..4)? {
        v = v * 16 + char::from(c).to_digit(16)?;
    }
    Some(v)
}

/// Decodes `\uXXXX` (or a surrogate pair `\uXXXX\uXXXX`) at the start of `b`; returns the
/// character and the bytes used.
fn unicode_escape(b: &[u8]) -> Result<(char, usize), ()> {
    let hi = hex4(b.get(2..).ok_or(())?).ok_or(())?;
    if (0xD800..0xDC00).contains(&hi) {
        if b.get(6..8) != Some(b"\\u") {
            return Err(());
        }
        let lo = hex4(&b[8..]).ok_or(())?;
        if !(0xDC00..0xE000).contains(&lo) {
            return Err(());
        }
        let c = 0x10000 + ((hi - 0xD800) << 10) + (lo - 0xDC00);
        return char::from_u32(c).map(|c| (c, 12)).ok_or(());
    }
    char::from_u32(hi).map(|c| (c, 6)).ok_or(())
}

/// Validates a whole JSON batch.
pub(crate) fn validate(checker: &mut PointChecker, body: &[u8]) -> Result<Verdict, Rejection> {
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
            p.ws();
            match p.peek() {
                Some(b',') => {
                    p.i += 1;
                    p.ws();
                }
                Some(b']') => {
                    p.i += 1;
                    break;
                }
                _ => return Err(rejection(body, Some(points), p.i, (Rule::JsonSyntax, p.i))),
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
}

struct Parser<'a, 'c> {
    b: &'a [u8],
    i: usize,
    c: &'c mut PointChecker,
    counts: RuleCounts,
}

impl Parser<'_, '_> {
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
                    p.c.key(p.b, k.start, k.end, k.spelling(), true)
                        .map_err(|r| (r, k.start))?;
                    if p.peek() != Some(b'"') {
                        return Err((Rule::TagNotString, p.i));
                    }
                    let v = p.string()?;
                    p.c.tag_value(v.len).map_err(|r| (r, v.start))
                }),
                4 => p.object(|p, k| {
                    p.c.key(p.b, k.start, k.end, k.spelling(), false)
                        .map_err(|r| (r, k.start))?;
                    p.field_value()
                }),
                _ => {
                    let at = p.i;
                    if !matches!(p.peek(), Some(b'-' | b'0'..=b'9')) || !p.number()? {
                        return Err((Rule::BadTimestamp, at));
                    }
                    let digits = std::str::from_utf8(&p.b[at..p.i]).unwrap_or_default();
                    digits
                        .parse::<i64>()
                        .map_err(|_| (Rule::BadTimestamp, at))?;
                    Ok(())
                }
            }
        })?;
        self.c.line(self.i - start).map_err(|r| (r, start))?;
        let Some(m) = measurement else {
            return Err((Rule::MissingMeasurement, start));
        };
        self.c.measurement(m.len).map_err(|r| (r, m.start))?;
        if seen & 4 == 0 {
            return Err((Rule::MissingFields, start));
        }
        self.c.finish(&mut self.counts).map_err(|r| (r, start))
    }

    fn scalar(&mut self) -> Result<Kind, Fail> {
        match self.peek() {
            Some(b'"') => {
                let s = self.string()?;
                self.c.field_value(s.len).map_err(|r| (r, s.start))?;
                Ok(Kind::Str)
            }
            Some(b'-' | b'0'..=b'9') => self.number().map(|_| Kind::Number),
            Some(b't' | b'f' | b'n') => {
                let at = self.i;
                match self.literal()? {
                    b"null" => Err((Rule::BadFieldValue, at)),
                    _ => Ok(Kind::Bool),
                }
            }
            _ => Err((Rule::BadFieldValue, self.i)),
        }
    }

    fn field_value(&mut self) -> Result<(), Fail> {
        let at = self.i;
        let kind = if self.peek() == Some(b'[') {
            self.i += 1;
            self.ws();
            let mut first = None;
            if self.peek() == Some(b']') {
                self.i += 1;
            } else {
                loop {
                    let elem = self.i;
                    if matches!(self.peek(), Some(b'[' | b'{')) {
                        return Err((Rule::BadArray, elem));
                    }
                    let kind = self.scalar()?;
                    match first {
                        None => first = Some(kind),
                        Some(k) if k == kind => {}
                        Some(_) => return Err((Rule::BadArray, elem)),
                    }
                    self.ws();
                    match self.peek() {
                        Some(b',') => {
                            self.i += 1;
                            self.ws();
                        }
                        Some(b']') => {
                            self.i += 1;
                            break;
                        }
                        _ => return Err((Rule::JsonSyntax, self.i)),
                    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::verdict::{Category, Limits, RuleActions};

    fn run(category: Category, body: &str) -> Result<Verdict, Rejection> {
        let mut c = PointChecker::new(Limits::default(), RuleActions::default(), category);
        validate(&mut c, body.as_bytes())
    }

    #[test]
    fn accepted_table() {
        let cases: &[(&str, u64)] = &[
            ("[]", 0),
            (" [ ] \n", 0),
            (r#"[{"measurement":"cpu","fields":{"a":1}}]"#, 1),
            (
                r#"[{"measurement":"cpu","tags":{"host":"h1","t":"\u00e9\ud83d\ude00"},
                    "fields":{"a":1,"b":-1.5e3,"c":true,"d":false,"e":[1,2.5],"f":[]},
                    "time":1700000000000000000},
                   {"time":-5,"fields":{"x":0},"measurement":"m\"q"}]"#,
                2,
            ),
        ];
        for (body, n) in cases {
            match run(Category::Metric, body) {
                Ok(v) => assert_eq!(v.points, *n, "{body}"),
                Err(e) => panic!("{body} rejected: {e}"),
            }
        }
        let logging =
            r#"[{"measurement":"nginx","tags":{"status":"ok"},"fields":{"message":"a\nb"}}]"#;
        assert!(run(Category::Logging, logging).is_ok());
    }

    #[test]
    fn rejected_table() {
        let cases: &[(&str, Rule)] = &[
            ("", Rule::BadPointShape),
            ("{}", Rule::BadPointShape),
            ("[", Rule::BadPointShape),
            ("[{}]", Rule::MissingMeasurement),
            (r#"[{"measurement":"m"}]"#, Rule::MissingFields),
            (r#"[{"measurement":"m","fields":{}}]"#, Rule::MissingFields),
            (
                r#"[{"measurement":"","fields":{"a":1}}]"#,
                Rule::MissingMeasurement,
            ),
            (
                r#"[{"measurement":1,"fields":{"a":1}}]"#,
                Rule::BadPointShape,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1},"extra":1}]"#,
                Rule::BadPointShape,
            ),
            (
                r#"[{"measurement":"m","measurement":"n","fields":{"a":1}}]"#,
                Rule::BadPointShape,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1}},]"#,
                Rule::BadPointShape,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1}}] x"#,
                Rule::JsonSyntax,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":null}}]"#,
                Rule::BadFieldValue,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":{"b":1}}}]"#,
                Rule::BadFieldValue,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":[1,"x"]}}]"#,
                Rule::BadArray,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":[[1]]}}]"#,
                Rule::BadArray,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":01}}]"#,
                Rule::JsonSyntax,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1.}}]"#,
                Rule::JsonSyntax,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":tru}}]"#,
                Rule::JsonSyntax,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1,}}]"#,
                Rule::JsonSyntax,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":"\x"}}]"#,
                Rule::JsonSyntax,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":"\ud800"}}]"#,
                Rule::JsonSyntax,
            ),
            (
                "[{\"measurement\":\"m\",\"fields\":{\"a\":\"\t\"}}]",
                Rule::JsonSyntax,
            ),
            (
                r#"[{"measurement":"m","tags":{"t":1},"fields":{"a":1}}]"#,
                Rule::TagNotString,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1,"a":2}}]"#,
                Rule::DuplicateKey,
            ),
            (
                r#"[{"measurement":"m","tags":{"a":"x"},"fields":{"\u0061":2}}]"#,
                Rule::DuplicateKey,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1},"time":1.5}]"#,
                Rule::BadTimestamp,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1},"time":"1"}]"#,
                Rule::BadTimestamp,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":1},"time":9223372036854775808}]"#,
                Rule::BadTimestamp,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":"s"}}]"#,
                Rule::MetricStringField,
            ),
            (
                r#"[{"measurement":"m","fields":{"a":["s"]}}]"#,
                Rule::MetricStringField,
            ),
        ];
        for (body, rule) in cases {
            match run(Category::Metric, body) {
                Ok(v) => panic!("{body} accepted: {v:?}"),
                Err(e) => assert_eq!(e.rule, *rule, "{body}: {e}"),
            }
        }
    }

    #[test]
    fn rejection_names_point_index() {
        let body = r#"[{"measurement":"a","fields":{"x":1}},{"measurement":"b","fields":{}}]"#;
        let e = run(Category::Metric, body).unwrap_err();
        assert_eq!(e.position, Position::Point(Some(1)));
        assert!(e.excerpt.as_bytes().starts_with(br#"{"measurement":"b""#));
    }

    #[test]
    fn unescaped_lengths_are_checked() {
        let limits = Limits {
            max_tag_value_bytes: 2,
            ..Limits::default()
        };
        let mut c = PointChecker::new(limits, RuleActions::default(), Category::Rum);
        let ok = br#"[{"measurement":"m","tags":{"t":"\u00e9"},"fields":{"a":1}}]"#;
        assert!(validate(&mut c, ok).is_ok());
        let bad = br#"[{"measurement":"m","tags":{"t":"\u00e9x"},"fields":{"a":1}}]"#;
        assert_eq!(
            validate(&mut c, bad).unwrap_err().rule,
            Rule::TagValueTooLong
        );
    }

    #[test]
    fn unescape_into_decodes_every_escape() {
        let mut out = Vec::new();
        unescape_into(br#"a\"\\\/\b\f\n\r\t\u00e9\ud83d\ude00"#, &mut out).unwrap();
        assert_eq!(out, "a\"\\/\u{8}\u{c}\n\r\té😀".as_bytes());
        assert!(unescape_into(br"\q", &mut out).is_err());
    }
}
