//! The services and operations the query API lists (`/api/services`,
//! `/api/operations`): kept in memory, persisted in SQL by [`crate::catalog`], and
//! bounded three ways so that no service can keep another out of the list.
//!
//! ```text
//!  (service, operation) seen in a write
//!      new service?   listed while fewer than max_catalog_services are
//!      new operation? listed while its service has fewer than
//!                     max_catalog_operations_per_service, and all services together
//!                     fewer than max_catalog_operations
//!  refused: counted (meshtel_store_catalog_overflow_total), one WARN per 10 s per bound
//! ```
//!
//! A service is registered on its own, before its operations: a service that finds the
//! operation bounds reached is still listed, without operations.
//!
//! Each entry knows when a write last named it (Unix ms, set under the read lock with
//! one atomic store). [`MemoryCatalog::upkeep`], after each retention pass, forgets the
//! entries last seen before the oldest span still stored, which frees their room under
//! the bounds, and hands SQL the sightings it has not heard of for a while.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Instant;

use meshtel_model::log_window::LogWindow;
use meshtel_model::{Operation, SpanKind};
use parking_lot::{Mutex, RwLock};
use tracing::warn;

use crate::catalog::CatalogChange;
use crate::config::StoreConfig;

/// What a write added to the catalog, for SQL.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct CatalogAdditions {
    /// Services listed for the first time.
    pub services: Vec<String>,
    /// Operations listed for the first time.
    pub operations: Vec<(String, Operation)>,
}

impl CatalogAdditions {
    pub(crate) fn is_empty(&self) -> bool {
        self.services.is_empty() && self.operations.is_empty()
    }

    /// As a change for SQL.
    pub(crate) fn into_change(self) -> CatalogChange {
        CatalogChange::Add {
            services: self.services,
            operations: self.operations,
        }
    }
}

/// What [`MemoryCatalog::register`] did.
#[derive(Debug, Default)]
pub(crate) struct Registered {
    /// What is listed now and was not before, for SQL.
    pub added: CatalogAdditions,
    /// The WARN lines written about refused entries.
    pub logged: Vec<OverflowLine>,
}

/// One WARN line about entries a bound refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OverflowLine {
    pub bound: CatalogBound,
    /// The service of the latest refusal the line tells.
    pub service: String,
    /// Refusals since the previous line of this bound.
    pub refused: u64,
}

/// The three bounds, as the config file names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CatalogBound {
    Services,
    OperationsPerService,
    Operations,
}

impl CatalogBound {
    const ALL: [CatalogBound; 3] = [
        CatalogBound::Services,
        CatalogBound::OperationsPerService,
        CatalogBound::Operations,
    ];

    /// The key as the config file spells it.
    pub(crate) fn setting(self) -> &'static str {
        match self {
            CatalogBound::Services => "[store] max_catalog_services",
            CatalogBound::OperationsPerService => "[store] max_catalog_operations_per_service",
            CatalogBound::Operations => "[store] max_catalog_operations",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// When an entry was last named by a write, and what SQL last heard of it (Unix ms).
struct Seen {
    last: AtomicI64,
    persisted: i64,
}

impl Seen {
    fn at(unix_ms: i64) -> Seen {
        Seen {
            last: AtomicI64::new(unix_ms),
            persisted: unix_ms,
        }
    }

    /// Under the read lock: a store only when the time moved, so that the cache line
    /// stays shared between writes of the same millisecond.
    fn note(&self, unix_ms: i64) {
        if self.last.load(Ordering::Relaxed) < unix_ms {
            self.last.store(unix_ms, Ordering::Relaxed);
        }
    }

    fn last(&self) -> i64 {
        self.last.load(Ordering::Relaxed)
    }

    /// The time to tell SQL, when it is `granularity_ms` or more past what SQL holds.
    fn untold(&mut self, granularity_ms: i64) -> Option<i64> {
        let last = self.last();
        (last - self.persisted >= granularity_ms).then(|| {
            self.persisted = last;
            last
        })
    }
}

struct ServiceEntry {
    seen: Seen,
    ops: BTreeMap<Operation, Seen>,
}

impl ServiceEntry {
    fn at(unix_ms: i64) -> ServiceEntry {
        ServiceEntry {
            seen: Seen::at(unix_ms),
            ops: BTreeMap::new(),
        }
    }
}

#[derive(Default)]
struct Known {
    services: BTreeMap<String, ServiceEntry>,
    /// Operations over all services.
    operations: usize,
}

/// The log window of one bound and the service its latest refusal was for.
#[derive(Default)]
struct OverflowLog {
    window: LogWindow,
    last_service: String,
}

/// The in-memory catalog. See the module documentation.
pub(crate) struct MemoryCatalog {
    max_services: usize,
    max_operations_per_service: usize,
    max_operations: usize,
    known: RwLock<Known>,
    logs: Mutex<[OverflowLog; 3]>,
}

impl MemoryCatalog {
    /// An empty catalog with the bounds of `config`.
    pub(crate) fn new(config: &StoreConfig) -> MemoryCatalog {
        MemoryCatalog {
            max_services: config.max_catalog_services,
            max_operations_per_service: config.max_catalog_operations_per_service,
            max_operations: config.max_catalog_operations,
            known: RwLock::default(),
            logs: Mutex::default(),
        }
    }

    /// Replaces the whole catalog with what SQL holds, with when each entry was last
    /// seen (Unix ms): at open, and for a read-only store at each reload. Not bounded:
    /// SQL holds what a writer listed within its bounds.
    pub(crate) fn replace(
        &self,
        services: Vec<(String, i64)>,
        operations: Vec<(String, Operation, i64)>,
    ) {
        let mut known = Known::default();
        for (service, seen) in services {
            known.services.insert(service, ServiceEntry::at(seen));
        }
        for (service, op, seen) in operations {
            let entry = known
                .services
                .entry(service)
                .or_insert_with(|| ServiceEntry::at(seen));
            if entry.ops.insert(op, Seen::at(seen)).is_none() {
                known.operations += 1;
            }
        }
        *self.known.write() = known;
    }

    /// Notes that a write named `seen` at `now_unix_ms`, and lists the services and
    /// operations not listed yet, within the bounds; refused entries are added to
    /// `overflow` and logged (at most one WARN per bound per
    /// [`meshtel_model::log_window::LOG_INTERVAL`], with a count). Returns what was
    /// added and the lines logged.
    pub(crate) fn register(
        &self,
        seen: Vec<(String, Operation)>,
        overflow: &AtomicU64,
        now: Instant,
        now_unix_ms: i64,
    ) -> Registered {
        self.register_telling(seen, Some(overflow), now, now_unix_ms)
    }

    /// [`Self::register`] for writes replayed from the WAL at start: what the bounds
    /// refuse was counted and logged by the process that took the write, so it is
    /// neither counted nor logged again.
    pub(crate) fn register_replayed(
        &self,
        seen: Vec<(String, Operation)>,
        now: Instant,
        now_unix_ms: i64,
    ) -> Registered {
        self.register_telling(seen, None, now, now_unix_ms)
    }

    fn register_telling(
        &self,
        seen: Vec<(String, Operation)>,
        overflow: Option<&AtomicU64>,
        now: Instant,
        now_unix_ms: i64,
    ) -> Registered {
        let mut registered = Registered::default();
        if seen.is_empty() {
            return registered;
        }
        let fresh: Vec<(String, Operation)> = {
            let known = self.known.read();
            seen.into_iter()
                .filter(|(svc, op)| {
                    let Some(entry) = known.services.get(svc) else {
                        return true;
                    };
                    entry.seen.note(now_unix_ms);
                    match entry.ops.get(op) {
                        Some(op_seen) => {
                            op_seen.note(now_unix_ms);
                            false
                        }
                        None => true,
                    }
                })
                .collect()
        };
        if fresh.is_empty() {
            return registered;
        }
        let added = &mut registered.added;
        let mut refused: Vec<(CatalogBound, String)> = Vec::new();
        // Services refused in this write: each counts once, however many operations
        // it names.
        let mut refused_services: HashSet<String> = HashSet::new();
        {
            let mut known = self.known.write();
            let known = &mut *known;
            for (svc, op) in fresh {
                if !known.services.contains_key(&svc) {
                    if known.services.len() >= self.max_services {
                        if !refused_services.contains(&svc) {
                            refused_services.insert(svc.clone());
                            refused.push((CatalogBound::Services, svc));
                        }
                        continue;
                    }
                    known
                        .services
                        .insert(svc.clone(), ServiceEntry::at(now_unix_ms));
                    added.services.push(svc.clone());
                }
                let Some(entry) = known.services.get_mut(&svc) else {
                    continue;
                };
                let ops = &mut entry.ops;
                if ops.contains_key(&op) {
                    continue;
                }
                if ops.len() >= self.max_operations_per_service {
                    refused.push((CatalogBound::OperationsPerService, svc));
                } else if known.operations >= self.max_operations {
                    refused.push((CatalogBound::Operations, svc));
                } else {
                    ops.insert(op.clone(), Seen::at(now_unix_ms));
                    known.operations += 1;
                    added.operations.push((svc, op));
                }
            }
        }
        if let Some(overflow) = overflow.filter(|_| !refused.is_empty()) {
            overflow.fetch_add(refused.len() as u64, Ordering::Relaxed);
            let mut due = Vec::new();
            {
                let mut logs = self.logs.lock();
                for (bound, service) in refused {
                    let log = &mut logs[bound.index()];
                    match log.window.note(now) {
                        Some(refused) => due.push(OverflowLine {
                            bound,
                            service,
                            refused,
                        }),
                        None => log.last_service = service,
                    }
                }
            }
            registered.logged = self.log_lines(due);
        }
        registered
    }

    /// For a timer: logs the refusals no line has told yet, once a line is due.
    /// Returns the lines logged.
    pub(crate) fn log_untold(&self, now: Instant) -> Vec<OverflowLine> {
        let due: Vec<OverflowLine> = {
            let mut logs = self.logs.lock();
            CatalogBound::ALL
                .iter()
                .filter_map(|&bound| {
                    let log = &mut logs[bound.index()];
                    let refused = log.window.flush(now)?;
                    Some(OverflowLine {
                        bound,
                        service: std::mem::take(&mut log.last_service),
                        refused,
                    })
                })
                .collect()
        };
        self.log_lines(due)
    }

    fn log_lines(&self, lines: Vec<OverflowLine>) -> Vec<OverflowLine> {
        for line in &lines {
            let (service, setting, refused) = (&line.service, line.bound.setting(), line.refused);
            let limit = match line.bound {
                CatalogBound::Services => self.max_services,
                CatalogBound::OperationsPerService => self.max_operations_per_service,
                CatalogBound::Operations => self.max_operations,
            };
            match line.bound {
                CatalogBound::Services => warn!(
                    %service,
                    setting,
                    limit,
                    refused,
                    "catalog full: service not listed by /api/services; its spans are stored"
                ),
                CatalogBound::OperationsPerService | CatalogBound::Operations => warn!(
                    %service,
                    setting,
                    limit,
                    refused,
                    "catalog full: operations not listed; their spans are stored"
                ),
            }
        }
        lines
    }

    /// Every service listed, in name order.
    pub(crate) fn services(&self) -> Vec<String> {
        self.known.read().services.keys().cloned().collect()
    }

    /// The operations listed for `service`, of `kind` when given.
    pub(crate) fn operations(&self, service: &str, kind: Option<SpanKind>) -> Vec<Operation> {
        self.known
            .read()
            .services
            .get(service)
            .map(|entry| {
                entry
                    .ops
                    .keys()
                    .filter(|op| kind.is_none_or(|k| op.span_kind == k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Forgets the entries last seen before `cutoff_unix_ms` and collects the
    /// sightings SQL has not heard of for `granularity_ms` or more. `send` gets the
    /// changes (sightings first) while the catalog is still locked, so that SQL forgets
    /// an entry before it hears of its listing again. Returns how many services and
    /// operations were forgotten.
    pub(crate) fn upkeep(
        &self,
        cutoff_unix_ms: i64,
        granularity_ms: i64,
        send: impl FnOnce(Vec<CatalogChange>),
    ) -> (usize, usize) {
        let mut known = self.known.write();
        let known = &mut *known;
        let mut seen_services = Vec::new();
        let mut seen_operations = Vec::new();
        let mut forget_services = Vec::new();
        let mut forget_operations = Vec::new();
        let mut forgotten_operations = 0;
        for (service, entry) in known.services.iter_mut() {
            if entry.seen.last() < cutoff_unix_ms {
                forget_services.push(service.clone());
                forgotten_operations += entry.ops.len();
                continue;
            }
            if let Some(at) = entry.seen.untold(granularity_ms) {
                seen_services.push((service.clone(), at));
            }
            entry.ops.retain(|op, seen| {
                if seen.last() < cutoff_unix_ms {
                    forget_operations.push((service.clone(), op.clone()));
                    return false;
                }
                if let Some(at) = seen.untold(granularity_ms) {
                    seen_operations.push((service.clone(), op.clone(), at));
                }
                true
            });
        }
        for service in &forget_services {
            known.services.remove(service);
        }
        forgotten_operations += forget_operations.len();
        known.operations -= forgotten_operations;
        let forgotten = (forget_services.len(), forgotten_operations);
        let mut changes = Vec::new();
        if !seen_services.is_empty() || !seen_operations.is_empty() {
            changes.push(CatalogChange::Seen {
                services: seen_services,
                operations: seen_operations,
            });
        }
        if !forget_services.is_empty() || !forget_operations.is_empty() {
            changes.push(CatalogChange::Forget {
                services: forget_services,
                operations: forget_operations,
            });
        }
        if !changes.is_empty() {
            send(changes);
        }
        forgotten
    }
}

#[cfg(test)]
mod tests;
