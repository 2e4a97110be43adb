//! `meshtel bench quota`: quota decision and Check latency figures.

use clap::Args;

/// Quota benchmark settings.
#[derive(Debug, Args)]
pub struct QuotaArgs {}

/// Runs the quota benchmark.
pub async fn run(_args: QuotaArgs) -> anyhow::Result<()> {
    anyhow::bail!("meshtel bench quota is being built")
}
