//! CORS for the ingest endpoints a web page exports to (`POST /v1/traces`, `POST
//! /api/v2/spans`), so that the OpenTelemetry JS SDK or zipkin-js in a browser can send
//! spans from the page's own origin. Off unless origins are configured, as the
//! OpenTelemetry Collector's `cors.allowed_origins` is: with none, no answer carries a
//! CORS header and a preflight is refused (405), so a page the engineer visits cannot
//! post JSON there. The query port never answers CORS: its data stays same-origin.
//!
//! ```toml
//! [ingest.cors]
//! allowed_origins = ["https://shop.example.com", "https://*.example.com", "http://localhost:3000"]
//! allowed_headers = ["x-tenant"]   # besides Accept, Accept-Language, Content-Language, Content-Type, Content-Encoding
//! max_age = "2h"                   # how long a browser may reuse a preflight's answer
//! ```

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::IntoResponse;
use axum::routing::MethodRouter;
use meshtel_model::log_window::Throttled;
use serde::{Deserialize, Serialize};
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};

use crate::error::{Error, Result};

/// Which web origins may post spans from a browser.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CorsConfig {
    /// Origins (`scheme://host[:port]`) allowed to post spans; one `*` in an entry
    /// stands for any characters (`https://*.example.com`), and `"*"` alone for every
    /// origin. Empty (the default): CORS off.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Request headers a page may send besides the CORS-safelisted ones,
    /// `Content-Type` and `Content-Encoding` (`Accept`, `Accept-Language`,
    /// `Content-Language`); with none, `X-Requested-With` too; `"*"`: any.
    #[serde(default)]
    pub allowed_headers: Vec<String>,
    /// How long a browser may cache a preflight's answer (`Access-Control-Max-Age`);
    /// `0s` (the default): not sent, and browsers keep it a few seconds.
    #[serde(default, with = "crate::quota::config::duration_text")]
    pub max_age: Duration,
}

/// Headers a page may always send: the CORS-safelisted request headers, `Content-Type`
/// of any value (OTLP's `application/json` and `application/x-protobuf`) and
/// `Content-Encoding` (an exporter's gzip).
const ALWAYS_ALLOWED: [HeaderName; 5] = [
    header::ACCEPT,
    header::ACCEPT_LANGUAGE,
    header::CONTENT_LANGUAGE,
    header::CONTENT_TYPE,
    header::CONTENT_ENCODING,
];

impl CorsConfig {
    /// Every origin and header must read as one, and the other settings need origins.
    pub fn validate(&self) -> Result<()> {
        if self.allowed_origins.is_empty()
            && (!self.allowed_headers.is_empty() || !self.max_age.is_zero())
        {
            return Err(Error::InvalidConfig(
                "[ingest.cors] allowed_headers and max_age take effect only with \
                 allowed_origins, which is empty (CORS off)"
                    .into(),
            ));
        }
        for origin in &self.allowed_origins {
            if let Err(why) = check_origin(origin) {
                return Err(Error::InvalidConfig(format!(
                    "[ingest.cors] allowed_origins: {origin:?} {why} (an origin is \
                     scheme://host[:port], e.g. \"https://app.example.com\", with at most \
                     one \"*\", or \"*\" alone for every origin)"
                )));
            }
        }
        for name in &self.allowed_headers {
            if name != "*" && HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Error::InvalidConfig(format!(
                    "[ingest.cors] allowed_headers: {name:?} is not a header name"
                )));
            }
        }
        Ok(())
    }

    /// `route` with CORS when origins are allowed: preflights answered, answers marked
    /// for allowed origins, and a post that names another origin refused (403). A page
    /// can send a post no preflight precedes (a `text/plain` body, which the Zipkin
    /// port reads as JSON, as Zipkin does): once origins are named, those are the only
    /// ones whose pages may write. Requests without an `Origin` (every exporter that
    /// is not a browser) are not concerned.
    pub fn apply<S>(&self, route: MethodRouter<S>) -> MethodRouter<S>
    where
        S: Clone + Send + Sync + 'static,
    {
        let Some(cors) = self.layer() else {
            return route;
        };
        let patterns = self.patterns();
        // Told at most once per interval: a page the list leaves out keeps posting.
        let refusals = Throttled::new(|refused, last_origin: &str| {
            tracing::info!(
                refused,
                last_origin,
                at_most_every = "10s",
                "posts refused (403) for an origin not in [ingest.cors] allowed_origins, since the last line"
            );
        });
        let guard = axum::middleware::from_fn(move |request: Request, next: Next| {
            let refused = request
                .headers()
                .get(header::ORIGIN)
                .filter(|origin| !patterns.allows(origin))
                .map(|origin| String::from_utf8_lossy(origin.as_bytes()).into_owned());
            if let Some(origin) = &refused {
                refusals.note(format_args!("{:.64}", origin));
            }
            async move {
                match refused {
                    Some(origin) => (
                        StatusCode::FORBIDDEN,
                        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
                        format!(
                            "origin {:?} is not in [ingest.cors] allowed_origins",
                            origin.chars().take(64).collect::<String>()
                        ),
                    )
                        .into_response(),
                    None => next.run(request).await,
                }
            }
        });
        route
            .layer::<_, std::convert::Infallible>(guard)
            .layer::<_, std::convert::Infallible>(cors)
    }

    fn patterns(&self) -> Arc<Patterns> {
        Arc::new(Patterns(
            self.allowed_origins
                .iter()
                .map(|o| Pattern::of(o))
                .collect(),
        ))
    }

    /// The layer answering preflights and marking answers for allowed origins; `None`
    /// when no origin is allowed.
    fn layer(&self) -> Option<CorsLayer> {
        if self.allowed_origins.is_empty() {
            return None;
        }
        let patterns = self.patterns();
        let origin = AllowOrigin::predicate(move |origin: &HeaderValue, _| patterns.allows(origin));
        let headers = if self.allowed_headers.iter().any(|h| h == "*") {
            AllowHeaders::mirror_request()
        } else {
            let mut names: Vec<HeaderName> = ALWAYS_ALLOWED.to_vec();
            if self.allowed_headers.is_empty() {
                names.push(HeaderName::from_static("x-requested-with"));
            }
            names.extend(
                self.allowed_headers
                    .iter()
                    .filter_map(|name| HeaderName::from_bytes(name.as_bytes()).ok()),
            );
            AllowHeaders::list(names)
        };
        let mut layer = CorsLayer::new()
            .allow_origin(origin)
            .allow_methods([Method::POST])
            .allow_headers(headers)
            // Credentialed requests too (`navigator.sendBeacon`, which OpenTelemetry
            // JS's older browser exporters use, and `fetch` with `credentials:
            // "include"`), as the OpenTelemetry Collector allows them: nothing here
            // reads a cookie, and the answer names the origin, never `*`.
            .allow_credentials(true)
            // An exporter told to come back later can read when.
            .expose_headers([header::RETRY_AFTER]);
        if !self.max_age.is_zero() {
            layer = layer.max_age(self.max_age);
        }
        Some(layer)
    }
}

/// Why `origin` is not an origin pattern.
fn check_origin(origin: &str) -> std::result::Result<(), &'static str> {
    if origin == "*" {
        return Ok(());
    }
    if origin.matches('*').count() > 1 {
        return Err("has more than one \"*\"");
    }
    let Some((scheme, rest)) = origin.split_once("://") else {
        return Err("has no scheme");
    };
    if scheme.is_empty()
        || !scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
    {
        return Err("has no valid scheme");
    }
    if rest.is_empty() || rest.contains(['/', '?', '#']) {
        return Err("is not scheme://host[:port] (no path, no trailing slash)");
    }
    // The host, then `:port` or nothing (an IPv6 host's colons are inside its brackets).
    let after_host = match rest.strip_prefix('[') {
        Some(inside) => match inside.split_once(']') {
            Some((_, after)) => after,
            None => return Err("has an IPv6 host without its closing \"]\""),
        },
        None if rest.contains([']', '[']) => return Err("has a bracket outside an IPv6 host"),
        None => rest.find(':').map_or("", |at| &rest[at..]),
    };
    let port = match after_host {
        "" => None,
        after => match after.strip_prefix(':') {
            Some(port) => Some(port),
            None => return Err("has something after its host that is not :port"),
        },
    };
    if let Some(port) = port {
        // As a browser writes it: digits, 1 to 65535, no leading zero.
        let number = port.parse::<u16>().ok().filter(|n| {
            *n > 0 && !port.starts_with('0') && port.bytes().all(|b| b.is_ascii_digit())
        });
        if port != "*" && number.is_none() {
            return Err(
                "has a port that is not a number from 1 to 65535 as browsers write it (or \"*\")",
            );
        }
        let default = match scheme.to_ascii_lowercase().as_str() {
            "http" => Some("80"),
            "https" => Some("443"),
            _ => None,
        };
        if default == Some(port) {
            return Err(
                "names its scheme's default port, which browsers leave out of the origin they send: write it without",
            );
        }
    }
    if origin.contains(|c: char| c.is_whitespace() || c.is_control()) {
        return Err("holds white space");
    }
    Ok(())
}

/// The allowed origins.
struct Patterns(Vec<Pattern>);

impl Patterns {
    fn allows(&self, origin: &HeaderValue) -> bool {
        origin
            .to_str()
            .is_ok_and(|origin| self.0.iter().any(|p| p.matches(origin)))
    }
}

/// An allowed origin: matched exactly, or around its one `*`.
enum Pattern {
    Any,
    Exact(String),
    Around(String, String),
}

impl Pattern {
    fn of(origin: &str) -> Pattern {
        match origin.split_once('*') {
            None => Pattern::Exact(origin.to_ascii_lowercase()),
            Some(("", "")) => Pattern::Any,
            Some((before, after)) => {
                Pattern::Around(before.to_ascii_lowercase(), after.to_ascii_lowercase())
            }
        }
    }

    fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        match self {
            Pattern::Any => true,
            Pattern::Exact(exact) => origin == *exact,
            // What the `*` stands for holds no `/`: it stays within the host. Any port
            // (`:*`) is the scheme's default too, which browsers leave out.
            Pattern::Around(before, after) => {
                origin
                    .strip_prefix(before.as_str())
                    .and_then(|rest| rest.strip_suffix(after.as_str()))
                    .is_some_and(|middle| !middle.contains('/'))
                    || (after.is_empty() && before.strip_suffix(':') == Some(origin.as_str()))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_match_exactly_or_around_their_wildcard() {
        let exact = Pattern::of("https://App.example.com");
        assert!(exact.matches("https://app.example.com"));
        assert!(!exact.matches("https://app.example.com:8443"));
        assert!(!exact.matches("http://app.example.com"));
        let any_port = Pattern::of("http://localhost:*");
        assert!(any_port.matches("http://localhost:3000"));
        assert!(any_port.matches("http://localhost"), "the default port");
        assert!(!any_port.matches("http://localhost.evil.test"));
        let sub = Pattern::of("https://*.example.com");
        assert!(sub.matches("https://shop.example.com"));
        assert!(sub.matches("https://a.b.example.com"));
        assert!(!sub.matches("https://example.com"));
        assert!(!sub.matches("https://evil.com/.example.com"));
        assert!(!sub.matches("https://shop.example.com.evil.net"));
        assert!(Pattern::of("*").matches("null"));
    }

    #[test]
    fn origins_that_are_not_origins_are_refused_by_name() {
        for (origin, says) in [
            ("app.example.com", "no scheme"),
            ("https://app.example.com/", "no path"),
            ("https://*.*.example.com", "more than one"),
            ("://x", "no valid scheme"),
            ("https://shop.example.com:443", "default port"),
            ("http://localhost:80", "default port"),
            ("https://x:abc", "not a number"),
            ("http://localhost:0080", "not a number"),
            ("http://localhost:99999", "not a number"),
            ("http://[::1", "closing"),
            ("http://localhost:+80", "not a number"),
            ("http://a:1:2", "not a number"),
            ("http://::1]:3000", "bracket"),
            ("http://[::1]x:3000", "not :port"),
        ] {
            let config = CorsConfig {
                allowed_origins: vec![origin.into()],
                ..CorsConfig::default()
            };
            let error = config.validate().unwrap_err().to_string();
            assert!(
                error.contains(origin) && error.contains(says),
                "{origin}: {error}"
            );
        }
        let config = CorsConfig {
            allowed_origins: vec!["*".into(), "http://localhost:3000".into()],
            allowed_headers: vec!["x-tenant".into(), "*".into()],
            max_age: Duration::from_secs(60),
        };
        assert!(config.validate().is_ok());
        let config = CorsConfig {
            allowed_origins: vec!["http://[::1]:3000".into(), "http://localhost:*".into()],
            allowed_headers: vec!["bad header".into()],
            ..CorsConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("bad header"), "{error}");
        let config = CorsConfig {
            allowed_headers: vec!["x-tenant".into()],
            ..CorsConfig::default()
        };
        let error = config.validate().unwrap_err().to_string();
        assert!(error.contains("only with allowed_origins"), "{error}");
    }
}
