//! Outbound routing: the mesh file and the traffic rules together, as one immutable
//! [`RoutingTable`] swapped whole when either changes.
//!
//! ```text
//!  Host ─► mesh service (or a virtual-service host) ─► VirtualService: first matching
//!  http route ─► weighted destination (host, subset) ─► Cluster: endpoints with the
//!  subset's labels, load balancer, pool limits, outlier ejection
//! ```
//!
//! Without a virtual service for the host, the request goes to the whole service (as
//! before rules existed), still under the service's `DestinationRule` if it has one.
//! Cluster state (ejections, counters) carries over a rebuild when a cluster's
//! endpoints and policy did not change.

pub mod cluster;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use meshtel_model::routing::{HttpRoute, RequestAttrs, RequestMatch, RouteDestination, RuleSet, SourceAttrs, TrafficPolicy};
use parking_lot::{Mutex, RwLock};
use serde::Serialize;

use crate::error::Error;
use crate::mesh::{Mesh, MeshWatcher, WorkloadIdentity, strip_port};
use crate::rules::RulesWatcher;
use crate::stats::{RoutingStats, Stats};
pub use cluster::{Cluster, Outcome};

/// How often the mesh file and the rules directory are checked for changes.
pub const ROUTING_POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The clusters of one service: the whole service and each subset.
#[derive(Debug)]
struct ServiceClusters {
    all: Arc<Cluster>,
    subsets: Vec<(String, Arc<Cluster>)>,
}

/// Everything outbound routing reads, immutable once built.
#[derive(Debug)]
pub struct RoutingTable {
    /// The mesh in force.
    pub mesh: Arc<Mesh>,
    /// The rules in force.
    pub rules: Arc<RuleSet>,
    /// This instance's labels (what `sourceLabels` match against).
    pub source_labels: BTreeMap<String, String>,
    /// This instance's namespace.
    pub source_namespace: String,
    /// Increments with every rebuild.
    pub revision: u64,
    /// The services this instance is an endpoint of (FQDN, short name, namespace).
    pub own_services: Vec<Arc<crate::mesh::ServiceNames>>,
    clusters: HashMap<String, ServiceClusters>,
}

impl RoutingTable {
    /// Which of this instance's services a request addressed to `authority` is for,
    /// when the instance answers for several (a call to the second name of a workload
    /// is reported under that name, not under `--service`).
    pub fn own_service_for(&self, authority: &str) -> Option<&Arc<crate::mesh::ServiceNames>> {
        let service = self.mesh.resolve(authority)?;
        self.own_services.iter().find(|own| own.0 == service.fqdn)
    }
}

/// Where one request goes.
#[derive(Debug)]
pub struct Decision<'t> {
    /// The virtual-service route that matched, if a virtual service covers the host.
    pub route: Option<&'t HttpRoute>,
    /// The match block that applied (for prefix rewrites).
    pub matched: Option<&'t RequestMatch>,
    /// The weighted destination chosen.
    pub destination: Option<&'t RouteDestination>,
    /// The cluster to send to.
    pub cluster: &'t Arc<Cluster>,
}

impl RoutingTable {
    /// Builds the table; clusters of `previous` whose shape did not change keep their
    /// state.
    pub fn build(
        mesh: Arc<Mesh>,
        rules: Arc<RuleSet>,
        identity: &WorkloadIdentity,
        previous: Option<&RoutingTable>,
        stats: &RoutingStats,
    ) -> RoutingTable {
        // Rules with `exportTo: ["."]` apply only to callers in their own namespace
        // (Istio's visibility): the others' proxies route as if they were not there.
        let rules = match rules.visible_from(&identity.namespace) {
            Some(visible) => Arc::new(visible),
            None => rules,
        };
        let mut clusters = HashMap::new();
        let mut source_labels = BTreeMap::new();
        let mut own_services = Vec::new();
        for service in mesh.services() {
            let service_names = (service.fqdn.clone(), service.name.clone(), service.namespace.clone());
            // This instance, by workload name and namespace: listed under another
            // service with other labels (`app: ratings` beside its own `app: reviews`)
            // it still answers for that service. Its labels are those of the entries
            // that match it whole, else the first seen.
            let mine = |e: &&crate::mesh::Endpoint| e.workload.name == identity.name && e.workload.namespace == identity.namespace;
            if let Some(own) = service.endpoints.iter().find(mine) {
                if *own.workload == *identity {
                    source_labels.extend(own.labels.clone());
                } else {
                    for (key, value) in &own.labels {
                        source_labels.entry(key.clone()).or_insert_with(|| value.clone());
                    }
                }
                own_services.push(Arc::new(service_names.clone()));
            }
            let old = previous.and_then(|p| p.clusters.get(&service.fqdn));
            let make = |name: String, subset: Option<&str>, labels: Option<&BTreeMap<String, String>>, policy: TrafficPolicy| {
                let endpoints: Vec<_> = service
                    .endpoints
                    .iter()
                    .filter(|e| labels.is_none_or(|labels| labels.iter().all(|(k, v)| e.labels.get(k) == Some(v))))
                    .collect();
                let reused = old.and_then(|old| match subset {
                    None => Some(&old.all),
                    Some(subset) => old.subsets.iter().find(|(n, _)| n == subset).map(|(_, c)| c),
                });
                match reused {
                    Some(cluster) if cluster.same_shape(&endpoints, &policy) => cluster.clone(),
                    _ => Arc::new(Cluster::new(
                        name,
                        service_names.clone(),
                        subset.map(str::to_owned),
                        policy,
                        &endpoints,
                        stats.clone(),
                    )),
                }
            };
            let rule = rules.destination_rule(&service.fqdn);
            let all = make(service.fqdn.clone(), None, None, rule.map(|r| r.traffic_policy.clone()).unwrap_or_default());
            let subsets = rule
                .map(|rule| {
                    rule.subsets
                        .iter()
                        .map(|s| {
                            let cluster = make(
                                format!("{}|{}", service.fqdn, s.name),
                                Some(&s.name),
                                Some(&s.labels),
                                s.traffic_policy.clone(),
                            );
                            (s.name.clone(), cluster)
                        })
                        .collect()
                })
                .unwrap_or_default();
            clusters.insert(service.fqdn.clone(), ServiceClusters { all, subsets });
        }
        source_labels.entry("app".to_owned()).or_insert_with(|| identity.app.clone());
        if !identity.version.is_empty() {
            source_labels.entry("version".to_owned()).or_insert_with(|| identity.version.clone());
        }
        RoutingTable {
            mesh,
            rules,
            source_labels,
            source_namespace: identity.namespace.clone(),
            revision: previous.map_or(1, |p| p.revision + 1),
            own_services,
            clusters,
        }
    }

    /// The cluster of service `fqdn`, or of one of its subsets.
    pub fn cluster(&self, fqdn: &str, subset: Option<&str>) -> Option<&Arc<Cluster>> {
        let service = self.clusters.get(fqdn)?;
        match subset {
            None => Some(&service.all),
            Some(name) => service.subsets.iter().find(|(n, _)| n == name).map(|(_, c)| c),
        }
    }

    /// The names of the mesh service `authority` resolves to. A request refused before a
    /// cluster was picked (no route matched) is reported against that service, as Istio
    /// reports the host a request named, not as `unknown`.
    pub fn service_names(&self, authority: &str) -> Option<Arc<crate::mesh::ServiceNames>> {
        let service = self.mesh.resolve(authority)?;
        self.cluster(&service.fqdn, None).map(|cluster| cluster.service.clone())
    }

    /// Decides where a request goes. `roll` is a random number (the weighted pick uses
    /// it modulo the route's total weight).
    pub fn decide<'t>(&'t self, request: &RequestAttrs<'_>, roll: u32) -> Result<Decision<'t>, Error> {
        let service = self.mesh.resolve(request.authority);
        let virtual_service = if self.rules.virtual_services.is_empty() {
            None
        } else {
            match service {
                Some(service) => self.rules.virtual_service(&service.fqdn),
                None => {
                    let host = strip_port(request.authority);
                    if host.bytes().any(|b| b.is_ascii_uppercase()) {
                        self.rules.virtual_service(&host.to_ascii_lowercase())
                    } else {
                        self.rules.virtual_service(host)
                    }
                }
            }
        };
        let Some(virtual_service) = virtual_service else {
            let Some(service) = service else {
                return Err(Error::UnknownService { host: request.authority.to_owned() });
            };
            let cluster = self
                .cluster(&service.fqdn, None)
                .ok_or_else(|| Error::ClusterNotFound { cluster: service.fqdn.clone() })?;
            return Ok(Decision { route: None, matched: None, destination: None, cluster });
        };
        let source = SourceAttrs { labels: &self.source_labels, namespace: &self.source_namespace };
        let Some(route) = virtual_service.route(request, &source) else {
            return Err(Error::NoRoute { host: request.authority.to_owned() });
        };
        let matched = if route.rewrite.is_some() { route.matching_block(request, &source) } else { None };
        let destination = route
            .pick(roll % route.total_weight.max(1))
            .ok_or_else(|| Error::NoRoute { host: request.authority.to_owned() })?;
        let cluster = self.cluster(&destination.host, destination.subset.as_deref()).ok_or_else(|| {
            Error::ClusterNotFound {
                cluster: match &destination.subset {
                    Some(subset) => format!("{}|{subset}", destination.host),
                    None => destination.host.clone(),
                },
            }
        })?;
        Ok(Decision { route: Some(route), matched, destination: Some(destination), cluster })
    }

    /// Every cluster, for `/config_dump`.
    pub fn clusters(&self) -> impl Iterator<Item = &Arc<Cluster>> {
        self.clusters.values().flat_map(|s| std::iter::once(&s.all).chain(s.subsets.iter().map(|(_, c)| c)))
    }
}

/// Reload bookkeeping shown by `/config_dump`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RoutingStatus {
    /// The rules directory, if any.
    pub rules_dir: Option<PathBuf>,
    /// When the rules in force were loaded (Unix seconds).
    pub rules_loaded_at: u64,
    /// Problems of the last rejected rules edit, until a good one.
    pub last_error: Option<String>,
    /// The mesh file.
    pub mesh_file: PathBuf,
    /// When the mesh in force was loaded (Unix seconds).
    pub mesh_loaded_at: u64,
    /// Why the last edit of the mesh file was rejected, until a good one.
    pub mesh_last_error: Option<String>,
}

/// The routing table in force, shared by every request.
#[derive(Debug, Clone)]
pub struct SharedRouting {
    table: Arc<RwLock<Arc<RoutingTable>>>,
    status: Arc<Mutex<RoutingStatus>>,
    /// Whether this instance answers for more than one service in the table in force:
    /// read by every inbound request without taking the table (most answer for one).
    several_services: Arc<std::sync::atomic::AtomicBool>,
}

impl SharedRouting {
    /// Shares `table`.
    pub fn new(table: RoutingTable, status: RoutingStatus) -> SharedRouting {
        let several_services = Arc::new(std::sync::atomic::AtomicBool::new(table.own_services.len() > 1));
        SharedRouting { table: Arc::new(RwLock::new(Arc::new(table))), status: Arc::new(Mutex::new(status)), several_services }
    }

    /// Whether this instance answers for more than one service (see
    /// [`RoutingTable::own_service_for`]).
    pub fn serves_several(&self) -> bool {
        self.several_services.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The table in force now (one `Arc` clone under a read lock).
    pub fn current(&self) -> Arc<RoutingTable> {
        self.table.read().clone()
    }

    /// Reload bookkeeping.
    pub fn status(&self) -> RoutingStatus {
        self.status.lock().clone()
    }

    fn replace(&self, table: RoutingTable) {
        self.several_services.store(table.own_services.len() > 1, std::sync::atomic::Ordering::Relaxed);
        *self.table.write() = Arc::new(table);
    }
}

/// Polls the mesh file and the rules directory; rebuilds the table when either changed.
#[derive(Debug)]
pub struct RoutingWatcher {
    mesh: MeshWatcher,
    rules: Option<RulesWatcher>,
    identity: WorkloadIdentity,
    shared: SharedRouting,
    stats: RoutingStats,
}

impl RoutingWatcher {
    /// Loads both (failing on either: a proxy starts from a good mesh and good rules).
    pub fn start(
        mesh_file: PathBuf,
        rules_dir: Option<PathBuf>,
        identity: WorkloadIdentity,
        stats: RoutingStats,
    ) -> crate::Result<RoutingWatcher> {
        let mesh = MeshWatcher::start(mesh_file.clone(), identity.namespace.clone())?;
        let (rules, rule_set) = match rules_dir {
            Some(dir) => {
                let (watcher, rules) = RulesWatcher::start(dir, identity.namespace.clone())?;
                (Some(watcher), rules)
            }
            None => (None, RuleSet::default()),
        };
        let table = RoutingTable::build(mesh.mesh().current(), Arc::new(rule_set), &identity, None, &stats);
        let status = RoutingStatus {
            rules_dir: rules.as_ref().map(|r| r.dir().to_owned()),
            rules_loaded_at: unix_now(),
            last_error: None,
            mesh_file,
            mesh_loaded_at: unix_now(),
            mesh_last_error: None,
        };
        Ok(RoutingWatcher { mesh, rules, identity, shared: SharedRouting::new(table, status), stats })
    }

    /// The handle requests read the table through.
    pub fn routing(&self) -> SharedRouting {
        self.shared.clone()
    }

    /// Checks both sources once; rebuilds on change. Returns whether a new table is
    /// in force.
    pub fn poll_once(&mut self, stats: &Stats) -> bool {
        let current = self.shared.current();
        let mut rules = current.rules.clone();
        let mut changed = false;
        match self.mesh.poll_once() {
            Some(true) => {
                stats.mesh_reloads.with_label_values(&["ok"]).inc();
                stats.mesh_last_reload_successful.set(1);
                let mut status = self.shared.status.lock();
                status.mesh_loaded_at = unix_now();
                status.mesh_last_error = None;
                changed = true;
            }
            Some(false) => {
                stats.mesh_reloads.with_label_values(&["rejected"]).inc();
                stats.mesh_last_reload_successful.set(0);
                self.shared.status.lock().mesh_last_error = self.mesh.last_error.clone();
            }
            None => {}
        }
        if let Some(watcher) = &mut self.rules {
            match watcher.poll_once() {
                Some(Ok(new_rules)) => {
                    self.stats.rules_reloads.with_label_values(&["ok"]).inc();
                    self.stats.rules_last_reload_successful.set(1);
                    rules = new_rules;
                    let mut status = self.shared.status.lock();
                    status.rules_loaded_at = unix_now();
                    status.last_error = None;
                    changed = true;
                }
                Some(Err(())) => {
                    self.stats.rules_reloads.with_label_values(&["rejected"]).inc();
                    self.stats.rules_last_reload_successful.set(0);
                    self.shared.status.lock().last_error = watcher.last_error.clone();
                }
                None => {}
            }
        }
        if changed {
            let table = RoutingTable::build(self.mesh.mesh().current(), rules, &self.identity, Some(&current), &self.stats);
            self.shared.replace(table);
        }
        changed
    }

    /// Polls every [`ROUTING_POLL_INTERVAL`] until `shutdown` flips to true. Each poll
    /// (file system calls, and on a change parsing and a table rebuild) runs on a
    /// blocking thread: a slow mount or a large rule set never holds up the requests
    /// of the runtime that runs this.
    pub async fn run(mut self, stats: Stats, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        let mut ticker = tokio::time::interval(ROUTING_POLL_INTERVAL);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = ticker.tick() => {
                    let stats = stats.clone();
                    let polled = tokio::task::spawn_blocking(move || {
                        self.poll_once(&stats);
                        self
                    });
                    self = match polled.await {
                        Ok(watcher) => watcher,
                        Err(error) => {
                            tracing::error!(%error, "routing reload failed; the rules in force stay");
                            return;
                        }
                    };
                }
                _ = shutdown.changed() => return,
            }
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

/// `/config_dump`: the rules and clusters in force.
pub fn config_dump(routing: &SharedRouting) -> serde_json::Value {
    let table = routing.current();
    let status = routing.status();
    let mut clusters: Vec<_> = table.clusters().map(|c| c.dump()).collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    serde_json::json!({
        "revision": table.revision,
        "rules_dir": status.rules_dir,
        "rules_loaded_at": status.rules_loaded_at,
        "last_error": status.last_error,
        "mesh_file": status.mesh_file,
        "mesh_loaded_at": status.mesh_loaded_at,
        "mesh_last_error": status.mesh_last_error,
        "source_labels": table.source_labels,
        "rules": &*table.rules,
        "clusters": clusters,
    })
}

#[cfg(test)]
mod tests;
