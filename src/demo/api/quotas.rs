//! Waiting until the proxies hold the quota policies a switch put in place, or no
//! longer hold those it deleted, whatever policies of the user's own are stored beside
//! them.
//!
//! Every poll reads `GET /api/quotas`, keeps the policies that compile (the collector
//! pushes no others) and, with the proxy's own filter ([`PolicySet::new`] over the
//! proxy's destination), works out by name which of them can match at each proxy. A
//! proxy is done when the names its `/config_dump` shows (`quota_policies.names`, what
//! its request path holds) are exactly those.
//!
//! ```text
//!  GET /api/quotas ──► compile ──► per proxy: PolicySet::new(.., destination) ──► names
//!  GET <admin>/config_dump ──► quota_policies.names ──────────────────────────► same set?
//! ```

use std::net::SocketAddr;

use anyhow::{Context, bail};
use meshtel_model::quota::{QuotaAttributes, QuotaPolicy, QuotaPolicySpec};
use meshtel_proxy::mesh::{CLUSTER_DOMAIN, WorkloadIdentity};
use meshtel_proxy::quota::{PolicySet, destination_attributes};
use serde_json::Value;

/// The namespace of every demo instance (the demo's mesh file names none).
const NAMESPACE: &str = "default";

/// Fields of `GET /api/quotas` entries that are not part of a policy's spec.
const READ_ONLY_FIELDS: [&str; 3] = ["version", "updatedAt", "updatedBy"];

/// One proxy of the demo, as its quota stage sees itself.
#[derive(Debug, Clone)]
pub struct ProxyDestination {
    /// Its workload, e.g. `ratings-v1`.
    pub workload: String,
    /// The attributes its inbound side checks policies against.
    pub destination: QuotaAttributes,
}

impl ProxyDestination {
    /// From the `source_labels` (`app`, `version`) of the proxy's `/config_dump`.
    pub fn from_config_dump(admin: SocketAddr, dump: &Value) -> anyhow::Result<ProxyDestination> {
        let label = |name: &str| {
            dump["source_labels"][name]
                .as_str()
                .map(str::to_owned)
                .with_context(|| format!("the proxy with admin {admin} shows no {name} label in /config_dump"))
        };
        let (app, version) = (label("app")?, label("version")?);
        let workload = format!("{app}-{version}");
        let identity = WorkloadIdentity {
            name: workload.clone(),
            namespace: NAMESPACE.to_owned(),
            app: app.clone(),
            version,
        };
        let service = (
            format!("{app}.{NAMESPACE}.{CLUSTER_DOMAIN}"),
            app,
            NAMESPACE.to_owned(),
        );
        Ok(ProxyDestination {
            workload,
            destination: destination_attributes(&identity, &service),
        })
    }
}

/// The stored policies that compile, as a proxy would receive them, from a
/// `GET /api/quotas` answer.
pub fn compiled_policies(listing: &Value) -> anyhow::Result<Vec<QuotaPolicy>> {
    let entries = listing["data"]
        .as_array()
        .context("GET /api/quotas answered without a data array")?;
    let mut policies = Vec::with_capacity(entries.len());
    for entry in entries {
        let mut entry = entry.clone();
        if let Some(fields) = entry.as_object_mut() {
            for field in READ_ONLY_FIELDS {
                fields.remove(field);
            }
        }
        let Ok(spec) = serde_json::from_value::<QuotaPolicySpec>(entry) else {
            continue;
        };
        if let Ok(policy) = spec.compile() {
            policies.push(policy);
        }
    }
    Ok(policies)
}

/// The names of `policies` that can match at `proxy`.
pub fn names_at(proxy: &ProxyDestination, policies: &[QuotaPolicy]) -> Vec<String> {
    let policies = policies.iter().map(|p| (p.clone(), 0)).collect();
    PolicySet::new(0, policies, &proxy.destination)
        .policies
        .into_iter()
        .map(|p| p.spec.name)
        .collect()
}

/// Where the store stands on the demo's policies: `Ok` when every name of `present` is
/// stored and none of `absent` is.
pub fn check_stored(
    policies: &[QuotaPolicy],
    present: &[String],
    absent: &[String],
) -> anyhow::Result<()> {
    let stored = |name: &String| policies.iter().any(|p| &p.spec.name == name);
    if let Some(name) = present.iter().find(|n| !stored(n)) {
        bail!("quota policy {name} is not stored (deleted meanwhile?)");
    }
    if let Some(name) = absent.iter().find(|n| stored(n)) {
        bail!("quota policy {name} is still stored (put back meanwhile?)");
    }
    Ok(())
}

/// The quota policy names a proxy's `/config_dump` says it holds.
pub fn held_names(admin: SocketAddr, dump: &Value) -> anyhow::Result<Vec<String>> {
    let names = dump["quota_policies"]["names"]
        .as_array()
        .with_context(|| format!("the proxy with admin {admin} shows no quota_policies.names in /config_dump"))?;
    Ok(names.iter().filter_map(Value::as_str).map(str::to_owned).collect())
}

/// The proxies that do not hold what they should yet, each as
/// `"<workload> holds (names), expected (names)"`; empty when all do.
pub fn lagging(proxies: &[ProxyDestination], held: &[Vec<String>], policies: &[QuotaPolicy]) -> Vec<String> {
    let list = |names: &[String]| if names.is_empty() { "none".to_owned() } else { names.join(", ") };
    proxies
        .iter()
        .zip(held)
        .filter_map(|(proxy, held)| {
            let mut want = names_at(proxy, policies);
            want.sort();
            let mut held = held.clone();
            held.sort();
            (held != want).then(|| format!("{} holds {}, expected {}", proxy.workload, list(&held), list(&want)))
        })
        .collect()
}
