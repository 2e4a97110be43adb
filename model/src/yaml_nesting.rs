//! A bound on how deep a YAML text nests its flow collections (`[...]`, `{...}`),
//! checked over its bytes before it is parsed. The YAML parser takes time quadratic in
//! that depth: a policy body of 200 KB of `[` held a runtime thread for 22 s, one of
//! 1 MB for minutes, and a rules file the proxy reloads the same. The parsers refuse
//! structures nested deeper than 128 anyway, after that time; this refuses them before.
//!
//! Files (a mesh file, a rules file) are bounded in size too ([`read_file`]): parsed,
//! YAML takes about forty times its bytes (a mesh file of 9.2 MB took a proxy to 356 MB).

use std::io::Read;
use std::path::Path;

/// Most bytes of one configuration file read by [`read_file`]: 4 MiB, some ten thousand
/// services or rules, about 160 MiB while parsed.
pub const MAX_FILE_BYTES: u64 = 4 << 20;

/// Why [`read_file`] gave no text.
#[derive(Debug)]
pub enum FileError {
    /// The file could not be read.
    Io(std::io::Error),
    /// The file is larger than [`MAX_FILE_BYTES`].
    TooLarge {
        /// Its size; `None` when it grew past the bound while read (or a pipe did).
        bytes: Option<u64>,
    },
}

impl std::fmt::Display for FileError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FileError::Io(error) => write!(f, "{error}"),
            FileError::TooLarge { bytes } => {
                match bytes {
                    Some(bytes) => write!(f, "the file is {bytes} bytes, ")?,
                    None => write!(f, "the file holds ")?,
                }
                write!(
                    f,
                    "more than the {MAX_FILE_BYTES} a configuration file may hold (parsing takes \
                     about forty times its size): split it"
                )
            }
        }
    }
}

/// Reads the file at `path` whole, when it holds at most [`MAX_FILE_BYTES`]; a file
/// that grows while read is cut at one byte past the bound and refused.
pub fn read_file(path: &Path) -> Result<Vec<u8>, FileError> {
    let file = std::fs::File::open(path).map_err(FileError::Io)?;
    let len = file.metadata().map_err(FileError::Io)?.len();
    if len > MAX_FILE_BYTES {
        return Err(FileError::TooLarge { bytes: Some(len) });
    }
    let mut bytes = Vec::with_capacity(usize::try_from(len).unwrap_or(0));
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(FileError::Io)?;
    if bytes.len() as u64 > MAX_FILE_BYTES {
        return Err(FileError::TooLarge { bytes: None });
    }
    Ok(bytes)
}

/// Deepest flow nesting allowed: twice what the parsers' own limit lets through.
pub const MAX_FLOW_DEPTH: usize = 256;

/// Refuses `text` when its brackets and braces open more than [`MAX_FLOW_DEPTH`] deep.
/// Every bracket counts, in quoted text and comments too: text of hundreds of
/// unmatched opening brackets is no configuration file.
pub fn check(text: &str) -> Result<(), String> {
    let mut depth = 0usize;
    for (offset, byte) in text.bytes().enumerate() {
        match byte {
            b'[' | b'{' => {
                depth += 1;
                if depth > MAX_FLOW_DEPTH {
                    let line = text.as_bytes()[..offset].iter().filter(|&&b| b == b'\n').count() + 1;
                    return Err(format!(
                        "brackets and braces nest more than {MAX_FLOW_DEPTH} deep (at line {line}): \
                         refused before parsing"
                    ));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deep_flow_nesting_is_refused_with_its_line_and_ordinary_text_passes() {
        let deep = format!("name: n\nmatch: {}", "[".repeat(1_000_000));
        let started = std::time::Instant::now();
        let error = check(&deep).unwrap_err();
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(error.contains("more than 256 deep (at line 2)"), "{error}");
        let balanced = "[".repeat(256) + &"]".repeat(256);
        assert!(check(&balanced).is_ok());
        let many: String = (0..10_000).map(|_| "- {a: [1, 2], b: {c: d}}\n").collect();
        assert!(check(&many).is_ok());
    }

    #[test]
    fn files_past_the_bound_are_refused_with_their_size() {
        let dir = std::env::temp_dir().join(format!("meshtel-read-file-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let small = dir.join("small.yaml");
        std::fs::write(&small, "services: []\n").unwrap();
        assert_eq!(read_file(&small).unwrap(), b"services: []\n");
        let large = dir.join("large.yaml");
        std::fs::write(&large, vec![b'#'; MAX_FILE_BYTES as usize + 1]).unwrap();
        let error = read_file(&large).unwrap_err();
        assert!(matches!(error, FileError::TooLarge { bytes: Some(bytes) } if bytes == MAX_FILE_BYTES + 1));
        assert!(error.to_string().contains("4194305 bytes, more than the 4194304"), "{error}");
        let missing = read_file(&dir.join("missing.yaml")).unwrap_err();
        assert!(matches!(missing, FileError::Io(_)), "{missing:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
