//! Envoy's global rate limit service, `envoy.service.ratelimit.v3.RateLimitService/
//! ShouldRateLimit`, over the same engine, with envoyproxy/ratelimit's semantics:
//!
//! ```text
//!  RateLimitRequest{domain, descriptors[], hits_addend}
//!    │ domain empty / no descriptors / entry without key ─► INVALID_ARGUMENT
//!    │ domain unknown ─► OK, every status OK without current_limit
//!    ▼ per descriptor
//!  limit override in the descriptor ─► fixed window of requests_per_unit per unit
//!  else walk the domain's descriptor tree, one level per entry (greedy, no going
//!  back): exact value > prefix* (longest first) > any value; no node ─► no limit;
//!  the limit is the one of the node reached at the last entry, if it has one
//!    ▼
//!  replaces: a matched policy naming another matched one drops it (no limit)
//!  unlimited ─► OK, limit_remaining = u32::MAX, no current_limit
//!  else charge hits (descriptor hits_addend, 0 = check only, else
//!  max(1, request hits_addend)) to the counter; over ─► OVER_LIMIT (shadow: OK)
//!    ▼
//!  overall_code OVER_LIMIT iff any descriptor is
//! ```
//!
//! The descriptor tree is not stored: its nodes are the prefixes of the `rateLimit.
//! descriptors` of the domain's policies (a node is a key and a value, or a key alone),
//! and a node has a limit when a policy's descriptors end there. At each level the walk
//! takes, among the children of the node it is at, the one whose value equals the
//! entry's, else a wildcard (`value` ending in `*`) the entry's value starts with,
//! else the one with the entry's key and no value; when none fits there is no limit,
//! even if another branch would have fitted (envoyproxy/ratelimit's `GetLimit`). Of
//! several fitting wildcards the longest prefix wins: envoyproxy/ratelimit takes the
//! first in its file, an order the policies do not keep. A descriptor envoyproxy/
//! ratelimit whitelists (no limit, no children) is an `unlimited` policy, so the walk
//! stops there instead of falling back to a more general limit.
//!
//! Counter keys: the policy name, then `;key=value` for every entry without a value
//! (the policy's dimensions, which its overrides match), then for every wildcard
//! entry, as envoyproxy/ratelimit keys each value of a wildcard separately; with
//! `shareThreshold` the wildcard pattern stands for the value, so every value it
//! matches shares one counter. A denied descriptor charges nothing (envoyproxy/
//! ratelimit's `STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT`); `limit_remaining` is then
//! 0. A `maxAmount` of 0 denies every descriptor that asks for a hit.
//!
//! `current_limit.name` is `rateLimit.name` when the policy has one (what `meshtel
//! quota import` keeps of `rate_limit.name`; empty sends no name, as for a limit the
//! envoyproxy/ratelimit file does not name), else the policy's name.
//!
//! `current_limit.unit` comes from the policy's window: 1 s SECOND, 1 min MINUTE,
//! 1 h HOUR, 1 d DAY, 7 d WEEK, 30 d MONTH, 365 d YEAR. Any other window is reported
//! in the longest of these units not longer than it (SECOND below a second) with
//! `requests_per_unit` scaled to the same rate, rounded, at least 1 (0 stays 0): 10
//! per 5 s is reported as 2 per SECOND, 100 per 10 min as 10 per MINUTE, 10 per 500 ms
//! as 20 per SECOND. The counter itself still uses the policy's window.
//!
//! `limit_remaining` is what the counter has left, but never more than
//! `requests_per_unit`: a rescaled window (3 per 10 s reported as 1 per SECOND) or a
//! token bucket (2/s with a burst of 4 reported as 2 per SECOND) can hold more than
//! one unit's worth, and Envoy's `x-ratelimit-remaining` above its `x-ratelimit-limit`
//! would contradict it. Cut to the limit, the figure stays one a client can spend
//! at once without being refused.
//!
//! `duration_until_reset` is in whole seconds, rounded up and at least 1 s: Envoy
//! writes only its seconds into `x-ratelimit-reset`. For a fixed window (aligned to
//! the Unix epoch) that is envoyproxy/ratelimit's `divider - now % divider`, from 1 to
//! the window's length; for a rolling window, until the oldest counted bucket leaves
//! the window (1 s when nothing is counted); for a token bucket, until it is full.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshtel_model::quota::{Algorithm, DescriptorEntrySpec, Limit};
use meshtel_model::rls::rate_limit_descriptor::Entry;
use meshtel_model::rls::rate_limit_response::{Code, DescriptorStatus, RateLimit, rate_limit};
use meshtel_model::rls::rate_limit_service_server::{RateLimitService, RateLimitServiceServer};
use meshtel_model::rls::{RateLimitDescriptor, RateLimitRequest, RateLimitResponse};
use tracing::{debug, instrument};

use super::check::proto_duration;
use super::engine::{Chargee, QuotaEngine, QuotaOutcome};
use super::metrics::{LIMIT_OVERRIDE_LABEL, UNKNOWN_DOMAIN};
use super::policies::PolicyEntry;
use crate::error::{Error, Result};
use crate::grpc_decode::InvalidArgumentOnDecodeError;

/// Units of `RateLimitResponse.RateLimit.Unit` with their length in seconds.
const UNITS: [(rate_limit::Unit, u64); 7] = [
    (rate_limit::Unit::Second, 1),
    (rate_limit::Unit::Minute, 60),
    (rate_limit::Unit::Hour, 3_600),
    (rate_limit::Unit::Day, 86_400),
    (rate_limit::Unit::Week, 604_800),
    (rate_limit::Unit::Month, 2_592_000),
    (rate_limit::Unit::Year, 31_536_000),
];

/// Most descriptors per request.
pub const MAX_DESCRIPTORS: usize = 64;
/// Most entries per descriptor.
pub const MAX_ENTRIES: usize = 16;
/// Longest descriptor entry key, in bytes.
pub const MAX_ENTRY_KEY_BYTES: usize = 256;
/// Longest descriptor entry value kept, in bytes: longer ones are cut to it (see
/// [`values_cut`]).
pub const MAX_ENTRY_VALUE_BYTES: usize = 4096;

/// The unit and requests per unit reporting `max_amount` per `window`.
pub fn rate_limit_unit(max_amount: u64, window: Duration) -> (rate_limit::Unit, u32) {
    let saturate = |v: u64| u32::try_from(v).unwrap_or(u32::MAX);
    if max_amount == 0 {
        // Whatever the unit: nothing is allowed.
        let (unit, _) = rate_limit_unit(1, window);
        return (unit, 0);
    }
    if window.subsec_nanos() == 0
        && let Some(&(unit, _)) = UNITS.iter().find(|(_, s)| *s == window.as_secs())
    {
        return (unit, saturate(max_amount));
    }
    let secs = window.as_secs_f64().max(1e-9);
    // The longest unit not longer than the window (SECOND below a second).
    let (unit, unit_secs) = UNITS
        .iter()
        .copied()
        .rev()
        .find(|(_, s)| *s as f64 <= secs)
        .unwrap_or((rate_limit::Unit::Second, 1));
    let scaled = (max_amount as f64 * unit_secs as f64 / secs)
        .round()
        .max(1.0);
    (unit, saturate(scaled as u64))
}

/// `d` in whole seconds, rounded up, at least 1 s: what Envoy's `x-ratelimit-reset`
/// (the seconds of `duration_until_reset`) can say.
fn whole_seconds(d: Duration) -> Duration {
    let seconds = d.as_secs();
    Duration::from_secs(if d.subsec_nanos() > 0 || seconds == 0 {
        seconds.saturating_add(1)
    } else {
        seconds
    })
}

/// The window of a descriptor's `limit.unit` (`envoy.type.v3.RateLimitUnit`).
fn override_window(unit: i32) -> Option<(Duration, rate_limit::Unit)> {
    let (secs, unit) = match unit {
        1 => (1, rate_limit::Unit::Second),
        2 => (60, rate_limit::Unit::Minute),
        3 => (3_600, rate_limit::Unit::Hour),
        4 => (86_400, rate_limit::Unit::Day),
        5 => (2_592_000, rate_limit::Unit::Month),
        6 => (31_536_000, rate_limit::Unit::Year),
        _ => return None,
    };
    Some((Duration::from_secs(secs), unit))
}

/// Of the children `children` of one tree node (with repeats), the one the walk takes
/// for `entry`: the exact value, else the longest wildcard prefix of the entry's
/// value, else the key without a value.
fn best_child<'a>(
    children: impl Iterator<Item = &'a DescriptorEntrySpec>,
    entry: &Entry,
) -> Option<&'a DescriptorEntrySpec> {
    // (rank, prefix length): exact 2, wildcard 1, any value 0.
    let mut best: Option<(&DescriptorEntrySpec, (u8, usize))> = None;
    for child in children.filter(|c| c.key == entry.key) {
        let rank = match child.value.as_deref() {
            None => (0, 0),
            Some(v) if v == entry.value => (2, 0),
            Some(v) => match v.strip_suffix('*') {
                Some(prefix) if entry.value.starts_with(prefix) => (1, prefix.len()),
                _ => continue,
            },
        };
        if best.is_none_or(|(_, r)| rank > r) {
            best = Some((child, rank));
        }
    }
    best.map(|(child, _)| child)
}

/// The policy the greedy walk of the domain's descriptor tree reaches for `entries`
/// (see the module documentation), if the node it ends at has one.
fn walk_descriptor_tree<'a>(
    candidates: &'a [Arc<PolicyEntry>],
    entries: &[Entry],
) -> Option<&'a Arc<PolicyEntry>> {
    // The policies at or below the node reached so far, with their descriptors. Every
    // policy counts, whatever its depth: a shorter one still makes a node that may win
    // a level (and then end the walk).
    let mut below: Vec<(&'a Arc<PolicyEntry>, &'a [DescriptorEntrySpec])> = candidates
        .iter()
        .filter_map(|p| {
            let rl = p.policy.spec.rate_limit.as_ref()?;
            Some((p, rl.descriptors.as_slice()))
        })
        .collect();
    for (level, entry) in entries.iter().enumerate() {
        let node = best_child(below.iter().filter_map(|&(_, d)| d.get(level)), entry)?;
        below.retain(|&(_, d)| d.get(level).is_some_and(|e| e.same_node(node)));
    }
    // Only a policy whose descriptors end at the last entry's node limits it.
    below
        .into_iter()
        .find(|(_, d)| d.len() == entries.len())
        .map(|(p, _)| p)
}

/// What limits one descriptor.
enum Matched<'a> {
    Nothing,
    Policy(&'a Arc<PolicyEntry>),
    Override {
        limit: Limit,
        unit: rate_limit::Unit,
    },
}

fn invalid(message: String) -> Error {
    Error::InvalidQuotaRequest(message)
}

/// `request` with every descriptor value longer than [`MAX_ENTRY_VALUE_BYTES`] cut to
/// it (at a character boundary): a counter's key holds the values, and a client names
/// them. Cut, not refused: Envoy lets a request through when its rate limit call
/// fails, so a refusal would let a caller past its limit by lengthening a header.
/// Values that share their first 4 KiB share a counter, which limits more, not less.
fn values_cut(request: &RateLimitRequest) -> std::borrow::Cow<'_, RateLimitRequest> {
    let long = |e: &Entry| e.value.len() > MAX_ENTRY_VALUE_BYTES;
    if !request
        .descriptors
        .iter()
        .any(|d| d.entries.iter().any(long))
    {
        return std::borrow::Cow::Borrowed(request);
    }
    let mut cut = request.clone();
    for e in cut
        .descriptors
        .iter_mut()
        .flat_map(|d| d.entries.iter_mut())
    {
        if long(e) {
            let mut end = MAX_ENTRY_VALUE_BYTES;
            while !e.value.is_char_boundary(end) {
                end -= 1;
            }
            e.value.truncate(end);
        }
    }
    std::borrow::Cow::Owned(cut)
}

/// Checks the request's shape; the message names the field.
fn validate(request: &RateLimitRequest) -> Result<()> {
    if request.domain.is_empty() {
        return Err(invalid("domain: is required".into()));
    }
    if request.descriptors.is_empty() {
        return Err(invalid(
            "descriptors: at least one descriptor is required".into(),
        ));
    }
    if request.descriptors.len() > MAX_DESCRIPTORS {
        return Err(invalid(format!(
            "descriptors: at most {MAX_DESCRIPTORS} descriptors"
        )));
    }
    for (i, d) in request.descriptors.iter().enumerate() {
        if d.entries.is_empty() {
            return Err(invalid(format!(
                "descriptors[{i}].entries: at least one entry is required"
            )));
        }
        if d.entries.len() > MAX_ENTRIES {
            return Err(invalid(format!(
                "descriptors[{i}].entries: at most {MAX_ENTRIES} entries"
            )));
        }
        if let Some(j) = d.entries.iter().position(|e| e.key.is_empty()) {
            return Err(invalid(format!(
                "descriptors[{i}].entries[{j}].key: is required"
            )));
        }
        for (j, e) in d.entries.iter().enumerate() {
            if e.key.len() > MAX_ENTRY_KEY_BYTES {
                return Err(invalid(format!(
                    "descriptors[{i}].entries[{j}].key: {} bytes, at most {MAX_ENTRY_KEY_BYTES}",
                    e.key.len()
                )));
            }
        }
        if let Some(limit) = &d.limit
            && override_window(limit.unit).is_none()
        {
            return Err(invalid(format!(
                "descriptors[{i}].limit.unit: {} is not SECOND, MINUTE, HOUR, DAY, MONTH or YEAR",
                limit.unit
            )));
        }
    }
    Ok(())
}

/// The counter key of `entries` under `policy`.
fn policy_key(policy: &PolicyEntry, entries: &[Entry]) -> (String, Limit) {
    let Some(rl) = &policy.policy.spec.rate_limit else {
        return (policy.name.to_string(), policy.policy.limit);
    };
    let values: Vec<&str> = rl
        .descriptors
        .iter()
        .zip(entries)
        .filter(|(p, _)| p.value.is_none())
        .map(|(_, e)| e.value.as_str())
        .collect();
    let mut resolved = policy.policy.resolve_values(&values);
    for (p, e) in rl.descriptors.iter().zip(entries) {
        if let Some(pattern) = p.value.as_deref().filter(|v| v.ends_with('*')) {
            resolved.key.push(';');
            resolved.key.push_str(&e.key);
            resolved.key.push('=');
            // share_threshold: the pattern stands for every value it matches.
            resolved
                .key
                .push_str(if p.share_threshold { pattern } else { &e.value });
        }
    }
    (resolved.key, resolved.limit)
}

/// The counter key of a descriptor carrying its own limit (`:` keeps it apart from
/// policy keys, whose names cannot hold one).
fn override_key(domain: &str, descriptor: &RateLimitDescriptor, limit: &Limit) -> String {
    let mut key = format!("{LIMIT_OVERRIDE_LABEL}:{domain}");
    for e in &descriptor.entries {
        key.push(';');
        key.push_str(&e.key);
        key.push('=');
        key.push_str(&e.value);
    }
    key.push_str(&format!(
        ";limit={}/{}s",
        limit.max_amount,
        limit.valid_duration.as_secs()
    ));
    key
}

fn status_ok() -> DescriptorStatus {
    DescriptorStatus {
        code: Code::Ok as i32,
        ..DescriptorStatus::default()
    }
}

impl QuotaEngine {
    /// Answers `ShouldRateLimit` (see the module documentation).
    pub fn should_rate_limit(&self, request: &RateLimitRequest) -> Result<RateLimitResponse> {
        let request = &*values_cut(request);
        if let Err(error) = validate(request) {
            let set = self.policy_set();
            let domain = if set.domains.contains_key(&request.domain) {
                request.domain.as_str()
            } else {
                UNKNOWN_DOMAIN
            };
            self.metrics.rls_request(domain, "invalid_argument");
            return Err(error);
        }
        let set = self.policy_set();
        let Some(candidates) = set.domains.get(&request.domain) else {
            self.metrics.rls_request(UNKNOWN_DOMAIN, "ok");
            return Ok(RateLimitResponse {
                overall_code: Code::Ok as i32,
                statuses: request.descriptors.iter().map(|_| status_ok()).collect(),
                ..RateLimitResponse::default()
            });
        };
        let mut matched: Vec<Matched<'_>> = request
            .descriptors
            .iter()
            .map(|d| match &d.limit {
                Some(o) => match override_window(o.unit) {
                    Some((window, unit)) => Matched::Override {
                        limit: Limit {
                            max_amount: u64::from(o.requests_per_unit),
                            valid_duration: window,
                            algorithm: Algorithm::FixedWindow,
                        },
                        unit,
                    },
                    None => Matched::Nothing,
                },
                None => walk_descriptor_tree(candidates, &d.entries)
                    .map_or(Matched::Nothing, Matched::Policy),
            })
            .collect();
        // `replaces`: a matched limit naming another matched one drops it. A limit is
        // named as envoyproxy/ratelimit names it, by `rateLimit.name` (what
        // `current_limit.name` reports), or by its policy's name.
        let replaced: Vec<&str> = matched
            .iter()
            .filter_map(|m| match m {
                Matched::Policy(p) => p.policy.spec.rate_limit.as_ref(),
                _ => None,
            })
            .flat_map(|rl| rl.replaces.iter().map(String::as_str))
            .collect();
        if !replaced.is_empty() {
            for m in &mut matched {
                if let Matched::Policy(p) = m
                    && replaced.iter().any(|r| {
                        *r == &*p.name
                            || p.policy
                                .spec
                                .rate_limit
                                .as_ref()
                                .and_then(|rl| rl.name.as_deref())
                                == Some(*r)
                    })
                {
                    *m = Matched::Nothing;
                }
            }
        }
        let request_hits = u64::from(request.hits_addend.max(1));
        let override_quota: Arc<str> = Arc::from(LIMIT_OVERRIDE_LABEL);
        let hits_of = |d: &RateLimitDescriptor| d.hits_addend.unwrap_or(request_hits);
        // As envoyproxy/ratelimit with STOP_CACHE_KEY_INCREMENT_WHEN_OVERLIMIT: when a
        // descriptor of the request would go over its limit, the others are not
        // charged (a shared limit refusing must not spend a caller's own quota).
        // Looked at first only when two or more descriptors can be charged. Two that
        // land on one counter are added up: a descriptor over it is charged the hits
        // of the request on that counter so far, which the counter refuses whole.
        let chargeable = matched
            .iter()
            .filter(|m| {
                matches!(m, Matched::Override { .. })
                    || matches!(m, Matched::Policy(p) if !p.unlimited() && !p.shadow())
            })
            .count();
        let mut would_exceed = Vec::new();
        let mut hits_so_far = Vec::new();
        if chargeable >= 2 {
            let mut on_counter: HashMap<String, u64> = HashMap::new();
            for (d, m) in request.descriptors.iter().zip(&matched) {
                let (exceeds, so_far) = match self.peek_descriptor(&request.domain, d, m) {
                    Some((key, remaining)) => {
                        let so_far = on_counter.entry(key).or_default();
                        *so_far = so_far.saturating_add(hits_of(d));
                        (*so_far > remaining, *so_far)
                    }
                    None => (false, hits_of(d)),
                };
                would_exceed.push(exceeds);
                hits_so_far.push(so_far);
            }
        }
        let any_exceeds = would_exceed.contains(&true);
        let mut over = false;
        let statuses = request
            .descriptors
            .iter()
            .zip(&matched)
            .enumerate()
            .map(|(i, (descriptor, m))| {
                let started = Instant::now();
                let charge = if !any_exceeds {
                    Some(hits_of(descriptor))
                } else if would_exceed.get(i).copied().unwrap_or(true) {
                    Some(hits_so_far.get(i).copied().unwrap_or(u64::MAX))
                } else {
                    None
                };
                let status =
                    self.descriptor_status(&request.domain, descriptor, m, charge, &override_quota);
                over |= status.code == Code::OverLimit as i32;
                self.metrics
                    .decision_seconds
                    .observe(started.elapsed().as_secs_f64());
                status
            })
            .collect();
        let code = if over { Code::OverLimit } else { Code::Ok };
        self.metrics
            .rls_request(&request.domain, if over { "over_limit" } else { "ok" });
        Ok(RateLimitResponse {
            overall_code: code as i32,
            statuses,
            ..RateLimitResponse::default()
        })
    }

    /// The counter that limits `descriptor` and what is left of it now, charging
    /// nothing: `None` when nothing limits it, it is unlimited, or its policy is in
    /// shadow mode (it never refuses).
    fn peek_descriptor(
        &self,
        domain: &str,
        descriptor: &RateLimitDescriptor,
        matched: &Matched<'_>,
    ) -> Option<(String, u64)> {
        match matched {
            Matched::Nothing => None,
            Matched::Policy(p) if p.unlimited() || p.shadow() => None,
            Matched::Policy(p) => {
                let (key, limit) = policy_key(p, &descriptor.entries);
                let remaining = self.peek_key(&key, &limit).remaining;
                Some((key, remaining))
            }
            Matched::Override { limit, .. } => {
                let key = override_key(domain, descriptor, limit);
                let remaining = self.peek_key(&key, limit).remaining;
                Some((key, remaining))
            }
        }
    }

    /// The status of one descriptor, charged `hits` (`None`: charged nothing, its
    /// status as it stands).
    fn descriptor_status(
        &self,
        domain: &str,
        descriptor: &RateLimitDescriptor,
        matched: &Matched<'_>,
        hits: Option<u64>,
        override_quota: &Arc<str>,
    ) -> DescriptorStatus {
        let (decision, name, unit, rpu) = match matched {
            Matched::Nothing => return status_ok(),
            Matched::Policy(p) if p.unlimited() => {
                p.results.granted.inc();
                return DescriptorStatus {
                    code: Code::Ok as i32,
                    limit_remaining: u32::MAX,
                    ..DescriptorStatus::default()
                };
            }
            Matched::Policy(p) => {
                let (key, limit) = policy_key(p, &descriptor.entries);
                let decision = match hits {
                    Some(hits) => self.charge_key(&Chargee::of(p), &key, &limit, hits, false),
                    None => self.peek_key(&key, &limit),
                };
                let (unit, rpu) = rate_limit_unit(limit.max_amount, limit.valid_duration);
                let name = p
                    .policy
                    .spec
                    .rate_limit
                    .as_ref()
                    .map_or(&*p.name, |rl| rl.reported_name(&p.name));
                (decision, name.to_string(), unit, rpu)
            }
            Matched::Override { limit, unit } => {
                let key = override_key(domain, descriptor, limit);
                let who = Chargee {
                    quota: override_quota,
                    results: &self.metrics.limit_override,
                    stats: None,
                    shadow: false,
                    // A client names these counters and their windows (a year at
                    // most): they may fill half the table, never the policies' half.
                    client_named: true,
                };
                let decision = match hits {
                    Some(hits) => self.charge_key(&who, &key, limit, hits, false),
                    None => self.peek_key(&key, limit),
                };
                let rpu = u32::try_from(limit.max_amount).unwrap_or(u32::MAX);
                (decision, String::new(), *unit, rpu)
            }
        };
        let (code, remaining) = match decision.outcome {
            QuotaOutcome::Denied => (Code::OverLimit, 0),
            QuotaOutcome::ShadowDenied => (Code::Ok, 0),
            QuotaOutcome::Overflow => return status_ok(),
            _ => (Code::Ok, decision.remaining),
        };
        DescriptorStatus {
            code: code as i32,
            current_limit: Some(RateLimit {
                name,
                requests_per_unit: rpu,
                unit: unit as i32,
            }),
            limit_remaining: u32::try_from(remaining).unwrap_or(u32::MAX).min(rpu),
            duration_until_reset: Some(proto_duration(whole_seconds(decision.reset_after))),
            quota: None,
        }
    }
}

/// The tonic `RateLimitService` over a [`QuotaEngine`].
#[derive(Clone)]
pub struct RateLimitGrpc {
    engine: Arc<QuotaEngine>,
}

#[tonic::async_trait]
impl RateLimitService for RateLimitGrpc {
    #[instrument(level = "debug", skip_all, fields(protocol = "rls"))]
    async fn should_rate_limit(
        &self,
        request: tonic::Request<RateLimitRequest>,
    ) -> Result<tonic::Response<RateLimitResponse>, tonic::Status> {
        let request = request.into_inner();
        match self.engine.should_rate_limit(&request) {
            Ok(response) => Ok(tonic::Response::new(response)),
            Err(error) => {
                debug!(domain = %request.domain, error = %error, "rate limit request refused");
                Err(error.grpc_status())
            }
        }
    }
}

/// Builds the Envoy `RateLimitService` gRPC service over `engine`, for
/// `tonic::transport::Server::add_service` next to the Mixer service; a request over
/// `max_message_bytes` (`[report] max_message_bytes`, as the port's other calls) is
/// refused `RESOURCE_EXHAUSTED`.
pub fn rls_grpc_service(
    engine: Arc<QuotaEngine>,
    max_message_bytes: usize,
) -> InvalidArgumentOnDecodeError<RateLimitServiceServer<RateLimitGrpc>> {
    InvalidArgumentOnDecodeError::new(
        RateLimitServiceServer::new(RateLimitGrpc { engine })
            .max_decoding_message_size(max_message_bytes),
    )
}

#[cfg(test)]
mod tests;
