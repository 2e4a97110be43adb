//! Istio latency bucket counts as SQL text.

use meshtel_model::graph::LATENCY_SLOTS;

use crate::{Error, Result};

/// Non-cumulative bucket counts as `"3,0,12"`, trailing zeros left out.
pub fn encode_latency_buckets(counts: &[u64; LATENCY_SLOTS]) -> String {
    let used = counts.iter().rposition(|&c| c > 0).map_or(0, |i| i + 1);
    let mut out = String::new();
    for (i, count) in counts.iter().take(used).enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(&count.to_string());
    }
    out
}

/// The inverse of [`encode_latency_buckets`].
pub fn decode_latency_buckets(text: &str) -> Result<[u64; LATENCY_SLOTS]> {
    let mut counts = [0u64; LATENCY_SLOTS];
    if text.is_empty() {
        return Ok(counts);
    }
    let mut parts = text.split(',');
    for (slot, part) in counts.iter_mut().zip(parts.by_ref()) {
        *slot = part
            .parse()
            .map_err(|_| Error::Corrupt(format!("latency bucket count {part:?}")))?;
    }
    if parts.next().is_some() {
        return Err(Error::Corrupt(format!(
            "too many latency buckets in {text:?}"
        )));
    }
    Ok(counts)
}

/// The sum of `;`-separated [`encode_latency_buckets`] texts (SQL's `group_concat`).
pub(super) fn sum_latency_buckets(texts: &str) -> Result<[u64; LATENCY_SLOTS]> {
    let mut sum = [0u64; LATENCY_SLOTS];
    for text in texts.split(';') {
        for (total, count) in sum.iter_mut().zip(decode_latency_buckets(text)?) {
            *total = total.saturating_add(count);
        }
    }
    Ok(sum)
}
