//! `meshtel bench`: runs that cannot measure what they are for end with an error a
//! script sees, and flags that cannot be run are refused by name.

use std::process::Command;

use crate::support::*;

/// Runs `meshtel bench ARGS`: (success, stderr).
fn bench(args: &[&str]) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_meshtel"))
        .arg("bench")
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Freshness with a query address nothing listens on stops at once, naming it, instead
/// of waiting out every sample and ending with status 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn freshness_stops_when_the_query_api_cannot_be_reached() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &[]).await;
    let otlp = format!("http://{}", m.grpc.unwrap());
    // A port nothing listens on: bound, then let go.
    let dead = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let dead = format!("http://{dead}");
    let started = std::time::Instant::now();
    let (ok, said) = bench(&[
        "freshness",
        "--otlp",
        &otlp,
        "--query",
        &dead,
        "--samples",
        "3",
        "--timeout",
        "20s",
    ]);
    assert!(!ok, "{said}");
    assert!(said.contains("cannot reach the query API"), "{said}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(15),
        "{said}"
    );
    m.stop().await;
}

/// Bytes of the disk `path` is on, and bytes free there.
fn disk_of(path: &std::path::Path) -> (u64, u64) {
    let output = Command::new("df")
        .args(["-B1", "--output=size,avail"])
        .arg(path)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&output.stdout);
    let numbers: Vec<u64> = text
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .map(|n| n.parse().unwrap())
        .collect();
    (numbers[0], numbers[1])
}

/// Ingest against a collector that refuses every span (its disk below the free-space
/// reserve, a refusal clients retry) ends with an error a script sees, although the
/// run's end cut its refusals short as retries rather than errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_with_nothing_acknowledged_fails() {
    let dir = TestDir::new();
    let (total, free) = disk_of(dir.path());
    // Above what is free, below the disk's size: refused writes, not a refused start.
    let reserve = format!("{}B", free / 2 + total / 2);
    let m = Meshtel::start(&dir, Role::Serve, &["--min-free-disk", &reserve]).await;
    let endpoint = format!("http://{}", m.grpc.unwrap());
    let (ok, said) = bench(&[
        "ingest",
        "--endpoint",
        &endpoint,
        "--duration",
        "2s",
        "--connections",
        "1",
    ]);
    assert!(!ok, "{said}");
    assert!(
        said.contains("no request was acknowledged") && said.contains("refused and retried"),
        "{said}"
    );
    m.stop().await;
}

#[test]
fn quota_bench_flags_that_cannot_run_are_refused() {
    for (args, says) in [
        (&["quota", "--rate", "inf"][..], "--rate must be"),
        (&["quota", "--rate", "NaN"][..], "--rate must be"),
        (
            &["quota", "--rate", "1000000", "--duration", "60s"][..],
            "lower one of them",
        ),
        (&["quota", "--connections", "0"][..], "must be at least 1"),
        (&["quota", "--concurrency", "0"][..], "must be at least 1"),
    ] {
        let (ok, said) = bench(args);
        assert!(!ok && said.contains(says), "{args:?}: {said}");
    }
}
