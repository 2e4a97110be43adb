use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::AtomicUsize;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::*;

/// A real HTTP/1.1 server on 127.0.0.1 answering `hello` (or a 64 KiB body for
/// `/large`), counting the connections it accepted; with `close_idle`, it closes
/// each connection after its first response without saying so.
struct App {
    addr: String,
    accepted: Arc<AtomicUsize>,
}

async fn start_app(close_idle: bool) -> App {
    let listener = TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0))).await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let service = service_fn(|request: Request<Incoming>| async move {
                    let body = if request.uri().path() == "/large" { Bytes::from(vec![b'x'; 64 * 1024]) } else { Bytes::from_static(b"hello") };
                    let host = request.headers().get(HOST).cloned();
                    let mut response = Response::new(Full::new(body));
                    if let Some(host) = host {
                        response.headers_mut().insert("x-host", host);
                    }
                    response.headers_mut().insert("x-uri", HeaderValue::from_str(&request.uri().to_string()).expect("uri"));
                    Ok::<_, Infallible>(response)
                });
                let connection = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service);
                if close_idle {
                    // Answer one request, then drop the connection while idle.
                    let mut connection = std::pin::pin!(connection);
                    let _ = tokio::time::timeout(Duration::from_millis(50), connection.as_mut()).await;
                } else {
                    let _ = connection.await;
                }
            });
        }
    });
    App { addr, accepted }
}

fn pool(idle_timeout: Duration) -> UpstreamPool {
    UpstreamPool::new(PoolSettings { connect_timeout: Duration::from_secs(1), idle_timeout })
}

fn get(path: &str) -> Request<RequestBody> {
    let mut request = Request::new(RequestBody::buffered(Bytes::new()));
    *request.uri_mut() = Uri::try_from(path).expect("uri");
    request
}

/// Sends, reads the body to the end, releases the connection; returns the body.
async fn exchange(pool: &UpstreamPool, app: &App, request: Request<RequestBody>) -> (Response<()>, Bytes) {
    let Upstream { response, connection } = pool.send(&app.addr, request).await.expect("response");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body").to_bytes();
    connection.expect("HTTP/1.1 connection").release();
    (Response::from_parts(parts, ()), body)
}

#[tokio::test]
async fn a_request_given_up_before_its_answer_closes_its_connection() {
    use tokio::io::AsyncReadExt;
    // An upstream that never reads the request: the body cannot be sent whole.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("bound").to_string();
    let pool = pool(POOL_IDLE_TIMEOUT);
    let mut request = Request::new(RequestBody::buffered(Bytes::from(vec![7u8; 32 << 20])));
    *request.method_mut() = http::Method::POST;
    *request.uri_mut() = Uri::from_static("/upload");
    let send = tokio::time::timeout(Duration::from_millis(500), pool.send(&addr, request));
    let (accepted, given_up) = tokio::join!(listener.accept(), send);
    assert!(given_up.is_err(), "no answer was expected");
    let (mut upstream, _) = accepted.expect("accept");
    // Given up on: the connection closes, so reading what was sent reaches its end.
    let read_to_end = async {
        let mut buffer = vec![0u8; 1 << 16];
        let mut total = 0usize;
        loop {
            match upstream.read(&mut buffer).await {
                Ok(0) | Err(_) => return total,
                Ok(n) => total += n,
            }
        }
    };
    let total = tokio::time::timeout(Duration::from_secs(5), read_to_end).await.expect("the connection stayed open");
    assert!(total < 32 << 20, "the whole body was sent ({total} bytes)");
}

#[tokio::test]
async fn a_released_connection_carries_the_next_requests() {
    let app = start_app(false).await;
    let pool = pool(POOL_IDLE_TIMEOUT);
    for _ in 0..20 {
        let (response, body) = exchange(&pool, &app, get("http://ignored:1/a?b=c")).await;
        assert_eq!(&body[..], b"hello");
        // Origin-form on the wire, and the upstream as Host when the request had none.
        assert_eq!(response.headers()["x-uri"], "/a?b=c");
        assert_eq!(response.headers()["x-host"], app.addr.as_str());
    }
    assert_eq!(app.accepted.load(Ordering::SeqCst), 1, "one connection for sequential requests");
    assert_eq!(pool.idle_connections(&app.addr), 1);
    // A Host the request carries is kept.
    let mut request = get("/");
    request.headers_mut().insert(HOST, HeaderValue::from_static("reviews:9080"));
    let (response, _) = exchange(&pool, &app, request).await;
    assert_eq!(response.headers()["x-host"], "reviews:9080");
}

#[tokio::test]
async fn concurrent_requests_open_connections_and_all_return_to_the_pool() {
    let app = start_app(false).await;
    let pool = pool(POOL_IDLE_TIMEOUT);
    // Response heads held at once: each needs its own connection.
    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(pool.send(&app.addr, get("/large")).await.expect("response"));
    }
    assert_eq!(app.accepted.load(Ordering::SeqCst), 5);
    for Upstream { response, connection } in held {
        assert_eq!(response.into_body().collect().await.expect("body").to_bytes().len(), 64 * 1024);
        connection.expect("connection").release();
    }
    assert_eq!(pool.idle_connections(&app.addr), 5);
    for _ in 0..10 {
        exchange(&pool, &app, get("/")).await;
    }
    assert_eq!(app.accepted.load(Ordering::SeqCst), 5, "pooled connections reused");
}

#[tokio::test]
async fn a_connection_whose_body_was_not_read_is_not_reused() {
    let app = start_app(false).await;
    let pool = pool(POOL_IDLE_TIMEOUT);
    let Upstream { response, connection } = pool.send(&app.addr, get("/large")).await.expect("response");
    drop((response, connection));
    assert_eq!(pool.idle_connections(&app.addr), 0);
    exchange(&pool, &app, get("/")).await;
    assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_pooled_connection_the_upstream_closed_is_skipped() {
    let app = start_app(true).await;
    let pool = pool(POOL_IDLE_TIMEOUT);
    exchange(&pool, &app, get("/")).await;
    assert_eq!(pool.idle_connections(&app.addr), 1);
    // The app drops the idle connection; the next request still gets an answer.
    tokio::time::sleep(Duration::from_millis(150)).await;
    let (_, body) = exchange(&pool, &app, get("/")).await;
    assert_eq!(&body[..], b"hello");
    assert_eq!(app.accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn idle_connections_past_the_idle_timeout_are_closed() {
    let app = start_app(false).await;
    let pool = pool(Duration::from_millis(100));
    exchange(&pool, &app, get("/")).await;
    pool.sweep();
    assert_eq!(pool.idle_connections(&app.addr), 1, "not idle long enough yet");
    tokio::time::sleep(Duration::from_millis(150)).await;
    pool.sweep();
    assert_eq!(pool.idle_connections(&app.addr), 0);
    exchange(&pool, &app, get("/")).await;
    assert_eq!(app.accepted.load(Ordering::SeqCst), 2, "a new connection after the timeout");
}

#[tokio::test]
async fn connection_failures_are_told_apart() {
    let addr = crate::test_support::dead_address().to_string();
    let pool = pool(POOL_IDLE_TIMEOUT);
    match pool.send(&addr, get("/")).await {
        Err(Failure::Connect(error)) => assert!(error.to_string().contains("refused"), "{error}"),
        other => panic!("expected a connect failure, got {other:?}"),
    }
    // A server that accepts and closes without answering: a reset, not a connect failure.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            drop(stream);
        }
    });
    assert!(matches!(pool.send(&addr, get("/")).await, Err(Failure::Reset(_))));
}

/// A listener whose accept queue is full (the kernel drops further SYNs until it is
/// drained), with the connections that fill it.
async fn full_listener() -> (SocketAddr, tokio::net::TcpListener, Vec<tokio::net::TcpStream>) {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind");
    let addr = socket.local_addr().expect("addr");
    let listener = socket.listen(1).expect("listen");
    let mut filled = Vec::new();
    for _ in 0..4 {
        if let Ok(Ok(stream)) = tokio::time::timeout(Duration::from_millis(100), tokio::net::TcpStream::connect(addr)).await {
            filled.push(stream);
        }
    }
    (addr, listener, filled)
}

/// A listener whose accept queue is full and never drained: connecting to it hangs
/// until the connect timeout, as to a vanished host.
async fn unanswering_address() -> (String, Vec<tokio::net::TcpStream>) {
    let (addr, listener, filled) = full_listener().await;
    // The listener is kept (leaked into a task) and never accepts.
    tokio::spawn(async move {
        let _listener = listener;
        std::future::pending::<()>().await;
    });
    (addr.to_string(), filled)
}

#[tokio::test]
async fn h2c_requests_waiting_on_one_failed_dial_fail_with_it_together() {
    let (addr, _filled) = unanswering_address().await;
    let pool = UpstreamPool::new(PoolSettings { connect_timeout: Duration::from_millis(200), idle_timeout: POOL_IDLE_TIMEOUT });
    let h2 = || {
        let mut request = get("http://upstream/");
        *request.version_mut() = Version::HTTP_2;
        request
    };
    let started = Instant::now();
    let results = futures::future::join_all((0..10).map(|_| pool.send(&addr, h2()))).await;
    let took = started.elapsed();
    for result in results {
        assert!(matches!(result, Err(Failure::Connect(_))), "{result:?}");
    }
    // One dial's timeout for all ten, not ten in turn.
    assert!(took < Duration::from_millis(1_000), "took {took:?}");
}

/// A sweep while the first h2c connection to an address is still being dialed keeps
/// the address's one-dial-at-a-time lock: a request arriving after the sweep waits for
/// that dial and shares its connection instead of opening a second one.
#[tokio::test]
async fn a_sweep_during_an_h2c_dial_keeps_one_dial_per_address() {
    // A listener whose accept queue is full at first: the pool's SYN is dropped and
    // retried about a second later, by when the queue has been drained.
    let (addr, listener, filled) = full_listener().await;
    let h2c_connections = Arc::new(AtomicUsize::new(0));
    let counter = h2c_connections.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        while let Ok((stream, _)) = listener.accept().await {
            let counter = counter.clone();
            tokio::spawn(async move {
                // The fillers never speak; an h2c client opens with its preface.
                let mut preface = [0u8; 3];
                if stream.peek(&mut preface).await.is_ok() && &preface == b"PRI" {
                    counter.fetch_add(1, Ordering::SeqCst);
                }
                let service = service_fn(|_request: Request<Incoming>| async { Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"hello")))) });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new()).serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    let pool = UpstreamPool::new(PoolSettings { connect_timeout: Duration::from_secs(5), idle_timeout: Duration::ZERO });
    let h2 = || {
        let mut request = get("http://upstream/");
        *request.version_mut() = Version::HTTP_2;
        request
    };
    let addr = addr.to_string();
    let first = pool.send(&addr, h2());
    let second = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        // Everything idle would go: the dial under way must not.
        pool.sweep();
        pool.send(&addr, h2()).await
    };
    let (first, second) = tokio::join!(first, second);
    for result in [first, second] {
        let Upstream { response, .. } = result.expect("response");
        assert_eq!(response.status(), http::StatusCode::OK);
    }
    assert_eq!(h2c_connections.load(Ordering::SeqCst), 1, "one h2c connection for both requests");
    drop(filled);
}
