//! Upstream connection pools: HTTP/1.1 connections kept alive per upstream address;
//! multiplexed h2c connections per address, another opened once each carries
//! [`H2_STREAMS_PER_CONNECTION`] streams.
//!
//! ```text
//!   send(addr, request) ─► idle HTTP/1.1 connection for addr?  ──► send on it
//!                           │ none (or all closed)                    │
//!                           └─► connect (connect timeout) ─► handshake ┘
//!   response body ends ─► Reusable::release ─► back on addr's idle list (LIFO)
//! ```
//!
//! A connection returns to the pool when the downstream has read its response to the
//! end ([`Reusable`], carried by the response body), not through a task per request
//! that waits for the connection to become ready again. Only connections whose last
//! response ended are pooled, so a pooled connection is ready as soon as its
//! connection task has run, or, when the upstream answered before reading the whole
//! request body, once that body is sent: a request waits [`BUSY_WAIT`] for it at most
//! and leaves it for later. A pooled connection the upstream closed meanwhile is
//! skipped, and a request that never left on it is sent on the next one.
//!
//! Idle connections are closed after [`PoolSettings::idle_timeout`], by a sweep every
//! [`SWEEP_INTERVAL`]; at most [`MAX_IDLE_PER_UPSTREAM`] stay idle per address.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::net::TcpStream;
use tracing::debug;

use crate::body::RequestBody;

/// Idle HTTP/1.1 connections kept per upstream address; more are closed when released.
pub const MAX_IDLE_PER_UPSTREAM: usize = 256;

/// How long a request waits for a pooled connection that is not ready yet, which
/// normally becomes ready as soon as its connection task runs; one still busy
/// sending a request body is left for later and another one is used.
pub const BUSY_WAIT: Duration = Duration::from_millis(1);

/// How often idle connections past their idle timeout are closed.
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// A boxed error from connecting or from the HTTP exchange.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How long an idle pooled connection stays open.
pub const POOL_IDLE_TIMEOUT: Duration = Duration::from_secs(90);

/// Client pool settings.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// TCP connect timeout.
    pub connect_timeout: Duration,
    /// How long an idle pooled connection is kept.
    pub idle_timeout: Duration,
}

/// Why a request got no response.
#[derive(Debug)]
pub enum Failure {
    /// No connection to the upstream could be opened (refused, timed out, handshake).
    Connect(BoxError),
    /// The connection failed or closed before the response head arrived.
    Reset(BoxError),
}

/// A response head and, for HTTP/1.1, the connection to return to the pool once the
/// response body has been read to its end.
#[derive(Debug)]
pub struct Upstream {
    /// The response; its body streams from the connection.
    pub response: Response<Incoming>,
    /// The HTTP/1.1 connection it came on.
    pub connection: Option<Reusable>,
}

/// The HTTP/1.1 and h2c connections of one pool owner: a worker (its own, used from
/// its thread alone) or a cluster with its own connect timeout.
#[derive(Debug, Clone)]
pub struct UpstreamPool {
    inner: Arc<PoolInner>,
}

#[derive(Debug)]
struct PoolInner {
    settings: PoolSettings,
    state: Mutex<PoolState>,
    sweeping: AtomicBool,
}

#[derive(Debug, Default)]
struct PoolState {
    http1: HashMap<Arc<str>, IdleList, foldhash::fast::RandomState>,
    http2: HashMap<Box<str>, H2Upstream, foldhash::fast::RandomState>,
}

/// The h2c connections to one upstream address.
#[derive(Debug, Default)]
struct H2Upstream {
    connections: Vec<Shared>,
    /// Held while a connection to it is being opened: requests that find no stream
    /// free wait for that one instead of each opening their own.
    dialing: Arc<tokio::sync::Mutex<LastDial>>,
}

/// How the latest attempt to open an h2c connection to an address failed, if it did:
/// the requests that waited for that attempt fail with it together, in one connect
/// timeout, rather than each trying again in turn.
#[derive(Debug, Default)]
struct LastDial {
    failed: Option<(Instant, String)>,
}

/// What [`UpstreamPool::pick_http2`] found: a stream on an open connection, or the
/// lock to hold while opening another.
enum Picked {
    Stream(http2::SendRequest<RequestBody>, StreamSlot),
    Dial(Arc<tokio::sync::Mutex<LastDial>>),
}

/// One upstream address's idle connections, with the key lent connections carry.
#[derive(Debug)]
struct IdleList {
    key: Arc<str>,
    idle: Vec<Idle>,
}

#[derive(Debug)]
struct Idle {
    conn: Http1Conn,
    since: Instant,
}

/// An HTTP/1.1 connection: the handle requests go through, and its connection task,
/// aborted when this is dropped. Dropping the handle alone would leave a task that is
/// still sending a request body running for as long as the upstream does not read it
/// (a request given up on by a timeout), holding both connections and the downstream's
/// body; aborting closes the upstream connection and drops the body, so the
/// downstream connection goes too, as Envoy resets the upstream stream.
#[derive(Debug)]
struct Http1Conn {
    sender: http1::SendRequest<RequestBody>,
    task: AbortOnDrop,
}

/// Aborts a task when dropped, unless [`AbortOnDrop::detach`]ed.
#[derive(Debug)]
struct AbortOnDrop(Option<tokio::task::AbortHandle>);

impl AbortOnDrop {
    /// Lets the task run on by itself.
    fn detach(mut self) {
        self.0 = None;
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(task) = self.0.take() {
            task.abort();
        }
    }
}

/// One h2c connection to an upstream, shared by the requests sent on it.
#[derive(Debug)]
struct Shared {
    sender: http2::SendRequest<RequestBody>,
    last_used: Instant,
    /// Streams open on it: taken when a request is sent, given back when its response
    /// body ends or is dropped ([`StreamSlot`]).
    streams: Arc<AtomicUsize>,
}

/// One stream's place on a shared h2c connection, given back when dropped.
#[derive(Debug)]
struct StreamSlot(Arc<AtomicUsize>);

impl StreamSlot {
    fn take(streams: &Arc<AtomicUsize>) -> StreamSlot {
        streams.fetch_add(1, Ordering::Relaxed);
        StreamSlot(streams.clone())
    }
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What an exchange holds of its upstream connection until its response body ends:
/// an HTTP/1.1 connection lent to it alone, which [`Reusable::release`] returns to its
/// pool (dropped otherwise, it closes), or its stream's place on a shared h2c one.
#[derive(Debug)]
pub struct Reusable(Lent);

#[derive(Debug)]
enum Lent {
    Http1 { conn: Http1Conn, pool: Weak<PoolInner>, upstream: Arc<str> },
    // Never read: held for its `Drop`, which gives the stream back.
    Http2(#[allow(dead_code)] StreamSlot),
}

impl Reusable {
    /// Returns the connection to its pool: its response was read to the end.
    pub fn release(self) {
        if let Lent::Http1 { conn, pool, upstream } = self.0
            && let Some(pool) = pool.upgrade()
        {
            pool.put_back(upstream, Idle { conn, since: Instant::now() }, false);
        }
    }

    /// Leaves the connection to its task for good: after a `101`, the task hands the
    /// connection over to the upgrade ([`hyper::upgrade`]) and must finish doing so.
    pub fn detach(self) {
        if let Lent::Http1 { conn, .. } = self.0 {
            conn.task.detach();
        }
    }

    /// Whether this is a stream of a shared h2c connection, which nothing needs to
    /// drain before another request uses the connection.
    pub fn is_shared(&self) -> bool {
        matches!(self.0, Lent::Http2(_))
    }
}

/// Connections a checkout found still busy sending a request body: back in the pool
/// last in line, with their idle clock kept (so one stalled for good is swept), however
/// the checkout ends (sent, failed, or cancelled by a timeout).
struct Parked {
    pool: Weak<PoolInner>,
    connections: Vec<(Arc<str>, Idle)>,
}

impl Drop for Parked {
    fn drop(&mut self) {
        if let Some(pool) = self.pool.upgrade() {
            for (key, idle) in self.connections.drain(..) {
                pool.put_back(key, idle, true);
            }
        }
    }
}

/// The largest HTTP/2 header block the proxy takes, downstream and upstream: Envoy's
/// default (`max_request_headers_kb`, 60 KiB), not h2's 16 KiB, so that callers with
/// large tokens or cookies pass over HTTP/2 as over HTTP/1.1.
pub const H2_MAX_HEADER_LIST_BYTES: u32 = 60 << 10;

/// What the upstream HTTP/2 client decodes of a response head or trailers before the
/// proxy judges them against [`H2_MAX_HEADER_LIST_BYTES`]: the h2 crate drops the
/// fields of trailers past its own limit without a word, so that a gRPC status after a
/// large field would vanish; decoding more lets the proxy see them and refuse them.
pub const H2_UPSTREAM_DECODE_BYTES: u32 = 1 << 20;

/// A header block's size as HTTP/2 counts it for `SETTINGS_MAX_HEADER_LIST_SIZE`
/// (RFC 9113 §6.5.2): each field's name and value, and 32 bytes.
pub fn h2_header_list_size(headers: &http::HeaderMap) -> usize {
    headers.iter().map(|(name, value)| name.as_str().len() + value.len() + 32).sum()
}

/// The most an HTTP/1.1 connection buffers, downstream and upstream, and so the
/// largest request or response head it takes (request line and headers): the same 60
/// KiB of headers as [`H2_MAX_HEADER_LIST_BYTES`], with room for the first line. A
/// larger request head is answered 431; a larger response head is the upstream's
/// protocol error (502 `UPE`). Bodies stream through it in pieces of this size.
pub const H1_MAX_BUF_BYTES: usize = 64 << 10;

/// Most header fields an HTTP/1.1 request head may have at a listener (hyper's default;
/// more are answered 431), before [`INBOUND_HEAD_HEADROOM`].
pub const H1_MAX_HEADERS: usize = 100;

/// What the inbound listener takes of a request head beyond the outbound's: HTTP/2
/// header-list bytes (on [`H2_MAX_HEADER_LIST_BYTES`]) and HTTP/1.1 header fields (on
/// [`H1_MAX_HEADERS`]). The caller's proxy adds its own headers to what its app sent
/// (peer identity, forwarded protocol, request id, trace context: about 600 bytes in
/// 11 fields), so a request the caller's outbound took at its limits must not be
/// refused by the callee's inbound for headers the mesh added. HTTP/1.1 head bytes:
/// [`INBOUND_H1_MAX_BUF_BYTES`].
pub const INBOUND_HEAD_HEADROOM: (u32, usize) = (8 << 10, 32);

/// The inbound listener's HTTP/1.1 buffer, and so its largest request head: twice the
/// outbound's [`H1_MAX_BUF_BYTES`]. hyper's read buffer grows by doubling, so its limit
/// holds exactly only at a power of two (a head read in one piece passes a limit in
/// between up to the next one); the next one up is the inbound's.
pub const INBOUND_H1_MAX_BUF_BYTES: usize = 2 * H1_MAX_BUF_BYTES;

/// Most streams a client may hold open at once on one HTTP/2 connection to a listener.
/// The outbound proxy carries all its app's calls to one endpoint on one connection, so
/// hyper's default of 200 made long-lived gRPC streams (watches, subscriptions) beyond
/// it wait, and the calls behind them time out. Envoy sets no limit; this bounds the
/// per-stream state a connection can hold (a few KiB each; buffered bytes are bounded by
/// the connection's flow-control window whatever the count).
pub const H2_MAX_CONCURRENT_STREAMS: u32 = 4096;

/// Streams the proxy opens at once on one h2c connection to an upstream before it opens
/// another: RFC 9113 §6.5.2's least recommended `SETTINGS_MAX_CONCURRENT_STREAMS`, under
/// every common server's (nginx 128, hyper 200, Go 250). On one connection, streams past
/// the app's limit wait for one to end, and behind long-lived ones (watches, gRPC
/// streams) they waited until their timeout; Envoy opens a new connection then too.
pub const H2_STREAMS_PER_CONNECTION: usize = 100;

/// Most h2c connections to one upstream address per pool; past them, a stream goes to
/// the least busy one.
pub const MAX_H2_CONNECTIONS_PER_UPSTREAM: usize = 32;

/// How often an h2c connection with open streams is pinged, downstream and upstream, to
/// tell a live peer from a vanished one (a silent gRPC stream may wait minutes).
pub const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
pub const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

impl UpstreamPool {
    /// An empty pool.
    pub fn new(settings: PoolSettings) -> UpstreamPool {
        UpstreamPool {
            inner: Arc::new(PoolInner { settings, state: Mutex::new(PoolState::default()), sweeping: AtomicBool::new(false) }),
        }
    }

    /// Sends `request` to `upstream` (`host:port`): over h2c when the request is
    /// HTTP/2, else over HTTP/1.1. The request's URI is rewritten for the connection:
    /// origin-form for HTTP/1.1 (with `Host` set to `upstream` when the request has
    /// none); for h2c absolute, with the request's `Host` (a rewrite's, a mirror's)
    /// as `:authority` (and no `host` header beside it, which servers refuse as a
    /// second Host), else its own `:authority`, else `upstream`.
    pub async fn send(&self, upstream: &str, mut request: Request<RequestBody>) -> Result<Upstream, Failure> {
        if request.version() == Version::HTTP_2 {
            set_absolute_uri(&mut request, upstream).map_err(|e| Failure::Reset(e.into()))?;
            let (response, slot) = self.send_http2(upstream, request).await?;
            return Ok(Upstream { response, connection: Some(Reusable(Lent::Http2(slot))) });
        }
        *request.version_mut() = Version::HTTP_11;
        set_origin_form(&mut request);
        if !request.headers().contains_key(HOST) {
            let host = HeaderValue::from_str(upstream).map_err(|e| Failure::Reset(e.into()))?;
            request.headers_mut().insert(HOST, host);
        }
        // Pooled connections first, most recently used first; each failure to send
        // that left the request unsent moves on to the next.
        let mut parked = Parked { pool: Arc::downgrade(&self.inner), connections: Vec::new() };
        let mut waited = false;
        let key = loop {
            let (idle, key) = self.take_idle(upstream);
            let Some(Idle { mut conn, since }) = idle else { break key };
            if !conn.sender.is_ready() {
                // Normally ready as soon as its connection task runs: waited for once
                // per checkout, briefly. One still sending the last request's body (the
                // upstream answered before reading it all) is parked.
                let ready = if waited {
                    None
                } else {
                    waited = true;
                    tokio::time::timeout(BUSY_WAIT, conn.sender.ready()).await.ok()
                };
                match ready {
                    Some(Ok(())) => {}
                    Some(Err(_)) => continue,
                    None => {
                        parked.connections.push((key, Idle { conn, since }));
                        continue;
                    }
                }
            }
            match conn.sender.try_send_request(request).await {
                Ok(response) => {
                    return Ok(Upstream { response, connection: Some(self.lend(conn, key)) });
                }
                Err(mut error) => match error.take_message() {
                    Some(unsent) => {
                        debug!(upstream, error = %error.error(), "pooled connection closed, trying another");
                        request = unsent;
                    }
                    None => return Err(Failure::Reset(error.into_error().into())),
                },
            }
        };
        drop(parked);
        let io = self.connect(upstream).await?;
        let (sender, connection) =
            http1::Builder::new().max_buf_size(H1_MAX_BUF_BYTES).handshake(io).await.map_err(|e| Failure::Connect(e.into()))?;
        // With upgrades: a `101` to a WebSocket request hands the connection over
        // (forward::upgrade); such a connection never returns to the pool.
        let mut conn = Http1Conn { sender, task: drive(connection.with_upgrades(), "http/1.1") };
        // Given up on before the response head (a timeout drops this future), the
        // connection goes with `conn`.
        let response = conn.sender.send_request(request).await.map_err(|e| Failure::Reset(e.into()))?;
        Ok(Upstream { response, connection: Some(self.lend(conn, key)) })
    }

    async fn send_http2(&self, upstream: &str, request: Request<RequestBody>) -> Result<(Response<Incoming>, StreamSlot), Failure> {
        let (mut sender, slot) = self.shared_http2(upstream).await?;
        let request = match sender.try_send_request(request).await {
            Ok(response) => return Ok((response, slot)),
            Err(mut error) => match error.take_message() {
                // The shared connection was closing (GOAWAY, max age) before the
                // request left: once more on a new one.
                Some(unsent) => {
                    debug!(upstream, error = %error.error(), "h2c connection closed, reconnecting");
                    for h2 in self.inner.state.lock().http2.values_mut() {
                        h2.connections.retain(|shared| !shared.sender.is_closed());
                    }
                    unsent
                }
                None => return Err(Failure::Reset(error.into_error().into())),
            },
        };
        drop(slot);
        let (mut sender, slot) = self.shared_http2(upstream).await?;
        let response = sender.send_request(request).await.map_err(|e| Failure::Reset(e.into()))?;
        Ok((response, slot))
    }

    /// A shared h2c connection to `upstream` with a stream free (one carrying fewer
    /// than [`H2_STREAMS_PER_CONNECTION`]), opened when there is none, and the new
    /// stream's place on it.
    async fn shared_http2(&self, upstream: &str) -> Result<(http2::SendRequest<RequestBody>, StreamSlot), Failure> {
        // One request at a time opens a connection to an address; the others wait and
        // then take a stream on it.
        let (mut sender, slot) = match self.pick_http2(upstream) {
            Picked::Stream(sender, slot) => (sender, slot),
            Picked::Dial(dialing) => {
                let asked = Instant::now();
                let mut last = dialing.lock().await;
                if let Some((at, error)) = &last.failed
                    && *at >= asked
                {
                    // The attempt this request waited for failed: so does it.
                    return Err(Failure::Connect(error.clone().into()));
                }
                if let Picked::Stream(mut sender, slot) = self.pick_http2(upstream) {
                    drop(last);
                    sender.ready().await.map_err(|e| Failure::Reset(e.into()))?;
                    return Ok((sender, slot));
                }
                let (sender, connection) = match self.dial_http2(upstream).await {
                    Ok(opened) => opened,
                    Err(failure) => {
                        let error = match &failure {
                            Failure::Connect(e) | Failure::Reset(e) => e.to_string(),
                        };
                        last.failed = Some((Instant::now(), error));
                        return Err(failure);
                    }
                };
                last.failed = None;
                // A shared connection, ending by itself once every sender is gone.
                drive(connection, "h2c").detach();
                let streams = Arc::new(AtomicUsize::new(0));
                let slot = StreamSlot::take(&streams);
                let shared = Shared { sender: sender.clone(), last_used: Instant::now(), streams };
                self.inner.state.lock().http2.entry(upstream.into()).or_default().connections.push(shared);
                (sender, slot)
            }
        };
        sender.ready().await.map_err(|e| Failure::Reset(e.into()))?;
        Ok((sender, slot))
    }

    /// A new h2c connection to `upstream`, handshake done.
    async fn dial_http2(&self, upstream: &str) -> Result<(http2::SendRequest<RequestBody>, http2::Connection<TokioIo<TcpStream>, RequestBody, TokioExecutor>), Failure> {
        let io = self.connect(upstream).await?;
        http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .keep_alive_interval(H2_KEEP_ALIVE_INTERVAL)
            .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
            .max_header_list_size(H2_UPSTREAM_DECODE_BYTES)
            .handshake(io)
            .await
            .map_err(|e| Failure::Connect(e.into()))
    }

    /// A stream on an open h2c connection to `upstream` with one free (or on the least
    /// busy once there are [`MAX_H2_CONNECTIONS_PER_UPSTREAM`]), else the lock to open
    /// another under.
    fn pick_http2(&self, upstream: &str) -> Picked {
        let mut state = self.inner.state.lock();
        if !state.http2.contains_key(upstream) {
            state.http2.insert(upstream.into(), H2Upstream::default());
        }
        let Some(h2) = state.http2.get_mut(upstream) else { return Picked::Dial(Arc::default()) };
        let connections = &mut h2.connections;
        connections.retain(|shared| !shared.sender.is_closed());
        let busy = |shared: &Shared| shared.streams.load(Ordering::Relaxed);
        let index = match connections.iter().position(|shared| busy(shared) < H2_STREAMS_PER_CONNECTION) {
            Some(free) => Some(free),
            None if connections.len() >= MAX_H2_CONNECTIONS_PER_UPSTREAM => (0..connections.len()).min_by_key(|&i| busy(&connections[i])),
            None => None,
        };
        match index {
            Some(index) => {
                let picked = &mut connections[index];
                picked.last_used = Instant::now();
                Picked::Stream(picked.sender.clone(), StreamSlot::take(&picked.streams))
            }
            None => Picked::Dial(h2.dialing.clone()),
        }
    }

    /// Open h2c connections to `upstream` (for tests and stats).
    pub fn h2c_connections(&self, upstream: &str) -> usize {
        self.inner.state.lock().http2.get(upstream).map_or(0, |h2| h2.connections.iter().filter(|s| !s.sender.is_closed()).count())
    }

    /// The most recently released open connection to `upstream`, if any, and the
    /// pool's key for `upstream` (shared, so lending a connection allocates nothing).
    fn take_idle(&self, upstream: &str) -> (Option<Idle>, Arc<str>) {
        let mut state = self.inner.state.lock();
        let Some(list) = state.http1.get_mut(upstream) else { return (None, Arc::from(upstream)) };
        while let Some(idle) = list.idle.pop() {
            if !idle.conn.sender.is_closed() && idle.since.elapsed() < self.inner.settings.idle_timeout {
                return (Some(idle), list.key.clone());
            }
        }
        (None, list.key.clone())
    }

    fn lend(&self, conn: Http1Conn, upstream: Arc<str>) -> Reusable {
        Reusable(Lent::Http1 { conn, pool: Arc::downgrade(&self.inner), upstream })
    }

    /// A new TCP connection to `upstream` (no Nagle), within the connect timeout, its
    /// host name resolved through [`crate::resolve`].
    async fn connect(&self, upstream: &str) -> Result<TokioIo<TcpStream>, Failure> {
        self.start_sweeping();
        let timeout = self.inner.settings.connect_timeout;
        let resolved = AtomicBool::new(false);
        let connect = async {
            let addresses = crate::resolve::resolve(upstream).await?;
            resolved.store(true, Ordering::Relaxed);
            TcpStream::connect(&addresses[..]).await
        };
        let stream = match tokio::time::timeout(timeout, connect).await {
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => return Err(Failure::Connect(error.into())),
            Err(_) if !resolved.load(Ordering::Relaxed) => {
                return Err(Failure::Connect(format!("resolving {upstream} did not finish within the connect timeout ({timeout:?})").into()));
            }
            Err(_) => return Err(Failure::Connect(format!("connect timed out after {timeout:?}").into())),
        };
        stream.set_nodelay(true).map_err(|e| Failure::Connect(e.into()))?;
        Ok(TokioIo::new(stream))
    }

    /// Starts the idle sweep with the pool's first connection, on the runtime that
    /// opened it; it ends with the pool.
    fn start_sweeping(&self) {
        if self.inner.sweeping.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool = Arc::downgrade(&self.inner);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.sweep();
            }
        });
    }

    /// Idle HTTP/1.1 connections per upstream address (for tests and stats).
    pub fn idle_connections(&self, upstream: &str) -> usize {
        self.inner.state.lock().http1.get(upstream).map_or(0, |list| list.idle.len())
    }

    /// Closes idle connections past the idle timeout now.
    pub fn sweep(&self) {
        self.inner.sweep();
    }
}

impl PoolInner {
    /// Pools `idle` under `key`: taken next (from the end), or last when `last`.
    fn put_back(&self, key: Arc<str>, idle: Idle, last: bool) {
        if idle.conn.sender.is_closed() {
            return;
        }
        let mut state = self.state.lock();
        let list = state.http1.entry(key.clone()).or_insert_with(|| IdleList { key, idle: Vec::new() });
        if list.idle.len() < MAX_IDLE_PER_UPSTREAM {
            if last {
                list.idle.insert(0, idle);
            } else {
                list.idle.push(idle);
            }
        }
    }

    fn sweep(&self) {
        let timeout = self.settings.idle_timeout;
        // Dropped outside the lock: closing a connection wakes its task.
        let mut closed = Vec::new();
        let mut state = self.state.lock();
        for list in state.http1.values_mut() {
            let (keep, expired): (Vec<Idle>, Vec<Idle>) =
                list.idle.drain(..).partition(|i| !i.conn.sender.is_closed() && i.since.elapsed() < timeout);
            list.idle = keep;
            closed.extend(expired);
        }
        state.http1.retain(|_, list| !list.idle.is_empty());
        // An h2c connection with streams open stays, however long ago its last one began.
        for h2 in state.http2.values_mut() {
            h2.connections.retain(|shared| {
                !shared.sender.is_closed() && (shared.streams.load(Ordering::Relaxed) > 0 || shared.last_used.elapsed() < timeout)
            });
        }
        // An address with a dial under way (or waited for) keeps its entry, and so its
        // one-dial-at-a-time lock.
        state.http2.retain(|_, h2| !h2.connections.is_empty() || Arc::strong_count(&h2.dialing) > 1);
        drop(state);
        drop(closed);
    }
}

/// Runs an upstream connection's task on the current runtime until it ends.
fn drive(connection: impl Future<Output = hyper::Result<()>> + Send + 'static, protocol: &'static str) -> AbortOnDrop {
    let task = tokio::spawn(async move {
        if let Err(error) = connection.await {
            debug!(protocol, error = %error, "upstream connection ended");
        }
    });
    AbortOnDrop(Some(task.abort_handle()))
}

/// Origin-form (`/path?query`) for an HTTP/1.1 upstream.
fn set_origin_form(request: &mut Request<RequestBody>) {
    let uri = request.uri();
    if uri.scheme().is_none() && uri.authority().is_none() {
        return;
    }
    let path = uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    *request.uri_mut() = Uri::from(path);
}

/// Absolute form for an h2c upstream, with the authority the caller named the service
/// by: the request's `Host` (taken out of the headers), else its `:authority`, else
/// `upstream`.
fn set_absolute_uri(request: &mut Request<RequestBody>, upstream: &str) -> Result<(), http::Error> {
    let path = request.uri().path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let host = request.headers_mut().remove(HOST).and_then(|host| Authority::try_from(host.as_bytes()).ok());
    let authority = match host.or_else(|| request.uri().authority().cloned()) {
        Some(authority) => authority,
        None => Authority::try_from(upstream)?,
    };
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path);
    *request.uri_mut() = Uri::from_parts(parts)?;
    Ok(())
}

#[cfg(test)]
mod tests;
