//! How long the HTTP servers (meshtel's listeners and the sidecar's) keep a client
//! connection that does not use it, beyond what hyper bounds itself:
//!
//! - a connection that sends nothing at all is closed once `idle` passes: hyper reads
//!   the first bytes (to choose HTTP/1.1 or h2c) with no timeout of its own, so a
//!   client could otherwise hold a file descriptor forever without a byte;
//! - a connection on which no request starts for a whole `idle` (checked every
//!   `idle`, so it goes after between one and two) is shut down gracefully: h2c gets
//!   GOAWAY and its open streams finish, HTTP/1.1 closes after the response in flight.
//!
//! Shutdown of the whole server reaches each connection the same way. [`accept`] is the
//! accept step all those servers share.
//!
//! ```text
//!  accept ──► first byte within idle? ──no──► closed
//!                    │ yes
//!                    ▼
//!            serve ◄── every idle: a request started since? ──no──► graceful shutdown
//! ```

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::watch;

/// Below this open-files limit a server warns at start.
pub const LOW_OPEN_FILES: u64 = 4096;

/// Raises this process's open-files limit from its soft value to its hard one, as Go
/// servers do at start: every connection, WAL segment and block being read takes a
/// file descriptor, and systemd's default soft limit is 1,024 (hard 524,288). Logs the
/// raise, and a WARN when the limit stays below [`LOW_OPEN_FILES`]; returns the limit.
pub fn raise_open_files_limit() -> Option<u64> {
    let raised = rlimit::getrlimit(rlimit::Resource::NOFILE)
        .and_then(|(before, _)| Ok((before, rlimit::increase_nofile_limit(u64::MAX)?)));
    match raised {
        Ok((before, now)) => {
            if now > before {
                tracing::info!(
                    open_files_limit = now,
                    raised_from = before,
                    "open-files limit raised to its hard limit"
                );
            }
            if now < LOW_OPEN_FILES {
                tracing::warn!(
                    open_files_limit = now,
                    low = LOW_OPEN_FILES,
                    "open-files limit is low: each connection takes a file descriptor (and in \
                     the collector each WAL segment and block being read), and past the \
                     limit new connections wait; raise the hard limit (systemd \
                     LimitNOFILE=, ulimit -Hn)"
                );
            }
            Some(now)
        }
        Err(error) => {
            tracing::warn!(%error, "could not read or raise the open-files limit");
            None
        }
    }
}

/// The next connection of `listener`. A failed accept (out of file descriptors and the
/// like) is retried after a short pause, and logged at most once per
/// [`LOG_INTERVAL`](crate::log_window::LOG_INTERVAL) with how many failed, however long
/// it lasts: the accept loop neither spins nor floods the log.
pub async fn accept(
    listener: &tokio::net::TcpListener,
    name: &'static str,
    errors: &mut crate::log_window::LogWindow,
) -> (TcpStream, std::net::SocketAddr) {
    loop {
        match listener.accept().await {
            Ok(accepted) => return accepted,
            Err(error) => {
                if let Some(failures) = errors.note(std::time::Instant::now()) {
                    let every = crate::log_window::LOG_INTERVAL;
                    tracing::warn!(listener = name, %error, failures, ?every, "accept failed");
                }
                tokio::time::sleep(ACCEPT_RETRY_PAUSE).await;
            }
        }
    }
}

/// [`first_byte`], given up as soon as `stop` turns true: a connection that has not
/// spoken by then has no request to finish, and must not hold the server's shutdown.
pub async fn first_byte_unless_stopped(
    stream: &TcpStream,
    idle: Duration,
    stop: &mut watch::Receiver<bool>,
) -> bool {
    if *stop.borrow_and_update() {
        return false;
    }
    tokio::select! {
        spoke = first_byte(stream, idle) => spoke,
        _ = stop.wait_for(|stopped| *stopped) => false,
    }
}

/// How long [`accept`] waits after a failed accept.
const ACCEPT_RETRY_PAUSE: Duration = Duration::from_millis(50);

/// Whether `stream` has something to read within `idle`: bytes, its end, or an error
/// (a reset), which the server reading it then meets; `false` only when the client
/// stayed silent that long.
pub async fn first_byte(stream: &TcpStream, idle: Duration) -> bool {
    // `peek`, not `readable`: a socket's readiness can be reported before any byte.
    let mut byte = [0u8; 1];
    tokio::time::timeout(idle, stream.peek(&mut byte))
        .await
        .is_ok()
}

/// Whether `stream` has at least `wanted` bytes to read within `idle` (false when it
/// ends first):
/// a listener whose protocol opens with a fixed preface (HTTP/2's 24 bytes and its
/// SETTINGS frame) hands its server only connections that sent it, since the server's
/// own reading of it has no timeout. Nothing is consumed.
pub async fn first_bytes(stream: &TcpStream, wanted: usize, idle: Duration) -> bool {
    let mut buffer = vec![0u8; wanted];
    let arrived = async {
        loop {
            match stream.peek(&mut buffer).await {
                Ok(n) if n >= wanted => return true,
                Ok(0) | Err(_) => return false,
                // Readiness stays set while bytes wait unread: look again shortly
                // instead of spinning (a preface split over packets is rare).
                Ok(_) => tokio::time::sleep(PARTIAL_PREFACE_PAUSE).await,
            }
        }
    };
    tokio::time::timeout(idle, arrived).await.unwrap_or(false)
}

/// How long [`first_bytes`] waits before looking again at a partial preface.
const PARTIAL_PREFACE_PAUSE: Duration = Duration::from_millis(5);

/// How many requests a connection has started; its service bumps it.
#[derive(Debug, Clone, Default)]
pub struct RequestCounter(Arc<AtomicU64>);

impl RequestCounter {
    /// One more request started.
    pub fn started(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    fn count(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Drives `connection` to its end, calling `graceful` on it (once) when no request
/// started on it for a whole `idle`, or when `stop` turns true.
pub async fn drive<C: Future>(
    mut connection: Pin<&mut C>,
    graceful: fn(Pin<&mut C>),
    requests: &RequestCounter,
    idle: Duration,
    mut stop: watch::Receiver<bool>,
) -> C::Output {
    if *stop.borrow_and_update() {
        graceful(connection.as_mut());
        return connection.await;
    }
    let mut seen = requests.count();
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + idle, idle);
    loop {
        tokio::select! {
            // The connection first: it is what wakes this task nearly every time.
            biased;
            output = connection.as_mut() => return output,
            _ = ticks.tick() => {
                let now = requests.count();
                if now == seen {
                    break;
                }
                seen = now;
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    graceful(connection.as_mut());
    connection.await
}

/// A connection whose writes fail with [`std::io::ErrorKind::TimedOut`] once the peer
/// has taken nothing for `limit` while there was something to send: a client that
/// stops reading its answer cannot hold the connection, and the answer's memory, for
/// ever. `on_stall` runs when it happens (a counter). Reads are untouched.
pub struct WriteStall<T> {
    inner: T,
    limit: Duration,
    /// Set while writes are pending, cleared by any progress.
    deadline: Option<Pin<Box<tokio::time::Sleep>>>,
    on_stall: Box<dyn Fn() + Send + Sync>,
}

impl<T> WriteStall<T> {
    /// Wraps `inner`.
    pub fn new(
        inner: T,
        limit: Duration,
        on_stall: impl Fn() + Send + Sync + 'static,
    ) -> WriteStall<T> {
        WriteStall {
            inner,
            limit,
            deadline: None,
            on_stall: Box::new(on_stall),
        }
    }

    /// After a pending write: `Ready(Err)` once the peer has taken nothing for `limit`.
    fn stalled<R>(
        &mut self,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<R>> {
        let limit = self.limit;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            std::task::Poll::Ready(()) => {
                (self.on_stall)();
                std::task::Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client read nothing of the response in time",
                )))
            }
            std::task::Poll::Pending => std::task::Poll::Pending,
        }
    }
}

/// The peer's address for tonic, as the wrapped connection gives it.
impl<T: tonic::transport::server::Connected> tonic::transport::server::Connected for WriteStall<T> {
    type ConnectInfo = T::ConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for WriteStall<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for WriteStall<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write(cx, buf) {
            std::task::Poll::Pending => this.stalled(cx),
            ready => {
                this.deadline = None;
                ready
            }
        }
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_write_vectored(cx, bufs) {
            std::task::Poll::Pending => this.stalled(cx),
            ready => {
                this.deadline = None;
                ready
            }
        }
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_flush(cx) {
            std::task::Poll::Pending => this.stalled(cx),
            ready => {
                this.deadline = None;
                ready
            }
        }
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// How long a server connection closed before its client finished sending is read on
/// (and what arrives thrown away) after the close is sent, at most: the client's
/// writes keep succeeding until it reads the answer and sees the end, instead of
/// failing on a reset that can take the answer with it (nginx's `lingering_close`,
/// whose `lingering_time` this is).
pub const LINGER: Duration = Duration::from_secs(30);

/// Longest pause in what a lingering client sends before its connection is closed
/// anyway (nginx's `lingering_timeout`).
pub const LINGER_IDLE: Duration = Duration::from_secs(5);

/// A server's client connection that closes gently: dropped before the client closed
/// its side (an answer such as 413 given before the request body was read, a
/// `Connection: close`, an idle timeout), it sends its end of stream and reads and
/// discards what the client still sends, for at most [`LINGER`] (and [`LINGER_IDLE`]
/// without a byte), before closing, on a
/// task of its own. Closing a socket with unread data at once makes the kernel reset
/// the connection, and a client still sending its body then loses the answer waiting
/// in its receive buffer: a proxy in front of it would turn the app's 413 into a 503.
pub struct Lingering {
    stream: Option<TcpStream>,
    /// The client ended its side (a read gave end of stream): nothing to wait for.
    client_done: bool,
}

impl Lingering {
    /// Wraps `stream`.
    pub fn new(stream: TcpStream) -> Lingering {
        Lingering {
            stream: Some(stream),
            client_done: false,
        }
    }

    fn stream(&mut self) -> std::io::Result<&mut TcpStream> {
        self.stream
            .as_mut()
            .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::NotConnected))
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        if self.client_done {
            return;
        }
        let (Some(stream), Ok(runtime)) =
            (self.stream.take(), tokio::runtime::Handle::try_current())
        else {
            return;
        };
        runtime.spawn(linger(stream));
    }
}

/// Sends the end of stream, then reads until the client ends its side, fails, pauses
/// for [`LINGER_IDLE`], or [`LINGER`] passes.
async fn linger(mut stream: TcpStream) {
    use tokio::io::AsyncWriteExt;
    if stream.shutdown().await.is_err() {
        return;
    }
    let until = tokio::time::Instant::now() + LINGER;
    loop {
        let idle_until = (tokio::time::Instant::now() + LINGER_IDLE).min(until);
        match tokio::time::timeout_at(idle_until, stream.readable()).await {
            Ok(Ok(())) => {}
            _ => return,
        }
        // Not held across an await: a lingering connection keeps no buffer.
        let mut discard = [0u8; 8192];
        match stream.try_read(&mut discard) {
            Ok(0) => return,
            Ok(_) => {}
            Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(_) => return,
        }
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let this = &mut *self;
        let before = buf.filled().len();
        let polled = Pin::new(this.stream()?).poll_read(cx, buf);
        if matches!(polled, std::task::Poll::Ready(Ok(())))
            && buf.filled().len() == before
            && buf.remaining() > 0
        {
            this.client_done = true;
        }
        polled
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(self.stream()?).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> std::task::Poll<std::io::Result<usize>> {
        Pin::new(self.stream()?).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.as_ref().is_some_and(|s| s.is_write_vectored())
    }

    fn poll_flush(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(self.stream()?).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        Pin::new(self.stream()?).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// A connection that ends when told to shut down, recording that it was.
    struct Conn {
        shut: bool,
        waker: Option<std::task::Waker>,
    }

    impl Future for Conn {
        type Output = bool;
        fn poll(
            mut self: Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<bool> {
            if self.shut {
                std::task::Poll::Ready(true)
            } else {
                self.waker = Some(cx.waker().clone());
                std::task::Poll::Pending
            }
        }
    }

    fn shut_down(mut conn: Pin<&mut Conn>) {
        conn.shut = true;
        if let Some(waker) = conn.waker.take() {
            waker.wake();
        }
    }

    #[tokio::test]
    async fn an_idle_connection_is_shut_down_and_a_busy_one_is_not() {
        let (_stop_tx, stop) = watch::channel(false);
        let requests = RequestCounter::default();
        let idle = Duration::from_millis(400);
        let mut conn = std::pin::pin!(Conn {
            shut: false,
            waker: None
        });
        let busy = {
            let requests = requests.clone();
            async move {
                for _ in 0..10 {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    requests.started();
                }
                tokio::time::Instant::now()
            }
        };
        let (shut, busy_until) =
            tokio::join!(drive(conn.as_mut(), shut_down, &requests, idle, stop), busy);
        assert!(shut);
        // Kept while requests came (every 50 ms for 500 ms, longer than `idle`), shut
        // down within two `idle`s of the last one.
        let after = busy_until.elapsed();
        assert!(
            after <= idle * 2 + Duration::from_millis(300),
            "{after:?} after the last request"
        );
    }

    #[tokio::test]
    async fn a_stop_shuts_every_connection_down() {
        let (stop_tx, stop) = watch::channel(false);
        let requests = RequestCounter::default();
        let mut conn = std::pin::pin!(Conn {
            shut: false,
            waker: None
        });
        let stopper = async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop_tx.send_replace(true);
            stop_tx
        };
        let started = tokio::time::Instant::now();
        let (shut, _) = tokio::join!(
            drive(
                conn.as_mut(),
                shut_down,
                &requests,
                Duration::from_secs(60),
                stop
            ),
            stopper
        );
        assert!(shut);
        assert!(started.elapsed() < Duration::from_secs(10));
        // Already stopped: shut down at once.
        let (_tx, stopped) = watch::channel(true);
        let mut conn = std::pin::pin!(Conn {
            shut: false,
            waker: None
        });
        assert!(
            drive(
                conn.as_mut(),
                shut_down,
                &requests,
                Duration::from_secs(60),
                stopped
            )
            .await
        );
    }

    #[tokio::test]
    async fn a_client_that_reads_nothing_fails_the_writes_after_the_limit() {
        use std::sync::atomic::AtomicUsize;
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut reader = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let stalls = Arc::new(AtomicUsize::new(0));
        let counted = stalls.clone();
        let mut writer = WriteStall::new(accepted, Duration::from_millis(300), move || {
            counted.fetch_add(1, Ordering::SeqCst);
        });
        // A reader that keeps up: far more than the limit's worth of time, no error.
        let chunk = vec![1u8; 64 * 1024];
        let reading = tokio::spawn(async move {
            let mut buffer = vec![0u8; 64 * 1024];
            let mut total = 0usize;
            while total < 8 << 20 {
                tokio::time::sleep(Duration::from_millis(5)).await;
                total += reader.read(&mut buffer).await.unwrap();
            }
            reader
        });
        let mut sent = 0usize;
        while sent < 8 << 20 {
            writer.write_all(&chunk).await.expect("a reading client");
            sent += chunk.len();
        }
        let _reader = reading.await.unwrap();
        // Nobody reads any more: the writes fail once the buffers are full for 300 ms.
        let started = tokio::time::Instant::now();
        let error = loop {
            if let Err(error) = writer.write_all(&chunk).await {
                break error;
            }
        };
        assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(stalls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn a_stop_ends_the_wait_for_a_silent_clients_first_byte() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _silent = TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        let (stop_tx, mut stop) = watch::channel(false);
        let stopper = async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            stop_tx.send_replace(true);
            stop_tx
        };
        let started = tokio::time::Instant::now();
        let (spoke, _) = tokio::join!(
            first_byte_unless_stopped(&accepted, Duration::from_secs(60), &mut stop),
            stopper
        );
        assert!(!spoke);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn a_silent_client_is_told_apart_from_one_that_writes() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _silent = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!first_byte(&accepted, Duration::from_millis(200)).await);
        let mut talker = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        talker.write_all(b"G").await.unwrap();
        assert!(first_byte(&accepted, Duration::from_secs(5)).await);
        // A client that resets the connection (a TCP health check, a port scan) is no
        // silent one: the server meets the reset when it reads.
        let resetter = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        resetter.set_zero_linger().unwrap();
        drop(resetter);
        let started = std::time::Instant::now();
        assert!(first_byte(&accepted, Duration::from_secs(5)).await);
        assert!(started.elapsed() < Duration::from_secs(4));
    }

    /// A server that answers before reading the request body and closes: the client,
    /// which sends its whole body before reading, still gets the answer.
    #[tokio::test]
    async fn an_answer_given_before_the_body_was_read_reaches_the_client() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let (accepted, _) = listener.accept().await.unwrap();
            let mut conn = Lingering::new(accepted);
            let mut head = [0u8; 512];
            let _ = conn.read(&mut head).await.unwrap();
            conn.write_all(
                b"HTTP/1.1 413 Payload Too Large\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            )
            .await
            .unwrap();
        });
        let mut client = TcpStream::connect(addr).await.unwrap();
        let body = vec![b'x'; 8 << 20];
        client
            .write_all(
                format!(
                    "POST / HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\n\r\n",
                    body.len()
                )
                .as_bytes(),
            )
            .await
            .unwrap();
        server.await.unwrap();
        let sent = client.write_all(&body).await;
        assert!(sent.is_ok(), "the body could not be sent: {sent:?}");
        let mut answer = Vec::new();
        let read = client.read_to_end(&mut answer).await;
        assert!(read.is_ok(), "{read:?}");
        assert!(
            answer.starts_with(b"HTTP/1.1 413 "),
            "{:?}",
            String::from_utf8_lossy(&answer)
        );
    }
}
