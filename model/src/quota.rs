//! Quota policies: what a quota matches, how its counters are keyed, how much it grants
//! and over what window.
//!
//! A policy is written by people (YAML or JSON, [`QuotaPolicySpec`]) and compiled once
//! ([`QuotaPolicySpec::compile`]) into a [`QuotaPolicy`] that the collector's engine and
//! the proxies evaluate per request. Compilation checks everything and returns every
//! problem with its field path ([`FieldError`]).
//!
//! ```yaml
//! name: ratings-from-reviews
//! match: {source: {service: reviews}, destination: {service: ratings}}
//! dimensions: {source: source.service, sourceVersion: source.version | "unknown"}
//! maxAmount: 1
//! validDuration: 1s
//! algorithm: fixed-window
//! overrides:
//!   - dimensions: {sourceVersion: v3}
//!     maxAmount: 5
//! ```
//!
//! Override precedence and counter keys follow Istio's memquota: the first override whose
//! every dimension equals the request's wins (a dimension the request lacks equals `""`),
//! and the counter key is the policy name followed by every dimension in name order,
//! `name;dim=value;...`, whichever override applies.

/// Most bytes the policies together may take as the JSON every proxy's policy watch
/// (`WatchQuotas`) receives in one message: the admin API refuses a write past it, and
/// proxies read messages up to it plus [`POLICY_WATCH_MESSAGE_MARGIN`]. A bigger set
/// would break every proxy's watch, and no edit would reach them.
pub const MAX_POLICY_SET_JSON_BYTES: usize = 16 * 1024 * 1024;

/// What a `WatchQuotas` message adds to its policies' JSON (revision, framing).
pub const POLICY_WATCH_MESSAGE_MARGIN: usize = 64 * 1024;

/// The `quota` label of `meshtel_quota_checks_total` for checks of a quota no policy
/// has; no policy may take this name.
pub const UNKNOWN_QUOTA_LABEL: &str = "unknown";
/// The `quota` label of RLS descriptors that carry their own limit; no policy may take
/// this name.
pub const LIMIT_OVERRIDE_LABEL: &str = "limit_override";
/// The `domain` label of `meshtel_quota_rls_requests_total` for RLS requests to a domain
/// no policy limits; no policy may bind this domain.
pub const UNKNOWN_DOMAIN_LABEL: &str = "unknown";

mod attrs;
pub mod import;
pub mod parse;
mod policy;
mod store;
mod validate;

pub use attrs::{AttributeRef, DimensionExpr};
pub use policy::{
    Algorithm, DescriptorEntrySpec, Limit, QuotaMatch, QuotaOverride, QuotaOverrideSpec,
    QuotaPolicy, QuotaPolicySpec, RateLimitSpec, Resolved, WorkloadMatch,
};
pub use store::{
    AdminTokenStore, AuditEntry, KeyUsage, Precondition, QuotaPolicyStore, QuotaUsage,
    QuotaUsageReader, SetCheck, StoredPolicy,
};
pub use validate::FieldError;
pub(crate) use validate::MAX_BUCKETS_PER_WINDOW;

/// The request attributes quotas match and key on (generated from `mixer.proto`).
pub use crate::mixer::QuotaAttributes;
