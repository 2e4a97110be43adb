//! One error vocabulary for every protocol: a small set of codes, each with its gRPC
//! status and HTTP status, so that handlers never decide this on their own.

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

/// Errors of the shared interfaces ([`crate::TraceReader`], [`crate::SpanSink`]).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The caller's input was invalid; the message names what was wrong.
    #[error("{0}")]
    BadRequest(String),
    /// The store could not answer; the message is for logs.
    #[error("storage error: {0}")]
    Storage(String),
    /// The server is shutting down or overloaded.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// A conditional write did not hold (the thing changed meanwhile).
    #[error("{0}")]
    PreconditionFailed(String),
}

impl Error {
    /// The protocol-neutral code of this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::BadRequest(_) => ErrorCode::BadRequest,
            Error::Storage(_) => ErrorCode::Internal,
            Error::Unavailable(_) => ErrorCode::Unavailable,
            Error::PreconditionFailed(_) => ErrorCode::PreconditionFailed,
        }
    }
}

/// Result with the shared [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
