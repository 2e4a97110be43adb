//! `meshtel bench`: load generators (see `bench/ingest.rs`, `bench/search.rs`).

use clap::Subcommand;

/// Benchmarks to run against a deployment.
#[derive(Debug, Subcommand)]
pub enum BenchCommand {
    /// OTLP/gRPC ingest load; prints acknowledged spans/s and latency percentiles.
    Ingest,
    /// A mix of Jaeger searches and trace fetches; prints p50/p95/p99.
    Search,
}

/// Runs one benchmark.
pub async fn run(_command: BenchCommand) -> anyhow::Result<()> {
    anyhow::bail!("not built yet")
}
