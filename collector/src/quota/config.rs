//! Settings of the quota engine ([`QuotaConfig`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Settings of the quota engine: how many counters it keeps, how often idle ones are
/// dropped, how long a retried Check is remembered and how often policies are reloaded.
///
/// ```toml
/// [quota]
/// max_keys = 1000000
/// sweep_interval = "10s"
/// dedup_window = "1s"
/// sync_interval = "250ms"
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaConfig {
    /// Most live counters (one per quota and distinct dimension values). A request
    /// that needs a new counter when the table is full first evicts idle counters; if
    /// none is idle it is granted without being counted (fail-open) and counted in
    /// `meshtel_quota_checks_total{result="overflow"}`. Also bounds the entries kept
    /// for deduplication. Default 1 000 000 (about 150 MB at worst).
    pub max_keys: usize,
    /// How often counters whose window (or bucket) has fully expired are dropped.
    /// Default `10s`.
    #[serde(with = "duration_text")]
    pub sweep_interval: Duration,
    /// How long a Check's `deduplication_id` is remembered: a retry within one to two
    /// of these windows is answered from memory and not charged again (Mixer's
    /// `minDeduplicationDuration`). Default `1s`.
    #[serde(with = "duration_text")]
    pub dedup_window: Duration,
    /// How often the policy store's revision is polled; a policy edited through the
    /// admin API is enforced within this interval (plus the reload). Default `250ms`.
    #[serde(with = "duration_text")]
    pub sync_interval: Duration,
}

/// Default of [`QuotaConfig::max_keys`].
pub fn default_max_keys() -> usize {
    1_000_000
}

/// Default of [`QuotaConfig::sweep_interval`].
pub fn default_sweep_interval() -> Duration {
    Duration::from_secs(10)
}

/// Default of [`QuotaConfig::dedup_window`].
pub fn default_dedup_window() -> Duration {
    Duration::from_secs(1)
}

/// Default of [`QuotaConfig::sync_interval`].
pub fn default_sync_interval() -> Duration {
    Duration::from_millis(250)
}

impl Default for QuotaConfig {
    fn default() -> Self {
        QuotaConfig {
            max_keys: default_max_keys(),
            sweep_interval: default_sweep_interval(),
            dedup_window: default_dedup_window(),
            sync_interval: default_sync_interval(),
        }
    }
}

impl QuotaConfig {
    /// Checks the settings: at least one key, intervals between 1 ms and 1 hour.
    pub fn validate(&self) -> Result<()> {
        if self.max_keys == 0 {
            return Err(Error::InvalidConfig(
                "[quota] max_keys must be at least 1".into(),
            ));
        }
        let bounds = Duration::from_millis(1)..=Duration::from_secs(3600);
        for (name, value) in [
            ("sweep_interval", self.sweep_interval),
            ("dedup_window", self.dedup_window),
            ("sync_interval", self.sync_interval),
        ] {
            if !bounds.contains(&value) {
                return Err(Error::InvalidConfig(format!(
                    "[quota] {name} must be between 1ms and 1h, got {}",
                    humantime::format_duration(value)
                )));
            }
        }
        Ok(())
    }
}

/// Durations as humantime text (`250ms`, `10s`), for `#[serde(with)]` in this crate's
/// configs.
pub(crate) mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        meshtel_model::duration::parse_config_duration(&text).map_err(serde::de::Error::custom)
    }
}
