//! Span validation and attribute limits, shared by every ingest protocol.
//!
//! A decoded request is cleaned span by span, never refused as a whole here (the
//! request-level limits live in [`crate::ingest`]):
//!
//! - a span whose trace id is not 16 bytes or all zero, whose span id is not 8 bytes or
//!   all zero, or whose parent span id is neither empty nor 8 bytes is dropped and
//!   counted as rejected, with the reason in the OTLP `partial_success` message;
//! - a span that starts more than [`MAX_START_AHEAD`] after the collector's clock is
//!   dropped the same way: blocks are deleted by the age of their newest span, and one
//!   span dated years ahead would keep its block, and every span merged with it, past
//!   retention;
//! - an all-zero parent span id means "no parent" and is cleared;
//! - a span that ends before it starts is kept as sent (the store and the UI cope), and
//!   only logged at debug level;
//! - links with invalid ids are dropped and counted in `dropped_links_count`;
//! - attribute lists (span, event, link, resource, scope) keep their first
//!   `max_attributes_per_span` entries; the others are counted in
//!   `dropped_attributes_count`. String and bytes values longer than
//!   `max_attribute_value_bytes` are truncated (an array's or map's elements are kept
//!   while they fit it in total), and so are span names, event names and
//!   attribute keys longer than `max_name_bytes`. These produce a warning in the response;
//! - profiling-only fields (`key_strindex`, `string_value_strindex`) are ignored;
//! - resource and scope groups left without spans are dropped.

use prost::Message;

use crate::otlp::common::v1::any_value::Value;
use crate::otlp::common::v1::{AnyValue, KeyValue};
use crate::otlp::trace::v1::span::Link;
use crate::otlp::trace::v1::{ResourceSpans, Span};

/// The per-span limits validation applies (the collector's `[ingest]` settings).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpanLimits {
    /// Most spans in one request; more refuse the request as a whole.
    pub max_spans_per_request: usize,
    /// Most attributes kept on a span, event, link, resource or scope.
    pub max_attributes_per_span: usize,
    /// Longest string or bytes attribute value kept, in bytes.
    pub max_attribute_value_bytes: usize,
    /// Longest span name, event name or attribute key kept, in bytes: names are listed
    /// as operations and keys as tags, so they are held much shorter than values.
    pub max_name_bytes: usize,
    /// Most events kept on a span (the first ones), as OpenTelemetry SDKs keep 128.
    pub max_events_per_span: usize,
    /// Most links kept on a span (the first valid ones), as OpenTelemetry SDKs keep 128.
    pub max_links_per_span: usize,
}

impl Default for SpanLimits {
    /// The collector's defaults: 100,000 spans, 128 attributes, 64 KiB values, 1 KiB
    /// names and keys.
    fn default() -> Self {
        SpanLimits {
            max_spans_per_request: 100_000,
            max_attributes_per_span: 128,
            max_attribute_value_bytes: 64 * 1024,
            max_name_bytes: 1024,
            max_events_per_span: 128,
            max_links_per_span: 128,
        }
    }
}

/// How far past the collector's clock a span may start (clock skew between hosts is
/// seconds; a day leaves room for anything but a wrong clock).
pub const MAX_START_AHEAD: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// The latest start time a span may have now: the collector's clock plus
/// [`MAX_START_AHEAD`], in Unix nanoseconds.
pub fn latest_start_now() -> u64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    u64::try_from((now + MAX_START_AHEAD).as_nanos()).unwrap_or(u64::MAX)
}

/// Most rejection reasons quoted in the response message; the rest are counted.
pub const MAX_REASONS_QUOTED: usize = 5;

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
    /// Spans kept whose end is before their start (kept as sent, worth a debug line).
    pub ends_before_start: usize,
    /// Attributes dropped and values and names cut by the limits.
    pub limited: LimitsApplied,
}

/// What the attribute limits did to a request: attributes dropped over
/// `max_attributes_per_span`, values cut to `max_attribute_value_bytes`, names and
/// keys cut to `max_name_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LimitsApplied {
    /// Attributes dropped.
    pub dropped_attributes: usize,
    /// Attribute values cut.
    pub truncated_values: usize,
    /// Span names and attribute keys cut.
    pub truncated_names: usize,
    /// Span events dropped.
    pub dropped_events: usize,
    /// Span links dropped.
    pub dropped_links: usize,
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
    limits: &SpanLimits,
) -> ValidatedSpans {
    let mut report = Report::default();
    let mut limiter = AttributeLimiter::new(limits);
    let latest_start = latest_start_now();
    let mut clean = Vec::with_capacity(resource_spans.len());
    for (resource_index, mut resource_group) in resource_spans.into_iter().enumerate() {
        let scopes = std::mem::take(&mut resource_group.scope_spans);
        for (scope_index, mut scope_group) in scopes.into_iter().enumerate() {
            let spans = std::mem::take(&mut scope_group.spans);
            for (span_index, mut span) in spans.into_iter().enumerate() {
                let ids = (
                    &span.trace_id[..],
                    &span.span_id[..],
                    &span.parent_span_id[..],
                );
                if let Some(problem) = span_problem(ids, span.start_time_unix_nano, latest_start) {
                    report.reject_span(resource_index, scope_index, span_index, &problem);
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
    ValidatedSpans {
        resource_spans: clean,
        accepted_spans: report.accepted,
        rejected_spans: report.rejected,
        error_message: report.message(&limiter),
        ends_before_start: report.ends_before_start,
        limited: limiter.applied(),
    }
}

/// Why a span with these ids (trace, span, parent) and start cannot be stored, or
/// `None` when it can; `latest_start` is [`latest_start_now`] for the request.
pub fn span_problem(
    (trace_id, span_id, parent_span_id): (&[u8], &[u8], &[u8]),
    start_time_unix_nano: u64,
    latest_start: u64,
) -> Option<String> {
    if trace_id.len() != 16 {
        return Some(format!("trace id must be 16 bytes, got {}", trace_id.len()));
    }
    if is_all_zero(trace_id) {
        return Some("trace id must not be all zeros".to_string());
    }
    if span_id.len() != 8 {
        return Some(format!("span id must be 8 bytes, got {}", span_id.len()));
    }
    if is_all_zero(span_id) {
        return Some("span id must not be all zeros".to_string());
    }
    if !parent_span_id.is_empty() && parent_span_id.len() != 8 {
        return Some(format!(
            "parent span id must be empty or 8 bytes, got {}",
            parent_span_id.len()
        ));
    }
    if start_time_unix_nano > latest_start {
        // The start itself, not its distance from the clock: the same request read
        // twice gets the same message.
        return Some(format!(
            "start time {start_time_unix_nano} (Unix ns) is more than {} s ahead of the \
             collector's clock",
            MAX_START_AHEAD.as_secs()
        ));
    }
    None
}

fn is_all_zero(bytes: &[u8]) -> bool {
    bytes.iter().all(|b| *b == 0)
}

/// Whether a link's ids could be stored: 16-byte trace id, 8-byte span id, neither zero.
pub fn link_is_valid(link: &Link) -> bool {
    link.trace_id.len() == 16
        && !is_all_zero(&link.trace_id)
        && link.span_id.len() == 8
        && !is_all_zero(&link.span_id)
}

/// Applies attribute limits to a span, its events and links; drops invalid links and
/// returns how many.
pub fn clean_span(span: &mut Span, limiter: &mut AttributeLimiter) -> usize {
    limiter.limit_name_string(&mut span.name);
    limiter.limit_list(&mut span.attributes, &mut span.dropped_attributes_count);
    let extra = span.events.len().saturating_sub(limiter.max_events);
    if extra > 0 {
        span.events.truncate(limiter.max_events);
        span.dropped_events_count = span
            .dropped_events_count
            .saturating_add(u32::try_from(extra).unwrap_or(u32::MAX));
        limiter.dropped_events += extra;
    }
    for event in &mut span.events {
        limiter.limit_name_string(&mut event.name);
        limiter.limit_list(&mut event.attributes, &mut event.dropped_attributes_count);
    }
    let links_before = span.links.len();
    span.links.retain(link_is_valid);
    let invalid_links = links_before - span.links.len();
    let extra = span.links.len().saturating_sub(limiter.max_links);
    span.links.truncate(limiter.max_links);
    limiter.dropped_links += extra;
    span.dropped_links_count = span
        .dropped_links_count
        .saturating_add(u32::try_from(invalid_links + extra).unwrap_or(u32::MAX));
    for link in &mut span.links {
        limiter.limit_list(&mut link.attributes, &mut link.dropped_attributes_count);
    }
    invalid_links
}

/// Counts what validation did, to explain it in the response.
#[derive(Debug, Default)]
pub struct Report {
    /// Spans kept.
    pub accepted: usize,
    /// Spans dropped as invalid.
    pub rejected: usize,
    reasons: Vec<String>,
    /// Spans kept that end before they start.
    pub ends_before_start: usize,
    /// Links dropped for invalid ids.
    pub invalid_links: usize,
}

impl Report {
    /// Counts the rejected span `resource_spans[resource].scope_spans[scope].spans[span]`.
    pub fn reject_span(&mut self, resource: usize, scope: usize, span: usize, problem: &str) {
        self.reject(format!(
            "resource_spans[{resource}].scope_spans[{scope}].spans[{span}]: {problem}"
        ));
    }

    /// Counts a rejected span, quoting `reason` if fewer than a handful were quoted.
    pub fn reject(&mut self, reason: String) {
        self.rejected += 1;
        if self.reasons.len() < MAX_REASONS_QUOTED {
            self.reasons.push(reason);
        }
    }

    /// The `partial_success.error_message` for what was counted, empty when nothing was.
    pub fn message(&self, limiter: &AttributeLimiter) -> String {
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
        // What was cut, as "<what> <count> <things> <past> <setting> (<limit>)".
        let cuts = [
            (limiter.dropped_attributes, "dropped", "attribute(s) over max_attributes_per_span", limiter.max_count),
            (limiter.truncated_values, "truncated", "attribute value(s) longer than max_attribute_value_bytes", limiter.max_value_bytes),
            (limiter.truncated_names, "truncated", "name(s) or attribute key(s) longer than max_name_bytes", limiter.max_name_bytes),
            (limiter.dropped_events, "dropped", "span event(s) over max_events_per_span", limiter.max_events),
            (limiter.dropped_links, "dropped", "span link(s) over max_links_per_span", limiter.max_links),
        ];
        for (count, what, past, limit) in cuts {
            if count > 0 {
                parts.push(format!("{what} {count} {past} ({limit})"));
            }
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

/// Enforces `max_attributes_per_span`, `max_attribute_value_bytes` and
/// `max_name_bytes`, counting what it dropped or cut.
#[derive(Debug)]
pub struct AttributeLimiter {
    max_count: usize,
    max_value_bytes: usize,
    max_name_bytes: usize,
    max_events: usize,
    max_links: usize,
    dropped_attributes: usize,
    truncated_values: usize,
    truncated_names: usize,
    dropped_events: usize,
    dropped_links: usize,
}

impl AttributeLimiter {
    /// A limiter for `limits` that has counted nothing yet.
    pub fn new(limits: &SpanLimits) -> Self {
        AttributeLimiter {
            max_count: limits.max_attributes_per_span,
            max_value_bytes: limits.max_attribute_value_bytes,
            max_name_bytes: limits.max_name_bytes,
            max_events: limits.max_events_per_span,
            max_links: limits.max_links_per_span,
            dropped_attributes: 0,
            truncated_values: 0,
            truncated_names: 0,
            dropped_events: 0,
            dropped_links: 0,
        }
    }

    /// What it dropped and cut so far.
    pub fn applied(&self) -> LimitsApplied {
        LimitsApplied {
            dropped_attributes: self.dropped_attributes,
            truncated_values: self.truncated_values,
            truncated_names: self.truncated_names,
            dropped_events: self.dropped_events,
            dropped_links: self.dropped_links,
        }
    }

    /// Keeps the first `max_attributes_per_span` of `attributes`, adding the others to
    /// `dropped_count`, and truncates long values.
    pub fn limit_list(&mut self, attributes: &mut Vec<KeyValue>, dropped_count: &mut u32) {
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

    /// Most attributes kept in one list.
    pub fn max_count(&self) -> usize {
        self.max_count
    }

    /// Adds what `other` counted to this limiter's counts.
    pub fn absorb(&mut self, other: &AttributeLimiter) {
        self.dropped_attributes += other.dropped_attributes;
        self.truncated_values += other.truncated_values;
        self.truncated_names += other.truncated_names;
        self.dropped_events += other.dropped_events;
        self.dropped_links += other.dropped_links;
    }

    /// Counts `extra` attributes dropped from a list over the limit.
    pub fn count_dropped(&mut self, extra: usize) {
        self.dropped_attributes += extra;
    }

    /// `text` cut to `max_attribute_value_bytes` at a character boundary, counted when cut.
    pub fn limit_str<'a>(&mut self, text: &'a str) -> &'a str {
        if text.len() <= self.max_value_bytes {
            return text;
        }
        self.truncated_values += 1;
        cut_at_char(text, self.max_value_bytes)
    }

    /// A span name, event name or attribute key cut to `max_name_bytes` at a character
    /// boundary, counted when cut.
    pub fn limit_name<'a>(&mut self, name: &'a str) -> &'a str {
        if name.len() <= self.max_name_bytes {
            return name;
        }
        self.truncated_names += 1;
        cut_at_char(name, self.max_name_bytes)
    }

    /// [`Self::limit_name`] in place.
    pub fn limit_name_string(&mut self, name: &mut String) {
        let end = self.limit_name(name).len();
        name.truncate(end);
    }

    /// `bytes` cut to `max_attribute_value_bytes`, counted when cut.
    pub fn limit_bytes<'a>(&mut self, bytes: &'a [u8]) -> &'a [u8] {
        if bytes.len() <= self.max_value_bytes {
            return bytes;
        }
        self.truncated_values += 1;
        &bytes[..self.max_value_bytes]
    }

    fn limit_key_value(&mut self, attribute: &mut KeyValue) {
        attribute.key_strindex = 0;
        self.limit_name_string(&mut attribute.key);
        if let Some(value) = attribute.value.as_mut() {
            self.limit_value(value);
        }
    }

    fn limit_value(&mut self, value: &mut AnyValue) {
        match value.value.as_mut() {
            Some(Value::StringValue(text)) => {
                let end = self.limit_str(text).len();
                text.truncate(end);
            }
            Some(Value::BytesValue(bytes)) => {
                let end = self.limit_bytes(bytes).len();
                bytes.truncate(end);
            }
            // An array or map is one value: its elements are kept while their encoding
            // fits `max_attribute_value_bytes` in total (the first always), the rest
            // dropped and the value counted as cut. Without it one attribute of a
            // million short strings made a span of a whole request.
            Some(Value::ArrayValue(array)) => {
                let kept = self.limit_elements(&mut array.values, |limiter, item| {
                    limiter.limit_value(item);
                    item.encoded_len()
                });
                array.values.truncate(kept);
            }
            Some(Value::KvlistValue(list)) => {
                let kept = self.limit_elements(&mut list.values, |limiter, item| {
                    limiter.limit_key_value(item);
                    item.encoded_len()
                });
                list.values.truncate(kept);
            }
            Some(Value::StringValueStrindex(_)) => value.value = None,
            _ => {}
        }
    }
}

impl AttributeLimiter {
    /// Limits `items` one by one with `limit` (which returns an item's encoded size
    /// once limited) until their sizes pass `max_attribute_value_bytes`: how many to
    /// keep, at least one. Counts the value as cut when some are left out.
    fn limit_elements<T>(
        &mut self,
        items: &mut [T],
        mut limit: impl FnMut(&mut Self, &mut T) -> usize,
    ) -> usize {
        let mut total = 0usize;
        for (index, item) in items.iter_mut().enumerate() {
            // With its field's tag and length, as it sits in the value's encoding.
            let len = limit(self, item);
            let framed = len + 1 + prost::encoding::encoded_len_varint(len as u64);
            total = total.saturating_add(framed);
            if total > self.max_value_bytes && index > 0 {
                self.truncated_values += 1;
                return index;
            }
        }
        items.len()
    }
}

/// The longest prefix of `text` of at most `max` bytes that ends on a character boundary.
fn cut_at_char(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

#[cfg(test)]
mod tests;
