//! `rewrite` and `headers` (request and response operations) of an HTTP route or one of
//! its destinations.

use http::{HeaderName, HeaderValue};
use yaml_serde::Value;

use super::walk::{Cx, Fields, describe};
use crate::routing::{HeaderOperations, HeaderOps, Rewrite};

const REWRITE: Fields =
    Fields { known: &["uri", "authority"], unsupported: &[("uriRegexRewrite", "use uri with a prefix match")] };

const HEADERS: Fields = Fields { known: &["request", "response"], unsupported: &[] };

const HEADER_OPS: Fields = Fields { known: &["set", "add", "remove"], unsupported: &[] };

/// Headers a rule may not set, add or remove: they belong to the connection or to the
/// proxy, not to the request.
const RESERVED_HEADERS: &[(&str, &str)] = &[
    ("host", "use rewrite.authority to change the authority"),
    ("connection", "it is a hop-by-hop header"),
    ("keep-alive", "it is a hop-by-hop header"),
    ("proxy-connection", "it is a hop-by-hop header"),
    ("transfer-encoding", "it is a hop-by-hop header"),
    ("upgrade", "it is a hop-by-hop header"),
    ("te", "it is a hop-by-hop header"),
    ("content-length", "the proxy computes it"),
];

pub(super) fn compile_rewrite(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<Rewrite> {
    let object = cx.object(value, path, &REWRITE)?;
    // Both fields are read before a failure returns, so that each problem is reported.
    let uri = match object.get("uri") {
        Some((value, path)) => cx.string(value, &path).and_then(|uri| {
            if uri.contains(['?', '#']) || uri.chars().any(char::is_whitespace) {
                cx.push(&path, "must be a path, without query, fragment or spaces");
                return None;
            }
            // As in Istio, whose proto3 fields read "" as unset: no path rewrite. A
            // path is sent with its leading `/`, and `rules check` shows it so.
            Some((!uri.is_empty()).then(|| if uri.starts_with('/') { uri.to_owned() } else { format!("/{uri}") }))
        }),
        None => Some(None),
    };
    let authority = match object.get("authority") {
        Some((value, path)) => cx.required_string(value, &path).and_then(|authority| {
            if HeaderValue::from_str(authority).is_err() || authority.contains(['/', ' ']) {
                cx.push(&path, format!("{authority:?} is not a valid authority"));
                return None;
            }
            Some(Some(authority.to_owned()))
        }),
        None => Some(None),
    };
    let (uri, authority) = (uri?, authority?);
    if uri.is_none() && authority.is_none() {
        if !object.has("uriRegexRewrite") {
            cx.push(path, "give uri, authority, or both");
        }
        return None;
    }
    Some(Rewrite { uri, authority })
}

pub(super) fn compile_header_operations(cx: &mut Cx<'_>, value: &Value, path: &str) -> HeaderOperations {
    let mut operations = HeaderOperations::default();
    let Some(object) = cx.object(value, path, &HEADERS) else {
        return operations;
    };
    if let Some((value, path)) = object.get("request") {
        operations.request = compile_header_ops(cx, value, &path);
    }
    if let Some((value, path)) = object.get("response") {
        operations.response = compile_header_ops(cx, value, &path);
    }
    operations
}

fn compile_header_ops(cx: &mut Cx<'_>, value: &Value, path: &str) -> HeaderOps {
    let mut ops = HeaderOps::default();
    let Some(object) = cx.object(value, path, &HEADER_OPS) else {
        return ops;
    };
    for (key, list) in [("set", &mut ops.set), ("add", &mut ops.add)] {
        let Some((value, path)) = object.get(key) else {
            continue;
        };
        for (name, value, field) in cx.entries(value, &path) {
            let name = header_name(cx, name, &field);
            let value = match value {
                Value::String(s) => header_value(cx, s, &field),
                // `x-count: 1` is written unquoted often enough; keep it as text.
                Value::Number(n) => header_value(cx, &n.to_string(), &field),
                Value::Bool(b) => header_value(cx, &b.to_string(), &field),
                other => {
                    cx.push(&field, format!("expected a header value (a string), found {}", describe(other)));
                    None
                }
            };
            if let (Some(name), Some(value)) = (name, value) {
                list.push((name, value));
            }
        }
    }
    if let Some((value, path)) = object.get("remove") {
        for (name, field) in cx.strings(value, &path) {
            if let Some(name) = header_name(cx, name, &field) {
                ops.remove.push(name);
            }
        }
    }
    ops
}

fn header_name(cx: &mut Cx<'_>, name: &str, field: &str) -> Option<HeaderName> {
    let lower = name.trim().to_ascii_lowercase();
    if lower.starts_with(':') {
        cx.push(field, format!("{name:?} is a pseudo-header; rules may not change it (use rewrite for the authority)"));
        return None;
    }
    if let Some((_, why)) = RESERVED_HEADERS.iter().find(|(reserved, _)| *reserved == lower) {
        cx.push(field, format!("{name:?} may not be changed by a rule: {why}"));
        return None;
    }
    match HeaderName::from_bytes(lower.as_bytes()) {
        Ok(name) => Some(name),
        Err(_) => {
            cx.push(field, format!("{name:?} is not a valid header name"));
            None
        }
    }
}

fn header_value(cx: &mut Cx<'_>, value: &str, field: &str) -> Option<HeaderValue> {
    if value.contains('%') {
        cx.push(
            field,
            "Envoy variables in header values (%DOWNSTREAM_REMOTE_ADDRESS% and the like) are not supported by \
             meshtel; a literal % cannot be told apart from one",
        );
        return None;
    }
    // An HTTP/2 hop refuses a value that begins or ends with whitespace (RFC 9113
    // §8.2.1), as the next proxy's inbound does: every call the rule touches would fail.
    if value.starts_with([' ', '\t']) || value.ends_with([' ', '\t']) {
        cx.push(field, format!("{value:?} begins or ends with whitespace, which HTTP/2 refuses in a header value"));
        return None;
    }
    match HeaderValue::from_str(value) {
        Ok(value) => Some(value),
        Err(_) => {
            cx.push(field, format!("{value:?} is not a valid header value (control characters or non-ASCII)"));
            None
        }
    }
}
