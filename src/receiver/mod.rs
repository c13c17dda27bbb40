//! OTLP receivers: gRPC on 4317 ([`GrpcReceiver`]) and HTTP on 4318
//! ([`HttpReceiver`]), protobuf and JSON, gzip and zstd. Each request is
//! validated into a [`Batch`](crate::model::Batch) without copying its
//! bytes and handed to the pipeline through [`Ingest`](crate::pipeline::Ingest).
//!
//! # Limits
//! A request is refused as too large (HTTP 413, gRPC `RESOURCE_EXHAUSTED`)
//! past `max_request_bytes` as received or `max_decompressed_bytes` after
//! decompression; both are enforced while reading, so neither a large upload
//! nor a compression bomb takes more memory than the limit. Connections are
//! bounded in number (`max_connections`, the longest-idle one closed to make
//! room) and in time (`read_header_timeout`, `read_timeout`, `idle_timeout`,
//! HTTP/2 and TCP keepalive); see [`server`].
//!
//! # TLS
//! With a `tls` table a receiver serves TLS only (see [`tls`]): the handshake
//! counts against `read_header_timeout`, a failed one is counted
//! (`reason="tls_handshake"`), and with `client_ca_file` the verified client
//! certificate's subject CN reaches the handlers as a [`PeerIdentity`] in the
//! request extensions. Certificates are reloaded when their files change.
//!
//! # Backpressure
//! When the pipeline refuses a batch ([`Refused`](crate::pipeline::Refused)),
//! the client is told to retry: gRPC `UNAVAILABLE` with a
//! `google.rpc.RetryInfo`, HTTP 503 with `Retry-After`.
//!
//! # Shutdown
//! `run` returns after its shutdown token is cancelled: the listener closes
//! at once, requests in flight get their answer, connections close, and
//! whatever is still open when the shutdown's grace runs out is closed.
//!
//! A signal without a pipeline is refused for good (HTTP 404, gRPC
//! `UNIMPLEMENTED`), as the Collector does, never acknowledged and dropped.
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
pub mod server;
mod status;
pub mod tls;

pub use error::{ReceiveError, RequestError};
pub use grpc::GrpcReceiver;
pub use http::HttpReceiver;
pub use tls::{PeerIdentity, ServerTlsConfig};
