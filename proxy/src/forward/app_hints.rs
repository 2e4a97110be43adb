//! Warnings for an `--app-protocol` that does not suit the app, since the failure it
//! causes looks like any other (503 `UC`, or the app's own error) and the fix is a flag:
//!
//! - `auto` (the default) forwards an h2c caller's request as h2c; an app that speaks
//!   only HTTP/1.1 drops the connection before answering;
//! - `http1` turns h2c into HTTP/1.1, which gRPC cannot travel over.
//!
//! Each kind is logged at most once per
//! [`LOG_INTERVAL`](meshtel_model::log_window::LOG_INTERVAL) per worker, with how many
//! requests it stands for, so a steady stream of such requests cannot flood the log.

use std::sync::Mutex;
use std::time::Instant;

use meshtel_model::log_window::LogWindow;
use tracing::warn;

/// The two kinds' log windows.
#[derive(Debug, Default)]
pub struct AppProtocolHints {
    h2c_dropped: Mutex<LogWindow>,
    grpc_as_http1: Mutex<LogWindow>,
}

impl AppProtocolHints {
    /// An h2c request the app closed the connection on before answering, with
    /// `--app-protocol auto`.
    pub fn h2c_dropped(&self, app: &str) {
        if let Some(count) = note(&self.h2c_dropped) {
            warn!(
                app,
                count,
                "the app closed the connection before answering an h2c request; if it speaks only HTTP/1.1, \
                 start this proxy with --app-protocol http1"
            );
        }
    }

    /// A gRPC call about to reach the app as HTTP/1.1 (`--app-protocol http1`).
    pub fn grpc_as_http1(&self, app: &str) {
        if let Some(count) = note(&self.grpc_as_http1) {
            warn!(
                app,
                count,
                "a gRPC call is sent to the app as HTTP/1.1 (--app-protocol http1), and gRPC needs HTTP/2: \
                 start the proxy of a gRPC app with --app-protocol auto"
            );
        }
    }
}

/// Notes one event; `Some(events)` when a line is due.
fn note(window: &Mutex<LogWindow>) -> Option<u64> {
    match window.lock() {
        Ok(mut window) => window.note(Instant::now()),
        // A panic elsewhere while holding this lock loses a hint, nothing else.
        Err(_) => None,
    }
}
