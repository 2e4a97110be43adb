//! The policy as written ([`QuotaPolicySpec`]) and as evaluated ([`QuotaPolicy`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::attrs::{AttributeRef, DimensionExpr};
use crate::mixer::QuotaAttributes;

/// A quota policy as users write it (YAML or JSON, camelCase keys). Durations are Go
/// duration strings (`1s`, `500ms`, `1m`). See [`QuotaPolicySpec::compile`].
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaPolicySpec {
    /// Unique name: lower-case letters, digits, `-`, `.` and `_`, at most 253 bytes.
    pub name: String,
    /// Free text for people.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub description: String,
    /// Which requests the quota applies to; empty matches every request.
    #[serde(
        default,
        rename = "match",
        skip_serializing_if = "QuotaMatch::is_empty"
    )]
    pub matches: QuotaMatch,
    /// Dimension name → expression; one counter per distinct combination of values.
    /// Empty: one counter for the whole quota.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub dimensions: BTreeMap<String, String>,
    /// Amount granted per window (requests, usually); 0 denies every request (as
    /// envoyproxy/ratelimit's `requests_per_unit: 0`). Required unless `unlimited`,
    /// which ignores it.
    #[serde(default)]
    pub max_amount: u64,
    /// Window length (`fixed-window`, `rolling-window`) or the time to refill
    /// `maxAmount` tokens (`token-bucket`).
    #[serde(default)]
    pub valid_duration: String,
    /// `fixed-window` (default), `rolling-window` or `token-bucket`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub algorithm: Option<String>,
    /// `rolling-window` only: the bucket length (default a tenth of the window).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bucket_duration: Option<String>,
    /// `token-bucket` only: bucket capacity (default `maxAmount`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u64>,
    /// Per-dimension-value limits; the first whose every dimension matches wins.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub overrides: Vec<QuotaOverrideSpec>,
    /// Count and report, but never deny.
    #[serde(default, skip_serializing_if = "is_false")]
    pub shadow: bool,
    /// Never deny and keep no counter (envoy ratelimit's `unlimited`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub unlimited: bool,
    /// Envoy rate limit service: the domain and descriptor this quota answers in
    /// `ShouldRateLimit`. A policy with `rateLimit` is only consulted by the RLS API.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
}

fn is_false(b: &bool) -> bool {
    !*b
}

impl QuotaPolicySpec {
    /// The first of `others`, under another name, that limits the same rate-limit
    /// descriptors as this policy ([`RateLimitSpec::same_descriptors`]), counting only
    /// policies that compile (the engine skips the others). Only one of two such
    /// policies could ever apply, so a second one is refused, as envoyproxy/ratelimit
    /// refuses a duplicate descriptor: by the admin API against the stored policies,
    /// and by `meshtel quota apply` against the file and the server before writing.
    /// `None` for a policy without `rateLimit`.
    pub fn descriptor_conflict<'a>(
        &self,
        others: impl IntoIterator<Item = &'a QuotaPolicySpec>,
    ) -> Option<&'a QuotaPolicySpec> {
        let rate_limit = self.rate_limit.as_ref()?;
        others.into_iter().find(|other| {
            other.name != self.name
                && other
                    .rate_limit
                    .as_ref()
                    .is_some_and(|o| o.same_descriptors(rate_limit))
                && other.compile().is_ok()
        })
    }
}

/// What a request must carry for a quota to apply. Every field set must equal the
/// request's value (case-sensitive); `pathPrefix` is a prefix.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaMatch {
    /// The calling workload.
    #[serde(default, skip_serializing_if = "WorkloadMatch::is_empty")]
    pub source: WorkloadMatch,
    /// The called workload.
    #[serde(default, skip_serializing_if = "WorkloadMatch::is_empty")]
    pub destination: WorkloadMatch,
    /// HTTP method, e.g. `GET`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub method: String,
    /// Path prefix, starting with `/`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path_prefix: String,
    /// Header name → exact value.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
}

impl QuotaMatch {
    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.source.is_empty()
            && self.destination.is_empty()
            && self.method.is_empty()
            && self.path_prefix.is_empty()
            && self.headers.is_empty()
    }
}

/// Workload fields a match can require.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadMatch {
    /// Service name (`app` label), e.g. `reviews`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Workload name, e.g. `reviews-v2`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub workload: String,
    /// `version` label.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// Namespace.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

impl WorkloadMatch {
    /// True when nothing is required.
    pub fn is_empty(&self) -> bool {
        self.service.is_empty()
            && self.workload.is_empty()
            && self.version.is_empty()
            && self.namespace.is_empty()
    }
}

/// A limit for particular dimension values.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct QuotaOverrideSpec {
    /// Dimension name → value; all must equal the request's.
    pub dimensions: BTreeMap<String, String>,
    /// The limit for matching requests.
    pub max_amount: u64,
    /// The window for matching requests; defaults to the policy's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub valid_duration: Option<String>,
}

/// Envoy RLS binding of a policy: `domain` and the descriptor entries it matches.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RateLimitSpec {
    /// The RLS domain.
    pub domain: String,
    /// Descriptor entries in order; an entry without `value` matches any value and keys
    /// the counter by it. A `value` may end in `*` to match a prefix.
    pub descriptors: Vec<DescriptorEntrySpec>,
    /// Names of other policies this one replaces when both match (envoy `replaces`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replaces: Vec<String>,
    /// The name RLS answers give this limit in `current_limit.name` (envoyproxy/
    /// ratelimit's `rate_limit.name`, as written). Absent: the policy's name. Empty:
    /// no name, as envoyproxy/ratelimit sends for a limit its file does not name (what
    /// `meshtel quota import` writes for a policy whose name it derived).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

impl RateLimitSpec {
    /// Whether `other` limits the same descriptors: the same domain and the same entries
    /// (keys and values) in the same order. Only one of two such policies can ever
    /// apply.
    pub fn same_descriptors(&self, other: &RateLimitSpec) -> bool {
        self.domain == other.domain
            && self.descriptors.len() == other.descriptors.len()
            && self
                .descriptors
                .iter()
                .zip(&other.descriptors)
                .all(|(a, b)| a.same_node(b))
    }

    /// The name RLS answers report (`current_limit.name`) for a policy named `policy`.
    pub fn reported_name<'a>(&'a self, policy: &'a str) -> &'a str {
        self.name.as_deref().unwrap_or(policy)
    }
}

/// One descriptor entry pattern.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DescriptorEntrySpec {
    /// Entry key.
    pub key: String,
    /// Exact value, or prefix ending in `*`; absent matches any value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Wildcard values only (`value` ending in `*`): every value the wildcard matches
    /// shares one counter, keyed by the pattern instead of the value (envoyproxy/
    /// ratelimit's `share_threshold`). By default each value has its own.
    #[serde(default, skip_serializing_if = "is_false")]
    pub share_threshold: bool,
}

impl DescriptorEntrySpec {
    /// True when the value is a prefix pattern (`value` ending in `*`).
    pub fn is_wildcard(&self) -> bool {
        self.value.as_deref().is_some_and(|v| v.ends_with('*'))
    }

    /// Whether `other` is the same node of the descriptor tree: same key and value
    /// (`shareThreshold` only shapes counter keys).
    pub fn same_node(&self, other: &DescriptorEntrySpec) -> bool {
        self.key == other.key && self.value == other.value
    }
}

/// How a quota counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// Windows aligned to the Unix epoch; up to twice the limit can pass across a
    /// boundary.
    FixedWindow,
    /// A sliding window made of buckets; never more than the limit in any window
    /// (to bucket granularity).
    RollingWindow {
        /// Bucket length.
        bucket: Duration,
    },
    /// Tokens refill at `max_amount / valid_duration`, up to `burst`.
    TokenBucket {
        /// Capacity.
        burst: u64,
    },
}

impl Algorithm {
    /// The name used in specs.
    pub fn name(&self) -> &'static str {
        match self {
            Algorithm::FixedWindow => "fixed-window",
            Algorithm::RollingWindow { .. } => "rolling-window",
            Algorithm::TokenBucket { .. } => "token-bucket",
        }
    }
}

/// A limit: an amount per duration, counted by an algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limit {
    /// Amount per window (or refill amount per `valid_duration` for token buckets).
    pub max_amount: u64,
    /// Window length.
    pub valid_duration: Duration,
    /// Counting algorithm.
    pub algorithm: Algorithm,
}

/// A compiled override.
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaOverride {
    /// (dimension index, value) pairs that must all hold.
    pub dimensions: Vec<(usize, String)>,
    /// The limit when they do.
    pub limit: Limit,
}

/// A validated, ready-to-evaluate policy. Build with [`QuotaPolicySpec::compile`].
#[derive(Debug, Clone, PartialEq)]
pub struct QuotaPolicy {
    /// The spec it was compiled from.
    pub spec: QuotaPolicySpec,
    /// Match as attribute requirements, all of which must hold.
    pub requirements: Vec<(AttributeRef, String)>,
    /// Path prefix requirement, if any.
    pub path_prefix: Option<String>,
    /// Dimensions in name order.
    pub dimensions: Vec<(String, DimensionExpr)>,
    /// The default limit.
    pub limit: Limit,
    /// Overrides in order.
    pub overrides: Vec<QuotaOverride>,
}

/// What a policy says about one request: which counter and which limit.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// The counter key, `name;dim=value;...` (memquota layout).
    pub key: String,
    /// The limit that applies.
    pub limit: Limit,
    /// The override that applied, by index.
    pub override_index: Option<usize>,
}

impl QuotaPolicy {
    /// The policy's name.
    pub fn name(&self) -> &str {
        &self.spec.name
    }

    /// True when the request satisfies the policy's match. Policies bound to the envoy
    /// RLS API (`rateLimit`) match no attribute request.
    pub fn matches(&self, attrs: &QuotaAttributes) -> bool {
        if self.spec.rate_limit.is_some() {
            return false;
        }
        if let Some(prefix) = &self.path_prefix
            && !attrs.request_path.starts_with(prefix.as_str())
        {
            return false;
        }
        self.requirements
            .iter()
            .all(|(attr, want)| attr.value(attrs) == want)
    }

    /// The dimension values of a request, in dimension order.
    pub fn dimension_values<'a>(&'a self, attrs: &'a QuotaAttributes) -> Vec<&'a str> {
        self.dimensions.iter().map(|(_, e)| e.eval(attrs)).collect()
    }

    /// The counter key and limit for a request.
    pub fn resolve(&self, attrs: &QuotaAttributes) -> Resolved {
        let values = self.dimension_values(attrs);
        self.resolve_values(&values)
    }

    /// The counter key and limit for dimension values given in dimension order
    /// (the RLS API supplies them from descriptor entries).
    pub fn resolve_values(&self, values: &[&str]) -> Resolved {
        let len = self.spec.name.len()
            + self
                .dimensions
                .iter()
                .zip(values)
                .map(|((name, _), value)| name.len() + value.len() + 2)
                .sum::<usize>();
        let mut key = String::with_capacity(len);
        key.push_str(&self.spec.name);
        // push_str, not write!: this runs for every quota decision.
        for ((name, _), value) in self.dimensions.iter().zip(values) {
            key.push(';');
            key.push_str(name);
            key.push('=');
            key.push_str(value);
        }
        let found = self.overrides.iter().enumerate().find(|(_, o)| {
            o.dimensions
                .iter()
                .all(|(i, want)| values.get(*i).copied().unwrap_or("") == want)
        });
        match found {
            Some((i, o)) => Resolved {
                key,
                limit: o.limit,
                override_index: Some(i),
            },
            None => Resolved {
                key,
                limit: self.limit,
                override_index: None,
            },
        }
    }

    /// Every attribute the policy reads: its match, its path prefix and its dimensions
    /// (what a request's answer depends on, for clients that cache answers).
    pub fn attributes(&self) -> impl Iterator<Item = &AttributeRef> {
        self.requirements
            .iter()
            .map(|(a, _)| a)
            .chain(
                self.path_prefix
                    .as_ref()
                    .map(|_| &AttributeRef::RequestPath),
            )
            .chain(self.dimensions.iter().flat_map(|(_, e)| e.chain.iter()))
    }

    /// Header names the policy reads (match or dimensions), which proxies must forward
    /// in [`QuotaAttributes::request_headers`].
    pub fn header_names(&self) -> impl Iterator<Item = &str> {
        self.requirements
            .iter()
            .filter_map(|(a, _)| a.header_name())
            .chain(
                self.dimensions
                    .iter()
                    .flat_map(|(_, e)| e.chain.iter().filter_map(|a| a.header_name())),
            )
    }
}
