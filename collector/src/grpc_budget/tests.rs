use std::convert::Infallible;

use bytesize::ByteSize;
use http_body_util::{BodyExt, StreamBody};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::*;

/// One gRPC message: the 5-byte prefix and `len` payload bytes.
fn message(len: usize) -> Vec<u8> {
    let mut bytes = vec![0u8];
    bytes.extend_from_slice(&u32::try_from(len).unwrap().to_be_bytes());
    bytes.resize(5 + len, 7);
    bytes
}

#[test]
fn framing_finds_messages_across_and_within_frames() {
    let mut framing = Framing::default();
    let mut stream = message(10);
    stream.extend(message(0));
    stream.extend(message(3));
    // Split into frames of 4 bytes: prefixes and payloads are cut anywhere.
    let mut finished = Vec::new();
    for chunk in stream.chunks(4) {
        finished.push(framing.advance(chunk).0);
    }
    assert_eq!(finished.iter().sum::<usize>(), 15 + 5 + 8);
    assert_eq!(framing.current, 0);
    // A message begun and not ended is held.
    let (done, began) = framing.advance(&message(100)[..50]);
    assert_eq!((done, began, framing.current), (0, true, 50));
    let (done, began) = framing.advance(&[7u8; 55]);
    assert_eq!((done, began, framing.current), (105, false, 0));
}

/// A body fed frame by frame through a channel, under the bounds.
fn bounded(
    budget: &InflightBudget,
    timeout: Duration,
) -> (
    mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
    MessageBoundBody,
    GrpcMessageStats,
) {
    let (tx, rx) = mpsc::channel(8);
    let stats = GrpcMessageStats::new(1);
    let body = MessageBoundBody {
        inner: tonic::body::Body::new(StreamBody::new(ReceiverStream::new(rx))),
        hold: budget.hold(),
        timeout,
        stats: stats.clone(),
        framing: Framing::default(),
        deadline: None,
        failed: false,
    };
    (tx, body, stats)
}

#[tokio::test]
async fn a_stream_holds_only_the_message_it_is_receiving() {
    let budget = InflightBudget::new(ByteSize::kib(64));
    let (tx, mut body, _) = bounded(&budget, Duration::from_secs(30));
    // Many messages of 10 KiB, more than the budget together: each is given back.
    for _ in 0..20 {
        tx.send(Ok(Frame::data(Bytes::from(message(10_240)))))
            .await
            .unwrap();
        body.frame().await.unwrap().unwrap();
        assert_eq!(budget.available(), 64 * 1024);
    }
    // Half a message is held until the rest comes.
    let half = message(20_000);
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(&half[..10_005]))))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(budget.available(), 64 * 1024 - 10_005);
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(&half[10_005..]))))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    assert_eq!(budget.available(), 64 * 1024);
    drop(body);
    assert_eq!(budget.available(), 64 * 1024);
}

#[tokio::test]
async fn a_message_larger_than_the_budget_ends_the_call_unavailable() {
    let budget = InflightBudget::new(ByteSize::kib(16));
    let (tx, mut body, stats) = bounded(&budget, Duration::from_secs(30));
    let big = message(40_000);
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(&big[..12_000]))))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(
        &big[12_000..24_000],
    ))))
    .await
    .unwrap();
    let error = body.frame().await.unwrap().unwrap_err();
    let status = error.downcast::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::Unavailable);
    assert_eq!(stats.refused(), 1);
    assert!(body.frame().await.is_none());
    drop(body);
    assert_eq!(budget.available(), 16 * 1024);
}

#[tokio::test]
async fn a_message_that_stops_arriving_ends_the_call_after_the_timeout() {
    let timeout = Duration::from_millis(300);
    let budget = InflightBudget::new(ByteSize::mib(1));
    let (tx, mut body, stats) = bounded(&budget, timeout);
    // A whole message, then a stream left idle: no timeout.
    tx.send(Ok(Frame::data(Bytes::from(message(100)))))
        .await
        .unwrap();
    body.frame().await.unwrap().unwrap();
    let idle = tokio::time::timeout(timeout * 3, body.frame()).await;
    assert!(idle.is_err(), "an idle stream between messages is not cut");
    // Half a message: cut a timeout after it began.
    let begun = std::time::Instant::now();
    tx.send(Ok(Frame::data(Bytes::copy_from_slice(
        &message(1_000)[..300],
    ))))
    .await
    .unwrap();
    body.frame().await.unwrap().unwrap();
    let error = body.frame().await.unwrap().unwrap_err();
    let status = error.downcast::<tonic::Status>().unwrap();
    assert_eq!(status.code(), tonic::Code::DeadlineExceeded);
    assert!(
        status.message().contains("http.body_read_timeout"),
        "{status:?}"
    );
    let waited = begun.elapsed();
    assert!(waited >= timeout && waited < timeout * 5, "{waited:?}");
    assert_eq!(stats.timed_out(), 1);
    drop((body, tx));
    assert_eq!(budget.available(), 1024 * 1024);
}
