//! How long a gRPC call may take and stay silent, as Istio's sidecars allow it.
//!
//! A gRPC client says how long it will wait in `grpc-timeout`, and long-lived streams
//! (watches, subscriptions, chat) may stay silent between messages for minutes. Istio
//! configures its routes with no timeout and `maxGrpcTimeout: 0s`: the header is the
//! call's timeout, with no cap, and a call without one is not cut; a route `timeout`
//! caps both. Its inbound listener has no stream idle timeout, and Envoy's default
//! elsewhere is 5 minutes. The proxy's defaults for plain HTTP (`--request-timeout`
//! 15 s, `--body-idle-timeout` 30 s) would cut such calls short.

use std::time::Duration;

use http::HeaderMap;

use super::ProxyContext;
use crate::telemetry::Exchange;

/// The least body idle timeout a gRPC stream gets (Envoy's stream idle timeout).
pub const GRPC_MIN_BODY_IDLE: Duration = Duration::from_secs(300);

/// The timeout a client asks for in `grpc-timeout` (1 to 8 digits and a unit: `H`,
/// `M`, `S`, `m`, `u`, `n`), if it sends a valid one other than zero.
pub fn grpc_timeout(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get("grpc-timeout")?.as_bytes();
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let amount: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    // Zero is no deadline, as Envoy reads it when a route caps gRPC timeouts.
    if amount == 0 {
        return None;
    }
    Some(match unit {
        b'H' => Duration::from_secs(amount * 3600),
        b'M' => Duration::from_secs(amount * 60),
        b'S' => Duration::from_secs(amount),
        b'm' => Duration::from_millis(amount),
        b'u' => Duration::from_micros(amount),
        b'n' => Duration::from_nanos(amount),
        _ => return None,
    })
}

/// The wait for an upstream's response headers: `route` is the route's `timeout`
/// (`Some(0s)`: none), `default` the proxy's `--request-timeout`. A gRPC call waits as
/// long as its `grpc-timeout` says, capped by a route timeout; without the header, the
/// route timeout or none.
pub fn request_timeout(route: Option<Duration>, default: Option<Duration>, grpc: bool, headers: &HeaderMap) -> Option<Duration> {
    let cap = route.filter(|t| !t.is_zero());
    if !grpc {
        return if route.is_some() { cap } else { default };
    }
    match (grpc_timeout(headers), cap) {
        (Some(asked), Some(cap)) => Some(asked.min(cap)),
        (asked, cap) => asked.or(cap),
    }
}

/// Writes `timeout` into a gRPC call's `grpc-timeout` when it is shorter than what the
/// client asked (a route timeout capped it), as Envoy does, so that the app works to
/// the deadline the call really has. In milliseconds, or seconds past 8 digits of them.
pub fn cap_grpc_timeout(headers: &mut HeaderMap, timeout: Option<Duration>) {
    let (Some(timeout), Some(asked)) = (timeout, grpc_timeout(headers)) else {
        return;
    };
    if timeout >= asked {
        return;
    }
    let millis = timeout.as_millis().max(1);
    let value = if millis <= 99_999_999 { format!("{millis}m") } else { format!("{}S", timeout.as_secs().min(99_999_999)) };
    if let Ok(value) = http::HeaderValue::from_str(&value) {
        headers.insert("grpc-timeout", value);
    }
}

impl ProxyContext {
    /// The body idle timeout of `exchange`: `--body-idle-timeout`, and at least
    /// [`GRPC_MIN_BODY_IDLE`] for a gRPC stream (`None`, none, stays none).
    pub fn body_idle_timeout_for(&self, exchange: &Exchange) -> Option<Duration> {
        body_idle_timeout(self.body_idle_timeout, exchange.is_h2_grpc())
    }
}

fn body_idle_timeout(configured: Option<Duration>, grpc: bool) -> Option<Duration> {
    match configured {
        Some(idle) if grpc => Some(idle.max(GRPC_MIN_BODY_IDLE)),
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn with_timeout(value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert("grpc-timeout", HeaderValue::from_str(value).expect("header value"));
        headers
    }

    #[test]
    fn grpc_timeouts_are_read_in_every_unit_and_bad_ones_ignored() {
        for (value, expected) in [
            ("1H", Some(Duration::from_secs(3600))),
            ("2M", Some(Duration::from_secs(120))),
            ("30S", Some(Duration::from_secs(30))),
            ("99999999m", Some(Duration::from_millis(99_999_999))),
            ("250u", Some(Duration::from_micros(250))),
            ("7n", Some(Duration::from_nanos(7))),
            ("0S", None),
            ("00000000m", None),
            ("123456789S", None),
            ("S", None),
            ("10s", None),
            ("-1S", None),
            ("1.5S", None),
        ] {
            assert_eq!(grpc_timeout(&with_timeout(value)), expected, "{value}");
        }
        assert_eq!(grpc_timeout(&HeaderMap::new()), None);
    }

    #[test]
    fn a_grpc_call_waits_as_its_client_asks_capped_by_the_route() {
        let fifteen = Some(Duration::from_secs(15));
        let asked = with_timeout("30S");
        let none = HeaderMap::new();
        // Plain HTTP: the route's timeout, else the proxy's; `0s` on the route is none.
        assert_eq!(request_timeout(None, fifteen, false, &asked), fifteen);
        assert_eq!(request_timeout(Some(Duration::from_secs(2)), fifteen, false, &none), Some(Duration::from_secs(2)));
        assert_eq!(request_timeout(Some(Duration::ZERO), fifteen, false, &none), None);
        // gRPC: the header, uncapped by the proxy's default; none without it.
        assert_eq!(request_timeout(None, fifteen, true, &asked), Some(Duration::from_secs(30)));
        assert_eq!(request_timeout(None, fifteen, true, &none), None);
        // A route timeout caps the header, and stands alone without it.
        assert_eq!(request_timeout(Some(Duration::from_secs(5)), fifteen, true, &asked), Some(Duration::from_secs(5)));
        assert_eq!(request_timeout(Some(Duration::from_secs(60)), fifteen, true, &asked), Some(Duration::from_secs(30)));
        assert_eq!(request_timeout(Some(Duration::from_secs(5)), fifteen, true, &none), Some(Duration::from_secs(5)));
        assert_eq!(request_timeout(Some(Duration::ZERO), fifteen, true, &asked), Some(Duration::from_secs(30)));
    }

    #[test]
    fn a_capped_deadline_is_written_into_the_header_the_app_reads() {
        let capped = |asked: &str, timeout: Option<Duration>| {
            let mut headers = with_timeout(asked);
            cap_grpc_timeout(&mut headers, timeout);
            headers["grpc-timeout"].to_str().expect("ascii").to_owned()
        };
        assert_eq!(capped("10S", Some(Duration::from_secs(3))), "3000m");
        assert_eq!(capped("1S", Some(Duration::from_secs(3))), "1S", "shorter than the cap: as sent");
        assert_eq!(capped("10S", None), "10S");
        assert_eq!(capped("99999999H", Some(Duration::from_secs(200_000))), "200000S");
        let mut none = HeaderMap::new();
        cap_grpc_timeout(&mut none, Some(Duration::from_secs(3)));
        assert!(none.get("grpc-timeout").is_none(), "no header is added");
    }

    #[test]
    fn a_grpc_stream_may_stay_silent_for_envoys_stream_idle_timeout() {
        let thirty = Some(Duration::from_secs(30));
        assert_eq!(body_idle_timeout(thirty, false), thirty);
        assert_eq!(body_idle_timeout(thirty, true), Some(GRPC_MIN_BODY_IDLE));
        assert_eq!(body_idle_timeout(Some(Duration::from_secs(900)), true), Some(Duration::from_secs(900)));
        assert_eq!(body_idle_timeout(None, true), None);
    }
}
