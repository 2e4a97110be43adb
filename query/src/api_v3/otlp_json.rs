//! OTLP traces as JSON the way Jaeger's v3 gateway writes them: proto3 JSON (camelCase
//! names, 64-bit times as decimal strings, ids as lower-case hex, enums as numbers) that
//! leaves out every field at its default value, as the OpenTelemetry Collector's pdata
//! marshaler does for Jaeger. A root span has no `parentSpanId` (never `""`), and no
//! field is `null`: Jaeger UI's schema for `/api/v3/traces` rejects both.
//!
//! What Jaeger writes even when empty is written too: a span's `status` (`{}` when
//! unset), a resource's `resource` and a scope's `scope` (`{}` when absent), and the
//! `scopeSpans` and `spans` lists, which Jaeger UI requires. Attribute values
//! (`KeyValue`, `AnyValue`) keep the encoding of `opentelemetry-proto`'s serde, which
//! already writes them as proto3 JSON (`{"intValue":"500"}`, `{"stringValue":""}`), but
//! for a NaN or infinite double, which it writes `null` and proto3 JSON as the string
//! `"NaN"`, `"Infinity"` or `"-Infinity"` ([`AnyValueJson`]), and a missing value, `{}`.
//!
//! ```text
//! TracesData ─► resourceSpans[] ─► resource {attributes?, droppedAttributesCount?}
//!                                  scopeSpans[] ─► scope {name?, version?, …}
//!                                                  spans[] ─► Span (defaults left out)
//! ```

use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::span::{Event, Link};
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};
use serde::ser::{Serialize, SerializeMap, Serializer};

/// `{"resourceSpans":[…]}`: OTLP `TracesData` over borrowed resource spans.
pub struct TracesDataJson<'a>(pub &'a [ResourceSpans]);

impl Serialize for TracesDataJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(None)?;
        map.serialize_entry("resourceSpans", &Each(self.0, ResourceSpansJson))?;
        map.end()
    }
}

/// A slice written as a JSON list, each item through the wrapper `W`.
struct Each<'a, T, W>(&'a [T], fn(&'a T) -> W);

impl<'a, T, W: Serialize> Serialize for Each<'a, T, W> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_seq(self.0.iter().map(self.1))
    }
}

/// Bytes as lower-case hex (trace and span ids).
struct Hex<'a>(&'a [u8]);

impl Serialize for Hex<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&hex::encode(self.0))
    }
}

/// A `fixed64` as proto3 JSON writes it: a decimal string.
struct Decimal(u64);

impl Serialize for Decimal {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(&self.0)
    }
}

/// Writes the entries of one JSON object, leaving out the fields at their default.
struct Fields<M>(M);

impl<M: SerializeMap> Fields<M> {
    fn text(&mut self, key: &'static str, value: &str) -> Result<(), M::Error> {
        if value.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(key, value)
    }

    fn id(&mut self, key: &'static str, value: &[u8]) -> Result<(), M::Error> {
        if value.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(key, &Hex(value))
    }

    fn number<N: Serialize + Default + PartialEq>(
        &mut self,
        key: &'static str,
        value: N,
    ) -> Result<(), M::Error> {
        if value == N::default() {
            return Ok(());
        }
        self.0.serialize_entry(key, &value)
    }

    fn time(&mut self, key: &'static str, value: u64) -> Result<(), M::Error> {
        if value == 0 {
            return Ok(());
        }
        self.0.serialize_entry(key, &Decimal(value))
    }

    fn attributes(&mut self, value: &[KeyValue]) -> Result<(), M::Error> {
        self.list("attributes", value, KeyValueJson)
    }

    /// A list of messages written as `opentelemetry-proto` writes them, only when it
    /// has items.
    fn items<T: Serialize>(&mut self, key: &'static str, value: &[T]) -> Result<(), M::Error> {
        if value.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(key, value)
    }

    /// A list written only when it has items.
    fn list<'a, T, W: Serialize>(
        &mut self,
        key: &'static str,
        items: &'a [T],
        wrap: fn(&'a T) -> W,
    ) -> Result<(), M::Error> {
        if items.is_empty() {
            return Ok(());
        }
        self.0.serialize_entry(key, &Each(items, wrap))
    }

    /// A field written even when empty.
    fn always<V: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &V,
    ) -> Result<(), M::Error> {
        self.0.serialize_entry(key, value)
    }

    fn end(self) -> Result<M::Ok, M::Error> {
        self.0.end()
    }
}

fn fields<S: Serializer>(serializer: S) -> Result<Fields<S::SerializeMap>, S::Error> {
    serializer.serialize_map(None).map(Fields)
}

struct ResourceSpansJson<'a>(&'a ResourceSpans);

impl Serialize for ResourceSpansJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let rs = self.0;
        let mut f = fields(serializer)?;
        f.always("resource", &ResourceJson(rs.resource.as_ref()))?;
        f.always("scopeSpans", &Each(&rs.scope_spans, ScopeSpansJson))?;
        f.text("schemaUrl", &rs.schema_url)?;
        f.end()
    }
}

/// A resource; an absent one is `{}`, as Jaeger writes it.
struct ResourceJson<'a>(Option<&'a Resource>);

impl Serialize for ResourceJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = fields(serializer)?;
        if let Some(resource) = self.0 {
            f.attributes(&resource.attributes)?;
            f.number("droppedAttributesCount", resource.dropped_attributes_count)?;
            f.items("entityRefs", &resource.entity_refs)?;
        }
        f.end()
    }
}

struct ScopeSpansJson<'a>(&'a ScopeSpans);

impl Serialize for ScopeSpansJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let ss = self.0;
        let mut f = fields(serializer)?;
        f.always("scope", &ScopeJson(ss.scope.as_ref()))?;
        f.always("spans", &Each(&ss.spans, SpanJson))?;
        f.text("schemaUrl", &ss.schema_url)?;
        f.end()
    }
}

/// An instrumentation scope; an absent one is `{}`, as Jaeger writes it.
struct ScopeJson<'a>(Option<&'a InstrumentationScope>);

impl Serialize for ScopeJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = fields(serializer)?;
        if let Some(scope) = self.0 {
            f.text("name", &scope.name)?;
            f.text("version", &scope.version)?;
            f.attributes(&scope.attributes)?;
            f.number("droppedAttributesCount", scope.dropped_attributes_count)?;
        }
        f.end()
    }
}

/// A span, its fields in the proto's order (as Jaeger writes them).
struct SpanJson<'a>(&'a Span);

impl Serialize for SpanJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let span = self.0;
        let mut f = fields(serializer)?;
        f.id("traceId", &span.trace_id)?;
        f.id("spanId", &span.span_id)?;
        f.text("traceState", &span.trace_state)?;
        f.id("parentSpanId", &span.parent_span_id)?;
        f.number("flags", span.flags)?;
        f.text("name", &span.name)?;
        f.number("kind", span.kind)?;
        f.time("startTimeUnixNano", span.start_time_unix_nano)?;
        f.time("endTimeUnixNano", span.end_time_unix_nano)?;
        f.attributes(&span.attributes)?;
        f.number("droppedAttributesCount", span.dropped_attributes_count)?;
        f.list("events", &span.events, EventJson)?;
        f.number("droppedEventsCount", span.dropped_events_count)?;
        f.list("links", &span.links, LinkJson)?;
        f.number("droppedLinksCount", span.dropped_links_count)?;
        f.always("status", &StatusJson(span.status.as_ref()))?;
        f.end()
    }
}

struct EventJson<'a>(&'a Event);

impl Serialize for EventJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let event = self.0;
        let mut f = fields(serializer)?;
        f.time("timeUnixNano", event.time_unix_nano)?;
        f.text("name", &event.name)?;
        f.attributes(&event.attributes)?;
        f.number("droppedAttributesCount", event.dropped_attributes_count)?;
        f.end()
    }
}

struct LinkJson<'a>(&'a Link);

impl Serialize for LinkJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let link = self.0;
        let mut f = fields(serializer)?;
        f.id("traceId", &link.trace_id)?;
        f.id("spanId", &link.span_id)?;
        f.text("traceState", &link.trace_state)?;
        f.attributes(&link.attributes)?;
        f.number("droppedAttributesCount", link.dropped_attributes_count)?;
        f.number("flags", link.flags)?;
        f.end()
    }
}

/// A span's status; unset is `{}`, as Jaeger writes it.
struct StatusJson<'a>(Option<&'a Status>);

impl Serialize for StatusJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut f = fields(serializer)?;
        if let Some(status) = self.0 {
            f.text("message", &status.message)?;
            f.number("code", status.code)?;
        }
        f.end()
    }
}

/// `{"key": …, "value": …}`, the value through [`AnyValueJson`].
struct KeyValueJson<'a>(&'a KeyValue);

impl Serialize for KeyValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(2))?;
        map.serialize_entry("key", &self.0.key)?;
        map.serialize_entry("value", &AnyValueJson(self.0.value.as_ref()))?;
        map.end()
    }
}

/// An attribute value as `opentelemetry-proto` writes it, but a NaN or infinite double
/// as proto3 JSON's string (its serde writes `null`, which Jaeger UI refuses), also
/// inside arrays and maps, and no value as `{}`.
struct AnyValueJson<'a>(Option<&'a AnyValue>);

impl Serialize for AnyValueJson<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use any_value::Value;
        let (any, value) = match self.0 {
            Some(any @ AnyValue { value: Some(value) }) => (any, value),
            _ => return serializer.serialize_map(Some(0))?.end(),
        };
        let mut map = match value {
            Value::DoubleValue(d) if !d.is_finite() => serializer.serialize_map(Some(1))?,
            Value::ArrayValue(_) | Value::KvlistValue(_) => serializer.serialize_map(Some(1))?,
            // `opentelemetry-proto` writes the other kinds as proto3 JSON already.
            _ => return any.serialize(serializer),
        };
        match value {
            Value::DoubleValue(d) if d.is_nan() => map.serialize_entry("doubleValue", "NaN")?,
            Value::DoubleValue(d) if d.is_sign_positive() => {
                map.serialize_entry("doubleValue", "Infinity")?;
            }
            Value::DoubleValue(_) => map.serialize_entry("doubleValue", "-Infinity")?,
            Value::ArrayValue(array) => {
                let values = Each(&array.values, |v| AnyValueJson(Some(v)));
                map.serialize_entry("arrayValue", &ValuesJson(values))?;
            }
            Value::KvlistValue(list) => {
                let values = Each(&list.values, KeyValueJson);
                map.serialize_entry("kvlistValue", &ValuesJson(values))?;
            }
            _ => {}
        }
        map.end()
    }
}

/// `{"values": […]}`: an `ArrayValue` or a `KeyValueList`.
struct ValuesJson<V>(V);

impl<V: Serialize> Serialize for ValuesJson<V> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut map = serializer.serialize_map(Some(1))?;
        map.serialize_entry("values", &self.0)?;
        map.end()
    }
}
