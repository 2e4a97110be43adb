//! Strings of an OTLP request that are not UTF-8, replaced with U+FFFD
//! ([`meshtel_model::proto_text`], by OTLP's message types).

use meshtel_model::proto_text::{self, Field};

/// The message types of an `ExportTraceServiceRequest`, by the fields that hold
/// strings or messages.
#[derive(Clone, Copy)]
enum Message {
    Request,
    ResourceSpans,
    Resource,
    EntityRef,
    ScopeSpans,
    Scope,
    Span,
    Event,
    Link,
    Status,
    KeyValue,
    AnyValue,
    ArrayValue,
    KeyValueList,
}

fn field(message: Message, number: u32) -> Field<Message> {
    use Field::{Nested, Opaque, Text};
    use Message::*;
    match (message, number) {
        (Request, 1) => Nested(ResourceSpans),
        (ResourceSpans, 1) => Nested(Resource),
        (ResourceSpans, 2) => Nested(ScopeSpans),
        (Resource, 1) => Nested(KeyValue),
        (Resource, 3) => Nested(EntityRef),
        (ScopeSpans, 1) => Nested(Scope),
        (ScopeSpans, 2) => Nested(Span),
        (Scope, 3) | (Link, 4) | (Event, 3) | (Span, 9) | (KeyValueList, 1) => Nested(KeyValue),
        (Span, 11) => Nested(Event),
        (Span, 13) => Nested(Link),
        (Span, 15) => Nested(Status),
        (KeyValue, 2) | (ArrayValue, 1) => Nested(AnyValue),
        (AnyValue, 5) => Nested(ArrayValue),
        (AnyValue, 6) => Nested(KeyValueList),
        (ResourceSpans | ScopeSpans, 3)
        | (EntityRef, 1..=4)
        | (Scope, 1 | 2)
        | (Span, 3 | 5)
        | (Event, 2)
        | (Link, 3)
        | (Status, 2)
        | (KeyValue, 1)
        | (AnyValue, 1) => Text,
        _ => Opaque,
    }
}

/// `request` with every string that is not UTF-8 made valid, and how many strings
/// that changed ([`proto_text::repair_utf8`]).
pub(super) fn repair_utf8(request: &[u8]) -> Option<(Vec<u8>, usize)> {
    proto_text::repair_utf8(request, Message::Request, field)
}

#[cfg(test)]
mod tests {
    use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use meshtel_model::otlp::common::v1::{AnyValue, ArrayValue, KeyValue, any_value};
    use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, span};
    use prost::Message as _;

    use super::repair_utf8;

    fn text(s: &str) -> AnyValue {
        AnyValue {
            value: Some(any_value::Value::StringValue(s.into())),
        }
    }

    fn attribute(key: &str, value: &str) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(text(value)),
            ..Default::default()
        }
    }

    /// A request whose strings hold markers (`@1`...) that the test turns into bytes
    /// that are not UTF-8, the encoding's lengths unchanged.
    fn request() -> Vec<u8> {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "get @1".into(),
            attributes: vec![
                attribute("plain", "fine"),
                KeyValue {
                    key: "list".into(),
                    value: Some(AnyValue {
                        value: Some(any_value::Value::ArrayValue(ArrayValue {
                            values: vec![text("ok"), text("caf@2")],
                        })),
                    }),
                    ..Default::default()
                },
            ],
            events: vec![span::Event {
                name: "ev@3".into(),
                ..Default::default()
            }],
            ..Default::default()
        };
        ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                scope_spans: vec![ScopeSpans {
                    spans: vec![
                        span.clone(),
                        Span {
                            span_id: vec![3; 8],
                            name: "good".into(),
                            ..span
                        },
                    ],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        }
        .encode_to_vec()
    }

    fn broken(mut bytes: Vec<u8>) -> Vec<u8> {
        for marker in [&b"@1"[..], b"@2", b"@3"] {
            while let Some(at) = bytes.windows(2).position(|w| w == marker) {
                bytes[at] = 0xe9;
                bytes[at + 1] = b'!';
            }
        }
        bytes
    }

    #[test]
    fn strings_that_are_not_utf8_are_repaired_and_everything_else_kept() {
        let bytes = broken(request());
        assert!(ExportTraceServiceRequest::decode(&bytes[..]).is_err());
        let (fixed, repaired) = repair_utf8(&bytes).expect("repaired");
        // The first span's name, and both spans' array element and event name.
        assert_eq!(repaired, 5);
        let request = ExportTraceServiceRequest::decode(&fixed[..]).expect("decodes");
        let spans = &request.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 2);
        assert_eq!(spans[0].name, "get \u{fffd}!");
        assert_eq!(spans[1].name, "good");
        assert_eq!(spans[1].span_id, vec![3; 8]);
        assert_eq!(spans[0].attributes[0], attribute("plain", "fine"));
        let Some(any_value::Value::ArrayValue(list)) = spans[0].attributes[1]
            .value
            .as_ref()
            .and_then(|v| v.value.clone())
        else {
            panic!("array kept")
        };
        assert_eq!(list.values, vec![text("ok"), text("caf\u{fffd}!")]);
        assert_eq!(spans[0].events[0].name, "ev\u{fffd}!");
    }

    /// A group (wire types 3 and 4) in a field the schema does not know, as an old
    /// proto2 client could send: prost skips it, and so does the repair, which copies it.
    #[test]
    fn an_unknown_group_is_copied_and_the_text_beside_it_repaired() {
        // Field 99 as a group holding a varint (field 1) and a nested group (field 2),
        // appended to the request's first span.
        let group = [0x9b, 0x06, 0x08, 0x05, 0x13, 0x08, 0x01, 0x14, 0x9c, 0x06];
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "op@1".into(),
            ..Default::default()
        };
        let mut span_bytes = span.encode_to_vec();
        span_bytes.extend_from_slice(&group);
        let wrap = |tag: u8, inner: &[u8]| {
            let mut out = vec![tag];
            prost::encoding::encode_varint(inner.len() as u64, &mut out);
            out.extend_from_slice(inner);
            out
        };
        let request = wrap(0x0a, &wrap(0x12, &wrap(0x12, &span_bytes)));
        assert!(
            ExportTraceServiceRequest::decode(&request[..]).is_ok(),
            "prost skips the group"
        );
        let bytes = broken(request);
        assert!(ExportTraceServiceRequest::decode(&bytes[..]).is_err());
        let (fixed, repaired) = repair_utf8(&bytes).expect("repaired");
        assert_eq!(repaired, 1);
        let decoded = ExportTraceServiceRequest::decode(&fixed[..]).expect("decodes");
        let spans = &decoded.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans[0].name, "op\u{fffd}!");
        assert!(
            fixed.windows(group.len()).any(|w| w == group),
            "the group is copied"
        );
        // A group that does not end, or ends as another field: left to prost.
        let mut unended = bytes.clone();
        let at = unended
            .windows(2)
            .position(|w| w == [0x9c, 0x06])
            .expect("group end");
        unended[at] = 0xa4; // end of group 100, not 99
        assert!(repair_utf8(&unended).is_none());
    }

    #[test]
    fn a_valid_request_or_a_broken_encoding_is_left_alone() {
        assert!(repair_utf8(&request()).is_none());
        // A length running past the end: prost is left to refuse it.
        let mut bytes = broken(request());
        bytes.truncate(bytes.len() - 3);
        assert!(repair_utf8(&bytes).is_none());
    }
}
