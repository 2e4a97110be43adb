//! The service graph API, over edge rollups ([`GraphReader`]):
//!
//! - `GET /api/graph?window=5m&namespace=&service=&responseTime=95&graphType=workload`
//!   → Kiali-style cytoscape JSON: nodes (workloads, services without a workload,
//!   `unknown` for traffic from outside the mesh; apps, versioned apps or services for
//!   Kiali's other `graphType`s, with `injectServiceNodes=true` a service node between
//!   each caller and the workloads answering) and edges with request rates, error
//!   percentages, response-code breakdown and latency;
//! - `GET /api/graph.dot?window=5m` → Graphviz DOT like Istio servicegraph's `/dotgraph`:
//!   also edges idle in the window but used in the hour before it, at 0 requests/s
//!   (servicegraph shows an edge as long as Prometheus has its series), unless
//!   `filter_empty=true`.
//!
//! `window` (aliases `duration`, Kiali's, and `time_horizon`, servicegraph's) is a Go
//! or Prometheus duration (`30s`, `5m`, `1h`, `1d`; a bare integer is seconds), default
//! `5m`; Kiali's `queryTime` (Unix seconds, default now) is when the window ends: the
//! window is `[queryTime - window, queryTime]`, and the answer's `timestamp` is its
//! end. A `queryTime` more than [`QUERY_TIME_SLACK`] ahead of the server's clock is
//! refused; one ahead by less reads as now. Rates are requests per second over the
//! time the window's rollup buckets cover: from the start of the bucket holding the
//! window's start (whole buckets are read) to the end of the one holding its end (or
//! now, for a window ending now), so that steady traffic reads steady at any window.
//! Each edge is counted from one reporter (see [`build`]). `namespace` takes a
//! comma-separated list. A bad parameter is a 400 with Kiali's `application/json`
//! `{"error":"…"}` naming it.
//!
//! [`EdgeDependencies`] makes the Jaeger `/api/dependencies` answer from edges and,
//! for the service pairs no proxy reported, from spans.

pub mod boxes;
pub mod build;
pub mod dot;
pub mod json;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use meshtel_model::duration::{parse_go_duration, parse_prometheus_duration};
use meshtel_model::graph::{Buckets, EdgeRow, EdgeStats, SystemUnixClock, UnixClock};
use meshtel_model::{
    DependencyLink, GraphReader, Operation, SpanKind, Trace, TraceId, TraceQuery, TraceReader,
};

use self::build::{
    CalleeRows, Graph, GraphFilter, GraphShape, GraphType, NodeFocus, one_reporter_per_pair,
};
use self::json::ResponseTime;
use crate::Clock;
use crate::error::{AdminError, ApiError, Result};
use crate::jaeger::params::QueryParams;
use crate::response::json_response;

/// Default graph window.
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(300);
/// Default window on Kiali's paths (`/api/namespaces/...`), Kiali's `duration` default.
pub const KIALI_DEFAULT_WINDOW: Duration = Duration::from_secs(600);
/// Longest graph window (the default edge retention).
pub const MAX_WINDOW: Duration = Duration::from_secs(7 * 24 * 3600);
/// How long before the window the DOT graph looks for idle edges (without
/// `filter_empty=true`).
pub const IDLE_EDGE_LOOKBACK: Duration = Duration::from_secs(3600);
/// How far ahead of the server's clock a `queryTime` may be (the client's clock
/// running ahead) and still read as now.
pub const QUERY_TIME_SLACK: Duration = Duration::from_secs(60);

/// The graph domain: reads edges for a window and shapes them.
pub struct GraphService {
    reader: Arc<dyn GraphReader>,
    clock: Arc<dyn Clock>,
}

/// A parsed graph request.
#[derive(Debug, Clone)]
pub struct GraphRequest {
    /// Window length.
    pub window: Duration,
    /// Namespace and service filter.
    pub filter: GraphFilter,
    /// Kiali's `graphType` and `injectServiceNodes`.
    pub shape: GraphShape,
    /// Which latency `responseTime` carries.
    pub response_time: ResponseTime,
    /// servicegraph's `filter_empty=true`: the DOT graph leaves out idle edges.
    pub filter_empty: bool,
    /// Kiali's `queryTime`: end of the window, Unix seconds; `None` for now.
    pub query_time: Option<u64>,
    /// Kiali's `boxBy`: the box nodes to add.
    pub box_by: boxes::BoxBy,
}

impl GraphRequest {
    /// Parses `window`/`duration`/`time_horizon`, `queryTime`, `namespace`/`namespaces`,
    /// `service`, `responseTime`, `graphType`, `injectServiceNodes`, `filter_empty`,
    /// `boxBy`.
    pub fn parse(params: &QueryParams) -> Result<GraphRequest> {
        Self::parse_with_default(params, DEFAULT_WINDOW)
    }

    /// [`GraphRequest::parse`], with `default_window` when none is given.
    /// (Windows and steps of this API and the metrics API read with
    /// [`parse_whole_seconds`].)
    pub fn parse_with_default(
        params: &QueryParams,
        default_window: Duration,
    ) -> Result<GraphRequest> {
        // The first alias given is the window; every one given must read (a bad
        // `duration` beside a good `window` is not passed over in silence).
        let mut given = Vec::new();
        for name in ["window", "duration", "time_horizon"] {
            let text = params.get(name);
            if !text.is_empty() {
                let window = parse_whole_seconds(text)
                    .map_err(|e| ApiError::BadRequest(format!("unable to parse {name}: {e}")))?;
                given.push((name, window));
            }
        }
        let (name, window) = given.first().copied().unwrap_or(("window", default_window));
        if window < Duration::from_secs(1) || window > MAX_WINDOW {
            return Err(ApiError::BadRequest(format!(
                "{name} must be between 1s and {}h",
                MAX_WINDOW.as_secs() / 3600
            )));
        }
        let query_time = match params.get("queryTime") {
            "" => None,
            text => Some(text.parse::<u64>().map_err(|_| {
                ApiError::BadRequest(format!(
                    "unable to parse queryTime {text:?}: expected Unix seconds"
                ))
            })?),
        };
        let namespaces = [params.get("namespace"), params.get("namespaces")]
            .iter()
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(str::to_string)
            .collect();
        let service = params.get("service");
        let response_time = match params.get("responseTime") {
            "" | "95" => ResponseTime::Quantile(0.95),
            "avg" => ResponseTime::Average,
            "50" => ResponseTime::Quantile(0.5),
            "99" => ResponseTime::Quantile(0.99),
            other => {
                return Err(ApiError::BadRequest(format!(
                    "responseTime must be avg, 50, 95 or 99, not {other:?}"
                )));
            }
        };
        let graph_type = match params.get("graphType") {
            "" => GraphType::Workload,
            text => GraphType::parse(text).ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "graphType must be workload, app, versionedApp or service, not {text:?}"
                ))
            })?,
        };
        // As Go's `strconv.ParseBool` reads them (absent is false); anything else is
        // refused rather than read as false.
        let flag = |name: &str| match params.get(name) {
            "" | "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
            other => Err(ApiError::BadRequest(format!(
                "{name} must be true or false, not {other:?}"
            ))),
        };
        let inject_service_nodes = flag("injectServiceNodes")?;
        let protocols_off = protocols_off(params)?;
        Ok(GraphRequest {
            window,
            filter: GraphFilter {
                namespaces,
                service: (!service.is_empty()).then(|| service.to_string()),
                node: None,
                protocols_off,
            },
            shape: GraphShape {
                graph_type,
                inject_service_nodes,
            },
            response_time,
            filter_empty: flag("filter_empty")?,
            query_time,
            box_by: boxes::BoxBy::parse(params.get("boxBy")).map_err(ApiError::BadRequest)?,
        })
    }
}

/// Kiali's `rateHttp`, `rateGrpc` and `rateTcp`: which traffic of each protocol the
/// graph shows. `none` leaves the protocol out; requests (HTTP and gRPC) and bytes (TCP)
/// are what meshtel records, so gRPC's message rates (`sent`, `received`, `total`:
/// `istio_request_messages_total`) are refused by name rather than shown as requests.
fn protocols_off(params: &QueryParams) -> Result<Vec<&'static str>> {
    let mut off = Vec::new();
    for (name, protocol, kept) in [
        ("rateHttp", "http", &["requests"][..]),
        ("rateGrpc", "grpc", &["requests"][..]),
        ("rateTcp", "tcp", &["sent", "received", "total"][..]),
    ] {
        match params.get(name) {
            "" => {}
            "none" => off.push(protocol),
            value if kept.contains(&value) => {}
            "sent" | "received" | "total" if protocol == "grpc" => {
                return Err(ApiError::BadRequest(format!(
                    "rateGrpc={} needs gRPC message counts, which meshtel does not record: \
                     use requests (the default) or none",
                    params.get(name)
                )));
            }
            other => {
                return Err(ApiError::BadRequest(format!(
                    "{name} must be {} or none, not {other:?}",
                    kept.join(", ")
                )));
            }
        }
    }
    Ok(off)
}

impl GraphService {
    /// A service over `reader`, with `clock` for "now".
    pub fn new(reader: Arc<dyn GraphReader>, clock: Arc<dyn Clock>) -> Self {
        GraphService { reader, clock }
    }

    /// The asked window `(start, end)`, Unix ns, and now: it ends at `queryTime`, or
    /// now without one (or with one ahead of now by at most [`QUERY_TIME_SLACK`]).
    fn window(&self, request: &GraphRequest) -> Result<(u64, u64, u64)> {
        let now = self.clock.now_unix_nano();
        let end = match request.query_time {
            None => now,
            Some(seconds) => {
                let slack = u64::try_from(QUERY_TIME_SLACK.as_nanos()).unwrap_or(u64::MAX);
                match seconds.checked_mul(1_000_000_000) {
                    Some(end) if end <= now.saturating_add(slack) => end.min(now),
                    _ => {
                        return Err(ApiError::BadRequest(format!(
                            "queryTime {seconds} is in the future (now is {})",
                            now / 1_000_000_000
                        )));
                    }
                }
            }
        };
        let window = u64::try_from(request.window.as_nanos()).unwrap_or(u64::MAX);
        Ok((end.saturating_sub(window), end, now))
    }

    /// Seconds the rows of the window `[start, end)` cover, at least one: the reader
    /// sums whole buckets from the one holding `start` to the one holding `end`, the
    /// last one only until now, so dividing by the window would overstate rates by up
    /// to a bucket (twice at a 10 s window; up to a coarse bucket for a window that
    /// reaches back past `[edges] coarse_after`).
    fn rate_seconds(buckets: &Buckets, start: u64, end: u64, now: u64) -> f64 {
        buckets
            .covered_seconds(buckets.floor(start), end, now)
            .max(1.0)
    }

    /// The graph of the window ending at `queryTime` (default now).
    pub async fn graph(&self, request: &GraphRequest) -> Result<WindowGraph> {
        let (start, end, now) = self.window(request)?;
        let buckets = self.reader.buckets(now).await?;
        let rows = self.reader.edges_in_window(start, end, buckets).await?;
        let callee = CalleeRows::of(&rows);
        let rows = one_reporter_per_pair(rows);
        Ok(WindowGraph {
            graph: Graph::build(&rows, &callee, &request.filter, request.shape),
            end_unix_nano: end,
            rate_seconds: Self::rate_seconds(&buckets, start, end, now),
        })
    }

    /// The graph of the window ending at `queryTime` (default now) plus, unless
    /// `filter_empty`, the edges used in the [`IDLE_EDGE_LOOKBACK`] before the window
    /// but not in it, with no requests.
    pub async fn graph_with_idle_edges(&self, request: &GraphRequest) -> Result<WindowGraph> {
        let (start, end, now) = self.window(request)?;
        let buckets = self.reader.buckets(now).await?;
        let mut rows =
            one_reporter_per_pair(self.reader.edges_in_window(start, end, buckets).await?);
        if !request.filter_empty {
            let lookback = u64::try_from(IDLE_EDGE_LOOKBACK.as_nanos()).unwrap_or(u64::MAX);
            let earlier = self
                .reader
                .edges_in_window(start.saturating_sub(lookback), start, buckets)
                .await?;
            // Their nodes and pairs only: the rates are the window's.
            rows.extend(
                one_reporter_per_pair(earlier)
                    .into_iter()
                    .map(|row| EdgeRow {
                        key: row.key,
                        stats: EdgeStats::default(),
                    }),
            );
        }
        // DOT shows no response times.
        Ok(WindowGraph {
            graph: Graph::build(&rows, &CalleeRows::default(), &request.filter, request.shape),
            end_unix_nano: end,
            rate_seconds: Self::rate_seconds(&buckets, start, end, now),
        })
    }
}

/// A graph with the time its figures were counted over.
#[derive(Debug)]
pub struct WindowGraph {
    /// Nodes and edges.
    pub graph: Graph,
    /// End of the window (`queryTime` or now), Unix ns.
    pub end_unix_nano: u64,
    /// Seconds the rows cover (see [`GraphService::graph`]): what rates divide by.
    pub rate_seconds: f64,
}

/// The graph routes, with their own state: meshtel's, and Kiali's paths of the same
/// graphs (the namespaces graph, and the node graphs of a workload, an app, an app's
/// version and a service: the edges into and out of that node).
pub fn router(service: Arc<GraphService>) -> Router {
    Router::new()
        .route("/api/graph", get(get_graph))
        .route("/api/graph.dot", get(get_graph_dot))
        .route("/api/namespaces/graph", get(get_namespaces_graph))
        .route(
            "/api/namespaces/{namespace}/workloads/{workload}/graph",
            get(get_workload_graph),
        )
        .route(
            "/api/namespaces/{namespace}/applications/{app}/graph",
            get(get_app_graph),
        )
        .route(
            "/api/namespaces/{namespace}/applications/{app}/versions/{version}/graph",
            get(get_version_graph),
        )
        .route(
            "/api/namespaces/{namespace}/services/{service}/graph",
            get(get_service_graph),
        )
        .with_state(service)
}

/// What the graph routes answer: an error is Kiali's `application/json`
/// `{"error":"…"}`, which Kiali's clients read (the Jaeger routes keep Jaeger's).
type GraphResult = std::result::Result<Response, AdminError>;

/// `GET /api/graph`: Kiali-style JSON.
#[tracing::instrument(skip_all)]
async fn get_graph(
    State(service): State<Arc<GraphService>>,
    RawQuery(query): RawQuery,
) -> GraphResult {
    graph_json(&service, query.as_deref(), None, DEFAULT_WINDOW).await
}

/// Kiali's `/api/namespaces/graph`: `/api/graph` with Kiali's default window.
async fn get_namespaces_graph(
    State(service): State<Arc<GraphService>>,
    RawQuery(query): RawQuery,
) -> GraphResult {
    graph_json(&service, query.as_deref(), None, KIALI_DEFAULT_WINDOW).await
}

/// Kiali's `/api/namespaces/{namespace}/workloads/{workload}/graph`.
async fn get_workload_graph(
    State(service): State<Arc<GraphService>>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> GraphResult {
    let Path((namespace, workload)) = path?;
    let node = NodeFocus::Workload {
        namespace,
        workload,
    };
    graph_json(&service, query.as_deref(), Some(node), KIALI_DEFAULT_WINDOW).await
}

/// Kiali's `/api/namespaces/{namespace}/applications/{app}/graph`.
async fn get_app_graph(
    State(service): State<Arc<GraphService>>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> GraphResult {
    let Path((namespace, app)) = path?;
    let node = NodeFocus::App {
        namespace,
        app,
        version: None,
    };
    graph_json(&service, query.as_deref(), Some(node), KIALI_DEFAULT_WINDOW).await
}

/// Kiali's `/api/namespaces/{namespace}/applications/{app}/versions/{version}/graph`.
async fn get_version_graph(
    State(service): State<Arc<GraphService>>,
    path: std::result::Result<Path<(String, String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> GraphResult {
    let Path((namespace, app, version)) = path?;
    let node = NodeFocus::App {
        namespace,
        app,
        version: Some(version),
    };
    graph_json(&service, query.as_deref(), Some(node), KIALI_DEFAULT_WINDOW).await
}

/// Kiali's `/api/namespaces/{namespace}/services/{service}/graph`.
async fn get_service_graph(
    State(service): State<Arc<GraphService>>,
    path: std::result::Result<Path<(String, String)>, PathRejection>,
    RawQuery(query): RawQuery,
) -> GraphResult {
    let Path((namespace, name)) = path?;
    let node = NodeFocus::Service {
        namespace,
        service: name,
    };
    graph_json(&service, query.as_deref(), Some(node), KIALI_DEFAULT_WINDOW).await
}

/// The JSON graph of `query`'s parameters, of the edges into and out of `node` when
/// given (a node graph: the namespace filter does not apply).
async fn graph_json(
    service: &GraphService,
    query: Option<&str>,
    node: Option<NodeFocus>,
    default_window: Duration,
) -> GraphResult {
    let params = QueryParams::parse(query);
    let mut request = GraphRequest::parse_with_default(&params, default_window)?;
    if node.is_some() {
        request.filter.namespaces.clear();
        request.filter.node = node;
    }
    let window = service.graph(&request).await?;
    let pretty = params.pretty_print();
    // Tens of milliseconds for a graph of thousands of nodes: on a blocking thread, so
    // that the query port's other requests go on meanwhile.
    let encode = move || {
        let mut json = json::to_json(
            &window.graph,
            window.end_unix_nano / 1_000_000_000,
            request.window.as_secs(),
            window.rate_seconds,
            request.response_time,
        );
        boxes::add_boxes(&mut json.elements.nodes, request.box_by);
        tracing::debug!(
            nodes = json.elements.nodes.len(),
            edges = json.elements.edges.len(),
            "graph"
        );
        json_response(&json, pretty)
    };
    let response = tokio::task::spawn_blocking(encode)
        .await
        .map_err(|e| ApiError::Unavailable(format!("building the graph failed: {e}")))??;
    Ok(response)
}

/// `GET /api/graph.dot`: Graphviz DOT.
#[tracing::instrument(skip_all)]
async fn get_graph_dot(
    State(service): State<Arc<GraphService>>,
    RawQuery(query): RawQuery,
) -> GraphResult {
    let params = QueryParams::parse(query.as_deref());
    let request = GraphRequest::parse(&params)?;
    let window = service.graph_with_idle_edges(&request).await?;
    let mut response = dot::to_dot(&window.graph, window.rate_seconds).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/vnd.graphviz; charset=utf-8"),
    );
    Ok(response)
}

fn qualified(name: &str, namespace: &str) -> String {
    if namespace.is_empty() {
        name.to_string()
    } else {
        format!("{name}.{namespace}")
    }
}

/// Dependency links from edge rows, naming services as the proxies name their spans'
/// `service.name` (Istio's `<service>.<namespace>`), so that Jaeger UI and Grafana match
/// the links to traced services: parent = the service the source workload answered for
/// in the rows (the one named as its app when several, else the first), else its app,
/// else the workload, in the source namespace; child = destination service short name
/// (else workload) in the destination namespace; call count = requests. Traffic from
/// outside the mesh has no parent and is left out.
pub fn dependencies_from_edges(rows: Vec<EdgeRow>) -> Vec<DependencyLink> {
    let rows = one_reporter_per_pair(rows);
    let known = build::Workloads::of(&rows);
    let mut links: BTreeMap<(String, String), u64> = BTreeMap::new();
    for row in &rows {
        let key = &row.key;
        let mut answered: Vec<&str> = known
            .services(&key.source_namespace, &key.source_workload)
            .iter()
            .map(|fqdn| fqdn.split('.').next().unwrap_or(fqdn))
            .collect();
        answered.sort_unstable();
        let parent = answered
            .iter()
            .find(|s| **s == key.source_app)
            .or(answered.first())
            .copied()
            .filter(|s| !s.is_empty())
            .unwrap_or(if key.source_app.is_empty() {
                &key.source_workload
            } else {
                &key.source_app
            });
        let child = match key.destination_service_name() {
            "" => key.destination_workload.as_str(),
            name => name,
        };
        if parent.is_empty() || child.is_empty() {
            continue;
        }
        let parent = qualified(parent, &key.source_namespace);
        let child = qualified(child, &key.destination_namespace);
        *links.entry((parent, child)).or_default() += row.stats.requests;
    }
    as_links(links)
}

/// Links from (parent, child) → call count, sorted by pair.
fn as_links(links: BTreeMap<(String, String), u64>) -> Vec<DependencyLink> {
    links
        .into_iter()
        .map(|((parent, child), call_count)| DependencyLink {
            parent,
            child,
            call_count,
        })
        .collect()
}

/// A [`TraceReader`] whose `dependencies` come from edges, with the links of the inner
/// reader's spans added for the pairs the edges do not have (services traced by an SDK
/// without a proxy beside them); everything else is the inner reader's.
pub struct EdgeDependencies {
    traces: Arc<dyn TraceReader>,
    edges: Arc<dyn GraphReader>,
}

impl EdgeDependencies {
    /// Wraps `traces`, answering dependencies from `edges` first.
    pub fn new(traces: Arc<dyn TraceReader>, edges: Arc<dyn GraphReader>) -> Self {
        EdgeDependencies { traces, edges }
    }
}

#[async_trait::async_trait]
impl TraceReader for EdgeDependencies {
    async fn services(&self) -> meshtel_model::Result<Vec<String>> {
        self.traces.services().await
    }

    async fn operations(
        &self,
        service: &str,
        kind: Option<SpanKind>,
    ) -> meshtel_model::Result<Vec<Operation>> {
        self.traces.operations(service, kind).await
    }

    async fn find_traces(&self, query: &TraceQuery) -> meshtel_model::Result<Vec<Trace>> {
        self.traces.find_traces(query).await
    }

    async fn get_traces(
        &self,
        trace_ids: &[TraceId],
        max_spans: usize,
    ) -> meshtel_model::Result<Vec<Trace>> {
        self.traces.get_traces(trace_ids, max_spans).await
    }

    async fn dependencies(
        &self,
        end_unix_nano: u64,
        lookback_nano: u64,
    ) -> meshtel_model::Result<Vec<DependencyLink>> {
        let now = UnixClock::now_unix_nano(&SystemUnixClock);
        let buckets = self.edges.buckets(now).await?;
        let rows = self
            .edges
            .edges_in_window(
                end_unix_nano.saturating_sub(lookback_nano),
                end_unix_nano,
                buckets,
            )
            .await?;
        let spans = self
            .traces
            .dependencies(end_unix_nano, lookback_nano)
            .await?;
        Ok(merge_dependencies(dependencies_from_edges(rows), spans))
    }
}

/// `edges` and the links of `spans` whose (parent, child) pair is not among them: a
/// pair the proxies reported is counted from their edges (every request), not from the
/// spans of the requests that were sampled. Sorted by pair.
pub fn merge_dependencies(
    edges: Vec<DependencyLink>,
    spans: Vec<DependencyLink>,
) -> Vec<DependencyLink> {
    let mut links: BTreeMap<(String, String), u64> = edges
        .into_iter()
        .map(|link| ((link.parent, link.child), link.call_count))
        .collect();
    for link in spans {
        links
            .entry((link.parent, link.child))
            .or_insert(link.call_count);
    }
    as_links(links)
}

/// A window or step of the graph and metrics APIs: a bare number of seconds, Go's form
/// (`1h30m`, `1.5h`) as Kiali sends it, or Prometheus' (`1d`, `1w`); a fraction of a
/// second is refused rather than dropped.
pub(crate) fn parse_whole_seconds(text: &str) -> std::result::Result<Duration, String> {
    let duration = match text.parse::<u64>() {
        Ok(seconds) => Duration::from_secs(seconds),
        Err(_) => parse_go_duration(text)
            .or_else(|_| parse_prometheus_duration(text))
            .map_err(|e| e.to_string())?,
    };
    if duration.subsec_nanos() != 0 {
        return Err(format!("{text:?} is not a whole number of seconds"));
    }
    Ok(duration)
}

#[cfg(test)]
mod tests;
