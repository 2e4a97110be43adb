//! OTLP `ResourceSpans` → Arrow rows of the span table (see [`crate::schema`]).

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, FixedSizeBinaryBuilder, Int8Builder, Int64Builder, ListBuilder,
    StringBuilder, UInt32Builder,
};
use arrow::record_batch::RecordBatch;
use meshtel_model::otlp::common::v1::{AnyValue, KeyValue, any_value::Value};
use meshtel_model::otlp::trace::v1::{ResourceSpans, Span};
use meshtel_model::{Operation, SpanKind};
use prost::Message;

use crate::Result;
use crate::schema::{NO_SERVICE_NAME, push_packed, span_schema};

/// Separates key from typed value in an encoded attribute entry.
pub const KEY_SEPARATOR: char = '\0';

/// An attribute key as stored: a NUL in it (which would read as the separator) becomes
/// U+FFFD, the replacement character, as invalid text does.
pub fn stored_key(key: &str) -> std::borrow::Cow<'_, str> {
    if has_zero_byte(key.as_bytes()) {
        std::borrow::Cow::Owned(key.replace(KEY_SEPARATOR, "\u{fffd}"))
    } else {
        std::borrow::Cow::Borrowed(key)
    }
}

/// Whether `bytes` hold a zero byte ([`KEY_SEPARATOR`]), eight bytes at a time: a key
/// is a dozen bytes or two, where `str::contains` and `memchr` spend most of their
/// instructions setting up (measured: a tenth of the OTLP wire reader's, against a
/// thirtieth).
#[allow(clippy::manual_contains, reason = "`contains` is the memchr call this avoids")]
fn has_zero_byte(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    // Some byte of the word is zero exactly when this has a high bit set (a borrow
    // from a zero byte can only set bits above a byte that is itself zero).
    let has_zero = |word: &[u8]| {
        let mut eight = [0; 8];
        eight.copy_from_slice(word);
        let x = u64::from_ne_bytes(eight);
        x.wrapping_sub(ONES) & !x & HIGHS != 0
    };
    if bytes.len() < 8 {
        return bytes.iter().any(|&b| b == 0);
    }
    // Whole words, then the last eight bytes, which overlap the words before.
    bytes.chunks_exact(8).any(has_zero) || has_zero(&bytes[bytes.len() - 8..])
}

/// A resource's attributes as its rows store them: one packed string
/// ([`push_packed`]), or none for a resource without attributes.
pub(crate) fn encode_resource(attributes: &[KeyValue], scratch: &mut String) -> Vec<String> {
    let mut packed = String::new();
    for kv in attributes {
        encode_attribute(&kv.key, kv.value.as_ref(), scratch);
        push_packed(&mut packed, scratch);
    }
    if packed.is_empty() { Vec::new() } else { vec![packed] }
}

/// Arrow rows built from one request, with what the catalog needs to know.
pub struct EncodedBatch {
    /// The rows.
    pub batch: RecordBatch,
    /// Distinct (service, operation) pairs in the rows.
    pub operations: HashSet<(String, Operation)>,
}

/// A scalar attribute value, borrowed from wherever it was decoded.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Scalar<'a> {
    /// No value (or a profiling string-table index, which has none for traces).
    None,
    /// `string_value`.
    Str(&'a str),
    /// `bool_value`.
    Bool(bool),
    /// `int_value`.
    Int(i64),
    /// `double_value`.
    Double(f64),
    /// `bytes_value`.
    Bytes(&'a [u8]),
}

/// Writes `key \0 <type><value>` for one scalar attribute to `out` (cleared first).
pub fn encode_scalar(key: &str, value: Scalar<'_>, out: &mut String) {
    out.clear();
    write_scalar(key, value, out);
}

/// Appends `key \0 <type><value>` for one scalar attribute to `out`: to a string
/// builder's value in progress, it saves copying the entry once more.
pub(crate) fn write_scalar(key: &str, value: Scalar<'_>, out: &mut impl std::fmt::Write) {
    // The separator is spelled out below, with each type letter.
    const _: () = assert!(KEY_SEPARATOR == '\0');
    // Writing to a `String` or a string builder cannot fail.
    let _ = out.write_str(&stored_key(key));
    let _ = match value {
        Scalar::None => out.write_str("\0s"),
        Scalar::Str(s) => out.write_str("\0s").and_then(|()| out.write_str(s)),
        Scalar::Bool(b) => out.write_str(if b { "\0btrue" } else { "\0bfalse" }),
        Scalar::Int(i) => out
            .write_str("\0i")
            .and_then(|()| out.write_str(itoa::Buffer::new().format(i))),
        Scalar::Double(d) => write!(out, "\0d{d}"),
        Scalar::Bytes(b) => out
            .write_str("\0x")
            .and_then(|()| out.write_str(&hex::encode(b))),
    };
}

/// Writes `key \0 <type><value>` for one attribute to `out` (cleared first).
pub fn encode_attribute(key: &str, value: Option<&AnyValue>, out: &mut String) {
    let scalar = match value.and_then(|v| v.value.as_ref()) {
        // String-table indices belong to the profiling signal; a trace attribute
        // carrying one has no value of its own.
        None | Some(Value::StringValueStrindex(_)) => Scalar::None,
        Some(Value::StringValue(s)) => Scalar::Str(s),
        Some(Value::BoolValue(b)) => Scalar::Bool(*b),
        Some(Value::IntValue(i)) => Scalar::Int(*i),
        Some(Value::DoubleValue(d)) => Scalar::Double(*d),
        Some(Value::BytesValue(b)) => Scalar::Bytes(b),
        Some(other @ (Value::ArrayValue(_) | Value::KvlistValue(_))) => {
            out.clear();
            out.push_str(&stored_key(key));
            out.push(KEY_SEPARATOR);
            out.push('j');
            let mut any = AnyValue {
                value: Some(other.clone()),
            };
            non_finite_as_text(&mut any);
            out.push_str(&serde_json::to_string(&any).unwrap_or_default());
            return;
        }
    };
    encode_scalar(key, scalar, out);
}

/// JSON has no NaN or infinity (serde writes `null`): inside an array or map they are
/// kept as their text, `"NaN"`, `"Infinity"`, `"-Infinity"`, as OTLP/JSON ingest keeps
/// them.
fn non_finite_as_text(value: &mut AnyValue) {
    match &mut value.value {
        Some(Value::DoubleValue(d)) if !d.is_finite() => {
            let text = if d.is_nan() {
                "NaN"
            } else if d.is_sign_positive() {
                "Infinity"
            } else {
                "-Infinity"
            };
            value.value = Some(Value::StringValue(text.to_owned()));
        }
        Some(Value::ArrayValue(array)) => array.values.iter_mut().for_each(non_finite_as_text),
        Some(Value::KvlistValue(list)) => list
            .values
            .iter_mut()
            .filter_map(|kv| kv.value.as_mut())
            .for_each(non_finite_as_text),
        _ => {}
    }
}

/// The canonical text of a double in stored entries (shortest round-trip form); must
/// match what [`encode_attribute`] writes.
pub fn format_double(d: f64) -> String {
    format!("{d}")
}

/// The service name Jaeger derives from a resource's attributes.
pub fn service_name_of(attributes: &[KeyValue]) -> String {
    if attributes.is_empty() {
        return NO_SERVICE_NAME.to_string();
    }
    attributes
        .iter()
        .find(|kv| kv.key == "service.name")
        .and_then(
            |kv| match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(Value::StringValue(s)) => Some(s.clone()),
                _ => None,
            },
        )
        .unwrap_or_default()
}

/// One column builder per column of the span table.
pub(crate) struct Builders {
    trace_id: FixedSizeBinaryBuilder,
    span_id: FixedSizeBinaryBuilder,
    parent_span_id: FixedSizeBinaryBuilder,
    service: StringBuilder,
    name: StringBuilder,
    kind: Int8Builder,
    start: Int64Builder,
    duration: Int64Builder,
    status_code: Int8Builder,
    status_message: StringBuilder,
    trace_state: StringBuilder,
    flags: UInt32Builder,
    scope_name: StringBuilder,
    scope_version: StringBuilder,
    pub(crate) attributes: ListBuilder<StringBuilder>,
    resource_attributes: ListBuilder<StringBuilder>,
    event_attributes: ListBuilder<StringBuilder>,
    extras: BinaryBuilder,
}

/// The fields of a span every row stores, borrowed from a decoded `Span` or straight
/// from the protobuf encoding.
pub(crate) struct SpanFields<'a> {
    pub trace_id: &'a [u8],
    pub span_id: &'a [u8],
    pub parent_span_id: &'a [u8],
    pub trace_state: &'a str,
    pub name: &'a str,
    pub kind: i32,
    pub start_time_unix_nano: u64,
    pub end_time_unix_nano: u64,
    pub flags: u32,
    pub status_code: i32,
    pub status_message: &'a str,
}

impl<'a> SpanFields<'a> {
    fn of(span: &'a Span) -> Self {
        let (status_code, status_message) = span
            .status
            .as_ref()
            .map(|s| (s.code, s.message.as_str()))
            .unwrap_or((0, ""));
        SpanFields {
            trace_id: &span.trace_id,
            span_id: &span.span_id,
            parent_span_id: &span.parent_span_id,
            trace_state: &span.trace_state,
            name: &span.name,
            kind: span.kind,
            start_time_unix_nano: span.start_time_unix_nano,
            end_time_unix_nano: span.end_time_unix_nano,
            flags: span.flags,
            status_code,
            status_message,
        }
    }
}

/// Room a batch's builders reserve up front: a request's strings are copied once into
/// buffers of about their size, instead of into buffers that double as they fill (each
/// doubling a copy of what is there, into memory the kernel has to zero first).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Room {
    pub(crate) rows: usize,
    /// Bytes of the span attribute entries, at most.
    pub(crate) attribute_bytes: usize,
    /// Bytes of the resource attribute entries, repeated on every row, at most.
    pub(crate) resource_bytes: usize,
}

/// What a row's fixed columns take in the write queue's encoding, about: ids, times,
/// kind, status, and the offsets of its strings and lists.
const ROW_QUEUE_BYTES: usize = 96;

impl Room {
    /// About what the rows take once encoded for the WAL: the room a request takes in
    /// the write queue while it is read ([`crate::queue_room`]).
    pub(crate) fn queue_bytes(&self) -> usize {
        self.rows
            .saturating_mul(ROW_QUEUE_BYTES)
            .saturating_add(self.attribute_bytes)
            .saturating_add(self.resource_bytes)
    }
}

/// Counts the bytes a request's rows repeat of their groups, up to a bound (the write
/// queue's size): every row holds its resource's attribute entries and service and its
/// scope's name and version, so a request of a few megabytes could ask for gigabytes (a
/// large resource over many small spans). The encoders count each scope group's rows
/// before appending them and stop past the bound, before holding any of it.
#[derive(Debug)]
pub(crate) struct Repeats {
    bytes: u64,
    bound: u64,
}

impl Repeats {
    pub(crate) fn new(bound: u64) -> Self {
        Repeats { bytes: 0, bound }
    }

    /// Counts `rows` rows of a group whose repeated parts are these; an error once
    /// past the bound.
    pub(crate) fn add(
        &mut self,
        rows: usize,
        parts: (&str, &[String], &str, &str),
    ) -> Result<()> {
        let (service, encoded_resource, scope_name, scope_version) = parts;
        let per_row = service.len()
            + encoded_resource.iter().map(String::len).sum::<usize>()
            + scope_name.len()
            + scope_version.len();
        self.bytes = self
            .bytes
            .saturating_add((per_row as u64).saturating_mul(rows as u64));
        if self.bytes > self.bound {
            return Err(crate::Error::Refused(meshtel_model::Error::RepeatedTooLarge {
                bytes: self.bytes,
                queue_bytes: self.bound,
            }));
        }
        Ok(())
    }
}

/// Bytes an attribute entry takes at least on average, for its list's offsets.
const ENTRY_BYTES: usize = 16;

impl Builders {
    pub(crate) fn with_capacity(rows: usize) -> Self {
        Self::with_room(Room {
            rows,
            ..Room::default()
        })
    }

    pub(crate) fn with_room(room: Room) -> Self {
        let rows = room.rows;
        let list = |bytes: usize| {
            ListBuilder::with_capacity(
                StringBuilder::with_capacity(bytes / ENTRY_BYTES, bytes),
                rows,
            )
            .with_field(list_field())
        };
        Builders {
            trace_id: FixedSizeBinaryBuilder::with_capacity(rows, 16),
            span_id: FixedSizeBinaryBuilder::with_capacity(rows, 8),
            parent_span_id: FixedSizeBinaryBuilder::with_capacity(rows, 8),
            service: StringBuilder::with_capacity(rows, rows * 8),
            name: StringBuilder::with_capacity(rows, rows * 16),
            kind: Int8Builder::with_capacity(rows),
            start: Int64Builder::with_capacity(rows),
            duration: Int64Builder::with_capacity(rows),
            status_code: Int8Builder::with_capacity(rows),
            status_message: StringBuilder::with_capacity(rows, 0),
            trace_state: StringBuilder::with_capacity(rows, 0),
            flags: UInt32Builder::with_capacity(rows),
            scope_name: StringBuilder::with_capacity(rows, rows * 8),
            scope_version: StringBuilder::with_capacity(rows, rows * 4),
            attributes: list(room.attribute_bytes),
            resource_attributes: list(room.resource_bytes),
            event_attributes: ListBuilder::with_capacity(StringBuilder::new(), rows)
                .with_field(list_field()),
            extras: BinaryBuilder::with_capacity(rows, 0),
        }
    }

    pub(crate) fn finish(mut self) -> Result<RecordBatch> {
        // Builders grow by doubling; a finished batch lives in the head for seconds, so
        // give the slack back (up to half of the string bytes otherwise).
        let columns: Vec<ArrayRef> = vec![
            shrunk(self.trace_id.finish()),
            shrunk(self.span_id.finish()),
            shrunk(self.parent_span_id.finish()),
            shrunk(self.service.finish()),
            shrunk(self.name.finish()),
            shrunk(self.kind.finish()),
            shrunk(self.start.finish()),
            shrunk(self.duration.finish()),
            shrunk(self.status_code.finish()),
            shrunk(self.status_message.finish()),
            shrunk(self.trace_state.finish()),
            shrunk(self.flags.finish()),
            shrunk(self.scope_name.finish()),
            shrunk(self.scope_version.finish()),
            shrunk(self.attributes.finish()),
            shrunk(self.resource_attributes.finish()),
            shrunk(self.event_attributes.finish()),
            shrunk(self.extras.finish()),
        ];
        Ok(RecordBatch::try_new(span_schema(), columns)?)
    }
}

fn shrunk<A: Array + 'static>(mut array: A) -> ArrayRef {
    array.shrink_to_fit();
    Arc::new(array)
}

fn list_field() -> Arc<arrow::datatypes::Field> {
    Arc::new(arrow::datatypes::Field::new_list_field(
        arrow::datatypes::DataType::Utf8,
        false,
    ))
}

/// The distinct (service, operation) pairs of `seen` (resource index, span name, kind),
/// with each resource's service from `services`.
pub(crate) fn operations_of<'a>(
    seen: impl IntoIterator<Item = (usize, &'a str, i32)>,
    services: &[String],
) -> HashSet<(String, Operation)> {
    seen.into_iter()
        .filter_map(|(resource_index, name, kind)| {
            let service = services.get(resource_index)?;
            Some((
                service.clone(),
                Operation {
                    name: name.to_string(),
                    span_kind: SpanKind::from_otlp(kind),
                },
            ))
        })
        .collect()
}

/// Requests of at least this many spans are encoded on a blocking thread.
const ENCODE_ON_BLOCKING_THREAD_SPANS: usize = 2048;

/// [`encode_resource_spans`], on a blocking thread for a request of
/// [`ENCODE_ON_BLOCKING_THREAD_SPANS`] spans or more: milliseconds of work that would
/// otherwise hold up the runtime thread serving other requests.
pub(crate) async fn encode_resource_spans_off_runtime(
    resource_spans: Vec<ResourceSpans>,
    max_repeated_bytes: u64,
) -> Result<(EncodedBatch, usize)> {
    let rows: usize = resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    if rows < ENCODE_ON_BLOCKING_THREAD_SPANS {
        return encode_resource_spans(&resource_spans, max_repeated_bytes);
    }
    tokio::task::spawn_blocking(move || encode_resource_spans(&resource_spans, max_repeated_bytes))
        .await?
}

/// Converts spans to one Arrow batch. Spans whose ids have the wrong length are
/// skipped (ingest rejects them before this point); the count of skipped spans is
/// returned alongside. Refused ([`Repeats`]) when the rows would repeat more than
/// `max_repeated_bytes` of their resources and scopes.
pub fn encode_resource_spans(
    resource_spans: &[ResourceSpans],
    max_repeated_bytes: u64,
) -> Result<(EncodedBatch, usize)> {
    let rows: usize = resource_spans
        .iter()
        .flat_map(|r| &r.scope_spans)
        .map(|s| s.spans.len())
        .sum();
    let mut b = Builders::with_capacity(rows);
    // (resource index, span name, kind), borrowed from the request: no allocation per span.
    let mut seen: HashSet<(usize, &str, i32)> = HashSet::new();
    let mut services = Vec::with_capacity(resource_spans.len());
    let mut skipped = 0;
    let mut scratch = String::new();
    let mut repeats = Repeats::new(max_repeated_bytes);
    for (resource_index, rs) in resource_spans.iter().enumerate() {
        let resource_attrs: &[KeyValue] = rs
            .resource
            .as_ref()
            .map(|r| r.attributes.as_slice())
            .unwrap_or(&[]);
        let service = service_name_of(resource_attrs);
        let encoded_resource = encode_resource(resource_attrs, &mut scratch);
        for ss in &rs.scope_spans {
            let (scope_name, scope_version) = ss
                .scope
                .as_ref()
                .map(|s| (s.name.as_str(), s.version.as_str()))
                .unwrap_or(("", ""));
            repeats.add(
                ss.spans.len(),
                (&service, &encoded_resource, scope_name, scope_version),
            )?;
            for span in &ss.spans {
                if span.trace_id.len() != 16
                    || span.span_id.len() != 8
                    || !(span.parent_span_id.is_empty() || span.parent_span_id.len() == 8)
                {
                    skipped += 1;
                    continue;
                }
                append_span(&mut b, span, &service, &encoded_resource, &mut scratch)?;
                b.append_scope(scope_name, scope_version);
                seen.insert((resource_index, span.name.as_str(), span.kind));
            }
        }
        services.push(service);
    }
    let operations = operations_of(seen, &services);
    let batch = b.finish()?;
    Ok((EncodedBatch { batch, operations }, skipped))
}

/// Appends a span decoded into OTLP structs: its fields, attributes, events and links.
pub(crate) fn append_span(
    b: &mut Builders,
    span: &Span,
    service: &str,
    encoded_resource: &[String],
    scratch: &mut String,
) -> Result<()> {
    b.append_fields(&SpanFields::of(span), service, encoded_resource)?;
    for kv in &span.attributes {
        encode_attribute(&kv.key, kv.value.as_ref(), scratch);
        b.attributes.values().append_value(scratch.as_str());
    }
    b.attributes.append(true);
    if span.events.is_empty() {
        b.event_attributes.append_null();
    } else {
        for event in &span.events {
            // The name is the log's `event` field unless an attribute takes that key.
            if !event.name.is_empty() && !event.attributes.iter().any(|kv| kv.key == "event") {
                encode_scalar("event", Scalar::Str(&event.name), scratch);
                b.event_attributes.values().append_value(scratch.as_str());
            }
            for kv in &event.attributes {
                encode_attribute(&kv.key, kv.value.as_ref(), scratch);
                b.event_attributes.values().append_value(scratch.as_str());
            }
        }
        b.event_attributes.append(true);
    }
    if span.events.is_empty()
        && span.links.is_empty()
        && span.dropped_events_count == 0
        && span.dropped_links_count == 0
    {
        b.extras.append_null();
    } else {
        let extras = Span {
            events: span.events.clone(),
            links: span.links.clone(),
            dropped_events_count: span.dropped_events_count,
            dropped_links_count: span.dropped_links_count,
            ..Default::default()
        };
        b.extras.append_value(extras.encode_to_vec());
    }
    Ok(())
}

impl Builders {
    /// Appends everything of a row but its span attributes, events and extras: the
    /// caller appends those next.
    pub(crate) fn append_fields(
        &mut self,
        span: &SpanFields<'_>,
        service: &str,
        encoded_resource: &[String],
    ) -> Result<()> {
        self.trace_id.append_value(span.trace_id)?;
        self.span_id.append_value(span.span_id)?;
        if span.parent_span_id.len() == 8 && span.parent_span_id.iter().any(|&x| x != 0) {
            self.parent_span_id.append_value(span.parent_span_id)?;
        } else {
            self.parent_span_id.append_null();
        }
        self.service.append_value(service);
        self.name.append_value(span.name);
        self.kind.append_value(span.kind.clamp(0, 127) as i8);
        let start = i64::try_from(span.start_time_unix_nano).unwrap_or(i64::MAX);
        self.start.append_value(start);
        let duration = span
            .end_time_unix_nano
            .saturating_sub(span.start_time_unix_nano);
        self.duration
            .append_value(i64::try_from(duration).unwrap_or(i64::MAX));
        self.status_code
            .append_value(span.status_code.clamp(0, 127) as i8);
        self.status_message.append_value(span.status_message);
        self.trace_state.append_value(span.trace_state);
        self.flags.append_value(span.flags);
        for entry in encoded_resource {
            self.resource_attributes.values().append_value(entry);
        }
        self.resource_attributes.append(true);
        Ok(())
    }

    /// Appends the scope columns of the row just started.
    pub(crate) fn append_scope(&mut self, name: &str, version: &str) {
        self.scope_name.append_value(name);
        self.scope_version.append_value(version);
    }

    /// Ends the row just started as a span without events or links.
    pub(crate) fn append_no_events(&mut self) {
        self.event_attributes.append_null();
        self.extras.append_null();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn zero_bytes_are_found_wherever_they_are(
            bytes in proptest::collection::vec(prop_oneof![Just(0u8), Just(1), Just(0x80), Just(0xff), any::<u8>()], 0..40)
        ) {
            prop_assert_eq!(has_zero_byte(&bytes), bytes.contains(&0));
        }
    }

    #[test]
    fn a_key_holding_the_separator_is_stored_with_a_replacement() {
        assert_eq!(stored_key("http.method"), "http.method");
        assert_eq!(stored_key("a\0b.c\0defghijkl\0"), "a\u{fffd}b.c\u{fffd}defghijkl\u{fffd}");
        assert_eq!(stored_key("sixteen.bytes.k\0"), "sixteen.bytes.k\u{fffd}");
    }
}
