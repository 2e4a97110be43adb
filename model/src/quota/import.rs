//! Importers: Istio memquota/redisquota configuration and envoyproxy/ratelimit
//! configuration, turned into [`QuotaPolicySpec`]s.
//!
//! ```text
//!  Istio YAML (handler, instance, rule,     ──import_istio──┐
//!  QuotaSpec, QuotaSpecBinding documents)                   │
//!                                                           ├─► Vec<QuotaPolicySpec>
//!  envoyproxy/ratelimit YAML                ──import_envoy_ratelimit──┘   (each compiles)
//!  (domain + nested descriptors)
//! ```
//!
//! Both importers refuse what meshtel cannot express instead of approximating it: the
//! error names the document or descriptor, the field path and the offending value or
//! expression. Every policy they return passes [`QuotaPolicySpec::compile`].

mod cexl;
mod envoy;
mod istio;

use std::collections::BTreeSet;

use serde::Deserialize;
use yaml_serde::Value;

use super::policy::QuotaPolicySpec;
use crate::Error;

/// Imports Istio `handler` (memquota or redisquota), `instance` (quota template),
/// `rule`, `QuotaSpec` and `QuotaSpecBinding` documents (multi-document YAML,
/// `apiVersion: config.istio.io/v1alpha2`, new-style or the old `memquota`,
/// `redisquota` and `quota` kinds). One policy per quota instance bound to a handler by
/// a rule, named after the instance, restricted to the destination service its
/// QuotaSpecBinding names; one per service, `<instance>.<service>`, when it names
/// several. Other kinds are ignored. Refuses (with the document and field path) what
/// meshtel cannot express: allocation quotas, charges other than 1, match expressions
/// other than conjunctions of equalities, a binding of no service, binding labels
/// other than `app` and `version`.
pub fn import_istio(yaml: &str) -> Result<Vec<QuotaPolicySpec>, Error> {
    let documents = parse_documents(yaml)?;
    istio::import(&documents)
}

/// Imports an envoyproxy/ratelimit configuration file (`domain` + `descriptors`): one
/// policy per descriptor that has a `rate_limit` or is whitelisted (neither a
/// `rate_limit` nor children: an `unlimited` policy), bound to the RLS domain and the
/// descriptor path (`rateLimit`). Validates as envoyproxy/ratelimit does (unknown keys,
/// empty keys, duplicate composite keys, `unlimited` with a `unit`); refuses
/// `quota_mode`.
pub fn import_envoy_ratelimit(yaml: &str) -> Result<Vec<QuotaPolicySpec>, Error> {
    let mut documents = parse_documents(yaml)?.into_iter();
    let Some((_, root)) = documents.next() else {
        return Err(Error::NothingToImport("the file holds no YAML document".into()));
    };
    if let Some((index, _)) = documents.next() {
        return Err(Error::ImportInvalid(format!(
            "document {index}: an envoyproxy/ratelimit configuration is one YAML document \
             (one domain per file)"
        )));
    }
    envoy::import(&root, yaml)
}

/// Detects the format and imports: documents with `apiVersion` or `kind` are Istio
/// configuration, a single document with a top-level `domain` is an envoyproxy/ratelimit
/// configuration.
pub fn import_any(yaml: &str) -> Result<Vec<QuotaPolicySpec>, Error> {
    let documents = parse_documents(yaml)?;
    let has_key = |key: &str| {
        documents
            .iter()
            .any(|(_, d)| d.as_mapping().is_some_and(|m| m.contains_key(key)))
    };
    if has_key("apiVersion") || has_key("kind") {
        istio::import(&documents)
    } else if has_key("domain") {
        import_envoy_ratelimit(yaml)
    } else {
        Err(Error::ImportInvalid(
            "unrecognised configuration: expected Istio documents (with apiVersion and kind) \
             or an envoyproxy/ratelimit file (with a top-level domain)"
                .into(),
        ))
    }
}

/// Why an imported policy must not replace `current`, the stored policy of the same
/// name: it belongs to another rate-limit domain, or it is not a rate-limit policy (or,
/// for an Istio import, it is one). The message names both. `None`: replacing it is an
/// update of what an earlier import of the same source wrote.
///
/// Policies are named by `rate_limit.name` or by the descriptor path, so an import can
/// reach a policy of another domain through an explicit name used in both files, or
/// through derived names that coincide (domain `a.b` with key `c`, domain `a` with `b`
/// then `c`, both `a.b.c`); `meshtel quota import --apply` refuses then instead of
/// moving the other domain's limit.
pub fn replace_conflict(current: &QuotaPolicySpec, imported: &QuotaPolicySpec) -> Option<String> {
    let name = &imported.name;
    let origin = |spec: &QuotaPolicySpec| match &spec.rate_limit {
        Some(rl) => format!("a limit of rate-limit domain {:?}", rl.domain),
        None => "a policy that is not bound to a rate-limit domain (it limits Checks)".to_string(),
    };
    let same_source = match (&current.rate_limit, &imported.rate_limit) {
        (Some(a), Some(b)) => a.domain == b.domain,
        (None, None) => true,
        _ => false,
    };
    if same_source {
        return None;
    }
    let hint = match &imported.rate_limit {
        Some(rl) if rl.name.as_deref() == Some("") => {
            "; its name is derived from the descriptor path: give the descriptor a \
             rate_limit.name to tell them apart"
        }
        Some(_) => "; give the imported limit another rate_limit.name",
        None => "",
    };
    Some(format!(
        "policy {name:?} is {} and the import would replace it with {}{hint}, or delete \
         the stored policy first",
        origin(current),
        origin(imported),
    ))
}

/// Splits multi-document YAML; empty documents are dropped. Documents are numbered
/// from 1.
fn parse_documents(yaml: &str) -> Result<Vec<(usize, Value)>, Error> {
    crate::yaml_nesting::check(yaml).map_err(Error::ImportInvalid)?;
    let mut out = Vec::new();
    for (i, document) in yaml_serde::Deserializer::from_str(yaml).enumerate() {
        let index = i + 1;
        let value = Value::deserialize(document).map_err(|source| Error::ImportYaml {
            location: format!("document {index}"),
            source,
        })?;
        if !value.is_null() {
            out.push((index, value));
        }
    }
    Ok(out)
}

/// Longest policy name [`QuotaPolicySpec::compile`] accepts.
const MAX_NAME: usize = 253;

/// Turns any text into a policy name: lower-case ASCII letters, digits, `-`, `.`, `_`,
/// starting with a letter or digit, at most 253 bytes. Other characters become `_`.
fn sanitize_name(raw: &str) -> String {
    let mapped: String = raw
        .chars()
        .map(|c| {
            let c = c.to_ascii_lowercase();
            if c.is_ascii_lowercase() || c.is_ascii_digit() || "-._".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let trimmed = mapped.trim_start_matches(|c: char| !c.is_ascii_alphanumeric());
    let mut name = if trimmed.is_empty() {
        "quota".to_string()
    } else {
        trimmed.to_string()
    };
    name.truncate(MAX_NAME);
    name
}

/// Names already given out, so that every imported policy has its own.
#[derive(Default)]
struct NameSet(BTreeSet<String>);

impl NameSet {
    /// Reserves `name` exactly; false when it is taken.
    fn reserve(&mut self, name: &str) -> bool {
        self.0.insert(name.to_string())
    }

    /// `base` if free, else `base-2`, `base-3`, ... (shortening `base` to stay within
    /// the length limit).
    fn unique(&mut self, base: &str) -> String {
        if self.reserve(base) {
            return base.to_string();
        }
        let mut n = 2u64;
        loop {
            let suffix = format!("-{n}");
            let mut candidate = base.to_string();
            candidate.truncate(MAX_NAME - suffix.len());
            candidate.push_str(&suffix);
            if self.reserve(&candidate) {
                return candidate;
            }
            n += 1;
        }
    }
}

/// A scalar as text (`8080` → `"8080"`); `None` for sequences, mappings and null.
fn scalar_text(value: &Value) -> Option<String> {
    match value {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// A [`Error::ImportField`].
fn field_error(location: impl Into<String>, message: impl Into<String>) -> Error {
    Error::ImportField {
        location: location.into(),
        message: message.into(),
    }
}

/// A YAML value for an error message: scalars quoted as written, else its type.
fn describe(value: &Value) -> String {
    scalar_text(value).map_or_else(|| type_name(value).to_string(), |s| format!("{s:?}"))
}

/// A short description of a YAML value's type for error messages.
fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Sequence(_) => "a list",
        Value::Mapping(_) => "a mapping",
        Value::Tagged(_) => "a tagged value",
    }
}

/// Checks an imported policy.
fn check_compiles(spec: &QuotaPolicySpec, location: &str) -> Result<(), Error> {
    spec.compile_new()
        .map(|_| ())
        .map_err(|errors| Error::ImportedPolicyInvalid {
            location: location.to_string(),
            policy: spec.name.clone(),
            errors,
        })
}

#[cfg(test)]
mod tests;
