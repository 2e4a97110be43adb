//! Policies from the objects read: each rule action binding a quota handler to a quota
//! instance gives one policy; QuotaSpecs and QuotaSpecBindings narrow or annotate it.
//!
//! - name: the instance's short name (made unique with `-2`, `-3`... when one instance
//!   is bound more than once);
//! - dimensions: the instance's expressions in meshtel's attribute syntax;
//! - limits and overrides: the handler's entry for the instance (see [`super::params`]);
//! - match: the rule's `match` ∧ the charging QuotaSpec rule's attribute match ∧ the
//!   destination service a QuotaSpecBinding binds (and its `app`/`version` labels).
//!   meshtel matches hold one value per field, so a binding of several services gives
//!   one policy per bound service the rule can select, named `<instance>.<service>`
//!   (`.<namespace>`, `.<version>` added when needed to tell them apart); a binding of
//!   `*` gives one policy for every destination. Mixer kept one set of counters per
//!   quota instance, keyed by its dimensions: when a dimension fixed by the match
//!   tells the services apart (Bookinfo's `destination`) the split counts exactly as
//!   Mixer did; otherwise the descriptions say each service is now counted apart.
//!   Whatever would widen the quota is refused: a binding of no service, a QuotaSpec
//!   no binding of the input binds, labels meshtel matches cannot test.

use crate::Error;
use std::collections::{BTreeMap, BTreeSet};

use super::super::cexl::{self, MatchBuilder};
use super::{Binding, Config, Handler, Instance, IstioService, ObjectId, Rule, at};
use crate::quota::attrs::{AttributeRef, DimensionExpr};
use crate::quota::import::{NameSet, check_compiles, field_error, sanitize_name};
use crate::quota::policy::{QuotaMatch, QuotaPolicy, QuotaPolicySpec};

fn unsupported(
    location: String,
    expression: impl Into<String>,
    reason: impl Into<String>,
) -> Error {
    Error::ImportUnsupported {
        location,
        expression: expression.into(),
        reason: reason.into(),
    }
}

impl Config {
    /// Every policy, in rule order.
    pub(super) fn build(&self) -> Result<Vec<QuotaPolicySpec>, Error> {
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
                        out.extend(self.policies(rule, handler, instance, &mut names)?);
                    }
                }
            }
        }
        if out.is_empty() {
            return Err(Error::NothingToImport(self.summary()));
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

    /// The policies of one (rule, handler, instance): one, or one per bound service.
    fn policies(
        &self,
        rule: &Rule,
        handler: &Handler,
        instance: &Instance,
        names: &mut NameSet,
    ) -> Result<Vec<QuotaPolicySpec>, Error> {
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
        let scope = self.apply_quota_specs(instance, &mut matches, &mut notes)?;

        let mut description = format!(
            "imported from Istio {} handler {} ({}), instance {}, rule {}",
            handler.adapter, handler.id, quota.field, instance.id, rule.id
        );
        for note in &notes {
            description.push_str("; ");
            description.push_str(note);
        }
        let base_name = sanitize_name(&instance.id.name);
        let targets = match scope {
            Scope::Everywhere => vec![(base_name, matches.into_match(), Vec::new())],
            Scope::Services(bound) => split_by_service(rule, &base_name, &matches, &bound)?,
        };
        let several = targets.len() > 1;
        let mut specs = Vec::with_capacity(targets.len());
        for (name, matches, service_notes) in targets {
            let mut description = description.clone();
            for note in &service_notes {
                description.push_str("; ");
                description.push_str(note);
            }
            let spec = QuotaPolicySpec {
                name: names.unique(&name),
                description,
                matches,
                dimensions: dimensions.clone(),
                max_amount,
                valid_duration: valid_duration.clone(),
                algorithm: Some(quota.algorithm.to_string()),
                bucket_duration: quota.bucket_duration.clone(),
                overrides: overrides.clone(),
                ..QuotaPolicySpec::default()
            };
            check_compiles(
                &spec,
                &format!("{} bound by {}", instance.label, rule.label),
            )?;
            specs.push(spec);
        }
        if several {
            let note = counting_note(&specs);
            for spec in &mut specs {
                spec.description.push_str("; ");
                spec.description.push_str(&note);
            }
        }
        Ok(specs)
    }

    /// Charges and QuotaSpec rule matches for one instance, and where it applies: the
    /// services bound to the QuotaSpecs that charge it.
    fn apply_quota_specs<'a>(
        &'a self,
        instance: &Instance,
        matches: &mut MatchBuilder,
        notes: &mut Vec<String>,
    ) -> Result<Scope<'a>, Error> {
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
            return Ok(Scope::Everywhere);
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
        let spec_list = spec_ids
            .iter()
            .map(|s| s.to_string())
            .collect::<Vec<_>>()
            .join(", ");
        let mut bound: Vec<Bound<'a>> = Vec::new();
        for binding in self
            .bindings
            .iter()
            .filter(|b| b.specs.iter().any(|s| spec_ids.contains(s)))
        {
            if binding.services.is_empty() {
                return Err(field_error(
                    at(&binding.label, "spec.services"),
                    format!(
                        "binds QuotaSpec {spec_list} to no service: Istio charges a QuotaSpec \
                         only on the services its bindings name, so this binding charges \
                         nothing; name the services (or service \"*\" for every one)"
                    ),
                ));
            }
            for (index, service) in binding.services.iter().enumerate() {
                let shown = show_service(service, &binding.id.namespace);
                let duplicate = bound
                    .iter()
                    .any(|b| b.shown == shown && b.service.labels == service.labels);
                if !duplicate {
                    bound.push(Bound {
                        shown,
                        binding,
                        index,
                        service,
                    });
                }
            }
        }
        if bound.is_empty() {
            let (spec, r) = charging[0];
            return Err(unsupported(
                at(&spec.label, &format!("spec.rules[{r}].quotas")),
                instance.id.name.clone(),
                format!(
                    "no QuotaSpecBinding in this input binds QuotaSpec {spec_list}, so Istio \
                     charges this quota on no request; add the QuotaSpecBinding to the input"
                ),
            ));
        }
        // An entry without labels covers the same service's labelled ones, and `*`
        // without labels covers everything.
        let covered = |b: &Bound| {
            !b.service.labels.is_empty()
                && bound
                    .iter()
                    .any(|o| o.service.labels.is_empty() && (o.shown == b.shown || o.shown == "*"))
        };
        let bound: Vec<Bound<'a>> = bound.iter().filter(|b| !covered(b)).cloned().collect();
        if let [only] = bound.as_slice()
            && only.shown == "*"
            && only.service.labels.is_empty()
        {
            notes.push(format!(
                "QuotaSpecBinding {} binds QuotaSpec {spec_list} to every service",
                only.binding.id
            ));
            return Ok(Scope::Everywhere);
        }
        Ok(Scope::Services(bound))
    }
}

/// Where the policies of one instance apply.
enum Scope<'a> {
    /// Every destination: no QuotaSpec in the input charges the instance, or it is
    /// bound to `*`. One policy.
    Everywhere,
    /// Each of these bound services, apart.
    Services(Vec<Bound<'a>>),
}

/// One service of a QuotaSpecBinding.
#[derive(Clone)]
struct Bound<'a> {
    /// `name.namespace`, the host, or `*`.
    shown: String,
    binding: &'a Binding,
    /// Its index in the binding's `spec.services`.
    index: usize,
    service: &'a IstioService,
}

impl Bound<'_> {
    /// Requires this service (and its labels) as the destination.
    fn restrict(&self, matches: &mut MatchBuilder) -> Result<(), String> {
        if self.shown != "*" {
            restrict_to_service(self.service, &self.binding.id.namespace, matches)?;
        }
        for (label, value) in &self.service.labels {
            let attr =
                AttributeRef::parse(&format!("destination.labels[{label:?}]")).map_err(|_| {
                    format!(
                        "the binding's label {label:?} cannot be matched: meshtel quota \
                         matches test the destination's app and version labels only"
                    )
                })?;
            matches.require(&attr, value)?;
        }
        Ok(())
    }

    /// How descriptions name it: `ratings.default`, with its labels.
    fn describe(&self) -> String {
        if self.service.labels.is_empty() {
            return self.shown.clone();
        }
        let labels: Vec<String> = self
            .service
            .labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        format!("{} (labels {})", self.shown, labels.join(", "))
    }
}

/// One (name, match, notes) per bound service the rule's match can select; refuses
/// a service meshtel matches cannot express, and a rule that selects none of them.
/// One service keeps `base_name`; several are `<base>.<service>`, with the namespace
/// and version added when the services alone do not tell them apart.
fn split_by_service(
    rule: &Rule,
    base_name: &str,
    base: &MatchBuilder,
    bound: &[Bound],
) -> Result<Vec<(String, QuotaMatch, Vec<String>)>, Error> {
    let mut kept: Vec<(&Bound, QuotaMatch)> = Vec::new();
    let mut skipped = Vec::new();
    for b in bound {
        let location = at(&b.binding.label, &format!("spec.services[{}]", b.index));
        b.restrict(&mut MatchBuilder::default())
            .map_err(|reason| unsupported(location, b.describe(), reason))?;
        let mut matches = base.clone();
        match b.restrict(&mut matches) {
            Ok(()) => kept.push((b, matches.into_match())),
            // The rule's match already wants another destination: Istio never
            // charges this service for this rule.
            Err(_) => skipped.push(b.describe()),
        }
    }
    let all: Vec<String> = bound.iter().map(Bound::describe).collect();
    if kept.is_empty() {
        return Err(unsupported(
            at(&rule.label, "spec.match"),
            rule.match_text.clone(),
            format!(
                "the rule's match (with the QuotaSpec's) selects none of the bound services \
                 ({}), so Istio never charges this quota",
                all.join(", ")
            ),
        ));
    }
    let skipped_note = (!skipped.is_empty()).then(|| {
        format!(
            "not charged on {} (rule {} selects other destinations)",
            skipped.join(", "),
            rule.id
        )
    });
    let level = (1..=3)
        .find(|&level| {
            let suffixes: BTreeSet<String> =
                kept.iter().map(|(_, m)| service_suffix(m, level)).collect();
            suffixes.len() == kept.len()
        })
        .unwrap_or(3);
    let several = kept.len() > 1;
    let out = kept
        .into_iter()
        .map(|(b, matches)| {
            let (name, mut notes) = if several {
                (
                    sanitize_name(&format!("{base_name}.{}", service_suffix(&matches, level))),
                    vec![format!(
                        "QuotaSpecBinding {} binds it to {}: this policy is the one for {} \
                         (a Mixer-era istio-proxy's Check naming quota {base_name} is \
                         decided by the {base_name}.* policy whose match holds)",
                        b.binding.id,
                        all.join(", "),
                        b.describe()
                    )],
                )
            } else {
                (
                    base_name.to_string(),
                    vec![format!(
                        "QuotaSpecBinding {} binds it to service {} only",
                        b.binding.id,
                        b.describe()
                    )],
                )
            };
            notes.extend(skipped_note.clone());
            (name, matches, notes)
        })
        .collect();
    Ok(out)
}

/// `ratings`, `ratings.default`, `ratings.default.v1` (`any` for no service).
fn service_suffix(matches: &QuotaMatch, level: usize) -> String {
    let d = &matches.destination;
    let mut parts = vec![if d.service.is_empty() {
        "any"
    } else {
        d.service.as_str()
    }];
    if level >= 2 && !d.namespace.is_empty() {
        parts.push(&d.namespace);
    }
    if level >= 3 && !d.version.is_empty() {
        parts.push(&d.version);
    }
    parts.join(".")
}

/// How the per-service policies count compared with Mixer, which kept one counter per
/// combination of the instance's dimension values, whatever the service. Exact when
/// every two policies have a dimension their matches fix to different values.
fn counting_note(specs: &[QuotaPolicySpec]) -> String {
    let compiled: Vec<QuotaPolicy> = specs.iter().filter_map(|s| s.compile().ok()).collect();
    let fixed: Vec<BTreeMap<&str, &str>> = compiled.iter().map(fixed_dimensions).collect();
    let mut telling = BTreeSet::new();
    let mut exact = compiled.len() == specs.len();
    for (i, a) in fixed.iter().enumerate() {
        for b in &fixed[i + 1..] {
            let apart: Vec<&str> = a
                .iter()
                .filter(|(name, value)| b.get(*name).is_some_and(|v| v != *value))
                .map(|(name, _)| *name)
                .collect();
            exact &= !apart.is_empty();
            telling.extend(apart);
        }
    }
    if exact {
        format!(
            "counted as in Mixer: its counters were keyed by the instance's dimensions, and \
             dimension {} differs between the bound services, so no two of them ever shared \
             a counter",
            telling.into_iter().collect::<Vec<_>>().join(", ")
        )
    } else {
        let dimensions: Vec<&str> = specs
            .first()
            .map(|s| s.dimensions.keys().map(String::as_str).collect())
            .unwrap_or_default();
        format!(
            "counted per service, unlike Mixer: Mixer kept one counter per combination of the \
             instance's dimensions ({}), shared by requests to every bound service, and these \
             do not tell the services apart; each of these {} policies counts its own \
             service, so together they admit up to {} times a limit. Add a dimension such as \
             destination: destination.service to count exactly",
            if dimensions.is_empty() {
                "none: one counter".to_string()
            } else {
                dimensions.join(", ")
            },
            specs.len(),
            specs.len()
        )
    }
}

/// Dimensions whose value a policy's match fixes: the first attribute of their
/// expression is required to equal a value, so every request the policy counts has
/// that value.
fn fixed_dimensions(policy: &QuotaPolicy) -> BTreeMap<&str, &str> {
    policy
        .dimensions
        .iter()
        .filter_map(|(name, expr)| {
            let first = expr.chain.first()?.as_matched();
            let (_, value) = policy.requirements.iter().find(|(a, _)| a == first)?;
            Some((name.as_str(), value.as_str()))
        })
        .collect()
}

/// The one `match` entry of a QuotaSpec rule: all its clauses must hold.
fn apply_attribute_match(
    spec: &super::QuotaSpecObject,
    r: usize,
    matches: &mut MatchBuilder,
) -> Result<(), Error> {
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
