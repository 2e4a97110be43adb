//! The `[edges]` settings.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::humantime_serde_compat;
use crate::{Error, Result};

/// Coarse bucket length when `coarse_bucket` is not set.
const DEFAULT_COARSE_BUCKET: Duration = Duration::from_secs(300);

/// Edge rollup settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EdgeConfig {
    /// Length of one rollup bucket; graph windows are counted in whole buckets.
    #[serde(with = "humantime_serde_compat")]
    pub bucket: Duration,
    /// How long a bucket stays open after it ends, for records that arrive late.
    #[serde(with = "humantime_serde_compat")]
    pub flush_grace: Duration,
    /// Length of the buckets that older rollups are summed into: a multiple of
    /// `bucket`; equal to it, rollups are never summed. Zero (the default): 5 minutes,
    /// rounded up to a whole number of buckets ([`EdgeConfig::coarse_len`]).
    #[serde(with = "humantime_serde_compat")]
    pub coarse_bucket: Duration,
    /// Age past which `bucket`-long rollups are summed into coarse ones.
    #[serde(with = "humantime_serde_compat")]
    pub coarse_after: Duration,
    /// How long rollups are kept in SQL.
    #[serde(with = "humantime_serde_compat")]
    pub retention: Duration,
    /// How often rows older than `retention` are deleted, and rows older than
    /// `coarse_after` summed.
    #[serde(with = "humantime_serde_compat")]
    pub prune_interval: Duration,
    /// Longest a graph read may take: past it, its SQL is stopped and the read fails
    /// naming this setting (the query API answers 503).
    #[serde(with = "humantime_serde_compat")]
    pub max_read_time: Duration,
    /// Most distinct edges in one bucket; records of further edges are counted as
    /// overflow and left out.
    pub max_edges_per_bucket: usize,
    /// Most distinct edges one graph read sums (per period, for reads in periods):
    /// past it the read is stopped naming this setting (the query API answers 503),
    /// instead of holding every edge a long window collected (the graph's JSON costs
    /// about 12 KB of memory per edge while it is built).
    pub max_read_edges: usize,
    /// Most edges held in memory while SQL refuses them: past it, the oldest buckets
    /// that could not be written are dropped, and their requests counted as dropped.
    /// Never less than one full bucket (`max_edges_per_bucket`).
    pub max_edges_in_memory: usize,
}

impl Default for EdgeConfig {
    fn default() -> Self {
        EdgeConfig {
            bucket: Duration::from_secs(10),
            flush_grace: Duration::from_secs(5),
            coarse_bucket: Duration::ZERO,
            coarse_after: Duration::from_secs(3600),
            retention: Duration::from_secs(7 * 24 * 3600),
            prune_interval: Duration::from_secs(600),
            max_read_time: Duration::from_secs(30),
            max_edges_per_bucket: 50_000,
            max_read_edges: 10_000,
            // About 150 MB of edges, or hours of buckets of a mesh of a few hundred edges.
            max_edges_in_memory: 200_000,
        }
    }
}

impl EdgeConfig {
    /// Checks the settings.
    pub fn validate(&self) -> Result<()> {
        if self.bucket < Duration::from_secs(1) || self.bucket.subsec_nanos() != 0 {
            return Err(Error::Config(
                "[edges] bucket must be whole seconds, at least 1s".into(),
            ));
        }
        if !self.coarse_bucket.is_zero()
            && (self.coarse_bucket < self.bucket
                || !self
                    .coarse_bucket
                    .as_nanos()
                    .is_multiple_of(self.bucket.as_nanos()))
        {
            return Err(Error::Config(format!(
                "[edges] coarse_bucket ({}) must be a whole multiple of bucket ({})",
                humantime::format_duration(self.coarse_bucket),
                humantime::format_duration(self.bucket)
            )));
        }
        // A bucket is summed only once no record can reach it any more.
        if self.is_coarsened() && self.coarse_after < self.coarse_len() + self.flush_grace {
            return Err(Error::Config(
                "[edges] coarse_after must be at least coarse_bucket + flush_grace".into(),
            ));
        }
        if self.retention < self.bucket {
            return Err(Error::Config(
                "[edges] retention must be at least one bucket".into(),
            ));
        }
        if self.prune_interval.is_zero()
            || self.max_edges_per_bucket == 0
            || self.max_read_time.is_zero()
            || self.max_read_edges == 0
        {
            return Err(Error::Config(
                "[edges] prune_interval, max_read_time, max_edges_per_bucket and \
                 max_read_edges must be positive"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Whether old rollups are summed into coarser buckets.
    pub fn is_coarsened(&self) -> bool {
        self.coarse_len() > self.bucket
    }

    /// Length of the coarse buckets: `coarse_bucket`, or when zero 5 minutes rounded
    /// up to a whole number of buckets (so that any `bucket` keeps a valid default).
    pub fn coarse_len(&self) -> Duration {
        if !self.coarse_bucket.is_zero() {
            return self.coarse_bucket;
        }
        let bucket = self.bucket.as_nanos().max(1);
        let len = DEFAULT_COARSE_BUCKET.as_nanos().div_ceil(bucket) * bucket;
        u64::try_from(len).map_or(self.bucket, Duration::from_nanos)
    }
}
