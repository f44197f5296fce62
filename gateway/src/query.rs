//! A request's query, read as Guance reads it, and rebuilt for the upstream.
//!
//! Guance's services are Go: they read a query with `url.ParseQuery`, which percent-decodes
//! keys as well as values (`%74oken=` is `token=`, `+` is a space), skips empty pairs
//! (DataKit sends `kv=true&&version=3`), and skips, with an error, a pair holding `;` or a bad
//! escape. oneway parses with exactly those rules, refuses what Go would skip or read twice
//! (a `;`, a bad escape, a second `token` or `precision`) with 400, and builds the upstream
//! query from the parsed values (Go's `Values.Encode`: keys sorted, every key and value
//! escaped), so the bytes Guance parses are the values oneway checked: the token it mapped, the
//! precision it validated with.

use std::fmt::Write as _;

/// Why a query is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QueryError {
    /// A pair holds `;` (Go skips it, with an error).
    #[error("the query holds a ';' (use '&' between parameters)")]
    Semicolon,
    /// A `%` not followed by two hex digits (Go skips the pair, with an error).
    #[error("the query holds an invalid percent-escape")]
    BadEscape,
    /// A parameter that must appear once appears twice.
    #[error("the query gives {0} more than once")]
    Duplicate(&'static str),
}

/// Parameters that must appear at most once: oneway acts on them.
const SINGLE: [&str; 2] = ["token", "precision"];

/// A parsed query: decoded `(key, value)` pairs in request order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    pairs: Vec<(String, String)>,
}

impl Query {
    /// Parses a raw query (without `?`) as Go's `url.ParseQuery` does, refusing what it would
    /// skip.
    pub fn parse(raw: &str) -> Result<Query, QueryError> {
        let mut pairs = Vec::new();
        for segment in raw.split('&') {
            if segment.is_empty() {
                continue;
            }
            if segment.contains(';') {
                return Err(QueryError::Semicolon);
            }
            let (key, value) = segment.split_once('=').unwrap_or((segment, ""));
            let key = unescape(key)?;
            let value = unescape(value)?;
            pairs.push((key, value));
        }
        for name in SINGLE {
            if pairs.iter().filter(|(k, _)| k == name).count() > 1 {
                return Err(QueryError::Duplicate(name));
            }
        }
        Ok(Query { pairs })
    }

    /// The first value of `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// `path` and the query for the upstream: this one with `token` set to `token` and
    /// `precision` (if given) to its canonical spelling, encoded as Go's `Values.Encode`
    /// encodes it.
    pub fn upstream(&self, path: &str, token: &str, precision: Option<&str>) -> String {
        let mut pairs: Vec<(&str, &str)> = self
            .pairs
            .iter()
            .filter(|(k, _)| !SINGLE.contains(&k.as_str()))
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        pairs.push(("token", token));
        if let Some(p) = precision {
            pairs.push(("precision", p));
        }
        // A stable sort by key keeps the values of one key in request order, as Go does.
        pairs.sort_by(|a, b| a.0.cmp(b.0));
        // One allocation for the usual query (escaping makes a byte three at most; tokens and
        // precisions need none).
        let plain: usize = pairs.iter().map(|(k, v)| k.len() + v.len() + 2).sum();
        let mut out = String::with_capacity(path.len() + plain + plain / 4);
        out.push_str(path);
        let mut separator = '?';
        for (k, v) in pairs {
            out.push(separator);
            separator = '&';
            escape_into(&mut out, k);
            out.push('=');
            escape_into(&mut out, v);
        }
        out
    }
}

/// Go's `url.QueryUnescape`: `%XX` and `+` (a space). Bytes that are not UTF-8 once decoded
/// are replaced (Go keeps them; a parameter oneway reads is ASCII anyway).
fn unescape(s: &str) -> Result<String, QueryError> {
    if !s.contains(['%', '+']) {
        return Ok(s.to_string());
    }
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = |c: u8| char::from(c).to_digit(16);
                let (Some(hi), Some(lo)) = (
                    b.get(i + 1).and_then(|&c| hex(c)),
                    b.get(i + 2).and_then(|&c| hex(c)),
                ) else {
                    return Err(QueryError::BadEscape);
                };
                out.push((hi * 16 + lo) as u8);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// Go's `url.QueryEscape`: every byte but `A-Z a-z 0-9 - _ . ~` as `%XX`, a space as `+`.
fn escape_into(out: &mut String, s: &str) {
    for &c in s.as_bytes() {
        match c {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(char::from(c));
            }
            b' ' => out.push('+'),
            _ => {
                let _ = write!(out, "%{c:02X}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_and_values_are_percent_decoded_as_go_decodes_them() {
        let q =
            Query::parse("%70recision=s&%74oken=tkn%5Fa0000000000000000000000000000000&x=a+b%2Bc")
                .unwrap();
        assert_eq!(q.get("precision"), Some("s"));
        assert_eq!(q.get("token"), Some("tkn_a0000000000000000000000000000000"));
        assert_eq!(q.get("x"), Some("a b+c"));
    }

    #[test]
    fn empty_pairs_skipped_and_bare_keys_kept() {
        // DataKit's KV pull: `kv=true&&version=3`.
        let q = Query::parse("token=t&kv=true&&version=3&flag").unwrap();
        assert_eq!(q.get("version"), Some("3"));
        assert_eq!(q.get("flag"), Some(""));
        assert_eq!(Query::parse("").unwrap(), Query::default());
    }

    #[test]
    fn what_go_would_skip_or_read_twice_is_refused() {
        assert_eq!(
            Query::parse("token=a;precision=s"),
            Err(QueryError::Semicolon)
        );
        assert_eq!(Query::parse("token=a&x=%zz"), Err(QueryError::BadEscape));
        assert_eq!(Query::parse("token=a&x=%4"), Err(QueryError::BadEscape));
        assert_eq!(
            Query::parse("token=a&%74oken=b"),
            Err(QueryError::Duplicate("token"))
        );
        assert_eq!(
            Query::parse("precision=s&precision=ms&token=a"),
            Err(QueryError::Duplicate("precision"))
        );
    }

    #[test]
    fn upstream_query_is_rebuilt_sorted_and_escaped() {
        let q = Query::parse("token=agent&z=1&a=x+y&a=%26&filters=true").unwrap();
        assert_eq!(
            q.upstream(
                "/v1/write/metric",
                "tkn_workspace00000000000000000000000",
                None
            ),
            "/v1/write/metric?a=x+y&a=%26&filters=true&token=tkn_workspace00000000000000000000000&z=1"
        );
        let q = Query::parse("precision=ms&%74oken=agent").unwrap();
        assert_eq!(q.upstream("/p", "w", Some("ms")), "/p?precision=ms&token=w");
    }
}
