//! One log line per interval for an event that can repeat without bound (refused
//! requests, failed accepts), saying how many happened since the line before: the
//! log stays readable and bounded however fast the event repeats.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

/// At most one line per this interval, for each kind of event.
pub const LOG_INTERVAL: Duration = Duration::from_secs(10);

/// When the next line of one kind of event may be written, and how many events went
/// unlogged since the last one. Time is passed in, so tests need no sleeping.
#[derive(Debug, Default)]
pub struct LogWindow {
    last_line: Option<Instant>,
    unlogged: u64,
}

impl LogWindow {
    /// Notes one event at `now`. Returns how many events the line to write now stands
    /// for (this one included), or `None` when a line was written less than
    /// [`LOG_INTERVAL`] ago.
    pub fn note(&mut self, now: Instant) -> Option<u64> {
        self.note_many(1, now)
    }

    /// Notes `events` events at once at `now`, as [`LogWindow::note`] notes one.
    pub fn note_many(&mut self, events: u64, now: Instant) -> Option<u64> {
        self.unlogged = self.unlogged.saturating_add(events);
        self.flush(now)
    }

    /// For a timer: how many events went unlogged, when there are any and a line is
    /// due at `now`. Without it, the events after a burst's first line would be told
    /// only by the next event, which may never come.
    pub fn flush(&mut self, now: Instant) -> Option<u64> {
        let due = self
            .last_line
            .is_none_or(|last| now.saturating_duration_since(last) >= LOG_INTERVAL);
        if self.unlogged == 0 || !due {
            return None;
        }
        self.last_line = Some(now);
        Some(std::mem::take(&mut self.unlogged))
    }
}

/// What writes a [`Throttled`] line: the count, and what the last event said.
type Emit = Box<dyn Fn(u64, &str) + Send + Sync>;

/// How often a [`Throttled`] timer looks for a line that is due.
const TIMER_TICK: Duration = Duration::from_secs(1);

/// An event that can repeat without bound, logged by its `emit` at most once per
/// [`LOG_INTERVAL`], with how many happened since the line before and what the last
/// one said. A timer, started at the first event noted on a tokio runtime, writes the
/// line for the events after a burst's last line, so that the log adds up to the
/// counter however the burst ends, and never blames a later event for earlier ones.
pub struct Throttled {
    /// The window, and what the last event not yet told said.
    state: Mutex<(LogWindow, String)>,
    emit: Emit,
    timer: AtomicBool,
}

impl std::fmt::Debug for Throttled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Throttled")
    }
}

impl Throttled {
    /// A throttle whose lines `emit(count, last_detail)` writes.
    pub fn new(emit: impl Fn(u64, &str) + Send + Sync + 'static) -> Arc<Throttled> {
        Arc::new(Throttled {
            state: Mutex::new((LogWindow::default(), String::new())),
            emit: Box::new(emit),
            timer: AtomicBool::new(false),
        })
    }

    /// Notes one event, which `detail` describes; writes the line when one is due.
    pub fn note(self: &Arc<Self>, detail: impl std::fmt::Display) {
        self.note_at(Instant::now(), detail);
    }

    fn note_at(self: &Arc<Self>, now: Instant, detail: impl std::fmt::Display) {
        self.start_timer();
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.1.clear();
        let _ = write!(state.1, "{detail}");
        let line = state
            .0
            .note(now)
            .map(|count| (count, std::mem::take(&mut state.1)));
        drop(state);
        self.write(line);
    }

    /// Writes the line for events not yet told, when one is due at `now`.
    fn flush_at(&self, now: Instant) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let line = state
            .0
            .flush(now)
            .map(|count| (count, std::mem::take(&mut state.1)));
        drop(state);
        self.write(line);
    }

    /// Writes `line`, when there is one, with the lock let go.
    fn write(&self, line: Option<(u64, String)>) {
        if let Some((count, detail)) = line {
            (self.emit)(count, &detail);
        }
    }

    /// Starts the timer once, on the runtime of the first event noted on one; it ends
    /// with the throttle.
    fn start_timer(self: &Arc<Self>) {
        if self.timer.load(Ordering::Relaxed) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        if self.timer.swap(true, Ordering::Relaxed) {
            return;
        }
        let weak = Arc::downgrade(self);
        runtime.spawn(async move {
            let mut ticks = tokio::time::interval(TIMER_TICK);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(throttle) = weak.upgrade() else {
                    return;
                };
                throttle.flush_at(Instant::now());
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_interval_says_how_many_happened_since_the_last() {
        let t0 = Instant::now();
        let mut window = LogWindow::default();
        assert_eq!(window.note(t0), Some(1));
        for i in 1..100 {
            assert_eq!(window.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(window.note(t0 + LOG_INTERVAL), Some(100));
        assert_eq!(window.note(t0 + LOG_INTERVAL), None);
    }

    #[test]
    fn a_throttle_tells_each_event_once_with_the_last_detail() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        let throttle = Throttled::new(move |count, detail: &str| {
            seen.lock().unwrap().push((count, detail.to_string()));
        });
        let t0 = Instant::now();
        throttle.note_at(t0, "first");
        for i in 1..=3 {
            throttle.note_at(t0 + Duration::from_millis(i), format_args!("event {i}"));
        }
        throttle.flush_at(t0 + LOG_INTERVAL / 2);
        throttle.flush_at(t0 + LOG_INTERVAL);
        throttle.flush_at(t0 + LOG_INTERVAL * 2);
        assert_eq!(
            *lines.lock().unwrap(),
            vec![(1, "first".to_string()), (3, "event 3".to_string())]
        );
    }

    #[test]
    fn a_timer_tells_the_events_of_a_burst_that_ended() {
        let t0 = Instant::now();
        let mut window = LogWindow::default();
        assert_eq!(window.flush(t0), None, "nothing happened");
        assert_eq!(window.note(t0), Some(1));
        for i in 1..5 {
            assert_eq!(window.note(t0 + Duration::from_millis(i)), None);
        }
        assert_eq!(window.flush(t0 + LOG_INTERVAL / 2), None, "too early");
        assert_eq!(window.flush(t0 + LOG_INTERVAL), Some(4));
        assert_eq!(window.flush(t0 + LOG_INTERVAL * 3), None, "all told");
        // The timer's line starts a new interval for the events that follow.
        assert_eq!(window.note(t0 + LOG_INTERVAL * 3 / 2), None);
        assert_eq!(window.flush(t0 + LOG_INTERVAL * 2), Some(1));
    }
}
