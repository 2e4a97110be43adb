//! Every ingest protocol, read back through the Jaeger API v1 (by id and by search) and
//! v3, with every field of the Jaeger JSON checked: first while the spans are in the
//! in-memory head, then after a graceful restart has flushed them to a Parquet block.

use std::io::Write;

use flate2::Compression;
use flate2::write::GzEncoder;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::{
    AnyValue, ArrayValue, InstrumentationScope, any_value::Value as V,
};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use prost::Message;
use serde_json::{Value, json};

use crate::support::*;

/// Ids and times of the rich three-span trace.
struct Rich {
    trace_id: Vec<u8>,
    root: Vec<u8>,
    child: Vec<u8>,
    db: Vec<u8>,
    linked_trace: Vec<u8>,
    linked_span: Vec<u8>,
    linked_child_of: Vec<u8>,
    /// Root start, ns; deliberately not a whole µs.
    start_ns: u64,
    frontend: String,
    database: String,
}

impl Rich {
    fn new(trace_id: Vec<u8>, tag: &str) -> Rich {
        Rich {
            trace_id,
            root: random_span_id(),
            child: random_span_id(),
            db: random_span_id(),
            linked_trace: random_trace_id(),
            linked_span: random_span_id(),
            linked_child_of: random_span_id(),
            start_ns: (now_nanos() - 60_000_000_000) / 1_000 * 1_000 + 789,
            frontend: format!("rt-frontend-{tag}"),
            database: format!("rt-db-{tag}"),
        }
    }

    fn child_start(&self) -> u64 {
        self.start_ns + 100_000
    }

    fn db_start(&self) -> u64 {
        self.start_ns + 300_500
    }

    /// Two resources (frontend with two spans, database with one).
    fn request(&self) -> ExportTraceServiceRequest {
        let root = Span {
            trace_id: self.trace_id.clone(),
            span_id: self.root.clone(),
            name: "GET /checkout".into(),
            kind: 2,
            flags: 0x301,
            start_time_unix_nano: self.start_ns,
            end_time_unix_nano: self.start_ns + 2_500_999,
            attributes: vec![
                kv_str("http.method", "GET"),
                kv("http.status_code", V::IntValue(200)),
            ],
            status: Some(Status {
                code: 1,
                message: String::new(),
            }),
            ..Span::default()
        };
        let child = Span {
            trace_id: self.trace_id.clone(),
            span_id: self.child.clone(),
            parent_span_id: self.root.clone(),
            trace_state: "vendor=x".into(),
            name: "SELECT cart".into(),
            kind: 3,
            start_time_unix_nano: self.child_start(),
            end_time_unix_nano: self.child_start() + 1_000_000,
            attributes: vec![
                kv("big", V::IntValue(9_007_199_254_740_993)),
                kv("neg.big", V::IntValue(-9_007_199_254_740_993)),
                kv("safe", V::IntValue(9_007_199_254_740_991)),
                kv("cache.hit", V::BoolValue(true)),
                kv("ratio", V::DoubleValue(0.25)),
                kv("blob", V::BytesValue(vec![1, 2, 3])),
                kv(
                    "list",
                    V::ArrayValue(ArrayValue {
                        values: vec![
                            AnyValue {
                                value: Some(V::StringValue("a".into())),
                            },
                            AnyValue {
                                value: Some(V::StringValue("b".into())),
                            },
                        ],
                    }),
                ),
            ],
            events: vec![
                Event {
                    time_unix_nano: self.child_start() + 10_999,
                    name: "exception".into(),
                    attributes: vec![kv_str("exception.message", "kaput")],
                    dropped_attributes_count: 0,
                },
                Event {
                    time_unix_nano: self.child_start() + 20_000,
                    name: String::new(),
                    attributes: vec![kv_str("k", "v")],
                    dropped_attributes_count: 0,
                },
                Event {
                    time_unix_nano: self.child_start() + 30_000,
                    name: "named".into(),
                    attributes: vec![kv_str("event", "explicit")],
                    dropped_attributes_count: 0,
                },
            ],
            links: vec![
                Link {
                    trace_id: self.linked_trace.clone(),
                    span_id: self.linked_span.clone(),
                    trace_state: "a=b".into(),
                    attributes: vec![kv_str("link.attr", "dropped")],
                    ..Link::default()
                },
                Link {
                    trace_id: self.linked_trace.clone(),
                    span_id: self.linked_child_of.clone(),
                    attributes: vec![kv_str("opentracing.ref_type", "child_of")],
                    ..Link::default()
                },
            ],
            status: Some(Status {
                code: 2,
                message: "boom".into(),
            }),
            ..Span::default()
        };
        let db = Span {
            trace_id: self.trace_id.clone(),
            span_id: self.db.clone(),
            parent_span_id: self.child.clone(),
            name: "query".into(),
            kind: 0,
            start_time_unix_nano: self.db_start(),
            end_time_unix_nano: self.db_start() + 500_000,
            status: Some(Status {
                code: 0,
                message: "just a note".into(),
            }),
            ..Span::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv_str("host.name", "h1"),
                            kv_str("service.name", &self.frontend),
                            kv("process.pid", V::IntValue(4242)),
                        ],
                        ..Resource::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: Some(InstrumentationScope {
                            name: "my.lib".into(),
                            version: "1.2.3".into(),
                            attributes: vec![kv_str("scope.attr", "dropped")],
                            dropped_attributes_count: 0,
                        }),
                        spans: vec![child, root],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
                ResourceSpans {
                    resource: Some(Resource {
                        attributes: vec![
                            kv_str("service.name", &self.database),
                            kv_str("db.system", "sqlite"),
                        ],
                        ..Resource::default()
                    }),
                    scope_spans: vec![ScopeSpans {
                        scope: None,
                        spans: vec![db],
                        schema_url: String::new(),
                    }],
                    schema_url: String::new(),
                },
            ],
        }
    }

    fn trace_hex(&self) -> String {
        jaeger_trace_id(&self.trace_id)
    }

    /// The Jaeger JSON of the whole trace, field for field (spec §1.7, §4).
    fn expected(&self) -> Value {
        let t = self.trace_hex();
        let root_start_us = self.start_ns / 1_000;
        json!({
            "traceID": t,
            "spans": [
                {
                    "traceID": t,
                    "spanID": hex::encode(&self.root),
                    "operationName": "GET /checkout",
                    "references": [],
                    "startTime": root_start_us,
                    "duration": 2_500,
                    "tags": [
                        {"key": "otel.scope.name", "type": "string", "value": "my.lib"},
                        {"key": "otel.scope.version", "type": "string", "value": "1.2.3"},
                        {"key": "http.method", "type": "string", "value": "GET"},
                        {"key": "http.status_code", "type": "int64", "value": 200},
                        {"key": "span.kind", "type": "string", "value": "server"},
                        {"key": "otel.status_code", "type": "string", "value": "OK"},
                    ],
                    "logs": [],
                    "processID": "p1",
                    "warnings": null,
                },
                {
                    "traceID": t,
                    "spanID": hex::encode(&self.child),
                    "operationName": "SELECT cart",
                    "references": [
                        {"refType": "CHILD_OF", "traceID": t, "spanID": hex::encode(&self.root)},
                        {"refType": "FOLLOWS_FROM", "traceID": jaeger_trace_id(&self.linked_trace), "spanID": hex::encode(&self.linked_span)},
                        {"refType": "CHILD_OF", "traceID": jaeger_trace_id(&self.linked_trace), "spanID": hex::encode(&self.linked_child_of)},
                    ],
                    "startTime": self.child_start() / 1_000,
                    "duration": 1_000,
                    "tags": [
                        {"key": "otel.scope.name", "type": "string", "value": "my.lib"},
                        {"key": "otel.scope.version", "type": "string", "value": "1.2.3"},
                        {"key": "big", "type": "int64", "value": "9007199254740993"},
                        {"key": "neg.big", "type": "int64", "value": "-9007199254740993"},
                        {"key": "safe", "type": "int64", "value": 9_007_199_254_740_991_i64},
                        {"key": "cache.hit", "type": "bool", "value": true},
                        {"key": "ratio", "type": "float64", "value": 0.25},
                        {"key": "blob", "type": "binary", "value": "AQID"},
                        {"key": "list", "type": "string", "value": "[\"a\",\"b\"]"},
                        {"key": "span.kind", "type": "string", "value": "client"},
                        {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                        {"key": "error", "type": "bool", "value": true},
                        {"key": "otel.status_description", "type": "string", "value": "boom"},
                        {"key": "w3c.tracestate", "type": "string", "value": "vendor=x"},
                    ],
                    "logs": [
                        {"timestamp": (self.child_start() + 10_999) / 1_000, "fields": [
                            {"key": "event", "type": "string", "value": "exception"},
                            {"key": "exception.message", "type": "string", "value": "kaput"},
                        ]},
                        {"timestamp": (self.child_start() + 20_000) / 1_000, "fields": [
                            {"key": "k", "type": "string", "value": "v"},
                        ]},
                        {"timestamp": (self.child_start() + 30_000) / 1_000, "fields": [
                            {"key": "event", "type": "string", "value": "explicit"},
                        ]},
                    ],
                    "processID": "p1",
                    "warnings": null,
                },
                {
                    "traceID": t,
                    "spanID": hex::encode(&self.db),
                    "operationName": "query",
                    "references": [
                        {"refType": "CHILD_OF", "traceID": t, "spanID": hex::encode(&self.child)},
                    ],
                    "startTime": self.db_start() / 1_000,
                    "duration": 500,
                    "tags": [
                        {"key": "otel.status_description", "type": "string", "value": "just a note"},
                    ],
                    "logs": [],
                    "processID": "p2",
                    "warnings": null,
                },
            ],
            "processes": {
                "p1": {"serviceName": self.frontend, "tags": [
                    {"key": "host.name", "type": "string", "value": "h1"},
                    {"key": "process.pid", "type": "int64", "value": 4242},
                ]},
                "p2": {"serviceName": self.database, "tags": [
                    {"key": "db.system", "type": "string", "value": "sqlite"},
                ]},
            },
            "warnings": null,
        })
    }
}

/// Jaeger's rendering: 16 hex digits when the high half is zero, else 32.
pub fn jaeger_trace_id(id: &[u8]) -> String {
    if id[..8].iter().all(|b| *b == 0) {
        hex::encode(&id[8..])
    } else {
        hex::encode(id)
    }
}

/// Asserts `actual == expected`, printing both in full on failure.
pub fn assert_json_eq(actual: &Value, expected: &Value, what: &str) {
    if actual != expected {
        let a = serde_json::to_string_pretty(actual).unwrap();
        let e = serde_json::to_string_pretty(expected).unwrap();
        for (i, (la, le)) in a.lines().zip(e.lines()).enumerate() {
            if la != le {
                panic!(
                    "{what}: first difference at line {i}:\n  actual:   {la}\n  expected: {le}\n\nactual:\n{a}\n\nexpected:\n{e}"
                );
            }
        }
        panic!("{what}: lengths differ\nactual:\n{a}\n\nexpected:\n{e}");
    }
}

/// Reads the trace back every way the query API offers and compares each with
/// `expected`.
pub(crate) async fn check_everywhere(
    m: &Meshtel,
    trace_hex: &str,
    service: &str,
    expected: &Value,
    spans: usize,
) {
    let by_id = wait_for_trace(m, trace_hex, spans).await;
    assert_json_eq(&by_id, expected, "GET /api/traces/{id}");

    // The envelope around it.
    let body = get_json(&m.query_url(&format!("/api/traces/{trace_hex}"))).await;
    assert_eq!(body["total"], 0);
    assert_eq!(body["limit"], 0);
    assert_eq!(body["offset"], 0);
    assert_eq!(body["errors"], Value::Null);

    // Upper case and (for short ids) 32-digit zero-padded input name the same trace.
    let padded = format!("{trace_hex:0>32}").to_uppercase();
    let again = fetch_trace(m, &padded).await;
    assert_json_eq(&again, expected, "GET /api/traces/{UPPER-CASE, padded id}");

    let now_us = now_nanos() / 1_000;
    let search = get_json(&m.query_url(&format!(
        "/api/traces?service={service}&start={}&end={}&limit=20&lookback=1h",
        now_us - 3_600_000_000,
        now_us + 60_000_000
    )))
    .await;
    let found: Vec<&Value> = search["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["traceID"] == trace_hex)
        .collect();
    assert_eq!(
        found.len(),
        1,
        "search by service finds the trace once: {search}"
    );
    assert_json_eq(found[0], expected, "GET /api/traces?service=…");

    let by_ids = get_json(&m.query_url(&format!("/api/traces?traceID={trace_hex}"))).await;
    assert_json_eq(&by_ids["data"][0], expected, "GET /api/traces?traceID=…");
    assert_eq!(by_ids["errors"], Value::Null);

    check_v3(m, trace_hex, expected).await;
}

/// `/api/v3/traces/{id}`: OTLP JSON with the same spans, exact nanosecond times.
async fn check_v3(m: &Meshtel, trace_hex: &str, expected: &Value) {
    let body = get_json(&m.query_url(&format!("/api/v3/traces/{trace_hex}"))).await;
    let mut spans = Vec::new();
    let mut services = Vec::new();
    for rs in body["result"]["resourceSpans"]
        .as_array()
        .expect("resourceSpans")
    {
        let service = rs["resource"]["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["key"] == "service.name")
            .map(|a| a["value"]["stringValue"].as_str().unwrap().to_string());
        for ss in rs["scopeSpans"].as_array().unwrap() {
            for span in ss["spans"].as_array().unwrap() {
                spans.push(span.clone());
                services.push(service.clone());
            }
        }
    }
    let expected_spans = expected["spans"].as_array().unwrap();
    assert_eq!(spans.len(), expected_spans.len(), "v3 span count: {body}");
    let full_trace_id = format!("{trace_hex:0>32}");
    for want in expected_spans {
        let span = spans
            .iter()
            .find(|s| s["spanId"] == want["spanID"])
            .unwrap_or_else(|| panic!("v3 lacks span {}: {body}", want["spanID"]));
        assert_eq!(
            span["traceId"],
            full_trace_id.as_str(),
            "v3 traceId is 32 lower-hex digits"
        );
        assert_eq!(span["name"], want["operationName"]);
        let start = &span["startTimeUnixNano"];
        let start_ns: u64 = start
            .as_u64()
            .or_else(|| start.as_str().and_then(|s| s.parse().ok()))
            .expect("startTimeUnixNano");
        assert_eq!(
            start_ns / 1_000,
            want["startTime"].as_u64().unwrap(),
            "v3 start of {}",
            want["spanID"]
        );
        let parent = want["references"]
            .as_array()
            .unwrap()
            .first()
            .map(|r| r["spanID"].as_str().unwrap().to_string())
            .unwrap_or_default();
        let actual_parent = span
            .get("parentSpanId")
            .and_then(Value::as_str)
            .unwrap_or("");
        assert_eq!(actual_parent, parent, "v3 parentSpanId");
    }
}

/// Ingests with `send`, checks in the head, restarts gracefully (flush), checks the
/// block, and checks that a second restart replays nothing twice.
async fn roundtrip<F, Fut>(rich: Rich, send: F)
where
    F: FnOnce(Meshtel, ExportTraceServiceRequest) -> Fut,
    Fut: std::future::Future<Output = Meshtel>,
{
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    let m = send(m, rich.request()).await;
    let expected = rich.expected();
    let trace_hex = rich.trace_hex();
    check_everywhere(&m, &trace_hex, &rich.frontend, &expected, 3).await;
    check_everywhere(&m, &trace_hex, &rich.database, &expected, 3).await;
    assert_eq!(
        parquet_files(&dir.data_dir()),
        0,
        "nothing flushed yet with a 1h interval"
    );

    m.stop().await;
    assert!(
        parquet_files(&dir.data_dir()) > 0,
        "a graceful stop writes a block"
    );
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    check_everywhere(&m, &trace_hex, &rich.frontend, &expected, 3).await;
    m.stop().await;
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    check_everywhere(&m, &trace_hex, &rich.frontend, &expected, 3).await;
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_round_trip() {
    roundtrip(
        Rich::new(random_trace_id(), "grpc"),
        |m, request| async move {
            export_grpc(m.grpc.unwrap(), request).await;
            m
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_grpc_short_trace_id_renders_16_digits() {
    roundtrip(
        Rich::new(random_short_trace_id(), "grpc16"),
        |m, request| async move {
            export_grpc(m.grpc.unwrap(), request).await;
            m
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_protobuf_round_trip() {
    roundtrip(
        Rich::new(random_trace_id(), "proto"),
        |m, request| async move {
            let reply = post(
                &m.http_url("/v1/traces"),
                &[("content-type", "application/x-protobuf")],
                request.encode_to_vec(),
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.content_type, "application/x-protobuf");
            let response =
            opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceResponse::decode(
                reply.body.as_slice(),
            )
            .unwrap();
            assert_eq!(response.partial_success, None);
            m
        },
    )
    .await;
}

/// OTLP JSON as the spec writes it: hex ids (upper case here), enums as integers,
/// 64-bit integers as strings, unknown fields present.
pub fn otlp_json(request: &ExportTraceServiceRequest) -> Value {
    fn any(value: &AnyValue) -> Value {
        match value.value.as_ref() {
            Some(V::StringValue(s)) => json!({"stringValue": s}),
            Some(V::BoolValue(b)) => json!({"boolValue": b}),
            Some(V::IntValue(i)) => json!({"intValue": i.to_string()}),
            Some(V::DoubleValue(d)) => json!({"doubleValue": d}),
            Some(V::BytesValue(b)) => json!({"bytesValue": base64(b)}),
            Some(V::ArrayValue(a)) => {
                json!({"arrayValue": {"values": a.values.iter().map(any).collect::<Vec<_>>()}})
            }
            Some(V::KvlistValue(l)) => json!({"kvlistValue": {"values": attrs(&l.values)}}),
            _ => json!({}),
        }
    }
    fn attrs(list: &[opentelemetry_proto::tonic::common::v1::KeyValue]) -> Value {
        list.iter()
            .map(|kv| json!({"key": kv.key, "value": any(kv.value.as_ref().unwrap())}))
            .collect()
    }
    let up = |b: &[u8]| hex::encode_upper(b);
    let resource_spans: Vec<Value> = request
        .resource_spans
        .iter()
        .map(|rs| {
            json!({
                "resource": {"attributes": attrs(&rs.resource.as_ref().unwrap().attributes)},
                "scopeSpans": rs.scope_spans.iter().map(|ss| {
                    let mut scope = json!({
                        "spans": ss.spans.iter().map(|s| {
                            let mut span = json!({
                                "traceId": up(&s.trace_id),
                                "spanId": up(&s.span_id),
                                "name": s.name,
                                "kind": s.kind,
                                "flags": s.flags,
                                "startTimeUnixNano": s.start_time_unix_nano.to_string(),
                                "endTimeUnixNano": s.end_time_unix_nano,
                                "attributes": attrs(&s.attributes),
                                "events": s.events.iter().map(|e| json!({
                                    "timeUnixNano": e.time_unix_nano.to_string(),
                                    "name": e.name,
                                    "attributes": attrs(&e.attributes),
                                })).collect::<Vec<_>>(),
                                "links": s.links.iter().map(|l| json!({
                                    "traceId": hex::encode(&l.trace_id),
                                    "spanId": hex::encode(&l.span_id),
                                    "traceState": l.trace_state,
                                    "attributes": attrs(&l.attributes),
                                })).collect::<Vec<_>>(),
                                "unknownField": {"ignored": true},
                            });
                            if !s.parent_span_id.is_empty() {
                                span["parentSpanId"] = json!(hex::encode(&s.parent_span_id));
                            }
                            if !s.trace_state.is_empty() {
                                span["traceState"] = json!(s.trace_state);
                            }
                            if let Some(status) = &s.status {
                                span["status"] = json!({"code": status.code, "message": status.message});
                            }
                            span
                        }).collect::<Vec<_>>(),
                    });
                    if let Some(sc) = &ss.scope {
                        scope["scope"] = json!({"name": sc.name, "version": sc.version, "attributes": attrs(&sc.attributes)});
                    }
                    scope
                }).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({ "resourceSpans": resource_spans })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_json_round_trip() {
    roundtrip(
        Rich::new(random_trace_id(), "json"),
        |m, request| async move {
            let body = serde_json::to_vec(&otlp_json(&request)).unwrap();
            let reply = post(
                &m.http_url("/v1/traces"),
                &[("content-type", "application/json; charset=utf-8")],
                body,
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.content_type, "application/json");
            assert_eq!(reply.json(), json!({}), "full success is an empty object");
            m
        },
    )
    .await;
}

/// Standard padded base64 (OTLP JSON `bytesValue`).
fn base64(data: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(data).unwrap();
    encoder.finish().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_http_json_gzip_round_trip() {
    roundtrip(
        Rich::new(random_short_trace_id(), "jsongz"),
        |m, request| async move {
            let body = gzip(&serde_json::to_vec(&otlp_json(&request)).unwrap());
            let reply = post(
                &m.http_url("/v1/traces"),
                &[
                    ("content-type", "application/json"),
                    ("content-encoding", "gzip"),
                ],
                body,
            )
            .await;
            assert_eq!(reply.status, 200, "{}", reply.text());
            assert_eq!(reply.json(), json!({}));
            m
        },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zipkin_json_round_trip() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    let trace = hex::encode(&random_short_trace_id()[8..]);
    let server = hex::encode(random_span_id());
    let client = hex::encode(random_span_id());
    let ts = now_nanos() / 1_000 - 30_000_000;
    let spans = json!([
        {
            "traceId": trace, "id": server, "parentId": client, "name": "Get /Api",
            "timestamp": ts + 100, "duration": 1431, "kind": "SERVER",
            "localEndpoint": {"serviceName": "zk-backend", "ipv4": "192.168.99.1", "port": 3306},
            "remoteEndpoint": {"serviceName": "zk-frontend", "ipv4": "172.19.0.2", "port": 58648},
            "tags": {"http.path": "/api", "http.method": "GET", "error": "true"},
            "annotations": [{"timestamp": ts + 200, "value": "ws"}],
            "debug": false, "shared": true
        },
        {
            "traceId": trace, "id": client, "name": "call backend",
            "timestamp": ts, "duration": 2000, "kind": "CLIENT",
            "localEndpoint": {"serviceName": "zk-frontend"},
            "tags": {"component": "http"}
        }
    ]);
    let reply = post(
        &m.zipkin_url(),
        &[("content-type", "application/json")],
        serde_json::to_vec(&spans).unwrap(),
    )
    .await;
    assert_eq!(reply.status, 202, "{}", reply.text());
    assert!(reply.body.is_empty(), "202 has an empty body");

    let expected = json!({
        "traceID": trace,
        "spans": [
            {
                "traceID": trace, "spanID": client, "operationName": "call backend",
                "references": [], "startTime": ts, "duration": 2000,
                "tags": [
                    {"key": "component", "type": "string", "value": "http"},
                    {"key": "span.kind", "type": "string", "value": "client"},
                ],
                "logs": [], "processID": "p1", "warnings": null,
            },
            {
                "traceID": trace, "spanID": server, "operationName": "get /api",
                "references": [{"refType": "CHILD_OF", "traceID": trace, "spanID": client}],
                "startTime": ts + 100, "duration": 1431,
                "tags": [
                    {"key": "http.method", "type": "string", "value": "GET"},
                    {"key": "http.path", "type": "string", "value": "/api"},
                    {"key": "net.host.ip", "type": "string", "value": "192.168.99.1"},
                    {"key": "net.host.port", "type": "int64", "value": 3306},
                    {"key": "peer.service", "type": "string", "value": "zk-frontend"},
                    {"key": "net.peer.ip", "type": "string", "value": "172.19.0.2"},
                    {"key": "net.peer.port", "type": "int64", "value": 58648},
                    {"key": "span.kind", "type": "string", "value": "server"},
                    {"key": "otel.status_code", "type": "string", "value": "ERROR"},
                    {"key": "error", "type": "bool", "value": true},
                ],
                "logs": [{"timestamp": ts + 200, "fields": [{"key": "event", "type": "string", "value": "ws"}]}],
                "processID": "p2", "warnings": null,
            },
        ],
        "processes": {
            "p1": {"serviceName": "zk-frontend", "tags": []},
            "p2": {"serviceName": "zk-backend", "tags": []},
        },
        "warnings": null,
    });
    check_everywhere(&m, &trace, "zk-backend", &expected, 2).await;
    m.stop().await;
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    check_everywhere(&m, &trace, "zk-frontend", &expected, 2).await;
    m.stop().await;
}
