//! Configuration: TOML parsed into [`RawConfig`] (unknown keys refused), then checked into a
//! [`Config`] of validated types. Every problem is reported at once, each with its key path,
//! so an operator fixes a file in one round.
//!
//! Units are in key names (`max_body_bytes`, `handshake_timeout_ms`). File paths are resolved
//! against the config file's directory. Certificates and keys are *named* here and loaded by
//! the TLS layer, which checks them (see `tls.rs`).

use std::collections::BTreeSet;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oneway_protocol::{Action, Limits, RuleActions, ValidationConfig};
use serde::Deserialize;

/// One problem in a config file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key path, e.g. `tokens[2].identities[0]`.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Why a config could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The TOML does not parse or has keys of the wrong type or unknown keys.
    #[error("{path}: {message}")]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message (with line and column).
        message: String,
    },
    /// The values are wrong; every problem is listed.
    #[error("{} problem(s) in the config:\n{}", .0.len(), .0.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<ConfigProblem>),
}

impl ConfigError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ConfigError::Read { .. } => "read",
            ConfigError::Syntax { .. } => "syntax",
            ConfigError::Invalid(_) => "invalid",
        }
    }
}

// ---------------------------------------------------------------- raw (as written) ----

/// The file as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    sandbox: Option<String>,
    listener: RawListener,
    #[serde(default)]
    admin: RawAdmin,
    upstream: RawUpstream,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    rules: RawRules,
    #[serde(default)]
    forward: RawForward,
    #[serde(default)]
    rate_limits: RawRateLimits,
    #[serde(default)]
    overload: RawOverload,
    #[serde(default)]
    tokens: Vec<RawToken>,
    spool: Option<RawSpool>,
    #[serde(default)]
    audit: RawAudit,
    #[serde(default)]
    reload: RawReload,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAudit {
    output: Option<String>,
    interval_seconds: Option<u64>,
    workspace_token: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawReload {
    watch_interval_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpool {
    directory: Option<PathBuf>,
    mode: Option<String>,
    max_bytes: Option<u64>,
    max_age_seconds: Option<u64>,
    segment_bytes: Option<u64>,
    replay_share: Option<f64>,
    retry_max_backoff_ms: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOverload {
    max_in_flight_requests: Option<u32>,
    memory_budget_bytes: Option<u64>,
    max_in_flight_per_identity: Option<u32>,
    max_memory_per_identity_bytes: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRateLimits {
    replicas: Option<u32>,
    #[serde(default)]
    default: RawRate,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRate {
    requests_per_second: Option<f64>,
    requests_burst: Option<f64>,
    decoded_bytes_per_second: Option<f64>,
    decoded_bytes_burst: Option<f64>,
    points_per_second: Option<f64>,
    points_burst: Option<f64>,
    over_limit_status: Option<u16>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    address: String,
    #[serde(default = "default_backlog")]
    backlog: u32,
    server_cert: PathBuf,
    server_key: PathBuf,
    client_ca: PathBuf,
    #[serde(default)]
    crls: Vec<PathBuf>,
    #[serde(default = "default_handshake_timeout_ms")]
    handshake_timeout_ms: u64,
    #[serde(default = "default_header_timeout_ms")]
    header_timeout_ms: u64,
    #[serde(default = "default_body_timeout_ms")]
    body_timeout_ms: u64,
    #[serde(default = "default_max_connections")]
    max_connections: usize,
    #[serde(default = "default_shutdown_grace_ms")]
    shutdown_grace_ms: u64,
    #[serde(default = "default_keepalive_timeout_ms")]
    keepalive_timeout_ms: u64,
    #[serde(default = "default_max_connection_age_ms")]
    max_connection_age_ms: u64,
    #[serde(default = "default_body_min_rate")]
    body_min_rate_bytes_per_second: u64,
    #[serde(default = "default_body_min_rate_grace_ms")]
    body_min_rate_grace_ms: u64,
    #[serde(default = "default_max_connections_per_ip")]
    max_connections_per_ip: usize,
    #[serde(default = "default_ipv6_prefix_len")]
    ipv6_prefix_len: u8,
    #[serde(default = "default_max_connections_per_identity")]
    max_connections_per_identity: usize,
    #[serde(default = "default_max_header_bytes")]
    max_header_bytes: usize,
    #[serde(default = "default_max_headers")]
    max_headers: usize,
    proxy_protocol: Option<RawProxyProtocol>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProxyProtocol {
    trusted_cidrs: Vec<String>,
    #[serde(default = "default_proxy_header_timeout_ms")]
    header_timeout_ms: u64,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAdmin {
    #[serde(default = "default_admin_address")]
    address: String,
}

impl Default for RawAdmin {
    fn default() -> Self {
        RawAdmin {
            address: default_admin_address(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawUpstream {
    addresses: Vec<String>,
    #[serde(default)]
    allowed_cidrs: Vec<String>,
    tls_ca: Option<PathBuf>,
    tls_server_name: Option<String>,
    #[serde(default = "default_connect_timeout_ms")]
    connect_timeout_ms: u64,
    #[serde(default = "default_response_timeout_ms")]
    response_timeout_ms: u64,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    max_body_bytes: Option<u64>,
    max_decoded_bytes: Option<u64>,
    max_upload_bytes: Option<u64>,
    max_tags: Option<u32>,
    max_fields: Option<u32>,
    max_key_bytes: Option<u32>,
    max_tag_value_bytes: Option<u32>,
    max_field_value_bytes: Option<u32>,
    max_measurement_bytes: Option<u32>,
    max_line_bytes: Option<u32>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    metric_string_field: Option<String>,
    reserved_key: Option<String>,
    duplicate_key: Option<String>,
    missing_expected_key: Option<String>,
    invalid_utf8: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawForward {
    identity_header: Option<String>,
    max_api_answer_bytes: Option<u64>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
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

fn default_backlog() -> u32 {
    1024
}
fn default_handshake_timeout_ms() -> u64 {
    10_000
}
fn default_header_timeout_ms() -> u64 {
    10_000
}
fn default_body_timeout_ms() -> u64 {
    60_000
}
fn default_max_connections() -> usize {
    10_000
}
fn default_keepalive_timeout_ms() -> u64 {
    60_000
}
fn default_max_connection_age_ms() -> u64 {
    3_600_000
}
fn default_body_min_rate() -> u64 {
    16 << 10
}
fn default_body_min_rate_grace_ms() -> u64 {
    5_000
}
fn default_ipv6_prefix_len() -> u8 {
    64
}
fn default_max_connections_per_ip() -> usize {
    1_024
}
fn default_max_connections_per_identity() -> usize {
    256
}
fn default_max_header_bytes() -> usize {
    16 << 10
}
fn default_max_headers() -> usize {
    64
}
fn default_proxy_header_timeout_ms() -> u64 {
    5_000
}
fn default_shutdown_grace_ms() -> u64 {
    30_000
}
fn default_admin_address() -> String {
    "127.0.0.1:9090".into()
}
fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_response_timeout_ms() -> u64 {
    30_000
}

// ---------------------------------------------------------------- validated ----

/// Default cap on a compressed body: 16 MiB (DataKit sends at most 1 MiB before gzip).
pub const DEFAULT_MAX_BODY_BYTES: usize = 16 << 20;
/// Default cap on a decoded body: 64 MiB (DataWay's own body limit).
pub const DEFAULT_MAX_DECODED_BYTES: usize = 64 << 20;
/// Default cap on a multipart upload (profiling, session replay): 32 MiB, as DataKit sends.
pub const DEFAULT_MAX_UPLOAD_BYTES: usize = 32 << 20;

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

/// A validated configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The public mTLS listener.
    pub listener: ListenerConfig,
    /// The internal admin listener (metrics, health).
    pub admin_address: SocketAddr,
    /// Where validated batches go.
    pub upstream: UpstreamConfig,
    /// Body caps.
    pub body: BodyLimits,
    /// Point-model limits and rule actions.
    pub validation: ValidationConfig,
    /// The header naming the agent's identity upstream, if any.
    pub identity_header: Option<http::HeaderName>,
    /// Global overload protection.
    pub overload: OverloadConfig,
    /// The agents' tokens.
    pub tokens: Vec<TokenConfig>,
    /// The durable spool, if configured.
    pub spool: Option<crate::spool::SpoolConfig>,
    /// The audit trail.
    pub audit: crate::audit::AuditConfig,
    /// How often watched files are checked for changes (`None`: only SIGHUP reloads).
    pub watch_interval: Option<Duration>,
    /// The kernel sandbox `oneway run` enters once bound.
    pub sandbox: crate::sandbox::SandboxMode,
    /// The file this was loaded from (for reloads).
    pub source: Option<PathBuf>,
    /// SHA-256 of the file's bytes, hex (for the audit trail).
    pub sha256: String,
    /// What is valid but likely a mistake (`check-config` prints it, `run` logs it).
    pub warnings: Vec<ConfigProblem>,
}

/// The public listener.
#[derive(Debug, Clone)]
pub struct ListenerConfig {
    /// Address to bind.
    pub address: SocketAddr,
    /// Listen backlog.
    pub backlog: u32,
    /// Server certificate chain (PEM).
    pub server_cert: PathBuf,
    /// Server private key (PEM).
    pub server_key: PathBuf,
    /// CA bundle for client certificates (PEM).
    pub client_ca: PathBuf,
    /// Certificate revocation lists (PEM or DER).
    pub crls: Vec<PathBuf>,
    /// TLS handshake deadline.
    pub handshake_timeout: Duration,
    /// Request head deadline.
    pub header_timeout: Duration,
    /// Whole-body deadline.
    pub body_timeout: Duration,
    /// Concurrent connections.
    pub max_connections: usize,
    /// How long in-flight requests may take after SIGTERM.
    pub shutdown_grace: Duration,
    /// How long a connection may sit idle between requests.
    pub keepalive_timeout: Duration,
    /// Connections older than this are closed gracefully (after the request in progress).
    pub max_connection_age: Duration,
    /// Bodies slower than this on average (after the grace period) are cut off; 0: no floor.
    pub body_min_rate_bytes_per_second: u64,
    /// How long a body may take before the minimum rate applies.
    pub body_min_rate_grace: Duration,
    /// Concurrent connections per source address (the PROXY-derived one when there is one).
    pub max_connections_per_ip: usize,
    /// IPv6 clients are counted per prefix of this many bits (1..=128) under the per-IP cap.
    pub ipv6_prefix_len: u8,
    /// Concurrent connections per client-certificate identity.
    pub max_connections_per_identity: usize,
    /// Largest request head (request line and headers), bytes; over it: 431.
    pub max_header_bytes: usize,
    /// Most header fields in a request; over it: 431.
    pub max_headers: usize,
    /// PROXY protocol (v1 or v2) from the load balancer, when configured.
    pub proxy_protocol: Option<ProxyProtocolConfig>,
}

/// `[listener.proxy_protocol]`: every connection must start with exactly one PROXY header.
#[derive(Debug, Clone)]
pub struct ProxyProtocolConfig {
    /// Only peers inside these networks (the load balancers) may connect.
    pub trusted: Vec<Cidr>,
    /// The header must arrive within this.
    pub header_timeout: Duration,
}

/// TLS to the upstream.
#[derive(Debug, Clone)]
pub struct UpstreamTls {
    /// CA bundle that signs the upstream's certificate (PEM).
    pub ca: PathBuf,
    /// The name the upstream's certificate must carry.
    pub server_name: String,
}

/// The upstream.
#[derive(Debug, Clone)]
pub struct UpstreamConfig {
    /// Addresses, tried in turn (names were resolved once, at start, inside `allowed_cidrs`;
    /// a config read for a reload holds only the literal ones: see [`Names`]).
    pub addresses: Vec<SocketAddr>,
    /// `upstream.addresses` as written (names and literals).
    pub configured: Vec<String>,
    /// `upstream.allowed_cidrs` as written.
    pub allowed_cidrs: Vec<String>,
    /// The most of an upstream answer's body that is read (`forward.max_api_answer_bytes`):
    /// a non-write API's longer answer is refused, never relayed in part.
    pub max_answer_bytes: usize,
    /// TLS to the upstream, if configured.
    pub tls: Option<UpstreamTls>,
    /// TCP connect deadline.
    pub connect_timeout: Duration,
    /// Deadline for the upstream's response head.
    pub response_timeout: Duration,
    /// Idle keep-alive connections kept per upstream address: `overload.max_in_flight_requests`,
    /// so that every request the gateway may have in flight can reuse a connection instead of
    /// opening (and then closing) one.
    pub max_idle_connections: usize,
}

/// Global overload protection.
#[derive(Debug, Clone, Copy)]
pub struct OverloadConfig {
    /// Requests whose body is being read, decoded, validated or forwarded at once.
    pub max_in_flight_requests: usize,
    /// Bytes of bodies held and decoded at once.
    pub memory_budget_bytes: usize,
    /// In-flight requests one certificate identity (the one its token matched) may hold.
    pub max_in_flight_per_identity: usize,
    /// Bytes of the memory budget one identity may hold.
    pub max_memory_per_identity_bytes: usize,
}

/// Default cap on a non-write API's answer: 1 MiB.
pub const DEFAULT_MAX_API_ANSWER_BYTES: usize = 1 << 20;

/// Default in-flight cap.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default memory budget: 1 GiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 30;

/// Body caps.
#[derive(Debug, Clone, Copy)]
pub struct BodyLimits {
    /// Compressed (as sent) body.
    pub max_body_bytes: usize,
    /// Decoded body.
    pub max_decoded_bytes: usize,
    /// Multipart uploads.
    pub max_upload_bytes: usize,
}

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
    /// How the token is matched.
    pub secret: TokenSecret,
    /// Certificate identities the token is bound to (at least one).
    pub identities: Vec<Identity>,
    /// The workspace token forwarded upstream instead of the agent's, if mapped.
    pub upstream_token: Option<String>,
    /// Non-write APIs this token may call.
    pub allowed_apis: BTreeSet<String>,
    /// Rate limits (this replica's share).
    pub limits: crate::limit::TokenLimits,
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
            secret: TokenSecret::Sha256([0; 32]),
            identities: Vec::new(),
            upstream_token: None,
            allowed_apis: BTreeSet::new(),
            limits: crate::limit::TokenLimits::default(),
            over_limit_status: http::StatusCode::SERVICE_UNAVAILABLE,
            endpoints: BTreeSet::new(),
            global_tags: GlobalTags::Drop,
            storage_indexes: BTreeSet::new(),
        }
    }
}

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
fn routing_key_is_well_formed(k: &str) -> bool {
    !k.is_empty()
        && k.len() <= 128
        && k.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn global_tags(p: &mut Problems, path: &str, raw: Option<&toml::Value>) -> GlobalTags {
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

/// An IP network, `10.0.0.0/8` or `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: std::net::IpAddr,
    prefix: u8,
}

impl Cidr {
    /// Parses `address/prefix`.
    pub fn parse(s: &str) -> Result<Cidr, String> {
        let bad = || format!("{s:?} is not an address/prefix network");
        let (ip, prefix) = s.split_once('/').ok_or_else(bad)?;
        let network: std::net::IpAddr = ip.parse().map_err(|_| bad())?;
        let prefix: u8 = prefix.parse().map_err(|_| bad())?;
        let max = if network.is_ipv4() { 32 } else { 128 };
        if prefix > max {
            return Err(bad());
        }
        Ok(Cidr { network, prefix })
    }

    /// Whether `ip` is inside the network (an IPv4-mapped IPv6 address counts as IPv4).
    pub fn contains(&self, ip: std::net::IpAddr) -> bool {
        use std::net::IpAddr;
        let (a, b, bits) = match (self.network, ip.to_canonical()) {
            (IpAddr::V4(n), IpAddr::V4(i)) => {
                (u128::from(u32::from(n)), u128::from(u32::from(i)), 32)
            }
            (IpAddr::V6(n), IpAddr::V6(i)) => (u128::from(n), u128::from(i), 128),
            _ => return false,
        };
        let shift = bits - u32::from(self.prefix);
        shift >= bits || (a >> shift) == (b >> shift)
    }
}

struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }
}

fn positive(p: &mut Problems, path: &str, n: usize) -> usize {
    if n == 0 {
        p.add(path, "must be greater than 0");
    }
    n.max(1)
}

fn duration(p: &mut Problems, path: &str, ms: u64) -> Duration {
    if ms == 0 {
        p.add(path, "must be greater than 0");
    }
    Duration::from_millis(ms)
}

fn action(p: &mut Problems, path: &str, value: &Option<String>, default: Action) -> Action {
    match value.as_deref() {
        None => default,
        Some("reject") => Action::Reject,
        Some("count") => Action::Count,
        Some(other) => {
            p.add(path, format!("{other:?} is not \"reject\" or \"count\""));
            default
        }
    }
}

fn nonzero<T: Copy + PartialEq + Default + Into<u64>>(
    p: &mut Problems,
    path: &str,
    v: Option<T>,
    default: T,
) -> T {
    match v {
        Some(v) if v == T::default() => {
            p.add(path, "must be greater than 0");
            default
        }
        Some(v) => v,
        None => default,
    }
}

fn address(p: &mut Problems, path: &str, s: &str) -> SocketAddr {
    s.parse().unwrap_or_else(|_| {
        p.add(
            path,
            format!("{s:?} is not an IP:port address (names are not resolved)"),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    })
}

/// Checks a rate block and turns it into this replica's limits.
fn rate(
    p: &mut Problems,
    path: &str,
    r: &RawRate,
    replicas: u32,
) -> (crate::limit::TokenLimits, http::StatusCode) {
    use crate::limit::Rate;
    let share = f64::from(replicas.max(1));
    let mut one = |name: &str, per_second: Option<f64>, burst: Option<f64>| -> Option<Rate> {
        match (per_second, burst) {
            (None, None) => None,
            (Some(r), b)
                if r > 0.0 && r.is_finite() && b.is_none_or(|b| b >= 1.0 && b.is_finite()) =>
            {
                let burst = b.unwrap_or(r);
                Some(Rate::new(r / share, (burst / share).max(1.0)))
            }
            (None, Some(_)) => {
                p.add(
                    format!("{path}.{name}_burst"),
                    format!("needs {name}_per_second"),
                );
                None
            }
            _ => {
                p.add(
                    format!("{path}.{name}_per_second"),
                    "the rate must be > 0 and the burst ≥ 1",
                );
                None
            }
        }
    };
    let limits = crate::limit::TokenLimits {
        requests: one("requests", r.requests_per_second, r.requests_burst),
        decoded_bytes: one(
            "decoded_bytes",
            r.decoded_bytes_per_second,
            r.decoded_bytes_burst,
        ),
        points: one("points", r.points_per_second, r.points_burst),
    };
    let status = match r.over_limit_status {
        None | Some(503) => http::StatusCode::SERVICE_UNAVAILABLE,
        Some(429) => http::StatusCode::TOO_MANY_REQUESTS,
        Some(other) => {
            p.add(
                format!("{path}.over_limit_status"),
                format!("{other} is not 503 or 429"),
            );
            http::StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (limits, status)
}

/// Default spool high-watermark: 1 GiB.
const DEFAULT_SPOOL_MAX_BYTES: u64 = 1 << 30;
/// Default spool segment size: 64 MiB.
const DEFAULT_SPOOL_SEGMENT_BYTES: u64 = 64 << 20;

fn spool(
    p: &mut Problems,
    r: &RawSpool,
    resolve: &dyn Fn(&PathBuf) -> PathBuf,
    max_body_bytes: usize,
) -> Option<crate::spool::SpoolConfig> {
    use crate::spool::SpoolMode;
    let directory = match &r.directory {
        Some(d) => resolve(d),
        None => {
            p.add("spool.directory", "is required to enable the spool");
            PathBuf::new()
        }
    };
    let mode = match r.mode.as_deref() {
        None | Some("forward-first") => SpoolMode::ForwardFirst,
        Some("spool-first") => SpoolMode::SpoolFirst,
        Some(other) => {
            p.add(
                "spool.mode",
                format!("{other:?} is not \"forward-first\" or \"spool-first\""),
            );
            SpoolMode::ForwardFirst
        }
    };
    let segment_bytes = r.segment_bytes.unwrap_or(DEFAULT_SPOOL_SEGMENT_BYTES);
    if segment_bytes < 64 << 10 {
        p.add("spool.segment_bytes", "must be at least 65536");
    }
    let max_bytes = r.max_bytes.unwrap_or(DEFAULT_SPOOL_MAX_BYTES);
    if max_bytes < (max_body_bytes as u64).saturating_mul(2).max(segment_bytes) {
        p.add(
            "spool.max_bytes",
            "must hold at least one segment and two bodies of limits.max_body_bytes",
        );
    }
    let replay_share = r.replay_share.unwrap_or(0.5);
    if !(replay_share > 0.0 && replay_share <= 1.0) {
        p.add("spool.replay_share", "must be in (0, 1]");
    }
    let max_age = match r.max_age_seconds {
        Some(0) => {
            p.add(
                "spool.max_age_seconds",
                "must be greater than 0 (or absent)",
            );
            None
        }
        s => s.map(Duration::from_secs),
    };
    let retry_max_backoff = Duration::from_millis(match r.retry_max_backoff_ms {
        Some(0) => {
            p.add("spool.retry_max_backoff_ms", "must be greater than 0");
            1
        }
        Some(ms) => ms,
        None => 30_000,
    });
    Some(crate::spool::SpoolConfig {
        directory,
        mode,
        max_bytes,
        max_age,
        segment_bytes,
        replay_share,
        retry_max_backoff,
    })
}

fn token_is_well_formed(t: &str) -> bool {
    !t.is_empty()
        && t.len() <= 128
        && t.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl RawConfig {
    /// Parses TOML text.
    pub fn parse(text: &str, path: &Path) -> Result<RawConfig, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Syntax {
            path: path.to_path_buf(),
            message: e.to_string(),
        })
    }

    /// Checks every value; paths are resolved against `base`; upstream names are resolved.
    pub fn validate(self, base: &Path) -> Result<Config, ConfigError> {
        self.validate_with(base, Names::Resolve)
    }

    /// [`RawConfig::validate`], resolving upstream names or not.
    pub fn validate_with(self, base: &Path, names: Names) -> Result<Config, ConfigError> {
        let mut p = Problems(Vec::new());
        let resolve = |f: &PathBuf| {
            if f.is_absolute() {
                f.clone()
            } else {
                base.join(f)
            }
        };
        let l = &self.listener;
        if l.backlog == 0 {
            p.add("listener.backlog", "must be greater than 0");
        }
        if l.max_connections == 0 {
            p.add("listener.max_connections", "must be greater than 0");
        }
        let listener = ListenerConfig {
            address: address(&mut p, "listener.address", &l.address),
            backlog: l.backlog,
            server_cert: resolve(&l.server_cert),
            server_key: resolve(&l.server_key),
            client_ca: resolve(&l.client_ca),
            crls: l.crls.iter().map(resolve).collect(),
            handshake_timeout: duration(
                &mut p,
                "listener.handshake_timeout_ms",
                l.handshake_timeout_ms,
            ),
            header_timeout: duration(&mut p, "listener.header_timeout_ms", l.header_timeout_ms),
            body_timeout: duration(&mut p, "listener.body_timeout_ms", l.body_timeout_ms),
            max_connections: l.max_connections,
            shutdown_grace: duration(&mut p, "listener.shutdown_grace_ms", l.shutdown_grace_ms),
            keepalive_timeout: duration(
                &mut p,
                "listener.keepalive_timeout_ms",
                l.keepalive_timeout_ms,
            ),
            max_connection_age: duration(
                &mut p,
                "listener.max_connection_age_ms",
                l.max_connection_age_ms,
            ),
            body_min_rate_bytes_per_second: l.body_min_rate_bytes_per_second,
            body_min_rate_grace: Duration::from_millis(l.body_min_rate_grace_ms),
            max_connections_per_ip: positive(
                &mut p,
                "listener.max_connections_per_ip",
                l.max_connections_per_ip,
            ),
            ipv6_prefix_len: if (1..=128).contains(&l.ipv6_prefix_len) {
                l.ipv6_prefix_len
            } else {
                p.add(
                    "listener.ipv6_prefix_len",
                    "must be a prefix length from 1 to 128 (64 counts one /64 as one client)",
                );
                64
            },
            max_connections_per_identity: positive(
                &mut p,
                "listener.max_connections_per_identity",
                l.max_connections_per_identity,
            ),
            max_header_bytes: l.max_header_bytes,
            max_headers: positive(&mut p, "listener.max_headers", l.max_headers),
            proxy_protocol: l.proxy_protocol.as_ref().map(|pp| ProxyProtocolConfig {
                trusted: pp
                    .trusted_cidrs
                    .iter()
                    .enumerate()
                    .filter_map(|(i, c)| {
                        Cidr::parse(c)
                            .map_err(|m| {
                                p.add(format!("listener.proxy_protocol.trusted_cidrs[{i}]"), m)
                            })
                            .ok()
                    })
                    .collect(),
                header_timeout: duration(
                    &mut p,
                    "listener.proxy_protocol.header_timeout_ms",
                    pp.header_timeout_ms,
                ),
            }),
        };
        if !(1024..=(1 << 20)).contains(&listener.max_header_bytes) {
            p.add(
                "listener.max_header_bytes",
                "must be between 1024 and 1048576",
            );
        }
        if listener
            .proxy_protocol
            .as_ref()
            .is_some_and(|pp| pp.trusted.is_empty())
        {
            p.add(
                "listener.proxy_protocol.trusted_cidrs",
                "name the load balancers' networks: PROXY headers from anyone else are refused",
            );
        }
        let admin_address = address(&mut p, "admin.address", &self.admin.address);
        if admin_address == listener.address && admin_address.port() != 0 {
            p.add(
                "admin.address",
                "must differ from listener.address: admin is never public",
            );
        }

        let u = &self.upstream;
        if u.addresses.is_empty() {
            p.add(
                "upstream.addresses",
                "at least one upstream address is needed",
            );
        }
        let cidrs: Vec<Cidr> = u
            .allowed_cidrs
            .iter()
            .enumerate()
            .filter_map(|(i, c)| {
                Cidr::parse(c)
                    .map_err(|m| p.add(format!("upstream.allowed_cidrs[{i}]"), m))
                    .ok()
            })
            .collect();
        let mut addresses = Vec::new();
        for (i, a) in u.addresses.iter().enumerate() {
            let path = format!("upstream.addresses[{i}]");
            if let Ok(literal) = a.parse::<SocketAddr>() {
                addresses.push(literal);
                continue;
            }
            // A name: resolved once, at start, and every address must be inside allowed_cidrs.
            if cidrs.is_empty() {
                p.add(
                    path,
                    format!("{a:?} is a name: names need upstream.allowed_cidrs (or use IP:port)"),
                );
                continue;
            }
            if names == Names::Unresolved {
                if let Err(why) = name_and_port(a) {
                    p.add(path, format!("{a:?}: {why}"));
                }
                continue;
            }
            match std::net::ToSocketAddrs::to_socket_addrs(a.as_str()) {
                Ok(resolved) => {
                    let resolved: Vec<SocketAddr> = resolved.collect();
                    if resolved.is_empty() {
                        p.add(path.clone(), format!("{a:?} resolved to no address"));
                    }
                    for r in resolved {
                        if cidrs.iter().any(|c| c.contains(r.ip())) {
                            addresses.push(r);
                        } else {
                            p.add(
                                path.clone(),
                                format!(
                                    "{a:?} resolved to {}, outside upstream.allowed_cidrs",
                                    r.ip()
                                ),
                            );
                        }
                    }
                }
                Err(e) => p.add(path, format!("cannot resolve {a:?}: {e}")),
            }
        }
        let tls = match (&u.tls_ca, &u.tls_server_name) {
            (None, None) => None,
            (Some(ca), Some(name)) => Some(UpstreamTls {
                ca: resolve(ca),
                server_name: name.clone(),
            }),
            _ => {
                p.add("upstream", "tls_ca and tls_server_name go together");
                None
            }
        };
        let mut upstream = UpstreamConfig {
            max_idle_connections: DEFAULT_MAX_IN_FLIGHT,
            addresses,
            configured: u.addresses.clone(),
            allowed_cidrs: u.allowed_cidrs.clone(),
            max_answer_bytes: match self.forward.max_api_answer_bytes {
                None => DEFAULT_MAX_API_ANSWER_BYTES,
                Some(n) if (1024..=64 << 20).contains(&n) => n as usize,
                Some(_) => {
                    p.add(
                        "forward.max_api_answer_bytes",
                        "must be between 1024 and 67108864",
                    );
                    DEFAULT_MAX_API_ANSWER_BYTES
                }
            },
            tls,
            connect_timeout: duration(&mut p, "upstream.connect_timeout_ms", u.connect_timeout_ms),
            response_timeout: duration(
                &mut p,
                "upstream.response_timeout_ms",
                u.response_timeout_ms,
            ),
        };

        let lim = &self.limits;
        let size = |p: &mut Problems, key: &str, v: Option<u64>, d: usize| -> usize {
            let v = nonzero(p, &format!("limits.{key}"), v, d as u64);
            usize::try_from(v).unwrap_or(usize::MAX)
        };
        let body = BodyLimits {
            max_body_bytes: size(
                &mut p,
                "max_body_bytes",
                lim.max_body_bytes,
                DEFAULT_MAX_BODY_BYTES,
            ),
            max_decoded_bytes: size(
                &mut p,
                "max_decoded_bytes",
                lim.max_decoded_bytes,
                DEFAULT_MAX_DECODED_BYTES,
            ),
            max_upload_bytes: size(
                &mut p,
                "max_upload_bytes",
                lim.max_upload_bytes,
                DEFAULT_MAX_UPLOAD_BYTES,
            ),
        };
        let d = Limits::default();
        let limits = Limits {
            max_tags: nonzero(&mut p, "limits.max_tags", lim.max_tags, d.max_tags),
            max_fields: nonzero(&mut p, "limits.max_fields", lim.max_fields, d.max_fields),
            max_key_bytes: nonzero(
                &mut p,
                "limits.max_key_bytes",
                lim.max_key_bytes,
                d.max_key_bytes,
            ),
            max_tag_value_bytes: nonzero(
                &mut p,
                "limits.max_tag_value_bytes",
                lim.max_tag_value_bytes,
                d.max_tag_value_bytes,
            ),
            max_field_value_bytes: nonzero(
                &mut p,
                "limits.max_field_value_bytes",
                lim.max_field_value_bytes,
                d.max_field_value_bytes,
            ),
            max_measurement_bytes: nonzero(
                &mut p,
                "limits.max_measurement_bytes",
                lim.max_measurement_bytes,
                d.max_measurement_bytes,
            ),
            max_line_bytes: nonzero(
                &mut p,
                "limits.max_line_bytes",
                lim.max_line_bytes,
                d.max_line_bytes,
            ),
        };
        let da = RuleActions::default();
        let r = &self.rules;
        let actions = RuleActions {
            metric_string_field: action(
                &mut p,
                "rules.metric_string_field",
                &r.metric_string_field,
                da.metric_string_field,
            ),
            reserved_key: action(
                &mut p,
                "rules.reserved_key",
                &r.reserved_key,
                da.reserved_key,
            ),
            duplicate_key: action(
                &mut p,
                "rules.duplicate_key",
                &r.duplicate_key,
                da.duplicate_key,
            ),
            missing_expected_key: action(
                &mut p,
                "rules.missing_expected_key",
                &r.missing_expected_key,
                da.missing_expected_key,
            ),
            invalid_utf8: action(
                &mut p,
                "rules.invalid_utf8",
                &r.invalid_utf8,
                da.invalid_utf8,
            ),
        };

        let identity_header =
            self.forward.identity_header.as_deref().and_then(
                |h| match http::HeaderName::from_bytes(h.as_bytes()) {
                    Ok(name) => Some(name),
                    Err(_) => {
                        p.add(
                            "forward.identity_header",
                            format!("{h:?} is not a valid header name"),
                        );
                        None
                    }
                },
            );

        let o = &self.overload;
        let mut overload = OverloadConfig {
            max_in_flight_requests: nonzero(
                &mut p,
                "overload.max_in_flight_requests",
                o.max_in_flight_requests,
                DEFAULT_MAX_IN_FLIGHT as u32,
            ) as usize,
            memory_budget_bytes: usize::try_from(nonzero(
                &mut p,
                "overload.memory_budget_bytes",
                o.memory_budget_bytes,
                DEFAULT_MEMORY_BUDGET as u64,
            ))
            .unwrap_or(usize::MAX),
            max_in_flight_per_identity: 0,
            max_memory_per_identity_bytes: 0,
        };
        upstream.max_idle_connections = overload.max_in_flight_requests;
        let one_body = body.max_body_bytes.max(body.max_upload_bytes);
        if overload.memory_budget_bytes < one_body {
            p.add(
                "overload.memory_budget_bytes",
                "must hold at least one body of max_body_bytes and max_upload_bytes",
            );
        }
        // An identity's share: a quarter of each global budget unless configured, never less
        // than one body.
        overload.max_in_flight_per_identity = match o.max_in_flight_per_identity {
            None => (overload.max_in_flight_requests / 4).max(1),
            Some(n) if n == 0 || n as usize > overload.max_in_flight_requests => {
                p.add(
                    "overload.max_in_flight_per_identity",
                    "must be from 1 to overload.max_in_flight_requests",
                );
                overload.max_in_flight_requests
            }
            Some(n) => n as usize,
        };
        overload.max_memory_per_identity_bytes = match o.max_memory_per_identity_bytes {
            None => (overload.memory_budget_bytes / 4)
                .max(one_body)
                .min(overload.memory_budget_bytes),
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n < one_body || n > overload.memory_budget_bytes {
                    p.add(
                        "overload.max_memory_per_identity_bytes",
                        "must hold one body of max_body_bytes and max_upload_bytes and be at \
                         most overload.memory_budget_bytes",
                    );
                }
                n
            }
        };
        let replicas = match self.rate_limits.replicas {
            Some(0) => {
                p.add("rate_limits.replicas", "must be at least 1");
                1
            }
            Some(n) => n,
            None => 1,
        };
        let default_rate = rate(
            &mut p,
            "rate_limits.default",
            &self.rate_limits.default,
            replicas,
        );
        let mut tokens = Vec::new();
        let mut seen = BTreeSet::new();
        let mut warnings = Vec::new();
        for (i, t) in self.tokens.iter().enumerate() {
            let path = format!("tokens[{i}]");
            let secret = match (&t.token, &t.token_sha256) {
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
                    Some(TokenSecret::Sha256(crate::auth::sha256(tok.as_bytes())))
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
                    p.add(
                        path.clone(),
                        "exactly one of token or token_sha256 is needed",
                    );
                    None
                }
            };
            if let Some(TokenSecret::Sha256(h)) = &secret
                && !seen.insert(*h)
            {
                p.add(path.clone(), "the same token is configured twice");
            }
            if t.identities.is_empty() {
                p.add(
                    format!("{path}.identities"),
                    "a token must be bound to at least one certificate identity",
                );
            }
            let identities = t
                .identities
                .iter()
                .enumerate()
                .filter_map(|(j, s)| {
                    Identity::parse(s)
                        .map_err(|m| p.add(format!("{path}.identities[{j}]"), m))
                        .ok()
                })
                .collect();
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
            let global_tags = global_tags(
                &mut p,
                &format!("{path}.global_tags"),
                t.global_tags.as_ref(),
            );
            for (j, index) in t.storage_indexes.iter().enumerate() {
                if !routing_key_is_well_formed(index) {
                    p.add(
                        format!("{path}.storage_indexes[{j}]"),
                        "an index name is 1-128 letters, digits, '_', '-' or '.'",
                    );
                }
            }
            let (limits, over_limit_status) = match &t.rate {
                Some(r) => rate(&mut p, &format!("{path}.rate"), r, replicas),
                None => default_rate,
            };
            if let Some(secret) = secret {
                tokens.push(TokenConfig {
                    secret,
                    identities,
                    upstream_token: t.upstream_token.clone(),
                    allowed_apis,
                    limits,
                    over_limit_status,
                    endpoints: t.endpoints.iter().cloned().collect(),
                    global_tags,
                    storage_indexes: t.storage_indexes.iter().cloned().collect(),
                });
            }
        }

        let spool = self
            .spool
            .as_ref()
            .and_then(|sp| spool(&mut p, sp, &resolve, body.max_body_bytes));
        let audit = crate::audit::AuditConfig {
            output: match self.audit.output.as_deref() {
                None | Some("stdout") => crate::audit::AuditOutput::Stdout,
                Some("off") => crate::audit::AuditOutput::Off,
                Some(path) => crate::audit::AuditOutput::File(resolve(&PathBuf::from(path))),
            },
            interval: Duration::from_secs(match self.audit.interval_seconds {
                Some(0) => {
                    p.add("audit.interval_seconds", "must be greater than 0");
                    10
                }
                Some(s) => s,
                None => 10,
            }),
            workspace_token: self.audit.workspace_token.clone().inspect(|t| {
                if !token_is_well_formed(t) {
                    p.add(
                        "audit.workspace_token",
                        "a token is 1-128 letters, digits, '_' or '-'",
                    );
                }
            }),
        };
        let sandbox = match self.sandbox.as_deref() {
            None => crate::sandbox::SandboxMode::default(),
            Some(s) => crate::sandbox::SandboxMode::parse(s).unwrap_or_else(|| {
                p.add(
                    "sandbox",
                    format!("{s:?} is not \"required\", \"best-effort\" or \"off\""),
                );
                crate::sandbox::SandboxMode::default()
            }),
        };
        let watch_interval = match self.reload.watch_interval_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(Duration::from_secs(1)),
        };

        if !p.0.is_empty() {
            return Err(ConfigError::Invalid(p.0));
        }
        Ok(Config {
            sandbox,
            spool,
            audit,
            watch_interval,
            source: None,
            sha256: String::new(),
            listener,
            admin_address,
            upstream,
            body,
            validation: ValidationConfig { limits, actions },
            identity_header,
            overload,
            tokens,
            warnings,
        })
    }
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
                (Some(token), None) => {
                    Some(TokenSecret::Sha256(crate::auth::sha256(token.as_bytes())))
                }
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

/// Whether upstream names in `upstream.addresses` are resolved while validating.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Names {
    /// At start and in `check-config`: each name is resolved once, and every address it
    /// resolves to must be inside `upstream.allowed_cidrs`.
    Resolve,
    /// On reload: never (there is no DNS after start, and inside the sandbox none is
    /// possible). A name is checked for its form only; `[upstream]` needs a restart anyway.
    Unresolved,
}

/// `host:port` with a port that parses.
fn name_and_port(a: &str) -> Result<(), &'static str> {
    match a.rsplit_once(':') {
        Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err("not IP:port or name:port"),
    }
}

impl Config {
    /// Reads, parses and validates a config file, resolving upstream names (at start).
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Names::Resolve)
    }

    /// [`Config::load`] for a reload: no name is resolved.
    pub fn load_for_reload(path: &Path) -> Result<Config, ConfigError> {
        Config::load_with(path, Names::Unresolved)
    }

    fn load_with(path: &Path, names: Names) -> Result<Config, ConfigError> {
        let text = read(path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        let mut config = RawConfig::parse(&text, path)?.validate_with(base, names)?;
        config.source = Some(path.to_path_buf());
        config.sha256 = hex::encode(crate::auth::sha256(text.as_bytes()));
        Ok(config)
    }
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = r#"
[listener]
address = "127.0.0.1:8443"
server_cert = "server.pem"
server_key = "server.key"
client_ca = "ca.pem"

[upstream]
addresses = ["127.0.0.1:9528"]

[[tokens]]
token = "tkn_0123456789abcdef0123456789abcdef"
identities = ["dns:agent-1.example"]
"#;

    fn load(text: &str) -> Result<Config, ConfigError> {
        RawConfig::parse(text, Path::new("t.toml"))?.validate(Path::new("/etc/oneway"))
    }

    #[test]
    fn minimal_config_gets_defaults_and_resolved_paths() {
        let c = load(MINIMAL).unwrap();
        assert_eq!(
            c.listener.server_cert,
            PathBuf::from("/etc/oneway/server.pem")
        );
        assert_eq!(c.listener.handshake_timeout, Duration::from_secs(10));
        assert_eq!(c.body.max_decoded_bytes, DEFAULT_MAX_DECODED_BYTES);
        assert_eq!(c.validation, ValidationConfig::default());
        assert_eq!(
            c.tokens[0].identities,
            vec![Identity::Dns("agent-1.example".into())]
        );
        // The default policy: leader election only.
        assert_eq!(
            c.tokens[0].allowed_apis.iter().collect::<Vec<_>>(),
            ["/v1/election", "/v1/election/heartbeat"]
        );
        assert_eq!(c.upstream.max_answer_bytes, 1 << 20);
        assert_eq!(c.listener.ipv6_prefix_len, 64);
        assert_eq!(
            c.overload.max_in_flight_per_identity,
            DEFAULT_MAX_IN_FLIGHT / 4
        );
        assert_eq!(
            c.overload.max_memory_per_identity_bytes,
            DEFAULT_MEMORY_BUDGET / 4
        );
    }

    #[test]
    fn an_identitys_share_holds_one_body_and_fits_the_budget() {
        let with = |overload: &str| {
            load(&format!(
                "{MINIMAL}\n[limits]\nmax_body_bytes = 1048576\nmax_upload_bytes = 1048576\n\
                 [overload]\nmemory_budget_bytes = 2097152\nmax_in_flight_requests = 8\n{overload}"
            ))
        };
        // A quarter of a 2 MiB budget would not hold one 1 MiB body: the share is one body.
        let c = with("").unwrap();
        assert_eq!(c.overload.max_memory_per_identity_bytes, 1 << 20);
        assert_eq!(c.overload.max_in_flight_per_identity, 2);
        for (bad, key) in [
            (
                "max_memory_per_identity_bytes = 1000",
                "overload.max_memory_per_identity_bytes",
            ),
            (
                "max_memory_per_identity_bytes = 4194304",
                "overload.max_memory_per_identity_bytes",
            ),
            (
                "max_in_flight_per_identity = 0",
                "overload.max_in_flight_per_identity",
            ),
            (
                "max_in_flight_per_identity = 9",
                "overload.max_in_flight_per_identity",
            ),
        ] {
            let Err(ConfigError::Invalid(problems)) = with(bad) else {
                panic!("{bad} must be refused");
            };
            assert!(
                problems.iter().any(|p| p.path == key),
                "{bad}: {problems:?}"
            );
        }
    }

    #[test]
    fn every_problem_is_reported_with_its_path() {
        let text = MINIMAL
            .replace("127.0.0.1:9528", "upstream.example:9528")
            .replace("dns:agent-1.example", "ip:10.0.0.1")
            .replace("[listener]\n", "[listener]\nipv6_prefix_len = 129\n")
            + r#"
[[tokens]]
token_sha256 = "zz"
identities = []
upstream_token = "bad token"
allow_apis = ["/v1/nope"]

[limits]
max_tags = 0

[rules]
duplicate_key = "ignore"
"#;
        let Err(ConfigError::Invalid(problems)) = load(&text) else {
            panic!("must be invalid");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for want in [
            "upstream.addresses[0]",
            "tokens[0].identities[0]",
            "tokens[1].token_sha256",
            "tokens[1].identities",
            "tokens[1].upstream_token",
            "tokens[1].allow_apis[0]",
            "limits.max_tags",
            "rules.duplicate_key",
            "listener.ipv6_prefix_len",
        ] {
            assert!(paths.contains(&want), "{want} missing from {paths:?}");
        }
    }

    #[test]
    fn datakit_token_check_follows_its_installer() {
        for good in [
            "tkn_0123456789abcdef0123456789abcdef",
            "token_0123456789abcdef0123456789abcdef",
            "tokn_0123456789abcdef01234567",
        ] {
            assert_eq!(datakit_accepts_token(good), Ok(()), "{good}");
        }
        for bad in [
            "tkn_agent1_0123456789abcdef01234567",
            "tkn_0123456789abcdef0123456789abcdefg",
            "tokn_0123456789abcdef0123456789abcdef",
            "abc_0123456789abcdef0123456789abcdef",
            "tkn0123456789abcdef0123456789abcdef",
        ] {
            assert!(datakit_accepts_token(bad).is_err(), "{bad}");
        }
        let text = MINIMAL.replace(
            "tkn_0123456789abcdef0123456789abcdef",
            "tkn_agent1_0123456789abcdef01234567",
        );
        let c = load(&text).expect("valid, with a warning");
        assert_eq!(c.warnings.len(), 1);
        assert_eq!(c.warnings[0].path, "tokens[0].token");
        assert!(load(MINIMAL).expect("valid").warnings.is_empty());
    }

    #[test]
    fn admin_on_the_public_address_refused_but_two_ephemeral_ports_allowed() {
        let text = format!("{MINIMAL}\n[admin]\naddress = \"127.0.0.1:8443\"\n");
        assert!(matches!(load(&text), Err(ConfigError::Invalid(_))));
        let text = MINIMAL.replace("127.0.0.1:8443", "127.0.0.1:0")
            + "\n[admin]\naddress = \"127.0.0.1:0\"\n";
        assert!(load(&text).is_ok());
    }

    #[test]
    fn spool_settings_are_checked_with_their_key_paths() {
        let text = format!(
            "{MINIMAL}\n[spool]\nmode = \"later\"\nmax_bytes = 10\nsegment_bytes = 100\n\
             replay_share = 0.0\nmax_age_seconds = 0\nretry_max_backoff_ms = 0\n"
        );
        let Err(ConfigError::Invalid(problems)) = load(&text) else {
            panic!("invalid spool accepted");
        };
        let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
        for key in [
            "spool.directory",
            "spool.mode",
            "spool.max_bytes",
            "spool.segment_bytes",
            "spool.replay_share",
            "spool.max_age_seconds",
            "spool.retry_max_backoff_ms",
        ] {
            assert!(paths.contains(&key), "{key} missing from {paths:?}");
        }
        let ok = format!("{MINIMAL}\n[spool]\ndirectory = \"spool\"\nmode = \"spool-first\"\n");
        let c = load(&ok).unwrap();
        let spool = c.spool.unwrap();
        assert_eq!(
            spool.directory,
            Path::new("/etc/oneway/spool"),
            "relative to the config"
        );
        assert_eq!(spool.mode, crate::spool::SpoolMode::SpoolFirst);
        assert!(
            load(MINIMAL).unwrap().spool.is_none(),
            "off unless configured"
        );
    }

    #[test]
    fn the_documented_example_config_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/oneway.example.toml");
        let c = Config::load(&path).unwrap();
        assert_eq!(c.tokens.len(), 2);
        let spool = c.spool.as_ref().unwrap();
        assert_eq!(spool.mode, crate::spool::SpoolMode::ForwardFirst);
        assert_eq!(spool.max_age, Some(Duration::from_secs(43200)));
        assert_eq!(
            c.tokens[0].upstream_token.as_deref(),
            Some("tkn_workspace00000000000000000000000")
        );
    }

    #[test]
    fn upstream_names_resolve_inside_allowed_cidrs_only() {
        let named = MINIMAL.replace("\"127.0.0.1:9528\"", "\"localhost:9528\"");
        assert!(
            matches!(load(&named), Err(ConfigError::Invalid(_))),
            "names need allowed_cidrs"
        );
        let allowed = named.replace(
            "[upstream]",
            "[upstream]\nallowed_cidrs = [\"127.0.0.0/8\", \"::1/128\"]",
        );
        let c = load(&allowed).unwrap();
        assert!(
            c.upstream
                .addresses
                .iter()
                .all(|a| a.ip().is_loopback() && a.port() == 9528)
        );
        let elsewhere = named.replace("[upstream]", "[upstream]\nallowed_cidrs = [\"10.0.0.0/8\"]");
        let Err(ConfigError::Invalid(problems)) = load(&elsewhere) else {
            panic!("localhost is not in 10.0.0.0/8");
        };
        assert!(
            problems[0]
                .message
                .contains("outside upstream.allowed_cidrs"),
            "{problems:?}"
        );
    }

    #[test]
    fn a_reload_reads_names_without_resolving_them() {
        let named = MINIMAL.replace(
            "[upstream]\naddresses = [\"127.0.0.1:9528\"]",
            "[upstream]\naddresses = [\"no-such-host.invalid:9528\", \"127.0.0.1:9528\"]\nallowed_cidrs = [\"127.0.0.0/8\"]",
        );
        assert_ne!(named, MINIMAL);
        let raw = || RawConfig::parse(&named, Path::new("t.toml")).unwrap();
        // At start the name must resolve.
        let Err(ConfigError::Invalid(problems)) = raw().validate(Path::new("/etc/oneway")) else {
            panic!("an unresolvable name at start");
        };
        assert!(
            problems[0].message.contains("cannot resolve"),
            "{problems:?}"
        );
        // On reload it is not resolved: only its form is checked, the literal kept.
        let c = raw()
            .validate_with(Path::new("/etc/oneway"), Names::Unresolved)
            .unwrap();
        assert_eq!(
            c.upstream.addresses,
            vec!["127.0.0.1:9528".parse().unwrap()]
        );
        assert_eq!(
            c.upstream.configured,
            ["no-such-host.invalid:9528", "127.0.0.1:9528"]
        );
        let no_port = named.replace("no-such-host.invalid:9528", "no-such-host.invalid");
        let Err(ConfigError::Invalid(problems)) = RawConfig::parse(&no_port, Path::new("t.toml"))
            .unwrap()
            .validate_with(Path::new("/etc/oneway"), Names::Unresolved)
        else {
            panic!("a name without a port");
        };
        assert_eq!(problems[0].path, "upstream.addresses[0]");
    }

    #[test]
    fn listed_tokens_are_read_from_a_file_whose_settings_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("oneway.toml");
        let hash = hex::encode(crate::auth::sha256(b"tkn_b0000000000000000000000000000000"));
        std::fs::write(
            &path,
            format!(
                "sandbox = \"sometimes\"\n{MINIMAL}\n[[tokens]]\ntoken_sha256 = \"{hash}\"\nidentities = [\"dns:b\", \"cn:nope\"]\n\n[[tokens]]\ntoken = \"x\"\ntoken_sha256 = \"{hash}\"\nidentities = [\"dns:c\"]\n"
            ),
        )
        .unwrap();
        assert!(Config::load(&path).is_err());
        let listed = listed_tokens(&path).unwrap();
        assert_eq!(listed.len(), 3);
        assert!(listed[0].secret.is_some());
        assert_eq!(
            listed[1].secret,
            Some(TokenSecret::Sha256(
                hex::decode(&hash).unwrap().try_into().unwrap()
            ))
        );
        // An identity that does not parse grants nothing; an entry with both secrets is no
        // entry's secret.
        assert_eq!(listed[1].identities, vec![Identity::Dns("b".into())]);
        assert_eq!(listed[2].secret, None);
        // Not TOML, or tokens that are not tables: nothing is known.
        std::fs::write(&path, format!("{MINIMAL}\n[[[broken")).unwrap();
        assert!(listed_tokens(&path).is_none());
        std::fs::write(&path, "tokens = [\"a\"]\n").unwrap();
        assert!(listed_tokens(&path).is_none());
        std::fs::write(&path, "sandbox = 1\n").unwrap();
        assert_eq!(listed_tokens(&path).map(|l| l.len()), Some(0));
    }

    #[test]
    fn cidr_contains() {
        let c = Cidr::parse("10.1.0.0/16").unwrap();
        assert!(c.contains("10.1.255.3".parse().unwrap()));
        assert!(!c.contains("10.2.0.1".parse().unwrap()));
        assert!(!c.contains("::1".parse().unwrap()));
        assert!(
            Cidr::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert!(Cidr::parse("10.0.0.0/33").is_err());
        assert!(Cidr::parse("10.0.0.0").is_err());
    }

    #[test]
    fn upstream_tls_needs_ca_and_name_together() {
        let half = MINIMAL.replace("[upstream]", "[upstream]\ntls_ca = \"up.pem\"");
        assert!(matches!(load(&half), Err(ConfigError::Invalid(_))));
        let both = MINIMAL.replace(
            "[upstream]",
            "[upstream]\ntls_ca = \"up.pem\"\ntls_server_name = \"kodo\"",
        );
        let c = load(&both).unwrap();
        assert_eq!(
            c.upstream.tls.unwrap().ca,
            PathBuf::from("/etc/oneway/up.pem")
        );
    }

    #[test]
    fn rate_limits_default_per_token_override_and_replica_share() {
        let text = format!(
            "{MINIMAL}\nrate = {{ requests_per_second = 10, over_limit_status = 429 }}\n\n[[tokens]]\ntoken = \"tkn_b0000000000000000000000000000000\"\nidentities = [\"dns:b\"]\n\n[rate_limits]\nreplicas = 2\n[rate_limits.default]\npoints_per_second = 1000\npoints_burst = 4000\n"
        );
        let c = load(&text).unwrap();
        let a = &c.tokens[0];
        assert_eq!(a.limits.requests, Some(crate::limit::Rate::new(5.0, 5.0)));
        assert_eq!(
            a.limits.points, None,
            "a token's own rate replaces the default"
        );
        assert_eq!(a.over_limit_status, 429);
        let b = &c.tokens[1];
        assert_eq!(
            b.limits.points,
            Some(crate::limit::Rate::new(500.0, 2000.0))
        );
        assert_eq!(b.over_limit_status, 503);
        let bad =
            format!("{MINIMAL}\nrate = {{ requests_per_second = 0, over_limit_status = 418 }}\n");
        let Err(ConfigError::Invalid(problems)) = load(&bad) else {
            panic!("invalid")
        };
        assert_eq!(problems.len(), 2, "{problems:?}");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let text = MINIMAL.replace("[upstream]", "[upstream]\nretries = 3");
        assert!(matches!(load(&text), Err(ConfigError::Syntax { .. })));
    }

    #[test]
    fn duplicate_tokens_refused() {
        let text = format!(
            "{MINIMAL}\n[[tokens]]\ntoken = \"tkn_0123456789abcdef0123456789abcdef\"\nidentities = [\"dns:b\"]\n"
        );
        assert!(matches!(load(&text), Err(ConfigError::Invalid(_))));
    }

    #[test]
    fn identity_parse_forms() {
        assert_eq!(
            Identity::parse("dns:A.Example"),
            Ok(Identity::Dns("a.example".into()))
        );
        assert_eq!(
            Identity::parse("uri:spiffe://x/y"),
            Ok(Identity::Uri("spiffe://x/y".into()))
        );
        let pin = format!("spki-sha256:{}", "ab".repeat(32));
        assert_eq!(Identity::parse(&pin), Ok(Identity::SpkiSha256([0xab; 32])));
        assert!(Identity::parse("spki-sha256:ab").is_err());
        assert!(Identity::parse("cn:agent").is_err());
    }
}
