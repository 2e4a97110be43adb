//! Slow clients on the HTTP listeners (OTLP HTTP, Zipkin, query): a request whose
//! headers stall is closed after `http.header_read_timeout`, one whose body stalls is
//! answered 408 after `http.body_read_timeout`, and both are counted.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;

use crate::support::*;

/// Sends `data` and reads until the server answers or closes, at most `wait`:
/// `(seconds taken, what came back)`; `None` when the connection is still open.
fn send_and_wait(addr: SocketAddr, data: &[u8], wait: Duration) -> (f64, Option<String>) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    stream.write_all(data).unwrap();
    let mut answer = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => answer.extend_from_slice(&buffer[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if answer.is_empty() {
                    return (started.elapsed().as_secs_f64(), None);
                }
                break;
            }
            // A reset is the server closing too.
            Err(_) => break,
        }
    }
    (
        started.elapsed().as_secs_f64(),
        Some(String::from_utf8_lossy(&answer).into_owned()),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_headers_and_bodies_are_cut_off_and_counted() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(
        &dir,
        "[http]\nheader_read_timeout = \"1s\"\nbody_read_timeout = \"1s\"\n",
    )
    .await;
    let wait = Duration::from_secs(8);
    let partial_headers = b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\n".as_slice();

    let mut tasks = Vec::new();
    for (name, addr) in [
        ("http", m.http.unwrap()),
        ("zipkin", m.zipkin.unwrap()),
        ("query", m.query.unwrap()),
    ] {
        tasks.push(tokio::task::spawn_blocking(move || {
            let (seconds, answer) = send_and_wait(addr, partial_headers, wait);
            assert!(
                answer.as_deref() == Some(""),
                "{name}: partial headers not closed after {seconds:.1}s: {answer:?}"
            );
            assert!(seconds < 4.0, "{name}: closed only after {seconds:.1}s");
        }));
    }
    let http = m.http.unwrap();
    tasks.push(tokio::task::spawn_blocking(move || {
        let request = b"POST /v1/traces HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\nContent-Length: 100\r\n\r\n{";
        let (seconds, answer) = send_and_wait(http, request, wait);
        let answer = answer.unwrap_or_default();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "OTLP HTTP stalled body after {seconds:.1}s: {answer:?}"
        );
        assert!(seconds < 4.0, "stalled body answered after {seconds:.1}s");
    }));
    let zipkin = m.zipkin.unwrap();
    tasks.push(tokio::task::spawn_blocking(move || {
        let request = b"POST /api/v2/spans HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\nContent-Length: 100\r\n\r\n[";
        let (seconds, answer) = send_and_wait(zipkin, request, wait);
        let answer = answer.unwrap_or_default();
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "Zipkin stalled body after {seconds:.1}s: {answer:?}"
        );
    }));
    let query = m.query.unwrap();
    tasks.push(tokio::task::spawn_blocking(move || {
        let request = b"POST /api/transform HTTP/1.1\r\nHost: localhost\r\ncontent-type: application/json\r\nContent-Length: 100\r\n\r\n{";
        let (seconds, answer) = send_and_wait(query, request, wait);
        let answer = answer.unwrap_or_default();
        assert!(
            answer.starts_with("HTTP/1.1 408") && answer.contains("http.body_read_timeout"),
            "query stalled body after {seconds:.1}s: {answer:?}"
        );
    }));
    for task in tasks {
        task.await.unwrap();
    }

    // A request sent in one piece is still served.
    let healthy = get(&m.http_url("/healthz")).await;
    assert_eq!(healthy.status, 200);

    let metrics = get(&m.http_url("/metrics")).await.text();
    for (listener, phase) in [
        ("otlp_http", "headers"),
        ("zipkin", "headers"),
        ("query", "headers"),
        ("otlp_http", "body"),
        ("zipkin", "body"),
        ("query", "body"),
    ] {
        let series = format!(
            "meshtel_http_connections_timed_out_total{{listener=\"{listener}\",phase=\"{phase}\"}} 1"
        );
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    m.stop().await;
}

/// Seconds until the server closes a connection that sent nothing, at most `wait`.
fn silent_closed_after(addr: SocketAddr, wait: Duration) -> Option<f64> {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(wait)).unwrap();
    let started = Instant::now();
    match stream.read(&mut [0u8; 64]) {
        Ok(0) => Some(started.elapsed().as_secs_f64()),
        Err(e)
            if !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            Some(started.elapsed().as_secs_f64())
        }
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_that_send_nothing_are_closed_on_every_listener() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[http]\nheader_read_timeout = \"1s\"\n").await;
    let wait = Duration::from_secs(8);
    let mut tasks = Vec::new();
    for (name, addr) in [
        ("otlp_grpc", m.grpc.unwrap()),
        ("otlp_http", m.http.unwrap()),
        ("zipkin", m.zipkin.unwrap()),
        ("query", m.query.unwrap()),
    ] {
        tasks.push(tokio::task::spawn_blocking(move || {
            let seconds = silent_closed_after(addr, wait)
                .unwrap_or_else(|| panic!("{name}: a silent connection still open after {wait:?}"));
            assert!(seconds < 4.0, "{name}: closed only after {seconds:.1}s");
        }));
    }
    // A gRPC client that stops partway through the HTTP/2 preface is let go too.
    let grpc = m.grpc.unwrap();
    tasks.push(tokio::task::spawn_blocking(move || {
        let (seconds, answer) = send_and_wait(grpc, b"PRI * HTTP/2", wait);
        assert!(
            answer.is_some(),
            "a half-sent preface still open after {seconds:.1}s"
        );
        assert!(seconds < 4.0, "closed only after {seconds:.1}s");
    }));
    for task in tasks {
        task.await.unwrap();
    }
    // Counted as header timeouts on the HTTP listeners, and gRPC still serves.
    let metrics = get(&m.http_url("/metrics")).await.text();
    for listener in ["otlp_http", "zipkin", "query"] {
        let series = format!(
            "meshtel_http_connections_timed_out_total{{listener=\"{listener}\",phase=\"headers\"}} 1"
        );
        assert!(metrics.contains(&series), "no {series} in\n{metrics}");
    }
    let mut client = m.grpc_client().await;
    client
        .export(ExportTraceServiceRequest::default())
        .await
        .expect("an empty Export over gRPC");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_reads_nothing_of_a_large_answer_is_let_go() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[http]\nwrite_timeout = \"1s\"\n").await;
    // One trace whose JSON is about 16 MiB: far more than the socket buffers hold.
    let trace_id = random_trace_id();
    let padding = "x".repeat(8 * 1024);
    for _ in 0..4 {
        let spans = (0..500)
            .map(|i| {
                let mut span = simple_span(
                    &trace_id,
                    &random_span_id(),
                    None,
                    "op",
                    now_nanos(),
                    1_000 + i,
                );
                span.attributes.push(kv_str("padding", &padding));
                span
            })
            .collect();
        export_grpc(
            m.grpc.unwrap(),
            ExportTraceServiceRequest {
                resource_spans: vec![resource_spans("big", spans)],
            },
        )
        .await;
    }
    let query = m.query.unwrap();
    let path = format!("/api/traces/{}", hex::encode(&trace_id));
    let (seconds, _) = tokio::task::spawn_blocking(move || {
        let mut stream = TcpStream::connect(query).unwrap();
        let request = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        // Wait for the answer to start (building a large trace's JSON can take seconds
        // on a loaded machine), then read nothing more for 4 s, then all there is: the
        // end comes only if the server closed the connection.
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut answer = vec![0u8; 16];
        stream.read_exact(&mut answer).unwrap();
        std::thread::sleep(Duration::from_secs(4));
        stream
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let started = Instant::now();
        let ended = stream.read_to_end(&mut answer).is_ok();
        assert!(
            ended,
            "still open after {:.1}s and {} bytes",
            started.elapsed().as_secs_f64(),
            answer.len()
        );
        assert!(
            answer.starts_with(b"HTTP/1.1 200"),
            "{:?}",
            String::from_utf8_lossy(&answer[..answer.len().min(200)])
        );
        assert!(
            answer.len() < 16 << 20,
            "the whole answer came: {} bytes",
            answer.len()
        );
        (started.elapsed().as_secs_f64(), answer.len())
    })
    .await
    .unwrap();
    assert!(seconds < 5.0);
    // Over HTTP/1 the connection's stalled write lets it go (the unread-answer bound
    // is HTTP/2's).
    let metrics = get(&m.http_url("/metrics")).await.text();
    let series = "meshtel_http_connections_timed_out_total{listener=\"query\",phase=\"write\"} 1";
    assert!(metrics.contains(series), "no {series} in\n{metrics}");
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_does_not_hold_up_shutdown() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let _silent = [m.http.unwrap(), m.query.unwrap(), m.grpc.unwrap()]
        .map(|addr| TcpStream::connect(addr).unwrap());
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    m.stop().await;
    let took = started.elapsed();
    assert!(
        took < Duration::from_secs(4),
        "stopping took {took:?} with silent connections open"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_message_that_stops_arriving_is_let_go_and_report_streams_live_on() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[http]\nbody_read_timeout = \"1s\"\n").await;
    // A Report stream opened first must outlive the timeout: it answers at once.
    let mut mixer = meshtel_model::mixer::mixer_client::MixerClient::connect(format!(
        "http://{}",
        m.grpc.unwrap()
    ))
    .await
    .unwrap();
    let (batches, rx) = futures::channel::mpsc::unbounded();
    let batch = || meshtel_model::mixer::ReportRequest {
        proxy_id: "test".into(),
        ..Default::default()
    };
    batches.unbounded_send(batch()).unwrap();
    let mut acks = mixer.report(rx).await.unwrap().into_inner();
    acks.message().await.unwrap().expect("first ack");

    // An Export declaring 1,000 bytes that sends 10 and then nothing, never ending.
    let (frames, body) = futures::channel::mpsc::unbounded::<Result<Vec<u8>, std::io::Error>>();
    let mut first = vec![0u8];
    first.extend_from_slice(&1000u32.to_be_bytes());
    first.extend_from_slice(&[0u8; 10]);
    frames.unbounded_send(Ok(first)).unwrap();
    let client = reqwest::Client::builder()
        .http2_prior_knowledge()
        .build()
        .unwrap();
    let started = Instant::now();
    let response = tokio::time::timeout(
        Duration::from_secs(10),
        client
            .post(format!(
                "http://{}/opentelemetry.proto.collector.trace.v1.TraceService/Export",
                m.grpc.unwrap()
            ))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(reqwest::Body::wrap_stream(body))
            .send(),
    )
    .await
    .expect("an answer to a stalled message, not a wait")
    .expect("an HTTP answer");
    let seconds = started.elapsed().as_secs_f64();
    let status = response
        .headers()
        .get("grpc-status")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    assert!(
        status.as_deref().is_some_and(|s| s != "0"),
        "{status:?} {response:?}"
    );
    assert!(seconds < 5.0, "answered only after {seconds:.1}s");
    drop(frames);

    // Past the timeout, the Report stream still takes batches.
    tokio::time::sleep(Duration::from_millis(500)).await;
    batches.unbounded_send(batch()).unwrap();
    acks.message()
        .await
        .unwrap()
        .expect("second ack, after the timeout");
    m.stop().await;
}

/// On 4317 too, a client that reads nothing while the server has bytes for it (here
/// the acknowledgements of its pings) is let go after `http.write_timeout`: tonic's
/// keep-alive pings wait behind the unsent bytes and could not tell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_that_reads_nothing_is_let_go() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[http]\nwrite_timeout = \"1s\"\n").await;
    let grpc = m.grpc.unwrap();
    let closed = tokio::task::spawn_blocking(move || {
        let socket =
            socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        socket.set_recv_buffer_size(4096).unwrap();
        socket.connect(&grpc.into()).unwrap();
        let mut stream: TcpStream = socket.into();
        // The preface and an empty SETTINGS frame, then PING frames, never reading:
        // the server's acknowledgements fill the socket buffers.
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend_from_slice(&[0, 0, 0, 4, 0, 0, 0, 0, 0]);
        stream.write_all(&hello).unwrap();
        let ping = [0, 0, 8, 6, 0, 0, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8];
        let pings: Vec<u8> = ping
            .iter()
            .copied()
            .cycle()
            .take(ping.len() * 4096)
            .collect();
        stream
            .set_write_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(20) {
            if stream.write_all(&pings).is_err() {
                break;
            }
        }
        // The server stopped reading too; wait past the write timeout, then read: the
        // end (or a reset) comes only if the server let the connection go.
        std::thread::sleep(Duration::from_secs(3));
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut sink = vec![0u8; 1 << 16];
        loop {
            match stream.read(&mut sink) {
                Ok(0) => return true,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
                Err(_) => return false,
            }
        }
    })
    .await
    .unwrap();
    assert!(closed, "the connection is still open");
    let metrics = get(&m.http_url("/metrics")).await.text();
    let series =
        "meshtel_http_connections_timed_out_total{listener=\"otlp_grpc\",phase=\"write\"} 1";
    assert!(metrics.contains(series), "no {series} in\n{metrics}");
    m.stop().await;
}

/// An HTTP/2 client that grants its streams no window keeps its connection alive
/// (it reads, and answers pings), so no write stalls; its answers are dropped after
/// `http.write_timeout` instead of being held for as long as it likes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http2_answers_a_client_grants_no_window_are_dropped() {
    let dir = TestDir::new();
    let m = Meshtel::serve_with_config(&dir, "[http]\nwrite_timeout = \"1s\"\n").await;
    let addr = m.http.unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) =
        hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
            .initial_stream_window_size(0)
            .adaptive_window(false)
            .handshake::<_, http_body_util::Empty<bytes::Bytes>>(hyper_util::rt::TokioIo::new(
                stream,
            ))
            .await
            .expect("h2c handshake");
    tokio::spawn(connection);
    let mut held = Vec::new();
    for _ in 0..10 {
        let request = http::Request::get(format!("http://{addr}/metrics"))
            .body(http_body_util::Empty::new())
            .unwrap();
        let response = sender.send_request(request).await.expect("answer head");
        assert_eq!(response.status(), 200);
        held.push(response);
    }
    let dropped = || async {
        let text = get(&m.http_url("/metrics")).await.text();
        parse_prometheus_text(&text)
            .into_iter()
            .find(|s| {
                s.name == "meshtel_http_answers_dropped_unread_total"
                    && s.has(&[("listener", "otlp_http")])
            })
            .map_or(0.0, |s| s.value)
    };
    eventually(
        Duration::from_secs(10),
        "the unread answers dropped",
        || async { (dropped().await >= 10.0).then_some(()) },
    )
    .await;
    drop(held);
    m.stop().await;
}
