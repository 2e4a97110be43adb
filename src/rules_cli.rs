//! `meshtel rules check DIR|FILE...`: loads traffic rules exactly as the proxy does,
//! prints every problem (file, object, field, what is wrong) or what each rule does.

use std::path::PathBuf;

use meshtel_model::routing::RuleSet;

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
        RulesCommand::Check { paths } => check(&paths),
    }
}

/// Loads `paths` as one rule set (directories as the proxy reads them, files in the
/// order given). Good rules: their explanation and a summary on stdout. Bad rules:
/// every problem on its own line on stderr (`file#doc: Kind ns/name: field: message`),
/// then exit status 1.
fn check(paths: &[PathBuf]) -> anyhow::Result<()> {
    match RuleSet::load_paths(paths) {
        Ok(rules) => {
            if rules.is_empty() {
                eprintln!("note: no VirtualService or DestinationRule found in the files given");
            } else {
                println!("{}", rules.explain());
            }
            println!("{}: OK", summary(&rules));
            Ok(())
        }
        Err(error) => {
            for problem in error.rule_problems() {
                eprintln!("{problem}");
            }
            let count = error.rule_problems().len();
            eprintln!(
                "{count} {}; the rules were not loaded",
                plural(count, "problem", "problems")
            );
            // The problems are the whole report: no `Error:` line, no backtrace.
            std::process::exit(1);
        }
    }
}

/// `2 virtual services, 1 destination rule`.
fn summary(rules: &RuleSet) -> String {
    let services = rules.virtual_services.len();
    let destination_rules = rules.destination_rules.len();
    format!(
        "{services} {}, {destination_rules} {}",
        plural(services, "virtual service", "virtual services"),
        plural(destination_rules, "destination rule", "destination rules")
    )
}

fn plural<'a>(count: usize, one: &'a str, many: &'a str) -> &'a str {
    if count == 1 { one } else { many }
}
