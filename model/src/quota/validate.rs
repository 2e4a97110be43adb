//! Compiling a [`QuotaPolicySpec`]: every problem is collected with its field path.

use std::fmt;
use std::time::Duration;

use serde::Serialize;

use super::attrs::{AttributeRef, DimensionExpr, is_header_name_byte};
use super::policy::{Algorithm, Limit, QuotaOverride, QuotaPolicy, QuotaPolicySpec};
use crate::Error;
use crate::duration::parse_go_duration;

/// Largest `maxAmount` and `burst`: Check's limit, remaining and granted amounts are int64.
const MAX_AMOUNT: u64 = i64::MAX as u64;

/// What is wrong with an amount above [`MAX_AMOUNT`].
fn too_large_amount() -> String {
    format!("must be at most {MAX_AMOUNT} (Check reports amounts as int64)")
}

/// Most buckets in one rolling window. A key's counter keeps one entry per bucket its
/// window holds grants in, so this bounds its memory (16 bytes an entry): a 1 s window
/// may have 10 µs buckets, a 7-day window buckets of 6.048 s and more.
pub(crate) const MAX_BUCKETS_PER_WINDOW: u128 = 100_000;

fn too_many_buckets(bucket: Duration, window: Duration) -> bool {
    window.as_nanos() > bucket.as_nanos().saturating_mul(MAX_BUCKETS_PER_WINDOW)
}

fn too_many_buckets_message(window: Duration) -> String {
    let shortest = Duration::from_nanos(
        u64::try_from(window.as_nanos().div_ceil(MAX_BUCKETS_PER_WINDOW)).unwrap_or(u64::MAX),
    );
    format!(
        "makes more than {MAX_BUCKETS_PER_WINDOW} buckets per window, each kept per key: \
         use buckets of at least {shortest:?} for a window of {window:?}"
    )
}

/// One problem in a policy: where (`overrides[1].maxAmount`) and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FieldError {
    /// Path of the field, in the spec's camelCase names.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

/// Longest name accepted.
const MAX_NAME: usize = 253;
/// Most dimensions a quota can key on.
const MAX_DIMENSIONS: usize = 16;
/// Most overrides per quota.
const MAX_OVERRIDES: usize = 1024;

struct Errors(Vec<FieldError>);

impl Errors {
    fn push(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            field: field.into(),
            message: message.into(),
        });
    }

    fn duration(&mut self, field: &str, text: &str) -> Option<Duration> {
        if text.is_empty() {
            self.push(field, "is required (a duration such as 1s or 500ms)");
            return None;
        }
        match parse_go_duration(text) {
            Ok(d) if d.is_zero() => {
                self.push(field, "must be greater than zero");
                None
            }
            Ok(d) => Some(d),
            Err(e) => {
                // Policies keep Mixer's Go durations, which have no day: say what to write.
                let days = matches!(&e, Error::UnknownDurationUnit { unit, .. } if unit == "d");
                let hint = if days { " (a Go duration has no days: write 168h for 7 days)" } else { "" };
                self.push(field, format!("{e}{hint}"));
                None
            }
        }
    }
}

/// Checks a quota or dimension name.
fn check_name(errors: &mut Errors, field: &str, name: &str) {
    if name.is_empty() {
        errors.push(field, "is required");
    } else if name.len() > MAX_NAME {
        errors.push(field, format!("is longer than {MAX_NAME} bytes"));
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-._".contains(&b))
        || !name.as_bytes()[0].is_ascii_alphanumeric()
    {
        errors.push(
            field,
            format!(
                "{name:?} must start with a letter or digit and hold only lower-case letters, digits, '-', '.' and '_'"
            ),
        );
    }
}

/// Checks a rate limit's name (`rateLimit.name`, or one in `replaces`): any text up to
/// [`MAX_NAME`] bytes that a header can carry.
fn check_limit_name(errors: &mut Errors, field: &str, name: &str) {
    if name.len() > MAX_NAME {
        errors.push(field, format!("is longer than {MAX_NAME} bytes"));
    } else if name.chars().any(|c| c.is_control() || c == '"') {
        errors.push(field, "must not hold control characters or '\"' (it is sent in headers)");
    }
}

impl QuotaPolicySpec {
    /// As [`Self::compile`], for a policy about to be written: it also refuses what a
    /// stored policy may hold but a new one should not, an override with the same
    /// dimensions as one before it (first match wins, so it never matches). A policy
    /// stored before that rule is enforced as it is, its dead override kept.
    pub fn compile_new(&self) -> Result<QuotaPolicy, Vec<FieldError>> {
        let mut repeated = Vec::new();
        for (i, o) in self.overrides.iter().enumerate() {
            let first = self.overrides[..i].iter().position(|p| p.dimensions == o.dimensions);
            if let Some(first) = first.filter(|_| !o.dimensions.is_empty()) {
                repeated.push(FieldError {
                    field: format!("overrides[{i}].dimensions"),
                    message: format!("the same as overrides[{first}]'s, which matches first: this one never would"),
                });
            }
        }
        match self.compile() {
            Ok(policy) if repeated.is_empty() => Ok(policy),
            Ok(_) => Err(repeated),
            Err(mut errors) => {
                errors.extend(repeated);
                Err(errors)
            }
        }
    }

    /// Validates the spec and builds the evaluable policy, or returns every problem.
    pub fn compile(&self) -> Result<QuotaPolicy, Vec<FieldError>> {
        let mut errors = Errors(Vec::new());
        check_name(&mut errors, "name", &self.name);
        let reserved_for = match self.name.as_str() {
            super::UNKNOWN_QUOTA_LABEL => Some("checks of quota names no policy has"),
            super::LIMIT_OVERRIDE_LABEL => Some("RLS descriptors that carry their own limit"),
            _ => None,
        };
        if let Some(what) = reserved_for {
            errors.push(
                "name",
                format!(
                    "{:?} is reserved: meshtel_quota_checks_total counts {what} under it; pick another name",
                    self.name
                ),
            );
        }

        // match
        let mut requirements = Vec::new();
        let m = &self.matches;
        for (side, w, attrs) in [
            (
                "source",
                &m.source,
                [
                    AttributeRef::SourceService,
                    AttributeRef::SourceWorkload,
                    AttributeRef::SourceVersion,
                    AttributeRef::SourceNamespace,
                ],
            ),
            (
                "destination",
                &m.destination,
                [
                    AttributeRef::DestinationService,
                    AttributeRef::DestinationWorkload,
                    AttributeRef::DestinationVersion,
                    AttributeRef::DestinationNamespace,
                ],
            ),
        ] {
            for (value, attr) in [&w.service, &w.workload, &w.version, &w.namespace]
                .into_iter()
                .zip(attrs)
            {
                if !value.is_empty() {
                    requirements.push((attr, value.clone()));
                }
            }
            let _ = side;
        }
        if !m.method.is_empty() {
            if !m.method.bytes().all(|b| b.is_ascii_uppercase()) {
                errors.push(
                    "match.method",
                    format!("{:?} must be an upper-case HTTP method such as GET", m.method),
                );
            }
            requirements.push((AttributeRef::RequestMethod, m.method.clone()));
        }
        let path_prefix = if m.path_prefix.is_empty() {
            None
        } else {
            if !m.path_prefix.starts_with('/') {
                errors.push("match.pathPrefix", "must start with '/'");
            }
            Some(m.path_prefix.clone())
        };
        for (name, value) in &m.headers {
            if name.is_empty() || !name.bytes().all(is_header_name_byte) {
                errors.push(format!("match.headers.{name}"), "is not a valid header name");
            }
            requirements.push((AttributeRef::RequestHeader(name.to_ascii_lowercase()), value.clone()));
        }

        // dimensions
        let mut dimensions = Vec::new();
        if self.dimensions.len() > MAX_DIMENSIONS {
            errors.push("dimensions", format!("at most {MAX_DIMENSIONS} dimensions"));
        }
        for (name, text) in &self.dimensions {
            let field = format!("dimensions.{name}");
            if name.is_empty()
                || !name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
            {
                errors.push(&field, "dimension names hold letters, digits, '-', '_' and '.'");
            }
            match DimensionExpr::parse(text) {
                Ok(e) => dimensions.push((name.clone(), e)),
                Err(e) => errors.push(field, e),
            }
        }

        // limit: 0 is allowed and denies every request that asks for anything.
        if self.max_amount > MAX_AMOUNT {
            errors.push("maxAmount", too_large_amount());
        }
        if self.burst.is_some_and(|b| b > MAX_AMOUNT) {
            errors.push("burst", too_large_amount());
        }
        if self.unlimited && self.shadow {
            errors.push("shadow", "has no effect on an unlimited quota");
        }
        let window = if self.unlimited && self.valid_duration.is_empty() {
            Some(Duration::from_secs(1))
        } else {
            errors.duration("validDuration", &self.valid_duration)
        };
        let algorithm_name = self.algorithm.as_deref().unwrap_or("fixed-window");
        let algorithm = match algorithm_name {
            "fixed-window" => Some(Algorithm::FixedWindow),
            "rolling-window" => {
                let bucket = match &self.bucket_duration {
                    Some(text) => errors.duration("bucketDuration", text),
                    None => window.map(|w| (w / 10).max(Duration::from_millis(1))),
                };
                if let (Some(b), Some(w)) = (bucket, window) {
                    if b > w {
                        errors.push("bucketDuration", "must not be longer than validDuration");
                    } else if too_many_buckets(b, w) {
                        errors.push("bucketDuration", too_many_buckets_message(w));
                    }
                }
                bucket.map(|bucket| Algorithm::RollingWindow { bucket })
            }
            "token-bucket" => {
                let burst = self.burst.unwrap_or(self.max_amount);
                if self.burst == Some(0) {
                    errors.push("burst", "must be greater than zero");
                }
                Some(Algorithm::TokenBucket { burst })
            }
            other => {
                errors.push(
                    "algorithm",
                    format!("{other:?} is not one of fixed-window, rolling-window, token-bucket"),
                );
                None
            }
        };
        if self.bucket_duration.is_some() && algorithm_name != "rolling-window" {
            errors.push("bucketDuration", "applies to algorithm rolling-window only");
        }
        if self.burst.is_some() && algorithm_name != "token-bucket" {
            errors.push("burst", "applies to algorithm token-bucket only");
        }

        // Entries of `rateLimit` without a value key the counter, in order: dimensions,
        // which overrides can match (`tier: gold` for entries `{key: tier}`).
        if let Some(rl) = &self.rate_limit {
            for e in rl.descriptors.iter().filter(|e| e.value.is_none()) {
                dimensions.push((
                    e.key.clone(),
                    DimensionExpr {
                        chain: vec![AttributeRef::RequestHeader(e.key.clone())],
                        default: None,
                    },
                ));
            }
        }

        // overrides
        if self.overrides.len() > MAX_OVERRIDES {
            errors.push("overrides", format!("at most {MAX_OVERRIDES} overrides"));
        }
        let mut overrides = Vec::new();
        for (i, o) in self.overrides.iter().enumerate() {
            let base = format!("overrides[{i}]");
            if o.dimensions.is_empty() {
                errors.push(format!("{base}.dimensions"), "must name at least one dimension");
            }
            let mut dims = Vec::new();
            for (name, value) in &o.dimensions {
                match dimensions.iter().position(|(n, _)| n == name) {
                    Some(idx) => dims.push((idx, value.clone())),
                    None if self.dimensions.contains_key(name) => {}
                    None => errors.push(
                        format!("{base}.dimensions.{name}"),
                        "is not one of the quota's dimensions",
                    ),
                }
            }
            if o.max_amount > MAX_AMOUNT {
                errors.push(format!("{base}.maxAmount"), too_large_amount());
            }
            let valid = match &o.valid_duration {
                Some(text) => errors.duration(&format!("{base}.validDuration"), text),
                None => window,
            };
            if let (Some(valid_duration), Some(algorithm)) = (valid, algorithm) {
                let algorithm = match algorithm {
                    Algorithm::TokenBucket { burst } if self.burst.is_none() => {
                        let _ = burst;
                        Algorithm::TokenBucket { burst: o.max_amount }
                    }
                    Algorithm::RollingWindow { bucket } if bucket > valid_duration => {
                        errors.push(
                            format!("{base}.validDuration"),
                            "must not be shorter than bucketDuration",
                        );
                        algorithm
                    }
                    Algorithm::RollingWindow { bucket } if too_many_buckets(bucket, valid_duration) => {
                        errors.push(format!("{base}.validDuration"), too_many_buckets_message(valid_duration));
                        algorithm
                    }
                    other => other,
                };
                overrides.push(QuotaOverride {
                    dimensions: dims,
                    limit: Limit {
                        max_amount: o.max_amount,
                        valid_duration,
                        algorithm,
                    },
                });
            }
        }

        // envoy RLS binding
        if let Some(rl) = &self.rate_limit {
            if rl.domain.is_empty() {
                errors.push("rateLimit.domain", "is required");
            } else if rl.domain == super::UNKNOWN_DOMAIN_LABEL {
                errors.push(
                    "rateLimit.domain",
                    "\"unknown\" is reserved: meshtel_quota_rls_requests_total counts requests to domains no policy limits under it; pick another domain",
                );
            }
            if rl.descriptors.is_empty() {
                errors.push("rateLimit.descriptors", "must hold at least one entry");
            }
            if !m.is_empty() {
                errors.push("match", "cannot be combined with rateLimit (descriptors are the match)");
            }
            if !self.dimensions.is_empty() {
                errors.push(
                    "dimensions",
                    "cannot be combined with rateLimit (entries without a value are the dimensions)",
                );
            }
            for (i, e) in rl.descriptors.iter().enumerate() {
                if e.key.is_empty() {
                    errors.push(format!("rateLimit.descriptors[{i}].key"), "is required");
                }
                if let Some(v) = &e.value
                    && v.find('*').is_some_and(|p| p != v.len() - 1)
                {
                    errors.push(
                        format!("rateLimit.descriptors[{i}].value"),
                        "a wildcard '*' may only end the value",
                    );
                }
                if e.share_threshold && !e.is_wildcard() {
                    errors.push(
                        format!("rateLimit.descriptors[{i}].shareThreshold"),
                        "applies to a wildcard value (ending in '*') only",
                    );
                }
            }
            if let Some(name) = &rl.name {
                check_limit_name(&mut errors, "rateLimit.name", name);
            }
            // A limit's name (`rateLimit.name`) or a policy's: the former may hold spaces.
            for (i, r) in rl.replaces.iter().enumerate() {
                let field = format!("rateLimit.replaces[{i}]");
                if r.is_empty() {
                    errors.push(field, "must not be empty");
                } else {
                    check_limit_name(&mut errors, &field, r);
                }
            }
        }

        if !errors.0.is_empty() {
            return Err(errors.0);
        }
        let (Some(valid_duration), Some(algorithm)) = (window, algorithm) else {
            return Err(vec![FieldError {
                field: "validDuration".into(),
                message: "is invalid".into(),
            }]);
        };
        Ok(QuotaPolicy {
            spec: self.clone(),
            requirements,
            path_prefix,
            dimensions,
            limit: Limit {
                max_amount: self.max_amount,
                valid_duration,
                algorithm,
            },
            overrides,
        })
    }
}

#[cfg(test)]
mod tests;
