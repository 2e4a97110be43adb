//! Importers: Istio memquota/redisquota configuration and envoyproxy/ratelimit
//! configuration, turned into [`QuotaPolicySpec`]s.

use super::policy::QuotaPolicySpec;

/// Why a configuration could not be imported.
#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    /// The input is not what the importer understands; the message says where.
    #[error("{0}")]
    Invalid(String),
}

/// Imports Istio `handler` (memquota or redisquota), `instance` (quota template),
/// `rule`, `QuotaSpec` and `QuotaSpecBinding` documents (multi-document YAML).
pub fn import_istio(yaml: &str) -> Result<Vec<QuotaPolicySpec>, ImportError> {
    let _ = yaml;
    Err(ImportError::Invalid("the Istio importer is being built".into()))
}

/// Imports an envoyproxy/ratelimit configuration file (`domain` + `descriptors`).
pub fn import_envoy_ratelimit(yaml: &str) -> Result<Vec<QuotaPolicySpec>, ImportError> {
    let _ = yaml;
    Err(ImportError::Invalid("the envoy ratelimit importer is being built".into()))
}

/// Detects the format (Istio documents have `kind`, envoy ratelimit has `domain`) and
/// imports.
pub fn import_any(yaml: &str) -> Result<Vec<QuotaPolicySpec>, ImportError> {
    if yaml.lines().any(|l| l.trim_start().starts_with("domain:")) {
        import_envoy_ratelimit(yaml)
    } else {
        import_istio(yaml)
    }
}
