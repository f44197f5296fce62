//! `[admin]`: the internal listener for metrics, health and readiness, never the public one.

use std::net::SocketAddr;

use serde::Deserialize;

use super::{ListenerConfig, Problems, address};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawAdmin {
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

fn default_admin_address() -> String {
    "127.0.0.1:9090".into()
}

impl RawAdmin {
    /// Checks `[admin]` against the public listener.
    pub(super) fn check(&self, p: &mut Problems, listener: &ListenerConfig) -> SocketAddr {
        let admin = address(p, "admin.address", &self.address);
        if admin == listener.address && admin.port() != 0 {
            p.add(
                "admin.address",
                "must differ from listener.address: admin is never public",
            );
        }
        admin
    }
}
