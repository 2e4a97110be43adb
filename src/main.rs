//! `meshtel`: one binary, several roles. Parses the command line, sets up logging and
//! hands over to the role.

mod bench;
mod blocks_cli;
mod cli;
mod config;
mod demo;
mod error_report;
mod host_check;
mod http_server;
mod metrics;
mod quota_cli;
mod readiness;
mod rules_cli;
mod server;
mod signal;

use tracing_subscriber::EnvFilter;

use cli::{Cli, Command, LogFormat};

/// mimalloc: less fragmentation than glibc's allocator under many threads building and
/// dropping Arrow batches, so the collector's resident memory tracks what it holds.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Returns to the OS what the calling thread freed and mimalloc still holds. mimalloc
/// purges freed pages only when their thread allocates again; the store calls this on
/// a blocking-pool thread after each merge (`meshtel_store::memory`), whose tens of MiB
/// would otherwise stay resident while the thread idles.
#[allow(unsafe_code)]
fn release_freed_memory() {
    // SAFETY: mi_collect takes no arguments that point anywhere; it walks the calling
    // thread's mimalloc heap, which is the global allocator's.
    unsafe { libmimalloc_sys::mi_collect(true) }
}

use server::Role;

/// Colours only on a terminal (and not under NO_COLOR): a log file, a pipe, journald
/// or `kubectl logs` get plain text that grep finds.
fn colour_logs() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

use meshtel_proxy::log_format::DEFAULT_LOG_FILTER;

fn init_tracing(format: LogFormat) {
    init_tracing_with_default(format, DEFAULT_LOG_FILTER);
}

/// As [`init_tracing`], with `default_filter` when RUST_LOG is not set. A RUST_LOG that
/// does not parse falls back to `default_filter` with one warning naming it.
fn init_tracing_with_default(format: LogFormat, default_filter: &str) {
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok().filter(|v| !v.trim().is_empty());
    let (filter, refused) = match rust_log.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (EnvFilter::new(default_filter), Some(error)),
        None => (EnvFilter::new(default_filter), None),
    };
    // A log line that cannot be written (stderr's reader gone: `serve 2>&1 | head`) is
    // dropped: by default the subscriber reports it with `eprintln!`, which panics on
    // the broken pipe inside whatever task logged, a flush or the WAL writer among them.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour_logs())
        .log_internal_errors(false);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.fmt_fields(meshtel_proxy::log_format::escaped_fields()).init(),
    }
    if let (Some(error), Some(value)) = (refused, rust_log) {
        tracing::warn!(rust_log = %value, %error, fallback = default_filter, "RUST_LOG is not a valid filter; using the default");
    }
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let cli = cli::parse();
    meshtel_store::memory::set_release_hook(release_freed_memory);
    if !cli.command.serves() {
        cli::end_quietly_on_broken_stdout();
    }
    let json_logs = cli.command.log_format() == Some(LogFormat::Json);
    match run(cli).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            if json_logs {
                // Every line stays JSON: the failure is the last event, its causes joined.
                tracing::error!(error = error_report::one_line(&error), "meshtel failed");
            } else {
                eprintln!("Error: {}", error_report::multi_line(&error));
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// Runs `role` with the settings `args` resolve to; with `--check-config`, prints them
/// instead, checked, and starts nothing.
async fn run_role(args: &cli::ServerArgs, role: Role) -> anyhow::Result<()> {
    let config = args.resolve()?;
    if role.ingests() {
        args.check_disk(&config)?;
    }
    if args.check_config {
        return print_checked_config(config, args.config.as_deref());
    }
    server::run(config, role).await
}

/// The settings as they would run, as TOML; a configured admin token is not shown.
fn print_checked_config(mut config: config::Config, file: Option<&std::path::Path>) -> anyhow::Result<()> {
    use anyhow::Context;
    use std::io::Write;
    if config.admin.token.is_some() {
        config.admin.token = Some("(set, not shown)".to_owned());
    }
    let text = toml::to_string_pretty(&config).context("writing the settings as TOML")?;
    let source = file.map_or_else(|| "no config file".to_owned(), |path| path.display().to_string());
    let _ = write!(
        std::io::stdout().lock(),
        "# meshtel {}: configuration OK ({source}, then MESHTEL_* variables and flags)\n{text}",
        env!("CARGO_PKG_VERSION")
    );
    Ok(())
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(args) => {
            init_tracing(args.log_format);
            cli::warn_unknown_env_vars();
            run_role(&args, Role::All).await
        }
        Command::Collector(args) => {
            init_tracing(args.log_format);
            cli::warn_unknown_env_vars();
            args.warn_ignored_flags(Role::Collector);
            run_role(&args, Role::Collector).await
        }
        Command::Query(args) => {
            init_tracing(args.log_format);
            cli::warn_unknown_env_vars();
            args.warn_ignored_flags(Role::Query);
            run_role(&args, Role::Query).await
        }
        Command::Proxy(args) => {
            init_tracing(args.log_format);
            cli::warn_unknown_env_vars();
            let config = args.proxy.into_config()?;
            Ok(meshtel_proxy::run(config, signal::shutdown_signal()).await?)
        }
        Command::Bench(bench) => {
            init_tracing(LogFormat::Text);
            bench::run(bench).await
        }
        Command::Quota(command) => {
            init_tracing(LogFormat::Text);
            quota_cli::run(command).await
        }
        Command::Rules(command) => rules_cli::run(command),
        Command::Blocks(command) => {
            init_tracing(LogFormat::Text);
            blocks_cli::run(command).await
        }
        Command::Demo(command) => {
            // The demo's guide and traffic lines are the output; logs only for trouble.
            init_tracing_with_default(command.run.server.log_format, "warn,h2=error,meshtel::demo=info");
            cli::warn_unknown_env_vars();
            demo::run(command).await
        }
    }
}
