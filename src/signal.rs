//! Waits for SIGINT (Ctrl-C) or SIGTERM: the proxy crate's, shared by both binaries.

pub use meshtel_proxy::signal::shutdown_signal;
