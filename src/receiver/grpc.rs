//! OTLP/gRPC: the unary `Export` RPC of the trace, metrics and logs
//! services, hand-written on hyper's HTTP/2 server.
//!
//! # Why not tonic's server
//! - tonic decompresses a message without a cap on the decompressed size, so
//!   a small gzip/zstd bomb takes as much memory as it expands to; here the
//!   decompressor stops at `max_decompressed_bytes` (see `decode.rs`).
//! - tonic answers an oversized message with `OUT_OF_RANGE`; OTLP wants
//!   `RESOURCE_EXHAUSTED` (not retryable without `RetryInfo`).
//! - tonic hands the handler a decoded prost message; the pipeline keeps the
//!   encoded bytes (`Batch::decode(signal, bytes)` validates them zero-copy),
//!   so a prost decode per request would be pure waste.
//!
//! The unary protocol is small: a `POST` with `content-type: application/grpc*`,
//! a body of exactly one length-prefixed message (1 byte compressed flag,
//! 4 bytes big-endian length), and an answer of one message followed by the
//! `grpc-status` trailer, or a Trailers-Only answer for an error.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{ALLOW, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulConnection;
use tokio::io::{AsyncRead, AsyncWrite};
use tonic::Code;

use super::body::{plain, ReplyBody};
use super::config::GrpcConfig;
use super::decode::{decompress, off_runtime, read_body, Compression, ReadDeadline};
use super::error::{ReceiveError, RequestError};
use super::export::{ExportResponse, Intake, RequestMetrics, Verdict, GRPC};
use super::server;
use super::status;
use super::tls::{self, PeerIdentity};
use crate::model::Signal;
use crate::pipeline::Ingest;
use crate::telemetry::metrics::reason;
use crate::tenancy::Tenants;

const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");
const GRPC_MESSAGE: HeaderName = HeaderName::from_static("grpc-message");
const GRPC_STATUS_DETAILS: HeaderName = HeaderName::from_static("grpc-status-details-bin");
const GRPC_ENCODING: &str = "grpc-encoding";
const GRPC_TIMEOUT: &str = "grpc-timeout";
const GRPC_ACCEPT_ENCODING: HeaderName = HeaderName::from_static("grpc-accept-encoding");
const APPLICATION_GRPC: HeaderValue = HeaderValue::from_static("application/grpc");
/// Compressed flag and length in front of every gRPC message.
const FRAME_HEADER: usize = 5;

/// The OTLP/gRPC receiver, bound and ready to [`run`](GrpcReceiver::run).
#[derive(Debug)]
pub struct GrpcReceiver {
    listener: server::Listener,
    service: Arc<GrpcService>,
}

impl GrpcReceiver {
    /// Binds `config.endpoint`; requests will go to `ingest`. `retry_after`
    /// is the delay sent when refusing because the gateway is shutting down
    /// (a full pipeline names its own). With `tenants`, every request is
    /// identified (and authenticated) before its body is read.
    ///
    /// # Errors
    /// [`ReceiveError::Bind`] when the address cannot be bound,
    /// [`ReceiveError::ZeroLimit`] when `max_connections` or
    /// `max_concurrent_streams` is 0, [`ReceiveError::Tls`] when the `tls`
    /// certificate or key cannot be used.
    pub async fn bind(
        config: &GrpcConfig,
        ingest: Ingest,
        retry_after: Duration,
        tenants: Option<Arc<Tenants>>,
    ) -> Result<Self, ReceiveError> {
        let listener = server::Listener::bind(
            GRPC,
            &config.endpoint,
            config.connection_limits(),
            config.tls.as_ref(),
            tls::ALPN_GRPC,
        )
        .await?;
        Ok(GrpcReceiver {
            listener,
            service: Arc::new(GrpcService {
                intake: Intake::new(ingest, retry_after, GRPC, tenants),
                max_request_bytes: config.max_request_bytes.as_usize(),
                max_decompressed_bytes: config.max_decompressed_bytes.as_usize(),
                read_timeout: config.read_timeout.get(),
            }),
        })
    }

    /// The bound address (the real port when the endpoint said `:0`).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr
    }

    /// Serves until `shutdown` is cancelled, then stops accepting, tells
    /// every connection to finish, closes what is still open after the
    /// shutdown's grace, and returns.
    pub async fn run(self, shutdown: impl Into<server::Shutdown>) {
        let shutdown = shutdown.into();
        let limits = self.listener.limits;
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(limits.max_concurrent_streams)
            .keep_alive_interval(limits.keepalive_time)
            .keep_alive_timeout(limits.keepalive_timeout);
        let connector = Connector {
            builder,
            service: self.service,
        };
        server::serve(self.listener, GRPC, shutdown, connector).await;
    }
}

/// Serves one connection with the shared HTTP/2 settings.
struct Connector {
    builder: hyper::server::conn::http2::Builder<TokioExecutor>,
    service: Arc<GrpcService>,
}

impl server::Connect for Connector {
    fn connect<I>(
        &self,
        io: TokioIo<I>,
        state: Arc<server::ConnectionState>,
        peer: Option<PeerIdentity>,
    ) -> impl GracefulConnection<Error: std::fmt::Display + Send> + Send + 'static
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let service = self.service.clone();
        self.builder.serve_connection(
            io,
            service_fn(move |mut request: Request<Incoming>| {
                if let Some(peer) = &peer {
                    request.extensions_mut().insert(peer.clone());
                }
                let in_flight = state.request_started();
                let service = service.clone();
                async move {
                    let response = service.handle(request).await;
                    drop(in_flight);
                    Ok::<_, Infallible>(response)
                }
            }),
        )
    }
}

#[derive(Debug)]
struct GrpcService {
    intake: Intake,
    max_request_bytes: usize,
    max_decompressed_bytes: usize,
    read_timeout: Duration,
}

impl GrpcService {
    async fn handle(&self, request: Request<Incoming>) -> Response<ReplyBody> {
        let signal = Signal::from_grpc_path(request.uri().path());
        if request.method() != Method::POST {
            if let Some(signal) = signal {
                RequestMetrics::start(signal, GRPC).refuse(reason::UNSUPPORTED);
            }
            let mut response = plain(
                StatusCode::METHOD_NOT_ALLOWED,
                "405 method not allowed, supported: [POST]",
            );
            response
                .headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return response;
        }
        let content_type = request
            .headers()
            .get(CONTENT_TYPE)
            .map(HeaderValue::as_bytes)
            .unwrap_or_default();
        // gRPC-Web is another protocol (HTTP/1 framing, trailers in the body): not gRPC here.
        let is_grpc = content_type.starts_with(b"application/grpc")
            && !content_type.starts_with(b"application/grpc-web");
        if !is_grpc {
            // The gRPC spec answers a non-gRPC content type at the HTTP level.
            if let Some(signal) = signal {
                RequestMetrics::start(signal, GRPC).refuse(reason::UNSUPPORTED);
            }
            return plain(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "415 unsupported media type, supported: [application/grpc]",
            );
        }
        let Some(signal) = signal else {
            let message = format!("unknown method {}", request.uri().path());
            return trailers_only(Code::Unimplemented, &message, None);
        };
        let metrics = RequestMetrics::start(signal, GRPC);
        let result = match codec_problem(content_type) {
            Some(error) => Err(error),
            None if !self.intake.has_pipeline(signal) => Err(RequestError::NoPipeline { signal }),
            None => match client_timeout(request.headers()) {
                // The client gives up after its `grpc-timeout`: answer by then.
                Some(after) => tokio::time::timeout(after, self.export(signal, request, &metrics))
                    .await
                    .unwrap_or(Err(RequestError::Timeout {
                        what: "the request (grpc-timeout)",
                        after,
                    })),
                None => self.export(signal, request, &metrics).await,
            },
        };
        metrics.finish(&result);
        match result {
            Ok(Verdict::Accepted { rejected, message }) => {
                ok(&ExportResponse::new(signal, rejected, &message).to_protobuf())
            }
            Ok(Verdict::Refused {
                retry_after,
                message,
            }) => trailers_only(Code::Unavailable, &message, Some(retry_after)),
            Err(error) => {
                let retry_after = self.intake.retry_hint(&error);
                trailers_only(error.grpc_code(), &error.to_string(), retry_after)
            }
        }
    }

    async fn export(
        &self,
        signal: Signal,
        request: Request<Incoming>,
        metrics: &RequestMetrics,
    ) -> Result<Verdict, RequestError> {
        let peer = request.extensions().get::<PeerIdentity>();
        let caller = self
            .intake
            .identify(request.headers(), peer.map(|p| &*p.subject_cn))?;
        let compression =
            Compression::from_header(GRPC_ENCODING, request.headers().get(GRPC_ENCODING))?;
        let limit = self.max_request_bytes.saturating_add(FRAME_HEADER);
        let (body, mut held) = read_body(
            request.into_body(),
            limit,
            self.max_request_bytes,
            self.intake.inflight(),
            ReadDeadline::after(self.read_timeout),
        )
        .await?;
        metrics.body_read(body.len());
        let (compressed, message) = unframe(body, self.max_request_bytes)?;
        let message = match (compressed, compression) {
            (false, _) if message.len() > self.max_decompressed_bytes => {
                return Err(RequestError::DecompressedTooLarge {
                    limit: self.max_decompressed_bytes,
                })
            }
            (false, _) => message,
            (true, Compression::Identity) => return Err(RequestError::CompressedWithoutEncoding),
            (true, compression) => {
                let inflight = self.intake.inflight().clone();
                let cap = self.max_decompressed_bytes;
                let (message, reserved) = off_runtime(message.len(), move || {
                    decompress(compression, message, cap, &inflight)
                })
                .await?;
                held.merge(reserved);
                message
            }
        };
        let verdict = self.intake.export(signal, message, caller.as_ref()).await;
        drop(held);
        verdict
    }
}

/// A gRPC content type with a codec other than protobuf (`application/grpc+json`).
fn codec_problem(content_type: &[u8]) -> Option<RequestError> {
    let subtype = content_type
        .strip_prefix(b"application/grpc")?
        .split(|&b| b == b';')
        .next()
        .unwrap_or_default();
    match subtype {
        b"" | b"+proto" => None,
        _ => Some(RequestError::UnsupportedCodec {
            content_type: String::from_utf8_lossy(content_type).into_owned(),
        }),
    }
}

/// The client's `grpc-timeout` (at most 8 digits and a unit: H, M, S, m, u, n).
fn client_timeout(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(GRPC_TIMEOUT)?.to_str().ok()?;
    if text.len() < 2 || text.len() > 9 {
        return None;
    }
    let (digits, unit) = text.split_at(text.len() - 1);
    let value: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(value.saturating_mul(3600)),
        "M" => Duration::from_secs(value.saturating_mul(60)),
        "S" => Duration::from_secs(value),
        "m" => Duration::from_millis(value),
        "u" => Duration::from_micros(value),
        "n" => Duration::from_nanos(value),
        _ => return None,
    })
}

/// Splits the body of a unary call into its one message, without copying.
fn unframe(body: Bytes, max_request_bytes: usize) -> Result<(bool, Bytes), RequestError> {
    let Some((header, rest)) = body.split_first_chunk::<FRAME_HEADER>() else {
        return Err(RequestError::Framing(if body.is_empty() {
            "request has no message".into()
        } else {
            format!("truncated message header ({} bytes)", body.len())
        }));
    };
    let [flag, len @ ..] = *header;
    let len = u32::from_be_bytes(len) as usize;
    if len > max_request_bytes {
        return Err(RequestError::BodyTooLarge {
            limit: max_request_bytes,
        });
    }
    if rest.len() < len {
        return Err(RequestError::Framing(format!(
            "message truncated: header says {len} bytes, body has {}",
            rest.len()
        )));
    }
    if rest.len() > len {
        return Err(RequestError::Framing(
            "more than one message in a unary request".into(),
        ));
    }
    let compressed = match flag {
        0 => false,
        1 => true,
        other => {
            return Err(RequestError::Framing(format!(
                "invalid compressed flag {other}"
            )))
        }
    };
    Ok((compressed, body.slice(FRAME_HEADER..)))
}

/// A successful call: the framed (uncompressed) response message, then `grpc-status: 0`.
fn ok(message: &[u8]) -> Response<ReplyBody> {
    let mut framed = BytesMut::with_capacity(FRAME_HEADER + message.len());
    framed.put_u8(0);
    // A response is a few bytes plus an error message, far below 4 GiB.
    framed.put_u32(u32::try_from(message.len()).unwrap_or(u32::MAX));
    framed.put_slice(message);
    let mut trailers = HeaderMap::new();
    trailers.insert(GRPC_STATUS, HeaderValue::from_static("0"));
    grpc_response(ReplyBody::with_trailers(framed.freeze(), trailers))
}

/// A failed call as a Trailers-Only response: status in the headers, no body.
fn trailers_only(code: Code, message: &str, retry_after: Option<Duration>) -> Response<ReplyBody> {
    let mut response = grpc_response(ReplyBody::empty());
    let headers = response.headers_mut();
    headers.insert(GRPC_STATUS, HeaderValue::from(code as i32));
    headers.insert(GRPC_MESSAGE, status::grpc_message(message));
    if retry_after.is_some() {
        let details = status::status(code, message, retry_after);
        headers.insert(GRPC_STATUS_DETAILS, status::grpc_status_details(&details));
    }
    response
}

fn grpc_response(body: ReplyBody) -> Response<ReplyBody> {
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, APPLICATION_GRPC);
    headers.insert(
        GRPC_ACCEPT_ENCODING,
        HeaderValue::from_static(Compression::ACCEPTED),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(flag: u8, len: u32, payload: &[u8]) -> Bytes {
        let mut out = vec![flag];
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(payload);
        Bytes::from(out)
    }

    #[test]
    fn grpc_timeout_is_parsed_by_its_unit() {
        let timeout = |v: &'static str| {
            let mut headers = HeaderMap::new();
            headers.insert(GRPC_TIMEOUT, HeaderValue::from_static(v));
            client_timeout(&headers)
        };
        assert_eq!(timeout("2S"), Some(Duration::from_secs(2)));
        assert_eq!(timeout("1500m"), Some(Duration::from_millis(1500)));
        assert_eq!(timeout("1M"), Some(Duration::from_secs(60)));
        assert_eq!(timeout("7u"), Some(Duration::from_micros(7)));
        for bad in ["S", "123456789S", "5x", "-1S", "1.5S"] {
            assert_eq!(timeout(bad), None, "{bad}");
        }
    }

    #[test]
    fn only_the_protobuf_codec_is_accepted() {
        assert!(codec_problem(b"application/grpc").is_none());
        assert!(codec_problem(b"application/grpc+proto").is_none());
        assert!(codec_problem(b"application/grpc;charset=utf-8").is_none());
        let error = codec_problem(b"application/grpc+json").expect("refused");
        assert_eq!(error.grpc_code(), Code::Unimplemented);
    }

    #[test]
    fn unframes_one_message_without_copying() {
        let body = frame(0, 3, b"abc");
        let (compressed, message) = unframe(body.clone(), 10).unwrap();
        assert!(!compressed);
        assert_eq!(message, "abc");
        assert_eq!(message.as_ptr(), body[5..].as_ptr());
    }

    #[test]
    fn framing_errors_are_named() {
        let err = |body: Bytes| unframe(body, 10).unwrap_err().to_string();
        assert_eq!(
            err(Bytes::new()),
            "invalid gRPC framing: request has no message"
        );
        assert_eq!(
            err(Bytes::from_static(&[0, 0])),
            "invalid gRPC framing: truncated message header (2 bytes)"
        );
        assert_eq!(
            err(frame(0, 5, b"ab")),
            "invalid gRPC framing: message truncated: header says 5 bytes, body has 2"
        );
        assert_eq!(
            err(frame(0, 1, b"ab")),
            "invalid gRPC framing: more than one message in a unary request"
        );
        assert_eq!(
            err(frame(2, 1, b"a")),
            "invalid gRPC framing: invalid compressed flag 2"
        );
        assert_eq!(
            err(frame(0, 11, b"")),
            "request body larger than max_request_bytes (10 bytes)"
        );
    }
}
