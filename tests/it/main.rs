//! End-to-end tests: each starts the real `meshtel` binary on 127.0.0.1 port-0
//! listeners with a temporary data directory, talks to it over the wire (OTLP gRPC and
//! HTTP, Zipkin, the Jaeger API) and stops it, gracefully or with SIGKILL; [`ui`] drives
//! the web UI in headless Chromium.
//!
//! One test binary on purpose: every file under `tests/` would link the whole store
//! (DataFusion) again.

// clippy.toml allows these inside `#[test]` functions only; the helpers of a test
// crate are test code too.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod bench_cli;
mod broken_text;
mod browser_clients;
mod config_refusals;
mod data_dir_lost;
mod demo;
mod durability;
mod host_check;
mod ingest_decoded_size;
mod ingest_refusals;
mod large_traces;
mod malformed;
mod mesh;
mod process_life;
mod query_errors;
mod quota_import;
mod roundtrip;
mod rules_cli;
mod sdk;
mod search;
mod slow_clients;
mod startup;
mod support;
mod ui;
mod zipkin_v1;
