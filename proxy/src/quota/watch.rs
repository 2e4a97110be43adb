//! The policy watch: one `Mixer.WatchQuotas` stream kept open to the collector. Every
//! message is the whole set; it is compiled, filtered to what can match here and
//! published. When the stream breaks the last set stays in force and the watch
//! reconnects with backoff.

use std::sync::Arc;
use std::time::Duration;

use meshtel_model::mixer::WatchQuotasRequest;
use meshtel_model::mixer::mixer_client::MixerClient;
use tokio::sync::watch;
use tonic::transport::Endpoint;
use tracing::{info, warn};

use super::Shared;
use super::policies::PolicySet;
use crate::report::Reconnect;

/// How often idle leases are looked for.
pub const EVICTION_INTERVAL: Duration = Duration::from_secs(60);

/// The background task that keeps the policies current.
#[derive(Debug)]
pub struct PolicyWatcher {
    pub(super) endpoint: Endpoint,
    pub(super) proxy_id: String,
    pub(super) shared: Arc<Shared>,
}

enum StreamEnd {
    Shutdown,
    Broken(String),
}

impl PolicyWatcher {
    /// Watches until `shutdown` flips to true; also evicts idle leases.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut reconnect = Reconnect::new("quota policy watch");
        let mut eviction = tokio::time::interval(EVICTION_INTERVAL);
        loop {
            if *shutdown.borrow() {
                return;
            }
            // The last policies stay in force while the watch is down.
            let end = self.watch_once(&mut shutdown, &mut eviction).await;
            self.shared.stats.watch_open.set(0);
            match end {
                Ok(StreamEnd::Shutdown) => return,
                Ok(StreamEnd::Broken(reason)) => reconnect.broken(&reason),
                Err(reason) => reconnect.unavailable(&self.endpoint, &reason),
            }
            let sleep = tokio::time::sleep(reconnect.next_delay());
            tokio::pin!(sleep);
            loop {
                tokio::select! {
                    () = &mut sleep => break,
                    _ = eviction.tick() => self.shared.evict_idle_leases(),
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    /// Opens one stream and applies its messages until it breaks. `Err` when it could
    /// not be opened.
    async fn watch_once(&self, shutdown: &mut watch::Receiver<bool>, eviction: &mut tokio::time::Interval) -> Result<StreamEnd, String> {
        let channel = tokio::select! {
            connected = self.endpoint.connect() => connected.map_err(|e| crate::mesh::error_chain(&e))?,
            _ = shutdown.changed() => return Ok(StreamEnd::Shutdown),
        };
        // The collector's 4 MiB default would refuse a large policy set and break the
        // watch for good; the admin API keeps the set within this bound.
        let mut client = MixerClient::new(channel).max_decoding_message_size(
            meshtel_model::quota::MAX_POLICY_SET_JSON_BYTES + meshtel_model::quota::POLICY_WATCH_MESSAGE_MARGIN,
        );
        let request = WatchQuotasRequest { proxy_id: self.proxy_id.clone() };
        let mut stream = tokio::select! {
            response = client.watch_quotas(request) => {
                let response = response.map_err(|status| format!("{}: {}", status.code(), status.message()))?;
                crate::report::grpc_answer(response.metadata())?;
                response.into_inner()
            }
            _ = shutdown.changed() => return Ok(StreamEnd::Shutdown),
        };
        self.shared.stats.watch_connects.inc();
        self.shared.stats.watch_open.set(1);
        info!(endpoint = %self.endpoint.uri(), "quota policy watch open");
        loop {
            tokio::select! {
                message = stream.message() => match message {
                    Ok(Some(policies)) => {
                        self.apply(policies.revision, &policies.policies_json, &policies.incarnations)
                    }
                    Ok(None) => return Ok(StreamEnd::Broken("collector closed the stream".to_owned())),
                    Err(status) => return Ok(StreamEnd::Broken(format!("{}: {}", status.code(), status.message()))),
                },
                _ = eviction.tick() => self.shared.evict_idle_leases(),
                _ = shutdown.changed() => return Ok(StreamEnd::Shutdown),
            }
        }
    }

    fn apply(&self, revision: i64, json: &str, incarnations: &[u64]) {
        let (set, skipped) = PolicySet::from_json(revision, json, incarnations, &self.shared.destination);
        for policy in &skipped {
            warn!(quota = %policy.name, revision, reason = %policy.reason, "invalid quota policy skipped");
        }
        self.shared.stats.policies_invalid.inc_by(skipped.len() as u64);
        info!(revision, policies = set.policies.len(), "quota policies updated");
        if !set.policies.is_empty() {
            let client = self.shared.client.clone();
            tokio::spawn(async move { client.warm_up().await });
        }
        self.shared.publish(set);
    }
}
