//! The request path as routing, quota matching and the upstream see it, normalized as
//! Istio's default `pathNormalization` (`BASE`: Envoy's `normalize_path`) does it, so
//! that `/public/../admin`, `/./admin` or `/%61dmin` cannot pass a rule written for
//! `/admin`:
//!
//! - a percent-encoded unreserved character (`A-Z a-z 0-9 - . _ ~`, RFC 3986 §2.3) is
//!   decoded; other escapes keep their meaning, hex digits in upper case (`%2f` →
//!   `%2F`, which stays an escaped byte, not a separator);
//! - a backslash becomes `/` (as `BASE` does: `/x\..\admin` is `/admin`);
//! - `.` and `..` segments are removed (RFC 3986 §5.2.4); `..` never climbs above `/`.
//!
//! Slashes are not merged, as under `BASE`. The query is not touched. A target that is
//! not a path (`*` of `OPTIONS *`) is left as it is. A path with an escaped NUL (`%00`)
//! is refused, as Envoy's normalization refuses it (400): the upstream could read the
//! path as ending there.

use meshtel_model::ids::hex_value;

/// The path has an escaped NUL byte (`%00`).
#[derive(Debug, PartialEq, Eq)]
pub(super) struct EscapedNul;

/// `path` (without its query) normalized, or `None` when it already is.
pub(super) fn normalize(path: &str) -> Result<Option<String>, EscapedNul> {
    // Most paths have no escape and no dot segment: one pass, no allocation.
    let dot_segment = || path.split('/').any(|segment| segment == "." || segment == "..");
    if !path.starts_with('/') || (!path.contains(['%', '\\']) && !dot_segment()) {
        return Ok(None);
    }
    let decoded = decode_unreserved(path)?;
    let normal = remove_dot_segments(&decoded);
    Ok((normal != path).then_some(normal))
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Decodes the escapes of unreserved characters, upper-cases the others' hex digits
/// and turns `\` into `/`. A `%` not followed by two hex digits is kept as it is, and
/// so is every other byte (a non-ASCII one too), so the result is text as the input is.
fn decode_unreserved(path: &str) -> Result<String, EscapedNul> {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = Vec::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let escaped = match (bytes.get(i + 1).copied().and_then(hex_value), bytes.get(i + 2).copied().and_then(hex_value)) {
            (Some(high), Some(low)) if bytes[i] == b'%' => Some(high << 4 | low),
            _ => None,
        };
        match escaped {
            Some(0) => return Err(EscapedNul),
            Some(byte) if is_unreserved(byte) => out.push(byte),
            Some(byte) => out.extend_from_slice(&[b'%', HEX[usize::from(byte >> 4)], HEX[usize::from(byte & 0xF)]]),
            None => {
                out.push(if bytes[i] == b'\\' { b'/' } else { bytes[i] });
                i += 1;
                continue;
            }
        }
        i += 3;
    }
    // Whole characters were copied byte for byte and only ASCII was added.
    Ok(String::from_utf8(out).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

/// RFC 3986 §5.2.4 on an absolute path.
fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    // Every segment after the leading `/`; the last one may be empty (a trailing `/`).
    let parts: Vec<&str> = path[1..].split('/').collect();
    let last = parts.len() - 1;
    let mut trailing_slash = false;
    for (index, segment) in parts.into_iter().enumerate() {
        match segment {
            "." => trailing_slash = index == last,
            ".." => {
                segments.pop();
                trailing_slash = index == last;
            }
            other => {
                segments.push(other);
                trailing_slash = false;
            }
        }
    }
    let mut out = String::with_capacity(path.len());
    for segment in &segments {
        out.push('/');
        out.push_str(segment);
    }
    if trailing_slash || out.is_empty() {
        out.push('/');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::{EscapedNul, normalize};

    #[test]
    fn dot_segments_and_escaped_unreserved_characters_are_normalized() {
        for (path, normal) in [
            ("/public/../admin/x", "/admin/x"),
            ("/./admin/x", "/admin/x"),
            ("/%61dmin/x", "/admin/x"),
            ("/%2e%2e/admin", "/admin"),
            ("/a/%2E/b", "/a/b"),
            ("/../../admin", "/admin"),
            ("/a/b/..", "/a/"),
            ("/a/.", "/a/"),
            ("/..", "/"),
            ("/a/%2f/b", "/a/%2F/b"),
            ("/a%zz/../b", "/b"),
            ("/caf%C3%A9/..", "/"),
            // Non-ASCII bytes after an escape are copied whole.
            ("/%41\u{e9}", "/A\u{e9}"),
            ("/%41\u{e9}/../x", "/x"),
            ("/x\\..\\admin", "/admin"),
            ("/some\\data", "/some/data"),
        ] {
            assert_eq!(normalize(path).map(|p| p.unwrap_or_default()), Ok(normal.to_owned()), "{path}");
        }
    }

    #[test]
    fn normal_paths_and_non_paths_are_left_alone() {
        for path in ["/", "/admin/x", "/a//b", "/a/b/", "/v1.2/file.txt", "/a/..b/c.", "*", "/%2F", "/x%zz", "/caf\u{e9}/x"] {
            assert_eq!(normalize(path), Ok(None), "{path}");
        }
    }

    #[test]
    fn an_escaped_nul_is_refused() {
        for path in ["/a%00b", "/%00", "/x/../%00", "/ok%2F%00"] {
            assert_eq!(normalize(path), Err(EscapedNul), "{path}");
        }
        // `%0` followed by a non-hex digit is no escape.
        assert_eq!(normalize("/a%0g"), Ok(None));
    }
}
