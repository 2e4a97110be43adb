//! `meshtel quota ...`: the quota administration API (`/api/quotas`) from the shell.
//!
//! ```text
//!  list | get NAME | apply -f FILE | delete NAME | import FILE [--apply] | usage NAME | audit
//!        └──────────── HTTP (client.rs) ──► query service /api/quotas ──► SQL
//! ```
//!
//! `apply` validates every policy in the file first (nothing is written when one is
//! invalid), then for each: GET it, and PUT it with `If-None-Match: *` (created) or
//! `If-Match: "<version>"` (updated) unless it is unchanged, so a concurrent change is
//! reported instead of overwritten. `import --apply` also refuses, before writing
//! anything, to replace a stored policy of another origin: a limit of another
//! rate-limit domain, or a policy that is not a rate-limit one
//! ([`meshtel_model::quota::import::replace_conflict`]).

mod client;
mod render;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_model::quota::import::{import_any, replace_conflict};

use self::client::{AdminClient, PutCondition};

/// Quota policy administration.
#[derive(Debug, Subcommand)]
pub enum QuotaCommand {
    /// List the policies: name, match, limit, overrides, version, last writer.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print one policy as YAML (which `apply -f` takes back).
    Get {
        /// The policy's name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Create or update the policies of a YAML or JSON file: one policy, a list, or
    /// several YAML documents. Prints created, updated or unchanged for each.
    Apply {
        /// The file (`-` for standard input).
        #[arg(short = 'f', long = "filename")]
        file: PathBuf,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Delete a policy.
    Delete {
        /// The policy's name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Convert Istio memquota/redisquota or envoyproxy/ratelimit configuration into
    /// meshtel policies: print them as YAML, or apply them with --apply.
    Import {
        /// The file (`-` for standard input).
        file: PathBuf,
        /// Apply the converted policies instead of printing them.
        #[arg(long)]
        apply: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Live usage of a quota, busiest keys first (from a process running the quota
    /// engine: meshtel serve or collector).
    Usage {
        /// The policy's name.
        name: String,
        /// Most keys to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The audit log of policy changes, newest first.
    Audit {
        /// Only this policy's changes.
        #[arg(long)]
        name: Option<String>,
        /// Most entries to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
        #[command(flatten)]
        api: ApiArgs,
    },
}

/// Where the admin API is and who is calling.
#[derive(Debug, Clone, Args)]
pub struct ApiArgs {
    /// Base URL of the query service.
    #[arg(
        long,
        env = "MESHTEL_QUERY_URL",
        default_value = "http://127.0.0.1:16686"
    )]
    pub server: String,
    /// Admin bearer token (needed to write; printed by meshtel at first start).
    #[arg(long, env = "MESHTEL_ADMIN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Who is making the change, for the audit log.
    #[arg(long, env = "USER")]
    pub actor: Option<String>,
}

/// Runs one quota command.
pub async fn run(command: QuotaCommand) -> anyhow::Result<()> {
    match command {
        QuotaCommand::List { api } => {
            let policies = AdminClient::new(&api)?.list().await?;
            if policies.is_empty() {
                println!("no quota policies");
            } else {
                print!("{}", render::policies_table(&policies));
            }
        }
        QuotaCommand::Get { name, api } => {
            let Some(policy) = AdminClient::new(&api)?.get(&name).await? else {
                anyhow::bail!("quota policy {name:?} not found");
            };
            print!("{}", render::policy_to_yaml(&policy)?);
        }
        QuotaCommand::Apply { file, api } => {
            let specs = render::parse_policies(&read_input(&file)?)
                .with_context(|| format!("reading {}", file.display()))?;
            apply(&AdminClient::new(&api)?, specs, Origin::File).await?;
        }
        QuotaCommand::Delete { name, api } => {
            AdminClient::new(&api)?.delete(&name).await?;
            println!("{name} deleted");
        }
        QuotaCommand::Import {
            file,
            apply: write,
            api,
        } => {
            let specs = import_any(&read_input(&file)?)
                .with_context(|| format!("importing {}", file.display()))?;
            if write {
                apply(&AdminClient::new(&api)?, specs, Origin::Import).await?;
            } else {
                print!("{}", render::specs_to_yaml(&specs)?);
            }
        }
        QuotaCommand::Usage { name, limit, api } => {
            let usage = AdminClient::new(&api)?.usage(&name, limit.max(1)).await?;
            print!("{}", render::usage_table(&usage));
        }
        QuotaCommand::Audit { name, limit, api } => {
            let entries = AdminClient::new(&api)?
                .audit(name.as_deref(), limit.max(1))
                .await?;
            if entries.is_empty() {
                println!("no changes recorded");
            } else {
                print!("{}", render::audit_table(&entries));
            }
        }
    }
    Ok(())
}

/// A file's text, or standard input for `-`.
fn read_input(path: &Path) -> anyhow::Result<String> {
    if path.as_os_str() == "-" {
        return std::io::read_to_string(std::io::stdin()).context("reading standard input");
    }
    std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))
}

/// Where the policies `apply` writes come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Origin {
    /// `quota apply -f`: the user's own policies, which may replace anything.
    File,
    /// `quota import --apply`: converted configuration, which must not replace a
    /// policy of another origin.
    Import,
}

/// Validates every policy and reads what is stored under their names; an import is
/// refused (nothing written) when it would replace a policy of another origin. Then
/// writes each one that differs from what is stored.
async fn apply(
    client: &AdminClient,
    specs: Vec<QuotaPolicySpec>,
    origin: Origin,
) -> anyhow::Result<()> {
    if specs.is_empty() {
        anyhow::bail!("no quota policies in the input");
    }
    render::validate_all(&specs)?;
    let mut stored = Vec::with_capacity(specs.len());
    for spec in &specs {
        stored.push(client.get(&spec.name).await?);
    }
    if origin == Origin::Import {
        let conflicts: Vec<String> = specs
            .iter()
            .zip(&stored)
            .filter_map(|(spec, current)| replace_conflict(&current.as_ref()?.spec, spec))
            .collect();
        if !conflicts.is_empty() {
            anyhow::bail!(
                "nothing applied: the import would replace policies it did not write:\n  {}",
                conflicts.join("\n  ")
            );
        }
    }
    for (spec, current) in specs.into_iter().zip(stored) {
        let outcome = match current {
            None => {
                client.put(&spec, PutCondition::Create).await?;
                "created".to_string()
            }
            Some(current) if current.spec == spec => "unchanged".to_string(),
            Some(current) => {
                let stored = client
                    .put(&spec, PutCondition::Replace(current.version))
                    .await?;
                format!("updated (version {})", stored.version)
            }
        };
        println!("{} {outcome}", spec.name);
    }
    Ok(())
}
