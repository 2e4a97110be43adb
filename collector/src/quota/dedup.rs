//! Check deduplication: a retried Check (same `deduplication_id`) is answered from
//! memory instead of being charged again.
//!
//! As in Mixer, each of 16 shards keeps two maps, current and previous, and rotates
//! them every `dedup_window` (lazily, on the next access or sweep): a result is
//! remembered for one to two windows. The key is the id plus the quota name.

use std::collections::HashMap;
use std::hash::BuildHasher;

use parking_lot::Mutex;

use super::engine::QuotaResult;

const SHARDS: usize = 16;

struct Remembered {
    result: QuotaResult,
    at_ns: u64,
}

#[derive(Default)]
struct DedupShard {
    epoch: u64,
    current: HashMap<String, Remembered, foldhash::fast::RandomState>,
    previous: HashMap<String, Remembered, foldhash::fast::RandomState>,
}

impl DedupShard {
    fn rotate(&mut self, epoch: u64) {
        if epoch == self.epoch {
            return;
        }
        if epoch == self.epoch + 1 {
            self.previous = std::mem::take(&mut self.current);
        } else {
            self.previous.clear();
            self.current.clear();
        }
        self.epoch = epoch;
    }
}

/// The deduplication memory.
pub(crate) struct Dedup {
    shards: Box<[Mutex<DedupShard>]>,
    window_ns: u64,
    max_per_shard: usize,
    hasher: foldhash::fast::FixedState,
    /// Counts results not remembered because their shard was full.
    not_remembered: prometheus::IntCounter,
}

impl Dedup {
    /// Remembers results for `window_ns` (one to two windows), at most `max_entries`
    /// per window (beyond it, results are not remembered and counted in
    /// `not_remembered`: a retry of such a Check is charged again).
    pub fn new(
        window_ns: u64,
        max_entries: usize,
        not_remembered: prometheus::IntCounter,
    ) -> Dedup {
        Dedup {
            shards: (0..SHARDS).map(|_| Mutex::default()).collect(),
            window_ns: window_ns.max(1),
            max_per_shard: max_entries.div_ceil(SHARDS).max(1),
            hasher: foldhash::fast::FixedState::with_seed(0x6d65_7368_7465_6c64),
            not_remembered,
        }
    }

    /// The remembered result of (`id`, `quota`), aged to `now`, or `decide()`'s,
    /// remembered. The shard stays locked while deciding so that concurrent retries are
    /// charged once.
    pub fn remember(
        &self,
        id: &str,
        quota: &str,
        now: u64,
        decide: impl FnOnce() -> QuotaResult,
    ) -> QuotaResult {
        let mut key = String::with_capacity(id.len() + quota.len() + 1);
        key.push_str(id);
        key.push('\0');
        key.push_str(quota);
        let index = (self.hasher.hash_one(&key) >> 40) as usize % SHARDS;
        let mut shard = self.shards[index].lock();
        shard.rotate(now / self.window_ns);
        let found = shard.current.get(&key).or_else(|| shard.previous.get(&key));
        if let Some(seen) = found {
            return seen.result.aged(now.saturating_sub(seen.at_ns));
        }
        let result = decide();
        if shard.current.len() < self.max_per_shard {
            shard.current.insert(
                key,
                Remembered {
                    result: result.clone(),
                    at_ns: now,
                },
            );
        } else {
            self.not_remembered.inc();
        }
        result
    }

    /// Rotates every shard to `now` so that old entries are freed even without traffic.
    pub fn rotate_all(&self, now: u64) {
        for shard in self.shards.iter() {
            shard.lock().rotate(now / self.window_ns);
        }
    }

    /// Results remembered.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let s = s.lock();
                s.current.len() + s.previous.len()
            })
            .sum()
    }
}
