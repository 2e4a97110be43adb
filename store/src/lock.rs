//! One writer per data directory.
//!
//! Two processes that write (`serve`, `collector`) on one data directory would each
//! number blocks from the same index and overwrite each other's files. The writer
//! takes an exclusive lock on `<data_dir>/LOCK` and, where the file system allows it,
//! on the data directory itself ([`File::try_lock`]: `flock` on Linux) for as long as
//! it runs; a second writer is refused with [`Error::Locked`]. The lock goes with the
//! process: a `kill -9` leaves the file behind but not the lock. The
//! read-only `query` role takes no lock and runs beside a writer.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::path::{Path, PathBuf};

use tracing::warn;

use crate::{Error, Result};

/// The lock file's name in the data directory.
pub const LOCK_FILE: &str = "LOCK";

/// The held locks; released when dropped.
#[derive(Debug)]
pub(crate) struct DataDirLock {
    _dir: Option<File>,
    _file: Option<File>,
}

impl DataDirLock {
    /// Locks `data_dir` for this process, or says who holds it. The holder's process id
    /// is written into the file for operators (and for the message a second process
    /// prints).
    ///
    /// The directory itself is locked as well as `LOCK`: a `LOCK` deleted by hand (taken
    /// for a stale one left by a crash) would otherwise let a second writer in beside
    /// the first, and each would overwrite the other's blocks. `LOCK` comes first and
    /// decides; the directory's lock is a second guard, taken where the file system
    /// allows it (NFS, for one, locks no directory) and otherwise left out without a
    /// word, as before it existed.
    pub(crate) fn acquire(data_dir: &Path) -> Result<DataDirLock> {
        let path = data_dir.join(LOCK_FILE);
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(|e| lock_file_error(&path, e))?;
        let held = match try_lock_file(&mut file) {
            Ok(()) => true,
            Err(TryLockError::WouldBlock) => {
                return Err(Error::Locked {
                    path: data_dir.to_path_buf(),
                    holder: holder_pid(&mut file),
                });
            }
            Err(TryLockError::Error(e)) if e.kind() == std::io::ErrorKind::Unsupported => {
                // Some network file systems have no `flock`: refusing to start there
                // would take meshtel away from data directories it ran on before.
                warn!(
                    lock = %path.display(),
                    error = %e,
                    "this file system cannot lock the data directory; make sure only one \
                     meshtel serve or collector uses it"
                );
                false
            }
            Err(TryLockError::Error(e)) => return Err(Error::at("lock file", &path)(e)),
        };
        let dir = File::open(data_dir).ok();
        if let Some(dir) = &dir
            && let Err(TryLockError::WouldBlock) = dir.try_lock()
        {
            // Its `LOCK` was deleted: the holder's pid went with it.
            return Err(Error::Locked {
                path: data_dir.to_path_buf(),
                holder: None,
            });
        }
        if held && let Err(e) = write_pid(&mut file) {
            warn!(lock = %path.display(), error = %e, "could not write the process id into the lock file");
        }
        Ok(DataDirLock {
            _dir: dir,
            _file: held.then_some(file),
        })
    }
}

/// The lock file at `path` could not be opened: a permission denied says what to check,
/// as the other files of the data directory do (a directory left owned by another user).
fn lock_file_error(path: &Path, e: std::io::Error) -> Error {
    let advice = if e.kind() == std::io::ErrorKind::PermissionDenied {
        format!(
            "{e}: check the owner and permissions of the data directory and everything in \
             it (meshtel must own them, e.g. `chown -R` them to the user it runs as), then \
             start again"
        )
    } else {
        e.to_string()
    };
    Error::at("lock file", path)(std::io::Error::new(e.kind(), advice))
}

/// How long a lock this very process released may stay held by a child it is
/// starting: the child shares the lock file's description from `fork` until `exec`
/// closes it (close-on-exec). Only then is `WouldBlock` retried, every 10 ms.
const OWN_LOCK_RELEASE: std::time::Duration = std::time::Duration::from_millis(500);

/// `file.try_lock()`, retried for up to [`OWN_LOCK_RELEASE`] while the holder the file
/// names is this process: a lock it dropped a moment ago, still shared with a child
/// between `fork` and `exec`, is not another writer.
fn try_lock_file(file: &mut File) -> std::result::Result<(), TryLockError> {
    let deadline = std::time::Instant::now() + OWN_LOCK_RELEASE;
    loop {
        match file.try_lock() {
            Err(TryLockError::WouldBlock)
                if holder_pid(file) == Some(std::process::id())
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            other => return other,
        }
    }
}

/// Fails with [`Error::Locked`] while a running meshtel holds `data_dir`: for a caller
/// about to remove the directory (the demo wipes its own at start), which would pull
/// the data from under the running process.
pub fn ensure_not_in_use(data_dir: &Path) -> Result<()> {
    DataDirLock::acquire(data_dir).map(drop)
}

fn write_pid(file: &mut File) -> std::io::Result<()> {
    file.set_len(0)?;
    file.rewind()?;
    writeln!(file, "{}", std::process::id())
}

fn holder_pid(file: &mut File) -> Option<u32> {
    file.rewind().ok()?;
    let mut text = String::new();
    file.read_to_string(&mut text).ok()?;
    text.trim().parse().ok()
}

/// Creates `data_dir` if needed and returns it as an absolute path: searches hand block
/// paths to DataFusion's object store, which reads a relative path (the default
/// `./meshtel-data`) from the root.
pub(crate) fn absolute_data_dir(data_dir: &Path) -> Result<PathBuf> {
    create_dir_with("data directory", data_dir, create_private_dir)?;
    std::fs::canonicalize(data_dir).map_err(Error::at("data directory", data_dir))
}

/// Creates `path` and any missing parents readable by meshtel's user only (0700):
/// traces, the audit log and the admin token's digest are nobody else's to read. A
/// directory that exists keeps its permissions.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Creates the directory `path` (and its parents) if needed, as the umask says (the
/// data directory around it is private when meshtel made it, and keeps the mode it
/// was given otherwise); an error names it, and says so when a file is in its way.
pub(crate) fn create_dir(what: &'static str, path: &Path) -> Result<()> {
    create_dir_with(what, path, |p| std::fs::create_dir_all(p))
}

fn create_dir_with(
    what: &'static str,
    path: &Path,
    create: impl FnOnce(&Path) -> std::io::Result<()>,
) -> Result<()> {
    match create(path) {
        Ok(()) => Ok(()),
        Err(e) if path.exists() && !path.is_dir() => {
            Err(Error::at(what, path)(std::io::Error::new(
                std::io::ErrorKind::NotADirectory,
                format!("a file is in the way of the directory ({e})"),
            )))
        }
        Err(e) => Err(Error::at(what, path)(e)),
    }
}

/// The file [`check_dir_writable`] writes and removes.
const WRITE_CHECK: &str = ".meshtel-write-check";

/// Proves the directory `path` writable by creating and removing a file in it, so that
/// a directory meshtel cannot write (its owner or permissions) is refused at start, by
/// name, instead of failing at every flush.
pub(crate) fn check_dir_writable(what: &'static str, path: &Path, writes: &str) -> Result<()> {
    let probe = path.join(WRITE_CHECK);
    let written = std::fs::File::create(&probe).and_then(|_| std::fs::remove_file(&probe));
    written.map_err(|e| {
        Error::at(what, path)(std::io::Error::new(
            e.kind(),
            format!(
                "cannot be written ({e}): meshtel writes {writes} there; check the owner and \
                 permissions of the directory (meshtel must be able to create files in it), \
                 then start again"
            ),
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A lock this process dropped, still shared for a moment with a child it is
    /// starting (between `fork` and `exec`; here a duplicate of the file), is taken
    /// once the child lets go, not refused as another writer's; another holder is
    /// still refused.
    #[test]
    fn a_lock_released_by_this_process_is_waited_for_briefly() {
        let dir = tempfile::tempdir().unwrap();
        let lock = DataDirLock::acquire(dir.path()).unwrap();
        let shared = lock._file.as_ref().unwrap().try_clone().unwrap();
        drop(lock);
        let child = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(100));
            drop(shared);
        });
        let again = DataDirLock::acquire(dir.path());
        child.join().unwrap();
        assert!(again.is_ok(), "{:?}", again.err());
        // Held by this process for good (a second store): refused after the wait.
        let started = std::time::Instant::now();
        let refused = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(refused, Error::Locked { .. }), "{refused}");
        assert!(
            started.elapsed() >= OWN_LOCK_RELEASE,
            "{:?}",
            started.elapsed()
        );
    }

    #[test]
    fn a_directory_that_cannot_be_written_is_named() {
        let dir = tempfile::tempdir().unwrap();
        check_dir_writable("blocks directory", dir.path(), "blocks").unwrap();
        assert!(
            !dir.path().join(WRITE_CHECK).exists(),
            "the probe is removed"
        );
        // A probe that cannot be created (here a directory in its place; in production
        // a directory owned by another user).
        std::fs::create_dir(dir.path().join(WRITE_CHECK)).unwrap();
        let message = check_dir_writable("blocks directory", dir.path(), "a block at every flush")
            .unwrap_err()
            .to_string();
        assert!(message.contains("blocks directory"), "{message}");
        assert!(message.contains("cannot be written"), "{message}");
        assert!(message.contains("a block at every flush"), "{message}");
    }

    #[test]
    fn a_second_lock_on_one_directory_is_refused_until_the_first_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(
            matches!(err, Error::Locked { holder: Some(pid), .. } if pid == std::process::id()),
            "{message}"
        );
        assert!(
            message.contains(&dir.path().display().to_string()),
            "{message}"
        );
        assert!(message.contains("another meshtel process"), "{message}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_lock_file_deleted_by_hand_lets_no_second_writer_in() {
        let dir = tempfile::tempdir().unwrap();
        let first = DataDirLock::acquire(dir.path()).unwrap();
        std::fs::remove_file(dir.path().join(LOCK_FILE)).unwrap();
        let err = DataDirLock::acquire(dir.path()).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        drop(first);
        DataDirLock::acquire(dir.path()).unwrap();
    }

    #[test]
    fn a_data_directory_meshtel_creates_is_its_users_only_and_a_given_one_kept() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        let data = dir.path().join("new/meshtel-data");
        absolute_data_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        assert_eq!(mode(&dir.path().join("new")), 0o700);
        // A directory given keeps its mode, and what meshtel makes inside follows the
        // umask, so that a group-shared setup stays shared.
        let shared = dir.path().join("shared");
        std::fs::create_dir(&shared).unwrap();
        std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o770)).unwrap();
        absolute_data_dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o770);
        let blocks = shared.join("blocks");
        create_dir("blocks directory", &blocks).unwrap();
        let umask_allows = {
            let probe = dir.path().join("probe");
            std::fs::create_dir(&probe).unwrap();
            mode(&probe)
        };
        assert_eq!(mode(&blocks), umask_allows);
    }

    /// A lock file meshtel may not open (a data directory left owned by another user)
    /// says what to check, as the other files of the data directory do.
    #[test]
    fn a_lock_file_that_cannot_be_opened_says_what_to_check() {
        let path = Path::new("/var/lib/meshtel/LOCK");
        let denied = std::io::Error::from(std::io::ErrorKind::PermissionDenied);
        let message = lock_file_error(path, denied).to_string();
        assert!(
            message.starts_with("lock file /var/lib/meshtel/LOCK: "),
            "{message}"
        );
        assert!(message.contains("chown -R"), "{message}");
        let other = std::io::Error::from(std::io::ErrorKind::NotFound);
        assert!(!lock_file_error(path, other).to_string().contains("chown"));
    }

    #[test]
    fn a_file_in_the_way_of_a_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let blocks = dir.path().join("blocks");
        std::fs::write(&blocks, b"x").unwrap();
        let message = create_dir("blocks directory", &blocks)
            .unwrap_err()
            .to_string();
        assert!(message.contains(&blocks.display().to_string()), "{message}");
        assert!(
            message.contains("not a directory") || message.contains("in the way"),
            "{message}"
        );
    }
}
