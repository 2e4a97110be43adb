//! The admin listener: `/healthz`, `/ready`, `/stats/prometheus`, `/config_dump`
//! (the traffic rules, clusters and quota policies in force, JSON).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};

use crate::body::ResponseBody;
use crate::quota::QuotaEnforcer;
use crate::routing::{SharedRouting, config_dump};
use crate::stats::Stats;

/// Answers one admin request.
pub fn handle_admin<B>(stats: &Stats, routing: &SharedRouting, quota: &QuotaEnforcer, request: &Request<B>) -> Response<ResponseBody> {
    if request.method() != Method::GET && request.method() != Method::HEAD {
        return reply(StatusCode::METHOD_NOT_ALLOWED, "text/plain", "method not allowed\n".into());
    }
    match request.uri().path() {
        "/healthz" => reply(StatusCode::OK, "text/plain", "ok\n".into()),
        "/ready" => {
            if stats.ready.get() == 1 {
                reply(StatusCode::OK, "text/plain", "ready\n".into())
            } else {
                reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "not ready\n".into())
            }
        }
        "/config_dump" => {
            let mut dump = config_dump(routing);
            // The quota policies that can match at this proxy, as its request path
            // holds them: names in the order received, and the collector's revision.
            let policies = quota.policies();
            let names: Vec<&str> = policies.policies.iter().map(|p| p.spec.name.as_str()).collect();
            dump["quota_policies"] = serde_json::json!({ "revision": policies.revision, "names": names });
            let body = serde_json::to_string_pretty(&dump).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"));
            reply(StatusCode::OK, "application/json", body)
        }
        "/stats/prometheus" => reply(StatusCode::OK, "text/plain; version=0.0.4; charset=utf-8", stats.render()),
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found\n".into()),
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::plain(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    response
}
