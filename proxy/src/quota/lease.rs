//! One counter key's token lease: pure state, no I/O, time passed in (tests drive it
//! with made-up instants).
//!
//! A lease follows one version of its policy (a generation number, see
//! [`super::PolicySet::generations`]): when the policy changes, the lease is
//! [reset](Lease::reset) and the next request asks the collector again.
//!
//! ```text
//!  take ──► tokens left? ── yes ─► Granted (+ refill in the background when below the low-water mark)
//!                │ no
//!                ├─ denied until T > now ─► Denied (no call to the collector)
//!                ├─ collector failing   ─► Unavailable (failure mode decides)
//!                └─ else ─► Wait (ask for a lease, or join the ask already in flight)
//! ```

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// After a failed call, how long a key answers by the failure mode without asking again.
pub const FAILURE_HOLD: Duration = Duration::from_millis(250);
/// Denials whose answer carries no retry time hold this long.
pub const DEFAULT_DENIAL_HOLD: Duration = Duration::from_secs(1);
/// Most token batches kept per key (older windows' leftovers and the newest grant).
const MAX_BATCHES: usize = 3;

/// How leases are sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LeaseSizing {
    /// Smallest lease asked for (Mixer's `min_prefetch_amount`, 10), before capping.
    pub min_prefetch: u64,
    /// Demand over this window predicts the next lease (Mixer's predict window, 1 s).
    pub predict_window: Duration,
}

/// Tokens granted together, usable until `expires`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Batch {
    tokens: u64,
    expires: Instant,
}

/// Requests seen over the last two predict windows.
#[derive(Debug, Clone, Copy)]
struct Demand {
    window_start: Instant,
    current: u64,
    previous: u64,
}

impl Demand {
    fn record(&mut self, now: Instant, window: Duration) {
        self.roll(now, window);
        self.current += 1;
    }

    fn roll(&mut self, now: Instant, window: Duration) {
        let elapsed = now.saturating_duration_since(self.window_start);
        if elapsed >= window {
            self.previous = if elapsed < window * 2 { self.current } else { 0 };
            self.current = 0;
            self.window_start = now;
        }
    }

    /// Requests expected over the next window: the busier of the last full window and
    /// the one under way.
    fn predicted(&self) -> u64 {
        self.previous.max(self.current)
    }
}

/// What a request gets from a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Take {
    /// One token taken. `refill`: ask for that many tokens in the background.
    Granted {
        /// Size of the refill to start, when one is due.
        refill: Option<u64>,
    },
    /// The collector said the quota is exhausted; denied until `until`.
    Denied {
        /// When the key may be asked again.
        until: Instant,
    },
    /// The collector failed for this key a moment ago; the failure mode decides.
    Unavailable,
    /// Nothing leased: wait for a lease. `fetch`: start asking for that many tokens
    /// (else an ask is already in flight).
    Wait {
        /// Size of the lease to ask for, when this request starts the ask.
        fetch: Option<u64>,
    },
}

/// The collector's answer to a lease request, as the lease needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grant {
    /// Tokens granted (0: exhausted).
    pub granted: u64,
    /// How long they may be used, from the time the request was sent.
    pub valid_duration: Duration,
    /// When a denied key may ask again, from the time the request was sent.
    pub retry_after: Duration,
}

/// The token lease of one counter key.
#[derive(Debug, Clone)]
pub struct Lease {
    /// The generation of the policy the lease follows (0: none yet).
    generation: u64,
    /// The limit per window, which no lease exceeds.
    limit: u64,
    sizing: LeaseSizing,
    batches: VecDeque<Batch>,
    denied_until: Option<Instant>,
    unavailable_until: Option<Instant>,
    in_flight: bool,
    last_ask: u64,
    demand: Demand,
    last_used: Instant,
}

impl Lease {
    /// An empty lease for a quota of `limit` per window.
    pub fn new(limit: u64, sizing: LeaseSizing, now: Instant) -> Lease {
        Lease {
            generation: 0,
            limit,
            sizing,
            batches: VecDeque::new(),
            denied_until: None,
            unavailable_until: None,
            in_flight: false,
            last_ask: 0,
            demand: Demand { window_start: now, current: 0, previous: 0 },
            last_used: now,
        }
    }

    /// Follows the policy at `generation` (whose limit for this key is `limit`): a
    /// newer generation [resets](Lease::reset) the lease, the same or an older one (a
    /// request that read the policies just before they changed) leaves it alone. One
    /// comparison when nothing changed.
    pub fn follow_policy(&mut self, generation: u64, limit: u64) {
        if generation > self.generation {
            self.reset(generation, limit);
        }
    }

    /// Starts over under the policy at `generation`: leased tokens are dropped and a
    /// denial or failure held is forgotten, so the next request asks the collector,
    /// which decides by the policy as it is now. An ask in flight is disowned: its
    /// answer, computed under the old policy, is not applied (see
    /// [`Lease::generation`]). The demand seen so far still sizes the next lease.
    pub fn reset(&mut self, generation: u64, limit: u64) {
        self.generation = generation;
        self.limit = limit;
        self.batches.clear();
        self.denied_until = None;
        self.unavailable_until = None;
        self.in_flight = false;
        self.last_ask = 0;
    }

    /// The generation of the policy the lease follows: an ask's answer applies only
    /// while it is the one the ask was sent under.
    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Counts one request towards the demand prediction (once per request).
    pub fn record_demand(&mut self, now: Instant) {
        self.last_used = now;
        self.demand.record(now, self.sizing.predict_window);
    }

    /// Takes a token for one request, or says why not.
    pub fn take(&mut self, now: Instant) -> Take {
        self.drop_expired(now);
        if let Some(batch) = self.batches.front_mut() {
            batch.tokens -= 1;
            if batch.tokens == 0 {
                self.batches.pop_front();
            }
            let refill = self.refill_due(now).then(|| self.start_ask(now));
            return Take::Granted { refill };
        }
        if let Some(until) = self.denied_until.filter(|until| *until > now) {
            return Take::Denied { until };
        }
        if self.unavailable_until.is_some_and(|until| until > now) {
            return Take::Unavailable;
        }
        if self.in_flight {
            return Take::Wait { fetch: None };
        }
        Take::Wait { fetch: Some(self.start_ask(now)) }
    }

    /// Gives back a token taken for a request that another quota then denied.
    pub fn refund(&mut self, now: Instant) {
        match self.batches.front_mut() {
            Some(batch) if batch.expires > now => batch.tokens += 1,
            // The batch it came from is gone or expired: the token is lost, as it
            // would be at the window's end anyway.
            _ => {}
        }
    }

    /// Applies the collector's answer to an ask sent at `sent`. Validity and retry
    /// times count from `sent`, so latency and clock skew can only shorten them.
    pub fn granted(&mut self, sent: Instant, grant: Grant) {
        self.in_flight = false;
        self.unavailable_until = None;
        if grant.granted == 0 {
            let hold = if grant.retry_after.is_zero() { DEFAULT_DENIAL_HOLD } else { grant.retry_after };
            self.denied_until = Some(sent + hold);
            return;
        }
        self.denied_until = None;
        let batch = Batch { tokens: grant.granted, expires: sent + grant.valid_duration };
        // Tokens of one window expire together; a batch expiring no later than the
        // newest one merges into it (keeping the earlier expiry, the safe side).
        match self.batches.back_mut() {
            Some(back) if batch.expires <= back.expires => {
                back.tokens += batch.tokens;
                back.expires = batch.expires;
            }
            _ => self.batches.push_back(batch),
        }
        if self.batches.len() > MAX_BATCHES
            && let Some(oldest) = self.batches.pop_front()
            && let Some(next) = self.batches.front_mut()
        {
            next.tokens += oldest.tokens;
            next.expires = next.expires.min(oldest.expires);
        }
    }

    /// The ask sent at `now` failed (error or timeout): answer by the failure mode for
    /// [`FAILURE_HOLD`] before asking again.
    pub fn failed(&mut self, now: Instant) {
        self.in_flight = false;
        self.unavailable_until = Some(now + FAILURE_HOLD);
    }

    /// Usable tokens at `now`.
    pub fn available(&self, now: Instant) -> u64 {
        self.batches.iter().filter(|b| b.expires > now).map(|b| b.tokens).sum()
    }

    /// When a request last used this lease.
    pub fn last_used(&self) -> Instant {
        self.last_used
    }

    /// True while an ask is in flight.
    pub fn in_flight(&self) -> bool {
        self.in_flight
    }

    /// The size of the next lease: the predicted demand over the predict window, at
    /// least the minimum prefetch (itself capped at a tenth of the limit, so that an
    /// idle proxy does not hoard a small quota), never more than the limit.
    pub fn ask_size(&self, now: Instant) -> u64 {
        let mut demand = self.demand;
        demand.roll(now, self.sizing.predict_window);
        lease_size(self.limit, self.sizing.min_prefetch, demand.predicted())
    }

    fn start_ask(&mut self, now: Instant) -> u64 {
        self.in_flight = true;
        self.last_ask = self.ask_size(now);
        self.last_ask
    }

    /// A refill is due when the tokens left fall below half the last lease and the
    /// collector is neither asked already, nor known to deny, nor failing.
    fn refill_due(&self, now: Instant) -> bool {
        !self.in_flight
            && self.denied_until.is_none_or(|until| until <= now)
            && self.unavailable_until.is_none_or(|until| until <= now)
            && self.available(now) < self.last_ask.div_ceil(2).max(1)
    }

    fn drop_expired(&mut self, now: Instant) {
        while self.batches.front().is_some_and(|b| b.expires <= now || b.tokens == 0) {
            self.batches.pop_front();
        }
    }
}

/// `min(limit, max(min(min_prefetch, ceil(limit / 10)), predicted, 1))`.
pub fn lease_size(limit: u64, min_prefetch: u64, predicted: u64) -> u64 {
    let floor = min_prefetch.min(limit.div_ceil(10)).max(1);
    floor.max(predicted).min(limit.max(1))
}
