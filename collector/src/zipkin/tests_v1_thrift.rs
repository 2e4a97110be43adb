//! Zipkin v1 Thrift: spans read as the same spans in v1 JSON are, malformed lists
//! refused by name and never read past their end, and the route.

use meshtel_model::otlp::trace::v1::ResourceSpans;
use serde_json::json;

use super::convert::v1::thrift::{BOOL, I16, I32, I64, LIST, MAP, STOP, STRING, STRUCT};
use super::convert::*;
use super::tests::discarding_server;

/// Writes Thrift's binary protocol.
#[derive(Default, Clone)]
struct Thrift(Vec<u8>);

impl Thrift {
    fn field(&mut self, kind: u8, id: i16) -> &mut Self {
        self.0.push(kind);
        self.0.extend_from_slice(&id.to_be_bytes());
        self
    }
    fn i64(&mut self, id: i16, value: i64) -> &mut Self {
        self.field(I64, id);
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i32(&mut self, id: i16, value: i32) -> &mut Self {
        self.field(I32, id);
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn i16(&mut self, id: i16, value: i16) -> &mut Self {
        self.field(I16, id);
        self.0.extend_from_slice(&value.to_be_bytes());
        self
    }
    fn bytes(&mut self, id: i16, value: &[u8]) -> &mut Self {
        self.field(STRING, id);
        self.raw_len(value.len());
        self.0.extend_from_slice(value);
        self
    }
    fn raw_len(&mut self, n: usize) -> &mut Self {
        self.raw(&i32::try_from(n).unwrap().to_be_bytes())
    }
    fn raw(&mut self, bytes: &[u8]) -> &mut Self {
        self.0.extend_from_slice(bytes);
        self
    }
    fn structs(&mut self, id: i16, items: &[Thrift]) -> &mut Self {
        self.field(LIST, id);
        self.0.push(STRUCT);
        self.raw_len(items.len());
        for item in items {
            self.0.extend_from_slice(&item.0);
        }
        self
    }
    fn nested(&mut self, id: i16, item: &Thrift) -> &mut Self {
        self.field(STRUCT, id);
        self.0.extend_from_slice(&item.0);
        self
    }
    fn stop(&mut self) -> Thrift {
        self.0.push(STOP);
        self.clone()
    }
}

fn list(spans: &[Thrift]) -> Vec<u8> {
    let mut out = vec![STRUCT];
    out.extend_from_slice(&i32::try_from(spans.len()).unwrap().to_be_bytes());
    for span in spans {
        out.extend_from_slice(&span.0);
    }
    out
}

fn endpoint(service: &str, ipv4: [u8; 4], port: i16) -> Thrift {
    Thrift::default()
        .i32(1, i32::from_be_bytes(ipv4))
        .i16(2, port)
        .bytes(3, service.as_bytes())
        .stop()
}

fn annotation(timestamp: i64, value: &str, host: &Thrift) -> Thrift {
    Thrift::default().i64(1, timestamp).bytes(2, value.as_bytes()).nested(3, host).stop()
}

fn binary(key: &str, value: &[u8], kind: i32, host: &Thrift) -> Thrift {
    Thrift::default()
        .bytes(1, key.as_bytes())
        .bytes(2, value)
        .i32(3, kind)
        .nested(4, host)
        .stop()
}

fn resource_spans(spans: Vec<(usize, ZipkinSpan)>) -> Vec<ResourceSpans> {
    let placed = zipkin_spans_to_otlp_placed_from(spans);
    assert!(placed.refused.is_empty(), "{:?}", placed.refused);
    placed.resource_spans
}

const T: i64 = 1_556_604_172_355_737;

#[test]
fn a_thrift_list_reads_as_the_same_list_in_json() {
    let frontend = endpoint("Frontend", [10, 0, 0, 1], -16_000);
    let backend = endpoint("backend", [192, 168, 1, 2], 8080);
    let ipv6 = Thrift::default()
        .bytes(3, b"backend")
        .bytes(4, &[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1])
        .stop();
    let shared = Thrift::default()
        .i64(1, 0x352b_ff9a_74ca_9ad2)
        .i64(12, 0x5af7_183f_b1d4_cf5f)
        .bytes(3, "get /api \u{e9}".as_bytes())
        .i64(4, -0x1234_5678)
        .i64(5, 0x6b22_1d5b_c9e6_496c)
        // Fields of other ids and types are passed over, nested ones too: `debug`, a
        // `timestamp` of the wrong type, a map of a string to a list of i16.
        .field(BOOL, 9)
        .raw(&[1])
        .i32(10, 7)
        .field(MAP, 40)
        .raw(&[STRING, LIST])
        .raw_len(1)
        .raw_len(1)
        .raw(b"k")
        .raw(&[I16])
        .raw_len(1)
        .raw(&[0, 3])
        .i64(10, T)
        .i64(11, 2100)
        .structs(
            6,
            &[
                annotation(T, "cs", &frontend),
                annotation(T + 50, "retry", &frontend),
                annotation(T + 100, "sr", &ipv6),
                annotation(T + 2000, "ss", &ipv6),
                annotation(T + 2100, "cr", &frontend),
                // No timestamp: dropped, as the Zipkin server drops it.
                Thrift::default().bytes(2, b"lost").stop(),
            ],
        )
        .structs(
            8,
            &[
                binary("http.path", b"/api", 6, &backend),
                binary("sa", &[1], 0, &backend),
                binary("count", &7i64.to_be_bytes(), 4, &frontend),
                binary("ca", &[1], 0, &Thrift::default().stop()),
            ],
        )
        .stop();
    let thrift = decode_zipkin_v1_thrift(&list(&[shared]), 10).unwrap();
    let json_span = json!([{
        "traceId": "5af7183fb1d4cf5f352bff9a74ca9ad2", "id": "ffffffffedcba988",
        "parentId": "6b221d5bc9e6496c", "name": "get /api \u{e9}", "timestamp": T, "duration": 2100,
        "annotations": [
            {"timestamp": T, "value": "cs",
             "endpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 49536}},
            {"timestamp": T + 50, "value": "retry",
             "endpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 49536}},
            {"timestamp": T + 100, "value": "sr",
             "endpoint": {"serviceName": "backend", "ipv6": "2001:db8::1"}},
            {"timestamp": T + 2000, "value": "ss",
             "endpoint": {"serviceName": "backend", "ipv6": "2001:db8::1"}},
            {"timestamp": T + 2100, "value": "cr",
             "endpoint": {"serviceName": "frontend", "ipv4": "10.0.0.1", "port": 49536}},
        ],
        "binaryAnnotations": [
            {"key": "http.path", "value": "/api",
             "endpoint": {"serviceName": "backend", "ipv4": "192.168.1.2", "port": 8080}},
            {"key": "sa", "value": true,
             "endpoint": {"serviceName": "backend", "ipv4": "192.168.1.2", "port": 8080}},
        ],
    }]);
    let json = decode_zipkin_v1_json(&serde_json::to_vec(&json_span).unwrap(), 10).unwrap();
    assert_eq!(thrift.len(), 2, "a client and a server");
    assert_eq!(resource_spans(thrift), resource_spans(json));
}

#[test]
fn a_local_span_and_an_empty_list_are_read() {
    let local = Thrift::default()
        .i64(1, 1)
        .bytes(3, b"compute")
        .i64(4, 2)
        .i64(10, T)
        .i64(11, 40)
        .structs(8, &[binary("lc", b"worker", 6, &endpoint("jobs", [0; 4], 0))])
        .stop();
    let spans = resource_spans(decode_zipkin_v1_thrift(&list(&[local]), 10).unwrap());
    let span = &spans[0].scope_spans[0].spans[0];
    assert_eq!(span.name, "compute");
    assert_eq!(span.end_time_unix_nano - span.start_time_unix_nano, 40_000);
    assert!(decode_zipkin_v1_thrift(&list(&[]), 10).unwrap().is_empty());
    // An empty list whose element type is not a struct holds no span either.
    assert!(decode_zipkin_v1_thrift(&[STRING, 0, 0, 0, 0], 10).unwrap().is_empty());
}

#[test]
fn malformed_lists_are_refused_by_name_and_never_read_past_their_end() {
    let host = endpoint("frontend", [10, 0, 0, 1], 80);
    let span = Thrift::default()
        .i64(1, 1)
        .i64(4, 2)
        .bytes(3, b"get")
        .structs(6, &[annotation(T, "cs", &host), annotation(T + 5, "cr", &host)])
        .structs(8, &[binary("http.path", b"/", 6, &host)])
        .stop();
    let whole = list(&[span.clone(), span.clone()]);
    assert_eq!(decode_zipkin_v1_thrift(&whole, 10).unwrap().len(), 2);
    // Every cut is an error, none a panic.
    for cut in 0..whole.len() {
        let error = decode_zipkin_v1_thrift(&whole[..cut], 10).unwrap_err().to_string();
        assert!(error.contains("Zipkin v1 Thrift"), "cut at {cut}: {error}");
    }
    let cut = decode_zipkin_v1_thrift(&whole[..whole.len() - 20], 10).unwrap_err().to_string();
    assert!(cut.starts_with("spans[1]: ") && cut.contains("cut short at byte"), "{cut}");
    let mut extra = whole.clone();
    extra.push(0);
    let extra = decode_zipkin_v1_thrift(&extra, 10).unwrap_err().to_string();
    assert!(extra.contains(&format!("1 bytes after the list of 2 spans, from byte {}", whole.len())), "{extra}");
    // Counts and lengths past the end are refused before anything is taken.
    let claims = decode_zipkin_v1_thrift(&[STRUCT, 0x7f, 0xff, 0xff, 0xff], usize::MAX)
        .unwrap_err()
        .to_string();
    assert!(claims.contains("a length of 2147483647 at byte 1, past the end"), "{claims}");
    let negative = decode_zipkin_v1_thrift(&[STRUCT, 0xff, 0xff, 0xff, 0xfe], 10).unwrap_err().to_string();
    assert!(negative.contains("a negative length (-2)"), "{negative}");
    let long_name = Thrift::default().i64(1, 1).field(STRING, 3).raw_len(1 << 30).clone();
    let long_name = decode_zipkin_v1_thrift(&list(&[long_name]), 10).unwrap_err().to_string();
    assert!(long_name.starts_with("spans[0]: name: a length of 1073741824 at byte 19"), "{long_name}");
    let not_spans = decode_zipkin_v1_thrift(&[I64, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1], 10)
        .unwrap_err()
        .to_string();
    assert!(not_spans.contains("a list of type 10, not of span structs (12)"), "{not_spans}");
    // One span without its list: its first field's type where the list's element type
    // goes, and no count.
    let alone = Thrift::default().i64(1, 0x5af7_183f).i64(4, 2).stop();
    let text = decode_zipkin_v1_thrift(&alone.0, 10).unwrap_err().to_string();
    assert!(text.starts_with("a list of type 10, not of span structs (12): a span must be sent in a list"), "{text}");
    let bad_annotations = Thrift::default().field(LIST, 6).raw(&[I64]).raw_len(1).raw(&[0; 8]).stop();
    let text = decode_zipkin_v1_thrift(&list(&[bad_annotations]), 10)
        .unwrap_err()
        .to_string();
    assert!(text.contains("spans[0]: annotations: a list of type 10 (byte 8), not of structs"), "{text}");
    let bad_host = Thrift::default()
        .structs(6, &[Thrift::default().i64(1, T).field(STRUCT, 3).field(99, 1).stop()])
        .stop();
    assert_eq!(&bad_host.0[22..25], &[99, 0, 1]);
    let text = decode_zipkin_v1_thrift(&list(&[bad_host]), 10).unwrap_err().to_string();
    // The type's own byte: 5 (list header) + 3 (field) + 5 (list) + 11 (timestamp) + 3
    // (host field).
    assert!(text.contains("spans[0]: annotations[0].host.ipv4: a value of unknown type 99 at byte 27"), "{text}");
    let bad_service = Thrift::default()
        .structs(
            6,
            &[annotation(T, "cs", &endpoint("a", [1, 2, 3, 4], 80)), {
                Thrift::default().i64(1, T).field(STRUCT, 3).field(STRING, 3).raw_len(900).stop()
            }],
        )
        .stop();
    let text = decode_zipkin_v1_thrift(&list(&[span.clone(), bad_service]), 10).unwrap_err().to_string();
    assert!(
        text.starts_with("spans[1]: annotations[1].host.service_name: a length of 900 at byte"),
        "{text}"
    );
    let out_of_range = Thrift::default().structs(6, &[annotation(1 << 62, "cs", &host)]).stop();
    let text = decode_zipkin_v1_thrift(&list(&[out_of_range]), 10).unwrap_err().to_string();
    assert!(text.starts_with("spans[0]: annotations[0].timestamp: 4611686018427387904 at byte"), "{text}");
    // Nesting is bounded: a struct in a struct in ... 10,000 deep is refused.
    let mut deep = Thrift::default().i64(1, 1).clone();
    for _ in 0..10_000 {
        deep.field(STRUCT, 50);
    }
    let text = decode_zipkin_v1_thrift(&list(&[deep]), 10).unwrap_err().to_string();
    assert!(text.contains("nested more than 16 deep"), "{text}");
    // More spans than allowed: refused from the count alone.
    let too_many = decode_zipkin_v1_thrift(&[STRUCT, 0, 0, 0, 3, 0, 0, 0], 2).unwrap_err().to_string();
    assert!(too_many.contains('3') && too_many.contains('2'), "{too_many}");
    // A span without ids is refused by name when converted, as in JSON.
    let no_ids = Thrift::default().bytes(3, b"nameless").stop();
    let placed = zipkin_spans_to_otlp_placed_from(decode_zipkin_v1_thrift(&list(&[no_ids]), 10).unwrap());
    let refused = placed.refused[0].to_string();
    assert!(refused.contains("spans[0]") && refused.contains("traceId"), "{refused}");
}

/// Bytes changed at random in a valid list (30,000 tries, a fixed seed): every try is
/// read or refused, none panics, and what reading would hold never passes 768 bytes
/// per byte of the body (every struct, list or map takes one byte at least).
#[test]
fn randomly_damaged_lists_are_read_or_refused_never_panic() {
    let host = endpoint("frontend", [10, 0, 0, 1], 80);
    let span = Thrift::default()
        .i64(1, 1)
        .i64(12, 9)
        .i64(4, 2)
        .bytes(3, b"get")
        .structs(6, &[annotation(T, "cs", &host), annotation(T + 5, "cr", &host)])
        .structs(8, &[binary("http.path", b"/", 6, &host), binary("sa", &[1], 0, &host)])
        .stop();
    let whole = list(&[span.clone(), span]);
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let (mut read, mut refused) = (0, 0);
    for _ in 0..30_000 {
        let mut body = whole.clone();
        for _ in 0..=next() % 3 {
            let at = (next() % body.len() as u64) as usize;
            match next() % 3 {
                0 => body[at] = next() as u8,
                1 => body.insert(at, next() as u8),
                _ => drop(body.remove(at)),
            }
        }
        assert!(super::convert::v1::thrift::parse_bytes(&body) <= body.len() * 768);
        match decode_zipkin_v1_thrift(&body, 100) {
            Ok(spans) => {
                read += 1;
                drop(zipkin_spans_to_otlp_placed_from(spans));
            }
            Err(_) => refused += 1,
        }
    }
    // Both outcomes are met: the damage reaches values and framing alike.
    assert!(read > 1_000 && refused > 1_000, "{read} read, {refused} refused");
}

#[test]
fn addresses_ids_and_annotations_are_read_as_the_zipkin_server_reads_them() {
    let v6 = |tail: [u8; 4], flag: u8| {
        let mut bytes = [0u8; 16];
        bytes[10] = flag;
        bytes[11] = flag;
        bytes[12..].copy_from_slice(&tail);
        bytes
    };
    let host = |ipv6: &[u8], port: i16| Thrift::default().i16(2, port).bytes(3, b"svc").bytes(4, ipv6).stop();
    // Each host in Thrift, and the endpoint the Zipkin server makes of it.
    let cases = [
        (host(&v6([10, 1, 2, 3], 0), 80), json!({"serviceName": "svc", "ipv4": "10.1.2.3", "port": 80})),
        (host(&v6([0, 0, 0, 0], 0), 80), json!({"serviceName": "svc", "ipv4": "0.0.0.0", "port": 80})),
        (host(&v6([0, 0, 0, 1], 0), 80), json!({"serviceName": "svc", "ipv6": "::1", "port": 80})),
        (host(&v6([10, 1, 2, 3], 0xff), 80), json!({"serviceName": "svc", "ipv6": "::ffff:10.1.2.3", "port": 80})),
        (host(&[192, 168, 0, 9], -1), json!({"serviceName": "svc", "ipv4": "192.168.0.9", "port": 65535})),
        (host(&[1, 2, 3, 4, 5], 0), json!({"serviceName": "svc"})),
        (endpoint("svc", [0; 4], 0), json!({"serviceName": "svc"})),
    ];
    for (thrift_host, json_host) in cases {
        let span = |host: &Thrift| {
            Thrift::default()
                .i64(1, 7)
                .i64(4, 8)
                .structs(6, &[annotation(T, "sr", host), annotation(T + 9, "ss", host)])
                .stop()
        };
        let thrift = decode_zipkin_v1_thrift(&list(&[span(&thrift_host)]), 10).unwrap();
        let json = json!([{"traceId": "0000000000000007", "id": "0000000000000008", "annotations": [
            {"timestamp": T, "value": "sr", "endpoint": json_host},
            {"timestamp": T + 9, "value": "ss", "endpoint": json_host}]}]);
        let json = decode_zipkin_v1_json(&serde_json::to_vec(&json).unwrap(), 10).unwrap();
        assert_eq!(resource_spans(thrift), resource_spans(json), "{json_host}");
    }
    // Dropped as the Zipkin server drops them: an annotation at time 0, a BOOL address
    // that is not 1 or has no host, a binary annotation without a type.
    let host = endpoint("svc", [10, 0, 0, 1], 80);
    let dropped = Thrift::default()
        .i64(1, 7)
        .i64(4, 8)
        .i64(10, T)
        .i64(11, 5)
        .structs(6, &[annotation(0, "at zero", &host)])
        .structs(
            8,
            &[
                binary("sa", &[2], 0, &host),
                Thrift::default().bytes(1, b"ca").bytes(2, &[1]).i32(3, 0).stop(),
                Thrift::default().bytes(1, b"untyped").bytes(2, b"x").nested(4, &host).stop(),
            ],
        )
        .stop();
    let json = json!([{"traceId": "0000000000000007", "id": "0000000000000008", "timestamp": T, "duration": 5}]);
    assert_eq!(
        resource_spans(decode_zipkin_v1_thrift(&list(&[dropped]), 10).unwrap()),
        resource_spans(decode_zipkin_v1_json(&serde_json::to_vec(&json).unwrap(), 10).unwrap()),
    );
    // A trace id whose low half is 0 is no trace id, whatever its high half.
    let high_only = Thrift::default().i64(12, 5).i64(4, 8).stop();
    let placed = zipkin_spans_to_otlp_placed_from(decode_zipkin_v1_thrift(&list(&[high_only]), 10).unwrap());
    assert!(placed.refused[0].to_string().contains("traceId"), "{}", placed.refused[0]);
}

#[test]
fn what_reading_takes_is_counted_per_struct() {
    let host = endpoint("svc", [10, 0, 0, 1], 80);
    let span = Thrift::default()
        .i64(1, 7)
        .i64(4, 8)
        .structs(6, &[annotation(T, "sr", &host), annotation(T + 9, "ss", &host)])
        .stop();
    // The span list, the span, its annotation list, two annotations and their hosts.
    let body = list(&[span]);
    assert_eq!(super::convert::v1::thrift::parse_bytes(&body), 7 * 768);
    // Counted up to where a malformed body stops: the list and the span begun.
    assert_eq!(super::convert::v1::thrift::parse_bytes(&body[..6]), 2 * 768);
}

#[tokio::test]
async fn a_thrift_list_is_refused_when_reading_it_would_not_fit_the_in_flight_budget() {
    let sink = std::sync::Arc::new(super::tests::DiscardingSink);
    let metrics = crate::ingest_metrics::IngestMetrics::new().unwrap();
    let budget = crate::inflight::InflightBudget::new(bytesize::ByteSize::kib(4));
    let app = super::zipkin_router_with_metrics(sink, crate::config::IngestLimits::default(), metrics, budget);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let host = endpoint("svc", [10, 0, 0, 1], 80);
    let span = |n: i64| {
        Thrift::default()
            .i64(1, 7)
            .i64(4, n)
            .structs(6, &[annotation(T, "sr", &host), annotation(T + 9, "ss", &host)])
            .stop()
    };
    let client = reqwest::Client::new();
    let post = |body: Vec<u8>| {
        client
            .post(format!("http://{addr}/api/v1/spans"))
            .header("content-type", "application/x-thrift")
            .body(body)
            .send()
    };
    // One span: 6 structs, 4.5 KiB of parsing, more than the 4 KiB budget.
    let reply = post(list(&[span(1)])).await.unwrap();
    assert_eq!(reply.status(), 413);
    let text = reply.text().await.unwrap();
    assert!(text.contains("reading this Zipkin Thrift body would take about"), "{text}");
    assert!(text.contains("send it in smaller batches"), "{text}");
    // An empty list takes one: 768 bytes.
    assert_eq!(post(list(&[])).await.unwrap().status(), 202);
}

#[tokio::test]
async fn the_v1_route_reads_thrift_and_each_api_says_where_the_other_encoding_goes() {
    let addr = discarding_server().await;
    let client = reqwest::Client::new();
    let host = endpoint("backend", [10, 0, 0, 2], 80);
    let span = Thrift::default()
        .i64(1, 0x5af7)
        .i64(4, 0x352b)
        .bytes(3, b"get")
        .structs(6, &[annotation(T, "sr", &host), annotation(T + 5, "ss", &host)])
        .stop();
    let post = |path: &str, content_type: &str, body: Vec<u8>| {
        client
            .post(format!("http://{addr}{path}"))
            .header("content-type", content_type)
            .body(body)
            .send()
    };
    let reply = post("/api/v1/spans", "application/x-thrift", list(&[span])).await.unwrap();
    assert_eq!(reply.status(), 202, "{}", reply.text().await.unwrap());
    let reply = post("/api/v1/spans", "application/x-thrift", vec![STRUCT, 0, 0]).await.unwrap();
    assert_eq!(reply.status(), 400);
    let text = reply.text().await.unwrap();
    assert!(text.contains("cut short") && text.contains("Zipkin v1 Thrift"), "{text}");
    let reply = post("/api/v1/spans", "application/x-protobuf", vec![0, 1, 2]).await.unwrap();
    assert_eq!(reply.status(), 415);
    let text = reply.text().await.unwrap();
    assert!(text.contains("application/x-protobuf") && text.contains("/api/v2/spans"), "{text}");
    // The v2 API reads any type but protobuf as JSON, as the Zipkin server does; Thrift
    // there is told where it is read.
    let reply = post("/api/v2/spans", "application/x-thrift", vec![0, 1, 2]).await.unwrap();
    assert_eq!(reply.status(), 400);
    let text = reply.text().await.unwrap();
    assert!(text.contains("read as Zipkin JSON v2") && text.contains("POST /api/v1/spans"), "{text}");
}
