//! Write-ahead log: numbered segment files of checksummed records.
//!
//! ```text
//!  wal/00000000000000000007.wal:  [len u32 LE][crc32 u32 LE][payload] [len][crc][payload] ...
//! ```
//!
//! A record's payload is one ingest request's rows as an Arrow IPC stream. The writer
//! appends a group of records, hands them to the OS with one `write`, and (with
//! `sync = "always"`) calls `fdatasync` before anyone is acknowledged; with `sync =
//! "interval"` a background thread calls it every interval instead. Either way a process
//! crash after the acknowledgement loses nothing: the bytes are in the kernel.
//!
//! When the head is flushed to a block, the writer rotates to a new segment; segments
//! whose every record is in a block are deleted. Replay reads the segments that are
//! left, oldest first, and stops a segment at the first torn or corrupt record (the tail
//! of a write that was never acknowledged), truncating it so that appends continue
//! after good data.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, IoSlice, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tracing::{info, warn};

use crate::Result;

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
}

/// The open log: appends go to the newest segment.
pub struct Wal {
    dir: PathBuf,
    seq: u64,
    writer: BufWriter<File>,
    /// A second handle on the current segment for the interval sync thread.
    sync_handle: Arc<parking_lot::Mutex<Arc<File>>>,
    dirty: Arc<AtomicBool>,
    bytes_written: u64,
}

fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:020}.wal"))
}

/// Sequence numbers of the segments in `dir`, ascending.
pub fn list_segments(dir: &Path) -> Result<Vec<u64>> {
    let mut out = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".wal")
            && let Ok(seq) = stem.parse::<u64>()
        {
            out.push(seq);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Reads one segment's valid records; truncates a torn tail when `repair` is set.
fn read_segment(path: &Path, repair: bool) -> Result<Vec<Vec<u8>>> {
    let mut file = OpenOptions::new().read(true).write(repair).open(path)?;
    let len = file.metadata()?.len();
    let mut data = Vec::with_capacity(len as usize);
    file.read_to_end(&mut data)?;
    let mut records = Vec::new();
    let mut pos = 0usize;
    while pos + HEADER_BYTES <= data.len() {
        let size = u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]]);
        let crc = u32::from_le_bytes([data[pos + 4], data[pos + 5], data[pos + 6], data[pos + 7]]);
        let start = pos + HEADER_BYTES;
        let end = start + size as usize;
        if size > MAX_RECORD_BYTES || end > data.len() {
            break;
        }
        let payload = &data[start..end];
        if crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        pos = end;
    }
    if pos != data.len() {
        warn!(
            segment = %path.display(),
            valid_bytes = pos,
            total_bytes = data.len(),
            "wal segment has a torn or corrupt tail; truncating it"
        );
        if repair {
            file.set_len(pos as u64)?;
            file.sync_all()?;
        }
    }
    Ok(records)
}

impl Wal {
    /// Opens the log in `dir`, returning the surviving records of every segment with a
    /// sequence number above `flushed_through` (older ones are deleted: their rows are
    /// in blocks). New appends go to a fresh segment.
    pub fn open(dir: &Path, flushed_through: u64) -> Result<(Wal, Vec<ReplayedSegment>)> {
        fs::create_dir_all(dir)?;
        let mut replayed = Vec::new();
        let mut last_seq = flushed_through;
        for seq in list_segments(dir)? {
            let path = segment_path(dir, seq);
            last_seq = last_seq.max(seq);
            if seq <= flushed_through {
                fs::remove_file(&path)?;
                continue;
            }
            let records = read_segment(&path, true)?;
            info!(
                segment = seq,
                records = records.len(),
                "replaying wal segment"
            );
            replayed.push(ReplayedSegment { seq, records });
        }
        let seq = last_seq + 1;
        let file = Self::create_segment(dir, seq)?;
        let sync_handle = Arc::new(parking_lot::Mutex::new(Arc::new(file.try_clone()?)));
        Ok((
            Wal {
                dir: dir.to_path_buf(),
                seq,
                writer: BufWriter::with_capacity(BUFFER_BYTES, file),
                sync_handle,
                dirty: Arc::new(AtomicBool::new(false)),
                bytes_written: 0,
            },
            replayed,
        ))
    }

    fn create_segment(dir: &Path, seq: u64) -> Result<File> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(segment_path(dir, seq))?;
        // Make the new name itself durable.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(file)
    }

    /// Sequence number of the segment being written.
    pub fn current_seq(&self) -> u64 {
        self.seq
    }

    /// Total bytes appended since open.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }

    /// Buffers one record; call [`Wal::commit`] to hand the group to the OS.
    pub fn append(&mut self, payload: &[u8]) -> Result<()> {
        let size = u32::try_from(payload.len())
            .map_err(|_| crate::Error::Corrupt("wal record over 4 GiB".into()))?;
        let mut header = [0u8; HEADER_BYTES];
        header[..4].copy_from_slice(&size.to_le_bytes());
        header[4..].copy_from_slice(&crc32fast::hash(payload).to_le_bytes());
        // Records of BUFFER_BYTES or more go to the file in one `writev`, not through
        // the buffer: a request's record is often hundreds of KiB and copying it once
        // more costs more than the system call.
        let written = self
            .writer
            .write_vectored(&[IoSlice::new(&header), IoSlice::new(payload)])?;
        if written < HEADER_BYTES {
            self.writer.write_all(&header[written..])?;
            self.writer.write_all(payload)?;
        } else {
            self.writer.write_all(&payload[written - HEADER_BYTES..])?;
        }
        self.bytes_written += (HEADER_BYTES + payload.len()) as u64;
        Ok(())
    }

    /// Writes the buffered group to the OS; with `fsync`, also to stable storage, and
    /// then returns how long that sync took.
    pub fn commit(&mut self, fsync: bool) -> Result<Option<Duration>> {
        self.writer.flush()?;
        if fsync {
            let started = Instant::now();
            self.writer.get_ref().sync_data()?;
            Ok(Some(started.elapsed()))
        } else {
            self.dirty.store(true, Ordering::Release);
            Ok(None)
        }
    }

    /// Syncs and closes the current segment and starts the next; returns the closed
    /// segment's number.
    pub fn rotate(&mut self) -> Result<u64> {
        self.writer.flush()?;
        self.writer.get_ref().sync_data()?;
        let closed = self.seq;
        self.seq += 1;
        let file = Self::create_segment(&self.dir, self.seq)?;
        *self.sync_handle.lock() = Arc::new(file.try_clone()?);
        self.writer = BufWriter::with_capacity(BUFFER_BYTES, file);
        Ok(closed)
    }

    /// Deletes every segment numbered `seq` or lower.
    pub fn remove_through(dir: &Path, seq: u64) -> Result<()> {
        for s in list_segments(dir)? {
            if s <= seq {
                match fs::remove_file(segment_path(dir, s)) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
        Ok(())
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
    read_segment(path, false)
}

#[cfg(test)]
mod tests;
