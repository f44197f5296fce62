//! Metric names, defined and described once (DESIGN §5): `oneway_<subsystem>_<name>_<unit>`.
//! Labels are bounded: route, category, status class, error kind, and `agent`, the token's
//! configured name (bounded by the config; empty while no token is known); never a token, an
//! address or a certificate name.
//!
//! The Prometheus recorder is process-wide; [`handle`] installs it on first use so several
//! in-process gateways (tests, quickstart) share one.

use std::sync::OnceLock;

mod agent;
mod process;

pub use agent::{AgentSeries, Batch};

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
/// Points accepted while breaking a rule configured to count (`[rules]`), by `rule`.
pub const VALIDATION_COUNTED: &str = "oneway_validation_counted_points_total";
/// Bodies that failed to decode, by `kind`.
pub const DECODE_FAILURES: &str = "oneway_decode_failures_total";
/// Failed TLS handshakes, by `kind` (`timeout`, `no_certificate`, `bad_certificate`, `other`).
pub const TLS_FAILURES: &str = "oneway_tls_handshake_failures_total";
/// Client certificate chains checked, by `outcome`: `verified` and `refused` (checked in full),
/// `remembered` (a chain that passed before, within its validity, its CRLs' and 5 minutes).
pub use crate::tls::CLIENT_CHAIN_CHECKS;
/// Refused requests at authentication, by `kind`.
pub const AUTH_FAILURES: &str = "oneway_auth_failures_total";
/// Upstream requests by `outcome` (`2xx`, `4xx`, `5xx`, `timeout`, `unreachable`).
pub const UPSTREAM_REQUESTS: &str = "oneway_upstream_requests_total";
/// Upstream response time.
pub const UPSTREAM_DURATION: &str = "oneway_upstream_duration_seconds";
/// Connections refused, by `reason` (`max_connections`, `per_ip`, `per_identity`,
/// `proxy_untrusted`).
pub const CONNECTIONS_REFUSED: &str = "oneway_listener_connections_refused_total";
/// Headers an agent sent that did not reach the upstream as sent, by `header` and `reason`
/// (`policy`, `replaced`, `repeated`, `ambiguous`, `key_not_allowed`, `too_many`, `too_long`,
/// `value_not_allowed`).
pub const HEADERS_DROPPED: &str = "oneway_forwarded_headers_dropped_total";
/// Connections the gateway closed, by `reason` (`idle`, `head_timeout`, `max_age`,
/// `drain_timeout`).
pub const CONNECTIONS_CLOSED: &str = "oneway_listener_connections_closed_total";
/// Connections parked idle: hyper's state given back, only the TLS session kept until the
/// next byte.
pub const CONNECTIONS_PARKED: &str = "oneway_listener_parked_connections";
/// PROXY headers refused, by `kind` (`timeout`, `closed`, `missing`, `too_long`, `malformed`,
/// `unsupported`).
pub const PROXY_FAILURES: &str = "oneway_listener_proxy_header_failures_total";
/// Requests refused by a token's rate limit, by `kind` (`requests`, `decoded_bytes`, `points`).
pub const THROTTLED: &str = "oneway_limit_throttled_total";
/// Tokens with rate-limiter state.
pub const TRACKED_TOKENS: &str = "oneway_limit_tracked_tokens";
/// Requests refused by overload protection, by `reason` (`in_flight`, `memory`).
pub const OVERLOAD_REFUSED: &str = "oneway_overload_refused_total";
/// Bytes of the memory budget reserved now.
pub const MEMORY_USED: &str = "oneway_overload_memory_reserved_bytes";
/// The overload limits in force, by `limit` (`in_flight`, `memory_bytes`,
/// `identity_in_flight`, `identity_memory_bytes`).
pub const OVERLOAD_LIMIT: &str = "oneway_overload_limit";
/// Seconds until a certificate expires, by `cert` (`server`, `client_ca`).
pub const CERT_EXPIRY: &str = "oneway_tls_certificate_expiry_seconds";

/// Bytes of spool segments on disk.
pub const SPOOL_BYTES: &str = "oneway_spool_bytes";
/// Spooled records not yet delivered.
pub const SPOOL_RECORDS: &str = "oneway_spool_records";
/// `spool.max_bytes`: what `oneway_spool_bytes` may grow to.
pub const SPOOL_MAX_BYTES: &str = "oneway_spool_max_bytes";
/// Age of the oldest undelivered spooled record.
pub const SPOOL_OLDEST_AGE: &str = "oneway_spool_oldest_record_age_seconds";
/// Records appended (acknowledged after their sync).
pub const SPOOL_APPENDS: &str = "oneway_spool_appends_total";
/// Group commits (one `fdatasync` each).
pub const SPOOL_SYNCS: &str = "oneway_spool_syncs_total";
/// Time to write and sync one group.
pub const SPOOL_SYNC_DURATION: &str = "oneway_spool_sync_duration_seconds";
/// Records replayed to the upstream.
pub const SPOOL_REPLAYED: &str = "oneway_spool_replayed_total";
/// Records the upstream refused with a 4xx, moved to `dead/`.
pub const SPOOL_DEAD_LETTERS: &str = "oneway_spool_dead_letters_total";
/// Segments moved to `quarantine/`.
pub const SPOOL_QUARANTINED: &str = "oneway_spool_quarantined_segments_total";
/// Appends refused, by `reason` (`full`, `too_old`, `disk_full`, `stopped`, `fatal`).
pub const SPOOL_REFUSED: &str = "oneway_spool_refused_total";
/// 1 once the spool stopped after a write or sync error (the process then exits).
pub const SPOOL_FAILED: &str = "oneway_spool_failed";
/// Batches accepted by `outcome` (`forwarded`, `spooled`) and `agent`.
pub const ACCEPTED: &str = "oneway_ingest_batches_total";
/// When each configured agent last had a batch accepted (Unix seconds; the start, or the reload
/// that added it, until it pushes): an agent that stopped sending is an incident too.
pub const AGENT_LAST_PUSH: &str = "oneway_agent_last_push_timestamp_seconds";
/// 1 for each agent (token name) the config holds, 0 for one a reload removed.
pub const AGENT_CONFIGURED: &str = "oneway_agent_configured";

/// Writes the upstream refused for good, by `status` (400, 401, 403, 404, 406, 413, 415,
/// 422) and `agent`.
pub const UPSTREAM_REFUSED: &str = "oneway_upstream_refused_total";
/// Non-write API answers by `api` and `outcome` (`relayed`; `too_large`, `content_type`:
/// not relayed; `retry`: the upstream failed).
pub const API_ANSWERS: &str = "oneway_api_answers_total";
/// Bytes of non-write API answers relayed into the agents' network, by `api`.
pub const API_ANSWER_BYTES: &str = "oneway_api_answer_bytes_total";
/// Reloads by `outcome`: `ok`; `restart_needed` (applied, but some settings changed that
/// only a restart applies); `config`, `tls` (failed: what still applies did, see the
/// `reload` audit event); `fail_closed` (who may push could not be read: nothing is served);
/// `no_source`, `internal`.
pub const RELOADS: &str = "oneway_reload_total";
/// 1 while the gateway refuses every request because the last reload could not read the
/// config file, the client CA bundle or a CRL.
pub const RELOAD_FAIL_CLOSED: &str = "oneway_reload_fail_closed";
/// Reloads that found a restart-only setting changed, by `key` (the config key).
pub const RELOAD_RESTART_NEEDED: &str = "oneway_reload_restart_needed_total";
/// 1 when the last reload found a restart-only setting changed (the file and the process
/// differ until a restart).
pub const RELOAD_RESTART_PENDING: &str = "oneway_reload_restart_pending";
/// Unix time of the last successful reload.
pub const RELOAD_LAST_SUCCESS: &str = "oneway_reload_last_success_timestamp_seconds";
/// Upstream connections the pool opened.
pub const UPSTREAM_CONNECTIONS_OPENED: &str = "oneway_upstream_connections_opened_total";
/// Upstream connections open now.
pub const UPSTREAM_CONNECTIONS_OPEN: &str = "oneway_upstream_connections_open";
/// Upstream requests sent over a connection the pool already had.
pub const UPSTREAM_CONNECTIONS_REUSED: &str = "oneway_upstream_connections_reused_total";
/// Upstream connections that could not be made (refused, unreachable, TLS failed, timed out).
pub const UPSTREAM_CONNECT_ERRORS: &str = "oneway_upstream_connect_errors_total";
/// Time to open an upstream connection, TLS handshake included when `tls` is `true`.
pub const UPSTREAM_CONNECT_DURATION: &str = "oneway_upstream_connect_duration_seconds";
/// 1, labelled with the `version`, the `commit`, the `sandbox` mode the config asks for and the
/// TLS `crypto` (`ring`, or `aws-lc-fips` in a FIPS-capable build).
pub const BUILD_INFO: &str = "oneway_build_info";
/// Audit lines by `outcome`: `written` to the trail, `write_failed`, `pushed` to the audit
/// workspace (acknowledged or spooled), `push_failed`, `dropped` (the workspace outbox was full).
pub const AUDIT_LINES: &str = "oneway_audit_lines_total";
/// 1 per sandbox layer in force (`landlock`, `seccomp`, `no_new_privs`, `self_test`), else 0.
pub const SANDBOX: &str = "oneway_sandbox_enforced";

/// A series with fixed labels, looked up in the recorder once per process rather than at every
/// call (for the few that every request moves); the recorder is installed first, so the handle
/// is never a no-op one. `series!(gauge: Gauge, NAME, "label" => "value")`.
macro_rules! series {
    ($kind:ident: $handle:ident, $($arg:tt)+) => {{
        static SERIES: std::sync::OnceLock<metrics::$handle> = std::sync::OnceLock::new();
        SERIES.get_or_init(|| {
            let _ = $crate::telemetry::handle();
            metrics::$kind!($($arg)+)
        })
    }};
}
pub(crate) use series;

/// Exports [`AGENT_CONFIGURED`] for `configured` (1) and for the agents configured before but
/// no more (0), and starts [`AGENT_LAST_PUSH`] at now for an agent seen for the first time (so
/// that an agent that never pushes is as silent as one that stopped).
pub fn configured_agents<'a>(configured: impl IntoIterator<Item = &'a std::sync::Arc<str>>) {
    static KNOWN: std::sync::Mutex<std::collections::BTreeMap<std::sync::Arc<str>, bool>> =
        std::sync::Mutex::new(std::collections::BTreeMap::new());
    let Ok(mut known) = KNOWN.lock() else {
        return;
    };
    for on in known.values_mut() {
        *on = false;
    }
    for agent in configured {
        if known.insert(std::sync::Arc::clone(agent), true).is_none() {
            metrics::gauge!(AGENT_LAST_PUSH, "agent" => std::sync::Arc::clone(agent))
                .set(unix_seconds());
        }
    }
    for (agent, on) in known.iter() {
        metrics::gauge!(AGENT_CONFIGURED, "agent" => std::sync::Arc::clone(agent)).set(if *on {
            1.0
        } else {
            0.0
        });
    }
}

/// A parked connection, counted in [`CONNECTIONS_PARKED`] for as long as it lives.
#[derive(Debug)]
pub(crate) struct Parked(());

impl Parked {
    /// Counts one more parked connection.
    pub(crate) fn new() -> Parked {
        metrics::gauge!(CONNECTIONS_PARKED).increment(1.0);
        Parked(())
    }
}

impl Drop for Parked {
    fn drop(&mut self) {
        metrics::gauge!(CONNECTIONS_PARKED).decrement(1.0);
    }
}

/// Counts `n` audit lines with `outcome` ([`AUDIT_LINES`]).
pub fn audit_lines(outcome: &'static str, n: u64) {
    metrics::counter!(AUDIT_LINES, "outcome" => outcome).increment(n);
}

/// Now, in Unix seconds.
pub fn unix_seconds() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// What `/metrics` answers: every metric of the recorder, then the process metrics.
pub fn render(handle: &PrometheusHandle) -> String {
    export_reused();
    let mut text = handle.render();
    text.push_str(&process::render());
    text
}

/// The commit this binary was built from (`unknown` outside a git checkout).
pub const COMMIT: &str = env!("ONEWAY_COMMIT");

/// Exports [`BUILD_INFO`]: 1, with the version, the commit, the sandbox mode and the TLS
/// cryptography (`ring`, or `aws-lc-fips` in a FIPS-capable build).
pub fn build_info(sandbox: &str) {
    metrics::gauge!(
        BUILD_INFO,
        "version" => env!("CARGO_PKG_VERSION"),
        "commit" => COMMIT,
        "sandbox" => sandbox.to_string(),
        "crypto" => crate::tls::CRYPTO
    )
    .set(1.0);
}

static POOLED_REQUESTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
static POOLED_OPENED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A request handed to the upstream pool.
pub(crate) fn upstream_request_pooled() {
    POOLED_REQUESTS.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// A connection the upstream pool opened.
pub(crate) fn upstream_connection_opened() {
    POOLED_OPENED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
}

/// Sets [`UPSTREAM_CONNECTIONS_REUSED`]: requests the pool sent over a connection it already
/// had (every connection opened carries its first request), never decreasing.
fn export_reused() {
    use std::sync::atomic::Ordering::Relaxed;
    static REUSED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let now = POOLED_REQUESTS
        .load(Relaxed)
        .saturating_sub(POOLED_OPENED.load(Relaxed));
    let reused = REUSED.fetch_max(now, Relaxed).max(now);
    metrics::counter!(UPSTREAM_CONNECTIONS_REUSED).absolute(reused);
}

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
            prime();
            process::open();
            handle
        })
        .clone()
}

/// Exports every series an alert or dashboard relies on at zero from the start, so that a
/// rate over it is 0 rather than absent until the first event.
fn prime() {
    let counters: &[(&str, &str, &[&str])] = &[
        (
            UPSTREAM_REQUESTS,
            "outcome",
            &["2xx", "4xx", "5xx", "timeout", "unreachable", "other"],
        ),
        (
            AUTH_FAILURES,
            "kind",
            &[
                "missing_token",
                "unknown_token",
                "not_bound",
                "api_not_allowed",
                "bad_certificate",
                "endpoint_not_allowed",
                "certificate_revoked",
            ],
        ),
        (
            TLS_FAILURES,
            "kind",
            &["timeout", "no_certificate", "bad_certificate", "other"],
        ),
        (
            CLIENT_CHAIN_CHECKS,
            "outcome",
            &["verified", "remembered", "refused"],
        ),
        (
            RELOADS,
            "outcome",
            &[
                "ok",
                "restart_needed",
                "config",
                "tls",
                "fail_closed",
                "no_source",
                "internal",
            ],
        ),
        (THROTTLED, "kind", &["requests", "decoded_bytes", "points"]),
        (
            AUDIT_LINES,
            "outcome",
            &[
                "written",
                "write_failed",
                "pushed",
                "push_failed",
                "dropped",
            ],
        ),
        (
            OVERLOAD_REFUSED,
            "reason",
            &[
                "in_flight",
                "memory",
                "identity_in_flight",
                "identity_memory",
            ],
        ),
        (
            CONNECTIONS_REFUSED,
            "reason",
            &[
                "max_connections",
                "per_ip",
                "per_identity",
                "proxy_untrusted",
            ],
        ),
        (
            SPOOL_REFUSED,
            "reason",
            &["full", "too_old", "disk_full", "stopped", "fatal"],
        ),
    ];
    for (name, label, values) in counters {
        for value in *values {
            if [AUTH_FAILURES, THROTTLED].contains(name) {
                // These carry the agent when the token is known: the unknown one is "" (which
                // Prometheus reads as no label), so that both are one series.
                metrics::counter!(*name, *label => *value, "agent" => "").increment(0);
            } else {
                metrics::counter!(*name, *label => *value).increment(0);
            }
        }
    }
    for name in [
        SPOOL_DEAD_LETTERS,
        SPOOL_QUARANTINED,
        UPSTREAM_CONNECTIONS_OPENED,
        UPSTREAM_CONNECT_ERRORS,
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!(RELOAD_FAIL_CLOSED).set(0.0);
    metrics::gauge!(CONNECTIONS_PARKED).set(0.0);
    metrics::gauge!(RELOAD_RESTART_PENDING).set(0.0);
    // Not sandboxed until `oneway run` says otherwise.
    for layer in ["landlock", "seccomp", "no_new_privs", "self_test"] {
        metrics::gauge!(SANDBOX, "layer" => layer).set(0.0);
    }
}

fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    describe_counter!(
        REQUESTS,
        "HTTP requests by route, category and status class"
    );
    describe_gauge!(IN_FLIGHT, "HTTP requests being handled");
    describe_gauge!(
        CONNECTIONS_PARKED,
        "Idle connections parked (only the TLS session kept until the next byte)"
    );
    describe_counter!(
        AUDIT_LINES,
        "Audit lines by outcome: written, write_failed, pushed, push_failed, dropped"
    );
    describe_gauge!(
        OVERLOAD_LIMIT,
        "Overload limits in force: global and per-identity in-flight slots and memory bytes"
    );
    describe_gauge!(
        SANDBOX,
        "1 per kernel sandbox layer in force (landlock, seccomp, no_new_privs, self_test)"
    );
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
    describe_counter!(
        VALIDATION_COUNTED,
        "Points accepted while breaking a rule configured to count, by rule"
    );
    describe_counter!(DECODE_FAILURES, "Bodies that failed to decode, by kind");
    describe_counter!(TLS_FAILURES, "Failed TLS handshakes, by kind");
    describe_counter!(
        CLIENT_CHAIN_CHECKS,
        "Client certificate chains checked, by outcome (verified or refused in full, remembered)"
    );
    describe_counter!(AUTH_FAILURES, "Requests refused at authentication, by kind");
    describe_counter!(UPSTREAM_REQUESTS, "Upstream requests by outcome");
    describe_histogram!(UPSTREAM_DURATION, Unit::Seconds, "Upstream response time");
    describe_counter!(CONNECTIONS_REFUSED, "Connections refused, by reason");
    describe_counter!(
        CONNECTIONS_CLOSED,
        "Connections closed by the gateway, by reason"
    );
    describe_counter!(PROXY_FAILURES, "PROXY headers refused, by kind");
    describe_counter!(
        HEADERS_DROPPED,
        "Agent headers not forwarded as sent (routing policy, repeats), by header and reason"
    );
    describe_gauge!(SPOOL_BYTES, Unit::Bytes, "Bytes of spool segments on disk");
    describe_gauge!(SPOOL_RECORDS, "Spooled records not yet delivered");
    describe_gauge!(
        SPOOL_MAX_BYTES,
        Unit::Bytes,
        "The spool's size limit (spool.max_bytes)"
    );
    describe_gauge!(
        SPOOL_OLDEST_AGE,
        Unit::Seconds,
        "Age of the oldest undelivered spooled record"
    );
    describe_counter!(SPOOL_APPENDS, "Records appended to the spool and synced");
    describe_counter!(SPOOL_SYNCS, "Spool group commits (one fdatasync each)");
    describe_histogram!(
        SPOOL_SYNC_DURATION,
        Unit::Seconds,
        "Time to write and sync one spool group"
    );
    describe_counter!(SPOOL_REPLAYED, "Spooled records delivered to the upstream");
    describe_counter!(
        SPOOL_DEAD_LETTERS,
        "Spooled records the upstream refused, moved to dead/"
    );
    describe_counter!(SPOOL_QUARANTINED, "Spool segments moved to quarantine/");
    describe_counter!(SPOOL_REFUSED, "Spool appends refused, by reason");
    describe_gauge!(SPOOL_FAILED, "1 once the spool stopped after an I/O error");
    describe_counter!(
        ACCEPTED,
        "Batches accepted, by outcome (forwarded, spooled) and agent"
    );
    describe_gauge!(
        AGENT_LAST_PUSH,
        Unit::Seconds,
        "When each agent last had a batch accepted (Unix time; the start until it pushes)"
    );
    describe_counter!(
        UPSTREAM_CONNECTIONS_OPENED,
        "Upstream connections the pool opened"
    );
    describe_gauge!(UPSTREAM_CONNECTIONS_OPEN, "Upstream connections open now");
    describe_counter!(
        UPSTREAM_CONNECTIONS_REUSED,
        "Upstream requests sent over a connection the pool already had"
    );
    describe_counter!(
        UPSTREAM_CONNECT_ERRORS,
        "Upstream connections that could not be made"
    );
    describe_histogram!(
        UPSTREAM_CONNECT_DURATION,
        Unit::Seconds,
        "Time to open an upstream connection (with the TLS handshake when tls=true)"
    );
    describe_gauge!(
        BUILD_INFO,
        "1, with the version, the commit, the sandbox mode and the TLS crypto (ring or aws-lc-fips)"
    );
    describe_gauge!(
        AGENT_CONFIGURED,
        "1 for each agent (token name) configured, 0 for one a reload removed"
    );
    describe_counter!(RELOADS, "Config reloads, by outcome");
    describe_counter!(
        UPSTREAM_REFUSED,
        "Writes the upstream refused for good, passed on to DataKit, by status"
    );
    describe_counter!(
        API_ANSWERS,
        "Non-write API answers, by API and outcome (relayed or why not)"
    );
    describe_counter!(
        API_ANSWER_BYTES,
        Unit::Bytes,
        "Bytes of non-write API answers relayed to agents, by API"
    );
    describe_gauge!(
        RELOAD_FAIL_CLOSED,
        "1 while every request is refused: the last reload could not read the tokens, CA bundle or CRLs"
    );
    describe_gauge!(
        RELOAD_RESTART_PENDING,
        "1 when the last reload found a restart-only setting changed"
    );
    describe_counter!(
        RELOAD_RESTART_NEEDED,
        "Reloads that left a changed restart-only setting at its running value, by config key"
    );
    describe_gauge!(
        RELOAD_LAST_SUCCESS,
        Unit::Seconds,
        "Unix time of the last successful reload"
    );
    describe_gauge!(
        CERT_EXPIRY,
        Unit::Seconds,
        "Seconds until a certificate expires"
    );
}
