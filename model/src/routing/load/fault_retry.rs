//! `fault` (injected delays and aborts) and `retries` of an HTTP route.

use yaml_serde::Value;

use super::virtual_service::compile_percent;
use super::walk::{Cx, Fields};
use crate::routing::{AbortStatus, Fault, FaultAbort, FaultDelay, RetryOn, RetryPolicy};

const FAULT: Fields = Fields { known: &["delay", "abort"], unsupported: &[] };

const DELAY: Fields =
    Fields { known: &["fixedDelay", "percentage", "percent"], unsupported: &[("exponentialDelay", "use fixedDelay")] };

const ABORT: Fields = Fields {
    known: &["httpStatus", "grpcStatus", "percentage", "percent"],
    unsupported: &[("http2Error", "use httpStatus or grpcStatus")],
};

const RETRIES: Fields =
    Fields { known: &["attempts", "perTryTimeout", "retryOn", "retryRemoteLocalities"], unsupported: &[] };

/// Envoy retry conditions that Istio passes through but meshtel does not implement.
const UNSUPPORTED_RETRY_CONDITIONS: &[&str] =
    &["retriable-headers", "envoy-ratelimited", "reset-before-request", "http3-post-connect-failure"];

pub(super) fn compile_fault(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<Fault> {
    let object = cx.object(value, path, &FAULT)?;
    if !object.has("delay") && !object.has("abort") {
        cx.push(path, "give a delay, an abort, or both");
        return None;
    }
    let delay = object.get("delay").and_then(|(value, path)| {
        let delay = cx.object(value, &path, &DELAY)?;
        let fixed_delay = match delay.get("fixedDelay") {
            Some((value, path)) => cx.duration(value, &path, false),
            None => {
                // With `exponentialDelay`, that field's problem says enough.
                if !delay.has("exponentialDelay") {
                    cx.push(&delay.child("fixedDelay"), "is required, e.g. 5s");
                }
                None
            }
        };
        let percent = compile_percent(cx, &delay, "percentage", "percent", 0.0);
        Some(FaultDelay { fixed_delay: fixed_delay?, percent: percent? })
    });
    let abort = object.get("abort").and_then(|(value, path)| {
        let abort = cx.object(value, &path, &ABORT)?;
        let status = match (abort.get("httpStatus"), abort.get("grpcStatus")) {
            (Some(_), Some((_, grpc_path))) => {
                cx.push(&grpc_path, "give either httpStatus or grpcStatus, not both");
                None
            }
            (Some((value, path)), None) => {
                cx.integer(value, &path, 200..=599).and_then(|s| u16::try_from(s).ok()).map(AbortStatus::Http)
            }
            (None, Some((value, path))) => compile_grpc_status(cx, value, &path).map(AbortStatus::Grpc),
            (None, None) => {
                if !abort.has("http2Error") {
                    cx.push(&abort.path, "give httpStatus (e.g. 503) or grpcStatus (e.g. UNAVAILABLE)");
                }
                None
            }
        };
        let percent = compile_percent(cx, &abort, "percentage", "percent", 0.0);
        Some(FaultAbort { status: status?, percent: percent? })
    });
    Some(Fault { delay, abort })
}

/// A gRPC status name (`UNAVAILABLE`) or code (`14`).
fn compile_grpc_status(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<u32> {
    if let Value::Number(_) = value {
        return cx.integer(value, path, 0..=16).and_then(|c| u32::try_from(c).ok());
    }
    let text = cx.required_string(value, path)?.trim();
    if let Ok(code) = text.parse::<u32>() {
        if code <= 16 {
            return Some(code);
        }
        cx.push(path, format!("gRPC status codes are 0 to 16, found {code}"));
        return None;
    }
    let name = text.to_ascii_uppercase();
    match crate::grpc_status::code(&name) {
        Some(code) => Some(code),
        None => {
            cx.push(path, format!("unknown gRPC status {text:?} (e.g. UNAVAILABLE, DEADLINE_EXCEEDED, INTERNAL)"));
            None
        }
    }
}

pub(super) fn compile_retries(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<RetryPolicy> {
    let object = cx.object(value, path, &RETRIES)?;
    let attempts = match object.get("attempts") {
        Some((value, path)) => cx.u32(value, &path),
        None => Some(0),
    };
    // Every field is read before any failure returns, so that each problem is reported.
    let per_try_timeout = match object.get("perTryTimeout") {
        Some((value, path)) => cx.duration(value, &path, false).map(Some),
        None => Some(None),
    };
    let retry_on = match object.get("retryOn") {
        Some((value, path)) => cx.string(value, &path).and_then(|text| {
            if text.trim().is_empty() { Some(RetryOn::istio_default()) } else { parse_retry_on(cx, text, &path) }
        }),
        None => Some(RetryOn::istio_default()),
    };
    if let Some((value, path)) = object.get("retryRemoteLocalities") {
        // Locality-aware retries: meshtel has no localities, so there is nothing to do.
        let _ = cx.boolean(value, &path);
    }
    // Istio drops the whole policy when there is no attempt: its per-try timeout too.
    let attempts = attempts?;
    let per_try_timeout = per_try_timeout?.filter(|_| attempts > 0);
    Some(RetryPolicy { attempts, per_try_timeout, retry_on: retry_on? })
}

/// `retryOn`: a comma-separated list of Envoy conditions and status codes.
fn parse_retry_on(cx: &mut Cx<'_>, text: &str, path: &str) -> Option<RetryOn> {
    let mut on = RetryOn::default();
    let mut ok = true;
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Ok(code) = part.parse::<u32>() {
            match u16::try_from(code) {
                Ok(code) if (100..=599).contains(&code) => {
                    on.retriable_status_codes = true;
                    if !on.status_codes.contains(&code) {
                        on.status_codes.push(code);
                    }
                }
                _ => {
                    cx.push(path, format!("{part} is not an HTTP status code"));
                    ok = false;
                }
            }
            continue;
        }
        let flag = match part {
            "5xx" => &mut on.five_xx,
            "gateway-error" => &mut on.gateway_error,
            "reset" => &mut on.reset,
            "connect-failure" => &mut on.connect_failure,
            "refused-stream" => &mut on.refused_stream,
            "retriable-4xx" => &mut on.retriable_4xx,
            "retriable-status-codes" => &mut on.retriable_status_codes,
            "cancelled" => &mut on.grpc_cancelled,
            "deadline-exceeded" => &mut on.grpc_deadline_exceeded,
            "internal" => &mut on.grpc_internal,
            "resource-exhausted" => &mut on.grpc_resource_exhausted,
            "unavailable" => &mut on.grpc_unavailable,
            other if UNSUPPORTED_RETRY_CONDITIONS.contains(&other) => {
                cx.push(path, format!("retry condition {other} is not supported by meshtel"));
                ok = false;
                continue;
            }
            other => {
                cx.push(
                    path,
                    format!(
                        "unknown retry condition {other:?} (meshtel knows 5xx, gateway-error, reset, connect-failure, \
                         refused-stream, retriable-4xx, retriable-status-codes, cancelled, deadline-exceeded, internal, \
                         resource-exhausted, unavailable and status codes such as 503)"
                    ),
                );
                ok = false;
                continue;
            }
        };
        *flag = true;
    }
    ok.then_some(on)
}
