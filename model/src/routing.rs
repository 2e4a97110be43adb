//! Traffic rules: Istio `VirtualService` and `DestinationRule` documents
//! (`networking.istio.io` `v1alpha3`, `v1beta1`, `v1`), compiled once into a
//! [`RuleSet`] that the proxy consults on every outbound request.
//!
//! ```text
//!  rules/*.yaml ──load──► documents ──compile──► RuleSet ──► proxy: route, fault, retry,
//!  (multi-doc YAML)       (field paths in errors)   │          timeout, mirror, subset,
//!                                                   │          pool limits, ejection
//!                                                   └──explain──► `meshtel rules check`
//! ```
//!
//! Loading is all or nothing: every problem of every document is collected with the file,
//! the object (`VirtualService default/reviews`) and the field path
//! (`spec.http[0].corsPolicy`); a field meshtel does not implement is refused by name,
//! never ignored. Host names are normalised the way Istio resolves them: a short name is
//! relative to the rule's namespace (`reviews` in `default` is
//! `reviews.default.svc.cluster.local`).
//!
//! The compiled types here are what the proxy's data path reads; matching
//! ([`VirtualService::route`], [`HttpRoute::pick`]) is allocation-free.

mod destination;
mod explain;
mod load;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::{HeaderMap, HeaderName, HeaderValue};
use serde::Serialize;

pub use destination::{
    ConnectionPool, DestinationRule, LoadBalancer, MergedRule, OutlierDetection, Subset, TrafficPolicy,
};
pub use load::{ExportTo, RuleProblem};

/// Cluster domain suffix of service FQDNs.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// Every rule in force: virtual services by host, destination rules by host.
#[derive(Debug, Default, Clone, Serialize)]
pub struct RuleSet {
    /// Virtual services in load order (file name, then document order).
    pub virtual_services: Vec<Arc<VirtualService>>,
    /// Destination rules in load order.
    pub destination_rules: Vec<Arc<DestinationRule>>,
    /// Where the rules were read from, in order (file names).
    pub sources: Vec<String>,
    #[serde(skip)]
    vs_exact: HashMap<String, usize>,
    #[serde(skip)]
    vs_wildcard: Vec<(String, usize)>,
    /// The destination rules in force, one per namespace, `exportTo` and host: the first
    /// of each, with the later ones merged into it ([`RuleSet::new`]).
    #[serde(rename = "destination_rules_in_force")]
    dr_merged: Vec<Arc<DestinationRule>>,
    #[serde(skip)]
    dr_exact: HashMap<String, usize>,
    #[serde(skip)]
    dr_wildcard: Vec<(String, usize)>,
    /// Every merged rule of each exact host, and of each wildcard's suffix: the
    /// candidates [`RuleSet::destination_rule_for`] ranks (a request's routing step
    /// looks one up; scanning every rule took 0.9-1.1 µs with 100 of them).
    #[serde(skip)]
    dr_candidates: HashMap<String, Vec<usize>>,
    #[serde(skip)]
    dr_wildcard_candidates: Vec<(String, Vec<usize>)>,
    /// The namespace of the proxy this set is the view of ([`RuleSet::visible_from`]);
    /// `None` for the rules as loaded.
    #[serde(skip)]
    caller_namespace: Option<String>,
}

/// Istio's root namespace: its destination rules apply to callers in every namespace,
/// after the caller's own namespace's and the service's.
pub const ROOT_NAMESPACE: &str = "istio-system";

/// The namespace of a service FQDN (`reviews.default.svc.cluster.local` → `default`; a
/// wildcard's, `*.default.svc.cluster.local`, too).
pub fn fqdn_namespace(fqdn: &str) -> Option<&str> {
    let rest = fqdn.strip_suffix(CLUSTER_DOMAIN)?.strip_suffix('.')?;
    rest.rsplit_once('.').map(|(_, namespace)| namespace)
}

impl RuleSet {
    /// Builds the host indexes. The first virtual service (in load order) naming a host
    /// wins for that host, as Istio merges none for a sidecar. Destination rules of one
    /// host, namespace and `exportTo` are merged as Istio merges them: a later rule's
    /// subsets are added unless the name is taken, and its traffic policy applies when
    /// the merged rule has none; then the first merged rule for a host wins. Wildcards
    /// (`*.example.com`, `*`) are tried longest suffix first after exact names.
    pub fn new(
        virtual_services: Vec<Arc<VirtualService>>,
        destination_rules: Vec<Arc<DestinationRule>>,
        sources: Vec<String>,
    ) -> RuleSet {
        let mut set = RuleSet { virtual_services, destination_rules, sources, ..RuleSet::default() };
        for (index, vs) in set.virtual_services.iter().enumerate() {
            for host in &vs.hosts {
                index_host(&mut set.vs_exact, &mut set.vs_wildcard, host, index);
            }
        }
        let mut by_key: HashMap<(&str, ExportTo, &str), usize> = HashMap::new();
        for dr in &set.destination_rules {
            match by_key.get(&(dr.namespace.as_str(), dr.export_to, dr.host.as_str())) {
                Some(&index) => load::merge_destination_rule(Arc::make_mut(&mut set.dr_merged[index]), dr),
                None => {
                    by_key.insert((&dr.namespace, dr.export_to, &dr.host), set.dr_merged.len());
                    set.dr_merged.push(Arc::clone(dr));
                }
            }
        }
        for (index, dr) in set.dr_merged.iter().enumerate() {
            index_host(&mut set.dr_exact, &mut set.dr_wildcard, &dr.host, index);
            match dr.host.strip_prefix('*') {
                Some(suffix) => match set.dr_wildcard_candidates.iter_mut().find(|(s, _)| s == suffix) {
                    Some((_, indices)) => indices.push(index),
                    None => set.dr_wildcard_candidates.push((suffix.to_owned(), vec![index])),
                },
                None => set.dr_candidates.entry(dr.host.clone()).or_default().push(index),
            }
        }
        set.vs_wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        set.dr_wildcard.sort_by_key(|w| std::cmp::Reverse(w.0.len()));
        set
    }

    /// No rules at all.
    pub fn is_empty(&self) -> bool {
        self.virtual_services.is_empty() && self.destination_rules.is_empty()
    }

    /// The virtual service for `host` (an FQDN, or a host name as called, without port).
    pub fn virtual_service(&self, host: &str) -> Option<&Arc<VirtualService>> {
        lookup(&self.vs_exact, &self.vs_wildcard, host).and_then(|i| self.virtual_services.get(i))
    }

    /// The destination rule for the service `fqdn`, merged with the later rules of its
    /// host, namespace and `exportTo`, as the caller this set is the view of applies it
    /// ([`RuleSet::destination_rule_for`]; for the rules as loaded, as a caller in none
    /// of the rules' namespaces does, then the first rule read for the host).
    pub fn destination_rule(&self, fqdn: &str) -> Option<&Arc<DestinationRule>> {
        match &self.caller_namespace {
            Some(caller) => self.destination_rule_for(fqdn, Some(caller)),
            None => self
                .destination_rule_for(fqdn, None)
                .or_else(|| lookup(&self.dr_exact, &self.dr_wildcard, fqdn).and_then(|i| self.dr_merged.get(i))),
        }
    }

    /// The destination rule a proxy in namespace `caller` applies to the service `fqdn`,
    /// looked up as Istio does: the rules of the caller's namespace, then those of the
    /// service's namespace, then those of [`ROOT_NAMESPACE`]; in the first of those
    /// with a rule for the host, an exact host before wildcards (the longest first),
    /// then the first read. A rule in another namespace applies only to callers there.
    pub fn destination_rule_for(&self, fqdn: &str, caller: Option<&str>) -> Option<&Arc<DestinationRule>> {
        let rank = |namespace: &str| namespace_rank(namespace, fqdn, caller);
        let exact = self.dr_candidates.get(fqdn).into_iter().flatten().map(|&index| (usize::MAX, index));
        let wildcards = self
            .dr_wildcard_candidates
            .iter()
            .filter(|(suffix, _)| fqdn.ends_with(suffix.as_str()))
            .flat_map(|(suffix, indices)| indices.iter().map(|&index| (suffix.len(), index)));
        exact
            .chain(wildcards)
            .filter_map(|(specificity, index)| {
                let rule = self.dr_merged.get(index)?;
                Some(((rank(&rule.namespace)?, std::cmp::Reverse(specificity), index), rule))
            })
            .min_by_key(|(key, _)| *key)
            .map(|(_, rule)| rule)
    }

    /// Whether a rule of `namespace` is one the caller this set is the view of may apply
    /// to `fqdn` (always, for the rules as loaded).
    pub fn may_apply(&self, namespace: &str, fqdn: &str) -> bool {
        self.caller_namespace.as_deref().is_none_or(|caller| namespace_rank(namespace, fqdn, Some(caller)).is_some())
    }

    /// The merged destination rule `rule` (one object as loaded) is part of.
    pub fn merged_group(&self, rule: &DestinationRule) -> Option<&Arc<DestinationRule>> {
        self.dr_merged.iter().find(|merged| merged.includes(rule))
    }

    /// The traffic policy for `fqdn` and `subset`: the subset's (already merged with the
    /// rule's own), the rule's, or the default. `None` when the subset is named but not
    /// defined.
    pub fn traffic_policy(&self, fqdn: &str, subset: Option<&str>) -> Option<TrafficPolicy> {
        let rule = self.destination_rule(fqdn);
        match (rule, subset) {
            (None, None) => Some(TrafficPolicy::default()),
            (None, Some(_)) => None,
            (Some(rule), None) => Some(rule.traffic_policy.clone()),
            (Some(rule), Some(name)) => rule.subset(name).map(|s| s.traffic_policy.clone()),
        }
    }
}

/// Where the rules of `namespace` come in Istio's order for a caller in `caller` and
/// the service `fqdn`: the caller's namespace, the service's, the root namespace; `None`
/// for any other.
fn namespace_rank(namespace: &str, fqdn: &str, caller: Option<&str>) -> Option<u8> {
    if Some(namespace) == caller {
        Some(0)
    } else if Some(namespace) == fqdn_namespace(fqdn) {
        Some(1)
    } else if namespace == ROOT_NAMESPACE {
        Some(2)
    } else {
        None
    }
}

fn index_host(exact: &mut HashMap<String, usize>, wildcard: &mut Vec<(String, usize)>, host: &str, index: usize) {
    if let Some(suffix) = host.strip_prefix('*') {
        if !wildcard.iter().any(|(s, _)| s == suffix) {
            wildcard.push((suffix.to_owned(), index));
        }
    } else {
        exact.entry(host.to_owned()).or_insert(index);
    }
}

fn lookup(exact: &HashMap<String, usize>, wildcard: &[(String, usize)], host: &str) -> Option<usize> {
    if let Some(index) = exact.get(host) {
        return Some(*index);
    }
    wildcard.iter().find(|(suffix, _)| host.ends_with(suffix.as_str())).map(|(_, i)| *i)
}

/// Resolves a host as Istio does for a rule in `namespace`: `reviews` →
/// `reviews.<namespace>.svc.cluster.local`, `reviews.prod` →
/// `reviews.prod.svc.cluster.local`, `reviews.prod.svc` → `….cluster.local`; anything
/// else (FQDNs, wildcards, `*`) as written, lower-cased.
pub fn qualify_host(host: &str, namespace: &str) -> String {
    let host = host.trim().to_ascii_lowercase();
    if host.starts_with('*') || host.ends_with(CLUSTER_DOMAIN) {
        return host;
    }
    match host.matches('.').count() {
        0 => format!("{host}.{namespace}.{CLUSTER_DOMAIN}"),
        1 => format!("{host}.{CLUSTER_DOMAIN}"),
        2 if host.ends_with(".svc") => format!("{host}.cluster.local"),
        _ => host,
    }
}

/// One `VirtualService`.
#[derive(Debug, Clone, Serialize)]
pub struct VirtualService {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace` (default `default`).
    pub namespace: String,
    /// `file#document` it came from.
    pub source: String,
    /// `spec.hosts`, qualified ([`qualify_host`]).
    pub hosts: Vec<String>,
    /// `spec.http`, in order: the first route whose match applies wins.
    pub http: Vec<HttpRoute>,
    /// `spec.exportTo`: the namespaces whose proxies apply it.
    pub export_to: ExportTo,
}

/// What the request looks like to route matching.
#[derive(Debug, Clone, Copy)]
pub struct RequestAttrs<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// `http` (or `https`).
    pub scheme: &'a str,
    /// `Host`/`:authority` as sent, port included.
    pub authority: &'a str,
    /// Path without the query.
    pub path: &'a str,
    /// Query string without `?` (empty when none).
    pub query: &'a str,
    /// Port the request was addressed to, when the authority names one.
    pub port: Option<u16>,
    /// Request headers.
    pub headers: &'a HeaderMap,
}

/// Who is calling: this proxy's own workload.
#[derive(Debug, Clone, Copy)]
pub struct SourceAttrs<'a> {
    /// Pod labels of the calling instance (`app`, `version`, ...).
    pub labels: &'a BTreeMap<String, String>,
    /// Namespace of the calling instance.
    pub namespace: &'a str,
}

impl VirtualService {
    /// The first HTTP route that matches; `None` means no route (Envoy answers 404 `NR`).
    pub fn route(&self, request: &RequestAttrs<'_>, source: &SourceAttrs<'_>) -> Option<&HttpRoute> {
        self.http.iter().find(|route| route.matches(request, source))
    }
}

/// One entry of `spec.http`.
#[derive(Debug, Clone, Serialize)]
pub struct HttpRoute {
    /// `name`, or `http[i]` when unnamed.
    pub name: String,
    /// `match`: any one suffices; empty matches everything.
    pub matches: Vec<RequestMatch>,
    /// `route`: destinations with weights.
    pub route: Vec<RouteDestination>,
    /// Sum of the weights (at least 1).
    pub total_weight: u32,
    /// `fault`.
    pub fault: Option<Fault>,
    /// `timeout` over all attempts; `None` when not given, `Some(ZERO)` disables.
    pub timeout: Option<Duration>,
    /// `retries`; `None` when not given (the proxy then applies Istio's default).
    pub retries: Option<RetryPolicy>,
    /// `mirror` with `mirrorPercentage`.
    pub mirror: Option<Mirror>,
    /// `rewrite`.
    pub rewrite: Option<Rewrite>,
    /// `headers` (request and response operations).
    pub headers: HeaderOperations,
}

impl HttpRoute {
    /// Whether any of the route's match blocks applies (or it has none).
    pub fn matches(&self, request: &RequestAttrs<'_>, source: &SourceAttrs<'_>) -> bool {
        self.matches.is_empty() || self.matches.iter().any(|m| m.matches(request, source))
    }

    /// The destination for a roll in `0..total_weight`.
    pub fn pick(&self, roll: u32) -> Option<&RouteDestination> {
        let mut upto = 0u32;
        for destination in &self.route {
            upto = upto.saturating_add(destination.weight);
            if roll < upto {
                return Some(destination);
            }
        }
        self.route.first()
    }

    /// The match block that applied (for `rewrite.uri` of a prefix match).
    pub fn matching_block(&self, request: &RequestAttrs<'_>, source: &SourceAttrs<'_>) -> Option<&RequestMatch> {
        self.matches.iter().find(|m| m.matches(request, source))
    }
}

/// One `HTTPMatchRequest`: every condition given must hold.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestMatch {
    /// `name`.
    pub name: String,
    /// `uri`.
    pub uri: Option<StringMatch>,
    /// `scheme`.
    pub scheme: Option<StringMatch>,
    /// `method`.
    pub method: Option<StringMatch>,
    /// `authority`.
    pub authority: Option<StringMatch>,
    /// `headers`: lower-cased name → match.
    pub headers: Vec<(String, StringMatch)>,
    /// `withoutHeaders`: none of these may match.
    pub without_headers: Vec<(String, StringMatch)>,
    /// `queryParams`.
    pub query_params: Vec<(String, StringMatch)>,
    /// `sourceLabels`: every label must equal the caller's.
    pub source_labels: BTreeMap<String, String>,
    /// `sourceNamespace`.
    pub source_namespace: Option<String>,
    /// `port`.
    pub port: Option<u16>,
    /// `ignoreUriCase`: `uri` compares case-insensitively.
    pub ignore_uri_case: bool,
}

impl RequestMatch {
    /// Whether every condition holds.
    pub fn matches(&self, request: &RequestAttrs<'_>, source: &SourceAttrs<'_>) -> bool {
        if let Some(uri) = &self.uri {
            let ok = if self.ignore_uri_case { uri.matches_ignore_case(request.path) } else { uri.matches(request.path) };
            if !ok {
                return false;
            }
        }
        if self.method.as_ref().is_some_and(|m| !m.matches(request.method))
            || self.scheme.as_ref().is_some_and(|m| !m.matches(request.scheme))
            || self.authority.as_ref().is_some_and(|m| !m.matches(request.authority))
        {
            return false;
        }
        if self.port.is_some() && self.port != request.port {
            return false;
        }
        if let Some(namespace) = &self.source_namespace
            && namespace != source.namespace
        {
            return false;
        }
        if !self.source_labels.iter().all(|(k, v)| source.labels.get(k) == Some(v)) {
            return false;
        }
        for (name, matcher) in &self.headers {
            match header_str(request.headers, name) {
                Some(value) if matcher.matches(&value) => {}
                _ => return false,
            }
        }
        for (name, matcher) in &self.without_headers {
            if header_str(request.headers, name).is_some_and(|value| matcher.matches(&value)) {
                return false;
            }
        }
        for (name, matcher) in &self.query_params {
            match query_param(request.query, name) {
                Some(value) if matcher.matches(value) => {}
                _ => return false,
            }
        }
        true
    }
}

/// The value of header `name`: a repeated header's values joined by `,`, as Envoy
/// matches them (`None` when absent). A value is its bytes read as UTF-8, a byte that
/// is not becoming U+FFFD: a header with non-ASCII bytes is present all the same.
fn header_str<'a>(headers: &'a HeaderMap, name: &str) -> Option<std::borrow::Cow<'a, str>> {
    let mut values = headers.get_all(name).iter();
    let first = String::from_utf8_lossy(values.next()?.as_bytes());
    let mut rest = values.peekable();
    if rest.peek().is_none() {
        return Some(first);
    }
    let mut joined = first.into_owned();
    for value in rest {
        joined.push(',');
        joined.push_str(&String::from_utf8_lossy(value.as_bytes()));
    }
    Some(std::borrow::Cow::Owned(joined))
}

/// The first value of `name` in a query string (raw, not percent-decoded).
pub fn query_param<'a>(query: &'a str, name: &str) -> Option<&'a str> {
    query.split('&').find_map(|pair| {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        (key == name).then_some(value)
    })
}

/// Istio's `StringMatch`.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum StringMatch {
    /// `exact`.
    Exact(String),
    /// `prefix`.
    Prefix(String),
    /// `regex` (RE2 syntax, matched against the whole value).
    Regex(#[serde(serialize_with = "serialize_regex")] AnchoredRegex),
    /// `{}`: the value is present.
    Present,
}

/// A regex compiled anchored (`^(?:…)$`), keeping the source for display.
#[derive(Debug, Clone)]
pub struct AnchoredRegex {
    /// As written.
    pub source: String,
    /// Anchored, case-sensitive.
    pub regex: regex::Regex,
}

impl AnchoredRegex {
    /// Compiles `source` anchored at both ends.
    pub fn new(source: &str) -> Result<AnchoredRegex, regex::Error> {
        Self::with_size_limit(source, 1 << 20)
    }

    /// [`Self::new`], refused past `limit` bytes compiled.
    pub fn with_size_limit(source: &str, limit: usize) -> Result<AnchoredRegex, regex::Error> {
        // The lazy DFA's cache (one per thread matching, 10 MiB by default) is held to
        // the same limit, so the rules' regexes cannot grow past their budget as they
        // match; past it the regex matches without that cache, more slowly.
        let regex = regex::RegexBuilder::new(&format!("^(?:{source})$"))
            .size_limit(limit)
            .dfa_size_limit(limit)
            .build()?;
        Ok(AnchoredRegex { source: source.to_owned(), regex })
    }
}

fn serialize_regex<S: serde::Serializer>(regex: &AnchoredRegex, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&regex.source)
}

impl StringMatch {
    /// Whether `value` matches.
    pub fn matches(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(want) => value == want,
            StringMatch::Prefix(prefix) => value.starts_with(prefix.as_str()),
            StringMatch::Regex(regex) => regex.regex.is_match(value),
            StringMatch::Present => true,
        }
    }

    /// Whether `value` matches, ignoring ASCII case in an exact or prefix match: a
    /// regex keeps its case, as Istio's `ignoreUriCase` says (Envoy ignores
    /// `case_sensitive` for `safe_regex`).
    pub fn matches_ignore_case(&self, value: &str) -> bool {
        match self {
            StringMatch::Exact(want) => value.eq_ignore_ascii_case(want),
            StringMatch::Prefix(prefix) => {
                value.len() >= prefix.len() && value.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
            }
            StringMatch::Regex(regex) => regex.regex.is_match(value),
            StringMatch::Present => true,
        }
    }
}

impl fmt::Display for StringMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StringMatch::Exact(v) => write!(f, "= {v:?}"),
            StringMatch::Prefix(v) => write!(f, "starts with {v:?}"),
            StringMatch::Regex(r) => write!(f, "~ /{}/", r.source),
            StringMatch::Present => write!(f, "present"),
        }
    }
}

/// One `route[]` entry: where and how much.
#[derive(Debug, Clone, Serialize)]
pub struct RouteDestination {
    /// `destination.host`, qualified.
    pub host: String,
    /// `destination.subset`.
    pub subset: Option<String>,
    /// `destination.port.number`.
    pub port: Option<u16>,
    /// `weight` (a lone destination weighs 100).
    pub weight: u32,
    /// `headers` of this destination.
    pub headers: HeaderOperations,
}

/// `headers`: operations on the request (before forwarding) and the response (before
/// returning it downstream).
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeaderOperations {
    /// `headers.request`.
    pub request: HeaderOps,
    /// `headers.response`.
    pub response: HeaderOps,
}

impl HeaderOperations {
    /// No operation at all.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }
}

/// `set` (replace), `add` (append), `remove`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct HeaderOps {
    /// `set`.
    #[serde(serialize_with = "serialize_headers")]
    pub set: Vec<(HeaderName, HeaderValue)>,
    /// `add`.
    #[serde(serialize_with = "serialize_headers")]
    pub add: Vec<(HeaderName, HeaderValue)>,
    /// `remove`.
    #[serde(serialize_with = "serialize_names")]
    pub remove: Vec<HeaderName>,
}

fn serialize_headers<S: serde::Serializer>(headers: &[(HeaderName, HeaderValue)], serializer: S) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = serializer.serialize_map(Some(headers.len()))?;
    for (name, value) in headers {
        map.serialize_entry(name.as_str(), value.to_str().unwrap_or("<binary>"))?;
    }
    map.end()
}

fn serialize_names<S: serde::Serializer>(names: &[HeaderName], serializer: S) -> Result<S::Ok, S::Error> {
    serializer.collect_seq(names.iter().map(HeaderName::as_str))
}

impl HeaderOps {
    /// No operation.
    pub fn is_empty(&self) -> bool {
        self.set.is_empty() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Applies the operations to `headers`: remove, then set, then add.
    pub fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for (name, value) in &self.set {
            headers.insert(name.clone(), value.clone());
        }
        for (name, value) in &self.add {
            headers.append(name.clone(), value.clone());
        }
    }
}

/// `fault`: delay and abort are independent.
#[derive(Debug, Clone, Serialize)]
pub struct Fault {
    /// `delay`.
    pub delay: Option<FaultDelay>,
    /// `abort`.
    pub abort: Option<FaultAbort>,
}

/// `fault.delay`.
#[derive(Debug, Clone, Serialize)]
pub struct FaultDelay {
    /// `fixedDelay`.
    pub fixed_delay: Duration,
    /// `percentage.value` (or legacy `percent`); 0 when neither is given, as in Istio:
    /// a fault without a percentage never applies.
    pub percent: f64,
}

/// `fault.abort`.
#[derive(Debug, Clone, Serialize)]
pub struct FaultAbort {
    /// `httpStatus` or `grpcStatus`.
    pub status: AbortStatus,
    /// `percentage.value` (or legacy `percent`); 0 when neither is given, as in Istio:
    /// a fault without a percentage never applies.
    pub percent: f64,
}

/// What an injected abort answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AbortStatus {
    /// `httpStatus`.
    Http(u16),
    /// `grpcStatus` (a gRPC code, e.g. 14 for `UNAVAILABLE`).
    Grpc(u32),
}

/// `retries`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RetryPolicy {
    /// `attempts`: retries after the first try (0 disables).
    pub attempts: u32,
    /// `perTryTimeout`.
    pub per_try_timeout: Option<Duration>,
    /// `retryOn`.
    pub retry_on: RetryOn,
}

impl RetryPolicy {
    /// What Istio applies to a route that names no `retries`: 2 retries on
    /// `connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`
    /// (503).
    pub fn istio_default() -> RetryPolicy {
        RetryPolicy { attempts: 2, per_try_timeout: None, retry_on: RetryOn::istio_default() }
    }
}

/// `retryOn`: Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` conditions; a bare
/// status code adds it to the retriable status codes.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetryOn {
    /// `5xx`: any 5xx response, a reset or a timeout.
    pub five_xx: bool,
    /// `gateway-error`: 502, 503, 504, or a per-try timeout.
    pub gateway_error: bool,
    /// `reset`: disconnect or reset before a response, or a per-try timeout.
    pub reset: bool,
    /// `connect-failure`.
    pub connect_failure: bool,
    /// `refused-stream`.
    pub refused_stream: bool,
    /// `retriable-4xx`: 409.
    pub retriable_4xx: bool,
    /// `retriable-status-codes` is on (with the codes below).
    pub retriable_status_codes: bool,
    /// Status codes retried when `retriable_status_codes` is on.
    pub status_codes: Vec<u16>,
    /// gRPC `cancelled`.
    pub grpc_cancelled: bool,
    /// gRPC `deadline-exceeded`.
    pub grpc_deadline_exceeded: bool,
    /// gRPC `internal`.
    pub grpc_internal: bool,
    /// gRPC `resource-exhausted`.
    pub grpc_resource_exhausted: bool,
    /// gRPC `unavailable`.
    pub grpc_unavailable: bool,
}

impl RetryOn {
    /// Istio's default conditions (503 as the retriable status code).
    pub fn istio_default() -> RetryOn {
        RetryOn {
            connect_failure: true,
            refused_stream: true,
            grpc_unavailable: true,
            grpc_cancelled: true,
            retriable_status_codes: true,
            status_codes: vec![503],
            ..RetryOn::default()
        }
    }

    /// Whether an upstream response with `status` (and gRPC status, when any) is retried.
    pub fn retries_status(&self, status: u16, grpc_status: Option<u32>) -> bool {
        (self.five_xx && (500..600).contains(&status))
            || (self.gateway_error && matches!(status, 502..=504))
            || (self.retriable_4xx && status == 409)
            || (self.retriable_status_codes && self.status_codes.contains(&status))
            || grpc_status.is_some_and(|code| {
                (self.grpc_cancelled && code == 1)
                    || (self.grpc_deadline_exceeded && code == 4)
                    || (self.grpc_resource_exhausted && code == 8)
                    || (self.grpc_internal && code == 13)
                    || (self.grpc_unavailable && code == 14)
            })
    }

    /// Whether a failed connection is retried.
    pub fn retries_connect_failure(&self) -> bool {
        self.connect_failure || self.five_xx || self.gateway_error || self.reset
    }

    /// Whether a reset before the response head is retried: under `gateway-error`
    /// too, as Envoy counts a reset as the 5xx it becomes.
    pub fn retries_reset(&self) -> bool {
        self.five_xx || self.gateway_error || self.reset
    }

    /// Whether a per-try timeout is retried.
    pub fn retries_per_try_timeout(&self) -> bool {
        self.five_xx || self.gateway_error || self.reset
    }
}

/// `mirror` and `mirrorPercentage`.
#[derive(Debug, Clone, Serialize)]
pub struct Mirror {
    /// `mirror.host`, qualified.
    pub host: String,
    /// `mirror.subset`.
    pub subset: Option<String>,
    /// `mirror.port.number`.
    pub port: Option<u16>,
    /// `mirrorPercentage.value` (or legacy `mirrorPercent`); 100 when not given.
    pub percent: f64,
}

/// `rewrite`.
#[derive(Debug, Clone, Serialize)]
pub struct Rewrite {
    /// `rewrite.uri`: replaces the matched prefix (a `prefix` uri match, and `/` when the
    /// route matched no uri, as Istio's route then matches the prefix `/`), else the
    /// whole path (an `exact` or `regex` match); the query is kept.
    pub uri: Option<String>,
    /// `rewrite.authority`: the `Host`/`:authority` sent upstream.
    pub authority: Option<String>,
}

impl Rewrite {
    /// The rewritten path for `path` when the route matched with `matched`.
    pub fn rewrite_path(&self, path: &str, matched: Option<&RequestMatch>) -> Option<String> {
        let uri = self.uri.as_ref()?;
        let prefix = match matched.and_then(|m| m.uri.as_ref()) {
            Some(StringMatch::Prefix(prefix)) => Some(prefix.as_str()),
            Some(_) => None,
            None => Some("/"),
        };
        let rewritten = match prefix {
            Some(prefix) if path.len() >= prefix.len() => format!("{uri}{}", &path[prefix.len()..]),
            _ => uri.clone(),
        };
        // The request target must stay a path: a rewrite such as `v2` of `/api/x`
        // (prefix `/api`) sends `/v2/x`.
        Some(if rewritten.starts_with('/') { rewritten } else { format!("/{rewritten}") })
    }
}

#[cfg(test)]
mod tests;
