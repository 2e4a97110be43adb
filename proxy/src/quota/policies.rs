//! The quota policies in force at this proxy, swapped in whole when the collector
//! sends a new set, and the per-request attributes they are evaluated against.
//!
//! Only policies that can match at this proxy are kept: a policy whose destination
//! requirements this proxy's own service and workload do not meet never matches an
//! inbound request here. With none left, [`PolicyCell::is_empty`] is one atomic load
//! and the request path pays nothing else.
//!
//! Each policy of a published set carries a generation number: kept from the set
//! before when its spec and incarnation are the same, a new (higher) one when it is
//! new, changed, or deleted and created again (another incarnation, even between two
//! sets).
//! Leases follow it (see [`super::Lease::follow_policy`]), so that an edit resets the
//! leases of the edited policy's counters and no other.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use http::HeaderMap;
use meshtel_model::mixer::Workload;
use meshtel_model::quota::{AttributeRef, FieldError, QuotaAttributes, QuotaPolicy, QuotaPolicySpec};
use parking_lot::RwLock;

use crate::mesh::WorkloadIdentity;

/// One compiled set of policies, as published to the request path.
#[derive(Debug, Default)]
pub struct PolicySet {
    /// The collector's revision of the set.
    pub revision: i64,
    /// Policies that can match at this proxy, in the order received.
    pub policies: Vec<QuotaPolicy>,
    /// The generation of each of `policies` (same index), numbered by
    /// [`PolicyCell::store`]; 0 before.
    pub generations: Vec<u64>,
    /// Which creation of its name each of `policies` is (same index), as the
    /// collector numbers them; 0 when it does not say.
    pub incarnations: Vec<u64>,
    /// Lower-case names of the headers some policy reads.
    pub header_names: Vec<String>,
}

/// Why a policy of a received set was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedPolicy {
    /// Its name, when it had one.
    pub name: String,
    /// What is wrong with it.
    pub reason: String,
}

impl PolicySet {
    /// Parses the collector's JSON array of policy specs, compiles each, and keeps the
    /// ones that can match at `destination` (a destination-only attribute set). Bad
    /// entries are skipped and returned, never fatal to the others. `incarnations`
    /// numbers the entries' creations, in order (missing ones are 0).
    pub fn from_json(
        revision: i64,
        json: &str,
        incarnations: &[u64],
        destination: &QuotaAttributes,
    ) -> (PolicySet, Vec<SkippedPolicy>) {
        let mut skipped = Vec::new();
        let entries: Vec<serde_json::Value> = match serde_json::from_str(json) {
            Ok(entries) => entries,
            Err(error) => {
                skipped.push(SkippedPolicy { name: String::new(), reason: format!("policies are not a JSON array: {error}") });
                return (PolicySet { revision, ..PolicySet::default() }, skipped);
            }
        };
        let mut policies = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            let incarnation = incarnations.get(index).copied().unwrap_or(0);
            let name = entry.get("name").and_then(|n| n.as_str()).unwrap_or_default().to_owned();
            let spec: QuotaPolicySpec = match serde_json::from_value(entry) {
                Ok(spec) => spec,
                Err(error) => {
                    skipped.push(SkippedPolicy { name, reason: error.to_string() });
                    continue;
                }
            };
            match spec.compile() {
                Ok(policy) => policies.push((policy, incarnation)),
                Err(errors) => skipped.push(SkippedPolicy { name, reason: join_field_errors(&errors) }),
            }
        }
        (PolicySet::new(revision, policies, destination), skipped)
    }

    /// Keeps the policies of `policies` (each with its incarnation) that can match at
    /// `destination`.
    pub fn new(revision: i64, policies: Vec<(QuotaPolicy, u64)>, destination: &QuotaAttributes) -> PolicySet {
        let (policies, incarnations): (Vec<QuotaPolicy>, Vec<u64>) =
            policies.into_iter().filter(|(policy, _)| can_match_at(policy, destination)).unzip();
        let header_names: BTreeSet<String> = policies.iter().flat_map(QuotaPolicy::header_names).map(str::to_owned).collect();
        let generations = vec![0; policies.len()];
        PolicySet { revision, policies, generations, incarnations, header_names: header_names.into_iter().collect() }
    }

    /// The policies with their generations.
    pub fn with_generations(&self) -> impl Iterator<Item = (&QuotaPolicy, u64)> {
        self.policies.iter().zip(self.generations.iter().copied())
    }
}

/// Unlimited policies never deny and RLS-bound ones never match a request; a policy
/// whose destination requirements fail against this proxy never matches here.
fn can_match_at(policy: &QuotaPolicy, destination: &QuotaAttributes) -> bool {
    if policy.spec.unlimited || policy.spec.rate_limit.is_some() {
        return false;
    }
    policy
        .requirements
        .iter()
        .filter(|(attribute, _)| is_destination(attribute))
        .all(|(attribute, want)| attribute.value(destination) == want)
}

fn is_destination(attribute: &AttributeRef) -> bool {
    matches!(
        attribute,
        AttributeRef::DestinationService
            | AttributeRef::DestinationHost
            | AttributeRef::DestinationWorkload
            | AttributeRef::DestinationVersion
            | AttributeRef::DestinationNamespace
    )
}

fn join_field_errors(errors: &[FieldError]) -> String {
    errors.iter().map(FieldError::to_string).collect::<Vec<_>>().join("; ")
}

/// The published policy set: an atomically swapped snapshot plus an "any policy"
/// flag the request path reads first.
#[derive(Debug, Default)]
pub struct PolicyCell {
    any: AtomicBool,
    current: RwLock<Arc<PolicySet>>,
    /// The last generation given to a policy.
    last_generation: AtomicU64,
}

impl PolicyCell {
    /// True when no policy can match at this proxy.
    pub fn is_empty(&self) -> bool {
        !self.any.load(Ordering::Acquire)
    }

    /// The set in force.
    pub fn load(&self) -> Arc<PolicySet> {
        self.current.read().clone()
    }

    /// Publishes `set`, numbering its policies: one whose spec and incarnation are the
    /// same as in the set in force keeps its generation, a new, changed or re-created
    /// one gets the next. Returns the set as published.
    pub fn store(&self, mut set: PolicySet) -> Arc<PolicySet> {
        let mut current = self.current.write();
        let before: HashMap<&str, (&QuotaPolicySpec, u64, u64)> = current
            .with_generations()
            .zip(current.incarnations.iter().copied())
            .map(|((policy, generation), incarnation)| (policy.name(), (&policy.spec, incarnation, generation)))
            .collect();
        set.generations = set
            .policies
            .iter()
            .zip(set.incarnations.iter().copied())
            .map(|(policy, incarnation)| match before.get(policy.name()) {
                Some((spec, was, generation)) if **spec == policy.spec && *was == incarnation => *generation,
                _ => self.last_generation.fetch_add(1, Ordering::Relaxed) + 1,
            })
            .collect();
        let any = !set.policies.is_empty();
        let set = Arc::new(set);
        *current = set.clone();
        self.any.store(any, Ordering::Release);
        set
    }
}

/// The attributes of this proxy's inbound side that never change: destination
/// workload and service.
pub fn destination_attributes(identity: &WorkloadIdentity, service: &(String, String, String)) -> QuotaAttributes {
    QuotaAttributes {
        source: None,
        destination: Some(Workload {
            name: identity.name.clone(),
            namespace: identity.namespace.clone(),
            app: identity.app.clone(),
            version: identity.version.clone(),
            ..Default::default()
        }),
        destination_service_host: service.0.clone(),
        destination_service_name: service.1.clone(),
        destination_service_namespace: service.2.clone(),
        ..Default::default()
    }
}

/// One inbound request, borrowed from the pipeline.
#[derive(Debug, Clone, Copy)]
pub struct RequestView<'a> {
    /// The caller.
    pub source: &'a WorkloadIdentity,
    /// HTTP method.
    pub method: &'a str,
    /// Path and query (`request.path`; `request.url_path` is the part before `?`), as
    /// normalized for routing.
    pub path: &'a str,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

thread_local! {
    /// Reused per thread so that evaluating policies allocates nothing once warm.
    static SCRATCH: RefCell<QuotaAttributes> = RefCell::new(QuotaAttributes::default());
}

/// Fills this thread's scratch attributes for `request` at `destination` and runs
/// `evaluate` on them (synchronously: nothing may be held across an await).
pub fn with_attributes<T>(
    destination: &QuotaAttributes,
    request: RequestView<'_>,
    header_names: &[String],
    evaluate: impl FnOnce(&QuotaAttributes) -> T,
) -> T {
    SCRATCH.with(|scratch| {
        let mut attrs = scratch.borrow_mut();
        fill(&mut attrs, destination, request, header_names);
        evaluate(&attrs)
    })
}

fn fill(attrs: &mut QuotaAttributes, destination: &QuotaAttributes, request: RequestView<'_>, header_names: &[String]) {
    let source = attrs.source.get_or_insert_with(Workload::default);
    assign(&mut source.name, &request.source.name);
    assign(&mut source.namespace, &request.source.namespace);
    assign(&mut source.app, &request.source.app);
    assign(&mut source.version, &request.source.version);
    let own = attrs.destination.get_or_insert_with(Workload::default);
    if let Some(want) = &destination.destination {
        assign(&mut own.name, &want.name);
        assign(&mut own.namespace, &want.namespace);
        assign(&mut own.app, &want.app);
        assign(&mut own.version, &want.version);
    }
    assign(&mut attrs.destination_service_host, &destination.destination_service_host);
    assign(&mut attrs.destination_service_name, &destination.destination_service_name);
    assign(&mut attrs.destination_service_namespace, &destination.destination_service_namespace);
    assign(&mut attrs.request_method, request.method);
    assign(&mut attrs.request_path, request.path);
    attrs.request_headers.clear();
    // A repeated header's first value, as Envoy's rate limit actions key on it and as
    // most frameworks hand it to the app: joined values would let a junk second value
    // make a new counter key for each request. Bytes that are not UTF-8 read as U+FFFD
    // (the header is present all the same, as the traffic rules read it).
    for name in header_names {
        if let Some(value) = request.headers.get(name.as_str()) {
            attrs.request_headers.insert(name.clone(), String::from_utf8_lossy(value.as_bytes()).into_owned());
        }
    }
}

fn assign(target: &mut String, value: &str) {
    if target != value {
        target.clear();
        target.push_str(value);
    }
}
