//! Kiali's graph types (`graphType`), injected service nodes and Kiali's graph paths, over
//! a small mesh:
//! callers outside the mesh → productpage; productpage → reviews v1 and v2 (and to
//! details, which no workload answered: `UH`); reviews v2 → ratings; a load generator
//! that nothing calls → productpage.

use axum::http::StatusCode;
use meshtel_model::graph::EdgeRow;
use serde_json::{Value, json};

use super::{find, get, graph_app, ids, key, stats};

/// `requests` calls from `source` (empty: outside the mesh) to `workload` (empty: none
/// answered) of `service`, reported by the caller (by the callee for outside calls).
fn calls(source: &str, service: &str, workload: &str, code: u32, requests: u64) -> EdgeRow {
    let flags = if workload.is_empty() { "UH" } else { "-" };
    let reporter = if source.is_empty() {
        "destination"
    } else {
        "source"
    };
    let mut key = key(source, service, workload, code, flags, reporter);
    // Each workload's own version: `<app>-<version>`.
    let version = |w: &str| w.rsplit_once('-').map_or("", |(_, v)| v).to_string();
    if !source.is_empty() {
        key.source_version = version(source);
    }
    if !workload.is_empty() {
        key.destination_version = version(workload);
    }
    EdgeRow {
        key,
        stats: stats(requests, 7.0, if code >= 500 { requests } else { 0 }),
    }
}

/// The callee's report of `requests` of those calls answered 200 in `ms`: not counted
/// where the caller reported them, but the source of response times.
fn answered(source: &str, service: &str, workload: &str, requests: u64, ms: f64) -> EdgeRow {
    let mut row = calls(source, service, workload, 200, requests);
    row.key.reporter = "destination".into();
    row.stats = stats(requests, ms, 0);
    row
}

fn mesh() -> Vec<EdgeRow> {
    vec![
        answered("productpage-v1", "reviews", "reviews-v1", 60, 4.0),
        answered("productpage-v1", "reviews", "reviews-v2", 30, 4.0),
        calls("", "productpage", "productpage-v1", 200, 20),
        calls("loadgen-v1", "productpage", "productpage-v1", 200, 10),
        calls("productpage-v1", "reviews", "reviews-v1", 200, 60),
        calls("productpage-v1", "reviews", "reviews-v2", 200, 30),
        calls("productpage-v1", "reviews", "reviews-v2", 503, 10),
        calls("productpage-v1", "details", "", 503, 5),
        calls("reviews-v2", "ratings", "ratings-v1", 200, 40),
    ]
}

/// The graph of `query` (a 10 s window, so N requests are N/10 per second): its node
/// ids and edge ids, sorted, and the whole answer.
async fn graph(query: &str) -> (Vec<String>, Vec<String>, Value) {
    let (app, _) = graph_app(mesh(), Vec::new());
    let reply = get(&app, &format!("/api/graph?window=10s&{query}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{query}: {}", reply.body);
    let body = reply.json();
    let nodes = ids(&body["elements"]["nodes"]);
    let edges = ids(&body["elements"]["edges"]);
    (nodes, edges, body)
}

fn rate(body: &Value, edge: &str) -> Value {
    find(&body["elements"]["edges"], edge)["traffic"]["rates"]["http"].clone()
}

#[tokio::test]
async fn an_app_graph_has_a_node_per_app_whatever_its_versions() {
    let (nodes, edges, body) = graph("graphType=app").await;
    assert_eq!(body["graphType"], "app");
    assert_eq!(
        nodes,
        [
            "app_default_loadgen",
            "app_default_productpage",
            "app_default_ratings",
            "app_default_reviews",
            "svc_default_details",
            "unknown_source",
        ]
    );
    let reviews = find(&body["elements"]["nodes"], "app_default_reviews");
    assert_eq!(reviews["nodeType"], "app");
    assert_eq!(reviews["app"], "reviews");
    assert_eq!(reviews.get("version"), None, "an app node has no version");
    assert_eq!(reviews.get("workload"), None);
    // meshtel's extension: the workloads and versions the node stands for.
    assert_eq!(reviews["workloads"], json!(["reviews-v1", "reviews-v2"]));
    assert_eq!(reviews["versions"], json!(["v1", "v2"]));
    assert_eq!(reviews["traffic"][0]["rates"]["httpIn"], "10.00");
    assert_eq!(reviews["traffic"][0]["rates"]["httpOut"], "4.00");
    assert_eq!(edges.len(), 5, "{edges:?}");
    let both = "app_default_productpage->app_default_reviews:http";
    assert_eq!(rate(&body, both), "10.00", "v1 and v2 on one edge");
    let edge = find(&body["elements"]["edges"], both);
    assert_eq!(edge["traffic"]["rates"]["httpPercentErr"], "10.0");
    assert_eq!(
        edge["traffic"]["responses"],
        json!({"200": {"flags": {"-": "90.0"}, "hosts": {"reviews.default.svc.cluster.local": "90.0"}}, "503": {"flags": {"-": "10.0"}, "hosts": {"reviews.default.svc.cluster.local": "10.0"}}})
    );
}

#[tokio::test]
async fn a_versioned_app_graph_has_a_node_per_version() {
    let (nodes, _, body) = graph("graphType=versionedApp").await;
    assert_eq!(body["graphType"], "versionedApp");
    assert!(
        nodes.contains(&"vapp_default_reviews-v1".to_string()),
        "{nodes:?}"
    );
    assert!(
        nodes.contains(&"vapp_default_reviews-v2".to_string()),
        "{nodes:?}"
    );
    let v2 = find(&body["elements"]["nodes"], "vapp_default_reviews-v2");
    assert_eq!(v2["nodeType"], "app");
    assert_eq!(v2["app"], "reviews");
    assert_eq!(v2["version"], "v2");
    assert_eq!(v2["workload"], "reviews-v2");
    assert_eq!(
        rate(
            &body,
            "vapp_default_reviews-v2->vapp_default_ratings-v1:http"
        ),
        "4.00"
    );
    assert_eq!(
        rate(
            &body,
            "vapp_default_productpage-v1->vapp_default_reviews-v1:http"
        ),
        "6.00"
    );
}

#[tokio::test]
async fn injected_service_nodes_sit_between_callers_and_workloads() {
    let (nodes, edges, body) = graph("graphType=workload&injectServiceNodes=true").await;
    assert_eq!(body["graphType"], "workload");
    for service in ["productpage", "reviews", "ratings", "details"] {
        assert!(
            nodes.contains(&format!("svc_default_{service}")),
            "{nodes:?}"
        );
    }
    // Both edges of the hop carry the calls they replace.
    let into = "wl_default_productpage-v1->svc_default_reviews:http";
    assert_eq!(rate(&body, into), "10.00");
    assert_eq!(
        rate(&body, "svc_default_reviews->wl_default_reviews-v1:http"),
        "6.00"
    );
    assert_eq!(
        rate(&body, "svc_default_reviews->wl_default_reviews-v2:http"),
        "4.00"
    );
    // Response times sit on the hop into the workload, as Kiali's: none into the
    // service node.
    let edges_json = &body["elements"]["edges"];
    assert!(find(edges_json, into).get("responseTime").is_none(), "{body}");
    let hop = find(edges_json, "svc_default_reviews->wl_default_reviews-v2:http");
    assert_eq!(hop["responseTimes"]["avg"], "4.0", "{hop}");
    // No workload answered details: one edge, straight to its service node.
    assert!(edges.contains(&"wl_default_productpage-v1->svc_default_details:http".to_string()));
    assert_eq!(edges.len(), 9, "{edges:?}");
    let reviews = find(&body["elements"]["nodes"], "svc_default_reviews");
    assert_eq!(reviews["nodeType"], "service");
    assert_eq!(reviews["traffic"][0]["rates"]["httpIn"], "10.00");
    assert_eq!(reviews["traffic"][0]["rates"]["httpOut"], "10.00");
    // Without the parameter, the workload graph has no service nodes but details'.
    let (nodes, edges, _) = graph("graphType=workload").await;
    assert_eq!(nodes.iter().filter(|n| n.starts_with("svc_")).count(), 1);
    assert_eq!(edges.len(), 6);
}

#[tokio::test]
async fn a_service_graph_has_services_and_the_callers_nothing_calls() {
    let (nodes, edges, body) = graph("graphType=service").await;
    assert_eq!(body["graphType"], "service");
    assert_eq!(
        nodes,
        [
            "svc_default_details",
            "svc_default_productpage",
            "svc_default_ratings",
            "svc_default_reviews",
            "unknown_source",
            "wl_default_loadgen-v1",
        ]
    );
    assert_eq!(
        edges,
        [
            "svc_default_productpage->svc_default_details:http",
            "svc_default_productpage->svc_default_reviews:http",
            "svc_default_reviews->svc_default_ratings:http",
            "unknown_source->svc_default_productpage:http",
            "wl_default_loadgen-v1->svc_default_productpage:http",
        ]
    );
    let reviews = "svc_default_productpage->svc_default_reviews:http";
    assert_eq!(rate(&body, reviews), "10.00");
    let edge = find(&body["elements"]["edges"], reviews);
    assert_eq!(edge["traffic"]["rates"]["http5xx"], "1.00");
    // The callees' 2xx answers, not the caller's 7 ms with its 503s.
    assert_eq!(edge["responseTimes"]["avg"], "4.0", "{edge}");
    assert_eq!(
        rate(&body, "svc_default_reviews->svc_default_ratings:http"),
        "4.00"
    );
    assert_eq!(
        rate(&body, "unknown_source->svc_default_productpage:http"),
        "2.00"
    );
    let loadgen = find(&body["elements"]["nodes"], "wl_default_loadgen-v1");
    assert_eq!(loadgen["isRoot"], true);
    // The DOT graph takes the type too.
    let (app, _) = graph_app(mesh(), Vec::new());
    let dot = get(&app, "/api/graph.dot?window=10s&graphType=service")
        .await
        .body;
    assert!(
        dot.contains(
            "\"productpage_(unknown)\" -> \"reviews_(unknown)\" [label=\"reqs/sec: 10.000000\"];"
        ),
        "{dot}"
    );
}

#[tokio::test]
async fn a_bad_inject_service_nodes_is_refused() {
    let (app, _) = graph_app(mesh(), Vec::new());
    let reply = get(&app, "/api/graph?injectServiceNodes=yes").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("injectServiceNodes"), "{}", reply.body);
}

/// The edge ids of a Kiali path's graph.
async fn edges_at(path: &str) -> Vec<String> {
    let (app, _) = graph_app(mesh(), Vec::new());
    let reply = get(&app, path).await;
    assert_eq!(reply.status, StatusCode::OK, "{path}: {}", reply.body);
    ids(&reply.json()["elements"]["edges"])
}

#[tokio::test]
async fn kiali_paths_answer_the_namespaces_graph_and_node_graphs() {
    let (_, all, _) = graph("graphType=app").await;
    assert_eq!(
        edges_at("/api/namespaces/graph?namespaces=default&graphType=app&duration=10s").await,
        all
    );
    assert_eq!(
        edges_at("/api/namespaces/default/workloads/reviews-v2/graph").await,
        [
            "wl_default_productpage-v1->wl_default_reviews-v2:http",
            "wl_default_reviews-v2->wl_default_ratings-v1:http",
        ]
    );
    assert_eq!(
        edges_at("/api/namespaces/default/applications/reviews/graph?graphType=app").await,
        [
            "app_default_productpage->app_default_reviews:http",
            "app_default_reviews->app_default_ratings:http",
        ]
    );
    assert_eq!(
        edges_at("/api/namespaces/default/applications/reviews/versions/v1/graph").await,
        ["wl_default_productpage-v1->wl_default_reviews-v1:http"]
    );
    assert_eq!(
        edges_at("/api/namespaces/default/services/details/graph").await,
        ["wl_default_productpage-v1->svc_default_details:http"]
    );
    assert!(
        edges_at("/api/namespaces/other/workloads/reviews-v2/graph")
            .await
            .is_empty()
    );
    // A path that does not decode gets Kiali's JSON error too.
    let (app, _) = graph_app(mesh(), Vec::new());
    let reply = get(&app, "/api/namespaces/default/workloads/%ff/graph").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    assert!(reply.json()["error"].is_string(), "{}", reply.body);
}

/// A workload's app is the `app` label its proxy reports, whatever its services are
/// called and whether it calls anything: one app node for a workload answering for two
/// services under an app of another name.
#[tokio::test]
async fn an_app_node_is_keyed_by_the_app_label_the_callee_reported() {
    let row = |service: &str, requests| {
        let mut row = calls("frontend-v1", service, "be-v1", 200, requests);
        row.key.destination_app = "be".into();
        row
    };
    let (app, _) = graph_app(vec![row("backend", 20), row("backend-alt", 10)], Vec::new());
    let body = get(&app, "/api/graph?window=10s&graphType=app")
        .await
        .json();
    let edges = body["elements"]["edges"].as_array().unwrap();
    assert_eq!(edges.len(), 1, "{edges:?}");
    assert_eq!(
        rate(&body, "app_default_frontend->app_default_be:http"),
        "3.00"
    );
    let workloads = get(&app, "/api/graph?window=10s").await.json();
    let be = find(&workloads["elements"]["nodes"], "wl_default_be-v1");
    assert_eq!(be["app"], "be");
    let node = get(
        &app,
        "/api/namespaces/default/applications/be/graph?graphType=app&duration=10s",
    )
    .await
    .json();
    assert_eq!(node["elements"]["edges"].as_array().unwrap().len(), 1);
}

/// Kiali's paths read as Kiali does: a 10-minute default window, Go's booleans, nodes
/// outside the namespaces asked for marked, node graphs of the service type not reduced
/// (the node stays, with the services around it), and a service node carries its
/// service.
#[tokio::test]
async fn kiali_paths_follow_kialis_conventions() {
    let (app, _) = graph_app(mesh(), Vec::new());
    let body = get(&app, "/api/namespaces/graph?namespaces=default")
        .await
        .json();
    assert_eq!(body["duration"], 600, "Kiali's default window");
    assert_eq!(get(&app, "/api/graph").await.json()["duration"], 300);
    for yes in ["1", "t", "True", "TRUE"] {
        let (nodes, _, _) = graph(&format!("injectServiceNodes={yes}")).await;
        assert!(nodes.contains(&"svc_default_reviews".to_string()), "{yes}");
    }
    let (nodes, _, _) = graph("injectServiceNodes=0").await;
    assert!(!nodes.contains(&"svc_default_reviews".to_string()));

    // A node graph of the service type keeps its workload, with services injected.
    let node = get(
        &app,
        "/api/namespaces/default/workloads/reviews-v2/graph?graphType=service&duration=10s",
    )
    .await
    .json();
    let ids: Vec<&str> = node["elements"]["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["data"]["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"svc_default_reviews->wl_default_reviews-v2:http")
            && ids.contains(&"wl_default_reviews-v2->svc_default_ratings:http"),
        "{ids:?}"
    );

    // The UH call to details has no workload: a service node, with its own service,
    // and no latency to show.
    let (_, _, body) = graph("").await;
    let details = find(&body["elements"]["nodes"], "svc_default_details");
    assert_eq!(details["destServices"][0]["name"], "details");
    let mut outside = body;
    let uh = find(
        &outside["elements"]["edges"],
        "wl_default_productpage-v1->svc_default_details:http",
    );
    // No callee answered them: no callee-reported 2xx time, as in Kiali.
    assert!(uh.get("responseTime").is_none(), "{uh}");
    outside = get(&app, "/api/graph?window=10s&namespaces=other")
        .await
        .json();
    assert_eq!(outside["elements"]["nodes"], json!([]));
}

#[tokio::test]
async fn nodes_outside_the_namespaces_asked_for_are_marked() {
    let mut rows = mesh();
    let mut remote = calls("productpage-v1", "reviews", "reviews-v1", 200, 10);
    remote.key.destination_namespace = "other".into();
    rows.push(remote);
    // A local reply to a host no service is known by.
    let mut nowhere = calls("productpage-v1", "", "", 503, 4);
    nowhere.key.destination_service = String::new();
    nowhere.key.destination_namespace = String::new();
    nowhere.stats = super::stats(4, 0.2, 4);
    rows.push(nowhere);
    let (app, _) = graph_app(rows, Vec::new());
    let body = get(&app, "/api/graph?window=10s&namespaces=default")
        .await
        .json();
    let nodes = &body["elements"]["nodes"];
    assert_eq!(find(nodes, "wl_other_reviews-v1")["isOutside"], true);
    assert_eq!(find(nodes, "wl_default_reviews-v1").get("isOutside"), None);
    assert_eq!(find(nodes, "unknown_source").get("isOutside"), None);
    let edge = find(
        &body["elements"]["edges"],
        "wl_default_productpage-v1->svc_unknown_unknown:http",
    );
    assert_eq!(
        edge["traffic"]["responses"]["503"]["hosts"],
        json!({"unknown": "100.0"})
    );
}

/// Kiali's `boxBy`: reviews' two versions in an app box, inside the namespace's box;
/// an unknown list item is a 400 naming it.
#[tokio::test]
async fn box_by_adds_kialis_box_nodes() {
    let (nodes, _, body) = graph("graphType=versionedApp&boxBy=app,namespace").await;
    assert!(nodes.contains(&"box_Kubernetes_default_reviews".to_string()), "{nodes:?}");
    let all = &body["elements"]["nodes"];
    let reviews_box = find(all, "box_Kubernetes_default_reviews");
    assert_eq!(reviews_box["nodeType"], "box");
    assert_eq!(reviews_box["isBox"], "app");
    assert_eq!(reviews_box["app"], "reviews");
    assert_eq!(reviews_box["parent"], "box_Kubernetes_default");
    for member in all.as_array().unwrap().iter().map(|n| &n["data"]) {
        if member["app"] == "reviews" && member["nodeType"] != "box" {
            assert_eq!(member["parent"], "box_Kubernetes_default_reviews", "{member}");
        }
    }
    assert_eq!(find(all, "box_Kubernetes_default")["isBox"], "namespace");
    assert!(find(all, "unknown_source").get("parent").is_none());
    // Without boxBy, no boxes.
    let (plain, _, _) = graph("graphType=versionedApp").await;
    assert!(plain.iter().all(|n| !n.starts_with("box_")), "{plain:?}");
    let (app, _) = super::graph_app(mesh(), Vec::new());
    let reply = get(&app, "/api/graph?window=10s&boxBy=apps").await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST);
    assert!(reply.body.contains("boxBy"), "{}", reply.body);
}

/// Kiali's `rateHttp`/`rateGrpc`/`rateTcp`: `none` leaves a protocol out; what meshtel
/// cannot show (gRPC message rates) and unknown values are 400s naming the parameter.
#[tokio::test]
async fn rate_parameters_leave_protocols_out_or_are_refused_by_name() {
    let (_, edges, _) = graph("rateHttp=requests&rateGrpc=none&rateTcp=sent").await;
    assert_eq!(edges.len(), 6, "{edges:?}");
    let (nodes, edges, _) = graph("rateHttp=none").await;
    assert!(edges.is_empty() && nodes.is_empty(), "{nodes:?} {edges:?}");
    let (app, _) = super::graph_app(mesh(), Vec::new());
    for (query, named) in [
        ("rateGrpc=sent", "rateGrpc=sent needs gRPC message counts"),
        ("rateHttp=xyz", "rateHttp must be requests or none"),
        ("rateTcp=bogus", "rateTcp must be sent, received, total or none"),
    ] {
        let reply = get(&app, &format!("/api/graph?window=10s&{query}")).await;
        assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{query}");
        assert!(reply.body.contains(named), "{query}: {}", reply.body);
    }
}
