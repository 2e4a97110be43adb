//! The few `google.rpc` messages OTLP error responses carry, declared with prost
//! instead of pulling a crate for them: `Status` (the body of an OTLP/HTTP error and
//! the `grpc-status-details-bin` trailer), `RetryInfo` and the `Any` that wraps it.

use std::time::Duration;

use bytes::Bytes;
use prost::Message;

/// `google.rpc.Status`.
#[derive(Clone, PartialEq, Message)]
pub struct Status {
    /// A `google.rpc.Code` value.
    #[prost(int32, tag = "1")]
    pub code: i32,
    /// English, developer-facing message.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Typed details.
    #[prost(message, repeated, tag = "3")]
    pub details: Vec<Any>,
}

/// `google.protobuf.Any`.
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    /// `type.googleapis.com/<full message name>`.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The encoded message.
    #[prost(bytes = "vec", tag = "2")]
    pub value: Vec<u8>,
}

/// `google.rpc.RetryInfo`.
#[derive(Clone, PartialEq, Message)]
pub struct RetryInfo {
    /// How long the client should wait before retrying.
    #[prost(message, optional, tag = "1")]
    pub retry_delay: Option<ProtoDuration>,
}

/// `google.protobuf.Duration`.
#[derive(Clone, PartialEq, Message)]
pub struct ProtoDuration {
    /// Whole seconds.
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    /// Nanoseconds within the second.
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

const RETRY_INFO_TYPE_URL: &str = "type.googleapis.com/google.rpc.RetryInfo";

/// An encoded `google.rpc.Status` with one `RetryInfo{retry_delay}` detail.
pub fn status_with_retry_info(code: i32, message: &str, delay: Duration) -> Bytes {
    let retry_info = RetryInfo {
        retry_delay: Some(ProtoDuration {
            seconds: i64::try_from(delay.as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(delay.subsec_nanos()).unwrap_or(0),
        }),
    };
    let status = Status {
        code,
        message: message.to_string(),
        details: vec![Any {
            type_url: RETRY_INFO_TYPE_URL.to_string(),
            value: retry_info.encode_to_vec(),
        }],
    };
    Bytes::from(status.encode_to_vec())
}

/// Reads the retry delay back out of an encoded status (what a client does).
pub fn retry_delay_from_status(details: &[u8]) -> Option<Duration> {
    let status = Status::decode(details).ok()?;
    let any = status
        .details
        .iter()
        .find(|any| any.type_url == RETRY_INFO_TYPE_URL)?;
    let delay = RetryInfo::decode(any.value.as_slice()).ok()?.retry_delay?;
    Some(Duration::new(
        u64::try_from(delay.seconds).ok()?,
        u32::try_from(delay.nanos).ok()?,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_info_round_trips() {
        let bytes = status_with_retry_info(14, "overloaded", Duration::from_millis(2500));
        assert_eq!(
            retry_delay_from_status(&bytes),
            Some(Duration::from_millis(2500))
        );
        let status = Status::decode(bytes.as_ref()).unwrap();
        assert_eq!(status.code, 14);
        assert_eq!(status.message, "overloaded");
    }
}
