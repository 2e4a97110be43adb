//! WebSocket through the proxy: an HTTP/1.1 request with `Connection: upgrade` and
//! `Upgrade: websocket` is forwarded with those two headers (every other upgrade is
//! stripped as hop-by-hop, as Envoy does with Istio's default `upgrade_configs`). When
//! the upstream answers `101 Switching Protocols`, the proxy sends the `101` on and
//! splices the two connections, bytes copied both ways until either side closes. Any
//! other answer is forwarded as usual.
//!
//! ```text
//!  downstream ──GET, Upgrade: websocket──► proxy ──► upstream
//!             ◄──────────── 101 ───────── proxy ◄──
//!  downstream ◄═══ copy_bidirectional ═══► upstream (the connection leaves the pool)
//! ```
//!
//! The request is reported once, when the spliced connection closes, with status 101
//! and the WebSocket's whole life as its duration, as Envoy reports an upgraded stream;
//! its request and response bytes include what crossed the spliced connection. On
//! shutdown a WebSocket is drained as the listeners' connections are (see
//! [`crate::drain`]): spliced on for the drain, then closed by the proxy and reported
//! with flag `DC`.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::header::{CONNECTION, UPGRADE};
use http::{HeaderMap, HeaderValue};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tracing::debug;

use super::ProxyContext;
use crate::telemetry::Exchange;

/// The `Upgrade` value to keep when `headers` ask for a WebSocket upgrade: `Upgrade`
/// names `websocket` and `Connection` names `upgrade` (tokens, any case).
pub(super) fn websocket_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let has_token = |values: http::header::GetAll<'_, HeaderValue>, wanted: &str| {
        values.iter().any(|value| {
            value.to_str().is_ok_and(|text| text.split(',').any(|token| token.trim().eq_ignore_ascii_case(wanted)))
        })
    };
    if !has_token(headers.get_all(CONNECTION), "upgrade") || !has_token(headers.get_all(UPGRADE), "websocket") {
        return None;
    }
    headers.get(UPGRADE).cloned()
}

/// Splices the downstream and upstream connections once both have switched protocols,
/// on a task of its own; reports `exchange` when the splice ends, or when the shutdown
/// drain is over and the proxy closes it (flag `DC`).
pub(super) fn splice(context: Arc<ProxyContext>, mut exchange: Exchange, downstream: OnUpgrade, upstream: OnUpgrade) {
    // Counted by the worker's drain from now until the record is written.
    let mut open = context.upgrades.open();
    tokio::spawn(async move {
        let switched = tokio::select! {
            both = async { tokio::join!(downstream, upstream) } => Some(both),
            () = open.closing() => None,
        };
        let (sent, received) = match switched {
            None => {
                exchange.add_flag("DC");
                (0, 0)
            }
            Some((Ok(downstream), Ok(upstream))) => {
                // Counted as read, so that a splice ended by an error still reports
                // what crossed it.
                let mut downstream = ReadCount { inner: TokioIo::new(downstream), bytes: 0 };
                let mut upstream = ReadCount { inner: TokioIo::new(upstream), bytes: 0 };
                tokio::select! {
                    copied = tokio::io::copy_bidirectional(&mut downstream, &mut upstream) => {
                        if let Err(error) = copied {
                            // Most often one side going away without a close handshake.
                            debug!(direction = exchange.direction.as_str(), upstream = exchange.upstream_address(), error = %error, "websocket ended");
                        }
                    }
                    () = open.closing() => {
                        // The shutdown drain is over: the proxy closes both sides
                        // (dropping them), as the downstream connection ends.
                        debug!(direction = exchange.direction.as_str(), upstream = exchange.upstream_address(), "websocket closed at shutdown");
                        exchange.add_flag("DC");
                    }
                }
                (downstream.bytes, upstream.bytes)
            }
            Some((downstream, upstream)) => {
                debug!(
                    direction = exchange.direction.as_str(),
                    upstream = exchange.upstream_address(),
                    downstream_error = ?downstream.err(),
                    upstream_error = ?upstream.err(),
                    "upgrade failed"
                );
                exchange.add_flag("UR");
                (0, 0)
            }
        };
        exchange.add_request_body_bytes(sent);
        exchange.finish(received, &context.reports, &context.spans);
        // Reported: the drain may end.
        drop(open);
    });
}

/// A connection counting the bytes read from it.
struct ReadCount<T> {
    inner: T,
    bytes: u64,
}

impl<T: AsyncRead + Unpin> AsyncRead for ReadCount<T> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        let read = buf.filled().len().saturating_sub(before);
        self.bytes += read as u64;
        result
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ReadCount<T> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests;
