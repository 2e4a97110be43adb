use meshtel_model::otlp::collector::trace::v1::ExportTracePartialSuccess;
use meshtel_model::otlp::common::v1::any_value::Value as Any;

use super::*;

/// The example of spec §3.2, verbatim.
const SPEC_EXAMPLE: &str = r#"{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"my.service"}}]},
 "scopeSpans":[{"scope":{"name":"my.library","version":"1.0.0"},
  "spans":[{"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174","parentSpanId":"eee19b7ec3c1b173",
   "name":"I'm a server span","kind":2,"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
   "attributes":[{"key":"http.status_code","value":{"intValue":"500"}}],
   "status":{"code":2,"message":"boom"}}]}]}]}"#;

fn only_span(request: &ExportTraceServiceRequest) -> &meshtel_model::otlp::trace::v1::Span {
    &request.resource_spans[0].scope_spans[0].spans[0]
}

#[test]
fn decodes_the_spec_example() {
    let (request, _) = decode_export_request_json(SPEC_EXAMPLE.as_bytes()).unwrap();
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(resource.attributes[0].key, "service.name");
    let scope = request.resource_spans[0].scope_spans[0]
        .scope
        .as_ref()
        .unwrap();
    assert_eq!(
        (scope.name.as_str(), scope.version.as_str()),
        ("my.library", "1.0.0")
    );
    let span = only_span(&request);
    assert_eq!(
        hex::encode(&span.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(hex::encode(&span.span_id), "eee19b7ec3c1b174");
    assert_eq!(hex::encode(&span.parent_span_id), "eee19b7ec3c1b173");
    assert_eq!(span.name, "I'm a server span");
    assert_eq!(span.kind, 2);
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(Any::IntValue(500))
    );
    let status = span.status.as_ref().unwrap();
    assert_eq!((status.code, status.message.as_str()), (2, "boom"));
}

#[test]
fn accepts_upper_case_hex_ids() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"5B8EFFF798038103D269B633813FC60C","spanId":"EEE19B7EC3C1B174"}]}]}]}"#;
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    assert_eq!(
        hex::encode(&only_span(&request).trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert_eq!(
        hex::encode(&only_span(&request).span_id),
        "eee19b7ec3c1b174"
    );
}

#[test]
fn accepts_enum_names_and_numeric_strings() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"kind":"SPAN_KIND_SERVER","status":{"code":"STATUS_CODE_ERROR"}},
        {"kind":"span_kind_client","status":{"code":"STATUS_CODE_OK"}},
        {"kind":"4","status":{"code":0}}]}]}]}"#;
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    let spans = &request.resource_spans[0].scope_spans[0].spans;
    let kinds: Vec<_> = spans.iter().map(|s| s.kind).collect();
    let codes: Vec<_> = spans
        .iter()
        .map(|s| s.status.as_ref().unwrap().code)
        .collect();
    assert_eq!(kinds, [2, 3, 4]);
    assert_eq!(codes, [2, 1, 0]);
}

#[test]
fn rejects_unknown_enum_names() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"kind":"SPAN_KIND_BOGUS"}]}]}]}"#;
    assert!(decode_export_request_json(body.as_bytes()).is_err());
}

#[test]
fn accepts_snake_case_keys() {
    let body = r#"{"resource_spans":[{"scope_spans":[{"spans":[{
        "trace_id":"5b8efff798038103d269b633813fc60c","span_id":"eee19b7ec3c1b174",
        "parent_span_id":"","start_time_unix_nano":1544712660000000000,
        "end_time_unix_nano":"1544712661000000000","dropped_attributes_count":"2",
        "events":[{"time_unix_nano":"5","name":"e","dropped_attributes_count":1}],
        "attributes":[{"key":"k","value":{"string_value":"v"}},
                      {"key":"n","value":{"kvlist_value":{"values":[{"key":"x","value":{"bool_value":true}}]}}}]}]}]}]}"#;
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    let span = only_span(&request);
    assert_eq!(
        hex::encode(&span.trace_id),
        "5b8efff798038103d269b633813fc60c"
    );
    assert!(span.parent_span_id.is_empty());
    assert_eq!(span.start_time_unix_nano, 1_544_712_660_000_000_000);
    assert_eq!(span.end_time_unix_nano, 1_544_712_661_000_000_000);
    assert_eq!(span.dropped_attributes_count, 2);
    assert_eq!(span.events[0].time_unix_nano, 5);
    assert_eq!(span.events[0].dropped_attributes_count, 1);
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(Any::StringValue("v".into()))
    );
    let Some(Any::KvlistValue(list)) = &span.attributes[1].value.as_ref().unwrap().value else {
        panic!("kvlist expected");
    };
    assert_eq!(
        list.values[0].value.as_ref().unwrap().value,
        Some(Any::BoolValue(true))
    );
}

#[test]
fn camel_case_key_wins_over_its_snake_case_twin() {
    let mut value: Value = serde_json::from_str(r#"{"name_x":1,"nameX":2}"#).unwrap();
    normalize_otlp_json(&mut value);
    assert_eq!(value, json!({"nameX": 2}));
}

#[test]
fn accepts_64_bit_integers_as_numbers_or_strings() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"startTimeUnixNano":7,"endTimeUnixNano":"8",
        "attributes":[{"key":"a","value":{"intValue":-3}},{"key":"b","value":{"intValue":"9007199254740993"}},
                      {"key":"c","value":{"doubleValue":"1.5"}}]}]}]}]}"#;
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    let span = only_span(&request);
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (7, 8));
    let values: Vec<_> = span
        .attributes
        .iter()
        .map(|kv| kv.value.as_ref().unwrap().value.clone())
        .collect();
    assert_eq!(
        values,
        [
            Some(Any::IntValue(-3)),
            Some(Any::IntValue(9_007_199_254_740_993)),
            Some(Any::DoubleValue(1.5))
        ]
    );
}

#[test]
fn ignores_unknown_fields_nulls_and_profiling_fields() {
    let body = r#"{"futureField":{"x":[1,2]},"resourceSpans":[{"resource":null,"somethingNew":true,
        "scopeSpans":[{"spans":[{"name":"s","newSpanField":"y","links":null,
        "attributes":[{"key":"k","keyStrindex":"3","value":{"stringValue":"v","stringValueStrindex":4}}]}]}]}]}"#;
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    let span = only_span(&request);
    assert_eq!(span.name, "s");
    assert!(request.resource_spans[0].resource.is_none());
    assert_eq!(span.attributes[0].key_strindex, 0);
    assert_eq!(
        span.attributes[0].value.as_ref().unwrap().value,
        Some(Any::StringValue("v".into()))
    );
}

#[test]
fn rejects_garbage() {
    assert!(decode_export_request_json(b"not json").is_err());
    assert!(decode_export_request_json(br#"{"resourceSpans":{}}"#).is_err());
    assert!(
        decode_export_request_json(
            br#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"xyz"}]}]}]}"#
        )
        .is_err()
    );
}

#[test]
fn encodes_responses_as_proto3_json() {
    let full = ExportTraceServiceResponse {
        partial_success: None,
    };
    assert_eq!(encode_export_response_json(&full), b"{}");
    let partial = ExportTraceServiceResponse {
        partial_success: Some(ExportTracePartialSuccess {
            rejected_spans: 3,
            error_message: "bad ids".into(),
        }),
    };
    let text = String::from_utf8(encode_export_response_json(&partial)).unwrap();
    let value: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(
        value,
        json!({"partialSuccess":{"rejectedSpans":"3","errorMessage":"bad ids"}})
    );
    assert_eq!(
        encode_status_json(3, "boom"),
        br#"{"code":3,"message":"boom"}"#
    );
}

#[test]
fn a_bad_field_is_named_in_the_error() {
    for (bad, field) in [
        (r#""traceId":"5b8efff798038103d269b633813fc60""#, "traceId"),
        (r#""traceId":"zz8efff798038103d269b633813fc60c""#, "traceId"),
        (r#""spanId":"eee19b7ec3c1b17""#, "spanId"),
    ] {
        let field_start = SPEC_EXAMPLE.find(&format!("\"{field}\"")).unwrap();
        let field_end = field_start + SPEC_EXAMPLE[field_start..].find(',').unwrap();
        let body = format!(
            "{}{bad}{}",
            &SPEC_EXAMPLE[..field_start],
            &SPEC_EXAMPLE[field_end..]
        );
        let error = decode_export_request_json(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains(&format!(
                "resourceSpans[0].scopeSpans[0].spans[0].{field}: "
            )),
            "{bad}: {error}"
        );
    }
}

#[test]
fn a_body_wrong_at_the_top_has_no_empty_path() {
    let error = decode_export_request_json(b"5").unwrap_err().to_string();
    assert!(
        error.starts_with("cannot decode the JSON request: an OTLP/JSON request is a JSON object"),
        "{error}"
    );
}

#[test]
fn accepts_every_default_a_proto3_encoder_leaves_out() {
    // What protobuf's own JSON printers write for an empty array, an empty map and an
    // empty key, plus the other fields at their default.
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"scope":{},"spans":[{
        "traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
        "attributes":[{"key":"a","value":{"arrayValue":{}}},{"key":"m","value":{"kvlistValue":{}}},
                      {"value":{"stringValue":"x"}},{"key":"e","value":{}},{"key":"n"},
                      {"key":"k","value":{"kvlistValue":{"values":[{"value":{"intValue":"1"}}]}}}],
        "status":{},"events":[{}]}]}]}]}"#;
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    let span = only_span(&request);
    let value = |i: usize| {
        span.attributes[i]
            .value
            .as_ref()
            .and_then(|v| v.value.clone())
    };
    assert!(matches!(value(0), Some(Any::ArrayValue(a)) if a.values.is_empty()));
    assert!(matches!(value(1), Some(Any::KvlistValue(m)) if m.values.is_empty()));
    assert_eq!(span.attributes[2].key, "");
    assert_eq!(value(2), Some(Any::StringValue("x".into())));
    assert_eq!(value(3), None);
    assert_eq!(value(4), None);
    let Some(Any::KvlistValue(map)) = value(5) else {
        panic!("a map: {:?}", value(5));
    };
    assert_eq!(map.values[0].key, "");
    assert_eq!(span.events.len(), 1);
}

#[test]
fn an_over_long_value_is_cut_in_the_error() {
    let kind = "K".repeat(4_000_000);
    let body = SPEC_EXAMPLE.replace(r#""kind":2"#, &format!(r#""kind":"{kind}""#));
    let error = decode_export_request_json(body.as_bytes())
        .unwrap_err()
        .to_string();
    // The value cut to 64 characters, plus the path and the names a kind may take.
    assert!(
        error.len() < 400,
        "{} bytes: {}",
        error.len(),
        &error[..300]
    );
    assert!(
        error.contains("resourceSpans[0].scopeSpans[0].spans[0].kind: "),
        "{error}"
    );
    assert!(error.contains(&format!("\"{}…\"", &kind[..64])), "{error}");
    assert!(error.contains("(4000000 bytes)"), "{error}");
}

/// The error of decoding one span with `fields` added.
fn span_error(fields: &str) -> String {
    let body = format!(
        r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{{"name":"x",{fields}}}]}}]}}]}}"#
    );
    decode_export_request_json(body.as_bytes())
        .unwrap_err()
        .to_string()
}

const SPAN: &str = "cannot decode the JSON request: resourceSpans[0].scopeSpans[0].spans[0].";

#[test]
fn an_unknown_enum_name_is_named_with_the_names_allowed() {
    assert_eq!(
        span_error(r#""kind":"SPAN_KIND_SERVR""#),
        format!(
            "{SPAN}kind: unknown SpanKind \"SPAN_KIND_SERVR\" (expected a number or one of \
             SPAN_KIND_UNSPECIFIED, SPAN_KIND_INTERNAL, SPAN_KIND_SERVER, SPAN_KIND_CLIENT, \
             SPAN_KIND_PRODUCER, SPAN_KIND_CONSUMER)"
        )
    );
    assert_eq!(
        span_error(r#""status":{"code":"STATUS_CODE_ERR"}"#),
        format!(
            "{SPAN}status.code: unknown StatusCode \"STATUS_CODE_ERR\" (expected a number or \
             one of STATUS_CODE_UNSET, STATUS_CODE_OK, STATUS_CODE_ERROR)"
        )
    );
    let error = span_error(r#""kind":1.5"#);
    assert!(
        error.starts_with(&format!(
            "{SPAN}kind: must be a number or one of SPAN_KIND_"
        )),
        "{error}"
    );
    assert!(error.ends_with(", not 1.5"), "{error}");
}

#[test]
fn a_bad_int_value_is_named_down_to_the_int_value() {
    let attr = "attributes[0].value";
    for (value, path, shown) in [
        (r#"{"intValue":1.5}"#, "intValue", "1.5"),
        (r#"{"intValue":"abc"}"#, "intValue", r#""abc""#),
        (r#"{"intValue":"1e3"}"#, "intValue", r#""1e3""#),
        (r#"{"intValue":true}"#, "intValue", "true"),
        (
            r#"{"arrayValue":{"values":[{"intValue":1},{"intValue":"x"}]}}"#,
            "arrayValue.values[1].intValue",
            r#""x""#,
        ),
        (
            r#"{"kvlistValue":{"values":[{"key":"k","value":{"intValue":2.5}}]}}"#,
            "kvlistValue.values[0].value.intValue",
            "2.5",
        ),
    ] {
        assert_eq!(
            span_error(&format!(r#""attributes":[{{"key":"a","value":{value}}}]"#)),
            format!("{SPAN}{attr}.{path}: must be an integer or a decimal string, not {shown}"),
            "{value}"
        );
    }
    assert_eq!(
        span_error(r#""attributes":[{"key":"a","value":{"intValue":18446744073709551615}}]"#),
        format!(
            "{SPAN}{attr}.intValue: must be an integer from -9223372036854775808 to \
             9223372036854775807 or a decimal string of one, not 18446744073709551615"
        )
    );
    assert_eq!(
        span_error(r#""attributes":[{"key":"a","value":{"doubleValue":"x"}}]"#),
        format!("{SPAN}{attr}.doubleValue: must be a number or a decimal string, not \"x\"")
    );
}

#[test]
fn bad_timestamps_and_counters_say_what_they_allow() {
    assert_eq!(
        span_error(r#""startTimeUnixNano":"abc""#),
        format!(
            "{SPAN}startTimeUnixNano: must be a non-negative integer or a decimal string, \
             not \"abc\""
        )
    );
    assert_eq!(
        span_error(r#""events":[{"timeUnixNano":-1}]"#),
        format!(
            "{SPAN}events[0].timeUnixNano: must be a non-negative integer or a decimal string, not -1"
        )
    );
    assert_eq!(
        span_error(r#""droppedAttributesCount":"x""#),
        format!(
            "{SPAN}droppedAttributesCount: must be an integer from 0 to 4294967295 or a \
             decimal string of one, not \"x\""
        )
    );
}

#[test]
fn the_inputs_the_explained_fields_accept_are_unchanged() {
    let body = r#"{"resourceSpans":[{"scopeSpans":[{"spans":[
        {"kind":"span_kind_client","status":{"code":"2"},"startTimeUnixNano":"7","endTimeUnixNano":8,
         "droppedAttributesCount":"3","flags":256,
         "attributes":[{"key":"a","value":{"intValue":"+5"}},{"key":"b","value":{"intValue":-9223372036854775808}},
                       {"key":"c","value":{"arrayValue":{"values":[{"intValue":"-1"},{"doubleValue":"2"}]}}}]}]}]}]}"#;
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    let span = only_span(&request);
    assert_eq!((span.kind, span.status.as_ref().unwrap().code), (3, 2));
    assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (7, 8));
    assert_eq!((span.dropped_attributes_count, span.flags), (3, 256));
    let values: Vec<_> = span
        .attributes
        .iter()
        .map(|kv| kv.value.as_ref().unwrap().value.clone())
        .collect();
    assert_eq!(values[0], Some(Any::IntValue(5)));
    assert_eq!(values[1], Some(Any::IntValue(i64::MIN)));
    let Some(Any::ArrayValue(list)) = &values[2] else {
        panic!("an array: {:?}", values[2]);
    };
    assert_eq!(list.values[0].value, Some(Any::IntValue(-1)));
    assert_eq!(list.values[1].value, Some(Any::DoubleValue(2.0)));
}

/// `bytesValue` takes base64 in either alphabet, padded or not, as proto3 JSON
/// parsers do; what is not base64 is named down to the field.
#[test]
fn bytes_values_take_either_base64_alphabet_with_or_without_padding() {
    for (sent, bytes) in [
        ("+/8=", vec![0xfb, 0xff]),
        ("-_8=", vec![0xfb, 0xff]),
        ("-_8", vec![0xfb, 0xff]),
        ("AQI", vec![1, 2]),
        ("AQI=", vec![1, 2]),
        ("AQID", vec![1, 2, 3]),
        ("", vec![]),
    ] {
        let body = SPEC_EXAMPLE.replacen(
            r#""attributes":["#,
            &format!(r#""attributes":[{{"key":"b","value":{{"bytesValue":"{sent}"}}}},"#),
            1,
        );
        let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
        let resource = request.resource_spans[0].resource.as_ref().unwrap();
        let value = resource.attributes[0].value.as_ref().unwrap().value.clone();
        assert_eq!(value, Some(Any::BytesValue(bytes)), "{sent}");
    }
    let error = span_error(r#""attributes":[{"key":"a","value":{"bytesValue":"***"}}]"#);
    assert!(
        error.starts_with(&format!(
            "{SPAN}attributes[0].value.bytesValue: must be base64 (standard or URL-safe alphabet, padding optional): "
        )),
        "{error}"
    );
    // The value quoted as sent, not as it would have been padded.
    assert!(error.ends_with(r#"in "***""#), "{error}");
}

/// A resource's `entityRefs` as proto3 JSON writes them, defaults left out, decode.
#[test]
fn entity_refs_with_defaults_left_out_decode() {
    let body = SPEC_EXAMPLE.replacen(
        r#""resource":{"attributes""#,
        r#""resource":{"entityRefs":[{"type":"k8s.pod","idKeys":["k8s.pod.name"]},{}],"attributes""#,
        1,
    );
    let (request, _) = decode_export_request_json(body.as_bytes()).unwrap();
    let resource = request.resource_spans[0].resource.as_ref().unwrap();
    assert_eq!(resource.entity_refs.len(), 2);
    assert_eq!(resource.entity_refs[0].r#type, "k8s.pod");
    assert_eq!(resource.entity_refs[0].id_keys, ["k8s.pod.name"]);
    assert!(resource.entity_refs[1].description_keys.is_empty());
    assert_eq!(only_span(&request).name, "I'm a server span");
}

#[test]
fn a_request_that_is_not_a_json_object_is_refused_by_what_it_is() {
    for (body, kind) in [
        (r#"[[{"scopeSpans":[]}]]"#, "an array"),
        ("[1]", "an array"),
        ("7", "a number"),
        ("null", "null"),
    ] {
        let error = decode_export_request_json(body.as_bytes())
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("is a JSON object") && error.contains(kind),
            "{body}: {error}"
        );
    }
    assert!(decode_export_request_json(b"{}").is_ok());
}

#[test]
fn bodies_of_empty_objects_are_refused_before_they_are_parsed() {
    // 300,000 empty resource groups: 900 KB of text, over 30 MB once parsed.
    let mut body = String::from("{\"resourceSpans\":[");
    body.push_str(&vec!["{}"; 300_000].join(","));
    body.push_str("]}");
    let error = decode_export_request_json(body.as_bytes()).unwrap_err();
    assert!(
        error
            .to_string()
            .contains("empty or near-empty objects are refused"),
        "{error}"
    );
    let error = crate::zipkin::convert::decode_zipkin_json(
        format!("[{}]", vec!["{}"; 300_000].join(",")).as_bytes(),
    )
    .unwrap_err();
    assert!(error.to_string().contains("JSON objects"), "{error}");
    // Arrays parse as messages as well.
    let mut body = String::from("{\"resourceSpans\":[");
    body.push_str(&vec!["[]"; 300_000].join(","));
    body.push_str("]}");
    let error = decode_export_request_json(body.as_bytes()).unwrap_err();
    assert!(
        error.to_string().contains("JSON objects and arrays"),
        "{error}"
    );
    // Braces inside strings are text, not objects.
    let quoted = format!(
        "{{\"resourceSpans\":[{{\"resource\":{{\"attributes\":[{{\"key\":\"k\",\"value\":{{\"stringValue\":\"{}\\\"{}\"}}}}]}}}}]}}",
        "{".repeat(100_000),
        "{".repeat(100_000)
    );
    assert!(check_json_objects(quoted.as_bytes()).is_ok());
    // Small bodies pass whatever their shape.
    assert!(check_json_objects(b"[{},{},{}]").is_ok());
}
