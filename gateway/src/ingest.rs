//! A write (`/v1/write/<category>`), from its head to its answer: authorize, admit (rate
//! limits, step one, before the body), read the body, decode and validate it exactly as Guance
//! would, settle what it really cost (step two), and hand the original bytes with canonical
//! headers to [`forward`](crate::forward).
//!
//! Cancel safety: a write dropped at any await acknowledged nothing; its budgets are released
//! with its [`Held`], its scratch space is lost (not returned to the pool), and a batch already
//! appended to the spool is delivered anyway.

use std::sync::Arc;

use bytes::Bytes;
use http::uri::PathAndQuery;
use http::{HeaderMap, HeaderValue, Method, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;
use oneway_protocol::{BodyKind, Category, DecodeError, Decoder, Encoding, Precision, Validator};

use crate::auth::Agent;
use crate::body::{Held, decode_estimate, read_body};
use crate::config::TokenConfig;
use crate::conn::Conn;
use crate::forward::{Delivered, Outbound};
use crate::request::{
    Caller, Matched, X_POINTS, authorize, digest, forwarded_token, header_u64, single_body_headers,
    throttled,
};
use crate::response::RequestError;
use crate::state::{Live, Scratch, State};
use crate::telemetry;

/// Bodies up to this size (identity; an eighth of it when compressed) are decoded and
/// validated on the connection's task; larger ones on the blocking pool.
const INLINE_CHECK_BYTES: usize = 1 << 20;

/// How a write's body is read: what its headers and query say.
#[derive(Clone, Copy)]
struct Reading {
    category: Category,
    encoding: Encoding,
    kind: BodyKind,
    /// The precision the query gave, if any (forwarded as given).
    given_precision: Option<Precision>,
}

/// What the checked batch holds.
struct Checked {
    verdict: oneway_protocol::Verdict,
    decoded_len: usize,
}

/// Serves one write.
pub(crate) async fn write(
    state: &Arc<State>,
    conn: &Conn,
    category: Category,
    req: Request<Incoming>,
    matched: &mut Option<Matched>,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let live = state.live();
    let caller = authorize(state, conn, &req, matched)?;
    if req.method() != Method::POST {
        return Err(RequestError::MethodNotAllowed);
    }
    single_body_headers(req.headers())?;
    // Step one, before the body is read: the request and its expected size and points, so an
    // agent over its limit costs us almost nothing.
    let expected_bytes = header_u64(req.headers(), &header::CONTENT_LENGTH);
    let expected_points = header_u64(req.headers(), &X_POINTS);
    let token = &caller.agent.token;
    let admitted = state.limiter.admit(
        digest(token),
        &token.limits,
        expected_bytes,
        expected_points,
    );
    telemetry::series!(gauge: Gauge, telemetry::TRACKED_TOKENS).set(state.limiter.tracked() as f64);
    admitted.map_err(|t| throttled(token, t))?;
    let reading = reading(category, &caller, req.headers())?;
    let (parts, body, mut held) = read_body(
        state,
        req,
        live.config.body.max_body_bytes,
        &caller.identity,
    )
    .await?;
    let checked = check(state, &live, &mut held, reading, &body).await?;
    // Step two: what the batch really cost beyond the estimate.
    state
        .limiter
        .settle(
            digest(token),
            &token.limits,
            (checked.decoded_len as u64).saturating_sub(expected_bytes),
            checked.verdict.points.saturating_sub(expected_points),
        )
        .map_err(|t| throttled(token, t))?;
    let out = Outbound {
        uri: PathAndQuery::try_from(caller.query.upstream(
            parts.uri.path(),
            forwarded_token(token, caller.presented.as_deref().unwrap_or("")),
            reading.given_precision.map(Precision::as_str),
        ))
        .map_err(|_| RequestError::UpstreamUnavailable)?,
        headers: forwarded_headers(&live, &caller, &parts.headers, reading, &checked),
        body: body.clone(),
        agent: Some(Arc::clone(&token.name)),
    };
    let delivered = crate::forward::deliver(state, out).await?;
    count_accepted(
        delivered,
        &caller.agent,
        reading.category,
        &checked,
        body.len(),
    );
    Ok(match delivered {
        Delivered::Forwarded => crate::response::forwarded_response(checked.verdict.points),
        Delivered::Spooled => crate::response::spooled_response(),
    })
}

/// The precision, encoding and body kind the request's query and headers give.
fn reading(
    category: Category,
    caller: &Caller,
    headers: &HeaderMap,
) -> Result<Reading, RequestError> {
    let given_precision = match caller.query.get("precision") {
        None => None,
        Some(p) => Some(Precision::parse(p).ok_or(RequestError::BadPrecision)?),
    };
    let encoding = Encoding::from_header(
        headers
            .get(header::CONTENT_ENCODING)
            .map(HeaderValue::as_bytes),
    )?;
    let kind =
        BodyKind::from_content_type(headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes))?;
    Ok(Reading {
        category,
        encoding,
        kind,
        given_precision,
    })
}

/// Decodes and validates `body` with pooled scratch space. Decoded bytes come out of the
/// memory budget too: an estimate is reserved and the body decoded within it; one that
/// decodes to more reserves the rest up to `max_decoded_bytes` and is decoded again, so
/// memory stays within what was reserved.
async fn check(
    state: &State,
    live: &Live,
    held: &mut Held,
    reading: Reading,
    body: &Bytes,
) -> Result<Checked, RequestError> {
    let scratch = state
        .pool
        .lock()
        .ok()
        .and_then(|mut p| p.pop())
        .filter(|s| s.generation == live.generation)
        .unwrap_or_else(|| Scratch {
            decoder: Decoder::new(),
            buffer: Vec::new(),
            validator: Validator::new(live.config.validation),
            generation: live.generation,
        });
    let max_decoded = live.config.body.max_decoded_bytes;
    let max_body = live.config.body.max_body_bytes;
    let encoding = reading.encoding;
    let estimate = decode_estimate(encoding, body, max_decoded);
    held.reserve(estimate)?;
    // Small batches (DataKit's are ≤ 1 MiB before gzip: about a millisecond) are checked on
    // the connection's task; larger ones on the blocking pool, so that one big batch cannot
    // stall the other connections of this worker.
    let inline = (encoding == Encoding::Identity && body.len() <= INLINE_CHECK_BYTES)
        || body.len() <= INLINE_CHECK_BYTES / 8;
    let run = |scratch: Scratch, limit: usize| {
        let body = body.clone();
        async move {
            if inline {
                Ok(check_in(scratch, reading, &body, limit, max_body))
            } else {
                tokio::task::spawn_blocking(move || {
                    check_in(scratch, reading, &body, limit, max_body)
                })
                .await
                .map_err(|_| RequestError::Internal)
            }
        }
    };
    let decode_limit = if encoding == Encoding::Identity {
        max_decoded
    } else {
        estimate
    };
    let (mut scratch, mut checked) = run(scratch, decode_limit).await?;
    let needs_more = decode_limit < max_decoded
        && matches!(
            checked,
            Err(RequestError::Decode(DecodeError::TooLarge { .. }))
        );
    if needs_more {
        match held.reserve(max_decoded - estimate) {
            Ok(()) => (scratch, checked) = run(scratch, max_decoded).await?,
            Err(e) => checked = Err(e),
        }
    }
    if let Ok(mut p) = state.pool.lock() {
        p.push(scratch);
    }
    checked
}

/// Decodes within `limit` and validates, in `scratch` (returned, for the pool).
fn check_in(
    mut scratch: Scratch,
    reading: Reading,
    body: &[u8],
    limit: usize,
    max_body: usize,
) -> (Scratch, Result<Checked, RequestError>) {
    let result = (|| {
        let decoded = scratch
            .decoder
            .decode(reading.encoding, body, &mut scratch.buffer, limit)?;
        let decoded_len = decoded.len();
        let verdict = scratch.validator.validate(
            reading.kind,
            reading.category,
            reading.given_precision.unwrap_or_default(),
            decoded,
        )?;
        Ok::<_, RequestError>(Checked {
            verdict,
            decoded_len,
        })
    })();
    if scratch.buffer.capacity() > max_body.max(4 << 20) {
        // Keep pooled buffers modest: a rare huge batch does not pin its memory forever.
        scratch.buffer = Vec::new();
    }
    (scratch, result)
}

/// The headers forwarded with a checked batch: the routing policy's, the point count, and
/// the parser and decoder that checked the body, in the one spelling Guance maps to them.
fn forwarded_headers(
    live: &Live,
    caller: &Caller,
    sent: &HeaderMap,
    reading: Reading,
    checked: &Checked,
) -> HeaderMap {
    let token: &TokenConfig = &caller.agent.token;
    let mut headers = crate::headers::forwarded(
        sent,
        token,
        &caller.identity,
        live.config.identity_header.as_ref(),
    );
    headers.insert(X_POINTS.clone(), HeaderValue::from(checked.verdict.points));
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(reading.kind.content_type()),
    );
    headers.remove(header::CONTENT_ENCODING);
    if reading.encoding != Encoding::Identity {
        headers.insert(
            header::CONTENT_ENCODING,
            HeaderValue::from_static(reading.encoding.as_str()),
        );
    }
    headers
}

/// Counts an accepted batch of `agent`: how it was delivered, its points and bytes, the points
/// rules only counted, and when the agent last pushed.
fn count_accepted(
    delivered: Delivered,
    agent: &Agent,
    category: Category,
    checked: &Checked,
    sent: usize,
) {
    for (rule, points) in checked.verdict.counted.iter() {
        metrics::counter!(telemetry::VALIDATION_COUNTED, "rule" => rule.as_str(), "agent" => agent.series.label())
            .increment(points);
    }
    agent.series.accepted(telemetry::Batch {
        category,
        spooled: delivered == Delivered::Spooled,
        points: checked.verdict.points,
        compressed: sent as u64,
        decoded: checked.decoded_len as u64,
    });
}
