//! Configuration: TOML parsed into [`RawConfig`] (unknown keys refused), then checked into a
//! [`Config`] of validated types. Every problem is reported at once, each with its key path,
//! so an operator fixes a file in one round.
//!
//! One file per section, each with its raw struct (as written), its validated type and its
//! check; this module owns every validated type the gateway runs on and imports no other
//! gateway module. Units are in key names (`max_body_bytes`, `handshake_timeout_ms`). File
//! paths are resolved against the config file's directory. Certificates and keys are *named*
//! here and loaded by the TLS layer, which checks them (see `tls.rs`).

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use oneway_protocol::ValidationConfig;
use serde::Deserialize;

mod admin;
mod audit;
mod cidr;
mod global_tags;
mod limits;
mod listener;
mod overload;
mod rate_limits;
mod reload;
mod rules;
mod sandbox;
mod spool;
mod tokens;
mod upstream;

pub use self::audit::{AuditConfig, AuditOutput};
pub use self::cidr::Cidr;
pub use self::global_tags::{
    DEFAULT_GLOBAL_TAGS_MAX_TAGS, DEFAULT_GLOBAL_TAGS_MAX_VALUE_BYTES, GlobalTags,
};
pub use self::limits::{
    BodyLimits, DEFAULT_MAX_BODY_BYTES, DEFAULT_MAX_DECODED_BYTES, DEFAULT_MAX_UPLOAD_BYTES,
};
pub use self::listener::{ListenerConfig, ProxyProtocolConfig};
pub use self::overload::{DEFAULT_MAX_IN_FLIGHT, DEFAULT_MEMORY_BUDGET, OverloadConfig};
pub use self::rate_limits::{Rate, TokenLimits};
pub use self::sandbox::SandboxMode;
pub use self::spool::{SpoolConfig, SpoolMode};
pub use self::tokens::{
    DEFAULT_ALLOWED_APIS, Identity, KNOWN_APIS, ListedToken, TokenConfig, TokenSecret,
    datakit_accepts_token, listed_tokens, sha256,
};
pub use self::upstream::{DEFAULT_MAX_API_ANSWER_BYTES, Names, UpstreamConfig, UpstreamTls};

/// How a path in the file becomes a path on disk (relative to the file's directory).
type Resolve<'a> = &'a dyn Fn(&Path) -> PathBuf;

use self::admin::RawAdmin;
use self::audit::RawAudit;
use self::limits::RawLimits;
use self::listener::RawListener;
use self::overload::RawOverload;
use self::rate_limits::RawRateLimits;
use self::reload::RawReload;
use self::rules::RawRules;
use self::spool::RawSpool;
use self::tokens::RawToken;
use self::upstream::{RawForward, RawUpstream};

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
    pub spool: Option<SpoolConfig>,
    /// The audit trail.
    pub audit: AuditConfig,
    /// How often watched files are checked for changes (`None`: only SIGHUP reloads).
    pub watch_interval: Option<Duration>,
    /// The kernel sandbox `oneway run` enters once bound.
    pub sandbox: SandboxMode,
    /// The file this was loaded from (for reloads).
    pub source: Option<PathBuf>,
    /// SHA-256 of the file's bytes, hex (for the audit trail).
    pub sha256: String,
    /// What is valid but likely a mistake (`check-config` prints it, `run` logs it).
    pub warnings: Vec<ConfigProblem>,
}

/// The problems found so far (every one is reported).
struct Problems(Vec<ConfigProblem>);

impl Problems {
    fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Parses each of `list` (the values at `path[i]`), keeping those that parse and
    /// reporting the others.
    fn each<T>(
        &mut self,
        path: &str,
        list: &[String],
        parse: impl Fn(&str) -> Result<T, String>,
    ) -> Vec<T> {
        list.iter()
            .enumerate()
            .filter_map(|(i, s)| {
                parse(s)
                    .map_err(|m| self.add(format!("{path}[{i}]"), m))
                    .ok()
            })
            .collect()
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
        let resolve = |f: &Path| {
            if f.is_absolute() {
                f.to_path_buf()
            } else {
                base.join(f)
            }
        };
        let listener = self.listener.check(&mut p, &resolve);
        let admin_address = self.admin.check(&mut p, &listener);
        let (body, limits) = self.limits.check(&mut p);
        let actions = self.rules.check(&mut p);
        let overload = self.overload.check(&mut p, &body);
        let upstream = self.upstream.check(
            &self.forward,
            &mut p,
            &resolve,
            names,
            overload.max_in_flight_requests,
        );
        let identity_header = self.forward.identity_header(&mut p);
        let (tokens, warnings) = tokens::check(&self.tokens, &self.rate_limits, &mut p);
        let spool = self
            .spool
            .as_ref()
            .map(|s| s.check(&mut p, &resolve, body.max_body_bytes));
        let audit = self.audit.check(&mut p, &resolve);
        let sandbox = sandbox::check(&mut p, self.sandbox.as_deref());
        let watch_interval = self.reload.watch_interval();
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
        config.sha256 = hex::encode(sha256(text.as_bytes()));
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
mod tests;
