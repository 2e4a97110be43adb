//! The WAL directory as this process opened it.
//!
//! On Linux its segments are created, listed and deleted through a handle of the
//! directory itself (`openat`, `unlinkat`), not through its path. A directory put at
//! that path while the process runs (a data directory restored from a copy) then never
//! receives a segment of this process, nor loses one of its own that shares a name,
//! whatever the timing against the data directory's watch (`data_dir_watch`, which
//! looks every second and before each rotation): a rotation between its look and the
//! restore went into the copy before. Elsewhere, and for a store opened read-only,
//! through the path, guarded by that watch alone.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
#[cfg(target_os = "linux")]
use std::sync::Arc;

use crate::{Error, Result};

/// See the module documentation.
#[derive(Debug, Clone)]
pub struct WalDir {
    path: PathBuf,
    #[cfg(target_os = "linux")]
    handle: Option<Arc<std::os::fd::OwnedFd>>,
}

/// A segment's file name.
pub(super) fn segment_name(seq: u64) -> String {
    format!("{seq:020}.wal")
}

/// The sequence number of a segment's file name.
fn segment_seq(name: &str) -> Option<u64> {
    name.strip_suffix(".wal")?.parse().ok()
}

impl WalDir {
    /// Opens the directory at `path`, which must exist.
    pub fn open(path: &Path) -> Result<Self> {
        #[cfg(target_os = "linux")]
        {
            use rustix::fs::{Mode, OFlags};
            let handle = rustix::fs::open(
                path,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| Error::at("WAL directory", path)(e.into()))?;
            Ok(WalDir {
                path: path.to_path_buf(),
                handle: Some(Arc::new(handle)),
            })
        }
        #[cfg(not(target_os = "linux"))]
        Ok(Self::by_path(path))
    }

    /// The directory at `path`, reached by its path.
    pub fn by_path(path: &Path) -> Self {
        WalDir {
            path: path.to_path_buf(),
            #[cfg(target_os = "linux")]
            handle: None,
        }
    }

    /// Its path, for messages and for reading segments at start.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Sequence numbers of its segments, ascending.
    pub fn list_segments(&self) -> Result<Vec<u64>> {
        let failed = || Error::at("WAL directory", &self.path);
        let mut out = Vec::new();
        #[cfg(target_os = "linux")]
        if let Some(handle) = &self.handle {
            let dir = rustix::fs::Dir::read_from(handle).map_err(|e| failed()(e.into()))?;
            for entry in dir {
                let entry = entry.map_err(|e| failed()(e.into()))?;
                if let Some(seq) = entry.file_name().to_str().ok().and_then(segment_seq) {
                    out.push(seq);
                }
            }
            out.sort_unstable();
            return Ok(out);
        }
        for entry in fs::read_dir(&self.path).map_err(failed())? {
            let name = entry.map_err(failed())?.file_name();
            if let Some(seq) = segment_seq(&name.to_string_lossy()) {
                out.push(seq);
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Creates segment `seq`, which must not exist, for appending, and makes its name
    /// durable.
    pub(super) fn create_segment(&self, seq: u64) -> Result<File> {
        let name = segment_name(seq);
        let path = self.path.join(&name);
        let failed = || Error::at("WAL segment", &path);
        #[cfg(target_os = "linux")]
        if let Some(handle) = &self.handle {
            use rustix::fs::{Mode, OFlags};
            let fd = rustix::fs::openat(
                handle,
                name.as_str(),
                OFlags::CREATE | OFlags::EXCL | OFlags::WRONLY | OFlags::APPEND | OFlags::CLOEXEC,
                // As `OpenOptions` creates files: 0666 less the umask.
                Mode::from_bits_truncate(0o666),
            )
            .map_err(|e| failed()(e.into()))?;
            let _ = rustix::fs::fsync(handle);
            return Ok(File::from(fd));
        }
        let file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(failed())?;
        if let Ok(d) = File::open(&self.path) {
            let _ = d.sync_all();
        }
        Ok(file)
    }

    /// Deletes segment `seq`; one already gone is no error.
    pub(super) fn remove_segment(&self, seq: u64) -> Result<()> {
        let name = segment_name(seq);
        #[cfg(target_os = "linux")]
        let removed: io::Result<()> = match &self.handle {
            Some(handle) => rustix::fs::unlinkat(handle, name.as_str(), rustix::fs::AtFlags::empty())
                .map_err(io::Error::from),
            None => fs::remove_file(self.path.join(&name)),
        };
        #[cfg(not(target_os = "linux"))]
        let removed = fs::remove_file(self.path.join(&name));
        match removed {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::at("WAL segment", &self.path.join(&name))(e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_listed_created_and_removed_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let wal = WalDir::open(dir.path()).unwrap();
        for seq in [3, 1, 20] {
            wal.create_segment(seq).unwrap();
        }
        fs::write(dir.path().join("notes.txt"), b"x").unwrap();
        assert_eq!(wal.list_segments().unwrap(), [1, 3, 20]);
        assert!(wal.create_segment(3).is_err(), "an existing segment is not created again");
        wal.remove_segment(3).unwrap();
        wal.remove_segment(3).unwrap();
        assert_eq!(wal.list_segments().unwrap(), [1, 20]);
        assert_eq!(WalDir::by_path(dir.path()).list_segments().unwrap(), [1, 20]);
    }

    /// A directory restored from a copy at the WAL's path, after the process opened it,
    /// neither gets the process's next segment nor loses its own segments of the same
    /// names.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_directory_put_in_its_place_is_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("wal");
        fs::create_dir(&path).unwrap();
        let wal = WalDir::open(&path).unwrap();
        wal.create_segment(1).unwrap();
        fs::rename(&path, root.path().join("moved")).unwrap();
        fs::create_dir(&path).unwrap();
        fs::write(path.join(segment_name(1)), b"the copy's").unwrap();
        wal.create_segment(2).unwrap();
        wal.remove_segment(1).unwrap();
        let names = |p: &Path| {
            let mut n: Vec<String> = fs::read_dir(p)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            n.sort();
            n
        };
        assert_eq!(names(&path), [segment_name(1)]);
        assert_eq!(fs::read(path.join(segment_name(1))).unwrap(), b"the copy's");
        assert_eq!(names(&root.path().join("moved")), [segment_name(2)]);
    }
}
