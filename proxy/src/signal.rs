//! SIGINT (Ctrl-C) and SIGTERM, for the `meshtel` and `meshtel-proxy` binaries.

use std::future::Future;

/// Resolves on the first SIGINT or SIGTERM received from the moment it is called, not
/// from its first poll: a process that listens for them first (before it binds and
/// writes its listeners file) stops cleanly on a signal that arrives while it is
/// starting up, instead of being killed by the signal's default action.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        let received = |stream: Option<Signal>| async move {
            match stream {
                Some(mut stream) => {
                    stream.recv().await;
                }
                // Not registered: this one never arrives.
                None => std::future::pending::<()>().await,
            }
        };
        async move {
            tokio::select! {
                () = received(terminate) => {}
                () = received(interrupt) => {}
            }
        }
    }
    #[cfg(not(unix))]
    async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}
