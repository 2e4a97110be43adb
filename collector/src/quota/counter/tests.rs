#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;

const S: u64 = 1_000_000_000;
const MS: u64 = 1_000_000;
/// A whole second (so a multiple of every window used here).
const T0: u64 = 1_700_000_000 * S;

const ENFORCE: Mode = Mode::Enforce { best_effort: false };
const BEST_EFFORT: Mode = Mode::Enforce { best_effort: true };
const SHADOW: Mode = Mode::Shadow { best_effort: false };

fn fixed(max: u64, window: Duration) -> Limit {
    Limit {
        max_amount: max,
        valid_duration: window,
        algorithm: Algorithm::FixedWindow,
    }
}

fn rolling(max: u64, window: Duration, bucket: Duration) -> Limit {
    Limit {
        max_amount: max,
        valid_duration: window,
        algorithm: Algorithm::RollingWindow { bucket },
    }
}

fn token(max: u64, window: Duration, burst: u64) -> Limit {
    Limit {
        max_amount: max,
        valid_duration: window,
        algorithm: Algorithm::TokenBucket { burst },
    }
}

#[test]
fn fixed_windows_are_aligned_to_the_epoch() {
    let limit = fixed(3, Duration::from_secs(10));
    // Start 4 s into a 10 s window: it ends 6 s later, not 10.
    let start = T0 + 4 * S;
    let mut c = Counter::new(&limit, start);
    let step = c.charge(&limit, 1, ENFORCE, start);
    assert_eq!((step.granted, step.denied, step.remaining), (1, false, 2));
    assert_eq!(step.valid_ns, 6 * S);
    assert_eq!(step.reset_ns, 6 * S);
    assert_eq!(c.charge(&limit, 2, ENFORCE, start + S).granted, 2);
    // The last nanosecond of the window is still in it.
    let denied = c.charge(&limit, 1, ENFORCE, T0 + 10 * S - 1);
    assert!(denied.denied);
    assert_eq!(denied.granted, 0);
    assert_eq!(denied.retry_ns, 1);
    assert_eq!(denied.remaining, 0);
    // The next window starts at T0 + 10 s exactly.
    let fresh = c.charge(&limit, 3, ENFORCE, T0 + 10 * S);
    assert_eq!((fresh.granted, fresh.remaining), (3, 0));
    assert_eq!(fresh.valid_ns, 10 * S);
    assert_eq!((c.granted, c.denied), (6, 1));
}

#[test]
fn best_effort_grants_the_remainder_then_nothing() {
    let limit = fixed(10, Duration::from_secs(1));
    let mut c = Counter::new(&limit, T0);
    assert_eq!(c.charge(&limit, 8, ENFORCE, T0).granted, 8);
    // All or nothing without best effort.
    let all_or_nothing = c.charge(&limit, 5, ENFORCE, T0);
    assert!(all_or_nothing.denied);
    assert_eq!(all_or_nothing.granted, 0);
    let partial = c.charge(&limit, 5, BEST_EFFORT, T0);
    assert_eq!(
        (partial.granted, partial.denied, partial.remaining),
        (2, false, 0)
    );
    let nothing = c.charge(&limit, 5, BEST_EFFORT, T0);
    assert_eq!((nothing.granted, nothing.denied), (0, true));
}

#[test]
fn shadow_grants_in_full_and_charges_nothing_when_over() {
    let limit = fixed(2, Duration::from_secs(1));
    let mut c = Counter::new(&limit, T0);
    assert!(!c.charge(&limit, 2, SHADOW, T0).denied);
    let over = c.charge(&limit, 1, SHADOW, T0);
    assert_eq!((over.granted, over.denied, over.remaining), (1, true, 0));
    assert_eq!(c.usage(T0).used, 2);
}

/// A proxy's lease asks best effort: in shadow mode it gets (and the counter is
/// charged) what enforcement would give, and only an ask nothing is left for is the
/// would-be denial granted in full.
#[test]
fn shadow_best_effort_grants_what_enforcement_would_then_grants_in_full_when_over() {
    let limit = fixed(5, Duration::from_secs(1));
    let mut c = Counter::new(&limit, T0);
    let shadow = Mode::Shadow { best_effort: true };
    let some = c.charge(&limit, 3, shadow, T0);
    assert_eq!((some.granted, some.denied), (3, false));
    let rest = c.charge(&limit, 10, shadow, T0);
    assert_eq!((rest.granted, rest.denied, rest.remaining), (2, false, 0));
    let over = c.charge(&limit, 10, shadow, T0);
    assert_eq!((over.granted, over.denied), (10, true));
    assert!(over.retry_ns > 0);
    assert_eq!(c.usage(T0).used, 5);
}

#[test]
fn rolling_window_slides_bucket_by_bucket() {
    let limit = rolling(10, Duration::from_secs(1), Duration::from_millis(100));
    let mut c = Counter::new(&limit, T0);
    assert_eq!(c.charge(&limit, 6, ENFORCE, T0).granted, 6);
    assert_eq!(c.charge(&limit, 4, ENFORCE, T0 + 500 * MS).granted, 4);
    let denied = c.charge(&limit, 5, ENFORCE, T0 + 999 * MS);
    assert!(denied.denied);
    // The first bucket (6) leaves the window at T0 + 1 s.
    assert_eq!(denied.retry_ns, MS);
    assert_eq!(denied.reset_ns, MS);
    let after = c.charge(&limit, 6, ENFORCE, T0 + S);
    assert_eq!((after.granted, after.remaining), (6, 0));
    // That grant's bucket (the one starting at T0 + 1 s) leaves at T0 + 2 s.
    assert_eq!(after.valid_ns, S);
    // The 4 of T0 + 500 ms are still in the window until T0 + 1.5 s.
    assert!(c.charge(&limit, 1, ENFORCE, T0 + 1_499 * MS).denied);
    assert_eq!(c.charge(&limit, 4, ENFORCE, T0 + 1_500 * MS).granted, 4);
    assert_eq!(c.usage(T0 + 1_500 * MS).used, 10);
    // A best-effort ask (a proxy's lease) for 6, none left: back when the first
    // bucket leaves (the 6 of T0 + 1 s, at T0 + 2 s), not when 6 would fit.
    let lease = c.charge(&limit, 6, BEST_EFFORT, T0 + 1_600 * MS);
    assert!(lease.denied);
    assert_eq!(lease.retry_ns, 400 * MS);
    // The newest bucket (T0 + 1.5 s) leaves the window at T0 + 2.5 s.
    assert!(!c.is_idle(T0 + 2_499 * MS));
    assert!(c.is_idle(T0 + 2_500 * MS));
}

#[test]
fn rolling_window_never_passes_the_limit_in_any_window() {
    let limit = rolling(7, Duration::from_millis(1000), Duration::from_millis(100));
    let mut c = Counter::new(&limit, T0);
    let mut grants: Vec<(u64, u64)> = Vec::new();
    // A demand of 1 every 13 ms, 3 every 71 ms, for 5 s.
    for i in 0..5000u64 {
        let now = T0 + i * MS;
        for (every, amount) in [(13, 1), (71, 3)] {
            if i % every == 0 {
                let step = c.charge(&limit, amount, ENFORCE, now);
                if step.granted > 0 {
                    grants.push((now, step.granted));
                }
            }
        }
    }
    // Any window of 1 s aligned to a bucket (the algorithm's granularity) holds at
    // most 7.
    for start in (0..5000u64).step_by(100) {
        let from = T0 + start * MS;
        let in_window: u64 = grants
            .iter()
            .filter(|(t, _)| *t >= from && *t < from + S)
            .map(|(_, a)| a)
            .sum();
        assert!(in_window <= 7, "window at +{start} ms holds {in_window}");
    }
    assert!(grants.iter().map(|(_, a)| a).sum::<u64>() >= 7 * 4);
}

#[test]
fn token_bucket_refills_at_the_rate_up_to_the_burst() {
    // 10 per second, burst 5: a token every 100 ms.
    let limit = token(10, Duration::from_secs(1), 5);
    let mut c = Counter::new(&limit, T0);
    let first = c.charge(&limit, 5, ENFORCE, T0);
    assert_eq!((first.granted, first.remaining), (5, 0));
    // Taken tokens hold for one refill period: a proxy's lease of them lasts.
    assert_eq!(first.valid_ns, 1000 * MS);
    assert_eq!(first.reset_ns, 500 * MS);
    let denied = c.charge(&limit, 1, ENFORCE, T0 + 99 * MS);
    assert!(denied.denied);
    assert_eq!(denied.retry_ns, MS);
    assert_eq!(c.charge(&limit, 1, ENFORCE, T0 + 100 * MS).granted, 1);
    // Asking for 3 at +150 ms (0.5 token left) waits for 2.5 tokens: 250 ms.
    let three = c.charge(&limit, 3, ENFORCE, T0 + 150 * MS);
    assert!(three.denied);
    assert_eq!(three.retry_ns, 250 * MS);
    // Best effort takes the whole tokens there are.
    let partial = c.charge(&limit, 3, BEST_EFFORT, T0 + 300 * MS);
    assert_eq!(partial.granted, 2);
    // With none, it is told to come back for the next token (a proxy's lease ask for
    // 6 at +350 ms, 0.5 token left: 50 ms), not for all it asked (550 ms).
    let lease = c.charge(&limit, 6, BEST_EFFORT, T0 + 350 * MS);
    assert!(lease.denied);
    assert_eq!(lease.retry_ns, 50 * MS);
    assert_eq!(c.charge(&limit, 6, BEST_EFFORT, T0 + 400 * MS).granted, 1);
    // Long idle: back to the burst, not beyond.
    assert!(c.is_idle(T0 + 10 * S));
    assert_eq!(c.usage(T0 + 10 * S).used, 0);
    assert_eq!(c.charge(&limit, 6, BEST_EFFORT, T0 + 10 * S).granted, 5);
}

#[test]
fn a_changed_limit_applies_at_once_and_keeps_what_is_used() {
    let big = fixed(10, Duration::from_secs(1));
    let small = fixed(3, Duration::from_secs(1));
    let mut c = Counter::new(&big, T0);
    assert_eq!(c.charge(&big, 5, ENFORCE, T0).granted, 5);
    assert!(c.charge(&small, 1, ENFORCE, T0).denied);
    assert_eq!(c.limit().max_amount, 3);
    // Another algorithm: usage is carried, nothing is freed.
    let rolling_limit = rolling(6, Duration::from_secs(1), Duration::from_millis(100));
    let step = c.charge(&rolling_limit, 1, ENFORCE, T0 + 10 * MS);
    assert_eq!((step.granted, step.remaining), (1, 0));
    let token_limit = token(6, Duration::from_secs(1), 6);
    assert!(c.charge(&token_limit, 1, ENFORCE, T0 + 20 * MS).denied);
}

#[test]
fn idle_counters_are_those_a_fresh_one_would_equal() {
    let limit = fixed(1, Duration::from_secs(1));
    let mut c = Counter::new(&limit, T0 + 300 * MS);
    c.charge(&limit, 1, ENFORCE, T0 + 300 * MS);
    assert!(!c.is_idle(T0 + 999 * MS));
    assert!(c.is_idle(T0 + S));
    let usage = c.usage(T0 + 400 * MS);
    assert_eq!(usage.used, 1);
    assert_eq!(usage.reset_ns, 600 * MS);
}

#[test]
fn amount_zero_only_checks() {
    let limit = fixed(1, Duration::from_secs(1));
    let mut c = Counter::new(&limit, T0);
    assert!(!c.charge(&limit, 0, ENFORCE, T0).denied);
    assert_eq!(c.charge(&limit, 1, ENFORCE, T0).granted, 1);
    let check = c.charge(&limit, 0, ENFORCE, T0);
    assert_eq!(
        (check.granted, check.denied, check.remaining),
        (0, false, 0)
    );
    assert!(c.charge(&limit, 1, ENFORCE, T0).denied);
}

#[test]
fn a_zero_limit_denies_every_request_under_every_algorithm() {
    let w = Duration::from_secs(10);
    let limits = [
        fixed(0, w),
        rolling(0, w, Duration::from_secs(1)),
        token(0, w, 0),
        // A burst with nothing refilling it: still nothing is granted.
        token(0, w, 5),
    ];
    for limit in limits {
        let start = T0 + 4 * S;
        let mut c = Counter::new(&limit, start);
        for (i, mode) in [ENFORCE, BEST_EFFORT, ENFORCE].into_iter().enumerate() {
            let now = start + i as u64 * 7 * S;
            let step = c.charge(&limit, 1, mode, now);
            assert!(step.denied, "{limit:?} {mode:?}");
            assert_eq!((step.granted, step.remaining), (0, 0), "{limit:?}");
            assert!(step.retry_ns > 0 && step.reset_ns > 0, "{limit:?} {step:?}");
        }
        // Shadow mode lets it through and says it would have been denied.
        let shadow = c.charge(&limit, 2, SHADOW, start);
        assert_eq!((shadow.granted, shadow.denied), (2, true), "{limit:?}");
        // Asking for nothing (envoy's hits_addend 0) is not over the limit.
        assert!(!c.charge(&limit, 0, ENFORCE, start).denied, "{limit:?}");
        assert_eq!((c.granted, c.denied), (0, 4), "{limit:?}");
    }
    // Fixed windows: denied until the window ends.
    let limit = fixed(0, w);
    let mut c = Counter::new(&limit, T0 + 4 * S);
    assert_eq!(c.charge(&limit, 1, ENFORCE, T0 + 4 * S).retry_ns, 6 * S);
}

#[test]
fn a_limit_lowered_to_zero_applies_at_once() {
    for (before, after) in [
        (
            fixed(5, Duration::from_secs(10)),
            fixed(0, Duration::from_secs(10)),
        ),
        (
            token(5, Duration::from_secs(10), 5),
            token(0, Duration::from_secs(10), 5),
        ),
    ] {
        let mut c = Counter::new(&before, T0);
        assert!(!c.charge(&before, 1, ENFORCE, T0).denied);
        assert!(c.charge(&after, 1, ENFORCE, T0 + S).denied, "{after:?}");
    }
}
