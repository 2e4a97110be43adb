//! The web UI: the files of `ui/` served at `/` (and under the base path).
//!
//! Release builds embed every file at compile time (`rust-embed`), so `cargo run
//! --release -- serve` needs nothing else; debug builds read them from `ui/` at run time,
//! so a reload shows an edit. Page URLs (`/search`, `/trace/{id}`, `/graph`, `/metrics`,
//! `/quotas`) all answer `index.html` — the page's script routes on the path — with the
//! base path written into it; assets are under `/static/`, revalidated by ETag.
//!
//! The page carries a Content-Security-Policy that allows what the UI needs and no
//! more ([`CONTENT_SECURITY_POLICY`]), is not to be framed, and sends no referrer: the
//! UI shows span data anyone who can send spans wrote, so a mistake in escaping it
//! must not become script.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rust_embed::RustEmbed;

/// Everything under `ui/` but its tests and tooling.
#[derive(RustEmbed)]
#[folder = "../ui/"]
#[exclude = "tests/*"]
#[exclude = "node_modules/*"]
#[exclude = "*.sh"]
struct Assets;

/// The UI's Content-Security-Policy. Scripts are the UI's own modules and the vendored
/// libraries, all under `/static/` (no inline script, `eval` or worker); styles are our
/// stylesheets plus the one `<style>` element cytoscape inserts
/// (`.__________cytoscape_container { position: relative; }`), allowed by its hash (a
/// unit test checks it against the vendored file, and the browser test fails on any
/// violation); inline `style="..."` attributes are refused, so the scripts set styles
/// through the DOM. Images are ours and the empty `data:,` favicon; fetches go to the
/// same origin only.
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
    style-src 'self' 'sha256-pgvDUBa4IjFA2yuSJ2cqcyxmNYJMborsd0ORcRv9vw8='; \
    img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; \
    form-action 'self'; frame-ancestors 'none'";

#[derive(Clone)]
struct UiState {
    base: String,
    /// `[query] max_search_limit`: the most results the search form offers.
    max_search_limit: usize,
}

impl UiState {
    fn new(base: &str, max_search_limit: usize) -> Self {
        UiState {
            base: base.trim_end_matches('/').to_owned(),
            max_search_limit,
        }
    }
}

/// The UI routes; `base` is the base path the router is nested under ("" for none),
/// `max_search_limit` the server's (`[query] max_search_limit`), which the search form
/// offers as its highest limit.
pub fn router(base: &str, max_search_limit: usize) -> Router {
    let state = UiState::new(base, max_search_limit);
    Router::new()
        .route("/", get(index))
        .route("/search", get(index))
        .route("/trace/{id}", get(index))
        .route("/graph", get(index))
        .route("/metrics", get(index))
        .route("/quotas", get(index))
        .route("/static/{*path}", get(asset))
        // Any other page: the UI with a 404 status, which shows its own "Page not
        // found" with the menu and a way back, rather than the browser's blank page.
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(State(state): State<UiState>, method: axum::http::Method) -> Response {
    if method != axum::http::Method::GET && method != axum::http::Method::HEAD {
        return StatusCode::NOT_FOUND.into_response();
    }
    let mut response = index(State(state)).await;
    *response.status_mut() = StatusCode::NOT_FOUND;
    response
}

/// The UI's start page alone, for `<base>/` (a nested router serves `<base>` but not
/// `<base>/`).
pub fn index_route(base: &str, max_search_limit: usize) -> axum::routing::MethodRouter {
    get(index).with_state(UiState::new(base, max_search_limit))
}

async fn index(State(state): State<UiState>) -> Response {
    let Some(file) = Assets::get("index.html") else {
        return (StatusCode::NOT_FOUND, "the UI is not built into this binary").into_response();
    };
    let html = String::from_utf8_lossy(&file.data)
        .replace("__MESHTEL_BASE__", &state.base)
        .replace(
            "__MESHTEL_MAX_SEARCH_LIMIT__",
            &state.max_search_limit.to_string(),
        );
    (
        [
            (header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8")),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-cache")),
            (header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY)),
            (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
            (header::REFERRER_POLICY, HeaderValue::from_static("no-referrer")),
            (header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff")),
        ],
        html,
    )
        .into_response()
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    // The page itself is served at the UI's routes, with its security headers and base
    // path filled in; not again, without them, as a static file.
    if path.split('/').any(|part| part == ".." || part.is_empty()) || path.ends_with(".html") {
        return StatusCode::NOT_FOUND.into_response();
    }
    let Some(file) = Assets::get(&path) else {
        return (StatusCode::NOT_FOUND, format!("no UI file {path}")).into_response();
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    if headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()) == Some(etag.as_str()) {
        return StatusCode::NOT_MODIFIED.into_response();
    }
    let content_type = file.metadata.mimetype().to_owned();
    let mut response = file.data.into_owned().into_response();
    let response_headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(&content_type) {
        response_headers.insert(header::CONTENT_TYPE, value);
    }
    if let Ok(value) = HeaderValue::from_str(&etag) {
        response_headers.insert(header::ETAG, value);
    }
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

#[cfg(test)]
mod tests;
