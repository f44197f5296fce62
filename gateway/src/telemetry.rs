//! Metric names, defined and described once (DESIGN §5): `oneway_<subsystem>_<name>_<unit>`.
//! Labels are bounded: route, category, status class, error kind; never a token, an address or
//! a certificate name.
//!
//! The Prometheus recorder is process-wide; [`handle`] installs it on first use so several
//! in-process gateways (tests, quickstart) share one.

use std::sync::OnceLock;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};

/// Requests by `route` (`write`, `api`, `unknown`), `category` and `status` class (`2xx`…).
pub const REQUESTS: &str = "oneway_http_requests_total";
/// Requests being handled now.
pub const IN_FLIGHT: &str = "oneway_http_in_flight_requests";
/// Points accepted, by `category`.
pub const POINTS: &str = "oneway_ingest_points_total";
/// Body bytes accepted, by `category` and `stage` (`compressed`, `decoded`).
pub const BYTES: &str = "oneway_ingest_bytes_total";
/// Batches rejected by validation, by `rule`.
pub const VALIDATION_FAILURES: &str = "oneway_validation_failures_total";
/// Bodies that failed to decode, by `kind`.
pub const DECODE_FAILURES: &str = "oneway_decode_failures_total";
/// Failed TLS handshakes, by `kind` (`timeout`, `no_certificate`, `bad_certificate`, `other`).
pub const TLS_FAILURES: &str = "oneway_tls_handshake_failures_total";
/// Refused requests at authentication, by `kind`.
pub const AUTH_FAILURES: &str = "oneway_auth_failures_total";
/// Upstream requests by `outcome` (`2xx`, `4xx`, `5xx`, `timeout`, `unreachable`).
pub const UPSTREAM_REQUESTS: &str = "oneway_upstream_requests_total";
/// Upstream response time.
pub const UPSTREAM_DURATION: &str = "oneway_upstream_duration_seconds";
/// Connections refused because `listener.max_connections` were open.
pub const CONNECTIONS_REFUSED: &str = "oneway_listener_connections_refused_total";
/// Requests refused by a token's rate limit, by `kind` (`requests`, `decoded_bytes`, `points`).
pub const THROTTLED: &str = "oneway_limit_throttled_total";
/// Tokens with rate-limiter state.
pub const TRACKED_TOKENS: &str = "oneway_limit_tracked_tokens";
/// Requests refused by overload protection, by `reason` (`in_flight`, `memory`).
pub const OVERLOAD_REFUSED: &str = "oneway_overload_refused_total";
/// Bytes of the memory budget reserved now.
pub const MEMORY_USED: &str = "oneway_overload_memory_reserved_bytes";
/// Seconds until a certificate expires, by `cert` (`server`, `client_ca`).
pub const CERT_EXPIRY: &str = "oneway_tls_certificate_expiry_seconds";

/// The process-wide Prometheus handle.
pub fn handle() -> PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let recorder = PrometheusBuilder::new().build_recorder();
            let handle = recorder.handle();
            // Fails only if another recorder is installed; then ours just renders nothing new.
            let _ = metrics::set_global_recorder(recorder);
            describe();
            handle
        })
        .clone()
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "HTTP requests by route, category and status class"
    );
    describe_gauge!(IN_FLIGHT, "HTTP requests being handled");
    describe_counter!(POINTS, "Points accepted and forwarded, by category");
    describe_counter!(
        BYTES,
        Unit::Bytes,
        "Body bytes accepted, by category and stage"
    );
    describe_counter!(
        VALIDATION_FAILURES,
        "Batches rejected by validation, by rule"
    );
    describe_counter!(DECODE_FAILURES, "Bodies that failed to decode, by kind");
    describe_counter!(TLS_FAILURES, "Failed TLS handshakes, by kind");
    describe_counter!(AUTH_FAILURES, "Requests refused at authentication, by kind");
    describe_counter!(UPSTREAM_REQUESTS, "Upstream requests by outcome");
    describe_histogram!(UPSTREAM_DURATION, Unit::Seconds, "Upstream response time");
    describe_counter!(
        CONNECTIONS_REFUSED,
        "Connections refused at the connection cap"
    );
    describe_gauge!(
        CERT_EXPIRY,
        Unit::Seconds,
        "Seconds until a certificate expires"
    );
}
