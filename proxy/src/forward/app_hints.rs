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
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use meshtel_model::log_window::LogWindow;
use tracing::warn;

/// The two kinds' log windows.
#[derive(Debug, Default)]
pub struct AppProtocolHints {
    h2c_dropped: Mutex<LogWindow>,
    grpc_as_http1: Mutex<LogWindow>,
    /// Whether the app has answered an h2c request: then it speaks h2c, and a dropped
    /// connection is its crash or restart, not the protocol.
    h2c_answered: AtomicBool,
}

impl AppProtocolHints {
    /// The app answered an h2c request.
    pub fn h2c_answered(&self) {
        if !self.h2c_answered.load(Ordering::Relaxed) {
            self.h2c_answered.store(true, Ordering::Relaxed);
        }
    }

    /// An h2c request the app closed the connection on before answering, with
    /// `--app-protocol auto`; whether that was hinted at (not when the app has
    /// answered h2c before).
    pub fn h2c_dropped(&self, app: &str) -> bool {
        if self.h2c_answered.load(Ordering::Relaxed) {
            return false;
        }
        let hinted = note(&self.h2c_dropped);
        if let Some(count) = hinted {
            warn!(
                app,
                count,
                "the app closed the connection before answering an h2c request; if it speaks only HTTP/1.1, \
                 start this proxy with --app-protocol http1"
            );
        }
        hinted.is_some()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_app_that_answered_h2c_is_not_told_to_speak_http1() {
        let hints = AppProtocolHints::default();
        assert!(hints.h2c_dropped("127.0.0.1:9080"), "an app never heard from: hinted");
        let hints = AppProtocolHints::default();
        hints.h2c_answered();
        assert!(!hints.h2c_dropped("127.0.0.1:9080"), "an app that speaks h2c crashed");
    }
}
