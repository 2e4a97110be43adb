//! In-process upstream apps behind the sidecar.

use std::net::SocketAddr;
use std::time::Duration;

/// An in-process upstream app on 127.0.0.1:0 speaking HTTP/1.1 and h2c (prior
/// knowledge) on one port, serving an axum router and/or tonic gRPC services.
/// `stop` joins the server task so its panics surface; dropping it aborts the task.
pub struct AppServer {
    pub addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl AppServer {
    /// Binds 127.0.0.1:0 and serves `routes` (`Routes::from(axum_router)`, with
    /// `.add_service(grpc_server)` for gRPC).
    pub async fn start(routes: tonic::service::Routes) -> AppServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (shutdown, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .accept_http1(true)
                .add_routes(routes)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(listener),
                    async {
                        let _ = stopped.await;
                    },
                )
                .await
                .expect("the app server failed");
        });
        AppServer {
            addr,
            shutdown: Some(shutdown),
            task: Some(task),
        }
    }

    /// `host:port`, as `--inbound LISTEN=APP` wants it.
    pub fn authority(&self) -> String {
        self.addr.to_string()
    }

    /// Stops the server and joins its task (a panic inside surfaces here).
    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(task) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(10), task)
                .await
                .expect("the app server did not stop")
                .expect("the app server task panicked");
        }
    }
}

impl Drop for AppServer {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}
