//! The admin listener: `/healthz`, `/ready`, `/stats/prometheus`, `/config_dump`
//! (the traffic rules, clusters and quota policies in force, JSON). Bound to a loopback
//! address (the default), it answers only requests naming a loopback host, so that a
//! web page cannot read it by DNS rebinding (`meshtel_model::loopback_host`).

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use meshtel_model::loopback_host;

use crate::body::ResponseBody;
use crate::quota::QuotaEnforcer;
use crate::routing::{SharedRouting, config_dump};
use crate::stats::Stats;

/// Answers one admin request; with `loopback_only` (the listener is bound to a loopback
/// address) a request naming another host gets 403.
pub fn handle_admin<B>(stats: &Stats, routing: &SharedRouting, quota: &QuotaEnforcer, loopback_only: bool, request: &Request<B>) -> Response<ResponseBody> {
    if loopback_only && !names_loopback(request) {
        return reply(StatusCode::FORBIDDEN, "text/plain", "this admin listener answers loopback host names only (localhost, 127.0.0.1, [::1])\n".into());
    }
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

/// Whether the request's authority or `Host` names a loopback host (none at all does:
/// browsers always send one).
fn names_loopback<B>(request: &Request<B>) -> bool {
    match loopback_host::requested_host(request) {
        None => true,
        Some(Ok(host)) => loopback_host::is_loopback(host),
        Some(Err(())) => false,
    }
}

fn reply(status: StatusCode, content_type: &'static str, body: String) -> Response<ResponseBody> {
    let mut response = Response::new(ResponseBody::plain(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(header::CONTENT_TYPE, header::HeaderValue::from_static(content_type));
    // A browser takes each body as the type it is sent with, as on meshtel's own ports.
    response.headers_mut().insert(header::X_CONTENT_TYPE_OPTIONS, header::HeaderValue::from_static("nosniff"));
    response
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpStream;

    use crate::test_support::*;

    const MESH: &str = "services:\n  - name: reviews\n    endpoints: []\n";

    /// The status line of `GET path` naming `host` on the admin port.
    async fn status(proxy: &TestProxy, path: &str, host: &str) -> String {
        answer(proxy, path, host).await.lines().next().unwrap_or_default().to_owned()
    }

    /// The whole answer to `GET path` naming `host` on the admin port.
    async fn answer(proxy: &TestProxy, path: &str, host: &str) -> String {
        let mut stream = TcpStream::connect(proxy.addresses.admin).await.expect("admin");
        let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.expect("request");
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.expect("answer");
        String::from_utf8_lossy(&answer).into_owned()
    }

    #[tokio::test]
    async fn a_loopback_admin_port_answers_loopback_hosts_only() {
        let proxy = start_proxy(MESH, "reviews", None, |_| {}).await;
        let port = proxy.addresses.admin.port();
        for host in [format!("127.0.0.1:{port}"), format!("localhost:{port}"), "[::1]".to_owned()] {
            assert_eq!(status(&proxy, "/config_dump", &host).await, "HTTP/1.1 200 OK", "{host}");
        }
        for path in ["/config_dump", "/stats/prometheus", "/healthz"] {
            assert_eq!(status(&proxy, path, "rebind.attacker.test").await, "HTTP/1.1 403 Forbidden", "{path}");
        }
        for path in ["/config_dump", "/stats/prometheus", "/nowhere"] {
            let head = answer(&proxy, path, "127.0.0.1").await.to_ascii_lowercase();
            assert!(head.contains("x-content-type-options: nosniff"), "{path}: {head}");
        }
    }
}
