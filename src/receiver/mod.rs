//! OTLP receivers: gRPC on 4317 ([`GrpcReceiver`]) and HTTP on 4318
//! ([`HttpReceiver`]), protobuf and JSON, gzip and zstd. Each request is
//! validated into a [`Batch`](crate::model::Batch) without copying its
//! bytes and handed to the pipeline through [`Ingest`](crate::pipeline::Ingest).
//!
//! # Limits
//! A request is refused as too large (HTTP 413, gRPC `RESOURCE_EXHAUSTED`)
//! past `max_request_bytes` as received or `max_decompressed_bytes` after
//! decompression; both are enforced while reading, so neither a large upload
//! nor a compression bomb takes more memory than the limit. At most
//! `max_connections` connections are served at once (further clients wait to
//! be accepted), each with at most `max_concurrent_streams` HTTP/2 streams.
//!
//! # Backpressure
//! When the pipeline refuses a batch ([`Refused`](crate::pipeline::Refused)),
//! the client is told to retry: gRPC `UNAVAILABLE` with a
//! `google.rpc.RetryInfo`, HTTP 503 with `Retry-After`.
//!
//! # Shutdown
//! `run` returns after its shutdown token is cancelled: the listener closes
//! at once, requests in flight get their answer, then connections close.
//!
//! # Errors
//! Every bad request gets the answer the OTLP spec gives, with a message
//! saying what was wrong ([`RequestError`](error::RequestError)); items
//! rejected inside a valid request are reported in `partial_success`.

mod body;
pub mod config;
pub mod decode;
pub mod error;
mod export;
pub mod grpc;
pub mod http;
pub mod json;
mod server;
mod status;

pub use error::{ReceiveError, RequestError};
pub use grpc::GrpcReceiver;
pub use http::HttpReceiver;
