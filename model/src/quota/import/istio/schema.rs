//! The `spec` of each mixer object, as serde structs that reject unknown fields (as
//! Istio's validation does).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde::de::IgnoredAny;
use yaml_serde::Value;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct HandlerSpec {
    #[serde(default)]
    pub compiled_adapter: Option<String>,
    #[serde(default)]
    pub adapter: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default, rename = "connection")]
    _connection: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct InstanceSpec {
    #[serde(default)]
    pub compiled_template: Option<String>,
    #[serde(default)]
    pub template: Option<String>,
    #[serde(default)]
    pub params: Option<Value>,
    #[serde(default, rename = "attributeBindings")]
    _attribute_bindings: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaTemplateParams {
    #[serde(default)]
    pub dimensions: BTreeMap<String, Value>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct RuleSpec {
    #[serde(default, rename = "match")]
    pub match_text: Option<String>,
    #[serde(default)]
    pub actions: Vec<ActionSpec>,
    #[serde(default, rename = "requestHeaderOperations")]
    _request_header_operations: Option<IgnoredAny>,
    #[serde(default, rename = "responseHeaderOperations")]
    _response_header_operations: Option<IgnoredAny>,
    #[serde(default, rename = "sampling")]
    _sampling: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ActionSpec {
    pub handler: String,
    #[serde(default)]
    pub instances: Vec<String>,
    #[serde(default, rename = "name")]
    _name: Option<IgnoredAny>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaSpecSpec {
    #[serde(default)]
    pub rules: Vec<QuotaRuleSpec>,
}

/// `QuotaRule`: any of `match` (each all of its clauses) ⇒ charge `quotas`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaRuleSpec {
    #[serde(default, rename = "match")]
    pub matches: Vec<AttributeMatchSpec>,
    #[serde(default)]
    pub quotas: Vec<QuotaChargeSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AttributeMatchSpec {
    #[serde(default)]
    pub clause: BTreeMap<String, StringMatchSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StringMatchSpec {
    #[serde(default)]
    pub exact: Option<String>,
    #[serde(default)]
    pub prefix: Option<String>,
    #[serde(default)]
    pub regex: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaChargeSpec {
    pub quota: String,
    #[serde(default)]
    pub charge: Option<i64>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(super) struct BindingSpec {
    #[serde(default)]
    pub services: Vec<IstioService>,
    #[serde(default)]
    pub quota_specs: Vec<SpecRef>,
}

/// `IstioService`: a service by name (+ namespace, domain), by FQDN, or `*`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct IstioService {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub domain: String,
    #[serde(default)]
    pub service: String,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SpecRef {
    pub name: String,
    #[serde(default)]
    pub namespace: Option<String>,
}
