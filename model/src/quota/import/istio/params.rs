//! memquota and redisquota handler params → limits.
//!
//! - memquota counts in a rolling window of 100 ms ticks whose length is
//!   `validDuration` rounded up to whole seconds: `algorithm: rolling-window`,
//!   `bucketDuration: 100ms` (longer for windows over 10,000 s, which would hold more
//!   buckets than meshtel keeps per key), the window rounded up the same way. Overrides carry their
//!   own `validDuration`; without one memquota keeps a counter that never resets (an
//!   allocation quota), which meshtel does not have, so it is refused.
//! - redisquota: `FIXED_WINDOW` (default) → `fixed-window`; `ROLLING_WINDOW` →
//!   `rolling-window` with its `bucketDuration`. Overrides share the quota's window.

use crate::Error;
use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;
use serde::de::IgnoredAny;
use yaml_serde::Value;

use super::{ObjectId, at, parse, resolve_ref};
use crate::duration::parse_go_duration;
use crate::quota::import::{describe, field_error, scalar_text, type_name};
use crate::quota::policy::QuotaOverrideSpec;
use crate::quota::MAX_BUCKETS_PER_WINDOW;

/// memquota's tick: its windows are made of 100 ms slots.
const MEMQUOTA_TICK: &str = "100ms";

/// One `quotas[]` entry of a handler, translated.
#[derive(Debug)]
pub(super) struct HandlerQuota {
    /// Field path, e.g. `spec.params.quotas[0]`.
    pub field: String,
    /// The instance it limits.
    pub instance: ObjectId,
    pub max_amount: u64,
    pub valid_duration: String,
    pub algorithm: &'static str,
    pub bucket_duration: Option<String>,
    /// Overrides with the field path of each.
    pub overrides: Vec<(String, QuotaOverrideSpec)>,
    /// Things the description should say (rounding).
    pub notes: Vec<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemquotaParams {
    #[serde(default)]
    quotas: Vec<Value>,
    #[serde(default, rename = "minDeduplicationDuration")]
    _min_deduplication_duration: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RedisquotaParams {
    #[serde(default)]
    quotas: Vec<Value>,
    #[serde(default, rename = "redisServerUrl")]
    _redis_server_url: Option<IgnoredAny>,
    #[serde(default, rename = "connectionPoolSize")]
    _connection_pool_size: Option<IgnoredAny>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemquotaQuota {
    name: String,
    #[serde(default)]
    max_amount: Option<Value>,
    #[serde(default)]
    valid_duration: Option<Value>,
    #[serde(default)]
    overrides: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MemquotaOverride {
    #[serde(default)]
    dimensions: BTreeMap<String, Value>,
    #[serde(default)]
    max_amount: Option<Value>,
    #[serde(default)]
    valid_duration: Option<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RedisquotaQuota {
    name: String,
    #[serde(default)]
    max_amount: Option<Value>,
    #[serde(default)]
    valid_duration: Option<Value>,
    #[serde(default)]
    bucket_duration: Option<Value>,
    #[serde(default)]
    rate_limit_algorithm: Option<Value>,
    #[serde(default)]
    overrides: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RedisquotaOverride {
    #[serde(default)]
    dimensions: BTreeMap<String, Value>,
    #[serde(default)]
    max_amount: Option<Value>,
}

/// Translates a handler's `quotas`. `field` is the params' path (`spec.params`, or
/// `spec` for the old `memquota`/`redisquota` kinds).
pub(super) fn handler_quotas(
    adapter: &str,
    params: &Value,
    label: &str,
    field: &str,
    namespace: &str,
) -> Result<Vec<HandlerQuota>, Error> {
    let quotas = if adapter == "memquota" {
        parse::<MemquotaParams>(params, || at(label, field))?.quotas
    } else {
        parse::<RedisquotaParams>(params, || at(label, field))?.quotas
    };
    let mut out: Vec<HandlerQuota> = Vec::new();
    for (i, value) in quotas.iter().enumerate() {
        let field = format!("{field}.quotas[{i}]");
        let quota = if adapter == "memquota" {
            memquota_quota(value, label, field, namespace)?
        } else {
            redisquota_quota(value, label, field, namespace)?
        };
        if let Some(previous) = out.iter().find(|q| q.instance == quota.instance) {
            return Err(field_error(
                at(label, &format!("{}.name", quota.field)),
                format!(
                    "instance {} already has a limit in {}",
                    quota.instance, previous.field
                ),
            ));
        }
        out.push(quota);
    }
    Ok(out)
}

fn memquota_quota(
    value: &Value,
    label: &str,
    field: String,
    namespace: &str,
) -> Result<HandlerQuota, Error> {
    let q: MemquotaQuota = parse(value, || at(label, &field))?;
    let (instance, max_amount) =
        instance_and_amount(&q.name, q.max_amount.as_ref(), label, &field, namespace)?;
    let mut notes = Vec::new();
    let (window_text, window) = memquota_window(
        q.valid_duration.as_ref(),
        label,
        &format!("{field}.validDuration"),
        &mut notes,
    )?;
    let mut overrides = Vec::new();
    let mut windows = vec![window];
    for (j, value) in q.overrides.iter().enumerate() {
        let of = format!("{field}.overrides[{j}]");
        let o: MemquotaOverride = parse(value, || at(label, &of))?;
        let dimensions = override_dimensions(&o.dimensions, label, &of)?;
        let max_amount = positive_amount(o.max_amount.as_ref(), label, &format!("{of}.maxAmount"))?;
        let (valid_text, valid) = memquota_window(
            o.valid_duration.as_ref(),
            label,
            &format!("{of}.validDuration"),
            &mut notes,
        )?;
        windows.push(valid);
        let valid_duration = (valid != window).then_some(valid_text);
        overrides.push((
            of,
            QuotaOverrideSpec {
                dimensions,
                max_amount,
                valid_duration,
            },
        ));
    }
    let bucket_duration = memquota_bucket(&windows, label, &field, &mut notes)?;
    Ok(HandlerQuota {
        field,
        instance,
        max_amount,
        valid_duration: window_text,
        algorithm: "rolling-window",
        bucket_duration: Some(bucket_duration),
        overrides,
        notes,
    })
}

fn redisquota_quota(
    value: &Value,
    label: &str,
    field: String,
    namespace: &str,
) -> Result<HandlerQuota, Error> {
    let q: RedisquotaQuota = parse(value, || at(label, &field))?;
    let (instance, max_amount) =
        instance_and_amount(&q.name, q.max_amount.as_ref(), label, &field, namespace)?;
    let valid_field = format!("{field}.validDuration");
    let (valid_text, valid) = duration(q.valid_duration.as_ref(), label, &valid_field)?
        .filter(|(_, d)| !d.is_zero())
        .ok_or_else(|| {
            field_error(
                at(label, &valid_field),
                "is required and must be greater than zero",
            )
        })?;
    let algorithm_field = format!("{field}.rateLimitAlgorithm");
    let rolling = match q.rate_limit_algorithm.as_ref().map(|v| (scalar_text(v), v)) {
        None => false,
        Some((Some(text), _)) if text == "FIXED_WINDOW" || text == "0" => false,
        Some((Some(text), _)) if text == "ROLLING_WINDOW" || text == "1" => true,
        Some((_, v)) => {
            return Err(field_error(
                at(label, &algorithm_field),
                format!("{} is not FIXED_WINDOW or ROLLING_WINDOW", describe(v)),
            ));
        }
    };
    let bucket_field = format!("{field}.bucketDuration");
    let bucket_duration = if rolling {
        let (text, bucket) = duration(q.bucket_duration.as_ref(), label, &bucket_field)?
            .filter(|(_, d)| !d.is_zero())
            .ok_or_else(|| {
                field_error(
                    at(label, &bucket_field),
                    "is required for ROLLING_WINDOW and must be greater than zero",
                )
            })?;
        if bucket >= valid {
            return Err(field_error(
                at(label, &bucket_field),
                format!("{text} must be shorter than validDuration {valid_text}"),
            ));
        }
        Some(text)
    } else {
        // redisquota ignores bucketDuration for FIXED_WINDOW; so do we.
        None
    };
    let mut overrides = Vec::new();
    for (j, value) in q.overrides.iter().enumerate() {
        let of = format!("{field}.overrides[{j}]");
        let o: RedisquotaOverride = parse(value, || at(label, &of))?;
        let dimensions = override_dimensions(&o.dimensions, label, &of)?;
        let max_amount = positive_amount(o.max_amount.as_ref(), label, &format!("{of}.maxAmount"))?;
        overrides.push((
            of,
            QuotaOverrideSpec {
                dimensions,
                max_amount,
                valid_duration: None,
            },
        ));
    }
    Ok(HandlerQuota {
        field,
        instance,
        max_amount,
        valid_duration: valid_text,
        algorithm: if rolling {
            "rolling-window"
        } else {
            "fixed-window"
        },
        bucket_duration,
        overrides,
        notes: Vec::new(),
    })
}

/// The instance a `quotas[]` entry limits (`name`, e.g.
/// `requestcountquota.instance.istio-system`) and its `maxAmount`.
fn instance_and_amount(
    name: &str,
    max_amount: Option<&Value>,
    label: &str,
    field: &str,
    namespace: &str,
) -> Result<(ObjectId, u64), Error> {
    let instance = resolve_ref(name, namespace).ok_or_else(|| {
        field_error(
            at(label, &format!("{field}.name")),
            format!("{name:?} is not an instance name (<name>.instance.<namespace>)"),
        )
    })?;
    let amount = positive_amount(max_amount, label, &format!("{field}.maxAmount"))?;
    Ok((instance, amount))
}

/// Override dimensions as strings; at least one.
fn override_dimensions(
    dimensions: &BTreeMap<String, Value>,
    label: &str,
    field: &str,
) -> Result<BTreeMap<String, String>, Error> {
    if dimensions.is_empty() {
        return Err(Error::ImportUnsupported {
            location: at(label, &format!("{field}.dimensions")),
            expression: "{}".into(),
            reason: "an override without dimensions applies to every request; set the quota's \
                     maxAmount instead"
                .into(),
        });
    }
    let mut out = BTreeMap::new();
    for (name, value) in dimensions {
        let text = scalar_text(value).ok_or_else(|| {
            field_error(
                at(label, &format!("{field}.dimensions.{name}")),
                format!("is {}, expected a string", type_name(value)),
            )
        })?;
        out.insert(name.clone(), text);
    }
    Ok(out)
}

/// A positive integer (number or numeric string, as proto JSON allows for int64).
fn positive_amount(value: Option<&Value>, label: &str, field: &str) -> Result<u64, Error> {
    let amount = match value {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse::<i64>().ok(),
        Some(_) => None,
    };
    match amount {
        Some(a) if a > 0 => Ok(a.unsigned_abs()),
        Some(a) => Err(field_error(
            at(label, field),
            format!("{a} must be greater than zero"),
        )),
        None if value.is_none_or(Value::is_null) => Err(field_error(
            at(label, field),
            "is required and must be greater than zero",
        )),
        None => Err(field_error(
            at(label, field),
            format!(
                "{} is not an integer",
                value.map_or_else(String::new, describe)
            ),
        )),
    }
}

/// A duration as written (`1s`, `1.5s`, `500ms`) and its value; `None` when absent.
fn duration(
    value: Option<&Value>,
    label: &str,
    field: &str,
) -> Result<Option<(String, Duration)>, Error> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) if n.as_u64() == Some(0) => Ok(Some(("0s".into(), Duration::ZERO))),
        Some(Value::String(text)) => match parse_go_duration(text.trim()) {
            Ok(d) => Ok(Some((text.trim().to_string(), d))),
            Err(e) => Err(field_error(at(label, field), e.to_string())),
        },
        Some(v) => Err(field_error(
            at(label, field),
            format!("{} is not a duration such as 1s or 500ms", describe(v)),
        )),
    }
}

/// memquota's 100 ms tick, or longer buckets when a window (the quota's or an
/// override's) would hold more than meshtel keeps per key
/// ([`MAX_BUCKETS_PER_WINDOW`]). A policy has one bucket length, no longer than its
/// shortest window: windows further apart than that bound are refused.
fn memquota_bucket(
    windows: &[Duration],
    label: &str,
    field: &str,
    notes: &mut Vec<String>,
) -> Result<String, Error> {
    let longest = windows.iter().copied().max().unwrap_or_default();
    let shortest = windows.iter().copied().min().unwrap_or_default();
    let tick_ms = longest.as_millis().div_ceil(MAX_BUCKETS_PER_WINDOW).max(100);
    if tick_ms == 100 {
        return Ok(MEMQUOTA_TICK.to_string());
    }
    if Duration::from_millis(u64::try_from(tick_ms).unwrap_or(u64::MAX)) > shortest {
        return Err(Error::ImportUnsupported {
            location: at(label, field),
            expression: format!("windows of {shortest:?} and {longest:?}"),
            reason: format!(
                "a meshtel rolling window has one bucket length for the quota and its \
                 overrides, at most its shortest window and at least a \
                 {MAX_BUCKETS_PER_WINDOW}th of its longest; split the quota in two"
            ),
        });
    }
    notes.push(format!(
        "{field}: buckets of {tick_ms}ms instead of memquota's 100ms ticks, so that a window of \
         {longest:?} holds at most {MAX_BUCKETS_PER_WINDOW} of them"
    ));
    Ok(format!("{tick_ms}ms"))
}

/// A memquota window, as text and value: required and non-zero (zero is an allocation
/// quota), rounded up to whole seconds as memquota does (the text is kept when no
/// rounding is needed).
fn memquota_window(
    value: Option<&Value>,
    label: &str,
    field: &str,
    notes: &mut Vec<String>,
) -> Result<(String, Duration), Error> {
    let Some((text, d)) = duration(value, label, field)?.filter(|(_, d)| !d.is_zero()) else {
        return Err(Error::ImportUnsupported {
            location: at(label, field),
            expression: value.map_or_else(|| "(absent)".to_string(), describe),
            reason: "without a validDuration memquota keeps a counter that never resets (an \
                     allocation quota), which meshtel does not support; set a window such as 1s"
                .into(),
        });
    };
    let rounded = Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0));
    if rounded == d {
        return Ok((text, d));
    }
    let rounded_text = whole_seconds_text(rounded);
    notes.push(format!(
        "{field} {text} rounded up to {rounded_text} as memquota does"
    ));
    Ok((rounded_text, rounded))
}

fn whole_seconds_text(d: Duration) -> String {
    format!("{}s", d.as_secs())
}
