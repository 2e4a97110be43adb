//! Zipkin v2 against the real axum server.

use std::time::Duration;

use meshtel_collector::IngestLimits;
use meshtel_model::otlp::common::v1::KeyValue;
use meshtel_model::otlp::common::v1::any_value::Value as Any;
use reqwest::StatusCode;

use crate::support::{Servers, gzip, small_limits};

/// The example of spec §5.2, verbatim.
const SPEC_EXAMPLE: &str = r#"[{"id":"352bff9a74ca9ad2","traceId":"5af7183fb1d4cf5f","parentId":"6b221d5bc9e6496c","name":"get /api",
  "timestamp":1556604172355737,"duration":1431,"kind":"SERVER",
  "localEndpoint":{"serviceName":"backend","ipv4":"192.168.99.1","port":3306},
  "remoteEndpoint":{"ipv4":"172.19.0.2","port":58648},"tags":{"http.method":"GET","http.path":"/api"}}]"#;

async fn post(
    servers: &Servers,
    content_type: Option<&str>,
    encoding: Option<&str>,
    body: Vec<u8>,
) -> reqwest::Response {
    let mut request = reqwest::Client::new().post(servers.zipkin_url()).body(body);
    if let Some(content_type) = content_type {
        request = request.header("content-type", content_type);
    }
    if let Some(encoding) = encoding {
        request = request.header("content-encoding", encoding);
    }
    request.send().await.unwrap()
}

fn string(value: &str) -> Option<Any> {
    Some(Any::StringValue(value.to_string()))
}

fn pairs(attributes: &[KeyValue]) -> Vec<(String, Option<Any>)> {
    attributes
        .iter()
        .map(|kv| (kv.key.clone(), kv.value.clone().and_then(|v| v.value)))
        .collect()
}

#[tokio::test]
async fn spec_example_is_accepted_and_mapped_to_otlp() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(
        &servers,
        Some("application/json"),
        None,
        SPEC_EXAMPLE.into(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(response.bytes().await.unwrap().is_empty());

    let written = servers.sink.written();
    assert_eq!(written.len(), 1);
    let resource = written[0].resource.as_ref().unwrap();
    assert_eq!(
        pairs(&resource.attributes),
        [("service.name".to_string(), string("backend"))]
    );
    assert_eq!(resource.dropped_attributes_count, 0);
    assert_eq!(written[0].schema_url, "");
    assert_eq!(written[0].scope_spans.len(), 1);
    assert_eq!(written[0].scope_spans[0].scope, None);
    assert_eq!(written[0].scope_spans[0].spans.len(), 1);

    let span = &written[0].scope_spans[0].spans[0];
    assert_eq!(
        hex::encode(&span.trace_id),
        "00000000000000005af7183fb1d4cf5f"
    );
    assert_eq!(hex::encode(&span.span_id), "352bff9a74ca9ad2");
    assert_eq!(hex::encode(&span.parent_span_id), "6b221d5bc9e6496c");
    assert_eq!(span.trace_state, "");
    assert_eq!(span.flags, 0);
    assert_eq!(span.name, "get /api");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_556_604_172_355_737_000);
    assert_eq!(span.end_time_unix_nano, 1_556_604_172_357_168_000);
    assert_eq!(
        pairs(&span.attributes),
        [
            ("http.method".to_string(), string("GET")),
            ("http.path".to_string(), string("/api")),
            ("net.host.ip".to_string(), string("192.168.99.1")),
            ("net.host.port".to_string(), Some(Any::IntValue(3306))),
            ("net.peer.ip".to_string(), string("172.19.0.2")),
            ("net.peer.port".to_string(), Some(Any::IntValue(58648))),
        ]
    );
    assert_eq!(span.dropped_attributes_count, 0);
    assert!(span.events.is_empty());
    assert!(span.links.is_empty());
    assert_eq!(span.status, None);
}

#[tokio::test]
async fn missing_or_json_content_type_is_json_and_gzip_works() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(&servers, None, None, SPEC_EXAMPLE.into()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let response = post(
        &servers,
        Some("Application/JSON; charset=utf-8"),
        Some("gzip"),
        gzip(SPEC_EXAMPLE.as_bytes()),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert_eq!(servers.sink.spans().len(), 2);
}

/// Any type other than protobuf is read as JSON v2, as the Zipkin server reads it (spec
/// §5.1): a browser's `fetch` sends `text/plain;charset=UTF-8`, `curl -d` sends a form
/// type.
#[tokio::test]
async fn other_content_types_are_read_as_json() {
    let servers = Servers::start(IngestLimits::default()).await;
    let types = [
        "text/plain",
        "text/plain;charset=UTF-8",
        "application/x-www-form-urlencoded",
        "multipart/form-data; boundary=x",
        "application/x-thrift",
        "",
    ];
    for content_type in types {
        let response = post(&servers, Some(content_type), None, SPEC_EXAMPLE.into()).await;
        assert_eq!(
            response.status(),
            StatusCode::ACCEPTED,
            "{content_type}: {}",
            response.text().await.unwrap()
        );
    }
    assert_eq!(servers.sink.spans().len(), types.len());
    let span = &servers.sink.written()[0].scope_spans[0].spans[0];
    assert_eq!(hex::encode(&span.span_id), "352bff9a74ca9ad2");
}

/// A body that is not JSON, sent as another type: the 400 says it was read as JSON v2
/// because of that type.
#[tokio::test]
async fn other_content_types_that_are_not_json_say_how_they_were_read() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(
        &servers,
        Some("application/x-www-form-urlencoded"),
        None,
        b"spans=%5B%5D".to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("cannot decode the JSON request: "),
        "{text}"
    );
    assert!(
        text.ends_with(
            " (the body was read as Zipkin JSON v2 because its Content-Type \
             \"application/x-www-form-urlencoded\" is not application/x-protobuf)\n"
        ),
        "{text}"
    );
    // JSON, but not a span list: said the same way.
    let response = post(
        &servers,
        Some("text/plain"),
        None,
        br#"{"traceId":"1"}"#.to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.unwrap();
    assert!(
        text.contains("read as Zipkin JSON v2 because its Content-Type \"text/plain\""),
        "{text}"
    );
    // Sent as JSON, the usual 400, without the note.
    let response = post(&servers, Some("application/json"), None, b"[{".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!response.text().await.unwrap().contains("read as"));
    assert!(servers.sink.written().is_empty());
}

#[tokio::test]
async fn an_over_long_value_is_cut_in_the_400() {
    let servers = Servers::start(IngestLimits::default()).await;
    let body = format!(r#"[{{"traceId":"{}","id":"1"}}]"#, "a".repeat(4_000_000));
    let response = post(&servers, Some("application/json"), None, body.into()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let text = response.text().await.unwrap();
    assert!(text.len() < 300, "{} bytes", text.len());
    assert!(
        text.starts_with("no span stored: spans[0].traceId: \"aaaa"),
        "{text}"
    );
}

#[tokio::test]
async fn bad_json_is_400() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(&servers, Some("application/json"), None, b"[{".to_vec()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("cannot decode the JSON request")
    );
    let response = post(
        &servers,
        Some("application/json"),
        None,
        br#"{"traceId":"1"}"#.to_vec(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(servers.sink.written().is_empty());
}

/// A span with a bad id is refused alone and named by index and field: a 202 naming
/// it when others were stored, a 400 when none was.
#[tokio::test]
async fn bad_ids_are_named_by_index_and_field() {
    let servers = Servers::start(IngestLimits::default()).await;
    let body = r#"[{"traceId":"5af7183fb1d4cf5f","id":"352bff9a74ca9ad2"},{"traceId":"5af7183fb1d4cf5f","id":"xyz"}]"#;
    let response = post(&servers, Some("application/json"), None, body.into()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let text = response.text().await.unwrap();
    assert!(
        text.starts_with("1 of 2 spans refused: spans[1].id:"),
        "{text}"
    );
    let stored: Vec<_> = servers
        .sink
        .spans()
        .iter()
        .map(|s| hex::encode(&s.span_id))
        .collect();
    assert_eq!(stored, ["352bff9a74ca9ad2"]);
    let body = r#"[{"traceId":"0000000000000000","id":"352bff9a74ca9ad2"}]"#;
    let response = post(&servers, Some("application/json"), None, body.into()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(response.text().await.unwrap().contains("spans[0].traceId"));
    assert_eq!(servers.sink.spans().len(), 1);
}

/// The spec example as proto3 `ListOfSpans`, the way Brave's PROTO3 encoding sends it.
fn spec_example_proto() -> Vec<u8> {
    example_proto_with_path("/api")
}

/// The spec example as proto3, its name `get <path>` and tag `http.path=<path>`.
fn example_proto_with_path(path: &str) -> Vec<u8> {
    use meshtel_collector::zipkin::convert::proto::{ListOfSpans, ProtoEndpoint, ProtoSpan};
    use prost::Message;
    let span = ProtoSpan {
        trace_id: hex::decode("5af7183fb1d4cf5f").unwrap(),
        parent_id: hex::decode("6b221d5bc9e6496c").unwrap(),
        id: hex::decode("352bff9a74ca9ad2").unwrap(),
        kind: 2,
        name: format!("get {path}"),
        timestamp: 1_556_604_172_355_737,
        duration: 1431,
        local_endpoint: Some(ProtoEndpoint {
            service_name: "backend".into(),
            ipv4: vec![192, 168, 99, 1],
            port: 3306,
            ..Default::default()
        }),
        remote_endpoint: Some(ProtoEndpoint {
            ipv4: vec![172, 19, 0, 2],
            port: 58648,
            ..Default::default()
        }),
        tags: [("http.method", "GET"), ("http.path", path)]
            .into_iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..Default::default()
    };
    ListOfSpans { spans: vec![span] }.encode_to_vec()
}

#[tokio::test]
async fn protobuf_list_of_spans_maps_like_the_json_one() {
    let json = Servers::start(IngestLimits::default()).await;
    let response = post(&json, Some("application/json"), None, SPEC_EXAMPLE.into()).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let proto = Servers::start(IngestLimits::default()).await;
    let response = post(
        &proto,
        Some("application/x-protobuf"),
        None,
        spec_example_proto(),
    )
    .await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(response.bytes().await.unwrap().is_empty());
    assert_eq!(proto.sink.written(), json.sink.written());

    // Not protobuf at all: 400 naming the decoder, nothing written.
    let bad = Servers::start(IngestLimits::default()).await;
    let response = post(&bad, Some("application/x-protobuf"), None, vec![0xff, 0xff]).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(!response.text().await.unwrap().is_empty());
    assert!(bad.sink.written().is_empty());
}

/// A string that is not UTF-8 costs that text (U+FFFD), not the list: the span is
/// stored as the same list with the text repaired would be.
#[tokio::test]
async fn protobuf_text_that_is_not_utf8_is_repaired() {
    let mut broken = example_proto_with_path("/a@i");
    while let Some(at) = broken.iter().position(|b| *b == b'@') {
        broken[at] = 0xe9;
    }
    let servers = Servers::start(IngestLimits::default()).await;
    let response = post(&servers, Some("application/x-protobuf"), None, broken).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    let repaired = Servers::start(IngestLimits::default()).await;
    let body = example_proto_with_path("/a\u{fffd}i");
    let response = post(&repaired, Some("application/x-protobuf"), None, body).await;
    assert_eq!(response.status(), StatusCode::ACCEPTED);
    assert!(!servers.sink.written().is_empty());
    assert_eq!(servers.sink.written(), repaired.sink.written());
}

#[tokio::test]
async fn limits_and_overload() {
    let servers = Servers::start(small_limits()).await;
    let many: Vec<String> = (1..=6)
        .map(|i| format!(r#"{{"traceId":"1","id":"{i}"}}"#))
        .collect();
    let response = post(&servers, None, None, format!("[{}]", many.join(",")).into()).await;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("max_spans_per_request")
    );

    let bomb = gzip(&vec![b' '; 10 * 1024 * 1024]);
    let response = post(&servers, None, Some("gzip"), bomb).await;
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);

    servers.sink.overload(Duration::from_secs(4));
    let response = post(&servers, None, None, SPEC_EXAMPLE.into()).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(response.headers()["retry-after"], "4");
}

#[tokio::test]
async fn other_methods_are_405() {
    let servers = Servers::start(IngestLimits::default()).await;
    let response = reqwest::get(servers.zipkin_url()).await.unwrap();
    assert_eq!(response.status(), StatusCode::METHOD_NOT_ALLOWED);
}
