//! `tokens[].global_tags`: what becomes of an agent's `X-Global-Tags`, the header DataWay's
//! sinker routes writes to workspaces by (dropped unless the token's policy says otherwise).

use std::collections::BTreeSet;

use super::Problems;

/// `tokens[].global_tags`: what reaches the upstream as `X-Global-Tags`, the header DataWay's
/// sinker routes writes to workspaces by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GlobalTags {
    /// `"drop"` (the default): the header never reaches the upstream.
    Drop,
    /// `"pass"`: forwarded as the agent sent it; the agent picks where its data lands.
    Pass,
    /// `{ set = { k = "v", … } }`: oneway sends this value (`k=v` pairs sorted by key) on
    /// every request of the token, whatever the agent sent.
    Set(http::HeaderValue),
    /// `{ allow = [keys], max_tags, max_value_bytes }`: the agent's pairs with these keys
    /// are forwarded, in its order; the header is dropped whole when it cannot be read
    /// unambiguously or its allowed pairs exceed the bounds.
    Allow {
        /// Keys forwarded.
        keys: BTreeSet<String>,
        /// Most pairs forwarded.
        max_tags: usize,
        /// Longest value forwarded, bytes.
        max_value_bytes: usize,
    },
}

/// Default bound on the pairs an allow-listed `X-Global-Tags` forwards.
pub const DEFAULT_GLOBAL_TAGS_MAX_TAGS: usize = 16;
/// Default bound on a value an allow-listed `X-Global-Tags` forwards, bytes.
pub const DEFAULT_GLOBAL_TAGS_MAX_VALUE_BYTES: usize = 128;

/// A sinker key: what DataKit's global tag keys look like, and nothing that would make the
/// `k=v,k=v` header ambiguous.
pub(super) fn routing_key_is_well_formed(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub(super) fn global_tags(p: &mut Problems, path: &str, raw: Option<&toml::Value>) -> GlobalTags {
    const SHAPES: &str = "is \"drop\", \"pass\", { set = { key = \"value\", ... } } or \
                          { allow = [\"key\", ...], max_tags = N, max_value_bytes = N }";
    let Some(raw) = raw else {
        return GlobalTags::Drop;
    };
    let table = match raw {
        toml::Value::String(s) if s == "drop" => return GlobalTags::Drop,
        toml::Value::String(s) if s == "pass" => return GlobalTags::Pass,
        toml::Value::Table(t) => t,
        _ => {
            p.add(path, SHAPES);
            return GlobalTags::Drop;
        }
    };
    let known = ["set", "allow", "max_tags", "max_value_bytes"];
    if let Some(k) = table.keys().find(|k| !known.contains(&k.as_str())) {
        p.add(
            format!("{path}.{k}"),
            format!("unknown key; global_tags {SHAPES}"),
        );
        return GlobalTags::Drop;
    }
    let count = |key: &str, default: usize, p: &mut Problems| match table.get(key) {
        None => default,
        Some(toml::Value::Integer(n)) if *n > 0 => usize::try_from(*n).unwrap_or(usize::MAX),
        Some(_) => {
            p.add(format!("{path}.{key}"), "must be a number greater than 0");
            default
        }
    };
    match (table.get("set"), table.get("allow")) {
        (Some(toml::Value::Table(set)), None)
            if !table.contains_key("max_tags") && !table.contains_key("max_value_bytes") =>
        {
            let mut pairs = Vec::new();
            for (k, v) in set {
                let v = v.as_str().unwrap_or_default();
                if !routing_key_is_well_formed(k) {
                    p.add(
                        format!("{path}.set.{k}"),
                        "a key is 1-128 letters, digits, '_', '-' or '.'",
                    );
                } else if v.is_empty()
                    || v.len() > 1024
                    || v.contains([',', '='])
                    || !v.bytes().all(|b| (0x20..0x7f).contains(&b))
                {
                    p.add(
                        format!("{path}.set.{k}"),
                        "a value is 1-1024 printable ASCII characters without ',' or '='",
                    );
                } else {
                    pairs.push((k.as_str(), v));
                }
            }
            if set.is_empty() {
                p.add(format!("{path}.set"), "needs at least one key = \"value\"");
            }
            pairs.sort_unstable();
            let pairs: Vec<String> = pairs.iter().map(|(k, v)| format!("{k}={v}")).collect();
            match http::HeaderValue::from_str(&pairs.join(",")) {
                Ok(v) => GlobalTags::Set(v),
                Err(_) => GlobalTags::Drop,
            }
        }
        (None, Some(toml::Value::Array(keys))) => {
            let mut allowed = BTreeSet::new();
            for (j, k) in keys.iter().enumerate() {
                match k.as_str() {
                    Some(k) if routing_key_is_well_formed(k) => {
                        allowed.insert(k.to_string());
                    }
                    _ => p.add(
                        format!("{path}.allow[{j}]"),
                        "a key is 1-128 letters, digits, '_', '-' or '.'",
                    ),
                }
            }
            GlobalTags::Allow {
                keys: allowed,
                max_tags: count("max_tags", DEFAULT_GLOBAL_TAGS_MAX_TAGS, p),
                max_value_bytes: count("max_value_bytes", DEFAULT_GLOBAL_TAGS_MAX_VALUE_BYTES, p),
            }
        }
        _ => {
            p.add(path, SHAPES);
            GlobalTags::Drop
        }
    }
}
