//! Reading a segment back, and what to do with one that does not read to its end.
//!
//! A segment's records are read up to the first one that does not read: its header
//! runs past the end of the file, its length is zero or too large, or its checksum
//! fails. What is left from there decides what happened:
//!
//! - a torn tail, what a crash in the middle of the last write leaves: less than one
//!   buffered write (64 KiB), a prefix of one large record (with no whole record
//!   after it: a damaged length can make a record seem to run past the end), or
//!   zeros (pages a power failure never wrote, or a file system that zero-fills).
//!   Nothing acknowledged is in it (with `wal.sync = "interval"`, a power failure loses up to the interval
//!   anyway). It is cut off with a WARN.
//! - damage: more than a torn write could leave. The records after it were
//!   acknowledged. Replay looks past the damage for the next whole record (header and
//!   checksum right, its payload starting as every record does: [`RECORD_PREFIX`]) and
//!   reads on from there, so only the records in the damaged bytes are lost; the
//!   segment is then left as it is (the next start reads it the same way) and
//!   deleted once flushed, as usual. When no whole record follows, it is cut
//!   at the damage. Either way a copy of the whole segment goes to `wal/corrupt/`
//!   first, for whoever wants to look, and an ERROR says how many bytes were passed
//!   over or cut and where the copy is. At most [`MAX_CORRUPT_COPIES`] copies are
//!   kept, the oldest deleted first; when no copy can be made, the segment is left as
//!   it is.
//!
//! Either way replay goes on with the next segment, and new records go to a new
//! segment: nothing is ever appended after bytes that do not read.

use std::fs::{self, File, OpenOptions};
use std::path::{Path, PathBuf};

use tracing::{error, warn};

use super::{BUFFER_BYTES, HEADER_BYTES, MAX_RECORD_BYTES};
use crate::{Error, Result};

/// Where copies of damaged segments are kept, inside the WAL directory.
pub const CORRUPT_DIR: &str = "corrupt";

/// Most copies of damaged segments kept in [`CORRUPT_DIR`]; older ones are deleted.
pub const MAX_CORRUPT_COPIES: usize = 4;

/// A segment's readable records and how it ends.
pub(super) struct Scan {
    pub records: Vec<Vec<u8>>,
    /// Bytes up to the end of the last record read before any damage.
    pub valid_len: usize,
    pub tail: Tail,
    /// Damaged stretches passed over, each followed by a whole record that was read.
    pub skipped: Vec<Skipped>,
}

/// Bytes between two readable records that do not read themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Skipped {
    pub offset: usize,
    pub bytes: usize,
    /// Records read before it.
    pub records_before: usize,
}

/// What follows the last readable record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tail {
    /// Nothing: the segment reads to its end.
    Clean,
    /// What a crash in the middle of the last write can leave.
    Torn,
    /// More than that: acknowledged records follow the damage.
    Damaged,
}

fn u32_at(data: &[u8], pos: usize) -> u32 {
    u32::from_le_bytes([data[pos], data[pos + 1], data[pos + 2], data[pos + 3]])
}

/// Reads the records of a segment's bytes. At the first one that does not read, what
/// is left decides: a torn tail ends the segment; damage is passed over when a whole
/// record (header and checksum right) follows it, and reading goes on from there.
pub(super) fn scan(data: &[u8]) -> Scan {
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    let mut valid_len = None;
    let mut pos = 0usize;
    let tail = loop {
        pos = read_records(data, pos, &mut records);
        if pos == data.len() {
            break Tail::Clean;
        }
        valid_len.get_or_insert(pos);
        let rest = &data[pos..];
        match classify_tail(rest) {
            Tail::Torn => break Tail::Torn,
            _ => match next_record(rest, LOOKAHEAD_BUDGET_BYTES) {
                Lookahead::At(offset) => {
                    skipped.push(Skipped {
                        offset: pos,
                        bytes: offset,
                        records_before: records.len(),
                    });
                    pos += offset;
                }
                Lookahead::None | Lookahead::GaveUp => break Tail::Damaged,
            },
        }
    };
    Scan {
        records,
        valid_len: valid_len.unwrap_or(pos),
        tail,
        skipped,
    }
}

/// Reads whole records from `pos` on into `records`; returns where the first one
/// that does not read starts (or the end).
fn read_records(data: &[u8], mut pos: usize, records: &mut Vec<Vec<u8>>) -> usize {
    while pos + HEADER_BYTES <= data.len() {
        let size = u32_at(data, pos);
        let crc = u32_at(data, pos + 4);
        let start = pos + HEADER_BYTES;
        // No record is empty: a zero length is the end of the log (a zero-filled tail
        // would otherwise read as records with a valid checksum, the CRC of nothing).
        if size == 0 || size > MAX_RECORD_BYTES || size as usize > data.len() - start {
            break;
        }
        let end = start + size as usize;
        let payload = &data[start..end];
        if crc32fast::hash(payload) != crc {
            break;
        }
        records.push(payload.to_vec());
        pos = end;
    }
    pos
}

/// Whether `rest`, from the first record that does not read to the end of the
/// segment, is what a torn last write can leave (see the module's doc).
fn classify_tail(rest: &[u8]) -> Tail {
    if rest.len() < HEADER_BYTES || rest.iter().all(|&b| b == 0) {
        return Tail::Torn;
    }
    let size = u32_at(rest, 0);
    if size == 0 || size > MAX_RECORD_BYTES {
        return Tail::Damaged;
    }
    let record = HEADER_BYTES + size as usize;
    let one_write = rest.len() < BUFFER_BYTES;
    if record > rest.len() {
        // A record cut short: the prefix of a large record's own write, or of a
        // buffered write (which never holds more than BUFFER_BYTES). Unless a whole
        // record follows: then its length was damaged (a flipped bit makes it run past
        // the end), and acknowledged records come after it.
        let torn = (record >= BUFFER_BYTES || one_write)
            && next_record(rest, LOOKAHEAD_BUDGET_BYTES) == Lookahead::None;
        return if torn { Tail::Torn } else { Tail::Damaged };
    }
    // The record is whole but its checksum fails: a power failure can leave a page of
    // it unwritten, with nothing but unwritten pages after it.
    if one_write && rest[record..].iter().all(|&b| b == 0) {
        Tail::Torn
    } else {
        Tail::Damaged
    }
}

/// Most payload bytes [`next_record`] checksums before it gives up: a few
/// milliseconds' work, enough for tails a few hundred KiB long.
const LOOKAHEAD_BUDGET_BYTES: usize = 64 << 20;

/// Where the first whole record (its header and checksum right) after `rest`'s first
/// byte starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lookahead {
    At(usize),
    None,
    /// Telling would take more than the budget of checksummed bytes (a long tail of
    /// many plausible lengths).
    GaveUp,
}

/// How every record's payload begins: the store appends Arrow IPC streams, whose first
/// message starts with the continuation marker `0xFFFFFFFF`. Past damage, only places
/// where a record would begin so are checked, which leaves a handful of candidates in
/// a segment of any size (a length field alone is plausible every few bytes of Arrow
/// data, and each would cost a checksum over up to the rest of the segment).
pub const RECORD_PREFIX: [u8; 4] = [0xFF; 4];

fn next_record(rest: &[u8], budget: usize) -> Lookahead {
    let mut spent = 0usize;
    for pos in 1..rest.len().saturating_sub(HEADER_BYTES) {
        let start = pos + HEADER_BYTES;
        let size = u32_at(rest, pos) as usize;
        if size < RECORD_PREFIX.len()
            || size > rest.len() - start
            || rest[start..start + RECORD_PREFIX.len()] != RECORD_PREFIX
        {
            continue;
        }
        spent += size;
        if spent > budget {
            return Lookahead::GaveUp;
        }
        if crc32fast::hash(&rest[start..start + size]) == u32_at(rest, pos + 4) {
            return Lookahead::At(pos);
        }
    }
    Lookahead::None
}

/// Reads one segment's records for replay and repairs its end (see the module's doc);
/// with whether it was damaged (more than a torn tail).
pub(super) fn replay_segment(path: &Path) -> Result<(Vec<Vec<u8>>, bool)> {
    let data = fs::read(path).map_err(Error::at("WAL segment", path))?;
    let Scan {
        records,
        valid_len,
        tail,
        skipped,
    } = scan(&data);
    if let Some(first) = skipped.first() {
        // Whole records were read after the damage: the segment stays as it is, since
        // cutting it would lose them again at a start before they are flushed (a
        // flushed segment is deleted as usual); the next start reads it the same way.
        let copy =
            keep_copy(path).map_or_else(|e| format!("none ({e})"), |c| c.display().to_string());
        error!(
            segment = %path.display(),
            offset = first.offset,
            damaged_stretches = skipped.len(),
            skipped_bytes = skipped.iter().map(|s| s.bytes).sum::<usize>(),
            records_kept = records.len(),
            records_before_damage = first.records_before,
            damaged_end = tail == Tail::Damaged,
            copy,
            "wal segment is damaged; the records in the damaged bytes are lost, every \
             whole record after them is replayed, and the segment is left as it is"
        );
        return Ok((records, true));
    }
    let cut_bytes = data.len() - valid_len;
    match tail {
        Tail::Clean => {}
        Tail::Torn => {
            warn!(
                segment = %path.display(),
                valid_bytes = valid_len,
                cut_bytes,
                "wal segment ends in a torn write; cutting it off"
            );
            cut(path, valid_len);
        }
        Tail::Damaged => match keep_copy(path) {
            Ok(copy) => {
                error!(
                    segment = %path.display(),
                    offset = valid_len,
                    cut_bytes,
                    records_kept = records.len(),
                    copy = %copy.display(),
                    "wal segment is damaged before its end; the records after the damage \
                     are lost: cutting it there, a copy of the whole segment is kept"
                );
                cut(path, valid_len);
            }
            Err(e) => error!(
                segment = %path.display(),
                offset = valid_len,
                lost_bytes = cut_bytes,
                records_kept = records.len(),
                error = %e,
                "wal segment is damaged before its end; the records after the damage are \
                 not replayed, and no copy could be kept, so the segment is left as it is"
            ),
        },
    }
    Ok((records, tail == Tail::Damaged))
}

/// Cuts the segment at `len`. New records go to a new segment either way, so a failure
/// only means the same warning at the next start.
fn cut(path: &Path, len: usize) {
    let result = OpenOptions::new()
        .write(true)
        .open(path)
        .and_then(|f| f.set_len(len as u64).and_then(|()| f.sync_all()));
    if let Err(e) = result {
        warn!(segment = %path.display(), error = %e, "could not cut the wal segment");
    }
}

/// Copies the segment into `wal/corrupt/` (temporary name, synced, renamed), after
/// deleting the oldest copies beyond [`MAX_CORRUPT_COPIES`].
fn keep_copy(path: &Path) -> std::io::Result<PathBuf> {
    let wal_dir = path.parent().unwrap_or(Path::new("."));
    let dir = wal_dir.join(CORRUPT_DIR);
    fs::create_dir_all(&dir)?;
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut copies: Vec<String> = fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".wal") && *n != name)
        .collect();
    copies.sort();
    while copies.len() >= MAX_CORRUPT_COPIES {
        let oldest = copies.remove(0);
        let oldest = dir.join(oldest);
        warn!(copy = %oldest.display(), kept = MAX_CORRUPT_COPIES, "deleting the oldest copy of a damaged wal segment");
        fs::remove_file(&oldest)?;
    }
    let target = dir.join(&name);
    let tmp = dir.join(format!("{name}.tmp"));
    fs::copy(path, &tmp)?;
    File::open(&tmp)?.sync_all()?;
    fs::rename(&tmp, &target)?;
    if let Ok(d) = File::open(&dir) {
        let _ = d.sync_all();
    }
    Ok(target)
}
