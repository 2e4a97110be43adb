//! Zipkin's proto3 `ListOfSpans` (`zipkin2.proto`, what Brave and zipkin-reporter send
//! with `Encoding.PROTO3`), read into the JSON model's spans so that both go through one
//! conversion: ids become lower-hex text, IPs their usual text forms (an IPv4-compatible
//! IPv6 address the IPv4 it embeds, as Zipkin reads it), a zero timestamp
//! or duration (proto3's default) is an absent one.

use std::collections::BTreeMap;

use meshtel_model::proto_text::{self, Field};
use prost::Message;

use super::{Annotation, Endpoint, ZipkinSpan};
use crate::error::Result;

/// `zipkin2.ListOfSpans`.
#[derive(Clone, PartialEq, Message)]
pub struct ListOfSpans {
    #[prost(message, repeated, tag = "1")]
    pub spans: Vec<ProtoSpan>,
}

/// `zipkin2.Span`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoSpan {
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "2")]
    pub parent_id: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub id: Vec<u8>,
    /// 0 unspecified, 1 CLIENT, 2 SERVER, 3 PRODUCER, 4 CONSUMER.
    #[prost(int32, tag = "4")]
    pub kind: i32,
    #[prost(string, tag = "5")]
    pub name: String,
    /// Epoch µs.
    #[prost(fixed64, tag = "6")]
    pub timestamp: u64,
    /// µs.
    #[prost(uint64, tag = "7")]
    pub duration: u64,
    #[prost(message, optional, tag = "8")]
    pub local_endpoint: Option<ProtoEndpoint>,
    #[prost(message, optional, tag = "9")]
    pub remote_endpoint: Option<ProtoEndpoint>,
    #[prost(message, repeated, tag = "10")]
    pub annotations: Vec<ProtoAnnotation>,
    #[prost(btree_map = "string, string", tag = "11")]
    pub tags: BTreeMap<String, String>,
    #[prost(bool, tag = "12")]
    pub debug: bool,
    #[prost(bool, tag = "13")]
    pub shared: bool,
}

/// `zipkin2.Endpoint`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoEndpoint {
    #[prost(string, tag = "1")]
    pub service_name: String,
    #[prost(bytes = "vec", tag = "2")]
    pub ipv4: Vec<u8>,
    #[prost(bytes = "vec", tag = "3")]
    pub ipv6: Vec<u8>,
    #[prost(int32, tag = "4")]
    pub port: i32,
}

/// `zipkin2.Annotation`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoAnnotation {
    /// Epoch µs.
    #[prost(fixed64, tag = "1")]
    pub timestamp: u64,
    #[prost(string, tag = "2")]
    pub value: String,
}

/// Parses a proto3 `ListOfSpans`.
pub fn decode_zipkin_proto(body: &[u8]) -> Result<Vec<ZipkinSpan>> {
    let list = match ListOfSpans::decode(body) {
        Ok(list) => list,
        // Text that is not UTF-8 costs that text, not the list ([`proto_text`]).
        Err(error) => {
            let (fixed, repaired) = proto_text::repair_utf8(body, Zipkin::List, zipkin_field)
                .ok_or_else(|| error.clone())?;
            tracing::debug!(repaired, "Zipkin protobuf text repaired");
            ListOfSpans::decode(&fixed[..]).map_err(|_| error)?
        }
    };
    Ok(list.spans.into_iter().map(to_json_model).collect())
}

/// The message types of a `ListOfSpans`, for [`proto_text::repair_utf8`].
#[derive(Clone, Copy)]
enum Zipkin {
    List,
    Span,
    Endpoint,
    Annotation,
    TagEntry,
}

fn zipkin_field(message: Zipkin, number: u32) -> Field<Zipkin> {
    match (message, number) {
        (Zipkin::List, 1) => Field::Nested(Zipkin::Span),
        (Zipkin::Span, 8 | 9) => Field::Nested(Zipkin::Endpoint),
        (Zipkin::Span, 10) => Field::Nested(Zipkin::Annotation),
        (Zipkin::Span, 11) => Field::Nested(Zipkin::TagEntry),
        (Zipkin::Span, 5) | (Zipkin::Endpoint, 1) | (Zipkin::Annotation, 2) => Field::Text,
        (Zipkin::TagEntry, 1 | 2) => Field::Text,
        _ => Field::Opaque,
    }
}

fn to_json_model(span: ProtoSpan) -> ZipkinSpan {
    let hex_id = |bytes: &[u8]| (!bytes.is_empty()).then(|| hex::encode(bytes));
    let kind = match span.kind {
        1 => Some("CLIENT"),
        2 => Some("SERVER"),
        3 => Some("PRODUCER"),
        4 => Some("CONSUMER"),
        _ => None,
    };
    let micros = |v: u64| (v != 0).then(|| serde_json::Number::from(v));
    ZipkinSpan {
        trace_id: hex_id(&span.trace_id),
        id: hex_id(&span.id),
        parent_id: hex_id(&span.parent_id),
        name: (!span.name.is_empty()).then_some(span.name),
        kind: kind.map(str::to_string),
        timestamp: micros(span.timestamp),
        duration: micros(span.duration),
        local_endpoint: span.local_endpoint.map(endpoint),
        remote_endpoint: span.remote_endpoint.map(endpoint),
        annotations: (!span.annotations.is_empty()).then(|| {
            span.annotations
                .into_iter()
                .map(|a| Annotation {
                    timestamp: micros(a.timestamp),
                    value: Some(a.value),
                })
                .collect()
        }),
        tags: (!span.tags.is_empty()).then(|| {
            span.tags
                .into_iter()
                .map(|(k, v)| (k, serde_json::Value::String(v)))
                .collect()
        }),
    }
}

fn endpoint(e: ProtoEndpoint) -> Endpoint {
    let mut endpoint = Endpoint {
        service_name: (!e.service_name.is_empty()).then_some(e.service_name),
        ipv4: None,
        ipv6: None,
        port: (e.port != 0).then_some(i64::from(e.port)),
    };
    endpoint.parse_ip(&e.ipv4);
    endpoint.parse_ip(&e.ipv6);
    endpoint
}
