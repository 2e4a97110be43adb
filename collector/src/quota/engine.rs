//! [`QuotaEngine`]: policies in force, sharded counters, decisions.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meshtel_model::graph::{SystemUnixClock, UnixClock};
use meshtel_model::mixer::{QuotaAttributes, QuotaPolicies};
use meshtel_model::quota::{Limit, QuotaPolicy, QuotaPolicySpec, Resolved, StoredPolicy};
use parking_lot::{Mutex, RwLock};
use prometheus::Registry;
use tokio::sync::watch;
use tracing::{info, warn};

use super::config::QuotaConfig;
use super::counter::{Counter, Mode, nanos};
use super::dedup::Dedup;
use super::metrics::{QuotaMetrics, ResultCounters};
use super::policies::{PolicyEntry, PolicyLoad, PolicySet, QuotaStats, compile_set};
use crate::error::Result;

mod table;

/// Counter shards; a power of two.
const SHARDS: usize = 64;
/// How long a grant that no counter governs (unknown quota, policy not matching) may
/// be used: Mixer's `defaultValidDuration`.
pub const UNGOVERNED_VALID_DURATION: Duration = Duration::from_secs(60);
/// A full shard looks for idle counters to evict at most this often.
const FULL_SCAN_INTERVAL_NS: u64 = 10_000_000;

/// What became of one quota request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuotaOutcome {
    /// Granted by a counter (in full, or the remainder with best effort).
    Granted,
    /// Not granted: the limit is used up.
    Denied,
    /// Over the limit, granted anyway: the policy is in shadow mode.
    ShadowDenied,
    /// No policy has this name; granted in full (fail-open), status `NOT_FOUND`.
    UnknownQuota,
    /// The policy's match does not hold for the request; granted in full, uncounted.
    NotApplicable,
    /// The policy is `unlimited`; granted in full, no counter.
    Unlimited,
    /// The counter table is full (`max_keys`) and nothing was idle; granted in full,
    /// uncounted (fail-open).
    Overflow,
}

impl QuotaOutcome {
    /// The `result` label of `meshtel_quota_checks_total`.
    pub fn label(self) -> &'static str {
        match self {
            QuotaOutcome::Granted | QuotaOutcome::Unlimited => "granted",
            QuotaOutcome::NotApplicable => "not_applicable",
            QuotaOutcome::Denied => "denied",
            QuotaOutcome::ShadowDenied => "shadow_denied",
            QuotaOutcome::UnknownQuota => "unknown_quota",
            QuotaOutcome::Overflow => "overflow",
        }
    }
}

/// The decision for one quota of one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuotaDecision {
    /// What happened.
    pub outcome: QuotaOutcome,
    /// Amount granted: without best effort 0 or the amount asked, with it anything in
    /// between.
    pub granted: u64,
    /// How long the grant may be used: until the window ends (fixed window), until the
    /// grant leaves the window (rolling), until the next token (token bucket).
    pub valid_duration: Duration,
    /// When denied: when the amount could be granted.
    pub retry_after: Option<Duration>,
    /// The limit that applied (0 when none did, or when it is a limit of 0).
    pub limit: u64,
    /// What is left of it.
    pub remaining: u64,
    /// Until the window resets (or the bucket is full again).
    pub reset_after: Duration,
    /// The window (or refill period) of the limit that applied.
    pub window: Duration,
}

impl QuotaDecision {
    /// The decision for a request no counter governs (`granted` in full).
    fn ungoverned(outcome: QuotaOutcome, amount: u64, valid: Duration) -> QuotaDecision {
        QuotaDecision {
            outcome,
            granted: amount,
            valid_duration: valid,
            retry_after: None,
            limit: 0,
            remaining: 0,
            reset_after: Duration::ZERO,
            window: Duration::ZERO,
        }
    }

    /// True when the request must not pass.
    pub fn is_denied(&self) -> bool {
        self.outcome == QuotaOutcome::Denied
    }

    /// The gRPC code of the result: `RESOURCE_EXHAUSTED` when denied, `NOT_FOUND` for
    /// an unknown quota, else `OK`.
    pub fn code(&self) -> tonic::Code {
        match self.outcome {
            QuotaOutcome::Denied => tonic::Code::ResourceExhausted,
            QuotaOutcome::UnknownQuota => tonic::Code::NotFound,
            _ => tonic::Code::Ok,
        }
    }

    /// The decision `elapsed_ns` later (for a remembered one).
    fn aged(&self, elapsed_ns: u64) -> QuotaDecision {
        let elapsed = Duration::from_nanos(elapsed_ns);
        QuotaDecision {
            valid_duration: self.valid_duration.saturating_sub(elapsed),
            retry_after: self.retry_after.map(|d| d.saturating_sub(elapsed)),
            reset_after: self.reset_after.saturating_sub(elapsed),
            ..*self
        }
    }
}

/// A decision with the counter it was charged to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuotaResult {
    /// The decision.
    pub decision: QuotaDecision,
    /// The counter key (`name;dim=value;...`); empty when no counter applied.
    pub key: String,
    /// The policy is in shadow mode.
    pub shadow: bool,
}

impl QuotaResult {
    pub(crate) fn aged(&self, elapsed_ns: u64) -> QuotaResult {
        QuotaResult {
            decision: self.decision.aged(elapsed_ns),
            key: self.key.clone(),
            shadow: self.shadow,
        }
    }
}

/// A policy looked up once, for callers that resolve keys themselves
/// ([`QuotaEngine::charge`]). A handle of a removed policy answers as an unknown
/// quota; fetch handles again when [`QuotaEngine::revision`] changes so that edits
/// apply.
#[derive(Clone)]
pub struct QuotaHandle(pub(crate) Arc<PolicyEntry>);

impl QuotaHandle {
    /// The compiled policy (to [`QuotaPolicy::resolve`] keys with).
    pub fn policy(&self) -> &QuotaPolicy {
        &self.0.policy
    }
}

/// [`QuotaPolicy::resolve`] with the dimension values on the stack (policies have at
/// most 16 dimensions; more fall back to the allocating path).
fn resolve_without_allocating_values(policy: &QuotaPolicy, attrs: &QuotaAttributes) -> Resolved {
    const MAX: usize = 16;
    if policy.dimensions.len() > MAX {
        return policy.resolve(attrs);
    }
    let mut values = [""; MAX];
    for (slot, (_, expr)) in values.iter_mut().zip(&policy.dimensions) {
        *slot = expr.eval(attrs);
    }
    policy.resolve_values(&values[..policy.dimensions.len()])
}

/// A live counter and the quota it belongs to.
pub(crate) struct Slot {
    pub quota: Arc<str>,
    pub counter: Counter,
    /// Named by a client ([`Chargee::client_named`]): counted in `override_keys`.
    pub client_named: bool,
}

type CounterMap = HashMap<Box<str>, Slot, foldhash::fast::RandomState>;

/// One lock's worth of counters, on its own cache lines.
#[repr(align(128))]
#[derive(Default)]
struct Shard {
    map: Mutex<CounterMap>,
}

/// Who is charged, for [`QuotaEngine::charge_key`].
pub(crate) struct Chargee<'a> {
    pub quota: &'a Arc<str>,
    pub results: &'a ResultCounters,
    pub stats: Option<&'a QuotaStats>,
    pub shadow: bool,
    /// A counter a client names itself (Envoy's limit overrides): these may take half
    /// of the table at most ([`QuotaEngine::override_keys`]), so that they cannot
    /// crowd out the policies' counters.
    pub client_named: bool,
}

impl<'a> Chargee<'a> {
    pub fn of(entry: &'a PolicyEntry) -> Chargee<'a> {
        Chargee {
            quota: &entry.name,
            results: &entry.results,
            stats: Some(&entry.stats),
            shadow: entry.shadow(),
            client_named: false,
        }
    }
}

/// The quota engine: compiled policies (swapped whole on change), counters in 64
/// shards keyed by counter key, exact decisions under concurrency (each decision is
/// one critical section on its key's shard), memory bounded by
/// [`QuotaConfig::max_keys`] with idle eviction, and deduplication of retried Checks.
///
/// Share it as `Arc<QuotaEngine>` between the Check and RLS services, the policy
/// sync task ([`super::spawn_policy_sync`]), the sweeper
/// ([`super::spawn_quota_sweeper`]) and the usage API
/// ([`meshtel_model::quota::QuotaUsageReader`]).
pub struct QuotaEngine {
    config: QuotaConfig,
    clock: Arc<dyn UnixClock>,
    policies: RwLock<Arc<PolicySet>>,
    shards: Box<[Shard]>,
    shard_hasher: foldhash::fast::FixedState,
    keys: AtomicUsize,
    /// Live counters that clients named ([`Chargee::client_named`]), at most half of
    /// `max_keys`.
    override_keys: AtomicUsize,
    dedup: Dedup,
    pub(crate) metrics: QuotaMetrics,
    watch: watch::Sender<QuotaPolicies>,
    closing: watch::Sender<bool>,
    /// Keeps the overflow of a full table from being logged per request.
    overflow_logged_ns: AtomicU64,
    /// Last time a full table looked for idle counters.
    last_full_scan_ns: AtomicU64,
}

impl QuotaEngine {
    /// An engine with no policies, reading time from `clock`.
    pub fn new(config: QuotaConfig, clock: Arc<dyn UnixClock>) -> Result<QuotaEngine> {
        config.validate()?;
        let metrics = QuotaMetrics::new()?;
        let (watch, _) = watch::channel(QuotaPolicies {
            revision: 0,
            policies_json: "[]".into(),
            incarnations: Vec::new(),
        });
        let (closing, _) = watch::channel(false);
        Ok(QuotaEngine {
            dedup: Dedup::new(
                nanos(config.dedup_window),
                config.max_keys,
                metrics.dedup_full.clone(),
            ),
            config,
            clock,
            policies: RwLock::new(Arc::new(PolicySet::default())),
            shards: (0..SHARDS).map(|_| Shard::default()).collect(),
            shard_hasher: foldhash::fast::FixedState::with_seed(0x71_756f_7461),
            override_keys: AtomicUsize::new(0),
            keys: AtomicUsize::new(0),
            metrics,
            watch,
            closing,
            overflow_logged_ns: AtomicU64::new(0),
            last_full_scan_ns: AtomicU64::new(0),
        })
    }

    /// An engine on the system clock: what the binary builds.
    pub fn with_system_clock(config: QuotaConfig) -> Result<QuotaEngine> {
        QuotaEngine::new(config, Arc::new(SystemUnixClock))
    }

    /// The settings.
    pub fn config(&self) -> &QuotaConfig {
        &self.config
    }

    /// Now, from the engine's clock.
    pub(crate) fn now(&self) -> u64 {
        self.clock.now_unix_nano()
    }

    /// The policy set in force.
    pub(crate) fn policy_set(&self) -> Arc<PolicySet> {
        self.policies.read().clone()
    }

    /// Replaces the policies: each spec is compiled (invalid ones are logged with their
    /// field errors and skipped), the new set applies to the next decision, counters of
    /// removed policies (and of policies keyed by other dimensions now) are dropped, and
    /// WatchQuotas streams get the new set.
    pub fn set_policies(&self, revision: i64, specs: Vec<QuotaPolicySpec>) -> PolicyLoad {
        self.load_policies(revision, specs.into_iter().map(|spec| (spec, 0)).collect())
    }

    /// [`Self::set_policies`] with the store's policies: one deleted and created again
    /// since the last load (another [`StoredPolicy::incarnation`]) starts its counters
    /// and usage totals again, as a deleted policy's are dropped.
    pub fn set_stored_policies(&self, revision: i64, policies: Vec<StoredPolicy>) -> PolicyLoad {
        self.load_policies(
            revision,
            policies
                .into_iter()
                .map(|p| (p.spec, p.incarnation))
                .collect(),
        )
    }

    fn load_policies(&self, revision: i64, specs: Vec<(QuotaPolicySpec, u64)>) -> PolicyLoad {
        let mut guard = self.policies.write();
        let (set, valid_specs, load) = compile_set(revision, specs, &guard, &self.metrics);
        *guard = Arc::new(set);
        drop(guard);
        if !load.removed.is_empty() || !load.rekeyed.is_empty() || !load.recreated.is_empty() {
            let mut quotas: Vec<String> = load
                .removed
                .iter()
                .chain(&load.rekeyed)
                .chain(&load.recreated)
                .cloned()
                .collect();
            quotas.sort();
            let dropped = self.drop_counters_of(&quotas);
            info!(
                revision,
                removed = load.removed.len(),
                rekeyed = load.rekeyed.len(),
                recreated = load.recreated.len(),
                counters = dropped,
                "quota counters of removed, rekeyed or recreated policies dropped"
            );
        }
        let (valid_specs, incarnations): (Vec<QuotaPolicySpec>, Vec<u64>) =
            valid_specs.into_iter().unzip();
        let policies_json = match serde_json::to_string(&valid_specs) {
            Ok(json) => json,
            Err(error) => {
                warn!(revision, error = %error, "quota policies not serializable for WatchQuotas");
                "[]".into()
            }
        };
        self.watch.send_replace(QuotaPolicies {
            revision,
            policies_json,
            incarnations,
        });
        info!(
            revision,
            loaded = load.loaded,
            invalid = load.invalid.len(),
            "quota policies loaded"
        );
        load
    }

    /// The revision of the policies in force (0 before the first load).
    pub fn revision(&self) -> i64 {
        self.policies.read().revision
    }

    /// The policies in force now and after every change, as WatchQuotas sends them.
    pub fn watch_policies(&self) -> watch::Receiver<QuotaPolicies> {
        self.watch.subscribe()
    }

    /// Becomes true once [`Self::close_watchers`] is called.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closing.subscribe()
    }

    /// Ends every WatchQuotas stream (call before a graceful server shutdown, which
    /// otherwise waits for these endless streams).
    pub fn close_watchers(&self) {
        self.closing.send_replace(true);
    }

    /// Names of the policies in force, sorted.
    pub fn policy_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.policies.read().by_name.keys().cloned().collect();
        names.sort();
        names
    }

    /// A handle on a policy for [`Self::charge`].
    pub fn handle(&self, quota: &str) -> Option<QuotaHandle> {
        self.policies
            .read()
            .lookup(quota)
            .map(|e| QuotaHandle(e.clone()))
    }

    /// The policies a Check naming `quota` may be decided by: the one of that name, else
    /// every `<quota>.*` one ([`Self::check`]; which of them decides depends on their
    /// matches). Empty for an unknown quota.
    pub fn handles_for(&self, quota: &str) -> Vec<QuotaHandle> {
        let set = self.policies.read();
        match set.lookup(quota) {
            Some(entry) => vec![QuotaHandle(entry.clone())],
            None => set
                .splits_of(quota)
                .unwrap_or_default()
                .iter()
                .map(|entry| QuotaHandle(entry.clone()))
                .collect(),
        }
    }

    /// Decides one quota of one request from its attributes: the policy named `quota`
    /// (none: the first policy named `<quota>.<rest>` whose match holds, as an imported
    /// Mixer instance bound to several services becomes; unknown → granted in full,
    /// `NOT_FOUND`), its match, its counter key and limit ([`QuotaPolicy::resolve`]),
    /// then the counter.
    pub fn check(
        &self,
        attrs: &QuotaAttributes,
        quota: &str,
        amount: u64,
        best_effort: bool,
    ) -> QuotaResult {
        let started = Instant::now();
        let set = self.policies.read();
        let entry = set.lookup(quota).or_else(|| {
            let split = set.splits_of(quota)?;
            // None of them matching is not an unknown quota: the first answers
            // "not applicable".
            split
                .iter()
                .find(|entry| entry.policy.matches(attrs))
                .or_else(|| split.first())
        });
        let result = match entry {
            None => {
                self.metrics.unknown_quota.inc();
                QuotaResult {
                    decision: QuotaDecision::ungoverned(
                        QuotaOutcome::UnknownQuota,
                        amount,
                        UNGOVERNED_VALID_DURATION,
                    ),
                    key: String::new(),
                    shadow: false,
                }
            }
            Some(entry) => self.check_entry(entry, attrs, amount, best_effort),
        };
        drop(set);
        self.metrics
            .decision_seconds
            .observe(started.elapsed().as_secs_f64());
        result
    }

    /// [`Self::check`] remembered under (`deduplication_id`, `quota`): a retry within
    /// the dedup window gets the same answer and is not charged again.
    pub fn check_deduplicated(
        &self,
        deduplication_id: &str,
        attrs: &QuotaAttributes,
        quota: &str,
        amount: u64,
        best_effort: bool,
    ) -> QuotaResult {
        if deduplication_id.is_empty() {
            return self.check(attrs, quota, amount, best_effort);
        }
        self.dedup
            .remember(deduplication_id, quota, self.now(), || {
                self.check(attrs, quota, amount, best_effort)
            })
    }

    fn check_entry(
        &self,
        entry: &PolicyEntry,
        attrs: &QuotaAttributes,
        amount: u64,
        best_effort: bool,
    ) -> QuotaResult {
        if !entry.policy.matches(attrs) {
            entry.results.not_applicable.inc();
            return QuotaResult {
                decision: QuotaDecision::ungoverned(
                    QuotaOutcome::NotApplicable,
                    amount,
                    UNGOVERNED_VALID_DURATION,
                ),
                key: String::new(),
                shadow: false,
            };
        }
        if entry.unlimited() {
            entry.results.granted.inc();
            entry.stats.record(amount, false);
            return QuotaResult {
                decision: QuotaDecision::ungoverned(
                    QuotaOutcome::Unlimited,
                    amount,
                    entry.policy.limit.valid_duration,
                ),
                key: String::new(),
                shadow: false,
            };
        }
        let resolved = resolve_without_allocating_values(&entry.policy, attrs);
        let decision = self.charge_key(
            &Chargee::of(entry),
            &resolved.key,
            &resolved.limit,
            amount,
            best_effort,
        );
        QuotaResult {
            decision,
            key: resolved.key,
            shadow: entry.shadow(),
        }
    }

    /// The fast path: charges `amount` to counter `key` of the policy behind `handle`
    /// under `limit` (both usually from [`QuotaPolicy::resolve`], computed once by the
    /// caller). No match is evaluated; an unlimited policy grants without a counter.
    pub fn charge(
        &self,
        handle: &QuotaHandle,
        key: &str,
        limit: &Limit,
        amount: u64,
        best_effort: bool,
    ) -> QuotaDecision {
        let entry = &*handle.0;
        if entry.removed.load(Ordering::Relaxed) {
            self.metrics.unknown_quota.inc();
            return QuotaDecision::ungoverned(
                QuotaOutcome::UnknownQuota,
                amount,
                UNGOVERNED_VALID_DURATION,
            );
        }
        if entry.unlimited() {
            entry.results.granted.inc();
            entry.stats.record(amount, false);
            return QuotaDecision::ungoverned(
                QuotaOutcome::Unlimited,
                amount,
                limit.valid_duration,
            );
        }
        self.charge_key(&Chargee::of(entry), key, limit, amount, best_effort)
    }

    /// Charges one counter: one critical section on the key's shard.
    /// [`Self::charge_key`] with amount 0: the decision a charge would report (what is
    /// left, when it resets), charging nothing and counting nothing.
    pub(crate) fn peek_key(&self, key: &str, limit: &Limit) -> QuotaDecision {
        let now = self.now();
        let check_only = Mode::Enforce { best_effort: false };
        let shard = &self.shards[self.shard_of(key)];
        let mut map = shard.map.lock();
        let step = match map.get_mut(key) {
            Some(slot) => slot.counter.charge(limit, 0, check_only, now),
            None => Counter::new(limit, now).charge(limit, 0, check_only, now),
        };
        drop(map);
        QuotaDecision {
            outcome: QuotaOutcome::Granted,
            granted: 0,
            valid_duration: Duration::from_nanos(step.valid_ns),
            retry_after: None,
            limit: limit.max_amount,
            remaining: step.remaining,
            reset_after: Duration::from_nanos(step.reset_ns),
            window: limit.valid_duration,
        }
    }

    pub(crate) fn charge_key(
        &self,
        who: &Chargee<'_>,
        key: &str,
        limit: &Limit,
        amount: u64,
        best_effort: bool,
    ) -> QuotaDecision {
        let now = self.now();
        let mode = if who.shadow {
            Mode::Shadow { best_effort }
        } else {
            Mode::Enforce { best_effort }
        };
        let shard = &self.shards[self.shard_of(key)];
        let mut map = shard.map.lock();
        let step = match map.get_mut(key) {
            Some(slot) => slot.counter.charge(limit, amount, mode, now),
            None => {
                if !self.place_counter(who, shard, &mut map, now) {
                    drop(map);
                    who.results.overflow.inc();
                    self.log_overflow(who.quota, now);
                    return QuotaDecision {
                        window: limit.valid_duration,
                        limit: limit.max_amount,
                        ..QuotaDecision::ungoverned(
                            QuotaOutcome::Overflow,
                            amount,
                            limit.valid_duration,
                        )
                    };
                }
                let mut counter = Counter::new(limit, now);
                let step = counter.charge(limit, amount, mode, now);
                map.insert(
                    key.into(),
                    Slot {
                        quota: who.quota.clone(),
                        counter,
                        client_named: who.client_named,
                    },
                );
                step
            }
        };
        drop(map);
        let outcome = match (step.denied, who.shadow) {
            (false, _) => QuotaOutcome::Granted,
            (true, false) => QuotaOutcome::Denied,
            (true, true) => QuotaOutcome::ShadowDenied,
        };
        match outcome {
            QuotaOutcome::Granted => who.results.granted.inc(),
            QuotaOutcome::Denied => who.results.denied.inc(),
            _ => who.results.shadow_denied.inc(),
        }
        if let Some(stats) = who.stats {
            stats.record(step.granted, step.denied);
        }
        QuotaDecision {
            outcome,
            granted: step.granted,
            valid_duration: Duration::from_nanos(step.valid_ns),
            retry_after: step.denied.then(|| Duration::from_nanos(step.retry_ns)),
            limit: limit.max_amount,
            remaining: step.remaining,
            reset_after: Duration::from_nanos(step.reset_ns),
            window: limit.valid_duration,
        }
    }

    fn shard_of(&self, key: &str) -> usize {
        // High bits: the maps inside use the low bits (and the top 7) of their own hash.
        (self.shard_hasher.hash_one(key) >> 40) as usize & (SHARDS - 1)
    }

    /// The quota metrics' registry (to gather or merge).
    pub fn registry(&self) -> &Registry {
        self.update_key_gauge();
        &self.metrics.registry
    }

    /// Appends every `meshtel_quota_*` family to `out` in the Prometheus text format.
    pub fn render_metrics(&self, out: &mut String) {
        self.update_key_gauge();
        self.metrics.render(out);
    }

    /// Calls `visit` with every live counter, one shard lock at a time.
    pub(crate) fn for_each_counter(&self, mut visit: impl FnMut(&str, &Slot)) {
        for shard in self.shards.iter() {
            let map = shard.map.lock();
            for (key, slot) in map.iter() {
                visit(key, slot);
            }
        }
    }

    /// Retained results of deduplication, for tests.
    #[cfg(test)]
    pub(crate) fn dedup_len(&self) -> usize {
        self.dedup.len()
    }
}
