//! Write-ahead log: numbered segment files of checksummed records.
//!
//! ```text
//!  wal/00000000000000000007.wal:  [len u32 LE][crc32 u32 LE][payload] [len][crc][payload] ...
//! ```
//!
//! A record's payload is one ingest request's rows as an Arrow IPC stream (never
//! empty: a zero length marks the end of the log, see [`replay`]). The writer appends
//! a group of records, hands them to the OS (small records gathered into one `write`,
//! large ones in a `writev` each), and (with `sync = "always"`) calls `fdatasync`
//! before anyone is acknowledged; with `sync = "interval"` a background thread calls it
//! every interval instead. Either way a process crash after the acknowledgement loses
//! nothing: the bytes are in the kernel.
//!
//! A write that fails (a full disk) may leave part of a record in the segment. Before
//! anything else is appended, the segment is cut back to the end of the last committed
//! group; when even that fails, the writer goes on in a new segment, and while it can
//! do neither it refuses every write. So an acknowledged record never follows bytes
//! that replay cannot read.
//!
//! When the head is flushed to a block, the writer rotates to a new segment; segments
//! whose every record is in a block are deleted. Replay ([`replay`]) reads the segments
//! that are left, oldest first, and stops a segment at the first torn or corrupt
//! record.

use std::fs::{self, File};
use std::io::{self, IoSlice, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{debug, error, info, warn};

use crate::{Error, Result};

mod dir;
mod replay;

pub use dir::WalDir;

pub use replay::{CORRUPT_DIR, MAX_CORRUPT_COPIES, RECORD_PREFIX};

const HEADER_BYTES: usize = 8;
/// Small records are gathered in a buffer of this size and written once per group.
const BUFFER_BYTES: usize = 64 << 10;
/// Largest record accepted on replay; anything larger is corruption.
const MAX_RECORD_BYTES: u32 = 1 << 30;

/// One segment's surviving records, in order.
pub struct ReplayedSegment {
    /// Segment sequence number.
    pub seq: u64,
    /// Record payloads.
    pub records: Vec<Vec<u8>>,
    /// Whether it was damaged before its end (records lost; see [`replay`]).
    pub damaged: bool,
}

/// The open log: appends go to the newest segment.
pub struct Wal {
    dir: WalDir,
    seq: u64,
    file: File,
    /// Records of the group being appended that are not in the file yet.
    buffer: Vec<u8>,
    /// Length of the segment at the end of the last committed group: every byte before
    /// it belongs to a whole record. A failed write is cut back to it.
    committed_len: u64,
    /// Length of the segment as written so far: `committed_len` plus what the group
    /// being appended has handed to the file.
    written_len: u64,
    /// A failed write could not be cut off: the bytes after `committed_len` may be part
    /// of a record. Nothing is appended until [`Wal::recover`] has dealt with them.
    damaged: bool,
    /// A second handle on the current segment for the interval sync thread.
    sync_handle: Arc<parking_lot::Mutex<Arc<File>>>,
    dirty: Arc<AtomicBool>,
    bytes_written: u64,
    #[cfg(test)]
    faults: Faults,
}

/// Failures tests inject into the segment file.
#[cfg(test)]
#[derive(Default)]
pub(crate) struct Faults {
    /// Writes past this segment length fail with "no space left", after writing what
    /// fits (as a full disk does).
    pub write_limit: Option<u64>,
    /// Cutting a segment back fails.
    pub fail_set_len: bool,
    /// Creating a segment fails.
    pub fail_new_segment: bool,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(dir::segment_name(seq))
}

/// Sequence numbers of the segments in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    WalDir::by_path(dir).list_segments()
}

impl Wal {
    /// Opens the log in `dir`, returning the surviving records of every segment with a
    /// sequence number above `flushed_through` (older ones are deleted: their rows are
    /// in blocks). New appends go to a fresh segment.
    pub fn open(dir: &Path, flushed_through: u64) -> Result<(Wal, Vec<ReplayedSegment>)> {
        crate::lock::create_dir("WAL directory", dir)?;
        let wal_dir = WalDir::open(dir)?;
        let mut replayed = Vec::new();
        let mut last_seq = flushed_through;
        for seq in wal_dir.list_segments()? {
            let path = segment_path(dir, seq);
            last_seq = last_seq.max(seq);
            // Flushed, or empty (a start that was stopped before any span came): each
            // start begins a segment, and empty ones would pile up until a flush.
            let empty = fs::metadata(&path).is_ok_and(|m| m.len() == 0);
            if seq <= flushed_through || empty {
                wal_dir.remove_segment(seq)?;
                continue;
            }
            let (records, damaged) = replay::replay_segment(&path)?;
            info!(
                segment = seq,
                records = records.len(),
                "replaying wal segment"
            );
            replayed.push(ReplayedSegment {
                seq,
                records,
                damaged,
            });
        }
        let seq = last_seq + 1;
        let file = wal_dir.create_segment(seq)?;
        let sync_handle = Arc::new(parking_lot::Mutex::new(Arc::new(
            file.try_clone()
                .map_err(Error::at("WAL segment", &segment_path(dir, seq)))?,
        )));
        Ok((
            Wal {
                dir: wal_dir,
                seq,
                file,
                buffer: Vec::with_capacity(BUFFER_BYTES),
                committed_len: 0,
                written_len: 0,
                damaged: false,
                sync_handle,
                dirty: Arc::new(AtomicBool::new(false)),
                bytes_written: 0,
                #[cfg(test)]
                faults: Faults::default(),
            },
            replayed,
        ))
    }

    /// Moves on to segment `seq`, empty.
    fn start_segment(&mut self, seq: u64) -> Result<()> {
        #[cfg(test)]
        if self.faults.fail_new_segment {
            return Err(Error::at("WAL segment", &segment_path(self.dir.path(), seq))(
                io::Error::new(io::ErrorKind::StorageFull, "injected: no space left"),
            ));
        }
        let file = self.dir.create_segment(seq)?;
        let handle = file
            .try_clone()
            .map_err(Error::at("WAL segment", &segment_path(self.dir.path(), seq)))?;
        *self.sync_handle.lock() = Arc::new(handle);
        self.file = file;
        self.seq = seq;
        self.committed_len = 0;
        self.written_len = 0;
        self.damaged = false;
        self.buffer.clear();
        Ok(())
    }

    /// Sequence number of the segment being written.
    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    /// Total bytes appended since open.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Adds one record to the group; call [`Wal::commit`] to hand the group to the OS.
    /// On an error the whole group is dropped (the segment cut back to the last
    /// commit): answer every writer of the group with the error.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        if payload.is_empty() {
            // Replay reads a zero length as the end of the log.
            return Err(Error::Corrupt("an empty wal record".into()));
        }
        let size = u32::try_from(payload.len())
            .map_err(|_| Error::Corrupt("wal record over 4 GiB".into()))?;
        self.recover()?;
        let mut header = [0u8; HEADER_BYTES];
        header[..4].copy_from_slice(&size.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        let record_bytes = HEADER_BYTES + payload.len();
        let written = if record_bytes >= BUFFER_BYTES {
            // Large records go to the file in one `writev`, not through the buffer: a
            // request's record is often hundreds of KiB and copying it once more costs
            // more than the system call.
            self.write_buffer()
                .and_then(|()| self.write_to_file(&[&header, payload]))
        } else {
            let room = if self.buffer.len() + record_bytes > BUFFER_BYTES {
                self.write_buffer()
            } else {
                Ok(())
            };
            room.map(|()| {
                self.buffer.extend_from_slice(&header);
                self.buffer.extend_from_slice(payload);
            })
        };
        if let Err(e) = written {
            self.abandon_group();
            return Err(self.segment_error(e));
        }
        self.bytes_written += record_bytes as u64;
        Ok(())
    }

    /// Writes the group to the OS; with `fsync`, also to stable storage, and then
    /// returns how long that sync took. On an error the group is dropped, as for
    /// [`Wal::append`].
    pub fn commit(&mut self, fsync: bool) -> Result<Option<Duration>> {
        self.recover()?;
        if let Err(e) = self.write_buffer() {
            self.abandon_group();
            return Err(self.segment_error(e));
        }
        let synced = if fsync {
            let started = Instant::now();
            if let Err(e) = self.file.sync_data() {
                // What the kernel did with the group's pages is unknown: cut it off.
                self.abandon_group();
                return Err(self.segment_error(e));
            }
            Some(started.elapsed())
        } else {
            self.dirty.store(true, Ordering::Release);
            None
        };
        self.committed_len = self.written_len;
        Ok(synced)
    }

    /// Syncs and closes the current segment and starts the next; returns the closed
    /// segment's number.
    pub fn rotate(&mut self) -> Result<u64> {
        self.recover()?;
        if let Err(e) = self.write_buffer() {
            self.abandon_group();
            return Err(self.segment_error(e));
        }
        self.file.sync_data().map_err(|e| self.segment_error(e))?;
        self.committed_len = self.written_len;
        let closed = self.seq;
        self.start_segment(self.seq + 1)?;
        Ok(closed)
    }

    /// Hands the buffered records to the file.
    fn write_buffer(&mut self) -> io::Result<()> {
        if self.buffer.is_empty() {
            return Ok(());
        }
        let buffer = std::mem::take(&mut self.buffer);
        let result = self.write_to_file(&[&buffer]);
        self.buffer = buffer;
        self.buffer.clear();
        result
    }

    /// Writes `parts` at the end of the segment, counting what lands in
    /// `written_len` (also when a write stops part way).
    fn write_to_file(&mut self, parts: &[&[u8]]) -> io::Result<()> {
        let mut slices: Vec<IoSlice<'_>> = parts.iter().map(|p| IoSlice::new(p)).collect();
        let mut slices = &mut slices[..];
        while !slices.is_empty() {
            match self.write_some(slices) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.written_len += n as u64;
                    IoSlice::advance_slices(&mut slices, n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    #[cfg(not(test))]
    fn write_some(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        self.file.write_vectored(slices)
    }

    #[cfg(test)]
    fn write_some(&mut self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        let Some(limit) = self.faults.write_limit else {
            return self.file.write_vectored(slices);
        };
        let room = usize::try_from(limit.saturating_sub(self.written_len)).unwrap_or(usize::MAX);
        if room == 0 {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                "injected: no space left",
            ));
        }
        let first: &[u8] = slices
            .iter()
            .find(|s| !s.is_empty())
            .map_or(&[], |s| &s[..]);
        self.file.write(&first[..first.len().min(room)])
    }

    /// Drops the group being appended after a failed write: the buffer, and whatever
    /// reached the file since the last commit.
    fn abandon_group(&mut self) {
        self.buffer.clear();
        match self.cut_to_committed() {
            Ok(()) => {
                // The failed append itself is logged by the writer, at most once per
                // interval (`AppendFailures`): this line would repeat at the clients'
                // rate on a full disk.
                if self.written_len != self.committed_len {
                    debug!(
                        segment = %segment_path(self.dir.path(), self.seq).display(),
                        cut_bytes = self.written_len - self.committed_len,
                        "cut a failed write off the wal segment"
                    );
                }
                self.written_len = self.committed_len;
            }
            Err(e) => {
                error!(
                    segment = %segment_path(self.dir.path(), self.seq).display(),
                    error = %e,
                    "could not cut a failed write off the wal segment; the next write \
                     goes to a new segment"
                );
                self.damaged = true;
            }
        }
    }

    /// Cuts the segment back to the end of the last committed group.
    fn cut_to_committed(&mut self) -> io::Result<()> {
        #[cfg(test)]
        if self.faults.fail_set_len {
            return Err(io::Error::other("injected: cannot truncate"));
        }
        // The file is opened for appending: the next write lands at the new end.
        self.file.set_len(self.committed_len)
    }

    /// Makes the log appendable after a failed write that could not be cut off: cuts
    /// it now, or else leaves those bytes at the end of this segment (replay stops
    /// there, after every acknowledged record) and goes on in a new segment. While it
    /// can do neither, every write is refused.
    fn recover(&mut self) -> Result<()> {
        if !self.damaged {
            return Ok(());
        }
        if self.cut_to_committed().is_ok() {
            self.written_len = self.committed_len;
            self.damaged = false;
            info!(segment = self.seq, "cut a failed write off the wal segment");
            return Ok(());
        }
        let old = self.seq;
        self.start_segment(old + 1)?;
        warn!(
            segment = old,
            next = self.seq,
            "wal segment ends in a failed write that could not be cut off; appending to \
             the next segment"
        );
        Ok(())
    }

    fn segment_error(&self, e: io::Error) -> Error {
        Error::at("WAL segment", &segment_path(self.dir.path(), self.seq))(e)
    }

    /// Injected failures, for tests.
    #[cfg(test)]
    pub(crate) fn faults(&mut self) -> &mut Faults {
        &mut self.faults
    }

    /// Deletes every segment numbered `seq` or lower.
    pub fn remove_through(dir: &WalDir, seq: u64) -> Result<()> {
        for s in dir.list_segments()? {
            if s <= seq {
                dir.remove_segment(s)?;
            }
        }
        Ok(())
    }

    /// The directory it writes in.
    pub fn dir(&self) -> &WalDir {
        &self.dir
    }

    /// A handle the interval sync thread uses to `fdatasync` the current segment.
    pub fn syncer(&self) -> WalSyncer {
        WalSyncer {
            handle: self.sync_handle.clone(),
            dirty: self.dirty.clone(),
        }
    }
}

/// Syncs the WAL's current segment from another thread.
#[derive(Clone)]
pub struct WalSyncer {
    handle: Arc<parking_lot::Mutex<Arc<File>>>,
    dirty: Arc<AtomicBool>,
}

impl WalSyncer {
    /// `fdatasync`s the current segment if anything was written since the last call;
    /// returns whether it synced.
    pub fn sync_if_dirty(&self) -> Result<bool> {
        if !self.dirty.swap(false, Ordering::AcqRel) {
            return Ok(false);
        }
        let file = self.handle.lock().clone();
        file.sync_data()?;
        Ok(true)
    }
}

/// Used by tests and tools: the records of one segment without repairing it.
pub fn read_segment_for_inspection(path: &Path) -> Result<Vec<Vec<u8>>> {
    let data = fs::read(path).map_err(Error::at("WAL segment", path))?;
    Ok(replay::scan(&data).records)
}

#[cfg(test)]
mod tests;
