//! meshtel's query service: the Jaeger-compatible HTTP API over the trace store.
//!
//! ```text
//!                      ┌─ /api/...    (v1: Grafana, Jaeger UI ≤ 2.14) ─┐
//!  HTTP ─► base_path ──┤                                                ├─► JaegerService ─► TraceReader
//!                      └─ /api/v3/... (v3: newer Jaeger UI)            ─┘
//! ```
//!
//! The binary calls [`router`] with a [`TraceReader`] and a [`QueryConfig`] and serves
//! the result with `axum::serve` on an already-bound listener.
//!
//! - [`jaeger`]: API v1, the Jaeger JSON model and the OTLP → Jaeger conversion;
//! - [`api_v3`]: API v3 (OTLP JSON);
//! - [`graph`]: the service graph (Kiali-style JSON, Graphviz DOT) over edge rollups,
//!   enabled by [`router_with_graph`];
//! - [`metrics`]: request rate, error rate and latency per service and as time series
//!   (`/api/metrics/...`) over the same edge rollups, enabled with the graph;
//! - [`quotas`]: quota policy administration (`/api/quotas`), [`quota_router`], to
//!   merge into the router;
//! - [`error`]: [`ApiError`], the one error type, and its HTTP bodies.

pub mod api_v3;
pub mod error;
pub mod graph;
pub mod jaeger;
pub mod metrics;
pub mod quotas;
pub mod read_limit;
pub mod response;
pub mod ui;
pub mod unread;

pub use read_limit::ReadLimit;

#[cfg(test)]
mod testing;

use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath};
use axum::http::{HeaderValue, Request, header};
use axum::response::Response;
use axum::routing::any;
use meshtel_model::{GraphReader, TraceReader};
use serde::{Deserialize, Serialize};
use tower_http::compression::predicate::{NotForContentType, Predicate, SizeAbove};
use tower_http::compression::{CompressionLayer, CompressionLevel};
use tower_http::trace::TraceLayer;

pub use error::{AdminError, ApiError, V3Error};
pub use jaeger::JaegerService;
pub use quotas::{AdminConfig, ensure_admin_token, quota_router};

/// Largest request body the query API reads (`PUT /api/quotas/{name}`,
/// `POST /api/transform`): 2 MiB, axum's default, stated here so that the 413 answer
/// can name it.
pub const MAX_REQUEST_BODY_BYTES: usize = 2 * 1024 * 1024;

/// Jaeger's message when its metrics store (SPM) is disabled, answered with 501 on
/// `/api/metrics/{latencies,calls,errors,minstep}`: meshtel has no SPM metrics.
pub const METRICS_DISABLED: &str = "metrics querying is currently disabled";

/// Settings of the query API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QueryConfig {
    /// URL path prefix for every endpoint, like Jaeger's `--query.base-path`: with
    /// `"/jaeger"` the API answers on `/jaeger/api/...`. Empty (the default) serves at
    /// the root. Leading and trailing slashes are normalised.
    pub base_path: String,
    /// Upper bound on the number of traces one search returns, whatever `limit` asks
    /// for. Searches without `limit` return Jaeger's default of 100. Also the most
    /// `traceID` parameters one `/api/traces` fetch takes.
    pub max_search_limit: usize,
    /// Upper bound on the spans one answer holds (a trace, a fetch of several, a
    /// search): past it the largest traces are cut, as evenly as the bound allows, to
    /// their earliest spans, and carry a warning that says so.
    pub max_spans_per_response: usize,
    /// Trace reads (searches and fetches, v1 and v3) running at once; one
    /// more waits its turn up to 30 s, then is answered 503. With
    /// `max_spans_per_response` it bounds the memory reads take.
    pub max_concurrent_reads: usize,
}

/// Default of [`QueryConfig::base_path`]: serve at the root.
pub fn default_base_path() -> String {
    String::new()
}

/// Default of [`QueryConfig::max_search_limit`].
pub fn default_max_search_limit() -> usize {
    1500
}

/// Default of [`QueryConfig::max_concurrent_reads`].
pub fn default_max_concurrent_reads() -> usize {
    4
}

/// Default of [`QueryConfig::max_spans_per_response`]: about 130 MB of memory at the
/// peak of one answer.
pub fn default_max_spans_per_response() -> usize {
    50_000
}

impl Default for QueryConfig {
    fn default() -> Self {
        QueryConfig {
            base_path: default_base_path(),
            max_search_limit: default_max_search_limit(),
            max_spans_per_response: default_max_spans_per_response(),
            max_concurrent_reads: default_max_concurrent_reads(),
        }
    }
}

impl QueryConfig {
    /// Checks the settings; call it at startup, before [`router`].
    pub fn validate(&self) -> Result<(), ApiError> {
        // A URL (`http://x/jaeger`) or a space would make a prefix no request can reach.
        let path_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_' | '~' | '/');
        let dots = self.base_path.split('/').any(|s| s == "." || s == "..");
        if !self.base_path.chars().all(path_char) || dots {
            return Err(ApiError::InvalidConfig(format!(
                "[query] base_path (--query-base-path) {:?} must be a URL path such as /jaeger: \
                 letters, digits, '-', '.', '_', '~' and '/', without . or .. segments",
                self.base_path
            )));
        }
        if self.max_search_limit == 0 {
            return Err(ApiError::InvalidConfig(
                "[query] max_search_limit must be at least 1".into(),
            ));
        }
        if self.max_spans_per_response < self.max_search_limit {
            return Err(ApiError::InvalidConfig(format!(
                "[query] max_spans_per_response ({}) must be at least [query] \
                 max_search_limit ({}): every trace of an answer gets at least one span",
                self.max_spans_per_response, self.max_search_limit
            )));
        }
        if self.max_concurrent_reads == 0 {
            return Err(ApiError::InvalidConfig(
                "[query] max_concurrent_reads must be at least 1".into(),
            ));
        }
        Ok(())
    }

    /// The base path as a route prefix (`/a/b`), or `None` for the root. Characters
    /// that [`QueryConfig::validate`] rejects are dropped rather than panicking.
    pub fn normalized_base_path(&self) -> Option<String> {
        let cleaned: String = self
            .base_path
            .chars()
            .filter(|c| !matches!(c, '{' | '}' | '*' | '?' | '#'))
            .collect();
        let segments: Vec<&str> = cleaned.split('/').filter(|s| !s.is_empty()).collect();
        (!segments.is_empty()).then(|| format!("/{}", segments.join("/")))
    }
}

/// Wall-clock time, injected so that tests control default search windows.
pub trait Clock: Send + Sync + 'static {
    /// Now, Unix nanoseconds.
    fn now_unix_nano(&self) -> u64;
}

/// The system clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_unix_nano(&self) -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
            .unwrap_or(0)
    }
}

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// The query domain.
    pub jaeger: Arc<JaegerService>,
}

/// The whole query API (v1 and v3) under `config.base_path`, with request tracing.
pub fn router(reader: Arc<dyn TraceReader>, config: &QueryConfig) -> Router {
    router_with_clock(reader, Arc::new(SystemClock), config)
}

/// [`router`] with an explicit clock.
pub fn router_with_clock(
    reader: Arc<dyn TraceReader>,
    clock: Arc<dyn Clock>,
    config: &QueryConfig,
) -> Router {
    router_with_graph_and_clock(reader, None, None, clock, config)
}

/// [`router`] plus the service graph API ([`graph`]) and the metrics API ([`metrics`])
/// over `edges`, which also answers `/api/dependencies` whenever the window has edges,
/// and `extra` routes (the quota administration API, [`quota_router`]) under the same
/// base path and tracing; trace reads bounded by `reads`.
pub fn router_with_graph(
    reader: Arc<dyn TraceReader>,
    edges: Option<Arc<dyn GraphReader>>,
    extra: Option<Router>,
    config: &QueryConfig,
    reads: ReadLimit,
) -> Router {
    build_router(reader, edges, extra, Arc::new(SystemClock), config, reads)
}

/// [`router_with_graph`] with an explicit clock.
pub fn router_with_graph_and_clock(
    reader: Arc<dyn TraceReader>,
    edges: Option<Arc<dyn GraphReader>>,
    extra: Option<Router>,
    clock: Arc<dyn Clock>,
    config: &QueryConfig,
) -> Router {
    let reads = ReadLimit::new(config.max_concurrent_reads, read_limit::READ_WAIT);
    build_router(reader, edges, extra, clock, config, reads)
}

fn build_router(
    reader: Arc<dyn TraceReader>,
    edges: Option<Arc<dyn GraphReader>>,
    extra: Option<Router>,
    clock: Arc<dyn Clock>,
    config: &QueryConfig,
    reads: ReadLimit,
) -> Router {
    let reader: Arc<dyn TraceReader> = match &edges {
        Some(edges) => Arc::new(graph::EdgeDependencies::new(reader, edges.clone())),
        None => reader,
    };
    let state = AppState {
        jaeger: Arc::new(JaegerService::new(
            reader,
            clock.clone(),
            config.max_search_limit,
            config.max_spans_per_response,
        )),
    };
    let mut api: Router = jaeger::router().merge(api_v3::router()).with_state(state);
    if let Some(edges) = edges {
        api = api.merge(graph::router(Arc::new(graph::GraphService::new(
            edges.clone(),
            clock.clone(),
        ))));
        api = api.merge(metrics::router(Arc::new(metrics::MetricsService::new(
            edges, clock,
        ))));
    }
    if let Some(extra) = extra {
        api = api.merge(extra);
    }
    // What no route above serves under /api answers in the API's JSON error shape, not
    // with axum's empty 404: Jaeger's SPM endpoints 501 as Jaeger answers with its
    // metrics store disabled, any other path 404.
    api = api.route_layer(axum::middleware::from_fn_with_state(
        reads,
        read_limit::limit_reads,
    ));
    api = api
        .route("/api/metrics/{kind}", any(metrics_disabled))
        .route("/api/v3/{*rest}", any(v3_not_found))
        .route("/api/{*rest}", any(api_not_found));
    api = api.merge(ui::router(
        config.normalized_base_path().as_deref().unwrap_or(""),
        config.max_search_limit,
    ));
    let app = match config.normalized_base_path() {
        Some(prefix) => Router::new().nest(&prefix, api).route(
            &format!("{prefix}/"),
            ui::index_route(&prefix, config.max_search_limit),
        ),
        None => api,
    };
    // Probes at the root whatever the base path: a `meshtel query` deployment has no
    // OTLP port to probe.
    let app = app
        .route("/healthz", axum::routing::get(ok))
        .route("/readyz", axum::routing::get(ok));
    app.layer(DefaultBodyLimit::max(MAX_REQUEST_BODY_BYTES))
        .layer(axum::middleware::map_response(no_sniffing))
        .layer(compression())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(|request: &Request<_>| {
                    // Route templates, never raw paths: trace ids must not become span
                    // fields.
                    let route = request
                        .extensions()
                        .get::<MatchedPath>()
                        .map_or("unmatched", MatchedPath::as_str);
                    tracing::info_span!("query_request", method = %request.method(), route)
                })
                // A 5xx that is an answer (quota usage on a query process, a read
                // refused under load) is no error to log; one that is a failure is
                // logged with its cause where it happens (`ApiError::public_message`).
                .on_failure(
                    tower_http::trace::DefaultOnFailure::new().level(tracing::Level::DEBUG),
                ),
        )
}

/// Smallest answer sent gzip-compressed: below it the gzip header and the work cost
/// more than they save.
pub const COMPRESS_MIN_BYTES: u16 = 1024;

/// Answers of [`COMPRESS_MIN_BYTES`] and more go gzip-compressed to a client that sends
/// `Accept-Encoding: gzip` (Grafana, Jaeger UI and browsers do; jaeger-query
/// compresses the same way), at gzip's fastest level: a trace's JSON shrinks about
/// twentyfold, and a large answer arrives no later than uncompressed even on loopback.
fn compression() -> CompressionLayer<impl Predicate> {
    let predicate = SizeAbove::new(COMPRESS_MIN_BYTES)
        .and(NotForContentType::GRPC)
        .and(NotForContentType::IMAGES)
        .and(NotForContentType::SSE);
    CompressionLayer::new()
        .quality(CompressionLevel::Fastest)
        .compress_when(predicate)
}

/// `X-Content-Type-Options: nosniff` on every answer, JSON and UI alike: a browser
/// takes each body as the type it is sent with, never guessing script or HTML from it.
async fn no_sniffing(mut response: Response) -> Response {
    response
        .headers_mut()
        .entry(header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(HeaderValue::from_static("nosniff"));
    response
}

async fn metrics_disabled() -> ApiError {
    ApiError::NotImplemented(METRICS_DISABLED.to_string())
}

async fn api_not_found(request: Request<axum::body::Body>) -> ApiError {
    ApiError::NotFound(format!(
        "no API endpoint {} {}",
        request.method(),
        request.uri().path()
    ))
}

async fn v3_not_found(request: Request<axum::body::Body>) -> V3Error {
    V3Error(ApiError::NotFound(format!(
        "no API endpoint {} {}",
        request.method(),
        request.uri().path()
    )))
}

/// `GET /healthz`, `GET /readyz` on the query port: the port answers once the query
/// service is up (its index open).
async fn ok() -> &'static str {
    "ok"
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips() {
        let config = QueryConfig::default();
        let text = serde_json::to_string(&config).unwrap();
        assert_eq!(serde_json::from_str::<QueryConfig>(&text).unwrap(), config);
        assert_eq!(serde_json::from_str::<QueryConfig>("{}").unwrap(), config);
        config.validate().unwrap();
        assert!(serde_json::from_str::<QueryConfig>(r#"{"nope":1}"#).is_err());
    }

    #[test]
    fn base_path_normalisation() {
        let with = |p: &str| QueryConfig {
            base_path: p.into(),
            ..QueryConfig::default()
        };
        assert_eq!(with("").normalized_base_path(), None);
        assert_eq!(with("/").normalized_base_path(), None);
        assert_eq!(
            with("jaeger/").normalized_base_path().as_deref(),
            Some("/jaeger")
        );
        assert_eq!(
            with("//a//b/").normalized_base_path().as_deref(),
            Some("/a/b")
        );
        assert!(with("/{x}").validate().is_err());
        for refused in ["http://x/jaeger", "/jae ger", "/a/../b", "./x", "/a?b"] {
            let error = with(refused).validate().unwrap_err().to_string();
            assert!(error.contains("must be a URL path such as /jaeger"), "{refused}: {error}");
        }
        for accepted in ["", "/", "jaeger/", "//a//b/", "/tracing/jaeger-v1.2_x~"] {
            with(accepted).validate().unwrap();
        }
        assert!(
            QueryConfig {
                max_search_limit: 0,
                ..QueryConfig::default()
            }
            .validate()
            .is_err()
        );
        // Every trace of an answer gets at least one span.
        let spans = |max_spans_per_response| QueryConfig {
            max_spans_per_response,
            max_search_limit: 20,
            ..QueryConfig::default()
        };
        assert_eq!(
            spans(19).validate().map_err(|e| e.to_string()),
            Err("[query] max_spans_per_response (19) must be at least [query] \
                 max_search_limit (20): every trace of an answer gets at least one span"
                .to_string())
        );
        assert!(spans(20).validate().is_ok());
    }
}
