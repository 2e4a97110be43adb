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
//!   parent, timestamp or duration is an absent one (so a span without its ids is
//!   refused by name, as in JSON);
//! - an annotation without its timestamp (or with 0) or value is dropped, as the Zipkin
//!   server drops it (v1 JSON refuses one: Thrift readers never wrote such);
//! - a binary annotation of type `STRING` (6) is a tag; one of type `BOOL` (0) whose
//!   value is 1, with an endpoint, and keyed `ca`, `sa` or `ma` is an address; the
//!   other types are dropped, as in JSON;
//! - an endpoint's `ipv4` is an i32 (0 none), its `port` an i16 read as unsigned (0
//!   none), its `ipv6` 16 bytes (any other length none); text that is not UTF-8 has its
//!   bad bytes replaced.
//!
//! Read by hand over the body, which is in memory and bounded by `max_request_bytes`:
//! every length and count is checked against the bytes left before anything is taken
//! or allocated (a Thrift library's readers allocate a declared length first), nested
//! values are skipped at most [`MAX_DEPTH`] deep, and a value of an unknown type is an
//! error. A list of more than `max_spans_per_request` spans is refused before any is
//! read; a malformed one is refused whole, with the span, field and byte where it
//! went wrong; bytes after the list are refused too.

use std::net::{Ipv4Addr, Ipv6Addr};

use serde_json::Number;

use super::super::Endpoint;
use super::{Format, V1Annotation, V1BinaryAnnotation, V1Span};
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

/// `BinaryAnnotation.annotation_type` values read.
const TYPE_BOOL: i32 = 0;
const TYPE_STRING: i32 = 6;

/// A problem, said where it was met; the callers add the span and field.
type Read<T> = std::result::Result<T, String>;

/// The body, read front to back.
struct Wire<'a> {
    body: &'a [u8],
    at: usize,
}

impl<'a> Wire<'a> {
    fn left(&self) -> usize {
        self.body.len() - self.at
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.left() {
            return Err(format!(
                "cut short at byte {}: {n} bytes needed, {} left",
                self.at,
                self.left()
            ));
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
            ));
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

    /// The next field's type and id; none at its struct's end.
    fn field(&mut self) -> Read<Option<(u8, i16)>> {
        match self.byte()? {
            STOP => Ok(None),
            kind => Ok(Some((kind, self.i16()?))),
        }
    }

    /// A list's (or set's) element type and count.
    fn list(&mut self) -> Read<(u8, usize)> {
        let kind = self.byte()?;
        Ok((kind, self.length()?))
    }

    /// Passes over a value of type `kind`, nested at most `depth` deep.
    fn skip(&mut self, kind: u8, depth: u32) -> Read<()> {
        if depth == 0 {
            return Err(format!("values nested more than {MAX_DEPTH} deep at byte {}", self.at));
        }
        match kind {
            BOOL | BYTE => drop(self.take(1)?),
            I16 => drop(self.take(2)?),
            I32 => drop(self.take(4)?),
            DOUBLE | I64 => drop(self.take(8)?),
            STRING => drop(self.binary()?),
            STRUCT => {
                while let Some((kind, _)) = self.field()? {
                    self.skip(kind, depth - 1)?;
                }
            }
            MAP => {
                let (key, value) = (self.byte()?, self.byte()?);
                for _ in 0..self.length()? {
                    self.skip(key, depth - 1)?;
                    self.skip(value, depth - 1)?;
                }
            }
            SET | LIST => {
                let (element, count) = self.list()?;
                for _ in 0..count {
                    self.skip(element, depth - 1)?;
                }
            }
            other => return Err(format!("a value of unknown type {other} before byte {}", self.at)),
        }
        Ok(())
    }

    /// A list field's structs, each read by `read` and kept when it gives one.
    fn structs<T>(
        &mut self,
        name: &str,
        out: &mut Vec<T>,
        read: impl Fn(&mut Self) -> Read<Option<T>>,
    ) -> Read<()> {
        let at = self.at;
        let (element, count) = self.list()?;
        if element != STRUCT && count > 0 {
            return Err(format!("{name} at byte {at} is a list of type {element}, not of structs ({STRUCT})"));
        }
        for i in 0..count {
            if let Some(item) = read(self).map_err(|problem| format!("{name}[{i}]: {problem}"))? {
                out.push(item);
            }
        }
        Ok(())
    }
}

/// Reads a span list; see the module documentation.
pub(super) fn read_list(body: &[u8], max_spans: usize) -> Result<Vec<V1Span>> {
    let whole = |problem: String| {
        Error::InvalidZipkinSpan(format!(
            "{problem} (Zipkin v1 Thrift: a TBinaryProtocol list of spans)"
        ))
    };
    let mut wire = Wire { body, at: 0 };
    let (element, count) = wire.list().map_err(whole)?;
    if element != STRUCT && count > 0 {
        return Err(whole(format!("a list of type {element}, not of span structs ({STRUCT})")));
    }
    super::too_many(count, max_spans)?;
    // Not sized from the count: a few bytes may claim thousands of spans.
    let mut spans = Vec::new();
    for index in 0..count {
        spans.push(read_span(&mut wire).map_err(|problem| super::refused(index, Format::Thrift, &problem))?);
    }
    if wire.left() > 0 {
        return Err(whole(format!(
            "{} bytes after the list of {count} spans",
            wire.left()
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
    while let Some((kind, field)) = wire.field()? {
        match (field, kind) {
            (1, I64) => trace_id = wire.i64()?,
            (3, STRING) => span.name = Some(wire.text()?),
            (4, I64) => id = wire.i64()?,
            (5, I64) => parent_id = wire.i64()?,
            (6, LIST) => wire.structs("annotations", &mut annotations, read_annotation)?,
            (8, LIST) => wire.structs("binary_annotations", &mut binary_annotations, read_binary_annotation)?,
            (10, I64) => span.timestamp = nonzero(wire.i64()?),
            (11, I64) => span.duration = nonzero(wire.i64()?),
            (12, I64) => trace_id_high = wire.i64()?,
            (_, kind) => wire.skip(kind, MAX_DEPTH)?,
        }
    }
    span.trace_id = match (trace_id_high, trace_id) {
        (0, 0) => None,
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
    while let Some((kind, field)) = wire.field()? {
        match (field, kind) {
            (1, I64) => timestamp = wire.i64()?,
            (2, STRING) => value = Some(wire.text()?),
            (3, STRUCT) => endpoint = Some(read_endpoint(wire).map_err(|p| format!("host: {p}"))?),
            (_, kind) => wire.skip(kind, MAX_DEPTH)?,
        }
    }
    Ok(value.filter(|_| timestamp != 0).map(|value| V1Annotation {
        timestamp: Some(Number::from(timestamp)),
        value: Some(value),
        endpoint,
    }))
}

fn read_binary_annotation(wire: &mut Wire<'_>) -> Read<Option<V1BinaryAnnotation>> {
    let (mut key, mut value, mut annotation_type, mut endpoint) = (None, None, None, None);
    while let Some((kind, field)) = wire.field()? {
        match (field, kind) {
            (1, STRING) => key = Some(wire.text()?),
            (2, STRING) => value = Some(wire.binary()?),
            (3, I32) => annotation_type = Some(wire.i32()?),
            (4, STRUCT) => endpoint = Some(read_endpoint(wire).map_err(|p| format!("host: {p}"))?),
            (_, kind) => wire.skip(kind, MAX_DEPTH)?,
        }
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
    while let Some((kind, field)) = wire.field()? {
        match (field, kind) {
            (1, I32) => {
                let ipv4 = wire.i32()?;
                endpoint.ipv4 = (ipv4 != 0).then(|| Ipv4Addr::from(ipv4.cast_unsigned()).to_string());
            }
            // An i16 in Thrift: ports past 32767 arrive negative.
            (2, I16) => {
                let port = wire.i16()?.cast_unsigned();
                endpoint.port = (port != 0).then_some(i64::from(port));
            }
            (3, STRING) => endpoint.service_name = Some(wire.text()?),
            (4, STRING) => {
                endpoint.ipv6 = <[u8; 16]>::try_from(wire.binary()?)
                    .ok()
                    .map(|bytes| Ipv6Addr::from(bytes).to_string());
            }
            (_, kind) => wire.skip(kind, MAX_DEPTH)?,
        }
    }
    Ok(endpoint)
}
