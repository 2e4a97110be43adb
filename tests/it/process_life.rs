//! The server process's life as an operator meets it: signals while starting and
//! running (SIGTERM, SIGHUP), a log pipe that closes, and the open-files limit raised at
//! start.

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use serde_json::Value;

use crate::support::*;

/// `meshtel serve` on `data_dir` with every listener on 127.0.0.1:0, for a test that
/// holds the process itself (its pipes, its signals).
fn serve_command(data_dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
    command.arg("serve").arg("--data-dir").arg(data_dir);
    for listener in [
        "--grpc-listen",
        "--http-listen",
        "--zipkin-listen",
        "--query-listen",
    ] {
        command.args([listener, "127.0.0.1:0"]);
    }
    command
}

/// Sends SIGTERM to `child` (its stderr piped) and waits: its exit status and log.
fn terminate(mut child: std::process::Child) -> (std::process::ExitStatus, String) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut log = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut log)
        .unwrap();
    (child.wait().unwrap(), log)
}

/// A soft open-files limit below the hard one is raised to it at start, as Go servers
/// do (systemd's default soft limit is 1,024); a low hard limit is named in a WARN.
#[test]
fn the_open_files_limit_is_raised_to_the_hard_one_and_a_low_one_is_named() {
    let cases = [
        ("-Sn 300", true, false),
        ("-n 300", false, false),
        ("-Sn 300", true, true),
    ];
    for (ulimit, raised, proxy) in cases {
        let dir = TestDir::new();
        let listeners = dir.data_dir().join("listeners.json");
        // `meshtel serve`, or the sidecar as `meshtel proxy`.
        let command = if proxy {
            std::fs::create_dir_all(dir.data_dir()).unwrap();
            let mesh = dir.path().join("mesh.yaml");
            std::fs::write(&mesh, "services: []\n").unwrap();
            let mut command = Command::new(env!("CARGO_BIN_EXE_meshtel"));
            command
                .arg("proxy")
                .arg("--mesh")
                .arg(&mesh)
                .args(["--service", "reviews"]);
            command.args([
                "--collector",
                "http://127.0.0.1:1",
                "--outbound",
                "127.0.0.1:0",
            ]);
            command
                .args(["--admin", "127.0.0.1:0", "--listeners-file"])
                .arg(&listeners);
            command
        } else {
            serve_command(&dir.data_dir())
        };
        let child = Command::new("sh")
            .arg("-c")
            .arg(format!("ulimit {ulimit} && exec \"$0\" \"$@\""))
            .arg(command.get_program())
            .args(command.get_args())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let started = std::time::Instant::now();
        while !listeners.exists() {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "no listeners.json"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        let limits = std::fs::read_to_string(format!("/proc/{}/limits", child.id())).unwrap();
        let open_files: Vec<String> = (limits.lines())
            .find(|l| l.starts_with("Max open files"))
            .unwrap()
            .split_whitespace()
            .skip(3)
            .take(2)
            .map(str::to_string)
            .collect();
        let (status, log) = terminate(child);
        assert!(status.success(), "{log}");
        if !proxy {
            // Every pool on the database closed: SQLite checkpointed and removed its WAL.
            let wal = dir.data_dir().join("meshtel.db-wal");
            assert!(!wal.exists(), "{} left by a clean stop", wal.display());
        }
        if raised {
            assert_eq!(open_files[0], open_files[1], "{limits}");
            assert_ne!(open_files[0], "300", "{limits}");
            assert!(
                log.contains("open-files limit raised to its hard limit")
                    && log.contains("raised_from=300"),
                "{log}"
            );
        } else {
            assert_eq!(open_files, ["300", "300"], "{limits}");
            assert!(
                log.contains("WARN")
                    && log.contains("open-files limit is low")
                    && log.contains("open_files_limit=300"),
                "{log}"
            );
        }
    }
}

/// SIGTERM while the server is still starting (store opening, listeners binding) is a
/// clean stop once it is up, not a kill by the signal's default action.
#[test]
fn sigterm_while_starting_is_a_clean_stop() {
    for delay_ms in [50, 150] {
        let dir = TestDir::new();
        let child = serve_command(&dir.data_dir())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let (status, log) = terminate(child);
        assert!(
            status.success(),
            "SIGTERM {delay_ms} ms after start: {status}\n{log}"
        );
    }
}

/// SIGHUP (a closed terminal, a `kill -HUP` meant as a reload) is a clean stop that
/// says why, not a kill by its default action without a line in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_is_a_clean_stop_that_says_nothing_is_reloaded() {
    let dir = TestDir::new();
    let meshtel = Meshtel::serve(&dir).await;
    let (status, log) = meshtel.stop_by_signal("HUP").await;
    assert!(status.success(), "SIGHUP: {status}\n{log}");
    assert!(
        log.contains("configuration is not reloaded on a signal")
            && log.contains("SIGHUP")
            && log.contains("meshtel::signal")
            && !log.contains("meshtel_proxy"),
        "{log}"
    );
    assert!(log.contains("stopped"), "{log}");
    assert!(!log.contains("listeners file left behind"), "{log}");
}

/// Logs that cannot be written (stderr's reader gone, as with `serve 2>&1 | head -1`)
/// are dropped: flushes go on, and SIGTERM is still a clean stop (exit 0).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_log_pipe_stops_neither_flushes_nor_a_clean_exit() {
    let dir = TestDir::new();
    let mut child = serve_command(&dir.data_dir())
        .args(["--flush-interval", "200ms"])
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read the first line, then close the pipe.
    let mut stderr = child.stderr.take().unwrap();
    let mut first = [0u8; 1];
    stderr.read_exact(&mut first).unwrap();
    drop(stderr);
    let listeners = dir.data_dir().join("listeners.json");
    let json: Value = eventually(Duration::from_secs(30), "listeners.json", || async {
        serde_json::from_str(&std::fs::read_to_string(&listeners).ok()?).ok()
    })
    .await;
    let grpc: std::net::SocketAddr = json["grpc"].as_str().unwrap().parse().unwrap();
    let http = json["http"].as_str().unwrap().to_string();
    let head_spans = || async {
        let text = get(&format!("http://{http}/metrics")).await.text();
        text.lines()
            .find_map(|l| l.strip_prefix("meshtel_store_head_spans "))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    for round in 0..3 {
        let id = random_trace_id();
        let span = simple_span(&id, &random_span_id(), None, "op", now_nanos(), 1_000);
        let request = ExportTraceServiceRequest {
            resource_spans: vec![resource_spans("piped", vec![span])],
        };
        export_grpc(grpc, request).await;
        eventually(
            Duration::from_secs(10),
            &format!("flush {round}"),
            || async { (head_spans().await? == 0).then_some(()) },
        )
        .await;
    }
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let status = child.wait().unwrap();
    assert!(
        status.success(),
        "SIGTERM after the log pipe closed: {status}"
    );
}
