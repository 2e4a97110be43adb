#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use axum::body::Body;
use axum::http::{HeaderMap, Request};
use tower::ServiceExt;

use super::*;
use crate::QueryConfig;
use crate::testing::{MemoryReader, app, app_with};

async fn headers(app: &Router, uri: &str) -> (StatusCode, HeaderMap) {
    let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    (response.status(), response.headers().clone())
}

fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .map(|value| value.to_str().unwrap())
        .unwrap_or_default()
}

#[tokio::test]
async fn ui_pages_carry_a_content_security_policy_and_frame_protection() {
    let app = app(MemoryReader::default());
    for page in [
        "/",
        "/search",
        "/trace/0123",
        "/graph",
        "/metrics",
        "/quotas",
    ] {
        let (status, headers) = headers(&app, page).await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let csp = header_text(&headers, "content-security-policy");
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "object-src 'none'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
            "img-src 'self' data:",
            "connect-src 'self'",
        ] {
            assert!(csp.contains(directive), "{page}: {directive} not in {csp}");
        }
        assert!(!csp.contains("unsafe"), "{page}: {csp}");
        assert_eq!(header_text(&headers, "x-frame-options"), "DENY", "{page}");
        assert_eq!(
            header_text(&headers, "referrer-policy"),
            "no-referrer",
            "{page}"
        );
        assert_eq!(
            header_text(&headers, "x-content-type-options"),
            "nosniff",
            "{page}"
        );
    }
}

/// A page the UI does not have is the UI with a 404 (it shows "Page not found" with
/// the menu), not an empty body; the API and assets keep their own 404s.
#[tokio::test]
async fn unknown_pages_are_the_ui_with_a_404() {
    let app = app(MemoryReader::default());
    for page in ["/nosuchpage", "/trace/", "/search/extra"] {
        let request = Request::builder().uri(page).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::NOT_FOUND, "{page}");
        let headers = response.headers().clone();
        assert!(
            header_text(&headers, "content-type").starts_with("text/html"),
            "{page}"
        );
        assert!(header_text(&headers, "content-security-policy").contains("script-src 'self'"));
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        assert!(
            String::from_utf8_lossy(&body).contains("<nav"),
            "{page}: the UI's menu"
        );
    }
    let request = Request::builder()
        .method("POST")
        .uri("/nosuchpage")
        .body(Body::empty())
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    let (status, api) = headers(&app, "/api/nosuch").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(!header_text(&api, "content-type").starts_with("text/html"));
    let (status, _) = headers(&app, "/static/nosuch.js").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // The page only where it gets its security headers.
    let (status, _) = headers(&app, "/static/index.html").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

/// Every answer, JSON, assets and errors alike, says `nosniff` (once).
#[tokio::test]
async fn every_answer_says_nosniff() {
    let app = app(MemoryReader::default());
    for uri in [
        "/api/services",
        "/api/v3/services",
        "/api/nope",
        "/api/traces/zz",
        "/static/js/app.js",
        "/static/nope.js",
        "/not-a-page",
    ] {
        let (_, headers) = headers(&app, uri).await;
        let values: Vec<_> = headers.get_all("x-content-type-options").iter().collect();
        assert_eq!(values, ["nosniff"], "{uri}");
    }
    let nested = app_with(
        std::sync::Arc::new(MemoryReader::default()),
        &QueryConfig {
            base_path: "/jaeger".into(),
            ..QueryConfig::default()
        },
    );
    for uri in ["/jaeger/", "/jaeger/search", "/jaeger/api/services"] {
        let (status, headers) = headers(&nested, uri).await;
        assert_eq!(status, StatusCode::OK, "{uri}");
        assert_eq!(
            header_text(&headers, "x-content-type-options"),
            "nosniff",
            "{uri}"
        );
    }
    let (_, headers) = headers(&nested, "/jaeger/").await;
    assert!(header_text(&headers, "content-security-policy").contains("frame-ancestors 'none'"));
}

/// The hash in the policy is that of the one `<style>` element the vendored cytoscape
/// inserts: updating cytoscape so that it inserts another fails here first.
#[test]
fn the_style_hash_matches_the_vendored_cytoscape() {
    use base64::Engine as _;
    use sha2::Digest as _;
    let cytoscape = Assets::get("vendor/cytoscape/cytoscape.esm.min.js").unwrap();
    let text = String::from_utf8_lossy(&cytoscape.data);
    assert!(
        text.contains(r#"s="__________cytoscape_container""#)
            && text.contains(r#"u.textContent="."+s+" { position: relative; }""#),
        "cytoscape's inserted stylesheet changed: update the hash in CONTENT_SECURITY_POLICY"
    );
    let inserted = ".__________cytoscape_container { position: relative; }";
    let hash = base64::engine::general_purpose::STANDARD.encode(sha2::Sha256::digest(inserted));
    assert!(
        CONTENT_SECURITY_POLICY.contains(&format!("style-src 'self' 'sha256-{hash}'")),
        "{CONTENT_SECURITY_POLICY}"
    );
}

/// The page carries the base path and the server's search limit, which the search form
/// offers as its highest (not a number of its own).
#[tokio::test]
async fn the_page_carries_the_base_path_and_the_search_limit() {
    let nested = app_with(
        std::sync::Arc::new(MemoryReader::default()),
        &QueryConfig {
            base_path: "/jaeger".into(),
            max_search_limit: 3,
            ..QueryConfig::default()
        },
    );
    for uri in ["/jaeger/", "/jaeger/search"] {
        let request = Request::builder().uri(uri).body(Body::empty()).unwrap();
        let response = nested.clone().oneshot(request).await.unwrap();
        let body = axum::body::to_bytes(response.into_body(), 1 << 20)
            .await
            .unwrap();
        let html = String::from_utf8(body.to_vec()).unwrap();
        assert!(
            html.contains(r#"<meta name="meshtel-max-search-limit" content="3">"#),
            "{uri}: {html}"
        );
        assert!(
            html.contains(r#"<meta name="meshtel-base" content="/jaeger">"#),
            "{uri}"
        );
        assert!(!html.contains("__MESHTEL_"), "{uri}: {html}");
    }
}
