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
//! Each record is encoded on the worker that served its request, into a buffer of
//! its own: the Report stream only frames encoded records into `ReportRequest`s
//! ([`ReportCodec`]), and the worker frees what it allocated.
//! While the collector is down, records wait in the queue until it fills. When a
//! stream breaks (a collector restarting ends it after acknowledging every batch it
//! digested), the batches it had not acknowledged are sent again, first, on the next
//! stream (`meshtel_proxy_reports_resent_total`), up to the queue's capacity in
//! records; beyond that they are counted as dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BufMut;
use meshtel_model::log_window::LogWindow;
use meshtel_model::mixer::{ReportRequest, ReportResponse};
use prost::Message;
use tokio::sync::{Notify, mpsc, watch};
use tonic::codec::{Codec, EncodeBuf, Encoder};
use tonic_prost::ProstDecoder;
use tokio::time::Instant;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::Endpoint;
use tracing::{debug, info, warn};

use crate::stats::Stats;

/// Most records in one `ReportRequest`.
pub const MAX_BATCH_RECORDS: usize = 1000;
/// How long a batch waits for more records after its first.
pub const BATCH_LINGER: Duration = Duration::from_millis(100);
/// While a batch lingers, the shortest wait between two takes of what has been
/// queued: the request path wakes the sender only when the queue passes half full
/// ([`HalfFull`]), so it wakes at most this often however busy the proxy is (see
/// [`gather`]).
pub const BATCH_POLL: Duration = Duration::from_millis(10);
/// First reconnect delay; doubles up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Longest reconnect delay.
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// How long shutdown waits to hand the queued records over.
pub const SHUTDOWN_FLUSH: Duration = Duration::from_secs(2);

/// A `RequestRecord` message, encoded.
type EncodedRecord = Vec<u8>;

/// The request path's handle on the record queue.
#[derive(Debug, Clone)]
pub struct ReportQueue {
    sender: BatchSender<EncodedRecord>,
    dropped_since_last: Arc<AtomicU64>,
    drops: Arc<DropLog>,
    stats: Stats,
}

impl ReportQueue {
    /// Queues the `RequestRecord` message `encode` writes, without waiting; a full
    /// queue drops it (`encode` is not called when the queue was full already) and
    /// counts the drop.
    pub fn submit(&self, encode: impl FnOnce() -> EncodedRecord) {
        let queued = self.sender.has_room() && self.sender.try_send(encode());
        if !queued {
            self.stats.reports_dropped.inc();
            self.dropped_since_last.fetch_add(1, Ordering::Relaxed);
            self.drops.dropped(1, std::time::Instant::now());
        }
    }
}

/// A `ReportRequest` whose records were encoded by the workers.
#[derive(Debug)]
struct EncodedBatch {
    head: ReportRequest,
    records: Vec<EncodedRecord>,
}

impl EncodedBatch {
    /// The `ReportRequest` message: the head's fields, then each record as field 2
    /// (protobuf accepts fields in any order; a repeated message field is its
    /// elements, each tagged and length-prefixed).
    fn encode_into(&self, buf: &mut impl BufMut) {
        const RECORDS_KEY: u8 = (2 << 3) | 2; // field 2, length-delimited
        let _ = self.head.encode(buf);
        for record in &self.records {
            buf.put_u8(RECORDS_KEY);
            let _ = prost::encode_length_delimiter(record.len(), buf);
            buf.put_slice(record);
        }
    }
}

/// The Report stream's codec: [`EncodedBatch`]es out, `ReportResponse`s in.
#[derive(Debug, Default)]
struct ReportCodec;

impl Codec for ReportCodec {
    type Encode = Arc<EncodedBatch>;
    type Decode = ReportResponse;
    type Encoder = BatchEncoder;
    type Decoder = ProstDecoder<ReportResponse>;

    fn encoder(&mut self) -> BatchEncoder {
        BatchEncoder
    }

    fn decoder(&mut self) -> ProstDecoder<ReportResponse> {
        ProstDecoder::default()
    }
}

#[derive(Debug)]
struct BatchEncoder;

impl Encoder for BatchEncoder {
    type Item = Arc<EncodedBatch>;
    type Error = tonic::Status;

    fn encode(&mut self, batch: Arc<EncodedBatch>, dst: &mut EncodeBuf<'_>) -> Result<(), tonic::Status> {
        batch.encode_into(dst);
        Ok(())
    }
}

/// The path of `meshtel.mixer.v1.Mixer/Report`.
const REPORT_PATH: &str = "/meshtel.mixer.v1.Mixer/Report";

/// The background half: owns the queue's receiver and the stream.
#[derive(Debug)]
pub struct ReportStream {
    endpoint: Endpoint,
    proxy_id: String,
    receiver: mpsc::Receiver<EncodedRecord>,
    half_full: Arc<HalfFull>,
    dropped_since_last: Arc<AtomicU64>,
    drops: Arc<DropLog>,
    stats: Stats,
    /// Batches a broken stream had not acknowledged, oldest first: sent before any new
    /// one on the next stream.
    unsent: VecDeque<Arc<EncodedBatch>>,
    /// Most records `unsent` holds: the queue's capacity.
    unsent_limit: usize,
    /// Most records in one batch: [`MAX_BATCH_RECORDS`], or fewer once the collector
    /// refused a batch as larger than its `[report] max_message_bytes`.
    batch_limit: usize,
    /// The collector's `[report] max_message_bytes`, once a refusal has said it: a
    /// record that cannot fit is dropped before it is sent, not sent to end a stream.
    message_limit: Option<usize>,
    /// Rate limit of the WARN about records too large for the collector.
    too_large_log: LogWindow,
}

/// What the Report stream sends next.
enum Next {
    /// A batch a broken stream had not acknowledged.
    Again(Arc<EncodedBatch>),
    /// The first record of a new batch; `None` once the queue is closed.
    Fresh(Option<EncodedRecord>),
}

/// A queue of `capacity` records and the task that streams them to `endpoint`.
pub fn report_channel(endpoint: Endpoint, proxy_id: String, capacity: usize, stats: Stats) -> (ReportQueue, ReportStream) {
    let (sender, receiver, half_full) = batch_channel(capacity);
    let dropped_since_last = Arc::new(AtomicU64::new(0));
    let drops = DropLog::shared("report", "meshtel_proxy_reports_dropped_total");
    let queue = ReportQueue { sender, dropped_since_last: dropped_since_last.clone(), drops: drops.clone(), stats: stats.clone() };
    let unsent_limit = capacity;
    let batch_limit = MAX_BATCH_RECORDS;
    let (message_limit, too_large_log) = (None, LogWindow::default());
    (queue, ReportStream { endpoint, proxy_id, receiver, half_full, dropped_since_last, drops, stats, unsent: VecDeque::new(), unsent_limit, batch_limit, message_limit, too_large_log })
}

enum StreamEnd {
    Shutdown,
    Broken(String),
    /// The collector refused a batch as too large; it was split (or dropped), and the
    /// next stream opens after the shortest delay.
    Refused,
}

/// Whether `record`, with its framing (a key and a length prefix), fits in `room`.
fn fits(room: Option<usize>, record: &EncodedRecord) -> bool {
    room.is_none_or(|room| record.len() + 6 <= room)
}

/// The limit a refusal states (tonic: "... found 2322 bytes, the limit is: 1024 bytes").
fn stated_limit(message: &str) -> Option<usize> {
    const MARKER: &str = "the limit is: ";
    let rest = &message[message.find(MARKER)? + MARKER.len()..];
    rest.split(|c: char| !c.is_ascii_digit()).next()?.parse().ok()
}

/// How long a stream whose call ended waits for the acknowledgements still on their way.
const DRAIN_ACKS: Duration = Duration::from_secs(1);

impl ReportStream {
    /// Streams until `shutdown` flips to true, then flushes what is queued (bounded by
    /// [`SHUTDOWN_FLUSH`]).
    pub async fn run(mut self, mut shutdown: watch::Receiver<bool>) {
        let mut reconnect = Reconnect::new("report");
        loop {
            if *shutdown.borrow() {
                break;
            }
            let end = self.open_and_pump(&mut shutdown).await;
            self.stats.report_stream_open.set(0);
            match end {
                Ok(StreamEnd::Shutdown) => break,
                Ok(StreamEnd::Broken(reason)) => reconnect.broken(&reason),
                Ok(StreamEnd::Refused) => reconnect = Reconnect::new("report"),
                Err(reason) => reconnect.unavailable(&self.endpoint, &reason),
            }
            tokio::select! {
                () = tokio::time::sleep(reconnect.next_delay()) => {}
                _ = shutdown.changed() => break,
            }
        }
        self.give_up_unsent();
    }

    /// Opens one stream and feeds it until it breaks or shutdown. `Err` when it could
    /// not be opened at all.
    async fn open_and_pump(&mut self, shutdown: &mut watch::Receiver<bool>) -> Result<StreamEnd, String> {
        let channel = tokio::select! {
            connected = self.endpoint.connect() => connected.map_err(|e| crate::mesh::error_chain(&e))?,
            _ = shutdown.changed() => return Ok(StreamEnd::Shutdown),
        };
        let (batches, batch_receiver) = mpsc::channel::<Arc<EncodedBatch>>(4);
        let mut client = tonic::client::Grpc::new(channel);
        let report = async {
            client.ready().await.map_err(|e| tonic::Status::unavailable(e.to_string()))?;
            let path = http::uri::PathAndQuery::from_static(REPORT_PATH);
            client.streaming(tonic::Request::new(ReceiverStream::new(batch_receiver)), path, ReportCodec).await
        };
        let mut responses = tokio::select! {
            response = report => {
                let response = response.map_err(|status| format!("{}: {}", status.code(), status.message()))?;
                grpc_answer(response.metadata())?;
                response.into_inner()
            }
            _ = shutdown.changed() => return Ok(StreamEnd::Shutdown),
        };
        self.stats.report_stream_connects.inc();
        self.stats.report_stream_open.set(1);
        info!(endpoint = %self.endpoint.uri(), "report stream open");
        let mut unacknowledged: VecDeque<Arc<EncodedBatch>> = VecDeque::new();
        let end = loop {
            // Not run unless polled: a batch taken from `unsent` is always used.
            let next = async {
                match self.unsent.pop_front() {
                    Some(batch) => Next::Again(batch),
                    None => Next::Fresh(self.receiver.recv().await),
                }
            };
            tokio::select! {
                _ = shutdown.changed() => {
                    self.flush_on_shutdown(&batches, &mut responses, &mut unacknowledged).await;
                    break StreamEnd::Shutdown;
                }
                message = responses.message() => match message {
                    Ok(Some(ack)) => self.acknowledged(&mut unacknowledged, &ack),
                    Ok(None) => break StreamEnd::Broken("collector closed the stream".to_owned()),
                    Err(status) => break self.failed(&status, &mut unacknowledged),
                },
                next = next => {
                    let batch = match next {
                        Next::Again(batch) => {
                            self.stats.reports_resent.inc_by(batch.records.len() as u64);
                            batch
                        }
                        Next::Fresh(None) => break StreamEnd::Shutdown,
                        Next::Fresh(Some(first)) => {
                            let batch = Arc::new(self.fill_batch(first).await);
                            self.stats.reports_sent.inc_by(batch.records.len() as u64);
                            batch
                        }
                    };
                    // Kept until acknowledged; one the stream no longer takes is
                    // unacknowledged too.
                    unacknowledged.push_back(batch.clone());
                    if batches.send(batch).await.is_err() {
                        // The call ended: its answers may still hold acknowledgements,
                        // and its status why. Unread, acknowledged batches were sent
                        // again (counted twice) and a refusal went unseen.
                        break self.drain_ended_call(&mut responses, &mut unacknowledged).await;
                    }
                }
            }
        };
        if matches!(end, StreamEnd::Broken(_) | StreamEnd::Refused) {
            self.keep_unsent(unacknowledged);
        }
        Ok(end)
    }

    /// Keeps what a broken stream had not acknowledged for the next one, ahead of
    /// what it still holds from before, up to `unsent_limit` records; the newest
    /// beyond it are counted as dropped.
    ///
    /// Batches larger than `batch_limit` (made before the collector refused one) are
    /// cut to it, and records that cannot fit the collector's stated limit dropped, so
    /// that each is not refused in turn, ending a stream and resending the rest.
    fn keep_unsent(&mut self, unacknowledged: VecDeque<Arc<EncodedBatch>>) {
        let (mut kept, mut lost) = (0, 0);
        let before = std::mem::take(&mut self.unsent);
        let (limit, room) = (self.batch_limit, self.room());
        let mut unsendable = 0;
        let mut cut = Vec::new();
        for batch in unacknowledged.into_iter().chain(before) {
            if batch.records.len() <= limit && batch.records.iter().all(|r| fits(room, r)) {
                cut.push(batch);
                continue;
            }
            let records: Vec<EncodedRecord> = batch.records.iter().filter(|r| fits(room, r)).cloned().collect();
            unsendable += (batch.records.len() - records.len()) as u64;
            for (i, part) in records.chunks(limit).enumerate() {
                // What was dropped before is told once, with the first part.
                let dropped_since_last = if i == 0 { batch.head.dropped_since_last } else { 0 };
                let head = ReportRequest { dropped_since_last, ..batch.head.clone() };
                cut.push(Arc::new(EncodedBatch { head, records: part.to_vec() }));
            }
        }
        self.drop_too_large(unsendable, "larger than the limit the collector stated");
        for batch in cut {
            let count = batch.records.len();
            if kept + count <= self.unsent_limit {
                kept += count;
                self.unsent.push_back(batch);
            } else {
                lost += count;
            }
        }
        self.count_lost(lost as u64);
    }

    fn acknowledged(&self, unacknowledged: &mut VecDeque<Arc<EncodedBatch>>, ack: &ReportResponse) {
        let sent = unacknowledged.pop_front().map_or(0, |batch| batch.records.len() as u64);
        self.stats.reports_accepted.inc_by(ack.accepted);
        self.stats.reports_rejected.inc_by(sent.saturating_sub(ack.accepted));
    }

    /// How a stream the collector ended with `status` ends: a batch refused as too
    /// large is split first.
    fn failed(&mut self, status: &tonic::Status, unacknowledged: &mut VecDeque<Arc<EncodedBatch>>) -> StreamEnd {
        if matches!(status.code(), tonic::Code::OutOfRange | tonic::Code::ResourceExhausted) {
            self.message_limit = self.message_limit.or_else(|| stated_limit(status.message()));
            self.split_too_large(unacknowledged, status.message());
            return StreamEnd::Refused;
        }
        StreamEnd::Broken(format!("{}: {}", status.code(), status.message()))
    }

    /// Reads what is left of a call whose request stream closed: acknowledgements still
    /// on their way, then its status, for at most [`DRAIN_ACKS`].
    async fn drain_ended_call(
        &mut self,
        responses: &mut tonic::Streaming<ReportResponse>,
        unacknowledged: &mut VecDeque<Arc<EncodedBatch>>,
    ) -> StreamEnd {
        let deadline = Instant::now() + DRAIN_ACKS;
        loop {
            match tokio::time::timeout_at(deadline, responses.message()).await {
                Ok(Ok(Some(ack))) => self.acknowledged(unacknowledged, &ack),
                Ok(Ok(None)) => return StreamEnd::Broken("collector closed the stream".to_owned()),
                Ok(Err(status)) => return self.failed(&status, unacknowledged),
                Err(_) => return StreamEnd::Broken("request stream closed".to_owned()),
            }
        }
    }

    /// The collector refused the oldest batch it had not answered as larger than its
    /// `[report] max_message_bytes`: that batch goes again as two halves, or, a single
    /// record, is dropped and counted, instead of coming back whole at every reconnect.
    /// Later batches hold at most half of the refused one's records.
    fn split_too_large(&mut self, unacknowledged: &mut VecDeque<Arc<EncodedBatch>>, reason: &str) {
        let Some(records) = unacknowledged.front().map(|batch| batch.records.len()) else {
            return;
        };
        if records < 2 {
            unacknowledged.pop_front();
            self.drop_too_large(records as u64, reason);
            return;
        }
        // The batch stays first: `keep_unsent` cuts it, and any other batch made before,
        // to the new limit.
        self.batch_limit = self.batch_limit.min(records / 2).max(1);
        warn!(records, reason, batch_limit = self.batch_limit, "a report batch is larger than the collector takes ([report] max_message_bytes): sent again in two halves; later batches hold at most as many records as a half (batch_limit)");
    }

    /// Drops and counts `count` records too large for the collector, with a WARN at
    /// most every [`meshtel_model::log_window::LOG_INTERVAL`].
    fn drop_too_large(&mut self, count: u64, reason: &str) {
        if count == 0 {
            return;
        }
        self.stats.reports_dropped.inc_by(count);
        self.dropped_since_last.fetch_add(count, Ordering::Relaxed);
        if let Some(dropped) = self.too_large_log.note_many(count, std::time::Instant::now()) {
            warn!(dropped, reason, limit = self.message_limit, "request records larger than the collector takes ([report] max_message_bytes): dropped since the last warning (meshtel_proxy_reports_dropped_total)");
        }
    }

    /// Drops, before they are sent, the records of `records` that cannot fit in a
    /// message the collector takes (once a refusal has said its limit).
    fn drop_unsendable(&mut self, records: &mut Vec<EncodedRecord>) {
        let room = self.room();
        let before = records.len();
        records.retain(|record| fits(room, record));
        self.drop_too_large((before - records.len()) as u64, "larger than the limit the collector stated");
    }

    /// Bytes a record may take in a message the collector takes, once it stated its
    /// limit: the limit less the request's own fields (proxy id, counts, time).
    fn room(&self) -> Option<usize> {
        self.message_limit.map(|limit| limit.saturating_sub(self.proxy_id.len() + 32))
    }

    /// Counts what is left unsent when the stream task ends: batches a broken stream
    /// kept, and records still queued (all of them when the collector was never
    /// reached).
    fn give_up_unsent(&mut self) {
        let lost: usize = self.unsent.drain(..).map(|batch| batch.records.len()).sum();
        let queued = self.drain_queue();
        self.count_lost_at_stop((lost + queued) as u64);
    }

    /// Closes the queue and empties it; how many records it held.
    fn drain_queue(&mut self) -> usize {
        self.receiver.close();
        let mut queued = 0;
        while self.receiver.try_recv().is_ok() {
            queued += 1;
        }
        queued
    }

    /// `first` plus whatever arrives within [`BATCH_LINGER`], up to [`MAX_BATCH_RECORDS`].
    async fn fill_batch(&mut self, first: EncodedRecord) -> EncodedBatch {
        let mut records = Vec::with_capacity(64);
        records.push(first);
        gather(&mut self.receiver, &self.half_full, &mut records, self.batch_limit, BATCH_LINGER).await;
        self.drop_unsendable(&mut records);
        self.batch(records)
    }

    fn batch(&self, records: Vec<EncodedRecord>) -> EncodedBatch {
        let head = ReportRequest {
            proxy_id: self.proxy_id.clone(),
            records: Vec::new(),
            dropped_since_last: self.dropped_since_last.swap(0, Ordering::Relaxed),
            sent_unix_nano: unix_nanos(SystemTime::now()),
        };
        EncodedBatch { head, records }
    }

    fn count_lost(&self, count: u64) {
        if count > 0 {
            self.stats.reports_dropped.inc_by(count);
            self.dropped_since_last.fetch_add(count, Ordering::Relaxed);
            self.drops.dropped(count, std::time::Instant::now());
        }
    }

    /// Counts what is lost because the proxy stops: not a full queue, so no "queue
    /// full" warning; the stop's summary line says it.
    fn count_lost_at_stop(&self, count: u64) {
        if count > 0 {
            self.stats.reports_dropped.inc_by(count);
            debug!(records = count, "request records not sent before the stop, dropped");
        }
    }

    async fn flush_on_shutdown(
        &mut self,
        batches: &mpsc::Sender<Arc<EncodedBatch>>,
        responses: &mut tonic::Streaming<ReportResponse>,
        unacknowledged: &mut VecDeque<Arc<EncodedBatch>>,
    ) {
        let deadline = Instant::now() + SHUTDOWN_FLUSH;
        let flush = async {
            while let Some(batch) = self.unsent.pop_front() {
                self.stats.reports_resent.inc_by(batch.records.len() as u64);
                unacknowledged.push_back(batch.clone());
                if batches.send(batch).await.is_err() {
                    return;
                }
            }
            let mut records = Vec::new();
            loop {
                let record = self.receiver.try_recv().ok();
                let full = records.len() == MAX_BATCH_RECORDS;
                if (record.is_none() || full) && !records.is_empty() {
                    let batch = Arc::new(self.batch(std::mem::take(&mut records)));
                    self.stats.reports_sent.inc_by(batch.records.len() as u64);
                    unacknowledged.push_back(batch.clone());
                    if batches.send(batch).await.is_err() {
                        return;
                    }
                }
                match record {
                    Some(record) => records.push(record),
                    None => break,
                }
            }
            while !unacknowledged.is_empty() {
                match responses.message().await {
                    Ok(Some(ack)) => self.acknowledged(unacknowledged, &ack),
                    _ => return,
                }
            }
        };
        let _ = tokio::time::timeout_at(deadline, flush).await;
        let queued = self.drain_queue();
        let unacknowledged: usize = unacknowledged.drain(..).map(|batch| batch.records.len()).sum();
        self.count_lost_at_stop((unacknowledged + queued) as u64);
    }
}

/// The log of a telemetry queue's drops: telemetry lost while the collector is slow or
/// away is said in the log, not only in a counter nobody may be watching, in one line
/// per [`LogWindow`] interval with the count since the line before.
#[derive(Debug)]
pub(crate) struct DropLog {
    queue: &'static str,
    metric: &'static str,
    window: parking_lot::Mutex<LogWindow>,
}

impl DropLog {
    pub(crate) fn new(queue: &'static str, metric: &'static str) -> DropLog {
        DropLog { queue, metric, window: parking_lot::Mutex::new(LogWindow::default()) }
    }

    /// A shared log with a timer, when a runtime runs: every second it writes the line
    /// for the drops a burst left untold (those after its last line), so that the log
    /// adds up to the counter without waiting for the next drop. The timer ends with
    /// the log.
    pub(crate) fn shared(queue: &'static str, metric: &'static str) -> Arc<DropLog> {
        let log = Arc::new(DropLog::new(queue, metric));
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let weak = Arc::downgrade(&log);
            runtime.spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_secs(1));
                ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                loop {
                    ticks.tick().await;
                    let Some(log) = weak.upgrade() else { return };
                    log.tick(std::time::Instant::now());
                }
            });
        }
        log
    }

    /// Writes the line for drops not yet told, when one is due at `now`.
    fn tick(&self, now: std::time::Instant) -> Option<u64> {
        let due = self.window.lock().flush(now);
        if let Some(dropped) = due {
            warn!(queue = self.queue, dropped, metric = self.metric, "telemetry queue full: dropped since the last warning (the collector is slow or unreachable)");
        }
        due
    }

    /// Notes `count` drops; when a line is due, writes it and returns the count it
    /// stands for. Called only when something is dropped, never on the way of a record
    /// that is queued.
    pub(crate) fn dropped(&self, count: u64, now: std::time::Instant) -> Option<u64> {
        self.window.lock().note_many(count, now).inspect(|&dropped| {
            warn!(queue = self.queue, dropped, metric = self.metric, "telemetry queue full: dropped since the last warning (the collector is slow or unreachable)");
        })
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
    /// When the latest attempt began (after its delay).
    attempt: Instant,
}

/// A stream that broke sooner than this after its attempt began is retried with
/// backoff, as one that could not be opened: what answered at the address may not be
/// the collector's gRPC port at all (an OTLP/HTTP or query port answers HTTP 404).
pub const STABLE_STREAM: Duration = Duration::from_secs(10);

impl Reconnect {
    /// Backoff state of the stream named `stream` (a log field).
    pub fn new(stream: &'static str) -> Reconnect {
        Reconnect { stream, backoff: INITIAL_BACKOFF, failures: 0, attempt: Instant::now() }
    }

    /// An open stream broke: reconnect at once-ish if it had been up a while, else
    /// with backoff, warning once of a run of such breaks.
    pub fn broken(&mut self, reason: &str) {
        if self.attempt.elapsed() >= STABLE_STREAM {
            warn!(stream = self.stream, reason = %reason, "collector stream broken, reconnecting");
            self.backoff = INITIAL_BACKOFF;
            self.failures = 0;
            return;
        }
        self.failures += 1;
        if self.failures == 1 {
            match not_the_grpc_port(reason) {
                Some(hint) => warn!(stream = self.stream, reason = %reason, hint, "collector stream broke as soon as it opened, retrying with backoff"),
                None => warn!(stream = self.stream, reason = %reason, "collector stream broke as soon as it opened, retrying with backoff"),
            }
        } else {
            debug!(stream = self.stream, reason = %reason, backoff_ms = self.backoff.as_millis() as u64, "collector stream broke again as soon as it opened");
        }
    }

    /// The stream could not be opened.
    pub fn unavailable(&mut self, endpoint: &Endpoint, reason: &str) {
        self.failures += 1;
        if self.failures == 1 {
            match not_the_grpc_port(reason) {
                Some(hint) => warn!(stream = self.stream, endpoint = %endpoint.uri(), reason = %reason, hint, "collector stream unavailable, retrying with backoff"),
                None => warn!(stream = self.stream, endpoint = %endpoint.uri(), reason = %reason, "collector stream unavailable, retrying with backoff"),
            }
        } else {
            debug!(stream = self.stream, reason = %reason, backoff_ms = self.backoff.as_millis() as u64, "collector stream still unavailable");
        }
    }

    /// How long to wait before the next attempt (doubling each time, jittered).
    pub fn next_delay(&mut self) -> Duration {
        let delay = jittered(self.backoff);
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.attempt = Instant::now() + delay;
        delay
    }
}

/// `delay` ± 20 %, as gRPC's connection backoff spreads its retries: the proxies that
/// lost the collector together (it restarted) come back spread over a fifth of each
/// step instead of all within the same few milliseconds.
pub(crate) fn jittered(delay: Duration) -> Duration {
    use rand::Rng;
    delay.mul_f64(rand::rng().random_range(0.8..=1.2))
}

/// What [`grpc_answer`] says of an answer that is not gRPC.
const NOT_GRPC: &str = "the answer is not gRPC";

/// Whether the answer that opened a stream is a gRPC one. An HTTP server that is not the
/// collector's gRPC port (an app, the OTLP/HTTP or the query port) can answer with a
/// status tonic reads only at the first message, or echo the request back; its content
/// type tells it apart, before the stream counts as open.
pub(crate) fn grpc_answer(metadata: &tonic::metadata::MetadataMap) -> Result<(), String> {
    let content_type = metadata.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("none");
    if content_type.starts_with("application/grpc") {
        return Ok(());
    }
    Err(format!("{NOT_GRPC} (content-type {content_type})"))
}

/// What to tell of a stream that an HTTP server which is not the collector's gRPC port
/// answered (tonic reads its 404 page as a message, or finds no `grpc-status`).
pub(crate) fn not_the_grpc_port(reason: &str) -> Option<&'static str> {
    let http_not_grpc = reason.contains("404")
        || reason.contains(NOT_GRPC)
        || reason.contains("invalid compression flag")
        || reason.contains("grpc-status header missing");
    http_not_grpc.then_some(
        "the address answers HTTP but not the collector's gRPC services: --collector must name \
         meshtel's OTLP gRPC port (4317 by default), not OTLP/HTTP (4318) or the query port (16686)",
    )
}

/// Wakes a batch that [`gather`] lingers over once its queue is half full, so that a
/// burst after a quiet spell cannot fill the queue while the batch sleeps. The request
/// path pays an atomic load per item; a wake-up (a cross-thread notification) happens
/// only when the queue passes half full, which a proxy whose collector keeps up never
/// sees.
#[derive(Debug)]
pub(crate) struct HalfFull {
    wake: Notify,
    /// Free slots at or below which the queue counts as half full.
    free_at_half: usize,
}

/// The request path's end of a bounded queue that a batching task drains with
/// [`gather`]: sending never waits, and wakes the task only when the queue passes
/// half full.
#[derive(Debug)]
pub(crate) struct BatchSender<T> {
    sender: mpsc::Sender<T>,
    half_full: Arc<HalfFull>,
}

impl<T> Clone for BatchSender<T> {
    fn clone(&self) -> Self {
        BatchSender { sender: self.sender.clone(), half_full: self.half_full.clone() }
    }
}

impl<T> BatchSender<T> {
    /// Whether the queue has a free slot now.
    pub(crate) fn has_room(&self) -> bool {
        self.sender.capacity() > 0
    }

    /// Queues `item` without waiting; false when the queue is full or closed.
    pub(crate) fn try_send(&self, item: T) -> bool {
        if self.sender.try_send(item).is_err() {
            return false;
        }
        if self.sender.capacity() <= self.half_full.free_at_half {
            self.half_full.wake.notify_one();
        }
        true
    }
}

/// A queue of `capacity` items (at least one): the request path's end, and the
/// batching task's receiver and half-full wake for [`gather`].
pub(crate) fn batch_channel<T>(capacity: usize) -> (BatchSender<T>, mpsc::Receiver<T>, Arc<HalfFull>) {
    let capacity = capacity.max(1);
    let (sender, receiver) = mpsc::channel(capacity);
    let half_full = Arc::new(HalfFull { wake: Notify::new(), free_at_half: capacity / 2 });
    (BatchSender { sender, half_full: half_full.clone() }, receiver, half_full)
}

/// Fills `batch` (which holds the first item) from `receiver` for up to `linger` or
/// until it holds `max` items, taking what is queued from time to time rather than
/// waiting on each item: a wake-up per request would cost the request path a
/// cross-thread notification each time. Between two takes it waits half the time the
/// items' rate so far says the batch (or half the queue) needs to fill, at least
/// [`BATCH_POLL`] and at most until `linger` ends, or until the queue passes half full
/// (`half_full`). A proxy at 1,000 requests/s takes from the queue once or twice per
/// 100 ms batch, one sampling 10 spans/s once per second, one at 50,000 every 10 ms.
/// Returns how many times it took from the queue.
pub(crate) async fn gather<T>(receiver: &mut mpsc::Receiver<T>, half_full: &HalfFull, batch: &mut Vec<T>, max: usize, linger: Duration) -> usize {
    let started = Instant::now();
    let deadline = started + linger;
    let mut takes = 0;
    loop {
        takes += 1;
        while batch.len() < max {
            match receiver.try_recv() {
                Ok(item) => batch.push(item),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => return takes,
            }
        }
        let now = Instant::now();
        if batch.len() >= max || now >= deadline {
            return takes;
        }
        let room = (max - batch.len()).min(receiver.max_capacity() / 2).max(1);
        let per_item = now.saturating_duration_since(started).div_f64(batch.len().max(1) as f64);
        let fill = per_item.saturating_mul(u32::try_from(room).unwrap_or(u32::MAX));
        tokio::select! {
            () = tokio::time::sleep_until(deadline.min(now + (fill / 2).max(BATCH_POLL))) => {}
            () = half_full.wake.notified() => {}
        }
    }
}

/// Unix nanoseconds (0 before the epoch).
pub fn unix_nanos(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

#[cfg(test)]
mod tests;
