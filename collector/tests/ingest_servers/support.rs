//! A recording span sink and helpers that start the servers on ephemeral ports.

use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use meshtel_collector::{IngestLimits, otlp_grpc_service, otlp_http_router, zipkin_router};
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::{AnyValue, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use meshtel_model::{Error as ModelError, SpanSink};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::TcpListenerStream;

/// Keeps every write in memory; can be told to answer `Overloaded`.
#[derive(Default)]
pub struct RecordingSink {
    written: Mutex<Vec<ResourceSpans>>,
    overloaded: Mutex<Option<Duration>>,
}

impl RecordingSink {
    /// From now on, refuse writes with `Overloaded { retry_after }`.
    pub fn overload(&self, retry_after: Duration) {
        *self.overloaded.lock().unwrap() = Some(retry_after);
    }

    /// Every resource group written so far.
    pub fn written(&self) -> Vec<ResourceSpans> {
        self.written.lock().unwrap().clone()
    }

    /// Every span written so far, in order.
    pub fn spans(&self) -> Vec<Span> {
        self.written()
            .into_iter()
            .flat_map(|r| r.scope_spans)
            .flat_map(|s| s.spans)
            .collect()
    }
}

#[async_trait::async_trait]
impl SpanSink for RecordingSink {
    async fn write_spans(&self, spans: Vec<ResourceSpans>) -> Result<(), ModelError> {
        if let Some(retry_after) = *self.overloaded.lock().unwrap() {
            return Err(ModelError::Overloaded {
                retry_after,
                bound: "the test's sink refuses writes",
            });
        }
        self.written.lock().unwrap().extend(spans);
        Ok(())
    }
}

/// The three servers on ephemeral ports, sharing one sink; aborted on drop.
pub struct Servers {
    pub sink: Arc<RecordingSink>,
    pub grpc: SocketAddr,
    pub http: SocketAddr,
    pub zipkin: SocketAddr,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Servers {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

impl Servers {
    pub async fn start(limits: IngestLimits) -> Servers {
        let sink = Arc::new(RecordingSink::default());
        let dyn_sink: Arc<dyn SpanSink> = sink.clone();

        let grpc_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let grpc = grpc_listener.local_addr().unwrap();
        let grpc_service = otlp_grpc_service(dyn_sink.clone(), limits.clone());
        let grpc_task = tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(grpc_service)
                .serve_with_incoming(TcpListenerStream::new(grpc_listener))
                .await
                .unwrap();
        });

        let http_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let http = http_listener.local_addr().unwrap();
        let http_router = otlp_http_router(dyn_sink.clone(), limits.clone());
        let http_task = tokio::spawn(async move {
            axum::serve(http_listener, http_router).await.unwrap();
        });

        let zipkin_listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let zipkin = zipkin_listener.local_addr().unwrap();
        let zipkin_app = zipkin_router(dyn_sink, limits);
        let zipkin_task = tokio::spawn(async move {
            axum::serve(zipkin_listener, zipkin_app).await.unwrap();
        });

        Servers {
            sink,
            grpc,
            http,
            zipkin,
            tasks: vec![grpc_task, http_task, zipkin_task],
        }
    }

    pub fn http_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    pub fn zipkin_url(&self) -> String {
        format!("http://{}/api/v2/spans", self.zipkin)
    }
}

/// A valid span `index` of trace 0x01..., with one string attribute.
pub fn valid_span(index: u8) -> Span {
    Span {
        trace_id: vec![1; 16],
        span_id: vec![index.wrapping_add(1); 8],
        name: format!("span-{index}"),
        kind: 2,
        start_time_unix_nano: 1_000,
        end_time_unix_nano: 2_000,
        attributes: vec![KeyValue {
            key: "k".into(),
            value: Some(AnyValue {
                value: Some(any_value::Value::StringValue("v".into())),
            }),
            key_strindex: 0,
        }],
        ..Span::default()
    }
}

/// One resource (`service.name=svc`) and scope holding `spans`.
pub fn request_with(spans: Vec<Span>) -> ExportTraceServiceRequest {
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![KeyValue {
                    key: "service.name".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::StringValue("svc".into())),
                    }),
                    key_strindex: 0,
                }],
                ..Resource::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: None,
                spans,
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}

/// `n` valid spans in one request.
pub fn request_of(n: u8) -> ExportTraceServiceRequest {
    request_with((0..n).map(valid_span).collect())
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

/// Limits small enough to cross in a test.
pub fn small_limits() -> IngestLimits {
    IngestLimits {
        max_request_bytes: bytesize::ByteSize::kib(64),
        max_spans_per_request: 5,
        ..IngestLimits::default()
    }
}
