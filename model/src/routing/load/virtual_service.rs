//! `VirtualService.spec` → [`VirtualService`]: hosts, HTTP routes with their matches,
//! weighted destinations, faults, timeouts, retries, mirrors, rewrites and header
//! operations.

use http::HeaderName;
use yaml_serde::Value;

use super::fault_retry::{compile_fault, compile_retries};
use super::headers::{compile_header_operations, compile_rewrite};
use super::walk::{Cx, Fields, Object, index_path};
use super::{ExportTo, SubsetRef, check_export_to, check_host};
use crate::routing::{
    HeaderOperations, HttpRoute, Mirror, RequestMatch, RouteDestination, StringMatch, VirtualService,
    qualify_host,
};

const SPEC: Fields = Fields {
    known: &["hosts", "gateways", "http", "exportTo"],
    unsupported: &[
        ("tcp", "meshtel routes HTTP only"),
        ("tls", "meshtel routes HTTP only"),
        ("workloadSelector", "rules apply to every workload"),
    ],
};

const HTTP_ROUTE: Fields = Fields {
    known: &[
        "name",
        "match",
        "route",
        "fault",
        "timeout",
        "retries",
        "mirror",
        "mirrorPercentage",
        "mirrorPercent",
        "rewrite",
        "headers",
    ],
    unsupported: &[
        ("redirect", ""),
        ("directResponse", ""),
        ("delegate", ""),
        ("corsPolicy", ""),
        ("mirrors", "use mirror with mirrorPercentage"),
        ("websocketUpgrade", "removed from Istio; upgrades pass through"),
        ("appendHeaders", "use headers.request.add"),
        ("appendRequestHeaders", "use headers.request.add"),
        ("removeRequestHeaders", "use headers.request.remove"),
        ("appendResponseHeaders", "use headers.response.add"),
        ("removeResponseHeaders", "use headers.response.remove"),
    ],
};

const MATCH: Fields = Fields {
    known: &[
        "name",
        "uri",
        "scheme",
        "method",
        "authority",
        "headers",
        "withoutHeaders",
        "queryParams",
        "sourceLabels",
        "sourceNamespace",
        "port",
        "ignoreUriCase",
        "gateways",
        "statPrefix",
    ],
    unsupported: &[],
};

const STRING_MATCH: Fields = Fields { known: &["exact", "prefix", "regex"], unsupported: &[] };

const ROUTE_DESTINATION: Fields = Fields { known: &["destination", "weight", "headers"], unsupported: &[] };

const DESTINATION: Fields = Fields { known: &["host", "subset", "port"], unsupported: &[] };

const PORT_SELECTOR: Fields = Fields { known: &["number"], unsupported: &[] };

const PERCENT: Fields = Fields { known: &["value"], unsupported: &[] };

/// Compiles `spec` of the virtual service `name` in `namespace`; `refs` receives every
/// subset named by a destination or mirror, to be checked once all rules are read.
pub(super) fn compile(
    cx: &mut Cx<'_>,
    spec: &Value,
    spec_path: &str,
    name: &str,
    namespace: &str,
    refs: &mut Vec<SubsetRef>,
) -> VirtualService {
    let mut vs = VirtualService {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        source: cx.source.to_owned(),
        hosts: Vec::new(),
        http: Vec::new(),
        export_to: ExportTo::All,
    };
    let Some(spec) = cx.object(spec, spec_path, &SPEC) else {
        return vs;
    };
    match spec.get("hosts") {
        None => cx.push(&spec.child("hosts"), "is required: the hosts this rule routes, e.g. [reviews]"),
        Some((value, path)) => {
            let hosts = cx.strings(value, &path);
            if hosts.is_empty() && matches!(value, Value::Sequence(_)) {
                cx.push(&path, "must name at least one host");
            }
            for (host, field) in hosts {
                if host.trim() == "*" {
                    cx.push(&field, "the wildcard host * is not allowed for sidecar (mesh) rules; name the hosts");
                    continue;
                }
                if let Err(message) = check_host(host, true) {
                    cx.push(&field, message);
                    continue;
                }
                let qualified = qualify_host(host, namespace);
                if vs.hosts.contains(&qualified) {
                    cx.push(&field, format!("{qualified} is listed twice"));
                } else {
                    vs.hosts.push(qualified);
                }
            }
        }
    }
    if let Some((value, path)) = spec.get("gateways") {
        check_mesh_gateways(cx, value, &path);
    }
    if let Some((value, path)) = spec.get("exportTo") {
        vs.export_to = check_export_to(cx, value, &path);
    }
    match spec.get("http") {
        None if spec.has("tcp") || spec.has("tls") => {}
        None => cx.push(&spec.child("http"), "is required: meshtel routes HTTP (give at least one http route)"),
        Some((value, path)) => {
            if let Some(routes) = cx.list(value, &path) {
                if routes.is_empty() {
                    cx.push(&path, "must hold at least one route");
                }
                for (index, route) in routes.iter().enumerate() {
                    let route_path = index_path(&path, index);
                    if let Some(route) = compile_http_route(cx, route, &route_path, index, namespace, refs) {
                        vs.http.push(route);
                    }
                }
            }
        }
    }
    vs
}

/// `gateways`: meshtel is a sidecar, so only `mesh` (the default) applies.
fn check_mesh_gateways(cx: &mut Cx<'_>, value: &Value, path: &str) {
    for (gateway, field) in cx.strings(value, path) {
        if gateway != "mesh" {
            cx.push(
                &field,
                format!("gateway {gateway:?} is not supported by meshtel (it applies sidecar rules: only \"mesh\")"),
            );
        }
    }
}

fn compile_http_route(
    cx: &mut Cx<'_>,
    value: &Value,
    path: &str,
    index: usize,
    namespace: &str,
    refs: &mut Vec<SubsetRef>,
) -> Option<HttpRoute> {
    let object = cx.object(value, path, &HTTP_ROUTE)?;
    let name = match object.get("name") {
        Some((value, path)) => cx.string(value, &path).map(str::to_owned),
        None => None,
    }
    .filter(|n| !n.is_empty())
    .unwrap_or_else(|| format!("http[{index}]"));

    let mut matches = Vec::new();
    if let Some((value, path)) = object.get("match")
        && let Some(items) = cx.list(value, &path)
    {
        for (i, item) in items.iter().enumerate() {
            if let Some(m) = compile_match(cx, item, &index_path(&path, i)) {
                matches.push(m);
            }
        }
    }

    let mut route = Vec::new();
    let problems_before_route = cx.problems.len();
    match object.get("route") {
        None => {
            let alternatives = ["redirect", "directResponse", "delegate"];
            if !alternatives.iter().any(|k| object.has(k)) {
                cx.push(&object.child("route"), "is required: where matching requests go");
            }
        }
        Some((value, path)) => {
            if let Some(items) = cx.list(value, &path) {
                if items.is_empty() {
                    cx.push(&path, "must name at least one destination");
                }
                let lone = items.len() == 1;
                for (i, item) in items.iter().enumerate() {
                    if let Some(d) = compile_route_destination(cx, item, &index_path(&path, i), lone, namespace, refs) {
                        route.push(d);
                    }
                }
            }
        }
    }
    let total: u64 = route.iter().map(|d| u64::from(d.weight)).sum();
    // A weight out of range was reported already and counts as 0 here.
    if total == 0 && !route.is_empty() && cx.problems.len() == problems_before_route {
        cx.push(&object.child("route"), "the weights add up to 0: give at least one destination a weight");
    }
    let total_weight = u32::try_from(total).unwrap_or(u32::MAX).max(1);

    let fault = object.get("fault").and_then(|(value, path)| compile_fault(cx, value, &path));
    let timeout = object.get("timeout").and_then(|(value, path)| cx.duration(value, &path, true));
    let retries = object.get("retries").and_then(|(value, path)| compile_retries(cx, value, &path));
    let mirror = compile_mirror(cx, &object, namespace, refs);
    let rewrite = object.get("rewrite").and_then(|(value, path)| compile_rewrite(cx, value, &path));
    let headers = match object.get("headers") {
        Some((value, path)) => compile_header_operations(cx, value, &path),
        None => HeaderOperations::default(),
    };
    Some(HttpRoute { name, matches, route, total_weight, fault, timeout, retries, mirror, rewrite, headers })
}

fn compile_match(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<RequestMatch> {
    let object = cx.object(value, path, &MATCH)?;
    let mut m = RequestMatch::default();
    if let Some((value, path)) = object.get("name") {
        m.name = cx.string(value, &path).unwrap_or_default().to_owned();
    }
    m.uri = object.get("uri").and_then(|(value, path)| compile_string_match(cx, value, &path));
    m.scheme = object.get("scheme").and_then(|(value, path)| compile_string_match(cx, value, &path));
    m.method = object.get("method").and_then(|(value, path)| compile_string_match(cx, value, &path));
    m.authority = object.get("authority").and_then(|(value, path)| compile_string_match(cx, value, &path));
    if let Some((value, path)) = object.get("headers") {
        m.headers = compile_header_matches(cx, value, &path);
    }
    if let Some((value, path)) = object.get("withoutHeaders") {
        m.without_headers = compile_header_matches(cx, value, &path);
    }
    if let Some((value, path)) = object.get("queryParams") {
        for (name, value, field) in cx.entries(value, &path) {
            if name.is_empty() {
                cx.push(&field, "query parameter names must not be empty");
                continue;
            }
            match compile_string_match(cx, value, &field) {
                Some(StringMatch::Prefix(_)) => {
                    cx.push(&field, "queryParams match exact or regex only (Istio has no prefix match for them)")
                }
                Some(matcher) => m.query_params.push((name.to_owned(), matcher)),
                None => {}
            }
        }
    }
    if let Some((value, path)) = object.get("sourceLabels") {
        m.source_labels = cx.string_map(value, &path);
    }
    if let Some((value, path)) = object.get("sourceNamespace") {
        m.source_namespace = cx.required_string(value, &path).map(str::to_owned);
    }
    if let Some((value, path)) = object.get("port") {
        m.port = cx.integer(value, &path, 1..=65535).and_then(|p| u16::try_from(p).ok());
    }
    if let Some((value, path)) = object.get("ignoreUriCase") {
        m.ignore_uri_case = cx.boolean(value, &path).unwrap_or(false);
    }
    if let Some((value, path)) = object.get("gateways") {
        check_mesh_gateways(cx, value, &path);
    }
    if let Some((value, path)) = object.get("statPrefix") {
        // Envoy's statistics prefix: meshtel keeps its own metrics, nothing to route.
        let _ = cx.string(value, &path);
    }
    Some(m)
}

/// `headers` / `withoutHeaders`: lower-cased header name → match.
fn compile_header_matches(cx: &mut Cx<'_>, value: &Value, path: &str) -> Vec<(String, StringMatch)> {
    let mut out = Vec::new();
    for (name, value, field) in cx.entries(value, path) {
        let lower = name.to_ascii_lowercase();
        if let Some(pseudo) = lower.strip_prefix(':') {
            let hint = match pseudo {
                "authority" | "method" | "scheme" | "path" => {
                    format!(" (use the {} match)", pseudo.replace("path", "uri"))
                }
                _ => String::new(),
            };
            cx.push(&field, format!("{name:?} is a pseudo-header, not a header name{hint}"));
            continue;
        }
        if HeaderName::from_bytes(lower.as_bytes()).is_err() {
            cx.push(&field, format!("{name:?} is not a valid header name"));
            continue;
        }
        if let Some(matcher) = compile_string_match(cx, value, &field) {
            out.push((lower, matcher));
        }
    }
    out
}

/// `StringMatch`: exactly one of `exact`, `prefix`, `regex`; `{}` means present.
fn compile_string_match(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<StringMatch> {
    let object = cx.object(value, path, &STRING_MATCH)?;
    let given: Vec<&str> = STRING_MATCH.known.iter().copied().filter(|k| object.has(k)).collect();
    if given.len() > 1 {
        cx.push(path, format!("give only one of exact, prefix, regex (found {})", given.join(", ")));
        return None;
    }
    let Some(kind) = given.first() else {
        return Some(StringMatch::Present);
    };
    let (value, field) = object.get(kind)?;
    let text = cx.string(value, &field)?;
    match *kind {
        "exact" => Some(StringMatch::Exact(text.to_owned())),
        "prefix" => Some(StringMatch::Prefix(text.to_owned())),
        _ => cx.regex(text, &field).map(StringMatch::Regex),
    }
}

/// A destination's `host`, `subset` and `port.number`.
struct Destination {
    host: String,
    subset: Option<String>,
    port: Option<u16>,
}

fn compile_destination(
    cx: &mut Cx<'_>,
    value: &Value,
    path: &str,
    namespace: &str,
    refs: &mut Vec<SubsetRef>,
) -> Option<Destination> {
    let object = cx.object(value, path, &DESTINATION)?;
    let host = match object.get("host") {
        None => {
            cx.push(&object.child("host"), "is required: the service to send to");
            None
        }
        Some((value, path)) => cx.required_string(value, &path).and_then(|host| {
            if host.contains('*') {
                cx.push(&path, "a destination must name one service, not a wildcard");
                return None;
            }
            match check_host(host, false) {
                Ok(()) => Some(qualify_host(host, namespace)),
                Err(message) => {
                    cx.push(&path, message);
                    None
                }
            }
        }),
    };
    let subset = match object.get("subset") {
        Some((value, path)) => cx.required_string(value, &path).map(|s| (s.to_owned(), path)),
        None => None,
    };
    let port = match object.get("port") {
        Some((value, path)) => compile_port(cx, value, &path),
        None => None,
    };
    let host = host?;
    if let Some((subset, field)) = &subset {
        refs.push(SubsetRef {
            source: cx.source.to_owned(),
            object: cx.object.clone(),
            field: field.clone(),
            host: host.clone(),
            subset: subset.clone(),
            namespace: namespace.to_owned(),
        });
    }
    Some(Destination { host, subset: subset.map(|(s, _)| s), port })
}

fn compile_port(cx: &mut Cx<'_>, value: &Value, path: &str) -> Option<u16> {
    let object = cx.object(value, path, &PORT_SELECTOR)?;
    match object.get("number") {
        Some((value, path)) => cx.integer(value, &path, 1..=65535).and_then(|p| u16::try_from(p).ok()),
        None => {
            cx.push(&object.child("number"), "is required: the port of the destination");
            None
        }
    }
}

fn compile_route_destination(
    cx: &mut Cx<'_>,
    value: &Value,
    path: &str,
    lone: bool,
    namespace: &str,
    refs: &mut Vec<SubsetRef>,
) -> Option<RouteDestination> {
    let object = cx.object(value, path, &ROUTE_DESTINATION)?;
    let destination = match object.get("destination") {
        Some((value, path)) => compile_destination(cx, value, &path, namespace, refs),
        None => {
            cx.push(&object.child("destination"), "is required: the service to send to");
            None
        }
    };
    let weight = match object.get("weight") {
        Some((value, path)) => cx.integer(value, &path, 0..=100).and_then(|w| u32::try_from(w).ok()),
        None => None,
    };
    // Istio ignores the weight of a lone destination; among several, a missing weight
    // is 0 and the rest are taken proportionally.
    let weight = if lone { 100 } else { weight.unwrap_or(0) };
    let headers = match object.get("headers") {
        Some((value, path)) => compile_header_operations(cx, value, &path),
        None => HeaderOperations::default(),
    };
    let destination = destination?;
    Some(RouteDestination {
        host: destination.host,
        subset: destination.subset,
        port: destination.port,
        weight,
        headers,
    })
}

/// `percentage.value` (0–100, fractional) or the legacy whole `percent`; `absent` when
/// neither is given (Istio: 100 for a mirror, 0 for a fault, as its unset `percent`).
pub(super) fn compile_percent(
    cx: &mut Cx<'_>,
    object: &Object<'_>,
    percentage_key: &str,
    legacy_key: &str,
    absent: f64,
) -> Option<f64> {
    let percentage = object.get(percentage_key);
    let legacy = object.get(legacy_key);
    if percentage.is_some() && legacy.is_some() {
        cx.push(&object.child(legacy_key), format!("give either {percentage_key} or the older {legacy_key}, not both"));
        return None;
    }
    if let Some((value, path)) = percentage {
        let percent = cx.object(value, &path, &PERCENT)?;
        return match percent.get("value") {
            Some((value, path)) => cx.float(value, &path, 0.0..=100.0),
            // protobuf JSON: an absent double is 0.
            None => Some(0.0),
        };
    }
    if let Some((value, path)) = legacy {
        return cx.integer(value, &path, 0..=100).map(|p| p as f64);
    }
    Some(absent)
}

fn compile_mirror(cx: &mut Cx<'_>, route: &Object<'_>, namespace: &str, refs: &mut Vec<SubsetRef>) -> Option<Mirror> {
    let Some((value, path)) = route.get("mirror") else {
        for key in ["mirrorPercentage", "mirrorPercent"] {
            if route.has(key) {
                cx.push(&route.child(key), "has no effect without mirror");
            }
        }
        return None;
    };
    let destination = compile_destination(cx, value, &path, namespace, refs);
    let percent = compile_percent(cx, route, "mirrorPercentage", "mirrorPercent", 100.0);
    let destination = destination?;
    Some(Mirror { host: destination.host, subset: destination.subset, port: destination.port, percent: percent? })
}
