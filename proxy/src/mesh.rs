//! The mesh file: which services exist, where their instances listen, and how those
//! instances are labelled.
//!
//! The outbound listener resolves the `Host`/`:authority` of every call through it
//! and load-balances round robin over the service's endpoints. The file is YAML:
//!
//! ```yaml
//! services:
//!   - name: reviews            # Kubernetes-style service name
//!     namespace: default       # optional, default "default"
//!     port: 9080               # the service port apps use (informational)
//!     endpoints:
//!       - address: 127.0.0.1:15106   # the inbound listener of that instance's proxy
//!         workload: reviews-v1       # optional, default "<name>-<version>" or "<name>"
//!         cluster: east              # optional, default the reading proxy's `--cluster`
//!         labels: { app: reviews, version: v1 }
//! ```
//!
//! A service answers to `reviews`, `reviews:9080`, `reviews.default`,
//! `reviews.default.svc` and `reviews.default.svc.cluster.local` (any port). A bare
//! name means the service in the proxy's own namespace, or else the only service of
//! that name. [`MeshWatcher`] checks the file's modification time (every 250 ms, driven
//! by `routing::RoutingWatcher`) and swaps in the new mesh once the file has stayed the
//! same for a whole poll ([`Settle`]: a file written line by line is not loaded half
//! written); an edit that does not parse is logged (and shown in `/config_dump`) and
//! the last good mesh stays in force.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::SystemTime;

use parking_lot::RwLock;
use serde::Deserialize;
use tracing::{info, warn};

use crate::error::{Error, Result};

/// Cluster domain suffix of service FQDNs.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// The mesh file as written by the operator.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MeshFile {
    /// Every service of the mesh. Required, and a list: `services:` with nothing after
    /// it is what a half-written file looks like, not a mesh without services
    /// (`services: []`).
    #[serde(deserialize_with = "service_list")]
    pub services: Vec<ServiceSpec>,
}

fn service_list<'de, D: serde::Deserializer<'de>>(deserializer: D) -> std::result::Result<Vec<ServiceSpec>, D::Error> {
    Option::<Vec<ServiceSpec>>::deserialize(deserializer)?.ok_or_else(|| {
        serde::de::Error::custom("`services` has no value; a mesh without services is written `services: []`")
    })
}

/// One service of the mesh.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    /// Service name, e.g. `reviews`.
    pub name: String,
    /// Namespace, e.g. `default`.
    #[serde(default = "default_namespace")]
    pub namespace: String,
    /// The port apps call the service on; informational (any port resolves).
    #[serde(default)]
    pub port: Option<u16>,
    /// The instances; calls are spread over them round robin.
    #[serde(default)]
    pub endpoints: Vec<EndpointSpec>,
}

/// One instance of a service.
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct EndpointSpec {
    /// `host:port` of the instance's proxy inbound listener.
    pub address: String,
    /// Workload name (`destination_workload`); default `<service>-<version>`, or the
    /// service name without a version label.
    #[serde(default)]
    pub workload: Option<String>,
    /// Cluster id of the instance (`destination_cluster`); default: the cluster of the
    /// proxy reading the file (one cluster for the whole mesh).
    #[serde(default)]
    pub cluster: Option<String>,
    /// Pod labels; `app` and `version` become `destination_app`/`destination_version`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The namespace of services that name none.
pub fn default_namespace() -> String {
    "default".to_owned()
}

/// A workload as the request records label it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct WorkloadIdentity {
    /// Workload name, e.g. `reviews-v2`.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// Label `app`.
    pub app: String,
    /// Label `version`.
    pub version: String,
}

impl WorkloadIdentity {
    /// A workload nothing is known of (every field empty).
    pub const UNKNOWN: WorkloadIdentity =
        WorkloadIdentity { name: String::new(), namespace: String::new(), app: String::new(), version: String::new() };
}

/// A service's FQDN, short name and namespace.
pub type ServiceNames = (String, String, String);

/// A resolved endpoint: where to connect and who is there.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// `host:port` to connect to.
    pub address: String,
    /// The workload behind it (shared with every request record that names it).
    pub workload: Arc<WorkloadIdentity>,
    /// Its cluster id; `None`: the cluster of the proxy reading the mesh.
    pub cluster: Option<Arc<str>>,
    /// Its pod labels (what `DestinationRule` subsets select on).
    pub labels: BTreeMap<String, String>,
}

/// A resolved service.
#[derive(Debug)]
pub struct Service {
    /// Short name, e.g. `reviews`.
    pub name: String,
    /// Namespace.
    pub namespace: String,
    /// `<name>.<namespace>.svc.cluster.local`.
    pub fqdn: String,
    /// Instances.
    pub endpoints: Vec<Endpoint>,
    next: AtomicUsize,
}

impl Service {
    /// The next endpoint, round robin; `None` when the service has none.
    pub fn pick_endpoint(&self) -> Option<&Endpoint> {
        if self.endpoints.is_empty() {
            return None;
        }
        let index = self.next.fetch_add(1, Ordering::Relaxed) % self.endpoints.len();
        self.endpoints.get(index)
    }
}

/// A loaded mesh: services indexed by every host name they answer to.
#[derive(Debug, Default)]
pub struct Mesh {
    by_host: HashMap<String, Arc<Service>>,
    services: Vec<Arc<Service>>,
}

impl Mesh {
    /// Builds the index. `own_namespace` decides what bare names mean.
    pub fn build(file: MeshFile, own_namespace: &str) -> std::result::Result<Mesh, String> {
        let mut by_host: HashMap<String, Arc<Service>> = HashMap::new();
        let mut bare: HashMap<String, Vec<Arc<Service>>> = HashMap::new();
        let mut services = Vec::with_capacity(file.services.len());
        for spec in file.services {
            if spec.name.is_empty() || spec.name.contains('.') {
                return Err(format!("service name {:?} must be non-empty without dots", spec.name));
            }
            let endpoints = spec
                .endpoints
                .into_iter()
                .map(|endpoint| endpoint_from_spec(&spec.name, &spec.namespace, endpoint))
                .collect::<std::result::Result<Vec<_>, String>>()?;
            let fqdn = format!("{}.{}.{CLUSTER_DOMAIN}", spec.name, spec.namespace);
            let service = Arc::new(Service {
                name: spec.name.clone(),
                namespace: spec.namespace.clone(),
                fqdn: fqdn.clone(),
                endpoints,
                next: AtomicUsize::new(0),
            });
            for alias in [
                format!("{}.{}", spec.name, spec.namespace),
                format!("{}.{}.svc", spec.name, spec.namespace),
                fqdn,
            ] {
                if by_host.insert(alias.clone(), service.clone()).is_some() {
                    return Err(format!("service {alias} is listed twice"));
                }
            }
            services.push(service.clone());
            bare.entry(spec.name).or_default().push(service);
        }
        for (name, candidates) in bare {
            let chosen = candidates
                .iter()
                .find(|service| service.namespace == own_namespace)
                .or(if candidates.len() == 1 { candidates.first() } else { None });
            if let Some(service) = chosen {
                by_host.insert(name, service.clone());
            }
        }
        Ok(Mesh { by_host, services })
    }

    /// The service a `Host`/`:authority` value names, if any (port and case ignored).
    pub fn resolve(&self, authority: &str) -> Option<&Arc<Service>> {
        let host = strip_port(authority).trim_end_matches('.');
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            return self.by_host.get(&host.to_ascii_lowercase());
        }
        self.by_host.get(host)
    }

    /// How many services the mesh has.
    pub fn service_count(&self) -> usize {
        self.services.len()
    }

    /// Every service, in file order.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.iter()
    }
}

fn endpoint_from_spec(
    service: &str,
    namespace: &str,
    spec: EndpointSpec,
) -> std::result::Result<Endpoint, String> {
    if !is_host_port(&spec.address) {
        return Err(format!(
            "endpoint address {:?} of {service} must be host:port with a port from 0 to 65535",
            spec.address
        ));
    }
    if let Some(cluster) = &spec.cluster
        && (cluster.is_empty() || !cluster.bytes().all(|b| b.is_ascii_graphic()))
    {
        return Err(format!("cluster {cluster:?} of endpoint {} of {service} must be non-empty visible ASCII without spaces", spec.address));
    }
    let app = spec.labels.get("app").cloned().unwrap_or_else(|| service.to_owned());
    let version = spec.labels.get("version").cloned().unwrap_or_default();
    let name = spec.workload.unwrap_or_else(|| {
        if version.is_empty() { service.to_owned() } else { format!("{service}-{version}") }
    });
    let mut labels = spec.labels;
    labels.entry("app".to_owned()).or_insert_with(|| app.clone());
    if !version.is_empty() {
        labels.entry("version".to_owned()).or_insert_with(|| version.clone());
    }
    Ok(Endpoint {
        address: spec.address,
        workload: Arc::new(WorkloadIdentity { name, namespace: namespace.to_owned(), app, version }),
        cluster: spec.cluster.map(Arc::from),
        labels,
    })
}

/// Whether `address` is `host:port` with a port from 0 to 65535. `Authority` alone takes
/// any text after the last colon as the port (`99999`, `-5`, `abc`), or none at all.
pub(crate) fn is_host_port(address: &str) -> bool {
    let Ok(authority) = address.parse::<http::uri::Authority>() else {
        return false;
    };
    let port_digits = authority.port().is_some_and(|port| {
        let digits = port.as_str();
        !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit())
    });
    port_digits && authority.port_u16().is_some() && !strip_port(address).is_empty()
}

/// `reviews:9080` → `reviews`; `[::1]:80` → `[::1]`.
pub fn strip_port(authority: &str) -> &str {
    match authority.rfind(':') {
        Some(colon) if !authority[colon..].contains(']') => &authority[..colon],
        _ => authority,
    }
}

/// Reads and validates a mesh file.
pub fn load_mesh_file(path: &Path, own_namespace: &str) -> Result<Mesh> {
    let bytes = meshtel_model::yaml_nesting::read_file(path).map_err(|error| match error {
        meshtel_model::yaml_nesting::FileError::Io(source) => Error::MeshRead { path: path.to_owned(), source },
        too_large => Error::MeshInvalid { path: path.to_owned(), reason: too_large.to_string() },
    })?;
    let text = String::from_utf8(bytes).map_err(|e| Error::MeshInvalid {
        path: path.to_owned(),
        reason: format!("the file is not UTF-8 text: {}", e.utf8_error()),
    })?;
    // Most likely a file caught between an editor's truncate and its write: taking it
    // at its word would drop every service of the mesh.
    // Comments alone count as empty.
    if text.lines().all(|line| line.trim().is_empty() || line.trim_start().starts_with('#')) {
        return Err(Error::MeshInvalid {
            path: path.to_owned(),
            reason: "the file is empty; a mesh without services is written `services: []`".to_owned(),
        });
    }
    meshtel_model::yaml_nesting::check(&text).map_err(|reason| Error::MeshInvalid { path: path.to_owned(), reason })?;
    let file: MeshFile = yaml_serde::from_str(&text).map_err(|source| {
        // YAML reads an unquoted `[::1]:9080` as a list: say how to write it.
        let text = source.to_string();
        if text.contains("address: invalid type: sequence") {
            Error::MeshInvalid { path: path.to_owned(), reason: format!("{text} (an IPv6 address is quoted in YAML: address: \"[::1]:9080\")") }
        } else {
            Error::MeshParse { path: path.to_owned(), source }
        }
    })?;
    Mesh::build(file, own_namespace)
        .map_err(|reason| Error::MeshInvalid { path: path.to_owned(), reason })
}

/// The mesh in force, shared by every request, swapped on reload.
#[derive(Debug, Clone, Default)]
pub struct SharedMesh(Arc<RwLock<Arc<Mesh>>>);

impl SharedMesh {
    /// A shared handle on `mesh`.
    pub fn new(mesh: Mesh) -> SharedMesh {
        SharedMesh(Arc::new(RwLock::new(Arc::new(mesh))))
    }

    /// The mesh in force now (cheap: one `Arc` clone under a read lock).
    pub fn current(&self) -> Arc<Mesh> {
        self.0.read().clone()
    }

    fn replace(&self, mesh: Mesh) {
        *self.0.write() = Arc::new(mesh);
    }
}

/// What a watched file or directory looked like at the last poll, and a change seen
/// but not yet acted on: a change is acted on once it has stayed the same for a whole
/// poll, so that a file written in several writes (a script writing line by line, a
/// slow copy) is read whole. Writing to a temporary file and renaming it into place is
/// still the way to change a file at once.
#[derive(Debug)]
pub(crate) struct Settle<S> {
    seen: S,
    changing: Option<S>,
}

impl<S: PartialEq> Settle<S> {
    /// Starting from `seen`, what was read at start.
    pub(crate) fn new(seen: S) -> Settle<S> {
        Settle { seen, changing: None }
    }

    /// Whether to read again now, `stamp` being what the file looks like now: true
    /// once a change is the same at two polls in a row.
    pub(crate) fn settled(&mut self, stamp: S) -> bool {
        if stamp == self.seen {
            self.changing = None;
            return false;
        }
        if self.changing.as_ref() == Some(&stamp) {
            self.changing = None;
            self.seen = stamp;
            return true;
        }
        self.changing = Some(stamp);
        false
    }
}

/// Polls the mesh file and reloads it when its modification time or size changed and
/// has stayed so for a poll.
#[derive(Debug)]
pub struct MeshWatcher {
    path: PathBuf,
    own_namespace: String,
    mesh: SharedMesh,
    stamp: Settle<Option<(SystemTime, u64)>>,
    /// The last rejected reload's error, cleared by a good one.
    pub last_error: Option<String>,
}

impl MeshWatcher {
    /// Loads the file once (failing if it is bad: a proxy must start from a good mesh).
    pub fn start(path: PathBuf, own_namespace: String) -> Result<MeshWatcher> {
        let seen = file_stamp(&path);
        let mesh = load_mesh_file(&path, &own_namespace)?;
        info!(path = %path.display(), services = mesh.service_count(), "mesh loaded");
        Ok(MeshWatcher { path, own_namespace, mesh: SharedMesh::new(mesh), stamp: Settle::new(seen), last_error: None })
    }

    /// The handle requests read the mesh through.
    pub fn mesh(&self) -> SharedMesh {
        self.mesh.clone()
    }

    /// Reloads if the file changed (and stayed so since the poll before); a bad edit
    /// is logged and the last good mesh kept. Returns `None` when there is nothing to
    /// read yet, else whether the new mesh was swapped in.
    pub fn poll_once(&mut self) -> Option<bool> {
        if !self.stamp.settled(file_stamp(&self.path)) {
            return None;
        }
        match load_mesh_file(&self.path, &self.own_namespace) {
            Ok(mesh) => {
                info!(path = %self.path.display(), services = mesh.service_count(), "mesh reloaded");
                self.mesh.replace(mesh);
                self.last_error = None;
                Some(true)
            }
            Err(error) => {
                let error = error_chain(&error);
                warn!(path = %self.path.display(), error = %error, "mesh reload failed, keeping the last good mesh");
                self.last_error = Some(error);
                Some(false)
            }
        }
    }
}

fn file_stamp(path: &Path) -> Option<(SystemTime, u64)> {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// `error: cause: cause` on one line, for logs.
pub(crate) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests;
