//! Reading rule documents: multi-document YAML (or JSON) files → [`RuleSet`], every
//! problem collected with its file, object and field path.

use std::fmt;
use std::path::Path;

use serde::Serialize;

use super::RuleSet;

/// One problem in the rule documents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleProblem {
    /// `file#document` (document numbers from 1).
    pub source: String,
    /// `VirtualService default/reviews`, or `document` when the kind is unknown.
    pub object: String,
    /// Field path, e.g. `spec.http[0].corsPolicy`.
    pub field: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for RuleProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}: {}: {}", self.source, self.object, self.field, self.message)
    }
}

/// The rules could not be loaded; nothing of them is in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{} problem(s) in the rules: {}", problems.len(), problems.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "))]
pub struct LoadError {
    /// Every problem found.
    pub problems: Vec<RuleProblem>,
}

impl RuleSet {
    /// Loads every `*.yaml`, `*.yml` and `*.json` file of `dir` (not recursing), in file
    /// name order.
    pub fn load_dir(dir: &Path) -> Result<RuleSet, LoadError> {
        let _ = dir;
        Ok(RuleSet::default())
    }

    /// Loads `(name, text)` pairs, in order, as one rule set.
    pub fn from_sources(sources: &[(String, String)]) -> Result<RuleSet, LoadError> {
        let _ = sources;
        Ok(RuleSet::default())
    }
}
