//! Background tasks of the engine: the policy sync (poll the store's revision, reload
//! on change) and the idle-counter sweeper. Both hold the engine weakly and end when
//! it is dropped (or when their handle is aborted).

use std::sync::{Arc, Weak};
use std::time::Duration;

use meshtel_model::quota::QuotaPolicyStore;
use tokio::task::JoinHandle;
use tokio::time::MissedTickBehavior;
use tracing::{debug, warn};

use super::engine::QuotaEngine;
use super::policies::PolicyLoad;

/// Loads the store's policies into the engine now: the revision, then every policy.
/// Returns the revision loaded and what the load did.
pub async fn sync_policies_once(
    store: &dyn QuotaPolicyStore,
    engine: &QuotaEngine,
) -> meshtel_model::Result<(i64, PolicyLoad)> {
    let revision = store.policies_revision().await?;
    let policies = store.list_policies().await?;
    Ok((revision, engine.set_stored_policies(revision, policies)))
}

/// Polls `store.policies_revision()` every `interval` (see
/// [`super::QuotaConfig::sync_interval`], 250 ms by default) and reloads every policy
/// when it differs from the revision the engine holds, so that an edit through the
/// admin API is enforced within about one interval. The first poll happens at once and
/// reloads nothing when [`sync_policies_once`] already loaded that revision (one
/// "quota policies loaded" line at start, not two). Store errors are logged and
/// retried at the next tick; the engine keeps the policies it has.
pub fn spawn_policy_sync(
    store: Arc<dyn QuotaPolicyStore>,
    engine: Arc<QuotaEngine>,
    interval: Duration,
) -> JoinHandle<()> {
    let engine = Arc::downgrade(&engine);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval.max(Duration::from_millis(1)));
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let revision = match store.policies_revision().await {
                Ok(revision) => revision,
                Err(error) => {
                    warn!(error = %error, "quota policy revision unavailable");
                    continue;
                }
            };
            if engine.revision() == revision {
                continue;
            }
            match store.list_policies().await {
                Ok(policies) => {
                    engine.set_stored_policies(revision, policies);
                }
                Err(error) => warn!(revision, error = %error, "quota policies unavailable"),
            }
        }
    })
}

/// Runs [`QuotaEngine::sweep_idle`] every [`super::QuotaConfig::sweep_interval`].
pub fn spawn_quota_sweeper(engine: &Arc<QuotaEngine>) -> JoinHandle<()> {
    let interval = engine.config().sweep_interval;
    let engine: Weak<QuotaEngine> = Arc::downgrade(engine);
    tokio::spawn(async move {
        let mut ticker = tokio::time::interval(interval);
        ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ticker.tick().await;
        loop {
            ticker.tick().await;
            let Some(engine) = engine.upgrade() else {
                return;
            };
            let evicted = engine.sweep_idle();
            if evicted > 0 {
                debug!(
                    evicted,
                    keys = engine.key_count(),
                    "idle quota counters dropped"
                );
            }
        }
    })
}
