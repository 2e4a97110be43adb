//! Header hygiene on the request as the proxy receives it, before any stage reads or
//! adds a header, and on the upstream's response before the proxy adds its own:
//!
//! ```text
//!  received ──► Host: one (HTTP/1.1: required), valid; an absolute-form target's authority replaces it
//!           ──► hop-by-hop headers out (Connection names only what its sender sent)
//!           ──► identity, routing, trace context, x-request-id: the proxy's own, kept
//! ```
//!
//! `Connection` is a message's sender speaking of its own connection (RFC 9110
//! §7.6.1): the headers it names are the sender's, so they are removed before the
//! proxy writes its identity and trace headers, never after (an app could otherwise
//! name `x-meshtel-peer-workload` and pass as unknown). Responses are stripped in
//! `respond` before the route's response header operations, for the same reason.

use http::header::{CONNECTION, CONTENT_LENGTH, EXPECT, HOST, HeaderName, HeaderValue, TE, TRANSFER_ENCODING, UPGRADE};
use http::{HeaderMap, Request, Version};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;

use super::{X_REQUEST_ID, new_request_id, path, upgrade};
use crate::error::Error;
use crate::telemetry::{Exchange, HostFault};

/// Hop-by-hop headers without a constant in `http`.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
/// See [`KEEP_ALIVE`].
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
/// The scheme the caller's request came in with.
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// The first stage of both pipelines, on the request as received: a repeated, invalid
/// or (HTTP/1.1) missing `Host` is refused (400 `DPE`, RFC 9112 §3.2); an HTTP/1 absolute-form
/// target's authority becomes the one `Host` (§3.2.2), as routing reads it; hop-by-hop
/// headers go. An HTTP/1.1 WebSocket upgrade keeps `Upgrade` and
/// `Connection: upgrade`, and its downstream connection's upgrade is returned.
pub(super) fn receive_request(request: &mut Request<Incoming>, exchange: &Exchange) -> Result<Option<OnUpgrade>, Error> {
    match exchange.host_fault() {
        Some(HostFault::Repeated) => return Err(Error::RepeatedHost),
        Some(HostFault::Invalid) => return Err(Error::InvalidHost),
        Some(HostFault::Missing) => return Err(Error::MissingHost),
        None => {}
    }
    if request.method() == http::Method::CONNECT {
        return Err(Error::Connect);
    }
    // One pass over the names (most requests have neither) rather than two lookups.
    let (mut transfer_encoding, mut expect) = (false, false);
    for name in request.headers().keys() {
        transfer_encoding |= name == TRANSFER_ENCODING;
        expect |= name == EXPECT;
    }
    if transfer_encoding && let Some(coding) = unsupported_transfer_coding(request.headers()) {
        return Err(Error::TransferCoding(coding));
    }
    // The proxy answers `Expect: 100-continue` itself (hyper sends the 100 once the
    // body is read), as Envoy does: the upstream is not asked again.
    if expect && request.headers().get(EXPECT).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue")) {
        request.headers_mut().remove(EXPECT);
    }
    let version = request.version();
    // HTTP/1.1's parser trims a field value; HTTP/2's hands it over as sent, and a
    // value that begins or ends with whitespace is malformed (RFC 9113 §8.2.1), as
    // Envoy refuses it: matched as it is, " free" would escape a match on "free".
    if version == Version::HTTP_2
        && let Some(name) = request.headers().iter().find_map(|(name, value)| padded(value.as_bytes()).then(|| name.clone()))
    {
        return Err(Error::HeaderWhitespace(name));
    }
    if version != Version::HTTP_2 && request.uri().authority().is_some() {
        if request.uri().scheme().is_none() {
            return Err(Error::AuthorityForm);
        }
        request.headers_mut().insert(HOST, exchange.authority_header().clone());
    }
    // Routing, quota matching and the upstream see the normalized path.
    if let Some(path) = path::normalize(request.uri().path()).map_err(|_| Error::EscapedNul)? {
        let mut parts = request.uri().clone().into_parts();
        let target = match request.uri().query() {
            Some(query) => format!("{path}?{query}"),
            None => path,
        };
        parts.path_and_query = Some(target.parse().map_err(|e: http::uri::InvalidUri| Error::BadUpstreamRequest(e.into()))?);
        *request.uri_mut() = http::Uri::from_parts(parts).map_err(|e| Error::BadUpstreamRequest(e.into()))?;
    }
    // As Envoy's connection manager: the scheme the request came in with, when the
    // caller did not say (plain text here; TLS is not terminated by the proxy).
    if !request.headers().contains_key(X_FORWARDED_PROTO) {
        request.headers_mut().insert(X_FORWARDED_PROTO, HeaderValue::from_static("http"));
    }
    let websocket = strip_hop_by_hop_headers(request.headers_mut(), version == Version::HTTP_11);
    Ok(if websocket { request.extensions_mut().remove::<OnUpgrade>() } else { None })
}

/// Whether a field value begins or ends with a space or a tab.
fn padded(value: &[u8]) -> bool {
    matches!(value.first(), Some(b' ' | b'\t')) || matches!(value.last(), Some(b' ' | b'\t'))
}

/// A transfer coding of the request other than `chunked` (`gzip, chunked`), which
/// the proxy cannot pass on: it forwards the body de-chunked, under its own framing.
fn unsupported_transfer_coding(headers: &HeaderMap) -> Option<String> {
    headers
        .get_all(TRANSFER_ENCODING)
        .iter()
        .flat_map(|value| value.to_str().unwrap_or("?").split(','))
        .map(str::trim)
        .find(|coding| !coding.eq_ignore_ascii_case("chunked"))
        .map(str::to_owned)
}

/// Notes the request's `x-request-id`, adding one when absent (or not text).
pub(super) fn ensure_request_id(headers: &mut HeaderMap, exchange: &mut Exchange) {
    match headers.get(X_REQUEST_ID) {
        Some(id) if !id.is_empty() && id.to_str().is_ok() => exchange.request_id = Some(id.clone()),
        _ => {
            if let Ok(value) = HeaderValue::from_bytes(&new_request_id()) {
                headers.insert(X_REQUEST_ID, value.clone());
                exchange.request_id = Some(value);
            }
        }
    }
}

/// RFC 9110 §7.6.1: `Connection` and every header it names (except `Host`),
/// `Keep-Alive`, `Proxy-Connection`, `Transfer-Encoding`, `Upgrade`, and `TE` unless it
/// is just `trailers` (which gRPC needs end to end). Run on headers as received, before
/// the proxy adds any: `Connection` speaks only of its sender's own.
pub fn remove_hop_by_hop_headers(headers: &mut HeaderMap) {
    strip_hop_by_hop_headers(headers, false);
}

/// [`remove_hop_by_hop_headers`], except that with `websocket` an HTTP/1.1 WebSocket
/// upgrade (`Connection: upgrade`, `Upgrade: websocket`) keeps those two headers;
/// returns whether it did.
pub(super) fn strip_hop_by_hop_headers(headers: &mut HeaderMap, websocket: bool) -> bool {
    // One pass over the names says which are present: most requests carry none, and
    // most HTTP/1.1 responses only `Connection: keep-alive`.
    let (mut connection, mut te, mut others, mut upgrade) = (false, false, false, false);
    for name in headers.keys() {
        if name == CONNECTION {
            connection = true;
        } else if name == TE {
            te = true;
        } else if name == UPGRADE {
            (others, upgrade) = (true, true);
        } else if name == TRANSFER_ENCODING || matches!(name.as_str(), "keep-alive" | "proxy-connection") {
            others = true;
        }
    }
    let kept = if websocket && upgrade && connection { upgrade::websocket_upgrade(headers) } else { None };
    if connection && connection_names_no_header(headers) {
        // The usual case (`Connection: keep-alive` or `close`): nothing else to remove.
        headers.remove(CONNECTION);
    } else if connection && let http::header::Entry::Occupied(entry) = headers.entry(CONNECTION) {
        // The headers `Connection` names; its usual tokens name no header to remove
        // (`keep-alive`, the header, is removed below with the others).
        let mut named = Vec::new();
        for value in entry.remove_entry_mult().1 {
            let Ok(value) = value.to_str() else { continue };
            for token in value.split(',').map(str::trim) {
                if !token.eq_ignore_ascii_case("keep-alive")
                    && !token.eq_ignore_ascii_case("close")
                    && let Ok(name) = HeaderName::from_bytes(token.as_bytes())
                {
                    named.push(name);
                }
            }
        }
        for name in named {
            // `TE: trailers` is handled below; `Host` is end to end whatever a
            // sender says (the request's target, RFC 9110 §7.2).
            if name != TE && name != HOST {
                headers.remove(&name);
            }
        }
    }
    if others {
        headers.remove(KEEP_ALIVE);
        headers.remove(PROXY_CONNECTION);
        if headers.remove(TRANSFER_ENCODING).is_some() {
            // The message was framed by its transfer coding, not by a Content-Length
            // sent beside it, which a proxy must remove (RFC 9112 §6.3): sent on, it
            // would cut the body at its length.
            headers.remove(CONTENT_LENGTH);
        }
        headers.remove(UPGRADE);
    }
    if te && let Some(value) = headers.get(TE) {
        let trailers = value
            .to_str()
            .is_ok_and(|v| v.split(',').any(|part| part.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("trailers"))));
        if trailers {
            headers.insert(TE, HeaderValue::from_static("trailers"));
        } else {
            headers.remove(TE);
        }
    }
    match kept {
        Some(value) => {
            headers.insert(UPGRADE, value);
            headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
            true
        }
        None => false,
    }
}

/// Whether `headers` has one `Connection` value, `keep-alive` or `close`: tokens that
/// name no header to remove.
fn connection_names_no_header(headers: &HeaderMap) -> bool {
    let mut values = headers.get_all(CONNECTION).iter();
    match (values.next(), values.next()) {
        (Some(value), None) => {
            let value = value.as_bytes();
            value.eq_ignore_ascii_case(b"keep-alive") || value.eq_ignore_ascii_case(b"close")
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests;
