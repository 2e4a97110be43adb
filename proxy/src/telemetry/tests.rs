use meshtel_model::mixer::{RequestRecord, Workload};
use prost::Message;

use super::*;

fn identity(app: &str, version: &str) -> Arc<WorkloadIdentity> {
    Arc::new(WorkloadIdentity {
        name: format!("{app}-{version}"),
        namespace: "default".into(),
        app: app.into(),
        version: version.into(),
    })
}

fn workload(app: &str, version: &str, cluster: &str) -> Option<Workload> {
    Some(Workload {
        name: format!("{app}-{version}"),
        namespace: "default".into(),
        app: app.into(),
        version: version.into(),
        cluster: cluster.into(),
        ..Default::default()
    })
}

#[test]
fn only_grpc_content_types_are_grpc_and_grpc_web_is_not() {
    let grpc = [
        "application/grpc",
        "application/grpc+proto",
        "application/grpc+json",
        "application/grpc+",
        "Application/GRPC",
        "APPLICATION/GRPC+PROTO",
        "application/grpc; charset=utf-8",
        "application/grpc+proto ;foo=bar",
        " application/grpc ",
    ];
    let not_grpc = [
        "application/grpc-web",
        "application/grpc-web+proto",
        "application/grpc-web-text",
        "application/grpc-web-text+proto",
        "Application/gRPC-Web",
        "application/grpc-web; charset=utf-8",
        "application/grpc-web-text+proto;x=y",
        "application/grpcx",
        "application/grp",
        "application/json",
        "text/plain; x=application/grpc",
        "",
    ];
    for value in grpc {
        assert!(is_grpc_content_type(value.as_bytes()), "{value:?} is gRPC");
    }
    for value in not_grpc {
        assert!(!is_grpc_content_type(value.as_bytes()), "{value:?} is not gRPC");
    }
    // The request's protocol follows the classifier.
    for (content_type, protocol) in [("application/grpc-web+proto", "http"), ("application/grpc+proto; x=1", "grpc")] {
        let request = Request::post("/pkg.Svc/Method").header(CONTENT_TYPE, content_type).body(()).expect("request");
        let exchange = Exchange::start(Direction::Outbound, &request);
        assert_eq!((exchange.protocol, exchange.is_grpc()), (protocol, protocol == "grpc"), "{content_type}");
    }
}

#[test]
fn a_grpc_call_broken_after_its_head_has_status_unknown_on_its_span_as_in_its_record() {
    let request = Request::post("/reviews.Reviews/Watch").header(CONTENT_TYPE, "application/grpc").body(()).expect("request");
    let context = crate::trace_context::SpanContext { trace_id: [1; 16], span_id: [2; 8], parent_span_id: None, sampled: true, random_flag: false };
    let grpc_code = |span: &Span| {
        span.attributes.iter().find(|kv| kv.key == "rpc.grpc.status_code").and_then(|kv| match kv.value.as_ref()?.value {
            Some(meshtel_model::otlp::common::v1::any_value::Value::IntValue(code)) => Some(code),
            _ => None,
        })
    };
    for direction in [Direction::Inbound, Direction::Outbound] {
        let mut exchange = Exchange::start(direction, &request);
        exchange.response_code = 200;
        exchange.add_flag("UR");
        let span = exchange.span_of(context, exchange.start_unix_nano + 1, 0);
        assert_eq!(grpc_code(&span), Some(2), "{direction:?}");
        assert_eq!(span.status.as_ref().map(|s| s.code), Some(status::StatusCode::Error as i32), "{direction:?}");
        // With the server's own status, that one.
        exchange.grpc_status = Some(0);
        let span = exchange.span_of(context, exchange.start_unix_nano + 1, 0);
        assert_eq!(grpc_code(&span), Some(0), "{direction:?}");
    }
    // No answer at all: no gRPC status, an error from the missing response.
    let exchange = Exchange::start(Direction::Outbound, &request);
    let span = exchange.span_of(context, exchange.start_unix_nano + 1, 0);
    assert_eq!(grpc_code(&span), None);
}

#[test]
fn a_span_to_a_host_that_names_no_service_is_named_unknown_with_the_host_beside() {
    let context = crate::trace_context::SpanContext { trace_id: [1; 16], span_id: [2; 8], parent_span_id: None, sampled: true, random_flag: false };
    let attribute = |span: &Span, key: &str| {
        span.attributes.iter().find(|kv| kv.key == key).and_then(|kv| match kv.value.as_ref()?.value.as_ref()? {
            meshtel_model::otlp::common::v1::any_value::Value::StringValue(text) => Some(text.clone()),
            _ => None,
        })
    };
    for (host, address) in [("h1.example.com", "h1.example.com"), ("h2.example.com:8080", "h2.example.com"), ("[::1]:8080", "::1"), ("[::1]", "::1")] {
        let request = Request::get("/users/12345").header(HOST, host).body(()).expect("request");
        let mut exchange = Exchange::start(Direction::Outbound, &request);
        exchange.add_flag("UH");
        exchange.response_code = 503;
        let span = exchange.span_of(context, exchange.start_unix_nano + 1, 0);
        assert_eq!(span.name, "GET unknown", "{host}");
        assert_eq!(attribute(&span, "server.address").as_deref(), Some(address), "{host}");
    }
    // A host the mesh names keeps its service's name.
    let request = Request::get("/").header(HOST, "reviews:9080").body(()).expect("request");
    let mut exchange = Exchange::start(Direction::Outbound, &request);
    exchange.destination_service =
        Some(Arc::new(("reviews.default.svc.cluster.local".into(), "reviews".into(), "default".into())));
    exchange.response_code = 200;
    assert_eq!(exchange.span_of(context, exchange.start_unix_nano + 1, 0).name, "GET reviews");
}

#[test]
fn records_are_encoded_byte_for_byte_as_prost_encodes_them() {
    // Inbound gRPC with every field known, status OK (0, still written), sampled.
    let request = Request::builder()
        .method("POST")
        .uri("/reviews.Reviews/Get?x=1")
        .header(HOST, "reviews:9080")
        .header(CONTENT_TYPE, "application/grpc")
        .body(())
        .expect("request");
    let mut exchange = Exchange::start(Direction::Inbound, &request);
    exchange.source = Some(identity("productpage", "v1"));
    exchange.destination = Some(identity("reviews", "v2"));
    exchange.source_cluster = Some("east".into());
    exchange.destination_cluster = Some("Kubernetes".into());
    exchange.destination_service =
        Some(Arc::new(("reviews.default.svc.cluster.local".into(), "reviews".into(), "default".into())));
    exchange.response_code = 200;
    exchange.grpc_status = Some(0);
    exchange.add_flag("URX");
    exchange.add_request_body_bytes(10);
    exchange.response_header_bytes = 40;
    let trace_id = [7u8; 16];
    let encoded = exchange.encode_record(Duration::from_micros(1500), 7, Some(&trace_id));
    let expected = RequestRecord {
        reporter: Reporter::Destination as i32,
        source: workload("productpage", "v1", "east"),
        destination: workload("reviews", "v2", "Kubernetes"),
        destination_service: "reviews.default.svc.cluster.local".into(),
        destination_service_name: "reviews".into(),
        destination_service_namespace: "default".into(),
        request_method: "POST".into(),
        request_path: "/reviews.Reviews/Get?x=1".into(),
        request_protocol: "grpc".into(),
        response_code: 200,
        grpc_response_status: Some(0),
        response_flags: "URX".into(),
        start_unix_nano: exchange.start_unix_nano,
        duration_nanos: 1_500_000,
        request_bytes: exchange.request_header_bytes + 10,
        response_bytes: 47,
        trace_id: trace_id.to_vec(),
        connection_security_policy: "none".into(),
    };
    assert_eq!(RequestRecord::decode(&encoded[..]).expect("decodes"), expected);
    assert_eq!(encoded, expected.encode_to_vec());

    // Outbound HTTP with nothing known and no response: the workloads are still
    // there (empty), no gRPC status, no trace id, no security policy.
    let request = Request::builder().uri("/").body(()).expect("request");
    let exchange = Exchange::start(Direction::Outbound, &request);
    let encoded = exchange.encode_record(Duration::ZERO, 0, None);
    let expected = RequestRecord {
        reporter: Reporter::Source as i32,
        source: Some(Workload::default()),
        destination: Some(Workload::default()),
        request_method: "GET".into(),
        request_path: "/".into(),
        request_protocol: "http".into(),
        start_unix_nano: exchange.start_unix_nano,
        request_bytes: exchange.request_header_bytes,
        ..Default::default()
    };
    assert_eq!(RequestRecord::decode(&encoded[..]).expect("decodes"), expected);
    assert_eq!(encoded, expected.encode_to_vec());
}

#[test]
fn the_callers_peer_headers_are_not_counted_in_the_request_size() {
    let request = |peer: bool| {
        let mut builder = http::Request::get("/reviews/1").header("host", "reviews");
        if peer {
            builder = builder
                .header("x-meshtel-peer-workload", "productpage-v1")
                .header("x-meshtel-peer-namespace", "default");
        }
        builder.body(()).expect("request")
    };
    let size = |peer| Exchange::start(Direction::Inbound, &request(peer)).request_header_bytes;
    assert_eq!(size(true), size(false));
    assert!(size(false) > 0);
}
