//! What each rule does, in words (`meshtel rules check`).

use super::RuleSet;

impl RuleSet {
    /// A human-readable account of every rule, one block per object.
    pub fn explain(&self) -> String {
        String::new()
    }
}
