//! Composes the roles: binds every listener first (so port 0 works and the bound
//! addresses can be published), opens the store, starts the servers, and on SIGINT or
//! SIGTERM stops accepting, lets in-flight requests finish, flushes the head and exits.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use meshtel_collector::MeshMetrics;
use meshtel_model::graph::SystemUnixClock;
use meshtel_model::{EdgeSink, GraphReader, SpanSink, TraceReader};
use meshtel_store::catalog::Catalog;
use meshtel_store::{EdgeRollups, TraceStore};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::{error, info};

use crate::config::Config;
use crate::http_server::{HttpTimeoutMetrics, serve_http};
use crate::metrics;

mod data_dir;

use data_dir::{
    COLLECTOR_LISTENERS_FILE, SERVE_LISTENERS_FILE, disk_full, refuse_a_foreign_data_dir,
    remove_own_listeners_file, remove_stale_listeners_file, require_data_dir_of_a_collector,
    show_generated_admin_token, write_listeners_file,
};

/// How often the gRPC server pings a client (a proxy's Report stream, an exporter's
/// channel), and how long an unanswered ping waits before the connection is closed:
/// a vanished client's connection and streams are let go.
const GRPC_KEEP_ALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(60);
/// See [`GRPC_KEEP_ALIVE_INTERVAL`].
const GRPC_KEEP_ALIVE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);
/// Streams one gRPC connection may have open at once (a proxy uses three: Report,
/// WatchQuotas and its exports), as the HTTP listeners allow 200: thousands of
/// Export streams whose bodies never come held hundreds of MiB.
const GRPC_MAX_STREAMS: u32 = 256;

/// Which servers a process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Collector and query.
    All,
    /// Ingest and store writer only.
    Collector,
    /// Query API only, over the blocks in the data directory.
    Query,
}

impl Role {
    pub(crate) fn ingests(self) -> bool {
        matches!(self, Role::All | Role::Collector)
    }
    fn queries(self) -> bool {
        matches!(self, Role::All | Role::Query)
    }
}

/// The addresses actually bound, as written to `<data_dir>/listeners.json`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Listeners {
    /// OTLP gRPC, Report/Check, Envoy RLS.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub grpc: Option<SocketAddr>,
    /// OTLP HTTP, `/metrics`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub http: Option<SocketAddr>,
    /// Zipkin.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub zipkin: Option<SocketAddr>,
    /// Query API and UI.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub query: Option<SocketAddr>,
}

/// What an embedding command (`meshtel demo`) adds to a plain run.
#[derive(Default)]
pub struct RunOptions {
    /// Resolves when the servers should stop; default: SIGINT or SIGTERM.
    pub shutdown: Option<std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>>,
    /// More routes for the query listener.
    pub extra_query_routes: Option<axum::Router>,
    /// Told the bound addresses once every server is listening.
    pub listening: Option<tokio::sync::oneshot::Sender<Listeners>>,
}

/// Binds the `what` listener to `addr`, the `[listen] <key>` setting: an error names
/// the setting and its flag and variable, where another address is chosen.
async fn bind(what: &str, key: &str, addr: &str) -> anyhow::Result<TcpListener> {
    let bound = TcpListener::bind(addr).await;
    // An address without a port, or a port past 65535.
    let hint = match &bound {
        Err(e) if e.kind() == std::io::ErrorKind::InvalidInput => {
            ": expected host:port, e.g. 127.0.0.1:4317 (port 0 picks a free one)"
        }
        _ => "",
    };
    bound.with_context(|| {
        format!(
            "binding the {what} listener to {addr} ([listen] {key}, --{key}-listen, \
             MESHTEL_{}_LISTEN){hint}",
            key.to_uppercase()
        )
    })
}

/// Runs `role` until a shutdown signal.
pub async fn run(config: Config, role: Role) -> anyhow::Result<()> {
    run_with(config, role, RunOptions::default()).await
}

/// Runs `role` with `options` (see [`RunOptions`]).
pub async fn run_with(config: Config, role: Role, options: RunOptions) -> anyhow::Result<()> {
    let RunOptions {
        shutdown,
        extra_query_routes,
        listening,
    } = options;
    // Listening for SIGTERM/SIGINT starts now: one that arrives while the store opens
    // or the listeners bind stops the server cleanly once it is up.
    let on_signal = shutdown.is_none();
    let shutdown = shutdown.unwrap_or_else(|| Box::pin(crate::signal::shutdown_signal()));
    meshtel_model::conn_life::raise_open_files_limit();
    if role == Role::Query {
        require_data_dir_of_a_collector(&config.data_dir)?;
    } else {
        if config.data_dir.exists() && !config.data_dir.is_dir() {
            anyhow::bail!(
                "data directory {} exists and is not a directory: point --data-dir at a \
                 directory (it is created when missing)",
                config.data_dir.display()
            );
        }
        refuse_a_foreign_data_dir(&config.data_dir)?;
        meshtel_store::create_private_dir(&config.data_dir)
            .with_context(|| format!("creating data directory {}", config.data_dir.display()))?;
    }
    // `serve` writes listeners.json; split roles sharing one data directory each write
    // their own file so that neither overwrites (or deletes) the other's.
    let listeners_path = config.data_dir.join(match role {
        Role::All => SERVE_LISTENERS_FILE,
        Role::Collector => COLLECTOR_LISTENERS_FILE,
        Role::Query => "listeners-query.json",
    });
    let mut listeners = Listeners::default();
    let mut ingest_listeners = None;
    if role.ingests() {
        let grpc = bind("OTLP gRPC", "grpc", &config.listen.grpc).await?;
        let http = bind("OTLP HTTP", "http", &config.listen.http).await?;
        let zipkin = bind("Zipkin", "zipkin", &config.listen.zipkin).await?;
        listeners.grpc = Some(grpc.local_addr()?);
        listeners.http = Some(http.local_addr()?);
        listeners.zipkin = Some(zipkin.local_addr()?);
        ingest_listeners = Some((grpc, http, zipkin));
    }
    let mut query_listener = None;
    if role.queries() {
        let query = bind("query", "query", &config.listen.query).await?;
        listeners.query = Some(query.local_addr()?);
        query_listener = Some(query);
    }

    let store = if role.ingests() {
        TraceStore::open(config.store.clone()).await
    } else {
        TraceStore::open_read_only(config.store.clone(), std::time::Duration::from_secs(1)).await
    }
    .with_context(|| format!("opening the store in {}", config.data_dir.display()))?;
    // A file left by a process that was killed names its dead ports. Removed only now
    // that the store holds the data directory's lock: a second server refused by that
    // lock must not delete the running one's file. Both roles that take the lock
    // (`serve`, `collector`) remove both their files: a `serve` killed and followed by
    // a `collector` must not leave its dead ports for scripts to find. A query process
    // takes no lock and another may be running (a rolling restart): it only writes its
    // own file over it.
    if role.ingests() {
        for file in [SERVE_LISTENERS_FILE, COLLECTOR_LISTENERS_FILE] {
            remove_stale_listeners_file(&config.data_dir.join(file))?;
        }
    }

    // Edge rollups and quota policies share one pool on the store's SQLite file, closed
    // at the end so that the database's WAL is checkpointed and removed.
    let database = open_database(role, &config.data_dir)
        .await
        .context("opening the database for edge rollups and quota policies")?;
    // Service-graph edge rollups: 10 s buckets in memory, flushed to SQL (the same
    // SQLite file as the catalog). Only an ingesting process flushes, prunes and sums
    // old rollups into coarse buckets.
    let edges = EdgeRollups::on_catalog(&database, config.edges.clone(), Arc::new(SystemUnixClock))
        .context("opening the edge rollups")?;
    let report_config = config.report.clone();

    // Quota policies and admin tokens live in the same SQLite file; every role opens
    // them (the admin API is served by the query role, the engine by the collector).
    let quota_repo = Arc::new(meshtel_store::QuotaRepo::from_catalog(&database));
    // Every setting was checked by `Config::finish` before this point: a token
    // generated here is never followed by a configuration error that hides it.
    if role.queries()
        && let Some(token) =
            meshtel_query::ensure_admin_token(quota_repo.as_ref(), config.admin.token.as_deref())
                .await
                .context("creating the admin token")?
    {
        show_generated_admin_token(&token, &config.data_dir.join("meshtel.db"));
    }
    let quota_engine = if role.ingests() {
        let engine = Arc::new(
            meshtel_collector::QuotaEngine::with_system_clock(config.quota.clone())
                .context("starting the quota engine")?,
        );
        meshtel_collector::quota::sync_policies_once(quota_repo.as_ref(), &engine)
            .await
            .context("loading the quota policies")?;
        Some(engine)
    } else {
        None
    };
    let mut quota_tasks = Vec::new();
    if let Some(engine) = &quota_engine {
        let store: Arc<dyn meshtel_model::quota::QuotaPolicyStore> = quota_repo.clone();
        quota_tasks.push(meshtel_collector::quota::spawn_policy_sync(
            store,
            engine.clone(),
            config.quota.sync_interval,
        ));
        quota_tasks.push(meshtel_collector::quota::spawn_quota_sweeper(engine));
    }

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut servers = JoinSet::new();
    let http_timeouts = HttpTimeoutMetrics::new()?;
    let query_reads = meshtel_query::ReadLimit::new(
        config.query.max_concurrent_reads,
        meshtel_query::read_limit::READ_WAIT,
    )
    .with_unread_timeout(config.http.write_timeout);
    if let Some((grpc, http, zipkin)) = ingest_listeners {
        edges.start();
        let mesh_metrics = MeshMetrics::new(&report_config.metrics)?;
        let edge_sink: Arc<dyn EdgeSink> = Arc::new(edges.clone());
        let reports = meshtel_collector::report::reports_with_system_clock(
            mesh_metrics.clone(),
            Some(edge_sink),
            report_config.clone(),
        );
        let sink: Arc<dyn SpanSink> = Arc::new(store.clone());
        // One set of refusal counters for the three ingest servers.
        let ingest_metrics = meshtel_collector::IngestMetrics::new()?;
        // One bound on the request bytes the three ingest servers hold at once.
        let inflight = meshtel_collector::InflightBudget::new(config.ingest.max_inflight_bytes);
        let grpc_messages = meshtel_collector::GrpcMessageBudgetLayer::new(
            inflight.clone(),
            config.http.body_read_timeout,
            meshtel_collector::otlp_grpc::EXPORT_PATH,
            config.report.max_streams,
        );
        ingest_metrics.spawn_log_timer();
        let grpc_service = meshtel_collector::otlp_grpc_service_with_metrics(
            sink.clone(),
            config.ingest.clone(),
            ingest_metrics.clone(),
            inflight.clone(),
        );
        let engine = quota_engine.clone();
        // Calls whose message tonic could not read never reach a handler: counted and
        // logged here, for the three services below (OTLP's are ingest refusals).
        let unreadable = meshtel_collector::UnreadableCalls::default();
        let max_message_bytes = reports.max_message_bytes();
        // Report and WatchQuotas streams end at shutdown instead of holding it up.
        // Istio's own Mixer API, for Mixer-era istio-proxies: the same reports and quotas.
        let istio_mixer_service =
            meshtel_collector::istio_mixer_grpc_service(reports.clone(), engine.clone())
                .counted_in(&unreadable);
        let report_service = meshtel_collector::mixer_grpc_service_until(
            reports,
            engine.clone(),
            Some(stop_rx.clone()),
        )
        .counted_in(&unreadable);
        let rls_service = engine
            .clone()
            .map(|engine| {
                meshtel_collector::rls_grpc_service(engine, max_message_bytes)
                    .counted_in(&unreadable)
            });
        // grpc.health.v1 for load balancers and Kubernetes gRPC probes: the server ("")
        // is SERVING while this listener runs.
        let (health_reporter, health_service) = tonic_health::server::health_reporter();
        // While the store refuses every write, the server and its trace service answer
        // NOT_SERVING, as /readyz answers 503.
        tokio::spawn(crate::readiness::report_grpc_readiness(
            health_reporter.clone(),
            sink.clone(),
            stop_rx.clone(),
        ));
        let stop = stop_signal(stop_rx.clone());
        let first_byte_timeout = config.http.header_read_timeout;
        let call_timeout = config.http.body_read_timeout;
        let message_bounds = grpc_messages.clone();
        let write_timeout = config.http.write_timeout;
        let write_timeouts = http_timeouts.timed_out("otlp_grpc", "write");
        servers.spawn(async move {
            let _health_reporter = health_reporter;
            // Connections that send nothing, or read nothing, are closed; see
            // `grpc_incoming`.
            let incoming = crate::http_server::grpc_incoming(
                grpc,
                first_byte_timeout,
                write_timeout,
                write_timeouts,
            );
            tonic::transport::Server::builder()
                // A call whose handler has not answered by then is cancelled: a unary
                // message that stops arriving (its bytes held per stream, up to 16 MiB)
                // is let go. Streams (Report, WatchQuotas) answer at once and then
                // stream on; their messages are bounded by the layer below.
                .timeout(call_timeout)
                .http2_keepalive_interval(Some(GRPC_KEEP_ALIVE_INTERVAL))
                .http2_keepalive_timeout(Some(GRPC_KEEP_ALIVE_TIMEOUT))
                .max_concurrent_streams(Some(GRPC_MAX_STREAMS))
                // The messages of the other calls (a Report stream's included) take
                // from the in-flight budget while they arrive, and must arrive whole
                // within the same timeout; see `meshtel_collector::grpc_budget`.
                .layer(message_bounds)
                .add_service(grpc_service)
                .add_service(report_service)
                .add_service(istio_mixer_service)
                .add_optional_service(rls_service)
                .add_service(health_service)
                .serve_with_incoming_shutdown(incoming, stop)
                .await
                .context("OTLP gRPC server")
        });
        let http_app = meshtel_collector::otlp_http_router_with_metrics(
            sink.clone(),
            config.ingest.clone(),
            ingest_metrics.clone(),
            inflight.clone(),
        )
        .merge(metrics::router(metrics::Sources {
            store: store.clone(),
            ingest: Some(ingest_metrics.clone()),
            mesh: Some(mesh_metrics),
            edges: Some(edges.clone()),
            quota: quota_engine.clone(),
            http_timeouts: http_timeouts.clone(),
            query_reads: Some(query_reads.clone()),
            ingest_inflight: Some(inflight.clone()),
            grpc_messages: Some(grpc_messages.stats()),
            grpc_unreadable: Some(unreadable),
        }));
        servers.spawn(serve(
            http,
            http_app,
            &config,
            &http_timeouts,
            &stop_rx,
            "otlp_http",
        ));
        let zipkin_app = meshtel_collector::zipkin_router_with_metrics(
            sink,
            config.ingest.clone(),
            ingest_metrics,
            inflight,
        );
        servers.spawn(serve(
            zipkin,
            zipkin_app,
            &config,
            &http_timeouts,
            &stop_rx,
            "zipkin",
        ));
    }
    if let Some(query) = query_listener {
        let reader: Arc<dyn TraceReader> = Arc::new(store.clone());
        let graph: Arc<dyn GraphReader> = Arc::new(edges.clone());
        let usage = quota_engine
            .clone()
            .map(|e| e as Arc<dyn meshtel_model::quota::QuotaUsageReader>);
        let quotas = meshtel_query::quota_router(
            quota_repo.clone(),
            quota_repo.clone(),
            usage,
            config.admin.clone(),
        );
        let extra = match extra_query_routes {
            Some(routes) => quotas.merge(routes),
            None => quotas,
        };
        let mut app = meshtel_query::router_with_graph(
            reader,
            Some(graph),
            Some(extra),
            &config.query,
            query_reads.clone(),
        );
        if !role.ingests() {
            // The query role alone has no collector port: its own `/metrics` answers a
            // scraper here, while a browser still gets the UI's metrics page.
            let path = format!(
                "{}/metrics",
                config.query.normalized_base_path().unwrap_or_default()
            );
            let scrape = metrics::router(metrics::Sources {
                store: store.clone(),
                ingest: None,
                mesh: None,
                edges: None,
                quota: None,
                http_timeouts: http_timeouts.clone(),
                query_reads: Some(query_reads.clone()),
                ingest_inflight: None,
                grpc_messages: None,
                grpc_unreadable: None,
            });
            app = app.layer(axum::middleware::from_fn(
                move |request: axum::extract::Request, next: axum::middleware::Next| {
                    let scrape = scrape.clone();
                    // At the root too, as the probes are, whatever the base path.
                    let for_scraper = (request.uri().path() == path
                        || request.uri().path() == "/metrics")
                        && !wants_html(request.headers());
                    async move {
                        if for_scraper {
                            let mut request = request;
                            *request.uri_mut() = axum::http::Uri::from_static("/metrics");
                            return tower::ServiceExt::oneshot(scrape, request)
                                .await
                                .unwrap_or_else(|never| match never {});
                        }
                        next.run(request).await
                    }
                },
            ));
        }
        servers.spawn(serve(
            query,
            app,
            &config,
            &http_timeouts,
            &stop_rx,
            "query",
        ));
    }

    match write_listeners_file(&listeners_path, &listeners) {
        Ok(()) => {}
        // A full disk does not stop meshtel, which starts below its free-space reserve
        // to flush and answer queries: the addresses are in the log line below.
        Err(e) if disk_full(&e) => {
            // A file an earlier run left names addresses no longer served.
            let _ = std::fs::remove_file(&listeners_path);
            error!(
            path = %listeners_path.display(),
            error = %format!("{e:#}"),
            "the listeners file could not be written: the disk is full; the bound \
             addresses are logged here instead"
            );
        }
        Err(e) => return Err(e),
    }
    // "-" for a listener this role does not run.
    let shown = |addr: Option<SocketAddr>| addr.map_or_else(|| "-".to_owned(), |a| a.to_string());
    info!(
        grpc = %shown(listeners.grpc),
        http = %shown(listeners.http),
        zipkin = %shown(listeners.zipkin),
        query = %shown(listeners.query),
        data_dir = %config.data_dir.display(),
        version = env!("CARGO_PKG_VERSION"),
        "meshtel is listening"
    );

    if let Some(listening) = listening {
        let _ = listening.send(listeners.clone());
    }
    let result = tokio::select! {
        () = shutdown => Ok(()),
        lost = store.data_dir_lost() => {
            if lost.write_nothing && role.ingests() {
                // What is at the data directory's paths now is not what this process
                // wrote: stop as a crash would, writing nothing more there.
                error!(
                    problem = %lost.what,
                    "stopping at once, writing nothing more to the data directory: what \
                     was acknowledged since the last flush is in the WAL of the directory \
                     this process opened, wherever it is now"
                );
                std::process::exit(1);
            }
            Err(anyhow::anyhow!(
                "{}: meshtel stops; start it again once the data directory is as it should be{}",
                lost.what,
                if role.ingests() { "" } else { " (this query process then reads what is there)" }
            ))
        }        Some(joined) = servers.join_next() => match joined {
            Ok(Ok(())) => Err(anyhow::anyhow!("a server stopped unexpectedly")),
            Ok(Err(e)) => Err(e),
            Err(e) => Err(e.into()),
        },
    };
    if on_signal {
        stop_at_a_second_signal(role);
    }
    info!("shutting down: no new connections, finishing requests in flight");
    if let Some(engine) = &quota_engine {
        // WatchQuotas streams never end on their own; close them so the server drains.
        engine.close_watchers();
    }
    for task in &quota_tasks {
        task.abort();
    }
    let _ = stop_tx.send(true);
    let drain = async {
        while let Some(joined) = servers.join_next().await {
            if let Ok(Err(e)) = joined {
                tracing::warn!(error = %e, "server stopped with an error");
            }
        }
    };
    if tokio::time::timeout(std::time::Duration::from_secs(10), drain)
        .await
        .is_err()
    {
        tracing::warn!("requests still in flight after 10s; closing them");
    }
    // The store is stopped (and says what stays in its WAL) even when the last edge
    // rollups cannot be written; that error is then the exit's.
    let edges_written = if role.ingests() {
        edges.shutdown().await.inspect_err(|e| {
            error!(error = %e, "could not write the last edge rollups at shutdown; they are lost");
        })
    } else {
        Ok(())
    };
    store.shutdown().await.context("flushing the store")?;
    database.close().await;
    remove_own_listeners_file(&listeners_path, &listeners);
    edges_written.context("flushing the edge rollups")?;
    info!("stopped");
    result
}

/// The database of the data directory, for the edge rollups and quota policies: a
/// role that ingests owns it (creates and upgrades it); a query process only opens it.
async fn open_database(role: Role, data_dir: &Path) -> anyhow::Result<Catalog> {
    let opened = if role.ingests() {
        Catalog::open(data_dir).await
    } else {
        Catalog::open_existing(data_dir, std::time::Duration::from_secs(30)).await
    };
    Ok(opened?)
}

/// After the signal that began the shutdown, a second SIGINT/SIGTERM (Ctrl-C again)
/// stops the process at once (exit status 130), without waiting for the store's
/// flush (up to 60 s on a failing disk): what was acknowledged is in the WAL already
/// and is replayed at the next start.
fn stop_at_a_second_signal(role: Role) {
    let second = crate::signal::shutdown_signal();
    if role.ingests() {
        info!(
            "stopping: flushing the spans in memory to blocks (up to 60 s); \
             Ctrl-C again stops at once, and they are replayed from the WAL at the next start"
        );
    }
    tokio::spawn(async move {
        second.await;
        tracing::warn!(
            "second signal: stopping now without flushing; acknowledged spans stay in the \
             WAL and are replayed at the next start"
        );
        std::process::exit(130);
    });
}

/// Whether a request's `Accept` asks for HTML (a browser), not metrics (a scraper).
fn wants_html(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("text/html"))
}

async fn stop_signal(mut rx: watch::Receiver<bool>) {
    let _ = rx.wait_for(|stop| *stop).await;
}

/// `X-Content-Type-Options: nosniff`, unless the answer set it already.
async fn no_sniffing(mut response: axum::response::Response) -> axum::response::Response {
    response
        .headers_mut()
        .entry(axum::http::header::X_CONTENT_TYPE_OPTIONS)
        .or_insert(axum::http::HeaderValue::from_static("nosniff"));
    response
}

/// One HTTP listener, bounded against slow clients ([`serve_http`]).
fn serve(
    listener: TcpListener,
    app: axum::Router,
    config: &Config,
    metrics: &HttpTimeoutMetrics,
    stop: &watch::Receiver<bool>,
    what: &'static str,
) -> impl std::future::Future<Output = anyhow::Result<()>> + Send + 'static {
    let app = match listener.local_addr() {
        Ok(local) => crate::host_check::guard(
            app,
            local,
            &config.http.allowed_hosts,
            metrics.refused(what, "host"),
            what,
        ),
        Err(_) => app,
    };
    // Every answer of every HTTP port, the collector's text errors (Zipkin, OTLP's 405
    // and 415) among them: a browser takes each body as the type it is sent with.
    let app = app.layer(axum::middleware::map_response(no_sniffing));
    let served = serve_http(
        listener,
        app,
        config.http.clone(),
        metrics.clone(),
        what,
        stop.clone(),
    );
    async move { served.await.with_context(|| format!("{what} server")) }
}
