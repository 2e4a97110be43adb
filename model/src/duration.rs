//! Go `time.ParseDuration` syntax, which the Jaeger API uses for `minDuration` and
//! `maxDuration`: an optional sign, then one or more decimal numbers each with a unit
//! (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), e.g. `1h2m`, `1.5ms`. `0` alone needs
//! no unit. Errors carry Go's wording so that clients see the messages Jaeger gives.

use std::time::Duration;

/// Why a duration string was rejected; the text matches Go's `time` package.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    /// Not a duration at all.
    #[error("time: invalid duration \"{0}\"")]
    Invalid(String),
    /// A number without a unit.
    #[error("time: missing unit in duration \"{0}\"")]
    MissingUnit(String),
    /// A unit Go does not know (`d`, `w`, ...).
    #[error("time: unknown unit \"{unit}\" in duration \"{text}\"")]
    UnknownUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        text: String,
    },
    /// Negative durations cannot bound a span duration.
    #[error("time: negative duration \"{0}\" is not allowed here")]
    Negative(String),
}

/// Parses a Go duration string into a [`Duration`]; negative values are rejected.
pub fn parse_go_duration(text: &str) -> Result<Duration, DurationError> {
    let invalid = || DurationError::Invalid(text.to_string());
    let mut rest = text;
    let mut negative = false;
    if let Some(r) = rest.strip_prefix('-') {
        negative = true;
        rest = r;
    } else if let Some(r) = rest.strip_prefix('+') {
        rest = r;
    }
    if rest == "0" {
        return Ok(Duration::ZERO);
    }
    if rest.is_empty() {
        return Err(invalid());
    }
    let mut total_nanos: f64 = 0.0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number = &rest[..num_len];
        if number.is_empty() || number == "." || number.matches('.').count() > 1 {
            return Err(invalid());
        }
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(DurationError::MissingUnit(text.to_string())),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => {
                return Err(DurationError::UnknownUnit {
                    unit: other.to_string(),
                    text: text.to_string(),
                });
            }
        };
        total_nanos += value * scale;
    }
    if total_nanos > u64::MAX as f64 / 2.0 {
        return Err(invalid());
    }
    if negative && total_nanos > 0.0 {
        return Err(DurationError::Negative(text.to_string()));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn accepts_go_forms() {
        assert_eq!(parse_go_duration("0").unwrap(), Duration::ZERO);
        assert_eq!(parse_go_duration("5s").unwrap(), Duration::from_secs(5));
        assert_eq!(parse_go_duration("1.2ms").unwrap(), Duration::from_micros(1200));
        assert_eq!(parse_go_duration("500us").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_go_duration("500µs").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_go_duration("500μs").unwrap(), Duration::from_micros(500));
        assert_eq!(parse_go_duration("1h2m").unwrap(), Duration::from_secs(3720));
        assert_eq!(parse_go_duration("+3ns").unwrap(), Duration::from_nanos(3));
    }

    #[test]
    fn rejects_what_go_rejects() {
        assert!(matches!(parse_go_duration("1"), Err(DurationError::MissingUnit(_))));
        assert!(matches!(parse_go_duration("1d"), Err(DurationError::UnknownUnit { .. })));
        assert!(matches!(parse_go_duration(""), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_go_duration("x"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_go_duration("1..2s"), Err(DurationError::Invalid(_))));
        assert!(matches!(parse_go_duration("-1s"), Err(DurationError::Negative(_))));
        assert_eq!(
            parse_go_duration("1d").unwrap_err().to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
    }

    proptest! {
        #[test]
        fn millis_round_trip(ms in 0u64..10_000_000) {
            prop_assert_eq!(parse_go_duration(&format!("{ms}ms")).unwrap(), Duration::from_millis(ms));
        }

        #[test]
        fn never_panics(s in "\\PC{0,12}") {
            let _ = parse_go_duration(&s);
        }
    }
}
