//! Reading an HTTP request body under the size limit: `Content-Type` parsing,
//! `Content-Encoding` (gzip, deflate) and decompression capped so that a small
//! compressed body cannot expand past `max_request_bytes` (a "gzip bomb").

use std::io::Read;

use axum::body::Body;
use bytes::Bytes;
use flate2::read::{MultiGzDecoder, ZlibDecoder};
use http::HeaderMap;
use http::header::{CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE};
use http_body_util::{BodyExt, LengthLimitError, Limited};

use crate::error::{Error, Result};
use crate::inflight::{Hold, http_refusal};

/// JSON and Zipkin bodies at least this large (as they will be decoded) are decoded on
/// a blocking thread: parsing JSON takes about 20 ms per MB, work that would otherwise
/// hold up the runtime thread serving other requests (quota checks among them). The
/// store reads OTLP protobuf, some ten times faster, on a blocking thread from 1 MiB.
pub(crate) const DECODE_ON_BLOCKING_THREAD_BYTES: usize = 256 << 10;

/// Compressed bodies at least this large are inflated on a blocking thread: at the
/// usual ratios they inflate to half a megabyte and more.
const INFLATE_ON_BLOCKING_THREAD_BYTES: usize = 64 * 1024;

/// Takes from the in-flight budget what parsing `body` as JSON will take beyond its
/// bytes ([`meshtel_model::otlp_json::json_parse_bytes`]: about twenty times an
/// OTLP/JSON body, a hundred times one of tiny objects), so that the budget bounds the
/// parse too. More than the whole budget is refused (413); more than it has left, 503
/// with a retry delay, as for the bytes themselves.
pub(crate) fn hold_json_parse(hold: &Hold, body: &[u8]) -> Result<()> {
    hold_parse(
        hold,
        meshtel_model::otlp_json::json_parse_bytes(body),
        "JSON",
        "as protobuf, which takes a fraction of that, or in smaller batches",
    )
}

/// Takes `needed` bytes from the in-flight budget for parsing a body of `format`, as
/// [`hold_json_parse`] does; `advice` says how to send it instead when it can never fit.
pub(crate) fn hold_parse(hold: &Hold, needed: usize, format: &'static str, advice: &'static str) -> Result<()> {
    let limit = hold.budget().limit();
    // With what this request holds already (its bytes): one that could never fit is
    // refused for good, not told to retry.
    if needed.saturating_add(hold.bytes()) as u64 > limit.as_u64() {
        return Err(Error::TooLargeToParse {
            format,
            needed,
            limit,
            advice,
        });
    }
    if !hold.take(needed) {
        return Err(hold.budget().exhausted());
    }
    Ok(())
}

/// `work()` on a blocking thread when `large`, else here. A blocking task that cannot
/// finish (the runtime shutting down) is the store being unavailable.
pub(crate) async fn off_runtime_if<T: Send + 'static>(
    large: bool,
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    if !large {
        return work();
    }
    tokio::task::spawn_blocking(work).await.map_err(|e| {
        Error::Unavailable(meshtel_model::Error::Unavailable(format!(
            "decoding the request failed: {e}"
        )))
    })?
}

/// The media type of a request without its parameters, lowercased
/// (`application/json; charset=utf-8` → `application/json`), as Go's
/// `mime.ParseMediaType` gives it. `None` when the header is absent or not text.
pub fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next().unwrap_or_default().trim();
    Some(essence.to_ascii_lowercase())
}

/// How the body is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ContentEncoding {
    Identity,
    Gzip,
    Deflate,
}

fn content_encoding(headers: &HeaderMap) -> Result<ContentEncoding> {
    let Some(value) = headers.get(CONTENT_ENCODING) else {
        return Ok(ContentEncoding::Identity);
    };
    let text = value
        .to_str()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match text.as_str() {
        "" | "identity" => Ok(ContentEncoding::Identity),
        "gzip" | "x-gzip" => Ok(ContentEncoding::Gzip),
        "deflate" => Ok(ContentEncoding::Deflate),
        _ => Err(Error::UnsupportedEncoding(
            String::from_utf8_lossy(value.as_bytes()).into_owned(),
        )),
    }
}

/// Reads the whole body, decompressing it, refusing anything larger than `limit`
/// bytes either on the wire or once decompressed. Under a `hold`, the bytes received
/// and those decompressed are taken from the in-flight budget, and a request that does
/// not fit is refused with [`Error::InflightBytesExhausted`].
pub async fn read_body_limited(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    hold: Option<&Hold>,
) -> Result<Bytes> {
    let encoding = content_encoding(headers)?;
    let declared_length = headers
        .get(CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|text| text.parse::<u64>().ok());
    if declared_length.is_some_and(|length| length > limit as u64) {
        return Err(Error::RequestTooLarge { limit });
    }
    let body = match hold {
        Some(hold) => Body::new(hold.body(body, http_refusal)),
        None => body,
    };
    let raw = match Limited::new(body, limit).collect().await {
        Ok(collected) => collected.to_bytes(),
        Err(error) if error.downcast_ref::<LengthLimitError>().is_some() => {
            return Err(Error::RequestTooLarge { limit });
        }
        Err(error) if let Some(refused) = budget_refusal(error.as_ref()) => return Err(refused),
        Err(error) => {
            return Err(match timed_out(error.as_ref()) {
                Some(timeout) => Error::BodyTimeout(timeout),
                None => Error::ReadBody(axum::Error::new(error)),
            });
        }
    };
    let large =
        encoding != ContentEncoding::Identity && raw.len() >= INFLATE_ON_BLOCKING_THREAD_BYTES;
    let hold = hold.cloned();
    off_runtime_if(large, move || {
        let hold = hold.as_ref();
        match encoding {
            ContentEncoding::Identity => Ok(raw),
            ContentEncoding::Gzip => {
                decompress_limited(MultiGzDecoder::new(raw.as_ref()), limit, hold)
            }
            ContentEncoding::Deflate => {
                decompress_limited(ZlibDecoder::new(raw.as_ref()), limit, hold)
            }
        }
    })
    .await
}

/// The in-flight budget's refusal somewhere in `error`'s chain (axum wraps the body's
/// errors), made again.
fn budget_refusal(error: &(dyn std::error::Error + 'static)) -> Option<Error> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(Error::InflightBytesExhausted { limit, retry_after }) =
            error.downcast_ref::<Error>()
        {
            return Some(Error::InflightBytesExhausted {
                limit: *limit,
                retry_after: *retry_after,
            });
        }
        source = error.source();
    }
    None
}

/// The `TimedOut` I/O error somewhere in `error`'s chain (the server's body read
/// timeout), copied out of it.
fn timed_out(error: &(dyn std::error::Error + 'static)) -> Option<std::io::Error> {
    let mut source = Some(error);
    while let Some(error) = source {
        if let Some(io) = error.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::TimedOut
        {
            return Some(std::io::Error::new(io.kind(), io.to_string()));
        }
        source = error.source();
    }
    None
}

/// Reads at most `limit + 1` bytes out of `decoder`: one byte more than allowed is
/// enough to know the body is too large, without inflating the rest.
/// Under a `hold`, each piece is taken from the in-flight budget as it is inflated, so
/// that many small compressed requests cannot each inflate to `limit` before one is
/// refused.
fn decompress_limited(decoder: impl Read, limit: usize, hold: Option<&Hold>) -> Result<Bytes> {
    const PIECE: usize = 64 * 1024;
    let mut decoder = decoder.take(limit as u64 + 1);
    let mut out = Vec::new();
    let mut piece = vec![0u8; PIECE];
    loop {
        let n = match decoder.read(&mut piece) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::Decompress(e)),
        };
        if let Some(hold) = hold
            && !hold.take(n)
        {
            return Err(hold.budget().exhausted());
        }
        out.extend_from_slice(&piece[..n]);
    }
    if out.len() > limit {
        return Err(Error::RequestTooLarge { limit });
    }
    Ok(Bytes::from(out))
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression;
    use flate2::write::GzEncoder;
    use http::HeaderValue;

    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
        encoder.write_all(data).unwrap();
        encoder.finish().unwrap()
    }

    fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.insert(name.clone(), HeaderValue::from_str(value).unwrap());
        }
        map
    }

    #[test]
    fn media_type_ignores_parameters_and_case() {
        let h = headers(&[(CONTENT_TYPE, "Application/JSON; charset=utf-8")]);
        assert_eq!(media_type(&h).as_deref(), Some("application/json"));
        assert_eq!(media_type(&HeaderMap::new()), None);
    }

    #[tokio::test]
    async fn reads_plain_and_gzip_bodies() {
        let plain = read_body_limited(&HeaderMap::new(), Body::from("hello"), 10, None)
            .await
            .unwrap();
        assert_eq!(plain.as_ref(), b"hello");
        let h = headers(&[(CONTENT_ENCODING, "gzip")]);
        let unzipped = read_body_limited(&h, Body::from(gzip(b"hello")), 100, None)
            .await
            .unwrap();
        assert_eq!(unzipped.as_ref(), b"hello");
    }

    #[tokio::test(flavor = "current_thread")]
    async fn large_work_runs_on_another_thread_than_the_runtime() {
        let here = std::thread::current().id();
        let small = off_runtime_if(false, || Ok(std::thread::current().id())).await;
        let large = off_runtime_if(true, || Ok(std::thread::current().id())).await;
        assert_eq!(small.unwrap(), here);
        assert_ne!(large.unwrap(), here);
        let failed = off_runtime_if(true, || Err::<(), _>(Error::InvalidConfig("x".into()))).await;
        assert!(matches!(failed, Err(Error::InvalidConfig(_))), "{failed:?}");
    }

    /// A compressed body large enough to be inflated on a blocking thread reads the same
    /// and takes what it inflates from the in-flight budget there too.
    #[tokio::test]
    async fn a_large_compressed_body_inflates_off_the_runtime_within_the_budget() {
        // Bytes that barely compress: well over the threshold once gzipped.
        let mut x = 0x9e37_79b9_7f4a_7c15_u64;
        let data: Vec<u8> = (0..400_000)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let zipped = gzip(&data);
        assert!(
            zipped.len() >= INFLATE_ON_BLOCKING_THREAD_BYTES,
            "{}",
            zipped.len()
        );
        let h = headers(&[(CONTENT_ENCODING, "gzip")]);
        let budget = crate::inflight::InflightBudget::new(bytesize::ByteSize::mib(4));
        let hold = budget.hold();
        let read = read_body_limited(&h, Body::from(zipped.clone()), 1 << 20, Some(&hold))
            .await
            .unwrap();
        assert_eq!(read.as_ref(), &data[..]);
        assert!(hold.bytes() >= data.len(), "{}", hold.bytes());
        // Over the limit once inflated: refused there as well.
        let over = read_body_limited(&h, Body::from(zipped), 300_000, None).await;
        assert!(
            matches!(over, Err(Error::RequestTooLarge { limit: 300_000 })),
            "{over:?}"
        );
    }

    /// A small compressed body that inflates past what the in-flight budget has left is
    /// refused as it inflates (taking no more than the budget), and everything it took
    /// is given back with its hold.
    #[tokio::test]
    async fn a_body_inflating_past_the_budget_is_refused_as_it_inflates() {
        let budget = crate::inflight::InflightBudget::new(bytesize::ByteSize::kib(256));
        let hold = budget.hold();
        let h = headers(&[(CONTENT_ENCODING, "gzip")]);
        let bomb = gzip(&vec![0u8; 1 << 20]);
        let result = read_body_limited(&h, Body::from(bomb), 4 << 20, Some(&hold)).await;
        assert!(
            matches!(result, Err(Error::InflightBytesExhausted { .. })),
            "{result:?}"
        );
        // It took pieces until the budget ran out, not the whole inflated body at once.
        assert!(
            (192 * 1024..=256 * 1024).contains(&hold.bytes()),
            "{}",
            hold.bytes()
        );
        drop(hold);
        assert_eq!(budget.available(), 256 * 1024);
        // Within the budget, the same kind of body is read whole.
        let hold = budget.hold();
        let small = gzip(&vec![1u8; 100 * 1024]);
        let read = read_body_limited(&h, Body::from(small), 4 << 20, Some(&hold))
            .await
            .unwrap();
        assert_eq!(read.len(), 100 * 1024);
    }

    #[tokio::test]
    async fn refuses_bodies_over_the_limit_before_and_after_decompression() {
        let too_long =
            read_body_limited(&HeaderMap::new(), Body::from("x".repeat(11)), 10, None).await;
        assert!(matches!(
            too_long,
            Err(Error::RequestTooLarge { limit: 10 })
        ));
        let h = headers(&[(CONTENT_ENCODING, "gzip")]);
        let bomb = gzip(&vec![0u8; 1 << 20]);
        assert!(bomb.len() < 10_000);
        let result = read_body_limited(&h, Body::from(bomb), 10_000, None).await;
        assert!(matches!(result, Err(Error::RequestTooLarge { .. })));
    }

    #[tokio::test]
    async fn rejects_unknown_encodings_and_corrupt_gzip() {
        let h = headers(&[(CONTENT_ENCODING, "br")]);
        let result = read_body_limited(&h, Body::from("x"), 10, None).await;
        assert!(matches!(result, Err(Error::UnsupportedEncoding(_))));
        let h = headers(&[(CONTENT_ENCODING, "gzip")]);
        let result = read_body_limited(&h, Body::from("not gzip"), 100, None).await;
        assert!(matches!(result, Err(Error::Decompress(_))));
    }
}
