//! `DestinationRule.spec` → [`DestinationRule`]: the host, its subsets and the traffic
//! policy (load balancer, connection pool limits, outlier detection), each subset's
//! policy merged over the rule's as Istio does.

use yaml_serde::Value;

use super::{ExportTo, check_export_to};
use super::walk::{Cx, Fields, index_path};
use crate::routing::{
    ConnectionPool, DestinationRule, LoadBalancer, MergedRule, OutlierDetection, Subset, TrafficPolicy, qualify_host,
};

const SPEC: Fields = Fields {
    known: &["host", "trafficPolicy", "subsets", "exportTo"],
    unsupported: &[("workloadSelector", "rules apply to every workload")],
};

const SUBSET: Fields = Fields { known: &["name", "labels", "trafficPolicy"], unsupported: &[] };

const TRAFFIC_POLICY: Fields = Fields {
    known: &["loadBalancer", "connectionPool", "outlierDetection"],
    unsupported: &[
        ("tls", "meshtel does not originate TLS"),
        ("portLevelSettings", "policies apply to every port"),
        ("tunnel", ""),
        ("proxyProtocol", ""),
        ("retryBudget", ""),
    ],
};

const LOAD_BALANCER: Fields = Fields {
    known: &["simple"],
    unsupported: &[
        ("consistentHash", ""),
        ("localityLbSetting", "meshtel has no localities"),
        ("warmupDurationSecs", ""),
        ("warmup", ""),
    ],
};

const CONNECTION_POOL: Fields = Fields { known: &["tcp", "http"], unsupported: &[] };

const TCP_SETTINGS: Fields = Fields {
    known: &["maxConnections", "connectTimeout"],
    unsupported: &[("tcpKeepalive", ""), ("maxConnectionDuration", ""), ("idleTimeout", "")],
};

const HTTP_SETTINGS: Fields = Fields {
    known: &["http1MaxPendingRequests", "http2MaxRequests", "maxRequestsPerConnection", "maxRetries"],
    unsupported: &[
        ("idleTimeout", ""),
        ("h2UpgradePolicy", ""),
        ("useClientProtocol", ""),
        ("maxConcurrentStreams", ""),
    ],
};

const OUTLIER_DETECTION: Fields = Fields {
    known: &[
        "consecutive5xxErrors",
        "consecutiveGatewayErrors",
        "consecutiveErrors",
        "interval",
        "baseEjectionTime",
        "maxEjectionPercent",
    ],
    unsupported: &[
        ("splitExternalLocalOriginErrors", ""),
        ("consecutiveLocalOriginFailures", ""),
        ("minHealthPercent", "ejection is bounded by maxEjectionPercent only"),
    ],
};

/// The parts of a `trafficPolicy` that were given: at a subset, each given part replaces
/// the rule's.
#[derive(Debug, Default, Clone)]
pub(crate) struct PolicyParts {
    load_balancer: Option<LoadBalancer>,
    connection_pool: Option<ConnectionPool>,
    outlier_detection: Option<OutlierDetection>,
}

impl PolicyParts {
    /// `self` (a subset's) over `base` (the rule's).
    fn over(&self, base: &PolicyParts) -> PolicyParts {
        PolicyParts {
            load_balancer: self.load_balancer.or(base.load_balancer),
            connection_pool: self.connection_pool.clone().or_else(|| base.connection_pool.clone()),
            outlier_detection: self.outlier_detection.clone().or_else(|| base.outlier_detection.clone()),
        }
    }

    fn into_policy(self) -> TrafficPolicy {
        TrafficPolicy {
            load_balancer: self.load_balancer.unwrap_or_default(),
            connection_pool: self.connection_pool.unwrap_or_default(),
            outlier_detection: self.outlier_detection,
        }
    }
}

/// A destination rule's policies as written: `trafficPolicy` (`None` when absent) and
/// each subset's own, in the order of [`DestinationRule::subsets`].
#[derive(Debug, Default, Clone)]
pub(crate) struct WrittenPolicies {
    rule: Option<PolicyParts>,
    subsets: Vec<PolicyParts>,
}

impl WrittenPolicies {
    /// Whether the rule has a `trafficPolicy`.
    pub(crate) fn has_traffic_policy(&self) -> bool {
        self.rule.is_some()
    }
}

/// Merges `later` into `rule`, as Istio merges destination rules of one host in one
/// namespace (and `exportTo`): `later`'s subsets are added unless `rule` has one of that
/// name, and `later`'s `trafficPolicy` becomes `rule`'s when `rule` has none. Every
/// subset's policy is then its own over the merged rule's.
pub(crate) fn merge(rule: &mut DestinationRule, later: &DestinationRule) {
    let mut subsets = Vec::new();
    for (subset, own) in later.subsets.iter().zip(&later.written.subsets) {
        if rule.subset(&subset.name).is_none() {
            subsets.push(subset.name.clone());
            rule.subsets.push(subset.clone());
            rule.written.subsets.push(own.clone());
        }
    }
    let take_policy = rule.written.rule.is_none() && later.written.rule.is_some();
    if take_policy {
        rule.written.rule = later.written.rule.clone();
    }
    let base = rule.written.rule.clone().unwrap_or_default();
    for (subset, own) in rule.subsets.iter_mut().zip(&rule.written.subsets) {
        subset.traffic_policy = own.over(&base).into_policy();
    }
    rule.traffic_policy = base.into_policy();
    rule.merged.push(MergedRule {
        name: later.name.clone(),
        source: later.source.clone(),
        subsets,
        traffic_policy: take_policy,
    });
}

/// Compiles `spec` of the destination rule `name` in `namespace`.
pub(super) fn compile(cx: &mut Cx<'_>, spec: &Value, spec_path: &str, name: &str, namespace: &str) -> DestinationRule {
    let mut rule = DestinationRule {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        source: cx.source.to_owned(),
        host: String::new(),
        traffic_policy: TrafficPolicy::default(),
        subsets: Vec::new(),
        export_to: ExportTo::All,
        merged: Vec::new(),
        written: WrittenPolicies::default(),
    };
    let Some(spec) = cx.object(spec, spec_path, &SPEC) else {
        return rule;
    };
    match spec.get("host") {
        None => cx.push(&spec.child("host"), "is required: the service this rule applies to"),
        Some((value, path)) => {
            if let Some(host) = cx.required_string(value, &path) {
                match super::check_host(host, true) {
                    Ok(()) => rule.host = qualify_host(host, namespace),
                    Err(message) => cx.push(&path, message),
                }
            }
        }
    }
    if let Some((value, path)) = spec.get("exportTo") {
        rule.export_to = check_export_to(cx, value, &path);
    }
    let written = spec.get("trafficPolicy").map(|(value, path)| compile_traffic_policy(cx, value, &path));
    let parts = written.clone().unwrap_or_default();
    if let Some((value, path)) = spec.get("subsets")
        && let Some(items) = cx.list(value, &path)
    {
        for (index, item) in items.iter().enumerate() {
            let subset_path = index_path(&path, index);
            let Some(object) = cx.object(item, &subset_path, &SUBSET) else {
                continue;
            };
            let name = match object.get("name") {
                None => {
                    cx.push(&object.child("name"), "is required");
                    None
                }
                Some((value, path)) => cx.required_string(value, &path).and_then(|name| {
                    if let Err(message) = check_subset_name(name) {
                        cx.push(&path, message);
                        None
                    } else if rule.subsets.iter().any(|s| s.name == name) {
                        cx.push(&path, format!("subset {name} is defined twice"));
                        None
                    } else {
                        Some(name.to_owned())
                    }
                }),
            };
            let labels = match object.get("labels") {
                Some((value, path)) => cx.string_map(value, &path),
                None => Default::default(),
            };
            let own = match object.get("trafficPolicy") {
                Some((value, path)) => compile_traffic_policy(cx, value, &path),
                None => PolicyParts::default(),
            };
            if let Some(name) = name {
                rule.subsets.push(Subset { name, labels, traffic_policy: own.over(&parts).into_policy() });
                rule.written.subsets.push(own);
            }
        }
    }
    rule.traffic_policy = parts.into_policy();
    rule.written.rule = written;
    rule
}

/// Subset names are DNS labels (`v1`, `canary`), as Istio requires.
fn check_subset_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 63
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if ok {
        Ok(())
    } else {
        Err(format!("{name:?} is not a valid subset name (lower-case letters, digits and '-', at most 63)"))
    }
}

fn compile_traffic_policy(cx: &mut Cx<'_>, value: &Value, path: &str) -> PolicyParts {
    let mut parts = PolicyParts::default();
    let Some(object) = cx.object(value, path, &TRAFFIC_POLICY) else {
        return parts;
    };
    if let Some((value, path)) = object.get("loadBalancer") {
        parts.load_balancer = compile_load_balancer(cx, value, &path);
    }
    if let Some((value, path)) = object.get("connectionPool") {
        parts.connection_pool = Some(compile_connection_pool(cx, value, &path));
    }
    if let Some((value, path)) = object.get("outlierDetection") {
        parts.outlier_detection = Some(compile_outlier_detection(cx, value, &path));
    }
    parts
}

fn compile_load_balancer(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<LoadBalancer> {
    let object = cx.object(value, path, &LOAD_BALANCER)?;
    let Some((value, path)) = object.get("simple") else {
        let given_other = LOAD_BALANCER.unsupported.iter().any(|(k, _)| object.has(k));
        if !given_other {
            cx.push(&object.child("simple"), "is required: ROUND_ROBIN, RANDOM or LEAST_REQUEST");
        }
        return None;
    };
    let simple = cx.string(value, &path)?;
    match simple {
        "ROUND_ROBIN" => Some(LoadBalancer::RoundRobin),
        "RANDOM" => Some(LoadBalancer::Random),
        "LEAST_REQUEST" | "LEAST_CONN" => Some(LoadBalancer::LeastRequest),
        // Istio's "use the default".
        "UNSPECIFIED" => Some(LoadBalancer::default()),
        "PASSTHROUGH" => {
            cx.push(&path, "PASSTHROUGH is not supported by meshtel (it balances over the endpoints it knows)");
            None
        }
        other => {
            let upper = other.to_ascii_uppercase().replace('-', "_");
            let hint = if upper != other
                && ["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST", "LEAST_CONN"].contains(&upper.as_str())
            {
                format!(" (did you mean {upper}?)")
            } else {
                String::new()
            };
            cx.push(
                &path,
                format!("unknown load balancer {other:?}; expected ROUND_ROBIN, RANDOM or LEAST_REQUEST{hint}"),
            );
            None
        }
    }
}

/// A pool limit: Istio reads 0 as "not set" (its default, effectively unlimited).
fn limit(cx: &mut Cx<'_>, object: &super::walk::Object<'_>, key: &str) -> Option<u32> {
    let (value, path) = object.get(key)?;
    cx.u32(value, &path).filter(|n| *n > 0)
}

fn compile_connection_pool(cx: &mut Cx<'_>, value: &Value, path: &str) -> ConnectionPool {
    let mut pool = ConnectionPool::default();
    let Some(object) = cx.object(value, path, &CONNECTION_POOL) else {
        return pool;
    };
    if let Some((value, path)) = object.get("tcp")
        && let Some(tcp) = cx.object(value, &path, &TCP_SETTINGS)
    {
        pool.max_connections = limit(cx, &tcp, "maxConnections");
        if let Some((value, path)) = tcp.get("connectTimeout") {
            pool.connect_timeout = cx.duration(value, &path, false);
        }
    }
    if let Some((value, path)) = object.get("http")
        && let Some(http) = cx.object(value, &path, &HTTP_SETTINGS)
    {
        pool.http1_max_pending_requests = limit(cx, &http, "http1MaxPendingRequests");
        pool.http2_max_requests = limit(cx, &http, "http2MaxRequests");
        pool.max_requests_per_connection = limit(cx, &http, "maxRequestsPerConnection");
        pool.max_retries = limit(cx, &http, "maxRetries");
    }
    pool
}

fn compile_outlier_detection(cx: &mut Cx<'_>, value: &Value, path: &str) -> OutlierDetection {
    let mut detection = OutlierDetection::default();
    let Some(object) = cx.object(value, path, &OUTLIER_DETECTION) else {
        return detection;
    };
    let five_xx = object.get("consecutive5xxErrors").and_then(|(value, path)| cx.u32(value, &path));
    let gateway = object.get("consecutiveGatewayErrors").and_then(|(value, path)| cx.u32(value, &path));
    let legacy = object.get("consecutiveErrors").and_then(|(value, path)| cx.u32(value, &path));
    // The legacy `consecutiveErrors` counts gateway errors (502, 503, 504) and, as in
    // Istio, turns the 5xx count off unless `consecutive5xxErrors` is also given.
    match (gateway, legacy) {
        (Some(_), Some(_)) => cx.push(
            &object.child("consecutiveErrors"),
            "give either consecutiveGatewayErrors or the older consecutiveErrors, not both",
        ),
        (Some(gateway), None) => detection.consecutive_gateway_errors = gateway,
        (None, Some(legacy)) => {
            detection.consecutive_gateway_errors = legacy;
            detection.consecutive_5xx_errors = 0;
        }
        (None, None) => {}
    }
    if let Some(five_xx) = five_xx {
        detection.consecutive_5xx_errors = five_xx;
    }
    if let Some((value, path)) = object.get("interval")
        && let Some(interval) = cx.duration(value, &path, false)
    {
        detection.interval = interval;
    }
    if let Some((value, path)) = object.get("baseEjectionTime")
        && let Some(time) = cx.duration(value, &path, false)
    {
        detection.base_ejection_time = time;
    }
    if let Some((value, path)) = object.get("maxEjectionPercent")
        && let Some(percent) = cx.integer(value, &path, 0..=100).and_then(|p| u32::try_from(p).ok())
    {
        detection.max_ejection_percent = percent;
    }
    detection
}
