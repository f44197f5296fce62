//! `[[tokens]]`: each agent token (stored as its SHA-256), the certificate identities it is
//! bound to, and its policy (APIs, rate, endpoints, routing headers). The secret never leaves
//! this type: its `Debug` shows nothing.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::global_tags::{global_tags, routing_key_is_well_formed};
use super::rate_limits::{RawRate, RawRateLimits, rate};
use super::{ConfigProblem, GlobalTags, Problems, TokenLimits};

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawToken {
    name: Option<String>,
    token: Option<String>,
    token_sha256: Option<String>,
    identities: Vec<String>,
    upstream_token: Option<String>,
    allow_apis: Option<Vec<String>>,
    rate: Option<RawRate>,
    #[serde(default)]
    endpoints: Vec<String>,
    global_tags: Option<toml::Value>,
    #[serde(default)]
    storage_indexes: Vec<String>,
}

/// The non-write APIs a token may use when its policy names none.
pub const DEFAULT_ALLOWED_APIS: &[&str] = &["/v1/election", "/v1/election/heartbeat"];

/// Non-write APIs a policy may name (`datakit-protocol.md` §5).
pub const KNOWN_APIS: &[&str] = &[
    "/v1/datakit/pull",
    "/v1/election",
    "/v1/election/heartbeat",
    "/v1/ntp",
    "/v1/check/token",
    "/v1/query/raw",
    "/v1/workspace",
    "/v1/object/labels",
    "/v1/write/rum/replay",
    "/v1/upload/profiling",
    "/v1/datakit/usage_trace",
    "/v1/env_variable",
    "/v1/write/remote_job",
    "/v1/log",
];

/// How a token is matched.
#[derive(Clone, PartialEq, Eq)]
pub enum TokenSecret {
    /// SHA-256 of the token (from `token`, hashed at load, or `token_sha256`).
    Sha256([u8; 32]),
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(..)")
    }
}

/// A certificate identity a token is bound to.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Identity {
    /// A SAN DNS name (`dns:agent-1.example`), compared case-insensitively.
    Dns(String),
    /// A SAN URI (`uri:spiffe://…`), compared exactly.
    Uri(String),
    /// SHA-256 of the certificate's SubjectPublicKeyInfo (`spki-sha256:<hex>`).
    SpkiSha256([u8; 32]),
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Identity::Dns(d) => write!(f, "dns:{d}"),
            Identity::Uri(u) => write!(f, "uri:{u}"),
            Identity::SpkiSha256(h) => write!(f, "spki-sha256:{}", hex::encode(h)),
        }
    }
}

impl Identity {
    /// Parses `dns:…`, `uri:…` or `spki-sha256:<64 hex>`.
    pub fn parse(s: &str) -> Result<Identity, String> {
        if let Some(d) = s.strip_prefix("dns:") {
            if d.is_empty() || d.contains(char::is_whitespace) {
                return Err("a DNS identity needs a name".into());
            }
            Ok(Identity::Dns(d.to_ascii_lowercase()))
        } else if let Some(u) = s.strip_prefix("uri:") {
            if u.is_empty() {
                return Err("a URI identity needs a URI".into());
            }
            Ok(Identity::Uri(u.into()))
        } else if let Some(h) = s.strip_prefix("spki-sha256:") {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out)
                .map_err(|_| "spki-sha256 needs 64 hex digits".to_string())?;
            Ok(Identity::SpkiSha256(out))
        } else {
            Err("an identity is dns:<name>, uri:<uri> or spki-sha256:<hex>".into())
        }
    }
}

/// One agent token.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// The agent's name (`agent` in metrics and audit events; never the secret).
    pub name: Arc<str>,
    /// How the token is matched.
    pub secret: TokenSecret,
    /// Certificate identities the token is bound to (at least one).
    pub identities: Vec<Identity>,
    /// The workspace token forwarded upstream instead of the agent's, if mapped.
    pub upstream_token: Option<String>,
    /// Non-write APIs this token may call.
    pub allowed_apis: BTreeSet<String>,
    /// Rate limits (this replica's share).
    pub limits: TokenLimits,
    /// The status answered when over a limit: 503 (default: DataKit retries) or 429.
    pub over_limit_status: http::StatusCode,
    /// If not empty, the token is accepted only through these VPC endpoints (ids from the
    /// load balancer's PROXY header TLVs).
    pub endpoints: BTreeSet<String>,
    /// What becomes of the agent's `X-Global-Tags` (the sinker's routing key).
    pub global_tags: GlobalTags,
    /// The `X-Storage-Index-Name` values forwarded; any other is dropped (none by default).
    pub storage_indexes: BTreeSet<String>,
}

#[cfg(test)]
impl TokenConfig {
    /// A token with every policy at its default, bound to nothing.
    pub(crate) fn for_tests() -> TokenConfig {
        TokenConfig {
            name: Arc::from("test"),
            secret: TokenSecret::Sha256([0; 32]),
            identities: Vec::new(),
            upstream_token: None,
            allowed_apis: BTreeSet::new(),
            limits: TokenLimits::default(),
            over_limit_status: http::StatusCode::SERVICE_UNAVAILABLE,
            endpoints: BTreeSet::new(),
            global_tags: GlobalTags::Drop,
            storage_indexes: BTreeSet::new(),
        }
    }
}

/// A token name: what a Prometheus label value and an audit field can hold unescaped.
fn name_is_well_formed(n: &str) -> bool {
    (1..=64).contains(&n.len())
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

pub(super) fn token_is_well_formed(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// DataKit's installer check on a DataWay token (`dataway.CheckToken`): `tkn_` or `token_`
/// and 32 characters, or `tokn_` and 24, with exactly one `_`. A token it refuses cannot be
/// put in a DataKit's DataWay URL by its installer.
pub fn datakit_accepts_token(token: &str) -> Result<(), &'static str> {
    let mut parts = token.split('_');
    let (Some(prefix), Some(body), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err("not exactly one '_'");
    };
    let want = match prefix {
        "tkn" | "token" => 32,
        "tokn" => 24,
        _ => return Err("unknown prefix"),
    };
    if body.len() == want {
        Ok(())
    } else {
        Err("wrong length")
    }
}

/// One `[[tokens]]` entry, as far as it can be read from a file that is otherwise invalid.
#[derive(Debug)]
pub struct ListedToken {
    /// Its secret, when readable (`token` or `token_sha256`, not both).
    pub secret: Option<TokenSecret>,
    /// Those of its identities that parse.
    pub identities: Vec<Identity>,
}

/// What a config file says about which tokens exist and whom they are bound to, read even
/// when the rest of the file is invalid, so that a reload of a broken file still applies a
/// removed token or identity. `None` when the file is not readable TOML, or its `tokens` is
/// not an array of tables: then nothing is known.
pub fn listed_tokens(path: &Path) -> Option<Vec<ListedToken>> {
    let text = std::fs::read_to_string(path).ok()?;
    let table: toml::Table = text.parse().ok()?;
    let Some(tokens) = table.get("tokens") else {
        return Some(Vec::new());
    };
    tokens
        .as_array()?
        .iter()
        .map(|t| {
            let t = t.as_table()?;
            let text = |key: &str| t.get(key).and_then(toml::Value::as_str);
            let secret = match (text("token"), text("token_sha256")) {
                (Some(token), None) => Some(TokenSecret::Sha256(sha256(token.as_bytes()))),
                (None, Some(h)) => {
                    let mut out = [0u8; 32];
                    hex::decode_to_slice(h, &mut out)
                        .ok()
                        .map(|()| TokenSecret::Sha256(out))
                }
                _ => None,
            };
            let identities = t
                .get("identities")
                .and_then(toml::Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(|v| Identity::parse(v.as_str()?).ok())
                        .collect()
                })
                .unwrap_or_default();
            Some(ListedToken { secret, identities })
        })
        .collect()
}

/// Checks `[[tokens]]` with `[rate_limits]`; returns the tokens and the warnings (valid but
/// likely a mistake).
pub(super) fn check(
    raw: &[RawToken],
    rate_limits: &RawRateLimits,
    p: &mut Problems,
) -> (Vec<TokenConfig>, Vec<ConfigProblem>) {
    let replicas = rate_limits.replicas(p);
    let default_rate = rate_limits.default_rate(p, replicas);
    let mut tokens = Vec::new();
    let mut seen = BTreeSet::new();
    let mut names = BTreeSet::new();
    let mut warnings = Vec::new();
    for (i, t) in raw.iter().enumerate() {
        let path = format!("tokens[{i}]");
        let secret = t.secret(p, &path, &mut warnings);
        if let Some(TokenSecret::Sha256(h)) = &secret
            && !seen.insert(*h)
        {
            p.add(path.clone(), "the same token is configured twice");
        }
        let name = t.name(p, &path, &mut names);
        tokens.extend(t.policy(p, &path, replicas, default_rate, (name, secret)));
    }
    (tokens, warnings)
}

impl RawToken {
    /// `name`: required, unique, a bounded label, and never a secret.
    fn name(&self, p: &mut Problems, path: &str, names: &mut BTreeSet<String>) -> Option<Arc<str>> {
        let at = format!("{path}.name");
        let Some(name) = &self.name else {
            p.add(
                at,
                "every token needs a name: the agent's label in metrics and the audit trail",
            );
            return None;
        };
        if !name_is_well_formed(name) {
            p.add(at, "a name is 1-64 letters, digits, '_', '-' or '.'");
            return None;
        }
        if self.token.as_deref() == Some(name.as_str()) || datakit_accepts_token(name).is_ok() {
            p.add(
                at,
                "a name is shown in metrics and logs: it must not be (or look like) a token",
            );
            return None;
        }
        if !names.insert(name.clone()) {
            p.add(at, format!("{name:?} names another token too"));
            return None;
        }
        Some(Arc::from(name.as_str()))
    }

    /// `token` or `token_sha256` (exactly one).
    fn secret(
        &self,
        p: &mut Problems,
        path: &str,
        warnings: &mut Vec<ConfigProblem>,
    ) -> Option<TokenSecret> {
        match (&self.token, &self.token_sha256) {
            (Some(tok), None) => {
                if !token_is_well_formed(tok) {
                    p.add(
                        format!("{path}.token"),
                        "a token is 1-128 letters, digits, '_' or '-'",
                    );
                } else if let Err(why) = datakit_accepts_token(tok) {
                    warnings.push(ConfigProblem {
                        path: format!("{path}.token"),
                        message: format!(
                            "DataKit's installer refuses this agent token ({why}): it \
                             takes tkn_ or token_ and 32 characters, or tokn_ and 24, \
                             with one '_'"
                        ),
                    });
                }
                Some(TokenSecret::Sha256(sha256(tok.as_bytes())))
            }
            (None, Some(h)) => {
                let mut out = [0u8; 32];
                match hex::decode_to_slice(h, &mut out) {
                    Ok(()) => Some(TokenSecret::Sha256(out)),
                    Err(_) => {
                        p.add(format!("{path}.token_sha256"), "needs 64 hex digits");
                        None
                    }
                }
            }
            _ => {
                p.add(path, "exactly one of token or token_sha256 is needed");
                None
            }
        }
    }

    /// The token's policy, checked whether or not its name and secret are good; the token
    /// itself only with both.
    fn policy(
        &self,
        p: &mut Problems,
        path: &str,
        replicas: u32,
        default_rate: (TokenLimits, http::StatusCode),
        (name, secret): (Option<Arc<str>>, Option<TokenSecret>),
    ) -> Option<TokenConfig> {
        let t = self;
        if t.identities.is_empty() {
            p.add(
                format!("{path}.identities"),
                "a token must be bound to at least one certificate identity",
            );
        }
        let identities = p.each(
            &format!("{path}.identities"),
            &t.identities,
            Identity::parse,
        );
        if let Some(up) = &t.upstream_token
            && !token_is_well_formed(up)
        {
            p.add(
                format!("{path}.upstream_token"),
                "a token is 1-128 letters, digits, '_' or '-'",
            );
        }
        let allowed_apis = match &t.allow_apis {
            None => DEFAULT_ALLOWED_APIS.iter().map(|s| s.to_string()).collect(),
            Some(list) => {
                for (j, api) in list.iter().enumerate() {
                    if !KNOWN_APIS.contains(&api.as_str()) {
                        p.add(
                            format!("{path}.allow_apis[{j}]"),
                            format!("{api:?} is not a known non-write API"),
                        );
                    }
                }
                list.iter().cloned().collect()
            }
        };
        let global_tags = global_tags(p, &format!("{path}.global_tags"), t.global_tags.as_ref());
        for (j, index) in t.storage_indexes.iter().enumerate() {
            if !routing_key_is_well_formed(index) {
                p.add(
                    format!("{path}.storage_indexes[{j}]"),
                    "an index name is 1-128 letters, digits, '_', '-' or '.'",
                );
            }
        }
        let (limits, over_limit_status) = match &t.rate {
            Some(r) => rate(p, &format!("{path}.rate"), r, replicas),
            None => default_rate,
        };
        Some(TokenConfig {
            name: name?,
            secret: secret?,
            identities,
            upstream_token: t.upstream_token.clone(),
            allowed_apis,
            limits,
            over_limit_status,
            endpoints: t.endpoints.iter().cloned().collect(),
            global_tags,
            storage_indexes: t.storage_indexes.iter().cloned().collect(),
        })
    }
}
