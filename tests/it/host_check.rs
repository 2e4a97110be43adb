//! meshtel's HTTP listeners bound to a loopback address answer loopback names and
//! `[http] allowed_hosts` only (a guard against DNS rebinding); other hosts get a 403
//! naming the setting, counted in `meshtel_http_requests_refused_total`.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;

/// Status and body of a GET of `path` naming `host`, over a raw connection.
async fn get_as(addr: SocketAddr, path: &str, host: &str) -> (u16, String) {
    let (status, _, body) = exchange_as(addr, path, host).await;
    (status, body)
}

/// Status, head (lower-cased) and body of a GET of `path` naming `host`.
async fn exchange_as(addr: SocketAddr, path: &str, host: &str) -> (u16, String, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.unwrap();
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {answer:?}"));
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    (status, head.to_ascii_lowercase(), body.to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn loopback_listeners_answer_loopback_names_and_allowed_hosts_only() {
    let dir = TestDir::new();
    let m =
        Meshtel::serve_with_config(&dir, "[http]\nallowed_hosts = [\"Tracing.Example.com.\"]\n")
            .await;
    let query = m.query.unwrap();
    let port = query.port();
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        "localhost".to_owned(),
        format!("[::1]:{port}"),
        "tracing.example.com".to_owned(),
    ] {
        let (status, body) = get_as(query, "/api/services", &host).await;
        assert_eq!(status, 200, "{host}: {body}");
    }
    let (status, head, body) = exchange_as(
        query,
        "/api/services",
        &format!("rebind.attacker.test:{port}"),
    )
    .await;
    assert_eq!(status, 403, "{body}");
    assert!(head.contains("x-content-type-options: nosniff"), "{head}");
    assert!(
        body.contains("rebind.attacker.test") && body.contains("[http] allowed_hosts"),
        "{body}"
    );
    // The UI and the other HTTP listeners alike.
    assert_eq!(
        get_as(query, "/search", "rebind.attacker.test").await.0,
        403
    );
    assert_eq!(
        get_as(m.http.unwrap(), "/metrics", "rebind.attacker.test")
            .await
            .0,
        403
    );
    // The collector's text answers are not sniffed either (405 here, as for any method
    // but POST).
    for port in [m.http.unwrap(), m.zipkin.unwrap()] {
        for path in ["/v1/traces", "/api/v2/spans"] {
            let (status, head, body) = exchange_as(port, path, "127.0.0.1").await;
            assert!(matches!(status, 404 | 405), "{port}{path}: {status} {body}");
            assert!(
                head.contains("x-content-type-options: nosniff"),
                "{port}{path}: {head}"
            );
        }
    }
    let metrics = get(&m.http_url("/metrics")).await.text();
    assert!(
        metrics
            .contains("meshtel_http_requests_refused_total{listener=\"query\",reason=\"host\"} 2"),
        "{metrics}"
    );
    // Logged too, at most once per 10 s per listener: the query port's first refusal
    // now, its second with the next line.
    let log = m.log_text();
    let lines: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("for a host this loopback listener does not answer"))
        .collect();
    assert_eq!(lines.len(), 2, "{log}");
    assert!(
        lines.iter().any(|l| l.contains("listener=\"query\"")
            && l.contains("refused=1")
            && l.contains("rebind.attacker.test")),
        "{log}"
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_host_with_a_port_is_refused_at_start() {
    let dir = TestDir::new();
    let config = dir.path().join("meshtel.toml");
    std::fs::write(
        &config,
        "[http]\nallowed_hosts = [\"tracing.example.com:443\"]\n",
    )
    .unwrap();
    let (status, log) =
        Meshtel::run_expecting_exit(&dir, Role::Serve, &["--config", config.to_str().unwrap()])
            .await;
    assert!(!status.success());
    assert!(
        log.contains("[http] allowed_hosts") && log.contains("tracing.example.com:443"),
        "{log}"
    );
}
