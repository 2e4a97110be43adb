//! `meshtel`: one binary, several roles. Parses the command line, sets up logging and
//! hands over to the role.

mod bench;
mod cli;
mod config;
mod demo;
mod http_server;
mod metrics;
mod quota_cli;
mod rules_cli;
mod server;
mod signal;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use cli::{Cli, Command};

/// mimalloc: less fragmentation than glibc's allocator under many threads building and
/// dropping Arrow batches, so the collector's resident memory tracks what it holds.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use server::Role;

/// Colours only on a terminal (and not under NO_COLOR): a log file, a pipe, journald
/// or `kubectl logs` get plain text that grep finds.
fn colour_logs() -> bool {
    std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
}

fn init_tracing(format: &str) {
    init_tracing_with_default(format, "info");
}

/// As [`init_tracing`], with `default_filter` when RUST_LOG is not set.
fn init_tracing_with_default(format: &str, default_filter: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour_logs());
    if format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => {
            init_tracing(&args.log_format);
            server::run(args.resolve()?, Role::All).await
        }
        Command::Collector(args) => {
            init_tracing(&args.log_format);
            server::run(args.resolve()?, Role::Collector).await
        }
        Command::Query(args) => {
            init_tracing(&args.log_format);
            server::run(args.resolve()?, Role::Query).await
        }
        Command::Proxy(args) => {
            init_tracing(&args.log_format);
            let config = args.proxy.into_config()?;
            Ok(meshtel_proxy::run(config, signal::shutdown_signal()).await?)
        }
        Command::Bench(bench) => {
            init_tracing("text");
            bench::run(bench).await
        }
        Command::Quota(command) => {
            init_tracing("text");
            quota_cli::run(command).await
        }
        Command::Rules(command) => rules_cli::run(command),
        Command::Demo(command) => {
            // The demo's guide and traffic lines are the output; logs only for trouble.
            init_tracing_with_default(&command.run.server.log_format, "warn,meshtel::demo=info");
            demo::run(command).await
        }
    }
}
