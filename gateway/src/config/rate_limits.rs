//! `[rate_limits]` and `tokens[].rate`: per-token GCRA rates and bursts, divided among the
//! replicas that share the load, and the status answered over a limit (503 by default: DataKit
//! retries it; 429 on request).

use serde::Deserialize;

use super::Problems;

/// A rate and its burst, with the GCRA constants precomputed (no division per check).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Sustained units per second (> 0).
    pub per_second: f64,
    /// Units that may arrive at once (≥ 1).
    pub burst: f64,
    /// Nanoseconds per unit.
    pub(crate) interval: f64,
    /// `burst × interval`, in nanoseconds.
    pub(crate) tolerance: u64,
}

impl Rate {
    /// `per_second` units per second with bursts of `burst` units.
    pub fn new(per_second: f64, burst: f64) -> Rate {
        let interval = 1e9 / per_second;
        Rate {
            per_second,
            burst,
            interval,
            tolerance: (burst * interval) as u64,
        }
    }
}

/// A token's limits; `None` is unlimited.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct TokenLimits {
    /// Requests per second.
    pub requests: Option<Rate>,
    /// Decoded bytes per second.
    pub decoded_bytes: Option<Rate>,
    /// Points per second.
    pub points: Option<Rate>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRateLimits {
    replicas: Option<u32>,
    #[serde(default)]
    default: RawRate,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRate {
    requests_per_second: Option<f64>,
    requests_burst: Option<f64>,
    decoded_bytes_per_second: Option<f64>,
    decoded_bytes_burst: Option<f64>,
    points_per_second: Option<f64>,
    points_burst: Option<f64>,
    over_limit_status: Option<u16>,
}

/// Checks a rate block and turns it into this replica's limits.
pub(super) fn rate(
    p: &mut Problems,
    path: &str,
    r: &RawRate,
    replicas: u32,
) -> (TokenLimits, http::StatusCode) {
    let share = f64::from(replicas.max(1));
    let mut one = |name: &str, per_second: Option<f64>, burst: Option<f64>| -> Option<Rate> {
        match (per_second, burst) {
            (None, None) => None,
            (Some(r), b)
                if r > 0.0 && r.is_finite() && b.is_none_or(|b| b >= 1.0 && b.is_finite()) =>
            {
                let burst = b.unwrap_or(r);
                Some(Rate::new(r / share, (burst / share).max(1.0)))
            }
            (None, Some(_)) => {
                p.add(
                    format!("{path}.{name}_burst"),
                    format!("needs {name}_per_second"),
                );
                None
            }
            _ => {
                p.add(
                    format!("{path}.{name}_per_second"),
                    "the rate must be > 0 and the burst ≥ 1",
                );
                None
            }
        }
    };
    let limits = TokenLimits {
        requests: one("requests", r.requests_per_second, r.requests_burst),
        decoded_bytes: one(
            "decoded_bytes",
            r.decoded_bytes_per_second,
            r.decoded_bytes_burst,
        ),
        points: one("points", r.points_per_second, r.points_burst),
    };
    let status = match r.over_limit_status {
        None | Some(503) => http::StatusCode::SERVICE_UNAVAILABLE,
        Some(429) => http::StatusCode::TOO_MANY_REQUESTS,
        Some(other) => {
            p.add(
                format!("{path}.over_limit_status"),
                format!("{other} is not 503 or 429"),
            );
            http::StatusCode::SERVICE_UNAVAILABLE
        }
    };
    (limits, status)
}

impl RawRateLimits {
    /// Checks `[rate_limits]`: the replica count and the default rate, which `token` (one
    /// `tokens[].rate`, checked at `path`) overrides.
    pub(super) fn replicas(&self, p: &mut Problems) -> u32 {
        match self.replicas {
            Some(0) => {
                p.add("rate_limits.replicas", "must be at least 1");
                1
            }
            Some(n) => n,
            None => 1,
        }
    }

    /// The default rate, this replica's share.
    pub(super) fn default_rate(
        &self,
        p: &mut Problems,
        replicas: u32,
    ) -> (TokenLimits, http::StatusCode) {
        rate(p, "rate_limits.default", &self.default, replicas)
    }
}
