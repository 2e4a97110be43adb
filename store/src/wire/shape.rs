//! What a request would take once decoded, counted before anything is decoded.
//!
//! Prost turns every message of a request into a struct: an empty `ResourceSpans` is
//! two bytes on the wire and over a hundred in memory, so a 16 MiB request of them
//! would take about a gigabyte to decode, and the wire reader's index of it a few
//! hundred megabytes. This pass walks the request's messages without allocating,
//! adds up the size of the struct each becomes, and counts the spans, so that
//! [`check`] refuses such a request, and one of too many spans, before either
//! decoder holds anything of it.
//!
//! The wire reader reads each span's fields anyway, and holds no struct for a scalar
//! attribute value (it is one slice of the request), so [`check`] counts each span as
//! its `Span` struct without walking into it (that walk was a quarter of the reader's
//! instructions): the reader counts a span's attributes as it finds them
//! ([`Allowance::attributes`]), and a span it leaves to prost (an array or map value,
//! events, links) whole before prost decodes it ([`Allowance::span`]). A request left
//! to prost whole is walked entirely first ([`check_whole`]).

use meshtel_model::Error as ModelError;
use meshtel_model::otlp::common::v1::{AnyValue, KeyValue};
use meshtel_model::otlp::trace::v1::span::{Event, Link};
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span};
use meshtel_model::validate::SpanLimits;

use super::{LEN, Read, Reader, Unusual};

/// Most bytes the decoded structs of a request may take per byte of its encoding
/// (their strings and byte fields, which take what they take on the wire, aside).
/// Ordinary spans take two to four; attributes of one-letter keys and integer values
/// about seven (a 64-byte `KeyValue` from nine bytes); only requests mostly made of
/// empty messages come past this (an empty `ResourceSpans`: 104 bytes from two).
pub(crate) const MAX_DECODED_PER_BYTE: usize = 16;

/// An array's value counts as this many `AnyValue` structs (see [`any_value`]).
const ARRAY_VALUE_WEIGHT: usize = 4;

/// Structs below this total are never refused, whatever the request's size.
const ALWAYS_ALLOWED: usize = 64 << 10;

/// Deepest nesting of array and map attribute values walked (prost stops at 100);
/// deeper requests are left to the decoders, whose limit refuses them.
const MAX_VALUE_DEPTH: u32 = 64;

/// The spans of a request and the bytes of the structs its messages decode into.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Shape {
    pub(crate) spans: usize,
    pub(crate) decoded_bytes: usize,
    /// Whether the walk goes into spans (else each counts as its struct alone).
    span_fields: bool,
}

/// What a request's structs may still take once [`check`] counted its messages.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Allowance {
    request_bytes: usize,
    decoded_bytes: usize,
}

/// Refuses a request of more spans than `limits` allow, or whose messages would take
/// more than [`MAX_DECODED_PER_BYTE`] times its size once decoded, what is inside its
/// spans aside (see the module docs). A request this pass cannot read to its end is
/// judged by what it read before it stopped (a decoder allocates as much before it
/// fails there), then left to the decoders, which say what is wrong with it.
pub(crate) fn check(request: &[u8], limits: &SpanLimits) -> Result<Allowance, ModelError> {
    judge(request, limits, false)
}

/// [`check`], what is inside the spans counted too: before prost decodes the whole
/// request.
pub(crate) fn check_whole(request: &[u8], limits: &SpanLimits) -> Result<(), ModelError> {
    judge(request, limits, true).map(drop)
}

fn judge(request: &[u8], limits: &SpanLimits, span_fields: bool) -> Result<Allowance, ModelError> {
    let mut shape = Shape {
        span_fields,
        ..Shape::default()
    };
    let _ = walk(request, &mut shape);
    if shape.spans > limits.max_spans_per_request {
        return Err(ModelError::TooManySpans {
            count: shape.spans,
            limit: limits.max_spans_per_request,
        });
    }
    let allowance = Allowance {
        request_bytes: request.len(),
        decoded_bytes: shape.decoded_bytes,
    };
    allowance.judge()?;
    Ok(allowance)
}

impl Allowance {
    /// Counts `count` attributes of a span the wire reader reads ([`check`] left them
    /// out); refused as [`check_whole`] would have refused the request.
    pub(crate) fn attributes(&mut self, count: usize) -> Result<(), ModelError> {
        self.add(count.saturating_mul(std::mem::size_of::<KeyValue>()))
    }

    /// Whether `count` attributes found so far would still fit, counting nothing: the
    /// reader asks as its list of a span's attributes grows, so that the list stops
    /// growing within twice what the request is allowed.
    pub(crate) fn fits_attributes(&self, count: usize) -> Result<(), ModelError> {
        let mut trial = *self;
        trial.attributes(count)
    }

    /// Counts what is inside `span_bytes` (one encoded `Span` of the request) before
    /// prost decodes it, but for `counted` attributes [`Allowance::attributes`] already
    /// took; refused as [`check_whole`] would have refused the request.
    pub(crate) fn span(&mut self, span_bytes: &[u8], counted: usize) -> Result<(), ModelError> {
        let mut shape = Shape {
            span_fields: true,
            ..Shape::default()
        };
        let _ = span(span_bytes, &mut shape);
        let before = counted.saturating_mul(std::mem::size_of::<KeyValue>());
        self.add(shape.decoded_bytes.saturating_sub(before))
    }

    fn add(&mut self, bytes: usize) -> Result<(), ModelError> {
        self.decoded_bytes = self.decoded_bytes.saturating_add(bytes);
        self.judge()
    }

    fn judge(&self) -> Result<(), ModelError> {
        let allowed = self
            .request_bytes
            .saturating_mul(MAX_DECODED_PER_BYTE)
            .max(ALWAYS_ALLOWED);
        if self.decoded_bytes > allowed {
            return Err(ModelError::DecodeRequest(format!(
                "the request's {} bytes hold messages that would take {} bytes once decoded, \
                 more than {MAX_DECODED_PER_BYTE} times its size: empty or near-empty \
                 messages (resource spans, scope spans, spans, attributes, events, links, \
                 the values of an array) are refused",
                self.request_bytes, self.decoded_bytes
            )));
        }
        Ok(())
    }
}

/// Walks `request` (an `ExportTraceServiceRequest`): field 1 its `ResourceSpans`;
/// `span_fields` as in [`Shape`].
#[cfg(test)]
pub(crate) fn of(request: &[u8], span_fields: bool) -> Read<Shape> {
    let mut shape = Shape {
        span_fields,
        ..Shape::default()
    };
    walk(request, &mut shape)?;
    Ok(shape)
}

/// [`of`], counting into `shape` as it goes: on failure it holds what came before.
fn walk(request: &[u8], shape: &mut Shape) -> Read<()> {
    each(request, |field, bytes| match field {
        1 => {
            shape.add::<ResourceSpans>();
            resource_spans(bytes, shape)
        }
        _ => Ok(()),
    })
}

impl Shape {
    fn add<T>(&mut self) {
        self.decoded_bytes = self.decoded_bytes.saturating_add(std::mem::size_of::<T>());
    }
}

/// Calls `found` with each length-delimited field of a message, skipping the others;
/// a field number that holds a message always comes length-delimited, or the walk
/// gives up.
fn each<'a>(bytes: &'a [u8], mut found: impl FnMut(u32, &'a [u8]) -> Read<()>) -> Read<()> {
    let mut r = Reader::new(bytes);
    while r.has_more() {
        let (field, wire) = r.key()?;
        match wire {
            LEN => found(field, r.bytes()?)?,
            START_GROUP => skip_group(&mut r, field)?,
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// Wire type of the start of a group (deprecated; prost skips an unknown one).
const START_GROUP: u8 = 3;
/// Wire type of the end of a group.
const END_GROUP: u8 = 4;

/// Skips a group of field `field` whose start was just read, as prost skips an
/// unknown one: a request cannot stop this walk, and so pass unmeasured, by holding
/// one where the decoders would not stop.
fn skip_group(r: &mut Reader<'_>, field: u32) -> Read<()> {
    let mut open = vec![field];
    while let Some(&innermost) = open.last() {
        let (field, wire) = r.key()?;
        match wire {
            START_GROUP if open.len() < MAX_VALUE_DEPTH as usize => open.push(field),
            START_GROUP => return Err(Unusual),
            END_GROUP if field == innermost => {
                open.pop();
            }
            END_GROUP => return Err(Unusual),
            _ => r.skip(wire)?,
        }
    }
    Ok(())
}

/// `ResourceSpans`: 1 resource (1 attributes), 2 scope spans.
fn resource_spans(bytes: &[u8], shape: &mut Shape) -> Read<()> {
    each(bytes, |field, bytes| match field {
        1 => attributes_at(bytes, 1, shape),
        2 => {
            shape.add::<ScopeSpans>();
            each(bytes, |field, bytes| match field {
                1 => attributes_at(bytes, 3, shape),
                2 => {
                    shape.spans += 1;
                    shape.add::<Span>();
                    if shape.span_fields {
                        span(bytes, shape)
                    } else {
                        Ok(())
                    }
                }
                _ => Ok(()),
            })
        }
        _ => Ok(()),
    })
}

/// `Span`: 9 attributes, 11 events (3 attributes), 13 links (5 attributes).
fn span(bytes: &[u8], shape: &mut Shape) -> Read<()> {
    each(bytes, |field, bytes| match field {
        9 => key_value(bytes, shape, 0),
        11 => {
            shape.add::<Event>();
            attributes_at(bytes, 3, shape)
        }
        13 => {
            shape.add::<Link>();
            attributes_at(bytes, 5, shape)
        }
        _ => Ok(()),
    })
}

/// The `KeyValue`s of field `attributes` of a message.
fn attributes_at(bytes: &[u8], attributes: u32, shape: &mut Shape) -> Read<()> {
    each(bytes, |field, bytes| {
        if field == attributes {
            key_value(bytes, shape, 0)
        } else {
            Ok(())
        }
    })
}

/// `KeyValue`: 2 value.
fn key_value(bytes: &[u8], shape: &mut Shape, depth: u32) -> Read<()> {
    shape.add::<KeyValue>();
    each(bytes, |field, bytes| match field {
        2 => any_value(bytes, shape, depth),
        _ => Ok(()),
    })
}

/// `AnyValue`: 5 array (1 values), 6 map (1 key-values).
fn any_value(bytes: &[u8], shape: &mut Shape, depth: u32) -> Read<()> {
    if depth > MAX_VALUE_DEPTH {
        return Err(Unusual);
    }
    each(bytes, |field, bytes| match field {
        5 => each(bytes, |field, bytes| match field {
            1 => {
                // Four times the struct: an array's values are gathered into a vector
                // that grows by doubling, and its text is written out again for the
                // stored attribute (measured: 2 million `true`s, 8 MB, took over
                // 300 MB at their size alone).
                for _ in 0..ARRAY_VALUE_WEIGHT {
                    shape.add::<AnyValue>();
                }
                any_value(bytes, shape, depth + 1)
            }
            _ => Ok(()),
        }),
        6 => each(bytes, |field, bytes| match field {
            1 => key_value(bytes, shape, depth + 1),
            _ => Ok(()),
        }),
        _ => Ok(()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
    use meshtel_model::otlp::common::v1::any_value::Value;
    use prost::Message;

    fn attribute(key: &str, value: Value) -> KeyValue {
        KeyValue {
            key: key.into(),
            value: Some(AnyValue { value: Some(value) }),
            ..Default::default()
        }
    }

    fn request(groups: Vec<ResourceSpans>) -> Vec<u8> {
        ExportTraceServiceRequest {
            resource_spans: groups,
        }
        .encode_to_vec()
    }

    #[test]
    fn spans_and_structs_are_counted_as_prost_would_make_them() {
        let span = Span {
            trace_id: vec![1; 16],
            span_id: vec![2; 8],
            name: "GET /".into(),
            attributes: vec![
                attribute("http.method", Value::StringValue("GET".into())),
                attribute(
                    "list",
                    Value::ArrayValue(meshtel_model::otlp::common::v1::ArrayValue {
                        values: vec![AnyValue::default(); 3],
                    }),
                ),
            ],
            events: vec![Event::default(); 2],
            ..Default::default()
        };
        let group = ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![span.clone(), span.clone()],
                ..Default::default()
            }],
            ..Default::default()
        };
        let encoded = request(vec![group]);
        let shape = of(&encoded, true).map_err(|_| "unreadable").unwrap();
        assert_eq!(shape.spans, 2);
        let values = 3 * ARRAY_VALUE_WEIGHT * std::mem::size_of::<AnyValue>();
        let one_span = std::mem::size_of::<Span>()
            + 2 * std::mem::size_of::<KeyValue>()
            + values
            + 2 * std::mem::size_of::<Event>();
        let containers = std::mem::size_of::<ResourceSpans>() + std::mem::size_of::<ScopeSpans>();
        assert_eq!(shape.decoded_bytes, containers + 2 * one_span);
        // Without what is inside the spans, which the reader adds span by span: the
        // same total in the end, each attribute counted once.
        let light = of(&encoded, false).map_err(|_| "unreadable").unwrap();
        let span_struct = std::mem::size_of::<Span>();
        assert_eq!(light.decoded_bytes, containers + 2 * span_struct);
        let mut allowance = check(&encoded, &SpanLimits::default()).unwrap();
        assert_eq!(allowance.decoded_bytes, light.decoded_bytes);
        allowance.attributes(2).unwrap();
        allowance.span(&span.encode_to_vec(), 2).unwrap();
        assert_eq!(allowance.decoded_bytes, containers + span_struct + one_span);
        allowance.span(&span.encode_to_vec(), 0).unwrap();
        assert_eq!(allowance.decoded_bytes, shape.decoded_bytes);
    }

    #[test]
    fn requests_of_empty_messages_and_too_many_spans_are_refused_before_decoding() {
        let limits = SpanLimits::default();
        // A million empty resource groups: 2 MB on the wire, over 100 MB decoded.
        let empty = request(vec![ResourceSpans::default(); 1_000_000]);
        let error = check(&empty, &limits).unwrap_err();
        assert!(
            error.to_string().contains("empty or near-empty messages"),
            "{error}"
        );
        // Empty spans: refused by their count first.
        let spans = request(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span::default(); 100_001],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        assert!(matches!(
            check(&spans, &limits),
            Err(ModelError::TooManySpans { count: 100_001, .. })
        ));
        // One attribute holding an array of two million `true`s: 8 MB.
        let array = request(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    attributes: vec![attribute(
                        "list",
                        Value::ArrayValue(meshtel_model::otlp::common::v1::ArrayValue {
                            values: vec![
                                AnyValue {
                                    value: Some(Value::BoolValue(true))
                                };
                                2_000_000
                            ],
                        }),
                    )],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        // The request passes the first check, which does not go into spans, and is
        // refused once the span is counted, before prost decodes it; and before prost
        // decodes the request whole.
        let mut allowance = check(&array, &limits).unwrap();
        let span = ExportTraceServiceRequest::decode(&array[..]).unwrap().resource_spans[0]
            .scope_spans[0]
            .spans[0]
            .encode_to_vec();
        let error = allowance.span(&span, 0).unwrap_err();
        assert!(error.to_string().contains("empty or near-empty"), "{error}");
        let error = check_whole(&array, &limits).unwrap_err();
        assert!(error.to_string().contains("empty or near-empty"), "{error}");
        // A span of a million empty attributes (2 MB, a `KeyValue` each): refused as
        // the reader counts them, before it reads their values.
        let attributes = request(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    attributes: vec![KeyValue::default(); 1_000_000],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let mut allowance = check(&attributes, &limits).unwrap();
        assert!(allowance.attributes(1_000_000).is_err());
        assert!(check_whole(&attributes, &limits).is_err());
        let error = crate::wire::encode_export_request(&attributes, &limits, u64::MAX)
            .err()
            .expect("refused");
        assert!(error.to_string().contains("empty or near-empty"), "{error}");
        // Asking counts nothing.
        let fresh = check(&attributes, &limits).unwrap();
        assert!(fresh.fits_attributes(1_000_000).is_err());
        assert!(fresh.fits_attributes(10).is_ok());
        assert_eq!(fresh.decoded_bytes, check(&attributes, &limits).unwrap().decoded_bytes);
        // The reader stops gathering a span's attributes once their list doubles past
        // the allowance, not at the span's end: 1.5 million empty ones are refused at
        // a power of two below that (the message says how much it had counted).
        let count = 3 << 19;
        let more = request(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![Span {
                    attributes: vec![KeyValue::default(); count],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let error = crate::wire::encode_export_request(&more, &limits, u64::MAX)
            .err()
            .expect("refused")
            .to_string();
        let counted: usize = error
            .split("would take ")
            .nth(1)
            .and_then(|rest| rest.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("{error}"));
        let all = count * std::mem::size_of::<KeyValue>();
        assert!(counted < all, "{counted} of {all}: {error}");
        // A group the decoders would skip does not stop the walk, wherever it is; and
        // what comes before anything that stops it is measured all the same.
        let group = [0x1b_u8, 0x08, 0x01, 0x1c]; // field 3: start group, a varint, end
        let mut grouped = group.to_vec();
        grouped.extend_from_slice(&empty);
        assert!(check(&grouped, &limits).is_err());
        let mut cut = empty.clone();
        cut.extend_from_slice(&[0x0a, 0x05, 0x00]);
        assert!(check(&cut, &limits).is_err());
        // Small requests pass whatever their shape; unreadable ones go to the decoders.
        assert!(check(&request(vec![ResourceSpans::default(); 10]), &limits).is_ok());
        assert!(check(&[0x0a, 0xff], &limits).is_ok());
    }

    #[test]
    fn ordinary_spans_take_a_few_times_their_encoding() {
        let span = |i: u8| Span {
            trace_id: vec![i; 16],
            span_id: vec![i; 8],
            parent_span_id: vec![i; 8],
            name: format!("GET /api/items/{{id}} {i}"),
            start_time_unix_nano: 1_700_000_000_000_000_000,
            end_time_unix_nano: 1_700_000_000_002_000_000,
            attributes: (0..12)
                .map(|a| attribute(&format!("attribute.key.{a}"), Value::IntValue(a)))
                .collect(),
            ..Default::default()
        };
        let encoded = request(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: (0..200).map(span).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let shape = of(&encoded, true).map_err(|_| "unreadable").unwrap();
        let ratio = shape.decoded_bytes as f64 / encoded.len() as f64;
        assert!(ratio < 4.0, "{ratio}");
        assert!(check(&encoded, &SpanLimits::default()).is_ok());
        // The tersest attributes there are: one-letter keys, small integers.
        let terse = Span {
            attributes: (0..100)
                .map(|a| {
                    attribute(
                        &((b'a' + (a % 26) as u8) as char).to_string(),
                        Value::IntValue(a),
                    )
                })
                .collect(),
            ..span(1)
        };
        let encoded = request(vec![ResourceSpans {
            scope_spans: vec![ScopeSpans {
                spans: vec![terse; 500],
                ..Default::default()
            }],
            ..Default::default()
        }]);
        let shape = of(&encoded, true).map_err(|_| "unreadable").unwrap();
        let ratio = shape.decoded_bytes as f64 / encoded.len() as f64;
        assert!(ratio < 8.0, "{ratio}");
        assert!(check(&encoded, &SpanLimits::default()).is_ok());
    }
}
