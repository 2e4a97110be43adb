//! Notices when the data directory, its database (`meshtel.db`), its `blocks`
//! directory or (in a writer) its `wal` directory is removed or replaced while a
//! process has them open.
//!
//! An open SQLite file that is deleted stays usable through its descriptor: a
//! collector would go on committing blocks into an index nobody can open again (the
//! next start finds the blocks without it), and a query process would go on serving
//! the data of a directory an operator wiped or moved away, with nothing in its logs.
//! Every second the watch compares the two paths with the files opened at start
//! (device and inode); on a difference it logs an ERROR and says so to
//! [`TraceStore::data_dir_lost`], which `meshtel` waits on to stop. When only the
//! database was deleted, a collector stops as usual and then writes the database it
//! still holds back to its path ([`restore_database`]): nothing it indexed is lost.
//! In every other case (the directory moved, wiped or restored from a copy, `blocks/`
//! gone) what is at those paths now is not what it wrote: it must write nothing more
//! there (a flush would delete the WAL segments of a restored copy that share its
//! names), so it stops at once, as a crash would, and compaction stops at the change.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tracing::{error, info};

use crate::{Inner, TraceStore};

/// How often the paths are compared with the files opened.
const CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// Device and inode: what a path names.
type Identity = (u64, u64);

fn identity(path: &Path) -> std::io::Result<Identity> {
    let metadata = std::fs::metadata(path)?;
    Ok((metadata.dev(), metadata.ino()))
}

/// What changed under the process, for [`TraceStore::data_dir_lost`].
#[derive(Clone, Debug)]
pub struct DataDirLost {
    /// What happened, naming the path.
    pub what: String,
    /// Whether a writer must write nothing more to the data directory and stop at once:
    /// anything but the database alone removed (see the module's documentation).
    pub write_nothing: bool,
}

/// The files a store opened, and what their paths named then.
pub(crate) struct Watched {
    files: Vec<(&'static str, PathBuf, Identity)>,
}

impl Watched {
    /// What `data_dir`, `database`, `blocks_dir` and (for a writer) `wal_dir` name now.
    pub(crate) fn new(
        data_dir: &Path,
        database: &Path,
        blocks_dir: &Path,
        wal_dir: Option<&Path>,
    ) -> crate::Result<Watched> {
        let mut files = Vec::new();
        let watched = [
            ("data directory", Some(data_dir)),
            ("database", Some(database)),
            ("blocks directory", Some(blocks_dir)),
            // A writer creates its segments in the WAL directory it opened at start:
            // one removed or replaced under it would take none (or the wrong ones).
            ("WAL directory", wal_dir),
        ];
        for (what, path) in watched.into_iter().filter_map(|(w, p)| Some((w, p?))) {
            let id = identity(path).map_err(|source| crate::Error::DataDir {
                what,
                path: path.to_path_buf(),
                source,
            })?;
            files.push((what, path.to_path_buf(), id));
        }
        Ok(Watched { files })
    }

    /// What happened to the first file whose path no longer names it, if one does not.
    /// A path that cannot be read for another reason (permissions) is not taken as
    /// replaced.
    fn changed(&self) -> Option<DataDirLost> {
        self.files
            .iter()
            .find_map(|(what, path, id)| match identity(path) {
                Ok(now) if now != *id => Some(DataDirLost {
                    what: format!(
                        "the {what} {} was replaced by another while meshtel had it open",
                        path.display()
                    ),
                    write_nothing: true,
                }),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Some(DataDirLost {
                    what: format!(
                        "the {what} {} was removed while meshtel had it open",
                        path.display()
                    ),
                    write_nothing: *what != "database",
                }),
                _ => None,
            })
    }
}

/// Compares the watched paths every second until one changed, then logs it and tells
/// [`TraceStore::data_dir_lost`].
pub(crate) async fn run(inner: Arc<Inner>) {
    let mut ticks = tokio::time::interval(CHECK_INTERVAL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let checked = inner.clone();
        let Ok(lost) = tokio::task::spawn_blocking(move || note_change(&checked)).await else {
            return;
        };
        if lost {
            return;
        }
    }
}

/// Compares the paths now; a change is logged and told once. Whether one happened.
fn note_change(inner: &Inner) -> bool {
    if inner.data_dir_lost.borrow().is_some() {
        return true;
    }
    let Some(lost) = inner.watched.changed() else {
        return false;
    };
    inner.data_dir_lost.send_if_modified(|known| {
        if known.is_some() {
            return false;
        }
        error!(
            problem = %lost.what,
            read_only = inner.read_only,
            "the data directory changed under this process"
        );
        if lost.write_nothing {
            inner
                .stopping
                .store(true, std::sync::atomic::Ordering::Relaxed);
            inner.stop_compaction.notify_one();
        }
        *known = Some(lost);
        true
    });
    true
}

/// Whether a writer may write to the data directory's paths: checked right before a
/// flush writes a block and deletes WAL segments, and before compaction writes or
/// deletes block files, so that none of them lands in a directory put in the place of
/// the one opened in the second before the watch's next look (a restored copy's WAL
/// segments share the names of the running process's). False once the change is
/// known, unless only the database was deleted (the writer then goes on until it
/// stops, and writes the database back).
pub(crate) fn writable(inner: &Inner) -> bool {
    note_change(inner);
    inner
        .data_dir_lost
        .borrow()
        .as_ref()
        .is_none_or(|lost| !lost.write_nothing)
}

impl TraceStore {
    /// Waits until the data directory's database or blocks directory was removed or
    /// replaced under this process, and says which. The process cannot go on with
    /// them (see the module's documentation): `meshtel` stops.
    pub async fn data_dir_lost(&self) -> DataDirLost {
        let mut lost = self.inner.data_dir_lost.subscribe();
        loop {
            if let Some(what) = lost.borrow_and_update().clone() {
                return what;
            }
            if lost.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }
}

/// At a writer's shutdown, after its last commit: when its database alone was removed
/// (its path names nothing now), writes the database it still has open back to that
/// path, so that the next start finds every block it indexed.
pub(crate) async fn restore_database(inner: &Inner) {
    let removed = inner
        .data_dir_lost
        .borrow()
        .as_ref()
        .is_some_and(|lost| !lost.write_nothing);
    if !removed {
        return;
    }
    let path = inner.catalog.path().to_path_buf();
    if std::fs::symlink_metadata(&path).is_ok() {
        // Replaced by another file: that one stays.
        return;
    }
    let copied = match path.to_str() {
        Some(to) => sqlx::query("VACUUM INTO ?")
            .bind(to)
            .execute(&inner.catalog.pool())
            .await
            .map(drop)
            .map_err(|e| e.to_string()),
        None => Err("the path is not UTF-8".to_owned()),
    };
    match copied {
        Ok(()) => info!(
            database = %path.display(),
            "wrote the removed database back from the copy this process had open"
        ),
        Err(e) => error!(
            database = %path.display(),
            error = %e,
            "could not write the removed database back: the next start finds the blocks \
             without it (see `meshtel blocks adopt`)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_writers_wal_directory_removed_or_replaced_is_noticed() {
        let dir = tempfile::tempdir().expect("dir");
        let (database, blocks, wal) = (
            dir.path().join("meshtel.db"),
            dir.path().join("blocks"),
            dir.path().join("wal"),
        );
        std::fs::write(&database, b"").expect("database");
        std::fs::create_dir(&blocks).expect("blocks");
        std::fs::create_dir(&wal).expect("wal");
        let writer = Watched::new(dir.path(), &database, &blocks, Some(&wal)).expect("watched");
        let reader = Watched::new(dir.path(), &database, &blocks, None).expect("watched");
        assert!(writer.changed().is_none());
        // Made while the WAL directory still holds its inode, so that it gets another.
        std::fs::create_dir(dir.path().join("other")).expect("other");

        std::fs::remove_dir(&wal).expect("removed");
        let lost = writer.changed().expect("noticed");
        assert!(lost.what.contains("WAL directory") && lost.what.contains("removed"), "{}", lost.what);
        assert!(lost.write_nothing);
        assert!(reader.changed().is_none(), "a reader writes no WAL");

        // A new directory by the same name (another inode) is not the one opened.
        std::fs::rename(dir.path().join("other"), &wal).expect("replaced");
        let lost = writer.changed().expect("noticed");
        assert!(lost.what.contains("was replaced"), "{}", lost.what);
    }
}
