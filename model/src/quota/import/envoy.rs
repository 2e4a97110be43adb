//! envoyproxy/ratelimit configuration (`domain` + nested `descriptors`) → policies.
//!
//! Validation follows envoyproxy/ratelimit's loader: unknown keys, an empty `key`, a
//! duplicate composite key (`key` or `key_value`) at one level, an invalid `unit`, a
//! `unit` together with `unlimited`, and bad `replaces` entries are errors naming the
//! descriptor path, e.g. `descriptors[0].descriptors[1] (messaging.message_type_marketing.to_number)`.
//!
//! Every descriptor with a `rate_limit` becomes one policy bound to the RLS API
//! (`rateLimit`): the domain, the entries from the root to that descriptor (an entry
//! without a value matches, and keys the counter by, any value; `share_threshold` on a
//! wildcard value becomes the entry's `shareThreshold`), `replaces`;
//! `maxAmount = requests_per_unit` (0, envoyproxy/ratelimit's way to block, denies every
//! request), `validDuration` from `unit` (a month is 30 days and a year 365, as in
//! envoyproxy/ratelimit), `algorithm: fixed-window` (its only algorithm), `unlimited`,
//! and `shadow` from `shadow_mode`. A descriptor with neither a `rate_limit` nor
//! children, which envoyproxy/ratelimit whitelists (its node ends the tree walk with no
//! limit), becomes an `unlimited` policy, so that a more general limit does not apply
//! to it instead.
//!
//! The policy is named by the limit's `name`, else by envoy's stats key
//! `<domain>.<key>_<value>.<key>...`, made a valid, unique policy name; `rateLimit.name`
//! keeps the `name` as written (what RLS answers report), or is empty for a derived
//! name (envoyproxy/ratelimit reports none). Derived names of two domains can be equal
//! (domain `a.b` with key `c`, domain `a` with `b` then `c`): `meshtel quota import
//! --apply` refuses to replace a policy of another domain. Scalars keep their text as
//! written (`value: 1.10` is `"1.10"`, as envoyproxy/ratelimit reads it, see
//! [`raw`]). `detailed_metric` and `value_to_metric` only shape envoy's metrics and are
//! ignored; `quota_mode` (a descriptor over its limit counts only when every quota-mode
//! descriptor is) is refused: meshtel decides each descriptor on its own.

mod raw;

use crate::Error;
use std::collections::BTreeMap;

use yaml_serde::{Mapping, Value};

use self::raw::{RawDescriptor, RawRoot, RawText};
use super::{
    NameSet, check_compiles, describe, field_error, sanitize_name, scalar_text,
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

/// Imports the (single) document `root`; `yaml` is the file's text, read again for
/// the scalars as written.
pub(super) fn import(root: &Value, yaml: &str) -> Result<Vec<QuotaPolicySpec>, Error> {
    let raw = raw::read(yaml);
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
    let domain = text_field(map, "domain", "domain", raw.domain.as_ref())?.unwrap_or_default();
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
        raw_list(&raw),
        "descriptors",
        &domain,
        &mut Vec::new(),
        &mut limits,
    )?;
    if limits.is_empty() {
        return Err(Error::NothingToImport(format!(
            "domain {domain:?} defines no descriptors"
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
        // rateLimit.name: the name as written, or none (empty) for a derived one.
        let (name, reported) = match &limit.name {
            Some((raw, name)) => (name.clone(), raw.clone()),
            None => (
                names.unique(&sanitize_name(&limit.stats_key)),
                String::new(),
            ),
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
                name: Some(reported),
            }),
            ..QuotaPolicySpec::default()
        };
        check_compiles(&spec, &limit.label)?;
        out.push(spec);
    }
    Ok(out)
}

/// The descriptors of the raw file, by position.
fn raw_list(raw: &RawRoot) -> &[RawDescriptor] {
    raw.descriptors.as_deref().unwrap_or(&[])
}

/// Walks one descriptor list (`raw`: the same list read for its text); `entries` holds
/// the path from the root.
fn walk(
    list: &[Value],
    raw: &[RawDescriptor],
    path: &str,
    parent_key: &str,
    entries: &mut Vec<DescriptorEntrySpec>,
    limits: &mut Vec<Limit>,
) -> Result<(), Error> {
    let mut composite_keys: BTreeMap<String, String> = BTreeMap::new();
    // The raw list is used only when it has the same shape.
    let raw = if raw.len() == list.len() { raw } else { &[] };
    for (i, item) in list.iter().enumerate() {
        let at = format!("{path}[{i}]");
        let Some(map) = item.as_mapping() else {
            return Err(field_error(
                at,
                format!("is {}, expected a descriptor mapping", type_name(item)),
            ));
        };
        let raw_item = raw.get(i);
        let raw_text = |f: fn(&RawDescriptor) -> Option<&RawText>| raw_item.and_then(f);
        let key = text_field(
            map,
            "key",
            &format!("{at}.key"),
            raw_text(|r| r.key.as_ref()),
        )?
        .unwrap_or_default();
        if key.is_empty() {
            return Err(field_error(
                format!("{at}.key"),
                "is required (descriptor has empty key)",
            ));
        }
        let value = text_field(
            map,
            "value",
            &format!("{at}.value"),
            raw_text(|r| r.value.as_ref()),
        )?
        .unwrap_or_default();
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
            return Err(Error::ImportUnsupported {
                location: format!("{label}, key"),
                expression: key,
                reason:
                    "a wildcard key (without a value) cannot be matched; put the wildcard in value"
                        .into(),
            });
        }
        if value.find('*').is_some_and(|p| p + 1 != value.len()) {
            return Err(Error::ImportUnsupported {
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

        if quota_mode {
            return Err(Error::ImportUnsupported {
                location: format!("{label}, quota_mode"),
                expression: "quota_mode: true".into(),
                reason: "envoyproxy/ratelimit answers OVER_LIMIT for quota-mode descriptors only \
                         when all of them are over their limits; meshtel decides each descriptor \
                         on its own. Remove quota_mode to import the limit as an ordinary one"
                    .into(),
            });
        }

        let wildcard = value.ends_with('*');
        let mut notes = Vec::new();
        if share_threshold && !wildcard {
            notes.push(
                "share_threshold has no effect: the value is not a wildcard (ending in '*')"
                    .to_string(),
            );
        }
        entries.push(DescriptorEntrySpec {
            key,
            value: (!value.is_empty()).then_some(value),
            share_threshold: share_threshold && wildcard,
        });
        let children = list_field(map, "descriptors", &format!("{label}, descriptors"))?;
        let limit = match map.get("rate_limit") {
            // Whitelisted: envoyproxy/ratelimit's walk stops here with no limit.
            None | Some(Value::Null) if children.is_empty() => {
                let mut limit = Limit::whitelisted(&label);
                if shadow_mode {
                    notes.push("shadow_mode has no effect without a rate_limit".into());
                }
                limit.notes.push(
                    "whitelisted in the imported file (no rate_limit and no descriptors): \
                     imposes no limit"
                        .into(),
                );
                Some(limit)
            }
            None | Some(Value::Null) => None,
            Some(Value::Mapping(rl)) => Some(rate_limit(rl, raw_item, &label, shadow_mode)?),
            Some(other) => {
                return Err(field_error(
                    format!("{label}, rate_limit"),
                    format!("is {}, expected a mapping", type_name(other)),
                ));
            }
        };
        if let Some(mut limit) = limit {
            limit.notes.extend(notes);
            limit.stats_key = stats_key.clone();
            limit.entries = entries.clone();
            limits.push(limit);
        }
        walk(
            children,
            raw_item.map_or(&[], RawDescriptor::children),
            &format!("{at}.descriptors"),
            &stats_key,
            entries,
            limits,
        )?;
        entries.pop();
    }
    Ok(())
}

impl Limit {
    /// A whitelisted descriptor's policy: no limit.
    fn whitelisted(label: &str) -> Limit {
        Limit {
            label: label.to_string(),
            stats_key: String::new(),
            entries: Vec::new(),
            name: None,
            replaces: Vec::new(),
            requests_per_unit: 0,
            window: "",
            unlimited: true,
            shadow: false,
            notes: Vec::new(),
        }
    }
}

/// One `rate_limit` block (`raw`: the descriptor read for its text).
fn rate_limit(
    map: &Mapping,
    raw: Option<&RawDescriptor>,
    label: &str,
    shadow_mode: bool,
) -> Result<Limit, Error> {
    let at = |field: &str| format!("{label}, rate_limit.{field}");
    let raw = raw.and_then(|r| r.rate_limit.as_ref());
    check_keys(map, RATE_LIMIT_KEYS, &format!("{label}, rate_limit"))?;
    let unlimited = bool_field(map, "unlimited", &at("unlimited"))?;
    let unit = text_field(map, "unit", &at("unit"), None)?.unwrap_or_default();
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
    let name = text_field(map, "name", &at("name"), raw.and_then(|r| r.name.as_ref()))?
        .filter(|n| !n.is_empty());
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
        let raw_target = raw.and_then(|r| r.replaces_name(i));
        let target =
            text_field(entry, "name", &format!("{field}.name"), raw_target)?.unwrap_or_default();
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
            notes.push("requests_per_unit 0: every request is over the limit".into());
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
fn check_keys(map: &Mapping, allowed: &[&str], location: &str) -> Result<(), Error> {
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

/// A scalar field as text (`value: 50.0.0.5`, `value: 200` are both text), as written
/// when `raw` has it (`1.10` stays `1.10`).
fn text_field(
    map: &Mapping,
    key: &str,
    location: &str,
    raw: Option<&RawText>,
) -> Result<Option<String>, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => {
            let text = scalar_text(v).ok_or_else(|| {
                field_error(location, format!("is {}, expected a string", type_name(v)))
            })?;
            Ok(Some(match raw {
                // A number or boolean read back from its resolved value would change it.
                Some(raw) if !v.is_string() => raw.0.clone(),
                _ => text,
            }))
        }
    }
}

fn bool_field(map: &Mapping, key: &str, location: &str) -> Result<bool, Error> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(v) => Err(field_error(
            location,
            format!("is {}, expected true or false", type_name(v)),
        )),
    }
}

fn list_field<'a>(map: &'a Mapping, key: &str, location: &str) -> Result<&'a [Value], Error> {
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
