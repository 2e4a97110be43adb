//! Command line ([`ProxyArgs`], flattenable into the root `meshtel proxy`) and the
//! validated configuration it becomes ([`ProxyConfig`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};
use crate::mesh::WorkloadIdentity;
use crate::quota::{self, QuotaSettings};

/// Default outbound listener (the app's calls to other services).
pub const DEFAULT_OUTBOUND: &str = "127.0.0.1:15001";
/// Default admin listener.
pub const DEFAULT_ADMIN: &str = "127.0.0.1:15000";
/// Default collector gRPC endpoint (Report stream and OTLP).
pub const DEFAULT_COLLECTOR: &str = "http://127.0.0.1:4317";
/// Default cluster id: Istio's own default (`global.multiCluster.clusterName`), which
/// Kiali expects in `source_cluster` / `destination_cluster`.
pub const DEFAULT_CLUSTER: &str = "Kubernetes";

/// `meshtel-proxy` / `meshtel proxy` flags; every flag has a `MESHTEL_PROXY_*` twin.
///
/// `--version` is the instance's version label: a command flattening these args must
/// set `disable_version_flag = true`.
#[derive(Debug, Clone, clap::Args)]
pub struct ProxyArgs {
    /// Mesh file (YAML): services, their endpoints and labels; reloaded on change.
    #[arg(long, env = "MESHTEL_PROXY_MESH")]
    pub mesh: PathBuf,
    /// Traffic rules: a directory of Istio `VirtualService` / `DestinationRule` YAML
    /// (`networking.istio.io` v1alpha3/v1beta1/v1); reloaded on change, a bad edit is
    /// rejected and the last good rules stay.
    #[arg(long, env = "MESHTEL_PROXY_RULES")]
    pub rules: Option<PathBuf>,
    /// Name of the service this proxy's app belongs to, e.g. `reviews`.
    #[arg(long, env = "MESHTEL_PROXY_SERVICE")]
    pub service: String,
    /// Namespace of this instance.
    #[arg(long, env = "MESHTEL_PROXY_NAMESPACE", default_value = "default")]
    pub namespace: String,
    /// Version label of this instance, e.g. `v2`.
    #[arg(long, env = "MESHTEL_PROXY_VERSION", default_value = "")]
    pub version: String,
    /// `app` label of this instance [default: the service name].
    #[arg(long, env = "MESHTEL_PROXY_APP")]
    pub app: Option<String>,
    /// Workload name [default: `<service>-<version>`, or the service without a version].
    #[arg(long, env = "MESHTEL_PROXY_WORKLOAD")]
    pub workload: Option<String>,
    /// Cluster id of this instance (`source_cluster` / `destination_cluster`, Istio's
    /// `global.multiCluster.clusterName`); also the cluster of mesh-file endpoints that
    /// name none.
    #[arg(long, env = "MESHTEL_PROXY_CLUSTER", default_value = DEFAULT_CLUSTER)]
    pub cluster: String,
    /// Inbound listener and the local app it forwards to: `LISTEN=APP`, e.g.
    /// `127.0.0.1:15006=127.0.0.1:9080` (LISTEN an IP address and port, `[::1]:15006` for
    /// IPv6; APP may be a host name). Without it the proxy only handles outbound calls.
    #[arg(long, env = "MESHTEL_PROXY_INBOUND")]
    pub inbound: Option<InboundSpec>,
    /// Protocol the inbound listener speaks to the local app: `auto` (the caller's:
    /// HTTP/1.1 or h2c) or `http1` (always HTTP/1.1: an app that does not speak h2c
    /// still serves h2c callers; gRPC needs h2c end to end).
    #[arg(long, env = "MESHTEL_PROXY_APP_PROTOCOL", value_enum, default_value_t = AppProtocol::Auto)]
    pub app_protocol: AppProtocol,
    /// Outbound listener the app sends its calls to: an IP address and port
    /// (`127.0.0.1:15001`, `[::1]:15001`), not a host name.
    #[arg(long, env = "MESHTEL_PROXY_OUTBOUND", default_value = DEFAULT_OUTBOUND)]
    pub outbound: SocketAddr,
    /// Admin listener: /healthz, /ready, /stats/prometheus, /config_dump. An IP address
    /// and port, not a host name.
    #[arg(long, env = "MESHTEL_PROXY_ADMIN", default_value = DEFAULT_ADMIN)]
    pub admin: SocketAddr,
    /// Collector gRPC endpoint for the Report stream and OTLP spans: `http://host:port`
    /// (cleartext HTTP/2; no TLS).
    #[arg(long, env = "MESHTEL_PROXY_COLLECTOR", default_value = DEFAULT_COLLECTOR)]
    pub collector: String,
    /// Percentage of new traces to sample (0-100); callers' sampling decisions win.
    #[arg(long, env = "MESHTEL_PROXY_SAMPLING", default_value_t = 1.0)]
    pub sampling: f64,
    /// Write the bound listener addresses here as JSON (useful with port 0).
    #[arg(long, env = "MESHTEL_PROXY_LISTENERS_FILE")]
    pub listeners_file: Option<PathBuf>,
    /// Request records held while the collector is slow or down; beyond, dropped.
    /// 1 to 1000000 (a record is a few hundred bytes).
    #[arg(long, env = "MESHTEL_PROXY_REPORT_QUEUE", default_value_t = 10_000)]
    pub report_queue: usize,
    /// Spans queued for export; beyond, dropped. 1 to 100000 (a span is about a KiB). The
    /// batch being sent holds up to 512 more.
    #[arg(long, env = "MESHTEL_PROXY_SPAN_QUEUE", default_value_t = 2_048)]
    pub span_queue: usize,
    /// Longest wait for an upstream's response headers once the request body is in (`0s` = no limit).
    /// A gRPC call waits as its `grpc-timeout` says instead (no limit without one).
    #[arg(long, env = "MESHTEL_PROXY_REQUEST_TIMEOUT", default_value = "15s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub request_timeout: Duration,
    /// Longest pause in the arrival of a request or response body (Envoy's stream idle
    /// timeout, flag `SI`; `0s` = no limit). A stalled request body is answered 408 and
    /// its connection closed; a response body the upstream stops sending is cut short
    /// downstream (its status is already sent) and its upstream connection closed.
    /// Long polls that may stay silent longer need `0s` or a longer limit; gRPC
    /// streams get at least 5 minutes (Envoy's stream idle timeout).
    #[arg(long, env = "MESHTEL_PROXY_BODY_IDLE_TIMEOUT", default_value = "30s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub body_idle_timeout: Duration,
    /// Upstream TCP connect timeout; more than 0s.
    #[arg(long, env = "MESHTEL_PROXY_CONNECT_TIMEOUT", default_value = "1s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub connect_timeout: Duration,
    /// Id of this proxy in the Report stream [default: `<workload>.<namespace>-<pid>`].
    #[arg(long, env = "MESHTEL_PROXY_ID")]
    pub proxy_id: Option<String>,
    /// Lease quota tokens ahead from the collector and answer most inbound requests
    /// locally (`--quota-prefetch=false`: one Check per request).
    #[arg(long, env = "MESHTEL_PROXY_QUOTA_PREFETCH", default_value_t = true, action = clap::ArgAction::Set)]
    pub quota_prefetch: bool,
    /// Longest wait for the collector's quota answer; then the failure mode decides.
    #[arg(long, env = "MESHTEL_PROXY_QUOTA_TIMEOUT", default_value = "20ms", value_parser = meshtel_model::duration::parse_config_duration)]
    pub quota_timeout: Duration,
    /// Deny (500, flag `RLSE`) instead of allowing when the collector cannot answer a
    /// quota check.
    #[arg(long, env = "MESHTEL_PROXY_QUOTA_FAIL_CLOSED")]
    pub quota_fail_closed: bool,
    /// Smallest lease asked for (capped at a tenth of the limit, at least 1).
    #[arg(long, env = "MESHTEL_PROXY_QUOTA_MIN_PREFETCH", default_value_t = quota::DEFAULT_MIN_PREFETCH)]
    pub quota_min_prefetch: u64,
    /// Demand over this window predicts the next lease's size.
    #[arg(long, env = "MESHTEL_PROXY_QUOTA_PREDICT_WINDOW", default_value = "1s", value_parser = meshtel_model::duration::parse_config_duration)]
    pub quota_predict_window: Duration,
    /// Worker threads serving the inbound and outbound listeners, each with its own
    /// event loop and upstream connection pools (Istio's `concurrency`); `0` = one per
    /// CPU this process may use [default: 2, or fewer when fewer CPUs are available].
    #[arg(long, env = "MESHTEL_PROXY_CONCURRENCY")]
    pub concurrency: Option<usize>,
}

/// What the inbound listener speaks to the local app.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum AppProtocol {
    /// The caller's protocol.
    #[default]
    Auto,
    /// HTTP/1.1 whatever the caller spoke.
    Http1,
}

/// `LISTEN=APP` of `--inbound`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboundSpec {
    /// Where the inbound listener binds.
    pub listen: SocketAddr,
    /// `host:port` of the local app.
    pub app: String,
}

impl FromStr for InboundSpec {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<InboundSpec, String> {
        let (listen, app) = text.split_once('=').ok_or_else(|| format!("{text:?} is not LISTEN=APP"))?;
        let listen = listen.trim().parse().map_err(|e| format!("listen address {listen:?}: {e}"))?;
        let app = app.trim();
        if !crate::mesh::is_host_port(app) {
            return Err(format!("app address {app:?} is not host:port with a port from 0 to 65535"));
        }
        Ok(InboundSpec { listen, app: app.to_owned() })
    }
}

/// The proxy's validated configuration.
#[derive(Debug, Clone)]
pub struct ProxyConfig {
    /// Mesh file path.
    pub mesh_file: PathBuf,
    /// Traffic rules directory, if any.
    pub rules_dir: Option<PathBuf>,
    /// Service short name of this instance.
    pub service: String,
    /// This instance's workload identity (name, namespace, app, version).
    pub identity: WorkloadIdentity,
    /// The cluster this instance runs in.
    pub cluster: String,
    /// Inbound listener and local app, if any.
    pub inbound: Option<InboundSpec>,
    /// What the inbound listener speaks to the local app.
    pub app_protocol: AppProtocol,
    /// Outbound listener.
    pub outbound: SocketAddr,
    /// Admin listener.
    pub admin: SocketAddr,
    /// Collector endpoint URI.
    pub collector: String,
    /// Head sampling percentage for new traces.
    pub sample_percent: f64,
    /// Where to write the bound addresses.
    pub listeners_file: Option<PathBuf>,
    /// Record queue capacity.
    pub report_queue: usize,
    /// Span queue capacity.
    pub span_queue: usize,
    /// Upstream response-header timeout; `None` = no limit.
    pub request_timeout: Option<Duration>,
    /// Longest pause in a request or response body's arrival; `None` = no limit.
    pub body_idle_timeout: Option<Duration>,
    /// Upstream connect timeout.
    pub connect_timeout: Duration,
    /// Id in the Report stream.
    pub proxy_id: String,
    /// Quota enforcement on the inbound listener.
    pub quota: QuotaSettings,
    /// Worker threads serving the inbound and outbound listeners (at least 1).
    pub concurrency: usize,
}

/// `--body-idle-timeout`'s default: the downstream header read timeout's 30 s.
pub const DEFAULT_BODY_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Longest workload name, namespace, app, version or cluster a proxy stands for, or
/// takes from a caller's identity headers: a Kubernetes name's limit, below the
/// collector's default `[report] max_label_bytes` (256), past which it refuses records.
pub const MAX_IDENTITY_BYTES: usize = 253;

/// Most worker threads `--concurrency` accepts.
pub const MAX_CONCURRENCY: usize = 256;

/// Most records `--report-queue` accepts: 100 times the default, a few hundred MiB of
/// encoded records at most, minutes of a busy proxy's traffic while the collector is
/// down. A sidecar holding more would be a memory problem before it was a help.
pub const MAX_REPORT_QUEUE: usize = 1_000_000;

/// Most spans `--span-queue` accepts: about 50 times the default, on the order of
/// 100 MiB of spans at most.
pub const MAX_SPAN_QUEUE: usize = 100_000;

/// Istio's default sidecar `concurrency`.
pub const DEFAULT_CONCURRENCY: usize = 2;

/// Worker threads for `--concurrency`: `0` is one per available CPU; unset is
/// [`DEFAULT_CONCURRENCY`], or fewer when the process may use fewer CPUs (affinity,
/// cgroup quota).
pub fn resolve_concurrency(requested: Option<usize>) -> usize {
    let available = std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get);
    match requested {
        Some(0) => available,
        Some(workers) => workers,
        None => DEFAULT_CONCURRENCY.min(available),
    }
}

impl ProxyArgs {
    /// Resolves defaults and validates.
    pub fn into_config(self) -> Result<ProxyConfig> {
        let app = self.app.unwrap_or_else(|| self.service.clone());
        let workload = self.workload.unwrap_or_else(|| {
            if self.version.is_empty() { self.service.clone() } else { format!("{}-{}", self.service, self.version) }
        });
        let proxy_id = self.proxy_id.unwrap_or_else(|| format!("{workload}.{}-{}", self.namespace, std::process::id()));
        let config = ProxyConfig {
            mesh_file: self.mesh,
            rules_dir: self.rules,
            service: self.service,
            identity: WorkloadIdentity { name: workload, namespace: self.namespace, app, version: self.version },
            cluster: self.cluster,
            inbound: self.inbound,
            app_protocol: self.app_protocol,
            outbound: self.outbound,
            admin: self.admin,
            collector: self.collector,
            sample_percent: self.sampling,
            listeners_file: self.listeners_file,
            report_queue: self.report_queue,
            span_queue: self.span_queue,
            request_timeout: Some(self.request_timeout).filter(|t| !t.is_zero()),
            body_idle_timeout: Some(self.body_idle_timeout).filter(|t| !t.is_zero()),
            connect_timeout: self.connect_timeout,
            proxy_id,
            quota: QuotaSettings {
                prefetch: self.quota_prefetch,
                timeout: self.quota_timeout,
                fail_closed: self.quota_fail_closed,
                min_prefetch: self.quota_min_prefetch,
                predict_window: self.quota_predict_window,
            },
            concurrency: resolve_concurrency(self.concurrency),
        };
        config.validate()?;
        Ok(config)
    }
}

impl ProxyConfig {
    /// A configuration with defaults for everything but the mesh file and service;
    /// listeners on `127.0.0.1:0` (tests and embedding).
    pub fn for_service(mesh_file: PathBuf, service: &str, version: &str) -> ProxyConfig {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let workload = if version.is_empty() { service.to_owned() } else { format!("{service}-{version}") };
        ProxyConfig {
            mesh_file,
            rules_dir: None,
            service: service.to_owned(),
            identity: WorkloadIdentity {
                name: workload.clone(),
                namespace: "default".to_owned(),
                app: service.to_owned(),
                version: version.to_owned(),
            },
            cluster: DEFAULT_CLUSTER.to_owned(),
            inbound: None,
            app_protocol: AppProtocol::Auto,
            outbound: loopback,
            admin: loopback,
            collector: DEFAULT_COLLECTOR.to_owned(),
            sample_percent: 1.0,
            listeners_file: None,
            report_queue: 10_000,
            span_queue: 2_048,
            request_timeout: Some(Duration::from_secs(15)),
            body_idle_timeout: Some(DEFAULT_BODY_IDLE_TIMEOUT),
            connect_timeout: Duration::from_secs(1),
            proxy_id: format!("{workload}.default"),
            quota: QuotaSettings::default(),
            concurrency: 1,
        }
    }

    /// Checks values clap cannot.
    pub fn validate(&self) -> Result<()> {
        if self.service.is_empty() || self.service.contains('.') {
            return Err(Error::Config(format!("--service {:?} must be a non-empty name without dots", self.service)));
        }
        // These travel to the callee's proxy in headers, and an empty one would read as
        // `unknown`, the peer outside the mesh. The version may be empty (no label).
        let identity = &self.identity;
        for (flag, value, may_be_empty) in [
            // First: the workload and app names default to it.
            ("--service", &self.service, false),
            ("--cluster", &self.cluster, false),
            // Before the workload name, which defaults to `<service>-<version>`.
            ("--version", &identity.version, true),
            ("--workload", &identity.name, false),
            ("--namespace", &identity.namespace, false),
            ("--app", &identity.app, false),
        ] {
            if (value.is_empty() && !may_be_empty) || !value.bytes().all(|b| b.is_ascii_graphic()) {
                let what = if may_be_empty { "visible ASCII without spaces" } else { "non-empty visible ASCII without spaces" };
                return Err(Error::Config(format!("{flag} {value:?} must be {what}")));
            }
            if value.len() > MAX_IDENTITY_BYTES {
                return Err(Error::Config(format!(
                    "{flag} is {} bytes long; at most {MAX_IDENTITY_BYTES} (a Kubernetes name's limit; the collector refuses records with labels past its [report] max_label_bytes, 256 by default)",
                    value.len()
                )));
            }
        }
        if !(0.0..=100.0).contains(&self.sample_percent) {
            return Err(Error::Config(format!("--sampling {} is not a percentage in 0..=100", self.sample_percent)));
        }
        if self.concurrency == 0 || self.concurrency > MAX_CONCURRENCY {
            return Err(Error::Config(format!("--concurrency {} must be in 1..={MAX_CONCURRENCY}", self.concurrency)));
        }
        if !(1..=MAX_REPORT_QUEUE).contains(&self.report_queue) {
            return Err(Error::Config(format!("--report-queue {} must be between 1 and {MAX_REPORT_QUEUE} records", self.report_queue)));
        }
        if !(1..=MAX_SPAN_QUEUE).contains(&self.span_queue) {
            return Err(Error::Config(format!("--span-queue {} must be between 1 and {MAX_SPAN_QUEUE} spans", self.span_queue)));
        }
        // Unlike the other timeouts, 0s cannot mean "no limit": a connect that is never
        // answered would hold its request until the kernel gives up, minutes later.
        if self.connect_timeout.is_zero() {
            return Err(Error::Config("--connect-timeout (MESHTEL_PROXY_CONNECT_TIMEOUT) must be more than 0s".into()));
        }
        check_collector_url(&self.collector)?;
        self.quota.validate()
    }
}

/// The collector is reached over cleartext HTTP/2 at `http://host:port`: `https://`
/// would send the same plaintext to a port that expects TLS (no TLS here), and a path
/// would be ignored by gRPC, whose paths are its methods'.
fn check_collector_url(collector: &str) -> Result<(), Error> {
    let refused = |why: &str| Err(Error::Config(format!("--collector (MESHTEL_PROXY_COLLECTOR) {collector:?} {why}")));
    if collector.starts_with("https://") {
        return refused("is https://, but the proxy speaks cleartext HTTP/2 (h2c) to the collector and has no TLS: use http://host:port (on a network that needs TLS, a local TLS-terminating tunnel)");
    }
    if !collector.starts_with("http://") {
        return refused("must be an http://host:port URI");
    }
    let Ok(uri) = collector.parse::<http::Uri>() else {
        return refused("is not a valid http://host:port URI");
    };
    let authority = uri.authority().map_or("", |a| a.as_str());
    if uri.host().is_none_or(str::is_empty) || authority.contains('@') {
        return refused("is not a valid http://host:port URI (a host, no user name or password)");
    }
    if uri.port_u16().is_none_or(|port| port == 0) {
        return refused("needs a port from 1 to 65535, as http://host:4317");
    }
    if uri.query().is_some() || collector.contains('#') || !matches!(uri.path(), "" | "/") {
        return refused("has a path, query or fragment, which gRPC would ignore: give http://host:port only");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
