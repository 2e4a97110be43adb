//! meshtel's ingest servers: OTLP over gRPC and HTTP, Zipkin v2, and the proxies'
//! Report stream ([`report`]) that feeds the Istio metrics ([`mesh_metrics`]) and the
//! service-graph edges; and the quota engine ([`quota`]) behind Mixer `Check` and
//! Envoy's `ShouldRateLimit`.
//!
//! Every protocol is a thin adapter in front of one ingest step, so limits,
//! validation and acknowledgement behave the same whatever the client speaks:
//!
//! ```text
//!  OTLP/gRPC :4317 ──tonic: gzip, max message size──┐  protobuf bytes
//!  OTLP/HTTP :4318 ──body: media type, gzip, size───┤  (JSON: decoded structs)
//!  Zipkin    :9411 ──body: gzip, size → JSON → OTLP─┘  (decoded structs)
//!                                                   ▼
//!     Ingest::export_protobuf → SpanSink::write_export_request
//!     Ingest::export → meshtel_model::write::write_resource_spans
//!         both: max spans per request → validate (drop bad ids, attribute limits,
//!         drop empty groups; meshtel_model::validate) → durable write
//!                                                   ▼
//!                 acknowledged only once durable (WAL); partial_success lists rejects
//! ```
//!
//! The protobuf path hands the undecoded request to the sink: the trace store reads
//! the wire format straight into its columns and skips building OTLP structs.
//!
//! - [`otlp_grpc_service`] builds the tonic `TraceService` to add to a
//!   `tonic::transport::Server`;
//! - [`otlp_http_router`] and [`zipkin_router`] build axum routers to serve with
//!   `axum::serve` on an already-bound listener;
//! - [`IngestLimits`] is the shared configuration; [`Error`] the one error type, mapped
//!   to gRPC and HTTP codes through [`meshtel_model::ErrorCode`].
//!
//! Nothing here stores spans: that is the [`meshtel_model::SpanSink`] given to each
//! constructor. A sink's `Overloaded` answer becomes gRPC `UNAVAILABLE` with
//! `RetryInfo`, or HTTP 503 with `Retry-After`, so clients back off and retry.
//! Whatever is refused is counted per protocol and reason ([`ingest_metrics`]).

mod body;
pub mod config;
pub mod cors;
pub mod error;
pub mod grpc_budget;
pub mod grpc_decode;
pub mod inflight;
pub mod ingest;
pub mod ingest_metrics;
pub mod istio_mixer;
pub mod mesh_metrics;
pub mod otlp_grpc;
pub mod otlp_http;
pub mod otlp_json;
pub mod quota;
pub mod report;
pub mod rpc;
pub mod zipkin;

pub use config::IngestLimits;
pub use error::{Error, Result};
pub use grpc_budget::{GrpcMessageBudgetLayer, GrpcMessageStats};
pub use grpc_decode::{InvalidArgumentOnDecodeError, Unreadable, UnreadableCalls};
pub use inflight::InflightBudget;
pub use ingest::Ingest;
pub use ingest_metrics::IngestMetrics;
pub use istio_mixer::istio_mixer_grpc_service;
pub use mesh_metrics::{MeshMetrics, MeshMetricsConfig};
pub use meshtel_model::validate;
pub use otlp_grpc::{
    OtlpGrpcServer, OtlpTraceService, otlp_grpc_service, otlp_grpc_service_with_metrics,
};
pub use otlp_http::{otlp_http_router, otlp_http_router_with_metrics};
pub use quota::{
    QuotaConfig, QuotaEngine, rls_grpc_service, spawn_policy_sync, spawn_quota_sweeper,
};
pub use report::{
    MixerService, ReportConfig, ReportService, Reports, mixer_grpc_service,
    mixer_grpc_service_until, report_grpc_service,
};
pub use zipkin::{zipkin_router, zipkin_router_with_metrics};
