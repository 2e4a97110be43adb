//! The text of an envoyproxy/ratelimit file's scalars as written.
//!
//! envoyproxy/ratelimit reads `domain`, `key`, `value` and names into Go strings
//! (yaml.v2), which keep an unquoted scalar's text: `value: 1.10` is `"1.10"`,
//! `0x1F` is `"0x1F"`, `1e3` is `"1e3"`. A YAML `Value` has already turned them into
//! numbers (`1.1`, `31`, `1000.0`), so the importer reads the file a second time into
//! these structs, whose fields ask the YAML reader for a string (it then gives the
//! scalar's text), and takes the text from here. Nothing else is read: the `Value` walk
//! does the validation, and when this reading fails (a field of the wrong shape, which
//! that walk reports) the importer falls back to the `Value`'s text.

use std::fmt;

use serde::Deserialize;
use serde::de::{Deserializer, Visitor};

/// A scalar's text as written.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(super) struct RawText(pub String);

impl<'de> Deserialize<'de> for RawText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<RawText, D::Error> {
        struct Text;
        impl Visitor<'_> for Text {
            type Value = RawText;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a scalar")
            }

            fn visit_str<E>(self, v: &str) -> Result<RawText, E> {
                Ok(RawText(v.to_owned()))
            }
        }
        // `deserialize_str`: the YAML reader hands over the scalar's text instead of
        // resolving it to a number or a boolean.
        deserializer.deserialize_str(Text)
    }
}

/// The file: `domain` and `descriptors`.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRoot {
    #[serde(default)]
    pub domain: Option<RawText>,
    #[serde(default)]
    pub descriptors: Option<Vec<RawDescriptor>>,
}

/// One descriptor.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawDescriptor {
    #[serde(default)]
    pub key: Option<RawText>,
    #[serde(default)]
    pub value: Option<RawText>,
    #[serde(default)]
    pub rate_limit: Option<RawRateLimit>,
    #[serde(default)]
    pub descriptors: Option<Vec<RawDescriptor>>,
}

/// A `rate_limit` block's names.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawRateLimit {
    #[serde(default)]
    pub name: Option<RawText>,
    #[serde(default)]
    pub replaces: Option<Vec<RawReplace>>,
}

/// One `replaces` entry.
#[derive(Debug, Default, Deserialize)]
pub(super) struct RawReplace {
    #[serde(default)]
    pub name: Option<RawText>,
}

/// The file read for its scalars' text; empty (every text then comes from the `Value`)
/// when it does not have the expected shape.
pub(super) fn read(yaml: &str) -> RawRoot {
    yaml_serde::from_str(yaml).unwrap_or_default()
}

impl RawDescriptor {
    /// The children, by position.
    pub fn children(&self) -> &[RawDescriptor] {
        self.descriptors.as_deref().unwrap_or(&[])
    }
}

impl RawRateLimit {
    /// The `replaces[i].name` text.
    pub fn replaces_name(&self, i: usize) -> Option<&RawText> {
        self.replaces.as_ref()?.get(i)?.name.as_ref()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)] // test code
mod tests {
    use super::*;

    #[test]
    fn unquoted_scalars_keep_their_text() {
        let root = read(
            "domain: 1.10\ndescriptors:\n  - key: 0x1F\n    value: 1e3\n    rate_limit: {name: 0123, replaces: [{name: yes}]}\n    descriptors: [{key: 'a', value: \"1.0\"}]\n",
        );
        assert_eq!(root.domain.unwrap().0, "1.10");
        let d = &root.descriptors.as_ref().unwrap()[0];
        assert_eq!(d.key.as_ref().unwrap().0, "0x1F");
        assert_eq!(d.value.as_ref().unwrap().0, "1e3");
        let rl = d.rate_limit.as_ref().unwrap();
        assert_eq!(rl.name.as_ref().unwrap().0, "0123");
        assert_eq!(rl.replaces_name(0).unwrap().0, "yes");
        assert_eq!(d.children()[0].value.as_ref().unwrap().0, "1.0");
    }

    #[test]
    fn a_file_of_another_shape_reads_as_empty() {
        let root = read("domain: d\ndescriptors: {key: a}\n");
        assert!(root.domain.is_none() && root.descriptors.is_none());
    }
}
