//! `meshtel quota ...`: the quota administration API (`/api/quotas`) from the shell.

use clap::Subcommand;

/// Quota policy administration.
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// List the policies.
    List,
}

/// Runs one quota command.
pub async fn run(command: QuotaCommand) -> anyhow::Result<()> {
    match command {
        QuotaCommand::List => anyhow::bail!("meshtel quota list is being built"),
    }
}
