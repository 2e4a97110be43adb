//! Zipkin v1 JSON: the conversion of each RPC shape, and the `/api/v1/spans` route.

use meshtel_model::otlp::common::v1::any_value::Value as Any;
use meshtel_model::otlp::trace::v1::{ResourceSpans, Span};
use serde_json::json;

use super::convert::*;
use super::tests::{attr, discarding_server};

/// Converts a v1 list the way the route does.
fn convert_v1(list: serde_json::Value) -> Result<Vec<ResourceSpans>, crate::error::Error> {
    let spans = decode_zipkin_v1_json(&serde_json::to_vec(&list).unwrap(), 1000)?;
    let placed = zipkin_spans_to_otlp_placed_from(spans);
    match placed.refused.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(placed.resource_spans),
    }
}

/// Each converted span with its service, in resource order.
fn by_service(groups: &[ResourceSpans]) -> Vec<(String, &Span)> {
    groups
        .iter()
        .flat_map(|group| {
            let service = group
                .resource
                .as_ref()
                .and_then(|r| attr(&r.attributes, "service.name"))
                .map(|v| match v {
                    Any::StringValue(s) => s,
                    other => format!("{other:?}"),
                })
                .unwrap_or_default();
            group.scope_spans.iter().flat_map(move |scope| {
                let service = service.clone();
                scope.spans.iter().map(move |span| (service.clone(), span))
            })
        })
        .collect()
}

const T: u64 = 1_556_604_172_355_737;

fn ep(service: &str) -> serde_json::Value {
    json!({"serviceName": service, "ipv4": "10.0.0.1"})
}

fn string(value: &str) -> Option<Any> {
    Some(Any::StringValue(value.into()))
}

#[test]
fn a_shared_rpc_becomes_a_client_and_a_server_span() {
    let groups = convert_v1(json!([{
        "traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "parentId": "6b221d5bc9e6496c",
        "name": "get /api", "timestamp": T, "duration": 2100,
        "annotations": [
            {"timestamp": T, "value": "cs", "endpoint": ep("frontend")},
            {"timestamp": T + 50, "value": "retry", "endpoint": ep("frontend")},
            {"timestamp": T + 100, "value": "sr", "endpoint": ep("backend")},
            {"timestamp": T + 1531, "value": "ss", "endpoint": ep("backend")},
            {"timestamp": T + 2000, "value": "cr", "endpoint": ep("frontend")}
        ],
        "binaryAnnotations": [
            {"key": "http.path", "value": "/api", "endpoint": ep("backend")},
            {"key": "sa", "value": true,
             "endpoint": {"serviceName": "backend", "ipv4": "192.168.99.1", "port": 3306}},
            {"key": "lc", "value": "", "endpoint": ep("frontend")},
            {"key": "http.status_code", "value": 200, "endpoint": ep("backend")}
        ]
    }]))
    .unwrap();
    let spans = by_service(&groups);
    assert_eq!(spans.len(), 2);
    let (service, client) = &spans[0];
    assert_eq!(service, "frontend");
    assert_eq!(client.kind, 3, "CLIENT");
    assert_eq!(hex::encode(&client.span_id), "352bff9a74ca9ad2");
    assert_eq!(hex::encode(&client.parent_span_id), "6b221d5bc9e6496c");
    // The client owns the span's own timestamp and duration (not cs to cr).
    assert_eq!(client.start_time_unix_nano, T * 1000);
    assert_eq!(client.end_time_unix_nano, (T + 2100) * 1000);
    assert_eq!(client.events.len(), 1);
    assert_eq!(client.events[0].name, "retry");
    assert_eq!(client.events[0].time_unix_nano, (T + 50) * 1000);
    assert_eq!(attr(&client.attributes, "peer.service"), string("backend"));
    assert_eq!(attr(&client.attributes, "net.peer.ip"), string("192.168.99.1"));
    assert_eq!(attr(&client.attributes, "net.peer.port"), Some(Any::IntValue(3306)));
    assert_eq!(attr(&client.attributes, "lc"), None, "an empty lc marker is dropped");
    let (service, server) = &spans[1];
    assert_eq!(service, "backend");
    assert_eq!(server.kind, 2, "SERVER");
    assert_eq!(server.span_id, client.span_id, "a shared span id");
    // The server's time comes from sr and ss.
    assert_eq!(server.start_time_unix_nano, (T + 100) * 1000);
    assert_eq!(server.end_time_unix_nano, (T + 1531) * 1000);
    assert!(server.events.is_empty());
    assert_eq!(attr(&server.attributes, "http.path"), string("/api"));
    assert_eq!(attr(&server.attributes, "http.status_code"), None, "numbers are skipped");
}

#[test]
fn a_loopback_rpc_in_one_service_still_makes_two_spans() {
    let groups = convert_v1(json!([{
        "traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "self",
        "annotations": [
            {"timestamp": T, "value": "cs", "endpoint": ep("app")},
            {"timestamp": T + 10, "value": "sr", "endpoint": ep("app")},
            {"timestamp": T + 20, "value": "ss", "endpoint": ep("app")},
            {"timestamp": T + 30, "value": "cr", "endpoint": ep("app")}
        ]
    }]))
    .unwrap();
    let spans = by_service(&groups);
    let kinds: Vec<_> = spans.iter().map(|(s, span)| (s.as_str(), span.kind)).collect();
    assert_eq!(kinds, [("app", 3), ("app", 2)]);
    assert_eq!(spans[0].1.end_time_unix_nano - spans[0].1.start_time_unix_nano, 30_000);
    assert_eq!(spans[1].1.start_time_unix_nano, (T + 10) * 1000);
    assert_eq!(spans[1].1.end_time_unix_nano, (T + 20) * 1000);
}

#[test]
fn a_local_span_and_an_incomplete_rpc() {
    let groups = convert_v1(json!([
        {"traceId": "5af7183fb1d4cf5f", "id": "0000000000000001", "name": "Compute",
         "timestamp": T, "duration": 70,
         "binaryAnnotations": [{"key": "lc", "value": "worker", "endpoint": ep("batch")}]},
        // The client sent, and nothing more was heard: it starts at cs.
        {"traceId": "5af7183fb1d4cf5f", "id": "0000000000000002", "name": "call",
         "annotations": [{"timestamp": T + 5, "value": "cs", "endpoint": ep("batch")}]}
    ]))
    .unwrap();
    let spans = by_service(&groups);
    assert_eq!(spans.len(), 2);
    let local = spans.iter().find(|(_, s)| s.name == "compute").unwrap().1;
    assert_eq!(local.kind, 0, "no kind: unspecified");
    assert_eq!(local.start_time_unix_nano, T * 1000);
    assert_eq!(local.end_time_unix_nano, (T + 70) * 1000);
    assert_eq!(attr(&local.attributes, "lc"), string("worker"));
    let call = spans.iter().find(|(_, s)| s.name == "call").unwrap().1;
    assert_eq!(call.kind, 3);
    assert_eq!(call.start_time_unix_nano, (T + 5) * 1000);
    assert_eq!(call.end_time_unix_nano, call.start_time_unix_nano, "no duration");
}

#[test]
fn messaging_sides_and_a_server_seen_by_its_client_address() {
    let groups = convert_v1(json!([
        {"traceId": "5af7183fb1d4cf5f", "id": "0000000000000003", "name": "send",
         "annotations": [
            {"timestamp": T, "value": "ms", "endpoint": ep("producer")},
            {"timestamp": T + 4, "value": "ws", "endpoint": ep("producer")},
            {"timestamp": T + 9, "value": "wr", "endpoint": ep("consumer")},
            {"timestamp": T + 12, "value": "mr", "endpoint": ep("consumer")}],
         "binaryAnnotations": [{"key": "ma", "value": true,
            "endpoint": {"serviceName": "kafka", "ipv4": "10.1.1.1", "port": 9092}}]},
        // No core annotations, only the client's address: a server span.
        {"traceId": "5af7183fb1d4cf5f", "id": "0000000000000004", "name": "get",
         "timestamp": T, "duration": 3,
         "binaryAnnotations": [{"key": "ca", "value": true,
            "endpoint": {"serviceName": "caller", "ipv4": "10.2.2.2"}}]}
    ]))
    .unwrap();
    let spans = by_service(&groups);
    let find = |service: &str| spans.iter().find(|(s, _)| s == service).unwrap().1;
    let producer = find("producer");
    assert_eq!(producer.kind, 4);
    assert_eq!(producer.end_time_unix_nano - producer.start_time_unix_nano, 4_000);
    assert_eq!(attr(&producer.attributes, "peer.service"), string("kafka"));
    let consumer = find("consumer");
    assert_eq!(consumer.kind, 5);
    assert_eq!(consumer.start_time_unix_nano, (T + 9) * 1000);
    assert_eq!(consumer.end_time_unix_nano, (T + 12) * 1000);
    assert_eq!(attr(&consumer.attributes, "peer.service"), string("kafka"));
    let server = spans.iter().find(|(_, s)| s.name == "get").unwrap().1;
    assert_eq!(server.kind, 2);
    assert_eq!(attr(&server.attributes, "peer.service"), string("caller"));
}

#[test]
fn malformed_v1_spans_are_named() {
    let text = |list| convert_v1(list).unwrap_err().to_string();
    let no_value = text(json!([
        {"traceId": "1", "id": "1"},
        {"traceId": "1", "id": "2", "annotations": [{"timestamp": T}]}
    ]));
    assert!(no_value.contains("spans[1]: annotations[0] needs a timestamp and a value"), "{no_value}");
    let no_key = text(json!([{"traceId": "1", "id": "1", "binaryAnnotations": [{"value": "x"}]}]));
    assert!(no_key.contains("spans[0]: binaryAnnotations[0] has no key"), "{no_key}");
    let fraction = text(json!([{"traceId": "1", "id": "1", "timestamp": 1.5}]));
    assert!(fraction.contains("timestamp 1.5 is not an integer"), "{fraction}");
    // Ids are checked as for v2, naming the v1 span.
    let bad_id = text(json!([{"traceId": "1", "id": "1"}, {"traceId": "XYZ", "id": "1"}]));
    assert!(bad_id.starts_with("spans[1].traceId"), "{bad_id}");
    assert!(convert_v1(json!({"traceId": "1"})).is_err(), "not a list");
}

#[test]
fn annotations_in_time_order_decide_the_first_side() {
    // Sent server first; the client logged first, and takes the tag naming no endpoint.
    let groups = convert_v1(json!([{
        "traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "get",
        "annotations": [
            {"timestamp": T + 10, "value": "sr", "endpoint": ep("Backend")},
            {"timestamp": T + 20, "value": "ss", "endpoint": ep("backend")},
            {"timestamp": T, "value": "cs", "endpoint": ep("frontend")},
            {"timestamp": T + 30, "value": "cr", "endpoint": ep("frontend")}
        ],
        "binaryAnnotations": [{"key": "region", "value": "eu"}]
    }]))
    .unwrap();
    let spans = by_service(&groups);
    // "Backend" and "backend" are one service.
    assert_eq!(spans.len(), 2);
    let (service, client) = &spans[0];
    assert_eq!((service.as_str(), client.kind), ("frontend", 3));
    assert_eq!(attr(&client.attributes, "region"), string("eu"));
    assert_eq!(client.end_time_unix_nano - client.start_time_unix_nano, 30_000);
    assert_eq!(attr(&spans[1].1.attributes, "region"), None);
}

#[test]
fn a_start_annotation_is_made_from_the_span_and_a_one_way_call_has_no_duration() {
    let groups = convert_v1(json!([
        // Only cr, at timestamp + duration: the span is the client's, from its timestamp.
        {"traceId": "5af7183fb1d4cf5f", "id": "0000000000000005", "name": "bridged",
         "timestamp": T, "duration": 100,
         "annotations": [{"timestamp": T + 100, "value": "cr", "endpoint": ep("a")}]},
        // cs and sr without cr: the client's side has no duration.
        {"traceId": "5af7183fb1d4cf5f", "id": "0000000000000006", "name": "oneway",
         "annotations": [
            {"timestamp": T, "value": "cs", "endpoint": ep("a")},
            {"timestamp": T + 7, "value": "sr", "endpoint": ep("b")}]}
    ]))
    .unwrap();
    let spans = by_service(&groups);
    let bridged = spans.iter().find(|(_, s)| s.name == "bridged").unwrap().1;
    assert_eq!(bridged.kind, 3);
    assert_eq!(bridged.start_time_unix_nano, T * 1000);
    assert_eq!(bridged.end_time_unix_nano, (T + 100) * 1000);
    assert!(bridged.events.is_empty(), "cr is not kept as an event");
    let oneway: Vec<_> = spans.iter().filter(|(_, s)| s.name == "oneway").collect();
    assert_eq!(oneway.len(), 2);
    let client = oneway.iter().find(|(s, _)| s == "a").unwrap().1;
    assert_eq!((client.start_time_unix_nano, client.end_time_unix_nano), (T * 1000, T * 1000));
    let server = oneway.iter().find(|(s, _)| s == "b").unwrap().1;
    assert_eq!(server.start_time_unix_nano, (T + 7) * 1000);
}

#[test]
fn empty_endpoints_name_no_side() {
    let groups = convert_v1(json!([{
        "traceId": "5af7183fb1d4cf5f", "id": "0000000000000007", "name": "x",
        "timestamp": T, "duration": 5,
        "annotations": [
            {"timestamp": T, "value": "wait", "endpoint": ep("svc")},
            {"timestamp": T + 1, "value": "sr", "endpoint": {}}],
        "binaryAnnotations": [
            {"key": "k", "value": "v", "endpoint": {"serviceName": ""}},
            {"key": "sa", "value": true, "endpoint": {}}]
    }]))
    .unwrap();
    let spans = by_service(&groups);
    assert_eq!(spans.len(), 1, "{spans:?}");
    let span = spans[0].1;
    // An sr without an endpoint is an ordinary annotation, not a server side.
    assert_eq!(span.kind, 0);
    let events: Vec<_> = span.events.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(events, ["wait", "sr"]);
    assert_eq!(attr(&span.attributes, "k"), string("v"));
    assert_eq!(attr(&span.attributes, "peer.service"), None);
}

#[test]
fn a_span_of_many_services_or_impossible_times_is_refused() {
    let annotations: Vec<_> = (0..5)
        .map(|i| json!({"timestamp": T + i, "value": "log", "endpoint": ep(&format!("s{i}"))}))
        .collect();
    let many = convert_v1(json!([{"traceId": "1", "id": "1", "annotations": annotations}]))
        .unwrap_err()
        .to_string();
    assert!(many.contains("spans[0]: logged by more than 4 services"), "{many}");
    for (timestamp, duration) in [(i64::MAX, 1), (1, i64::MIN)] {
        let text = convert_v1(json!([{"traceId": "1", "id": "1", "timestamp": timestamp,
            "duration": duration,
            "annotations": [{"timestamp": 5, "value": "cr", "endpoint": ep("a")}]}]))
        .unwrap_err()
        .to_string();
        assert!(text.contains("is out of range"), "{text}");
    }
    let two = serde_json::to_vec(&json!([{"traceId": "1", "id": "1"}, {"traceId": "1", "id": "2"}]))
        .unwrap();
    let too_many = decode_zipkin_v1_json(&two, 1).unwrap_err().to_string();
    assert!(too_many.contains('2') && too_many.contains('1'), "{too_many}");
}

#[tokio::test]
async fn the_v1_route_takes_json_and_names_a_bad_span() {
    let addr = discarding_server().await;
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/api/v1/spans");
    let list = json!([{"traceId": "5af7183fb1d4cf5f", "id": "352bff9a74ca9ad2", "name": "get",
        "timestamp": T, "duration": 5,
        "annotations": [{"timestamp": T, "value": "sr", "endpoint": ep("backend")},
                        {"timestamp": T + 5, "value": "ss", "endpoint": ep("backend")}]}]);
    for content_type in ["application/json", "text/plain"] {
        let reply = client
            .post(&url)
            .header("content-type", content_type)
            .body(list.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(reply.status(), 202, "{content_type}");
    }
    let reply = client
        .post(&url)
        .header("content-type", "application/json")
        .body(r#"[{"traceId":"1","id":"1","annotations":[{"value":"cs"}]}]"#)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let text = reply.text().await.unwrap();
    assert!(text.contains("spans[0]: annotations[0] needs a timestamp"), "{text}");
    assert_eq!(client.get(&url).send().await.unwrap().status(), 405);
}
