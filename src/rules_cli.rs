//! `meshtel rules check DIR|FILE...`: loads traffic rules exactly as the proxy does,
//! prints every problem (file, object, field, what is wrong) or what each rule does.

use std::path::PathBuf;

/// `meshtel rules ...`.
#[derive(Debug, clap::Subcommand)]
pub enum RulesCommand {
    /// Validate rule files (a directory, as `meshtel proxy --rules` reads it, or files)
    /// and explain what each rule does; exits 1 when anything is wrong.
    Check {
        /// A rules directory or individual YAML/JSON files.
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
}

/// Runs a `rules` subcommand.
pub fn run(command: RulesCommand) -> anyhow::Result<()> {
    match command {
        RulesCommand::Check { paths } => {
            let _ = paths;
            anyhow::bail!("meshtel rules check is not built yet")
        }
    }
}
