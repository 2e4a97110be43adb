//! Zipkin v2 JSON spans → OTLP `ResourceSpans` (spec §5.2, §5.3; the mapping of the
//! OpenTelemetry Collector's `zipkinv2` translator, with the Zipkin server's id rules).
//!
//! - one `ResourceSpans` per `localEndpoint.serviceName` and set of resource-convention
//!   tags (`host.*`, `k8s.*`, `service.version`, ...) (first-seen order), with
//!   `service.name` set and those tags moved to it; without a service name the
//!   resource stays empty, which Jaeger shows as `OTLPResourceNoServiceName`;
//! - one `ScopeSpans` per `otel.scope.name` / `otel.library.name` tag (and version);
//! - ids: `traceId` 1–32 and `id`/`parentId` 1–16 lower-hex digits, left-padded;
//!   upper case, other characters and all-zero `traceId`/`id` are refused (400 naming
//!   the span index and field). An all-zero `parentId`, or one equal to `id`, is
//!   dropped;
//! - `name` lower-cased; `kind` CLIENT/SERVER/PRODUCER/CONSUMER, or without one
//!   INTERNAL when tag `span.kind=internal`, else UNSPECIFIED;
//! - tags become string attributes, sorted by key. `otel.status_code` /
//!   `otel.status_description` become the status; an `error` tag (other than
//!   `"false"`) makes it ERROR and is removed when it is `"true"` (otherwise it keeps
//!   the error text). `w3c.tracestate` becomes the trace state;
//! - endpoints add `net.host.ip`, `net.host.port`, `peer.service`, `net.peer.ip`,
//!   `net.peer.port` (a tag of the same name wins for the strings; ports are ints);
//! - `timestamp`/`duration` µs → ns, negative → 0, past year 2262 (nanoseconds sent
//!   as microseconds, most often) refused naming the value; no `timestamp` → start at
//!   Unix 0 and attribute `otel.zipkin.absentField.startTime=true`;
//! - annotations (sorted, deduplicated) → events; the OpenTelemetry round-trip
//!   encoding `name|{json attributes}|dropped count` is decoded.

use std::collections::{BTreeMap, HashMap};
use std::net::{Ipv4Addr, Ipv6Addr};

use foldhash::fast::RandomState;
use meshtel_model::otlp::common::v1::any_value::Value as AnyValueKind;
use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::span::Event;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::Deserialize;
use serde_json::Number;

use crate::error::{ECHO_MAX_CHARS, Error, Result, echo};

pub mod proto;
pub mod v1;

pub use proto::decode_zipkin_proto;
pub use v1::{decode_zipkin_v1_json, decode_zipkin_v1_thrift};

/// Marker attribute for a span sent without a `timestamp`.
pub const START_TIME_ABSENT_ATTRIBUTE: &str = "otel.zipkin.absentField.startTime";

/// One span of a Zipkin v2 JSON list. Unknown fields (`debug`, `shared`, ...) are
/// ignored.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ZipkinSpan {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    name: Option<String>,
    kind: Option<String>,
    timestamp: Option<Number>,
    duration: Option<Number>,
    local_endpoint: Option<Endpoint>,
    remote_endpoint: Option<Endpoint>,
    annotations: Option<Vec<Annotation>>,
    tags: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Endpoint {
    service_name: Option<String>,
    ipv4: Option<String>,
    ipv6: Option<String>,
    port: Option<i64>,
}

impl Endpoint {
    /// Sets the address of binary form `bytes` (Zipkin protobuf and Thrift), as the
    /// Zipkin server's `Endpoint.Builder.parseIp` does: 4 bytes are IPv4; 16 bytes are
    /// IPv6, except an IPv4-compatible address (`::a.b.c.d`, 96 zero bits first; not
    /// `::1`), which is the IPv4 it embeds. Other lengths set nothing.
    fn parse_ip(&mut self, bytes: &[u8]) {
        if let Ok(v4) = <[u8; 4]>::try_from(bytes) {
            self.ipv4 = Some(Ipv4Addr::from(v4).to_string());
        } else if let Ok(v6) = <[u8; 16]>::try_from(bytes) {
            let (zeros, last) = v6.split_at(12);
            if zeros.iter().all(|b| *b == 0) && last != [0, 0, 0, 1] {
                self.ipv4 = Some(Ipv4Addr::new(last[0], last[1], last[2], last[3]).to_string());
            } else {
                self.ipv6 = Some(Ipv6Addr::from(v6).to_string());
            }
        }
    }
}

#[derive(Debug, Deserialize)]
struct Annotation {
    timestamp: Option<Number>,
    value: Option<String>,
}

/// Parses a Zipkin v2 JSON span list.
pub fn decode_zipkin_json(body: &[u8]) -> Result<Vec<ZipkinSpan>> {
    decode_json_list(body)
}

/// Parses a JSON list of Zipkin spans of either version.
fn decode_json_list<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<Vec<T>> {
    crate::otlp_json::check_json_objects(body)?;
    let (spans, repaired) = meshtel_model::json_text::parse_json_text(body)?;
    if repaired > 0 {
        tracing::debug!(repaired, "Zipkin JSON text repaired");
    }
    Ok(spans)
}

/// Converts Zipkin spans to OTLP, grouped by service and scope; see the module docs.
/// The first invalid span fails the whole list.
pub fn zipkin_spans_to_otlp(spans: Vec<ZipkinSpan>) -> Result<Vec<ResourceSpans>> {
    let placed = zipkin_spans_to_otlp_placed(spans);
    match placed.refused.into_iter().next() {
        Some(error) => Err(error),
        None => Ok(placed.resource_spans),
    }
}

/// Where each converted span came from: `[resource][scope][span]` → its index in the
/// Zipkin list.
pub type ZipkinPositions = Vec<Vec<Vec<usize>>>;

/// Zipkin spans converted to OTLP, with what could not be.
pub struct PlacedSpans {
    /// The spans converted, grouped by service and scope.
    pub resource_spans: Vec<ResourceSpans>,
    /// The Zipkin index of every converted span, so that a problem found in the OTLP
    /// form can be told by the span's place in the list sent.
    pub positions: ZipkinPositions,
    /// Spans left out as invalid (an all-zero or missing id, a tag that is not a
    /// string, ...), each error naming the span by its place in the list.
    pub refused: Vec<Error>,
}

/// [`zipkin_spans_to_otlp`], keeping the valid spans of a list that holds invalid
/// ones: a reporter batches spans of many traces, and one bad span must not cost the
/// others.
pub fn zipkin_spans_to_otlp_placed(spans: Vec<ZipkinSpan>) -> PlacedSpans {
    zipkin_spans_to_otlp_placed_from(spans.into_iter().enumerate())
}

/// [`zipkin_spans_to_otlp_placed`] for spans each named by the index given with it
/// (that of the v1 span it was converted from, for the v1 API).
pub fn zipkin_spans_to_otlp_placed_from(
    spans: impl IntoIterator<Item = (usize, ZipkinSpan)>,
) -> PlacedSpans {
    // Spans of one service with other resource tags (two pods of it) are two resources.
    // Groups and their scopes are found through maps: a list of 100,000 spans each of
    // another service must not cost a comparison with every group before it.
    type ResourceKey = (String, BTreeMap<String, String>);
    type ScopeKey = Option<(String, String)>;
    let mut groups: Vec<ResourceSpans> = Vec::new();
    let mut group_of: HashMap<ResourceKey, usize, RandomState> = HashMap::default();
    let mut scopes_of: Vec<HashMap<ScopeKey, usize, RandomState>> = Vec::new();
    let mut positions: ZipkinPositions = Vec::new();
    let mut refused = Vec::new();
    for (index, zipkin_span) in spans {
        let converted = match convert_span(index, zipkin_span) {
            Ok(converted) => converted,
            Err(error) => {
                refused.push(error);
                continue;
            }
        };
        let key = (
            converted.service_name.clone(),
            converted.resource_tags.clone(),
        );
        let position = *group_of.entry(key).or_insert_with(|| {
            groups.push(new_resource_group(&converted));
            positions.push(Vec::new());
            scopes_of.push(HashMap::default());
            groups.len() - 1
        });
        let resource_group = &mut groups[position];
        let placed = &mut positions[position];
        let scope_key = converted
            .scope
            .as_ref()
            .map(|scope| (scope.name.clone(), scope.version.clone()));
        match scopes_of[position].get(&scope_key) {
            Some(&scope_position) => {
                resource_group.scope_spans[scope_position]
                    .spans
                    .push(converted.span);
                placed[scope_position].push(index);
            }
            None => {
                scopes_of[position].insert(scope_key, resource_group.scope_spans.len());
                resource_group.scope_spans.push(ScopeSpans {
                    scope: converted.scope,
                    spans: vec![converted.span],
                    schema_url: String::new(),
                });
                placed.push(vec![index]);
            }
        }
    }
    PlacedSpans {
        resource_spans: groups,
        positions,
        refused,
    }
}

/// `message` with each OTLP path of a span
/// (`resource_spans[R].scope_spans[S].spans[N]`) written as the Zipkin list's
/// `spans[I]`; a path `positions` does not know is left as it is.
pub fn zipkin_paths(message: &str, positions: &ZipkinPositions) -> String {
    const START: &str = "resource_spans[";
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(START) {
        out.push_str(&rest[..at]);
        let path = &rest[at..];
        match otlp_path(path).and_then(|(r, s, n, len)| {
            let index = *positions.get(r)?.get(s)?.get(n)?;
            Some((index, len))
        }) {
            Some((index, len)) => {
                out.push_str(&format!("spans[{index}]"));
                rest = &path[len..];
            }
            None => {
                out.push_str(START);
                rest = &path[START.len()..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Reads `resource_spans[R].scope_spans[S].spans[N]` at the start of `text`: the three
/// indexes and the path's length.
fn otlp_path(text: &str) -> Option<(usize, usize, usize, usize)> {
    let mut rest = text;
    let mut index = |prefix: &str| -> Option<usize> {
        let after = rest.strip_prefix(prefix)?;
        let end = after.find(']')?;
        let value = after[..end].parse().ok()?;
        rest = &after[end + 1..];
        Some(value)
    };
    let r = index("resource_spans[")?;
    let s = index(".scope_spans[")?;
    let n = index(".spans[")?;
    Some((r, s, n, text.len() - rest.len()))
}

fn new_resource_group(first: &ConvertedSpan) -> ResourceSpans {
    let mut attributes = Vec::new();
    if !first.service_name.is_empty() {
        // A `service.name` among the resource tags takes its place; the other keys are
        // distinct (a map's), so none is looked for: a span of 500,000 resource tags
        // must not compare each with all before it.
        let service = first.resource_tags.get("service.name").unwrap_or(&first.service_name);
        attributes.push(string_attribute("service.name", service));
        attributes.extend(
            first
                .resource_tags
                .iter()
                .filter(|(key, _)| key.as_str() != "service.name")
                .map(|(key, value)| string_attribute(key, value)),
        );
    }
    ResourceSpans {
        resource: Some(Resource {
            attributes,
            ..Resource::default()
        }),
        scope_spans: Vec::new(),
        schema_url: String::new(),
    }
}

struct ConvertedSpan {
    service_name: String,
    resource_tags: BTreeMap<String, String>,
    scope: Option<InstrumentationScope>,
    span: Span,
}

fn convert_span(index: usize, zipkin: ZipkinSpan) -> Result<ConvertedSpan> {
    let trace_id = parse_trace_id(index, zipkin.trace_id.as_deref())?;
    let span_id = parse_span_id(index, "id", zipkin.id.as_deref().unwrap_or_default())?;
    if span_id == [0; 8] {
        return Err(invalid(index, "id", "must not be all zeros"));
    }
    let parent_span_id = match zipkin.parent_id.as_deref() {
        None | Some("") => Vec::new(),
        Some(text) => {
            let parent = parse_span_id(index, "parentId", text)?;
            if parent == [0; 8] || parent == span_id {
                Vec::new()
            } else {
                parent.to_vec()
            }
        }
    };
    let mut tags = string_tags(index, zipkin.tags)?;

    let service_name = zipkin
        .local_endpoint
        .as_ref()
        .and_then(|endpoint| endpoint.service_name.clone())
        .unwrap_or_default();
    let mut resource_tags = BTreeMap::new();
    if !service_name.is_empty() {
        let keys: Vec<String> = tags
            .keys()
            .filter(|key| is_resource_attribute(key))
            .cloned()
            .collect();
        for key in keys {
            if let Some(value) = tags.remove(&key) {
                resource_tags.insert(key, value);
            }
        }
    }
    let scope = take_scope(&mut tags);
    let kind = span_kind(index, zipkin.kind.as_deref(), &mut tags)?;
    let status = take_status(&mut tags);
    let trace_state = tags.remove("w3c.tracestate").unwrap_or_default();

    let mut attributes: Vec<KeyValue> = tags
        .iter()
        .map(|(key, value)| string_attribute(key, value))
        .collect();
    endpoint_attributes(
        &mut attributes,
        zipkin.local_endpoint.as_ref(),
        zipkin.remote_endpoint.as_ref(),
    );

    let duration_nanos = micros_to_nanos(zipkin.duration.as_ref())
        .map_err(|problem| invalid(index, "duration", &problem))?;
    // Zero or negative is no timestamp, as Zipkin reads it (and as the proto form,
    // where 0 is unset, says).
    let start_time_unix_nano = match micros_to_nanos(zipkin.timestamp.as_ref())
        .map_err(|problem| invalid(index, "timestamp", &problem))?
    {
        0 => {
            attributes.push(KeyValue {
                key: START_TIME_ABSENT_ATTRIBUTE.to_string(),
                value: Some(AnyValue {
                    value: Some(AnyValueKind::BoolValue(true)),
                }),
                key_strindex: 0,
            });
            0
        }
        start => start,
    };

    let span = Span {
        trace_id: trace_id.to_vec(),
        span_id: span_id.to_vec(),
        trace_state,
        parent_span_id,
        name: zipkin.name.unwrap_or_default().to_lowercase(),
        kind,
        start_time_unix_nano,
        end_time_unix_nano: start_time_unix_nano.saturating_add(duration_nanos),
        attributes,
        events: annotations_to_events(index, zipkin.annotations.unwrap_or_default())?,
        status,
        ..Span::default()
    };
    Ok(ConvertedSpan {
        service_name,
        resource_tags,
        scope,
        span,
    })
}

fn invalid(index: usize, field: &str, problem: &str) -> Error {
    Error::InvalidZipkinSpan(format!("spans[{index}].{field}: {problem}"))
}

/// `tags.<key>`; a key too long or odd to repeat as is goes through [`echo`].
fn tag_field(key: &str) -> String {
    if key.len() <= ECHO_MAX_CHARS && !key.contains(char::is_control) {
        format!("tags.{key}")
    } else {
        format!("tags.{}", echo(key))
    }
}

/// Checks that `text` is 1..=`max_digits` lower-hex digits and returns its value.
fn parse_lower_hex(index: usize, field: &str, text: &str, max_digits: usize) -> Result<u128> {
    if text.is_empty() {
        return Err(invalid(index, field, "is required"));
    }
    if text.len() > max_digits {
        return Err(invalid(
            index,
            field,
            &format!("{} is longer than {max_digits} hex characters", echo(text)),
        ));
    }
    if let Some(bad) = text.chars().find(|c| !matches!(c, '0'..='9' | 'a'..='f')) {
        let problem = if bad.is_ascii_hexdigit() {
            format!("{} should be lower-hex encoded with no prefix", echo(text))
        } else {
            format!("{} is not a hex string", echo(text))
        };
        return Err(invalid(index, field, &problem));
    }
    u128::from_str_radix(text, 16).map_err(|_| invalid(index, field, "is not a hex string"))
}

/// A 64- or 128-bit trace id; shorter forms are left-padded, and a 128-bit id whose
/// high half is zero equals its 64-bit form, as the Zipkin server reads them.
fn parse_trace_id(index: usize, text: Option<&str>) -> Result<[u8; 16]> {
    let value = parse_lower_hex(index, "traceId", text.unwrap_or_default(), 32)?;
    if value == 0 {
        return Err(invalid(index, "traceId", "must not be all zeros"));
    }
    Ok(value.to_be_bytes())
}

fn parse_span_id(index: usize, field: &str, text: &str) -> Result<[u8; 8]> {
    let value = parse_lower_hex(index, field, text, 16)?;
    let value = u64::try_from(value).map_err(|_| invalid(index, field, "is too long"))?;
    Ok(value.to_be_bytes())
}

/// Zipkin tags must be strings; anything else names the tag in the error.
fn string_tags(
    index: usize,
    tags: Option<BTreeMap<String, serde_json::Value>>,
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (key, value) in tags.unwrap_or_default() {
        match value {
            serde_json::Value::String(text) => {
                out.insert(key, text);
            }
            serde_json::Value::Null => {}
            _ => {
                return Err(invalid(
                    index,
                    &tag_field(&key),
                    "tag values must be strings",
                ));
            }
        }
    }
    Ok(out)
}

/// Resource semantic-convention attributes (semconv 1.6.1, as the Collector lists
/// them), which Zipkin clients send as tags.
fn is_resource_attribute(key: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "cloud.",
        "aws.ecs.",
        "aws.eks.",
        "aws.log.",
        "container.",
        "device.",
        "host.",
        "k8s.",
        "os.",
        "process.",
        "telemetry.sdk.",
        "webengine.",
    ];
    const EXACT: &[&str] = &[
        "deployment.environment",
        "faas.name",
        "faas.id",
        "faas.version",
        "faas.instance",
        "faas.max_memory",
        "service.name",
        "service.namespace",
        "service.instance.id",
        "service.version",
        "telemetry.auto.version",
    ];
    PREFIXES.iter().any(|prefix| key.starts_with(prefix)) || EXACT.contains(&key)
}

fn take_scope(tags: &mut BTreeMap<String, String>) -> Option<InstrumentationScope> {
    let name = tags
        .remove("otel.scope.name")
        .or_else(|| tags.remove("otel.library.name"));
    let version = tags
        .remove("otel.scope.version")
        .or_else(|| tags.remove("otel.library.version"));
    tags.remove("otel.library.name");
    tags.remove("otel.library.version");
    if name.is_none() && version.is_none() {
        return None;
    }
    Some(InstrumentationScope {
        name: name.unwrap_or_default(),
        version: version.unwrap_or_default(),
        ..InstrumentationScope::default()
    })
}

fn span_kind(index: usize, kind: Option<&str>, tags: &mut BTreeMap<String, String>) -> Result<i32> {
    Ok(match kind {
        Some("CLIENT") => 3,
        Some("SERVER") => 2,
        Some("PRODUCER") => 4,
        Some("CONSUMER") => 5,
        Some(other) => {
            return Err(invalid(
                index,
                "kind",
                &format!(
                    "{} is not one of CLIENT, SERVER, PRODUCER, CONSUMER",
                    echo(other)
                ),
            ));
        }
        None => match tags.remove("span.kind").as_deref() {
            Some("internal") => 1,
            _ => 0,
        },
    })
}

fn take_status(tags: &mut BTreeMap<String, String>) -> Option<Status> {
    let mut status = None;
    if let Some(code) = tags.remove("otel.status_code") {
        let code = match code.to_ascii_uppercase().as_str() {
            "OK" | "STATUS_CODE_OK" => 1,
            "ERROR" | "STATUS_CODE_ERROR" => 2,
            _ => 0,
        };
        status = Some(Status {
            code,
            message: tags.remove("otel.status_description").unwrap_or_default(),
        });
    }
    match tags.get("error").map(String::as_str) {
        None | Some("false") => {}
        Some(value) => {
            if value == "true" {
                tags.remove("error");
            }
            status.get_or_insert_with(Status::default).code = 2;
        }
    }
    status
}

fn endpoint_attributes(
    attributes: &mut Vec<KeyValue>,
    local: Option<&Endpoint>,
    remote: Option<&Endpoint>,
) {
    if let Some(local) = local {
        if let Some(ip) = endpoint_ip(local) {
            insert_if_absent(attributes, string_attribute("net.host.ip", ip));
        }
        if let Some(port) = endpoint_port(local) {
            upsert(attributes, int_attribute("net.host.port", port));
        }
    }
    if let Some(remote) = remote {
        if let Some(service) = remote.service_name.as_deref().filter(|s| !s.is_empty()) {
            insert_if_absent(attributes, string_attribute("peer.service", service));
        }
        if let Some(ip) = endpoint_ip(remote) {
            insert_if_absent(attributes, string_attribute("net.peer.ip", ip));
        }
        if let Some(port) = endpoint_port(remote) {
            upsert(attributes, int_attribute("net.peer.port", port));
        }
    }
}

/// IPv4 when present, else IPv6.
fn endpoint_ip(endpoint: &Endpoint) -> Option<&str> {
    // An address that does not parse is dropped, as Zipkin's endpoint builder does.
    endpoint
        .ipv4
        .as_deref()
        .filter(|ip| ip.parse::<std::net::Ipv4Addr>().is_ok())
        .or_else(|| {
            endpoint
                .ipv6
                .as_deref()
                .filter(|ip| ip.parse::<std::net::Ipv6Addr>().is_ok())
        })
}

/// A known port; Zipkin leaves it out (or sends 0) when unknown.
fn endpoint_port(endpoint: &Endpoint) -> Option<i64> {
    endpoint.port.filter(|port| (1..=65535).contains(port))
}

/// Most microseconds a time or duration may hold: its nanoseconds fit in the signed
/// 64 bits spans are stored in (year 2262). A larger value is most often nanoseconds
/// sent where Zipkin wants microseconds.
const MAX_MICROS: u64 = i64::MAX as u64 / 1000;

/// Microseconds (integer, or a float some clients send) to nanoseconds; negative
/// and absent values are 0. A value past [`MAX_MICROS`] is an error naming it.
fn micros_to_nanos(value: Option<&Number>) -> std::result::Result<u64, String> {
    let Some(value) = value else {
        return Ok(0);
    };
    let too_large = || {
        format!(
            "{value} µs is past year 2262 (at most {MAX_MICROS}): Zipkin times and durations \
             are in microseconds, not nanoseconds"
        )
    };
    let micros = match (value.as_u64(), value.as_i64(), value.as_f64()) {
        (Some(micros), _, _) => micros,
        (None, Some(_), _) => 0,
        (None, None, Some(f)) if f <= 0.0 => 0,
        (None, None, Some(f)) if f > MAX_MICROS as f64 => return Err(too_large()),
        (None, None, Some(f)) => f as u64,
        (None, None, None) => 0,
    };
    if micros > MAX_MICROS {
        return Err(too_large());
    }
    Ok(micros * 1000)
}

fn annotations_to_events(index: usize, mut annotations: Vec<Annotation>) -> Result<Vec<Event>> {
    let mut pairs: Vec<(u64, String)> = Vec::with_capacity(annotations.len());
    for (at, annotation) in annotations.drain(..).enumerate() {
        let time = micros_to_nanos(annotation.timestamp.as_ref())
            .map_err(|problem| invalid(index, &format!("annotations[{at}].timestamp"), &problem))?;
        pairs.push((time, annotation.value.unwrap_or_default()));
    }
    pairs.sort();
    pairs.dedup();
    Ok(pairs
        .into_iter()
        .map(|(time_unix_nano, value)| annotation_to_event(time_unix_nano, value))
        .collect())
}

/// Decodes `name|{json attributes}|dropped count` (OpenTelemetry's encoding of an
/// event with attributes); any other value is the event name as is.
fn annotation_to_event(time_unix_nano: u64, value: String) -> Event {
    let plain = |value: String| Event {
        time_unix_nano,
        name: value,
        ..Event::default()
    };
    let parts: Vec<&str> = value.split('|').collect();
    if parts.len() < 3 {
        return plain(value);
    }
    let json_text = parts[1..parts.len() - 1].join("|");
    let (Ok(serde_json::Value::Object(map)), Ok(dropped)) = (
        serde_json::from_str::<serde_json::Value>(&json_text),
        parts[parts.len() - 1].parse::<u32>(),
    ) else {
        return plain(value);
    };
    let attributes = map
        .into_iter()
        .filter_map(|(key, value)| {
            let kind = match value {
                serde_json::Value::String(text) => AnyValueKind::StringValue(text),
                serde_json::Value::Bool(flag) => AnyValueKind::BoolValue(flag),
                serde_json::Value::Number(number) => match number.as_i64() {
                    Some(int) => AnyValueKind::IntValue(int),
                    None => AnyValueKind::DoubleValue(number.as_f64()?),
                },
                _ => return None,
            };
            Some(KeyValue {
                key,
                value: Some(AnyValue { value: Some(kind) }),
                key_strindex: 0,
            })
        })
        .collect();
    Event {
        time_unix_nano,
        name: parts[0].to_string(),
        attributes,
        dropped_attributes_count: dropped,
    }
}

fn string_attribute(key: &str, value: &str) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::StringValue(value.to_string())),
        }),
        key_strindex: 0,
    }
}

fn int_attribute(key: &str, value: i64) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue {
            value: Some(AnyValueKind::IntValue(value)),
        }),
        key_strindex: 0,
    }
}

fn insert_if_absent(attributes: &mut Vec<KeyValue>, attribute: KeyValue) {
    if !attributes
        .iter()
        .any(|existing| existing.key == attribute.key)
    {
        attributes.push(attribute);
    }
}

fn upsert(attributes: &mut Vec<KeyValue>, attribute: KeyValue) {
    match attributes
        .iter_mut()
        .find(|existing| existing.key == attribute.key)
    {
        Some(existing) => *existing = attribute,
        None => attributes.push(attribute),
    }
}
