//! The compiled policy set the engine decides with, swapped whole on every change.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use meshtel_model::quota::{FieldError, QuotaPolicy, QuotaPolicySpec};
use tracing::warn;

use super::metrics::{QuotaMetrics, ResultCounters};

/// Totals of one quota since the collector started (kept across policy edits), as the
/// engine sees them: Check decisions, not requests. A proxy leases tokens ahead and,
/// after a denied Check, answers the requests that follow 429 by itself until the
/// window resets; those requests are counted by `istio_requests_total{response_code=
/// "429",response_flags="RL"}`, not here. The usage API shows these as
/// `tokensGranted` / `checksDenied`.
#[derive(Debug, Default)]
pub(crate) struct QuotaStats {
    /// Tokens granted (a lease counts every token it holds, used or not).
    pub granted: AtomicU64,
    /// Check decisions that denied (shadow ones included): one per denied Check, however
    /// many requests the proxy then answers 429 from that denial.
    pub denied: AtomicU64,
}

impl QuotaStats {
    /// Counts one Check decision: the tokens it granted, or one denial.
    pub fn record(&self, granted: u64, denied: bool) {
        if denied {
            self.denied.fetch_add(1, Ordering::Relaxed);
        } else if granted > 0 {
            self.granted.fetch_add(granted, Ordering::Relaxed);
        }
    }
}

/// One compiled policy with what the engine keeps beside it.
pub(crate) struct PolicyEntry {
    /// The policy's name, shared by its counters.
    pub name: Arc<str>,
    pub policy: QuotaPolicy,
    pub stats: Arc<QuotaStats>,
    pub results: ResultCounters,
    /// Set once the policy is no longer in the engine (handles held by callers then
    /// answer as for an unknown quota).
    pub removed: AtomicBool,
    /// Names of the `;name=value` parts of this policy's counter keys, in order.
    pub key_dimensions: Vec<String>,
    /// Which creation of its name this is (see `StoredPolicy::incarnation`).
    pub incarnation: u64,
}

impl PolicyEntry {
    /// Whether the policy counts in shadow mode.
    pub fn shadow(&self) -> bool {
        self.policy.spec.shadow
    }

    /// Whether the policy keeps no counter.
    pub fn unlimited(&self) -> bool {
        self.policy.spec.unlimited
    }

    /// Dimension values of a counter key of this policy (best effort: a value holding
    /// `;<next dimension>=` is cut there).
    pub fn key_dimension_values(&self, key: &str) -> Vec<(String, String)> {
        let mut out = Vec::with_capacity(self.key_dimensions.len());
        let Some(mut rest) = key.strip_prefix(&*self.name) else {
            return out;
        };
        for (i, name) in self.key_dimensions.iter().enumerate() {
            let Some(after) = rest
                .strip_prefix(';')
                .and_then(|r| r.strip_prefix(name.as_str()))
                .and_then(|r| r.strip_prefix('='))
            else {
                break;
            };
            let end = match self.key_dimensions.get(i + 1) {
                Some(next) => after.find(&format!(";{next}=")).unwrap_or(after.len()),
                None => after.len(),
            };
            out.push((name.clone(), after[..end].to_string()));
            rest = &after[end..];
        }
        out
    }
}

/// The policies in force.
#[derive(Default)]
pub(crate) struct PolicySet {
    pub revision: i64,
    /// Check: by policy name (policies bound to the RLS API included; they never match
    /// attributes).
    pub by_name: HashMap<String, Arc<PolicyEntry>>,
    /// RLS: policies with `rateLimit`, by domain, in name order.
    pub domains: HashMap<String, Vec<Arc<PolicyEntry>>>,
    /// Check: the policies named `<quota>.<rest>`, by `<quota>`, in name order: what
    /// `meshtel quota import` makes of a Mixer quota instance bound to several
    /// services (one policy per service), which a Mixer-era client still names by
    /// the instance.
    pub splits: HashMap<String, Vec<Arc<PolicyEntry>>>,
}

impl PolicySet {
    /// The policy a Check names: exact name, else case-insensitively (Mixer compares
    /// quota names with `EqualFold`; policy names are lower-case).
    pub fn lookup(&self, quota: &str) -> Option<&Arc<PolicyEntry>> {
        match self.by_name.get(quota) {
            Some(entry) => Some(entry),
            None if quota.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.by_name.get(&quota.to_ascii_lowercase())
            }
            None => None,
        }
    }

    /// The policies a Check naming `quota` falls back to when no policy has that name
    /// (see `splits`), compared as [`Self::lookup`] compares names.
    pub fn splits_of(&self, quota: &str) -> Option<&[Arc<PolicyEntry>]> {
        let split = match self.splits.get(quota) {
            Some(split) => split,
            None if quota.bytes().any(|b| b.is_ascii_uppercase()) => {
                self.splits.get(&quota.to_ascii_lowercase())?
            }
            None => return None,
        };
        Some(split.as_slice())
    }
}

/// A policy refused while loading a set.
#[derive(Debug, Clone, PartialEq)]
pub struct InvalidPolicy {
    /// The policy's name as given.
    pub name: String,
    /// Why it was refused.
    pub errors: Vec<FieldError>,
}

/// What [`super::QuotaEngine::set_policies`] did.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PolicyLoad {
    /// Policies now in force.
    pub loaded: usize,
    /// Policies skipped as invalid (or as a second policy of the same name).
    pub invalid: Vec<InvalidPolicy>,
    /// Policies that were in force and are not any more (their counters are dropped).
    pub removed: Vec<String>,
    /// Policies still in force whose counter keys changed (other dimensions): their
    /// counters could never be charged again, and are dropped too.
    pub rekeyed: Vec<String>,
    /// Policies deleted and created again since the last load (another incarnation):
    /// their counters and usage totals start again, as for a policy removed and added.
    pub recreated: Vec<String>,
}

/// Names of the key parts after the policy name.
fn key_dimensions(policy: &QuotaPolicy) -> Vec<String> {
    let mut names: Vec<String> = policy.dimensions.iter().map(|(n, _)| n.clone()).collect();
    if let Some(rl) = &policy.spec.rate_limit {
        names.extend(
            rl.descriptors
                .iter()
                .filter(|e| e.value.as_deref().is_some_and(|v| v.ends_with('*')))
                .map(|e| e.key.clone()),
        );
    }
    names
}

/// Compiles `specs` into a set; invalid ones are logged and skipped. Per-quota totals
/// carry over from `previous` by name. Also returns the valid specs in name order.
pub(crate) fn compile_set(
    revision: i64,
    specs: Vec<(QuotaPolicySpec, u64)>,
    previous: &PolicySet,
    metrics: &QuotaMetrics,
) -> (PolicySet, Vec<(QuotaPolicySpec, u64)>, PolicyLoad) {
    let mut set = PolicySet {
        revision,
        ..PolicySet::default()
    };
    let mut load = PolicyLoad::default();
    let mut valid_specs = Vec::with_capacity(specs.len());
    // In name order (stable: of two policies of one name, the first given stays
    // first), so that of two policies for the same rate-limit descriptors the first by
    // name is the one loaded.
    let mut specs = specs;
    specs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    for (spec, incarnation) in specs {
        let policy = match spec.compile() {
            Ok(policy) => policy,
            Err(errors) => {
                let joined = errors
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join("; ");
                warn!(quota = %spec.name, revision, errors = %joined, "invalid quota policy skipped");
                load.invalid.push(InvalidPolicy {
                    name: spec.name,
                    errors,
                });
                continue;
            }
        };
        if set.by_name.contains_key(&spec.name) {
            warn!(quota = %spec.name, revision, "second quota policy of the same name skipped");
            load.invalid.push(InvalidPolicy {
                name: spec.name.clone(),
                errors: vec![FieldError {
                    field: "name".into(),
                    message: "another policy has this name".into(),
                }],
            });
            continue;
        }
        // The API refuses a second policy for the same descriptors, but two writes
        // can race: the first by name applies, the other is reported and not loaded.
        if let Some(rl) = &spec.rate_limit
            && let Some(first) = set.domains.get(&rl.domain).and_then(|list| {
                list.iter().find(|e| {
                    e.policy
                        .spec
                        .rate_limit
                        .as_ref()
                        .is_some_and(|o| o.same_descriptors(rl))
                })
            })
        {
            warn!(quota = %spec.name, first = %first.name, domain = %rl.domain, revision,
                "quota policy limits the same rate-limit descriptors as another; only the first by name is loaded");
            load.invalid.push(InvalidPolicy {
                name: spec.name.clone(),
                errors: vec![FieldError {
                    field: "rateLimit.descriptors".into(),
                    message: format!(
                        "policy {:?} already limits these descriptors in domain {:?}",
                        first.name, rl.domain
                    ),
                }],
            });
            continue;
        }
        let mut before = previous.by_name.get(&spec.name);
        if before.is_some_and(|e| e.incarnation != incarnation) {
            load.recreated.push(spec.name.clone());
            before = None;
        }
        let stats = before.map_or_else(Arc::default, |e| e.stats.clone());
        let key_dimensions = key_dimensions(&policy);
        if before.is_some_and(|e| e.key_dimensions != key_dimensions) {
            load.rekeyed.push(spec.name.clone());
        }
        let entry = Arc::new(PolicyEntry {
            name: Arc::from(spec.name.as_str()),
            key_dimensions,
            results: metrics.results_for(&spec.name),
            stats,
            removed: AtomicBool::new(false),
            policy,
            incarnation,
        });
        if let Some(rl) = &spec.rate_limit {
            set.domains
                .entry(rl.domain.clone())
                .or_default()
                .push(entry.clone());
        }
        if let Some((quota, _)) = spec.name.split_once('.') {
            set.splits
                .entry(quota.to_owned())
                .or_default()
                .push(entry.clone());
        }
        set.by_name.insert(spec.name.clone(), entry);
        valid_specs.push((spec, incarnation));
    }
    for list in set.domains.values_mut().chain(set.splits.values_mut()) {
        list.sort_by(|a, b| a.name.cmp(&b.name));
    }
    valid_specs.sort_by(|a, b| a.0.name.cmp(&b.0.name));
    load.loaded = set.by_name.len();
    for (name, entry) in &previous.by_name {
        if !set.by_name.contains_key(name) {
            load.removed.push(name.clone());
            metrics.forget(name);
            entry.removed.store(true, Ordering::Relaxed);
        }
    }
    for domain in set.domains.keys() {
        metrics.rls_domain(domain);
    }
    for domain in previous.domains.keys() {
        if !set.domains.contains_key(domain) {
            metrics.forget_rls_domain(domain);
        }
    }
    load.removed.sort();
    load.rekeyed.sort();
    (set, valid_specs, load)
}
