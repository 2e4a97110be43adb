//! A bound on how deep a YAML text nests its flow collections (`[...]`, `{...}`),
//! checked over its bytes before it is parsed. The YAML parser takes time quadratic in
//! that depth: a policy body of 200 KB of `[` held a runtime thread for 22 s, one of
//! 1 MB for minutes, and a rules file the proxy reloads the same. The parsers refuse
//! structures nested deeper than 128 anyway, after that time; this refuses them before.

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
}
