//! Reading rule documents: multi-document YAML (or JSON) files → [`RuleSet`], every
//! problem collected with its file, object and field path.
//!
//! ```text
//!  files (name order) ─► documents (`---`) ─► object: apiVersion, kind, metadata
//!                                               │
//!                        ┌──────────────────────┴──────────────────────┐
//!                 VirtualService spec                         DestinationRule spec
//!                 (virtual_service.rs)                        (destination_rule.rs)
//!                        └──────────────► RuleSet::new ◄───────────────┘
//!                                              │
//!                     subsets named by routes and mirrors checked against the rules
//! ```
//!
//! Every document is read by hand from a generic YAML value (`walk`), so a problem
//! names its field (`spec.http[0].route[1].destination.subset`) and reading goes on
//! after it: one run reports everything wrong.

mod destination_rule;
mod fault_retry;
mod headers;
mod virtual_service;
mod walk;

use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use yaml_serde::Value;

use self::walk::{Cx, Fields, child_path, index_path};
use super::{DestinationRule, RuleSet, VirtualService};
use crate::Error;

pub(crate) use self::destination_rule::{WrittenPolicies, merge as merge_destination_rule};

/// One problem in the rule documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    /// `file#document` (document numbers from 1).
    pub source: String,
    /// `VirtualService default/reviews`, or `document` when the kind is unknown.
    pub object: String,
    /// Field path, e.g. `spec.http[0].corsPolicy`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleProblem {
    /// `source: object: field: message`, leaving out the parts that are empty (a file
    /// that cannot be read has no object or field).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for part in [&self.source, &self.object, &self.field] {
            if !part.is_empty() {
                write!(f, "{part}: ")?;
            }
        }
        f.write_str(&self.message)
    }
}

/// API versions of `networking.istio.io` that meshtel reads; the fields it implements are
/// the same in all three.
const API_VERSIONS: &[&str] =
    &["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"];

const OBJECT: Fields = Fields { known: &["apiVersion", "kind", "metadata", "spec", "status"], unsupported: &[] };

const LIST: Fields = Fields { known: &["apiVersion", "kind", "metadata", "items"], unsupported: &[] };

/// Kubernetes `ObjectMeta`: only `name` and `namespace` matter to routing; the rest is
/// bookkeeping and is accepted as is.
const METADATA: Fields = Fields {
    known: &[
        "name",
        "namespace",
        "labels",
        "annotations",
        "resourceVersion",
        "uid",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "ownerReferences",
        "finalizers",
        "selfLink",
    ],
    unsupported: &[("generateName", "give metadata.name")],
};

/// The namespace of an object whose metadata names none (what `kubectl apply` uses).
const DEFAULT_NAMESPACE: &str = "default";

impl RuleSet {
    /// Loads every `*.yaml`, `*.yml` and `*.json` file of `dir` (not recursing), in file
    /// name order; hidden files and editor leftovers (`.x`, `x~`, `x.swp`, `x.tmp`) are
    /// skipped.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, Error> {
        let mut problems = Vec::new();
        let sources = read_dir_sources(dir, &mut problems);
        finish_with_read_problems(problems, &sources)
    }

    /// Loads directories (as [`RuleSet::load_dir`]) and files (whatever their name), in
    /// the order given, as one rule set.
    pub fn load_paths<P: AsRef<Path>>(paths: &[P]) -> Result<RuleSet, Error> {
        let mut problems = Vec::new();
        let mut sources = Vec::new();
        for path in paths {
            let path = path.as_ref();
            if path.is_dir() {
                sources.extend(read_dir_sources(path, &mut problems));
            } else if let Some(text) = read_file(path, &mut problems) {
                sources.push((path.display().to_string(), text));
            }
        }
        finish_with_read_problems(problems, &sources)
    }

    /// Loads `(name, text)` pairs, in order, as one rule set. A name ending in `.json`
    /// is read as JSON (one or more values), anything else as multi-document YAML.
    pub fn from_sources(sources: &[(String, String)]) -> Result<RuleSet, Error> {
        let mut loader = Loader::default();
        for (name, text) in sources {
            loader.add_source(name, text);
        }
        loader.finish(sources.iter().map(|(name, _)| name.clone()).collect())
    }
}

fn finish_with_read_problems(
    mut problems: Vec<RuleProblem>,
    sources: &[(String, String)],
) -> Result<RuleSet, Error> {
    match RuleSet::from_sources(sources) {
        Ok(rules) if problems.is_empty() => Ok(rules),
        Ok(_) => Err(Error::Rules { problems }),
        Err(error) => {
            problems.extend(error.rule_problems().iter().cloned());
            Err(Error::Rules { problems })
        }
    }
}

fn read_problem(source: &Path, message: String) -> RuleProblem {
    RuleProblem { source: source.display().to_string(), object: String::new(), field: String::new(), message }
}

/// Whether a directory entry is a rule file.
fn is_rule_file(name: &str) -> bool {
    let skipped = name.starts_with('.') || name.ends_with('~') || name.ends_with(".swp") || name.ends_with(".tmp");
    let extension = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase());
    !skipped && matches!(extension.as_deref(), Some("yaml" | "yml" | "json"))
}

fn read_dir_sources(dir: &Path, problems: &mut Vec<RuleProblem>) -> Vec<(String, String)> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(error) => {
            problems.push(read_problem(dir, format!("cannot read the rules directory: {error}")));
            return Vec::new();
        }
    };
    let mut names = Vec::new();
    for entry in entries {
        match entry {
            Ok(entry) => {
                let name = entry.file_name().to_string_lossy().into_owned();
                let path = entry.path();
                // Follows symbolic links, as a Kubernetes ConfigMap mount is made of them.
                if is_rule_file(&name) && path.is_file() {
                    names.push((name, path));
                }
            }
            Err(error) => problems.push(read_problem(dir, format!("cannot list the rules directory: {error}"))),
        }
    }
    names.sort();
    names
        .into_iter()
        .filter_map(|(_, path)| read_file(&path, problems).map(|text| (path.display().to_string(), text)))
        .collect()
}

fn read_file(path: &Path, problems: &mut Vec<RuleProblem>) -> Option<String> {
    match crate::yaml_nesting::read_file(path) {
        Ok(bytes) => match String::from_utf8(bytes) {
            // Most likely a file caught between an editor's truncate and its write:
            // taking it at its word would drop every rule it held.
            Ok(text) if text.trim().is_empty() => {
                problems.push(read_problem(
                    path,
                    "is empty: delete the file to remove its rules, or leave a comment in it (`null` in a JSON file)".to_owned(),
                ));
                None
            }
            Ok(text) => Some(text),
            Err(error) => {
                problems.push(read_problem(path, format!("is not UTF-8 text: {}", error.utf8_error())));
                None
            }
        },
        Err(crate::yaml_nesting::FileError::Io(error)) => {
            problems.push(read_problem(path, format!("cannot read the file: {error}")));
            None
        }
        Err(too_large) => {
            problems.push(read_problem(path, too_large.to_string()));
            None
        }
    }
}

/// Splits a file into documents: JSON values one after the other for `.json`, YAML
/// documents (`---`) otherwise. Reading stops at the first syntax error, which is
/// returned as the last document.
fn documents(name: &str, text: &str) -> Vec<Result<Value, String>> {
    let mut out = Vec::new();
    if name.to_ascii_lowercase().ends_with(".json") {
        for value in serde_json::Deserializer::from_str(text).into_iter::<serde_json::Value>() {
            let value = value
                .map_err(|e| format!("invalid JSON: {e}"))
                .and_then(|value| yaml_serde::to_value(value).map_err(|e| format!("invalid JSON: {e}")));
            let failed = value.is_err();
            out.push(value);
            if failed {
                break;
            }
        }
        return out;
    }
    if let Err(error) = crate::yaml_nesting::check(text) {
        out.push(Err(format!("invalid YAML: {error}")));
        return out;
    }
    for document in yaml_serde::Deserializer::from_str(text) {
        let value = Value::deserialize(document).map_err(|e| format!("invalid YAML: {e}")).and_then(|mut value| {
            value.apply_merge().map_err(|e| format!("invalid YAML merge (<<): {e}"))?;
            Ok(value)
        });
        let failed = value.is_err();
        out.push(value);
        if failed {
            // The parser cannot resynchronise after an error; the rest is unread.
            break;
        }
    }
    out
}

/// A subset named by a route destination or a mirror, checked once every rule is read.
struct SubsetRef {
    source: String,
    object: String,
    field: String,
    host: String,
    subset: String,
    /// The namespace of the rule that names it.
    namespace: String,
}

#[derive(Default)]
struct Loader {
    virtual_services: Vec<Arc<VirtualService>>,
    destination_rules: Vec<Arc<DestinationRule>>,
    subset_refs: Vec<SubsetRef>,
    /// `Kind namespace/name` → where it was first defined.
    defined: HashMap<String, String>,
    problems: Vec<RuleProblem>,
    regex_budget: walk::RegexBudget,
}

impl Loader {
    fn add_source(&mut self, name: &str, text: &str) {
        for (index, document) in documents(name, text).into_iter().enumerate() {
            let source = format!("{name}#{}", index + 1);
            match document {
                Ok(value) => self.add_document(&source, &value),
                Err(message) => self.problems.push(RuleProblem {
                    source,
                    object: "document".to_owned(),
                    field: String::new(),
                    message,
                }),
            }
        }
    }

    fn add_document(&mut self, source: &str, value: &Value) {
        match value {
            // An empty document (`---` twice, or a file of comments).
            Value::Null => {}
            Value::Mapping(map) if map.get("kind").and_then(Value::as_str) == Some("List") => {
                self.add_list(source, value);
            }
            _ => self.add_object(source, value, ""),
        }
    }

    /// `kind: List` (what `kubectl get -o yaml` prints): each of `items` is an object.
    fn add_list(&mut self, source: &str, value: &Value) {
        let mut problems = Vec::new();
        let regex_budget = self.regex_budget.clone();
        let mut cx = Cx { source, object: "List".to_owned(), problems: &mut problems, regex_budget };
        let items = cx.object(value, "", &LIST).and_then(|list| {
            if let Some((value, path)) = list.get("apiVersion")
                && cx.string(value, &path).is_some_and(|v| v != "v1")
            {
                cx.push(&path, "a List has apiVersion v1");
            }
            match list.get("items") {
                Some((value, path)) => cx.list(value, &path).map(|items| (items, path)),
                None => None,
            }
        });
        self.problems.append(&mut problems);
        if let Some((items, path)) = items {
            for (index, item) in items.iter().enumerate() {
                self.add_object(source, item, &index_path(&path, index));
            }
        }
    }

    /// One VirtualService or DestinationRule at `path` of the document (`""`, or
    /// `items[3]` in a List).
    fn add_object(&mut self, source: &str, value: &Value, path: &str) {
        let mut problems = Vec::new();
        let regex_budget = self.regex_budget.clone();
        let mut cx = Cx { source, object: "document".to_owned(), problems: &mut problems, regex_budget };
        self.read_object(&mut cx, value, path);
        self.problems.append(&mut problems);
    }

    fn read_object(&mut self, cx: &mut Cx<'_>, value: &Value, path: &str) {
        let Value::Mapping(map) = value else {
            cx.push(
                path,
                format!(
                    "expected a Kubernetes object (apiVersion, kind, metadata, spec), found {}",
                    walk::describe(value)
                ),
            );
            return;
        };
        let kind = match map.get("kind") {
            None | Some(Value::Null) => {
                cx.push(&child_path(path, "kind"), "is required: VirtualService or DestinationRule");
                return;
            }
            Some(kind) => match cx.string(kind, &child_path(path, "kind")) {
                Some(kind @ ("VirtualService" | "DestinationRule")) => kind,
                Some(other) => {
                    cx.push(
                        &child_path(path, "kind"),
                        format!("kind {other} is not supported; meshtel reads VirtualService and DestinationRule"),
                    );
                    return;
                }
                None => return,
            },
        };
        let api_version_path = child_path(path, "apiVersion");
        match map.get("apiVersion") {
            None | Some(Value::Null) => {
                cx.push(&api_version_path, "is required, e.g. networking.istio.io/v1");
                return;
            }
            Some(value) => match cx.string(value, &api_version_path) {
                Some(version) if API_VERSIONS.contains(&version) => {}
                Some(other) => {
                    cx.push(
                        &api_version_path,
                        format!(
                            "apiVersion {other} is not supported; meshtel reads {kind} from networking.istio.io/v1, \
                             v1beta1 and v1alpha3"
                        ),
                    );
                    return;
                }
                None => return,
            },
        }

        // The object's identity, for every later problem.
        let metadata = map.get("metadata").and_then(Value::as_mapping);
        let name = metadata.and_then(|m| m.get("name")).and_then(Value::as_str).unwrap_or("");
        let namespace = metadata
            .and_then(|m| m.get("namespace"))
            .and_then(Value::as_str)
            .filter(|ns| !ns.is_empty())
            .unwrap_or(DEFAULT_NAMESPACE);
        let id = format!("{kind} {namespace}/{}", if name.is_empty() { "?" } else { name });
        cx.object = id.clone();

        let Some(object) = cx.object(value, path, &OBJECT) else {
            return;
        };
        match object.get("metadata") {
            None => cx.push(&object.child("metadata"), "is required (metadata.name names the rule)"),
            Some((value, path)) => check_metadata(cx, value, &path),
        }
        let Some((spec, spec_path)) = object.get("spec") else {
            cx.push(&object.child("spec"), "is required");
            return;
        };
        if !name.is_empty() {
            match self.defined.get(&id) {
                Some(first) => {
                    cx.push(&child_path(&object.child("metadata"), "name"), format!("{id} is also defined at {first}"))
                }
                None => {
                    self.defined.insert(id, cx.source.to_owned());
                }
            }
        }
        if kind == "VirtualService" {
            let vs = virtual_service::compile(cx, spec, &spec_path, name, namespace, &mut self.subset_refs);
            self.virtual_services.push(Arc::new(vs));
        } else {
            let dr = destination_rule::compile(cx, spec, &spec_path, name, namespace);
            self.destination_rules.push(Arc::new(dr));
        }
    }

    fn finish(mut self, sources: Vec<String>) -> Result<RuleSet, Error> {
        let rules = RuleSet::new(self.virtual_services, self.destination_rules, sources);
        for reference in &self.subset_refs {
            if let Some(message) = undefined_subset(&rules, reference) {
                self.problems.push(RuleProblem {
                    source: reference.source.clone(),
                    object: reference.object.clone(),
                    field: reference.field.clone(),
                    message,
                });
            }
        }
        if self.problems.is_empty() {
            return Ok(rules);
        }
        // Problems in file and document order (references were checked last).
        let order: HashMap<&str, usize> =
            rules.sources.iter().enumerate().map(|(i, name)| (name.as_str(), i)).collect();
        let key = |problem: &RuleProblem| {
            let (file, document) = problem.source.rsplit_once('#').unwrap_or((problem.source.as_str(), "0"));
            (order.get(file).copied().unwrap_or(usize::MAX), document.parse::<usize>().unwrap_or(0))
        };
        self.problems.sort_by_key(key);
        Err(Error::Rules { problems: self.problems })
    }
}

/// Why the subset `reference` names cannot be routed to, if it cannot: neither as
/// callers in the referring rule's namespace apply the destination rules, nor as
/// callers elsewhere do.
fn undefined_subset(rules: &RuleSet, reference: &SubsetRef) -> Option<String> {
    let (host, subset) = (reference.host.as_str(), reference.subset.as_str());
    if rules.destination_rule_for(host, Some(&reference.namespace)).is_some_and(|rule| rule.subset(subset).is_some()) {
        return None;
    }
    let Some(rule) = rules.destination_rule(host) else {
        return Some(format!("subset {subset} of {host} is not defined by any DestinationRule"));
    };
    if rule.subset(subset).is_some() {
        return None;
    }
    let defined: Vec<&str> = rule.subsets.iter().map(|s| s.name.as_str()).collect();
    let defines = if defined.is_empty() {
        "which defines no subsets".to_owned()
    } else {
        format!("which defines {}", defined.join(", "))
    };
    let shadowed = rules
        .destination_rules
        .iter()
        .find(|other| !rule.includes(other) && other.host == host && other.subset(subset).is_some())
        .map(|other| {
            format!(
                "; DestinationRule {}/{} ({}) defines it but is not used: the first rule for a host applies, and \
                 rules of one host are merged only within one namespace and exportTo",
                other.namespace, other.name, other.source
            )
        })
        .unwrap_or_default();
    Some(format!(
        "subset {subset} of {host} is not defined by DestinationRule {}/{} ({}), {defines}{shadowed}",
        rule.namespace, rule.name, rule.source
    ))
}

fn check_metadata(cx: &mut Cx<'_>, value: &Value, path: &str) {
    let Some(metadata) = cx.object(value, path, &METADATA) else {
        return;
    };
    match metadata.get("name") {
        None => cx.push(&metadata.child("name"), "is required"),
        Some((value, path)) => {
            if let Some(name) = cx.required_string(value, &path)
                && !is_dns_subdomain(name)
            {
                cx.push(&path, format!("{name:?} is not a valid name (lower-case letters, digits, '-' and '.')"));
            }
        }
    }
    if let Some((value, path)) = metadata.get("namespace")
        && let Some(namespace) = cx.required_string(value, &path)
        && !is_dns_label(namespace)
    {
        cx.push(&path, format!("{namespace:?} is not a valid namespace (lower-case letters, digits and '-')"));
    }
}

fn is_dns_label(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 63
        && text.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !text.starts_with('-')
        && !text.ends_with('-')
}

fn is_dns_subdomain(text: &str) -> bool {
    text.len() <= 253 && text.split('.').all(is_dns_label)
}

/// Checks a host as written in a rule: DNS labels, optionally led by a `*.` wildcard
/// (or `*` alone) when `wildcard` is allowed; no port.
fn check_host(host: &str, wildcard: bool) -> Result<(), String> {
    let host = host.trim();
    if host.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if host.contains(':') {
        return Err(format!("{host:?} must not name a port (use the port field)"));
    }
    if host.contains("://") || host.contains('/') {
        return Err(format!("{host:?} must be a host name, not a URL"));
    }
    let rest = if wildcard {
        if host == "*" {
            return Ok(());
        }
        host.strip_prefix("*.").unwrap_or(host)
    } else {
        host
    };
    if rest.contains('*') {
        return Err(format!("{host:?}: a wildcard may only be the first label, as in *.example.com"));
    }
    let valid_label = |label: &str| {
        !label.is_empty()
            && label.len() <= 63
            && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            && !label.starts_with('-')
            && !label.ends_with('-')
    };
    if host.len() > 253 || !rest.split('.').all(valid_label) {
        return Err(format!("{host:?} is not a valid host name"));
    }
    Ok(())
}

/// `spec.exportTo` of a rule: which namespaces' proxies apply it (Istio's visibility).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize)]
pub enum ExportTo {
    /// `*`, or no `exportTo` (Istio's default): proxies in every namespace.
    #[default]
    #[serde(rename = "*")]
    All,
    /// `.` alone: only proxies in the rule's own namespace.
    #[serde(rename = ".")]
    OwnNamespace,
}

impl ExportTo {
    /// Whether a rule of `rule_namespace` applies to calls from a proxy in `caller_namespace`.
    pub fn visible_from(self, rule_namespace: &str, caller_namespace: &str) -> bool {
        match self {
            ExportTo::All => true,
            ExportTo::OwnNamespace => rule_namespace == caller_namespace,
        }
    }
}

/// `exportTo`: visibility between namespaces, `*` (all) and `.` (the rule's own); a list
/// with `*` in it, or an empty one, is all.
fn check_export_to(cx: &mut Cx<'_>, value: &Value, path: &str) -> ExportTo {
    let targets = cx.strings(value, path);
    for (target, field) in &targets {
        if *target != "*" && *target != "." {
            cx.push(
                field,
                format!(
                    "exportTo {target:?} is not supported by meshtel (only \"*\", every namespace, and \".\", the rule's own)"
                ),
            );
        }
    }
    if !targets.is_empty() && targets.iter().all(|(target, _)| *target == ".") { ExportTo::OwnNamespace } else { ExportTo::All }
}

impl RuleSet {
    /// The rules a proxy in `namespace` applies, when `exportTo: ["."]` hides some of
    /// them from it; `None` when every rule is visible (the usual case: no copy).
    ///
    /// As Istio picks them for a sidecar: the virtual services exported only to this
    /// namespace come first (then the rest, in load order), so that a namespace's own
    /// override wins over a rule for everyone; a destination rule applies to callers in
    /// its own namespace, to callers of services in its namespace, and from
    /// [`super::ROOT_NAMESPACE`] to all ([`RuleSet::destination_rule_for`]).
    pub fn visible_from(&self, namespace: &str) -> Option<RuleSet> {
        let own_private = |vs: &VirtualService| vs.export_to == ExportTo::OwnNamespace && vs.namespace == namespace;
        // No copy when every rule is of this namespace, its private ones already first.
        let same_view = self.virtual_services.iter().all(|vs| vs.namespace == namespace)
            && !self.virtual_services.iter().skip_while(|vs| own_private(vs)).any(|vs| own_private(vs))
            && self.destination_rules.iter().all(|dr| dr.namespace == namespace);
        if same_view {
            return None;
        }
        let visible = |vs: &&Arc<VirtualService>| vs.export_to.visible_from(&vs.namespace, namespace);
        let virtual_services = self
            .virtual_services
            .iter()
            .filter(|vs| own_private(vs))
            .chain(self.virtual_services.iter().filter(|vs| !own_private(vs)).filter(visible))
            .cloned()
            .collect();
        // A rule that can apply to this namespace's callers: one of its own, one of the
        // root namespace, or one whose host can be a service of the rule's namespace.
        let applicable = |dr: &DestinationRule| {
            dr.namespace == namespace
                || dr.namespace == super::ROOT_NAMESPACE
                || dr.host.starts_with('*')
                || super::fqdn_namespace(&dr.host) == Some(dr.namespace.as_str())
        };
        let destination_rules = self
            .destination_rules
            .iter()
            .filter(|dr| dr.export_to.visible_from(&dr.namespace, namespace) && applicable(dr))
            .cloned()
            .collect();
        let mut view = RuleSet::new(virtual_services, destination_rules, self.sources.clone());
        view.caller_namespace = Some(namespace.to_owned());
        Some(view)
    }
}
