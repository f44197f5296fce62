//! Hot reload (reference/hardening.md §4): on SIGHUP, and when a watched file changes, the
//! config file is read again and the server certificate and key, the client CA bundle, the
//! CRLs, the tokens and their bindings, the limits, the rules and the API policies are
//! replaced at once. New handshakes and requests use the new material; connections already
//! open keep theirs until they end (at the latest at `listener.max_connection_age_ms`).
//!
//! A broken file (half-written, a key that does not match its certificate, invalid TOML)
//! changes nothing: the last good config stays, the reason is logged, counted and audited.
//!
//! Watching is by polling: every `reload.watch_interval_ms` the config file and every
//! certificate, key and CRL path is `stat`ed **through** its symlinks, so a Kubernetes
//! secret update (an atomic swap of the `..data` symlink of the directory) is seen like an
//! in-place write. A change is applied once it has been stable for one more interval
//! (debounce: a half-copied file is not loaded mid-write).
//!
//! Needs a restart (a reload keeps the running value and logs a warning): the listener and
//! admin addresses, the backlog and connection cap, the upstreams, the spool, the overload
//! budgets, and the audit output.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::json;
use tokio_rustls::TlsAcceptor;
use tracing::{info, warn};

use crate::auth::TokenTable;
use crate::config::Config;
use crate::server::{Live, State};
use crate::telemetry;

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
    pub async fn reload(&self, trigger: &str) -> Result<(), ReloadError> {
        let old = self.state.live();
        let loaded = tokio::task::spawn_blocking({
            let old = Arc::clone(&old);
            move || load(&old)
        })
        .await
        .map_err(|_| ReloadError::Task)
        .and_then(|r| r);
        match loaded {
            Ok(live) => {
                let sha = live.config.sha256.clone();
                self.state.set_live(live);
                metrics::counter!(telemetry::RELOADS, "outcome" => "ok").increment(1);
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0.0, |d| d.as_secs_f64());
                metrics::gauge!(telemetry::RELOAD_LAST_SUCCESS).set(now);
                info!(trigger, config_sha256 = %sha, "reloaded");
                self.state.audit.emit(
                    "reload",
                    json!({"trigger": trigger, "outcome": "ok", "config_sha256": sha}),
                );
                Ok(())
            }
            Err(e) => {
                metrics::counter!(telemetry::RELOADS, "outcome" => e.kind()).increment(1);
                warn!(trigger, error = %e, "reload failed: the last good config stays");
                self.state.audit.emit(
                    "reload",
                    json!({"trigger": trigger, "outcome": "failed", "kind": e.kind(), "reason": e.to_string()}),
                );
                Err(e)
            }
        }
    }
}

/// Reads the config and TLS material again and builds the next snapshot.
fn load(old: &Live) -> Result<Live, ReloadError> {
    let path = old.config.source.clone().ok_or(ReloadError::NoSource)?;
    let mut next = Config::load(&path)?;
    let tls = crate::tls::server_config(&next.listener)?;
    keep_restart_only(&old.config, &mut next);
    export_expiry(&next);
    Ok(Live {
        tokens: TokenTable::new(&next.tokens),
        acceptor: TlsAcceptor::from(tls),
        generation: old.generation + 1,
        config: Arc::new(next),
    })
}

/// Settings a reload cannot apply keep their running values (with a warning if they changed).
fn keep_restart_only(old: &Config, next: &mut Config) {
    let mut changed = Vec::new();
    macro_rules! keep {
        ($($field:tt)+) => {
            if format!("{:?}", old.$($field)+) != format!("{:?}", next.$($field)+) {
                changed.push(stringify!($($field)+).replace(' ', ""));
                next.$($field)+ = old.$($field)+.clone();
            }
        };
    }
    keep!(listener.address);
    keep!(listener.backlog);
    keep!(listener.max_connections);
    keep!(admin_address);
    keep!(upstream);
    keep!(spool);
    keep!(overload);
    keep!(audit);
    keep!(watch_interval);
    keep!(sandbox);
    if !changed.is_empty() {
        warn!(
            settings = %changed.join(", "),
            "these settings changed but need a restart; the running values stay"
        );
    }
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
