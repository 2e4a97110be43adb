//! Reading policies from JSON and YAML so that every problem names its field, as
//! [`FieldError`]s in the same shape validation uses:
//!
//! - [`strict_json_value`] and [`strict_yaml_value`] read a document into a
//!   `serde_json::Value`, refusing a key repeated in one object (`serde_json` and YAML
//!   readers would keep its last value; a derived struct refuses repeats only when it
//!   reads the text itself, not through a `Value`);
//! - [`spec_from_value`] turns one policy object into a [`QuotaPolicySpec`], or returns
//!   every problem in it: each unknown key and each value of the wrong type with the
//!   path of its field (`overrides[0].maxAmount`), and the validation problems
//!   ([`QuotaPolicySpec::compile`]) of the fields that did read.

use std::cell::RefCell;
use std::fmt;

use serde::Deserializer;
use serde::de::{DeserializeSeed, Error as _, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

use super::{FieldError, QuotaPolicySpec};

mod fields;

/// Reads a JSON document, refusing repeated keys; the error names the field.
pub fn strict_json_value(bytes: &[u8]) -> Result<Value, FieldError> {
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = strict_value(&mut deserializer, "invalid JSON")?;
    deserializer.end().map_err(|e| FieldError {
        field: String::new(),
        message: format!("invalid JSON: {e}"),
    })?;
    Ok(value)
}

/// Reads one YAML document (a `yaml_serde::Deserializer`, e.g. one of a
/// multi-document file's), refusing repeated keys; the error names the field.
pub fn strict_yaml_value<'de, D: Deserializer<'de>>(document: D) -> Result<Value, FieldError>
where
    D::Error: fmt::Display,
{
    strict_value(document, "invalid YAML")
}

/// One policy object as a spec, or every problem in it, each with its field path:
/// unknown keys (with a suggestion when one looks misspelt), values of the wrong type,
/// required fields left out, and then what [`QuotaPolicySpec::compile`] finds in the
/// fields that did read. `maxAmount` must be given unless `unlimited` is true: 0 is a
/// limit (it denies every request), so leaving the field out is not read as 0. A `null`
/// field is read as absent.
///
/// A spec returned here has not been validated: compile it.
pub fn spec_from_value(value: Value) -> Result<QuotaPolicySpec, Vec<FieldError>> {
    let (spec, mut reading) = fields::read_spec(&value);
    if reading.errors.is_empty() {
        return Ok(spec);
    }
    let mut errors = std::mem::take(&mut reading.errors);
    if let Err(problems) = spec.compile_new() {
        errors.extend(problems.into_iter().filter(|p| !reading.hides(&p.field)));
    }
    Err(errors)
}

fn strict_value<'de, D: Deserializer<'de>>(
    deserializer: D,
    syntax: &str,
) -> Result<Value, FieldError>
where
    D::Error: fmt::Display,
{
    let problem = RefCell::new(None);
    let seed = StrictSeed {
        path: String::new(),
        problem: &problem,
    };
    seed.deserialize(deserializer).map_err(|error| {
        problem.into_inner().unwrap_or_else(|| FieldError {
            field: String::new(),
            message: format!("{syntax}: {error}"),
        })
    })
}

/// Reads any value into a `Value`, remembering the path it is at so that a repeated
/// key (or a number too large for any field) can be reported with its own path (in
/// `problem`).
struct StrictSeed<'a> {
    path: String,
    problem: &'a RefCell<Option<FieldError>>,
}

impl<'de> DeserializeSeed<'de> for StrictSeed<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl StrictSeed<'_> {
    /// The error for an integer no field can hold (past 64 bits either way), kept with
    /// its path.
    fn too_large<E: serde::de::Error>(&self, digits: &str) -> E {
        let message = if digits.starts_with('-') {
            format!("{digits} is too small: at least {}", i64::MIN)
        } else {
            format!("{digits} is too large: at most {}", i64::MAX)
        };
        let error = E::custom(format!("{}: {message}", self.path));
        *self.problem.borrow_mut() = Some(FieldError {
            field: self.path.clone(),
            message,
        });
        error
    }
}

impl<'de> Visitor<'de> for StrictSeed<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON or YAML value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::Number(v.into()))
    }

    // Integers past 64 bits (YAML reads them so): refused at their path.
    fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Value, E> {
        Err(self.too_large(&v.to_string()))
    }

    fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Value, E> {
        Err(self.too_large(&v.to_string()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        self.deserialize(deserializer)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        loop {
            let seed = StrictSeed {
                path: format!("{}[{}]", self.path, items.len()),
                problem: self.problem,
            };
            match seq.next_element_seed(seed)? {
                Some(item) => items.push(item),
                None => return Ok(Value::Array(items)),
            }
        }
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let path = if self.path.is_empty() {
                key.clone()
            } else {
                format!("{}.{key}", self.path)
            };
            if object.contains_key(&key) {
                let message = format!("duplicate key `{key}`: give each key once");
                let error = A::Error::custom(format!("{path}: {message}"));
                *self.problem.borrow_mut() = Some(FieldError {
                    field: path,
                    message,
                });
                return Err(error);
            }
            let seed = StrictSeed {
                path,
                problem: self.problem,
            };
            let value = map.next_value_seed(seed)?;
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

#[cfg(test)]
mod tests;
