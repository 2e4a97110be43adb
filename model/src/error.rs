//! One error vocabulary for every protocol: a small set of codes, each with its gRPC
//! status and HTTP status, so that handlers never decide this on their own; and the
//! crate's one error type, [`Error`].

use std::fmt::Write as _;
use std::time::Duration;

use crate::quota::FieldError;
use crate::routing::RuleProblem;

/// What went wrong, in terms a client can act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorCode {
    /// The request is malformed or names something impossible; do not retry.
    BadRequest,
    /// The thing asked for does not exist.
    NotFound,
    /// The request is too large for the configured limits; do not retry as is.
    TooLarge,
    /// The server is overloaded or shutting down; retry later.
    Unavailable,
    /// A conditional write found another version than the one it expected.
    PreconditionFailed,
    /// A bug or a storage failure; details are logged, not returned.
    Internal,
}

impl ErrorCode {
    /// The gRPC status code for this error.
    pub fn grpc_code(self) -> tonic::Code {
        match self {
            ErrorCode::BadRequest => tonic::Code::InvalidArgument,
            ErrorCode::NotFound => tonic::Code::NotFound,
            ErrorCode::TooLarge => tonic::Code::ResourceExhausted,
            ErrorCode::Unavailable => tonic::Code::Unavailable,
            ErrorCode::PreconditionFailed => tonic::Code::FailedPrecondition,
            ErrorCode::Internal => tonic::Code::Internal,
        }
    }

    /// The HTTP status code for this error.
    pub fn http_status(self) -> u16 {
        match self {
            ErrorCode::BadRequest => 400,
            ErrorCode::NotFound => 404,
            ErrorCode::TooLarge => 413,
            ErrorCode::Unavailable => 503,
            ErrorCode::PreconditionFailed => 412,
            ErrorCode::Internal => 500,
        }
    }
}

/// The model crate's one error type: what the shared interfaces ([`crate::TraceReader`],
/// [`crate::SpanSink`]) and the parsers of ids, durations, quota imports and traffic
/// rules fail with.
/// Messages are written for the client; [`Error::code`] maps each to the protocols.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input was invalid; the message names what was wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The store could not answer; the message is for logs.
    #[error("storage error: {0}")]
    Storage(String),
    /// The server is shutting down or overloaded, or the store's log cannot be
    /// written.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A conditional write did not hold (the thing changed meanwhile).
    #[error("{0}")]
    PreconditionFailed(String),

    // Writes (`SpanSink`). Nothing of a failed write is stored.
    /// The pipeline is full; the client should retry after the given delay.
    #[error("overloaded: {bound}; retry after {retry_after:?}")]
    Overloaded {
        /// Suggested delay before a retry.
        retry_after: Duration,
        /// Which bound is reached, naming its setting.
        bound: &'static str,
    },
    /// The data directory's disk is below its free-space reserve
    /// (`store.min_free_disk`); the message names the directory, the free bytes and the
    /// setting. The client should retry after the given delay.
    #[error("{message}")]
    DiskFull {
        /// What is wrong, for the client and the log.
        message: String,
        /// Suggested delay before a retry.
        retry_after: Duration,
    },
    /// The write, encoded for the log, is larger than the whole write queue
    /// (`store.max_queued_bytes`): no wait makes room for it.
    #[error("larger than the whole write queue ({queue_bytes} bytes)")]
    LargerThanQueue {
        /// The queue's size in bytes.
        queue_bytes: u64,
    },
    /// Every stored span holds its resource's attributes and its scope's name and
    /// version: a request whose spans would repeat more bytes of them than the whole
    /// write queue holds can never be written (a large resource over many small spans:
    /// a few megabytes asking for gigabytes), and is refused before any is held.
    #[error(
        "the request's spans would hold {bytes} bytes of their resource's attributes and \
         scope's name and version (every stored span holds its own copy), more than the \
         whole WAL write queue ({queue_bytes} bytes, store.max_queued_bytes): send fewer \
         spans per request with this resource, or fewer or shorter resource attributes"
    )]
    RepeatedTooLarge {
        /// The bytes the spans' copies would take, at least (counted until past the bound).
        bytes: u64,
        /// The queue's size in bytes.
        queue_bytes: u64,
    },
    /// An export body is not a valid protobuf `ExportTraceServiceRequest`.
    #[error("cannot decode the protobuf request: {0}")]
    DecodeRequest(String),
    /// An export request has more spans than `max_spans_per_request`.
    #[error("request has {count} spans, more than max_spans_per_request ({limit})")]
    TooManySpans {
        /// Spans in the request (at least this many when the count stopped early).
        count: usize,
        /// The limit.
        limit: usize,
    },

    // Ids, in Jaeger's wording.
    /// A trace or span id of more than 32 hex digits.
    #[error("TraceID cannot be longer than 32 hex characters: {0}")]
    IdTooLong(String),
    /// An empty id.
    #[error("TraceID cannot be empty")]
    EmptyId,
    /// An id with something other than hex digits.
    #[error("TraceID is not a valid hex string: {0}")]
    IdNotHex(String),
    /// An id in byte form of the wrong length.
    #[error("id must be {expected} bytes, got {got}")]
    IdWrongLength {
        /// Bytes required.
        expected: usize,
        /// Bytes given.
        got: usize,
    },

    // Durations, in the wording of Go's `time` package.
    /// Not a duration at all.
    #[error("time: invalid duration \"{0}\"")]
    InvalidDuration(String),
    /// A number without a unit.
    #[error("time: missing unit in duration \"{0}\"")]
    DurationWithoutUnit(String),
    /// A unit Go does not know (`d`, `w`, ...).
    #[error("time: unknown unit \"{unit}\" in duration \"{text}\"")]
    UnknownDurationUnit {
        /// The unit as written.
        unit: String,
        /// The whole input.
        text: String,
    },
    /// Negative durations cannot bound a span duration.
    #[error("time: negative duration \"{0}\" is not allowed here")]
    NegativeDuration(String),

    // Quota imports. Every variant says where: the document (Istio, counted from 1)
    // or the descriptor path (envoy), and the field.
    /// The input is not what the importer understands; the message says where.
    #[error("{0}")]
    ImportInvalid(String),
    /// A document is not valid YAML.
    #[error("{location}: not valid YAML: {source}")]
    ImportYaml {
        /// Which document (`document 2`) or `file`.
        location: String,
        /// The parser's error, with line and column.
        #[source]
        source: yaml_serde::Error,
    },
    /// A field is missing, has the wrong type or a value the source format rejects.
    #[error("{location}: {message}")]
    ImportField {
        /// Document or descriptor, then the field path, e.g.
        /// `document 1 (handler quotahandler.istio-system), spec.params.quotas[0].maxAmount`.
        location: String,
        /// What is wrong.
        message: String,
    },
    /// A valid source construct that meshtel policies cannot express.
    #[error("{location}: cannot import `{expression}`: {reason}")]
    ImportUnsupported {
        /// Document or descriptor, then the field path.
        location: String,
        /// The expression, value or construct as written.
        expression: String,
        /// Why it cannot be expressed, and what to write instead when there is a way.
        reason: String,
    },
    /// The input holds no quota at all; the message says what was found.
    #[error("nothing to import: {0}")]
    NothingToImport(String),
    /// An imported policy does not compile (a value the source accepts but meshtel does
    /// not).
    #[error("{location}: imported policy {policy:?} is invalid: {}", join_display(.errors))]
    ImportedPolicyInvalid {
        /// Where the policy came from.
        location: String,
        /// The policy name.
        policy: String,
        /// What [`crate::quota::QuotaPolicySpec::compile`] reported.
        errors: Vec<FieldError>,
    },

    // Traffic rules.
    /// The traffic rules do not load; nothing of them is in force.
    #[error("{} problem(s) in the rules: {}", problems.len(), join_display(.problems))]
    Rules {
        /// Every problem found, in file and document order.
        problems: Vec<RuleProblem>,
    },
}

/// `a; b; c`: the items' messages on one line.
fn join_display<T: std::fmt::Display>(items: &[T]) -> String {
    let mut out = String::new();
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            out.push_str("; ");
        }
        let _ = write!(out, "{item}");
    }
    out
}

impl Error {
    /// The protocol-neutral code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_)
            | Error::DecodeRequest(_)
            | Error::TooManySpans { .. }
            | Error::IdTooLong(_)
            | Error::EmptyId
            | Error::IdNotHex(_)
            | Error::IdWrongLength { .. }
            | Error::InvalidDuration(_)
            | Error::DurationWithoutUnit(_)
            | Error::UnknownDurationUnit { .. }
            | Error::NegativeDuration(_)
            | Error::ImportInvalid(_)
            | Error::ImportYaml { .. }
            | Error::ImportField { .. }
            | Error::ImportUnsupported { .. }
            | Error::NothingToImport(_)
            | Error::ImportedPolicyInvalid { .. } => ErrorCode::BadRequest,
            Error::LargerThanQueue { .. } | Error::RepeatedTooLarge { .. } => ErrorCode::TooLarge,
            Error::Storage(_) => ErrorCode::Internal,
            Error::Unavailable(_) | Error::Overloaded { .. } | Error::DiskFull { .. } => {
                ErrorCode::Unavailable
            }
            Error::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
            Error::Rules { .. } => ErrorCode::BadRequest,
        }
    }

    /// The problems of traffic rules that did not load; empty for other errors.
    pub fn rule_problems(&self) -> &[RuleProblem] {
        match self {
            Error::Rules { problems } => problems,
            _ => &[],
        }
    }
}

/// Result with the shared [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
