//! In-process route tests of the v3 API.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use std::sync::Arc;

use axum::http::StatusCode;

use super::{NO_TRACES_FOUND, parse_rfc3339_nano};
use crate::QueryConfig;
use crate::testing::*;

mod adjust;

const T: &str = "5b8efff798038103d269b633813fc60c";

fn reader() -> MemoryReader {
    let example = trace_of(otlp_example());
    let internal = resource_spans(
        "worker",
        "",
        vec![span(T, "0000000000000009", "", "tick", 0, 1, 2)],
    );
    let other = trace_of(vec![internal]);
    MemoryReader {
        traces: vec![example, other],
        ..Default::default()
    }
}

fn assert_v3_error(reply: &Reply, status: StatusCode, message: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.content_type, "text/plain; charset=utf-8");
    let expected = format!(
        "{{\"error\":{{\"httpCode\":{},\"message\":{}}}}}\n",
        status.as_u16(),
        serde_json::to_string(message).unwrap()
    );
    assert_eq!(reply.body, expected);
}

#[tokio::test]
async fn services_and_operations() {
    let app = app(reader());
    let reply = get(&app, "/api/v3/services").await;
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(reply.body, r#"{"services":["my.service","worker"]}"#);
    assert_eq!(
        get(
            &crate::testing::app(MemoryReader::default()),
            "/api/v3/services"
        )
        .await
        .body,
        r#"{"services":[]}"#
    );

    let reply = get(&app, "/api/v3/operations?service=my.service").await;
    assert_eq!(
        reply.body,
        r#"{"operations":[{"name":"I'm a server span","spanKind":"server"}]}"#
    );
    // An unspecified kind is reported as internal.
    let reply = get(&app, "/api/v3/operations?service=worker").await;
    assert_eq!(
        reply.body,
        r#"{"operations":[{"name":"tick","spanKind":"internal"}]}"#
    );
    assert_eq!(
        get(
            &app,
            "/api/v3/operations?service=my.service&span_kind=client"
        )
        .await
        .body,
        r#"{"operations":[]}"#
    );
    assert_eq!(
        get(
            &app,
            "/api/v3/operations?service=my.service&spanKind=server"
        )
        .await
        .json()["operations"][0]["name"],
        "I'm a server span"
    );
    assert_eq!(
        get(&app, "/api/v3/operations").await.body,
        r#"{"operations":[]}"#
    );
}

#[tokio::test]
async fn trace_by_id_is_otlp_json() {
    let app = app(reader());
    let reply = get(&app, &format!("/api/v3/traces/{T}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    let v = reply.json();
    let span = &v["result"]["resourceSpans"][0]["scopeSpans"][0]["spans"][0];
    assert_eq!(span["traceId"], T);
    assert_eq!(span["spanId"], "eee19b7ec3c1b174");
    assert_eq!(span["parentSpanId"], "eee19b7ec3c1b173");
    assert_eq!(span["startTimeUnixNano"], "1544712660000000000");
    assert_eq!(span["attributes"][0]["value"]["intValue"], "500");
    assert_eq!(
        v["result"]["resourceSpans"][0]["resource"]["attributes"][0]["value"]["stringValue"],
        "my.service"
    );

    assert_v3_error(
        &get(&app, "/api/v3/traces/0000000000000001").await,
        StatusCode::NOT_FOUND,
        NO_TRACES_FOUND,
    );
    let bad = get(&app, "/api/v3/traces/nothex!").await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert!(
        bad.body
            .starts_with(r#"{"error":{"httpCode":400,"message":"malformed parameter trace_id: "#)
    );
    let bad = get(&app, &format!("/api/v3/traces/{T}?start_time=yesterday")).await;
    assert!(
        bad.body
            .contains("malformed parameter start_time: parsing time \\\"yesterday\\\""),
        "{}",
        bad.body
    );
    let ok = get(&app, &format!("/api/v3/traces/{T}?start_time=2018-12-13T00:00:00Z&end_time=2018-12-14T00:00:00.5%2B01:00&raw_traces=true")).await;
    assert_eq!(ok.status, StatusCode::OK);
}

#[tokio::test]
async fn search() {
    let reader = Arc::new(reader());
    let app = app_with(reader.clone(), &QueryConfig::default());
    let reply = get(
        &app,
        "/api/v3/traces?query.service_name=my.service&query.operation_name=I%27m%20a%20server%20span&query.start_time_min=2018-12-13T00:00:00Z&query.start_time_max=2018-12-14T00:00:00.000000001Z&query.duration_min=1ms&query.duration_max=1h&query.search_depth=5&query.attributes=%7B%22error%22%3A%22true%22%7D",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.json()["result"]["resourceSpans"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
    let q = reader.last_query.lock().unwrap().clone().unwrap();
    assert_eq!(q.service.as_deref(), Some("my.service"));
    assert_eq!(q.start_min_unix_nano, 1_544_659_200_000_000_000);
    assert_eq!(q.start_max_unix_nano, 1_544_745_600_000_000_001);
    assert_eq!(
        (q.duration_min_nano, q.duration_max_nano),
        (Some(1_000_000), Some(3_600_000_000_000))
    );
    assert_eq!(q.limit, 5);
    assert_eq!(q.tags, vec![("error".to_string(), "true".to_string())]);

    let none = get(&app, "/api/v3/traces?query.service_name=nobody&query.start_time_min=2018-12-13T00:00:00Z&query.start_time_max=2018-12-14T00:00:00Z").await;
    assert_v3_error(&none, StatusCode::NOT_FOUND, NO_TRACES_FOUND);
    assert_v3_error(
        &get(&app, "/api/v3/traces?query.service_name=a").await,
        StatusCode::BAD_REQUEST,
        "query.startTimeMin and query.startTimeMax are required (or query.start_time_min and query.start_time_max)",
    );
    let base = "/api/v3/traces?query.start_time_min=2018-12-13T00:00:00Z&query.start_time_max=2018-12-14T00:00:00Z";
    assert_v3_error(
        &get(&app, &format!("{base}&query.search_depth=x")).await,
        StatusCode::BAD_REQUEST,
        "malformed parameter query.search_depth: strconv.Atoi: parsing \"x\": invalid syntax",
    );
    assert_v3_error(
        &get(&app, &format!("{base}&query.duration_min=5")).await,
        StatusCode::BAD_REQUEST,
        "malformed parameter query.duration_min: time: missing unit in duration \"5\"",
    );
}

#[tokio::test]
async fn storage_errors_are_generic() {
    let app = app(MemoryReader {
        fail: true,
        ..Default::default()
    });
    assert_v3_error(
        &get(&app, "/api/v3/services").await,
        StatusCode::INTERNAL_SERVER_ERROR,
        "internal error",
    );
}

#[test]
fn rfc3339_parsing() {
    assert_eq!(parse_rfc3339_nano("1970-01-01T00:00:00Z"), Ok(0));
    assert_eq!(parse_rfc3339_nano("2025-01-01T00:00:00Z"), Ok(NOW));
    assert_eq!(
        parse_rfc3339_nano("2025-01-01T01:00:00.25+01:00"),
        Ok(NOW + 250_000_000)
    );
    assert_eq!(parse_rfc3339_nano("2024-12-31T23:00:00-01:00"), Ok(NOW));
    assert_eq!(parse_rfc3339_nano("2025-01-01T23:59:00+23:59"), Ok(NOW));
    assert_eq!(
        parse_rfc3339_nano("2024-02-29T00:00:00Z"),
        Ok(1_709_164_800_000_000_000)
    );
    assert_eq!(parse_rfc3339_nano("1960-01-01T00:00:00Z"), Ok(0));
    for bad in [
        "",
        "2023-02-29T00:00:00Z",
        "2025-01-01 00:00:00Z",
        "2025-01-01T00:00:00",
        "2025-01-01T24:00:00Z",
        "2025-01-01T00:00:00.Z",
        "2025-01-01T00:00:00.1234567891Z",
        // Offsets past ±23:59 (Go refuses them; read as hours they moved the window).
        "2025-01-01T00:00:00+99:00",
        "2025-01-01T00:00:00+24:00",
        "2025-01-01T00:00:00+05:60",
        "2025-01-01T00:00:00-99:59",
    ] {
        assert!(parse_rfc3339_nano(bad).is_err(), "{bad}");
    }
}

#[tokio::test]
async fn trace_summaries_as_jaeger_ui_searches() {
    // A trace as the search page lists it: a root in `front`, a child in `back` that
    // failed, and a span whose parent was never received.
    const ID: &str = "0af7651916cd43dd8448eb211c80319c";
    let mut failed = span(
        ID,
        "00000000000000b2",
        "00000000000000a1",
        "GET /item",
        3,
        1_200,
        1_900,
    );
    failed.status = Some(meshtel_model::otlp::trace::v1::Status {
        code: 2,
        ..Default::default()
    });
    let trace = trace_of(vec![
        resource_spans(
            "front",
            "",
            vec![
                span(ID, "00000000000000a1", "", "GET /page", 2, 1_000, 5_000),
                span(
                    ID,
                    "00000000000000a9",
                    "00000000000000ff",
                    "late",
                    1,
                    900,
                    6_500,
                ),
            ],
        ),
        resource_spans("back", "", vec![failed]),
    ]);
    let reader = Arc::new(MemoryReader {
        traces: vec![trace],
        ..Default::default()
    });
    let app = app_with(reader.clone(), &QueryConfig::default());
    // The parameters Jaeger UI 2.20 sends (`span_name`, `num_traces`).
    let reply = get(
        &app,
        "/api/v3/trace-summaries?query.service_name=front&query.span_name=GET%20%2Fpage&query.start_time_min=1970-01-01T00:00:00.000Z&query.start_time_max=2018-12-14T00:00:00.000Z&query.num_traces=20&query.duration_min=1us",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.content_type, "application/json");
    assert_eq!(
        reply.body,
        minify(
            r#"{"summaries":[{"traceId":"0af7651916cd43dd8448eb211c80319c",
            "rootServiceName":"front","rootOperationName":"GET /page",
            "minStartTimeUnixNano":"900","maxEndTimeUnixNano":"6500",
            "spanCount":3,"errorSpanCount":1,"orphanSpanCount":1,
            "services":[{"name":"back","spanCount":1,"errorSpanCount":1},
                        {"name":"front","spanCount":2,"errorSpanCount":0}]}]}"#
        )
    );
    let q = reader.last_query.lock().unwrap().clone().unwrap();
    assert_eq!(q.operation.as_deref(), Some("GET /page"));
    assert_eq!(q.limit, 20);
    assert_eq!(q.duration_min_nano, Some(1_000));

    // Nothing found is an empty list, not a 404 as for /api/v3/traces.
    let none = get(&crate::testing::app(MemoryReader::default()), "/api/v3/trace-summaries?query.start_time_min=2018-12-13T00:00:00Z&query.start_time_max=2018-12-14T00:00:00Z").await;
    assert_eq!(
        (none.status, none.body.as_str()),
        (StatusCode::OK, r#"{"summaries":[]}"#)
    );
    assert_v3_error(
        &get(&app, "/api/v3/trace-summaries?query.service_name=front").await,
        StatusCode::BAD_REQUEST,
        "query.startTimeMin and query.startTimeMax are required (or query.start_time_min and query.start_time_max)",
    );
}

/// The summary of one trace of `service` made of `(span id, parent id, name, start, end)`.
fn summary_of(spans: &[(&str, &str, &str, u64, u64)]) -> super::summaries::TraceSummary {
    const ID: &str = "0af7651916cd43dd8448eb211c80319d";
    let spans = spans
        .iter()
        .map(|&(id, parent, name, start, end)| span(ID, id, parent, name, 2, start, end))
        .collect();
    super::summaries::summarize(&trace_of(vec![resource_spans("shop", "", spans)]))
}

#[test]
fn a_partial_trace_takes_a_span_whose_parent_never_arrived_as_its_root() {
    // Two spans of one missing parent: the earlier is the root.
    let summary = summary_of(&[
        ("0000000000000002", "0000000000000001", "second", 20, 30),
        ("0000000000000003", "0000000000000001", "first", 10, 40),
    ]);
    assert_eq!(summary.root_operation_name, "first");
    assert_eq!(summary.orphan_span_count, 2);
    assert_eq!(
        (
            summary.min_start_time_unix_nano.as_str(),
            summary.max_end_time_unix_nano.as_str()
        ),
        ("10", "40")
    );
    // `checkout`'s parent never arrived; its child started 1 µs before it (clock skew).
    let summary = summary_of(&[
        (
            "0000000000000002",
            "0000000000000001",
            "checkout",
            20_000,
            90_000,
        ),
        (
            "0000000000000003",
            "0000000000000002",
            "charge",
            19_000,
            40_000,
        ),
    ]);
    assert_eq!(summary.root_operation_name, "checkout");
    assert_eq!(summary.orphan_span_count, 1);
}

#[tokio::test]
async fn dependencies_over_a_window() {
    let reader = Arc::new(MemoryReader {
        links: vec![meshtel_model::DependencyLink {
            parent: "front".into(),
            child: "back".into(),
            call_count: 7,
        }],
        ..Default::default()
    });
    let app = app_with(reader.clone(), &QueryConfig::default());
    let reply = get(
        &app,
        "/api/v3/dependencies?start_time=2024-12-31T23:00:00Z&end_time=2025-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        r#"{"dependencies":[{"parent":"front","child":"back","callCount":"7"}]}"#
    );
    assert_eq!(
        *reader.last_window.lock().unwrap(),
        Some((NOW, 3_600_000_000_000))
    );
    // The older camelCase names are read too.
    let old = get(
        &app,
        "/api/v3/dependencies?startTime=2024-12-31T23:00:00Z&endTime=2025-01-01T00:00:00Z",
    )
    .await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.body);
    assert_v3_error(
        &get(&app, "/api/v3/dependencies?end_time=2025-01-01T00:00:00Z").await,
        StatusCode::BAD_REQUEST,
        "missing required parameter: startTime (or start_time)",
    );
    assert_v3_error(
        &get(
            &app,
            "/api/v3/dependencies?start_time=2025-01-01T00:00:00Z&end_time=2025-01-01T00:00:00Z",
        )
        .await,
        StatusCode::BAD_REQUEST,
        "endTime must be after startTime",
    );
}

#[test]
fn a_resource_without_attributes_is_named_as_the_other_answers_name_it() {
    const ID: &str = "0af7651916cd43dd8448eb211c80319f";
    let mut nameless = resource_spans(
        "x",
        "",
        vec![span(ID, "0000000000000002", "", "tick", 1, 1, 2)],
    );
    nameless.resource = None;
    let summary = super::summaries::summarize(&trace_of(vec![nameless]));
    assert_eq!(
        summary.root_service_name,
        crate::jaeger::convert::RESOURCE_NO_SERVICE_NAME
    );
    assert_eq!(
        summary.services[0].name,
        crate::jaeger::convert::RESOURCE_NO_SERVICE_NAME
    );
}

#[test]
fn a_cut_traces_warning_joins_warnings_its_earliest_span_has() {
    use meshtel_model::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    let text = |s: &str| AnyValue {
        value: Some(any_value::Value::StringValue(s.into())),
    };
    let mut root = span(T, "0000000000000001", "", "root", 0, 1, 5);
    root.attributes.push(KeyValue {
        key: "@jaeger@warnings".into(),
        value: Some(AnyValue {
            value: Some(any_value::Value::ArrayValue(ArrayValue {
                values: vec![text("clock skew adjusted")],
            })),
        }),
        ..Default::default()
    });
    let child = span(T, "0000000000000002", "0000000000000001", "child", 0, 2, 3);
    let mut trace = trace_of(vec![resource_spans("svc", "", vec![child, root])]);
    trace.omitted_spans = 7;
    super::warn_if_cut(&mut trace);
    let spans = &trace.resource_spans[0].scope_spans[0].spans;
    let warnings: Vec<_> = spans
        .iter()
        .flat_map(|s| s.attributes.iter().map(move |a| (s.name.as_str(), a)))
        .filter(|(_, a)| a.key == "@jaeger@warnings")
        .collect();
    assert_eq!(warnings.len(), 1, "one key, on the root: {warnings:?}");
    assert_eq!(warnings[0].0, "root");
    let Some(any_value::Value::ArrayValue(list)) =
        warnings[0].1.value.as_ref().and_then(|v| v.value.as_ref())
    else {
        panic!("not a list: {:?}", warnings[0].1);
    };
    assert_eq!(list.values.len(), 2);
    assert_eq!(list.values[0], text("clock skew adjusted"));
    assert!(
        matches!(&list.values[1].value, Some(any_value::Value::StringValue(s)) if s.contains("7 more are stored")),
        "{list:?}"
    );
}

/// Jaeger's canonical camelCase parameters, as current Jaeger UI sends them
/// (`fetchTraceSummaries` in jaeger-ui `src/api/v3/client.ts`).
#[tokio::test]
async fn camel_case_parameters_are_read_as_current_jaeger_ui_sends_them() {
    let reader = Arc::new(reader());
    let app = app_with(reader.clone(), &QueryConfig::default());
    let window =
        "query.startTimeMin=2018-12-13T00:00:00.000Z&query.startTimeMax=2018-12-14T00:00:00.000Z";
    let reply = get(
        &app,
        &format!(
            "/api/v3/trace-summaries?query.serviceName=my.service&query.operationName=I%27m%20a%20server%20span&{window}&query.searchDepth=7&query.durationMin=1ms&query.durationMax=1h&query.rawTraces=true&query.attributes=%7B%22error%22%3A%22true%22%7D"
        ),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(reply.json()["summaries"].as_array().unwrap().len(), 1);
    let q = reader.last_query.lock().unwrap().clone().unwrap();
    assert_eq!(q.service.as_deref(), Some("my.service"));
    assert_eq!(q.operation.as_deref(), Some("I'm a server span"));
    assert_eq!(
        (q.start_min_unix_nano, q.start_max_unix_nano),
        (1_544_659_200_000_000_000, 1_544_745_600_000_000_000)
    );
    assert_eq!(
        (q.duration_min_nano, q.duration_max_nano),
        (Some(1_000_000), Some(3_600_000_000_000))
    );
    assert_eq!(q.limit, 7);
    assert_eq!(q.tags, vec![("error".to_string(), "true".to_string())]);

    // The same search on /api/v3/traces.
    let reply = get(
        &app,
        &format!("/api/v3/traces?query.serviceName=my.service&{window}"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);

    // A bad value is named as it was sent.
    assert_v3_error(
        &get(
            &app,
            &format!("/api/v3/traces?{window}&query.searchDepth=x"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed parameter query.searchDepth: strconv.Atoi: parsing \"x\": invalid syntax",
    );
    assert_v3_error(
        &get(
            &app,
            &format!("/api/v3/traces?{window}&query.durationMax=5"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed parameter query.durationMax: time: missing unit in duration \"5\"",
    );
    assert_v3_error(
        &get(
            &app,
            &format!("/api/v3/traces?{window}&query.rawTraces=maybe"),
        )
        .await,
        StatusCode::BAD_REQUEST,
        "malformed parameter query.rawTraces: strconv.ParseBool: parsing \"maybe\": invalid syntax",
    );
    let bad = get(
        &app,
        "/api/v3/trace-summaries?query.startTimeMin=yesterday&query.startTimeMax=2018-12-14T00:00:00Z",
    )
    .await;
    assert_eq!(bad.status, StatusCode::BAD_REQUEST, "{}", bad.body);
    assert!(
        bad.body
            .contains("malformed parameter query.startTimeMin: parsing time"),
        "{}",
        bad.body
    );

    // A trace by id, with its window and raw flag in camelCase.
    let ok = get(
        &app,
        &format!("/api/v3/traces/{T}?startTime=2018-12-13T00:00:00Z&endTime=2018-12-14T00:00:00Z&rawTraces=true"),
    )
    .await;
    assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
    let bad = get(&app, &format!("/api/v3/traces/{T}?endTime=tomorrow")).await;
    assert!(
        bad.body
            .contains("malformed parameter endTime: parsing time \\\"tomorrow\\\""),
        "{}",
        bad.body
    );
    assert_v3_error(
        &get(&app, &format!("/api/v3/traces/{T}?rawTraces=maybe")).await,
        StatusCode::BAD_REQUEST,
        "malformed parameter rawTraces: strconv.ParseBool: parsing \"maybe\": invalid syntax",
    );
}

#[tokio::test]
async fn one_parameter_under_two_names_must_agree() {
    let reader = Arc::new(reader());
    let app = app_with(reader.clone(), &QueryConfig::default());
    let window =
        "query.start_time_min=2018-12-13T00:00:00Z&query.start_time_max=2018-12-14T00:00:00Z";
    // The same value twice is one parameter.
    let reply = get(
        &app,
        &format!("/api/v3/traces?{window}&query.startTimeMin=2018-12-13T00:00:00Z&query.serviceName=my.service&query.service_name=my.service"),
    )
    .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    // Two values: (path and query, then the two as the message names them).
    let search = format!("/api/v3/traces?{window}");
    let cases = [
        (
            format!("/api/v3/trace-summaries?{window}&query.serviceName=a&query.service_name=b"),
            r#"query.serviceName="a" and query.service_name="b""#,
        ),
        (
            format!("{search}&query.startTimeMin=2018-12-12T00:00:00Z"),
            r#"query.startTimeMin="2018-12-12T00:00:00Z" and query.start_time_min="2018-12-13T00:00:00Z""#,
        ),
        (
            format!("{search}&query.search_depth=5&query.num_traces=20"),
            r#"query.search_depth="5" and query.num_traces="20""#,
        ),
        (
            format!("{search}&query.operationName=a&query.span_name=b"),
            r#"query.operationName="a" and query.span_name="b""#,
        ),
        (
            format!("/api/v3/traces/{T}?rawTraces=true&raw_traces=false"),
            r#"rawTraces="true" and raw_traces="false""#,
        ),
        (
            "/api/v3/operations?service=my.service&spanKind=server&span_kind=client".to_string(),
            r#"spanKind="server" and span_kind="client""#,
        ),
        (
            "/api/v3/dependencies?startTime=2024-12-31T23:00:00Z&start_time=2024-12-31T22:00:00Z&endTime=2025-01-01T00:00:00Z".to_string(),
            r#"startTime="2024-12-31T23:00:00Z" and start_time="2024-12-31T22:00:00Z""#,
        ),
    ];
    for (uri, both) in cases {
        assert_v3_error(
            &get(&app, &uri).await,
            StatusCode::BAD_REQUEST,
            &format!("conflicting parameters {both}: two spellings of one parameter; send one"),
        );
    }
}

/// `/api/v3/traces/{id}` as Jaeger's gateway writes OTLP JSON: defaults left out (a
/// root has no `parentSpanId`), nothing `null`, `status`/`scope`/`resource` `{}` when
/// unset, and attribute values at their zero value kept.
#[tokio::test]
async fn otlp_json_leaves_out_defaults_as_jaeger_writes_them() {
    use meshtel_model::otlp::common::v1::{AnyValue, ArrayValue, KeyValueList, any_value::Value};
    use meshtel_model::otlp::trace::v1::span::{Event, Link};
    use meshtel_model::otlp::trace::v1::{ScopeSpans, Status};
    const ID: &str = "0af7651916cd43dd8448eb211c80319e";
    let root = span(ID, "00000000000000a1", "", "GET /", 2, 1_000, 5_000);
    let mut child = span(
        ID,
        "00000000000000a2",
        "00000000000000a1",
        "",
        0,
        2_000,
        3_000,
    );
    child.trace_state = "k=v".into();
    child.flags = 257;
    child.attributes = vec![
        str_attr("empty", ""),
        attr("zero", Value::IntValue(0)),
        attr("no", Value::BoolValue(false)),
        attr("none", Value::ArrayValue(ArrayValue::default())),
        // proto3 JSON's strings, where opentelemetry-proto's serde writes null; nested
        // too, and a value that is missing is {}.
        attr("nan", Value::DoubleValue(f64::NAN)),
        attr(
            "inf",
            Value::ArrayValue(ArrayValue {
                values: vec![
                    AnyValue {
                        value: Some(Value::DoubleValue(f64::INFINITY)),
                    },
                    AnyValue {
                        value: Some(Value::DoubleValue(1.5)),
                    },
                ],
            }),
        ),
        attr(
            "map",
            Value::KvlistValue(KeyValueList {
                values: vec![attr("low", Value::DoubleValue(f64::NEG_INFINITY))],
            }),
        ),
        meshtel_model::otlp::common::v1::KeyValue {
            key: "unset".into(),
            value: None,
            ..Default::default()
        },
    ];
    child.events = vec![Event {
        time_unix_nano: 2_500,
        name: "retry".into(),
        ..Default::default()
    }];
    child.links = vec![Link {
        trace_id: hex::decode(ID).unwrap(),
        span_id: hex::decode("00000000000000a1").unwrap(),
        ..Default::default()
    }];
    child.dropped_attributes_count = 3;
    child.status = Some(Status {
        message: "boom".into(),
        code: 2,
    });
    let mut unset = span(
        ID,
        "00000000000000a3",
        "00000000000000a1",
        "x",
        1,
        4_000,
        4_500,
    );
    unset.status = Some(Status::default());
    let mut resource = resource_spans("front", "", vec![root, child]);
    resource.scope_spans[0].scope = None;
    resource.scope_spans.push(ScopeSpans {
        scope: Some(meshtel_model::otlp::common::v1::InstrumentationScope {
            name: "lib".into(),
            version: "1.0".into(),
            ..Default::default()
        }),
        spans: vec![unset],
        schema_url: "https://opentelemetry.io/schemas/1.21.0".into(),
    });
    let mut bare = resource_spans("other", "", Vec::new());
    bare.resource = None;
    bare.scope_spans.clear();
    let app = app(MemoryReader {
        traces: vec![trace_of(vec![resource, bare])],
        ..Default::default()
    });
    let reply = get(&app, &format!("/api/v3/traces/{ID}")).await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    assert_eq!(
        reply.body,
        minify(
            r#"{"result":{"resourceSpans":[
            {"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"front"}}]},
             "scopeSpans":[
              {"scope":{},"spans":[
                {"traceId":"0af7651916cd43dd8448eb211c80319e","spanId":"00000000000000a1",
                 "name":"GET /","kind":2,"startTimeUnixNano":"1000","endTimeUnixNano":"5000",
                 "status":{}},
                {"traceId":"0af7651916cd43dd8448eb211c80319e","spanId":"00000000000000a2",
                 "traceState":"k=v","parentSpanId":"00000000000000a1","flags":257,
                 "startTimeUnixNano":"2000","endTimeUnixNano":"3000",
                 "attributes":[{"key":"empty","value":{"stringValue":""}},
                               {"key":"zero","value":{"intValue":"0"}},
                               {"key":"no","value":{"boolValue":false}},
                               {"key":"none","value":{"arrayValue":{"values":[]}}},
                               {"key":"nan","value":{"doubleValue":"NaN"}},
                               {"key":"inf","value":{"arrayValue":{"values":[
                                 {"doubleValue":"Infinity"},{"doubleValue":1.5}]}}},
                               {"key":"map","value":{"kvlistValue":{"values":[
                                 {"key":"low","value":{"doubleValue":"-Infinity"}}]}}},
                               {"key":"unset","value":{}}],
                 "droppedAttributesCount":3,
                 "events":[{"timeUnixNano":"2500","name":"retry"}],
                 "links":[{"traceId":"0af7651916cd43dd8448eb211c80319e","spanId":"00000000000000a1"}],
                 "status":{"message":"boom","code":2}}]},
              {"scope":{"name":"lib","version":"1.0"},"spans":[
                {"traceId":"0af7651916cd43dd8448eb211c80319e","spanId":"00000000000000a3",
                 "parentSpanId":"00000000000000a1","name":"x","kind":1,
                 "startTimeUnixNano":"4000","endTimeUnixNano":"4500","status":{}}],
               "schemaUrl":"https://opentelemetry.io/schemas/1.21.0"}]},
            {"resource":{},"scopeSpans":[]}]}}"#
        )
    );
    assert!(!reply.body.contains("null"), "{}", reply.body);
}
