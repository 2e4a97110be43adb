//! `meshtel-proxy`: the sidecar on its own, without the store or DataFusion.
//!
//! Parse flags, set up logging, bind, serve until SIGINT/SIGTERM, drain.

use clap::{CommandFactory, Parser, ValueEnum};

/// mimalloc: hyper's per-connection 8 KiB read buffers are reallocated on every
/// request, which glibc serves from its slow bins (8 % fewer instructions per request
/// with mimalloc; idle RSS the same).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;
use tracing_subscriber::EnvFilter;

/// meshtel's sidecar proxy: forwards a service instance's traffic and reports every
/// request to the collector.
#[derive(Debug, Parser)]
// `--version` is the instance's version label, so clap's own version flag is off;
// the build's version is `-V` / `--build-version`.
#[command(name = "meshtel-proxy", version, disable_version_flag = true)]
struct Cli {
    #[command(flatten)]
    proxy: meshtel_proxy::ProxyArgs,
    /// Print meshtel-proxy's own version and exit (--version is this instance's version label)
    #[arg(short = 'V', long = "build-version", action = clap::ArgAction::Version)]
    build_version: Option<bool>,
    /// Log format: text, or json (one JSON object per line).
    #[arg(long, env = "MESHTEL_PROXY_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// `MESHTEL_PROXY_*` variables that no flag reads: most likely a misspelt name, whose
/// setting would otherwise be ignored without a word.
fn unknown_proxy_env_vars(names: impl Iterator<Item = String>) -> Vec<String> {
    let command = Cli::command();
    let known: Vec<String> =
        command.get_arguments().filter_map(|a| a.get_env()).filter_map(|e| e.to_str()).map(str::to_owned).collect();
    let mut unknown: Vec<String> = names.filter(|n| n.starts_with("MESHTEL_PROXY_") && !known.contains(n)).collect();
    unknown.sort();
    unknown
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let rust_log = std::env::var(EnvFilter::DEFAULT_ENV).ok().filter(|v| !v.trim().is_empty());
    let (filter, refused) = match rust_log.as_deref().map(EnvFilter::try_new) {
        Some(Ok(filter)) => (filter, None),
        Some(Err(error)) => (EnvFilter::new(meshtel_proxy::log_format::DEFAULT_LOG_FILTER), Some(error)),
        None => (EnvFilter::new(meshtel_proxy::log_format::DEFAULT_LOG_FILTER), None),
    };
    // Colours only on a terminal (and not under NO_COLOR): a log file, a pipe,
    // journald or `kubectl logs` get plain text that grep finds.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let logs = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(colour);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.fmt_fields(meshtel_proxy::log_format::escaped_fields()).init(),
    }
    if let Some(error) = refused {
        tracing::warn!(value = rust_log.as_deref().unwrap_or_default(), error = %error, "RUST_LOG is not a valid filter; using the default (info)");
    }
    for variable in unknown_proxy_env_vars(std::env::vars_os().filter_map(|(name, _)| name.into_string().ok())) {
        tracing::warn!(variable, "environment variable ignored: no setting has this name (see --help for each flag's variable)");
    }
    let result = async {
        let config = cli.proxy.into_config()?;
        let first = meshtel_proxy::signal::shutdown_signal();
        let shutdown = async move {
            first.await;
            // Ctrl-C again (or a second SIGTERM) stops at once, as `meshtel serve` does,
            // without waiting out the drain.
            let second = meshtel_proxy::signal::shutdown_signal();
            tokio::spawn(async move {
                second.await;
                tracing::warn!("second signal: stopping now, without waiting for requests in flight");
                std::process::exit(130);
            });
        };
        meshtel_proxy::run(config, shutdown).await
    }
    .await;
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(error = %error_chain(&error), "proxy failed");
            std::process::ExitCode::FAILURE
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn misspelt_proxy_variables_are_found_and_known_ones_are_not() {
        let names = ["MESHTEL_PROXY_SAMPLNG", "MESHTEL_PROXY_SAMPLING", "MESHTEL_PROXY_LOG_FORMAT", "MESHTEL_DATA_DIR", "PATH"];
        assert_eq!(unknown_proxy_env_vars(names.into_iter().map(String::from)), ["MESHTEL_PROXY_SAMPLNG"]);
    }

    #[test]
    fn the_log_format_is_text_or_json_and_nothing_else() {
        let parse = |format: &str| Cli::try_parse_from(["meshtel-proxy", "--mesh", "mesh.yaml", "--service", "reviews", "--log-format", format]);
        assert_eq!(parse("json").map(|cli| cli.log_format).ok(), Some(LogFormat::Json));
        let version = Cli::try_parse_from(["meshtel-proxy", "--build-version"]).err().map(|e| e.kind());
        assert_eq!(version, Some(clap::error::ErrorKind::DisplayVersion), "--build-version prints the build's version");
        for refused in ["yaml", "JSON"] {
            let error = parse(refused).err().map(|e| e.kind());
            assert_eq!(error, Some(clap::error::ErrorKind::InvalidValue), "--log-format {refused}");
        }
    }
}
