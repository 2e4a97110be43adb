//! Every `/api/traces` search parameter end to end, the catalog endpoints, dependencies,
//! and the Jaeger API's error answers (status, headers and exact body, spec §1.2).

use std::collections::BTreeSet;

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as V;
use opentelemetry_proto::tonic::trace::v1::span::Event;
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, Status};
use serde_json::{Value, json};

use crate::roundtrip::jaeger_trace_id;
use crate::support::*;

const MS: u64 = 1_000_000;
const MIN: u64 = 60_000 * MS;

/// Percent-encodes a query value (everything but unreserved characters).
pub fn enc(text: &str) -> String {
    let mut out = String::new();
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The search data set: traces A–D of `front` (B and A call `back`), at known times.
struct Data {
    now_ns: u64,
    a: String,
    b: String,
    c: String,
    d: String,
}

async fn load(m: &Meshtel) -> Data {
    // Whole microseconds, so that µs bounds compare exactly.
    let now_ns = now_nanos() / 1_000 * 1_000;
    let ids: Vec<Vec<u8>> = (0..4).map(|_| random_trace_id()).collect();
    let (a, b, c, d) = (&ids[0], &ids[1], &ids[2], &ids[3]);

    // A: now−10 min, 5 ms, GET /a, region=eu, url with a colon; back child with an event.
    let a_root = random_span_id();
    let mut a_front = simple_span(a, &a_root, None, "GET /a", now_ns - 10 * MIN, 5 * MS);
    a_front.attributes = vec![
        kv("http.status_code", V::IntValue(200)),
        kv_str("region", "eu"),
        kv_str("url", "http://x:8080/a"),
    ];
    let mut a_back = simple_span(
        a,
        &random_span_id(),
        Some(&a_root),
        "db.query",
        now_ns - 10 * MIN + MS,
        2 * MS,
    );
    a_back.events = vec![Event {
        time_unix_nano: now_ns - 10 * MIN + MS,
        name: "row".into(),
        attributes: vec![kv_str("ev.key", "ev-val")],
        dropped_attributes_count: 0,
    }];
    // B: now−5 min, 50 ms, GET /b, 500 + ERROR; back child (client kind).
    let b_root = random_span_id();
    let mut b_front = simple_span(b, &b_root, None, "GET /b", now_ns - 5 * MIN, 50 * MS);
    b_front.attributes = vec![
        kv("http.status_code", V::IntValue(500)),
        kv_str("region", "us"),
    ];
    b_front.status = Some(Status {
        code: 2,
        message: "bad".into(),
    });
    let mut b_back = simple_span(
        b,
        &random_span_id(),
        Some(&b_root),
        "db.write",
        now_ns - 5 * MIN + MS,
        40 * MS,
    );
    b_back.kind = 3;
    // C: now−2 min, 500 ms, GET /a, on host h2 (a process tag).
    let c_front = simple_span(
        c,
        &random_span_id(),
        None,
        "GET /a",
        now_ns - 2 * MIN,
        500 * MS,
    );
    // D: now−3 h, 1 ms, GET /a.
    let d_front = simple_span(d, &random_span_id(), None, "GET /a", now_ns - 180 * MIN, MS);

    let mut c_resource: ResourceSpans = resource_spans("front", vec![c_front]);
    c_resource
        .resource
        .as_mut()
        .unwrap()
        .attributes
        .push(kv_str("host.name", "h2"));
    let request = ExportTraceServiceRequest {
        resource_spans: vec![
            resource_spans("front", vec![a_front, b_front, d_front]),
            c_resource,
            resource_spans("back", vec![a_back, b_back]),
        ],
    };
    export_grpc(m.grpc.unwrap(), request).await;
    let data = Data {
        now_ns,
        a: jaeger_trace_id(a),
        b: jaeger_trace_id(b),
        c: jaeger_trace_id(c),
        d: jaeger_trace_id(d),
    };
    wait_for_trace(m, &data.a, 2).await;
    data
}

/// Trace ids of a search; fails on a 0-span trace or a duplicate.
async fn search(m: &Meshtel, query: &str) -> Vec<String> {
    let body = get_json(&m.query_url(&format!("/api/traces?{query}"))).await;
    assert_eq!(body["errors"], Value::Null, "{query}: {body}");
    let ids: Vec<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            assert!(
                !t["spans"].as_array().unwrap().is_empty(),
                "a trace without spans"
            );
            t["traceID"].as_str().unwrap().to_string()
        })
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "{query}: duplicate traces {ids:?}");
    ids
}

fn set(ids: &[&String]) -> BTreeSet<String> {
    ids.iter().map(|s| (*s).clone()).collect()
}

async fn search_set(m: &Meshtel, query: &str) -> BTreeSet<String> {
    search(m, query).await.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_parameters_end_to_end() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    let data = load(&m).await;
    check_searches(&m, &data).await;
    // Same answers from the Parquet block after a flush.
    m.stop().await;
    let m = Meshtel::start(&dir, Role::Serve, &["--flush-interval", "1h"]).await;
    check_searches(&m, &data).await;
    m.stop().await;
}

async fn check_searches(m: &Meshtel, data: &Data) {
    let Data { a, b, c, d, now_ns } = data;
    let now_ns = *now_ns;
    let us = |ns: u64| ns / 1_000;
    let window = format!("start={}&end={}", us(now_ns - 240 * MIN), us(now_ns + MIN));

    // service: all four (D is inside the default 48 h window too).
    assert_eq!(
        search_set(m, &format!("service=front&{window}")).await,
        set(&[a, b, c, d])
    );
    assert_eq!(
        search_set(m, "service=front").await,
        set(&[a, b, c, d]),
        "default window"
    );
    assert_eq!(
        search_set(m, "service=front&lookback=1h").await,
        set(&[a, b, c, d]),
        "lookback ignored"
    );
    assert_eq!(
        search_set(m, &format!("service=back&{window}")).await,
        set(&[a, b])
    );
    assert!(search(m, "service=nobody").await.is_empty());

    // operation, exact.
    assert_eq!(
        search_set(
            m,
            &format!("service=front&operation={}&{window}", enc("GET /a"))
        )
        .await,
        set(&[a, c, d])
    );
    assert!(
        search(m, &format!("service=front&operation={}", enc("GET /")))
            .await
            .is_empty()
    );
    // A span of another service with that operation does not match.
    assert!(
        search(m, "service=front&operation=db.query")
            .await
            .is_empty()
    );

    // tags (JSON, values compared as strings), tag k:v, process tags and log fields.
    let tags = |json: &str| format!("service=front&tags={}&{window}", enc(json));
    assert_eq!(
        search_set(m, &tags(r#"{"http.status_code":"500"}"#)).await,
        set(&[b])
    );
    assert_eq!(search_set(m, &tags(r#"{"error":"true"}"#)).await, set(&[b]));
    assert_eq!(search_set(m, &tags(r#"{"region":"eu"}"#)).await, set(&[a]));
    assert!(
        search(m, &tags(r#"{"region":"eu","http.status_code":"500"}"#))
            .await
            .is_empty(),
        "one single span must match every tag"
    );
    assert_eq!(
        search_set(m, &tags(r#"{"host.name":"h2"}"#)).await,
        set(&[c])
    );
    assert_eq!(
        search_set(
            m,
            &format!("service=front&tag={}&{window}", enc("url:http://x:8080/a"))
        )
        .await,
        set(&[a]),
        "tag splits at the first colon"
    );
    assert_eq!(
        search_set(
            m,
            &format!("service=front&tag=region:eu&tag=http.status_code:200&{window}")
        )
        .await,
        set(&[a])
    );
    assert_eq!(
        search_set(
            m,
            &format!(
                "service=front&tag=region:us&tags={}&{window}",
                enc(r#"{"region":"eu"}"#)
            )
        )
        .await,
        set(&[a]),
        "tags override tag"
    );
    assert_eq!(
        search_set(
            m,
            &format!(
                "service=back&tags={}&{window}",
                enc(r#"{"ev.key":"ev-val"}"#)
            )
        )
        .await,
        set(&[a]),
        "log fields are searched"
    );

    // minDuration / maxDuration with units.
    let dur = |q: &str| format!("service=front&{q}&{window}");
    assert_eq!(search_set(m, &dur("minDuration=10ms")).await, set(&[b, c]));
    assert_eq!(
        search_set(m, &dur("minDuration=10ms&maxDuration=0.1s")).await,
        set(&[b])
    );
    assert_eq!(
        search_set(m, &dur(&format!("maxDuration={}", enc("1100µs")))).await,
        set(&[d])
    );
    assert_eq!(
        search_set(m, &dur(&format!("maxDuration={}", enc("1100μs")))).await,
        set(&[d])
    );
    assert_eq!(search_set(m, &dur("maxDuration=1100us")).await, set(&[d]));
    assert_eq!(
        search_set(m, &dur("minDuration=5ms&maxDuration=5ms")).await,
        set(&[a]),
        "bounds are inclusive"
    );
    assert_eq!(search_set(m, &dur("minDuration=1m")).await, BTreeSet::new());
    assert_eq!(
        search_set(m, &dur("minDuration=0.0001h")).await,
        set(&[c]),
        "0.36 s"
    );
    assert_eq!(
        search_set(m, &dur("minDuration=1s&maxDuration=0")).await,
        BTreeSet::new()
    );
    assert_eq!(
        search_set(m, &dur("minDuration&maxDuration")).await,
        set(&[a, b, c, d]),
        "bare keys"
    );

    // start / end in µs.
    assert_eq!(
        search_set(
            m,
            &format!(
                "service=front&start={}&end={}",
                us(now_ns - 15 * MIN),
                us(now_ns)
            )
        )
        .await,
        set(&[a, b, c])
    );
    assert_eq!(
        search_set(
            m,
            &format!(
                "service=front&start={}&end={}",
                us(now_ns - 240 * MIN),
                us(now_ns - 4 * MIN)
            )
        )
        .await,
        set(&[a, b, d])
    );
    assert_eq!(
        search_set(
            m,
            &format!(
                "service=front&start={}&end={}",
                us(now_ns - 5 * MIN),
                us(now_ns - 5 * MIN)
            )
        )
        .await,
        set(&[b]),
        "start and end are inclusive"
    );

    // limit keeps the newest traces.
    let newest2 = search(m, &format!("service=front&limit=2&{window}")).await;
    assert_eq!(
        newest2.iter().collect::<BTreeSet<_>>(),
        [b, c].into_iter().collect(),
        "{newest2:?}"
    );
    let newest1 = search(m, &format!("service=front&limit=1&{window}")).await;
    assert_eq!(newest1, vec![c.clone()]);
    assert_eq!(
        search(m, &format!("service=front&limit=0&{window}"))
            .await
            .len(),
        4,
        "0 = default 100"
    );

    // traceID, repeated; a missing one is reported in errors with 200.
    let missing = hex::encode(random_trace_id());
    let body = get_json(&m.query_url(&format!(
        "/api/traces?traceID={a}&traceID={}&traceID={missing}&service=ignored",
        b.to_uppercase()
    )))
    .await;
    let got: BTreeSet<String> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["traceID"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(got, set(&[a, b]));
    assert_eq!(
        body["errors"],
        json!([{"msg": "trace not found", "traceID": missing}])
    );
    assert_eq!(body["total"], 0);

    // The whole trace comes back, not just the matching span.
    let body = get_json(&m.query_url(&format!(
        "/api/traces?service=back&operation=db.query&{window}"
    )))
    .await;
    assert_eq!(body["data"][0]["spans"].as_array().unwrap().len(), 2);

    // Catalog.
    let services = get_json(&m.query_url("/api/services")).await;
    let list: BTreeSet<&str> = services["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(list, ["back", "front"].into_iter().collect());
    assert_eq!(services["total"], 2);
    assert_eq!(services["errors"], Value::Null);

    let ops = get_json(&m.query_url("/api/services/front/operations")).await;
    let list: BTreeSet<&str> = ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(list, ["GET /a", "GET /b"].into_iter().collect());
    assert_eq!(ops["total"], 2);
    let none = get_json(&m.query_url("/api/services/nobody/operations")).await;
    assert_eq!(none["data"], json!([]));

    let ops = get_json(&m.query_url("/api/operations?service=back")).await;
    let mut list: Vec<(String, String)> = ops["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| {
            (
                o["name"].as_str().unwrap().into(),
                o["spanKind"].as_str().unwrap().into(),
            )
        })
        .collect();
    list.sort();
    assert_eq!(
        list,
        [
            ("db.query".to_string(), "server".to_string()),
            ("db.write".into(), "client".into())
        ]
    );
    assert_eq!(ops["total"], 2);
    let server = get_json(&m.query_url("/api/operations?service=back&spanKind=server")).await;
    assert_eq!(
        server["data"],
        json!([{"name": "db.query", "spanKind": "server"}])
    );
    assert_eq!(server["total"], 1);
    let bogus = get_json(&m.query_url("/api/operations?service=back&spanKind=bogus")).await;
    assert_eq!(bogus["data"], json!([]));

    let v3 = get_json(&m.query_url("/api/v3/services")).await;
    let list: BTreeSet<&str> = v3["services"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(list, ["back", "front"].into_iter().collect());
    let v3ops = get_json(&m.query_url("/api/v3/operations?service=back&span_kind=client")).await;
    assert_eq!(
        v3ops["operations"],
        json!([{"name": "db.write", "spanKind": "client"}])
    );

    // Trace summaries, as Jaeger UI ≥ 2.20 searches: B alone matches `GET /b`.
    let window = "query.start_time_min=1970-01-01T00:00:00.000Z&query.start_time_max=2100-01-01T00:00:00.000Z";
    let summaries = get_json(&m.query_url(&format!(
        "/api/v3/trace-summaries?query.service_name=front&query.span_name=GET%20%2Fb&{window}&query.num_traces=20"
    )))
    .await;
    let b_start = now_ns - 5 * MIN;
    assert_eq!(
        summaries,
        json!({"summaries": [{
            "traceId": format!("{b:0>32}"),
            "rootServiceName": "front",
            "rootOperationName": "GET /b",
            "minStartTimeUnixNano": b_start.to_string(),
            "maxEndTimeUnixNano": (b_start + 50 * MS).to_string(),
            "spanCount": 2,
            "errorSpanCount": 1,
            "orphanSpanCount": 0,
            "services": [
                {"name": "back", "spanCount": 1, "errorSpanCount": 0},
                {"name": "front", "spanCount": 1, "errorSpanCount": 1}
            ]
        }]})
    );
    let all = get_json(&m.query_url(&format!(
        "/api/v3/trace-summaries?query.service_name=front&{window}"
    )))
    .await;
    assert_eq!(all["summaries"].as_array().unwrap().len(), 4, "{all}");
    let none = get_json(&m.query_url(&format!(
        "/api/v3/trace-summaries?query.service_name=nobody&{window}"
    )))
    .await;
    assert_eq!(none, json!({"summaries": []}));
    let deps = get_json(&m.query_url(
        "/api/v3/dependencies?start_time=1970-01-01T00:00:00Z&end_time=2100-01-01T00:00:00Z",
    ))
    .await;
    assert_eq!(
        deps,
        json!({"dependencies": [{"parent": "front", "child": "back", "callCount": "2"}]})
    );

    // Dependencies: front → back twice (A and B) within the hour, nothing in a window
    // before the data.
    let end_ms = now_ns / MS + 60_000;
    let deps = get_json(&m.query_url(&format!(
        "/api/dependencies?endTs={end_ms}&lookback=3600000"
    )))
    .await;
    assert_eq!(
        deps["data"],
        json!([{"parent": "front", "child": "back", "callCount": 2}]),
        "{deps}"
    );
    assert_eq!(deps["errors"], Value::Null);
    let deps =
        get_json(&m.query_url(&format!("/api/dependencies?endTs={end_ms}&lookback=420000"))).await;
    assert_eq!(
        deps["data"],
        json!([{"parent": "front", "child": "back", "callCount": 1}]),
        "only B in 7 min: {deps}"
    );
    let deps = get_json(&m.query_url(&format!(
        "/api/dependencies?endTs={}&lookback=3600000",
        now_ns / MS - 100 * 60_000
    )))
    .await;
    assert_eq!(deps["data"], json!([]));
    let deps = get_json(&m.query_url(&format!(
        "/api/dependencies?endTs={end_ms}&lookback=3600000&service=back"
    )))
    .await;
    assert_eq!(deps["data"].as_array().unwrap().len(), 1);
    let deps = get_json(&m.query_url(&format!(
        "/api/dependencies?endTs={end_ms}&lookback=3600000&service=other"
    )))
    .await;
    assert_eq!(deps["data"], json!([]));
    let deps = get_json(&m.query_url("/api/dependencies")).await;
    assert_eq!(
        deps["data"].as_array().unwrap().len(),
        1,
        "default: now, 24 h"
    );
}

/// Asserts a Jaeger v1 error: status, Go `http.Error` headers, exact body.
pub async fn assert_api_error(m: &Meshtel, path: &str, status: u16, msg: &str) {
    let reply = get(&m.query_url(path)).await;
    assert_eq!(reply.status, status, "GET {path}: {}", reply.text());
    assert_eq!(
        reply.content_type, "text/plain; charset=utf-8",
        "GET {path}"
    );
    assert_eq!(
        reply
            .headers
            .get("x-content-type-options")
            .map(|v| v.to_str().unwrap()),
        Some("nosniff"),
        "GET {path}"
    );
    // Field order as Go writes the struct (serde_json's `json!` would sort the keys).
    let expected = format!(
        "{{\"data\":null,\"total\":0,\"limit\":0,\"offset\":0,\"errors\":[{{\"code\":{status},\"msg\":{}}}]}}\n",
        Value::from(msg)
    );
    assert_eq!(reply.text(), expected, "GET {path}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jaeger_api_errors_have_exact_status_and_body() {
    let dir = TestDir::new();
    let m = Meshtel::serve(&dir).await;
    let e = |path: &'static str, status: u16, msg: &'static str| (path, status, msg);
    let cases = [
        e("/api/traces", 400, "parameter 'service' is required"),
        e(
            "/api/traces?service=",
            400,
            "parameter 'service' is required",
        ),
        e(
            "/api/traces?service=s&start=x",
            400,
            r#"unable to parse param 'start': strconv.ParseInt: parsing "x": invalid syntax"#,
        ),
        e(
            "/api/traces?service=s&end=1.5",
            400,
            r#"unable to parse param 'end': strconv.ParseInt: parsing "1.5": invalid syntax"#,
        ),
        e(
            "/api/traces?service=s&minDuration=10",
            400,
            r#"unable to parse param 'minDuration': time: missing unit in duration "10""#,
        ),
        e(
            "/api/traces?service=s&maxDuration=1d",
            400,
            r#"unable to parse param 'maxDuration': time: unknown unit "d" in duration "1d""#,
        ),
        e(
            "/api/traces?service=s&minDuration=abc",
            400,
            r#"unable to parse param 'minDuration': time: invalid duration "abc""#,
        ),
        e(
            "/api/traces?service=s&minDuration=2s&maxDuration=1s",
            400,
            "'maxDuration' should be greater than 'minDuration'",
        ),
        e(
            "/api/traces?service=s&tags=%7B%22a%22%3A1%7D",
            400,
            "malformed 'tags' parameter, cannot unmarshal JSON: json: cannot unmarshal number into Go value of type string",
        ),
        e(
            "/api/traces?service=s&tag=nocolon",
            400,
            "malformed 'tag' parameter, expecting key:value, received: nocolon",
        ),
        e(
            "/api/traces?service=s&limit=abc",
            400,
            r#"unable to parse param 'limit': strconv.ParseInt: parsing "abc": invalid syntax"#,
        ),
        e(
            "/api/traces?service=s&limit=99999999999",
            400,
            r#"unable to parse param 'limit': strconv.ParseInt: parsing "99999999999": value out of range"#,
        ),
        e(
            "/api/traces?service=s&raw=maybe",
            400,
            r#"unable to parse param 'raw': strconv.ParseBool: parsing "maybe": invalid syntax"#,
        ),
        e(
            "/api/traces/123456789012345678901234567890123",
            400,
            "TraceID cannot be longer than 32 hex characters: 123456789012345678901234567890123",
        ),
        e(
            "/api/traces/00000000000000000000000000000abc",
            404,
            "trace not found",
        ),
        e("/api/traces/abc", 404, "trace not found"),
        e("/api/operations", 400, "parameter 'service' is required"),
        e(
            "/api/dependencies?endTs=x",
            400,
            r#"unable to parse param 'endTs': strconv.ParseInt: parsing "x": invalid syntax"#,
        ),
        e(
            "/api/dependencies?lookback=1h",
            400,
            r#"unable to parse param 'lookback': strconv.ParseInt: parsing "1h": invalid syntax"#,
        ),
    ];
    for (path, status, msg) in cases {
        assert_api_error(&m, path, status, msg).await;
    }
    // Prefixed messages whose tail is the hex parser's own wording.
    let reply = get(&m.query_url("/api/traces?traceID=xyz")).await;
    assert_eq!(reply.status, 400);
    let body = reply.json();
    assert!(
        body["errors"][0]["msg"]
            .as_str()
            .unwrap()
            .starts_with("cannot parse traceID param: "),
        "{body}"
    );
    let reply = get(&m.query_url("/api/traces/not-hex")).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["errors"][0]["code"], 400);

    // v3 errors.
    let reply = get(&m.query_url("/api/v3/traces/zz")).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"]["httpCode"], 400);
    let reply = get(&m.query_url(&format!(
        "/api/v3/traces/{}",
        hex::encode(random_trace_id())
    )))
    .await;
    assert_eq!(reply.status, 404, "{}", reply.text());
    assert_eq!(reply.json()["error"]["httpCode"], 404);

    // Empty store: lists are [] and never null.
    let services = get_json(&m.query_url("/api/services")).await;
    assert_eq!(
        services,
        json!({"data": [], "total": 0, "limit": 0, "offset": 0, "errors": null})
    );
    let services = get_json(&m.query_url("/api/v3/services")).await;
    assert_eq!(services, json!({"services": []}));
    let found = get_json(&m.query_url("/api/traces?service=nobody")).await;
    assert_eq!(
        found,
        json!({"data": [], "total": 0, "limit": 0, "offset": 0, "errors": null})
    );
    m.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_base_path_prefixes_every_route() {
    let dir = TestDir::new();
    let m = Meshtel::start(&dir, Role::Serve, &["--query-base-path", "/jaeger"]).await;
    let id = random_trace_id();
    export_grpc(
        m.grpc.unwrap(),
        ExportTraceServiceRequest {
            resource_spans: vec![resource_spans(
                "based",
                vec![simple_span(
                    &id,
                    &random_span_id(),
                    None,
                    "op",
                    now_nanos() - MIN,
                    MS,
                )],
            )],
        },
    )
    .await;
    let hex_id = jaeger_trace_id(&id);
    let trace = get_json(&m.query_url(&format!("/jaeger/api/traces/{hex_id}"))).await;
    assert_eq!(trace["data"][0]["traceID"], hex_id.as_str());
    let services = get_json(&m.query_url("/jaeger/api/services")).await;
    assert_eq!(services["data"], json!(["based"]));
    let v3 = get_json(&m.query_url("/jaeger/api/v3/services")).await;
    assert_eq!(v3["services"], json!(["based"]));
    assert_eq!(
        get(&m.query_url("/api/services")).await.status,
        404,
        "no route outside the base path"
    );
    // But the probes, at the root.
    for probe in ["/healthz", "/readyz"] {
        let reply = get(&m.query_url(probe)).await;
        assert_eq!(
            (reply.status, reply.text()),
            (200, "ok".to_owned()),
            "{probe}"
        );
    }
    m.stop().await;
}
