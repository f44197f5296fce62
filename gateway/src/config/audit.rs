//! `[audit]`: where the audit trail goes (stdout, a file, nowhere), how often aggregated events
//! are written, and the audit workspace's token when lines are also pushed.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::tokens::token_is_well_formed;
use super::{Problems, Resolve};

/// Where audit lines go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditOutput {
    /// Standard output (the default).
    Stdout,
    /// Appended to this file.
    File(PathBuf),
    /// Nowhere.
    Off,
}

/// `[audit]`.
#[derive(Debug, Clone)]
pub struct AuditConfig {
    /// Where lines go.
    pub output: AuditOutput,
    /// How often aggregated events are written.
    pub interval: Duration,
    /// Also push each line as a `logging` point with this (workspace) token, if set.
    pub workspace_token: Option<String>,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            output: AuditOutput::Stdout,
            interval: Duration::from_secs(10),
            workspace_token: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAudit {
    output: Option<String>,
    interval_seconds: Option<u64>,
    workspace_token: Option<String>,
}

impl RawAudit {
    /// Checks `[audit]`.
    pub(super) fn check(&self, p: &mut Problems, resolve: Resolve<'_>) -> AuditConfig {
        AuditConfig {
            output: match self.output.as_deref() {
                None | Some("stdout") => AuditOutput::Stdout,
                Some("off") => AuditOutput::Off,
                Some(path) => AuditOutput::File(resolve(Path::new(path))),
            },
            interval: Duration::from_secs(match self.interval_seconds {
                Some(0) => {
                    p.add("audit.interval_seconds", "must be greater than 0");
                    10
                }
                Some(s) => s,
                None => 10,
            }),
            workspace_token: self.workspace_token.clone().inspect(|t| {
                if !token_is_well_formed(t) {
                    p.add(
                        "audit.workspace_token",
                        "a token is 1-128 letters, digits, '_' or '-'",
                    );
                }
            }),
        }
    }
}
