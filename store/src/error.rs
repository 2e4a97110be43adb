//! The store's one error type.

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// File system failure (WAL, blocks).
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The data directory cannot be created or resolved.
    #[error("data directory {path}: {source}")]
    DataDir {
        /// The directory as configured.
        path: std::path::PathBuf,
        /// What the file system said.
        source: std::io::Error,
    },
    /// Arrow failure while building or reading rows.
    #[error("arrow error: {0}")]
    Arrow(#[from] arrow::error::ArrowError),
    /// Parquet failure while writing or reading a block.
    #[error("parquet error: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    /// DataFusion failure while planning or running a search.
    #[error("query error: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// SQL failure (catalog, block index).
    #[error("sql error: {0}")]
    Sql(#[from] sqlx::Error),
    /// Migration failure at start-up.
    #[error("sql migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// Stored bytes that do not decode.
    #[error("corrupt data: {0}")]
    Corrupt(String),
    /// An events/links column that does not decode.
    #[error("corrupt extras column: {0}")]
    Decode(#[from] prost::DecodeError),
    /// Invalid configuration.
    #[error("invalid store config: {0}")]
    Config(String),
    /// The store has shut down.
    #[error("store is shut down")]
    Closed,
    /// A background task panicked or was cancelled.
    #[error("background task failed: {0}")]
    Join(#[from] tokio::task::JoinError),
}

/// Result with the store's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl From<Error> for meshtel_model::Error {
    fn from(e: Error) -> Self {
        meshtel_model::Error::Storage(e.to_string())
    }
}
