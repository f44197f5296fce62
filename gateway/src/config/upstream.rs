//! `[upstream]` and `[forward]`: where validated batches go (addresses, the CIDRs a name may
//! resolve into, TLS, deadlines) and what is forwarded with them. A name is resolved once, at
//! start; a reload never resolves one ([`Names`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Cidr, Problems, Resolve, duration};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawUpstream {
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
pub(super) struct RawForward {
    identity_header: Option<String>,
    max_api_answer_bytes: Option<u64>,
}

fn default_connect_timeout_ms() -> u64 {
    2_000
}
fn default_response_timeout_ms() -> u64 {
    30_000
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

/// Default cap on a non-write API's answer: 1 MiB.
pub const DEFAULT_MAX_API_ANSWER_BYTES: usize = 1 << 20;

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

impl RawUpstream {
    /// Checks `[upstream]` (and `forward.max_api_answer_bytes`); keeps `max_idle_connections`
    /// idle connections per address.
    pub(super) fn check(
        &self,
        forward: &RawForward,
        p: &mut Problems,
        resolve: Resolve<'_>,
        names: Names,
        max_idle_connections: usize,
    ) -> UpstreamConfig {
        let u = self;
        if u.addresses.is_empty() {
            p.add(
                "upstream.addresses",
                "at least one upstream address is needed",
            );
        }
        let cidrs = p.each("upstream.allowed_cidrs", &u.allowed_cidrs, Cidr::parse);
        let mut addresses = Vec::new();
        for (i, a) in u.addresses.iter().enumerate() {
            addresses.extend(address(
                p,
                &format!("upstream.addresses[{i}]"),
                a,
                &cidrs,
                names,
            ));
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
        UpstreamConfig {
            max_idle_connections,
            addresses,
            configured: u.addresses.clone(),
            allowed_cidrs: u.allowed_cidrs.clone(),
            max_answer_bytes: match forward.max_api_answer_bytes {
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
            connect_timeout: duration(p, "upstream.connect_timeout_ms", u.connect_timeout_ms),
            response_timeout: duration(p, "upstream.response_timeout_ms", u.response_timeout_ms),
        }
    }
}

/// One entry of `upstream.addresses`: a literal, or a name resolved (with `Names::Resolve`)
/// to addresses that must all be inside `cidrs`.
fn address(p: &mut Problems, path: &str, a: &str, cidrs: &[Cidr], names: Names) -> Vec<SocketAddr> {
    if let Ok(literal) = a.parse::<SocketAddr>() {
        return vec![literal];
    }
    // A name: resolved once, at start, and every address must be inside allowed_cidrs.
    if cidrs.is_empty() {
        p.add(
            path,
            format!("{a:?} is a name: names need upstream.allowed_cidrs (or use IP:port)"),
        );
        return Vec::new();
    }
    if names == Names::Unresolved {
        if let Err(why) = name_and_port(a) {
            p.add(path, format!("{a:?}: {why}"));
        }
        return Vec::new();
    }
    let resolved: Vec<SocketAddr> = match std::net::ToSocketAddrs::to_socket_addrs(a) {
        Ok(resolved) => resolved.collect(),
        Err(e) => {
            p.add(path, format!("cannot resolve {a:?}: {e}"));
            return Vec::new();
        }
    };
    if resolved.is_empty() {
        p.add(path, format!("{a:?} resolved to no address"));
    }
    let mut inside = Vec::new();
    for r in resolved {
        if cidrs.iter().any(|c| c.contains(r.ip())) {
            inside.push(r);
        } else {
            p.add(
                path,
                format!(
                    "{a:?} resolved to {}, outside upstream.allowed_cidrs",
                    r.ip()
                ),
            );
        }
    }
    inside
}

impl RawForward {
    /// `forward.identity_header`: the header naming the agent's identity upstream, if any.
    pub(super) fn identity_header(&self, p: &mut Problems) -> Option<http::HeaderName> {
        let h = self.identity_header.as_deref()?;
        match http::HeaderName::from_bytes(h.as_bytes()) {
            Ok(name) => Some(name),
            Err(_) => {
                p.add(
                    "forward.identity_header",
                    format!("{h:?} is not a valid header name"),
                );
                None
            }
        }
    }
}
