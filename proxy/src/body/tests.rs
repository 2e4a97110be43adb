//! The response body idle timeout through a real proxy: an upstream that stops sending
//! its body is cut off on both sides and reported `SI`; one that is slow but steady is
//! not.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::test_support::*;

const MESH: &str = "services:\n  - name: reviews\n    endpoints: []\n";
const IDLE: Duration = Duration::from_millis(300);
/// A response head whose first chunk size is unreadable.
const BAD_FIRST_CHUNK: &str = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n";

/// An upstream that answers each connection's request with `head`, then sends each of
/// `chunks` after `pause`, then neither sends nor closes; sends on the channel when the
/// proxy closed one of its connections.
async fn scripted_upstream(head: &'static str, chunks: Vec<&'static [u8]>, pause: Duration) -> (SocketAddr, mpsc::UnboundedReceiver<Instant>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind upstream");
    let addr = listener.local_addr().expect("upstream addr");
    let (closed, closes) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (closed, chunks) = (closed.clone(), chunks.clone());
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buffer = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    let n = stream.read(&mut buffer).await.expect("read request");
                    assert!(n > 0, "the proxy closed before its request head");
                    request.extend_from_slice(&buffer[..n]);
                }
                stream.write_all(head.as_bytes()).await.expect("write head");
                for chunk in chunks {
                    tokio::time::sleep(pause).await;
                    stream.write_all(chunk).await.expect("write chunk");
                }
                // Hold the connection until the proxy closes it.
                while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
                let _ = closed.send(Instant::now());
            });
        }
    });
    (addr, closes)
}

/// What a raw HTTP/1.1 caller got for one GET: the bytes, and when the connection
/// ended (`None`: still open after `wait`).
async fn get_until_closed(addr: SocketAddr, wait: Duration) -> (Vec<u8>, Option<Duration>) {
    let started = Instant::now();
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(b"GET /stalls HTTP/1.1\r\nHost: reviews\r\n\r\n").await.expect("request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match tokio::time::timeout_at(started + wait, stream.read(&mut buffer)).await {
            Err(_) => return (received, None),
            Ok(Ok(0) | Err(_)) => return (received, Some(started.elapsed())),
            Ok(Ok(n)) => received.extend_from_slice(&buffer[..n]),
        }
    }
}

/// The body of a raw HTTP/1.1 response (after the head).
fn body_of(response: &[u8]) -> &[u8] {
    let end = response.windows(4).position(|w| w == b"\r\n\r\n").map_or(response.len(), |at| at + 4);
    &response[end..]
}

#[tokio::test]
async fn a_response_body_that_stops_arriving_is_cut_and_reported_si() {
    let cases = [
        // 10 of 100 announced bytes.
        ("HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789", "content-length"),
        // One chunk, then neither the next nor the last.
        ("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n0123456789\r\n", "chunked"),
    ];
    let collector = start_collector().await;
    for (n, (head, what)) in cases.into_iter().enumerate() {
        let (app, mut upstream_closed) = scripted_upstream(head, Vec::new(), Duration::ZERO).await;
        let proxy = start_proxy(MESH, "reviews", Some(app), |config| {
            config.collector = collector.url();
            config.body_idle_timeout = Some(IDLE);
        })
        .await;
        let inbound = proxy.addresses.inbound.expect("inbound listener");
        let started = Instant::now();
        let (received, closed_after) = get_until_closed(inbound, Duration::from_secs(5)).await;
        let text = String::from_utf8_lossy(&received);
        let closed_after = closed_after.unwrap_or_else(|| panic!("{what}: the caller's connection is still open: {text:?}"));
        assert!(closed_after >= IDLE && closed_after < Duration::from_secs(3), "{what}: closed after {closed_after:?}");
        assert!(text.starts_with("HTTP/1.1 200 "), "{what}: {text:?}");
        // The caller sees a truncated body, never a clean end.
        let body = String::from_utf8_lossy(body_of(&received)).into_owned();
        assert!(body.contains("0123456789"), "{what}: {body:?}");
        match what {
            "content-length" => assert_eq!(body, "0123456789", "{what}: 10 of 100 bytes"),
            _ => assert!(!body.ends_with("0\r\n\r\n"), "{what}: no last chunk: {body:?}"),
        }
        // The upstream connection is closed, not pooled.
        let upstream_closed = tokio::time::timeout(Duration::from_secs(3), upstream_closed.recv()).await;
        let upstream_closed = upstream_closed.unwrap_or_else(|_| panic!("{what}: the upstream connection is still open")).expect("closed");
        assert!(upstream_closed - started < Duration::from_secs(3), "{what}");
        let records = collector.wait_records(n + 1).await;
        let record = &records[n];
        assert_eq!((record.response_code, record.response_flags.as_str()), (200, "SI"), "{what}: {record:?}");
    }
}

#[tokio::test]
async fn a_slow_but_steady_response_body_is_not_cut() {
    // A byte every 100 ms for a second, under a 300 ms body idle timeout.
    let chunks: Vec<&'static [u8]> = vec![b"0", b"1", b"2", b"3", b"4", b"5", b"6", b"7", b"8", b"9"];
    let (app, _closes) = scripted_upstream("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", chunks, Duration::from_millis(100)).await;
    let collector = start_collector().await;
    let proxy = start_proxy(MESH, "reviews", Some(app), |config| {
        config.collector = collector.url();
        config.body_idle_timeout = Some(IDLE);
    })
    .await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let started = Instant::now();
    let mut stream = TcpStream::connect(inbound).await.expect("connect");
    stream.write_all(b"GET /slow HTTP/1.1\r\nHost: reviews\r\n\r\n").await.expect("request");
    let mut received = Vec::new();
    let mut buffer = [0u8; 1024];
    while body_of(&received).len() < 10 || !received.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buffer)).await.expect("more of the body").expect("read");
        assert!(n > 0, "closed after {:?}: {:?}", started.elapsed(), String::from_utf8_lossy(&received));
        received.extend_from_slice(&buffer[..n]);
    }
    assert_eq!(body_of(&received), b"0123456789");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());
    let records = collector.wait_records(1).await;
    assert_eq!((records[0].response_code, records[0].response_flags.as_str()), (200, ""), "{:?}", records[0]);
}

/// An upstream body that breaks on its first read (a bad chunk size with the head) ends
/// the exchange before hyper has written anything downstream: the caller gets no status
/// line (HTTP/1.1: the connection closes; h2: the stream is reset), so the record says
/// 0, not the upstream's 200. One that breaks later, after the head went out, keeps it.
#[tokio::test]
async fn a_response_body_broken_before_anything_was_sent_is_reported_without_a_status() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let collector = start_collector().await;
    let chunked = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n";
    let cases: [(&'static str, Vec<&'static [u8]>, u32, bool); 2] = [
        (BAD_FIRST_CHUNK, vec![], 0, false),
        (chunked, vec![b"zz\r\n"], 200, true),
    ];
    for (n, (head, chunks, status, head_sent)) in cases.into_iter().enumerate() {
        let (app, _closes) = scripted_upstream(head, chunks, Duration::from_millis(200)).await;
        let proxy = start_proxy(MESH, "reviews", Some(app), |config| config.collector = collector.url()).await;
        let inbound = proxy.addresses.inbound.expect("inbound listener");
        let (received, closed) = get_until_closed(inbound, Duration::from_secs(3)).await;
        let text = String::from_utf8_lossy(&received);
        assert!(closed.is_some(), "{n}: the connection is closed: {text:?}");
        assert_eq!(text.starts_with("HTTP/1.1 200 "), head_sent, "{n}: {text:?}");
        assert!(head_sent || received.is_empty(), "{n}: {text:?}");
        let records = collector.wait_records(n + 1).await;
        assert_eq!((records[n].response_code, records[n].response_flags.as_str()), (status, "UR"), "{n}: {:?}", records[n]);
    }
    // An h2c caller gets its stream reset, no headers.
    let (app, _closes) = scripted_upstream(BAD_FIRST_CHUNK, vec![], Duration::ZERO).await;
    let proxy = start_proxy(MESH, "reviews", Some(app), |config| {
        config.collector = collector.url();
        config.app_protocol = crate::AppProtocol::Http1;
    })
    .await;
    let inbound = proxy.addresses.inbound.expect("inbound listener");
    let stream = TcpStream::connect(inbound).await.expect("connect inbound");
    let (mut sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c handshake");
    tokio::spawn(connection);
    let request = http::Request::get("http://reviews/").version(http::Version::HTTP_2).body(http_body_util::Empty::<bytes::Bytes>::new()).expect("request");
    let answer = sender.send_request(request).await;
    assert!(answer.is_err(), "no headers: {:?}", answer.map(|r| r.status()));
    let records = collector.wait_records(3).await;
    assert_eq!((records[2].response_code, records[2].response_flags.as_str()), (0, "UR"), "{:?}", records[2]);
}
