//! Graphviz DOT as Istio's servicegraph `/dotgraph` writes it, of a [`Graph`].

use std::collections::BTreeMap;
use std::fmt::Write;

use super::build::{Graph, NodeRef};

/// The DOT name of a destination that names no service (and no workload answered):
/// not servicegraph's `unknown (unknown)`, which is the callers outside the mesh, so
/// that the two stay apart. A Kubernetes name has no space, so no named node has this
/// name.
pub const NO_SERVICE_DOT_NAME: &str = "no service (unknown)";

/// Graphviz DOT as Istio's servicegraph `/dotgraph` writes it: nodes named
/// `"<app> (<workload>)"` (callers outside the mesh `unknown (unknown)`, a service
/// with no workload `<service> (unknown)`, a destination naming no service
/// [`NO_SERVICE_DOT_NAME`]), ids with `/`, `.` and spaces replaced by `_`, each
/// declared once, edges labelled `reqs/sec: %.6f` summed over protocols and codes (TCP
/// edges apart, `bytes/sec: %.6f` of the bytes the destination received), over the
/// `rate_seconds` the rows cover.
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
            NodeRef::Workload(_, workload) | NodeRef::VersionedApp(_, workload) => {
                format!("{app} ({workload})")
            }
            NodeRef::App(_, app) => app.clone(),
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
    // Requests per pair, and apart from them (as servicegraph queries
    // `istio_tcp_received_bytes_total`) the bytes TCP connections sent the destination.
    let mut pairs: BTreeMap<(String, String, &str), u64> = BTreeMap::new();
    for ((source, target, protocol), totals) in &graph.edges {
        let (unit, amount) = if protocol == "tcp" {
            ("bytes/sec", totals.stats.request_bytes)
        } else {
            ("reqs/sec", totals.stats.requests)
        };
        *pairs.entry((id(source), id(target), unit)).or_default() += amount;
    }
    let mut out = String::from("digraph \"istio-servicegraph\" {\n");
    for ((source, target, unit), amount) in &pairs {
        let _ = writeln!(
            out,
            "\"{}\" -> \"{}\" [label=\"{unit}: {:.6}\"];",
            escape(source),
            escape(target),
            *amount as f64 / window
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
