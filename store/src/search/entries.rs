//! `entries_has_any(list, 'entry', ...)`: true where a list of encoded attribute
//! entries holds any of the given entries. The tag filter of trace search.
//!
//! A scalar function of the store's own rather than DataFusion's nested-array
//! functions: it is all the tag filter needs, it compares each stored entry once
//! against a handful of candidates without building a candidate array per batch, and it
//! keeps `datafusion-functions-nested` (over a minute of a cold release build) out of
//! the binary.

use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use arrow::array::{Array, ArrayRef, AsArray, BooleanArray, GenericListArray, OffsetSizeTrait};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type};
use datafusion_common::{ScalarValue, exec_err};
use datafusion_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

use crate::schema::{PACKED_MARK, PackedEntries};

/// The function; see the module documentation.
///
/// Blocks hand the attribute lists out as dictionary keys (see
/// [`crate::schema::stored_schema`]), and every batch decoded from one row group shares
/// that row group's dictionary. The function remembers, for the last few dictionaries
/// it saw, which of their values are candidates: each distinct entry of a row group is
/// compared once, and each stored entry costs one lookup by key.
#[derive(Debug)]
struct EntriesHasAny {
    signature: Signature,
    /// The list holds packed entries ([`PackedEntries`]): the resource column.
    packed: bool,
    dictionaries: Mutex<Vec<RememberedDictionary>>,
}

/// A dictionary and which of its values are candidates.
#[derive(Debug)]
struct RememberedDictionary {
    /// Held, so that its address is not reused while it is remembered.
    dictionary: ArrayRef,
    candidates: Vec<String>,
    hits: Arc<DictionaryHits>,
}

/// Which values of one dictionary are candidates.
#[derive(Debug)]
struct DictionaryHits {
    hits: Vec<bool>,
    any: bool,
}

/// Dictionaries remembered per function (one per column of a query): a query runs on
/// two partitions, each reading one row group at a time.
const REMEMBERED_DICTIONARIES: usize = 4;

impl PartialEq for EntriesHasAny {
    fn eq(&self, other: &Self) -> bool {
        self.signature == other.signature && self.packed == other.packed
    }
}

impl Eq for EntriesHasAny {}

impl Hash for EntriesHasAny {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.signature.hash(state);
        self.packed.hash(state);
    }
}

/// `entries_has_any(list, candidates...)` as an expression; `packed` for a list of
/// packed entries (the resource column).
pub fn entries_has_any(list: Expr, candidates: &[String], packed: bool) -> Expr {
    let udf = ScalarUDF::new_from_impl(EntriesHasAny {
        signature: Signature::variadic_any(Volatility::Immutable),
        packed,
        dictionaries: Mutex::new(Vec::new()),
    });
    let mut args = Vec::with_capacity(candidates.len() + 1);
    args.push(list);
    args.extend(candidates.iter().map(|c| lit(c.clone())));
    udf.call(args)
}

impl ScalarUDFImpl for EntriesHasAny {
    fn name(&self) -> &str {
        "entries_has_any"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion_common::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion_common::Result<ColumnarValue> {
        let mut values = args.args.into_iter();
        let Some(list) = values.next() else {
            return exec_err!("entries_has_any needs a list argument");
        };
        let mut candidates = Vec::new();
        for value in values {
            match value {
                ColumnarValue::Scalar(
                    ScalarValue::Utf8(Some(s))
                    | ScalarValue::LargeUtf8(Some(s))
                    | ScalarValue::Utf8View(Some(s)),
                ) => candidates.push(s),
                other => {
                    return exec_err!(
                        "entries_has_any: candidates must be string literals, got {}",
                        other.data_type()
                    );
                }
            }
        }
        let list = list.into_array(args.number_rows)?;
        let matched = match list.data_type() {
            DataType::List(_) => self.has_any(list.as_list::<i32>(), &candidates)?,
            DataType::LargeList(_) => self.has_any(list.as_list::<i64>(), &candidates)?,
            other => return exec_err!("entries_has_any: expected a list, got {other}"),
        };
        Ok(ColumnarValue::Array(Arc::new(matched)))
    }
}

impl EntriesHasAny {
    /// Per row: does the row's list hold any candidate? Null lists give null.
    fn has_any<O: OffsetSizeTrait>(
        &self,
        list: &GenericListArray<O>,
        candidates: &[String],
    ) -> datafusion_common::Result<BooleanArray> {
        // One pass over the stored entries, then a look over each row's range.
        let hits = self.entry_hits(list.values(), candidates)?;
        let offsets = list.value_offsets();
        Ok((0..list.len())
            .map(|row| {
                if list.is_null(row) {
                    return None;
                }
                let Some(hits) = &hits else {
                    return Some(false);
                };
                let (start, end) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
                Some(hits.get(start..end).is_some_and(|r| r.iter().any(|h| *h)))
            })
            .collect())
    }

    /// Per stored entry: is it a candidate? `None` when none is.
    fn entry_hits(
        &self,
        values: &ArrayRef,
        candidates: &[String],
    ) -> datafusion_common::Result<Option<Vec<bool>>> {
        let DataType::Dictionary(key_type, _) = values.data_type() else {
            let hits = string_hits(values, candidates, self.packed)?;
            return Ok(hits.contains(&true).then_some(hits));
        };
        if **key_type != DataType::Int32 {
            let plain = cast(values, &DataType::Utf8)?;
            let hits = string_hits(&plain, candidates, self.packed)?;
            return Ok(hits.contains(&true).then_some(hits));
        }
        let dictionary = values.as_dictionary::<Int32Type>();
        let known = self.dictionary_hits(dictionary.values(), candidates)?;
        if !known.any {
            return Ok(None);
        }
        let hit = |key: i32| {
            usize::try_from(key)
                .ok()
                .and_then(|k| known.hits.get(k).copied())
                .unwrap_or(false)
        };
        let keys = dictionary.keys();
        Ok(Some(if keys.null_count() == 0 {
            keys.values().iter().map(|k| hit(*k)).collect()
        } else {
            keys.iter().map(|k| k.is_some_and(hit)).collect()
        }))
    }

    /// Which values of `dictionary` are candidates, remembered for the batches that
    /// share it.
    fn dictionary_hits(
        &self,
        dictionary: &ArrayRef,
        candidates: &[String],
    ) -> datafusion_common::Result<Arc<DictionaryHits>> {
        let mut remembered = self
            .dictionaries
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(r) = remembered
            .iter()
            .find(|r| Arc::ptr_eq(&r.dictionary, dictionary) && r.candidates == candidates)
        {
            return Ok(r.hits.clone());
        }
        let hits = string_hits(dictionary, candidates, self.packed)?;
        let known = Arc::new(DictionaryHits {
            any: hits.contains(&true),
            hits,
        });
        if remembered.len() >= REMEMBERED_DICTIONARIES {
            remembered.remove(0);
        }
        remembered.push(RememberedDictionary {
            dictionary: dictionary.clone(),
            candidates: candidates.to_vec(),
            hits: known.clone(),
        });
        Ok(known)
    }
}

/// Per string: is it a candidate, or (`packed`) a packing of entries that holds one?
fn string_hits(
    values: &ArrayRef,
    candidates: &[String],
    packed: bool,
) -> datafusion_common::Result<Vec<bool>> {
    // The rows of one resource in a head batch repeat its packing: unpacked once.
    let mut last_packing: Option<(String, bool)> = None;
    let is_candidate = |v: Option<&str>| {
        let Some(v) = v else { return false };
        if candidates.iter().any(|c| c == v) {
            return true;
        }
        if !packed || !v.starts_with(PACKED_MARK) {
            return false;
        }
        if let Some((seen, hit)) = &last_packing
            && seen == v
        {
            return *hit;
        }
        let hit = PackedEntries::of(v).any(|e| candidates.iter().any(|c| c == e));
        last_packing = Some((v.to_string(), hit));
        hit
    };
    Ok(match values.data_type() {
        DataType::Utf8 => values.as_string::<i32>().iter().map(is_candidate).collect(),
        DataType::LargeUtf8 => values.as_string::<i64>().iter().map(is_candidate).collect(),
        DataType::Utf8View => values.as_string_view().iter().map(is_candidate).collect(),
        other => return exec_err!("entries_has_any: expected a list of strings, got {other}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ListBuilder, StringBuilder};
    use arrow::datatypes::Field;

    fn function() -> EntriesHasAny {
        EntriesHasAny {
            signature: Signature::variadic_any(Volatility::Immutable),
            packed: false,
            dictionaries: Mutex::new(Vec::new()),
        }
    }

    fn has_any(
        list: &GenericListArray<i32>,
        candidates: &[String],
    ) -> datafusion_common::Result<BooleanArray> {
        function().has_any(list, candidates)
    }

    fn list(rows: &[Option<&[&str]>]) -> GenericListArray<i32> {
        let mut builder = ListBuilder::new(StringBuilder::new());
        for row in rows {
            match row {
                Some(entries) => {
                    for e in *entries {
                        builder.values().append_value(e);
                    }
                    builder.append(true);
                }
                None => builder.append(false),
            }
        }
        builder.finish()
    }

    #[test]
    fn matches_any_candidate_per_row() {
        let rows = list(&[
            Some(&["a", "b"]),
            Some(&[]),
            None,
            Some(&["c"]),
            Some(&["x", "b"]),
        ]);
        let got = has_any(&rows, &["b".into(), "c".into()]).unwrap();
        let got: Vec<Option<bool>> = got.iter().collect();
        assert_eq!(
            got,
            vec![Some(true), Some(false), None, Some(true), Some(true)]
        );
        let none = has_any(&rows, &["z".into()]).unwrap();
        assert_eq!(none.true_count(), 0);
    }

    /// Packed resources (runs of one repeated, as in a head batch) match by their
    /// entries, each row for its own packing; other lists are never unpacked.
    #[test]
    fn packed_rows_match_by_their_own_entries() {
        let pack = |entries: &[&str]| {
            let entries: Vec<String> = entries.iter().map(|e| e.to_string()).collect();
            crate::schema::pack_entries(&entries).unwrap()
        };
        let (a, b) = (pack(&["host\0sh1", "pod\0sp1"]), pack(&["host\0sh2", "pod\0sp1"]));
        let rows = list(&[
            Some(&[a.as_str()]),
            Some(&[a.as_str()]),
            Some(&[b.as_str()]),
            Some(&[b.as_str()]),
            Some(&[a.as_str()]),
            Some(&[]),
        ]);
        let packed = EntriesHasAny {
            packed: true,
            ..function()
        };
        let got = |f: &EntriesHasAny, candidate: &str| -> Vec<bool> {
            let hits = f.has_any(&rows, &[candidate.to_string()]).unwrap();
            hits.iter().map(|h| h == Some(true)).collect()
        };
        assert_eq!(got(&packed, "host\0sh2"), [false, false, true, true, false, false]);
        assert_eq!(got(&packed, "pod\0sp1"), [true, true, true, true, true, false]);
        assert_eq!(got(&function(), "host\0sh2"), [false; 6]);
    }

    /// Lists of keys into `dictionary`, one list per row.
    fn dictionary_list(dictionary: &ArrayRef, rows: &[&[i32]]) -> GenericListArray<i32> {
        let keys: Vec<i32> = rows.iter().flat_map(|r| r.iter().copied()).collect();
        let values = arrow::array::DictionaryArray::<Int32Type>::try_new(
            arrow::array::Int32Array::from(keys),
            dictionary.clone(),
        )
        .unwrap();
        let offsets = arrow::buffer::OffsetBuffer::from_lengths(rows.iter().map(|r| r.len()));
        let field = Arc::new(Field::new_list_field(values.data_type().clone(), false));
        GenericListArray::new(field, offsets, Arc::new(values), None)
    }

    #[test]
    fn dictionary_keys_match_like_strings_and_each_dictionary_is_compared_once() {
        let dictionary: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["a", "b", "c"]));
        let f = function();
        let first = dictionary_list(&dictionary, &[&[0, 1], &[], &[2], &[0]]);
        let got: Vec<Option<bool>> = f.has_any(&first, &["b".into()]).unwrap().iter().collect();
        assert_eq!(got, vec![Some(true), Some(false), Some(false), Some(false)]);
        // A second batch over the same dictionary reuses what the first learnt.
        let second = dictionary_list(&dictionary, &[&[2, 2], &[1]]);
        let got: Vec<Option<bool>> = f.has_any(&second, &["b".into()]).unwrap().iter().collect();
        assert_eq!(got, vec![Some(false), Some(true)]);
        assert_eq!(f.dictionaries.lock().unwrap().len(), 1);
        // A candidate in no dictionary entry: every row false, none null.
        let got = f.has_any(&second, &["z".into()]);
        assert_eq!(got.unwrap().false_count(), 2);
        assert_eq!(f.dictionaries.lock().unwrap().len(), 2);
        // Dictionaries beyond the bound push the oldest out.
        for _ in 0..REMEMBERED_DICTIONARIES + 2 {
            let other: ArrayRef = Arc::new(arrow::array::StringArray::from(vec!["b"]));
            let rows = dictionary_list(&other, &[&[0]]);
            assert_eq!(f.has_any(&rows, &["b".into()]).unwrap().true_count(), 1);
        }
        assert_eq!(
            f.dictionaries.lock().unwrap().len(),
            REMEMBERED_DICTIONARIES
        );
    }

    #[test]
    fn through_a_query() {
        let rows = list(&[Some(&["k\u{1f}sv"]), Some(&["k\u{1f}sw"])]);
        let field = Field::new("attributes", rows.data_type().clone(), true);
        let batch = arrow::array::RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![field])),
            vec![Arc::new(rows)],
        )
        .unwrap();
        let schema = batch.schema();
        let filter = entries_has_any(
            datafusion_expr::col("attributes"),
            &["k\u{1f}sw".to_string()],
            false,
        );
        let predicate = super::super::plan::physical(&filter, &schema).unwrap();
        let scan = datafusion_datasource::memory::MemorySourceConfig::try_new_exec(
            &[vec![batch]],
            schema,
            None,
        )
        .unwrap();
        let plan = Arc::new(
            datafusion_physical_plan::filter::FilterExec::try_new(predicate, scan).unwrap(),
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let task = Arc::new(datafusion_execution::TaskContext::default());
        let batches = runtime
            .block_on(datafusion_physical_plan::collect(plan, task))
            .unwrap();
        let n: usize = batches.iter().map(|b| b.num_rows()).sum();
        assert_eq!(n, 1);
    }
}
