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
//! operation bounds reached is still listed, without operations. Entries are never
//! removed while the process runs (nor by retention).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use meshtel_model::log_window::LogWindow;
use meshtel_model::{Operation, SpanKind};
use parking_lot::{Mutex, RwLock};
use tracing::warn;

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

    pub(crate) fn extend(&mut self, more: CatalogAdditions) {
        self.services.extend(more.services);
        self.operations.extend(more.operations);
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

#[derive(Default)]
struct Known {
    services: BTreeMap<String, BTreeSet<Operation>>,
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

    /// Replaces the whole catalog with what SQL holds (at open, and for a read-only
    /// store at each reload). Not bounded: SQL holds what a writer listed within its
    /// bounds.
    pub(crate) fn replace(&self, services: Vec<String>, operations: Vec<(String, Operation)>) {
        let mut known = Known::default();
        for service in services {
            known.services.entry(service).or_default();
        }
        for (service, op) in operations {
            if known.services.entry(service).or_default().insert(op) {
                known.operations += 1;
            }
        }
        *self.known.write() = known;
    }

    /// Lists the services and operations of `seen` not listed yet, within the bounds;
    /// refused entries are added to `overflow` and logged (at most one WARN per bound
    /// per [`meshtel_model::log_window::LOG_INTERVAL`], with a count). Returns what was
    /// added and the lines logged.
    pub(crate) fn register(
        &self,
        seen: Vec<(String, Operation)>,
        overflow: &AtomicU64,
        now: Instant,
    ) -> Registered {
        let mut registered = Registered::default();
        if seen.is_empty() {
            return registered;
        }
        let fresh: Vec<(String, Operation)> = {
            let known = self.known.read();
            seen.into_iter()
                .filter(|(svc, op)| !known.services.get(svc).is_some_and(|ops| ops.contains(op)))
                .collect()
        };
        if fresh.is_empty() {
            return registered;
        }
        let added = &mut registered.added;
        let mut refused: Vec<(CatalogBound, String)> = Vec::new();
        {
            let mut known = self.known.write();
            let known = &mut *known;
            for (svc, op) in fresh {
                if !known.services.contains_key(&svc) {
                    if known.services.len() >= self.max_services {
                        refused.push((CatalogBound::Services, svc));
                        continue;
                    }
                    known.services.insert(svc.clone(), BTreeSet::new());
                    added.services.push(svc.clone());
                }
                let Some(ops) = known.services.get_mut(&svc) else {
                    continue;
                };
                if ops.contains(&op) {
                    continue;
                }
                if ops.len() >= self.max_operations_per_service {
                    refused.push((CatalogBound::OperationsPerService, svc));
                } else if known.operations >= self.max_operations {
                    refused.push((CatalogBound::Operations, svc));
                } else {
                    ops.insert(op.clone());
                    known.operations += 1;
                    added.operations.push((svc, op));
                }
            }
        }
        if !refused.is_empty() {
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
            .map(|ops| {
                ops.iter()
                    .filter(|op| kind.is_none_or(|k| op.span_kind == k))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
