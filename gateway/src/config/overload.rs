//! `[overload]`: global protection (requests in flight, the memory budget for bodies) and each
//! certificate identity's share of it, so one agent cannot take what the others need.

use serde::Deserialize;

use super::{BodyLimits, Problems, nonzero};

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawOverload {
    max_in_flight_requests: Option<u32>,
    memory_budget_bytes: Option<u64>,
    max_in_flight_per_identity: Option<u32>,
    max_memory_per_identity_bytes: Option<u64>,
}

/// Global overload protection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OverloadConfig {
    /// Requests whose body is being read, decoded, validated or forwarded at once.
    pub max_in_flight_requests: usize,
    /// Bytes of bodies held and decoded at once.
    pub memory_budget_bytes: usize,
    /// In-flight requests one certificate identity (the one its token matched) may hold.
    pub max_in_flight_per_identity: usize,
    /// Bytes of the memory budget one identity may hold.
    pub max_memory_per_identity_bytes: usize,
}

/// Default in-flight cap.
pub const DEFAULT_MAX_IN_FLIGHT: usize = 1024;
/// Default memory budget: 1 GiB.
pub const DEFAULT_MEMORY_BUDGET: usize = 1 << 30;

impl RawOverload {
    /// Checks `[overload]`; every budget holds at least one body of `body`'s caps.
    pub(super) fn check(&self, p: &mut Problems, body: &BodyLimits) -> OverloadConfig {
        let o = self;
        let max_in_flight_requests = nonzero(
            p,
            "overload.max_in_flight_requests",
            o.max_in_flight_requests,
            DEFAULT_MAX_IN_FLIGHT as u32,
        ) as usize;
        let memory_budget_bytes = usize::try_from(nonzero(
            p,
            "overload.memory_budget_bytes",
            o.memory_budget_bytes,
            DEFAULT_MEMORY_BUDGET as u64,
        ))
        .unwrap_or(usize::MAX);
        let one_body = body.max_body_bytes.max(body.max_upload_bytes);
        if memory_budget_bytes < one_body {
            p.add(
                "overload.memory_budget_bytes",
                "must hold at least one body of max_body_bytes and max_upload_bytes",
            );
        }
        // An identity's share: a quarter of each global budget unless configured, never less
        // than one body.
        let max_in_flight_per_identity = match o.max_in_flight_per_identity {
            None => (max_in_flight_requests / 4).max(1),
            Some(n) if n == 0 || n as usize > max_in_flight_requests => {
                p.add(
                    "overload.max_in_flight_per_identity",
                    "must be from 1 to overload.max_in_flight_requests",
                );
                max_in_flight_requests
            }
            Some(n) => n as usize,
        };
        let max_memory_per_identity_bytes = match o.max_memory_per_identity_bytes {
            None => (memory_budget_bytes / 4)
                .max(one_body)
                .min(memory_budget_bytes),
            Some(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                if n < one_body || n > memory_budget_bytes {
                    p.add(
                        "overload.max_memory_per_identity_bytes",
                        "must hold one body of max_body_bytes and max_upload_bytes and be at \
                         most overload.memory_budget_bytes",
                    );
                }
                n
            }
        };
        OverloadConfig {
            max_in_flight_requests,
            memory_budget_bytes,
            max_in_flight_per_identity,
            max_memory_per_identity_bytes,
        }
    }
}
