//! Building Kiali's JSON graph (`/api/graph`) from edge rows, for a mesh of one caller
//! and N callees (N + 1 nodes, N edges, each reported by both sides), and serializing
//! it: the work the query service does after its SQL read.
//!
//! ```text
//! cargo bench -p meshtel-query --bench graph
//! ```
//!
//! Prints criterion's figures, then `N nodes: M ms per graph` for 2,000, 20,000 and
//! 100,000 callees.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::Criterion;
use meshtel_model::graph::{EdgeKey, EdgeRow, EdgeStats};
use meshtel_query::graph::build::{
    CalleeRows, Graph, GraphFilter, GraphShape, one_reporter_per_pair,
};
use meshtel_query::graph::json::{ResponseTime, to_json};

fn rows(callees: usize) -> Vec<EdgeRow> {
    let stats = EdgeStats {
        requests: 10,
        duration_sum_ms: 50.0,
        request_bytes: 1_000,
        response_bytes: 10_000,
        ..EdgeStats::default()
    };
    let mut rows = Vec::with_capacity(callees * 2);
    for i in 0..callees {
        for reporter in ["source", "destination"] {
            let key = EdgeKey {
                source_workload: "fe-v1".into(),
                source_namespace: "huge".into(),
                source_app: "fe".into(),
                source_version: "v1".into(),
                destination_service: format!("s{i}.huge.svc.cluster.local"),
                destination_workload: format!("w{i}-v1"),
                destination_namespace: "huge".into(),
                destination_version: "v1".into(),
                destination_app: format!("w{i}"),
                protocol: "http".into(),
                response_code: 200,
                response_flags: "-".into(),
                reporter: reporter.into(),
                ..EdgeKey::default()
            };
            rows.push(EdgeRow {
                key,
                stats: stats.clone(),
            });
        }
    }
    rows
}

/// The graph's JSON bytes, as the handler builds them from rows read.
fn graph_json(rows: &[EdgeRow]) -> usize {
    let callee = CalleeRows::of(rows);
    let rows = one_reporter_per_pair(rows.to_vec());
    let graph = Graph::build(
        &rows,
        &callee,
        &GraphFilter::default(),
        GraphShape::default(),
    );
    let json = to_json(
        &graph,
        1_800_000_000,
        300,
        300.0,
        ResponseTime::Quantile(0.95),
    );
    serde_json::to_vec(&json).map_or(0, |bytes| bytes.len())
}

fn main() {
    let mut criterion = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(10)
        .configure_from_args();
    let sizes = [2_000, 20_000, 100_000];
    let inputs: Vec<(usize, Vec<EdgeRow>)> = sizes.iter().map(|&n| (n, rows(n))).collect();
    for (n, rows) in &inputs {
        criterion.bench_function(&format!("graph_json_{n}_callees"), |b| {
            b.iter(|| black_box(graph_json(rows)))
        });
    }
    criterion.final_summary();
    for (n, rows) in &inputs {
        let rounds = 3;
        let started = Instant::now();
        for _ in 0..rounds {
            black_box(graph_json(rows));
        }
        let ms = started.elapsed().as_secs_f64() * 1e3 / f64::from(rounds);
        println!("{} nodes: {ms:.0} ms per graph", n + 1);
    }
}
