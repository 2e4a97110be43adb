//! The store's one error type.

use std::path::{Path, PathBuf};

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File system failure (WAL, blocks).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// A directory or file of the data directory cannot be created, opened or read:
    /// the data directory itself, `blocks/`, `wal/`, a WAL segment, the lock file.
    #[error("{what} {}: {source}", path.display())]
    DataDir {
        /// What the path is, for the message: "data directory", "WAL segment", ...
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Another process holds the data directory's lock: two writers on one data
    /// directory would overwrite each other's blocks.
    #[error(
        "data directory {} is in use by another meshtel process{} holding the lock on {}: \
         stop it first, or use another data directory (`meshtel query` can run beside it)",
        path.display(),
        holder.map(|pid| format!(" (pid {pid})")).unwrap_or_default(),
        path.join(crate::lock::LOCK_FILE).display()
    )]
    Locked {
        /// The data directory.
        path: PathBuf,
        /// The process id the holder wrote into the lock file, when readable.
        holder: Option<u32>,
    },
    /// The SQL database (`meshtel.db`) cannot be opened or migrated.
    #[error("database {}: {source}", path.display())]
    Database {
        /// The database file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// A service-graph read ran past `[edges] max_read_time` and was stopped.
    #[error(
        "this graph read took longer than [edges] max_read_time ({}) and was stopped: ask \
         for a shorter window, or raise the setting",
        humantime::format_duration(*limit)
    )]
    ReadTimeLimit {
        /// The setting's value.
        limit: std::time::Duration,
    },
    /// A service-graph read summed more distinct edges than `[edges] max_read_edges`.
    #[error(
        "this graph read holds more than [edges] max_read_edges ({limit}) distinct edges \
         and was stopped: ask for a shorter window, or raise the setting (meshtel_edges_overflow_total \
         and the collector's log say whether callers are making up workload names)"
    )]
    ReadEdgeLimit {
        /// The setting's value (times the periods of a read in periods).
        limit: usize,
    },
    /// A span-based dependency query waited this long for its turn (they run one at a
    /// time) and was refused.
    #[error(
        "span-based dependency queries run one at a time and this one waited {} for its \
         turn: retry later, or ask for a shorter window",
        humantime::format_duration(*.0)
    )]
    DependencyTurn(std::time::Duration),
    /// A block file that cannot be read: missing, truncated or corrupt.
    #[error("block {}: {source}", path.display())]
    Block {
        /// The block file.
        path: PathBuf,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// A read over several blocks at once failed in one of them.
    #[error("one of the blocks {}: {source}", list_paths(paths))]
    Blocks {
        /// The block files read together.
        paths: Vec<PathBuf>,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
    /// None of the blocks the index lists is on disk: most likely the blocks live on
    /// a volume that is not mounted.
    #[error(
        "none of the {count} blocks the index lists is in {}; if the blocks live on \
         another volume, mount it and start again; if they are gone for good, `meshtel \
         blocks forget-missing` takes them out of the index (their spans are lost)",
        path.display()
    )]
    BlocksMissing {
        /// The blocks directory.
        path: PathBuf,
        /// Blocks the index lists.
        count: usize,
    },
    /// Arrow failure while building or reading rows.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet failure while writing or reading a block.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// DataFusion failure while planning or running a search.
    #[error("query error: {0}")]
    DataFusion(#[from] datafusion_common::DataFusionError),
    /// SQL failure (catalog, block index).
    #[error("sql error: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migration failure at start-up.
    #[error("sql migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database was migrated by a newer meshtel than this one.
    #[error(
        "it was written by a newer meshtel (schema version {found}; this one knows up to {known}): \
         run that version or a newer one, or start from a copy of the data directory made before the upgrade"
    )]
    NewerSchema {
        /// The highest schema version recorded in the database.
        found: i64,
        /// The highest this build knows.
        known: i64,
    },
    /// The database's schema is older than this build's, in a process that does not
    /// upgrade it (`meshtel query`), after waiting for a collector to do so.
    #[error(
        "its schema is older than this meshtel's (version {found}; this one needs {expected}) \
         and no collector upgraded it within {waited:?}: start `meshtel collector` (or \
         `meshtel serve`) of this version on the data directory first, which upgrades it, \
         then this query process"
    )]
    OlderSchema {
        /// The highest schema version recorded in the database (0: none yet).
        found: i64,
        /// The version this build needs.
        expected: i64,
        /// How long the process waited for an upgrade.
        waited: std::time::Duration,
    },
    /// A migration is recorded as not successful: it failed part-way.
    #[error(
        "migration {version} is recorded as failed part-way (the collector that ran it \
         logged why): restore meshtel.db from a copy made before the upgrade"
    )]
    MigrationFailed {
        /// The migration's version.
        version: i64,
    },
    /// Stored bytes that do not decode.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// An events/links column that does not decode.
    #[error("corrupt extras column: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Invalid configuration; the message names the section and key as the config
    /// file spells them (`[store] flush_rows must be at least 1`).
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The store has shut down.
    #[error("store is shut down")]
    Closed,
    /// A write refused for what it asks of the store, with the error to answer it with.
    #[error("{0}")]
    Refused(meshtel_model::Error),
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

impl Error {
    /// An I/O failure on `path` ([`Error::DataDir`]), for `map_err`.
    pub(crate) fn at(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.to_path_buf();
        move |source| Error::DataDir { what, path, source }
    }

    /// A failure reading the block at `path` ([`Error::Block`]), for `map_err`.
    pub(crate) fn in_block<E: Into<Error>>(path: &Path) -> impl FnOnce(E) -> Error {
        let path = path.to_path_buf();
        move |source| Error::Block {
            path,
            source: Box::new(source.into()),
        }
    }

    /// A query that needed more than `store.max_query_memory`, wherever it failed.
    pub fn is_out_of_memory(&self) -> bool {
        match self {
            Error::DataFusion(e) => matches!(
                e.find_root(),
                datafusion_common::DataFusionError::ResourcesExhausted(_)
            ),
            Error::Block { source, .. } | Error::Blocks { source, .. } => source.is_out_of_memory(),
            _ => false,
        }
    }

    /// What a write that failed with this answers: a refusal as it is, anything else
    /// as the store being unavailable.
    pub(crate) fn into_write_error(self) -> meshtel_model::Error {
        match self {
            Error::Refused(error) => error,
            other => meshtel_model::Error::Unavailable(other.to_string()),
        }
    }

    /// The block file this error names, when it names exactly one.
    pub(crate) fn block_path(&self) -> Option<&Path> {
        match self {
            Error::Block { path, .. } => Some(path),
            _ => None,
        }
    }
}

/// Up to four paths of a list, then how many more.
fn list_paths(paths: &[PathBuf]) -> String {
    const SHOWN: usize = 4;
    let mut out: Vec<String> = paths
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if paths.len() > SHOWN {
        out.push(format!("and {} more", paths.len() - SHOWN));
    }
    out.join(", ")
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQLite's primary result code for a full disk (or database size limit).
const SQLITE_FULL: i64 = 13;
/// SQLite's primary result codes for a database another connection holds locked past
/// the busy timeout.
const SQLITE_BUSY: i64 = 5;
const SQLITE_LOCKED: i64 = 6;

impl Error {
    /// Whether SQLite gave up waiting for another writer's lock: a write to retry.
    pub fn is_database_busy(&self) -> bool {
        match self {
            Error::Sql(sqlx::Error::Database(db)) => db
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .is_some_and(|code| matches!(code & 0xff, SQLITE_BUSY | SQLITE_LOCKED)),
            _ => false,
        }
    }

    /// Whether this is the disk (or SQLite's size limit) being full: an operator's
    /// problem to fix, and a write to retry once they have.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Sql(sqlx::Error::Database(db)) => db
                .code()
                .and_then(|code| code.parse::<i64>().ok())
                .is_some_and(|code| code & 0xff == SQLITE_FULL),
            Error::Io(e) | Error::DataDir { source: e, .. } => {
                matches!(
                    e.kind(),
                    std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded
                )
            }
            _ => false,
        }
    }
}

/// A full disk is `Unavailable` with a message an operator can act on (the query API
/// shows it: 503); any other store failure is `Storage`, logged and not shown.
impl From<Error> for meshtel_model::Error {
    fn from(e: Error) -> Self {
        if e.is_out_of_memory() {
            return meshtel_model::Error::Unavailable(format!(
                "this query needs more memory than store.max_query_memory leaves it beside \
                 the queries running with it: ask for a shorter time window, or retry ({e})"
            ));
        }
        if matches!(
            e,
            Error::ReadTimeLimit { .. } | Error::ReadEdgeLimit { .. } | Error::DependencyTurn(_)
        ) {
            return meshtel_model::Error::Unavailable(e.to_string());
        }
        if e.is_database_busy() {
            return meshtel_model::Error::Unavailable(format!(
                "the database is busy with other writes and this one waited its turn in \
                 vain; nothing was written, retry ({e})"
            ));
        }
        if e.is_disk_full() {
            return meshtel_model::Error::Unavailable(format!(
                "the data directory's disk is full, nothing was written; free space and retry ({e})"
            ));
        }
        meshtel_model::Error::Storage(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use sqlx::{Connection, SqliteConnection};

    use super::*;

    /// A write that waited in vain for another writer's lock is a retryable 503 with
    /// a message that says so, not an opaque internal error.
    #[tokio::test]
    async fn a_database_locked_by_another_writer_is_unavailable() {
        let dir = tempfile::tempdir().unwrap();
        let options = SqliteConnectOptions::new()
            .filename(dir.path().join("busy.db"))
            .create_if_missing(true)
            .busy_timeout(std::time::Duration::ZERO);
        let mut holder = SqliteConnection::connect_with(&options).await.unwrap();
        sqlx::query("CREATE TABLE t (x INTEGER)").execute(&mut holder).await.unwrap();
        sqlx::query("BEGIN IMMEDIATE").execute(&mut holder).await.unwrap();
        let pool = SqlitePoolOptions::new().connect_with(options).await.unwrap();
        let error: Error = sqlx::query("INSERT INTO t VALUES (1)")
            .execute(&pool)
            .await
            .unwrap_err()
            .into();
        assert!(error.is_database_busy(), "{error}");
        match meshtel_model::Error::from(error) {
            meshtel_model::Error::Unavailable(message) => {
                assert!(message.contains("busy with other writes"), "{message}");
            }
            other => panic!("expected Unavailable, got {other:?}"),
        }
    }
}
