//! Go `time.ParseDuration` syntax, which the Jaeger API uses for `minDuration` and
//! `maxDuration`: an optional sign, then one or more decimal numbers each with a unit
//! (`ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`), e.g. `1h2m`, `1.5ms`. `0` alone needs
//! no unit. Errors carry Go's wording so that clients see the messages Jaeger gives.
//!
//! [`parse_prometheus_duration`] reads Prometheus' syntax instead (`1d`, `1h30m`, or a
//! bare number of seconds), which the metrics API takes for windows and steps.
//!
//! [`parse_config_duration`] reads durations in configuration files, flags and
//! environment variables (humantime's syntax), with an error that says which forms
//! they take.

use std::time::Duration;

use crate::Error;

/// The forms a duration in configuration takes, for error messages.
pub const DURATION_FORMS: &str = "a number with a unit: ms, s, m, h or d (units combine), \
                                  e.g. \"100ms\", \"30s\", \"1h30m\" or \"7d\"";

/// Parses a duration of configuration, a flag or an environment variable (`"100ms"`,
/// `"7d"`, `"1h 30m"`); an error names the text, what is wrong with it and the forms a
/// duration takes.
pub fn parse_config_duration(text: &str) -> Result<Duration, String> {
    let trimmed = text.trim();
    humantime::parse_duration(trimmed)
        .map_err(|e| format!("{trimmed:?} is not a duration ({e}): write {DURATION_FORMS}"))
}

/// Parses a Go duration string into a [`Duration`]; negative values are rejected.
pub fn parse_go_duration(text: &str) -> Result<Duration, Error> {
    let invalid = || Error::InvalidDuration(text.to_string());
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
        // As Go reads it: digits, then at most one '.' and digits; what follows up to
        // the next digit or '.' is the unit (so `1.5.5s` is "missing unit").
        let digits = |s: &str| s.bytes().take_while(u8::is_ascii_digit).count();
        let whole = digits(rest);
        let mut num_len = whole;
        let mut fraction = 0;
        if rest[num_len..].starts_with('.') {
            fraction = digits(&rest[num_len + 1..]);
            num_len += 1 + fraction;
        }
        if whole == 0 && fraction == 0 {
            return Err(invalid());
        }
        let number = &rest[..num_len];
        let value: f64 = number.parse().map_err(|_| invalid())?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let scale = match unit {
            "" => return Err(Error::DurationWithoutUnit(text.to_string())),
            "ns" => 1.0,
            "us" | "µs" | "μs" => 1e3,
            "ms" => 1e6,
            "s" => 1e9,
            "m" => 60e9,
            "h" => 3600e9,
            other => {
                return Err(Error::UnknownDurationUnit {
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
        return Err(Error::NegativeDuration(text.to_string()));
    }
    Ok(Duration::from_nanos(total_nanos.round() as u64))
}

/// Prometheus' units, largest first, in milliseconds.
const PROMETHEUS_UNITS: [(&str, u64); 7] = [
    ("y", 365 * 24 * 3_600_000),
    ("w", 7 * 24 * 3_600_000),
    ("d", 24 * 3_600_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];

/// Parses a Prometheus duration: integers each with a unit, largest unit first and each
/// at most once (`1d12h`, `90m`, `30s`, `500ms`; units `y` = 365 d, `w`, `d`, `h`, `m`,
/// `s`, `ms`), or a bare non-negative number of seconds (`60`, `1.5`), as Prometheus'
/// HTTP API also accepts for `step`. Errors use [`Error`]'s wording; negative
/// values are rejected.
pub fn parse_prometheus_duration(text: &str) -> Result<Duration, Error> {
    let invalid = || Error::InvalidDuration(text.to_string());
    if let Some(rest) = text.strip_prefix('-') {
        return match parse_prometheus_duration(rest) {
            Ok(d) if d.is_zero() => Ok(d),
            Ok(_) => Err(Error::NegativeDuration(text.to_string())),
            Err(_) => Err(invalid()),
        };
    }
    if text.is_empty() {
        return Err(invalid());
    }
    if text.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        // A bare number of seconds.
        if text == "." || text.matches('.').count() > 1 {
            return Err(invalid());
        }
        let seconds: f64 = text.parse().map_err(|_| invalid())?;
        return Duration::try_from_secs_f64(seconds).map_err(|_| invalid());
    }
    let mut rest = text;
    let mut total_ms: u64 = 0;
    let mut previous_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(invalid());
        }
        let number: u64 = rest[..digits].parse().map_err(|_| invalid())?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        if unit.is_empty() {
            return Err(Error::DurationWithoutUnit(text.to_string()));
        }
        if unit.starts_with('.') {
            return Err(invalid());
        }
        let Some((rank, (_, unit_ms))) = PROMETHEUS_UNITS
            .iter()
            .enumerate()
            .find(|(_, (name, _))| *name == unit)
        else {
            return Err(Error::UnknownDurationUnit {
                unit: unit.to_string(),
                text: text.to_string(),
            });
        };
        if previous_unit.is_some_and(|previous| rank <= previous) {
            return Err(invalid());
        }
        previous_unit = Some(rank);
        total_ms = number
            .checked_mul(*unit_ms)
            .and_then(|ms| total_ms.checked_add(ms))
            .ok_or_else(invalid)?;
    }
    Ok(Duration::from_millis(total_ms))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn configuration_durations_and_their_errors() {
        assert_eq!(parse_config_duration("100ms"), Ok(Duration::from_millis(100)));
        assert_eq!(parse_config_duration(" 7d "), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_config_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        for (bad, why) in [("abc", "expected number"), ("10", "time unit needed"), ("5 fortnights", "unknown time unit")] {
            let e = parse_config_duration(bad).unwrap_err();
            assert!(e.starts_with(&format!("{bad:?} is not a duration (")), "{e}");
            assert!(e.contains(why) && e.contains("\"100ms\""), "{e}");
        }
    }

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
        assert!(matches!(parse_go_duration("1"), Err(Error::DurationWithoutUnit(_))));
        assert!(matches!(parse_go_duration("1d"), Err(Error::UnknownDurationUnit { .. })));
        assert!(matches!(parse_go_duration(""), Err(Error::InvalidDuration(_))));
        assert!(matches!(parse_go_duration("x"), Err(Error::InvalidDuration(_))));
        assert!(matches!(parse_go_duration(".s"), Err(Error::InvalidDuration(_))));
        // Go reads `1.` then a unit that stops at the next '.': none.
        for missing in ["1..2s", "1.5.5s"] {
            assert_eq!(
                parse_go_duration(missing).unwrap_err().to_string(),
                format!("time: missing unit in duration \"{missing}\"")
            );
        }
        assert_eq!(parse_go_duration("1.s").unwrap(), Duration::from_secs(1));
        assert_eq!(parse_go_duration(".5s").unwrap(), Duration::from_millis(500));
        assert!(matches!(parse_go_duration("-1s"), Err(Error::NegativeDuration(_))));
        assert_eq!(
            parse_go_duration("1d").unwrap_err().to_string(),
            "time: unknown unit \"d\" in duration \"1d\""
        );
    }

    #[test]
    fn prometheus_durations() {
        let secs = |s: u64| Some(Duration::from_secs(s));
        assert_eq!(parse_prometheus_duration("30s").ok(), secs(30));
        assert_eq!(parse_prometheus_duration("5m").ok(), secs(300));
        assert_eq!(parse_prometheus_duration("1h").ok(), secs(3600));
        assert_eq!(parse_prometheus_duration("1d").ok(), secs(86_400));
        assert_eq!(parse_prometheus_duration("1w").ok(), secs(7 * 86_400));
        assert_eq!(parse_prometheus_duration("1y").ok(), secs(365 * 86_400));
        assert_eq!(parse_prometheus_duration("1d12h30m").ok(), secs(131_400));
        assert_eq!(
            parse_prometheus_duration("1s500ms").ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_prometheus_duration("60").ok(), secs(60));
        assert_eq!(
            parse_prometheus_duration("1.5").ok(),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(parse_prometheus_duration("0").ok(), secs(0));
        assert_eq!(parse_prometheus_duration("-0s").ok(), secs(0));
        for bad in [
            "",
            ".",
            "1..2",
            "s",
            "1.5h",
            "1h1d",
            "1m1m",
            "1h5",
            "--1s",
            "99999999999999999999s",
        ] {
            assert!(parse_prometheus_duration(bad).is_err(), "{bad:?}");
        }
        assert!(matches!(
            parse_prometheus_duration("-5m"),
            Err(Error::NegativeDuration(_))
        ));
        assert!(matches!(
            parse_prometheus_duration("1h5"),
            Err(Error::DurationWithoutUnit(_))
        ));
        assert_eq!(
            parse_prometheus_duration("5x").unwrap_err().to_string(),
            "time: unknown unit \"x\" in duration \"5x\""
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
            let _ = parse_prometheus_duration(&s);
        }

        #[test]
        fn prometheus_units_add_up(d in 0u64..8, h in 0u64..24, m in 0u64..60, s in 0u64..60) {
            let text = format!("{d}d{h}h{m}m{s}s");
            let expected = Duration::from_secs(((d * 24 + h) * 60 + m) * 60 + s);
            prop_assert_eq!(parse_prometheus_duration(&text).unwrap(), expected);
        }
    }
}
