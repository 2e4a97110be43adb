//! Text log lines that input from the network cannot forge.
//!
//! Many fields carry text a client chose: a service or operation name, a `Host`
//! header, a proxy id. Written as they are, a newline in one starts what reads as a
//! log line of its own (`... ERROR meshtel::server: ...`), and an escape sequence
//! recolours or rewrites the operator's terminal. The text format writes every field
//! value with its control characters escaped as Rust does (`\n`, `\u{1b}`); the JSON
//! format escapes them already. Both binaries, `meshtel` and `meshtel-proxy`, log
//! through it.

use std::borrow::Cow;

use tracing_subscriber::field::RecordFields;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::{DefaultFields, Writer};

/// The log filter without RUST_LOG: INFO, but the h2 crate's per-connection warnings
/// (a client's resets or protocol errors: one line per connection, however many
/// connections a misbehaving client makes) only from `RUST_LOG=info,h2=warn`.
pub const DEFAULT_LOG_FILTER: &str = "info,h2=error";

/// The field formatter of the text format: tracing-subscriber's default (`message`
/// first, then `name=value` pairs; the `log.*` fields of records from the `log` crate
/// left out), written with control characters escaped. Field names are not
/// italicised on a terminal, since escaping would show the codes that do it.
#[derive(Debug, Default)]
pub struct EscapedFields(DefaultFields);

/// The text format's field formatter, for `fmt().fmt_fields(..)`.
pub fn escaped_fields() -> EscapedFields {
    EscapedFields::default()
}

impl<'w> FormatFields<'w> for EscapedFields {
    fn format_fields<R: RecordFields>(&self, mut writer: Writer<'w>, fields: R) -> std::fmt::Result {
        let mut text = String::new();
        self.0.format_fields(Writer::new(&mut text), fields)?;
        writer.write_str(&escape_controls(&text))
    }
}

/// `text` with each control character (C0, DEL, C1) written as its Rust escape.
pub fn escape_controls(text: &str) -> Cow<'_, str> {
    if !text.chars().any(char::is_control) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if c.is_control() {
            out.extend(c.escape_debug());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Buffer {
        fn write(&mut self, data: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("buffer").extend_from_slice(data);
            Ok(data.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_field_from_the_network_cannot_start_a_line_or_colour_the_terminal() {
        let buffer = Buffer::default();
        let sink = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || sink.clone())
            .with_ansi(false)
            .without_time()
            .fmt_fields(escaped_fields())
            .finish();
        let forged = "evil\n2026-12-05T00:00:00Z ERROR meshtel: FORGED \x1b[31mRED\x1b[0m";
        tracing::subscriber::with_default(subscriber, || {
            tracing::warn!(service = %forged, count = 3, r#type = "x", "catalog full\tfor {}", forged);
            // What tracing-log adds to a `log` record is left out, as by default.
            tracing::info!(log.target = "sqlx::query", log.line = 85, "from log");
        });
        let written = String::from_utf8(buffer.0.lock().expect("buffer").clone()).expect("utf-8");
        assert_eq!(written.lines().count(), 2, "{written}");
        assert!(!written.contains('\x1b'), "{written}");
        assert!(written.ends_with("from log\n"), "{written}");
        let written = written.lines().next().unwrap_or_default().to_owned() + "\n";
        // tracing-subscriber writes an escape in the message as `\x1b` itself; the
        // rest is escaped here.
        assert!(
            written.ends_with(
                "catalog full\\tfor evil\\n2026-12-05T00:00:00Z ERROR meshtel: FORGED \\x1b[31mRED\\x1b[0m \
                 service=evil\\n2026-12-05T00:00:00Z ERROR meshtel: FORGED \\u{1b}[31mRED\\u{1b}[0m count=3 type=\"x\"\n"
            ),
            "{written}"
        );
    }

    #[test]
    fn plain_text_is_borrowed_and_unicode_kept() {
        assert!(matches!(escape_controls("reviews.default ✓"), Cow::Borrowed(_)));
        assert_eq!(escape_controls("a\r\nb\u{7f}\u{85}"), "a\\r\\nb\\u{7f}\\u{85}");
    }
}
