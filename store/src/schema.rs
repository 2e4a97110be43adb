//! The span table: one row per span, the columns every read needs.
//!
//! Attributes are stored as lists of strings `key \0 <type> <value>` where `<type>` is
//! one letter (`s` string, `b` bool, `i` int64, `d` double, `x` bytes as hex, `j` array
//! or map as OTLP JSON). The text after the type letter is Jaeger's `AsString` of the
//! value, so a tag search `k=v` is an exact list-membership test on a handful of
//! candidate strings, and Parquet dictionary-encodes the lists well. Events and links,
//! rare and only read when a whole trace is fetched, live in one binary column
//! (`extras`, an OTLP `Span` holding just those two fields).
//!
//! A resource's entries are the same on every span it sent, so its list holds them
//! packed into one string ([`pack_entries`]): a flush or merge interns one value per row
//! into the column's dictionary instead of one per entry (a dozen for a mesh workload),
//! and a tag search unpacks each distinct resource of a row group once. Blocks written
//! before hold the entries one by one; readers of the resource column take both
//! ([`PackedEntries`]). The other lists hold entries one by one.

use std::sync::{Arc, LazyLock};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

/// Column names, so that readers and writers cannot drift apart.
pub mod col {
    /// 16-byte trace id.
    pub const TRACE_ID: &str = "trace_id";
    /// 8-byte span id.
    pub const SPAN_ID: &str = "span_id";
    /// 8-byte parent span id, null for roots.
    pub const PARENT_SPAN_ID: &str = "parent_span_id";
    /// `service.name` of the resource (Jaeger's rule for missing names applied).
    pub const SERVICE: &str = "service";
    /// Span name (Jaeger operation).
    pub const NAME: &str = "name";
    /// OTLP span kind number.
    pub const KIND: &str = "kind";
    /// Start, Unix nanoseconds.
    pub const START: &str = "start_unix_nano";
    /// End minus start, nanoseconds (0 when end < start).
    pub const DURATION: &str = "duration_nano";
    /// OTLP status code number.
    pub const STATUS_CODE: &str = "status_code";
    /// Status message.
    pub const STATUS_MESSAGE: &str = "status_message";
    /// W3C tracestate.
    pub const TRACE_STATE: &str = "trace_state";
    /// OTLP span flags.
    pub const FLAGS: &str = "flags";
    /// Instrumentation scope name.
    pub const SCOPE_NAME: &str = "scope_name";
    /// Instrumentation scope version.
    pub const SCOPE_VERSION: &str = "scope_version";
    /// Span attributes, encoded entries.
    pub const ATTRIBUTES: &str = "attributes";
    /// Resource attributes, encoded entries (service.name included).
    pub const RESOURCE_ATTRIBUTES: &str = "resource_attributes";
    /// Event names and attributes, encoded entries, for tag search only.
    pub const EVENT_ATTRIBUTES: &str = "event_attributes";
    /// Events and links as an encoded OTLP `Span`, null when there are none.
    pub const EXTRAS: &str = "extras";
}

/// Starts a packed list of entries: `\u{1}` then, per entry, its length in bytes in
/// decimal, `:`, and the entry. Only the resource column holds packings; there, a value
/// of a block written before that starts with it (an attribute key starting with
/// U+0001) is taken for a packing only if it is a well-formed one.
pub const PACKED_MARK: char = '\u{1}';

/// `entries` as one packed string; `None` when there are none (an empty list).
pub fn pack_entries(entries: &[String]) -> Option<String> {
    let mut packed = String::new();
    for entry in entries {
        push_packed(&mut packed, entry);
    }
    (!packed.is_empty()).then_some(packed)
}

/// Appends `entry` to the packing `packed` (empty: none yet) as [`pack_entries`] does.
pub fn push_packed(packed: &mut String, entry: &str) {
    if packed.is_empty() {
        packed.push(PACKED_MARK);
    }
    packed.push_str(itoa::Buffer::new().format(entry.len()));
    packed.push(':');
    packed.push_str(entry);
}

/// The entries a stored list value stands for: the value itself, or the entries
/// packed in it ([`pack_entries`]). A value that starts with [`PACKED_MARK`] but is not
/// a well-formed packing (written before entries were packed) stands for itself.
#[derive(Debug, Clone)]
pub struct PackedEntries<'a> {
    rest: &'a str,
    whole: Option<&'a str>,
}

impl<'a> PackedEntries<'a> {
    /// The entries of `value`.
    pub fn of(value: &'a str) -> Self {
        match value.strip_prefix(PACKED_MARK) {
            Some(rest) if well_formed(rest) => Self { rest, whole: None },
            _ => Self {
                rest: "",
                whole: Some(value),
            },
        }
    }
}

/// The next entry of a packing and what follows it.
fn next_packed(rest: &str) -> Option<(&str, &str)> {
    let (len, tail) = rest.split_once(':')?;
    if len.is_empty() || len.len() > 10 || !len.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let len: usize = len.parse().ok()?;
    Some((tail.get(..len)?, tail.get(len..)?))
}

fn well_formed(mut rest: &str) -> bool {
    while !rest.is_empty() {
        match next_packed(rest) {
            Some((_, tail)) => rest = tail,
            None => return false,
        }
    }
    true
}

impl<'a> Iterator for PackedEntries<'a> {
    type Item = &'a str;

    fn next(&mut self) -> Option<&'a str> {
        if let Some(whole) = self.whole.take() {
            return Some(whole);
        }
        let (entry, tail) = next_packed(self.rest)?;
        self.rest = tail;
        Some(entry)
    }
}

/// Service name Jaeger shows for a resource without any attribute.
pub const NO_SERVICE_NAME: &str = "OTLPResourceNoServiceName";

fn string_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, false)))
}

static SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new(col::TRACE_ID, DataType::FixedSizeBinary(16), false),
        Field::new(col::SPAN_ID, DataType::FixedSizeBinary(8), false),
        Field::new(col::PARENT_SPAN_ID, DataType::FixedSizeBinary(8), true),
        Field::new(col::SERVICE, DataType::Utf8, false),
        Field::new(col::NAME, DataType::Utf8, false),
        Field::new(col::KIND, DataType::Int8, false),
        Field::new(col::START, DataType::Int64, false),
        Field::new(col::DURATION, DataType::Int64, false),
        Field::new(col::STATUS_CODE, DataType::Int8, false),
        Field::new(col::STATUS_MESSAGE, DataType::Utf8, false),
        Field::new(col::TRACE_STATE, DataType::Utf8, false),
        Field::new(col::FLAGS, DataType::UInt32, false),
        Field::new(col::SCOPE_NAME, DataType::Utf8, false),
        Field::new(col::SCOPE_VERSION, DataType::Utf8, false),
        Field::new(col::ATTRIBUTES, string_list(), false),
        Field::new(col::RESOURCE_ATTRIBUTES, string_list(), false),
        Field::new(col::EVENT_ATTRIBUTES, string_list(), true),
        Field::new(col::EXTRAS, DataType::Binary, true),
    ]))
});

/// The Arrow schema of the span table.
pub fn span_schema() -> SchemaRef {
    SCHEMA.clone()
}

/// The columns whose entries a tag search compares: the attribute lists.
pub const ENTRY_COLUMNS: [&str; 3] = [
    col::ATTRIBUTES,
    col::RESOURCE_ATTRIBUTES,
    col::EVENT_ATTRIBUTES,
];

static STORED_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let entries = DataType::List(Arc::new(Field::new_list_field(
        DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8)),
        false,
    )));
    retyped(&SCHEMA, &ENTRY_COLUMNS, &entries)
});

/// `schema` with the fields named in `columns` of type `data_type`.
fn retyped(schema: &Schema, columns: &[&str], data_type: &DataType) -> SchemaRef {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            if columns.contains(&f.name().as_str()) {
                f.as_ref().clone().with_data_type(data_type.clone())
            } else {
                f.as_ref().clone()
            }
        })
        .collect();
    Arc::new(Schema::new(fields))
}

/// The span table as blocks declare it to readers (the Arrow schema embedded in each
/// Parquet file): the attribute lists as lists of dictionary keys. A Parquet reader
/// then hands out each row group's dictionary page once, shared by every batch, and
/// per entry only its key, instead of copying every entry's bytes; a tag search
/// compares each distinct entry of a row group once. Compaction and trace fetches ask
/// for [`fetch_schema`] instead.
pub fn stored_schema() -> SchemaRef {
    STORED_SCHEMA.clone()
}

/// The columns a search compares as string views: a Parquet reader hands out each
/// value of a dictionary-encoded page as a 16-byte view into the row group's
/// dictionary instead of copying its bytes, and a comparison with a short name is a
/// comparison of the views.
const VIEW_COLUMNS: [&str; 2] = [col::SERVICE, col::NAME];

static SEARCH_SCHEMA: LazyLock<SchemaRef> =
    LazyLock::new(|| retyped(&STORED_SCHEMA, &VIEW_COLUMNS, &DataType::Utf8View));

/// The span table as searches read blocks: [`stored_schema`] with `service` and `name`
/// as string views (see `VIEW_COLUMNS`).
pub fn search_schema() -> SchemaRef {
    SEARCH_SCHEMA.clone()
}

static FETCH_SCHEMA: LazyLock<SchemaRef> = LazyLock::new(|| {
    let entries = DataType::List(Arc::new(Field::new_list_field(DataType::Utf8View, false)));
    retyped(&SCHEMA, &ENTRY_COLUMNS, &entries)
});

/// The span table as trace fetches and merges read blocks: the attribute lists as
/// lists of string views. A fetch reads a few rows of a row group but its whole dictionary page (about
/// 2 MiB for the benchmark's 97,000 distinct entries): as views, each dictionary
/// entry is a 16-byte view into the page instead of a copy of its bytes. Fetching one
/// trace from a 10M-span store took 3.0-3.5 ms against 3.9-4.0 (README, Performance).
pub fn fetch_schema() -> SchemaRef {
    FETCH_SCHEMA.clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unpacked(value: &str) -> Vec<&str> {
        PackedEntries::of(value).collect()
    }

    #[test]
    fn packed_entries_come_back_whole_whatever_they_hold() {
        let entries: Vec<String> = [
            "service.name\0sfrontend",
            "",
            "k\0s12:34:",
            "\u{1}\0s\u{1}5:x",
            "naïve\0s日本",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let packed = pack_entries(&entries).expect("packed");
        assert!(packed.starts_with(PACKED_MARK));
        assert_eq!(unpacked(&packed), entries);
        assert_eq!(pack_entries(&[]), None);
    }

    #[test]
    fn a_plain_entry_stands_for_itself_even_if_it_looks_like_a_packing() {
        assert_eq!(unpacked("host.name\0sh1"), ["host.name\0sh1"]);
        // Blocks written before packing may hold such entries; only a well-formed
        // packing is unpacked.
        for value in ["\u{1}", "\u{1}3:ab", "\u{1}x:abc", "\u{1}2:ab3", "\u{1}1:\u{e9}"] {
            let expected: Vec<&str> = if value == "\u{1}" { vec![] } else { vec![value] };
            assert_eq!(unpacked(value), expected, "{value:?}");
        }
    }
}
