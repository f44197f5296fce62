//! `[listener]`: the public mTLS listener — its address, certificates, deadlines and
//! connection caps, and `[listener.proxy_protocol]`. Certificates and keys are *named* here and
//! loaded (and checked) by the TLS layer.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use super::{Cidr, Problems, Resolve, address, duration, positive};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
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
pub(super) struct RawProxyProtocol {
    trusted_cidrs: Vec<String>,
    #[serde(default = "default_proxy_header_timeout_ms")]
    header_timeout_ms: u64,
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

impl RawListener {
    /// Checks `[listener]`.
    pub(super) fn check(&self, p: &mut Problems, resolve: Resolve<'_>) -> ListenerConfig {
        let l = self;
        if l.backlog == 0 {
            p.add("listener.backlog", "must be greater than 0");
        }
        if l.max_connections == 0 {
            p.add("listener.max_connections", "must be greater than 0");
        }
        let listener = ListenerConfig {
            address: address(p, "listener.address", &l.address),
            backlog: l.backlog,
            server_cert: resolve(&l.server_cert),
            server_key: resolve(&l.server_key),
            client_ca: resolve(&l.client_ca),
            crls: l.crls.iter().map(|c| resolve(c)).collect(),
            handshake_timeout: duration(p, "listener.handshake_timeout_ms", l.handshake_timeout_ms),
            header_timeout: duration(p, "listener.header_timeout_ms", l.header_timeout_ms),
            body_timeout: duration(p, "listener.body_timeout_ms", l.body_timeout_ms),
            max_connections: l.max_connections,
            shutdown_grace: duration(p, "listener.shutdown_grace_ms", l.shutdown_grace_ms),
            keepalive_timeout: duration(p, "listener.keepalive_timeout_ms", l.keepalive_timeout_ms),
            max_connection_age: duration(
                p,
                "listener.max_connection_age_ms",
                l.max_connection_age_ms,
            ),
            body_min_rate_bytes_per_second: l.body_min_rate_bytes_per_second,
            body_min_rate_grace: Duration::from_millis(l.body_min_rate_grace_ms),
            max_connections_per_ip: positive(
                p,
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
                p,
                "listener.max_connections_per_identity",
                l.max_connections_per_identity,
            ),
            max_header_bytes: l.max_header_bytes,
            max_headers: positive(p, "listener.max_headers", l.max_headers),
            proxy_protocol: l.proxy_protocol.as_ref().map(|pp| pp.check(p)),
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
        listener
    }
}

impl RawProxyProtocol {
    fn check(&self, p: &mut Problems) -> ProxyProtocolConfig {
        let trusted = p.each(
            "listener.proxy_protocol.trusted_cidrs",
            &self.trusted_cidrs,
            Cidr::parse,
        );
        let header_timeout = duration(
            p,
            "listener.proxy_protocol.header_timeout_ms",
            self.header_timeout_ms,
        );
        ProxyProtocolConfig {
            trusted,
            header_timeout,
        }
    }
}
