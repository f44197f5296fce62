//! The headers a request carries to the upstream: an allow-list, each header at most once,
//! and the routing headers under the token's policy.
//!
//! Nothing an agent sends reaches the upstream unless it is listed here. The routing headers
//! decide where data lands behind DataWay (its sinker routes writes to workspaces by
//! `X-Global-Tags`; `X-Storage-Index-Name` picks a log index), so they are policy, not input:
//! `X-Global-Tags` is dropped, passed, set by oneway or cut to an allow-list of keys per token
//! (`tokens[].global_tags`), `X-Storage-Index-Name` passes only a value the token lists
//! (`tokens[].storage_indexes`), and `X-Sub-Category` only a value DataKit sends. Whatever is
//! dropped is counted in `oneway_forwarded_headers_dropped_total{header,reason}`; dropping a
//! header never refuses the request, because a 4xx makes DataKit drop the batch.

use std::collections::BTreeSet;

use http::{HeaderMap, HeaderName, HeaderValue, header};

use crate::config::{GlobalTags, TokenConfig};
use crate::telemetry;

/// Headers DataKit sends that are forwarded as they are (reference §2, plus the upload
/// headers), each at most once. On writes, `Content-Type` and `Content-Encoding` are then
/// replaced by the canonical spelling of the parser and decoder that checked the body.
/// (Names, not strings: a lookup by string parses the name first, every time.)
static PLAIN: [HeaderName; 8] = [
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
    header::USER_AGENT,
    header::REFERER,
    HeaderName::from_static("x-fail-cache-retry"),
    HeaderName::from_static("x-pkg-id"),
    HeaderName::from_static("x-datakit-version"),
    HeaderName::from_static("x-datakit-unixnano"),
];

static GLOBAL_TAGS: HeaderName = HeaderName::from_static("x-global-tags");
static STORAGE_INDEX: HeaderName = HeaderName::from_static("x-storage-index-name");
static SUB_CATEGORY: HeaderName = HeaderName::from_static("x-sub-category");

/// The `X-Sub-Category` values DataKit sends (dial-testing results on `/v1/write/logging`).
const SUB_CATEGORIES: &[&str] = &["dialtesting"];

/// Why a header the agent sent did not reach the upstream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dropped {
    /// The token's policy drops the header (`global_tags = "drop"`, no `storage_indexes`).
    Policy,
    /// Replaced by the value the token's policy sets.
    Replaced,
    /// The header appears more than once.
    Repeated,
    /// `X-Global-Tags` that cannot be read as `k=v,k=v` in one way only.
    Ambiguous,
    /// Pairs of `X-Global-Tags` whose key the token does not allow (the rest is forwarded).
    KeyNotAllowed,
    /// More allowed pairs than `max_tags`.
    TooMany,
    /// An allowed value longer than `max_value_bytes`.
    TooLong,
    /// A value the policy does not list.
    ValueNotAllowed,
}

impl Dropped {
    /// The `reason` label.
    pub fn as_str(self) -> &'static str {
        match self {
            Dropped::Policy => "policy",
            Dropped::Replaced => "replaced",
            Dropped::Repeated => "repeated",
            Dropped::Ambiguous => "ambiguous",
            Dropped::KeyNotAllowed => "key_not_allowed",
            Dropped::TooMany => "too_many",
            Dropped::TooLong => "too_long",
            Dropped::ValueNotAllowed => "value_not_allowed",
        }
    }
}

/// The headers forwarded for a request of `token` that arrived with `from`; `identity` goes to
/// `identity_header` when one is configured.
pub fn forwarded(
    from: &HeaderMap,
    token: &TokenConfig,
    identity: &str,
    identity_header: Option<&HeaderName>,
) -> HeaderMap {
    // Room for what is forwarded and the few headers the caller adds, without growing.
    let mut out = HeaderMap::with_capacity(16);
    let dropped = |header: &'static HeaderName, why: Dropped| {
        metrics::counter!(telemetry::HEADERS_DROPPED, "header" => header.as_str(), "reason" => why.as_str())
            .increment(1);
    };
    for name in &PLAIN {
        match single(from, name) {
            Ok(Some(v)) => {
                out.insert(name.clone(), v.clone());
            }
            Ok(None) => {}
            Err(why) => dropped(name, why),
        }
    }
    let tags = global_tags(from, &token.global_tags);
    if let Some(why) = tags.dropped {
        dropped(&GLOBAL_TAGS, why);
    }
    if let Some(v) = tags.value {
        out.insert(GLOBAL_TAGS.clone(), v);
    }
    match listed(from, &STORAGE_INDEX, |v| token.storage_indexes.contains(v)) {
        Ok(Some(v)) => {
            out.insert(STORAGE_INDEX.clone(), v.clone());
        }
        Ok(None) => {}
        Err(Dropped::ValueNotAllowed) if token.storage_indexes.is_empty() => {
            dropped(&STORAGE_INDEX, Dropped::Policy)
        }
        Err(why) => dropped(&STORAGE_INDEX, why),
    }
    match listed(from, &SUB_CATEGORY, |v| SUB_CATEGORIES.contains(&v)) {
        Ok(Some(v)) => {
            out.insert(SUB_CATEGORY.clone(), v.clone());
        }
        Ok(None) => {}
        Err(why) => dropped(&SUB_CATEGORY, why),
    }
    if let Some(name) = identity_header
        && let Ok(v) = HeaderValue::from_str(identity)
    {
        out.insert(name.clone(), v);
    }
    out
}

/// The one value of `name`, if any; a repeated header is not forwarded at all.
fn single<'a>(from: &'a HeaderMap, name: &HeaderName) -> Result<Option<&'a HeaderValue>, Dropped> {
    let mut values = from.get_all(name).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(v), None) => Ok(Some(v)),
        (Some(_), Some(_)) => Err(Dropped::Repeated),
    }
}

/// The one value of `name` when `allowed` lists it.
fn listed<'a>(
    from: &'a HeaderMap,
    name: &HeaderName,
    allowed: impl Fn(&str) -> bool,
) -> Result<Option<&'a HeaderValue>, Dropped> {
    match single(from, name)? {
        None => Ok(None),
        Some(v) if v.to_str().is_ok_and(&allowed) => Ok(Some(v)),
        Some(_) => Err(Dropped::ValueNotAllowed),
    }
}

/// What the `X-Global-Tags` policy makes of the agent's header.
#[derive(Debug, PartialEq, Eq)]
struct Outcome {
    /// The value forwarded, if any.
    value: Option<HeaderValue>,
    /// Why the agent's header, or part of it, was not forwarded as sent.
    dropped: Option<Dropped>,
}

fn global_tags(from: &HeaderMap, policy: &GlobalTags) -> Outcome {
    let sent = single(from, &GLOBAL_TAGS);
    let present = !matches!(sent, Ok(None));
    let drop_all = |why| Outcome {
        value: None,
        dropped: present.then_some(why),
    };
    match policy {
        GlobalTags::Drop => drop_all(Dropped::Policy),
        GlobalTags::Set(v) => Outcome {
            value: Some(v.clone()),
            dropped: present.then_some(Dropped::Replaced),
        },
        GlobalTags::Pass => match sent {
            Ok(v) => Outcome {
                value: v.cloned(),
                dropped: None,
            },
            Err(why) => drop_all(why),
        },
        GlobalTags::Allow {
            keys,
            max_tags,
            max_value_bytes,
        } => match sent {
            Ok(None) => drop_all(Dropped::Policy),
            Err(why) => drop_all(why),
            Ok(Some(v)) => match allowed_pairs(v.as_bytes(), keys, *max_tags, *max_value_bytes) {
                Ok((kept, cut)) => Outcome {
                    value: (!kept.is_empty())
                        .then(|| HeaderValue::from_bytes(&kept).ok())
                        .flatten(),
                    dropped: cut.then_some(Dropped::KeyNotAllowed),
                },
                Err(why) => drop_all(why),
            },
        },
    }
}

/// The pairs of `value` (`k=v,k=v`, DataKit's unescaped form) whose key is allowed, joined in
/// the agent's order, and whether any pair was cut. Refused whole when a piece has no `=` or
/// more than one (a value holding `,` or `=` cannot be told from two pairs), a key repeats,
/// the bytes are not UTF-8, or the allowed pairs exceed the bounds.
fn allowed_pairs(
    value: &[u8],
    keys: &BTreeSet<String>,
    max_tags: usize,
    max_value_bytes: usize,
) -> Result<(Vec<u8>, bool), Dropped> {
    let text = std::str::from_utf8(value).map_err(|_| Dropped::Ambiguous)?;
    let mut kept: Vec<u8> = Vec::with_capacity(value.len());
    let mut seen: BTreeSet<&str> = BTreeSet::new();
    let mut count = 0usize;
    let mut cut = false;
    for piece in text.split(',') {
        let (k, v) = piece.split_once('=').ok_or(Dropped::Ambiguous)?;
        if k.is_empty() || v.contains('=') || !seen.insert(k) {
            return Err(Dropped::Ambiguous);
        }
        if !keys.contains(k) {
            cut = true;
            continue;
        }
        if v.len() > max_value_bytes {
            return Err(Dropped::TooLong);
        }
        count += 1;
        if count > max_tags {
            return Err(Dropped::TooMany);
        }
        if !kept.is_empty() {
            kept.push(b',');
        }
        kept.extend_from_slice(piece.as_bytes());
    }
    Ok((kept, cut))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(keys: &[&str], max_tags: usize, max_value_bytes: usize) -> GlobalTags {
        GlobalTags::Allow {
            keys: keys.iter().map(|k| k.to_string()).collect(),
            max_tags,
            max_value_bytes,
        }
    }

    fn sent(values: &[&[u8]]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(&GLOBAL_TAGS, HeaderValue::from_bytes(v).expect("value"));
        }
        h
    }

    fn outcome(values: &[&[u8]], policy: &GlobalTags) -> (Option<String>, Option<&'static str>) {
        let o = global_tags(&sent(values), policy);
        (
            o.value
                .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            o.dropped.map(Dropped::as_str),
        )
    }

    #[test]
    fn drop_pass_and_set() {
        let tags: &[&[u8]] = &[b"host=a,project=p"];
        assert_eq!(outcome(tags, &GlobalTags::Drop), (None, Some("policy")));
        assert_eq!(outcome(&[], &GlobalTags::Drop), (None, None));
        assert_eq!(
            outcome(tags, &GlobalTags::Pass),
            (Some("host=a,project=p".into()), None)
        );
        assert_eq!(
            outcome(&[b"a=1", b"b=2"], &GlobalTags::Pass),
            (None, Some("repeated"))
        );
        let set = GlobalTags::Set(HeaderValue::from_static("project=bank"));
        assert_eq!(
            outcome(tags, &set),
            (Some("project=bank".into()), Some("replaced"))
        );
        assert_eq!(outcome(&[], &set), (Some("project=bank".into()), None));
    }

    #[test]
    fn allow_lists_keys_in_the_agents_order_within_bounds() {
        let p = allow(&["host", "project"], 2, 8);
        assert_eq!(
            outcome(&[b"project=p,source=x,host=h"], &p),
            (Some("project=p,host=h".into()), Some("key_not_allowed"))
        );
        assert_eq!(outcome(&[b"host=h"], &p), (Some("host=h".into()), None));
        assert_eq!(
            outcome(&[b"source=x,date=y"], &p),
            (None, Some("key_not_allowed"))
        );
        // Values holding ',' or '=' cannot be told from pairs: the whole header goes.
        for bad in [
            &b"host=a,b"[..],
            b"host=a=b",
            b"=x",
            b"host=a,host=b",
            b"host=a,,project=p",
            b"\xffhost=a",
        ] {
            assert_eq!(outcome(&[bad], &p), (None, Some("ambiguous")), "{bad:?}");
        }
        assert_eq!(outcome(&[b"host=123456789"], &p), (None, Some("too_long")));
        let one = allow(&["host", "project"], 1, 8);
        assert_eq!(
            outcome(&[b"host=a,project=b"], &one),
            (None, Some("too_many"))
        );
        // An empty value is a value (DataKit sends `k=` for an empty tag).
        assert_eq!(outcome(&[b"host="], &p), (Some("host=".into()), None));
    }

    #[test]
    fn only_listed_headers_pass_each_once() {
        let token = crate::config::TokenConfig::for_tests();
        let mut h = HeaderMap::new();
        h.insert(
            "user-agent",
            HeaderValue::from_static("datakit-linux-amd64/1.84"),
        );
        h.append("x-pkg-id", HeaderValue::from_static("dk_1"));
        h.append("x-pkg-id", HeaderValue::from_static("dk_2"));
        h.insert("x-storage-index-name", HeaderValue::from_static("other"));
        h.insert("x-sub-category", HeaderValue::from_static("dialtesting"));
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        h.insert("transfer-encoding", HeaderValue::from_static("chunked"));
        let out = forwarded(&h, &token, "agent-1", None);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["user-agent", "x-sub-category"]);

        let mut listed = token.clone();
        listed.storage_indexes.insert("other".into());
        h.insert("x-sub-category", HeaderValue::from_static("anything"));
        let out = forwarded(&h, &listed, "agent-1", None);
        let names: Vec<&str> = out.keys().map(HeaderName::as_str).collect();
        assert_eq!(names, ["user-agent", "x-storage-index-name"]);
    }

    proptest::proptest! {
        #[test]
        fn allowed_pairs_never_forward_an_unlisted_key_or_exceed_bounds(
            value in proptest::collection::vec(
                proptest::sample::select(&b"ab=,h xy\xc3\xa9"[..]), 0..40),
        ) {
            let keys: BTreeSet<String> = ["a", "b"].iter().map(|k| k.to_string()).collect();
            if let Ok((kept, _)) = allowed_pairs(&value, &keys, 3, 5) {
                let kept = String::from_utf8(kept).expect("utf-8 in, utf-8 out");
                let mut n = 0;
                for pair in kept.split(',').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').expect("a pair");
                    proptest::prop_assert!(keys.contains(k));
                    proptest::prop_assert!(v.len() <= 5 && !v.contains('='));
                    n += 1;
                }
                proptest::prop_assert!(n <= 3);
            }
        }
    }
}
