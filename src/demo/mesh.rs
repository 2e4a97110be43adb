//! The demo's mesh in this process: one app and one proxy per [`INSTANCES`] entry.
//!
//! ```text
//!  bind: every app listener (127.0.0.1:0), every proxy's inbound / outbound / admin
//!        (productpage's inbound on --ingress-listen, the rest on port 0)
//!    │
//!    ▼
//!  write <data>/mesh.yaml (each service → its instances' inbound listeners, labels)
//!    │   (the rules file is written by the caller before start)
//!    ▼
//!  serve: apps (axum) and proxies (meshtel_proxy::serve), until stop
//! ```

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use meshtel_proxy::{InboundSpec, ListenerAddresses, ProxyConfig};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::warn;

use super::apps::{self, INSTANCES, Instance, Upstream};

/// How long proxies and apps may take to stop before they are abandoned.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(4);

/// Where the instances' traffic goes, and how the proxies are set up.
#[derive(Debug, Clone)]
pub struct MeshSettings {
    /// productpage's inbound listener (the demo's ingress).
    pub ingress: SocketAddr,
    /// The collector's gRPC address, as `http://host:port`.
    pub collector: String,
    /// The mesh file.
    pub mesh_file: PathBuf,
    /// The rules directory.
    pub rules_dir: PathBuf,
    /// Percentage of new traces the proxies sample.
    pub sampling: f64,
}

/// An instance with everything bound, not yet serving.
struct Bound {
    instance: &'static Instance,
    app: TcpListener,
    config: ProxyConfig,
    listeners: meshtel_proxy::Listeners,
    addresses: ListenerAddresses,
}

/// The addresses of one instance, as written to `--listeners-file`.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct InstanceAddresses {
    /// The app itself.
    pub app: SocketAddr,
    /// Its proxy's inbound listener (what the mesh file names).
    pub inbound: SocketAddr,
    /// Its proxy's outbound listener (where the app sends its calls).
    pub outbound: SocketAddr,
    /// Its proxy's admin listener (`/stats/prometheus`, `/config_dump`).
    pub admin: SocketAddr,
}

/// The bound mesh.
pub struct Mesh {
    bound: Vec<Bound>,
}

/// One endpoint of the mesh file: `instance` behind its proxy's inbound `address`.
pub(super) fn endpoint_yaml(instance: &Instance, address: &str) -> String {
    // Quoted: YAML reads an unquoted `[::1]:port` as a list.
    format!(
        "      - address: \"{address}\"\n        workload: {}\n        labels: {{app: {}, version: {}}}\n",
        instance.workload(),
        instance.service,
        instance.version
    )
}

/// The running mesh.
pub struct RunningMesh {
    stop: watch::Sender<bool>,
    tasks: JoinSet<(String, anyhow::Result<()>)>,
}

impl Mesh {
    /// Binds every listener of every instance.
    pub async fn bind(settings: &MeshSettings) -> anyhow::Result<Mesh> {
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut bound = Vec::new();
        for instance in &INSTANCES {
            let workload = instance.workload();
            let app = TcpListener::bind(loopback)
                .await
                .with_context(|| format!("binding the {workload} app"))?;
            let inbound = if bound.is_empty() {
                settings.ingress
            } else {
                loopback
            };
            let mut config = ProxyConfig::for_service(
                settings.mesh_file.clone(),
                instance.service,
                instance.version,
            );
            config.inbound = Some(InboundSpec {
                listen: inbound,
                app: app.local_addr()?.to_string(),
            });
            config.rules_dir = Some(settings.rules_dir.clone());
            config.collector = settings.collector.clone();
            config.sample_percent = settings.sampling;
            config.proxy_id = format!("{workload}.default-demo");
            config
                .validate()
                .with_context(|| format!("the {workload} proxy's settings"))?;
            let listeners = meshtel_proxy::Listeners::bind(&config).await.with_context(|| {
                if bound.is_empty() {
                    format!("binding the ingress (productpage's proxy) to {inbound}; choose another with --ingress-listen")
                } else {
                    format!("binding the {workload} proxy")
                }
            })?;
            let addresses = listeners.addresses()?;
            bound.push(Bound {
                instance,
                app,
                config,
                listeners,
                addresses,
            });
        }
        Ok(Mesh { bound })
    }

    /// The bound addresses by workload.
    pub fn addresses(&self) -> anyhow::Result<BTreeMap<String, InstanceAddresses>> {
        let mut out = BTreeMap::new();
        for b in &self.bound {
            let inbound = b
                .addresses
                .inbound
                .context("every demo proxy has an inbound listener")?;
            out.insert(
                b.instance.workload(),
                InstanceAddresses {
                    app: b.app.local_addr()?,
                    inbound,
                    outbound: b.addresses.outbound,
                    admin: b.addresses.admin,
                },
            );
        }
        Ok(out)
    }

    /// The mesh file: each service with its instances' inbound listeners and labels.
    pub fn mesh_yaml(&self) -> String {
        let mut yaml = String::from(
            "# Written by `meshtel demo`: the Bookinfo instances of this run, each behind its proxy's\n\
             # inbound listener (proxy/examples/mesh.yaml documents the format).\nservices:\n",
        );
        let mut services: Vec<&str> = self.bound.iter().map(|b| b.instance.service).collect();
        services.dedup();
        for service in services {
            let _ = write!(
                yaml,
                "  - name: {service}\n    port: 9080\n    endpoints:\n"
            );
            for b in self.bound.iter().filter(|b| b.instance.service == service) {
                let address = b
                    .addresses
                    .inbound
                    .map(|a| a.to_string())
                    .unwrap_or_default();
                yaml.push_str(&endpoint_yaml(b.instance, &address));
            }
        }
        yaml
    }

    /// Writes the mesh file, then serves every app and proxy until [`RunningMesh::stop`].
    pub fn start(self, mesh_file: &Path, client: reqwest::Client) -> anyhow::Result<RunningMesh> {
        std::fs::write(mesh_file, self.mesh_yaml())
            .with_context(|| format!("writing {}", mesh_file.display()))?;
        let (stop, stopped) = watch::channel(false);
        let mut tasks = JoinSet::new();
        for b in self.bound {
            let workload = b.instance.workload();
            let upstream = Upstream::new(b.addresses.outbound, client.clone());
            let app = apps::router(b.instance, upstream);
            let app_stopped = wait_for(stopped.clone());
            let name = format!("{workload} app");
            let listener = b.app;
            tasks.spawn(async move {
                let served = axum::serve(listener, app)
                    .with_graceful_shutdown(app_stopped)
                    .await;
                (name, served.map_err(anyhow::Error::from))
            });
            let proxy_stopped = wait_for(stopped.clone());
            let name = format!("{workload} proxy");
            let (config, listeners) = (b.config, b.listeners);
            tasks.spawn(async move {
                let served = meshtel_proxy::serve(config, listeners, proxy_stopped).await;
                (name, served.map_err(anyhow::Error::from))
            });
        }
        Ok(RunningMesh { stop, tasks })
    }
}

async fn wait_for(mut stopped: watch::Receiver<bool>) {
    let _ = stopped.wait_for(|stop| *stop).await;
}

impl RunningMesh {
    /// Waits until an app or a proxy stops on its own (which is an error).
    pub async fn failed(&mut self) -> anyhow::Error {
        match self.tasks.join_next().await {
            Some(Ok((name, Ok(())))) => anyhow::anyhow!("the {name} stopped unexpectedly"),
            Some(Ok((name, Err(error)))) => error.context(format!("the {name} failed")),
            Some(Err(error)) => {
                anyhow::Error::from(error).context("an app or proxy task ended abnormally")
            }
            None => std::future::pending().await,
        }
    }

    /// Stops every app and proxy: proxies drain and flush their telemetry; whatever is
    /// still running after [`STOP_TIMEOUT`] is abandoned.
    pub async fn stop(mut self) {
        let _ = self.stop.send(true);
        let drained = tokio::time::timeout(STOP_TIMEOUT, async {
            while let Some(joined) = self.tasks.join_next().await {
                match joined {
                    Ok((name, Err(error))) => {
                        warn!(task = %name, error = %format!("{error:#}"), "stopped with an error")
                    }
                    Err(error) => warn!(%error, "an app or proxy task ended abnormally"),
                    Ok((_, Ok(()))) => {}
                }
            }
        })
        .await;
        if drained.is_err() {
            warn!(timeout = ?STOP_TIMEOUT, "apps and proxies still busy; abandoning them");
            self.tasks.abort_all();
        }
    }
}
