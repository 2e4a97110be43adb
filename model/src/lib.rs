//! Types shared by every meshtel role.
//!
//! The trace pipeline speaks OTLP from end to end: ingest converts Zipkin into OTLP
//! `ResourceSpans`, the store keeps them column by column and hands them back as
//! `ResourceSpans`, and the query service renders them as Jaeger JSON or OTLP JSON.
//! This crate owns the vocabulary those stages share:
//!
//! ```text
//!  collector ──SpanSink::write_spans──► store ──TraceReader──► query
//! ```
//!
//! - [`ids`]: trace and span ids, parsed and rendered the way Jaeger does;
//! - [`duration`]: Go-style duration strings (`1h2m`, `1.5ms`) used by the Jaeger API,
//!   and Prometheus-style ones (`1d`, `30s`) used by the metrics API;
//! - [`trace`]: search parameters, operations, dependency links, [`trace::Trace`];
//! - [`read`] / [`write`]: the interfaces between ingest, storage and query;
//! - [`validate`]: the span validation and attribute limits every ingest path applies;
//! - [`error`]: the error code vocabulary mapped to gRPC and HTTP in one place;
//! - [`mixer`]: meshtel's own gRPC protocol between proxies and the collector
//!   (`model/proto/meshtel/mixer/v1/mixer.proto`): the Report stream of request records,
//!   quota Check and the policy watch;
//! - [`quota`]: quota policies, their validation and evaluation, and the interfaces of
//!   the policy repository and the engine's usage;
//! - [`rls`]: Envoy's rate limit service v3 protocol;
//! - [`grpc_status`]: gRPC status codes by their canonical names.

pub mod conn_life;
pub mod duration;
pub mod error;
pub mod graph;
pub mod grpc_status;
pub mod ids;
pub mod json_text;
pub mod istio_mixer;
pub mod log_window;
pub mod loopback_host;
pub mod mixer;
pub mod otlp_json;
pub mod proto_text;
pub mod quota;
pub mod read;
pub mod rls;
pub mod routing;
pub mod size;
mod suggest;
pub mod trace;
pub mod validate;
pub mod write;
pub mod yaml_nesting;

/// The OTLP protobuf types (generated for tonic), re-exported so that every crate uses
/// one version.
pub use opentelemetry_proto::tonic as otlp;

pub use error::{Error, ErrorCode, Result};
pub use graph::{EdgeSink, GraphReader};
pub use ids::{SpanId, TraceId};
pub use read::TraceReader;
pub use trace::{DependencyLink, Operation, SpanKind, Trace, TraceQuery};
pub use write::{ExportSummary, SpanSink};
