//! The admin API's JSON shapes (shared with the `meshtel quota` CLI) and request
//! parsing: policy bodies in JSON or YAML, conditional headers, timestamps.

use std::time::{Duration, UNIX_EPOCH};

use axum::http::{HeaderMap, HeaderValue, header};
use meshtel_model::quota::parse::{spec_from_value, strict_json_value, strict_yaml_value};
use meshtel_model::quota::{AuditEntry, KeyUsage, QuotaPolicySpec, QuotaUsage, StoredPolicy};
use serde::{Deserialize, Serialize};

use crate::error::ApiError;

/// Fields of [`PolicyJson`] that are not part of the spec; a PUT body may carry them
/// (a GET answer sent back) and they are ignored.
pub const READ_ONLY_FIELDS: [&str; 3] = ["version", "updatedAt", "updatedBy"];

/// A stored policy as the API shows it: every field of the spec, plus `version`,
/// `updatedAt` (RFC 3339, UTC, milliseconds) and `updatedBy`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PolicyJson {
    /// The policy.
    #[serde(flatten)]
    pub spec: QuotaPolicySpec,
    /// Version; the ETag is `"<version>"`.
    pub version: u64,
    /// Last change.
    pub updated_at: String,
    /// Who made the last change.
    pub updated_by: String,
}

impl From<StoredPolicy> for PolicyJson {
    fn from(p: StoredPolicy) -> Self {
        PolicyJson {
            spec: p.spec,
            version: p.version,
            updated_at: rfc3339_millis(p.updated_at_unix_ms),
            updated_by: p.updated_by,
        }
    }
}

/// One audit entry as the API shows it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditJson {
    /// Monotonic id.
    pub id: i64,
    /// When (RFC 3339, UTC, milliseconds).
    pub at: String,
    /// Who.
    pub actor: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// The policy's name.
    pub name: String,
    /// The spec before the change; `null` on create.
    pub before: Option<QuotaPolicySpec>,
    /// The spec after the change; `null` on delete.
    pub after: Option<QuotaPolicySpec>,
    /// The version the change made (the ETag of `GET /api/quotas/{name}`), for a delete
    /// the version deleted; `null` on entries written before meshtel recorded it.
    #[serde(default)]
    pub version: Option<u64>,
}

impl From<AuditEntry> for AuditJson {
    fn from(e: AuditEntry) -> Self {
        AuditJson {
            id: e.id,
            at: rfc3339_millis(e.at_unix_ms),
            actor: e.actor,
            action: e.action,
            name: e.name,
            before: e.before,
            after: e.after,
            version: e.version,
        }
    }
}

/// `GET /api/quotas/{name}/usage`: what the quota engine decided, named for what it
/// counts. The engine sees Check calls, not requests: a proxy leases tokens ahead
/// (`granted` counts every leased token, used or not) and, once a Check is denied,
/// answers the requests that follow with 429 itself until the window resets (`denied`
/// counts the denied Check, not those requests). Requests answered 429 are
/// `istio_requests_total{response_code="429",response_flags="RL"}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct UsageJson {
    /// The quota.
    pub name: String,
    /// Tokens granted since the collector started (leases included).
    pub tokens_granted: u64,
    /// Check decisions that denied, since the collector started (shadow ones included).
    pub checks_denied: u64,
    /// Same as `tokensGranted` (the name before it).
    pub granted: u64,
    /// Same as `checksDenied` (the name before it).
    pub denied: u64,
    /// Live counters, busiest first.
    pub keys: Vec<KeyUsageJson>,
    /// Live counters in all.
    pub key_count: u64,
}

/// One live counter in [`UsageJson`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsageJson {
    /// Counter key (`name;dim=value;...`).
    pub key: String,
    /// Dimension values of the key.
    pub dimensions: std::collections::BTreeMap<String, String>,
    /// Amount in use in the current window (or taken from the bucket).
    pub used: u64,
    /// The limit that applies to this key.
    pub limit: u64,
    /// Milliseconds until the window resets (or a token refills).
    pub reset_after_ms: u64,
    /// Tokens granted since the counter was created.
    pub tokens_granted: u64,
    /// Check decisions that denied since the counter was created.
    pub checks_denied: u64,
    /// Same as `tokensGranted`.
    pub granted: u64,
    /// Same as `checksDenied`.
    pub denied: u64,
}

impl From<QuotaUsage> for UsageJson {
    fn from(u: QuotaUsage) -> Self {
        UsageJson {
            name: u.name,
            tokens_granted: u.granted,
            checks_denied: u.denied,
            granted: u.granted,
            denied: u.denied,
            keys: u.keys.into_iter().map(KeyUsageJson::from).collect(),
            key_count: u.key_count,
        }
    }
}

impl From<KeyUsage> for KeyUsageJson {
    fn from(k: KeyUsage) -> Self {
        KeyUsageJson {
            key: k.key,
            dimensions: k.dimensions,
            used: k.used,
            limit: k.limit,
            reset_after_ms: k.reset_after_ms,
            tokens_granted: k.granted,
            checks_denied: k.denied,
            granted: k.granted,
            denied: k.denied,
        }
    }
}

/// A list answer: `{"data":[...]}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataJson<T> {
    /// The items.
    pub data: T,
}

/// Unix milliseconds as RFC 3339 (`2025-01-01T00:00:00.000Z`).
pub fn rfc3339_millis(unix_ms: i64) -> String {
    let ms = u64::try_from(unix_ms).unwrap_or(0);
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_millis(ms)).to_string()
}

/// The ETag of a version: `"<version>"`.
pub fn etag(version: u64) -> HeaderValue {
    // Digits and quotes only: always a valid header value.
    HeaderValue::from_str(&format!("\"{version}\"")).unwrap_or(HeaderValue::from_static("\"0\""))
}

/// How a PUT body is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyFormat {
    Json,
    Yaml,
    /// `application/x-www-form-urlencoded` (`curl -d`), read as YAML.
    Form,
}

/// The body format from `Content-Type`; none given reads YAML (which accepts JSON), and
/// so does `application/x-www-form-urlencoded`, what `curl -d` sends: a write needs the
/// bearer token, which a cross-site form cannot send, so refusing the type protects
/// nothing. Other types (`multipart/form-data`, `text/html`, ...) are 415.
pub(crate) fn body_format(headers: &HeaderMap) -> Result<BodyFormat, ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Ok(BodyFormat::Yaml);
    };
    let text = value.to_str().unwrap_or("");
    let essence = text
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Ok(BodyFormat::Json),
        e if e.starts_with("application/") && e.ends_with("+json") => Ok(BodyFormat::Json),
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" => {
            Ok(BodyFormat::Yaml)
        }
        "application/x-www-form-urlencoded" => Ok(BodyFormat::Form),
        _ => Err(ApiError::UnsupportedMediaType(format!(
            "Content-Type {text:?} is not supported: send the policy as application/json or \
             application/yaml (a body without Content-Type, or with curl -d's \
             application/x-www-form-urlencoded, is read as YAML, which takes JSON too)"
        ))),
    }
}

/// Reads one policy from a PUT body for the policy `path_name`: a JSON or YAML object
/// whose `name` is absent or equals `path_name`; [`READ_ONLY_FIELDS`] are ignored.
pub(crate) fn parse_policy_body(
    path_name: &str,
    format: BodyFormat,
    body: &[u8],
) -> Result<QuotaPolicySpec, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::BadRequest(
            "the body is empty: send one quota policy as JSON or YAML".into(),
        ));
    }
    // A repeated key (its last value would silently win) and a value of the wrong type
    // are refused like validation errors: with their field path.
    let mut value: serde_json::Value = match format {
        BodyFormat::Json => strict_json_value(body).map_err(body_error)?,
        BodyFormat::Yaml | BodyFormat::Form => {
            let text = std::str::from_utf8(body)
                .map_err(|e| ApiError::BadRequest(format!("the body is not UTF-8: {e}")))?;
            meshtel_model::yaml_nesting::check(text)
                .map_err(|e| ApiError::BadRequest(format!("the body is not valid YAML: {e}")))?;
            strict_yaml_value(yaml_serde::Deserializer::from_str(text)).map_err(|mut error| {
                if format == BodyFormat::Form && !text.contains('\n') {
                    error.message.push_str(
                        " (it came as application/x-www-form-urlencoded, what curl -d sends, \
                         and curl -d strips newlines: send YAML with --data-binary)",
                    );
                }
                body_error(error)
            })?
        }
    };
    let Some(object) = value.as_object_mut() else {
        return Err(ApiError::BadRequest(
            "the body must be one quota policy (an object)".into(),
        ));
    };
    for field in READ_ONLY_FIELDS {
        object.remove(field);
    }
    // A name of its own is a problem listed with the others, which are read as if
    // the body had the path's name.
    let name_problem = match object.get("name") {
        None | Some(serde_json::Value::Null) => None,
        Some(serde_json::Value::String(name)) if name.is_empty() || name == path_name => None,
        Some(serde_json::Value::String(name)) => Some(format!(
            "{name:?} differs from the name in the path ({path_name:?})"
        )),
        Some(other) => Some(format!(
            "must be a string (the name in the path, {path_name:?}), not {other}"
        )),
    }
    .map(|message| meshtel_model::quota::FieldError {
        field: "name".into(),
        message,
    });
    object.insert(
        "name".into(),
        serde_json::Value::String(path_name.to_string()),
    );
    // Every unknown key and wrong type, with the validation problems of the rest.
    match (spec_from_value(value), name_problem) {
        (Ok(spec), None) => Ok(spec),
        (Ok(spec), Some(problem)) => {
            // The other fields read: their validation problems join the name's.
            let mut problems = vec![problem];
            problems.extend(spec.compile_new().err().unwrap_or_default());
            Err(ApiError::InvalidPolicy(problems))
        }
        (Err(mut problems), Some(problem)) => {
            problems.insert(0, problem);
            Err(ApiError::InvalidPolicy(problems))
        }
        (Err(problems), None) => Err(ApiError::InvalidPolicy(problems)),
    }
}

/// A problem reading the body: without a field it is not JSON or YAML at all (400 with
/// the parser's message), with one it is a policy problem at that field.
fn body_error(error: meshtel_model::quota::FieldError) -> ApiError {
    if error.field.is_empty() {
        ApiError::BadRequest(error.message)
    } else {
        ApiError::InvalidPolicy(vec![error])
    }
}

/// A write's condition from `If-Match` / `If-None-Match`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Condition {
    /// No conditional header.
    None,
    /// `If-Match: "<version>"`, or a list of them: the policy's version must be one.
    /// Empty when every tag was weak, which never matches (RFC 9110 §13.1.1 compares
    /// strongly).
    IfMatch(Vec<u64>),
    /// `If-Match: *`: the policy must exist.
    IfExists,
    /// `If-None-Match: *`: the policy must not exist.
    IfNoneExists,
}

/// The header's lines joined with `, `, as RFC 9110 reads a list split over several.
fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Result<Option<String>, ApiError> {
    let mut joined: Option<String> = None;
    for value in headers.get_all(&name) {
        let text = value
            .to_str()
            .map_err(|_| ApiError::BadRequest(format!("{name} must be ASCII")))?
            .trim();
        match &mut joined {
            Some(joined) => {
                joined.push_str(", ");
                joined.push_str(text);
            }
            None => joined = Some(text.to_owned()),
        }
    }
    Ok(joined)
}

/// Parses the conditional headers of a PUT or DELETE.
pub(crate) fn write_condition(headers: &HeaderMap) -> Result<Condition, ApiError> {
    let if_match = header_text(headers, header::IF_MATCH)?;
    let if_none_match = header_text(headers, header::IF_NONE_MATCH)?;
    match (if_match.as_deref(), if_none_match.as_deref()) {
        (None, None) => Ok(Condition::None),
        (Some(_), Some(_)) => Err(ApiError::BadRequest(
            "send either If-Match or If-None-Match, not both".into(),
        )),
        (None, Some("*")) => Ok(Condition::IfNoneExists),
        (None, Some(_)) => Err(ApiError::BadRequest(
            "If-None-Match on a write takes only * (create only if absent)".into(),
        )),
        (Some("*"), None) => Ok(Condition::IfExists),
        (Some(tags), None) => {
            let refused = |what: &str| {
                ApiError::BadRequest(format!(
                    "If-Match takes ETags such as \"3\" (the policy's version) or *, not {what}"
                ))
            };
            let listed: Vec<&str> = tags
                .split(',')
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .collect();
            if listed.is_empty() {
                return Err(refused("an empty list"));
            }
            let mut versions = Vec::new();
            for tag in listed {
                match tag.strip_prefix("W/") {
                    // A weak tag never matches (strong comparison), but must be one.
                    Some(weak)
                        if weak.len() >= 2 && weak.starts_with('"') && weak.ends_with('"') => {}
                    Some(_) => return Err(refused(&format!("{tag:?}"))),
                    None => {
                        versions.push(parse_etag(tag).ok_or_else(|| refused(&format!("{tag:?}")))?)
                    }
                }
            }
            Ok(Condition::IfMatch(versions))
        }
    }
}

/// `"3"` (or a bare `3`) → 3. Weak ETags and lists are not versions.
fn parse_etag(text: &str) -> Option<u64> {
    let text = text.trim();
    let inner = text
        .strip_prefix('"')
        .and_then(|t| t.strip_suffix('"'))
        .unwrap_or(text);
    inner.parse().ok()
}

/// True when a GET's `If-None-Match` names `version` (or is `*`): answer 304.
pub(crate) fn not_modified(headers: &HeaderMap, version: u64) -> bool {
    let Some(Ok(text)) = headers.get(header::IF_NONE_MATCH).map(HeaderValue::to_str) else {
        return false;
    };
    text.split(',')
        .map(str::trim)
        .any(|tag| tag == "*" || parse_etag(tag.strip_prefix("W/").unwrap_or(tag)) == Some(version))
}

/// A positive count from the query string, `default` when absent, at most `max`.
pub(crate) fn parse_limit(text: &str, default: usize, max: usize) -> Result<usize, ApiError> {
    if text.is_empty() {
        return Ok(default);
    }
    match text.parse::<usize>() {
        Ok(n) if (1..=max).contains(&n) => Ok(n),
        _ => Err(ApiError::BadRequest(format!(
            "limit must be a whole number from 1 to {max}, not {text:?}"
        ))),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    fn with(pairs: &[(header::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.insert(k.clone(), HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn quotas_conditions() {
        assert_eq!(write_condition(&with(&[])).unwrap(), Condition::None);
        assert_eq!(
            write_condition(&with(&[(header::IF_MATCH, "\"7\"")])).unwrap(),
            Condition::IfMatch(vec![7])
        );
        // A list names every version that may match; a weak tag never matches.
        assert_eq!(
            write_condition(&with(&[(header::IF_MATCH, "\"1\", \"2\"")])).unwrap(),
            Condition::IfMatch(vec![1, 2])
        );
        assert_eq!(
            write_condition(&with(&[(header::IF_MATCH, "W/\"1\", \"2\"")])).unwrap(),
            Condition::IfMatch(vec![2])
        );
        assert_eq!(
            write_condition(&with(&[(header::IF_MATCH, "W/\"1\"")])).unwrap(),
            Condition::IfMatch(vec![])
        );
        assert_eq!(
            write_condition(&with(&[(header::IF_MATCH, "*")])).unwrap(),
            Condition::IfExists
        );
        assert_eq!(
            write_condition(&with(&[(header::IF_NONE_MATCH, "*")])).unwrap(),
            Condition::IfNoneExists
        );
        // Over two lines, as one list.
        let mut two_lines = HeaderMap::new();
        two_lines.append(header::IF_MATCH, HeaderValue::from_static("\"7\""));
        two_lines.append(header::IF_MATCH, HeaderValue::from_static("\"1\""));
        assert_eq!(
            write_condition(&two_lines).unwrap(),
            Condition::IfMatch(vec![7, 1])
        );
        for bad in ["abc", "\"1\", abc", "", ",", "W/abc", "W/"] {
            assert!(
                write_condition(&with(&[(header::IF_MATCH, bad)])).is_err(),
                "{bad}"
            );
        }
        assert!(write_condition(&with(&[(header::IF_NONE_MATCH, "\"1\"")])).is_err());
        assert!(
            write_condition(&with(&[
                (header::IF_MATCH, "\"1\""),
                (header::IF_NONE_MATCH, "*")
            ]))
            .is_err()
        );
        assert!(not_modified(
            &with(&[(header::IF_NONE_MATCH, "\"1\", W/\"4\"")]),
            4
        ));
        assert!(!not_modified(&with(&[(header::IF_NONE_MATCH, "\"1\"")]), 4));
        assert!(not_modified(&with(&[(header::IF_NONE_MATCH, "*")]), 4));
    }

    #[test]
    fn quotas_body_formats_and_names() {
        let json = with(&[(header::CONTENT_TYPE, "application/json; charset=utf-8")]);
        assert_eq!(body_format(&json).unwrap(), BodyFormat::Json);
        let yaml = with(&[(header::CONTENT_TYPE, "application/yaml")]);
        assert_eq!(body_format(&yaml).unwrap(), BodyFormat::Yaml);
        assert_eq!(body_format(&with(&[])).unwrap(), BodyFormat::Yaml);
        // What `curl -d` sends reads like no Content-Type.
        let form = with(&[(header::CONTENT_TYPE, "application/x-www-form-urlencoded")]);
        assert_eq!(body_format(&form).unwrap(), BodyFormat::Form);
        // YAML flattened by curl -d: the error says why.
        let error = parse_policy_body(
            "q",
            BodyFormat::Form,
            b"name: q maxAmount: 2 validDuration: 1s",
        )
        .err()
        .map(|e| e.public_message())
        .unwrap_or_default();
        assert!(error.contains("--data-binary"), "{error}");
        for other in ["text/plain", "text/html", "multipart/form-data; boundary=x"] {
            let headers = with(&[(header::CONTENT_TYPE, other)]);
            let refused = body_format(&headers);
            assert!(
                matches!(&refused, Err(ApiError::UnsupportedMediaType(m)) if m.contains("application/json or application/yaml")),
                "{other}: {refused:?}"
            );
        }

        let spec =
            parse_policy_body("q", BodyFormat::Yaml, b"maxAmount: 2\nvalidDuration: 1s\n").unwrap();
        assert_eq!((spec.name.as_str(), spec.max_amount), ("q", 2));
        let body =
            br#"{"name":"q","maxAmount":2,"validDuration":"1s","version":3,"updatedBy":"x"}"#;
        assert_eq!(
            parse_policy_body("q", BodyFormat::Json, body).unwrap(),
            spec
        );
        let other = parse_policy_body("q", BodyFormat::Json, br#"{"name":"r"}"#);
        assert!(matches!(other, Err(ApiError::InvalidPolicy(e)) if e[0].field == "name"));
        // A name of its own is one problem among the others, not the only one.
        let both = parse_policy_body(
            "q",
            BodyFormat::Json,
            br#"{"name":5,"maxAmount":-1,"validDuration":"0s"}"#,
        );
        let Err(ApiError::InvalidPolicy(problems)) = both else {
            panic!("{both:?}")
        };
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            ["name", "maxAmount", "validDuration"],
            "{problems:?}"
        );
        assert!(
            problems[0].message.starts_with("must be a string"),
            "{problems:?}"
        );
        // Unknown fields and type errors are policy problems at a field.
        let unknown = parse_policy_body("q", BodyFormat::Yaml, b"maxAmmount: 1");
        assert!(
            matches!(&unknown, Err(ApiError::InvalidPolicy(e)) if e[0].message.contains("maxAmmount")),
            "{unknown:?}"
        );
        for bad in [&b"[]"[..], b"", b"{"] {
            assert!(
                matches!(
                    parse_policy_body("q", BodyFormat::Yaml, bad),
                    Err(ApiError::BadRequest(_))
                ),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn quotas_limits_and_times() {
        assert_eq!(parse_limit("", 100, 1000).unwrap(), 100);
        assert_eq!(parse_limit("5", 100, 1000).unwrap(), 5);
        for bad in ["0", "-1", "x", "1001"] {
            assert!(parse_limit(bad, 100, 1000).is_err(), "{bad}");
        }
        assert_eq!(
            rfc3339_millis(1_735_689_600_123),
            "2025-01-01T00:00:00.123Z"
        );
        assert_eq!(etag(12), "\"12\"");
    }
}
