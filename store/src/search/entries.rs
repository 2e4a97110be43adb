//! `entries_has_any(list, 'entry', ...)`: true where a list of encoded attribute
//! entries holds any of the given entries. The tag filter of trace search.
//!
//! A scalar function of the store's own rather than DataFusion's nested-array
//! functions: it is all the tag filter needs, it compares each stored entry once
//! against a handful of candidates without building a candidate array per batch, and it
//! keeps `datafusion-functions-nested` (over a minute of a cold release build) out of
//! the binary.

use std::sync::Arc;

use arrow::array::{Array, AsArray, BooleanArray, GenericListArray, OffsetSizeTrait};
use arrow::datatypes::DataType;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility, lit,
};

/// The function; see the module documentation.
#[derive(Debug, PartialEq, Eq, Hash)]
struct EntriesHasAny {
    signature: Signature,
}

/// `entries_has_any(list, candidates...)` as an expression.
pub fn entries_has_any(list: Expr, candidates: &[String]) -> Expr {
    let udf = ScalarUDF::new_from_impl(EntriesHasAny {
        signature: Signature::variadic_any(Volatility::Immutable),
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

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::common::Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(
        &self,
        args: ScalarFunctionArgs,
    ) -> datafusion::common::Result<ColumnarValue> {
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
            DataType::List(_) => has_any(list.as_list::<i32>(), &candidates)?,
            DataType::LargeList(_) => has_any(list.as_list::<i64>(), &candidates)?,
            other => return exec_err!("entries_has_any: expected a list, got {other}"),
        };
        Ok(ColumnarValue::Array(Arc::new(matched)))
    }
}

/// Per row: does the row's list hold any candidate? Null lists give null.
fn has_any<O: OffsetSizeTrait>(
    list: &GenericListArray<O>,
    candidates: &[String],
) -> datafusion::common::Result<BooleanArray> {
    let values = list.values();
    let is_candidate = |v: Option<&str>| v.is_some_and(|v| candidates.iter().any(|c| c == v));
    // One pass over the stored entries, then a look over each row's range.
    let hits: Vec<bool> = match values.data_type() {
        DataType::Utf8 => values.as_string::<i32>().iter().map(is_candidate).collect(),
        DataType::LargeUtf8 => values.as_string::<i64>().iter().map(is_candidate).collect(),
        DataType::Utf8View => values.as_string_view().iter().map(is_candidate).collect(),
        other => return exec_err!("entries_has_any: expected a list of strings, got {other}"),
    };
    let offsets = list.value_offsets();
    Ok((0..list.len())
        .map(|row| {
            if list.is_null(row) {
                return None;
            }
            let (start, end) = (offsets[row].as_usize(), offsets[row + 1].as_usize());
            Some(hits.get(start..end).is_some_and(|r| r.iter().any(|h| *h)))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{ListBuilder, StringBuilder};
    use arrow::datatypes::Field;

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

    #[test]
    fn through_a_query() {
        let rows = list(&[Some(&["k\u{1f}sv"]), Some(&["k\u{1f}sw"])]);
        let field = Field::new("attributes", rows.data_type().clone(), true);
        let batch = arrow::array::RecordBatch::try_new(
            Arc::new(arrow::datatypes::Schema::new(vec![field])),
            vec![Arc::new(rows)],
        )
        .unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let n = runtime.block_on(async {
            let ctx = datafusion::prelude::SessionContext::new();
            let df = ctx.read_batch(batch).unwrap();
            let df = df
                .filter(entries_has_any(
                    datafusion::logical_expr::col("attributes"),
                    &["k\u{1f}sw".to_string()],
                ))
                .unwrap();
            df.count().await.unwrap()
        });
        assert_eq!(n, 1);
    }
}
