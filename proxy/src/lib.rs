//! meshtel's sidecar proxy: one process beside each service instance.
//!
//! ```text
//!              ┌──────────────────────────── meshtel-proxy ────────────────────────────┐
//!  app ──────► │ outbound :15001 ─ routing: mesh + Istio rules → cluster → endpoint     │ ──► callee's proxy
//!  caller's ─► │ inbound  :15006 ─ quota → local app                                    │ ──► app
//!   proxy      │ admin    :15000 ─ /healthz /ready /stats/prometheus /config_dump       │
//!              └──────┬─────────────────────────────┬───────────────────────────────────┘
//!                     │ Report stream (every request)│ OTLP Export (sampled spans)
//!                     ▼                              ▼
//!                               collector :4317
//! ```
//!
//! - [`forward`]: the two request pipelines (HTTP/1.1 and h2c, pooled, streaming);
//! - [`mesh`]: the mesh file and its reloading (format documented there and in
//!   `proxy/examples/mesh.yaml`);
//! - [`rules`] and [`routing`]: Istio traffic rules (`--rules DIR`) over the mesh: the
//!   routing table, clusters with load balancing, pool limits and outlier ejection;
//!   `forward`'s outbound pipeline applies faults, retries, timeouts and mirrors;
//! - [`trace_context`]: W3C and B3 extraction, sampling, injection;
//! - [`telemetry`] and [`body`]: the request record and span of each request, emitted
//!   when its response body ends;
//! - [`report`] and [`spans`]: bounded, non-blocking delivery to the collector;
//! - [`quota`]: quota enforcement on the inbound listener (policy watch, token
//!   leases, Check, 429 `RL`);
//! - [`server`]: the accept loops and the worker threads (`--concurrency`, default
//!   2): each a current-thread runtime with its own upstream pools, all accepting on
//!   the same listeners, so a request is handled on one thread from end to end;
//!   [`drain`]: the WebSockets a worker drains beside its connections on shutdown;
//! - [`admin`] and [`stats`]: the admin listener and the proxy's own counters;
//! - [`config`]: flags ([`ProxyArgs`]) and the validated [`ProxyConfig`].
//!
//! Telemetry never hurts the traffic: records and spans are `try_send`, dropped and
//! counted when the queues are full or the collector is unreachable.

pub mod admin;
pub mod body;
pub mod config;
pub mod drain;
pub mod error;
pub mod forward;
pub mod log_format;
pub mod mesh;
pub mod pool;
pub mod quota;
pub mod report;
pub mod reset_flood;
pub mod resolve;
pub mod routing;
pub mod rules;
pub mod server;
pub mod signal;
pub mod spans;
pub mod stats;
pub mod telemetry;
pub mod trace_context;

#[cfg(test)]
mod test_support;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use hyper::service::service_fn;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tonic::transport::Endpoint;
use tracing::{info, warn};

pub use config::{AppProtocol, InboundSpec, ProxyArgs, ProxyConfig};
pub use error::{Error, Result};

use forward::{Proxy, ProxyContext};
use pool::{POOL_IDLE_TIMEOUT, PoolSettings};
use routing::RoutingWatcher;
use quota::QuotaEnforcer;
use stats::Stats;

/// How long shutdown waits for the last records and spans to reach the collector.
pub const TELEMETRY_FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// The proxy's listeners, bound before serving (STYLE rule 5).
#[derive(Debug)]
pub struct Listeners {
    /// Inbound listener, when configured.
    pub inbound: Option<TcpListener>,
    /// Outbound listener.
    pub outbound: TcpListener,
    /// Admin listener.
    pub admin: TcpListener,
}

/// The bound addresses, as written to `--listeners-file`.
#[derive(Debug, Clone, Copy, Serialize, serde::Deserialize, PartialEq, Eq)]
pub struct ListenerAddresses {
    /// Inbound listener, when configured.
    pub inbound: Option<SocketAddr>,
    /// Outbound listener.
    pub outbound: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
}

impl Listeners {
    /// Binds every listener of `config` (port 0 picks a free port).
    pub async fn bind(config: &ProxyConfig) -> Result<Listeners> {
        // The proxy listeners take SO_REUSEPORT: each further worker opens its own
        // sockets on the same addresses when serving starts.
        fn bind_proxy(listener: &'static str, addr: SocketAddr) -> Result<TcpListener> {
            server::bind_first(addr).and_then(TcpListener::from_std).map_err(|source| Error::Bind { listener, addr, source })
        }
        let inbound = match &config.inbound {
            Some(spec) => Some(bind_proxy("inbound", spec.listen)?),
            None => None,
        };
        let admin = config.admin;
        let admin = TcpListener::bind(admin).await.map_err(|source| Error::Bind { listener: "admin", addr: admin, source })?;
        Ok(Listeners { inbound, outbound: bind_proxy("outbound", config.outbound)?, admin })
    }

    /// The addresses actually bound.
    pub fn addresses(&self) -> Result<ListenerAddresses> {
        Ok(ListenerAddresses {
            inbound: self.inbound.as_ref().map(TcpListener::local_addr).transpose()?,
            outbound: self.outbound.local_addr()?,
            admin: self.admin.local_addr()?,
        })
    }
}

/// Binds the listeners of `config` and serves until `shutdown` resolves.
pub async fn run(config: ProxyConfig, shutdown: impl Future<Output = ()>) -> Result<()> {
    meshtel_model::conn_life::raise_open_files_limit();
    let listeners = Listeners::bind(&config).await?;
    serve(config, listeners, shutdown).await
}

/// Serves already-bound `listeners` until `shutdown` resolves, then drains open
/// connections and flushes the last records and spans.
pub async fn serve(config: ProxyConfig, listeners: Listeners, shutdown: impl Future<Output = ()>) -> Result<()> {
    config.validate()?;
    let stats = Stats::new()?;
    let watcher = RoutingWatcher::start(config.mesh_file.clone(), config.rules_dir.clone(), config.identity.clone(), stats.routing.clone())?;
    let routing = watcher.routing();
    let collector = Endpoint::from_shared(config.collector.clone())
        .map_err(|source| Error::CollectorEndpoint { endpoint: config.collector.clone(), source })?
        .connect_timeout(Duration::from_secs(1))
        .tcp_nodelay(true)
        .http2_keep_alive_interval(Duration::from_secs(30));
    let (reports, report_stream) =
        report::report_channel(collector.clone(), config.proxy_id.clone(), config.report_queue, stats.clone());
    let (spans, span_exporter) =
        spans::span_channel(collector.clone(), &config.identity, &config.service, &config.proxy_id, config.span_queue, stats.clone());
    let service = forward::service_names(&config.service, &config.identity.namespace);
    let quota = QuotaEnforcer::new(config.quota, &config.identity, &service, &collector, &config.proxy_id, stats.quota.clone());
    // Each worker gets its own context: the shared routing, queues, counters and quota
    // state, but its own upstream client pools.
    let worker_context = || {
        let mut context = ProxyContext::new(
            &config.service,
            config.identity.clone(),
            &config.cluster,
            routing.clone(),
            reports.clone(),
            spans.clone(),
            stats.clone(),
            config.sample_percent,
            config.request_timeout,
            config.body_idle_timeout,
            PoolSettings { connect_timeout: config.connect_timeout, idle_timeout: POOL_IDLE_TIMEOUT },
            quota.clone(),
        );
        context.app_protocol = config.app_protocol;
        Arc::new(context)
    };

    let addresses = listeners.addresses()?;
    let listeners_file = config.listeners_file.clone();
    if let Some(path) = &config.listeners_file {
        let json = serde_json::to_vec_pretty(&addresses).map_err(std::io::Error::other)?;
        std::fs::write(path, json).map_err(|source| Error::ListenersFile { path: path.clone(), source })?;
    }
    info!(
        service = %config.service,
        workload = %config.identity.name,
        cluster = %config.cluster,
        inbound = addresses.inbound.map(tracing::field::display),
        outbound = %addresses.outbound,
        admin = %addresses.admin,
        collector = %config.collector,
        "proxy listening"
    );

    // Servers stop first (and drain); telemetry stops after, so the records of the
    // drained requests still go out.
    let (stop_servers, servers_stopped) = watch::channel(false);
    let (stop_telemetry, telemetry_stopped) = watch::channel(false);
    let mut telemetry = tokio::task::JoinSet::new();
    telemetry.spawn(report_stream.run(telemetry_stopped.clone()));
    telemetry.spawn(span_exporter.run(telemetry_stopped.clone()));
    if config.inbound.is_some() {
        // Only the inbound side enforces quotas, so only it needs the policies.
        telemetry.spawn(quota.watcher(collector, config.proxy_id.clone()).run(telemetry_stopped.clone()));
    } else {
        stats.without_quota_watch();
    }
    telemetry.spawn(watcher.run(stats.clone(), telemetry_stopped));

    let inbound = match (listeners.inbound, &config.inbound) {
        (Some(listener), Some(spec)) => Some((listener.into_std()?, spec.app.clone())),
        _ => None,
    };
    let mut worker_listeners = Vec::with_capacity(config.concurrency);
    worker_listeners.push(server::WorkerListeners { inbound, outbound: listeners.outbound.into_std()? });
    for _ in 1..config.concurrency {
        let another = worker_listeners[0].another()?;
        worker_listeners.push(another);
    }
    // Requests hyper's parser refused are reported from a context of their own (its
    // queues and identity are every worker's).
    let refused_context = worker_context();
    let connections = server::ConnectionStats {
        connections: stats.connections.clone(),
        write_stalls: stats.write_stalls.clone(),
        protocol_errors: stats.protocol_errors.clone(),
        reset_floods: stats.reset_floods.clone(),
        refused_heads: Some(Arc::new(move |direction, status| refused_context.report_refused_head(direction, status))),
    };
    let mut workers = Vec::with_capacity(config.concurrency);
    for (index, listeners) in worker_listeners.into_iter().enumerate() {
        let context = worker_context();
        let upgrades = context.upgrades.clone();
        let service = move |app: Option<String>| match app {
            Some(app) => proxy_service(Proxy::inbound(context.clone(), app)),
            None => proxy_service(Proxy::outbound(context.clone())),
        };
        workers.push(server::Worker::spawn(index, listeners, connections.clone(), servers_stopped.clone(), upgrades, service)?);
    }
    let mut running = Vec::with_capacity(workers.len());
    for worker in workers {
        running.push(worker.started().await?);
    }
    let admin_stats = stats.clone();
    let admin_quota = quota.clone();
    let loopback_only = listeners.admin.local_addr().is_ok_and(|a| a.ip().is_loopback());
    let admin = service_fn(move |request| {
        let response = admin::handle_admin(&admin_stats, &routing, &admin_quota, loopback_only, &request);
        async move { Ok::<_, Infallible>(response) }
    });
    let admin_connections = server::ListenerCounters::of(&connections, "admin", "main");
    // The admin port outlives the drain: `/ready` answers 503 and stats can be scraped
    // while requests finish, as a load balancer or an operator watching expects.
    let (stop_admin, admin_stopped) = watch::channel(false);
    let admin_server = tokio::spawn(server::serve_listener("admin", listeners.admin, admin, admin_connections, server::LIMITS, admin_stopped));
    drop(servers_stopped);
    stats.ready.set(1);

    shutdown.await;
    info!("shutting down: draining connections");
    stats.ready.set(0);
    let _ = stop_servers.send(true);
    for worker in running {
        worker.stopped().await;
    }
    let _ = stop_admin.send(true);
    let _ = admin_server.await;
    let _ = stop_telemetry.send(true);
    let flushed = tokio::time::timeout(TELEMETRY_FLUSH_TIMEOUT, async { while telemetry.join_next().await.is_some() {} }).await;
    if flushed.is_err() {
        telemetry.abort_all();
    }
    // The whole count, drops after the last rate-limited warning included.
    let (reports_dropped, spans_dropped) = (stats.reports_dropped.get(), stats.spans_dropped.get());
    if reports_dropped > 0 || spans_dropped > 0 {
        warn!(reports_dropped, spans_dropped, "telemetry dropped since start");
    }
    // A script that waits for the file to appear must not read a stopped proxy's ports.
    if let Some(path) = listeners_file {
        let _ = std::fs::remove_file(path);
    }
    // What reached the collector over the run, the flush at shutdown included.
    info!(reports_accepted = stats.reports_accepted.get(), spans_sent = stats.spans_sent.get(), "proxy stopped");
    Ok(())
}

fn proxy_service(
    proxy: Proxy,
) -> impl hyper::service::Service<
    hyper::Request<hyper::body::Incoming>,
    Response = hyper::Response<body::ResponseBody>,
    Error = Infallible,
    Future = impl Future<Output = Result<hyper::Response<body::ResponseBody>, Infallible>> + Send + 'static,
> + Clone
+ Send
+ Sync
+ 'static {
    service_fn(move |request| {
        proxy.clone().handle(request).map(Ok::<_, Infallible>)
    })
}
