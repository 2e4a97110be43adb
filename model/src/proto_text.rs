//! Protobuf strings that are not UTF-8, replaced with U+FFFD.
//!
//! Protobuf declares its strings UTF-8, and prost refuses a message holding one that is
//! not, so one bad value (a string cut in the middle of a character by a client's
//! length limit, bytes read from a file) would refuse every span of its request: a 400
//! that an exporter does not retry, hundreds of spans lost for one value. The
//! OpenTelemetry Collector and Zipkin's server do not check protobuf strings at all.
//! meshtel keeps the spans and repairs the text, as a lossy UTF-8 conversion does: the
//! message is walked by a schema that says which fields hold text and which hold
//! messages, and rewritten from its first repaired field on.

use std::borrow::Cow;

use prost::encoding::{decode_varint, encode_varint};

/// What a length-delimited field of a message of type `M` holds.
pub enum Field<M> {
    /// A string.
    Text,
    /// A message of this type.
    Nested(M),
    /// Bytes (ids, binary values), or a field the schema does not name: copied as it is.
    Opaque,
}

/// Deeper than prost reads, even a span decoded alone (its recursion limit, 100, below
/// the few levels of a request above its spans): left to prost to refuse.
const MAX_DEPTH: usize = 110;

/// `message` (of type `root`) with every string that is not UTF-8 made valid (each
/// invalid sequence replaced with U+FFFD), and how many strings that changed; `None`
/// when none needed it, or when the encoding is broken otherwise (prost then says how).
pub fn repair_utf8<M: Copy>(
    message: &[u8],
    root: M,
    schema: fn(M, u32) -> Field<M>,
) -> Option<(Vec<u8>, usize)> {
    let mut repaired = 0;
    match repair(message, root, schema, &mut repaired, 0) {
        Some(Cow::Owned(bytes)) if repaired > 0 => Some((bytes, repaired)),
        _ => None,
    }
}

/// One message's bytes, copied only from its first repaired field on.
fn repair<'a, M: Copy>(
    bytes: &'a [u8],
    message: M,
    schema: fn(M, u32) -> Field<M>,
    repaired: &mut usize,
    depth: usize,
) -> Option<Cow<'a, [u8]>> {
    if depth > MAX_DEPTH {
        return None;
    }
    let mut rest = bytes;
    let mut out: Option<Vec<u8>> = None;
    while !rest.is_empty() {
        let start = bytes.len() - rest.len();
        let key = decode_varint(&mut rest).ok()?;
        let (number, wire) = (u32::try_from(key >> 3).ok()?, key & 7);
        let key_end = bytes.len() - rest.len();
        let replacement = match wire {
            // Varint, fixed 64, fixed 32: copied.
            0 => {
                decode_varint(&mut rest).ok()?;
                None
            }
            1 | 5 => {
                let width = if wire == 1 { 8 } else { 4 };
                rest = rest.get(width..)?;
                None
            }
            2 => {
                let len = usize::try_from(decode_varint(&mut rest).ok()?).ok()?;
                let value = rest.get(..len)?;
                rest = &rest[len..];
                match schema(message, number) {
                    Field::Opaque => None,
                    Field::Text => std::str::from_utf8(value).is_err().then(|| {
                        *repaired += 1;
                        Cow::Owned(String::from_utf8_lossy(value).into_owned().into_bytes())
                    }),
                    Field::Nested(inner) => {
                        match repair(value, inner, schema, repaired, depth + 1)? {
                            Cow::Borrowed(_) => None,
                            owned => Some(owned),
                        }
                    }
                }
            }
            // A group (proto2's, unknown to these schemas): skipped whole and copied, as
            // prost skips it.
            3 => {
                skip_group(&mut rest, number, depth + 1)?;
                None
            }
            // A group's end with no start, and wire types that do not exist: left to
            // prost to refuse.
            _ => return None,
        };
        let end = bytes.len() - rest.len();
        match (replacement, &mut out) {
            (Some(value), out) => {
                let out = out.get_or_insert_with(|| bytes[..start].to_vec());
                out.extend_from_slice(&bytes[start..key_end]);
                encode_varint(value.len() as u64, out);
                out.extend_from_slice(&value);
            }
            (None, Some(out)) => out.extend_from_slice(&bytes[start..end]),
            (None, None) => {}
        }
    }
    Some(out.map_or(Cow::Borrowed(bytes), Cow::Owned))
}

/// Skips a group's fields up to its end (wire type 4 with the group's `number`), groups
/// inside it too; `None` when it does not end, or ends as another group.
fn skip_group(rest: &mut &[u8], number: u32, depth: usize) -> Option<()> {
    if depth > MAX_DEPTH {
        return None;
    }
    loop {
        let key = decode_varint(rest).ok()?;
        let (inner, wire) = (u32::try_from(key >> 3).ok()?, key & 7);
        match wire {
            0 => {
                decode_varint(rest).ok()?;
            }
            1 | 5 => *rest = rest.get(if wire == 1 { 8 } else { 4 }..)?,
            2 => {
                let len = usize::try_from(decode_varint(rest).ok()?).ok()?;
                *rest = rest.get(len..)?;
            }
            3 => skip_group(rest, inner, depth + 1)?,
            4 if inner == number => return Some(()),
            _ => return None,
        }
    }
}
