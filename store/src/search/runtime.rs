//! Where the queries run: the DataFusion task context (its tuning and memory bound) and the
//! two query runtimes, the scan lane's threads at a lower priority.

use std::sync::Arc;

use datafusion_execution::TaskContext;
use datafusion_execution::config::SessionConfig;
use datafusion_execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion_execution::runtime_env::RuntimeEnvBuilder;

/// The context every query runs in, tuned for the span table: filters pushed into the
/// Parquet scan and reordered by cost, page index and bloom filters read; its queries
/// together take at most `max_memory` bytes.
pub(super) fn session(max_memory: usize) -> Arc<TaskContext> {
    let mut config = SessionConfig::new()
        .with_target_partitions(2)
        .with_batch_size(8192);
    let parquet = &mut config.options_mut().execution.parquet;
    parquet.pushdown_filters = true;
    parquet.reorder_filters = true;
    parquet.enable_page_index = true;
    parquet.bloom_filter_on_read = true;
    let task = TaskContext::default().with_session_config(config);
    // Nothing spills: a query over the bound fails ([`crate::Error::is_out_of_memory`])
    // rather than writing to a temporary directory of unknown size.
    let runtime = RuntimeEnvBuilder::new()
        .with_memory_limit(max_memory, 1.0)
        .with_disk_manager_builder(
            DiskManagerBuilder::default().with_mode(DiskManagerMode::Disabled),
        )
        .build_arc();
    Arc::new(match runtime {
        Ok(runtime) => task.with_runtime(runtime),
        Err(error) => {
            tracing::warn!(%error, "no memory bound for queries: their runtime could not be built");
            task
        }
    })
}

/// A query runtime, or `None` (queries then share the caller's runtime) when the
/// threads cannot be had.
pub(super) fn query_runtime(
    threads: usize,
    name: &str,
    nice: i32,
) -> Option<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name(name)
        .on_thread_start(move || lower_priority(nice))
        .enable_all()
        .build()
        .map_err(|e| {
            tracing::warn!(error = %e, runtime = name, "no query runtime; queries share the main one");
        })
        .ok()
}

/// Nice value of the scan lane's threads: when a tag scan and a fetch both want a core,
/// the kernel's scheduler gives the fetch most of it (nice 10 weighs about a tenth of
/// nice 0), and a scan alone still has the whole machine.
pub(super) const SCAN_LANE_NICE: i32 = 10;

/// Lowers the calling thread's scheduling priority by `nice` from its own (Linux: per
/// thread; at most to 19): under a process started with `nice -n 15`, setting 10 would
/// raise it, or fail without privileges.
pub(crate) fn lower_priority(nice: i32) {
    if nice == 0 {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        let tid = rustix::thread::gettid();
        let lowered = rustix::process::getpriority_process(Some(tid))
            .and_then(|own| rustix::process::setpriority_process(Some(tid), (own + nice).min(19)));
        if let Err(e) = lowered {
            tracing::debug!(error = %e, nice, "could not lower a thread's priority");
        }
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn own_nice() -> i32 {
        rustix::process::getpriority_process(Some(rustix::thread::gettid())).unwrap()
    }

    /// From a thread already at a lower priority than the process's, the scan lane's
    /// nice lowers it further (setting 10 outright raised it back to 10).
    #[test]
    fn a_thread_is_lowered_from_its_own_priority() {
        let (start, lowered) = std::thread::spawn(|| {
            let tid = rustix::thread::gettid();
            let start = (own_nice() + 5).min(19);
            rustix::process::setpriority_process(Some(tid), start).unwrap();
            lower_priority(SCAN_LANE_NICE);
            (start, own_nice())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (start + SCAN_LANE_NICE).min(19));
    }
}
