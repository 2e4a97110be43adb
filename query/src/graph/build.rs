//! Edge rows → a workload graph: Kiali's cytoscape JSON and servicegraph's DOT.
//!
//! Every request is reported twice in a mesh (by the caller's and the callee's proxy),
//! so each (source → destination, protocol) pair is counted from one reporter only:
//! `source` when the window has any source-reported record for the pair (the caller's
//! view includes failures before the callee, such as `UH`), else `destination` (callers
//! outside the mesh have no proxy of their own).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write;

use meshtel_model::graph::{EdgeKey, EdgeRow, EdgeStats};
use serde::Serialize;

/// Rows of one reporter per pair, as explained in the module docs.
pub fn one_reporter_per_pair(rows: Vec<EdgeRow>) -> Vec<EdgeRow> {
    type Pair<'a> = [&'a str; 9];
    fn pair(key: &EdgeKey) -> Pair<'_> {
        [
            &key.source_workload,
            &key.source_namespace,
            &key.source_app,
            &key.source_version,
            &key.destination_service,
            &key.destination_workload,
            &key.destination_namespace,
            &key.destination_version,
            &key.protocol,
        ]
    }
    let keep: Vec<bool> = {
        let with_source: std::collections::HashSet<Pair<'_>> = rows
            .iter()
            .filter(|r| r.key.reporter == "source")
            .map(|r| pair(&r.key))
            .collect();
        rows.iter()
            .map(|r| r.key.reporter == "source" || !with_source.contains(&pair(&r.key)))
            .collect()
    };
    rows.into_iter()
        .zip(keep)
        .filter_map(|(row, keep)| keep.then_some(row))
        .collect()
}

/// What the graph is filtered to.
#[derive(Debug, Clone, Default)]
pub struct GraphFilter {
    /// Keep edges with a source or destination in one of these namespaces.
    pub namespaces: Vec<String>,
    /// Keep edges touching this service (destination service short name or FQDN, or
    /// source app).
    pub service: Option<String>,
}

impl GraphFilter {
    fn keeps(&self, key: &EdgeKey) -> bool {
        let namespace_ok = self.namespaces.is_empty()
            || self
                .namespaces
                .iter()
                .any(|n| *n == key.source_namespace || *n == key.destination_namespace);
        let service_ok = self.service.as_deref().is_none_or(|s| {
            s == key.destination_service
                || s == key.destination_service_name()
                || s == key.source_app
        });
        namespace_ok && service_ok
    }
}

/// A node of the graph, identified by a readable internal id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeRef {
    /// Traffic from outside the mesh.
    Unknown,
    /// A workload: namespace, name.
    Workload(String, String),
    /// A service with no workload answering: namespace, short name.
    Service(String, String),
}

impl NodeRef {
    /// The node id: `unknown_source`, `wl_<ns>_<workload>` or `svc_<ns>_<service>`.
    pub fn id(&self) -> String {
        match self {
            NodeRef::Unknown => "unknown_source".to_string(),
            NodeRef::Workload(ns, name) => format!("wl_{ns}_{name}"),
            NodeRef::Service(ns, name) => format!("svc_{ns}_{name}"),
        }
    }
}

fn source_node(key: &EdgeKey) -> NodeRef {
    if key.source_workload.is_empty() {
        NodeRef::Unknown
    } else {
        NodeRef::Workload(key.source_namespace.clone(), key.source_workload.clone())
    }
}

fn destination_node(key: &EdgeKey) -> NodeRef {
    if key.destination_workload.is_empty() {
        NodeRef::Service(
            key.destination_namespace.clone(),
            key.destination_service_name().to_string(),
        )
    } else {
        NodeRef::Workload(
            key.destination_namespace.clone(),
            key.destination_workload.clone(),
        )
    }
}

/// One directed edge's aggregates.
#[derive(Debug, Clone, Default)]
pub struct EdgeTotals {
    /// Merged stats of every row.
    pub stats: EdgeStats,
    /// Requests by response code (see [`response_key`]: `"-"` for none, the gRPC status
    /// for gRPC) and flags.
    pub responses: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests by class: 3xx, 4xx, 5xx, no response.
    pub by_class: [u64; 4],
    /// gRPC requests answered with an error (see [`is_grpc_error`]); those with no
    /// response are in `by_class[3]` only.
    pub grpc_errors: u64,
}

/// What a node knows about itself, gathered from the rows.
#[derive(Debug, Clone, Default)]
pub struct NodeInfo {
    /// `app` label.
    pub app: String,
    /// `version` label.
    pub version: String,
    /// Destination services the node answered for.
    pub services: Vec<String>,
    /// Cluster its proxy reported (`source_cluster` of its outgoing rows,
    /// `destination_cluster` of its incoming ones, the first non-empty one); empty
    /// when none did.
    pub cluster: String,
}

/// The graph: nodes and (source, target, protocol) edges.
#[derive(Debug, Default)]
pub struct Graph {
    /// Nodes with their labels.
    pub nodes: BTreeMap<NodeRef, NodeInfo>,
    /// Edges.
    pub edges: BTreeMap<(NodeRef, NodeRef, String), EdgeTotals>,
}

impl Graph {
    /// Builds the graph from rows already reduced to one reporter per pair.
    pub fn build(rows: &[EdgeRow], filter: &GraphFilter) -> Graph {
        let mut graph = Graph::default();
        for row in rows.iter().filter(|r| filter.keeps(&r.key)) {
            let key = &row.key;
            let source = source_node(key);
            let target = destination_node(key);
            let src_info = graph.nodes.entry(source.clone()).or_default();
            if src_info.app.is_empty() {
                src_info.app.clone_from(&key.source_app);
                src_info.version.clone_from(&key.source_version);
            }
            if src_info.cluster.is_empty() {
                src_info.cluster.clone_from(&key.source_cluster);
            }
            let dst_info = graph.nodes.entry(target.clone()).or_default();
            if dst_info.version.is_empty() {
                dst_info.version.clone_from(&key.destination_version);
            }
            if dst_info.cluster.is_empty() {
                dst_info.cluster.clone_from(&key.destination_cluster);
            }
            let service = key.destination_service_name().to_string();
            if !dst_info.services.contains(&service) {
                dst_info.services.push(service);
            }
            let totals = graph
                .edges
                .entry((source, target, key.protocol.clone()))
                .or_default();
            totals.stats.merge(&row.stats);
            let code = response_key(key);
            if key.protocol == "grpc" && is_grpc_error(&code) {
                totals.grpc_errors += row.stats.requests;
            }
            *totals
                .responses
                .entry(code)
                .or_default()
                .entry(key.response_flags.clone())
                .or_default() += row.stats.requests;
            let class = match key.response_code {
                0 => Some(3),
                300..=399 => Some(0),
                400..=499 => Some(1),
                500..=599 => Some(2),
                _ => None,
            };
            if let Some(slot) = class.and_then(|c| totals.by_class.get_mut(c)) {
                *slot += row.stats.requests;
            }
        }
        // A workload that never called anything has no app label in the rows: use the
        // service it answers for.
        for info in graph.nodes.values_mut() {
            if info.app.is_empty()
                && let Some(service) = info.services.first()
            {
                info.app.clone_from(service);
            }
        }
        graph
    }
}

/// The key of an edge's `responses`, as Kiali's `HandleResponseCode` makes it: `-`
/// for no response; for gRPC the gRPC status, unless the HTTP status is an error
/// (4xx/5xx) or the row predates gRPC statuses in the rollups; else the HTTP status.
pub fn response_key(key: &EdgeKey) -> String {
    match (key.response_code, key.grpc_response_status) {
        (0, _) => "-".to_string(),
        (400..=599, _) => key.response_code.to_string(),
        (_, Some(status)) if key.protocol == "grpc" => status.to_string(),
        (code, _) => code.to_string(),
    }
}

/// Whether a gRPC request whose [`response_key`] is `code` failed, as Kiali's
/// `addToMetadataGrpc` counts it into `grpcErr`: an HTTP status (three digits) of
/// 4xx/5xx, else a gRPC status other than 0 (OK). No response (`-`) is not an error
/// here: it has its own rate (`grpcNoResponse`), and a response flag does not make an
/// OK status an error.
pub fn is_grpc_error(code: &str) -> bool {
    match code {
        "-" => false,
        http if http.len() == 3 => http.starts_with('4') || http.starts_with('5'),
        status => status != "0",
    }
}

/// A rate as Kiali writes it (`rateToString`): at least 2 decimals, more until one
/// significant digit shows (`0.002`, `0.00001`); `None` (omitted) when zero. Kiali
/// stops at 5 decimals, which prints one request in a 7-day window (the longest
/// allowed) as `0.00000`; 8 show it (`0.0000017`), and clients read numbers anyway.
pub fn rate(value: f64) -> Option<String> {
    (value > 0.0).then(|| {
        let mut decimals = 0;
        let mut scaled = value;
        while decimals < 8 && scaled < 1.0 {
            scaled *= 10.0;
            decimals += 1;
        }
        format!("{value:.*}", decimals.max(2))
    })
}

/// A percentage: 1 decimal, `None` when zero.
fn percent(part: f64, whole: f64) -> Option<String> {
    (whole > 0.0 && part > 0.0).then(|| format!("{:.1}", part / whole * 100.0))
}

/// Kiali's response document (the parts meshtel fills).
#[derive(Debug, Serialize)]
pub struct GraphJson {
    /// End of the window, Unix seconds.
    pub timestamp: u64,
    /// Window length, seconds.
    pub duration: u64,
    /// Always `workload`.
    #[serde(rename = "graphType")]
    pub graph_type: &'static str,
    /// Nodes and edges.
    pub elements: Elements,
}

/// Cytoscape elements.
#[derive(Debug, Serialize)]
pub struct Elements {
    /// Nodes.
    pub nodes: Vec<Wrapped<NodeData>>,
    /// Edges.
    pub edges: Vec<Wrapped<EdgeData>>,
}

/// Cytoscape's `{"data": ...}` wrapper.
#[derive(Debug, Serialize)]
pub struct Wrapped<T> {
    /// The element.
    pub data: T,
}

/// A destination service of a node.
#[derive(Debug, Serialize)]
pub struct DestService {
    /// The node's cluster.
    pub cluster: String,
    /// Namespace.
    pub namespace: String,
    /// Short name.
    pub name: String,
}

/// Per-protocol traffic of a node or an edge.
#[derive(Debug, Serialize)]
pub struct Traffic {
    /// `http`, `grpc` or `tcp`.
    pub protocol: String,
    /// Rates by Kiali name.
    pub rates: BTreeMap<&'static str, String>,
    /// Edges only: code → flags → percentage of the edge's requests.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub responses: Option<BTreeMap<String, Flags>>,
}

/// `{"flags": {"-": "100.0"}}`.
#[derive(Debug, Serialize)]
pub struct Flags {
    /// Flags → percentage.
    pub flags: BTreeMap<String, String>,
}

/// A node's data.
#[derive(Debug, Serialize)]
pub struct NodeData {
    /// Node id.
    pub id: String,
    /// `workload`, `service` or `unknown`.
    #[serde(rename = "nodeType")]
    pub node_type: &'static str,
    /// Cluster its proxy reported (Istio's `source_cluster`/`destination_cluster`),
    /// `unknown` when none did (always for traffic from outside the mesh).
    pub cluster: String,
    /// Namespace (`unknown` for the outside).
    pub namespace: String,
    /// Workload name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<String>,
    /// `app` label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub app: Option<String>,
    /// `version` label.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Service name (service nodes only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service: Option<String>,
    /// Services this workload answered for.
    #[serde(rename = "destServices", skip_serializing_if = "Vec::is_empty")]
    pub dest_services: Vec<DestService>,
    /// Traffic in and out, per protocol.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<Traffic>,
    /// True for nodes with outgoing traffic only.
    #[serde(rename = "isRoot", skip_serializing_if = "std::ops::Not::not")]
    pub is_root: bool,
}

/// An edge's data.
#[derive(Debug, Serialize)]
pub struct EdgeData {
    /// Edge id: `<source id>-><target id>:<protocol>`.
    pub id: String,
    /// Source node id.
    pub source: String,
    /// Target node id.
    pub target: String,
    /// Latency in ms (`%.0f`) at the asked quantile (default p95) or the average.
    #[serde(rename = "responseTime", skip_serializing_if = "Option::is_none")]
    pub response_time: Option<String>,
    /// meshtel extension: latency p50/p95/p99 and average, ms.
    #[serde(rename = "responseTimes", skip_serializing_if = "BTreeMap::is_empty")]
    pub response_times: BTreeMap<&'static str, String>,
    /// Response bytes per second.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub throughput: Option<String>,
    /// Rates and responses.
    pub traffic: Traffic,
}

/// Which latency `responseTime` carries.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ResponseTime {
    /// `_sum / _count`.
    Average,
    /// A quantile in (0, 1).
    Quantile(f64),
}

fn latency(stats: &EdgeStats, which: ResponseTime) -> Option<f64> {
    match which {
        ResponseTime::Average => {
            (stats.requests > 0).then(|| stats.duration_sum_ms / stats.requests as f64)
        }
        ResponseTime::Quantile(q) => stats.latency_quantile_ms(q),
    }
}

/// The Kiali-style JSON of `graph` over a `window_seconds` window (its `duration`),
/// whose rows cover `rate_seconds` (whole rollup buckets: see
/// [`meshtel_model::graph::Buckets::covered_seconds`]), what the rates divide by.
pub fn to_json(
    graph: &Graph,
    end_unix_seconds: u64,
    window_seconds: u64,
    rate_seconds: f64,
    response_time: ResponseTime,
) -> GraphJson {
    let window = rate_seconds.max(1.0);
    // Node in/out totals per protocol: requests, classes, errors, bytes.
    #[derive(Default)]
    struct Io {
        inbound: EdgeTotals,
        outbound: EdgeTotals,
    }
    let mut io: HashMap<(&NodeRef, &str), Io> = HashMap::new();
    let mut has_incoming: std::collections::HashSet<&NodeRef> = std::collections::HashSet::new();
    for ((source, target, protocol), totals) in &graph.edges {
        let out = &mut io.entry((source, protocol.as_str())).or_default().outbound;
        out.stats.merge(&totals.stats);
        let inbound = &mut io.entry((target, protocol.as_str())).or_default().inbound;
        inbound.stats.merge(&totals.stats);
        for (slot, v) in inbound.by_class.iter_mut().zip(totals.by_class) {
            *slot += v;
        }
        inbound.grpc_errors += totals.grpc_errors;
        has_incoming.insert(target);
    }
    let mut nodes = Vec::new();
    for (node, info) in &graph.nodes {
        let mut traffic = Vec::new();
        let mut protocols: Vec<&str> = io
            .keys()
            .filter(|(n, _)| *n == node)
            .map(|(_, p)| *p)
            .collect();
        protocols.sort_unstable();
        for protocol in protocols {
            let Some(totals) = io.get(&(node, protocol)) else {
                continue;
            };
            let mut rates = BTreeMap::new();
            let (i, o) = (&totals.inbound, &totals.outbound);
            let mut put = |name: &'static str, value: Option<String>| {
                if let Some(v) = value {
                    rates.insert(name, v);
                }
            };
            match protocol {
                "grpc" => {
                    put("grpcIn", rate(i.stats.requests as f64 / window));
                    put("grpcInErr", rate(i.grpc_errors as f64 / window));
                    put("grpcInNoResponse", rate(i.by_class[3] as f64 / window));
                    put("grpcOut", rate(o.stats.requests as f64 / window));
                }
                "tcp" => {
                    let bytes =
                        |s: &EdgeStats| (s.request_bytes + s.response_bytes) as f64 / window;
                    put("tcpIn", rate(bytes(&i.stats)));
                    put("tcpOut", rate(bytes(&o.stats)));
                }
                _ => {
                    put("httpIn", rate(i.stats.requests as f64 / window));
                    put("httpIn3xx", rate(i.by_class[0] as f64 / window));
                    put("httpIn4xx", rate(i.by_class[1] as f64 / window));
                    put("httpIn5xx", rate(i.by_class[2] as f64 / window));
                    put("httpInNoResponse", rate(i.by_class[3] as f64 / window));
                    put("httpOut", rate(o.stats.requests as f64 / window));
                }
            }
            traffic.push(Traffic {
                protocol: protocol.to_string(),
                rates,
                responses: None,
            });
        }
        let some = |s: &str| {
            Some(if s.is_empty() {
                "unknown".to_string()
            } else {
                s.to_string()
            })
        };
        let cluster = some(&info.cluster).unwrap_or_default();
        let data = match node {
            NodeRef::Unknown => NodeData {
                id: node.id(),
                node_type: "unknown",
                cluster: "unknown".into(),
                namespace: "unknown".into(),
                workload: some(""),
                app: some(""),
                version: some(""),
                service: None,
                dest_services: Vec::new(),
                traffic,
                is_root: true,
            },
            NodeRef::Workload(ns, name) => NodeData {
                id: node.id(),
                node_type: "workload",
                cluster: cluster.clone(),
                namespace: some(ns).unwrap_or_default(),
                workload: some(name),
                app: some(&info.app),
                version: some(&info.version),
                service: None,
                dest_services: info
                    .services
                    .iter()
                    .map(|s| DestService {
                        cluster: cluster.clone(),
                        namespace: ns.clone(),
                        name: s.clone(),
                    })
                    .collect(),
                traffic,
                is_root: !has_incoming.contains(node),
            },
            NodeRef::Service(ns, name) => NodeData {
                id: node.id(),
                node_type: "service",
                cluster,
                namespace: some(ns).unwrap_or_default(),
                workload: None,
                app: some(name),
                version: None,
                service: some(name),
                dest_services: Vec::new(),
                traffic,
                is_root: false,
            },
        };
        nodes.push(Wrapped { data });
    }

    let mut edges = Vec::new();
    for ((source, target, protocol), totals) in &graph.edges {
        let total = totals.stats.requests as f64;
        let source_out = io
            .get(&(source, protocol.as_str()))
            .map_or(0.0, |t| t.outbound.stats.requests as f64);
        let mut rates = BTreeMap::new();
        let mut put = |name: &'static str, value: Option<String>| {
            if let Some(v) = value {
                rates.insert(name, v);
            }
        };
        let [c3, c4, c5, none] = totals.by_class.map(|v| v as f64);
        match protocol.as_str() {
            "grpc" => {
                // Kiali's error rates: `grpcErr` and `grpcNoResponse` apart, adding up
                // to `grpcPercentErr`.
                let errors = totals.grpc_errors as f64;
                put("grpc", rate(total / window));
                put("grpcErr", rate(errors / window));
                put("grpcNoResponse", rate(none / window));
                put("grpcPercentErr", percent(errors + none, total));
                put("grpcPercentReq", percent(total, source_out));
            }
            "tcp" => {
                let bytes = (totals.stats.request_bytes + totals.stats.response_bytes) as f64;
                put("tcp", rate(bytes / window));
            }
            _ => {
                put("http", rate(total / window));
                put("http3xx", rate(c3 / window));
                put("http4xx", rate(c4 / window));
                put("http5xx", rate(c5 / window));
                put("httpNoResponse", rate(none / window));
                put("httpPercentErr", percent(c4 + c5 + none, total));
                put("httpPercentReq", percent(total, source_out));
            }
        }
        let responses = totals
            .responses
            .iter()
            .map(|(code, flags)| {
                let code = if protocol == "tcp" {
                    "-".to_string()
                } else {
                    code.clone()
                };
                let flags = flags
                    .iter()
                    .map(|(flag, n)| {
                        (
                            flag.clone(),
                            format!("{:.1}", *n as f64 / total.max(1.0) * 100.0),
                        )
                    })
                    .collect();
                (code, Flags { flags })
            })
            .collect();
        let mut response_times = BTreeMap::new();
        if protocol != "tcp" {
            for (name, which) in [
                ("avg", ResponseTime::Average),
                ("p50", ResponseTime::Quantile(0.5)),
                ("p95", ResponseTime::Quantile(0.95)),
                ("p99", ResponseTime::Quantile(0.99)),
            ] {
                if let Some(ms) = latency(&totals.stats, which) {
                    response_times.insert(name, format!("{ms:.1}"));
                }
            }
        }
        edges.push(Wrapped {
            data: EdgeData {
                id: format!("{}->{}:{protocol}", source.id(), target.id()),
                source: source.id(),
                target: target.id(),
                response_time: (protocol != "tcp")
                    .then(|| latency(&totals.stats, response_time))
                    .flatten()
                    .map(|ms| format!("{ms:.0}")),
                response_times,
                throughput: rate(totals.stats.response_bytes as f64 / window),
                traffic: Traffic {
                    protocol: protocol.clone(),
                    rates,
                    responses: Some(responses),
                },
            },
        });
    }
    GraphJson {
        timestamp: end_unix_seconds,
        duration: window_seconds,
        graph_type: "workload",
        elements: Elements { nodes, edges },
    }
}

/// The DOT name of a destination that names no service (and no workload answered):
/// not servicegraph's `unknown (unknown)`, which is the callers outside the mesh, so
/// that the two stay apart. A Kubernetes name has no space, so no named node has this
/// name.
pub const NO_SERVICE_DOT_NAME: &str = "no service (unknown)";

/// Graphviz DOT as Istio's servicegraph `/dotgraph` writes it: nodes named
/// `"<app> (<workload>)"` (callers outside the mesh `unknown (unknown)`, a service
/// with no workload `<service> (unknown)`, a destination naming no service
/// [`NO_SERVICE_DOT_NAME`]), ids with `/`, `.` and spaces replaced by `_`, each
/// declared once, edges labelled `reqs/sec: %.6f` summed over protocols and codes,
/// over the `rate_seconds` the rows cover.
pub fn to_dot(graph: &Graph, rate_seconds: f64) -> String {
    let window = rate_seconds.max(1.0);
    let name = |node: &NodeRef| -> String {
        let info = graph.nodes.get(node);
        let app = info
            .map(|i| i.app.as_str())
            .filter(|a| !a.is_empty())
            .unwrap_or("unknown");
        match node {
            NodeRef::Unknown => "unknown (unknown)".to_string(),
            NodeRef::Workload(_, workload) => format!("{app} ({workload})"),
            NodeRef::Service(_, service) if service.is_empty() => NO_SERVICE_DOT_NAME.to_string(),
            NodeRef::Service(_, service) => format!("{service} (unknown)"),
        }
    };
    let id = |node: &NodeRef| -> String {
        name(node)
            .chars()
            .map(|c| if matches!(c, '/' | '.' | ' ') { '_' } else { c })
            .collect()
    };
    let mut pairs: BTreeMap<(String, String), u64> = BTreeMap::new();
    for ((source, target, _), totals) in &graph.edges {
        *pairs.entry((id(source), id(target))).or_default() += totals.stats.requests;
    }
    let mut out = String::from("digraph \"istio-servicegraph\" {\n");
    for ((source, target), requests) in &pairs {
        let _ = writeln!(
            out,
            "\"{}\" -> \"{}\" [label=\"reqs/sec: {:.6}\"];",
            escape(source),
            escape(target),
            *requests as f64 / window
        );
    }
    // Nodes of one id (a workload of one name in two namespaces, as servicegraph
    // merges them) are declared once.
    let mut declared = std::collections::HashSet::new();
    for node in graph.nodes.keys() {
        let node_id = id(node);
        if !declared.insert(node_id.clone()) {
            continue;
        }
        let _ = writeln!(
            out,
            "\"{}\" [label=\"{}\"];",
            escape(&node_id),
            escape(&name(node))
        );
    }
    out.push_str("}\n");
    out
}

/// `text` inside a DOT quoted string: a backslash and `"` escaped, a newline as `\n`
/// (a line break in a label), and every other control character (C0, DEL, C1) and the
/// non-characters U+FFFE/U+FFFF as the text `\u{0}` (escaped, so that a label shows
/// it). Graphviz refuses a whole file for a NUL byte and writes other controls into
/// SVG, which XML forbids: none may reach it raw, so that the file parses whatever a
/// workload is called.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c if c.is_control() || matches!(c, '\u{fffe}' | '\u{ffff}') => {
                let _ = write!(out, "\\\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}
