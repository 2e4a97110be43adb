//! Reading one policy object field by field, so that every unknown key and every value
//! of the wrong type is reported (with its path), and the fields that did read still
//! make a spec that validation can check.
//!
//! The field lists below are the serde names of [`QuotaPolicySpec`] and the types it
//! holds; a test reads a spec with every field set back from its own serialization.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::suggest::closest;

use super::super::{
    DescriptorEntrySpec, FieldError, QuotaMatch, QuotaOverrideSpec, QuotaPolicySpec, RateLimitSpec,
    WorkloadMatch,
};

const POLICY_FIELDS: &[&str] = &[
    "name",
    "description",
    "match",
    "dimensions",
    "maxAmount",
    "validDuration",
    "algorithm",
    "bucketDuration",
    "burst",
    "overrides",
    "shadow",
    "unlimited",
    "rateLimit",
];
const MATCH_FIELDS: &[&str] = &["source", "destination", "method", "pathPrefix", "headers"];
const WORKLOAD_FIELDS: &[&str] = &["service", "workload", "version", "namespace"];
const OVERRIDE_FIELDS: &[&str] = &["dimensions", "maxAmount", "validDuration"];
const RATE_LIMIT_FIELDS: &[&str] = &["domain", "descriptors", "replaces", "name"];
const DESCRIPTOR_FIELDS: &[&str] = &["key", "value", "shareThreshold"];

const A_STRING: &str = "a string";
const A_DURATION: &str = "a duration such as \"1s\" or \"500ms\"";
const AN_AMOUNT: &str = "a whole number ≥ 0";

/// Validation problems that only follow from another field's value: when that field
/// could not be read, validating against its default would report them wrongly.
const DEPENDS_ON: &[(&str, &[&str])] = &[
    ("algorithm", &["bucketDuration", "burst"]),
    ("unlimited", &["maxAmount", "validDuration", "shadow"]),
];

/// What reading a policy found: every problem, and the paths of the fields that could
/// not be read (their problems are in `errors`).
#[derive(Debug, Default)]
pub(super) struct Reading {
    /// Unknown keys, values of the wrong type, required fields left out.
    pub errors: Vec<FieldError>,
    unread: Vec<String>,
}

impl Reading {
    /// Whether a validation problem at `field` concerns a field that could not be read
    /// (or one that depends on it): the reading problem already says what is wrong.
    pub fn hides(&self, field: &str) -> bool {
        self.unread.iter().any(|unread| {
            is_at_or_under(field, unread)
                || DEPENDS_ON
                    .iter()
                    .filter(|(on, _)| on == unread)
                    .any(|(_, dependents)| dependents.iter().any(|d| is_at_or_under(field, d)))
        })
    }

    fn problem(&mut self, field: &str, message: impl Into<String>) {
        self.unread.push(field.to_owned());
        self.errors.push(FieldError {
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// The object at `path`, after reporting its unknown keys; `None` (and a problem)
    /// when it is not an object.
    fn object<'v>(
        &mut self,
        value: &'v Value,
        path: &str,
        known: &[&str],
    ) -> Option<&'v Map<String, Value>> {
        let Value::Object(map) = value else {
            let message = format!(
                "must be an object with the fields {}, not {}",
                known.join(", "),
                describe(value)
            );
            self.problem(path, message);
            return None;
        };
        for key in map.keys().filter(|key| !known.contains(&key.as_str())) {
            let message = match closest(key, known.iter().copied()) {
                Some(suggestion) => format!("unknown field `{key}`; did you mean `{suggestion}`?"),
                None => format!(
                    "unknown field `{key}`; the fields here are {}",
                    known.join(", ")
                ),
            };
            self.problem(&child(path, key), message);
        }
        Some(map)
    }

    /// A string field; `None` when absent (or null) or not a string (a problem).
    fn string(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        what: &str,
    ) -> Option<String> {
        match given(map, key)? {
            Value::String(text) => Some(text.clone()),
            other => {
                let hint = if matches!(other, Value::Number(_) | Value::Bool(_)) {
                    " (put it in quotes)"
                } else {
                    ""
                };
                self.problem(
                    &child(path, key),
                    format!("must be {what}{hint}, not {}", describe(other)),
                );
                None
            }
        }
    }

    /// An amount (`u64`) field; `None` when absent (or null) or not one (a problem).
    fn amount(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<u64> {
        let value = given(map, key)?;
        let amount = value.as_u64().or_else(|| whole_float(value));
        if amount.is_none() {
            // JSON reads a whole number past 64 bits as a double: said in digits (up to
            // twenty of them).
            let message = match value.as_f64() {
                Some(v) if (LARGEST_FLOAT_AMOUNT..1e21).contains(&v) => {
                    format!("must be {AN_AMOUNT} up to {}, not {v:.0}", i64::MAX)
                }
                Some(v) if v >= LARGEST_FLOAT_AMOUNT => {
                    format!("must be {AN_AMOUNT} up to {}, not {v:e}", i64::MAX)
                }
                _ => format!("must be {AN_AMOUNT}, not {}", describe(value)),
            };
            self.problem(&child(path, key), message);
        }
        amount
    }

    /// A boolean field; `None` when absent (or null) or not `true`/`false` (a problem).
    fn flag(&mut self, map: &Map<String, Value>, path: &str, key: &str) -> Option<bool> {
        let value = given(map, key)?;
        let flag = value.as_bool();
        if flag.is_none() {
            self.problem(
                &child(path, key),
                format!("must be true or false, not {}", describe(value)),
            );
        }
        flag
    }

    /// A list field, empty when absent (or null) or not a list (a problem).
    fn list<'v>(&mut self, map: &'v Map<String, Value>, path: &str, key: &str) -> &'v [Value] {
        match given(map, key) {
            None => &[],
            Some(Value::Array(items)) => items,
            Some(other) => {
                self.problem(
                    &child(path, key),
                    format!("must be a list, not {}", describe(other)),
                );
                &[]
            }
        }
    }

    /// An object of string values (`name: value`), empty when absent (or null); each
    /// value that is not a string is a problem and left out.
    fn string_map(
        &mut self,
        map: &Map<String, Value>,
        path: &str,
        key: &str,
        what: &str,
    ) -> BTreeMap<String, String> {
        let path = child(path, key);
        let mut strings = BTreeMap::new();
        match given(map, key) {
            None => {}
            Some(Value::Object(entries)) => {
                for (name, value) in entries {
                    // A value of the wrong type keeps its name (with its text), so that
                    // what refers to the name is not reported missing; null is absent.
                    let text = match self.string(entries, &path, name, what) {
                        Some(text) => text,
                        None if value.is_null() => continue,
                        None => match value {
                            Value::Number(n) => n.to_string(),
                            Value::Bool(b) => b.to_string(),
                            _ => String::new(),
                        },
                    };
                    strings.insert(name.clone(), text);
                }
            }
            Some(other) => self.problem(
                &path,
                format!(
                    "must be an object (name: value, each value {what}), not {}",
                    describe(other)
                ),
            ),
        }
        strings
    }
}

/// Reads a policy object; the spec holds every field that read (the others keep their
/// defaults).
pub(super) fn read_spec(value: &Value) -> (QuotaPolicySpec, Reading) {
    let mut reading = Reading::default();
    let mut spec = QuotaPolicySpec::default();
    let Some(map) = reading.object(value, "", POLICY_FIELDS) else {
        return (spec, reading);
    };
    let r = &mut reading;
    spec.name = r.string(map, "", "name", A_STRING).unwrap_or_default();
    spec.description = r
        .string(map, "", "description", A_STRING)
        .unwrap_or_default();
    if let Some(value) = given(map, "match") {
        spec.matches = read_match(r, value, "match");
    }
    spec.dimensions = r.string_map(
        map,
        "",
        "dimensions",
        "an attribute expression such as source.service",
    );
    let max_amount = r.amount(map, "", "maxAmount");
    spec.max_amount = max_amount.unwrap_or_default();
    spec.valid_duration = r
        .string(map, "", "validDuration", A_DURATION)
        .unwrap_or_default();
    spec.algorithm = r.string(map, "", "algorithm", A_STRING);
    spec.bucket_duration = r.string(map, "", "bucketDuration", A_DURATION);
    spec.burst = r.amount(map, "", "burst");
    spec.overrides = r
        .list(map, "", "overrides")
        .iter()
        .enumerate()
        // An item that did not read keeps its place (a default, whose validation
        // problems its unread path hides), so the next ones keep their indexes.
        .map(|(i, item)| read_override(r, item, &format!("overrides[{i}]")).unwrap_or_default())
        .collect();
    spec.shadow = r.flag(map, "", "shadow").unwrap_or_default();
    let unlimited = r.flag(map, "", "unlimited");
    spec.unlimited = unlimited.unwrap_or_default();
    if let Some(value) = given(map, "rateLimit") {
        spec.rate_limit = read_rate_limit(r, value, "rateLimit");
    }
    // 0 is a limit (it denies every request), so leaving the field out is not read as 0.
    // (When `unlimited` could not be read, whether it is needed is unknown.)
    let unlimited_unread = unlimited.is_none() && given(map, "unlimited").is_some();
    if max_amount.is_none()
        && given(map, "maxAmount").is_none()
        && !spec.unlimited
        && !unlimited_unread
    {
        r.problem(
            "maxAmount",
            "is required (0 denies every request; or set unlimited: true)",
        );
    }
    (spec, reading)
}

fn read_match(r: &mut Reading, value: &Value, path: &str) -> QuotaMatch {
    let mut matches = QuotaMatch::default();
    let Some(map) = r.object(value, path, MATCH_FIELDS) else {
        return matches;
    };
    for (key, workload) in [
        ("source", &mut matches.source),
        ("destination", &mut matches.destination),
    ] {
        if let Some(value) = given(map, key) {
            *workload = read_workload(r, value, &child(path, key));
        }
    }
    matches.method = r.string(map, path, "method", A_STRING).unwrap_or_default();
    matches.path_prefix = r
        .string(map, path, "pathPrefix", A_STRING)
        .unwrap_or_default();
    matches.headers = r.string_map(map, path, "headers", A_STRING);
    matches
}

fn read_workload(r: &mut Reading, value: &Value, path: &str) -> WorkloadMatch {
    let mut workload = WorkloadMatch::default();
    let Some(map) = r.object(value, path, WORKLOAD_FIELDS) else {
        return workload;
    };
    for (key, field) in [
        ("service", &mut workload.service),
        ("workload", &mut workload.workload),
        ("version", &mut workload.version),
        ("namespace", &mut workload.namespace),
    ] {
        *field = r.string(map, path, key, A_STRING).unwrap_or_default();
    }
    workload
}

fn read_override(r: &mut Reading, value: &Value, path: &str) -> Option<QuotaOverrideSpec> {
    let map = r.object(value, path, OVERRIDE_FIELDS)?;
    let dimensions = r.string_map(map, path, "dimensions", A_STRING);
    let max_amount = r.amount(map, path, "maxAmount");
    if given(map, "maxAmount").is_none() {
        r.problem(
            &child(path, "maxAmount"),
            "is required (0 denies every matching request)",
        );
    }
    Some(QuotaOverrideSpec {
        dimensions,
        max_amount: max_amount.unwrap_or_default(),
        valid_duration: r.string(map, path, "validDuration", A_DURATION),
    })
}

fn read_rate_limit(r: &mut Reading, value: &Value, path: &str) -> Option<RateLimitSpec> {
    let map = r.object(value, path, RATE_LIMIT_FIELDS)?;
    let domain = r.string(map, path, "domain", A_STRING).unwrap_or_default();
    let descriptors = r
        .list(map, path, "descriptors")
        .iter()
        .enumerate()
        .map(|(i, item)| {
            read_descriptor(r, item, &format!("{path}.descriptors[{i}]")).unwrap_or_default()
        })
        .collect();
    let replaces_path = child(path, "replaces");
    let replaces = r
        .list(map, path, "replaces")
        .iter()
        .enumerate()
        .map(|(i, item)| match item {
            Value::String(name) => name.clone(),
            other => {
                let message = format!("must be a policy name (a string), not {}", describe(other));
                r.problem(&format!("{replaces_path}[{i}]"), message);
                String::new()
            }
        })
        .collect();
    Some(RateLimitSpec {
        domain,
        descriptors,
        replaces,
        name: r.string(map, path, "name", A_STRING),
    })
}

fn read_descriptor(r: &mut Reading, value: &Value, path: &str) -> Option<DescriptorEntrySpec> {
    let map = r.object(value, path, DESCRIPTOR_FIELDS)?;
    Some(DescriptorEntrySpec {
        key: r.string(map, path, "key", A_STRING).unwrap_or_default(),
        value: r.string(map, path, "value", A_STRING),
        share_threshold: r.flag(map, path, "shareThreshold").unwrap_or_default(),
    })
}

/// The value of `key`; absent and `null` alike are `None` (the field's default).
fn given<'v>(map: &'v Map<String, Value>, key: &str) -> Option<&'v Value> {
    map.get(key).filter(|value| !value.is_null())
}

/// `parent.key`, or `key` at the root: the paths validation uses.
fn child(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `field` is `path` or inside it (`path.x`, `path[0]`).
fn is_at_or_under(field: &str, path: &str) -> bool {
    field
        .strip_prefix(path)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('.') || rest.starts_with('['))
}

/// Past this, a double written for an amount is refused: 2^63, above the largest amount
/// (Check reports amounts as int64).
const LARGEST_FLOAT_AMOUNT: f64 = 9_223_372_036_854_775_808.0;

/// A number written with a fraction or an exponent that is a whole number ≥ 0 all the
/// same (`1e3`, `5.0`, `1e16`, as YAML and JSON writers may put it), below 2^63. Past
/// 2^53 it is read as its double (`1e16` exactly; sixteen and more significant digits
/// as the nearest double), as JSON parsers read such numbers.
fn whole_float(value: &Value) -> Option<u64> {
    let v = value.as_f64()?;
    (v.fract() == 0.0 && (0.0..LARGEST_FLOAT_AMOUNT).contains(&v)).then_some(v as u64)
}

/// A value as an error message shows it: `-3`, `the string "5"`, `a list`.
fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(flag) => flag.to_string(),
        Value::Number(number) => number.to_string(),
        Value::String(text) if text.chars().count() > 40 => {
            let start: String = text.chars().take(40).collect();
            format!("the string {:?}", format!("{start}…"))
        }
        Value::String(text) => format!("the string {text:?}"),
        Value::Array(_) => "a list".into(),
        Value::Object(_) => "an object".into(),
    }
}
