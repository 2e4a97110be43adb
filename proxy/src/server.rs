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
use std::time::Duration;

use hyper::body::{Body, Incoming};
use prometheus::{IntCounter, IntCounterVec};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use meshtel_model::log_window::{LOG_INTERVAL, LogWindow};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};

/// How long open connections may take to finish once shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
/// accepted connections in `connections`.
pub async fn serve_listener<S, B>(
    name: &'static str,
    listener: TcpListener,
    service: S,
    connections: IntCounter,
    mut shutdown: watch::Receiver<bool>,
) where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible> + Clone + Send + Sync + 'static,
    S::Future: Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder.http1().timer(TokioTimer::new()).keep_alive(true);
    builder.http2().timer(TokioTimer::new());
    let graceful = GracefulShutdown::new();
    let mut accept_errors = LogWindow::default();
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly, and
                        // log one line per interval however long it lasts.
                        if let Some(failures) = accept_errors.note(std::time::Instant::now()) {
                            warn!(listener = name, %error, failures, every = ?LOG_INTERVAL, "accept failed");
                        }
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                connections.inc();
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(listener = name, %error, "set_nodelay failed");
                }
                // With upgrades: a WebSocket's `101` hands the connection to the proxy
                // (forward::upgrade), as Envoy and Istio allow by default.
                let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service.clone()).into_owned();
                let connection = graceful.watch(connection);
                tokio::spawn(async move {
                    if let Err(error) = connection.await {
                        debug!(listener = name, %peer, error = %error, "connection ended with an error");
                    }
                });
            }
            _ = shutdown.changed() => break,
        }
    }
    drop(listener);
    if tokio::time::timeout(DRAIN_TIMEOUT, graceful.shutdown()).await.is_err() {
        info!(listener = name, "drain timed out, closing remaining connections");
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
    /// runs on the worker, so the handler's client pools are the worker's own.
    pub fn spawn<F, S, B>(
        index: usize,
        listeners: WorkerListeners,
        connections: IntCounterVec,
        shutdown: watch::Receiver<bool>,
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
                    let registered = (|| {
                        if let Some((listener, app)) = listeners.inbound {
                            let listener = TcpListener::from_std(listener)?;
                            let counter = connections.with_label_values(&["inbound", &worker]);
                            servers.spawn(serve_listener("inbound", listener, service(Some(app)), counter, shutdown.clone()));
                        }
                        let listener = TcpListener::from_std(listeners.outbound)?;
                        let counter = connections.with_label_values(&["outbound", &worker]);
                        servers.spawn(serve_listener("outbound", listener, service(None), counter, shutdown));
                        Ok(())
                    })();
                    let serving = registered.is_ok();
                    let _ = started_tx.send(registered);
                    if serving {
                        debug!(worker = index, "worker serving");
                        while servers.join_next().await.is_some() {}
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
