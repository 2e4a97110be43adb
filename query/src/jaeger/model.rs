//! Jaeger's UI JSON model (`model/json`, now `internal/uimodel`), field for field.
//!
//! Every field carries an explicit serde rename so that the wire names stay Jaeger's even
//! when Rust names change. Field order follows the Go structs, so that our bytes match
//! what `encoding/json` writes. Omitted-when-empty fields are exactly Jaeger's
//! `omitempty` ones (`flags`, `parentSpanID`, `process`, an error's `code`/`traceID`).

use std::collections::BTreeMap;

use base64::Engine as _;
use serde::ser::SerializeStruct;
use serde::{Deserialize, Serialize, Serializer};

/// Largest integer a JavaScript number holds exactly (2^53 − 1). Jaeger renders int64
/// tag values beyond ± this as decimal strings.
pub const JS_MAX_SAFE_INTEGER: i64 = (1 << 53) - 1;

/// One trace as the UI and Grafana read it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trace {
    /// Trace id: 16 lowercase hex digits when the high half is zero, else 32.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Spans sorted by start time.
    #[serde(rename = "spans")]
    pub spans: Vec<Span>,
    /// Processes by id (`p1`, `p2`, …); every span's `processID` is a key here.
    /// A `BTreeMap` serialises keys sorted, as Go does for maps.
    #[serde(rename = "processes")]
    pub processes: BTreeMap<String, Process>,
    /// Trace-level warnings; `null` when none.
    #[serde(rename = "warnings")]
    pub warnings: Option<Vec<String>>,
}

/// One span.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Span {
    /// Trace id, same rendering as [`Trace::trace_id`].
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Span id: always 16 lowercase hex digits.
    #[serde(rename = "spanID")]
    pub span_id: String,
    /// Deprecated parent id; never set in the UI format.
    #[serde(
        rename = "parentSpanID",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub parent_span_id: Option<String>,
    /// Jaeger flags (1 sampled, 2 debug, 8 firehose); omitted when 0.
    #[serde(rename = "flags", default, skip_serializing_if = "is_zero_u32")]
    pub flags: u32,
    /// Operation (span) name.
    #[serde(rename = "operationName")]
    pub operation_name: String,
    /// References; the parent `CHILD_OF` comes first. `[]` for roots.
    #[serde(rename = "references")]
    pub references: Vec<Reference>,
    /// Start, µs since the Unix epoch.
    #[serde(rename = "startTime")]
    pub start_time: u64,
    /// Duration in µs.
    #[serde(rename = "duration")]
    pub duration: u64,
    /// Tags, always an array.
    #[serde(rename = "tags")]
    pub tags: Vec<KeyValue>,
    /// Logs, always an array.
    #[serde(rename = "logs")]
    pub logs: Vec<Log>,
    /// Key into [`Trace::processes`].
    #[serde(rename = "processID")]
    pub process_id: String,
    /// Embedded process; never set in the UI format.
    #[serde(rename = "process", default, skip_serializing_if = "Option::is_none")]
    pub process: Option<Process>,
    /// Span warnings; `null` when none.
    #[serde(rename = "warnings")]
    pub warnings: Option<Vec<String>>,
}

/// How one span refers to another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RefType {
    /// The referenced span is the parent.
    #[serde(rename = "CHILD_OF")]
    ChildOf,
    /// The referenced span caused this one but did not wait for it.
    #[serde(rename = "FOLLOWS_FROM")]
    FollowsFrom,
}

/// A reference to another span, possibly in another trace.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reference {
    /// Kind of reference.
    #[serde(rename = "refType")]
    pub ref_type: RefType,
    /// Trace id of the referenced span.
    #[serde(rename = "traceID")]
    pub trace_id: String,
    /// Span id of the referenced span.
    #[serde(rename = "spanID")]
    pub span_id: String,
}

/// The emitter of spans: a service and its resource tags.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Process {
    /// Service name (`service.name` of the resource).
    #[serde(rename = "serviceName")]
    pub service_name: String,
    /// Other resource attributes.
    #[serde(rename = "tags")]
    pub tags: Vec<KeyValue>,
}

/// A timestamped set of fields (an OTLP span event).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// µs since the Unix epoch.
    #[serde(rename = "timestamp")]
    pub timestamp: u64,
    /// Fields; the event name comes first as `event`.
    #[serde(rename = "fields")]
    pub fields: Vec<KeyValue>,
}

/// A typed tag value.
#[derive(Debug, Clone, PartialEq)]
pub enum TagValue {
    /// `"type":"string"`.
    String(String),
    /// `"type":"bool"`.
    Bool(bool),
    /// `"type":"int64"`; a decimal string on the wire beyond ±(2^53 − 1).
    Int64(i64),
    /// `"type":"float64"`.
    Float64(f64),
    /// `"type":"binary"`; base64 on the wire.
    Binary(Vec<u8>),
}

impl TagValue {
    /// Jaeger's lowercase type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            TagValue::String(_) => "string",
            TagValue::Bool(_) => "bool",
            TagValue::Int64(_) => "int64",
            TagValue::Float64(_) => "float64",
            TagValue::Binary(_) => "binary",
        }
    }

    /// The value as Jaeger's `KeyValue.AsString` renders it, which is what tag
    /// searches compare against: bools `true`/`false`, ints decimal, binary as hex.
    pub fn as_search_string(&self) -> String {
        match self {
            TagValue::String(s) => s.clone(),
            TagValue::Bool(b) => b.to_string(),
            TagValue::Int64(i) => i.to_string(),
            TagValue::Float64(f) => f.to_string(),
            TagValue::Binary(b) => hex::encode(b),
        }
    }
}

/// A tag: key, type and value, as `{"key":…,"type":…,"value":…}`.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyValue {
    /// Tag key.
    pub key: String,
    /// Typed value.
    pub value: TagValue,
}

impl KeyValue {
    /// A string tag.
    pub fn string(key: impl Into<String>, value: impl Into<String>) -> Self {
        KeyValue {
            key: key.into(),
            value: TagValue::String(value.into()),
        }
    }

    /// A bool tag.
    pub fn bool(key: impl Into<String>, value: bool) -> Self {
        KeyValue {
            key: key.into(),
            value: TagValue::Bool(value),
        }
    }
}

impl Serialize for KeyValue {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("KeyValue", 3)?;
        s.serialize_field("key", &self.key)?;
        s.serialize_field("type", self.value.type_name())?;
        match &self.value {
            TagValue::String(v) => s.serialize_field("value", v)?,
            TagValue::Bool(v) => s.serialize_field("value", v)?,
            TagValue::Int64(v) if !(-JS_MAX_SAFE_INTEGER..=JS_MAX_SAFE_INTEGER).contains(v) => {
                s.serialize_field("value", &v.to_string())?
            }
            TagValue::Int64(v) => s.serialize_field("value", v)?,
            TagValue::Float64(v) => s.serialize_field("value", &GoFloat(*v))?,
            TagValue::Binary(v) => s.serialize_field(
                "value",
                &base64::engine::general_purpose::STANDARD.encode(v),
            )?,
        }
        s.end()
    }
}

/// The wire form of a [`KeyValue`], for reading Jaeger JSON back.
#[derive(Deserialize)]
struct WireKeyValue {
    key: String,
    #[serde(rename = "type", default)]
    value_type: String,
    #[serde(default)]
    value: serde_json::Value,
}

impl<'de> Deserialize<'de> for KeyValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::Error as _;
        let wire = WireKeyValue::deserialize(deserializer)?;
        let bad = || {
            D::Error::custom(format!(
                "invalid {} value for tag {}",
                wire.value_type, wire.key
            ))
        };
        let value = match (wire.value_type.as_str(), &wire.value) {
            ("" | "string", serde_json::Value::String(s)) => TagValue::String(s.clone()),
            ("bool", serde_json::Value::Bool(b)) => TagValue::Bool(*b),
            ("bool", serde_json::Value::String(s)) => TagValue::Bool(s == "true"),
            ("int64", serde_json::Value::Number(n)) => TagValue::Int64(n.as_i64().ok_or_else(bad)?),
            ("int64", serde_json::Value::String(s)) => {
                TagValue::Int64(s.parse().map_err(|_| bad())?)
            }
            ("float64", serde_json::Value::Number(n)) => {
                TagValue::Float64(n.as_f64().ok_or_else(bad)?)
            }
            ("float64", serde_json::Value::String(s)) => {
                TagValue::Float64(s.parse().map_err(|_| bad())?)
            }
            ("binary", serde_json::Value::String(s)) => TagValue::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(s)
                    .map_err(D::Error::custom)?,
            ),
            _ => return Err(bad()),
        };
        Ok(KeyValue {
            key: wire.key,
            value,
        })
    }
}

/// A float serialised the way Go's `encoding/json` does where it matters: integral
/// values without a fraction (`1`, not `1.0`), non-finite values as strings (Go would
/// fail the whole response instead).
#[derive(Debug, Clone, Copy)]
pub(crate) struct GoFloat(pub f64);

impl Serialize for GoFloat {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let v = self.0;
        if v.is_nan() {
            serializer.serialize_str("NaN")
        } else if v.is_infinite() {
            serializer.serialize_str(if v > 0.0 { "+Inf" } else { "-Inf" })
        } else if v.fract() == 0.0 && v.abs() < 9_223_372_036_854_775_808.0 {
            // Integral and within i64 (below 2^63): the cast is exact, and Go writes it
            // in full as well (`1000000000000000`, not `1e15`).
            serializer.serialize_i64(v as i64)
        } else {
            serializer.serialize_f64(v)
        }
    }
}

/// One caller → callee edge of `/api/dependencies`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DependencyLink {
    /// Calling service.
    #[serde(rename = "parent")]
    pub parent: String,
    /// Called service.
    #[serde(rename = "child")]
    pub child: String,
    /// Number of calls.
    #[serde(rename = "callCount")]
    pub call_count: u64,
}

/// One entry of `/api/operations`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// Span name.
    #[serde(rename = "name")]
    pub name: String,
    /// Lowercase span kind, `""` when unspecified.
    #[serde(rename = "spanKind")]
    pub span_kind: String,
}

/// One entry of the envelope's `errors`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StructuredError {
    /// HTTP status duplicated; omitted (0) for per-trace errors.
    #[serde(rename = "code", default, skip_serializing_if = "is_zero_u16")]
    pub code: u16,
    /// Message.
    #[serde(rename = "msg")]
    pub msg: String,
    /// The trace this error is about, for per-trace errors.
    #[serde(rename = "traceID", default, skip_serializing_if = "String::is_empty")]
    pub trace_id: String,
}

/// Every `/api` response body: `{"data":…,"total":0,"limit":0,"offset":0,"errors":null}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The payload; `null` in error responses.
    #[serde(rename = "data")]
    pub data: T,
    /// Number of items, set only by the services and operations endpoints.
    #[serde(rename = "total")]
    pub total: usize,
    /// Always 0: no pagination.
    #[serde(rename = "limit")]
    pub limit: usize,
    /// Always 0: no pagination.
    #[serde(rename = "offset")]
    pub offset: usize,
    /// `null` unless something went wrong.
    #[serde(rename = "errors")]
    pub errors: Option<Vec<StructuredError>>,
}

impl<T> Envelope<T> {
    /// A success envelope with `total` 0 and no errors.
    pub fn data(data: T) -> Self {
        Envelope {
            data,
            total: 0,
            limit: 0,
            offset: 0,
            errors: None,
        }
    }

    /// A success envelope reporting `total` items.
    pub fn with_total(data: T, total: usize) -> Self {
        Envelope {
            total,
            ..Envelope::data(data)
        }
    }
}

fn is_zero_u32(v: &u32) -> bool {
    *v == 0
}

fn is_zero_u16(v: &u16) -> bool {
    *v == 0
}
