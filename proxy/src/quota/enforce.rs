//! Deciding one inbound request: match, then take from leases (prefetch) or ask the
//! collector (one Check), then combine the quotas' outcomes into one verdict.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meshtel_model::mixer::check_response::QuotaResult;
use meshtel_model::quota::{Limit, QuotaAttributes, QuotaPolicy};
use tracing::debug;

use super::client::{duration_of, grant_of, passes, shadow_denies};
use super::lease::{Lease, Take};
use super::policies::{PolicySet, RequestView, with_attributes};
use super::response::{Denial, LimitStatus};
use super::stats::DecisionResult;
use super::{LeaseEntry, MAX_LEASES, QuotaEnforcer, Shared, evict_idle};

/// What one matched quota said about the request, with its limit's state when known
/// (for the `x-ratelimit-*` headers of a denial).
#[derive(Debug)]
enum Outcome {
    Granted { remote: bool, status: Option<LimitStatus> },
    Denied { remote: bool, status: LimitStatus },
    Failed,
}

/// A matched policy (at its generation) and its counter.
#[derive(Debug)]
struct Matched<'a> {
    policy: &'a QuotaPolicy,
    generation: u64,
    key: String,
    limit: Limit,
}

/// The first, synchronous step for one matched policy.
#[derive(Debug)]
enum FirstStep {
    /// Taken from (or waiting on) the key's lease; the tokens it has left; the lease's
    /// generation (an ask it starts is for that one).
    Lease(Take, Option<tokio::sync::watch::Receiver<()>>, u64, u64),
    /// No lease (prefetch off, or the lease table is full): ask the collector.
    Direct,
}

impl QuotaEnforcer {
    /// The decision for a request when this proxy knows no policy (none apply, or the
    /// first policy set has not arrived), made on the spot; `None` when policies are to
    /// be matched ([`QuotaEnforcer::check_inbound`]). A proxy whose collector has been
    /// unreachable since it started decides every request here, without the future
    /// (and its allocation) that matching takes.
    pub fn without_policies(&self) -> Option<Option<Denial>> {
        let shared = &*self.shared;
        if !shared.policies.is_empty() {
            return None;
        }
        if !shared.unsynced() {
            return Some(None);
        }
        if shared.settings.fail_closed {
            shared.stats.decided(DecisionResult::FailClosed);
            return Some(Some(Denial::CheckFailed));
        }
        shared.stats.decided(DecisionResult::FailOpen);
        Some(None)
    }

    /// Decides an inbound request: `None` lets it through, `Some` says how to deny it.
    pub async fn check_inbound(&self, request: RequestView<'_>) -> Option<Denial> {
        let shared = &*self.shared;
        if let Some(decided) = self.without_policies() {
            return decided;
        }
        let started = Instant::now();
        let set = shared.policies.load();
        let prefetch = shared.settings.prefetch;
        // Synchronous: match and take from leases on this thread's scratch attributes;
        // the attributes are copied only when the collector must be asked directly.
        let (steps, direct_attributes) = with_attributes(&shared.destination, request, &set.header_names, |attrs| {
            let mut steps: Vec<(Matched<'_>, FirstStep)> = Vec::new();
            for (policy, generation) in set.with_generations().filter(|(p, _)| p.matches(attrs)) {
                let resolved = policy.resolve(attrs);
                let matched = Matched { policy, generation, key: resolved.key, limit: resolved.limit };
                let step = if prefetch { shared.take_first(&matched, attrs, started) } else { FirstStep::Direct };
                steps.push((matched, step));
            }
            let direct = steps.iter().any(|(_, s)| matches!(s, FirstStep::Direct)).then(|| attrs.clone());
            (steps, direct)
        });
        if steps.is_empty() {
            return None;
        }
        let deadline = tokio::time::Instant::from_std(started + shared.settings.timeout);
        let mut outcomes = Vec::with_capacity(steps.len());
        let direct: Vec<&Matched<'_>> = steps.iter().filter(|(_, s)| matches!(s, FirstStep::Direct)).map(|(m, _)| m).collect();
        let mut direct_outcomes = match direct_attributes {
            Some(attributes) => shared.check_direct(attributes, &direct).await.into_iter(),
            None => Vec::new().into_iter(),
        };
        for (matched, step) in &steps {
            let outcome = match step {
                FirstStep::Direct => direct_outcomes.next().unwrap_or(Outcome::Failed),
                FirstStep::Lease(take, receiver, left, generation) => {
                    finish_take(&self.shared, matched, *take, receiver.clone(), (*left, *generation), deadline).await
                }
            };
            outcomes.push(outcome);
        }
        let (result, denial) = shared.combine(&steps, outcomes);
        shared.stats.decided(result);
        if result.is_local() {
            shared.stats.local_decision_seconds.observe(started.elapsed().as_secs_f64());
        }
        denial
    }
}

impl Shared {
    /// Records demand and takes from the key's lease (creating it), subscribing to its
    /// next change when the request must wait.
    fn take_first(&self, matched: &Matched<'_>, attrs: &QuotaAttributes, now: Instant) -> FirstStep {
        let mut leases = self.leases.lock();
        if leases.len() >= MAX_LEASES && !leases.contains_key(&matched.key) {
            let before = leases.len();
            evict_idle(&mut leases, now);
            self.stats.leases_evicted.inc_by((before - leases.len()) as u64);
            self.stats.leases.set(leases.len() as i64);
            if leases.len() >= MAX_LEASES {
                self.stats.lease_table_full.inc();
                return FirstStep::Direct;
            }
        }
        let entry = match leases.entry(matched.key.clone()) {
            Entry::Occupied(entry) => entry.into_mut(),
            Entry::Vacant(vacant) => {
                let entry = LeaseEntry {
                    lease: Lease::new(matched.limit.max_amount, self.settings.sizing(), now),
                    quota: Arc::from(matched.policy.name()),
                    attributes: Arc::new(attrs.clone()),
                    changed: tokio::sync::watch::channel(()).0,
                };
                self.stats.leases.inc();
                vacant.insert(entry)
            }
        };
        // One comparison unless the policy changed and the push has not reset the
        // lease yet (the push resets it too).
        entry.lease.follow_policy(matched.generation, matched.limit.max_amount);
        entry.lease.record_demand(now);
        let take = entry.lease.take(now);
        let receiver = matches!(take, Take::Wait { .. }).then(|| entry.changed.subscribe());
        FirstStep::Lease(take, receiver, entry.lease.available(now), entry.lease.generation())
    }

    /// Makes the leases follow a newly published `set`: those of a changed policy
    /// start over (tokens dropped, denial and failure forgotten, waiting requests woken
    /// to ask again), those of a removed policy, or of a counter the changed policy no
    /// longer has, go. Leases of unchanged policies are left alone.
    pub(super) fn follow_policies(&self, set: &PolicySet) {
        let policies: HashMap<&str, (&QuotaPolicy, u64)> = set.with_generations().map(|(policy, generation)| (policy.name(), (policy, generation))).collect();
        let mut leases = self.leases.lock();
        let before = leases.len();
        let mut reset = 0u64;
        leases.retain(|key, entry| {
            let Some((policy, generation)) = policies.get(&*entry.quota) else { return false };
            if *generation <= entry.lease.generation() {
                return true;
            }
            let resolved = policy.resolve(&entry.attributes);
            if resolved.key != *key {
                return false;
            }
            entry.lease.reset(*generation, resolved.limit.max_amount);
            entry.changed.send_replace(());
            reset += 1;
            true
        });
        let removed = before - leases.len();
        self.stats.leases.set(leases.len() as i64);
        if reset > 0 || removed > 0 {
            debug!(revision = set.revision, reset, removed, "quota leases follow changed policies");
        }
    }

    /// One Check for `matched` (amount 1 each, all or nothing).
    async fn check_direct(&self, attributes: QuotaAttributes, matched: &[&Matched<'_>]) -> Vec<Outcome> {
        let quotas = matched.iter().map(|m| (m.policy.name().to_owned(), 1));
        match self.client.check(attributes, quotas, false).await {
            Ok(results) => matched
                .iter()
                .map(|m| match results.get(m.policy.name()) {
                    // An unknown quota (the collector grants it) has no limit to show.
                    Some(result) if passes(result) && result.status_code == tonic::Code::NotFound as i32 => Outcome::Granted { remote: true, status: None },
                    // A shadow policy's would-be denial: `combine` lets it through.
                    Some(result) if shadow_denies(result) => Outcome::Denied { remote: true, status: remote_status(m, result) },
                    Some(result) if passes(result) => Outcome::Granted { remote: true, status: Some(remote_status(m, result)) },
                    Some(result) => Outcome::Denied { remote: true, status: remote_status(m, result) },
                    None => Outcome::Failed,
                })
                .collect(),
            Err(_) => matched.iter().map(|_| Outcome::Failed).collect(),
        }
    }

    /// One verdict from every matched quota's outcome: any real denial denies (tokens
    /// taken from the other leases go back); else a failure decides by the failure
    /// mode; shadow policies never deny. A denial carries the state of every matched
    /// quota with a limit (unlimited ones and failed calls have none), in policy order,
    /// as Envoy lists every status with a `current_limit`.
    fn combine(&self, steps: &[(Matched<'_>, FirstStep)], outcomes: Vec<Outcome>) -> (DecisionResult, Option<Denial>) {
        let mut statuses = Vec::new();
        let (mut remote, mut failed, mut shadow_denied, mut denied) = (false, false, false, false);
        for ((matched, _), outcome) in steps.iter().zip(&outcomes) {
            let status = match outcome {
                Outcome::Granted { remote: r, status } => {
                    remote |= *r;
                    status.clone()
                }
                Outcome::Denied { status, .. } if matched.policy.spec.shadow => {
                    shadow_denied = true;
                    Some(LimitStatus { denied: false, ..status.clone() })
                }
                Outcome::Denied { remote: r, status } => {
                    remote |= *r;
                    denied = true;
                    Some(status.clone())
                }
                Outcome::Failed => {
                    failed = true;
                    None
                }
            };
            if let Some(status) = status.filter(|_| !matched.policy.spec.unlimited) {
                statuses.push(status);
            }
        }
        let refuse = denied || (failed && self.settings.fail_closed);
        if refuse {
            self.refund(steps, &outcomes);
        }
        if denied {
            let result = if remote { DecisionResult::DeniedRemote } else { DecisionResult::DeniedLocal };
            return (result, Some(Denial::Exhausted { statuses }));
        }
        match (failed, self.settings.fail_closed) {
            (true, true) => (DecisionResult::FailClosed, Some(Denial::CheckFailed)),
            (true, false) => (DecisionResult::FailOpen, None),
            _ if shadow_denied => (DecisionResult::ShadowAllowed, None),
            _ if remote => (DecisionResult::GrantedRemote, None),
            _ => (DecisionResult::GrantedLocal, None),
        }
    }

    /// Gives back the leased tokens of a request that is refused after all.
    fn refund(&self, steps: &[(Matched<'_>, FirstStep)], outcomes: &[Outcome]) {
        let now = Instant::now();
        let mut leases = self.leases.lock();
        for ((matched, step), outcome) in steps.iter().zip(outcomes) {
            // A lease reset since gave the token up with the rest.
            if let (FirstStep::Lease(.., generation), Outcome::Granted { .. }) = (step, outcome)
                && let Some(entry) = leases.get_mut(&matched.key)
                && entry.lease.generation() == *generation
            {
                entry.lease.refund(now);
            }
        }
    }
}

/// Follows a lease step to its outcome: starts refills, waits (up to `deadline`)
/// for an ask in flight and takes again when it completes (or the lease is reset).
/// `left`: the tokens the lease has after the take (what the proxy knows is left of
/// the limit); `generation`: the lease's when it was taken from.
async fn finish_take(
    shared: &Arc<Shared>,
    matched: &Matched<'_>,
    mut take: Take,
    mut receiver: Option<tokio::sync::watch::Receiver<()>>,
    (mut left, mut generation): (u64, u64),
    deadline: tokio::time::Instant,
) -> Outcome {
    let mut waited = false;
    loop {
        match take {
            Take::Granted { refill } => {
                if let Some(amount) = refill {
                    spawn_ask(shared, &matched.key, amount, generation);
                }
                let status = LimitStatus { denied: false, ..limit_status(matched, left, Duration::ZERO) };
                return Outcome::Granted { remote: waited, status: Some(status) };
            }
            Take::Denied { until } => {
                let reset = until.saturating_duration_since(Instant::now());
                return Outcome::Denied { remote: waited, status: limit_status(matched, 0, reset) };
            }
            Take::Unavailable => return Outcome::Failed,
            Take::Wait { fetch } => {
                if let Some(amount) = fetch {
                    spawn_ask(shared, &matched.key, amount, generation);
                }
                waited = true;
                let Some(mut changes) = receiver.take() else { return Outcome::Failed };
                if tokio::time::timeout_at(deadline, changes.changed()).await.is_err() {
                    debug!(quota = %matched.policy.name(), "quota lease not refilled in time");
                    return Outcome::Failed;
                }
                let mut leases = shared.leases.lock();
                // Gone while an ask was in flight: the policy was removed (or no longer
                // has this counter), so it no longer limits the request.
                let Some(entry) = leases.get_mut(&matched.key) else { return Outcome::Granted { remote: true, status: None } };
                let now = Instant::now();
                take = entry.lease.take(now);
                left = entry.lease.available(now);
                generation = entry.lease.generation();
                if matches!(take, Take::Wait { .. }) {
                    receiver = Some(entry.changed.subscribe());
                }
            }
        }
    }
}

/// Asks the collector for `amount` tokens of `key` in the background and applies
/// the answer to its lease, unless the lease was reset since the ask was started at
/// `generation` (the answer would be by the policy as it was).
fn spawn_ask(shared: &Arc<Shared>, key: &str, amount: u64, generation: u64) {
    let (quota, attributes) = match shared.leases.lock().get(key) {
        Some(entry) if entry.lease.generation() == generation => (entry.quota.clone(), entry.attributes.clone()),
        _ => return,
    };
    let client = shared.client.clone();
    let shared_key = key.to_owned();
    let sent = Instant::now();
    let shared = shared.clone();
    tokio::spawn(async move {
        let answer = client.check(QuotaAttributes::clone(&attributes), [(quota.to_string(), amount as i64)], true).await;
        let mut leases = shared.leases.lock();
        let Some(entry) = leases.get_mut(&shared_key) else { return };
        if entry.lease.generation() != generation {
            // Reset while the ask was out; the reset woke the requests waiting on it.
            return;
        }
        match answer.as_ref().map(|results| results.get(&*quota)) {
            Ok(Some(result)) => entry.lease.granted(sent, grant_of(result, amount)),
            Ok(None) | Err(_) => entry.lease.failed(Instant::now()),
        }
        entry.changed.send_replace(());
    });
}

/// A denying quota's state (callers flip `denied` for the others).
/// `reset` serves as the retry time too: the proxy's own leases know only when they may
/// ask again.
fn limit_status(matched: &Matched<'_>, remaining: u64, reset: Duration) -> LimitStatus {
    LimitStatus {
        name: matched.policy.name().to_owned(),
        limit: matched.limit.max_amount,
        window: matched.limit.valid_duration,
        remaining,
        reset,
        retry: reset,
        denied: true,
    }
}

/// The limit status the collector reported, falling back to the policy's own limit;
/// `denied` when the answer denies.
fn remote_status(matched: &Matched<'_>, result: &QuotaResult) -> LimitStatus {
    let (reset_after, retry_after) = (duration_of(result.reset_after.as_ref()), duration_of(result.retry_after.as_ref()));
    let reset = reset_after.or(retry_after).unwrap_or_default();
    let mut status = limit_status(matched, u64::try_from(result.remaining).unwrap_or(0), reset);
    status.retry = retry_after.or(reset_after).unwrap_or_default();
    status.denied = !passes(result);
    if result.limit > 0 {
        status.limit = u64::try_from(result.limit).unwrap_or(status.limit);
    }
    if let Some(window) = duration_of(result.window.as_ref()).filter(|w| !w.is_zero()) {
        status.window = window;
    }
    status
}
