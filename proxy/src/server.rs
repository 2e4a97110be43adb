//! Accept loops: HTTP/1.1 and h2c (prior knowledge) on already-bound listeners, with
//! graceful draining on shutdown; and the worker threads that run them.
//!
//! ```text
//!   control thread (caller's runtime): admin, Report stream, OTLP, watchers
//!   worker 0 ─ current-thread runtime ─ accept inbound + outbound ─ own client pools
//!   worker 1 ─ current-thread runtime ─ accept inbound + outbound ─ own client pools
//!   ...        (every worker accepts on the same listening sockets)
//! ```
//!
//! A connection lives on the worker that accepted it, with the upstream connections
//! its requests use, so a request never crosses threads: no work stealing, no
//! cross-thread wake-ups, as in Envoy's and nginx's worker models. Whichever worker is
//! idle accepts first, which spreads connections by load.

use std::convert::Infallible;
use std::io;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use prometheus::{IntCounter, IntCounterVec};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;
use tracing::{debug, error, info, warn};

use crate::error::{Error, Result};

/// How long open connections may take to finish once shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

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
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, peer) = match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        // Out of file descriptors and the like: back off briefly.
                        warn!(listener = name, %error, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                connections.inc();
                if let Err(error) = stream.set_nodelay(true) {
                    debug!(listener = name, %error, "set_nodelay failed");
                }
                let connection = builder.serve_connection(TokioIo::new(stream), service.clone()).into_owned();
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

/// One worker's handles on the proxy listeners: clones of the same listening sockets,
/// so every worker accepts from one queue.
#[derive(Debug)]
pub struct WorkerListeners {
    /// The inbound listener and the local app's `host:port`, when configured.
    pub inbound: Option<(std::net::TcpListener, String)>,
    /// The outbound listener.
    pub outbound: std::net::TcpListener,
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
