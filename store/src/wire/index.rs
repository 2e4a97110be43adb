//! Where each group, scope and span of an encoded request is, before anything of it is
//! read: the reader walks the spans from this index, and sizes its builders from it.

use std::ops::Range;

use super::{LEN, Read, Reader, Unusual, expect};
use crate::encode::Room;

/// The bytes of a span's encoding that are not its attributes, at least: trace id
/// (18), span id (10), start and end times (9 each).
const SPAN_FIXED_BYTES: usize = 46;

/// Where each resource group, scope group and span of a request is.
#[derive(Default)]
pub(super) struct Index<'a> {
    /// Resource bytes (when present) and the range of its scope groups in `scopes`.
    pub(super) groups: Vec<(Option<&'a [u8]>, Range<usize>)>,
    /// Scope bytes (when present) and the range of its spans in `spans`.
    pub(super) scopes: Vec<(Option<&'a [u8]>, Range<usize>)>,
    pub(super) spans: Vec<&'a [u8]>,
}

impl<'a> Index<'a> {
    pub(super) fn of(request: &'a [u8]) -> Read<Self> {
        let mut index = Index::default();
        let mut r = Reader::new(request);
        while r.has_more() {
            match r.key()? {
                (1, wire) => {
                    expect(wire, LEN)?;
                    let group = r.bytes()?;
                    index.add_group(group)?;
                }
                (_, wire) => r.skip(wire)?,
            }
        }
        Ok(index)
    }

    /// Room for this request's rows. A span's attribute entries take fewer bytes than
    /// its encoding less its ids, times, kind and name (an entry's encoding has 6–9 bytes
    /// of tags and lengths where the stored entry has 2), so that is their bound but for
    /// integers written longer in decimal (the builder then grows). A resource's entries
    /// are bounded by its encoding's length, once per span of the resource.
    pub(super) fn room(&self) -> Room {
        let rows = self.spans.len();
        let span_bytes: usize = self.spans.iter().map(|span| span.len()).sum();
        let resource_bytes = self
            .groups
            .iter()
            .map(|(resource, scopes)| {
                let spans: usize = self.scopes[scopes.clone()]
                    .iter()
                    .map(|(_, spans)| spans.len())
                    .sum();
                resource.map_or(0, <[u8]>::len) * spans
            })
            .sum();
        Room {
            rows,
            attribute_bytes: span_bytes.saturating_sub(rows * SPAN_FIXED_BYTES),
            resource_bytes,
        }
    }

    /// `ResourceSpans`: 1 resource, 2 scope_spans, 3 schema_url.
    fn add_group(&mut self, bytes: &'a [u8]) -> Read<()> {
        let mut resource = None;
        let first_scope = self.scopes.len();
        let mut r = Reader::new(bytes);
        while r.has_more() {
            match r.key()? {
                (1, wire) => {
                    expect(wire, LEN)?;
                    if resource.replace(r.bytes()?).is_some() {
                        return Err(Unusual);
                    }
                }
                (2, wire) => {
                    expect(wire, LEN)?;
                    let scope = r.bytes()?;
                    self.add_scope(scope)?;
                }
                (3, wire) => {
                    expect(wire, LEN)?;
                    r.str()?;
                }
                (_, wire) => r.skip(wire)?,
            }
        }
        self.groups.push((resource, first_scope..self.scopes.len()));
        Ok(())
    }

    /// `ScopeSpans`: 1 scope, 2 spans, 3 schema_url.
    fn add_scope(&mut self, bytes: &'a [u8]) -> Read<()> {
        let mut scope = None;
        let first_span = self.spans.len();
        let mut r = Reader::new(bytes);
        while r.has_more() {
            match r.key()? {
                (1, wire) => {
                    expect(wire, LEN)?;
                    if scope.replace(r.bytes()?).is_some() {
                        return Err(Unusual);
                    }
                }
                (2, wire) => {
                    expect(wire, LEN)?;
                    let span = r.bytes()?;
                    self.spans.push(span);
                }
                (3, wire) => {
                    expect(wire, LEN)?;
                    r.str()?;
                }
                (_, wire) => r.skip(wire)?,
            }
        }
        self.scopes.push((scope, first_span..self.spans.len()));
        Ok(())
    }
}
