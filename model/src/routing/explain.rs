//! What each rule does, in words (`meshtel rules check`).
//!
//! ```text
//! VirtualService default/reviews (rules/reviews.yaml#1), hosts reviews.default.svc.cluster.local
//!   http[0] "jason": when header end-user = "jason"
//!     → reviews.default.svc.cluster.local subset v2 (100%)
//!   http[1]: always
//!     → reviews.default.svc.cluster.local subset v1 (80%)
//!     → reviews.default.svc.cluster.local subset v3 (20%)
//!     fault: delay 7s on 100% of requests; abort 500 on 10%
//!     timeout 3s; retries: 1 × per try 3s on gateway-error
//! ```

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::{
    AbortStatus, DestinationRule, ExportTo, HeaderOperations, HeaderOps, HttpRoute, MergedRule, Mirror, RequestMatch, RetryOn,
    RetryPolicy, Subset, ROOT_NAMESPACE,
    RouteDestination, RuleSet, TrafficPolicy, VirtualService,
};

impl RuleSet {
    /// The rules (or parts of rules) an earlier one keeps from applying, in words: a
    /// later virtual service for one of its hosts; a destination rule for a host whose
    /// rule is read first from another namespace or `exportTo`; and, of a destination
    /// rule merged into an earlier one, a subset whose name was taken or a traffic policy
    /// when the earlier one has its own. The proxy logs each at load, as `meshtel rules
    /// check` notes it.
    pub fn shadowed(&self) -> Vec<String> {
        let mut out = Vec::new();
        for vs in &self.virtual_services {
            for host in &vs.hosts {
                if let Some(winner) = self.virtual_service(host)
                    && !Arc::ptr_eq(winner, vs)
                {
                    out.push(format!(
                        "VirtualService {}/{} ({}) does not route {host}: VirtualService {}/{} ({}) is read first",
                        vs.namespace, vs.name, vs.source, winner.namespace, winner.name, winner.source
                    ));
                }
            }
        }
        for vs in &self.virtual_services {
            for (host, subset) in subset_references(vs) {
                if !self.defines_subset(host, subset) {
                    out.push(format!(
                        "VirtualService {}/{} ({}) routes to subset {subset} of {host}, which no \
                         DestinationRule this proxy applies defines: its requests there get 503",
                        vs.namespace, vs.name, vs.source
                    ));
                }
            }
        }
        for rule in &self.destination_rules {
            // A wildcard rule of another namespace, for its services only, is not this
            // caller's to warn of.
            if !self.may_apply(&rule.namespace, &rule.host) {
                continue;
            }
            let Some(winner) = self.destination_rule(&rule.host) else {
                continue;
            };
            if let Some(group) = self.merged_group(rule)
                && let Some(merged) = group.merged.iter().find(|m| m.source == rule.source)
            {
                out.extend(merge_losses(group, rule, merged));
            }
            if !winner.includes(rule) {
                out.push(format!(
                    "DestinationRule {}/{} ({}) is not applied to {}: DestinationRule {}/{} ({}) comes first (the \
                     caller's namespace, then the service's, then {ROOT_NAMESPACE}, then the first read), and rules of \
                     one host are merged only within one namespace and exportTo",
                    rule.namespace, rule.name, rule.source, rule.host, winner.namespace, winner.name, winner.source
                ));
            }
        }
        out
    }

    /// A human-readable account of every rule, one block per object (virtual services,
    /// then destination rules, each in load order), blocks separated by a blank line.
    pub fn explain(&self) -> String {
        let mut blocks = Vec::new();
        for vs in &self.virtual_services {
            blocks.push(self.explain_virtual_service(vs));
        }
        for rule in &self.destination_rules {
            blocks.push(self.explain_destination_rule(rule));
        }
        blocks.join("\n")
    }

    fn explain_virtual_service(&self, vs: &Arc<VirtualService>) -> String {
        let mut out = String::new();
        let _ =
            writeln!(out, "VirtualService {}/{} ({}), hosts {}", vs.namespace, vs.name, vs.source, vs.hosts.join(", "));
        explain_export_to(&mut out, vs.export_to, &vs.namespace);
        for host in &vs.hosts {
            if let Some(winner) = self.virtual_service(host)
                && !Arc::ptr_eq(winner, vs)
            {
                let audience = self.audience(|rules| rules.virtual_service(host).is_some_and(|w| Arc::ptr_eq(w, vs)));
                let _ = writeln!(
                    out,
                    "  note: {host} is routed by VirtualService {}/{} ({}), read first{}; {audience}",
                    winner.namespace,
                    winner.name,
                    winner.source,
                    read_first_by(winner.export_to, &winner.namespace)
                );
            }
        }
        // A subset only some callers' destination rules define: the others get 503.
        for (host, subset) in subset_references(vs) {
            let audience = self.audience(|rules| rules.defines_subset(host, subset));
            if !audience.ends_with("callers in other namespaces") {
                let _ = writeln!(
                    out,
                    "  note: subset {subset} of {host} is defined by the DestinationRule that {}; \
                     other callers of this route get 503",
                    audience.trim_start_matches("this rule ")
                );
            }
        }
        for (index, route) in vs.http.iter().enumerate() {
            explain_route(&mut out, index, route);
        }
        if vs.http.last().is_none_or(|route| describe_matches(&route.matches) != "always") {
            let _ = writeln!(out, "  other requests: 404 no route");
        }
        out
    }

    fn explain_destination_rule(&self, rule: &Arc<DestinationRule>) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "DestinationRule {}/{} ({}), host {}", rule.namespace, rule.name, rule.source, rule.host);
        explain_export_to(&mut out, rule.export_to, &rule.namespace);
        // The rule as merged with the later ones of its host, namespace and exportTo.
        let group = self.merged_group(rule);
        let shown: &DestinationRule = match group {
            Some(group) if group.source == rule.source => {
                for merged in &group.merged {
                    let _ = writeln!(
                        out,
                        "  merged with DestinationRule {}/{} ({}): {}",
                        rule.namespace,
                        merged.name,
                        merged.source,
                        describe_merge(merged)
                    );
                }
                group
            }
            Some(group) => {
                if let Some(merged) = group.merged.iter().find(|m| m.source == rule.source) {
                    let _ = writeln!(
                        out,
                        "  note: merged into DestinationRule {}/{} ({}), read first: {}",
                        group.namespace,
                        group.name,
                        group.source,
                        describe_merge(merged)
                    );
                    for loss in merge_losses(group, rule, merged) {
                        let _ = writeln!(out, "  note: {loss}");
                    }
                }
                // What applies is the merged rule's: its policy, and its subsets' (this
                // rule's own, or an earlier rule's of the same name).
                group
            }
            None => rule,
        };
        // The part of the merged rule this rule gave, when it was merged into another.
        let gave = group.filter(|group| group.source != rule.source).and_then(|group| group.merged.iter().find(|m| m.source == rule.source));
        let winner = self.destination_rule(&rule.host);
        if let Some(winner) = winner
            && !winner.includes(rule)
        {
            let audience =
                self.audience(|rules| rules.destination_rule(&rule.host).is_some_and(|w| w.includes(rule)));
            let _ = writeln!(
                out,
                "  note: DestinationRule {}/{} ({}) comes first for {}{}; {audience}",
                winner.namespace,
                winner.name,
                winner.source,
                rule.host,
                read_first_by(winner.export_to, &winner.namespace)
            );
        }
        let in_force = if gave.is_some() { " (in force, merged)" } else { "" };
        let _ = writeln!(out, "  traffic policy{in_force}: {}", describe_policy(&shown.traffic_policy));
        // A merged-in rule lists the subsets it gave, as in force; the others, all.
        let listed: Vec<&Subset> = match gave {
            Some(gave) => gave.subsets.iter().filter_map(|name| shown.subset(name)).collect(),
            None => shown.subsets.iter().collect(),
        };
        if !listed.is_empty() {
            let subsets: Vec<String> = listed
                .iter()
                .map(|subset| {
                    let labels: Vec<String> = subset.labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
                    if labels.is_empty() {
                        format!("{} (every endpoint)", subset.name)
                    } else {
                        format!("{} {{{}}}", subset.name, labels.join(", "))
                    }
                })
                .collect();
            let _ = writeln!(out, "  subsets: {}", subsets.join(", "));
        }
        for subset in listed {
            if subset.traffic_policy != shown.traffic_policy {
                let _ = writeln!(
                    out,
                    "  subset {} traffic policy: {}",
                    subset.name,
                    describe_policy(&subset.traffic_policy)
                );
            }
        }
        out
    }
}

/// What a merged rule brought: its subsets taken, its traffic policy.
fn describe_merge(merged: &MergedRule) -> String {
    let subsets = match merged.subsets.as_slice() {
        [] => None,
        [one] => Some(format!("subset {one}")),
        many => Some(format!("subsets {}", many.join(", "))),
    };
    match (subsets, merged.traffic_policy) {
        (Some(subsets), true) => format!("{subsets} and the traffic policy added"),
        (Some(subsets), false) => format!("{subsets} added"),
        (None, true) => "the traffic policy added".to_owned(),
        (None, false) => "nothing added".to_owned(),
    }
}

/// What of `rule`, merged into `group`, does not apply: subsets whose names an earlier
/// rule of the group defines, and its traffic policy when an earlier one has one; each
/// names that earlier rule.
fn merge_losses(group: &DestinationRule, rule: &DestinationRule, merged: &MergedRule) -> Vec<String> {
    // (name, source) of the group's rule that gave what `took` picks.
    let taker = |took: &dyn Fn(&MergedRule) -> bool| {
        group
            .merged
            .iter()
            .find(|m| m.source != rule.source && took(m))
            .map_or((group.name.as_str(), group.source.as_str()), |m| (m.name.as_str(), m.source.as_str()))
    };
    let mut out = Vec::new();
    for subset in &rule.subsets {
        if !merged.subsets.contains(&subset.name) {
            let (name, source) = taker(&|m: &MergedRule| m.subsets.contains(&subset.name));
            out.push(format!(
                "subset {} of DestinationRule {}/{} ({}) is not applied to {}: DestinationRule {}/{name} ({source}), \
                 read first, defines {}",
                subset.name, rule.namespace, rule.name, rule.source, rule.host, group.namespace, subset.name
            ));
        }
    }
    if rule.written.has_traffic_policy() && !merged.traffic_policy {
        let (name, source) = taker(&|m: &MergedRule| m.traffic_policy);
        out.push(format!(
            "the traffic policy of DestinationRule {}/{} ({}) is not applied to {}: DestinationRule {}/{name} \
             ({source}), read first, has one",
            rule.namespace, rule.name, rule.source, rule.host, group.namespace
        ));
    }
    out
}

/// Whose reading a rule read first is: everyone's, or its namespace's (`exportTo: .`).
fn read_first_by(export_to: ExportTo, namespace: &str) -> String {
    match export_to {
        ExportTo::All => String::new(),
        ExportTo::OwnNamespace => format!(" by callers in namespace {namespace} (exportTo \".\")"),
    }
}

impl RuleSet {
    /// Which callers a rule applies to, given `applies` (whether it is the one a rule
    /// set as some namespace sees it picks): callers in each rules' namespace are asked
    /// about, and callers in any other namespace (they all see the same rules).
    fn audience(&self, applies: impl Fn(&RuleSet) -> bool) -> String {
        let mut namespaces: Vec<&str> = self
            .virtual_services
            .iter()
            .map(|vs| vs.namespace.as_str())
            .chain(self.destination_rules.iter().map(|dr| dr.namespace.as_str()))
            .collect();
        namespaces.sort_unstable();
        namespaces.dedup();
        let sees = |namespace: &str| {
            let view = self.visible_from(namespace);
            applies(view.as_ref().unwrap_or(self))
        };
        // No rule lives in a namespace named with a NUL: it stands for every other one.
        if sees("\0") {
            let not: Vec<&str> = namespaces.iter().copied().filter(|ns| !sees(ns)).collect();
            match not.as_slice() {
                [] => "this rule applies to callers in other namespaces".to_owned(),
                _ => format!("this rule applies to callers in every namespace but {}", not.join(", ")),
            }
        } else {
            let only: Vec<&str> = namespaces.iter().copied().filter(|ns| sees(ns)).collect();
            match only.as_slice() {
                [] => "this rule applies to no caller".to_owned(),
                [one] => format!("this rule applies to callers in namespace {one} only"),
                many => format!("this rule applies to callers in namespaces {} only", many.join(", ")),
            }
        }
    }
}

/// Every (host, subset) the routes and mirrors of `vs` send to, each once.
fn subset_references(vs: &VirtualService) -> Vec<(&str, &str)> {
    let mut out: Vec<(&str, &str)> = Vec::new();
    for route in &vs.http {
        let mirror = route.mirror.iter().map(|m| (m.host.as_str(), m.subset.as_deref()));
        let routed = route.route.iter().map(|d| (d.host.as_str(), d.subset.as_deref()));
        for (host, subset) in routed.chain(mirror) {
            if let Some(subset) = subset
                && !out.contains(&(host, subset))
            {
                out.push((host, subset));
            }
        }
    }
    out
}

impl RuleSet {
    /// Whether the destination rule this set applies to `host` defines `subset`.
    fn defines_subset(&self, host: &str, subset: &str) -> bool {
        self.destination_rule(host).is_some_and(|rule| rule.subset(subset).is_some())
    }
}

/// Says who applies a rule when `exportTo` narrows it (nothing for `*`, the default).
fn explain_export_to(out: &mut String, export_to: ExportTo, namespace: &str) {
    if export_to == ExportTo::OwnNamespace {
        let _ = writeln!(
            out,
            "  exportTo \".\": applies only to calls from proxies in namespace {namespace}; callers in other namespaces ignore it"
        );
    }
}

fn explain_route(out: &mut String, index: usize, route: &HttpRoute) {
    let label = if route.name == format!("http[{index}]") {
        route.name.clone()
    } else {
        format!("http[{index}] {:?}", route.name)
    };
    let _ = writeln!(out, "  {label}: {}", describe_matches(&route.matches));
    for destination in &route.route {
        let _ = writeln!(out, "    → {}", describe_route_destination(destination, route.total_weight));
        if !destination.headers.is_empty() {
            let _ = writeln!(out, "      headers: {}", describe_header_operations(&destination.headers));
        }
    }
    if let Some(fault) = &route.fault {
        let mut parts = Vec::new();
        if let Some(delay) = &fault.delay {
            parts.push(format!(
                "delay {} on {} of requests",
                format_duration(delay.fixed_delay),
                format_percent(delay.percent)
            ));
        }
        if let Some(abort) = &fault.abort {
            let status = match abort.status {
                AbortStatus::Http(code) => code.to_string(),
                AbortStatus::Grpc(code) => match i32::try_from(code).ok().and_then(crate::grpc_status::name) {
                    Some(name) => format!("gRPC {name}"),
                    None => format!("gRPC {code}"),
                },
            };
            parts.push(format!("abort {status} on {}", format_percent(abort.percent)));
        }
        let _ = writeln!(out, "    fault: {}", parts.join("; "));
    }
    let mut limits = Vec::new();
    match route.timeout {
        Some(timeout) if timeout.is_zero() => limits.push("no timeout".to_owned()),
        Some(timeout) => limits.push(format!("timeout {}", format_duration(timeout))),
        None => {}
    }
    if let Some(retries) = &route.retries {
        limits.push(format!("retries: {}", describe_retries(retries)));
    }
    if !limits.is_empty() {
        let _ = writeln!(out, "    {}", limits.join("; "));
    }
    if let Some(mirror) = &route.mirror {
        let _ = writeln!(out, "    {}", describe_mirror(mirror));
    }
    if let Some(rewrite) = &route.rewrite {
        let mut parts = Vec::new();
        if let Some(uri) = &rewrite.uri {
            parts.push(format!("uri to {uri:?}"));
        }
        if let Some(authority) = &rewrite.authority {
            parts.push(format!("authority to {authority:?}"));
        }
        let _ = writeln!(out, "    rewrite {}", parts.join(", "));
    }
    if !route.headers.is_empty() {
        let _ = writeln!(out, "    headers: {}", describe_header_operations(&route.headers));
    }
}

/// `when A and B; or when C`, or `always`.
fn describe_matches(matches: &[RequestMatch]) -> String {
    if matches.is_empty() {
        return "always".to_owned();
    }
    let blocks: Vec<String> = matches.iter().map(describe_match).collect();
    if blocks.iter().any(|b| b.is_empty()) {
        return "always".to_owned();
    }
    format!("when {}", blocks.join("; or when "))
}

fn describe_match(m: &RequestMatch) -> String {
    let mut conditions = Vec::new();
    if let Some(uri) = &m.uri {
        let case = if m.ignore_uri_case { " (any case)" } else { "" };
        conditions.push(format!("uri {uri}{case}"));
    }
    for (name, matcher) in [("scheme", &m.scheme), ("method", &m.method), ("authority", &m.authority)] {
        if let Some(matcher) = matcher {
            conditions.push(format!("{name} {matcher}"));
        }
    }
    if let Some(port) = m.port {
        conditions.push(format!("port {port}"));
    }
    for (name, matcher) in &m.headers {
        conditions.push(format!("header {name} {matcher}"));
    }
    for (name, matcher) in &m.without_headers {
        conditions.push(format!("not header {name} {matcher}"));
    }
    for (name, matcher) in &m.query_params {
        conditions.push(format!("query {name} {matcher}"));
    }
    if let Some(namespace) = &m.source_namespace {
        conditions.push(format!("caller namespace {namespace}"));
    }
    if !m.source_labels.is_empty() {
        let labels: Vec<String> = m.source_labels.iter().map(|(k, v)| format!("{k}={v}")).collect();
        conditions.push(format!("caller labels {{{}}}", labels.join(", ")));
    }
    conditions.join(" and ")
}

fn describe_destination(host: &str, port: Option<u16>, subset: Option<&str>) -> String {
    let mut out = host.to_owned();
    if let Some(port) = port {
        let _ = write!(out, ":{port}");
    }
    if let Some(subset) = subset {
        let _ = write!(out, " subset {subset}");
    }
    out
}

fn describe_route_destination(destination: &RouteDestination, total_weight: u32) -> String {
    let share = f64::from(destination.weight) * 100.0 / f64::from(total_weight.max(1));
    format!(
        "{} ({})",
        describe_destination(&destination.host, destination.port, destination.subset.as_deref()),
        format_percent(share)
    )
}

fn describe_mirror(mirror: &Mirror) -> String {
    format!(
        "mirror {} of requests to {}",
        format_percent(mirror.percent),
        describe_destination(&mirror.host, mirror.port, mirror.subset.as_deref())
    )
}

fn describe_retries(retries: &RetryPolicy) -> String {
    if retries.attempts == 0 {
        return "off".to_owned();
    }
    let mut out = format!("{} ×", retries.attempts);
    if let Some(per_try) = retries.per_try_timeout {
        let _ = write!(out, " per try {}", format_duration(per_try));
    }
    let _ = write!(out, " on {}", describe_retry_on(&retries.retry_on));
    out
}

/// The conditions as Envoy names them, e.g. `gateway-error,503`.
pub(crate) fn describe_retry_on(on: &RetryOn) -> String {
    let flags = [
        (on.five_xx, "5xx"),
        (on.gateway_error, "gateway-error"),
        (on.reset, "reset"),
        (on.connect_failure, "connect-failure"),
        (on.refused_stream, "refused-stream"),
        (on.retriable_4xx, "retriable-4xx"),
        (on.grpc_cancelled, "cancelled"),
        (on.grpc_deadline_exceeded, "deadline-exceeded"),
        (on.grpc_internal, "internal"),
        (on.grpc_resource_exhausted, "resource-exhausted"),
        (on.grpc_unavailable, "unavailable"),
    ];
    let mut parts: Vec<String> = flags.iter().filter(|(on, _)| *on).map(|(_, name)| (*name).to_owned()).collect();
    if on.retriable_status_codes {
        if on.status_codes.is_empty() {
            parts.push("retriable-status-codes".to_owned());
        } else {
            parts.extend(on.status_codes.iter().map(u16::to_string));
        }
    }
    if parts.is_empty() {
        return "nothing".to_owned();
    }
    parts.join(",")
}

fn describe_header_operations(operations: &HeaderOperations) -> String {
    let mut parts = Vec::new();
    for (side, ops) in [("request", &operations.request), ("response", &operations.response)] {
        if !ops.is_empty() {
            parts.push(format!("{side} {}", describe_header_ops(ops)));
        }
    }
    parts.join("; ")
}

fn describe_header_ops(ops: &HeaderOps) -> String {
    let show = |(name, value): &(http::HeaderName, http::HeaderValue)| {
        format!("{}: {:?}", name.as_str(), value.to_str().unwrap_or("<binary>"))
    };
    let mut parts = Vec::new();
    if !ops.set.is_empty() {
        parts.push(format!("set {}", ops.set.iter().map(show).collect::<Vec<_>>().join(", ")));
    }
    if !ops.add.is_empty() {
        parts.push(format!("add {}", ops.add.iter().map(show).collect::<Vec<_>>().join(", ")));
    }
    if !ops.remove.is_empty() {
        parts.push(format!("remove {}", ops.remove.iter().map(|n| n.as_str()).collect::<Vec<_>>().join(", ")));
    }
    parts.join(", ")
}

/// `LEAST_REQUEST; at most 1 connection, 1 pending request; eject after 1 consecutive
/// 5xx for 30s (check every 1s, up to 100%)`.
fn describe_policy(policy: &TrafficPolicy) -> String {
    let balancer = match policy.load_balancer {
        super::LoadBalancer::RoundRobin => "ROUND_ROBIN",
        super::LoadBalancer::Random => "RANDOM",
        super::LoadBalancer::LeastRequest => "LEAST_REQUEST",
    };
    let mut parts = vec![balancer.to_owned()];
    let pool = &policy.connection_pool;
    let counts: Vec<String> = [
        (pool.max_connections, "connection", "connections"),
        (pool.http1_max_pending_requests, "pending request", "pending requests"),
        (pool.http2_max_requests, "request in flight", "requests in flight"),
        (pool.max_requests_per_connection, "request per connection", "requests per connection"),
        (pool.max_retries, "retry in flight", "retries in flight"),
    ]
    .into_iter()
    .filter_map(|(count, one, many)| count.map(|n| format!("{n} {}", if n == 1 { one } else { many })))
    .collect();
    if !counts.is_empty() {
        parts.push(format!("at most {}", counts.join(", ")));
    }
    if let Some(timeout) = pool.connect_timeout {
        parts.push(format!("connect timeout {}", format_duration(timeout)));
    }
    if counts.is_empty() && pool.connect_timeout.is_none() {
        parts.push("no connection limits".to_owned());
    }
    match &policy.outlier_detection {
        None => parts.push("no ejection".to_owned()),
        Some(od) => {
            let mut thresholds = Vec::new();
            if od.consecutive_5xx_errors > 0 {
                thresholds.push(format!("{} consecutive 5xx", od.consecutive_5xx_errors));
            }
            if od.consecutive_gateway_errors > 0 {
                let noun = if od.consecutive_gateway_errors == 1 { "error" } else { "errors" };
                thresholds.push(format!("{} consecutive gateway {noun}", od.consecutive_gateway_errors));
            }
            if thresholds.is_empty() {
                parts.push("outlier detection without a threshold (never ejects)".to_owned());
            } else {
                parts.push(format!(
                    "eject after {} for {} (check every {}, up to {}%)",
                    thresholds.join(" or "),
                    format_duration(od.base_ejection_time),
                    format_duration(od.interval),
                    od.max_ejection_percent
                ));
            }
        }
    }
    parts.join("; ")
}

/// `100%`, `10%`, `0.5%`.
fn format_percent(percent: f64) -> String {
    if (percent - percent.round()).abs() < 1e-9 {
        format!("{}%", percent.round())
    } else {
        let text = format!("{percent:.2}");
        format!("{}%", text.trim_end_matches('0').trim_end_matches('.'))
    }
}

/// `7s`, `500ms`, `3m`, `1h30m`: how a duration reads in a rule (Go's form).
pub(crate) fn format_duration(duration: Duration) -> String {
    let nanos = duration.as_nanos();
    if nanos == 0 {
        return "0s".to_owned();
    }
    if nanos.is_multiple_of(1_000_000_000) {
        let seconds = duration.as_secs();
        let mut out = String::new();
        for (unit, value) in [("h", seconds / 3600), ("m", seconds % 3600 / 60), ("s", seconds % 60)] {
            if value > 0 {
                let _ = write!(out, "{value}{unit}");
            }
        }
        return out;
    }
    if nanos.is_multiple_of(1_000_000) {
        return format!("{}ms", nanos / 1_000_000);
    }
    if nanos.is_multiple_of(1_000) {
        return format!("{}µs", nanos / 1_000);
    }
    format!("{nanos}ns")
}
