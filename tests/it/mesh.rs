//! The sidecar end to end (issue 3): real `meshtel serve` and `meshtel proxy`
//! processes, in-process upstream apps, traffic only on 127.0.0.1.
//!
//! ```text
//!  test ──► productpage proxy :inbound ──► productpage app ── Host: reviews:9080,
//!                                                │            traceparent copied
//!           productpage proxy :outbound ◄────────┘
//!                 │ (mesh file: reviews → reviews proxy's inbound)
//!                 ▼
//!           reviews proxy :inbound ──► reviews app (200; /fail → 500)
//!
//!  every proxy ── Report stream (every request) + OTLP (spans) ──► meshtel serve
//!                 ──► /metrics (istio_*), /api/graph(.dot), /api/traces
//! ```
//!
//! - [`bookinfo::bookinfo_metrics_graph_and_traces_then_collector_down`] checks
//!   exact `istio_requests_total` (and histogram `_count`s) per label set, `promtool
//!   check metrics`, graph edges (JSON and DOT), `/api/dependencies`, one trace across
//!   both proxies, then the collector stopped: traffic unaffected, records queued or
//!   dropped and counted.
//! - [`http2_grpc::http2_grpc_and_streamed_bodies_pass_through_a_proxy_pair`] checks
//!   h2c, gRPC with trailers, an unknown service, a duplex stream that only completes
//!   if neither proxy buffers the body; the collector's gRPC series and byte counts.
//! - [`no_collector::a_proxy_without_a_collector_serves_and_stops`] checks a proxy
//!   whose collector was never there: traffic served, records dropped and counted, a
//!   prompt clean stop.
//! - [`scrape::metrics_are_gzipped_for_prometheus_and_edge_overflow_is_counted`]
//!   checks `/metrics` gzipped as Prometheus asks for it, and the graph's edge cap
//!   overflow counted.
//! - [`prometheus_server::istio_dashboards_promql_against_a_prometheus_server`] has a
//!   real Prometheus server scrape the collector and answers the stock Istio
//!   dashboards' PromQL (rates, success rates, latency and size quantiles,
//!   `label_join`, template variables) and Kiali's graph queries to the value.
//!
//! This file holds the shared scenario (the mesh file, the Bookinfo apps productpage
//! and reviews), also used by the browser test [`crate::ui`]; [`istio_metrics`] the
//! `istio_*` series expected of it; each test has its own file.

mod bookinfo;
mod http2_grpc;
mod istio_metrics;
mod istio_mixer;
mod no_collector;
mod prometheus_server;
mod quota;
mod report_bounds;
mod scrape;
mod traffic_routing;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing;
use meshtel_model::mixer::mixer_client::MixerClient;
use meshtel_model::mixer::{ReportRequest, RequestRecord, Workload};

use crate::support::*;

/// Requests the test sends to productpage: every fifth one asks for `/productpage/fail`
/// (productpage still answers 200, as Bookinfo does when reviews fails).
const REQUESTS: usize = 50;
const FAILING: usize = 10;
/// Requests sent while the collector is down.
const OUTAGE_REQUESTS: usize = 30;

/// The environment, read through one function (no `set_var` in tests).
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Replaces the mesh file atomically (the proxies poll it every second).
pub(crate) fn write_mesh(path: &Path, yaml: &str) {
    let tmp = path.with_extension("yaml.tmp");
    std::fs::write(&tmp, yaml).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// The mesh file of productpage v1 → reviews v1, each behind its proxy's inbound address.
pub(crate) fn productpage_reviews_mesh(productpage: SocketAddr, reviews: SocketAddr) -> String {
    format!(
        "services:\n\
         \x20 - name: productpage\n\
         \x20   port: 9080\n\
         \x20   endpoints:\n\
         \x20     - address: {productpage}\n\
         \x20       labels: {{ app: productpage, version: v1 }}\n\
         \x20 - name: reviews\n\
         \x20   port: 9080\n\
         \x20   endpoints:\n\
         \x20     - address: {reviews}\n\
         \x20       workload: reviews-v1\n\
         \x20       labels: {{ app: reviews, version: v1 }}\n"
    )
}

/// Waits until `proxy` has swapped in a new mesh file `reloads` times.
pub(crate) async fn wait_for_mesh_reload(proxy: &MeshProxy, reloads: f64) {
    eventually(
        Duration::from_secs(10),
        "the proxy reloads the mesh file",
        || async {
            let ok = proxy
                .stat("meshtel_proxy_mesh_reloads_total", &[("result", "ok")])
                .await;
            (ok >= reloads).then_some(())
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------
// The apps
// ---------------------------------------------------------------------------------------

/// Headers an app propagates on its outgoing calls (Istio's list, trimmed).
const PROPAGATED: [&str; 5] = [
    "traceparent",
    "tracestate",
    "x-request-id",
    "x-b3-traceid",
    "x-b3-spanid",
];

#[derive(Clone)]
pub(crate) struct Productpage {
    /// The outbound listener of productpage's proxy, known once the proxy runs.
    pub(crate) outbound: Arc<OnceLock<SocketAddr>>,
    pub(crate) client: reqwest::Client,
}

/// `/productpage` calls `reviews /reviews/0`, `/productpage/fail` calls `reviews
/// /fail`, both through the sidecar's outbound listener, copying the trace headers.
pub(crate) async fn productpage(
    State(app): State<Productpage>,
    uri: Uri,
    headers: HeaderMap,
) -> Response {
    let reviews_path = if uri.path().ends_with("/fail") {
        "/fail"
    } else {
        "/reviews/0"
    };
    let outbound = *app
        .outbound
        .get()
        .expect("the proxy runs before any traffic");
    let mut call = app
        .client
        .get(format!("http://{outbound}{reviews_path}"))
        .header("host", "reviews:9080");
    for name in PROPAGATED {
        if let Some(value) = headers.get(name) {
            call = call.header(name, value.clone());
        }
    }
    match call.send().await {
        Ok(reply) => {
            let status = reply.status().as_u16();
            let body = reply.text().await.unwrap_or_default();
            (
                StatusCode::OK,
                format!("productpage: reviews {status}: {body}"),
            )
                .into_response()
        }
        Err(error) => (
            StatusCode::BAD_GATEWAY,
            format!("productpage: reviews unreachable: {error}"),
        )
            .into_response(),
    }
}

/// reviews refuses (418) requests that show the proxy misbehaving: peer identity
/// headers not stripped, or no `x-request-id`.
fn reviews_request_problem(headers: &HeaderMap) -> Option<String> {
    if let Some(name) = headers
        .keys()
        .find(|k| k.as_str().starts_with("x-meshtel-peer"))
    {
        return Some(format!("peer header {name} reached the app"));
    }
    if !headers.contains_key("x-request-id") {
        return Some("no x-request-id".to_string());
    }
    if !headers.contains_key("traceparent") {
        return Some("no traceparent".to_string());
    }
    None
}

pub(crate) fn reviews_app() -> Router {
    Router::new()
        .route(
            "/reviews/{id}",
            routing::get(|headers: HeaderMap| async move {
                match reviews_request_problem(&headers) {
                    Some(problem) => (StatusCode::IM_A_TEAPOT, problem),
                    None => (StatusCode::OK, "reviews-v1: ★★★★☆".to_string()),
                }
            }),
        )
        .route(
            "/fail",
            routing::get(|headers: HeaderMap| async move {
                match reviews_request_problem(&headers) {
                    Some(problem) => (StatusCode::IM_A_TEAPOT, problem),
                    None => (
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "reviews-v1: database unavailable".to_string(),
                    ),
                }
            }),
        )
}

/// Sends `records` as one batch on a Report stream of `m` and checks every one was
/// accepted.
pub(crate) async fn report(m: &Meshtel, records: Vec<RequestRecord>) {
    let count = records.len() as u64;
    let mut client = MixerClient::connect(format!("http://{}", m.grpc.unwrap()))
        .await
        .unwrap();
    let batch = ReportRequest {
        proxy_id: "test".into(),
        records,
        sent_unix_nano: now_nanos(),
        ..Default::default()
    };
    let mut acks = client
        .report(futures::stream::iter([batch]))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(acks.message().await.unwrap().unwrap().accepted, count);
}

/// Workload `<app>-v1` of `app` version v1 in namespace `default`, cluster
/// `Kubernetes`, as a Report record names it.
pub(crate) fn workload(app: &str) -> Workload {
    Workload {
        name: format!("{app}-v1"),
        namespace: "default".into(),
        app: app.into(),
        version: "v1".into(),
        cluster: "Kubernetes".into(),
        ..Default::default()
    }
}
