//! `[reload]`: how often the config, certificates and CRLs are checked for changes (SIGHUP
//! reloads in any case).

use std::time::Duration;

use serde::Deserialize;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawReload {
    watch_interval_ms: Option<u64>,
}

impl RawReload {
    /// `reload.watch_interval_ms` (0: only SIGHUP reloads).
    pub(super) fn watch_interval(&self) -> Option<Duration> {
        match self.watch_interval_ms {
            Some(0) => None,
            Some(ms) => Some(Duration::from_millis(ms)),
            None => Some(Duration::from_secs(1)),
        }
    }
}
