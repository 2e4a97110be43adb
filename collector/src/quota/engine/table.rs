//! The counter table's room: placing a new counter (within the client-named share),
//! evicting idle ones when the table or the share is full, sweeping, and dropping a
//! removed policy's counters.

use std::sync::atomic::Ordering;

use tracing::warn;

use super::{Chargee, CounterMap, FULL_SCAN_INTERVAL_NS, QuotaEngine, Shard, Slot};

impl QuotaEngine {
    /// Takes one place in the table for a new counter. When the table is full, looks
    /// for idle counters (at most every 10 ms): this shard's first, then the other
    /// shards' that are not locked, until some are evicted.
    fn reserve_key(&self, own: &Shard, map: &mut CounterMap, now: u64) -> bool {
        if self.take_place() {
            return true;
        }
        self.evict_idle_anywhere(own, map, now) > 0 && self.take_place()
    }

    /// Evicts idle counters, this shard's first, then the other shards' that are not
    /// locked, until some are (at most every [`FULL_SCAN_INTERVAL_NS`]); how many.
    fn evict_idle_anywhere(&self, own: &Shard, map: &mut CounterMap, now: u64) -> usize {
        let last = self.last_full_scan_ns.load(Ordering::Relaxed);
        if last != 0 && now.saturating_sub(last) < FULL_SCAN_INTERVAL_NS {
            return 0;
        }
        self.last_full_scan_ns.store(now.max(1), Ordering::Relaxed);
        let mut evicted = self.evict_idle(map, now);
        for shard in self.shards.iter() {
            if evicted > 0 {
                break;
            }
            if std::ptr::eq(shard, own) {
                continue;
            }
            // Never wait for another shard while holding this one.
            if let Some(mut other) = shard.map.try_lock() {
                evicted += self.evict_idle(&mut other, now);
            }
        }
        evicted
    }

    fn take_place(&self) -> bool {
        if self.keys.fetch_add(1, Ordering::Relaxed) < self.config.max_keys {
            return true;
        }
        self.keys.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// A place in the table for a new counter of `who`, and among the client-named
    /// ones when it is one of those.
    pub(super) fn place_counter(
        &self,
        who: &Chargee<'_>,
        shard: &Shard,
        map: &mut CounterMap,
        now: u64,
    ) -> bool {
        if !who.client_named {
            return self.reserve_key(shard, map, now);
        }
        // A share held by idle counters is freed as the table is when full.
        if !self.take_override_place()
            && (self.evict_idle_anywhere(shard, map, now) == 0 || !self.take_override_place())
        {
            return false;
        }
        if self.reserve_key(shard, map, now) {
            return true;
        }
        self.override_keys.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// One place among the client-named counters, if fewer than half of `max_keys`
    /// (at least one) are live.
    fn take_override_place(&self) -> bool {
        let most = (self.config.max_keys / 2).max(1);
        if self.override_keys.fetch_add(1, Ordering::Relaxed) < most {
            return true;
        }
        self.override_keys.fetch_sub(1, Ordering::Relaxed);
        false
    }

    /// Keeps the counters `keep` says to, and counts the client-named ones it drops.
    fn retain_counters(&self, map: &mut CounterMap, mut keep: impl FnMut(&Slot) -> bool) -> usize {
        let before = map.len();
        let mut overrides = 0;
        map.retain(|_, slot| {
            let kept = keep(slot);
            if !kept && slot.client_named {
                overrides += 1;
            }
            kept
        });
        self.override_keys.fetch_sub(overrides, Ordering::Relaxed);
        before - map.len()
    }

    pub(super) fn evict_idle(&self, map: &mut CounterMap, now: u64) -> usize {
        let evicted = self.retain_counters(map, |slot| !slot.counter.is_idle(now));
        if evicted > 0 {
            self.keys.fetch_sub(evicted, Ordering::Relaxed);
            self.metrics.evicted.inc_by(evicted as u64);
        }
        evicted
    }

    pub(super) fn log_overflow(&self, quota: &str, now: u64) {
        let last = self.overflow_logged_ns.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000_000_000
            && self
                .overflow_logged_ns
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            warn!(
                quota,
                max_keys = self.config.max_keys,
                "quota counter table full, granting without counting"
            );
        }
    }

    /// Drops every counter whose window has expired and frees old dedup entries;
    /// returns how many counters were dropped. [`super::spawn_quota_sweeper`] calls it
    /// every `sweep_interval`.
    pub fn sweep_idle(&self) -> usize {
        let now = self.now();
        let mut evicted = 0;
        for shard in self.shards.iter() {
            evicted += self.evict_idle(&mut shard.map.lock(), now);
        }
        self.dedup.rotate_all(now);
        self.update_key_gauge();
        evicted
    }

    pub(super) fn drop_counters_of(&self, quotas: &[String]) -> usize {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut map = shard.map.lock();
            dropped += self.retain_counters(&mut map, |slot| {
                quotas
                    .binary_search_by(|q| q.as_str().cmp(&*slot.quota))
                    .is_err()
            });
        }
        self.keys.fetch_sub(dropped, Ordering::Relaxed);
        self.update_key_gauge();
        dropped
    }

    /// Live counters.
    pub fn key_count(&self) -> usize {
        self.keys.load(Ordering::Relaxed)
    }

    pub(super) fn update_key_gauge(&self) {
        self.metrics
            .keys
            .set(i64::try_from(self.key_count()).unwrap_or(i64::MAX));
    }
}
