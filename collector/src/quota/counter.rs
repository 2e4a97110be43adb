//! One counter: what one key has used under one [`Limit`], for the three algorithms.
//! Pure arithmetic on Unix nanoseconds; the engine supplies the time and the locking.
//!
//! - fixed window: windows aligned to the Unix epoch (`start = now - now % window`),
//!   as envoyproxy/ratelimit keys its Redis counters;
//! - rolling window: buckets of `bucket` length (aligned to the epoch) summed over the
//!   last `ceil(window / bucket)` buckets, as memquota's 100 ms ticks do; never more
//!   than the limit within any window, to bucket granularity;
//! - token bucket: `max_amount` tokens refill per `valid_duration`, up to `burst`,
//!   counted exactly in units of `1 / valid_duration_ns` token (no floating point).
//!
//! A decision never grants more than is left; a denied request charges nothing. A
//! limit of 0 denies every request that asks for anything, whatever the algorithm (a
//! token bucket with a `burst` but no refill included), until the window ends.

use std::collections::VecDeque;
use std::time::Duration;

use meshtel_model::quota::{Algorithm, Limit};

/// Nanoseconds of a duration, saturating, at least 1.
pub(crate) fn nanos(d: Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
}

/// How a counter treats a request that does not fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// Deny it (or, best effort, grant what is left).
    Enforce {
        /// Grant the remainder instead of nothing.
        best_effort: bool,
    },
    /// Grant it in full without charging the counter, and say it would have been denied.
    /// Best effort, what is left is charged and granted as enforcement would (a proxy's
    /// lease then holds what enforcement would give it); only a request nothing is left
    /// for is granted in full as a would-be denial.
    Shadow {
        /// Grant (and charge) the remainder when some is left.
        best_effort: bool,
    },
}

impl Mode {
    /// True when a request that does not fit gets what is left.
    fn best_effort(self) -> bool {
        match self {
            Mode::Enforce { best_effort } | Mode::Shadow { best_effort } => best_effort,
        }
    }
}

/// The answer for one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Step {
    /// Amount granted (and charged, unless shadow).
    pub granted: u64,
    /// Not granted in full: denied (granted 0), or in shadow mode would have been.
    pub denied: bool,
    /// What is left of the limit after the decision.
    pub remaining: u64,
    /// How long the grant may be used: until the window ends (fixed), until the
    /// grant's bucket leaves the window (rolling), one refill period (token bucket).
    pub valid_ns: u64,
    /// When denied: until the amount asked could be granted (or, if it never can, until
    /// the counter is fresh again).
    pub retry_ns: u64,
    /// Until the window resets (fixed), the oldest bucket expires (rolling), the bucket
    /// is full again (token bucket).
    pub reset_ns: u64,
}

/// Live usage of a counter, for the usage API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// In use in the current window (or taken from the bucket).
    pub used: u64,
    /// Until the window resets (or the next token refills).
    pub reset_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum State {
    /// `used` within the window that starts at `start`.
    Fixed { start: u64, used: u64 },
    /// (bucket index = `t / bucket`, amount) oldest first; `used` is their sum.
    Rolling {
        buckets: VecDeque<(u64, u64)>,
        used: u64,
    },
    /// Tokens × `valid_duration_ns`, as of `at`.
    Token { scaled: u128, at: u64 },
}

/// The counter of one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Counter {
    limit: Limit,
    state: State,
    /// Tokens granted since the counter was created (a proxy's lease counts in full).
    pub granted: u64,
    /// Check decisions denied since the counter was created (shadow ones included): one
    /// per denied Check, not per request a proxy then answers 429 from its lease.
    pub denied: u64,
}

/// Window (or refill period) in ns.
fn window_ns(limit: &Limit) -> u64 {
    nanos(limit.valid_duration)
}

/// Rolling window geometry: (bucket ns, buckets per window).
fn rolling_geometry(limit: &Limit, bucket: Duration) -> (u64, u64) {
    let b = nanos(bucket);
    let n = window_ns(limit).div_ceil(b).max(1);
    (b, n)
}

/// Token bucket constants: (ns per token unit V, refill per ns, capacity), all scaled.
fn token_geometry(limit: &Limit, burst: u64) -> (u128, u128, u128) {
    let v = u128::from(window_ns(limit));
    let rate = u128::from(limit.max_amount.max(1));
    (v, rate, u128::from(burst).saturating_mul(v))
}

fn ceil_div(a: u128, b: u128) -> u64 {
    u64::try_from(a.div_ceil(b.max(1))).unwrap_or(u64::MAX)
}

impl Counter {
    /// A fresh counter at `now` (empty window, full bucket).
    pub fn new(limit: &Limit, now: u64) -> Counter {
        Counter {
            limit: *limit,
            state: Self::fresh_state(limit, now, 0),
            granted: 0,
            denied: 0,
        }
    }

    /// The state of `limit` at `now` with `used` already taken.
    fn fresh_state(limit: &Limit, now: u64, used: u64) -> State {
        match limit.algorithm {
            Algorithm::FixedWindow => {
                let w = window_ns(limit);
                State::Fixed {
                    start: now - now % w,
                    used,
                }
            }
            Algorithm::RollingWindow { bucket } => {
                let (b, _) = rolling_geometry(limit, bucket);
                let mut buckets = VecDeque::new();
                if used > 0 {
                    buckets.push_back((now / b, used));
                }
                State::Rolling { buckets, used }
            }
            Algorithm::TokenBucket { burst } => {
                let (v, _, cap) = token_geometry(limit, burst);
                State::Token {
                    scaled: cap.saturating_sub(u128::from(used).saturating_mul(v)),
                    at: now,
                }
            }
        }
    }

    /// The limit the counter last counted under.
    pub fn limit(&self) -> &Limit {
        &self.limit
    }

    /// Switches to `limit` at once. Same algorithm and window: the state is kept (a
    /// token bucket is clipped to a smaller burst). Otherwise what is in use now is
    /// carried into a state of the new shape, so a change never frees quota.
    fn apply_limit(&mut self, limit: &Limit, now: u64) {
        if self.limit == *limit {
            return;
        }
        let same_shape = self.limit.valid_duration == limit.valid_duration
            && match (self.limit.algorithm, limit.algorithm) {
                (Algorithm::FixedWindow, Algorithm::FixedWindow)
                | (Algorithm::TokenBucket { .. }, Algorithm::TokenBucket { .. }) => true,
                (
                    Algorithm::RollingWindow { bucket: a },
                    Algorithm::RollingWindow { bucket: b },
                ) => a == b,
                _ => false,
            };
        if same_shape {
            if let (State::Token { scaled, .. }, Algorithm::TokenBucket { burst }) =
                (&mut self.state, limit.algorithm)
            {
                let (_, _, cap) = token_geometry(limit, burst);
                *scaled = (*scaled).min(cap);
            }
        } else {
            let used = self.usage(now).used;
            self.state = Self::fresh_state(limit, now, used);
        }
        self.limit = *limit;
    }

    /// Decides one Check of `amount` under `limit` (which applies at once if it
    /// changed) and charges what is granted; counts the tokens granted or one denial.
    pub fn charge(&mut self, limit: &Limit, amount: u64, mode: Mode, now: u64) -> Step {
        self.apply_limit(limit, now);
        let step = if self.limit.max_amount == 0 && amount > 0 {
            self.refuse_zero_limit(amount, mode, now)
        } else {
            self.charge_algorithm(amount, mode, now)
        };
        if step.denied {
            self.denied += 1;
        } else {
            self.granted = self.granted.saturating_add(step.granted);
        }
        step
    }

    /// A limit of 0: nothing is ever left. Denied (shadow: granted) until the fixed
    /// window ends, or for a whole window (the other algorithms never free anything).
    fn refuse_zero_limit(&self, amount: u64, mode: Mode, now: u64) -> Step {
        let w = window_ns(&self.limit);
        let until = match self.limit.algorithm {
            Algorithm::FixedWindow => w - now % w,
            _ => w,
        };
        Step::refused(amount, mode, 0, until, until, until)
    }

    fn charge_algorithm(&mut self, amount: u64, mode: Mode, now: u64) -> Step {
        match self.limit.algorithm {
            Algorithm::FixedWindow => self.charge_fixed(amount, mode, now),
            Algorithm::RollingWindow { bucket } => self.charge_rolling(bucket, amount, mode, now),
            Algorithm::TokenBucket { burst } => self.charge_token(burst, amount, mode, now),
        }
    }

    /// How much of `avail` to grant for `amount`: Some(grant) or None when denied.
    fn grant(amount: u64, avail: u64, mode: Mode) -> Option<u64> {
        if amount <= avail {
            Some(amount)
        } else if mode.best_effort() && avail > 0 {
            Some(avail)
        } else {
            None
        }
    }

    fn charge_fixed(&mut self, amount: u64, mode: Mode, now: u64) -> Step {
        let max = self.limit.max_amount;
        let w = window_ns(&self.limit);
        let State::Fixed { start, used } = &mut self.state else {
            return Step::internal_mismatch(amount);
        };
        let current = now - now % w;
        // A clock stepping back stays in the newest window seen.
        if current > *start {
            *start = current;
            *used = 0;
        }
        let until_end = start.saturating_add(w).saturating_sub(now);
        let avail = max.saturating_sub(*used);
        match Self::grant(amount, avail, mode) {
            Some(g) => {
                *used += g;
                Step {
                    granted: g,
                    denied: false,
                    remaining: max.saturating_sub(*used),
                    valid_ns: until_end,
                    retry_ns: 0,
                    reset_ns: until_end,
                }
            }
            None => Step::refused(amount, mode, avail, until_end, until_end, until_end),
        }
    }

    fn charge_rolling(&mut self, bucket: Duration, amount: u64, mode: Mode, now: u64) -> Step {
        let max = self.limit.max_amount;
        let (b, n) = rolling_geometry(&self.limit, bucket);
        let State::Rolling { buckets, used } = &mut self.state else {
            return Step::internal_mismatch(amount);
        };
        let mut current = now / b;
        if let Some(&(newest, _)) = buckets.back() {
            current = current.max(newest);
        }
        while let Some(&(idx, a)) = buckets.front() {
            if idx + n > current {
                break;
            }
            *used -= a;
            buckets.pop_front();
        }
        let leaves_at = |idx: u64| (idx + n).saturating_mul(b).saturating_sub(now);
        let avail = max.saturating_sub(*used);
        match Self::grant(amount, avail, mode) {
            Some(g) => {
                *used += g;
                match buckets.back_mut() {
                    Some((idx, a)) if *idx == current => *a += g,
                    _ if g > 0 => buckets.push_back((current, g)),
                    _ => {}
                }
                let reset = buckets.front().map_or(0, |&(idx, _)| leaves_at(idx));
                Step {
                    granted: g,
                    denied: false,
                    remaining: max.saturating_sub(*used),
                    valid_ns: leaves_at(current),
                    retry_ns: 0,
                    reset_ns: reset,
                }
            }
            None => {
                // Until enough old buckets leave the window to fit the amount; best
                // effort takes any, so until the first one leaves (see charge_token).
                let need = if mode.best_effort() {
                    1
                } else {
                    amount.saturating_sub(avail)
                };
                let mut freed = 0u64;
                let mut retry = leaves_at(current);
                if amount <= max {
                    for &(idx, a) in buckets.iter() {
                        freed += a;
                        if freed >= need {
                            retry = leaves_at(idx);
                            break;
                        }
                    }
                }
                let reset = buckets.front().map_or(0, |&(idx, _)| leaves_at(idx));
                Step::refused(amount, mode, avail, leaves_at(current), retry, reset)
            }
        }
    }

    fn charge_token(&mut self, burst: u64, amount: u64, mode: Mode, now: u64) -> Step {
        let (v, rate, cap) = token_geometry(&self.limit, burst);
        let State::Token { scaled, at } = &mut self.state else {
            return Step::internal_mismatch(amount);
        };
        let elapsed = u128::from(now.saturating_sub(*at));
        *scaled = scaled.saturating_add(elapsed.saturating_mul(rate)).min(cap);
        *at = (*at).max(now);
        let avail = u64::try_from(*scaled / v).unwrap_or(u64::MAX);
        let next_token = |scaled: u128| {
            if scaled >= cap {
                ceil_div(v, rate)
            } else {
                ceil_div(v - scaled % v, rate)
            }
        };
        match Self::grant(amount, avail, mode) {
            Some(g) => {
                *scaled -= u128::from(g) * v;
                Step {
                    granted: g,
                    denied: false,
                    remaining: u64::try_from(*scaled / v).unwrap_or(u64::MAX),
                    // Taken tokens are spent whenever they are used: a grant holds for
                    // one refill period, so that a proxy's lease (Mixer's prefetch)
                    // serves requests for that long, not until the next token
                    // (a millisecond at 1,000/s, which made every request ask again).
                    valid_ns: u64::try_from(v).unwrap_or(u64::MAX),
                    retry_ns: 0,
                    reset_ns: ceil_div(cap - *scaled, rate),
                }
            }
            None => {
                // Best effort takes any token, so its next chance is the next token, not
                // the whole amount: a proxy's lease ask (best effort, for several)
                // otherwise held its denial for as many refill periods as it asked
                // tokens, and traffic passed in clumps with seconds of 429s between.
                let need = if mode.best_effort() {
                    v
                } else {
                    u128::from(amount).saturating_mul(v)
                };
                let retry = if need <= cap {
                    ceil_div(need.saturating_sub(*scaled), rate)
                } else {
                    ceil_div(cap - *scaled, rate)
                };
                let reset = ceil_div(cap - *scaled, rate);
                Step::refused(amount, mode, avail, next_token(*scaled), retry, reset)
            }
        }
    }

    /// Usage at `now`, without changing anything.
    pub fn usage(&self, now: u64) -> Usage {
        match (&self.state, self.limit.algorithm) {
            (State::Fixed { start, used }, _) => {
                let w = window_ns(&self.limit);
                if now >= start.saturating_add(w) {
                    Usage {
                        used: 0,
                        reset_ns: w - now % w,
                    }
                } else {
                    Usage {
                        used: *used,
                        reset_ns: start + w - now,
                    }
                }
            }
            (State::Rolling { buckets, .. }, Algorithm::RollingWindow { bucket }) => {
                let (b, n) = rolling_geometry(&self.limit, bucket);
                let current = now / b;
                let live = buckets.iter().filter(|(idx, _)| idx + n > current);
                let used = live.clone().map(|(_, a)| a).sum();
                let reset_ns = live
                    .map(|(idx, _)| (idx + n).saturating_mul(b).saturating_sub(now))
                    .next()
                    .unwrap_or(0);
                Usage { used, reset_ns }
            }
            (State::Token { scaled, at }, Algorithm::TokenBucket { burst }) => {
                let (v, rate, cap) = token_geometry(&self.limit, burst);
                let elapsed = u128::from(now.saturating_sub(*at));
                let scaled = scaled.saturating_add(elapsed.saturating_mul(rate)).min(cap);
                let left = u64::try_from(scaled / v).unwrap_or(u64::MAX);
                let reset_ns = if scaled >= cap {
                    0
                } else {
                    ceil_div(v - scaled % v, rate)
                };
                Usage {
                    used: burst.saturating_sub(left),
                    reset_ns,
                }
            }
            _ => Usage {
                used: 0,
                reset_ns: 0,
            },
        }
    }

    /// True when the counter is as good as fresh: its window has ended, every bucket
    /// has left the window, or the token bucket has refilled. Idle counters can be
    /// dropped without changing any decision.
    pub fn is_idle(&self, now: u64) -> bool {
        match (&self.state, self.limit.algorithm) {
            (State::Fixed { start, .. }, _) => now >= start.saturating_add(window_ns(&self.limit)),
            (State::Rolling { buckets, .. }, Algorithm::RollingWindow { bucket }) => {
                let (b, n) = rolling_geometry(&self.limit, bucket);
                buckets.back().is_none_or(|&(idx, _)| idx + n <= now / b)
            }
            (State::Token { scaled, at }, Algorithm::TokenBucket { burst }) => {
                let (_, rate, cap) = token_geometry(&self.limit, burst);
                let elapsed = u128::from(now.saturating_sub(*at));
                scaled.saturating_add(elapsed.saturating_mul(rate)) >= cap
            }
            _ => true,
        }
    }
}

impl Step {
    /// A request that does not fit: denied, or granted in full in shadow mode.
    fn refused(amount: u64, mode: Mode, avail: u64, valid: u64, retry: u64, reset: u64) -> Step {
        Step {
            granted: if matches!(mode, Mode::Shadow { .. }) { amount } else { 0 },
            denied: true,
            remaining: avail,
            valid_ns: valid,
            retry_ns: retry,
            reset_ns: reset,
        }
    }

    /// State and limit disagree, which `apply_limit` rules out; grant (fail open)
    /// rather than panic.
    fn internal_mismatch(amount: u64) -> Step {
        Step {
            granted: amount,
            denied: false,
            remaining: 0,
            valid_ns: 0,
            retry_ns: 0,
            reset_ns: 0,
        }
    }
}

#[cfg(test)]
mod tests;
