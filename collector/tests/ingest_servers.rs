//! Starts the real ingest servers on 127.0.0.1:0 and talks to them as clients do:
//! tonic's OTLP client for gRPC, reqwest for OTLP/HTTP and Zipkin.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "ingest_servers/support.rs"]
mod support;

#[path = "ingest_servers/grpc.rs"]
mod grpc;

#[path = "ingest_servers/http.rs"]
mod http;

#[path = "ingest_servers/zipkin.rs"]
mod zipkin;
