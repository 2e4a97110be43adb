//! Kiali's `boxBy`: compound ("box") nodes that group a graph's nodes by app, namespace
//! or cluster, as Kiali's UI draws them. Inner boxes come first, as Kiali's
//! `buildConfig` adds them: app boxes (an app with two or more nodes: its versions, or
//! a service and its workloads), then namespace boxes around the nodes and app boxes
//! not boxed yet, then cluster boxes around what is left. Nothing `unknown` is boxed.
//! Each member names its box in `parent`; a box node has `nodeType: "box"` and `isBox`.

use std::collections::BTreeMap;

use super::json::{NodeData, Wrapped};

/// What `boxBy` asked for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BoxBy {
    /// `app`.
    pub app: bool,
    /// `namespace`.
    pub namespace: bool,
    /// `cluster`.
    pub cluster: bool,
}

impl BoxBy {
    /// Reads Kiali's comma-separated list (`app,cluster,namespace`; empty or `none`:
    /// no boxes).
    pub fn parse(text: &str) -> Result<BoxBy, String> {
        let mut by = BoxBy::default();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part {
                "app" => by.app = true,
                "namespace" => by.namespace = true,
                "cluster" => by.cluster = true,
                "none" => {}
                other => {
                    return Err(format!(
                        "boxBy must list app, cluster and namespace (comma-separated), not {other:?}"
                    ));
                }
            }
        }
        Ok(by)
    }
}

const UNKNOWN: &str = "unknown";

/// Adds the boxes `by` asks for to `nodes`.
pub fn add_boxes(nodes: &mut Vec<Wrapped<NodeData>>, by: BoxBy) {
    if by.app {
        add(nodes, "app", 2, |d| {
            let app = d.app.as_deref().unwrap_or_default();
            (d.parent.is_none() && !app.is_empty() && app != UNKNOWN)
                .then(|| format!("box_{}_{}_{app}", d.cluster, d.namespace))
        });
    }
    if by.namespace {
        add(nodes, "namespace", 1, |d| {
            (d.parent.is_none() && !d.namespace.is_empty() && d.namespace != UNKNOWN)
                .then(|| format!("box_{}_{}", d.cluster, d.namespace))
        });
    }
    if by.cluster {
        add(nodes, "cluster", 1, |d| {
            (d.parent.is_none() && !d.cluster.is_empty() && d.cluster != UNKNOWN)
                .then(|| format!("box_{}", d.cluster))
        });
    }
}

/// Boxes the nodes `key` gives a box id, where a box would hold at least `min` of them.
fn add(
    nodes: &mut Vec<Wrapped<NodeData>>,
    kind: &'static str,
    min: usize,
    key: impl Fn(&NodeData) -> Option<String>,
) {
    let mut members: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, node) in nodes.iter().enumerate() {
        if let Some(id) = key(&node.data) {
            members.entry(id).or_default().push(i);
        }
    }
    for (id, indices) in members {
        if indices.len() < min {
            continue;
        }
        let first = &nodes[indices[0]].data;
        let (cluster, namespace, app) = (
            first.cluster.clone(),
            if kind == "cluster" {
                String::new()
            } else {
                first.namespace.clone()
            },
            (kind == "app").then(|| first.app.clone().unwrap_or_default()),
        );
        for i in indices {
            nodes[i].data.parent = Some(id.clone());
        }
        let mut data = bare_node(id, "box", cluster, namespace);
        data.app = app;
        data.is_box = Some(kind);
        nodes.push(Wrapped { data });
    }
}

/// A node of `node_type` with nothing but its id and place set.
fn bare_node(id: String, node_type: &'static str, cluster: String, namespace: String) -> NodeData {
    NodeData {
        id,
        node_type,
        cluster,
        namespace,
        workload: None,
        app: None,
        version: None,
        service: None,
        workloads: Vec::new(),
        versions: Vec::new(),
        dest_services: Vec::new(),
        traffic: Vec::new(),
        is_root: false,
        is_outside: false,
        parent: None,
        is_box: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, cluster: &str, namespace: &str, app: &str) -> Wrapped<NodeData> {
        let mut data = bare_node(id.into(), "workload", cluster.into(), namespace.into());
        data.workload = Some(id.into());
        data.app = Some(app.into());
        Wrapped { data }
    }

    #[test]
    fn boxes_nest_app_in_namespace_in_cluster_and_leave_unknown_out() {
        let mut nodes = vec![
            node("wl_a_reviews-v1", "k", "a", "reviews"),
            node("wl_a_reviews-v2", "k", "a", "reviews"),
            node("wl_a_ratings-v1", "k", "a", "ratings"),
            node("wl_b_details-v1", "k", "b", "details"),
            node("unknown_source", UNKNOWN, UNKNOWN, ""),
        ];
        add_boxes(&mut nodes, BoxBy::parse("app,namespace,cluster").unwrap());
        let parent = |id: &str| {
            nodes
                .iter()
                .find(|n| n.data.id == id)
                .and_then(|n| n.data.parent.clone())
        };
        // Two versions of reviews share an app box; ratings alone has none.
        assert_eq!(
            parent("wl_a_reviews-v1").as_deref(),
            Some("box_k_a_reviews")
        );
        assert_eq!(
            parent("wl_a_reviews-v2").as_deref(),
            Some("box_k_a_reviews")
        );
        assert_eq!(parent("wl_a_ratings-v1").as_deref(), Some("box_k_a"));
        assert_eq!(parent("box_k_a_reviews").as_deref(), Some("box_k_a"));
        assert_eq!(parent("wl_b_details-v1").as_deref(), Some("box_k_b"));
        assert_eq!(parent("box_k_a").as_deref(), Some("box_k"));
        assert_eq!(parent("box_k").as_deref(), None);
        assert_eq!(parent("unknown_source"), None);
        let boxes: Vec<(&str, Option<&str>)> = nodes
            .iter()
            .filter(|n| n.data.node_type == "box")
            .map(|n| (n.data.id.as_str(), n.data.is_box))
            .collect();
        assert_eq!(
            boxes,
            [
                ("box_k_a_reviews", Some("app")),
                ("box_k_a", Some("namespace")),
                ("box_k_b", Some("namespace")),
                ("box_k", Some("cluster")),
            ]
        );
        assert!(BoxBy::parse("ap").is_err());
        assert_eq!(BoxBy::parse("").unwrap(), BoxBy::default());
    }
}
