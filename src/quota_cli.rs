//! `meshtel quota ...`: the quota administration API (`/api/quotas`) from the shell.
//!
//! ```text
//!  list | get NAME | apply -f FILE | delete NAME | import FILE [--apply] | usage NAME | audit
//!        └──────────── HTTP (client.rs) ──► query service /api/quotas ──► SQL
//! ```
//!
//! `apply` validates every policy in the file first, then reads every stored policy
//! and refuses, printing every problem and writing nothing, a file that names a policy
//! twice or that would leave two policies on the same rate-limit descriptors (two of
//! the file, or one of the file and a stored one it leaves in place: the rule the
//! server applies to each write, [`QuotaPolicySpec::descriptor_conflict`]).
//! `import --apply` also refuses to replace a stored policy of another origin: a
//! limit of another rate-limit domain, or a policy that is not a rate-limit one
//! ([`meshtel_model::quota::import::replace_conflict`]). Then it checks the token
//! (`GET /api/admin/token`), also when nothing needs writing, and PUTs each policy
//! that differs with `If-None-Match: *` (created) or `If-Match: "<version>"`
//! (updated), so a concurrent change is reported instead of overwritten. A write that
//! fails midway says which policies were applied and which were not.

mod client;
mod render;

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};
use meshtel_model::quota::QuotaPolicySpec;
use meshtel_model::quota::import::{import_any, replace_conflict};
use meshtel_query::quotas::PolicyJson;

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
    /// Live usage of a quota, busiest keys first (from `meshtel serve`, which runs the
    /// quota engine behind its query port; a split `meshtel collector` counts its
    /// decisions in meshtel_quota_checks_total on its /metrics instead).
    Usage {
        /// The policy's name.
        name: String,
        /// Most keys to show, 1 to 10,000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=10_000))]
        limit: u16,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// The audit log of policy changes, newest first.
    Audit {
        /// Only this policy's changes.
        #[arg(long)]
        name: Option<String>,
        /// Most entries to show, 1 to 1,000.
        #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u16).range(1..=1_000))]
        limit: u16,
        /// Only entries older than the one with this ID: the next page after a listing
        /// whose last row had it.
        #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
        before: Option<u64>,
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
            let usage = AdminClient::new(&api)?.usage(&name, usize::from(limit)).await?;
            print!("{}", render::usage_table(&usage));
        }
        QuotaCommand::Audit {
            name,
            limit,
            before,
            api,
        } => {
            let entries = AdminClient::new(&api)?
                .audit(name.as_deref(), before, usize::from(limit))
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

/// Validates every policy, then checks the file against itself and against every
/// stored policy (nothing is written when a check fails, and every problem is
/// printed), checks the token, and writes each policy that differs from what is
/// stored, in an order the server accepts.
async fn apply(
    client: &AdminClient,
    specs: Vec<QuotaPolicySpec>,
    origin: Origin,
) -> anyhow::Result<()> {
    if specs.is_empty() {
        anyhow::bail!("no quota policies in the input");
    }
    render::validate_all(&specs)?;
    let stored = client.list().await?;
    let mut problems = conflicts(&specs, &stored, origin);
    let order = match write_order(&specs, &stored) {
        Ok(order) => order,
        Err(problem) => {
            problems.push(problem);
            Vec::new()
        }
    };
    if !problems.is_empty() {
        anyhow::bail!("nothing applied:\n  {}", problems.join("\n  "));
    }
    // Also when nothing needs writing: "unchanged" must not vouch for a wrong token.
    client
        .check_write_token()
        .await
        .context("nothing applied")?;

    let mut done: Vec<&str> = Vec::with_capacity(order.len());
    for (position, &i) in order.iter().enumerate() {
        let spec = &specs[i];
        match write_one(client, spec, stored_named(&stored, &spec.name)).await {
            Ok(outcome) => {
                println!("{} {outcome}", spec.name);
                done.push(&spec.name);
            }
            Err(error) => {
                let left: Vec<&str> = order[position + 1..]
                    .iter()
                    .map(|&j| specs[j].name.as_str())
                    .collect();
                return Err(error.context(format!(
                    "stopped at {:?}, which may or may not have been written (see `meshtel \
                     quota get {}`); applied: {}; not applied: {}",
                    spec.name,
                    spec.name,
                    list_or_none(&done),
                    list_or_none(&left)
                )));
            }
        }
    }
    Ok(())
}

fn list_or_none(names: &[&str]) -> String {
    if names.is_empty() {
        "none".into()
    } else {
        names.join(", ")
    }
}

fn stored_named<'a>(stored: &'a [PolicyJson], name: &str) -> Option<&'a PolicyJson> {
    stored.iter().find(|p| p.spec.name == name)
}

/// Writes one policy unless it is stored as it is; says what happened.
async fn write_one(
    client: &AdminClient,
    spec: &QuotaPolicySpec,
    current: Option<&PolicyJson>,
) -> anyhow::Result<String> {
    Ok(match current {
        None => {
            client.put(spec, PutCondition::Create).await?;
            "created".to_string()
        }
        Some(current) if current.spec == *spec => "unchanged".to_string(),
        Some(current) => {
            let stored = client
                .put(spec, PutCondition::Replace(current.version))
                .await?;
            format!("updated (version {})", stored.version)
        }
    })
}

/// What the server would refuse, or an import must not do, once the file is applied:
/// a name given twice; two policies of the file for the same rate-limit descriptors;
/// a stored policy the file leaves in place holding the descriptors of one of the
/// file's ([`QuotaPolicySpec::descriptor_conflict`], the rule the admin API applies to
/// each write); for an import, a stored policy of another origin it would replace
/// ([`replace_conflict`]).
fn conflicts(specs: &[QuotaPolicySpec], stored: &[PolicyJson], origin: Origin) -> Vec<String> {
    let mut problems = Vec::new();
    for (i, spec) in specs.iter().enumerate() {
        if specs[..i].iter().any(|s| s.name == spec.name) {
            problems.push(format!(
                "policy {:?} is given twice in the input",
                spec.name
            ));
            continue;
        }
        if let (Some(rl), Some(first)) = (&spec.rate_limit, spec.descriptor_conflict(&specs[..i])) {
            problems.push(format!(
                "policies {:?} and {:?} of the input limit the same descriptors in domain {:?}: \
                 only one of them could ever apply",
                first.name, spec.name, rl.domain
            ));
        }
    }
    let replaced = |name: &str| specs.iter().any(|s| s.name == name);
    let kept = stored
        .iter()
        .map(|p| &p.spec)
        .filter(|p| !replaced(&p.name));
    for spec in specs {
        if let (Some(rl), Some(other)) = (&spec.rate_limit, spec.descriptor_conflict(kept.clone()))
        {
            problems.push(format!(
                "policy {:?}: stored policy {:?} already limits these descriptors in domain \
                 {:?}: edit it (or give it other descriptors in this input), or delete it first",
                spec.name, other.name, rl.domain
            ));
        }
        if origin == Origin::Import
            && let Some(current) = stored_named(stored, &spec.name)
            && let Some(conflict) = replace_conflict(&current.spec, spec)
        {
            problems.push(format!(
                "the import would replace a policy it did not write: {conflict}"
            ));
        }
    }
    problems
}

/// Indices of `specs` in file order, except that a policy taking over rate-limit
/// descriptors from a stored policy the input also rewrites comes after it: the
/// server refuses each write that would leave two policies on the same descriptors.
/// An error when two policies of the input swap descriptors, which no order allows.
fn write_order(specs: &[QuotaPolicySpec], stored: &[PolicyJson]) -> Result<Vec<usize>, String> {
    // blockers[i]: the policies whose stored version holds the descriptors specs[i] wants.
    let blockers: Vec<Vec<usize>> = specs
        .iter()
        .map(|spec| {
            specs
                .iter()
                .enumerate()
                .filter(|(_, other)| {
                    stored_named(stored, &other.name).is_some_and(|current| {
                        current.spec != **other
                            && spec
                                .descriptor_conflict(std::iter::once(&current.spec))
                                .is_some()
                    })
                })
                .map(|(j, _)| j)
                .collect()
        })
        .collect();
    let mut order = Vec::with_capacity(specs.len());
    let mut placed = vec![false; specs.len()];
    while order.len() < specs.len() {
        let next = (0..specs.len())
            .find(|&i| !placed[i] && blockers[i].iter().all(|&j| placed[j] || j == i));
        let Some(next) = next else {
            let stuck: Vec<&str> = (0..specs.len())
                .filter(|&i| !placed[i])
                .map(|i| specs[i].name.as_str())
                .collect();
            return Err(format!(
                "policies {} trade rate-limit descriptors with one another: the server \
                 refuses every write that leaves two policies on the same descriptors, so \
                 apply one of them with other descriptors first",
                stuck.join(", ")
            ));
        };
        placed[next] = true;
        order.push(next);
    }
    Ok(order)
}
