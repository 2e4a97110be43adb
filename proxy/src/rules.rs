//! The traffic rules directory (`--rules DIR`): Istio `VirtualService` and
//! `DestinationRule` YAML, loaded with `meshtel_model::routing` and reloaded when any
//! file in it changes.
//!
//! A reload is all or nothing: the whole directory must load, or the last good rules
//! stay in force and the problems are logged (and shown under `last_error` in
//! `/config_dump`). Requests in flight keep the rules they started with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;

use meshtel_model::routing::RuleSet;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// What changed on disk is detected from the names, sizes and modification times of
/// the rule files.
type DirStamp = Vec<(String, u64, Option<SystemTime>)>;

/// Loads and reloads the rules directory.
#[derive(Debug)]
pub struct RulesWatcher {
    dir: PathBuf,
    /// The proxy's namespace: the rules it sees, and so warns about.
    namespace: String,
    stamp: crate::mesh::Settle<DirStamp>,
    /// Problems of the last rejected reload, cleared by a good one.
    pub last_error: Option<String>,
}

impl RulesWatcher {
    /// Loads `dir` once for a proxy in `namespace`; a proxy must start from good rules,
    /// so problems fail startup.
    pub fn start(dir: PathBuf, namespace: String) -> Result<(RulesWatcher, RuleSet)> {
        let seen = dir_stamp(&dir);
        let rules = RuleSet::load_dir(&dir).map_err(|source| Error::Rules { dir: dir.clone(), source })?;
        info!(
            dir = %dir.display(),
            virtual_services = rules.virtual_services.len(),
            destination_rules = rules.destination_rules.len(),
            "traffic rules loaded"
        );
        warn_shadowed(&rules, &namespace);
        Ok((RulesWatcher { dir, namespace, stamp: crate::mesh::Settle::new(seen), last_error: None }, rules))
    }

    /// The directory watched.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Reloads if a file changed (and stayed so since the poll before). `None`: nothing
    /// to read yet; `Some(Ok(rules))`: new rules to swap in; `Some(Err(()))`: the edit
    /// was rejected (logged, kept in [`RulesWatcher::last_error`]).
    pub fn poll_once(&mut self) -> Option<std::result::Result<Arc<RuleSet>, ()>> {
        if !self.stamp.settled(dir_stamp(&self.dir)) {
            return None;
        }
        match RuleSet::load_dir(&self.dir) {
            Ok(rules) => {
                info!(
                    dir = %self.dir.display(),
                    virtual_services = rules.virtual_services.len(),
                    destination_rules = rules.destination_rules.len(),
                    "traffic rules reloaded"
                );
                warn_shadowed(&rules, &self.namespace);
                self.last_error = None;
                Some(Ok(Arc::new(rules)))
            }
            Err(error) => {
                // The first problems, each with its path; a file of thousands (a
                // generated one gone wrong) must not fill the log.
                let problems = error.rule_problems();
                for problem in problems.iter().take(LOGGED_PROBLEMS) {
                    warn!(
                        source = %problem.source,
                        object = %problem.object,
                        field = %problem.field,
                        problem = %problem.message,
                        "traffic rules rejected, keeping the last good rules"
                    );
                }
                if problems.len() > LOGGED_PROBLEMS {
                    warn!(
                        more = problems.len() - LOGGED_PROBLEMS,
                        "traffic rules rejected: more problems not logged (`meshtel rules check` lists them all)"
                    );
                }
                self.last_error = Some(error.to_string());
                Some(Err(()))
            }
        }
    }
}

/// Problems of a rejected reload logged one by one; the rest are counted in one line.
const LOGGED_PROBLEMS: usize = 20;

/// A WARN for each rule an earlier one keeps from applying ([`RuleSet::shadowed`]), as
/// a proxy in `namespace` sees the rules.
fn warn_shadowed(rules: &RuleSet, namespace: &str) {
    let visible = rules.visible_from(namespace);
    for shadowed in visible.as_ref().unwrap_or(rules).shadowed() {
        warn!(rule = %shadowed, "traffic rule not applied");
    }
}

fn dir_stamp(dir: &Path) -> DirStamp {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut stamp: DirStamp = entries
        .filter_map(|entry| entry.ok())
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            // Through symlinks, as the rules are read: a Kubernetes ConfigMap mount is
            // made of them, and an update swaps the directory they lead to.
            let meta = std::fs::metadata(entry.path()).ok()?;
            meta.is_file().then(|| (name, meta.len(), meta.modified().ok()))
        })
        .collect();
    stamp.sort();
    stamp
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;

    fn virtual_service(host: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: {host}\nspec:\n  hosts: [{host}]\n  http:\n  - route:\n    - destination: {{host: {host}}}\n"
        )
    }

    /// A Kubernetes ConfigMap volume: `<name>` → `..data/<name>` → `..<version>/<name>`,
    /// updated by writing a new version directory and swapping `..data` to it.
    #[test]
    fn a_configmap_update_through_symlinks_is_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let version = |name: &str, host: &str| {
            std::fs::create_dir(root.join(name)).unwrap();
            std::fs::write(root.join(name).join("rules.yaml"), virtual_service(host)).unwrap();
        };
        version("..v1", "ratings");
        std::os::unix::fs::symlink("..v1", root.join("..data")).unwrap();
        std::os::unix::fs::symlink("..data/rules.yaml", root.join("rules.yaml")).unwrap();
        let (mut watcher, rules) = RulesWatcher::start(root.to_path_buf(), "default".into()).unwrap();
        assert_eq!(rules.virtual_services[0].name, "ratings");
        assert!(watcher.poll_once().is_none(), "nothing changed yet");

        version("..v2", "reviews");
        std::os::unix::fs::symlink("..v2", root.join("..data_tmp")).unwrap();
        std::fs::rename(root.join("..data_tmp"), root.join("..data")).unwrap();
        std::fs::remove_dir_all(root.join("..v1")).unwrap();
        assert!(watcher.poll_once().is_none(), "a change is read once it stays for a poll");
        let reloaded = watcher.poll_once().expect("the swap is a change").unwrap();
        assert_eq!(reloaded.virtual_services[0].name, "reviews");
    }
}
