//! One destination cluster (a service, or one subset of it) and its runtime state:
//! load balancing, connection-pool limits (circuit breaking) and outlier ejection.
//!
//! - **Load balancing** over the endpoints not ejected: round robin, random, or least
//!   request (the less busy of two random endpoints).
//! - **Connection pool.** HTTP/1.1 carries one request per connection at a time, so
//!   `tcp.maxConnections` bounds the requests in flight to the cluster; further ones
//!   wait, at most `http.http1MaxPendingRequests` of them, and the rest are refused
//!   (503 `UO`). `http.http2MaxRequests` bounds requests in flight over any protocol,
//!   `http.maxRetries` the retries in flight. `http.maxRequestsPerConnection` closes
//!   an HTTP/1.1 connection after that many requests (`Connection: close` on every
//!   n-th request of the cluster: exact for 1, on average otherwise).
//! - **Outlier detection.** Consecutive 5xx (and gateway errors: 502, 503, 504, connect
//!   failures, timeouts) per endpoint; at the threshold the endpoint is ejected for
//!   `baseEjectionTime` × the times it has been ejected (capped at 300 s, as Envoy's
//!   `max_ejection_time`), while fewer than `maxEjectionPercent` of the endpoints are
//!   ejected (one always may be). The multiplier decays by one per `interval` an
//!   endpoint stays healthy. Ejection ends exactly when its time is up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use meshtel_model::routing::{LoadBalancer, TrafficPolicy};
use parking_lot::Mutex;
use rand::Rng;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::warn;

use crate::pool::{POOL_IDLE_TIMEOUT, PoolSettings, UpstreamPool};
use crate::mesh::{Endpoint, ServiceNames, WorkloadIdentity};
use crate::stats::RoutingStats;

/// Longest ejection, whatever the multiplier (Envoy's default `max_ejection_time`).
pub const MAX_EJECTION_TIME: Duration = Duration::from_secs(300);

/// A service or subset the proxy sends requests to.
#[derive(Debug)]
pub struct Cluster {
    /// `fqdn` or `fqdn|subset`.
    pub name: String,
    /// Service FQDN, short name and namespace (shared with the records of its requests).
    pub service: Arc<ServiceNames>,
    /// Subset name, if this is a subset.
    pub subset: Option<String>,
    /// The policy in force for it.
    pub policy: TrafficPolicy,
    /// Its endpoints (the service's, filtered by the subset's labels).
    pub endpoints: Vec<ClusterEndpoint>,
    rr: AtomicUsize,
    connections: Option<Arc<Semaphore>>,
    pending: AtomicU32,
    in_flight: AtomicU32,
    retries_in_flight: AtomicU32,
    requests: AtomicU64,
    ejected: AtomicU32,
    stats: RoutingStats,
    /// Own client pools when the policy sets `tcp.connectTimeout`; else the proxy's.
    pub pool: Option<UpstreamPool>,
}

/// One endpoint of a cluster.
#[derive(Debug)]
pub struct ClusterEndpoint {
    /// `host:port` of its proxy's inbound listener (shared with the records of its
    /// requests).
    pub address: Arc<str>,
    /// The workload there.
    pub workload: Arc<WorkloadIdentity>,
    /// Its cluster id; `None`: this proxy's own cluster.
    pub cluster: Option<Arc<str>>,
    active: AtomicU32,
    ejected: AtomicBool,
    outlier: Mutex<OutlierState>,
}

#[derive(Debug)]
struct OutlierState {
    consecutive_5xx: u32,
    consecutive_gateway: u32,
    ejected_until: Option<Instant>,
    times_ejected: u32,
    healthy_since: Instant,
}

/// What became of one attempt, for outlier detection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// A response with this status.
    Status(u16),
    /// No response: connect failure, reset or timeout (a gateway error).
    LocalFailure,
}

/// Why a request was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Overflow {
    /// `http2MaxRequests` requests are in flight.
    MaxRequests,
    /// `maxConnections` are busy and `http1MaxPendingRequests` are already waiting.
    MaxPending,
    /// The request's timeout passed while it waited for a connection under
    /// `maxConnections`: a timeout (504 `UT`, as Envoy answers it), not an overflow.
    TimedOut,
}

impl Overflow {
    /// The limit's name, for errors and metrics (the route's timeout for
    /// [`Overflow::TimedOut`]).
    pub fn limit(self) -> &'static str {
        match self {
            Overflow::MaxRequests => "http2MaxRequests",
            Overflow::MaxPending => "http1MaxPendingRequests",
            Overflow::TimedOut => "timeout",
        }
    }
}

/// A request admitted to a cluster; releases its slot when dropped.
#[derive(Debug)]
pub struct Admission {
    cluster: Arc<Cluster>,
    _connection: Option<OwnedSemaphorePermit>,
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.cluster.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Picks a retry makes to find an endpoint it has not tried (Istio's
/// `host_selection_retry_max_attempts`).
pub const HOST_SELECTION_ATTEMPTS: usize = 5;

/// An endpoint chosen for one attempt; counts as active (least request) until dropped.
#[derive(Debug)]
pub struct EndpointLease {
    cluster: Arc<Cluster>,
    index: usize,
}

impl EndpointLease {
    /// The endpoint's position in its cluster.
    pub fn index(&self) -> usize {
        self.index
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &ClusterEndpoint {
        &self.cluster.endpoints[self.index]
    }

    /// Feeds the attempt's outcome to outlier detection.
    pub fn record(&self, outcome: Outcome) {
        self.cluster.record(self.index, outcome, Instant::now());
    }
}

impl Drop for EndpointLease {
    fn drop(&mut self) {
        self.cluster.endpoints[self.index].active.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What one forwarded request holds of its cluster until its response ends.
#[derive(Debug)]
pub struct UpstreamHold {
    /// Its pool slot.
    pub admission: Admission,
    /// Its endpoint.
    pub lease: EndpointLease,
    /// Its retry slot, when the response came from a retry.
    pub retry: Option<RetryPermit>,
}

/// A retry in flight (`maxRetries`); released when dropped.
#[derive(Debug)]
pub struct RetryPermit {
    cluster: Arc<Cluster>,
}

impl Drop for RetryPermit {
    fn drop(&mut self) {
        self.cluster.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Cluster {
    /// A cluster of `endpoints` under `policy`.
    pub fn new(
        name: String,
        service: ServiceNames,
        subset: Option<String>,
        policy: TrafficPolicy,
        endpoints: &[&Endpoint],
        stats: RoutingStats,
    ) -> Cluster {
        let now = Instant::now();
        let connections = policy.connection_pool.max_connections.map(|n| Arc::new(Semaphore::new(n as usize)));
        let pool = policy
            .connection_pool
            .connect_timeout
            .map(|connect_timeout| UpstreamPool::new(PoolSettings { connect_timeout, idle_timeout: POOL_IDLE_TIMEOUT }));
        Cluster {
            name,
            service: Arc::new(service),
            subset,
            endpoints: endpoints
                .iter()
                .map(|e| ClusterEndpoint {
                    address: e.address.as_str().into(),
                    workload: e.workload.clone(),
                    cluster: e.cluster.clone(),
                    active: AtomicU32::new(0),
                    ejected: AtomicBool::new(false),
                    outlier: Mutex::new(OutlierState {
                        consecutive_5xx: 0,
                        consecutive_gateway: 0,
                        ejected_until: None,
                        times_ejected: 0,
                        healthy_since: now,
                    }),
                })
                .collect(),
            policy,
            rr: AtomicUsize::new(0),
            connections,
            pending: AtomicU32::new(0),
            in_flight: AtomicU32::new(0),
            retries_in_flight: AtomicU32::new(0),
            requests: AtomicU64::new(0),
            ejected: AtomicU32::new(0),
            stats,
            pool,
        }
    }

    /// Whether `other` has the same endpoints and policy (its state can carry over).
    pub fn same_shape(&self, endpoints: &[&Endpoint], policy: &TrafficPolicy) -> bool {
        self.policy == *policy
            && self.endpoints.len() == endpoints.len()
            && self.endpoints.iter().zip(endpoints).all(|(a, b)| *a.address == *b.address && a.workload == b.workload && a.cluster == b.cluster)
    }

    /// Admits a request under the connection-pool limits. HTTP/1.1 requests beyond
    /// `maxConnections` wait (at most `http1MaxPendingRequests` of them) until
    /// `deadline`.
    pub async fn admit(self: &Arc<Self>, http2: bool, deadline: Option<Instant>) -> Result<Admission, Overflow> {
        let pool = &self.policy.connection_pool;
        let in_flight = self.in_flight.fetch_add(1, Ordering::Relaxed);
        // From here on the slot is released by `Admission`'s drop, or below.
        let release = |cluster: &Cluster, overflow: Overflow| {
            cluster.in_flight.fetch_sub(1, Ordering::Relaxed);
            cluster.stats.overflows.with_label_values(&[overflow.limit()]).inc();
            Err(overflow)
        };
        if pool.http2_max_requests.is_some_and(|max| in_flight >= max) {
            return release(self, Overflow::MaxRequests);
        }
        let connection = match (&self.connections, http2) {
            (Some(connections), false) => match connections.clone().try_acquire_owned() {
                Ok(permit) => Some(permit),
                Err(_) => {
                    let waiting = self.pending.fetch_add(1, Ordering::Relaxed);
                    if pool.http1_max_pending_requests.is_some_and(|max| waiting >= max) {
                        self.pending.fetch_sub(1, Ordering::Relaxed);
                        return release(self, Overflow::MaxPending);
                    }
                    let acquire = connections.clone().acquire_owned();
                    // Boxed: the wait is rare and would otherwise enlarge every request's
                    // future.
                    let acquired = match deadline {
                        Some(deadline) => Box::pin(tokio::time::timeout_at(deadline.into(), acquire)).await.ok(),
                        None => Some(Box::pin(acquire).await),
                    };
                    self.pending.fetch_sub(1, Ordering::Relaxed);
                    match acquired {
                        Some(Ok(permit)) => Some(permit),
                        // The request's time ran out while it waited: not an overflow.
                        None => {
                            self.in_flight.fetch_sub(1, Ordering::Relaxed);
                            return Err(Overflow::TimedOut);
                        }
                        // The semaphore closed (never, while the cluster lives).
                        Some(Err(_)) => return release(self, Overflow::MaxPending),
                    }
                }
            },
            _ => None,
        };
        Ok(Admission { cluster: self.clone(), _connection: connection })
    }

    /// A retry slot under `maxRetries`; `None` when the budget is spent.
    pub fn try_retry(self: &Arc<Self>) -> Option<RetryPermit> {
        let in_flight = self.retries_in_flight.fetch_add(1, Ordering::Relaxed);
        if self.policy.connection_pool.max_retries.is_some_and(|max| in_flight >= max) {
            self.retries_in_flight.fetch_sub(1, Ordering::Relaxed);
            self.stats.overflows.with_label_values(&["maxRetries"]).inc();
            return None;
        }
        Some(RetryPermit { cluster: self.clone() })
    }

    /// Whether this request should close its HTTP/1.1 connection
    /// (`maxRequestsPerConnection`).
    pub fn close_connection_after(&self) -> bool {
        match self.policy.connection_pool.max_requests_per_connection {
            Some(1) => true,
            Some(n) => (self.requests.fetch_add(1, Ordering::Relaxed) + 1).is_multiple_of(u64::from(n)),
            None => false,
        }
    }

    /// Picks an endpoint that is not ejected, by the cluster's load-balancing policy.
    pub fn pick(self: &Arc<Self>) -> Option<EndpointLease> {
        let n = self.endpoints.len();
        if n == 0 {
            return None;
        }
        let now = Instant::now();
        let index = match self.policy.load_balancer {
            LoadBalancer::RoundRobin => self.scan_from(self.rr.fetch_add(1, Ordering::Relaxed) % n, now),
            LoadBalancer::Random => self.scan_from(rand::rng().random_range(0..n), now),
            LoadBalancer::LeastRequest => {
                let mut rng = rand::rng();
                let a = self.scan_from(rng.random_range(0..n), now);
                let b = self.scan_from(rng.random_range(0..n), now);
                match (a, b) {
                    (Some(a), Some(b)) => {
                        let load = |i: usize| self.endpoints[i].active.load(Ordering::Relaxed);
                        Some(if load(b) < load(a) { b } else { a })
                    }
                    (a, b) => a.or(b),
                }
            }
        }?;
        self.endpoints[index].active.fetch_add(1, Ordering::Relaxed);
        Some(EndpointLease { cluster: self.clone(), index })
    }

    /// As [`Cluster::pick`], avoiding the endpoints a request already tried (Istio's
    /// default `previous_hosts` retry predicate): up to [`HOST_SELECTION_ATTEMPTS`]
    /// picks, then whatever the last one gave (a cluster of one endpoint, or every
    /// other one ejected).
    pub fn pick_avoiding(self: &Arc<Self>, tried: &[usize]) -> Option<EndpointLease> {
        let mut lease = self.pick()?;
        for _ in 1..HOST_SELECTION_ATTEMPTS {
            if !tried.contains(&lease.index) {
                break;
            }
            lease = self.pick()?;
        }
        Some(lease)
    }

    /// Endpoints ejected right now.
    pub fn ejected_count(&self) -> u32 {
        self.ejected.load(Ordering::Relaxed)
    }

    fn scan_from(&self, start: usize, now: Instant) -> Option<usize> {
        let n = self.endpoints.len();
        (0..n).map(|i| (start + i) % n).find(|&i| !self.is_ejected(i, now))
    }

    fn is_ejected(&self, index: usize, now: Instant) -> bool {
        let endpoint = &self.endpoints[index];
        if !endpoint.ejected.load(Ordering::Relaxed) {
            return false;
        }
        let mut state = endpoint.outlier.lock();
        match state.ejected_until {
            Some(until) if now < until => true,
            Some(_) => {
                state.ejected_until = None;
                state.healthy_since = now;
                endpoint.ejected.store(false, Ordering::Relaxed);
                self.ejected.fetch_sub(1, Ordering::Relaxed);
                false
            }
            None => false,
        }
    }

    fn record(&self, index: usize, outcome: Outcome, now: Instant) {
        let Some(detection) = &self.policy.outlier_detection else {
            return;
        };
        let endpoint = &self.endpoints[index];
        let mut state = endpoint.outlier.lock();
        if state.ejected_until.is_some() {
            return;
        }
        let (server_error, gateway_error) = match outcome {
            Outcome::Status(status) => (status >= 500, matches!(status, 502..=504)),
            Outcome::LocalFailure => (true, true),
        };
        state.consecutive_5xx = if server_error { state.consecutive_5xx + 1 } else { 0 };
        state.consecutive_gateway = if gateway_error { state.consecutive_gateway + 1 } else { 0 };
        let tripped = (detection.consecutive_5xx_errors > 0 && state.consecutive_5xx >= detection.consecutive_5xx_errors)
            || (detection.consecutive_gateway_errors > 0 && state.consecutive_gateway >= detection.consecutive_gateway_errors);
        if !tripped {
            return;
        }
        let ejected = self.ejected.load(Ordering::Relaxed) as usize;
        // The share ejected with this one counts against the bound; one always may go.
        let allowed = detection.max_ejection_percent > 0
            && (ejected == 0 || (ejected + 1) * 100 <= detection.max_ejection_percent as usize * self.endpoints.len());
        if !allowed {
            return;
        }
        let healthy_intervals = if detection.interval.is_zero() {
            0
        } else {
            u32::try_from(now.duration_since(state.healthy_since).as_nanos() / detection.interval.as_nanos()).unwrap_or(u32::MAX)
        };
        state.times_ejected = state.times_ejected.saturating_sub(healthy_intervals) + 1;
        let ejection = detection.base_ejection_time.saturating_mul(state.times_ejected).min(MAX_EJECTION_TIME);
        state.ejected_until = Some(now + ejection);
        state.consecutive_5xx = 0;
        state.consecutive_gateway = 0;
        endpoint.ejected.store(true, Ordering::Relaxed);
        self.ejected.fetch_add(1, Ordering::Relaxed);
        self.stats.ejections.inc();
        warn!(
            cluster = %self.name,
            endpoint = %endpoint.address,
            workload = %endpoint.workload.name,
            ejection_ms = ejection.as_millis() as u64,
            times_ejected = state.times_ejected,
            "outlier ejected"
        );
    }

    /// The cluster's state for `/config_dump`.
    pub fn dump(&self) -> ClusterDump {
        let now = Instant::now();
        ClusterDump {
            name: self.name.clone(),
            service: self.service.0.clone(),
            subset: self.subset.clone(),
            policy: self.policy.clone(),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            pending: self.pending.load(Ordering::Relaxed),
            endpoints: self
                .endpoints
                .iter()
                .map(|e| {
                    let state = e.outlier.lock();
                    EndpointDump {
                        address: e.address.to_string(),
                        workload: e.workload.name.clone(),
                        version: e.workload.version.clone(),
                        active: e.active.load(Ordering::Relaxed),
                        ejected_for_ms: state.ejected_until.filter(|u| *u > now).map(|u| (u - now).as_millis() as u64),
                        times_ejected: state.times_ejected,
                    }
                })
                .collect(),
        }
    }
}

/// A cluster as `/config_dump` shows it.
#[derive(Debug, Serialize)]
pub struct ClusterDump {
    /// `fqdn` or `fqdn|subset`.
    pub name: String,
    /// Service FQDN.
    pub service: String,
    /// Subset.
    pub subset: Option<String>,
    /// Policy in force.
    pub policy: TrafficPolicy,
    /// Requests in flight.
    pub in_flight: u32,
    /// Requests waiting for a connection.
    pub pending: u32,
    /// Endpoints.
    pub endpoints: Vec<EndpointDump>,
}

/// An endpoint as `/config_dump` shows it.
#[derive(Debug, Serialize)]
pub struct EndpointDump {
    /// Address.
    pub address: String,
    /// Workload name.
    pub workload: String,
    /// Version label.
    pub version: String,
    /// Requests in flight.
    pub active: u32,
    /// Remaining ejection, when ejected.
    pub ejected_for_ms: Option<u64>,
    /// Ejection multiplier.
    pub times_ejected: u32,
}
