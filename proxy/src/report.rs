//! Request records to the collector over one long-lived `Mixer.Report` stream.
//!
//! ```text
//!  request path ──try_send──► bounded queue ──batch──► Report stream ──► collector
//!       (full: drop + count)         ▲                    │ acks (one per batch)
//!                                    └── reconnect with exponential backoff
//! ```
//!
//! The request path never waits: [`ReportQueue::submit`] is a `try_send`, and a full
//! queue drops the record and counts it (`meshtel_proxy_reports_dropped_total`).
//! While the collector is down, records wait in the queue until it fills. When a
//! stream breaks, the batches it had not acknowledged are counted as dropped (some
//! may have arrived; the count errs on the side of reporting loss).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use meshtel_model::mixer::mixer_client::MixerClient;
use meshtel_model::mixer::{ReportRequest, RequestRecord};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use crate::stats::Stats;

/// Most records in one `ReportRequest`.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// How long a batch waits for more records after its first.
pub const BATCH_LINGER: Duration = Duration::from_millis(100);
/// While a batch lingers, how often it takes what has been queued: the request path
/// never wakes the sender, so it wakes at most this often however busy the proxy is.
pub const BATCH_POLL: Duration = Duration::from_millis(10);
/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long shutdown waits to hand the queued records over.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// The request path's handle on the record queue.
#[derive(Debug, Clone)]
pub struct ReportQueue {
    sender: mpsc::Sender<RequestRecord>,
    dropped_since_last: Arc<AtomicU64>,
    stats: Stats,
}

impl ReportQueue {
    /// Queues a record without waiting; a full queue drops it and counts the drop.
    pub fn submit(&self, record: RequestRecord) {
        if self.sender.try_send(record).is_err() {
            self.stats.reports_dropped.inc();
            self.dropped_since_last.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The background half: owns the queue's receiver and the stream.
#[derive(Debug)]
pub struct ReportStream {
    endpoint: Endpoint,
    proxy_id: String,
    receiver: mpsc::Receiver<RequestRecord>,
    dropped_since_last: Arc<AtomicU64>,
    stats: Stats,
}

/// A queue of `capacity` records and the task that streams them to `endpoint`.
pub fn report_channel(endpoint: Endpoint, proxy_id: String, capacity: usize, stats: Stats) -> (ReportQueue, ReportStream) {
    let (sender, receiver) = mpsc::channel(capacity.max(1));
    let dropped_since_last = Arc::new(AtomicU64::new(0));
    let queue = ReportQueue { sender, dropped_since_last: dropped_since_last.clone(), stats: stats.clone() };
    (queue, ReportStream { endpoint, proxy_id, receiver, dropped_since_last, stats })
}

enum StreamEnd {
    Shutdown,
    Broken(String),
}

impl ReportStream {
    /// Streams until `shutdown` flips to true, then flushes what is queued (bounded by
    /// [`SHUTDOWN_FLUSH`]).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut reconnect = Reconnect::new("report");
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.open_and_pump(&mut shutdown).await {
                Ok(StreamEnd::Shutdown) => return,
                Ok(StreamEnd::Broken(reason)) => reconnect.broken(&reason),
                Err(reason) => reconnect.unavailable(&self.endpoint, &reason),
            }
            tokio::select! {
                () = tokio::time::sleep(reconnect.next_delay()) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// Opens one stream and feeds it until it breaks or shutdown. `Err` when it could
    /// not be opened at all.
    async fn open_and_pump(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<StreamEnd, String> {
        let channel = tokio::select! {
            connected = self.endpoint.connect() => connected.map_err(|e| crate::mesh::error_chain(&e))?,
            _ = shutdown.changed() => return Ok(StreamEnd::Shutdown),
        };
        let (batches, batch_receiver) = mpsc::channel::<ReportRequest>(4);
        let mut client = MixerClient::new(channel);
        let mut responses = tokio::select! {
            response = client.report(ReceiverStream::new(batch_receiver)) => {
                response.map_err(|status| format!("{}: {}", status.code(), status.message()))?.into_inner()
            }
            _ = shutdown.changed() => return Ok(StreamEnd::Shutdown),
        };
        self.stats.report_stream_connects.inc();
        info!(endpoint = %self.endpoint.uri(), "report stream open");
        let mut unacknowledged: VecDeque<u64> = VecDeque::new();
        let end = loop {
            tokio::select! {
                _ = shutdown.changed() => {
                    self.flush_on_shutdown(&batches, &mut responses, &mut unacknowledged).await;
                    break StreamEnd::Shutdown;
                }
                message = responses.message() => match message {
                    Ok(Some(ack)) => {
                        unacknowledged.pop_front();
                        self.stats.reports_accepted.inc_by(ack.accepted);
                    }
                    Ok(None) => break StreamEnd::Broken("collector closed the stream".to_owned()),
                    Err(status) => break StreamEnd::Broken(format!("{}: {}", status.code(), status.message())),
                },
                first = self.receiver.recv() => {
                    let Some(first) = first else { break StreamEnd::Shutdown };
                    let batch = self.fill_batch(first).await;
                    let count = batch.records.len() as u64;
                    if batches.send(batch).await.is_err() {
                        self.count_lost(count);
                        break StreamEnd::Broken("request stream closed".to_owned());
                    }
                    self.stats.reports_sent.inc_by(count);
                    unacknowledged.push_back(count);
                }
            }
        };
        if let StreamEnd::Broken(_) = end {
            self.count_lost(unacknowledged.iter().sum());
        }
        Ok(end)
    }

    /// `first` plus whatever arrives within [`BATCH_LINGER`], up to [`MAX_BATCH_RECORDS`].
    async fn fill_batch(&mut self, first: RequestRecord) -> ReportRequest {
        let mut records = Vec::with_capacity(64);
        records.push(first);
        gather(&mut self.receiver, &mut records, MAX_BATCH_RECORDS, BATCH_LINGER).await;
        self.batch(records)
    }

    fn batch(&self, records: Vec<RequestRecord>) -> ReportRequest {
        ReportRequest {
            proxy_id: self.proxy_id.clone(),
            records,
            dropped_since_last: self.dropped_since_last.swap(0, Ordering::Relaxed),
            sent_unix_nano: unix_nanos(SystemTime::now()),
        }
    }

    fn count_lost(&self, count: u64) {
        if count > 0 {
            self.stats.reports_dropped.inc_by(count);
            self.dropped_since_last.fetch_add(count, Ordering::Relaxed);
        }
    }

    async fn flush_on_shutdown(
        &mut self,
        batches: &mpsc::Sender<ReportRequest>,
        responses: &mut tonic::Streaming<meshtel_model::mixer::ReportResponse>,
        unacknowledged: &mut VecDeque<u64>,
    ) {
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let flush = async {
            let mut records = Vec::new();
            while let Ok(record) = self.receiver.try_recv() {
                records.push(record);
                if records.len() == MAX_BATCH_RECORDS {
                    let count = records.len() as u64;
                    if batches.send(self.batch(std::mem::take(&mut records))).await.is_err() {
                        return;
                    }
                    self.stats.reports_sent.inc_by(count);
                    unacknowledged.push_back(count);
                }
            }
            if !records.is_empty() {
                let count = records.len() as u64;
                if batches.send(self.batch(records)).await.is_ok() {
                    self.stats.reports_sent.inc_by(count);
                    unacknowledged.push_back(count);
                }
            }
            while !unacknowledged.is_empty() {
                match responses.message().await {
                    Ok(Some(ack)) => {
                        unacknowledged.pop_front();
                        self.stats.reports_accepted.inc_by(ack.accepted);
                    }
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, flush).await;
        self.receiver.close();
        let lost: u64 = unacknowledged.iter().sum::<u64>() + self.receiver.len() as u64;
        self.count_lost(lost);
    }
}

/// Reconnecting a long-lived stream to the collector: exponential backoff from
/// [`INITIAL_BACKOFF`] to [`MAX_BACKOFF`], reset once a stream was open; a failure
/// is logged loudly once, then quietly while the collector stays down.
#[derive(Debug)]
pub struct Reconnect {
    stream: &'static str,
    backoff: Duration,
    failures: u32,
}

impl Reconnect {
    /// Backoff state of the stream named `stream` (a log field).
    pub fn new(stream: &'static str) -> Reconnect {
        Reconnect { stream, backoff: INITIAL_BACKOFF, failures: 0 }
    }

    /// An open stream broke: reconnect at once-ish.
    pub fn broken(&mut self, reason: &str) {
        warn!(stream = self.stream, reason = %reason, "collector stream broken, reconnecting");
        self.backoff = INITIAL_BACKOFF;
        self.failures = 0;
    }

    /// The stream could not be opened.
    pub fn unavailable(&mut self, endpoint: &Endpoint, reason: &str) {
        self.failures += 1;
        if self.failures == 1 {
            warn!(stream = self.stream, endpoint = %endpoint.uri(), reason = %reason, "collector stream unavailable, retrying with backoff");
        } else {
            debug!(stream = self.stream, reason = %reason, backoff_ms = self.backoff.as_millis() as u64, "collector stream still unavailable");
        }
    }

    /// How long to wait before the next attempt (doubling each time).
    pub fn next_delay(&mut self) -> Duration {
        let delay = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        delay
    }
}

/// Fills `batch` (which holds the first item) from `receiver` for up to `linger` or
/// until it holds `max` items, taking what is queued every [`BATCH_POLL`] rather than
/// waiting on each item: a wake-up per request would cost the request path a
/// cross-thread notification each time.
pub(crate) async fn gather<T>(receiver: &mut mpsc::Receiver<T>, batch: &mut Vec<T>, max: usize, linger: Duration) {
    let deadline = Instant::now() + linger;
    loop {
        while batch.len() < max {
            match receiver.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return,
            }
        }
        let now = Instant::now();
        if batch.len() >= max || now >= deadline {
            return;
        }
        tokio::time::sleep_until(deadline.min(now + BATCH_POLL)).await;
    }
}

/// Unix nanoseconds (0 before the epoch).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
