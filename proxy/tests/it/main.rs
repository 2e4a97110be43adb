//! Integration tests of meshtel-proxy: real sockets on 127.0.0.1:0, a real upstream
//! app, and a mock collector speaking the Report stream and OTLP.

// clippy.toml allows these inside `#[test]` functions only; the helpers of a test
// crate are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod binary;
mod forwarding;
mod grpc;
mod paths;
mod quota;
mod quota_support;
mod request_body;
mod routing;
mod routing_support;
mod support;
mod telemetry;
