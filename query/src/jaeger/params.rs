//! Query-string parsing for the Jaeger v1 API, with Jaeger's defaults and its exact
//! error messages (spec §1.4, §1.6): Go's `strconv` and `time.ParseDuration` wording
//! behind Jaeger's `unable to parse param '<name>': ` prefix.

use std::collections::BTreeMap;

use base64::Engine as _;
use meshtel_model::Error;
use meshtel_model::duration::parse_go_duration;
use meshtel_model::{TraceId, TraceQuery};

use crate::error::{ApiError, Result};

/// Jaeger's default number of traces per search (also used for `limit=0`).
pub const DEFAULT_SEARCH_LIMIT: usize = 100;
/// Default search window when `start` is absent: 48 hours before `end`.
pub const DEFAULT_SEARCH_LOOKBACK_NANO: u64 = 48 * 3600 * 1_000_000_000;
/// Default dependency window when `lookback` is absent: 24 hours.
pub const DEFAULT_DEPENDENCY_LOOKBACK_NANO: u64 = 24 * 3600 * 1_000_000_000;

/// Decoded query parameters, in order, repeats kept, with Go's `url.Values` reading:
/// a bare key (`minDuration` without `=`) has the value `""`.
#[derive(Debug, Clone, Default)]
pub struct QueryParams(Vec<(String, String)>);

impl QueryParams {
    /// Decodes a raw query string (`+` is a space, `%xx` escapes).
    pub fn parse(raw: Option<&str>) -> Self {
        let pairs = raw
            .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
            .unwrap_or_default();
        QueryParams(pairs)
    }

    /// The first value of `key`, `""` when absent (Go's `FormValue`).
    pub fn get(&self, key: &str) -> &str {
        self.0
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
            .unwrap_or("")
    }

    /// Every value of `key`, in order.
    pub fn all<'a>(&'a self, key: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// True when `prettyPrint` is set to anything but `""` or `"false"`.
    pub fn pretty_print(&self) -> bool {
        !matches!(self.get("prettyPrint"), "" | "false")
    }
}

/// What `GET /api/traces` asks for.
#[derive(Debug, Clone, PartialEq)]
pub enum TracesRequest {
    /// A search.
    Search(TraceQuery),
    /// A fetch of these ids (`traceID=…`, repeated); search parameters are ignored.
    ByIds(Vec<TraceId>),
    /// A search no span can match: a negative `maxDuration`, which Jaeger accepts.
    Nothing,
}

/// Parses `/api/traces` parameters in Jaeger's order, so that the first bad parameter
/// is the one reported. `now_unix_nano` gives the default window; the search limit is
/// bounded by `max_limit`.
pub fn parse_traces_params(
    params: &QueryParams,
    now_unix_nano: u64,
    max_limit: usize,
) -> Result<TracesRequest> {
    let service = params.get("service");
    let operation = params.get("operation");
    let end_default = now_unix_nano;
    let start_default = now_unix_nano.saturating_sub(DEFAULT_SEARCH_LOOKBACK_NANO);
    let start = parse_epoch_param(params, "start", 1_000, start_default)?;
    // `end` names a microsecond, as Jaeger shows start times: a span starting within
    // it (at …001–…999 ns) is in the window, so a span is found by its own start.
    let end = if params.get("end").is_empty() {
        end_default
    } else {
        parse_epoch_param(params, "end", 1_000, end_default)?.saturating_add(999)
    };
    let tags = parse_tags(params.all("tag"), params.all("tags"))?;
    check_tag_count(tags.len(), "'tag' and 'tags' parameters")?;

    let mut limit = DEFAULT_SEARCH_LIMIT as i64;
    let limit_text = params.get("limit");
    if !limit_text.is_empty() {
        // Jaeger answers with the bare `strconv` error; the parameter's name is added,
        // in the wording of the others.
        limit = parse_go_int(limit_text, 32)
            .map_err(|e| ApiError::BadRequest(format!("unable to parse param 'limit': {e}")))?;
    }
    let min_duration = parse_duration_param(params, "minDuration")?;
    let max_duration = parse_duration_param(params, "maxDuration")?;

    let mut trace_ids = Vec::new();
    for text in params.all("traceID") {
        let id = parse_trace_id(text)
            .map_err(|msg| ApiError::BadRequest(format!("cannot parse traceID param: {msg}")))?;
        if !trace_ids.contains(&id) {
            trace_ids.push(id);
        }
        if trace_ids.len() > max_limit {
            return Err(ApiError::BadRequest(format!(
                "too many traceID params: at most {max_limit} traces are fetched at once \
                 ([query] max_search_limit)"
            )));
        }
    }
    if !trace_ids.is_empty() {
        return Ok(TracesRequest::ByIds(trace_ids));
    }
    if service.is_empty() {
        return Err(ApiError::BadRequest(
            "parameter 'service' is required".to_string(),
        ));
    }
    if let (Some(min), Some(max)) = (min_duration, max_duration)
        && min != 0
        && max != 0
        && max < min
    {
        return Err(ApiError::BadRequest(
            "'maxDuration' should be greater than 'minDuration'".to_string(),
        ));
    }
    // Jaeger takes signed durations: a negative minimum bounds nothing, a negative
    // maximum lets no span through.
    if max_duration.is_some_and(|max| max < 0) {
        return Ok(TracesRequest::Nothing);
    }
    let bound = |d: Option<i128>| {
        d.filter(|d| *d > 0)
            .map(|d| u64::try_from(d).unwrap_or(u64::MAX))
    };
    let limit = if limit <= 0 {
        DEFAULT_SEARCH_LIMIT
    } else {
        usize::try_from(limit).unwrap_or(max_limit)
    };
    Ok(TracesRequest::Search(TraceQuery {
        service: Some(service.to_string()),
        operation: (!operation.is_empty()).then(|| operation.to_string()),
        tags: tags.into_iter().collect(),
        start_min_unix_nano: start,
        start_max_unix_nano: end,
        duration_min_nano: bound(min_duration),
        duration_max_nano: bound(max_duration),
        limit: limit.min(max_limit.max(1)),
        max_spans: None,
    }))
}

/// `GET /api/dependencies` parameters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DependenciesParams {
    /// End of the window, Unix ns (`endTs`, ms; default now).
    pub end_unix_nano: u64,
    /// Window length, ns (`lookback`, ms; default 24 h).
    pub lookback_nano: u64,
    /// Keep only links touching this service (`service`).
    pub service: Option<String>,
}

/// Parses `endTs` and `lookback` (integers of milliseconds) and `service`.
pub fn parse_dependencies_params(
    params: &QueryParams,
    now_unix_nano: u64,
) -> Result<DependenciesParams> {
    let end_unix_nano = parse_epoch_param(params, "endTs", 1_000_000, now_unix_nano)?;
    let lookback_text = params.get("lookback");
    let lookback_nano = if lookback_text.is_empty() {
        DEFAULT_DEPENDENCY_LOOKBACK_NANO
    } else {
        let ms = parse_go_int(lookback_text, 64).map_err(|e| param_error("lookback", &e))?;
        // Jaeger takes any integer; a window of zero or less answers nothing useful
        // (or, read as the current bucket, something plausible and wrong).
        let ms = u64::try_from(ms).ok().filter(|&ms| ms > 0).ok_or_else(|| {
            param_error(
                "lookback",
                &format!("{lookback_text} is not a positive number of milliseconds"),
            )
        })?;
        ms.saturating_mul(1_000_000)
    };
    let service = params.get("service");
    Ok(DependenciesParams {
        end_unix_nano,
        lookback_nano,
        service: (!service.is_empty()).then(|| service.to_string()),
    })
}

/// Parses `raw` (Go `strconv.ParseBool`; absent is false).
pub fn parse_raw_param(params: &QueryParams) -> Result<bool> {
    let text = params.get("raw");
    if text.is_empty() {
        return Ok(false);
    }
    parse_go_bool(text).map_err(|e| param_error("raw", &e))
}

/// Checks `start` and `end` of a trace fetch (integers of microseconds, each
/// optional) as Jaeger parses them: a non-integer is a 400 naming the parameter. Their
/// values are only hints, which the store does not need.
pub fn parse_trace_window_hints(params: &QueryParams) -> Result<()> {
    for name in ["start", "end"] {
        let text = params.get(name);
        if !text.is_empty() {
            parse_go_int(text, 64).map_err(|e| param_error(name, &e))?;
        }
    }
    Ok(())
}

/// Parses a trace id as Jaeger does: 1 to 32 hex digits in any case; failing that, an
/// id of at most 24 characters may be 16 bytes of standard or URL-safe base64, padded
/// or not. The error is the hex parser's message.
pub fn parse_trace_id(text: &str) -> std::result::Result<TraceId, String> {
    match TraceId::parse_hex(text) {
        Ok(id) => Ok(id),
        Err(hex_error) => {
            if text.len() <= 24 {
                use base64::engine::general_purpose::{
                    STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD,
                };
                for engine in [&STANDARD, &STANDARD_NO_PAD, &URL_SAFE, &URL_SAFE_NO_PAD] {
                    if let Ok(bytes) = engine.decode(text)
                        && let Ok(id) = TraceId::from_slice(&bytes)
                    {
                        return Ok(id);
                    }
                }
            }
            Err(hex_error.to_string())
        }
    }
}

/// `unable to parse param '<name>': <cause>`.
fn param_error(name: &str, cause: &str) -> ApiError {
    ApiError::BadRequest(format!("unable to parse param '{name}': {cause}"))
}

/// An integer time parameter in `unit_nanos` units since the epoch, as Unix ns;
/// negative times clamp to the epoch.
fn parse_epoch_param(
    params: &QueryParams,
    name: &str,
    unit_nanos: u64,
    default: u64,
) -> Result<u64> {
    let text = params.get(name);
    if text.is_empty() {
        return Ok(default);
    }
    let value = parse_go_int(text, 64).map_err(|e| param_error(name, &e))?;
    Ok(u64::try_from(value).unwrap_or(0).saturating_mul(unit_nanos))
}

/// A Go duration in nanoseconds, signed as Go's are.
fn parse_duration_param(params: &QueryParams, name: &str) -> Result<Option<i128>> {
    let text = params.get(name);
    if text.is_empty() {
        return Ok(None);
    }
    let (sign, magnitude) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text),
    };
    if sign < 0 && magnitude.starts_with(['-', '+']) {
        return Err(param_error(
            name,
            &Error::InvalidDuration(text.into()).to_string(),
        ));
    }
    let duration = parse_go_duration(magnitude).map_err(|e| {
        // Errors name the parameter as written.
        let e = match e {
            Error::InvalidDuration(_) => Error::InvalidDuration(text.into()),
            Error::DurationWithoutUnit(_) => Error::DurationWithoutUnit(text.into()),
            Error::UnknownDurationUnit { unit, .. } => Error::UnknownDurationUnit {
                unit,
                text: text.into(),
            },
            other => other,
        };
        param_error(name, &e.to_string())
    })?;
    Ok(Some(
        sign * i128::try_from(duration.as_nanos()).unwrap_or(i128::MAX),
    ))
}

/// Refuses a search of more than [`TraceQuery::MAX_TAGS`] tags, naming `params`.
pub fn check_tag_count(count: usize, params: &str) -> Result<()> {
    if count > TraceQuery::MAX_TAGS {
        return Err(ApiError::BadRequest(format!(
            "the {params} name {count} tags, more than the {} one search may name",
            TraceQuery::MAX_TAGS
        )));
    }
    Ok(())
}

/// `tag=key:value` (split at the first `:`) then `tags={"k":"v"}` objects, later
/// entries overriding earlier ones; `tags` overrides `tag`.
pub fn parse_tags<'a>(
    simple: impl Iterator<Item = &'a str>,
    json: impl Iterator<Item = &'a str>,
) -> Result<BTreeMap<String, String>> {
    let mut tags = BTreeMap::new();
    for tag in simple {
        match tag.split_once(':') {
            Some((k, v)) => {
                tags.insert(k.to_string(), v.to_string());
            }
            None => {
                return Err(ApiError::BadRequest(format!(
                    "malformed 'tag' parameter, expecting key:value, received: {tag}"
                )));
            }
        }
    }
    for text in json {
        let object = parse_string_map(text).map_err(|cause| {
            ApiError::BadRequest(format!(
                "malformed 'tags' parameter, cannot unmarshal JSON: {cause}"
            ))
        })?;
        tags.extend(object);
    }
    Ok(tags)
}

/// Decodes a JSON object of strings as Go's `json.Unmarshal` into `map[string]string`,
/// with Go's wording for type mismatches. `null` (whole or as a value) is accepted.
pub fn parse_string_map(text: &str) -> std::result::Result<Vec<(String, String)>, String> {
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| e.to_string())?;
    let type_name = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "bool",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    };
    match value {
        serde_json::Value::Null => Ok(Vec::new()),
        serde_json::Value::Object(map) => map
            .into_iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => Ok((k, s)),
                serde_json::Value::Null => Ok((k, String::new())),
                other => Err(format!(
                    "json: cannot unmarshal {} into Go value of type string",
                    type_name(&other)
                )),
            })
            .collect(),
        other => Err(format!(
            "json: cannot unmarshal {} into Go value of type map[string]string",
            type_name(&other)
        )),
    }
}

/// Go's `strconv.ParseInt(text, 10, bits)` with its error wording.
pub fn parse_go_int(text: &str, bits: u32) -> std::result::Result<i64, String> {
    let digits = text.strip_prefix(['+', '-']).unwrap_or(text);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!(
            "strconv.ParseInt: parsing {}: invalid syntax",
            go_quote(text)
        ));
    }
    let out_of_range = || {
        format!(
            "strconv.ParseInt: parsing {}: value out of range",
            go_quote(text)
        )
    };
    let value: i64 = text.parse().map_err(|_| out_of_range())?;
    let bound = 1i64.checked_shl(bits.saturating_sub(1)).unwrap_or(i64::MAX);
    if bits < 64 && (value >= bound || value < -bound) {
        return Err(out_of_range());
    }
    Ok(value)
}

/// Go's `strconv.ParseBool` with its error wording.
pub fn parse_go_bool(text: &str) -> std::result::Result<bool, String> {
    match text {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(false),
        _ => Err(format!(
            "strconv.ParseBool: parsing {}: invalid syntax",
            go_quote(text)
        )),
    }
}

/// Go's `strconv.Quote` for the common cases: double quotes, `\"`, `\\` and escapes
/// for control characters.
pub fn go_quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests;
