//! The interfaces between the quota administration API, the policy repository and the
//! engine: [`QuotaPolicyStore`] (SQL, implemented by the store), [`QuotaUsageReader`]
//! (live counters, implemented by the collector's engine) and [`AdminTokenStore`].

use std::collections::BTreeMap;

use async_trait::async_trait;
use serde::Serialize;

use super::policy::QuotaPolicySpec;
use crate::Result;
use crate::quota::FieldError;

/// A check of a policy about to be written against every stored policy: `Err` with the
/// problems refuses the write ([`QuotaPolicyStore::put_policy_checked`]).
pub type SetCheck<'a> =
    &'a (dyn Fn(&[StoredPolicy]) -> std::result::Result<(), Vec<FieldError>> + Send + Sync);

/// A policy as stored, with its version for optimistic concurrency.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredPolicy {
    /// The policy.
    pub spec: QuotaPolicySpec,
    /// Incremented on every change of this policy, and at creation the policies'
    /// revision then, so that a policy deleted and created again never takes a version
    /// its name had; the HTTP ETag is `"<version>"`.
    pub version: u64,
    /// Last change, Unix milliseconds.
    pub updated_at_unix_ms: i64,
    /// Who made the last change.
    pub updated_by: String,
    /// Which creation of its name this policy is (the store's record of it, 0 where
    /// unknown): a policy deleted and created again is another incarnation, whose
    /// counters start again, even when both are read in one sync.
    #[serde(skip)]
    pub incarnation: u64,
}

/// A write's condition on the current version (HTTP `If-Match` / `If-None-Match: *`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precondition {
    /// Write whatever is there.
    None,
    /// Only if the policy exists at this version.
    IfMatch(u64),
    /// Only if the policy does not exist.
    IfNoneExists,
}

/// One change of one policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditEntry {
    /// Monotonic id.
    pub id: i64,
    /// When, Unix milliseconds.
    pub at_unix_ms: i64,
    /// Who (the actor the API was given).
    pub actor: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    /// The policy's name.
    pub name: String,
    /// The policy before the change (absent on create).
    pub before: Option<QuotaPolicySpec>,
    /// The policy after the change (absent on delete).
    pub after: Option<QuotaPolicySpec>,
    /// The version the change made (the HTTP ETag), for a delete the version deleted;
    /// absent on entries written before meshtel recorded it.
    pub version: Option<u64>,
}

/// Durable quota policies with versions and an audit log. Writes that fail their
/// [`Precondition`] return [`crate::Error::PreconditionFailed`] and change nothing.
#[async_trait]
pub trait QuotaPolicyStore: Send + Sync + 'static {
    /// Every policy, by name.
    async fn list_policies(&self) -> Result<Vec<StoredPolicy>>;
    /// One policy.
    async fn get_policy(&self, name: &str) -> Result<Option<StoredPolicy>>;
    /// Creates or replaces a policy (the spec must already be valid). Returns the
    /// stored policy and whether it was created.
    async fn put_policy(
        &self,
        spec: QuotaPolicySpec,
        precondition: Precondition,
        actor: &str,
    ) -> Result<(StoredPolicy, bool)>;
    /// As [`Self::put_policy`], with `check` run against the stored policies in the
    /// write's own transaction, so that no other writer (in this process or another on
    /// the same database) changes them in between; `Ok(Err(problems))` when the check
    /// refused it, nothing written. This default checks, then writes, apart.
    async fn put_policy_checked(
        &self,
        spec: QuotaPolicySpec,
        precondition: Precondition,
        actor: &str,
        check: SetCheck<'_>,
    ) -> Result<std::result::Result<(StoredPolicy, bool), Vec<FieldError>>> {
        if let Err(problems) = check(&self.list_policies().await?) {
            return Ok(Err(problems));
        }
        self.put_policy(spec, precondition, actor).await.map(Ok)
    }
    /// Deletes a policy; `Ok(false)` when there was none.
    async fn delete_policy(
        &self,
        name: &str,
        precondition: Precondition,
        actor: &str,
    ) -> Result<bool>;
    /// Audit entries, newest first, optionally for one policy.
    async fn audit(&self, name: Option<&str>, limit: usize) -> Result<Vec<AuditEntry>> {
        self.audit_before(name, None, limit).await
    }
    /// As [`Self::audit`], only entries with an id below `before`: the page after one
    /// whose last entry had that id.
    async fn audit_before(
        &self,
        name: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>>;
    /// A number that changes whenever any policy changes (the collector polls it).
    async fn policies_revision(&self) -> Result<i64>;
}

/// Admin bearer tokens, kept as SHA-256 hex digests only.
#[async_trait]
pub trait AdminTokenStore: Send + Sync + 'static {
    /// Digests of every valid token.
    async fn token_digests(&self) -> Result<Vec<String>>;
    /// Adds a digest with a label (e.g. `generated at first start`).
    async fn add_token_digest(&self, digest: &str, label: &str) -> Result<()>;
    /// Makes `digest` (with `label`) the only stored digest, in one transaction, so that
    /// no reader sees none in between; how many others were deleted.
    async fn replace_token_digests(&self, digest: &str, label: &str) -> Result<u64>;
}

/// Live usage of one counter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KeyUsage {
    /// Counter key (`name;dim=value;...`).
    pub key: String,
    /// Dimension values of the key.
    pub dimensions: BTreeMap<String, String>,
    /// Amount in use in the current window (or taken from the bucket).
    pub used: u64,
    /// The limit that applies to this key.
    pub limit: u64,
    /// Milliseconds until the window resets (or a token refills).
    pub reset_after_ms: u64,
    /// Amount granted since the counter was created.
    pub granted: u64,
    /// Requests denied since the counter was created.
    pub denied: u64,
}

/// Live usage of one quota.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QuotaUsage {
    /// The quota.
    pub name: String,
    /// Amount granted since the collector started.
    pub granted: u64,
    /// Requests denied since the collector started.
    pub denied: u64,
    /// Live counters, busiest first, at most the asked number.
    pub keys: Vec<KeyUsage>,
    /// Live counters in all.
    pub key_count: u64,
}

/// Reads the engine's live counters.
pub trait QuotaUsageReader: Send + Sync + 'static {
    /// Usage of a quota, with at most `limit` keys; `None` when the engine does not know
    /// the quota.
    fn usage(&self, name: &str, limit: usize) -> Option<QuotaUsage>;
}
