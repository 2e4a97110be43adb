//! Zipkin v1 JSON spans (`POST /api/v1/spans`) → Zipkin v2 spans, as the Zipkin
//! server's own v1 reader converts them, then stored as v2 spans are.
//!
//! A v1 span is one RPC as both sides saw it: its annotations carry the endpoint that
//! logged them, and the core ones say which side that was (`cs`/`cr` client,
//! `sr`/`ss` server, `ms`/`mr` messaging, `ws`/`wr` wire). The conversion makes one v2
//! span per service that logged something (a client and a server that share a span
//! id become two spans; a loopback call, both sides in one service, too):
//! - the side's kind, start and duration from its core annotations, or the span's own
//!   `timestamp`/`duration` when they cover it (the client owns those in a shared
//!   span; the server's come from `sr`/`ss`);
//! - other annotations become that side's annotations (events); an incomplete RPC
//!   (`cs` without `cr`, `sr` without `ss`) keeps its end annotation as one;
//! - string binary annotations become tags of the side whose endpoint logged them
//!   (an empty `lc` marker is dropped); boolean `ca`/`sa`/`ma` address annotations
//!   become the remote endpoint of the server, client or messaging side;
//!   binary annotations of other types are skipped, as the Zipkin server skips them.
//!
//! Annotations are read in time order, and endpoints as the Zipkin server reads them
//! (service names lower-cased; an empty endpoint is none). An annotation without
//! `timestamp` or `value`, a binary annotation without `key`, a time that is not an
//! integer or is past 2^61 µs, or a span logged by more than [`MAX_SIDES`] services
//! refuses the whole list (400 naming the span); ids and tags are then checked as for
//! v2, span by span.

use serde::Deserialize;
use serde_json::Number;

use super::{Annotation, Endpoint, ZipkinSpan};
use crate::error::{Error, Result};

pub(crate) mod thrift;

/// One span of a Zipkin v1 list.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct V1Span {
    trace_id: Option<String>,
    id: Option<String>,
    parent_id: Option<String>,
    name: Option<String>,
    timestamp: Option<Number>,
    duration: Option<Number>,
    annotations: Option<Vec<V1Annotation>>,
    binary_annotations: Option<Vec<V1BinaryAnnotation>>,
}

#[derive(Debug, Deserialize)]
struct V1Annotation {
    timestamp: Option<Number>,
    value: Option<String>,
    endpoint: Option<Endpoint>,
}

#[derive(Debug, Deserialize)]
struct V1BinaryAnnotation {
    key: Option<String>,
    value: Option<serde_json::Value>,
    endpoint: Option<Endpoint>,
}

/// A core or ordinary annotation, checked.
#[derive(Debug, Clone)]
struct Logged {
    timestamp: i64,
    value: String,
    endpoint: Option<Endpoint>,
}

/// Most v2 spans one v1 span becomes: a client and a server, each of which may be
/// forked in two by a loopback call or a messaging pair in the same span. Every side
/// repeats the span's name and ids, so a span logged by thousands of services would
/// multiply its name thousands of times.
const MAX_SIDES: usize = 4;

/// Parses a Zipkin v1 JSON span list and converts it to v2 spans, each with the index
/// of the v1 span it came from. More than `max_spans` v1 spans are refused before
/// any is converted.
pub fn decode_zipkin_v1_json(body: &[u8], max_spans: usize) -> Result<Vec<(usize, ZipkinSpan)>> {
    let spans: Vec<V1Span> = super::decode_json_list(body)?;
    too_many(spans.len(), max_spans)?;
    convert_list(spans, Format::Json)
}

/// Parses a Zipkin v1 Thrift span list (`TBinaryProtocol`, [`thrift`]) and converts it
/// as [`decode_zipkin_v1_json`] does. More than `max_spans` are refused before any is
/// read.
pub fn decode_zipkin_v1_thrift(body: &[u8], max_spans: usize) -> Result<Vec<(usize, ZipkinSpan)>> {
    convert_list(thrift::read_list(body, max_spans)?, Format::Thrift)
}

fn too_many(count: usize, limit: usize) -> Result<()> {
    if count > limit {
        return Err(Error::TooManySpans { count, limit });
    }
    Ok(())
}

fn convert_list(spans: Vec<V1Span>, format: Format) -> Result<Vec<(usize, ZipkinSpan)>> {
    let mut out = Vec::with_capacity(spans.len());
    for (index, span) in spans.into_iter().enumerate() {
        for converted in convert(index, format, span)? {
            out.push((index, converted));
        }
    }
    Ok(out)
}

/// An endpoint as the Zipkin server reads one: the service name lower-cased, an empty
/// one absent, and an endpoint with nothing in it none at all.
fn normalized(endpoint: Option<Endpoint>) -> Option<Endpoint> {
    let mut endpoint = endpoint?;
    endpoint.service_name = endpoint
        .service_name
        .filter(|name| !name.is_empty())
        .map(|name| name.to_lowercase());
    let empty = |s: &Option<String>| s.as_deref().is_none_or(str::is_empty);
    if endpoint.service_name.is_none()
        && empty(&endpoint.ipv4)
        && empty(&endpoint.ipv6)
        && endpoint.port.is_none_or(|p| p == 0)
    {
        return None;
    }
    Some(endpoint)
}

/// Times past this many µs either way are refused (the year 2262 is 9.2e15 µs, past
/// which no time fits OTLP's nanoseconds anyway): sums and differences of two times
/// then never overflow.
pub(crate) const MAX_MICROS: i64 = 1 << 61;

/// The encoding a v1 list came in, named by the errors about its spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Thrift,
}

fn refused(index: usize, format: Format, problem: &str) -> Error {
    let format = match format {
        Format::Json => "JSON",
        Format::Thrift => "Thrift",
    };
    Error::InvalidZipkinSpan(format!("spans[{index}]: {problem} (Zipkin v1 {format})"))
}

fn micros(index: usize, format: Format, field: &str, value: Option<&Number>) -> Result<i64> {
    let Some(number) = value else {
        return Ok(0);
    };
    match number.as_i64() {
        Some(micros) if (-MAX_MICROS..=MAX_MICROS).contains(&micros) => Ok(micros),
        Some(_) => Err(refused(index, format, &format!("{field} {number} is out of range"))),
        None => Err(refused(
            index,
            format,
            &format!("{field} {number} is not an integer of microseconds"),
        )),
    }
}

/// The v2 span a v1 span's sides are built in.
struct Side {
    span: ZipkinSpan,
    /// Start and duration in µs, once a core annotation or the span's own set them.
    timestamp: Option<i64>,
    duration: Option<i64>,
}

/// The sides of one v1 span while it is converted: the first (which collects what
/// names no endpoint) and one more per other service.
struct Sides<'a> {
    source: &'a V1Span,
    sides: Vec<Side>,
    /// Set when more than [`MAX_SIDES`] were asked for: the span is refused.
    too_many: bool,
}

fn same_service(left: &Endpoint, right: &Endpoint) -> bool {
    left.service_name == right.service_name
}

impl<'a> Sides<'a> {
    fn new(source: &'a V1Span) -> Sides<'a> {
        let mut sides = Sides {
            source,
            sides: Vec::new(),
            too_many: false,
        };
        sides.push(None);
        sides
    }

    fn push(&mut self, endpoint: Option<&Endpoint>) -> usize {
        if self.sides.len() >= MAX_SIDES {
            // Refused once converted: nothing more is copied for it.
            self.too_many = true;
            return self.sides.len() - 1;
        }
        let source = self.source;
        self.sides.push(Side {
            span: ZipkinSpan {
                trace_id: source.trace_id.clone(),
                id: source.id.clone(),
                parent_id: source.parent_id.clone(),
                name: source.name.clone(),
                kind: None,
                timestamp: None,
                duration: None,
                local_endpoint: endpoint.cloned(),
                remote_endpoint: None,
                annotations: None,
                tags: None,
            },
            timestamp: None,
            duration: None,
        });
        self.sides.len() - 1
    }

    /// The side `endpoint` belongs to: the first for none; the first side without an
    /// endpoint yet, or of the same service; else a new one.
    fn of(&mut self, endpoint: Option<&Endpoint>) -> usize {
        let Some(endpoint) = endpoint else {
            return 0;
        };
        for (i, side) in self.sides.iter_mut().enumerate() {
            match &side.span.local_endpoint {
                None => {
                    side.span.local_endpoint = Some(endpoint.clone());
                    return i;
                }
                Some(local) if same_service(local, endpoint) => return i,
                Some(_) => {}
            }
        }
        self.push(Some(endpoint))
    }

    /// The sides of the two ends of one call (client and server, producer and
    /// consumer): the second is a side of its own even when both are one service (a
    /// loopback call), each then given its kind.
    fn pair(&mut self, first: (&Logged, &str), second: (&Logged, &str)) -> (usize, usize) {
        let ((a, first_kind), (b, second_kind)) = (first, second);
        let one = self.of(a.endpoint.as_ref());
        match (&a.endpoint, &b.endpoint) {
            (Some(x), Some(y)) if same_service(x, y) => {
                self.sides[one].span.kind = Some(first_kind.into());
                let two = self.push(Some(y));
                self.sides[two].span.kind = Some(second_kind.into());
                (one, two)
            }
            _ => (one, self.of(b.endpoint.as_ref())),
        }
    }

    fn side(&mut self, endpoint: Option<&Endpoint>) -> &mut Side {
        let i = self.of(endpoint);
        &mut self.sides[i]
    }

    fn annotate(&mut self, logged: &Logged) {
        let side = self.side(logged.endpoint.as_ref());
        side.span.annotations.get_or_insert_with(Vec::new).push(Annotation {
            timestamp: Some(Number::from(logged.timestamp)),
            value: Some(logged.value.clone()),
        });
    }

    /// The side of `begin` starts and lasts as the span says when it says both, else
    /// from `begin` to `end`.
    fn time_from(&mut self, begin: &Logged, end: Option<&Logged>) {
        let (timestamp, duration) = (self.span_timestamp(), self.span_duration());
        let side = self.side(begin.endpoint.as_ref());
        if timestamp != 0 && duration != 0 {
            side.timestamp = Some(timestamp);
            side.duration = Some(duration);
        } else {
            side.timestamp = Some(begin.timestamp);
            if let Some(end) = end {
                side.duration = Some(end.timestamp - begin.timestamp);
            }
        }
    }

    fn span_timestamp(&self) -> i64 {
        self.source.timestamp.as_ref().and_then(Number::as_i64).unwrap_or(0)
    }

    fn span_duration(&self) -> i64 {
        self.source.duration.as_ref().and_then(Number::as_i64).unwrap_or(0)
    }

    fn tag(&mut self, endpoint: Option<&Endpoint>, key: &str, value: &str) {
        self.side(endpoint)
            .span
            .tags
            .get_or_insert_with(Default::default)
            .insert(key.to_string(), serde_json::Value::String(value.to_string()));
    }

    fn finish(self) -> Vec<ZipkinSpan> {
        self.sides
            .into_iter()
            .map(|mut side| {
                side.span.timestamp = side.timestamp.map(Number::from);
                // An absent or zero duration is no duration, as in v2.
                side.span.duration = side.duration.filter(|d| *d != 0).map(Number::from);
                side.span
            })
            .collect()
    }
}

/// The core annotations of one v1 span.
#[derive(Default)]
struct Core {
    cs: Option<Logged>,
    sr: Option<Logged>,
    ss: Option<Logged>,
    cr: Option<Logged>,
    ms: Option<Logged>,
    mr: Option<Logged>,
    ws: Option<Logged>,
    wr: Option<Logged>,
}

fn convert(index: usize, format: Format, mut source: V1Span) -> Result<Vec<ZipkinSpan>> {
    let span_timestamp = micros(index, format, "timestamp", source.timestamp.as_ref())?;
    let span_duration = micros(index, format, "duration", source.duration.as_ref())?;
    for binary in source.binary_annotations.iter_mut().flatten() {
        binary.endpoint = normalized(binary.endpoint.take());
    }
    let mut logged = Vec::new();
    for (a, annotation) in source.annotations.iter().flatten().enumerate() {
        let (Some(timestamp), Some(value)) = (&annotation.timestamp, &annotation.value) else {
            return Err(refused(
                index,
                format,
                &format!("annotations[{a}] needs a timestamp and a value"),
            ));
        };
        logged.push(Logged {
            timestamp: micros(index, format, &format!("annotations[{a}].timestamp"), Some(timestamp))?,
            value: value.clone(),
            endpoint: normalized(annotation.endpoint.clone()),
        });
    }
    // In time order, as the Zipkin server reads them: the first endpoint to log
    // something gets what names none.
    logged.sort_by(|a, b| (a.timestamp, &a.value).cmp(&(b.timestamp, &b.value)));
    for (b, binary) in source.binary_annotations.iter().flatten().enumerate() {
        if binary.key.is_none() {
            return Err(refused(index, format, &format!("binaryAnnotations[{b}] has no key")));
        }
    }
    let mut sides = Sides::new(&source);
    let mut core = Core::default();
    for a in &logged {
        let endpoint = a.endpoint.as_ref();
        // Every annotation's endpoint has its side, whatever the annotation says.
        let side = sides.of(endpoint);
        // Core annotations need an endpoint; without one they are ordinary ones.
        let slot = match (endpoint.is_some(), a.value.as_str()) {
            (true, "cs") => Some((&mut core.cs, Some("CLIENT"))),
            (true, "sr") => Some((&mut core.sr, Some("SERVER"))),
            (true, "ss") => Some((&mut core.ss, Some("SERVER"))),
            (true, "cr") => Some((&mut core.cr, Some("CLIENT"))),
            (true, "ms") => Some((&mut core.ms, Some("PRODUCER"))),
            (true, "mr") => Some((&mut core.mr, Some("CONSUMER"))),
            (true, "ws") => Some((&mut core.ws, None)),
            (true, "wr") => Some((&mut core.wr, None)),
            _ => None,
        };
        match slot {
            Some((slot, kind)) => {
                if let Some(kind) = kind {
                    sides.sides[side].span.kind = Some(kind.to_string());
                }
                *slot = Some(a.clone());
            }
            None => sides.annotate(a),
        }
    }
    // A span bridged from an event model may lack its start annotation.
    let covers = |end: &Option<Logged>| {
        end.as_ref().is_some_and(|end| {
            span_timestamp != 0 && span_duration != 0 && span_timestamp + span_duration == end.timestamp
        })
    };
    if core.cs.is_none() && covers(&core.cr) {
        core.cs = core.cr.as_ref().map(|cr| Logged {
            timestamp: span_timestamp,
            value: "cs".into(),
            endpoint: cr.endpoint.clone(),
        });
    }
    if core.sr.is_none() && covers(&core.ss) {
        core.sr = core.ss.as_ref().map(|ss| Logged {
            timestamp: span_timestamp,
            value: "sr".into(),
            endpoint: ss.endpoint.clone(),
        });
    }
    rpc_sides(&mut sides, &core, span_timestamp, span_duration);
    messaging_sides(&mut sides, &core);
    binary_annotations(&mut sides, &source, &core);
    if sides.too_many {
        return Err(refused(
            index,
            format,
            &format!(
                "logged by more than {MAX_SIDES} services: a v1 span is one call, seen by \
                 its client and its server"
            ),
        ));
    }
    Ok(sides.finish())
}

fn rpc_sides(sides: &mut Sides<'_>, core: &Core, span_timestamp: i64, span_duration: i64) {
    match (&core.cs, &core.sr) {
        (Some(cs), Some(sr)) => {
            // In a shared span the client owns the span's timestamp and duration.
            sides.time_from(cs, core.cr.as_ref());
            let (client, server) = sides.pair((cs, "CLIENT"), (sr, "SERVER"));
            sides.sides[server].timestamp = Some(sr.timestamp);
            if let Some(ss) = &core.ss {
                sides.sides[server].duration = Some(ss.timestamp - sr.timestamp);
            }
            if core.cr.is_none() && span_duration == 0 {
                // A one-way call has no duration.
                sides.sides[client].duration = None;
            }
        }
        (Some(cs), None) if core.cr.is_some() => sides.time_from(cs, core.cr.as_ref()),
        (None, Some(sr)) if core.ss.is_some() => sides.time_from(sr, core.ss.as_ref()),
        _ => {
            // An incomplete RPC: each side starts at its start annotation and keeps its
            // end annotation as an ordinary one.
            for side in &mut sides.sides {
                match side.span.kind.as_deref() {
                    Some("CLIENT") => incomplete(side, core.cs.as_ref(), core.cr.as_ref()),
                    Some("SERVER") => incomplete(side, core.sr.as_ref(), core.ss.as_ref()),
                    _ => {}
                }
            }
            if span_timestamp != 0 {
                sides.sides[0].timestamp = Some(span_timestamp);
                sides.sides[0].duration = Some(span_duration);
            }
        }
    }
}

fn incomplete(side: &mut Side, start: Option<&Logged>, end: Option<&Logged>) {
    if let Some(start) = start {
        side.timestamp = Some(start.timestamp);
    }
    if let Some(end) = end {
        side.span.annotations.get_or_insert_with(Vec::new).push(Annotation {
            timestamp: Some(Number::from(end.timestamp)),
            value: Some(end.value.clone()),
        });
    }
}

fn messaging_sides(sides: &mut Sides<'_>, core: &Core) {
    match (&core.ms, &core.mr) {
        (Some(ms), Some(mr)) => {
            let (producer, consumer) = sides.pair((ms, "PRODUCER"), (mr, "CONSUMER"));
            let consumer = &mut sides.sides[consumer];
            match &core.wr {
                Some(wr) => {
                    consumer.timestamp = Some(wr.timestamp);
                    consumer.duration = Some(mr.timestamp - wr.timestamp);
                }
                None => consumer.timestamp = Some(mr.timestamp),
            }
            let producer = &mut sides.sides[producer];
            producer.timestamp = Some(ms.timestamp);
            producer.duration = core.ws.as_ref().map(|ws| ws.timestamp - ms.timestamp);
        }
        (Some(ms), None) => sides.time_from(ms, core.ws.as_ref()),
        (None, Some(mr)) => match &core.wr {
            Some(wr) => sides.time_from(wr, Some(mr)),
            None => sides.time_from(mr, None),
        },
        (None, None) => {
            for wire in [&core.ws, &core.wr].into_iter().flatten() {
                sides.annotate(wire);
            }
        }
    }
}

fn binary_annotations(sides: &mut Sides<'_>, source: &V1Span, core: &Core) {
    let (mut ca, mut sa, mut ma) = (None, None, None);
    for binary in source.binary_annotations.iter().flatten() {
        let key = binary.key.as_deref().unwrap_or_default();
        match &binary.value {
            Some(serde_json::Value::String(value)) => {
                // "lc" without a value only marks a local span.
                if key == "lc" && value.is_empty() {
                    continue;
                }
                sides.tag(binary.endpoint.as_ref(), key, value);
            }
            Some(serde_json::Value::Bool(true)) if binary.endpoint.is_some() => match key {
                "ca" => ca = binary.endpoint.clone(),
                "sa" => sa = binary.endpoint.clone(),
                "ma" => ma = binary.endpoint.clone(),
                _ => {}
            },
            _ => {}
        }
    }
    let no_core = core.cs.is_none() && core.cr.is_none() && core.ss.is_none() && core.sr.is_none();
    if no_core && (ca.is_some() || sa.is_some()) {
        match (ca, sa) {
            (Some(ca), Some(sa)) => sides.side(Some(&ca)).span.remote_endpoint = Some(sa),
            (None, Some(sa)) => sides.side(None).span.remote_endpoint = Some(sa),
            (Some(ca), None) => {
                let side = sides.side(None);
                side.span.kind = Some("SERVER".into());
                side.span.remote_endpoint = Some(ca);
            }
            (None, None) => {}
        }
        return;
    }
    let server = core.sr.as_ref().or(core.ss.as_ref());
    if let (Some(mut ca), Some(server)) = (ca, server)
        && server.endpoint.as_ref() != Some(&ca)
    {
        // A client address with the server's own service name is the client's socket
        // seen by the server: without the name it makes no loopback link.
        if server.endpoint.as_ref().is_some_and(|e| same_service(e, &ca)) {
            ca.service_name = None;
        }
        sides.side(server.endpoint.as_ref()).span.remote_endpoint = Some(ca);
    }
    if let Some(sa) = sa
        && let Some(client) = core.cs.as_ref().or(core.cr.as_ref())
    {
        sides.side(client.endpoint.as_ref()).span.remote_endpoint = Some(sa);
    }
    if let Some(ma) = ma {
        for side in [&core.ms, &core.mr].into_iter().flatten() {
            sides.side(side.endpoint.as_ref()).span.remote_endpoint = Some(ma.clone());
        }
    }
}
