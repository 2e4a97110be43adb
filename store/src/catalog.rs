//! The SQL side of the store (sqlx, SQLite by default): the catalog of services and
//! operations, the index of Parquet blocks, and how far the WAL is flushed.
//! Migrations are embedded from `migrations/sqlite/` and run at open.

use std::borrow::Cow;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshtel_model::{Operation, SpanKind};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{Connection, Row, SqlSafeStr, Sqlite, SqlitePool};
use tracing::{info, warn};

use crate::block::BlockMeta;
use crate::{Error, Result};

/// Embedded migrations, in order. Never edit one that has shipped; add the next.
const SQLITE_MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "initial",
        include_str!("../../migrations/sqlite/0001_initial.sql"),
    ),
    (
        2,
        "edges",
        include_str!("../../migrations/sqlite/0002_edges.sql"),
    ),
    (
        3,
        "quotas",
        include_str!("../../migrations/sqlite/0003_quotas.sql"),
    ),
    (
        4,
        "replaced_blocks",
        include_str!("../../migrations/sqlite/0004_replaced_blocks.sql"),
    ),
    (
        5,
        "edge_grpc_status",
        include_str!("../../migrations/sqlite/0005_edge_grpc_status.sql"),
    ),
    (
        6,
        "catalog_last_seen",
        include_str!("../../migrations/sqlite/0006_catalog_last_seen.sql"),
    ),
    (
        7,
        "edge_clusters",
        include_str!("../../migrations/sqlite/0007_edge_clusters.sql"),
    ),
    (
        8,
        "edge_rollup_lengths",
        include_str!("../../migrations/sqlite/0008_edge_rollup_lengths.sql"),
    ),
    (
        9,
        "edge_destination_app",
        include_str!("../../migrations/sqlite/0009_edge_destination_app.sql"),
    ),
    (
        10,
        "audit_version",
        include_str!("../../migrations/sqlite/0010_audit_version.sql"),
    ),
    (
        11,
        "edge_destination_app_backfill",
        include_str!("../../migrations/sqlite/0011_edge_destination_app_backfill.sql"),
    ),
];

fn migrator() -> Migrator {
    migrator_of(SQLITE_MIGRATIONS)
}

/// A migrator of `migrations` (tests run the first few, as an older build did).
fn migrator_of(migrations: &[(i64, &'static str, &'static str)]) -> Migrator {
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|(version, description, sql)| {
                Migration::new(
                    *version,
                    Cow::Borrowed(*description),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

fn now_unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A change to the catalog's SQL copy, applied in the order made
/// ([`Catalog::apply`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CatalogChange {
    /// Entries listed for the first time.
    Add {
        services: Vec<String>,
        operations: Vec<(String, Operation)>,
    },
    /// Known entries seen again, with when (Unix ms).
    Seen {
        services: Vec<(String, i64)>,
        operations: Vec<(String, Operation, i64)>,
    },
    /// Entries forgotten: a service goes with all its operations.
    Forget {
        services: Vec<String>,
        operations: Vec<(String, Operation)>,
    },
}

/// The SQL repository.
///
/// A write is reported done only once its transaction is committed: a connection
/// whose transaction failed half-way (SQLite may roll a transaction back by itself on
/// an I/O error or a full disk, and sqlx then still counts it open) is closed when it
/// goes back to the pool instead of being reused, since sqlx would begin its next
/// "transaction" as a savepoint inside the old one and "commit" it by releasing the
/// savepoint; and after each `COMMIT` a `ROLLBACK` on the same connection must find
/// no transaction open ([`confirm_committed`]).
#[derive(Clone)]
pub struct Catalog {
    pool: SqlitePool,
    /// `meshtel.db`, named by write errors.
    path: PathBuf,
}

/// Column `index` of `row` as a count or id that cannot be negative, refused by name
/// when the database holds anything else there (a damaged or hand-edited meshtel.db)
/// instead of being cast into a huge number, or panicking on a value of another type.
fn count_column(row: &SqliteRow, index: usize, what: &str) -> Result<u64> {
    let value: i64 = column(row, index, what)?;
    u64::try_from(value).map_err(|_| Error::Corrupt(format!("{what} is {value}, below 0")))
}

/// Column `index` of `row`, an error naming it (`what`, as `table.column`) when its
/// value is of another type.
fn column<'r, T>(row: &'r SqliteRow, index: usize, what: &str) -> Result<T>
where
    T: sqlx::Decode<'r, Sqlite> + sqlx::Type<Sqlite>,
{
    row.try_get(index)
        .map_err(|e| Error::Corrupt(format!("{what}: {e}")))
}

impl Catalog {
    /// Opens (creating if needed) `meshtel.db` in `data_dir` and runs migrations; an
    /// error names the file.
    pub async fn open(data_dir: &Path) -> Result<Catalog> {
        let path = data_dir.join("meshtel.db");
        Self::open_file(&path)
            .await
            .map_err(|e| crate::Error::Database {
                path,
                source: Box::new(e),
            })
    }

    /// Opens `meshtel.db` in `data_dir` as a process that does not own the data
    /// directory (`meshtel query`): it never creates the file nor changes its schema,
    /// which only the collector holding the directory's lock does. A schema older than
    /// this build's is waited for, up to `wait` (a collector may be creating or
    /// upgrading it right now), then refused by name, as is a newer one.
    pub async fn open_existing(data_dir: &Path, wait: Duration) -> Result<Catalog> {
        let path = data_dir.join("meshtel.db");
        Self::open_existing_file(&path, wait)
            .await
            .map_err(|e| crate::Error::Database {
                path,
                source: Box::new(e),
            })
    }

    async fn open_existing_file(path: &Path, wait: Duration) -> Result<Catalog> {
        let pool = Self::connect(path, false).await?;
        let latest = SQLITE_MIGRATIONS.last().map_or(0, |m| m.0);
        let deadline = std::time::Instant::now() + wait;
        let mut told = false;
        loop {
            // No table yet (a collector is creating the database) reads as version 0;
            // a migration recorded as not successful is still running, or failed.
            let versions = sqlx::query_as(
                "SELECT coalesce(MAX(version), 0), \
                        coalesce(MIN(version) FILTER (WHERE NOT success), 0) \
                 FROM _sqlx_migrations",
            )
            .fetch_one(&pool)
            .await;
            let (applied, failed): (i64, i64) = match versions {
                Ok(versions) => versions,
                Err(e) if e.to_string().contains("no such table") => (0, 0),
                Err(e) => return Err(e.into()),
            };
            if applied > latest {
                return Err(Error::NewerSchema {
                    found: applied,
                    known: latest,
                });
            }
            if applied == latest && failed == 0 {
                return Ok(Catalog {
                    pool,
                    path: path.to_path_buf(),
                });
            }
            if std::time::Instant::now() >= deadline {
                if failed > 0 {
                    return Err(Error::MigrationFailed { version: failed });
                }
                return Err(Error::OlderSchema {
                    found: applied,
                    expected: latest,
                    waited: wait,
                });
            }
            if !told {
                told = true;
                info!(
                    database = %path.display(),
                    found = applied,
                    expected = latest,
                    "waiting for the collector to create or upgrade the database"
                );
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// A pool of connections to `path`; the file is created when `create` is set.
    async fn connect(path: &Path, create: bool) -> Result<SqlitePool> {
        let database = path.to_path_buf();
        let options = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            // Every commit synced before it returns: a flush deletes its WAL segments
            // once the block is committed, and a merge its inputs, so a commit that a
            // power failure could roll back (`Normal` in WAL mode) would lose spans
            // that were acknowledged. One fsync per commit, a few per second.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(5));
        Ok(SqlitePoolOptions::new()
            .max_connections(4)
            .after_release(move |conn, _| {
                let database = database.clone();
                Box::pin(async move { Ok(out_of_transaction(conn, &database).await) })
            })
            .connect_with(options)
            .await?)
    }

    async fn open_file(path: &Path) -> Result<Catalog> {
        let pool = Self::connect(path, true).await?;
        // A migration over a large table (an index of every edge rollup) can take a
        // while on an upgrade: say so, rather than start silently late.
        let applied: Option<i64> = sqlx::query_scalar("SELECT MAX(version) FROM _sqlx_migrations")
            .fetch_one(&pool)
            .await
            .unwrap_or(None);
        let latest = SQLITE_MIGRATIONS.last().map_or(0, |m| m.0);
        let started = std::time::Instant::now();
        let upgrading = applied.is_some_and(|applied| applied < latest);
        if upgrading {
            info!(database = %path.display(), from = applied, to = latest, "migrating the database");
        }
        migrator().run(&pool).await.map_err(|error| match error {
            // A version this build does not know: a newer meshtel wrote the directory.
            // Named by the newest version applied, as a query process names it (sqlx names
            // the first one it does not know).
            sqlx::migrate::MigrateError::VersionMissing(found) => crate::Error::NewerSchema {
                found: applied.map_or(found, |applied| applied.max(found)),
                known: SQLITE_MIGRATIONS.last().map_or(0, |m| m.0),
            },
            other => other.into(),
        })?;
        if upgrading {
            info!(
                seconds = started.elapsed().as_secs_f64(),
                "database migrated"
            );
        }
        Ok(Catalog {
            pool,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `e`, naming the database file.
    fn named(&self, e: impl Into<Error>) -> Error {
        Error::Database {
            path: self.path.clone(),
            source: Box::new(e.into()),
        }
    }

    /// Every service known, with or without operations, and when it was last seen
    /// (Unix ms).
    pub async fn load_services(&self) -> Result<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT name, last_seen_unix_ms FROM services")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get::<String, _>(0)?, r.try_get::<i64, _>(1)?)))
            .collect()
    }

    /// A fingerprint of the entries listed: per table, how many and the newest first
    /// sighting. It changes when an entry is added, or removed and added again; the
    /// last-seen times, which only the writer's upkeep reads, are left out. A
    /// read-only store reads the whole catalog again only when it changes.
    pub async fn entries_fingerprint(&self) -> Result<[i64; 4]> {
        let row = sqlx::query(
            "SELECT (SELECT count(*) FROM services), \
                    (SELECT coalesce(max(first_seen_unix_ms), 0) FROM services), \
                    (SELECT count(*) FROM operations), \
                    (SELECT coalesce(max(first_seen_unix_ms), 0) FROM operations)",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok([
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        ])
    }

    /// Every (service, operation) known, and when it was last seen (Unix ms).
    pub async fn load_operations(&self) -> Result<Vec<(String, Operation, i64)>> {
        let rows =
            sqlx::query("SELECT service, name, span_kind, last_seen_unix_ms FROM operations")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                let kind = r.try_get::<i64, _>(2)?;
                Ok((
                    r.try_get::<String, _>(0)?,
                    Operation {
                        name: r.try_get::<String, _>(1)?,
                        span_kind: SpanKind::from_otlp(i32::try_from(kind).unwrap_or(0)),
                    },
                    r.try_get::<i64, _>(3)?,
                ))
            })
            .collect()
    }

    /// Applies catalog changes in order, in one transaction: new entries (known ones
    /// are ignored; an operation's service is recorded too, in case its first listing
    /// never reached SQL), later sightings of known ones, and entries forgotten.
    pub async fn apply(&self, changes: &[CatalogChange]) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.named(e))?;
        let written = self.apply_committed(&mut conn, changes).await;
        close_if_read_only(&mut conn, &written);
        written.map_err(|e| self.named(e))
    }

    async fn apply_committed(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        changes: &[CatalogChange],
    ) -> Result<()> {
        let now = now_unix_ms();
        let mut tx = conn.begin().await?;
        for change in changes {
            match change {
                CatalogChange::Add {
                    services,
                    operations,
                } => {
                    let op_services = operations.iter().map(|(service, _)| service);
                    for service in services.iter().chain(op_services) {
                        sqlx::query(
                            "INSERT INTO services (name, first_seen_unix_ms, last_seen_unix_ms) \
                             VALUES (?, ?, ?) ON CONFLICT (name) DO UPDATE SET \
                             last_seen_unix_ms = excluded.last_seen_unix_ms \
                             WHERE services.last_seen_unix_ms < excluded.last_seen_unix_ms",
                        )
                        .bind(service)
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for (service, op) in operations {
                        sqlx::query(
                            "INSERT INTO operations \
                             (service, name, span_kind, first_seen_unix_ms, last_seen_unix_ms) \
                             VALUES (?, ?, ?, ?, ?) ON CONFLICT (service, name, span_kind) \
                             DO UPDATE SET last_seen_unix_ms = excluded.last_seen_unix_ms \
                             WHERE operations.last_seen_unix_ms < excluded.last_seen_unix_ms",
                        )
                        .bind(service)
                        .bind(&op.name)
                        .bind(i64::from(op.span_kind.to_otlp()))
                        .bind(now)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                CatalogChange::Seen {
                    services,
                    operations,
                } => {
                    for (service, at) in services {
                        sqlx::query(
                            "UPDATE services SET last_seen_unix_ms = ? \
                             WHERE name = ? AND last_seen_unix_ms < ?",
                        )
                        .bind(at)
                        .bind(service)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                    for (service, op, at) in operations {
                        sqlx::query(
                            "UPDATE operations SET last_seen_unix_ms = ? \
                             WHERE service = ? AND name = ? AND span_kind = ? \
                             AND last_seen_unix_ms < ?",
                        )
                        .bind(at)
                        .bind(service)
                        .bind(&op.name)
                        .bind(i64::from(op.span_kind.to_otlp()))
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                    }
                }
                CatalogChange::Forget {
                    services,
                    operations,
                } => {
                    for (service, op) in operations {
                        sqlx::query(
                            "DELETE FROM operations \
                             WHERE service = ? AND name = ? AND span_kind = ?",
                        )
                        .bind(service)
                        .bind(&op.name)
                        .bind(i64::from(op.span_kind.to_otlp()))
                        .execute(&mut *tx)
                        .await?;
                    }
                    for service in services {
                        sqlx::query("DELETE FROM operations WHERE service = ?")
                            .bind(service)
                            .execute(&mut *tx)
                            .await?;
                        sqlx::query("DELETE FROM services WHERE name = ?")
                            .bind(service)
                            .execute(&mut *tx)
                            .await?;
                    }
                }
            }
        }
        tx.commit().await?;
        confirm_committed(conn).await
    }

    /// All blocks in the index.
    pub async fn load_blocks(&self) -> Result<Vec<BlockMeta>> {
        let rows = sqlx::query(
            "SELECT id, path, min_start_unix_nano, max_start_unix_nano, row_count, byte_size, \
             level, wal_seq FROM blocks ORDER BY max_start_unix_nano",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(BlockMeta {
                    id: count_column(r, 0, "blocks.id")?,
                    file_name: column(r, 1, "blocks.path")?,
                    min_start: column(r, 2, "blocks.min_start_unix_nano")?,
                    max_start: column(r, 3, "blocks.max_start_unix_nano")?,
                    rows: count_column(r, 4, "blocks.row_count")?,
                    bytes: count_column(r, 5, "blocks.byte_size")?,
                    level: u32::try_from(count_column(r, 6, "blocks.level")?).unwrap_or(u32::MAX),
                    wal_seq: count_column(r, 7, "blocks.wal_seq")?,
                    // Filled from the block's sidecar by the store.
                    trace_ids: Default::default(),
                })
            })
            .collect::<Result<Vec<BlockMeta>>>()
            .map_err(|e| self.named(e))
    }

    /// Highest WAL segment whose rows are all in blocks.
    pub async fn flushed_through(&self) -> Result<u64> {
        let row = sqlx::query("SELECT flushed_through_seq FROM wal_state WHERE id = 1")
            .fetch_one(&self.pool)
            .await?;
        count_column(&row, 0, "wal_state.flushed_through_seq")
    }

    /// Atomically adds `added` blocks, removes `removed` ones (their files are to be
    /// deleted: they are listed in [`Catalog::replaced_block_files`] until
    /// [`Catalog::forget_replaced`]) and, when given, advances the flushed WAL segment.
    pub async fn replace_blocks(
        &self,
        added: &[BlockMeta],
        removed: &[u64],
        flushed_through: Option<u64>,
    ) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.named(e))?;
        let written = self
            .replace_blocks_committed(&mut conn, added, removed, flushed_through)
            .await;
        close_if_read_only(&mut conn, &written);
        written.map_err(|e| self.named(e))
    }

    /// Whether the index lists the block `id` (as committed: see [`Catalog`]).
    pub async fn lists_block(&self, id: u64) -> Result<bool> {
        let row = sqlx::query("SELECT COUNT(*) FROM blocks WHERE id = ?")
            .bind(id as i64)
            .fetch_one(&self.pool)
            .await
            .map_err(|e| self.named(e))?;
        Ok(row.try_get::<i64, _>(0)? > 0)
    }

    async fn replace_blocks_committed(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        added: &[BlockMeta],
        removed: &[u64],
        flushed_through: Option<u64>,
    ) -> Result<()> {
        let now = now_unix_ms();
        let mut tx = conn.begin().await?;
        for b in added {
            sqlx::query(
                "INSERT INTO blocks (id, path, min_start_unix_nano, max_start_unix_nano, \
                 row_count, byte_size, level, wal_seq, created_unix_ms) \
                 VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            )
            .bind(b.id as i64)
            .bind(&b.file_name)
            .bind(b.min_start)
            .bind(b.max_start)
            .bind(b.rows as i64)
            .bind(b.bytes as i64)
            .bind(i64::from(b.level))
            .bind(b.wal_seq as i64)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        for id in removed {
            sqlx::query(
                "INSERT INTO replaced_blocks (path, replaced_unix_ms) \
                 SELECT path, ? FROM blocks WHERE id = ? \
                 ON CONFLICT (path) DO UPDATE SET replaced_unix_ms = excluded.replaced_unix_ms",
            )
            .bind(now)
            .bind(*id as i64)
            .execute(&mut *tx)
            .await?;
            sqlx::query("DELETE FROM blocks WHERE id = ?")
                .bind(*id as i64)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(seq) = flushed_through {
            sqlx::query("UPDATE wal_state SET flushed_through_seq = ? WHERE id = 1")
                .bind(seq as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        confirm_committed(conn).await
    }

    /// Takes blocks out of the index without listing their files as replaced: blocks
    /// set aside (missing or unreadable ones), whose files are not to be deleted.
    pub async fn drop_blocks(&self, ids: &[u64]) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.named(e))?;
        let written = self.drop_blocks_committed(&mut conn, ids).await;
        close_if_read_only(&mut conn, &written);
        written.map_err(|e| self.named(e))
    }

    async fn drop_blocks_committed(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        ids: &[u64],
    ) -> Result<()> {
        let mut tx = conn.begin().await?;
        for id in ids {
            sqlx::query("DELETE FROM blocks WHERE id = ?")
                .bind(*id as i64)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        confirm_committed(conn).await
    }

    /// File names of blocks that compaction or retention replaced and that may still
    /// be on disk.
    pub async fn replaced_block_files(&self) -> Result<Vec<String>> {
        let rows = sqlx::query("SELECT path FROM replaced_blocks")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<String, _>(0)?))
            .collect()
    }

    /// Forgets replaced block files once they are deleted.
    pub async fn forget_replaced(&self, file_names: &[String]) -> Result<()> {
        let mut conn = self.pool.acquire().await.map_err(|e| self.named(e))?;
        let written = self.forget_replaced_committed(&mut conn, file_names).await;
        close_if_read_only(&mut conn, &written);
        written.map_err(|e| self.named(e))
    }

    async fn forget_replaced_committed(
        &self,
        conn: &mut PoolConnection<Sqlite>,
        file_names: &[String],
    ) -> Result<()> {
        let mut tx = conn.begin().await?;
        for name in file_names {
            sqlx::query("DELETE FROM replaced_blocks WHERE path = ?")
                .bind(name)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        confirm_committed(conn).await
    }

    /// The connection pool, shared with the edge rollups ([`crate::edges`]).
    pub(crate) fn pool(&self) -> SqlitePool {
        self.pool.clone()
    }

    /// Closes the pool.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// After a `COMMIT` that returned: makes sure it ended the transaction. sqlx may have
/// sent a `RELEASE` of a savepoint instead when it counted a transaction that SQLite
/// had already rolled back (see [`Catalog`]); a `ROLLBACK` on the same connection
/// then succeeds (undoing what was not committed), where after a real commit SQLite
/// says no transaction is active. The connection is closed unless it was clean.
pub(crate) async fn confirm_committed(conn: &mut PoolConnection<Sqlite>) -> Result<()> {
    let outcome = sqlx::raw_sql("ROLLBACK").execute(&mut **conn).await;
    match outcome {
        Err(sqlx::Error::Database(e)) if e.message().contains("no transaction is active") => Ok(()),
        Ok(_) => {
            conn.close_on_drop();
            Err(Error::Io(std::io::Error::other(
                "the commit did not end its transaction (a connection left inside an \
                 earlier failed one): nothing was written; the connection is closed",
            )))
        }
        Err(e) => {
            conn.close_on_drop();
            Err(e.into())
        }
    }
}

/// Closes `conn` when `written` failed because it is read-only ("attempt to write a
/// readonly database"). SQLite opens a database file it cannot write read-only, without
/// an error, and the connection stays so: one the pool opened while `meshtel.db` could
/// not be written (an immutable or read-only file for a while) would fail every write
/// after the file is writable again. Closed, the next write opens a new one.
pub(crate) fn close_if_read_only<T>(conn: &mut PoolConnection<Sqlite>, written: &Result<T>) {
    if let Err(e) = written
        && e.to_string().contains("readonly database")
    {
        warn!("closing a database connection opened read-only; the next write opens a new one");
        conn.close_on_drop();
    }
}

/// The pool's check of a connection given back: false (the pool closes it, SQLite
/// rolling back what it holds) when it is still inside a transaction. A transaction
/// dropped unfinished has queued its `ROLLBACK`; the ping lets it run first.
async fn out_of_transaction(conn: &mut SqliteConnection, database: &Path) -> bool {
    if !conn.is_in_transaction() {
        return true;
    }
    if let Err(e) = conn.ping().await {
        warn!(database = %database.display(), error = %e, "closing a database connection that failed");
        return false;
    }
    if conn.is_in_transaction() {
        warn!(
            database = %database.display(),
            "closing a database connection left inside a failed transaction (SQLite rolls \
             back what it holds); its writes were reported failed"
        );
        return false;
    }
    true
}

#[cfg(test)]
mod tests;
