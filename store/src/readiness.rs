//! Whether the store takes writes now: what readiness probes report.

use crate::TraceStore;

/// How long a failed WAL append makes the store report that it refuses writes: then
/// it reports ready again, and the next write finds out whether the log is writable.
const WAL_FAILURE_UNREADY: std::time::Duration = std::time::Duration::from_secs(5);

impl TraceStore {
    /// The free-space reserve of the data directory's disk, in bytes
    /// (`store.min_free_disk`; 0 when off).
    pub fn min_free_disk_bytes(&self) -> u64 {
        self.inner.config.min_free_disk.as_u64()
    }

    /// Why every write is refused now, if it is: the database or blocks directory was
    /// removed or replaced (the process stops), the data directory's disk is below
    /// `store.min_free_disk`, or a WAL append failed within [`WAL_FAILURE_UNREADY`].
    /// What readiness probes report; a full head (overload) passes, as it clears
    /// within a flush.
    pub fn refuses_writes(&self) -> Option<String> {
        if let Some(lost) = self.inner.data_dir_lost.borrow().as_ref() {
            return Some(lost.what.clone());
        }
        if self.inner.disk.is_below() {
            return Some(format!(
                "the data directory's disk is below store.min_free_disk ({}): new spans are refused",
                self.inner.config.min_free_disk
            ));
        }
        // Only for a while after the failure: nothing else would tell that the log can
        // be written again once traffic, which readiness turns away, stops coming.
        self.inner
            .wal_failing
            .lock()
            .as_ref()
            .filter(|(_, at)| at.elapsed() < WAL_FAILURE_UNREADY)
            .map(|(error, _)| format!("the write-ahead log cannot be written: {error}"))
    }
}
