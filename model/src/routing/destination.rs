//! The compiled `DestinationRule`: a host's subsets and traffic policy (load balancer,
//! connection pool limits, outlier detection), and what merging rules of one host made
//! of it ([`super::RuleSet::new`]).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::ExportTo;
use super::load;

/// One `DestinationRule`.
#[derive(Debug, Clone, Serialize)]
pub struct DestinationRule {
    /// `metadata.name`.
    pub name: String,
    /// `metadata.namespace`.
    pub namespace: String,
    /// `file#document` it came from.
    pub source: String,
    /// `spec.host`, qualified.
    pub host: String,
    /// `spec.trafficPolicy` (defaults filled in).
    pub traffic_policy: TrafficPolicy,
    /// `spec.subsets`, each policy already merged over the rule's.
    pub subsets: Vec<Subset>,
    /// `spec.exportTo`: the namespaces whose proxies apply it.
    pub export_to: ExportTo,
    /// Later rules of the same host, namespace and `exportTo` merged into this one (only
    /// in the rules [`super::RuleSet::destination_rule`] answers with).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub merged: Vec<MergedRule>,
    /// The policies as written, before defaults and merging: what a merge needs.
    #[serde(skip)]
    pub(crate) written: load::WrittenPolicies,
}

impl DestinationRule {
    /// The subset called `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.subsets.iter().find(|s| s.name == name)
    }

    /// Whether `rule` (one object as loaded) is this rule or was merged into it.
    pub fn includes(&self, rule: &DestinationRule) -> bool {
        self.source == rule.source || self.merged.iter().any(|m| m.source == rule.source)
    }
}

/// A destination rule merged into an earlier one of its host, namespace and `exportTo`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MergedRule {
    /// `metadata.name`.
    pub name: String,
    /// `file#document` it came from.
    pub source: String,
    /// Its subsets the merged rule took (the others' names were taken).
    pub subsets: Vec<String>,
    /// Whether its traffic policy is the merged rule's (the earlier ones had none).
    pub traffic_policy: bool,
}

/// One `subsets[]` entry.
#[derive(Debug, Clone, Serialize)]
pub struct Subset {
    /// `name`.
    pub name: String,
    /// `labels`: an endpoint belongs when it has every one.
    pub labels: BTreeMap<String, String>,
    /// The subset's `trafficPolicy` merged over the rule's: each of `loadBalancer`,
    /// `connectionPool`, `outlierDetection` given at the subset replaces the rule's.
    pub traffic_policy: TrafficPolicy,
}

/// `trafficPolicy`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct TrafficPolicy {
    /// `loadBalancer.simple`.
    pub load_balancer: LoadBalancer,
    /// `connectionPool`.
    pub connection_pool: ConnectionPool,
    /// `outlierDetection`; `None` disables ejection.
    pub outlier_detection: Option<OutlierDetection>,
}

/// `loadBalancer.simple`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadBalancer {
    /// `ROUND_ROBIN` (meshtel's default).
    #[default]
    RoundRobin,
    /// `RANDOM`.
    Random,
    /// `LEAST_REQUEST` (also `LEAST_CONN`): the less busy of two random endpoints.
    LeastRequest,
}

/// `connectionPool`; `None` = unlimited (Istio's defaults are 2³²−1).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ConnectionPool {
    /// `tcp.maxConnections`: HTTP/1.1 connections (so requests in flight) to the
    /// destination; more wait as pending.
    pub max_connections: Option<u32>,
    /// `tcp.connectTimeout`.
    pub connect_timeout: Option<Duration>,
    /// `http.http1MaxPendingRequests`: requests waiting for a connection; beyond, 503 `UO`.
    pub http1_max_pending_requests: Option<u32>,
    /// `http.http2MaxRequests`: requests in flight to the destination; beyond, 503 `UO`.
    pub http2_max_requests: Option<u32>,
    /// `http.maxRequestsPerConnection`: a connection is closed after this many.
    pub max_requests_per_connection: Option<u32>,
    /// `http.maxRetries`: retries in flight to the destination; beyond, no retry (`UO`).
    pub max_retries: Option<u32>,
}

/// `outlierDetection`, defaults filled in.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutlierDetection {
    /// `consecutive5xxErrors` (default 5; 0 disables).
    pub consecutive_5xx_errors: u32,
    /// `consecutiveGatewayErrors` (502, 503, 504 and connect failures; default 0 =
    /// off), or the legacy `consecutiveErrors` when only that is given.
    pub consecutive_gateway_errors: u32,
    /// `interval` (default 10 s): how often ejections are reviewed.
    pub interval: Duration,
    /// `baseEjectionTime` (default 30 s), times the number of ejections so far.
    pub base_ejection_time: Duration,
    /// `maxEjectionPercent` (default 10; at least one endpoint can always be ejected).
    pub max_ejection_percent: u32,
}

impl Default for OutlierDetection {
    fn default() -> OutlierDetection {
        OutlierDetection {
            consecutive_5xx_errors: 5,
            consecutive_gateway_errors: 0,
            interval: Duration::from_secs(10),
            base_ejection_time: Duration::from_secs(30),
            max_ejection_percent: 10,
        }
    }
}
