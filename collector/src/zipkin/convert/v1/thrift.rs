//! Zipkin v1 Thrift: `POST /api/v1/spans` with `Content-Type: application/x-thrift`,
//! a list of `zipkinCore.thrift` spans in Thrift's binary protocol (`TBinaryProtocol`:
//! the list's element type, 12 for a struct, and its count as a big-endian i32, then
//! each span as its fields, each a type byte and an i16 id before its value, ended by a
//! 0). Old Zipkin reporters send it: zipkin-go's and Brave's before Zipkin v2, and the
//! tracers of the Scribe era.
//!
//! Read as the Zipkin server reads it, into the same [`V1Span`]s as v1 JSON, then
//! converted alike:
//! - a field is known by its id *and* type (`trace_id` 1, `name` 3, `id` 4,
//!   `parent_id` 5, `annotations` 6, `binary_annotations` 8, `timestamp` 10,
//!   `duration` 11, `trace_id_high` 12); any other field is skipped, whatever it holds;
//! - ids are written as hex, `trace_id_high` before `trace_id` when not 0; a zero id,
//!   parent, timestamp or duration is an absent one, and so is a trace id whose low
//!   half is 0 (a span without its ids is refused by name, as in JSON);
//! - an annotation without its timestamp (or with 0) or value is dropped, as the Zipkin
//!   server drops it (v1 JSON refuses one: Thrift writers never wrote such);
//! - a binary annotation of type `STRING` (6) is a tag; one of type `BOOL` (0) whose
//!   value is 1, with an endpoint, and keyed `ca`, `sa` or `ma` is an address; the
//!   other types are dropped, as in JSON;
//! - an endpoint's `ipv4` is an i32 (0 none), its `port` an i16 read as unsigned (0
//!   none), its `ipv6` 16 bytes ([`Endpoint::parse_ip`]: an IPv4-compatible one is the
//!   IPv4 it embeds); text that is not UTF-8 has its bad bytes replaced.
//!
//! Stricter than the Zipkin server about framing only: bytes after the list, a list of
//! spans or annotations whose elements are not structs, and a value of an unknown type
//! are refused where it would ignore them (no Thrift writer makes them).
//!
//! Read by hand over the body, which is in memory and bounded by `max_request_bytes`:
//! every length and count is checked against the bytes left before anything is taken
//! or allocated (a Thrift library's readers allocate a declared length first), nested
//! values are skipped at most [`MAX_DEPTH`] deep, and what reading takes in memory is
//! held from the in-flight budget first ([`parse_bytes`]). A list of more than
//! `max_spans_per_request` spans is refused before any is read. A malformed list is
//! refused whole; the error names the span, the field path and the byte for a problem
//! inside a span (`spans[0]: annotations[1].host.service_name: a length of 900 at byte
//! 212, past the end (12 bytes left)`), the byte for one in the list's own header or
//! after it.

use serde_json::Number;

use super::super::Endpoint;
use super::{Format, MAX_MICROS, V1Annotation, V1BinaryAnnotation, V1Span};
use crate::error::{Error, Result};

// Thrift's type ids.
pub(crate) const STOP: u8 = 0;
pub(crate) const BOOL: u8 = 2;
pub(crate) const BYTE: u8 = 3;
pub(crate) const DOUBLE: u8 = 4;
pub(crate) const I16: u8 = 6;
pub(crate) const I32: u8 = 8;
pub(crate) const I64: u8 = 10;
pub(crate) const STRING: u8 = 11;
pub(crate) const STRUCT: u8 = 12;
pub(crate) const MAP: u8 = 13;
pub(crate) const SET: u8 = 14;
pub(crate) const LIST: u8 = 15;

/// How deep a skipped value may nest: `zipkinCore.thrift` nests three deep (a span's
/// annotation's endpoint), so this is only met on purpose.
const MAX_DEPTH: u32 = 16;

/// What a struct of the body takes in memory once read and converted, as JSON's
/// objects are counted (`meshtel_model::otlp_json::json_parse_bytes`): a kept
/// annotation becomes a `V1Annotation`, a core or ordinary annotation, a v2 annotation
/// and an OTLP event, its endpoint copied into each side it names, out of 20 bytes of
/// Thrift.
pub(crate) const PARSED_BYTES_PER_STRUCT: usize = 768;

/// `BinaryAnnotation.annotation_type` values read.
const TYPE_BOOL: i32 = 0;
const TYPE_STRING: i32 = 6;

/// The fields of each struct by id, for errors.
const SPAN_FIELDS: &[(i16, &str)] = &[
    (1, "trace_id"),
    (3, "name"),
    (4, "id"),
    (5, "parent_id"),
    (6, "annotations"),
    (8, "binary_annotations"),
    (9, "debug"),
    (10, "timestamp"),
    (11, "duration"),
    (12, "trace_id_high"),
];
const ANNOTATION_FIELDS: &[(i16, &str)] = &[(1, "timestamp"), (2, "value"), (3, "host")];
const BINARY_ANNOTATION_FIELDS: &[(i16, &str)] =
    &[(1, "key"), (2, "value"), (3, "annotation_type"), (4, "host")];
const ENDPOINT_FIELDS: &[(i16, &str)] = &[(1, "ipv4"), (2, "port"), (3, "service_name"), (4, "ipv6")];

/// What went wrong, and the path of fields to where it did, within a span
/// (`annotations[1].host.service_name`).
#[derive(Debug)]
struct Problem {
    path: String,
    what: String,
}

type Read<T> = std::result::Result<T, Problem>;

impl From<String> for Problem {
    fn from(what: String) -> Self {
        Problem {
            path: String::new(),
            what,
        }
    }
}

impl Problem {
    /// The problem met inside `segment`: a field's name, or a list element's `[i]`.
    fn within(mut self, segment: &str) -> Self {
        let joint = if self.path.is_empty() || self.path.starts_with('[') { "" } else { "." };
        self.path = format!("{segment}{joint}{}", self.path);
        self
    }

    /// The problem met in field `id` of a struct of `fields`.
    fn in_field(self, fields: &[(i16, &str)], id: i16) -> Self {
        match fields.iter().find(|(known, _)| *known == id) {
            Some((_, name)) => self.within(name),
            None => self.within(&format!("field {id}")),
        }
    }

    fn text(self) -> String {
        if self.path.is_empty() {
            self.what
        } else {
            format!("{}: {}", self.path, self.what)
        }
    }
}

/// The body, read front to back.
struct Wire<'a> {
    body: &'a [u8],
    at: usize,
    /// Structs, maps, lists and sets passed over by [`Wire::skip`].
    containers: usize,
}

impl<'a> Wire<'a> {
    fn new(body: &'a [u8]) -> Self {
        Wire {
            body,
            at: 0,
            containers: 0,
        }
    }

    fn left(&self) -> usize {
        self.body.len() - self.at
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.left() {
            return Err(format!(
                "cut short at byte {}: {n} bytes needed, {} left",
                self.at,
                self.left()
            )
            .into());
        }
        let bytes = &self.body[self.at..self.at + n];
        self.at += n;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Read<[u8; N]> {
        let mut array = [0u8; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    fn byte(&mut self) -> Read<u8> {
        Ok(self.take(1)?[0])
    }

    fn i16(&mut self) -> Read<i16> {
        Ok(i16::from_be_bytes(self.array()?))
    }

    fn i32(&mut self) -> Read<i32> {
        Ok(i32::from_be_bytes(self.array()?))
    }

    fn i64(&mut self) -> Read<i64> {
        Ok(i64::from_be_bytes(self.array()?))
    }

    /// A length or a count: never more than the bytes left, since every byte of a
    /// string and every element of a list or map takes one at least.
    fn length(&mut self) -> Read<usize> {
        let at = self.at;
        let n = self.i32()?;
        let n = usize::try_from(n).map_err(|_| format!("a negative length ({n}) at byte {at}"))?;
        if n > self.left() {
            return Err(format!(
                "a length of {n} at byte {at}, past the end ({} bytes left)",
                self.left()
            )
            .into());
        }
        Ok(n)
    }

    fn binary(&mut self) -> Read<&'a [u8]> {
        let n = self.length()?;
        self.take(n)
    }

    fn text(&mut self) -> Read<String> {
        Ok(String::from_utf8_lossy(self.binary()?).into_owned())
    }

    /// The next field's type, the byte it is at, and its id; none at its struct's end.
    fn field(&mut self) -> Read<Option<(u8, usize, i16)>> {
        let at = self.at;
        match self.byte()? {
            STOP => Ok(None),
            kind => Ok(Some((kind, at, self.i16()?))),
        }
    }

    /// A list's (or set's) element type, the byte it is at, and its count.
    fn list(&mut self) -> Read<(u8, usize, usize)> {
        let at = self.at;
        let kind = self.byte()?;
        Ok((kind, at, self.length()?))
    }

    /// Passes over a value of type `kind` (its type id at byte `kind_at`), nested at
    /// most `depth` deep.
    fn skip(&mut self, kind: u8, kind_at: usize, depth: u32) -> Read<()> {
        if depth == 0 {
            return Err(format!("values nested more than {MAX_DEPTH} deep at byte {}", self.at).into());
        }
        match kind {
            BOOL | BYTE => drop(self.take(1)?),
            I16 => drop(self.take(2)?),
            I32 => drop(self.take(4)?),
            DOUBLE | I64 => drop(self.take(8)?),
            STRING => drop(self.binary()?),
            STRUCT => {
                self.containers += 1;
                while let Some((kind, at, _)) = self.field()? {
                    self.skip(kind, at, depth - 1)?;
                }
            }
            MAP => {
                self.containers += 1;
                let (key_at, key) = (self.at, self.byte()?);
                let (value_at, value) = (self.at, self.byte()?);
                for _ in 0..self.length()? {
                    self.skip(key, key_at, depth - 1)?;
                    self.skip(value, value_at, depth - 1)?;
                }
            }
            SET | LIST => {
                self.containers += 1;
                let (element, at, count) = self.list()?;
                for _ in 0..count {
                    self.skip(element, at, depth - 1)?;
                }
            }
            other => return Err(format!("a value of unknown type {other} at byte {kind_at}").into()),
        }
        Ok(())
    }

    /// A list field's structs, each read by `read` and kept when it gives one; a
    /// problem names the element (`[1]`).
    fn structs<T>(&mut self, out: &mut Vec<T>, read: impl Fn(&mut Self) -> Read<Option<T>>) -> Read<()> {
        let (element, at, count) = self.list()?;
        if element != STRUCT && count > 0 {
            return Err(format!("a list of type {element} (byte {at}), not of structs ({STRUCT})").into());
        }
        for i in 0..count {
            out.extend(read(self).map_err(|problem| problem.within(&format!("[{i}]")))?);
        }
        Ok(())
    }
}

/// About what reading `body` (a span list) and converting it takes in memory beyond
/// its bytes: [`PARSED_BYTES_PER_STRUCT`] per struct, list, set or map in it, up to
/// where it stops parsing.
pub(crate) fn parse_bytes(body: &[u8]) -> usize {
    let mut wire = Wire::new(body);
    // The body is a list's value: its element type, count and elements.
    let _ = wire.skip(LIST, 0, MAX_DEPTH + 4);
    wire.containers.saturating_mul(PARSED_BYTES_PER_STRUCT)
}

/// Reads a span list; see the module documentation.
pub(super) fn read_list(body: &[u8], max_spans: usize) -> Result<Vec<V1Span>> {
    let whole = |problem: String| {
        Error::InvalidZipkinSpan(format!(
            "{problem} (Zipkin v1 Thrift: a TBinaryProtocol list of spans)"
        ))
    };
    let mut wire = Wire::new(body);
    let element = wire.byte().map_err(|problem| whole(problem.text()))?;
    let count = match (element, wire.length()) {
        (STRUCT, Ok(count)) => count,
        (STRUCT, Err(problem)) => return Err(whole(problem.text())),
        (_, Ok(0)) => 0,
        // Said before the count, which a span sent without its list does not have.
        (element, _) => {
            return Err(whole(format!(
                "a list of type {element}, not of span structs ({STRUCT}): a span must be \
                 sent in a list, even alone"
            )));
        }
    };
    super::too_many(count, max_spans)?;
    // Not sized from the count: a few bytes may claim thousands of spans.
    let mut spans = Vec::new();
    for index in 0..count {
        spans.push(read_span(&mut wire).map_err(|problem| super::refused(index, Format::Thrift, &problem.text()))?);
    }
    if wire.left() > 0 {
        return Err(whole(format!(
            "{} bytes after the list of {count} spans, from byte {}",
            wire.left(),
            wire.at
        )));
    }
    Ok(spans)
}

fn nonzero(micros: i64) -> Option<Number> {
    (micros != 0).then(|| Number::from(micros))
}

fn hex_id(id: i64) -> Option<String> {
    (id != 0).then(|| format!("{id:016x}"))
}

fn read_span(wire: &mut Wire<'_>) -> Read<V1Span> {
    let (mut trace_id, mut trace_id_high, mut id, mut parent_id) = (0i64, 0i64, 0i64, 0i64);
    let mut span = V1Span {
        trace_id: None,
        id: None,
        parent_id: None,
        name: None,
        timestamp: None,
        duration: None,
        annotations: None,
        binary_annotations: None,
    };
    let (mut annotations, mut binary_annotations) = (Vec::new(), Vec::new());
    while let Some((kind, kind_at, field)) = wire.field()? {
        let mut read = || -> Read<()> {
            match (field, kind) {
                (1, I64) => trace_id = wire.i64()?,
                (3, STRING) => span.name = Some(wire.text()?),
                (4, I64) => id = wire.i64()?,
                (5, I64) => parent_id = wire.i64()?,
                (6, LIST) => wire.structs(&mut annotations, read_annotation)?,
                (8, LIST) => wire.structs(&mut binary_annotations, read_binary_annotation)?,
                (10, I64) => span.timestamp = nonzero(wire.i64()?),
                (11, I64) => span.duration = nonzero(wire.i64()?),
                (12, I64) => trace_id_high = wire.i64()?,
                (_, kind) => wire.skip(kind, kind_at, MAX_DEPTH)?,
            }
            Ok(())
        };
        read().map_err(|problem| problem.in_field(SPAN_FIELDS, field))?;
    }
    // The low half is the trace id a v1 span cannot be without.
    span.trace_id = match (trace_id_high, trace_id) {
        (_, 0) => None,
        (0, low) => Some(format!("{low:016x}")),
        (high, low) => Some(format!("{high:016x}{low:016x}")),
    };
    span.id = hex_id(id);
    span.parent_id = hex_id(parent_id);
    span.annotations = Some(annotations);
    span.binary_annotations = Some(binary_annotations);
    Ok(span)
}

fn read_annotation(wire: &mut Wire<'_>) -> Read<Option<V1Annotation>> {
    let (mut timestamp, mut value, mut endpoint) = (0i64, None, None);
    while let Some((kind, kind_at, field)) = wire.field()? {
        let mut read = || -> Read<()> {
            match (field, kind) {
                (1, I64) => {
                    let at = wire.at;
                    timestamp = wire.i64()?;
                    // Refused here, where its place in the list is known (the
                    // conversion counts kept annotations only).
                    if !(-MAX_MICROS..=MAX_MICROS).contains(&timestamp) {
                        return Err(format!("{timestamp} at byte {at} is out of range").into());
                    }
                }
                (2, STRING) => value = Some(wire.text()?),
                (3, STRUCT) => endpoint = Some(read_endpoint(wire)?),
                (_, kind) => wire.skip(kind, kind_at, MAX_DEPTH)?,
            }
            Ok(())
        };
        read().map_err(|problem| problem.in_field(ANNOTATION_FIELDS, field))?;
    }
    Ok(value.filter(|_| timestamp != 0).map(|value| V1Annotation {
        timestamp: Some(Number::from(timestamp)),
        value: Some(value),
        endpoint,
    }))
}

fn read_binary_annotation(wire: &mut Wire<'_>) -> Read<Option<V1BinaryAnnotation>> {
    let (mut key, mut value, mut annotation_type, mut endpoint) = (None, None, None, None);
    while let Some((kind, kind_at, field)) = wire.field()? {
        let mut read = || -> Read<()> {
            match (field, kind) {
                (1, STRING) => key = Some(wire.text()?),
                (2, STRING) => value = Some(wire.binary()?),
                (3, I32) => annotation_type = Some(wire.i32()?),
                (4, STRUCT) => endpoint = Some(read_endpoint(wire)?),
                (_, kind) => wire.skip(kind, kind_at, MAX_DEPTH)?,
            }
            Ok(())
        };
        read().map_err(|problem| problem.in_field(BINARY_ANNOTATION_FIELDS, field))?;
    }
    let (Some(key), Some(value)) = (key, value) else {
        return Ok(None);
    };
    let value = match annotation_type {
        Some(TYPE_STRING) => serde_json::Value::String(String::from_utf8_lossy(value).into_owned()),
        Some(TYPE_BOOL) if value == [1] && endpoint.is_some() && matches!(key.as_str(), "ca" | "sa" | "ma") => {
            serde_json::Value::Bool(true)
        }
        _ => return Ok(None),
    };
    Ok(Some(V1BinaryAnnotation {
        key: Some(key),
        value: Some(value),
        endpoint,
    }))
}

fn read_endpoint(wire: &mut Wire<'_>) -> Read<Endpoint> {
    let mut endpoint = Endpoint {
        service_name: None,
        ipv4: None,
        ipv6: None,
        port: None,
    };
    while let Some((kind, kind_at, field)) = wire.field()? {
        let mut read = || -> Read<()> {
            match (field, kind) {
                (1, I32) => {
                    let ipv4 = wire.i32()?;
                    if ipv4 != 0 {
                        endpoint.parse_ip(&ipv4.to_be_bytes());
                    }
                }
                // An i16 in Thrift: ports past 32767 arrive negative.
                (2, I16) => {
                    let port = wire.i16()?.cast_unsigned();
                    endpoint.port = (port != 0).then_some(i64::from(port));
                }
                (3, STRING) => endpoint.service_name = Some(wire.text()?),
                (4, STRING) => endpoint.parse_ip(wire.binary()?),
                (_, kind) => wire.skip(kind, kind_at, MAX_DEPTH)?,
            }
            Ok(())
        };
        read().map_err(|problem| problem.in_field(ENDPOINT_FIELDS, field))?;
    }
    Ok(endpoint)
}
