//! `meshtel demo`: a Bookinfo-style mesh on one machine, in this one process, walking
//! through the seed scenarios of Istio's labs.
//!
//! ```text
//!   load generator ──► productpage v1 ─┬─► details v1 | v2 (buggy, dark by default)
//!   (--rate, 20 % jason,  (ingress)    └─► reviews v1 | v2 | v3 ──(v2, v3)──► ratings v1
//!    bursts)               every instance: an app + a meshtel proxy (inbound, outbound, admin)
//!                                   │ Report stream, OTLP spans, quota Check
//!                                   ▼
//!   collector + query (server::run_with) ─► /metrics · Jaeger API · graph API · UI
//!        └─ + /api/demo, /demo: switch scenarios (api.rs) ─► <data>/rules/demo.yaml, /api/quotas
//! ```
//!
//! - [`apps`]: the Bookinfo services as axum servers;
//! - [`mesh`]: binding, the mesh file, serving apps and proxies;
//! - [`scenarios`]: the scenario files (`src/demo/scenarios/*.yaml`) and what applying
//!   one writes;
//! - [`api`]: switching scenarios live (HTTP API, page, `meshtel demo list/apply`);
//! - [`load`]: the load generator.
//!
//! Nothing runs as a child process, so stopping the process (Ctrl-C, SIGTERM or
//! `--duration`) leaves nothing behind: load stops, proxies drain, apps stop, the
//! server flushes, exit 0.

pub mod api;
pub mod apps;
pub mod load;
pub mod mesh;
pub mod scenarios;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use serde::Serialize;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::cli::ServerArgs;
use crate::server::{self, Listeners, Role, RunOptions};

use self::api::{Controller, Wiring};
use self::load::{LoadGenerator, LoadSettings, TrafficStats};
use self::mesh::{InstanceAddresses, Mesh, MeshSettings};

/// The data directory when none is given; wiped at every start.
pub const DEFAULT_DATA_DIR: &str = "./meshtel-demo-data";
/// The file that marks a directory as the demo's, so that it may be wiped.
pub const MARKER_FILE: &str = ".meshtel-demo";
/// Compacted blocks of the demo's store hold at most this many spans (without
/// `--config`). `serve` merges up to 262,144: at the demo's ~90 spans/s its fourth
/// level of merges (~46,000 spans, every ~8.5 min) lifts the peak RSS by ~100 MiB.
pub const DEMO_COMPACTION_TARGET_ROWS: usize = 16_384;
/// How long the demo keeps traces (without `--config` or `--retention-max-age`).
pub const DEMO_RETENTION: Duration = Duration::from_secs(3600);
/// How often the traffic summary is logged.
pub const SUMMARY_EVERY: Duration = Duration::from_secs(10);
/// How long the demo waits for the first page to load through the mesh.
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long the server may take to stop (drain and flush).
pub const SERVER_STOP_TIMEOUT: Duration = Duration::from_secs(15);

/// `meshtel demo`: run it, or talk to a running one.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true, after_help = DEMO_HELP)]
// `serve`'s flags, with the demo's own defaults in their help.
#[command(mut_arg("data_dir", |a| a.help(
    "Directory for the WAL, Parquet blocks and SQLite database; wiped at every start \
     (only if it is the demo's) [default: ./meshtel-demo-data]")))]
#[command(mut_arg("admin_token", |a| a.help(
    "Bearer token for quota administration writes [default: generated for each run, shown in the guide]")))]
#[command(mut_arg("retention_max_age", |a| a.help(
    "Delete blocks whose newest span is older than this, e.g. 2h [default: 1h in the demo]")))]
#[command(mut_arg("check_config", |a| a.hide(true)))]
#[command(mut_arg("log_format", |a| a.help(
    "Log format: \"text\" or \"json\"; the level comes from RUST_LOG (default \"warn,meshtel::demo=info\")")))]
pub struct DemoCommand {
    /// List the scenarios or apply one in a running demo.
    #[command(subcommand)]
    pub action: Option<DemoAction>,
    /// Running the demo.
    #[command(flatten)]
    pub run: DemoArgs,
}

const DEMO_HELP: &str = "Scenarios (src/demo/scenarios/*.yaml): route-all-v1, jason-to-v2, split-50-50, \
split-90-10, all-v3, delay-jason, abort-jason, circuit-breaker, eject-broken-instance, rate-limit-ratings, \
mirror-to-v2, canary-v2-buggy. Switch while it runs: `meshtel demo apply NAME`, or the page /demo on the \
query port. Log level: RUST_LOG (default \"warn,meshtel::demo=info\").";

/// Talking to a running demo.
#[derive(Debug, Subcommand)]
pub enum DemoAction {
    /// List the scenarios, marking the one in force.
    List(ClientArgs),
    /// Apply a scenario (replacing the previous one); `none` goes back to the base rules.
    Apply {
        /// The scenario's name.
        name: String,
        #[command(flatten)]
        client: ClientArgs,
    },
}

/// Where the running demo's query service is.
#[derive(Debug, Args)]
pub struct ClientArgs {
    /// The demo's query service (UI and API); the same flag as `meshtel quota`'s
    /// (`--url` is read too).
    #[arg(
        long = "server",
        alias = "url",
        env = "MESHTEL_QUERY_URL",
        default_value = "http://127.0.0.1:16686"
    )]
    pub url: String,
}

/// Flags of a demo run; the server flags are `serve`'s.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// The scenario to start with [default: none, the base rules only].
    #[arg(long, env = "MESHTEL_DEMO_SCENARIO")]
    pub scenario: Option<String>,
    /// Page loads per second the load generator sends to productpage (0: none).
    #[arg(long, env = "MESHTEL_DEMO_RATE", default_value_t = 10.0)]
    pub rate: f64,
    /// Share of the page loads made as `end-user: jason`, in percent.
    #[arg(long, env = "MESHTEL_DEMO_JASON_PERCENT", default_value_t = 20.0)]
    pub jason_percent: f64,
    /// Page loads sent at once every 5 s on top of the rate (what trips the circuit
    /// breaker; 0: none).
    #[arg(long, env = "MESHTEL_DEMO_BURST", default_value_t = 8)]
    pub burst: usize,
    /// Percentage of traces the proxies sample.
    #[arg(long, env = "MESHTEL_DEMO_SAMPLING", default_value_t = 100.0)]
    pub sampling: f64,
    /// productpage's inbound listener: where Bookinfo answers (port 0: any free port).
    #[arg(
        long,
        env = "MESHTEL_DEMO_INGRESS_LISTEN",
        default_value = "127.0.0.1:9080"
    )]
    pub ingress_listen: SocketAddr,
    /// Stop by itself after this long, e.g. 60s [default: run until Ctrl-C].
    #[arg(long, value_parser = meshtel_model::duration::parse_config_duration)]
    pub duration: Option<Duration>,
    /// Write every bound address (server, ingress, each app and proxy) here as JSON once
    /// the demo answers; removed at a clean stop.
    #[arg(long)]
    pub listeners_file: Option<PathBuf>,
    /// The server's flags, as for `meshtel serve` (data directory default
    /// ./meshtel-demo-data, wiped at every start).
    #[command(flatten)]
    pub server: ServerArgs,
}

/// Runs the demo, or the `list` / `apply` client.
pub async fn run(command: DemoCommand) -> anyhow::Result<()> {
    match command.action {
        Some(DemoAction::List(client)) => api::client::list(&client.url).await,
        Some(DemoAction::Apply { name, client }) => api::client::apply(&client.url, &name).await,
        None if command.run.server.check_config => {
            anyhow::bail!("--check-config is for serve, collector and query; the demo sets up its own settings")
        }
        None => run_demo(command.run).await,
    }
}

/// What `--listeners-file` holds.
#[derive(Debug, Serialize)]
struct DemoListeners {
    #[serde(flatten)]
    server: Listeners,
    /// productpage's inbound listener.
    ingress: SocketAddr,
    /// Every instance by workload.
    instances: BTreeMap<String, InstanceAddresses>,
}

/// Empties `dir` if it is the demo's (or does not exist yet) and marks it as the demo's.
fn prepare_data_dir(dir: &Path) -> anyhow::Result<()> {
    let exists = dir.exists();
    let is_empty = exists
        && std::fs::read_dir(dir)
            .map(|mut e| e.next().is_none())
            .unwrap_or(false);
    if exists && !is_empty {
        if !dir.join(MARKER_FILE).exists() {
            bail!(
                "{} is not the demo's data directory (it has no {MARKER_FILE} file) and the demo wipes its \
                 data directory at start; give it another one (--data-dir, or data_dir in the --config file)",
                dir.display()
            );
        }
        // A demo still running there keeps its data: a second demo on the same
        // directory is refused before anything is removed.
        meshtel_store::ensure_not_in_use(dir)?;
        std::fs::remove_dir_all(dir).with_context(|| format!("wiping {}", dir.display()))?;
    }
    meshtel_store::create_private_dir(dir).with_context(|| format!("creating {}", dir.display()))?;
    std::fs::write(
        dir.join(MARKER_FILE),
        "meshtel demo data: wiped at every `meshtel demo` start\n",
    )
    .with_context(|| format!("marking {}", dir.display()))
}

/// A status line of the demo, on stdout with its guide: stderr holds the logs alone,
/// JSON lines with `--log-format json`. A closed stdout (`| head`) is not an error.
fn say(line: std::fmt::Arguments<'_>) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout().lock(), "{line}");
}

/// A random admin token for this run.
fn generate_token() -> String {
    use rand::Rng;
    let bytes: [u8; 16] = rand::rng().random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `http://addr`, with an unspecified address (0.0.0.0) reached on loopback.
fn reachable(addr: SocketAddr) -> SocketAddr {
    if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    }
}

fn validate(args: &DemoArgs) -> anyhow::Result<()> {
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        bail!(
            "--rate {} must be a number of page loads per second, 0 or more",
            args.rate
        );
    }
    if !(0.0..=100.0).contains(&args.jason_percent) {
        bail!("--jason-percent {} is not a percentage", args.jason_percent);
    }
    if !(0.0..=100.0).contains(&args.sampling) {
        bail!("--sampling {} is not a percentage", args.sampling);
    }
    Ok(())
}

/// Whether the config file at `path` sets the top-level `data_dir`.
fn config_file_sets_data_dir(path: Option<&std::path::Path>) -> anyhow::Result<bool> {
    let Some(path) = path else { return Ok(false) };
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("reading config file {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("parsing config file {}", path.display()))?;
    Ok(table.contains_key("data_dir"))
}

async fn run_demo(mut args: DemoArgs) -> anyhow::Result<()> {
    validate(&args)?;
    let scenario = match args.scenario.as_deref().map(str::trim) {
        None | Some("") | Some(scenarios::NONE) => None,
        Some(name) => Some(scenarios::find(name).with_context(|| {
            format!(
                "unknown scenario {name:?}; the scenarios are: {}",
                scenarios::names()
            )
        })?),
    };
    // The demo's own data directory unless a flag, MESHTEL_DATA_DIR or the config
    // file names one.
    if args.server.data_dir.is_none() && !config_file_sets_data_dir(args.server.config.as_deref())? {
        args.server.data_dir = Some(PathBuf::from(DEFAULT_DATA_DIR));
    }
    let mut config = args.server.resolve()?;
    if args.server.config.is_none() {
        // The demo's store stays small: compaction merges at most this many spans at a
        // time (bounded memory however long it runs), and an hour of traces is plenty.
        config.store.compaction_target_rows = DEMO_COMPACTION_TARGET_ROWS;
        if args.server.retention_max_age.is_none() {
            config.store.retention_max_age = DEMO_RETENTION;
        }
    }
    let admin_token = config.admin.token.clone().unwrap_or_else(generate_token);
    config.admin.token = Some(admin_token.clone());
    let data_dir = config.data_dir.clone();
    prepare_data_dir(&data_dir)?;
    let base_path = config.query.normalized_base_path().unwrap_or_default();

    let (stop_tx, stop_rx) = watch::channel(false);
    let deadline = args.duration;
    tokio::spawn(async move {
        match deadline {
            Some(after) => {
                tokio::select! {
                    () = crate::signal::shutdown_signal() => {}
                    () = tokio::time::sleep(after) => info!(after = ?after, "--duration is up"),
                }
            }
            None => crate::signal::shutdown_signal().await,
        }
        let _ = stop_tx.send(true);
        // A second Ctrl-C while stopping: the user does not want to wait.
        crate::signal::shutdown_signal().await;
        say(format_args!("demo: stopping at once"));
        std::process::exit(130);
    });
    let stopping = |rx: &watch::Receiver<bool>| {
        let mut rx = rx.clone();
        async move {
            let _ = rx.wait_for(|stop| *stop).await;
        }
    };

    // 1. Collector + query, with the demo's routes.
    let controller = Arc::new(Controller::new(&data_dir)?);
    controller.write_initial_rules(scenario)?;
    let (server_stop_tx, server_stop_rx) = watch::channel(false);
    let (listening_tx, listening_rx) = tokio::sync::oneshot::channel();
    let options = RunOptions {
        shutdown: Some(Box::pin(stopping(&server_stop_rx))),
        extra_query_routes: Some(api::router(controller.clone())),
        listening: Some(listening_tx),
    };
    let mut server = tokio::spawn(server::run_with(config, Role::All, options));
    let listeners = tokio::select! {
        bound = listening_rx => match bound {
            Ok(listeners) => listeners,
            Err(_) => {
                let error = server_result(server.await)
                    .err()
                    .unwrap_or_else(|| anyhow::anyhow!("the server stopped during startup"));
                let hint = if format!("{error:#}").contains("binding") {
                    "; the demo uses serve's ports: --grpc-listen, --http-listen, --zipkin-listen \
                     and --query-listen change them (port 0: any free port)"
                } else {
                    ""
                };
                return Err(error.context(format!("starting meshtel (collector + query){hint}")));
            }
        },
        () = stopping(&stop_rx) => {
            let _ = server_stop_tx.send(true);
            return server_result(server.await);
        }
    };
    let (Some(grpc), Some(http), Some(query)) = (listeners.grpc, listeners.http, listeners.query)
    else {
        bail!("the server did not report its listeners");
    };
    let (grpc, http, query) = (reachable(grpc), reachable(http), reachable(query));

    // 2. The mesh: apps and proxies, all bound before anything serves.
    let client = reqwest::Client::builder()
        .pool_idle_timeout(Duration::from_secs(30))
        .build()
        .context("building the HTTP client")?;
    let mesh_file = data_dir.join("mesh.yaml");
    let settings = MeshSettings {
        ingress: args.ingress_listen,
        collector: format!("http://{grpc}"),
        mesh_file: mesh_file.clone(),
        rules_dir: api::rules_dir(&data_dir),
        sampling: args.sampling,
    };
    let mesh = match Mesh::bind(&settings).await {
        Ok(mesh) => mesh,
        Err(error) => {
            let _ = server_stop_tx.send(true);
            let _ = server.await;
            return Err(error);
        }
    };
    let instances = mesh.addresses()?;
    let ingress = instances
        .get("productpage-v1")
        .map(|a| reachable(a.inbound))
        .context("productpage is an instance")?;
    let mut running = mesh.start(&mesh_file, client.clone())?;

    let query_base = format!("http://{query}{base_path}");
    let traffic = Arc::new(TrafficStats::new(LoadSettings {
        target: ingress,
        rate: args.rate,
        jason_percent: args.jason_percent,
        burst: args.burst,
    }));
    let started = Instant::now();
    controller.wire(Wiring {
        query_base: query_base.clone(),
        admin_token: admin_token.clone(),
        proxy_admins: instances.values().map(|a| a.admin).collect(),
        ingress_url: format!("http://{ingress}/productpage"),
        started,
        traffic: traffic.clone(),
    });

    // 3. Ready: the scenario's quotas in place, a first page through the mesh.
    let ready = async {
        controller
            .apply_initial_quotas()
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        wait_for_first_page(&client, ingress).await
    };
    let outcome = tokio::select! {
        ready = ready => ready.map(|()| true),
        error = running.failed() => Err(error),
        // Told to stop while starting: not an error, nothing to show.
        () = stopping(&stop_rx) => Ok(false),
    };
    let mut load = None;
    let mut server_done = false;
    let mut result = match outcome {
        Ok(false) => Ok(()),
        Ok(true) => {
            load = Some(LoadGenerator::start(traffic.clone(), client.clone()));
            let guide = Guide {
                ingress,
                query_base: &query_base,
                http,
                data_dir: &data_dir,
                rules_file: controller.rules_file(),
                admin_token: &admin_token,
                productpage_admin: instances.get("productpage-v1").map(|a| a.admin),
                args: &args,
                scenario: controller.current(),
            };
            println!("{}", guide.text());
            let published = match &args.listeners_file {
                Some(path) => {
                    let json = DemoListeners {
                        server: listeners.clone(),
                        ingress,
                        instances: instances.clone(),
                    };
                    serde_json::to_vec_pretty(&json)
                        .map_err(anyhow::Error::from)
                        .and_then(|bytes| write_atomically(path, &bytes))
                }
                None => Ok(()),
            };
            // 4. Run until told to stop, logging the traffic every 10 s.
            let mut summary = tokio::time::interval_at(
                tokio::time::Instant::now() + SUMMARY_EVERY,
                SUMMARY_EVERY,
            );
            if let Err(error) = published {
                Err(error)
            } else {
                loop {
                    tokio::select! {
                        _ = summary.tick() => {
                            let interval = traffic.take_interval();
                            if args.rate > 0.0 || args.burst > 0 || interval.counts.pages > 0 {
                                let scenario = controller.current().map_or(scenarios::NONE, |s| s.name);
                                say(format_args!("demo [{scenario}] {}", interval.line()));
                            }
                        }
                        () = stopping(&stop_rx) => break Ok(()),
                        error = running.failed() => break Err(error),
                        joined = &mut server => {
                            server_done = true;
                            break Err(server_result(joined).err().unwrap_or_else(|| anyhow::anyhow!("the server stopped unexpectedly")));
                        }
                    }
                }
            }
        }
        Err(error) => Err(error),
    };

    // 5. Stop: load, then proxies and apps, then the server (which flushes).
    info!("stopping the demo");
    if let Some(load) = load {
        load.stop().await;
    }
    running.stop().await;
    let _ = server_stop_tx.send(true);
    if !server_done {
        match tokio::time::timeout(SERVER_STOP_TIMEOUT, &mut server).await {
            Ok(joined) => {
                if let Err(error) = server_result(joined) {
                    warn!(error = %format!("{error:#}"), "the server stopped with an error");
                    if result.is_ok() {
                        result = Err(error);
                    }
                }
            }
            Err(_) => {
                warn!(timeout = ?SERVER_STOP_TIMEOUT, "the server did not stop in time");
                server.abort();
            }
        }
    }
    if let Some(path) = &args.listeners_file {
        let _ = std::fs::remove_file(path);
    }
    if result.is_ok() {
        let total = traffic.total(started);
        say(format_args!("demo stopped after {}", total.line()));
    }
    result
}

fn server_result(joined: Result<anyhow::Result<()>, tokio::task::JoinError>) -> anyhow::Result<()> {
    match joined {
        Ok(result) => result,
        Err(error) => Err(anyhow::Error::from(error).context("the server task ended abnormally")),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

/// Loads productpage until it answers 200 (every proxy and app is up).
async fn wait_for_first_page(client: &reqwest::Client, ingress: SocketAddr) -> anyhow::Result<()> {
    let deadline = Instant::now() + READY_TIMEOUT;
    let url = format!("http://{ingress}/productpage");
    loop {
        let answer = client
            .get(&url)
            .header("accept", "application/json")
            .timeout(Duration::from_secs(5))
            .send()
            .await;
        match answer {
            Ok(response) if response.status().is_success() => return Ok(()),
            Ok(response) if Instant::now() > deadline => {
                bail!("productpage answers {} at {url}", response.status())
            }
            Err(error) if Instant::now() > deadline => {
                return Err(anyhow::Error::from(error)
                    .context(format!("productpage does not answer at {url}")));
            }
            _ => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// What the demo prints once it answers.
struct Guide<'a> {
    ingress: SocketAddr,
    query_base: &'a str,
    http: SocketAddr,
    data_dir: &'a Path,
    rules_file: &'a Path,
    admin_token: &'a str,
    productpage_admin: Option<SocketAddr>,
    args: &'a DemoArgs,
    scenario: Option<&'static scenarios::Scenario>,
}

impl Guide<'_> {
    fn text(&self) -> String {
        let q = self.query_base;
        let query_flag = if q == "http://127.0.0.1:16686" {
            String::new()
        } else {
            format!(" --server {q}")
        };
        let scenario = match self.scenario {
            Some(s) => format!("{}: {}\n  look at: {}", s.name, s.title(), s.look_at()),
            None => "none: the base rules only; reviews rotates v1 -> v2 -> v3, details v2 gets no traffic".to_owned(),
        };
        let admin = self.productpage_admin.map_or_else(String::new, |a| format!("  proxy admin       http://{a}/stats/prometheus and /config_dump (productpage's; every address: --listeners-file)\n"));
        format!(
            "\n\
meshtel demo: Bookinfo with a meshtel proxy beside each of its 7 instances, in this process
  productpage v1 -> details v1 (v2: fails half its reads, no traffic until a scenario sends some)
                 -> reviews v1 (no stars) | v2 (black) | v3 (red) -> ratings v1
  traffic: {rate} pages/s to productpage, {jason}% as end-user jason, a burst of {burst} every 5 s

  Bookinfo          http://{ingress}/productpage   (?u=jason: signed in as jason)
  UI                {q}/   (graph: {q}/graph, traces: {q}/search)
  scenarios         {q}/demo
  Istio metrics     http://{http}/metrics   (istio_requests_total, ...)
  Jaeger API        {q}/api/traces?service=productpage.default&limit=20
  graph API         {q}/api/graph?window=5m
{admin}  rules in force    {rules}
  data              {data} (wiped at the next start)
  quota admin token {token}   (MESHTEL_ADMIN_TOKEN for `meshtel quota ...`)

scenario {scenario}

switch:  meshtel demo apply NAME{query_flag}   (list: meshtel demo list{query_flag}; or {q}/demo)
stop:    Ctrl-C
",
            rate = self.args.rate,
            jason = self.args.jason_percent,
            burst = self.args.burst,
            ingress = self.ingress,
            http = self.http,
            rules = self.rules_file.display(),
            data = self.data_dir.display(),
            token = self.admin_token,
        )
    }
}

#[cfg(test)]
mod tests;
