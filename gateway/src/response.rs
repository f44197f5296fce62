//! One function maps every request error to a status and a Guance-style JSON body
//! `{"error_code": "oneway.<code>", "message": "…"}`.
//!
//! Back-pressure and upstream trouble are **503** with `Retry-After` (DataKit keeps and re-posts
//! a batch on 5xx and drops it on any 4xx); a 4xx is only for a batch that is permanently bad.
//! Messages never contain a token or payload bytes: a validation error names the line (or
//! point index), the byte offset and the rule broken.

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::Full;
use oneway_protocol::{DecodeError, DecodeErrorClass, Rejection, UnsupportedContentType};

use crate::auth::AuthError;
use crate::telemetry;

/// Why a request failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RequestError {
    /// No such route. The path is not repeated back: a token or payload could be in it.
    #[error("no such API")]
    NotFound,
    /// The route exists but not with this method.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// Authentication or policy.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The body is over its cap.
    #[error("the body is larger than {limit} bytes")]
    BodyTooLarge {
        /// The cap.
        limit: usize,
    },
    /// The body did not arrive in time.
    #[error("the body did not arrive within the deadline")]
    BodyTimeout,
    /// A request-smuggling shape: both `Content-Length` and `Transfer-Encoding`, or a
    /// `Transfer-Encoding` other than exactly `chunked`, or a request after framing the
    /// gateway could not follow.
    #[error("the request's body framing is refused ({}): send one Content-Length, or Transfer-Encoding: chunked alone", .0.as_str())]
    BadFraming(crate::framing::Framing),
    /// The body arrived slower than `listener.body_min_rate_bytes_per_second`.
    #[error("the body arrived too slowly")]
    BodyTooSlow,
    /// The connection failed while reading the body.
    #[error("the body could not be read")]
    BodyRead,
    /// Decoding failed.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The content type is not supported.
    #[error(transparent)]
    ContentType(#[from] UnsupportedContentType),
    /// An unknown `precision` parameter.
    #[error("precision must be one of n, u, ms, s, m, h")]
    BadPrecision,
    /// A query Guance would read otherwise than oneway (see `request.rs`).
    #[error(transparent)]
    BadQuery(#[from] crate::query::QueryError),
    /// A header that decides how the body is read, given twice.
    #[error("the request has more than one {0} header")]
    DuplicateHeader(&'static str),
    /// Validation rejected the batch. The message names the point, the byte offset and the
    /// rule, and never quotes the payload (DESIGN §3: payloads never appear in responses).
    #[error("invalid payload: {}, byte {}: {} ({})", .0.position, .0.offset, .0.rule, .0.rule.as_str())]
    Invalid(#[from] Rejection),
    /// The upstream is down, slow or failing, or answered a write with anything that is not
    /// a permanent refusal (408, 429, 5xx, ...): worth retrying.
    #[error("the upstream is unavailable; retry later")]
    UpstreamUnavailable,
    /// The upstream refused the batch for good (one of
    /// [`crate::upstream::PERMANENT_REFUSALS`]): passed on with its status, never its body.
    #[error("the upstream refused the batch (HTTP {status})")]
    UpstreamRefused {
        /// The upstream's status.
        status: StatusCode,
        /// A 403 whose body names `beyondDataUsage` (the workspace is over its quota): said
        /// in the error code, which DataKit looks for.
        beyond_usage: bool,
    },
    /// A non-write API's answer that is not relayed: longer than
    /// `forward.max_api_answer_bytes`, or not JSON.
    #[error("the upstream's answer is not relayed ({0}); retry later")]
    AnswerNotRelayed(&'static str),
    /// The token is over one of its rate limits.
    #[error("the token is over its {} limit; retry in {retry_after_seconds} s", .kind.as_str())]
    Throttled {
        /// Which limit.
        kind: crate::limit::LimitKind,
        /// Seconds until the request would be allowed.
        retry_after_seconds: u64,
        /// 503 (default) or 429 (per token).
        status: StatusCode,
    },
    /// The gateway is at its in-flight cap or memory budget.
    #[error("the gateway is overloaded ({reason}); retry later")]
    Overloaded {
        /// `in_flight` or `memory`.
        reason: &'static str,
    },
    /// The upstream is unavailable and the spool cannot take the batch (full, disk full,
    /// stopped); the batch was not acknowledged.
    #[error("the upstream is unavailable and {0}; retry later")]
    Spool(crate::spool::SpoolError),
    /// A bug inside the gateway (a panicked task); the batch was not acknowledged.
    #[error("internal error; retry later")]
    Internal,
    /// The last reload could not read the config file, the client CA bundle or a CRL: who
    /// may push is not known, so nobody is served until a reload reads them again.
    #[error(
        "the gateway could not read its tokens or certificates at the last reload; retry later"
    )]
    FailClosed,
}

impl RequestError {
    /// A stable label for metrics and logs.
    pub fn kind(&self) -> &'static str {
        match self {
            RequestError::NotFound => "not_found",
            RequestError::MethodNotAllowed => "method_not_allowed",
            RequestError::Auth(e) => e.kind(),
            RequestError::BodyTooLarge { .. } => "body_too_large",
            RequestError::BodyTimeout => "body_timeout",
            RequestError::BodyTooSlow => "body_too_slow",
            RequestError::BadFraming(_) => "bad_framing",
            RequestError::BodyRead => "body_read",
            RequestError::Decode(e) => e.kind(),
            RequestError::ContentType(_) => "unsupported_content_type",
            RequestError::BadPrecision => "bad_precision",
            RequestError::BadQuery(_) => "bad_query",
            RequestError::DuplicateHeader(_) => "duplicate_header",
            RequestError::Invalid(_) => "invalid_payload",
            RequestError::UpstreamUnavailable => "upstream_unavailable",
            RequestError::UpstreamRefused { .. } => "upstream_refused",
            RequestError::AnswerNotRelayed(_) => "answer_not_relayed",
            RequestError::Internal => "internal",
            RequestError::Spool(_) => "spool_unavailable",
            RequestError::Throttled { .. } => "rate_limited",
            RequestError::Overloaded { .. } => "overloaded",
            RequestError::FailClosed => "fail_closed",
        }
    }

    /// The response status.
    pub fn status(&self) -> StatusCode {
        match self {
            RequestError::NotFound => StatusCode::NOT_FOUND,
            RequestError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            RequestError::Auth(AuthError::MissingToken | AuthError::UnknownToken) => {
                StatusCode::UNAUTHORIZED
            }
            RequestError::Auth(_) => StatusCode::FORBIDDEN,
            RequestError::BodyTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            RequestError::BodyTimeout | RequestError::BodyTooSlow => StatusCode::REQUEST_TIMEOUT,
            RequestError::BodyRead => StatusCode::BAD_REQUEST,
            RequestError::Decode(e) => match e.class() {
                DecodeErrorClass::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
                DecodeErrorClass::Corrupt => StatusCode::BAD_REQUEST,
                DecodeErrorClass::Unsupported => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            },
            RequestError::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::BadPrecision
            | RequestError::BadQuery(_)
            | RequestError::DuplicateHeader(_)
            | RequestError::Invalid(_)
            | RequestError::BadFraming(_) => StatusCode::BAD_REQUEST,
            RequestError::UpstreamRefused { status, .. } => *status,
            RequestError::UpstreamUnavailable
            | RequestError::AnswerNotRelayed(_)
            | RequestError::Internal
            | RequestError::Spool(_)
            | RequestError::FailClosed
            | RequestError::Overloaded { .. } => StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Throttled { status, .. } => *status,
        }
    }
}

/// Seconds a client is told to wait after a 503.
pub const RETRY_AFTER_SECONDS: u32 = 5;

/// The response for an error.
pub fn error_response(e: &RequestError) -> Response<Full<Bytes>> {
    let code = match e {
        RequestError::Invalid(r) => format!("oneway.invalid_payload.{}", r.rule.as_str()),
        RequestError::Throttled { kind, .. } => format!("oneway.rate_limited.{}", kind.as_str()),
        RequestError::Overloaded { reason } => format!("oneway.overloaded.{reason}"),
        RequestError::Spool(e) => format!("oneway.spool.{}", e.kind()),
        RequestError::UpstreamRefused {
            beyond_usage: true, ..
        } => "oneway.upstream_refused.beyondDataUsage".to_string(),
        RequestError::AnswerNotRelayed(why) => format!("oneway.answer_not_relayed.{why}"),
        RequestError::BadFraming(f) => format!("oneway.bad_framing.{}", f.as_str()),
        other => format!("oneway.{}", other.kind()),
    };
    let body = serde_json::json!({ "error_code": code, "message": e.to_string() });
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = e.status();
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let RequestError::Throttled {
        retry_after_seconds,
        ..
    } = e
    {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(*retry_after_seconds));
    } else if e.status() == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECONDS));
    }
    resp
}

/// The answer for a batch that is durably spooled (not yet delivered): 202.
pub fn spooled_response() -> Response<Full<Bytes>> {
    json_response(
        StatusCode::ACCEPTED,
        Bytes::from_static(br#"{"message":"spooled; delivered when the upstream accepts it"}"#),
    )
}

/// The answer for a batch the upstream took: 200 and the points counted (never the
/// upstream's own body: nothing from the Guance side is carried back on a write).
pub fn forwarded_response(points: u64) -> Response<Full<Bytes>> {
    json_response(
        StatusCode::OK,
        Bytes::from(format!(r#"{{"message":"forwarded","points":{points}}}"#)),
    )
}

fn json_response(status: StatusCode, body: Bytes) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// Refused for overload (`reason` is the budget that ran out), counted by reason.
pub(crate) fn overloaded(reason: &'static str) -> RequestError {
    metrics::counter!(telemetry::OVERLOAD_REFUSED, "reason" => reason).increment(1);
    RequestError::Overloaded { reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_follow_the_data_loss_contract() {
        assert_eq!(RequestError::UpstreamUnavailable.status(), 503);
        assert_eq!(RequestError::Auth(AuthError::UnknownToken).status(), 401);
        assert_eq!(RequestError::Auth(AuthError::NotBound).status(), 403);
        assert_eq!(RequestError::Decode(DecodeError::Stacked).status(), 415);
        assert_eq!(
            RequestError::Decode(DecodeError::TooLarge { limit: 1 }).status(),
            413
        );
        let r = error_response(&RequestError::UpstreamUnavailable);
        assert_eq!(r.headers()[header::RETRY_AFTER], "5");
        let full = RequestError::Spool(crate::spool::SpoolError::Full);
        assert_eq!(full.status(), 503);
        assert_eq!(error_response(&full).headers()[header::RETRY_AFTER], "5");
        assert_eq!(spooled_response().status(), 202);
        assert_eq!(forwarded_response(3).status(), 200);
        let refused = RequestError::UpstreamRefused {
            status: StatusCode::FORBIDDEN,
            beyond_usage: true,
        };
        assert_eq!(refused.status(), 403);
        let body = error_response(&refused).into_body();
        let text = format!("{body:?}");
        assert!(text.contains("beyondDataUsage"), "{text}");
        let too_long = RequestError::AnswerNotRelayed("too_large");
        assert_eq!(too_long.status(), 503);
        assert_eq!(
            error_response(&too_long).headers()[header::RETRY_AFTER],
            "5"
        );
    }
}
