//! Denied requests become local replies, as Envoy's rate limit filter sends them
//! (mesh.md §4.2): `429` with flag `RL` and `x-envoy-ratelimited: true` when a quota
//! is exhausted (gRPC callers: HTTP 200, `grpc-status: 8` RESOURCE_EXHAUSTED, like
//! `rate_limited_as_resource_exhausted`), and `500` with flag `RLSE` when the
//! collector could not answer and `--quota-fail-closed` is set (gRPC: status 2
//! UNKNOWN, Envoy's mapping of 500).

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Response, StatusCode};

use crate::body::ResponseBody;
use crate::forward::{LocalReply, ProxyContext, local_reply};
use crate::telemetry::Exchange;

/// Response flag of a request denied by a quota.
pub const FLAG_RATE_LIMITED: &str = "RL";
/// Response flag of a request denied because the quota check failed (fail-closed).
pub const FLAG_RATE_LIMIT_SERVICE_ERROR: &str = "RLSE";

/// One matched quota's state when a request is denied, for the `x-ratelimit-*`
/// headers (Envoy's `DescriptorStatus` with a `current_limit`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitStatus {
    /// The quota (policy) name.
    pub name: String,
    /// Its limit per window.
    pub limit: u64,
    /// Its window.
    pub window: Duration,
    /// What is left of it.
    pub remaining: u64,
    /// Until the window resets, or a token bucket is full again (zero when the proxy
    /// does not know): `x-ratelimit-reset`.
    pub reset: Duration,
    /// Until a request it denied may pass: `retry-after`. The same as `reset` for
    /// windows of one unit per request; shorter for a token bucket, which has room for
    /// a request again long before it is full.
    pub retry: Duration,
    /// This quota denied the request (others matched it and had room, or are shadow).
    pub denied: bool,
}

/// Why a request is not forwarded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denial {
    /// One or more quotas are exhausted: 429 `RL`.
    Exhausted {
        /// Every matched quota with a limit, in policy order; at least one denied.
        statuses: Vec<LimitStatus>,
    },
    /// The collector could not answer and the proxy fails closed: 500 `RLSE`.
    CheckFailed,
}

/// The three `x-ratelimit-*` header values (IETF draft 03, as Envoy computes them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitHeaders {
    /// `x-ratelimit-limit`: `<limit>, <limit>;w=<window s>;name="<quota>"` per quota.
    pub limit: String,
    /// `x-ratelimit-remaining`.
    pub remaining: String,
    /// `x-ratelimit-reset`: whole seconds until the window resets, rounded up, at least 1.
    pub reset: String,
}

/// Envoy's computation (mesh.md §4.2): the quota closest to its limit (least
/// remaining; of equals, the first that denied, else the first) leads; then every
/// quota, denying or not, is listed with its window in whole seconds (rounded up) and
/// name.
pub fn rate_limit_headers(statuses: &[LimitStatus]) -> Option<RateLimitHeaders> {
    let lead = statuses.iter().min_by_key(|s| (s.remaining, !s.denied))?;
    let mut limit = lead.limit.to_string();
    for status in statuses {
        let _ = write!(limit, ", {}", status.limit);
        let window = whole_seconds_up(status.window);
        if window > 0 {
            let _ = write!(limit, ";w={window}");
        }
        if !status.name.is_empty() {
            let _ = write!(limit, ";name=\"{}\"", status.name);
        }
    }
    // Envoy writes `duration_until_reset`'s seconds, which the rate-limit service
    // rounds up to at least 1 (mesh.md §4.4): never `0` while a window runs.
    let reset = whole_seconds_up(lead.reset).max(1);
    Some(RateLimitHeaders { limit, remaining: lead.remaining.to_string(), reset: reset.to_string() })
}

/// Seconds, rounded up (`retry-after`, windows).
pub fn whole_seconds_up(duration: Duration) -> u64 {
    duration.as_secs() + u64::from(duration.subsec_nanos() > 0)
}

/// The local reply for `denial`; `exchange` is reported with the response flag.
pub fn denied_response(context: &Arc<ProxyContext>, denial: &Denial, exchange: Exchange) -> Response<ResponseBody> {
    match denial {
        Denial::Exhausted { statuses } => {
            let names: Vec<&str> = statuses.iter().filter(|s| s.denied).map(|s| s.name.as_str()).collect();
            let message = format!("Quota is exhausted for: {}", names.join(", "));
            let body = Bytes::from(format!("RESOURCE_EXHAUSTED:{message}"));
            let reply = LocalReply { flag: FLAG_RATE_LIMITED, status: StatusCode::TOO_MANY_REQUESTS, grpc_status: 8, message: &message, body };
            local_reply(context, reply, exhausted_headers(statuses), exchange)
        }
        Denial::CheckFailed => {
            let message = "quota service unavailable";
            let reply = LocalReply {
                flag: FLAG_RATE_LIMIT_SERVICE_ERROR,
                status: StatusCode::INTERNAL_SERVER_ERROR,
                grpc_status: 2,
                message,
                body: Bytes::from_static(message.as_bytes()),
            };
            local_reply(context, reply, HeaderMap::new(), exchange)
        }
    }
}

fn exhausted_headers(statuses: &[LimitStatus]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert("x-envoy-ratelimited", HeaderValue::from_static("true"));
    if let Some(values) = rate_limit_headers(statuses) {
        for (name, value) in [("x-ratelimit-limit", values.limit), ("x-ratelimit-remaining", values.remaining), ("x-ratelimit-reset", values.reset)] {
            if let Ok(value) = HeaderValue::from_str(&value) {
                headers.insert(name, value);
            }
        }
    }
    // When every denying quota has room again.
    let retry_after = statuses.iter().filter(|s| s.denied).map(|s| s.retry).max().unwrap_or_default();
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from(whole_seconds_up(retry_after).max(1)));
    headers
}
