//! Trace context: W3C `traceparent`/`tracestate` and B3 (multi and single header).
//!
//! ```text
//!  request headers ──extract──► Incoming { parent, formats }
//!                  ──decide───► SpanContext (new span id, parent, sampled)
//!                  ──inject───► the same formats, our span as the parent
//! ```
//!
//! The proxy emits its own span per request, so it follows the sidecar rule of
//! traces.md §6.3: keep the trace id and flags, replace the parent id / B3 span id
//! (and B3 parent span id) with its own span id. `tracestate` passes through
//! untouched. `traceparent` is always sent; B3 is sent in the form(s) it came in, and
//! as multi headers when the request came with no context at all, so apps using
//! either library continue the trace.

use bytes::{Bytes, BytesMut};
use http::{HeaderMap, HeaderName, HeaderValue};
use rand::Rng;

// Header names as `HeaderName` constants: looked up by a `&str`, every get, insert
// and remove would parse and validate the name first.
/// W3C header.
pub const TRACEPARENT: HeaderName = HeaderName::from_static("traceparent");
/// W3C vendor state.
pub const TRACESTATE: HeaderName = HeaderName::from_static("tracestate");
/// B3 single header.
pub const B3: HeaderName = HeaderName::from_static("b3");
/// B3 multi headers.
pub const X_B3_TRACEID: HeaderName = HeaderName::from_static("x-b3-traceid");
/// B3 multi headers.
pub const X_B3_SPANID: HeaderName = HeaderName::from_static("x-b3-spanid");
/// B3 multi headers.
pub const X_B3_PARENTSPANID: HeaderName = HeaderName::from_static("x-b3-parentspanid");
/// B3 multi headers.
pub const X_B3_SAMPLED: HeaderName = HeaderName::from_static("x-b3-sampled");
/// B3 multi headers.
pub const X_B3_FLAGS: HeaderName = HeaderName::from_static("x-b3-flags");

/// `tracestate` as received, its field lines joined with commas as RFC 9110 joins a
/// list header split over several lines (a line that is empty or not text is left out).
pub fn trace_state(headers: &HeaderMap) -> String {
    let mut joined = String::new();
    for value in headers.get_all(TRACESTATE) {
        let Ok(text) = value.to_str() else { continue };
        if text.trim().is_empty() {
            continue;
        }
        if !joined.is_empty() {
            joined.push(',');
        }
        joined.push_str(text);
    }
    joined
}

/// The context a request arrived with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Parent {
    /// 16-byte trace id (64-bit B3 ids left-padded).
    pub trace_id: [u8; 16],
    /// The caller's span id.
    pub span_id: [u8; 8],
    /// `Some(true)` sampled, `Some(false)` not, `None` defer to us.
    pub sampled: Option<bool>,
    /// W3C random-trace-id flag, kept as received.
    pub random_flag: bool,
}

/// What trace headers a request carried.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Formats {
    /// A valid `traceparent`.
    pub w3c: bool,
    /// A valid `b3` single header.
    pub b3_single: bool,
    /// Valid B3 multi headers.
    pub b3_multi: bool,
    /// The B3 form whose context won came with a 64-bit (16-digit) trace id: it goes
    /// on as 16 digits in the B3 headers (W3C has it left-padded to 32).
    pub b3_trace_id_64: bool,
    /// The B3 form whose context won said debug (`X-B3-Flags: 1`, `b3: …-d`): it goes
    /// on as debug, not as plain sampled.
    pub b3_debug: bool,
}

/// The result of extraction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Extracted {
    /// The parent context, when one parsed (W3C wins, then `b3`, then `x-b3-*`).
    pub parent: Option<Parent>,
    /// Which formats were present and valid.
    pub formats: Formats,
    /// A sampling decision without ids (`b3: 0`, `x-b3-sampled` alone).
    pub sampling_only: Option<bool>,
    /// Which trace headers were there at all, valid or not.
    pub present: Present,
}

/// Which trace headers a request carries, found in one pass over its header names.
/// Most requests carry few or none, and looking up or removing an absent header still
/// hashes its name: extraction and injection touch only the ones that are there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Present(u8);

impl Present {
    const TRACEPARENT: u8 = 1;
    const TRACESTATE: u8 = 1 << 1;
    const B3: u8 = 1 << 2;
    const X_B3_TRACEID: u8 = 1 << 3;
    const X_B3_SPANID: u8 = 1 << 4;
    const X_B3_PARENTSPANID: u8 = 1 << 5;
    const X_B3_SAMPLED: u8 = 1 << 6;
    const X_B3_FLAGS: u8 = 1 << 7;

    /// The trace headers among `headers`' names.
    pub fn of(headers: &HeaderMap) -> Present {
        let mut bits = 0;
        for name in headers.keys() {
            bits |= match name.as_str() {
                "traceparent" => Self::TRACEPARENT,
                "tracestate" => Self::TRACESTATE,
                "b3" => Self::B3,
                "x-b3-traceid" => Self::X_B3_TRACEID,
                "x-b3-spanid" => Self::X_B3_SPANID,
                "x-b3-parentspanid" => Self::X_B3_PARENTSPANID,
                "x-b3-sampled" => Self::X_B3_SAMPLED,
                "x-b3-flags" => Self::X_B3_FLAGS,
                _ => 0,
            };
        }
        Present(bits)
    }

    fn has(self, bit: u8) -> bool {
        self.0 & bit != 0
    }

    /// Whether a `tracestate` header came.
    pub fn tracestate(self) -> bool {
        self.has(Self::TRACESTATE)
    }

    /// Whether any of the B3 multi headers came, valid or not.
    fn b3_multi(self) -> bool {
        self.0 & (Self::X_B3_TRACEID | Self::X_B3_SPANID | Self::X_B3_PARENTSPANID | Self::X_B3_SAMPLED | Self::X_B3_FLAGS) != 0
    }

    /// `headers.get(name)` when `bit` says the header is there.
    fn get(self, headers: &HeaderMap, bit: u8, name: HeaderName) -> Option<&HeaderValue> {
        if self.has(bit) { headers.get(name) } else { None }
    }

    /// `headers.remove(name)` when `bit` says the header is there.
    fn remove(self, headers: &mut HeaderMap, bit: u8, name: HeaderName) {
        if self.has(bit) {
            headers.remove(name);
        }
    }
}

/// The proxy's own span for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpanContext {
    /// Trace id.
    pub trace_id: [u8; 16],
    /// Our span id.
    pub span_id: [u8; 8],
    /// The caller's span id, if any.
    pub parent_span_id: Option<[u8; 8]>,
    /// Whether this request's spans are recorded.
    pub sampled: bool,
    /// W3C random-trace-id flag to send.
    pub random_flag: bool,
}

/// Reads every supported format from `headers`.
pub fn extract(headers: &HeaderMap) -> Extracted {
    let present = Present::of(headers);
    let mut extracted = Extracted { present, ..Extracted::default() };
    let w3c = present.get(headers, Present::TRACEPARENT, TRACEPARENT).and_then(|v| parse_traceparent(v.as_bytes()));
    let single_value = present.get(headers, Present::B3, B3);
    let single = single_value.map(|v| parse_b3_single(v.as_bytes()));
    let multi = parse_b3_multi(headers, present);
    extracted.formats.w3c = w3c.is_some();
    if let Some(single) = single {
        match single {
            B3Single::Context(parent, kept) => {
                extracted.formats.b3_single = true;
                extracted.parent = Some(parent);
                (extracted.formats.b3_trace_id_64, extracted.formats.b3_debug) = (kept.trace_id_64, kept.debug);
            }
            // A decision alone (`b3: 0`, `1`, `d`) is sent on as a single header too,
            // with the new trace's ids: B3 goes on in the form it came in.
            B3Single::SamplingOnly(sampled) => {
                extracted.sampling_only = Some(sampled);
                extracted.formats.b3_single = true;
                extracted.formats.b3_debug = single_value.is_some_and(|v| trim_ascii(v.as_bytes()) == b"d");
            }
            B3Single::Invalid => {}
        }
    }
    match multi {
        B3Multi::Context(mut parent, kept) => {
            extracted.formats.b3_multi = true;
            // The single header wins over the multi headers (§6.1): its context, or
            // its decision alone (`b3: 0`, `1`, `d`) over theirs.
            if extracted.parent.is_none() {
                extracted.formats.b3_trace_id_64 = kept.trace_id_64;
                match extracted.sampling_only {
                    Some(sampled) => parent.sampled = Some(sampled),
                    None => extracted.formats.b3_debug = kept.debug,
                }
                extracted.parent = Some(parent);
            }
        }
        B3Multi::SamplingOnly(sampled) if extracted.sampling_only.is_none() => {
            extracted.sampling_only = Some(sampled);
        }
        _ => {}
    }
    if w3c.is_some() {
        extracted.parent = w3c;
    }
    extracted
}

/// Decides our span: same trace as the parent (or a new one), a new span id, and the
/// sampling decision: the parent's when it made one, else `sample_percent`.
pub fn start_span(extracted: &Extracted, sample_percent: f64) -> SpanContext {
    let mut rng = rand::rng();
    let span_id = random_nonzero_id::<8>(&mut rng);
    let decided = extracted.parent.and_then(|p| p.sampled).or(extracted.sampling_only);
    let sampled = decided.unwrap_or_else(|| {
        sample_percent >= 100.0 || (sample_percent > 0.0 && rng.random::<f64>() * 100.0 < sample_percent)
    });
    match extracted.parent {
        Some(parent) => SpanContext {
            trace_id: parent.trace_id,
            span_id,
            parent_span_id: Some(parent.span_id),
            sampled,
            random_flag: parent.random_flag,
        },
        None => SpanContext {
            trace_id: random_nonzero_id::<16>(&mut rng),
            span_id,
            parent_span_id: None,
            sampled,
            random_flag: true,
        },
    }
}

/// Rewrites `headers` so the next hop sees `span` as its parent, in the formats the
/// request came with (both W3C and B3 multi when it came with none). B3 keeps the
/// trace id's width (16 or 32 digits) and the debug flag it came with (traces.md §6.3:
/// only the span ids change).
///
/// The ids' hex text is written once into one buffer, and each header value is a
/// slice of it: one allocation for up to four values.
pub fn inject(headers: &mut HeaderMap, extracted: &Extracted, span: &SpanContext) {
    let formats = extracted.formats;
    let present = extracted.present;
    let none = !formats.w3c && !formats.b3_single && !formats.b3_multi;
    // Multi headers that came without a full context (a decision alone, or invalid)
    // are written again too: left as they came, they would tell a B3 app another
    // decision, or another trace, than the one the proxy's span is in.
    let b3_multi = formats.b3_multi || none || present.b3_multi();
    if !formats.w3c {
        // A tracestate without a valid traceparent must be discarded (§6.2).
        present.remove(headers, Present::TRACESTATE, TRACESTATE);
    }
    let mut text = BytesMut::with_capacity(TRACEPARENT_LEN + if b3_multi { 64 } else { 0 });
    text.extend_from_slice(&traceparent_bytes(span));
    if b3_multi {
        // Trace id, span id and, when there is one, parent id, as B3 writes them: the
        // first two are the traceparent's own digits.
        let mut ids = [0u8; 64];
        ids[..32].copy_from_slice(&text[3..35]);
        ids[32..48].copy_from_slice(&text[36..52]);
        let len = match span.parent_span_id {
            Some(parent) => {
                hex_into(&parent, &mut ids[48..]);
                64
            }
            None => 48,
        };
        text.extend_from_slice(&ids[..len]);
    }
    let text = text.freeze();
    let slice = |range: std::ops::Range<usize>| text.slice(range);
    // A 64-bit B3 trace id goes on as its own 16 digits (the low half of the padded id).
    let short = formats.b3_trace_id_64 && span.trace_id[..8].iter().all(|b| *b == 0);
    let debug = formats.b3_debug && span.sampled;
    // Always send traceparent: one arriving without it should get one (§6.2).
    insert_shared(headers, TRACEPARENT, slice(0..TRACEPARENT_LEN));
    if formats.b3_single {
        let trace_id = if short { &span.trace_id[8..] } else { &span.trace_id[..] };
        let state = if debug { "d" } else if span.sampled { "1" } else { "0" };
        let mut value = format!("{}-{}-{state}", hex(trace_id), hex(&span.span_id));
        if let Some(parent) = span.parent_span_id {
            value.push('-');
            value.push_str(&hex(&parent));
        }
        insert(headers, B3, value.as_bytes());
    } else {
        present.remove(headers, Present::B3, B3);
    }
    if b3_multi {
        let ids = TRACEPARENT_LEN;
        insert_shared(headers, X_B3_TRACEID, slice(if short { ids + 16 } else { ids }..ids + 32));
        insert_shared(headers, X_B3_SPANID, slice(ids + 32..ids + 48));
        match span.parent_span_id {
            Some(_) => insert_shared(headers, X_B3_PARENTSPANID, slice(ids + 48..ids + 64)),
            None => present.remove(headers, Present::X_B3_PARENTSPANID, X_B3_PARENTSPANID),
        }
        if debug {
            // Debug implies sampled; B3 says not to send both.
            headers.insert(X_B3_FLAGS, HeaderValue::from_static("1"));
            present.remove(headers, Present::X_B3_SAMPLED, X_B3_SAMPLED);
        } else {
            headers.insert(X_B3_SAMPLED, HeaderValue::from_static(if span.sampled { "1" } else { "0" }));
            present.remove(headers, Present::X_B3_FLAGS, X_B3_FLAGS);
        }
    }
}

/// Length of a `traceparent` value.
const TRACEPARENT_LEN: usize = 55;

/// `00-<trace>-<span>-<flags>`.
fn traceparent_bytes(span: &SpanContext) -> [u8; TRACEPARENT_LEN] {
    let flags = u8::from(span.sampled) | if span.random_flag { 0x02 } else { 0 };
    let mut text = *b"00-00000000000000000000000000000000-0000000000000000-00";
    hex_into(&span.trace_id, &mut text[3..35]);
    hex_into(&span.span_id, &mut text[36..52]);
    hex_into(&[flags], &mut text[53..55]);
    text
}

fn insert(headers: &mut HeaderMap, name: HeaderName, value: &[u8]) {
    if let Ok(value) = HeaderValue::from_bytes(value) {
        headers.insert(name, value);
    }
}

/// Inserts a value that shares `value`'s buffer (no copy).
fn insert_shared(headers: &mut HeaderMap, name: HeaderName, value: Bytes) {
    if let Ok(value) = HeaderValue::from_maybe_shared(value) {
        headers.insert(name, value);
    }
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    let mut text = vec![0u8; bytes.len() * 2];
    hex_into(bytes, &mut text);
    String::from_utf8_lossy(&text).into_owned()
}

/// Lower-case hex of `bytes` into `out`, two digits per byte (`out` is at least twice
/// as long).
pub fn hex_into(bytes: &[u8], out: &mut [u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for (byte, pair) in bytes.iter().zip(out.chunks_exact_mut(2)) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
}

fn random_nonzero_id<const N: usize>(rng: &mut impl Rng) -> [u8; N] {
    loop {
        let mut id = [0u8; N];
        rng.fill(&mut id[..]);
        if id.iter().any(|b| *b != 0) {
            return id;
        }
    }
}

/// Parses lower-case hex of exactly `2 * N` digits; all-zero ids are invalid.
fn parse_id<const N: usize>(text: &[u8]) -> Option<[u8; N]> {
    if text.len() != 2 * N {
        return None;
    }
    let mut id = [0u8; N];
    for (i, pair) in text.chunks_exact(2).enumerate() {
        id[i] = (lower_hex_digit(pair[0])? << 4) | lower_hex_digit(pair[1])?;
    }
    id.iter().any(|b| *b != 0).then_some(id)
}

fn lower_hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

/// A B3 trace id: 32 hex digits, or 16 left-padded with zeros (then `true`: it was a
/// 64-bit id).
fn parse_b3_trace_id(text: &[u8]) -> Option<([u8; 16], bool)> {
    let text = trim_ascii(text);
    if text.len() == 16 {
        let low = parse_id::<8>(&text.to_ascii_lowercase())?;
        let mut id = [0u8; 16];
        id[8..].copy_from_slice(&low);
        Some((id, true))
    } else {
        parse_id::<16>(&text.to_ascii_lowercase()).map(|id| (id, false))
    }
}

/// What of a B3 context goes on unchanged besides the trace id's value.
#[derive(Debug, Clone, Copy, Default)]
struct B3Kept {
    /// The trace id had 16 digits.
    trace_id_64: bool,
    /// Debug sampling (`X-B3-Flags: 1`, state `d`).
    debug: bool,
}

fn parse_b3_span_id(text: &[u8]) -> Option<[u8; 8]> {
    parse_id::<8>(&trim_ascii(text).to_ascii_lowercase())
}

fn trim_ascii(text: &[u8]) -> &[u8] {
    text.trim_ascii()
}

/// W3C `traceparent` (traces.md §6.2): version 00 exactly 55 chars; higher versions
/// at least 55 with fields at fixed offsets; `ff` invalid.
pub fn parse_traceparent(value: &[u8]) -> Option<Parent> {
    let value = trim_ascii(value);
    if value.len() < 55 {
        return None;
    }
    let version = parse_id::<1>(&value[0..2]).map(|v| v[0]).or_else(|| (&value[0..2] == b"00").then_some(0))?;
    if version == 0xff || (version == 0 && value.len() != 55) || (version > 0 && value.len() > 55 && value[55] != b'-') {
        return None;
    }
    if value[2] != b'-' || value[35] != b'-' || value[52] != b'-' {
        return None;
    }
    let trace_id = parse_id::<16>(&value[3..35])?;
    let span_id = parse_id::<8>(&value[36..52])?;
    let flags = (lower_hex_digit(value[53])? << 4) | lower_hex_digit(value[54])?;
    Some(Parent { trace_id, span_id, sampled: Some(flags & 0x01 != 0), random_flag: flags & 0x02 != 0 })
}

enum B3Single {
    Context(Parent, B3Kept),
    SamplingOnly(bool),
    Invalid,
}

fn b3_sampling_state(text: &[u8]) -> Option<Option<bool>> {
    match trim_ascii(text) {
        b"1" | b"d" | b"true" => Some(Some(true)),
        b"0" | b"false" => Some(Some(false)),
        _ => None,
    }
}

/// `{TraceId}-{SpanId}[-{SamplingState}[-{ParentSpanId}]]`, or a sampling state alone.
fn parse_b3_single(value: &[u8]) -> B3Single {
    let parts: Vec<&[u8]> = value.split(|c| *c == b'-').collect();
    if parts.len() == 1 {
        return match b3_sampling_state(parts[0]) {
            Some(Some(sampled)) => B3Single::SamplingOnly(sampled),
            _ => B3Single::Invalid,
        };
    }
    if parts.len() > 4 {
        return B3Single::Invalid;
    }
    let (Some((trace_id, trace_id_64)), Some(span_id)) = (parse_b3_trace_id(parts[0]), parse_b3_span_id(parts[1])) else {
        return B3Single::Invalid;
    };
    let debug = parts.get(2).is_some_and(|state| trim_ascii(state) == b"d");
    let sampled = match parts.get(2) {
        None => None,
        Some(state) => match b3_sampling_state(state) {
            Some(sampled) => sampled,
            None => return B3Single::Invalid,
        },
    };
    if let Some(parent) = parts.get(3)
        && parse_b3_span_id(parent).is_none()
    {
        return B3Single::Invalid;
    }
    B3Single::Context(Parent { trace_id, span_id, sampled, random_flag: false }, B3Kept { trace_id_64, debug })
}

enum B3Multi {
    Context(Parent, B3Kept),
    SamplingOnly(bool),
    Absent,
}

fn parse_b3_multi(headers: &HeaderMap, present: Present) -> B3Multi {
    // `get` returns the first value of a repeated header: the first value wins.
    let debug = present.get(headers, Present::X_B3_FLAGS, X_B3_FLAGS).is_some_and(|v| trim_ascii(v.as_bytes()) == b"1");
    let sampled = match present.get(headers, Present::X_B3_SAMPLED, X_B3_SAMPLED) {
        _ if debug => Some(true),
        Some(value) => b3_sampling_state(value.as_bytes()).flatten(),
        None => None,
    };
    let trace_id = present.get(headers, Present::X_B3_TRACEID, X_B3_TRACEID).and_then(|v| parse_b3_trace_id(v.as_bytes()));
    let span_id = present.get(headers, Present::X_B3_SPANID, X_B3_SPANID).and_then(|v| parse_b3_span_id(v.as_bytes()));
    let parent_ok = present
        .get(headers, Present::X_B3_PARENTSPANID, X_B3_PARENTSPANID)
        .is_none_or(|v| parse_b3_span_id(v.as_bytes()).is_some());
    match (trace_id, span_id) {
        (Some((trace_id, trace_id_64)), Some(span_id)) if parent_ok => {
            B3Multi::Context(Parent { trace_id, span_id, sampled, random_flag: false }, B3Kept { trace_id_64, debug })
        }
        _ => match sampled {
            Some(sampled) => B3Multi::SamplingOnly(sampled),
            None => B3Multi::Absent,
        },
    }
}

#[cfg(test)]
mod tests;
