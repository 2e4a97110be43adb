//! Test fixtures: an in-memory [`TraceReader`] with Jaeger's memory-store search
//! semantics, a fixed clock, OTLP builders and an in-process request helper.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode};
use http_body_util::BodyExt;
use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use meshtel_model::{
    DependencyLink, Error, Operation, Result, SpanKind, Trace, TraceId, TraceQuery, TraceReader,
};
use tower::ServiceExt;

use crate::jaeger::convert::trace_to_jaeger;
use crate::{Clock, QueryConfig, router_with_clock};

/// 2025-01-01T00:00:00Z in Unix ns.
pub const NOW: u64 = 1_735_689_600_000_000_000;

/// A clock stuck at [`NOW`].
pub struct FixedClock;

impl Clock for FixedClock {
    fn now_unix_nano(&self) -> u64 {
        NOW
    }
}

/// In-memory store following Jaeger's memory store (`plugin/storage/memory`).
#[derive(Default)]
pub struct MemoryReader {
    pub traces: Vec<Trace>,
    pub links: Vec<DependencyLink>,
    pub fail: bool,
    pub last_query: Mutex<Option<TraceQuery>>,
    pub last_window: Mutex<Option<(u64, u64)>>,
}

impl MemoryReader {
    fn check(&self) -> Result<()> {
        if self.fail {
            Err(Error::Storage("disk on fire at /secret/path".into()))
        } else {
            Ok(())
        }
    }

    fn spans(&self) -> impl Iterator<Item = (&ResourceSpans, &Span)> {
        self.traces
            .iter()
            .flat_map(|t| &t.resource_spans)
            .flat_map(|rs| {
                rs.scope_spans
                    .iter()
                    .flat_map(move |ss| ss.spans.iter().map(move |s| (rs, s)))
            })
    }
}

fn service_of(rs: &ResourceSpans) -> String {
    crate::jaeger::convert::resource_to_process(rs).service_name
}

#[async_trait::async_trait]
impl TraceReader for MemoryReader {
    async fn services(&self) -> Result<Vec<String>> {
        self.check()?;
        let mut s: Vec<String> = self.spans().map(|(rs, _)| service_of(rs)).collect();
        s.sort();
        s.dedup();
        Ok(s)
    }

    async fn operations(&self, service: &str, kind: Option<SpanKind>) -> Result<Vec<Operation>> {
        self.check()?;
        let mut ops: Vec<Operation> = self
            .spans()
            .filter(|(rs, s)| {
                service_of(rs) == service && kind.is_none_or(|k| SpanKind::from_otlp(s.kind) == k)
            })
            .map(|(_, s)| Operation {
                name: s.name.clone(),
                span_kind: SpanKind::from_otlp(s.kind),
            })
            .collect();
        ops.sort();
        ops.dedup();
        Ok(ops)
    }

    async fn find_traces(&self, query: &TraceQuery) -> Result<Vec<Trace>> {
        self.check()?;
        *self.last_query.lock().unwrap() = Some(query.clone());
        let mut matches: Vec<(u64, Trace)> = Vec::new();
        for trace in &self.traces {
            let Some(jt) = trace_to_jaeger(trace) else {
                continue;
            };
            let hit = jt.spans.iter().any(|s| {
                let process = &jt.processes[&s.process_id];
                let (start, dur) = (s.start_time * 1000, s.duration * 1000);
                query
                    .service
                    .as_ref()
                    .is_none_or(|v| *v == process.service_name)
                    && query
                        .operation
                        .as_ref()
                        .is_none_or(|v| *v == s.operation_name)
                    && query.duration_min_nano.is_none_or(|d| dur >= d)
                    && query.duration_max_nano.is_none_or(|d| dur <= d)
                    && start >= query.start_min_unix_nano
                    && start <= query.start_max_unix_nano
                    && query.tags.iter().all(|(k, v)| {
                        s.tags
                            .iter()
                            .chain(&process.tags)
                            .chain(s.logs.iter().flat_map(|l| &l.fields))
                            .any(|kv| kv.key == *k && kv.value.as_search_string() == *v)
                    })
            });
            if hit {
                let newest = jt.spans.iter().map(|s| s.start_time).max().unwrap_or(0);
                matches.push((newest, trace.clone()));
            }
        }
        matches.sort_by_key(|m| std::cmp::Reverse(m.0));
        Ok(matches
            .into_iter()
            .take(query.limit)
            .map(|(_, t)| t)
            .collect())
    }

    /// The fixture's traces as they are: a fixture that wants a cut trace sets its
    /// `omitted_spans` (the store's own tests cover the cutting).
    async fn get_traces(&self, trace_ids: &[TraceId], _max_spans: usize) -> Result<Vec<Trace>> {
        self.check()?;
        Ok(trace_ids
            .iter()
            .filter_map(|id| self.traces.iter().find(|t| t.trace_id == *id).cloned())
            .collect())
    }

    async fn dependencies(&self, end: u64, lookback: u64) -> Result<Vec<DependencyLink>> {
        self.check()?;
        *self.last_window.lock().unwrap() = Some((end, lookback));
        Ok(self.links.clone())
    }
}

pub fn str_attr(key: &str, v: &str) -> KeyValue {
    attr(key, any_value::Value::StringValue(v.into()))
}

pub fn attr(key: &str, v: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.into(),
        value: Some(AnyValue { value: Some(v) }),
        ..Default::default()
    }
}

/// A span of `trace_hex` with the given id, parent, name, kind and times.
pub fn span(
    trace_hex: &str,
    span_hex: &str,
    parent_hex: &str,
    name: &str,
    kind: i32,
    start: u64,
    end: u64,
) -> Span {
    Span {
        trace_id: hex::decode(trace_hex).unwrap(),
        span_id: hex::decode(span_hex).unwrap(),
        parent_span_id: hex::decode(parent_hex).unwrap(),
        name: name.into(),
        kind,
        start_time_unix_nano: start,
        end_time_unix_nano: end,
        ..Default::default()
    }
}

pub fn resource_spans(service: &str, scope: &str, spans: Vec<Span>) -> ResourceSpans {
    ResourceSpans {
        resource: Some(Resource {
            attributes: vec![str_attr("service.name", service)],
            ..Default::default()
        }),
        scope_spans: vec![ScopeSpans {
            scope: Some(InstrumentationScope {
                name: scope.into(),
                ..Default::default()
            }),
            spans,
            ..Default::default()
        }],
        ..Default::default()
    }
}

pub fn trace_of(resource_spans: Vec<ResourceSpans>) -> Trace {
    let first = &resource_spans[0].scope_spans[0].spans[0].trace_id;
    Trace {
        trace_id: TraceId::from_slice(first).unwrap(),
        resource_spans,
        omitted_spans: 0,
    }
}

/// The §3.2 OTLP/JSON example.
pub const OTLP_EXAMPLE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
 "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},
  "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
   "name":"I'm a server span","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
   "attributes":[{"key":"http.status_code","value":{"intValue":"500"}}],
   "status":{"code":2,"message":"boom"}}]}]}]}"#;

/// The §3.2 example decoded.
pub fn otlp_example() -> Vec<ResourceSpans> {
    let req: meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest =
        serde_json::from_str(OTLP_EXAMPLE).unwrap();
    req.resource_spans
}

/// Removes all whitespace outside JSON strings, so expected bodies can be written
/// readably and compared byte for byte.
pub fn minify(json: &str) -> String {
    let mut out = String::new();
    let (mut in_str, mut escaped) = (false, false);
    for c in json.chars() {
        if in_str {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_str = false;
            }
        } else if !c.is_whitespace() {
            if c == '"' {
                in_str = true;
            }
            out.push(c);
        }
    }
    out
}

pub fn app(reader: MemoryReader) -> Router {
    app_with(Arc::new(reader), &QueryConfig::default())
}

pub fn app_with(reader: Arc<MemoryReader>, config: &QueryConfig) -> Router {
    router_with_clock(reader, Arc::new(FixedClock), config)
}

pub struct Reply {
    pub status: StatusCode,
    pub content_type: String,
    pub headers: axum::http::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

pub async fn call(app: &Router, method: Method, uri: &str, body: &str) -> Reply {
    let request = Request::builder()
        .method(method)
        .uri(uri)
        .body(Body::from(body.to_string()))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let content_type = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    Reply {
        status,
        content_type,
        headers,
        body: String::from_utf8(bytes.to_vec()).unwrap(),
    }
}

pub async fn get(app: &Router, uri: &str) -> Reply {
    call(app, Method::GET, uri, "").await
}
