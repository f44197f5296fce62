//! The non-write APIs a token's policy allows (`/v1/election`, `/v1/check/token`, uploads, …):
//! forwarded like a write, but their answers come back, and only when final, complete (within
//! `forward.max_api_answer_bytes`) and JSON.
//!
//! Cancel safety: as a write's; nothing is spooled here (an API's answer cannot wait).

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Method, Request, Response, header};
use http_body_util::Full;
use hyper::body::Incoming;

use crate::auth::AuthError;
use crate::body::read_body;
use crate::conn::Conn;
use crate::request::{Matched, authorize, digest, forwarded_token, single_body_headers, throttled};
use crate::response::RequestError;
use crate::state::State;
use crate::telemetry;
use crate::upstream::{Answer, Verdict};

/// APIs that carry multipart uploads, capped by `limits.max_upload_bytes`.
const UPLOAD_APIS: &[&str] = &["/v1/write/rum/replay", "/v1/upload/profiling"];

/// Serves one call of `api`.
pub(crate) async fn passthrough(
    state: &Arc<State>,
    conn: &Conn,
    api: &'static str,
    req: Request<Incoming>,
    matched: &mut Option<Matched>,
) -> Result<Response<Full<Bytes>>, RequestError> {
    let live = state.live();
    let caller = authorize(state, conn, &req, matched)?;
    let token = &caller.agent.token;
    single_body_headers(req.headers())?;
    if !token.allowed_apis.contains(api) {
        return Err(RequestError::Auth(AuthError::ApiNotAllowed));
    }
    state
        .limiter
        .admit(digest(token), &token.limits, 0, 0)
        .map_err(|t| throttled(token, t))?;
    let limit = if UPLOAD_APIS.contains(&api) {
        live.config.body.max_upload_bytes
    } else {
        live.config.body.max_body_bytes
    };
    let method = req.method().clone();
    if !matches!(method, Method::GET | Method::POST | Method::DELETE) {
        return Err(RequestError::MethodNotAllowed);
    }
    let (parts, body, _held) = read_body(state, req, limit, &caller.identity).await?;
    let presented = caller.presented.as_deref().unwrap_or_default();
    let forwarded = forwarded_token(token, presented);
    let uri = if api == "/v1/check/token" {
        format!("/v1/check/token/{forwarded}")
    } else {
        let precision = caller.query.get("precision");
        caller
            .query
            .upstream(parts.uri.path(), forwarded, precision)
    };
    let mut request = Request::new(Full::new(body));
    *request.method_mut() = method;
    *request.uri_mut() = uri.parse().map_err(|_| RequestError::UpstreamUnavailable)?;
    *request.headers_mut() = crate::headers::forwarded(
        &parts.headers,
        token,
        &caller.identity,
        live.config.identity_header.as_ref(),
    );
    let answer = state
        .upstream
        .send(request)
        .await
        .map_err(|_| RequestError::UpstreamUnavailable)?;
    relay_api(api, answer)
}

/// A non-write API's answer, relayed only when final (2xx or a permanent refusal), complete
/// (within `forward.max_api_answer_bytes`) and JSON (or empty); its status, its JSON and
/// nothing else. Counted by API and outcome.
fn relay_api(api: &'static str, answer: Answer) -> Result<Response<Full<Bytes>>, RequestError> {
    let json = answer.content_type.as_ref().is_some_and(|ct| {
        ct.to_str().is_ok_and(|ct| {
            ct.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("application/json"))
        })
    });
    let outcome = if Verdict::of(answer.status) == Verdict::Retry {
        Err(RequestError::UpstreamUnavailable)
    } else if !answer.complete {
        Err(RequestError::AnswerNotRelayed("too_large"))
    } else if !answer.body.is_empty() && !json {
        Err(RequestError::AnswerNotRelayed("content_type"))
    } else {
        Ok(())
    };
    let label = match &outcome {
        Ok(()) => "relayed",
        Err(RequestError::AnswerNotRelayed(why)) => why,
        Err(_) => "retry",
    };
    metrics::counter!(telemetry::API_ANSWERS, "api" => api, "outcome" => label).increment(1);
    outcome?;
    metrics::counter!(telemetry::API_ANSWER_BYTES, "api" => api)
        .increment(answer.body.len() as u64);
    let mut resp = Response::new(Full::new(answer.body));
    *resp.status_mut() = answer.status;
    if json {
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
    }
    Ok(resp)
}
