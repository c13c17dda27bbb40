//! Errors of the OTLP receivers: [`ReceiveError`] when a receiver cannot
//! start, [`RequestError`] when one request is refused.

use std::io;

use tonic::Code;

use crate::model::{DecodeError, Signal};
use crate::telemetry::metrics::reason;
use crate::tenancy::TenantError;

/// A receiver could not start.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The listen address is taken, not local, or does not resolve.
    #[error("cannot listen on {endpoint}: {source}")]
    Bind {
        endpoint: String,
        #[source]
        source: io::Error,
    },
    /// The TLS certificate, key or client CA cannot be used.
    #[error("{transport} receiver TLS: {source}")]
    Tls {
        transport: &'static str,
        #[source]
        source: super::tls::TlsError,
    },
    /// A limit that must be positive is zero (e.g. `max_connections`).
    #[error("{transport} receiver: {field} must be greater than 0")]
    ZeroLimit {
        transport: &'static str,
        field: &'static str,
    },
}

/// Why one request was refused before its items reached the pipeline.
///
/// The `Display` text is what the client reads: the `message` of the
/// `google.rpc.Status` (HTTP body or gRPC `grpc-message`).
#[derive(Debug, thiserror::Error)]
pub enum RequestError {
    /// The body as received is over `max_request_bytes`.
    #[error("request body larger than max_request_bytes ({limit} bytes)")]
    BodyTooLarge { limit: usize },
    /// The body after decompression is over `max_decompressed_bytes`.
    #[error("request body larger than max_decompressed_bytes ({limit} bytes) after decompression")]
    DecompressedTooLarge { limit: usize },
    /// `Content-Encoding` / `grpc-encoding` names a compression we do not speak.
    #[error("unsupported {header} \"{encoding}\", supported: gzip, zstd, identity")]
    UnsupportedEncoding {
        header: &'static str,
        encoding: String,
    },
    /// The compressed body is corrupt.
    #[error("invalid {encoding} body: {source}")]
    Decompress {
        encoding: &'static str,
        #[source]
        source: io::Error,
    },
    /// The protobuf request is not a well-formed `Export*ServiceRequest`.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// The JSON request does not follow the OTLP/JSON mapping.
    #[error("invalid JSON {signal} request: {message}")]
    Json { signal: Signal, message: String },
    /// The gRPC body is not exactly one length-prefixed message.
    #[error("invalid gRPC framing: {0}")]
    Framing(String),
    /// The compressed flag is set on a message sent without `grpc-encoding`.
    #[error("compressed flag set with identity or empty grpc-encoding")]
    CompressedWithoutEncoding,
    /// Requests in flight already hold `max_inflight_bytes`; retryable.
    #[error("receiver memory limit reached ({limit} bytes of requests in flight), retry later")]
    MemoryLimit { limit: u64 },
    /// The body could not be read (client reset the stream, connection lost).
    #[error("cannot read request body: {0}")]
    Body(String),
    /// The body did not arrive within `read_timeout`, or the answer could not
    /// be given within the client's own `grpc-timeout`.
    #[error("{what} not complete within {after:?}")]
    Timeout {
        what: &'static str,
        after: std::time::Duration,
    },
    /// The gateway has no pipeline for this signal: refused for good, so the
    /// client's SDK reports it instead of believing the data was delivered.
    #[error("no pipeline for {signal} is configured on this gateway")]
    NoPipeline { signal: Signal },
    /// A gRPC request in a codec other than protobuf (`application/grpc+json`).
    #[error("unsupported gRPC content-type \"{content_type}\", supported: application/grpc, application/grpc+proto")]
    UnsupportedCodec { content_type: String },
    /// The request's tenant: not authenticated, not allowed, invalid or over quota.
    #[error(transparent)]
    Tenant(#[from] TenantError),
}

impl RequestError {
    /// The `reason` label on refusal metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            RequestError::BodyTooLarge { .. } | RequestError::DecompressedTooLarge { .. } => {
                reason::TOO_LARGE
            }
            RequestError::UnsupportedEncoding { .. } => reason::UNSUPPORTED,
            RequestError::MemoryLimit { .. } => reason::MEMORY_LIMIT,
            RequestError::Timeout { .. } => reason::TIMEOUT,
            RequestError::NoPipeline { .. } => reason::NO_PIPELINE,
            RequestError::UnsupportedCodec { .. } => reason::UNSUPPORTED,
            RequestError::Tenant(error) => match error {
                TenantError::Unauthenticated(_) => reason::UNAUTHENTICATED,
                TenantError::PermissionDenied(_) => reason::PERMISSION_DENIED,
                TenantError::InvalidId(_) => reason::INVALID_TENANT,
                TenantError::OverQuota { .. } => reason::OVER_QUOTA,
            },
            RequestError::Decompress { .. }
            | RequestError::Decode(_)
            | RequestError::Json { .. }
            | RequestError::Framing(_)
            | RequestError::CompressedWithoutEncoding
            | RequestError::Body(_) => reason::INVALID,
        }
    }

    /// The gRPC status code (also the `code` of the HTTP `google.rpc.Status` body).
    pub fn grpc_code(&self) -> Code {
        match self {
            RequestError::BodyTooLarge { .. } | RequestError::DecompressedTooLarge { .. } => {
                Code::ResourceExhausted
            }
            RequestError::UnsupportedEncoding { .. } => Code::Unimplemented,
            RequestError::CompressedWithoutEncoding => Code::Internal,
            RequestError::MemoryLimit { .. } => Code::Unavailable,
            RequestError::Timeout { .. } => Code::DeadlineExceeded,
            RequestError::NoPipeline { .. } | RequestError::UnsupportedCodec { .. } => {
                Code::Unimplemented
            }
            RequestError::Tenant(error) => match error {
                TenantError::Unauthenticated(_) => Code::Unauthenticated,
                TenantError::PermissionDenied(_) => Code::PermissionDenied,
                TenantError::InvalidId(_) => Code::InvalidArgument,
                TenantError::OverQuota { .. } => Code::ResourceExhausted,
            },
            RequestError::Decompress { .. }
            | RequestError::Decode(_)
            | RequestError::Json { .. }
            | RequestError::Framing(_)
            | RequestError::Body(_) => Code::InvalidArgument,
        }
    }

    /// The OTLP/HTTP status.
    pub fn http_status(&self) -> http::StatusCode {
        match self {
            RequestError::BodyTooLarge { .. } | RequestError::DecompressedTooLarge { .. } => {
                http::StatusCode::PAYLOAD_TOO_LARGE
            }
            RequestError::UnsupportedEncoding { .. } => http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::MemoryLimit { .. } => http::StatusCode::SERVICE_UNAVAILABLE,
            RequestError::Timeout { .. } => http::StatusCode::REQUEST_TIMEOUT,
            RequestError::NoPipeline { .. } => http::StatusCode::NOT_FOUND,
            RequestError::UnsupportedCodec { .. } => http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            RequestError::Tenant(error) => match error {
                TenantError::Unauthenticated(_) => http::StatusCode::UNAUTHORIZED,
                TenantError::PermissionDenied(_) => http::StatusCode::FORBIDDEN,
                TenantError::InvalidId(_) => http::StatusCode::BAD_REQUEST,
                TenantError::OverQuota { .. } => http::StatusCode::TOO_MANY_REQUESTS,
            },
            RequestError::Decompress { .. }
            | RequestError::Decode(_)
            | RequestError::Json { .. }
            | RequestError::Framing(_)
            | RequestError::CompressedWithoutEncoding
            | RequestError::Body(_) => http::StatusCode::BAD_REQUEST,
        }
    }
}
