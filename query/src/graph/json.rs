//! Kiali's cytoscape JSON of a [`Graph`]: nodes and edges with request rates, error
//! percentages, response-code breakdown and latency.

use std::collections::{BTreeMap, HashMap};

use meshtel_model::graph::EdgeStats;
use serde::Serialize;

use super::build::{EdgeTotals, Graph, NodeRef};

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
    /// The graph's type, Kiali's name.
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

/// `{"flags": {"-": "100.0"}, "hosts": {"reviews.default.svc.cluster.local": "100.0"}}`.
#[derive(Debug, Serialize)]
pub struct Flags {
    /// Flags → percentage.
    pub flags: BTreeMap<String, String>,
    /// Destination service hosts → percentage.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub hosts: BTreeMap<String, String>,
}

/// A node's data.
#[derive(Debug, Serialize)]
pub struct NodeData {
    /// Node id.
    pub id: String,
    /// `workload`, `app`, `service` or `unknown`.
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
    /// meshtel extension, app nodes: the workloads the node stands for.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub workloads: Vec<String>,
    /// meshtel extension, app nodes: their versions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub versions: Vec<String>,
    /// Services this workload answered for.
    #[serde(rename = "destServices", skip_serializing_if = "Vec::is_empty")]
    pub dest_services: Vec<DestService>,
    /// Traffic in and out, per protocol.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<Traffic>,
    /// True for nodes with outgoing traffic only.
    #[serde(rename = "isRoot", skip_serializing_if = "std::ops::Not::not")]
    pub is_root: bool,
    /// True for nodes outside the namespaces asked for (Kiali's `isOutside`).
    #[serde(rename = "isOutside", skip_serializing_if = "std::ops::Not::not")]
    pub is_outside: bool,
    /// The box node this node sits in (Kiali's `boxBy`, see [`super::boxes`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Box nodes: what they box, `app`, `namespace` or `cluster`.
    #[serde(rename = "isBox", skip_serializing_if = "Option::is_none")]
    pub is_box: Option<&'static str>,
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
    // Each node's protocols, sorted: looked up once per node, not by a scan of every
    // node's totals (which made a graph of 20,000 nodes take 12 s).
    let mut protocols_of: HashMap<&NodeRef, Vec<&str>> = HashMap::new();
    for (node, protocol) in io.keys() {
        protocols_of.entry(node).or_default().push(protocol);
    }
    let mut nodes = Vec::new();
    for (node, info) in &graph.nodes {
        let mut traffic = Vec::new();
        let mut protocols = protocols_of.remove(node).unwrap_or_default();
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
        let dest_services = |cluster: &str, ns: &str| -> Vec<DestService> {
            info.services
                .iter()
                .map(|s| DestService {
                    cluster: cluster.to_string(),
                    namespace: ns.to_string(),
                    name: s.clone(),
                })
                .collect()
        };
        let mut data = match node {
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
                workloads: Vec::new(),
                versions: Vec::new(),
                traffic,
                is_root: true,
                is_outside: false,
                parent: None,
                is_box: None,
            },
            NodeRef::Workload(ns, workload)
            | NodeRef::App(ns, workload)
            | NodeRef::VersionedApp(ns, workload) => {
                // (workload, app, version) of each: an app node stands for all of an
                // app's workloads and versions.
                let (node_type, workload, app, version) = match node {
                    NodeRef::App(_, app) => ("app", None, some(app), None),
                    NodeRef::VersionedApp(..) => {
                        ("app", some(workload), some(&info.app), some(&info.version))
                    }
                    _ => (
                        "workload",
                        some(workload),
                        some(&info.app),
                        some(&info.version),
                    ),
                };
                NodeData {
                    id: node.id(),
                    node_type,
                    cluster: cluster.clone(),
                    namespace: some(ns).unwrap_or_default(),
                    workload,
                    app,
                    version,
                    service: None,
                    dest_services: dest_services(&cluster, ns),
                    workloads: Vec::new(),
                    versions: Vec::new(),
                    traffic,
                    is_root: !has_incoming.contains(node),
                    is_outside: false,
                    parent: None,
                    is_box: None,
                }
            }
            NodeRef::Service(ns, name) => NodeData {
                id: node.id(),
                node_type: "service",
                cluster: cluster.clone(),
                namespace: some(ns).unwrap_or_default(),
                workload: None,
                app: some(name),
                version: None,
                service: some(name),
                dest_services: if name.is_empty() {
                    Vec::new()
                } else {
                    vec![DestService {
                        cluster,
                        namespace: ns.clone(),
                        name: name.clone(),
                    }]
                },
                workloads: Vec::new(),
                versions: Vec::new(),
                traffic,
                is_root: false,
                is_outside: false,
                parent: None,
                is_box: None,
            },
        };
        if matches!(node, NodeRef::App(..)) {
            let known = |s: &String| !s.is_empty();
            let workloads: std::collections::BTreeSet<&String> = info
                .members
                .iter()
                .map(|(w, _)| w)
                .filter(|w| known(w))
                .collect();
            let versions: std::collections::BTreeSet<&String> = info
                .members
                .iter()
                .map(|(_, v)| v)
                .filter(|v| known(v))
                .collect();
            data.workloads = workloads.into_iter().cloned().collect();
            data.versions = versions.into_iter().cloned().collect();
        }
        data.is_outside = !graph.namespaces.is_empty()
            && node != &NodeRef::Unknown
            && !graph.namespaces.contains(&data.namespace);
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
        // TCP has no response codes: Kiali keys all of an edge's connections `-`.
        let tcp_keyed;
        let (by_code, hosts_by_code) = if protocol == "tcp" {
            let all = |by_code: &BTreeMap<String, BTreeMap<String, u64>>| {
                let mut counts: BTreeMap<String, u64> = BTreeMap::new();
                for (name, n) in by_code.values().flatten() {
                    *counts.entry(name.clone()).or_default() += n;
                }
                BTreeMap::from([("-".to_string(), counts)])
            };
            tcp_keyed = (all(&totals.responses), all(&totals.hosts));
            (&tcp_keyed.0, &tcp_keyed.1)
        } else {
            (&totals.responses, &totals.hosts)
        };
        let responses = by_code
            .iter()
            .map(|(code, flags)| {
                let shares = |counts: &BTreeMap<String, u64>| -> BTreeMap<String, String> {
                    counts
                        .iter()
                        .map(|(name, n)| {
                            let share = *n as f64 / total.max(1.0) * 100.0;
                            // A destination that names no host is Kiali's `unknown`.
                            let name = if name.is_empty() { "unknown" } else { name };
                            (name.to_owned(), format!("{share:.1}"))
                        })
                        .collect()
                };
                let hosts = hosts_by_code.get(code).map(shares).unwrap_or_default();
                let flags = shares(flags);
                (code.clone(), Flags { flags, hosts })
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
                if let Some(ms) = latency(&totals.timed, which) {
                    response_times.insert(name, format!("{ms:.1}"));
                }
            }
        }
        edges.push(Wrapped {
            data: EdgeData {
                id: format!("{}->{}:{protocol}", source.id(), target.id()),
                source: source.id(),
                target: target.id(),
                // As Kiali's query (`> 0`): none when the quantile is 0.
                response_time: (protocol != "tcp")
                    .then(|| latency(&totals.timed, response_time))
                    .flatten()
                    .filter(|ms| *ms > 0.0)
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
        graph_type: graph.graph_type.name(),
        elements: Elements { nodes, edges },
    }
}
