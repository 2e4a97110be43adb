//! Smoke test of the `meshtel-proxy` binary: boots on port 0, publishes its
//! listeners, answers the admin port, stops cleanly on SIGTERM, and keeps its admin
//! port up while it drains.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::*;

/// The binary as `reviews` v2, its inbound forwarding to `app`; its listeners once
/// published. The directory holds its files (its log in `proxy.log`) and must outlive it.
async fn start_binary(dir: &tempfile::TempDir, app: &str) -> (Child, meshtel_proxy::ListenerAddresses) {
    start_binary_with(dir, app, &format!("http://{}", dead_address().await)).await
}

/// [`start_binary`] sending its telemetry to `collector`.
async fn start_binary_with(dir: &tempfile::TempDir, app: &str, collector: &str) -> (Child, meshtel_proxy::ListenerAddresses) {
    let log = std::fs::File::create(dir.path().join("proxy.log")).expect("log file");
    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, include_str!("../../examples/mesh.yaml")).expect("write mesh");
    let listeners_file = dir.path().join("listeners.json");
    let mut child = Command::new(env!("CARGO_BIN_EXE_meshtel-proxy"))
        .args(["--mesh", mesh.to_str().expect("utf-8 path"), "--service", "reviews", "--version", "v2"])
        .args(["--inbound", &format!("127.0.0.1:0={app}"), "--outbound", "127.0.0.1:0", "--admin", "127.0.0.1:0"])
        .args(["--collector", collector, "--sampling", "100"])
        .arg("--listeners-file")
        .arg(&listeners_file)
        .env_remove("RUST_LOG")
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .spawn()
        .expect("start meshtel-proxy");
    let deadline = Instant::now() + Duration::from_secs(20);
    let addresses = loop {
        if let Some(parsed) = std::fs::read(&listeners_file).ok().and_then(|json| serde_json::from_slice(&json).ok()) {
            break parsed;
        }
        assert!(Instant::now() < deadline, "no listeners file");
        assert!(child.try_wait().expect("wait").is_none(), "proxy exited early");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    (child, addresses)
}

/// An app that accepts and never answers: a request to it stays in flight, and a
/// drain with it. Abort the task to close it.
async fn hanging_app() -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind app");
    let address = app.local_addr().expect("app address");
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = app.accept().await {
            open.push(socket);
        }
    });
    (address, held)
}

/// The binary draining after a SIGTERM, a request to an app that never answers still
/// in flight.
struct Draining {
    dir: tempfile::TempDir,
    child: Child,
    addresses: meshtel_proxy::ListenerAddresses,
    in_flight: tokio::task::JoinHandle<(http::response::Parts, bytes::Bytes, Option<http::HeaderMap>)>,
    held: tokio::task::JoinHandle<()>,
}

impl Draining {
    async fn start() -> Draining {
        let (app_address, held) = hanging_app().await;
        let dir = tempfile::tempdir().expect("temp dir");
        let (child, addresses) = start_binary(&dir, &app_address.to_string()).await;
        let inbound = format!("http://{}/", addresses.inbound.expect("inbound"));
        let in_flight = tokio::spawn(async move { send(&http1_client(), get(&inbound, "reviews", &[])).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        sigterm(&child);
        tokio::time::sleep(Duration::from_millis(300)).await;
        Draining { dir, child, addresses, in_flight, held }
    }
}

fn sigterm(child: &Child) {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().expect("kill");
    assert!(status.success());
}

async fn exit_within(child: &mut Child, limit: Duration) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(exit) = child.try_wait().expect("wait") {
            return exit;
        }
        assert!(Instant::now() < deadline, "proxy did not stop on SIGTERM within {limit:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn admin(addresses: &meshtel_proxy::ListenerAddresses, path: &str) -> http::Request<BoxBody> {
    http::Request::get(format!("http://{}{path}", addresses.admin)).body(empty()).expect("request")
}

#[tokio::test]
async fn the_binary_boots_reports_ready_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addresses) = start_binary(&dir, "127.0.0.1:9").await;
    assert!(addresses.inbound.is_some());
    let client = http1_client();
    let (parts, body, _) = send(&client, admin(&addresses, "/ready")).await;
    assert_eq!((parts.status.as_u16(), &body[..]), (200, &b"ready\n"[..]));
    let (parts, body, _) = send(&client, admin(&addresses, "/stats/prometheus")).await;
    assert_eq!(parts.status, 200);
    assert!(String::from_utf8_lossy(&body).contains("meshtel_proxy_reports_dropped_total 0"));
    // The inbound's app (port 9, discard) is not listening: 503 UF, not a hang.
    let inbound = format!("http://{}/", addresses.inbound.expect("inbound"));
    let (parts, _, _) = send(&client, get(&inbound, "reviews", &[])).await;
    assert_eq!(parts.status, 503);
    // Not HTTP at all: hyper answers 400 before the proxy sees a request; counted.
    let mut raw = tokio::net::TcpStream::connect(addresses.inbound.expect("inbound")).await.expect("connect");
    tokio::io::AsyncWriteExt::write_all(&mut raw, b"GARBAGE\r\n\r\n").await.expect("write");
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tokio::io::AsyncReadExt::read_to_end(&mut raw, &mut answer)).await;
    assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
    // Counted as the connection ends, which may be a moment after the answer.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let (_, body, _) = send(&client, admin(&addresses, "/stats/prometheus")).await;
        let stats = String::from_utf8_lossy(&body).into_owned();
        if stats.contains("meshtel_proxy_downstream_protocol_errors_total{listener=\"inbound\"} 1") {
            break;
        }
        assert!(Instant::now() < deadline, "the refused request is not counted: {stats}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    sigterm(&child);
    let exit = exit_within(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    assert!(!dir.path().join("listeners.json").exists(), "a clean stop removes the listeners file");
    // The collector was never reached: the request's record and span, and the refused
    // request's record, queued, are lost at the stop and said so.
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).expect("log");
    assert!(log.contains("telemetry dropped since start reports_dropped=2 spans_dropped=1"), "{log}");
    assert!(!log.contains("telemetry queue full"), "nothing was dropped for a full queue: {log}");
    assert!(!log.contains("hint=\"\""), "no empty hint: {log}");
}

#[tokio::test]
async fn while_sigterm_drains_the_admin_port_answers_not_ready_and_serves_stats() {
    let Draining { dir: _dir, mut child, addresses, in_flight, held } = Draining::start().await;
    let client = http1_client();
    let (parts, body, _) = send(&client, admin(&addresses, "/ready")).await;
    assert_eq!(parts.status, 503, "draining: {}", String::from_utf8_lossy(&body));
    let (parts, body, _) = send(&client, admin(&addresses, "/stats/prometheus")).await;
    assert_eq!(parts.status, 200);
    assert!(String::from_utf8_lossy(&body).contains("meshtel_proxy_ready 0"), "the ready gauge reads 0 while draining");
    let (parts, _, _) = send(&client, admin(&addresses, "/healthz")).await;
    assert_eq!(parts.status, 200, "alive while draining");

    let exit = exit_within(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    let _ = in_flight.await;
    held.abort();
}

/// The app goes on working while it finishes its requests: its calls out still go
/// through, on new connections too, while the inbound drains (Istio drains the
/// inbound side only); the outbound drains once the inbound has.
#[tokio::test]
async fn while_the_inbound_drains_the_app_can_still_call_out() {
    let Draining { dir: _dir, mut child, addresses, in_flight, held } = Draining::start().await;
    let outbound = format!("http://{}/", addresses.outbound);
    // A fresh client: a new connection, made after the stop.
    let (parts, _, _) = send(&http1_client(), get(&outbound, "ratings", &[])).await;
    assert!(parts.status.is_server_error(), "answered by the proxy (ratings' endpoint is down), not refused: {}", parts.status);
    assert!(child.try_wait().expect("wait").is_none(), "still draining");
    held.abort();
    let exit = exit_within(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    let _ = in_flight.await;
    // Once stopped, the outbound is closed too.
    assert!(tokio::net::TcpStream::connect(addresses.outbound).await.is_err(), "outbound closed after the drain");
}

#[tokio::test]
async fn a_second_signal_stops_at_once_without_waiting_out_the_drain() {
    let Draining { dir: _dir, mut child, in_flight, held, .. } = Draining::start().await;
    let second = Instant::now();
    sigterm(&child);
    let exit = exit_within(&mut child, Duration::from_secs(15)).await;
    assert!(second.elapsed() < Duration::from_secs(2), "stopped {:?} after the second signal, not at once", second.elapsed());
    assert_eq!(exit.code(), Some(130), "{exit:?}");
    in_flight.abort();
    held.abort();
}

/// An HTTP/2 server that answers 404 to everything (as meshtel's OTLP/HTTP or query
/// port does), counting the requests.
async fn not_found_h2c() -> (std::net::SocketAddr, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let requests = Arc::new(AtomicUsize::new(0));
    let counter = requests.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |_request: http::Request<hyper::body::Incoming>| {
                    counter.fetch_add(1, Ordering::SeqCst);
                    async move {
                        let mut response = http::Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"{\"error\":\"no route\"}")));
                        *response.status_mut() = http::StatusCode::NOT_FOUND;
                        Ok::<_, std::convert::Infallible>(response)
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, requests)
}

/// `--collector` naming a port that answers HTTP 404 (OTLP/HTTP's 4318 for gRPC's
/// 4317): the streams that break as soon as they open are retried with backoff, not
/// ten times a second, and the log says once per stream what is wrong.
#[tokio::test]
async fn a_collector_address_that_is_not_grpc_is_retried_with_backoff_and_named() {
    let (addr, requests) = not_found_h2c().await;
    let dir = tempfile::tempdir().expect("temp dir");
    let (mut child, addresses) = start_binary_with(&dir, "127.0.0.1:9", &format!("http://{addr}")).await;
    // Sampled requests a few batches apart: each export of their spans fails alike.
    let inbound = format!("http://{}/", addresses.inbound.expect("inbound"));
    let client = http1_client();
    for _ in 0..4 {
        send(&client, get(&inbound, "reviews", &[])).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let seen = requests.load(std::sync::atomic::Ordering::SeqCst);
    sigterm(&child);
    let exit = exit_within(&mut child, Duration::from_secs(15)).await;
    assert!(exit.success(), "{exit:?}");
    let log = std::fs::read_to_string(dir.path().join("proxy.log")).expect("log");
    // Two streams (Report, the quota policy watch), each at 0, 0.1, 0.3, 0.7, 1.5 s...,
    // and up to four span exports.
    assert!((2..=20).contains(&seen), "{seen} requests in 3 s\n{log}");
    let warned = log.matches("must name meshtel's OTLP gRPC port").count();
    assert!((2..=3).contains(&warned), "{warned} hints\n{log}");
    // The span exports that failed are told once, with the hint.
    let exports: Vec<&str> = log.lines().filter(|l| l.contains("span export")).collect();
    assert_eq!(exports.len(), 1, "{log}");
    assert!(exports[0].contains("must name meshtel's OTLP gRPC port"), "{log}");
}
