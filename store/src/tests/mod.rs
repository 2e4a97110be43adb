//! Store tests over a real data directory: write, search, flush, compact, reopen.

use std::path::Path;
use std::time::Duration;

use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::span::Event;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

use super::*;
use crate::schema::span_schema;
use meshtel_model::{DependencyLink, SpanKind, TraceQuery, TraceReader};

mod adopt;
mod data_dir;
mod format;
mod lifecycle;
mod recovery;
mod search;
mod sql_failures;

/// One hour ago, rounded to the second: test spans must be inside retention.
pub(crate) static T0: std::sync::LazyLock<u64> =
    std::sync::LazyLock::new(|| (now_unix_nano() as u64 / 1_000_000_000 - 3600) * 1_000_000_000);

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

fn s(v: &str) -> any_value::Value {
    any_value::Value::StringValue(v.into())
}

/// A trace of `n` spans for `service`: a server root and client children.
pub(crate) fn trace(
    seed: u8,
    service: &str,
    n: usize,
    start: u64,
    root_duration: u64,
) -> ResourceSpans {
    let mut trace_id = [0u8; 16];
    trace_id[0] = 1;
    trace_id[15] = seed;
    let spans = (0..n)
        .map(|i| Span {
            trace_id: trace_id.to_vec(),
            span_id: vec![seed, i as u8 + 1, 0, 0, 0, 0, 0, 1],
            parent_span_id: if i == 0 {
                vec![]
            } else {
                vec![seed, 1, 0, 0, 0, 0, 0, 1]
            },
            name: if i == 0 {
                "GET /".into()
            } else {
                format!("call-{i}")
            },
            kind: if i == 0 { 2 } else { 3 },
            start_time_unix_nano: start + i as u64 * 1000,
            end_time_unix_nano: start + i as u64 * 1000 + if i == 0 { root_duration } else { 500 },
            attributes: vec![
                kv(
                    "http.status_code",
                    any_value::Value::IntValue(200 + i as i64),
                ),
                kv("user", s(&format!("u{seed}"))),
                kv("cached", any_value::Value::BoolValue(i % 2 == 0)),
            ],
            status: (seed.is_multiple_of(3) && i == 0).then(|| Status {
                code: 2,
                message: "boom".into(),
            }),
            events: if i == 1 {
                vec![Event {
                    time_unix_nano: start + 1500,
                    name: "retry".into(),
                    attributes: vec![kv("attempt", any_value::Value::IntValue(2))],
                    dropped_attributes_count: 0,
                }]
            } else {
                vec![]
            },
            ..Default::default()
        })
        .collect();
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![kv("service.name", s(service)), kv("host.name", s("h1"))],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: "lib".into(),
                version: "1.0".into(),
                ..Default::default()
            }),
            spans,
            schema_url: String::new(),
        }],
        schema_url: String::new(),
    }
}

fn config(dir: &std::path::Path) -> StoreConfig {
    StoreConfig {
        data_dir: dir.to_path_buf(),
        flush_interval: Duration::from_secs(3600),
        compaction_interval: Duration::from_secs(3600),
        ..Default::default()
    }
}

fn query(service: &str) -> TraceQuery {
    TraceQuery {
        service: Some(service.into()),
        start_min_unix_nano: *T0 - 1_000_000_000,
        start_max_unix_nano: *T0 + 1_000_000_000_000,
        limit: 100,
        ..Default::default()
    }
}

async fn ids(store: &TraceStore, q: &TraceQuery) -> Vec<String> {
    store
        .find_traces(q)
        .await
        .unwrap()
        .iter()
        .map(|t| t.trace_id.to_string())
        .collect()
}

/// Writes 20 traces (3 spans each) over two services, 1 ms apart.
async fn seed(store: &TraceStore) {
    for i in 0..20u8 {
        let service = if i % 2 == 0 { "frontend" } else { "backend" };
        store
            .write_spans(vec![trace(
                i,
                service,
                3,
                *T0 + i as u64 * 1_000_000,
                (i as u64 + 1) * 1_000_000,
            )])
            .await
            .unwrap();
    }
}

/// Flushes `blocks` small blocks, each of one two-span trace of service "late" (seeds
/// 100, 101, ...), 10 s after [`T0`].
async fn flush_late_blocks(store: &TraceStore, blocks: u8) {
    for round in 0..blocks {
        store
            .write_spans(vec![trace(
                100 + round,
                "late",
                2,
                *T0 + 10_000_000_000,
                1000,
            )])
            .await
            .unwrap();
        store.flush().await.unwrap();
    }
}

async fn all_query_results(store: &TraceStore) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    out.push(ids(store, &query("frontend")).await);
    out.push(ids(store, &query("backend")).await);
    let mut q = query("frontend");
    q.duration_min_nano = Some(5_000_000);
    q.duration_max_nano = Some(15_000_000);
    out.push(ids(store, &q).await);
    let mut q = query("backend");
    q.tags = vec![("user".into(), "u7".into())];
    out.push(ids(store, &q).await);
    let mut q = query("frontend");
    q.tags = vec![("error".into(), "true".into())];
    out.push(ids(store, &q).await);
    let mut q = query("frontend");
    q.limit = 3;
    out.push(ids(store, &q).await);
    out
}

/// Copies a directory tree (a data directory, to open it twice).
/// A trace id from `seed` (the id of [`trace`]'s spans with that seed).
fn trace_id(seed: u8) -> TraceId {
    let mut id = [0u8; 16];
    id[0] = 1;
    id[15] = seed;
    TraceId(id)
}

/// Writes one two-span trace of `service` (seed `seed`) and flushes it to a block of
/// its own.
async fn flush_trace(store: &TraceStore, seed: u8, service: &str) {
    store
        .write_spans(vec![trace(seed, service, 2, *T0, 1000)])
        .await
        .unwrap();
    store.flush().await.unwrap();
}

/// A store in `dir` holding five one-trace blocks of `service` (seeds 1 to 5).
async fn store_with_five_blocks(dir: &Path, service: &str) -> TraceStore {
    let store = TraceStore::open(config(dir)).await.unwrap();
    for seed in 1..=5 {
        flush_trace(&store, seed, service).await;
    }
    store
}

/// Deletes `meshtel.db` and its `-wal` and `-shm` files in `dir`.
fn remove_database(dir: &std::path::Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path
            .file_name()
            .unwrap()
            .to_string_lossy()
            .starts_with("meshtel.db")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
}

/// Replaces the `meshtel.db*` files of `to` with copies of `from`'s.
fn copy_database(from: &std::path::Path, to: &std::path::Path) {
    remove_database(to);
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.starts_with("meshtel.db") {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

fn copy_dir(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&target).unwrap();
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// A connection of its own to `meshtel.db`: it sees only what was committed.
pub(crate) async fn other_connection(dir: &Path) -> sqlx::SqliteConnection {
    let options = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(dir.join("meshtel.db"))
        .busy_timeout(Duration::from_millis(500));
    <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&options)
        .await
        .unwrap()
}
