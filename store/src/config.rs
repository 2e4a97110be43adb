//! Store configuration: where data lives, how the WAL syncs, when the head is flushed,
//! how blocks are compacted and how long they are kept.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use serde::{Deserialize, Serialize};

/// When the WAL reaches stable storage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum WalSync {
    /// `fdatasync` before every acknowledgement: nothing acknowledged is lost even on
    /// power failure, at the cost of one disk flush per group commit.
    Always,
    /// `fdatasync` every `wal.sync_interval`: a process crash loses nothing acknowledged
    /// (the kernel has the bytes); a power failure can lose the last interval.
    #[default]
    Interval,
}

/// How rows are ordered within a block: the trade between fetching a trace and
/// searching one service.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum BlockOrder {
    /// By trace id, then start: a trace's spans sit together, so a fetch by id reads
    /// the fewest pages and ids and parent ids compress best (51 bytes/span in the
    /// storage benchmark).
    #[default]
    Trace,
    /// By service, then trace id, then start: a search (every Jaeger search names a
    /// service) decodes the pages of one service instead of all, which made tag
    /// searches over 10M spans of 10 services 3.5 times faster; a trace's spans are
    /// split by service, so fetches read more pages and blocks take about a tenth more
    /// disk (55.7 bytes/span).
    Service,
}

/// Write-ahead log settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WalConfig {
    /// `"always"` or `"interval"` (default). See [`WalSync`].
    #[serde(default)]
    pub sync: WalSync,
    /// With `sync = "interval"`: how often the WAL is synced; the window of acknowledged
    /// spans that a power failure (not a process crash) can lose. Default `100ms`; at
    /// most `10s` ([`MAX_WAL_SYNC_INTERVAL`]).
    #[serde(default = "default_sync_interval", with = "humantime_serde_compat")]
    pub sync_interval: Duration,
}

fn default_sync_interval() -> Duration {
    Duration::from_millis(100)
}

/// Longest `wal.sync_interval` accepted: 10 s. The interval is the window of
/// acknowledged spans a power failure can lose, and syncing less often than this saves
/// nothing measurable (one `fdatasync` per 10 s is already negligible next to ingest),
/// while the window keeps growing.
pub const MAX_WAL_SYNC_INTERVAL: Duration = Duration::from_secs(10);

/// Shortest `wal.sync_interval` accepted: 1 ms. The WAL writer wakes every interval;
/// below a millisecond it spins a core while idle and syncs no more often (`wal.sync =
/// always` is the setting that syncs every write).
pub const MIN_WAL_SYNC_INTERVAL: Duration = Duration::from_millis(1);

/// Largest `max_queued_bytes` accepted: 16 GiB. The queue holds request bytes in
/// memory until the WAL writer takes them; this is 256 times the default and four
/// requests of the largest size `[ingest] max_request_bytes` allows (4 GiB). A larger
/// queue would only accept more than a collector can hold in memory before refusing.
pub const MAX_QUEUED_BYTES: ByteSize = ByteSize::gib(16);

impl Default for WalConfig {
    fn default() -> Self {
        WalConfig {
            sync: WalSync::default(),
            sync_interval: default_sync_interval(),
        }
    }
}

/// Store settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreConfig {
    /// Directory holding the WAL, the blocks and the SQLite database. Set at the top
    /// level of the config file (`data_dir`) or with `--data-dir`; not part of `[store]`.
    #[serde(skip, default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Write-ahead log.
    #[serde(default)]
    pub wal: WalConfig,
    /// The in-memory head is flushed to a Parquet block at least this often. Default `2s`.
    #[serde(default = "default_flush_interval", with = "humantime_serde_compat")]
    pub flush_interval: Duration,
    /// ... or as soon as it holds this many spans. Default 65536.
    #[serde(default = "default_flush_rows")]
    pub flush_rows: usize,
    /// Bound on spans held in memory (head plus blocks being written); writes beyond it
    /// are refused with a retry hint until a flush frees room. Default 524288 (a few
    /// hundred MiB for typical spans).
    #[serde(default = "default_max_head_rows")]
    pub max_head_rows: usize,
    /// Bound on the Arrow memory of spans held in memory (head plus blocks being
    /// written), the larger part of the collector's resident memory under heavy ingest;
    /// writes beyond it are refused with a retry hint until a flush frees room. The head
    /// is also flushed once it holds a quarter of this. Default `96MiB`: at full ingest
    /// speed the allocator keeps about as much again as the head holds, and this keeps
    /// the collector under 512 MiB without slowing ingest (see the README).
    #[serde(
        default = "default_max_head_bytes",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_head_bytes: ByteSize,
    /// Bound on request bytes queued for the WAL writer; beyond it writes are refused
    /// with a retry hint. Default `64MiB`; between 1 byte and `16GiB`
    /// ([`MAX_QUEUED_BYTES`]), and at least `[ingest] max_request_bytes`.
    #[serde(
        default = "default_max_queued_bytes",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_queued_bytes: ByteSize,
    /// Bound on what one read holds of its spans' strings (attributes, events, links):
    /// a search's or a trace fetch's answer. Past it the largest traces are cut to their
    /// earliest spans, as past `[query] max_spans_per_response` (with the same warning
    /// and count): a few spans of megabytes each must not make an answer of gigabytes.
    /// Default `64MiB`, about what 50,000 spans of a kilobyte of attributes each hold (a
    /// read takes some eight times this while its answer is built); at least `1MiB`.
    #[serde(
        default = "default_max_read_bytes",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_read_bytes: ByteSize,
    /// Free space kept on the data directory's disk. Below it, new spans are refused
    /// before they reach the WAL (503 `Retry-After` / `UNAVAILABLE` with a retry delay,
    /// counted in `meshtel_store_writes_rejected_disk_full_total`), while flushes,
    /// compaction and retention go on: the WAL never takes the room the head's flush
    /// needs to become a block and free that WAL. Read every 500 ms
    /// (`meshtel_store_disk_free_bytes`). Default `256MiB`; `0` turns the reserve off;
    /// a reserve not below the disk's size is refused at start.
    #[serde(
        default = "default_min_free_disk",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub min_free_disk: ByteSize,
    /// Rows per Parquet row group. Default 65536.
    #[serde(default = "default_row_group_rows")]
    pub row_group_rows: usize,
    /// `"trace"` (default) or `"service"`: how rows are ordered in blocks written from
    /// now on. See [`BlockOrder`].
    #[serde(default)]
    pub block_order: BlockOrder,
    /// Blocks smaller than this many rows are merged by compaction. Default 262144 (one
    /// compacted row group). A search reads blocks newest first and stops once it has
    /// its traces, so smaller blocks mean less read past them: over 10M spans, the
    /// service + operation + duration search took p50 36-40 ms with this target against
    /// 47-51 ms with 524288, at the same bytes per span.
    #[serde(default = "default_compaction_target_rows")]
    pub compaction_target_rows: usize,
    /// How often compaction and retention run. Default `30s`.
    #[serde(
        default = "default_compaction_interval",
        with = "humantime_serde_compat"
    )]
    pub compaction_interval: Duration,
    /// Blocks whose newest span is older than this are deleted. Default `7d`.
    #[serde(default = "default_retention_max_age", with = "humantime_serde_compat")]
    pub retention_max_age: Duration,
    /// Oldest blocks are deleted while all blocks together exceed this. Default `50GiB`;
    /// `0` sets no bound on size (as Prometheus reads its retention size), never "keep
    /// nothing". Any other value needs its unit (see [`parse_retention_bytes`]).
    #[serde(
        default = "default_retention_max_bytes",
        deserialize_with = "deserialize_retention_bytes"
    )]
    pub retention_max_bytes: ByteSize,
    /// Memory the DataFusion queries running at once (search steps, dependencies) may
    /// take together for their joins, aggregations and sorts. One that needs more is
    /// refused (503 naming this setting: ask for a shorter window) instead of growing
    /// the process; nothing is spilled to disk. Default `1GiB`.
    #[serde(
        default = "default_max_query_memory",
        deserialize_with = "meshtel_model::size::deserialize_size"
    )]
    pub max_query_memory: ByteSize,
    /// Most services the catalog lists (`/api/services`, the UI's service list). A
    /// service seen for the first time is listed while fewer than this many are, however
    /// many operations the others have; beyond it, new services are not listed (their
    /// spans are still stored and searchable), counted in
    /// `meshtel_store_catalog_overflow_total` and logged. Default 10000.
    #[serde(default = "default_max_catalog_services")]
    pub max_catalog_services: usize,
    /// Most distinct (operation, kind) entries the catalog lists for one service
    /// (`/api/operations`), so that a service that puts ids in its span names cannot
    /// take the catalog from the others. More are counted and logged, not listed.
    /// Default 1000: a hundredth of `max_catalog_operations`.
    #[serde(default = "default_max_catalog_operations_per_service")]
    pub max_catalog_operations_per_service: usize,
    /// Most distinct (service, operation, kind) entries the catalog lists over all
    /// services; more are counted and logged, not listed. A service whose first
    /// operation finds the catalog full is still listed by `/api/services` (bounded by
    /// `max_catalog_services`), without that operation. Default 100000.
    #[serde(default = "default_max_catalog_operations")]
    pub max_catalog_operations: usize,
}

/// `./meshtel-data`.
pub fn default_data_dir() -> PathBuf {
    PathBuf::from("./meshtel-data")
}
fn default_flush_interval() -> Duration {
    Duration::from_secs(2)
}
fn default_flush_rows() -> usize {
    65_536
}
fn default_max_head_rows() -> usize {
    524_288
}
fn default_max_query_memory() -> ByteSize {
    ByteSize::gib(1)
}
fn default_max_head_bytes() -> ByteSize {
    ByteSize::mib(96)
}
fn default_max_queued_bytes() -> ByteSize {
    ByteSize::mib(64)
}
fn default_max_read_bytes() -> ByteSize {
    ByteSize::mib(64)
}
fn default_row_group_rows() -> usize {
    65_536
}
fn default_compaction_target_rows() -> usize {
    262_144
}
fn default_compaction_interval() -> Duration {
    Duration::from_secs(30)
}
fn default_min_free_disk() -> ByteSize {
    ByteSize::mib(256)
}
fn default_retention_max_age() -> Duration {
    Duration::from_secs(7 * 24 * 3600)
}
fn default_retention_max_bytes() -> ByteSize {
    ByteSize::gib(50)
}
fn default_max_catalog_services() -> usize {
    10_000
}
fn default_max_catalog_operations_per_service() -> usize {
    1_000
}
fn default_max_catalog_operations() -> usize {
    100_000
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            data_dir: default_data_dir(),
            wal: WalConfig::default(),
            flush_interval: default_flush_interval(),
            flush_rows: default_flush_rows(),
            max_head_rows: default_max_head_rows(),
            max_head_bytes: default_max_head_bytes(),
            max_queued_bytes: default_max_queued_bytes(),
            max_read_bytes: default_max_read_bytes(),
            min_free_disk: default_min_free_disk(),
            row_group_rows: default_row_group_rows(),
            block_order: BlockOrder::default(),
            compaction_target_rows: default_compaction_target_rows(),
            compaction_interval: default_compaction_interval(),
            retention_max_age: default_retention_max_age(),
            retention_max_bytes: default_retention_max_bytes(),
            max_query_memory: default_max_query_memory(),
            max_catalog_services: default_max_catalog_services(),
            max_catalog_operations_per_service: default_max_catalog_operations_per_service(),
            max_catalog_operations: default_max_catalog_operations(),
        }
    }
}

impl StoreConfig {
    /// Checks values that serde cannot. Each message names the key as the config file
    /// spells it (`[store] flush_rows ...`).
    pub fn validate(&self) -> crate::Result<()> {
        let err = |m: &str| Err(crate::Error::Config(format!("[store] {m}")));
        if self.flush_rows == 0 {
            return err("flush_rows must be at least 1");
        }
        if self.max_head_bytes.as_u64() < ByteSize::mib(1).as_u64() {
            return err("max_head_bytes must be at least 1MiB");
        }
        if self.max_read_bytes.as_u64() < ByteSize::mib(1).as_u64() {
            return err("max_read_bytes must be at least 1MiB");
        }
        if self.max_head_rows < self.flush_rows {
            return err("max_head_rows must be at least flush_rows");
        }
        if self.max_query_memory.as_u64() == 0 {
            return err("max_query_memory must be more than 0");
        }
        let queued = self.max_queued_bytes.as_u64();
        // 0 would refuse every write: no request fits in an empty queue.
        if queued == 0 || queued > MAX_QUEUED_BYTES.as_u64() {
            return err(&format!(
                "max_queued_bytes must be between 1 byte and 16 GiB, got {}",
                self.max_queued_bytes
            ));
        }
        if self.row_group_rows == 0 {
            return err("row_group_rows must be at least 1");
        }
        if self.compaction_target_rows == 0 {
            // 0 would silently turn compaction off: no block is smaller than it.
            return err("compaction_target_rows must be at least 1");
        }
        if self.flush_interval.is_zero() || self.compaction_interval.is_zero() {
            return err("flush_interval and compaction_interval must be positive");
        }
        if self.wal.sync_interval < MIN_WAL_SYNC_INTERVAL
            || self.wal.sync_interval > MAX_WAL_SYNC_INTERVAL
        {
            return err(&format!(
                "wal.sync_interval must be between {} and {}, got {}: it is the window of \
                 acknowledged spans a power failure can lose (wal.sync = \"always\" syncs \
                 every write)",
                humantime::format_duration(MIN_WAL_SYNC_INTERVAL),
                humantime::format_duration(MAX_WAL_SYNC_INTERVAL),
                humantime::format_duration(self.wal.sync_interval)
            ));
        }
        if self.retention_max_age.is_zero() {
            // 0 would acknowledge every span and delete it at the next compaction pass.
            return err("retention_max_age must be positive");
        }
        if self.max_catalog_services == 0 {
            // 0 would store spans whose services never appear in /api/services.
            return err("max_catalog_services must be at least 1");
        }
        // 0 would list services with no operation to pick.
        if self.max_catalog_operations == 0 {
            return err("max_catalog_operations must be at least 1");
        }
        if self.max_catalog_operations_per_service == 0 {
            return err("max_catalog_operations_per_service must be at least 1");
        }
        Ok(())
    }
}

/// Reads a `retention_max_bytes` value: `0` (no bound) or a size with its unit
/// (`50GiB`, `500 MB`, `1073741824B`). A bare number is refused: the bound deletes
/// data, and `50` read as bytes, where the default's `50GiB` was meant, would delete
/// every block at the next compaction pass.
pub fn parse_retention_bytes(text: &str) -> Result<ByteSize, String> {
    let trimmed = text.trim();
    if trimmed == "0" {
        return Ok(ByteSize::b(0));
    }
    if !trimmed.is_empty() && trimmed.chars().all(|c| c.is_ascii_digit() || c == '.') {
        // A count of a megabyte and more is bytes (an older build read it so).
        if let Some(bytes) = trimmed.parse::<u64>().ok().filter(|b| *b >= 1 << 20) {
            return Err(format!(
                "{trimmed:?} has no unit: write \"{trimmed}B\" if it is bytes ({}), or a size \
                 such as \"50GiB\"; 0 for no bound on size",
                ByteSize::b(bytes).display().iec()
            ));
        }
        return Err(format!(
            "{trimmed:?} has no unit: write it with one, e.g. \"{trimmed}GiB\" or \"{trimmed}MiB\" \
             (\"{trimmed}B\" for bytes), or 0 for no bound on size"
        ));
    }
    trimmed
        .parse::<ByteSize>()
        .map_err(|e| format!("{trimmed:?} is not a size (e.g. 50GiB, 500MiB; 0 for no bound): {e}"))
}

/// [`parse_retention_bytes`] for a TOML string or integer.
fn deserialize_retention_bytes<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<ByteSize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Text {
        Number(u64),
        Text(String),
    }
    let text = match Text::deserialize(d)? {
        Text::Number(n) => n.to_string(),
        Text::Text(t) => t,
    };
    parse_retention_bytes(&text).map_err(serde::de::Error::custom)
}

/// `Duration` as humantime text (`"100ms"`, `"7d"`) in TOML.
pub mod humantime_serde_compat {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Serializes as humantime text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Parses humantime text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        meshtel_model::duration::parse_config_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_round_trips_through_json() {
        let config = StoreConfig::default();
        config.validate().unwrap();
        let text = serde_json::to_string(&config).unwrap();
        let back: StoreConfig = serde_json::from_str(&text).unwrap();
        assert_eq!(config, back);
    }

    #[test]
    fn a_retention_size_needs_its_unit() {
        assert_eq!(parse_retention_bytes("0"), Ok(ByteSize::b(0)));
        assert_eq!(parse_retention_bytes("50GiB"), Ok(ByteSize::gib(50)));
        assert_eq!(parse_retention_bytes("1048576B"), Ok(ByteSize::mib(1)));
        for bare in ["50", " 50 ", "1.5"] {
            let error = parse_retention_bytes(bare).unwrap_err();
            assert!(
                error.contains("has no unit") && error.contains("GiB"),
                "{error}"
            );
        }
        let error = parse_retention_bytes("53687091200").unwrap_err();
        assert!(
            error.contains("\"53687091200B\" if it is bytes (50.0 GiB)"),
            "{error}"
        );
        let error = parse_retention_bytes("lots").unwrap_err();
        assert!(error.contains("is not a size"), "{error}");
        let from_toml =
            |text: &str| toml::from_str::<StoreConfig>(text).map(|c| c.retention_max_bytes);
        assert_eq!(
            from_toml("retention_max_bytes = \"50 GiB\"").unwrap(),
            ByteSize::gib(50)
        );
        assert_eq!(
            from_toml("retention_max_bytes = 0").unwrap(),
            ByteSize::b(0)
        );
        for bare in ["retention_max_bytes = 50", "retention_max_bytes = \"50\""] {
            let error = from_toml(bare).unwrap_err().to_string();
            assert!(error.contains("has no unit"), "{bare}: {error}");
        }
    }

    #[test]
    fn a_zero_compaction_target_is_refused_by_name() {
        let config = StoreConfig {
            compaction_target_rows: 0,
            ..Default::default()
        };
        let err = config.validate().unwrap_err();
        assert!(err.to_string().contains("compaction_target_rows"), "{err}");
    }

    #[test]
    fn values_that_would_refuse_or_lose_every_span_are_refused_by_name() {
        let cases = [
            (
                StoreConfig {
                    max_queued_bytes: ByteSize::b(0),
                    ..Default::default()
                },
                "[store] max_queued_bytes",
            ),
            (
                StoreConfig {
                    retention_max_age: Duration::ZERO,
                    ..Default::default()
                },
                "[store] retention_max_age",
            ),
            (
                StoreConfig {
                    max_catalog_operations: 0,
                    ..Default::default()
                },
                "[store] max_catalog_operations",
            ),
            (
                StoreConfig {
                    flush_rows: 0,
                    ..Default::default()
                },
                "[store] flush_rows must be at least 1",
            ),
        ];
        for (config, key) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err}");
            assert!(!err.contains("store config"), "{err}");
        }
    }

    #[test]
    fn values_beyond_their_maximum_are_refused_by_name_with_the_range() {
        let cases = [
            (
                StoreConfig {
                    max_queued_bytes: ByteSize::eib(4),
                    ..Default::default()
                },
                "[store] max_queued_bytes must be between 1 byte and 16 GiB, got 4.0 EiB",
            ),
            (
                StoreConfig {
                    max_queued_bytes: ByteSize::b(MAX_QUEUED_BYTES.as_u64() + 1),
                    ..Default::default()
                },
                "[store] max_queued_bytes must be between 1 byte and 16 GiB",
            ),
            (
                StoreConfig {
                    wal: WalConfig {
                        sync_interval: Duration::from_secs(30),
                        ..Default::default()
                    },
                    ..Default::default()
                },
                "[store] wal.sync_interval must be between 1ms and 10s, got 30s",
            ),
            (
                StoreConfig {
                    max_catalog_services: 0,
                    ..Default::default()
                },
                "[store] max_catalog_services must be at least 1",
            ),
            (
                StoreConfig {
                    max_catalog_operations_per_service: 0,
                    ..Default::default()
                },
                "[store] max_catalog_operations_per_service must be at least 1",
            ),
        ];
        for (config, message) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(message), "{err}");
        }
        // The maxima themselves are accepted.
        StoreConfig {
            max_queued_bytes: MAX_QUEUED_BYTES,
            wal: WalConfig {
                sync_interval: MAX_WAL_SYNC_INTERVAL,
                ..Default::default()
            },
            ..Default::default()
        }
        .validate()
        .unwrap();
        assert_eq!(
            MAX_QUEUED_BYTES,
            ByteSize::gib(16),
            "the message says 16 GiB"
        );
    }

    #[test]
    fn unknown_fields_are_rejected() {
        let err = serde_json::from_str::<StoreConfig>(r#"{"flush_rowz": 3}"#).unwrap_err();
        assert!(err.to_string().contains("flush_rowz"), "{err}");
    }
}
