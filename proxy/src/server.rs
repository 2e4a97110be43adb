//! Accept loops: HTTP/1.1 and h2c (prior knowledge) on already-bound listeners, with
//! graceful draining on shutdown; and the worker threads that run them.
//!
//! ```text
//!   control thread (caller's runtime): admin, Report stream, OTLP, watchers
//!   worker 0 ─ current-thread runtime ─ accept inbound + outbound ─ own client pools
//!   worker 1 ─ current-thread runtime ─ accept inbound + outbound ─ own client pools
//!   ...        (each worker listens on its own SO_REUSEPORT sockets)
//! ```
//!
//! A connection lives on the worker that accepted it, with the upstream connections
//! its requests use, so a request never crosses threads: no work stealing, no
//! cross-thread wake-ups, as in Envoy's and nginx's worker models. Every worker has
//! its own listening sockets on the same addresses (`SO_REUSEPORT`), and the kernel
//! spreads new connections over them by their addresses and ports. With one shared
//! socket, the worker that woke first took a whole burst of connections while the
//! other slept.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use hyper::body::{Body, Incoming};
use prometheus::{IntCounter, IntCounterVec};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use meshtel_model::conn_life::{self, Lingering, RequestCounter, WriteStall};
use meshtel_model::log_window::{LogWindow, Throttled};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::drain::Upgrades;
use crate::error::{Error, Result};
use crate::reset_flood::{Guarded, Resets, Tracked};
use crate::stats::Direction;

/// How long open connections, WebSockets included, may take to finish once shutdown
/// starts; those still open then are closed.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// A downstream connection that sends nothing, or starts no request, for this long is
/// closed (see [`conn_life`]); also hyper's HTTP/1.1 header read timeout.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// How long a downstream client may read nothing of a response the proxy has ready
/// to send before its connection is closed (Envoy's stream idle timeout): a client
/// that stops reading would otherwise hold its connection, and the upstream one
/// behind it, for ever.
pub const WRITE_STALL_TIMEOUT: Duration = Duration::from_secs(300);

/// `serve_listener`'s limits on every listener of the proxy.
pub const LIMITS: (Duration, Duration) = (IDLE_TIMEOUT, WRITE_STALL_TIMEOUT);

/// The counters of one listener's connections.
#[derive(Clone)]
pub struct ListenerCounters {
    /// Connections accepted.
    pub accepted: IntCounter,
    /// Connections closed after [`WRITE_STALL_TIMEOUT`].
    pub write_stalls: IntCounter,
    /// Requests hyper's parser refused ([`ProtocolErrors`]).
    pub protocol_errors: ProtocolErrors,
    /// Connections closed because their client reset most of its streams early
    /// ([`crate::reset_flood`]).
    pub reset_floods: IntCounter,
    /// Requests started on the listener (all connections), for [`crate::drain`].
    pub started: Arc<AtomicU64>,
}

impl ListenerCounters {
    /// The counters of `listener` on `worker`, from the proxy's stats.
    pub fn of(stats: &ConnectionStats, listener: &str, worker: &str) -> ListenerCounters {
        let report = direction_of(listener).zip(stats.refused_heads.clone());
        ListenerCounters {
            accepted: stats.connections.with_label_values(&[listener, worker]),
            write_stalls: stats.write_stalls.with_label_values(&[listener]),
            protocol_errors: ProtocolErrors { count: stats.protocol_errors.with_label_values(&[listener]), log: protocol_error_log(listener), report },
            reset_floods: stats.reset_floods.with_label_values(&[listener]),
            started: Arc::default(),
        }
    }
}

/// The direction of the proxy listener named `listener` (`inbound`, `outbound`); `None`
/// for the admin port.
fn direction_of(listener: &str) -> Option<Direction> {
    match listener {
        "inbound" => Some(Direction::Inbound),
        "outbound" => Some(Direction::Outbound),
        _ => None,
    }
}

/// Reports a request of a direction that hyper's HTTP/1.1 parser refused with a status
/// (`ProxyContext::report_refused_head`).
pub type RefusedHeads = Arc<dyn Fn(Direction, u16) + Send + Sync>;

/// Requests refused by hyper's HTTP/1.1 parser (a malformed request line or header, a
/// head over the size limit), which never reach the proxy's service: counted, logged
/// once per [`LogWindow`] interval with the count, so that a broken client or a scanner
/// shows, and on the inbound and outbound listeners reported as request records
/// (`DPE`, as Envoy logs them).
#[derive(Clone)]
pub struct ProtocolErrors {
    count: IntCounter,
    log: Arc<Throttled>,
    report: Option<(Direction, RefusedHeads)>,
}

/// The WARN for requests refused as invalid HTTP on `listener`, at most once per
/// interval, naming the last one's peer and error; its timer tells the end of a burst.
fn protocol_error_log(listener: &str) -> Arc<Throttled> {
    let listener = listener.to_owned();
    Throttled::new(move |count, last: &str| {
        warn!(listener = %listener, count, last, metric = "meshtel_proxy_downstream_protocol_errors_total", at_most_every = "10s", "requests refused as invalid HTTP since the last warning");
    })
}

impl ProtocolErrors {
    /// Counts `error` when it is a parse error; whether it was.
    fn note(&self, peer: SocketAddr, error: &(dyn std::error::Error + 'static)) -> bool {
        let Some(parse) = error.downcast_ref::<hyper::Error>().filter(|e| e.is_parse()) else {
            return false;
        };
        self.count.inc();
        // The status hyper answered with (its `on_error`): 414 and 431 for a target or
        // head over its limits, 400 for the rest. An HTTP/2 preface on an HTTP/1.1
        // connection is no request.
        if let Some((direction, report)) = &self.report
            && !parse.is_parse_version_h2()
        {
            let status = match parse.is_parse_too_large() {
                true if parse.to_string().contains("URI") => 414,
                true => 431,
                false => 400,
            };
            report(*direction, status);
        }
        self.log.note(format_args!("peer {peer}: {parse}"));
        true
    }
}

/// The connection counters every listener takes its own from.
#[derive(Clone)]
pub struct ConnectionStats {
    /// Accepted, by listener and worker.
    pub connections: IntCounterVec,
    /// Closed after [`WRITE_STALL_TIMEOUT`], by listener.
    pub write_stalls: IntCounterVec,
    /// Requests refused by the HTTP parser, by listener.
    pub protocol_errors: IntCounterVec,
    /// Closed for resetting most of their streams early, by listener.
    pub reset_floods: IntCounterVec,
    /// Reports those of the inbound and outbound listeners as request records.
    pub refused_heads: Option<RefusedHeads>,
}

/// Pending connections a listening socket queues, as tokio's `TcpListener::bind`.
const LISTEN_BACKLOG: i32 = 1024;

/// Opens the first listening socket of a proxy listener on `addr` (port 0 picks a
/// free one), ready for more workers to join with [`WorkerListeners::another`].
///
/// `SO_REUSEPORT` would let a second proxy started on the same port join silently and
/// take half its connections, so a plain bind goes first: it fails with "address in
/// use" while any other socket listens there, whether or not that one shares.
pub fn bind_first(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let probe = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    probe.set_reuse_address(true)?;
    probe.bind(&addr.into())?;
    let addr = probe.local_addr()?.as_socket().ok_or_else(|| io::Error::other("bound address is not an IP address"))?;
    // The probe holds the port (port 0 included) until the listening socket has it:
    // both allow address reuse and the probe never listens, so they do not conflict.
    let listener = bind_reuseport(addr);
    drop(probe);
    listener
}

/// Opens a listening socket on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`), so
/// each worker can open its own on the same address: see [`WorkerListeners::another`].
pub fn bind_reuseport(addr: SocketAddr) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    Ok(socket.into())
}

/// Serves `service` on every connection of `listener` until `shutdown` flips to
/// true, then lets open connections finish (bounded by [`DRAIN_TIMEOUT`]). Counts
/// accepted connections in `counters`. A connection that sends nothing, or starts
/// no request, for `idle` ([`IDLE_TIMEOUT`]) is closed, and so is one whose client
/// reads nothing of a response for `write_stall` ([`WRITE_STALL_TIMEOUT`]).
pub async fn serve_listener<S, B>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    counters: ListenerCounters,
    (idle, write_stall): (Duration, Duration),
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    // The inbound takes larger request heads than the outbound: room for the headers the
    // caller's proxy added (pool::INBOUND_HEAD_HEADROOM).
    let inbound = direction_of(name) == Some(Direction::Inbound);
    let (extra_h2_bytes, extra_fields) = if inbound { crate::pool::INBOUND_HEAD_HEADROOM } else { (0, 0) };
    let h1_buf = if inbound { crate::pool::INBOUND_H1_MAX_BUF_BYTES } else { crate::pool::H1_MAX_BUF_BYTES };
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .keep_alive(true)
        .header_read_timeout(idle)
        .max_buf_size(h1_buf)
        .max_headers(crate::pool::H1_MAX_HEADERS + extra_fields);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(crate::pool::H2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(crate::pool::H2_KEEP_ALIVE_TIMEOUT)
        .max_concurrent_streams(crate::pool::H2_MAX_CONCURRENT_STREAMS)
        .max_header_list_size(crate::pool::H2_MAX_HEADER_LIST_BYTES + extra_h2_bytes);
    // Each connection task holds a receiver; `closed()` is when every one has ended.
    let (drained, connection_token) = watch::channel(());
    let mut accept_errors = LogWindow::default();
    loop {
        tokio::select! {
            (stream, peer) = conn_life::accept(&listener, name, &mut accept_errors) => {
                counters.accepted.inc();
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(listener = name, %error, "set_nodelay failed");
                }
                let builder = builder.clone();
                let service = service.clone();
                let mut stop = shutdown.clone();
                let token = connection_token.clone();
                let write_stalls = counters.write_stalls.clone();
                let protocol_errors = counters.protocol_errors.clone();
                let reset_floods = counters.reset_floods.clone();
                let started = counters.started.clone();
                tokio::spawn(async move {
                    let _token = token;
                    if !conn_life::first_byte_unless_stopped(&stream, idle, &mut stop).await {
                        debug!(listener = name, %peer, "nothing sent, connection closed");
                        return;
                    }
                    let requests = RequestCounter::default();
                    let resets = Resets::default();
                    let service = Counted { inner: service, requests: requests.clone(), resets: resets.clone(), started };
                    // With upgrades: a WebSocket's `101` hands the connection to the
                    // proxy (forward::upgrade), as Envoy and Istio allow by default.
                    let stream = WriteStall::new(Lingering::new(stream), write_stall, move || {
                        write_stalls.inc();
                        debug!(listener = name, %peer, "the client read nothing of a response in time, connection closed");
                    });
                    let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
                    let mut connection = std::pin::pin!(connection);
                    let graceful: fn(std::pin::Pin<&mut _>) = |connection| auto::UpgradeableConnection::graceful_shutdown(connection);
                    let driven = tokio::select! {
                        ended = conn_life::drive(connection.as_mut(), graceful, &requests, idle, stop) => Some(ended),
                        () = resets.flooded() => None,
                    };
                    let ended = match driven {
                        Some(ended) => ended,
                        // GOAWAY: the client starts no more streams here, and those in
                        // flight finish (for a while): when the client is a proxy's
                        // pooled connection that relayed one caller's flood, the other
                        // callers' requests on it are not lost, and new ones go on a new
                        // connection.
                        None => {
                            reset_floods.inc();
                            let (streams, reset) = resets.counts();
                            debug!(listener = name, %peer, streams, reset, "the client reset most of its streams early (rapid reset), connection going away");
                            graceful(connection.as_mut());
                            match tokio::time::timeout(DRAIN_TIMEOUT, connection.as_mut()).await {
                                Ok(ended) => ended,
                                Err(_) => return,
                            }
                        }
                    };
                    if let Err(error) = ended
                        && !protocol_errors.note(peer, &*error)
                    {
                        debug!(listener = name, %peer, error = %error, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    drop(connection_token);
    if tokio::time::timeout(DRAIN_TIMEOUT, drained.closed()).await.is_err() {
        info!(listener = name, "drain timed out, closing remaining connections");
    }
}

/// A listener's request handler that also counts the requests of its connection, for
/// [`conn_life::drive`] to tell an idle connection, and the streams its client resets
/// early ([`crate::reset_flood`]).
#[derive(Clone)]
struct Counted<S> {
    inner: S,
    requests: RequestCounter,
    resets: Resets,
    /// The listener's requests, all connections.
    started: Arc<AtomicU64>,
}

impl<S, R, B> Service<Request<R>> for Counted<S>
where
    S: Service<Request<R>, Response = Response<B>>,
    B: Body,
{
    type Response = Response<Guarded<B>>;
    type Error = S::Error;
    type Future = Tracked<S::Future>;

    fn call(&self, request: Request<R>) -> Self::Future {
        self.requests.started();
        self.started.fetch_add(1, Ordering::Relaxed);
        // Only HTTP/2 streams are watched: an HTTP/1.1 client that drops a request
        // closes its connection with it, so it cannot flood one connection.
        let guard = (request.version() == hyper::Version::HTTP_2).then(|| self.resets.started());
        Tracked::new(self.inner.call(request), guard)
    }
}

/// One worker's proxy listeners: its own sockets, bound with [`bind_reuseport`] on the
/// same addresses as every other worker's, each with its own accept queue.
#[derive(Debug)]
pub struct WorkerListeners {
    /// The inbound listener and the local app's `host:port`, when configured.
    pub inbound: Option<(std::net::TcpListener, String)>,
    /// The outbound listener.
    pub outbound: std::net::TcpListener,
}

impl WorkerListeners {
    /// Opens sockets for another worker on the addresses these listen on. Fails with
    /// [`Error::Bind`] when they were not bound with [`bind_reuseport`].
    pub fn another(&self) -> Result<WorkerListeners> {
        let rebind = |listener: &'static str, bound: &std::net::TcpListener| -> Result<std::net::TcpListener> {
            let addr = bound.local_addr()?;
            bind_reuseport(addr).map_err(|source| Error::Bind { listener, addr, source })
        };
        Ok(WorkerListeners {
            inbound: match &self.inbound {
                Some((bound, app)) => Some((rebind("inbound", bound)?, app.clone())),
                None => None,
            },
            outbound: rebind("outbound", &self.outbound)?,
        })
    }
}

/// A worker thread: one current-thread runtime serving the inbound and outbound
/// listeners until shutdown.
#[derive(Debug)]
pub struct Worker {
    index: usize,
    started: oneshot::Receiver<io::Result<()>>,
    stopped: oneshot::Receiver<()>,
}

/// A worker that is serving.
#[derive(Debug)]
pub struct RunningWorker {
    index: usize,
    stopped: oneshot::Receiver<()>,
}

impl Worker {
    /// Starts worker `index` on its own thread. `service` makes the request handler of
    /// a listener: `Some(app)` for the inbound one, `None` for the outbound one; it
    /// runs on the worker, so the handler's client pools are the worker's own. On
    /// shutdown the worker drains its connections and `upgrades` (its handlers'
    /// WebSockets), both for [`DRAIN_TIMEOUT`].
    pub fn spawn<F, S, B>(
        index: usize,
        listeners: WorkerListeners,
        connections: ConnectionStats,
        shutdown: watch::Receiver<bool>,
        upgrades: Upgrades,
        service: F,
    ) -> Result<Worker>
    where
        F: Fn(Option<String>) -> S + Send + 'static,
        S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
        S::Future: Send + 'static,
        B: Body + Send + 'static,
        B::Data: Send,
        B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let failed = |what, source| Error::Worker { index, what, source: Some(source) };
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|source| failed("building its runtime", source))?;
        let (started_tx, started) = oneshot::channel();
        let (stopped_tx, stopped) = oneshot::channel();
        let worker = index.to_string();
        let thread = std::thread::Builder::new().name(format!("meshtel-worker-{index}"));
        thread
            .spawn(move || {
                runtime.block_on(async move {
                    let mut servers = JoinSet::new();
                    let mut stop = shutdown.clone();
                    let registered = (|| {
                        // The outbound serves on after the stop until the inbound has
                        // drained and the app is quiet (crate::drain::hold_outbound).
                        let mut inbound_drained = None;
                        if let Some((listener, app)) = listeners.inbound {
                            let listener = TcpListener::from_std(listener)?;
                            let counters = ListenerCounters::of(&connections, "inbound", &worker);
                            let (drained, drained_rx) = watch::channel(false);
                            inbound_drained = Some(drained_rx);
                            let inbound = serve_listener("inbound", listener, service(Some(app)), counters, LIMITS, shutdown.clone());
                            servers.spawn(async move {
                                inbound.await;
                                let _ = drained.send(true);
                            });
                        }
                        let listener = TcpListener::from_std(listeners.outbound)?;
                        let counters = ListenerCounters::of(&connections, "outbound", &worker);
                        let (release, released) = watch::channel(false);
                        servers.spawn(crate::drain::hold_outbound(shutdown, inbound_drained, counters.started.clone(), release));
                        servers.spawn(serve_listener("outbound", listener, service(None), counters, LIMITS, released));
                        Ok(())
                    })();
                    let serving = registered.is_ok();
                    let _ = started_tx.send(registered);
                    if serving {
                        debug!(worker = index, "worker serving");
                        let listeners_drained = async { while servers.join_next().await.is_some() {} };
                        // Upgraded connections belong to no connection task any more:
                        // drained beside the listeners, from the same stop, as long.
                        let upgrades_drained = async {
                            if stop.wait_for(|stopped| *stopped).await.is_ok() {
                                upgrades.drain(DRAIN_TIMEOUT).await;
                            }
                        };
                        tokio::join!(listeners_drained, upgrades_drained);
                    }
                });
                // Dropping the runtime ends what is left on it (idle pooled upstream
                // connections) before the worker reports that it stopped.
                drop(runtime);
                let _ = stopped_tx.send(());
            })
            .map_err(|source| failed("starting its thread", source))?;
        Ok(Worker { index, started, stopped })
    }

    /// Waits until the worker serves both listeners.
    pub async fn started(self) -> Result<RunningWorker> {
        let index = self.index;
        match self.started.await {
            Ok(Ok(())) => Ok(RunningWorker { index, stopped: self.stopped }),
            Ok(Err(source)) => Err(Error::Worker { index, what: "registering the listeners", source: Some(source) }),
            Err(_) => Err(Error::Worker { index, what: "ended before serving", source: None }),
        }
    }
}

impl RunningWorker {
    /// Waits until the worker has drained its connections and stopped (after
    /// shutdown), or ended on its own (a panic: logged).
    pub async fn stopped(self) {
        if self.stopped.await.is_err() {
            error!(worker = self.index, "worker thread ended abnormally");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any_port() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 0))
    }

    fn test_counters() -> ListenerCounters {
        ListenerCounters {
            accepted: IntCounter::new("a", "a").expect("counter"),
            write_stalls: IntCounter::new("w", "w").expect("counter"),
            protocol_errors: ProtocolErrors { count: IntCounter::new("p", "p").expect("counter"), log: protocol_error_log("test"), report: None },
            reset_floods: IntCounter::new("r", "r").expect("counter"),
            started: Arc::default(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_reads_nothing_of_its_answer_is_let_go() {
        let listener = TcpListener::bind(any_port()).await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        // An answer far larger than the sockets' buffers.
        let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(bytes::Bytes::from(vec![b'x'; 64 << 20]))))
        });
        let (stop, shutdown) = watch::channel(false);
        let counters = test_counters();
        let server = tokio::spawn(serve_listener("test", listener, service, counters.clone(), (Duration::from_secs(60), Duration::from_millis(300)), shutdown));
        // Sends its request, then reads nothing until the server gives up on it.
        let closed = tokio::task::spawn_blocking(move || {
            use std::io::{Read, Write};
            let mut stream = std::net::TcpStream::connect(addr).expect("connect");
            stream.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n").expect("write");
            std::thread::sleep(Duration::from_secs(2));
            stream.set_read_timeout(Some(Duration::from_secs(10))).expect("read timeout");
            let mut read = 0usize;
            let mut buffer = vec![0u8; 1 << 20];
            loop {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => return read,
                    Ok(n) => read += n,
                }
            }
        })
        .await
        .expect("client");
        assert!(closed < 64 << 20, "the whole answer came through: {closed} bytes");
        assert_eq!(counters.write_stalls.get(), 1);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("stopped").expect("server task");
    }

    /// An h2c client that opens streams and resets each shortly after the proxy took
    /// it: the connection is closed once most of 100 were reset, and counted; a
    /// client whose streams end normally is not.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_client_that_resets_most_of_its_streams_early_is_let_go() {
        let listener = TcpListener::bind(any_port()).await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        // Answers after a while, unless the request asks for at once.
        let service = hyper::service::service_fn(|request: Request<Incoming>| async move {
            if request.uri().path() != "/now" {
                tokio::time::sleep(Duration::from_secs(2)).await;
            }
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok"))))
        });
        let (stop, shutdown) = watch::channel(false);
        let counters = test_counters();
        let server = tokio::spawn(serve_listener("test", listener, service, counters.clone(), (Duration::from_secs(60), Duration::from_secs(60)), shutdown));
        let connect = || async move {
            let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
            let (sender, connection) = hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c handshake");
            let connection = tokio::spawn(connection);
            (sender, connection)
        };
        let get = |path: &str| Request::get(format!("http://{addr}{path}")).body(http_body_util::Empty::<bytes::Bytes>::new()).expect("request");

        // 300 requests answered at once, then a few cancelled: no flood.
        let (mut sender, _connection) = connect().await;
        for _ in 0..300 {
            let response = sender.send_request(get("/now")).await.expect("answered");
            assert_eq!(response.status(), 200);
        }
        for _ in 0..50 {
            let _ = tokio::time::timeout(Duration::from_millis(5), sender.send_request(get("/slow"))).await;
        }
        assert_eq!(counters.reset_floods.get(), 0);
        assert_eq!(sender.send_request(get("/now")).await.expect("still open").status(), 200);

        // Every request reset 5 ms after it was sent: the connection goes away within
        // the first hundreds, and a request in flight on it (another caller's, when the
        // client is a proxy's pooled connection) still gets its answer.
        let (mut sender, connection) = connect().await;
        let innocent = tokio::spawn(sender.send_request(get("/slow")));
        for _ in 0..1_000 {
            if sender.ready().await.is_err() {
                break;
            }
            let _ = tokio::time::timeout(Duration::from_millis(5), sender.send_request(get("/slow"))).await;
        }
        // Ended, with or without an error (the proxy closed it mid-stream).
        let _ = tokio::time::timeout(Duration::from_secs(5), connection).await.expect("the proxy closed the connection").expect("connection task");
        assert_eq!(counters.reset_floods.get(), 1);
        assert_eq!(innocent.await.expect("request task").expect("answered before the connection went").status(), 200);
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("stopped").expect("server task");
    }

    #[test]
    fn workers_share_an_address_that_a_second_proxy_cannot_take() {
        let first = bind_first(any_port()).expect("first socket");
        let addr = first.local_addr().expect("bound");
        assert_ne!(addr.port(), 0);
        let worker = WorkerListeners { inbound: None, outbound: first };
        let other = worker.another().expect("another worker's socket");
        assert_eq!(other.outbound.local_addr().expect("bound"), addr);
        // A second proxy on the same port is refused, though the sockets share.
        let refused = bind_first(addr).expect_err("address in use");
        assert_eq!(refused.kind(), io::ErrorKind::AddrInUse, "{refused}");
        // Sockets bound without SO_REUSEPORT take no workers.
        let plain = std::net::TcpListener::bind(any_port()).expect("plain socket");
        let plain = WorkerListeners { inbound: None, outbound: plain };
        match plain.another() {
            Err(Error::Bind { listener: "outbound", source, .. }) => assert_eq!(source.kind(), io::ErrorKind::AddrInUse),
            other => panic!("expected a bind error, got {other:?}"),
        }
    }

    /// Seconds until the server closes a connection that sent `data`, at most `wait`.
    fn closed_after(addr: SocketAddr, data: &[u8], wait: Duration) -> Option<f64> {
        use std::io::{Read, Write};
        let mut stream = std::net::TcpStream::connect(addr).expect("connect");
        stream.set_read_timeout(Some(wait)).expect("read timeout");
        let started = std::time::Instant::now();
        stream.write_all(data).expect("write");
        let mut buffer = [0u8; 1024];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) => return Some(started.elapsed().as_secs_f64()),
                Ok(_) if started.elapsed() < wait => continue,
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => return None,
                Ok(_) => return None,
                Err(_) => return Some(started.elapsed().as_secs_f64()),
            }
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn connections_that_send_nothing_or_start_no_request_are_closed() {
        let listener = TcpListener::bind(any_port()).await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Full::new(bytes::Bytes::from_static(b"ok"))))
        });
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(serve_listener("test", listener, service, test_counters(), (Duration::from_millis(500), WRITE_STALL_TIMEOUT), shutdown));
        let wait = Duration::from_secs(8);
        let cases: [(&str, &[u8]); 2] = [("silent", b""), ("HTTP/1.1 after a response", b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")];
        for (what, data) in cases {
            let seconds = tokio::task::spawn_blocking(move || closed_after(addr, data, wait)).await.expect("client");
            let seconds = seconds.unwrap_or_else(|| panic!("{what}: still open after {wait:?}"));
            assert!(seconds < 4.0, "{what}: closed after {seconds:.1} s");
        }
        // An h2c client that opens no stream after one request: GOAWAY, then closed.
        let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream)).await.expect("h2c handshake");
        let connection = tokio::spawn(connection);
        let request = Request::get("http://x/").body(http_body_util::Empty::<bytes::Bytes>::new()).expect("request");
        assert_eq!(sender.send_request(request).await.expect("h2c response").status(), 200);
        let started = std::time::Instant::now();
        tokio::time::timeout(wait, connection).await.expect("h2c connection still open").expect("task").expect("clean end");
        assert!(started.elapsed() < Duration::from_secs(4), "h2c: closed after {:?}", started.elapsed());
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("stopped").expect("server task");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_connection_that_never_speaks_does_not_hold_up_shutdown() {
        let listener = TcpListener::bind(any_port()).await.expect("bind");
        let addr = listener.local_addr().expect("bound");
        let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(http_body_util::Empty::<bytes::Bytes>::new()))
        });
        let (stop, shutdown) = watch::channel(false);
        let server = tokio::spawn(serve_listener("test", listener, service, test_counters(), (Duration::from_secs(60), WRITE_STALL_TIMEOUT), shutdown));
        let _silent = std::net::TcpStream::connect(addr).expect("connect");
        tokio::time::sleep(Duration::from_millis(100)).await;
        let stopping = std::time::Instant::now();
        stop.send_replace(true);
        tokio::time::timeout(Duration::from_secs(10), server).await.expect("stopped").expect("server task");
        assert!(stopping.elapsed() < Duration::from_secs(2), "stopping took {:?}", stopping.elapsed());
    }

    #[test]
    fn every_worker_socket_gets_a_share_of_new_connections() {
        let first = WorkerListeners { inbound: None, outbound: bind_first(any_port()).expect("bind") };
        let second = first.another().expect("another");
        let addr = first.outbound.local_addr().expect("bound");
        let clients: Vec<_> = (0..32).map(|_| std::net::TcpStream::connect(addr).expect("connect")).collect();
        let queued = |listener: &std::net::TcpListener| std::iter::from_fn(|| listener.accept().ok()).count();
        let (a, b) = (queued(&first.outbound), queued(&second.outbound));
        assert_eq!(a + b, clients.len(), "every connection queued once");
        assert!(a > 0 && b > 0, "both sockets got connections: {a} and {b}");
    }
}
