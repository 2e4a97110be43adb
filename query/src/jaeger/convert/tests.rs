//! Tests of the OTLP → Jaeger conversion.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code

use super::*;
use crate::jaeger::model::Trace as JTrace;
use crate::testing::*;
use meshtel_model::otlp::common::v1::{ArrayValue, KeyValueList};
use meshtel_model::otlp::trace::v1::{ScopeSpans, Status};
use proptest::prelude::*;

const T: &str = "5b8efff798038103d269b633813fc60c";

fn convert(rs: Vec<ResourceSpans>) -> JTrace {
    trace_to_jaeger(&trace_of(rs)).unwrap()
}

fn json(trace: &JTrace) -> String {
    String::from_utf8(crate::response::go_json(trace, false).unwrap()).unwrap()
}

#[test]
fn worked_example_of_section_4_byte_for_byte() {
    let trace = convert(otlp_example());
    let expected = minify(
        r#"{"traceID":"5b8efff798038103d269b633813fc60c","spans":[
        {"traceID":"5b8efff798038103d269b633813fc60c","spanID":"eee19b7ec3c1b174","operationName":"I'm a server span",
         "references":[{"refType":"CHILD_OF","traceID":"5b8efff798038103d269b633813fc60c","spanID":"eee19b7ec3c1b173"}],
         "startTime":1544712660000000,"duration":1000000,
         "tags":[{"key":"otel.scope.name","type":"string","value":"my.library"},{"key":"otel.scope.version","type":"string","value":"1.0.0"},
                 {"key":"http.status_code","type":"int64","value":500},{"key":"span.kind","type":"string","value":"server"},
                 {"key":"otel.status_code","type":"string","value":"ERROR"},{"key":"error","type":"bool","value":true},
                 {"key":"otel.status_description","type":"string","value":"boom"}],
         "logs":[],"processID":"p1","warnings":null}],
        "processes":{"p1":{"serviceName":"my.service","tags":[]}},"warnings":null}"#,
    );
    assert_eq!(json(&trace), expected);
}

#[test]
fn resource_service_name_rules() {
    let mut no_attrs = resource_spans("x", "", vec![span(T, "0000000000000001", "", "a", 0, 1, 2)]);
    no_attrs.resource = None;
    let mut no_name = resource_spans("x", "", vec![span(T, "0000000000000002", "", "b", 0, 3, 4)]);
    no_name.resource.as_mut().unwrap().attributes = vec![str_attr("host.name", "h")];
    let trace = convert(vec![no_attrs, no_name]);
    assert_eq!(trace.processes["p1"].service_name, RESOURCE_NO_SERVICE_NAME);
    assert_eq!(trace.processes["p2"].service_name, "");
    assert_eq!(
        trace.processes["p2"].tags,
        vec![KeyValue::string("host.name", "h")]
    );
    // No scope name: no otel.scope.name tag; no kind: no span.kind tag.
    assert!(trace.spans[0].tags.is_empty());
}

#[test]
fn equal_processes_share_an_id_in_first_appearance_order() {
    let a1 = resource_spans(
        "a",
        "s",
        vec![span(T, "0000000000000003", "", "x", 1, 30, 40)],
    );
    let b = resource_spans(
        "b",
        "s",
        vec![span(T, "0000000000000002", "", "y", 1, 20, 30)],
    );
    let a2 = resource_spans(
        "a",
        "s",
        vec![span(T, "0000000000000001", "", "z", 1, 10, 20)],
    );
    let mut a3 = resource_spans(
        "a",
        "s",
        vec![span(T, "0000000000000004", "", "w", 1, 40, 50)],
    );
    a3.resource
        .as_mut()
        .unwrap()
        .attributes
        .push(str_attr("pod", "p"));
    let trace = convert(vec![a1, b, a2, a3]);
    let ids: Vec<&str> = trace.spans.iter().map(|s| s.process_id.as_str()).collect();
    assert_eq!(ids, ["p1", "p2", "p1", "p3"]);
    assert_eq!(trace.processes.len(), 3);
    assert_eq!(trace.processes["p1"].service_name, "a");
    assert_eq!(
        trace.processes["p3"].tags,
        vec![KeyValue::string("pod", "p")]
    );
}

/// A trace whose spans each come from another process is converted without comparing
/// every process with every other (20,000 of them took seconds that way).
#[test]
fn many_distinct_processes_are_found_by_hash() {
    let count = 20_000;
    let groups: Vec<ResourceSpans> = (0..count)
        .map(|i| {
            let mut group = resource_spans(
                "svc",
                "s",
                vec![span(T, &format!("{:016x}", i + 1), "", "op", 1, i, i + 1)],
            );
            group
                .resource
                .as_mut()
                .unwrap()
                .attributes
                .push(str_attr("pod", &format!("pod-{}", i % (count / 2))));
            group
        })
        .collect();
    let started = std::time::Instant::now();
    let trace = convert(groups);
    let took = started.elapsed();
    // Two spans per pod: each pair shares its process.
    assert_eq!(trace.processes.len(), (count / 2) as usize);
    assert_eq!(
        trace.spans[0].process_id,
        trace.spans[(count / 2) as usize].process_id
    );
    assert!(
        took < std::time::Duration::from_millis(1500),
        "converting took {took:?}"
    );
}

#[test]
fn spans_sorted_deduplicated_and_clamped() {
    let s1 = span(T, "0000000000000001", "", "late", 2, 5_000, 9_999);
    let s2 = span(T, "0000000000000002", "", "early", 2, 1_000, 500);
    let dup = s1.clone();
    let mut other_kind = s1.clone();
    other_kind.kind = 3;
    // A second report of the same span (id, kind, start) that differs: Jaeger keeps both.
    let mut other_part = s1.clone();
    other_part.end_time_unix_nano += 500_000;
    other_part.attributes.push(str_attr("b", "2"));
    let trace = convert(vec![
        resource_spans("a", "", vec![s1.clone(), s2, dup, other_kind]),
        resource_spans("a", "", vec![s1, other_part]),
    ]);
    let names: Vec<&str> = trace
        .spans
        .iter()
        .map(|s| s.operation_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["early", "late", "late", "late"],
        "identical copies once, in any resource"
    );
    assert_eq!(
        trace
            .spans
            .iter()
            .filter(|s| s.tags.iter().any(|t| t.key == "b"))
            .count(),
        1,
        "the differing report kept"
    );
    assert_eq!(trace.spans[0].duration, 0, "end before start clamps to 0");
    assert_eq!(trace.spans[1].start_time, 5, "µs truncation");
    assert_eq!(trace.spans[1].duration, 4);
    assert!(trace_to_jaeger(&Trace::default()).is_none());
}

#[test]
fn a_server_span_sharing_its_id_with_a_client_span_gets_a_new_one() {
    // Zipkin-style B3: the client and the server report one RPC under one span id.
    let root = span(T, "0000000000000001", "", "root", 2, 1_000, 9_000);
    let client = span(
        T,
        "00000000000000aa",
        "0000000000000001",
        "call",
        3,
        2_000,
        8_000,
    );
    let server = span(
        T,
        "00000000000000aa",
        "0000000000000001",
        "serve",
        2,
        3_000,
        7_000,
    );
    let below = span(
        T,
        "00000000000000bb",
        "00000000000000aa",
        "query",
        3,
        4_000,
        6_000,
    );
    let trace = convert(vec![
        resource_spans("front", "", vec![root, client]),
        resource_spans("back", "", vec![server, below]),
    ]);
    let by_name = |name: &str| {
        let s = trace
            .spans
            .iter()
            .find(|s| s.operation_name == name)
            .unwrap();
        let parent = s
            .references
            .first()
            .map(|r| (r.ref_type, r.span_id.as_str()));
        (s.span_id.as_str(), parent)
    };
    let child_of = |id| Some((RefType::ChildOf, id));
    assert_eq!(by_name("root"), ("0000000000000001", None));
    assert_eq!(
        by_name("call"),
        ("00000000000000aa", child_of("0000000000000001"))
    );
    // The lowest id unused in the trace: 1 is the root's.
    assert_eq!(
        by_name("serve"),
        ("0000000000000002", child_of("00000000000000aa"))
    );
    assert_eq!(
        by_name("query"),
        ("00000000000000bb", child_of("0000000000000002"))
    );
    let ids: HashSet<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(ids.len(), 4, "every span id once");

    // Two server spans sharing an id (no client) and a client with its own id: unchanged.
    let a = span(T, "00000000000000cc", "", "a", 2, 1, 2);
    let b = span(T, "00000000000000cc", "", "b", 2, 3, 4);
    let c = span(T, "00000000000000dd", "00000000000000cc", "c", 3, 5, 6);
    let trace = convert(vec![resource_spans("x", "", vec![a, b, c])]);
    let ids: Vec<&str> = trace.spans.iter().map(|s| s.span_id.as_str()).collect();
    assert_eq!(
        ids,
        ["00000000000000cc", "00000000000000cc", "00000000000000dd"]
    );
}

#[test]
fn links_become_references_after_the_parent() {
    let mut s = span(T, "0000000000000002", "0000000000000001", "op", 0, 1, 2);
    let link = |trace: &str, span_hex: &str, child_of: bool| span::Link {
        trace_id: hex::decode(trace).unwrap(),
        span_id: hex::decode(span_hex).unwrap(),
        attributes: if child_of {
            vec![str_attr("opentracing.ref_type", "child_of")]
        } else {
            vec![]
        },
        ..Default::default()
    };
    let other = "00000000000000000000000000000abc";
    s.links = vec![
        link(other, "00000000000000aa", false),
        link(T, "0000000000000001", false), // the parent again: overrides its type
        link(other, "00000000000000bb", true),
    ];
    let trace = convert(vec![resource_spans("a", "", vec![s])]);
    let refs = &trace.spans[0].references;
    assert_eq!(refs.len(), 3);
    assert_eq!(
        (refs[0].ref_type, refs[0].span_id.as_str()),
        (RefType::FollowsFrom, "0000000000000001")
    );
    assert_eq!(
        (refs[1].ref_type, refs[1].trace_id.as_str()),
        (RefType::FollowsFrom, "0000000000000abc")
    );
    assert_eq!(refs[2].ref_type, RefType::ChildOf);
    // A zero parent id is no parent.
    let root = span(T, "0000000000000003", "0000000000000000", "root", 0, 1, 2);
    assert!(
        convert(vec![resource_spans("a", "", vec![root])]).spans[0]
            .references
            .is_empty()
    );
}

#[test]
fn events_become_logs_with_the_event_field_rule() {
    let mut s = span(T, "0000000000000002", "", "op", 0, 1_000, 2_000);
    s.events = vec![
        span::Event {
            time_unix_nano: 1_500_999,
            name: "exception".into(),
            attributes: vec![str_attr("m", "boom")],
            ..Default::default()
        },
        span::Event {
            time_unix_nano: 1_600,
            name: "named".into(),
            attributes: vec![str_attr("event", "own")],
            ..Default::default()
        },
        span::Event {
            time_unix_nano: 1_700,
            name: String::new(),
            attributes: vec![],
            ..Default::default()
        },
    ];
    let logs = &convert(vec![resource_spans("a", "", vec![s])]).spans[0].logs;
    assert_eq!(logs[0].timestamp, 1_500);
    assert_eq!(
        logs[0].fields,
        vec![
            KeyValue::string("event", "exception"),
            KeyValue::string("m", "boom")
        ]
    );
    assert_eq!(logs[1].fields, vec![KeyValue::string("event", "own")]);
    assert!(logs[2].fields.is_empty());
}

#[test]
fn status_kind_and_tracestate_tags_in_order() {
    let mut s = span(T, "0000000000000002", "", "op", 3, 1, 2);
    s.attributes = vec![str_attr("a", "1")];
    s.status = Some(Status {
        code: 1,
        message: "fine".into(),
    });
    s.trace_state = "k=v".into();
    let mut rs = resource_spans("a", "lib", vec![s]);
    rs.scope_spans[0].scope.as_mut().unwrap().version = "2".into();
    let keys: Vec<String> = convert(vec![rs]).spans[0]
        .tags
        .iter()
        .map(|t| t.key.clone())
        .collect();
    assert_eq!(
        keys,
        [
            "otel.scope.name",
            "otel.scope.version",
            "a",
            "span.kind",
            "otel.status_code",
            "otel.status_description",
            "w3c.tracestate"
        ]
    );
}

#[test]
fn attribute_values_are_typed_like_jaeger() {
    use any_value::Value as V;
    let kv = |v: V| serde_json::to_value(attribute_to_tag(&attr("k", v))).unwrap();
    assert_eq!(
        kv(V::IntValue(9_007_199_254_740_991))["value"],
        9_007_199_254_740_991i64
    );
    assert_eq!(
        kv(V::IntValue(9_007_199_254_740_992))["value"],
        "9007199254740992"
    );
    assert_eq!(
        kv(V::IntValue(-9_007_199_254_740_992))["value"],
        "-9007199254740992"
    );
    assert_eq!(kv(V::IntValue(i64::MIN))["type"], "int64");
    assert_eq!(kv(V::DoubleValue(1.5))["value"], 1.5);
    assert_eq!(
        kv(V::DoubleValue(2.0)).to_string(),
        r#"{"key":"k","type":"float64","value":2}"#
    );
    assert_eq!(kv(V::BoolValue(true))["type"], "bool");
    assert_eq!(
        kv(V::BytesValue(b"blob".to_vec())).to_string(),
        r#"{"key":"k","type":"binary","value":"YmxvYg=="}"#
    );
    let array = V::ArrayValue(ArrayValue {
        values: vec![
            AnyValue {
                value: Some(V::StringValue("a".into())),
            },
            AnyValue {
                value: Some(V::IntValue(1)),
            },
        ],
    });
    assert_eq!(kv(array)["value"], r#"["a",1]"#);
    let map = V::KvlistValue(KeyValueList {
        values: vec![str_attr("z", "<1>"), str_attr("a", "b")],
    });
    assert_eq!(kv(map)["value"], r#"{"a":"b","z":"\u003c1\u003e"}"#);
    // Numbers inside as Go's encoding/json writes them.
    let doubles = |values: &[f64]| {
        V::ArrayValue(ArrayValue {
            values: values
                .iter()
                .map(|d| AnyValue {
                    value: Some(V::DoubleValue(*d)),
                })
                .collect(),
        })
    };
    assert_eq!(
        kv(doubles(&[
            1e15,
            1e20,
            -0.0,
            0.5,
            1e21,
            1.5e-7,
            -2.5e-9,
            f64::NAN,
            f64::NEG_INFINITY
        ]))["value"],
        r#"[1000000000000000,100000000000000000000,-0,0.5,1e+21,1.5e-7,-2.5e-9,"NaN","-Inf"]"#
    );
    assert_eq!(
        kv(V::DoubleValue(1e15)).to_string(),
        r#"{"key":"k","type":"float64","value":1000000000000000}"#
    );
    let empty = serde_json::to_value(attribute_to_tag(&OtlpKeyValue {
        key: "e".into(),
        ..Default::default()
    }))
    .unwrap();
    assert_eq!(
        empty.to_string(),
        r#"{"key":"e","type":"string","value":""}"#
    );
}

#[test]
fn ids_render_64_and_128_bit() {
    let short = "0000000000000000000000000000abcd";
    let trace = convert(vec![resource_spans(
        "a",
        "",
        vec![span(short, "00000000000000ff", "", "op", 0, 1, 2)],
    )]);
    assert_eq!(trace.trace_id, "000000000000abcd");
    assert_eq!(trace.spans[0].trace_id, "000000000000abcd");
    assert_eq!(trace.spans[0].span_id, "00000000000000ff");
    let long = convert(otlp_example());
    assert_eq!(long.trace_id.len(), 32);
}

#[test]
fn transform_groups_by_trace_id() {
    let other = "0000000000000000000000000000abcd";
    let rs = resource_spans(
        "a",
        "",
        vec![
            span(T, "0000000000000001", "", "x", 0, 1, 2),
            span(other, "0000000000000002", "", "y", 0, 1, 2),
        ],
    );
    let traces = resource_spans_to_jaeger(&[rs, ResourceSpans::default()]);
    assert_eq!(traces.len(), 2);
    assert_eq!(traces[0].trace_id, T);
    assert_eq!(traces[1].trace_id, "000000000000abcd");
}

fn any_value() -> impl Strategy<Value = AnyValue> {
    use any_value::Value as V;
    let leaf = prop_oneof![
        Just(None),
        ".{0,4}".prop_map(|s| Some(V::StringValue(s))),
        any::<bool>().prop_map(|b| Some(V::BoolValue(b))),
        any::<i64>().prop_map(|i| Some(V::IntValue(i))),
        any::<f64>().prop_map(|f| Some(V::DoubleValue(f))),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(|b| Some(V::BytesValue(b))),
        any::<i32>().prop_map(|i| Some(V::StringValueStrindex(i))),
    ]
    .prop_map(|value| AnyValue { value });
    leaf.prop_recursive(2, 8, 3, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(|values| AnyValue {
                value: Some(any_value::Value::ArrayValue(ArrayValue { values }))
            }),
            proptest::collection::vec((".{0,3}", inner), 0..3).prop_map(|kvs| AnyValue {
                value: Some(any_value::Value::KvlistValue(KeyValueList {
                    values: kvs
                        .into_iter()
                        .map(|(key, v)| OtlpKeyValue {
                            key,
                            value: Some(v),
                            ..Default::default()
                        })
                        .collect(),
                })),
            }),
        ]
    })
}

fn attributes() -> impl Strategy<Value = Vec<OtlpKeyValue>> {
    proptest::collection::vec(
        (
            prop_oneof![
                Just("event".to_string()),
                Just("service.name".to_string()),
                ".{0,3}"
            ],
            proptest::option::of(any_value()),
        )
            .prop_map(|(key, value)| OtlpKeyValue {
                key,
                value,
                ..Default::default()
            }),
        0..3,
    )
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 0..20)
}

fn otlp_span() -> impl Strategy<Value = OtlpSpan> {
    (
        (
            bytes(),
            bytes(),
            bytes(),
            ".{0,3}",
            any::<i32>(),
            any::<u64>(),
            any::<u64>(),
        ),
        (
            attributes(),
            proptest::collection::vec((any::<u64>(), ".{0,2}", attributes()), 0..2),
        ),
        (
            proptest::collection::vec((bytes(), bytes(), attributes()), 0..2),
            proptest::option::of((any::<i32>(), ".{0,2}")),
        ),
    )
        .prop_map(
            |(
                (trace_id, span_id, parent_span_id, name, kind, start, end),
                (attributes, events),
                (links, status),
            )| {
                OtlpSpan {
                    trace_id,
                    span_id,
                    parent_span_id,
                    name,
                    kind,
                    start_time_unix_nano: start,
                    end_time_unix_nano: end,
                    attributes,
                    events: events
                        .into_iter()
                        .map(|(t, name, attributes)| span::Event {
                            time_unix_nano: t,
                            name,
                            attributes,
                            ..Default::default()
                        })
                        .collect(),
                    links: links
                        .into_iter()
                        .map(|(trace_id, span_id, attributes)| span::Link {
                            trace_id,
                            span_id,
                            attributes,
                            ..Default::default()
                        })
                        .collect(),
                    status: status.map(|(code, message)| Status { code, message }),
                    ..Default::default()
                }
            },
        )
}

proptest! {
    #[test]
    fn converter_never_panics(
        spans in proptest::collection::vec(otlp_span(), 0..6),
        resource_attrs in attributes(),
        scope in proptest::option::of((".{0,3}", ".{0,3}")),
    ) {
        let rs = ResourceSpans {
            resource: Some(Resource { attributes: resource_attrs, ..Default::default() }),
            scope_spans: vec![ScopeSpans {
                scope: scope.map(|(name, version)| InstrumentationScope { name, version, ..Default::default() }),
                spans: spans.clone(),
                ..Default::default()
            }],
            ..Default::default()
        };
        let trace = Trace { trace_id: TraceId::default(), resource_spans: vec![rs.clone()], omitted_spans: 0 };
        match trace_to_jaeger(&trace) {
            None => prop_assert!(spans.is_empty()),
            Some(t) => {
                prop_assert!(!t.spans.is_empty());
                for s in &t.spans {
                    prop_assert!(t.processes.contains_key(&s.process_id));
                    prop_assert_eq!(s.span_id.len(), 16);
                }
                prop_assert!(crate::response::go_json(&t, true).is_ok());
            }
        }
        let _ = resource_spans_to_jaeger(&[rs]);
    }
}
