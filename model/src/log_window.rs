//! One log line per interval for an event that can repeat without bound (refused
//! requests, failed accepts), saying how many happened since the line before: the
//! log stays readable and bounded however fast the event repeats.

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
