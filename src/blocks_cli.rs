//! `meshtel blocks`: maintenance of a stopped store's blocks.

use std::path::PathBuf;

use anyhow::Context;
use clap::{Args, Subcommand};

/// Where the store is: as `serve` finds it, so that a data directory set only in the
/// config file is the one these commands work on.
#[derive(Debug, Args)]
pub struct StoreDirArgs {
    /// TOML config file whose data_dir to use (a --data-dir or MESHTEL_DATA_DIR wins)
    #[arg(long, env = "MESHTEL_CONFIG")]
    config: Option<PathBuf>,
    /// The data directory [default: the config file's data_dir, else ./meshtel-data]
    #[arg(long, env = "MESHTEL_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

impl StoreDirArgs {
    fn resolve(self) -> anyhow::Result<PathBuf> {
        let dir = match self.data_dir {
            Some(dir) => dir,
            None => crate::config::Config::load(self.config.as_deref())?.data_dir,
        };
        if dir.as_os_str().is_empty() {
            anyhow::bail!("the data directory is empty: name it with --data-dir, or data_dir in the config file");
        }
        Ok(dir)
    }
}

/// `meshtel blocks ...`.
#[derive(Debug, Subcommand)]
pub enum BlocksCommand {
    /// Put the blocks startup set aside in blocks/orphaned/ (not named by the index:
    /// after meshtel.db was restored from a backup or lost, or after a blocks volume
    /// came back late) back into the index, searchable again. Run it with meshtel
    /// stopped; a file that does not read stays where it is, and the exit status is 1.
    Adopt {
        #[command(flatten)]
        store: StoreDirArgs,
    },
    /// Take the blocks the index lists but whose files are gone out of the index (a
    /// lost blocks volume, files deleted by hand), so that meshtel starts without
    /// them: it refuses to when none of the listed blocks is there, taking the volume
    /// for unmounted. Their spans are lost. Run it with meshtel stopped.
    ForgetMissing {
        #[command(flatten)]
        store: StoreDirArgs,
    },
}

/// Runs a `blocks` subcommand.
pub async fn run(command: BlocksCommand) -> anyhow::Result<()> {
    match command {
        BlocksCommand::ForgetMissing { store } => {
            let data_dir = store.resolve()?;
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
        BlocksCommand::Adopt { store } => {
            let data_dir = store.resolve()?;
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
