//! Command line: subcommands and the flags (each with a `MESHTEL_*` twin) that override
//! the config file.

use std::path::PathBuf;
use std::time::Duration;

use bytesize::ByteSize;
use clap::{Args, Parser, Subcommand, ValueEnum};
use meshtel_store::WalSync;

use crate::bench::BenchCommand;
use crate::config::Config;
use crate::server::Role;

/// meshtel: a telemetry collector and trace store for service meshes.
#[derive(Debug, Parser)]
#[command(name = "meshtel", version, about)]
pub struct Cli {
    /// What to run.
    #[command(subcommand)]
    pub command: Command,
}

/// The roles and tools of the one binary.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run collector and query service in one process (all-in-one).
    #[command(after_help = CONFIG_HELP)]
    Serve(ServerArgs),
    /// Run only the collector (ingest, WAL, store writer).
    #[command(after_help = CONFIG_HELP)]
    Collector(ServerArgs),
    /// Run only the query service, reading the blocks a collector writes to the same
    /// data directory.
    #[command(after_help = CONFIG_HELP)]
    Query(ServerArgs),
    /// Run the sidecar proxy beside one service instance (the same code as the small
    /// `meshtel-proxy` binary).
    // `--version` is the instance's version label, so clap's own version flag is off.
    #[command(disable_version_flag = true)]
    Proxy(ProxyCommand),
    /// Load generators to point at any deployment.
    #[command(subcommand)]
    Bench(BenchCommand),
    /// Quota policies: list, get, apply, delete, import, usage, audit (through the query
    /// service's /api/quotas).
    #[command(subcommand)]
    Quota(crate::quota_cli::QuotaCommand),
    /// Traffic rules (Istio VirtualService / DestinationRule YAML): validate them and
    /// show what each one does.
    #[command(subcommand)]
    Rules(crate::rules_cli::RulesCommand),
    /// Maintenance of a stopped store's blocks: `adopt` puts the blocks set aside in
    /// blocks/orphaned/ back into the index; `forget-missing` takes blocks whose files
    /// are gone out of it.
    #[command(subcommand)]
    Blocks(crate::blocks_cli::BlocksCommand),
    /// Bookinfo with a meshtel proxy beside every instance, traffic and the Istio lab
    /// scenarios, all in this process; or `list` / `apply` a scenario in a running demo.
    Demo(crate::demo::DemoCommand),
}

impl Command {
    /// Whether the subcommand runs servers until a signal (`serve`, `collector`,
    /// `query`, `proxy`, `demo` without a subcommand) rather than printing and ending.
    pub fn serves(&self) -> bool {
        match self {
            Command::Serve(_) | Command::Collector(_) | Command::Query(_) | Command::Proxy(_) => {
                true
            }
            Command::Demo(demo) => demo.action.is_none(),
            Command::Bench(_) | Command::Quota(_) | Command::Rules(_) | Command::Blocks(_) => false,
        }
    }

    /// The log format the subcommand was given, for those that take one.
    pub fn log_format(&self) -> Option<LogFormat> {
        match self {
            Command::Serve(args) | Command::Collector(args) | Command::Query(args) => {
                Some(args.log_format)
            }
            Command::Proxy(proxy) => Some(proxy.log_format),
            Command::Demo(demo) => Some(demo.run.server.log_format),
            Command::Bench(_) | Command::Quota(_) | Command::Rules(_) | Command::Blocks(_) => None,
        }
    }
}

/// For the subcommands that print and end ([`Command::serves`] is false): a reader
/// that closes the pipe early (`meshtel rules check DIR | head -1`) ends the process
/// quietly with status 0, as ripgrep does, instead of a "failed printing to stdout:
/// Broken pipe" panic and status 101. Rust ignores SIGPIPE, and the workspace forbids
/// the `unsafe` call that would set it back to its default, so the panic `println!`
/// raises on a closed stdout is recognised here; any other panic goes to the default
/// hook.
pub fn end_quietly_on_broken_stdout() {
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let message = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied());
        if message.is_some_and(is_broken_stdout_panic) {
            std::process::exit(0);
        }
        default_hook(info);
    }));
}

/// The message of `println!`'s panic when stdout's reader has gone.
/// Variables named `MESHTEL_*` that no flag of any command reads, in name order:
/// misspelt settings (`MESHTEL_FLUSH_INTERVALL`), which would otherwise be ignored
/// without a word while the same typo in the config file stops the start.
/// `MESHTEL_BIN` and `MESHTEL_TEST_*`, which the test suite and scripts read, are not
/// counted.
pub fn unknown_env_vars(vars: impl IntoIterator<Item = String>) -> Vec<String> {
    let mut known = std::collections::HashSet::new();
    let mut commands = vec![<Cli as clap::CommandFactory>::command()];
    while let Some(command) = commands.pop() {
        for arg in command.get_arguments() {
            if let Some(env) = arg.get_env().and_then(|e| e.to_str()) {
                known.insert(env.to_owned());
            }
        }
        commands.extend(command.get_subcommands().cloned());
    }
    let mut unknown: Vec<String> = vars
        .into_iter()
        .filter(|name| name.starts_with("MESHTEL_"))
        .filter(|name| name != "MESHTEL_BIN" && !name.starts_with("MESHTEL_TEST_"))
        .filter(|name| !known.contains(name))
        .collect();
    unknown.sort();
    unknown
}

/// Warns of each variable [`unknown_env_vars`] finds in the environment.
pub fn warn_unknown_env_vars() {
    let names = std::env::vars_os().filter_map(|(name, _)| name.into_string().ok());
    for variable in unknown_env_vars(names) {
        tracing::warn!(
            variable,
            "environment variable ignored: no setting has this name (see --help for each \
             flag's variable)"
        );
    }
}

/// Parses the command line; a refused value that came from a `MESHTEL_*` variable
/// rather than its flag is named as such after clap's error, which names only the
/// flag (one the operator never typed).
pub fn parse() -> Cli {
    let error = match Cli::try_parse() {
        Ok(cli) => return cli,
        Err(error) => error,
    };
    let _ = error.print();
    if let Some(variable) = variable_behind(&error, std::env::args()) {
        eprintln!("note: the value comes from the environment variable {variable}");
    }
    std::process::exit(error.exit_code());
}

/// The `MESHTEL_*` variable whose value `error` refused: its flag is not among `args`
/// and the variable is set.
fn variable_behind(error: &clap::Error, args: impl Iterator<Item = String>) -> Option<String> {
    use clap::CommandFactory;
    use clap::error::{ContextKind, ContextValue, ErrorKind};
    if !matches!(
        error.kind(),
        ErrorKind::ValueValidation | ErrorKind::InvalidValue
    ) {
        return None;
    }
    let Some(ContextValue::String(arg)) = error.get(ContextKind::InvalidArg) else {
        return None;
    };
    // `--flush-interval <FLUSH_INTERVAL>`
    let long = arg
        .strip_prefix("--")?
        .split([' ', '='])
        .next()?
        .to_string();
    let flag = format!("--{long}");
    let given = args
        .skip(1)
        .any(|a| a == flag || a.starts_with(&format!("{flag}=")));
    if given {
        return None;
    }
    let command = Cli::command();
    let mut commands = vec![&command];
    while let Some(command) = commands.pop() {
        commands.extend(command.get_subcommands());
        let variable = command
            .get_arguments()
            .filter(|a| a.get_long() == Some(long.as_str()))
            .find_map(|a| a.get_env())
            .map(|env| env.to_string_lossy().into_owned());
        if let Some(variable) = variable.filter(|v| std::env::var_os(v).is_some()) {
            return Some(variable);
        }
    }
    None
}

fn is_broken_stdout_panic(message: &str) -> bool {
    message.starts_with("failed printing to stdout") && message.contains("Broken pipe")
}

/// Every setting of the config file, shown under `--help`.
const CONFIG_HELP: &str = r#"Config file (--config FILE, TOML); flags and MESHTEL_* variables override it:
  data_dir = "./meshtel-data"
  [listen]    grpc = "127.0.0.1:4317"   http = "127.0.0.1:4318"
              zipkin = "127.0.0.1:9411" query = "127.0.0.1:16686"
  [store]     wal.sync = "interval"            # or "always" (fsync before every ack)
              wal.sync_interval = "100ms"      # power-failure window with "interval"; at most 10s
              flush_interval = "2s"            # head -> Parquet block at least this often
              flush_rows = 65536               # ...or at this many spans
              max_head_rows = 524288           # spans held in memory; beyond: 503/UNAVAILABLE
              max_head_bytes = "96 MiB"        # their Arrow memory; beyond: 503/UNAVAILABLE
              max_queued_bytes = "64 MiB"      # requests waiting for the WAL; beyond: 503 (at most 16 GiB)
              max_read_bytes = "64 MiB"        # attributes, events and links in one answer; past it traces are cut
              min_free_disk = "256 MiB"        # free space kept on the data dir's disk; below: 503; 0: off
              row_group_rows = 65536           # Parquet row group size
              block_order = "trace"            # or "service" (searches faster, fetches slower)
              compaction_target_rows = 262144  # blocks below this are merged
              compaction_interval = "30s"      # compaction and retention passes
              retention_max_age = "7d"
              retention_max_bytes = "50 GiB"   # a unit is required; 0: no bound on size
              max_query_memory = "1 GiB"       # searches and dependencies together; over: 503
              max_catalog_services = 10000     # services listed
              max_catalog_operations_per_service = 1000
              max_catalog_operations = 100000  # bound on (service, operation, kind) entries
  [ingest]    max_request_bytes = "16 MiB"     # before and after gzip; over: 413
              max_spans_per_request = 100000   # over: 400 / INVALID_ARGUMENT
              max_inflight_bytes = "384 MiB"   # held by all requests at once, JSON parses too (~20x the body); over: 503 (>= 2 x max_request_bytes + 64 KiB)
              max_attributes_per_span = 128    # extra ones dropped and counted
              max_events_per_span = 128        # and links: max_links_per_span; the first kept
              max_attribute_value_bytes = "64 KiB"  # longer values truncated (arrays and maps: in total)
              max_name_bytes = "1 KiB"         # span/event names, attribute keys; longer ones cut
  [ingest.cors] allowed_origins = []         # web origins posting spans from a browser; "*": any; empty: off
              allowed_headers = []  max_age = "0s"  # extra request headers ("*": any); preflight cache
  [query]     base_path = ""                   # e.g. "/jaeger"
              max_search_limit = 1500          # cap on a search's limit and on traceIDs per fetch
              max_spans_per_response = 50000   # past it the largest traces are cut, with a warning; >= max_search_limit
              max_concurrent_reads = 4         # trace reads at once; others wait up to 30 s, then 503
  [report]    max_records_per_batch = 10000    max_message_bytes = "8 MiB"
              max_label_bytes = 256  max_streams = 16384  # Report/WatchQuotas streams at once
              metrics.max_series = 10000       # per Istio metric; beyond: dropped and counted
              metrics.series_expiry = "1h"     # series without a request this long removed; "0s": never
  [quota]     max_keys = 1000000               # live counters; beyond: granted and counted (overflow)
              sweep_interval = "10s"  dedup_window = "1s"  sync_interval = "250ms"
  [admin]     token = "..."                    # or MESHTEL_ADMIN_TOKEN; else generated at first start
              require_token_for_reads = false
  [edges]     bucket = "10s"  flush_grace = "5s"  retention = "7d"
              prune_interval = "10m"  max_edges_per_bucket = 50000
              max_edges_in_memory = 200000     # while SQL refuses them; beyond: oldest dropped, counted
              coarse_after = "1h"              # older rollups summed into coarse buckets
              coarse_bucket = "5m"             # unset: 5m rounded up to whole buckets; = bucket: never summed
              max_read_time = "30s"            # a graph read past it: 503 naming this setting
              max_read_edges = 10000           # distinct edges one graph read sums; beyond: 503 naming it
  [http]      allowed_hosts = []               # Host names answered besides localhost on loopback
              header_read_timeout = "10s"      # OTLP HTTP, Zipkin, query: headers late -> closed
              body_read_timeout = "30s"        # body late -> 408, closed; gRPC call unanswered -> CANCELLED
              write_timeout = "30s"            # answer not read -> closed (a trace read's answer: dropped)
Log level: RUST_LOG (default "info,h2=error": the h2 crate's per-connection protocol
warnings only with RUST_LOG=info,h2=warn)."#;

/// `meshtel proxy` flags.
#[derive(Debug, Args)]
pub struct ProxyCommand {
    /// The proxy's settings.
    #[command(flatten)]
    pub proxy: meshtel_proxy::ProxyArgs,
    /// Log format.
    #[arg(long, env = "MESHTEL_PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// One human-readable line per event.
    Text,
    /// One JSON object per line.
    Json,
}

/// Flags shared by `serve`, `collector` and `query`. Each overrides the config file;
/// each has an environment twin.
#[derive(Debug, Args)]
pub struct ServerArgs {
    /// TOML config file; flags and MESHTEL_* variables override what it says.
    #[arg(long, env = "MESHTEL_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory for the WAL, Parquet blocks and SQLite database [default: ./meshtel-data]
    #[arg(long, env = "MESHTEL_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Bearer token for quota administration writes (serve, query); replaces the stored
    /// token for every query process of the data directory [default: the stored one;
    /// generated at first start, printed once, stored hashed]
    #[arg(long, env = "MESHTEL_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,
    /// OTLP gRPC listen address, host:port (0 = any free port) (serve, collector)
    /// [default: 127.0.0.1:4317]
    #[arg(long, env = "MESHTEL_GRPC_LISTEN")]
    pub grpc_listen: Option<String>,
    /// OTLP HTTP, /metrics and health listen address (serve, collector) [default:
    /// 127.0.0.1:4318]
    #[arg(long, env = "MESHTEL_HTTP_LISTEN")]
    pub http_listen: Option<String>,
    /// Zipkin v2 listen address (serve, collector) [default: 127.0.0.1:9411]
    #[arg(long, env = "MESHTEL_ZIPKIN_LISTEN")]
    pub zipkin_listen: Option<String>,
    /// Jaeger query API, web UI and quota API listen address (serve, query) [default:
    /// 127.0.0.1:16686]
    #[arg(long, env = "MESHTEL_QUERY_LISTEN")]
    pub query_listen: Option<String>,
    /// When the WAL reaches the disk: "interval" (fsync every --wal-sync-interval; a
    /// power failure can lose that window, a process crash loses nothing) or "always"
    /// (fsync before every acknowledgement) (serve, collector) [default: interval]
    #[arg(long, env = "MESHTEL_WAL_SYNC", value_parser = parse_wal_sync)]
    pub wal_sync: Option<WalSync>,
    /// WAL fsync interval with --wal-sync=interval, e.g. 100ms (serve, collector) [default:
    /// 100ms]
    #[arg(long, env = "MESHTEL_WAL_SYNC_INTERVAL", value_parser = meshtel_model::duration::parse_config_duration)]
    pub wal_sync_interval: Option<Duration>,
    /// How often the in-memory head is written to a Parquet block, e.g. 5s (serve,
    /// collector) [default: 2s]
    #[arg(long, env = "MESHTEL_FLUSH_INTERVAL", value_parser = meshtel_model::duration::parse_config_duration)]
    pub flush_interval: Option<Duration>,
    /// Delete blocks whose newest span is older than this, e.g. 7d (serve, collector)
    /// [default: 7d]
    #[arg(long, env = "MESHTEL_RETENTION_MAX_AGE", value_parser = meshtel_model::duration::parse_config_duration)]
    pub retention_max_age: Option<Duration>,
    /// Delete the oldest blocks while all blocks exceed this size, e.g. 50GiB (a unit is
    /// required); 0 for no size bound (serve, collector) [default: 50GiB]
    #[arg(long, env = "MESHTEL_RETENTION_MAX_BYTES", value_parser = meshtel_store::config::parse_retention_bytes)]
    pub retention_max_bytes: Option<ByteSize>,
    /// Free space kept on the data directory's disk: below it new spans are refused
    /// (503 / UNAVAILABLE) while flushes go on, e.g. 1GiB; 0 turns it off (serve,
    /// collector) [default: 256MiB]
    #[arg(long, env = "MESHTEL_MIN_FREE_DISK", value_parser = meshtel_model::size::parse_size)]
    pub min_free_disk: Option<ByteSize>,
    /// Largest ingest request body, before and after decompression (serve, collector)
    /// [default: 16MiB]
    #[arg(long, env = "MESHTEL_MAX_REQUEST_BYTES", value_parser = meshtel_model::size::parse_size)]
    pub max_request_bytes: Option<ByteSize>,
    /// Most spans in one ingest request (serve, collector) [default: 100000]
    #[arg(long, env = "MESHTEL_MAX_SPANS_PER_REQUEST")]
    pub max_spans_per_request: Option<usize>,
    /// URL prefix of the query API, e.g. /jaeger (serve, query) [default: none]
    #[arg(long, env = "MESHTEL_QUERY_BASE_PATH")]
    pub query_base_path: Option<String>,
    /// Log format; the level comes from RUST_LOG (default info).
    #[arg(long, env = "MESHTEL_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Check the configuration (the --config file, then MESHTEL_* variables and flags),
    /// print the settings it gives as TOML and exit: 0 when they hold, 1 naming what
    /// does not. Binds no port and touches no data directory.
    #[arg(long)]
    pub check_config: bool,
}

fn parse_wal_sync(text: &str) -> Result<WalSync, String> {
    match text {
        "always" => Ok(WalSync::Always),
        "interval" => Ok(WalSync::Interval),
        other => Err(format!(
            "expected \"always\" or \"interval\", got {other:?}"
        )),
    }
}

/// A setting given by flag or variable: how it is named, the config key its errors name
/// (as the file spells it), and the role that has no use for it.
struct Given {
    flag: &'static str,
    key: &'static str,
    unused_by: Role,
}

impl ServerArgs {
    /// The settings given by flag or variable that a role may ignore or a config check
    /// may refuse, in the order a refusal is looked up (`wal.sync_interval` before
    /// `wal.sync`, which it starts with). Listen addresses are left out: one set of
    /// flags for every role is how the roles are started side by side.
    fn given(&self) -> Vec<Given> {
        let query = |flag, key, set: bool| {
            set.then_some(Given {
                flag,
                key,
                unused_by: Role::Query,
            })
        };
        let collector = |flag, key, set: bool| {
            set.then_some(Given {
                flag,
                key,
                unused_by: Role::Collector,
            })
        };
        [
            query(
                "--wal-sync-interval (MESHTEL_WAL_SYNC_INTERVAL)",
                "[store] wal.sync_interval",
                self.wal_sync_interval.is_some(),
            ),
            query(
                "--wal-sync (MESHTEL_WAL_SYNC)",
                "[store] wal.sync",
                self.wal_sync.is_some(),
            ),
            query(
                "--flush-interval (MESHTEL_FLUSH_INTERVAL)",
                "[store] flush_interval",
                self.flush_interval.is_some(),
            ),
            query(
                "--retention-max-age (MESHTEL_RETENTION_MAX_AGE)",
                "[store] retention_max_age",
                self.retention_max_age.is_some(),
            ),
            query(
                "--retention-max-bytes (MESHTEL_RETENTION_MAX_BYTES)",
                "[store] retention_max_bytes",
                self.retention_max_bytes.is_some(),
            ),
            query(
                "--min-free-disk (MESHTEL_MIN_FREE_DISK)",
                "[store] min_free_disk",
                self.min_free_disk.is_some(),
            ),
            query(
                "--max-request-bytes (MESHTEL_MAX_REQUEST_BYTES)",
                "[ingest] max_request_bytes",
                self.max_request_bytes.is_some(),
            ),
            query(
                "--max-spans-per-request (MESHTEL_MAX_SPANS_PER_REQUEST)",
                "[ingest] max_spans_per_request",
                self.max_spans_per_request.is_some(),
            ),
            collector(
                "--query-base-path (MESHTEL_QUERY_BASE_PATH)",
                "[query] base_path",
                self.query_base_path.is_some(),
            ),
            collector(
                "--admin-token (MESHTEL_ADMIN_TOKEN)",
                "[admin] token",
                self.admin_token.as_ref().is_some_and(|t| !t.trim().is_empty()),
            ),
        ]
        .into_iter()
        .flatten()
        .collect()
    }

    /// The flags (or their variables) given that `role` has no use for, as
    /// `--flag (MESHTEL_FLAG)`: a query process does not ingest or write, a collector
    /// serves neither the query API nor the admin API.
    pub fn ignored_flags(&self, role: Role) -> Vec<&'static str> {
        self.given()
            .into_iter()
            .filter(|g| g.unused_by == role)
            .map(|g| g.flag)
            .collect()
    }

    /// Logs one WARN for each flag `role` ignores ([`Self::ignored_flags`]).
    pub fn warn_ignored_flags(&self, role: Role) {
        let subcommand = match role {
            Role::All => "serve",
            Role::Collector => "collector",
            Role::Query => "query",
        };
        for flag in self.ignored_flags(role) {
            tracing::warn!(
                flag,
                role = subcommand,
                "flag ignored: this role does not use it"
            );
        }
    }

    /// The config file with every flag and variable applied on top. A setting refused
    /// that a flag or variable gave is named with it, not only as the file spells it
    /// (`[store] retention_max_age … set by --retention-max-age (MESHTEL_…)`).
    pub fn resolve(&self) -> anyhow::Result<Config> {
        let mut c = Config::load(self.config.as_deref())?;
        if let Some(v) = &self.data_dir {
            c.data_dir = v.clone();
        }
        if let Some(v) = self.admin_token.as_ref().filter(|v| !v.is_empty()) {
            c.admin.token = Some(v.clone());
        }
        if let Some(v) = &self.grpc_listen {
            c.listen.grpc = v.clone();
        }
        if let Some(v) = &self.http_listen {
            c.listen.http = v.clone();
        }
        if let Some(v) = &self.zipkin_listen {
            c.listen.zipkin = v.clone();
        }
        if let Some(v) = &self.query_listen {
            c.listen.query = v.clone();
        }
        if let Some(v) = self.wal_sync {
            c.store.wal.sync = v;
        }
        if let Some(v) = self.wal_sync_interval {
            c.store.wal.sync_interval = v;
        }
        if let Some(v) = self.flush_interval {
            c.store.flush_interval = v;
        }
        if let Some(v) = self.retention_max_age {
            c.store.retention_max_age = v;
        }
        if let Some(v) = self.retention_max_bytes {
            c.store.retention_max_bytes = v;
        }
        if let Some(v) = self.min_free_disk {
            c.store.min_free_disk = v;
        }
        if let Some(v) = self.max_request_bytes {
            c.ingest.max_request_bytes = v;
        }
        if let Some(v) = self.max_spans_per_request {
            c.ingest.max_spans_per_request = v;
        }
        if let Some(v) = &self.query_base_path {
            c.query.base_path = v.clone();
        }
        c.finish().map_err(|error| self.naming_the_flag(error))
    }

    /// Refuses a `[store] min_free_disk` the data directory's disk cannot hold, before
    /// anything is created there (and with `--check-config`), naming the flag or
    /// variable that set it. Only for the roles that write.
    pub fn check_disk(&self, config: &Config) -> anyhow::Result<()> {
        meshtel_store::check_min_free_disk(&config.data_dir, config.store.min_free_disk)
            .map_err(|error| self.naming_the_flag(error.into()))
    }

    /// `error`, with the flag or variable that set the key it names, if one did.
    fn naming_the_flag(&self, error: anyhow::Error) -> anyhow::Error {
        let message = format!("{error:#}");
        match self.given().iter().find(|g| names_key(&message, g.key)) {
            Some(g) => anyhow::anyhow!("{message} ({} is set by {})", g.key, g.flag),
            None => error,
        }
    }
}

/// Whether `message` names `key` as a whole (`[store] wal.sync` is not named by a
/// message about `[store] wal.sync_interval`).
fn names_key(message: &str, key: &str) -> bool {
    message.match_indices(key).any(|(at, _)| {
        !message[at + key.len()..]
            .chars()
            .next()
            .is_some_and(|c| c.is_alphanumeric() || c == '_')
    })
}

#[cfg(test)]
mod tests {
    use super::unknown_env_vars;

    #[test]
    fn misspelt_meshtel_variables_are_found_and_known_ones_are_not() {
        let names = [
            "MESHTEL_FLUSH_INTERVALL",
            "MESHTEL_FLUSH_INTERVAL",
            "MESHTEL_STORE_MAX_HEAD_BYTES",
            "MESHTEL_PROXY_SERVICE",
            "MESHTEL_DEMO_RATE",
            "MESHTEL_ADMIN_TOKEN",
            "MESHTEL_TEST_PYTHON",
            "MESHTEL_BIN",
            "PATH",
        ];
        assert_eq!(
            unknown_env_vars(names.map(String::from)),
            ["MESHTEL_FLUSH_INTERVALL", "MESHTEL_STORE_MAX_HEAD_BYTES"]
        );
    }
}
