//! Nothing acknowledged is lost: SIGKILL while requests are in flight, WAL replay
//! without duplicates, a collector and a query process sharing a data directory, and
//! a second writer refused on it.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;

use crate::roundtrip::jaeger_trace_id;
use crate::support::*;

/// Spans in each request of the kill test (one trace per request).
const SPANS_PER_REQUEST: usize = 8;

/// One trace of `SPANS_PER_REQUEST` spans (a root and its children) for `service`.
fn trace_request(service: &str, trace_id: &[u8]) -> ExportTraceServiceRequest {
    let start = now_nanos() - 5_000_000_000;
    let root = random_span_id();
    let mut spans = vec![simple_span(trace_id, &root, None, "root", start, 9_000_000)];
    for i in 1..SPANS_PER_REQUEST {
        spans.push(simple_span(
            trace_id,
            &random_span_id(),
            Some(&root),
            &format!("child-{i}"),
            start + i as u64 * 1_000,
            1_000_000,
        ));
    }
    ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(service, spans)],
    }
}

/// Acknowledged traces: Jaeger trace id → span ids.
type Acked = Arc<Mutex<BTreeMap<String, Vec<String>>>>;

/// Fetches `ids` through `/api/traces?traceID=…` in batches and returns the span ids
/// found per trace, plus the ids reported missing.
async fn fetch_many(m: &Meshtel, ids: &[String]) -> (BTreeMap<String, Vec<String>>, Vec<String>) {
    let mut found = BTreeMap::new();
    let mut missing = Vec::new();
    for batch in ids.chunks(40) {
        let query: Vec<String> = batch.iter().map(|id| format!("traceID={id}")).collect();
        let body = get_json(&m.query_url(&format!("/api/traces?{}", query.join("&")))).await;
        for trace in body["data"].as_array().unwrap() {
            let spans: Vec<String> = trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["spanID"].as_str().unwrap().to_string())
                .collect();
            found.insert(trace["traceID"].as_str().unwrap().to_string(), spans);
        }
        if let Some(errors) = body["errors"].as_array() {
            for e in errors {
                assert_eq!(e["msg"], "trace not found", "{e}");
                missing.push(e["traceID"].as_str().unwrap().to_string());
            }
        }
    }
    (found, missing)
}

/// Traces of `service` found by one search (whole traces, so their span ids too).
async fn search_all(m: &Meshtel, service: &str) -> BTreeMap<String, Vec<String>> {
    let now_us = now_nanos() / 1_000;
    let body = get_json(&m.query_url(&format!(
        "/api/traces?service={service}&limit=1500&start={}&end={}",
        now_us - 3_600_000_000,
        now_us + 60_000_000
    )))
    .await;
    body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|trace| {
            let spans = trace["spans"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["spanID"].as_str().unwrap().to_string())
                .collect();
            (trace["traceID"].as_str().unwrap().to_string(), spans)
        })
        .collect()
}

/// Asserts every acknowledged span is served: found by a search of its service, and
/// (for any the search did not return, or a sample) fetched by trace id.
async fn assert_all_acked_present(m: &Meshtel, acked: &BTreeMap<String, Vec<String>>) {
    let searched = search_all(m, "durable").await;
    let by_id: Vec<String> = acked
        .keys()
        .enumerate()
        .filter(|(i, id)| i % 10 == 0 || !searched.contains_key(*id))
        .map(|(_, id)| id.clone())
        .collect();
    if acked.len() <= 1500 {
        let unsearchable: Vec<&String> = acked
            .keys()
            .filter(|id| !searched.contains_key(*id))
            .collect();
        assert!(
            unsearchable.is_empty(),
            "search misses acknowledged traces {unsearchable:?}"
        );
    }
    let (mut found, missing) = fetch_many(m, &by_id).await;
    for (id, spans) in searched {
        found.entry(id).or_insert(spans);
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged traces lost after SIGKILL, e.g. {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(5)]
    );
    let mut lost_spans = 0;
    for (id, spans) in acked {
        let got = found
            .get(id)
            .unwrap_or_else(|| panic!("trace {id} not returned"));
        for s in spans {
            if !got.contains(s) {
                lost_spans += 1;
            }
        }
        assert_eq!(
            got.len(),
            spans.len(),
            "trace {id}: spans {got:?}, sent {spans:?}"
        );
    }
    assert_eq!(lost_spans, 0, "acknowledged spans lost");
}

/// Sends from `tasks` concurrent gRPC clients until the server goes away or
/// `max_requests` each; records every acknowledged trace.
fn start_senders(
    m: &Meshtel,
    service: &str,
    tasks: usize,
    max_requests: usize,
    acked: &Acked,
) -> Vec<tokio::task::JoinHandle<usize>> {
    (0..tasks)
        .map(|_| {
            let addr = m.grpc.unwrap();
            let acked = acked.clone();
            let service = service.to_string();
            tokio::spawn(async move {
                let mut client = grpc_client(addr).await;
                let mut sent = 0;
                for _ in 0..max_requests {
                    let trace_id = random_trace_id();
                    let request = trace_request(&service, &trace_id);
                    let span_ids: Vec<String> = request.resource_spans[0].scope_spans[0]
                        .spans
                        .iter()
                        .map(|s| hex::encode(&s.span_id))
                        .collect();
                    match client.export(request).await {
                        Ok(response) => {
                            assert_eq!(response.into_inner().partial_success, None);
                            acked
                                .lock()
                                .unwrap()
                                .insert(jaeger_trace_id(&trace_id), span_ids);
                            sent += 1;
                        }
                        Err(_) => break,
                    }
                }
                sent
            })
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_concurrent_ingest_loses_no_acknowledged_span() {
    let dir = TestDir::new();
    let acked: Acked = Arc::default();
    let rounds: [&[&str]; 3] = [
        &["--wal-sync", "interval", "--flush-interval", "1h"],
        &["--wal-sync", "always", "--flush-interval", "1h"],
        &["--wal-sync", "interval", "--flush-interval", "1h"],
    ];
    for (round, flags) in rounds.iter().enumerate() {
        let t0 = Instant::now();
        let m = Meshtel::start(&dir, Role::Serve, flags).await;
        eprintln!("round {round}: started in {:?}", t0.elapsed());
        if round > 0 {
            // What earlier rounds acknowledged was replayed from the WAL.
            let snapshot = acked.lock().unwrap().clone();
            assert_all_acked_present(&m, &snapshot).await;
            eprintln!(
                "round {round}: verified {} traces at {:?}",
                snapshot.len(),
                t0.elapsed()
            );
        }
        let before = acked.lock().unwrap().len();
        let senders = start_senders(&m, "durable", 4, 5_000, &acked);
        // Kill at a random moment once some requests have been acknowledged.
        eventually(
            Duration::from_secs(10),
            "first acknowledgements",
            || async { (acked.lock().unwrap().len() >= before + 10).then_some(()) },
        )
        .await;
        let delay = Duration::from_millis(50 + u64::from(rand::random::<u16>() % 400));
        tokio::time::sleep(delay).await;
        m.kill9();
        for sender in senders {
            tokio::time::timeout(Duration::from_secs(20), sender)
                .await
                .expect("sender stops once the server is gone")
                .expect("sender task");
        }
        let now = acked.lock().unwrap().len();
        eprintln!(
            "round {round}: {} traces acknowledged before SIGKILL",
            now - before
        );
        assert!(now > before, "round {round} acknowledged nothing");
    }
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    let snapshot = acked.lock().unwrap().clone();
    assert_all_acked_present(&m, &snapshot).await;
    m.stop().await;
}

/// Spans the store holds, from `/metrics` (head + blocks).
async fn stored_spans(m: &Meshtel) -> u64 {
    let text = get(&m.http_url("/metrics")).await.text();
    let metric = |name: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("{name} missing from /metrics:\n{text}")) as u64
    };
    metric("meshtel_store_head_spans") + metric("meshtel_store_block_spans")
}

/// Spans of a trace as `/api/v3` returns them (no duplicate filtering in between).
async fn v3_span_count(m: &Meshtel, trace_hex: &str) -> usize {
    let body = get_json(&m.query_url(&format!("/api/v3/traces/{trace_hex}"))).await;
    body["result"]["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap().iter())
        .map(|ss| ss["spans"].as_array().unwrap().len())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wal_replay_after_graceful_stop_and_after_kill_has_no_duplicates() {
    let dir = TestDir::new();
    let flags = ["--wal-sync", "interval", "--flush-interval", "1h"];
    let m = Meshtel::start(&dir, Role::Serve, &flags).await;
    let mut traces = Vec::new();
    for _ in 0..5 {
        let id = random_trace_id();
        export_grpc(m.grpc.unwrap(), trace_request("replay", &id)).await;
        traces.push(jaeger_trace_id(&id));
    }
    let total = (traces.len() * SPANS_PER_REQUEST) as u64;
    assert_eq!(stored_spans(&m).await, total);

    let check = |m: Meshtel, what: &'static str| {
        let traces = traces.clone();
        async move {
            assert_eq!(stored_spans(&m).await, total, "stored spans {what}");
            for t in &traces {
                assert_eq!(
                    v3_span_count(&m, t).await,
                    SPANS_PER_REQUEST,
                    "v3 spans of {t} {what}"
                );
                let trace = fetch_trace(&m, t).await;
                assert_eq!(trace["spans"].as_array().unwrap().len(), SPANS_PER_REQUEST);
            }
            m
        }
    };

    // Only in the WAL, then SIGKILL: replayed once.
    m.kill9();
    let m = Meshtel::start(&dir, Role::Serve, &flags).await;
    let m = check(m, "after SIGKILL (WAL replay)").await;
    // SIGKILL again right after the replay: still once.
    m.kill9();
    let m = Meshtel::start(&dir, Role::Serve, &flags).await;
    let m = check(m, "after a second SIGKILL").await;
    // Graceful stop flushes to a block; the WAL must not be replayed on top of it.
    m.stop().await;
    assert!(parquet_files(&dir.data_dir()) > 0);
    let m = Meshtel::start(&dir, Role::Serve, &flags).await;
    let m = check(m, "after a graceful stop (block)").await;
    // And a SIGKILL after that: the block plus an empty WAL, still no duplicates.
    m.kill9();
    let m = Meshtel::start(&dir, Role::Serve, &flags).await;
    let m = check(m, "after a graceful stop then SIGKILL").await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_and_query_processes_share_a_data_dir() {
    let dir = TestDir::new();
    let collector = Meshtel::start(&dir, Role::Collector, &["--flush-interval", "200ms"]).await;
    assert!(
        collector.query.is_none(),
        "a collector has no query listener"
    );
    let grpc = collector.grpc.unwrap();
    let query = Meshtel::start(&dir, Role::Query, &[]).await;
    assert!(
        query.grpc.is_none() && query.http.is_none(),
        "a query process does not ingest"
    );
    // Its own probes, as it has no OTLP port to probe.
    assert_eq!(get(&query.query_url("/readyz")).await.status, 200);

    let id = random_trace_id();
    let started = Instant::now();
    export_grpc(grpc, trace_request("split-roles", &id)).await;
    let hex_id = jaeger_trace_id(&id);
    let trace = wait_for_trace(&query, &hex_id, SPANS_PER_REQUEST).await;
    eprintln!(
        "searchable in the query process after {:?}",
        started.elapsed()
    );
    assert_eq!(trace["processes"]["p1"]["serviceName"], "split-roles");

    let services = eventually(
        Duration::from_secs(10),
        "service listed by the query process",
        || async {
            let body = get_json(&query.query_url("/api/services")).await;
            let list: Vec<Value> = body["data"].as_array().unwrap().clone();
            list.contains(&Value::from("split-roles")).then_some(list)
        },
    )
    .await;
    assert!(!services.is_empty());
    let now_us = now_nanos() / 1_000;
    let search = get_json(&query.query_url(&format!(
        "/api/traces?service=split-roles&start={}&end={}",
        now_us - 3_600_000_000,
        now_us + 60_000_000
    )))
    .await;
    assert_eq!(search["data"].as_array().unwrap().len(), 1, "{search}");
    assert_eq!(search["data"][0]["traceID"], hex_id.as_str());

    // The query process's own metrics for a scraper, the UI's page for a browser.
    let metrics = get(&query.query_url("/metrics")).await;
    assert_eq!(metrics.status, 200);
    let text = metrics.text();
    assert!(
        text.contains("meshtel_store_blocks ")
            && text.contains(
                "meshtel_http_connections_timed_out_total{listener=\"query\",phase=\"headers\"} 0"
            ),
        "{text}"
    );
    // It opened the collector's block, and holds that block's trace id filter.
    let index_bytes = text
        .lines()
        .find_map(|l| l.strip_prefix("meshtel_store_trace_index_bytes "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(index_bytes.is_some_and(|b| b > 0), "{text}");
    let page = http()
        .get(query.query_url("/metrics"))
        .header("accept", "text/html,application/xhtml+xml,*/*;q=0.8")
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<html"), "the UI page");

    query.stop().await;
    collector.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_writer_on_a_data_dir_is_refused_while_a_query_process_runs_beside_it() {
    let dir = TestDir::new();
    let first = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "200ms"]).await;
    let id = random_trace_id();
    export_grpc(first.grpc.unwrap(), trace_request("one-writer", &id)).await;
    let data_dir = std::fs::canonicalize(dir.data_dir()).unwrap();
    for role in [Role::Serve, Role::Collector] {
        let (status, log) = Meshtel::run_expecting_exit(&dir, role, &[]).await;
        assert!(!status.success(), "a second {role:?} started:\n{log}");
        assert!(
            log.contains(&format!(
                "data directory {} is in use by another meshtel process (pid {})",
                data_dir.display(),
                first.pid()
            )),
            "{role:?}:\n{log}"
        );
    }
    // The reader takes no lock: it runs beside the writer and sees its blocks.
    let query = Meshtel::start(&dir, Role::Query, &[]).await;
    let hex_id = jaeger_trace_id(&id);
    wait_for_trace(&query, &hex_id, SPANS_PER_REQUEST).await;
    // The writer was not disturbed.
    let trace = fetch_trace(&first, &hex_id).await;
    assert_eq!(trace["spans"].as_array().unwrap().len(), SPANS_PER_REQUEST);
    query.stop().await;
    first.stop().await;
    // Its lock goes with it.
    let again = Meshtel::serve(&dir).await;
    again.stop().await;
}

/// A stop that cannot flush (here a `blocks/` directory made immutable under the
/// running process) waits up to 60 s for the disk; Ctrl-C again stops it at once
/// (status 130), and the spans it acknowledged come back from the WAL at the next start.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_ctrl_c_stops_at_once_and_loses_nothing_acknowledged() {
    let dir = TestDir::new();
    let flags = ["--wal-sync", "interval", "--flush-interval", "1h"];
    let m = Meshtel::start(&dir, Role::Serve, &flags).await;
    let mut traces = Vec::new();
    for _ in 0..3 {
        let id = random_trace_id();
        export_grpc(m.grpc.unwrap(), trace_request("twice", &id)).await;
        traces.push(jaeger_trace_id(&id));
    }
    let blocks = dir.data_dir().join("blocks");
    let immutable = std::process::Command::new("chattr")
        .arg("+i")
        .arg(&blocks)
        .status()
        .is_ok_and(|s| s.success())
        && std::fs::File::create(blocks.join("probe")).is_err();
    if !immutable {
        let _ = std::process::Command::new("chattr")
            .arg("-i")
            .arg(&blocks)
            .status();
        m.stop().await;
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "cannot make blocks/ unwritable here (needs chattr as root)"
        );
        eprintln!(
            "SKIPPED a_second_ctrl_c_stops_at_once_and_loses_nothing_acknowledged: no chattr as root here"
        );
        return;
    }
    let started = std::time::Instant::now();
    let (status, log) = m.interrupt_twice().await;
    let _ = std::process::Command::new("chattr")
        .arg("-i")
        .arg(&blocks)
        .status();
    assert_eq!(status.code(), Some(130), "{log}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(30),
        "took {:?}",
        started.elapsed()
    );
    assert!(log.contains("second signal"), "{log}");
    let m = Meshtel::start(&dir, Role::Serve, &flags).await;
    assert_eq!(
        stored_spans(&m).await,
        (traces.len() * SPANS_PER_REQUEST) as u64
    );
    m.stop().await;
}
