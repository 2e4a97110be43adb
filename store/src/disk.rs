//! The data directory's disk and index as the writer needs them.
//!
//! - The free-space reserve (`store.min_free_disk`): below it new spans are refused
//!   before they reach the WAL, so that the WAL never takes the space the head's flush
//!   needs to become a block (a block is about a tenth of its WAL) and to delete that
//!   WAL. Flushes, compaction and retention go on: they free space. The free space is
//!   read (`statvfs`) at open and then every [`CHECK_INTERVAL`] by a background task,
//!   never per request; in between, what the WAL took since is subtracted. A WARN says
//!   when it falls below the reserve (at most one per 10 s) and an INFO when it is back
//!   above.
//! - Checks at open that the SQL index belongs to the blocks beside it (a new index
//!   beside block files is refused: it would set them all aside) and can be written.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use meshtel_model::Error as ModelError;
use parking_lot::Mutex;
use tracing::{info, warn};

use crate::catalog::Catalog;
use crate::stats::Stats;
use crate::{Error, Inner, Result};

/// How often the background task reads the disk's free space.
pub(crate) const CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// The retry delay advised to writers refused for want of disk space: space comes back
/// with a flush, a compaction or an operator, none of them within milliseconds.
pub(crate) const DISK_FULL_RETRY_AFTER: Duration = Duration::from_secs(5);

/// The SQL index's file in the data directory.
pub(crate) const DATABASE_FILE: &str = "meshtel.db";

/// A file system's size and the bytes an unprivileged process may still write to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    pub free: u64,
    pub total: u64,
}

/// The size and free bytes of the file system holding `path` (`statvfs`).
#[cfg(target_os = "linux")]
pub(crate) fn usage(path: &Path) -> io::Result<Usage> {
    let st = rustix::fs::statvfs(path)?;
    Ok(Usage {
        free: st.f_bavail.saturating_mul(st.f_frsize),
        total: st.f_blocks.saturating_mul(st.f_frsize),
    })
}

/// Not measured on this platform: the reserve is not enforced.
#[cfg(not(target_os = "linux"))]
pub(crate) fn usage(_path: &Path) -> io::Result<Usage> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "free space is only measured on Linux",
    ))
}

type Probe = Box<dyn Fn(&Path) -> io::Result<Usage> + Send + Sync>;

/// Free space not known (before the first check, or when it cannot be read): writes
/// are not refused.
const UNKNOWN: u64 = u64::MAX;

/// Least time between two WARNs that the disk is below the reserve.
const WARN_EVERY: Duration = Duration::from_secs(10);

/// The free-space reserve of the data directory's disk.
///
/// Between two checks, the free space is estimated from the latest one less what the
/// WAL has taken since and what waits to be written to it, so that a burst cannot run
/// past the reserve before the next check.
pub(crate) struct DiskReserve {
    dir: PathBuf,
    /// `store.min_free_disk` in bytes; 0: never refuse.
    min_free: u64,
    /// Free bytes at the latest check, or [`UNKNOWN`].
    free_at_check: AtomicU64,
    /// The WAL bytes written since start (`Stats::wal_bytes`) just before that check.
    wal_at_check: AtomicU64,
    /// Writes are refused: the (estimated) free space is below `min_free`.
    below: AtomicBool,
    /// When the latest WARN that it is was logged; whether an INFO is owed.
    warned: Mutex<(Option<Instant>, bool)>,
    /// The free space could not be read at the latest check (told once).
    unreadable: AtomicBool,
    probe: Probe,
}

/// Refuses a `min_free_disk` not below the size of the disk `data_dir` is on (or will
/// be on: its nearest existing ancestor is measured), before anything is created
/// there: `--check-config` and a start that would be refused create nothing.
pub fn check_min_free_disk(data_dir: &Path, min_free: ByteSize) -> Result<()> {
    let mut dir = data_dir;
    while !dir.exists() {
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => dir = parent,
            _ => {
                dir = Path::new(".");
                break;
            }
        }
    }
    match usage(dir) {
        Ok(usage) => reserve_fits(min_free.as_u64(), data_dir, usage.total),
        // Measured again at open; unreadable there, the reserve is not enforced (a WARN).
        Err(_) => Ok(()),
    }
}

/// A reserve of `min_free` bytes (0: none) on a disk of `total` bytes.
fn reserve_fits(min_free: u64, data_dir: &Path, total: u64) -> Result<()> {
    if min_free > 0 && min_free >= total {
        return Err(Error::Config(format!(
            "[store] min_free_disk ({}) is not below the size of the disk of data \
             directory {} ({}): no span could ever be written; set it lower (a tenth \
             of the disk, say), or to 0 to turn the reserve off",
            ByteSize::b(min_free),
            data_dir.display(),
            ByteSize::b(total)
        )));
    }
    Ok(())
}

impl DiskReserve {
    /// The reserve of `min_free` bytes on the disk of `dir`.
    pub(crate) fn new(dir: &Path, min_free: ByteSize) -> DiskReserve {
        Self::with_probe(dir, min_free, Box::new(usage))
    }

    pub(crate) fn with_probe(dir: &Path, min_free: ByteSize, probe: Probe) -> DiskReserve {
        DiskReserve {
            dir: dir.to_path_buf(),
            min_free: min_free.as_u64(),
            free_at_check: AtomicU64::new(UNKNOWN),
            wal_at_check: AtomicU64::new(0),
            below: AtomicBool::new(false),
            warned: Mutex::new((None, false)),
            unreadable: AtomicBool::new(false),
            probe,
        }
    }

    /// A reserve that never refuses and never reads the disk (read-only stores).
    pub(crate) fn disabled(dir: &Path) -> DiskReserve {
        Self::with_probe(
            dir,
            ByteSize::b(0),
            Box::new(|_| Err(io::Error::other("not measured"))),
        )
    }

    /// At open: refuses a reserve larger than the whole disk (no span could ever be
    /// written), then reads the free space ([`DiskReserve::refresh`]; below the reserve
    /// the store starts anyway, with the WARN, so that queries and flushes work).
    pub(crate) fn check_at_open(&self, stats: &Stats) -> Result<()> {
        if let Ok(usage) = (self.probe)(&self.dir) {
            reserve_fits(self.min_free, &self.dir, usage.total)?;
        }
        self.refresh(stats);
        Ok(())
    }

    /// Reads the free space, updates the `disk_free_bytes` gauge, and logs when it
    /// crosses the reserve. When it cannot be read, writes are not refused (a WARN,
    /// once until it can be read again).
    pub(crate) fn refresh(&self, stats: &Stats) {
        let wal_bytes = stats.wal_bytes.load(Ordering::Relaxed);
        let free = match (self.probe)(&self.dir) {
            Ok(usage) => usage.free,
            Err(e) => {
                if self.min_free > 0 && !self.unreadable.swap(true, Ordering::Relaxed) {
                    warn!(
                        data_dir = %self.dir.display(),
                        error = %e,
                        "cannot read the free space of the data directory's disk; \
                         store.min_free_disk is not enforced until it can"
                    );
                }
                self.free_at_check.store(UNKNOWN, Ordering::Relaxed);
                self.below.store(false, Ordering::Relaxed);
                return;
            }
        };
        stats.disk_free_bytes.store(free, Ordering::Relaxed);
        self.unreadable.store(false, Ordering::Relaxed);
        self.wal_at_check.store(wal_bytes, Ordering::Relaxed);
        self.free_at_check.store(free, Ordering::Relaxed);
        if self.min_free > 0 && free < self.min_free {
            self.mark_below(free);
        } else if self.below.swap(false, Ordering::Relaxed) {
            let mut warned = self.warned.lock();
            if std::mem::take(&mut warned.1) {
                info!(
                    data_dir = %self.dir.display(),
                    free_bytes = free,
                    free = %ByteSize::b(free),
                    min_free_disk = %ByteSize::b(self.min_free),
                    "the data directory's disk is no longer below store.min_free_disk: \
                     new spans are accepted"
                );
            }
        }
    }

    /// Writes are refused from now on; a WARN when they were not (at most one per
    /// [`WARN_EVERY`]).
    fn mark_below(&self, free: u64) {
        if self.below.swap(true, Ordering::Relaxed) {
            return;
        }
        let mut warned = self.warned.lock();
        if warned.0.is_none_or(|at| at.elapsed() >= WARN_EVERY) {
            *warned = (Some(Instant::now()), true);
            warn!(
                data_dir = %self.dir.display(),
                free = %ByteSize::b(free),
                min_free_disk = %ByteSize::b(self.min_free),
                "data directory's disk below store.min_free_disk: new spans are refused \
                 until space is freed; the head is still flushed"
            );
        }
    }

    /// Why writes are refused while the free space is `free`.
    /// Whether writes are refused now: the free space was found below the reserve.
    pub(crate) fn is_below(&self) -> bool {
        self.below.load(Ordering::Relaxed)
    }

    pub(crate) fn refusal(&self, free: u64) -> String {
        format!(
            "data directory {} has {} free, below store.min_free_disk ({}): new spans \
             are refused until space is freed; the head is still flushed",
            self.dir.display(),
            ByteSize::b(free),
            ByteSize::b(self.min_free)
        )
    }

    /// The free space the latest check found (`None` before the first or when it could
    /// not be read).
    pub(crate) fn free_at_check(&self) -> Option<u64> {
        let checked = self.free_at_check.load(Ordering::Relaxed);
        (checked != UNKNOWN).then_some(checked)
    }

    /// The free space as the latest check found it, less the WAL written since;
    /// `None` before the first check.
    fn free_now(&self, stats: &Stats) -> Option<u64> {
        let checked = self.free_at_check.load(Ordering::Relaxed);
        (checked != UNKNOWN).then(|| {
            let since = stats
                .wal_bytes
                .load(Ordering::Relaxed)
                .saturating_sub(self.wal_at_check.load(Ordering::Relaxed));
            checked.saturating_sub(since)
        })
    }

    /// Whether `bytes` more (a merge's output, at most its inputs' size) fit above the
    /// reserve, as the latest check found the disk less the WAL written since. Always
    /// true with the reserve off or before the first check.
    pub(crate) fn has_room_for(&self, stats: &Stats, bytes: u64) -> bool {
        match self.free_now(stats) {
            Some(free) if self.min_free > 0 => free >= self.min_free.saturating_add(bytes),
            _ => true,
        }
    }

    /// Admits a write, or refuses it as an overload (counted in `rejected_disk_full`)
    /// when the free space, as the latest check found it less the WAL bytes written
    /// since and the `queued` bytes waiting for the WAL, is below the reserve.
    pub(crate) fn admit(&self, stats: &Stats, queued: u64) -> Result<(), ModelError> {
        if self.min_free == 0 {
            return Ok(());
        }
        let checked = self.free_now(stats);
        let on_disk = checked.unwrap_or(u64::MAX);
        let free = on_disk.saturating_sub(queued);
        if !self.below.load(Ordering::Relaxed) {
            if checked.is_none() || free >= self.min_free {
                return Ok(());
            }
            // Only the disk itself being below the reserve is a state to tell of (and
            // to hold until the next read): a request that would take it there is
            // refused alone.
            if on_disk < self.min_free {
                self.mark_below(on_disk);
            }
        }
        stats.rejected_disk_full.fetch_add(1, Ordering::Relaxed);
        let message = if on_disk < self.min_free {
            self.refusal(on_disk)
        } else {
            // Not below yet: readiness and the free-space metric still read healthy, so
            // the message says what the figure is.
            format!(
                "data directory {} has about {} free (the latest check less the WAL written \
                 since), and the {} of requests waiting for the WAL, this one's included, would \
                 leave {}, below store.min_free_disk ({}): this request is refused; retry once \
                 flushes and merges have made room or space is freed",
                self.dir.display(),
                ByteSize::b(on_disk),
                ByteSize::b(queued),
                ByteSize::b(free),
                ByteSize::b(self.min_free)
            )
        };
        Err(ModelError::DiskFull {
            message,
            retry_after: DISK_FULL_RETRY_AFTER,
        })
    }
}

/// Reads the free space every [`CHECK_INTERVAL`] until the store shuts down (the task
/// is aborted then).
pub(crate) async fn run_monitor(inner: Arc<Inner>) {
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let inner = inner.clone();
        // statvfs can block on a network file system: off the runtime's threads.
        let _ = tokio::task::spawn_blocking(move || inner.disk.refresh(&inner.stats)).await;
    }
}

/// Before the index is opened: a `meshtel.db` that is missing or empty would start a
/// new index, and the block files beside it, which it does not list, would all be set
/// aside, unsearchable. Refuses that, saying what to do; an index that exists, or an
/// empty `blocks/`, is left to start as usual.
pub(crate) fn check_index_beside_blocks(data_dir: &Path, blocks_dir: &Path) -> Result<()> {
    let db = data_dir.join(DATABASE_FILE);
    let state = match std::fs::metadata(&db) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => "missing",
        Ok(meta) if meta.len() == 0 && !wal_holds_the_schema(&data_dir.join("meshtel.db-wal")) => {
            "empty"
        }
        Ok(_) if holds_no_tables(&db) && !has_content(&data_dir.join("meshtel.db-wal")) => {
            "without a table (its meshtel.db-wal deleted?)"
        }
        // Unreadable or present: opening it says what is wrong.
        _ => return Ok(()),
    };
    let blocks = count_block_files(blocks_dir)?;
    if blocks == 0 {
        return Ok(());
    }
    Err(Error::DataDir {
        what: "database",
        path: db,
        source: io::Error::other(format!(
            "is {state} but {} holds {blocks} block file{} that only it indexes; meshtel \
             does not start with a new index, which would set them all aside: restore \
             meshtel.db from a backup (blocks written after the backup are then set aside \
             in blocks/orphaned/: `meshtel blocks adopt` indexes them again), or, without \
             a backup, move the block files into {}/orphaned/ and run `meshtel blocks \
             adopt` to index them in a new meshtel.db, or move {} away to start with an \
             empty store",
            blocks_dir.display(),
            if blocks == 1 { "" } else { "s" },
            blocks_dir.display(),
            blocks_dir.display()
        )),
    })
}

/// Whether `db` is an SQLite database without a single table: its first page, which
/// holds the schema, is a table leaf with no cells. What is left of meshtel.db when
/// its `-wal` file, which held everything written since the last checkpoint, is
/// deleted (taken for a stale leftover) after a crash.
fn holds_no_tables(db: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 108];
    let read = std::fs::File::open(db).and_then(|mut f| f.read_exact(&mut head));
    read.is_ok()
        && head.starts_with(b"SQLite format 3\0")
        && head[100] == 0x0D
        && u16::from_be_bytes([head[103], head[104]]) == 0
}

/// Whether the `-wal` file beside an emptied `meshtel.db` holds the database's first
/// page, its schema, and so the database itself. The `-wal` of a database that was
/// checkpointed does not: with the main file emptied, SQLite reads it as a new, empty
/// database (and overwrites that `-wal`), whatever frames the `-wal` holds.
fn wal_holds_the_schema(wal: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(wal) else {
        return false;
    };
    let Ok(len) = file.metadata().map(|m| m.len()) else {
        return false;
    };
    // A 32-byte header (the page size at bytes 8..12, 1 standing for 65,536), then
    // frames of a 24-byte header (the page number first) and a page.
    let mut header = [0u8; 32];
    if file.read_exact(&mut header).is_err() {
        return false;
    }
    let page_size = match u32::from_be_bytes([header[8], header[9], header[10], header[11]]) {
        1 => 65_536,
        size => u64::from(size),
    };
    if page_size < 512 {
        return false;
    }
    let mut offset = 32u64;
    let mut page_number = [0u8; 4];
    while offset + 24 + page_size <= len {
        if file.seek(SeekFrom::Start(offset)).is_err() || file.read_exact(&mut page_number).is_err()
        {
            return false;
        }
        if u32::from_be_bytes(page_number) == 1 {
            return true;
        }
        offset += 24 + page_size;
    }
    false
}

fn has_content(path: &Path) -> bool {
    std::fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// Block files (`<16 hex digits>.parquet`) at the top of `blocks_dir`: those an index
/// lists; `orphaned/` and `corrupt/` are not counted.
fn count_block_files(blocks_dir: &Path) -> Result<usize> {
    let failed = |e| Error::at("blocks directory", blocks_dir)(e);
    let mut count = 0;
    for entry in std::fs::read_dir(blocks_dir).map_err(failed)? {
        let entry = entry.map_err(failed)?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let is_block = name.len() == 16 + ".parquet".len()
            && name.ends_with(".parquet")
            && name[..16].bytes().all(|b| b.is_ascii_hexdigit());
        if is_block && entry.file_type().is_ok_and(|t| t.is_file()) {
            count += 1;
        }
    }
    Ok(count)
}

/// SQLite's result code of `error` (extended codes as SQLite gives them), also when it
/// came while running the migrations.
fn sqlite_code(error: &Error) -> Option<i64> {
    let sql = match error {
        Error::Database { source, .. } => &**source,
        other => other,
    };
    let database = match sql {
        Error::Sql(sqlx::Error::Database(e)) => e,
        Error::Migrate(
            sqlx::migrate::MigrateError::Execute(sqlx::Error::Database(e))
            | sqlx::migrate::MigrateError::ExecuteMigration(sqlx::Error::Database(e), _),
        ) => e,
        _ => return None,
    };
    database.code()?.parse().ok()
}

/// Whether SQLite found the index damaged: not a database (code 26) or a malformed
/// one (code 11, a truncated or overwritten file).
fn is_damaged(error: &Error) -> bool {
    matches!(sqlite_code(error), Some(11 | 26))
}

/// Whether SQLite could not write for want of space: `SQLITE_FULL` (13), or an I/O
/// error (10 and its extended codes, such as sizing the shared-memory file) on a file
/// system with under a MiB free.
fn is_out_of_space(error: &Error, path: &Path) -> Option<u64> {
    let code = sqlite_code(error)?;
    let free = usage(path.parent().unwrap_or(path)).ok()?.free;
    (code == 13 || (code & 0xff == 10 && free < 1 << 20)).then_some(free)
}

/// `error`, with what to do when it says the index at `path` is damaged, or that the
/// disk holding it is full.
fn explain_damage(path: PathBuf, error: Error) -> Error {
    let advice = if is_damaged(&error) {
        let blocks = path.with_file_name("blocks");
        format!(
            "it is damaged; with meshtel stopped, restore meshtel.db from a backup \
             (removing meshtel.db-wal and meshtel.db-shm beside it), or move it and {} away \
             to start with an empty store",
            blocks.display()
        )
    } else if let Some(free) = is_out_of_space(&error, &path) {
        format!(
            "the file system holding it is full ({free} bytes free): SQLite cannot grow its \
             files; free some space there and start again"
        )
    } else {
        return error;
    };
    let source = match error {
        Error::Database { source, .. } => *source,
        other => other,
    };
    Error::DataDir {
        what: "database",
        source: io::Error::other(format!("{source}: {advice}")),
        path,
    }
}

/// What opening the index failed with, with what to do when SQLite does not recognise
/// the file.
pub(crate) fn explain_open_error(error: Error) -> Error {
    match &error {
        Error::Database { path, .. } => explain_damage(path.clone(), error),
        _ => error,
    }
}

/// What reading the index of `data_dir` at start failed with, with what to do when
/// SQLite finds it damaged (a file that opened but whose pages do not read).
pub(crate) fn explain_read_error(data_dir: &Path) -> impl Fn(Error) -> Error + '_ {
    move |error| explain_damage(data_dir.join(DATABASE_FILE), error)
}

/// After the index is opened: a write it cannot make (a read-only file, one owned by
/// another user: SQLite then opens it read-only without a word) would fail every flush.
/// A write transaction that changes nothing and is rolled back finds out.
pub(crate) async fn check_index_writable(catalog: &Catalog, data_dir: &Path) -> Result<()> {
    let pool = catalog.pool();
    let attempt = async {
        let mut tx = pool.begin().await?;
        sqlx::query("UPDATE wal_state SET flushed_through_seq = flushed_through_seq WHERE id = 1")
            .execute(&mut *tx)
            .await?;
        tx.rollback().await
    };
    attempt.await.map_err(|e| {
        let e = Error::from(e);
        let path = data_dir.join(DATABASE_FILE);
        if is_damaged(&e) || is_out_of_space(&e, &path).is_some() {
            return explain_damage(path, e);
        }
        Error::DataDir {
            what: "database",
            path: data_dir.join(DATABASE_FILE),
            source: io::Error::other(format!(
                "cannot be written ({e}): meshtel writes its index there at every flush; \
             check the owner and permissions of the file, of meshtel.db-wal and \
             meshtel.db-shm beside it and of the data directory (meshtel must be able to \
             write them all), then start again"
            )),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reserve(min_free: u64, free: Arc<AtomicU64>) -> DiskReserve {
        DiskReserve::with_probe(
            Path::new("/data"),
            ByteSize::b(min_free),
            Box::new(move |_| match free.load(Ordering::Relaxed) {
                u64::MAX => Err(io::Error::other("gone")),
                free => Ok(Usage {
                    free,
                    total: 1 << 40,
                }),
            }),
        )
    }

    #[test]
    fn writes_are_refused_below_the_reserve_and_accepted_above_it_again() {
        let stats = Stats::default();
        let free = Arc::new(AtomicU64::new(100 << 20));
        let reserve = reserve(64 << 20, free.clone());
        reserve.check_at_open(&stats).unwrap();
        assert!(reserve.admit(&stats, 0).is_ok());
        assert_eq!(stats.disk_free_bytes.load(Ordering::Relaxed), 100 << 20);

        free.store(12 << 20, Ordering::Relaxed);
        // Not read before the next check.
        assert!(reserve.admit(&stats, 0).is_ok());
        reserve.refresh(&stats);
        assert!(matches!(
            reserve.admit(&stats, 0),
            Err(ModelError::DiskFull { retry_after, .. }) if retry_after == DISK_FULL_RETRY_AFTER
        ));
        assert!(reserve.admit(&stats, 0).is_err());
        assert_eq!(stats.rejected_disk_full.load(Ordering::Relaxed), 2);
        assert_eq!(stats.disk_free_bytes.load(Ordering::Relaxed), 12 << 20);
        assert_eq!(
            reserve.refusal(12 << 20),
            "data directory /data has 12.0 MiB free, below store.min_free_disk (64.0 MiB): \
             new spans are refused until space is freed; the head is still flushed"
        );

        free.store(65 << 20, Ordering::Relaxed);
        reserve.refresh(&stats);
        assert!(reserve.admit(&stats, 0).is_ok());
        // Unreadable: not refused.
        free.store(12 << 20, Ordering::Relaxed);
        reserve.refresh(&stats);
        free.store(u64::MAX, Ordering::Relaxed);
        reserve.refresh(&stats);
        assert!(reserve.admit(&stats, 0).is_ok());
    }

    /// A burst between two checks stops at the reserve: what the WAL took since the
    /// latest check, and what waits for it, count as taken.
    #[test]
    fn between_checks_the_wal_written_and_queued_counts_as_taken() {
        let stats = Stats::default();
        let free = Arc::new(AtomicU64::new(100 << 20));
        let reserve = reserve(64 << 20, free.clone());
        reserve.check_at_open(&stats).unwrap();
        stats.record_written(1000, 30 << 20);
        assert!(reserve.admit(&stats, 0).is_ok());
        let Err(ModelError::DiskFull { message, .. }) = reserve.admit(&stats, 7 << 20) else {
            panic!("queued bytes count");
        };
        // The disk is not below: the message says what its figure is.
        assert!(
            message.contains("about 70.0 MiB free (the latest check less the WAL written since)")
                && message
                    .contains("the 7.0 MiB of requests waiting for the WAL, this one's included, would leave 63.0 MiB"),
            "{message}"
        );
        assert_eq!(stats.rejected_disk_full.load(Ordering::Relaxed), 1);
        // A request that would take the disk below is refused alone: it is not below.
        assert!(reserve.admit(&stats, 0).is_ok());
        free.store(70 << 20, Ordering::Relaxed);
        reserve.refresh(&stats);
        assert!(reserve.admit(&stats, 0).is_ok());
        stats.record_written(1000, 7 << 20);
        assert!(reserve.admit(&stats, 0).is_err());
        // The disk itself below: refused from now on, until a check finds room.
        assert!(reserve.admit(&stats, 0).is_err());
        assert!(!reserve.has_room_for(&stats, 0));
        free.store(80 << 20, Ordering::Relaxed);
        reserve.refresh(&stats);
        assert!(reserve.admit(&stats, 0).is_ok());
        // A merge of 10 MiB fits above the reserve, one of 20 MiB does not.
        assert!(reserve.has_room_for(&stats, 10 << 20));
        assert!(!reserve.has_room_for(&stats, 20 << 20));
    }

    #[test]
    fn a_zero_reserve_never_refuses_and_still_reads_the_gauge() {
        let stats = Stats::default();
        let free = Arc::new(AtomicU64::new(5));
        let reserve = reserve(0, free);
        reserve.check_at_open(&stats).unwrap();
        reserve.refresh(&stats);
        assert!(reserve.admit(&stats, 0).is_ok());
        assert_eq!(stats.disk_free_bytes.load(Ordering::Relaxed), 5);
    }

    #[test]
    fn a_reserve_as_large_as_the_disk_is_refused_by_name_and_one_above_free_space_starts() {
        let stats = Stats::default();
        let free = Arc::new(AtomicU64::new(1 << 30));
        let message = reserve(1 << 40, free.clone())
            .check_at_open(&stats)
            .unwrap_err()
            .to_string();
        assert!(
            message.contains("[store] min_free_disk (1.0 TiB)"),
            "{message}"
        );
        assert!(message.contains("/data"), "{message}");
        // Below the reserve at start: it starts, refusing writes.
        let reserve = reserve(2 << 30, free);
        reserve.check_at_open(&stats).unwrap();
        assert!(reserve.admit(&stats, 0).is_err());
    }
}
