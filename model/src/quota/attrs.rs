//! Attribute references and dimension expressions, in Istio's attribute vocabulary:
//! `source.service`, `destination.labels["version"]`, `request.headers["x-user"]`,
//! chained with `|` to fall back when a value is empty, ending optionally in a quoted
//! literal: `request.headers["x-user"] | "anonymous"`.

use std::fmt;

use crate::mixer::{QuotaAttributes, Workload};

/// One attribute of a request that a quota can match or key on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum AttributeRef {
    /// `source.service` (also `source.labels["app"]`, `source.app`).
    SourceService,
    /// `source.workload` (also `source.workload.name`, `source.name`).
    SourceWorkload,
    /// `source.version` (also `source.labels["version"]`).
    SourceVersion,
    /// `source.namespace` (also `source.workload.namespace`).
    SourceNamespace,
    /// `source.principal`.
    SourcePrincipal,
    /// `destination.service` (also `destination.service.name`): the service short name,
    /// else the workload's app label.
    DestinationService,
    /// `destination.labels["app"]` (also `destination.app`): the destination workload's
    /// `app` label, as Mixer reads it (a quota keyed on it counts per app, whatever
    /// service name the caller used). A match on it tests the service, as
    /// [`AttributeRef::DestinationService`].
    DestinationApp,
    /// `destination.service.host`: the service FQDN.
    DestinationHost,
    /// `destination.workload` (also `destination.workload.name`, `destination.name`).
    DestinationWorkload,
    /// `destination.version` (also `destination.labels["version"]`).
    DestinationVersion,
    /// `destination.namespace` (also `destination.service.namespace`,
    /// `destination.workload.namespace`).
    DestinationNamespace,
    /// `request.method`.
    RequestMethod,
    /// `request.path`: the path with its query string.
    RequestPath,
    /// `request.url_path`: the path without its query string (a match on it tests
    /// prefixes, as on `request.path`).
    RequestUrlPath,
    /// `request.headers["name"]`; the name is kept lower-case.
    RequestHeader(String),
}

impl AttributeRef {
    /// Parses one attribute name, e.g. `request.headers["x-user-id"]`.
    pub fn parse(text: &str) -> Result<AttributeRef, String> {
        let t = text.trim();
        if let Some(inner) = t
            .strip_prefix("request.headers[")
            .and_then(|r| r.strip_suffix(']'))
        {
            let name = unquote(inner.trim())
                .ok_or_else(|| format!("header name in {t:?} must be quoted"))?;
            if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                return Err(format!("{name:?} is not a valid header name"));
            }
            return Ok(AttributeRef::RequestHeader(name.to_ascii_lowercase()));
        }
        let attr = match t {
            "source.service" | "source.app" | "source.labels[\"app\"]" => Self::SourceService,
            "source.workload" | "source.workload.name" | "source.name" => Self::SourceWorkload,
            "source.version" | "source.labels[\"version\"]" => Self::SourceVersion,
            "source.namespace" | "source.workload.namespace" => Self::SourceNamespace,
            "source.principal" | "source.user" => Self::SourcePrincipal,
            "destination.service" | "destination.service.name" => Self::DestinationService,
            "destination.app" | "destination.labels[\"app\"]" => Self::DestinationApp,
            "destination.service.host" => Self::DestinationHost,
            "destination.workload" | "destination.workload.name" | "destination.name" => {
                Self::DestinationWorkload
            }
            "destination.version" | "destination.labels[\"version\"]" => Self::DestinationVersion,
            "destination.namespace"
            | "destination.service.namespace"
            | "destination.workload.namespace" => Self::DestinationNamespace,
            "request.method" => Self::RequestMethod,
            "request.path" => Self::RequestPath,
            "request.url_path" => Self::RequestUrlPath,
            other => return Err(format!("unknown attribute {other:?}")),
        };
        Ok(attr)
    }

    /// The attribute's value in `attrs`; empty when the request does not carry it.
    pub fn value<'a>(&self, attrs: &'a QuotaAttributes) -> &'a str {
        fn workload(w: &Option<Workload>) -> Option<&Workload> {
            w.as_ref()
        }
        let src = workload(&attrs.source);
        let dst = workload(&attrs.destination);
        match self {
            Self::SourceService => src.map_or("", |w| {
                if w.app.is_empty() {
                    &w.canonical_service
                } else {
                    &w.app
                }
            }),
            Self::SourceWorkload => src.map_or("", |w| &w.name),
            Self::SourceVersion => src.map_or("", |w| &w.version),
            Self::SourceNamespace => src.map_or("", |w| &w.namespace),
            Self::SourcePrincipal => src.map_or("", |w| &w.principal),
            Self::DestinationService => {
                if attrs.destination_service_name.is_empty() {
                    dst.map_or("", |w| &w.app)
                } else {
                    &attrs.destination_service_name
                }
            }
            Self::DestinationApp => dst.map_or("", |w| &w.app),
            Self::DestinationHost => &attrs.destination_service_host,
            Self::DestinationWorkload => dst.map_or("", |w| &w.name),
            Self::DestinationVersion => dst.map_or("", |w| &w.version),
            Self::DestinationNamespace => {
                if attrs.destination_service_namespace.is_empty() {
                    dst.map_or("", |w| &w.namespace)
                } else {
                    &attrs.destination_service_namespace
                }
            }
            Self::RequestMethod => &attrs.request_method,
            Self::RequestPath => &attrs.request_path,
            Self::RequestUrlPath => attrs
                .request_path
                .split_once('?')
                .map_or(attrs.request_path.as_str(), |(path, _)| path),
            Self::RequestHeader(name) => attrs.request_headers.get(name).map_or("", |v| v),
        }
    }

    /// The attribute a match on this one tests: meshtel matches test the destination's
    /// service for its app label (with Istio's conventions, one name) and the path with
    /// its query for the path without (prefixes of both are the same).
    pub fn as_matched(&self) -> &AttributeRef {
        match self {
            Self::DestinationApp => &Self::DestinationService,
            Self::RequestUrlPath => &Self::RequestPath,
            other => other,
        }
    }

    /// Whether this is the request path, with or without its query string (a match
    /// tests its prefix).
    pub fn is_path(&self) -> bool {
        matches!(self, Self::RequestPath | Self::RequestUrlPath)
    }

    /// The header this attribute reads, if it reads one.
    pub fn header_name(&self) -> Option<&str> {
        match self {
            Self::RequestHeader(name) => Some(name),
            _ => None,
        }
    }
}

impl fmt::Display for AttributeRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self {
            Self::SourceService => "source.service",
            Self::SourceWorkload => "source.workload",
            Self::SourceVersion => "source.version",
            Self::SourceNamespace => "source.namespace",
            Self::SourcePrincipal => "source.principal",
            Self::DestinationService => "destination.service",
            Self::DestinationApp => "destination.labels[\"app\"]",
            Self::DestinationHost => "destination.service.host",
            Self::DestinationWorkload => "destination.workload",
            Self::DestinationVersion => "destination.version",
            Self::DestinationNamespace => "destination.namespace",
            Self::RequestMethod => "request.method",
            Self::RequestPath => "request.path",
            Self::RequestUrlPath => "request.url_path",
            Self::RequestHeader(name) => return write!(f, "request.headers[\"{name}\"]"),
        };
        f.write_str(name)
    }
}

/// A dimension's value: the first non-empty attribute of a chain, else a literal
/// default (else `""`). Written `a | b | "default"`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DimensionExpr {
    /// Attributes tried in order.
    pub chain: Vec<AttributeRef>,
    /// The value when every attribute is empty.
    pub default: Option<String>,
}

impl DimensionExpr {
    /// Parses `attr | attr | "literal"`.
    pub fn parse(text: &str) -> Result<DimensionExpr, String> {
        let mut chain = Vec::new();
        let mut default = None;
        let parts: Vec<&str> = split_alternatives(text);
        if text.trim().is_empty() {
            return Err("expression is empty".to_string());
        }
        let last = parts.len() - 1;
        for (i, part) in parts.iter().enumerate() {
            let part = part.trim();
            if let Some(lit) = unquote(part) {
                if i != last {
                    return Err(format!(
                        "literal {part} must be the last alternative in {text:?}"
                    ));
                }
                default = Some(lit);
            } else {
                chain.push(AttributeRef::parse(part)?);
            }
        }
        if chain.is_empty() {
            return Err(format!("{text:?} names no attribute"));
        }
        Ok(DimensionExpr { chain, default })
    }

    /// Evaluates the expression against a request.
    pub fn eval<'a>(&'a self, attrs: &'a QuotaAttributes) -> &'a str {
        for attr in &self.chain {
            let v = attr.value(attrs);
            if !v.is_empty() {
                return v;
            }
        }
        self.default.as_deref().unwrap_or("")
    }
}

impl fmt::Display for DimensionExpr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, attr) in self.chain.iter().enumerate() {
            if i > 0 {
                f.write_str(" | ")?;
            }
            write!(f, "{attr}")?;
        }
        if let Some(d) = &self.default {
            write!(f, " | {}", serde_json::Value::String(d.clone()))?;
        }
        Ok(())
    }
}

/// Splits on `|` outside quotes.
fn split_alternatives(text: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let mut start = 0;
    let mut quote: Option<char> = None;
    for (i, c) in text.char_indices() {
        match (quote, c) {
            (None, '"' | '\'') => quote = Some(c),
            (Some(q), c) if c == q => quote = None,
            (None, '|') => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    parts
}

/// `"x"` or `'x'` → `x`.
fn unquote(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    if bytes.len() >= 2
        && (bytes[0] == b'"' || bytes[0] == b'\'')
        && bytes[bytes.len() - 1] == bytes[0]
    {
        return Some(text[1..text.len() - 1].to_string());
    }
    None
}

/// RFC 9110 token characters.
pub(crate) fn is_header_name_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attrs() -> QuotaAttributes {
        QuotaAttributes {
            source: Some(Workload {
                app: "reviews".into(),
                version: "v2".into(),
                ..Default::default()
            }),
            destination: Some(Workload {
                app: "ratings-app".into(),
                ..Default::default()
            }),
            destination_service_name: "ratings".into(),
            request_headers: [("x-user".to_string(), "alice".to_string())].into(),
            ..Default::default()
        }
    }

    #[test]
    fn chains_fall_back_to_the_literal() {
        let e = DimensionExpr::parse(r#"source.labels["app"] | "unknown""#).unwrap();
        assert_eq!(e.eval(&attrs()), "reviews");
        let e = DimensionExpr::parse(r#"destination.version | "unknown""#).unwrap();
        assert_eq!(e.eval(&attrs()), "unknown");
        // The label itself, as Mixer reads it, not the service the caller named.
        let e = DimensionExpr::parse(r#"destination.labels["app"] | destination.service.name"#)
            .unwrap();
        assert_eq!(e.eval(&attrs()), "ratings-app");
        assert_eq!(e.to_string(), r#"destination.labels["app"] | destination.service"#);
        let e = DimensionExpr::parse(r#"destination.service.name | "unknown""#).unwrap();
        assert_eq!(e.eval(&attrs()), "ratings");
        // request.url_path is the path without its query string.
        let with_query = QuotaAttributes {
            request_path: "/api?page=1".into(),
            ..attrs()
        };
        let e = DimensionExpr::parse("request.url_path").unwrap();
        assert_eq!(e.eval(&with_query), "/api");
        assert_eq!(e.to_string(), "request.url_path");
        let e = DimensionExpr::parse("request.path").unwrap();
        assert_eq!(e.eval(&with_query), "/api?page=1");
        let e = DimensionExpr::parse(r#"request.headers["X-User"]"#).unwrap();
        assert_eq!(e.eval(&attrs()), "alice");
        assert_eq!(e.to_string(), r#"request.headers["x-user"]"#);
    }

    #[test]
    fn bad_expressions_say_why() {
        assert!(DimensionExpr::parse("").unwrap_err().contains("empty"));
        assert!(DimensionExpr::parse("source.colour").unwrap_err().contains("unknown attribute"));
        assert!(DimensionExpr::parse(r#""a" | source.service"#).unwrap_err().contains("last"));
        assert!(DimensionExpr::parse("request.headers[x]").unwrap_err().contains("quoted"));
        assert!(DimensionExpr::parse(r#""only""#).unwrap_err().contains("no attribute"));
    }
}
