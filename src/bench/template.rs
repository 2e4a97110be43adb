//! Export requests encoded once and replayed with fresh trace ids and current
//! timestamps, so that the load generator spends its time sending, not encoding.
//!
//! ```text
//! ShapeGenerator ──► ExportTraceServiceRequest ──prost──► bytes + patch offsets
//!                                                            │ per request:
//!                                                            ▼ copy, write new trace
//!                                                         ids, shift timestamps
//! ```
//!
//! A template remembers where, in its encoding, each trace id, span id, parent span id
//! and start and end time sit. All are fixed-width in protobuf (`bytes` of length 16
//! after `0x0a 0x10`, of length 8 after `0x12 0x08` and `0x22 0x08`; `fixed64` after
//! `0x39` and `0x41`), so patching never changes the length of anything. Span ids are
//! renewed too (consistently with the parent ids that name them): replayed span ids
//! would let the store's compression find repeats real traffic does not have. For the
//! same reason the tempo shape's attributes are renewed: every `value_NNN` gets random
//! digits and the `attr_NN` keys are renamed through a random permutation of the 97
//! keys per request (so keys stay distinct within a span).

use std::collections::{HashMap, HashSet};

use anyhow::bail;
use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message;
use prost::bytes::Bytes;
use meshtel_model::otlp::common::v1::any_value;
use rand::Rng;
use rand::seq::SliceRandom;

use super::shape::{TEMPO_KEYS, TEMPO_VALUES};

/// `Span.trace_id` (field 1, length-delimited) of length 16.
const TRACE_ID_PREFIX: [u8; 2] = [0x0a, 0x10];
/// `Span.span_id` (field 2) of length 8.
const SPAN_ID_PREFIX: [u8; 2] = [0x12, 0x08];
/// `Span.parent_span_id` (field 4) of length 8.
const PARENT_SPAN_ID_PREFIX: [u8; 2] = [0x22, 0x08];
/// A `KeyValue.key` of the tempo shape: `attr_NN` (string field 1, 7 bytes).
const TEMPO_KEY_PREFIX: &[u8] = b"\x0a\x07attr_";
/// An `AnyValue.string_value` of the tempo shape: `value_NNN` (field 1, 9 bytes).
const TEMPO_VALUE_PREFIX: &[u8] = b"\x0a\x09value_";
/// `Span.start_time_unix_nano` (field 7, fixed64).
const START_TIME_TAG: u8 = 0x39;
/// `Span.end_time_unix_nano` (field 8, fixed64).
const END_TIME_TAG: u8 = 0x41;

/// Where one trace's ids sit in the encoding.
#[derive(Debug, Clone, Default)]
struct TraceSlots {
    /// Offsets of the 16 trace id bytes, one per span.
    trace_id: Vec<usize>,
    /// Offsets of 8 span id bytes (as `span_id` or `parent_span_id`), with the index,
    /// within the trace, of the span the id names.
    span_ids: Vec<(usize, usize)>,
    /// Spans in the trace.
    spans: usize,
}

/// An encoded export request and where to patch it.
#[derive(Debug, Clone)]
pub struct RequestTemplate {
    encoded: Vec<u8>,
    /// Per trace, where its ids are.
    traces: Vec<TraceSlots>,
    /// Offsets of the 8 bytes of every span's start and end time.
    time_offsets: Vec<usize>,
    /// Offsets of the two digits of every `attr_NN` key (tempo shape).
    tempo_key_offsets: Vec<usize>,
    /// Offsets of the three digits of every `value_NNN` value (tempo shape).
    tempo_value_offsets: Vec<usize>,
    /// The time the template's timestamps were generated against.
    base_unix_nano: u64,
    spans: u64,
}

impl RequestTemplate {
    /// Encodes `request`, whose timestamps were generated to end at `base_unix_nano`,
    /// and finds its trace ids and timestamps in the encoding.
    pub fn new(request: &ExportTraceServiceRequest, base_unix_nano: u64) -> anyhow::Result<Self> {
        let encoded = request.encode_to_vec();
        let mut trace_index: HashMap<[u8; 16], usize> = HashMap::new();
        // span id → (trace index, span index within the trace)
        let mut span_index: HashMap<[u8; 8], (usize, usize)> = HashMap::new();
        let mut traces: Vec<TraceSlots> = Vec::new();
        let mut times: HashSet<u64> = HashSet::new();
        let mut spans = 0u64;
        let mut parents = 0u64;
        let (mut tempo_keys, mut tempo_values) = (0u64, 0u64);
        for span in request
            .resource_spans
            .iter()
            .flat_map(|r| &r.scope_spans)
            .flat_map(|s| &s.spans)
        {
            let (Ok(trace_id), Ok(span_id)) = (
                <[u8; 16]>::try_from(span.trace_id.as_slice()),
                <[u8; 8]>::try_from(span.span_id.as_slice()),
            ) else {
                bail!("template span with ids of {} and {} bytes", span.trace_id.len(), span.span_id.len());
            };
            let next = trace_index.len();
            let t = *trace_index.entry(trace_id).or_insert(next);
            if t == traces.len() {
                traces.push(TraceSlots::default());
            }
            let local = traces[t].spans;
            traces[t].spans += 1;
            if span_index.insert(span_id, (t, local)).is_some() {
                bail!("template span id repeats; try another --seed");
            }
            parents += u64::from(!span.parent_span_id.is_empty());
            for kv in &span.attributes {
                if is_tempo_key(&kv.key) {
                    tempo_keys += 1;
                }
                if let Some(any_value::Value::StringValue(v)) = kv.value.as_ref().and_then(|v| v.value.as_ref())
                    && is_tempo_value(v)
                {
                    tempo_values += 1;
                }
            }
            times.insert(span.start_time_unix_nano);
            times.insert(span.end_time_unix_nano);
            spans += 1;
        }

        let mut time_offsets = Vec::new();
        let mut tempo_key_offsets = Vec::new();
        let mut tempo_value_offsets = Vec::new();
        let mut span_id_hits = 0u64;
        let mut i = 0;
        while i < encoded.len() {
            let rest = &encoded[i..];
            if rest.len() >= 18 && rest[..2] == TRACE_ID_PREFIX {
                let mut id = [0u8; 16];
                id.copy_from_slice(&rest[2..18]);
                if let Some(&t) = trace_index.get(&id) {
                    traces[t].trace_id.push(i + 2);
                    i += 18;
                    continue;
                }
            }
            if rest.len() >= 10 && (rest[..2] == SPAN_ID_PREFIX || rest[..2] == PARENT_SPAN_ID_PREFIX) {
                let mut id = [0u8; 8];
                id.copy_from_slice(&rest[2..10]);
                if let Some(&(t, local)) = span_index.get(&id) {
                    traces[t].span_ids.push((i + 2, local));
                    span_id_hits += 1;
                    i += 10;
                    continue;
                }
            }
            if rest.starts_with(TEMPO_KEY_PREFIX) && rest.len() >= TEMPO_KEY_PREFIX.len() + 2 {
                let digits = i + TEMPO_KEY_PREFIX.len();
                if encoded[digits..digits + 2].iter().all(u8::is_ascii_digit) {
                    tempo_key_offsets.push(digits);
                    i = digits + 2;
                    continue;
                }
            }
            if rest.starts_with(TEMPO_VALUE_PREFIX) && rest.len() >= TEMPO_VALUE_PREFIX.len() + 3 {
                let digits = i + TEMPO_VALUE_PREFIX.len();
                if encoded[digits..digits + 3].iter().all(u8::is_ascii_digit) {
                    tempo_value_offsets.push(digits);
                    i = digits + 3;
                    continue;
                }
            }
            if rest.len() >= 9 && (rest[0] == START_TIME_TAG || rest[0] == END_TIME_TAG) {
                let mut value = [0u8; 8];
                value.copy_from_slice(&rest[1..9]);
                if times.contains(&u64::from_le_bytes(value)) {
                    time_offsets.push(i + 1);
                    i += 9;
                    continue;
                }
            }
            i += 1;
        }

        let found_ids: usize = traces.iter().map(|t| t.trace_id.len()).sum();
        if found_ids as u64 != spans
            || span_id_hits != spans + parents
            || time_offsets.len() as u64 != 2 * spans
            || tempo_key_offsets.len() as u64 != tempo_keys
            || tempo_value_offsets.len() as u64 != tempo_values
        {
            bail!(
                "template scan found {found_ids} trace ids, {span_id_hits} span ids and {} timestamps for {spans} spans; try another --seed",
                time_offsets.len()
            );
        }
        Ok(RequestTemplate {
            encoded,
            traces,
            time_offsets,
            tempo_key_offsets,
            tempo_value_offsets,
            base_unix_nano,
            spans,
        })
    }

    /// Spans in one request.
    pub fn spans(&self) -> u64 {
        self.spans
    }

    /// Encoded size in bytes.
    pub fn encoded_len(&self) -> usize {
        self.encoded.len()
    }

    /// A copy with a fresh random id per trace and every timestamp moved so that the
    /// request ends at `now_unix_nano`.
    pub fn materialize(&self, now_unix_nano: u64, rng: &mut impl Rng) -> Bytes {
        let mut bytes = self.encoded.clone();
        let mut span_ids: Vec<[u8; 8]> = Vec::new();
        for trace in &self.traces {
            let mut id = [0u8; 16];
            while id == [0u8; 16] {
                rng.fill(&mut id);
            }
            for &offset in &trace.trace_id {
                bytes[offset..offset + 16].copy_from_slice(&id);
            }
            // Random 64-bit ids; a repeat within one trace (p ≈ n²/2⁶⁵) is not worth a check.
            span_ids.clear();
            span_ids.extend((0..trace.spans).map(|_| rng.random::<u64>().max(1).to_le_bytes()));
            for &(offset, local) in &trace.span_ids {
                bytes[offset..offset + 8].copy_from_slice(&span_ids[local]);
            }
        }
        if !self.tempo_key_offsets.is_empty() {
            let mut permutation: Vec<u8> = (0..TEMPO_KEYS as u8).collect();
            permutation.shuffle(rng);
            for &offset in &self.tempo_key_offsets {
                let old = usize::from(bytes[offset] - b'0') * 10 + usize::from(bytes[offset + 1] - b'0');
                // Keys outside the 97 (none in the tempo shape) keep their name.
                if let Some(&new) = permutation.get(old) {
                    bytes[offset] = b'0' + new / 10;
                    bytes[offset + 1] = b'0' + new % 10;
                }
            }
        }
        for &offset in &self.tempo_value_offsets {
            let value: u16 = rng.random_range(0..TEMPO_VALUES as u16);
            bytes[offset] = b'0' + (value / 100) as u8;
            bytes[offset + 1] = b'0' + (value / 10 % 10) as u8;
            bytes[offset + 2] = b'0' + (value % 10) as u8;
        }
        let shift = now_unix_nano.saturating_sub(self.base_unix_nano);
        if shift > 0 {
            for &offset in &self.time_offsets {
                let mut value = [0u8; 8];
                value.copy_from_slice(&bytes[offset..offset + 8]);
                let moved = u64::from_le_bytes(value).saturating_add(shift);
                bytes[offset..offset + 8].copy_from_slice(&moved.to_le_bytes());
            }
        }
        Bytes::from(bytes)
    }
}

fn is_tempo_key(key: &str) -> bool {
    key.len() == 7 && key.starts_with("attr_") && key.bytes().skip(5).all(|b| b.is_ascii_digit())
}

fn is_tempo_value(value: &str) -> bool {
    value.len() == 9 && value.starts_with("value_") && value.bytes().skip(6).all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;
    use rand::rngs::StdRng;

    use super::*;
    use crate::bench::shape::{Shape, ShapeGenerator};

    #[test]
    fn materialize_renews_trace_ids_and_shifts_times() {
        let mut rng = StdRng::seed_from_u64(7);
        let base = 1_700_000_000_000_000_000u64;
        for shape in [Shape::Mesh, Shape::Tempo] {
            let request = ShapeGenerator::new(shape, 10).request(5, base, &mut rng);
            let template = RequestTemplate::new(&request, base).unwrap();
            assert_eq!(template.spans(), 50);
            let bytes = template.materialize(base + 1_000, &mut rng);
            let patched = ExportTraceServiceRequest::decode(bytes).unwrap();

            let spans = |r: &ExportTraceServiceRequest| -> Vec<_> {
                r.resource_spans
                    .iter()
                    .flat_map(|r| &r.scope_spans)
                    .flat_map(|s| &s.spans)
                    .cloned()
                    .collect()
            };
            let before = spans(&request);
            let after = spans(&patched);
            assert_eq!(before.len(), after.len());
            let mut mapping: HashMap<Vec<u8>, Vec<u8>> = HashMap::new();
            for (b, a) in before.iter().zip(&after) {
                assert_ne!(a.trace_id, b.trace_id);
                // Every span of a trace gets the same new id.
                let new_id = mapping.entry(b.trace_id.clone()).or_insert(a.trace_id.clone());
                assert_eq!(*new_id, a.trace_id);
                assert_ne!(a.span_id, b.span_id);
                assert_eq!(a.parent_span_id.is_empty(), b.parent_span_id.is_empty());
                if shape == Shape::Mesh {
                    assert_eq!(a.attributes, b.attributes);
                } else {
                    assert_eq!(a.attributes.len(), b.attributes.len());
                    let keys: HashSet<&str> = a.attributes.iter().map(|kv| kv.key.as_str()).collect();
                    assert_eq!(keys.len(), a.attributes.len(), "keys stay distinct");
                    assert!(a.attributes.iter().all(|kv| is_tempo_key(&kv.key)
                        && kv.key[5..].parse::<usize>().unwrap() < TEMPO_KEYS));
                }
                assert_eq!(a.start_time_unix_nano, b.start_time_unix_nano + 1_000);
                assert_eq!(a.end_time_unix_nano, b.end_time_unix_nano + 1_000);
            }
            let distinct: HashSet<_> = mapping.values().collect();
            assert_eq!(distinct.len(), 5);
            if shape == Shape::Tempo {
                let changed = before
                    .iter()
                    .zip(&after)
                    .flat_map(|(b, a)| b.attributes.iter().zip(&a.attributes))
                    .filter(|(x, y)| x.value != y.value)
                    .count();
                assert!(changed > 50 * 11 * 9 / 10, "values renewed: {changed}");
            }
            // Parent ids follow their spans' new ids.
            let new_span_ids: HashMap<&[u8], &[u8]> = before
                .iter()
                .zip(&after)
                .map(|(b, a)| (b.span_id.as_slice(), a.span_id.as_slice()))
                .collect();
            for (b, a) in before.iter().zip(&after) {
                if !b.parent_span_id.is_empty() {
                    assert_eq!(new_span_ids[b.parent_span_id.as_slice()], a.parent_span_id.as_slice());
                }
            }
            // A second copy gets other ids again.
            let again = ExportTraceServiceRequest::decode(template.materialize(base, &mut rng)).unwrap();
            assert_ne!(spans(&again)[0].span_id, after[0].span_id);
        }
    }
}
