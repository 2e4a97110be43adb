//! Span shapes for `meshtel bench ingest`: whole traces, grouped into one OTLP export
//! request per batch the way an SDK or a collector sends them (one `ResourceSpans` per
//! service).
//!
//! - [`Shape::Mesh`]: what a service mesh produces. A server root span in `frontend`,
//!   then client calls into other services (each answered by a server span there),
//!   database and cache calls and internal work, with 10–20 attributes per span
//!   (`http.method`, `http.route`, `http.status_code`, `net.peer.name`, `user.id`, …)
//!   and about 1% errors.
//! - [`Shape::Tempo`]: the storage benchmark shape, "traces × 10 spans, 11 attributes
//!   per span drawn from 97 keys × 1000 values": keys `attr_00`..`attr_96`, values
//!   `value_000`..`value_999`, chosen at random per span.
//!
//! Everything is drawn from the caller's RNG, so a seeded RNG gives the same requests.

use std::collections::BTreeMap;

use meshtel_model::otlp::collector::trace::v1::ExportTraceServiceRequest;
use meshtel_model::otlp::common::v1::{AnyValue, InstrumentationScope, KeyValue, any_value};
use meshtel_model::otlp::resource::v1::Resource;
use meshtel_model::otlp::trace::v1::span::SpanKind;
use meshtel_model::otlp::trace::v1::{ResourceSpans, ScopeSpans, Span, Status, status};
use rand::Rng;
use rand::seq::IndexedRandom;

/// Which spans the generator produces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    /// Service-mesh traces: HTTP server/client spans across services, database and
    /// cache calls, 10–20 attributes per span.
    Mesh,
    /// The storage benchmark shape: 11 attributes per span drawn from 97 keys × 1000
    /// values (`attr_00`..`attr_96` = `value_000`..`value_999`).
    Tempo,
}

impl Shape {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Shape::Mesh => "mesh",
            Shape::Tempo => "tempo",
        }
    }
}

/// Attribute keys of the tempo shape.
pub const TEMPO_KEYS: usize = 97;
/// Values per attribute key of the tempo shape.
pub const TEMPO_VALUES: usize = 1000;
/// Attributes on every span of the tempo shape.
pub const TEMPO_ATTRIBUTES_PER_SPAN: usize = 11;
/// Services spans of the tempo shape are spread over.
const TEMPO_SERVICES: usize = 10;
/// Operation names per tempo service.
const TEMPO_OPERATIONS: usize = 20;

/// A service of the mesh shape and the routes it serves.
struct MeshService {
    name: &'static str,
    version: &'static str,
    port: i64,
    routes: &'static [(&'static str, &'static str)],
    /// The database it calls, if any: (`db.system`, `db.name`, table).
    database: Option<(&'static str, &'static str, &'static str)>,
}

const MESH_SERVICES: &[MeshService] = &[
    MeshService {
        name: "frontend",
        version: "2.14.1",
        port: 8080,
        routes: &[
            ("GET", "/"),
            ("GET", "/api/products/{id}"),
            ("POST", "/api/cart"),
            ("POST", "/api/checkout"),
            ("GET", "/api/recommendations"),
            ("GET", "/api/account"),
        ],
        database: Some(("redis", "sessions", "session")),
    },
    MeshService {
        name: "checkout",
        version: "1.8.0",
        port: 8081,
        routes: &[("POST", "/orders"), ("GET", "/orders/{id}")],
        database: Some(("postgresql", "orders", "orders")),
    },
    MeshService {
        name: "cart",
        version: "3.2.7",
        port: 8082,
        routes: &[("GET", "/carts/{id}"), ("PUT", "/carts/{id}/items"), ("DELETE", "/carts/{id}")],
        database: Some(("redis", "carts", "cart")),
    },
    MeshService {
        name: "payment",
        version: "0.9.12",
        port: 8083,
        routes: &[("POST", "/charges"), ("GET", "/charges/{id}")],
        database: Some(("postgresql", "payments", "charges")),
    },
    MeshService {
        name: "inventory",
        version: "4.0.3",
        port: 8084,
        routes: &[("GET", "/stock/{sku}"), ("POST", "/reservations")],
        database: Some(("postgresql", "inventory", "stock")),
    },
    MeshService {
        name: "users",
        version: "1.1.0",
        port: 8085,
        routes: &[("GET", "/users/{id}"), ("GET", "/users/{id}/preferences")],
        database: Some(("mysql", "users", "users")),
    },
    MeshService {
        name: "shipping",
        version: "2.0.0",
        port: 8086,
        routes: &[("POST", "/quotes"), ("POST", "/shipments")],
        database: None,
    },
    MeshService {
        name: "recommendations",
        version: "5.3.1",
        port: 8087,
        routes: &[("GET", "/recommendations"), ("POST", "/events")],
        database: None,
    },
];

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/126.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) Mobile/15E148",
    "okhttp/4.12.0",
    "Go-http-client/2.0",
    "python-requests/2.32.3",
];

const INTERNAL_OPERATIONS: &[&str] = &[
    "validate request",
    "render template",
    "serialize response",
    "compute price",
    "load feature flags",
];

/// Generates export requests of whole traces.
pub struct ShapeGenerator {
    shape: Shape,
    spans_per_trace: usize,
}

impl ShapeGenerator {
    /// A generator of traces of `spans_per_trace` spans (at least 1).
    pub fn new(shape: Shape, spans_per_trace: usize) -> Self {
        ShapeGenerator {
            shape,
            spans_per_trace: spans_per_trace.max(1),
        }
    }

    /// One export request of `traces` whole traces. Every span ends at or before
    /// `end_unix_nano`; roots start within the two seconds before it. Trace ids are
    /// random and distinct within the request.
    pub fn request(
        &self,
        traces: usize,
        end_unix_nano: u64,
        rng: &mut impl Rng,
    ) -> ExportTraceServiceRequest {
        // service index → spans, for one ResourceSpans per service.
        let mut by_service: BTreeMap<usize, Vec<Span>> = BTreeMap::new();
        let mut seen_ids = std::collections::HashSet::new();
        for _ in 0..traces {
            let trace_id = loop {
                let mut id = [0u8; 16];
                rng.fill(&mut id);
                if id != [0u8; 16] && seen_ids.insert(id) {
                    break id;
                }
            };
            let root_end = end_unix_nano - rng.random_range(0..2_000_000_000u64);
            let spans = match self.shape {
                Shape::Mesh => mesh_trace(trace_id, self.spans_per_trace, root_end, rng),
                Shape::Tempo => tempo_trace(trace_id, self.spans_per_trace, root_end, rng),
            };
            for (service, span) in spans {
                by_service.entry(service).or_default().push(span);
            }
        }
        let resource_spans = by_service
            .into_iter()
            .map(|(service, spans)| ResourceSpans {
                resource: Some(self.resource(service, rng)),
                scope_spans: vec![ScopeSpans {
                    scope: Some(InstrumentationScope {
                        name: "meshtel-bench".to_string(),
                        version: env!("CARGO_PKG_VERSION").to_string(),
                        ..Default::default()
                    }),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            })
            .collect();
        ExportTraceServiceRequest { resource_spans }
    }

    fn resource(&self, service: usize, rng: &mut impl Rng) -> Resource {
        let attributes = match self.shape {
            Shape::Tempo => vec![string_kv("service.name", format!("service-{service}"))],
            Shape::Mesh => {
                let def = &MESH_SERVICES[service % MESH_SERVICES.len()];
                let pod = format!(
                    "{}-{:x}-{:05x}",
                    def.name,
                    0x5f6d_7c9a_u32 ^ (service as u32),
                    rng.random_range(0..0x10_0000u32)
                );
                vec![
                    string_kv("service.name", def.name),
                    string_kv("service.namespace", "shop"),
                    string_kv("service.version", def.version),
                    string_kv("deployment.environment", "production"),
                    string_kv("host.name", pod.clone()),
                    string_kv("k8s.pod.name", pod),
                    string_kv("k8s.namespace.name", "shop"),
                    string_kv(
                        "k8s.node.name",
                        format!("node-{}", rng.random_range(0..12u32)),
                    ),
                    string_kv("telemetry.sdk.name", "opentelemetry"),
                    string_kv("telemetry.sdk.language", "go"),
                    string_kv("telemetry.sdk.version", "1.28.0"),
                ]
            }
        };
        Resource {
            attributes,
            ..Default::default()
        }
    }
}

/// A span under construction: its service and time range.
struct Node {
    service: usize,
    span_id: [u8; 8],
    start: u64,
    end: u64,
}

fn random_span_id(rng: &mut impl Rng, taken: &[Node]) -> [u8; 8] {
    loop {
        let mut id = [0u8; 8];
        rng.fill(&mut id);
        if id != [0u8; 8] && taken.iter().all(|n| n.span_id != id) {
            return id;
        }
    }
}

/// A child time range inside `[start, end]`.
fn child_window(start: u64, end: u64, rng: &mut impl Rng) -> (u64, u64) {
    let length = end.saturating_sub(start).max(2);
    let child_start = start + rng.random_range(0..length / 2);
    let room = end.saturating_sub(child_start).max(1);
    let child_end = child_start + rng.random_range(room / 4..=room * 3 / 4).max(1);
    (child_start, child_end.min(end.max(child_start + 1)))
}

#[allow(clippy::too_many_arguments)]
fn new_span(
    trace_id: [u8; 16],
    node: &Node,
    parent: Option<[u8; 8]>,
    name: String,
    kind: SpanKind,
    attributes: Vec<KeyValue>,
    error: bool,
) -> Span {
    Span {
        trace_id: trace_id.to_vec(),
        span_id: node.span_id.to_vec(),
        parent_span_id: parent.map(|p| p.to_vec()).unwrap_or_default(),
        flags: 0x01, // sampled
        name,
        kind: kind as i32,
        start_time_unix_nano: node.start,
        end_time_unix_nano: node.end,
        attributes,
        status: Some(Status {
            message: if error { "internal error".to_string() } else { String::new() },
            code: if error {
                status::StatusCode::Error as i32
            } else {
                status::StatusCode::Unset as i32
            },
        }),
        ..Default::default()
    }
}

/// One mesh trace: a `frontend` server root, then client→server hops into other
/// services, database calls and internal spans under the server spans.
fn mesh_trace(
    trace_id: [u8; 16],
    spans: usize,
    root_end: u64,
    rng: &mut impl Rng,
) -> Vec<(usize, Span)> {
    let user = format!("user-{:05}", rng.random_range(0..50_000u32));
    let tenant = format!("tenant-{:02}", rng.random_range(0..100u32));
    let error_trace = rng.random_bool(0.01);
    let mut nodes: Vec<Node> = Vec::with_capacity(spans);
    let mut out = Vec::with_capacity(spans);
    // Indexes (into nodes) of server spans, the parents of further work.
    let mut servers: Vec<usize> = Vec::new();

    let root_length = rng.random_range(5_000_000..300_000_000u64);
    let root = Node {
        service: 0,
        span_id: random_span_id(rng, &nodes),
        start: root_end - root_length,
        end: root_end,
    };
    let (name, attributes) = mesh_server_attributes(0, &user, &tenant, error_trace, rng);
    out.push((0, new_span(trace_id, &root, None, name, SpanKind::Server, attributes, error_trace)));
    nodes.push(root);
    servers.push(0);

    while nodes.len() < spans {
        let parent_index = *servers.choose(rng).unwrap_or(&0);
        let parent_service = nodes[parent_index].service;
        let parent_id = nodes[parent_index].span_id;
        let (start, end) = child_window(nodes[parent_index].start, nodes[parent_index].end, rng);
        let remaining = spans - nodes.len();
        if remaining >= 2 && rng.random_bool(0.6) {
            // A call into another service: client span here, server span there.
            let callee = loop {
                let s = rng.random_range(1..MESH_SERVICES.len());
                if s != parent_service {
                    break s;
                }
            };
            let client = Node {
                service: parent_service,
                span_id: random_span_id(rng, &nodes),
                start,
                end,
            };
            let hop_error = error_trace && rng.random_bool(0.5);
            let (server_name, server_attributes, method, route) = {
                let (method, route) = *MESH_SERVICES[callee]
                    .routes
                    .choose(rng)
                    .unwrap_or(&("GET", "/"));
                let (name, attributes) =
                    mesh_server_route_attributes(callee, method, route, &user, &tenant, hop_error, rng);
                (name, attributes, method, route)
            };
            let client_attributes =
                mesh_client_attributes(callee, method, route, &user, &tenant, hop_error, rng);
            out.push((
                parent_service,
                new_span(
                    trace_id,
                    &client,
                    Some(parent_id),
                    format!("{method} {}", route),
                    SpanKind::Client,
                    client_attributes,
                    hop_error,
                ),
            ));
            let client_id = client.span_id;
            nodes.push(client);
            let network = (end - start) / 20;
            let server = Node {
                service: callee,
                span_id: random_span_id(rng, &nodes),
                start: start + network,
                end: (end - network).max(start + network + 1),
            };
            out.push((
                callee,
                new_span(
                    trace_id,
                    &server,
                    Some(client_id),
                    server_name,
                    SpanKind::Server,
                    server_attributes,
                    hop_error,
                ),
            ));
            servers.push(nodes.len());
            nodes.push(server);
        } else {
            let node = Node {
                service: parent_service,
                span_id: random_span_id(rng, &nodes),
                start,
                end,
            };
            let (name, kind, attributes) = match MESH_SERVICES[parent_service].database {
                Some(database) if rng.random_bool(0.7) => {
                    let (name, attributes) = mesh_database_attributes(database, &user, &tenant, rng);
                    (name, SpanKind::Client, attributes)
                }
                _ => {
                    let name = INTERNAL_OPERATIONS.choose(rng).unwrap_or(&"work").to_string();
                    (name, SpanKind::Internal, mesh_internal_attributes(&user, &tenant, rng))
                }
            };
            out.push((
                parent_service,
                new_span(trace_id, &node, Some(parent_id), name, kind, attributes, false),
            ));
            nodes.push(node);
        }
    }
    out
}

fn mesh_server_attributes(
    service: usize,
    user: &str,
    tenant: &str,
    error: bool,
    rng: &mut impl Rng,
) -> (String, Vec<KeyValue>) {
    let (method, route) = *MESH_SERVICES[service].routes.choose(rng).unwrap_or(&("GET", "/"));
    mesh_server_route_attributes(service, method, route, user, tenant, error, rng)
}

fn status_code(error: bool, rng: &mut impl Rng) -> i64 {
    if error {
        500
    } else if rng.random_bool(0.02) {
        404
    } else {
        200
    }
}

fn concrete_path(route: &str, rng: &mut impl Rng) -> String {
    route
        .replace("{id}", &rng.random_range(1..1_000_000u32).to_string())
        .replace("{sku}", &format!("SKU-{:06}", rng.random_range(0..20_000u32)))
}

/// 15 attributes.
fn mesh_server_route_attributes(
    service: usize,
    method: &str,
    route: &str,
    user: &str,
    tenant: &str,
    error: bool,
    rng: &mut impl Rng,
) -> (String, Vec<KeyValue>) {
    let def = &MESH_SERVICES[service];
    let attributes = vec![
        string_kv("http.method", method),
        string_kv("http.route", route),
        string_kv("http.target", concrete_path(route, rng)),
        string_kv("http.scheme", "http"),
        string_kv("http.flavor", if rng.random_bool(0.5) { "1.1" } else { "2" }),
        int_kv("http.status_code", status_code(error, rng)),
        string_kv("http.user_agent", *USER_AGENTS.choose(rng).unwrap_or(&"curl/8.5.0")),
        string_kv("net.host.name", def.name),
        int_kv("net.host.port", def.port),
        string_kv(
            "net.sock.peer.addr",
            format!("10.{}.{}.{}", rng.random_range(0..4u8), rng.random_range(0..255u8), rng.random_range(1..255u8)),
        ),
        int_kv("net.sock.peer.port", rng.random_range(32768..61000i64)),
        string_kv("user.id", user),
        string_kv("tenant.id", tenant),
        string_kv("request.id", random_hex(rng, 16)),
        int_kv("http.request_content_length", rng.random_range(0..4096i64)),
    ];
    (format!("{method} {route}"), attributes)
}

/// 13 attributes.
fn mesh_client_attributes(
    callee: usize,
    method: &str,
    route: &str,
    user: &str,
    tenant: &str,
    error: bool,
    rng: &mut impl Rng,
) -> Vec<KeyValue> {
    let def = &MESH_SERVICES[callee];
    vec![
        string_kv("http.method", method),
        string_kv(
            "http.url",
            format!("http://{}:{}{}", def.name, def.port, concrete_path(route, rng)),
        ),
        int_kv("http.status_code", status_code(error, rng)),
        string_kv("http.flavor", "2"),
        string_kv("net.peer.name", def.name),
        int_kv("net.peer.port", def.port),
        string_kv("peer.service", def.name),
        string_kv("user.id", user),
        string_kv("tenant.id", tenant),
        string_kv("request.id", random_hex(rng, 16)),
        int_kv("http.resend_count", i64::from(rng.random_bool(0.01))),
        string_kv("thread.name", format!("worker-{}", rng.random_range(0..16u8))),
        string_kv("component", "net/http"),
    ]
}

/// 12 attributes.
fn mesh_database_attributes(
    (system, database, table): (&str, &str, &str),
    user: &str,
    tenant: &str,
    rng: &mut impl Rng,
) -> (String, Vec<KeyValue>) {
    let (operation, statement) = if system == "redis" {
        let op = *["GET", "SET", "HGETALL", "EXPIRE"].choose(rng).unwrap_or(&"GET");
        (op.to_string(), format!("{op} {table}:{}", rng.random_range(0..100_000u32)))
    } else {
        let op = *["SELECT", "UPDATE", "INSERT"].choose(rng).unwrap_or(&"SELECT");
        let statement = match op {
            "SELECT" => format!("SELECT * FROM {table} WHERE id = $1"),
            "UPDATE" => format!("UPDATE {table} SET updated_at = now() WHERE id = $1"),
            _ => format!("INSERT INTO {table} (id, payload) VALUES ($1, $2)"),
        };
        (op.to_string(), statement)
    };
    let port = match system {
        "redis" => 6379,
        "mysql" => 3306,
        _ => 5432,
    };
    let name = format!("{operation} {database}.{table}");
    let attributes = vec![
        string_kv("db.system", system),
        string_kv("db.name", database),
        string_kv("db.statement", statement),
        string_kv("db.operation", operation),
        string_kv("db.sql.table", table),
        string_kv("db.user", format!("{database}_app")),
        string_kv("net.peer.name", format!("{database}-db.shop.svc")),
        int_kv("net.peer.port", port),
        string_kv("user.id", user),
        string_kv("tenant.id", tenant),
        int_kv("db.rows_affected", rng.random_range(0..50i64)),
        string_kv("thread.name", format!("worker-{}", rng.random_range(0..16u8))),
    ];
    (name, attributes)
}

/// 10 attributes.
fn mesh_internal_attributes(user: &str, tenant: &str, rng: &mut impl Rng) -> Vec<KeyValue> {
    vec![
        string_kv("user.id", user),
        string_kv("tenant.id", tenant),
        string_kv("code.namespace", "shop.internal"),
        string_kv("code.function", *["handle", "process", "apply", "build"].choose(rng).unwrap_or(&"handle")),
        int_kv("code.lineno", rng.random_range(10..2000i64)),
        string_kv("thread.name", format!("worker-{}", rng.random_range(0..16u8))),
        int_kv("items", rng.random_range(0..40i64)),
        bool_kv("cache.hit", rng.random_bool(0.8)),
        string_kv("feature.flag", *["on", "off", "canary"].choose(rng).unwrap_or(&"off")),
        string_kv("request.id", random_hex(rng, 16)),
    ]
}

/// One tempo-shape trace: a server root, every further span a child of a random
/// earlier one, spans spread over [`TEMPO_SERVICES`] services.
fn tempo_trace(
    trace_id: [u8; 16],
    spans: usize,
    root_end: u64,
    rng: &mut impl Rng,
) -> Vec<(usize, Span)> {
    let mut nodes: Vec<Node> = Vec::with_capacity(spans);
    let mut out = Vec::with_capacity(spans);
    let root_length = rng.random_range(1_000_000..100_000_000u64);
    for i in 0..spans {
        let service = rng.random_range(0..TEMPO_SERVICES);
        let (parent, start, end) = if i == 0 {
            (None, root_end - root_length, root_end)
        } else {
            let p = &nodes[rng.random_range(0..nodes.len())];
            let (s, e) = child_window(p.start, p.end, rng);
            (Some(p.span_id), s, e)
        };
        let node = Node {
            service,
            span_id: random_span_id(rng, &nodes),
            start,
            end,
        };
        let attributes = rand::seq::index::sample(rng, TEMPO_KEYS, TEMPO_ATTRIBUTES_PER_SPAN)
            .into_iter()
            .map(|key| {
                string_kv(
                    &format!("attr_{key:02}"),
                    format!("value_{:03}", rng.random_range(0..TEMPO_VALUES)),
                )
            })
            .collect();
        let kind = if i == 0 { SpanKind::Server } else { SpanKind::Internal };
        let name = format!("operation-{:02}", rng.random_range(0..TEMPO_OPERATIONS));
        out.push((service, new_span(trace_id, &node, parent, name, kind, attributes, false)));
        nodes.push(node);
    }
    out
}

fn random_hex(rng: &mut impl Rng, bytes: usize) -> String {
    (0..bytes).map(|_| format!("{:02x}", rng.random::<u8>())).collect()
}

fn string_kv(key: &str, value: impl Into<String>) -> KeyValue {
    kv(key, any_value::Value::StringValue(value.into()))
}

fn int_kv(key: &str, value: i64) -> KeyValue {
    kv(key, any_value::Value::IntValue(value))
}

fn bool_kv(key: &str, value: bool) -> KeyValue {
    kv(key, any_value::Value::BoolValue(value))
}

fn kv(key: &str, value: any_value::Value) -> KeyValue {
    KeyValue {
        key: key.to_string(),
        value: Some(AnyValue { value: Some(value) }),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
