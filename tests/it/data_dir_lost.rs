//! The data directory or its database removed or replaced under a running process: the
//! process says what happened and stops, instead of going on with a file nobody can
//! open again. A collector whose database alone was deleted first writes it back; one
//! whose directory was replaced (restored from a copy) stops at once, writing nothing
//! more there.

use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::roundtrip::jaeger_trace_id;
use crate::support::*;

/// One single-span trace of `service`, and its Jaeger id.
fn one_trace(service: &str) -> (ExportTraceServiceRequest, String) {
    let trace_id = random_trace_id();
    let span = simple_span(
        &trace_id,
        &random_span_id(),
        None,
        "work",
        now_nanos() - 1_000_000_000,
        1_000_000,
    );
    let request = ExportTraceServiceRequest {
        resource_spans: vec![resource_spans(service, vec![span])],
    };
    (request, jaeger_trace_id(&trace_id))
}

fn remove_database(data_dir: &std::path::Path) {
    for file in ["meshtel.db", "meshtel.db-wal", "meshtel.db-shm"] {
        let _ = std::fs::remove_file(data_dir.join(file));
    }
}

/// `meshtel.db` deleted while `serve` runs (spans in blocks and in the head): it stops
/// with an error naming the file, having written its open copy back, and the next start
/// has every span, none set aside.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_whose_database_is_removed_writes_it_back_and_stops() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[store]\nflush_interval = \"200ms\"\n").await;
    let (first, first_id) = one_trace("before");
    export_grpc(m.grpc.unwrap(), first).await;
    wait_for_trace(&m, &first_id, 1).await;
    // In a block by now (flushes every 200 ms); the next stays in the head.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let (second, second_id) = one_trace("after");
    export_grpc(m.grpc.unwrap(), second).await;

    remove_database(&dir.data_dir());
    let (status, log) = m.wait_for_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("meshtel.db was removed while meshtel had it open"),
        "{log}"
    );
    assert!(log.contains("wrote the removed database back"), "{log}");
    assert!(dir.data_dir().join("meshtel.db").exists());

    let again = Meshtel::serve(&dir).await;
    wait_for_trace(&again, &first_id, 1).await;
    wait_for_trace(&again, &second_id, 1).await;
    let log = again.log_text();
    assert!(!log.contains("orphaned"), "{log}");
    again.stop().await;
}

/// The data directory wiped and made again by a new collector while a query process
/// reads it: the query process stops naming what changed, rather than serve the old
/// one's data from the files it still has open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_process_stops_when_its_data_directory_is_replaced() {
    let dir = TestDir::new();
    let collector = Meshtel::start(&dir, Role::Collector, &[]).await;
    let query = Meshtel::start(&dir, Role::Query, &[]).await;
    collector.stop().await;
    std::fs::remove_dir_all(dir.data_dir()).unwrap();
    let collector = Meshtel::start(&dir, Role::Collector, &[]).await;
    let (status, log) = query.wait_for_exit(Duration::from_secs(20)).await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("was removed while meshtel had it open")
            || log.contains("was replaced by another while meshtel had it open"),
        "{log}"
    );
    assert!(
        log.contains("this query process then reads what is there"),
        "{log}"
    );
    collector.stop().await;
}

/// The data directory restored from a copy (its WAL holding acknowledged spans) under a
/// running collector: it stops at once and leaves the copy as restored, so that the
/// next start replays the copy's WAL. (It used to flush into the copy and delete the
/// copy's WAL segments, whose names its own shared.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_whose_data_directory_is_restored_from_a_copy_leaves_the_copy_alone() {
    let dir = TestDir::new();
    let config = "[store]\nflush_interval = \"1h\"\n";
    let m = Meshtel::serve_with_config(&dir, config).await;
    let (kept, kept_id) = one_trace("kept");
    export_grpc(m.grpc.unwrap(), kept).await;
    m.kill9();
    let copy = dir.path().join("copy");
    let copied = std::process::Command::new("cp")
        .arg("-a")
        .arg(dir.data_dir())
        .arg(&copy)
        .status()
        .unwrap();
    assert!(copied.success());
    let files_of = |dir: std::path::PathBuf| {
        let mut files: Vec<(String, u64)> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap())
            .map(|e| {
                (
                    e.file_name().to_string_lossy().into_owned(),
                    e.metadata().unwrap().len(),
                )
            })
            .collect();
        files.sort();
        files
    };
    let wal_of_copy = files_of(copy.join("wal"));
    let blocks_of_copy = files_of(copy.join("blocks"));

    // Flushing every 100 ms while spans keep coming: a flush in the second before the
    // watch's next look must not write into the copy either.
    let m = Meshtel::serve_with_config(&dir, "[store]\nflush_interval = \"100ms\"\n").await;
    let (gone, gone_id) = one_trace("gone");
    export_grpc(m.grpc.unwrap(), gone).await;
    let grpc = m.grpc.unwrap();
    let sending = tokio::spawn(async move {
        let mut client = grpc_client(grpc).await;
        for _ in 0..1_000 {
            if client.export(one_trace("during").0).await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    // The collector may create a file in a folder being emptied (a flush every 100 ms):
    // that folder is then not empty when it is removed, and removing goes on.
    let mut tries = 0;
    while let Err(e) = std::fs::remove_dir_all(dir.data_dir()) {
        tries += 1;
        assert!(tries < 100, "the data directory could not be removed: {e}");
        std::thread::sleep(Duration::from_millis(5));
    }
    let restored = std::process::Command::new("cp")
        .arg("-a")
        .arg(&copy)
        .arg(dir.data_dir())
        .status()
        .unwrap();
    assert!(restored.success());
    let (status, log) = m.wait_for_exit(Duration::from_secs(10)).await;
    assert!(!status.success(), "{log}");
    assert!(
        log.contains("writing nothing more to the data directory"),
        "{log}"
    );
    sending.abort();
    assert_eq!(files_of(dir.data_dir().join("wal")), wal_of_copy, "{log}");
    assert_eq!(
        files_of(dir.data_dir().join("blocks")),
        blocks_of_copy,
        "{log}"
    );

    let again = Meshtel::serve(&dir).await;
    wait_for_trace(&again, &kept_id, 1).await;
    let missing = get(&again.query_url(&format!("/api/traces/{gone_id}"))).await;
    assert_eq!(missing.status, 404);
    again.stop().await;
}
