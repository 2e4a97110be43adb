//! `meshtel bench`: load generators to point at any deployment.
//!
//! - `ingest` ([`ingest`]): OTLP/gRPC export load of realistic traces (or the storage
//!   benchmark's "tempo" shape); acknowledged spans/s, errors by gRPC code, latency
//!   percentiles.
//! - `search` ([`search`]): a mix of Jaeger query API requests discovered from the
//!   data; per kind count, errors and latency percentiles.
//! - `freshness` ([`freshness`]): time from an export's acknowledgement until the
//!   trace can be fetched by id.
//!
//! Each prints progress on stderr and a summary; with `--json` the summary is one JSON
//! line on stdout. `benches/e2e.sh` drives all three against a local `meshtel serve`.

mod freshness;
mod ingest;
mod otlp_client;
pub mod quota;
mod report;
mod search;
mod shape;
mod template;

use clap::Subcommand;

pub use freshness::FreshnessArgs;
pub use ingest::IngestArgs;
pub use search::SearchArgs;

/// Benchmarks to run against a deployment.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// OTLP/gRPC ingest load; prints acknowledged spans/s and latency percentiles.
    Ingest(IngestArgs),
    /// A mix of Jaeger searches and trace fetches; prints p50/p95/p99.
    Search(SearchArgs),
    /// Time from an OTLP acknowledgement until the trace is found by id.
    Freshness(FreshnessArgs),
    /// Quota Checks over gRPC, against a server in process or a running collector.
    Quota(quota::QuotaArgs),
}

/// Runs one benchmark.
pub async fn run(command: BenchCommand) -> anyhow::Result<()> {
    match command {
        BenchCommand::Ingest(args) => ingest::run(args).await,
        BenchCommand::Search(args) => search::run(args).await,
        BenchCommand::Freshness(args) => freshness::run(args).await,
        BenchCommand::Quota(args) => quota::run(args).await,
    }
}
