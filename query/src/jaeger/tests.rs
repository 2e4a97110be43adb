//! In-process route tests of the v1 API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use axum::http::{Method, StatusCode};
use meshtel_model::otlp::trace::v1::{Status, span::Event};
use meshtel_model::{DependencyLink, TraceQuery};
use serde_json::json;

use crate::QueryConfig;
use crate::testing::*;

const T1: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const T2: &str = "000000000000000000f067aa0ba902b7";

/// The trace of the §1.7 example (service `api`, host `h1`).
fn example_trace() -> meshtel_model::Trace {
    let mut s = span(
        T1,
        "00f067aa0ba902b7",
        "53995c3f42cd8ad8",
        "GET /api",
        2,
        1_544_712_660_000_000_000,
        1_544_712_661_000_000_000,
    );
    s.attributes = vec![attr(
        "http.status_code",
        meshtel_model::otlp::common::v1::any_value::Value::IntValue(500),
    )];
    s.status = Some(Status {
        code: 2,
        message: String::new(),
    });
    s.events = vec![Event {
        time_unix_nano: 1_544_712_660_500_000_000,
        name: "exception".into(),
        attributes: vec![str_attr("exception.message", "boom")],
        ..Default::default()
    }];
    let mut rs = resource_spans("api", "my.library", vec![s]);
    rs.resource
        .as_mut()
        .unwrap()
        .attributes
        .push(str_attr("host.name", "h1"));
    trace_of(vec![rs])
}

/// A two-service trace with a 64-bit id, recent relative to the fixed clock.
fn second_trace() -> meshtel_model::Trace {
    let start = NOW - 3_600_000_000_000;
    let root = span(
        T2,
        "0000000000000001",
        "",
        "HTTP GET",
        2,
        start,
        start + 5_000_000,
    );
    let mut child = span(
        T2,
        "0000000000000002",
        "0000000000000001",
        "SELECT",
        3,
        start + 1_000_000,
        start + 2_000_000,
    );
    child.attributes = vec![str_attr("db.system", "postgres")];
    trace_of(vec![
        resource_spans("frontend", "", vec![root]),
        resource_spans("db", "", vec![child]),
    ])
}

fn reader() -> MemoryReader {
    MemoryReader {
        traces: vec![example_trace(), second_trace()],
        links: vec![
            DependencyLink {
                parent: "frontend".into(),
                child: "db".into(),
                call_count: 10,
            },
            DependencyLink {
                parent: "api".into(),
                child: "db".into(),
                call_count: 1,
            },
            DependencyLink {
                parent: "frontend".into(),
                child: "db".into(),
                call_count: 4,
            },
        ],
        ..Default::default()
    }
}

const EXAMPLE_BODY: &str = r#"{"data":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736",
  "spans":[{"traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"00f067aa0ba902b7","operationName":"GET /api",
    "references":[{"refType":"CHILD_OF","traceID":"4bf92f3577b34da6a3ce929d0e0e4736","spanID":"53995c3f42cd8ad8"}],
    "startTime":1544712660000000,"duration":1000000,
    "tags":[{"key":"otel.scope.name","type":"string","value":"my.library"},
            {"key":"http.status_code","type":"int64","value":500},
            {"key":"span.kind","type":"string","value":"server"},
            {"key":"otel.status_code","type":"string","value":"ERROR"},
            {"key":"error","type":"bool","value":true}],
    "logs":[{"timestamp":1544712660500000,"fields":[{"key":"event","type":"string","value":"exception"},
            {"key":"exception.message","type":"string","value":"boom"}]}],
    "processID":"p1","warnings":null}],
  "processes":{"p1":{"serviceName":"api","tags":[{"key":"host.name","type":"string","value":"h1"}]}},
  "warnings":null}],
 "total":0,"limit":0,"offset":0,"errors":null}"#;

fn assert_v1_error(reply: &Reply, status: StatusCode, msg: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.content_type, "text/plain; charset=utf-8");
    let expected = format!(
        "{{\"data\":null,\"total\":0,\"limit\":0,\"offset\":0,\"errors\":[{{\"code\":{},\"msg\":{}}}]}}\n",
        status.as_u16(),
        serde_json::to_string(msg).unwrap()
    );
    assert_eq!(reply.body, expected);
}

#[tokio::test]
async fn trace_by_id_is_the_section_1_7_example_byte_for_byte() {
    let app = app(reader());
    let reply = get(&app, &format!("/api/traces/{T1}")).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(reply.body, minify(EXAMPLE_BODY));
    // Upper case and Grafana's millisecond hints are fine.
    let reply = get(
        &app,
        &format!(
            "/api/traces/{}?start=1544712660000&end=1544712670000",
            T1.to_uppercase()
        ),
    )
    .await;
    assert_eq!(reply.body, minify(EXAMPLE_BODY));
}

#[tokio::test]
async fn trace_by_id_64_bit_and_errors() {
    let app = app(reader());
    for id in ["f067aa0ba902b7", "00f067aa0ba902b7", T2] {
        let reply = get(&app, &format!("/api/traces/{id}")).await;
        assert_eq!(reply.status, StatusCode::OK);
        let v = reply.json();
        assert_eq!(v["data"][0]["traceID"], "00f067aa0ba902b7");
        assert_eq!(
            v["data"][0]["spans"][1]["references"][0]["traceID"],
            "00f067aa0ba902b7"
        );
        assert_eq!(v["data"][0]["processes"]["p2"]["serviceName"], "db");
    }
    assert_v1_error(
        &get(&app, "/api/traces/0000000000000001").await,
        StatusCode::NOT_FOUND,
        "trace not found",
    );
    let bad = get(&app, "/api/traces/xyz!").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(bad.content_type, "text/plain; charset=utf-8");
    assert!(bad.body.ends_with("}]}\n"));
    let long = "0".repeat(33);
    assert_v1_error(
        &get(&app, &format!("/api/traces/{long}")).await,
        StatusCode::BAD_REQUEST,
        &format!("TraceID cannot be longer than 32 hex characters: {long}"),
    );
}

#[tokio::test]
async fn raw_skips_the_adjustment_of_shared_span_ids() {
    // Zipkin-style B3: client and server report one RPC under one span id.
    let client = span(
        T1,
        "000000000000000a",
        "",
        "call",
        3,
        NOW - 9_000,
        NOW - 1_000,
    );
    let server = span(
        T1,
        "000000000000000a",
        "",
        "serve",
        2,
        NOW - 8_000,
        NOW - 2_000,
    );
    let trace = trace_of(vec![
        resource_spans("front", "", vec![client]),
        resource_spans("back", "", vec![server]),
    ]);
    let app = app(MemoryReader {
        traces: vec![trace],
        ..MemoryReader::default()
    });
    let ids = |body: serde_json::Value| -> Vec<String> {
        let mut ids: Vec<String> = body["data"][0]["spans"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["spanID"].as_str().unwrap().to_string())
            .collect();
        ids.sort();
        ids
    };
    let adjusted = get(&app, &format!("/api/traces/{T1}")).await.json();
    assert_eq!(ids(adjusted), ["0000000000000001", "000000000000000a"]);
    for path in [
        format!("/api/traces/{T1}?raw=true"),
        format!("/api/traces?traceID={T1}&raw=true"),
        format!(
            "/api/traces?service=front&raw=true&start={}",
            NOW / 1_000 - 60_000_000
        ),
    ] {
        let raw = get(&app, &path).await.json();
        assert_eq!(ids(raw), ["000000000000000a", "000000000000000a"], "{path}");
    }
}

#[tokio::test]
async fn services_and_operations() {
    let app = app(reader());
    let reply = get(&app, "/api/services").await;
    assert_eq!(
        reply.body,
        r#"{"data":["api","db","frontend"],"total":3,"limit":0,"offset":0,"errors":null}"#
    );
    let empty = crate::testing::app(MemoryReader::default());
    assert_eq!(
        get(&empty, "/api/services").await.body,
        r#"{"data":[],"total":0,"limit":0,"offset":0,"errors":null}"#
    );

    let reply = get(&app, "/api/services/frontend/operations").await;
    assert_eq!(
        reply.body,
        r#"{"data":["HTTP GET"],"total":1,"limit":0,"offset":0,"errors":null}"#
    );
    let reply = get(&app, "/api/services/no%20such/operations").await;
    assert_eq!(reply.json()["data"], serde_json::json!([]));

    let reply = get(&app, "/api/operations?service=db").await;
    assert_eq!(
        reply.body,
        r#"{"data":[{"name":"SELECT","spanKind":"client"}],"total":1,"limit":0,"offset":0,"errors":null}"#
    );
    assert_eq!(
        get(&app, "/api/operations?service=db&spanKind=server")
            .await
            .json()["data"],
        serde_json::json!([])
    );
    assert_eq!(
        get(&app, "/api/operations?service=db&spanKind=client")
            .await
            .json()["total"],
        1
    );
    assert_eq!(
        get(&app, "/api/operations?service=db&spanKind=bogus")
            .await
            .json()["data"],
        serde_json::json!([])
    );
    assert_v1_error(
        &get(&app, "/api/operations").await,
        StatusCode::BAD_REQUEST,
        "parameter 'service' is required",
    );
}

#[tokio::test]
async fn operations_path_segment_is_decoded_once() {
    let rs = resource_spans(
        "a+b c",
        "",
        vec![span(T2, "0000000000000001", "", "op", 1, 1, 2)],
    );
    let app = app(MemoryReader {
        traces: vec![trace_of(vec![rs])],
        ..Default::default()
    });
    assert_eq!(
        get(&app, "/api/services/a+b%20c/operations").await.json()["data"],
        serde_json::json!(["op"])
    );
    assert_eq!(
        get(&app, "/api/services/a%2Bb%20c/operations").await.json()["data"],
        serde_json::json!(["op"])
    );
}

#[tokio::test]
async fn search_passes_parameters_and_renders_traces() {
    let reader = Arc::new(reader());
    let app = app_with(reader.clone(), &QueryConfig::default());
    let reply = get(
        &app,
        "/api/traces?service=db&operation=SELECT&tags=%7B%22db.system%22%3A%22postgres%22%7D&minDuration=1ms&maxDuration=2s&limit=20&lookback=custom&start=1735680000000000&end=1735689600000000",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["data"][0]["traceID"], "00f067aa0ba902b7");
    assert_eq!(
        v["data"][0]["spans"].as_array().unwrap().len(),
        2,
        "whole traces are returned"
    );
    assert_eq!(
        (v["total"].clone(), v["errors"].clone()),
        (0.into(), serde_json::Value::Null)
    );
    let expected = TraceQuery {
        service: Some("db".into()),
        operation: Some("SELECT".into()),
        tags: vec![("db.system".into(), "postgres".into())],
        start_min_unix_nano: 1_735_680_000_000_000_000,
        start_max_unix_nano: 1_735_689_600_000_000_999,
        duration_min_nano: Some(1_000_000),
        duration_max_nano: Some(2_000_000_000),
        limit: 20,
        max_spans: Some(crate::default_max_spans_per_response()),
    };
    assert_eq!(reader.last_query.lock().unwrap().clone(), Some(expected));

    // Nothing matches: `[]`, never null. The default window (48h) misses the 2018 trace.
    let reply = get(&app, "/api/traces?service=api").await;
    assert_eq!(
        reply.body,
        r#"{"data":[],"total":0,"limit":0,"offset":0,"errors":null}"#
    );
    // Synthetic tags match as Jaeger renders them; log fields count too.
    let v = get(
        &app,
        "/api/traces?service=api&start=0&tag=error:true&tag=exception.message:boom",
    )
    .await
    .json();
    assert_eq!(v["data"][0]["traceID"], T1);
    let v = get(
        &app,
        "/api/traces?service=api&start=0&tags=%7B%22http.status_code%22%3A%22500%22%7D",
    )
    .await
    .json();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    let v = get(
        &app,
        "/api/traces?service=api&start=0&tag=http.status_code:404",
    )
    .await
    .json();
    assert_eq!(v["data"], serde_json::json!([]));
}

#[tokio::test]
async fn search_errors() {
    let app = app(reader());
    let cases = [
        ("", "parameter 'service' is required"),
        (
            "service=a&start=x",
            "unable to parse param 'start': strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "service=a&limit=x",
            "unable to parse param 'limit': strconv.ParseInt: parsing \"x\": invalid syntax",
        ),
        (
            "service=a&minDuration=5",
            "unable to parse param 'minDuration': time: missing unit in duration \"5\"",
        ),
        (
            "service=a&minDuration=2s&maxDuration=1s",
            "'maxDuration' should be greater than 'minDuration'",
        ),
        (
            "service=a&tag=x",
            "malformed 'tag' parameter, expecting key:value, received: x",
        ),
        (
            "service=a&raw=maybe",
            "unable to parse param 'raw': strconv.ParseBool: parsing \"maybe\": invalid syntax",
        ),
    ];
    for (query, msg) in cases {
        assert_v1_error(
            &get(&app, &format!("/api/traces?{query}")).await,
            StatusCode::BAD_REQUEST,
            msg,
        );
    }
}

/// A value as long as a query string is not echoed whole: the message names the
/// parameter and shows the value's start.
#[tokio::test]
async fn a_long_bad_value_is_cut_in_the_message() {
    let app = app(reader());
    let long = "9".repeat(20_000);
    let reply = get(&app, &format!("/api/traces?service=a&minDuration={long}")).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply.body.len() < 600,
        "{} bytes: {}",
        reply.body.len(),
        reply.body
    );
    assert!(
        reply.body.contains(
            "unable to parse param 'minDuration': time: missing unit in duration \\\"999"
        ),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("… (20070 bytes)"), "{}", reply.body);
}

#[tokio::test]
async fn search_by_trace_ids_reports_missing_ones() {
    let app = app(reader());
    let reply = get(
        &app,
        &format!("/api/traces?traceID={T1}&traceID=00f067aa0ba902b7&traceID=abc"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK);
    let v = reply.json();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["data"][1]["traceID"], "00f067aa0ba902b7");
    assert_eq!(
        v["errors"],
        serde_json::json!([{"msg": "trace not found", "traceID": "0000000000000abc"}])
    );
    assert!(
        reply
            .body
            .ends_with(r#""errors":[{"msg":"trace not found","traceID":"0000000000000abc"}]}"#)
    );
}

#[tokio::test]
async fn a_fetch_by_ids_takes_each_id_once_and_at_most_the_search_limit() {
    let app = app(reader());
    let twice = format!("/api/traces?traceID={T1}&traceID={T2}&traceID={T1}&traceID={T1}");
    let v = get(&app, &twice).await.json();
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [T1, "00f067aa0ba902b7"]);

    let limit = crate::default_max_search_limit();
    let many: Vec<String> = (1..=limit + 1).map(|i| format!("traceID={i:x}")).collect();
    let reply = get(&app, &format!("/api/traces?{}", many.join("&"))).await;
    assert_v1_error(
        &reply,
        StatusCode::BAD_REQUEST,
        &format!(
            "too many traceID params: at most {limit} traces are fetched at once \
             ([query] max_search_limit)"
        ),
    );
    let fits = get(&app, &format!("/api/traces?{}", many[..limit].join("&"))).await;
    assert_eq!(fits.status, StatusCode::OK);
}

/// A trace the store cut to the answer's span bound says so, on the trace and on its
/// first span (where Jaeger UI and Grafana show warnings).
#[tokio::test]
async fn a_cut_trace_carries_a_warning() {
    let mut cut = second_trace();
    cut.omitted_spans = 30;
    let cut_app = app(MemoryReader {
        traces: vec![cut],
        ..Default::default()
    });
    let v = get(&cut_app, &format!("/api/traces/{T2}")).await.json();
    let warning = crate::jaeger::convert::omitted_warning(2, 30);
    assert!(warning.contains("earliest 2 spans: 30 more"), "{warning}");
    assert_eq!(v["data"][0]["warnings"], json!([warning]));
    assert_eq!(v["data"][0]["spans"][0]["warnings"], json!([warning]));
    assert_eq!(
        v["data"][0]["spans"][1]["warnings"],
        serde_json::Value::Null
    );
    let whole = get(&app(reader()), &format!("/api/traces/{T2}"))
        .await
        .json();
    assert_eq!(whole["data"][0]["warnings"], serde_json::Value::Null);
}

#[tokio::test]
async fn dependencies_are_deduplicated_and_filtered() {
    let reader = Arc::new(reader());
    let app = app_with(reader.clone(), &QueryConfig::default());
    let reply = get(
        &app,
        "/api/dependencies?endTs=1735689600000&lookback=604800000",
    )
    .await;
    assert_eq!(
        reply.body,
        r#"{"data":[{"parent":"frontend","child":"db","callCount":14},{"parent":"api","child":"db","callCount":1}],"total":0,"limit":0,"offset":0,"errors":null}"#
    );
    assert_eq!(
        *reader.last_window.lock().unwrap(),
        Some((1_735_689_600_000_000_000, 604_800_000_000_000))
    );
    let v = get(&app, "/api/dependencies?service=api").await.json();
    assert_eq!(
        v["data"],
        serde_json::json!([{"parent": "api", "child": "db", "callCount": 1}])
    );
    assert_eq!(
        *reader.last_window.lock().unwrap(),
        Some((NOW, 24 * 3_600_000_000_000))
    );
    assert_v1_error(
        &get(&app, "/api/dependencies?lookback=1w").await,
        StatusCode::BAD_REQUEST,
        "unable to parse param 'lookback': strconv.ParseInt: parsing \"1w\": invalid syntax",
    );
}

#[tokio::test]
async fn storage_errors_are_500_without_details() {
    let app = app(MemoryReader {
        fail: true,
        ..Default::default()
    });
    for uri in [
        "/api/services",
        "/api/traces?service=a",
        &format!("/api/traces/{T1}"),
        "/api/dependencies",
    ] {
        let reply = get(&app, uri).await;
        assert_v1_error(&reply, StatusCode::INTERNAL_SERVER_ERROR, "internal error");
        assert!(!reply.body.contains("secret"));
    }
}

#[tokio::test]
async fn pretty_print_indents_four_spaces() {
    let app = app(reader());
    let reply = get(&app, "/api/services?prettyPrint=true").await;
    assert_eq!(
        reply.body,
        "{\n    \"data\": [\n        \"api\",\n        \"db\",\n        \"frontend\"\n    ],\n    \"total\": 3,\n    \"limit\": 0,\n    \"offset\": 0,\n    \"errors\": null\n}"
    );
    assert!(
        !get(&app, "/api/services?prettyPrint=false")
            .await
            .body
            .contains('\n')
    );
    let pretty = get(&app, &format!("/api/traces/{T1}?prettyPrint=1")).await;
    assert!(
        pretty
            .body
            .contains("\n                    \"spanID\": \"00f067aa0ba902b7\"")
    );
    assert_eq!(minify(&pretty.body), minify(EXAMPLE_BODY));
}

#[tokio::test]
async fn base_path_prefixes_every_route() {
    let config = QueryConfig {
        base_path: "/jaeger/".into(),
        ..QueryConfig::default()
    };
    let app = app_with(Arc::new(reader()), &config);
    assert_eq!(get(&app, "/jaeger/api/services").await.json()["total"], 3);
    assert_eq!(
        get(&app, &format!("/jaeger/api/traces/{T1}")).await.body,
        minify(EXAMPLE_BODY)
    );
    assert_eq!(
        get(&app, "/jaeger/api/v3/services").await.status,
        StatusCode::OK
    );
    assert_eq!(
        get(&app, "/api/services").await.status,
        StatusCode::NOT_FOUND
    );
    // The UI answers at the base path with and without its trailing slash.
    let bare = get(&app, "/jaeger").await;
    let slash = get(&app, "/jaeger/").await;
    assert_eq!(bare.status, StatusCode::OK);
    assert_eq!((slash.status, slash.body), (bare.status, bare.body));
}

#[tokio::test]
async fn transform_renders_uploaded_otlp() {
    let app = app(MemoryReader::default());
    let reply = call(&app, Method::POST, "/api/transform", OTLP_EXAMPLE).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let v = reply.json();
    assert_eq!(v["data"][0]["traceID"], "5b8efff798038103d269b633813fc60c");
    assert_eq!(v["data"][0]["processes"]["p1"]["serviceName"], "my.service");
    let bad = call(&app, Method::POST, "/api/transform", "{nope").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(bad.body.contains("cannot unmarshal OTLP traces"));
    // A body of empty groups, which would take tens of times its size parsed, is
    // refused before it is, as OTLP/HTTP ingest refuses it.
    let empties = format!("{{\"resourceSpans\":[{}]}}", vec!["{}"; 300_000].join(","));
    let bad = call(&app, Method::POST, "/api/transform", &empties).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains(
            "cannot unmarshal OTLP traces: the body's 900019 bytes hold 300002 JSON objects"
        ),
        "{}",
        bad.body
    );
    // Tiny objects, as dense as the count allows, would take a hundred times their
    // size parsed: refused over 64 MiB.
    let tiny = format!(
        "{{\"resourceSpans\":[{}]}}",
        vec!["{\"a\":1}"; 200_000].join(",")
    );
    let bad = call(&app, Method::POST, "/api/transform", &tiny).await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body.contains(
            "reading this body would take about 146.5 MiB in memory, more than the 64.0 MiB"
        ),
        "{}",
        bad.body
    );
}

#[tokio::test]
async fn transform_reads_otlp_json_as_the_receiver_does() {
    // Enum names and snake_case keys, which OTLP/HTTP ingest accepts too.
    let body = r#"{"resource_spans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"s"}}]},
        "scope_spans":[{"spans":[{"trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
        "name":"n","kind":"SPAN_KIND_CLIENT","start_time_unix_nano":"1544712660000000000",
        "end_time_unix_nano":"1544712661000000000","status":{"code":"STATUS_CODE_ERROR"}}]}]}]}"#;
    let app = app(MemoryReader::default());
    let reply = call(&app, Method::POST, "/api/transform", body).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let span = &reply.json()["data"][0]["spans"][0];
    assert_eq!(span["startTime"], 1_544_712_660_000_000u64);
    assert_eq!(span["duration"], 1_000_000);
    let tags = span["tags"].as_array().unwrap();
    let kind = json!({"key": "span.kind", "type": "string", "value": "client"});
    assert!(tags.contains(&kind), "{tags:?}");
    let error = json!({"key": "error", "type": "bool", "value": true});
    assert!(tags.contains(&error), "{tags:?}");
}

#[tokio::test]
async fn transform_names_a_bad_field_and_what_it_allows() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5b8efff798038103d269b633813fc60c",
        "spanId":"eee19b7ec3c1b174","name":"n","kind":"SPAN_KIND_SERVR"}]}]}]}"#;
    let app = app(MemoryReader::default());
    let reply = call(&app, Method::POST, "/api/transform", body).await;
    assert_eq!(reply.status, StatusCode::BAD_REQUEST, "{}", reply.body);
    assert!(
        reply
            .body
            .contains("resourceSpans[0].scopeSpans[0].spans[0].kind: unknown SpanKind"),
        "{}",
        reply.body
    );
    assert!(reply.body.contains("SPAN_KIND_SERVER"), "{}", reply.body);
}

#[tokio::test]
async fn archive_is_not_configured() {
    let app = app(reader());
    assert_v1_error(
        &call(&app, Method::POST, &format!("/api/archive/{T1}"), "").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "archive span storage was not configured",
    );
}
