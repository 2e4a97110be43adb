//! `meshtel bench quota`: quota decisions in process, then `Check` over gRPC: latency
//! at a paced rate (open loop) and the saturated rate per server core.
//!
//! ```text
//!  pacer thread (1/rate s) ─► client thread ──► Check ─┐        ┌─► server (in process:
//!  workers × concurrency (closed loop) ─────────────┴─ channels ┤   own runtime, CPU of
//!                                                               │   its threads; or
//!                                                               └─► --addr, CPU of --pid)
//! ```
//!
//! Without `--addr` the real Mixer service (`mixer_grpc_service` over a `QuotaEngine`)
//! runs in process on 127.0.0.1:0 in a runtime of its own (`--server-threads`), and
//! the server's CPU is read from `/proc/self/task/<tid>/stat` of exactly those threads,
//! so the client's CPU is not counted. With `--addr` (a running `meshtel serve`, gRPC
//! port 4317) the CPU is that of `--pid` (the whole process), if given; the quota
//! checked is `--quota`, which should exist there (an unknown one is granted with
//! NOT_FOUND, which skips the counter).
//!
//! Latency is measured on the client, from just before each call to its answer (the
//! pacer's own lateness is not counted; the achieved rate is printed). CPU times are in clock ticks of 1/100 s (Linux `USER_HZ`).
//!
//! The reference: before the Check phase, the same pacer and client send an empty gRPC
//! call (`grpc.health.v1.Health/Check`) to the same server at the same rate, so the
//! Check figures can be read against what this machine does for any tonic unary call.
//! By default the in-process server's thread is pinned to the last CPU and the client's
//! threads to the others (`--pin false` leaves placement to the scheduler);
//! `--idle-poll` keeps idle CPUs polling while the benchmark runs.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Args;
use hdrhistogram::Histogram;
use meshtel_collector::{
    MeshMetrics, QuotaConfig, QuotaEngine, ReportConfig, mixer_grpc_service,
    report::reports_with_system_clock,
};
use meshtel_model::mixer::check_request::QuotaParams;
use meshtel_model::mixer::mixer_client::MixerClient;
use meshtel_model::mixer::{CheckRequest, QuotaAttributes, Workload};
use meshtel_model::quota::QuotaPolicySpec;
use serde_json::{Value, json};
use tonic::transport::Channel;
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

use super::report::{Interrupt, Out};

mod outcomes;

use outcomes::{Counts, due_before, histogram, percentiles, percentiles_text, rate_text};

/// `meshtel bench quota` flags.
#[derive(Debug, Args)]
pub struct QuotaArgs {
    /// Mixer gRPC endpoint of a running collector, e.g. http://127.0.0.1:4317; without
    /// it a server runs in process on 127.0.0.1:0.
    #[arg(long)]
    pub addr: Option<String>,
    /// With --addr: the server's process id, to report its CPU per check.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Checks per second of the paced (open loop) phase, at most 1,000,000 (and at most
    /// 10,000,000 checks over --duration).
    #[arg(long, default_value_t = 10_000.0)]
    pub rate: f64,
    /// Length of the paced and of the saturated phase.
    #[arg(long, default_value = "10s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub duration: Duration,
    /// HTTP/2 connections.
    #[arg(long, default_value_t = 4)]
    pub connections: usize,
    /// Checks in flight in the saturated phase.
    #[arg(long, default_value_t = 64)]
    pub concurrency: usize,
    /// Distinct counter keys (users) the checks spread over.
    #[arg(long, default_value_t = 1000)]
    pub keys: usize,
    /// Quota to charge; with --addr, a policy the server has (an unknown one ends the
    /// run with an error).
    #[arg(long, default_value = "bench-per-user")]
    pub quota: String,
    /// Worker threads of the in-process server.
    #[arg(long, default_value_t = 1)]
    pub server_threads: usize,
    /// Pin the in-process server's thread to the last CPU and the client's threads to
    /// the others, so that neither waits for the other's time slice.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    pub pin: bool,
    /// Keep idle CPUs polling instead of halting while the benchmark runs, by holding
    /// `/dev/cpu_dma_latency` at 0 (Linux, needs root). On a virtual machine a halted
    /// vCPU takes tens of µs to wake for each call.
    #[arg(long)]
    pub idle_poll: bool,
    /// Skip the reference phase (an empty gRPC call paced the same way).
    #[arg(long)]
    pub no_reference: bool,
    /// Print a JSON summary line on stdout (the human summary goes to stderr).
    #[arg(long)]
    pub json: bool,
}

/// What the paced phase sends.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Call {
    /// `Mixer/Check` with one quota.
    Check,
    /// `grpc.health.v1.Health/Check`: the reference, an empty unary call.
    Empty,
}

/// CPUs to pin to: (server, client) when pinning applies.
fn pin_plan(args: &QuotaArgs) -> Option<(core_affinity::CoreId, core_affinity::CoreId)> {
    if !args.pin || args.addr.is_some() || args.server_threads > 1 {
        return None;
    }
    let cores = core_affinity::get_core_ids()?;
    match (cores.first(), cores.last()) {
        (Some(client), Some(server)) if cores.len() >= 2 => Some((*server, *client)),
        _ => None,
    }
}

/// Pins the calling thread, saying so when it cannot.
fn pin_current(core: Option<core_affinity::CoreId>, who: &str) {
    if let Some(core) = core
        && !core_affinity::set_for_current(core)
    {
        eprintln!(
            "quota bench: could not pin the {who} thread to CPU {}",
            core.id
        );
    }
}

/// Holds `/dev/cpu_dma_latency` at 0 while alive: idle CPUs poll instead of halting.
fn hold_idle_poll() -> anyhow::Result<std::fs::File> {
    use std::io::Write as _;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/cpu_dma_latency")
        .context("--idle-poll needs /dev/cpu_dma_latency (Linux) and root")?;
    file.write_all(&0i32.to_ne_bytes())
        .context("writing 0 to /dev/cpu_dma_latency")?;
    Ok(file)
}

/// The policy the in-process server enforces: per user, far above the demand.
fn bench_policy(name: &str) -> anyhow::Result<QuotaPolicySpec> {
    Ok(serde_json::from_value(json!({
        "name": name,
        "dimensions": {"user": "request.headers[\"x-user\"] | \"anonymous\""},
        "maxAmount": 1_000_000_000_000u64,
        "validDuration": "1s",
    }))?)
}

fn check_request(quota: &str, user: usize) -> CheckRequest {
    CheckRequest {
        attributes: Some(QuotaAttributes {
            source: Some(Workload {
                app: "productpage".into(),
                version: "v1".into(),
                ..Workload::default()
            }),
            destination_service_name: "reviews".into(),
            request_method: "GET".into(),
            request_path: "/reviews/0".into(),
            request_headers: [("x-user".to_string(), format!("user-{user:06}"))].into(),
            ..QuotaAttributes::default()
        }),
        deduplication_id: String::new(),
        quotas: [(
            quota.to_string(),
            QuotaParams {
                amount: 1,
                best_effort: false,
            },
        )]
        .into(),
    }
}

/// `Mutex::lock` that shrugs off poisoning (a panicked task already failed the run).
trait LockOk<T> {
    fn lock_ok(&self) -> MutexGuard<'_, T>;
}

impl<T> LockOk<T> for Mutex<T> {
    fn lock_ok(&self) -> MutexGuard<'_, T> {
        self.lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// CPU time (user + system) in seconds of some threads or processes.
enum CpuSource {
    /// Threads of this process, by id.
    Threads(Arc<Mutex<Vec<u32>>>),
    /// A whole process.
    Process(u32),
    /// Not measured.
    None,
}

/// utime + stime of a `/proc/.../stat` file, in seconds.
fn stat_cpu_seconds(path: &str) -> Option<f64> {
    let text = std::fs::read_to_string(path).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / 100.0)
}

impl CpuSource {
    fn seconds(&self) -> Option<f64> {
        match self {
            CpuSource::Threads(tids) => Some(
                tids.lock_ok()
                    .iter()
                    .filter_map(|tid| stat_cpu_seconds(&format!("/proc/self/task/{tid}/stat")))
                    .sum(),
            ),
            CpuSource::Process(pid) => stat_cpu_seconds(&format!("/proc/{pid}/stat")),
            CpuSource::None => None,
        }
    }

    fn describe(&self) -> String {
        match self {
            CpuSource::Threads(tids) => format!(
                "CPU of the in-process server's {} threads (/proc/self/task/<tid>/stat)",
                tids.lock_ok().len()
            ),
            CpuSource::Process(pid) => format!("CPU of process {pid} (/proc/{pid}/stat)"),
            CpuSource::None => "server CPU not measured (give --pid)".into(),
        }
    }
}

/// The in-process server: its own runtime, so its threads can be measured.
struct InProcess {
    runtime: ServerRuntime,
    engine: Arc<QuotaEngine>,
    /// Keeps the health service's status (the reference call) alive.
    _health: tonic_health::server::HealthReporter,
}

/// The server's runtime: one thread of its own, or a pool.
enum ServerRuntime {
    /// A current-thread runtime run by one thread until the sender is dropped.
    Own(tokio::runtime::Handle, tokio::sync::oneshot::Sender<()>),
    /// A multi-thread runtime.
    Pool(tokio::runtime::Runtime),
}

impl ServerRuntime {
    fn handle(&self) -> &tokio::runtime::Handle {
        match self {
            ServerRuntime::Own(handle, _) => handle,
            ServerRuntime::Pool(runtime) => runtime.handle(),
        }
    }

    fn stop(self) {
        match self {
            ServerRuntime::Own(_, stop) => drop(stop),
            ServerRuntime::Pool(runtime) => runtime.shutdown_background(),
        }
    }
}

/// This thread's id, from `/proc/thread-self`.
fn current_tid() -> Option<u32> {
    let link = std::fs::read_link("/proc/thread-self").ok()?;
    link.file_name()?.to_str()?.parse().ok()
}

fn start_in_process(
    args: &QuotaArgs,
    tids: Arc<Mutex<Vec<u32>>>,
) -> anyhow::Result<(InProcess, String)> {
    let runtime = if args.server_threads <= 1 {
        // One thread: a current-thread runtime driven by a thread of its own (no
        // work-stealing bookkeeping on a single worker).
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("starting the server runtime")?;
        let handle = runtime.handle().clone();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let core = pin_plan(args).map(|(server, _)| server);
        std::thread::Builder::new()
            .name("quota-server".into())
            .spawn(move || {
                pin_current(core, "server");
                if let Some(tid) = current_tid() {
                    tids.lock_ok().push(tid);
                }
                runtime.block_on(async {
                    let _ = stop_rx.await;
                });
            })?;
        ServerRuntime::Own(handle, stop_tx)
    } else {
        ServerRuntime::Pool(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(args.server_threads)
                .thread_name("quota-server")
                .on_thread_start(move || {
                    if let Some(tid) = current_tid() {
                        tids.lock_ok().push(tid);
                    }
                })
                .enable_all()
                .build()
                .context("starting the server runtime")?,
        )
    };
    let engine = Arc::new(QuotaEngine::with_system_clock(QuotaConfig::default())?);
    engine.set_policies(1, vec![bench_policy(&args.quota)?]);
    let report_config = ReportConfig::default();
    let reports = reports_with_system_clock(
        MeshMetrics::new(&report_config.metrics)?,
        None,
        report_config,
    );
    let service = mixer_grpc_service(reports, Some(engine.clone()));
    let (health_reporter, health) = tonic_health::server::health_reporter();
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    runtime.handle().spawn(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                eprintln!("quota bench server: {error}");
                return;
            }
        };
        // Small answers must not wait for Nagle's algorithm.
        let incoming =
            tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        if let Err(error) = tonic::transport::Server::builder()
            .add_service(service)
            .add_service(health)
            .serve_with_incoming(incoming)
            .await
        {
            eprintln!("quota bench server: {error}");
        }
    });
    Ok((
        InProcess {
            runtime,
            engine,
            _health: health_reporter,
        },
        format!("http://{addr}"),
    ))
}

/// Longest a Check (or the reference call) may take before it counts as failed.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);

async fn connect(addr: &str, n: usize) -> anyhow::Result<Vec<Channel>> {
    super::otlp_client::refuse_tls(addr)?;
    let mut channels = Vec::with_capacity(n);
    for _ in 0..n.max(1) {
        // A server that accepts connections and answers nothing ends the run.
        let channel = Channel::from_shared(addr.to_string())?
            .connect_timeout(Duration::from_secs(5))
            .timeout(CALL_TIMEOUT)
            .tcp_nodelay(true)
            .connect()
            .await
            .with_context(|| format!("connecting to {addr}"))?;
        channels.push(channel);
    }
    Ok(channels)
}

/// Open loop: a pacer thread wakes every 1/rate s (sleeping, catching up when late)
/// and hands one Check to a client thread of its own (a current-thread runtime with
/// its own connections), which sends it and records its latency. Nothing spins: on a
/// small machine a spinning client takes CPU from the server it measures.
async fn paced(
    args: &QuotaArgs,
    addr: &str,
    requests: &Arc<Vec<CheckRequest>>,
    (call, interrupted): (Call, Arc<AtomicBool>),
) -> anyhow::Result<(Histogram<u64>, Counts, f64)> {
    let client_core = pin_plan(args).map(|(_, client)| client);
    let interval = Duration::from_secs_f64(1.0 / args.rate);
    let total = due_before(args.duration.as_secs_f64(), args.rate);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let handle = runtime.handle().clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let client_thread = std::thread::Builder::new()
        .name("quota-client".into())
        .spawn(move || {
            pin_current(client_core, "client");
            runtime.block_on(async {
                let _ = stop_rx.await;
            })
        })?;
    let channels = handle
        .spawn(connect_owned(addr.to_string(), args.connections))
        .await??;
    let latencies = Arc::new(Mutex::new(histogram()?));
    let counts = Arc::new(Counts::default());
    let (requests, latencies_in, counts_in) = (requests.clone(), latencies.clone(), counts.clone());
    let pacer = std::thread::Builder::new()
        .name("quota-pacer".into())
        .spawn(move || {
            pin_current(client_core, "pacer");
            let start = Instant::now();
            let mut tasks = Vec::with_capacity(total);
            for i in 0..total {
                let due = start + interval.mul_f64(i as f64);
                // In steps, so that Ctrl-C ends a slow pace at once.
                loop {
                    let now = Instant::now();
                    if due <= now || interrupted.load(Ordering::Relaxed) {
                        break;
                    }
                    std::thread::sleep((due - now).min(Duration::from_millis(100)));
                }
                if interrupted.load(Ordering::Relaxed) {
                    break;
                }
                let channel = channels[i % channels.len()].clone();
                let request = requests[i % requests.len()].clone();
                let (latencies, counts) = (latencies_in.clone(), counts_in.clone());
                tasks.push(handle.spawn(async move {
                    let sent = Instant::now();
                    let micros = |sent: Instant| {
                        u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX)
                    };
                    match call {
                        Call::Check => {
                            let result = MixerClient::new(channel).check(request).await;
                            if counts.record(&result) {
                                latencies.lock_ok().saturating_record(micros(sent).max(1));
                            }
                        }
                        Call::Empty => {
                            let result = HealthClient::new(channel)
                                .check(HealthCheckRequest::default())
                                .await;
                            if counts.record_empty(&result) {
                                latencies.lock_ok().saturating_record(micros(sent).max(1));
                            }
                        }
                    }
                }));
            }
            (tasks, start.elapsed())
        })?;
    let (tasks, sending) = tokio::task::spawn_blocking(move || pacer.join())
        .await?
        .map_err(|_| anyhow::anyhow!("pacer thread panicked"))?;
    let sent = tasks.len();
    for task in tasks {
        task.await?;
    }
    drop(stop_tx);
    tokio::task::spawn_blocking(move || client_thread.join())
        .await?
        .map_err(|_| anyhow::anyhow!("client thread panicked"))?;
    // The first call at 0 and the last at `sending`: n calls take n intervals, the
    // last one's included.
    let achieved = sent as f64 / (sending + interval).as_secs_f64();
    let latencies = latencies.lock_ok().clone();
    let counts = Arc::try_unwrap(counts).unwrap_or_default();
    Ok((latencies, counts, achieved))
}

async fn connect_owned(addr: String, n: usize) -> anyhow::Result<Vec<Channel>> {
    connect(&addr, n).await
}

/// Closed loop: `concurrency` workers, each one Check at a time, for `duration`.
async fn saturated(
    args: &QuotaArgs,
    channels: &[Channel],
    requests: &Arc<Vec<CheckRequest>>,
    (duration, interrupt): (Duration, &Interrupt),
) -> anyhow::Result<(Histogram<u64>, Counts, f64)> {
    let stop = Arc::new(AtomicBool::new(false));
    let counts = Arc::new(Counts::default());
    let mut workers = Vec::new();
    for w in 0..args.concurrency.max(1) {
        let mut client = MixerClient::new(channels[w % channels.len()].clone());
        let (stop, counts, requests) = (stop.clone(), counts.clone(), requests.clone());
        let mut latencies = histogram()?;
        workers.push(tokio::spawn(async move {
            let mut i = w * 7919;
            while !stop.load(Ordering::Relaxed) {
                let request = requests[i % requests.len()].clone();
                i += 1;
                let sent = Instant::now();
                let result = client.check(request).await;
                let micros = u64::try_from(sent.elapsed().as_micros()).unwrap_or(u64::MAX);
                if counts.record(&result) {
                    latencies.saturating_record(micros.max(1));
                }
            }
            latencies
        }));
    }
    let started = Instant::now();
    let until = tokio::time::sleep(duration);
    tokio::pin!(until);
    loop {
        tokio::select! {
            () = &mut until => break,
            () = tokio::time::sleep(Duration::from_millis(50)) => if interrupt.arrived() { break },
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut latencies = histogram()?;
    for worker in workers {
        latencies.add(worker.await?)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let counts = Arc::try_unwrap(counts).unwrap_or_default();
    Ok((latencies, counts, elapsed))
}

/// In-process engine decisions per second for one second (attribute path, one task).
fn engine_rate(engine: &QuotaEngine, quota: &str, keys: usize) -> f64 {
    let attrs: Vec<QuotaAttributes> = (0..keys.max(1))
        .map(|u| check_request(quota, u).attributes.unwrap_or_default())
        .collect();
    let started = Instant::now();
    let mut n = 0usize;
    while started.elapsed() < Duration::from_secs(1) {
        for _ in 0..1000 {
            std::hint::black_box(engine.check(&attrs[n % attrs.len()], quota, 1, false));
            n += 1;
        }
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The highest `--rate`: far above what one machine checks.
const MAX_RATE: f64 = 1_000_000.0;

/// Most checks the paced phase schedules (a task handle each, held until it ends).
const MAX_PACED_CHECKS: f64 = 10_000_000.0;

/// Runs the quota benchmark.
pub async fn run(args: QuotaArgs) -> anyhow::Result<()> {
    // Paced over the run in one schedule: bounded, so that it fits in memory.
    if !(args.rate > 0.0 && args.rate <= MAX_RATE) {
        bail!(
            "--rate must be a number of checks per second from above 0 to {MAX_RATE}, not {}",
            args.rate
        );
    }
    let scheduled = args.rate * args.duration.as_secs_f64();
    if scheduled > MAX_PACED_CHECKS {
        bail!(
            "--rate × --duration is {scheduled:.0} checks, more than the {MAX_PACED_CHECKS} one paced phase schedules: \
             lower one of them"
        );
    }
    if args.connections == 0 || args.concurrency == 0 || args.keys == 0 {
        bail!("--connections, --concurrency and --keys must be at least 1");
    }
    if args.duration.is_zero() {
        bail!("--duration must be positive");
    }
    if scheduled < 1.0 {
        bail!(
            "--rate × --duration is {scheduled} checks: the paced phase needs at least one \
             (raise --rate or --duration)"
        );
    }
    let out = Out::new(args.json);
    let interrupt = Interrupt::watch("ending the phase in progress and printing what it measured");
    let _idle_poll = if args.idle_poll {
        Some(hold_idle_poll()?)
    } else {
        None
    };
    let tids = Arc::new(Mutex::new(Vec::new()));
    let (server, addr, cpu) = match &args.addr {
        Some(addr) => {
            let cpu = args.pid.map_or(CpuSource::None, CpuSource::Process);
            (None, addr.clone(), cpu)
        }
        None => {
            let (server, addr) = start_in_process(&args, tids.clone())?;
            (Some(server), addr, CpuSource::Threads(tids))
        }
    };
    let mut summary = json!({"addr": addr, "quota": args.quota, "keys": args.keys});
    if let Some(server) = &server {
        let rate = engine_rate(&server.engine, &args.quota, args.keys);
        out.line(format!(
            "in-process engine (attribute path, {} keys, 1 thread): {rate:.0} decisions/s",
            args.keys
        ));
        summary["engine_decisions_per_second"] = json!(rate.round());
    }
    if interrupt.arrived() {
        return interrupted(&out, summary, server);
    }
    let placement = match pin_plan(&args) {
        Some((server, client)) => format!(
            "server thread on CPU {}, client threads on CPU {}",
            server.id, client.id
        ),
        None => "threads placed by the scheduler".into(),
    };
    out.line(format!(
        "Check over gRPC to {addr}, {} connections, after 1 s of Checks at full speed to warm \
         them up (not counted); {}; {placement}{}",
        args.connections,
        cpu.describe(),
        if args.idle_poll {
            "; idle CPUs polling"
        } else {
            ""
        }
    ));
    let channels = connect(&addr, args.connections).await?;
    let requests: Arc<Vec<CheckRequest>> = Arc::new(
        (0..args.keys.max(1))
            .map(|u| check_request(&args.quota, u))
            .collect(),
    );

    // Warm up connections and counters.
    saturated(&args, &channels, &requests, (Duration::from_secs(1), &interrupt)).await?;
    if interrupt.arrived() {
        return interrupted(&out, summary, server);
    }
    summary["pinned"] = json!(pin_plan(&args).is_some());
    summary["idle_poll"] = json!(args.idle_poll);

    let reference = if args.no_reference {
        None
    } else {
        let (latencies, counts, achieved) =
            paced(&args, &addr, &requests, (Call::Empty, interrupt.flag())).await?;
        if interrupt.arrived() && latencies.is_empty() {
            out.line("reference: interrupted before a call was answered");
            return interrupted(&out, summary, server);
        }
        out.line(format!(
            "reference: empty gRPC call (grpc.health.v1.Health/Check) paced {}/s (achieved {}/s): {}; {}",
            rate_text(args.rate),
            rate_text(achieved),
            percentiles_text(&latencies),
            counts.text()
        ));
        summary["reference"] = json!({
            "call": "grpc.health.v1.Health/Check",
            "achieved_rate": (achieved * 100.0).round() / 100.0,
            "latency": percentiles(&latencies),
            "counts": counts.json(),
        });
        if !interrupt.arrived() {
            counts.check("reference", &args.quota)?;
        }
        Some(latencies)
    };
    if interrupt.arrived() {
        return interrupted(&out, summary, server);
    }

    let cpu_before = cpu.seconds();
    let (latencies, counts, achieved) =
        paced(&args, &addr, &requests, (Call::Check, interrupt.flag())).await?;
    if interrupt.arrived() && latencies.is_empty() {
        out.line("paced: interrupted before a Check was answered");
        return interrupted(&out, summary, server);
    }
    let cpu_per_check = cpu_before
        .zip(cpu.seconds())
        .map(|(before, after)| (after - before) * 1e6 / latencies.len().max(1) as f64);
    out.line(format!(
        "paced {} checks/s {} (achieved {}/s): {}; {}{}",
        rate_text(args.rate),
        phase_length(&args, &interrupt),
        rate_text(achieved),
        percentiles_text(&latencies),
        counts.text(),
        cpu_per_check.map_or(String::new(), |us| format!(
            "; server CPU {us:.1} µs per check"
        ))
    ));
    summary["paced"] = json!({
        "rate": args.rate,
        "achieved_rate": (achieved * 100.0).round() / 100.0,
        "latency": percentiles(&latencies),
        "counts": counts.json(),
        "server_cpu_us_per_check": cpu_per_check.map(|us| (us * 10.0).round() / 10.0),
    });
    if !interrupt.arrived() {
        counts.check("paced", &args.quota)?;
    }
    if let Some(reference) = reference {
        let over =
            |q: f64| latencies.value_at_quantile(q) as i64 - reference.value_at_quantile(q) as i64;
        out.line(format!(
            "Check over the empty call: p50 {:+} µs, p99 {:+} µs",
            over(0.50),
            over(0.99)
        ));
        summary["paced"]["over_reference_us"] = json!({"p50": over(0.50), "p99": over(0.99)});
    }
    if interrupt.arrived() {
        return interrupted(&out, summary, server);
    }

    let cpu_before = cpu.seconds();
    let (latencies, counts, elapsed) =
        saturated(&args, &channels, &requests, (args.duration, &interrupt)).await?;
    let cpu_after = cpu.seconds();
    let done = counts.answered();
    let rate = done as f64 / elapsed;
    let mut line = format!(
        "saturated ({} in flight) {}: {rate:.0} checks/s; {}; {}",
        args.concurrency,
        phase_length(&args, &interrupt),
        percentiles_text(&latencies),
        counts.text()
    );
    let mut saturated_json = json!({
        "concurrency": args.concurrency,
        "checks_per_second": rate.round(),
        "latency": percentiles(&latencies),
        "counts": counts.json(),
    });
    if let (Some(before), Some(after)) = (cpu_before, cpu_after) {
        let cores = (after - before) / elapsed;
        if cores > 0.0 {
            let per_core = rate / cores;
            line.push_str(&format!(
                "; server CPU {cores:.2} cores → {per_core:.0} checks/s per server core"
            ));
            saturated_json["server_cores"] = json!((cores * 100.0).round() / 100.0);
            saturated_json["checks_per_second_per_core"] = json!(per_core.round());
        }
    }
    out.line(line);
    summary["saturated"] = saturated_json;
    if interrupt.arrived() {
        return interrupted(&out, summary, server);
    }
    counts.check("saturated", &args.quota)?;
    out.json(&summary);
    if let Some(server) = server {
        server.runtime.stop();
    }
    Ok(())
}

/// How long a phase ran, for its line: `--duration`, or what Ctrl-C left of it.
fn phase_length(args: &QuotaArgs, interrupt: &Interrupt) -> String {
    match interrupt.arrived() {
        true => "until Ctrl-C".to_string(),
        false => format!("for {}", humantime::format_duration(args.duration)),
    }
}

/// Ends a run that Ctrl-C cut short: the phases measured were printed as they ended
/// (the one in progress with what it measured); the JSON summary says it was cut.
fn interrupted(out: &Out, mut summary: Value, server: Option<InProcess>) -> anyhow::Result<()> {
    summary["interrupted"] = json!(true);
    out.json(&summary);
    if let Some(server) = server {
        server.runtime.stop();
    }
    Ok(())
}
