//! Routing and dispatch: every request on a connection is routed (a write, an allowed
//! non-write API, or 404), served by its stage, turned into a response by
//! [`response`](crate::response) when it fails, and counted; refusals that matter to security
//! go to the audit trail.
//!
//! A request whose body framing hyper tolerates but a proxy must not (request smuggling) is
//! refused before anything else, and its connection closed.
//!
//! Cancel safety: as its stages' (ingest, passthrough): a request dropped at any await has
//! acknowledged nothing.

use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use oneway_protocol::Category;
use tracing::debug;

use crate::auth::AuthError;
use crate::config::KNOWN_APIS;
use crate::conn::Conn;
use crate::framing::Framing;
use crate::ingest::write;
use crate::passthrough::passthrough;
use crate::request::Matched;
use crate::response::{RequestError, error_response};
use crate::state::State;
use crate::telemetry;

/// Which route a request takes.
enum Route {
    Write(Category),
    Api(&'static str),
}

/// The route of a path: a known API (`/v1/check/token/<token>` included), a write category,
/// or none.
fn route(path: &str) -> Result<Route, RequestError> {
    if let Some(api) = KNOWN_APIS.iter().find(|api| {
        path == **api || (**api == "/v1/check/token" && path.starts_with("/v1/check/token/"))
    }) {
        return Ok(Route::Api(api));
    }
    if let Some(segment) = path.strip_prefix("/v1/write/")
        && let Some(category) = Category::from_path_segment(segment)
    {
        return Ok(Route::Write(category));
    }
    Err(RequestError::NotFound)
}

/// Serves one request of `conn`, whose raw head the connection saw framed as `framing`.
pub(crate) async fn handle(
    state: &Arc<State>,
    conn: &Conn,
    req: Request<Incoming>,
    framing: Framing,
) -> Response<Full<Bytes>> {
    telemetry::series!(gauge: Gauge, telemetry::IN_FLIGHT).increment(1.0);
    // Framing hyper tolerates but a proxy must not (request smuggling): a body length given
    // twice over (seen in the raw head by `edge::Tracked`). Refused before anything else,
    // and the connection is closed.
    // The token's name and the identity it matched, as far as authorization got.
    let mut matched = None;
    let (route_label, category, result) = if framing != Framing::Clean {
        ("unknown", None, Err(RequestError::BadFraming(framing)))
    } else {
        process(state, conn, req, &mut matched).await
    };
    // The identity the token matched, once it has; before that, the certificate's name. The
    // agent: the token's name once the token is known, else none (an empty label).
    let (who, agent) = match matched {
        Some(Matched {
            agent,
            identity: Some(identity),
        }) => (identity, Some(agent)),
        Some(Matched { agent, .. }) => (conn.peer.name().into(), Some(agent)),
        None => (conn.peer.name().into(), None),
    };
    let category_label = category.map_or("none", Category::as_str);
    let agent_label = || -> metrics::SharedString {
        agent
            .as_ref()
            .map_or(metrics::SharedString::const_str(""), |a| a.series.label())
    };
    telemetry::series!(gauge: Gauge, telemetry::IN_FLIGHT).decrement(1.0);
    let response = match result {
        Ok(r) => r,
        Err(e) => {
            match &e {
                RequestError::Auth(a) => {
                    metrics::counter!(telemetry::AUTH_FAILURES, "kind" => a.kind(), "agent" => agent_label())
                        .increment(1);
                    let event = if matches!(a, AuthError::ApiNotAllowed) {
                        "api_refused"
                    } else {
                        "auth_failure"
                    };
                    let mut fields = vec![
                        ("kind", a.kind()),
                        ("identity", &*who),
                        ("route", route_label),
                    ];
                    fields.extend(agent.as_deref().map(|a| ("agent", &**a.name())));
                    state.audit.count(event, &fields);
                }
                RequestError::Throttled { kind, .. } => {
                    let mut fields = vec![("kind", kind.as_str()), ("identity", &*who)];
                    fields.extend(agent.as_deref().map(|a| ("agent", &**a.name())));
                    state.audit.count("rate_limited", &fields);
                }
                RequestError::Invalid(r) => {
                    metrics::counter!(telemetry::VALIDATION_FAILURES, "rule" => r.rule.as_str(), "agent" => agent_label())
                        .increment(1);
                }
                RequestError::Decode(d) => {
                    metrics::counter!(telemetry::DECODE_FAILURES, "kind" => d.kind(), "agent" => agent_label())
                        .increment(1);
                }
                _ => {}
            }
            debug!(
                kind = e.kind(),
                route = route_label,
                category = category_label,
                "request refused"
            );
            error_response(&e)
        }
    };
    let mut response = response;
    if response.status() == StatusCode::BAD_REQUEST {
        // After a malformed request nothing more is read from this connection.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    let class = match response.status().as_u16() {
        200..=299 => "2xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        _ => "other",
    };
    match (&agent, category) {
        // The common answer, a write accepted (only writes have a category), through the
        // agent's own series.
        (Some(agent), Some(category)) if class == "2xx" => {
            agent.series.written(category)
        }
        _ => metrics::counter!(telemetry::REQUESTS, "route" => route_label, "category" => category_label, "status" => class, "agent" => agent_label())
            .increment(1),
    }
    response
}

async fn process(
    state: &Arc<State>,
    conn: &Conn,
    req: Request<Incoming>,
    matched: &mut Option<Matched>,
) -> (
    &'static str,
    Option<Category>,
    Result<Response<Full<Bytes>>, RequestError>,
) {
    // A connection whose certificate a reload revoked, or a gateway that does not know who
    // may push: nothing is served.
    if conn.is_revoked() {
        return ("unknown", None, Err(AuthError::Revoked.into()));
    }
    if state.live().fail_closed.is_some() {
        return ("unknown", None, Err(RequestError::FailClosed));
    }
    match route(req.uri().path()) {
        Ok(Route::Write(category)) => (
            "write",
            Some(category),
            write(state, conn, category, req, matched).await,
        ),
        Ok(Route::Api(api)) => (
            "api",
            None,
            passthrough(state, conn, api, req, matched).await,
        ),
        Err(e) => ("unknown", None, Err(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routes_cover_categories_aliases_and_apis() {
        assert!(matches!(
            route("/v1/write/metrics"),
            Ok(Route::Write(Category::Metric))
        ));
        assert!(matches!(
            route("/v1/write/langfuse-v2"),
            Ok(Route::Write(Category::LangfuseV2))
        ));
        assert!(matches!(
            route("/v1/write/rum/replay"),
            Ok(Route::Api("/v1/write/rum/replay"))
        ));
        assert!(matches!(
            route("/v1/check/token/tkn_x0000000000000000000000000000000"),
            Ok(Route::Api("/v1/check/token"))
        ));
        assert!(matches!(
            route("/v1/query/raw"),
            Ok(Route::Api("/v1/query/raw"))
        ));
        assert!(matches!(
            route("/v1/write/nope"),
            Err(RequestError::NotFound)
        ));
        assert!(matches!(route("/admin"), Err(RequestError::NotFound)));
    }
}
