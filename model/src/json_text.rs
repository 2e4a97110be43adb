//! JSON text as Go's `encoding/json` (the OpenTelemetry Collector's) reads it: bytes
//! that are not UTF-8, and `\u` escapes of UTF-16 surrogates that are not part of a
//! pair (what JavaScript's `JSON.stringify` writes for a string cut in the middle of an
//! emoji), become U+FFFD instead of refusing the whole body. serde_json refuses both,
//! and one such string would otherwise cost every span of its request.

/// Parses a JSON body, its text repaired as the module says; returns the value and in
/// how many places the text was repaired. The body is scanned for such places only
/// when it fails to parse.
pub fn parse_json_text<T: serde::de::DeserializeOwned>(
    body: &[u8],
) -> Result<(T, usize), serde_json::Error> {
    match serde_json::from_slice(body) {
        Ok(value) => Ok((value, 0)),
        Err(error) => match repair_json_text(body) {
            Some((fixed, repaired)) => serde_json::from_slice(&fixed).map(|v| (v, repaired)),
            None => Err(error),
        },
    }
}

/// The warning an answer carries when [`parse_json_text`] repaired text.
pub fn repaired_text_warning(repaired: usize) -> String {
    format!("replaced invalid UTF-8 or lone UTF-16 surrogates in {repaired} place(s) with U+FFFD")
}

/// `body` with its invalid UTF-8 and lone surrogate escapes replaced by U+FFFD (see
/// [`parse_json_text`]), and how many places that changed; `None` when none did.
pub fn repair_json_text(body: &[u8]) -> Option<(Vec<u8>, usize)> {
    let mut repaired = 0;
    let mut text = Vec::with_capacity(body.len());
    for chunk in body.utf8_chunks() {
        text.extend_from_slice(chunk.valid().as_bytes());
        if !chunk.invalid().is_empty() {
            text.extend_from_slice("\u{fffd}".as_bytes());
            repaired += 1;
        }
    }
    for at in lone_surrogate_escapes(&text) {
        // `\uD83D` and `\uFFFD` are both six bytes: replaced in place.
        text[at..at + 6].copy_from_slice(b"\\ufffd");
        repaired += 1;
    }
    (repaired > 0).then_some((text, repaired))
}

/// Where `\u` escapes of a UTF-16 surrogate that is not half of a pair begin.
/// Backslashes appear in JSON only inside strings, as escapes, so each one found
/// scanning from the start begins an escape.
fn lone_surrogate_escapes(text: &[u8]) -> Vec<usize> {
    fn unit(text: &[u8], at: usize) -> Option<u16> {
        let escape = text.get(at..at + 6)?;
        if escape[..2] != *b"\\u" {
            return None;
        }
        u16::from_str_radix(std::str::from_utf8(&escape[2..]).ok()?, 16).ok()
    }
    let mut found = Vec::new();
    let mut i = 0;
    while let Some(offset) = text
        .get(i..)
        .and_then(|rest| rest.iter().position(|&b| b == b'\\'))
    {
        let at = i + offset;
        i = match unit(text, at) {
            Some(0xD800..=0xDBFF) if matches!(unit(text, at + 6), Some(0xDC00..=0xDFFF)) => at + 12,
            Some(0xD800..=0xDFFF) => {
                found.push(at);
                at + 6
            }
            Some(_) => at + 6,
            // Any other escape is two bytes (`\"`, `\\`, `\n`...).
            None => at + 2,
        };
    }
    found
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    fn parsed(text: &[u8]) -> (Value, usize) {
        parse_json_text(text).expect("parses")
    }

    #[test]
    fn lone_surrogates_and_bytes_that_are_not_utf8_become_replacement_characters() {
        assert_eq!(
            parsed(br#"{"a":"Hi \ud83d"}"#),
            (json!({"a": "Hi \u{fffd}"}), 1)
        );
        assert_eq!(
            parsed(br#"["\uDE00x","\udbff"]"#),
            (json!(["\u{fffd}x", "\u{fffd}"]), 2)
        );
        assert_eq!(
            parsed(b"[\"caf\xe9\",\"\xff\xfe\"]"),
            (json!(["caf\u{fffd}", "\u{fffd}\u{fffd}"]), 3)
        );
        // A high surrogate followed by another high one: both lone.
        assert_eq!(
            parsed(br#"["\ud83d\ud83d"]"#),
            (json!(["\u{fffd}\u{fffd}"]), 2)
        );
    }

    #[test]
    fn valid_text_and_other_escapes_are_left_as_they_are() {
        assert_eq!(
            parsed(br#"["\ud83d\ude00","caf\u00e9"]"#),
            (json!(["\u{1f600}", "caf\u{e9}"]), 0)
        );
        // An escaped backslash followed by `ud83d` is text, not an escape.
        assert_eq!(parsed(br#"["\\ud83d"]"#), (json!(["\\ud83d"]), 0));
        assert!(repair_json_text(br#"{"a":"\\ud83d \n \"q\""}"#).is_none());
        // Broken for another reason: the parser's own error.
        let error = parse_json_text::<Value>(br#"{"a":"\ud83d"#).unwrap_err();
        assert!(error.is_eof(), "{error}");
    }
}
