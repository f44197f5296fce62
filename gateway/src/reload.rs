//! Hot reload (reference/hardening.md §4): on SIGHUP, and when a watched file changes, the
//! config file is read again and the server certificate and key, the client CA bundle, the
//! CRLs, the tokens and their bindings, the limits, the rules and the API policies are
//! replaced at once. New handshakes and requests use the new material; every open
//! connection checks its client certificate against the new CA bundle and CRLs and closes
//! if it no longer passes, and its next request is checked against the new tokens.
//!
//! A reload never resolves a name (no DNS after start). What says who may push is applied
//! whatever else is wrong (see [`load`]): a broken setting keeps the last good settings but
//! still removes the tokens the file no longer lists; a file that is not TOML, or a CA bundle
//! or CRL that cannot be read, fails closed (503 to every request until a reload succeeds).
//! The reason is logged, counted and audited.
//!
//! Watching is by polling: every `reload.watch_interval_ms` the config file and every
//! certificate, key and CRL path is `stat`ed **through** its symlinks, so a Kubernetes
//! secret update (an atomic swap of the `..data` symlink of the directory) is seen like an
//! in-place write. A change is applied once it has been stable for one more interval
//! (debounce: a half-copied file is not loaded mid-write).
//!
//! Needs a restart (a reload keeps the running value, applies the rest, and logs, counts
//! and audits the keys): the listener and admin addresses, the backlog and connection cap,
//! the upstreams, the spool, the overload budgets, the audit output, the watch interval and
//! the sandbox.
//!
//! Cancel safety: a reload swaps the live state in one step after every file was read and
//! checked; dropping it earlier changes nothing.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use tokio_rustls::TlsAcceptor;
use tracing::{error, info, warn};

use crate::auth::TokenTable;
use crate::config::Config;
use crate::state::{Live, State};
use crate::telemetry;
use crate::tls::{ClientVerifier, ServerIdentity};

/// Why a reload changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The config was not loaded from a file.
    #[error("the config was not loaded from a file")]
    NoSource,
    /// The config file is unreadable or invalid.
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    /// The TLS material is unreadable, invalid or inconsistent.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// The reload task failed.
    #[error("reload task failed")]
    Task,
}

impl ReloadError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            ReloadError::NoSource => "no_source",
            ReloadError::Config(_) => "config",
            ReloadError::Tls(_) => "tls",
            ReloadError::Task => "internal",
        }
    }
}

/// Triggers reloads of a running gateway.
#[derive(Clone)]
pub struct Reloader {
    pub(crate) state: Arc<State>,
}

impl std::fmt::Debug for Reloader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloader").finish()
    }
}

impl Reloader {
    /// Reloads now; `trigger` (`sighup`, `watch`, …) goes to the log and the audit trail.
    /// `Err` when something could not be applied; what could still was (see [`load`]).
    pub async fn reload(&self, trigger: &str) -> Result<(), ReloadError> {
        let old = self.state.live();
        let loaded = tokio::task::spawn_blocking({
            let old = Arc::clone(&old);
            move || load(&old)
        })
        .await
        .map_err(|_| ReloadError::Task)
        .and_then(|r| r);
        let next = match loaded {
            Ok(next) => next,
            Err(e) => {
                metrics::counter!(telemetry::RELOADS, "outcome" => e.kind()).increment(1);
                warn!(trigger, error = %e, "reload failed: the last good config stays");
                self.state.audit.emit(
                    "reload",
                    json!({"trigger": trigger, "outcome": "failed", "kind": e.kind(), "reason": e.to_string()}),
                );
                return Err(e);
            }
        };
        let Next {
            live,
            restart_needed,
            applied,
            failure,
        } = next;
        let sha = live.config.sha256.clone();
        let closed = live.fail_closed.clone();
        let changed = changes(&old, &live);
        telemetry::configured_agents(live.tokens.names());
        self.state.set_live(live);
        for key in &restart_needed {
            metrics::counter!(telemetry::RELOAD_RESTART_NEEDED, "key" => *key).increment(1);
        }
        metrics::gauge!(telemetry::RELOAD_RESTART_PENDING).set(if restart_needed.is_empty() {
            0.0
        } else {
            1.0
        });
        if !restart_needed.is_empty() {
            warn!(
                trigger,
                keys = %restart_needed.join(", "),
                "these settings changed but need a restart: the running values stay, the rest is applied"
            );
        }
        let (outcome, metric) = match (&failure, &closed) {
            (_, Some(_)) => ("failed_closed", "fail_closed"),
            (Some(e), None) => ("failed", e.kind()),
            (None, None) if restart_needed.is_empty() => ("ok", "ok"),
            (None, None) => ("restart_needed", "restart_needed"),
        };
        metrics::counter!(telemetry::RELOADS, "outcome" => metric).increment(1);
        let mut event = json!({
            "trigger": trigger,
            "outcome": outcome,
            "config_sha256": sha,
            "applied": applied,
            "restart_needed": restart_needed,
            "changed": changed,
        });
        match &failure {
            None => {
                let now = telemetry::unix_seconds();
                metrics::gauge!(telemetry::RELOAD_LAST_SUCCESS).set(now);
                info!(trigger, config_sha256 = %sha, "reloaded");
            }
            Some(e) => {
                event["kind"] = json!(e.kind());
                event["reason"] = json!(e.to_string());
                match &closed {
                    Some(why) => error!(
                        trigger,
                        error = %why,
                        "reload could not read who may push: every request is refused (503) until a reload reads the config, CA bundle and CRLs again"
                    ),
                    None => warn!(
                        trigger,
                        error = %e,
                        applied = %applied.join(", "),
                        "reload failed: the rest of the last good config stays"
                    ),
                }
            }
        }
        self.state.audit.emit("reload", event);
        failure.map_or(Ok(()), Err)
    }
}

/// What a reload produced: the next snapshot, the restart-only settings it left at their
/// running values, what it applied, and why not everything.
struct Next {
    live: Live,
    restart_needed: Vec<&'static str>,
    applied: Vec<&'static str>,
    failure: Option<ReloadError>,
}

/// Reads the config and TLS material again and builds the next snapshot. No name is
/// resolved. What says who may push is applied whatever else is wrong:
///
/// - a valid file: everything but the restart-only settings;
/// - an invalid file that is still TOML: the tokens it no longer lists, and identities it no
///   longer binds, are removed (nothing is added); the CA bundle and CRLs are read again;
/// - a file that cannot be read as TOML, or a CA bundle or CRL that cannot be read: who may
///   push is unknown, so the snapshot **fails closed** (every request gets a 503 until a
///   reload succeeds);
/// - a server certificate or key that cannot be read, or do not match: the running ones
///   stay, the rest applies.
fn load(old: &Live) -> Result<Next, ReloadError> {
    let path = old.config.source.clone().ok_or(ReloadError::NoSource)?;
    let (config, mut applied, mut failure, mut closed) = match Config::load_for_reload(&path) {
        Ok(mut next) => {
            let restart_needed = keep_restart_only(&old.config, &mut next);
            export_expiry(&next);
            let tls = tls_material(old, &next.listener);
            let mut applied = vec!["tokens", "settings"];
            applied.extend(tls.applied);
            return Ok(Next {
                live: Live {
                    tokens: TokenTable::new(&next.tokens),
                    acceptor: tls.acceptor,
                    identity: tls.identity,
                    verifier: tls.verifier,
                    trust: tls.trust,
                    fail_closed: tls.closed,
                    generation: old.generation + 1,
                    config: Arc::new(next),
                },
                restart_needed,
                applied,
                failure: tls.failure.map(ReloadError::Tls),
            });
        }
        Err(e) => {
            let mut config = (*old.config).clone();
            let (applied, closed) = match crate::config::listed_tokens(&path) {
                Some(listed) => {
                    config.tokens = still_listed(&old.config.tokens, &listed);
                    (vec!["token_removals"], None)
                }
                None => (Vec::new(), Some(e.to_string())),
            };
            (config, applied, Some(ReloadError::Config(e)), closed)
        }
    };
    // The file is invalid: the running settings stay, with the CA bundle and CRLs read again
    // from the running paths.
    let tls = tls_material(old, &config.listener);
    applied.extend(tls.applied);
    if closed.is_none() {
        closed = tls.closed;
    }
    if failure.is_none() {
        failure = tls.failure.map(ReloadError::Tls);
    }
    Ok(Next {
        live: Live {
            tokens: TokenTable::new(&config.tokens),
            acceptor: tls.acceptor,
            identity: tls.identity,
            verifier: tls.verifier,
            trust: tls.trust,
            fail_closed: closed,
            generation: old.generation + 1,
            config: Arc::new(config),
        },
        restart_needed: Vec::new(),
        applied,
        failure,
    })
}

/// The running tokens the file still lists, each bound only to identities the file still
/// binds it to (a token left with none is removed).
fn still_listed(
    running: &[crate::config::TokenConfig],
    listed: &[crate::config::ListedToken],
) -> Vec<crate::config::TokenConfig> {
    running
        .iter()
        .filter_map(|t| {
            let entries: Vec<_> = listed
                .iter()
                .filter(|l| l.secret.as_ref() == Some(&t.secret))
                .collect();
            let mut t = t.clone();
            t.identities
                .retain(|i| entries.iter().any(|l| l.identities.contains(i)));
            (!t.identities.is_empty()).then_some(t)
        })
        .collect()
}

/// The TLS side of a snapshot, from the files `listener` names, falling back to the running
/// material piece by piece.
struct Material {
    acceptor: TlsAcceptor,
    identity: Arc<ServerIdentity>,
    verifier: ClientVerifier,
    applied: Vec<&'static str>,
    /// What the verifier checks with.
    trust: Arc<crate::tls::TrustSummary>,
    /// The CA bundle or a CRL could not be read: fail closed.
    closed: Option<String>,
    failure: Option<crate::tls::TlsError>,
}

fn tls_material(old: &Live, listener: &crate::config::ListenerConfig) -> Material {
    let mut applied = Vec::new();
    let mut failure = None;
    let (verifier, trust, closed) = match crate::tls::client_trust(listener) {
        Ok((v, trust)) => {
            applied.push("client_ca_and_crls");
            (v, Arc::new(trust), None)
        }
        Err(e) => {
            let why = e.to_string();
            failure = Some(e);
            (Arc::clone(&old.verifier), Arc::clone(&old.trust), Some(why))
        }
    };
    let fresh = crate::tls::server_identity(listener).and_then(|identity| {
        let config = crate::tls::assemble(&identity, Arc::clone(&verifier))?;
        Ok((Arc::new(identity), config))
    });
    let (identity, config) = match fresh {
        Ok(pair) => {
            applied.push("server_certificate");
            pair
        }
        Err(e) => {
            failure.get_or_insert(e);
            let kept = Arc::clone(&old.identity);
            match crate::tls::assemble(&kept, Arc::clone(&verifier)) {
                Ok(config) => (kept, config),
                // Cannot happen with material that served before; if it does, nothing new.
                Err(_) => {
                    return Material {
                        acceptor: old.acceptor.clone(),
                        identity: kept,
                        verifier: Arc::clone(&old.verifier),
                        trust: Arc::clone(&old.trust),
                        applied: Vec::new(),
                        closed,
                        failure,
                    };
                }
            }
        }
    };
    Material {
        acceptor: TlsAcceptor::from(config),
        identity,
        verifier,
        trust,
        applied,
        closed,
        failure,
    }
}

/// Settings a reload cannot apply keep their running values; returns the config keys of
/// those that changed.
fn keep_restart_only(old: &Config, next: &mut Config) -> Vec<&'static str> {
    fn differs<T: std::fmt::Debug>(a: &T, b: &T) -> bool {
        format!("{a:?}") != format!("{b:?}")
    }
    let mut changed = Vec::new();
    macro_rules! keep {
        ($key:literal, $($field:tt)+) => {
            if differs(&old.$($field)+, &next.$($field)+) {
                changed.push($key);
            }
            next.$($field)+ = old.$($field)+.clone();
        };
    }
    keep!("listener.address", listener.address);
    keep!("listener.backlog", listener.backlog);
    keep!("listener.max_connections", listener.max_connections);
    keep!("admin.address", admin_address);
    // [upstream] is kept whole: its names were resolved at start and are never resolved
    // again. Its keys are compared as written.
    let (o, n) = (&old.upstream, &next.upstream);
    for (key, changed_here) in [
        ("upstream.addresses", o.configured != n.configured),
        ("upstream.allowed_cidrs", o.allowed_cidrs != n.allowed_cidrs),
        ("upstream.tls_ca", differs(&o.tls, &n.tls)),
        (
            "upstream.connect_timeout_ms",
            o.connect_timeout != n.connect_timeout,
        ),
        (
            "upstream.response_timeout_ms",
            o.response_timeout != n.response_timeout,
        ),
        (
            "forward.max_api_answer_bytes",
            o.max_answer_bytes != n.max_answer_bytes,
        ),
    ] {
        if changed_here {
            changed.push(key);
        }
    }
    next.upstream = old.upstream.clone();
    keep!("spool", spool);
    keep!("overload", overload);
    keep!("audit", audit);
    keep!("reload.watch_interval_ms", watch_interval);
    keep!("sandbox", sandbox);
    changed
}

/// What a reload changes, for its audit event: token names added and removed, the server
/// certificate's and the client CAs' fingerprints, the CRLs' numbers and revoked counts, and
/// the sections of limits (and the tokens whose rate) that differ. Only what changed is there.
fn changes(old: &Live, new: &Live) -> serde_json::Value {
    use std::collections::BTreeSet;
    let names =
        |l: &Live| -> BTreeSet<String> { l.tokens.names().map(|n| n.to_string()).collect() };
    let (before, after) = (names(old), names(new));
    let mut c = serde_json::Map::new();
    let added: Vec<&String> = after.difference(&before).collect();
    let removed: Vec<&String> = before.difference(&after).collect();
    if !added.is_empty() {
        c.insert("tokens_added".into(), json!(added));
    }
    if !removed.is_empty() {
        c.insert("tokens_removed".into(), json!(removed));
    }
    let (from, to) = (old.identity.fingerprint(), new.identity.fingerprint());
    if from != to {
        c.insert(
            "server_certificate_sha256".into(),
            json!({"from": from, "to": to}),
        );
    }
    if old.trust.client_ca != new.trust.client_ca {
        c.insert(
            "client_ca_sha256".into(),
            json!({"from": old.trust.client_ca, "to": new.trust.client_ca}),
        );
    }
    if old.trust.crls != new.trust.crls {
        c.insert(
            "crls".into(),
            json!({"from": old.trust.crls, "to": new.trust.crls}),
        );
    }
    let (a, b) = (&old.config, &new.config);
    let sections = [
        (
            "limits",
            (a.body, a.validation.limits) != (b.body, b.validation.limits),
        ),
        ("rules", a.validation.actions != b.validation.actions),
        ("overload", a.overload != b.overload),
    ];
    let limits: Vec<&str> = sections.iter().filter(|s| s.1).map(|s| s.0).collect();
    if !limits.is_empty() {
        c.insert("limits".into(), json!(limits));
    }
    let rate = |config: &crate::config::Config, name: &str| {
        config
            .tokens
            .iter()
            .find(|t| &*t.name == name)
            .map(|t| (t.limits, t.over_limit_status))
    };
    let rates: Vec<&String> = before
        .intersection(&after)
        .filter(|n| rate(a, n) != rate(b, n))
        .collect();
    if !rates.is_empty() {
        c.insert("rates".into(), json!(rates));
    }
    serde_json::Value::Object(c)
}

/// Exports the expiry gauges of the server certificate and the client CA.
pub(crate) fn export_expiry(config: &Config) {
    for (name, path) in [
        ("server", &config.listener.server_cert),
        ("client_ca", &config.listener.client_ca),
    ] {
        if let Ok(s) = crate::tls::expiry_seconds(path) {
            metrics::gauge!(telemetry::CERT_EXPIRY, "cert" => name).set(s);
        }
    }
}

type Stamp = Vec<(PathBuf, Option<(i128, u64, u64)>)>;

/// What the watched files look like now (through symlinks): modification time, size, inode.
fn stamp(config: &Config) -> Stamp {
    use std::os::unix::fs::MetadataExt;
    let mut paths: Vec<PathBuf> = Vec::new();
    paths.extend(config.source.clone());
    paths.push(config.listener.server_cert.clone());
    paths.push(config.listener.server_key.clone());
    paths.push(config.listener.client_ca.clone());
    paths.extend(config.listener.crls.iter().cloned());
    paths
        .into_iter()
        .map(|p| {
            let meta = std::fs::metadata(&p).ok().map(|m| {
                (
                    i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
                    m.len(),
                    m.ino(),
                )
            });
            (p, meta)
        })
        .collect()
}

/// Polls the watched files every `interval`; reloads once a change has been stable for one
/// interval. Runs until aborted.
pub(crate) async fn watch(reloader: Reloader, interval: Duration) {
    let mut seen = stamp(&reloader.state.live().config);
    let mut pending: Option<Stamp> = None;
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let config = reloader.state.live().config.clone();
        let now = tokio::task::spawn_blocking(move || stamp(&config))
            .await
            .unwrap_or_default();
        match &pending {
            _ if now == seen => pending = None,
            Some(p) if *p == now => {
                // Stable for one interval: apply. Whatever the outcome, this state is seen
                // (a failed reload is not retried until the files change again).
                let _ = reloader.reload("watch").await;
                let config = reloader.state.live().config.clone();
                seen = tokio::task::spawn_blocking(move || stamp(&config))
                    .await
                    .unwrap_or_default();
                pending = None;
            }
            _ => pending = Some(now),
        }
    }
}
