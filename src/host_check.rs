//! DNS rebinding guard for meshtel's own HTTP listeners (OTLP HTTP, Zipkin, query).
//!
//! A listener bound to a loopback address is out of the network's reach, but not out
//! of a browser's: a web page can point a name it controls at 127.0.0.1 and then talk
//! to the port as its own origin, reading traces and changing the demo's scenario. So
//! while a listener is bound to a loopback address, a request must name a loopback
//! host (`localhost`, `*.localhost`, `127.0.0.0/8`, `[::1]`) or one of
//! `[http] allowed_hosts` in its `Host` header (or HTTP/2 `:authority`); anything else
//! is answered 403 with a JSON body saying which setting admits it, and counted in
//! `meshtel_http_requests_refused_total{listener,reason="host"}`. A request without a
//! host is let through: browsers always send one. A listener bound to any other
//! address (`0.0.0.0`, a pod's address) is reached under names meshtel cannot know, and
//! is not checked.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meshtel_model::log_window::Throttled;
use meshtel_model::loopback_host;
use prometheus::IntCounter;
use tracing::{debug, info};

/// Wraps `app` with the guard when `local` is a loopback address; `allowed` are the
/// configured extra host names, `refused` counts what it turns away.
pub fn guard(
    app: axum::Router,
    local: SocketAddr,
    allowed: &[String],
    refused: IntCounter,
    listener: &'static str,
) -> axum::Router {
    if !local.ip().is_loopback() {
        return app;
    }
    // Compared as requests' hosts are: lower case, without a trailing dot.
    let allowed: Arc<[String]> = allowed
        .iter()
        .map(|h| loopback_host::normalize(h))
        .collect();
    // Told at most once per interval: a page that rebinds a name, or a proxy that needs
    // its name in `allowed_hosts`, repeats without bound.
    let refusals = Throttled::new(move |refused, last_host: &str| {
        info!(
            listener,
            refused,
            last_host,
            at_most_every = "10s",
            "requests refused (403) for a host this loopback listener does not answer, since the last line: add a name of yours to [http] allowed_hosts"
        );
    });
    app.layer(axum::middleware::from_fn(move |request: Request, next: Next| {
        let verdict = check(&request, &allowed);
        let refused = refused.clone();
        let refusals = refusals.clone();
        async move {
            match verdict {
                Ok(()) => next.run(request).await,
                Err(host) => {
                    refused.inc();
                    debug!(listener, %host, "request for a host this loopback listener does not answer");
                    refusals.note(format_args!("{host:.64}"));
                    refusal(&host)
                }
            }
        }
    }))
}

/// `Err(host)` when the request names a host the guard does not admit (an unreadable
/// `Host` admits nothing).
fn check(request: &Request, allowed: &[String]) -> Result<(), String> {
    match loopback_host::requested_host(request) {
        None => Ok(()),
        Some(Ok(host)) if admitted(host, allowed) => Ok(()),
        Some(Ok(host)) => Err(host.to_owned()),
        Some(Err(())) => Err("(not text)".to_owned()),
    }
}

fn admitted(host: &str, allowed: &[String]) -> bool {
    loopback_host::is_loopback(host) || allowed.contains(&loopback_host::normalize(host))
}

fn refusal(host: &str) -> Response {
    let message = format!(
        "host {host:?} is not served here: this listener is bound to a loopback address \
         and answers loopback names only (a guard against DNS rebinding); to reach it \
         under this name, add it to [http] allowed_hosts"
    );
    let body = serde_json::json!({ "error": message }).to_string();
    (
        StatusCode::FORBIDDEN,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Loopback names themselves are `meshtel_model::loopback_host`'s to test; here,
    /// the configured names beside them.
    #[test]
    fn allowed_hosts_are_admitted_beside_loopback_names() {
        let allowed = vec![
            loopback_host::normalize("Tracing.Example.com."),
            loopback_host::normalize("[FD00::1]"),
        ];
        for host in [
            "localhost",
            "[::1]",
            "tracing.example.com",
            "TRACING.example.com.",
            "fd00::1",
            "[fd00::1]",
        ] {
            assert!(admitted(host, &allowed), "{host}");
        }
        for host in [
            "rebind.attacker.test",
            "example.com",
            "sub.tracing.example.com",
        ] {
            assert!(!admitted(host, &allowed), "{host}");
        }
    }
}
