//! SIGINT (Ctrl-C), SIGTERM and SIGHUP, for the `meshtel` and `meshtel-proxy` binaries.

use std::future::Future;

/// Resolves on the first SIGINT, SIGTERM or SIGHUP received from the moment it is
/// called, not from its first poll: a process that listens for them first (before it
/// binds and writes its listeners file) stops cleanly on a signal that arrives while it
/// is starting up, instead of being killed by the signal's default action.
///
/// SIGHUP (a closed terminal, or `kill -HUP` from a habit of reloading daemons with it)
/// stops as SIGTERM does, with a warning that nothing is reloaded on a signal: its
/// default action killed the process without a line in the log.
pub fn shutdown_signal() -> impl Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        let terminate = signal(SignalKind::terminate()).ok();
        let interrupt = signal(SignalKind::interrupt()).ok();
        let hangup = signal(SignalKind::hangup()).ok();
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
                () = received(hangup) => {
                    // Shared by both binaries: not under the proxy crate's name.
                    tracing::warn!(
                        target: "meshtel::signal",
                        signal = "SIGHUP",
                        "stopping as on SIGTERM: configuration is not reloaded on a signal \
                         (quota policies, and the proxy's traffic rules and mesh files, are \
                         re-read when they change; restart to apply anything else)"
                    );
                }
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
