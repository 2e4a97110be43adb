//! Reading Istio's compressed attributes into a [`Bag`]: names and string values are
//! word indices, either into the global dictionary ([`GLOBAL_WORDS`]) or into the
//! message's own words.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use meshtel_model::istio_mixer::CompressedAttributes;

use super::words::GLOBAL_WORDS;
use crate::error::{Error, Result, echo};

/// One attribute's value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// A string (also DNS names, emails and URIs).
    String(String),
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Double(f64),
    /// A boolean.
    Bool(bool),
    /// A point in time, Unix nanoseconds.
    Time(i128),
    /// A duration.
    Duration(Duration),
    /// Bytes (IP addresses).
    Bytes(Vec<u8>),
    /// A string map (headers, labels).
    Map(BTreeMap<String, String>),
}

/// The attributes of one request, by name.
/// Most bytes of names and values one bag holds. Mixer's bags hold a few kilobytes (a
/// request's headers at most Envoy's 60 KiB); a message whose words would make more
/// (one large word named by many attributes, or by a map's many entries) is refused
/// before it is copied out, instead of being copied once per name.
pub const MAX_BAG_BYTES: usize = 1 << 20;

/// Attributes by name, and the bytes of names and values held (see [`MAX_BAG_BYTES`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bag(HashMap<String, Value>, usize);

/// Bytes of `value` counted against [`MAX_BAG_BYTES`].
fn value_bytes(value: &Value) -> usize {
    match value {
        Value::String(text) => text.len(),
        Value::Bytes(bytes) => bytes.len(),
        Value::Map(map) => map.iter().map(|(k, v)| k.len() + v.len()).sum(),
        _ => 8,
    }
}

impl Bag {
    /// The string attribute `name`, or `""` when it is absent or not a string.
    pub fn str(&self, name: &str) -> &str {
        match self.0.get(name) {
            Some(Value::String(s)) => s,
            _ => "",
        }
    }

    /// The first of `names` that is a non-empty string (Mixer's `a | b`), or `""`.
    pub fn first_str(&self, names: &[&str]) -> &str {
        names
            .iter()
            .map(|n| self.str(n))
            .find(|s| !s.is_empty())
            .unwrap_or("")
    }

    /// The integer attribute `name`.
    pub fn int(&self, name: &str) -> Option<i64> {
        match self.0.get(name) {
            Some(Value::Int(i)) => Some(*i),
            _ => None,
        }
    }

    /// The boolean attribute `name`.
    pub fn bool(&self, name: &str) -> Option<bool> {
        match self.0.get(name) {
            Some(Value::Bool(b)) => Some(*b),
            _ => None,
        }
    }

    /// The timestamp attribute `name`, Unix nanoseconds.
    pub fn time(&self, name: &str) -> Option<i128> {
        match self.0.get(name) {
            Some(Value::Time(t)) => Some(*t),
            _ => None,
        }
    }

    /// The duration attribute `name`.
    pub fn duration(&self, name: &str) -> Option<Duration> {
        match self.0.get(name) {
            Some(Value::Duration(d)) => Some(*d),
            _ => None,
        }
    }

    /// The string map attribute `name`.
    pub fn map(&self, name: &str) -> Option<&BTreeMap<String, String>> {
        match self.0.get(name) {
            Some(Value::Map(m)) => Some(m),
            _ => None,
        }
    }

    /// `map[key]` of the string map attribute `map`, or `""`.
    pub fn map_str(&self, map: &str, key: &str) -> &str {
        self.map(map)
            .and_then(|m| m.get(key))
            .map_or("", String::as_str)
    }

    /// True when the request carries attribute `name`.
    pub fn has(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    /// Number of attributes.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when there are no attributes.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Sets `name` (tests and decoding).
    pub fn set(&mut self, name: impl Into<String>, value: Value) {
        let name = name.into();
        let name_bytes = name.len();
        self.1 += value_bytes(&value);
        match self.0.insert(name, value) {
            Some(old) => self.1 = self.1.saturating_sub(value_bytes(&old)),
            None => self.1 += name_bytes,
        }
    }

    /// Bytes of the names and values held.
    pub fn bytes(&self) -> usize {
        self.1
    }

    /// [`Self::set`], refused when the bag would hold more than [`MAX_BAG_BYTES`].
    fn set_bounded(&mut self, name: &str, value: Value) -> Result<()> {
        let replaced = self.0.get(name).map_or(name.len(), value_bytes);
        if (self.1 + value_bytes(&value)).saturating_sub(replaced) > MAX_BAG_BYTES {
            return Err(too_large(name));
        }
        self.set(name, value);
        Ok(())
    }

    /// Checks a client's `global_word_count` against the dictionary meshtel knows, as
    /// Mixer does: a client may know fewer words (an older list is a prefix of this
    /// one), never more.
    pub fn check_word_count(global_word_count: u32) -> Result<()> {
        if global_word_count as usize > GLOBAL_WORDS.len() {
            return Err(Error::InvalidMixerAttributes(format!(
                "inconsistent global dictionary versions: the client knows {global_word_count} \
                 words, meshtel {}",
                GLOBAL_WORDS.len()
            )));
        }
        Ok(())
    }

    /// Adds (or replaces) the attributes of `compressed` to this bag, with `words` as
    /// the message dictionary (the element's own, or the Report's default words).
    /// Refuses an index that names no word, or a timestamp or duration out of range;
    /// the message names the index.
    pub fn update(&mut self, compressed: &CompressedAttributes, words: &[String]) -> Result<()> {
        let word = |index: i32| lookup(index, words);
        for (&name, &value) in &compressed.strings {
            let (name, value) = (word(name)?, word(value)?);
            if value.len() > MAX_BAG_BYTES {
                return Err(too_large(name));
            }
            self.set_bounded(name, Value::String(value.to_string()))?;
        }
        for (&name, &value) in &compressed.int64s {
            self.set(word(name)?, Value::Int(value));
        }
        for (&name, &value) in &compressed.doubles {
            self.set(word(name)?, Value::Double(value));
        }
        for (&name, &value) in &compressed.bools {
            self.set(word(name)?, Value::Bool(value));
        }
        for (&name, value) in &compressed.timestamps {
            let name = word(name)?;
            let nanos = i128::from(value.seconds) * 1_000_000_000 + i128::from(value.nanos);
            self.set(name, Value::Time(nanos));
        }
        for (&name, value) in &compressed.durations {
            let name = word(name)?;
            let (Ok(seconds), Ok(nanos)) =
                (u64::try_from(value.seconds), u32::try_from(value.nanos))
            else {
                return Err(Error::InvalidMixerAttributes(format!(
                    "attribute {}: a negative duration",
                    echo(name)
                )));
            };
            if nanos >= 1_000_000_000 {
                return Err(Error::InvalidMixerAttributes(format!(
                    "attribute {}: duration nanos {nanos} is not below one second",
                    echo(name)
                )));
            }
            self.set(name, Value::Duration(Duration::new(seconds, nanos)));
        }
        for (&name, value) in &compressed.bytes {
            self.set_bounded(word(name)?, Value::Bytes(value.clone()))?;
        }
        for (&name, map) in &compressed.string_maps {
            let name = word(name)?;
            let mut entries = BTreeMap::new();
            let mut bytes = 0usize;
            for (&key, &value) in &map.entries {
                let (key, value) = (word(key)?, word(value)?);
                bytes = bytes.saturating_add(key.len() + value.len());
                if bytes > MAX_BAG_BYTES {
                    return Err(too_large(name));
                }
                entries.insert(key.to_string(), value.to_string());
            }
            self.set_bounded(name, Value::Map(entries))?;
        }
        Ok(())
    }

    /// The bag of one set of compressed attributes.
    pub fn decode(compressed: &CompressedAttributes, words: &[String]) -> Result<Bag> {
        let mut bag = Bag::default();
        bag.update(compressed, words)?;
        Ok(bag)
    }
}

/// A bag past [`MAX_BAG_BYTES`], naming the attribute that took it there.
fn too_large(name: &str) -> Error {
    Error::InvalidMixerAttributes(format!(
        "attribute {}: the attributes of one request would hold more than {} KiB",
        echo(name),
        MAX_BAG_BYTES >> 10
    ))
}

/// The word an index names: `i >= 0` the global dictionary's word `i`, `i < 0` the
/// message word `words[-i - 1]`.
fn lookup(index: i32, words: &[String]) -> Result<&str> {
    let found = if index >= 0 {
        usize::try_from(index)
            .ok()
            .and_then(|i| GLOBAL_WORDS.get(i).copied())
    } else {
        let slot = -(i64::from(index)) - 1;
        usize::try_from(slot)
            .ok()
            .and_then(|i| words.get(i))
            .map(String::as_str)
    };
    found.ok_or_else(|| {
        let (which, size) = if index >= 0 {
            ("the global dictionary", GLOBAL_WORDS.len())
        } else {
            ("the message's words", words.len())
        };
        Error::InvalidMixerAttributes(format!(
            "word index {index} names no word: {which} has {size}"
        ))
    })
}
