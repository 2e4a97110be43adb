//! Quota policies, their audit log and the admin API's bearer tokens, in SQL (the same
//! database as the [`Catalog`]; tables from `migrations/sqlite/0003_quotas.sql`).
//!
//! ```text
//!  put_policy / delete_policy ─► one transaction:
//!      bump quota_state.revision  (first statement: takes the write lock)
//!      read the current row ─► check the Precondition ─► (unchanged: roll back)
//!      write quota_policies ─► append quota_audit (before / after as JSON)
//!  policies_revision ─► quota_state.revision (collectors poll it and reload)
//! ```
//!
//! Because every write starts by writing the revision row, two writers never read the
//! same version concurrently: the second waits (SQLite busy timeout; a row lock in
//! PostgreSQL) and then sees the first one's result, so two writes with the same
//! `If-Match` cannot both succeed. A put of a spec equal to the stored one changes
//! nothing (no version, audit row or revision).

use std::path::Path;
use std::sync::Arc;

use async_trait::async_trait;
use meshtel_model::graph::{SystemUnixClock, UnixClock};
use meshtel_model::quota::{
    AdminTokenStore, AuditEntry, FieldError, Precondition, QuotaPolicySpec, QuotaPolicyStore,
    SetCheck, StoredPolicy,
};
use sqlx::pool::PoolConnection;
use sqlx::{Row, Sqlite, SqliteConnection, SqlitePool};
use tracing::info;

use crate::catalog::{Catalog, close_if_read_only, confirm_committed};
use crate::{Error, Result};

/// The columns [`policy_from_row`] reads, from `quota_policies`: the row, and its
/// incarnation (the audit id of the policy's creation: a policy deleted and created
/// again is another incarnation, see [`StoredPolicy::incarnation`]).
macro_rules! policy_select {
    () => {
        "SELECT name, spec, version, updated_unix_ms, updated_by, \
         (SELECT coalesce(max(a.id), 0) FROM quota_audit a \
          WHERE a.name = quota_policies.name AND a.action = 'create') \
         FROM quota_policies"
    };
}

/// A write refused by its precondition: the message for the client.
type Refused = String;

/// Why a write was not made.
enum PutRefused {
    /// Its precondition did not hold.
    Precondition(Refused),
    /// The check against the stored policies refused it.
    Check(Vec<FieldError>),
}

/// The SQL repository of quota policies and admin tokens. Cheap to clone.
#[derive(Clone)]
pub struct QuotaRepo {
    pool: SqlitePool,
    clock: Arc<dyn UnixClock>,
}

impl QuotaRepo {
    /// Opens (creating and migrating if needed) `meshtel.db` in `data_dir`, the database
    /// the trace catalog and edge rollups use. Works beside a running collector: any
    /// process on the data directory may read and write policies.
    pub async fn open(data_dir: &Path) -> Result<QuotaRepo> {
        let catalog = Catalog::open(data_dir).await?;
        Ok(QuotaRepo::from_catalog(&catalog))
    }

    /// The repository over an already-open catalog's connection pool.
    pub fn from_catalog(catalog: &Catalog) -> QuotaRepo {
        QuotaRepo {
            pool: catalog.pool(),
            clock: Arc::new(SystemUnixClock),
        }
    }

    /// The same repository with another clock for `updatedAt` and audit times.
    pub fn with_clock(mut self, clock: Arc<dyn UnixClock>) -> QuotaRepo {
        self.clock = clock;
        self
    }

    /// Closes the connection pool (of every clone).
    pub async fn close(&self) {
        self.pool.close().await;
    }

    fn now_unix_ms(&self) -> i64 {
        i64::try_from(self.clock.now_unix_nano() / 1_000_000).unwrap_or(i64::MAX)
    }

    async fn put(
        &self,
        spec: QuotaPolicySpec,
        precondition: Precondition,
        actor: &str,
        check: Option<SetCheck<'_>>,
    ) -> Result<Result<(StoredPolicy, bool), PutRefused>> {
        let mut conn = self.pool.acquire().await?;
        let written = self
            .put_on(&mut conn, spec, precondition, actor, check)
            .await;
        close_if_read_only(&mut conn, &written);
        written
    }

    async fn put_on(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        spec: QuotaPolicySpec,
        precondition: Precondition,
        actor: &str,
        check: Option<SetCheck<'_>>,
    ) -> Result<Result<(StoredPolicy, bool), PutRefused>> {
        let after = spec_to_json(&spec)?;
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        // A write first: the transaction holds SQLite's write lock from here, so the
        // policies the check reads stay as they are until it commits, whichever
        // process writes beside it.
        bump_revision(&mut tx).await?;
        // Read under the lock, so that changes' times follow the order they are made in.
        let now = self.now_unix_ms();
        if let Some(check) = check {
            let rows = sqlx::query(concat!(policy_select!(), " ORDER BY name"))
                .fetch_all(&mut *tx)
                .await?;
            let stored = rows
                .iter()
                .map(policy_from_row)
                .collect::<Result<Vec<_>>>()?;
            if let Err(problems) = check(&stored) {
                return Ok(Err(PutRefused::Check(problems)));
            }
        }
        let current = fetch_policy(&mut tx, &spec.name).await?;
        if let Err(refused) = check_precondition(precondition, &spec.name, current.as_ref()) {
            return Ok(Err(PutRefused::Precondition(refused)));
        }
        let (stored, created, before) = match current {
            // Dropping the transaction rolls the revision bump back.
            Some(current) if current.spec == spec => return Ok(Ok((current, false))),
            Some(current) => {
                let version = current.version.saturating_add(1);
                sqlx::query(
                    "UPDATE quota_policies SET spec = ?, version = ?, updated_unix_ms = ?, \
                     updated_by = ? WHERE name = ?",
                )
                .bind(&after)
                .bind(version_to_sql(version))
                .bind(now)
                .bind(actor)
                .bind(&spec.name)
                .execute(&mut *tx)
                .await?;
                let before = spec_to_json(&current.spec)?;
                let incarnation = current.incarnation;
                (
                    stored(spec, version, now, actor, incarnation),
                    false,
                    Some(before),
                )
            }
            None => {
                // The revision this write makes, not 1: every version a name had before a
                // delete is at most the revision then, so an `If-Match` of the deleted
                // policy's version can never match the new one (a lost update).
                let version = revision_now(&mut tx).await?.max(1);
                sqlx::query(
                    "INSERT INTO quota_policies (name, spec, version, updated_unix_ms, updated_by) \
                     VALUES (?, ?, ?, ?, ?)",
                )
                .bind(&spec.name)
                .bind(&after)
                .bind(version_to_sql(version))
                .bind(now)
                .bind(actor)
                .execute(&mut *tx)
                .await?;
                (stored(spec, version, now, actor, 0), true, None)
            }
        };
        let action = if created { "create" } else { "update" };
        let mut stored = stored;
        let audit_id = append_audit(
            &mut tx,
            now,
            actor,
            action,
            &stored.spec.name,
            (before, Some(after)),
            stored.version,
        )
        .await?;
        if created {
            stored.incarnation = audit_id;
        }
        tx.commit().await?;
        // A write is answered done only once it is committed (see `Catalog`).
        confirm_committed(conn).await?;
        info!(quota = %stored.spec.name, version = stored.version, actor, action, "quota policy written");
        Ok(Ok((stored, created)))
    }

    async fn delete(
        &self,
        name: &str,
        precondition: Precondition,
        actor: &str,
    ) -> Result<Result<bool, Refused>> {
        let mut conn = self.pool.acquire().await?;
        let written = self.delete_on(&mut conn, name, precondition, actor).await;
        close_if_read_only(&mut conn, &written);
        written
    }

    async fn delete_on(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        name: &str,
        precondition: Precondition,
        actor: &str,
    ) -> Result<Result<bool, Refused>> {
        let mut tx = sqlx::Connection::begin(&mut **conn).await?;
        bump_revision(&mut tx).await?;
        let now = self.now_unix_ms();
        let current = fetch_policy(&mut tx, name).await?;
        if let Err(refused) = check_precondition(precondition, name, current.as_ref()) {
            return Ok(Err(refused));
        }
        let Some(current) = current else {
            return Ok(Ok(false));
        };
        sqlx::query("DELETE FROM quota_policies WHERE name = ?")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        let before = spec_to_json(&current.spec)?;
        let change = (Some(before), None);
        append_audit(&mut tx, now, actor, "delete", name, change, current.version).await?;
        tx.commit().await?;
        confirm_committed(conn).await?;
        info!(quota = %name, actor, "quota policy deleted");
        Ok(Ok(true))
    }

    async fn list(&self) -> Result<Vec<StoredPolicy>> {
        let rows = sqlx::query(concat!(policy_select!(), " ORDER BY name"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(policy_from_row).collect()
    }

    async fn get(&self, name: &str) -> Result<Option<StoredPolicy>> {
        let mut conn = self.pool.acquire().await?;
        fetch_policy(&mut conn, name).await
    }

    async fn audit_entries(
        &self,
        name: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<AuditEntry>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let rows = sqlx::query(
            "SELECT id, at_unix_ms, actor, action, name, before_spec, after_spec, version \
             FROM quota_audit WHERE (? IS NULL OR name = ?) AND id < ? \
             ORDER BY id DESC LIMIT ?",
        )
        .bind(name)
        .bind(name)
        .bind(before.unwrap_or(i64::MAX))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(AuditEntry {
                    id: row.try_get(0)?,
                    at_unix_ms: row.try_get(1)?,
                    actor: row.try_get(2)?,
                    action: row.try_get(3)?,
                    name: row.try_get(4)?,
                    before: optional_spec(row.try_get(5)?)?,
                    after: optional_spec(row.try_get(6)?)?,
                    version: row
                        .try_get::<Option<i64>, _>(7)?
                        .and_then(|v| u64::try_from(v).ok()),
                })
            })
            .collect()
    }

    async fn revision(&self) -> Result<i64> {
        let row = sqlx::query("SELECT revision FROM quota_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get(0)?)
    }

    async fn digests(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT digest FROM admin_tokens ORDER BY created_unix_ms")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
    }

    async fn replace_digests(&self, digest: &str, label: &str) -> Result<u64> {
        let mut tx = self.pool.begin().await?;
        let removed = sqlx::query("DELETE FROM admin_tokens WHERE digest <> ?")
            .bind(digest)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        self.insert_digest(&mut *tx, digest, label).await?;
        tx.commit().await?;
        Ok(removed)
    }

    async fn add_digest(&self, digest: &str, label: &str) -> Result<()> {
        self.insert_digest(&self.pool, digest, label).await
    }

    /// Stores `digest` unless it is already there.
    async fn insert_digest<'e>(
        &self,
        executor: impl sqlx::Executor<'e, Database = Sqlite>,
        digest: &str,
        label: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO admin_tokens (digest, label, created_unix_ms) VALUES (?, ?, ?) \
             ON CONFLICT (digest) DO NOTHING",
        )
        .bind(digest)
        .bind(label)
        .bind(self.now_unix_ms())
        .execute(executor)
        .await?;
        Ok(())
    }
}

fn stored(
    spec: QuotaPolicySpec,
    version: u64,
    now: i64,
    actor: &str,
    incarnation: u64,
) -> StoredPolicy {
    StoredPolicy {
        incarnation,
        spec,
        version,
        updated_at_unix_ms: now,
        updated_by: actor.to_string(),
    }
}

/// `Ok` when the write may go ahead, else why not.
fn check_precondition(
    precondition: Precondition,
    name: &str,
    current: Option<&StoredPolicy>,
) -> std::result::Result<(), Refused> {
    match (precondition, current) {
        (Precondition::None, _) | (Precondition::IfNoneExists, None) => Ok(()),
        (Precondition::IfNoneExists, Some(c)) => Err(format!(
            "quota policy {name:?} already exists (version {})",
            c.version
        )),
        (Precondition::IfMatch(want), Some(c)) if c.version == want => Ok(()),
        (Precondition::IfMatch(want), Some(c)) => Err(format!(
            "quota policy {name:?} is at version {}, not {want}",
            c.version
        )),
        (Precondition::IfMatch(want), None) => Err(format!(
            "quota policy {name:?} does not exist (expected version {want})"
        )),
    }
}

async fn bump_revision(conn: &mut SqliteConnection) -> Result<()> {
    sqlx::query("UPDATE quota_state SET revision = revision + 1 WHERE id = 1")
        .execute(conn)
        .await?;
    Ok(())
}

/// The policies' revision, as this transaction sees it.
async fn revision_now(conn: &mut SqliteConnection) -> Result<u64> {
    let row = sqlx::query("SELECT revision FROM quota_state WHERE id = 1")
        .fetch_one(conn)
        .await?;
    let revision: i64 = row.try_get(0)?;
    Ok(u64::try_from(revision).unwrap_or(0))
}

async fn fetch_policy(conn: &mut SqliteConnection, name: &str) -> Result<Option<StoredPolicy>> {
    let row = sqlx::query(concat!(policy_select!(), " WHERE name = ?"))
        .bind(name)
        .fetch_optional(conn)
        .await?;
    row.as_ref().map(policy_from_row).transpose()
}

async fn append_audit(
    conn: &mut SqliteConnection,
    now: i64,
    actor: &str,
    action: &str,
    name: &str,
    (before, after): (Option<String>, Option<String>),
    version: u64,
) -> Result<u64> {
    let done = sqlx::query(
        "INSERT INTO quota_audit \
         (at_unix_ms, actor, action, name, before_spec, after_spec, version) \
         VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(now)
    .bind(actor)
    .bind(action)
    .bind(name)
    .bind(before)
    .bind(after)
    .bind(version_to_sql(version))
    .execute(conn)
    .await?;
    Ok(u64::try_from(done.last_insert_rowid()).unwrap_or(0))
}

fn policy_from_row(row: &sqlx::sqlite::SqliteRow) -> Result<StoredPolicy> {
    let name: String = row.try_get(0)?;
    let text: String = row.try_get(1)?;
    let spec = spec_from_json(&text)?;
    if spec.name != name {
        return Err(Error::Corrupt(format!(
            "quota policy row {name:?} holds a spec named {:?}",
            spec.name
        )));
    }
    let version: i64 = row.try_get(2)?;
    Ok(StoredPolicy {
        spec,
        version: u64::try_from(version)
            .map_err(|e| Error::Corrupt(format!("quota policy {name:?} version {version}: {e}")))?,
        updated_at_unix_ms: row.try_get(3)?,
        updated_by: row.try_get(4)?,
        incarnation: u64::try_from(row.try_get::<i64, _>(5)?).unwrap_or(0),
    })
}

fn version_to_sql(version: u64) -> i64 {
    i64::try_from(version).unwrap_or(i64::MAX)
}

fn spec_to_json(spec: &QuotaPolicySpec) -> Result<String> {
    serde_json::to_string(spec)
        .map_err(|e| Error::Corrupt(format!("quota policy {:?} does not encode: {e}", spec.name)))
}

fn spec_from_json(text: &str) -> Result<QuotaPolicySpec> {
    serde_json::from_str(text)
        .map_err(|e| Error::Corrupt(format!("stored quota policy does not decode: {e}")))
}

fn optional_spec(text: Option<String>) -> Result<Option<QuotaPolicySpec>> {
    text.as_deref().map(spec_from_json).transpose()
}

/// `Ok(Ok(t))` → `t`; a refused precondition → [`meshtel_model::Error::PreconditionFailed`].
fn into_model<T>(outcome: Result<Result<T, Refused>>) -> meshtel_model::Result<T> {
    match outcome {
        Ok(Ok(t)) => Ok(t),
        Ok(Err(refused)) => Err(meshtel_model::Error::PreconditionFailed(refused)),
        Err(e) => Err(e.into()),
    }
}

/// A token digest as the API computes it: 64 lower-case hex digits.
fn is_sha256_hex(digest: &str) -> bool {
    digest.len() == 64
        && digest
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[async_trait]
impl QuotaPolicyStore for QuotaRepo {
    async fn list_policies(&self) -> meshtel_model::Result<Vec<StoredPolicy>> {
        Ok(self.list().await?)
    }

    async fn get_policy(&self, name: &str) -> meshtel_model::Result<Option<StoredPolicy>> {
        Ok(self.get(name).await?)
    }

    async fn put_policy(
        &self,
        spec: QuotaPolicySpec,
        precondition: Precondition,
        actor: &str,
    ) -> meshtel_model::Result<(StoredPolicy, bool)> {
        match self.put(spec, precondition, actor, None).await {
            Ok(Ok(written)) => Ok(written),
            Ok(Err(PutRefused::Precondition(refused))) => {
                Err(meshtel_model::Error::PreconditionFailed(refused))
            }
            // No check was given.
            Ok(Err(PutRefused::Check(_))) => Err(meshtel_model::Error::BadRequest(
                "quota policy refused".into(),
            )),
            Err(e) => Err(e.into()),
        }
    }

    async fn put_policy_checked(
        &self,
        spec: QuotaPolicySpec,
        precondition: Precondition,
        actor: &str,
        check: SetCheck<'_>,
    ) -> meshtel_model::Result<std::result::Result<(StoredPolicy, bool), Vec<FieldError>>> {
        match self.put(spec, precondition, actor, Some(check)).await {
            Ok(Ok(written)) => Ok(Ok(written)),
            Ok(Err(PutRefused::Check(problems))) => Ok(Err(problems)),
            Ok(Err(PutRefused::Precondition(refused))) => {
                Err(meshtel_model::Error::PreconditionFailed(refused))
            }
            Err(e) => Err(e.into()),
        }
    }

    async fn delete_policy(
        &self,
        name: &str,
        precondition: Precondition,
        actor: &str,
    ) -> meshtel_model::Result<bool> {
        into_model(self.delete(name, precondition, actor).await)
    }

    async fn audit_before(
        &self,
        name: Option<&str>,
        before: Option<i64>,
        limit: usize,
    ) -> meshtel_model::Result<Vec<AuditEntry>> {
        Ok(self.audit_entries(name, before, limit).await?)
    }

    async fn policies_revision(&self) -> meshtel_model::Result<i64> {
        Ok(self.revision().await?)
    }
}

#[async_trait]
impl AdminTokenStore for QuotaRepo {
    async fn token_digests(&self) -> meshtel_model::Result<Vec<String>> {
        Ok(self.digests().await?)
    }

    async fn add_token_digest(&self, digest: &str, label: &str) -> meshtel_model::Result<()> {
        check_digest(digest)?;
        Ok(self.add_digest(digest, label).await?)
    }

    async fn replace_token_digests(
        &self,
        digest: &str,
        label: &str,
    ) -> meshtel_model::Result<u64> {
        check_digest(digest)?;
        Ok(self.replace_digests(digest, label).await?)
    }
}

/// Refuses what is not a SHA-256 digest in lower-case hex.
fn check_digest(digest: &str) -> meshtel_model::Result<()> {
    if is_sha256_hex(digest) {
        Ok(())
    } else {
        Err(meshtel_model::Error::BadRequest(
            "a token digest is 64 lower-case hex digits (SHA-256)".into(),
        ))
    }
}

#[cfg(test)]
mod tests;
