use meshtel_model::otlp::common::v1::KeyValue;
use meshtel_model::otlp::common::v1::any_value::Value as Any;
use meshtel_model::otlp::trace::v1::{ResourceSpans, Span};

use super::convert::*;
use crate::error::Error;

/// The example of spec §5.2, verbatim.
const SPEC_EXAMPLE: &str = r#"[{"id":"352bff9a74ca9ad2","traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c","name":"get /api",
  "timestamp":1556604172355737,"duration":1431,"kind":"SERVER",
  "localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},
  "remoteEndpoint":{"ipv4":"172.19.0.2","port":58648},"tags":{"http.method":"GET","http.path":"/api"}}]"#;

fn convert(json: &str) -> Result<Vec<ResourceSpans>, Error> {
    zipkin_spans_to_otlp(decode_zipkin_json(json.as_bytes())?)
}

fn first_span(groups: &[ResourceSpans]) -> &Span {
    &groups[0].scope_spans[0].spans[0]
}

pub(super) fn attr(attributes: &[KeyValue], key: &str) -> Option<Any> {
    attributes
        .iter()
        .find(|kv| kv.key == key)
        .and_then(|kv| kv.value.clone())
        .and_then(|v| v.value)
}

fn error_text(json: &str) -> String {
    convert(json).unwrap_err().to_string()
}

#[test]
fn spec_example_maps_field_by_field() {
    let groups = convert(SPEC_EXAMPLE).unwrap();
    assert_eq!(groups.len(), 1);
    let resource = groups[0].resource.as_ref().unwrap();
    assert_eq!(resource.attributes.len(), 1);
    assert_eq!(
        attr(&resource.attributes, "service.name"),
        Some(Any::StringValue("backend".into()))
    );
    assert_eq!(groups[0].scope_spans.len(), 1);
    assert_eq!(groups[0].scope_spans[0].scope, None);
    let span = first_span(&groups);
    assert_eq!(
        hex::encode(&span.trace_id),
        "00000000000000005af7183fb1d4cf5f"
    );
    assert_eq!(hex::encode(&span.span_id), "352bff9a74ca9ad2");
    assert_eq!(hex::encode(&span.parent_span_id), "6b221d5bc9e6496c");
    assert_eq!(span.name, "get /api");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_556_604_172_355_737_000);
    assert_eq!(
        span.end_time_unix_nano,
        1_556_604_172_355_737_000 + 1_431_000
    );
    assert_eq!(span.trace_state, "");
    assert_eq!(span.status, None);
    assert!(span.events.is_empty());
    let keys: Vec<_> = span.attributes.iter().map(|kv| kv.key.as_str()).collect();
    assert_eq!(
        keys,
        [
            "http.method",
            "http.path",
            "net.host.ip",
            "net.host.port",
            "net.peer.ip",
            "net.peer.port"
        ]
    );
    assert_eq!(
        attr(&span.attributes, "http.method"),
        Some(Any::StringValue("GET".into()))
    );
    assert_eq!(
        attr(&span.attributes, "http.path"),
        Some(Any::StringValue("/api".into()))
    );
    assert_eq!(
        attr(&span.attributes, "net.host.ip"),
        Some(Any::StringValue("192.168.99.1".into()))
    );
    assert_eq!(
        attr(&span.attributes, "net.host.port"),
        Some(Any::IntValue(3306))
    );
    assert_eq!(
        attr(&span.attributes, "net.peer.ip"),
        Some(Any::StringValue("172.19.0.2".into()))
    );
    assert_eq!(
        attr(&span.attributes, "net.peer.port"),
        Some(Any::IntValue(58648))
    );
}

#[test]
fn groups_spans_by_local_service() {
    let json = r#"[
      {"traceId":"1","id":"1","localEndpoint":{"serviceName":"a"}},
      {"traceId":"1","id":"2","localEndpoint":{"serviceName":"b"}},
      {"traceId":"1","id":"3","localEndpoint":{"serviceName":"a"}},
      {"traceId":"1","id":"4"}]"#;
    let groups = convert(json).unwrap();
    assert_eq!(groups.len(), 3);
    let span_counts: Vec<_> = groups
        .iter()
        .map(|g| g.scope_spans[0].spans.len())
        .collect();
    assert_eq!(span_counts, [2, 1, 1]);
    assert!(groups[2].resource.as_ref().unwrap().attributes.is_empty());
}

/// A list whose every span names another service and scope is grouped in time linear
/// in its length: 40,000 spans took minutes of one core when each group was found by
/// comparing with every group before it.
#[test]
fn many_services_and_scopes_group_in_linear_time() {
    let spans: Vec<String> = (0..40_000)
        .map(|i| {
            format!(
                r#"{{"traceId":"1","id":"{:x}","localEndpoint":{{"serviceName":"svc-{i}"}},"tags":{{"otel.scope.name":"lib-{}"}}}}"#,
                i + 1,
                i % 2
            )
        })
        .collect();
    let json = format!("[{}]", spans.join(","));
    let started = std::time::Instant::now();
    let groups = convert(&json).unwrap();
    let took = started.elapsed();
    assert_eq!(groups.len(), 40_000);
    assert_eq!(groups[7].scope_spans.len(), 1);
    assert_eq!(
        groups[7].scope_spans[0].scope.as_ref().unwrap().name,
        "lib-1"
    );
    assert!(
        took < std::time::Duration::from_secs(5),
        "grouping took {took:?}"
    );
    // Spans of one service and scope still share their group, in the order sent.
    let json = r#"[
      {"traceId":"1","id":"1","localEndpoint":{"serviceName":"a"},"tags":{"otel.scope.name":"x"}},
      {"traceId":"1","id":"2","localEndpoint":{"serviceName":"a"},"tags":{"otel.scope.name":"y"}},
      {"traceId":"1","id":"3","localEndpoint":{"serviceName":"a"},"tags":{"otel.scope.name":"x"}}]"#;
    let groups = convert(json).unwrap();
    assert_eq!(groups.len(), 1);
    let scopes: Vec<(&str, usize)> = groups[0]
        .scope_spans
        .iter()
        .map(|s| (s.scope.as_ref().unwrap().name.as_str(), s.spans.len()))
        .collect();
    assert_eq!(scopes, [("x", 2), ("y", 1)]);
}

#[test]
fn id_padding_and_parent_rules() {
    let groups = convert(
        r#"[{"traceId":"abc","id":"12","parentId":"0000000000000000"},
            {"traceId":"0000000000000000000000000000000a","id":"13","parentId":"13"},
            {"traceId":"1234567890abcdef1","id":"14","parentId":""}]"#,
    )
    .unwrap();
    let spans = &groups[0].scope_spans[0].spans;
    assert_eq!(
        hex::encode(&spans[0].trace_id),
        "00000000000000000000000000000abc"
    );
    assert_eq!(hex::encode(&spans[0].span_id), "0000000000000012");
    assert!(spans[0].parent_span_id.is_empty());
    assert_eq!(
        hex::encode(&spans[1].trace_id),
        "0000000000000000000000000000000a"
    );
    assert!(spans[1].parent_span_id.is_empty());
    assert_eq!(
        hex::encode(&spans[2].trace_id),
        "0000000000000001234567890abcdef1"
    );
}

#[test]
fn bad_ids_name_the_index_and_field() {
    let ok = r#"{"traceId":"1","id":"1"}"#;
    let text = error_text(&format!(
        r#"[{ok},{{"traceId":"5AF7183FB1D4CF5F","id":"1"}}]"#
    ));
    assert!(text.starts_with("spans[1].traceId:"), "{text}");
    assert!(text.contains("lower-hex"), "{text}");
    assert!(
        error_text(r#"[{"traceId":"0000","id":"1"}]"#)
            .contains("spans[0].traceId: must not be all zeros")
    );
    assert!(
        error_text(r#"[{"traceId":"1","id":"0"}]"#).contains("spans[0].id: must not be all zeros")
    );
    assert!(error_text(r#"[{"traceId":"1"}]"#).contains("spans[0].id: is required"));
    assert!(error_text(r#"[{"id":"1"}]"#).contains("spans[0].traceId: is required"));
    assert!(error_text(r#"[{"traceId":"1","id":"12345678901234567"}]"#).contains("spans[0].id:"));
    assert!(
        error_text(r#"[{"traceId":"1","id":"1","parentId":"xyz"}]"#).contains("spans[0].parentId:")
    );
    let too_long = r#"[{"traceId":"1","id":"1","unknown":1},{"traceId":"123456789012345678901234567890123","id":"1"}]"#;
    assert!(error_text(too_long).contains("spans[1].traceId"));
    assert!(error_text(r#"[{"traceId":"1","id":"1","tags":{"n":1}}]"#).contains("spans[0].tags.n"));
    assert!(error_text(r#"[{"traceId":"1","id":"1","kind":"LOCAL"}]"#).contains("spans[0].kind"));
}

#[test]
fn undecodable_bodies_are_errors() {
    assert!(matches!(convert("not json"), Err(Error::DecodeJson(_))));
    assert!(matches!(
        convert(r#"{"traceId":"1"}"#),
        Err(Error::DecodeJson(_))
    ));
    assert!(convert("[]").unwrap().is_empty());
}

#[test]
fn kind_status_and_trace_state_come_from_tags() {
    let groups = convert(
        r#"[{"traceId":"1","id":"1","name":"GET /Users","kind":"CLIENT","tags":{"error":"true","keep":"x"}},
            {"traceId":"1","id":"2","tags":{"span.kind":"internal","otel.status_code":"OK","otel.status_description":"fine","w3c.tracestate":"k=v"}},
            {"traceId":"1","id":"3","kind":"PRODUCER","tags":{"error":"timeout"}},
            {"traceId":"1","id":"4","kind":"CONSUMER","tags":{"otel.status_code":"ERROR"}},
            {"traceId":"1","id":"5","tags":{"span.kind":"server"}}]"#,
    )
    .unwrap();
    let spans = &groups[0].scope_spans[0].spans;
    assert_eq!(spans[0].name, "get /users");
    assert_eq!(spans[0].kind, 3);
    assert_eq!(spans[0].status.as_ref().unwrap().code, 2);
    assert_eq!(attr(&spans[0].attributes, "error"), None);
    assert_eq!(
        attr(&spans[0].attributes, "keep"),
        Some(Any::StringValue("x".into()))
    );

    assert_eq!(spans[1].kind, 1);
    let status = spans[1].status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (1, "fine"));
    assert_eq!(spans[1].trace_state, "k=v");
    assert!(
        spans[1]
            .attributes
            .iter()
            .all(|kv| !kv.key.starts_with("otel.status") && kv.key != "span.kind")
    );

    assert_eq!(spans[2].kind, 4);
    assert_eq!(spans[2].status.as_ref().unwrap().code, 2);
    assert_eq!(
        attr(&spans[2].attributes, "error"),
        Some(Any::StringValue("timeout".into()))
    );

    assert_eq!(spans[3].kind, 5);
    assert_eq!(spans[3].status.as_ref().unwrap().code, 2);
    assert_eq!(spans[4].kind, 0);
}

#[test]
fn endpoints_map_to_net_attributes() {
    let groups = convert(
        r#"[{"traceId":"1","id":"1","localEndpoint":{"serviceName":"svc","ipv6":"::1"},
             "remoteEndpoint":{"serviceName":"db","ipv6":"fe80::1","port":0}}]"#,
    )
    .unwrap();
    let span = first_span(&groups);
    assert_eq!(
        attr(&span.attributes, "net.host.ip"),
        Some(Any::StringValue("::1".into()))
    );
    assert_eq!(
        attr(&span.attributes, "peer.service"),
        Some(Any::StringValue("db".into()))
    );
    assert_eq!(
        attr(&span.attributes, "net.peer.ip"),
        Some(Any::StringValue("fe80::1".into()))
    );
    assert_eq!(attr(&span.attributes, "net.peer.port"), None);
    assert_eq!(attr(&span.attributes, "net.host.port"), None);
    // An address that does not parse is dropped, as Zipkin drops it.
    let groups = convert(
        r#"[{"traceId":"1","id":"1","localEndpoint":{"serviceName":"svc","ipv4":"999.1.1.1","ipv6":"2001:db8::1"},
             "remoteEndpoint":{"serviceName":"db","ipv4":"not-an-ip"}}]"#,
    )
    .unwrap();
    let span = first_span(&groups);
    assert_eq!(
        attr(&span.attributes, "net.host.ip"),
        Some(Any::StringValue("2001:db8::1".into()))
    );
    assert_eq!(attr(&span.attributes, "net.peer.ip"), None);
}

#[test]
fn timestamps_and_annotations() {
    let groups = convert(
        r#"[{"traceId":"1","id":"1","duration":5,
             "annotations":[{"timestamp":20,"value":"ws"},{"timestamp":10,"value":"cs"},{"timestamp":10,"value":"cs"},
                            {"timestamp":30,"value":"retry|{\"attempt\":2,\"why\":\"a|b\"}|1"}]},
            {"traceId":"1","id":"2","timestamp":-5,"duration":-3}]"#,
    )
    .unwrap();
    let spans = &groups[0].scope_spans[0].spans;
    assert_eq!(spans[0].start_time_unix_nano, 0);
    assert_eq!(spans[0].end_time_unix_nano, 5_000);
    assert_eq!(
        attr(&spans[0].attributes, START_TIME_ABSENT_ATTRIBUTE),
        Some(Any::BoolValue(true))
    );
    let names: Vec<_> = spans[0].events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["cs", "ws", "retry"]);
    assert_eq!(spans[0].events[0].time_unix_nano, 10_000);
    let retry = &spans[0].events[2];
    assert_eq!(attr(&retry.attributes, "attempt"), Some(Any::IntValue(2)));
    assert_eq!(
        attr(&retry.attributes, "why"),
        Some(Any::StringValue("a|b".into()))
    );
    assert_eq!(retry.dropped_attributes_count, 1);
    assert_eq!(
        (spans[1].start_time_unix_nano, spans[1].end_time_unix_nano),
        (0, 0)
    );
    // Negative or zero is no timestamp, as Zipkin reads it.
    assert_eq!(
        attr(&spans[1].attributes, START_TIME_ABSENT_ATTRIBUTE),
        Some(Any::BoolValue(true))
    );
    let zero = convert(r#"[{"traceId":"1","id":"3","timestamp":0,"duration":5}]"#).unwrap();
    assert_eq!(
        attr(&first_span(&zero).attributes, START_TIME_ABSENT_ATTRIBUTE),
        Some(Any::BoolValue(true))
    );
}

#[test]
fn times_past_year_2262_are_refused_naming_the_value() {
    // Nanoseconds sent as microseconds: refused with the value sent, not a clamped one.
    let text =
        error_text(r#"[{"traceId":"1","id":"1","timestamp":1796534210976270000,"duration":5}]"#);
    assert!(
        text.contains("spans[0].timestamp: 1796534210976270000 µs is past year 2262"),
        "{text}"
    );
    let text =
        error_text(r#"[{"traceId":"1","id":"1","timestamp":10,"duration":9223372036854775807}]"#);
    assert!(
        text.contains("spans[0].duration: 9223372036854775807 µs"),
        "{text}"
    );
    // Past what a u64 holds: read as a float by the JSON reader, refused all the same.
    let text =
        error_text(r#"[{"traceId":"1","id":"1","timestamp":10,"duration":18446744073709551616}]"#);
    assert!(text.contains("spans[0].duration: "), "{text}");
    let text = error_text(
        r#"[{"traceId":"1","id":"1","timestamp":10,"duration":5,
             "annotations":[{"timestamp":10,"value":"cs"},{"timestamp":9223372036854775807,"value":"x"}]}]"#,
    );
    assert!(
        text.contains("spans[0].annotations[1].timestamp: "),
        "{text}"
    );
    // The largest time that fits is stored to the nanosecond.
    let groups =
        convert(r#"[{"traceId":"1","id":"1","timestamp":9223372036854775,"duration":1}]"#).unwrap();
    assert_eq!(
        first_span(&groups).start_time_unix_nano,
        9_223_372_036_854_775_000
    );
}

#[test]
fn a_span_of_many_resource_tags_converts_in_linear_time() {
    // 200,000 resource tags: comparing each with all before it took minutes.
    let tags: serde_json::Map<String, serde_json::Value> =
        (0..200_000).map(|i| (format!("os.t{i}"), serde_json::Value::from("v"))).collect();
    let list = serde_json::json!([{"traceId": "1", "id": "1",
        "localEndpoint": {"serviceName": "svc"}, "tags": tags}]);
    let started = std::time::Instant::now();
    let groups = convert(&list.to_string()).unwrap();
    let attributes = &groups[0].resource.as_ref().unwrap().attributes;
    assert_eq!(attributes.len(), 200_001);
    assert_eq!(attributes[0].key, "service.name");
    assert!(started.elapsed() < std::time::Duration::from_secs(20), "{:?}", started.elapsed());
}

#[test]
fn spans_of_one_service_with_other_resource_tags_get_their_own_resource() {
    let groups = convert(
        r#"[{"traceId":"1","id":"1","localEndpoint":{"serviceName":"svc"},"tags":{"host.name":"pod-1"}},
            {"traceId":"1","id":"2","localEndpoint":{"serviceName":"svc"},
             "tags":{"host.name":"pod-2","k8s.pod.name":"svc-7d9f"}},
            {"traceId":"1","id":"3","localEndpoint":{"serviceName":"svc"},"tags":{"host.name":"pod-1"}}]"#,
    )
    .unwrap();
    assert_eq!(groups.len(), 2);
    let resource =
        |i: usize, key: &str| attr(&groups[i].resource.as_ref().unwrap().attributes, key);
    assert_eq!(
        resource(0, "host.name"),
        Some(Any::StringValue("pod-1".into()))
    );
    assert_eq!(groups[0].scope_spans[0].spans.len(), 2);
    assert_eq!(
        resource(1, "host.name"),
        Some(Any::StringValue("pod-2".into()))
    );
    assert_eq!(
        resource(1, "k8s.pod.name"),
        Some(Any::StringValue("svc-7d9f".into()))
    );
    assert_eq!(
        resource(1, "service.name"),
        Some(Any::StringValue("svc".into()))
    );
}

#[test]
fn resource_and_scope_tags_move_out_of_span_attributes() {
    let groups = convert(
        r#"[{"traceId":"1","id":"1","timestamp":1,"localEndpoint":{"serviceName":"svc"},
             "tags":{"host.name":"h1","service.version":"1.2","otel.library.name":"lib","otel.library.version":"0.1","x":"y"}}]"#,
    )
    .unwrap();
    let resource = groups[0].resource.as_ref().unwrap();
    assert_eq!(
        attr(&resource.attributes, "host.name"),
        Some(Any::StringValue("h1".into()))
    );
    assert_eq!(
        attr(&resource.attributes, "service.version"),
        Some(Any::StringValue("1.2".into()))
    );
    let scope = groups[0].scope_spans[0].scope.as_ref().unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("lib", "0.1")
    );
    let keys: Vec<_> = first_span(&groups)
        .attributes
        .iter()
        .map(|kv| kv.key.as_str())
        .collect();
    assert_eq!(keys, ["x"]);
}

#[test]
fn over_long_values_are_cut_in_errors() {
    let long = "a".repeat(4_000_000);
    for (json, field) in [
        (
            format!(r#"[{{"traceId":"{long}","id":"1"}}]"#),
            "spans[0].traceId: ",
        ),
        (
            format!(r#"[{{"traceId":"1","id":"{long}"}}]"#),
            "spans[0].id: ",
        ),
        (
            format!(r#"[{{"traceId":"1","id":"1","kind":"{long}"}}]"#),
            "spans[0].kind: ",
        ),
        (
            format!(r#"[{{"traceId":"1","id":"1","tags":{{"{long}":1}}}}]"#),
            "spans[0].tags.",
        ),
        (
            format!(r#"[{{"traceId":"x{long}","id":"1"}}]"#),
            "spans[0].traceId: ",
        ),
    ] {
        let text = error_text(&json);
        assert!(
            text.len() < 300,
            "{field} {} bytes: {}",
            text.len(),
            &text[..300]
        );
        assert!(text.starts_with(field), "{text}");
        assert!(text.contains(&format!("{}…\" (", &long[..60])), "{text}");
        assert!(text.contains("bytes)"), "{text}");
    }
    // Short values are repeated whole, as before.
    assert!(
        error_text(r#"[{"traceId":"1","id":"1","kind":"LOCAL"}]"#)
            .contains("\"LOCAL\" is not one of")
    );
}

pub(super) struct DiscardingSink;

#[async_trait::async_trait]
impl meshtel_model::SpanSink for DiscardingSink {
    async fn write_spans(&self, _spans: Vec<ResourceSpans>) -> Result<(), meshtel_model::Error> {
        Ok(())
    }
}

/// A Zipkin server on 127.0.0.1 storing into [`DiscardingSink`]; its address.
pub(super) async fn discarding_server() -> std::net::SocketAddr {
    let app = super::zipkin_router(
        std::sync::Arc::new(DiscardingSink),
        crate::config::IngestLimits::default(),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

#[tokio::test]
async fn other_paths_get_a_404_naming_the_span_apis() {
    let addr = discarding_server().await;
    let client = reqwest::Client::new();
    for path in ["/api/v1/span", "/api/v2/span"] {
        let reply = client
            .post(format!("http://{addr}{path}"))
            .header("content-type", "application/json")
            .body("[]")
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 404, "{path}");
        assert_eq!(reply.headers()["content-type"], "application/json");
        let body: serde_json::Value = serde_json::from_str(&reply.text().await.unwrap()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": format!(
                "no route POST {path}: this port serves the Zipkin span APIs: \
                 POST /api/v2/spans (JSON or protobuf) and POST /api/v1/spans (JSON or Thrift)"
            )}),
        );
    }
    // The v2 API answers as before.
    let spans = format!("http://{addr}/api/v2/spans");
    let reply = client
        .post(&spans)
        .header("content-type", "application/json")
        .body(SPEC_EXAMPLE)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 202);
    assert_eq!(client.get(&spans).send().await.unwrap().status(), 405);
}

/// Zipkin has no partial success: spans refused as invalid (here one starting three
/// days ahead) are named in the 202's body when others were stored, and a request of
/// which none was stored is a 400 saying why.
#[tokio::test]
async fn refused_spans_are_named_to_the_sender() {
    let addr = discarding_server().await;
    let now_us = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as u64;
    let span_of = |service: &str, id: &str, timestamp: u64| {
        serde_json::json!({"traceId": "463ac35c9f6413ad", "id": id, "name": "get",
            "timestamp": timestamp, "duration": 10, "localEndpoint": {"serviceName": service}})
    };
    let span = |id: &str, timestamp: u64| span_of("web", id, timestamp);
    let ahead = now_us + 3 * 86_400_000_000;
    let post = |body: serde_json::Value| {
        let client = reqwest::Client::new();
        async move {
            let reply = client
                .post(format!("http://{addr}/api/v2/spans"))
                .header("content-type", "application/json")
                .body(body.to_string())
                .send()
                .await
                .unwrap();
            (reply.status().as_u16(), reply.text().await.unwrap())
        }
    };
    let (status, text) = post(serde_json::json!([span("a", now_us), span("b", ahead)])).await;
    assert_eq!(status, 202, "{text}");
    assert!(text.starts_with("1 of 2 spans refused: "), "{text}");
    // Named by its place in the list sent, though spans are grouped by service inside.
    let (status, text) = post(serde_json::json!([
        span("a", now_us),
        span_of("api", "c", now_us),
        span("b", ahead)
    ]))
    .await;
    assert_eq!(status, 202, "{text}");
    assert!(text.contains(" spans[2]: "), "{text}");
    assert!(!text.contains("resource_spans"), "{text}");
    let (status, text) = post(serde_json::json!([span("b", ahead)])).await;
    assert_eq!(status, 400, "{text}");
    assert!(text.starts_with("no span stored: "), "{text}");
    let (status, text) = post(serde_json::json!([span("a", now_us)])).await;
    assert_eq!((status, text.as_str()), (202, ""));

    // A span that cannot be converted at all (an all-zero trace id, no id) costs only
    // itself, and is named with its field.
    let mut zero_trace = span("d", now_us);
    zero_trace["traceId"] = "0000000000000000".into();
    let no_id = serde_json::json!({"traceId": "463ac35c9f6413ad", "name": "get"});
    let (status, text) = post(serde_json::json!([span("a", now_us), zero_trace])).await;
    assert_eq!(status, 202, "{text}");
    assert_eq!(
        text.trim_end(),
        "1 of 2 spans refused: spans[1].traceId: must not be all zeros"
    );
    let (status, text) = post(serde_json::json!([
        no_id.clone(),
        span("a", now_us),
        span("b", ahead)
    ]))
    .await;
    assert_eq!(status, 202, "{text}");
    assert!(
        text.starts_with("2 of 3 spans refused: spans[0].id: is required; "),
        "{text}"
    );
    assert!(text.contains(" spans[2]: "), "{text}");
    let (status, text) = post(serde_json::json!([no_id.clone()])).await;
    assert_eq!(status, 400, "{text}");
    assert_eq!(text.trim_end(), "no span stored: spans[0].id: is required");
    // Many bad spans: the first five named, the rest counted.
    let mut many = vec![span("a", now_us)];
    many.extend(std::iter::repeat_n(no_id, 1_000));
    let (status, text) = post(serde_json::Value::Array(many)).await;
    assert_eq!(status, 202, "{text}");
    assert!(text.starts_with("1000 of 1001 spans refused: "), "{text}");
    assert!(text.trim_end().ends_with("; and 995 more"), "{text}");
    assert!(text.len() < 400, "{} bytes", text.len());
}
