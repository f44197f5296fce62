//! The durability contract, in one place: a batch goes to the upstream or into the spool, and
//! nothing is acknowledged before one of them has it.
//!
//! - `spool-first`, or an upstream known to be down: straight into the spool.
//! - Otherwise forwarded: a 2xx is delivered; a permanent refusal (400, 401, 403, 404, …) is
//!   passed on, never spooled (retrying cannot help); anything else (down, slow, 5xx, 408, 429)
//!   goes into the spool when there is one, else is refused with 503 so that DataKit keeps it.
//!
//! Writes and the audit trail's push to the audit workspace both go through [`deliver`].
//!
//! Cancel safety: dropping the future before it returns acknowledges nothing; a batch already
//! appended stays in the spool and is replayed (at least once).

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, StatusCode, Uri};
use http_body_util::Full;

use crate::response::RequestError;
use crate::spool::SpoolMode;
use crate::spool::record::Payload;
use crate::state::State;
use crate::telemetry;
use crate::upstream::{Answer, Verdict};

/// A batch on its way upstream: the original bytes and the canonical request line and headers.
pub(crate) struct Outbound {
    /// Path and query, as sent upstream.
    pub(crate) uri: PathAndQuery,
    /// The headers forwarded.
    pub(crate) headers: HeaderMap,
    /// The body, byte for byte as the agent sent it.
    pub(crate) body: Bytes,
    /// The token's name, for counting a refusal (none for oneway's own audit lines).
    pub(crate) agent: Option<Arc<str>>,
}

/// Who has the batch now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Delivered {
    /// The upstream acknowledged it.
    Forwarded,
    /// It is fsynced in the spool, which will deliver it.
    Spooled,
}

/// Hands `out` to the upstream or the spool, as the module's rule says.
pub(crate) async fn deliver(state: &State, mut out: Outbound) -> Result<Delivered, RequestError> {
    if let Some(spool) = &state.spool {
        if spool.mode() == SpoolMode::SpoolFirst || !state.upstream.healthy() {
            return spool_it(state, &out).await;
        }
        spool.note_live_request();
    }
    let mut request = Request::new(Full::new(out.body.clone()));
    *request.method_mut() = Method::POST;
    *request.uri_mut() = Uri::from(out.uri.clone());
    // Only a spool may need the headers again (if the upstream fails): without one they move.
    *request.headers_mut() = if state.spool.is_some() {
        out.headers.clone()
    } else {
        std::mem::take(&mut out.headers)
    };
    match state.upstream.send(request).await {
        Ok(answer) if Verdict::of(answer.status) != Verdict::Retry => {
            if let Some(spool) = &state.spool {
                spool.note_upstream_back();
            }
            if Verdict::of(answer.status) == Verdict::Delivered {
                Ok(Delivered::Forwarded)
            } else {
                Err(refused(&answer, out.agent.as_ref()))
            }
        }
        // Down, slow, 5xx, 408, 429 or anything else not final: the batch goes to the spool
        // when there is one, else DataKit keeps it (503).
        _ if state.spool.is_some() => spool_it(state, &out).await,
        _ => Err(RequestError::UpstreamUnavailable),
    }
}

/// Appends `out` to the spool (group-committed: returns once fsynced).
async fn spool_it(state: &State, out: &Outbound) -> Result<Delivered, RequestError> {
    let spool = state
        .spool
        .as_ref()
        .ok_or(RequestError::UpstreamUnavailable)?;
    let payload = Payload::new(
        crate::spool::unix_ms(),
        out.uri.as_str(),
        out.headers.iter().map(|(n, v)| (n.as_str(), v.as_bytes())),
        out.body.clone(),
    )
    .ok_or(RequestError::Internal)?;
    spool.append(payload).await.map_err(RequestError::Spool)?;
    Ok(Delivered::Spooled)
}

/// A permanent refusal of a write, counted by status.
fn refused(answer: &Answer, agent: Option<&Arc<str>>) -> RequestError {
    let agent = agent.map_or(metrics::SharedString::const_str(""), |a| {
        metrics::SharedString::from(Arc::clone(a))
    });
    metrics::counter!(telemetry::UPSTREAM_REFUSED, "status" => status_label(answer.status), "agent" => agent)
        .increment(1);
    RequestError::UpstreamRefused {
        status: answer.status,
        beyond_usage: answer.status == StatusCode::FORBIDDEN
            && answer
                .body
                .windows(b"beyondDataUsage".len())
                .any(|w| w == b"beyondDataUsage"),
    }
}

fn status_label(status: StatusCode) -> &'static str {
    match status.as_u16() {
        400 => "400",
        401 => "401",
        403 => "403",
        404 => "404",
        406 => "406",
        413 => "413",
        415 => "415",
        422 => "422",
        _ => "other",
    }
}
