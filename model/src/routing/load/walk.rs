//! Walking a parsed document by hand: typed reads of YAML values, each problem recorded
//! with the field path (`spec.http[0].route[1].weight`) and the object it belongs to.
//!
//! Objects are read against a list of the fields meshtel implements and a list of the
//! Istio fields it does not: a field of the second list is refused by name ("corsPolicy
//! is not supported by meshtel"), any other unknown key is an "unknown field", with a
//! suggestion when it looks like a misspelling of a known one.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::ops::RangeInclusive;
use std::rc::Rc;
use std::time::Duration;

use yaml_serde::{Mapping, Sequence, Value};

use super::RuleProblem;
use crate::routing::AnchoredRegex;
use crate::duration::parse_go_duration;
use crate::suggest::closest;

/// Where problems go while one object (one document, or one `items[]` entry) is read.
pub(super) struct Cx<'a> {
    /// `file#document`.
    pub source: &'a str,
    /// `VirtualService default/reviews`.
    pub object: String,
    /// Every problem of the whole load.
    pub problems: &'a mut Vec<RuleProblem>,
    /// What the load's regexes may still take compiled.
    pub regex_budget: RegexBudget,
}

/// Bytes the compiled regexes of one load may take together: each is charged the
/// smallest of [`REGEX_TIERS`] it compiles within. Without it, 5,000 routes of
/// `\w{20}` (each under the 1 MiB a regex may take) made every proxy that loaded them
/// take 5 GB and die. 128 MiB holds 4,096 short regexes, or 512 of a UUID's pattern.
pub(super) const REGEX_BUDGET_BYTES: usize = 128 << 20;

/// The size limits a regex is compiled under in turn: the first it fits is its charge.
const REGEX_TIERS: [usize; 3] = [32 << 10, 256 << 10, 1 << 20];

/// The bytes left of a load's [`REGEX_BUDGET_BYTES`], shared by its objects.
#[derive(Clone, Debug)]
pub(super) struct RegexBudget(Rc<Cell<usize>>);

impl Default for RegexBudget {
    fn default() -> Self {
        RegexBudget(Rc::new(Cell::new(REGEX_BUDGET_BYTES)))
    }
}

/// The fields an Istio message has, as meshtel reads it.
pub(super) struct Fields {
    /// Implemented.
    pub known: &'static [&'static str],
    /// Part of the Istio API but not implemented: name and why (may be empty).
    pub unsupported: &'static [(&'static str, &'static str)],
}

/// An object whose keys were checked against its [`Fields`].
pub(super) struct Object<'v> {
    map: &'v Mapping,
    /// Path of the object itself.
    pub path: String,
}

impl<'v> Object<'v> {
    /// The value of `key` and its path; `None` when absent or `null` (Kubernetes drops
    /// null fields, protobuf JSON reads them as unset).
    pub fn get(&self, key: &str) -> Option<(&'v Value, String)> {
        match self.map.get(key) {
            None | Some(Value::Null) => None,
            Some(value) => Some((value, self.child(key))),
        }
    }

    /// Whether `key` is given (not null).
    pub fn has(&self, key: &str) -> bool {
        self.get(key).is_some()
    }

    /// Path of `key` under this object.
    pub fn child(&self, key: &str) -> String {
        child_path(&self.path, key)
    }
}

/// `parent.key` (or `key` at the root); keys that are not plain identifiers are quoted:
/// `headers["x.y"]`.
pub(super) fn child_path(parent: &str, key: &str) -> String {
    let plain = !key.is_empty() && key.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    match (parent.is_empty(), plain) {
        (true, true) => key.to_owned(),
        (true, false) => format!("[{key:?}]"),
        (false, true) => format!("{parent}.{key}"),
        (false, false) => format!("{parent}[{key:?}]"),
    }
}

/// `parent[index]`.
pub(super) fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

/// What a value is, for "expected a string, found a number".
pub(super) fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".to_owned(),
        Value::Bool(b) => format!("a boolean ({b})"),
        Value::Number(n) => format!("a number ({n})"),
        Value::String(s) if s.chars().count() > 40 => "a string".to_owned(),
        Value::String(s) => format!("a string ({s:?})"),
        Value::Sequence(_) => "a list".to_owned(),
        Value::Mapping(_) => "an object".to_owned(),
        Value::Tagged(tagged) => format!("a value tagged {}", tagged.tag),
    }
}

impl Cx<'_> {
    /// Compiles a rule's regex at `path`, charged to the load's budget; a problem
    /// when it does not compile or does not fit what is left.
    pub fn regex(&mut self, text: &str, path: &str) -> Option<AnchoredRegex> {
        let left = self.regex_budget.0.get();
        for tier in REGEX_TIERS {
            if tier > left {
                self.push(
                    path,
                    format!(
                        "the regexes of these rules take more than {} MiB compiled together \
                         and this one does not fit in the {} KiB left: match by prefix or \
                         exact where you can, or use fewer regexes",
                        REGEX_BUDGET_BYTES >> 20,
                        left >> 10
                    ),
                );
                return None;
            }
            match AnchoredRegex::with_size_limit(text, tier) {
                Ok(regex) => {
                    self.regex_budget.0.set(left - tier);
                    return Some(regex);
                }
                Err(regex::Error::CompiledTooBig(_)) if tier < REGEX_TIERS[2] => {}
                Err(error) => {
                    self.push(path, regex_error_message(&error));
                    return None;
                }
            }
        }
        None
    }

    /// Records a problem at `field`.
    pub fn push(&mut self, field: &str, message: impl Into<String>) {
        self.problems.push(RuleProblem {
            source: self.source.to_owned(),
            object: self.object.clone(),
            field: field.to_owned(),
            message: message.into(),
        });
    }

    fn wrong_type(&mut self, path: &str, expected: &str, value: &Value) {
        self.push(path, format!("expected {expected}, found {}", describe(value)));
    }

    /// Reads `value` as an object with `fields`, reporting every other key.
    pub fn object<'v>(&mut self, value: &'v Value, path: &str, fields: &Fields) -> Option<Object<'v>> {
        let Value::Mapping(map) = value else {
            self.wrong_type(path, "an object", value);
            return None;
        };
        for key in map.keys() {
            let Value::String(key) = key else {
                self.push(path, format!("field names must be strings, found {}", describe(key)));
                continue;
            };
            if fields.known.contains(&key.as_str()) {
                continue;
            }
            let field = child_path(path, key);
            if let Some((_, why)) = fields.unsupported.iter().find(|(name, _)| name == key) {
                let message = if why.is_empty() {
                    format!("{key} is not supported by meshtel")
                } else {
                    format!("{key} is not supported by meshtel ({why})")
                };
                self.push(&field, message);
                continue;
            }
            let names = fields.known.iter().copied().chain(fields.unsupported.iter().map(|(name, _)| *name));
            match closest(key, names) {
                Some(suggestion) => self.push(&field, format!("unknown field (did you mean {suggestion}?)")),
                None => self.push(&field, format!("unknown field; expected one of {}", fields.known.join(", "))),
            }
        }
        Some(Object { map, path: path.to_owned() })
    }

    /// A string.
    pub fn string<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v str> {
        match value {
            Value::String(s) => Some(s),
            other => {
                self.wrong_type(path, "a string", other);
                None
            }
        }
    }

    /// A non-empty string.
    pub fn required_string<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v str> {
        let s = self.string(value, path)?;
        if s.trim().is_empty() {
            self.push(path, "must not be empty");
            return None;
        }
        Some(s)
    }

    /// A whole number within `range`.
    pub fn integer(&mut self, value: &Value, path: &str, range: RangeInclusive<i64>) -> Option<i64> {
        let number = match value {
            Value::Number(n) => n.as_i64().or_else(|| n.as_u64().map(|_| i64::MAX)),
            other => {
                self.wrong_type(path, "a whole number", other);
                return None;
            }
        };
        let Some(number) = number else {
            self.wrong_type(path, "a whole number", value);
            return None;
        };
        if !range.contains(&number) {
            let (low, high) = (range.start(), range.end());
            let wide = *high == i64::from(u32::MAX) || *high == i64::MAX;
            let message = if wide && number > *high {
                format!("must be at most {high}, found {number}")
            } else if wide {
                format!("must be at least {low}, found {number}")
            } else {
                format!("must be between {low} and {high}, found {number}")
            };
            self.push(path, message);
            return None;
        }
        Some(number)
    }

    /// A whole number `0..=u32::MAX`.
    pub fn u32(&mut self, value: &Value, path: &str) -> Option<u32> {
        self.integer(value, path, 0..=i64::from(u32::MAX)).and_then(|n| u32::try_from(n).ok())
    }

    /// A number (whole or not) within `range`.
    pub fn float(&mut self, value: &Value, path: &str, range: RangeInclusive<f64>) -> Option<f64> {
        let number = match value {
            Value::Number(n) => n.as_f64(),
            other => {
                self.wrong_type(path, "a number", other);
                return None;
            }
        };
        match number {
            Some(n) if range.contains(&n) => Some(n),
            Some(n) => {
                self.push(path, format!("must be between {} and {}, found {n}", range.start(), range.end()));
                None
            }
            None => {
                self.wrong_type(path, "a number", value);
                None
            }
        }
    }

    /// `true` or `false`.
    pub fn boolean(&mut self, value: &Value, path: &str) -> Option<bool> {
        match value {
            Value::Bool(b) => Some(*b),
            other => {
                self.wrong_type(path, "true or false", other);
                None
            }
        }
    }

    /// A list.
    pub fn list<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Sequence> {
        match value {
            Value::Sequence(items) => Some(items),
            other => {
                self.wrong_type(path, "a list", other);
                None
            }
        }
    }

    /// An object of arbitrary keys: `(key, value, path)` in document order.
    pub fn entries<'v>(&mut self, value: &'v Value, path: &str) -> Vec<(&'v str, &'v Value, String)> {
        let Value::Mapping(map) = value else {
            self.wrong_type(path, "an object", value);
            return Vec::new();
        };
        let mut out = Vec::with_capacity(map.len());
        for (key, value) in map {
            match key {
                Value::String(key) => out.push((key.as_str(), value, child_path(path, key))),
                other => self.push(path, format!("keys must be strings, found {}", describe(other))),
            }
        }
        out
    }

    /// An object of string values (`labels`, `sourceLabels`).
    pub fn string_map(&mut self, value: &Value, path: &str) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (key, value, field) in self.entries(value, path) {
            if key.is_empty() {
                self.push(&field, "label names must not be empty");
            }
            if let Some(value) = self.string(value, &field) {
                out.insert(key.to_owned(), value.to_owned());
            }
        }
        out
    }

    /// A list of strings.
    pub fn strings<'v>(&mut self, value: &'v Value, path: &str) -> Vec<(&'v str, String)> {
        let Some(items) = self.list(value, path) else {
            return Vec::new();
        };
        let mut out = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            let field = index_path(path, index);
            if let Some(s) = self.string(item, &field) {
                out.push((s, field));
            }
        }
        out
    }

    /// A Go-style duration (`7s`, `0.5s`, `3m`, `1h30m`); zero only when `allow_zero`.
    pub fn duration(&mut self, value: &Value, path: &str, allow_zero: bool) -> Option<Duration> {
        let text = match value {
            Value::String(s) => s.as_str(),
            other => {
                self.wrong_type(path, "a duration such as \"1s\" or \"500ms\"", other);
                return None;
            }
        };
        match parse_go_duration(text.trim()) {
            Ok(d) if d.is_zero() && !allow_zero => {
                self.push(path, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                self.push(path, format!("expected a duration such as \"1s\" or \"500ms\": {e}"));
                None
            }
        }
    }
}

/// A regex error on one line: the reason, without the caret diagram.
pub(super) fn regex_error_message(error: &regex::Error) -> String {
    match error {
        regex::Error::Syntax(text) => {
            let reason = text.rsplit("error: ").next().unwrap_or(text).trim();
            format!("invalid regex: {reason}")
        }
        regex::Error::CompiledTooBig(limit) => format!("regex is too large (compiled beyond {limit} bytes)"),
        other => format!("invalid regex: {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths() {
        assert_eq!(child_path("", "spec"), "spec");
        assert_eq!(child_path("spec", "http"), "spec.http");
        assert_eq!(index_path("spec.http", 2), "spec.http[2]");
        assert_eq!(child_path("x.headers", "a.b"), "x.headers[\"a.b\"]");
    }
}
