//! A checksum of each block's data in its own footer.
//!
//! Parquet's pages carry no checksum as this writer makes them, so damage that still
//! decodes (random ids, plain-encoded values, zstd literals) would read as other data:
//! a merge would then write it into a new block and delete the damaged one. A block's
//! writer keeps the CRC-32 of every byte before the footer and stores it, with their
//! count, in the footer's key-value metadata; a merge checks its inputs against it
//! before it reads them, and a block whose read failed is checked the same way. Blocks
//! written before the checksum have none and are taken as they read.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::Path;

use parquet::file::metadata::{KeyValue, ParquetMetaData};

use crate::{Error, Result};

/// The footer key: `<bytes>:<crc32 as 8 hex digits>`.
const CHECKSUM_KEY: &str = "meshtel.data_crc32";

/// A writer that passes every byte on and keeps their CRC-32 and count.
pub(super) struct Summing<W> {
    inner: W,
    hasher: crc32fast::Hasher,
    len: u64,
}

impl<W> Summing<W> {
    pub(super) fn new(inner: W) -> Self {
        Summing {
            inner,
            hasher: crc32fast::Hasher::new(),
            len: 0,
        }
    }

    /// The footer entry for what went through so far.
    pub(super) fn key_value(&self) -> KeyValue {
        let crc = self.hasher.clone().finalize();
        KeyValue::new(CHECKSUM_KEY.to_owned(), format!("{}:{crc:08x}", self.len))
    }

    pub(super) fn into_inner(self) -> W {
        self.inner
    }
}

impl<W: Write> Write for Summing<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let written = self.inner.write(buf)?;
        self.hasher.update(&buf[..written]);
        self.len += written as u64;
        Ok(written)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// The checksum a block's footer holds, if it holds one: (bytes, CRC-32).
fn expected(metadata: &ParquetMetaData) -> Result<Option<(u64, u32)>> {
    let Some(value) = metadata
        .file_metadata()
        .key_value_metadata()
        .and_then(|entries| entries.iter().find(|kv| kv.key == CHECKSUM_KEY))
        .map(|kv| kv.value.as_deref().unwrap_or_default())
    else {
        return Ok(None);
    };
    value
        .split_once(':')
        .and_then(|(len, crc)| Some((len.parse().ok()?, u32::from_str_radix(crc, 16).ok()?)))
        .map(Some)
        .ok_or_else(|| Error::Corrupt(format!("its footer's checksum {value:?} does not read")))
}

fn compare(len: u64, expected: u32, found: u32) -> Result<()> {
    if found == expected {
        Ok(())
    } else {
        Err(Error::Corrupt(format!(
            "its data does not match its checksum: CRC-32 {found:08x} of its first {len} bytes, \
             {expected:08x} when written"
        )))
    }
}

/// Checks the block at `path` against the checksum in its footer (`metadata`, read
/// from it): an [`Error::Corrupt`] when they differ. Reads the data once, in pieces.
pub(crate) fn verify_file(path: &Path, metadata: &ParquetMetaData) -> Result<()> {
    let Some((len, crc)) = expected(metadata)? else {
        return Ok(());
    };
    let mut data = File::open(path)?.take(len);
    let mut hasher = crc32fast::Hasher::new();
    let mut buffer = vec![0u8; 256 << 10];
    let mut read = 0u64;
    loop {
        let n = data.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        read += n as u64;
    }
    if read < len {
        return Err(Error::Corrupt(format!(
            "it is cut short: {read} bytes of data where {len} were written"
        )));
    }
    compare(len, crc, hasher.finalize())
}

/// [`verify_file`] for a block read into memory whole.
pub(crate) fn verify_bytes(bytes: &[u8], metadata: &ParquetMetaData) -> Result<()> {
    let Some((len, crc)) = expected(metadata)? else {
        return Ok(());
    };
    let data = usize::try_from(len)
        .ok()
        .and_then(|len| bytes.get(..len))
        .ok_or_else(|| {
            Error::Corrupt(format!(
                "it is cut short: {} bytes where {len} were written",
                bytes.len()
            ))
        })?;
    compare(len, crc, crc32fast::hash(data))
}
