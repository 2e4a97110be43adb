//! envoyproxy/ratelimit configuration (`domain` + nested `descriptors`) → policies.
//!
//! Validation follows envoyproxy/ratelimit's loader: unknown keys, an empty `key`, a
//! duplicate composite key (`key` or `key_value`) at one level, an invalid `unit`, a
//! `unit` together with `unlimited`, and bad `replaces` entries are errors naming the
//! descriptor path, e.g. `descriptors[0].descriptors[1] (messaging.message_type_marketing.to_number)`.
//!
//! Every descriptor with a `rate_limit` becomes one policy bound to the RLS API
//! (`rateLimit`): the domain, the entries from the root to that descriptor (an entry
//! without a value matches, and keys the counter by, any value), `replaces`;
//! `maxAmount = requests_per_unit`, `validDuration` from `unit` (a month is 30 days and
//! a year 365, as in envoyproxy/ratelimit), `algorithm: fixed-window` (its only
//! algorithm), `unlimited`, and `shadow` from `shadow_mode`. The policy is named by the
//! limit's `name`, else by envoy's stats key `<domain>.<key>_<value>.<key>...`, made a
//! valid, unique policy name. `detailed_metric` and `value_to_metric` only shape
//! envoy's metrics and are ignored; `quota_mode` is not applied (noted in the
//! description).

use std::collections::BTreeMap;

use yaml_serde::{Mapping, Value};

use super::{
    ImportError, NameSet, check_compiles, describe, field_error, sanitize_name, scalar_text,
    type_name,
};
use crate::quota::policy::{DescriptorEntrySpec, QuotaPolicySpec, RateLimitSpec};

const ROOT_KEYS: &[&str] = &["domain", "descriptors"];
const DESCRIPTOR_KEYS: &[&str] = &[
    "key",
    "value",
    "rate_limit",
    "descriptors",
    "shadow_mode",
    "quota_mode",
    "detailed_metric",
    "value_to_metric",
    "share_threshold",
];
const RATE_LIMIT_KEYS: &[&str] = &["name", "replaces", "unit", "requests_per_unit", "unlimited"];

/// A descriptor with a `rate_limit`.
struct Limit {
    /// `descriptors[0].descriptors[1] (stats key)`.
    label: String,
    /// envoy's stats key, `<domain>.<key>_<value>.<key>`.
    stats_key: String,
    entries: Vec<DescriptorEntrySpec>,
    /// The `name` as written and sanitised.
    name: Option<(String, String)>,
    replaces: Vec<String>,
    requests_per_unit: u64,
    window: &'static str,
    unlimited: bool,
    shadow: bool,
    notes: Vec<String>,
}

/// Imports the (single) document.
pub(super) fn import(root: &Value) -> Result<Vec<QuotaPolicySpec>, ImportError> {
    let Some(map) = root.as_mapping() else {
        return Err(field_error(
            "file",
            format!(
                "is {}, expected a mapping with domain and descriptors",
                type_name(root)
            ),
        ));
    };
    check_keys(map, ROOT_KEYS, "file")?;
    let domain = text_field(map, "domain", "domain")?.unwrap_or_default();
    if domain.is_empty() {
        return Err(field_error(
            "domain",
            "is required (config file cannot have empty domain)",
        ));
    }
    let mut limits = Vec::new();
    let descriptors = list_field(map, "descriptors", "descriptors")?;
    walk(
        descriptors,
        "descriptors",
        &domain,
        &mut Vec::new(),
        &mut limits,
    )?;
    if limits.is_empty() {
        return Err(ImportError::Empty(format!(
            "domain {domain:?} defines no rate_limit (descriptors without one are whitelisted)"
        )));
    }

    // Explicit names first, exactly; then derived names, made unique.
    let mut names = NameSet::default();
    let mut named: BTreeMap<&str, &str> = BTreeMap::new();
    for limit in &limits {
        if let Some((raw, name)) = &limit.name {
            if let Some(other) = named.insert(name, &limit.label) {
                return Err(field_error(
                    format!("{}, rate_limit.name", limit.label),
                    format!("{raw:?} (policy name {name:?}) is also the name of {other}"),
                ));
            }
            names.reserve(name);
        }
    }
    let mut out = Vec::with_capacity(limits.len());
    for limit in &limits {
        let name = match &limit.name {
            Some((_, name)) => name.clone(),
            None => names.unique(&sanitize_name(&limit.stats_key)),
        };
        let mut description = format!(
            "imported from envoyproxy/ratelimit domain {domain}, {}",
            limit.label
        );
        for note in &limit.notes {
            description.push_str("; ");
            description.push_str(note);
        }
        let spec = QuotaPolicySpec {
            name,
            description,
            max_amount: limit.requests_per_unit,
            valid_duration: limit.window.to_string(),
            algorithm: Some("fixed-window".into()),
            shadow: limit.shadow,
            unlimited: limit.unlimited,
            rate_limit: Some(RateLimitSpec {
                domain: domain.clone(),
                descriptors: limit.entries.clone(),
                replaces: limit.replaces.clone(),
            }),
            ..QuotaPolicySpec::default()
        };
        check_compiles(&spec, &limit.label)?;
        out.push(spec);
    }
    Ok(out)
}

/// Walks one descriptor list; `entries` holds the path from the root.
fn walk(
    list: &[Value],
    path: &str,
    parent_key: &str,
    entries: &mut Vec<DescriptorEntrySpec>,
    limits: &mut Vec<Limit>,
) -> Result<(), ImportError> {
    let mut composite_keys: BTreeMap<String, String> = BTreeMap::new();
    for (i, item) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(map) = item.as_mapping() else {
            return Err(field_error(
                at,
                format!("is {}, expected a descriptor mapping", type_name(item)),
            ));
        };
        let key = text_field(map, "key", &format!("{at}.key"))?.unwrap_or_default();
        if key.is_empty() {
            return Err(field_error(
                format!("{at}.key"),
                "is required (descriptor has empty key)",
            ));
        }
        let value = text_field(map, "value", &format!("{at}.value"))?.unwrap_or_default();
        let composite = if value.is_empty() {
            key.clone()
        } else {
            format!("{key}_{value}")
        };
        let stats_key = format!("{parent_key}.{composite}");
        let label = format!("{at} ({stats_key})");
        if let Some(other) = composite_keys.insert(composite, at.clone()) {
            return Err(field_error(
                label,
                format!("duplicate descriptor composite key {stats_key:?} (also {other})"),
            ));
        }
        check_keys(map, DESCRIPTOR_KEYS, &label)?;
        if value.is_empty() && key.ends_with('*') {
            return Err(ImportError::Unsupported {
                location: format!("{label}, key"),
                expression: key,
                reason:
                    "a wildcard key (without a value) cannot be matched; put the wildcard in value"
                        .into(),
            });
        }
        if value.find('*').is_some_and(|p| p + 1 != value.len()) {
            return Err(ImportError::Unsupported {
                location: format!("{label}, value"),
                expression: value,
                reason: "'*' is a wildcard only at the end of a value; meshtel cannot match a literal '*' before it".into(),
            });
        }
        let flag = |name: &str| bool_field(map, name, &format!("{label}, {name}"));
        let (shadow_mode, quota_mode, share_threshold) = (
            flag("shadow_mode")?,
            flag("quota_mode")?,
            flag("share_threshold")?,
        );
        flag("detailed_metric")?;
        flag("value_to_metric")?;

        let wildcard = value.ends_with('*');
        entries.push(DescriptorEntrySpec {
            key,
            value: (!value.is_empty()).then_some(value),
        });
        match map.get("rate_limit") {
            None | Some(Value::Null) => {}
            Some(Value::Mapping(rl)) => {
                let mut limit = rate_limit(rl, &label, shadow_mode)?;
                if quota_mode {
                    limit
                        .notes
                        .push("quota_mode is not applied: the limit counts like any other".into());
                }
                if wildcard && !share_threshold {
                    limit.notes.push(
                        "share_threshold is false: envoyproxy/ratelimit counts each value matching the wildcard separately".into(),
                    );
                }
                limit.stats_key = stats_key.clone();
                limit.entries = entries.clone();
                limits.push(limit);
            }
            Some(other) => {
                return Err(field_error(
                    format!("{label}, rate_limit"),
                    format!("is {}, expected a mapping", type_name(other)),
                ));
            }
        }
        let children = list_field(map, "descriptors", &format!("{label}, descriptors"))?;
        walk(
            children,
            &format!("{at}.descriptors"),
            &stats_key,
            entries,
            limits,
        )?;
        entries.pop();
    }
    Ok(())
}

/// One `rate_limit` block.
fn rate_limit(map: &Mapping, label: &str, shadow_mode: bool) -> Result<Limit, ImportError> {
    let at = |field: &str| format!("{label}, rate_limit.{field}");
    check_keys(map, RATE_LIMIT_KEYS, &format!("{label}, rate_limit"))?;
    let unlimited = bool_field(map, "unlimited", &at("unlimited"))?;
    let unit = text_field(map, "unit", &at("unit"))?.unwrap_or_default();
    let window = unit_window(&unit);
    let requests_per_unit = match map.get("requests_per_unit") {
        None | Some(Value::Null) => 0,
        Some(v) => v
            .as_u64()
            .filter(|n| u32::try_from(*n).is_ok())
            .ok_or_else(|| {
                field_error(
                    at("requests_per_unit"),
                    format!("{} is not an unsigned 32-bit integer", describe(v)),
                )
            })?,
    };
    let name = text_field(map, "name", &at("name"))?.filter(|n| !n.is_empty());
    let mut replaces = Vec::new();
    for (i, item) in list_field(map, "replaces", &at("replaces"))?
        .iter()
        .enumerate()
    {
        let field = at(&format!("replaces[{i}]"));
        let Some(entry) = item.as_mapping() else {
            return Err(field_error(
                field,
                format!("is {}, expected {{name: ...}}", type_name(item)),
            ));
        };
        check_keys(entry, &["name"], &field)?;
        let target = text_field(entry, "name", &format!("{field}.name"))?.unwrap_or_default();
        if target.is_empty() {
            return Err(field_error(
                format!("{field}.name"),
                "is required (should not have an empty replaces entry)",
            ));
        }
        if name.as_deref() == Some(target.as_str()) {
            return Err(field_error(
                format!("{field}.name"),
                "replaces should not contain name of same descriptor",
            ));
        }
        replaces.push(sanitize_name(&target));
    }

    let mut notes = Vec::new();
    let window = if unlimited {
        if window.is_some() {
            return Err(field_error(
                at("unit"),
                format!("{unit:?}: should not specify rate limit unit when unlimited"),
            ));
        }
        ""
    } else {
        let Some(window) = window else {
            return Err(field_error(
                at("unit"),
                format!(
                    "invalid rate limit unit {unit:?} (second, minute, hour, day, week, month or year)"
                ),
            ));
        };
        if requests_per_unit == 0 {
            return Err(ImportError::Unsupported {
                location: at("requests_per_unit"),
                expression: "0".into(),
                reason: "a limit of 0 rejects every request, which meshtel quotas cannot express (maxAmount must be greater than zero)".into(),
            });
        }
        window
    };
    if unlimited && shadow_mode {
        notes.push("shadow_mode has no effect on an unlimited limit".into());
    }
    Ok(Limit {
        label: label.to_string(),
        stats_key: String::new(),
        entries: Vec::new(),
        name: name.map(|raw| {
            let sanitised = sanitize_name(&raw);
            (raw, sanitised)
        }),
        replaces,
        requests_per_unit: if unlimited { 0 } else { requests_per_unit },
        window,
        unlimited,
        shadow: shadow_mode && !unlimited,
        notes,
    })
}

/// The window of an envoy unit, case-insensitively (as `strings.ToUpper` + the proto
/// enum); `None` for an unknown unit.
fn unit_window(unit: &str) -> Option<&'static str> {
    Some(match unit.to_ascii_uppercase().as_str() {
        "SECOND" => "1s",
        "MINUTE" => "1m",
        "HOUR" => "1h",
        "DAY" => "24h",
        "WEEK" => "168h",
        "MONTH" => "720h",
        "YEAR" => "8760h",
        _ => return None,
    })
}

/// Rejects keys other than `allowed`.
fn check_keys(map: &Mapping, allowed: &[&str], location: &str) -> Result<(), ImportError> {
    for key in map.keys() {
        match key.as_str() {
            Some(k) if allowed.contains(&k) => {}
            Some(k) => {
                return Err(field_error(
                    location,
                    format!("unknown key {k:?} (expected {})", allowed.join(", ")),
                ));
            }
            None => {
                return Err(field_error(
                    location,
                    format!("key {} is not a string", type_name(key)),
                ));
            }
        }
    }
    Ok(())
}

/// A scalar field as text (`value: 50.0.0.5`, `value: 200` are both text).
fn text_field(map: &Mapping, key: &str, location: &str) -> Result<Option<String>, ImportError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => scalar_text(v).map(Some).ok_or_else(|| {
            field_error(location, format!("is {}, expected a string", type_name(v)))
        }),
    }
}

fn bool_field(map: &Mapping, key: &str, location: &str) -> Result<bool, ImportError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(field_error(
            location,
            format!("is {}, expected true or false", type_name(v)),
        )),
    }
}

fn list_field<'a>(map: &'a Mapping, key: &str, location: &str) -> Result<&'a [Value], ImportError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Sequence(items)) => Ok(items),
        Some(v) => Err(field_error(
            location,
            format!("is {}, expected a list", type_name(v)),
        )),
    }
}

#[cfg(test)]
mod tests;
