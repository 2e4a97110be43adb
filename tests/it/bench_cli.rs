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
