//! Handing memory back to the operating system after a merge.
//!
//! A merge allocates tens of MiB on a blocking-pool thread (each input's decoded
//! dictionary pages, the output's column chunk) and frees them at its end. The process
//! allocator may keep freed pages for reuse, and some (mimalloc among them) give them
//! back only when the same thread allocates again, which a pool thread that goes idle
//! does not: after a minute at 10,000 spans/s the idle collector stayed about 45 MiB
//! above what it holds. The binary, which picks the allocator, registers with
//! [`set_release_hook`] a function that returns the calling thread's freed memory; the
//! store calls it on the merging thread once the merge is done. Flushes do not call
//! it: they run far more often under heavy ingest, where the pages are soon used
//! again, and forcing them back cost about a tenth of the maximum ingest rate.

use std::sync::OnceLock;

static RELEASE: OnceLock<fn()> = OnceLock::new();

/// Registers `release`, called on a blocking-pool thread after each merge. The first
/// registration wins; later ones are ignored.
pub fn set_release_hook(release: fn()) {
    let _ = RELEASE.set(release);
}

/// Calls the registered hook, if any.
pub(crate) fn release_freed() {
    if let Some(release) = RELEASE.get() {
        release();
    }
}
