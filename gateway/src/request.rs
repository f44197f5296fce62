//! What a request says before its body is read: the token it presents (and the one forwarded
//! in its place), its query as Guance reads it, its body headers, and the caller it is
//! authorized as — the token, the identity it matched, and that identity's place under the
//! per-identity connection cap.

use std::sync::Arc;

use http::{HeaderMap, HeaderName, Request, header};
use hyper::body::Incoming;

use crate::auth::{Agent, AuthError};
use crate::config::{TokenConfig, TokenSecret};
use crate::conn::Conn;
use crate::limit::Throttled;
use crate::query::Query;
use crate::response::RequestError;
use crate::state::State;
use crate::telemetry;

/// DataKit's count of the points in a batch (sent with the batch, and forwarded with the count
/// oneway made).
pub(crate) static X_POINTS: HeaderName = HeaderName::from_static("x-points");
/// The token, when not in the query.
static X_TOKEN: HeaderName = HeaderName::from_static("x-token");

/// Who a request turned out to be, as far as authorization got: the token's name once the
/// token is known, and the identity it matched once it is bound to the certificate.
pub(crate) struct Matched {
    /// The token (its name is the `agent` of metrics and audit events).
    pub(crate) agent: Arc<Agent>,
    /// The certificate identity the token matched.
    pub(crate) identity: Option<Arc<str>>,
}

/// A request whose token was found and is bound to the connection's certificate.
pub(crate) struct Caller {
    /// Its query, parsed as Guance parses it.
    pub(crate) query: Query,
    /// The token as presented (what `forwarded_token` maps).
    pub(crate) presented: Option<String>,
    /// The token: its policy and its agent's series.
    pub(crate) agent: Arc<Agent>,
    /// The certificate identity the token matched.
    pub(crate) identity: Arc<str>,
}

/// Authorizes `req` on `conn`: its token, bound to the certificate, and a place for the
/// matched identity under `listener.max_connections_per_identity`. `matched` is set as soon
/// as the token is known (metrics and the audit trail name the agent even when a later check
/// refuses).
pub(crate) fn authorize(
    state: &State,
    conn: &Conn,
    req: &Request<Incoming>,
    matched: &mut Option<Matched>,
) -> Result<Caller, RequestError> {
    let live = state.live();
    let query = parsed_query(req)?;
    let presented = presented_token(req, &query);
    let authorized = match live.tokens.authorize(presented.as_deref(), &conn.peer) {
        Ok(a) => a,
        Err(e) => {
            let known = matches!(e, AuthError::NotBound | AuthError::EndpointNotAllowed);
            if let Some(agent) = presented
                .as_deref()
                .filter(|_| known)
                .and_then(|p| live.tokens.agent_of(p))
            {
                *matched = Some(Matched {
                    agent,
                    identity: None,
                });
            }
            return Err(e.into());
        }
    };
    let identity = authorized.identity;
    *matched = Some(Matched {
        agent: Arc::clone(&authorized.agent),
        identity: Some(Arc::clone(&identity)),
    });
    conn.hold(
        state,
        &identity,
        live.config.listener.max_connections_per_identity,
    )?;
    Ok(Caller {
        query,
        presented,
        agent: authorized.agent,
        identity,
    })
}

/// The token forwarded upstream: the mapped workspace token when there is one.
pub(crate) fn forwarded_token<'a>(token: &'a TokenConfig, presented: &'a str) -> &'a str {
    token.upstream_token.as_deref().unwrap_or(presented)
}

/// The request's query, parsed as Guance parses it.
pub(crate) fn parsed_query(req: &Request<Incoming>) -> Result<Query, RequestError> {
    Ok(Query::parse(req.uri().query().unwrap_or(""))?)
}

/// Refuses a second `Content-Type` or `Content-Encoding`: one of them would decide how oneway
/// reads the body, maybe the other how Guance does.
pub(crate) fn single_body_headers(headers: &HeaderMap) -> Result<(), RequestError> {
    for (name, label) in [
        (header::CONTENT_TYPE, "Content-Type"),
        (header::CONTENT_ENCODING, "Content-Encoding"),
    ] {
        if headers.get_all(name).iter().count() > 1 {
            return Err(RequestError::DuplicateHeader(label));
        }
    }
    Ok(())
}

/// The token: `?token=`, then `X-Token`, then (for `/v1/check/token/<token>`) the path.
pub(crate) fn presented_token(req: &Request<Incoming>, query: &Query) -> Option<String> {
    if let Some(t) = query.get("token") {
        return Some(t.to_string());
    }
    if let Some(t) = req.headers().get(&X_TOKEN).and_then(|v| v.to_str().ok()) {
        return Some(t.to_string());
    }
    req.uri()
        .path()
        .strip_prefix("/v1/check/token/")
        .map(str::to_string)
}

/// The token's SHA-256 (what the rate limiter keys on).
pub(crate) fn digest(token: &TokenConfig) -> &[u8; 32] {
    let TokenSecret::Sha256(d) = &token.secret;
    d
}

/// A refusal for being over one of `token`'s limits, counted by limit.
pub(crate) fn throttled(token: &TokenConfig, t: Throttled) -> RequestError {
    metrics::counter!(telemetry::THROTTLED, "kind" => t.kind.as_str(), "agent" => Arc::clone(&token.name))
        .increment(1);
    RequestError::Throttled {
        kind: t.kind,
        retry_after_seconds: t.retry_after_seconds(),
        status: token.over_limit_status,
    }
}

/// A header's value as a number; 0 when absent or not one (only estimates are read so).
pub(crate) fn header_u64(headers: &HeaderMap, name: &HeaderName) -> u64 {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_token_is_the_mapped_one() {
        let token = TokenConfig {
            upstream_token: Some("tkn_real0000000000000000000000000000".into()),
            ..TokenConfig::for_tests()
        };
        assert_eq!(
            forwarded_token(&token, "tkn_agent000000000000000000000000000"),
            "tkn_real0000000000000000000000000000"
        );
        let plain = TokenConfig {
            upstream_token: None,
            ..token
        };
        assert_eq!(
            forwarded_token(&plain, "tkn_agent000000000000000000000000000"),
            "tkn_agent000000000000000000000000000"
        );
    }
}
