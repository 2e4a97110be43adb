//! Whether a request names a loopback host: the DNS rebinding guard of every listener
//! bound to a loopback address (meshtel's HTTP listeners, the proxy's admin port). A
//! page on another site can point a name it controls at 127.0.0.1 and talk to such a
//! listener as its own origin; requests it sends that way name its host, not ours.

use std::net::IpAddr;

/// The host of a `Host` header value or an authority: without its port, and without
/// the brackets of an IPv6 address.
pub fn host_of(value: &str) -> &str {
    let value = value.trim();
    if let Some(rest) = value.strip_prefix('[') {
        // `[address]` or `[address]:port`; anything else after the bracket is not a
        // host this way, and stays whole (it then names no loopback host).
        return match rest.split_once(']') {
            Some((address, "")) => address,
            Some((address, port))
                if port
                    .strip_prefix(':')
                    .is_some_and(|p| p.bytes().all(|b| b.is_ascii_digit())) =>
            {
                address
            }
            _ => value,
        };
    }
    match value.rsplit_once(':') {
        Some((host, port)) if port.bytes().all(|b| b.is_ascii_digit()) => host,
        _ => value,
    }
}

/// The host a request names: its authority (HTTP/2 `:authority`, an absolute-form
/// target), else its `Host` header, without port. `None` when it names none (browsers
/// always do); `Some(Err(()))` when the `Host` header is not text.
pub fn requested_host<B>(request: &http::Request<B>) -> Option<Result<&str, ()>> {
    if let Some(authority) = request.uri().authority() {
        // Read as a `Host` value is: `Authority::host` would take `[::1]x.evil.test`
        // for `[::1]`.
        return Some(Ok(host_of(authority.as_str())));
    }
    let value = request.headers().get(http::header::HOST)?;
    Some(value.to_str().map(host_of).map_err(|_| ()))
}

/// `host` (without port) in the form requests compare: lower case, no brackets, no
/// trailing dot.
pub fn normalize(host: &str) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase()
}

/// `localhost`, a name under `.localhost` (RFC 6761), or a loopback address.
pub fn is_loopback(host: &str) -> bool {
    let host = normalize(host);
    host == "localhost"
        || host.ends_with(".localhost")
        // `::ffff:127.0.0.1` is an IPv4 loopback address too.
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.to_canonical().is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_names_and_addresses() {
        for host in [
            "localhost",
            "LOCALHOST",
            "app.localhost",
            "localhost.",
            "127.0.0.1",
            "127.1.2.3",
            "::1",
            "[::1]",
            "[::ffff:127.0.0.1]",
        ] {
            assert!(is_loopback(host), "{host}");
        }
        for host in [
            "rebind.attacker.test",
            "10.0.0.1",
            "localhost.attacker.test",
            "0.0.0.0",
            "::ffff:10.0.0.1",
        ] {
            assert!(!is_loopback(host), "{host}");
        }
    }

    #[test]
    fn host_headers_lose_their_port() {
        assert_eq!(host_of("localhost:16686"), "localhost");
        assert_eq!(host_of("[::1]:16686"), "::1");
        assert_eq!(host_of("[::1]"), "::1");
        // An authority (HTTP/2, an absolute-form target) is read the same way.
        for (target, loopback) in [
            ("http://[::1]x.attacker.test/x", false),
            ("http://[::1]:1234/x", true),
            ("http://localhost/x", true),
        ] {
            let request = http::Request::get(target).body(()).unwrap();
            let host = requested_host(&request).unwrap().unwrap();
            assert_eq!(is_loopback(host), loopback, "{target}: {host}");
        }
        // Not a bracketed address and a port: kept whole, so not loopback.
        assert_eq!(host_of("[::1]x.attacker.test"), "[::1]x.attacker.test");
        assert!(!is_loopback(host_of("[::1]x.attacker.test")));
        assert_eq!(host_of("rebind.attacker.test"), "rebind.attacker.test");
    }
}
