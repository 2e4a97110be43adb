//! Serves an axum router on an already-bound listener (OTLP HTTP, Zipkin, query) with
//! bounds on slow clients, which `axum::serve` does not have:
//!
//! - hyper's header read timeout: a connection whose request headers are not complete
//!   within `http.header_read_timeout` (a slowloris client, or an idle keep-alive
//!   connection) is closed without an answer; so is one that sends nothing at all in
//!   that time, and an h2c connection on which no request starts for that long is
//!   shut down gracefully ([`conn_life`]), a vanished h2c peer being found by pings;
//! - a deadline on the request body: a body not complete within
//!   `http.body_read_timeout` of its headers ends with a `TimedOut` I/O error, which
//!   the handlers answer with 408; hyper then closes the connection.
//!
//! - a write deadline: a client that reads nothing of its answer for
//!   `http.write_timeout` while there is more to send is disconnected, freeing the
//!   answer ([`WriteStall`]).
//!
//! All are counted in `meshtel_http_connections_timed_out_total{listener,phase}`.
//! On shutdown the listener stops accepting and open connections finish their
//! requests (the caller bounds how long).

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use anyhow::Context as _;
use axum::body::{Body, HttpBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use meshtel_model::conn_life::{self, Lingering, RequestCounter, WriteStall};
use meshtel_model::log_window::{LogWindow, Throttled};
use prometheus::{IntCounter, IntCounterVec, Opts};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::time::Sleep;
use tower::ServiceExt;
use tracing::{debug, info};

use crate::config::HttpServerConfig;

mod unread;

/// Bytes of an HTTP/2 answer the server buffers beyond its client's window, per stream.
const H2_STREAM_SEND_BUFFER: usize = 64 * 1024;

/// How often an h2c connection is pinged to tell a live client from a vanished one
/// that holds open streams (an idle connection is closed sooner, see
/// [`conn_life`]).
const H2_KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(30);
/// How long a ping may go unanswered before the connection is closed.
const H2_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Connections the HTTP listeners closed for a slow client, by listener and phase
/// (`headers`, `body`, `write`): `meshtel_http_connections_timed_out_total`.
#[derive(Clone)]
pub struct HttpTimeoutMetrics {
    timed_out: IntCounterVec,
    /// Requests refused before their handler, by listener and reason
    /// (`meshtel_http_requests_refused_total`; reason `host`: see `host_check`).
    dropped_unread: IntCounterVec,
    refused: IntCounterVec,
}

impl HttpTimeoutMetrics {
    /// A new, unregistered counter family.
    pub fn new() -> anyhow::Result<HttpTimeoutMetrics> {
        let timed_out = IntCounterVec::new(
            Opts::new(
                "meshtel_http_connections_timed_out_total",
                "HTTP connections closed because request headers (phase=headers) or a \
                 request body (phase=body, answered 408) did not arrive within \
                 http.header_read_timeout / http.body_read_timeout, or because the client \
                 read nothing of its answer within http.write_timeout (phase=write).",
            ),
            &["listener", "phase"],
        )
        .context("creating meshtel_http_connections_timed_out_total")?;
        let dropped_unread = IntCounterVec::new(
            Opts::new(
                "meshtel_http_answers_dropped_unread_total",
                "HTTP/2 answers dropped because the server could not send any of them for \
                 http.write_timeout while they were ready: their client granted no window.",
            ),
            &["listener"],
        )
        .context("creating meshtel_http_answers_dropped_unread_total")?;
        let refused = IntCounterVec::new(
            Opts::new(
                "meshtel_http_requests_refused_total",
                "HTTP requests refused before their handler: reason=host, a request naming \
                 a host that a listener bound to a loopback address does not answer (see \
                 http.allowed_hosts).",
            ),
            &["listener", "reason"],
        )
        .context("creating meshtel_http_requests_refused_total")?;
        Ok(HttpTimeoutMetrics {
            timed_out,
            dropped_unread,
            refused,
        })
    }

    /// The counter families, to register in a registry.
    pub fn collectors(&self) -> [Box<dyn prometheus::core::Collector>; 3] {
        [
            Box::new(self.timed_out.clone()),
            Box::new(self.dropped_unread.clone()),
            Box::new(self.refused.clone()),
        ]
    }

    /// Requests of `listener` refused for `reason`, touched so that it reads 0 first.
    pub fn refused(&self, listener: &'static str, reason: &'static str) -> IntCounter {
        let counter = self.refused.with_label_values(&[listener, reason]);
        counter.inc_by(0);
        counter
    }

    fn counter(&self, listener: &'static str, phase: &'static str) -> IntCounter {
        self.timed_out.with_label_values(&[listener, phase])
    }

    /// Connections of `listener` let go in `phase`, touched so that it reads 0 first.
    pub fn timed_out(&self, listener: &'static str, phase: &'static str) -> IntCounter {
        let counter = self.counter(listener, phase);
        counter.inc_by(0);
        counter
    }
}

/// Serves `app` on `listener` until `stop` turns true, then lets open connections
/// finish. `listener_name` labels the metrics and logs (`otlp_http`, `zipkin`, `query`).
pub async fn serve_http(
    listener: TcpListener,
    app: axum::Router,
    config: HttpServerConfig,
    metrics: HttpTimeoutMetrics,
    listener_name: &'static str,
    mut stop: watch::Receiver<bool>,
) -> anyhow::Result<()> {
    let header_timeouts = metrics.counter(listener_name, "headers");
    let body_timeouts = metrics.counter(listener_name, "body");
    let write_timeouts = metrics.counter(listener_name, "write");
    // Touch every series so that they read 0 before the first timeout.
    header_timeouts.inc_by(0);
    body_timeouts.inc_by(0);
    write_timeouts.inc_by(0);
    let write_timeout = config.write_timeout;
    let dropped_unread = metrics.dropped_unread.with_label_values(&[listener_name]);
    dropped_unread.inc_by(0);
    let unread = unread::UnreadAnswers::new(write_timeout, dropped_unread);
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .keep_alive_interval(Some(H2_KEEP_ALIVE_INTERVAL))
        .keep_alive_timeout(H2_KEEP_ALIVE_TIMEOUT)
        // What the server buffers of a stream's answer beyond the client's window: at
        // hyper's default of ~400 KB, a client granting no window held that much per
        // stream, 200 streams a connection, beyond the reach of the unread-answer bound.
        .max_send_buf_size(H2_STREAM_SEND_BUFFER);
    // A connection that sends nothing, or starts no request, for this long is closed.
    let idle = config.header_read_timeout;
    // Each connection task holds a receiver; `closed()` is when every one has ended.
    let (drained, connection_token) = watch::channel(());
    let body_read_timeout = config.body_read_timeout;
    if *stop.borrow() {
        return Ok(());
    }
    let mut accept_errors = LogWindow::default();
    // Requests that are not HTTP (a scanner, a client speaking TLS or another protocol to
    // the port): told at most once per interval, with the last one's peer and error.
    let protocol_errors = Throttled::new(move |connections, last: &str| {
        info!(listener = listener_name, connections, last, at_most_every = "10s", "connections ended by requests that are not valid HTTP since the last line");
    });
    loop {
        tokio::select! {
            (stream, peer) = conn_life::accept(&listener, listener_name, &mut accept_errors) => {
                let app = app.clone();
                let protocol_errors = protocol_errors.clone();
                let unread = unread.clone();
                let body_timeouts = body_timeouts.clone();
                let header_timeouts = header_timeouts.clone();
                let write_timeouts = write_timeouts.clone();
                let builder = builder.clone();
                let mut stop = stop.clone();
                let token = connection_token.clone();
                tokio::spawn(async move {
                    let _token = token;
                    if !conn_life::first_byte_unless_stopped(&stream, idle, &mut stop).await {
                        if !*stop.borrow() {
                            header_timeouts.inc();
                            debug!(listener = listener_name, %peer, "nothing sent, connection closed");
                        }
                        return;
                    }
                    let requests = RequestCounter::default();
                    let counter = requests.clone();
                    let service = hyper::service::service_fn(move |request: hyper::Request<Incoming>| {
                        counter.started();
                        let body_timeouts = body_timeouts.clone();
                        // HTTP/1.1 answers have the stalled-write bound; HTTP/2 ones,
                        // which a client can leave unread on a live connection, this.
                        let unread = (request.version() == hyper::Version::HTTP_2).then(|| unread.clone());
                        let request = request.map(|body| {
                            Body::new(DeadlineBody::new(body, body_read_timeout, body_timeouts))
                        });
                        let answered = app.clone().oneshot(request);
                        async move {
                            let response = answered.await?;
                            Ok::<_, std::convert::Infallible>(match unread {
                                Some(unread) => response.map(|body| unread.watch(body)),
                                None => response,
                            })
                        }
                    });
                    // A client that reads nothing of its answer is let go (`write_timeout`).
                    let stream = WriteStall::new(Lingering::new(stream), write_timeout, move || {
                        write_timeouts.inc();
                        debug!(listener = listener_name, %peer, "the client read nothing of its answer in time, connection closed");
                    });
                    let connection = builder.serve_connection(TokioIo::new(stream), service);
                    let connection = std::pin::pin!(connection);
                    let graceful: fn(std::pin::Pin<&mut _>) = |connection| auto::Connection::graceful_shutdown(connection);
                    if let Err(error) = conn_life::drive(connection, graceful, &requests, idle, stop).await {
                        if is_header_timeout(error.as_ref()) {
                            header_timeouts.inc();
                            debug!(listener = listener_name, %peer, "request headers timed out, connection closed");
                        } else if is_parse_error(error.as_ref()) {
                            protocol_errors.note(format_args!("peer {peer}: {error}"));
                        } else {
                            debug!(listener = listener_name, %peer, %error, "connection ended with an error");
                        }
                    }
                });
            }
            changed = stop.changed() => {
                if changed.is_err() || *stop.borrow() {
                    break;
                }
            }
        }
    }
    drop(listener);
    drop(connection_token);
    drained.closed().await;
    Ok(())
}

/// The connections of a gRPC listener, for tonic: each once it has sent the HTTP/2
/// preface and the header of its first SETTINGS frame within `idle` (one that sends
/// nothing, or stops partway, is closed, as on the HTTP listeners; tonic's own reading
/// of the preface has no timeout), with Nagle off (Check answers are small and
/// latency-bound), and let go once its client has read nothing for `write_timeout`
/// while there was something to send ([`WriteStall`]: tonic's keep-alive pings cannot
/// tell, since they wait behind the unsent bytes), counted in `write_timeouts`. The
/// accept task ends with the server.
pub fn grpc_incoming(
    listener: TcpListener,
    idle: Duration,
    write_timeout: Duration,
    write_timeouts: prometheus::IntCounter,
) -> tokio_stream::wrappers::ReceiverStream<std::io::Result<WriteStall<tokio::net::TcpStream>>> {
    let (ready, incoming) = tokio::sync::mpsc::channel(GRPC_ACCEPT_QUEUE);
    // Clients that speak something else to the port, told at most once per interval
    // with what the last one spoke: a TLS exporter pointed at a plaintext port is the
    // usual one, and otherwise sees only a broken connection.
    let not_grpc = Throttled::new(|connections, last: &str| {
        info!(listener = "otlp_grpc", connections, last, at_most_every = "10s", "connections closed since the last line: they did not open with HTTP/2 (gRPC)");
    });
    tokio::spawn(async move {
        let mut accept_errors = LogWindow::default();
        loop {
            tokio::select! {
                (stream, peer) = conn_life::accept(&listener, "otlp_grpc", &mut accept_errors) => {
                    if let Err(error) = stream.set_nodelay(true) {
                        debug!(listener = "otlp_grpc", %error, "set_nodelay failed");
                    }
                    let ready = ready.clone();
                    let write_timeouts = write_timeouts.clone();
                    let not_grpc = not_grpc.clone();
                    tokio::spawn(async move {
                        if conn_life::first_bytes(&stream, H2_PREFACE_AND_SETTINGS_HEADER, idle).await {
                            if let Some(spoken) = not_h2(&stream).await {
                                not_grpc.note(format_args!("peer {peer}: {spoken}"));
                                return;
                            }
                            let stream = WriteStall::new(stream, write_timeout, move || {
                                write_timeouts.inc();
                                debug!(listener = "otlp_grpc", %peer, "client read nothing in time, connection closed");
                            });
                            let _ = ready.send(Ok(stream)).await;
                        } else {
                            // A short opening of another protocol waits out the idle
                            // time: what did arrive is named, as a long one is.
                            match tokio::time::timeout(Duration::from_millis(1), not_h2(&stream)).await {
                                Ok(Some(spoken)) => not_grpc.note(format_args!("peer {peer}: {spoken}")),
                                _ => debug!(listener = "otlp_grpc", %peer, "no HTTP/2 preface in time, connection closed"),
                            }
                        }
                    });
                }
                () = ready.closed() => return,
            }
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(incoming)
}

/// What a connection whose first bytes are not the HTTP/2 preface speaks instead, for
/// the log: `None` when they are the preface.
async fn not_h2(stream: &tokio::net::TcpStream) -> Option<&'static str> {
    const PREFACE: &[u8; 24] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    let mut first = [0u8; 24];
    let seen = stream.peek(&mut first).await.ok()?;
    let first = first.get(..seen)?;
    if first == PREFACE.get(..seen)? {
        return None;
    }
    Some(match first {
        // A TLS record of the handshake type (22).
        [0x16, 0x03, ..] => {
            "a TLS handshake: this port speaks plaintext gRPC (h2c); give the exporter an \
             http:// endpoint or `insecure: true`"
        }
        _ if first.starts_with(b"POST ") || first.starts_with(b"GET ") || first.starts_with(b"HEAD ") => {
            "HTTP/1.1: an OTLP/HTTP exporter? Its port is the http listener (4318 by default)"
        }
        _ => "neither HTTP/2 nor TLS",
    })
}

/// `PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n` (24 bytes) and the 9-byte header of the SETTINGS
/// frame that must follow it (RFC 9113 §3.4).
const H2_PREFACE_AND_SETTINGS_HEADER: usize = 24 + 9;

/// Connections that have spoken, waiting for tonic to take them.
const GRPC_ACCEPT_QUEUE: usize = 64;

fn is_header_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    hyper_error(error).is_some_and(hyper::Error::is_timeout)
}

/// Whether `error` is hyper refusing what the client sent as HTTP (a malformed request
/// line or header, a head over its limits, a broken HTTP/2 preface).
fn is_parse_error(error: &(dyn std::error::Error + 'static)) -> bool {
    hyper_error(error).is_some_and(hyper::Error::is_parse)
}

/// The first hyper error in `error`'s chain of sources.
fn hyper_error<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a hyper::Error> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(hyper_error) = error.downcast_ref::<hyper::Error>() {
            return Some(hyper_error);
        }
        source = error.source();
    }
    None
}

/// A request body that fails with an [`std::io::ErrorKind::TimedOut`] error once its
/// deadline passes before its end.
struct DeadlineBody {
    inner: Incoming,
    timeout: Duration,
    /// `None` for a body known to be empty (most GETs): nothing to wait for.
    deadline: Option<Pin<Box<Sleep>>>,
    timed_out: IntCounter,
    done: bool,
}

impl DeadlineBody {
    fn new(inner: Incoming, timeout: Duration, timed_out: IntCounter) -> DeadlineBody {
        let deadline = (!inner.is_end_stream()).then(|| Box::pin(tokio::time::sleep(timeout)));
        DeadlineBody {
            inner,
            timeout,
            deadline,
            timed_out,
            done: false,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = bytes::Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        let this = &mut *self;
        if this.done {
            return Poll::Ready(None);
        }
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            if frame.is_none() {
                this.done = true;
            }
            return Poll::Ready(frame.map(|frame| frame.map_err(Into::into)));
        }
        if let Some(deadline) = this.deadline.as_mut()
            && deadline.as_mut().poll(cx).is_ready()
        {
            this.done = true;
            this.timed_out.inc();
            debug!(timeout = ?this.timeout, "request body timed out");
            return Poll::Ready(Some(Err(Box::new(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "request body not received within http.body_read_timeout ({})",
                    humantime::format_duration(this.timeout)
                ),
            )))));
        }
        Poll::Pending
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}
