//! Limits every ingest server enforces on one request, whatever its protocol.

use bytesize::ByteSize;
use meshtel_model::validate::SpanLimits;
use serde::{Deserialize, Serialize};

use crate::cors::CorsConfig;
use crate::error::{Error, Result};

/// Bounds on one ingest request (OTLP gRPC, OTLP HTTP and Zipkin alike), and on the
/// bytes of all of them held at once.
///
/// Too large a body is refused as a whole (gRPC `RESOURCE_EXHAUSTED`, HTTP 413), as is a
/// request with too many spans (gRPC `INVALID_ARGUMENT`, HTTP 400). The attribute limits
/// never reject anything: like the OpenTelemetry SDK span limits, they keep the first
/// attributes, drop the rest and count them in `dropped_attributes_count`, and truncate
/// long values; the response then carries a warning in `partial_success.error_message`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IngestLimits {
    /// Largest request body accepted, counted both as received and after
    /// decompression (gzip), e.g. `"16 MiB"`. Larger requests are refused with gRPC
    /// `RESOURCE_EXHAUSTED` or HTTP 413 and must not be retried as they are.
    #[serde(
        default = "default_max_request_bytes",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_request_bytes: ByteSize,
    /// Most spans accepted in one request. A request with more is refused as a whole
    /// (gRPC `INVALID_ARGUMENT`, HTTP 400); clients should send smaller batches.
    #[serde(default = "default_max_spans_per_request")]
    pub max_spans_per_request: usize,
    /// Most attributes kept on one span, span event, span link, resource or scope. The
    /// first ones are kept; the others are dropped and added to the item's
    /// `dropped_attributes_count`, as the OpenTelemetry SDK span limits do.
    #[serde(default = "default_max_attributes_per_span")]
    pub max_attributes_per_span: usize,
    /// Longest string (or bytes) attribute value kept, in bytes, e.g. `"64 KiB"`.
    /// Longer values are truncated (at a UTF-8 character boundary) and counted in the
    /// response's warning.
    #[serde(
        default = "default_max_attribute_value_bytes",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_attribute_value_bytes: ByteSize,
    /// Longest span name, span event name or attribute key kept, in bytes, e.g.
    /// `"1 KiB"`. Longer ones are truncated (at a UTF-8 character boundary) and counted in
    /// the response's warning: names are listed as operations and keys as tags.
    #[serde(
        default = "default_max_name_bytes",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_name_bytes: ByteSize,
    /// Most events kept on one span: the first ones; the others are dropped and added to
    /// its `dropped_events_count`, as the OpenTelemetry SDK span limits do (128).
    #[serde(default = "default_max_events_per_span")]
    pub max_events_per_span: usize,
    /// Most links kept on one span, as [`Self::max_events_per_span`] (128).
    #[serde(default = "default_max_events_per_span")]
    pub max_links_per_span: usize,
    /// Most request bytes held at once by all ingest requests being received and
    /// processed (OTLP gRPC, OTLP HTTP and Zipkin together), as received and, for HTTP,
    /// once decompressed, and what parsing a JSON body takes (about 770 bytes per JSON
    /// object, 80 per scalar in an array, 192 per object entry past eleven: some twenty
    /// times an OTLP/JSON body; a body whose parse cannot fit in the
    /// whole budget is 413). A request that would go past it
    /// is refused with HTTP 503 / gRPC `UNAVAILABLE` and a retry delay of 1 s, counted in
    /// `meshtel_ingest_refused_total{reason="overloaded"}`. Default `384MiB`; at least
    /// twice `max_request_bytes` and 64 KiB.
    #[serde(
        default = "default_max_inflight_bytes",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_inflight_bytes: ByteSize,
    /// Web origins allowed to post spans from a browser (`[ingest.cors]`): off by
    /// default. See [`CorsConfig`].
    #[serde(default)]
    pub cors: CorsConfig,
}

/// 384 MiB: an ordinary OTLP/JSON request of the largest default size while it is
/// parsed (about twenty times its 16 MiB), or two dozen protobuf requests of that size
/// at once, or hundreds of typical SDK batches.
pub fn default_max_inflight_bytes() -> ByteSize {
    ByteSize::mib(384)
}

/// 16 MiB: large enough for a busy SDK's batch, small enough to bound memory per request.
pub fn default_max_request_bytes() -> ByteSize {
    ByteSize::mib(16)
}

/// 100 000 spans per request.
pub fn default_max_spans_per_request() -> usize {
    100_000
}

/// Smallest `max_attribute_value_bytes` and `max_name_bytes` accepted.
pub const MIN_NAME_AND_VALUE_BYTES: u64 = 64;

/// 128 attributes, the OpenTelemetry SDK's default span limit.
pub fn default_max_attributes_per_span() -> usize {
    128
}

/// 64 KiB per attribute value.
pub fn default_max_attribute_value_bytes() -> ByteSize {
    ByteSize::kib(64)
}

/// 128 events (and links) per span, the OpenTelemetry SDKs' default.
pub fn default_max_events_per_span() -> usize {
    128
}

/// 1 KiB per span name, event name or attribute key.
pub fn default_max_name_bytes() -> ByteSize {
    ByteSize::kib(1)
}

impl Default for IngestLimits {
    fn default() -> Self {
        IngestLimits {
            max_request_bytes: default_max_request_bytes(),
            max_spans_per_request: default_max_spans_per_request(),
            max_attributes_per_span: default_max_attributes_per_span(),
            max_attribute_value_bytes: default_max_attribute_value_bytes(),
            max_name_bytes: default_max_name_bytes(),
            max_events_per_span: default_max_events_per_span(),
            max_links_per_span: default_max_events_per_span(),
            max_inflight_bytes: default_max_inflight_bytes(),
            cors: CorsConfig::default(),
        }
    }
}

/// gRPC frames carry their length in 32 bits, so no request can be larger than this.
const MAX_REQUEST_BYTES_CEILING: u64 = u32::MAX as u64;

impl IngestLimits {
    /// Checks that every limit is usable: all positive, the request size within what a
    /// gRPC frame can carry.
    pub fn validate(&self) -> Result<()> {
        let request = self.max_request_bytes.as_u64();
        if request == 0 || request > MAX_REQUEST_BYTES_CEILING {
            return Err(Error::InvalidConfig(format!(
                "[ingest] max_request_bytes must be between 1 byte and 4 GiB, got {}",
                self.max_request_bytes
            )));
        }
        let least = self.least_inflight_bytes();
        if self.max_inflight_bytes < least {
            return Err(Error::InvalidConfig(format!(
                "[ingest] max_inflight_bytes ({}) must be at least twice [ingest] \
                 max_request_bytes ({}) and 64 KiB, {least}: a compressed request of the largest size allowed \
                 holds its bytes as received and once decompressed, and could otherwise never \
                 be received",
                self.max_inflight_bytes, self.max_request_bytes
            )));
        }
        if self.max_spans_per_request == 0 {
            return Err(Error::InvalidConfig(
                "[ingest] max_spans_per_request must be at least 1".to_string(),
            ));
        }
        self.cors.validate()?;
        if self.max_attributes_per_span == 0 {
            return Err(Error::InvalidConfig(
                "[ingest] max_attributes_per_span must be at least 1".to_string(),
            ));
        }
        // Both apply to resource attributes too: below this, `service.name` itself (or
        // a service's name) would be cut and the spans filed under another service.
        for (name, value) in [
            ("max_attribute_value_bytes", self.max_attribute_value_bytes),
            ("max_name_bytes", self.max_name_bytes),
        ] {
            if value.as_u64() < MIN_NAME_AND_VALUE_BYTES {
                return Err(Error::InvalidConfig(format!(
                    "[ingest] {name} must be at least {MIN_NAME_AND_VALUE_BYTES} bytes, got {value}: \
                     it applies to resource attributes too, service.name among them"
                )));
            }
        }
        Ok(())
    }

    /// The smallest `max_inflight_bytes` that a request of the largest size allowed
    /// always fits in when alone: its bytes as received and once decompressed, and room
    /// for framing (gRPC's 5-byte message header, HTTP/2 frames).
    pub fn least_inflight_bytes(&self) -> ByteSize {
        ByteSize::b(
            self.max_request_bytes
                .as_u64()
                .saturating_mul(2)
                .saturating_add(ByteSize::kib(64).as_u64()),
        )
    }

    /// [`Self::max_request_bytes`] as a `usize`, saturating on 32-bit targets.
    pub fn max_request_bytes_usize(&self) -> usize {
        usize::try_from(self.max_request_bytes.as_u64()).unwrap_or(usize::MAX)
    }

    /// [`Self::max_attribute_value_bytes`] as a `usize`, saturating on 32-bit targets.
    pub fn max_attribute_value_bytes_usize(&self) -> usize {
        usize::try_from(self.max_attribute_value_bytes.as_u64()).unwrap_or(usize::MAX)
    }

    /// The limits span validation applies.
    pub fn span_limits(&self) -> SpanLimits {
        SpanLimits {
            max_spans_per_request: self.max_spans_per_request,
            max_attributes_per_span: self.max_attributes_per_span,
            max_attribute_value_bytes: self.max_attribute_value_bytes_usize(),
            max_name_bytes: usize::try_from(self.max_name_bytes.as_u64()).unwrap_or(usize::MAX),
            max_events_per_span: self.max_events_per_span,
            max_links_per_span: self.max_links_per_span,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_round_trips_through_json() {
        let limits = IngestLimits::default();
        limits.validate().unwrap();
        let json = serde_json::to_string(&limits).unwrap();
        let back: IngestLimits = serde_json::from_str(&json).unwrap();
        assert_eq!(back, limits);
        let empty: IngestLimits = serde_json::from_str("{}").unwrap();
        assert_eq!(empty, limits);
    }

    #[test]
    fn defaults_are_documented_values() {
        let limits = IngestLimits::default();
        assert_eq!(limits.max_request_bytes.as_u64(), 16 * 1024 * 1024);
        assert_eq!(limits.max_spans_per_request, 100_000);
        assert_eq!(limits.max_attributes_per_span, 128);
        assert_eq!(limits.max_attribute_value_bytes.as_u64(), 64 * 1024);
    }

    #[test]
    fn accepts_human_sizes_and_rejects_unknown_fields() {
        let limits: IngestLimits =
            serde_json::from_str(r#"{"max_request_bytes":"4 MiB","max_spans_per_request":10}"#)
                .unwrap();
        assert_eq!(limits.max_request_bytes.as_u64(), 4 * 1024 * 1024);
        assert_eq!(limits.max_spans_per_request, 10);
        assert!(serde_json::from_str::<IngestLimits>(r#"{"max_spans":1}"#).is_err());
    }

    #[test]
    fn validate_rejects_zero_limits() {
        let zero_spans = IngestLimits {
            max_spans_per_request: 0,
            ..IngestLimits::default()
        };
        assert!(zero_spans.validate().is_err());
        let zero_bytes = IngestLimits {
            max_request_bytes: ByteSize(0),
            ..IngestLimits::default()
        };
        assert!(zero_bytes.validate().is_err());
        let huge = IngestLimits {
            max_request_bytes: ByteSize::gib(8),
            ..IngestLimits::default()
        };
        assert!(huge.validate().is_err());
        // Names and values shorter than service.name's key or a service's name.
        let tiny_names = IngestLimits {
            max_name_bytes: ByteSize(8),
            ..IngestLimits::default()
        };
        let error = tiny_names.validate().unwrap_err().to_string();
        assert!(
            error.contains("max_name_bytes must be at least 64 bytes"),
            "{error}"
        );
        let tiny_values = IngestLimits {
            max_attribute_value_bytes: ByteSize(63),
            ..IngestLimits::default()
        };
        assert!(tiny_values.validate().is_err());
        let smallest = IngestLimits {
            max_attribute_value_bytes: ByteSize(64),
            max_name_bytes: ByteSize(64),
            ..IngestLimits::default()
        };
        smallest.validate().unwrap();
        // The in-flight bound below two of the largest requests: a compressed one holds
        // its bytes twice, and could never fit.
        let starved = IngestLimits {
            max_inflight_bytes: ByteSize::mib(32),
            ..IngestLimits::default()
        };
        let error = starved.validate().unwrap_err().to_string();
        assert!(
            error.contains(
                "max_inflight_bytes (32.0 MiB) must be at least twice [ingest] max_request_bytes"
            ),
            "{error}"
        );
        IngestLimits {
            max_inflight_bytes: ByteSize::kib(32 * 1024 + 64),
            ..IngestLimits::default()
        }
        .validate()
        .unwrap();
    }
}
