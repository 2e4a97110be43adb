//! Edge rows → a graph of one of Kiali's types (workload, app, versioned app, service):
//! Kiali's cytoscape JSON and servicegraph's DOT.
//!
//! Every request is reported twice in a mesh (by the caller's and the callee's proxy),
//! so each (caller → destination service, protocol) pair is counted from one reporter
//! only: `source` when the window has any source-reported record for the pair (the
//! caller's view includes failures before the callee, such as `UH`, and a retry that
//! moved to another workload counts once, at the workload that answered), else
//! `destination` (callers outside the mesh have no proxy of their own).

use std::collections::{BTreeMap, HashMap};

use meshtel_model::graph::{EdgeKey, EdgeRow, EdgeStats};

/// Rows of one reporter per pair, as explained in the module docs. A pair is a caller
/// and the service it called, whichever workload answered: a caller's proxy reports the
/// workload its request ended at, and the callee's proxies report each attempt,
/// retried ones included, so that with a caller's report, no callee's report of the
/// same calls counts.
pub fn one_reporter_per_pair(rows: Vec<EdgeRow>) -> Vec<EdgeRow> {
    let keep: Vec<bool> = {
        let with_source = pairs_with_source(&rows);
        rows.iter()
            .map(|r| r.key.reporter == "source" || !with_source.contains(&pair(&r.key)))
            .collect()
    };
    rows.into_iter()
        .zip(keep)
        .filter_map(|(row, keep)| keep.then_some(row))
        .collect()
}

/// A caller and the service it called, over a protocol.
type Pair<'a> = [&'a str; 6];

fn pair(key: &EdgeKey) -> Pair<'_> {
    [
        &key.source_workload,
        &key.source_namespace,
        &key.source_app,
        &key.source_version,
        &key.destination_service,
        &key.protocol,
    ]
}

/// The pairs some caller's proxy reported.
fn pairs_with_source(rows: &[EdgeRow]) -> std::collections::HashSet<Pair<'_>> {
    rows.iter()
        .filter(|r| r.key.reporter == "source")
        .map(|r| pair(&r.key))
        .collect()
}

/// What the callee's proxies reported that the graph reads beside the rows of one
/// reporter per pair.
#[derive(Debug, Default)]
pub struct CalleeRows {
    /// Rows an edge's response time is read from ([`timed_rows`]).
    pub timed: Vec<EdgeRow>,
    /// Callee-reported requests with response flags that the caller did not report
    /// with those flags, of pairs counted from the caller: answers the callee's proxy
    /// made itself, such as a quota's 429 (`RL`), which the caller's proxy reports, as
    /// Envoy's does, with no flag (`-`). A flag both report is the caller's already,
    /// and the callee's `DC` (the caller's side hung up) never moves anything. [`Graph::build`] moves as many of the caller's unflagged
    /// requests with the same response code on the edge to these flags, so that the
    /// graph says why.
    pub flagged: Vec<EdgeRow>,
}

/// A call as both proxies label it: the pair, the workload that answered, the
/// response code, gRPC status and flags.
type Call<'a> = (Pair<'a>, &'a str, u32, Option<u32>, &'a str);

fn call(key: &EdgeKey) -> Call<'_> {
    (
        pair(key),
        &key.destination_workload,
        key.response_code,
        key.grpc_response_status,
        &key.response_flags,
    )
}

impl CalleeRows {
    /// The callee's rows among `rows` (before [`one_reporter_per_pair`]).
    pub fn of(rows: &[EdgeRow]) -> CalleeRows {
        let with_source = pairs_with_source(rows);
        let flagged_calls = |reporter: &'static str| {
            let mut by_call: HashMap<Call<'_>, (u64, &EdgeRow)> = HashMap::new();
            for row in rows.iter().filter(|r| {
                r.key.reporter == reporter
                    && r.key.response_flags != "-"
                    && with_source.contains(&pair(&r.key))
            }) {
                by_call.entry(call(&row.key)).or_insert((0, row)).0 += row.stats.requests;
            }
            by_call
        };
        let callers = flagged_calls("source");
        // `DC` at the callee says the caller's side hung up (a client gone, the caller's
        // proxy giving up with a flag of its own): never an answer the callee made.
        let mut callees: Vec<_> = flagged_calls("destination")
            .into_iter()
            .filter(|(call, _)| !call.4.split(',').any(|flag| flag == "DC"))
            .collect();
        // In one order, whatever the map's: the caller's unflagged requests go to the
        // flags in turn.
        callees.sort_by(|a, b| a.0.cmp(&b.0));
        let flagged = callees
            .into_iter()
            .filter_map(|(call, (requests, row))| {
                let told = callers.get(&call).map_or(0, |(requests, _)| *requests);
                let left = requests.saturating_sub(told);
                (left > 0).then(|| EdgeRow {
                    key: row.key.clone(),
                    stats: EdgeStats {
                        requests: left,
                        ..EdgeStats::default()
                    },
                })
            })
            .collect();
        CalleeRows {
            timed: timed_rows(rows),
            flagged,
        }
    }
}

/// What the graph is filtered to.
#[derive(Debug, Clone, Default)]
pub struct GraphFilter {
    /// Keep edges with a source or destination in one of these namespaces.
    pub namespaces: Vec<String>,
    /// Keep edges touching this service, named short (`reviews`), with its namespace
    /// (`reviews.default`) or by FQDN: into it (destination service) and out of its
    /// workloads (those that answered for it in the window, else those whose `app` is
    /// its name).
    pub service: Option<String>,
    /// Keep the edges into and out of this node (Kiali's node graphs).
    pub node: Option<NodeFocus>,
    /// Leave out the traffic of these protocols (Kiali's `rateHttp=none`, ...).
    pub protocols_off: Vec<&'static str>,
}

/// The node of a Kiali node graph (`/api/namespaces/{namespace}/.../graph`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeFocus {
    /// A workload: its calls and the calls to it.
    Workload {
        /// Its namespace.
        namespace: String,
        /// Its name.
        workload: String,
    },
    /// An app, or one version of it: the calls of its workloads and to them.
    App {
        /// Its namespace.
        namespace: String,
        /// The `app` label.
        app: String,
        /// The `version` label, for one version only.
        version: Option<String>,
    },
    /// A service: the calls to it (and so to the workloads answering for it).
    Service {
        /// Its namespace.
        namespace: String,
        /// Its short name.
        service: String,
    },
}

/// What the rows say of each workload ((namespace, name)): the `app` it reports as a
/// caller (a row names the destination's version but, before rollups kept it, not its
/// app), and the services it answered for (destination service FQDNs).
#[derive(Default)]
pub(crate) struct Workloads<'a> {
    apps: HashMap<(&'a str, &'a str), &'a str>,
    services: HashMap<(&'a str, &'a str), Vec<&'a str>>,
}

impl<'a> Workloads<'a> {
    pub(crate) fn of(rows: &'a [EdgeRow]) -> Workloads<'a> {
        let mut known = Workloads::default();
        for row in rows {
            let key = &row.key;
            if !key.source_workload.is_empty() && !key.source_app.is_empty() {
                known
                    .apps
                    .entry((&key.source_namespace, &key.source_workload))
                    .or_insert(&key.source_app);
            }
            if !key.destination_workload.is_empty() && !key.destination_service.is_empty() {
                let services = known
                    .services
                    .entry((&key.destination_namespace, &key.destination_workload))
                    .or_default();
                if !services.contains(&key.destination_service.as_str()) {
                    services.push(&key.destination_service);
                }
            }
        }
        known
    }

    /// The services (FQDNs) workload `name` of `namespace` answered for in the rows.
    pub(crate) fn services<'s>(&'s self, namespace: &'s str, name: &'s str) -> &'s [&'s str] {
        self.services
            .get(&(namespace, name))
            .map_or(&[], Vec::as_slice)
    }
}

/// The app of the destination workload of `key`: the `app` label its proxy reported,
/// else (rows written before rollups kept it) the one it reports as a caller; none
/// (a workload node, as Kiali draws a workload without one) when neither says.
fn destination_app<'a>(key: &'a EdgeKey, known: &Workloads<'a>) -> &'a str {
    if !key.destination_app.is_empty() {
        return &key.destination_app;
    }
    known
        .apps
        .get(&(
            key.destination_namespace.as_str(),
            key.destination_workload.as_str(),
        ))
        .copied()
        .unwrap_or_default()
}

/// Whether `wanted` (`reviews`, `reviews.default` or an FQDN) names the service `fqdn`.
fn names_service(wanted: &str, fqdn: &str) -> bool {
    let mut labels = wanted.split('.');
    let name = labels.next().unwrap_or(wanted);
    let namespace = labels.next();
    let mut service = fqdn.split('.');
    wanted == fqdn
        || (service.next() == Some(name) && namespace.is_none_or(|n| service.next() == Some(n)))
}

impl GraphFilter {
    fn keeps(&self, key: &EdgeKey, known: &Workloads<'_>) -> bool {
        let namespace_ok = self.namespaces.is_empty()
            || self
                .namespaces
                .iter()
                .any(|n| *n == key.source_namespace || *n == key.destination_namespace);
        let service_ok = self.service.as_deref().is_none_or(|s| {
            // The calls to the service, and its workloads' calls out: those of the
            // workloads that answered for it, or (a caller that answered for nothing in
            // the window) whose `app` is the service's name.
            let into = names_service(s, &key.destination_service);
            let answered = known.services(&key.source_namespace, &key.source_workload);
            let out_of = if answered.is_empty() {
                // An app label may hold dots itself (`my.app`).
                let name = s.split('.').next().unwrap_or(s);
                let namespace = s.split('.').nth(1);
                s == key.source_app
                    || (name == key.source_app
                        && namespace.is_none_or(|n| n == key.source_namespace))
            } else {
                answered.iter().any(|fqdn| names_service(s, fqdn))
            };
            into || out_of
        });
        let node_ok = self.node.as_ref().is_none_or(|node| match node {
            NodeFocus::Workload {
                namespace,
                workload,
            } => {
                (key.source_namespace == *namespace && key.source_workload == *workload)
                    || (key.destination_namespace == *namespace
                        && key.destination_workload == *workload)
            }
            NodeFocus::App {
                namespace,
                app,
                version,
            } => {
                let version_ok = |v: &str| version.as_deref().is_none_or(|want| want == v);
                (key.source_namespace == *namespace
                    && !key.source_workload.is_empty()
                    && key.source_app == *app
                    && version_ok(&key.source_version))
                    || (key.destination_namespace == *namespace
                        && !key.destination_workload.is_empty()
                        && destination_app(key, known) == app
                        && version_ok(&key.destination_version))
            }
            NodeFocus::Service { namespace, service } => {
                key.destination_namespace == *namespace && key.destination_service_name() == service
            }
        });
        let protocol_ok = !self.protocols_off.iter().any(|p| *p == key.protocol);
        namespace_ok && service_ok && node_ok && protocol_ok
    }
}

/// Kiali's graph types (`graphType`): what a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GraphType {
    /// A node per workload, and per service no workload answered for.
    #[default]
    Workload,
    /// A node per app (`app` label), whatever its versions and workloads; a workload
    /// with no app stays a workload node.
    App,
    /// A node per version of an app: per workload, as Kiali keys them, typed `app`.
    VersionedApp,
    /// Services only, each with edges to the services its workloads call; callers that
    /// nothing calls (traffic from outside the mesh, a load generator) stay, with their
    /// edges to services (Kiali's service graph).
    Service,
}

impl GraphType {
    /// Kiali's name of a graph type; `None` for any other.
    pub fn parse(text: &str) -> Option<GraphType> {
        match text {
            "workload" => Some(GraphType::Workload),
            "app" => Some(GraphType::App),
            "versionedApp" => Some(GraphType::VersionedApp),
            "service" => Some(GraphType::Service),
            _ => None,
        }
    }

    /// Kiali's name of this type, as the answer's `graphType` carries it.
    pub fn name(self) -> &'static str {
        match self {
            GraphType::Workload => "workload",
            GraphType::App => "app",
            GraphType::VersionedApp => "versionedApp",
            GraphType::Service => "service",
        }
    }
}

/// The shape of a graph: its type, and whether a node for the destination service sits
/// between each caller and the workload answering (Kiali's `injectServiceNodes`,
/// always so in a service graph). An injected service node's edges both carry the
/// requests of the edge they replace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GraphShape {
    /// What a node stands for.
    pub graph_type: GraphType,
    /// Service nodes between callers and workloads.
    pub inject_service_nodes: bool,
}

/// A node of the graph, identified by a readable internal id.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum NodeRef {
    /// Traffic from outside the mesh.
    Unknown,
    /// A workload: namespace, name.
    Workload(String, String),
    /// A service: namespace, short name (in a workload graph without injected service
    /// nodes, only the services no workload answered for).
    Service(String, String),
    /// An app, all its versions and workloads (app graph): namespace, app.
    App(String, String),
    /// One version of an app (versioned app graph): namespace, the workload running it.
    VersionedApp(String, String),
}

impl NodeRef {
    /// The node id: `unknown_source`, `wl_<ns>_<workload>`, `svc_<ns>_<service>`,
    /// `app_<ns>_<app>` or `vapp_<ns>_<workload>` (Kiali's internal ids, without the
    /// cluster).
    pub fn id(&self) -> String {
        match self {
            NodeRef::Unknown => "unknown_source".to_string(),
            NodeRef::Workload(ns, name) => format!("wl_{ns}_{name}"),
            // A destination that names no service (`UH` to an unknown host) is
            // `unknown`, as Kiali names it.
            NodeRef::Service(ns, name) => {
                let known = |s: &str| {
                    if s.is_empty() {
                        "unknown".to_owned()
                    } else {
                        s.to_owned()
                    }
                };
                format!("svc_{}_{}", known(ns), known(name))
            }
            NodeRef::App(ns, app) => format!("app_{ns}_{app}"),
            NodeRef::VersionedApp(ns, workload) => format!("vapp_{ns}_{workload}"),
        }
    }
}

/// The node of a workload with `app` in a graph of `graph_type`, as Kiali's node ids
/// go: an app node when the graph groups by app and the workload has one.
fn workload_node(graph_type: GraphType, namespace: &str, workload: &str, app: &str) -> NodeRef {
    match graph_type {
        GraphType::App if !app.is_empty() => NodeRef::App(namespace.into(), app.into()),
        GraphType::VersionedApp if !app.is_empty() => {
            NodeRef::VersionedApp(namespace.into(), workload.into())
        }
        _ => NodeRef::Workload(namespace.into(), workload.into()),
    }
}

fn source_node(key: &EdgeKey, graph_type: GraphType) -> NodeRef {
    if key.source_workload.is_empty() {
        NodeRef::Unknown
    } else {
        workload_node(
            graph_type,
            &key.source_namespace,
            &key.source_workload,
            &key.source_app,
        )
    }
}

/// The destination's node; `app` is the destination workload's app (a row does not
/// carry it: see [`Graph::build`]).
fn destination_node(key: &EdgeKey, graph_type: GraphType, app: &str) -> NodeRef {
    if key.destination_workload.is_empty() {
        NodeRef::Service(
            key.destination_namespace.clone(),
            key.destination_service_name().to_string(),
        )
    } else {
        workload_node(
            graph_type,
            &key.destination_namespace,
            &key.destination_workload,
            app,
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
    /// Requests by response code (as `responses`) and destination service host (the
    /// `destination_service` label), Kiali's `hosts`.
    pub hosts: BTreeMap<String, BTreeMap<String, u64>>,
    /// Requests by class: 3xx, 4xx, 5xx, no response.
    pub by_class: [u64; 4],
    /// gRPC requests answered with an error (see [`is_grpc_error`]); those with no
    /// response are in `by_class[3]` only.
    pub grpc_errors: u64,
    /// Merged stats of the callee-reported rows answered 2xx, whatever reporter the
    /// counts come from: Kiali's `responseTime` (see [`Graph::time_edges`]).
    pub timed: EdgeStats,
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
    /// An app node's workloads and their versions (the app graph's members).
    pub members: std::collections::BTreeSet<(String, String)>,
}

impl EdgeTotals {
    /// The totals of one row.
    fn of_row(row: &EdgeRow) -> EdgeTotals {
        let key = &row.key;
        let mut totals = EdgeTotals {
            stats: row.stats.clone(),
            ..EdgeTotals::default()
        };
        let code = response_key(key);
        if key.protocol == "grpc" && is_grpc_error(&code) {
            totals.grpc_errors = row.stats.requests;
        }
        totals
            .hosts
            .entry(code.clone())
            .or_default()
            .insert(key.destination_service.clone(), row.stats.requests);
        totals
            .responses
            .entry(code)
            .or_default()
            .insert(key.response_flags.clone(), row.stats.requests);
        let class = match key.response_code {
            0 => Some(3),
            300..=399 => Some(0),
            400..=499 => Some(1),
            500..=599 => Some(2),
            _ => None,
        };
        if let Some(slot) = class.and_then(|c| totals.by_class.get_mut(c)) {
            *slot = row.stats.requests;
        }
        totals
    }

    /// Moves up to `requests` of the unflagged (`-`) requests answered `code` to `flags`.
    fn move_to_flags(&mut self, code: &str, flags: &str, requests: u64) {
        let Some(counts) = self.responses.get_mut(code) else {
            return;
        };
        let Some(unflagged) = counts.get_mut("-") else {
            return;
        };
        let moved = requests.min(*unflagged);
        *unflagged -= moved;
        if *unflagged == 0 {
            counts.remove("-");
        }
        if moved > 0 {
            *counts.entry(flags.to_string()).or_default() += moved;
        }
    }

    /// Adds `other` to these totals.
    fn merge(&mut self, other: &EdgeTotals) {
        self.stats.merge(&other.stats);
        for (mine, theirs) in [
            (&mut self.responses, &other.responses),
            (&mut self.hosts, &other.hosts),
        ] {
            for (code, counts) in theirs {
                let into = mine.entry(code.clone()).or_default();
                for (name, requests) in counts {
                    *into.entry(name.clone()).or_default() += requests;
                }
            }
        }
        for (slot, requests) in self.by_class.iter_mut().zip(other.by_class) {
            *slot += requests;
        }
        self.grpc_errors += other.grpc_errors;
        self.timed.merge(&other.timed);
    }
}

/// The rows an edge's response time is read from, as Kiali's query reads it: those the
/// callee's proxy reported (`reporter="destination"`), answered 2xx, so that neither the
/// caller's hop nor failed and cut-off requests count.
pub fn timed_rows(rows: &[EdgeRow]) -> Vec<EdgeRow> {
    rows.iter()
        .filter(|r| r.key.reporter == "destination" && (200..300).contains(&r.key.response_code))
        .cloned()
        .collect()
}

/// The nodes [`Graph::build`] puts a row's calls between.
enum Placed {
    /// An edge from the caller to the callee.
    Direct(NodeRef, NodeRef),
    /// The caller, the service node injected between, the callee: two edges.
    Through(NodeRef, NodeRef, NodeRef),
}

/// Where `key`'s calls go in a graph of `shape`; the service node is injected only
/// before a workload (or app) that answered for a named service.
fn placed(key: &EdgeKey, shape: GraphShape, known: &Workloads) -> Placed {
    let inject = shape.inject_service_nodes || shape.graph_type == GraphType::Service;
    let service = key.destination_service_name();
    let source = source_node(key, shape.graph_type);
    let target = destination_node(key, shape.graph_type, destination_app(key, known));
    if inject && !service.is_empty() && !matches!(target, NodeRef::Service(..)) {
        let hop = NodeRef::Service(key.destination_namespace.clone(), service.to_string());
        Placed::Through(source, hop, target)
    } else {
        Placed::Direct(source, target)
    }
}

/// The graph: nodes and (source, target, protocol) edges.
#[derive(Debug, Default)]
pub struct Graph {
    /// What its nodes stand for.
    pub graph_type: GraphType,
    /// The namespaces asked for (none: all); nodes in others are `isOutside`.
    pub namespaces: Vec<String>,
    /// Nodes with their labels.
    pub nodes: BTreeMap<NodeRef, NodeInfo>,
    /// Edges.
    pub edges: BTreeMap<(NodeRef, NodeRef, String), EdgeTotals>,
}

impl Graph {
    /// Builds the graph of `shape` from rows already reduced to one reporter per pair,
    /// its edges' response times and the flags of the callee's own answers from
    /// `callee` ([`CalleeRows::of`] the rows before).
    pub fn build(rows: &[EdgeRow], callee: &CalleeRows, filter: &GraphFilter, shape: GraphShape) -> Graph {
        // What every row says of workloads, the ones filtered out included.
        let known = Workloads::of(rows);
        let rows = rows.iter().filter(|r| filter.keeps(&r.key, &known));
        let inject = shape.inject_service_nodes || shape.graph_type == GraphType::Service;
        let mut graph = Graph {
            graph_type: shape.graph_type,
            ..Graph::default()
        };
        for row in rows {
            let key = &row.key;
            let service = key.destination_service_name();
            let app = destination_app(key, &known);
            let source = source_node(key, shape.graph_type);
            let target = destination_node(key, shape.graph_type, app);
            let src_info = graph.nodes.entry(source.clone()).or_default();
            if src_info.app.is_empty() {
                src_info.app.clone_from(&key.source_app);
                src_info.version.clone_from(&key.source_version);
            }
            if src_info.cluster.is_empty() {
                src_info.cluster.clone_from(&key.source_cluster);
            }
            if matches!(source, NodeRef::App(..)) {
                src_info
                    .members
                    .insert((key.source_workload.clone(), key.source_version.clone()));
            }
            let dst_info = graph.nodes.entry(target.clone()).or_default();
            if dst_info.app.is_empty() && !key.destination_workload.is_empty() {
                dst_info.app = app.to_string();
            }
            if dst_info.version.is_empty() {
                dst_info.version.clone_from(&key.destination_version);
            }
            if dst_info.cluster.is_empty() {
                dst_info.cluster.clone_from(&key.destination_cluster);
            }
            if matches!(target, NodeRef::App(..)) {
                dst_info.members.insert((
                    key.destination_workload.clone(),
                    key.destination_version.clone(),
                ));
            }
            if !dst_info.services.iter().any(|s| s == service) {
                dst_info.services.push(service.to_string());
            }
            let totals = EdgeTotals::of_row(row);
            let protocol = &key.protocol;
            if inject && !service.is_empty() && !matches!(target, NodeRef::Service(..)) {
                let hop = NodeRef::Service(key.destination_namespace.clone(), service.to_string());
                let hop_info = graph.nodes.entry(hop.clone()).or_default();
                if hop_info.services.is_empty() {
                    hop_info.services.push(service.to_string());
                }
                if hop_info.cluster.is_empty() {
                    hop_info.cluster.clone_from(&key.destination_cluster);
                }
                graph.add(source, hop.clone(), protocol, &totals);
                graph.add(hop, target, protocol, &totals);
            } else {
                graph.add(source, target, protocol, &totals);
            }
        }
        graph.time_edges(&callee.timed, filter, shape, &known);
        graph.flag_edges(&callee.flagged, filter, shape, &known);
        // A node graph keeps its node and the workloads around it, services injected,
        // as Kiali's does ("to provide more detail").
        if shape.graph_type == GraphType::Service && filter.node.is_none() {
            graph.reduce_to_services();
        }
        graph.namespaces = filter.namespaces.clone();
        graph
    }

    /// Adds the stats of `timed` rows ([`timed_rows`]) to the `timed` totals of the edges
    /// they fall on, as [`Self::build`] placed them. With service nodes injected, on the
    /// service → workload hop only (Kiali gives the edge into a service node none),
    /// except in a service graph, where the caller → service edge takes them: reducing
    /// to services makes it the service → service edge. Call before a service graph is
    /// reduced: [`Self::build`] does.
    fn time_edges(
        &mut self,
        timed: &[EdgeRow],
        filter: &GraphFilter,
        shape: GraphShape,
        known: &Workloads,
    ) {
        let reduced = shape.graph_type == GraphType::Service && filter.node.is_none();
        for row in timed.iter().filter(|r| filter.keeps(&r.key, known)) {
            let key = &row.key;
            let edge = match placed(key, shape, known) {
                Placed::Direct(source, target) => (source, target),
                Placed::Through(source, hop, _) if reduced => (source, hop),
                Placed::Through(_, hop, target) => (hop, target),
            };
            if let Some(totals) = self.edges.get_mut(&(edge.0, edge.1, key.protocol.clone())) {
                totals.timed.merge(&row.stats);
            }
        }
    }

    /// Moves the caller's unflagged requests to the flags of `flagged` rows
    /// ([`CalleeRows::flagged`]) on every edge [`Self::build`] placed the caller's rows
    /// of the same call on.
    fn flag_edges(
        &mut self,
        flagged: &[EdgeRow],
        filter: &GraphFilter,
        shape: GraphShape,
        known: &Workloads,
    ) {
        for row in flagged.iter().filter(|r| filter.keeps(&r.key, known)) {
            let key = &row.key;
            let edges = match placed(key, shape, known) {
                Placed::Direct(source, target) => vec![(source, target)],
                Placed::Through(source, hop, target) => vec![(source, hop.clone()), (hop, target)],
            };
            let code = response_key(key);
            for (from, to) in edges {
                if let Some(totals) = self.edges.get_mut(&(from, to, key.protocol.clone())) {
                    totals.move_to_flags(&code, &key.response_flags, row.stats.requests);
                }
            }
        }
    }

    fn add(&mut self, source: NodeRef, target: NodeRef, protocol: &str, totals: &EdgeTotals) {
        self.edges
            .entry((source, target, protocol.to_string()))
            .or_default()
            .merge(totals);
    }

    /// Kiali's service graph from a graph with service nodes injected: each service
    /// gets edges to the services its workloads call (the workloads' edges, added up
    /// per service and protocol), and the workloads go. Callers that nothing calls stay,
    /// with their edges to services; every service stays.
    fn reduce_to_services(&mut self) {
        let is_service = |node: &NodeRef| matches!(node, NodeRef::Service(..));
        let called: std::collections::HashSet<&NodeRef> =
            self.edges.keys().map(|(_, target, _)| target).collect();
        let mut edges: BTreeMap<(NodeRef, NodeRef, String), EdgeTotals> = BTreeMap::new();
        for ((source, target, protocol), totals) in &self.edges {
            if is_service(source) {
                let from = (target.clone(), NodeRef::Unknown, String::new());
                for ((_, next, next_protocol), next_totals) in self
                    .edges
                    .range(from..)
                    .take_while(|((caller, _, _), _)| caller == target)
                    .filter(|((_, next, _), _)| is_service(next))
                {
                    edges
                        .entry((source.clone(), next.clone(), next_protocol.clone()))
                        .or_default()
                        .merge(next_totals);
                }
            } else if !called.contains(source) && is_service(target) {
                edges
                    .entry((source.clone(), target.clone(), protocol.clone()))
                    .or_default()
                    .merge(totals);
            }
        }
        let callers: std::collections::HashSet<NodeRef> =
            edges.keys().map(|(source, _, _)| source.clone()).collect();
        self.nodes
            .retain(|node, _| is_service(node) || callers.contains(node));
        self.edges = edges;
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
