//! The request path under route rules: a rule for a prefix holds for every spelling
//! of the path (Istio's default path normalization), and malformed targets are refused.

use std::time::Duration;

use crate::routing::{documents, virtual_service};
use crate::routing_support::*;

/// ratings v1 behind the calling proxy, with a rule that aborts the requests `matches`
/// (YAML of a route's `match` entry) with `status` and sends the others to v1.
async fn abort_then_ratings_v1(matches: &str, status: u16, sampling: f64) -> RoutingMesh {
    let http = format!(
        "  - match:\n{matches}    fault:\n      abort:\n        httpStatus: {status}\n        percentage:\n          value: 100.0\n    \
         route:\n    - destination:\n        host: ratings\n        subset: v1\n  - route:\n    - destination:\n        host: ratings\n        subset: v1\n"
    );
    let rules = documents(&[&virtual_service("v1beta1", "ratings", &http), &subsets_rule("ratings", &["v1"], "")]);
    start_routing(vec![app("ratings", "v1", Behaviour::OK)], &rules, sampling).await
}

/// A rule for `/admin` holds for every spelling of that path (dot segments, escaped
/// letters), as under Istio's default path normalization, and the app receives the
/// normalized path; an authority-form target and an escaped NUL are refused;
/// `x-forwarded-proto` is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prefix_rule_holds_for_every_spelling_of_its_path() {
    let mesh = abort_then_ratings_v1("    - uri:\n        prefix: /admin\n", 403, 0.0).await;
    let outbound = mesh.proxy.addresses.outbound;
    let get = |target: &str| format!("GET {target} HTTP/1.1\r\nHost: ratings:9080\r\nConnection: close\r\n\r\n");
    for path in ["/admin/x", "/public/../admin/x", "/./admin/x", "/%61dmin/x", "/a/%2e%2e/admin?q=1", "/x\\..\\admin", "/%41\u{e9}/../admin"] {
        let outcome = raw_exchange(outbound, get(path).as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(outcome.status_line, "HTTP/1.1 403 Forbidden", "{path}: {}", outcome.head);
    }
    assert_eq!(mesh.app("ratings-v1").requests(), 0, "no spelling of /admin reached the app");
    let outcome = raw_exchange(outbound, get("/public/./x/../page?a=%2e").as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(outcome.status_line, "HTTP/1.1 200 OK", "{}", outcome.head);
    let hits = mesh.app("ratings-v1").hits.lock().clone();
    assert_eq!(hits.iter().map(|h| h.path.as_str()).collect::<Vec<_>>(), ["/public/page"], "the query is kept as sent");
    // Authority form is for CONNECT only (RFC 9112 §3.2.3).
    let outcome = raw_exchange(outbound, b"GET ratings:9080 HTTP/1.1\r\nHost: ratings\r\nConnection: close\r\n\r\n", Duration::from_secs(5)).await;
    assert_eq!(outcome.status_line, "HTTP/1.1 400 Bad Request", "{}", outcome.head);
    // So is an escaped NUL, as Envoy's path normalization refuses it.
    let outcome = raw_exchange(outbound, get("/page%00.html").as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(outcome.status_line, "HTTP/1.1 400 Bad Request", "{}", outcome.head);
    assert_eq!(mesh.app("ratings-v1").requests(), 1);
    // Request heads are bounded at 64 KiB, as HTTP/2's header lists at 60 KiB.
    for (bytes, status) in [(50_000, "HTTP/1.1 200 OK"), (70_000, "HTTP/1.1 431 Request Header Fields Too Large")] {
        let request = format!("GET /page HTTP/1.1\r\nHost: ratings:9080\r\nx-big: {}\r\nConnection: close\r\n\r\n", "a".repeat(bytes));
        let outcome = raw_exchange(outbound, request.as_bytes(), Duration::from_secs(5)).await;
        assert_eq!(outcome.status_line, status, "a {bytes}-byte header");
    }
}

/// Spans report the path the rules saw (the normalized one, as the app receives it),
/// and an HTTP/2 header value with surrounding whitespace, which a match would read as
/// another value than the app does, is refused as malformed (RFC 9113 §8.2.1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_report_the_normalized_path_and_padded_http2_values_are_refused() {
    let mesh = abort_then_ratings_v1("    - headers:\n        x-block:\n          prefix: yes\n", 460, 100.0).await;
    let outbound = mesh.proxy.addresses.outbound;
    let request = "GET /public/../page/x?a=1 HTTP/1.1\r\nHost: ratings:9080\r\nConnection: close\r\n\r\n";
    let outcome = raw_exchange(outbound, request.as_bytes(), Duration::from_secs(5)).await;
    assert_eq!(outcome.status_line, "HTTP/1.1 200 OK", "{}", outcome.head);
    let spans = mesh.collector.wait_spans(1).await;
    let path = spans[0].attributes.iter().find(|kv| kv.key == "url.path").and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
        meshtel_model::otlp::common::v1::any_value::Value::StringValue(s) => Some(s.clone()),
        _ => None,
    });
    assert_eq!(path.as_deref(), Some("/page/x"), "{:?}", spans[0].attributes);

    let h2 = crate::support::h2c_client();
    for padded in [" yes", "\tyes", "yes ", "yes\t"] {
        let outcome = mesh.call(&h2, "ratings", "/page", &[("x-block", padded)]).await;
        assert_eq!(outcome.status, 400, "{padded:?}: {}", outcome.body);
        assert!(outcome.body.contains("header x-block begins or ends with whitespace"), "{padded:?}: {}", outcome.body);
    }
    assert_eq!(mesh.call(&h2, "ratings", "/page", &[("x-block", "yes")]).await.status, 460);
    assert_eq!(mesh.call(&h2, "ratings", "/page", &[("x-other", "no")]).await.status, 200);
    assert_eq!(mesh.app("ratings-v1").requests(), 2, "no padded request reached the app");
}
