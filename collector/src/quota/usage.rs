//! Live usage of a quota for the admin API ([`QuotaUsageReader`]): totals since start
//! and the busiest counters, found with a bounded heap in one pass over the shards.

use std::collections::BinaryHeap;
use std::sync::atomic::Ordering;

use meshtel_model::quota::{KeyUsage, QuotaUsage, QuotaUsageReader};

use super::engine::QuotaEngine;

/// A key in the usage top list; orders least busy first, so that a max-heap's top
/// is the one to drop. Busy means most used, then most granted; then by key.
struct Busiest {
    used: u64,
    granted: u64,
    usage: KeyUsage,
}

impl Busiest {
    fn rank(&self) -> (std::cmp::Reverse<u64>, std::cmp::Reverse<u64>, &str) {
        (
            std::cmp::Reverse(self.used),
            std::cmp::Reverse(self.granted),
            &self.usage.key,
        )
    }
}

impl PartialEq for Busiest {
    fn eq(&self, other: &Self) -> bool {
        self.rank() == other.rank()
    }
}

impl Eq for Busiest {}

impl Ord for Busiest {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.rank().cmp(&other.rank())
    }
}

impl PartialOrd for Busiest {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl QuotaUsageReader for QuotaEngine {
    fn usage(&self, name: &str, limit: usize) -> Option<QuotaUsage> {
        let set = self.policy_set();
        let entry = set.lookup(name)?.clone();
        let now = self.now();
        let mut top: BinaryHeap<Busiest> = BinaryHeap::with_capacity(limit.min(1024) + 1);
        let mut key_count = 0u64;
        self.for_each_counter(|key, slot| {
            if *slot.quota != *entry.name {
                return;
            }
            key_count += 1;
            if limit == 0 {
                return;
            }
            let usage = slot.counter.usage(now);
            if top.len() == limit
                && top.peek().is_some_and(|least| {
                    (usage.used, slot.counter.granted) <= (least.used, least.granted)
                })
            {
                return;
            }
            top.push(Busiest {
                used: usage.used,
                granted: slot.counter.granted,
                usage: KeyUsage {
                    key: key.to_string(),
                    dimensions: entry.key_dimension_values(key).into_iter().collect(),
                    used: usage.used,
                    limit: slot.counter.limit().max_amount,
                    reset_after_ms: usage.reset_ns.div_ceil(1_000_000),
                    granted: slot.counter.granted,
                    denied: slot.counter.denied,
                },
            });
            if top.len() > limit {
                top.pop();
            }
        });
        let keys = top.into_sorted_vec().into_iter().map(|b| b.usage).collect();
        Some(QuotaUsage {
            name: entry.name.to_string(),
            granted: entry.stats.granted.load(Ordering::Relaxed),
            denied: entry.stats.denied.load(Ordering::Relaxed),
            keys,
            key_count,
        })
    }
}
