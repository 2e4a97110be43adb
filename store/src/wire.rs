//! OTLP protobuf `ExportTraceServiceRequest` → span rows, read straight from the
//! encoding.
//!
//! Decoding a request into prost's structs allocates a `String` for every attribute
//! key and value and a struct for every attribute, and [`crate::encode`] then copies
//! each of them once more into the Arrow builders. At 150,000 spans/s with a dozen
//! attributes each, that decode was a third of the collector's CPU. This reader walks
//! the wire format once and appends borrowed slices of the request to the builders.
//!
//! It produces exactly what prost decoding, [`meshtel_model::validate`] and
//! [`crate::encode::encode_resource_spans`] produce together (a property test holds
//! it to that), and it only reads the common shape itself:
//!
//! - a span with events, links, dropped event or link counts, or an array or map
//!   attribute value is decoded with prost and goes through the struct path, one span
//!   at a time;
//! - anything unusual in the encoding (a wire type that does not fit the field, a
//!   resource or scope given twice, groups, a truncated field, invalid UTF-8 in a
//!   string) hands the whole request back (`Ok(None)`) so that prost decides, with its
//!   own error message when it is invalid.
//!
//! Resources and scopes, one per group, are decoded with prost.

use std::collections::HashSet;

use foldhash::fast::RandomState;
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::InstrumentationScope;
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::Span;
use meshtel_model::validate::{
    AttributeLimiter, Report, SpanLimits, clean_span, latest_start_now, span_problem,
};
use meshtel_model::{Error as ModelError, ExportSummary};
use prost::Message;

use index::Index;

use crate::encode::{
    Builders, EncodedBatch, Repeats, Room, Scalar, SpanFields, append_span, encode_resource,
    operations_of, service_name_of, write_scalar,
};

mod index;
mod shape;
mod utf8_repair;

/// Requests at least this large are read on a blocking thread (by the store's
/// `write_export_request`): tens of milliseconds of work, off the runtime's threads.
pub(crate) const READ_ON_BLOCKING_THREAD_BYTES: usize = 1 << 20;

/// The encoding holds something this reader leaves to prost.
struct Unusual;

type Read<T> = std::result::Result<T, Unusual>;

const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// Reads protobuf wire-format fields from a byte slice.
struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    fn has_more(&self) -> bool {
        !self.buf.is_empty()
    }

    /// One byte is the common case by far (field keys, short lengths, small enums): it
    /// is inlined, the longer forms are not.
    #[inline(always)]
    fn varint(&mut self) -> Read<u64> {
        match self.buf.split_first() {
            Some((&byte, rest)) if byte < 0x80 => {
                self.buf = rest;
                Ok(u64::from(byte))
            }
            _ => self.long_varint(),
        }
    }

    #[inline(never)]
    fn long_varint(&mut self) -> Read<u64> {
        let mut value = 0u64;
        for (i, &byte) in self.buf.iter().take(10).enumerate() {
            if i == 9 && byte > 1 {
                return Err(Unusual);
            }
            value |= u64::from(byte & 0x7f) << (7 * i);
            if byte < 0x80 {
                self.buf = &self.buf[i + 1..];
                return Ok(value);
            }
        }
        Err(Unusual)
    }

    /// The next field's number and wire type.
    fn key(&mut self) -> Read<(u32, u8)> {
        let key = u32::try_from(self.varint()?).map_err(|_| Unusual)?;
        let (field, wire) = (key >> 3, (key & 7) as u8);
        if field == 0 {
            return Err(Unusual);
        }
        Ok((field, wire))
    }

    fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.buf.len() {
            return Err(Unusual);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    fn fixed64(&mut self) -> Read<u64> {
        let bytes = self.take(8)?;
        Ok(u64::from_le_bytes(bytes.try_into().map_err(|_| Unusual)?))
    }

    fn fixed32(&mut self) -> Read<u32> {
        let bytes = self.take(4)?;
        Ok(u32::from_le_bytes(bytes.try_into().map_err(|_| Unusual)?))
    }

    fn bytes(&mut self) -> Read<&'a [u8]> {
        let len = usize::try_from(self.varint()?).map_err(|_| Unusual)?;
        self.take(len)
    }

    fn str(&mut self) -> Read<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| Unusual)
    }

    /// Skips a field of a number this reader does not read (prost skips it too).
    fn skip(&mut self, wire: u8) -> Read<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => Err(Unusual),
        }
    }
}

/// Fails unless a known field came with the wire type of its declared type.
fn expect(wire: u8, want: u8) -> Read<()> {
    if wire == want { Ok(()) } else { Err(Unusual) }
}

/// A span read from the encoding, or a sign that it needs the struct path.
enum Parsed<'a> {
    Plain(SpanFields<'a>),
    /// `counted` of its attributes were counted in the request's allowance.
    NeedsStructs {
        counted: usize,
    },
    /// Its attributes take the request past its allowance ([`shape`]).
    Refused(ModelError),
}

/// `Span` fields (see the OTLP trace proto); attributes go to `attributes` (`raw`
/// holds their encodings meanwhile), once `allowance` took them.
fn parse_span<'a>(
    bytes: &'a [u8],
    attributes: &mut Vec<(&'a str, Scalar<'a>)>,
    raw: &mut Vec<&'a [u8]>,
    allowance: &mut shape::Allowance,
) -> Read<Parsed<'a>> {
    attributes.clear();
    raw.clear();
    let mut span = SpanFields {
        trace_id: &[],
        span_id: &[],
        parent_span_id: &[],
        trace_state: "",
        name: "",
        kind: 0,
        start_time_unix_nano: 0,
        end_time_unix_nano: 0,
        flags: 0,
        status_code: 0,
        status_message: "",
    };
    let mut r = Reader::new(bytes);
    while r.has_more() {
        let (field, wire) = r.key()?;
        match field {
            1 => {
                expect(wire, LEN)?;
                span.trace_id = r.bytes()?;
            }
            2 => {
                expect(wire, LEN)?;
                span.span_id = r.bytes()?;
            }
            3 => {
                expect(wire, LEN)?;
                span.trace_state = r.str()?;
            }
            4 => {
                expect(wire, LEN)?;
                span.parent_span_id = r.bytes()?;
            }
            5 => {
                expect(wire, LEN)?;
                span.name = r.str()?;
            }
            6 => {
                expect(wire, VARINT)?;
                span.kind = r.varint()? as i32;
            }
            7 => {
                expect(wire, FIXED64)?;
                span.start_time_unix_nano = r.fixed64()?;
            }
            8 => {
                expect(wire, FIXED64)?;
                span.end_time_unix_nano = r.fixed64()?;
            }
            9 => {
                expect(wire, LEN)?;
                raw.push(r.bytes()?);
                // Each time the list doubles past a few thousand (see the allowance).
                if raw.len() >= 4096
                    && raw.len().is_power_of_two()
                    && let Err(error) = allowance.fits_attributes(raw.len())
                {
                    return Ok(Parsed::Refused(error));
                }
            }
            10 => {
                expect(wire, VARINT)?;
                r.varint()?;
            }
            // Dropped event and link counts are kept beside events and links, which
            // the struct path stores.
            12 | 14 => {
                expect(wire, VARINT)?;
                if r.varint()? != 0 {
                    return Ok(Parsed::NeedsStructs { counted: 0 });
                }
            }
            11 | 13 => return Ok(Parsed::NeedsStructs { counted: 0 }),
            15 => {
                expect(wire, LEN)?;
                parse_status(r.bytes()?, &mut span)?;
            }
            16 => {
                expect(wire, FIXED32)?;
                span.flags = r.fixed32()?;
            }
            _ => r.skip(wire)?,
        }
    }
    if let Err(error) = allowance.attributes(raw.len()) {
        return Ok(Parsed::Refused(error));
    }
    if !parse_attributes(bytes, raw, attributes)? {
        return Ok(Parsed::NeedsStructs {
            counted: raw.len(),
        });
    }
    Ok(Parsed::Plain(span))
}

/// A span's attributes from their encodings `raw` (slices of the span's `bytes`); false
/// when one has an array or map value. Their keys and string values, a dozen bytes
/// each, are checked as UTF-8 in one pass over the bytes from the first attribute to
/// the last (see [`Utf8Run`]): a check per string cost a quarter of this reader's
/// instructions.
fn parse_attributes<'a>(
    bytes: &'a [u8],
    raw: &[&'a [u8]],
    attributes: &mut Vec<(&'a str, Scalar<'a>)>,
) -> Read<bool> {
    let (Some(first), Some(last)) = (raw.first(), raw.last()) else {
        return Ok(true);
    };
    let start = offset_in(bytes, first);
    let end = offset_in(bytes, last).saturating_add(last.len());
    let run = Utf8Run::of(bytes.get(start..end).unwrap_or_default());
    for attribute in raw {
        match parse_key_value(attribute, &run)? {
            Some(attribute) => attributes.push(attribute),
            None => return Ok(false),
        }
    }
    Ok(true)
}

/// Where `part` starts in `whole` (meaningful when it is a slice of it).
fn offset_in(whole: &[u8], part: &[u8]) -> usize {
    (part.as_ptr() as usize).wrapping_sub(whole.as_ptr() as usize)
}

/// Bytes that hold many short strings between protobuf framing, checked as UTF-8 once.
/// A string inside the checked part is valid exactly when it starts and ends on a
/// character boundary of it: framing bytes are ASCII (tags, lengths under 128) or
/// they end the valid part (longer lengths, integers, doubles), after which strings are
/// checked one by one.
struct Utf8Run<'a> {
    bytes: &'a [u8],
    /// The longest valid UTF-8 prefix of `bytes`.
    text: &'a str,
}

impl<'a> Utf8Run<'a> {
    fn of(bytes: &'a [u8]) -> Self {
        let text = match std::str::from_utf8(bytes) {
            Ok(text) => text,
            Err(error) => std::str::from_utf8(&bytes[..error.valid_up_to()]).unwrap_or_default(),
        };
        Utf8Run { bytes, text }
    }

    /// `piece` as a string when it is valid UTF-8: sliced from the checked text when it
    /// lies in it, checked on its own otherwise.
    fn str(&self, piece: &'a [u8]) -> Read<&'a str> {
        let at = offset_in(self.bytes, piece);
        if let Some(end) = at.checked_add(piece.len())
            && end <= self.text.len()
        {
            return self.text.get(at..end).ok_or(Unusual);
        }
        std::str::from_utf8(piece).map_err(|_| Unusual)
    }
}

/// `Status`: 2 message, 3 code. A status given twice merges, as prost does.
fn parse_status<'a>(bytes: &'a [u8], span: &mut SpanFields<'a>) -> Read<()> {
    let mut r = Reader::new(bytes);
    while r.has_more() {
        match r.key()? {
            (2, wire) => {
                expect(wire, LEN)?;
                span.status_message = r.str()?;
            }
            (3, wire) => {
                expect(wire, VARINT)?;
                span.status_code = r.varint()? as i32;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(())
}

/// `KeyValue`: 1 key, 2 value, 3 key_strindex (profiling only, ignored). `None` for
/// an array or map value.
fn parse_key_value<'a>(bytes: &'a [u8], run: &Utf8Run<'a>) -> Read<Option<(&'a str, Scalar<'a>)>> {
    let mut key = "";
    let mut value = Scalar::None;
    let mut r = Reader::new(bytes);
    while r.has_more() {
        match r.key()? {
            (1, wire) => {
                expect(wire, LEN)?;
                key = run.str(r.bytes()?)?;
            }
            (2, wire) => {
                expect(wire, LEN)?;
                if !parse_any_value(r.bytes()?, &mut value, run)? {
                    return Ok(None);
                }
            }
            (3, wire) => {
                expect(wire, VARINT)?;
                r.varint()?;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(Some((key, value)))
}

/// `AnyValue`'s oneof into `value` (the last member given wins, as in prost); false
/// for an array (5) or map (6).
fn parse_any_value<'a>(bytes: &'a [u8], value: &mut Scalar<'a>, run: &Utf8Run<'a>) -> Read<bool> {
    let mut r = Reader::new(bytes);
    while r.has_more() {
        match r.key()? {
            (1, wire) => {
                expect(wire, LEN)?;
                *value = Scalar::Str(run.str(r.bytes()?)?);
            }
            (2, wire) => {
                expect(wire, VARINT)?;
                *value = Scalar::Bool(r.varint()? != 0);
            }
            (3, wire) => {
                expect(wire, VARINT)?;
                *value = Scalar::Int(r.varint()? as i64);
            }
            (4, wire) => {
                expect(wire, FIXED64)?;
                *value = Scalar::Double(f64::from_bits(r.fixed64()?));
            }
            (5 | 6, _) => return Ok(false),
            (7, wire) => {
                expect(wire, LEN)?;
                *value = Scalar::Bytes(r.bytes()?);
            }
            (8, wire) => {
                expect(wire, VARINT)?;
                r.varint()?;
                *value = Scalar::None;
            }
            (_, wire) => r.skip(wire)?,
        }
    }
    Ok(true)
}

/// A request read: rows, or a request decoded with prost where this reader leaves it
/// to prost (events, links, unusual encodings).
pub(crate) enum ReadRequest {
    Rows(EncodedBatch, ExportSummary),
    Decoded(ExportTraceServiceRequest),
}

/// Reads a request into rows, or decodes it with prost; one whose only fault is text
/// that is not UTF-8 is read again with it repaired ([`utf8_repair`]), with a warning
/// saying so.
pub(crate) fn read_export_request(
    request: &[u8],
    limits: &SpanLimits,
    max_repeated_bytes: u64,
    reserve: Reserve<'_>,
) -> Result<(ReadRequest, Option<String>), ModelError> {
    if let Some((encoded, summary)) =
        encode_export_request_reserving(request, limits, max_repeated_bytes, &mut *reserve)?
    {
        return Ok((ReadRequest::Rows(encoded, summary), None));
    }
    shape::check_whole(request, limits)?;
    let error = match ExportTraceServiceRequest::decode(request) {
        Ok(request) => return Ok((ReadRequest::Decoded(request), None)),
        Err(error) => error,
    };
    let refused = || ModelError::DecodeRequest(error.to_string());
    let (fixed, repaired) = utf8_repair::repair_utf8(request).ok_or_else(refused)?;
    let warning = Some(format!(
        "replaced invalid UTF-8 in {repaired} string(s) with U+FFFD"
    ));
    if let Some((encoded, summary)) =
        encode_export_request_reserving(&fixed, limits, max_repeated_bytes, reserve)?
    {
        return Ok((ReadRequest::Rows(encoded, summary), warning));
    }
    shape::check_whole(&fixed, limits)?;
    let decoded = ExportTraceServiceRequest::decode(&fixed[..]).map_err(|_| refused())?;
    Ok((ReadRequest::Decoded(decoded), warning))
}

/// Reads, validates and encodes a protobuf `ExportTraceServiceRequest` as
/// [`meshtel_model::validate`] and [`crate::encode`] would after prost decoding:
/// the rows of the valid spans and the summary for the response. `Ok(None)` when the
/// request should go through prost instead (see the module docs). Refused when the rows
/// would repeat more than `max_repeated_bytes` of their resources and scopes
/// ([`crate::encode::Repeats`]).
pub fn encode_export_request(
    request: &[u8],
    limits: &SpanLimits,
    max_repeated_bytes: u64,
) -> Result<Option<(EncodedBatch, ExportSummary)>, ModelError> {
    encode_export_request_reserving(request, limits, max_repeated_bytes, &mut |_| Ok(()))
}

/// Called with the bytes a request's rows are expected to take once encoded, before
/// they are built: an error refuses the request (see [`crate::queue_room`]).
pub(crate) type Reserve<'r> = &'r mut dyn FnMut(usize) -> Result<(), ModelError>;

/// [`encode_export_request`], asking `reserve` for the rows' room first.
fn encode_export_request_reserving(
    request: &[u8],
    limits: &SpanLimits,
    max_repeated_bytes: u64,
    reserve: Reserve<'_>,
) -> Result<Option<(EncodedBatch, ExportSummary)>, ModelError> {
    // Before the index or a span's structs hold anything of it; the caller's prost
    // fallback checks the whole request again first.
    let mut allowance = shape::check(request, limits)?;
    let Ok(index) = Index::of(request) else {
        return Ok(None);
    };
    if index.spans.len() > limits.max_spans_per_request {
        return Err(ModelError::TooManySpans {
            count: index.spans.len(),
            limit: limits.max_spans_per_request,
        });
    }
    let mut room = index.room();
    // Past the bound the request is refused before it holds that much.
    room.resource_bytes = room
        .resource_bytes
        .min(usize::try_from(max_repeated_bytes).unwrap_or(usize::MAX));
    reserve(room.queue_bytes())?;
    match Encoder::new(room, limits, max_repeated_bytes).encode(&index, &mut allowance) {
        Ok(Ok(done)) => Ok(Some(done)),
        Ok(Err(error)) => Err(error.into_write_error()),
        Err(Unusual) => Ok(None),
    }
}

/// The state of one request's encoding.
struct Encoder<'l> {
    limits: &'l SpanLimits,
    builders: Builders,
    repeats: Repeats,
    report: Report,
    limiter: AttributeLimiter,
    scratch: String,
    /// The latest start a span of this request may have (see `span_problem`).
    latest_start: u64,
}

impl<'l> Encoder<'l> {
    fn new(room: Room, limits: &'l SpanLimits, max_repeated_bytes: u64) -> Self {
        Encoder {
            limits,
            repeats: Repeats::new(max_repeated_bytes),
            builders: Builders::with_room(room),
            report: Report::default(),
            limiter: AttributeLimiter::new(limits),
            scratch: String::new(),
            latest_start: latest_start_now(),
        }
    }

    fn encode(
        mut self,
        index: &Index<'_>,
        allowance: &mut shape::Allowance,
    ) -> Read<crate::Result<(EncodedBatch, ExportSummary)>> {
        let mut services = Vec::with_capacity(index.groups.len());
        // (resource index, span name, kind): borrowed from the request when read
        // from the encoding, owned when the span went through prost. One insert per
        // span: hashed with foldhash (randomly seeded) rather than SipHash.
        let mut seen: HashSet<(usize, &str, i32), RandomState> = HashSet::default();
        let mut seen_decoded: HashSet<(usize, String, i32), RandomState> = HashSet::default();
        let mut attributes = Vec::new();
        let mut raw = Vec::new();
        for (group_index, (resource, scopes)) in index.groups.iter().enumerate() {
            let mut group_limiter = AttributeLimiter::new(self.limits);
            let mut resource_attributes = Vec::new();
            if let Some(bytes) = resource {
                let mut resource = Resource::decode(*bytes).map_err(|_| Unusual)?;
                group_limiter.limit_list(
                    &mut resource.attributes,
                    &mut resource.dropped_attributes_count,
                );
                resource_attributes = resource.attributes;
            }
            let service = service_name_of(&resource_attributes);
            let encoded_resource = encode_resource(&resource_attributes, &mut self.scratch);
            let mut group_accepted = 0;
            for (scope_index, (scope, spans)) in index.scopes[scopes.clone()].iter().enumerate() {
                let mut scope_limiter = AttributeLimiter::new(self.limits);
                let mut scope_name_version = (String::new(), String::new());
                if let Some(bytes) = scope {
                    let mut scope = InstrumentationScope::decode(*bytes).map_err(|_| Unusual)?;
                    scope_limiter
                        .limit_list(&mut scope.attributes, &mut scope.dropped_attributes_count);
                    scope_name_version = (scope.name, scope.version);
                }
                let (scope_name, scope_version) = &scope_name_version;
                let parts = (service.as_str(), &encoded_resource[..], &scope_name[..], &scope_version[..]);
                if let Err(error) = self.repeats.add(spans.len(), parts) {
                    return Ok(Err(error));
                }
                let mut scope_accepted = 0;
                for (span_index, bytes) in index.spans[spans.clone()].iter().enumerate() {
                    let at = Position {
                        resource: group_index,
                        scope: scope_index,
                        span: span_index,
                    };
                    let row = Row {
                        service: &service,
                        encoded_resource: &encoded_resource,
                        scope_name,
                        scope_version,
                    };
                    let appended = match parse_span(bytes, &mut attributes, &mut raw, allowance)? {
                        Parsed::Plain(mut span) => {
                            let kept = self.append_plain(&mut span, &attributes, &row, at);
                            if matches!(kept, Ok(true)) {
                                seen.insert((group_index, span.name, span.kind));
                            }
                            kept
                        }
                        Parsed::Refused(error) => return Ok(Err(crate::Error::Refused(error))),
                        Parsed::NeedsStructs { counted } => {
                            if let Err(error) = allowance.span(bytes, counted) {
                                return Ok(Err(crate::Error::Refused(error)));
                            }
                            let span = Span::decode(*bytes).map_err(|_| Unusual)?;
                            let kept = self.append_decoded(span, &row, at);
                            if let Ok(Some((name, kind))) = &kept {
                                seen_decoded.insert((group_index, name.clone(), *kind));
                            }
                            kept.map(|kept| kept.is_some())
                        }
                    };
                    match appended {
                        Ok(true) => scope_accepted += 1,
                        Ok(false) => {}
                        Err(error) => return Ok(Err(error)),
                    }
                }
                if scope_accepted > 0 {
                    self.limiter.absorb(&scope_limiter);
                    group_accepted += scope_accepted;
                }
            }
            if group_accepted > 0 {
                self.limiter.absorb(&group_limiter);
                self.report.accepted += group_accepted;
            }
            services.push(service);
        }
        let operations = operations_of(
            seen.into_iter().chain(
                seen_decoded
                    .iter()
                    .map(|(group, name, kind)| (*group, name.as_str(), *kind)),
            ),
            &services,
        );
        let summary = ExportSummary {
            accepted_spans: self.report.accepted,
            rejected_spans: self.report.rejected,
            error_message: self.report.message(&self.limiter),
            ends_before_start: self.report.ends_before_start,
            limited: self.limiter.applied(),
        };
        Ok(self
            .builders
            .finish()
            .map(|batch| (EncodedBatch { batch, operations }, summary)))
    }

    /// Validates and appends a span read from the encoding (its name cut to the limit);
    /// false when rejected.
    fn append_plain(
        &mut self,
        span: &mut SpanFields<'_>,
        attributes: &[(&str, Scalar<'_>)],
        row: &Row<'_>,
        at: Position,
    ) -> crate::Result<bool> {
        let ids = (span.trace_id, span.span_id, span.parent_span_id);
        if !self.accept(ids, span.start_time_unix_nano, at) {
            return Ok(false);
        }
        span.name = self.limiter.limit_name(span.name);
        if span.end_time_unix_nano < span.start_time_unix_nano {
            self.report.ends_before_start += 1;
        }
        let b = &mut self.builders;
        b.append_fields(span, row.service, row.encoded_resource)?;
        let max = self.limiter.max_count();
        if attributes.len() > max {
            self.limiter.count_dropped(attributes.len() - max);
        }
        for &(key, value) in attributes.iter().take(max) {
            let value = match value {
                Scalar::Str(text) => Scalar::Str(self.limiter.limit_str(text)),
                Scalar::Bytes(bytes) => Scalar::Bytes(self.limiter.limit_bytes(bytes)),
                other => other,
            };
            let entries = b.attributes.values();
            write_scalar(self.limiter.limit_name(key), value, entries);
            entries.append_value("");
        }
        b.attributes.append(true);
        b.append_no_events();
        b.append_scope(row.scope_name, row.scope_version);
        Ok(true)
    }

    /// Validates and appends a span prost decoded; its name and kind when kept.
    fn append_decoded(
        &mut self,
        mut span: Span,
        row: &Row<'_>,
        at: Position,
    ) -> crate::Result<Option<(String, i32)>> {
        let ids = (
            &span.trace_id[..],
            &span.span_id[..],
            &span.parent_span_id[..],
        );
        if !self.accept(ids, span.start_time_unix_nano, at) {
            return Ok(None);
        }
        if span.parent_span_id.iter().all(|b| *b == 0) {
            span.parent_span_id.clear();
        }
        if span.end_time_unix_nano < span.start_time_unix_nano {
            self.report.ends_before_start += 1;
        }
        self.report.invalid_links += clean_span(&mut span, &mut self.limiter);
        append_span(
            &mut self.builders,
            &span,
            row.service,
            row.encoded_resource,
            &mut self.scratch,
        )?;
        self.builders
            .append_scope(row.scope_name, row.scope_version);
        Ok(Some((std::mem::take(&mut span.name), span.kind)))
    }

    /// Whether a span's ids are valid; a rejection is counted with its position.
    fn accept(&mut self, ids: (&[u8], &[u8], &[u8]), start: u64, at: Position) -> bool {
        match span_problem(ids, start, self.latest_start) {
            None => true,
            Some(problem) => {
                self.report
                    .reject_span(at.resource, at.scope, at.span, &problem);
                false
            }
        }
    }
}

/// Where a span is in its request, for rejection messages.
#[derive(Clone, Copy)]
struct Position {
    resource: usize,
    scope: usize,
    span: usize,
}

/// What every row of a scope group shares.
struct Row<'r> {
    service: &'r str,
    encoded_resource: &'r [String],
    scope_name: &'r str,
    scope_version: &'r str,
}

#[cfg(test)]
mod tests;
