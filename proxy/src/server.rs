//! Accept loops: HTTP/1.1 and h2c (prior knowledge) on already-bound listeners, with
//! graceful draining on shutdown.

use std::convert::Infallible;
use std::time::Duration;

use hyper::body::{Body, Incoming};
use hyper::service::Service;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tracing::{debug, info, warn};

/// How long open connections may take to finish once shutdown starts.
pub const DRAIN_TIMEOUT: Duration = Duration::from_secs(5);

/// Serves `service` on every connection of `listener` until `shutdown` flips to
/// true, then lets open connections finish (bounded by [`DRAIN_TIMEOUT`]).
pub async fn serve_listener<S, B>(name: &'static str, listener: TcpListener, service: S, mut shutdown: watch::Receiver<bool>)
where
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
