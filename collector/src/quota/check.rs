//! `meshtel.mixer.v1.Mixer/Check` and `WatchQuotas` over the engine: request
//! validation, the mapping of decisions to `QuotaResult`, and the policy stream.
//! The tonic trait itself is implemented in [`crate::report`], next to `Report`.

use std::pin::Pin;
use std::time::Duration;

use futures::Stream;
use meshtel_model::mixer::check_response::QuotaResult as WireQuotaResult;
use meshtel_model::mixer::{CheckRequest, CheckResponse, QuotaAttributes, QuotaPolicies};

use super::engine::{QuotaEngine, QuotaOutcome, QuotaResult};
use crate::error::{Error, Result};

/// Most quotas one Check may charge.
pub const MAX_QUOTAS_PER_CHECK: usize = 64;
/// Longest `deduplication_id` accepted.
pub const MAX_DEDUPLICATION_ID_BYTES: usize = 256;
/// Longest quota name accepted in a Check.
pub const MAX_QUOTA_NAME_BYTES: usize = 253;

/// The stream WatchQuotas answers with.
pub type PolicyStream = Pin<Box<dyn Stream<Item = Result<QuotaPolicies, tonic::Status>> + Send>>;

/// `google.protobuf.Duration` of a `std` duration.
pub(crate) fn proto_duration(d: Duration) -> prost_types::Duration {
    prost_types::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// The wire form of one quota's result.
fn wire_result(quota: &str, result: QuotaResult) -> WireQuotaResult {
    let d = result.decision;
    let status_message = match d.outcome {
        QuotaOutcome::Denied => format!("Quota is exhausted for: {quota}"),
        QuotaOutcome::UnknownQuota => format!("Requested quota '{quota}' is not configured"),
        QuotaOutcome::Overflow => "quota counter table full: granted without counting".into(),
        QuotaOutcome::ShadowDenied => "over the limit; granted (shadow mode)".into(),
        _ => String::new(),
    };
    WireQuotaResult {
        valid_duration: Some(proto_duration(d.valid_duration)),
        granted_amount: to_i64(d.granted),
        status_code: d.code() as i32,
        status_message,
        retry_after: d.retry_after.map(proto_duration),
        limit: to_i64(d.limit),
        remaining: to_i64(d.remaining),
        reset_after: Some(proto_duration(d.reset_after)),
        window: Some(proto_duration(d.window)),
        key: result.key,
        shadow: result.shadow,
    }
}

impl QuotaEngine {
    /// Answers a Check: every quota of the request, deduplicated by
    /// `deduplication_id` when it is set. Refuses (`INVALID_ARGUMENT`) a request with
    /// more than [`MAX_QUOTAS_PER_CHECK`] quotas, an amount below 1, or an oversized id
    /// or quota name; the message names the field.
    pub fn check_request(&self, request: &CheckRequest) -> Result<CheckResponse> {
        if request.quotas.len() > MAX_QUOTAS_PER_CHECK {
            return Err(Error::InvalidQuotaRequest(format!(
                "quotas: {} quotas, at most {MAX_QUOTAS_PER_CHECK} per Check",
                request.quotas.len()
            )));
        }
        if request.deduplication_id.len() > MAX_DEDUPLICATION_ID_BYTES {
            return Err(Error::InvalidQuotaRequest(format!(
                "deduplication_id: longer than {MAX_DEDUPLICATION_ID_BYTES} bytes"
            )));
        }
        for (name, params) in &request.quotas {
            if name.is_empty() || name.len() > MAX_QUOTA_NAME_BYTES {
                return Err(Error::InvalidQuotaRequest(format!(
                    "quotas: a quota name must be 1 to {MAX_QUOTA_NAME_BYTES} bytes"
                )));
            }
            if params.amount < 1 {
                return Err(Error::InvalidQuotaRequest(format!(
                    "quotas[{name:?}].amount: must be at least 1, got {}",
                    params.amount
                )));
            }
        }
        let empty;
        let attrs = match &request.attributes {
            Some(attrs) => attrs,
            None => {
                empty = QuotaAttributes::default();
                &empty
            }
        };
        let quotas = request
            .quotas
            .iter()
            .map(|(name, params)| {
                let amount = u64::try_from(params.amount).unwrap_or(0);
                let result = self.check_deduplicated(
                    &request.deduplication_id,
                    attrs,
                    name,
                    amount,
                    params.best_effort,
                );
                (name.clone(), wire_result(name, result))
            })
            .collect();
        Ok(CheckResponse { quotas })
    }

    /// The WatchQuotas stream: the current policies at once, then the whole set again
    /// after every change, until [`QuotaEngine::close_watchers`] or the engine is gone.
    pub fn policy_stream(&self) -> PolicyStream {
        let policies = self.watch_policies();
        let closing = self.closing();
        let stream = futures::stream::unfold(
            (policies, closing, true),
            |(mut policies, mut closing, first)| async move {
                if *closing.borrow_and_update() {
                    return None;
                }
                if !first {
                    tokio::select! {
                        changed = policies.changed() => changed.ok()?,
                        _ = closing.wait_for(|c| *c) => return None,
                    }
                }
                let current = policies.borrow_and_update().clone();
                Some((Ok(current), (policies, closing, false)))
            },
        );
        Box::pin(stream)
    }
}

/// WatchQuotas on a collector without a quota engine: an empty set, then nothing
/// (the stream stays open so that proxies do not reconnect in a loop).
pub fn empty_policy_stream() -> PolicyStream {
    let empty = QuotaPolicies {
        revision: 0,
        policies_json: "[]".into(),
        incarnations: Vec::new(),
    };
    Box::pin(futures::StreamExt::chain(
        futures::stream::once(futures::future::ready(Ok(empty))),
        futures::stream::pending(),
    ))
}
