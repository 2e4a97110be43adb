//! Sizes in configuration (`"16MiB"`, `"256 MiB"`, `"1GB"`, `4096`): one parser for
//! flags, environment variables and the TOML file, whose error says which forms it
//! takes instead of the size crate's own wording.

use bytesize::ByteSize;
use serde::{Deserialize, Deserializer};

/// The forms a size takes, for error messages.
pub const SIZE_FORMS: &str = "a number with a unit: B, KiB, MiB, GiB, TiB (powers of 1024) or \
                              KB, MB, GB, TB (powers of 1000), e.g. \"16MiB\" or \"1.5 GiB\"";

/// Parses a size as [`ByteSize`] reads it (a bare integer is bytes); an error names the
/// text and the forms a size takes.
pub fn parse_size(text: &str) -> Result<ByteSize, String> {
    let trimmed = text.trim();
    trimmed
        .parse::<ByteSize>()
        .map_err(|_| format!("{trimmed:?} is not a size: write {SIZE_FORMS}"))
}

/// Serde `deserialize_with` for a [`ByteSize`] field: a TOML integer (bytes) or a
/// string read by [`parse_size`].
pub fn deserialize_size<'de, D: Deserializer<'de>>(d: D) -> Result<ByteSize, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Size {
        Bytes(u64),
        Text(String),
    }
    match Size::deserialize(d)
        .map_err(|_| serde::de::Error::custom(format!("expected {SIZE_FORMS}")))?
    {
        Size::Bytes(bytes) => Ok(ByteSize::b(bytes)),
        Size::Text(text) => parse_size(&text).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_their_errors() {
        assert_eq!(parse_size("16MiB"), Ok(ByteSize::mib(16)));
        assert_eq!(parse_size(" 256 MiB "), Ok(ByteSize::mib(256)));
        assert_eq!(parse_size("1GB"), Ok(ByteSize::gb(1)));
        assert_eq!(parse_size("4096"), Ok(ByteSize::b(4096)));
        assert_eq!(parse_size("1KB"), Ok(ByteSize::b(1000)));
        assert_eq!(parse_size("1.5 GiB"), Ok(ByteSize::mib(1536)));
        for bad in ["abc", "5XB", "", "-1MiB", "MiB"] {
            let e = parse_size(bad).unwrap_err();
            assert!(e.starts_with(&format!("{:?} is not a size", bad.trim())), "{e}");
            assert!(e.contains("\"16MiB\""), "{e}");
        }
    }

    #[test]
    fn toml_integers_are_bytes_and_bad_text_names_the_forms() {
        #[derive(Deserialize, Debug)]
        struct Config {
            #[serde(deserialize_with = "deserialize_size")]
            size: ByteSize,
        }
        let read = |text: &str| serde_json::from_str::<Config>(text).map(|c| c.size);
        assert_eq!(read(r#"{"size": 1024}"#).unwrap(), ByteSize::kib(1));
        assert_eq!(read(r#"{"size": "2 MiB"}"#).unwrap(), ByteSize::mib(2));
        let e = read(r#"{"size": "5 ZB"}"#).unwrap_err().to_string();
        assert!(e.contains("\"5 ZB\" is not a size: write a number with a unit"), "{e}");
        let e = read(r#"{"size": true}"#).unwrap_err().to_string();
        assert!(e.contains("expected a number with a unit"), "{e}");
    }
}
