//! What a JSON body will take once parsed, counted over its bytes before it is: the
//! in-flight budget is charged with it, and bodies mostly made of empty objects are
//! refused.

/// Fewest body bytes per JSON object a request may average. The smallest object of
/// either format that means anything (an attribute `{"key":"a","value":{"intValue":1}}`,
/// a Zipkin endpoint `{"serviceName":"a"}`) takes well over twice this; a body of
/// empty objects (`[{},{},…]`: three bytes each) would take thirty to a hundred times
/// its size once parsed.
pub const MIN_BYTES_PER_OBJECT: usize = 8;

/// Objects allowed in any body, however short.
const ALWAYS_ALLOWED_OBJECTS: usize = 4096;

/// Counts the objects and arrays of a JSON body (`{` and `[` outside strings) before it
/// is parsed, and refuses one of more than one per [`MIN_BYTES_PER_OBJECT`] bytes:
/// parsing it would take many times its size in memory. Malformed JSON is left to the
/// parser.
pub fn check_json_objects(body: &[u8]) -> crate::Result<()> {
    let objects = json_shape(body).containers;
    let allowed = (body.len() / MIN_BYTES_PER_OBJECT).max(ALWAYS_ALLOWED_OBJECTS);
    if objects > allowed {
        return Err(crate::Error::BadRequest(format!(
            "the body's {} bytes hold {objects} JSON objects and arrays, more than one \
             per {MIN_BYTES_PER_OBJECT} bytes: empty or near-empty objects are refused",
            body.len()
        )));
    }
    Ok(())
}

/// What parsing a JSON object or array into a `serde_json::Value` tree takes in memory,
/// whatever its size in the body: a map's node holds room for eleven entries (measured:
/// 780–790 bytes per object for OTLP/JSON spans and for bodies of `{"a":1}` alike).
pub const PARSED_BYTES_PER_OBJECT: usize = 768;

/// What a number, string, `true` or `null` directly in an array takes once parsed: its
/// `Value` slot in the array's vector, which grows by doubling, and the slot of the
/// tree rebuilt from it (measured: 73 bytes per `0` of a body of zeros).
pub const PARSED_BYTES_PER_ARRAY_SCALAR: usize = 80;

/// Entries an object holds within [`PARSED_BYTES_PER_OBJECT`].
const ENTRIES_PER_OBJECT: usize = 11;

/// What an object's entries past [`ENTRIES_PER_OBJECT`] take each once parsed: the
/// key's string, the value's slot and a share of the map's nodes, in the tree and in
/// the typed structs read from it (a Zipkin span of a million tags: about 200 bytes
/// per tag).
pub const PARSED_BYTES_PER_EXTRA_ENTRY: usize = 192;

/// Nesting levels [`json_parse_bytes`] follows: the parsers refuse bodies nested deeper
/// than 128; past this depth nothing more is counted than the objects.
const COUNTED_DEPTH: usize = 256;

/// About what parsing `body` will take in memory beyond its bytes:
/// [`PARSED_BYTES_PER_OBJECT`] per object or array, [`PARSED_BYTES_PER_ARRAY_SCALAR`]
/// per scalar element of an array and [`PARSED_BYTES_PER_EXTRA_ENTRY`] per entry of
/// an object past its first eleven. About twenty times the body for ordinary
/// OTLP/JSON, a hundred for one of tiny objects, forty for one long array of numbers.
pub fn json_parse_bytes(body: &[u8]) -> usize {
    let shape = json_shape(body);
    shape
        .containers
        .saturating_mul(PARSED_BYTES_PER_OBJECT)
        .saturating_add(shape.array_scalars.saturating_mul(PARSED_BYTES_PER_ARRAY_SCALAR))
        .saturating_add(shape.extra_entries.saturating_mul(PARSED_BYTES_PER_EXTRA_ENTRY))
}

/// What a JSON body holds, counted outside its strings.
#[derive(Debug, Default, PartialEq, Eq)]
struct JsonShape {
    /// Objects and arrays.
    containers: usize,
    /// Numbers, strings, `true`, `false` and `null` directly in an array.
    array_scalars: usize,
    /// Entries of objects past each one's first [`ENTRIES_PER_OBJECT`].
    extra_entries: usize,
}

/// An open object or array: its elements (separators seen plus one, once it has one)
/// and how many of them are objects or arrays.
struct Open {
    array: bool,
    elements: usize,
    containers: usize,
}

fn json_shape(body: &[u8]) -> JsonShape {
    let mut shape = JsonShape::default();
    let mut open: Vec<Open> = Vec::new();
    // Levels past COUNTED_DEPTH, opened and not yet closed.
    let mut uncounted = 0usize;
    let (mut in_string, mut escaped) = (false, false);
    for &byte in body {
        if in_string {
            if escaped {
                escaped = false;
            } else if byte == b'\\' {
                escaped = true;
            } else if byte == b'"' {
                in_string = false;
            }
            continue;
        }
        match byte {
            b'"' => {
                in_string = true;
                element_starts(&mut open);
            }
            b'{' | b'[' => {
                shape.containers += 1;
                if uncounted > 0 || open.len() >= COUNTED_DEPTH {
                    uncounted += 1;
                    continue;
                }
                element_starts(&mut open);
                if let Some(parent) = open.last_mut() {
                    parent.containers += 1;
                }
                open.push(Open {
                    array: byte == b'[',
                    elements: 0,
                    containers: 0,
                });
            }
            b'}' | b']' => {
                if uncounted > 0 {
                    uncounted -= 1;
                } else if let Some(closed) = open.pop() {
                    if closed.array {
                        shape.array_scalars += closed.elements.saturating_sub(closed.containers);
                    } else {
                        shape.extra_entries += closed.elements.saturating_sub(ENTRIES_PER_OBJECT);
                    }
                }
            }
            b',' => {
                if uncounted == 0
                    && let Some(top) = open.last_mut()
                {
                    top.elements += 1;
                }
            }
            b' ' | b'\t' | b'\n' | b'\r' | b':' => {}
            _ => element_starts(&mut open),
        }
    }
    shape
}

/// Something starts in the innermost open container: its first element, when it has
/// none yet (each later one follows a separator, which counted it). In an object the
/// values after the colons count nothing: their entries were counted by their keys.
fn element_starts(open: &mut [Open]) {
    if let Some(top) = open.last_mut()
        && top.elements == 0
    {
        top.elements = 1;
    }
}


#[cfg(test)]
mod tests {
    use super::*;

    fn shape(body: &str) -> JsonShape {
        json_shape(body.as_bytes())
    }

    #[test]
    fn scalars_in_arrays_and_entries_past_eleven_are_counted() {
        assert_eq!(shape("[]"), JsonShape { containers: 1, ..JsonShape::default() });
        assert_eq!(
            shape(r#"{"x": [0, 0, 0], "y": ["a,]", true, null]}"#),
            JsonShape { containers: 3, array_scalars: 6, extra_entries: 0 }
        );
        let wide = format!(
            "{{{}}}",
            (0..20).map(|i| format!(r#""k{i}": "v""#)).collect::<Vec<_>>().join(",")
        );
        assert_eq!(shape(&wide), JsonShape { containers: 1, array_scalars: 0, extra_entries: 9 });
        // Objects in arrays are counted as objects, not as scalars.
        assert_eq!(
            shape(r#"[{"a": 1}, {"b": [1, 2]}, []]"#),
            JsonShape { containers: 5, array_scalars: 2, extra_entries: 0 }
        );
    }

    #[test]
    fn ordinary_otlp_json_costs_its_objects_alone() {
        let attribute = r#"{"key": "http.method", "value": {"stringValue": "GET"}}"#;
        let span = format!(
            r#"{{"traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b174",
              "name": "GET /", "kind": 2, "startTimeUnixNano": "1", "endTimeUnixNano": "2",
              "attributes": [{}], "status": {{}}}}"#,
            [attribute; 11].join(",")
        );
        let body = format!(
            r#"{{"resourceSpans": [{{"resource": {{"attributes": [{attribute}]}},
              "scopeSpans": [{{"scope": {{"name": "s"}}, "spans": [{}]}}]}}]}}"#,
            vec![span; 50].join(",")
        );
        let shape = json_shape(body.as_bytes());
        assert_eq!((shape.array_scalars, shape.extra_entries), (0, 0));
        assert_eq!(json_parse_bytes(body.as_bytes()), shape.containers * PARSED_BYTES_PER_OBJECT);
    }

    #[test]
    fn a_long_array_of_numbers_costs_forty_times_its_bytes() {
        let body = format!(r#"{{"resourceSpans": [], "x": [{}]}}"#, vec!["0"; 100_000].join(","));
        let cost = json_parse_bytes(body.as_bytes());
        assert!(cost >= 100_000 * PARSED_BYTES_PER_ARRAY_SCALAR, "{cost}");
        assert!(cost >= 39 * body.len(), "{cost} for {} bytes", body.len());
    }

    #[test]
    fn nesting_past_the_counted_depth_counts_its_objects_alone() {
        let deep = format!("{}{}", "[".repeat(1000), "]".repeat(1000));
        assert_eq!(shape(&deep), JsonShape { containers: 1000, array_scalars: 0, extra_entries: 0 });
        let unbalanced = "]]]}}[0,1";
        assert_eq!(shape(unbalanced).containers, 1);
    }
}
