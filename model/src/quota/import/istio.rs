//! Istio mixer quota configuration (`config.istio.io/v1alpha2`) → policies.
//!
//! ```text
//!  handler (memquota|redisquota) ─┐ quotas[].name = <instance>.instance.<ns>
//!  instance (quota template) ─────┤ dimensions
//!  rule ──────────────────────────┤ match + actions: handler ⇄ instances
//!  QuotaSpec / QuotaSpecBinding ──┘ charge, bound services
//!          │
//!          ▼ one policy per (rule action, handler, quota instance) and bound service
//!  name = instance short name (`.<service>` when several services are bound),
//!  dimensions, limits and overrides from the handler,
//!  match = rule match ∧ QuotaSpec rule match ∧ the bound destination service
//! ```
//!
//! Documents are read first (this file), handler params are translated by
//! [`params`], and policies are assembled by [`build`]. Documents of other kinds or
//! API groups are ignored.

mod build;
mod params;
mod schema;

use crate::Error;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::DeserializeOwned;
use yaml_serde::{Mapping, Value};

use self::params::HandlerQuota;
use self::schema::{
    BindingSpec, HandlerSpec, InstanceSpec, IstioService, QuotaRuleSpec, QuotaSpecSpec,
    QuotaTemplateParams, RuleSpec,
};
use super::{QuotaPolicySpec, field_error, type_name};

/// The API group and version of every mixer configuration object.
const API_VERSION: &str = "config.istio.io/v1alpha2";
/// Namespace of an object whose metadata names none (what `kubectl apply` uses).
const DEFAULT_NAMESPACE: &str = "default";
/// Words that may sit between a name and a namespace in a reference
/// (`requestcountquota.instance.istio-system`, `handler.memquota`).
const KIND_WORDS: &[&str] = &[
    "handler",
    "instance",
    "rule",
    "memquota",
    "redisquota",
    "quota",
    "adapter",
    "template",
];

/// Imports parsed documents.
pub(super) fn import(documents: &[(usize, Value)]) -> Result<Vec<QuotaPolicySpec>, Error> {
    let mut config = Config::default();
    for (index, value) in documents {
        config.add_document(format!("document {index}"), value)?;
    }
    config.build()
}

/// A Kubernetes object's name and namespace, shown `name.namespace`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct ObjectId {
    name: String,
    namespace: String,
}

impl fmt::Display for ObjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.name, self.namespace)
    }
}

/// Resolves a reference as Istio writes them: `name`, `name.namespace`, `name.kind`
/// or `name.kind.namespace`; the namespace defaults to the referring object's.
fn resolve_ref(text: &str, default_namespace: &str) -> Option<ObjectId> {
    let parts: Vec<&str> = text.trim().split('.').collect();
    let (name, namespace) = match parts.as_slice() {
        [name] => (*name, default_namespace),
        [name, kind] if KIND_WORDS.contains(kind) => (*name, default_namespace),
        [name, namespace] => (*name, *namespace),
        [name, kind, namespace] if KIND_WORDS.contains(kind) => (*name, *namespace),
        _ => return None,
    };
    (!name.is_empty() && !namespace.is_empty()).then(|| ObjectId {
        name: name.to_string(),
        namespace: namespace.to_string(),
    })
}

/// `label, field`: where something is.
fn at(label: &str, field: &str) -> String {
    format!("{label}, {field}")
}

/// Refuses a second object of one kind with the same name and namespace.
fn check_defined_once(
    previous: Option<&str>,
    label: &str,
    kind: &str,
    id: &ObjectId,
) -> Result<(), Error> {
    match previous {
        Some(previous) => Err(field_error(
            label,
            format!("{kind} {id} is also defined by {previous}"),
        )),
        None => Ok(()),
    }
}

/// Deserializes a part of a document, naming it on error. An absent part reads as an
/// empty mapping, so that missing fields are reported by name.
fn parse<T: DeserializeOwned>(
    value: &Value,
    location: impl FnOnce() -> String,
) -> Result<T, Error> {
    let value = if value.is_null() {
        Value::Mapping(Mapping::new())
    } else {
        value.clone()
    };
    yaml_serde::from_value(value).map_err(|e| field_error(location(), e.to_string()))
}

/// A quota handler: memquota or redisquota.
#[derive(Debug)]
struct Handler {
    label: String,
    /// Field path of the params (`spec.params`, or `spec` for the old kinds).
    params_field: String,
    id: ObjectId,
    adapter: &'static str,
    quotas: Vec<HandlerQuota>,
}

/// A quota instance and its dimension expressions as written.
#[derive(Debug)]
struct Instance {
    label: String,
    /// Field path of the dimensions map.
    field: String,
    id: ObjectId,
    dimensions: BTreeMap<String, String>,
}

/// A rule and its actions.
#[derive(Debug)]
struct Rule {
    label: String,
    id: ObjectId,
    match_text: String,
    actions: Vec<Action>,
}

/// One rule action: a handler and the instances it receives.
#[derive(Debug)]
struct Action {
    field: String,
    handler_text: String,
    handler: ObjectId,
    /// (field path, reference as written, resolved id).
    instances: Vec<(String, String, ObjectId)>,
}

/// A QuotaSpec.
#[derive(Debug)]
struct QuotaSpecObject {
    label: String,
    id: ObjectId,
    rules: Vec<QuotaRuleSpec>,
}

/// A QuotaSpecBinding.
#[derive(Debug)]
struct Binding {
    label: String,
    id: ObjectId,
    services: Vec<IstioService>,
    specs: Vec<ObjectId>,
}

/// Everything read from the input.
#[derive(Debug, Default)]
struct Config {
    handlers: BTreeMap<ObjectId, Handler>,
    instances: BTreeMap<ObjectId, Instance>,
    rules: Vec<Rule>,
    quota_specs: Vec<QuotaSpecObject>,
    bindings: Vec<Binding>,
    /// Documents of other kinds or API groups.
    ignored: usize,
}

impl Config {
    fn add_document(&mut self, label: String, value: &Value) -> Result<(), Error> {
        let Some(map) = value.as_mapping() else {
            return Err(field_error(
                label,
                format!(
                    "is {}, expected an object with apiVersion, kind, metadata and spec",
                    type_name(value)
                ),
            ));
        };
        let text = |key: &str| map.get(key).and_then(Value::as_str).unwrap_or("");
        let (api_version, kind) = (text("apiVersion"), text("kind"));
        if kind == "List" {
            let items = map.get("items").and_then(Value::as_sequence);
            for (i, item) in items.into_iter().flatten().enumerate() {
                self.add_document(format!("{label} items[{i}]"), item)?;
            }
            return Ok(());
        }
        let known = matches!(
            kind,
            "handler"
                | "memquota"
                | "redisquota"
                | "instance"
                | "quota"
                | "rule"
                | "QuotaSpec"
                | "QuotaSpecBinding"
        );
        if !known || (!api_version.is_empty() && api_version != API_VERSION) {
            self.ignored += 1;
            return Ok(());
        }
        if api_version.is_empty() {
            return Err(field_error(
                at(&format!("{label} ({kind})"), "apiVersion"),
                format!("is required ({API_VERSION})"),
            ));
        }
        let metadata = map.get("metadata");
        let meta_text = |key: &str| metadata.and_then(|m| m.get(key)).and_then(Value::as_str);
        let Some(name) = meta_text("name").filter(|n| !n.is_empty()) else {
            return Err(field_error(
                at(&format!("{label} ({kind})"), "metadata.name"),
                "is required",
            ));
        };
        let id = ObjectId {
            name: name.to_string(),
            namespace: meta_text("namespace")
                .filter(|n| !n.is_empty())
                .unwrap_or(DEFAULT_NAMESPACE)
                .to_string(),
        };
        let label = format!("{label} ({kind} {id})");
        let null = Value::Null;
        let spec = map.get("spec").unwrap_or(&null);
        match kind {
            "handler" => {
                let s: HandlerSpec = parse(spec, || at(&label, "spec"))?;
                let adapter = s.compiled_adapter.or(s.adapter).unwrap_or_default();
                let params = s.params.unwrap_or(Value::Null);
                self.add_handler(label, id, &adapter, &params, "spec.params")
            }
            "memquota" | "redisquota" => self.add_handler(label, id, kind, spec, "spec"),
            "instance" => {
                let s: InstanceSpec = parse(spec, || at(&label, "spec"))?;
                let template = s.compiled_template.or(s.template).unwrap_or_default();
                if template != "quota" {
                    return Ok(());
                }
                let params = s.params.unwrap_or(Value::Null);
                self.add_instance(label, id, &params, "spec.params")
            }
            "quota" => self.add_instance(label, id, spec, "spec"),
            "rule" => self.add_rule(label, id, spec),
            "QuotaSpec" => {
                let s: QuotaSpecSpec = parse(spec, || at(&label, "spec"))?;
                self.quota_specs.push(QuotaSpecObject {
                    label,
                    id,
                    rules: s.rules,
                });
                Ok(())
            }
            _ => {
                let s: BindingSpec = parse(spec, || at(&label, "spec"))?;
                let specs = s
                    .quota_specs
                    .into_iter()
                    .map(|r| ObjectId {
                        name: r.name,
                        namespace: r.namespace.unwrap_or_else(|| id.namespace.clone()),
                    })
                    .collect();
                self.bindings.push(Binding {
                    label,
                    id,
                    services: s.services,
                    specs,
                });
                Ok(())
            }
        }
    }

    fn add_handler(
        &mut self,
        label: String,
        id: ObjectId,
        adapter: &str,
        params: &Value,
        field: &str,
    ) -> Result<(), Error> {
        let adapter = match adapter {
            "memquota" => "memquota",
            "redisquota" => "redisquota",
            _ => return Ok(()),
        };
        let quotas = params::handler_quotas(adapter, params, &label, field, &id.namespace)?;
        let previous = self.handlers.get(&id).map(|h| h.label.as_str());
        check_defined_once(previous, &label, "handler", &id)?;
        self.handlers.insert(
            id.clone(),
            Handler {
                label,
                params_field: field.to_string(),
                id,
                adapter,
                quotas,
            },
        );
        Ok(())
    }

    fn add_instance(
        &mut self,
        label: String,
        id: ObjectId,
        params: &Value,
        field: &str,
    ) -> Result<(), Error> {
        let p: QuotaTemplateParams = parse(params, || at(&label, field))?;
        let mut dimensions = BTreeMap::new();
        for (name, value) in p.dimensions {
            let Value::String(expr) = value else {
                return Err(field_error(
                    at(&label, &format!("{field}.dimensions.{name}")),
                    format!("is {}, expected an expression string", type_name(&value)),
                ));
            };
            dimensions.insert(name, expr);
        }
        let previous = self.instances.get(&id).map(|i| i.label.as_str());
        check_defined_once(previous, &label, "instance", &id)?;
        self.instances.insert(
            id.clone(),
            Instance {
                label,
                field: format!("{field}.dimensions"),
                id,
                dimensions,
            },
        );
        Ok(())
    }

    fn add_rule(&mut self, label: String, id: ObjectId, spec: &Value) -> Result<(), Error> {
        let s: RuleSpec = parse(spec, || at(&label, "spec"))?;
        let unresolved = |field: String, text: &str| {
            field_error(
                at(&label, &field),
                format!(
                    "cannot resolve {text:?}: expected name, name.namespace or name.kind.namespace"
                ),
            )
        };
        let mut actions = Vec::new();
        for (i, a) in s.actions.iter().enumerate() {
            let field = format!("spec.actions[{i}]");
            let handler = resolve_ref(&a.handler, &id.namespace)
                .ok_or_else(|| unresolved(format!("{field}.handler"), &a.handler))?;
            let mut instances = Vec::new();
            for (j, text) in a.instances.iter().enumerate() {
                let f = format!("{field}.instances[{j}]");
                let instance =
                    resolve_ref(text, &id.namespace).ok_or_else(|| unresolved(f.clone(), text))?;
                instances.push((f, text.clone(), instance));
            }
            actions.push(Action {
                field,
                handler_text: a.handler.clone(),
                handler,
                instances,
            });
        }
        self.rules.push(Rule {
            label,
            id,
            match_text: s.match_text.unwrap_or_default(),
            actions,
        });
        Ok(())
    }
}

#[cfg(test)]
pub(super) mod tests;
