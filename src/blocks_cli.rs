//! `meshtel blocks`: maintenance of a stopped store's blocks.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

/// `meshtel blocks ...`.
#[derive(Debug, Subcommand)]
pub enum BlocksCommand {
    /// Put the blocks startup set aside in blocks/orphaned/ (not named by the index:
    /// after meshtel.db was restored from a backup or lost, or after a blocks volume
    /// came back late) back into the index, searchable again. Run it with meshtel
    /// stopped; a file that does not read stays where it is, and the exit status is 1.
    Adopt {
        /// The data directory
        #[arg(long, env = "MESHTEL_DATA_DIR", default_value = "./meshtel-data")]
        data_dir: PathBuf,
    },
    /// Take the blocks the index lists but whose files are gone out of the index (a
    /// lost blocks volume, files deleted by hand), so that meshtel starts without
    /// them: it refuses to when none of the listed blocks is there, taking the volume
    /// for unmounted. Their spans are lost. Run it with meshtel stopped.
    ForgetMissing {
        /// The data directory
        #[arg(long, env = "MESHTEL_DATA_DIR", default_value = "./meshtel-data")]
        data_dir: PathBuf,
    },
}

/// Runs a `blocks` subcommand.
pub async fn run(command: BlocksCommand) -> anyhow::Result<()> {
    match command {
        BlocksCommand::ForgetMissing { data_dir } => {
            let forgotten = meshtel_store::adopt::forget_missing_blocks(&data_dir)
                .await
                .with_context(|| {
                    format!("forgetting the missing blocks of {}", data_dir.display())
                })?;
            println!(
                "took {} missing block{} out of the index of {}",
                forgotten.len(),
                if forgotten.len() == 1 { "" } else { "s" },
                data_dir.display()
            );
            for name in &forgotten {
                println!("  {name}");
            }
            Ok(())
        }
        BlocksCommand::Adopt { data_dir } => {
            let adopted = meshtel_store::adopt::adopt_orphaned_blocks(&data_dir)
                .await
                .with_context(|| {
                    format!("adopting the orphaned blocks of {}", data_dir.display())
                })?;
            println!(
                "adopted {} block{} ({} spans) from {}",
                adopted.blocks.len(),
                if adopted.blocks.len() == 1 { "" } else { "s" },
                adopted.spans,
                data_dir.join("blocks/orphaned").display()
            );
            for (path, why) in &adopted.unreadable {
                println!("left in place, does not read: {} ({why})", path.display());
            }
            match adopted.unreadable.len() {
                0 => Ok(()),
                n => anyhow::bail!(
                    "{n} file{} in blocks/orphaned/ could not be adopted (listed above)",
                    if n == 1 { "" } else { "s" }
                ),
            }
        }
    }
}
