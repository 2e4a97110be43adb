//! Policies from the objects read: each rule action binding a quota handler to a quota
//! instance gives one policy; QuotaSpecs and QuotaSpecBindings narrow or annotate it.
//!
//! - name: the instance's short name (made unique with `-2`, `-3`... when one instance
//!   is bound more than once);
//! - dimensions: the instance's expressions in meshtel's attribute syntax;
//! - limits and overrides: the handler's entry for the instance (see [`super::params`]);
//! - match: the rule's `match` ∧ the charging QuotaSpec rule's attribute match ∧, when
//!   the bindings name exactly one service, that destination service. With several
//!   services the description lists them: meshtel applies quotas at the destination's
//!   inbound proxy, not per binding.

use std::collections::{BTreeMap, BTreeSet};

use super::super::cexl::{self, MatchBuilder};
use super::{Binding, Config, Handler, Instance, IstioService, ObjectId, Rule, at};
use crate::quota::attrs::{AttributeRef, DimensionExpr};
use crate::quota::import::{ImportError, NameSet, check_compiles, field_error, sanitize_name};
use crate::quota::policy::QuotaPolicySpec;

fn unsupported(
    location: String,
    expression: impl Into<String>,
    reason: impl Into<String>,
) -> ImportError {
    ImportError::Unsupported {
        location,
        expression: expression.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Every policy, in rule order.
    pub(super) fn build(&self) -> Result<Vec<QuotaPolicySpec>, ImportError> {
        let mut names = NameSet::default();
        let mut seen = BTreeSet::new();
        let mut out = Vec::new();
        for rule in &self.rules {
            for action in &rule.actions {
                let handler = self.handlers.get(&action.handler);
                for (field, text, id) in &action.instances {
                    let (handler, instance) = match (handler, self.instances.get(id)) {
                        (None, None) => continue,
                        (Some(h), Some(i)) => (h, i),
                        (None, Some(i)) => {
                            return Err(field_error(
                                at(&rule.label, &format!("{}.handler", action.field)),
                                format!(
                                    "{:?} ({}) receives quota instance {} but is not a memquota or \
                                     redisquota handler in this input",
                                    action.handler_text, action.handler, i.id
                                ),
                            ));
                        }
                        (Some(h), None) => {
                            return Err(field_error(
                                at(&rule.label, field),
                                format!(
                                    "{text:?} ({id}) is not a quota instance in this input, yet \
                                     {} handler {} receives it",
                                    h.adapter, h.id
                                ),
                            ));
                        }
                    };
                    if seen.insert((rule.id.clone(), handler.id.clone(), instance.id.clone())) {
                        out.push(self.policy(rule, handler, instance, &mut names)?);
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(ImportError::Empty(self.summary()));
        }
        Ok(out)
    }

    fn summary(&self) -> String {
        let mut text = format!(
            "found {} memquota/redisquota handler(s), {} quota instance(s) and {} rule(s), but no \
             rule binds a quota instance to a quota handler",
            self.handlers.len(),
            self.instances.len(),
            self.rules.len()
        );
        if self.ignored > 0 {
            text.push_str(&format!(
                " ({} document(s) of other kinds or API versions ignored)",
                self.ignored
            ));
        }
        text
    }

    fn policy(
        &self,
        rule: &Rule,
        handler: &Handler,
        instance: &Instance,
        names: &mut NameSet,
    ) -> Result<QuotaPolicySpec, ImportError> {
        let Some(quota) = handler.quotas.iter().find(|q| q.instance == instance.id) else {
            return Err(field_error(
                at(&handler.label, &format!("{}.quotas", handler.params_field)),
                format!(
                    "has no entry named {}.instance.{} although rule {} binds that instance to \
                     this handler (Istio: \"did not find limit defined for quota\")",
                    instance.id.name, instance.id.namespace, rule.id
                ),
            ));
        };

        let mut dimensions = BTreeMap::new();
        for (name, text) in &instance.dimensions {
            let location = at(&instance.label, &format!("{}.{name}", instance.field));
            let expr =
                DimensionExpr::parse(text).map_err(|reason| unsupported(location, text, reason))?;
            dimensions.insert(name.clone(), canonical(expr));
        }
        let mut notes = quota.notes.clone();
        let (mut max_amount, mut valid_duration) = (quota.max_amount, quota.valid_duration.clone());
        let mut overrides = Vec::with_capacity(quota.overrides.len());
        for (field, o) in &quota.overrides {
            let mut o = o.clone();
            // memquota reads a dimension the instance lacks as "" (spec §3.3): an override
            // asking for "" there always holds; redisquota wants the dimension present.
            let absent_empty: Vec<String> = o
                .dimensions
                .iter()
                .filter(|(n, v)| !dimensions.contains_key(*n) && v.is_empty())
                .map(|(n, _)| n.clone())
                .collect();
            if handler.adapter == "memquota" {
                for name in &absent_empty {
                    o.dimensions.remove(name);
                    notes.push(format!(
                        "{field}.dimensions.{name}: \"\" always holds (the instance has no {name} \
                         dimension, which memquota reads as \"\")"
                    ));
                }
            }
            if let Some(name) = o.dimensions.keys().find(|n| !dimensions.contains_key(*n)) {
                let known: Vec<&str> = dimensions.keys().map(String::as_str).collect();
                let why = if handler.adapter == "memquota" {
                    "memquota reads it as \"\""
                } else {
                    "redisquota needs the dimension present"
                };
                return Err(field_error(
                    at(&handler.label, &format!("{field}.dimensions.{name}")),
                    format!(
                        "is not a dimension of instance {} (it has {}) and {why}, so this override \
                         never applies",
                        instance.id,
                        known.join(", ")
                    ),
                ));
            }
            if o.dimensions.is_empty() {
                // It applies to every request no earlier override took: the default limit
                // for them, and the overrides after it never apply.
                max_amount = o.max_amount;
                if let Some(valid) = o.valid_duration.take() {
                    valid_duration = valid;
                }
                notes.push(format!(
                    "{field} always applies: its limit is the default{}",
                    match quota.overrides.len() - overrides.len() - 1 {
                        0 => String::new(),
                        n => format!(" and the {n} override(s) after it never apply"),
                    }
                ));
                // The overrides before it still come first.
                break;
            }
            overrides.push(o);
        }

        let mut matches = MatchBuilder::default();
        cexl::translate_match(&rule.match_text, &mut matches)
            .map_err(|u| unsupported(at(&rule.label, "spec.match"), u.term, u.reason))?;
        self.apply_quota_specs(instance, &mut matches, &mut notes)?;

        let mut description = format!(
            "imported from Istio {} handler {} ({}), instance {}, rule {}",
            handler.adapter, handler.id, quota.field, instance.id, rule.id
        );
        for note in &notes {
            description.push_str("; ");
            description.push_str(note);
        }
        let spec = QuotaPolicySpec {
            name: names.unique(&sanitize_name(&instance.id.name)),
            description,
            matches: matches.into_match(),
            dimensions,
            max_amount,
            valid_duration,
            algorithm: Some(quota.algorithm.to_string()),
            bucket_duration: quota.bucket_duration.clone(),
            overrides,
            ..QuotaPolicySpec::default()
        };
        check_compiles(
            &spec,
            &format!("{} bound by {}", instance.label, rule.label),
        )?;
        Ok(spec)
    }

    /// Charges, QuotaSpec rule matches and bound services for one instance.
    fn apply_quota_specs(
        &self,
        instance: &Instance,
        matches: &mut MatchBuilder,
        notes: &mut Vec<String>,
    ) -> Result<(), ImportError> {
        let mut charging = Vec::new();
        for spec in &self.quota_specs {
            for (r, rule) in spec.rules.iter().enumerate() {
                for (q, charge) in rule.quotas.iter().enumerate() {
                    if charge.quota.split('.').next() != Some(instance.id.name.as_str()) {
                        continue;
                    }
                    if charge.charge != Some(1) {
                        return Err(unsupported(
                            at(&spec.label, &format!("spec.rules[{r}].quotas[{q}].charge")),
                            charge
                                .charge
                                .map_or_else(|| "(absent)".to_string(), |c| c.to_string()),
                            "meshtel charges 1 per request; divide maxAmount and the overrides by \
                             the charge instead",
                        ));
                    }
                    charging.push((spec, r));
                }
            }
        }
        if charging.is_empty() {
            if !self.quota_specs.is_empty() {
                notes.push(format!(
                    "no QuotaSpec in this input charges {} (Istio proxies charge only quotas of a \
                     bound QuotaSpec)",
                    instance.id.name
                ));
            }
            return Ok(());
        }

        // Rules are alternatives: one without a match charges every request.
        if charging
            .iter()
            .all(|(spec, r)| !spec.rules[*r].matches.is_empty())
        {
            if let [(spec, r)] = charging.as_slice() {
                apply_attribute_match(spec, *r, matches)?;
            } else {
                let (spec, r) = charging[0];
                return Err(unsupported(
                    at(&spec.label, &format!("spec.rules[{r}].match")),
                    format!(
                        "{} QuotaSpec rules charging {}",
                        charging.len(),
                        instance.id.name
                    ),
                    "several QuotaSpec rules with matches charge this quota (any of them), which \
                     meshtel matches cannot express",
                ));
            }
        }

        let spec_ids: BTreeSet<&ObjectId> = charging.iter().map(|(spec, _)| &spec.id).collect();
        let mut services: Vec<(String, &Binding, usize, &IstioService)> = Vec::new();
        for binding in self
            .bindings
            .iter()
            .filter(|b| b.specs.iter().any(|s| spec_ids.contains(s)))
        {
            for (i, service) in binding.services.iter().enumerate() {
                let shown = show_service(service, &binding.id.namespace);
                if !services.iter().any(|(s, ..)| *s == shown) {
                    services.push((shown, binding, i, service));
                }
            }
        }
        let spec_list = spec_ids
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        match services.as_slice() {
            [] => notes.push(format!(
                "QuotaSpec {spec_list} is bound to no service in this input"
            )),
            list if list.iter().any(|(s, ..)| s == "*") => {
                notes.push(format!("QuotaSpec {spec_list} is bound to every service"));
            }
            [(shown, binding, i, service)] => {
                let location = at(&binding.label, &format!("spec.services[{i}]"));
                restrict_to_service(service, &binding.id.namespace, matches)
                    .map_err(|r| unsupported(location, shown, r))?;
                notes.push(format!(
                    "QuotaSpecBinding {} binds it to service {shown} only",
                    binding.id
                ));
                if !service.labels.is_empty() {
                    notes.push(format!(
                        "the binding's labels {:?} are not applied",
                        service.labels
                    ));
                }
            }
            list => {
                let shown: Vec<&str> = list.iter().map(|(s, ..)| s.as_str()).collect();
                notes.push(format!(
                    "QuotaSpec {spec_list} is bound to services {}; meshtel applies the quota at \
                     every destination's inbound proxy, so it is not restricted to them",
                    shown.join(", ")
                ));
            }
        }
        Ok(())
    }
}

/// The one `match` entry of a QuotaSpec rule: all its clauses must hold.
fn apply_attribute_match(
    spec: &super::QuotaSpecObject,
    r: usize,
    matches: &mut MatchBuilder,
) -> Result<(), ImportError> {
    let rule = &spec.rules[r];
    let [entry] = rule.matches.as_slice() else {
        return Err(unsupported(
            at(&spec.label, &format!("spec.rules[{r}].match")),
            format!("{} match entries", rule.matches.len()),
            "a QuotaSpec rule with several match entries (any of them) cannot be expressed",
        ));
    };
    for (attribute, string_match) in &entry.clause {
        let field = format!("spec.rules[{r}].match[0].clause.{attribute}");
        let (kind, value) = match (
            &string_match.exact,
            &string_match.prefix,
            &string_match.regex,
        ) {
            (Some(v), None, None) => ("exact", v),
            (None, Some(v), None) => ("prefix", v),
            (None, None, Some(v)) => ("regex", v),
            _ => {
                return Err(field_error(
                    at(&spec.label, &field),
                    "set exactly one of exact, prefix, regex",
                ));
            }
        };
        cexl::translate_clause(attribute, kind, value, matches)
            .map_err(|u| unsupported(at(&spec.label, &field), u.term, u.reason))?;
    }
    Ok(())
}

/// Requires the one bound service as the destination: its host, or its name in its
/// namespace, which defaults to the binding's (`IstioService.namespace`, spec §3.1).
fn restrict_to_service(
    service: &IstioService,
    binding_namespace: &str,
    matches: &mut MatchBuilder,
) -> Result<(), String> {
    if !service.service.is_empty() {
        return matches.require(&AttributeRef::DestinationHost, &service.service);
    }
    if service.name.is_empty() {
        return Err("a bound service needs a name or a service host".into());
    }
    matches.require(&AttributeRef::DestinationService, &service.name)?;
    let namespace = if service.namespace.is_empty() {
        binding_namespace
    } else {
        &service.namespace
    };
    if !namespace.is_empty() {
        matches.require(&AttributeRef::DestinationNamespace, namespace)?;
    }
    Ok(())
}

/// `name.namespace` (the namespace defaulting to the binding's), the host, or `*`.
fn show_service(service: &IstioService, binding_namespace: &str) -> String {
    if service.service == "*" || service.name == "*" {
        return "*".into();
    }
    if !service.service.is_empty() {
        return service.service.clone();
    }
    let namespace = if service.namespace.is_empty() {
        binding_namespace
    } else {
        &service.namespace
    };
    let mut shown = format!("{}.{namespace}", service.name);
    if !service.domain.is_empty() {
        shown.push_str(&format!(" (domain {})", service.domain));
    }
    shown
}

/// An expression in meshtel's syntax, with repeated attributes dropped
/// (`destination.labels["app"] | destination.service.name` are both
/// `destination.service`).
fn canonical(mut expr: DimensionExpr) -> String {
    let mut seen = Vec::new();
    expr.chain.retain(|a| {
        let first = !seen.contains(a);
        if first {
            seen.push(a.clone());
        }
        first
    });
    expr.to_string()
}
