//! Span validation and attribute limits, shared by every ingest protocol.
//!
//! A decoded request is cleaned span by span, never refused as a whole here (the
//! request-level limits live in [`crate::ingest`]):
//!
//! - a span whose trace id is not 16 bytes or all zero, whose span id is not 8 bytes or
//!   all zero, or whose parent span id is neither empty nor 8 bytes is dropped and
//!   counted as rejected, with the reason in the OTLP `partial_success` message;
//! - an all-zero parent span id means "no parent" and is cleared;
//! - a span that ends before it starts is kept as sent (the store and the UI cope), and
//!   only logged at debug level;
//! - links with invalid ids are dropped and counted in `dropped_links_count`;
//! - attribute lists (span, event, link, resource, scope) keep their first
//!   `max_attributes_per_span` entries; the others are counted in
//!   `dropped_attributes_count`. String and bytes values longer than
//!   `max_attribute_value_bytes` are truncated. Both produce a warning in the response;
//! - profiling-only fields (`key_strindex`, `string_value_strindex`) are ignored;
//! - resource and scope groups left without spans are dropped.

use meshtel_model::otlp::common::v1::any_value::Value;
use meshtel_model::otlp::common::v1::{AnyValue, KeyValue};
use meshtel_model::otlp::trace::v1::span::Link;
use meshtel_model::otlp::trace::v1::{ResourceSpans, Span};
use tracing::debug;

use crate::config::IngestLimits;

/// Most rejection reasons quoted in the response message; the rest are counted.
const MAX_REASONS_QUOTED: usize = 5;

/// What is left of a request once invalid spans are dropped and limits applied.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ValidatedSpans {
    /// The spans to store, grouped as they came; never an empty group.
    pub resource_spans: Vec<ResourceSpans>,
    /// Spans kept.
    pub accepted_spans: usize,
    /// Spans dropped as invalid.
    pub rejected_spans: usize,
    /// English explanation of rejections and warnings (dropped attributes, truncated
    /// values), for OTLP `partial_success.error_message`; empty when there is none.
    pub error_message: String,
}

/// Spans in a request, before any validation.
pub fn count_spans(resource_spans: &[ResourceSpans]) -> usize {
    resource_spans
        .iter()
        .flat_map(|resource| &resource.scope_spans)
        .map(|scope| scope.spans.len())
        .sum()
}

/// Drops invalid spans and applies the attribute limits; see the module docs.
pub fn validate_resource_spans(
    resource_spans: Vec<ResourceSpans>,
    limits: &IngestLimits,
) -> ValidatedSpans {
    let mut report = Report::default();
    let mut limiter = AttributeLimiter::new(limits);
    let mut clean = Vec::with_capacity(resource_spans.len());
    for (resource_index, mut resource_group) in resource_spans.into_iter().enumerate() {
        let scopes = std::mem::take(&mut resource_group.scope_spans);
        for (scope_index, mut scope_group) in scopes.into_iter().enumerate() {
            let spans = std::mem::take(&mut scope_group.spans);
            for (span_index, mut span) in spans.into_iter().enumerate() {
                if let Some(problem) = span_problem(&span) {
                    report.reject(format!(
                        "resource_spans[{resource_index}].scope_spans[{scope_index}].spans[{span_index}]: {problem}"
                    ));
                    continue;
                }
                if span.parent_span_id.iter().all(|b| *b == 0) {
                    span.parent_span_id.clear();
                }
                if span.end_time_unix_nano < span.start_time_unix_nano {
                    report.ends_before_start += 1;
                }
                report.invalid_links += clean_span(&mut span, &mut limiter);
                scope_group.spans.push(span);
            }
            if scope_group.spans.is_empty() {
                continue;
            }
            if let Some(scope) = scope_group.scope.as_mut() {
                limiter.limit_list(&mut scope.attributes, &mut scope.dropped_attributes_count);
            }
            report.accepted += scope_group.spans.len();
            resource_group.scope_spans.push(scope_group);
        }
        if resource_group.scope_spans.is_empty() {
            continue;
        }
        if let Some(resource) = resource_group.resource.as_mut() {
            limiter.limit_list(
                &mut resource.attributes,
                &mut resource.dropped_attributes_count,
            );
        }
        clean.push(resource_group);
    }
    if report.ends_before_start > 0 {
        debug!(
            spans = report.ends_before_start,
            "spans end before they start"
        );
    }
    ValidatedSpans {
        resource_spans: clean,
        accepted_spans: report.accepted,
        rejected_spans: report.rejected,
        error_message: report.message(&limiter, limits),
    }
}

/// Why a span cannot be stored, or `None` when its ids are valid.
fn span_problem(span: &Span) -> Option<String> {
    if span.trace_id.len() != 16 {
        return Some(format!(
            "trace id must be 16 bytes, got {}",
            span.trace_id.len()
        ));
    }
    if is_all_zero(&span.trace_id) {
        return Some("trace id must not be all zeros".to_string());
    }
    if span.span_id.len() != 8 {
        return Some(format!(
            "span id must be 8 bytes, got {}",
            span.span_id.len()
        ));
    }
    if is_all_zero(&span.span_id) {
        return Some("span id must not be all zeros".to_string());
    }
    if !span.parent_span_id.is_empty() && span.parent_span_id.len() != 8 {
        return Some(format!(
            "parent span id must be empty or 8 bytes, got {}",
            span.parent_span_id.len()
        ));
    }
    None
}

fn is_all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

fn link_is_valid(link: &Link) -> bool {
    link.trace_id.len() == 16
        && !is_all_zero(&link.trace_id)
        && link.span_id.len() == 8
        && !is_all_zero(&link.span_id)
}

/// Applies attribute limits to a span, its events and links; drops invalid links and
/// returns how many.
fn clean_span(span: &mut Span, limiter: &mut AttributeLimiter) -> usize {
    limiter.limit_list(&mut span.attributes, &mut span.dropped_attributes_count);
    for event in &mut span.events {
        limiter.limit_list(&mut event.attributes, &mut event.dropped_attributes_count);
    }
    let links_before = span.links.len();
    span.links.retain(link_is_valid);
    let invalid_links = links_before - span.links.len();
    span.dropped_links_count = span
        .dropped_links_count
        .saturating_add(u32::try_from(invalid_links).unwrap_or(u32::MAX));
    for link in &mut span.links {
        limiter.limit_list(&mut link.attributes, &mut link.dropped_attributes_count);
    }
    invalid_links
}

/// Counts what validation did, to explain it in the response.
#[derive(Default)]
struct Report {
    accepted: usize,
    rejected: usize,
    reasons: Vec<String>,
    ends_before_start: usize,
    invalid_links: usize,
}

impl Report {
    fn reject(&mut self, reason: String) {
        self.rejected += 1;
        if self.reasons.len() < MAX_REASONS_QUOTED {
            self.reasons.push(reason);
        }
    }

    fn message(&self, limiter: &AttributeLimiter, limits: &IngestLimits) -> String {
        let mut parts = Vec::new();
        if self.rejected > 0 {
            let mut text = format!(
                "rejected {} invalid span(s): {}",
                self.rejected,
                self.reasons.join("; ")
            );
            if self.rejected > self.reasons.len() {
                text.push_str(&format!(
                    "; and {} more",
                    self.rejected - self.reasons.len()
                ));
            }
            parts.push(text);
        }
        if limiter.dropped_attributes > 0 {
            parts.push(format!(
                "dropped {} attribute(s) over max_attributes_per_span ({})",
                limiter.dropped_attributes, limits.max_attributes_per_span
            ));
        }
        if limiter.truncated_values > 0 {
            parts.push(format!(
                "truncated {} attribute value(s) longer than max_attribute_value_bytes ({})",
                limiter.truncated_values,
                limits.max_attribute_value_bytes.as_u64()
            ));
        }
        if self.invalid_links > 0 {
            parts.push(format!(
                "dropped {} span link(s) with invalid ids",
                self.invalid_links
            ));
        }
        parts.join("; ")
    }
}

/// Enforces `max_attributes_per_span` and `max_attribute_value_bytes`, counting what
/// it dropped or cut.
struct AttributeLimiter {
    max_count: usize,
    max_value_bytes: usize,
    dropped_attributes: usize,
    truncated_values: usize,
}

impl AttributeLimiter {
    fn new(limits: &IngestLimits) -> Self {
        AttributeLimiter {
            max_count: limits.max_attributes_per_span,
            max_value_bytes: limits.max_attribute_value_bytes_usize(),
            dropped_attributes: 0,
            truncated_values: 0,
        }
    }

    fn limit_list(&mut self, attributes: &mut Vec<KeyValue>, dropped_count: &mut u32) {
        if attributes.len() > self.max_count {
            let extra = attributes.len() - self.max_count;
            attributes.truncate(self.max_count);
            *dropped_count = dropped_count.saturating_add(u32::try_from(extra).unwrap_or(u32::MAX));
            self.dropped_attributes += extra;
        }
        for attribute in attributes.iter_mut() {
            self.limit_key_value(attribute);
        }
    }

    fn limit_key_value(&mut self, attribute: &mut KeyValue) {
        attribute.key_strindex = 0;
        if let Some(value) = attribute.value.as_mut() {
            self.limit_value(value);
        }
    }

    fn limit_value(&mut self, value: &mut AnyValue) {
        match value.value.as_mut() {
            Some(Value::StringValue(text)) if text.len() > self.max_value_bytes => {
                let mut end = self.max_value_bytes;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                self.truncated_values += 1;
            }
            Some(Value::BytesValue(bytes)) if bytes.len() > self.max_value_bytes => {
                bytes.truncate(self.max_value_bytes);
                self.truncated_values += 1;
            }
            Some(Value::ArrayValue(array)) => {
                for item in &mut array.values {
                    self.limit_value(item);
                }
            }
            Some(Value::KvlistValue(list)) => {
                for item in &mut list.values {
                    self.limit_key_value(item);
                }
            }
            Some(Value::StringValueStrindex(_)) => value.value = None,
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
