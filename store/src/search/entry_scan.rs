//! Which rows of a block hold a tag's attribute entries, read straight from the pages
//! of the attribute lists before a tag search's query runs.
//!
//! A tag search's query spends most of its time having arrow-rs turn every page of the
//! attribute lists into list arrays (offsets from the repetition levels, nulls from the
//! definition levels, then the keys) only to test each key against a few candidates.
//! Here each row group's dictionary is compared once, and each data page's keys are
//! unpacked and looked up in that comparison; a page none of whose keys is a candidate
//! is done with then, and only a page with a hit has its levels decoded, to find which
//! rows the hits belong to. The query then reads those rows only (a
//! [`ParquetAccessPlan`] per block), and still applies the whole filter to them.
//!
//! Whatever this reader does not know (a page layout or an encoding meshtel does not
//! write, a column nested deeper) leaves the row group to the query in full: the pass
//! only ever narrows what the query reads, it never decides a match on its own.

use std::fs::File;
use std::sync::Arc;

use parquet::arrow::arrow_reader::{RowSelection, RowSelector};
use parquet::basic::Encoding;
use parquet::column::page::Page;
use parquet::file::metadata::{ColumnChunkMetaData, ParquetMetaData};
use parquet::file::serialized_reader::SerializedPageReader;

use crate::Result;
use crate::schema::{PACKED_MARK, PackedEntries, col};

/// Most tags one pass tracks (one bit each); a search's further tags are left to its
/// query.
const MAX_TAGS: usize = 8;

/// What the pass found in one row group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RowGroupRows {
    /// The pass could not read it: the query reads every row.
    Unknown,
    /// The rows (ascending, within the row group) that hold an entry of every tag.
    Rows(Vec<u32>),
}

/// Per row group of the block, the rows holding, for each tag, one of its candidate
/// entries in one of the `columns` (leaf column indexes of the attribute lists).
/// `tags[t]` are tag `t`'s candidate entries; at most [`MAX_TAGS`] are used.
pub(crate) fn matching_rows(
    file: &Arc<File>,
    metadata: &ParquetMetaData,
    columns: &[usize],
    tags: &[Vec<String>],
) -> Result<Vec<RowGroupRows>> {
    let tags = &tags[..tags.len().min(MAX_TAGS)];
    let all_tags: u8 = if tags.len() == MAX_TAGS {
        u8::MAX
    } else {
        (1u8 << tags.len()) - 1
    };
    let mut out = Vec::with_capacity(metadata.num_row_groups());
    for row_group in metadata.row_groups() {
        let num_rows = usize::try_from(row_group.num_rows()).unwrap_or(0);
        let mut masks: Vec<(u32, u8)> = Vec::new();
        let mut known = !columns.is_empty() && !tags.is_empty();
        for &column in columns {
            let Some(chunk) = row_group.columns().get(column) else {
                known = false;
                break;
            };
            match column_hits(file, chunk, num_rows, tags)? {
                Some(hits) => masks.extend(hits),
                None => {
                    known = false;
                    break;
                }
            }
        }
        if !known {
            out.push(RowGroupRows::Unknown);
            continue;
        }
        masks.sort_unstable_by_key(|(row, _)| *row);
        let mut rows = Vec::new();
        let mut at = 0;
        while at < masks.len() {
            let row = masks[at].0;
            let mut mask = 0;
            while at < masks.len() && masks[at].0 == row {
                mask |= masks[at].1;
                at += 1;
            }
            if mask == all_tags {
                rows.push(row);
            }
        }
        // Rows past the row group's end come of page headers that disagree with the
        // footer: leave the row group to the query.
        if rows.last().is_some_and(|row| *row as usize >= num_rows) {
            out.push(RowGroupRows::Unknown);
            continue;
        }
        out.push(RowGroupRows::Rows(rows));
    }
    Ok(out)
}

/// `rows` (ascending, within a row group of `num_rows`) as a selection.
pub(super) fn selection(rows: &[u32], num_rows: usize) -> RowSelection {
    let mut selectors = Vec::new();
    let mut next = 0usize;
    let mut at = 0;
    while at < rows.len() {
        let start = rows[at] as usize;
        let mut end = start + 1;
        at += 1;
        while at < rows.len() && rows[at] as usize == end {
            end += 1;
            at += 1;
        }
        if start > next {
            selectors.push(RowSelector::skip(start - next));
        }
        selectors.push(RowSelector::select(end - start));
        next = end;
    }
    if num_rows > next {
        selectors.push(RowSelector::skip(num_rows - next));
    }
    selectors.into()
}

/// (row, tag bits) for every entry of one column chunk that is a candidate of some
/// tag; `None` when the chunk is not laid out as this reader knows.
fn column_hits(
    file: &Arc<File>,
    chunk: &ColumnChunkMetaData,
    num_rows: usize,
    tags: &[Vec<String>],
) -> Result<Option<Vec<(u32, u8)>>> {
    let descr = chunk.column_descr();
    // A flat list of strings: one repetition level, a row starting at level 0.
    if descr.max_rep_level() != 1 {
        return Ok(None);
    }
    let max_def = u16::try_from(descr.max_def_level()).unwrap_or(u16::MAX);
    let def_width = bit_width(u32::from(max_def));
    let packed = chunk
        .column_path()
        .parts()
        .first()
        .is_some_and(|top| top == col::RESOURCE_ATTRIBUTES);
    let pages = SerializedPageReader::new(file.clone(), chunk, num_rows, None)?;
    // The tag bits of each dictionary entry, and whether any is a candidate.
    let mut dictionary: Option<(Vec<u8>, bool)> = None;
    let mut scratch = Scratch::default();
    let mut out = Vec::new();
    let mut row_base = 0u32;
    for page in pages {
        match page? {
            Page::DictionaryPage {
                buf,
                num_values,
                encoding,
                ..
            } => {
                if !matches!(encoding, Encoding::PLAIN | Encoding::PLAIN_DICTIONARY) {
                    return Ok(None);
                }
                match plain_masks(&buf, num_values as usize, tags, packed) {
                    Some(masks) => {
                        let any = masks.iter().any(|m| *m != 0);
                        dictionary = Some((masks, any));
                    }
                    None => return Ok(None),
                }
            }
            Page::DataPageV2 {
                buf,
                num_values,
                encoding,
                num_nulls,
                num_rows,
                def_levels_byte_len,
                rep_levels_byte_len,
                ..
            } => {
                let (rep_len, def_len) =
                    (rep_levels_byte_len as usize, def_levels_byte_len as usize);
                let (Some(rep), Some(def), Some(values)) = (
                    buf.get(..rep_len),
                    buf.get(rep_len..rep_len + def_len),
                    buf.get(rep_len + def_len..),
                ) else {
                    return Ok(None);
                };
                let levels = num_values as usize;
                let present = levels.saturating_sub(num_nulls as usize);
                scratch.hits.clear();
                let decoded = match encoding {
                    Encoding::RLE_DICTIONARY | Encoding::PLAIN_DICTIONARY => match &dictionary {
                        // No entry of this row group's dictionary is a candidate.
                        Some((_, false)) => Some(()),
                        Some((masks, true)) => {
                            dictionary_hits(values, present, masks, &mut scratch)
                        }
                        None => None,
                    },
                    Encoding::PLAIN => plain_masks(values, present, tags, packed).map(|masks| {
                        scratch.hits.extend(
                            masks
                                .iter()
                                .enumerate()
                                .filter(|(_, m)| **m != 0)
                                .map(|(i, m)| (i as u32, *m)),
                        );
                    }),
                    _ => None,
                };
                if decoded.is_none() {
                    return Ok(None);
                }
                if !scratch.hits.is_empty() {
                    scratch.rep.clear();
                    scratch.def.clear();
                    if rle_hybrid(rep, 1, levels, &mut scratch.rep).is_none()
                        || rle_hybrid(def, def_width, levels, &mut scratch.def).is_none()
                    {
                        return Ok(None);
                    }
                    if !hit_rows(&scratch, max_def, present, row_base, &mut out) {
                        return Ok(None);
                    }
                }
                row_base = row_base.saturating_add(num_rows);
            }
            // Format-1 data pages: meshtel writes format 2.
            Page::DataPage { .. } => return Ok(None),
        }
    }
    Ok(Some(out))
}

/// Buffers reused across the pages of a column chunk.
#[derive(Default)]
struct Scratch {
    /// (value ordinal within the page, tag bits), ascending.
    hits: Vec<(u32, u8)>,
    rep: Vec<u32>,
    def: Vec<u32>,
}

/// The candidate hits among a page's dictionary keys (`values`: bit width byte, then
/// the keys RLE/bit-packed), into `scratch.hits`.
fn dictionary_hits(
    values: &[u8],
    present: usize,
    masks: &[u8],
    scratch: &mut Scratch,
) -> Option<()> {
    if present == 0 {
        return Some(());
    }
    let (&width, keys) = values.split_first()?;
    let hits = &mut scratch.hits;
    rle_hybrid_runs(keys, width, present, |ordinal, key, repeat| {
        // A key past the dictionary is a corrupt page: leave it to the query.
        let mask = *masks.get(key as usize)?;
        if mask != 0 {
            hits.extend((ordinal..ordinal + repeat).map(|o| (o as u32, mask)));
        }
        Some(())
    })
}

/// Maps the page's hits (by value ordinal) to rows: a row starts at each repetition
/// level 0, and a value is present where the definition level is at its maximum.
/// False when the levels do not hold the hits' values, or hold other than `present`
/// values (the page header's count, by which its keys were read).
fn hit_rows(
    scratch: &Scratch,
    max_def: u16,
    present: usize,
    row_base: u32,
    out: &mut Vec<(u32, u8)>,
) -> bool {
    let mut hits = scratch.hits.iter().peekable();
    let mut row: Option<u32> = None;
    let mut ordinal = 0u32;
    for (rep, def) in scratch.rep.iter().zip(&scratch.def) {
        if *rep == 0 {
            row = Some(row.map_or(0, |r| r + 1));
        }
        if *def == u32::from(max_def) {
            while let Some((_, mask)) = hits.next_if(|(at, _)| *at == ordinal) {
                match row {
                    Some(r) => match row_base.checked_add(r) {
                        Some(row) => out.push((row, *mask)),
                        None => return false,
                    },
                    None => return false,
                }
            }
            ordinal += 1;
        }
    }
    hits.peek().is_none() && ordinal as usize == present
}

/// For `count` plain-encoded byte arrays (little-endian u32 length, then the bytes):
/// the bits of the tags each is a candidate of, or one of whose entries is when they
/// are `packed` ([`PackedEntries`]: the resource column).
fn plain_masks(
    mut data: &[u8],
    count: usize,
    tags: &[Vec<String>],
    packed: bool,
) -> Option<Vec<u8>> {
    let mut masks = Vec::with_capacity(count);
    for _ in 0..count {
        let (len, rest) = data.split_first_chunk::<4>()?;
        let len = u32::from_le_bytes(*len) as usize;
        let value = rest.get(..len)?;
        data = &rest[len..];
        let mut mask = entry_mask(value, tags);
        // A resource's entries, packed into one value.
        if packed
            && value.first() == Some(&(PACKED_MARK as u8))
            && let Ok(packed) = std::str::from_utf8(value)
        {
            for entry in PackedEntries::of(packed) {
                mask |= entry_mask(entry.as_bytes(), tags);
            }
        }
        masks.push(mask);
    }
    Some(masks)
}

/// The bits of the tags `value` is a candidate of.
fn entry_mask(value: &[u8], tags: &[Vec<String>]) -> u8 {
    let mut mask = 0u8;
    for (t, candidates) in tags.iter().enumerate() {
        // Entries of one key share their first bytes: the last tells most apart.
        if candidates.iter().any(|c| {
            c.len() == value.len() && c.as_bytes().last() == value.last() && c.as_bytes() == value
        }) {
            mask |= 1 << t;
        }
    }
    mask
}

/// Bits needed to write `max`.
fn bit_width(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Decodes `count` values of the RLE/bit-packing hybrid (Parquet's levels and
/// dictionary keys) into `out`. `None` when `data` ends first or a width is over 32.
fn rle_hybrid(data: &[u8], width: u8, count: usize, out: &mut Vec<u32>) -> Option<()> {
    out.reserve(count);
    rle_hybrid_runs(data, width, count, |_, value, repeat| {
        out.resize(out.len() + repeat, value);
        Some(())
    })
}

/// Visits `count` values of the RLE/bit-packing hybrid as `visit(ordinal, value,
/// repeat)`: a run of `repeat` equal values starting at `ordinal` (bit-packed values
/// come one at a time). `None` when `data` ends first, a width is over 32, or `visit`
/// says `None`.
fn rle_hybrid_runs(
    data: &[u8],
    width: u8,
    count: usize,
    mut visit: impl FnMut(usize, u32, usize) -> Option<()>,
) -> Option<()> {
    if width > 32 {
        return None;
    }
    if width == 0 {
        return if count > 0 {
            visit(0, 0, count)
        } else {
            Some(())
        };
    }
    let w = usize::from(width);
    let mut ordinal = 0;
    let mut at = 0;
    while ordinal < count {
        let (header, used) = uleb128(data.get(at..)?)?;
        at += used;
        let groups = usize::try_from(header >> 1).ok()?;
        if header & 1 == 1 {
            // Bit-packed: groups of eight values, `w` bytes each.
            let bytes = groups.checked_mul(w)?;
            let run = data.get(at..at.checked_add(bytes)?)?;
            at += bytes;
            macro_rules! unpack_width {
                ($($n:literal)*) => {
                    match w {
                        $($n => unpack::<$n>(run, &mut ordinal, count, &mut visit)?,)*
                        _ => return None,
                    }
                };
            }
            unpack_width!(1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32);
        } else {
            let value_bytes = w.div_ceil(8);
            let mut value = [0u8; 4];
            value[..value_bytes].copy_from_slice(data.get(at..at + value_bytes)?);
            at += value_bytes;
            let repeat = groups.min(count - ordinal);
            if repeat > 0 {
                visit(ordinal, u32::from_le_bytes(value), repeat)?;
                ordinal += repeat;
            }
        }
    }
    Some(())
}

/// Visits the values of a bit-packed run of `W`-bit values from `ordinal` on, until
/// `count`. A width known when compiling lets each group of eight unpack without
/// bounds checks or a loop (the bit-packed keys of a tag search's page scan are most
/// of its work).
fn unpack<const W: usize>(
    run: &[u8],
    ordinal: &mut usize,
    count: usize,
    visit: &mut impl FnMut(usize, u32, usize) -> Option<()>,
) -> Option<()> {
    let mask = if W == 32 {
        u64::from(u32::MAX)
    } else {
        (1u64 << W) - 1
    };
    for group in run.chunks_exact(W) {
        // Zero-padded, so every value's eight-byte window is inside it.
        let mut padded = [0u8; 40];
        padded[..W].copy_from_slice(group);
        let mut values = [0u32; 8];
        for (k, value) in values.iter_mut().enumerate() {
            let bit = k * W;
            let mut word = [0u8; 8];
            word.copy_from_slice(&padded[bit / 8..bit / 8 + 8]);
            *value = ((u64::from_le_bytes(word) >> (bit % 8)) & mask) as u32;
        }
        for value in &values[..(count - *ordinal).min(8)] {
            visit(*ordinal, *value, 1)?;
            *ordinal += 1;
        }
        if *ordinal == count {
            break;
        }
    }
    Some(())
}

/// An unsigned LEB128 varint and the bytes it took.
fn uleb128(data: &[u8]) -> Option<(u64, usize)> {
    let mut value = 0u64;
    for (i, byte) in data.iter().enumerate().take(10) {
        value |= u64::from(byte & 0x7f) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hybrid_decoder_reads_rle_and_bit_packed_runs_and_stops_at_the_count() {
        // RLE run of 3 × 5 (width 3: one value byte), then one bit-packed group of 8
        // values 0..8 at width 3 (3 bytes), of which only 6 are wanted.
        let mut data = vec![3 << 1, 5, (1 << 1) | 1];
        let mut bits = 0u32;
        for v in 0..8u32 {
            bits |= v << (3 * v);
        }
        data.extend_from_slice(&bits.to_le_bytes()[..3]);
        let mut out = Vec::new();
        assert_eq!(rle_hybrid(&data, 3, 9, &mut out), Some(()));
        assert_eq!(out, [5, 5, 5, 0, 1, 2, 3, 4, 5]);
        // Asking for more than the data holds is an error, not a panic.
        let mut out = Vec::new();
        assert_eq!(rle_hybrid(&data, 3, 12, &mut out), None);
        assert_eq!(rle_hybrid(&[0xff], 3, 1, &mut Vec::new()), None);
        assert_eq!(rle_hybrid(&data, 33, 1, &mut Vec::new()), None);
    }

    #[test]
    fn bit_packed_runs_of_every_width_decode_to_what_was_packed() {
        for width in 1..=32u8 {
            let mask = if width == 32 {
                u64::from(u32::MAX)
            } else {
                (1u64 << width) - 1
            };
            let values: Vec<u32> = (0..76u64)
                .map(|i| ((i + 1).wrapping_mul(2_654_435_761) & mask) as u32)
                .collect();
            // Ten groups of eight (the last padded and cut at the count), least
            // significant bit first.
            let mut packed = vec![0u8; 10 * usize::from(width)];
            for (i, value) in values.iter().enumerate() {
                for b in 0..usize::from(width) {
                    if value >> b & 1 == 1 {
                        let bit = i * usize::from(width) + b;
                        packed[bit / 8] |= 1 << (bit % 8);
                    }
                }
            }
            let mut data = vec![(10 << 1) | 1];
            data.extend_from_slice(&packed);
            let mut out = Vec::new();
            assert_eq!(
                rle_hybrid(&data, width, 76, &mut out),
                Some(()),
                "width {width}"
            );
            assert_eq!(out, values, "width {width}");
            // A run cut short is an error.
            assert_eq!(
                rle_hybrid(&data[..data.len() - 1], width, 76, &mut Vec::new()),
                None
            );
        }
    }

    /// A file of one list-of-strings column, `rows[i]` the list of row `i`, written in
    /// Parquet format `version`.
    fn list_file(
        rows: &[&[&str]],
        version: parquet::file::properties::WriterVersion,
    ) -> std::fs::File {
        use arrow::array::{ListBuilder, RecordBatch, StringBuilder};
        let mut lists = ListBuilder::new(StringBuilder::new());
        for row in rows {
            for entry in *row {
                lists.values().append_value(entry);
            }
            lists.append(true);
        }
        let batch =
            RecordBatch::try_from_iter([("attributes", Arc::new(lists.finish()) as _)]).unwrap();
        let props = parquet::file::properties::WriterProperties::builder()
            .set_writer_version(version)
            .set_data_page_row_count_limit(2)
            .set_write_batch_size(2)
            .build();
        let mut file = tempfile::tempfile().unwrap();
        let mut writer = parquet::arrow::ArrowWriter::try_new(
            file.try_clone().unwrap(),
            batch.schema(),
            Some(props),
        )
        .unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        use std::io::Seek;
        file.rewind().unwrap();
        file
    }

    #[test]
    fn rows_are_found_across_pages_and_format_1_pages_are_left_to_the_query() {
        use parquet::file::properties::WriterVersion;
        let rows: &[&[&str]] = &[&["a", "b"], &[], &["c"], &["b", "a"], &["x"], &["a"]];
        let conditions = [vec!["a".to_string()], vec!["b".to_string()]];
        for (version, a, a_and_b) in [
            (
                WriterVersion::PARQUET_2_0,
                RowGroupRows::Rows(vec![0, 3, 5]),
                RowGroupRows::Rows(vec![0, 3]),
            ),
            (
                WriterVersion::PARQUET_1_0,
                RowGroupRows::Unknown,
                RowGroupRows::Unknown,
            ),
        ] {
            let file = Arc::new(list_file(rows, version));
            let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
                .parse_and_finish(file.as_ref())
                .unwrap();
            assert_eq!(
                matching_rows(&file, &metadata, &[0], &conditions[..1]).unwrap(),
                [a],
                "{version:?}"
            );
            assert_eq!(
                matching_rows(&file, &metadata, &[0], &conditions).unwrap(),
                [a_and_b],
                "{version:?}"
            );
        }
    }

    #[test]
    fn a_damaged_file_gives_an_error_or_leaves_rows_to_the_query_never_a_panic() {
        use std::io::{Read, Seek, Write};
        let rows: &[&[&str]] = &[&["a", "b"], &[], &["c"], &["b", "a"], &["x"], &["a"]];
        let mut file = list_file(rows, parquet::file::properties::WriterVersion::PARQUET_2_0);
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        let metadata = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .unwrap();
        let conditions = [vec!["a".to_string()]];
        // Every byte before the footer, flipped in turn: the footer read before still
        // describes the file, as a cached one would.
        let footer =
            u32::from_le_bytes(bytes[bytes.len() - 8..bytes.len() - 4].try_into().unwrap());
        let data_end = bytes.len() - 8 - footer as usize;
        let mut damaged = tempfile::tempfile().unwrap();
        for at in 4..data_end {
            let mut copy = bytes.clone();
            copy[at] ^= 0xff;
            damaged.set_len(0).unwrap();
            damaged.rewind().unwrap();
            damaged.write_all(&copy).unwrap();
            let damaged = Arc::new(damaged.try_clone().unwrap());
            if let Ok(found) = matching_rows(&damaged, &metadata, &[0], &conditions) {
                assert_eq!(found.len(), 1, "byte {at}");
                if let RowGroupRows::Rows(rows) = &found[0] {
                    assert!(rows.iter().all(|row| *row < 6), "byte {at}");
                }
            }
        }
    }

    #[test]
    fn selections_skip_between_runs_of_rows() {
        let selection = selection(&[2, 3, 4, 9], 12);
        let selectors: Vec<RowSelector> = selection.into();
        assert_eq!(
            selectors,
            [
                RowSelector::skip(2),
                RowSelector::select(3),
                RowSelector::skip(4),
                RowSelector::select(1),
                RowSelector::skip(2)
            ]
        );
    }
}
